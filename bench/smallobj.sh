#!/usr/bin/env bash
# bench/smallobj.sh — how much of a slab small objects can use, and how fast they commit.
#
#   bench/smallobj.sh [SLAB_DIR]
#
# Runs `arrow-bench fill-ratio` (storage engine only, no HTTP): for 1 KiB, 4 KiB and 64 KiB
# bodies, a new slab of SIZE_BYTES is filled by CONCURRENCY writers (200 B of metadata and a
# ~50 B key per object, as the server stores media) until the disk's first eviction; it prints
# stored body bytes ÷ slab size and objects committed per second (up to that eviction).
# Commits are bound by the disk's fdatasync, so right after, in the same directory, fio writes
# 4 KiB blocks each followed by its own fdatasync (FIO_SECONDS [4]) and the script prints each
# commit rate ÷ fio's synced writes/s (the disk's own rate, measured in the same minute).
#
# Environment: SIZE_BYTES [268435456] CONCURRENCY [64] BODIES ["1024,4096,65536"].
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
DIR=${1:-$ROOT/target/bench-scratch}
mkdir -p "$DIR"
BIN=$ROOT/target/release/arrow-bench
(cd "$ROOT" && cargo build --release -q -p arrow-bench)
TABLE=$("$BIN" fill-ratio --file "$DIR/smallobj-$$.slab" --size-bytes "${SIZE_BYTES:-268435456}" \
    --concurrency "${CONCURRENCY:-64}" --bodies "${BODIES:-1024,4096,65536}")
echo "$TABLE"
if command -v fio >/dev/null; then
    FIO_FILE="$DIR/smallobj-fio-$$.tmp"
    IOPS=$(fio --name=synced --filename="$FIO_FILE" --rw=randwrite --bs=4k --direct=1 --fdatasync=1 \
        --size=64m --runtime="${FIO_SECONDS:-4}" --time_based --ioengine=psync --output-format=json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
    rm -f "$FIO_FILE"
    echo "fio synced 4 KiB writes (each with its own fdatasync), same directory: $IOPS/s"
    echo "$TABLE" | awk -F'|' -v iops="$IOPS" \
        '$2 ~ / B $/ {printf "%s: commits/s ÷ fio synced writes/s = %.1f\n", $2, $5 / iops}'
else
    echo "fio not installed: no synced-write reference" >&2
fi
