-- vt.actions (lua/vt/actions.lua and lua/vt/actions/*): the nine Splunk SOAR actions, over
-- v3 and over v2, against the fake VirusTotal server (spec/fake/README.md).
--
-- Every action path runs on both protocols: success, not found, quota, wrong key, malformed
-- input (checked in the fake's request log: no request), detonation (known, new, timeout and
-- get_report finishing it), get_file into the vault with its digest check, and every data
-- path of the Splunk app (spec/fixtures/actions_datapaths.tsv, a copy of the seed's table)
-- present with its type.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local vt = require "vt"
local actions = require "vt.actions"
local fake = require "helpers.fake"

local KNOWN_HASH = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
local KNOWN_URL = "http://github.com"
local KNOWN_DOMAIN = "github.com"
local KNOWN_IP = "1.1.1.1"
local UNKNOWN_HASH = "0123456789abcdef0123456789abcdef"
local UNKNOWN_URL = "http://never-seen.example/page"
local UNKNOWN_DOMAIN = "never-seen-domain.example.com"
local UNKNOWN_IP = "203.0.113.77"
local DATAPATHS = "spec/fixtures/actions_datapaths.tsv"
-- Seconds between polls where real time matters (longer under valgrind, which is slow).
local STEP = os.getenv("VT_SPEC_VALGRIND") and 2 or 0.5

local files = require "helpers.files"
local quote, temp_dir, remove_tree = files.quote, files.tmpdir, files.rmtree
local dir_entries, read_all = files.ls, files.read

-- Every string in a nested table (keys and values), for "the key appears nowhere" checks.
local function strings_of(value, out)
   out = out or {}
   if type(value) == "string" then
      out[#out + 1] = value
   elseif type(value) == "table" then
      for k, v in pairs(value) do
         strings_of(k, out)
         strings_of(v, out)
      end
   end
   return out
end

local function assert_no_secret(result, secret)
   for _, s in ipairs(strings_of(result)) do
      assert.is_nil(s:find(secret, 1, true), "the API key appears in: " .. s)
   end
end

-- API requests (not storage downloads) in the fake's log, optionally only those whose path
-- contains `part`.
local function api_requests(srv, part)
   local out = {}
   for _, e in ipairs(srv:log { listener = "main" }) do
      if (e.path:find("^/api/v3/") or e.path:find("^/vtapi/v2/"))
         and (not part or e.path:find(part, 1, true)) then
         out[#out + 1] = e
      end
   end
   return out
end

local UPLOAD_PATHS = { v3 = "/api/v3/files", v2 = "/vtapi/v2/file/scan" }
local URL_SUBMIT_PATHS = { v3 = "/api/v3/urls", v2 = "/vtapi/v2/url/scan" }
local FILE_POLL_PATHS = { v3 = "/api/v3/analyses/", v2 = "/vtapi/v2/file/report" }

local function posts_to(srv, path)
   local n = 0
   for _, e in ipairs(api_requests(srv)) do
      if e.method == "POST" and e.path == path then
         n = n + 1
      end
   end
   return n
end

-- ------------------------------------------------------------------- data paths

-- action -> list of {path, type} from the seed's table.
local function load_datapaths()
   local by_action = {}
   for line in io.lines(DATAPATHS) do
      local action, path, kind = line:match("^(%S+)\t(%S+)\t(%S+)$")
      if action then
         by_action[action] = by_action[action] or {}
         table.insert(by_action[action], { path = path, kind = kind })
      end
   end
   return by_action
end

-- Data paths the service does not return on a protocol (or ever); the check then only
-- types whatever values there are. Keys: "path" for every action, or "action:path".
local NOT_RETURNED = {
   v3 = {
      ["action_result.data.*.filescan_id"] = "null, as the service sends it in every v2 body",
      ["action_result.data.*.scans.*.detail"] = "v3 engine results carry no detail link",
      ["action_result.data.*.pcaps"] = "v3 domain objects carry no pcaps",
   },
   v2 = {
      ["action_result.data.*.filescan_id"] = "the service sends null",
      ["ip_reputation:action_result.data.*.detected_referrer_samples.*.date"] =
         "the recorded v2 body for 1.1.1.1 has no date on these items",
      ["domain_reputation:action_result.summary.alexa_rank"] =
         "the recorded v2 body for github.com has no Alexa rank",
   },
}

-- v2 sends undetected URLs as [url, sha256, positives, total, scan_date] tuples; Splunk's
-- "string" is the url member.
local TUPLE_PATHS = { ["action_result.data.*.undetected_urls.*"] = true }

local function split(path)
   local parts = {}
   for part in path:gmatch("[^.]+") do
      parts[#parts + 1] = part
   end
   return parts
end

-- The values at `parts` below `node`; "*" walks every member of a list or map. A list of
-- scalars at the end of a path that does not end in "*" is listed member by member, as
-- Splunk does.
local function collect(node, parts, i, out)
   if node == nil then
      return out
   end
   if i > #parts then
      if type(node) == "table" and parts[#parts] ~= "*" and node[1] ~= nil then
         for _, v in ipairs(node) do
            out[#out + 1] = v
         end
      else
         out[#out + 1] = node
      end
   elseif type(node) == "table" then
      if parts[i] == "*" then
         for _, v in pairs(node) do
            collect(v, parts, i + 1, out)
         end
      else
         collect(node[parts[i]], parts, i + 1, out)
      end
   end
   return out
end

local TYPE_CHECKS = {
   string = function(v) return type(v) == "string" end,
   numeric = function(v) return math.type(v) == "integer" end,
   boolean = function(v) return type(v) == "boolean" end,
}

-- Checks one data path over the results of an action (present in at least one, and every
-- non-null value of the listed type).
local function check_datapath(api, action, entry, results, run_summary)
   local values = {}
   if entry.path:find("^summary%.") then
      collect({ summary = run_summary }, split(entry.path), 1, values)
   else
      for _, result in ipairs(results) do
         collect({ action_result = result }, split(entry.path), 1, values)
      end
   end
   local present = 0
   for _, v in ipairs(values) do
      if v ~= vt.null then
         if TUPLE_PATHS[entry.path] then
            assert.is_table(v, entry.path)
            v = v[1]
         end
         assert(TYPE_CHECKS[entry.kind](v), string.format("%s %s: %s is a %s (%s), not %s", api,
            action, entry.path, type(v), tostring(v), entry.kind))
         present = present + 1
      end
   end
   local skip = NOT_RETURNED[api][entry.path] or NOT_RETURNED[api][action .. ":" .. entry.path]
   if not skip then
      assert(present > 0, string.format("%s %s: no value at %s", api, action, entry.path))
   end
end

-- ------------------------------------------------------------------------ specs

describe("vt.actions", function()
   local srv

   setup(function()
      srv = fake.start()
   end)

   teardown(function()
      srv:stop()
   end)

   describe("actions.new", function()
      it("speaks the client's protocol; an api contradicting the client's raises, naming both", function()
         local c = vt.client { apikey = srv.key, base_url = srv.url, api = "v2", quota_state = false }
         assert.has_error(function() actions.new { client = c, api = "v3" } end,
            "actions.new: option 'api' is \"v3\" but the client speaks \"v2\" (the client's api decides)")
         local app = actions.new { client = c, api = "v2" }
         assert.equal("v2", app.api)
         srv:reset()
         assert.equal("success", actions.new { client = c }:test_connectivity().status)
         assert.matches("^/vtapi/v2/", api_requests(srv)[1].path)
         assert.equal("v3", actions.new { apikey = "k", base_url = srv.url, quota_state = false }.api)
      end)

      it("raises on unknown options, wrong types and a bad api", function()
         assert.has_error(function() actions.new { apikey = "k", bogus = 1 } end,
            "actions.new: unknown option 'bogus'")
         assert.has_error(function() actions.new { apikey = "k", poll_every = "soon" } end)
         assert.has_error(function() actions.new { apikey = "k", api = "v4" } end)
         assert.has_error(function() actions.new "k" end)
      end)

      it("refuses a client together with client options", function()
         local c = vt.client { apikey = "k", base_url = srv.url, quota_state = false }
         assert.has_error(function() actions.new { client = c, apikey = "k" } end)
      end)

      it("takes numbers given as strings, as asset settings are", function()
         local app = actions.new { apikey = "k", base_url = srv.url, quota_state = false,
            poll_interval = "2", poll_every = "30" }
         assert.equal(2, app.poll_interval)
         assert.equal(30, app.poll_every)
      end)

      it("raises when parameters are not a table or not strings", function()
         local app = actions.new { apikey = "k", base_url = srv.url, quota_state = false }
         assert.has_error(function() app:file_reputation("x") end)
         assert.has_error(function() app:file_reputation { hash = 42 } end)
      end)
   end)

   describe("dir_vault", function()
      local dir

      before_each(function()
         dir = temp_dir()
      end)

      after_each(function()
         remove_tree(dir)
      end)

      it("keeps data and files under their SHA-1, with their names", function()
         local v = assert(actions.dir_vault(dir .. "/a/b"))
         local id = assert(v:add({ data = "abc" }, "abc.txt"))
         assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", id)
         assert.is_true(v:has(id))
         assert.is_true(v:has(id:upper()))
         assert.equal("abc", read_all(v:path(id)))
         local info = assert(v:info(id))
         assert.same({ vault_id = id, path = dir .. "/a/b/" .. id, name = "abc.txt", size = 3 }, info)

         local src = dir .. "/sample.bin"
         local f = assert(io.open(src, "wb"))
         local big = string.rep("0123456789abcdef", 40000) -- spans many hashing chunks
         f:write(big)
         f:close()
         local sha1sum = io.popen("sha1sum " .. quote(src)):read("l"):match("^(%x+)")
         local id2 = assert(v:add(src))
         assert.equal(sha1sum, id2)
         assert.equal("sample.bin", v:info(id2).name)
         assert.equal(#big, v:info(id2).size)
         -- nothing half-written is left behind
         local expected = { id, id .. ".meta", id2, id2 .. ".meta" }
         table.sort(expected)
         assert.same(expected, dir_entries(dir .. "/a/b"))
      end)

      it("answers unknown and malformed ids with errors", function()
         local v = assert(actions.dir_vault(dir))
         assert.is_false(v:has(string.rep("a", 40)))
         local _, err = v:info(string.rep("a", 40))
         assert.equal("NotFoundError", err.code)
         _, err = v:path("../../etc/passwd")
         assert.equal("InvalidArgument", err.code)
         _, err = v:add(dir .. "/no-such-file")
         assert.equal("VaultError", err.code)
      end)

      it("defaults to the user's data directory", function()
         local old = os.getenv("XDG_DATA_HOME")
         assert.equal((old and old ~= "" and old or os.getenv("HOME") .. "/.local/share")
            .. "/vt/vault", require("vt.actions.vault").default_path())
      end)
   end)

   for _, api in ipairs { "v3", "v2" } do
      describe("over " .. api, function()
         local dir, vault, sleeps

         -- An app on the fake, over a client of this protocol (the client's api alone decides
         -- what the actions speak); polls sleep through a recorder unless a test says otherwise.
         local CLIENT = { apikey = true, requests_per_minute = true, max_wait = true }
         local function new_app(opts)
            local c = { apikey = srv.key, base_url = srv.url, api = api, quota_state = false, max_wait = 2,
               retry_base = 0.01 }
            local o = { vault = vault, poll_every = 0.5, poll_interval = 0.5, related = 4,
               sleep = function(s) sleeps[#sleeps + 1] = s end }
            for k, v in pairs(opts or {}) do
               (CLIENT[k] and c or o)[k] = v
            end
            o.client = vt.client(c)
            return actions.new(o)
         end

         -- the client's api is the actions' protocol: a v2 run never reaches the v3 API
         after_each(function()
            for _, e in ipairs(srv:log()) do
               assert.is_nil(e.path:find(api == "v2" and "^/api/v3/" or "^/vtapi/v2/"), e.path)
            end
         end)

         before_each(function()
            srv:reset()
            dir = temp_dir()
            vault = assert(actions.dir_vault(dir))
            sleeps = {}
         end)

         after_each(function()
            remove_tree(dir)
         end)

         describe("test_connectivity", function()
            it("passes with a good key", function()
               local r = new_app():test_connectivity()
               assert.equal("success", r.status)
               assert.matches(api, r.message)
               assert.equal(1, #api_requests(srv))
            end)

            it("fails with a wrong key, never showing it", function()
               local r = new_app { apikey = "wrong-secret-key-42" }:test_connectivity()
               assert.equal("failed", r.status)
               assert.equal(api == "v3" and "WrongCredentialsError" or "ForbiddenError",
                  r.error_code)
               assert.matches("API key", r.message)
               assert_no_secret(r, "wrong-secret-key-42")
            end)
         end)

         describe("file_reputation", function()
            it("reports a known file in the v2 shape", function()
               local app = new_app()
               local r = app:file_reputation { hash = KNOWN_HASH:upper() }
               assert.equal("success", r.status)
               assert.equal(KNOWN_HASH:upper(), r.parameter.hash)
               local d = r.data[1]
               assert.equal(KNOWN_HASH, d.sha256)
               assert.equal(1, d.response_code)
               assert.is_true(d.positives > 0)
               local detected, empty = 0, 0
               for _, scan in pairs(d.scans) do
                  if scan.detected then
                     detected = detected + 1
                  end
                  empty = empty + (scan.result == vt.null and 1 or 0)
               end
               assert.equal(d.positives, detected)
               assert.is_true(empty > 0) -- an engine that found nothing has a null result, as in v2
               assert.equal(d.positives, r.summary.positives)
               assert.equal(d.total, r.summary.total_scans)
               assert.is_true(r.summary.found)
               assert.matches(d.positives .. "/" .. d.total, r.message, 1, true)
               -- beside the seed's fields, vt.verdict's default policy: 7 engines reach suspicious
               assert.same({ "suspicious", 2 }, { r.summary.verdict, r.summary.score })
               assert.matches("verdict suspicious", r.message, 1, true)
            end)

            it("says so when the file is unknown, as a success", function()
               local r = new_app():file_reputation { hash = UNKNOWN_HASH }
               assert.equal("success", r.status)
               assert.is_false(r.summary.found)
               assert.equal(0, r.data[1].response_code)
               assert.matches("not known", r.message)
               assert.same({ "unknown", 0 }, { r.summary.verdict, r.summary.score })
            end)

            it("fails on quota, with the service's code and a hint", function()
               srv:quota { per_minute = 0 }
               local r = new_app():file_reputation { hash = KNOWN_HASH }
               assert.equal("failed", r.status)
               assert.equal("QuotaExceededError", r.error_code)
               assert.matches("quota of this API key is used up", r.message, 1, true)
               assert.equal(api == "v3" and 429 or 204, api_requests(srv)[1].status)
            end)

            it("fails on a wrong key", function()
               local r = new_app { apikey = "another-wrong-key" }:file_reputation { hash = KNOWN_HASH }
               assert.equal("failed", r.status)
               assert.equal(api == "v3" and "WrongCredentialsError" or "ForbiddenError",
                  r.error_code)
               assert_no_secret(r, "another-wrong-key")
            end)

            it("treats an HTML page as an error", function()
               srv:fault { type = "wrongtype" }
               local r = new_app():file_reputation { hash = KNOWN_HASH }
               assert.equal("failed", r.status)
               assert.equal("InvalidResponse", r.error_code)
               assert.matches("HTML", r.message)
            end)

            it("hides the key even when the service echoes it", function()
               srv:fault { type = "status", status = 401, code = "WrongCredentialsError",
                  message = "Wrong API key: " .. srv.key }
               local r = new_app():file_reputation { hash = KNOWN_HASH }
               assert.equal("failed", r.status)
               assert_no_secret(r, srv.key)
            end)
         end)

         describe("url_reputation", function()
            it("reports a known URL", function()
               local r = new_app():url_reputation { url = KNOWN_URL }
               assert.equal("success", r.status)
               assert.equal(KNOWN_URL, r.parameter.url)
               assert.is_string(r.data[1].url)
               assert.is_true(r.summary.found)
               assert.equal(r.data[1].positives > 0, r.summary.detections)
               assert.is_number(r.summary.total_scans)
               assert.is_string(r.summary.verdict)
               -- one Splunk playbook reads the same paths on both protocols
               assert.equal(vt.null, r.data[1].filescan_id)
            end)

            it("undoes defanging", function()
               local r = new_app():url_reputation { url = "hxxp://github[.]com" }
               assert.equal("success", r.status)
               assert.is_true(r.summary.found)
            end)

            it("says so when the URL is unknown", function()
               local r = new_app():url_reputation { url = UNKNOWN_URL }
               assert.equal("success", r.status)
               assert.is_false(r.summary.found)
            end)
         end)

         describe("domain_reputation", function()
            it("reports a known domain with its related lists", function()
               local r = new_app():domain_reputation { domain = KNOWN_DOMAIN }
               assert.equal("success", r.status)
               local d = r.data[1]
               assert.is_table(d.resolutions)
               assert.is_table(d.detected_urls)
               assert.equal(#d.detected_urls, r.summary.detected_urls)
               assert.equal(#d.detected_downloaded_samples, r.summary.downloaded_samples)
               assert.equal(#d.detected_communicating_samples, r.summary.communicating_samples)
               -- v3: the domain, then one page of each of its six relationships; v2: one report
               assert.equal(api == "v3" and 1 + 6 or 1, #api_requests(srv))
               srv:reset()
               assert.equal("success", new_app { related = 0 }:domain_reputation { domain = KNOWN_DOMAIN }.status)
               assert.equal(1, #api_requests(srv))
            end)

            it("takes a URL or an e-mail address and looks up its host", function()
               for _, given in ipairs { "https://GitHub.com/login", "octocat@GitHub.com" } do
                  local r = new_app():domain_reputation { domain = given }
                  assert.equal("success", r.status)
                  assert.is_true(r.summary.found)
               end
            end)

            it("runs inside a coroutine on a yielding client, the pauses between polls too", function()
               local c = vt.client { apikey = srv.key, base_url = srv.url, api = api, quota_state = false,
                  yield = true }
               local app = actions.new { client = c, poll_every = 0.05, poll_interval = 1 }
               local loop = require("vt.loop").new(c)
               local task = loop:spawn(function()
                  return app:detonate_url { url = "http://yield-" .. api .. ".example/VT-FAKE-MALICIOUS=3" }
               end)
               assert.is_false(task.done) -- waiting for the first look-up
               loop:run()
               assert.is_true(task.ok, tostring(task.error))
               assert.same({ "success", 3 }, { task.results[1].status, task.results[1].summary.positives })
            end)

            it("says so when the domain is unknown", function()
               local r = new_app():domain_reputation { domain = UNKNOWN_DOMAIN }
               assert.equal("success", r.status)
               assert.is_false(r.summary.found)
            end)
         end)

         describe("ip_reputation", function()
            it("reports a known address", function()
               local r = new_app():ip_reputation { ip = KNOWN_IP }
               assert.equal("success", r.status)
               local d = r.data[1]
               assert.is_string(d.as_owner)
               assert.equal("integer", math.type(d.asn))
               assert.is_string(d.country)
               assert.is_table(d.resolutions)
               assert.equal(api == "v3" and 1 + 5 or 1, #api_requests(srv))
               srv:reset()
               assert.equal("success", new_app { related = 0 }:ip_reputation { ip = KNOWN_IP }.status)
               assert.equal(1, #api_requests(srv))
            end)

            it("says so when the address is unknown", function()
               local r = new_app():ip_reputation { ip = UNKNOWN_IP }
               assert.equal("success", r.status)
               assert.is_false(r.summary.found)
            end)
         end)

         describe("malformed input", function()
            local cases = {
               { "file_reputation", { hash = "not-a-hash" } },
               { "file_reputation", {} },
               { "url_reputation", { url = "not a url" } },
               { "url_reputation", { url = "javascript:alert(1)" } },
               { "domain_reputation", { domain = "bad..domain" } },
               { "ip_reputation", { ip = "300.1.1.1" } },
               { "get_file", { hash = "abc" } },
               { "get_report", { scan_id = "abc", report_type = "pdf" } },
               { "get_report", { scan_id = "two words", report_type = "file" } },
               { "detonate_file", { vault_id = "nothex" } },
               { "detonate_file", { vault_id = string.rep("a", 40) } },
               { "detonate_url", { url = "   " } },
            }
            for _, case in ipairs(cases) do
               local action, params = case[1], case[2]
               local name, value = next(params)
               it(string.format("%s{%s = %q}", action, tostring(name), tostring(value)), function()
                  local app = new_app()
                  local r = app[action](app, params)
                  assert.equal("failed", r.status)
                  assert.is_truthy(r.error_code == "InvalidArgument" or r.error_code == "NotFoundError")
                  assert.equal(0, #api_requests(srv), "a request reached the service")
                  assert.equal(1, app:summary().total_objects)
                  assert.equal(0, app:summary().total_objects_successful)
               end)
            end
         end)

         describe("the shared rate limit", function()
            it("is local-clock based: a call over requests_per_minute fails before any request", function()
               local app = new_app { requests_per_minute = 1, max_wait = 0.2 }
               assert.equal("success", app:file_reputation { hash = KNOWN_HASH }.status)
               local r = app:file_reputation { hash = KNOWN_HASH }
               assert.equal("failed", r.status)
               assert.equal("RateLimited", r.error_code)
               assert.matches("requests_per_minute", r.message)
               assert.equal(1, #api_requests(srv))
            end)
         end)

         describe("get_file", function()
            local CONTENT = "MZ\144\0 a small sample for the vault " .. api

            it("streams a file into the vault under its SHA-1", function()
               local known = srv:register_file(CONTENT, "sample.exe")
               local app = new_app()
               local r = app:get_file { hash = known.sha256 }
               assert.equal("success", r.status, r.message)
               assert.equal(known.sha1, r.summary.vault_id)
               assert.equal(known.sha256, r.summary.name)
               assert.equal("PE executable", r.summary.file_type)
               assert.same(r.summary.vault_id, r.data[1].vault_id)
               assert.equal(CONTENT, read_all(vault:path(known.sha1)))
               assert.equal(known.sha256, vault:info(known.sha1).name)
               assert.same({ known.sha1, known.sha1 .. ".meta" }, dir_entries(dir))
            end)

            it("keeps nothing when the content does not match the hash", function()
               local known = srv:register_file(CONTENT, "sample.exe")
               srv:fault { type = "tamper" }
               local r = new_app():get_file { hash = known.sha256 }
               assert.equal("failed", r.status)
               assert.equal("DigestMismatch", r.error_code)
               assert.same({}, dir_entries(dir))
            end)

            it("fails when the service has no such file", function()
               local r = new_app():get_file { hash = UNKNOWN_HASH }
               assert.equal("failed", r.status)
               assert.equal("NotFoundError", r.error_code)
               assert.same({}, dir_entries(dir))
            end)
         end)

         describe("detonate_file", function()
            it("returns the existing report of a known file without uploading", function()
               local data = "already known content " .. api
               srv:register_file(data, "known.bin")
               local id = assert(vault:add({ data = data }, "known.bin"))
               local r = new_app():detonate_file { vault_id = id }
               assert.equal("success", r.status, r.message)
               assert.matches("already known", r.message)
               assert.equal(0, posts_to(srv, UPLOAD_PATHS[api]))
               assert.equal(id, r.data[1].sha1)
            end)

            it("uploads an unknown file and polls it to its verdict", function()
               local id = assert(vault:add({ data = "fresh VT-FAKE-MALICIOUS=5 " .. api }, "fresh.txt"))
               local app = new_app()
               local r = app:detonate_file { vault_id = id }
               assert.equal("success", r.status, r.message)
               assert.equal(1, posts_to(srv, UPLOAD_PATHS[api]))
               assert.equal(5, r.summary.positives)
               assert.equal(5, r.data[1].positives)
               assert.equal(id, r.data[1].sha1)
               assert.is_string(r.summary.scan_id)
               assert.matches("fresh.txt", r.message, 1, true)
               -- the fake completes on the 3rd poll: two sleeps, none after the last poll
               assert.same({ 0.5, 0.5 }, sleeps)
               assert.same({ total_objects = 1, total_objects_successful = 1, total_positives = 1 },
                  app:summary())
            end)

            it("times out with summary.scan_id, and get_report finishes the scan", function()
               srv:analysis_steps(6)
               local id = assert(vault:add({ data = "slow VT-FAKE-MALICIOUS=2 " .. api }, "slow.txt"))
               -- 0.05 minutes, a poll every second: 3 polls, 2 sleeps
               local app = new_app { poll_interval = 0.05, poll_every = 1 }
               local r = app:detonate_file { vault_id = id }
               assert.equal("failed", r.status)
               assert.equal("Timeout", r.error_code)
               assert.is_string(r.summary.scan_id)
               assert.matches("get_report", r.message)
               assert.matches(r.summary.scan_id, r.message, 1, true)
               assert.same({ 1, 1 }, sleeps)
               local polls = #api_requests(srv, FILE_POLL_PATHS[api]) - (api == "v2" and 1 or 0)
               assert.equal(3, polls)

               local later = new_app { poll_interval = 1, poll_every = 5 }
               local done = later:get_report { scan_id = r.summary.scan_id, report_type = "file" }
               assert.equal("success", done.status, done.message)
               assert.equal(2, done.summary.positives)
               assert.equal(id, done.data[1].sha1)
               assert.equal(r.summary.scan_id, done.summary.scan_id)
               assert.equal(1, posts_to(srv, UPLOAD_PATHS[api]))
            end)

            it("polls every poll_every seconds and never sleeps after the last try", function()
               srv:analysis_steps(50)
               local id = assert(vault:add({ data = "timed " .. api }, "timed.txt"))
               -- the real, blocking sleep; the fake logs CLOCK_MONOTONIC times, as monotime reads
               local system = require "system"
               local app = new_app { poll_interval = 3 * STEP / 60, poll_every = STEP,
                  sleep = system.sleep }
               local r = app:detonate_file { vault_id = id }
               local finished = system.monotime()
               assert.equal("Timeout", r.error_code)
               local polls = api_requests(srv, FILE_POLL_PATHS[api])
               if api == "v2" then
                  table.remove(polls, 1) -- the look-up before the upload
               end
               assert.equal(3, #polls)
               for i = 2, #polls do
                  assert.is_true(polls[i].mono - polls[i - 1].mono >= STEP - 0.01)
               end
               local after_last = finished - polls[#polls].mono
               assert.is_true(after_last < STEP / 2, "returned " .. after_last .. " s after the last poll")
            end)
         end)

         describe("detonate_url", function()
            it("returns the existing report of a known URL without submitting", function()
               local r = new_app():detonate_url { url = KNOWN_URL }
               assert.equal("success", r.status, r.message)
               assert.equal(0, posts_to(srv, URL_SUBMIT_PATHS[api]))
               assert.is_string(r.summary.scan_id)
            end)

            it("submits an unknown URL and polls it to its verdict", function()
               local url = "http://fresh-" .. api .. ".example/VT-FAKE-MALICIOUS=4"
               local r = new_app():detonate_url { url = url }
               assert.equal("success", r.status, r.message)
               assert.equal(1, posts_to(srv, URL_SUBMIT_PATHS[api]))
               assert.equal(4, r.summary.positives)
               assert.equal(url, r.data[1].url)
               assert.equal(vt.null, r.data[1].filescan_id)
               assert.same({ "harmless", 1 }, { r.summary.verdict, r.summary.score }) -- 4 < 5, below both thresholds
            end)

            it("times out with summary.scan_id, and get_report finishes it", function()
               srv:analysis_steps(4)
               local url = "http://slow-" .. api .. ".example/VT-FAKE-MALICIOUS=1"
               local r = new_app { poll_interval = 0.01, poll_every = 0.3 }:detonate_url { url = url }
               assert.equal("failed", r.status)
               assert.equal("Timeout", r.error_code)
               local done = new_app():get_report { scan_id = r.summary.scan_id, report_type = "url" }
               assert.equal("success", done.status, done.message)
               assert.equal(1, done.summary.positives)
               assert.equal(url, done.data[1].url)
            end)
         end)

         if api == "v2" then
            it("detonate_url polls a URL already queued instead of resubmitting it", function()
               -- the Splunk app crashed here: a first look-up answering -2 left it without a scan id
               srv:analysis_steps(4)
               local url = "http://queued.example/VT-FAKE-MALICIOUS=6"
               local c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false }
               assert(c:v2_url_scan(url))
               local r = new_app():detonate_url { url = url }
               assert.equal("success", r.status, r.message)
               assert.equal(6, r.summary.positives)
               assert.equal(1, posts_to(srv, URL_SUBMIT_PATHS[api]))
            end)
         else
            it("get_report refuses a file scan asked for as a URL report", function()
               local id = assert(vault:add({ data = "kind check " .. api }, "k.txt"))
               srv:analysis_steps(10)
               local r = new_app { poll_interval = 0.01, poll_every = 0.6 }:detonate_file { vault_id = id }
               assert.equal("Timeout", r.error_code)
               local wrong = new_app():get_report { scan_id = r.summary.scan_id, report_type = "url" }
               assert.equal("failed", wrong.status)
               assert.equal("InvalidArgument", wrong.error_code)
               assert.matches("report_type file", wrong.message)
            end)
         end

         describe("get_report", function()
            it("fails on an unknown scan id", function()
               local scan_id = api == "v3" and "u-" .. string.rep("ab", 32) .. "-1700000000"
                  or string.rep("ab", 32) .. "-1700000000"
               local r = new_app():get_report { scan_id = scan_id, report_type = "url" }
               assert.equal("failed", r.status)
               assert.equal("NotFoundError", r.error_code)
               assert.equal(scan_id, r.summary.scan_id)
            end)

            it("defaults report_type to file", function()
               local r = new_app():get_report { scan_id = KNOWN_HASH }
               assert.equal("success", r.status, r.message)
               assert.equal("file", r.parameter.report_type)
               assert.equal(KNOWN_HASH, r.data[1].sha256)
            end)
         end)

         describe("app:summary", function()
            it("totals the run", function()
               local app = new_app()
               app:file_reputation { hash = KNOWN_HASH } -- positives > 0
               app:file_reputation { hash = UNKNOWN_HASH } -- success, not found
               app:ip_reputation { ip = "nope" } -- failed
               assert.same({ total_objects = 3, total_objects_successful = 2, total_positives = 1 },
                  app:summary())
            end)
         end)

         describe("data paths of the Splunk app", function()
            local results = {}
            local app, dp_dir

            lazy_setup(function()
               srv:reset()
               dp_dir = temp_dir()
               vault = assert(actions.dir_vault(dp_dir))
               sleeps = {}
               app = new_app()
               local function run(action, params)
                  local r = app[action](app, params)
                  assert.equal("success", r.status, action .. ": " .. r.message)
                  results[action] = results[action] or {}
                  table.insert(results[action], r)
               end
               run("file_reputation", { hash = KNOWN_HASH })
               run("url_reputation", { url = KNOWN_URL })
               run("domain_reputation", { domain = KNOWN_DOMAIN })
               run("ip_reputation", { ip = KNOWN_IP })
               local known = srv:register_file("MZ data path sample " .. api, "dp.exe")
               run("get_file", { hash = known.sha256 })
               local id = vault:add({ data = "data paths VT-FAKE-MALICIOUS=3 " .. api }, "dp.txt")
               run("detonate_file", { vault_id = id })
               run("detonate_url", { url = "http://dp-" .. api .. ".example/VT-FAKE-MALICIOUS=2" })
               run("get_report", { scan_id = results.detonate_file[1].summary.scan_id,
                  report_type = "file" })
               run("get_report", { scan_id = results.detonate_url[1].summary.scan_id,
                  report_type = "url" })
            end)

            lazy_teardown(function()
               remove_tree(dp_dir)
            end)

            for action, entries in pairs(load_datapaths()) do
               it(action .. ": every path present with its type", function()
                  assert.is_table(results[action], "no results for " .. action)
                  for _, entry in ipairs(entries) do
                     check_datapath(api, action, entry, results[action], app:summary())
                  end
                  for _, r in ipairs(results[action]) do
                     assert_no_secret(r, srv.key)
                  end
               end)
            end
         end)
      end)
   end

   describe("the data path check itself", function()
      it("fails on a missing path and on a wrong type", function()
         local entry = { path = "action_result.data.*.positives", kind = "numeric" }
         assert.has_error(function()
            check_datapath("v3", "x", entry, { { data = { {} } } }, {})
         end)
         assert.has_error(function()
            check_datapath("v3", "x", entry, { { data = { { positives = "3" } } } }, {})
         end)
         assert.has_error(function()
            check_datapath("v3", "x", entry, { { data = { { positives = 3.0 } } } }, {})
         end)
         check_datapath("v3", "x", entry, { { data = { { positives = 3 } } } }, {})
      end)
   end)
end)
