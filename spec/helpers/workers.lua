--- Runs spec/helpers/cache_worker.lua in other processes ("workers" of one host, or of several
-- hosts with their own HOME), with the module build this busted run uses, and reads what
-- reached the fake VirusTotal.
--
--    local workers = require "helpers.workers"
--    local outputs = workers.run({job1, job2}, {XDG_CACHE_HOME = dir})  -- at once; lines each printed
--    local pid = workers.spawn(job, out_path)                          -- in the background
--    workers.requests(srv, since, "/files/")                           -- log entries after `since`
--    workers.paths_asked(srv, since)                                   -- distinct paths, repeats
local vt = require "vt"
local files = require "helpers.files"

local workers = {}

local WORKER = "spec/helpers/cache_worker.lua"

--- The shell command running the worker on a job (a table; see cache_worker.lua), with the
-- environment variables of env added; script: another worker taking a JSON argument.
function workers.command(job, env, script)
    local vars = {}
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. files.quote(v) end
    table.sort(vars)
    return ("env %s LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 %s %s"):format(
        table.concat(vars, " "), files.quote(package.path), files.quote(package.cpath), script or WORKER,
        files.quote(vt.encode(job)))
end

--- Runs the jobs at once and returns the lines each printed. env: the environment variables
-- added for every job, or a function giving those of job i.
function workers.run(jobs, env)
    local procs, outputs = {}, {}
    for i, job in ipairs(jobs) do
        procs[i] = io.popen(workers.command(job, type(env) == "function" and env(i) or env))
    end
    for i, p in ipairs(procs) do
        outputs[i] = {}
        for line in p:lines() do outputs[i][#outputs[i] + 1] = line end
        p:close()
    end
    return outputs
end

--- Starts a job in the background, its output going to out_path; returns its pid.
function workers.spawn(job, out_path, env)
    local p = io.popen(("exec %s > %s 2>&1 & echo $!"):format(workers.command(job, env), files.quote(out_path)))
    local pid = tonumber(p:read("l"))
    p:close()
    return pid
end

--- Requests the fake logged after entry `since` whose path holds `part` (all of them without one).
function workers.requests(srv, since, part)
    local n = 0
    for i, e in ipairs(srv:log()) do
        if i > since and (not part or e.path:find(part, 1, true)) then n = n + 1 end
    end
    return n
end

--- The counters a worker printed last ("stats <JSON>"), taken off its lines.
function workers.stats(lines)
    return vt.decode(table.remove(lines):match("^stats (.*)$"))
end

--- The paths the fake logged after entry `since`: how many distinct ones, and how many
-- requests beyond one per path; each(entry), when given, sees every entry counted.
function workers.paths_asked(srv, since, each)
    local asked, distinct, extra = {}, 0, 0
    for i, e in ipairs(srv:log()) do
        if i > since then
            if each then each(e) end
            asked[e.path] = (asked[e.path] or 0) + 1
        end
    end
    for _, n in pairs(asked) do
        distinct, extra = distinct + 1, extra + n - 1
    end
    return distinct, extra
end

return workers
