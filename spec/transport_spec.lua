-- The transport against real servers, the way the service is really reached: TLS and HTTP/2
-- through nginx (a throw-away CA), forward proxies through tinyproxy, both in front of the fake
-- VirusTotal. Every claim is checked in what the servers logged.
local vt = require "vt"
local fake = require "helpers.fake"
local nginx = require "helpers.nginx"
local tinyproxy = require "helpers.tinyproxy"
local proc = require "helpers.remote_proc"

local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c" -- a file the fake serves
-- distinct look-ups the fake answers (a batch asks once for look-ups that are the same)
local FILES = {
    EXE, "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
    "b214da9f6b0d6e6de5090b3f9672defe", "b7162dfcbcac2724c71c03385abe577e1ab0cd8d",
    "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
    "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b",
    "b35ef2d8a3ee0d29eecb83acf45c1f192ceca75ab10dec861166af2b7bda373b",
}
local LOOKUPS = {
    { "domain", "haiku-os.org" }, { "domain", "github.com" }, { "domain", "virustotal.com" },
    { "ip", "8.8.8.8" }, { "ip", "1.1.1.1" }, { "url", "http://example.com/" }, { "url", "http://www.google.com/" },
    { "url", "http://github.com/" }, { "url", "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1" },
}
for _, h in ipairs(FILES) do LOOKUPS[#LOOKUPS + 1] = { "file", h } end

-- Proxy credentials: the password must never show.
local PROXY_USER = "vtuser"
local PROXY_PASSWORD = "Pw" .. proc.random_word(14)

--- Fails when the password shows in any string the caller can see: every string field of the
-- error value, its tostring, and the client's tostring.
local function assert_hidden(err, c)
    assert.is_table(err)
    local seen = { tostring(err), tostring(c) }
    for _, v in pairs(err) do
        if type(v) == "string" then seen[#seen + 1] = v end
    end
    for _, s in ipairs(seen) do
        assert.is_nil(s:find(PROXY_PASSWORD, 1, true), s)
    end
end

-- A child lua5.4 that looks up 8.8.8.8 once and prints "ok <id>" or "error <tostring(err)>".
-- The standard proxy variables are set for it alone (Lua cannot setenv); it loads the same
-- vt.so as this process, with the same LD_PRELOAD (the sanitizer stage preloads libasan).
local CHILD = [[
package.cpath = arg[1]
local vt = require "vt"
local none = function(s) return s ~= "" and s or nil end
local c = vt.client{apikey = arg[2], base_url = arg[3], cainfo = none(arg[4]), proxy = none(arg[5]),
                    quota_state = false, retries = 0, max_wait = 5}
local obj, err = c:ip("8.8.8.8")
io.write(obj and ("ok " .. obj.id) or ("error " .. tostring(err)))
c:close()
]]
local PROXY_VARIABLES = { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                          "no_proxy", "NO_PROXY" }

describe("transport", function()
    local srv, front, px, auth_px, child_script

    setup(function()
        srv = fake.start { analysis_steps = 0 }
        front = nginx.start { upstream = srv.url }
        px = tinyproxy.start { connect_ports = { front.port } }
        auth_px = tinyproxy.start { connect_ports = { front.port }, user = PROXY_USER, password = PROXY_PASSWORD }
        child_script = os.tmpname()
        proc.write(child_script, CHILD)
    end)
    teardown(function()
        os.remove(child_script)
        auth_px:stop()
        px:stop()
        front:stop()
        srv:stop()
    end)
    before_each(function()
        srv:reset()
        front:reset()
        px:reset()
        auth_px:reset()
    end)

    --- A client of nginx with its CA; extra overrides the options (false removes one).
    local function client(extra)
        local opts = { apikey = srv.key, base_url = front.url, cainfo = front.ca, quota_state = false,
                       max_wait = 5, retries = 0 }
        for k, v in pairs(extra) do opts[k] = v or nil end
        return vt.client(opts)
    end

    --- One look-up in a child process with env (a table) as its only proxy variables;
    -- opts: base_url, cainfo, proxy. Returns what the child printed.
    local function child_lookup(env, opts)
        local assignments = {}
        for _, name in ipairs(PROXY_VARIABLES) do assignments[#assignments + 1] = "-u " .. name end
        for name, value in pairs(env) do assignments[#assignments + 1] = name .. "=" .. proc.q(value) end
        return proc.sh(("env %s LD_PRELOAD=%s lua5.4 %s %s %s %s %s %s"):format(
            table.concat(assignments, " "), proc.q(os.getenv("LD_PRELOAD") or ""), proc.q(child_script),
            proc.q(package.cpath), proc.q(srv.key), proc.q(opts.base_url), proc.q(opts.cainfo or ""),
            proc.q(opts.proxy or "")))
    end

    local function with_credentials(url, password)
        return (url:gsub("^http://", "http://" .. PROXY_USER .. ":" .. password .. "@"))
    end

    describe("TLS", function()
        it("verifies nginx's certificate with cainfo, by name and by address", function()
            for _, base_url in ipairs { front.url, front.ip_url } do
                local c = client { base_url = base_url }
                assert.equal(EXE, assert(c:file(EXE)).id)
                c:close()
            end
            local log = front:log(2)
            assert.equal(2, #log)
            for _, entry in ipairs(log) do
                assert.equal(200, entry.status)
                assert.equal("/api/v3/files/" .. EXE, entry.uri)
                assert.matches("^TLSv1%.[23]$", entry.ssl_protocol)
            end
            assert.equal(2, #srv:log())
        end)

        it("refuses a certificate from an unknown CA with TLSError", function()
            -- the system CAs, then a CA file that did not sign the server's certificate
            for _, cainfo in ipairs { false, front.other_ca } do
                local c = client { cainfo = cainfo }
                local obj, err = c:file(EXE)
                assert.is_nil(obj)
                assert.equal("TLSError", err.code)
                assert.matches("certificate", err.message)
                c:close()
            end
            assert.same({}, front:log())
            assert.same({}, srv:log())
        end)

        it("refuses a certificate for another name with TLSError", function()
            local c = client { base_url = front.wrong_name_url }
            local obj, err = c:file(EXE)
            assert.is_nil(obj)
            assert.equal("TLSError", err.code)
            assert.matches("localhost", err.message)
            c:close()
            assert.same({}, front:log())
            assert.same({}, srv:log())
        end)

        it("fails a handshake with a server that does not speak TLS with TLSError", function()
            local c = client { base_url = "https://127.0.0.1:" .. srv.port }
            local obj, err = c:file(EXE)
            assert.is_nil(obj)
            assert.equal("TLSError", err.code)
            c:close()
        end)

        it("names a cainfo file that does not exist in a TLSError", function()
            local missing = front.dir .. "/no-such-ca.pem"
            local c = client { cainfo = missing }
            local obj, err = c:file(EXE)
            assert.is_nil(obj)
            assert.equal("TLSError", err.code)
            assert.truthy(err.message:find(missing, 1, true), err.message)
            c:close()
            assert.same({}, front:log())
        end)

        it("skips verification with insecure = true", function()
            for _, base_url in ipairs { front.url, front.wrong_name_url } do
                local c = client { base_url = base_url, cainfo = false, insecure = true }
                assert.equal(EXE, assert(c:file(EXE)).id)
                c:close()
            end
            local log = front:log(2)
            assert.equal(2, #log)
            assert.equal(front.port, log[1].server_port)
            assert.equal(front.wrong_name_port, log[2].server_port)
        end)
    end)

    describe("HTTP/2", function()
        it("multiplexes a batch's concurrent look-ups on one connection", function()
            -- a fresh client: no connection exists yet when the eight first transfers start
            local c = client {}
            local list = LOOKUPS
            assert.equal(16, #list)
            local results = c:batch(list, { concurrency = 8 })
            for i, r in ipairs(results) do
                assert.is_true(r.ok, tostring(r.err))
                assert.equal(list[i][1] == "ip" and "ip_address" or list[i][1], r.value.type)
            end
            c:close()
            local log = front:log(16)
            assert.equal(16, #log)
            local served = {}
            for _, entry in ipairs(log) do
                assert.equal("HTTP/2.0", entry.protocol)
                assert.equal(log[1].connection, entry.connection)
                served[entry.requests] = true
            end
            for n = 1, 16 do assert.is_true(served[n], "request " .. n .. " on the connection") end
        end)

        it("does not hold plain-HTTP look-ups back behind a slow first answer", function()
            -- Over plain HTTP only an answer would tell whether the connection multiplexes:
            -- the other look-ups go out on their own connections while the first one waits.
            srv:fault { type = "slow", delay = 2, regex = "^/api/v3/domains/" }
            local c = client { base_url = srv.url }
            local list = { { "domain", "haiku-os.org" }, { "ip", "8.8.8.8" }, { "ip", "1.1.1.1" } }
            for i = 1, 5 do list[#list + 1] = { "file", FILES[i] } end
            for _, r in ipairs(c:batch(list, { concurrency = 8 })) do assert.is_true(r.ok, tostring(r.err)) end
            c:close()
            local log = srv:log()
            assert.equal(8, #log)
            local slow
            for _, entry in ipairs(log) do
                if entry.path == "/api/v3/domains/haiku-os.org" then slow = entry end
            end
            assert.truthy(slow)
            for _, entry in ipairs(log) do
                if entry ~= slow then
                    assert.is_true(entry.mono < slow.mono + slow.duration, "a look-up waited for the slow one")
                    assert.not_equal(slow.conn, entry.conn)
                end
            end
        end)

        it("decodes gzip-compressed answers", function()
            local direct = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 0 }
            local plain = assert(direct:file(EXE))
            direct:close()
            local c = client {}
            local compressed = assert(c:file(EXE))
            c:close()
            local entry = front:log(1)[1]
            assert.equal("gzip", entry.encoding)
            assert.is_true(entry.gzip_ratio > 1)
            assert.same(plain.attributes, compressed.attributes)
            assert.equal("integer", math.type(compressed.attributes.size))
        end)
    end)

    describe("proxies", function()
        it("sends plain-HTTP requests through the proxy option", function()
            local c = client { base_url = srv.url, proxy = px.url }
            assert.equal(EXE, assert(c:file(EXE)).id)
            c:close()
            assert.same({ { method = "GET", target = srv.url .. "/api/v3/files/" .. EXE } }, px:requests())
            local log = srv:log()
            assert.equal(1, #log)
            assert.matches("tinyproxy", log[1].headers.via)
        end)

        it("tunnels HTTPS through the proxy option with CONNECT, TLS still verified", function()
            local c = client { proxy = px.url }
            assert.equal(EXE, assert(c:file(EXE)).id)
            c:close()
            local unverified = client { proxy = px.url, cainfo = front.other_ca }
            local obj, err = unverified:file(EXE)
            unverified:close()
            assert.is_nil(obj)
            assert.equal("TLSError", err.code)
            local connect = { method = "CONNECT", target = "localhost:" .. front.port }
            assert.same({ connect, connect }, px:requests())
            local log = front:log(1)
            assert.equal(1, #log)
            assert.equal("HTTP/2.0", log[1].protocol)
        end)

        it("honours http_proxy, HTTPS_PROXY and no_proxy when no proxy option is given", function()
            assert.equal("ok 8.8.8.8", child_lookup({ http_proxy = px.url }, { base_url = srv.url }))
            assert.equal("ok 8.8.8.8", child_lookup({ HTTPS_PROXY = px.url }, { base_url = front.url, cainfo = front.ca }))
            -- no_proxy names the fake's address: straight there, though http_proxy is set
            assert.equal("ok 8.8.8.8", child_lookup({ http_proxy = px.url, no_proxy = "127.0.0.1" }, { base_url = srv.url }))
            assert.same({
                { method = "GET", target = srv.url .. "/api/v3/ip_addresses/8.8.8.8" },
                { method = "CONNECT", target = "localhost:" .. front.port },
            }, px:requests())
            local log = srv:log()
            assert.equal(3, #log)
            assert.matches("tinyproxy", log[1].headers.via)  -- through the proxy
            assert.is_nil(log[3].headers.via)                -- not
            assert.equal(1, #front:log(1))
        end)

        it("prefers the proxy option to the environment", function()
            local dead = "http://127.0.0.1:1"
            assert.equal("ok 8.8.8.8", child_lookup({ http_proxy = dead }, { base_url = srv.url, proxy = px.url }))
            assert.equal(1, #px:requests())
        end)

        it("authenticates to the proxy with the credentials in its URL", function()
            local c = client { proxy = with_credentials(auth_px.url, PROXY_PASSWORD) }
            assert.equal(EXE, assert(c:file(EXE)).id)
            c:close()
            c = client { base_url = srv.url, proxy = with_credentials(auth_px.url, PROXY_PASSWORD) }
            assert.equal(EXE, assert(c:file(EXE)).id)
            c:close()
            assert.equal(2, #auth_px:requests())
            local log = srv:log()
            assert.equal(2, #log)
            assert.is_nil(log[2].headers["proxy-authorization"]) -- the proxy keeps them to itself
        end)

        it("hides a password holding '/', '?', '#' or '@' unencoded, in c:options() and in messages", function()
            for _, password in ipairs { "se/" .. PROXY_PASSWORD, "se#" .. PROXY_PASSWORD, "se?" .. PROXY_PASSWORD,
                                        "p/w?x#y@" .. PROXY_PASSWORD } do
                for _, scheme in ipairs { "http://", "" } do
                    local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 0,
                                          proxy = scheme .. PROXY_USER .. ":" .. password .. "@127.0.0.1:1" }
                    assert.equal(scheme .. PROXY_USER .. ":***@127.0.0.1:1", c:options().proxy)
                    local obj, err = c:domain("github.com")
                    assert.is_nil(obj)
                    assert.matches("Unsupported proxy syntax", err.message) -- curl quotes the URL it cannot parse
                    assert_hidden(err, c)
                    c:close()
                end
            end
            assert.same({}, srv:log())
        end)

        it("never shows the proxy password", function()
            local failures = {
                -- tinyproxy answers 401 to a wrong password: for plain HTTP, an answer
                { base_url = srv.url, proxy = with_credentials(auth_px.url, "wrong" .. PROXY_PASSWORD), http = 401 },
                -- for HTTPS, a refused CONNECT
                { proxy = with_credentials(auth_px.url, "wrong" .. PROXY_PASSWORD), code = "ConnectionError" },
                -- nobody listens there
                { proxy = with_credentials("http://127.0.0.1:1", PROXY_PASSWORD), code = "ConnectionError" },
                -- curl quotes a proxy URL it cannot parse in its message
                { proxy = with_credentials("http://[::1", PROXY_PASSWORD), code = "ConnectionError", says = "proxy" },
            }
            for _, case in ipairs(failures) do
                local c = client { base_url = case.base_url, proxy = case.proxy }
                local obj, err = c:file(EXE)
                assert.is_nil(obj)
                if case.code then assert.equal(case.code, err.code) end
                if case.http then assert.equal(case.http, err.http) end
                if case.says then assert.matches(case.says, err.message) end
                assert_hidden(err, c)
                c:close()
            end
            -- without credentials: 407
            local c = client { base_url = srv.url, proxy = auth_px.url }
            local _, err = c:file(EXE)
            assert.equal(407, err.http)
            c:close()
            assert.same({}, srv:log())
            assert.same({}, front:log())
            -- a proxy URL from the environment is scrubbed too
            local out = child_lookup({ http_proxy = with_credentials("http://[::1", PROXY_PASSWORD) }, { base_url = srv.url })
            assert.matches("^error ConnectionError", out)
            assert.is_nil(out:find(PROXY_PASSWORD, 1, true), out)
        end)
    end)
end)
