--- What the spec servers started by helpers.nginx and helpers.tinyproxy share: a process
-- (`pid`, started with helpers.remote_proc.spawn) that appends to `log_file` inside its own
-- directory `dir`.
--
--    local Server = daemon.class()   -- a metatable; add methods to it
--    local s = setmetatable({pid = pid, dir = dir, log_file = dir .. "/x.log"}, Server)
--    s:reset()   -- empties the log
--    s:stop()    -- also on garbage collection and at the end of a <close> scope
local proc = require "helpers.remote_proc"

local daemon = {}

local function reset(self)
    -- the server opened its log for appending, so it carries on at the start
    proc.write(self.log_file, "")
end

local function stop(self)
    if self.pid then
        proc.stop(self.pid)
        proc.rmdir(self.dir)
        self.pid = nil
    end
end

--- A new metatable with reset, stop, __gc and __close, which is its own __index.
function daemon.class()
    local class = { reset = reset, stop = stop, __gc = stop, __close = stop }
    class.__index = class
    return class
end

return daemon
