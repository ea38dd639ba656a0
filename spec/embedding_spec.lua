-- Embedding: the host-loop interface, coroutine mode, vt.loop, cqueues and luv.
local vt = require "vt"
local fake = require "helpers.fake"
local vtloop = require "vt.loop"

local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
local HASHES = {
    EXE, "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
    "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
    "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b",
}

local now = require("helpers.files").now
local overlapping = require("helpers.requests").most_at_once

describe("the host-loop interface", function()
    local srv
    setup(function() srv = fake.start() end)
    teardown(function() srv:stop() end)

    it("exposes a pollable client", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false }
        assert.equal("integer", math.type(c:pollfd()))
        assert.is_true(c:pollfd() >= 0)
        assert.equal("r", c:events())
        assert.is_nil(c:timeout()) -- idle: nothing due
        assert.equal(0, c:step())
        c:close()
        assert.has_error(function() c:pollfd() end)
    end)
end)

describe("coroutine mode", function()
    local srv
    setup(function() srv = fake.start { analysis_steps = 2 } end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    it("yields the client inside a coroutine and blocks outside one", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        assert.equal(EXE, assert(c:file(EXE)).id) -- main thread: blocks
        local co = coroutine.create(function() return c:file(EXE) end)
        local ok, yielded = coroutine.resume(co)
        assert.is_true(ok)
        assert.equal(c, yielded)
        local result
        while coroutine.status(co) ~= "dead" do
            c:step(0.05)
            ok, result = coroutine.resume(co, "ignored")
            assert.is_true(ok)
        end
        assert.equal(EXE, result.id)
        c:close()
    end)

    it("hands the client to a yield function", function()
        local seen = 0
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false,
            yield = function(client)
                seen = seen + 1
                coroutine.yield("waiting", client)
            end }
        local co = coroutine.wrap(function() return c:domain("haiku-os.org") end)
        local r, obj = co()
        while r == "waiting" do
            c:step(0.05)
            r, obj = co()
        end
        assert.equal("haiku-os.org", r.id)
        assert.is_nil(obj)
        assert.is_true(seen > 0)
        c:close()
    end)

    it("runs several look-ups at once while the host keeps working", function()
        srv:fault { type = "slow", delay = 0.4, count = -1 }
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = vtloop.new(c)
        local tasks = {}
        for i, h in ipairs(HASHES) do
            tasks[i] = loop:spawn(function() return c:file(h) end)
        end
        local ticks = 0
        while loop:step(0.02) > 0 do ticks = ticks + 1 end
        for i, task in ipairs(tasks) do
            assert.is_true(task.ok, tostring(task.error))
            assert.equal(HASHES[i], task.results[1].id)
        end
        assert.is_true(ticks >= 10)                -- the host's own loop kept turning
        assert.is_true(overlapping(srv:log()) >= 3) -- the fake served them side by side
        c:close()
    end)

    it("yields while waiting for quota and between polls", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true,
                              rate = { { n = 1, per = 0.25 } }, max_wait = 5 }
        local loop = vtloop.new(c)
        local scan = loop:spawn(function()
            local d = assert(c:scan_file { data = "coroutine VT-FAKE-MALICIOUS=2" })
            return c:wait(d.id, { interval = 0.1, timeout = 5 })
        end)
        local look = loop:spawn(function() return c:file(EXE) end)
        local ticks = 0
        while loop:step(0.01) > 0 do ticks = ticks + 1 end
        assert.is_true(scan.ok, tostring(scan.error))
        assert.equal("completed", scan.results[1].attributes.status)
        assert.equal(EXE, look.results[1].id)
        assert.is_true(ticks > 20)
        -- the limiter held: no two requests closer than 0.25 s
        local log = srv:log()
        for i = 2, #log do
            assert.is_true(log[i].mono - log[i - 1].mono >= 0.24, "requests " .. i - 1 .. " and " .. i)
        end
        c:close()
    end)

    it("sleeps without blocking a coroutine host, and blocks outside one", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local t0 = now()
        c:sleep(0.2)
        assert.is_true(now() - t0 >= 0.19)
        local loop = vtloop.new(c)
        local task = loop:spawn(function() c:sleep(0.3) return "slept" end)
        local ticks = 0
        while loop:step(0.01) > 0 do ticks = ticks + 1 end
        assert.equal("slept", task.results[1])
        assert.is_true(ticks >= 10)
        assert.has_error(function() c:sleep(-1) end)
        assert.has_error(function() c:sleep("1") end)
        c:close()
    end)

    it("yields in batch and collection walks", function()
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = vtloop.new(c)
        local batch = loop:spawn(function()
            return c:batch({ { "file", EXE }, { "domain", "haiku-os.org" }, { "ip", "8.8.8.8" } })
        end)
        local walk = loop:spawn(function()
            local n = 0
            for _ in c:related("ip", "1.1.1.1", "urls", { limit = 3, max = 7 }) do n = n + 1 end
            return n
        end)
        assert.is_false(batch.done)
        assert.is_false(walk.done)
        loop:run()
        assert.is_true(batch.ok, tostring(batch.error))
        assert.equal(3, #batch.results[1])
        assert.is_true(batch.results[1][3].ok)
        assert.equal(7, walk.results[1])
        c:close()
    end)

    it("raises in the task when the client is closed under it", function()
        srv:fault { type = "slow", delay = 0.3 }
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = vtloop.new(c)
        local task = loop:spawn(function() return c:file(EXE) end)
        c:close()
        local co_ok = pcall(function() loop:step() end)
        assert.is_false(co_ok) -- the loop's own c:step on a closed client raises
        assert.is_false(task.done and task.ok)
    end)
end)

describe("event loops", function()
    local srv
    setup(function() srv = fake.start() end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    it("runs inside cqueues with cqueues.poll as the yield function", function()
        local cqueues = require "cqueues"
        srv:fault { type = "slow", delay = 0.3, count = -1 }
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = cqueues.poll }
        local cq = cqueues.new()
        local got, done, ticks = {}, 0, 0
        for i, h in ipairs(HASHES) do
            cq:wrap(function()
                got[i] = assert(c:file(h)).id
                done = done + 1
            end)
        end
        cq:wrap(function()
            while done < #HASHES do
                ticks = ticks + 1
                cqueues.sleep(0.02)
            end
        end)
        -- no time bound of our own: each c:file has the client's timeout, and valgrind is slow
        assert(cq:loop())
        assert.same(HASHES, got)
        assert.is_true(overlapping(srv:log()) >= 3) -- the fake served them side by side
        assert.is_true(ticks >= 5)
        c:close()
    end)

    it("runs inside a luv loop through vt.loop", function()
        local uv = require "luv"
        srv:fault { type = "slow", delay = 0.3, count = -1 }
        local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = vtloop.new(c)
        local tasks = {}
        for i, h in ipairs(HASHES) do tasks[i] = loop:spawn(function() return c:file(h) end) end
        local poll, timer, ticker = uv.new_poll(loop:pollfd()), uv.new_timer(), uv.new_timer()
        local ticks = 0
        local function drive()
            if loop:step() == 0 then
                poll:stop(); timer:stop(); ticker:stop()
                return
            end
            timer:start(math.floor((loop:timeout() or 0.05) * 1000), 0, drive)
        end
        poll:start(loop:events(), drive)
        timer:start(0, 0, drive)
        ticker:start(10, 10, function() ticks = ticks + 1 end)
        uv.run()
        for i, task in ipairs(tasks) do assert.equal(HASHES[i], task.results[1].id) end
        assert.is_true(overlapping(srv:log()) >= 3) -- the fake served them side by side
        assert.is_true(ticks >= 5)
        poll:close(); timer:close(); ticker:close()
        uv.run()
        c:close()
    end)
end)
