-- The JSON decoder (src/json.c) through vt.decode: what a response body becomes in Lua.
local vt = require "vt"
local cjson = require "cjson"

describe("JSON decoding", function()
    it("hands integral numbers back as integers and fractions as floats", function()
        local v = assert(vt.decode('{"a": 10, "b": -3, "c": 1.5, "d": 1.0, "e": 1e3, "f": -0, "g": 2.5e-1}'))
        assert.equal("integer", math.type(v.a))
        assert.equal(-3, v.b)
        assert.equal("float", math.type(v.c))
        assert.equal(1.5, v.c)
        assert.equal("integer", math.type(v.d)) -- integral, however written
        assert.equal(1, v.d)
        assert.equal("integer", math.type(v.e))
        assert.equal(1000, v.e)
        assert.equal("integer", math.type(v.f))
        assert.equal(0.25, v.g)
    end)

    it("keeps every 64-bit integer exact and makes bigger numbers floats", function()
        assert.equal(9007199254740993, vt.decode("9007199254740993")) -- 2^53 + 1: no float holds it
        assert.equal(math.maxinteger, vt.decode("9223372036854775807"))
        assert.equal(math.mininteger, vt.decode("-9223372036854775808"))
        local big = vt.decode("9223372036854775808")
        assert.equal("float", math.type(big))
        assert.equal(2 ^ 63, big)
        assert.equal("float", math.type(vt.decode("12345678901234567890123")))
        assert.equal(math.huge, vt.decode("1e400"))
    end)

    it("reads strings with escapes, \\u escapes and surrogate pairs into UTF-8", function()
        assert.equal('a"b\\c/d\b\f\n\r\t', vt.decode('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"'))
        assert.equal("é€😀", vt.decode('"\\u00e9\\u20AC\\ud83d\\ude00"'))
        assert.equal("a\0b", vt.decode('"a\\u0000b"'))
        assert.equal("tab\there", vt.decode('"tab\there"')) -- a raw control character passes, as in lua-cjson
    end)

    it("gives null as vt.null, which is lua-cjson's cjson.null", function()
        local v = assert(vt.decode('{"x": null, "l": [null, true, false]}'))
        assert.equal(vt.null, v.x)
        assert.equal(cjson.null, v.x)
        assert.same({ vt.null, true, false }, v.l)
    end)

    it("lets the last of repeated keys win", function()
        assert.equal(2, vt.decode('{"a": 1, "a": 2}').a)
    end)

    it("decodes long arrays and objects whole, in order", function()
        local items, members = {}, {}
        for i = 1, 10000 do
            items[i] = tostring(i * 3)
            members[i] = ('"k%d": %d'):format(i % 7000, i) -- keys k1..k3000 come twice, far apart
        end
        local list = assert(vt.decode("[" .. table.concat(items, ",") .. "]"))
        assert.equal(10000, #list)
        for i = 1, 10000 do assert.equal(i * 3, list[i]) end
        local obj = assert(vt.decode("{" .. table.concat(members, ",") .. "}"))
        local n = 0
        for _ in pairs(obj) do n = n + 1 end
        assert.equal(7000, n)
        assert.equal(7001, obj.k1)     -- the last of the two
        assert.equal(10000, obj.k3000)
        assert.equal(3001, obj.k3001)  -- only once
        assert.equal(7000, obj.k0)
    end)

    it("decodes 1000 levels of nesting and refuses 1001", function()
        assert.is_table(vt.decode(("["):rep(1000) .. ("]"):rep(1000)))
        local v, err = vt.decode(("["):rep(1001) .. ("]"):rep(1001))
        assert.is_nil(v)
        assert.matches("nested too deeply", err.message)
    end)

    it("refuses what is not JSON, saying what and where", function()
        for _, text in ipairs {
            "", "   ", "{x", "[1,]", '{"a":1,}', "[1 2]", '{"a" 1}', "01", "1.", ".5", "+1", "tru", "nulll",
            "NaN", "Infinity", "0x10", '"\\x"', '"abc', '"\\ud83d"', '"\\ude00"', "[1] x", '"a\0b"', "[1,\0]",
        } do
            local v, err = vt.decode(text)
            assert.is_nil(v, text)
            assert.equal("InvalidArgument", err.code)
            assert.matches("not valid JSON %(.+ at byte %d+%)", err.message)
        end
        assert.matches("at byte 4%)", select(2, vt.decode("[1,]")).message)
    end)

    it("decodes every recorded response the same as lua-cjson does, integers restored", function()
        local function restored(v)
            if math.type(v) == "float" and v == math.floor(v) and math.tointeger(v) then return math.tointeger(v) end
            if type(v) ~= "table" then return v end
            local out = {}
            for k, x in pairs(v) do out[k] = restored(x) end
            return out
        end
        local p = io.popen("ls spec/fake/samples/v3/*.json spec/fake/samples/v2/*.json")
        local n = 0
        for path in p:lines() do
            local f = assert(io.open(path, "rb"))
            local text = f:read("a")
            f:close()
            assert.same(restored(cjson.decode(text)), assert(vt.decode(text)), path)
            n = n + 1
        end
        p:close()
        assert.is_true(n > 10)
    end)
end)

describe("JSON numbers under a locale with a decimal comma", function()
    local host = os.setlocale(nil, "numeric")
    local comma = os.setlocale("de_DE.UTF-8", "numeric")
    os.setlocale(host, "numeric")
    if not comma then
        pending("the de_DE.UTF-8 locale is not generated here (tools/deps.sh test makes it)")
        return
    end
    before_each(function() os.setlocale("de_DE.UTF-8", "numeric") end)
    after_each(function() os.setlocale(host, "numeric") end)

    it("still reads and writes JSON's decimal point", function()
        assert.equal("0,5", tostring(0.5)) -- the host's conventions are in force
        assert.equal("[0.5,-2.25,1e+300]", vt.encode({ 0.5, -2.25, 1e300 }))
        local v = assert(vt.decode('{"a": 0.5, "b": 2.5e-1, "c": [7, 0.' .. ("1"):rep(250) .. ']}'))
        assert.same({ 0.5, 0.25, 7 }, { v.a, v.b, v.c[1] })
        assert.is_true(math.abs(v.c[2] - 1 / 9) < 1e-15)
    end)
end)
