-- c:each over N look-ups, each result dropped once seen: prints "lookups peak_rss_kB list_kB
-- seconds" (VmHWM: the most this process ever held, the list of N items included; list_kB: what
-- the list itself takes in Lua).
-- usage: lua5.4 bench/each.lua BASE_URL HASH N CONCURRENCY
-- (N distinct ids: HASH with its last 8 digits replaced by the item's number)
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local base, hash, n, conc = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local c = vt.client { apikey = "bench-key", base_url = base, quota_state = false, retries = 0 }
collectgarbage()
local before = collectgarbage("count")
local list = {}
for i = 1, n do list[i] = { "file", ("%s%08x"):format(hash:sub(1, 56), i) } end -- distinct ids
local list_kb = collectgarbage("count") - before
local seen = 0
local t0 = os.clock()
for i, ok, obj in c:each(list, { concurrency = conc }) do
    if not ok then error("look-up " .. i .. " failed: " .. tostring(obj)) end
    seen = seen + 1
end
local cpu = os.clock() - t0
assert(seen == n)
local status = io.open("/proc/self/status"):read("a")
print(n, status:match("VmHWM:%s*(%d+)"), math.floor(list_kb), cpu)
