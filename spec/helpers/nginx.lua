--- nginx as a TLS + HTTP/2 reverse proxy in front of a plain-HTTP server (the fake VirusTotal).
--
--    local nginx = require "helpers.nginx"
--    local front = nginx.start{upstream = srv.url}   -- srv from helpers.fake
--    -- front.url             "https://localhost:<port>"  (certificate for localhost and 127.0.0.1)
--    -- front.ip_url          "https://127.0.0.1:<port>"  (the same server)
--    -- front.wrong_name_url  "https://localhost:<wrong_name_port>" (certificate for wrong.example)
--    -- front.ca              the CA that signed both certificates (a client's `cainfo`)
--    -- front.other_ca        a CA that signed nothing here (an unknown CA)
--    -- front.port, front.wrong_name_port, front.host ("127.0.0.1"), front.pid, front.dir, front.log_file
--    front:log()             -- access log entries, oldest first (fields below)
--    front:reset()           -- empties the access log
--    front:stop()            -- also on garbage collection and at the end of a <close> scope
--
-- One nginx process (`daemon off`, `master_process off`: it runs as the current user and never
-- switches user, even as root) with its pid, logs and temporary paths in a fresh directory, so
-- nothing under /var is touched. Both listeners speak TLS with HTTP/2 offered by ALPN, gzip
-- JSON answers and pass requests on to `upstream`, with Host set to the address the client used.
-- A watchdog stops nginx when the Lua process that started it exits (helpers.remote_proc).
-- Debian packages: nginx-light (ssl, http_v2, gzip), openssl.
local daemon = require "helpers.daemon"
local proc = require "helpers.remote_proc"
local tls = require "helpers.tls"

local nginx = {}

-- One line per request: fields separated by spaces, none of which may contain one
-- ($request_uri is sent URL-encoded; nginx writes "-" for an empty value).
local LOG_FIELDS = {
    { "connection", "$connection", tonumber },        -- the client connection's serial number
    { "requests", "$connection_requests", tonumber }, -- requests made so far on that connection
    { "protocol", "$server_protocol" },                -- HTTP/1.1, HTTP/2.0
    { "status", "$status", tonumber },
    { "method", "$request_method" },
    { "uri", "$request_uri" },
    { "encoding", "$sent_http_content_encoding" },     -- "gzip" when nginx compressed the answer
    { "gzip_ratio", "$gzip_ratio", tonumber },         -- nil when not compressed
    { "ssl_protocol", "$ssl_protocol" },               -- TLSv1.3, ...
    { "server_port", "$server_port", tonumber },
}

local function log_format()
    local vars = {}
    for i, f in ipairs(LOG_FIELDS) do vars[i] = f[2] end
    return table.concat(vars, " ")
end

local function parse_line(line)
    local entry, i = {}, 0
    for word in line:gmatch("%S+") do
        i = i + 1
        local field = LOG_FIELDS[i]
        if not field then break end
        if word ~= "-" then entry[field[1]] = field[3] and field[3](word) or word end
    end
    return entry
end

-- listeners: a list of {port, cert = {cert, key}}.
local function config(dir, upstream, listeners)
    local function server_block(listen_port, cert)
        return ([[
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s;
    ssl_certificate_key %s;
    location / {
      proxy_pass %s;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host:$server_port;
    }
  }
]]):format(listen_port, cert.cert, cert.key, upstream)
    end
    local lines = {
        "daemon off;",
        "master_process off;",
        "pid " .. dir .. "/nginx.pid;",
        "lock_file " .. dir .. "/nginx.lock;",
        "error_log " .. dir .. "/error.log warn;",
        "events { worker_connections 256; }",
        "http {",
        "  log_format vt '" .. log_format() .. "';",
        "  access_log " .. dir .. "/access.log vt;",
        "  client_body_temp_path " .. dir .. "/client_body;",
        "  proxy_temp_path " .. dir .. "/proxy;",
        "  fastcgi_temp_path " .. dir .. "/fastcgi;",
        "  uwsgi_temp_path " .. dir .. "/uwsgi;",
        "  scgi_temp_path " .. dir .. "/scgi;",
        "  client_max_body_size 0;",
        "  ssl_protocols TLSv1.2 TLSv1.3;",
        -- Via is set when the request came through a forward proxy: compress those too.
        "  gzip on; gzip_types application/json; gzip_proxied any; gzip_min_length 64;",
    }
    for _, l in ipairs(listeners) do lines[#lines + 1] = server_block(l.port, l.cert) end
    lines[#lines + 1] = "}\n"
    return table.concat(lines, "\n")
end

local Front = daemon.class()

--- Starts nginx in front of opts.upstream (a base URL such as "http://127.0.0.1:8080").
function nginx.start(opts)
    assert(opts and opts.upstream, "nginx.start: upstream is required")
    local dir = proc.tmpdir("nginx")
    local ca = tls.ca(dir, "ca")
    local other_ca = tls.ca(dir, "other_ca")
    local server = tls.issue(dir, ca, "server", { "DNS:localhost", "IP:127.0.0.1" })
    local wrong_name = tls.issue(dir, ca, "wrong_name", { "DNS:wrong.example" })
    local conf, log = dir .. "/nginx.conf", dir .. "/nginx.out"
    for _ = 1, 5 do
        local port, wrong_name_port = proc.candidate_port(), proc.candidate_port()
        if port ~= wrong_name_port then
            proc.write(conf, config(dir, opts.upstream, {
                { port = port, cert = server }, { port = wrong_name_port, cert = wrong_name } }))
            local cmd = ("nginx -p %s -e stderr -c %s"):format(proc.q(dir), proc.q(conf))
            local pid = proc.spawn(cmd, log)
            if proc.wait_listening(pid, port) and proc.wait_listening(pid, wrong_name_port) then
                return setmetatable({
                    pid = pid, dir = dir, host = "127.0.0.1", port = port, wrong_name_port = wrong_name_port,
                    url = "https://localhost:" .. port,
                    ip_url = "https://127.0.0.1:" .. port,
                    wrong_name_url = "https://localhost:" .. wrong_name_port,
                    ca = ca.cert, other_ca = other_ca.cert, log_file = dir .. "/access.log",
                }, Front)
            end
            proc.stop(pid)
        end
    end
    local out = (proc.read(log) or "") .. (proc.read(dir .. "/error.log") or "")
    proc.rmdir(dir)
    error("nginx did not start; its output:\n" .. out, 2)
end

--- The access log entries, oldest first: {connection, requests, protocol, status, method, uri,
-- encoding, gzip_ratio, ssl_protocol, server_port}. nginx writes a request's line just after
-- the answer went out, so a caller that knows how many requests it made passes that as
-- `count`: the log is then read again (for up to 10 s) until it has that many entries.
function Front:log(count)
    local entries
    for _ = 1, 200 do
        entries = {}
        for line in (proc.read(self.log_file) or ""):gmatch("[^\n]+") do
            entries[#entries + 1] = parse_line(line)
        end
        if #entries >= (count or 0) then break end
        proc.ok("sleep 0.05")
    end
    return entries
end

return nginx
