-- A separate process for spec/limiter_spec.lua: several of these share one
-- quota state file, the way concurrent SOAR action runs do.
--
--   lua5.4 spec/helpers/limiter_worker.lua lookups <base_url> <state> <count> <hash>
--     <count> look-ups under rate {5 per 1 s}; prints "ok" or "fail <code> <message>" for each.
--   lua5.4 spec/helpers/limiter_worker.lua hammer <state>
--     takes limiter slots as fast as it can, until killed: every look-up goes to a
--     closed port and fails at once, after its slot was recorded. Prints "1" per slot
--     taken (after the fact, so the count printed never exceeds the count recorded).
--
-- The spec passes its package.path and package.cpath through LUA_PATH_5_4 and
-- LUA_CPATH_5_4, so this loads the same build of the module.
local vt = require "vt"

local mode = arg[1]

if mode == "lookups" then
    local base_url, state, count, hash = arg[2], arg[3], tonumber(arg[4]), arg[5]
    local c = vt.client{apikey = "test-key", base_url = base_url, rate = {{n = 5, per = 1}},
                        quota_state = state, max_wait = 30}
    for _ = 1, count do
        local obj, err = c:file(hash)
        if obj then
            io.write("ok\n")
        else
            io.write("fail ", tostring(err.code), " ", tostring(err.message), "\n")
        end
        io.stdout:flush()
    end
    c:close()
elseif mode == "hammer" then
    local state = arg[2]
    local c = vt.client{apikey = "test-key", base_url = "http://127.0.0.1:1", retries = 0,
                        rate = {{n = 100000, per = 600}}, requests_per_day = 1000000000,
                        quota_state = state, max_wait = 5}
    local hash = string.rep("0", 64)
    while true do
        local _, err = c:file(hash)
        if err.code ~= "ConnectionError" then
            io.write("fail ", tostring(err.code), " ", tostring(err.message), "\n")
            os.exit(1)
        end
        io.write("1\n")
        io.stdout:flush()
    end
else
    io.stderr:write("limiter_worker: unknown mode ", tostring(mode), "\n")
    os.exit(2)
end
