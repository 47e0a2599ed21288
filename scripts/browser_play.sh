#!/usr/bin/env bash
# A real player in a real browser through Arrow: an HLS and a DASH title made by ffmpeg, played
# by hls.js and dash.js in Debian's chromium (headless, driven by playwright-core), twice each.
#
#   scripts/browser_play.sh
#
# Topology:
#   chromium page (127.0.0.1:P, served by the driver) --CORS--> Arrow (127.0.0.1:A)
#        --> tests/browser/origin.py (127.0.0.1:O): Access-Control-Allow-Origin = the Origin,
#            Vary: Origin, max-age=2 on playlists/manifests, max-age=3600 on segments, logs
#            every request it gets.
# Every listener binds port 0 and reports the port it got: the origin (O) writes it to a file,
# Arrow (A, admin M) logs it in its "arrow node accepting" line, the page servers (P, and the
# second page's) are bound by play.cjs itself.
# Passes when every play ends without a stall, the seek (3 s -> 8 s) resumes at the target, no
# player error, and the second play of each title (a fresh browser context, so an empty browser
# cache) makes the origin serve no segment -- only playlist/manifest requests or revalidations.
# A third play of each title from a page on another port (another Origin) must work as well:
# Vary: Origin means Arrow asks the origin again and answers with that page's own
# Access-Control-Allow-Origin (a cache ignoring Vary would replay the first page's and the
# browser would block the media).
#
# Exit: 0 pass, 1 fail (details on stdout), 2 could not run (reason on stderr).
#
# Environment:
#   ARROW_BIN       Arrow binary (default: a copy of target/debug/arrow taken at start)
#   BROWSER_ROOT    where node_modules (playwright-core, hls.js, dashjs) live (default /tmp/arrow-browser)
#   CHROMIUM        browser binary (default /usr/bin/chromium)
#   KEEP_TMP=1      keep the run directory (media, logs, result.json) even on success
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BROWSER_ROOT=${BROWSER_ROOT:-/tmp/arrow-browser}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
NPM_PKGS=("hls.js@^1.5" "dashjs@^5" "playwright-core@^1.50")

log() { echo "[browser-play] $*" >&2; }
cannot() { log "cannot run: $*"; exit 2; }

# ---------------------------------------------------------------- prerequisites (idempotent)
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
[[ -x "$CHROMIUM" ]] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [[ ${#need[@]} -gt 0 ]]; then
  [[ $(id -u) -eq 0 ]] || cannot "missing ${need[*]} and not root (apt-get install -y ${need[*]})"
  log "installing ${need[*]} from Debian"
  (apt-get update -qq || true) >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >"/tmp/arrow-browser-apt.log" 2>&1 \
    || { tail -5 /tmp/arrow-browser-apt.log >&2; cannot "apt-get install ${need[*]} failed"; }
fi
[[ -x "$CHROMIUM" ]] || cannot "no browser at $CHROMIUM"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
  || cannot "node >= 18 needed (playwright-core), found $(node --version)"
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || cannot "python3 not found"

NM=$BROWSER_ROOT/node_modules
if [[ ! -f $NM/playwright-core/package.json || ! -f $NM/hls.js/dist/hls.min.js \
      || ! -f $NM/dashjs/dist/modern/umd/dash.all.min.js ]]; then
  log "installing ${NPM_PKGS[*]} into $BROWSER_ROOT"
  mkdir -p "$BROWSER_ROOT"
  [[ -f $BROWSER_ROOT/package.json ]] || echo '{"name":"arrow-browser","private":true}' >"$BROWSER_ROOT/package.json"
  (cd "$BROWSER_ROOT" && npm install --no-audit --no-fund --loglevel=error "${NPM_PKGS[@]}") \
    >"$BROWSER_ROOT/npm.log" 2>&1 \
    || { tail -5 "$BROWSER_ROOT/npm.log" >&2; cannot "npm install failed (log: $BROWSER_ROOT/npm.log)"; }
fi

# ---------------------------------------------------------------- run directory, processes
RUN=$(mktemp -d /tmp/arrow-browser-run.XXXXXX)
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

# ---------------------------------------------------------------- the titles (12 s, 2 s segments)
# One small H.264 baseline + AAC encode (320x180, 15 fps, GOP = 2 s), remuxed to HLS (TS) and
# DASH (fMP4, separate audio and video adaptation sets).
M=$RUN/media
mkdir -p "$M/hls" "$M/dash"
ff() { nice -n 10 ffmpeg -hide_banner -loglevel error -nostdin -y "$@"; }
ff -f lavfi -i testsrc=size=320x180:rate=15 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 12 \
   -c:v libx264 -preset ultrafast -profile:v baseline -pix_fmt yuv420p -g 30 -keyint_min 30 \
   -sc_threshold 0 -b:v 300k -c:a aac -b:a 64k -ac 2 -shortest "$M/src.mp4" \
  || cannot "ffmpeg could not encode the test title (libx264/aac missing?)"
ff -i "$M/src.mp4" -c copy -f hls -hls_time 2 -hls_playlist_type vod \
   -hls_segment_filename "$M/hls/seg_%03d.ts" -master_pl_name master.m3u8 "$M/hls/index.m3u8" \
  || cannot "ffmpeg HLS packaging failed"
ff -i "$M/src.mp4" -c copy -map 0:v -map 0:a -f dash -seg_duration 2 -use_template 1 -use_timeline 0 \
   -adaptation_sets "id=0,streams=v id=1,streams=a" -init_seg_name 'init-$RepresentationID$.m4s' \
   -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.m4s' "$M/dash/manifest.mpd" \
  || cannot "ffmpeg DASH packaging failed"
rm -f "$M/src.mp4"

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

: >"$RUN/origin-requests.jsonl"
"$PY" "$REPO/tests/browser/origin.py" "$RUN/origin.port" "$M" "$RUN/origin-requests.jsonl" >"$RUN/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=($ORIGIN_PID)
wait_port OPORT "$RUN/origin.port" "$ORIGIN_PID" origin "$RUN/origin.log"

cat >"$RUN/arrow.toml" <<EOF
[node]
name = "n01.browser.test"
cores = [0]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
admin_token = "browser-play-token"
debug_headers = true
access_log = "$RUN/access.log"

[storage]
ram_tier_bytes = 33554432

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
ARROW_PID=$!
PIDS+=($ARROW_PID)

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
  if curl -fs -o /dev/null "http://127.0.0.1:$MPORT/health" && curl -fs -o /dev/null "http://127.0.0.1:$OPORT/"; then
    ready=1; break
  fi
  kill -0 "$ARROW_PID" 2>/dev/null || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow exited at start"; }
  sleep 0.1
done
[[ $ready == 1 ]] || { tail -20 "$RUN/arrow.log" >&2; cannot "arrow /health or the origin not ready after 10 s"; }
log "origin 127.0.0.1:$OPORT, arrow 127.0.0.1:$APORT, chromium $("$CHROMIUM" --version 2>/dev/null | head -1)"

ARROW_URL="http://127.0.0.1:$APORT" ORIGIN_LOG="$RUN/origin-requests.jsonl" NODE_MODULES="$NM" \
PAGE_DIR="$REPO/tests/browser" CHROMIUM="$CHROMIUM" RESULT_JSON="$RUN/result.json" ACCESS_LOG="$RUN/access.log" \
  nice -n 10 node "$REPO/tests/browser/play.cjs"
rc=$?
if ! kill -0 "$ARROW_PID" 2>/dev/null; then
  tail -20 "$RUN/arrow.log" >&2
  [[ $rc -eq 0 ]] && rc=1
  echo "FAIL: arrow exited during the plays"
fi
[[ $rc -ne 0 ]] && log "details: $RUN/result.json, $RUN/access.log, $RUN/origin-requests.jsonl"
exit $rc
