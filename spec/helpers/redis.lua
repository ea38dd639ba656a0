--- A private Redis server for the cache and limiter specs (Debian redis-server).
--
--    local redis = require "helpers.redis"
--    local r = redis.start{password = "s3cret"}   -- password optional
--    -- r.url ("redis://[:password@]127.0.0.1:<port>"), r.port, r.pid, r.dir
--    r:cli("GET", "k")   -- redis-cli's output (--raw)
--    r:kill()            -- stops it (the port stays its own: r:start_again() listens there again)
--    r:stop()            -- also on garbage collection and at the end of a <close> scope
--
-- Loopback only, no persistence (--save '' --appendonly no), its files in its own directory,
-- under the watchdog of helpers.remote_proc (it dies with the Lua process that started it).
local proc = require "helpers.remote_proc"

local M = {}

local Server = {}
Server.__index = Server

function M.usable()
    if not proc.ok("command -v redis-server") then return false, "redis-server is not installed" end
    if not proc.ok("command -v redis-cli") then return false, "redis-cli is not installed" end
    return true
end

local function launch(self, port)
    local args = {
        "redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "''", "--appendonly", "no",
        "--dir", proc.q(self.dir), "--protected-mode", "no",
    }
    if self.password then
        args[#args + 1] = "--requirepass " .. proc.q(self.password)
    end
    return proc.spawn(table.concat(args, " "), self.log_file)
end

--- Starts a server; opts.password makes it ask for one.
function M.start(opts)
    opts = opts or {}
    local dir = proc.tmpdir("redis")
    local self = setmetatable({ dir = dir, log_file = dir .. "/redis.log", password = opts.password }, Server)
    self.pid, self.port = proc.start_on_free_port(function(port) return launch(self, port) end, self.log_file)
    self.url = ("redis://%s127.0.0.1:%d"):format(self.password and (":" .. self.password .. "@") or "", self.port)
    return self
end

--- Stops the server (kill, then waits for it to go); the spec may start it again on its port.
function Server:kill()
    proc.stop(self.pid)
    self.pid = nil
end

--- Starts it again on the same port, empty.
function Server:start_again()
    assert(not self.pid, "still running")
    self.pid = launch(self, self.port)
    assert(proc.wait_listening(self.pid, self.port), "redis did not start again:\n" .. (proc.read(self.log_file) or ""))
end

--- Runs a redis-cli command (arguments quoted for the shell) and returns its raw output.
function Server:cli(...)
    local args = { "redis-cli", "--raw", "-p", self.port }
    if self.password then
        args[#args + 1] = "--no-auth-warning -a " .. proc.q(self.password)
    end
    for _, a in ipairs { ... } do args[#args + 1] = proc.q(a) end
    return proc.sh(table.concat(args, " "))
end

--- Every key and everything it holds, as one string (to look for what must not be there).
function Server:dump()
    local out = {}
    for key in self:cli("KEYS", "*"):gmatch("[^\n]+") do
        local kind = self:cli("TYPE", key):match("%S+")
        local read = ({ string = { "GET" }, hash = { "HGETALL" }, zset = { "ZRANGE", "0", "-1", "WITHSCORES" },
                        set = { "SMEMBERS" }, list = { "LRANGE", "0", "-1" } })[kind]
        out[#out + 1] = key
        if read then
            local cmd = { table.unpack(read) }
            table.insert(cmd, 2, key)
            out[#out + 1] = self:cli(table.unpack(cmd))
        end
    end
    return table.concat(out, "\n")
end

--- Stops the server and removes its directory; safe to call more than once.
function Server:stop()
    if self.pid then self:kill() end
    proc.rmdir(self.dir)
    self.dir = nil
end

Server.__gc = Server.stop
Server.__close = Server.stop

return M
