-- arrow.lua — LuaJIT FFI binding of libarrow_cdn (lib/include/arrow.h) for nginx with the Lua
-- module (Debian libnginx-mod-http-lua, the OpenResty API) and for PowerDNS's lua2 backend.
--
--   local arrow = require("arrow")
--   local a = assert(arrow.open("/etc/arrow/arrow.toml"))      -- one per worker / thread
--   local r, keys = a:route(host, request_uri, new_viewer)      -- no allocation per call
--   if r.action == arrow.ACT_PEER then ... ffi.string(r.node.addr, r.node.addr_len) ...
--
-- The library is found as $ARROW_LIB, else by the dynamic linker's search ("arrow_cdn").
local ffi = require("ffi")
local bit = require("bit")

ffi.cdef [[
typedef struct arrow arrow_t;
struct arrow_node {
    char     name[256];
    char     addr[48];
    uint16_t name_len;
    uint16_t addr_len;
    uint16_t port;
    uint16_t reserved;
};
struct arrow_result {
    int32_t  status;
    uint32_t flags;
    uint32_t action;
    uint32_t mirrors_total;
    uint32_t mirrors_listed;
    uint32_t reserved;
    struct arrow_node node;
    struct arrow_node mirrors[8];
};
struct arrow_keys {
    char     cluster_key[288];
    uint32_t cluster_key_len;
    uint32_t domain_len;
    uint32_t hash_input_offset;
    uint32_t hash_input_len;
    uint32_t rule;
};
uint32_t    arrow_abi_version(void);
const char *arrow_strerror(int code);
arrow_t    *arrow_open(const char *config_path, int *err);
void        arrow_close(arrow_t *h);
int         arrow_state(arrow_t *h);
int         arrow_lookup(arrow_t *h, const char *key, size_t key_len, uint32_t opts,
                         struct arrow_result *out);
int         arrow_route(arrow_t *h, const char *host, size_t host_len, const char *path,
                        size_t path_len, uint32_t opts, struct arrow_result *out,
                        struct arrow_keys *keys);
int         arrow_overflow_base(arrow_t *h, char *buf, size_t cap);
int         arrow_self_name(arrow_t *h, char *buf, size_t cap);
int         arrow_debug_headers(arrow_t *h);
int         arrow_cache_key(arrow_t *h, const char *host, size_t host_len, const char *path,
                            size_t path_len, char *buf, size_t cap);
int         arrow_dns_answer(arrow_t *h, const char *qname, size_t qname_len, uint16_t qtype,
                             char *buf, size_t cap);
]]

local M = {
    ABI_VERSION = 1,
    OK = 0, E_ARG = -1, E_CONFIG = -2, E_NO_TABLE = -3, E_TABLE_FOREIGN = -4,
    E_TABLE_VERSION = -5, E_STALE = -6, E_NO_NODE = -7, E_NO_RULE = -8, E_BUFFER = -9,
    E_INTERNAL = -10,
    F_ERROR = 1, F_OVERLOAD = 2, F_SELF = 4, F_MIRROR = 8,
    ACT_SELF = 1, ACT_PEER = 2, ACT_MIRROR = 3, ACT_OVERFLOW = 4, ACT_LOCAL = 5,
    Q_NEW_VIEWER = 1,
}

local lib
local function load()
    if not lib then
        lib = ffi.load(os.getenv("ARROW_LIB") or "arrow_cdn")
        local abi = lib.arrow_abi_version()
        if abi ~= M.ABI_VERSION then
            error("libarrow_cdn ABI " .. tostring(abi) .. ", arrow.lua speaks " .. M.ABI_VERSION)
        end
    end
    return lib
end

function M.strerror(code)
    return ffi.string(load().arrow_strerror(code))
end

local Handle = {}
Handle.__index = Handle

-- A handle over the node's config file; nil and the error text on failure.
function M.open(config_path)
    local l = load()
    local err = ffi.new("int[1]")
    local h = l.arrow_open(config_path, err)
    if h == nil then
        return nil, M.strerror(err[0])
    end
    local self = setmetatable({
        h = ffi.gc(h, l.arrow_close),
        res = ffi.new("struct arrow_result"),
        keys = ffi.new("struct arrow_keys"),
        buf = ffi.new("char[?]", 65536),
    }, Handle)
    local n = l.arrow_overflow_base(self.h, self.buf, 65536)
    self.overflow_base = n > 0 and ffi.string(self.buf, n) or nil
    n = l.arrow_self_name(self.h, self.buf, 65536)
    self.self_name = n > 0 and ffi.string(self.buf, n) or ""
    self.debug_headers = l.arrow_debug_headers(self.h) == 1
    return self
end

-- The route of a request (host header, raw request target). Returns the result cdata (valid
-- until the next call on this handle) and the keys cdata.
function Handle:route(host, uri, new_viewer)
    host = host or ""
    uri = uri or ""
    lib.arrow_route(self.h, host, #host, uri, #uri, new_viewer and M.Q_NEW_VIEWER or 0,
        self.res, self.keys)
    return self.res, self.keys
end

-- The route of a cluster key.
function Handle:lookup(key)
    lib.arrow_lookup(self.h, key, #key, 0, self.res)
    return self.res
end

function Handle:state()
    return lib.arrow_state(self.h)
end

function Handle:cache_key(host, uri)
    local n = lib.arrow_cache_key(self.h, host, #host, uri, #uri, self.buf, 65536)
    return n >= 0 and ffi.string(self.buf, n) or ""
end

-- Records of a DNS name as Arrow's responder answers it: rcode, { {type, ttl, content}, ... }.
function Handle:dns(qname, qtype)
    local rc = lib.arrow_dns_answer(self.h, qname, #qname, qtype, self.buf, 65536)
    local records = {}
    if rc < 0 then
        return rc, records
    end
    for t, ttl, content in string.gmatch(ffi.string(self.buf), "([^\t\n]+)\t([^\t\n]+)\t([^\n]*)\n") do
        records[#records + 1] = { t, tonumber(ttl), content }
    end
    return rc, records
end

function M.node_name(n)
    return ffi.string(n.name, n.name_len)
end

function M.node_addr(n)
    return ffi.string(n.addr, n.addr_len)
end

-- The X-Arrow-Act text of the node for a result (server/src/cluster_link.rs).
function M.act_text(r)
    if bit.band(r.flags, M.F_SELF) ~= 0 then
        return "1 (self-serving)"
    elseif r.action == M.ACT_OVERFLOW then
        return "2 (overflow)"
    elseif r.action == M.ACT_PEER then
        return "0 (pulled from peer)"
    end
    return "0 (mirror)"
end

---------------------------------------------------------------------------------------------
-- nginx: the routing of a request, as the node routes it (call from rewrite_by_lua_block).
-- Sets $arrow_upstream, which the location proxies to:
--   peer (designated elsewhere)  → the designated node's "ip:port"
--   self / mirror / local        → $arrow_local, the node beside nginx (which serves it)
--   overflow, or a fallback with a CDN → 302 to the CDN, same path and query
-- Debug headers (as the node's, when its config has debug_headers = true) are set by
-- M.nginx_headers from header_filter_by_lua_block.
function M.nginx_rewrite(a)
    local var = ngx.var
    local uri = var.request_uri
    local host = var.http_host or var.host
    local r, keys = a:route(host, uri, var.connection_requests == "1")
    local ctx = ngx.ctx
    if a.debug_headers then
        local key = ffi.string(keys.cluster_key, keys.cluster_key_len)
        ctx.arrow = {
            act = M.act_text(r),
            hash_input = string.sub(uri, keys.hash_input_offset + 1,
                keys.hash_input_offset + keys.hash_input_len),
            cluster_key = key,
            cache_key = a:cache_key(host, uri),
            node = M.node_name(r.node),
            status = r.status,
        }
    end
    if r.status == M.E_NO_RULE or r.status == M.E_ARG then
        return ngx.exit(r.status == M.E_ARG and 400 or 404)
    end
    if bit.band(r.flags, M.F_ERROR) ~= 0 then
        ngx.log(ngx.WARN, "arrow: ", M.strerror(r.status), "; fallback")
    end
    if r.action == M.ACT_OVERFLOW then
        return ngx.redirect(a.overflow_base .. uri, 302)
    elseif r.action == M.ACT_PEER then
        var.arrow_upstream = M.node_addr(r.node)
    else
        var.arrow_upstream = var.arrow_local
    end
end

function M.nginx_headers(a)
    local d = ngx.ctx.arrow
    if not d then
        return
    end
    local h = ngx.header
    h["X-Arrow-Act"] = d.act
    h["X-Arrow-Hash-Input"] = d.hash_input
    h["X-Arrow-Cluster-Key"] = d.cluster_key
    h["X-Arrow-Cache-Key"] = d.cache_key
    if d.act ~= "2 (overflow)" then
        local pull = d.node ~= "" and d.node or a.self_name
        h["X-Arrow-Pull-Url"] = "http://" .. pull .. ngx.var.request_uri
    end
    if d.status ~= 0 then
        h["X-Arrow-Error"] = M.strerror(d.status)
    end
end

return M
