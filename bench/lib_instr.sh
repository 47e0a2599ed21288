#!/usr/bin/env bash
# bench/lib_instr.sh — user-space instructions per request of an nginx front worker, counted by
# valgrind's callgrind (the same count for the same binary and inputs, whatever else the machine
# does): plain nginx proxying, the same Lua front without the library (luavar: a constant
# upstream set from Lua), and nginx + the Lua module + libarrow_cdn routing with
# lib/lua/nginx.conf (override with LUA_CONF / LUA_DIR), all proxying to a backend nginx that
# answers `return 200`, wrk -t1 -c8 for 10 s after a 3 s warm-up. For the lua front it also
# prints the instructions spent inside the library's C entry points (inclusive of what they call). Kernel work (sockets, the
# backend connection) is the same for both fronts and not counted; bench/lib_bench.sh measures
# CPU time, whose round-to-round spread on a VM can exceed the difference.
#
#   bench/lib_instr.sh      (needs valgrind, nginx + libnginx-mod-http-lua, wrk; builds nothing:
#                            run `cargo build --release -p arrow-bench -p arrow-lib` first)
# Prints: "<front> requests=N non2xx=0 Ir=... Ir_per_request=..." for plain, luavar and lua,
# "lua lib_entry_points Ir_per_request=..." and the ratios.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
W=$(mktemp -d /tmp/arrow-lib-instr.XXXXXX)
BP=${BASE_PORT:-15600}; BP=$((BP + 1)); PLAIN=$((BP + 1)); LUA=$((BP + 2)); LUAVAR=$((BP + 3))
TABLE=/dev/shm/arrow-cg-$$
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; rm -f $TABLE; [ -n "${KEEP_WORK:-}" ] || rm -rf $W' EXIT
# shellcheck source=lib/lib_fronts.sh
. "$ROOT/bench/lib/lib_fronts.sh"
lib_fronts_setup "$W" "$TABLE" "$BP" "$PLAIN" "$LUA" "$LUAVAR" "${LUA_CONF:-}" "${LUA_DIR:-}"
common="daemon off; master_process off; worker_processes 1; user root;"
taskset -c 0 nginx -p $W/backend -c $W/backend/nginx.conf -g "daemon off; master_process on; worker_processes 1; user root; pid $W/backend/nginx.pid; error_log $W/backend/error.log;" &
PIDS+=($!)
sleep 1
declare -A PER_REQ
for name in plain luavar lua; do
  case $name in plain) port=$PLAIN ;; lua) port=$LUA ;; luavar) port=$LUAVAR ;; esac
  ARROW_LIB=$TARGET/release/libarrow_cdn.so valgrind --tool=callgrind --callgrind-out-file=$W/$name.cg \
     nginx -p $W/$name -c $W/$name/nginx.conf -g "$common pid $W/$name/nginx.pid; error_log $W/$name/error.log;" > $W/$name.vg 2>&1 &
  vp=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null -H 'Host: cdn.bench.test' http://127.0.0.1:$port/v/title-1/a.ts && break; sleep 0.3; done
  # warm, then measured: N requests (a dump between them)
  taskset -c 0 wrk -t1 -c8 -d3s -s $W/titles.lua http://127.0.0.1:$port/ > /dev/null
  callgrind_control -z $vp > /dev/null
  out=$(taskset -c 0 wrk -t1 -c8 -d10s -s $W/titles.lua http://127.0.0.1:$port/)
  callgrind_control -d $vp > /dev/null
  reqs=$(awk '/requests in/ {print $1}' <<<"$out"); non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  sleep 1
  f=$(ls -t $W/$name.cg* | head -1)
  ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  [ -z "$non2xx" ] || { echo "$name: $non2xx non-2xx responses" >&2; exit 1; }
  PER_REQ[$name]=$((ir / reqs))
  echo "$name requests=$reqs non2xx=0 Ir=$ir Ir_per_request=$((ir / reqs))"
  if [ $name = lua ]; then
    # inclusive Ir of the library's exported entry points (arrow_route, arrow_debug_headers, ...);
    # one line per function of the library's object (annotate also lists inlined copies by file)
    lib_ir=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
      awk '/ffi\.rs:arrow_[a-z_]+ \[.*libarrow_cdn/ { gsub(",","",$1); if ($1 ~ /^[0-9]+$/) s += $1 } END { print s + 0 }')
    [ "$lib_ir" -gt 0 ] || { echo "lua: no instructions found in the library's entry points" >&2; exit 1; }
    echo "lua lib_entry_points Ir=$lib_ir Ir_per_request=$((lib_ir / reqs))"
    PER_REQ[lib]=$((lib_ir / reqs))
  fi
  kill $vp; wait $vp 2>/dev/null || true
done
awk -v p="${PER_REQ[plain]}" -v v="${PER_REQ[luavar]}" -v l="${PER_REQ[lua]}" -v b="${PER_REQ[lib]}" 'BEGIN {
  printf "instructions per request: lua+lib / plain %.2f; lua without lib / plain %.2f; lua+lib / lua without lib %.2f; library entry points %.1f%% of the lua front\n", l / p, v / p, l / v, 100 * b / l }'
