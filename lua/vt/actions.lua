--- Splunk SOAR-style VirusTotal actions: the nine actions of the Splunk app, as methods.
--
--     local actions = require "vt.actions"
--     local app = actions.new{apikey = key, requests_per_minute = 4}
--     local r = app:file_reputation{hash = "44d88612fea8a8f36de82e1278abb02f"}
--     print(r.status, r.message, r.summary.positives, r.summary.verdict)
--
-- Every action returns an action result `{status = "success"|"failed", parameter = {...},
-- data = {...}, summary = {...}, message = "..."}` whose data paths are those of the Splunk
-- app, in the v2 report shape whichever protocol the client speaks (see docs/actions.md).
-- A failed result also carries `error_code`, the error's code.
-- @module vt.actions
local vt = require "vt"
local verdict = require "vt.verdict"
local core = require "vt.core"
local shape = require "vt.actions.v2shape"
local vault = require "vt.actions.vault"

local input, backend, report = core.input, core.backend, core.report

local actions = {}

--- A directory vault (`vault:add`, `vault:path`, `vault:has`, `vault:info`); see
-- `vt.actions.vault`. Default directory: `$XDG_DATA_HOME/vt/vault` or
-- `~/.local/share/vt/vault`.
-- @function dir_vault
actions.dir_vault = vault.dir

local App = {}
App.__index = App

-- nil and an error, for `return fail(...)`.
local function fail(code, fmt, ...)
    return nil, vt.error(code, fmt:format(...))
end

-- ------------------------------------------------------------------------- options

-- option -> accepted Lua types (numbers may come as numeric strings, as asset settings do);
-- the client options too (input.CLIENT_OPTIONS), to make the app's client
local OPTIONS = {
    client = "userdata", api = "string", vault = "table", poll_interval = "number", poll_every = "number",
    sleep = "function", related = "number", progress = "function",
}
for name, types in pairs(input.CLIENT_OPTIONS) do
    OPTIONS[name] = types
end

-- What a v3 domain report reads: the related lists of an IP report, and the subdomains.
local DOMAIN_RELATIONSHIPS = table.move(backend.NETWORK, 1, #backend.NETWORK, 2, { "subdomains" })

--- Makes the app: the nine actions as methods, sharing one client, vault and run summary. The
-- actions speak the client's protocol (its `api` option, v3 or v2).
-- @tparam table opts
--  `client` (a `vt.client`) or, to make one, `apikey` (default env `VT_API_KEY`), `base_url`,
--  `requests_per_minute`, `quota_state`, `max_wait`, `timeout`, `cache` (default `true`: the
--  response cache in the user's cache directory; `false` for none), `api` (`"v3"` default, or
--  `"v2"`); with a `client`, an `api` given must be the client's (a contradiction raises);
--  `vault` (default `actions.dir_vault()`, made on first use);
--  `poll_interval` (minutes of polling a detonation, default 5);
--  `poll_every` (seconds between two polls, default 60);
--  `related` (v3 only: related objects fetched per relationship for domain and IP reports,
--  default 10; 0 fetches none and saves quota);
--  `sleep` (function(seconds) between polls; default `client:sleep`, which yields in
--  coroutine mode);
--  `progress` (function(event), told each indicator's stage as an action runs: `event.action`
--  (the action's name), `kind`, `value` (the indicator, or the file's path), `stage` (`"looked
--  up"`, `"not found"`, `"uploading"`, `"queued"`, `"in-progress"`, `"done"`, `"failed"`), `text`
--  (`"uploading 35%"`, `"in-progress 40 s"`, ...) and the stage's figures (`percent`,
--  `done_bytes`, `total_bytes`, `elapsed`, `reason`); see docs/actions.md. Returning `false`
--  while a file uploads cancels that upload).
-- Unknown options and wrong types raise.
-- @return the app
function actions.new(opts)
    opts = input.options("actions.new", opts, OPTIONS, true)
    input.whole("actions.new", opts, "related", 0)
    local client = input.client("actions.new", opts)
    local app = setmetatable({
        api = input.protocol("actions.new", client, opts.api),
        client = client,
        vault = opts.vault,
        poll_interval = opts.poll_interval or 5,
        poll_every = opts.poll_every or 60,
        totals = { total_objects = 0, total_objects_successful = 0, total_positives = 0 },
    }, App)
    if app.poll_interval <= 0 or app.poll_every <= 0 then
        error("actions.new: poll_interval and poll_every must be positive", 2)
    end
    app.backend = backend.new(client, {
        relationships = { ip = backend.NETWORK, domain = DOMAIN_RELATIONSHIPS },
        related_limit = opts.related or 10, interval = app.poll_every, sleep = opts.sleep,
        progress = opts.progress and function(event)
            event.action = app.running
            return opts.progress(event)
        end,
    })
    return app
end

--- The run's totals over the actions run so far: `total_objects` (actions run),
-- `total_objects_successful`, `total_positives` (results whose `summary.positives` > 0).
-- @treturn table
function App:summary()
    local t = self.totals
    return { total_objects = t.total_objects, total_objects_successful = t.total_objects_successful,
        total_positives = t.total_positives }
end

--- The app's vault, opened on first use so that apps that never touch files create no directory.
-- @return the vault, or nil and an error
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

local function check_scan_id(v)
    if #v > 512 or v:find("[%s%c]") then
        return fail("InvalidArgument", "not a scan id: '%s'", v:sub(1, 80))
    end
    return v
end

local function check_report_type(v)
    local kind = v:lower()
    if kind ~= "file" and kind ~= "url" then
        return fail("InvalidArgument", "report_type must be \"file\" or \"url\", not '%s'", v)
    end
    return kind
end

local function check_vault_id(v)
    if not v:match("^%x+$") or #v ~= 40 then
        return fail("InvalidArgument", "not a vault id (a SHA-1): '%s'", v)
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
            error(("%s: parameter '%s' must be a string (got %s)"):format(action, name, type(v)), 4)
        end
        v = v and v:match("^%s*(.-)%s*$")
        if v == nil or v == "" then
            v = default
        end
        if v == nil then
            return fail("InvalidArgument", "parameter '%s' is required", name)
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
        text = ("%s; run get_report with scan_id \"%s\" to finish it"):format(text, err.analysis_id)
    elseif HINTS[err.code] then
        text = HINTS[err.code] .. " [" .. text .. "]"
    end
    return LABELS[action] .. " failed: " .. text
end

-- "3/70 engines detected it" and the like.
local function verdict_text(f)
    if f.positives == nil then
        return "no verdict in the report"
    end
    return ("%d/%d engines detected it"):format(f.positives, f.total or 0)
end

-- The verdict of vt.verdict's default policy, beside the seed's summary fields.
local function judge(f, summary)
    local v = verdict.verdict(f.object)
    if v then
        summary.verdict, summary.score = v.verdict, v.score
    end
end

-- ------------------------------------------------------------------------- skeleton

--- Runs one action: reads the parameters, runs `body(app, params, result)` (which fills
-- result.data, summary and message, and returns true or nil, err), keeps the run's totals.
-- @tparam string action the action's name
-- @tparam table given the parameters as given
-- @tparam table fields the parameters it takes: `{name, check, default}` each
-- @tparam function body
-- @treturn table the action result
function App:run(action, given, fields, body)
    if type(given) ~= "table" then
        error(("%s: parameters must be a table"):format(action), 3)
    end
    self.running = action -- names the action in progress events
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

--- Polls a scan every `poll_every` seconds, `poll_interval` minutes at most, never sleeping
-- after the last try.
-- @tparam string kind `"file"` or `"url"`
-- @tparam string scan_id the scan as a user gives it (analysis id, v2 scan id, hash or URL)
-- @tparam[opt] table pending the backend's record of it, when known
-- @return the report's facts, or nil and an error (`Timeout` names the scan in `analysis_id`)
function App:poll(kind, scan_id, pending)
    local tries = math.max(1, math.floor(self.poll_interval * 60 / self.poll_every + 1e-9))
    local facts, err = self.backend:wait(kind, pending or self.backend:pending(kind, scan_id), nil, tries)
    if facts == false then
        return nil, vt.error("Timeout", ("scan %s not finished after %d polls over %g minutes")
            :format(scan_id, tries, self.poll_interval), { analysis_id = scan_id })
    end
    return facts, err
end

local function counts_summary(f, summary)
    summary.positives = f.positives
    summary.total_scans = f.total
    judge(f, summary)
end

-- Fills a result from a finished scan's report (detonations and get_report).
local function scan_result(result, f, subject, how)
    result.data = { shape.report(f) }
    counts_summary(f, result.summary)
    result.summary.scan_id = f.scan_id or result.summary.scan_id
    result.message = ("%s: %s (%s; scan id %s)"):format(subject, verdict_text(f), how, result.summary.scan_id)
    return true
end

--- Looks up first; submits only what the service has not seen; polls the submission (or the
-- scan someone else queued).
-- @tparam string kind `"file"` or `"url"`
-- @tparam string resource the SHA-1 or the URL to look up
-- @param source what to submit (a path, or the URL)
-- @tparam string subject the item, in the message
-- @tparam table result the action result to fill
-- @return true, or nil and an error
function App:detonate(kind, resource, source, subject, result)
    local facts, pending = self.backend:lookup(kind, resource)
    if facts then
        return scan_result(result, facts, subject, "already known to VirusTotal, not resubmitted")
    elseif facts == nil then
        local err = pending
        if err.code ~= "NotFoundError" then
            return nil, err
        end
        pending, err = self.backend:submit(kind, source)
        if not pending then
            return nil, err
        end
    end
    local scan_id = pending.analysis or pending.scan_id or pending.object
    result.summary.scan_id = scan_id
    local err
    facts, err = self:poll(kind, scan_id, pending)
    if not facts then
        return nil, err
    end
    return scan_result(result, facts, subject, "submitted and scanned")
end

-- ----------------------------------------------------------------------- actions

local ACTIONS = {}

-- A hash every VirusTotal knows how to answer for (the empty file), for test_connectivity.
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

--- Checks that the service answers and accepts the key (one look-up of the empty file's
-- hash; "not found" counts as a pass). No parameters.
-- @function app:test_connectivity
-- @treturn table the action result
ACTIONS.test_connectivity = { {}, function(self, _, result)
    local ok, err = self.backend:ping("file", EMPTY_SHA256)
    if not ok then
        return nil, err
    end
    result.message = ("Test connectivity passed: VirusTotal API %s accepted the key"):format(self.api)
    return true
end }

-- The summary of a domain or IP report: the sizes of its detected lists.
local function network_summary(f, summary)
    local samples = f.samples or {}
    summary.detected_urls = (report.detected(f.urls))
    summary.downloaded_samples = (report.detected(samples.downloaded_files))
    summary.communicating_samples = (report.detected(samples.communicating_files))
    judge(f, summary)
end

local REPUTATION = {
    file = { param = "hash", label = "File", check = input.hash, summarise = counts_summary },
    url = { param = "url", label = "URL", check = input.url, summarise = function(f, summary)
        counts_summary(f, summary)
        summary.detections = (f.positives or 0) > 0
    end },
    domain = { param = "domain", label = "Domain", check = input.domain, summarise = function(f, summary)
        network_summary(f, summary)
        summary.alexa_rank = f.alexa_rank
    end },
    ip = { param = "ip", label = "IP address", check = input.ip, summarise = network_summary },
}

local function network_text(summary)
    return ("%d detected URLs, %d detected downloaded samples, %d detected communicating samples")
        :format(summary.detected_urls or 0, summary.downloaded_samples or 0, summary.communicating_samples or 0)
end

-- A reputation action; "not found" is a success that says so (summary.found = false).
local function reputation(kind)
    local how = REPUTATION[kind]
    return { { { how.param, how.check } }, function(self, params, result)
        local resource = params[how.param]
        local facts, err = self.backend:lookup(kind, resource)
        if facts == false then
            return fail("NotAvailableYet", "%s %s is queued for analysis at VirusTotal; ask again later",
                how.label, resource)
        elseif not facts then
            if err.code ~= "NotFoundError" then
                return nil, err
            end
            result.data = { { resource = resource, response_code = 0,
                verbose_msg = how.label .. " not found in VirusTotal's dataset" } }
            result.summary.found, result.summary.verdict, result.summary.score = false, "unknown", 0
            result.message = ("%s %s is not known to VirusTotal"):format(how.label, resource)
            return true
        end
        result.data = { shape.report(facts) }
        result.summary.found = true
        how.summarise(facts, result.summary)
        local text = (kind == "domain" or kind == "ip") and network_text(result.summary) or verdict_text(facts)
        result.message = ("%s %s: %s (verdict %s)"):format(how.label, resource, text, result.summary.verdict)
        return true
    end }
end

--- File reputation: the report of a hash. An unknown hash is a success with
-- `summary.found = false`. Summary: `positives`, `total_scans`, `found`, `verdict`, `score`.
-- @function app:file_reputation
-- @tparam table params `hash`: MD5, SHA-1 or SHA-256
-- @treturn table the action result

--- URL reputation (the URL is refanged first). Summary: `positives`, `total_scans`,
-- `detections` (positives > 0), `found`, `verdict`, `score`.
-- @function app:url_reputation
-- @tparam table params `url`
-- @treturn table the action result

--- Domain reputation (a URL or an e-mail address is taken for its host). Summary:
-- `detected_urls`, `downloaded_samples`, `communicating_samples` (counts of the detected lists),
-- `alexa_rank` when the service ranks it, `found`, `verdict`, `score`.
-- @function app:domain_reputation
-- @tparam table params `domain`
-- @treturn table the action result

--- IP reputation (IPv4 or IPv6). Summary as for domains, without `alexa_rank`.
-- @function app:ip_reputation
-- @tparam table params `ip`
-- @treturn table the action result
ACTIONS.file_reputation = reputation("file")
ACTIONS.url_reputation = reputation("url")
ACTIONS.domain_reputation = reputation("domain")
ACTIONS.ip_reputation = reputation("ip")

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
    if f then
        f:close()
    end
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
ACTIONS.get_file = { { { "hash", input.hash } }, function(self, params, result)
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
    result.message = ("File %s is in the vault as %s (%s, %d bytes, digest checked)")
        :format(params.hash, id, kind, got.size)
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
        local facts, err = self:poll(params.report_type, params.scan_id)
        if not facts then
            return nil, err
        end
        return scan_result(result, facts, "Scan " .. params.scan_id, "finished")
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
        ("File %s (vault id %s)"):format(info.name, info.vault_id), result)
end }

--- Detonates a URL: looks it up, submits it only if unknown, polls the scan; on timeout
-- as `detonate_file`.
-- @function app:detonate_url
-- @tparam table params `url`
-- @treturn table the action result
ACTIONS.detonate_url = { { { "url", input.url } }, function(self, params, result)
    return self:detonate("url", params.url, params.url, "URL " .. params.url, result)
end }

for name, def in pairs(ACTIONS) do
    local fields, body = def[1], def[2]
    App[name] = function(self, given)
        return self:run(name, given or {}, fields, body)
    end
end

return actions
