#!/usr/bin/env bash
# bench/send_floor.sh — the sender's CPU for one send(2) of a body over loopback TCP on this
# machine (bench/floor/send_floor.c), for 64 KiB and 1 MiB bodies, ROUNDS times: the floor under
# the CPU per hit of any server that copies bodies into its sockets (Arrow's disk-tier hits,
# nginx without sendfile), to read bench/disktier.sh's CPU figures against.
#
#   bench/send_floor.sh        (env: ROUNDS [3] SENDER_CORE [1] RECEIVER_CORE [0])
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SENDER_CORE=${SENDER_CORE:-1}
RECEIVER_CORE=${RECEIVER_CORE:-0}
[ "$(nproc)" -ge 2 ] || { SENDER_CORE=0; RECEIVER_CORE=0; }
BIN=$(mktemp /tmp/send_floor.XXXXXX)
trap 'rm -f "$BIN"' EXIT
gcc -O2 -Wall -Wextra -o "$BIN" "$ROOT/bench/floor/send_floor.c" -lpthread
for ((r = 1; r <= ROUNDS; r++)); do
    for size in 65536 1048576; do
        count=$((size >= 1048576 ? 2000 : 20000))
        echo "round=$r $("$BIN" "$size" "$count" "$SENDER_CORE" "$RECEIVER_CORE")"
    done
done
