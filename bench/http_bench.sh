#!/usr/bin/env bash
# bench/http_bench.sh — Arrow against nginx proxy_cache, Varnish and Traffic Server over HTTP,
# same origin, same keys, same machine, peers alternating within each round.
#
#   bench/http_bench.sh OUT_DIR          (normally called by bench/run.sh, which sets the env)
#
# Environment (defaults in brackets):
#   PEERS ["arrow nginx varnish ats"]   SCENARIOS ["hit1k hit1m longtail miss"]
#   ROUNDS [3]  DURATION_S [3]  CONNECTIONS [64]  SMOKE [0]  ARROW_BIN [target/release/arrow]
#   BASE_PORT [18400]  SERVER_CORE [1, or 0 on one CPU]  CLIENT_CORE [0]
#   SMALL_COUNT [1000]  LARGE_COUNT [200]  MISS_PER_KEY [16]  ORIGIN [auto|python]  WRK [wrk]
#
# Layout on 2 cores: every cache runs confined to SERVER_CORE (Arrow: one shard pinned there;
# nginx: one worker; Varnish and Traffic Server: the whole process under taskset), while wrk (one
# thread, CONNECTIONS connections) and the origin share CLIENT_CORE. Each peer thus gets the same
# single core, and the load generator never competes with the server it measures.
#
# Scenarios:
#   hit1k     1 KiB objects, SMALL_COUNT keys cycled in turn             (all hits after warm-up)
#   hit1m     1 MiB objects, LARGE_COUNT keys cycled in turn             (all hits after warm-up)
#   longtail  1 MiB objects, 96% of requests on 5 keys, 4% uniform over the rest (all hits)
#   miss      fresh keys, each requested MISS_PER_KEY times in a row by the concurrent
#             connections: origin requests per key shows request coalescing (ideal 1.0)
# A hit scenario's run is "proven" when the origin's request count did not grow during it.
#
# Output: OUT_DIR/runs.jsonl (one JSON object per wrk run), OUT_DIR/machine.json, logs under
# OUT_DIR/logs. Exit status 1 when a smoke run fails its checks.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=${1:?usage: http_bench.sh OUT_DIR}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)

# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"

PEERS=${PEERS:-"arrow nginx varnish ats"}
SCENARIOS=${SCENARIOS:-"hit1k hit1m longtail miss"}
ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-3}
CONNECTIONS=${CONNECTIONS:-64}
SMOKE=${SMOKE:-0}
BASE_PORT=${BASE_PORT:-18400}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then SERVER_CORE=${SERVER_CORE:-1}; else SERVER_CORE=${SERVER_CORE:-0}; fi
CLIENT_CORE=${CLIENT_CORE:-0}
ORIGIN_CORE=${ORIGIN_CORE:-$CLIENT_CORE}
SMALL_COUNT=${SMALL_COUNT:-1000}
LARGE_COUNT=${LARGE_COUNT:-200}
MISS_PER_KEY=${MISS_PER_KEY:-16}
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
ARROW_RAM_BYTES=${ARROW_RAM_BYTES:-268435456}
# 4 GiB: a slab holds one large object per 64 KiB, and full mode's miss rounds add ~75k keys; with
# 1 GiB, LRU-SP evicted 1 MiB objects (highest t*s/p) and hit1m saw origin requests.
ARROW_DISK_BYTES=${ARROW_DISK_BYTES:-4294967296}
ATS_SPAN_BYTES=${ATS_SPAN_BYTES:-1073741824}
# Slab files need O_DIRECT, so a real file system (not tmpfs /tmp).
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/http-$$}
FILES=${FILES:-$ROOT/target/bench-scratch/files-$SMALL_COUNT-$LARGE_COUNT}
TCK=$(clk_tck)

mkdir -p "$SCRATCH"
# shellcheck source=lib/peers.sh
. "$BENCH_DIR/lib/peers.sh"

cleanup() {
    bench_stop_all
    if [ "${KEEP_SCRATCH:-0}" != 1 ]; then rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
set -o errtrace
trap 'echo "bench: http_bench.sh failed at line $LINENO: $BASH_COMMAND" >&2' ERR

[ -x "$ARROW_BIN" ] || die "no arrow binary at $ARROW_BIN (cargo build --release -p arrow-server --bin arrow)"
ulimit -n 65536 2>/dev/null || true
WRK=${WRK-wrk}   # WRK= (empty) forces the curl fallback of the smoke mode
HAVE_WRK=0
[ -n "$WRK" ] && command -v "$WRK" >/dev/null 2>&1 && HAVE_WRK=1
[ "$HAVE_WRK" = 1 ] || [ "$SMOKE" = 1 ] || die "wrk is not installed"

# --- peers available ---------------------------------------------------------------------------
declare -A NEEDS=([arrow]="" [nginx]=nginx [varnish]=varnishd [ats]=traffic_server)
RUN_PEERS=()
for p in $PEERS; do
    cmd=${NEEDS[$p]-missing}
    if [ "$cmd" = missing ]; then die "unknown peer $p"; fi
    if [ -n "$cmd" ] && ! command -v "$cmd" >/dev/null 2>&1; then
        log "peer $p skipped: $cmd not installed"
        continue
    fi
    RUN_PEERS+=("$p")
done
ports_free "$ORIGIN_PORT" "${PEER_PORT[arrow]}" "$ARROW_ADMIN_PORT" "${PEER_PORT[nginx]}" \
    "${PEER_PORT[varnish]}" "${PEER_PORT[ats]}" || die "ports from $BASE_PORT are taken (set BASE_PORT)"

# --- machine ------------------------------------------------------------------------------------
GIT_HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$OUT/machine.json" "$NCPU" "$SERVER_CORE" "$CLIENT_CORE" "$DURATION_S" "$ROUNDS" \
    "$CONNECTIONS" "$SMOKE" "$ARROW_BIN" "$GIT_HEAD" <<'PY'
import json, os, platform, sys, time
out, ncpu, score, ccore, dur, rounds, conns, smoke, arrow, head = sys.argv[1:]
model = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
mem_kib = 0
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem_kib = int(line.split()[1])
except OSError:
    pass
json.dump({
    "nproc": int(ncpu), "kernel": platform.release(), "cpu_model": model,
    "mem_gib": round(mem_kib / 1048576, 1), "loadavg_start": open("/proc/loadavg").read().split()[:3],
    "server_core": int(score), "client_core": int(ccore), "duration_s": int(dur),
    "rounds": int(rounds), "connections": int(conns), "smoke": smoke == "1", "arrow_bin": arrow,
    "arrow_bin_built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(arrow))),
    "git_head": head, "started_utc": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
}, open(out, "w"), indent=1)
PY

# --- origin -------------------------------------------------------------------------------------
gen_files "$FILES" "$SMALL_COUNT" "$LARGE_COUNT"
start_origin "$FILES"

# --- peers --------------------------------------------------------------------------------------
STARTED=()
for p in "${RUN_PEERS[@]}"; do
    if start_peer "$p"; then
        STARTED+=("$p")
    else
        log "peer $p failed to start; left out of this run"
        stop_peer "$p" || true
    fi
done
[ "${#STARTED[@]}" -gt 0 ] || die "no peer started"

# scenario → "PREFIX COUNT DIGITS" of its key set (the miss scenario has none)
keyset() {
    case $1 in
        hit1k) echo "/1k/ $SMALL_COUNT 4" ;;
        hit1m | longtail) echo "/1m/ $LARGE_COUNT 3" ;;
        *) echo "" ;;
    esac
}

# warm PEER PREFIX COUNT DIGITS: request every key twice; echo "hits_on_second_pass total".
warm() {
    local peer=$1 prefix=$2 count=$3 digits=$4 port=${PEER_PORT[$1]} cfg="$SCRATCH/warm-$1.curl" i pass
    : > "$cfg"
    for ((i = 0; i < count; i++)); do
        printf 'url = "http://127.0.0.1:%s%s%0*d"\noutput = "/dev/null"\n' "$port" "$prefix" "$digits" "$i" >> "$cfg"
    done
    for pass in 1 2; do
        curl -s -H 'X-Debug: X-Cache' --max-time 120 -K "$cfg" \
            -w '%{http_code} %header{x-cache}\n' > "$SCRATCH/warm-$peer-$pass.txt" || true
    done
    # Traffic Server's xdebug says "hit-fresh"; the others say HIT.
    echo "$(grep -ci '^200 .*hit' "$SCRATCH/warm-$peer-2.txt" || true) $count"
}

WARM_JSON="$OUT/warm.jsonl"
: > "$WARM_JSON"
for p in "${STARTED[@]}"; do
    declare -A seen=()
    for s in $SCENARIOS; do
        ks=$(keyset "$s")
        [ -n "$ks" ] || continue
        [ -z "${seen[$ks]:-}" ] || continue
        seen[$ks]=1
        # shellcheck disable=SC2086
        read -r hits total < <(warm "$p" $ks)
        log "warm $p ${ks%% *}: $hits/$total hits on the second pass"
        echo "{\"peer\":\"$p\",\"keys\":\"${ks%% *}\",\"second_pass_hits\":$hits,\"keys_total\":$total}" >> "$WARM_JSON"
    done
    unset seen
done
origin_settle

# --- measured runs ------------------------------------------------------------------------------
RUNS="$OUT/runs.jsonl"
: > "$RUNS"
LUA="$BENCH_DIR/lib/keys.lua"
FAILED=0

# curl_run PEER URLFILE: the smoke fallback without wrk — one curl walks every key once over a
# kept-alive connection; prints the same WRK_JSON line as keys.lua's done().
curl_run() {
    local t0 t1
    t0=$(date +%s%N)
    curl -s --max-time 60 -K "$2" -w '%{http_code} %{time_total}\n' > "$SCRATCH/curl-run.txt" || true
    t1=$(date +%s%N)
    python3 - "$SCRATCH/curl-run.txt" "$t0" "$t1" <<'PY'
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
lat = sorted(float(r[1]) * 1e6 for r in rows)
bad = sum(1 for r in rows if not r[0].startswith("2"))
pct = lambda q: int(lat[min(len(lat) - 1, int(q / 100 * len(lat)))]) if lat else 0
print("WRK_JSON " + json.dumps({
    "requests": len(rows), "duration_us": (int(sys.argv[3]) - int(sys.argv[2])) // 1000,
    "bytes": 0, "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99), "p999_us": pct(99.9),
    "max_us": int(lat[-1]) if lat else 0, "mean_us": sum(lat) / len(lat) if lat else 0,
    "err_connect": 0, "err_read": 0, "err_write": 0, "err_status": bad, "err_timeout": 0}))
PY
}

# measure ROUND SCENARIO PEER
measure() {
    local round=$1 s=$2 p=$3 port=${PEER_PORT[$3]} args=() prefix="" tool=wrk
    local url="http://127.0.0.1:$port/"
    case $s in
        hit1k) args=(cycle /1k/ "$SMALL_COUNT" 4) ;;
        hit1m) args=(cycle /1m/ "$LARGE_COUNT" 3) ;;
        longtail) args=(longtail /1m/ "$LARGE_COUNT" 3 5 96) ;;
        miss)
            prefix="/miss/$p-r$round-$$-$RANDOM/"
            args=(miss "$prefix" "$MISS_PER_KEY")
            ;;
    esac
    local load0 load1 o0 o1 c0 c1 off0 line client_ticks=""
    load0=$(loadavg1)
    origin_settle
    o0=$(origin_requests)
    off0=$(stat -c %s "$ORIGIN_LOG")
    c0=$(cpu_ticks "${PEER_PID[$p]}")
    local sc0 cc0 sc1 cc1
    sc0=$(core_stat "$SERVER_CORE")
    cc0=$(core_stat "$CLIENT_CORE")
    if [ "$HAVE_WRK" = 1 ]; then
        # wrk runs under a bash whose children's CPU time (cutime+cstime, after the wait) is
        # the client's CPU: a run whose client used ~a whole core was bound by wrk, not the server.
        local out_txt="$OUT/logs/wrk-$s-$p-r$round.txt"
        taskset -c "$CLIENT_CORE" bash -c '"$@"; awk '"'"'{ sub(/^[0-9]+ \(.*\) /, ""); print "CLIENT_TICKS", $14 + $15 }'"'"' /proc/$$/stat' \
            _ "$WRK" -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" --timeout 10s --latency -s "$LUA" "$url" \
            -- "${args[@]}" > "$out_txt" 2> "$OUT/logs/wrk.stderr" || true
        line=$(grep '^WRK_JSON ' "$out_txt" || true)
        client_ticks=$(awk '$1 == "CLIENT_TICKS" { print $2 }' "$out_txt")
    else
        tool=curl
        local cfg="$SCRATCH/run.curl" i
        : > "$cfg"
        for ((i = 0; i < SMALL_COUNT; i++)); do
            printf 'url = "http://127.0.0.1:%s/1k/%04d"\noutput = "/dev/null"\n' "$port" "$i" >> "$cfg"
        done
        line=$(curl_run "$p" "$cfg")
    fi
    c1=$(cpu_ticks "${PEER_PID[$p]}")
    sc1=$(core_stat "$SERVER_CORE")
    cc1=$(core_stat "$CLIENT_CORE")
    origin_settle
    o1=$(origin_requests)
    load1=$(loadavg1)
    if [ -z "$line" ]; then
        log "run $s/$p round $round: no result (see $OUT/logs/wrk-$s-$p-r$round.txt)"
        FAILED=1
        return
    fi
    local keys=0 miss_origin=0
    if [ "$s" = miss ]; then
        # distinct fresh keys that reached the origin during this run
        # and the origin requests for them (other peers' stragglers are not counted)
        tail -c +$((off0 + 1)) "$ORIGIN_LOG" | awk -v pre="$prefix" 'index($1, pre) == 1 { print $1 }' \
            > "$SCRATCH/miss-keys.txt"
        keys=$(sort -u "$SCRATCH/miss-keys.txt" | wc -l)
        miss_origin=$(wc -l < "$SCRATCH/miss-keys.txt")
        # keys the origin saw more than once, for the record
        { sort "$SCRATCH/miss-keys.txt" | uniq -c | awk '$1 > 1' | head -20 || true; } \
            > "$OUT/logs/miss-dup-$p-r$round.txt"
    fi
    python3 - "$RUNS" "${line#WRK_JSON }" "$round" "$s" "$p" "$tool" "$c0" "$c1" "$TCK" "$o0" "$o1" \
        "$keys" "$load0" "$load1" "$CONNECTIONS" "$DURATION_S" "$NCPU" "$client_ticks" \
        "$sc0" "$sc1" "$cc0" "$cc1" "$miss_origin" <<'PY'
import json, sys
(out, js, rnd, scen, peer, tool, c0, c1, tck, o0, o1, keys, l0, l1, conns, dur, ncpu,
 cticks, sc0, sc1, cc0, cc1, miss_origin) = sys.argv[1:]


def core(a, b):
    """busy, softirq and steal shares of one core between two /proc/stat samples"""
    a, b = [int(x) for x in a.split()], [int(x) for x in b.split()]
    busy, idle, soft, steal = (y - x for x, y in zip(a, b))
    total = busy + idle + steal
    if total <= 0:
        return None, None, None
    return round(busy / total, 3), round(soft / total, 3), round(steal / total, 3)


r = json.loads(js)
reqs = r["requests"]
secs = r["duration_us"] / 1e6 if r["duration_us"] else 0
cpu_s = (int(c1) - int(c0)) / int(tck)
origin = int(o1) - int(o0)
errs = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
row = {
    "round": int(rnd), "scenario": scen, "peer": peer, "tool": tool,
    "requests": reqs, "seconds": round(secs, 3), "req_per_s": round(reqs / secs, 1) if secs else 0,
    "bytes_per_s": round(r["bytes"] / secs, 1) if secs else 0,
    "p50_us": r["p50_us"], "p90_us": r["p90_us"], "p99_us": r["p99_us"], "p999_us": r["p999_us"],
    "max_us": r["max_us"], "errors": errs, "err_status": r["err_status"],
    "server_cpu_s": round(cpu_s, 3),
    "server_cpu_util": round(cpu_s / secs, 3) if secs else None,
    "client_cpu_s": round(int(cticks) / int(tck), 3) if cticks else None,
    "client_cpu_util": round(int(cticks) / int(tck) / secs, 3) if cticks and secs else None,
    "cpu_us_per_req": round(cpu_s * 1e6 / reqs, 3) if reqs else None,
    "req_per_cpu_s": round(reqs / cpu_s, 1) if cpu_s > 0 else None,
    "origin_requests": origin,
    "server_core_busy": core(sc0, sc1)[0], "server_core_softirq": core(sc0, sc1)[1],
    "server_core_steal": core(sc0, sc1)[2],
    "client_core_busy": core(cc0, cc1)[0], "client_core_steal": core(cc0, cc1)[2],
    "hits_proven": (origin == 0) if scen != "miss" else None,
    "miss_keys": int(keys) if scen == "miss" else None,
    "origin_requests_per_key": (round(int(miss_origin) / int(keys), 3)
                                if scen == "miss" and int(keys) else None),
    "load1_before": float(l0), "load1_after": float(l1),
    "connections": int(conns), "duration_s": int(dur), "nproc": int(ncpu),
}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
extra = f" origin/key {row['origin_requests_per_key']}" if scen == "miss" else f" origin +{origin}"
print(f"{scen:9s} {peer:8s} r{rnd}: {row['req_per_s']:>10.0f} req/s  p50 {r['p50_us']}us  "
      f"p99 {r['p99_us']}us  cpu {row['cpu_us_per_req']}us/req  util srv {row['server_cpu_util']} "
      f"wrk {row['client_cpu_util']} core busy srv {row['server_core_busy']} cli {row['client_core_busy']}"
      f" steal {row['server_core_steal']}  errors {errs}{extra}  "
      f"load {l0}->{l1}", file=sys.stderr)
PY
    if [ "$s" != miss ] && [ "$o1" != "$o0" ]; then
        log "run $s/$p round $round: origin saw $((o1 - o0)) requests during a hit run"
        [ "$SMOKE" = 1 ] && FAILED=1
    fi
}

n=${#STARTED[@]}
for ((round = 1; round <= ROUNDS; round++)); do
    for s in $SCENARIOS; do
        # rotate the order every round so no peer always runs first
        for ((k = 0; k < n; k++)); do
            p=${STARTED[$(((k + round - 1) % n))]}
            measure "$round" "$s" "$p"
        done
    done
done

# Arrow's own counters, for the record (hits vs fills).
if [ -n "${PEER_PID[arrow]:-}" ]; then
    curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" > "$OUT/logs/arrow-metrics.txt" || true
fi
python3 - "$OUT/machine.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY

if [ "$SMOKE" = 1 ]; then
    python3 - "$RUNS" "$WARM_JSON" <<'PY' || FAILED=1
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
warm = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
ok = bool(runs) and all(r["requests"] > 0 and r["errors"] == 0 and r["hits_proven"] for r in runs)
ok = ok and bool(warm) and all(w["second_pass_hits"] == w["keys_total"] for w in warm)
r = runs[0] if runs else {}
print(f"SMOKE {'ok' if ok else 'FAILED'} tool={r.get('tool')} requests={r.get('requests')} "
      f"req_per_s={r.get('req_per_s')} origin_requests={r.get('origin_requests')} "
      f"warm={[(w['second_pass_hits'], w['keys_total']) for w in warm]}")
sys.exit(0 if ok else 1)
PY
fi
exit "$FAILED"
