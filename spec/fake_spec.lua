-- Self-test of the fake VirusTotal server (spec/fake/) through its helper, with curl calls.
local fake = require "helpers.fake"
local cjson = require "cjson"

local KEY = "test-key"
local http = fake.http

local WIN32_SHA256 = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
local V2_FILE_SHA256 = "b35ef2d8a3ee0d29eecb83acf45c1f192ceca75ab10dec861166af2b7bda373b"
local EXAMPLE_URL_ID = "2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067"
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local EICAR = [[X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*]]

-- Children run without LD_PRELOAD: under the CI's AddressSanitizer stage a preloaded
-- libasan makes curl hang at start.
local function sh(cmd)
    local pipe = assert(io.popen("env -u LD_PRELOAD sh -c " .. ("'" .. cmd:gsub("'", "'\\''") .. "'")))
    local out = pipe:read("*a")
    pipe:close()
    return (out:gsub("%s+$", ""))
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local temps = {}
local function temp_file(data)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    temps[#temps + 1] = path
    return path
end

local function digest(tool, path)
    return sh(tool .. " " .. shell_quote(path)):match("^(%x+)")
end

local function url_id(url)
    return sh("printf %s " .. shell_quote(url) .. " | base64 -w0 | tr '+/' '-_' | tr -d '='")
end

local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("*a")
    f:close()
    return stat:match("%) (%a)") ~= "Z"
end

local function wait_until_dead(pid, seconds)
    for _ = 1, seconds * 10 do
        if not alive(pid) then return true end
        os.execute("sleep 0.1")
    end
    return false
end

local function decode(res)
    return cjson.decode(res.body)
end

-- The lines of a bzip2 feed batch (decompressed by python3, which the fake needs anyway);
-- nil and the error when it is no whole bzip2 stream.
local function feed_lines(data)
    local path = temp_file(data)
    local script = "import bz2, sys; sys.stdout.write(bz2.decompress(open(sys.argv[1], 'rb').read()).decode())"
    local out = sh("python3 -c " .. shell_quote(script) .. " " ..
                   shell_quote(path) .. " 2>&1; echo \" exit=$?\"")
    local text, status = out:match("^(.-) exit=(%d+)$")
    if status ~= "0" then return nil, text end
    local lines = {}
    for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
    return lines
end

describe("fake VirusTotal server", function()
    local srv

    -- v3 request with the test key unless opts.headers says otherwise
    local function v3(method, path, opts)
        opts = opts or {}
        opts.headers = opts.headers or {["x-apikey"] = KEY}
        return http(method, srv.url .. "/api/v3" .. path, opts)
    end

    local function v2(method, endpoint, params, opts)
        opts = opts or {}
        opts.urlencoded = params
        if method == "GET" then opts.args = {"-G"} end
        return http(method, srv.url .. "/vtapi/v2/" .. endpoint, opts)
    end

    local function upload(content, path)
        local res = v3("POST", path or "/files", {files = {file = temp_file(content)}})
        assert.equal(200, res.status, res.body)
        return decode(res).data
    end

    local function poll(analysis_id)
        local res = v3("GET", "/analyses/" .. analysis_id)
        assert.equal(200, res.status, res.body)
        return decode(res)
    end

    local function walk(url)
        local ids, pages = {}, 0
        while url do
            local body = decode(http("GET", url, {headers = {["x-apikey"] = KEY}}))
            pages = pages + 1
            for _, item in ipairs(body.data) do ids[#ids + 1] = item.id end
            url = body.links.next
            if url then
                assert.equal(1, url:find(srv.url .. "/api/v3/", 1, true))
                assert.truthy(url:find("cursor=" .. body.meta.cursor, 1, true))
            else
                assert.is_nil(body.meta)
            end
            assert.truthy(pages < 20, "the cursor walk does not end")
        end
        return ids, pages
    end

    local function distinct(list)
        local seen = {}
        for _, v in ipairs(list) do
            if seen[v] then return false end
            seen[v] = true
        end
        return true
    end

    setup(function()
        srv = fake.start{keys = {KEY, "second-key"}}
    end)

    teardown(function()
        srv:stop()
        for _, path in ipairs(temps) do os.remove(path) end
    end)

    before_each(function()
        srv:reset()
    end)

    describe("authentication", function()
        it("answers 401 AuthenticationRequiredError without a key", function()
            local res = v3("GET", "/files/" .. WIN32_SHA256, {headers = {}})
            assert.equal(401, res.status)
            assert.equal("application/json; charset=utf-8", res.headers["content-type"])
            assert.same({error = {code = "AuthenticationRequiredError",
                                  message = "X-Apikey header is missing"}}, decode(res))
        end)

        it("answers 401 WrongCredentialsError for an unknown key, without echoing it", function()
            local res = v3("GET", "/files/" .. WIN32_SHA256, {headers = {["x-apikey"] = "leaked-key-123"}})
            assert.equal(401, res.status)
            assert.same({error = {code = "WrongCredentialsError", message = "Wrong API key"}}, decode(res))
            assert.is_nil(res.body:find("leaked-key-123", 1, true))
        end)

        it("takes the header in any case and every --key", function()
            assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256, {headers = {["X-APIKEY"] = KEY}}).status)
            assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256,
                                 {headers = {["X-Apikey"] = "second-key"}}).status)
        end)
    end)

    describe("objects", function()
        it("serves every sample file by sha256, sha1 and md5, in any case", function()
            for _, sha256 in ipairs{WIN32_SHA256, V2_FILE_SHA256,
                                    "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
                                    "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
                                    "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b"} do
                local file = decode(v3("GET", "/files/" .. sha256)).data
                assert.equal("file", file.type)
                assert.equal(sha256, file.id)
                for _, alias in ipairs{file.attributes.md5:upper(), file.attributes.sha1} do
                    assert.equal(sha256, decode(v3("GET", "/files/" .. alias)).data.id)
                end
            end
        end)

        it("serves URLs by unpadded URL-safe base64 and by sha256", function()
            local by_b64 = decode(v3("GET", "/urls/" .. url_id("http://example.com/"))).data
            assert.equal(EXAMPLE_URL_ID, by_b64.id)
            assert.equal("http://example.com/", by_b64.attributes.url)
            assert.equal(EXAMPLE_URL_ID, decode(v3("GET", "/urls/" .. EXAMPLE_URL_ID)).data.id)
            local dropbox = "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1"
            local id = url_id(dropbox)
            assert.truthy(id:find("_", 1, true))
            assert.equal(dropbox, decode(v3("GET", "/urls/" .. id)).data.attributes.url)
        end)

        it("serves domains and IP addresses with links on its own origin", function()
            for _, name in ipairs{"github.com", "haiku-os.org", "virustotal.com"} do
                local domain = decode(v3("GET", "/domains/" .. name)).data
                assert.same({"domain", name}, {domain.type, domain.id})
                assert.equal(srv.url .. "/api/v3/domains/" .. name, domain.links.self)
            end
            local ip = decode(v3("GET", "/ip_addresses/8.8.8.8")).data
            assert.same({"ip_address", "8.8.8.8", 15169}, {ip.type, ip.id, ip.attributes.asn})
            assert.equal("1.1.1.1", decode(v3("GET", "/ip_addresses/1.1.1.1")).data.id)
        end)

        it("knows the empty file, as the service does", function()
            for _, hash in ipairs{EMPTY_SHA256, "d41d8cd98f00b204e9800998ecf8427e",
                                  "da39a3ee5e6b4b0d3255bfef95601890afd80709"} do
                local file = decode(v3("GET", "/files/" .. hash)).data
                assert.same({EMPTY_SHA256, 0, "Text", "empty", 0},
                            {file.id, file.attributes.size, file.attributes.type_description,
                             file.attributes.magic, file.attributes.last_analysis_stats.malicious})
                assert.equal("3::", file.attributes.ssdeep)
            end
        end)

        it("serves the sample analyses and their items", function()
            local id = "u-" .. EXAMPLE_URL_ID .. "-1569484202"
            local analysis = poll(id)
            assert.equal("completed", analysis.data.attributes.status)
            assert.equal("http://example.com/", analysis.meta.url_info.url)
            assert.equal(EXAMPLE_URL_ID, decode(v3("GET", "/analyses/" .. id .. "/item")).data.id)
        end)

        it("embeds relationships on request", function()
            local ip = decode(v3("GET", "/ip_addresses/1.1.1.1?relationships=resolutions,urls")).data
            assert.equal(10, #ip.relationships.resolutions.data)
            local first = ip.relationships.urls.data[1]
            assert.same({type = "url", id = first.id}, first)
            assert.truthy(ip.relationships.urls.meta.cursor)
            assert.equal(srv.url .. "/api/v3/ip_addresses/1.1.1.1/urls", ip.relationships.urls.links.related)
        end)
    end)

    describe("errors", function()
        it("answers 404 NotFoundError with the service's messages", function()
            local cases = {
                {"/files/" .. string.rep("0", 64), 'File "' .. string.rep("0", 64) .. '" not found'},
                {"/urls/thisurlidmakesnosenseatall", 'URL "thisurlidmakesnosenseatall" not found'},
                {"/domains/unknown.example.com", 'Domain "unknown.example.com" not found'},
                {"/domains/www.shop.example.co.uk", 'Domain "www.shop.example.co.uk" not found'},
                {"/ip_addresses/192.0.2.1", 'IP address "192.0.2.1" not found'},
                {"/analyses/nope", 'Analysis "nope" not found'},
            }
            for _, case in ipairs(cases) do
                local res = v3("GET", case[1])
                assert.equal(404, res.status)
                assert.same({error = {code = "NotFoundError", message = case[2]}}, decode(res))
            end
        end)

        it("answers 400 InvalidArgumentError for bad domains, IPs, relationships and cursors", function()
            local res = v3("GET", "/domains/not_a..domain")
            assert.equal(400, res.status)
            assert.same({error = {code = "InvalidArgumentError",
                                  message = 'Domain "not_a..domain" is not a valid domain pattern'}},
                        decode(res))
            -- as recorded: a name whose suffix the Public Suffix List has no rule for ("za" alone)
            for _, name in ipairs{"xpressco.za", "unknown.example", "1.2.3.4", "localhost", "-a.com"} do
                local bad = v3("GET", "/domains/" .. name)
                assert.same({400, 'Domain "' .. name .. '" is not a valid domain pattern'},
                            {bad.status, decode(bad).error.message})
            end
            for _, path in ipairs{"/ip_addresses/300.1.1.1", "/domains/github.com/no_such_relation",
                                  "/domains/github.com/urls?cursor=garbage", "/domains/github.com/urls?limit=x"} do
                local r = v3("GET", path)
                assert.equal(400, r.status, path)
                assert.equal("InvalidArgumentError", decode(r).error.code)
            end
        end)
    end)

    describe("collections", function()
        it("walks every synthesized relationship page by page with absolute next links", function()
            for _, case in ipairs{{"ip_addresses/8.8.8.8", "communicating_files"},
                                  {"ip_addresses/8.8.8.8", "downloaded_files"},
                                  {"ip_addresses/8.8.8.8", "referrer_files"},
                                  {"ip_addresses/8.8.8.8", "urls"},
                                  {"ip_addresses/8.8.8.8", "resolutions"},
                                  {"domains/virustotal.com", "resolutions"},
                                  {"domains/haiku-os.org", "subdomains"},
                                  {"domains/virustotal.com", "communicating_files"}} do
                local ids, pages = walk(srv.url .. "/api/v3/" .. case[1] .. "/" .. case[2])
                assert.equal(23, #ids, case[2])
                assert.equal(3, pages)
                assert.truthy(distinct(ids))
            end
        end)

        it("serves the recorded relationships of 1.1.1.1 and github.com, in recorded order", function()
            -- the v3 recording of 1.1.1.1's first communicating files, then its v2 report's lists
            local files = decode(v3("GET", "/ip_addresses/1.1.1.1/communicating_files?limit=3")).data
            assert.same({"1471f53e5391f8a06171ffe21dec0d6d27b0201e28e66455030609b7a7ba955e",
                         "fedfc48d750b959d11004f56ba49815a011295824e02684aada549505378468a",
                         "0460bbba784d736f17bd891e71a35060369ce6d48d372aab960681f37c7fb0cd"},
                        {files[1].id, files[2].id, files[3].id})    -- then v2's detected and undetected in turn
            local stats = files[3].attributes.last_analysis_stats
            assert.same({0, 30, 72}, {files[1].attributes.last_analysis_stats.malicious, stats.malicious,
                                      stats.malicious + stats.undetected})
            assert.equal("a31943dfdd7ee276fb1cc4840aefdaced177cb353ce3225faf424c27fbeef548",
                         decode(v3("GET", "/ip_addresses/1.1.1.1/communicating_files?limit=4")).data[4].id)
            local referrers = decode(v3("GET", "/ip_addresses/1.1.1.1/referrer_files?limit=2")).data
            assert.same({1, 21}, {referrers[1].attributes.last_analysis_stats.malicious,
                                  referrers[2].attributes.last_analysis_stats.malicious})
            local resolutions = decode(v3("GET", "/ip_addresses/1.1.1.1/resolutions?limit=1")).data
            assert.same({"/netflixcustomers-001-site1.dtempurl.com", "1.1.1.1"}, {
                decode(v3("GET", "/ip_addresses/1.1.1.1/resolutions?limit=2")).data[2].attributes.host_name,
                resolutions[1].attributes.ip_address})
            local ids = walk(srv.url .. "/api/v3/ip_addresses/1.1.1.1/downloaded_files?limit=40")
            assert.equal(40, #ids)      -- 1 detected + 39 undetected samples in the v2 report
            -- github.com: the recorded v3 page of resolutions first, then the v2 report's (those not
            -- on the page already)
            local page = decode(v3("GET", "/domains/github.com/resolutions?limit=40")).data
            assert.equal("NSFOCUS POMA", page[10].attributes.resolver)
            assert.same({"13.250.177.223", "VirusTotal"}, {page[11].attributes.ip_address,
                                                          page[11].attributes.resolver})
            local sub = decode(v3("GET", "/domains/github.com/subdomains?limit=1")).data[1]
            assert.same({"domain", "codeload.github.com"}, {sub.type, sub.id})
            local url = decode(v3("GET", "/domains/github.com/urls?limit=1")).data[1]
            assert.same({"https://github.com/ytisf/theZoo/blob/master/malwares/Binaries/Artemis/Artemis.zip", 1},
                        {url.attributes.url, url.attributes.last_analysis_stats.malicious})
            assert.equal(url.id, decode(v3("GET", "/urls/" .. url.id)).data.id)
        end)

        it("keeps the synthesized related objects of resolvers and big sites clean", function()
            for _, case in ipairs{{"ip_addresses/8.8.8.8", "communicating_files"},
                                  {"ip_addresses/8.8.8.8", "urls"},
                                  {"urls/" .. url_id("http://www.google.com/"), "downloaded_files"},
                                  {"urls/" .. EXAMPLE_URL_ID, "contacted_domains"}} do
                local page = decode(v3("GET", "/" .. case[1] .. "/" .. case[2] .. "?limit=40")).data
                assert.equal(#page > 10, true)
                for _, obj in ipairs(page) do
                    assert.equal(0, obj.attributes.last_analysis_stats.malicious, case[1] .. " " .. obj.id)
                end
            end
            -- others: item i (0-based) has i detections when i is even, 0 when odd
            local files = decode(v3("GET", "/domains/virustotal.com/downloaded_files?limit=40")).data
            for i, file in ipairs(files) do
                assert.equal((i - 1) % 2 == 0 and i - 1 or 0, file.attributes.last_analysis_stats.malicious)
            end
            assert.equal(files[3].id, decode(v3("GET", "/files/" .. files[3].attributes.md5)).data.id)
            local contacted = decode(v3("GET", "/files/" .. WIN32_SHA256 .. "/contacted_domains?limit=3")).data
            assert.same({"domain", 2}, {contacted[3].type, contacted[3].attributes.last_analysis_stats.malicious})
            assert.truthy(contacted[3].id:find("%.example%.net$"))
            assert.equal(200, v3("GET", "/domains/" .. contacted[3].id).status)
        end)

        it("serves descriptors only under /relationships/", function()
            local body = decode(v3("GET", "/ip_addresses/8.8.8.8/relationships/urls?limit=40"))
            assert.equal(23, #body.data)
            assert.same({type = "url", id = body.data[1].id}, body.data[1])
        end)

        it("caps limit at 40 and keeps the query in next links", function()
            local body = decode(v3("GET", "/intelligence/search?query=entity:ip&limit=100"))
            assert.equal(40, #body.data)
            assert.truthy(body.links.next:find("query=entity%3Aip", 1, true))
            local ids = walk(srv.url .. "/api/v3/intelligence/search?query=entity%3Aip&limit=40")
            assert.truthy(#ids > 40)
            assert.truthy(distinct(ids))
        end)

        it("pages comments", function()
            local ids, pages = walk(srv.url .. "/api/v3/files/" .. WIN32_SHA256 .. "/comments")
            assert.same({12, 2}, {#ids, pages})
            assert.equal("f-" .. WIN32_SHA256 .. "-", ids[1]:sub(1, 67))
        end)

        it("pages the votes a sample's total_votes counts", function()
            local ids = walk(srv.url .. "/api/v3/ip_addresses/8.8.8.8/votes?limit=40")
            assert.equal(24, #ids)      -- total_votes: 21 harmless, 3 malicious
            local last = decode(v3("GET", "/ip_addresses/8.8.8.8/votes?limit=40")).data[22]
            assert.same({"vote", "malicious", -1}, {last.type, last.attributes.verdict, last.attributes.value})
            assert.equal(0, #decode(v3("GET", "/domains/haiku-os.org/votes")).data)
        end)

        it("searches by hash, by name and requires a query", function()
            local body = decode(v3("GET", "/search?query=" .. WIN32_SHA256))
            assert.same({1, WIN32_SHA256}, {#body.data, body.data[1].id})
            assert.same({}, decode(v3("GET", "/search?query=" .. string.rep("a", 64))).data)
            local named = decode(v3("GET", "/intelligence/search?query=pe32_dotnet")).data
            assert.same({1, WIN32_SHA256}, {#named, named[1].id})
            assert.equal(400, v3("GET", "/search").status)
        end)

        it("reports quotas for 'me' or a user id, counting requests", function()
            v3("GET", "/files/" .. WIN32_SHA256)
            v3("GET", "/metadata")
            for _, user in ipairs{"me", "some-user"} do
                local data = decode(v3("GET", "/users/" .. user .. "/overall_quotas")).data
                assert.same({used = 2, allowed = 500}, data.api_requests_daily.user)
                assert.same({used = 2, allowed = 240}, data.api_requests_hourly.user)
                assert.same({used = 2, allowed = 15500}, data.api_requests_monthly.user)
            end
        end)

        it("lists engines and relationships in /metadata", function()
            local data = decode(v3("GET", "/metadata")).data
            local engines = 0
            for _ in pairs(data.engines) do engines = engines + 1 end
            assert.truthy(engines >= 70)
            assert.truthy(#data.relationships.domain >= 6)
        end)
    end)

    describe("file submissions", function()
        it("moves an upload through queued, in-progress, completed, then the file exists", function()
            local content = "sample VT-FAKE-MALICIOUS=7 body"
            local path = temp_file(content)
            local md5, sha256 = digest("md5sum", path), digest("sha256sum", path)
            local descriptor = upload(content)
            assert.equal("analysis", descriptor.type)
            assert.equal(srv.url .. "/api/v3/analyses/" .. descriptor.id, descriptor.links.self)
            local decoded = sh("printf %s " .. shell_quote(descriptor.id) .. " | base64 -d")
            assert.truthy(decoded:match("^" .. md5 .. ":%d+$"))
            assert.equal(404, v3("GET", "/files/" .. sha256).status)

            local queued = poll(descriptor.id)
            assert.equal("queued", queued.data.attributes.status)
            assert.same({}, queued.data.attributes.results)
            assert.equal(0, queued.data.attributes.stats.malicious + queued.data.attributes.stats.undetected)
            assert.same({size = #content, sha256 = sha256, sha1 = digest("sha1sum", path), md5 = md5},
                        queued.meta.file_info)
            local running = poll(descriptor.id)
            assert.equal("in-progress", running.data.attributes.status)
            assert.equal(404, v3("GET", "/files/" .. sha256).status)
            local done = poll(descriptor.id)
            assert.equal("completed", done.data.attributes.status)
            assert.equal(7, done.data.attributes.stats.malicious)
            assert.equal(76, done.data.attributes.stats.malicious + done.data.attributes.stats.undetected)

            local file = decode(v3("GET", "/files/" .. sha256)).data
            assert.equal(7, file.attributes.last_analysis_stats.malicious)
            assert.equal("malicious", file.attributes.last_analysis_results.Bkav.category)
            assert.equal(sha256, decode(v3("GET", "/analyses/" .. descriptor.id .. "/item")).data.id)
        end)

        it("gives EICAR 60 detections and plain content none", function()
            srv:analysis_steps(0)
            local eicar = poll(upload(EICAR).id).data.attributes
            assert.same({"completed", 60}, {eicar.status, eicar.stats.malicious})
            local clean = poll(upload("nothing to see").id).data.attributes
            assert.same({"completed", 0}, {clean.status, clean.stats.malicious})
        end)

        it("gives created files ssdeep, TLSH, vhash and TrID, derived from their content", function()
            srv:analysis_steps(0)
            local content = "MZ" .. string.rep("x", 100)
            upload(content)
            local attrs = decode(v3("GET", "/files/" .. digest("sha256sum", temp_file(content)))).data.attributes
            assert.truthy(attrs.ssdeep:match("^3:[%w+/]+:[%w+/]+$"))
            assert.truthy(attrs.tlsh:match("^T1%x+$"))
            assert.truthy(attrs.vhash:match("^%d+5z%d+$"))
            assert.same({"Win32 Executable (generic)", "Win32 EXE", "peexe"},
                        {attrs.trid[1].file_type, attrs.type_description, attrs.type_tag})
            srv:reset()
            srv:analysis_steps(0)
            upload(content)
            local again = decode(v3("GET", "/files/" .. digest("sha256sum", temp_file(content)))).data.attributes
            assert.same({attrs.ssdeep, attrs.tlsh, attrs.vhash}, {again.ssdeep, again.tlsh, again.vhash})
            local text = srv:register_file("plain words")
            local plain = decode(v3("GET", "/files/" .. text.sha256)).data.attributes
            assert.same({"TNULL", "Text", nil}, {plain.tlsh, plain.type_description, plain.vhash})
        end)

        it("completes at once with analysis_steps(0)", function()
            srv:analysis_steps(0)
            local path = temp_file("instant VT-FAKE-MALICIOUS=3")
            upload("instant VT-FAKE-MALICIOUS=3")
            local file = decode(v3("GET", "/files/" .. digest("sha256sum", path))).data
            assert.equal(3, file.attributes.last_analysis_stats.malicious)
        end)

        it("hands out one-shot upload URLs on its own origin", function()
            local upload_url = decode(v3("GET", "/files/upload_url")).data
            assert.truthy(upload_url:match("^" .. srv.url:gsub("%p", "%%%0") .. "/_ah/upload/[%w_-]+/$"))
            local first = http("POST", upload_url, {files = {file = temp_file("big one")}})
            assert.equal(200, first.status)
            assert.equal("analysis", decode(first).data.type)
            local second = http("POST", upload_url, {files = {file = temp_file("big one")}})
            assert.equal(404, second.status)
            assert.equal("NotFoundError", decode(second).error.code)
        end)

        it("refuses direct uploads over 32 MB with a JSON 413", function()
            local path = os.tmpname()
            temps[#temps + 1] = path
            os.execute("head -c " .. (32 * 1024 * 1024 + 1) .. " /dev/zero > " .. path)
            local res = v3("POST", "/files", {files = {file = path}})
            assert.equal(413, res.status)
            assert.equal("application/json; charset=utf-8", res.headers["content-type"])
            assert.equal("RequestEntityTooLargeError", decode(res).error.code)
            local exact = os.tmpname()
            temps[#temps + 1] = exact
            os.execute("head -c " .. (30 * 1024 * 1024) .. " /dev/zero > " .. exact)
            assert.equal(200, v3("POST", "/files", {files = {file = exact}}).status)
        end)

        it("accepts chunked uploads and hashes exactly the part's bytes", function()
            local content = "line one\r\n--XY almost a boundary\r\n--"
            local res = v3("POST", "/files", {files = {file = temp_file(content)},
                headers = {["x-apikey"] = KEY, ["Transfer-Encoding"] = "chunked"}})
            assert.equal(200, res.status, res.body)
            local info = poll(decode(res).data.id).meta.file_info
            assert.equal(digest("sha256sum", temp_file(content)), info.sha256)
            assert.equal(#content, info.size)
        end)

        it("parses multipart bodies whose markers straddle two reads", function()
            -- The fake reads bodies 1 MiB at a time and the multipart parser holds back the last
            -- 6 bytes of each read (the separator "\r\n--XYZ" is 7): the marker's digits cross the
            -- first edge, the closing separator starts 6 bytes before the end of the second read.
            local MiB = 1024 * 1024
            local head = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.bin\"\r\n\r\n"
            local marker = "VT-FAKE-MALICIOUS=1"
            local before = string.rep("a", MiB - 6 - #head - #marker)
            local content = before .. marker .. "2" .. string.rep("b", 2 * MiB - 6 - #head - #before - #marker - 1)
            assert.equal(2 * MiB - 6, #head + #content)
            srv:analysis_steps(0)
            local res = v3("POST", "/files", {data = head .. content .. "\r\n--XYZ--\r\n",
                headers = {["x-apikey"] = KEY, ["Content-Type"] = "multipart/form-data; boundary=XYZ"}})
            assert.equal(200, res.status, res.body)
            local analysis = poll(decode(res).data.id)
            assert.equal(digest("sha256sum", temp_file(content)), analysis.meta.file_info.sha256)
            assert.equal(12, analysis.data.attributes.stats.malicious)
        end)

        it("refuses filename* parameters like the service's upload handler", function()
            local body = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''a.txt\r\n" ..
                         "\r\nhello\r\n--XYZ--\r\n"
            local res = v3("POST", "/files", {data = body, headers = {["x-apikey"] = KEY,
                ["Content-Type"] = "multipart/form-data; boundary=XYZ"}})
            assert.equal(400, res.status)
            assert.equal("BadRequestError", decode(res).error.code)
        end)

        it("re-analyses known objects and 404s unknown ones", function()
            for _, path in ipairs{"/files/" .. WIN32_SHA256, "/urls/" .. EXAMPLE_URL_ID,
                                  "/domains/github.com", "/ip_addresses/8.8.8.8"} do
                local res = v3("POST", path .. "/analyse")
                assert.equal(200, res.status, path)
                assert.equal("analysis", decode(res).data.type)
            end
            assert.equal(404, v3("POST", "/files/" .. string.rep("1", 64) .. "/analyse").status)
        end)
    end)

    describe("URL submissions", function()
        it("accepts urlencoded and multipart forms; ids are u-<sha256>-<epoch>", function()
            local url = "http://fresh.example/path?VT-FAKE-MALICIOUS=4"
            local id = sh("printf %s " .. shell_quote(url) .. " | sha256sum"):match("^%x+")
            local a = decode(v3("POST", "/urls", {urlencoded = {url = url}})).data
            local b = decode(v3("POST", "/urls", {form = {url = url}})).data
            for _, descriptor in ipairs{a, b} do
                assert.truthy(descriptor.id:match("^u%-" .. id .. "%-%d+$"))
            end
            assert.are_not.equal(a.id, b.id)
            srv:analysis_steps(0)
            local c = decode(v3("POST", "/urls", {urlencoded = {url = url}})).data
            local analysis = poll(c.id)
            assert.same({id = id, url = url}, analysis.meta.url_info)
            assert.equal(4, analysis.data.attributes.stats.malicious)
            assert.equal(id, decode(v3("GET", "/urls/" .. url_id(url))).data.id)
        end)

        it("records what the crawler fetched: last_http_response_* and the analysis' file_info", function()
            srv:analysis_steps(0)
            local url = "http://crawled.example.net/page"
            local analysis = poll(decode(v3("POST", "/urls", {urlencoded = {url = url}})).data.id)
            local attrs = decode(v3("GET", "/urls/" .. url_id(url))).data.attributes
            assert.equal(200, attrs.last_http_response_code)
            assert.equal(attrs.last_http_response_content_sha256, analysis.meta.file_info.sha256)
            assert.equal(("%d"):format(attrs.last_http_response_content_length),
                         attrs.last_http_response_headers["content-length"])
            assert.same({}, attrs.last_http_response_cookies)
            local again = poll(decode(v3("POST", "/urls/" .. url_id(url) .. "/analyse")).data.id)
            assert.same(analysis.meta, again.meta)
        end)

        it("refuses a missing or unusable url", function()
            assert.equal(400, v3("POST", "/urls", {urlencoded = {other = "x"}}).status)
            assert.equal("InvalidArgumentError",
                         decode(v3("POST", "/urls", {urlencoded = {url = "http://"}})).error.code)
        end)
    end)

    describe("comments and votes", function()
        local function post(path, body)
            return v3("POST", path, {data = type(body) == "string" and body or cjson.encode(body),
                headers = {["x-apikey"] = KEY, ["Content-Type"] = "application/json"}})
        end

        it("creates comments that come first in the object's comments", function()
            for _, path in ipairs{"/files/" .. WIN32_SHA256, "/urls/" .. url_id("http://example.com/"),
                                  "/domains/haiku-os.org", "/ip_addresses/8.8.8.8", "/files/" .. EMPTY_SHA256} do
                local res = post(path .. "/comments",
                                 {data = {type = "comment", attributes = {text = "Seen in <b>#Phishing</b> & #c2."}}})
                assert.equal(200, res.status, res.body)
                local comment = decode(res).data
                assert.equal("comment", comment.type)
                assert.truthy(comment.id:match("^%l%-.+%-%x%x%x%x%x%x%x%x$"))
                assert.equal(srv.url .. "/api/v3/comments/" .. comment.id, comment.links.self)
                assert.same({"Seen in <b>#Phishing</b> & #c2.", "Seen in &lt;b&gt;#Phishing&lt;/b&gt; &amp; #c2.",
                             {"c2", "phishing"}, {positive = 0, negative = 0, abuse = 0}},
                            {comment.attributes.text, comment.attributes.html, comment.attributes.tags,
                             comment.attributes.votes})
                assert.equal("number", type(comment.attributes.date))
                assert.equal(comment.id, decode(v3("GET", path .. "/comments?limit=1")).data[1].id)
            end
            local ids = walk(srv.url .. "/api/v3/files/" .. WIN32_SHA256 .. "/comments")
            assert.equal(13, #ids)
        end)

        it("casts votes, lists them first and counts them in total_votes", function()
            local before = decode(v3("GET", "/domains/github.com")).data.attributes.total_votes
            local res = post("/domains/github.com/votes", {data = {type = "vote", attributes = {verdict = "malicious"}}})
            assert.equal(200, res.status, res.body)
            local vote = decode(res).data
            assert.same({"vote", "malicious", -1}, {vote.type, vote.attributes.verdict, vote.attributes.value})
            assert.equal(srv.url .. "/api/v3/votes/" .. vote.id, vote.links.self)
            local harmless = decode(post("/domains/github.com/votes",
                                         {data = {type = "vote", attributes = {verdict = "harmless"}}})).data
            assert.equal(1, harmless.attributes.value)
            local listed = decode(v3("GET", "/domains/github.com/votes?limit=40")).data
            assert.same({harmless.id, vote.id}, {listed[1].id, listed[2].id})
            assert.equal(before.harmless + before.malicious + 2, #listed)
            local after = decode(v3("GET", "/domains/github.com")).data.attributes.total_votes
            assert.same({before.harmless + 1, before.malicious + 1}, {after.harmless, after.malicious})
        end)

        it("refuses bad bodies with the service's 400s and unknown objects with 404", function()
            local comments = "/files/" .. WIN32_SHA256 .. "/comments"
            for _, body in ipairs{"not json", "[]", {data = "x"}, {data = {type = "vote", attributes = {text = "a"}}},
                                  {data = {type = "comment"}}, {data = {type = "comment", attributes = {text = ""}}},
                                  {data = {type = "comment", attributes = {text = 5}}}} do
                local res = post(comments, body)
                assert.same({400, "BadRequestError"}, {res.status, decode(res).error.code})
            end
            local votes = "/ip_addresses/8.8.8.8/votes"
            local res = post(votes, {data = {type = "vote", attributes = {verdict = "suspicious"}}})
            assert.same({400, "InvalidArgumentError"}, {res.status, decode(res).error.code})
            assert.same({400, "BadRequestError"}, (function(r) return {r.status, decode(r).error.code} end)(
                post(votes, {data = {type = "comment", attributes = {verdict = "harmless"}}})))
            assert.equal(404, post("/files/" .. string.rep("0", 64) .. "/comments",
                                   {data = {type = "comment", attributes = {text = "x"}}}).status)
            assert.equal(400, post("/domains/xpressco.za/votes",
                                   {data = {type = "vote", attributes = {verdict = "harmless"}}}).status)
            assert.equal(12, #walk(srv.url .. "/api/v3" .. comments))
        end)
    end)

    describe("downloads and the storage host", function()
        it("redirects to the storage host, which serves the bytes and logs headers", function()
            local content = "downloadable \0 bytes"
            local info = srv:register_file(content, "dl.bin")
            local res = v3("GET", "/files/" .. info.sha256 .. "/download")
            assert.equal(302, res.status)
            local location = res.headers.location
            assert.equal(1, location:find(srv.storage_url .. "/" .. info.sha256 .. "?sig=", 1, true))
            assert.truthy(srv.storage_url:find("^http://127%.0%.0%.2:"))
            assert.equal(location, decode(v3("GET", "/files/" .. info.md5 .. "/download_url")).data)

            local blob = http("GET", location, {headers = {["X-Probe"] = "seen"}})
            assert.same({200, content, "application/octet-stream"},
                        {blob.status, blob.body, blob.headers["content-type"]})
            local entries = srv:log{listener = "storage"}
            assert.equal(1, #entries)
            assert.same({"seen", cjson.null}, {entries[1].headers["x-probe"], entries[1].key})
            assert.is_nil(entries[1].headers["x-apikey"])
        end)

        it("records a key that reaches the storage host", function()
            local info = srv:register_file("secret-check")
            http("GET", info.download_url, {headers = {["x-apikey"] = KEY}})
            assert.equal(KEY, srv:log{listener = "storage"}[1].key)
        end)

        it("refuses bad signatures and unknown contents", function()
            local info = srv:register_file("signed")
            assert.equal(403, http("GET", srv.storage_url .. "/" .. info.sha256 .. "?sig=bad").status)
            assert.equal(404, v3("GET", "/files/" .. WIN32_SHA256 .. "/download").status)
        end)

        it("serves different bytes of the same length when tampered", function()
            local info = srv:register_file("original content")
            srv:fault{type = "tamper"}
            local tampered = http("GET", info.download_url)
            assert.equal(#"original content", #tampered.body)
            assert.are_not.equal("original content", tampered.body)
            assert.equal("original content", http("GET", info.download_url).body)
        end)
    end)

    describe("v2", function()
        it("serves the sample report, echoing the resource", function()
            local report = decode(v2("GET", "file/report", {apikey = KEY, resource = V2_FILE_SHA256:upper()}))
            assert.same({1, 0, 56, V2_FILE_SHA256:upper()},
                        {report.response_code, report.positives, report.total, report.resource})
            local res = v2("POST", "file/report", {apikey = KEY, resource = V2_FILE_SHA256})
            assert.equal("application/json", res.headers["content-type"])
            assert.equal("Scan finished, information embedded", decode(res).verbose_msg)
        end)

        it("maps v3 objects to v2 reports and answers batches in order", function()
            local missing = string.rep("f", 64)
            local reports = decode(v2("GET", "file/report", {apikey = KEY,
                resource = WIN32_SHA256 .. "," .. missing .. ", " .. V2_FILE_SHA256}))
            assert.equal(3, #reports)
            assert.same({1, 0, 1}, {reports[1].response_code, reports[2].response_code, reports[3].response_code})
            assert.same({7, "2023-12-18"}, {reports[1].positives, reports[1].scan_date:sub(1, 10)})
            assert.equal(true, reports[1].scans.Bkav.detected)
            assert.equal("The requested resource is not among the finished, queued or pending scans",
                         reports[2].verbose_msg)
        end)

        it("takes 4 resources a request on a public key, 25 on a premium one, as one request", function()
            local hashes = {WIN32_SHA256, V2_FILE_SHA256, string.rep("f", 64), string.rep("e", 32),
                            EMPTY_SHA256, "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740"}
            srv:quota{key = KEY, per_minute = 1}
            local four = decode(v2("POST", "file/report", {apikey = KEY, resource = table.concat(hashes, ",", 1, 4)}))
            assert.same({4, 1, 1, 0, 0}, {#four, four[1].response_code, four[2].response_code,
                                          four[3].response_code, four[4].response_code})
            assert.same({hashes[1], hashes[4]}, {four[1].resource, four[4].resource})
            assert.equal(204, v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256}).status)
            srv:quota{key = KEY}
            local five = v2("POST", "file/report", {apikey = KEY, resource = table.concat(hashes, ",", 1, 5)})
            assert.same({403, ""}, {five.status, five.body})
            local urls = {"http://github.com/", "http://example.com/", "http://a.example.net/", "http://b.example.net/",
                          "http://c.example.net/"}
            local url_reports = decode(v2("POST", "url/report", {apikey = KEY, resource = table.concat(urls, "\n", 1, 4)}))
            assert.same({1, 1, 0, 0}, {url_reports[1].response_code, url_reports[2].response_code,
                                       url_reports[3].response_code, url_reports[4].response_code})
            for _, endpoint in ipairs{"url/report", "url/scan"} do
                local field = endpoint == "url/scan" and "url" or "resource"
                assert.equal(403, v2("POST", endpoint, {apikey = KEY, [field] = table.concat(urls, "\n")}).status)
            end
            assert.equal(403, v2("POST", "file/rescan", {apikey = KEY, resource = table.concat(hashes, ",", 1, 5)}).status)

            local many = {}
            for i = 1, 26 do many[i] = ("%064x"):format(i) end
            srv:set_key("premium-key", true)
            local premium = decode(v2("POST", "file/report",
                {apikey = "premium-key", resource = table.concat(many, ",", 1, 25)}))
            assert.same({25, many[25]}, {#premium, premium[25].resource})
            assert.equal(403, v2("POST", "file/report", {apikey = "premium-key", resource = table.concat(many, ",")}).status)
            srv:set_key("premium-key", false)
            assert.equal(403, v2("POST", "file/report",
                {apikey = "premium-key", resource = table.concat(many, ",", 1, 5)}).status)
            srv:reset()
            assert.equal(403, v2("POST", "file/report", {apikey = "premium-key", resource = WIN32_SHA256}).status)
            local started = fake.start{premium_keys = {"paid"}}
            local res = http("POST", started.url .. "/vtapi/v2/file/report",
                             {urlencoded = {apikey = "paid", resource = table.concat(many, ",", 1, 25)}})
            started:stop()
            assert.equal(25, #decode(res))
        end)

        it("answers 403 without a valid key, in query or form", function()
            assert.equal(403, v2("GET", "file/report", {resource = WIN32_SHA256}).status)
            assert.equal(403, v2("GET", "file/report", {apikey = "bad", resource = WIN32_SHA256}).status)
            assert.equal(200, http("POST", srv.url .. "/vtapi/v2/file/report?apikey=" .. KEY,
                                   {urlencoded = {resource = WIN32_SHA256}}).status)
        end)

        it("queues file/scan and reports -2 until the analysis completes", function()
            local res = http("POST", srv.url .. "/vtapi/v2/file/scan",
                             {form = {apikey = KEY}, files = {file = temp_file("v2 VT-FAKE-MALICIOUS=9")}})
            local scan = decode(res)
            assert.equal(1, scan.response_code)
            assert.truthy(scan.scan_id:match("^" .. scan.sha256 .. "%-%d+$"))
            local codes = {}
            for i = 1, 3 do
                codes[i] = decode(v2("GET", "file/report", {apikey = KEY, resource = scan.scan_id})).response_code
            end
            assert.same({-2, -2, 1}, codes)
            local report = decode(v2("GET", "file/report", {apikey = KEY, resource = scan.md5}))
            assert.same({1, 9}, {report.response_code, report.positives})
        end)

        it("rescans and redirects downloads to the storage host", function()
            local rescan = decode(v2("POST", "file/rescan", {apikey = KEY, resource = WIN32_SHA256}))
            assert.truthy(rescan.scan_id:match("^" .. WIN32_SHA256 .. "%-%d+$"))
            local info = srv:register_file("v2 download")
            local res = v2("GET", "file/download", {apikey = KEY, hash = info.sha256})
            assert.equal(302, res.status)
            assert.equal(1, res.headers.location:find(srv.storage_url, 1, true))
            assert.equal(404, v2("GET", "file/download", {apikey = KEY, hash = WIN32_SHA256}).status)
        end)

        it("reports URLs, submits unknown ones with scan=1 and url/scan", function()
            local sample = decode(v2("POST", "url/report", {apikey = KEY, resource = "http://github.com"}))
            assert.same({1, 66, "http://github.com"}, {sample.response_code, sample.total, sample.resource})
            local unknown = decode(v2("POST", "url/report", {apikey = KEY, resource = "http://nope.example/"}))
            assert.same({0, "Resource does not exist in the dataset"}, {unknown.response_code, unknown.verbose_msg})
            local submitted = decode(v2("POST", "url/report",
                                        {apikey = KEY, resource = "http://nope.example/", scan = "1"}))
            assert.equal(1, submitted.response_code)
            assert.is_nil(submitted.positives)
            assert.equal(-2, decode(v2("POST", "url/report",
                                       {apikey = KEY, resource = submitted.scan_id})).response_code)
            local scanned = decode(v2("POST", "url/scan", {apikey = KEY, url = "http://other.example/"}))
            assert.equal("Scan request successfully queued, come back later for the report", scanned.verbose_msg)
        end)

        it("reports domains and IPs from samples or from v3 objects", function()
            local github = decode(v2("GET", "domain/report", {apikey = KEY, domain = "github.com"}))
            assert.same({1, "computersandsoftware"}, {github.response_code, github["BitDefender category"]})
            local built = decode(v2("GET", "domain/report", {apikey = KEY, domain = "virustotal.com"}))
            assert.same({1, 23, 23}, {built.response_code, #built.resolutions, #built.subdomains})
            assert.equal(11, #built.detected_downloaded_samples)
            assert.same({0, "Domain not found"}, (function(r) return {r.response_code, r.verbose_msg} end)(
                decode(v2("GET", "domain/report", {apikey = KEY, domain = "unknown.example"}))))
            assert.equal(-1, decode(v2("GET", "domain/report", {apikey = KEY, domain = "bad..name"})).response_code)
            local ip = decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "1.1.1.1"}))
            assert.same({1, 13335}, {ip.response_code, ip.asn})
            local google = decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "8.8.8.8"}))
            assert.same({1, "Google LLC", 23}, {google.response_code, google.as_owner, #google.resolutions})
            assert.equal(0, decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "192.0.2.7"})).response_code)
        end)
    end)

    describe("quotas", function()
        it("answers 429 QuotaExceededError past the per-minute quota, per key", function()
            srv:quota{key = KEY, per_minute = 2}
            assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256).status)
            srv:log()       -- control calls do not count
            srv:faults()
            assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256).status)
            local res = v3("GET", "/files/" .. WIN32_SHA256)
            assert.equal(429, res.status)
            assert.same({error = {code = "QuotaExceededError", message = "Quota exceeded"}}, decode(res))
            assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256,
                                 {headers = {["x-apikey"] = "second-key"}}).status)
            assert.equal(204, v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256}).status)
        end)

        it("answers v2 over quota with an empty 204", function()
            srv:quota{key = KEY, per_day = 1}
            assert.equal(200, v2("GET", "domain/report", {apikey = KEY, domain = "github.com"}).status)
            local res = v2("GET", "domain/report", {apikey = KEY, domain = "github.com"})
            assert.same({204, ""}, {res.status, res.body})
            assert.equal(429, v3("GET", "/domains/github.com").status)
        end)

        it("enforces fixed windows of any length", function()
            srv:quota{key = KEY, windows = {{n = 2, per = 1}}}
            local now = srv:control("GET", "/_fake/log").now
            os.execute(("sleep %.3f"):format(1 - now % 1 + 0.02))   -- start of a fresh window
            local codes = {}
            for i = 1, 3 do codes[i] = v3("GET", "/metadata").status end
            assert.same({200, 200, 429}, codes)
            os.execute("sleep 1")
            assert.equal(200, v3("GET", "/metadata").status)
        end)
    end)

    describe("fault switches", function()
        local path = "/files/" .. WIN32_SHA256

        it("answers a chosen status, count times", function()
            srv:fault{type = "status", status = 503, count = 2, path = "/api/v3/files/"}
            for _ = 1, 2 do
                local res = v3("GET", path)
                assert.equal(503, res.status)
                assert.same({error = {code = "TransientError", message = "Fault injected by the fake"}}, decode(res))
            end
            assert.equal(200, v3("GET", path).status)
            assert.equal(0, srv:faults()[1].remaining)
        end)

        it("answers a custom body, and -1 means forever", function()
            srv:fault{type = "status", status = 500, body = "oops", content_type = "text/plain", count = -1}
            for _ = 1, 3 do
                local res = v3("GET", path)
                assert.same({500, "oops", "text/plain"}, {res.status, res.body, res.headers["content-type"]})
            end
        end)

        it("answers 429 with and without Retry-After", function()
            srv:fault{{type = "429", retry_after = 7}, {type = "429", code = "QuotaExceededError"}}
            local first, second = v3("GET", path), v3("GET", path)
            assert.same({429, "7", "TooManyRequestsError"},
                        {first.status, first.headers["retry-after"], decode(first).error.code})
            assert.same({429, "QuotaExceededError"}, {second.status, decode(second).error.code})
            assert.is_nil(second.headers["retry-after"])
        end)

        it("matches by method and regex", function()
            srv:fault{type = "status", status = 502, method = "POST", regex = "/analyse$"}
            assert.equal(200, v3("GET", path).status)
            assert.equal(502, v3("POST", path .. "/analyse").status)
        end)

        it("slows answers and stalls bodies", function()
            srv:fault{type = "slow", delay = 0.6}
            local slow = v3("GET", path)
            assert.equal(200, slow.status)
            assert.truthy(slow.time >= 0.55)
            srv:fault{type = "slow_body", delay = 1.5}
            local stalled = v3("GET", path, {timeout = 0.5})
            assert.same({200, 28}, {stalled.status, stalled.exit})
            srv:fault{type = "slow_body", delay = 0.3}
            assert.equal(WIN32_SHA256, decode(v3("GET", path)).data.id)
        end)

        it("cuts the connection half way through the body", function()
            srv:fault{type = "cut"}
            local res = v3("GET", path)
            assert.equal(18, res.exit)      -- curl: partial file
            assert.equal(math.floor(tonumber(res.headers["content-length"]) / 2), #res.body)
        end)

        it("sends invalid JSON or HTML", function()
            srv:fault{{type = "badjson"}, {type = "wrongtype"}}
            local bad = v3("GET", path)
            assert.equal("application/json; charset=utf-8", bad.headers["content-type"])
            assert.is_false(pcall(cjson.decode, bad.body))
            local html = v3("GET", path)
            assert.same({200, "text/html; charset=utf-8"}, {html.status, html.headers["content-type"]})
            assert.truthy(html.body:find("<html>", 1, true))
        end)

        it("hands out an upload URL on another origin", function()
            srv:fault{type = "redirect_elsewhere"}
            local elsewhere = decode(v3("GET", "/files/upload_url")).data
            assert.equal(1, elsewhere:find(srv.storage_url .. "/_ah/upload/", 1, true))
            assert.equal(1, decode(v3("GET", "/files/upload_url")).data:find(srv.url, 1, true))
        end)

        it("gives Retry-After values verbatim", function()
            for _, value in ipairs{"inf", "1e308", "99999999999", "-5", "abc", "Wed, 21 Oct 2015 07:28:00 GMT", "0"} do
                srv:fault{type = "429", code = "QuotaExceededError", retry_after = value}
                local res = v3("GET", path)
                assert.same({429, value, "QuotaExceededError"},
                            {res.status, res.headers["retry-after"], decode(res).error.code})
            end
            srv:fault{type = "429", retry_after = 7}
            assert.equal("7", v3("GET", path).headers["retry-after"])
        end)

        it("resets the connection mid-body, or ends a chunked body early", function()
            srv:fault{type = "cut", reset = true}
            local reset = v3("GET", path)
            assert.equal(56, reset.exit)    -- curl: failure receiving data (connection reset)
            srv:fault{type = "cut", chunked = true, at = 100}
            local chunked = v3("GET", path)
            assert.same({18, 100, "chunked"}, {chunked.exit, #chunked.body, chunked.headers["transfer-encoding"]})
            srv:fault{type = "cut", at = 10}
            local short = v3("GET", path)
            assert.same({18, 10}, {short.exit, #short.body})
            assert.truthy(tonumber(short.headers["content-length"]) > 10)
            assert.equal(200, v3("GET", path).status)
        end)

        it("answers 200 bodies of the wrong shape", function()
            local function shaped(variant, p)
                srv:fault{type = "shape", variant = variant}
                local res = v3("GET", p or path)
                assert.same({200, "application/json; charset=utf-8"}, {res.status, res.headers["content-type"]})
                return decode(res), res.body
            end
            assert.equal("x", shaped("data_string").data)
            assert.equal(cjson.null, shaped("data_null").data)
            assert.same({1, 2}, shaped("data_numbers").data)
            local object, raw = shaped("attributes_array")
            assert.equal(WIN32_SHA256, object.data.id)
            assert.truthy(raw:find('"attributes": []', 1, true))
            local collection = shaped("collection_object", "/domains/haiku-os.org/subdomains").data
            assert.same({"domain", "sub0.haiku-os.org"}, {collection.type, collection.id})
            assert.is_nil(shaped("no_data").data)
            local listed
            listed, raw = shaped("attributes_array", "/domains/haiku-os.org/subdomains?limit=2")
            assert.equal(2, #listed.data)
            assert.truthy(select(2, raw:gsub('"attributes": %[%]', "")) == 2)
            assert.has_error(function() srv:fault{type = "shape", variant = "nonsense"} end)
        end)

        it("redirects in a loop, or to another path", function()
            srv:fault{type = "redirect", count = -1}
            local loop = v3("GET", path .. "?x=1", {args = {"-L", "--max-redirs", "5"}})
            assert.equal(47, loop.exit)     -- curl: too many redirects
            assert.equal(6, #srv:log())
            srv:reset()
            srv:fault{type = "redirect"}
            local once = v3("GET", path .. "?x=1")
            assert.same({302, srv.url .. "/api/v3" .. path .. "?x=1", ""},
                        {once.status, once.headers.location, once.body})
            srv:fault{type = "redirect", status = 301, location = "/api/v3/metadata"}
            local moved = v3("GET", path)
            assert.same({301, srv.url .. "/api/v3/metadata"}, {moved.status, moved.headers.location})
        end)

        it("answers a body of a chosen size, and deeply nested JSON", function()
            srv:fault{type = "huge", size = 3 * 1024 * 1024}
            local big = v3("GET", path)
            assert.same({200, 3 * 1024 * 1024}, {big.status, #big.body})
            assert.equal("huge", decode(big).data.id)
            srv:fault{type = "deep", depth = 3}
            assert.equal("[[[]]]", v3("GET", path).body)
            srv:fault{type = "deep"}
            local deep = v3("GET", path)
            assert.same({200000, string.rep("[", 100000)}, {#deep.body, deep.body:sub(1, 100000)})
        end)

        it("streams a 300 MB body without holding it #heavy", function()
            srv:fault{type = "huge"}
            local out = sh("curl -s -o /dev/null -w '%{http_code} %{size_download}' -H 'x-apikey: " .. KEY ..
                           "' " .. srv.url .. "/api/v3" .. path)
            assert.equal("200 " .. 300 * 1024 * 1024, out)
            local rss = tonumber(sh("grep VmHWM /proc/" .. srv.pid .. "/status"):match("(%d+)"))
            assert.truthy(rss < 200 * 1024, "peak RSS " .. rss .. " kB")
        end)

        it("matches v2 paths (v2 errors have no body) and the storage host", function()
            srv:fault{type = "status", status = 503, path = "/vtapi/v2/"}
            local v2res = v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256})
            assert.same({503, ""}, {v2res.status, v2res.body})
            srv:fault{type = "status", status = 204, path = "/vtapi/v2/"}
            local quota = v2("GET", "domain/report", {apikey = KEY, domain = "github.com"})
            assert.same({204, ""}, {quota.status, quota.body})
            srv:fault{type = "429", path = "/vtapi/v2/file/"}
            assert.equal(429, v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256}).status)
            assert.equal(200, v2("GET", "domain/report", {apikey = KEY, domain = "github.com"}).status)
            local info = srv:register_file("stored bytes")
            srv:fault{type = "status", status = 500, listener = "storage"}
            local stored = http("GET", info.download_url)
            assert.same({500, "text/plain"}, {stored.status, stored.headers["content-type"]})
            srv:fault{type = "cut", listener = "any", at = 3, path = "/" .. info.sha256}
            local cut = http("GET", info.download_url)
            assert.same({18, "sto"}, {cut.exit, cut.body})
            local entries = srv:log{listener = "storage"}
            assert.same({"status", "cut"}, {entries[1].fault, entries[2].fault})
        end)

        it("refuses unknown fault types and bad parameters", function()
            assert.has_error(function() srv:fault{type = "meteor"} end)
            assert.has_error(function() srv:fault{type = "cut", at = -1} end)
            assert.has_error(function() srv:fault{type = "huge", size = "big"} end)
        end)
    end)

    describe("feeds", function()
        local NOW = "202401011200"      -- the feed clock these specs freeze
        local LATEST = "202401011100"   -- published an hour late

        before_each(function()
            srv:feeds{now = NOW, running = false}
        end)

        local function batch(kind, minute, opts)
            local res = v3("GET", "/feeds/" .. kind .. "/" .. minute, opts)
            if res.status == 302 then
                return http("GET", res.headers.location), res
            end
            return res, res
        end

        it("publishes each minute an hour late, through a signed storage URL that needs no key", function()
            local state = srv:feeds()
            assert.same({NOW, LATEST, false, 50, 60, "redirect"},
                        {state.now_minute, state.latest, state.running, state.count, state.delay, state.delivery})
            local redirect = v3("GET", "/feeds/files/" .. LATEST)
            assert.same({302, ""}, {redirect.status, redirect.body})
            assert.equal(1, redirect.headers.location:find(srv.storage_url .. "/feeds/files/" .. LATEST .. "?sig=", 1, true))
            local blob = http("GET", redirect.headers.location)
            assert.same({200, "application/octet-stream", "BZh"},
                {blob.status, blob.headers["content-type"], blob.body:sub(1, 3)})
            local lines = assert(feed_lines(blob.body))
            assert.equal(50, #lines)
            local first = cjson.decode(lines[1])
            assert.same({"file", "object"}, {first.type, type(first.attributes) == "table" and "object"})
            assert.equal(first.id, decode(v3("GET", "/files/" .. first.id)).data.id)   -- a sample
            for _, line in ipairs(lines) do
                local obj = cjson.decode(line)
                assert.same({"file", 64}, {obj.type, #obj.id})
                assert.truthy(obj.attributes.last_analysis_stats and obj.attributes.sha256 == obj.id)
                local download = srv.url .. "/api/v3/feeds/files/" .. obj.id .. "/download"
                assert.truthy(obj.context_attributes.download_url:find(download, 1, true))
            end
            local stored = srv:log{listener = "storage"}
            assert.same({1, cjson.null}, {#stored, stored[1].key})
            assert.is_nil(stored[1].headers["x-apikey"])
            assert.equal(403, http("GET", srv.storage_url .. "/feeds/files/" .. LATEST .. "?sig=bad").status)
        end)

        it("refuses minutes not published yet, too old, malformed, and feeds that do not exist", function()
            local function answer(path, headers)
                local res = v3("GET", path, headers and {headers = headers})
                local body = res.body ~= "" and decode(res) or {}
                return {res.status, body.error and body.error.code}
            end
            assert.same({400, "NotAvailableYet"}, answer("/feeds/urls/202401011101"))
            assert.same({400, "NotAvailableYet"}, answer("/feeds/urls/202401020000"))
            assert.same({302}, answer("/feeds/urls/202312251200"))        -- 7 days old
            assert.same({404, "NotFoundError"}, answer("/feeds/urls/202312251159"))
            assert.same({400, "InvalidArgumentError"}, answer("/feeds/urls/2024010111"))
            assert.same({404, "NotFoundError"}, answer("/feeds/comments/" .. LATEST))
            assert.same({401, "AuthenticationRequiredError"}, answer("/feeds/urls/" .. LATEST, {}))
            srv:feeds{delay = 0}
            assert.same({302}, answer("/feeds/urls/" .. NOW))
        end)

        it("builds the same batch of full objects for a minute, for every kind", function()
            local types = {files = "file", urls = "url", domains = "domain", ip_addresses = "ip_address",
                           ["file-behaviours"] = "file_behaviour"}
            for kind, want in pairs(types) do
                local body = batch(kind, LATEST).body
                local lines = assert(feed_lines(body))
                assert.equal(50, #lines, kind)
                for _, line in ipairs(lines) do
                    local obj = cjson.decode(line)
                    assert.equal(want, obj.type, kind)
                    assert.truthy(obj.id and obj.attributes, kind)
                end
                srv:reset()
                srv:feeds{now = NOW, running = false}
                assert.equal(body, batch(kind, LATEST).body, kind .. " is not deterministic")
            end
            local domain = cjson.decode(assert(feed_lines(batch("domains", LATEST).body))[2])
            assert.equal(404, v3("GET", "/domains/" .. domain.id).status)    -- a valid domain pattern
            local behaviour = cjson.decode(assert(feed_lines(batch("file-behaviours", LATEST).body))[2])
            assert.truthy(behaviour.id:match("^%x+_"))
            assert.truthy(behaviour.attributes.sandbox_name and behaviour.context_attributes.file_md5)
            local other = assert(feed_lines(batch("files", "202401011059").body))
            assert.are_not.equal(other[2], assert(feed_lines(batch("files", LATEST).body))[2])
        end)

        it("sets the objects per minute, and serves batches directly", function()
            srv:feeds{count = 7, delivery = "direct", minutes = {[LATEST] = {count = 3}}}
            local res = v3("GET", "/feeds/urls/" .. LATEST)
            assert.same({200, "application/octet-stream"}, {res.status, res.headers["content-type"]})
            assert.equal(3, #assert(feed_lines(res.body)))
            assert.equal(7, #assert(feed_lines(v3("GET", "/feeds/urls/202401011059").body)))
            srv:feeds{count = 0}
            assert.same({}, assert(feed_lines(v3("GET", "/feeds/urls/202401011058").body)))
            assert.equal(0, #srv:log{listener = "storage"})
        end)

        it("makes minutes missing, late or corrupt, for every kind or some", function()
            srv:feeds{count = 10, minutes = {
                ["202401011001"] = {missing = true},
                ["202401011002"] = {late = 2, kinds = {"urls"}},
                ["202401011003"] = {corrupt = "truncated"},
                ["202401011004"] = {corrupt = "badline"},
                ["202401011005"] = {corrupt = "garbage"}}}
            local missing = v3("GET", "/feeds/files/202401011001")
            assert.same({404, "NotFoundError"}, {missing.status, decode(missing).error.code})
            local codes = {}
            for i = 1, 3 do codes[i] = v3("GET", "/feeds/urls/202401011002").status end
            assert.same({400, 400, 302}, codes)
            assert.equal("NotAvailableYet", decode(v3("GET", "/feeds/ip_addresses/202401011102")).error.code)
            assert.equal(302, v3("GET", "/feeds/files/202401011002").status)
            local lines, err = feed_lines(batch("files", "202401011003").body)
            assert.is_nil(lines)
            assert.truthy(err:find("end-of-stream", 1, true), err)
            lines = assert(feed_lines(batch("domains", "202401011004").body))
            assert.equal(10, #lines)
            local broken = {}
            for i, line in ipairs(lines) do
                if not pcall(cjson.decode, line) then broken[#broken + 1] = i end
            end
            assert.same({6}, broken)
            local garbage = batch("urls", "202401011005")
            assert.same({200, false}, {garbage.status, garbage.body:sub(1, 3) == "BZh"})
            assert.is_nil(feed_lines(garbage.body))
            assert.truthy(srv:feeds().minutes["202401011001"].missing)
        end)

        it("runs its clock from a set time, or holds it", function()
            srv:feeds{now = 1704110400, running = true}
            local first = srv:feeds().now
            os.execute("sleep 0.3")
            assert.truthy(srv:feeds().now > first)
            assert.equal("202401011200", srv:feeds().now_minute)
            srv:feeds{running = false}
            local held = srv:feeds().now
            os.execute("sleep 0.2")
            assert.equal(held, srv:feeds().now)
            srv:reset()
            local real = srv:feeds()
            assert.truthy(real.running and math.abs(real.now - os.time()) < 5)
        end)

        it("refuses bad feed settings", function()
            for _, spec in ipairs{{delivery = "mail"}, {count = -1}, {delay = 1.5}, {now = "yesterday"},
                                  {minutes = {["2024"] = {missing = true}}},
                                  {minutes = {[LATEST] = {corrupt = "melted"}}},
                                  {minutes = {[LATEST] = {kinds = {"comments"}}}},
                                  {minutes = {[LATEST] = {late = -2}}}} do
                assert.has_error(function() srv:feeds(spec) end)
            end
        end)

        it("redirects a feed file's download link like a download", function()
            local info = srv:register_file("fed bytes")
            local res = v3("GET", "/feeds/files/" .. info.sha256 .. "/download")
            assert.same({302, info.download_url}, {res.status, res.headers.location})
            assert.equal(404, v3("GET", "/feeds/files/" .. string.rep("a", 64) .. "/download").status)
        end)

        it("serves a minute of 20,000 objects, built as a stream #heavy", function()
            srv:feeds{count = 20000}
            local lines = assert(feed_lines(batch("files", LATEST).body))
            assert.equal(20000, #lines)
            assert.equal("file", cjson.decode(lines[20000]).type)
            local peak = tonumber(sh("grep VmHWM /proc/" .. srv.pid .. "/status"):match("(%d+)"))
            assert.truthy(peak < 200 * 1024, "peak RSS " .. peak .. " kB")
        end)
    end)

    describe("agreement with the official client (vt-py)", function()
        local vtpy = os.getenv("VTPY_DIR")
        if not vtpy then
            pending("set VTPY_DIR to a vt-py checkout (run with /usr/bin/python3 and aiohttp) to compare")
            return
        end

        it("agrees with the recordings in every flow of tools/vtpy_check.py", function()
            local out = sh("VTPY_DIR=" .. shell_quote(vtpy) .. " " .. (os.getenv("VTPY_PYTHON") or "/usr/bin/python3") ..
                           " tools/vtpy_check.py --url " .. srv.url .. " --key " .. KEY .. " 2>&1")
            local agree, total = out:match("(%d+) of (%d+) flows agree")
            assert.truthy(total, out)
            assert.equal(total, agree, out)
            assert.truthy(tonumber(total) >= 30)
        end)
    end)

    describe("request log", function()
        it("records every request with times, headers, key, sizes and status", function()
            v3("GET", "/files/" .. WIN32_SHA256 .. "?x=1", {headers = {["X-Apikey"] = KEY, ["X-Trace"] = "t1"}})
            v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256})
            v3("POST", "/urls", {urlencoded = {url = "http://log.example/"}})
            local entries = srv:log()
            assert.equal(3, #entries)
            local first = entries[1]
            assert.same({"main", "GET", "/api/v3/files/" .. WIN32_SHA256, "x=1", KEY, 200, "t1"},
                        {first.listener, first.method, first.path, first.query, first.key, first.status,
                         first.headers["x-trace"]})
            assert.equal(KEY, entries[2].key)
            assert.equal(#"url=http%3A%2F%2Flog.example%2F", entries[3].body_length)
            assert.truthy(entries[1].time <= entries[2].time and entries[2].mono <= entries[3].mono)
            assert.equal(1, #srv:log{since = 2})
        end)

        it("shows keep-alive: two requests on one connection", function()
            local url = srv.url .. "/api/v3/files/" .. WIN32_SHA256
            sh("curl -s -o /dev/null -o /dev/null -H 'x-apikey: " .. KEY .. "' " .. url .. " " .. url)
            local entries = srv:log()
            assert.equal(2, #entries)
            assert.equal(entries[1].conn, entries[2].conn)
        end)
    end)

    describe("lifecycle", function()
        it("stops idempotently and leaves no process", function()
            local other = fake.start()
            assert.truthy(alive(other.pid))
            other:stop()
            other:stop()
            assert.is_false(alive(other.pid))
        end)

        it("exits by itself after --max-lifetime", function()
            local short = fake.start{max_lifetime = 1}
            assert.truthy(wait_until_dead(short.pid, 5))
            short:stop()
        end)

        it("exits when its parent process dies", function()
            local pid = tonumber(sh([[lua5.4 -e "package.path = 'spec/?.lua;' .. package.path
        package.cpath = 'build/?.so;' .. package.cpath
        local s = require('helpers.fake').start(); io.write(s.pid); io.stdout:flush(); os.exit(0)"]]))
            assert.truthy(pid)
            assert.truthy(wait_until_dead(pid, 5))
        end)
    end)
end)
