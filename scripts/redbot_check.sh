#!/usr/bin/env bash
# REDbot (https://redbot.org, PyPI "redbot") against media URLs cached by Arrow.
#
#   scripts/redbot_check.sh
#
# Topology:  redbot CLI --> Arrow (127.0.0.1:A) --> tests/redbot/origin.py (127.0.0.1:O)
# Every listener binds port 0 and reports the port it got: the origins (O, and B for the direct
# baseline) write it to a file, Arrow (A, admin M) logs it in its "arrow node accepting" line.
# The origin is HTTP-clean (validators, ranges, conditional requests; REDbot is also run against
# it directly as a baseline). Scenarios, each checked with `redbot -o har URL`:
#   seg-cold      /vod/seg00001.ts     no warm-up: REDbot's own requests race Arrow's fill
#   seg-warm      /vod/seg00001.ts     video/mp2t, max-age=300, warmed with one GET (a HIT)
#   m3u8-warm     /vod/index.m3u8      application/vnd.apple.mpegurl, max-age=2, warmed
#   m3u8-stale    /vod/index.m3u8      warmed, then left 3 s to go stale (Arrow revalidates)
#   gz-m3u8-warm  /vod/gz/index.m3u8   gzip on Accept-Encoding, Vary: Accept-Encoding (variants)
#   cors-seg-warm /vod/cors/seg00001.ts  Vary: Origin, Access-Control-Allow-Origin echo
# tests/redbot/findings.py prints every note and fails on any "bad" or "warning" note in the
# Caching, Validation or Partial Content categories that REDbot does not also give the origin.
#
# Exit: 0 clean, 1 problems found (listed on stdout), 2 could not run (reason on stderr).
#
# Environment:
#   ARROW_BIN      Arrow binary (default: a copy of target/debug/arrow taken at start, so a
#                  concurrent rebuild cannot swap it mid-run)
#   REDBOT_ROOT    where the venv lives (default /tmp/arrow-redbot); redbot is pip-installed
#                  into $REDBOT_ROOT/venv if missing
#   REDBOT_SCENARIOS  space-separated subset of the scenario names above
#   KEEP_TMP=1     keep the run directory (HAR files, logs, config)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDBOT_ROOT=${REDBOT_ROOT:-/tmp/arrow-redbot}
VENV=$REDBOT_ROOT/venv
SCENARIOS=${REDBOT_SCENARIOS:-"seg-cold seg-warm m3u8-warm m3u8-stale gz-m3u8-warm cors-seg-warm"}
ADMIN_TOKEN="redbot-check-token"

log() { echo "[redbot-check] $*" >&2; }
cannot() { log "cannot run: $*"; exit 2; }

# ---------------------------------------------------------------- prerequisites (idempotent)
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || cannot "python3 not found"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || cannot "python3 >= 3.9 needed (redbot), found $("$PY" --version 2>&1)"
command -v curl >/dev/null || cannot "curl not found"
mkdir -p "$REDBOT_ROOT"
if [[ ! -x "$VENV/bin/redbot" ]]; then
  log "installing redbot into $VENV"
  if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    cannot "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check redbot >"$REDBOT_ROOT/pip.log" 2>&1 \
    || { tail -5 "$REDBOT_ROOT/pip.log" >&2; cannot "pip install redbot failed (log: $REDBOT_ROOT/pip.log)"; }
fi
REDBOT="$VENV/bin/redbot"
"$REDBOT" --help 2>/dev/null | grep -q -- "har" || cannot "$REDBOT has no HAR output (redbot too old?)"

# ---------------------------------------------------------------- run directory, processes
RUN=$(mktemp -d /tmp/arrow-redbot-run.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ "${KEEP_TMP:-0}" == 1 || $rc -ne 0 ]]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

if [[ -z "${ARROW_BIN:-}" ]]; then
  [[ -x "$REPO/target/debug/arrow" ]] || cannot "no $REPO/target/debug/arrow (build it, or set ARROW_BIN)"
  cp "$REPO/target/debug/arrow" "$RUN/arrow" || cannot "copying the arrow binary failed"
  ARROW_BIN=$RUN/arrow
fi
[[ -x "$ARROW_BIN" ]] || cannot "ARROW_BIN=$ARROW_BIN is not executable"

# Each listener binds port 0 itself and reports the port it got (see the header).
# wait_port VAR FILE PID NAME LOG: set VAR to the port NAME (process PID) wrote to FILE; exit 2
# if it dies first or says nothing within 10 s.
wait_port() {
  local -n _port=$1
  local p
  for _ in $(seq 1 100); do
    if [[ -s "$2" ]]; then
      p=$(<"$2")
      [[ "$p" =~ ^[0-9]+$ ]] && { _port=$p; return 0; }
    fi
    kill -0 "$3" 2>/dev/null || { tail -20 "$5" >&2; cannot "$4 exited at start"; }
    sleep 0.1
  done
  tail -20 "$5" >&2; cannot "$4 reported no port in $2 within 10 s"
}

"$PY" "$REPO/tests/redbot/origin.py" "$RUN/origin.port" "$RUN/origin-requests.jsonl" >"$RUN/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=($ORIGIN_PID)
# a second instance of the same origin for the direct baseline runs (its requests not logged)
"$PY" "$REPO/tests/redbot/origin.py" "$RUN/origin-baseline.port" >"$RUN/origin-baseline.log" 2>&1 &
BASELINE_PID=$!
PIDS+=($BASELINE_PID)
wait_port OPORT "$RUN/origin.port" "$ORIGIN_PID" origin "$RUN/origin.log"
wait_port BPORT "$RUN/origin-baseline.port" "$BASELINE_PID" "baseline origin" "$RUN/origin-baseline.log"

cat >"$RUN/arrow.toml" <<EOF
[node]
name = "n01.redbot.test"
cores = [0]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
admin_token = "$ADMIN_TOKEN"
debug_headers = true
access_log = "$RUN/access.log"

[storage]
ram_tier_bytes = 8388608

[[disk]]
path = "$RUN/d0.slab"
size_bytes = 67108864

[[host]]
hosts = ["*"]
technical_labels = 0
origins = ["http://127.0.0.1:$OPORT"]
EOF
"$ARROW_BIN" check-config "$RUN/arrow.toml" >"$RUN/check-config.log" 2>&1 \
  || { cat "$RUN/check-config.log" >&2; cannot "arrow check-config rejected the config"; }
"$ARROW_BIN" run --config "$RUN/arrow.toml" >"$RUN/arrow.log" 2>&1 &
PIDS+=($!)
ARROW_PID=$!

# Arrow's bound addresses, from its start-up line (colour codes stripped).
APORT=""; MPORT=""
for _ in $(seq 1 100); do
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$RUN/arrow.log" | grep -m1 'arrow node accepting' || true)
  if [[ -n "$line" ]]; then
    APORT=$(sed -E 's/.*listen=\[[^]]*:([0-9]+)\].*/\1/' <<<"$line")
    MPORT=$(sed -E 's/.*admin=Some\([^)]*:([0-9]+)\).*/\1/' <<<"$line")
    break
  fi
  kill -0 "$ARROW_PID" 2>/dev/null || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow exited at start"; }
  sleep 0.1
done
[[ "$APORT" =~ ^[0-9]+$ && "$MPORT" =~ ^[0-9]+$ ]] \
  || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow logged no 'arrow node accepting' line with listen/admin ports within 10 s"; }

ready=0
for _ in $(seq 1 100); do
  if curl -fs -o /dev/null "http://127.0.0.1:$MPORT/health" \
     && curl -s -o /dev/null "http://127.0.0.1:$OPORT/" && curl -s -o /dev/null "http://127.0.0.1:$BPORT/"; then ready=1; break; fi
  kill -0 "$ARROW_PID" 2>/dev/null || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow exited at start"; }
  sleep 0.1
done
[[ $ready == 1 ]] || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow /health or the origin not ready after 10 s"; }
log "origin 127.0.0.1:$OPORT, arrow 127.0.0.1:$APORT (admin $MPORT), redbot $("$VENV/bin/pip" show redbot 2>/dev/null | sed -n 's/^Version: //p')"

A="http://127.0.0.1:$APORT"
O="http://127.0.0.1:$BPORT"
warm() {  # PATH [CURL ARGS]: one GET through Arrow, like REDbot's main request (no Accept-Encoding)
  local p=$1; shift
  curl -s -o /dev/null -A 'RED/warm-up' "$@" -w "  warm-up GET $p $* -> %{http_code} %header{x-cache}\n" "$A$p" >&2
}
redbot_har() {  # URL OUT
  timeout 120 "$REDBOT" -o har "$1" >"$2" 2>"$2.stderr" || log "redbot exited $? for $1 (see $2.stderr)"
}

args=()
for sc in $SCENARIOS; do
  case $sc in
    seg-cold) path=/vod/seg00001.ts ;;
    seg-warm) path=/vod/seg00001.ts; warm $path ;;
    m3u8-warm) path=/vod/index.m3u8; warm $path ;;
    m3u8-stale) path=/vod/index.m3u8; warm $path; sleep 3 ;;
    gz-m3u8-warm) path=/vod/gz/index.m3u8; warm $path; warm $path -H 'Accept-Encoding: gzip' ;;
    cors-seg-warm) path=/vod/cors/seg00001.ts; warm $path ;;
    *) cannot "unknown scenario $sc" ;;
  esac
  if [[ $sc == seg-cold ]]; then
    # purge in case an earlier scenario cached it (harmless when absent)
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
      "http://127.0.0.1:$MPORT/purge?key=127.0.0.1$path"
  fi
  log "scenario $sc: redbot $A$path"
  redbot_har "$A$path" "$RUN/$sc.arrow.har"
  redbot_har "$O$path" "$RUN/$sc.origin.har"
  args+=("$sc" "$RUN/$sc.arrow.har" "$RUN/$sc.origin.har")
done

kill -0 "$ARROW_PID" 2>/dev/null || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow died during the run"; }

"$PY" "$REPO/tests/redbot/findings.py" "${args[@]}"
rc=$?

echo
echo "Requests the origin behind Arrow received:"
"$PY" - "$RUN/origin-requests.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    cond = " conditional" if r["conditional"] else ""
    rng = " range=" + r["range"] if r["range"] else ""
    if r["path"] == "/":
        continue  # readiness probe
    ae = r["headers"].get("Accept-Encoding")
    ae = " accept-encoding=" + ae if ae else ""
    print("  %s %s -> %s%s%s%s" % (r["method"], r["path"], r["status"], cond, rng, ae))
EOF
exit $rc
