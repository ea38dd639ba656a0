--- Run many vt calls at once on one client, from any event loop.
--
-- A client made with `yield = true` yields (instead of blocking) whenever a call
-- waits for the network, for quota or between polls, if it runs in a coroutine.
-- This module keeps such coroutines ("tasks") and resumes them when the client
-- has progressed. A host polls `loop:pollfd()` for `loop:events()` with
-- `loop:timeout()` (the cqueues convention) and calls `loop:step()`:
--
--    local c = vt.client{apikey = key, yield = true}
--    local loop = require("vt.loop").new(c)
--    local task = loop:spawn(function() return c:file(hash) end)
--    loop:run()                      -- or drive loop:step() from the host's loop
--    print(task.ok, task.results[1])
--
-- @module vt.loop
local loop = {}

local Loop = {}
Loop.__index = Loop

--- A scheduler for tasks calling `client`.
-- @param client a vt client (made with `yield = true` for tasks to overlap)
function loop.new(client)
    return setmetatable({ client = client, tasks = {} }, Loop)
end

local function resume(task, ...)
    local r = table.pack(coroutine.resume(task.co, ...))
    if coroutine.status(task.co) == "dead" then
        task.done, task.ok = true, r[1]
        if r[1] then
            task.results = table.pack(table.unpack(r, 2, r.n))
        else
            task.error = r[2]
        end
    end
end

--- Starts `fn(...)` as a task and runs it until it first waits.
-- @return the task: `done`, then `ok` and `results` (a packed list) or `error`
function Loop:spawn(fn, ...)
    local task = { co = coroutine.create(fn), done = false }
    resume(task, ...)
    if not task.done then self.tasks[#self.tasks + 1] = task end
    return task
end

--- Does what the client has ready, waiting at most `timeout` seconds (default 0),
-- then resumes every waiting task.
-- @return the number of tasks still running
function Loop:step(timeout)
    self.client:step(timeout or 0)
    local running = {}
    for _, task in ipairs(self.tasks) do
        resume(task)
        if not task.done then running[#running + 1] = task end
    end
    self.tasks = running
    return #running
end

--- The fd to poll (the client's engine), for a host loop.
function Loop:pollfd() return self.client:pollfd() end

--- The events to poll for: "r".
function Loop:events() return self.client:events() end

--- Seconds until `step` is due even without I/O, or nil.
function Loop:timeout() return self.client:timeout() end

--- Blocks until every task is done (scripts and tests; hosts call `step`).
function Loop:run()
    while #self.tasks > 0 do
        self:step(math.min(self.client:timeout() or 1, 1))
    end
end

return loop
