#!/usr/bin/env bash
# bench/run.sh — the one entry point of Arrow's benchmarks.
#
#   bench/run.sh [--quick|--full|--smoke] [--only SCENARIO] [--peers "arrow nginx ..."] [--out DIR]
#
#   --quick  (default) HTTP scenarios, 3 rounds × 3 s per run, all peers        (< 5 minutes)
#   --full   HTTP scenarios, 5 rounds × 10 s, then storage, dns and policy      (< 30 minutes)
#   --smoke  Arrow + the origin only, 1 KiB hits, one 1 s wrk run (a curl loop when wrk is
#            absent); installs nothing; exit status 0 only if every check held  (seconds)
#   --only   one of: hit1k hit1m longtail miss http storage dns policy disktier slowread shards
#            idle smallobj lib tls
#
# HTTP peers: arrow, nginx (proxy_cache), varnish (malloc), ats (Traffic Server, disk only); see
# bench/http_bench.sh for the layout and scenarios. storage, dns and policy are the scripts
# bench/storage_vs_fio.sh, bench/dns_bench.sh and bench/policy_compare.sh (skipped when absent);
# tls is bench/tls_bench.sh (HTTPS 1 KiB and 1 MiB hits, full handshakes and resumptions per
# server CPU-second, Arrow ÷ nginx with OpenSSL on the same core and certificate);
# lib is bench/lib_bench.sh (libarrow_cdn lookups/s from C ÷ the node's in-process placement;
# nginx+Lua CPU per request ÷ plain nginx proxying);
# disktier, slowread and shards are bench/disktier.sh (disk-tier hits ÷ fio on the same extent),
# bench/slowread.sh (memory per slow viewer, a probe's p99) and bench/shards.sh (CPU per hit with
# 1 and 2 shards); idle is bench/idle.sh (memory per idle keep-alive connection, Arrow ÷ nginx);
# their printed output is kept under OUT/extra/ and folded into the report.
#
# Results: OUT (default bench/out/<UTC timestamp>/) gets runs.jsonl, machine.json,
# results.json, results.md and plots (req_per_s.png, p99.png, cpu_per_req.png).
#
# On a fresh Debian machine, run as root: it installs the peers, wrk, fio, dnsperf and
# python3-matplotlib with apt (service start blocked by /usr/sbin/policy-rc.d while apt runs),
# and builds target/release/arrow when it is missing. Everything it starts runs on loopback and
# is stopped by PID on exit.
#
# Environment: ARROW_BIN, ROUNDS, DURATION_S, CONNECTIONS, BASE_PORT, LOAD_MAX (wait up to
# LOAD_WAIT_S [60] for the 1-min load average to fall below it [1.5]; 0 disables),
# EXTRA_TIMEOUT_S [240] (bound on each of storage, dns, policy), and those of
# bench/http_bench.sh.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/install.sh
. "$BENCH_DIR/lib/install.sh"

MODE=quick
ONLY=""
OUT=""
PEERS_ARG=""
while [ $# -gt 0 ]; do
    case $1 in
        --quick) MODE=quick ;;
        --full) MODE=full ;;
        --smoke) MODE=smoke ;;
        --only) ONLY=${2:?--only needs a scenario}; shift ;;
        --only=*) ONLY=${1#--only=} ;;
        --peers) PEERS_ARG=${2:?--peers needs a list}; shift ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done

HTTP_SCENARIOS="hit1k hit1m longtail miss"
case $ONLY in
    "") EXTRAS=$([ "$MODE" = full ] && echo "storage disktier slowread shards idle smallobj tls dns policy lib" || true); SCEN=$HTTP_SCENARIOS ;;
    http) EXTRAS=""; SCEN=$HTTP_SCENARIOS ;;
    hit1k | hit1m | longtail | miss) EXTRAS=""; SCEN=$ONLY ;;
    storage | dns | policy | disktier | slowread | shards | idle | smallobj | lib | tls) EXTRAS=$ONLY; SCEN="" ;;
    *) die "--only: unknown scenario $ONLY" ;;
esac

case $MODE in
    smoke)
        export ROUNDS=1 DURATION_S=${DURATION_S:-1} SMOKE=1 PEERS=arrow ARROW_DISK_BYTES=${ARROW_DISK_BYTES:-268435456}
        export SMALL_COUNT=${SMALL_COUNT:-100} LARGE_COUNT=${LARGE_COUNT:-1}
        # a port range of its own, so a smoke run beside a measured run does not collide
        export BASE_PORT=${BASE_PORT:-$((20000 + ($$ % 2000) * 10))}
        SCEN=hit1k
        EXTRAS=""
        ;;
    quick) export ROUNDS=${ROUNDS:-3} DURATION_S=${DURATION_S:-3} SMOKE=0 ;;
    full) export ROUNDS=${ROUNDS:-5} DURATION_S=${DURATION_S:-10} SMOKE=0 ;;
esac
[ -n "$PEERS_ARG" ] && [ "$MODE" != smoke ] && export PEERS=$PEERS_ARG
export SCENARIOS=$SCEN

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$BENCH_DIR/out/$STAMP}
mkdir -p "$OUT/extra"
OUT=$(cd "$OUT" && pwd)

CHILD=""
on_exit() {
    # the child scripts stop their own servers; stop a child still running (Ctrl-C) by its PID
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# run_child LOGFILE CMD...: run a step in the background (so the trap can stop it), tee its output.
run_child() {
    local logf=$1 rc=0
    shift
    "$@" > >(tee "$logf") 2>&1 &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

# --- tools --------------------------------------------------------------------------------------
if [ "$MODE" = smoke ]; then
    # never installs: smoke must pass in seconds on a fresh machine (curl loop without wrk)
    if [ -z "${ARROW_BIN:-}" ]; then
        # the test run builds the debug binary just before; prefer the fresher of the two
        dbg=$ROOT/target/debug/arrow rel=$ROOT/target/release/arrow
        if [ -x "$dbg" ] && { [ ! -x "$rel" ] || [ "$dbg" -nt "$rel" ]; }; then ARROW_BIN=$dbg; else ARROW_BIN=$rel; fi
    fi
    export ORIGIN=${ORIGIN:-auto}
else
    want=(curl)
    [ -n "$SCEN" ] && want+=(wrk nginx varnishd traffic_server matplotlib)
    for x in $EXTRAS; do
        case $x in storage | disktier) want+=(fio wrk nginx) ;; slowread | shards | tls) want+=(wrk nginx) ;; idle) want+=(nginx) ;; dns) want+=(dnsperf) ;; esac
    done
    bench_install "${want[@]}" || log "some packages could not be installed; their peers are skipped"
    ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
    if [ -n "$SCEN" ] && [ ! -x "$ARROW_BIN" ]; then
        log "building $ARROW_BIN"
        (cd "$ROOT" && cargo build --release -p arrow-server --bin arrow)
    fi
fi
export ARROW_BIN
command -v curl >/dev/null 2>&1 || die "curl is required"

LOAD_MAX=${LOAD_MAX:-1.5}
if [ "$MODE" != smoke ] && [ "$LOAD_MAX" != 0 ]; then
    if ! wait_for_low_load "$LOAD_MAX" "${LOAD_WAIT_S:-60}"; then
        log "1-min load average still $(loadavg1) (≥ $LOAD_MAX): running anyway; the load is recorded"
    fi
fi

log "mode $MODE, out $OUT, machine: $(nproc) cpus, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
STATUS=0

# --- HTTP ---------------------------------------------------------------------------------------
if [ -n "$SCEN" ]; then
    run_child "$OUT/extra/http.txt" bash "$BENCH_DIR/http_bench.sh" "$OUT" || STATUS=$?
fi

# --- storage / dns / policy (written by others; tolerated when absent) ------------------------------
for x in $EXTRAS; do
    # storage: 3 same-round pairs of 5 s per pattern, so it stays well inside EXTRA_TIMEOUT_S.
    args=()
    env_extra=()
    case $x in
        storage) script=$BENCH_DIR/storage_vs_fio.sh
                 args=(/var/tmp/arrow-bench 1073741824 "${STORAGE_SECONDS:-5}")
                 env_extra=(ROUNDS="${STORAGE_ROUNDS:-3}") ;;
        dns) script=$BENCH_DIR/dns_bench.sh ;;
        lib) script=$BENCH_DIR/lib_bench.sh ;;
        smallobj) script=$BENCH_DIR/smallobj.sh ;;
        tls) script=$BENCH_DIR/tls_bench.sh; args=("$OUT/tls")
                 env_extra=(ROUNDS="${EXTRA_ROUNDS:-3}" DURATION_S="${EXTRA_SECONDS:-5}") ;;
        disktier | slowread | shards) script=$BENCH_DIR/$x.sh; args=("$OUT/$x")
                 env_extra=(ROUNDS="${EXTRA_ROUNDS:-3}" DURATION_S="${EXTRA_SECONDS:-5}") ;;
        idle) script=$BENCH_DIR/idle.sh; args=("$OUT/idle")
                 env_extra=(ROUNDS="${EXTRA_ROUNDS:-3}") ;;
        policy) script=$BENCH_DIR/policy_compare.sh ;;
    esac
    if [ ! -f "$script" ]; then
        log "$x: $(basename "$script") not present, skipped"
        echo "skipped: $(basename "$script") not present" > "$OUT/extra/$x.txt"
        continue
    fi
    log "$x: $(basename "$script")"
    rc=0
    timeout_s=${EXTRA_TIMEOUT_S:-240}
    case $x in disktier | shards | tls) timeout_s=${EXTRA_TIMEOUT_S:-900} ;; esac
    run_child "$OUT/extra/$x.txt" env "${env_extra[@]}" timeout "$timeout_s" bash "$script" "${args[@]}" || rc=$?
    [ "$rc" = 0 ] || { log "$x exited with status $rc"; echo "exit status $rc" >> "$OUT/extra/$x.txt"; }
done

# --- report -------------------------------------------------------------------------------------
if [ "$MODE" != smoke ]; then
    PY=python3
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null && PY=/usr/bin/python3
    "$PY" "$BENCH_DIR/report.py" "$OUT" || { log "report failed"; STATUS=1; }
    [ -f "$OUT/results.md" ] && cat "$OUT/results.md"
fi
log "results in $OUT"
exit "$STATUS"
