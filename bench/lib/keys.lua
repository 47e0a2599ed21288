-- bench/lib/keys.lua — the wrk request generator of bench/http_bench.sh (wrk -t1 -s keys.lua).
--
--   wrk ... -s keys.lua URL -- cycle    PREFIX COUNT DIGITS        PREFIX0000, PREFIX0001, ... in turn
--   wrk ... -s keys.lua URL -- longtail PREFIX COUNT DIGITS HOT PCT  PCT% of requests on the first
--                                                                     HOT keys, the rest uniform
--                                                                     over the others (fixed seed)
--   wrk ... -s keys.lua URL -- uniform  PREFIX COUNT DIGITS        keys picked uniformly at random
--   wrk ... -s keys.lua URL -- zipf     PREFIX COUNT DIGITS ALPHA  key i (0-based rank) with
--                                                                     probability ∝ 1/(i+1)^ALPHA
--   wrk ... -s keys.lua URL -- miss     PREFIX PER_KEY                PREFIX0, PREFIX1, ...: each
--                                                                     fresh key PER_KEY times in a row
-- With one wrk thread there is one Lua state, so request() sees every request of the run.
-- done() prints one line "WRK_JSON {...}" with the figures the harness records (latency in µs).

local mode, reqs, n, per_key, prefix = "cycle", {}, 0, 1, ""
local pick

function init(args)
   mode = args[1] or "cycle"
   prefix = args[2] or "/1k/"
   if mode == "miss" then
      per_key = tonumber(args[3] or "16")
      return
   end
   local count, digits = tonumber(args[3] or "1000"), tonumber(args[4] or "4")
   local fmt = "%s%0" .. digits .. "d"
   for i = 0, count - 1 do
      reqs[#reqs + 1] = wrk.format("GET", string.format(fmt, prefix, i))
   end
   if mode == "uniform" then
      math.randomseed(42)
      pick = function()
         return reqs[math.random(1, #reqs)]
      end
   elseif mode == "zipf" then
      local alpha = tonumber(args[5] or "0.8")
      local cdf, total = {}, 0
      for i = 1, #reqs do
         total = total + 1 / i ^ alpha
         cdf[i] = total
      end
      math.randomseed(42)
      pick = function()
         local u, lo, hi = math.random() * total, 1, #cdf
         while lo < hi do
            local mid = math.floor((lo + hi) / 2)
            if cdf[mid] < u then lo = mid + 1 else hi = mid end
         end
         return reqs[lo]
      end
   elseif mode == "longtail" then
      local hot, pct = tonumber(args[5] or "5"), tonumber(args[6] or "96")
      math.randomseed(42)
      pick = function()
         if math.random() * 100 < pct then
            return reqs[math.random(1, hot)]
         end
         return reqs[math.random(hot + 1, #reqs)]
      end
   else
      pick = function()
         return reqs[(n % #reqs) + 1]
      end
   end
end

function request()
   local r
   if mode == "miss" then
      r = wrk.format("GET", prefix .. math.floor(n / per_key))
   else
      r = pick()
   end
   n = n + 1
   return r
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"p999_us":%d,"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
      '"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
