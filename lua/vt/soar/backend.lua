--- The two protocols behind the playbook tools, with one interface.
--
-- Kinds: `"file"` (a hash), `"url"`, `"ip"`, `"domain"`, and `"upload"` (a submitted file).
-- A pending record says how to follow a submission: `{analysis = id}` (v3) or `{scan_id = id}`
-- (v2). Both are plain JSON values, so a resume state can carry them to another process.
--
--    b:lookup(kind, value)         -> report | false, pending (queued at VirusTotal) | nil, err
--    b:rescan(kind, value, report) -> pending | nil, err
--    b:submit(kind, what)          -> pending | nil, err   (a URL, or an upload source)
--    b:check(kind, value, pending) -> report | false (not yet) | nil, err   (one request)
--    b:wait(kind, value, pending, seconds) -> report | false (timed out) | nil, err
--    b:report(kind, value, raw)    -> report (rebuilt from a JSON result)
--    b:comments(kind, id, n)       -> list of {date, text} | nil, err
--    b:ping()                      -> true | nil, err
-- @module vt.soar.backend
local reports = require "vt.soar.reports"

local backend = {}

-- The URL the original integration's connectivity test looks up.
local PING_URL = "https://www.google.co.il"

-- What a v3 IP look-up reads besides the IP: the sample lists, then the resolutions.
local IP_RELATED = { "resolutions" }
for i, rel in ipairs(reports.IP_RELATIONSHIPS) do
    table.insert(IP_RELATED, i, rel)
end

local function not_found(message)
    return { code = "NotFoundError", message = message }
end

-------------------------------------------------------------------------------- v3

local V3 = {}
V3.__index = V3

local V3_LOOKUP = { file = "file", url = "url", ip = "ip", domain = "domain" }

function V3.report(_, kind, value, raw)
    if kind == "file" then
        return reports.v3_file(raw, value)
    elseif kind == "url" then
        return reports.v3_url(raw, value)
    elseif kind == "upload" then
        return reports.v3_analysis(raw)
    elseif kind == "domain" then
        return reports.v3_domain(raw)
    end
    return reports.v3_ip(raw.data, raw.relationships)
end

-- The related objects of an IP, `limit` of each; a relationship the service does not have for
-- this address counts as empty.
function V3:ip_related(ip)
    local related = {}
    for _, rel in ipairs(IP_RELATED) do
        related[rel] = {}
        if self.related_limit > 0 then
            local ok, err = pcall(function()
                local n = self.related_limit
                for item in self.client:related("ip", ip, rel, { limit = n, max = n }) do
                    table.insert(related[rel], item)
                end
            end)
            if not ok then
                if type(err) ~= "table" then
                    error(err, 0)
                elseif err.code ~= "NotFoundError" then
                    return nil, err
                end
            end
        end
    end
    return related
end

--- Looks up many indicators of one kind at once (`c:batch`, `concurrency` in flight), so that
-- the per-item `lookup`s that follow are answered from memory. The first goes alone: a wrong
-- key or a spent quota then costs one request, and the run stops as it would one by one.
function V3:prefetch(kind, values)
    if not V3_LOOKUP[kind] or self.concurrency < 2 or #values < 2 then
        return
    end
    local list = {}
    for i, v in ipairs(values) do
        list[i] = { V3_LOOKUP[kind], v }
    end
    local first = self.client:batch({ table.remove(list, 1) })[1]
    self.fetched[kind .. "\0" .. values[1]] = first
    if not first.ok and first.err.code ~= "NotFoundError" then
        return
    end
    for i, r in ipairs(self.client:batch(list, { concurrency = self.concurrency })) do
        self.fetched[kind .. "\0" .. values[i + 1]] = r
    end
end

--- Whether a prefetched look-up of this indicator succeeded (it costs no more quota).
function V3:has_fetched(kind, value)
    local r = self.fetched[kind .. "\0" .. value]
    return r ~= nil and r.ok
end

function V3:lookup(kind, value)
    local key = kind .. "\0" .. value
    local pre = self.fetched[key]
    self.fetched[key] = nil
    local obj, err
    if pre then
        obj, err = pre.value, pre.err
    else
        obj, err = self.client[V3_LOOKUP[kind]](self.client, value)
    end
    if not obj then
        return nil, err
    end
    if kind ~= "ip" then
        return self:report(kind, value, obj)
    end
    local related, rerr = self:ip_related(value)
    if not related then
        return nil, rerr
    end
    return reports.v3_ip(obj, related)
end

local function descriptor(d, err)
    if not d then
        return nil, err
    end
    return { analysis = d.id }
end

function V3:rescan(kind, _, report)
    return descriptor(self.client:reanalyse(kind, report.raw.id))
end

function V3:submit(kind, what)
    if kind == "url" then
        return descriptor(self.client:scan_url(what))
    end
    return descriptor(self.client:scan_file(what))
end

-- A completed analysis becomes a report: an upload's from the analysis itself (no request), a
-- hash's or URL's from a fresh look-up of the object, which carries every enrichment field.
function V3:finish(kind, value, analysis)
    if kind == "upload" then
        return reports.v3_analysis(analysis)
    end
    return self:lookup(kind, value)
end

function V3:check(kind, value, pending)
    local analysis, err = self.client:analysis(pending.analysis)
    if not analysis then
        return nil, err
    end
    if analysis.attributes.status ~= "completed" then
        return false
    end
    return self:finish(kind, value, analysis)
end

function V3:wait(kind, value, pending, seconds)
    local done, err = self.client:wait(pending.analysis, { timeout = seconds, interval = self.poll_interval })
    if not done then
        if err.code == "Timeout" then
            return false
        end
        return nil, err
    end
    -- c:wait answers with the whole body ({data = analysis}); c:analysis with the object
    return self:finish(kind, value, done.data or done)
end

function V3:comments(kind, id, n)
    local list = {}
    local ok, err = pcall(function()
        for c in self.client:comments(kind, id, { limit = n, max = n }) do
            list[#list + 1] = { date = reports.format_date(c.attributes.date), text = c.attributes.text }
        end
    end)
    if not ok then
        if type(err) ~= "table" then
            error(err, 0)
        end
        return nil, err
    end
    return list
end

function V3:ping()
    local obj, err = self.client:url(PING_URL)
    if obj or err.code == "NotFoundError" then
        return true
    end
    return nil, err
end

-------------------------------------------------------------------------------- v2

local V2 = {}
V2.__index = V2

local V2_REPORT = { file = "file/report", upload = "file/report", url = "url/report" }

function V2.report(_, kind, value, raw)
    if kind == "file" or kind == "upload" then
        return reports.v2_file(raw)
    elseif kind == "url" then
        return reports.v2_url(raw)
    elseif kind == "domain" then
        return reports.v2_domain(value, raw)
    end
    return reports.v2_ip(value, raw)
end

function V2:lookup(kind, value)
    local body, err
    if kind == "ip" then
        body, err = self.client:v2("ip-address/report", { ip = value })
    elseif kind == "domain" then
        body, err = self.client:v2("domain/report", { domain = value })
    else
        body, err = self.client:v2(V2_REPORT[kind], { resource = value, allinfo = "1" })
        if not body and err.code == "NotAvailableYet" then
            -- queued at the service: a report by the resource itself answers once it is done
            return false, { scan_id = value }
        end
    end
    if not body then
        return nil, err
    end
    return self:report(kind, value, body)
end

local function scan_id(body, err)
    if not body then
        return nil, err
    end
    if type(body.scan_id) ~= "string" then
        return nil, not_found(body.verbose_msg or "the service gave no scan id")
    end
    return { scan_id = body.scan_id }
end

function V2:rescan(kind, value)
    if kind == "file" then
        return scan_id(self.client:v2("file/rescan", { resource = value }))
    end
    return self:submit(kind, value)
end

function V2:submit(kind, what)
    if kind == "url" then
        return scan_id(self.client:v2("url/scan", { url = what }))
    end
    return scan_id(self.client:v2_file_scan(what))
end

function V2:check(kind, value, pending)
    local body, err = self.client:v2(V2_REPORT[kind], { resource = pending.scan_id, allinfo = "1" })
    if not body then
        if err.code == "NotAvailableYet" then
            return false
        end
        return nil, err
    end
    return self:report(kind, value, body)
end

function V2:wait(kind, value, pending, seconds)
    local deadline = os.time() + seconds
    while true do
        local report, err = self:check(kind, value, pending)
        if report ~= false then
            return report, err
        end
        if os.time() + self.poll_interval > deadline then
            return false
        end
        self.sleep(self.poll_interval)
    end
end

-- v2 answers one resource per request: its look-ups stay one after another.
function V2.prefetch() end

function V2.has_fetched()
    return false
end

function V2.comments()
    return nil, { code = "Unsupported", message = "comments need API v3" }
end

function V2:ping()
    local body, err = self.client:v2("url/report", { resource = PING_URL })
    if body or err.code == "NotFoundError" then
        return true
    end
    return nil, err
end

--------------------------------------------------------------------------------

--- Makes the backend of a protocol.
-- @tparam table opts `client`, `api` ("v3" or "v2"), `poll_interval` (seconds),
--   `related_limit` (related objects of each kind an IP look-up reads, v3), `concurrency`
--   (look-ups of a run in flight at once, v3; default 1), `sleep` (a
--   `function(seconds)` for the pause between v2 polls; optional)
function backend.new(opts)
    local self = {
        client = opts.client, api = opts.api, poll_interval = opts.poll_interval,
        related_limit = opts.related_limit, concurrency = opts.concurrency or 1, fetched = {},
        -- the pause between v2 polls (v2 has no analyses for c:wait to follow); the
        -- client's own sleep yields in coroutine mode
        sleep = opts.sleep or function(seconds) opts.client:sleep(seconds) end,
    }
    return setmetatable(self, opts.api == "v2" and V2 or V3)
end

return backend
