#!/usr/bin/env bash
# The test command: unit, model, crash, disk-failure, HTTP-node, cluster and DNS tests through
# real processes, plus tiny runs of every benchmark. Minutes, not hours, on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -l unlimited 2>/dev/null || true
cargo build --workspace --bins
export ARROW_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/arrow"
cargo test --workspace -- --test-threads="${ARROW_TEST_THREADS:-4}" "$@"
