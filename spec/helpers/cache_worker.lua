-- A separate process for spec/cache_spec.lua and spec/redis_spec.lua: several of these
-- share one cache (SQLite or Redis) and one quota state, the way playbook workers on one
-- host or on several hosts do.
--
--   lua5.4 spec/helpers/cache_worker.lua '<JSON job>'
--
-- The job: {client = {vt.client options}, lookups = {{kind, value}, ...},
--           batch = true (all at once through c:batch) or nil (one after another),
--           until = epoch seconds (stop starting look-ups then), start = epoch seconds (wait for it)}.
-- Prints one line per look-up, "ok <id>" or "fail <code> <message>", then
-- "stats <c:cache_stats() as JSON>".
--
-- Or a playbook worker: {soar = {soar.new options, no client}, case = a case file,
--           tools = {{tool name, parameters}, ...}, start = ...}: the client soar.new makes of
-- those options (the cache on by default) runs the tools on the case in turn; one line per tool,
-- "tool <name> <status> <requests> <cache_hits> <entity statuses, comma-separated>", then
-- "stats <the client's c:cache_stats() as JSON>".
--
-- The spec passes its package.path and package.cpath through LUA_PATH_5_4 and
-- LUA_CPATH_5_4, so this loads the same build of the module.
local vt = require "vt"
local system = require "system"

local job = assert(vt.decode(assert(arg[1], "usage: cache_worker.lua '<JSON job>'")))
local now = system.gettime

local function report(ok, value)
    if ok then
        io.write("ok ", tostring(value.id), "\n")
    else
        io.write("fail ", tostring(value.code), " ", tostring(value.message), "\n")
    end
    io.stdout:flush()
end

if job.soar then
    local soar = require "vt.soar"
    local input = require "vt.core.input"
    local opts = job.soar
    opts.host = assert(soar.memory_host(job.case))
    -- the client soar.new would make of these options (the cache on by default), kept here
    -- for its counters
    local client = input.client("soar.new", opts)
    for key in pairs(input.CLIENT_OPTIONS) do opts[key] = nil end
    opts.client = client
    local tools = soar.new(opts)
    if job.start and job.start > now() then system.sleep(job.start - now()) end
    for _, t in ipairs(job.tools) do
        local res = tools[t[1]](t[2])
        local statuses = {}
        for i, e in ipairs(res.entities) do statuses[i] = e.status end
        io.write(("tool %s %s %d %d %s\n"):format(t[1], res.status, res.requests, res.cache_hits,
            table.concat(statuses, ",")))
    end
    io.write("stats ", vt.encode(client:cache_stats()), "\n")
    return
end

local c = vt.client(job.client)
if job.start then
    local wait = job.start - now()
    if wait > 0 then c:sleep(wait) end
end
if job.batch then
    for _, r in ipairs(c:batch(job.lookups, {concurrency = 8})) do
        report(r.ok, r.ok and r.value or r.err)
    end
else
    for _, l in ipairs(job.lookups) do
        if job["until"] and now() >= job["until"] then break end
        local value, err = c[l[1]](c, l[2])
        report(value ~= nil, value or err)
    end
end
io.write("stats ", vt.encode(c:cache_stats()), "\n")
c:close()
