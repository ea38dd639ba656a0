-- A fleet of playbook workers sharing one cache: what a day of alerts costs in requests.
--
--   lua5.4 bench/fleet.lua sqlite|redis [workers=8] [alerts=1000] [pool=300] [seed=1]
--
-- Starts the fake VirusTotal (and, for redis, a Redis of its own), registers `pool` files,
-- and draws `alerts` alerts of 1 to 4 entities each from that pool, skewed as alert streams
-- are (Zipf, s = 1: a few indicators come back all day, most are seen once or twice). The
-- workers (separate processes, bench/fleet_worker.lua) start together, each triaging its
-- share of the alerts one after another, all entities of an alert at once; with `sqlite`
-- they share one cache file, with `redis` one Redis (cache and quota state).
-- Prints one line: "backend entities distinct requests hits coalesced seconds", where
-- `entities` is what one request per entity spends (the seeds' integrations), `distinct`
-- the indicators that came up, `requests` what reached the service.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local fake = require "helpers.fake"
local redis = require "helpers.redis"
local system = require "system"

local backend = assert(arg[1] == "sqlite" or arg[1] == "redis", "usage: fleet.lua sqlite|redis ...") and arg[1]
local WORKERS, ALERTS, POOL = tonumber(arg[2]) or 8, tonumber(arg[3]) or 1000, tonumber(arg[4]) or 300
math.randomseed(tonumber(arg[5]) or 1)

local function quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- the alerts first, as pool ranks: starting servers draws random numbers too
local cdf, sum = {}, 0
for k = 1, POOL do
    sum = sum + 1 / k
    cdf[k] = sum
end
local function draw() -- Zipf over the ranks: P(rank k) proportional to 1 / k
    local x, lo, hi = math.random() * sum, 1, POOL
    while lo < hi do
        local mid = (lo + hi) // 2
        if cdf[mid] < x then lo = mid + 1 else hi = mid end
    end
    return lo
end
local ranks, entities, seen, distinct = {}, 0, {}, 0
for a = 1, ALERTS do
    ranks[a] = {}
    for e = 1, math.random(1, 4) do
        local k = draw()
        ranks[a][e] = k
        entities = entities + 1
        if not seen[k] then
            seen[k] = true
            distinct = distinct + 1
        end
    end
end

local srv = fake.start { key = "bench-key", analysis_steps = 0 }
local r = backend == "redis" and redis.start() or nil
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local pool = {}
for i = 1, POOL do pool[i] = { "file", srv:register_file("fleet indicator " .. i).sha256 } end
local shares = {}
for w = 1, WORKERS do shares[w] = {} end
for a, alert in ipairs(ranks) do
    local entries = {}
    for e, k in ipairs(alert) do entries[e] = pool[k] end
    table.insert(shares[(a - 1) % WORKERS + 1], entries)
end

local options = { apikey = "bench-key", base_url = srv.url, quota_state = false,
                  cache = r and r.url or "sqlite:" .. dir .. "/cache.sqlite" }
if r then options.quota_state = r.url end
local since = #srv:log()
local start = system.gettime() + 1
local procs = {}
for w = 1, WORKERS do
    local job = vt.encode { client = options, alerts = shares[w], start = start }
    procs[w] = io.popen(("env LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 bench/fleet_worker.lua %s"):format(
        quote(package.path), quote(package.cpath), quote(job)))
end
local hits, coalesced, failed = 0, 0, 0
for _, p in ipairs(procs) do
    local stats = assert(vt.decode(assert(p:read("a"):match("stats (%b{})"), "a worker failed")))
    p:close()
    hits, coalesced, failed = hits + stats.hits, coalesced + stats.coalesced, failed + stats.failed
end
local seconds = system.gettime() - start
local requests = #srv:log() - since
assert(failed == 0, failed .. " look-ups failed")
if r then r:stop() end
srv:stop()
os.execute("rm -rf " .. quote(dir))
print(("%s %d %d %d %d %d %.2f"):format(backend, entities, distinct, requests, hits, coalesced, seconds))
