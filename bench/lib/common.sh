# bench/lib/common.sh — helpers shared by bench/run.sh and bench/http_bench.sh (sourced).
#
# Process bookkeeping: every process the harness starts is recorded with bench_track PID, and
# bench_stop_all (run from the EXIT trap) stops exactly those PIDs, TERM first, then KILL.

BENCH_PIDS=()

log() { echo "== $(date -u +%H:%M:%S) $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

bench_track() { BENCH_PIDS+=("$1"); }

# Stop every tracked process (newest first) and wait for it, bounded to ~5 s each.
bench_stop_all() {
    local i pid n
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${BENCH_PIDS[$i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((n = 0; n < 50; n++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

# Stop one tracked process by PID (TERM, bounded wait, KILL).
bench_stop() {
    local pid=$1 n
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((n = 0; n < 50; n++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# wait_http URL [TRIES]: poll until the URL answers (any HTTP status), 0.1 s apart.
wait_http() {
    local url=$1 tries=${2:-100} i
    for ((i = 0; i < tries; i++)); do
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    return 1
}

# cpu_ticks ROOTPID: utime+stime (clock ticks) of ROOTPID and all its descendants, all threads
# included (/proc/PID/stat of a thread-group leader sums its threads, live and exited).
cpu_ticks() {
    cpu_ticks_split "$1" | awk '{ print $1 + $2 }'
}

# cpu_ticks_split ROOT_PID: "utime stime" clock ticks of a process tree (as cpu_ticks).
cpu_ticks_split() {
    local root=$1
    [ -n "$root" ] || { echo 0 0; return; }
    # cat skips processes that exit between the glob and the read (and then fails: ignored, as
    # callers run under pipefail); each line starts with its pid.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$root" '
        {
            pid = $1
            line = $0
            sub(/^[0-9]+ \(.*\) /, "", line)      # drop "pid (comm) " (comm may hold spaces)
            split(line, f, " ")
            ppid[pid] = f[2]; ut[pid] = f[12]; st[pid] = f[13]
        }
        END {
            want[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (p in ppid) if (!(p in want) && (ppid[p] in want)) { want[p] = 1; changed = 1 }
            }
            u = 0; s = 0
            for (p in want) { u += ut[p]; s += st[p] }
            print u, s
        }'
}

# thread_stats PID PREFIX: one "name:utime:stime:voluntary_switches:involuntary_switches:minor_faults"
# word per thread of PID whose name starts with PREFIX (e.g. arrow-shard-), utime/stime in clock
# ticks.
thread_stats() {
    local t name
    for t in /proc/"$1"/task/*; do
        name=$(cat "$t/comm" 2>/dev/null) || continue
        case $name in "$2"*) ;; *) continue ;; esac
        awk -v n="$name" '
            FILENAME ~ /stat$/ && FNR == 1 { line = $0; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " "); u = f[12]; s = f[13]; mf = f[8] }
            /^voluntary_ctxt_switches/ { v = $2 }
            /^nonvoluntary_ctxt_switches/ { nv = $2 }
            END { printf "%s:%s:%s:%s:%s:%s ", n, u, s, v, nv, mf }' "$t/stat" "$t/status" 2>/dev/null || true
    done
    echo
}

# core_stat CORE: "busy idle softirq steal" jiffies of one CPU from /proc/stat (busy excludes
# idle, iowait and steal; guest time is already inside user).
core_stat() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $5 + $6, $8, $9 }' /proc/stat
}

clk_tck() { getconf CLK_TCK 2>/dev/null || echo 100; }

loadavg1() { cut -d' ' -f1 /proc/loadavg; }

# wait_for_low_load MAX SECONDS: wait up to SECONDS for the 1-min load average to drop below MAX.
wait_for_low_load() {
    local max=$1 secs=$2 i
    for ((i = 0; i < secs; i += 5)); do
        awk -v l="$(loadavg1)" -v m="$max" 'BEGIN { exit !(l < m) }' && return 0
        sleep 5
    done
    return 1
}

# free_port_check PORT...: fail if any port is already listening on loopback.
ports_free() {
    local p
    for p in "$@"; do
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
            echo "port $p is in use" >&2
            return 1
        fi
    done
}
