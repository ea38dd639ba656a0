-- c:batch of N look-ups, counting the jobs in flight each time the batch waits (the client's
-- c:pending()): prints "lookups most_at_once seconds".
-- usage: lua5.4 bench/batch_jobs.lua BASE_URL HASH N CONCURRENCY
-- (N distinct ids: HASH with its last 8 digits replaced by the item's number)
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local base, hash, n, conc = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local most = 0
local c = vt.client { apikey = "bench-key", base_url = base, quota_state = false, retries = 0,
                      yield = function(cl)
                        most = math.max(most, cl:pending())
                        cl:step(1)
                      end }
local list = {}
for i = 1, n do list[i] = { "file", ("%s%08x"):format(hash:sub(1, 56), i) } end -- distinct ids
local t0 = os.clock()
local results = coroutine.wrap(function() return c:batch(list, { concurrency = conc }) end)()
local cpu = os.clock() - t0
for i, r in ipairs(results) do
    if not r.ok then error("look-up " .. i .. " failed: " .. tostring(r.err)) end
end
print(n, most, cpu)
