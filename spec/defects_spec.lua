-- The audit's defects (issue 11) that need a scenario of their own; the others are cells of
-- the fault matrix and rows of the bad-input table:
--   1 FIFO in c:scan_file        bad_input_spec "path a FIFO without a writer", "a link to a FIFO";
--                                here, a FIFO on an SFTP server
--   2 Retry-After inf/1e308/...  fault_matrix_spec "× 429 Retry-After: ..." and here (the shared state)
--   3 wrong-shape 200 bodies     fault_matrix_spec "× shape: ..."
--   5 c:request leaving /api/v3  bad_input_spec "c:request, path ..."
--   6 malformed URLs cost a request  bad_input_spec "c:url, URL ...", "c:scan_url, URL ..."
--   7 wrong codes                bad_input_spec "... 10 MB" rows, fault_matrix_spec "× redirect ..."
--   8 a state file not ours      here
--   9 retries = 3 sending 5      here
--  10 iterators returning nil, err; c:download into a directory
--                               bad_input_spec "c:related, relationship ...", "c:download, destination ..."
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"
local samples = require "helpers.samples"

local EXE, DOMAIN = samples.file, samples.domain
local DAY = 86400

describe("defect 1 on a remote server: an SFTP path that is not a regular file", function()
    local sshd = require "helpers.sshd"
    local ok, why = sshd.usable()
    if not ok then
        pending(why)
        return
    end

    it("fails at once with RemoteFileError (the server's open() of a FIFO would wait for a writer)", function()
        local srv = sshd.start()
        finally(function() srv:stop() end)
        assert(os.execute("mkfifo " .. files.quote(srv.files .. "/alert.fifo")))
        local s = assert(vt.sftp { host = srv.address, user = srv.user, password = srv.password,
                                   known_hosts = srv.known_hosts.bracketed, timeout = 5 })
        for _, path in ipairs { "/alert.fifo", "" } do
            local src, err = s:open(srv.files .. path)
            assert.is_nil(src)
            assert.equal("RemoteFileError", err.code, tostring(err)) -- not Timeout
            assert.matches("not a regular file", err.message)
        end
        s:close()
    end)
end)

-- Defects 2, 8 and 9 share one fake VirusTotal and one directory.
describe("against the fake", function()
    local srv, dir
    setup(function()
        srv = fake.start { analysis_steps = 0 }
        dir = files.tmpdir()
    end)
    teardown(function()
        srv:stop()
        files.rmtree(dir)
    end)
    before_each(function() srv:reset() end)

    describe("defect 2: a Retry-After no process should obey", function()
        local function client(state)
            return vt.client { apikey = srv.key, base_url = srv.url, quota_state = state, max_wait = 5, retry_base = 0.01 }
        end

        for i, case in ipairs {
            { "inf", 60 }, { "1e308", 60 }, { "nan", 60 }, { "-5", 60 }, { "abc", 60 },
            { "99999999999", DAY }, { "Fri, 31 Dec 9999 23:59:59 GMT", DAY },
        } do
            it(("'%s' holds the shared state %d s at most, and retry_after says so"):format(case[1], case[2]), function()
                local state = dir .. "/quota-" .. i .. ".state"
                srv:fault { type = "429", code = "QuotaExceededError", retry_after = case[1] }
                local c = client(state)
                local started = os.time()
                local v, err = c:file(EXE)
                assert.is_nil(v)
                assert.equal("QuotaExceededError", err.code)
                assert.equal(case[2], err.retry_after)
                -- another process sharing the state waits no longer, and sends nothing
                local other = client(state)
                local held = assert(other:quota_status())
                assert.is_true(held.blocked_until <= started + case[2] + 2, tostring(held.blocked_until - started))
                local v2, err2 = other:file(EXE)
                assert.is_nil(v2)
                assert.equal("RateLimited", err2.code)
                assert.is_true(err2.retry_after <= case[2], tostring(err2.retry_after))
                assert.equal(1, #srv:log())
                c:close()
                other:close()
            end)
        end
    end)

    describe("defect 8: a quota state file that is not ours", function()
        local function write(path, data)
            local f = assert(io.open(path, "wb"))
            f:write(data)
            f:close()
        end

        local function client(state, extra)
            local opts = { apikey = srv.key, base_url = srv.url, quota_state = state, max_wait = 2 }
            for k, v in pairs(extra or {}) do opts[k] = v end
            return vt.client(opts)
        end

        it("makes no client raise; calls fail with QuotaStateError naming the file; it is never overwritten", function()
            local state = dir .. "/notes.txt"
            local notes = "my notes, not a quota state\n"
            write(state, notes)
            for _, extra in ipairs { {}, { requests_per_minute = 4 } } do
                local ok, c = pcall(client, state, extra)
                assert.is_true(ok, tostring(c))
                local v, err = c:file(EXE)
                assert.is_nil(v)
                assert.equal("QuotaStateError", err.code)
                assert.matches(state, err.message, 1, true)
                assert.matches("remove it", err.message, 1, true)
                local status, serr = c:quota_status()
                assert.is_nil(status)
                assert.equal("QuotaStateError", serr.code)
                c:close()
            end
            assert.equal(0, #srv:log())
            assert.equal(notes, files.read(state))
        end)

        it("treats a directory or a FIFO in its place the same, without waiting on the FIFO", function()
            local dir_state, fifo_state = dir .. "/a-directory", dir .. "/a-fifo"
            assert(os.execute(("mkdir %s && mkfifo %s"):format(files.quote(dir_state), files.quote(fifo_state))))
            for _, state in ipairs { dir_state, fifo_state } do
                local c = client(state, { requests_per_minute = 4 })
                local _, err = c:domain(DOMAIN)
                assert.equal("QuotaStateError", err.code)
                assert.matches("not a regular file", err.message)
                c:close()
            end
            assert.equal(0, #srv:log())
        end)

        it("goes on once the file is removed, without a new client", function()
            local state = dir .. "/foreign.state"
            write(state, "PNG\r\n\26\n not ours")
            local c = client(state, { requests_per_minute = 4 })
            local _, err = c:domain(DOMAIN)
            assert.equal("QuotaStateError", err.code)
            os.remove(state)
            assert(c:domain(DOMAIN))
            assert.equal(1, #srv:log())
            assert.equal("vt-quota", files.read(state):sub(1, 8))
            c:close()
        end)

        it("is not overwritten when it appears under a running client", function()
            local state = dir .. "/replaced.state"
            local c = client(state, { requests_per_minute = 4 })
            assert(c:domain(DOMAIN))
            write(state, "someone else's file")
            local _, err = c:domain(DOMAIN)
            assert.equal("QuotaStateError", err.code)
            assert.equal("someone else's file", files.read(state))
            assert.equal(1, #srv:log())
            c:close()
        end)

        it("is not overwritten when it is larger than any state, nor when a newer vt wrote it", function()
            local big = dir .. "/big.state"
            write(big, "a database's own header\n")
            assert(os.execute("truncate -s 65M " .. big))
            local zeros = dir .. "/zeros.img" -- a disk image, a preallocated file
            assert(os.execute("truncate -s 65M " .. zeros))
            local newer = dir .. "/newer.state"
            write(newer, "vt-quota\2\0\0\0" .. ("x"):rep(40))
            for state, why in pairs { [big] = "not a vt quota state", [zeros] = "not a vt quota state",
                [newer] = "state of a newer vt" } do
                local c = client(state, { requests_per_minute = 4 })
                local _, err = c:domain(DOMAIN)
                assert.equal("QuotaStateError", err.code)
                assert.matches(why, err.message, 1, true)
                c:close()
            end
            assert.equal("a database's own header\n", files.read(big):sub(1, 24))
            assert.equal(65 * 1024 * 1024, #files.read(big))
            assert.equal(65 * 1024 * 1024, #files.read(zeros))
            os.remove(zeros)
            assert.equal("vt-quota\2\0\0\0", files.read(newer):sub(1, 12))
            assert.equal(0, #srv:log())
            os.remove(big)
        end)

        it("rebuilds our own damaged file (bad checksum, truncated) as before", function()
            for _, damage in ipairs {
                function(data) return data:sub(1, -2) .. string.char((data:byte(-1) + 1) % 256) end,
                function(data) return data:sub(1, 20) end,
                function() return "vt-quo" end,
                function(data) return ("\0"):rep(#data) end,
            } do
                local state = os.tmpname()
                os.remove(state)
                local c = client(state, { requests_per_minute = 4 })
                assert(c:domain(DOMAIN))
                c:close()
                write(state, damage(files.read(state)))
                c = client(state, { requests_per_minute = 4 })
                assert(c:domain(DOMAIN))
                assert.equal(1, assert(c:quota_status()).windows[1].used)
                assert.equal("vt-quota", files.read(state):sub(1, 8))
                c:close()
                os.remove(state)
                os.remove(state .. ".lock")
            end
        end)
    end)

    describe("defect 9: at most retries + 1 requests per call", function()
        local function client(retries)
            return vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = retries,
                               retry_base = 0.01, max_wait = 5 }
        end

        -- The server closes the kept-alive connection as each request arrives on it: libcurl would
        -- resend such a request once on a new connection, on top of our retries.
        for _, retries in ipairs { 0, 1, 3 } do
            it(("retries = %d: a kept-alive connection closed under every request"):format(retries), function()
                local c = client(retries)
                assert(c:domain(DOMAIN)) -- the connection stays open for the next call
                srv:fault { type = "drop", path = "/api/v3/files/", count = -1 }
                local v, err = c:file(EXE)
                assert.is_nil(v)
                assert.equal("ConnectionError", err.code)
                assert.equal(retries + 2, #srv:log())
                assert.equal(retries + 2, c:cache_stats().requests)
                c:close()
            end)
        end

        it("an upload on a kept-alive connection closed once is resent within the retries", function()
            local c = client(1)
            assert(c:domain(DOMAIN))
            srv:fault { type = "drop", method = "POST", path = "/api/v3/files" }
            local d = assert(c:scan_file { data = "resent upload" })
            assert.equal("analysis", d.type)
            local log = srv:log()
            assert.equal(3, #log)
            assert.equal("drop", log[2].fault)
            assert.equal(200, log[3].status)
            c:close()
        end)
    end)
end)

-- What the fuzz targets found (their inputs are kept in fuzz/corpus/<target>/regression-*).
describe("found by the fuzzers", function()
    it("a domain keeps one trailing dot at most", function()
        assert.equal("example.com", vt.normalize("domain", "Example.COM."))
        for _, name in ipairs { "4.1..", "example.com..", "a.b..." } do
            local v, err = vt.normalize("domain", name)
            assert.is_nil(v, name)
            assert.equal("InvalidArgument", err.code)
        end
    end)

    it("an IPv6 address has one id, lower case and compressed", function()
        for _, text in ipairs { "2001:DB8::1", "2001:db8:0:0:0:0:0:1", "2001:0db8::0001", "2001:db8::1" } do
            assert.equal("2001:db8::1", vt.normalize("ip", text))
        end
        assert.equal("::ffff:1.2.3.4", vt.normalize("ip", "::FFFF:1.2.3.4"))
        assert.equal("1.2.3.4", vt.normalize("ip", "1.2.3.4"))
    end)

    it("JSON numbers beyond a double, decoded as infinity, are encoded back as numbers that read so", function()
        for _, text in ipairs { "9e9999", "-9e400" } do
            local v = vt.decode(text)
            assert.equal(text:sub(1, 1) == "-" and -math.huge or math.huge, v)
            assert.equal(v, vt.decode(vt.encode(v)))
        end
        assert.equal('{"a":[1e999,-1e999]}', vt.encode { a = { math.huge, -math.huge } })
        assert.has_error(function() vt.encode(0 / 0) end, "vt.encode: cannot encode NaN")
    end)
end)
