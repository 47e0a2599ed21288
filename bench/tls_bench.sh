#!/usr/bin/env bash
# bench/tls_bench.sh — Arrow against nginx proxy_cache (OpenSSL) over HTTPS: the same origin and
# keys, the same ECDSA P-256 certificate and TLS_AES_128_GCM_SHA256, each server confined to the
# same single core, peers alternating within each round.
#
#   bench/tls_bench.sh OUT_DIR          (bench/run.sh --only tls calls it)
#
# Environment (defaults in brackets): ROUNDS [3]  DURATION_S [3]  CONNECTIONS [64]
#   BASE_PORT [18600]  SERVER_CORE [1, or 0 on one CPU]  CLIENT_CORE [0]  SMALL_COUNT [1000]
#   LARGE_COUNT [100]  ARROW_BIN [target/release/arrow]  WRK [wrk]  SMOKE [0]
#
# Scenarios (the figure is requests or connections per server CPU-second):
#   tls1k      wrk, CONNECTIONS kept-alive HTTPS connections, 1 KiB hits cycled over SMALL_COUNT keys
#   tls1m      the same with 1 MiB hits over LARGE_COUNT keys
#   handshake  openssl s_time -new: a new connection with a full handshake for each 1 KiB hit
#   resume     openssl s_time -reuse: a new connection resuming the session for each 1 KiB hit
#
# Output: OUT_DIR/tls_runs.jsonl (one object per run) and a summary on stdout with Arrow ÷ nginx
# per scenario (median over rounds, with the range).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=${1:?usage: tls_bench.sh OUT_DIR}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"

ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-3}
CONNECTIONS=${CONNECTIONS:-64}
SMOKE=${SMOKE:-0}
BASE_PORT=${BASE_PORT:-18600}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then SERVER_CORE=${SERVER_CORE:-1}; else SERVER_CORE=${SERVER_CORE:-0}; fi
CLIENT_CORE=${CLIENT_CORE:-0}
ORIGIN_CORE=${ORIGIN_CORE:-$CLIENT_CORE}
SMALL_COUNT=${SMALL_COUNT:-1000}
LARGE_COUNT=${LARGE_COUNT:-100}
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
ARROW_RAM_BYTES=${ARROW_RAM_BYTES:-268435456}
ARROW_DISK_BYTES=${ARROW_DISK_BYTES:-1073741824}
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/tls-$$}
FILES=${FILES:-$ROOT/target/bench-scratch/files-$SMALL_COUNT-$LARGE_COUNT}
WRK=${WRK:-wrk}
TCK=$(clk_tck)
mkdir -p "$SCRATCH"
# shellcheck source=lib/peers.sh
. "$BENCH_DIR/lib/peers.sh"
PEER_PORT[arrow]=$((BASE_PORT + 2))
PEER_PORT[nginx]=$((BASE_PORT + 4))
ARROW_HTTP_PORT=$((BASE_PORT + 7))

cleanup() {
    bench_stop_all
    if [ "${KEEP_SCRATCH:-0}" != 1 ]; then rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$ARROW_BIN" ] || die "no arrow binary at $ARROW_BIN (cargo build --release -p arrow-server --bin arrow)"
command -v nginx >/dev/null || die "nginx is not installed"
command -v "$WRK" >/dev/null || die "wrk is not installed"
ulimit -n 65536 2>/dev/null || true
ports_free "$ORIGIN_PORT" "${PEER_PORT[arrow]}" "$ARROW_ADMIN_PORT" "${PEER_PORT[nginx]}" "$ARROW_HTTP_PORT" ||
    die "ports from $BASE_PORT are taken (set BASE_PORT)"

# One ECDSA P-256 certificate for both servers.
CERT="$SCRATCH/cert.pem"
KEY="$SCRATCH/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 -keyout "$KEY" -out "$CERT" 2> /dev/null

gen_files "$FILES" "$SMALL_COUNT" "$LARGE_COUNT"
start_origin "$FILES"

start_tls_arrow
start_tls_nginx
PEERS=(arrow nginx)
log "arrow pid ${PEER_PID[arrow]} and nginx pid ${PEER_PID[nginx]} on core $SERVER_CORE; HTTPS ports ${PEER_PORT[arrow]} ${PEER_PORT[nginx]}"

# warm: every key twice over HTTPS; the second pass must be all hits.
for p in "${PEERS[@]}"; do
    cfg="$SCRATCH/warm-$p.curl"
    : > "$cfg"
    for ((i = 0; i < SMALL_COUNT; i++)); do printf 'url = "https://127.0.0.1:%s/1k/%04d"\noutput = "/dev/null"\n' "${PEER_PORT[$p]}" "$i" >> "$cfg"; done
    for ((i = 0; i < LARGE_COUNT; i++)); do printf 'url = "https://127.0.0.1:%s/1m/%03d"\noutput = "/dev/null"\n' "${PEER_PORT[$p]}" "$i" >> "$cfg"; done
    for pass in 1 2; do
        curl -sk --max-time 300 -K "$cfg" -w '%{http_code} %header{x-cache}\n' > "$SCRATCH/warm-$p-$pass.txt" || true
    done
    hits=$(grep -ci '^200 hit' "$SCRATCH/warm-$p-2.txt" || true)
    log "warm $p: $hits/$((SMALL_COUNT + LARGE_COUNT)) hits on the second pass"
done
origin_settle

RUNS="$OUT/tls_runs.jsonl"
: > "$RUNS"
LUA="$BENCH_DIR/lib/keys.lua"

# record ROUND SCENARIO PEER COUNT SECONDS CPU_TICKS ORIGIN_DELTA ERRORS
record() {
    python3 - "$RUNS" "$@" "$TCK" <<'PY'
import json, sys
out, rnd, scen, peer, count, secs, ticks, origin, errs, tck = sys.argv[1:]
cpu = int(ticks) / int(tck)
row = {"round": int(rnd), "scenario": scen, "peer": peer, "count": int(count),
       "seconds": float(secs), "per_s": round(int(count) / float(secs), 1) if float(secs) else 0,
       "server_cpu_s": round(cpu, 3), "per_cpu_s": round(int(count) / cpu, 1) if cpu else None,
       "origin_requests": int(origin), "errors": int(errs)}
open(out, "a").write(json.dumps(row) + "\n")
print(f"{scen:9s} {peer:6s} r{rnd}: {row['per_s']:>9.0f}/s  cpu {cpu:.2f}s  "
      f"{row['per_cpu_s']}/cpu-s  origin +{origin}  errors {errs}", file=sys.stderr)
PY
}

measure() {
    local round=$1 s=$2 p=$3 port=${PEER_PORT[$3]} c0 c1 o0 o1 count secs errs=0 out
    origin_settle
    o0=$(origin_requests)
    c0=$(cpu_ticks "${PEER_PID[$p]}")
    out="$OUT/logs/$s-$p-r$round.txt"
    case $s in
        tls1k | tls1m)
            local args=(cycle /1k/ "$SMALL_COUNT" 4)
            [ "$s" = tls1m ] && args=(cycle /1m/ "$LARGE_COUNT" 3)
            taskset -c "$CLIENT_CORE" "$WRK" -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" --timeout 10s \
                -s "$LUA" "https://127.0.0.1:$port/" -- "${args[@]}" > "$out" 2>&1 || true
            local line
            line=$(grep '^WRK_JSON ' "$out" | sed 's/^WRK_JSON //')
            [ -n "$line" ] || { log "$s/$p: no wrk result"; return; }
            read -r count secs errs < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["requests"], r["duration_us"]/1e6, sum(r[k] for k in ("err_connect","err_read","err_write","err_status","err_timeout")))' "$line")
            ;;
        handshake | resume)
            local mode=-new
            [ "$s" = resume ] && mode=-reuse
            taskset -c "$CLIENT_CORE" openssl s_time -connect "127.0.0.1:$port" "$mode" -time "$DURATION_S" \
                -www /1k/0000 > "$out" 2>&1 || true
            # "N connections in T real seconds"
            read -r count secs < <(awk '/connections in [0-9]+ real seconds/ { n = $1; t = $4 } END { print n + 0, t + 0 }' "$out")
            ;;
    esac
    c1=$(cpu_ticks "${PEER_PID[$p]}")
    origin_settle
    o1=$(origin_requests)
    record "$round" "$s" "$p" "$count" "$secs" "$((c1 - c0))" "$((o1 - o0))" "$errs"
}

SCENARIOS=${SCENARIOS:-"tls1k tls1m handshake resume"}
for ((round = 1; round <= ROUNDS; round++)); do
    for s in $SCENARIOS; do
        for ((k = 0; k < 2; k++)); do
            measure "$round" "$s" "${PEERS[$(((k + round - 1) % 2))]}"
        done
    done
done
curl -s --max-time 5 -H "Authorization: Bearer bench-admin-token-not-secret" \
    "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" | grep '^arrow_tls_' > "$OUT/logs/arrow-tls-metrics.txt" || true

python3 - "$RUNS" "$SMOKE" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
smoke = sys.argv[2] == "1"
ok = True
print("scenario   arrow/cpu-s (range)        nginx/cpu-s (range)        arrow ÷ nginx (range over rounds)")
for scen in ["tls1k", "tls1m", "handshake", "resume"]:
    a = [r for r in rows if r["scenario"] == scen and r["peer"] == "arrow"]
    n = [r for r in rows if r["scenario"] == scen and r["peer"] == "nginx"]
    if not a or not n:
        continue
    ratios = [x["per_cpu_s"] / y["per_cpu_s"] for x, y in zip(sorted(a, key=lambda r: r["round"]), sorted(n, key=lambda r: r["round"])) if x["per_cpu_s"] and y["per_cpu_s"]]
    med = lambda v: statistics.median(v) if v else 0
    av, nv = [r["per_cpu_s"] or 0 for r in a], [r["per_cpu_s"] or 0 for r in n]
    print(f"{scen:9s}  {med(av):>9.0f} ({min(av):.0f}-{max(av):.0f})   {med(nv):>9.0f} ({min(nv):.0f}-{max(nv):.0f})   "
          f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    for r in a + n:
        if r["errors"] or r["count"] == 0 or (scen.startswith("tls1") and r["origin_requests"]):
            ok = False
            print(f"  check: {r}")
if smoke:
    print("SMOKE", "ok" if ok and rows else "FAILED")
    sys.exit(0 if ok and rows else 1)
PY
