#!/usr/bin/env bash
# bench/dns_bench.sh — Arrow's DNS responder against PowerDNS (lua2 backend) and Knot DNS.
#
# Same run, same query file, same machine: each server answers zone dx.bench.test on loopback,
# pinned to SERVER_CORE with one worker; dnsperf runs on CLIENT_CORE. The mapping is the one of
# `arrow-bench dns-serve` (bench/src/dns_serve.rs):
#   <32 hex>.dx.bench.test → CNAME n(first 8 hex digits mod NODES + 1).dx.bench.test, TTL 300
#   c.dx.bench.test        → CNAME to the next node round robin, TTL 5
#   nXX.dx.bench.test      → A 10.0.0.XX, TTL 3600 (so every CNAME answer carries the A too)
# PowerDNS computes it per query in Lua (packet and query caches off); Knot serves the same
# answers from a static zone generated for the query file (its `c` CNAME cannot flap).
# pdns+lib is PowerDNS with lib/pdns/arrow-pdns.lua: the same zone answered through
# libarrow_cdn (Arrow's handler and placement over a real cluster table of NODES nodes kept
# fresh by `arrow-bench table-writer`, nodes nXX.bench.test), so its CNAME targets follow
# placement, not the fixed mapping above: it is checked for a TTL-300 CNAME to a node of the
# table.
#
# Usage: bench/dns_bench.sh            (env: DURATION_S=10 CLIENTS=4 NAMES=1000 NODES=4
#                                       SERVER_CORE=1 CLIENT_CORE=0 KEEP_WORK=0 ARROW_BENCH=…)
# Installs dnsperf, pdns-server, pdns-backend-lua2, knot and bind9-dnsutils with apt-get when
# missing. Every server is a private instance (own config dir under a temp dir, ports
# BASE_PORT+1..3) stopped by PID on exit.
set -euo pipefail

DURATION_S=${DURATION_S:-10}
CLIENTS=${CLIENTS:-4}
NAMES=${NAMES:-1000}
NODES=${NODES:-4}
SERVER_CORE=${SERVER_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
BASE_PORT=${BASE_PORT:-15300}
KEEP_WORK=${KEEP_WORK:-0}
ARROW_PORT=$((BASE_PORT + 1))
PDNS_PORT=$((BASE_PORT + 2))
KNOT_PORT=$((BASE_PORT + 3))
PDNSLIB_PORT=$((BASE_PORT + 4))
TABLE=/dev/shm/arrow-dns-bench-$$
ZONE=dx.bench.test
ROOT=$(cd "$(dirname "$0")/.." && pwd)

WORK=$(mktemp -d /tmp/arrow-dns-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -f "$TABLE"
    if [ "$KEEP_WORK" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

# --- tools ------------------------------------------------------------------------------------
LUA2_SO=$(ls /usr/lib/*/pdns/liblua2backend.so 2>/dev/null | head -1 || true)
missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
command -v pdns_server >/dev/null || missing+=(pdns-server)
[ -n "$LUA2_SO" ] || missing+=(pdns-backend-lua2)
command -v knotd >/dev/null || missing+=(knot)
command -v dig >/dev/null || missing+=(bind9-dnsutils)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

ARROW_BENCH=${ARROW_BENCH:-$ROOT/target/release/arrow-bench}
if [ ! -x "$ARROW_BENCH" ] || [ -n "${REBUILD:-}" ]; then
    log "building arrow-bench (release)"
    (cd "$ROOT" && cargo build --release -p arrow-bench)
fi
LIB_SO=${LIB_SO:-$(dirname "$ARROW_BENCH")/libarrow_cdn.so}
if [ ! -f "$LIB_SO" ] || [ -n "${REBUILD:-}" ]; then
    log "building arrow-lib (release)"
    (cd "$ROOT" && cargo build --release -p arrow-lib)
fi

# --- query file and the mapping -----------------------------------------------------------
node() { printf 'n%02d.%s' "$1" "$ZONE"; }
designated() { echo $(( (16#${1:0:8} % NODES) + 1 )); }

QUERIES=$WORK/queries.txt
HEXES=$WORK/hexes.txt
for i in $(seq 1 "$NAMES"); do
    printf '/assets/title%d' "$i" | md5sum | cut -c1-32
done >"$HEXES"
awk -v zone="$ZONE" '{ print $1 "." zone " A"; if (NR % 10 == 0) print "c." zone " A" }' "$HEXES" >"$QUERIES"
log "query file: $(wc -l <"$QUERIES") queries ($NAMES content-aware names, 1 in 11 headroom)"

# --- Arrow ------------------------------------------------------------------------------------
taskset -c "$SERVER_CORE" "$ARROW_BENCH" dns-serve --listen "127.0.0.1:$ARROW_PORT" \
    --nodes "$NODES" >"$WORK/arrow.log" 2>&1 &
PIDS+=($!)

# --- PowerDNS, lua2 backend -------------------------------------------------------------------
mkdir -p "$WORK/pdns"
cat >"$WORK/pdns/bench.lua" <<EOF
local zone = "$ZONE."
local nodes = $NODES
local turn = 0
local soa = "ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 604800 60"

local function node(i) return string.format("n%02d.$ZONE.", i) end

local function rr(qname, t, content, ttl)
    return { name = qname, type = newQType(t), content = content, ttl = ttl, domain_id = 1 }
end

local function pick(qtype, records)
    local want = qtype:getName()
    if want == "ANY" then return records end
    local out = {}
    for _, r in ipairs(records) do
        if r.type:getName() == want then table.insert(out, r) end
    end
    return out
end

function dns_get_domaininfo(dom)
    if string.lower(dom:toString()) == zone then return { id = 1, serial = 1 } end
    return false
end

function dns_get_domain_metadata(dom, kind) return false end

function dns_lookup(qtype, qname, d_id, ctx)
    local name = string.lower(qname:toString())
    if name == zone then
        return pick(qtype, { rr(qname, "SOA", soa, 3600), rr(qname, "NS", "ns1.$ZONE.", 3600) })
    end
    local label, rest = string.match(name, "^([^.]+)%.(.*)$")
    if rest ~= zone then return {} end
    if label == "ns1" then return pick(qtype, { rr(qname, "A", "127.0.0.1", 3600) }) end
    local idx = tonumber(string.match(label, "^n(%d%d)$") or "")
    if idx ~= nil and idx >= 1 and idx <= nodes then
        return pick(qtype, { rr(qname, "A", "10.0.0." .. idx, 3600) })
    end
    if #label == 32 and string.match(label, "^%x+$") then
        local target = node(tonumber(string.sub(label, 1, 8), 16) % nodes + 1)
        return pick(qtype, { rr(qname, "CNAME", target, 300) })
    end
    turn = turn % nodes + 1
    return pick(qtype, { rr(qname, "CNAME", node(turn), 5) })
end
EOF
cat >"$WORK/pdns/pdns.conf" <<EOF
launch=lua2
lua2-filename=$WORK/pdns/bench.lua
lua2-api=2
local-address=127.0.0.1
local-port=$PDNS_PORT
socket-dir=$WORK/pdns
guardian=no
daemon=no
disable-syslog=yes
webserver=no
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
zone-cache-refresh-interval=0
receiver-threads=1
distributor-threads=1
loglevel=3
EOF
taskset -c "$SERVER_CORE" pdns_server --config-dir="$WORK/pdns" >"$WORK/pdns.log" 2>&1 &
PIDS+=($!)

# --- PowerDNS, lua2 backend through libarrow_cdn -----------------------------------------------
"$ARROW_BENCH" table-writer --path "$TABLE" --nodes "$NODES" --domain bench.test --seconds 3600 &
PIDS+=($!)
mkdir -p "$WORK/pdnslib"
cat >"$WORK/pdnslib/arrow.toml" <<EOF
[node]
name = "n01.$ZONE"
listen = ["127.0.0.1:1"]
[[host]]
hosts = ["*"]
origins = ["http://127.0.0.1:1"]
[cluster]
table_path = "$TABLE"
group = "239.255.77.77:17777"
secret = "bench-secret-0123456789"
[dns]
listen = ["127.0.0.1:1"]
[[dns.zones]]
name = "$ZONE"
domain = "bench.test"
ns = ["ns1.$ZONE"]
glue = { "ns1.$ZONE" = ["127.0.0.1"] }
EOF
sed -e "s|/usr/share/arrow/pdns/arrow-pdns.lua|$ROOT/lib/pdns/arrow-pdns.lua|" \
    "$ROOT/lib/pdns/pdns.conf" >"$WORK/pdnslib/pdns.conf"
cat >>"$WORK/pdnslib/pdns.conf" <<EOF
local-address=127.0.0.1
local-port=$PDNSLIB_PORT
socket-dir=$WORK/pdnslib
guardian=no
daemon=no
disable-syslog=yes
webserver=no
receiver-threads=1
distributor-threads=1
loglevel=3
EOF
taskset -c "$SERVER_CORE" env ARROW_CONFIG="$WORK/pdnslib/arrow.toml" ARROW_LIB="$LIB_SO" \
    ARROW_LUA_DIR="$ROOT/lib/lua" pdns_server --config-dir="$WORK/pdnslib" >"$WORK/pdnslib.log" 2>&1 &
PIDS+=($!)

# --- Knot, static zone ----------------------------------------------------------------------
mkdir -p "$WORK/knot/db"
{
    echo "\$ORIGIN $ZONE."
    echo "\$TTL 3600"
    echo "@ SOA ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 604800 60"
    echo "@ NS ns1.$ZONE."
    echo "ns1 A 127.0.0.1"
    for i in $(seq 1 "$NODES"); do echo "$(printf 'n%02d' "$i") 3600 A 10.0.0.$i"; done
    while read -r hex; do echo "$hex 300 CNAME $(node "$(designated "$hex")")."; done <"$HEXES"
    echo "c 5 CNAME $(node 1)."
} >"$WORK/knot/$ZONE.zone"
cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$WORK/knot/db"
control:
    listen: "$WORK/knot/knot.sock"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$WORK/knot"
    file: "%s.zone"
zone:
  - domain: $ZONE
EOF
taskset -c "$SERVER_CORE" knotd -c "$WORK/knot/knot.conf" >"$WORK/knot.log" 2>&1 &
PIDS+=($!)

# --- readiness and equivalence ----------------------------------------------------------------
PROBE="$(head -1 "$HEXES").$ZONE"
answer() { dig +norec +time=1 +tries=1 -p "$1" @127.0.0.1 "$PROBE" A +noall +answer 2>/dev/null | awk '{print $1, $2, $4, $5}' | sort; }
for name_port in "arrow:$ARROW_PORT" "pdns:$PDNS_PORT" "knot:$KNOT_PORT" "pdnslib:$PDNSLIB_PORT"; do
    name=${name_port%%:*}
    port=${name_port##*:}
    for _ in $(seq 1 50); do
        [ -n "$(answer "$port")" ] && break
        sleep 0.2
    done
    if [ -z "$(answer "$port")" ]; then
        log "$name did not answer on port $port; its log:"
        cat "$WORK/$name.log" >&2
        exit 1
    fi
done
expected="$(answer "$ARROW_PORT")"
log "probe $PROBE:"
echo "$expected" | sed 's/^/     /' >&2
for name_port in "pdns:$PDNS_PORT" "knot:$KNOT_PORT"; do
    if [ "$(answer "${name_port##*:}")" != "$expected" ]; then
        log "${name_port%%:*} answers differently:"
        answer "${name_port##*:}" >&2
        exit 1
    fi
done

lib_answer=$(answer "$PDNSLIB_PORT")
if ! grep -Eq "^$PROBE\. 300 CNAME n[0-9]{2}\.bench\.test\.$" <<<"$lib_answer"; then
    log "pdns+lib answers $lib_answer"
    exit 1
fi

# --- measurement ------------------------------------------------------------------------------
declare -A QPS LAT_MS LOST IDLE_LAT_MS
# One query at a time: the latency of an unloaded server (no queueing in the client's window).
measure_idle() {
    local name=$1 port=$2 out
    out=$(taskset -c "$CLIENT_CORE" timeout 40 dnsperf -s 127.0.0.1 -p "$port" \
        -d "$QUERIES" -l 3 -c 1 -q 1 2>&1)
    IDLE_LAT_MS[$name]=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' <<<"$out")
}
measure() {
    local name=$1 port=$2 out
    out=$(taskset -c "$CLIENT_CORE" timeout $((DURATION_S + 30)) dnsperf -s 127.0.0.1 -p "$port" \
        -d "$QUERIES" -l "$DURATION_S" -c "$CLIENTS" -q 200 2>&1)
    echo "$out" >"$WORK/dnsperf-$name.txt"
    QPS[$name]=$(awk '/Queries per second:/ {print $4}' <<<"$out")
    LAT_MS[$name]=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' <<<"$out")
    LOST[$name]=$(awk '/Queries lost:/ {print $3}' <<<"$out")
    local codes
    codes=$(awk -F': *' '/Response codes:/ {print $2}' <<<"$out")
    log "$name: ${QPS[$name]} qps, avg latency ${LAT_MS[$name]} ms, lost ${LOST[$name]}, codes: $codes"
}
for name_port in "arrow:$ARROW_PORT" "pdns:$PDNS_PORT" "knot:$KNOT_PORT" "pdnslib:$PDNSLIB_PORT"; do
    measure "${name_port%%:*}" "${name_port##*:}"
    measure_idle "${name_port%%:*}" "${name_port##*:}"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "dns_bench: $(uname -srm), $(nproc) cores, $(date -u +%FT%TZ)"
echo "loaded: dnsperf -l $DURATION_S -c $CLIENTS -q 200; idle: -l 3 -c 1 -q 1; $(wc -l <"$QUERIES") queries; server core $SERVER_CORE, client core $CLIENT_CORE"
printf '%-22s %12s %16s %16s %8s\n' server qps loaded_lat_ms idle_lat_ms lost
for name_label in "arrow:arrow (monoio, 1 core)" "pdns:pdns lua2 (no cache)" "knot:knot (static zone)" "pdnslib:pdns lua2 + libarrow_cdn"; do
    name=${name_label%%:*}
    printf '%-22s %12.0f %16s %16s %8s\n' "${name_label#*:}" "${QPS[$name]}" "${LAT_MS[$name]}" \
        "${IDLE_LAT_MS[$name]}" "${LOST[$name]}"
done
for peer in pdns knot; do
    echo "arrow/$peer: qps $(ratio "${QPS[arrow]}" "${QPS[$peer]}")x," \
        "loaded latency $(ratio "${LAT_MS[arrow]}" "${LAT_MS[$peer]}")x," \
        "idle latency $(ratio "${IDLE_LAT_MS[arrow]}" "${IDLE_LAT_MS[$peer]}")x"
done
echo "pdns+lib/pdns lua2: qps $(ratio "${QPS[pdnslib]}" "${QPS[pdns]}")x; arrow/pdns+lib: qps $(ratio "${QPS[arrow]}" "${QPS[pdnslib]}")x"
