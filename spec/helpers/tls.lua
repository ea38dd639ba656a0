--- A throw-away certificate authority for the TLS specs, made with the `openssl` CLI.
--
--    local tls = require "helpers.tls"
--    local ca = tls.ca(dir, "vt test CA")                 -- {cert, key}
--    local srv = tls.issue(dir, ca, "server", {"DNS:localhost", "IP:127.0.0.1"})
--    -- srv.cert, srv.key: PEM files in dir; ca.cert is what a client's `cainfo` names
--
-- Keys are P-256 (fast to make, and cheap handshakes under valgrind). Certificates last two
-- days. Debian package: openssl.
local proc = require "helpers.remote_proc"

local tls = {}

local KEY = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

-- The serial of the next certificate issued: distinct serials within one run.
local serial = 1000

--- A self-signed CA certificate and its key, written as dir/<name>.crt and dir/<name>.key.
-- name is also the file stem, so it must be a plain word.
function tls.ca(dir, name)
    local stem = dir .. "/" .. name
    proc.sh(("openssl req -x509 %s -days 2 -subj %s -keyout %s -out %s " ..
             "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'")
        :format(KEY, proc.q("/CN=vt test " .. name), proc.q(stem .. ".key"), proc.q(stem .. ".crt")))
    return { cert = stem .. ".crt", key = stem .. ".key" }
end

--- A server certificate for the subject alternative names sans (a list such as
-- {"DNS:localhost", "IP:127.0.0.1"}), signed by ca; files dir/<name>.crt and dir/<name>.key.
function tls.issue(dir, ca, name, sans)
    local stem = dir .. "/" .. name
    serial = serial + 1
    proc.write(stem .. ".ext", table.concat({
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = serverAuth",
        "subjectAltName = " .. table.concat(sans, ", "),
        "",
    }, "\n"))
    proc.sh(("openssl req %s -subj %s -keyout %s -out %s"):format(
        KEY, proc.q("/CN=" .. sans[1]:gsub("^%u+:", "")), proc.q(stem .. ".key"), proc.q(stem .. ".csr")))
    proc.sh(("openssl x509 -req -days 2 -in %s -CA %s -CAkey %s -set_serial %d -extfile %s -out %s"):format(
        proc.q(stem .. ".csr"), proc.q(ca.cert), proc.q(ca.key), serial, proc.q(stem .. ".ext"),
        proc.q(stem .. ".crt")))
    return { cert = stem .. ".crt", key = stem .. ".key" }
end

return tls
