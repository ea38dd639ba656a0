-- Self-test of the fake VirusTotal server (spec/fake/) through its helper, with curl calls.
local fake = require "helpers.fake"
local cjson = require "cjson"

local KEY = "test-key"
local http = fake.http

local WIN32_SHA256 = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
local V2_FILE_SHA256 = "b35ef2d8a3ee0d29eecb83acf45c1f192ceca75ab10dec861166af2b7bda373b"
local EXAMPLE_URL_ID = "2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067"
local EICAR = [[X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*]]

-- Children run without LD_PRELOAD: under the CI's AddressSanitizer stage a preloaded
-- libasan makes curl hang at start.
local function sh(cmd)
  local pipe = assert(io.popen("env -u LD_PRELOAD sh -c " .. ("'" .. cmd:gsub("'", "'\\''") .. "'")))
  local out = pipe:read("*a")
  pipe:close()
  return (out:gsub("%s+$", ""))
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local temps = {}
local function temp_file(data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  temps[#temps + 1] = path
  return path
end

local function digest(tool, path)
  return sh(tool .. " " .. shell_quote(path)):match("^(%x+)")
end

local function url_id(url)
  return sh("printf %s " .. shell_quote(url) .. " | base64 -w0 | tr '+/' '-_' | tr -d '='")
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a")
  f:close()
  return stat:match("%) (%a)") ~= "Z"
end

local function wait_until_dead(pid, seconds)
  for _ = 1, seconds * 10 do
    if not alive(pid) then return true end
    os.execute("sleep 0.1")
  end
  return false
end

local function decode(res)
  return cjson.decode(res.body)
end

describe("fake VirusTotal server", function()
  local srv

  -- v3 request with the test key unless opts.headers says otherwise
  local function v3(method, path, opts)
    opts = opts or {}
    opts.headers = opts.headers or {["x-apikey"] = KEY}
    return http(method, srv.url .. "/api/v3" .. path, opts)
  end

  local function v2(method, endpoint, params, opts)
    opts = opts or {}
    opts.urlencoded = params
    if method == "GET" then opts.args = {"-G"} end
    return http(method, srv.url .. "/vtapi/v2/" .. endpoint, opts)
  end

  local function upload(content, path)
    local res = v3("POST", path or "/files", {files = {file = temp_file(content)}})
    assert.equal(200, res.status, res.body)
    return decode(res).data
  end

  local function poll(analysis_id)
    local res = v3("GET", "/analyses/" .. analysis_id)
    assert.equal(200, res.status, res.body)
    return decode(res)
  end

  local function walk(url)
    local ids, pages = {}, 0
    while url do
      local body = decode(http("GET", url, {headers = {["x-apikey"] = KEY}}))
      pages = pages + 1
      for _, item in ipairs(body.data) do ids[#ids + 1] = item.id end
      url = body.links.next
      if url then
        assert.equal(1, url:find(srv.url .. "/api/v3/", 1, true))
        assert.truthy(url:find("cursor=" .. body.meta.cursor, 1, true))
      else
        assert.is_nil(body.meta)
      end
      assert.truthy(pages < 20, "the cursor walk does not end")
    end
    return ids, pages
  end

  local function distinct(list)
    local seen = {}
    for _, v in ipairs(list) do
      if seen[v] then return false end
      seen[v] = true
    end
    return true
  end

  setup(function()
    srv = fake.start{keys = {KEY, "second-key"}}
  end)

  teardown(function()
    srv:stop()
    for _, path in ipairs(temps) do os.remove(path) end
  end)

  before_each(function()
    srv:reset()
  end)

  describe("authentication", function()
    it("answers 401 AuthenticationRequiredError without a key", function()
      local res = v3("GET", "/files/" .. WIN32_SHA256, {headers = {}})
      assert.equal(401, res.status)
      assert.equal("application/json; charset=utf-8", res.headers["content-type"])
      assert.same({error = {code = "AuthenticationRequiredError",
                            message = "X-Apikey header is missing"}}, decode(res))
    end)

    it("answers 401 WrongCredentialsError for an unknown key, without echoing it", function()
      local res = v3("GET", "/files/" .. WIN32_SHA256, {headers = {["x-apikey"] = "leaked-key-123"}})
      assert.equal(401, res.status)
      assert.same({error = {code = "WrongCredentialsError", message = "Wrong API key"}}, decode(res))
      assert.is_nil(res.body:find("leaked-key-123", 1, true))
    end)

    it("takes the header in any case and every --key", function()
      assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256, {headers = {["X-APIKEY"] = KEY}}).status)
      assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256,
                           {headers = {["X-Apikey"] = "second-key"}}).status)
    end)
  end)

  describe("objects", function()
    it("serves every sample file by sha256, sha1 and md5, in any case", function()
      for _, sha256 in ipairs{WIN32_SHA256, V2_FILE_SHA256,
                              "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
                              "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
                              "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b"} do
        local file = decode(v3("GET", "/files/" .. sha256)).data
        assert.equal("file", file.type)
        assert.equal(sha256, file.id)
        for _, alias in ipairs{file.attributes.md5:upper(), file.attributes.sha1} do
          assert.equal(sha256, decode(v3("GET", "/files/" .. alias)).data.id)
        end
      end
    end)

    it("serves URLs by unpadded URL-safe base64 and by sha256", function()
      local by_b64 = decode(v3("GET", "/urls/" .. url_id("http://example.com/"))).data
      assert.equal(EXAMPLE_URL_ID, by_b64.id)
      assert.equal("http://example.com/", by_b64.attributes.url)
      assert.equal(EXAMPLE_URL_ID, decode(v3("GET", "/urls/" .. EXAMPLE_URL_ID)).data.id)
      local dropbox = "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1"
      local id = url_id(dropbox)
      assert.truthy(id:find("_", 1, true))
      assert.equal(dropbox, decode(v3("GET", "/urls/" .. id)).data.attributes.url)
    end)

    it("serves domains and IP addresses with links on its own origin", function()
      for _, name in ipairs{"github.com", "haiku-os.org", "virustotal.com"} do
        local domain = decode(v3("GET", "/domains/" .. name)).data
        assert.same({"domain", name}, {domain.type, domain.id})
        assert.equal(srv.url .. "/api/v3/domains/" .. name, domain.links.self)
      end
      local ip = decode(v3("GET", "/ip_addresses/8.8.8.8")).data
      assert.same({"ip_address", "8.8.8.8", 15169}, {ip.type, ip.id, ip.attributes.asn})
      assert.equal("1.1.1.1", decode(v3("GET", "/ip_addresses/1.1.1.1")).data.id)
    end)

    it("serves the sample analyses and their items", function()
      local id = "u-" .. EXAMPLE_URL_ID .. "-1569484202"
      local analysis = poll(id)
      assert.equal("completed", analysis.data.attributes.status)
      assert.equal("http://example.com/", analysis.meta.url_info.url)
      assert.equal(EXAMPLE_URL_ID, decode(v3("GET", "/analyses/" .. id .. "/item")).data.id)
    end)

    it("embeds relationships on request", function()
      local ip = decode(v3("GET", "/ip_addresses/1.1.1.1?relationships=resolutions,urls")).data
      assert.equal(10, #ip.relationships.resolutions.data)
      local first = ip.relationships.urls.data[1]
      assert.same({type = "url", id = first.id}, first)
      assert.truthy(ip.relationships.urls.meta.cursor)
      assert.equal(srv.url .. "/api/v3/ip_addresses/1.1.1.1/urls", ip.relationships.urls.links.related)
    end)
  end)

  describe("errors", function()
    it("answers 404 NotFoundError with the service's messages", function()
      local cases = {
        {"/files/" .. string.rep("0", 64), 'File "' .. string.rep("0", 64) .. '" not found'},
        {"/urls/thisurlidmakesnosenseatall", 'URL "thisurlidmakesnosenseatall" not found'},
        {"/domains/unknown.example", 'Domain "unknown.example" not found'},
        {"/ip_addresses/192.0.2.1", 'IP address "192.0.2.1" not found'},
        {"/analyses/nope", 'Analysis "nope" not found'},
      }
      for _, case in ipairs(cases) do
        local res = v3("GET", case[1])
        assert.equal(404, res.status)
        assert.same({error = {code = "NotFoundError", message = case[2]}}, decode(res))
      end
    end)

    it("answers 400 InvalidArgumentError for bad domains, IPs, relationships and cursors", function()
      local res = v3("GET", "/domains/not_a..domain")
      assert.equal(400, res.status)
      assert.same({error = {code = "InvalidArgumentError",
                            message = 'Domain "not_a..domain" is not a valid domain pattern'}},
                  decode(res))
      for _, path in ipairs{"/ip_addresses/300.1.1.1", "/domains/github.com/no_such_relation",
                            "/domains/github.com/urls?cursor=garbage", "/domains/github.com/urls?limit=x"} do
        local r = v3("GET", path)
        assert.equal(400, r.status, path)
        assert.equal("InvalidArgumentError", decode(r).error.code)
      end
    end)
  end)

  describe("collections", function()
    it("walks every synthesized relationship page by page with absolute next links", function()
      for _, case in ipairs{{"ip_addresses/1.1.1.1", "communicating_files"},
                            {"ip_addresses/1.1.1.1", "downloaded_files"},
                            {"ip_addresses/8.8.8.8", "referrer_files"},
                            {"ip_addresses/1.1.1.1", "urls"},
                            {"ip_addresses/1.1.1.1", "resolutions"},
                            {"domains/github.com", "resolutions"},
                            {"domains/haiku-os.org", "subdomains"},
                            {"domains/virustotal.com", "communicating_files"}} do
        local ids, pages = walk(srv.url .. "/api/v3/" .. case[1] .. "/" .. case[2])
        assert.equal(23, #ids, case[2])
        assert.equal(3, pages)
        assert.truthy(distinct(ids))
      end
    end)

    it("keeps the real resolutions first and serves related objects by their ids", function()
      local page = decode(v3("GET", "/domains/github.com/resolutions?limit=40"))
      assert.equal(23, #page.data)
      assert.equal("NSFOCUS POMA", page.data[10].attributes.resolver)
      local file = decode(v3("GET", "/domains/github.com/downloaded_files?limit=3")).data[3]
      assert.same({"file", 2}, {file.type, file.attributes.last_analysis_stats.malicious})
      assert.equal(file.id, decode(v3("GET", "/files/" .. file.attributes.md5)).data.id)
    end)

    it("serves descriptors only under /relationships/", function()
      local body = decode(v3("GET", "/ip_addresses/1.1.1.1/relationships/urls?limit=40"))
      assert.equal(23, #body.data)
      assert.same({type = "url", id = body.data[1].id}, body.data[1])
    end)

    it("caps limit at 40 and keeps the query in next links", function()
      local body = decode(v3("GET", "/intelligence/search?query=entity:file&limit=100"))
      assert.equal(40, #body.data)
      assert.truthy(body.links.next:find("query=entity%3Afile", 1, true))
      local ids = walk(srv.url .. "/api/v3/intelligence/search?query=entity%3Afile&limit=40")
      assert.truthy(#ids > 40)
      assert.truthy(distinct(ids))
    end)

    it("pages comments", function()
      local ids, pages = walk(srv.url .. "/api/v3/files/" .. WIN32_SHA256 .. "/comments")
      assert.same({12, 2}, {#ids, pages})
      assert.equal("f-" .. WIN32_SHA256 .. "-", ids[1]:sub(1, 67))
    end)

    it("searches by hash, by name and requires a query", function()
      local body = decode(v3("GET", "/search?query=" .. WIN32_SHA256))
      assert.same({1, WIN32_SHA256}, {#body.data, body.data[1].id})
      assert.same({}, decode(v3("GET", "/search?query=" .. string.rep("a", 64))).data)
      local named = decode(v3("GET", "/intelligence/search?query=pe32_dotnet")).data
      assert.same({1, WIN32_SHA256}, {#named, named[1].id})
      assert.equal(400, v3("GET", "/search").status)
    end)

    it("reports quotas for 'me' or a user id, counting requests", function()
      v3("GET", "/files/" .. WIN32_SHA256)
      v3("GET", "/metadata")
      for _, user in ipairs{"me", "some-user"} do
        local data = decode(v3("GET", "/users/" .. user .. "/overall_quotas")).data
        assert.same({used = 2, allowed = 500}, data.api_requests_daily.user)
        assert.same({used = 2, allowed = 240}, data.api_requests_hourly.user)
        assert.same({used = 2, allowed = 15500}, data.api_requests_monthly.user)
      end
    end)

    it("lists engines and relationships in /metadata", function()
      local data = decode(v3("GET", "/metadata")).data
      local engines = 0
      for _ in pairs(data.engines) do engines = engines + 1 end
      assert.truthy(engines >= 70)
      assert.truthy(#data.relationships.domain >= 6)
    end)
  end)

  describe("file submissions", function()
    it("moves an upload through queued, in-progress, completed, then the file exists", function()
      local content = "sample VT-FAKE-MALICIOUS=7 body"
      local path = temp_file(content)
      local md5, sha256 = digest("md5sum", path), digest("sha256sum", path)
      local descriptor = upload(content)
      assert.equal("analysis", descriptor.type)
      assert.equal(srv.url .. "/api/v3/analyses/" .. descriptor.id, descriptor.links.self)
      local decoded = sh("printf %s " .. shell_quote(descriptor.id) .. " | base64 -d")
      assert.truthy(decoded:match("^" .. md5 .. ":%d+$"))
      assert.equal(404, v3("GET", "/files/" .. sha256).status)

      local queued = poll(descriptor.id)
      assert.equal("queued", queued.data.attributes.status)
      assert.same({}, queued.data.attributes.results)
      assert.equal(0, queued.data.attributes.stats.malicious + queued.data.attributes.stats.undetected)
      assert.same({size = #content, sha256 = sha256, sha1 = digest("sha1sum", path), md5 = md5},
                  queued.meta.file_info)
      local running = poll(descriptor.id)
      assert.equal("in-progress", running.data.attributes.status)
      assert.equal(404, v3("GET", "/files/" .. sha256).status)
      local done = poll(descriptor.id)
      assert.equal("completed", done.data.attributes.status)
      assert.equal(7, done.data.attributes.stats.malicious)
      assert.equal(76, done.data.attributes.stats.malicious + done.data.attributes.stats.undetected)

      local file = decode(v3("GET", "/files/" .. sha256)).data
      assert.equal(7, file.attributes.last_analysis_stats.malicious)
      assert.equal("malicious", file.attributes.last_analysis_results.Bkav.category)
      assert.equal(sha256, decode(v3("GET", "/analyses/" .. descriptor.id .. "/item")).data.id)
    end)

    it("gives EICAR 60 detections and plain content none", function()
      srv:analysis_steps(0)
      local eicar = poll(upload(EICAR).id).data.attributes
      assert.same({"completed", 60}, {eicar.status, eicar.stats.malicious})
      local clean = poll(upload("nothing to see").id).data.attributes
      assert.same({"completed", 0}, {clean.status, clean.stats.malicious})
    end)

    it("completes at once with analysis_steps(0)", function()
      srv:analysis_steps(0)
      local path = temp_file("instant VT-FAKE-MALICIOUS=3")
      upload("instant VT-FAKE-MALICIOUS=3")
      local file = decode(v3("GET", "/files/" .. digest("sha256sum", path))).data
      assert.equal(3, file.attributes.last_analysis_stats.malicious)
    end)

    it("hands out one-shot upload URLs on its own origin", function()
      local upload_url = decode(v3("GET", "/files/upload_url")).data
      assert.truthy(upload_url:match("^" .. srv.url:gsub("%p", "%%%0") .. "/_ah/upload/[%w_-]+/$"))
      local first = http("POST", upload_url, {files = {file = temp_file("big one")}})
      assert.equal(200, first.status)
      assert.equal("analysis", decode(first).data.type)
      local second = http("POST", upload_url, {files = {file = temp_file("big one")}})
      assert.equal(404, second.status)
      assert.equal("NotFoundError", decode(second).error.code)
    end)

    it("refuses direct uploads over 32 MB with a JSON 413", function()
      local path = os.tmpname()
      temps[#temps + 1] = path
      os.execute("head -c " .. (32 * 1024 * 1024 + 1) .. " /dev/zero > " .. path)
      local res = v3("POST", "/files", {files = {file = path}})
      assert.equal(413, res.status)
      assert.equal("application/json; charset=utf-8", res.headers["content-type"])
      assert.equal("RequestEntityTooLargeError", decode(res).error.code)
      local exact = os.tmpname()
      temps[#temps + 1] = exact
      os.execute("head -c " .. (30 * 1024 * 1024) .. " /dev/zero > " .. exact)
      assert.equal(200, v3("POST", "/files", {files = {file = exact}}).status)
    end)

    it("accepts chunked uploads and hashes exactly the part's bytes", function()
      local content = "line one\r\n--XY almost a boundary\r\n--"
      local res = v3("POST", "/files", {files = {file = temp_file(content)},
        headers = {["x-apikey"] = KEY, ["Transfer-Encoding"] = "chunked"}})
      assert.equal(200, res.status, res.body)
      local info = poll(decode(res).data.id).meta.file_info
      assert.equal(digest("sha256sum", temp_file(content)), info.sha256)
      assert.equal(#content, info.size)
    end)

    it("parses multipart bodies whose markers straddle two reads", function()
      -- The fake reads bodies 1 MiB at a time and the multipart parser holds back the last
      -- 6 bytes of each read (the separator "\r\n--XYZ" is 7): the marker's digits cross the
      -- first edge, the closing separator starts 6 bytes before the end of the second read.
      local MiB = 1024 * 1024
      local head = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.bin\"\r\n\r\n"
      local marker = "VT-FAKE-MALICIOUS=1"
      local before = string.rep("a", MiB - 6 - #head - #marker)
      local content = before .. marker .. "2" .. string.rep("b", 2 * MiB - 6 - #head - #before - #marker - 1)
      assert.equal(2 * MiB - 6, #head + #content)
      srv:analysis_steps(0)
      local res = v3("POST", "/files", {data = head .. content .. "\r\n--XYZ--\r\n",
        headers = {["x-apikey"] = KEY, ["Content-Type"] = "multipart/form-data; boundary=XYZ"}})
      assert.equal(200, res.status, res.body)
      local analysis = poll(decode(res).data.id)
      assert.equal(digest("sha256sum", temp_file(content)), analysis.meta.file_info.sha256)
      assert.equal(12, analysis.data.attributes.stats.malicious)
    end)

    it("refuses filename* parameters like the service's upload handler", function()
      local body = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''a.txt\r\n" ..
                   "\r\nhello\r\n--XYZ--\r\n"
      local res = v3("POST", "/files", {data = body, headers = {["x-apikey"] = KEY,
        ["Content-Type"] = "multipart/form-data; boundary=XYZ"}})
      assert.equal(400, res.status)
      assert.equal("BadRequestError", decode(res).error.code)
    end)

    it("re-analyses known objects and 404s unknown ones", function()
      for _, path in ipairs{"/files/" .. WIN32_SHA256, "/urls/" .. EXAMPLE_URL_ID,
                            "/domains/github.com", "/ip_addresses/8.8.8.8"} do
        local res = v3("POST", path .. "/analyse")
        assert.equal(200, res.status, path)
        assert.equal("analysis", decode(res).data.type)
      end
      assert.equal(404, v3("POST", "/files/" .. string.rep("1", 64) .. "/analyse").status)
    end)
  end)

  describe("URL submissions", function()
    it("accepts urlencoded and multipart forms; ids are u-<sha256>-<epoch>", function()
      local url = "http://fresh.example/path?VT-FAKE-MALICIOUS=4"
      local id = sh("printf %s " .. shell_quote(url) .. " | sha256sum"):match("^%x+")
      local a = decode(v3("POST", "/urls", {urlencoded = {url = url}})).data
      local b = decode(v3("POST", "/urls", {form = {url = url}})).data
      for _, descriptor in ipairs{a, b} do
        assert.truthy(descriptor.id:match("^u%-" .. id .. "%-%d+$"))
      end
      assert.are_not.equal(a.id, b.id)
      srv:analysis_steps(0)
      local c = decode(v3("POST", "/urls", {urlencoded = {url = url}})).data
      local analysis = poll(c.id)
      assert.same({id = id, url = url}, analysis.meta.url_info)
      assert.equal(4, analysis.data.attributes.stats.malicious)
      assert.equal(id, decode(v3("GET", "/urls/" .. url_id(url))).data.id)
    end)

    it("refuses a missing or unusable url", function()
      assert.equal(400, v3("POST", "/urls", {urlencoded = {other = "x"}}).status)
      assert.equal("InvalidArgumentError",
                   decode(v3("POST", "/urls", {urlencoded = {url = "http://"}})).error.code)
    end)
  end)

  describe("downloads and the storage host", function()
    it("redirects to the storage host, which serves the bytes and logs headers", function()
      local content = "downloadable \0 bytes"
      local info = srv:register_file(content, "dl.bin")
      local res = v3("GET", "/files/" .. info.sha256 .. "/download")
      assert.equal(302, res.status)
      local location = res.headers.location
      assert.equal(1, location:find(srv.storage_url .. "/" .. info.sha256 .. "?sig=", 1, true))
      assert.truthy(srv.storage_url:find("^http://127%.0%.0%.2:"))
      assert.equal(location, decode(v3("GET", "/files/" .. info.md5 .. "/download_url")).data)

      local blob = http("GET", location, {headers = {["X-Probe"] = "seen"}})
      assert.same({200, content, "application/octet-stream"},
                  {blob.status, blob.body, blob.headers["content-type"]})
      local entries = srv:log{listener = "storage"}
      assert.equal(1, #entries)
      assert.same({"seen", cjson.null}, {entries[1].headers["x-probe"], entries[1].key})
      assert.is_nil(entries[1].headers["x-apikey"])
    end)

    it("records a key that reaches the storage host", function()
      local info = srv:register_file("secret-check")
      http("GET", info.download_url, {headers = {["x-apikey"] = KEY}})
      assert.equal(KEY, srv:log{listener = "storage"}[1].key)
    end)

    it("refuses bad signatures and unknown contents", function()
      local info = srv:register_file("signed")
      assert.equal(403, http("GET", srv.storage_url .. "/" .. info.sha256 .. "?sig=bad").status)
      assert.equal(404, v3("GET", "/files/" .. WIN32_SHA256 .. "/download").status)
    end)

    it("serves different bytes of the same length when tampered", function()
      local info = srv:register_file("original content")
      srv:fault{type = "tamper"}
      local tampered = http("GET", info.download_url)
      assert.equal(#"original content", #tampered.body)
      assert.are_not.equal("original content", tampered.body)
      assert.equal("original content", http("GET", info.download_url).body)
    end)
  end)

  describe("v2", function()
    it("serves the sample report, echoing the resource", function()
      local report = decode(v2("GET", "file/report", {apikey = KEY, resource = V2_FILE_SHA256:upper()}))
      assert.same({1, 0, 56, V2_FILE_SHA256:upper()},
                  {report.response_code, report.positives, report.total, report.resource})
      local res = v2("POST", "file/report", {apikey = KEY, resource = V2_FILE_SHA256})
      assert.equal("application/json", res.headers["content-type"])
      assert.equal("Scan finished, information embedded", decode(res).verbose_msg)
    end)

    it("maps v3 objects to v2 reports and answers batches in order", function()
      local missing = string.rep("f", 64)
      local reports = decode(v2("GET", "file/report", {apikey = KEY,
        resource = WIN32_SHA256 .. "," .. missing .. ", " .. V2_FILE_SHA256}))
      assert.equal(3, #reports)
      assert.same({1, 0, 1}, {reports[1].response_code, reports[2].response_code, reports[3].response_code})
      assert.same({7, "2023-12-18"}, {reports[1].positives, reports[1].scan_date:sub(1, 10)})
      assert.equal(true, reports[1].scans.Bkav.detected)
      assert.equal("The requested resource is not among the finished, queued or pending scans",
                   reports[2].verbose_msg)
    end)

    it("answers 403 without a valid key, in query or form", function()
      assert.equal(403, v2("GET", "file/report", {resource = WIN32_SHA256}).status)
      assert.equal(403, v2("GET", "file/report", {apikey = "bad", resource = WIN32_SHA256}).status)
      assert.equal(200, http("POST", srv.url .. "/vtapi/v2/file/report?apikey=" .. KEY,
                             {urlencoded = {resource = WIN32_SHA256}}).status)
    end)

    it("queues file/scan and reports -2 until the analysis completes", function()
      local res = http("POST", srv.url .. "/vtapi/v2/file/scan",
                       {form = {apikey = KEY}, files = {file = temp_file("v2 VT-FAKE-MALICIOUS=9")}})
      local scan = decode(res)
      assert.equal(1, scan.response_code)
      assert.truthy(scan.scan_id:match("^" .. scan.sha256 .. "%-%d+$"))
      local codes = {}
      for i = 1, 3 do
        codes[i] = decode(v2("GET", "file/report", {apikey = KEY, resource = scan.scan_id})).response_code
      end
      assert.same({-2, -2, 1}, codes)
      local report = decode(v2("GET", "file/report", {apikey = KEY, resource = scan.md5}))
      assert.same({1, 9}, {report.response_code, report.positives})
    end)

    it("rescans and redirects downloads to the storage host", function()
      local rescan = decode(v2("POST", "file/rescan", {apikey = KEY, resource = WIN32_SHA256}))
      assert.truthy(rescan.scan_id:match("^" .. WIN32_SHA256 .. "%-%d+$"))
      local info = srv:register_file("v2 download")
      local res = v2("GET", "file/download", {apikey = KEY, hash = info.sha256})
      assert.equal(302, res.status)
      assert.equal(1, res.headers.location:find(srv.storage_url, 1, true))
      assert.equal(404, v2("GET", "file/download", {apikey = KEY, hash = WIN32_SHA256}).status)
    end)

    it("reports URLs, submits unknown ones with scan=1 and url/scan", function()
      local sample = decode(v2("POST", "url/report", {apikey = KEY, resource = "http://github.com"}))
      assert.same({1, 66, "http://github.com"}, {sample.response_code, sample.total, sample.resource})
      local unknown = decode(v2("POST", "url/report", {apikey = KEY, resource = "http://nope.example/"}))
      assert.same({0, "Resource does not exist in the dataset"}, {unknown.response_code, unknown.verbose_msg})
      local submitted = decode(v2("POST", "url/report",
                                  {apikey = KEY, resource = "http://nope.example/", scan = "1"}))
      assert.equal(1, submitted.response_code)
      assert.is_nil(submitted.positives)
      assert.equal(-2, decode(v2("POST", "url/report",
                                 {apikey = KEY, resource = submitted.scan_id})).response_code)
      local scanned = decode(v2("POST", "url/scan", {apikey = KEY, url = "http://other.example/"}))
      assert.equal("Scan request successfully queued, come back later for the report", scanned.verbose_msg)
    end)

    it("reports domains and IPs from samples or from v3 objects", function()
      local github = decode(v2("GET", "domain/report", {apikey = KEY, domain = "github.com"}))
      assert.same({1, "computersandsoftware"}, {github.response_code, github["BitDefender category"]})
      local built = decode(v2("GET", "domain/report", {apikey = KEY, domain = "virustotal.com"}))
      assert.same({1, 23, 23}, {built.response_code, #built.resolutions, #built.subdomains})
      assert.equal(11, #built.detected_downloaded_samples)
      assert.same({0, "Domain not found"}, (function(r) return {r.response_code, r.verbose_msg} end)(
        decode(v2("GET", "domain/report", {apikey = KEY, domain = "unknown.example"}))))
      assert.equal(-1, decode(v2("GET", "domain/report", {apikey = KEY, domain = "bad..name"})).response_code)
      local ip = decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "1.1.1.1"}))
      assert.same({1, 13335}, {ip.response_code, ip.asn})
      local google = decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "8.8.8.8"}))
      assert.same({1, "Google LLC", 23}, {google.response_code, google.as_owner, #google.resolutions})
      assert.equal(0, decode(v2("GET", "ip-address/report", {apikey = KEY, ip = "192.0.2.7"})).response_code)
    end)
  end)

  describe("quotas", function()
    it("answers 429 QuotaExceededError past the per-minute quota, per key", function()
      srv:quota{key = KEY, per_minute = 2}
      assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256).status)
      srv:log()       -- control calls do not count
      srv:faults()
      assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256).status)
      local res = v3("GET", "/files/" .. WIN32_SHA256)
      assert.equal(429, res.status)
      assert.same({error = {code = "QuotaExceededError", message = "Quota exceeded"}}, decode(res))
      assert.equal(200, v3("GET", "/files/" .. WIN32_SHA256,
                           {headers = {["x-apikey"] = "second-key"}}).status)
      assert.equal(204, v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256}).status)
    end)

    it("answers v2 over quota with an empty 204", function()
      srv:quota{key = KEY, per_day = 1}
      assert.equal(200, v2("GET", "domain/report", {apikey = KEY, domain = "github.com"}).status)
      local res = v2("GET", "domain/report", {apikey = KEY, domain = "github.com"})
      assert.same({204, ""}, {res.status, res.body})
      assert.equal(429, v3("GET", "/domains/github.com").status)
    end)

    it("enforces fixed windows of any length", function()
      srv:quota{key = KEY, windows = {{n = 2, per = 1}}}
      local now = srv:control("GET", "/_fake/log").now
      os.execute(("sleep %.3f"):format(1 - now % 1 + 0.02))   -- start of a fresh window
      local codes = {}
      for i = 1, 3 do codes[i] = v3("GET", "/metadata").status end
      assert.same({200, 200, 429}, codes)
      os.execute("sleep 1")
      assert.equal(200, v3("GET", "/metadata").status)
    end)
  end)

  describe("fault switches", function()
    local path = "/files/" .. WIN32_SHA256

    it("answers a chosen status, count times", function()
      srv:fault{type = "status", status = 503, count = 2, path = "/api/v3/files/"}
      for _ = 1, 2 do
        local res = v3("GET", path)
        assert.equal(503, res.status)
        assert.same({error = {code = "TransientError", message = "Fault injected by the fake"}}, decode(res))
      end
      assert.equal(200, v3("GET", path).status)
      assert.equal(0, srv:faults()[1].remaining)
    end)

    it("answers a custom body, and -1 means forever", function()
      srv:fault{type = "status", status = 500, body = "oops", content_type = "text/plain", count = -1}
      for _ = 1, 3 do
        local res = v3("GET", path)
        assert.same({500, "oops", "text/plain"}, {res.status, res.body, res.headers["content-type"]})
      end
    end)

    it("answers 429 with and without Retry-After", function()
      srv:fault{{type = "429", retry_after = 7}, {type = "429", code = "QuotaExceededError"}}
      local first, second = v3("GET", path), v3("GET", path)
      assert.same({429, "7", "TooManyRequestsError"},
                  {first.status, first.headers["retry-after"], decode(first).error.code})
      assert.same({429, "QuotaExceededError"}, {second.status, decode(second).error.code})
      assert.is_nil(second.headers["retry-after"])
    end)

    it("matches by method and regex", function()
      srv:fault{type = "status", status = 502, method = "POST", regex = "/analyse$"}
      assert.equal(200, v3("GET", path).status)
      assert.equal(502, v3("POST", path .. "/analyse").status)
    end)

    it("slows answers and stalls bodies", function()
      srv:fault{type = "slow", delay = 0.6}
      local slow = v3("GET", path)
      assert.equal(200, slow.status)
      assert.truthy(slow.time >= 0.55)
      srv:fault{type = "slow_body", delay = 1.5}
      local stalled = v3("GET", path, {timeout = 0.5})
      assert.same({200, 28}, {stalled.status, stalled.exit})
      srv:fault{type = "slow_body", delay = 0.3}
      assert.equal(WIN32_SHA256, decode(v3("GET", path)).data.id)
    end)

    it("cuts the connection half way through the body", function()
      srv:fault{type = "cut"}
      local res = v3("GET", path)
      assert.equal(18, res.exit)      -- curl: partial file
      assert.equal(math.floor(tonumber(res.headers["content-length"]) / 2), #res.body)
    end)

    it("sends invalid JSON or HTML", function()
      srv:fault{{type = "badjson"}, {type = "wrongtype"}}
      local bad = v3("GET", path)
      assert.equal("application/json; charset=utf-8", bad.headers["content-type"])
      assert.is_false(pcall(cjson.decode, bad.body))
      local html = v3("GET", path)
      assert.same({200, "text/html; charset=utf-8"}, {html.status, html.headers["content-type"]})
      assert.truthy(html.body:find("<html>", 1, true))
    end)

    it("hands out an upload URL on another origin", function()
      srv:fault{type = "redirect_elsewhere"}
      local elsewhere = decode(v3("GET", "/files/upload_url")).data
      assert.equal(1, elsewhere:find(srv.storage_url .. "/_ah/upload/", 1, true))
      assert.equal(1, decode(v3("GET", "/files/upload_url")).data:find(srv.url, 1, true))
    end)

    it("refuses unknown fault types", function()
      assert.has_error(function() srv:fault{type = "meteor"} end)
    end)
  end)

  describe("request log", function()
    it("records every request with times, headers, key, sizes and status", function()
      v3("GET", "/files/" .. WIN32_SHA256 .. "?x=1", {headers = {["X-Apikey"] = KEY, ["X-Trace"] = "t1"}})
      v2("GET", "file/report", {apikey = KEY, resource = WIN32_SHA256})
      v3("POST", "/urls", {urlencoded = {url = "http://log.example/"}})
      local entries = srv:log()
      assert.equal(3, #entries)
      local first = entries[1]
      assert.same({"main", "GET", "/api/v3/files/" .. WIN32_SHA256, "x=1", KEY, 200, "t1"},
                  {first.listener, first.method, first.path, first.query, first.key, first.status,
                   first.headers["x-trace"]})
      assert.equal(KEY, entries[2].key)
      assert.equal(#"url=http%3A%2F%2Flog.example%2F", entries[3].body_length)
      assert.truthy(entries[1].time <= entries[2].time and entries[2].mono <= entries[3].mono)
      assert.equal(1, #srv:log{since = 2})
    end)

    it("shows keep-alive: two requests on one connection", function()
      local url = srv.url .. "/api/v3/files/" .. WIN32_SHA256
      sh("curl -s -o /dev/null -o /dev/null -H 'x-apikey: " .. KEY .. "' " .. url .. " " .. url)
      local entries = srv:log()
      assert.equal(2, #entries)
      assert.equal(entries[1].conn, entries[2].conn)
    end)
  end)

  describe("lifecycle", function()
    it("stops idempotently and leaves no process", function()
      local other = fake.start()
      assert.truthy(alive(other.pid))
      other:stop()
      other:stop()
      assert.is_false(alive(other.pid))
    end)

    it("exits by itself after --max-lifetime", function()
      local short = fake.start{max_lifetime = 1}
      assert.truthy(wait_until_dead(short.pid, 5))
      short:stop()
    end)

    it("exits when its parent process dies", function()
      local pid = tonumber(sh([[lua5.4 -e "package.path = 'spec/?.lua;' .. package.path
        local s = require('helpers.fake').start(); io.write(s.pid); io.stdout:flush(); os.exit(0)"]]))
      assert.truthy(pid)
      assert.truthy(wait_until_dead(pid, 5))
    end)
  end)
end)
