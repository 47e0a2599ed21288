#!/usr/bin/env bash
# bench/shards.sh — CPU per hit with 1 and 2 shards: does a hit cost the same wherever its
# connection landed?
#
#   bench/shards.sh [OUT_DIR]
#
# The same objects and config apart from the shard count: `cores = [1]` with one disk, or
# `cores = [0, 1]` with one disk per shard (keys spread over both disks, so about half of the
# hits are for the other shard's disk). wrk (one thread, CONNS connections) is pinned to core 0
# in both cases. Scenarios:
#   hit1k   1 KiB objects, 1000 keys cycled       (RAM tier)
#   hit1m   1 MiB objects, 150 keys cycled        (RAM tier, 256 MiB per shard)
#   disk1m  1 MiB objects, 1500 keys, uniform     (disk tier: RAM tier 32 MiB per shard)
# Reported per scenario and shard count: req/s, the node's CPU per hit (utime+stime ÷
# requests; each row of shards.jsonl also splits it into user and system time), the share of
# cross-shard requests and the accepts per shard, and the ratio of the 2-shard to the 1-shard
# median CPU per hit (the node restarts between shard counts, so the two are measured back to
# back per scenario, not in one round). Per shard thread, each row also has its CPU, its sleeps
# (voluntary context switches: it ran out of work and waited), preemptions and page faults, each
# per hit of the whole node, and body pieces dropped for a full socket per hit: a shard that is
# not saturated sleeps and is woken again every few hits, and that costs CPU per hit (see
# BENCHMARKS.md, "Shards: what the second shard's CPU per hit is made of").
#
# hit1k and hit1m also run nginx proxy_cache given the same cores in the same rounds,
# alternating with Arrow: one worker on core 1 beside 1 shard, two workers (worker_cpu_affinity
# auto) on cores 0-1 beside 2 shards — Arrow ÷ nginx CPU per request, and nginx's own 2 ÷ 1
# workers (what the second core costs any server on this machine). NGINX_BOTH=0 skips nginx.
#
# ONE_CORE=0 puts the single shard (and nginx's single worker) on core 0, beside wrk, instead of
# core 1: whether sharing a core with the client (as shard 0 of the 2-shard runs does on a
# 2-core machine) raises a shard's CPU per hit.
#
# Environment: ROUNDS [3] DURATION_S [5] CONNS [32] SCENARIOS ["hit1k hit1m disk1m"]
# NGINX_BOTH [1] ONE_CORE [1] BASE_PORT [18700] DISK_BYTES [2 GiB per shard] FILES SCRATCH ARROW_BIN.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/install.sh
. "$BENCH_DIR/lib/install.sh"

OUT=${1:-$ROOT/bench/out/shards-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-5}
CONNS=${CONNS:-32}
SCENARIOS=${SCENARIOS:-"hit1k hit1m disk1m"}
export BASE_PORT=${BASE_PORT:-18700}
[ "$(nproc)" -ge 2 ] || die "needs 2 cores"
CLIENT_CORE=0
ORIGIN_CORE=0
SERVER_CORE=1
export ONE_CORE=${ONE_CORE:-1}
case "$ONE_CORE" in 0 | 1) ;; *) die "ONE_CORE must be 0 or 1, not $ONE_CORE" ;; esac
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/shards-$$}
FILES=${FILES:-$ROOT/target/bench-scratch/shards-files}
DISK_BYTES=${DISK_BYTES:-$((2 << 30))}
TCK=$(clk_tck)
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

gen_files "$FILES" 1000 150
if [[ " $SCENARIOS " == *" disk1m "* ]] && [ ! -e "$FILES/d1m/.generated" ]; then
    mkdir -p "$FILES/d1m"
    head -c $((1500 << 20)) /dev/urandom > "$FILES/d1m/.all"
    (cd "$FILES/d1m" && split -a 5 -d -b $((1 << 20)) .all "")
    rm -f "$FILES/d1m/.all"
    touch "$FILES/d1m/.generated"
fi
chmod -R a+rX "$FILES"
start_origin "$FILES"
PORT=${PEER_PORT[arrow]}
PID=""

# start_node SHARDS RAM_BYTES
start_node() {
    local shards=$1 ram=$2 dir="$SCRATCH/arrow-$1" cores disks="" i
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$shards" = 1 ]; then cores="[$ONE_CORE]"; else cores="[0, 1]"; fi
    for ((i = 0; i < shards; i++)); do
        disks+="[[disk]]
path = \"$dir/disk$i.slab\"
size_bytes = $DISK_BYTES
shard = $i
"
    done
    cat > "$dir/arrow.toml" <<EOF
[node]
name = "bench.arrow.test"
cores = $cores
listen = ["127.0.0.1:$PORT"]
admin_listen = "127.0.0.1:$ARROW_ADMIN_PORT"
admin_token = "bench-admin-token-not-secret"

[storage]
ram_tier_bytes = $ram

$disks
[[host]]
hosts = ["*"]
technical_labels = 1
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
default_ttl_s = 3600
EOF
    RUST_LOG=${RUST_LOG:-warn} "$ARROW_BIN" run --config "$dir/arrow.toml" > "$dir/arrow.log" 2>&1 &
    PID=$!
    bench_track "$PID"
    wait_http "http://127.0.0.1:$ARROW_ADMIN_PORT/health" 300 || { tail "$dir/arrow.log" >&2; die "arrow did not start"; }
}

warm() { # warm PREFIX COUNT DIGITS
    local cfg="$SCRATCH/warm.curl" i
    : > "$cfg"
    for ((i = 0; i < $2; i++)); do
        printf 'url = "http://127.0.0.1:%s%s%0*d"\noutput = "/dev/null"\n' "$PORT" "$1" "$3" "$i" >> "$cfg"
    done
    curl -s --max-time 900 -K "$cfg" > /dev/null || true
    curl -s --max-time 900 -K "$cfg" -w '%header{x-cache}\n' > "$SCRATCH/warm.txt" || true
    [ "$(grep -c HIT "$SCRATCH/warm.txt")" = "$2" ] || die "warm $1: $(grep -c HIT "$SCRATCH/warm.txt")/$2 hits"
}

warm_nginx() { # warm_nginx SCENARIO: every key twice; the second pass must be all hits
    local prefix count digits cfg="$SCRATCH/warm-nginx.curl" i
    case $1 in
        hit1k) prefix=/1k/ count=1000 digits=4 ;;
        hit1m) prefix=/1m/ count=150 digits=3 ;;
    esac
    : > "$cfg"
    for ((i = 0; i < count; i++)); do
        printf 'url = "http://127.0.0.1:%s%s%0*d"\noutput = "/dev/null"\n' "${PEER_PORT[nginx]}" "$prefix" "$digits" "$i" >> "$cfg"
    done
    curl -s --max-time 900 -K "$cfg" > /dev/null || true
    curl -s --max-time 900 -K "$cfg" -w '%header{x-cache}\n' > "$SCRATCH/warm-nginx.txt" || true
    [ "$(grep -c HIT "$SCRATCH/warm-nginx.txt")" = "$count" ] || die "warm nginx $1: $(grep -c HIT "$SCRATCH/warm-nginx.txt")/$count hits"
}

metric_sum() { curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" | awk -v n="$1" 'index($1, n) == 1 { s += $2 } END { print s + 0 }'; }

ROWS="$OUT/shards.jsonl"
: > "$ROWS"
measure() { # measure ROUND SCENARIO SHARDS [PEER]
    local args c0 c1 x0 x1 q0 q1 t0 t1 line peer=${4:-arrow} accepts="" port=$PORT pid=$PID
    local txt="$OUT/logs/wrk-$2-$3-$peer-r$1.txt"
    if [ "$peer" = nginx ]; then port=${PEER_PORT[nginx]}; pid=${PEER_PID[nginx]}; fi
    case $2 in
        hit1k) args=(cycle /1k/ 1000 4) ;;
        hit1m) args=(cycle /1m/ 150 3) ;;
        disk1m) args=(uniform /d1m/ 1500 5) ;;
    esac
    c0=$(cpu_ticks_split "$pid"); x0=$(metric_sum arrow_cross_shard_requests_total)
    q0=$(metric_sum arrow_send_pieces_dropped_total)
    t0=$(thread_stats "$pid" arrow-shard-)
    taskset -c "$CLIENT_CORE" wrk -t1 -c"$CONNS" -d"${DURATION_S}s" --timeout 10s --latency \
        -s "$BENCH_DIR/lib/keys.lua" "http://127.0.0.1:$port/" -- "${args[@]}" > "$txt" 2>&1 || true
    c1=$(cpu_ticks_split "$pid"); x1=$(metric_sum arrow_cross_shard_requests_total)
    q1=$(metric_sum arrow_send_pieces_dropped_total)
    t1=$(thread_stats "$pid" arrow-shard-)
    if [ "$peer" = arrow ]; then
        accepts=$(curl -s "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" | awk '/^arrow_shard_connections_(total|adopted_total)/ { printf "%s ", $2 }')
    else
        x1=$x0 q1=$q0
    fi
    line=$(grep '^WRK_JSON ' "$txt" || true)
    [ -n "$line" ] || { log "no result for $peer $2 with $3 shards"; return; }
    python3 - "$ROWS" "${line#WRK_JSON }" "$1" "$2" "$3" "$c0" "$c1" "$TCK" "$x0" "$x1" "$accepts" "$peer" "$t0" "$t1" "$q0" "$q1" <<'PY'
import json, os, sys
out, js, rnd, scen, shards, c0, c1, tck, x0, x1, accepts, peer, t0, t1, q0, q1 = sys.argv[1:]
r = json.loads(js)
secs = r["duration_us"] / 1e6
(u0, s0), (u1, s1) = (map(int, c.split()) for c in (c0, c1))
cpu = (u1 + s1 - u0 - s0) / int(tck)
n = max(r["requests"], 1)
errs = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
row = {"peer": peer, "round": int(rnd), "scenario": scen, "shards": int(shards), "one_shard_core": int(os.environ["ONE_CORE"]), "req_per_s": round(n / secs, 1),
       "cpu_us_per_hit": round(cpu * 1e6 / n, 1),
       "user_us_per_hit": round((u1 - u0) / int(tck) * 1e6 / n, 1),
       "sys_us_per_hit": round((s1 - s0) / int(tck) * 1e6 / n, 1), "cross_shard_share": round((float(x1) - float(x0)) / n, 3),
       "accepts_per_shard": [int(float(a)) for a in accepts.split()], "errors": errs,
       # Body pieces a viewer's socket did not take within the hold time (read again later).
       "pieces_dropped_per_hit": round((float(q1) - float(q0)) / n, 3)}
# Per shard thread (Arrow only): its CPU per hit of the whole node, and how often it went to
# sleep waiting for work (voluntary context switches), was preempted (involuntary) and took a
# page fault (minor: memory touched for the first time since it was mapped or given back), per hit.
def threads(snap):
    return {w.split(":")[0]: [int(x) for x in w.split(":")[1:]] for w in snap.split()}
ta, tb = threads(t0), threads(t1)
if tb:
    d = {t: [b - a for a, b in zip(ta[t], tb[t])] for t in sorted(tb) if t in ta}
    row["shard_cpu_us_per_hit"] = [round((v[0] + v[1]) / int(tck) * 1e6 / n, 1) for v in d.values()]
    row["shard_sleeps_per_hit"] = [round(v[2] / n, 3) for v in d.values()]
    row["shard_preempted_per_hit"] = [round(v[3] / n, 3) for v in d.values()]
    row["shard_faults_per_hit"] = [round(v[4] / n, 2) for v in d.values()]
open(out, "a").write(json.dumps(row) + "\n")
print(f"{peer:6s} {scen:7s} shards {shards} r{rnd}: {row['req_per_s']:9.0f} req/s  cpu {row['cpu_us_per_hit']} us/hit "
      f"(user {row['user_us_per_hit']}, sys {row['sys_us_per_hit']})  "
      f"cross-shard {row['cross_shard_share']}  dropped {row['pieces_dropped_per_hit']}  accepted, adopted per shard {row['accepts_per_shard']}  errors {errs}"
      + (f"  per shard: cpu {row['shard_cpu_us_per_hit']} us/hit, sleeps {row['shard_sleeps_per_hit']}, "
         f"preempted {row['shard_preempted_per_hit']}, faults {row['shard_faults_per_hit']} per hit" if "shard_cpu_us_per_hit" in row else ""), file=sys.stderr)
PY
}

for s in $SCENARIOS; do
    ram=268435456
    [ "$s" = disk1m ] && ram=33554432
    for shards in 1 2; do
        start_node "$shards" "$ram"
        case $s in
            hit1k) warm /1k/ 1000 4 ;;
            hit1m) warm /1m/ 150 3 ;;
            disk1m) warm /d1m/ 1500 5 ;;
        esac
        both=0
        if [ "${NGINX_BOTH:-1}" = 1 ] && [ "$s" != disk1m ]; then
            both=1
            # nginx given what Arrow has: one worker on the single shard's core, or two on cores 0-1
            if [ "$shards" = 2 ]; then
                SERVER_CORE=0,1 NGINX_WORKERS=2 start_nginx
            else
                SERVER_CORE=$ONE_CORE NGINX_WORKERS=1 start_nginx
            fi
            warm_nginx "$s"
        fi
        for ((round = 1; round <= ROUNDS; round++)); do
            measure "$round" "$s" "$shards"
            if [ "$both" = 1 ]; then measure "$round" "$s" "$shards" nginx; fi
        done
        bench_stop "$PID"
        if [ "$both" = 1 ]; then bench_stop "${PEER_PID[nginx]}"; fi
    done
done

python3 - "$ROWS" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| scenario | shards | req/s (median) | CPU per hit (median, range) | cross-shard share | 2 ÷ 1 shards CPU per hit |")
print("|---|---|---|---|---|---|")
arrow = [r for r in rows if r.get("peer", "arrow") == "arrow"]
for scen in dict.fromkeys(r["scenario"] for r in arrow):
    med = {}
    for shards in (1, 2):
        rs = [r for r in arrow if r["scenario"] == scen and r["shards"] == shards]
        if not rs:
            continue
        cpu = [r["cpu_us_per_hit"] for r in rs]
        med[shards] = statistics.median(cpu)
        ratio = f"{med[2] / med[1]:.2f}" if shards == 2 and 1 in med else ""
        print(f"| {scen} | {shards} | {statistics.median(r['req_per_s'] for r in rs):.0f} | "
              f"{med[shards]:.1f} µs ({min(cpu):.1f}–{max(cpu):.1f}) | "
              f"{statistics.median(r['cross_shard_share'] for r in rs):.2f} | {ratio} |")
nginx1 = [r for r in rows if r.get("peer") == "nginx" and r["shards"] == 1]
nginx2 = [r for r in rows if r.get("peer") == "nginx" and r["shards"] == 2]
if nginx1 and nginx2:
    print()
    print(f"| scenario | nginx 1 worker (core {os.environ['ONE_CORE']}): CPU per request | nginx 2 workers (cores 0-1) | nginx 2 ÷ 1 workers | Arrow 1 shard ÷ nginx 1 worker, same rounds |")
    print("|---|---|---|---|---|")
    for scen in dict.fromkeys(r["scenario"] for r in nginx1):
        c1 = [r["cpu_us_per_hit"] for r in nginx1 if r["scenario"] == scen]
        c2 = [r["cpu_us_per_hit"] for r in nginx2 if r["scenario"] == scen]
        a1 = []
        for n in [r for r in nginx1 if r["scenario"] == scen]:
            a = [r for r in rows if r.get("peer", "arrow") == "arrow" and r["scenario"] == scen
                 and r["shards"] == 1 and r["round"] == n["round"]]
            if a:
                a1.append(a[0]["cpu_us_per_hit"] / n["cpu_us_per_hit"])
        if c1 and c2 and a1:
            m1, m2 = statistics.median(c1), statistics.median(c2)
            print(f"| {scen} | {m1:.1f} µs ({min(c1):.1f}–{max(c1):.1f}) | {m2:.1f} µs ({min(c2):.1f}–{max(c2):.1f}) | "
                  f"{m2 / m1:.2f} | {statistics.median(a1):.2f} ({min(a1):.2f}–{max(a1):.2f}) |")
nginx = nginx2
if nginx:
    print()
    print("| scenario | both cores: Arrow (2 shards) ÷ nginx (2 workers), CPU per request: median of rounds (range) | req/s: median (range) |")
    print("|---|---|---|")
    for scen in dict.fromkeys(r["scenario"] for r in nginx):
        cpu, rps = [], []
        for n in [r for r in nginx if r["scenario"] == scen]:
            a = [r for r in arrow if r["scenario"] == scen and r["shards"] == 2 and r["round"] == n["round"]]
            if a:
                cpu.append(a[0]["cpu_us_per_hit"] / n["cpu_us_per_hit"])
                rps.append(a[0]["req_per_s"] / n["req_per_s"])
        if cpu:
            print(f"| {scen} | {statistics.median(cpu):.2f} ({min(cpu):.2f}–{max(cpu):.2f}) | "
                  f"{statistics.median(rps):.2f} ({min(rps):.2f}–{max(rps):.2f}) |")
PY
