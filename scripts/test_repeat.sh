#!/usr/bin/env bash
# scripts/test_repeat.sh [N] — run CI's command (.ci/run: fmt, clippy, the README's test command)
# N times (default 10) in a row, each on a fresh clone of this repository's HEAD, with one
# target directory kept between runs (the first run builds from scratch). Prints one line per
# run and exits non-zero if any run failed. How the "ten times in a row" figure was measured.
set -u
N=${1:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/arrow-test-repeat}
COMMIT=$(git -C "$ROOT" rev-parse HEAD)
rm -rf "$WORK" && mkdir -p "$WORK"
export CARGO_TARGET_DIR=$WORK/target
echo "commit $COMMIT"
failed=0
for i in $(seq 1 "$N"); do
    rm -rf "$WORK/src"
    git clone -q "$ROOT" "$WORK/src" && git -C "$WORK/src" checkout -q "$COMMIT"
    start=$(date +%s)
    (cd "$WORK/src" && ARROW_BIN= bash .ci/run) > "$WORK/run-$i.log" 2>&1
    rc=$?
    passed=$(grep -o "[0-9]* passed" "$WORK/run-$i.log" | awk '{s+=$1} END {print s+0}')
    bad=$(grep -o "[0-9]* failed" "$WORK/run-$i.log" | awk '{s+=$1} END {print s+0}')
    echo "run $i $(date -u +%H:%M:%SZ) rc=$rc $(( $(date +%s) - start ))s passed=$passed failed=$bad (log: $WORK/run-$i.log)"
    [ "$rc" = 0 ] || failed=1
done
exit "$failed"
