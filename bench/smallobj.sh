#!/usr/bin/env bash
# bench/smallobj.sh — how much of a slab small objects can use, and how fast they commit.
#
#   bench/smallobj.sh [SLAB_DIR]
#
# Runs `arrow-bench fill-ratio` (storage engine only, no HTTP): for 1 KiB, 4 KiB and 64 KiB
# bodies, a new slab of SIZE_BYTES is filled by CONCURRENCY writers (200 B of metadata and a
# ~50 B key per object, as the server stores media) until the disk's first eviction; it prints
# stored body bytes ÷ slab size and objects committed per second (up to that eviction).
#
# Environment: SIZE_BYTES [268435456] CONCURRENCY [64] BODIES ["1024,4096,65536"].
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
DIR=${1:-$ROOT/target/bench-scratch}
mkdir -p "$DIR"
BIN=$ROOT/target/release/arrow-bench
(cd "$ROOT" && cargo build --release -q -p arrow-bench)
"$BIN" fill-ratio --file "$DIR/smallobj-$$.slab" --size-bytes "${SIZE_BYTES:-268435456}" \
    --concurrency "${CONCURRENCY:-64}" --bodies "${BODIES:-1024,4096,65536}"
