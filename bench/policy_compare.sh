#!/usr/bin/env bash
# policy_compare.sh — Arrow's eviction policies against the shared kit (libCacheSim + bounds).
#
#   trace (gen_trace.py, seeded) → arrow-bench replay (release) per policy → decisions CSV
#   → compare.py (libCacheSim S3FIFO, GDSF, LHD and the PFOO-L bound, same trace and capacity)
#   + lrusp.py reference decisions
#
# For every trace (PRESETS × ALPHAS × SEEDS) and cache size (% of the working set, like
# compare.py's --cache-size 5%) it prints one row: LRU-SP, byte-mode, byte-freq, S3FIFO, GDSF,
# LHD, PFOO-L (OHR / BHR each), the goal BHR and the share of the S3FIFO→PFOO-L gap that
# byte-freq closes. Checks (exit status 1 if any fails):
#   * lru-sp agrees with lrusp.py within 0.01 OHR and BHR (CONFORMANCE=1; the Python reference
#     is the slow part of a run);
#   * byte-mode's BHR is at least S3FIFO's (within 0.0005);
#   * the byte-freq goal (issue 17, GOAL=1): BHR ≥ S3FIFO + GOAL_FRACTION × (PFOO-L − S3FIFO)
#     and OHR ≥ S3FIFO's OHR − 0.0005.
#
# Environment (defaults in brackets):
#   POLICY_DIR  the kit                   [$(git rev-parse --show-toplevel)/bench/policy-kit]
#   VENV        Python venv (created)     [<repo>/../venv]
#   TRACE_DIR   where traces go           [<repo>/../traces]
#   CARGO_TARGET_DIR                      [<repo>/target]
#   REQUESTS [300000]  SEEDS ["42"]  PRESETS ["base churn"]  ALPHAS ["0.8 1.0"]
#   SIZES ["1 5 10"]  WARMUP [0]  CONFORMANCE [1]  GOAL [1]  GOAL_FRACTION [0.25]
#   SHAPE ["" or extra gen_trace.py flags, e.g. "--live-share 0.5 --channels 80"; the trace
#          name gets a tag from them]
#   PRESET / ALPHA / SEED  single values, accepted for older callers (override the lists)
#   TABLE_OUT   also append the markdown rows to this file
#
# Runtime on the 2-core dev VM (release build already done): about 20 s per trace-and-size
# at 300k requests with CONFORMANCE=1 (about 8 s without), i.e. ~4 min for the default twelve
# configurations; 3M-request traces take ~10× as long (generation ~1 min per trace, cached in
# TRACE_DIR). bench/run.sh --full gives it 240 s: use CONFORMANCE=0 or fewer configs there.
set -euo pipefail

REPO="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
POLICY_DIR="${POLICY_DIR:-$REPO/bench/policy-kit}"
VENV="${VENV:-$REPO/../venv}"
TRACE_DIR="${TRACE_DIR:-$REPO/../traces}"
REQUESTS="${REQUESTS:-300000}"
SEEDS="${SEED:-${SEEDS:-42}}"
PRESETS="${PRESET:-${PRESETS:-base churn}}"
ALPHAS="${ALPHA:-${ALPHAS:-0.8 1.0}}"
SIZES="${SIZES:-1 5 10}"
WARMUP="${WARMUP:-0}"
CONFORMANCE="${CONFORMANCE:-1}"
GOAL="${GOAL:-1}"
GOAL_FRACTION="${GOAL_FRACTION:-0.25}"
SHAPE="${SHAPE:-}"
TABLE_OUT="${TABLE_OUT:-}"

PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import libcachesim, numpy' 2>/dev/null; then
    echo "== creating venv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet libcachesim==0.3.5 numpy
fi

echo "== building arrow-bench (release)"
(cd "$REPO" && cargo build --release -p arrow-bench --quiet)
BENCH="${CARGO_TARGET_DIR:-$REPO/target}/release/arrow-bench"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
mkdir -p "$TRACE_DIR"

# Capacity in bytes exactly as compare.py computes "--cache-size P%".
capacity_bytes() {
    "$PY" - "$1" "$2" <<'EOF'
import csv, sys
sizes = {}
with open(sys.argv[1], newline="") as f:
    rows = csv.reader(f)
    next(rows)
    for row in rows:
        sizes.setdefault(row[1], int(row[2]))
print(int(float(sys.argv[2]) / 100 * sum(sizes.values())))
EOF
}

# "ohr bhr" of a decisions file over requests [WARMUP·n, n).
decision_ratios() {
    "$PY" - "$1" "$2" "$WARMUP" <<'EOF'
import sys
trace, decisions, warm = sys.argv[1], sys.argv[2], float(sys.argv[3])
sizes = [int(line.rsplit(",", 1)[1]) for line in open(trace).read().splitlines()[1:]]
hits = [line.rsplit(",", 1)[1] == "1" for line in open(decisions).read().splitlines()[1:]]
assert len(sizes) == len(hits), "decisions and trace differ in length"
w = int(warm * len(sizes))
s, h = sizes[w:], hits[w:]
print("%.4f %.4f" % (sum(h) / len(h), sum(x for x, y in zip(s, h) if y) / sum(s)))
EOF
}

# replay POLICY CAP → decisions in $OUT/POLICY.csv, prints "ohr bhr"
replay() {
    "$BENCH" replay --trace "$TRACE" --capacity-bytes "$2" --policy "$1" \
        --decisions "$OUT/$1.csv" --warmup-frac "$WARMUP" |
        awk '$1 == "OHR" { print $2, $4 }'
}

fail=0
ROWS=()
started=$SECONDS
tag=""
[ -n "$SHAPE" ] && tag="_$(echo "$SHAPE" | tr -c 'A-Za-z0-9.\n' '_' | sed 's/__*/_/g; s/^_//; s/_$//')"
for seed in $SEEDS; do
for preset in $PRESETS; do
for alpha in $ALPHAS; do
    NAME="${preset}_a${alpha}_n${REQUESTS}_s${seed}${tag}"
    TRACE="$TRACE_DIR/$NAME.csv"
    if [ ! -s "$TRACE" ]; then
        echo "== generating $TRACE"
        # shellcheck disable=SC2086 # SHAPE is a list of flags
        "$PY" "$POLICY_DIR/gen_trace.py" --out "$TRACE_DIR/$NAME" --alpha "$alpha" \
            --preset "$preset" --requests "$REQUESTS" --seed "$seed" $SHAPE
    fi
    for pct in $SIZES; do
        cap="$(capacity_bytes "$TRACE" "$pct")"
        echo "== $NAME cache $pct% = $cap bytes ($((SECONDS - started)) s)"
        read -r ls_o ls_b <<<"$(replay lru-sp "$cap")"
        read -r bm_o bm_b <<<"$(replay byte-mode "$cap")"
        read -r bf_o bf_b <<<"$(replay byte-freq "$cap")"
        "$PY" "$POLICY_DIR/compare.py" "$TRACE" "$OUT/byte-freq.csv" --cache-size "$cap" \
            --warmup "$WARMUP" --algos S3FIFO,GDSF,LHD --json "$OUT/r.json" >/dev/null
        read -r srv_o srv_b s3_o s3_b gd_o gd_b lhd_o lhd_b pf_o pf_b <<<"$("$PY" -c '
import json, sys
rows = {r["policy"]: r for r in json.load(open(sys.argv[1]))["results"]}
names = ["SERVER (decisions file)", "S3FIFO", "GDSF", "LHD", "PFOO-L upper bound"]
print(" ".join("%.4f %.4f" % (rows[n]["ohr"], rows[n]["bhr"]) for n in names))
' "$OUT/r.json")"
        if [ -z "$pf_b" ] || [ -z "$bf_b" ] || [ -z "$ls_b" ] || [ -z "$bm_b" ]; then
            echo "policy_compare.sh: no ratios for $NAME cache $pct%" >&2
            exit 1
        fi
        verdict=""
        # the replay's own ratios and compare.py's reading of its decisions must agree
        if ! awk -v a="$bf_b" -v b="$srv_b" -v c="$bf_o" -v d="$srv_o" \
            'BEGIN { exit !((a - b) ^ 2 < 1e-8 && (c - d) ^ 2 < 1e-8) }'; then
            verdict="$verdict REPLAY/COMPARE MISMATCH"
            fail=1
        fi
        if [ "$CONFORMANCE" = 1 ]; then
            "$PY" "$POLICY_DIR/replay_example.py" "$TRACE" "$OUT/ref.csv" --cache-size "$cap" \
                --policy lrusp >/dev/null
            read -r ref_o ref_b <<<"$(decision_ratios "$TRACE" "$OUT/ref.csv")"
            differ="$(paste -d, "$OUT/lru-sp.csv" "$OUT/ref.csv" | awk -F, 'NR > 1 && $2 != $4' | wc -l)"
            if ! awk -v a="$ls_o" -v b="$ref_o" -v c="$ls_b" -v d="$ref_b" \
                'BEGIN { exit !((a - b) ^ 2 <= 0.0001 && (c - d) ^ 2 <= 0.0001) }'; then
                verdict="$verdict LRU-SP MISMATCH"
                fail=1
            fi
            echo "   lru-sp vs lrusp.py: $ls_o / $ls_b vs $ref_o / $ref_b, $differ decisions differ"
        fi
        if ! awk -v a="$bm_b" -v b="$s3_b" 'BEGIN { exit !(a >= b - 0.0005) }'; then
            verdict="$verdict BYTE-MODE<S3FIFO"
            fail=1
        fi
        read -r target closed <<<"$(awk -v s="$s3_b" -v p="$pf_b" -v b="$bf_b" -v f="$GOAL_FRACTION" \
            'BEGIN { printf "%.4f %+.2f", s + f * (p - s), (p > s) ? (b - s) / (p - s) : 0 }')"
        if [ "$GOAL" = 1 ]; then
            if ! awk -v b="$bf_b" -v t="$target" 'BEGIN { exit !(b >= t) }'; then
                verdict="$verdict BHR<GOAL"
                fail=1
            fi
            if ! awk -v a="$bf_o" -v b="$s3_o" 'BEGIN { exit !(a >= b - 0.0005) }'; then
                verdict="$verdict OHR<S3FIFO"
                fail=1
            fi
        fi
        ROWS+=("| $preset α=$alpha s$seed$tag | $pct% | $ls_o / $ls_b | $bm_o / $bm_b | **$bf_o / $bf_b** | $s3_o / $s3_b | $gd_o / $gd_b | $lhd_o / $lhd_b | $pf_o / $pf_b | $target | $closed | ${verdict:- ok} |")
    done
done
done
done

echo
echo "traces: $REQUESTS requests, seeds $SEEDS, presets $PRESETS, alphas $ALPHAS${SHAPE:+, shape $SHAPE}; warmup $WARMUP; $((SECONDS - started)) s"
HEADER="| trace | cache | LRU-SP OHR / BHR | byte-mode | byte-freq | S3FIFO | GDSF | LHD | PFOO-L bound | goal BHR | gap closed | check |
|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "$HEADER"
printf '%s\n' "${ROWS[@]}"
if [ -n "$TABLE_OUT" ]; then
    printf '%s\n' "${ROWS[@]}" >>"$TABLE_OUT"
fi
[ "$fail" = 0 ] || echo "policy_compare.sh: a check failed (see the check column)" >&2
exit "$fail"
