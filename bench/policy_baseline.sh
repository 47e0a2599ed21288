#!/usr/bin/env bash
# policy_baseline.sh SUFFIX — S3FIFO and PFOO-L for the twelve kit configurations of the traces
# $TRACE_DIR/{base,churn}_a{0.8,1.0}_SUFFIX.csv (made by policy_compare.sh), for the byte-freq
# sweep tool (storage/examples/byte_freq_sweep.rs). Writes $TRACE_DIR/baseline_SUFFIX.tsv:
#   trace pct capacity_bytes s3fifo_ohr s3fifo_bhr pfoo_l_bhr goal_bhr(25 % of the gap)
set -euo pipefail
REPO="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
POLICY_DIR="${POLICY_DIR:-$REPO/bench/policy-kit}"
PY="${VENV:-$REPO/../venv}/bin/python"
TRACE_DIR="${TRACE_DIR:-$REPO/../traces}"
S="${1:-n300000_s42}"
out="$TRACE_DIR/baseline_$S.tsv"
: >"$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for t in base_a0.8 base_a1.0 churn_a0.8 churn_a1.0; do
    awk -F, 'NR == 1 { print "key,hit"; next } { print $2 ",0" }' "$TRACE_DIR/${t}_$S.csv" >"$tmp/zero.csv"
    for p in 1 5 10; do
        "$PY" "$POLICY_DIR/compare.py" "$TRACE_DIR/${t}_$S.csv" "$tmp/zero.csv" --cache-size "$p%" \
            --algos S3FIFO --json "$tmp/b.json" >/dev/null 2>&1
        "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1])); r = {x["policy"]: x for x in d["results"]}
s, b = r["S3FIFO"], r["PFOO-L upper bound"]
print(sys.argv[2], sys.argv[3], d["cache_bytes"], "%.4f %.4f %.4f %.4f" % (
    s["ohr"], s["bhr"], b["bhr"], s["bhr"] + 0.25 * (b["bhr"] - s["bhr"])))' "$tmp/b.json" "$t" "$p" >>"$out"
    done
done
cat "$out"
