--- Small process and file helpers shared by the test servers in
-- spec/helpers/sshd.lua and spec/helpers/samba.lua (plain Lua 5.4 + /bin/sh).
--
-- A server runs under a watchdog shell that kills it when the Lua process
-- that started it goes away, so a crashed or interrupted spec run leaves no
-- daemon behind.
local M = {}

--- Quotes s for /bin/sh.
function M.q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Commands run without the sanitizer runtime the specs may be preloaded with
-- (CI's ASan stage sets LD_PRELOAD: tools such as ps deadlock under it), and
-- find the daemons and account tools in sbin whatever PATH the run has.
local CLEAN = "unset LD_PRELOAD; PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH; "

--- Runs a shell command; returns its stdout, or raises with its output.
function M.sh(cmd)
    local p = assert(io.popen(CLEAN .. "(" .. cmd .. ") 2>&1", "r"))
    local out = p:read("a")
    local ok, how, code = p:close()
    if not ok then
        error(("command failed (%s %s): %s\n%s"):format(how, code, cmd, out), 2)
    end
    return out
end

--- True when the command exits 0.
function M.ok(cmd)
    return os.execute(CLEAN .. "(" .. cmd .. ") >/dev/null 2>&1") == true
end

function M.is_root()
    return M.sh("id -u"):match("^%s*(%d+)") == "0"
end

function M.write(path, data, mode)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    if mode then M.sh("chmod " .. mode .. " " .. M.q(path)) end
end

function M.read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

--- A fresh directory that other local users may enter (the test accounts
-- read their files from it); removed by M.rmdir.
function M.tmpdir(tag)
    local dir = M.sh("mktemp -d /tmp/vt-" .. tag .. ".XXXXXX"):match("^%s*(.-)%s*$")
    M.sh("chmod 755 " .. M.q(dir))
    return dir
end

function M.rmdir(dir)
    if dir and dir:match("^/tmp/vt%-") then os.execute("rm -rf " .. M.q(dir)) end
end

--- A random string of letters and digits (test passwords).
function M.random_word(n)
    local t = {}
    for i = 1, n do
        local c = math.random(0, 61)
        t[i] = string.char(c < 10 and 48 + c or c < 36 and 55 + c or 61 + c)
    end
    return table.concat(t)
end

--- Makes sure the local account `name` exists and returns its password.
-- Needs root. The account is a system account with no home and no login
-- shell; its random password is kept in /var/lib/vt-test-accounts/<name>
-- (root only), so that spec runs going on at the same time agree on it.
function M.test_account(name)
    local dir = "/var/lib/vt-test-accounts"
    local file = dir .. "/" .. name
    M.sh("mkdir -p " .. M.q(dir) .. " && chmod 700 " .. M.q(dir))
    if not M.read(file) then
        -- Written whole, then linked into place: of two runs racing here, the
        -- first link wins and both read the same complete password.
        local tmp = file .. "." .. M.random_word(8)
        M.write(tmp, M.random_word(20), "600")
        os.execute(("ln %s %s 2>/dev/null; rm -f %s"):format(M.q(tmp), M.q(file), M.q(tmp)))
    end
    local password = assert(M.read(file), "cannot read " .. file)
    if not M.ok("id -u " .. M.q(name)) then
        M.ok(("useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin %s"):format(
            M.q(name)))
    end
    M.sh(("printf '%%s:%%s\\n' %s %s | chpasswd"):format(M.q(name), M.q(password)))
    return password
end

--- A loopback port nobody listens on right now. The server may still lose
-- the race for it: callers retry with another port when it cannot bind.
function M.candidate_port()
    local listening = {}
    for _, file in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
        local s = M.read(file) or ""
        for port in s:gmatch("%x+:(%x%x%x%x) %x+:%x+ %x%x") do listening[tonumber(port, 16)] = true end
    end
    for _ = 1, 1000 do
        local port = math.random(20000, 60000)
        if not listening[port] then return port end
    end
    error("no free port found")
end

--- True when something listens on 127.0.0.1:port.
function M.listening(port)
    local s = M.read("/proc/net/tcp") or ""
    local want = ("0100007F:%04X 00000000:0000 0A"):format(port)
    return s:find(want, 1, true) ~= nil
end

function M.alive(pid)
    return M.ok("kill -0 " .. pid)
end

--- Starts argv (a shell command line) in the background with stdout and
-- stderr in logfile, under a watchdog that stops it when this Lua process
-- exits. Returns the server's pid.
function M.spawn(cmdline, logfile)
    -- $PPID of the popen shell is this Lua process.
    local script = CLEAN .. ([[
lua_pid=$PPID
%s >%s 2>&1 </dev/null &
srv=$!
( while kill -0 "$lua_pid" 2>/dev/null && kill -0 "$srv" 2>/dev/null; do sleep 1; done
  kill "$srv" 2>/dev/null ) >/dev/null 2>&1 </dev/null &
echo "$srv"
]]):format(cmdline, M.q(logfile))
    local p = assert(io.popen(script, "r"))
    local pid = p:read("l")
    p:close()
    return assert(tonumber(pid), "could not start: " .. cmdline)
end

--- Waits until the server listens on port (true) or exits (false).
function M.wait_listening(pid, port, seconds)
    local deadline = os.time() + (seconds or 15)
    while os.time() <= deadline do
        if M.listening(port) then return true end
        if not M.alive(pid) then return false end
        M.ok("sleep 0.1")
    end
    return false
end

--- Stops a server started by M.spawn and waits for it to go.
function M.stop(pid)
    if not pid then return end
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 50 do
        if not M.alive(pid) then return end
        M.ok("sleep 0.1")
    end
    os.execute("kill -9 " .. pid .. " 2>/dev/null")
end

--- Starts a server on a free loopback port: start(port) must return the
-- pid (see M.spawn); tries a few ports in case another process wins the race.
function M.start_on_free_port(start, logfile)
    for _ = 1, 5 do
        local port = M.candidate_port()
        local pid = start(port)
        if M.wait_listening(pid, port) then return pid, port end
        M.stop(pid)
    end
    error("server did not start; log:\n" .. (M.read(logfile) or "(none)"))
end

math.randomseed(os.time(), tonumber(tostring({}):match("0x(%x+)") or "0", 16))

return M
