#!/usr/bin/env bash
# bench/slowread.sh — what slow viewers cost: N connections reading 8 MiB objects a few bytes at
# a time, while a probe measures a normal viewer's latency on the same shard.
#
#   bench/slowread.sh [OUT_DIR]
#
# One Arrow shard (SERVER_CORE), RAM tier RAM_BYTES; 8 × 8 MiB objects and 20 × 64 KiB probe
# objects, all cached first (SLOW_MODE=hit, the default; the 8 MiB objects under the host the
# slow clients send). SLOW_MODE=fill leaves the 8 MiB objects out: the first slow viewer of each
# starts its fill and the others join it (read-while-write, each fill committed while its viewers
# are still reading). Then:
#   1. baseline: wrk -c1 over the probe objects, PROBE_WINDOWS runs of PROBE_S s each (p50/p99 of
#      each; the phase's figure is the median over its windows, so one window that met a hiccup
#      of this shared VM does not decide it — every window's p99 is kept in the JSON), node RSS,
#      MemAvailable;
#   2. SLOW clients (bench/slow_clients.py: SO_RCVBUF 4 KiB, GET an 8 MiB object, read 32 bytes
#      every 5 s at a phase of its own, for HOLD_S s), spread over the 8 objects: half of them,
#      SETTLE_S s, node RSS
#      and MemAvailable, then the other half;
#   3. after SETTLE_S s: node RSS and MemAvailable (the largest of 5 samples), the probe again;
#   4. the slow clients end; the node's counters (slow viewers closed, pieces dropped).
# Reported: memory growth per slow connection (RSS and MemAvailable) from idle, and from half to
# all of the slow clients (the marginal cost of one more, apart from fixed bounds such as the
# RAM tier and the buffer pool filling), probe p99 with the slow clients ÷ idle baseline.
# Output: OUT_DIR/slowread.json and a line on stdout.
#
# Environment: SLOW_MODE [hit] SLOW [1000] HOLD_S [32] SETTLE_S [12] PROBE_S [2] PROBE_WINDOWS [5]
# PROBE_RT [1] RAM_BYTES [67108864]
# BASE_PORT [18600] SERVER_CORE [1] CLIENT_CORE [0] ARROW_BIN.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/install.sh
. "$BENCH_DIR/lib/install.sh"

OUT=${1:-$ROOT/bench/out/slowread-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
SLOW=${SLOW:-1000}
SLOW_MODE=${SLOW_MODE:-hit}
case "$SLOW_MODE" in hit | fill) ;; *) die "SLOW_MODE must be hit or fill, not $SLOW_MODE" ;; esac
HOLD_S=${HOLD_S:-32}
SETTLE_S=${SETTLE_S:-12}
PROBE_S=${PROBE_S:-2}
PROBE_WINDOWS=${PROBE_WINDOWS:-5}
# The slow clients must outlast the settle time, the samples and every probe window.
[ "$HOLD_S" -ge $((SETTLE_S + PROBE_WINDOWS * (PROBE_S + 1) + 2)) ] ||
    die "HOLD_S ($HOLD_S) is shorter than SETTLE_S + PROBE_WINDOWS × (PROBE_S + 1) + 2"
export BASE_PORT=${BASE_PORT:-18600}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then SERVER_CORE=${SERVER_CORE:-1}; else SERVER_CORE=${SERVER_CORE:-0}; fi
CLIENT_CORE=${CLIENT_CORE:-0}
ORIGIN_CORE=$CLIENT_CORE
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
ARROW_RAM_BYTES=${RAM_BYTES:-67108864}
ARROW_DISK_BYTES=${DISK_BYTES:-1073741824}
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/slowread-$$}
FILES=$ROOT/target/bench-scratch/slowread-files
mkdir -p "$SCRATCH"

bench_install wrk nginx || die "wrk and nginx are needed"
[ -x "$ARROW_BIN" ] || (cd "$ROOT" && cargo build --release -p arrow-server --bin arrow)
# shellcheck source=lib/peers.sh
. "$BENCH_DIR/lib/peers.sh"
cleanup() {
    bench_stop_all
    [ "${KEEP_SCRATCH:-0}" = 1 ] || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true

if [ ! -e "$FILES/.generated" ]; then
    rm -rf "$FILES"
    mkdir -p "$FILES/d8m" "$FILES/p64k" "$FILES/1k"
    head -c $((8 * 8 << 20)) /dev/urandom > "$FILES/.big"
    (cd "$FILES/d8m" && split -a 5 -d -b $((8 << 20)) ../.big "")
    head -c $((20 * 65536)) /dev/urandom > "$FILES/.small"
    (cd "$FILES/p64k" && split -a 4 -d -b 65536 ../.small "")
    head -c 1024 /dev/urandom > "$FILES/1k/0000"
    rm -f "$FILES/.big" "$FILES/.small"
    chmod -R a+rX "$FILES"
    touch "$FILES/.generated"
fi

start_origin "$FILES"
start_arrow
PORT=${PEER_PORT[arrow]}
PID=${PEER_PID[arrow]}
# The 8 MiB objects are cached under the host the slow clients send (bench/slow_clients.py:
# "bench.test"; the host is part of the cache key), so that every slow viewer gets a hit.
for pass in 1 2; do
    if [ "$SLOW_MODE" = hit ]; then
        for i in 0 1 2 3 4 5 6 7; do curl -s -o /dev/null -H "Host: bench.test" "http://127.0.0.1:$PORT/d8m/0000$i"; done
    fi
    for i in $(seq -f %04g 0 19); do curl -s -o /dev/null "http://127.0.0.1:$PORT/p64k/$i"; done
done
if [ "$SLOW_MODE" = hit ]; then
    [ "$(curl -s -o /dev/null -H "Host: bench.test" -w '%header{x-cache}' "http://127.0.0.1:$PORT/d8m/00000")" = HIT ] ||
        die "the 8 MiB objects were not cached"
fi

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$PID/status"; }
avail_kib() { awk '/^MemAvailable/ { print $2 }' /proc/meminfo; }
# The probe's wrk shares the client core with the slow clients' Python processes, whose wakeups
# (200 reads a second) would otherwise delay the probe's own client and count as the node's
# latency: with PROBE_RT=1 (the default) wrk runs at real-time priority (SCHED_FIFO), so the
# slow clients cannot run while it has a response to read. The node is not affected either way.
export PROBE_RT=${PROBE_RT:-1}
PROBE_PRIO=()
if [ "$PROBE_RT" = 1 ]; then
    chrt -f 50 true 2>/dev/null || die "PROBE_RT=1 needs chrt and the right to use SCHED_FIFO (root); PROBE_RT=0 runs the probe at normal priority"
    PROBE_PRIO=(chrt -f 50)
fi
probe() { # probe NAME: wrk -c1 over the probe objects; prints "p50_us p99_us requests"
    taskset -c "$CLIENT_CORE" "${PROBE_PRIO[@]}" wrk -t1 -c1 -d"${PROBE_S}s" --timeout 10s --latency -s "$BENCH_DIR/lib/keys.lua" \
        "http://127.0.0.1:$PORT/" -- cycle /p64k/ 20 4 > "$OUT/logs/probe-$1.txt" 2>&1 || true
    python3 -c '
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("WRK_JSON ")][0]
r = json.loads(line[len("WRK_JSON "):])
print(r["p50_us"], r["p99_us"], r["requests"])' "$OUT/logs/probe-$1.txt"
}
probe_windows() { # probe_windows NAME: PROBE_WINDOWS probes; prints "p50 p99 requests p99,p99,…"
    local k p50s=() p99s=() n=0 a b c
    for ((k = 1; k <= PROBE_WINDOWS; k++)); do
        read -r a b c < <(probe "$1-$k")
        p50s+=("$a"); p99s+=("$b"); n=$((n + c))
    done
    python3 -c '
import statistics, sys
p50, p99 = (list(map(int, a.split(","))) for a in sys.argv[1:3])
print(int(statistics.median(p50)), int(statistics.median(p99)), sys.argv[3], ",".join(map(str, p99)))' \
        "$(IFS=,; echo "${p50s[*]}")" "$(IFS=,; echo "${p99s[*]}")" "$n"
}

read -r P50_0 P99_0 N0 W0 < <(probe_windows idle)
RSS0=$(rss_kib)
AVAIL0=$(avail_kib)
log "idle: probe p50 ${P50_0} us p99 ${P99_0} us (median of windows; p99 per window ${W0}; $N0 requests), RSS ${RSS0} KiB, MemAvailable ${AVAIL0} KiB"

pids=()
per=$(((SLOW + 7) / 8))
start_slow() { # start_slow FIRST LAST HOLD: the slow clients of objects FIRST..LAST
    local i
    for ((i = $1; i <= $2; i++)); do
        taskset -c "$CLIENT_CORE" python3 "$BENCH_DIR/slow_clients.py" --addr "127.0.0.1:$PORT" \
            --path "/d8m/0000$i" --count "$per" --hold-s "$3" > "$OUT/logs/slow-$i.json" 2>&1 &
        pids+=($!)
        bench_track "$!"
    done
}
sample() { # sample: "max RSS KiB, min MemAvailable KiB, slow connections open" over 5 samples
    local r a rmax=0 amin=$AVAIL0 _
    for _ in 1 2 3 4 5; do
        r=$(rss_kib); a=$(avail_kib)
        [ "$r" -gt "$rmax" ] && rmax=$r
        [ "$a" -lt "$amin" ] && amin=$a
        sleep 0.2
    done
    echo "$rmax $amin $(ss -Htn state established "( sport = :$PORT )" | wc -l)"
}
# Half the slow clients first, then the other half: the growth between the two samples is what
# one more slow connection costs, apart from the fixed bounds (RAM tier, buffer pool) that the
# first half may still be filling.
start_slow 0 3 $((HOLD_S + SETTLE_S))
sleep "$SETTLE_S"
read -r RSSH AVAILH OPENH < <(sample)
log "with $OPENH slow connections open: RSS ${RSSH} KiB, MemAvailable ${AVAILH} KiB"
start_slow 4 7 "$HOLD_S"
sleep "$SETTLE_S"
read -r RSS1 AVAIL1 OPEN < <(sample)
# Where the node's memory is (anonymous mappings by size) and the tier's state, for the record.
cat "/proc/$PID/smaps" > "$OUT/logs/arrow-smaps-slow.txt" 2>/dev/null || true
curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" > "$OUT/logs/arrow-metrics-slow.txt" || true
read -r P50_1 P99_1 N1 W1 < <(probe_windows slow)
log "with $OPEN slow connections open: probe p50 ${P50_1} us p99 ${P99_1} us (p99 per window ${W1}), RSS ${RSS1} KiB, MemAvailable ${AVAIL1} KiB"
for p in "${pids[@]}"; do wait "$p" || true; done
curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" > "$OUT/logs/arrow-metrics.txt" || true

python3 - "$SLOW_MODE" "$OUT" "$OPEN" "$RSS0" "$RSS1" "$AVAIL0" "$AVAIL1" "$P50_0" "$P99_0" "$P50_1" "$P99_1" \
    "$OPENH" "$RSSH" "$AVAILH" "$W0" "$W1" <<'PY'
import glob, json, os, sys
mode, out, open_, rss0, rss1, av0, av1, p50_0, p99_0, p50_1, p99_1, openh, rssh, avh, w0, w1 = sys.argv[1:]
open_, rss0, rss1, av0, av1 = int(open_), int(rss0), int(rss1), int(av0), int(av1)
openh, rssh, avh = int(openh), int(rssh), int(avh)
more = max(open_ - openh, 1)
clients = {"connected": 0, "bytes": 0, "closed_by_server": 0, "errors": 0}
for f in glob.glob(f"{out}/logs/slow-*.json"):
    for line in open(f):
        if line.startswith("{"):
            for k, v in json.loads(line).items():
                clients[k] += v
metrics = {}
for line in open(f"{out}/logs/arrow-metrics.txt"):
    if line.startswith("arrow_") and " " in line:
        k, v = line.rsplit(" ", 1)
        metrics[k] = float(v)
n = max(open_, 1)
row = {
    "mode": mode, "slow_connections_open": open_, "clients": clients,
    "rss_growth_kib_per_conn": round((rss1 - rss0) / n, 2),
    "memavailable_drop_kib_per_conn": round((av0 - av1) / n, 2),
    "half_open": openh,
    "rss_marginal_kib_per_conn": round((rss1 - rssh) / more, 2),
    "memavailable_marginal_kib_per_conn": round((avh - av1) / more, 2),
    "probe_p50_us": [int(p50_0), int(p50_1)], "probe_p99_us": [int(p99_0), int(p99_1)],
    "probe_p99_ratio": round(int(p99_1) / max(int(p99_0), 1), 2),
    "probe_realtime": os.environ["PROBE_RT"] == "1",
    "probe_p99_us_per_window": [list(map(int, w0.split(","))), list(map(int, w1.split(",")))],
    "slow_viewers_closed": metrics.get("arrow_slow_viewers_closed_total"),
    "send_pieces_dropped": metrics.get("arrow_send_pieces_dropped_total"),
}
json.dump(row, open(f"{out}/slowread.json", "w"), indent=1)
print(f"slowread ({mode}): {open_} slow connections: RSS +{row['rss_growth_kib_per_conn']} KiB/conn, "
      f"MemAvailable -{row['memavailable_drop_kib_per_conn']} KiB/conn; from {openh} to {open_}: "
      f"RSS +{row['rss_marginal_kib_per_conn']} KiB, MemAvailable -{row['memavailable_marginal_kib_per_conn']} KiB "
      f"per connection; probe p99 {p99_0} -> {p99_1} us "
      f"(x{row['probe_p99_ratio']}), clients {clients}")
PY
