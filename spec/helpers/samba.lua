--- A private Samba file server for the remote-file specs.
--
-- samba.start() runs `smbd --foreground -s <dir>/smb.conf` on 127.0.0.1 and
-- a free port, with every directory smbd writes (lock,
-- state, cache, pid, private, ncalrpc, logs) and its password database
-- (passdb backend = tdbsam:<dir>/private/passdb.tdb) under its own
-- temporary directory, and one read-only share `files`. server:stop() ends
-- it and removes the directory.
--
-- Needs root (samba.usable() says whether it can run): smbd serves files as
-- the logged-in account, so the helper creates the system account `vtsmb`
-- (no home, no shell) when it is missing, and adds it with `smbpasswd -a` to
-- the private database with its random password (kept root-only in
-- /var/lib/vt-test-accounts/vtsmb).
-- Debian packages: samba (smbd, smbpasswd).
local proc = require "helpers.remote_proc"

local M = {}

M.user = "vtsmb"

function M.usable()
    if not proc.is_root() then return false, "samba specs need root (smbd and a test account)" end
    if not proc.ok("command -v smbd && command -v smbpasswd") then return false, "samba is not installed" end
    return true
end

function M.start()
    local dir = proc.tmpdir("smb")
    local password = proc.test_account(M.user)
    for _, d in ipairs { "lock", "state", "cache", "pid", "private", "ncalrpc", "log" } do
        proc.sh("mkdir -p " .. proc.q(dir .. "/" .. d))
    end
    local share = dir .. "/share"
    proc.sh("mkdir -p " .. proc.q(share .. "/sub dir"))
    proc.write(share .. "/hello.txt", "hello over smb\n", "644")
    proc.write(share .. "/sub dir/na me%.txt", "a name to encode\n", "644")
    proc.write(share .. "/secret.txt", "root only\n", "600")
    proc.sh("chmod -R a+rX " .. proc.q(share .. "/sub dir"))

    local config = dir .. "/smb.conf"
    local log = dir .. "/log/smbd.out"
    local function write_config(port)
        proc.write(config, table.concat({
            "[global]",
            "  workgroup = VTTEST",
            "  netbios name = VTTEST",
            "  server role = standalone server",
            "  smb ports = " .. port,
            "  interfaces = lo",
            "  bind interfaces only = yes",
            "  disable netbios = yes",
            "  lock directory = " .. dir .. "/lock",
            "  state directory = " .. dir .. "/state",
            "  cache directory = " .. dir .. "/cache",
            "  pid directory = " .. dir .. "/pid",
            "  private dir = " .. dir .. "/private",
            "  ncalrpc dir = " .. dir .. "/ncalrpc",
            "  log file = " .. dir .. "/log/log.%m",
            "  passdb backend = tdbsam:" .. dir .. "/private/passdb.tdb",
            "  map to guest = never",
            "  load printers = no",
            "  printing = bsd",
            "  printcap name = /dev/null",
            "  disable spoolss = yes",
            "  usershare path =",
            "",
            "[files]",
            "  path = " .. share,
            "  read only = yes",
            "  guest ok = no",
            "",
        }, "\n"))
    end
    write_config(445) -- smbpasswd reads the config before the port is known
    proc.sh(("printf '%%s\\n%%s\\n' %s %s | smbpasswd -c %s -s -a %s"):format(
        proc.q(password), proc.q(password), proc.q(config), proc.q(M.user)))

    local pid, port = proc.start_on_free_port(function(port)
        write_config(port)
        -- Not --no-process-group: smbd signals its whole process group when it
        -- stops, which would include this Lua process.
        return proc.spawn("smbd --foreground --debug-stdout -d 1 -s " .. proc.q(config), log)
    end, log)

    local server = {
        pid = pid,
        port = port,
        dir = dir,
        share = share,
        user = M.user,
        password = password,
        log = log,
    }

    --- smb://127.0.0.1:port/files/<rel>
    function server:url(rel)
        return ("smb://127.0.0.1:%d/files/%s"):format(self.port, rel)
    end

    function server:stop()
        proc.stop(self.pid)
        proc.rmdir(self.dir)
    end

    return server
end

return M
