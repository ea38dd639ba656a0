--- tinyproxy as a forward HTTP proxy on loopback for the transport specs.
--
--    local tinyproxy = require "helpers.tinyproxy"
--    local px = tinyproxy.start{connect_ports = {front.port}, user = "u", password = "p"}
--    -- px.url    "http://127.0.0.1:<port>" (no credentials in it)
--    -- px.port, px.pid, px.dir, px.log_file
--    px:requests()   -- what it was asked, oldest first: {method = "GET"|"CONNECT", target = ...}
--    px:reset()      -- empties its log
--    px:stop()       -- also on garbage collection and at the end of a <close> scope
--
-- Its own configuration, log and pid file live in a fresh directory; it answers 127.0.0.1 only
-- (`Allow 127.0.0.1`), logs to its file rather than syslog, tunnels CONNECT only to
-- `connect_ports` (none given: to no port), and with `user` and `password` asks for Basic proxy
-- authentication (tinyproxy 1.11 answers 407 without credentials, 401 to wrong ones).
-- A watchdog stops it when the Lua process that started it exits (helpers.remote_proc).
-- Debian package: tinyproxy.
local daemon = require "helpers.daemon"
local proc = require "helpers.remote_proc"

local tinyproxy = {}

local function config(dir, port, opts)
    local lines = {
        "Port " .. port,
        "Listen 127.0.0.1",
        "Timeout 30",
        "Syslog Off",
        'LogFile "' .. dir .. '/tinyproxy.log"',
        "LogLevel Connect", -- one line per connection and per request
        'PidFile "' .. dir .. '/tinyproxy.pid"',
        "MaxClients 32",
        "Allow 127.0.0.1",
    }
    -- Without any ConnectPort line tinyproxy would tunnel to every port.
    for _, p in ipairs(opts.connect_ports or { 0 }) do lines[#lines + 1] = "ConnectPort " .. p end
    if opts.user then lines[#lines + 1] = ("BasicAuth %s %s"):format(opts.user, opts.password) end
    lines[#lines + 1] = ""
    return table.concat(lines, "\n")
end

local Proxy = daemon.class()

--- Starts tinyproxy. opts: connect_ports (list of ports CONNECT may reach), user and password
-- (Basic proxy authentication; plain words).
function tinyproxy.start(opts)
    opts = opts or {}
    local dir = proc.tmpdir("tinyproxy")
    local conf, out = dir .. "/tinyproxy.conf", dir .. "/tinyproxy.out"
    local pid, port = proc.start_on_free_port(function(port)
        proc.write(conf, config(dir, port, opts))
        return proc.spawn("tinyproxy -d -c " .. proc.q(conf), out)
    end, out)
    return setmetatable({
        pid = pid, dir = dir, port = port, url = "http://127.0.0.1:" .. port, log_file = dir .. "/tinyproxy.log",
    }, Proxy)
end

--- The requests it received, oldest first: {method, target} (target: the URL of a proxied
-- request, host:port of a CONNECT). tinyproxy logs a request when it has read its first line,
-- before it answers, so the log is complete once the client has its answer.
function Proxy:requests()
    local list = {}
    for method, target in (proc.read(self.log_file) or ""):gmatch("Request %(file descriptor %d+%): (%u+) (%S+)") do
        list[#list + 1] = { method = method, target = target }
    end
    return list
end

return tinyproxy
