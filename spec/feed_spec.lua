-- Feeds: c:feed (one minute batch) and c:follow (minute after minute, with cursors), against
-- the fake VirusTotal's feed batches (spec/fake/README.md, "Feeds").
local vt = require "vt"
local cjson = require "cjson"
local fake = require "helpers.fake"
local requests = require "helpers.requests"

local NOW = "202401011300"  -- the fake's feed clock: the latest published minute is 12:00
local M0, M1, M2, M3 = "202401011130", "202401011131", "202401011132", "202401011133"
local COUNT = 12            -- objects per minute (light enough for valgrind)
local TYPES = { files = "file", urls = "url", domains = "domain", ip_addresses = "ip_address",
                ["file-behaviours"] = "file_behaviour" }
local WHOLE = { files = "size", urls = "reputation", domains = "reputation", ip_addresses = "reputation",
                ["file-behaviours"] = "analysis_date" } -- an attribute every object of the kind has

-- Every object and cursor of an iteration (ids only), or the error it raised after them.
local function drain(iter, state, ctl, closing)
  local ids, cursors = {}, {}
  local ok, err = pcall(function()
    for obj, cursor in iter, state, ctl, closing do
      ids[#ids + 1] = obj.id
      cursors[#cursors + 1] = cursor
    end
  end)
  return ids, cursors, not ok and err or nil
end

-- The API requests for feed batches (of one minute).
local function feed_requests(srv, minute)
  return requests.count(requests.lines(srv), "^GET /api/v3/feeds/[%w_-]+/" .. (minute or ""))
end

local function concat(...)
  local out = {}
  for _, list in ipairs { ... } do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

describe("feeds", function()
  local srv, c
  setup(function()
    srv = fake.start { analysis_steps = 0 }
    c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, retry_base = 0.01 }
  end)
  teardown(function()
    c:close()
    srv:stop()
  end)
  before_each(function()
    srv:reset()
    srv:feeds { now = NOW, running = false, count = COUNT }
  end)

  it("hands out every object of a minute batch, for every kind, integers kept", function()
    for kind, type in pairs(TYPES) do
      local n = 0
      for obj, cursor in assert(c:feed(kind, M0)) do
        n = n + 1
        assert.equal(type, obj.type)
        assert.is_string(obj.id)
        assert.is_table(obj.attributes)
        assert.equal(M0 .. "-" .. n, cursor)
        assert.equal("integer", math.type(obj.attributes[WHOLE[kind]]))
      end
      assert.equal(COUNT, n)
    end
    assert.equal(5, feed_requests(srv))
  end)

  it("follows the redirect without the key; only the API request takes quota", function()
    local before = c:cache_stats().requests
    local ids = drain(assert(c:feed("files", M0)))
    assert.equal(COUNT, #ids)
    assert.equal(1, c:cache_stats().requests - before)
    local api = srv:log { listener = "main" }
    assert.equal(1, #api)
    assert.equal(302, api[1].status)
    assert.equal(srv.key, api[1].key)
    local storage = srv:log { listener = "storage" }
    assert.equal(1, #storage)
    assert.equal("/feeds/files/" .. M0, storage[1].path)
    assert.equal(200, storage[1].status)
    assert.equal(cjson.null, storage[1].key)
    assert.is_nil(storage[1].headers["x-apikey"])
    assert.is_nil(cjson.encode(storage[1]):find(srv.key, 1, true))
  end)

  it("reads a batch the API answers itself (direct delivery) as the redirected one", function()
    local redirected = drain(assert(c:feed("urls", M0)))
    srv:reset()
    srv:feeds { now = NOW, running = false, count = COUNT, delivery = "direct" }
    local direct = drain(assert(c:feed("urls", M0)))
    assert.same(redirected, direct)
    assert.equal(0, #srv:log { listener = "storage" })
    assert.equal(200, srv:log()[1].status)
  end)

  it("refuses a malformed minute or cursor with InvalidArgument, before any request", function()
    for _, bad in ipairs { "2024010112", "202401011260", "202402300000", "20240101120a", "196912312359",
                           "202401011200-3" } do
      local it, err = c:feed("files", bad)
      assert.is_nil(it)
      assert.equal("InvalidArgument", err.code)
    end
    for _, opts in ipairs { { start = "2024-01-01" }, { start = M0 .. "-" }, { start = M0 .. "-x" },
                            { stop = M0 .. "-1" }, { stop = "" } } do
      local it, err = c:follow("files", opts)
      assert.is_nil(it)
      assert.equal("InvalidArgument", err.code)
    end
    assert.equal(0, #srv:log())
  end)

  it("raises at the call for an unknown kind, an unknown option or a wrong type", function()
    assert.has_error(function() c:feed("file", M0) end)
    assert.has_error(function() c:feed("files", 202401011200) end)
    assert.has_error(function() c:feed("files", M0, { cursor = "x" }) end)
    assert.has_error(function() c:feed("files", M0, { skip = -1 }) end)
    assert.has_error(function() c:follow("files", { start = 1 }) end)
    assert.has_error(function() c:follow("files", { missing = -1 }) end)
    assert.has_error(function() c:follow("files", { interval = "1" }) end)
    assert.equal(0, #srv:log())
  end)

  it("raises NotAvailableYet and NotFoundError from one batch, with the cursor", function()
    local ids, _, err = drain(assert(c:feed("files", "202401011201")))
    assert.same({}, ids)
    assert.equal("NotAvailableYet", err.code)
    assert.equal("202401011201-0", err.cursor)
    srv:feeds { minutes = { [M1] = { missing = true } } }
    ids, _, err = drain(assert(c:feed("files", M1)))
    assert.same({}, ids)
    assert.equal("NotFoundError", err.code)
    assert.equal(404, err.http)
  end)

  it("skips the objects a cursor has behind it", function()
    local all = drain(assert(c:feed("domains", M0)))
    local rest, cursors = drain(assert(c:feed("domains", M0, { skip = 5 })))
    assert.same({ table.unpack(all, 6) }, rest)
    assert.equal(M0 .. "-6", cursors[1])
  end)

  it("follows minutes from start to stop; a cursor resumes exactly after its object", function()
    local all, cursors = drain(assert(c:follow("files", { start = M0, stop = M3 })))
    assert.equal(3 * COUNT, #all)
    assert.equal(M0 .. "-1", cursors[1])
    assert.equal(M2 .. "-" .. COUNT, cursors[#cursors])
    for _, stop_after in ipairs { 1, COUNT - 1, COUNT, COUNT + 5, 3 * COUNT } do
      local first, cursor = {}, nil
      for obj, cur in assert(c:follow("files", { start = M0, stop = M3 })) do
        first[#first + 1] = obj.id
        cursor = cur
        if #first == stop_after then break end
      end
      local rest = drain(assert(c:follow("files", { start = cursor, stop = M3 })))
      assert.same(all, concat(first, rest))
    end
  end)

  it("makes no request when stop is not after start, and starts 70 minutes ago by default", function()
    assert.same({}, (drain(assert(c:follow("urls", { start = M1, stop = M1 })))))
    assert.same({}, (drain(assert(c:follow("urls", { start = M2, stop = M1 })))))
    assert.equal(0, #srv:log())
    srv:reset()
    srv:feeds { count = 2 } -- the fake's clock is the real one again
    local expected = (os.time() - 70 * 60) // 60 * 60
    local stop = os.date("!%Y%m%d%H%M", expected + 120)
    local ids = drain(assert(c:follow("urls", { stop = stop })))
    local first = srv:log { listener = "main" }[1].path:sub(-12)
    assert.is_true(first == os.date("!%Y%m%d%H%M", expected) or first == os.date("!%Y%m%d%H%M", expected + 60))
    assert.is_true(#ids == 2 or #ids == 4)
  end)

  it("passes over one missing batch in a row, and raises at the second", function()
    srv:feeds { minutes = { [M1] = { missing = true } } }
    local ids, cursors, err = drain(assert(c:follow("ip_addresses", { start = M0, stop = M3 })))
    assert.is_nil(err)
    assert.equal(2 * COUNT, #ids)
    assert.equal(M2 .. "-1", cursors[COUNT + 1])
    srv:feeds { minutes = { [M2] = { missing = true } } }
    ids, cursors, err = drain(assert(c:follow("ip_addresses", { start = M0, stop = M3 })))
    assert.equal(COUNT, #ids)
    assert.equal(M0 .. "-" .. COUNT, cursors[COUNT])
    assert.equal("NotFoundError", err.code)
    assert.equal(M2 .. "-0", err.cursor)
    ids = drain(assert(c:follow("ip_addresses", { start = M0, stop = M3, missing = 2 })))
    assert.equal(COUNT, #ids)
  end)

  it("waits for a late batch, asking again every interval", function()
    srv:feeds { minutes = { [M1] = { late = 2 } } }
    local ids = drain(assert(c:follow("urls", { start = M0, stop = M2, interval = 0.05 })))
    assert.equal(2 * COUNT, #ids)
    assert.equal(3, feed_requests(srv, M1))
    local late = {}
    for _, e in ipairs(srv:log { listener = "main" }) do
      if e.path:sub(-12) == M1 then late[#late + 1] = e end
    end
    assert.equal(400, late[1].status)
    assert.is_true(late[2].mono - late[1].mono >= 0.04)
  end)

  it("gives up on a late batch after `patience` seconds", function()
    srv:feeds { minutes = { [M0] = { late = 100 } } }
    local ids, _, err = drain(assert(c:follow("urls", { start = M0, stop = M1, interval = 0.05, patience = 0.12 })))
    assert.same({}, ids)
    assert.equal("NotAvailableYet", err.code)
    assert.equal(M0 .. "-0", err.cursor)
    assert.is_true(feed_requests(srv, M0) >= 2 and feed_requests(srv, M0) <= 4)
  end)

  it("raises InvalidResponse for corrupt batches after every good object before them", function()
    local good = drain(assert(c:feed("files", M1, { })))
    srv:feeds { minutes = { [M1] = { corrupt = "badline" } } }
    local before = drain(assert(c:feed("files", M0)))
    local ids, cursors, err = drain(assert(c:follow("files", { start = M0, stop = M3 })))
    assert.equal("InvalidResponse", err.code)
    assert.matches("line " .. (COUNT // 2 + 1), err.message)
    assert.same(concat(before, { table.unpack(good, 1, COUNT // 2) }), ids)
    assert.equal(M1 .. "-" .. COUNT // 2, err.cursor)
    assert.equal(err.cursor, cursors[#cursors])

    srv:feeds { minutes = { [M1] = { corrupt = "garbage" } } }
    ids, cursors, err = drain(assert(c:follow("files", { start = M1, stop = M3 })))
    assert.same({}, ids)
    assert.same({}, cursors)
    assert.equal("InvalidResponse", err.code)
    assert.matches("not bzip2", err.message)
    assert.equal(M1 .. "-0", err.cursor)
  end)

  it("reads a batch of several bzip2 streams; blank lines hold no object but count in cursors", function()
    local function line(id) return ('{"type":"file","id":"%s","attributes":{"size":1}}\n'):format(id) end
    local streams = { line("a1") .. "\n" .. line("a3"), "  \n" .. line("b5") }
    -- each stream compressed on its own (python3's bz2), the two put end to end
    local batch = ""
    for _, text in ipairs(streams) do
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(text)
      f:close()
      local p = assert(io.popen("python3 -c 'import bz2, sys; sys.stdout.buffer.write(bz2.compress("
        .. "open(sys.argv[1], \"rb\").read()))' " .. path))
      batch = batch .. p:read("a")
      p:close()
      os.remove(path)
    end
    assert.equal("BZh", batch:sub(1, 3))
    -- served from the storage host, where the feed's API request redirects
    local stored = srv:register_file(batch)
    local location = assert(c:request("GET", "/files/" .. stored.sha256 .. "/download_url")).data
    srv:fault { type = "status", status = 302, path = "/api/v3/feeds/files/" .. M0, headers = { Location = location },
                body = "" }
    local ids, cursors, err = drain(assert(c:feed("files", M0)))
    assert.is_nil(err)
    assert.same({ "a1", "a3", "b5" }, ids)
    assert.same({ M0 .. "-1", M0 .. "-3", M0 .. "-5" }, cursors)
  end)

  it("hands out the whole blocks of a truncated batch, then raises InvalidResponse", function()
    srv:feeds { count = 400 } -- several bzip2 blocks
    local good = drain(assert(c:feed("urls", M0)))
    srv:feeds { minutes = { [M0] = { corrupt = "truncated" } } }
    local ids, _, err = drain(assert(c:feed("urls", M0)))
    assert.equal("InvalidResponse", err.code)
    assert.matches("cut short", err.message)
    assert.is_true(#ids > 0 and #ids < #good)
    assert.same({ table.unpack(good, 1, #ids) }, ids)
  end)

  it("raises InvalidResponse for a line longer than max_line", function()
    local ids, _, err = drain(assert(c:feed("files", M0, { max_line = 200 })))
    assert.same({}, ids)
    assert.equal("InvalidResponse", err.code)
    assert.matches("longer than 200 bytes", err.message)
  end)

  it("refuses a max_line over 1 GiB (lines are queued with 32-bit lengths), naming the option", function()
    assert.has_error(function() c:feed("files", M0, { max_line = 2 ^ 32 + 16 }) end,
                     "feed: option 'max_line' must be at most 1073741824 bytes (1 GiB)")
    assert.has_error(function() c:follow("files", { max_line = 1024 * 1024 * 1024 + 1 }) end,
                     "follow: option 'max_line' must be at most 1073741824 bytes (1 GiB)")
    local it = assert(c:feed("files", M0, { max_line = 1024 * 1024 * 1024 }))
    assert.is_function(it)
    assert.equal(0, #srv:log()) -- the refused ones asked nothing
  end)

  it("goes on after the objects already handed out when a cut transfer is retried", function()
    srv:feeds { count = 400 } -- several bzip2 blocks: the first ones come before the cut
    local good = drain(assert(c:feed("urls", M0)))
    srv:reset()
    srv:feeds { now = NOW, running = false, count = 400 }
    -- half the batch, and 0.1 s later a TCP reset: objects are handed out before the retry
    srv:fault { type = "cut", listener = "storage", path = "/feeds/", reset = true }
    local ids, asked_at_first = {}, nil
    for obj in assert(c:feed("urls", M0)) do
      asked_at_first = asked_at_first or #srv:log { listener = "storage" }
      ids[#ids + 1] = obj.id
    end
    assert.same(good, ids)
    local storage = srv:log { listener = "storage" }
    assert.equal(1, asked_at_first)
    assert.equal(2, #storage)
    assert.equal("cut", storage[1].fault)
  end)

  it("releases the transfer on break", function()
    srv:feeds { count = 1500 } -- more than the queue holds: the transfer pauses
    local n = 0
    for _ in assert(c:feed("files", M0)) do
      n = n + 1
      assert.is_true(c:step(0) >= 1) -- the paused transfer is still the engine's
      if n == 2 then break end
    end
    assert.equal(2, n)
    assert.equal(0, c:step(0))
    assert.is_nil(c:timeout())
  end)

  it("yields to the loop in coroutine mode while batches stream in or are late", function()
    local yields = 0
    local cy <close> = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false,
                                   yield = function() yields = yields + 1; coroutine.yield() end }
    local loop = require("vt.loop").new(cy)
    srv:feeds { minutes = { [M1] = { late = 1 } } }
    local follower = loop:spawn(function()
      return drain(assert(cy:follow("files", { start = M0, stop = M2, interval = 0.05 })))
    end)
    local single = loop:spawn(function() return drain(assert(cy:feed("urls", M0))) end)
    local lookup = loop:spawn(function() return cy:domain("github.com") end)
    loop:run()
    assert.is_true(follower.ok, follower.error)
    assert.equal(2 * COUNT, #follower.results[1])
    assert.is_nil(follower.results[3])
    assert.equal(COUNT, #single.results[1])
    assert.equal("github.com", lookup.results[1].id)
    assert.is_true(yields >= 3)
  end)
end)
