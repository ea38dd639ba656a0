-- The bad-input table: malformed hashes, URLs, IPs, domains, ids, paths (FIFOs, directories,
-- devices), options of every call and of vt.client, NUL bytes and 10 MB strings. Each row is
-- a clear error and costs no request: a wrong *type* (or an unknown option, kind or method)
-- raises, naming what is wrong; malformed data returns nil and an InvalidArgument error (an
-- iterator raises that error value, a for loop cannot take nil, err). Then the bodies no
-- client should trust: nested 100000 deep, and 300 MB (#heavy).
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"
local samples = require "helpers.samples"

local EXE, DOMAIN, IP = samples.file, samples.domain, samples.ip
local MB = 1024 * 1024
local TEN_MB = ("a"):rep(10 * MB)
local NAN = 0 / 0

local rows = {}
-- A row: `run(c, ctx)` with `raises` (a pattern the raised message must match), or
-- `raises_code` (an error value raised, as iterators do), or else nil, err with `code`
-- (InvalidArgument unless said).
local function row(name, run, want)
    want = want or {}
    want.name, want.run = name, run
    rows[#rows + 1] = want
end

local function iterate(make)
    return function(c, ctx)
        for _ in make(c, ctx) do end
    end
end

-- ------------------------------------------------------------------- indicators

local bad_hashes = {
    ["empty"] = "", ["spaces"] = "   ", ["31 hex digits"] = ("a"):rep(31), ["33 hex digits"] = ("a"):rep(33),
    ["39 hex digits"] = ("a"):rep(39), ["41 hex digits"] = ("a"):rep(41), ["63 hex digits"] = ("a"):rep(63),
    ["65 hex digits"] = ("a"):rep(65), ["not hex"] = ("g"):rep(32),
    ["a NUL inside"] = ("a"):rep(16) .. "\0" .. ("a"):rep(15),
    ["10 MB"] = TEN_MB, ["hex with a dash"] = ("a"):rep(31) .. "-",
}
for what, h in pairs(bad_hashes) do
    row("c:file, hash " .. what, function(c) return c:file(h) end)
    row("c:v2_file_report, hash " .. what, function(c) return c:v2_file_report(h) end)
    row("c:download, hash " .. what, function(c, ctx) return c:download(h, ctx.dir .. "/x.bin") end)
    row("c:reanalyse, hash " .. what, function(c) return c:reanalyse("file", h) end)
end

local long_url = "http://example.com/" .. ("a"):rep(70 * 1024)
local bad_urls = {
    ["empty"] = "", ["spaces"] = "  ", ["a scheme without a host"] = "http://", ["https without a host"] = "https://",
    ["no host before the path"] = "http:///path", ["no scheme before ://"] = "://example.com/",
    ["not UTF-8 at the start"] = "\255\254http://example.com/", ["not UTF-8 inside"] = "http://example.com/\192\175",
    ["a space inside"] = "http://exa mple.com/", ["a NUL inside"] = "http://example.com/\0x",
    ["a line break inside"] = "http://example.com/\r\nX-Injected: 1", ["70 KB"] = long_url,
    ["10 MB"] = "http://example.com/" .. TEN_MB,
}
for what, u in pairs(bad_urls) do
    row("c:url, URL " .. what, function(c) return c:url(u) end)
    row("c:scan_url, URL " .. what, function(c) return c:scan_url(u) end)
    row("c:v2_url_report, URL " .. what, function(c) return c:v2_url_report(u) end)
    row("c:v2_url_scan, URL " .. what, function(c) return c:v2_url_scan(u) end)
end

local bad_ips = {
    ["empty"] = "", ["three octets"] = "1.2.3", ["five octets"] = "1.2.3.4.5", ["an octet over 255"] = "256.1.1.1",
    ["a leading zero"] = "010.1.1.1", ["a port"] = "1.2.3.4:80", ["brackets"] = "[::1]", ["a zone id"] = "fe80::1%eth0",
    ["a bad IPv4 tail"] = "::ffff:1.2.3.4.5", ["a prefix"] = "1.2.3.0/24", ["a NUL after it"] = "1.2.3.4\0",
    ["a name"] = "localhost", ["10 MB"] = TEN_MB,
}
for what, a in pairs(bad_ips) do
    row("c:ip, address " .. what, function(c) return c:ip(a) end)
    row("c:v2_ip_report, address " .. what, function(c) return c:v2_ip_report(a) end)
    row("c:reanalyse, address " .. what, function(c) return c:reanalyse("ip", a) end)
end

local bad_domains = {
    ["empty"] = "", ["one label"] = "localhost", ["an address"] = "1.2.3.4", ["a leading hyphen"] = "-a.com",
    ["a trailing hyphen"] = "a-.com", ["an empty label"] = "a..com", ["a label of 64"] = ("a"):rep(64) .. ".com",
    ["254 characters"] = ("abcdefgh."):rep(28) .. "ab.com", ["a space"] = "exa mple.com",
    ["a NUL inside"] = "ex\0ample.com", ["a slash"] = "example.com/x", ["10 MB"] = TEN_MB .. ".com",
}
for what, d in pairs(bad_domains) do
    row("c:domain, name " .. what, function(c) return c:domain(d) end)
    row("c:v2_domain_report, name " .. what, function(c) return c:v2_domain_report(d) end)
end

local bad_analyses = { ["empty"] = "", ["513 characters"] = ("x"):rep(513), ["a NUL inside"] = "a\0b",
                       ["10 MB"] = TEN_MB }
for what, id in pairs(bad_analyses) do
    row("c:analysis, id " .. what, function(c) return c:analysis(id) end)
    row("c:wait, id " .. what, function(c) return c:wait(id, { interval = 0, timeout = 1 }) end)
end

-- wrong types and kinds raise
for _, case in ipairs { { "a number", 42 }, { "nil", nil }, { "a table", {} }, { "a boolean", true } } do
    local what, v = case[1], case[2]
    for _, method in ipairs { "file", "url", "domain", "ip", "analysis", "scan_url", "v2_file_report",
                              "v2_url_report", "v2_domain_report", "v2_ip_report", "v2_url_scan" } do
        row("c:" .. method .. " of " .. what, function(c) return c[method](c, v) end, { raises = "string expected" })
    end
end
for _, kind in ipairs { "bogus", "File", "", "analysis" } do
    row("c:reanalyse, kind '" .. kind .. "'", function(c) return c:reanalyse(kind, EXE) end, { raises = "bad kind" })
    row("c:related, kind '" .. kind .. "'", function(c) return c:related(kind, EXE, "contacted_ips") end,
        { raises = "bad kind" })
    row("c:comments, kind '" .. kind .. "'", function(c) return c:comments(kind, EXE) end, { raises = "bad kind" })
    row("c:add_comment, kind '" .. kind .. "'", function(c) return c:add_comment(kind, EXE, "x") end,
        { raises = "bad kind" })
    row("c:vote, kind '" .. kind .. "'", function(c) return c:vote(kind, EXE, "harmless") end, { raises = "bad kind" })
end

-- ------------------------------------------------------------------ collections

for what, rel in pairs { ["empty"] = "", ["upper case"] = "Contacted_IPs", ["a dot-dot path"] = "../comments",
                         ["a slash"] = "a/b", ["a NUL inside"] = "a\0b", ["10 MB"] = TEN_MB } do
    row("c:related, relationship " .. what, iterate(function(c) return c:related("file", EXE, rel) end),
        { raises_code = "InvalidArgument" })
end
row("c:related, a bad hash", iterate(function(c) return c:related("file", "nothash", "contacted_ips") end),
    { raises_code = "InvalidArgument" })
row("c:comments, a bad domain", iterate(function(c) return c:comments("domain", "localhost") end),
    { raises_code = "InvalidArgument" })
row("c:related, a cursor holding a NUL", iterate(function(c)
    return c:related("ip", IP, "communicating_files", { cursor = "ZmFrZXZ0OjU\0junk" })
end), { raises_code = "InvalidArgument" })
for what, q in pairs { ["empty"] = "", ["a NUL inside"] = "a\0b", ["10 MB"] = TEN_MB } do
    row("c:search, query " .. what, iterate(function(c) return c:search(q) end), { raises_code = "InvalidArgument" })
end
row("c:search of a number", function(c) return c:search(42) end, { raises = "string expected" })
for what, opts in pairs {
    ["limit 0"] = { limit = 0 }, ["limit 1.5"] = { limit = 1.5 }, ["limit '5'"] = { limit = "5" },
    ["max -1"] = { max = -1 }, ["cursor 5"] = { cursor = 5 }, ["an unknown option"] = { pages = 2 },
    ["limit NaN"] = { limit = NAN },
} do
    row("c:related, " .. what, function(c) return c:related("ip", IP, "communicating_files", opts) end,
        { raises = "option" })
    row("c:search, " .. what, function(c) return c:search("entity:file", opts) end, { raises = "option" })
    row("c:comments, " .. what, function(c) return c:comments("ip", IP, opts) end, { raises = "option" })
end

-- --------------------------------------------------------------------- requests

for what, path in pairs {
    ["empty"] = "", ["no leading slash"] = "files/x", ["a space"] = "/files/a b", ["a NUL"] = "/files/a\0b",
    ["a v2 path"] = "/vtapi/v2/file/report", ["dot-dots out of /api/v3"] = "/../../__log",
    ["dot-dots after a segment"] = "/files/../../../_fake/log", ["encoded dots"] = "/%2e%2e/%2E%2e/__log",
    ["dots and encoded slashes"] = "/files/..%2f..%2f..%2f__log", ["dot segments"] = "/./../x",
    ["a backslash climb"] = "/files/..\\..\\..\\__log", ["10 MB"] = "/" .. TEN_MB,
    ["a backslash in a segment dot-dots climb past"] = "/x\\y/../../e/v3/files",
    ["an encoded NUL after dot-dots"] = "/..%00/x", ["an encoded line break"] = "/files/x%0d%0aX-Evil:%201",
} do
    row("c:request, path " .. what, function(c) return c:request("GET", path) end)
end
for what, args in pairs {
    ["method TRACE"] = { "TRACE", "/files/" .. EXE }, ["method nil"] = { nil, "/x" },
    ["path 42"] = { "GET", 42 }, ["an unknown option"] = { "GET", "/x", { timeout = 1 } },
    ["header x-apikey"] = { "GET", "/x", { headers = { ["X-ApiKey"] = "other" } } },
    ["a header name with a colon"] = { "GET", "/x", { headers = { ["X: y"] = "z" } } },
    ["a header value with a line break"] = { "GET", "/x", { headers = { a = "b\r\nc: d" } } },
    ["query key 1"] = { "GET", "/x", { query = { "v" } } },
    ["query value a table"] = { "GET", "/x", { query = { a = {} } } },
    ["json a function"] = { "POST", "/x", { json = { f = print } } },
} do
    row("c:request, " .. what, function(c) return c:request(table.unpack(args, 1, 3)) end, { raises = "." })
end
for what, user in pairs { ["empty"] = "", ["a NUL inside"] = "a\0b", ["10 MB"] = TEN_MB } do
    row("c:quotas, user " .. what, function(c) return c:quotas(user) end)
end
row("c:quotas, user 42", function(c) return c:quotas(42) end, { raises = "string expected" })

-- --------------------------------------------------------------- comments, votes

for what, text in pairs { ["empty"] = "", ["blank"] = " \n\t ", ["a NUL inside"] = "a\0b",
                          ["not UTF-8"] = "caf\233" } do
    row("c:add_comment, text " .. what, function(c) return c:add_comment("file", EXE, text) end)
end
row("c:add_comment, text 42", function(c) return c:add_comment("file", EXE, 42) end, { raises = "string expected" })
row("c:add_comment, a bad hash", function(c) return c:add_comment("file", "nothash", "x") end)
row("c:add_comment, a bad domain", function(c) return c:add_comment("domain", "1.2.3.4", "x") end)
for what, verdict in pairs { ["maybe"] = "maybe", ["upper case"] = "Malicious", ["empty"] = "",
    ["a NUL after a verdict"] = "harmless\0junk" } do
    row("c:vote, verdict " .. what, function(c) return c:vote("ip", IP, verdict) end)
end
row("c:vote, verdict true", function(c) return c:vote("ip", IP, true) end, { raises = "string expected" })
row("c:vote, a bad address", function(c) return c:vote("ip", "1.2.3", "harmless") end)

-- ----------------------------------------------------------------------- paths

local function fifo(dir, name)
    local path = dir .. "/" .. name
    assert(os.execute("mkfifo " .. files.quote(path)))
    return path
end

for what, path_of in pairs {
    ["empty"] = function() return "" end,
    ["missing"] = function(ctx) return ctx.dir .. "/missing.bin" end,
    ["a directory"] = function(ctx) return ctx.dir end,
    ["a character device"] = function() return "/dev/null" end,
    ["a NUL inside"] = function(ctx) return ctx.dir .. "/a\0b" end,
    ["10 MB"] = function() return "/" .. TEN_MB end,
    ["over 650 MB"] = function(ctx) return ctx.sparse(651) end,
} do
    row("c:scan_file, path " .. what, function(c, ctx) return c:scan_file(path_of(ctx)) end,
        { code = what == "over 650 MB" and "TooLarge" or "InvalidArgument" })
    row("c:v2_file_scan, path " .. what, function(c, ctx) return c:v2_file_scan(path_of(ctx)) end,
        { code = what == "over 650 MB" and "TooLarge" or "InvalidArgument" })
end
row("c:v2_file_scan, a 33 MB file", function(c, ctx) return c:v2_file_scan(ctx.sparse(33)) end, { code = "TooLarge" })
for what, src in pairs {
    ["a number"] = 42, ["data a number"] = { data = 5 }, ["name a number"] = { data = "x", name = 5 },
    ["an unknown field"] = { data = "x", mode = "rb" },
} do
    row("c:scan_file, source " .. what, function(c) return c:scan_file(src) end, { raises = "." })
end
for what, password in pairs { ["empty"] = "", ["two lines"] = "a\nb", ["a NUL inside"] = "a\0b" } do
    row("c:scan_file, password " .. what, function(c) return c:scan_file({ data = "x" }, { password = password }) end)
end
row("c:scan_file, password 5", function(c) return c:scan_file({ data = "x" }, { password = 5 }) end,
    { raises = "string expected" })
row("c:scan_file, an unknown option", function(c) return c:scan_file({ data = "x" }, { wait = true }) end,
    { raises = "unknown option 'wait'" })

for what, dest_of in pairs {
    ["a directory"] = function(ctx) return ctx.dir end,
    ["empty"] = function() return "" end,
    ["a NUL inside"] = function(ctx) return ctx.dir .. "/a\0b" end,
    ["in a missing directory"] = function(ctx) return ctx.dir .. "/missing/x.bin" end,
    ["a FIFO"] = function(ctx) return fifo(ctx.dir, "dest.fifo") end,
    ["10 MB"] = function() return "/" .. TEN_MB end,
} do
    row("c:download, destination " .. what, function(c, ctx) return c:download(EXE, dest_of(ctx)) end)
    row("c:v2_file_download, destination " .. what, function(c, ctx) return c:v2_file_download(EXE, dest_of(ctx)) end)
end
for what, opts in pairs { ["max_bytes 0"] = { max_bytes = 0 }, ["max_bytes '1'"] = { max_bytes = "1" },
                          ["max_bytes 1.5"] = { max_bytes = 1.5 }, ["an unknown option"] = { resume = true } } do
    row("c:download, " .. what, function(c, ctx) return c:download(EXE, ctx.dir .. "/x.bin", opts) end,
        { raises = "option" })
end
row("c:download, destination 42", function(c) return c:download(EXE, 42) end, { raises = "string expected" })

-- ------------------------------------------------------------------------ feeds

for what, minute in pairs { ["empty"] = "", ["11 digits"] = "20250101120", ["13 digits"] = "2025010112000",
                            ["month 13"] = "202513011200", ["minute 60"] = "202501011260", ["letters"] = "2025o1011200",
                            ["a NUL inside"] = "202501\0011200", ["10 MB"] = TEN_MB } do
    row("c:feed, minute " .. what, function(c) return c:feed("files", minute) end)
    row("c:follow, start " .. what, function(c) return c:follow("files", { start = minute }) end)
    row("c:follow, stop " .. what, function(c) return c:follow("files", { stop = minute }) end)
end
row("c:feed, a cursor with a bad count", function(c) return c:feed("files", "202501011200-x") end)
for _, kind in ipairs { "file", "behaviours", "" } do
    row("c:feed, kind '" .. kind .. "'", function(c) return c:feed(kind, "202501011200") end, { raises = "." })
    row("c:follow, kind '" .. kind .. "'", function(c) return c:follow(kind) end, { raises = "." })
end
for what, opts in pairs { ["skip -1"] = { skip = -1 }, ["max_line 0"] = { max_line = 0 },
                          ["an unknown option"] = { start = "202501011200" } } do
    row("c:feed, " .. what, function(c) return c:feed("files", "202501011200", opts) end, { raises = "option" })
end
for what, opts in pairs { ["interval -1"] = { interval = -1 }, ["missing 1.5"] = { missing = 1.5 },
                          ["an unknown option"] = { skip = 1 }, ["start a number"] = { start = 202501011200 } } do
    row("c:follow, " .. what, function(c) return c:follow("files", opts) end, { raises = "." })
end

-- ----------------------------------------------------------------- other calls

for what, opts in pairs { ["interval -1"] = { interval = -1 }, ["timeout '5'"] = { timeout = "5" },
                          ["progress 5"] = { progress = 5 }, ["an unknown option"] = { every = 1 },
                          ["interval NaN"] = { interval = NAN } } do
    row("c:wait, " .. what, function(c) return c:wait(samples.analysis, opts) end, { raises = "." })
end
for what, list in pairs { ["a string"] = "x", ["an item not a table"] = { "x" },
                          ["an unknown kind"] = { { "bogus", EXE } }, ["a number for a hash"] = { { "file", 42 } } } do
    row("c:batch, " .. what, function(c) return c:batch(list) end, { raises = "." })
end
for what, opts in pairs { ["concurrency 0"] = { concurrency = 0 }, ["concurrency '8'"] = { concurrency = "8" },
                          ["an unknown option"] = { parallel = 2 } } do
    row("c:batch, " .. what, function(c) return c:batch({ { "file", EXE } }, opts) end, { raises = "." })
    row("c:each, " .. what, function(c) return c:each({ { "file", EXE } }, opts) end, { raises = "." })
end
for what, list in pairs { ["a string"] = "x", ["an item not a table"] = { "x" },
                          ["an unknown kind"] = { { "bogus", EXE } }, ["a number for a hash"] = { { "file", 42 } } } do
    row("c:each, " .. what, function(c) return c:each(list) end, { raises = "." })
end
row("c:each, malformed members fail alone", function(c)
    for _, ok, err in c:each { { "file", "nothash" }, { "domain", "localhost" }, { "ip", "1.2.3" } } do
        if ok or err.code ~= "InvalidArgument" then return true end
    end
    return nil, vt.error("InvalidArgument", "all three refused")
end)
row("c:batch, malformed members fail alone", function(c)
    local r = c:batch { { "file", "nothash" }, { "domain", "localhost" }, { "ip", "1.2.3" } }
    for i = 1, 3 do
        if r[i].ok then return true end
        if r[i].err.code ~= "InvalidArgument" then return nil, r[i].err end
    end
    return nil, r[3].err
end)
for what, args in pairs {
    ["an unknown endpoint"] = { "file/delete", {} }, ["params a string"] = { "file/report", "x" },
    ["a parameter a table"] = { "file/report", { resource = {} } }, ["a list parameter"] = { "file/report", { "x" } },
    ["file/scan without a file"] = { "file/scan", {} },
} do
    row("c:v2, " .. what, function(c) return c:v2(table.unpack(args)) end, { raises = "." })
end
row("c:v2, a 10 MB resource", function(c) return c:v2("file/report", { resource = TEN_MB }) end)
row("c:v2_file_rescan, not a hash", function(c) return c:v2_file_rescan("nothash") end)
for what, secs in pairs { ["-1"] = -1, ["'1'"] = "1", ["NaN"] = NAN, ["two days"] = 2 * 86400 } do
    row("c:sleep, " .. what, function(c) return c:sleep(secs) end, { raises = "." })
end
row("c:step, -1", function(c) return c:step(-1) end, { raises = "." })

-- -------------------------------------------------------------- client options

local option_cases = {
    apikey = { 42, "", "a\r\nX-Evil: 1", "a\0b" },
    base_url = { 42, "ftp://x", "example.com", "http://x\n" },
    api = { "v4", 3 },
    requests_per_minute = { 0, -1, 1.5, "5", NAN, math.huge },
    requests_per_day = { 0, -1, 1.5, "5", NAN },
    requests_per_month = { 0, -1, 1.5, "5", NAN },
    rate = { "x", { { n = 0, per = 1 } }, { { n = 1, per = 0 } }, { { n = 1 } }, { { n = 1, per = 1, burst = 2 } },
             { { n = 1, per = NAN } }, { { n = 1, per = -1 } }, { "x" } },
    quota_state = { true, "", 5, "a\0b" },
    max_wait = { -1, NAN, 1e9, "5" },
    timeout = { 0, -1, NAN, 1e9, "5", math.huge },
    connect_timeout = { 0, -1, NAN, 1e9, "5" },
    retries = { -1, 1.5, 101, NAN, "3" },
    proxy = { 5, "http://a\nb" },
    cainfo = { 5, "a\0b" },
    insecure = { "yes", 1 },
    user_agent = { 5, "a\r\nb" },
    poll_interval = { -1, NAN, "5" },
    poll_timeout = { -1, NAN, "5" },
    yield = { 5, "x" },
    retry_base = { -1, NAN, 61, "1" },
}
local many_windows = {}
for i = 1, 17 do many_windows[i] = { n = i, per = i } end
option_cases.rate[#option_cases.rate + 1] = many_windows
for name, values in pairs(option_cases) do
    for i, value in ipairs(values) do
        row(("vt.client, option %s #%d"):format(name, i), function()
            local opts = { apikey = "k", quota_state = false }
            opts[name] = value
            return vt.client(opts)
        end, { raises = name })
    end
end
row("vt.client, an unknown option", function() return vt.client { apikey = "k", Timeout = 5 } end,
    { raises = "unknown option 'Timeout'" })
row("vt.client, not a table", function() return vt.client("k") end, { raises = "table expected" })
row("a closed client", function(c) c:close() return c:file(EXE) end, { raises = "closed vt client", own_client = true })

-- ------------------------------------------------------------------------- runs

describe("bad input", function()
    local srv, dir, client
    setup(function()
        srv = fake.start { analysis_steps = 0 }
        dir = files.tmpdir()
        client = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 0, max_wait = 2 }
    end)
    teardown(function()
        client:close()
        srv:stop()
        files.rmtree(dir)
    end)

    local function sparse(mb)
        local path = dir .. "/sparse-" .. mb .. ".bin"
        assert(os.execute(("truncate -s %dM %s"):format(mb, files.quote(path))))
        return path
    end

    local dirty = false -- the last row sent a request: the log needs a reset
    table.sort(rows, function(a, b) return a.name < b.name end)
    for _, r in ipairs(rows) do
        it(r.name, function()
            if dirty then srv:reset() end
            local c = r.own_client and vt.client { apikey = srv.key, base_url = srv.url, quota_state = false } or client
            local before = c == client and client:cache_stats().requests or 0
            local ctx = { dir = files.tmpdir(), sparse = sparse }
            local ok, value, err = pcall(r.run, c, ctx)
            files.rmtree(ctx.dir)
            local sent = #srv:log()
            dirty = sent > 0
            if r.raises then
                assert.is_false(ok, "did not raise")
                assert.is_string(value)
                assert.matches(r.raises, value)
                assert.is_nil(value:find("\n"), value)
            elseif r.raises_code then
                assert.is_false(ok, "did not raise")
                assert.is_table(value, tostring(value))
                assert.equal(r.raises_code, value.code, tostring(value))
            else
                assert.is_true(ok, tostring(value))
                assert.is_nil(value)
                assert.is_table(err, tostring(err))
                assert.equal(r.code or "InvalidArgument", err.code, tostring(err))
                local text = tostring(err)
                assert.is_nil(text:find("\n"), text)
                assert.is_true(#text < 700, text)
                assert.is_nil(err.http, text)
            end
            assert.equal(0, sent, "a request was sent")
            if c == client then assert.equal(before, client:cache_stats().requests) end
        end)
    end

    -- A FIFO with no writer: opening it for reading would wait for one for ever. Run in a child
    -- process with a time limit, so that a call that blocks fails this spec instead of hanging it.
    local function in_child(path)
        local script = ([[package.cpath = %q package.path = %q
      local c = require("vt").client { apikey = "k", base_url = %q, quota_state = false }
      local v, err = c:scan_file(%q)
      local v2, err2 = c:v2_file_scan(%q)
      io.write(tostring(v), " ", tostring(err and err.code), " ", tostring(v2), " ", tostring(err2 and err2.code),
               " ", c:cache_stats().requests)]]):format(package.cpath, package.path, srv.url, path, path)
        local p = assert(io.popen("timeout -k 1 10 lua5.4 -e " .. files.quote(script) .. " 2>&1; echo \" exit $?\""))
        local out = p:read("a")
        p:close()
        return out
    end

    it("c:scan_file and c:v2_file_scan, path a FIFO without a writer: no wait, no request", function()
        local path = fifo(dir, "alert.fifo")
        assert.equal("nil InvalidArgument nil InvalidArgument 0 exit 0\n", in_child(path))
        assert.equal(0, #srv:log())
    end)

    it("c:scan_file, a link to a FIFO: no wait, no request", function()
        local path = dir .. "/link-to-fifo"
        assert(os.execute(("ln -s %s %s"):format(files.quote(fifo(dir, "linked.fifo")), files.quote(path))))
        assert.equal("nil InvalidArgument nil InvalidArgument 0 exit 0\n", in_child(path))
    end)
end)

describe("hostile bodies", function()
    local srv
    setup(function() srv = fake.start { analysis_steps = 0 } end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    local function client()
        return vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retries = 2, retry_base = 0.01 }
    end

    it("a body nested 100000 deep is InvalidResponse, not retried", function()
        srv:fault { type = "deep", count = -1 }
        local c = client()
        for _, call in ipairs {
            function() return c:file(EXE) end,
            function() return c:request("GET", "/domains/" .. DOMAIN) end,
            function() return samples.collect(function() return c:search("entity:ip") end) end,
        } do
            local v, err = call()
            assert.is_nil(v)
            assert.equal("InvalidResponse", err.code)
        end
        assert.equal(3, #srv:log())
        c:close()
    end)

    it("a valid body nested 900 deep is decoded", function()
        local depth = 900
        srv:fault { type = "status", status = 200, content_type = "application/json",
                    body = '{"data": {"type": "file", "id": "x", "attributes": {"n": ' .. ("["):rep(depth)
                      .. ("]"):rep(depth) .. "}}}" }
        local c = client()
        local v = assert(c:request("GET", "/files/" .. EXE))
        local t, d = v.data.attributes.n, 1
        while t[1] do t, d = t[1], d + 1 end
        assert.equal(depth, d)
        c:close()
    end)

    it("a 300 MB answer is TooLarge once the cap is passed, and not retried #heavy", function()
        srv:fault { type = "huge", count = -1 }
        local c = client()
        local v, err = c:file(EXE)
        assert.is_nil(v)
        assert.equal("TooLarge", err.code)
        assert.equal(1, #srv:log())
        c:close()
    end)
end)
