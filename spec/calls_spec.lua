-- Submissions, waiting, downloads, collections, raw requests, batch and legacy v2.
local vt = require "vt"
local fake = require "helpers.fake"

local EXE_SHA256 = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"

local files = require "helpers.files"
local tmpdir, exists, read, ls = files.tmpdir, files.exists, files.read, files.ls

local function paths(log)
    local out = {}
    for i, e in ipairs(log) do out[i] = e.method .. " " .. e.path end
    return out
end

-- A sparse file of `mb` megabytes (reads as zeros, costs no disk).
local function sparse(path, mb)
    assert(os.execute(("truncate -s %dM %s"):format(mb, path)))
    return path
end

describe("submissions and waiting", function()
    local srv, c, dir
    setup(function()
        srv = fake.start { analysis_steps = 2 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5 }
        dir = tmpdir()
    end)
    teardown(function()
        c:close()
        srv:stop()
        os.execute("rm -rf " .. dir)
    end)
    before_each(function()
        srv:reset()
        srv:analysis_steps(2)
    end)

    it("uploads a string and waits for its analysis, reporting progress", function()
        srv:analysis_steps(3)
        local d = assert(c:scan_file { data = "hello VT-FAKE-MALICIOUS=7 world", name = "hello.txt" })
        assert.equal("analysis", d.type)
        assert.is_string(d.id)
        local seen = {}
        local a = assert(c:wait(d.id, { interval = 0.05, timeout = 5, progress = function(status, elapsed)
            seen[#seen + 1] = status
            assert.is_number(elapsed)
        end }))
        assert.equal("completed", a.attributes.status)
        assert.equal(7, a.attributes.stats.malicious)
        assert.is_table(a.meta.file_info)
        assert.same({ "queued", "in-progress" }, seen)
        local f = assert(c:file(a.meta.file_info.sha256))
        assert.equal(7, f.attributes.last_analysis_stats.malicious)
        local post = srv:log()[1]
        assert.equal("POST", post.method)
        assert.equal("/api/v3/files", post.path)
        assert.matches('^multipart/form%-data; boundary=', post.headers["content-type"])
    end)

    it("uploads a file from disk with a password field", function()
        local path = dir .. "/sample.bin"
        local fh = assert(io.open(path, "wb"))
        fh:write(("x"):rep(100000))
        fh:close()
        assert(c:scan_file(path, { password = "infected" }))
        local entry = srv:log()[1]
        assert.equal(100000 < entry.body_length and entry.body_length < 101000, true)
    end)

    it("refuses a missing or unreadable local file without a request", function()
        local v, err = c:scan_file(dir .. "/nope.bin")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        assert.matches("nope%.bin", err.message)
        v, err = c:scan_file(dir)
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        assert.equal(0, #srv:log())
        assert.has_error(function() c:scan_file(42) end)
        assert.has_error(function() c:scan_file { data = "x", extra = 1 } end)
    end)

    it("goes through upload_url for a file over 32 MB", function()
        local path = sparse(dir .. "/big.bin", 33)
        local d = assert(c:scan_file(path))
        assert.equal("analysis", d.type)
        local log = paths(srv:log())
        assert.equal("GET /api/v3/files/upload_url", log[1])
        assert.matches("^POST /_ah/upload/.+/$", log[2])
        os.remove(path)
    end)

    it("refuses an upload URL on another origin", function()
        srv:fault { type = "redirect_elsewhere" }
        local path = sparse(dir .. "/big2.bin", 33)
        local v, err = c:scan_file(path)
        assert.is_nil(v)
        assert.equal("InvalidResponse", err.code)
        assert.equal(1, #srv:log())
        os.remove(path)
    end)

    it("refuses a file over 650 MB before any request", function()
        local path = sparse(dir .. "/huge.bin", 651)
        local v, err = c:scan_file(path)
        assert.is_nil(v)
        assert.equal("TooLarge", err.code)
        assert.equal(0, #srv:log())
        os.remove(path)
    end)

    it("streams a 200 MB upload with a small resident set #heavy", function()
        local path = sparse(dir .. "/200.bin", 200)
        local script = ([[
      package.cpath = "build/?.so;" .. package.cpath
      local c = require("vt").client{apikey = %q, base_url = %q, quota_state = false, timeout = 120}
      local d, err = c:scan_file(%q)
      local hwm = io.open("/proc/self/status"):read("a"):match("VmHWM:%%s*(%%d+) kB")
      print(d and d.id or tostring(err), hwm)
    ]]):format(srv.key, srv.url, path)
        local p = io.popen("lua5.4 -e '" .. script:gsub("'", "'\\''") .. "' 2>&1")
        local out = p:read("a")
        p:close()
        local id, hwm = out:match("^(%S+)%s+(%d+)")
        assert.is_string(id, out)
        assert.is_true(tonumber(hwm) < 64 * 1024, "peak RSS " .. tostring(hwm) .. " kB")
        os.remove(path)
    end)

    it("submits URLs (refanged) and reanalyses objects", function()
        local d = assert(c:scan_url("hxxps://phish[.]example/login"))
        assert.matches("^u%-", d.id)
        local a = assert(c:wait(d.id, { interval = 0.05, timeout = 5 }))
        assert.equal("https://phish.example/login", a.meta.url_info.url)
        local v, err = c:scan_url("not a url")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        local r = assert(c:reanalyse("file", EXE_SHA256))
        assert.equal("analysis", r.type)
        assert(c:reanalyse("domains", "haiku-os.org"))
        v, err = c:reanalyse("file", ("0"):rep(64))
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
    end)

    it("times out with the analysis id, never sleeping after its last try", function()
        srv:analysis_steps(1000)
        local d = assert(c:scan_file { data = "slow one" })
        local function since(n) return srv:log { since = n } end
        local mark = #srv:log()
        local v, err = c:wait(d.id, { interval = 0.3, timeout = 1 })
        assert.is_nil(v)
        assert.equal("Timeout", err.code)
        assert.equal(d.id, err.analysis_id)
        -- tries at 0, 0.3, 0.6 and 0.9; a fifth would start past 1 s, so no sleep after the fourth
        local tries = since(mark)
        assert.equal(4, #tries)
        assert.is_true(tries[4].mono - tries[1].mono >= 0.85, "the tries were not paced by the interval")
        -- a later call goes on from the id
        mark = #srv:log()
        local v2, err2 = c:wait(err.analysis_id, { interval = 0.1, timeout = 0.15 })
        assert.is_nil(v2)
        assert.equal("Timeout", err2.code)
        assert.equal("/api/v3/analyses/" .. d.id:gsub("=", "%%3D"), since(mark)[1].path)
    end)
end)

describe("downloads", function()
    local srv, c, dir
    setup(function()
        srv = fake.start()
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5, retries = 0 }
        dir = tmpdir()
    end)
    teardown(function()
        c:close()
        srv:stop()
        os.execute("rm -rf " .. dir)
    end)
    before_each(function() srv:reset() end)

    it("follows the redirect without the key and verifies the content", function()
        local data = ("payload-"):rep(5000)
        local info = srv:register_file(data)
        local got = assert(c:download(info.sha256, dir .. "/out.bin"))
        assert.equal(dir .. "/out.bin", got.path)
        assert.equal(#data, got.size)
        assert.equal(info.md5, got.md5)
        assert.equal(info.sha1, got.sha1)
        assert.equal(info.sha256, got.sha256)
        assert.equal(data, read(dir .. "/out.bin"))
        local storage = srv:log { listener = "storage" }
        assert.equal(1, #storage)
        assert.is_nil(storage[1].headers["x-apikey"])
        for _, v in pairs(storage[1].headers) do assert.is_nil(v:find(srv.key, 1, true)) end
        -- by md5 too
        assert(c:download(info.md5:upper(), dir .. "/out2.bin"))
        assert.same({ "out.bin", "out2.bin" }, ls(dir))
    end)

    it("fails with OutOfMemory when a retried download cannot start its digest again", function()
        local shim, why = require("helpers.preload").build("digest_oom", dir)
        if not shim then
            pending(why)
            return
        end
        local child = dir .. "/download_child.lua"
        files.write(child, [[
local vt = require "vt"
local c = vt.client { apikey = arg[1], base_url = arg[2], quota_state = false, retry_base = 0.01 }
local got, err = c:download(arg[3], arg[4])
print(got and "ok" or ("error " .. err.code))
]])
        local info = srv:register_file(("retried-"):rep(5000))
        srv:fault { type = "cut", listener = "storage" } -- the first transfer ends short: a retry
        local q = files.quote
        local p = io.popen(("LD_PRELOAD=%s LUA_CPATH_5_4=%s lua5.4 %s %s %s %s %s 2>&1"):format(
            q(require("helpers.preload").value(shim)), q(package.cpath), q(child), q(srv.key), q(srv.url),
            info.sha256, q(dir .. "/retried.bin")))
        local out = p:read("a")
        p:close()
        assert.equal("error OutOfMemory\n", out)
        assert.equal(1, #srv:log { listener = "storage" }) -- the retry failed before its request
        assert.is_false(exists(dir .. "/retried.bin"))
    end)

    it("leaves no file when the content does not match", function()
        local info = srv:register_file("genuine content")
        srv:fault { type = "tamper" }
        local v, err = c:download(info.sha256, dir .. "/tampered.bin")
        assert.is_nil(v)
        assert.equal("DigestMismatch", err.code)
        assert.is_false(exists(dir .. "/tampered.bin"))
        for _, name in ipairs(ls(dir)) do assert.is_nil(name:find("tampered", 1, true)) end
    end)

    it("enforces max_bytes and leaves no file", function()
        local info = srv:register_file(("z"):rep(10000))
        local v, err = c:download(info.sha256, dir .. "/capped.bin", { max_bytes = 1000 })
        assert.is_nil(v)
        assert.equal("TooLarge", err.code)
        for _, name in ipairs(ls(dir)) do assert.is_nil(name:find("capped", 1, true)) end
    end)

    it("reports an unknown hash and a bad destination", function()
        local v, err = c:download(("1"):rep(64), dir .. "/none.bin")
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
        -- max_bytes caps the content, not the service's error answer
        v, err = c:download(("1"):rep(64), dir .. "/none.bin", { max_bytes = 10 })
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
        assert.is_false(exists(dir .. "/none.bin"))
        v, err = c:download(("1"):rep(64), "/nonexistent-dir/x.bin")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        v, err = c:download("nothex", dir .. "/x.bin")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
    end)
end)

describe("collections", function()
    local srv, c
    setup(function()
        srv = fake.start()
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5 }
    end)
    teardown(function()
        c:close()
        srv:stop()
    end)
    before_each(function() srv:reset() end)

    it("walks a relationship across pages by cursor", function()
        local ids, seen = {}, {}
        for obj in c:related("ip", "1.1.1.1", "communicating_files", { limit = 5 }) do
            assert.equal("file", obj.type)
            assert.is_nil(seen[obj.id])
            seen[obj.id] = true
            ids[#ids + 1] = obj.id
        end
        assert.is_true(#ids > 10)
        local log = srv:log()
        assert.equal(math.ceil(#ids / 5), #log)
        assert.is_nil(log[1].query:find("cursor=", 1, true))
        for i = 2, #log do assert.matches("cursor=", log[i].query) end
    end)

    it("stops at max", function()
        local n = 0
        for _ in c:related("domain", "haiku-os.org", "subdomains", { limit = 4, max = 6 }) do n = n + 1 end
        assert.equal(6, n)
        assert.equal(2, #srv:log())
    end)

    it("raises the error value when a page fails", function()
        local it = c:related("ip", "8.8.8.8", "urls", { limit = 2 })
        srv:fault { type = "status", status = 403, code = "ForbiddenError", count = -1 }
        local ok, err = pcall(function() for _ in it do end end)
        assert.is_false(ok)
        assert.equal("ForbiddenError", err.code)
        assert.matches("^ForbiddenError %(HTTP 403%)", tostring(err))
    end)

    it("rejects malformed input before any request, raising the error value as iterators do", function()
        for _, args in ipairs { { "ip", "999.1.1.1", "urls" }, { "ip", "1.1.1.1", "../secrets" } } do
            local ok, err = pcall(c.related, c, table.unpack(args))
            assert.is_false(ok)
            assert.equal("InvalidArgument", err.code)
        end
        assert.equal(0, #srv:log())
    end)

    it("lists comments and search results", function()
        local n = 0
        for comment in c:comments("ip", "1.1.1.1", { limit = 3, max = 4 }) do
            assert.equal("comment", comment.type)
            n = n + 1
        end
        assert.is_true(n > 0)
        local found = {}
        for obj in c:search(EXE_SHA256) do found[#found + 1] = obj.id end
        assert.same({ EXE_SHA256 }, found)
    end)

    it("reads the user's quotas, naming the user, or else the key, in the path", function()
        local q = assert(c:quotas())
        assert.is_table(q.api_requests_daily)
        assert.equal("integer", math.type(q.api_requests_daily.user.allowed))
        assert(c:quotas("some-user"))
        assert.equal("/api/v3/users/" .. srv.key .. "/overall_quotas", srv:log()[1].path)
        assert.equal("/api/v3/users/some-user/overall_quotas", srv:log()[2].path)
    end)

    it("takes the next page by its cursor when the service gives fewer than limit (at most 40 a page)", function()
        local n = 0
        for _ in c:search("entity:ip", { limit = 100, max = 45 }) do n = n + 1 end
        assert.equal(45, n)
        local log = srv:log()
        assert.equal(2, #log)
        assert.is_nil(log[1].query:find("cursor=", 1, true))
        assert.truthy(log[2].query:find("cursor=", 1, true))
    end)
end)

describe("raw requests and batch", function()
    local srv, c
    setup(function()
        srv = fake.start()
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5 }
    end)
    teardown(function()
        c:close()
        srv:stop()
    end)
    before_each(function() srv:reset() end)

    it("requests any v3 path and returns the body and status", function()
        local body, status = c:request("GET", "/domains/haiku-os.org", { query = { relationships = "subdomains" } })
        assert.equal(200, status)
        assert.equal("haiku-os.org", body.data.id)
        assert.equal("relationships=subdomains", srv:log()[1].query)
        local d = assert(c:request("POST", "/urls", { form = { url = "http://raw.example/" } }))
        assert.equal("analysis", d.data.type)
        local v, err = c:request("GET", "/files/" .. ("0"):rep(64))
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
        assert.has_error(function() c:request("GET", "/x", { headers = { ["x-apikey"] = "other" } }) end)
        assert.has_error(function() c:request("GET", "/x", { bogus = true }) end)
    end)

    it("runs many look-ups at once, in input order, with failing members", function()
        local list = {
            { "file", EXE_SHA256 }, { "domain", "haiku-os.org" }, { "file", ("0"):rep(64) },
            { "ip", "8.8.8.8" }, { "url", "http://example.com/" }, { "domain", "bad..name" },
            { "ip", "1.1.1.1" }, { "file", EXE_SHA256 },
        }
        local results = c:batch(list, { concurrency = 3 })
        assert.equal(#list, #results)
        assert.is_true(results[1].ok)
        assert.equal(EXE_SHA256, results[1].value.id)
        assert.equal("haiku-os.org", results[2].value.id)
        assert.is_false(results[3].ok)
        assert.equal("NotFoundError", results[3].err.code)
        assert.equal("8.8.8.8", results[4].value.id)
        assert.equal("url", results[5].value.type)
        assert.is_false(results[6].ok)
        assert.equal("InvalidArgument", results[6].err.code)
        assert.equal("1.1.1.1", results[7].value.id)
        assert.equal(EXE_SHA256, results[8].value.id)
        -- the malformed member cost nothing; the repeated one shares the first one's request
        assert.equal(#list - 2, #srv:log())
        assert.equal(1, c:cache_stats().coalesced)
    end)
end)

describe("legacy v2", function()
    local srv, c, dir
    local V2_MD5 = "998a38ee3e5d17dd1081fcd96ee81342" -- spec/fake/samples/v2/ninoseki_v2_file_report
    setup(function()
        srv = fake.start { analysis_steps = 0 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 1, api = "v2" }
        dir = tmpdir()
    end)
    teardown(function()
        c:close()
        srv:stop()
        os.execute("rm -rf " .. dir)
    end)
    before_each(function() srv:reset() end)

    it("sends the key as the apikey field, not a header", function()
        assert(c:v2_file_report(V2_MD5))
        local e = srv:log()[1]
        assert.equal("/vtapi/v2/file/report", e.path)
        assert.is_nil(e.headers["x-apikey"])
        assert.equal(srv.key, e.key)
    end)

    it("reports files, URLs, domains and IPs", function()
        local r = assert(c:v2_file_report(V2_MD5))
        assert.equal(1, r.response_code)
        assert.equal("integer", math.type(r.positives))
        assert.is_table(r.scans)
        local u = assert(c:v2_url_report("http://github.com"))
        assert.equal("integer", math.type(u.total))
        assert(c:v2_domain_report("github.com"))
        local ip = assert(c:v2_ip_report("1.1.1.1"))
        assert.equal(1, ip.response_code)
    end)

    it("turns response_code 0 into NotFoundError", function()
        local v, err = c:v2_file_report(("a"):rep(32))
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
        v, err = c:v2_domain_report("never-seen.example.org")
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
    end)

    it("answers a batch of resources with a list", function()
        local list = assert(c:v2("file/report", { resource = V2_MD5 .. "," .. ("b"):rep(32) }))
        assert.equal(2, #list)
        assert.equal(1, list[1].response_code)
        assert.equal(0, list[2].response_code)
    end)

    it("turns 204 into QuotaExceededError and marks the quota spent", function()
        local q = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 1 }
        srv:quota { key = srv.key, per_minute = 1 }
        assert(q:v2_file_report(V2_MD5))
        local v, err = q:v2_file_report(V2_MD5)
        assert.is_nil(v)
        assert.equal("QuotaExceededError", err.code)
        assert.equal(204, err.http)
        assert.is_true(err.retry_after > 0)
        local _, err2 = q:v2_ip_report("1.1.1.1")
        assert.equal("RateLimited", err2.code)
        assert.equal(2, #srv:log())
        q:close()
        srv:quota { key = srv.key }
    end)

    it("scans, rescans and downloads", function()
        local s = assert(c:v2_file_scan { data = "v2 upload VT-FAKE-MALICIOUS=3", name = "v2.txt" })
        assert.is_string(s.scan_id)
        local rep = assert(c:v2_file_report(s.scan_id))
        assert.equal(3, rep.positives)
        assert(c:v2_file_rescan(s.sha256))
        local us = assert(c:v2_url_scan("http://v2.example/path"))
        assert.is_string(us.scan_id)
        local queued = assert(c:v2_url_report("http://v2-new.example/", { scan = true }))
        assert.is_string(queued.scan_id)
        local info = srv:register_file("v2 download me")
        local got = assert(c:v2_file_download(info.sha256, dir .. "/v2.bin"))
        assert.equal(info.sha1, got.sha1)
        for _, e in ipairs(srv:log { listener = "storage" }) do
            assert.is_nil(e.query:find(srv.key, 1, true))
            assert.is_nil(e.headers["x-apikey"])
        end
    end)

    it("turns response_code -1 into InvalidArgument and -2 into NotAvailableYet", function()
        local v, err = c:v2("file/report", { resource = "not a hash" }) -- raw: the service judges it
        assert.is_nil(v)
        assert.same({ "InvalidArgument", 200 }, { err.code, err.http })
        srv:analysis_steps(2) -- the first report asked for finds the scan queued
        local scanned = assert(c:v2_file_scan { data = "v2 queued sample", name = "queued.txt" })
        v, err = c:v2_file_report(scanned.scan_id)
        assert.is_nil(v)
        assert.same({ "NotAvailableYet", 200 }, { err.code, err.http })
    end)

    it("validates before any request", function()
        local v, err = c:v2_file_report("xyz")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        v, err = c:v2_ip_report("1.2.3")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        assert.equal(0, #srv:log())
    end)
end)
