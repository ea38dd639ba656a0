-- The shared limiter (SPEC 3.4), through the public API: vt.client's rate
-- options, quota_state, max_wait and c:quota_status(). Several specs run
-- other processes (spec/helpers/limiter_worker.lua) on one state file, the way
-- concurrent SOAR action runs share a key.
local vt = require "vt"
local fake = require "helpers.fake"
local system = require "system"

local HASH = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c" -- a file the fake serves
local WORKER = "spec/helpers/limiter_worker.lua"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Exit status of a shell command.
local function run(cmd)
  local _, _, code = os.execute(cmd)
  return code
end

-- Shell command running the worker with the module build this busted run uses.
local function worker_command(...)
  local args = {}
  for i, a in ipairs{...} do
    args[i] = quote(a)
  end
  return ("env LUA_PATH_5_4=%s LUA_CPATH_5_4=%s lua5.4 %s %s"):format(
    quote(package.path), quote(package.cpath), WORKER, table.concat(args, " "))
end

local function read_lines(path)
  local lines = {}
  local f = io.open(path)
  if f then
    for line in f:lines() do
      lines[#lines + 1] = line
    end
    f:close()
  end
  return lines
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then
    return false
  end
  local stat = f:read("a")
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function kill(pid)
  run("kill -9 " .. pid)
  local deadline = system.monotime() + 5
  while alive(pid) and system.monotime() < deadline do
    system.sleep(0.01)
  end
  assert(not alive(pid), "worker " .. pid .. " survived kill -9")
end

-- Whether someone holds the lock of the state at path (flock(1) cannot take it at once).
local function lock_held(path)
  return run(("flock -n -E 99 %s true"):format(quote(path .. ".lock"))) == 99
end

-- The (first) window of a kind in a quota_status() table.
local function window(status, kind)
  for _, w in ipairs(status.windows) do
    if w.kind == kind then
      return w
    end
  end
end

describe("limiter", function()
  local srv, tmpdir, spawned

  -- A fresh state path in its own (not yet existing) directory.
  local function state_path(name)
    return tmpdir .. "/" .. name .. "/quota.state"
  end

  -- Starts a worker in the background, its output going to a file; returns
  -- its pid and that file.
  local function spawn(...)
    spawned = spawned + 1
    local out = ("%s/worker-%d.out"):format(tmpdir, spawned)
    local p = io.popen(("exec %s >%s 2>&1 & echo $!"):format(worker_command(...), quote(out)))
    local pid = tonumber(p:read("l"))
    p:close()
    return pid, out
  end

  -- Requests for HASH that reached the fake after log entry `since`.
  local function lookups_since(since)
    local log, hits = srv:log(), {}
    for i = since + 1, #log do
      if log[i].path:find(HASH, 1, true) then
        hits[#hits + 1] = log[i]
      end
    end
    return hits
  end

  setup(function()
    srv = fake.start{keys = {"test-key", "spent-key"}}
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(run("mkdir -p " .. quote(tmpdir)) == 0)
    spawned = 0
  end)

  teardown(function()
    srv:stop()
    run("rm -rf " .. quote(tmpdir))
  end)

  it("keeps three processes sharing {n = 5, per = 1} to 5 requests in any second at the server", function()
    local state, since = state_path("three"), #srv:log()
    local procs = {}
    for i = 1, 3 do
      procs[i] = io.popen(worker_command("lookups", srv.url, state, 4, HASH))
    end
    local outcomes = {}
    for i = 1, 3 do
      for line in procs[i]:lines() do
        outcomes[#outcomes + 1] = line
      end
      procs[i]:close()
    end
    assert.same({"ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"}, outcomes)

    local times = {}
    for _, entry in ipairs(lookups_since(since)) do
      times[#times + 1] = entry.time
    end
    table.sort(times)
    assert.equal(12, #times)
    for i = 1, #times - 5 do
      assert.is_true(times[i + 5] - times[i] >= 1,
        ("requests %d..%d arrived within %.3f s"):format(i, i + 5, times[i + 5] - times[i]))
    end
    -- One limiter per process would have let all 12 through at once.
    assert.is_true(times[#times] - times[1] >= 2)
  end)

  it("survives writers killed with kill -9 at random moments", function()
    local state = state_path("killed")
    local printed, kills = 0, 0
    math.randomseed(os.time())
    for _ = 1, 6 do
      local a, out_a = spawn("hammer", state)
      local b, out_b = spawn("hammer", state)
      system.sleep(0.15 + math.random() * 0.3)
      kill(a)
      system.sleep(math.random() * 0.05)
      kill(b)
      kills = kills + 2
      for _, out in ipairs{out_a, out_b} do
        for _, line in ipairs(read_lines(out)) do
          assert.equal("1", line)
          printed = printed + 1
        end
      end
    end
    assert.is_true(printed > 50, "the workers barely ran: " .. printed)

    -- Nothing was lost or torn: a new client sees every slot a worker reported
    -- (and at most one more per kill: taken, then killed before it could say so).
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state, max_wait = 5,
                        rate = {{n = 100000, per = 600}}, requests_per_day = 1000000000}
    local used = window(assert(c:quota_status()), "sliding").used
    assert.is_true(used >= printed and used <= printed + kills,
      ("used %d, printed %d, kills %d"):format(used, printed, kills))
    -- No lock is left held (a held one would fail the look-up with QuotaStateError).
    assert.is_false(lock_held(state))
    assert.is_table(c:file(HASH))
    assert.equal(used + 1, window(c:quota_status(), "sliding").used)
    c:close()

    -- At most one leftover temporary file, whatever the number of kills.
    local p = io.popen("ls -A " .. quote(tmpdir .. "/killed"))
    for name in p:lines() do
      assert.is_truthy(({["quota.state"] = 1, ["quota.state.lock"] = 1, ["quota.state.tmp"] = 1})[name], name)
    end
    p:close()
  end)

  it("lets the next process go on when one dies holding the lock", function()
    if run("command -v flock >/dev/null") ~= 0 then
      pending("needs flock(1) to see who holds the lock")
      return
    end
    local state = state_path("holder")
    local pid, out = spawn("hammer", state)
    local deadline = system.monotime() + 10
    while #read_lines(out) == 0 and system.monotime() < deadline do
      system.sleep(0.01)
    end
    -- Stop the worker at random moments until it is caught holding the lock
    -- (flock -n then fails), and kill it there.
    local caught = false
    for _ = 1, 300 do
      run("kill -STOP " .. pid)
      if lock_held(state) then
        caught = true
        break
      end
      run("kill -CONT " .. pid)
    end
    kill(pid)
    assert.is_true(caught, "never caught the worker holding the lock")
    local printed = #read_lines(out)

    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state, max_wait = 5,
                        rate = {{n = 100000, per = 600}}, requests_per_day = 1000000000}
    assert.is_false(lock_held(state)) -- the kernel dropped the dead holder's lock
    assert.is_table(c:file(HASH))
    local used = window(c:quota_status(), "sliding").used
    assert.is_true(used >= printed + 1 and used <= printed + 2, ("used %d, printed %d"):format(used, printed))
    c:close()
  end)

  it("fails with RateLimited when the wait would pass max_wait, and sends nothing", function()
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state_path("max_wait"),
                        rate = {{n = 2, per = 60}}, max_wait = 1}
    assert.is_table(c:file(HASH))
    assert.is_table(c:file(HASH))
    local since = #srv:log()
    local obj, err = c:file(HASH)
    assert.is_nil(obj)
    assert.equal("RateLimited", err.code)
    assert.is_true(err.retry_after > 55 and err.retry_after <= 61, tostring(err.retry_after))
    assert.equal(since, #srv:log())
    c:close()
  end)

  it("waits for a slot that opens within max_wait", function()
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state_path("short_wait"),
                        rate = {{n = 2, per = 0.4}}, max_wait = 5}
    local since, started = #srv:log(), system.monotime()
    for _ = 1, 3 do
      assert.is_table(c:file(HASH))
    end
    assert.is_true(system.monotime() - started >= 0.4)
    assert.equal(3, #lookups_since(since))
    c:close()
  end)

  it("reports each window's use and next slot in quota_status()", function()
    local state = state_path("status")
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state, max_wait = 1,
                        rate = {{n = 5, per = 2}, {n = 100, per = 3600}}}
    local st = assert(c:quota_status())
    assert.equal(state, st.path)
    assert.is_nil(st.blocked_until)
    assert.same({
      {kind = "sliding", n = 5, per = 2, used = 0, next_slot_in = 0},
      {kind = "sliding", n = 100, per = 3600, used = 0, next_slot_in = 0},
    }, st.windows)
    for _, key in ipairs{"n", "per", "used"} do
      assert.equal("integer", math.type(st.windows[1][key]), key)
    end

    for _ = 1, 3 do
      assert.is_table(c:file(HASH))
    end
    st = c:quota_status()
    assert.equal(3, st.windows[1].used)
    assert.equal(0, st.windows[1].next_slot_in)
    assert.equal(3, st.windows[2].used)

    assert.is_table(c:file(HASH))
    assert.is_table(c:file(HASH))
    st = c:quota_status()
    assert.equal(5, st.windows[1].used)
    assert.equal(5, st.windows[2].used)
    assert.equal(0, st.windows[2].next_slot_in)
    -- The oldest of the five frees its slot 2 s (plus a small guard) after it was taken.
    local next_in = st.windows[1].next_slot_in
    assert.is_true(next_in > 0 and next_in <= 2.2, tostring(next_in))

    -- Another client on the same state sees the same use.
    local other = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state,
                            rate = {{n = 5, per = 2}}}
    assert.equal(5, other:quota_status().windows[1].used)
    other:close()
    c:close()
  end)

  it("counts calendar windows until 00:00 UTC", function()
    local state = state_path("calendar")
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state, max_wait = 1,
                        requests_per_day = 3, requests_per_month = 1000}
    for _ = 1, 3 do
      assert.is_table(c:file(HASH))
    end
    local now = system.gettime()
    local midnight = (now // 86400 + 1) * 86400
    local st = c:quota_status()
    local day, month = window(st, "day"), window(st, "month")
    assert.same({3, 3, 3, 1000}, {day.n, day.used, month.used, month.n})
    assert.is_true(math.abs(day.next_slot_in - (midnight - now)) < 2)
    assert.equal(0, month.next_slot_in)

    local obj, err = c:file(HASH)
    assert.is_nil(obj)
    assert.equal("RateLimited", err.code)
    assert.is_true(math.abs(err.retry_after - (midnight - now)) < 5)

    -- Kept in the state: a new client (a new process, as far as the file knows) sees it.
    local again = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state,
                            requests_per_day = 3}
    assert.equal(3, window(again:quota_status(), "day").used)
    again:close()
    c:close()
  end)

  it("counts the monthly window until the 1st of the next month, 00:00 UTC", function()
    local c = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state_path("monthly"), max_wait = 1,
                        requests_per_month = 2}
    for _ = 1, 2 do
      assert.is_table(c:file(HASH))
    end
    local now = system.gettime()
    -- the first of next month, 00:00 UTC, in epoch seconds (days from the civil date)
    local t = os.date("!*t", now // 1)
    local y, m = t.year + (t.month == 12 and 1 or 0), t.month % 12 + 1
    local yy = m <= 2 and y - 1 or y
    local era, mp = yy // 400, (m + 9) % 12
    local yoe = yy - era * 400
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + (153 * mp + 2) // 5
    local next_month = (era * 146097 + doe - 719468) * 86400
    local month = window(c:quota_status(), "month")
    assert.same({2, 2}, {month.n, month.used})
    assert.is_true(math.abs(month.next_slot_in - (next_month - now)) < 2, tostring(month.next_slot_in))
    local obj, err = c:file(HASH)
    assert.is_nil(obj)
    assert.equal("RateLimited", err.code)
    assert.is_true(math.abs(err.retry_after - (next_month - now)) < 5, tostring(err.retry_after))
    c:close()
  end)

  it("keeps its state by default under $XDG_STATE_HOME/vt, else ~/.local/state/vt, named by a digest of the key",
    function()
    local key = "default-path-key"
    local name = "quota-" .. vt.digest{data = key}.sha256:sub(1, 16) .. ".state"
    local function path_in(env)
      local p = assert(io.popen(("env %s LUA_CPATH_5_4=%s lua5.4 -e %s"):format(env, quote(package.cpath),
        quote(("print(require('vt').client{apikey = %q}:quota_status().path)"):format(key)))))
      local out = p:read("l")
      p:close()
      return out
    end
    assert.equal(tmpdir .. "/xdg/vt/" .. name, path_in("XDG_STATE_HOME=" .. quote(tmpdir .. "/xdg")))
    assert.equal(tmpdir .. "/home/.local/state/vt/" .. name,
                 path_in("XDG_STATE_HOME= HOME=" .. quote(tmpdir .. "/home")))
    assert.is_nil(name:find(key, 1, true))
  end)

  it("keeps the windows in the process with quota_state = false", function()
    local function client()
      return vt.client{apikey = "test-key", base_url = srv.url, quota_state = false, max_wait = 1,
                       rate = {{n = 2, per = 60}}}
    end
    local a, b = client(), client()
    assert.is_table(a:file(HASH))
    assert.is_table(a:file(HASH))
    local st = a:quota_status()
    assert.is_nil(st.path)
    assert.equal(2, st.windows[1].used)
    local _, err = a:file(HASH)
    assert.equal("RateLimited", err.code)
    -- Nothing shared: the other client starts empty.
    assert.equal(0, b:quota_status().windows[1].used)
    assert.is_table(b:file(HASH))
    a:close()
    b:close()
  end)

  it("holds every client back once the service says the quota is spent", function()
    local state = state_path("spent")
    srv:quota{key = "spent-key", per_minute = 1}
    local function client()
      return vt.client{apikey = "spent-key", base_url = srv.url, quota_state = state, max_wait = 2}
    end
    local a, b = client(), client()
    assert.is_table(a:file(HASH))
    local _, err = a:file(HASH)
    assert.equal("QuotaExceededError", err.code)
    local blocked_until = a:quota_status().blocked_until
    assert.is_true(blocked_until > system.gettime() + 30, tostring(blocked_until))
    -- Another client of the key (another process, as far as the state knows)
    -- fails at once, without a request.
    local since = #srv:log()
    local obj, err2 = b:file(HASH)
    assert.is_nil(obj)
    assert.equal("RateLimited", err2.code)
    assert.is_true(err2.retry_after > 30)
    assert.equal(since, #srv:log())
    assert.equal(blocked_until, b:quota_status().blocked_until)
    a:close()
    b:close()
  end)

  it("counts requests of clients with other windows on the same state", function()
    local state = state_path("mixed")
    local strict = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state,
                             requests_per_minute = 3, max_wait = 1}
    local loose = vt.client{apikey = "test-key", base_url = srv.url, quota_state = state,
                            rate = {{n = 10, per = 2}}}
    for _ = 1, 3 do
      assert.is_table(loose:file(HASH))
    end
    -- The per-minute window saw the loose client's three requests.
    assert.equal(3, strict:quota_status().windows[1].used)
    local _, err = strict:file(HASH)
    assert.equal("RateLimited", err.code)
    -- The loose client still has room in its own window.
    assert.is_table(loose:file(HASH))
    strict:close()
    loose:close()
  end)
end)
