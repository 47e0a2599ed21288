#!/usr/bin/env bash
# policy_compare.sh — conformance of Arrow's eviction policies against the shared kit.
#
#   trace (gen_trace.py, fixed seed) → arrow-bench replay (release) → decisions CSV
#   → compare.py (libCacheSim S3FIFO, same trace and capacity) + lrusp.py reference decisions
#
# Checks, per cache size (% of the working set, like compare.py's --cache-size 5%):
#   * lru-sp agrees with lrusp.py (replay_example.py --policy lrusp) within 0.01 OHR and BHR
#     (and counts the requests whose decisions differ);
#   * byte-mode's BHR is at least S3FIFO's (within 0.0005).
# Exit status 1 if a check fails.
#
# Environment (defaults in brackets):
#   POLICY_DIR  the kit                   [$(git rev-parse --show-toplevel)/../shared/policy]
#   VENV        Python venv (created)     [<repo>/../venv]
#   TRACE_DIR   where traces go           [<repo>/../traces]
#   REQUESTS [300000]  SEED [42]  PRESET [base]  ALPHA [0.8]  SIZES ["1 5 10"]  WARMUP [0]
set -euo pipefail

REPO="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
POLICY_DIR="${POLICY_DIR:-$REPO/../shared/policy}"
VENV="${VENV:-$REPO/../venv}"
TRACE_DIR="${TRACE_DIR:-$REPO/../traces}"
REQUESTS="${REQUESTS:-300000}"
SEED="${SEED:-42}"
PRESET="${PRESET:-base}"
ALPHA="${ALPHA:-0.8}"
SIZES="${SIZES:-1 5 10}"
WARMUP="${WARMUP:-0}"

PY="$VENV/bin/python"
if [ ! -x "$PY" ] || ! "$PY" -c 'import libcachesim, numpy' 2>/dev/null; then
    echo "== creating venv $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet libcachesim==0.3.5 numpy
fi

mkdir -p "$TRACE_DIR"
NAME="${PRESET}_a${ALPHA}_n${REQUESTS}_s${SEED}"
TRACE="$TRACE_DIR/$NAME.csv"
if [ ! -s "$TRACE" ]; then
    echo "== generating $TRACE"
    "$PY" "$POLICY_DIR/gen_trace.py" --out "$TRACE_DIR/$NAME" --alpha "$ALPHA" --preset "$PRESET" \
        --requests "$REQUESTS" --seed "$SEED"
fi

echo "== building arrow-bench (release)"
(cd "$REPO" && cargo build --release -p arrow-bench --quiet)
BENCH="$REPO/target/release/arrow-bench"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# Capacity in bytes exactly as compare.py computes "--cache-size P%".
capacity_bytes() {
    "$PY" - "$TRACE" "$1" <<'EOF'
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

# ohr bhr of a decisions file (and of S3FIFO when $3 = S3FIFO), via compare.py --json.
ratios() {
    "$PY" "$POLICY_DIR/compare.py" "$TRACE" "$1" --cache-size "$2" --warmup "$WARMUP" \
        --algos "${3:-}" --no-offline --json "$OUT/r.json" >/dev/null
    "$PY" -c '
import json, sys
rows = {r["policy"]: r for r in json.load(open(sys.argv[1]))["results"]}
picked = [rows["SERVER (decisions file)"]] + ([rows[sys.argv[2]]] if sys.argv[2] else [])
print(" ".join("%.4f %.4f" % (r["ohr"], r["bhr"]) for r in picked))
' "$OUT/r.json" "${3:-}"
}

fail=0
ROWS=()
for pct in $SIZES; do
    cap="$(capacity_bytes "$pct")"
    echo "== cache $pct% = $cap bytes"
    "$BENCH" replay --trace "$TRACE" --capacity-bytes "$cap" --policy lru-sp \
        --decisions "$OUT/lru-sp.csv" --warmup-frac "$WARMUP" | tail -1
    "$BENCH" replay --trace "$TRACE" --capacity-bytes "$cap" --policy byte-mode \
        --decisions "$OUT/byte-mode.csv" --warmup-frac "$WARMUP" | tail -1
    "$PY" "$POLICY_DIR/replay_example.py" "$TRACE" "$OUT/ref.csv" --cache-size "$cap" --policy lrusp
    read -r ls_o ls_b <<<"$(ratios "$OUT/lru-sp.csv" "$cap")"
    read -r ref_o ref_b <<<"$(ratios "$OUT/ref.csv" "$cap")"
    read -r bm_o bm_b s3_o s3_b <<<"$(ratios "$OUT/byte-mode.csv" "$cap" S3FIFO)"
    if [ -z "$ls_b" ] || [ -z "$ref_b" ] || [ -z "$s3_b" ]; then
        echo "policy_compare.sh: compare.py gave no ratios for cache $pct%" >&2
        exit 1
    fi
    differ="$(paste -d, "$OUT/lru-sp.csv" "$OUT/ref.csv" | awk -F, 'NR > 1 && $2 != $4' | wc -l)"
    verdict="ok"
    if ! awk -v a="$ls_o" -v b="$ref_o" -v c="$ls_b" -v d="$ref_b" \
        'BEGIN { exit !((a - b) ^ 2 <= 0.0001 && (c - d) ^ 2 <= 0.0001) }'; then
        verdict="LRU-SP MISMATCH"
        fail=1
    fi
    if ! awk -v a="$bm_b" -v b="$s3_b" 'BEGIN { exit !(a >= b - 0.0005) }'; then
        verdict="$verdict BYTE-MODE BELOW S3FIFO"
        fail=1
    fi
    ROWS+=("| $pct% | $ls_o / $ls_b | $ref_o / $ref_b | $differ | $bm_o / $bm_b | $s3_o / $s3_b | $verdict |")
done

echo
echo "trace $TRACE (preset $PRESET, alpha $ALPHA, $REQUESTS requests, seed $SEED), warmup $WARMUP"
echo "| cache | lru-sp OHR / BHR | lrusp.py OHR / BHR | decisions differing | byte-mode OHR / BHR | S3FIFO OHR / BHR | check |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit "$fail"
