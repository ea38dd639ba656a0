-- The vt table, the client's options and handle life cycle (no server needed).
local vt = require "vt"

describe("the vt table", function()
  it("has the documented members", function()
    for _, name in ipairs { "client", "url_id", "hash_type", "refang", "ip_version", "is_private_ip", "versions",
                            "normalize", "error", "digest", "registered_domain", "decode", "encode", "sftp",
                            "smb_open", "verdict", "pp" } do
      assert.is_function(vt[name], name)
    end
    assert.is_string(vt._VERSION)
    assert.matches("^vt %d+%.%d+%.%d+$", vt._VERSION)
  end)

  it("uses cjson's null sentinel", function()
    assert.equal(require("cjson").null, vt.null)
  end)

  it("loads libsmbclient on the first vt.smb_open, not with the module", function()
    if not vt.versions().smb then
      pending("this build has no SMB support")
      return
    end
    -- a fresh process: what it has mapped before and after its first vt.smb_open
    local script = [[
local function mapped() return io.open("/proc/self/maps"):read("a"):find("libsmbclient", 1, true) ~= nil end
local vt = require "vt"
local before = mapped()
vt.smb_open("smb://127.0.0.1:1/share/file", { timeout = 2 }) -- nothing listens there: it fails
print(before, mapped())
]]
    local p = assert(io.popen(("LUA_CPATH_5_4='%s' lua5.4 -e '%s'"):format(package.cpath, script:gsub("'", "'\\''"))))
    local out = p:read("a")
    p:close()
    assert.equal("false\ttrue\n", out)
  end)

  it("reports the versions of what it links", function()
    local v = vt.versions()
    assert.matches("^%d+%.%d+%.%d+$", v.vt)
    assert.matches("^%d+%.%d+", v.libcurl)
    assert.matches("^%d+%.%d+", v.libssh2)
    assert.equal(_VERSION:match("%d+%.%d+"), v.lua:match("%d+%.%d+"))
    assert.is_boolean(v.smb)
  end)
end)

describe("vt.client options", function()
  local base = { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false }
  local function with(extra)
    local t = {}
    for k, v in pairs(base) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    return t
  end

  it("rejects an unknown option by name", function()
    assert.has_error(function() vt.client(with { requests_per_hour = 3 }) end,
      "vt.client: unknown option 'requests_per_hour'")
  end)

  it("rejects a value of the wrong type by name", function()
    assert.has_error(function() vt.client(with { timeout = "10" }) end,
      "vt.client: option 'timeout' must be a number (got string)")
    assert.has_error(function() vt.client(with { insecure = 1 }) end,
      "vt.client: option 'insecure' must be a boolean (got number)")
    assert.has_error(function() vt.client(with { rate = { { n = 0, per = 1 } } }) end)
    assert.has_error(function() vt.client(with { rate = { { n = 2, per = 1, burst = 3 } } }) end)
    assert.has_error(function() vt.client(with { api = "v4" }) end)
    assert.has_error(function() vt.client(with { base_url = "ftp://x" }) end)
    assert.has_error(function() vt.client(with { apikey = "a\r\nX-Evil: 1" }) end)
    assert.has_error(function() vt.client(with { quota_state = true }) end)
    assert.has_error(function() vt.client("k") end)
  end)

  it("takes the key from VT_API_KEY when apikey is absent", function()
    local cmd = [[VT_API_KEY=from-env lua5.4 -e 'package.cpath="build/?.so;"..package.cpath
      local c = require("vt").client{quota_state = false} print(c ~= nil)' 2>&1]]
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    assert.equal("true\n", out)
    local p2 = io.popen([[env -u VT_API_KEY lua5.4 -e 'package.cpath="build/?.so;"..package.cpath
      print(pcall(require("vt").client, {quota_state = false}))' 2>&1]])
    local out2 = p2:read("a")
    p2:close()
    assert.matches("apikey' is required", out2)
  end)

  it("accepts every documented option", function()
    local c = vt.client {
      apikey = "k", base_url = "http://127.0.0.1:9/", api = "v2", requests_per_minute = 4,
      requests_per_day = 500, requests_per_month = 15500, rate = { { n = 5, per = 2 } },
      quota_state = false, max_wait = 1, timeout = 2, connect_timeout = 1, retries = 0,
      proxy = "http://127.0.0.1:9", cainfo = "/etc/ssl/certs/ca-certificates.crt", insecure = false,
      user_agent = "test", poll_interval = 1, poll_timeout = 2,
    }
    assert.matches("^vt%.client %(v2 http://127%.0%.0%.1:9,", tostring(c))
    c:close()
  end)
end)

describe("a client handle", function()
  it("never shows the key and says when it is closed", function()
    local c = vt.client { apikey = "super-secret-key", base_url = "http://127.0.0.1:9", quota_state = false }
    assert.is_nil(tostring(c):find("super-secret-key", 1, true))
    c:close()
    c:close() -- twice is fine
    assert.equal("vt.client (closed)", tostring(c))
    assert.has_error(function() c:file("44d88612fea8a8f36de82e1278abb02f") end, "attempt to use a closed vt client")
  end)

  it("closes at the end of a <close> scope", function()
    local kept
    do
      local c <close> = vt.client { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false }
      kept = c
    end
    assert.equal("vt.client (closed)", tostring(kept))
  end)

  it("is collected without being closed", function()
    for _ = 1, 50 do
      vt.client { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false }
    end
    collectgarbage()
    collectgarbage()
  end)

  it("raises for arguments of the wrong type", function()
    local c = vt.client { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false }
    assert.has_error(function() c:file(42) end)
    assert.has_error(function() c:domain() end)
    assert.has_error(function() c:related("thing", "x", "urls") end)
    assert.has_error(function() c:batch({ { "thing", "x" } }) end)
    assert.has_error(function() c:v2("file/nothing", {}) end)
    assert.has_error(function() c:request("BREW", "/files") end)
    c:close()
  end)

  it("answers malformed indicators with InvalidArgument before any request", function()
    -- port 9 (discard) is closed here: a request would fail with ConnectionError instead
    local c = vt.client { apikey = "k", base_url = "http://127.0.0.1:9", quota_state = false, retries = 0 }
    local cases = {
      { "file", "not-a-hash" }, { "file", "" }, { "file", "44d88612fea8a8f36de82e1278abb02" },
      { "file", "44d88612fea8a8f36de82e1278abb02f\0" }, { "domain", "exa mple.com" },
      { "domain", "-bad-.com" }, { "domain", ("a"):rep(300) .. ".com" }, { "ip", "300.1.1.1" },
      { "ip", "1:2:3:4:5:6:7:8:9" }, { "url", "   " }, { "analysis", ("x"):rep(600) },
    }
    for _, case in ipairs(cases) do
      local v, err = c[case[1]](c, case[2])
      assert.is_nil(v)
      assert.equal("InvalidArgument", err.code, case[1] .. " " .. case[2])
      assert.is_nil(err.http)
      assert.matches("^InvalidArgument: ", tostring(err))
    end
    c:close()
  end)
end)
