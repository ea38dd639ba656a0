-- The cache and the limiter on Redis (SPEC 7, issue 10): several hosts sharing one key.
-- The spec starts its own redis-server (spec/helpers/redis.lua) and judges by what reached
-- the fake VirusTotal (its request log); "hosts" are processes with their own HOME
-- (spec/helpers/cache_worker.lua).
local vt = require "vt"
local fake = require "helpers.fake"
local redis = require "helpers.redis"
local vtloop = require "vt.loop"
local system = require "system"
local files = require "helpers.files"
local workers = require "helpers.workers"
local preload = require "helpers.preload"

local KEY = ("k-%08x%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), os.time())
local PASSWORD = "pw-" .. math.random(100000, 999999)
local DOC = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c"
local DOC_MD5, DOC_SHA1 = "b214da9f6b0d6e6de5090b3f9672defe", "b7162dfcbcac2724c71c03385abe577e1ab0cd8d"

local requests, worker_command = workers.requests, workers.command

local usable, why = redis.usable()

describe("Redis", function()
  if not usable then
    pending(why)
    return
  end

  local srv, r, tmpdir

  local function client(opts)
    local o = { apikey = KEY, base_url = srv.url, quota_state = false, retry_base = 0.01 }
    for k, v in pairs(opts or {}) do o[k] = v end
    return vt.client(o)
  end

  setup(function()
    srv = fake.start { keys = { KEY }, analysis_steps = 0 }
    r = redis.start { password = PASSWORD }
    tmpdir = files.tmpdir()
  end)

  teardown(function()
    r:stop()
    srv:stop()
    files.rmtree(tmpdir)
  end)

  before_each(function()
    srv:reset()
    r:cli("FLUSHALL")
  end)

  it("keeps the cache: hits, a file by any hash, negatives; never shows the password", function()
    local a, b = client { cache = r.url }, client { cache = r.url .. "/3" }
    assert.equal(DOC, assert(a:file(DOC)).id)
    for _, h in ipairs { DOC_MD5, DOC_SHA1, DOC:upper() } do assert.equal(DOC, assert(a:file(h)).id) end
    for _ = 1, 2 do assert.equal("NotFoundError", select(2, a:file(("6"):rep(40))).code) end
    assert.equal(2, requests(srv, 0))
    assert.same({ backend = "redis", hits = 4, misses = 2, stores = 2, coalesced = 0, errors = 0, requests = 2 },
                a:cache_stats())
    -- database 3 is another cache
    assert(b:file(DOC_MD5))
    assert(b:file(DOC))
    assert.equal(3, requests(srv, 0))
    assert.truthy(r:cli("-n", "3", "KEYS", "*"):find("vt:e:", 1, true))
    local shown = ("redis://:***@127.0.0.1:%d/0"):format(r.port)
    assert.equal(shown, a:options().cache)
    assert.equal(("redis://:***@127.0.0.1:%d/3"):format(r.port), b:options().cache)
    assert.is_nil(tostring(a):find(PASSWORD, 1, true))
    a:close()
    b:close()
  end)

  it("drops an entry that proves corrupt and asks the service", function()
    local c = client { cache = r.url, retries = 0 }
    assert(c:domain("github.com"))
    local entry = r:cli("KEYS", "vt:e:*"):match("[^\n]+")
    r:cli("HSET", entry, "f", "VTC1 damaged") -- its frame
    srv:fault { type = "status", status = 503 } -- the answer is not kept: what remains is what the drop left
    assert.equal("TransientError", select(2, c:domain("github.com")).code)
    assert.equal("0", r:cli("EXISTS", entry):match("%d"))
    assert.equal(2, requests(srv, 0))
    c:close()
  end)

  it("resolves a host name off the host loop (an address not at all), and then connects to it", function()
    local shim, no_shim = preload.build("slow_resolver", tmpdir)
    if not shim then
      pending(no_shim)
      return
    end
    local log = tmpdir .. "/resolver.log"
    local since
    -- runs resolve_worker.lua; returns the log's lines, the first line of each text, the exit status
    local function run(url, close_early)
      os.remove(log)
      since = #srv:log()
      local ok = os.execute(worker_command(
        { client = { apikey = KEY, base_url = srv.url, quota_state = false, yield = true, cache = url,
                     connect_timeout = 10 }, close_early = close_early },
        { LD_PRELOAD = preload.value(shim), VT_SPEC_RESOLVER_LOG = log,
          VT_SPEC_RESOLVER_SLOW = "slow-redis.test" },
        "spec/helpers/resolve_worker.lua"))
      local lines, at = {}, {}
      for line in assert(io.lines(log)) do
        lines[#lines + 1] = line
        at[line] = at[line] or #lines
      end
      return lines, at, ok
    end
    local function stats(lines) return vt.decode(lines[#lines]:match("^stats (.*)")) end
    local function check_looked_up(lines, at)
      assert.truthy(at["ok github.com"], table.concat(lines, "\n"))
      assert.equal(1, #srv:log() - since) -- the second look-up was a hit
      local st = stats(lines)
      assert.same({ 1, 1, 1, 0 }, { st.misses, st.stores, st.hits, st.errors })
    end
    local slow_url = (r.url:gsub("127%.0%.0%.1", "slow-redis.test"))
    -- a name (resolved as localhost, slowly): the look-up waited for it without blocking the loop
    local lines, at = run(slow_url)
    assert.truthy(at["start slow-redis.test"], table.concat(lines, "\n"))
    assert.is_true(at["yielded"] < at["end slow-redis.test"], table.concat(lines, "\n"))
    check_looked_up(lines, at)
    -- an address: no name is resolved
    r:cli("FLUSHALL")
    lines, at = run(r.url)
    for _, line in ipairs(lines) do assert.is_nil(line:match("^start .*[^%d.]"), line) end
    check_looked_up(lines, at)
    -- a name that is unknown: the look-up goes on without the cache
    lines, at = run((r.url:gsub("127%.0%.0%.1", "nowhere.invalid")))
    assert.truthy(at["ok github.com"], table.concat(lines, "\n"))
    assert.equal(2, #srv:log() - since)
    assert.is_true(stats(lines).errors >= 1)
    -- the client closed while its resolution goes on: the resolver's thread ends alone
    local ok
    lines, at, ok = run(slow_url, true)
    assert.is_true(ok, table.concat(lines, "\n"))
    assert.is_true(at["yielded"] < at["end slow-redis.test"] and at["end slow-redis.test"] < at["exit"],
                   table.concat(lines, "\n"))
  end)

  it("works in coroutine mode and from a host loop", function()
    srv:fault { type = "slow", delay = 0.2, path = "/api/v3/files/" .. DOC }
    local c = client { cache = r.url, quota_state = r.url, rate = { { n = 50, per = 1 } }, yield = true }
    local loop = vtloop.new(c)
    local tasks = {}
    for i, h in ipairs { DOC, DOC, "8.8.8.8", DOC_MD5 } do
      tasks[i] = loop:spawn(function() return h == "8.8.8.8" and c:ip(h) or c:file(h) end)
    end
    local ticks = 0
    while loop:step(0.01) > 0 do ticks = ticks + 1 end
    for _, t in ipairs(tasks) do assert.is_true(t.ok and t.results[1] ~= nil, tostring(t.error)) end
    assert.is_true(ticks > 5) -- the host's loop kept turning while Redis and the fake answered
    assert.equal(1, requests(srv, 0, DOC))
    assert.equal(3, requests(srv, 0))
    -- the same through the raw host-loop interface
    local co = coroutine.wrap(function() return c:file(DOC) end)
    local got = co()
    while got == c do
      c:step(c:timeout() or 0.05)
      got = co()
    end
    assert.equal(DOC, got.id)
    assert.equal(3, requests(srv, 0))
    c:close()
  end)

  it("goes on uncached with a wrong password, and refuses quota then", function()
    local bad = ("redis://:wrong@127.0.0.1:%d"):format(r.port)
    local c = client { cache = bad }
    assert(c:file(DOC))
    assert(c:file(DOC))
    assert.equal(2, requests(srv, 0))
    assert.is_true(c:cache_stats().errors >= 2)
    c:close()
    c = client { quota_state = bad }
    local v, err = c:file(DOC)
    assert.is_nil(v)
    assert.equal("QuotaStateError", err.code)
    assert.is_nil(tostring(err):find("wrong", 1, true))
    assert.equal(2, requests(srv, 0))
    assert.equal(("redis://:***@127.0.0.1:%d/0"):format(r.port), c:options().quota_state)
    c:close()
  end)

  it("keeps the limiter's windows and holds in Redis, for every host", function()
    local a = client { quota_state = r.url, rate = { { n = 3, per = 60 } }, max_wait = 0 }
    local b = client { quota_state = r.url, rate = { { n = 3, per = 60 } }, max_wait = 0 }
    assert(a:ip("1.1.1.1"))
    assert(b:ip("8.8.8.8"))
    assert(a:domain("github.com"))
    local _, err = b:domain("haiku-os.org")
    assert.equal("RateLimited", err.code)
    assert.is_true(err.retry_after > 50)
    assert.equal(3, requests(srv, 0))
    local st = assert(b:quota_status())
    assert.same({ kind = "sliding", n = 3, per = 60, used = 3 },
                { kind = st.windows[1].kind, n = st.windows[1].n, per = st.windows[1].per, used = st.windows[1].used })
    assert.is_true(st.windows[1].next_slot_in > 50)
    assert.equal(("redis://:***@127.0.0.1:%d/0"):format(r.port), st.url)
    -- a client with another window counts every request made with the key
    local day = client { quota_state = r.url, requests_per_day = 4, max_wait = 0 }
    assert.equal(3, assert(day:quota_status()).windows[1].used)
    assert(day:domain("virustotal.com"))
    assert.equal("RateLimited", select(2, day:domain("haiku-os.org")).code)
    -- the service says the quota is spent: every host holds back
    r:cli("FLUSHALL")
    local x = client { quota_state = r.url, max_wait = 0, retries = 0 }
    local y = client { quota_state = r.url, max_wait = 0 }
    srv:fault { type = "429", code = "QuotaExceededError", retry_after = 30 }
    assert.equal("QuotaExceededError", select(2, x:file(DOC)).code)
    assert.equal("RateLimited", select(2, y:file(DOC)).code)
    assert.is_number(assert(y:quota_status()).blocked_until)
    assert.equal(5, requests(srv, 0))
    for _, c in ipairs { a, b, day, x, y } do c:close() end
  end)

  it("writes and reads the hold's numbers whatever numeric locale the host set", function()
    local host = os.setlocale(nil, "numeric")
    if not os.setlocale("de_DE.UTF-8", "numeric") then
      pending("the de_DE.UTF-8 locale is not generated here (tools/deps.sh test makes it)")
      return
    end
    local ok, err = pcall(function()
      local x = client { quota_state = r.url, max_wait = 0, retries = 0 }
      local y = client { quota_state = r.url, max_wait = 0 }
      srv:fault { type = "429", code = "QuotaExceededError", retry_after = 30 }
      assert.equal("QuotaExceededError", select(2, x:file(DOC)).code)
      assert.equal("RateLimited", select(2, y:file(DOC)).code) -- "30,000000" would not be a hold
      local left = assert(y:quota_status()).blocked_until - os.time()
      assert.is_true(left > 28 and left <= 31, left)
      assert.equal(1, requests(srv, 0))
      x:close()
      y:close()
    end)
    os.setlocale(host, "numeric")
    assert(ok, err)
  end)

  it("lets four hosts share a quota of 5 per 2 s and their answers", function()
    srv:quota { key = KEY, windows = { { n = 5, per = 2 } } }
    local shared, jobs = {}, {}
    for i = 1, 4 do shared[i] = { "file", srv:register_file("shared " .. i).sha256 } end
    local duration = 6
    local start = system.gettime() + 0.5
    for h = 1, 4 do
      local lookups = { table.unpack(shared) }
      for i = 1, 8 do lookups[#lookups + 1] = { "file", srv:register_file(("host %d own %d"):format(h, i)).sha256 } end
      jobs[h] = { client = { apikey = KEY, base_url = srv.url, quota_state = r.url, cache = r.url,
                             rate = { { n = 5, per = 2 } }, max_wait = 30 },
                  lookups = lookups, start = start, ["until"] = start + duration }
    end
    local outputs = workers.run(jobs, function(h)
      local home = ("%s/host%d"):format(tmpdir, h)
      return { HOME = home, XDG_CACHE_HOME = home .. "/cache", XDG_STATE_HOME = home .. "/state" }
    end)
    local log = srv:log()
    local times, asked = {}, {}
    for _, e in ipairs(log) do
      assert.equal(200, e.status, e.path)
      assert.is_nil(asked[e.path], "asked twice: " .. e.path)
      asked[e.path] = true
      times[#times + 1] = e.time
    end
    table.sort(times)
    for i = 1, #times do
      local n = 0
      for k = i, #times do
        if times[k] < times[i] + 2 then n = n + 1 end
      end
      assert.is_true(n <= 5, ("%d requests within 2 s from request %d"):format(n, i))
    end
    -- the quota was used: at least 90% of what the windows allowed while there was work
    local used = 0
    for _, t in ipairs(times) do
      if t < times[1] + duration then used = used + 1 end
    end
    assert.is_true(used >= 0.9 * 5 * duration / 2, ("%d requests in %d s"):format(used, duration))
    -- every host got every shared indicator, and they cost one request each
    for h = 1, 4 do
      for i = 1, #shared do assert.equal("ok " .. shared[i][2], outputs[h][i]) end
      for _, line in ipairs(outputs[h]) do assert.truthy(line:match("^ok ") or line:match("^stats "), line) end
    end
    for i = 1, #shared do assert.is_true(asked["/api/v3/files/" .. shared[i][2]]) end
  end)

  it("fails closed while Redis is down, goes on uncached, and recovers once it is back", function()
    local down = {}
    for i = 1, 4 do down[i] = srv:register_file("down " .. i).sha256 end
    local quota = client { quota_state = r.url, cache = r.url, rate = { { n = 100, per = 1 } } }
    local cached = client { cache = r.url }
    assert(quota:file(down[1]))
    assert(cached:file(down[2]))
    r:kill()
    local since = #srv:log()
    for _, f in ipairs { down[3], down[1] } do
      local v, err = quota:file(f)
      assert.is_nil(v)
      assert.equal("QuotaStateError", err.code)
    end
    assert.equal(0, requests(srv, since)) -- fail closed: nothing sent
    local errors = cached:cache_stats().errors
    assert(cached:file(down[2]))
    assert(cached:file(down[2]))
    assert.equal(2, requests(srv, since)) -- uncached, but answered
    assert.is_true(cached:cache_stats().errors > errors)
    r:start_again()
    system.sleep(0.6) -- the clients try a new connection at most twice a second
    assert(quota:file(down[3]))
    assert(quota:file(down[3]))
    assert(cached:file(down[4]))
    assert(cached:file(down[4]))
    assert.equal(4, requests(srv, since))
    quota:close()
    cached:close()
  end)

  it("waits for another host's look-up, and asks itself once the holder's marker lapses", function()
    local f = srv:register_file("redis holder dies").sha256
    srv:fault { type = "slow", delay = 8, path = "/api/v3/files/" .. f }
    local base = { apikey = KEY, base_url = srv.url, quota_state = false, cache = r.url }
    local p = io.popen(("exec %s >/dev/null 2>&1 & echo $!"):format(
      worker_command { client = base, lookups = { { "file", f } } }))
    local holder = tonumber(p:read("l"))
    p:close()
    for _ = 1, 300 do
      if requests(srv, 0, f) > 0 then break end
      system.sleep(0.02)
    end
    assert.equal(1, requests(srv, 0, f))
    local waiter = io.popen(worker_command { client = base, lookups = { { "file", f } } })
    system.sleep(1)
    assert.equal(1, requests(srv, 0, f)) -- waiting, its marker kept alive by the holder
    -- which lapses at most 3 s after its last renewal
    local markers = {}
    for key in r:cli("KEYS", "vt:l:*"):gmatch("[^\n]+") do markers[#markers + 1] = key end
    assert.equal(1, #markers)
    local left = tonumber(r:cli("PTTL", markers[1]):match("%-?%d+"))
    assert.is_true(left > 0 and left <= 3000, tostring(left))
    os.execute("kill -9 " .. holder)
    assert.equal("ok " .. f, waiter:read("l"))
    waiter:close()
    assert.equal(2, requests(srv, 0, f))
  end)

  it("never puts the API key in a Redis key or value", function()
    local c = client { cache = r.url, quota_state = r.url, rate = { { n = 10, per = 1 } }, requests_per_day = 100 }
    assert(c:file(DOC))
    assert(c:url("http://example.com/"))
    assert.equal("NotFoundError", select(2, c:domain("nothing-here.example.com")).code)
    local v2 = client { cache = r.url, quota_state = r.url, api = "v2" }
    assert(v2:v2_file_report(DOC))
    assert(v2:v2_ip_report("1.1.1.1"))
    c:close()
    v2:close()
    local dump = r:dump()
    assert.truthy(dump:find("vt:quota:", 1, true))
    assert.truthy(dump:find(DOC, 1, true))
    assert.truthy(dump:find("v2/file/report", 1, true))
    assert.is_nil(dump:find(KEY, 1, true))
  end)
end)
