-- vt.pp: the text it prints for objects the fake VirusTotal serves, errors, the version and
-- quota tables, and crafted tables (cycles, null, quoting, cuts, depth).
local vt = require "vt"
local pp = require "vt.pp"
local fake = require "helpers.fake"

local DOC = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c" -- the MS Word sample

local function lines_of(text)
    local lines = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do
        lines[#lines + 1] = line
    end
    return lines
end

-- The index of the first line equal to `want`, or nil.
local function find_line(lines, want)
    for i, line in ipairs(lines) do
        if line == want then
            return i
        end
    end
end

describe("vt.pp", function()
    local srv, c

    setup(function()
        srv = fake.start { analysis_steps = 0 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, requests_per_minute = 30,
            retry_base = 0.01 }
    end)

    teardown(function()
        c:close()
        srv:stop()
    end)

    it("is a function of the vt table that prints to io.stdout and returns nothing", function()
        assert.equal(pp.pp, vt.pp)
        -- in a child Lua, whose stdout is a pipe: the text, then the number of values returned
        local script = 'local vt = require "vt" local n = select("#", vt.pp {b = 2, a = 1}) print(n)'
        local child = io.popen(("LUA_PATH=%q LUA_CPATH=%q lua5.4 -e %q"):format(package.path, package.cpath, script))
        local out = child:read("a")
        assert.is_true(child:close())
        assert.equal("a: 1\nb: 2\n0\n", out)
    end)

    describe("an object from a look-up", function()
        local summary, fields, lines

        setup(function()
            local all = lines_of(pp.format(assert(c:file(DOC))))
            -- its one-line summary, then its fields indented under it; `lines` are those fields
            -- one level up, so that the positions below read as the object's own levels
            summary, fields, lines = all[1], table.move(all, 2, #all, 1, {}), {}
            for i, line in ipairs(fields) do
                lines[i] = line:match("^  (.*)$")
            end
        end)

        it("shows its summary, then the one-line fields, then attributes and links, each level indented", function()
            assert.equal("file 001015aa… doc 53/62 malicious, last analysis 2020-04-10", summary)
            for i, line in ipairs(fields) do
                assert.equal("  " .. lines[i], line)
            end
            assert.equal("id: " .. DOC, lines[1])
            assert.equal("type: file", lines[2])
            local attributes, links = find_line(lines, "attributes:"), find_line(lines, "links:")
            assert.equal(3, attributes)
            assert.truthy(links > attributes)
            assert.truthy(find_line(lines, "  meaningful_name: cDCUTY.tmp"))
            assert.truthy(find_line(lines, "  size: 64000"))
            assert.truthy(find_line(lines, "    malicious: 53"))
        end)

        it("sorts keys, the one-line entries before the nested ones", function()
            local md5, sha1, size = find_line(lines, "  md5: b214da9f6b0d6e6de5090b3f9672defe"),
                find_line(lines, "  sha1: b7162dfcbcac2724c71c03385abe577e1ab0cd8d"), find_line(lines, "  size: 64000")
            assert.truthy(md5 < sha1 and sha1 < size)
            local results = find_line(lines, "  last_analysis_results:")
            local stats = find_line(lines, "  last_analysis_stats:")
            assert.truthy(size < results and results < stats)
        end)

        it("gives dates in UTC beside the epoch seconds of *_date fields", function()
            assert.truthy(find_line(lines, "  last_analysis_date: 1586546645 (2020-04-10 19:24:05 UTC)"))
            assert.truthy(find_line(lines, "  times_submitted: 19"))
        end)

        it("cuts the long map of engine results, and puts short lists on one line", function()
            local results = find_line(lines, "  last_analysis_results:")
            assert.equal("    ALYac: {6 keys}", lines[results + 1])
            assert.equal("    … 65 more", lines[results + 11])
            assert.truthy(find_line(lines, "  tags: [obfuscated, macros, doc]"))
            assert.truthy(find_line(lines, "    - {file_type: Microsoft Word document, probability: 52.6}"))
        end)

        it("quotes and cuts a long string", function()
            local magic
            for _, line in ipairs(lines) do
                magic = magic or line:match('^  magic: (".*)$')
            end
            assert.matches('^"CDF V2 Document, Little Endian, .*"… %d+ more bytes$', magic)
        end)

        it("summarises tables below the depth asked for", function()
            local short = lines_of(pp.format(assert(c:file(DOC)), 1))
            assert.same({ summary, "  id: " .. DOC, "  type: file", "  attributes: {28 keys}", "  links: {1 key}" },
                short)
        end)
    end)

    it("prints an object's fields, not only its summary, when its metatable has a __tostring", function()
        local obj = assert(c:domain("haiku-os.org"))
        local attributes = obj.attributes
        setmetatable(obj, {
            __tostring = function(o) return "domain " .. rawget(o, "id") end,
            __index = function(_, k) return attributes[k] end,
        })
        local lines = lines_of(pp.format(obj))
        assert.equal("domain haiku-os.org", lines[1])
        assert.equal("  id: haiku-os.org", lines[2])
        assert.truthy(find_line(lines, "    registrar: NameCheap, Inc."))
        assert.is_nil(find_line(lines, "  registrar: NameCheap, Inc.")) -- __index adds no fields
        -- inside a list, below the depth, such an object is its summary
        assert.equal("- domain haiku-os.org", pp.format({ obj }, 0 + 1):match("^[^\n]*"))
        assert.equal("[domain haiku-os.org]", pp.format({ obj }, 0))
    end)

    it("prints an error as its one-line tostring", function()
        local _, err = c:domain("no-such-domain.org")
        assert.equal('NotFoundError (HTTP 404): Domain "no-such-domain.org" not found', pp.format(err))
        assert.equal("failure: " .. tostring(err), pp.format { failure = err })
        local made = vt.error("InvalidArgument", "bad thing", { http = 400 })
        assert.equal(tostring(made), pp.format(made))
    end)

    it("prints vt.versions() one sorted line each", function()
        local v = vt.versions()
        local lines = lines_of(pp.format(v))
        local keys = {}
        for k in pairs(v) do
            keys[#keys + 1] = k
        end
        table.sort(keys)
        assert.equal(#keys, #lines)
        for i, k in ipairs(keys) do
            assert.equal(k .. ": " .. tostring(v[k]), lines[i])
        end
    end)

    it("prints c:quota_status() as a list of windows", function()
        assert(c:ip("8.8.8.8"))
        local lines = lines_of(pp.format(c:quota_status()))
        assert.equal("windows:", lines[1])
        assert.equal("  - kind: sliding", lines[2])
        assert.truthy(find_line(lines, "    n: 30"))
        assert.truthy(find_line(lines, "    per: 60"))
        assert.truthy(find_line(lines, "    used: " .. #srv:log()))
    end)

    it("marks a table met again inside itself, and stops", function()
        local t = { name = "loop" }
        t.self = t
        t.list = { t, { back = t } }
        assert.equal("name: loop\nself: <cycle>\nlist:\n  - <cycle>\n  - back: <cycle>", pp.format(t))
        assert.equal("name: loop\nself: <cycle>\nlist: [<cycle>, {back: <cycle>}]", pp.format(t, 1))
    end)

    it("shows the same table twice when it is not a cycle", function()
        local shared = { x = 1 }
        assert.equal("a:\n  x: 1\nb:\n  x: 1", pp.format { a = shared, b = shared })
    end)

    it("prints JSON null as null, and plain values as themselves", function()
        assert.equal("null", pp.format(vt.null))
        assert.equal("gone: null", pp.format { gone = vt.null })
        assert.equal("nil", pp.format(nil))
        assert.equal("true", pp.format(true))
        assert.equal("42", pp.format(42))
        assert.equal("2.5", pp.format(2.5))
        assert.equal("{}", pp.format {})
        assert.matches("^vt%.client %(v3 ", pp.format(c))
    end)

    it("quotes strings where bare text would mislead", function()
        assert.equal("plain words", pp.format "plain words")
        assert.equal('""', pp.format "")
        assert.equal('"12"', pp.format "12")
        assert.equal('"true"', pp.format "true")
        assert.equal('"null"', pp.format "null")
        assert.equal('" edge"', pp.format " edge")
        assert.equal('"two\\nlines\\ttab"', pp.format "two\nlines\ttab")
        assert.equal('"say \\"hi\\""', pp.format 'say "hi"')
        assert.equal('"- dash"', pp.format "- dash")
        assert.equal('"a: b": 1', pp.format { ["a: b"] = 1 })
        assert.equal("[3]: x\nname: y", pp.format { [3] = "x", name = "y" })
    end)

    it("cuts a string after 160 bytes without splitting a UTF-8 character", function()
        assert.equal('"' .. ("x"):rep(160) .. '"… 40 more bytes', pp.format(("x"):rep(200)))
        local text = pp.format(("x"):rep(159) .. "é" .. ("y"):rep(10)) -- é is 2 bytes at 160-161
        assert.equal('"' .. ("x"):rep(159) .. '"… 12 more bytes', text)
    end)

    it("cuts lists of more than 12 items to 10", function()
        local twelve, twenty = {}, {}
        for i = 1, 20 do
            twenty[i] = { n = i, pad = ("p"):rep(80) } -- too wide for one line
            twelve[i <= 12 and i or 12] = twenty[i]
        end
        local lines = lines_of(pp.format(twenty))
        assert.equal(21, #lines)
        assert.equal("- n: 1", lines[1])
        assert.equal("- n: 10", lines[19])
        assert.equal("… 10 more", lines[21])
        assert.equal(24, #lines_of(pp.format(twelve)))
        local numbers = {}
        for i = 1, 30 do
            numbers[i] = i
        end
        assert.equal("numbers: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, … 20 more]", pp.format { numbers = numbers })
    end)

    it("limits nesting to depth levels (3 by default)", function()
        local deep = { a = { b = { c = { d = { e = 1 } } } } }
        assert.equal("a:\n  b:\n    c: {d: {e: 1}}", pp.format(deep))
        assert.equal("a:\n  b: {c: {d: {e: 1}}}", pp.format(deep, 2))
        assert.equal("{a: {b: {c: {d: {e: 1}}}}}", pp.format(deep, 0))
        assert.equal("a:\n  b:\n    c:\n      d:\n        e: 1", pp.format(deep, 10))
        local wide = { a = { b = { c = { d = ("w"):rep(90) } } } }
        assert.equal("a:\n  b: {1 key}", pp.format(wide, 2))
    end)

    it("raises on a depth that is not a whole number of 0 or more", function()
        assert.has_error(function() pp.format({}, -1) end,
            "bad argument #2 to 'format' (depth must be a whole number, 0 or more)")
        assert.has_error(function() vt.pp({}, 1.5) end,
            "bad argument #2 to 'pp' (depth must be a whole number, 0 or more)")
        assert.has_error(function() vt.pp({}, "2") end)
    end)
end)
