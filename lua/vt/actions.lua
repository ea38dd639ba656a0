--- Splunk SOAR-style VirusTotal actions: the nine actions of the Splunk app, as methods.
--
--     local actions = require "vt.actions"
--     local app = actions.new{apikey = key, requests_per_minute = 4}
--     local r = app:file_reputation{hash = "44d88612fea8a8f36de82e1278abb02f"}
--     print(r.status, r.message, r.summary.positives)
--
-- Every action returns an action result `{status = "success"|"failed", parameter = {...},
-- data = {...}, summary = {...}, message = "..."}` whose data paths are those of the Splunk
-- app, in the v2 report shape whichever protocol the client speaks (see docs/actions.md).
-- A failed result also carries `error_code`, the error's code.
-- @module vt.actions

local vt = require "vt"
local backends = require "vt.actions.backends"
local errors = require "vt.actions.errors"
local vault = require "vt.actions.vault"

local actions = {}

--- A directory vault (`vault:add`, `vault:path`, `vault:has`, `vault:info`); see
-- `vt.actions.vault`. Default directory: `$XDG_DATA_HOME/vt/vault` or
-- `~/.local/share/vt/vault`.
-- @function dir_vault
actions.dir_vault = vault.dir

local App = {}
App.__index = App

-- ------------------------------------------------------------------------- options

-- option -> accepted Lua types ("number" also takes a numeric string, as asset settings are)
local OPTIONS = {
   client = "userdata", apikey = "string", base_url = "string", api = "string",
   requests_per_minute = "number", quota_state = "string|boolean", max_wait = "number",
   timeout = "number", vault = "table", poll_interval = "number", poll_every = "number",
   sleep = "function", related = "number",
}
local CLIENT_OPTIONS = { "apikey", "base_url", "requests_per_minute", "quota_state", "max_wait",
   "timeout" }

local function check_options(opts)
   if type(opts) ~= "table" then
      error("actions.new: options must be a table", 3)
   end
   local checked = {}
   for key, value in pairs(opts) do
      local want = OPTIONS[key]
      if not want then
         error(string.format("actions.new: unknown option '%s'", tostring(key)), 3)
      end
      if want == "number" then
         value = tonumber(value)
      end
      if value == nil or not want:find(type(value), 1, true) then
         error(string.format("actions.new: option '%s' must be a %s (got %s)", key, want,
            type(opts[key])), 3)
      end
      checked[key] = value
   end
   return checked
end

--- Makes the app: the nine actions as methods, sharing one client, vault and run summary.
-- @tparam table opts
--  `client` (a `vt.client`) or, to make one, `apikey` (default env `VT_API_KEY`), `base_url`,
--  `requests_per_minute`, `quota_state`, `max_wait`, `timeout`;
--  `api` (`"v3"` default, or `"v2"`; the protocol the actions speak);
--  `vault` (default `actions.dir_vault()`, made on first use);
--  `poll_interval` (minutes of polling a detonation, default 5);
--  `poll_every` (seconds between two polls, default 60);
--  `related` (v3 only: related objects fetched per relationship for domain and IP reports,
--  default 10; 0 fetches none and saves quota);
--  `sleep` (function(seconds) between polls; default `client:sleep`, which yields in
--  coroutine mode).
-- Unknown options and wrong types raise.
-- @return the app
function actions.new(opts)
   opts = check_options(opts)
   local api = opts.api or "v3"
   if api ~= "v3" and api ~= "v2" then
      error("actions.new: option 'api' must be \"v3\" or \"v2\"", 2)
   end
   local client = opts.client
   if client then
      for _, key in ipairs(CLIENT_OPTIONS) do
         if opts[key] ~= nil then
            error(string.format("actions.new: give 'client' or '%s', not both", key), 2)
         end
      end
   else
      local client_opts = { api = api }
      for _, key in ipairs(CLIENT_OPTIONS) do
         client_opts[key] = opts[key]
      end
      client = vt.client(client_opts)
   end
   local app = setmetatable({
      api = api,
      client = client,
      backend = backends.new(client, api, { related = math.floor(opts.related or 10) }),
      vault = opts.vault,
      poll_interval = opts.poll_interval or 5,
      poll_every = opts.poll_every or 60,
      -- the client's own sleep yields in coroutine mode, so polling never blocks a host
      sleep = opts.sleep or function(seconds) client:sleep(seconds) end,
      totals = { total_objects = 0, total_objects_successful = 0, total_positives = 0 },
   }, App)
   if app.poll_interval <= 0 or app.poll_every <= 0 then
      error("actions.new: poll_interval and poll_every must be positive", 2)
   end
   return app
end

--- The run's totals over the actions run so far: `total_objects` (actions run),
-- `total_objects_successful`, `total_positives` (results whose `summary.positives` > 0).
-- @treturn table
function App:summary()
   local t = self.totals
   return { total_objects = t.total_objects,
      total_objects_successful = t.total_objects_successful,
      total_positives = t.total_positives }
end

-- The vault, opened on first use so that apps that never touch files create no directory.
function App:get_vault()
   if not self.vault then
      local v, err = vault.dir()
      if not v then
         return nil, err
      end
      self.vault = v
   end
   return self.vault
end

-- ------------------------------------------------------------------- parameters

local function check_hash(v)
   if not vt.hash_type(v) then
      return errors.fail("InvalidArgument", "not an MD5, SHA-1 or SHA-256 hash: '%s'", v)
   end
   return v:lower()
end

local function check_url(v)
   local url = vt.refang(v)
   local authority = url:match("^%a[%w+.-]*://([^/?#]*)") or url:match("^([^/?#]*)")
   local host = authority:gsub("^.*@", ""):gsub(":%d*$", "")
   if url:find("[%s%c]") or not (host:find("%w%.%w") or host:find("^%[.+%]$")) then
      return errors.fail("InvalidArgument", "not a URL: '%s'", v)
   end
   return url
end

-- A domain, also when given as a URL: its host (the core validates the name).
local function check_domain(v)
   local name = vt.refang(v):gsub("^%a[%w+.-]*://", ""):gsub("[/?#].*$", ""):gsub(":%d*$", "")
   return name:lower()
end

local function check_ip(v)
   local ip = vt.refang(v)
   if not vt.ip_version(ip) then
      return errors.fail("InvalidArgument", "not an IP address: '%s'", v)
   end
   return ip
end

local function check_scan_id(v)
   if #v > 512 or v:find("[%s%c]") then
      return errors.fail("InvalidArgument", "not a scan id: '%s'", v:sub(1, 80))
   end
   return v
end

local function check_report_type(v)
   local kind = v:lower()
   if kind ~= "file" and kind ~= "url" then
      return errors.fail("InvalidArgument", "report_type must be \"file\" or \"url\", not '%s'", v)
   end
   return kind
end

local function check_vault_id(v)
   if not v:match("^%x+$") or #v ~= 40 then
      return errors.fail("InvalidArgument", "not a vault id (a SHA-1): '%s'", v)
   end
   return v:lower()
end

-- The parameters of `given` that `fields` declares ({name, check, default}), checked and
-- normalised; nil and an error for a missing or malformed one. A non-string raises.
local function read_parameters(action, given, fields)
   local values = {}
   for _, field in ipairs(fields) do
      local name, check, default = field[1], field[2], field[3]
      local v = given[name]
      if v ~= nil and type(v) ~= "string" then
         error(string.format("%s: parameter '%s' must be a string (got %s)", action, name,
            type(v)), 4)
      end
      v = v and v:match("^%s*(.-)%s*$")
      if v == nil or v == "" then
         v = default
      end
      if v == nil then
         return errors.fail("InvalidArgument", "parameter '%s' is required", name)
      end
      local norm, err = check(v)
      if not norm then
         return nil, err
      end
      values[name] = norm
   end
   return values
end

-- --------------------------------------------------------------------- messages

local LABELS = {
   test_connectivity = "Test connectivity", file_reputation = "File reputation",
   url_reputation = "URL reputation", domain_reputation = "Domain reputation",
   ip_reputation = "IP reputation", get_file = "Get file", get_report = "Get report",
   detonate_file = "Detonate file", detonate_url = "Detonate URL",
}

-- What to tell the user beyond the error itself, by code.
local HINTS = {
   WrongCredentialsError = "VirusTotal rejected the API key; check the apikey setting",
   AuthenticationRequiredError = "no API key reached VirusTotal; set apikey or VT_API_KEY",
   ForbiddenError = "VirusTotal refused the request: the API key is wrong (v2 answers a wrong "
      .. "key with 403) or lacks the privilege this needs (downloads need a premium key)",
   QuotaExceededError = "the VirusTotal quota of this API key is used up; the shared limiter "
      .. "now holds back every action using this key until the window passes",
   TooManyRequestsError = "VirusTotal asked to slow down and the retries ran out",
   RateLimited = "the shared limiter of this key (its requests_per_minute, or a quota answer "
      .. "VirusTotal gave any process using the key) would have made this call wait longer "
      .. "than max_wait",
   ConnectionError = "could not reach VirusTotal",
   TLSError = "the TLS connection to VirusTotal failed",
   InvalidResponse = "VirusTotal answered with something that is not a JSON report "
      .. "(an HTML error page, a truncated or malformed body)",
   DigestMismatch = "the downloaded content does not match the hash; nothing was kept",
}

local function describe(action, err)
   local text = tostring(err)
   if err.analysis_id then
      text = string.format("%s; run get_report with scan_id \"%s\" to finish it", text,
         err.analysis_id)
   elseif HINTS[err.code] then
      text = HINTS[err.code] .. " [" .. text .. "]"
   end
   return LABELS[action] .. " failed: " .. text
end

-- "3/70 engines detected it" and the like.
local function verdict_text(report)
   if report.positives == nil then
      return "no verdict in the report"
   end
   return string.format("%d/%d engines detected it", report.positives, report.total or 0)
end

local function count(list)
   return type(list) == "table" and #list or nil
end

-- ------------------------------------------------------------------------- skeleton

-- Runs one action: reads the parameters, runs `body(app, params, result)` (which fills
-- result.data, summary and message, and returns true or nil, err), keeps the run's totals.
function App:run(action, given, fields, body)
   if type(given) ~= "table" then
      error(string.format("%s: parameters must be a table", action), 3)
   end
   local result = { status = "failed", parameter = {}, data = {}, summary = {}, message = "" }
   for k, v in pairs(given) do
      result.parameter[k] = v
   end
   local params, err = read_parameters(action, given, fields)
   local ok = false
   if params then
      for _, field in ipairs(fields) do
         if given[field[1]] == nil then
            result.parameter[field[1]] = field[3]
         end
      end
      ok, err = body(self, params, result)
   end
   if ok then
      result.status = "success"
   else
      result.message = describe(action, err)
      result.error_code = err.code
   end
   local t = self.totals
   t.total_objects = t.total_objects + 1
   if ok then
      t.total_objects_successful = t.total_objects_successful + 1
   end
   if (tonumber(result.summary.positives) or 0) > 0 then
      t.total_positives = t.total_positives + 1
   end
   return result
end

-- Polls a scan every poll_every seconds, poll_interval minutes at most, never sleeping
-- after the last try; the report when finished, else nil and an error naming the scan.
function App:poll(kind, scan_id)
   local tries = math.max(1, math.floor(self.poll_interval * 60 / self.poll_every + 1e-9))
   for attempt = 1, tries do
      local report, err = self.backend:report(kind, scan_id)
      if report then
         return report
      elseif err.code ~= "NotAvailableYet" then
         return nil, err
      end
      if attempt < tries then
         self.sleep(self.poll_every)
      end
   end
   local err = errors.new("Timeout", "scan %s not finished after %d polls over %g minutes",
      scan_id, tries, self.poll_interval)
   err.analysis_id = scan_id
   return nil, err
end

local function verdict_summary(report, summary)
   summary.positives = report.positives
   summary.total_scans = report.total
end

-- Fills a result from a finished scan report (detonations and get_report).
local function scan_result(result, report, subject, how)
   result.data = { report }
   verdict_summary(report, result.summary)
   result.summary.scan_id = report.scan_id or result.summary.scan_id
   result.message = string.format("%s: %s (%s; scan id %s)", subject, verdict_text(report), how,
      result.summary.scan_id)
   return true
end

-- Looks up first; submits only what the service has not seen; polls the submission.
function App:detonate(kind, resource, source, subject, result)
   local report, err = self.backend:lookup(kind, resource)
   if report and report.positives ~= nil then
      return scan_result(result, report, subject, "already known to VirusTotal, not resubmitted")
   end
   local scan_id = report and report.scan_id
   if not scan_id then
      if err and err.code == "NotAvailableYet" then
         scan_id = resource -- queued by someone else: poll it by its resource
      elseif err and err.code ~= "NotFoundError" then
         return nil, err
      else
         scan_id, err = self.backend:submit(kind, source)
         if not scan_id then
            return nil, err
         end
      end
   end
   result.summary.scan_id = scan_id
   report, err = self:poll(kind, scan_id)
   if not report then
      return nil, err
   end
   return scan_result(result, report, subject, "submitted and scanned")
end

-- ----------------------------------------------------------------------- actions

local ACTIONS = {}

--- Checks that the service answers and accepts the key (one look-up of the empty file's
-- hash; "not found" counts as a pass). No parameters.
-- @function app:test_connectivity
-- @treturn table the action result
ACTIONS.test_connectivity = { {}, function(self, _, result)
   local ok, err = self.backend:ping()
   if not ok then
      return nil, err
   end
   result.message = string.format("Test connectivity passed: VirusTotal API %s accepted the key",
      self.api)
   return true
end }

local REPUTATION = {
   file = { param = "hash", label = "File", summarise = verdict_summary },
   url = { param = "url", label = "URL", summarise = function(report, summary)
      verdict_summary(report, summary)
      summary.detections = (report.positives or 0) > 0
   end },
   domain = { param = "domain", label = "Domain", summarise = function(report, summary)
      summary.detected_urls = count(report.detected_urls)
      summary.downloaded_samples = count(report.detected_downloaded_samples)
      summary.communicating_samples = count(report.detected_communicating_samples)
      summary.alexa_rank = tonumber(report["Alexa rank"])
   end },
   ip = { param = "ip", label = "IP address", summarise = function(report, summary)
      summary.detected_urls = count(report.detected_urls)
      summary.downloaded_samples = count(report.detected_downloaded_samples)
      summary.communicating_samples = count(report.detected_communicating_samples)
   end },
}

local function network_text(summary)
   return string.format("%d detected URLs, %d detected downloaded samples, "
      .. "%d detected communicating samples", summary.detected_urls or 0,
      summary.downloaded_samples or 0, summary.communicating_samples or 0)
end

-- A reputation action; "not found" is a success that says so (summary.found = false).
local function reputation(kind, check)
   local how = REPUTATION[kind]
   return { { { how.param, check } }, function(self, params, result)
      local resource = params[how.param]
      local report, err = self.backend:lookup(kind, resource)
      if not report then
         if err.code ~= "NotFoundError" then
            return nil, err
         end
         result.data = { { resource = resource, response_code = 0,
            verbose_msg = how.label .. " not found in VirusTotal's dataset" } }
         result.summary.found = false
         result.message = string.format("%s %s is not known to VirusTotal", how.label, resource)
         return true
      end
      result.data = { report }
      result.summary.found = true
      how.summarise(report, result.summary)
      local text = (kind == "domain" or kind == "ip") and network_text(result.summary)
         or verdict_text(report)
      result.message = string.format("%s %s: %s", how.label, resource, text)
      return true
   end }
end

--- File reputation: the report of a hash. An unknown hash is a success with
-- `summary.found = false`. Summary: `positives`, `total_scans`, `found`.
-- @function app:file_reputation
-- @tparam table params `hash`: MD5, SHA-1 or SHA-256
-- @treturn table the action result

--- URL reputation (the URL is refanged first). Summary: `positives`, `total_scans`,
-- `detections` (positives > 0), `found`.
-- @function app:url_reputation
-- @tparam table params `url`
-- @treturn table the action result

--- Domain reputation (a URL is taken for its host). Summary: `detected_urls`,
-- `downloaded_samples`, `communicating_samples` (counts of the detected lists), `alexa_rank`
-- when the service ranks it, `found`.
-- @function app:domain_reputation
-- @tparam table params `domain`
-- @treturn table the action result

--- IP reputation (IPv4 or IPv6). Summary as for domains, without `alexa_rank`.
-- @function app:ip_reputation
-- @tparam table params `ip`
-- @treturn table the action result
ACTIONS.file_reputation = reputation("file", check_hash)
ACTIONS.url_reputation = reputation("url", check_url)
ACTIONS.domain_reputation = reputation("domain", check_domain)
ACTIONS.ip_reputation = reputation("ip", check_ip)

-- First bytes -> file type, the kinds the Splunk app told apart (and a few more).
local MAGIC = {
   { "MZ", "PE executable" }, { "\127ELF", "ELF executable" }, { "%PDF", "PDF document" },
   { "PK\3\4", "ZIP archive" }, { "\208\207\17\224", "MS Office (OLE2) document" },
   { "MDMP", "Windows minidump" }, { "FWS", "Flash (SWF)" }, { "CWS", "Flash (SWF)" },
   { "ZWS", "Flash (SWF)" }, { "\212\195\178\161", "pcap capture" },
   { "\161\178\195\212", "pcap capture" }, { "\10\13\13\10", "pcapng capture" },
}

local function file_type(path)
   local f = io.open(path, "rb")
   local head = f and f:read(8) or ""
   if f then f:close() end
   for _, m in ipairs(MAGIC) do
      if head:sub(1, #m[1]) == m[1] then
         return m[2]
      end
   end
   return "data"
end

--- Downloads a file (a premium privilege) into the vault: streamed, its digest checked
-- against `hash` by the core, nothing kept on a mismatch. Data and summary: `vault_id`
-- (the SHA-1), `name` (the hash asked for), `file_type` (from the first bytes).
-- @function app:get_file
-- @tparam table params `hash`
-- @treturn table the action result
ACTIONS.get_file = { { { "hash", check_hash } }, function(self, params, result)
   local v, err = self:get_vault()
   if not v then
      return nil, err
   end
   -- the download lands beside the vault's files (then a rename) when the vault allows it
   local staging = v.staging and v:staging() or os.tmpname()
   local got
   got, err = self.backend:download(params.hash, staging)
   if not got then
      os.remove(staging)
      return nil, err
   end
   local kind = file_type(got.path)
   local id
   if v.adopt then
      id, err = v:adopt(got.path, got.sha1, params.hash)
   else
      id, err = v:add(got.path, params.hash)
      os.remove(got.path)
   end
   if not id then
      return nil, err
   end
   result.data = { { vault_id = id, name = params.hash, file_type = kind, size = got.size,
      md5 = got.md5, sha1 = got.sha1, sha256 = got.sha256 } }
   result.summary.vault_id, result.summary.name, result.summary.file_type = id, params.hash, kind
   result.message = string.format("File %s is in the vault as %s (%s, %d bytes, digest checked)",
      params.hash, id, kind, got.size)
   return true
end }

--- The report of a scan, polled like a detonation: `scan_id` is what a detonation put in
-- `summary.scan_id` (a v3 analysis id or a v2 scan id), or a hash or URL.
-- @function app:get_report
-- @tparam table params `scan_id`; `report_type` `"file"` (default) or `"url"`
-- @treturn table the action result
ACTIONS.get_report = { { { "scan_id", check_scan_id }, { "report_type", check_report_type, "file" } },
   function(self, params, result)
      result.summary.scan_id = params.scan_id
      local report, err = self:poll(params.report_type, params.scan_id)
      if not report then
         return nil, err
      end
      return scan_result(result, report, "Scan " .. params.scan_id, "finished")
   end }

--- Detonates a vault file: looks its SHA-1 up, uploads it only if the service does not know
-- it, polls the scan. On timeout: failed, with `summary.scan_id` for `get_report`.
-- @function app:detonate_file
-- @tparam table params `vault_id`
-- @treturn table the action result
ACTIONS.detonate_file = { { { "vault_id", check_vault_id } }, function(self, params, result)
   local v, err = self:get_vault()
   if not v then
      return nil, err
   end
   local info
   info, err = v:info(params.vault_id)
   if not info then
      return nil, err
   end
   return self:detonate("file", info.vault_id, info.path,
      string.format("File %s (vault id %s)", info.name, info.vault_id), result)
end }

--- Detonates a URL: looks it up, submits it only if unknown, polls the scan; on timeout
-- as `detonate_file`.
-- @function app:detonate_url
-- @tparam table params `url`
-- @treturn table the action result
ACTIONS.detonate_url = { { { "url", check_url } }, function(self, params, result)
   return self:detonate("url", params.url, params.url, "URL " .. params.url, result)
end }

for name, def in pairs(ACTIONS) do
   local fields, body = def[1], def[2]
   App[name] = function(self, given)
      return self:run(name, given or {}, fields, body)
   end
end

return actions
