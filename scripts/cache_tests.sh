#!/usr/bin/env bash
# Run the HTTP WG shared-cache test suite ("cache-tests", https://cache-tests.fyi,
# https://github.com/http-tests/cache-tests) against Arrow as a reverse proxy.
#
#   scripts/cache_tests.sh [RESULTS_JSON]          full run (default /tmp/cache-tests-results.json)
#   scripts/cache_tests.sh -i TEST_ID              one test, with request/response dumps
#
# Topology:  suite CLI --> Arrow (127.0.0.1:A) --> suite origin server (127.0.0.1:O)
# The CLI runs in shared-cache mode (runTests(..., browserCache=false)): browser_only tests are
# skipped, cdn_only tests are run.
#
# Environment:
#   ARROW_BIN        Arrow binary to test (default: a copy of target/debug/arrow taken at start,
#                    so a concurrent rebuild cannot swap it mid-run)
#   CACHE_TESTS_DIR  suite checkout to use (default: tests/cache-tests/suite, vendored; else the
#                    local mirror /work/.mirror/http-tests+cache-tests/repo; else git clone)
#   WORK_ROOT        where the suite copy + node_modules live (default /tmp/arrow-cachetests)
#   ARROW_DEBUG_HEADERS=1  turn on Arrow's debug response headers (off by default: extra
#                    headers are harmless to most tests but this is not what production sends)
#   ARROW_HOST_EXTRA extra TOML lines appended to the [[host]] rule, e.g.
#                    ARROW_HOST_EXTRA='keep_cdn_cache_control = true' (newer builds: the suite
#                    checks that CDN-Cache-Control reaches the client in cdn-private/cdn-no-cache)
#   KEEP_TMP=1       keep the run directory (config, logs) even on success
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK_ROOT=${WORK_ROOT:-/tmp/arrow-cachetests}
SUITE_PIN=b55b8bda3dbb8c927c04e85bd8d496a8caa3e4ba   # upstream commit of the vendored copy
MIRROR_GIT=${MIRROR_GIT:-/work/.mirror/http-tests+cache-tests/repo}
UNDICI_SPEC="undici@^7.4.0"   # the suite's only runtime dep the CLI needs (interim-response tests)

TEST_ID=""
if [[ "${1:-}" == "-i" ]]; then
  TEST_ID=${2:?"-i needs a test id"}
  shift 2
fi
OUT=${1:-/tmp/cache-tests-results.json}

log() { echo "[cache-tests] $*" >&2; }

# ---------------------------------------------------------------- prerequisites (idempotent)
need_node() {
  # undici 7 needs node >= 20.18.1; the suite itself needs >= 14.8 and global fetch (>= 18).
  if command -v node >/dev/null 2>&1 && node -e '
      const [a,b,c]=process.versions.node.split(".").map(Number);
      process.exit((a>20 || (a==20 && (b>18 || (b==18 && c>=1)))) ? 0 : 1)'; then
    return 0
  fi
  log "node >= 20.18.1 not found; installing nodejs + npm from Debian"
  if [[ $(id -u) -ne 0 ]]; then log "need root for apt-get"; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  node -e 'process.exit(Number(process.versions.node.split(".")[0])>=20?0:1)' \
    || { log "Debian's node $(node --version) is too old for undici 7"; exit 1; }
}
need_node
command -v python3 >/dev/null || { log "python3 missing"; exit 1; }

# ---------------------------------------------------------------- the suite
SUITE="$WORK_ROOT/suite"
mkdir -p "$WORK_ROOT"
# The suite is re-copied every run (it is small) so it always matches its source;
# node_modules lives one level up, in $WORK_ROOT, and node finds it by walking up.
SRC=${CACHE_TESTS_DIR:-$REPO/tests/cache-tests/suite}
rm -rf "$SUITE.tmp" && mkdir -p "$SUITE.tmp"
if [[ -f "$SRC/tests/index.mjs" ]]; then
  log "suite: $SRC"
  cp -a "$SRC/." "$SUITE.tmp/"
elif [[ -d "$MIRROR_GIT" ]]; then
  ref=$SUITE_PIN
  git --git-dir="$MIRROR_GIT" cat-file -e "$ref^{commit}" 2>/dev/null || ref=HEAD
  log "suite: git archive $ref from $MIRROR_GIT"
  git --git-dir="$MIRROR_GIT" archive "$ref" package.json LICENSE test-engine tests results \
    | tar x -C "$SUITE.tmp"
else
  log "suite: git clone https://github.com/http-tests/cache-tests @ $SUITE_PIN"
  git clone -q https://github.com/http-tests/cache-tests "$SUITE.tmp"
  git -C "$SUITE.tmp" checkout -q "$SUITE_PIN"
fi
rm -rf "$SUITE" && mv "$SUITE.tmp" "$SUITE"
if [[ ! -f "$WORK_ROOT/node_modules/undici/package.json" ]]; then
  log "npm install $UNDICI_SPEC into $WORK_ROOT/node_modules"
  # Only undici: the suite's package.json also pulls liquidjs/marked/npm for the web UI,
  # none of which the CLI or the origin server import.
  npm install --prefix "$WORK_ROOT" --no-save --no-audit --no-fund --no-package-lock \
    --ignore-scripts "$UNDICI_SPEC" >/dev/null
fi

# ---------------------------------------------------------------- Arrow binary
if [[ -z "${ARROW_BIN:-}" ]]; then
  ARROW_BIN="$WORK_ROOT/arrow"
  if [[ -x "$REPO/target/debug/arrow" ]]; then
    cp "$REPO/target/debug/arrow" "$ARROW_BIN.tmp" && mv "$ARROW_BIN.tmp" "$ARROW_BIN"
  fi
fi
[[ -x "$ARROW_BIN" ]] || { log "no Arrow binary at $ARROW_BIN (build it or set ARROW_BIN)"; exit 1; }

# ---------------------------------------------------------------- ports
# Every listener binds port 0 and reports the port it got: the origin writes it to a file, Arrow
# names its addresses in its "arrow node accepting" log line. No port is picked and hoped for.

RUN=$(mktemp -d "$WORK_ROOT/run.XXXXXX")
HOST_EXTRA=${ARROW_HOST_EXTRA:-}
DEBUG_HEADERS=false; [[ -n "${ARROW_DEBUG_HEADERS:-}" && "${ARROW_DEBUG_HEADERS}" != 0 ]] && DEBUG_HEADERS=true
ORIGIN_PID=""; ARROW_PID=""
cleanup() {
  local rc=$?
  [[ -n "$ARROW_PID" ]] && kill "$ARROW_PID" 2>/dev/null && wait "$ARROW_PID" 2>/dev/null || true
  [[ -n "$ORIGIN_PID" ]] && kill "$ORIGIN_PID" 2>/dev/null && wait "$ORIGIN_PID" 2>/dev/null || true
  rm -f "$RUN/d0.slab"
  if [[ $rc -eq 0 && -z "${KEEP_TMP:-}" ]]; then rm -rf "$RUN"; else log "run dir kept: $RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- origin (the suite's server)
# server.mjs calls server.listen(port) on all interfaces; this wrapper pins it to loopback and
# port 0, and writes the port it got to origin.port.
cat >"$RUN/origin.mjs" <<EOF
import http from 'http'
import fs from 'fs'
const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (port, ...rest) {
  if (typeof port === 'number' || typeof port === 'string') {
    this.once('listening', () => fs.writeFileSync('$RUN/origin.port', String(this.address().port)))
    return listen.call(this, 0, '127.0.0.1', ...rest)
  }
  return listen.call(this, port, ...rest)
}
await import('$SUITE/test-engine/server/server.mjs')
EOF
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port=0 \
   npm_config_pidfile="$RUN/origin.pid" node --no-warnings "$RUN/origin.mjs" >"$RUN/origin.log" 2>&1) &
ORIGIN_PID=$!
for _ in $(seq 1 100); do
  [[ -s "$RUN/origin.port" ]] && break
  kill -0 "$ORIGIN_PID" 2>/dev/null || { log "origin exited early; see $RUN"; exit 1; }
  sleep 0.1
done
ORIGIN_PORT=$(cat "$RUN/origin.port" 2>/dev/null) || { log "origin reported no port"; exit 1; }

# ---------------------------------------------------------------- Arrow
cat >"$RUN/arrow.toml" <<EOF
# generated by scripts/cache_tests.sh
[node]
name = "cache-tests.local"
cores = [0]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
admin_token = "cache-tests-admin-token-not-secret"
debug_headers = $DEBUG_HEADERS
access_log = "$RUN/access.log"

[storage]
ram_tier_bytes = 16777216

[[disk]]
path = "$RUN/d0.slab"
size_bytes = 67108864

[[host]]
hosts = ["*"]
technical_labels = 0
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
# default_ttl_s unset: no freshness is invented for responses without explicit freshness.
# The suite makes distinct URLs with query strings (other.mjs query-args-*), so keep them all.
query = "keep"
$HOST_EXTRA
EOF
"$ARROW_BIN" check-config "$RUN/arrow.toml" >"$RUN/check-config.log" 2>&1 \
  || { cat "$RUN/check-config.log" >&2; exit 1; }
"$ARROW_BIN" run --config "$RUN/arrow.toml" >"$RUN/arrow.log" 2>&1 &
ARROW_PID=$!

wait_up() { # url name pid
  for _ in $(seq 1 100); do
    kill -0 "$3" 2>/dev/null || { log "$2 exited early; see $RUN"; exit 1; }
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  log "$2 did not come up at $1"; exit 1
}
# Arrow's bound addresses, from its start-up line (colour codes stripped).
ARROW_PORT=""; ADMIN_PORT=""
for _ in $(seq 1 100); do
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$RUN/arrow.log" | grep -m1 'arrow node accepting' || true)
  if [[ -n "$line" ]]; then
    ARROW_PORT=$(sed -E 's/.*listen=\[[^]]*:([0-9]+)\].*/\1/' <<<"$line")
    ADMIN_PORT=$(sed -E 's/.*admin=Some\([^)]*:([0-9]+)\).*/\1/' <<<"$line")
    break
  fi
  kill -0 "$ARROW_PID" 2>/dev/null || { log "arrow exited early; see $RUN"; exit 1; }
  sleep 0.1
done
[[ "$ARROW_PORT" =~ ^[0-9]+$ && "$ADMIN_PORT" =~ ^[0-9]+$ ]] \
  || { log "arrow reported no listen/admin address; see $RUN/arrow.log"; exit 1; }
wait_up "http://127.0.0.1:$ORIGIN_PORT/" origin "$ORIGIN_PID"
wait_up "http://127.0.0.1:$ADMIN_PORT/health" arrow "$ARROW_PID"
log "origin pid $ORIGIN_PID on :$ORIGIN_PORT, arrow pid $ARROW_PID on :$ARROW_PORT (admin :$ADMIN_PORT), run dir $RUN"

# ---------------------------------------------------------------- client
# cli.mjs reads npm_config_* || npm_package_config_*; both set so '' means "all tests".
run_cli() {
  (cd "$SUITE" && env npm_config_base="http://127.0.0.1:$ARROW_PORT" npm_package_config_base="" \
     npm_config_id="$1" npm_package_config_id="" node --no-warnings test-engine/cli.mjs)
}
if [[ -n "$TEST_ID" ]]; then
  run_cli "$TEST_ID"
  exit 0
fi

log "running the suite (a few minutes; many tests pause 3 s+)"
start=$(date +%s)
run_cli "" >"$RUN/results.json" 2>"$RUN/cli.stderr" || { log "CLI failed"; tail "$RUN/cli.stderr" >&2; exit 1; }
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$RUN/results.json" \
  || { log "CLI output is not JSON; see $RUN/results.json"; exit 1; }
mkdir -p "$(dirname "$OUT")" && cp "$RUN/results.json" "$OUT"
log "suite finished in $(( $(date +%s) - start )) s; results: $OUT"
if [[ -s "$RUN/cli.stderr" ]]; then
  log "client stderr ($(wc -l <"$RUN/cli.stderr") lines), first lines:"; head -5 "$RUN/cli.stderr" >&2
fi

python3 "$REPO/scripts/cache_tests_summary.py" "$OUT" --suite "$SUITE" --compare
