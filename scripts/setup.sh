#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (idempotent) and raises rlimits for
# the calling shell's children. Sourced by scripts/test.sh and .ci/run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# mimalloc (the arrow binary's allocator) is C, built by the cc crate.
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
# Conformance tests (tests/tests/conformance.rs): the HTTP WG cache suite runs on node, REDbot
# in a Python venv, the players in Chromium on titles ffmpeg makes.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
[ -x /usr/bin/chromium ] || need+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# dist/arrow.service is checked with systemd-analyze (tests/tests/systemd.rs).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The dashboard and alert rules are checked against a real Prometheus (tests/tests/cluster.rs).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# lib/ (tests/tests/lib_integration.rs): nginx with the Lua module and PowerDNS with the lua2
# backend, both loading libarrow_cdn.so through LuaJIT's FFI. (Not the `luajit` package: its
# libluajit-5.1-2 replaces the libluajit2-5.1-2 the nginx Lua module needs.)
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
command -v pdns_server >/dev/null 2>&1 || need+=(pdns-server)
ls /usr/lib/*/pdns/liblua2backend.so >/dev/null 2>&1 || need+=(pdns-backend-lua2)
# HTTPS (tests/tests/tls.rs): certificates made with openssl, sessions checked with s_client,
# the listener audited with testssl.sh.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# bench/tls_bench.sh's smoke run (bench/tests/tls_bench_smoke.rs) drives HTTPS with wrk.
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || need+=(testssl.sh)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq || true) >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: missing ${need[*]} (run as root to install them)" >&2
  fi
fi
