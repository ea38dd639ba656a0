-- Look-ups, the error model, retries and transport against the fake VirusTotal.
local vt = require "vt"
local fake = require "helpers.fake"

local EXE = { -- spec/fake/samples/v3/file_win32exe_417c0670.json
  sha256 = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c",
  md5 = "772d8e55f1010beafb6c6472ba3a4d69",
}

describe("client look-ups", function()
  local srv, c
  setup(function()
    srv = fake.start()
    c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5 }
  end)
  teardown(function()
    c:close()
    srv:stop()
  end)
  before_each(function() srv:reset() end)

  it("returns file objects by md5, sha1 or sha256, in any case", function()
    local by_sha = assert(c:file(EXE.sha256))
    assert.equal("file", by_sha.type)
    assert.equal(EXE.sha256, by_sha.id)
    local by_md5 = assert(c:file(EXE.md5:upper()))
    assert.equal(EXE.sha256, by_md5.id)
    local by_sha1 = assert(c:file(by_sha.attributes.sha1))
    assert.equal(EXE.sha256, by_sha1.id)
    assert.equal(EXE.sha256, assert(c:file(" " .. EXE.md5 .. "\n")).id)
  end)

  it("hands integral numbers back as integers", function()
    local f = assert(c:file(EXE.sha256))
    local a = f.attributes
    assert.equal("integer", math.type(a.size))
    assert.equal("integer", math.type(a.last_analysis_date))
    assert.equal("integer", math.type(a.last_analysis_stats.malicious))
    assert.equal("integer", math.type(a.reputation))
    -- and fractions stay fractions (a section's entropy)
    local entropy = a.pe_info.sections[1].entropy
    assert.equal("float", math.type(entropy))
    assert.equal(3.37, entropy)
  end)

  it("sends the key only in x-apikey", function()
    assert(c:file(EXE.sha256))
    local entry = srv:log()[1]
    assert.equal(srv.key, entry.headers["x-apikey"])
    assert.is_nil(entry.query:find(srv.key, 1, true))
    assert.is_nil(entry.path:find(srv.key, 1, true))
    assert.matches("^vt%-lua/", entry.headers["user-agent"])
  end)

  it("looks up URLs by URL (defanged too), by identifier and by sha256", function()
    local u = assert(c:url("http://example.com/"))
    assert.equal("url", u.type)
    assert.equal(u.id, assert(c:url("hxxp://example[.]com/")).id)
    assert.equal(u.id, assert(c:url(vt.url_id("http://example.com/"))).id)
    assert.equal(u.id, assert(c:url(u.id)).id)
    assert.equal("/api/v3/urls/" .. vt.url_id("http://example.com/"), srv:log()[1].path)
  end)

  it("looks up domains and IP addresses", function()
    local d = assert(c:domain("Haiku-OS[.]org"))
    assert.equal("domain", d.type)
    assert.equal("haiku-os.org", d.id)
    local ip = assert(c:ip("8.8.8.8"))
    assert.equal("ip_address", ip.type)
    assert.equal(15169, ip.attributes.asn)
    assert.equal("integer", math.type(ip.attributes.asn))
  end)

  it("keeps an analysis' meta", function()
    local id = "u-2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067-1569484202"
    local a = assert(c:analysis(id))
    assert.equal("analysis", a.type)
    assert.is_table(a.meta)
    assert.is_table(a.meta.url_info)
  end)

  it("reuses its connection across look-ups", function()
    for _ = 1, 5 do assert(c:file(EXE.sha256)) end
    local conns = {}
    for _, e in ipairs(srv:log()) do conns[e.conn] = true end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.equal(1, n)
  end)
end)

describe("client errors", function()
  local srv, c
  setup(function()
    srv = fake.start()
    c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 5, retries = 2,
                    retry_base = 0.01 }
  end)
  teardown(function()
    c:close()
    srv:stop()
  end)
  before_each(function() srv:reset() end)

  it("reports an unknown object as NotFoundError with its status", function()
    local v, err = c:file(("0"):rep(64))
    assert.is_nil(v)
    assert.equal("NotFoundError", err.code)
    assert.equal(404, err.http)
    assert.matches("not found", err.message)
    assert.equal("NotFoundError (HTTP 404): " .. err.message, tostring(err))
  end)

  it("reads well through assert", function()
    local ok, msg = pcall(function() return assert(c:file(("0"):rep(64))) end)
    assert.is_false(ok)
    assert.matches("^NotFoundError %(HTTP 404%): ", tostring(msg))
  end)

  it("reports a wrong key as WrongCredentialsError without the key", function()
    local bad = vt.client { apikey = "wrong-secret-key", base_url = srv.url, quota_state = false }
    local v, err = bad:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("WrongCredentialsError", err.code)
    assert.equal(401, err.http)
    assert.is_nil(tostring(err):find("wrong-secret-key", 1, true))
    bad:close()
  end)

  it("scrubs the key from any message the service echoes", function()
    srv:fault { type = "status", status = 401, code = "WrongCredentialsError",
                message = "Wrong API key: " .. srv.key }
    local _, err = c:file(EXE.sha256)
    assert.equal("WrongCredentialsError", err.code)
    assert.is_nil(tostring(err):find(srv.key, 1, true))
    assert.is_nil(err.message:find(srv.key, 1, true))
    assert.matches("%*%*%*", err.message)
  end)

  it("retries 5xx answers and succeeds", function()
    srv:fault { type = "status", status = 503, count = 2 }
    local f = assert(c:file(EXE.sha256))
    assert.equal(EXE.sha256, f.id)
    assert.equal(3, #srv:log())
  end)

  it("gives up after its retries with the service's code", function()
    srv:fault { type = "status", status = 503, count = -1 }
    local v, err = c:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("TransientError", err.code)
    assert.equal(503, err.http)
    assert.equal(3, #srv:log()) -- 1 + retries
  end)

  it("honours Retry-After on 429 TooManyRequestsError", function()
    srv:fault { type = "429", retry_after = 1 }
    assert(c:file(EXE.sha256))
    local log = srv:log()
    assert.equal(2, #log)
    assert.is_true(log[2].mono - log[1].mono >= 0.95) -- the service's wait, not retry_base's
  end)

  it("fails at once with RateLimited when Retry-After is beyond max_wait, saying when to come back", function()
    srv:fault { type = "429", retry_after = 30 }
    local v, err = c:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("RateLimited", err.code)
    assert.matches("HTTP 429", err.message)
    assert.equal(429, err.http)
    assert.equal(30, err.retry_after)
    assert.equal(1, #srv:log())
  end)

  it("answers QuotaExceededError with retry_after and marks the quota spent (60 s without Retry-After)", function()
    local q = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, max_wait = 2 }
    srv:fault { type = "429", code = "QuotaExceededError" } -- no Retry-After header
    local asked = os.time()
    local v, err = q:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("QuotaExceededError", err.code)
    assert.equal(429, err.http)
    assert.equal(60, err.retry_after)
    local held = q:quota_status().blocked_until - asked
    assert.is_true(held >= 59 and held <= 61 + (os.time() - asked), tostring(held))
    -- the next call is held back locally, without reaching the service
    local v2, err2 = q:file(EXE.sha256)
    assert.is_nil(v2)
    assert.equal("RateLimited", err2.code)
    assert.is_true(err2.retry_after > 0)
    assert.equal(1, #srv:log())
    assert.is_number(q:quota_status().blocked_until)
    q:close()
  end)

  it("times out a slow answer", function()
    local slow = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, timeout = 0.2, retries = 0 }
    srv:fault { type = "slow", delay = 1 }
    local v, err = slow:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("Timeout", err.code)
    assert.is_string(err.curl)
    slow:close()
  end)

  it("reports a connection cut mid-body as ConnectionError after retrying", function()
    srv:fault { type = "cut", count = -1 }
    local v, err = c:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("ConnectionError", err.code)
    assert.is_string(err.curl)
    assert.equal(3, #srv:log())
  end)

  it("recovers from one cut connection", function()
    srv:fault { type = "cut" }
    assert(c:file(EXE.sha256))
  end)

  it("reports invalid JSON and a wrong Content-Type as InvalidResponse", function()
    srv:fault { type = "badjson" }
    local v, err = c:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("InvalidResponse", err.code)
    srv:fault { type = "wrongtype" }
    v, err = c:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("InvalidResponse", err.code)
    assert.matches("text/html", err.message)
  end)

  it("reports a refused connection as ConnectionError", function()
    local nowhere = vt.client { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false, retries = 0 }
    local v, err = nowhere:file(EXE.sha256)
    assert.is_nil(v)
    assert.equal("ConnectionError", err.code)
    assert.is_string(err.curl)
    nowhere:close()
  end)

  it("never puts the key in an error, whatever the failure", function()
    local key = "k-" .. ("s3cr3t"):rep(4)
    local k = vt.client { apikey = key, base_url = srv.url, quota_state = false, retries = 0, timeout = 0.2 }
    local texts = { tostring(k) }
    for _, fault in ipairs {
      { type = "status", status = 500 }, { type = "cut" }, { type = "badjson" }, { type = "wrongtype" },
      { type = "slow", delay = 0.5 }, { type = "429", retry_after = 99 },
    } do
      srv:fault(fault)
      local _, err = k:file(EXE.sha256)
      texts[#texts + 1] = tostring(err)
      for _, v in pairs(err) do texts[#texts + 1] = tostring(v) end
    end
    for _, text in ipairs(texts) do
      assert.is_nil(text:find(key, 1, true), text)
    end
    k:close()
  end)
end)
