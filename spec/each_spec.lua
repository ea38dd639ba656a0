-- Long lists: c:batch and c:each keep at most `concurrency` requests in flight (the fake's log
-- and c:pending() say so), c:each hands results out as they complete, a break releases the
-- requests in flight, and both yield in coroutine mode and keep to the limiter.
local vt = require "vt"
local fake = require "helpers.fake"
local max_overlap = require("helpers.requests").most_at_once

local function domains(n)
    local list = {}
    for i = 1, n do list[i] = { "domain", "d" .. i .. ".example.org" } end
    return list
end

describe("long lists", function()
    local srv, c
    setup(function()
        srv = fake.start { analysis_steps = 0 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retry_base = 0.01 }
    end)
    teardown(function()
        c:close()
        srv:stop()
    end)
    before_each(function() srv:reset() end)

    -- Files the fake knows, one per item; faults can pick an item by its hash.
    local function files(n)
        local list = {}
        for i = 1, n do list[i] = { "file", srv:register_file("each item " .. i).sha256 } end
        return list
    end

    it("c:batch of 10,000 look-ups holds at most `concurrency` requests at once", function()
        local n = os.getenv("VT_SPEC_VALGRIND") and 1000 or 10000
        srv:fault { type = "slow", delay = 0.05, count = 16 } -- the first ones wait side by side at the fake
        local most = 0 -- the client's own count, seen each time the batch waits
        local watched = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = function(cl)
            most = math.max(most, cl:pending())
            cl:step(0.05)
        end }
        local results = coroutine.wrap(function() return watched:batch(domains(n), { concurrency = 8 }) end)()
        watched:close()
        assert.equal(n, #results)
        for i = 1, n, 997 do assert.equal("NotFoundError", results[i].err.code) end
        local log = srv:log()
        assert.equal(n, #log)
        local overlap = max_overlap(log)
        assert.is_true(overlap <= 8, "the fake served " .. overlap .. " at once")
        assert.is_true(overlap >= 2, "the look-ups never ran side by side")
        assert.is_true(most >= 1 and most <= 8, "pending " .. most)
    end)

    it("c:each hands each result out as it completes, with its index in the list", function()
        local list = files(6)
        srv:fault { type = "slow", delay = 0.3, regex = list[2][2] }
        local order = {}
        for i, ok, obj in c:each(list, { concurrency = 3 }) do
            assert.is_true(ok)
            assert.equal(list[i][2], obj.id)
            order[#order + 1] = i
        end
        assert.equal(2, order[#order]) -- the slow one came out last, the others as they finished
        table.sort(order)
        assert.same({ 1, 2, 3, 4, 5, 6 }, order)
        assert.equal(6, #srv:log())
    end)

    it("c:each keeps `concurrency` requests in flight, no more", function()
        srv:fault { type = "slow", delay = 0.05, count = -1 } -- the fake serves slower than the client asks
        local most = 0
        local count = 0
        for _, ok, err in c:each(domains(40), { concurrency = 4 }) do
            assert.is_false(ok)
            assert.equal("NotFoundError", err.code)
            most = math.max(most, c:pending())
            count = count + 1
        end
        assert.equal(40, count)
        assert.is_true(most >= 1 and most <= 4, "pending " .. most)
        local overlap = max_overlap(srv:log())
        assert.is_true(overlap >= 2 and overlap <= 4, "the fake served " .. overlap .. " at once")
    end)

    it("c:each fails a malformed item without a request, and c:batch records it", function()
        local list = {
            { "domain", "a.example.org" }, { "domain", "bad..name" }, { "ip", "999.1.1.1" }, { "domain", "b.example.org" },
        }
        local failed = {}
        for i, ok, v in c:each(list) do
            if v.code == "InvalidArgument" then failed[#failed + 1] = i end
            assert.is_false(ok)
        end
        table.sort(failed)
        assert.same({ 2, 3 }, failed)
        local results = c:batch(list, { concurrency = 2 })
        assert.equal("InvalidArgument", results[2].err.code)
        assert.equal("InvalidArgument", results[3].err.code)
        assert.equal("NotFoundError", results[4].err.code)
        assert.equal(4, #srv:log()) -- two look-ups each time
    end)

    it("c:each and c:batch raise on a wrong item before any request", function()
        assert.has_error(function() c:each({ { "file", 42 } }) end, "each: item 1: the value must be a string (got number)")
        assert.has_error(function() c:each({ "x" }) end, "each: item 1 must be a table {kind, value}")
        assert.has_error(function() c:batch({ { "domain", "a.example.org" }, { "planet", "x" } }) end)
        assert.has_error(function() c:each({}, { concurrency = 0 }) end)
        assert.has_error(function() c:each({}, { workers = 2 }) end)
        assert.equal(0, #srv:log())
    end)

    it("c:each and c:batch raise on an item the list changed to a wrong shape after the start", function()
        local list = domains(6)
        local taken = 0
        assert.has_error(function()
            for _ in c:each(list, { concurrency = 1 }) do
                taken = taken + 1
                list[4] = 42 -- the loop's body spoils an item not yet started
            end
        end, "each: item 4 must be a table {kind, value}")
        assert.equal(2, taken) -- item 3 finished; taking it starts item 4, which raises
        assert.equal(0, c:pending())
        -- in coroutine mode another coroutine may change the list while a batch waits
        local cy = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = require("vt.loop").new(cy)
        list = domains(4)
        local task = loop:spawn(function() return cy:batch(list, { concurrency = 1 }) end)
        loop:spawn(function() list[3] = { "domain" } end)
        loop:run()
        cy:close()
        assert.is_false(task.ok)
        assert.matches("batch: item 3: the value must be a string %(got nil%)", tostring(task.error))
        assert.equal(3 + 2, #srv:log()) -- each started items 1 to 3; the batch 1 and 2
    end)

    it("a break out of c:each releases the requests in flight", function()
        srv:fault { type = "slow", delay = 0.2, count = -1 }
        local taken = 0
        for _ in c:each(domains(100), { concurrency = 4 }) do
            taken = taken + 1
            if taken == 1 then break end
        end
        assert.equal(1, taken)
        assert.equal(0, c:pending())
        srv:reset()
        assert.equal("NotFoundError", select(2, c:domain("after.example.org")).code) -- the client goes on
    end)

    it("c:each yields in coroutine mode, through vt.loop", function()
        local cy = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = require("vt.loop").new(cy)
        local list = files(5)
        local task = loop:spawn(function()
            local got = {}
            for i, ok in cy:each(list, { concurrency = 2 }) do
                assert(ok)
                got[#got + 1] = i
            end
            return got
        end)
        assert.is_false(task.done) -- it waited for the network by yielding
        loop:run()
        assert.is_true(task.ok, tostring(task.error))
        table.sort(task.results[1])
        assert.same({ 1, 2, 3, 4, 5 }, task.results[1])
        cy:close()
    end)

    it("c:each and c:batch keep to the limiter", function()
        local limited = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false,
                                    rate = { { n = 3, per = 0.25 } } }
        for _ in limited:each(domains(4), { concurrency = 4 }) do end
        limited:batch(domains(3), { concurrency = 4 })
        limited:close()
        local log = srv:log()
        assert.equal(7, #log)
        for i = 4, #log do -- no 3 requests before this one within a quarter of a second
            assert.is_true(log[i].mono - log[i - 3].mono >= 0.25, "request " .. i)
        end
    end)
end)
