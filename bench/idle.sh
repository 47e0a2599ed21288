#!/usr/bin/env bash
# bench/idle.sh — what an idle keep-alive viewer costs: N connections that each fetched one small
# object and then wait (as a player does between segments), Arrow against nginx proxy_cache.
#
#   bench/idle.sh [OUT_DIR]
#
# One Arrow shard and one nginx worker, each pinned to SERVER_CORE, both behind the same origin;
# the clients (bench/idle_clients.py) on CLIENT_CORE. Per round and server (alternating, the
# server restarted each time): a 1 KiB object is cached (two requests), then the server's RSS and
# MemAvailable are read; IDLE clients connect, each GETs the object once on a kept-alive
# connection, and all then stay idle for HOLD_S s. SETTLE_S s after the last answer (Arrow parks
# a connection idle for 200 ms: its read buffer goes) the RSS (the largest of 5 samples; nginx:
# master and workers) and MemAvailable (the smallest) are read again. At the end of the hold
# every client sends a second request on its connection, which must be answered 200.
# Reported: RSS growth and MemAvailable drop per idle connection, per server, and Arrow ÷ nginx
# of the RSS growth per round (median and range).
# With TLS=1 the viewers use HTTPS: both servers get the same ECDSA P-256 certificate and the
# configs of bench/tls_bench.sh (peers/arrow-tls.toml.in, peers/nginx-tls.conf.in).
# Output: OUT_DIR/idle.jsonl (one row per server and round) and a table on stdout.
#
# Environment: ROUNDS [3] IDLE [3000] HOLD_S [10] SETTLE_S [3] SERVERS ["arrow nginx"] TLS [0]
# BASE_PORT [18800] SERVER_CORE [1] CLIENT_CORE [0] ARROW_BIN.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/install.sh
. "$BENCH_DIR/lib/install.sh"

OUT=${1:-$ROOT/bench/out/idle-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-3000}
HOLD_S=${HOLD_S:-10}
SETTLE_S=${SETTLE_S:-3}
SERVERS=${SERVERS:-"arrow nginx"}
TLS=${TLS:-0}
export BASE_PORT=${BASE_PORT:-18800}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then SERVER_CORE=${SERVER_CORE:-1}; else SERVER_CORE=${SERVER_CORE:-0}; fi
CLIENT_CORE=${CLIENT_CORE:-0}
ORIGIN_CORE=$CLIENT_CORE
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
ARROW_RAM_BYTES=${RAM_BYTES:-67108864}
ARROW_DISK_BYTES=${DISK_BYTES:-1073741824}
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/idle-$$}
FILES=$ROOT/target/bench-scratch/idle-files
mkdir -p "$SCRATCH"
# nginx takes at most worker_connections (4096) at once.
[ "$IDLE" -le 4000 ] || die "IDLE must be at most 4000 (nginx's worker_connections)"

bench_install nginx || die "nginx is needed"
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

gen_files "$FILES" 1 0
start_origin "$FILES"

SCHEME=http CURL_K=() CLIENT_TLS=()
if [ "$TLS" = 1 ]; then
    command -v openssl >/dev/null || die "TLS=1 needs openssl"
    SCHEME=https CURL_K=(-k) CLIENT_TLS=(--tls)
    CERT="$SCRATCH/cert.pem" KEY="$SCRATCH/key.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
        -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 -keyout "$KEY" -out "$CERT" 2> /dev/null
    ARROW_HTTP_PORT=$((BASE_PORT + 7))
    # The HTTPS listeners of bench/tls_bench.sh (start_peer calls these).
    start_arrow() { start_tls_arrow; }
    start_nginx() { NGINX_CACHE_MAX=1g start_tls_nginx; }
fi

tree_rss_kib() { # RSS of PID and its children, KiB
    local pid=$1 total=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
        total=$((total + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
avail_kib() { awk '/^MemAvailable/ { print $2 }' /proc/meminfo; }

: > "$OUT/idle.jsonl"
for ((round = 1; round <= ROUNDS; round++)); do
    order=$SERVERS
    [ $((round % 2)) -eq 0 ] && order=$(echo "$SERVERS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for server in $order; do
        start_peer "$server"
        port=${PEER_PORT[$server]}
        pid=${PEER_PID[$server]}
        for _ in 1 2; do curl -s "${CURL_K[@]}" -o /dev/null "$SCHEME://127.0.0.1:$port/1k/0000"; done
        sleep 1
        rss0=$(tree_rss_kib "$pid")
        avail0=$(avail_kib)
        ready="$SCRATCH/ready-$server-$round"
        rm -f "$ready"
        taskset -c "$CLIENT_CORE" python3 "$BENCH_DIR/idle_clients.py" --addr "127.0.0.1:$port" \
            --path /1k/0000 --count "$IDLE" --hold-s "$HOLD_S" --ready-file "$ready" "${CLIENT_TLS[@]}" \
            > "$OUT/logs/clients-$server-$round.json" 2> "$OUT/logs/clients-$server-$round.err" &
        cpid=$!
        bench_track "$cpid"
        for ((i = 0; i < 600; i++)); do
            [ -e "$ready" ] && break
            sleep 0.1
        done
        [ -e "$ready" ] || die "$server: the idle clients were not all answered in 60 s"
        sleep "$SETTLE_S"
        rss1=0 avail1=$avail0
        for _ in 1 2 3 4 5; do
            r=$(tree_rss_kib "$pid"); a=$(avail_kib)
            [ "$r" -gt "$rss1" ] && rss1=$r
            [ "$a" -lt "$avail1" ] && avail1=$a
            sleep 0.2
        done
        open=$(ss -Htn state established "( sport = :$port )" | wc -l)
        parked=
        if [ "$server" = arrow ]; then
            parked=$(curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" |
                awk '$1 == "arrow_connections_parked" { print $2 }')
        fi
        wait "$cpid" || die "$server: idle clients failed (see $OUT/logs/clients-$server-$round.err)"
        stop_peer "$server"
        python3 - "$server" "$round" "$IDLE" "$open" "$rss0" "$rss1" "$avail0" "$avail1" "${parked:-}" \
            "$OUT/logs/clients-$server-$round.json" "$TLS" >> "$OUT/idle.jsonl" <<'PY'
import json, sys
server, rnd, idle, open_, rss0, rss1, av0, av1, parked, clients, tls = sys.argv[1:]
c = json.loads(open(clients).read().strip().splitlines()[-1])
n = max(int(open_), 1)
print(json.dumps({
    "server": server, "round": int(rnd), "idle": int(idle), "open": int(open_), "tls": tls == "1",
    "rss_kib": [int(rss0), int(rss1)], "memavailable_kib": [int(av0), int(av1)],
    "rss_growth_kib_per_conn": round((int(rss1) - int(rss0)) / n, 2),
    "memavailable_drop_kib_per_conn": round((int(av0) - int(av1)) / n, 2),
    "arrow_connections_parked": int(float(parked)) if parked else None,
    "clients": c,
}))
PY
        log "$server round $round: $(tail -1 "$OUT/idle.jsonl")"
    done
done

python3 - "$OUT/idle.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in rows if r["clients"]["second_ok"] != r["idle"] or r["clients"]["errors"]]
def med(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"
print("| server | idle connections | RSS growth per connection, KiB | MemAvailable drop per connection, KiB | second requests answered 200 |")
print("|---|---|---|---|---|")
for s in dict.fromkeys(r["server"] for r in rows):
    rs = [r for r in rows if r["server"] == s]
    print(f"| {s} | {rs[0]['idle']} | {med([r['rss_growth_kib_per_conn'] for r in rs])} | "
          f"{med([r['memavailable_drop_kib_per_conn'] for r in rs])} | "
          f"{sum(r['clients']['second_ok'] for r in rs)} of {sum(r['idle'] for r in rs)} |")
by = {(r["server"], r["round"]): r for r in rows}
ratios = [by[("arrow", k)]["rss_growth_kib_per_conn"] / by[("nginx", k)]["rss_growth_kib_per_conn"]
          for (s, k) in by if s == "arrow" and ("nginx", k) in by and by[("nginx", k)]["rss_growth_kib_per_conn"] > 0]
if ratios:
    print(f"\nArrow ÷ nginx, RSS growth per idle connection (same rounds): {med(ratios)}")
parked = [r["arrow_connections_parked"] for r in rows if r["server"] == "arrow"]
if parked:
    print(f"arrow_connections_parked at the sample: {parked}")
if bad:
    print(f"FAILED: {len(bad)} runs lost an idle connection or its second answer", file=sys.stderr)
    sys.exit(1)
PY
