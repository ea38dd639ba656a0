-- The playbooks of examples/ run against the fake VirusTotal as a person runs them (tools/demo.sh
-- runs triage.lua): their verdicts, and each entity's stage shown as plain lines on a stdout that
-- is not a terminal (a pipe here).
local fake = require "helpers.fake"
local files = require "helpers.files"
local vt_decode = require("vt").decode

-- Runs an example with the fake's URL and key; its stdout.
local function run(srv, script, env)
  local vars = { VT_API_KEY = srv.key, VT_BASE_URL = srv.url }
  for k, v in pairs(env or {}) do vars[k] = v end
  local parts = {}
  for k, v in pairs(vars) do parts[#parts + 1] = k .. "=" .. files.quote(v) end
  local p = assert(io.popen("env " .. table.concat(parts, " ") .. " lua5.4 " .. script .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  assert.is_true(ok, out)
  return out
end

-- The triage table's rows by entity: {type, status, detections, seed rule, verdict, reason}.
local function triage_rows(out)
  local rows, header = {}, nil
  for line in out:gmatch("[^\n]+") do
    if line:find("^ENTITY ") then
      header = line
    elseif header and line == "" then
      break
    elseif header then
      -- columns start where the header's names start
      local cells, starts = {}, {}
      for at in header:gmatch("()%S+") do
        if header:sub(at - 1, at - 1) == " " and header:sub(at - 2, at - 2) == " " or at == 1 then
          starts[#starts + 1] = at
        end
      end
      for i, at in ipairs(starts) do
        cells[i] = line:sub(at, (starts[i + 1] or #line + 2) - 1):match("^(.-)%s*$")
      end
      rows[cells[1]] = cells
    end
  end
  return rows
end

describe("examples", function()
  local srv, dir
  setup(function()
    srv = fake.start { analysis_steps = 1 }
    dir = files.tmpdir()
  end)
  teardown(function()
    srv:stop()
    files.rmtree(dir)
  end)
  before_each(function()
    srv:reset()
  end)

  for _, api in ipairs { "v3", "v2" } do
    it("triage.lua over " .. api .. " calls the clearly malicious samples malicious and no well-known site", function()
      local out = run(srv, "examples/triage.lua", { VT_API_VERSION = api, VT_TRIAGE_OUT = dir .. "/case.json" })
      local rows = triage_rows(out)
      for _, bad in ipairs { "001015AAFCAE8A6942366CBB0E7D39C0738752A7800C41EA1C655D47B0A4D04C",
        "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b",
        "http://login-micros0ft.example/VT-FAKE-MALICIOUS=14" } do
        assert.equal("malicious", rows[bad][6], bad)
      end
      for _, known in ipairs { "1.1.1.1", "8[.]8[.]8[.]8", "http://example.com/", "mail.github.com", "virustotal.com",
        "hxxps://www.dropbox[.]com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1" } do
        assert.are_not.equal("malicious", rows[known][6], known)
        assert.truthy(#rows[known][7] > 0, known .. " has a reason")
      end
      -- 1.1.1.1's own object has no analysis: unknown, though its recorded related samples meet
      -- the seed's rule, which the row still shows
      assert.equal("unknown", rows["1.1.1.1"][6])
      assert.equal("suspicious", rows["1.1.1.1"][5])
      -- each entity's stage came first, as plain lines
      assert.matches("\nscan_hash 001015aafcae8a6942366cbb0e7d39c0738752a… looked up\n", "\n" .. out)
      assert.matches("\nscan_url http://login%-micros0ft%.example/VT%-FAKE%-… done\n", out)
      assert.is_nil(out:find("\r", 1, true))
    end)
  end

  it("fleet.lua: workers on several hosts share the quota and the cache in one Redis", function()
    local redis = require "helpers.redis"
    if not redis.usable() then
      pending("redis-server is not installed")
      return
    end
    local r <close> = redis.start()
    srv:analysis_steps(0)
    local outs = {}
    for host = 1, 2 do -- one after the other, each with a HOME of its own
      outs[host] = run(srv, "examples/fleet.lua examples/cases/phishing.json",
        { VT_REDIS = r.url, VT_REQUESTS_PER_MINUTE = "600", HOME = dir .. "/host" .. host })
    end
    local first = tonumber(outs[1]:match("case 4711: %d+ malicious; (%d+) requests sent"))
    assert.truthy(first and first > 0, outs[1])
    -- the second host finds every answer in the fleet's cache
    assert.matches("case 4711: %d+ malicious; 0 requests sent, %d+ answers from the fleet's cache", outs[2])
    assert.equal(first, #srv:log())
    -- and the quota windows live in Redis, under a digest of the key, never the key
    assert.truthy(r:cli("KEYS", "vt:quota:*"):find("vt:quota:", 1, true))
    assert.is_nil(r:cli("KEYS", "*"):find(srv.key, 1, true))
  end)

  for _, case in ipairs {
    { script = "examples/cqueues_loop.lua", result = "^%s*[%d.]+s  %x+  %d+ malicious$" },
    { script = "examples/luv_loop.lua", result = "^%s*[%d.]+s  %a+%s+%S+  %a[%w_]*$" },
  } do
    it(case.script .. " has its three look-ups in flight at once while the host's timer ticks", function()
      -- every answer comes half a second late: the host's ticks go on meanwhile
      srv:fault { type = "slow", delay = 0.5, path = "/api/v3/", count = 3 }
      local out = run(srv, case.script, { HOME = dir, XDG_STATE_HOME = dir .. "/state" })
      local results, ticks_before_last, ticks = 0, 0, 0
      for line in out:gmatch("[^\n]+") do
        if line:find("tick$") then
          ticks = ticks + 1
        else
          assert.matches(case.result, line)
          results = results + 1
          ticks_before_last = ticks
        end
      end
      assert.equal(3, results, out)
      assert.is_true(ticks_before_last >= 2, out)
      -- three requests on three connections: they were in flight together
      local log, conns, distinct = srv:log(), {}, 0
      assert.equal(3, #log)
      for _, e in ipairs(log) do
        distinct = distinct + (conns[e.conn] and 0 or 1)
        conns[e.conn] = true
      end
      assert.equal(3, distinct)
    end)
  end

  it("splunk_actions.lua runs five actions and prints each summary, then the run's", function()
    local out = run(srv, "examples/splunk_actions.lua",
      { HOME = dir, XDG_STATE_HOME = dir .. "/state", XDG_CACHE_HOME = dir .. "/cache" })
    local actions = {}
    for action, status in out:gmatch("\n?(%a[%w_]+)%s+(%a+)%s+{") do actions[#actions + 1] = action .. " " .. status end
    assert.same({ "test_connectivity success", "file_reputation success", "url_reputation success",
      "domain_reputation success", "ip_reputation success" }, actions)
    local summary = assert(vt_decode(out:match("run summary: (%b{})")))
    assert.same({ 5, 5 }, { summary.total_objects, summary.total_objects_successful })
  end)

  it("detonate.lua shows each action's stages, then the verdicts", function()
    local sample = dir .. "/sample.txt"
    files.write(sample, "a sample for detonate.lua")
    srv:analysis_steps(2) -- the first poll finds each scan queued
    local out = run(srv, "examples/detonate.lua " .. files.quote(sample) .. " http://new-site.example.org/x",
      { VT_POLL_EVERY = "0.05", VT_VAULT = dir .. "/vault" })
    local stages = {}
    for action, stage in out:gmatch("\n(detonate_%a+) %S+ ([^\n]+)") do
      stages[#stages + 1] = action .. " " .. stage:gsub(" %d+ s$", "")
    end
    assert.same({ "detonate_file not found", "detonate_file uploading 100%", "detonate_file queued",
      "detonate_file queued", "detonate_file done", "detonate_url not found", "detonate_url queued",
      "detonate_url queued", "detonate_url done" }, stages)
    assert.matches("\nfile " .. sample:gsub("%p", "%%%0") .. ": clean, 0/%d+ engines", out)
    assert.matches("\n2 actions, 2 successful, 0 with detections\n$", out)
  end)
end)
