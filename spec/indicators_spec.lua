-- vt.url_id, vt.hash_type, vt.refang, vt.ip_version, vt.is_private_ip (src/indicators.c).
--
-- Decisions these tests pin down:
--  * An IPv4 octet with a leading zero ("010.0.0.1") is not an address: some
--    parsers read it as octal, others as decimal.
--  * IPv6 zone ids ("fe80::1%eth0") are not addresses: they mean something on
--    one host only, and VirusTotal cannot look them up.
--  * Nothing that is not an address is private: is_private_ip says false.
--  * refang makes one pass over its input, and turns a scheme back only when it
--    is a whole word followed by ':' or '['.
local vt = require "vt"

local MB = 1024 * 1024

-- An independent, deliberately naive base64url (RFC 4648 §5, no padding) to
-- check url_id against on inputs no published id covers.
local function reference_base64url(s)
    local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    local bits = {}
    for i = 1, #s do
        local byte = s:byte(i)
        for b = 7, 0, -1 do bits[#bits + 1] = (byte >> b) & 1 end
    end
    while #bits % 6 ~= 0 do bits[#bits + 1] = 0 end
    local out = {}
    for i = 1, #bits, 6 do
        local v = 0
        for j = i, i + 5 do v = v * 2 + bits[j] end
        out[#out + 1] = alphabet:sub(v + 1, v + 1)
    end
    return table.concat(out)
end

-- Every helper takes exactly a string: anything else is a programming error.
local function it_rejects_non_strings(name)
    it("raises for a non-string argument", function()
        local f = vt[name]
        for _, bad in ipairs { 42, 1.5, true, {}, print, io.stdout } do
            assert.has_error(function() f(bad) end)
        end
        assert.has_error(function() f(nil) end)
        assert.has_error(function() f() end)
        local ok, err = pcall(f, 10)
        assert.is_false(ok)
        assert.matches("string expected, got number", err)
    end)
end

describe("vt.url_id", function()
    it("gives the identifiers VirusTotal uses", function()
        assert.equal("aHR0cDovL2V4YW1wbGUuY29tLw", vt.url_id("http://example.com/"))
        -- A real request id from a recorded session: '_' where standard base64 has '/'.
        assert.equal(
            "aHR0cHM6Ly93d3cuZHJvcGJveC5jb20vcy9xbWkxMTJyYzRuczc1ZWIvQ29uZmlkZW50aWFsXzEyMy54bHM_ZGw9MQ",
            vt.url_id("https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1"))
    end)

    it("uses the URL-safe alphabet and no padding", function()
        assert.equal("aHR0cHM6Ly9leGFtcGxlLmNvbS9-fn4", vt.url_id("https://example.com/~~~"))
        assert.equal("aHR0cDovL2V4YW1wbGUuY29tLz9xPT4-Pg", vt.url_id("http://example.com/?q=>>>"))
        assert.equal("aHR0cDovL2EvP3g9-_8", vt.url_id("http://a/?x=\xfb\xff"))
        for _, url in ipairs { "a", "ab", "abc", "abcd", "http://x.y/\xff\xfe\xfd" } do
            assert.not_matches("[=+/]", vt.url_id(url))
        end
    end)

    it("encodes every byte value and tail length like a reference encoder", function()
        local all = {}
        for b = 0, 255 do all[#all + 1] = string.char(b) end
        all = table.concat(all)
        for len = 0, 66 do
            local s = all:sub(256 - len + 1)
            assert.equal(reference_base64url(s), vt.url_id(s))
        end
        assert.equal(reference_base64url(all), vt.url_id(all))
    end)

    it("keeps embedded NULs", function()
        assert.equal("YQBi", vt.url_id("a\0b"))
        assert.equal("AAAA", vt.url_id("\0\0\0"))
        assert.equal("AA", vt.url_id("\0"))
    end)

    it("maps the empty string to the empty id", function()
        assert.equal("", vt.url_id(""))
    end)

    it("handles a 1 MB URL", function()
        -- A 21-byte head (a multiple of 3) encodes on its own, then each "aaa" is "YWFh".
        local head = "http://example.com/xx"
        local url = head .. ("aaa"):rep(MB // 3)
        assert.equal(vt.url_id(head) .. ("YWFh"):rep(MB // 3), vt.url_id(url))
        assert.equal(vt.url_id(head) .. ("YWFh"):rep(MB // 3) .. "YQ", vt.url_id(url .. "a"))
    end)

    it_rejects_non_strings("url_id")
end)

describe("vt.hash_type", function()
    local md5 = "d41d8cd98f00b204e9800998ecf8427e"
    local sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    local sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    it("names each hash by its length", function()
        assert.equal("md5", vt.hash_type(md5))
        assert.equal("sha1", vt.hash_type(sha1))
        assert.equal("sha256", vt.hash_type(sha256))
    end)

    it("accepts upper and mixed case", function()
        assert.equal("md5", vt.hash_type(md5:upper()))
        assert.equal("sha1", vt.hash_type(sha1:upper()))
        assert.equal("sha256", vt.hash_type(sha256:upper()))
        assert.equal("sha256", vt.hash_type("E3b0C44298fc1c149AFBF4c8996fb92427ae41e4649b934cA495991b7852B855"))
        assert.equal("md5", vt.hash_type("0123456789abcdefABCDEF0123456789"))
    end)

    it("returns nil for other lengths", function()
        for _, len in ipairs { 0, 1, 31, 33, 39, 41, 48, 56, 63, 65, 96, 128 } do
            assert.is_nil(vt.hash_type(("a"):rep(len)), "length " .. len)
        end
    end)

    it("returns nil for anything but bare hex digits", function()
        assert.is_nil(vt.hash_type(("g"):rep(32)))
        assert.is_nil(vt.hash_type(md5:sub(1, 31) .. "z"))
        assert.is_nil(vt.hash_type("z" .. sha1:sub(2)))
        assert.is_nil(vt.hash_type(" " .. md5:sub(2)))
        assert.is_nil(vt.hash_type(md5 .. " "))
        assert.is_nil(vt.hash_type(md5 .. "\n"))
        assert.is_nil(vt.hash_type(" " .. md5))
        assert.is_nil(vt.hash_type("0x" .. md5:sub(3)))
        assert.is_nil(vt.hash_type("0x" .. md5))
        assert.is_nil(vt.hash_type(sha256:sub(1, 63) .. "-"))
        assert.is_nil(vt.hash_type(sha256:sub(1, 32) .. ":" .. sha256:sub(34)))
    end)

    it("returns nil when a NUL hides inside", function()
        assert.is_nil(vt.hash_type(md5:sub(1, 31) .. "\0"))
        assert.is_nil(vt.hash_type(md5:sub(1, 16) .. "\0" .. md5:sub(18)))
        assert.is_nil(vt.hash_type(md5 .. "\0"))
        assert.is_nil(vt.hash_type(("\0"):rep(64)))
    end)

    it("returns nil for a 1 MB string", function()
        assert.is_nil(vt.hash_type(("a"):rep(MB)))
    end)

    it_rejects_non_strings("hash_type")
end)

describe("vt.refang", function()
    it("undoes defanged schemes in any case", function()
        assert.equal("http://evil.example", vt.refang("hxxp://evil.example"))
        assert.equal("https://evil.example", vt.refang("hxxps://evil.example"))
        assert.equal("https://evil.example", vt.refang("hXXps://evil.example"))
        assert.equal("http://evil.example", vt.refang("HXXP://evil.example"))
        assert.equal("ftp://files.example", vt.refang("fxp://files.example"))
        assert.equal("ftp://files.example", vt.refang("FXP://files.example"))
    end)

    it("undoes bracketed dots, colons and at signs", function()
        assert.equal("evil.example.com", vt.refang("evil[.]example[.]com"))
        assert.equal("evil.example.com", vt.refang("evil(.)example{.}com"))
        assert.equal("evil.example.com", vt.refang("evil[dot]example(dot)com"))
        assert.equal("evil.example.com", vt.refang("evil[DOT]example(Dot)com"))
        assert.equal("evil.example.com", vt.refang("evil{dot}example{DOT}com"))
        assert.equal("user@evil.example", vt.refang("user[@]evil[.]example"))
        assert.equal("user@evil.example", vt.refang("user[at]evil[.]example"))
        assert.equal("user@evil.example", vt.refang("user[AT]evil[.]example"))
        assert.equal("10.0.0.1", vt.refang("10[.]0[.]0[.]1"))
    end)

    it("undoes defanged scheme separators", function()
        assert.equal("https://evil.example/x", vt.refang("hxxps[:]//evil[.]example/x"))
        assert.equal("https://evil.example/x", vt.refang("hxxps[://]evil[.]example/x"))
        assert.equal("http://evil.example", vt.refang("http[://]evil.example"))
        assert.equal("http://evil.example", vt.refang("http[:]//evil.example"))
        assert.equal("http://[2001:db8::1]:8080/", vt.refang("hxxp[:]//[2001:db8::1]:8080/"))
    end)

    it("refangs every indicator in a longer text", function()
        assert.equal("seen https://a.example/p and http://b.example, mail x@c.example; ftp://d.example",
            vt.refang("seen hxxps[:]//a[.]example/p and hXXp://b(.)example, mail x[at]c[dot]example; fxp[://]d{.}example"))
    end)

    it("leaves other text intact", function()
        for _, s in ipairs {
            "", "plain text", "http://already.fine/path?q=[x]", "the hxxp tool", "shxxp://x", "hxxpx://x",
            "hxxp", "hxxp ", "[", "[.", "[dot", "(d0t)", "[ . ]", "array[i]", "f(x)", "{}", "a[b.]c",
            "exhxxps://not.a.scheme", "fxpa://x", "hxxps", "\xff\xfe[\0]",
        } do
            assert.equal(s, vt.refang(s))
        end
    end)

    it("makes one pass: what a replacement forms is not refanged again", function()
        assert.equal("[.]", vt.refang("[[.]]"))
        assert.equal("http[:]//x", vt.refang("hxxp[[:]]//x"))
    end)

    it("keeps embedded NULs", function()
        assert.equal(".\0.", vt.refang("[.]\0[.]"))
        assert.equal("a\0b", vt.refang("a\0b"))
        assert.equal("[.\0]", vt.refang("[.\0]"))
        assert.equal("\0https://x", vt.refang("\0hxxps://x"))
    end)

    it("handles 1 MB strings", function()
        local plain = ("abc.def "):rep(MB // 8)
        assert.equal(plain, vt.refang(plain))
        assert.equal(("."):rep(MB // 4), vt.refang(("[.]x"):rep(MB // 4):gsub("x", "")))
        local defanged = ("a[.]b "):rep(MB // 6)
        assert.equal(("a.b "):rep(MB // 6), vt.refang(defanged))
    end)

    it_rejects_non_strings("refang")
end)

describe("vt.ip_version", function()
    it("recognises IPv4 dotted quads", function()
        for _, s in ipairs { "1.2.3.4", "0.0.0.0", "255.255.255.255", "8.8.8.8", "192.168.0.1", "10.0.0.10" } do
            assert.equal(4, vt.ip_version(s), s)
        end
    end)

    it("refuses malformed IPv4", function()
        for _, s in ipairs {
            "256.1.1.1", "1.2.3.256", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.", ".1.2.3", "1.2.3.4.",
            "-1.2.3.4", "+1.2.3.4", "1.2.3.-4", "0x7f.0.0.1", "0x7f000001", "2130706433", "1.2.3.4/24",
            "1.2.3.4:80", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1. 2.3.4", "a.b.c.d", "１.２.３.４",
            "1.2.3.1234", "99999999999.1.1.1",
        } do
            assert.is_nil(vt.ip_version(s), s)
        end
    end)

    it("refuses leading zeros in an IPv4 octet (octal to some parsers, decimal to others)", function()
        for _, s in ipairs { "010.0.0.1", "01.2.3.4", "1.2.3.04", "1.2.3.00", "0.0.0.00", "192.168.001.001" } do
            assert.is_nil(vt.ip_version(s), s)
        end
    end)

    it("recognises IPv6 in full, compressed and mixed forms", function()
        for _, s in ipairs {
            "::", "::1", "1::", "1:2:3:4:5:6:7:8", "2001:db8::1", "2001:DB8::1", "fe80::1",
            "0000:0000:0000:0000:0000:0000:0000:0001", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "::ffff:10.0.0.1", "::ffff:1.2.3.4", "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4", "64:ff9b::192.0.2.33", "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:255.255.255.255",
        } do
            assert.equal(6, vt.ip_version(s), s)
        end
    end)

    it("refuses malformed IPv6", function()
        for _, s in ipairs {
            "1:2:3:4:5:6:7:8:9", "::1::", "1::2::3", "1:::2", ":::", ":1::", "1:", ":1", "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "00001::", "12345::", "g::1", "1::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.4.5", "::ffff:256.1.1.1", "::ffff:01.2.3.4",
            "::1.2.3", "1.2.3.4::", "[::1]", "[::1]:80", "::1/128", " ::1", "::1 ", ":",
        } do
            assert.is_nil(vt.ip_version(s), s)
        end
    end)

    it("refuses zone ids (they only mean something on one host)", function()
        assert.is_nil(vt.ip_version("fe80::1%eth0"))
        assert.is_nil(vt.ip_version("fe80::1%1"))
        assert.is_nil(vt.ip_version("fe80::1%"))
    end)

    it("never takes a string with a NUL inside for an address", function()
        -- "\0" .. "1" because "\01" would be the escape for byte 1.
        for _, s in ipairs {
            "1.2.3.4\0", "\0" .. "1.2.3.4", "1.2.3.4\0garbage", "1.2\0.3.4", "::1\0", "::\0" .. "1", "\0",
        } do
            assert.is_nil(vt.ip_version(s))
        end
    end)

    it("returns nil for the empty string and for 1 MB strings", function()
        assert.is_nil(vt.ip_version(""))
        assert.is_nil(vt.ip_version(("1"):rep(MB)))
        assert.is_nil(vt.ip_version("1.2.3.4" .. (" "):rep(MB)))
        assert.is_nil(vt.ip_version(("0:"):rep(MB // 2) .. "1"))
    end)

    it("returns an integer", function()
        assert.equal("integer", math.type(vt.ip_version("1.2.3.4")))
        assert.equal("integer", math.type(vt.ip_version("::1")))
    end)

    it_rejects_non_strings("ip_version")
end)

describe("vt.is_private_ip", function()
    -- Each private range with its first and last address, and the public
    -- addresses just outside it.
    local ranges = {
        { name = "RFC 1918 10/8",
          inside = { "10.0.0.0", "10.255.255.255" },
          outside = { "9.255.255.255", "11.0.0.0" } },
        { name = "RFC 1918 172.16/12",
          inside = { "172.16.0.0", "172.31.255.255", "172.20.1.1" },
          outside = { "172.15.255.255", "172.32.0.0" } },
        { name = "RFC 1918 192.168/16",
          inside = { "192.168.0.0", "192.168.255.255" },
          outside = { "192.167.255.255", "192.169.0.0" } },
        { name = "loopback 127/8",
          inside = { "127.0.0.0", "127.0.0.1", "127.255.255.255" },
          outside = { "126.255.255.255", "128.0.0.0" } },
        { name = "link-local 169.254/16",
          inside = { "169.254.0.0", "169.254.255.255" },
          outside = { "169.253.255.255", "169.255.0.0" } },
        { name = "CGNAT 100.64/10",
          inside = { "100.64.0.0", "100.127.255.255" },
          outside = { "100.63.255.255", "100.128.0.0" } },
        { name = "unspecified 0/8",
          inside = { "0.0.0.0", "0.255.255.255" },
          outside = { "1.0.0.0" } },
        { name = "IPv6 unspecified and loopback",
          inside = { "::", "::1", "0:0:0:0:0:0:0:1", "0000:0000:0000:0000:0000:0000:0000:0000" },
          outside = { "::2", "::1:0", "1::", "0:0:0:0:0:1:0:1" } },
        { name = "link-local fe80::/10",
          inside = { "fe80::", "fe80::1", "FE80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
          outside = { "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::" } },
        { name = "unique local fc00::/7",
          inside = { "fc00::", "fd12:3456:789a::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
          outside = { "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::" } },
        { name = "IPv4-mapped IPv6",
          inside = { "::ffff:10.0.0.1", "::ffff:192.168.1.1", "::ffff:127.0.0.1", "::FFFF:172.16.0.1",
                     "::ffff:169.254.1.1", "::ffff:100.64.0.1", "::ffff:0.0.0.0", "::ffff:a00:1",
                     "0:0:0:0:0:ffff:7f00:1" },
          -- Only ::ffff:0:0/96 carries an IPv4 address to judge; IPv4-compatible
          -- (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) forms are public.
          outside = { "::ffff:8.8.8.8", "::ffff:172.32.0.0", "::ffff:100.128.0.0", "::fffe:10.0.0.1",
                      "::1:ffff:10.0.0.1", "::10.0.0.1", "64:ff9b::10.0.0.1" } },
    }
    for _, range in ipairs(ranges) do
        it("knows " .. range.name .. " and its public neighbours", function()
            for _, s in ipairs(range.inside) do
                assert.is_true(vt.is_private_ip(s), s)
            end
            for _, s in ipairs(range.outside) do
                assert.is_false(vt.is_private_ip(s), s)
            end
        end)
    end

    it("says false for public addresses", function()
        for _, s in ipairs { "8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "2606:4700::1111" } do
            assert.is_false(vt.is_private_ip(s), s)
        end
    end)

    it("says false, without raising, for what is not an address", function()
        for _, s in ipairs {
            "", "localhost", "example.com", "10.0.0", "10.0.0.256", "010.0.0.1", "[::1]", "::1::", "fe80::1%eth0",
            "10.0.0.1 ", " 10.0.0.1", "10.0.0.1\0", "10.0.0.1\0garbage", "\0" .. "127.0.0.1", "192.168.1.1/24",
            ("1"):rep(MB), "10.0.0.1" .. ("x"):rep(MB),
        } do
            assert.is_false(vt.is_private_ip(s), s)
        end
    end)

    it_rejects_non_strings("is_private_ip")
end)
