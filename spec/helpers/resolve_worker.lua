-- A process for spec/redis_spec.lua, run with spec/helpers/slow_resolver.c preloaded: looks
-- github.com up twice, in coroutine mode, through a client made from job.client (a Redis
-- cache), and writes to the resolver's log ($VT_SPEC_RESOLVER_LOG) "yielded" once the first
-- look-up waits (started, not yet done), "ok <id>" or "fail <code>" per look-up, then
-- "stats <c:cache_stats() as JSON>". With job.close_early, the client is closed as soon as the
-- first look-up waits, and the process lives 3 s more before it writes "exit".
--
--   lua5.4 spec/helpers/resolve_worker.lua '<JSON job>'
local vt = require "vt"
local new_loop = require("vt.loop").new
local system = require "system"

local function note(line)
    local f = assert(io.open(assert(os.getenv("VT_SPEC_RESOLVER_LOG")), "a"))
    f:write(line, "\n")
    f:close()
end

local job = assert(vt.decode(assert(arg[1], "usage: resolve_worker.lua '<JSON job>'")))
local c = vt.client(job.client)
local loop = new_loop(c)
for pass = 1, 2 do
    local task = loop:spawn(function() return c:domain("github.com") end)
    if pass == 1 and not task.done then note("yielded") end
    if job.close_early then
        c:close()
        system.sleep(3)
        note("exit")
        return
    end
    loop:run()
    local obj, err = task.results and task.results[1], task.results and task.results[2]
    note(obj and ("ok " .. obj.id) or ("fail " .. tostring(err and err.code or task.error)))
end
note("stats " .. vt.encode(c:cache_stats()))
c:close()
