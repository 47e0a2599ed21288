#!/usr/bin/env bash
# bench/lib_instr.sh — user-space instructions per request of an nginx front worker, counted by
# valgrind's callgrind (the same count for the same binary and inputs, whatever else the machine
# does): plain nginx proxying against nginx + the Lua module + libarrow_cdn routing with
# lib/lua/nginx.conf (override with LUA_CONF / LUA_DIR), both proxying to a backend nginx that
# answers `return 200`, wrk -t1 -c8 for 10 s after a 3 s warm-up. Kernel work (sockets, the
# backend connection) is the same for both fronts and not counted; bench/lib_bench.sh measures
# CPU time, whose round-to-round spread on a VM can exceed the difference.
#
#   bench/lib_instr.sh      (needs valgrind, nginx + libnginx-mod-http-lua, wrk; builds nothing:
#                            run `cargo build --release -p arrow-bench -p arrow-lib` first)
# Prints: "<front> requests=N non2xx=0 Ir=... Ir_per_request=..." for plain and lua.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
W=$(mktemp -d /tmp/arrow-lib-instr.XXXXXX)
BP=${BASE_PORT:-15600}; BP=$((BP + 1)); PLAIN=$((BP + 1)); LUA=$((BP + 2))
TABLE=/dev/shm/arrow-cg-$$
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; rm -f $TABLE; rm -rf $W' EXIT
$TARGET/release/arrow-bench table-writer --path "$TABLE" --nodes 3 --http "127.0.0.1:$BP" --seconds 3600 &
PIDS+=($!)
cat >"$W/arrow.toml" <<EOT
[node]
name = "n01.bench.test"
listen = ["127.0.0.1:$BP"]
[[host]]
hosts = ["*"]
origins = ["http://127.0.0.1:$BP"]
[cluster]
table_path = "$TABLE"
group = "239.255.77.77:17777"
secret = "bench-secret-0123456789"
EOT
mkdir -p $W/backend/logs $W/plain/logs $W/lua/logs
cat > $W/backend/nginx.conf <<EOT
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$BP reuseport; location / { return 200 "ok\n"; } } }
EOT
cat >"$W/plain/nginx.conf" <<EOT
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$PLAIN;
    location / { proxy_set_header Host \$http_host; proxy_pass_header Server;
                 proxy_pass http://127.0.0.1:$BP; } } }
EOT
sed -e "s|ARROW_CONFIG|$W/arrow.toml|" -e "s|LUA_DIR|${LUA_DIR:-$ROOT/lib/lua}|" \
    -e "s|LOCAL_NODE|127.0.0.1:$BP|" -e "s|listen 8080 reuseport;|listen 127.0.0.1:$LUA;|" \
    -e "s|worker_processes auto;||" "${LUA_CONF:-$ROOT/lib/lua/nginx.conf}" >"$W/lua/nginx.conf"
common="daemon off; master_process off; worker_processes 1; user root;"
taskset -c 0 nginx -p $W/backend -c $W/backend/nginx.conf -g "daemon off; master_process on; worker_processes 1; user root; pid $W/backend/nginx.pid; error_log $W/backend/error.log;" &
PIDS+=($!)
sleep 1
cat > $W/t.lua <<'EOT'
local n = 0
request = function() n = n + 1; return wrk.format("GET", "/v/title-" .. (n % 10000) .. "/seg-1.ts", { Host = "cdn.bench.test" }) end
EOT
for name in plain lua; do
  port=$PLAIN; [ $name = lua ] && port=$LUA
  ARROW_LIB=$TARGET/release/libarrow_cdn.so valgrind --tool=callgrind --callgrind-out-file=$W/$name.cg \
     nginx -p $W/$name -c $W/$name/nginx.conf -g "$common pid $W/$name/nginx.pid; error_log $W/$name/error.log;" > $W/$name.vg 2>&1 &
  vp=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null -H 'Host: cdn.bench.test' http://127.0.0.1:$port/v/title-1/a.ts && break; sleep 0.3; done
  # warm, then measured: N requests (a dump between them)
  taskset -c 0 wrk -t1 -c8 -d3s -s $W/t.lua http://127.0.0.1:$port/ > /dev/null
  callgrind_control -z $vp > /dev/null
  out=$(taskset -c 0 wrk -t1 -c8 -d10s -s $W/t.lua http://127.0.0.1:$port/)
  callgrind_control -d $vp > /dev/null
  reqs=$(awk '/requests in/ {print $1}' <<<"$out"); non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  sleep 1
  f=$(ls -t $W/$name.cg* | head -1)
  ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  echo "$name requests=$reqs non2xx=${non2xx:-0} Ir=$ir Ir_per_request=$((ir / reqs))"
  kill $vp; wait $vp 2>/dev/null || true
done
