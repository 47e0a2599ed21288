# bench/lib/peers.sh — start the shared origin and each cache as a private loopback instance
# (sourced after common.sh). Every instance gets its own config, pid file and cache folder under
# $SCRATCH/<name>, is pinned with taskset, and is tracked for the EXIT trap.
#
# After start_<peer>, PEER_PID[<peer>] holds the PID whose process tree is charged for CPU
# (nginx: master + worker; varnish: manager + child; arrow: the node; ats: traffic_server),
# and PEER_PORT[<peer>] its HTTP port.
#
# Inputs: BENCH_DIR (repo's bench/), SCRATCH, SERVER_CORE, ORIGIN_CORE, BASE_PORT, ARROW_BIN;
# optional NGINX_CACHE_MAX [1g] (proxy_cache max_size), NGINX_WORKERS [1] (one per core in
# SERVER_CORE, e.g. SERVER_CORE=0,1 NGINX_WORKERS=2, bound with worker_cpu_affinity auto),
# VARNISH_STORAGE [malloc,256m] (-s).

declare -A PEER_PID PEER_PORT
ORIGIN_PORT=$((BASE_PORT + 1))
PEER_PORT[arrow]=$((BASE_PORT + 2))
ARROW_ADMIN_PORT=$((BASE_PORT + 3))
PEER_PORT[nginx]=$((BASE_PORT + 4))
PEER_PORT[varnish]=$((BASE_PORT + 5))
PEER_PORT[ats]=$((BASE_PORT + 6))
ORIGIN_PID=
ORIGIN_LOG=
ORIGIN_KIND=

# render TEMPLATE OUT NAME=VALUE...: copy TEMPLATE to OUT replacing each @NAME@ by VALUE.
render() {
    local tpl=$1 out=$2 kv expr=()
    shift 2
    for kv in "$@"; do
        expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${expr[@]}" "$tpl" > "$out"
    if grep -q '@[A-Z_]*@' "$out"; then
        die "render $tpl: unreplaced placeholder: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
    fi
}

# gen_files ROOT SMALL_COUNT LARGE_COUNT: ROOT/1k/0000.. (1 KiB each) and ROOT/1m/000.. (1 MiB
# each), random bytes, generated once and reused while the counts match.
gen_files() {
    local root=$1 small=$2 large=$3 i stamp="$1/.generated-$2-$3"
    [ -e "$stamp" ] && return 0
    rm -rf "$root"
    mkdir -p "$root/1k" "$root/1m"
    head -c $((small * 1024)) /dev/urandom > "$root/.small"
    head -c $((large * 1048576)) /dev/urandom > "$root/.large"
    (cd "$root/1k" && split -a 4 -d -b 1024 ../.small "")
    (cd "$root/1m" && split -a 3 -d -b 1048576 ../.large "")
    rm -f "$root/.small" "$root/.large"
    chmod -R a+rX "$root"
    touch "$stamp"
}

# origin_requests: requests the origin has logged so far.
origin_requests() {
    [ -f "$ORIGIN_LOG" ] || { echo 0; return; }
    wc -l < "$ORIGIN_LOG"
}

# origin_settle: wait until the origin's (buffered) access log stops growing, ≤ 2 s.
origin_settle() {
    local a b i
    a=$(origin_requests)
    for ((i = 0; i < 10; i++)); do
        sleep 0.2
        b=$(origin_requests)
        [ "$a" = "$b" ] && return 0
        a=$b
    done
}

# start_origin ROOT: nginx when installed (and not told otherwise), else bench/origin.py.
start_origin() {
    local root=$1 dir="$SCRATCH/origin"
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    ORIGIN_LOG="$dir/access.log"
    : > "$ORIGIN_LOG"
    if [ "${ORIGIN:-auto}" != python ] && command -v nginx >/dev/null 2>&1; then
        ORIGIN_KIND=nginx
        render "$BENCH_DIR/peers/origin-nginx.conf.in" "$dir/nginx.conf" \
            DIR="$dir" PORT="$ORIGIN_PORT" ROOT="$root"
        taskset -c "$ORIGIN_CORE" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
            > "$dir/stdout.log" 2>&1 &
    else
        ORIGIN_KIND=python
        taskset -c "$ORIGIN_CORE" python3 "$BENCH_DIR/origin.py" --listen "127.0.0.1:$ORIGIN_PORT" \
            --root "$root" --log "$ORIGIN_LOG" --pid-file "$dir/origin.pid" > "$dir/stdout.log" 2>&1 &
    fi
    ORIGIN_PID=$!
    bench_track "$ORIGIN_PID"
    wait_http "http://127.0.0.1:$ORIGIN_PORT/1k/0000" 100 || {
        cat "$dir"/*.log >&2
        die "origin ($ORIGIN_KIND) did not start on :$ORIGIN_PORT"
    }
    # The readiness probe is not a cache request; count from here.
    origin_settle
    log "origin ($ORIGIN_KIND) on 127.0.0.1:$ORIGIN_PORT pid $ORIGIN_PID, root $root"
}

start_arrow() {
    local dir="$SCRATCH/arrow" port=${PEER_PORT[arrow]}
    rm -rf "$dir"
    mkdir -p "$dir"
    render "$BENCH_DIR/peers/arrow.toml.in" "$dir/arrow.toml" \
        DIR="$dir" PORT="$port" ADMIN_PORT="$ARROW_ADMIN_PORT" CORE="$SERVER_CORE" \
        ORIGIN_PORT="$ORIGIN_PORT" RAM_BYTES="$ARROW_RAM_BYTES" DISK_BYTES="$ARROW_DISK_BYTES"
    RUST_LOG=${RUST_LOG:-warn} taskset -c "$SERVER_CORE" "$ARROW_BIN" run --config "$dir/arrow.toml" \
        > "$dir/arrow.log" 2>&1 &
    PEER_PID[arrow]=$!
    echo "${PEER_PID[arrow]}" > "$dir/arrow.pid"
    bench_track "${PEER_PID[arrow]}"
    wait_http "http://127.0.0.1:$ARROW_ADMIN_PORT/health" 300 || {
        tail -20 "$dir/arrow.log" >&2
        die "arrow did not start (admin :$ARROW_ADMIN_PORT)"
    }
    log "arrow on 127.0.0.1:$port pid ${PEER_PID[arrow]} ($ARROW_BIN)"
}

start_nginx() {
    local dir="$SCRATCH/nginx" port=${PEER_PORT[nginx]}
    rm -rf "$dir"
    mkdir -p "$dir/tmp" "$dir/cache"
    render "$BENCH_DIR/peers/nginx-cache.conf.in" "$dir/nginx.conf" \
        DIR="$dir" PORT="$port" ORIGIN_PORT="$ORIGIN_PORT" CACHE_MAX="${NGINX_CACHE_MAX:-1g}" \
        WORKERS="${NGINX_WORKERS:-1}" \
        AFFINITY="$([ "${NGINX_WORKERS:-1}" -gt 1 ] && echo 'worker_cpu_affinity auto;' || true)"
    taskset -c "$SERVER_CORE" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
        > "$dir/stdout.log" 2>&1 &
    PEER_PID[nginx]=$!
    bench_track "${PEER_PID[nginx]}"
    wait_http "http://127.0.0.1:$port/" 100 || {
        cat "$dir/error.log" >&2
        die "nginx proxy_cache did not start on :$port"
    }
    log "nginx proxy_cache on 127.0.0.1:$port pid ${PEER_PID[nginx]}"
}

start_varnish() {
    local dir="$SCRATCH/varnish" port=${PEER_PORT[varnish]}
    rm -rf "$dir"
    mkdir -p "$dir/work"
    chmod 755 "$dir" "$dir/work"
    render "$BENCH_DIR/peers/varnish.vcl.in" "$dir/bench.vcl" ORIGIN_PORT="$ORIGIN_PORT"
    chmod 644 "$dir/bench.vcl"
    taskset -c "$SERVER_CORE" varnishd -F -n "$dir/work" -a "127.0.0.1:$port" -f "$dir/bench.vcl" \
        -s "${VARNISH_STORAGE:-malloc,256m}" -p thread_pools=1 -P "$dir/varnishd.pid" > "$dir/varnishd.log" 2>&1 &
    PEER_PID[varnish]=$!
    bench_track "${PEER_PID[varnish]}"
    wait_http "http://127.0.0.1:$port/" 150 || {
        cat "$dir/varnishd.log" >&2
        die "varnish did not start on :$port"
    }
    log "varnish on 127.0.0.1:$port pid ${PEER_PID[varnish]}"
}

# Traffic Server, disk only: a private runroot, a pre-allocated span file owned by the
# trafficserver user (ATS does not create it, and without it silently runs as a plain proxy),
# RAM cache 0, xdebug for X-Cache.
start_ats() {
    local dir="$SCRATCH/ats" port=${PEER_PORT[ats]} user=trafficserver
    id "$user" >/dev/null 2>&1 || user=root
    rm -rf "$dir"
    mkdir -p "$dir"/{etc,log,run,cache,plugins,bin}
    render "$BENCH_DIR/peers/ats-runroot.yaml.in" "$dir/runroot.yaml" DIR="$dir"
    render "$BENCH_DIR/peers/ats-records.config.in" "$dir/etc/records.config" \
        DIR="$dir" PORT="$port" USER="$user"
    render "$BENCH_DIR/peers/ats-remap.config.in" "$dir/etc/remap.config" \
        PORT="$port" ORIGIN_PORT="$ORIGIN_PORT"
    echo "$dir/cache/span.db $ATS_SPAN_BYTES" > "$dir/etc/storage.config"
    echo "xdebug.so --enable=x-cache" > "$dir/etc/plugin.config"
    local f
    for f in cache.config hosting.config ip_allow.yaml logging.yaml parent.config sni.yaml \
        splitdns.config ssl_multicert.config strategies.yaml volume.config socks.config; do
        [ -e "/etc/trafficserver/$f" ] && cp "/etc/trafficserver/$f" "$dir/etc/$f"
    done
    fallocate -l "$ATS_SPAN_BYTES" "$dir/cache/span.db"
    chown -R "$user" "$dir"
    taskset -c "$SERVER_CORE" traffic_server --run-root="$dir/runroot.yaml" > "$dir/stdout.log" 2>&1 &
    PEER_PID[ats]=$!
    bench_track "${PEER_PID[ats]}"
    wait_http "http://127.0.0.1:$port/" 300 || {
        tail -20 "$dir/log/diags.log" "$dir/stdout.log" >&2 2>/dev/null
        log "traffic server did not start on :$port"
        return 1
    }
    log "traffic server on 127.0.0.1:$port pid ${PEER_PID[ats]}"
}

# start_tls_arrow / start_tls_nginx: the HTTPS listeners of bench/tls_bench.sh and
# bench/idle.sh (TLS=1): peers/arrow-tls.toml.in and peers/nginx-tls.conf.in with CERT and KEY;
# Arrow's plain listener on ARROW_HTTP_PORT; nginx's cache max_size NGINX_CACHE_MAX [2g].
start_tls_arrow() {
    local dir="$SCRATCH/arrow"
    rm -rf "$dir"
    mkdir -p "$dir"
    render "$BENCH_DIR/peers/arrow-tls.toml.in" "$dir/arrow.toml" DIR="$dir" PORT="${PEER_PORT[arrow]}" \
        HTTP_PORT="$ARROW_HTTP_PORT" ADMIN_PORT="$ARROW_ADMIN_PORT" CORE="$SERVER_CORE" \
        ORIGIN_PORT="$ORIGIN_PORT" RAM_BYTES="$ARROW_RAM_BYTES" DISK_BYTES="$ARROW_DISK_BYTES" \
        CERT="$CERT" KEY="$KEY"
    RUST_LOG=warn taskset -c "$SERVER_CORE" "$ARROW_BIN" run --config "$dir/arrow.toml" > "$dir/arrow.log" 2>&1 &
    PEER_PID[arrow]=$!
    bench_track "${PEER_PID[arrow]}"
    wait_http "http://127.0.0.1:$ARROW_ADMIN_PORT/health" 300 || { tail -20 "$dir/arrow.log" >&2; die "arrow did not start"; }
    log "arrow (HTTPS) on 127.0.0.1:${PEER_PORT[arrow]} pid ${PEER_PID[arrow]} ($ARROW_BIN)"
}

start_tls_nginx() {
    local dir="$SCRATCH/nginx" i
    rm -rf "$dir"
    mkdir -p "$dir/tmp" "$dir/cache"
    render "$BENCH_DIR/peers/nginx-tls.conf.in" "$dir/nginx.conf" DIR="$dir" PORT="${PEER_PORT[nginx]}" \
        ORIGIN_PORT="$ORIGIN_PORT" CACHE_MAX="${NGINX_CACHE_MAX:-2g}" CERT="$CERT" KEY="$KEY"
    taskset -c "$SERVER_CORE" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" > "$dir/stdout.log" 2>&1 &
    PEER_PID[nginx]=$!
    bench_track "${PEER_PID[nginx]}"
    for ((i = 0; i < 100; i++)); do
        if curl -sk -o /dev/null "https://127.0.0.1:${PEER_PORT[nginx]}/1k/0000"; then
            log "nginx proxy_cache (HTTPS) on 127.0.0.1:${PEER_PORT[nginx]} pid ${PEER_PID[nginx]}"
            return 0
        fi
        sleep 0.1
    done
    cat "$dir/error.log" >&2
    die "nginx did not start"
}

# start_peer NAME
start_peer() { "start_$1"; }

# stop_peer NAME
stop_peer() {
    local pid=${PEER_PID[$1]:-}
    [ -n "$pid" ] && bench_stop "$pid"
    PEER_PID[$1]=
}
