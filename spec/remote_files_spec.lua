-- Remote files for uploads: vt.sftp sessions and their sources (libssh2),
-- vt.smb_open sources (libsmbclient), against a private sshd and smbd on
-- loopback (spec/helpers/sshd.lua, spec/helpers/samba.lua; both need root,
-- and the specs that need them are pending otherwise).
local vt = require "vt"
local proc = require "helpers.remote_proc"
local sshd = require "helpers.sshd"
local samba = require "helpers.samba"

--- Asserts that secret shows up nowhere in the values: not in a string, not
-- in any field of a table (recursively), not in what tostring gives.
local function assert_no_secret(secret, ...)
    local seen = {}
    local function check(v)
        if type(v) == "table" then
            if seen[v] then return end
            seen[v] = true
            for k, x in pairs(v) do
                check(k)
                check(x)
            end
        end
        local s = tostring(v)
        assert.is_nil(s:find(secret, 1, true), "secret leaked in: " .. s)
    end
    for i = 1, select("#", ...) do check((select(i, ...))) end
end

local function sha256_of(path)
    return proc.sh("sha256sum " .. proc.q(path)):match("^(%x+)")
end

local function sha256_of_string(s)
    local path = os.tmpname()
    proc.write(path, s)
    local h = sha256_of(path)
    os.remove(path)
    return h
end

-- A port nobody listens on (refused at once).
local function closed_port()
    return proc.candidate_port()
end

describe("vt.sftp arguments", function()
    it("raises on an unknown option or a wrong type, naming the key", function()
        assert.has_error(function() vt.sftp { host = "h", user = "u", pasword = "x" } end,
            "vt.sftp: unknown option 'pasword'")
        assert.has_error(function() vt.sftp { host = "h", user = "u", port = "22" } end,
            "vt.sftp: option 'port' must be an integer (got string)")
        assert.has_error(function() vt.sftp { host = "h", user = "u", insecure_host_key = "yes" } end,
            "vt.sftp: option 'insecure_host_key' must be a boolean (got string)")
        assert.has_error(function() vt.sftp { host = "h", user = "u", timeout = "30" } end,
            "vt.sftp: option 'timeout' must be a number (got string)")
        assert.has_error(function() vt.sftp { host = "h", user = "u", password = 1234 } end,
            "vt.sftp: option 'password' must be a string (got number)")
        assert.has_error(function() vt.sftp { host = "h", user = "u", known_hosts = true } end,
            "vt.sftp: option 'known_hosts' must be a string (got boolean)")
        assert.has_error(function() vt.sftp { user = "u" } end, "vt.sftp: option 'host' is required")
        assert.has_error(function() vt.sftp { host = "h" } end, "vt.sftp: option 'user' is required")
        assert.has_error(function() vt.sftp("h") end)
    end)

    it("fails with InvalidArgument for malformed values", function()
        local s, err = vt.sftp { host = "[::1]:2222", port = 22, user = "u" }
        assert.is_nil(s)
        assert.equal("InvalidArgument", err.code)
        assert.matches("port 2222", err.message)
        s, err = vt.sftp { host = "[::1", user = "u" }
        assert.is_nil(s)
        assert.equal("InvalidArgument", err.code)
        s, err = vt.sftp { host = "host:99999", user = "u" }
        assert.is_nil(s)
        assert.equal("InvalidArgument", err.code)
        s, err = vt.sftp { host = "127.0.0.1", user = "" }
        assert.is_nil(s)
        assert.equal("InvalidArgument", err.code)
    end)

    it("fails with ConnectionError naming host:port when nothing listens", function()
        local port = closed_port()
        local s, err = vt.sftp { host = "127.0.0.1:" .. port, user = "u", password = "pw-not-shown" }
        assert.is_nil(s)
        assert.equal("ConnectionError", err.code)
        assert.matches("127.0.0.1:" .. port, err.message, 1, true)
        assert_no_secret("pw-not-shown", err)
    end)

    it("fails with Timeout, within its timeout, when the server never speaks SSH", function()
        if not proc.ok("command -v python3") then
            pending("needs python3 for a silent listener")
            return
        end
        local log = os.tmpname()
        local pid, port = proc.start_on_free_port(function(port)
            return proc.spawn(("python3 -c %s %d"):format(proc.q([[
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(5)
held = []
while True:
    held.append(s.accept()[0])
]]), port), log)
        end, log)
        finally(function()
            proc.stop(pid)
            os.remove(log)
        end)
        local s, err = vt.sftp { host = "127.0.0.1", port = port, user = "u", password = "x", timeout = 0.5 }
        assert.is_nil(s)
        assert.equal("Timeout", err.code)
        assert.matches("127.0.0.1:" .. port, err.message, 1, true)
    end)

    it("fails with ConnectionError for a name that does not resolve", function()
        local s, err = vt.sftp { host = "no-such-host.invalid", user = "u", password = "x", timeout = 5 }
        assert.is_nil(s)
        assert.equal("ConnectionError", err.code)
        assert.matches("no-such-host.invalid:22", err.message, 1, true)
    end)
end)

local sshd_ok, sshd_why = sshd.usable()

describe("vt.sftp against a private sshd", function()
    if not sshd_ok then
        pending(sshd_why)
        return
    end

    local srv
    lazy_setup(function() srv = sshd.start() end)
    lazy_teardown(function() if srv then srv:stop() end end)

    local function login(extra)
        local o = { host = srv.address, user = srv.user, password = srv.password, known_hosts = srv.known_hosts.bracketed }
        for k, v in pairs(extra or {}) do
            if v == false then o[k] = nil else o[k] = v end
        end
        return vt.sftp(o)
    end

    local function read_all(src, chunk)
        local parts = {}
        while true do
            local data, err = src:read(chunk)
            assert.is_nil(err)
            if not data then break end
            parts[#parts + 1] = data
        end
        return table.concat(parts)
    end

    describe("logs in", function()
        it("with a password, and reads a file", function()
            local s = assert(login())
            assert.equal(false, s.insecure)
            assert.equal(false, s.closed)
            assert.equal(srv.port, s.port)
            assert.equal("127.0.0.1", s.host)
            assert.equal(srv.user, s.user)
            assert.equal(("vt.sftp.session (%s@127.0.0.1:%d, open)"):format(srv.user, srv.port), tostring(s))
            local src = assert(s:open(srv.files .. "/hello.txt"))
            assert.equal(16, src.size)
            assert.equal("hello.txt", src.name)
            assert.equal(srv.files .. "/hello.txt", src.path)
            assert.is_true(getmetatable(src).__vt_source)
            assert.equal("hello over sftp\n", src:read(100))
            assert.is_nil(src:read())
            assert_no_secret(srv.password, s, src, tostring(s), tostring(src))
            s:close()
        end)

        it("with host and port given apart", function()
            local s = assert(login { host = "127.0.0.1", port = srv.port })
            assert.equal(srv.port, s.port)
            s:close()
        end)

        it("with a private key and its passphrase", function()
            local s = assert(login { password = false, private_key = srv.private_key, passphrase = srv.passphrase })
            local src = assert(s:open(srv.files .. "/hello.txt"))
            assert.equal("hello over sftp\n", src:read())
            s:close()
        end)

        it("with keyboard-interactive when the server offers only that", function()
            local kbd = sshd.start { kbd_only = true }
            finally(function() kbd:stop() end)
            local o = { host = kbd.address, user = kbd.user, password = kbd.password,
                        known_hosts = kbd.known_hosts.bracketed }
            local s = assert(vt.sftp(o))
            assert.equal("hello over sftp\n", assert(s:open(kbd.files .. "/hello.txt")):read())
            s:close()
            o.password = "wrong-kbd-password"
            local bad, err = vt.sftp(o)
            assert.is_nil(bad)
            assert.equal("AuthenticationFailed", err.code)
            assert.matches("tried: keyboard-interactive", err.message, 1, true)
            assert_no_secret("wrong-kbd-password", err, tostring(err))
        end)
    end)

    describe("refuses", function()
        it("a wrong password, naming user@host:port and never the password", function()
            local secret = "Wrong-Secret-" .. proc.random_word(8)
            local s, err = login { password = secret }
            assert.is_nil(s)
            assert.equal("AuthenticationFailed", err.code)
            assert.matches(("%s@127.0.0.1:%d"):format(srv.user, srv.port), err.message, 1, true)
            assert.matches("tried: password, keyboard-interactive", err.message, 1, true)
            assert_no_secret(secret, err, tostring(err))
        end)

        it("a key whose passphrase is wrong, never showing the passphrase", function()
            local secret = "Bad-Passphrase-" .. proc.random_word(8)
            local s, err = login { password = false, private_key = srv.private_key, passphrase = secret }
            assert.is_nil(s)
            assert.equal("AuthenticationFailed", err.code)
            assert.matches("publickey", err.message)
            assert.matches(srv.private_key, err.message, 1, true)
            assert_no_secret(secret, err, tostring(err))
            assert_no_secret(srv.passphrase, err, tostring(err))
        end)

        it("a login with no credentials at all", function()
            local s, err = login { password = false }
            assert.is_nil(s)
            assert.equal("AuthenticationFailed", err.code)
            assert.matches("no password or private_key", err.message)
        end)
    end)

    describe("checks the host key", function()
        it("against a hashed known_hosts entry", function()
            assert.matches("^|1|", proc.read(srv.known_hosts.hashed))
            local s = assert(login { known_hosts = srv.known_hosts.hashed })
            s:close()
        end)

        it("against a [host]:port entry, skipping other hosts' lines and comments", function()
            assert.matches(("[127.0.0.1]:%d "):format(srv.port), proc.read(srv.known_hosts.bracketed), 1, true)
            assert(login { known_hosts = srv.known_hosts.bracketed }):close()
        end)

        it("asks for the key type known_hosts has (here ECDSA only)", function()
            assert(login { known_hosts = srv.known_hosts.ecdsa_only }):close()
        end)

        it("past lines libssh2 cannot parse", function()
            assert(login { known_hosts = srv.known_hosts.with_junk }):close()
        end)

        it("fails with HostKeyUnknown and the SHA-256 fingerprint for an unknown host", function()
            local s, err = login { known_hosts = srv.known_hosts.empty }
            assert.is_nil(s)
            assert.equal("HostKeyUnknown", err.code)
            assert.matches("127.0.0.1:" .. srv.port, err.message, 1, true)
            local fp = err.message:match("SHA256:[%w+/]+")
            assert.truthy(fp == srv.fingerprint or fp == srv.ecdsa_fingerprint, err.message)
            assert_no_secret(srv.password, err)
        end)

        it("treats a missing known_hosts file as no key known", function()
            local s, err = login { known_hosts = srv.known_hosts.missing }
            assert.is_nil(s)
            assert.equal("HostKeyUnknown", err.code)
            assert.matches("no known_hosts file", err.message)
        end)

        it("files a non-22 port only under [host]:port, as OpenSSH does", function()
            local s, err = login { known_hosts = srv.known_hosts.portless }
            assert.is_nil(s)
            assert.equal("HostKeyUnknown", err.code)
        end)

        it("fails with HostKeyChanged for a different key", function()
            local s, err = login { known_hosts = srv.known_hosts.changed }
            assert.is_nil(s)
            assert.equal("HostKeyChanged", err.code)
            assert.matches("CHANGED", err.message)
            assert.matches(srv.fingerprint, err.message, 1, true)
        end)

        it("fails with HostKeyChanged for a key marked @revoked", function()
            local s, err = login { known_hosts = srv.known_hosts.revoked }
            assert.is_nil(s)
            assert.equal("HostKeyChanged", err.code)
            assert.matches("@revoked", err.message)
        end)

        it("is skipped only with insecure_host_key = true, which the session records", function()
            local s = assert(login { known_hosts = srv.known_hosts.changed, insecure_host_key = true })
            assert.is_true(s.insecure)
            assert.matches("host key NOT verified", tostring(s))
            s:close()
            local again, err = login { known_hosts = srv.known_hosts.changed, insecure_host_key = false }
            assert.is_nil(again)
            assert.equal("HostKeyChanged", err.code)
        end)
    end)

    describe("opens files", function()
        it("keeps the session usable when one of several is missing or denied", function()
            local s = assert(login())
            local good = assert(s:open(srv.files .. "/hello.txt"))

            local missing, err = s:open(srv.files .. "/no-such-file.txt")
            assert.is_nil(missing)
            assert.equal("NotFound", err.code)
            assert.matches(srv.files .. "/no-such-file.txt", err.message, 1, true)

            local denied
            denied, err = s:open(srv.files .. "/secret.txt")
            assert.is_nil(denied)
            assert.equal("PermissionDenied", err.code)
            assert.matches("secret.txt", err.message, 1, true)

            local dir
            dir, err = s:open(srv.files)
            assert.is_nil(dir)
            assert.equal("RemoteFileError", err.code)

            assert.equal("InvalidArgument", select(2, s:open("")).code)

            local again = assert(s:open(srv.files .. "/hello.txt"))
            assert.equal("hello over sftp\n", again:read())
            assert.equal("hello over sftp\n", good:read())
            s:close()
        end)

        it("says why when the server allows no more open files (a channel each)", function()
            local s = assert(login())
            local open = {}
            local src, err
            repeat
                src, err = s:open(srv.files .. "/hello.txt")
                open[#open + 1] = src
            until not src or #open > 20
            assert.is_nil(src)
            assert.equal(10, #open) -- OpenSSH's MaxSessions
            assert.equal("RemoteFileError", err.code)
            assert.matches("MaxSessions", err.message)
            open[1]:close()
            assert.equal("hello over sftp\n", assert(s:open(srv.files .. "/hello.txt")):read())
            s:close()
        end)

        it("rewinds a source", function()
            local s = assert(login())
            local src = assert(s:open(srv.files .. "/hello.txt"))
            assert.equal("hello", src:read(5))
            assert.is_true(src:rewind())
            assert.equal("hello over sftp\n", read_all(src, 3))
            s:close()
        end)

        it("fails with ConnectionError when the SFTP server goes away, and the session says so", function()
            local own = sshd.start()
            finally(function() own:stop() end)
            local s = assert(vt.sftp { host = own.address, user = own.user, password = own.password,
                                       known_hosts = own.known_hosts.bracketed })
            local src = assert(s:open(own:sparse_file("big.bin", 20 * 1024 * 1024)))
            assert.equal(1000, #src:read(1000))
            assert.equal(1, own:kill_sftp())
            local data, err
            repeat data, err = src:read(1024 * 1024) until not data
            assert.equal("ConnectionError", err.code)
            assert.matches("went away", err.message)
            local again
            again, err = s:open(own.files .. "/hello.txt")
            assert.is_nil(again)
            assert.equal("ConnectionError", err.code)
            assert.matches("open a new session", err.message)
            s:close()
            assert.is_true(src.closed)
        end)

        it("reads a large file in chunks", function()
            local path = srv.files .. "/random.bin"
            proc.sh("head -c 3000000 /dev/urandom > " .. proc.q(path) .. " && chmod 644 " .. proc.q(path))
            local s = assert(login())
            local src = assert(s:open(path))
            assert.equal(3000000, src.size)
            local data = read_all(src, 100000)
            assert.equal(3000000, #data)
            assert.equal(sha256_of(path), sha256_of_string(data))
            s:close()
        end)
    end)

    describe("handles", function()
        it("close idempotently, and closing the session closes its sources", function()
            local s = assert(login())
            local src = assert(s:open(srv.files .. "/hello.txt"))
            assert.is_true(s:close())
            assert.is_true(s:close())
            assert.is_true(s.closed)
            assert.is_true(src.closed)
            assert.matches("closed", tostring(s))
            assert.matches("closed", tostring(src))
            assert.has_error(function() src:read() end, "attempt to use a closed SFTP source")
            assert.has_error(function() s:open(srv.files .. "/hello.txt") end, "attempt to use a closed SFTP session")
            assert.is_true(src:close())
            assert.is_true(src:close())
        end)

        it("close a source without closing its session", function()
            local s = assert(login())
            local a = assert(s:open(srv.files .. "/hello.txt"))
            local b = assert(s:open(srv.files .. "/hello.txt"))
            a:close()
            assert.is_true(a.closed)
            assert.equal("hello over sftp\n", b:read())
            s:close()
            assert.is_true(b.closed)
        end)

        it("work as to-be-closed variables", function()
            local src
            do
                local s <close> = assert(login())
                local inner <close> = assert(s:open(srv.files .. "/hello.txt"))
                src = s:open(srv.files .. "/hello.txt")
                assert.is_false(inner.closed)
            end
            assert.is_true(src.closed)
        end)

        it("keep the session alive while a source is referenced", function()
            local src
            do
                local s = assert(login())
                src = assert(s:open(srv.files .. "/hello.txt"))
            end
            collectgarbage()
            collectgarbage()
            assert.is_false(src.closed)
            assert.equal("hello over sftp\n", src:read())
            src = nil -- luacheck: ignore
            collectgarbage()
            collectgarbage()
        end)

        it("are collected in any order", function()
            for _ = 1, 3 do
                local s = assert(login())
                local a = assert(s:open(srv.files .. "/hello.txt"))
                assert(s:open(srv.files .. "/hello.txt")) -- unreferenced at once
                a:read(2)
                s, a = nil, nil -- luacheck: ignore
                collectgarbage()
                collectgarbage()
            end
        end)
    end)

    it("reads 100 MB with a bounded peak memory (child process, VmHWM < 64 MB) #heavy", function()
        local size = 100 * 1024 * 1024
        local path = srv:sparse_file("big.bin", size)
        local script = srv.dir .. "/read_big.lua"
        proc.write(script, [[
package.cpath = os.getenv("VT_TEST_CPATH")
local vt = require "vt"
local s = assert(vt.sftp { host = arg[1], user = arg[2], password = os.getenv("VT_TEST_PASSWORD"),
                           known_hosts = arg[3] })
local src = assert(s:open(arg[4]))
local total = 0
while true do
  local data, err = src:read(1024 * 1024)
  assert(not err, tostring(err))
  if not data then break end
  total = total + #data
end
s:close()
local status = io.open("/proc/self/status"):read("a")
print(total, status:match("VmHWM:%s*(%d+) kB"))
]])
        -- The child loads the same module, so it needs the same preloaded runtime (if any).
        local out = proc.sh(("LD_PRELOAD=%s VT_TEST_CPATH=%s VT_TEST_PASSWORD=%s lua5.4 %s %s %s %s %s"):format(
            proc.q(os.getenv("LD_PRELOAD") or ""), proc.q(package.cpath), proc.q(srv.password), proc.q(script),
            proc.q(srv.address), proc.q(srv.user), proc.q(srv.known_hosts.bracketed), proc.q(path)))
        local total, hwm_kb = out:match("^(%d+)%s+(%d+)")
        assert.equal(size, tonumber(total), out)
        assert.is_true(tonumber(hwm_kb) < 64 * 1024, "peak RSS " .. tostring(hwm_kb) .. " kB")
    end)
end)

describe("vt.smb_open", function()
    it("raises on an unknown option or a wrong type, naming the key", function()
        assert.has_error(function() vt.smb_open("smb://h/s/f", { passwd = "x" }) end,
            "vt.smb_open: unknown option 'passwd'")
        assert.has_error(function() vt.smb_open("smb://h/s/f", { port = "445" }) end,
            "vt.smb_open: option 'port' must be an integer (got string)")
        assert.has_error(function() vt.smb_open("smb://h/s/f", { password = 12 }) end,
            "vt.smb_open: option 'password' must be a string (got number)")
        assert.has_error(function() vt.smb_open(42) end)
    end)

    if not vt.versions().smb then
        it("fails with Unsupported in a build without libsmbclient", function()
            local src, err = vt.smb_open([[\\server\share\file.txt]], { user = "u", password = "p" })
            assert.is_nil(src)
            assert.equal("Unsupported", err.code)
            assert.equal("this build of vt lacks SMB support (libsmbclient was not found at build time)", err.message)
        end)
        return
    end

    it("is supported in this build (vt.versions().smb)", function()
        assert.is_true(vt.versions().smb)
    end)

    it("fails with InvalidArgument for paths it cannot use, never echoing credentials", function()
        local src, err = vt.smb_open("smb://user:Pw-In-Url@server/share/file.txt")
        assert.is_nil(src)
        assert.equal("InvalidArgument", err.code)
        assert_no_secret("Pw-In-Url", err)
        for _, bad in ipairs { "/local/file", "smb://server", "smb://server/share", [[\\server\share\]],
                               "smb://server:0/share/f", "smb://server:x/share/f" } do
            src, err = vt.smb_open(bad)
            assert.is_nil(src, bad)
            assert.equal("InvalidArgument", err.code, bad)
        end
    end)

    it("fails with ConnectionError when nothing listens", function()
        local src, err = vt.smb_open(("smb://127.0.0.1:%d/files/x.txt"):format(closed_port()),
            { user = "u", password = "Pw-Not-Shown" })
        assert.is_nil(src)
        assert.equal("ConnectionError", err.code)
        assert_no_secret("Pw-Not-Shown", err)
    end)

    local smb_ok, smb_why = samba.usable()
    describe("against a private smbd", function()
        if not smb_ok then
            pending(smb_why)
            return
        end

        local srv
        lazy_setup(function() srv = samba.start() end)
        lazy_teardown(function() if srv then srv:stop() end end)

        it("reads a file by smb:// URL with the port in it", function()
            local src = assert(vt.smb_open(srv:url("hello.txt"), { user = srv.user, password = srv.password }))
            assert.equal(15, src.size)
            assert.equal("hello.txt", src.name)
            assert.is_true(getmetatable(src).__vt_source)
            assert.equal("hello over smb\n", src:read(1000))
            assert.is_nil(src:read())
            assert.is_true(src:rewind())
            assert.equal("hello", src:read(5))
            assert_no_secret(srv.password, src, tostring(src))
            assert.is_true(src:close())
            assert.is_true(src:close())
            assert.is_true(src.closed)
            assert.has_error(function() src:read() end, "attempt to use a closed SMB source")
        end)

        it("reads a \\\\server\\share path, with DOMAIN\\user and the port as options", function()
            local path = [[\\127.0.0.1\files\sub dir\na me%.txt]]
            local src = assert(vt.smb_open(path, { user = [[VTTEST\]] .. srv.user, password = srv.password,
                                                   port = srv.port }))
            assert.equal("na me%.txt", src.name)
            assert.equal("a name to encode\n", src:read())
            assert.matches([[VTTEST\]] .. srv.user, tostring(src), 1, true)
            src:close()
        end)

        it("fails with NotFound and PermissionDenied, naming the path", function()
            local src, err = vt.smb_open(srv:url("nope.txt"), { user = srv.user, password = srv.password })
            assert.is_nil(src)
            assert.equal("NotFound", err.code)
            assert.matches("nope.txt", err.message, 1, true)
            src, err = vt.smb_open(srv:url("secret.txt"), { user = srv.user, password = srv.password })
            assert.is_nil(src)
            assert.equal("PermissionDenied", err.code)
            assert.matches("secret.txt", err.message, 1, true)
        end)

        it("fails with AuthenticationFailed for a wrong password, never showing it", function()
            local secret = "Wrong-Smb-" .. proc.random_word(8)
            local src, err = vt.smb_open(srv:url("hello.txt"), { user = srv.user, password = secret })
            assert.is_nil(src)
            assert.equal("AuthenticationFailed", err.code)
            assert.matches(srv.user, err.message, 1, true)
            assert_no_secret(secret, err, tostring(err))
        end)
    end)
end)

-- The fake VirusTotal (spec/fake/fakevt.py) receiving remote sources.
describe("c:scan_file with remote sources", function()
    local usable = sshd_ok and samba.usable() and vt.versions().smb and proc.ok("command -v python3")
    if not usable then
        pending("needs root, sshd, smbd and python3")
        return
    end

    local fake, sftp_srv, smb_srv, c
    lazy_setup(function()
        local p = assert(io.popen("exec python3 spec/fake/fakevt.py --key test-key --analysis-steps 0", "r"))
        local line = p:read("l") or ""
        local port, _, pid = line:match("^LISTENING (%d+) (%d+) (%d+)")
        assert(port, "fake VirusTotal did not start: " .. line)
        fake = { pipe = p, pid = pid }
        c = vt.client { apikey = "test-key", base_url = "http://127.0.0.1:" .. port }
        sftp_srv = sshd.start()
        smb_srv = samba.start()
    end)
    lazy_teardown(function()
        if c then c:close() end
        if sftp_srv then sftp_srv:stop() end
        if smb_srv then smb_srv:stop() end
        if fake then
            os.execute("kill " .. fake.pid)
            fake.pipe:close()
        end
    end)

    local function uploaded_sha256(src)
        local analysis = assert(c:scan_file(src))
        assert.equal("analysis", analysis.type)
        local a = assert(c:analysis(analysis.id))
        return a.meta.file_info.sha256, a.meta.file_info.size
    end

    it("uploads an SFTP source, small and through an upload URL (just over 32 MB)", function()
        local s = assert(vt.sftp { host = sftp_srv.address, user = sftp_srv.user, password = sftp_srv.password,
                                   known_hosts = sftp_srv.known_hosts.bracketed })
        local src = assert(s:open(sftp_srv.files .. "/hello.txt"))
        assert.equal(sha256_of(sftp_srv.files .. "/hello.txt"), (uploaded_sha256(src)))
        local over = 32 * 1024 * 1024 + 4096 -- over 32 MB: it goes through upload_url
        local big = sftp_srv:sparse_file("big.bin", over)
        local sha, size = uploaded_sha256(assert(s:open(big)))
        assert.equal(over, size)
        assert.equal(sha256_of(big), sha)
        s:close()
    end)

    it("uploads an SMB source", function()
        local src = assert(vt.smb_open(smb_srv:url("hello.txt"), { user = smb_srv.user, password = smb_srv.password }))
        assert.equal(sha256_of_string("hello over smb\n"), (uploaded_sha256(src)))
        src:close()
    end)

    it("refuses a closed source", function()
        local s = assert(vt.sftp { host = sftp_srv.address, user = sftp_srv.user, password = sftp_srv.password,
                                   known_hosts = sftp_srv.known_hosts.bracketed })
        local src = assert(s:open(sftp_srv.files .. "/hello.txt"))
        s:close()
        assert.has_error(function() c:scan_file(src) end)
    end)
end)
