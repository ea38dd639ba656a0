-- Times N look-ups through c:batch against base_url; prints "lookups seconds".
-- usage: lua5.4 bench/batch.lua BASE_URL HASH N CONCURRENCY
-- (N distinct ids: HASH with its last 8 digits replaced by the item's number)
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local base, hash, n, conc = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local c = vt.client { apikey = "bench-key", base_url = base, quota_state = false, retries = 0 }
local list = {}
for i = 1, n do list[i] = { "file", ("%s%08x"):format(hash:sub(1, 56), i) } end -- distinct ids
local clock = os.clock -- CPU time of this process, for the record
local function now()
    local p = io.popen("date +%s.%N")
    local t = tonumber(p:read("l"))
    p:close()
    return t
end
local cpu0, t0 = clock(), now()
local results = c:batch(list, { concurrency = conc })
local t1, cpu1 = now(), clock()
for i, r in ipairs(results) do
    if not r.ok then error("look-up " .. i .. " failed: " .. tostring(r.err)) end
end
print(n, t1 - t0, cpu1 - cpu0)
