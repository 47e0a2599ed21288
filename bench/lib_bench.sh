#!/usr/bin/env bash
# bench/lib_bench.sh — libarrow_cdn (lib/) measured against peers in the same run.
#
# 1. Lookups per second per core from C (lib/bench/lookup_bench.c, linked with
#    libarrow_cdn.a, pinned to LIB_CORE) ÷ the node's own in-process placement per lookup
#    (`arrow-bench placement`: arrow_cluster::designated over a snapshot), same keys, same
#    core, over a table kept fresh by `arrow-bench table-writer` (3 nodes, 100 ms comets).
#    Goal: ≥ 10 M lookups/s per core. Two key sets: 16 Ki distinct keys (the library's
#    placement cache has 16 Ki direct-mapped entries: a title's objects share one key) and
#    1 Mi distinct keys (nearly every lookup computes the placement).
# 2. nginx + Lua routing CPU per request ÷ plain nginx proxying: one front worker on
#    FRONT_CORE proxies to a backend nginx (`return 200`), wrk on CLIENT_CORE with paths of
#    10,000 titles; CPU = the front worker's utime+stime (/proc) over the requests wrk
#    completed. Goal ≤ 1.05.
# PowerDNS + lua2 + the library is measured by bench/dns_bench.sh (beside the seed's
# lua2-only setup and Arrow's own responder).
#
# Usage: bench/lib_bench.sh   (env: ROUNDS=5 DURATION_S=5 LIB_SECONDS=2 CONNECTIONS=32 LIB_CORE=1
#                               FRONT_CORE=1 CLIENT_CORE=0 BASE_PORT=15400 KEEP_WORK=0)
# Needs gcc, nginx + libnginx-mod-http-lua, wrk (scripts/setup.sh; bench/run.sh installs wrk).
set -euo pipefail

DURATION_S=${DURATION_S:-5}
ROUNDS=${ROUNDS:-5}
LIB_SECONDS=${LIB_SECONDS:-2}
CONNECTIONS=${CONNECTIONS:-32}
LIB_CORE=${LIB_CORE:-1}
FRONT_CORE=${FRONT_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
BASE_PORT=${BASE_PORT:-15400}
KEEP_WORK=${KEEP_WORK:-0}
BACKEND_PORT=$((BASE_PORT + 1))
PLAIN_PORT=$((BASE_PORT + 2))
LUA_PORT=$((BASE_PORT + 3))
LUAVAR_PORT=$((BASE_PORT + 4))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d /tmp/arrow-lib-bench.XXXXXX)
TABLE=/dev/shm/arrow-lib-bench-$$
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -f "$TABLE"
    if [ "$KEEP_WORK" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "== $*" >&2; }

for tool in gcc nginx wrk; do
    command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || { log "libnginx-mod-http-lua is required"; exit 1; }

log "building arrow-bench and arrow-lib (release)"
(cd "$ROOT" && cargo build --release -q -p arrow-bench -p arrow-lib)
gcc -O2 -Wall -Wextra -I "$ROOT/lib/include" "$ROOT/lib/bench/lookup_bench.c" \
    "$TARGET/release/libarrow_cdn.a" -lpthread -ldl -lm -o "$WORK/lookup_bench"

# shellcheck source=lib/lib_fronts.sh
. "$ROOT/bench/lib/lib_fronts.sh"
lib_fronts_setup "$WORK" "$TABLE" "$BACKEND_PORT" "$PLAIN_PORT" "$LUA_PORT" "$LUAVAR_PORT"

# --- 1. lookups/s ---------------------------------------------------------------------------
# ROUNDS rounds; in each, the library and the node's placement back to back on the same core.
RESULTS="$WORK/results.txt"
: >"$RESULTS"
for ((round = 1; round <= ROUNDS; round++)); do
    for keys in 16384 1048576; do
        out=$(taskset -c "$LIB_CORE" "$WORK/lookup_bench" "$WORK/arrow.toml" "$LIB_SECONDS" "$keys")
        lib=$(sed -n 's/.*lib_lookups_per_s=\([0-9]*\).*/\1/p' <<<"$out")
        route=$(sed -n 's/.*lib_routes_per_s=\([0-9]*\).*/\1/p' <<<"$out")
        out=$(taskset -c "$LIB_CORE" "$TARGET/release/arrow-bench" placement --nodes 3 --keys "$keys" \
            --seconds "$LIB_SECONDS")
        peer=$(sed -n 's/.*placement_lookups_per_s=\([0-9]*\).*/\1/p' <<<"$out")
        echo "lookup $round $keys $lib $route $peer" >>"$RESULTS"
        log "round $round keys $keys: lib $lib/s, route $route/s, node placement $peer/s"
    done
done

# --- 2. nginx + Lua vs plain nginx ----------------------------------------------------------
common="daemon off; master_process on; worker_processes 1; user root;"
start_nginx() { # name core
    taskset -c "$2" env ARROW_LIB="$TARGET/release/libarrow_cdn.so" nginx -p "$WORK/$1" \
        -c "$WORK/$1/nginx.conf" -g "$common pid $WORK/$1/nginx.pid; error_log $WORK/$1/error.log;" &
    PIDS+=($!)
}
start_nginx backend "$CLIENT_CORE"
start_nginx plain "$FRONT_CORE"
start_nginx lua "$FRONT_CORE"
start_nginx luavar "$FRONT_CORE"
for port in $BACKEND_PORT $PLAIN_PORT $LUA_PORT $LUAVAR_PORT; do
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
probe=$(curl -s -D- -o /dev/null -H "Host: cdn.bench.test" "http://127.0.0.1:$LUA_PORT/v/title-1/a.ts")
grep -q "^HTTP/1.1 200" <<<"$probe" || { log "nginx+Lua did not route:"; echo "$probe"; cat "$WORK/lua/error.log"; exit 1; }
worker_cpu_ticks() { # master pid file → utime+stime of its worker, in clock ticks
    local w
    w=$(pgrep -P "$(cat "$1")" | head -1)
    awk '{print $14 + $15}' "/proc/$w/stat"
}
# ROUNDS rounds, the three fronts in a rotated order in each: CPU per request of each front's
# worker over the requests wrk completed.
FRONTS=("plain:$PLAIN_PORT" "luavar:$LUAVAR_PORT" "lua:$LUA_PORT")
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < 3; k++)); do
        name_port=${FRONTS[$(((k + round - 1) % 3))]}
        name=${name_port%%:*}
        port=${name_port##*:}
        before=$(worker_cpu_ticks "$WORK/$name/nginx.pid")
        out=$(taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" -s "$WORK/titles.lua" \
            "http://127.0.0.1:$port/")
        after=$(worker_cpu_ticks "$WORK/$name/nginx.pid")
        reqs=$(awk '/requests in/ {print $1}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
        [ -z "$non2xx" ] || { log "$name: $non2xx non-2xx responses"; exit 1; }
        cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v r="$reqs" \
            'BEGIN { printf "%.2f", t / hz * 1e6 / r }')
        rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
        echo "front $round $name $rps $cpu_us" >>"$RESULTS"
        log "round $round $name: $rps req/s, $cpu_us µs CPU per request in the front worker"
    done
done

echo
echo "lib_bench: $(uname -srm), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(date -u +%FT%TZ)"
echo "$ROUNDS rounds; lookups: lib/bench/lookup_bench.c on core $LIB_CORE, ${LIB_SECONDS}s each; nginx: wrk -t1 -c$CONNECTIONS -d${DURATION_S}s, fronts rotated per round"
python3 - "$RESULTS" <<'PY2'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def mr(v):
    return f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
def mn(v):
    return f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
print("median (range) over rounds")
for keys in ("16384", "1048576"):
    lk = [r for r in rows if r[0] == "lookup" and r[2] == keys]
    lib = [float(r[3]) for r in lk]
    route = [float(r[4]) for r in lk]
    peer = [float(r[5]) for r in lk]
    print(f"keys {keys}: lib arrow_lookup/s {mn(lib)}; arrow_route/s (host+path, md5) {mn(route)}; "
          f"node placement/s {mn(peer)}; lib/node same round {mr([a / b for a, b in zip(lib, peer)])}")
fr = [r for r in rows if r[0] == "front"]
by = {}
for r in fr:
    by.setdefault(r[2], {})[r[1]] = float(r[4])
rounds = sorted(by.get("plain", {}))
for name, label in (("plain", "nginx proxy (plain)"), ("luavar", "nginx + Lua, constant upstream"),
                    ("lua", "nginx + Lua + libarrow_cdn")):
    print(f"{label:34s} cpu µs/request {mn([by[name][r] for r in rounds])}")
lp = [by["lua"][r] / by["plain"][r] for r in rounds]
lv = [by["lua"][r] / by["luavar"][r] for r in rounds]
vp = [by["luavar"][r] / by["plain"][r] for r in rounds]
print(f"nginx+lua+lib / plain, same round: {mr(lp)} (goal <= 1.05); "
      f"lua without lib / plain: {mr(vp)}; lib's share (lua / lua without lib): {mr(lv)}")
PY2
