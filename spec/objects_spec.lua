-- Objects that read well (SPEC 9): every v3 object a look-up or an iterator hands out carries a
-- metatable with a one-line tostring and attributes readable as fields, and stays the
-- service's JSON otherwise.
local vt = require "vt"
local fake = require "helpers.fake"

local DOC = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c" -- MS Word, 53/62
local EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local URL_ANALYSIS = "u-2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067-1569484202"

describe("objects", function()
    local srv, c
    setup(function()
        srv = fake.start { analysis_steps = 0 }
        c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, poll_interval = 0.01 }
    end)
    teardown(function()
        c:close()
        srv:stop()
    end)

    it("print as one line saying what they are", function()
        assert.equal("file 001015aa… doc 53/62 malicious, last analysis 2020-04-10", tostring(assert(c:file(DOC))))
        assert.equal("url http://example.com/ 0/71 malicious, last analysis 2019-10-19",
            tostring(assert(c:url("http://example.com/"))))
        assert.equal("domain haiku-os.org 0/94 malicious, last analysis 2025-03-15",
            tostring(assert(c:domain("haiku-os.org"))))
        assert.equal("ip_address 8.8.8.8 0/94 malicious", tostring(assert(c:ip("8.8.8.8"))))
        -- 1.1.1.1's recorded object has no analysis of its own
        assert.equal("ip_address 1.1.1.1 not analysed", tostring(assert(c:ip("1.1.1.1"))))
        assert.equal("analysis u-2a1b40… completed 71 results, 0 malicious",
            tostring(assert(c:analysis(URL_ANALYSIS))))
    end)

    it("read an attribute as a field when the top level has no such key", function()
        local f = assert(c:file(DOC))
        assert.equal(f.attributes.last_analysis_stats, f.last_analysis_stats)
        assert.equal(53, f.last_analysis_stats.malicious)
        assert.equal("doc", f.type_tag)
        -- the top level wins: `type` is the object's, not an attribute
        assert.equal("file", f.type)
        assert.is_nil(f.no_such_attribute)
        assert.is_nil(rawget(f, "last_analysis_stats"))
    end)

    it("stay the service's JSON: pairs sees its fields only, vt.encode writes them back", function()
        local f = assert(c:file(DOC))
        local keys = {}
        for k in pairs(f) do
            keys[#keys + 1] = k
        end
        table.sort(keys)
        assert.same({ "attributes", "id", "links", "type" }, keys)
        local body = assert(c:request("GET", "/files/" .. DOC))
        assert.same(body.data, vt.decode(vt.encode(f)))
        assert.is_nil(getmetatable(body.data)) -- c:request is the raw answer
    end)

    it("come out of batches, iterators and submissions the same way", function()
        local results = c:batch { { "file", EMPTY }, { "domain", "haiku-os.org" }, { "file", ("0"):rep(64) } }
        assert.equal("file e3b0c442… text 0/76 malicious, last analysis 2023-11-14", tostring(results[1].value))
        assert.equal(94, results[2].value.last_analysis_stats.harmless + results[2].value.last_analysis_stats.undetected)
        assert.equal("NotFoundError", results[3].err.code)
        for comment in c:comments("domain", "haiku-os.org", { max = 1 }) do
            assert.matches("^comment d%-haiku%-os%.org%-%x+: Fake comment 1 on haiku%-os%.org #fakevt$", tostring(comment))
            assert.is_string(comment.text)
        end
        for r in c:related("domain", "github.com", "resolutions", { max = 1 }) do
            assert.equal("resolution " .. r.id, tostring(r))
            assert.equal("github.com", r.host_name)
        end
        for hit in c:search(DOC) do
            assert.equal(tostring(assert(c:file(DOC))), tostring(hit))
        end
        local d = assert(c:scan_file { data = "objects spec" })
        assert.matches("^analysis %S+…$", tostring(d)) -- a descriptor: no status yet
        local a = assert(c:wait(d.id))
        assert.matches("^analysis %S+… completed %d+ results, 0 malicious$", tostring(a))
        assert.equal("completed", a.status)
    end)

    it("come out of feeds the same way", function()
        srv:feeds { now = "202401011300", running = false, count = 2 }
        for obj in assert(c:feed("files", "202401011130")) do
            assert.matches("^file %x+… %S+ %d+/%d+ malicious", tostring(obj))
            assert.equal(obj.attributes.size, obj.size)
        end
    end)

    it("cut long text on a character boundary and keep to one line", function()
        local text = "line one\n" .. ("é"):rep(40)
        assert(c:request("POST", "/domains/virustotal.com/comments",
            { json = { data = { type = "comment", attributes = { text = text } } } }))
        local line
        for comment in c:comments("domain", "virustotal.com", { max = 1 }) do -- the newest first
            line = tostring(comment)
        end
        assert.is_nil(line:find("\n"))
        assert.truthy(utf8.len(line), "cut inside a character: " .. line)
        assert.matches("^comment %S+: line one [\xC3\xA9]+…$", line)
    end)

    it("print their summary and then their fields with vt.pp", function()
        local text = require("vt.pp").format(assert(c:ip("8.8.8.8")), 1)
        local first, rest = text:match("^([^\n]*)\n(.*)$")
        assert.equal("ip_address 8.8.8.8 0/94 malicious", first)
        assert.matches("\n  type: ip_address", "\n" .. rest)
        assert.matches("  attributes: {%d+ keys}", rest)
    end)

    it("leave errors and other values alone", function()
        local _, err = c:file(("0"):rep(64))
        assert.equal("vt.error", getmetatable(err).__name)
        assert.is_nil(getmetatable(assert(c:quotas())))
    end)
end)
