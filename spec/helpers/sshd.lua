--- A private OpenSSH server for the remote-file specs.
--
-- sshd.start() runs `/usr/sbin/sshd -D -e -f <dir>/sshd_config` on
-- 127.0.0.1 and a free port, with its own host keys (ed25519 and ECDSA), its
-- own authorized_keys and `Subsystem sftp internal-sftp`, and returns a
-- table describing it (see the end of start). server:stop() ends it and
-- removes its directory.
--
-- Needs root (sshd.usable() says whether it can run):
--  * password and keyboard-interactive logins check a real account, so the
--    helper creates the system account `vtsftp` (no home, no shell) when it
--    is missing and sets its random password, kept root-only in
--    /var/lib/vt-test-accounts/vtsftp (useradd, chpasswd);
--  * sshd's privilege separation wants /run/sshd, which it creates;
--  * UsePAM yes, because OpenSSH offers keyboard-interactive on Linux only
--    through PAM. sshd runs through a symlink named vt-test-sshd, so PAM uses
--    the service of that name (sshd takes its program name), written to
--    /etc/pam.d/vt-test-sshd: pam_unix without its 2 s delay after a failed
--    password, which would cost every spec of a refused login seconds.
-- Debian packages: openssh-server (sshd), openssh-client (ssh-keygen).
local proc = require "helpers.remote_proc"

local M = {}

M.user = "vtsftp"

local PAM_SERVICE = "vt-test-sshd"
local PAM_CONFIG = table.concat({
    "# The private sshd of vt's specs (spec/helpers/sshd.lua): Debian's sshd stack, failures not delayed.",
    "auth [success=1 default=ignore] pam_unix.so nullok nodelay",
    "auth requisite pam_deny.so",
    "auth required pam_permit.so",
    "@include common-account",
    "@include common-session",
    "",
}, "\n")

function M.usable()
    if not proc.is_root() then return false, "sshd specs need root (a test account and sshd's privilege separation)" end
    if not proc.ok("test -x /usr/sbin/sshd") then return false, "openssh-server is not installed" end
    if not proc.ok("command -v ssh-keygen") then return false, "ssh-keygen is not installed" end
    return true
end

local function keygen(path, kind, passphrase)
    proc.sh(("ssh-keygen -q -t %s -N %s -C vt-test -f %s"):format(kind, proc.q(passphrase or ""), proc.q(path)))
    return proc.read(path .. ".pub"):match("^(%S+ %S+)")
end

local function fingerprint(pub_path)
    return proc.sh("ssh-keygen -l -E sha256 -f " .. proc.q(pub_path)):match("(SHA256:%S+)")
end

--- Starts the server. opts.kbd_only = true offers keyboard-interactive but
-- not the password method (to show that path on its own).
function M.start(opts)
    opts = opts or {}
    local dir = proc.tmpdir("sshd")
    local password = proc.test_account(M.user)
    proc.sh("mkdir -p /run/sshd && chmod 755 /run/sshd")
    if proc.read("/etc/pam.d/" .. PAM_SERVICE) ~= PAM_CONFIG then
        proc.write("/etc/pam.d/" .. PAM_SERVICE, PAM_CONFIG, "644")
    end
    local program = dir .. "/" .. PAM_SERVICE
    proc.sh(("ln -s /usr/sbin/sshd %s"):format(proc.q(program)))

    local host_ed25519 = keygen(dir .. "/host_ed25519", "ed25519")
    local host_ecdsa = keygen(dir .. "/host_ecdsa", "ecdsa")
    local other_key = keygen(dir .. "/other_host", "ed25519") -- the "changed" key

    local passphrase = proc.random_word(16)
    local user_key = keygen(dir .. "/user_key", "ed25519", passphrase)
    proc.write(dir .. "/authorized_keys", user_key .. "\n", "644")

    -- Files served over SFTP (the sftp subsystem runs as vtsftp).
    local files = dir .. "/files"
    proc.sh("mkdir -p " .. proc.q(files))
    proc.write(files .. "/hello.txt", "hello over sftp\n", "644")
    proc.write(files .. "/secret.txt", "root only\n", "600")
    proc.sh("chmod 755 " .. proc.q(files))

    local log = dir .. "/sshd.log"
    local config = dir .. "/sshd_config"
    local pid, port = proc.start_on_free_port(function(port)
        proc.write(config, table.concat({
            "ListenAddress 127.0.0.1",
            "Port " .. port,
            "HostKey " .. dir .. "/host_ed25519",
            "HostKey " .. dir .. "/host_ecdsa",
            "PidFile " .. dir .. "/sshd.pid",
            "AuthorizedKeysFile " .. dir .. "/authorized_keys",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication " .. (opts.kbd_only and "no" or "yes"),
            "KbdInteractiveAuthentication yes",
            "UsePAM yes",
            "PermitRootLogin no",
            "AllowUsers " .. M.user,
            "MaxAuthTries 10",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            "",
        }, "\n"))
        return proc.spawn(proc.q(program) .. " -D -e -f " .. proc.q(config), log)
    end, log)

    local name = ("[127.0.0.1]:%d"):format(port)
    local function known_hosts(file, lines)
        local path = dir .. "/" .. file
        proc.write(path, table.concat(lines, "\n") .. "\n")
        return path
    end
    local hashed = known_hosts("known_hosts_hashed", { name .. " " .. host_ed25519 })
    proc.sh("ssh-keygen -q -H -f " .. proc.q(hashed) .. " && rm -f " .. proc.q(hashed .. ".old"))

    local server = {
        pid = pid,
        host = "127.0.0.1",
        port = port,
        address = "127.0.0.1:" .. port,
        dir = dir,
        files = files,
        user = M.user,
        password = password,
        private_key = dir .. "/user_key",
        passphrase = passphrase,
        fingerprint = fingerprint(dir .. "/host_ed25519.pub"),
        ecdsa_fingerprint = fingerprint(dir .. "/host_ecdsa.pub"),
        log = log,
        known_hosts = {
            -- "[127.0.0.1]:port key", as ssh writes it for a port other than 22
            bracketed = known_hosts("known_hosts", {
                "# vt test server",
                "otherhost.example ssh-ed25519 " .. other_key:match("%S+$"),
                name .. " " .. host_ed25519,
            }),
            hashed = hashed, -- the same line, hashed with ssh-keygen -H
            -- the same host with a different key: "changed"
            changed = known_hosts("known_hosts_changed", { name .. " " .. other_key }),
            -- only the ECDSA key: the client must ask for that one
            ecdsa_only = known_hosts("known_hosts_ecdsa", { name .. " " .. host_ecdsa }),
            -- without the port: OpenSSH files that under port 22 only
            portless = known_hosts("known_hosts_portless", { "127.0.0.1 " .. host_ed25519 }),
            -- the key is there but marked @revoked
            revoked = known_hosts("known_hosts_revoked", {
                name .. " " .. host_ed25519,
                "@revoked " .. name .. " " .. host_ed25519,
            }),
            -- a line libssh2 cannot parse must not hide the good one after it
            with_junk = known_hosts("known_hosts_junk", {
                "@cert-authority *.example ssh-ed25519 " .. other_key:match("%S+$"),
                name .. " sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIE",
                name .. " " .. host_ed25519,
            }),
            empty = known_hosts("known_hosts_empty", {}),
            missing = dir .. "/no_such_known_hosts",
        },
    }

    --- Writes a file of `size` bytes (sparse: instant, no disk) in the served dir.
    function server:sparse_file(file, size)
        local path = self.files .. "/" .. file
        proc.sh(("truncate -s %d %s && chmod 644 %s"):format(size, proc.q(path), proc.q(path)))
        return path
    end

    --- Kills (by pid) this server's SFTP subsystem processes: the SSH
    -- connections stay up while their SFTP channels close under the client.
    function server:kill_sftp()
        local children = {}
        for child, parent, cmd in proc.sh("ps -eo pid=,ppid=,args="):gmatch("%s*(%d+)%s+(%d+)%s+([^\n]*)") do
            children[#children + 1] = { pid = child, ppid = parent, cmd = cmd }
        end
        local mine, killed = { [tostring(self.pid)] = true }, 0
        for _ = 1, 4 do -- listener -> [priv] -> user session -> internal-sftp
            for _, p in ipairs(children) do
                if mine[p.ppid] then mine[p.pid] = true end
            end
        end
        for _, p in ipairs(children) do
            if mine[p.pid] and p.cmd:find("internal-sftp", 1, true) then
                os.execute("kill -9 " .. p.pid)
                killed = killed + 1
            end
        end
        return killed
    end

    function server:stop()
        proc.stop(self.pid)
        proc.rmdir(self.dir)
    end

    return server
end

return M
