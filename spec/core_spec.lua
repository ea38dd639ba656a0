-- vt.core: the protocol core under both playbook layers. The normaliser (vt.core.report) on
-- real answers (spec/fake/samples, and the copies of /work/shared/vt-samples in
-- spec/fixtures/verdicts), the checks of options and indicators (vt.core.input), and the backend
-- (vt.core.backend) against the fake VirusTotal over v3 and v2, counted in the fake's log.
local vt = require "vt"
local core = require "vt.core"
local fake = require "helpers.fake"
local samples = require "helpers.samples"
local requests_log = require "helpers.requests"

local report, input, backend = core.report, core.input, core.backend

local HASH = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c" -- 7 of 72 engines
local CLEAN = "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740"
local BAD = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c"
local UNKNOWN = "0123456789abcdef0123456789abcdef"

local sample = samples.read

local V3, V2, FIXTURES = "spec/fake/samples/v3/", "spec/fake/samples/v2/", "spec/fixtures/verdicts/"

-- Facts hold plain Lua values: no JSON null anywhere outside raw and object.
local function assert_no_null(t, path)
    for k, v in pairs(t) do
        if k ~= "raw" and k ~= "object" then
            assert.is_true(v ~= vt.null, (path or "") .. "." .. tostring(k) .. " is vt.null")
            if type(v) == "table" then
                assert_no_null(v, (path or "") .. "." .. tostring(k))
            end
        end
    end
end

-- Engine name -> whether it detected, and how many did.
local function detections(f)
    local by_name, n = {}, 0
    for _, e in ipairs(f.engines) do
        by_name[e.name] = e.detected
        n = n + (e.detected and 1 or 0)
    end
    return by_name, n
end

describe("vt.core.report", function()
    it("formats and parses v2 dates (UTC), across leap days and before 1970", function()
        for _, epoch in ipairs { 0, 951782400, 1554991830, 1709164800, -86400 } do
            assert.equal(epoch, report.parse_date(report.format_date(epoch)))
        end
        assert.equal("2019-04-11 14:10:30", report.format_date(1554991830))
        assert.equal("2024-02-29 00:00:00", report.format_date(report.parse_date("2024-02-29T00:00:00")))
        assert.is_nil(report.format_date(1.5))
        assert.is_nil(report.format_date(vt.null))
        assert.is_nil(report.parse_date("yesterday"))
    end)

    it("reads a v3 file object", function()
        local obj = sample(V3 .. "file_win32exe_417c0670.json")
        local f = report.facts("file", obj, HASH:upper())
        assert.same({ "file", "v3", HASH, HASH:upper() }, { f.kind, f.protocol, f.id, f.resource })
        assert.equal(obj, f.raw)
        assert.equal(obj, f.object)
        assert.same({ 7, 72 }, { f.positives, f.total })
        assert.equal("integer", math.type(f.positives))
        -- every engine that gave a verdict, by name; the malicious ones detected
        assert.equal(72, #f.engines)
        assert.equal(7, select(2, detections(f)))
        for i = 2, #f.engines do
            assert.is_true(f.engines[i - 1].name < f.engines[i].name)
        end
        assert.equal(obj.attributes.last_analysis_date, f.date)
        assert.equal(HASH .. "-" .. f.date, f.scan_id)
        assert.equal("https://www.virustotal.com/gui/file/" .. HASH, f.permalink)
        assert.same({ "772d8e55f1010beafb6c6472ba3a4d69", "b983ce6bb2f25d7250eb5cf38b3332d27c3b39a7", HASH },
            { f.md5, f.sha1, f.sha256 })
        assert.same({ "f34d5f2d4577ed6d9ceec516c1f5a744", "Win32 EXE", 3072 }, { f.imphash, f.file_type, f.size })
        assert.same({ "source", "source.exe", "pe32_dotnet.exe" }, f.names)
        assert.equal("peexe", f.tags[1])
        assert.equal(obj.attributes.first_submission_date, f.first_seen)
        assert_no_null(f)
    end)

    it("reads a v3 URL object, counting from the service's stats", function()
        local obj = sample(V3 .. "pwelch_url_encoding_find.200.json")
        local f = report.facts("url", obj)
        assert.same({ 5, 90 }, { f.positives, f.total })
        assert.equal(5, select(2, detections(f)))
        assert.equal(obj.attributes.url, f.url)
        assert.equal(obj.id, f.resource)
        assert.equal("https://www.virustotal.com/gui/url/" .. obj.id, f.permalink)
        assert_no_null(f)
    end)

    it("reads a v3 domain object: categories, popularity, registration", function()
        local f = report.facts("domain", sample(V3 .. "ninoseki_domain_get_github.com.200.json"))
        assert.same({ "domain", "github.com" }, { f.kind, f.id })
        assert.equal("computersandsoftware", f.categories.BitDefender)
        assert.same({ "computersandsoftware", "information technology", "social networks" }, f.category_list)
        assert.same({ 105, "MarkMonitor Inc.", 1191928850, 2 }, { f.alexa_rank, f.registrar, f.creation_date,
            f.reputation })
        assert.is_nil(f.positives) -- this recording has no last_analysis_stats
        assert.is_nil(f.samples)
        assert.is_nil(f.resolutions)
        assert_no_null(f)
    end)

    it("reads v3 relationships read beside an object, and rebuilds the same facts from its raw", function()
        local ip = sample(V3 .. "pwelch_ip.200.json")
        local file = sample(V3 .. "file_msword_001015aa.json")
        local url = sample(V3 .. "pwelch_url_find.200.json")
        local resolution = { type = "resolution", attributes = { date = 1700000000, host_name = "a.example",
            ip_address = ip.id } }
        local raw = { data = ip, relationships = {
            communicating_files = { file, sample(V3 .. "file_elf_de10ba5e.json") },
            urls = { url }, resolutions = { resolution }, downloaded_files = {},
        } }
        local f = report.facts("ip", raw, ip.id)
        assert.equal(raw, f.raw)
        assert.equal(ip, f.object)
        assert.same({ sha256 = BAD, positives = 53, total = 62, date = file.attributes.last_analysis_date },
            f.samples.communicating_files[1])
        assert.same({}, f.samples.downloaded_files)
        assert.is_nil(f.samples.referrer_files) -- not read
        assert.same({ 1, 53 }, { report.detected(f.samples.communicating_files) })
        assert.same({ url.attributes.url, url.id }, { f.urls[1].url, f.urls[1].sha256 })
        assert.same({ { date = 1700000000, host_name = "a.example", ip_address = ip.id } }, f.resolutions)
        assert.same({ nil, 0 }, { report.detected(nil) })
        local again = report.facts("ip", vt.decode(vt.encode(f.raw)), ip.id)
        again.raw, again.object, f.raw, f.object = nil, nil, nil, nil
        assert.same(f, again)
    end)

    it("reads a completed v3 analysis: its kind from meta, the analysis id as scan id", function()
        local url = report.facts("file", sample(V3 .. "pwelch_analysis.200.json"))
        assert.same({ "url", "http://virustotal.com/", 0, 79 }, { url.kind, url.url, url.positives, url.total })
        assert.equal("u-a354494a73382ea0b4bc47f4c9e8d6c578027cd4598196dc88f05a22b5817293-1599122231", url.scan_id)
        assert.equal("https://www.virustotal.com/gui/url/"
            .. "a354494a73382ea0b4bc47f4c9e8d6c578027cd4598196dc88f05a22b5817293", url.permalink)
        -- a URL analysis may carry the fetched content's file_info too: url_info decides
        assert.equal("url", report.facts("file", sample(V3 .. "ninoseki_analysis_get_url_completed.200.json")).kind)
        local file = report.facts("url", { type = "analysis", id = "f-1", meta = { file_info = { sha256 = HASH,
            md5 = "m", sha1 = "s", size = 9 } }, attributes = { status = "completed", date = 5,
            stats = { malicious = 1, undetected = 2, timeout = 4 },
            results = { A = { category = "malicious", result = "Evil" }, B = { category = "timeout" },
                C = { category = "undetected", result = vt.null } } } })
        assert.same({ "file", HASH, "f-1", 1, 3 },
            { file.kind, file.resource, file.scan_id, file.positives, file.total })
        assert.same({ { name = "A", detected = true, result = "Evil" }, { name = "C", detected = false } },
            file.engines)
        assert_no_null(file)
    end)

    it("reads v2 file reports, with and without allinfo", function()
        local body = sample(V2 .. "ninoseki_v2_file_report.200.json")
        local f = report.facts("file", body, "726A2EEDB9DF3D63EC1B4A7D774A799901F1A2B9")
        assert.same({ "v2", 0, 56, body.scan_id, body.permalink }, { f.protocol, f.positives, f.total, f.scan_id,
            f.permalink })
        assert.equal(body.resource, f.resource) -- v2 echoes what was asked
        assert.equal(body.scan_date, report.format_date(f.date))
        assert.equal(body.sha256, f.id)
        local n = 0
        for _ in pairs(body.scans) do
            n = n + 1
        end
        assert.equal(n, #f.engines)
        assert_no_null(f)
        local full = report.facts("file", sample(FIXTURES .. "upload_and_scan_file_JsonResult_example.json"))
        assert.same({ "3:duK:IK", "Text", 10, "ASCII text, with no line terminators" },
            { full.ssdeep, full.file_type, full.size, full.magic })
        assert.same({ "2010-12-04 07:53:45", "2020-11-20 09:40:29" },
            { report.format_date(full.first_seen), report.format_date(full.last_seen) })
        assert.equal("query.php", full.names[2])
        assert.is_nil(full.authentihash) -- JSON null in the body
        assert_no_null(full)
    end)

    it("reads a v2 URL report", function()
        local body = sample(V2 .. "ninoseki_v2_url_report.200.json")
        local f = report.facts("url", body)
        assert.same({ "http://github.com/", "http://github.com", 0, 66 }, { f.url, f.resource, f.positives, f.total })
        local detail
        for _, e in ipairs(f.engines) do
            detail = detail or e.detail
        end
        assert.matches("^http", detail)
        assert_no_null(f)
    end)

    it("reads v2 domain and IP reports: both related lists together, tuples, vendors' keys", function()
        local body = sample(V2 .. "ninoseki_v2_domain_report_github.com.200.json")
        local f = report.facts("domain", body, "github.com")
        assert.same({ "github.com", "https://www.virustotal.com/gui/domain/github.com" }, { f.id, f.permalink })
        assert.equal("computersandsoftware", f.categories.BitDefender)
        assert.equal("information technology", f.categories["Forcepoint ThreatSeeker"])
        assert.same(body.categories, f.category_list)
        assert.equal(body["BitDefender domain info"], f.domain_info.BitDefender)
        assert.equal("safe", f.domain_info.Webutation.Verdict)
        assert.equal(#body.detected_urls + #body.undetected_urls, #f.urls)
        assert.equal(#body.detected_urls, (report.detected(f.urls)))
        local tuple = body.undetected_urls[1]
        assert.same({ url = tuple[1], sha256 = tuple[2], positives = tuple[3], total = tuple[4],
            date = report.parse_date(tuple[5]) }, f.urls[#body.detected_urls + 1])
        for rel, name in pairs(report.SAMPLES) do
            assert.equal(#body["detected_" .. name], (report.detected(f.samples[rel])), rel)
            assert.equal(#body["detected_" .. name] + #body["undetected_" .. name], #f.samples[rel], rel)
        end
        assert.same({ body.resolutions[1].ip_address, body.resolutions[1].last_resolved },
            { f.resolutions[1].ip_address, report.format_date(f.resolutions[1].date) })
        assert.same(body.subdomains, f.subdomains)
        assert.equal(body.whois_timestamp, f.whois_date)
        assert_no_null(f)

        body = sample(V2 .. "ninoseki_v2_ip_address_report_1.1.1.1.200.json")
        local ip = report.facts("ip", body, "1.1.1.1")
        assert.same({ 13335, "Cloudflare, Inc.", "AU", "OC", "1.1.1.0/24" },
            { ip.asn, ip.as_owner, ip.country, ip.continent, ip.network })
        assert.equal("integer", math.type(ip.asn))
        assert.is_string(ip.resolutions[1].host_name)
        assert.is_nil(ip.samples.referrer_files[1].date) -- this recording's referrer samples have none
        local top = 0
        for _, s in ipairs(body.detected_referrer_samples) do
            top = math.max(top, s.positives)
        end
        assert.same({ #body.detected_referrer_samples, top }, { report.detected(ip.samples.referrer_files) })
    end)
end)

describe("vt.core.input", function()
    it("checks options: unknown names and wrong types raise, naming them", function()
        local spec = { a = "number", b = "string|boolean", c = "userdata" }
        assert.same({ a = 3, b = false }, input.options("x.new", { a = 3, b = false }, spec))
        assert.same({ a = 2.5 }, input.options("x.new", { a = "2.5" }, spec, true))
        assert.has_error(function() input.options("x.new", { z = 1 }, spec) end, "x.new: unknown option 'z'")
        assert.has_error(function() input.options("x.new", { a = "2" }, spec) end,
            "x.new: option 'a' must be a number (got string)")
        assert.has_error(function() input.options("x.new", { b = 1 }, spec) end,
            "x.new: option 'b' must be a string or boolean (got number)")
        assert.has_error(function() input.options("x.new", { c = {} }, spec) end,
            "x.new: option 'c' must be a vt.client (got table)")
        assert.has_error(function() input.options("x.new", "k", spec) end,
            "x.new: options must be a table (got string)")
        local opts = { n = 4.0 }
        input.whole("x.new", opts, "n", 1, 25)
        assert.equal("integer", math.type(opts.n))
        assert.has_error(function() input.whole("x.new", { n = 26 }, "n", 1, 25) end,
            "x.new: option 'n' must be a whole number, 1 to 25 (got 26)")
        assert.has_error(function() input.whole("x.new", { n = 1.5 }, "n", 0) end,
            "x.new: option 'n' must be a whole number, 0 or more (got 1.5)")
    end)

    it("takes the protocol from the client; a contradicting api raises, naming both", function()
        local c = vt.client { apikey = "k", api = "v2", quota_state = false }
        assert.equal("v2", input.protocol("x.new", c))
        assert.equal("v2", input.protocol("x.new", c, "v2"))
        assert.has_error(function() input.protocol("x.new", c, "v3") end,
            "x.new: option 'api' is \"v3\" but the client speaks \"v2\" (the client's api decides)")
    end)

    it("makes a layer's own client with the response cache on, unless told otherwise", function()
        local own = input.client("x.new", { apikey = "k", base_url = "http://127.0.0.1:9", api = "v2" })
        local o = own:options()
        assert.same({ "v2", "http://127.0.0.1:9" }, { o.api, o.base_url })
        assert.matches("^sqlite:.*/vt/cache%.sqlite$", o.cache)
        assert.is_false(input.client("x.new", { apikey = "k", cache = false }):options().cache)
        assert.equal("sqlite:/tmp/x.sqlite", input.client("x.new", { apikey = "k", cache = "sqlite:/tmp/x.sqlite" })
            :options().cache)
        local given = vt.client { apikey = "k", quota_state = false }
        assert.equal(given, input.client("x.new", { client = given, api = "v3" }))
        assert.has_error(function() input.client("x.new", { client = given, cache = true }) end,
            "x.new: give 'client' or 'cache', not both")
        -- both layers take the client options
        for _, new in ipairs { require("vt.soar").new, require("vt.actions").new } do
            assert.is_table(new { apikey = "k", base_url = "http://127.0.0.1:9", cache = false,
                requests_per_minute = 4 })
        end
    end)

    it("cleans indicators by vt.normalize: one definition of a hash, URL, domain and IP", function()
        assert.equal(HASH, input.hash("  " .. HASH:upper() .. "\t"))
        assert.equal("192.168.1.20", input.ip("192.168.1[.]20"))
        assert.equal("https://www.dropbox.com/s/X?dl=1", input.url(" hxxps://www.dropbox[.]com/s/X?dl=1 "))
        assert.equal("http://[::1]/x", input.url("http://[::1]/x"))
        assert.equal("github.com", input.domain("https://GitHub.com/login"))
        assert.equal("mail.virustotal.com", input.domain("alice@Mail.VirusTotal.com"))
        assert.equal("www.x.com", input.domain("www[.]x.com:8080"))
        for _, case in ipairs {
            { "hash", "not-a-hash" }, { "ip", "999.1.1.1" }, { "url", "http//bad url" }, { "url", "hxxp:///no-host" },
            { "url", "javascript:alert(1)" }, { "domain", "bad..domain" }, { "domain", "10.1.2.3" },
            -- vt.normalize takes a URL's id too; an entity must be the URL itself
            { "url", "notaurlatall" }, { "url", ("a"):rep(64) },
        } do
            local value, err = input[case[1]](case[2])
            assert.is_nil(value, case[2])
            assert.equal("InvalidArgument", err.code, case[2])
        end
        assert.same({ "example.com", "example.com", "x.example", "::1" },
            { input.host("http://u:p@example.com:81/p"), input.host("example.com/p?q"), input.host("a@x.example"),
                input.host("http://[::1]:8/") })
    end)
end)

describe("vt.core.backend", function()
    local srv

    setup(function()
        srv = fake.start { analysis_steps = 2 }
    end)

    teardown(function()
        srv:stop()
    end)

    before_each(function()
        srv:reset()
    end)

    -- The API requests the fake received: "METHOD path?query".
    local function requests()
        return requests_log.lines(srv)
    end

    local function client(api, key)
        return vt.client { apikey = key or srv.key, base_url = srv.url, api = api, quota_state = false, retries = 0,
            retry_base = 0.01, max_wait = 1 }
    end

    it("speaks the client's protocol", function()
        assert.equal("v2", backend.new(client "v2").api)
        assert.equal("v3", backend.new(client "v3").api)
    end)

    it("fails, without raising, on objects that come without attributes", function()
        -- the core takes an object without attributes as well shaped; the layers must not index them
        local bare = { type = "analysis", id = "x" }
        local stub = {
            options = function() return { api = "v3", poll_interval = 1 } end,
            analysis = function() return bare end,
            comments = function()
                local done = false
                return function()
                    if not done then
                        done = true
                        return { type = "comment", id = "c" }
                    end
                end
            end,
        }
        local b = backend.new(stub)
        local v, err = b:analysis("file", "x")
        assert.is_nil(v)
        assert.equal("InvalidResponse", err.code)
        assert.same({ {} }, b:comments("file", HASH, 1))
    end)

    it("gives the same facts of one file over v3 and over v2", function()
        local three = assert(backend.new(client "v3"):lookup("file", HASH))
        local two = assert(backend.new(client "v2"):lookup("file", HASH))
        for _, key in ipairs { "kind", "id", "positives", "total", "date", "scan_id", "md5", "sha1", "sha256" } do
            assert.equal(three[key], two[key], key)
        end
        assert.same(detections(three), detections(two))
        assert.same({ "v3", "v2" }, { three.protocol, two.protocol })
    end)

    for _, api in ipairs { "v3", "v2" } do
        describe("over " .. api, function()
            it("looks up, reads the relationships asked for, and says NotFoundError for the unknown", function()
                local b = backend.new(client(api), { relationships = { ip = backend.NETWORK }, related_limit = 2 })
                local f = assert(b:lookup("ip", "1.1.1.1"))
                assert.same({ "ip", api, "AU" }, { f.kind, f.protocol, f.country })
                assert.is_table(f.samples.communicating_files)
                assert.is_table(f.resolutions)
                local log = requests()
                assert.equal(api == "v3" and 6 or 1, #log)
                if api == "v3" then
                    assert.matches("^GET /api/v3/ip_addresses/1%.1%.1%.1/resolutions%?.*limit=2", log[2])
                end
                local none, err = b:lookup("file", UNKNOWN)
                assert.is_nil(none)
                assert.equal("NotFoundError", err.code)
            end)

            it("prefetches many look-ups, which lookup then answers without a request", function()
                local b = backend.new(client(api), { concurrency = 4, v2_batch = 4 })
                local values = { HASH, CLEAN, BAD, UNKNOWN, HASH }
                b:prefetch("file", values)
                local sent = #requests()
                -- v3: the first alone, then the three others in one batch; v2: one request of four
                assert.equal(api == "v3" and 4 or 1, sent)
                for _, v in ipairs { HASH, CLEAN, BAD, UNKNOWN } do
                    assert.is_true(b:fetched("file", v))
                end
                assert.equal(53, b:lookup("file", BAD).positives)
                -- a value that came twice is answered twice
                assert.equal(7, b:lookup("file", HASH).positives)
                assert.is_true(b:fetched("file", HASH))
                assert.equal(7, b:lookup("file", HASH).positives)
                assert.is_false(b:fetched("file", HASH))
                local _, err = b:lookup("file", UNKNOWN)
                assert.equal("NotFoundError", err.code)
                assert.is_false(b:fetched("file", BAD)) -- taken once
                assert.equal(sent, #requests())
                if api == "v2" then
                    assert.matches("^GET /vtapi/v2/file/report%?.*resource=" .. HASH .. "%%2C" .. CLEAN .. "%%2C" .. BAD
                        .. "%%2C" .. UNKNOWN, requests()[1])
                end
            end)

            it("polls a submission to its report, never sleeping after the last try", function()
                local slept = {}
                local b = backend.new(client(api), { interval = 0.5, sleep = function(s) slept[#slept + 1] = s end })
                local url = "http://poll-" .. api .. ".example/VT-FAKE-MALICIOUS=3"
                local pending = assert(b:submit("url", url))
                assert.is_string(pending.analysis or pending.scan_id)
                assert.is_false(b:wait("url", pending, nil, 1))
                assert.same({}, slept)
                local before = #requests()
                local f = assert(b:wait("url", pending, nil, 5))
                assert.same({ "url", 3, url }, { f.kind, f.positives, f.url })
                local polls = #requests() - before
                assert.is_true(polls >= 1)
                assert.equal(polls - 1, #slept) -- a pause between two polls, none after the last
                assert.equal(api == "v3" and pending.analysis or pending.scan_id, f.scan_id)
            end)

            it("pings with one look-up; a wrong key fails", function()
                assert.is_true(backend.new(client(api)):ping("file", UNKNOWN))
                local ok, err = backend.new(client(api, "wrong-key")):ping("file", UNKNOWN)
                assert.is_nil(ok)
                assert.equal(api == "v3" and "WrongCredentialsError" or "ForbiddenError", err.code)
                assert.equal(2, #requests())
            end)
        end)
    end

    describe("over v3", function()
        it("makes a pending record of a scan id as a user gives it", function()
            local b = backend.new(client "v3")
            assert.same({ object = HASH }, b:pending("file", HASH .. "-1700000000"))
            assert.same({ object = HASH }, b:pending("file", HASH))
            assert.same({ object = "http://x.example/" }, b:pending("url", "http://x.example/"))
            assert.same({ analysis = "u-abc-1" }, b:pending("url", "u-abc-1"))
            assert.same({ 7, 0 }, { b:check("file", b:pending("file", HASH .. "-1")).positives, #requests() - 1 })
        end)

        it("refuses a URL analysis asked for as a file scan, and follows a finished one by a fresh look-up", function()
            local b = backend.new(client "v3")
            local pending = assert(b:submit("url", "http://kind.example/VT-FAKE-MALICIOUS=1"))
            local none, err = b:check("file", pending)
            assert.is_nil(none)
            assert.equal("InvalidArgument", err.code)
            assert.matches("report_type url", err.message, 1, true)
            local obj = assert(b:wait("url", pending, "http://kind.example/VT-FAKE-MALICIOUS=1", 5))
            assert.equal(obj.id .. "-" .. obj.date, obj.scan_id) -- the object's, not the analysis'
            assert.matches("^GET /api/v3/urls/", requests()[#requests()])
        end)

        it("reads a missing relationship as empty and names the one that failed", function()
            srv:fault { type = "status", status = 404, code = "NotFoundError",
                path = "/api/v3/ip_addresses/1.1.1.1/urls", count = 1 }
            srv:fault { type = "status", status = 500, path = "/api/v3/ip_addresses/1.1.1.1/resolutions", count = 1 }
            local b = backend.new(client "v3",
                { relationships = { ip = { "urls", "resolutions" } }, related_limit = 1 })
            local none, err = b:lookup("ip", "1.1.1.1")
            assert.is_nil(none)
            assert.matches("while reading the resolutions of 1.1.1.1", err.message, 1, true)
            local f = assert(b:lookup("ip", "1.1.1.1"))
            assert.equal(1, #f.urls)
            local list = assert(backend.related(client "v3", "ip", "1.1.1.1", "communicating_files", 2))
            assert.equal(2, #list)
        end)
    end)

    describe("over v2", function()
        it("groups look-ups v2_batch a request: files by commas, URLs by new lines, a last one alone", function()
            local b = backend.new(client "v2", { v2_batch = 2 })
            b:prefetch("file", { HASH, CLEAN, BAD })
            local log = requests()
            assert.equal(1, #log) -- HASH and CLEAN; BAD is left to lookup
            assert.is_false(b:fetched("file", BAD))
            assert.equal(0, b:lookup("file", CLEAN).positives)
            assert.equal(53, b:lookup("file", BAD).positives)
            assert.equal(2, #requests())
            srv:reset()
            local urls = { "http://github.com", "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1" }
            b:prefetch("url", urls)
            assert.matches("resource=http%%3A%%2F%%2Fgithub%.com%%0Ahttps", requests()[1])
            assert.equal(5, b:lookup("url", urls[2]).positives)
            assert.equal(1, #requests())
        end)

        it("stops grouping at a request that fails as a whole", function()
            local b = backend.new(client("v2", "wrong-key"), { v2_batch = 2 })
            b:prefetch("file", { HASH, CLEAN, BAD, UNKNOWN })
            assert.equal(1, #requests())
            local _, err = b:lookup("file", CLEAN)
            assert.equal(403, err.http)
            assert.is_false(b:fetched("file", BAD))
        end)

        it("follows a resource queued at VirusTotal by the resource itself", function()
            local c = client "v2"
            local url = "http://queued-core.example/VT-FAKE-MALICIOUS=2"
            assert(c:v2("url/scan", { url = url }))
            local b = backend.new(c, { interval = 0, sleep = function() end })
            local queued, pending = b:lookup("url", url)
            assert.is_false(queued)
            assert.same({ scan_id = url }, pending)
            assert.equal(2, assert(b:wait("url", pending, nil, 5)).positives)
            local none, err = b:comments("url", url, 1)
            assert.is_nil(none)
            assert.equal("Unsupported", err.code)
        end)
    end)
end)
