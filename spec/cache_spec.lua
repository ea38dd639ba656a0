-- The response cache on SQLite and the sharing of requests (SPEC 7, issue 10), through the
-- public API, judged by what reached the fake VirusTotal (its request log). Several specs
-- run other processes (spec/helpers/cache_worker.lua) on one cache, the way playbook
-- workers on one host do.
local vt = require "vt"
local fake = require "helpers.fake"
local vtloop = require "vt.loop"
local system = require "system"
local files = require "helpers.files"
local workers = require "helpers.workers"

-- a key distinctive enough to look for in the cache's bytes
local KEY = ("k-%08x%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), os.time())
local OTHER_KEY = KEY .. "-2"
local DOC = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c" -- MS Word sample
local DOC_MD5, DOC_SHA1 = "b214da9f6b0d6e6de5090b3f9672defe", "b7162dfcbcac2724c71c03385abe577e1ab0cd8d"
local URL = "http://example.com/"

local quote, requests, run_workers = files.quote, workers.requests, workers.run

local function sh(cmd)
    local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
    local out = p:read("a")
    p:close()
    return out
end

-- A file's bytes, or nil when there is none.
local function read(path)
    return files.exists(path) and files.read(path) or nil
end

describe("the response cache on SQLite", function()
    local srv, tmpdir, cache_path

    local function client(opts)
        local o = { apikey = KEY, base_url = srv.url, quota_state = false, retry_base = 0.01,
                    cache = "sqlite:" .. cache_path }
        for k, v in pairs(opts or {}) do o[k] = v end
        return vt.client(o)
    end

    local function sql(query)
        return sh(("sqlite3 %s %s"):format(quote(cache_path), quote(query)))
    end

    setup(function()
        srv = fake.start { keys = { KEY, OTHER_KEY }, analysis_steps = 0 }
        tmpdir = files.tmpdir()
    end)

    teardown(function()
        srv:stop()
        files.rmtree(tmpdir)
    end)

    local tests = 0
    before_each(function()
        srv:reset()
        tests = tests + 1
        cache_path = ("%s/c%d/cache.sqlite"):format(tmpdir, tests)
    end)

    it("is off by default, and the counters still tell the requests sent", function()
        local c = vt.client { apikey = KEY, base_url = srv.url, quota_state = false }
        assert(c:file(DOC))
        assert(c:file(DOC))
        assert.equal(2, requests(srv, 0))
        assert.same({ backend = "none", hits = 0, misses = 0, stores = 0, coalesced = 0, errors = 0, requests = 2 },
                    c:cache_stats())
        local o = c:options()
        assert.is_false(o.cache)
        assert.same({ file = 3600, url = 3600, domain = 3600, ip = 3600, analysis = 30 * 86400, not_found = 600 },
                    o.cache_ttl)
        assert.equal(256 * 1024 * 1024, o.cache_max_bytes)
        c:close()
    end)

    it("refuses options of the wrong type or value, naming them", function()
        local function refused(opts, words)
            opts.apikey, opts.quota_state = KEY, false
            local ok, err = pcall(vt.client, opts)
            assert.is_false(ok)
            assert.truthy(tostring(err):find(words, 1, true), tostring(err))
        end
        refused({ cache = 5 }, "'cache'")
        refused({ cache = "ftp://x" }, "'cache'")
        refused({ cache = "sqlite:" }, "'cache'")
        refused({ cache = "redis://:pw@" }, "'cache'")
        refused({ cache = "redis://h:99999" }, "'cache'")
        refused({ cache_ttl = -1 }, "'cache_ttl'")
        refused({ cache_ttl = { files = 1 } }, "files")
        refused({ cache_ttl = { file = "1" } }, "'cache_ttl'.file")
        refused({ cache_max_bytes = 10 }, "'cache_max_bytes'")
        refused({ cache_max_bytes = 1e5 + 0.5 }, "'cache_max_bytes'")
        local c = client()
        assert.has_error(function() c:file(DOC, { max_age = -1 }) end)
        assert.has_error(function() c:file(DOC, { max_age = "1" }) end)
        assert.has_error(function() c:file(DOC, { bogus = 1 }) end)
        assert.has_error(function() c:batch({ { "file", DOC } }, { max_age = false }) end)
        assert.equal(0, requests(srv, 0))
        c:close()
    end)

    it("with cache = true lives in $XDG_CACHE_HOME/vt (0700), in a file of mode 0600", function()
        local xdg = tmpdir .. "/xdg"
        local out = run_workers({ { client = { apikey = KEY, base_url = srv.url, quota_state = false, cache = true },
                                    lookups = { { "file", DOC }, { "file", DOC } } } },
                                { XDG_CACHE_HOME = xdg })[1]
        assert.same({ "ok " .. DOC, "ok " .. DOC }, { out[1], out[2] })
        assert.truthy(out[3]:find('"hits":1', 1, true), out[3])
        assert.equal(1, requests(srv, 0))
        assert.equal("700", sh("stat -c %a " .. quote(xdg .. "/vt")):match("%d+"))
        assert.equal("600", sh("stat -c %a " .. quote(xdg .. "/vt/cache.sqlite")):match("%d+"))
        -- without XDG_CACHE_HOME: ~/.cache/vt
        local home = tmpdir .. "/home"
        run_workers({ { client = { apikey = KEY, base_url = srv.url, quota_state = false, cache = true },
                        lookups = { { "file", DOC } } } }, { XDG_CACHE_HOME = "", HOME = home })
        assert.equal("600", sh("stat -c %a " .. quote(home .. "/.cache/vt/cache.sqlite")):match("%d+"))
        local c = vt.client { apikey = KEY, quota_state = false, cache = "sqlite:" .. cache_path }
        assert.equal("sqlite:" .. cache_path, c:options().cache)
        c:close()
    end)

    it("answers from the cache without a request or a quota slot; a file by any of its hashes", function()
        local c = client { rate = { { n = 1, per = 60 } }, max_wait = 0 }
        assert.equal(DOC, assert(c:file(DOC)).id)
        for _, h in ipairs { DOC, DOC:upper(), DOC_MD5, DOC_SHA1, " " .. DOC_MD5:upper() .. "\n" } do
            local f, err = c:file(h)
            assert.equal(DOC, f and f.id, tostring(err))
        end
        assert.equal(1, requests(srv, 0))
        local _, err = c:domain("github.com") -- the one slot is spent: a miss waits for quota
        assert.equal("RateLimited", err.code)
        local st = c:cache_stats()
        assert.same({ 5, 2, 1, 1 }, { st.hits, st.misses, st.stores, st.requests })
        -- one entry, three keys
        assert.equal("1", sql("SELECT count(*) FROM vt_entries"):match("%d+"))
        assert.equal("3", sql("SELECT count(*) FROM vt_keys"):match("%d+"))
        c:close()
    end)

    it("finds a URL by itself, its refanged form, its id and its object's id", function()
        local c = client()
        local u = assert(c:url(URL))
        assert.equal("url", u.type)
        for _, form in ipairs { "hxxp://example[.]com/", vt.url_id(URL), u.id } do
            local v, err = c:url(form)
            assert.equal(u.id, v and v.id, tostring(err))
        end
        assert.equal(1, requests(srv, 0))
        c:close()
    end)

    it("keeps NotFound as a negative entry for cache_ttl.not_found seconds", function()
        local c = client { cache_ttl = { not_found = 1 } }
        local missing = ("7"):rep(64)
        for _ = 1, 2 do
            local v, err = c:file(missing)
            assert.is_nil(v)
            assert.equal("NotFoundError", err.code)
            assert.equal(404, err.http)
        end
        assert.equal(1, requests(srv, 0))
        system.sleep(1.1)
        assert.equal("NotFoundError", select(2, c:file(missing)).code)
        assert.equal(2, requests(srv, 0))
        c:close()
    end)

    it("keeps a relationship's pages for their object's TTL; never comments, votes or a NotFound", function()
        local function walk(c, opts)
            local ids = {}
            for f in c:related("ip", "1.1.1.1", "communicating_files", opts) do ids[#ids + 1] = f.id end
            return ids
        end
        local c = client { cache_ttl = { ip = 1 } }
        local first = walk(c, { limit = 5, max = 12 })
        assert.equal(12, #first)
        assert.equal(3, requests(srv, 0)) -- three pages, by cursor
        assert.same(first, walk(c, { limit = 5, max = 12 }))
        local other = client()
        assert.same(first, walk(other, { limit = 5, max = 12 })) -- another process, the same file
        assert.equal(3, requests(srv, 0))
        walk(c, { limit = 4, max = 4 }) -- pages of another size are other pages
        assert.equal(4, requests(srv, 0))
        system.sleep(1.1) -- the address's TTL
        walk(c, { limit = 5, max = 5 })
        assert.equal(5, requests(srv, 0))
        for _ = 1, 2 do
            for _ in c:comments("ip", "1.1.1.1", { max = 1 }) do end
            -- the same pages as a relationship: c:add_comment and c:vote change them
            for _ in c:related("ip", "1.1.1.1", "comments", { max = 1 }) do end
            for _ in c:related("ip", "1.1.1.1", "votes", { max = 1 }) do end
        end
        assert.equal(11, requests(srv, 0))
        -- an unknown object's pages: its own NotFound entry says so, and goes when it is made
        local unknown = ("6"):rep(64)
        for _ = 1, 2 do
            local ok, err = pcall(function()
                for _ in c:related("file", unknown, "contacted_domains") do end
            end)
            assert.is_false(ok)
            assert.equal("NotFoundError", err.code)
        end
        assert.equal(13, requests(srv, 0))
        c:close()
        other:close()
    end)

    it("forgets what it kept of an object once an analysis of it completes", function()
        local c = client()
        local content = "uploaded once " .. tests
        local sha256 = vt.digest({ data = content }).sha256
        assert.equal("NotFoundError", select(2, c:file(sha256)).code) -- kept as a negative entry
        local url = "http://stale-" .. tests .. ".example.com/"
        assert(c:url(url) == nil)
        local sent = requests(srv, 0)
        local d = assert(c:scan_file { data = content, name = "x.bin" })
        assert(c:wait(d.id, { interval = 0 }))
        assert(c:wait(assert(c:scan_url(url)).id, { interval = 0 }))
        -- the negative entries no longer answer: both are asked for, found, and kept again
        local since = requests(srv, 0)
        assert.equal(sha256, assert(c:file(sha256)).id)
        assert.truthy(assert(c:url(url)).id)
        assert.equal(since + 2, requests(srv, 0))
        assert(c:file(sha256))
        assert.equal(since + 2, requests(srv, 0))
        assert.is_true(since > sent)
        c:close()
    end)

    it("asks the service when max_age says so, and stores the fresh answer", function()
        local c = client()
        assert(c:domain("github.com"))
        assert(c:domain("github.com", { max_age = 0 }))
        assert.equal(2, requests(srv, 0))
        assert(c:domain("github.com"))
        assert(c:domain("github.com", { max_age = 3600 }))
        assert.equal(2, requests(srv, 0))
        system.sleep(0.3)
        assert(c:domain("github.com", { max_age = 0.2 }))
        assert.equal(3, requests(srv, 0))
        local r = c:batch({ { "domain", "github.com" }, { "ip", "1.1.1.1" } }, { max_age = 0 })
        assert.is_true(r[1].ok and r[2].ok)
        assert.equal(5, requests(srv, 0))
        assert(c:ip("1.1.1.1"))
        assert.equal(5, requests(srv, 0))
        c:close()
    end)

    it("never keeps other errors, quota answers, submissions, downloads or unfinished analyses", function()
        local c = client { retries = 0 }
        srv:fault { type = "status", status = 500, path = "/api/v3/domains/virustotal.com" }
        srv:fault { type = "429", code = "QuotaExceededError", retry_after = 0, path = "/api/v3/domains/haiku-os.org" }
        srv:fault { type = "wrongtype", path = "/api/v3/ip_addresses/8.8.8.8" }
        assert.is_nil(c:domain("virustotal.com"))
        assert.is_nil(c:domain("haiku-os.org"))
        assert.is_nil(c:ip("8.8.8.8"))
        assert(c:domain("virustotal.com"))
        assert(c:ip("8.8.8.8"))
        assert.equal(2, requests(srv, 0, "virustotal.com"))
        assert.equal(2, requests(srv, 0, "8.8.8.8"))
        -- submissions and raw requests are not look-ups
        for _ = 1, 2 do
            assert(c:scan_url("http://cache.example.net/x"))
            assert(c:request("GET", "/files/" .. DOC))
            assert(c:request("GET", "/files/upload_url"))
        end
        assert.equal(2, requests(srv, 0, "/urls"))
        assert.equal(2, requests(srv, 0, DOC))
        assert.equal(2, requests(srv, 0, "upload_url"))
        -- downloads
        local f = srv:register_file("cache spec download")
        for _ = 1, 2 do assert(c:download(f.sha256, tmpdir .. "/dl.bin")) end
        assert.equal(2, requests(srv, 0, "/download"))
        -- an analysis is kept once completed, not before
        srv:analysis_steps(3)
        local d = assert(c:scan_url("http://cache.example.net/steps"))
        assert.equal("queued", assert(c:analysis(d.id)).attributes.status)
        assert.equal("in-progress", assert(c:analysis(d.id)).attributes.status)
        assert.equal("completed", assert(c:analysis(d.id)).attributes.status)
        assert.equal("completed", assert(c:analysis(d.id)).attributes.status)
        assert.equal(3, requests(srv, 0, "/analyses/"))
        local names = sql("SELECT name FROM vt_entries")
        for _, part in ipairs { "haiku-os.org", "upload", "download", "/urls" } do
            assert.is_nil(names:find(part, 1, true), names)
        end
        assert.truthy(names:find("/analyses/", 1, true))
        c:close()
    end)

    it("shares entries between the keys of one base_url, never across base_urls", function()
        local a, b = client(), client { apikey = OTHER_KEY }
        assert(a:ip("8.8.8.8"))
        assert(b:ip("8.8.8.8"))
        assert.equal(1, requests(srv, 0))
        local other = fake.start { keys = { KEY }, analysis_steps = 0 }
        local c = client { base_url = other.url }
        assert(c:ip("8.8.8.8"))
        assert.equal(1, #other:log())
        other:stop()
        a:close(); b:close(); c:close()
    end)

    it("drops an entry that proves corrupt and asks again", function()
        local c = client()
        assert(c:ip("8.8.8.8"))
        assert(c:ip("1.1.1.1"))
        -- a flipped byte: its checksum fails
        local hex = sql("SELECT hex(frame) FROM vt_entries WHERE name LIKE '%8.8.8.8'"):match("%x+")
        local flipped = hex:sub(1, 199) .. (hex:sub(200, 200) == "0" and "1" or "0") .. hex:sub(201)
        sql(("UPDATE vt_entries SET frame = X'%s' WHERE name LIKE '%%8.8.8.8'"):format(flipped))
        assert.equal("8.8.8.8", assert(c:ip("8.8.8.8")).id)
        assert.equal(2, requests(srv, 0, "8.8.8.8"))
        -- a well-formed entry that is not what was asked for: the body is checked once decoded
        local function frame_sum(frame) -- src/cache_frame.c: little-endian words mixed in by xor, multiply, shift
            local h, i = 0x9e3779b97f4a7c15 ~ #frame, 1
            while i + 7 <= #frame do
                h = (h ~ string.unpack("<i8", frame, i)) * 0xbf58476d1ce4e5b9
                h = h ~ (h >> 31)
                i = i + 8
            end
            h = (h ~ string.unpack("<i8", frame:sub(i) .. ("\0"):rep(8 - (#frame - i + 1)))) * 0x94d049bb133111eb
            return string.pack("<i8", h ~ (h >> 29))
        end
        local stored = sql("SELECT hex(frame) FROM vt_entries WHERE name LIKE '%1.1.1.1'"):match("%x+")
        stored = stored:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)
        assert.equal(stored:sub(-8), frame_sum(stored:sub(1, -9))) -- the same sum as the cache's
        local name = sql("SELECT name FROM vt_entries WHERE name LIKE '%1.1.1.1'"):match("[^\n]+")
        local body = '{"data": {"type": "domain", "id": "example.org"}}'
        local frame = "VTC1" .. string.pack("<I2I2I4I4", 200, 0, #name, #body) .. name .. body
        frame = frame .. frame_sum(frame)
        sql(("UPDATE vt_entries SET frame = X'%s' WHERE name = '%s'"):format(
            (frame:gsub(".", function(ch) return ("%02X"):format(ch:byte()) end)), name))
        assert.equal("1.1.1.1", assert(c:ip("1.1.1.1")).id)
        assert.equal(2, requests(srv, 0, "1.1.1.1"))
        assert.equal(0, c:cache_stats().hits)
        -- both were stored afresh
        assert(c:ip("8.8.8.8"))
        assert(c:ip("1.1.1.1"))
        assert.equal(4, requests(srv, 0))
        c:close()
    end)

    it("goes on when a corrupt entry cannot be dropped (the database fails while the entry is read)", function()
        local c = client()
        assert(c:domain("github.com"))
        -- a damaged frame, and a DELETE that fails (as SQLITE_IOERR or SQLITE_FULL would)
        sql("UPDATE vt_entries SET frame = zeroblob(40);" ..
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON vt_entries BEGIN SELECT RAISE(ABORT, 'refused'); END;")
        local errors = c:cache_stats().errors
        assert.equal("github.com", assert(c:domain("github.com")).id)
        assert.equal("github.com", assert(c:domain("github.com")).id)
        assert.equal(3, requests(srv, 0))
        local st = c:cache_stats()
        assert.equal(0, st.hits)
        assert.is_true(st.errors > errors)
        c:close()
    end)

    it("counts its bytes again when the total it keeps proves wrong, instead of evicting forever", function()
        local c = client { cache_max_bytes = 400000 }
        assert(c:domain("github.com"))
        c:close()
        sql("UPDATE vt_totals SET bytes = 1000000000")
        -- in a worker: a store that never ends must fail this spec, not hang it
        local job = { client = { apikey = KEY, base_url = srv.url, quota_state = false, cache = "sqlite:" .. cache_path,
                                 cache_max_bytes = 400000 },
                      lookups = { { "ip", "8.8.8.8" }, { "ip", "8.8.8.8" }, { "ip", "8.8.8.8" } } }
        local out = sh("timeout 20 " .. workers.command(job))
        assert.matches("^ok 8%.8%.8%.8\nok 8%.8%.8%.8\nok 8%.8%.8%.8\nstats ", out)
        -- the first store emptied the cache, then counted 0 bytes: the second one was kept
        assert.equal(2, requests(srv, 0, "8.8.8.8"))
        assert.equal(sql("SELECT sum(size) FROM vt_entries"), sql("SELECT bytes FROM vt_totals"))
    end)

    it("goes on without a cache that fails, and counts it", function()
        -- not a database
        local junk = tmpdir .. "/junk.sqlite"
        local f = assert(io.open(junk, "wb"))
        f:write(("this is no database\n"):rep(200))
        f:close()
        local c = client { cache = "sqlite:" .. junk }
        assert(c:file(DOC))
        assert(c:file(DOC))
        assert.equal(2, requests(srv, 0))
        local st = c:cache_stats()
        assert.equal(0, st.hits)
        assert.is_true(st.errors >= 2)
        c:close()
        -- another process holds the write lock for longer than the busy timeout: entries are
        -- still read (WAL), a miss goes on without its marker and its answer is not stored
        c = client()
        assert(c:ip("1.1.1.1"))
        local since = #srv:log()
        local holder = io.popen(("(printf 'BEGIN IMMEDIATE;\\nDELETE FROM vt_leases;\\n'; sleep 3) | sqlite3 %s")
                                :format(quote(cache_path)))
        system.sleep(0.5)
        local errors = c:cache_stats().errors
        assert.equal("1.1.1.1", assert(c:ip("1.1.1.1")).id)
        assert.equal("8.8.8.8", assert(c:ip("8.8.8.8")).id)
        assert.equal(1, requests(srv, since))
        assert.equal(errors + 1, c:cache_stats().errors)
        holder:close()
        assert.equal("8.8.8.8", assert(c:ip("8.8.8.8")).id) -- the lock is gone: a miss is stored again
        assert.equal("8.8.8.8", assert(c:ip("8.8.8.8")).id)
        assert.equal(2, requests(srv, since))
        c:close()
    end)

    it("keeps at most cache_max_bytes, the least recently used going first", function()
        local c = client { cache_max_bytes = 60000 }
        local lru = {}
        for i = 1, 5 do lru[i] = srv:register_file("lru " .. i).sha256 end
        for i = 1, 4 do assert(c:file(lru[i])) end
        system.sleep(1.1)
        assert(c:file(lru[1])) -- used again: now the most recent
        assert.equal(4, requests(srv, 0))
        assert(c:file(lru[5])) -- over the cap: the least recently used go
        assert(c:file(lru[1]))
        assert.equal(5, requests(srv, 0))
        assert(c:file(lru[2]))
        assert.equal(6, requests(srv, 0))
        local total = tonumber(sql("SELECT sum(size) FROM vt_entries"):match("%d+"))
        assert.is_true(total <= 60000, total)
        assert.equal(tostring(total), sql("SELECT bytes FROM vt_totals"):match("%d+"))
        c:close()
    end)

    it("gives its in-flight marker up when it keeps nothing, or when the look-up is left untaken", function()
        local c = client { cache_max_bytes = 4096 } -- an entry over a quarter of that is not kept
        assert(c:domain("github.com"))
        assert.equal(0, c:cache_stats().stores)
        assert.equal("", sql("SELECT key FROM vt_leases"))
        c:close()
        -- a loop left while another look-up had finished, its result not taken
        c = client()
        local taken = 0
        for _ in c:each({ { "ip", "8.8.8.8" }, { "ip", "1.1.1.1" } }, { concurrency = 2 }) do
            taken = taken + 1
            while c:pending() > 0 do c:step(0.1) end
            if taken == 1 then break end
        end
        assert.equal(2, requests(srv, 1))
        assert.equal("", sql("SELECT key FROM vt_leases"))
        c:close()
        -- a call in a coroutine closed after its look-up had finished
        c = client { yield = true }
        local co = coroutine.create(function() return c:ip("9.9.9.9") end)
        assert(coroutine.resume(co))
        while c:pending() > 0 do c:step(0.1) end
        assert(coroutine.close(co))
        assert.equal(4, requests(srv, 0))
        assert.equal("", sql("SELECT key FROM vt_leases"))
        c:close()
    end)

    it("shares one request among identical look-ups in flight in one client", function()
        for _, cache in ipairs { false, "sqlite" } do
            srv:reset()
            srv:fault { type = "slow", delay = 0.3, path = "/api/v3/files/" .. DOC }
            local c = client { yield = true, cache = cache and "sqlite:" .. cache_path }
            local loop = vtloop.new(c)
            local tasks = {}
            for i = 1, 3 do tasks[i] = loop:spawn(function() return c:file(DOC) end) end
            tasks[4] = loop:spawn(function() return c:file(DOC_MD5) end)
            while loop:step(0.02) > 0 do end
            for _, t in ipairs(tasks) do
                assert.is_true(t.ok, tostring(t.error))
                assert.equal(DOC, t.results[1].id)
            end
            assert.equal(1, requests(srv, 0, DOC))
            assert.equal(1, requests(srv, 0, DOC_MD5))
            assert.equal(2, c:cache_stats().coalesced)
            c:close()
        end
    end)

    it("sends 10 requests for a batch of 100 look-ups of 10 hashes", function()
        local hashes = {}
        for i = 1, 10 do hashes[i] = srv:register_file("batch " .. i).sha256 end
        local list = {}
        for i = 1, 100 do list[i] = { "file", hashes[(i - 1) % 10 + 1] } end
        for _, cache in ipairs { false, "sqlite" } do
            local since = #srv:log()
            local c = client { cache = cache and "sqlite:" .. cache_path }
            local results = c:batch(list, { concurrency = 8 })
            for i, r in ipairs(results) do
                assert.is_true(r.ok, tostring(r.err))
                assert.equal(list[i][2], r.value.id)
            end
            assert.equal(10, requests(srv, since))
            assert.equal(90, c:cache_stats().coalesced)
            c:close()
        end
    end)

    it("answers c:each's look-ups from the cache too, and asks again with max_age = 0", function()
        local hashes, list = {}, {}
        for i = 1, 5 do hashes[i] = srv:register_file("each " .. i).sha256 end
        for i = 1, 20 do list[i] = { "file", hashes[(i - 1) % 5 + 1] } end
        local c = client()
        local seen = 0
        for i, ok, obj in c:each(list, { concurrency = 4 }) do
            assert.is_true(ok, tostring(obj))
            assert.equal(list[i][2], obj.id)
            seen = seen + 1
        end
        assert.equal(20, seen)
        assert.equal(5, requests(srv, 0))
        local st = c:cache_stats()
        assert.equal(15, st.hits + st.coalesced)
        for _, ok in c:each(list, { concurrency = 4, max_age = 0 }) do assert.is_true(ok) end
        assert.equal(25, requests(srv, 0))
        c:close()
    end)

    it("sends one request per indicator for three processes triaging overlapping cases (cache = true)", function()
        local pool = {}
        for i = 1, 9 do pool[i] = { "file", srv:register_file("case " .. i).sha256 } end
        pool[10], pool[11], pool[12] = { "domain", "github.com" }, { "ip", "8.8.8.8" }, { "file", ("5"):rep(64) }
        local cases = {}
        for p = 1, 3 do
            cases[p] = {}
            for k = 0, 7 do cases[p][#cases[p] + 1] = pool[(3 * p + k) % #pool + 1] end
            cases[p][#cases[p] + 1] = pool[10]
        end
        local env = { XDG_CACHE_HOME = tmpdir .. "/triage" }
        for pass = 1, 2 do
            local since = #srv:log()
            local jobs = {}
            for p = 1, 3 do
                jobs[p] = { client = { apikey = KEY, base_url = srv.url, quota_state = false, cache = true },
                            lookups = cases[p], batch = p ~= 3, start = system.gettime() + 0.5 }
            end
            local outputs = run_workers(jobs, env)
            -- a cache call that fails (a lock held past the busy timeout, on a loaded host) lets
            -- its look-up go on uncached: the one way to a second request, and it is counted
            local cache_errors = 0
            for p = 1, 3 do
                assert.equal(#cases[p] + 1, #outputs[p])
                cache_errors = cache_errors + workers.stats(outputs[p]).errors
            end
            local distinct, extra = workers.paths_asked(srv, since)
            assert.is_true(extra <= cache_errors, ("%d requests beyond one per indicator, %d cache errors"):format(
                extra, cache_errors))
            assert.equal(pass == 1 and #pool or 0, distinct)
        end
    end)

    it("waits for another process's look-up, and asks itself once that process is gone", function()
        local a_file, b_file = srv:register_file("waited for").sha256, srv:register_file("holder dies").sha256
        local function spawn(job) return workers.spawn(job, tmpdir .. "/" .. job.name) end
        local function logged(part)
            for _ = 1, 300 do
                if requests(srv, 0, part) > 0 then return true end
                system.sleep(0.02)
            end
        end
        local base = { apikey = KEY, base_url = srv.url, quota_state = false, cache = "sqlite:" .. cache_path }
        -- the first process's answer serves the second
        srv:fault { type = "slow", delay = 1, path = "/api/v3/files/" .. a_file }
        spawn { name = "a1", client = base, lookups = { { "file", a_file } } }
        assert.is_true(logged(a_file))
        local out = run_workers({ { client = base, lookups = { { "file", a_file } } } })[1]
        assert.equal("ok " .. a_file, out[1])
        assert.truthy(out[2]:find('"coalesced":1', 1, true), out[2])
        assert.equal(1, requests(srv, 0, a_file))
        -- the holder is killed: the waiting one asks itself
        srv:fault { type = "slow", delay = 5, path = "/api/v3/files/" .. b_file }
        local holder = spawn { name = "b1", client = base, lookups = { { "file", b_file } } }
        assert.is_true(logged(b_file))
        local p = io.popen(workers.command { client = base, lookups = { { "file", b_file } } })
        system.sleep(0.5)
        assert.equal(1, requests(srv, 0, b_file)) -- still waiting
        -- the holder's marker lapses at most 3 s after its last renewal: that long the waiter may
        -- still wait once the holder is gone
        local left = tonumber(sql("SELECT max(expires) - (julianday('now') - 2440587.5) * 86400.0 FROM vt_leases"))
        assert.is_true(left > 0 and left <= 3, tostring(left))
        os.execute("kill -9 " .. holder)
        assert.equal("ok " .. b_file, p:read("l"))
        p:close()
        assert.equal(2, requests(srv, 0, b_file))
    end)

    it("caches v2 reports, their NotFound answers and batches of them, keyed without the API key", function()
        local c = client { api = "v2" }
        for _ = 1, 2 do
            assert(c:v2_file_report(DOC))
            assert(c:v2_domain_report("github.com"))
            assert(c:v2_ip_report("1.1.1.1"))
            assert(c:v2_url_report("http://github.com/"))
            assert.equal("NotFoundError", select(2, c:v2_file_report(("3"):rep(32))).code)
        end
        assert(c:v2_file_report(DOC_MD5)) -- an alias of the report
        assert.equal(5, requests(srv, 0))
        -- a batch: what the cache holds comes from it, the rest from one request, stored report by report
        local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
        local missing = ("4"):rep(40)
        for pass = 1, 2 do
            local list = assert(c:v2("file/report", { resource = DOC_SHA1 .. ", " .. EXE .. "," .. missing .. "," .. DOC }))
            assert.same({ DOC, EXE, missing, DOC }, { list[1].sha256, list[2].sha256, list[3].resource, list[4].sha256 })
            assert.same({ 1, 1, 0, 1 }, { list[1].response_code, list[2].response_code, list[3].response_code,
                                          list[4].response_code })
            assert.equal(6, requests(srv, 0))
            if pass == 1 then
                local asked = srv:log()[6].query
                assert.truthy(asked:find(EXE, 1, true) and asked:find(missing, 1, true), asked)
                assert.is_nil(asked:find(DOC, 1, true), asked)
            end
        end
        assert(c:v2_file_report(EXE))
        local urls = assert(c:v2("url/report", { resource = "http://github.com/\nhttp://example.com/" }))
        assert.same({ "http://github.com/", "http://example.com/" }, { urls[1].url, urls[2].url })
        assert.equal(7, requests(srv, 0)) -- github.com's report was in the cache
        -- a URL report that may submit is no look-up
        for _ = 1, 2 do assert(c:v2_url_report("http://github.com/", { scan = true })) end
        assert.equal(9, requests(srv, 0))
        c:close()
        for _, path in ipairs { cache_path, cache_path .. "-wal" } do
            local bytes = read(path)
            assert.is_nil(bytes and bytes:find(KEY, 1, true), path)
        end
        assert.truthy(read(cache_path):find("v2/file/report", 1, true))
    end)

    it("keeps v2 reports with allinfo apart from plain ones", function()
        local c = client { api = "v2" }
        local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
        for _ = 1, 2 do
            assert(c:v2("file/report", { resource = EXE }))
            assert(c:v2("file/report", { resource = EXE, allinfo = "1" }))
            assert(c:v2("file/report", { resource = EXE, allinfo = 1 })) -- the same parameter
        end
        local log = srv:log()
        assert.equal(2, #log)
        assert.is_nil(log[1].query:find("allinfo", 1, true))
        assert.truthy(log[2].query:find("allinfo=1", 1, true))
        -- a batch with allinfo: what the allinfo entries hold comes from them, and the rest is kept so
        assert(c:v2("file/report", { resource = DOC_MD5 .. "," .. EXE, allinfo = "1" }))
        local asked = srv:log()[3].query
        assert.truthy(asked:find("allinfo=1", 1, true) and asked:find(DOC_MD5, 1, true), asked)
        assert.is_nil(asked:find(EXE, 1, true), asked)
        assert(c:v2("file/report", { resource = DOC, allinfo = "true" }))
        assert.equal(3, requests(srv, 0))
        assert(c:v2("file/report", { resource = DOC }))
        assert.equal(4, requests(srv, 0))
        -- a parameter the key cannot tell apart: no look-up
        for _ = 1, 2 do assert(c:v2("file/report", { resource = EXE, other = "x" })) end
        assert.equal(6, requests(srv, 0))
        c:close()
    end)

    it("never lets a v2 URL report asked by scan id answer for the URL", function()
        local c = client { api = "v2" }
        local first = assert(c:v2("url/scan", { url = URL })).scan_id
        assert.equal(first, assert(c:v2("url/report", { resource = first })).scan_id) -- that one scan's report
        system.sleep(1.1) -- a scan id holds the second of its scan
        local second = assert(c:v2("url/scan", { url = URL })).scan_id
        assert.are_not.equal(first, second)
        assert.equal(second, assert(c:v2("url/report", { resource = URL })).scan_id)
        c:close()
    end)

    it("never writes the API key into the cache file", function()
        local c = client()
        assert(c:file(DOC))
        assert(c:url(URL))
        assert(c:domain("github.com"))
        assert.equal("NotFoundError", select(2, c:ip("192.0.2.1")).code)
        c:close()
        local bytes = assert(read(cache_path))
        assert.truthy(bytes:find(DOC, 1, true))
        assert.is_nil(bytes:find(KEY, 1, true))
    end)
end)
