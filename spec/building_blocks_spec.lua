-- The shared building blocks of SPEC §8: what the C core knows, exposed once for the
-- playbook layers and for users (vt.normalize, vt.error, vt.digest, vt.registered_domain,
-- vt.decode, vt.encode), and c:options(), c:cache_stats().requests, retry_base.
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"

describe("vt.normalize", function()
    it("gives the canonical id of each kind", function()
        assert.equal("44d88612fea8a8f36de82e1278abb02f", vt.normalize("file", " 44D88612FEA8A8F36DE82E1278ABB02F\n"))
        assert.equal(vt.url_id("http://example.com/"), vt.normalize("url", "hxxp://example[.]com/"))
        assert.equal("example.com", vt.normalize("domain", "ExAmple[.]COM."))
        assert.equal("2001:db8::1", vt.normalize("ip", "2001:db8::1"))
        assert.equal("1.2.3.4", vt.normalize("ip", "1[.]2.3.4"))
        -- an internationalised name in its ASCII form, as the service files it
        assert.equal("www.xn--bcher-kva.de", vt.normalize("domain", "www.BÜCHER.de"))
        assert.equal("xn--bcher-kva.de", vt.normalize("domain", "xn--bcher-kva.de"))
    end)

    it("returns InvalidArgument for malformed indicators", function()
        for _, case in ipairs {
            { "file", "44d88612" }, { "file", "" }, { "domain", "1.2.3.4" }, { "domain", "-bad-.com" },
            { "domain", "localhost" }, { "ip", "1.2.3" }, { "ip", "010.1.1.1" }, { "url", "http://exa mple.com/" },
            { "file", "44d88612fea8a8f36de82e1278abb02\0" }, { "domain", "bad\xff.com" },
        } do
            local v, err = vt.normalize(case[1], case[2])
            assert.is_nil(v, case[2])
            assert.equal("InvalidArgument", err.code)
        end
    end)

    it("takes a domain only under a suffix the Public Suffix List knows, as the service does", function()
        for _, name in ipairs { "a.co.za", "foo.blogspot.com", "co.uk", "github.io", "x.xn--p1ai" } do
            assert.equal(name, vt.normalize("domain", name))
        end
        -- the service: 'Domain "xpressco.za" is not a valid domain pattern'; an alert's internal names
        for _, name in ipairs { "xpressco.za", "ws12.corp.local", "printer.lan", "never-seen.example", "host.invalid" } do
            local v, err = vt.normalize("domain", name)
            assert.is_nil(v, name)
            assert.matches("known public suffix", err.message, 1, true)
        end
        -- a URL without a scheme may carry "://" in its query: it is still that URL
    local phish = "evil.example/login?next=https://bank.example/"
    assert.equal(vt.url_id(phish), vt.normalize("url", phish))
    -- URLs on such hosts are still URLs: their ids are the service's to judge
        assert.equal(vt.url_id("http://intranet.corp.local/x"), vt.normalize("url", "http://intranet.corp.local/x"))
    end)

    it("agrees with what the client sends", function()
        local srv = fake.start { analysis_steps = 0 }
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false }
        c:domain("GitHub.com.")
        assert.equal("/api/v3/domains/" .. vt.normalize("domain", "GitHub.com."), srv:log()[1].path)
        c:close()
        srv:stop()
    end)

    it("raises for a wrong kind or type", function()
        assert.has_error(function() vt.normalize("hash", "x") end)
        assert.has_error(function() vt.normalize("file", 42) end)
    end)
end)

describe("vt.error", function()
    it("makes an error value like the core's own", function()
        local err = vt.error("NotFoundError", "File \"x\" not found", { http = 404, analysis_id = "a-1", extra = true })
        assert.equal("NotFoundError", err.code)
        assert.equal(404, err.http)
        assert.is_true(err.extra)
        assert.equal('NotFoundError (HTTP 404): File "x" not found (analysis a-1)', tostring(err))
        local _, core = vt.client { apikey = "k", quota_state = false }:file("bad")
        assert.equal(getmetatable(core), getmetatable(err))
    end)

    it("raises for wrong types", function()
        assert.has_error(function() vt.error(1, "m") end)
        assert.has_error(function() vt.error("", "m") end)
        assert.has_error(function() vt.error("C", "m", "fields") end)
    end)
end)

describe("vt.digest", function()
    local dir
    setup(function() dir = files.tmpdir() end)
    teardown(function() files.rmtree(dir) end)

    it("digests a string and a file, streamed", function()
        local empty = vt.digest { data = "" }
        assert.same({ md5 = "d41d8cd98f00b204e9800998ecf8427e", sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", size = 0 }, empty)
        local path = dir .. "/abc"
        local f = assert(io.open(path, "wb"))
        f:write(("abc"):rep(100000)) -- several read chunks
        f:close()
        local d = assert(vt.digest(path))
        assert.equal(300000, d.size)
        assert.equal("integer", math.type(d.size))
        assert.same(vt.digest { data = ("abc"):rep(100000) }, d)
    end)

    it("fails at once on what is not a regular file, FIFOs included", function()
        local fifo = dir .. "/fifo"
        assert(os.execute("mkfifo " .. files.quote(fifo)))
        for _, p in ipairs { fifo, dir, dir .. "/missing", "" } do
            local d, err = vt.digest(p)
            assert.is_nil(d)
            assert.equal("InvalidArgument", err.code)
        end
    end)

    it("raises for wrong types", function()
        assert.has_error(function() vt.digest(42) end)
        assert.has_error(function() vt.digest { data = 1 } end)
        assert.has_error(function() vt.digest { path = "x" } end)
    end)
end)

describe("vt.registered_domain", function()
    it("follows the public suffix list, internationalised names too", function()
        assert.equal("example.co.uk", vt.registered_domain("mail.a.example.co.uk"))
        assert.equal("example.com", vt.registered_domain("WWW.Example.COM."))
        assert.equal("bücher.de", vt.registered_domain("www.bücher.de"))
        assert.equal("xn--bcher-kva.de", vt.registered_domain("www.xn--bcher-kva.de"))
        assert.equal("user.github.io", vt.registered_domain("a.user.github.io"))
    end)

    it("gives nil for public suffixes, addresses and non-names", function()
        for _, name in ipairs { "co.uk", "com", "1.2.3.4", "", "::1" } do
            assert.is_nil(vt.registered_domain(name), name)
        end
    end)
end)

describe("vt.decode and vt.encode", function()
    it("keep integers and null", function()
        local v = assert(vt.decode('{"n": 10000, "f": 1.5, "l": [1, null], "big": 1700000000}'))
        assert.equal("integer", math.type(v.n))
        assert.equal("integer", math.type(v.big))
        assert.equal("float", math.type(v.f))
        assert.equal(vt.null, v.l[2])
        assert.same(v, vt.decode(vt.encode(v)))
        -- floats survive a round trip whole (lua-cjson keeps 14 digits only)
        assert.equal(4.464691638946533, vt.decode(vt.encode { e = 4.464691638946533 }).e)
        assert.equal('{"s":"a\\"b\\\\\\n\\u0001"}', vt.encode { s = 'a"b\\\n\1' })
    end)

    it("returns nil, err for bad text and raises for what JSON cannot hold", function()
        local v, err = vt.decode("{x")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        assert.has_error(function() vt.decode(42) end)
        assert.has_error(function() vt.encode { f = print } end)
    end)
end)

describe("client options", function()
    it("c:options() gives the effective options without the key or a proxy password", function()
        local c = vt.client { apikey = "secret-key-1234", quota_state = false, requests_per_minute = 4,
            requests_per_day = 500, rate = { { n = 5, per = 2 } }, proxy = "http://u:hunter2@127.0.0.1:3128",
            retry_base = 0.05, api = "v2" }
        local o = c:options()
        assert.equal("v2", o.api)
        assert.equal("https://www.virustotal.com", o.base_url)
        assert.equal(4, o.requests_per_minute)
        assert.equal(500, o.requests_per_day)
        assert.same({ { n = 5, per = 2 } }, o.rate)
        assert.is_false(o.quota_state)
        assert.equal(60, o.max_wait)
        assert.equal(3, o.retries)
        assert.equal(0.05, o.retry_base)
        assert.equal("http://u:***@127.0.0.1:3128", o.proxy)
        assert.is_false(o.yield)
        for k, v in pairs(o) do
            assert.is_nil(tostring(v):find("secret-key-1234", 1, true), k)
            assert.is_nil(tostring(v):find("hunter2", 1, true), k)
        end
        -- what it gives back builds an equivalent client
        local o2 = vt.client(setmetatable({ apikey = "k" }, { __index = o }))
        o.apikey = "k"
        assert.same(c:options(), vt.client(o):options())
        o2:close()
        c:close()
    end)

    it("names the option and its range for a bad value", function()
        for _, case in ipairs {
            { { timeout = -1 }, "option 'timeout' must be a number from 0.001 to 86400 %(got %-1%)" },
            { { max_wait = 0 / 0 }, "option 'max_wait' must be a number from 0 to 86400 %(got NaN%)" },
            { { retries = 101 }, "option 'retries' must be a number from 0 to 100" },
            { { connect_timeout = 0 }, "option 'connect_timeout' must be a number from 0.001" },
            { { poll_interval = -5 }, "option 'poll_interval' must be a number from 0" },
            { { retry_base = 61 }, "option 'retry_base' must be a number from 0 to 60" },
        } do
            local opts = case[1]
            opts.apikey, opts.quota_state = "k", false
            local ok, err = pcall(vt.client, opts)
            assert.is_false(ok)
            assert.matches(case[2], err)
        end
    end)
end)

describe("retry_base and the request count", function()
    local srv
    setup(function() srv = fake.start { analysis_steps = 0 } end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    it("sets the first backoff step: small steps fit all retries in max_wait", function()
        srv:fault { type = "status", status = 503, count = -1 }
        local quick = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 3,
            retry_base = 0.01, max_wait = 2 }
        local _, err = quick:file(("a"):rep(64))
        assert.equal("TransientError", err.code)
        assert.equal(4, #srv:log())
        assert.equal(4, quick:cache_stats().requests)
        srv:reset()
        srv:fault { type = "status", status = 503, count = -1 }
        -- the default step (1 s, doubled) cannot fit a second retry in 2 s
        local slow = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 3, max_wait = 2 }
        slow:file(("a"):rep(64))
        assert.is_true(#srv:log() < 4)
        quick:close()
        slow:close()
    end)

    it("counts the API requests sent, not cache-free failures", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false }
        c:file("not a hash")
        assert.equal(0, c:cache_stats().requests)
        c:domain("github.com")
        c:ip("8.8.8.8")
        assert.equal(2, c:cache_stats().requests)
        assert.equal(#srv:log(), c:cache_stats().requests)
        assert.matches("2 requests", tostring(c))
        c:close()
    end)
end)

describe("functions of the vt table written in Lua", function()
    it("load on first use: vt.verdict is vt.verdict's verdict", function()
        assert.equal(require("vt.verdict").verdict, vt.verdict)
        assert.is_nil(vt.no_such_function)
    end)
end)
