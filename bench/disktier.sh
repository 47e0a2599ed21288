#!/usr/bin/env bash
# bench/disktier.sh — disk-tier hits: Arrow serving a working set many times its RAM tier, against
# fio reading the same slab file, over the same extent, at the same block size and concurrency.
#
#   bench/disktier.sh [OUT_DIR]
#
# Layout: one Arrow shard pinned to SERVER_CORE with a RAM tier of RAM_BYTES (32 MiB) and one
# slab of DISK_BYTES (4 GiB); wrk (one thread) and the origin on CLIENT_CORE. For each object
# size (SIZES, KiB) the origin serves COUNT_<size> objects of that size (working set ≥ 8× the
# RAM tier); every object is fetched once (fill) and once more (must be a HIT), then, per round
# and per concurrency C in CONNS, and per key choice in PICKS (uniform, zipf α=0.8):
#   * wrk -c C for DURATION_S s: Arrow req/s and the node's CPU per hit (utime+stime / requests);
#   * fio --rw=randread --bs=<size> --iodepth=C --direct=1 --ioengine=io_uring on the slab file,
#     offset..offset+size = the part of the data area Arrow filled (arrow_disk_used_bytes), so
#     both read the same extent; fio runs while Arrow is idle. With FIO_HUGE=1 (default) fio runs a
#     second time with its buffers on huge pages (`--iomem=shmhuge`, "fio-huge"), as Arrow's are.
# The order of the two alternates by round. Every ratio is Arrow ÷ fio of the same round.
#
# The peers (PEERS: nginx proxy_cache, Varnish with file storage, Traffic Server on disk) serve the
# same keys from the same origin, each — Arrow too — confined to the same memory budget by a
# cgroup (v1) memory limit of MEM_LIMIT_BYTES, which charges the page cache, so no peer serves
# from RAM a working set that Arrow serves from disk; every cache is sized to hold the whole set.
# The caches are filled unconfined; then the page cache is dropped (sync; drop_caches) and each
# cache is confined before the measured runs — except Varnish, whose file storage is a mapping
# (mapped pages survive drop_caches uncharged), so it runs confined from its start.
# Peers run the uniform key choice (PEER_PICKS) in the same rounds as Arrow.
#
# Output: OUT_DIR/disktier.jsonl (one row per measurement), summary tables on stdout (median and
# range of the same-round ratios; and, from /proc/diskstats, the reads each engine kept in the
# device and their latency). Exit 1 if a run failed or a hit run reached the origin.
#
# Environment (defaults in brackets): ROUNDS [3] DURATION_S [5] CONNS ["8 32"]
# SIZES ["1024 64"] PICKS ["uniform zipf"] PEER_PICKS ["uniform"] COUNT_1024 [1500] COUNT_64 [8000]
# RAM_BYTES [33554432] DISK_BYTES [4294967296] PEERS ["nginx varnish ats"]
# MEM_LIMIT_BYTES [134217728] BASE_PORT [18500] SERVER_CORE [1] CLIENT_CORE [0] FIO_HUGE [1] ARROW_BIN.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/install.sh
. "$BENCH_DIR/lib/install.sh"

OUT=${1:-$ROOT/bench/out/disktier-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION_S=${DURATION_S:-5}
CONNS=${CONNS:-"8 32"}
SIZES=${SIZES:-"1024 64"}
PICKS=${PICKS:-"uniform zipf"}
PEER_PICKS=${PEER_PICKS:-uniform}
PEERS=${PEERS-"nginx varnish ats"}
MEM_LIMIT_BYTES=${MEM_LIMIT_BYTES:-134217728}
COUNT_1024=${COUNT_1024:-1500}
COUNT_64=${COUNT_64:-8000}
export BASE_PORT=${BASE_PORT:-18500}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then SERVER_CORE=${SERVER_CORE:-1}; else SERVER_CORE=${SERVER_CORE:-0}; fi
CLIENT_CORE=${CLIENT_CORE:-0}
ORIGIN_CORE=$CLIENT_CORE
ARROW_BIN=${ARROW_BIN:-$ROOT/target/release/arrow}
ARROW_RAM_BYTES=${RAM_BYTES:-33554432}
ARROW_DISK_BYTES=${DISK_BYTES:-4294967296}
SCRATCH=${SCRATCH:-$ROOT/target/bench-scratch/disktier-$$}
FILES=$ROOT/target/bench-scratch/disktier-files
TCK=$(clk_tck)
mkdir -p "$SCRATCH"

bench_install wrk fio nginx || die "wrk, fio and nginx are needed"
for p in $PEERS; do
    case $p in varnish) bench_install varnishd || true ;; ats) bench_install traffic_server || true ;; esac
done
# Every cache holds the whole working set; only the memory limit keeps it on disk.
export NGINX_CACHE_MAX=4g VARNISH_STORAGE="file,$SCRATCH/varnish-storage.bin,4G" ATS_SPAN_BYTES=$((4 << 30))
CGROUP_ROOT=/sys/fs/cgroup/memory
[ -w "$CGROUP_ROOT" ] || die "needs the cgroup v1 memory controller at $CGROUP_ROOT (and root)"
[ -x "$ARROW_BIN" ] || (cd "$ROOT" && cargo build --release -p arrow-server --bin arrow)

# shellcheck source=lib/peers.sh
. "$BENCH_DIR/lib/peers.sh"
CGROUPS=()
cleanup() {
    bench_stop_all
    [ -z "${HUGEPAGES_BEFORE:-}" ] || echo "$HUGEPAGES_BEFORE" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
    local cg
    for cg in "${CGROUPS[@]}"; do rmdir "$cg" 2>/dev/null || true; done
    [ "${KEEP_SCRATCH:-0}" = 1 ] || rm -rf "$SCRATCH"
}

# tree_pids ROOT: ROOT and all its descendants.
tree_pids() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
        { line = $0; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " "); ppid[$1] = f[2] }
        END { want[root] = 1; changed = 1
              while (changed) { changed = 0; for (p in ppid) if (!(p in want) && (ppid[p] in want)) { want[p] = 1; changed = 1 } }
              for (p in want) print p }'
}

# confine NAME PID: move PID's process tree (and its charges) into a memory cgroup of
# MEM_LIMIT_BYTES; children started later inherit it.
confine() {
    local cg="$CGROUP_ROOT/arrow-disktier-$$-$1" pid
    mkdir -p "$cg"
    CGROUPS+=("$cg")
    echo 3 > "$cg/memory.move_charge_at_immigrate" 2>/dev/null || true
    echo "$MEM_LIMIT_BYTES" > "$cg/memory.limit_in_bytes"
    for pid in $(tree_pids "$2"); do echo "$pid" > "$cg/cgroup.procs" 2>/dev/null || true; done
    log "$1: pid $2 confined to $((MEM_LIMIT_BYTES >> 20)) MiB (cgroup $cg)"
}
cgroup_peak() { cat "$CGROUP_ROOT/arrow-disktier-$$-$1/memory.max_usage_in_bytes" 2>/dev/null || echo 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true

# files: FILES/d<size>k/<n> with random bytes, and the 1k/0000 the origin's readiness probe asks.
for size in $SIZES; do
    count_var=COUNT_$size
    count=${!count_var:?set COUNT_$size}
    dir="$FILES/d${size}k"
    if [ ! -e "$dir/.generated-$count" ]; then
        rm -rf "$dir"
        mkdir -p "$dir"
        head -c $((count * size * 1024)) /dev/urandom > "$dir/.all"
        (cd "$dir" && split -a 5 -d -b $((size * 1024)) .all "")
        rm -f "$dir/.all"
        touch "$dir/.generated-$count"
    fi
done
mkdir -p "$FILES/1k"
[ -e "$FILES/1k/0000" ] || head -c 1024 /dev/urandom > "$FILES/1k/0000"
chmod -R a+rX "$FILES"

start_origin "$FILES"
STARTED=()
for p in arrow $PEERS; do
    if start_peer "$p"; then
        STARTED+=("$p")
        # Varnish's file storage is a mapping: pages it faults in while unconfined stay resident
        # and uncharged (drop_caches keeps mapped pages), so it is confined from the start.
        [ "$p" = varnish ] && confine "$p" "${PEER_PID[$p]}"
    else
        log "peer $p did not start; left out"
        stop_peer "$p" || true
    fi
done
PORT=${PEER_PORT[arrow]}
SLAB="$SCRATCH/arrow/disk0.slab"

metric() { # metric NAME: the first sample of NAME in Arrow's /metrics
    curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" |
        awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }'
}

# fill: every key once (MISS), then once more (every answer must be a HIT), on every cache.
for p in "${STARTED[@]}"; do
    for size in $SIZES; do
        count_var=COUNT_$size
        count=${!count_var}
        cfg="$SCRATCH/keys-$p-$size.curl"
        : > "$cfg"
        for ((i = 0; i < count; i++)); do
            printf 'url = "http://127.0.0.1:%s/d%sk/%05d"\noutput = "/dev/null"\n' "${PEER_PORT[$p]}" "$size" "$i" >> "$cfg"
        done
        curl -s --max-time 900 -K "$cfg" -w '%{http_code}\n' > "$SCRATCH/fill-$p-$size.txt" || true
        # Traffic Server's xdebug answers X-Cache: hit-fresh; the others HIT.
        curl -s --max-time 900 -H 'X-Debug: X-Cache' -K "$cfg" -w '%{http_code} %header{x-cache}\n' \
            > "$SCRATCH/check-$p-$size.txt" || true
        hits=$(grep -ci '^200 .*hit' "$SCRATCH/check-$p-$size.txt" || true)
        log "$p: filled ${size} KiB: $hits/$count hits on the second pass"
        [ "$hits" = "$count" ] || log "$p: only $hits of $count ${size} KiB objects were hits on the second pass"
    done
done
# Filled unconfined (a memory-limited fill crawls through reclaim); then the page cache the
# fills left behind is dropped, so no cache starts with its working set in RAM, and every cache
# is confined from here on (pages it still maps move into its cgroup with it).
sync
echo 1 > /proc/sys/vm/drop_caches
for p in "${STARTED[@]}"; do [ "$p" = varnish ] || confine "$p" "${PEER_PID[$p]}"; done
USED=$(metric arrow_disk_used_bytes)
# The data area begins after the superblock and the directory (one 512-byte entry per 64 KiB).
DATA_START=$(((1 + (ARROW_DISK_BYTES / 65536 + 7) / 8) * 4096))
EXTENT=$((USED - DATA_START))
log "slab $SLAB: data area from $DATA_START, $EXTENT bytes in use (both engines read this extent)"

ROWS="$OUT/disktier.jsonl"
: > "$ROWS"
FAILED=0

# The block device under the slab file, for its read counters (/proc/diskstats): how many reads
# each engine keeps in the device on average (sum of read latencies ÷ wall time) and their mean
# latency. Empty when the device cannot be found (the columns then say "-").
DEV=$(basename "$(findmnt -n -o SOURCE -T "$SLAB" 2>/dev/null || true)" 2>/dev/null || true)
awk -v d="$DEV" '$3 == d { found = 1 } END { exit !found }' /proc/diskstats 2>/dev/null || DEV=""
dev_reads() { # "reads ms_reading now_ms" of DEV
    [ -n "$DEV" ] || { echo "0 0 0"; return; }
    awk -v d="$DEV" -v now="$(date +%s%3N)" '$3 == d { print $4, $7, now }' /proc/diskstats
}
dev_delta() { # dev_delta "BEFORE" "AFTER" (of dev_reads) → "reads_in_flight ms_per_read", or "- -"
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        n = y[1] - x[1]; ms = y[2] - x[2]; t = y[3] - x[3]
        if (n > 0 && t > 0) printf "%.2f %.3f\n", ms / t, ms / n; else print "- -" }'
}

run_peer() { # run_peer PEER ROUND SIZE COUNT PICK C
    local peer=$1
    shift
    local round=$1 size=$2 count=$3 pick=$4 c=$5 c0 c1 o0 o1 line args PID=${PEER_PID[$peer]} PORT=${PEER_PORT[$peer]}
    args=(uniform "/d${size}k/" "$count" 5)
    [ "$pick" = zipf ] && args=(zipf "/d${size}k/" "$count" 5 0.8)
    o0=$(origin_requests)
    c0=$(cpu_ticks "$PID")
    local d0 d1
    d0=$(dev_reads)
    # wrk runs under a bash whose children's CPU time (after the wait) is the client's CPU: a
    # run where it nears 1.0 was bound by the load generator, not the cache.
    taskset -c "$CLIENT_CORE" bash -c '"$@"; awk '"'"'{ sub(/^[0-9]+ \(.*\) /, ""); print "CLIENT_TICKS", $14 + $15 }'"'"' /proc/$$/stat' \
        _ wrk -t1 -c"$c" -d"${DURATION_S}s" --timeout 10s --latency \
        -s "$BENCH_DIR/lib/keys.lua" "http://127.0.0.1:$PORT/" -- "${args[@]}" \
        > "$OUT/logs/wrk-$peer-$size-$pick-c$c-r$round.txt" 2>&1 || true
    c1=$(cpu_ticks "$PID")
    d1=$(dev_reads)
    origin_settle
    o1=$(origin_requests)
    line=$(grep '^WRK_JSON ' "$OUT/logs/wrk-$peer-$size-$pick-c$c-r$round.txt" || true)
    if [ -z "$line" ]; then
        log "$peer $size KiB $pick c$c r$round: no wrk result"
        FAILED=1
        return
    fi
    if [ "$o1" != "$o0" ]; then
        log "$peer $size KiB $pick c$c r$round: origin saw $((o1 - o0)) requests"
        [ "$peer" = arrow ] && FAILED=1
    fi
    local cticks
    cticks=$(awk '$1 == "CLIENT_TICKS" { print $2 }' "$OUT/logs/wrk-$peer-$size-$pick-c$c-r$round.txt")
    python3 - "$ROWS" "${line#WRK_JSON }" "$round" "$size" "$pick" "$c" "$c0" "$c1" "$TCK" "$((o1 - o0))" "$peer" "$(cgroup_peak "$peer")" "${cticks:-0}" $(dev_delta "$d0" "$d1") <<'PY'
import json, sys
out, js, rnd, size, pick, c, c0, c1, tck, origin, peer, peak, cticks, inflight, per_read = sys.argv[1:]
r = json.loads(js)
secs = r["duration_us"] / 1e6
cpu = (int(c1) - int(c0)) / int(tck)
errs = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
row = {"engine": peer, "mem_peak_bytes": int(peak), "round": int(rnd), "size_kib": int(size), "pick": pick, "conns": int(c),
       "ops_per_s": round(r["requests"] / secs, 1), "cpu_us_per_op": round(cpu * 1e6 / max(r["requests"], 1), 1),
       "p99_us": r["p99_us"], "errors": errs, "origin_requests": int(origin),
       "wrk_cpu_util": round(int(cticks) / int(tck) / secs, 2) if secs else None}
if inflight != "-":
    row["dev_reads_in_flight"], row["dev_read_ms"] = float(inflight), float(per_read)
open(out, "a").write(json.dumps(row) + "\n")
print(f"{peer:7s} {size:>5} KiB {pick:7s} c{c:<3} r{rnd}: {row['ops_per_s']:8.0f} req/s  cpu {row['cpu_us_per_op']} us/hit  p99 {r['p99_us']} us  wrk cpu {row['wrk_cpu_util']}  "
      f"device: {row.get('dev_reads_in_flight', '-')} reads in flight, {row.get('dev_read_ms', '-')} ms each  errors {errs}", file=sys.stderr)
PY
}

# fio's buffers on huge pages too (FIO_HUGE=1, the default): Arrow's read buffers come from its
# allocator's heap (mimalloc), which sits on transparent huge pages, and on this machine's virtio
# disk a 1 MiB O_DIRECT read into 4 KiB pages costs more CPU and is slower. fio's
# `--iomem=shmhuge` needs reserved huge pages: the script reserves what the largest run needs
# and gives them back at exit.
FIO_HUGE=${FIO_HUGE:-1}
if [ "$FIO_HUGE" = 1 ]; then
    max_kib=0 max_c=0
    for size in $SIZES; do [ "$size" -gt "$max_kib" ] && max_kib=$size; done
    for c in $CONNS; do [ "$c" -gt "$max_c" ] && max_c=$c; done
    HUGEPAGES_BEFORE=$(cat /proc/sys/vm/nr_hugepages)
    want=$((HUGEPAGES_BEFORE + (max_kib * max_c + 2047) / 2048 + 2))
    echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
    if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt "$want" ]; then
        log "could not reserve $want huge pages; fio runs with malloc'd buffers only"
        FIO_HUGE=0
    fi
fi

run_fio() { # run_fio ROUND SIZE C [ENGINE: fio | fio-huge]
    local round=$1 size=$2 c=$3 engine=${4:-fio} js d0 d1 mem=()
    js="$OUT/logs/$engine-$size-c$c-r$round.json"
    [ "$engine" = fio-huge ] && mem=(--iomem=shmhuge)
    d0=$(dev_reads)
    taskset -c "$CLIENT_CORE" fio --name=disktier --filename="$SLAB" --rw=randread --bs="${size}k" \
        --iodepth="$c" --direct=1 --ioengine=io_uring --offset="$DATA_START" --size="$EXTENT" \
        --time_based --runtime="$DURATION_S" --randrepeat=0 --norandommap --output-format=json "${mem[@]}" \
        > "$js" 2> "$OUT/logs/fio.stderr" || { log "$engine failed (see $OUT/logs/fio.stderr)"; FAILED=1; return; }
    d1=$(dev_reads)
    python3 - "$ROWS" "$js" "$round" "$size" "$c" $(dev_delta "$d0" "$d1") "$engine" <<'PY'
import json, sys
out, js, rnd, size, c, inflight, per_read, engine = sys.argv[1:]
job = json.load(open(js))["jobs"][0]
j = job["read"]
# fio's own CPU (user + system, % of the job's run time) per read: what one O_DIRECT read costs
# a process on this machine, device emulation included.
cpu_s = (job["usr_cpu"] + job["sys_cpu"]) / 100 * j["runtime"] / 1000
row = {"engine": engine, "round": int(rnd), "size_kib": int(size), "conns": int(c),
       "ops_per_s": round(j["iops"], 1), "p99_us": round(j["clat_ns"]["percentile"].get("99.000000", 0) / 1000),
       "cpu_us_per_op": round(cpu_s * 1e6 / max(j["total_ios"], 1), 1)}
if inflight != "-":
    row["dev_reads_in_flight"], row["dev_read_ms"] = float(inflight), float(per_read)
open(out, "a").write(json.dumps(row) + "\n")
print(f"{engine:8s}{size:>5} KiB         c{c:<3} r{rnd}: {row['ops_per_s']:8.0f} reads/s  cpu {row['cpu_us_per_op']} us/read  "
      f"device: {row.get('dev_reads_in_flight', '-')} reads in flight, {row.get('dev_read_ms', '-')} ms each", file=sys.stderr)
PY
}

for ((round = 1; round <= ROUNDS; round++)); do
    for size in $SIZES; do
        count_var=COUNT_$size
        count=${!count_var}
        for c in $CONNS; do
            if [ $((round % 2)) = 1 ]; then
                run_fio "$round" "$size" "$c"
                [ "$FIO_HUGE" = 0 ] || run_fio "$round" "$size" "$c" fio-huge
            fi
            for pick in $PICKS; do run_peer arrow "$round" "$size" "$count" "$pick" "$c"; done
            for p in "${STARTED[@]}"; do
                [ "$p" = arrow ] && continue
                for pick in $PEER_PICKS; do run_peer "$p" "$round" "$size" "$count" "$pick" "$c"; done
            done
            if [ $((round % 2)) = 0 ]; then
                [ "$FIO_HUGE" = 0 ] || run_fio "$round" "$size" "$c" fio-huge
                run_fio "$round" "$size" "$c"
            fi
        done
    done
done
curl -s --max-time 5 "http://127.0.0.1:$ARROW_ADMIN_PORT/metrics" > "$OUT/logs/arrow-metrics.txt" || true
# The floor under any CPU per hit that copies the body into the socket, in the same run: one
# send(2) of 64 KiB / 1 MiB over loopback TCP (bench/send_floor.sh), while the caches idle.
ROUNDS=1 SENDER_CORE=$SERVER_CORE RECEIVER_CORE=$CLIENT_CORE bash "$BENCH_DIR/send_floor.sh" \
    > "$OUT/send-floor.txt" 2>&1 || log "send floor not measured (see $OUT/send-floor.txt)"

python3 - "$ROWS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = statistics.median
fio = {(r["round"], r["size_kib"], r["conns"]): r["ops_per_s"] for r in rows if r["engine"] == "fio"}
fio_cpu = {(r["round"], r["size_kib"], r["conns"]): r.get("cpu_us_per_op") for r in rows if r["engine"] == "fio"}
arrow = {(r["round"], r["size_kib"], r["pick"], r["conns"]): r for r in rows if r["engine"] == "arrow"}
groups = {}
for (rnd, size, pick, c), r in arrow.items():
    f = fio.get((rnd, size, c))
    if not f:
        continue
    g = groups.setdefault((size, pick, c), {"ratio": [], "cpu": [], "ops": [], "fio": [], "mem": [], "fcpu": []})
    if fio_cpu.get((rnd, size, c)):
        g["fcpu"].append(fio_cpu[(rnd, size, c)])
    g["ratio"].append(r["ops_per_s"] / f)
    g["cpu"].append(r["cpu_us_per_op"])
    g["ops"].append(r["ops_per_s"])
    g["fio"].append(f)
    g["mem"].append(r.get("mem_peak_bytes", 0))
print("| object | keys | conns | Arrow req/s | fio reads/s | Arrow ÷ fio (median, range) | Arrow CPU per hit (median, range) | fio CPU per read (median) |")
print("|---|---|---|---|---|---|---|---|")
for (size, pick, c), g in sorted(groups.items()):
    fcpu = f"{med(g['fcpu']):.0f} µs" if g["fcpu"] else "–"
    print(f"| {size} KiB | {pick} | {c} | {med(g['ops']):.0f} | {med(g['fio']):.0f} | "
          f"{med(g['ratio']):.2f} ({min(g['ratio']):.2f}–{max(g['ratio']):.2f}) | "
          f"{med(g['cpu']):.0f} µs ({min(g['cpu']):.0f}–{max(g['cpu']):.0f}) | {fcpu} |")
huge = {(r["round"], r["size_kib"], r["conns"]): r for r in rows if r["engine"] == "fio-huge"}
if huge:
    print()
    print("fio with its buffers on huge pages (`--iomem=shmhuge`), as Arrow's read buffers are:")
    print()
    print("| object | keys | conns | Arrow req/s | fio-huge reads/s | Arrow ÷ fio-huge (median, range) | fio-huge CPU per read (median) |")
    print("|---|---|---|---|---|---|---|")
    hg = {}
    for (rnd, size, pick, c), r in arrow.items():
        h = huge.get((rnd, size, c))
        if not h:
            continue
        g = hg.setdefault((size, pick, c), {"r": [], "ops": [], "h": [], "cpu": []})
        g["r"].append(r["ops_per_s"] / h["ops_per_s"])
        g["ops"].append(r["ops_per_s"])
        g["h"].append(h["ops_per_s"])
        g["cpu"].append(h["cpu_us_per_op"])
    for (size, pick, c), g in sorted(hg.items()):
        print(f"| {size} KiB | {pick} | {c} | {med(g['ops']):.0f} | {med(g['h']):.0f} | "
              f"{med(g['r']):.2f} ({min(g['r']):.2f}–{max(g['r']):.2f}) | {med(g['cpu']):.0f} µs |")
dev = [r for r in rows if "dev_reads_in_flight" in r and r["engine"] in ("arrow", "fio", "fio-huge")]
if dev:
    print()
    print("The device during each run (/proc/diskstats of the slab's device): reads in flight on average and their mean latency.")
    print("A closed-loop client keeps at most `conns` requests open; the reads in flight are those not in the cache's CPU, the network or the client.")
    print()
    print("| object | keys | conns | engine | reads in flight (median, range) | ms per read (median) |")
    print("|---|---|---|---|---|---|")
    dg = {}
    for r in dev:
        dg.setdefault((r["size_kib"], r.get("pick", "-"), r["conns"], r["engine"]), []).append(r)
    for (size, pick, c, eng), rs in sorted(dg.items()):
        q = [r["dev_reads_in_flight"] for r in rs]
        print(f"| {size} KiB | {pick} | {c} | {eng} | {med(q):.1f} ({min(q):.1f}–{max(q):.1f}) | {med(r['dev_read_ms'] for r in rs):.2f} |")
peers = sorted({r["engine"] for r in rows} - {"arrow", "fio", "fio-huge"})
if peers:
    print()
    print("| object | keys | conns | peer | peer req/s | peer CPU per hit | Arrow ÷ peer req/s (median, range) | Arrow ÷ peer CPU per hit | peer memory peak (cgroup) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in peers:
        pg = {}
        for r in rows:
            if r["engine"] != p:
                continue
            a = arrow.get((r["round"], r["size_kib"], r["pick"], r["conns"]))
            if not a:
                continue
            g = pg.setdefault((r["size_kib"], r["pick"], r["conns"]), {"ops": [], "cpu": [], "r": [], "rc": [], "mem": []})
            g["ops"].append(r["ops_per_s"])
            g["cpu"].append(r["cpu_us_per_op"])
            g["r"].append(a["ops_per_s"] / max(r["ops_per_s"], 1e-9))
            g["rc"].append(a["cpu_us_per_op"] / max(r["cpu_us_per_op"], 1e-9))
            g["mem"].append(r.get("mem_peak_bytes", 0))
        for (size, pick, c), g in sorted(pg.items()):
            print(f"| {size} KiB | {pick} | {c} | {p} | {med(g['ops']):.0f} | {med(g['cpu']):.0f} µs | "
                  f"{med(g['r']):.2f} ({min(g['r']):.2f}–{max(g['r']):.2f}) | {med(g['rc']):.2f} | "
                  f"{max(g['mem']) / 1048576:.0f} MiB |")
    am = max((r.get("mem_peak_bytes", 0) for r in rows if r["engine"] == "arrow"), default=0)
    print(f"\nArrow memory peak (cgroup): {am / 1048576:.0f} MiB")
PY
if [ -s "$OUT/send-floor.txt" ]; then
    echo
    echo "send(2) of one body over loopback TCP, sender's CPU (bench/send_floor.sh, same run):"
    sed 's/^/  /' "$OUT/send-floor.txt"
fi
exit "$FAILED"
