-- Hostile inputs and awkward call patterns: nothing may crash, leak the key or spin.
local vt = require "vt"
local fake = require "helpers.fake"
local vtloop = require "vt.loop"

local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"

describe("robustness", function()
    local srv
    setup(function() srv = fake.start { keys = { "test-key", "e" } } end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    local function client(extra)
        local opts = { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5, retries = 0 }
        for k, v in pairs(extra or {}) do opts[k] = v end
        return vt.client(opts)
    end

    it("bounds a batch's concurrency by its size", function()
        local c = client()
        local r = c:batch({ { "file", EXE }, { "domain", "haiku-os.org" } }, { concurrency = math.maxinteger })
        assert.is_true(r[1].ok and r[2].ok)
        c:close()
    end)

    it("survives a progress callback that closes the client", function()
        srv:analysis_steps(5)
        local c = client()
        local d = assert(c:scan_file { data = "closing" })
        assert.has_error(function()
            c:wait(d.id, { interval = 0.01, timeout = 5, progress = function() c:close() end })
        end, "attempt to use a closed vt client")
    end)

    it("redacts a one-letter key without running away", function()
        srv:fault { type = "status", status = 500, message = ("e"):rep(900) }
        local c = client { apikey = "e" }
        local _, err = c:file(EXE)
        assert.equal("InternalError", err.code) -- the fake's own code for a bare 500
        assert.is_nil(err.message:find("e", 1, true))
        assert.is_true(#err.message < 520)
        assert.equal(500, err.http)
        c:close()
    end)

    it("redacts the key before cutting a long message", function()
        local key = "test-key"
        srv:fault { type = "status", status = 401, code = "WrongCredentialsError",
                    message = ("x"):rep(505) .. key .. ("y"):rep(50) }
        local c = client()
        local _, err = c:file(EXE)
        assert.is_nil(err.message:find("test", 1, true))
        srv:fault { type = "status", status = 404, body = ("z"):rep(150) .. "apikey=" .. key, content_type = "text/plain" }
        _, err = c:file(EXE)
        assert.equal("NotFoundError", err.code)
        assert.is_nil(err.message:find("test", 1, true))
        c:close()
    end)

    it("does not spin after a coroutine with a call in flight is closed", function()
        local c = client { yield = true }
        local co = coroutine.create(function() return c:file(EXE) end)
        assert(coroutine.resume(co))
        c:step(0.2) -- the transfer finishes; nobody takes it
        assert(coroutine.close(co))
        assert.is_nil(c:timeout())
        local cpu = os.clock()
        c:sleep(0.3) -- a blocking wait afterwards sleeps for real
        assert.is_true(os.clock() - cpu < 0.1)
        c:close()
    end)

    it("polls thousands of times without growing the C stack", function()
        srv:analysis_steps(1000000)
        local c = client()
        local d = assert(c:scan_file { data = "never done" })
        -- more polls than Lua allows nested C calls (200): each must return before the next
        local polls = 0
        local ok, err = pcall(c.wait, c, d.id, { interval = 0, timeout = 600, progress = function()
            polls = polls + 1
            if polls == 250 then error("enough polls", 0) end
        end })
        assert.is_false(ok)
        assert.equal("enough polls", err)
        assert.equal(250, #srv:log() - 1) -- the upload, then one request per poll
        c:close()
    end)

    it("goes on when the yield function returns without yielding", function()
        srv:fault { type = "slow", delay = 0.3 }
        local c = client { yield = function(cl) cl:step(0) end }
        local co = coroutine.wrap(function() return c:file(EXE) end)
        assert.equal(EXE, co().id)
        c:close()
    end)

    it("lets the progress callback yield (and make calls) in coroutine mode", function()
        srv:analysis_steps(3)
        local c = client { yield = true }
        local loop = vtloop.new(c)
        local looked = {}
        local task = loop:spawn(function()
            local d = assert(c:scan_file { data = "progress may call" })
            return c:wait(d.id, { interval = 0.05, timeout = 5, progress = function()
                looked[#looked + 1] = assert(c:domain("haiku-os.org")).id
            end })
        end)
        loop:run()
        assert.is_true(task.ok, tostring(task.error))
        assert.equal("completed", task.results[1].attributes.status)
        assert.is_true(#looked >= 1)
        c:close()
    end)

    it("refuses v2 paths in request and a multi-line archive password", function()
        local c = client()
        local v, err = c:request("GET", "/vtapi/v2/file/report")
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        v, err = c:scan_file({ data = "x" }, { password = "a\r\nContent-Disposition: x" })
        assert.is_nil(v)
        assert.equal("InvalidArgument", err.code)
        assert.equal(0, #srv:log())
        assert.has_error(function() vt.client { apikey = "k", retries = 1.5 } end)
        assert.has_error(function() vt.client { apikey = "k", retries = 1000 } end)
        c:close()
    end)
end)
