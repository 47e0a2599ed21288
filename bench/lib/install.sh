# bench/lib/install.sh — install the peers with apt on a fresh Debian machine (sourced).
#
# bench_install PKG...: installs the packages whose commands are missing. While apt runs,
# /usr/sbin/policy-rc.d answers 101 so no package starts its system service (nginx on :80,
# varnish on :6081, trafficserver on :8080); a policy-rc.d that was already there is left as is.

# command → Debian package
declare -A BENCH_PKG_OF=(
    [nginx]=nginx
    [varnishd]=varnish
    [traffic_server]=trafficserver
    [wrk]=wrk
    [fio]=fio
    [dnsperf]=dnsperf
)

bench_install() {
    local need=() cmd created=0
    for cmd in "$@"; do
        if [ "$cmd" = matplotlib ]; then
            /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
            continue
        fi
        command -v "$cmd" >/dev/null 2>&1 || need+=("${BENCH_PKG_OF[$cmd]:-$cmd}")
    done
    [ "${#need[@]}" -gt 0 ] || return 0
    if [ "$(id -u)" != 0 ]; then
        log "missing ${need[*]} (run as root to install them with apt)"
        return 1
    fi
    log "apt-get install ${need[*]}"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# written by arrow bench/run.sh while apt runs\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created=1
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq || true; } >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || rc=$?
    if [ "$created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$rc" = 0 ] || log "apt-get install ${need[*]} failed (status $rc)"
    return "$rc"
}
