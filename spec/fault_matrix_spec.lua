-- The fault matrix: every public call against every fault the fake VirusTotal can inject,
-- each cell asserting the outcome (the error code, or success where a retry recovers) and the
-- number of requests the fake logged. One client per cell (a quota answer holds its limiter).
--
-- A call names the request a fault hits (its `at`: method, path prefix, listener; `target` says
-- whether that is a v2 request or one to the storage host, where `content` "batch" is a feed
-- batch rather than a file), how many other requests it makes when that one succeeds
-- (`others_ok`) or fails for good (`others_fail`), what its answer must look like (`shape`) and
-- whether resending it may act twice (`unsafe`: a comment or a vote). A fault says what it does
-- to each kind of call.
-- Under valgrind (VT_SPEC_VALGRIND=1) a sample runs: every fault with two calls, every call.
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"
local samples = require "helpers.samples"

local EXE, DOMAIN, IP, URL, ANALYSIS = samples.file, samples.domain, samples.ip, samples.url, samples.analysis
local KEY = "matrix-secret-key-7f3a"
local RETRIES = 2
local DAY = 86400
local MAX_REDIRECTS = 3
local MB = 1024 * 1024
local VALGRIND = os.getenv("VT_SPEC_VALGRIND") ~= nil
-- A slow answer outlasts the timeout; uploads and downloads time out on a stall of
-- max(timeout, 1) seconds instead.
local SLOW = VALGRIND and { delay = 2.5, timeout = 1 } or { delay = 1.5, timeout = 0.3 }
local DOWNLOADED = "fault matrix content"
-- A published feed minute (the fake publishes a minute an hour after it; 50 objects each).
local FEED_MINUTE = os.time() - 7200
local function feed_minute(offset) return os.date("!%Y%m%d%H%M", FEED_MINUTE + (offset or 0)) end

-- ------------------------------------------------------------------------ the calls

local function v3(path, method) return { path = "/api/v3" .. path, method = method } end
local function v2(endpoint, method) return { path = "/vtapi/v2/" .. endpoint, method = method } end
local function storage(ctx) return { path = "/" .. ctx.hash, listener = "storage" } end
local FEED_BATCH = { path = "/feeds/files/", listener = "storage" } -- the batch the API redirects to

local function is_object(v, type_name, id)
    assert.equal(type_name, v.type)
    if id then assert.equal(id, v.id) end
    assert.is_table(v.attributes)
end

local function is_report(v)
    assert.equal(1, v.response_code)
end

local function downloaded(v, ctx)
    assert.equal(ctx.hash, v.sha256)
    assert.equal(DOWNLOADED, files.read(v.path))
end

local function a_batch(v)
    local ids = {}
    for _, obj in ipairs(v) do
        assert.is_nil(ids[obj.id], "an object given twice")
        ids[obj.id] = true
    end
    assert.equal(50, #v)
end

local function list_of(n)
    return function(v)
        assert.equal(n, #v)
        for _, item in ipairs(v) do assert.is_string(item.id) end
    end
end

local calls = {
    { name = "c:file", at = v3("/files/" .. EXE), shape = "object",
        run = function(c) return c:file(EXE) end,
        check = function(v) is_object(v, "file", EXE) end },
    { name = "c:url", at = v3("/urls/"), shape = "object",
        run = function(c) return c:url(URL) end,
        check = function(v) is_object(v, "url") end },
    { name = "c:domain", at = v3("/domains/"), shape = "object",
        run = function(c) return c:domain(DOMAIN) end,
        check = function(v) is_object(v, "domain", DOMAIN) end },
    { name = "c:ip", at = v3("/ip_addresses/"), shape = "object",
        run = function(c) return c:ip(IP) end,
        check = function(v) is_object(v, "ip_address", IP) end },
    { name = "c:analysis", at = v3("/analyses/"), shape = "object",
        run = function(c) return c:analysis(ANALYSIS) end,
        check = function(v) is_object(v, "analysis", ANALYSIS) end },
    { name = "c:scan_file", at = v3("/files", "POST"), shape = "object",
        run = function(c) return c:scan_file { data = "fault matrix upload", name = "m.txt" } end,
        check = function(v) assert.equal("analysis", v.type) end },
    { name = "c:scan_url", at = v3("/urls", "POST"), shape = "object",
        run = function(c) return c:scan_url("http://matrix.example.net/x") end,
        check = function(v) assert.equal("analysis", v.type) end },
    { name = "c:reanalyse", at = v3("/files/" .. EXE .. "/analyse", "POST"), shape = "object",
        run = function(c) return c:reanalyse("file", EXE) end,
        check = function(v) assert.equal("analysis", v.type) end },
    { name = "c:wait", at = v3("/analyses/"), shape = "object",
        run = function(c) return c:wait(ANALYSIS, { interval = 0.01, timeout = 5 }) end,
        check = function(v) assert.equal("completed", v.attributes.status) end },
    { name = "c:download", target = "storage", at = storage, others_ok = 1, others_fail = 1,
        run = function(c, ctx) return c:download(ctx.hash, ctx.dest, { max_bytes = MB }) end,
        check = downloaded },
    { name = "c:related", at = v3("/ip_addresses/" .. IP .. "/communicating_files"), shape = "collection",
        run = function(c)
            return samples.collect(function() return c:related("ip", IP, "communicating_files", { limit = 3, max = 3 }) end)
        end,
        check = list_of(3) },
    { name = "c:comments", at = v3("/domains/" .. DOMAIN .. "/comments"), shape = "collection",
        run = function(c)
            return samples.collect(function() return c:comments("domain", DOMAIN, { limit = 3, max = 3 }) end)
        end,
        check = list_of(3) },
    { name = "c:search", at = v3("/search"), shape = "collection",
        run = function(c)
            return samples.collect(function() return c:search("entity:domain", { limit = 2, max = 2 }) end)
        end,
        check = list_of(2) },
    { name = "c:quotas", at = v3("/users/"), shape = "object",
        run = function(c) return c:quotas() end,
        check = function(v) assert.is_table(v.api_requests_daily) end },
    { name = "c:request", at = v3("/files/" .. EXE), shape = "raw",
        run = function(c)
            local body, status_or_err = c:request("GET", "/files/" .. EXE)
            if body == nil then return nil, status_or_err end
            return body
        end,
        check = function(v) assert.equal(EXE, v.data.id) end },
    { name = "c:batch", at = v3("/files/" .. EXE), shape = "object", others_ok = 1, others_fail = 1,
        run = function(c)
            local r = c:batch { { "file", EXE }, { "domain", DOMAIN } }
            assert.is_true(r[2].ok, tostring(r[2].err)) -- the other member is not touched by the fault
            if r[1].ok then return r[1].value end
            return nil, r[1].err
        end,
        check = function(v) is_object(v, "file", EXE) end },
    { name = "c:each", at = v3("/files/" .. EXE), shape = "object", others_ok = 1, others_fail = 1,
        run = function(c)
            local got = {}
            for i, ok, v in c:each { { "file", EXE }, { "domain", DOMAIN } } do got[i] = { ok = ok, v = v } end
            assert.is_true(got[2].ok, tostring(got[2].v)) -- the other member is not touched by the fault
            if got[1].ok then return got[1].v end
            return nil, got[1].v
        end,
        check = function(v) is_object(v, "file", EXE) end },
    { name = "c:add_comment", at = v3("/files/" .. EXE .. "/comments", "POST"), shape = "object", unsafe = true,
        run = function(c) return c:add_comment("file", EXE, "seen in the #matrix") end,
        check = function(v) is_object(v, "comment") assert.equal("seen in the #matrix", v.attributes.text) end },
    { name = "c:vote", at = v3("/files/" .. EXE .. "/votes", "POST"), shape = "object", unsafe = true,
        run = function(c) return c:vote("file", EXE, "malicious") end,
        check = function(v) is_object(v, "vote") assert.equal("malicious", v.attributes.verdict) end },
    { name = "c:feed", target = "storage", content = "batch", at = FEED_BATCH, others_ok = 1, others_fail = 1,
        run = function(c) return samples.collect(function() return assert(c:feed("files", feed_minute())) end) end,
        check = a_batch },
    { name = "c:follow", target = "storage", content = "batch", at = FEED_BATCH, others_ok = 1, others_fail = 1,
        run = function(c)
            return samples.collect(function()
                return assert(c:follow("files", { start = feed_minute(), stop = feed_minute(60), interval = 0.01 }))
            end)
        end,
        check = a_batch },
    { name = "c:v2 file/report", target = "v2", at = v2("file/report"), shape = "v2",
        run = function(c) return c:v2("file/report", { resource = EXE }) end,
        check = is_report },
    { name = "c:v2 file/report batch", target = "v2", at = v2("file/report"), shape = "v2list",
        run = function(c) return c:v2("file/report", { resource = EXE .. "," .. samples.file2 }) end,
        check = function(v) assert.equal(2, #v) is_report(v[1]) is_report(v[2]) end },
    { name = "c:v2_file_report", target = "v2", at = v2("file/report"), shape = "v2",
        run = function(c) return c:v2_file_report(EXE) end,
        check = is_report },
    { name = "c:v2_file_rescan", target = "v2", at = v2("file/rescan", "POST"), shape = "v2",
        run = function(c) return c:v2_file_rescan(EXE) end,
        check = is_report },
    { name = "c:v2_file_scan", target = "v2", at = v2("file/scan", "POST"), shape = "v2",
        run = function(c) return c:v2_file_scan { data = "fault matrix v2 upload" } end,
        check = is_report },
    { name = "c:v2_file_download", target = "storage", at = storage, others_ok = 1, others_fail = 1,
        run = function(c, ctx) return c:v2_file_download(ctx.hash, ctx.dest, { max_bytes = MB }) end,
        check = downloaded },
    { name = "c:v2_url_report", target = "v2", at = v2("url/report"), shape = "v2",
        run = function(c) return c:v2_url_report(URL) end,
        check = is_report },
    { name = "c:v2_url_scan", target = "v2", at = v2("url/scan", "POST"), shape = "v2",
        run = function(c) return c:v2_url_scan("http://matrix.example.net/v2") end,
        check = is_report },
    { name = "c:v2_domain_report", target = "v2", at = v2("domain/report"), shape = "v2",
        run = function(c) return c:v2_domain_report(DOMAIN) end,
        check = is_report },
    { name = "c:v2_ip_report", target = "v2", at = v2("ip-address/report"), shape = "v2",
        run = function(c) return c:v2_ip_report(IP) end,
        check = is_report },
}

-- ----------------------------------------------------------------------- the faults

-- Success after k requests to the faulted path; `check` replaces the call's own check when
-- the fault changed what a successful call gives (c:request hands the body over as it came).
local function ok(k, check) return { ok = true, k = k, check = check } end
local function fail(code, k, fields)
    local e = { code = code, k = k }
    for name, value in pairs(fields or {}) do e[name] = value end
    return e
end

-- A failure the engine retries: a later attempt gets the real answer.
local function retried() return ok(2) end

-- A failure after the request went out (cut, dropped, timed out): resent unless resending
-- may act twice.
local function resent(code)
    return function(call)
        if call.unsafe then return fail(code, 1) end
        return ok(2)
    end
end

local function final(code, fields)
    return function() return fail(code, 1, fields) end
end

-- A body that is not what the call expects: a download keeps it and finds the wrong hash; a
-- feed batch that is no bzip2 is InvalidResponse.
local function bad_body(call)
    if call.target == "storage" and call.content ~= "batch" then return fail("DigestMismatch", 1) end
    return fail("InvalidResponse", 1)
end

local function wrong_shape(variant)
    return function(call)
        if call.target == "storage" then return bad_body(call) end
        -- c:request is raw, and a v2 report keeps its response_code whatever "data" becomes
        if call.shape == "raw" then return ok(1, function(v) assert.is_table(v) end) end
        if call.shape == "v2" then return ok(1) end
        -- only a list is turned into an object
        if variant == "collection_object" and call.shape == "object" then return ok(1) end
        return fail("InvalidResponse", 1)
    end
end

local faults = {
    { name = "503 once", spec = { type = "status", status = 503 }, expect = retried },
    { name = "503 always", spec = { type = "status", status = 503, count = -1 },
        expect = function() return fail("TransientError", RETRIES + 1) end },
    { name = "404", spec = { type = "status", status = 404 }, expect = final("NotFoundError") },
    { name = "401 wrong key", spec = { type = "status", status = 401, code = "WrongCredentialsError" },
        expect = function(call)
            -- v2 errors and the storage host's have no body: the status names the code
            return fail(call.target and "AuthenticationRequiredError" or "WrongCredentialsError", 1)
        end },
    { name = "429 once", spec = { type = "429" }, expect = retried },
    { name = "429 Retry-After: 0", spec = { type = "429", retry_after = 0 }, expect = retried },
    { name = "429 Retry-After: 99999999999", spec = { type = "429", retry_after = "99999999999" },
        expect = final("RateLimited", { retry_after = DAY }) },
    { name = "429 Retry-After: an HTTP date in 9999",
        spec = { type = "429", retry_after = "Fri, 31 Dec 9999 23:59:59 GMT" },
        expect = final("RateLimited", { retry_after = DAY }) },
    { name = "429 Retry-After: inf", spec = { type = "429", retry_after = "inf" }, expect = retried },
    { name = "429 Retry-After: 1e308", spec = { type = "429", retry_after = "1e308" }, expect = retried },
    { name = "429 Retry-After: -5", spec = { type = "429", retry_after = "-5" }, expect = retried },
    { name = "429 Retry-After: nan", spec = { type = "429", retry_after = "nan" }, expect = retried },
    { name = "429 Retry-After: abc", spec = { type = "429", retry_after = "abc" }, expect = retried },
    { name = "v3 quota", spec = { type = "429", code = "QuotaExceededError" },
        expect = final("QuotaExceededError", { retry_after = 60 }) },
    { name = "v3 quota, Retry-After: inf", spec = { type = "429", code = "QuotaExceededError", retry_after = "inf" },
        expect = final("QuotaExceededError", { retry_after = 60 }) },
    { name = "v3 quota, Retry-After: 99999999999",
        spec = { type = "429", code = "QuotaExceededError", retry_after = "99999999999" },
        expect = final("QuotaExceededError", { retry_after = DAY }) },
    { name = "204 without a body (v2 quota)", spec = { type = "status", status = 204, body = "" },
        expect = function(call)
            if call.target == "v2" then return fail("QuotaExceededError", 1, { retry_after = 60 }) end
            if call.shape == "raw" then return ok(1, function(v) assert.is_true(v) end) end
            return bad_body(call)
        end },
    { name = "cut mid-body", spec = { type = "cut" }, expect = resent("ConnectionError") },
    { name = "cut by a reset", spec = { type = "cut", reset = true }, expect = resent("ConnectionError") },
    { name = "cut mid-chunk", spec = { type = "cut", chunked = true }, expect = resent("ConnectionError") },
    { name = "cut always", spec = { type = "cut", count = -1 },
        expect = function(call) return fail("ConnectionError", call.unsafe and 1 or RETRIES + 1) end },
    { name = "closed without an answer", spec = { type = "drop" }, expect = resent("ConnectionError") },
    { name = "invalid JSON", spec = { type = "badjson" }, expect = bad_body },
    { name = "HTML with 200", spec = { type = "wrongtype" }, expect = bad_body },
    { name = "shape: data is a string", spec = { type = "shape", variant = "data_string" },
        expect = wrong_shape("data_string") },
    { name = "shape: data is null", spec = { type = "shape", variant = "data_null" }, expect = wrong_shape("data_null") },
    { name = "shape: data is [1, 2]", spec = { type = "shape", variant = "data_numbers" },
        expect = wrong_shape("data_numbers") },
    { name = "shape: attributes is []", spec = { type = "shape", variant = "attributes_array" },
        expect = wrong_shape("attributes_array") },
    { name = "shape: a collection is an object", spec = { type = "shape", variant = "collection_object" },
        expect = wrong_shape("collection_object") },
    { name = "shape: no data", spec = { type = "shape", variant = "no_data" }, expect = wrong_shape("no_data") },
    { name = "redirect loop", spec = { type = "redirect", count = -1 },
        expect = function(call)
            -- a download follows the storage host's redirects (without the key), a few hops
            if call.target == "storage" then return fail("InvalidResponse", MAX_REDIRECTS, { message = "redirects" }) end
            return fail("InvalidResponse", 1, { message = "redirect" })
        end },
    { name = "redirect to another path", spec = { type = "redirect", location = "/api/v3/elsewhere" },
        expect = function(call)
            -- followed on the storage host, where nothing is there
            if call.target == "storage" then return fail("NotFoundError", 2) end
            return fail("InvalidResponse", 1, { message = "redirect" })
        end },
    { name = "70 MB body", spec = { type = "huge", size = 70 * MB },
        expect = function(call)
            -- a feed batch streams (no size cap): its first bytes are no bzip2
            if call.content == "batch" then return fail("InvalidResponse", 1) end
            return fail("TooLarge", 1)
        end,
        heavy_for_valgrind = true },
    { name = "nested 100000 deep", spec = { type = "deep" }, expect = bad_body },
    { name = "slow answer", spec = { type = "slow", delay = SLOW.delay }, timeout = SLOW.timeout,
        expect = resent("Timeout") },
    { name = "slow body", spec = { type = "slow_body", delay = SLOW.delay }, timeout = SLOW.timeout,
        expect = resent("Timeout") },
    { name = "tampered download", spec = { type = "tamper" },
        expect = function(call)
            -- the storage host tampers with file contents only; other calls never touch it
            if call.target == "storage" and call.content ~= "batch" then return fail("DigestMismatch", 1) end
        end },
}

-- Under valgrind: a sample in which every fault meets two calls it applies to and every call
-- meets a fault, spread over the matrix (the 70 MB body is left to the other runs).
local sampled = {}
if VALGRIND then
    local function pick(ci, fi) sampled[ci .. ":" .. fi] = true end
    local touched = {}
    for fi, fault in ipairs(faults) do
        local picked = 0
        for step = 0, #calls - 1 do
            local ci = (fi * 7 + step * 11) % #calls + 1
            if picked < 2 and not fault.heavy_for_valgrind and fault.expect(calls[ci]) then
                pick(ci, fi)
                touched[ci] = true
                picked = picked + 1
            end
        end
    end
    for ci, call in ipairs(calls) do
        for step = 0, #faults - 1 do
            local fi = (ci + step) % #faults + 1
            if not touched[ci] and not faults[fi].heavy_for_valgrind and faults[fi].expect(call) then
                pick(ci, fi)
                touched[ci] = true
            end
        end
    end
end

local function selected(ci, fi)
    return not VALGRIND or sampled[ci .. ":" .. fi]
end

-- --------------------------------------------------------------------------- cells

describe("fault matrix", function()
    local srv, dir
    setup(function()
        srv = fake.start { key = KEY, analysis_steps = 0 }
        dir = files.tmpdir()
    end)
    teardown(function()
        srv:stop()
        files.rmtree(dir)
    end)

    -- The fake is reset only when a fault may still be armed (a persistent one, or a cell that
    -- failed); otherwise a cell reads the log from where the last one ended.
    local seen, clean = 0, false
    local per_call, per_fault = {}, {}
    for ci, call in ipairs(calls) do
        for fi, fault in ipairs(faults) do
            local want = fault.expect(call)
            if want and selected(ci, fi) then
                per_call[call.name] = (per_call[call.name] or 0) + 1
                per_fault[fault.name] = (per_fault[fault.name] or 0) + 1
                it(call.name .. " × " .. fault.name, function()
                    if not clean then
                        srv:reset()
                        seen = 0
                    end
                    clean = false
                    local ctx = { dest = dir .. "/cell" .. ci .. "-" .. fi .. ".bin" }
                    if call.target == "storage" and call.content ~= "batch" then
                        ctx.hash = srv:register_file(DOWNLOADED).sha256
                    end
                    local spec = {}
                    for k, v in pairs(fault.spec) do spec[k] = v end
                    local at = type(call.at) == "function" and call.at(ctx) or call.at
                    for k, v in pairs(at) do spec[k] = v end
                    srv:fault(spec)
                    local c = vt.client { apikey = KEY, base_url = srv.url, quota_state = false, retries = RETRIES,
                                          retry_base = 0.01, max_wait = 5, timeout = fault.timeout or 5, connect_timeout = 2 }
                    local value, err = call.run(c, ctx)
                    c:close()
                    local log = srv:log { since = seen }
                    if #log > 0 then seen = math.floor(log[#log].seq) end
                    if want.ok then
                        assert.is_nil(err, tostring(err))
                        local check = want.check or call.check
                        check(value, ctx)
                        assert.equal(want.k + (call.others_ok or 0), #log)
                    else
                        assert.is_nil(value)
                        assert.is_table(err, tostring(err))
                        assert.equal(want.code, err.code, tostring(err))
                        local text = tostring(err)
                        assert.is_nil(text:find("\n"), text)
                        assert.is_nil(text:find(KEY, 1, true), text)
                        if want.message then assert.matches(want.message, err.message) end
                        if want.retry_after then assert.equal(want.retry_after, err.retry_after, text) end
                        if err.retry_after ~= nil then
                            assert.is_true(err.retry_after >= 0 and err.retry_after <= DAY, text)
                        end
                        assert.equal(want.k + (call.others_fail or 0), #log)
                        if ctx.hash then -- no file, no temporary file beside it
                            local prefix = "cell" .. ci .. "-" .. fi .. "."
                            for _, name in ipairs(files.ls(dir)) do assert.is_nil(name:find(prefix, 1, true), name) end
                        end
                    end
                    clean = spec.count ~= -1 -- a fault armed once was taken by this cell
                end)
            end
        end
    end

    it("covers every call and every fault", function()
        for _, call in ipairs(calls) do assert.is_true((per_call[call.name] or 0) >= 1, call.name) end
        for _, fault in ipairs(faults) do
            assert.is_true((per_fault[fault.name] or 0) >= 1 or (VALGRIND and fault.heavy_for_valgrind), fault.name)
        end
    end)
end)
