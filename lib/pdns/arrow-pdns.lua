-- arrow-pdns.lua — a PowerDNS lua2 backend (lua2-api=2) answering Arrow's content-aware zones
-- through libarrow_cdn: the records are those Arrow's own responder gives (the library runs
-- the node's DNS handler over its table), so <md5>.<zone> → CNAME to the designated node
-- (TTL content_ttl_s, 300), other names → CNAME by brpu headroom (TTL 5), SOA and NS at the
-- apex, glue and node addresses inside the zone.
--
-- Environment: ARROW_CONFIG (the node's config; its [dns] zones and [cluster] table),
-- ARROW_LIB (path of libarrow_cdn.so), ARROW_LUA_DIR (where arrow.lua is). lib/README.md.
-- Fallback: with no usable table the library answers as the node does with no node in service
-- (CNAME to the zone's overflow_cname, else SERVFAIL); PowerDNS keeps running.
package.path = (os.getenv("ARROW_LUA_DIR") or "/usr/share/arrow/lua") .. "/?.lua;" .. package.path
local arrow = require("arrow")

local config = os.getenv("ARROW_CONFIG") or "/etc/arrow/arrow.toml"
-- One handle per backend instance: PowerDNS gives each thread its own Lua state.
local a, err = arrow.open(config)
if not a then
    error("arrow: cannot open " .. config .. ": " .. tostring(err))
end

local SOA = 6

local function records(qname, code)
    local rc, recs = a:dns(qname:toString(), code)
    if rc == 2 then
        error("arrow: no node in service and no overflow host for " .. qname:toString())
    end
    local out = {}
    for i, r in ipairs(recs) do
        out[i] = { name = qname, type = newQType(r[1]), ttl = r[2], content = r[3], domain_id = 1 }
    end
    return out
end

function dns_lookup(qtype, qname, domain_id, ctx)
    return records(qname, qtype:getCode())
end

function dns_get_domaininfo(dom)
    local rc, recs = a:dns(dom:toString(), SOA)
    if rc == 0 and recs[1] and recs[1][1] == "SOA" then
        local serial = tonumber(string.match(recs[1][3], "^%S+ %S+ (%d+)")) or 1
        return { id = 1, serial = serial }
    end
    return false
end

function dns_get_domain_metadata(dom, kind)
    return false
end
