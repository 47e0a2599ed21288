# bench/lib/lib_fronts.sh — what bench/lib_bench.sh and bench/lib_instr.sh share: a cluster table
# kept fresh by `arrow-bench table-writer` (3 nodes, all at the backend's address), the Arrow
# config the library reads, the nginx configs of a backend (`return 200`), a plain proxy front
# and the nginx + Lua front (lib/lua/nginx.conf), and wrk's script over 10,000 titles.
# The caller sets ROOT, TARGET and the PIDS array (the table writer is added to it).

# lib_fronts_setup WORK TABLE BACKEND_PORT PLAIN_PORT LUA_PORT LUAVAR_PORT [LUA_CONF] [LUA_DIR]
#   writes WORK/arrow.toml, WORK/{backend,plain,lua,luavar}/nginx.conf, WORK/titles.lua.
#   luavar is the Lua front without the library: a constant upstream set from Lua (what the Lua
#   phases and a variable proxy_pass cost by themselves).
lib_fronts_setup() {
    local work=$1 table=$2 backend=$3 plain=$4 lua=$5 luavar=$6
    local lua_conf=${7:-$ROOT/lib/lua/nginx.conf} lua_dir=${8:-$ROOT/lib/lua}
    "$TARGET/release/arrow-bench" table-writer --path "$table" --nodes 3 \
        --http "127.0.0.1:$backend" --seconds 3600 &
    PIDS+=($!)
    cat >"$work/arrow.toml" <<EOT
[node]
name = "n01.bench.test"
listen = ["127.0.0.1:$backend"]
[[host]]
hosts = ["*"]
origins = ["http://127.0.0.1:$backend"]
[cluster]
table_path = "$table"
group = "239.255.77.77:17777"
secret = "bench-secret-0123456789"
EOT
    mkdir -p "$work/backend/logs" "$work/plain/logs" "$work/lua/logs" "$work/luavar/logs"
    cat >"$work/backend/nginx.conf" <<EOT
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$backend reuseport; location / { return 200 "ok\n"; } } }
EOT
    cat >"$work/plain/nginx.conf" <<EOT
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$plain;
    location / { proxy_set_header Host \$http_host; proxy_pass_header Server;
                 proxy_pass http://127.0.0.1:$backend; } } }
EOT
    sed -e "s|ARROW_CONFIG|$work/arrow.toml|" -e "s|LUA_DIR|$lua_dir|" \
        -e "s|LOCAL_NODE|127.0.0.1:$backend|" -e "s|listen 8080 reuseport;|listen 127.0.0.1:$lua;|" \
        -e "s|worker_processes auto;||" "$lua_conf" >"$work/lua/nginx.conf"
    sed -e "s|require(\"arrow\").nginx_rewrite(package.loaded.arrow_handle)|ngx.var.arrow_upstream = ngx.var.arrow_local|" \
        -e "s|require(\"arrow\").nginx_headers(package.loaded.arrow_handle)|local _ = ngx.ctx.arrow|" \
        -e "s|listen 127.0.0.1:$lua;|listen 127.0.0.1:$luavar;|" "$work/lua/nginx.conf" >"$work/luavar/nginx.conf"
    grep -q "arrow_upstream = ngx.var.arrow_local" "$work/luavar/nginx.conf" ||
        { echo "lib_fronts: the Lua front's rewrite line changed; update the luavar sed" >&2; return 1; }
    cat >"$work/titles.lua" <<'EOT'
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/v/title-" .. (n % 10000) .. "/seg-1.ts", { Host = "cdn.bench.test" })
end
EOT
    local _
    for _ in $(seq 1 50); do [ -s "$table" ] && break; sleep 0.1; done
    sleep 0.3
}
