-- c:add_comment and c:vote: POST /{collection}/{id}/comments and /votes, checked before any
-- request, answering the created object.
local vt = require "vt"
local fake = require "helpers.fake"
local samples = require "helpers.samples"

local EXE, IP, DOMAIN = samples.file, samples.ip, samples.domain

describe("comments and votes", function()
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

    it("posts a comment and answers the created comment, first in the object's comments", function()
        local cm = assert(c:add_comment("file", EXE:upper(), "Dropper seen in #Phishing <mail>"))
        assert.equal("comment", cm.type)
        assert.equal("Dropper seen in #Phishing <mail>", cm.attributes.text)
        assert.same({ "phishing" }, cm.attributes.tags)
        assert.equal("Dropper seen in #Phishing &lt;mail&gt;", cm.attributes.html)
        assert.equal("integer", math.type(cm.attributes.date))
        local log = srv:log()
        assert.equal(1, #log)
        assert.equal("POST", log[1].method)
        assert.equal("/api/v3/files/" .. EXE .. "/comments", log[1].path) -- the hash normalised
        assert.matches("^application/json", log[1].headers["content-type"])
        local first = samples.collect(function() return c:comments("file", EXE, { limit = 1, max = 1 }) end)
        assert.equal(cm.id, first[1].id)
    end)

    it("takes every kind, defanged indicators included", function()
        for _, case in ipairs {
            { "url", "hxxp://example[.]com/", "/api/v3/urls/" .. vt.url_id("http://example.com/") },
            { "domain", "HAIKU-OS[.]org", "/api/v3/domains/" .. DOMAIN },
            { "ip", "8[.]8.8.8", "/api/v3/ip_addresses/" .. IP },
            { "files", EXE, "/api/v3/files/" .. EXE },
        } do
            srv:reset()
            assert(c:add_comment(case[1], case[2], "checked"))
            assert.equal(case[3] .. "/comments", srv:log()[1].path)
        end
    end)

    it("votes, answering the vote; the object counts it", function()
        local before = assert(c:ip(IP)).attributes.total_votes
        local v = assert(c:vote("ip", IP, "malicious"))
        assert.equal("vote", v.type)
        assert.equal("malicious", v.attributes.verdict)
        assert.equal(-1, v.attributes.value)
        local h = assert(c:vote("domain", DOMAIN, "harmless"))
        assert.equal(1, h.attributes.value)
        local after = assert(c:ip(IP)).attributes.total_votes
        assert.equal(before.malicious + 1, after.malicious)
        assert.equal(before.harmless, after.harmless)
        local posts = {}
        for _, e in ipairs(srv:log()) do
            if e.method == "POST" then posts[#posts + 1] = e.path end
        end
        assert.same({ "/api/v3/ip_addresses/" .. IP .. "/votes", "/api/v3/domains/" .. DOMAIN .. "/votes" }, posts)
    end)

    it("checks kind, id, text and verdict before any request", function()
        assert.has_error(function() c:add_comment("analysis", EXE, "x") end)
        assert.has_error(function() c:vote("file", EXE, nil) end)
        for _, call in ipairs {
            function() return c:add_comment("file", "abc", "x") end,
            function() return c:add_comment("domain", "localhost", "x") end,
            function() return c:add_comment("ip", IP, "   ") end,
            function() return c:vote("url", "http://", "harmless") end,
            function() return c:vote("ip", IP, "clean") end,
        } do
            local v, err = call()
            assert.is_nil(v)
            assert.equal("InvalidArgument", err.code)
        end
        assert.equal(0, #srv:log())
    end)

    it("passes the service's refusal on (an object it does not know)", function()
        local v, err = c:vote("file", ("0"):rep(64), "harmless")
        assert.is_nil(v)
        assert.equal("NotFoundError", err.code)
        assert.equal(404, err.http)
    end)

    it("yields in coroutine mode", function()
        local yc = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
        local loop = require("vt.loop").new(yc)
        local task = loop:spawn(function()
            return yc:add_comment("ip", IP, "from a task"), yc:vote("ip", IP, "harmless")
        end)
        loop:run()
        assert.is_true(task.ok, tostring(task.error))
        assert.equal("from a task", task.results[1].attributes.text)
        assert.equal("harmless", task.results[2].attributes.verdict)
        yc:close()
    end)
end)
