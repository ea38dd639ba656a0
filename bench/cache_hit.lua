-- What a cache hit costs, against decoding the same body alone.
--
--   lua5.4 bench/cache_hit.lua [N]
--
-- Starts the fake VirusTotal and a Redis of its own (spec/helpers), looks one file object
-- (a real sample, 22 KB of JSON) up once, then N more times from the cache:
--   decode_us   CPU µs per vt.decode of that body (the work any look-up does)
--   sqlite_us   CPU µs per c:file() answered by the SQLite cache
--   redis_us    wall µs per c:file() answered by Redis on loopback (a round trip included)
--   redis_cpu_us  CPU µs of this process per Redis hit
-- and prints them on one line: "decode_us sqlite_us redis_us redis_cpu_us".
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local fake = require "helpers.fake"
local redis = require "helpers.redis"
local system = require "system"

local N = tonumber(arg[1]) or 2000
local HASH = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c"

local srv = fake.start { key = "bench-key", analysis_steps = 0 }
local r = redis.start()
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local body = fake.http("GET", srv.url .. "/api/v3/files/" .. HASH, { headers = { ["x-apikey"] = "bench-key" } }).body
assert(#body > 10000, "no sample body")
local since = #srv:log()

-- CPU (and wall) seconds per call of fn, over n calls after a warm-up.
local function per_call(n, fn)
    for _ = 1, 50 do fn() end
    local cpu, wall = os.clock(), system.monotime()
    for _ = 1, n do fn() end
    return (os.clock() - cpu) / n, (system.monotime() - wall) / n
end

local decode = per_call(N, function() assert(vt.decode(body)) end)

local function client(cache)
    local c = vt.client { apikey = "bench-key", base_url = srv.url, quota_state = false, cache = cache }
    assert(c:file(HASH))
    return c
end

local sq = client("sqlite:" .. dir .. "/cache.sqlite")
local sqlite_cpu = per_call(N, function() assert(sq:file(HASH)) end)
local rc = client(r.url)
local redis_cpu, redis_wall = per_call(N, function() assert(rc:file(HASH)) end)
assert(#srv:log() == since + 2, "the hits reached the service")
sq:close()
rc:close()
r:stop()
srv:stop()
os.execute("rm -rf " .. dir)
print(("%.1f %.1f %.1f %.1f"):format(decode * 1e6, sqlite_cpu * 1e6, redis_wall * 1e6, redis_cpu * 1e6))
