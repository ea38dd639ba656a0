--- The protocol under both playbook layers: look-ups, relationships, submissions, checks and
-- waits, prefetching, comments, downloads and ping, over API v3 or v2, whichever the client
-- speaks (`c:options().api`). Every report comes back as facts (`vt.core.report`).
--
--    local b = backend.new(client, {relationships = {ip = backend.NETWORK}, related_limit = 10})
--    b:lookup(kind, value)           -> facts | false, pending (queued at VirusTotal) | nil, err
--    b:prefetch(kind, values)        -- many look-ups at once; `lookup` then answers from memory,
--                                       as many times as the value came
--    b:fetched(kind, value)          -> whether a prefetched answer waits for `lookup`
--    b:rescan(kind, value, facts)    -> pending | nil, err
--    b:submit(kind, what)            -> pending | nil, err   (a URL, or an upload source)
--    b:pending(kind, scan_id)        -> the pending record of a scan id as a user gives it
--    b:check(kind, pending [, value])  -> facts | false (not finished) | nil, err; with `value`,
--                                        a finished v3 analysis is followed by a fresh look-up
--    b:wait(kind, pending, value, tries) -> as `check`, polling up to `tries` times
--    b:comments(kind, id, n)         -> list of `{date, text}` | nil, err   (v3)
--    b:download(hash, dest)          -> `{path, size, md5, sha1, sha256}` | nil, err
--    b:ping(kind, value)             -> true | nil, err
--
-- Kinds are `"file"`, `"url"`, `"domain"` and `"ip"`. A pending record is `{analysis = id}` (v3),
-- `{scan_id = id}` (v2) or `{object = value}` (v3: a v2 scan id, a hash or a URL names an object
-- whose report exists); it is a plain JSON value, so a resume state can carry it.
--
-- With a `progress` function, each indicator's stage is told as it changes: `progress(event)`,
-- `event` a table `{kind, value, stage, text, ...}`; `text` is the stage with its figure, as a
-- person reads it. The stages:
--
-- - `"looked up"`: `lookup` found its report;
-- - `"not found"`: `lookup`: the service does not know it;
-- - `"uploading"`: `submit` of a file, a few times a second, with `done_bytes`, `total_bytes` and
--   `percent` (text `uploading 35%`);
-- - `"queued"`: a submission or re-analysis was accepted, or a look-up or a poll found it queued
--   (a poll adds `elapsed`: text `queued 12 s`);
-- - `"in-progress"`: a poll found the analysis running, with `elapsed` (text `in-progress 40 s`);
-- - `"done"`: a poll found it finished;
-- - `"failed"`: a look-up, submission or poll failed, with `reason`, the error's one line (text
--   `failed: <reason>`).
--
-- `value` is the indicator (a file's path or name for an upload; for polls, what was looked up
-- or submitted, else the scan id); `elapsed` counts whole seconds since the wait began. What the
-- function returns is ignored, except during an upload: `false` cancels it (the submission
-- fails with `Cancelled`).
-- @module vt.core.backend
local vt = require "vt"
local report = require "vt.core.report"

local backend = {}

--- The relationships a v3 domain or IP look-up reads to stand for v2's related lists.
backend.NETWORK = { "resolutions", "urls", "communicating_files", "downloaded_files", "referrer_files" }

-- The objects of a v3 collection iterator made by `make`, as a list; nil, err when making it or
-- a page fails with the core's error (both raise the error value).
local function drain(make)
    local items = {}
    local ok, raised = pcall(function()
        for obj in make() do
            items[#items + 1] = obj
        end
    end)
    if not ok then
        if type(raised) == "table" and raised.code then
            return nil, raised
        end
        error(raised, 0)
    end
    return items
end

--- The related objects of one relationship, `limit` at most (one page when `limit` <= 40).
-- @param client a `vt.client`
-- @tparam string kind
-- @tparam string id
-- @tparam string relationship
-- @tparam integer limit
-- @return a list of objects, or nil and the error
function backend.related(client, kind, id, relationship, limit)
    return drain(function() return client:related(kind, id, relationship, { limit = limit, max = limit }) end)
end

-- Each value once, in order, and how many times each came.
local function unique(values)
    local out, times = {}, {}
    for _, v in ipairs(values) do
        if not times[v] then
            out[#out + 1] = v
        end
        times[v] = (times[v] or 0) + 1
    end
    return out, times
end

local Backend = {}
Backend.__index = Backend

-- The name of what is submitted: a path, or a source's path or name.
local function subject_of(what)
    if type(what) == "string" then
        return what
    end
    local ok, name = pcall(function() return what.path or what.name end)
    return ok and name or tostring(what)
end

-- Tells the progress function one indicator's stage (see the module's head); returns what it
-- returned.
function Backend:tell(kind, value, stage, fields)
    if not self.progress then
        return nil
    end
    local event = { kind = kind, value = value, stage = stage }
    for k, v in pairs(fields or {}) do
        event[k] = v
    end
    local figure = event.percent and (" %d%%"):format(event.percent)
        or event.elapsed and (" %d s"):format(event.elapsed)
    event.text = stage .. (figure or "") .. (event.reason and ": " .. event.reason or "")
    return self.progress(event)
end

-- Tells how a look-up, submission or poll ended: `stage` when it succeeded, else failed.
function Backend:tell_outcome(kind, value, stage, result, err)
    if result then
        self:tell(kind, value, stage)
    elseif result == nil then
        if err.code == "NotFoundError" then
            self:tell(kind, value, "not found")
        else
            self:tell(kind, value, "failed", { reason = tostring(err) })
        end
    end
    return result, err
end

-- Keeps a prefetched answer for the `uses` look-ups of it to come.
function Backend:keep(kind, value, uses, raw, err)
    self.prefetched[kind .. "\0" .. value] = { raw, err, uses = uses }
end

--- Whether a prefetched answer (a report or an error) waits for `lookup(kind, value)`.
function Backend:fetched(kind, value)
    return self.prefetched[kind .. "\0" .. value] ~= nil
end

-- The answer to a look-up, from what the service said.
function Backend:answer(kind, value, raw, err)
    if not raw then
        if err.code == "NotAvailableYet" then
            -- queued at VirusTotal: the report by the resource itself answers once it is done
            return false, self:pending(kind, value)
        end
        return nil, err
    end
    return self:complete(kind, value, raw)
end

-- A look-up's answer, from what was prefetched or from the service (nothing told).
function Backend:find(kind, value)
    local key = kind .. "\0" .. value
    local pre = self.prefetched[key]
    if not pre then
        return self:answer(kind, value, self:fetch(kind, value))
    end
    pre.uses = pre.uses - 1
    if pre.uses == 0 then
        self.prefetched[key] = nil
    end
    -- made once for every look-up of the value (a v3 IP's relationships are read once)
    pre.answer = pre.answer or table.pack(self:answer(kind, value, pre[1], pre[2]))
    return table.unpack(pre.answer, 1, pre.answer.n)
end

function Backend:lookup(kind, value)
    local facts, err = self:find(kind, value)
    if facts == false then
        self.subjects[err] = value
        self:tell(kind, value, "queued")
    end
    return self:tell_outcome(kind, value, "looked up", facts, err)
end

-- A submission's or re-analysis' outcome, told; its pending record remembers what it is about
-- (for the progress events of its polls).
function Backend:track(kind, value, pending, err)
    if pending then
        self.subjects[pending] = value
    end
    return self:tell_outcome(kind, value, "queued", pending, err)
end

-- One poll: the facts, false (with the analysis' status) while it runs, or nil, err; told with
-- the seconds since `started` (nil: a single check).
function Backend:poll(kind, pending, value, started)
    local subject = self.subjects[pending] or value or pending.object or pending.scan_id or pending.analysis
    local target = pending.object or pending.scan_id
    local facts, more
    if target then
        facts, more = self:find(kind, target)
    else
        facts, more = self:analysis(kind, pending.analysis, value)
    end
    if facts == false then
        -- a v3 analysis says queued or in-progress; a report still being made is queued
        local status = type(more) == "string" and more or "queued"
        self:tell(kind, subject, status, { elapsed = started and os.time() - started })
        return false
    end
    return self:tell_outcome(kind, subject, "done", facts, more)
end

function Backend:check(kind, pending, value)
    return self:poll(kind, pending, value)
end

-- Polls, never sleeping after the last try.
function Backend:wait(kind, pending, value, tries)
    local started = os.time()
    for attempt = 1, tries do
        local facts, err = self:poll(kind, pending, value, started)
        if facts ~= false then
            return facts, err
        end
        if attempt < tries then
            self.sleep(self.interval)
        end
    end
    return false
end

--- Submits a URL or a file (a path, `{data =, name =}` or an open remote file); a file's upload
-- is told as it goes.
function Backend:submit(kind, what)
    local subject = subject_of(what)
    local progress
    if kind == "file" and self.progress then
        progress = function(done, total)
            return self:tell(kind, subject, "uploading", { done_bytes = done, total_bytes = total,
                percent = total > 0 and done * 100 // total or 100 })
        end
    end
    return self:track(kind, subject, self:send(kind, what, progress))
end

--- Asks for a fresh analysis of an object the service knows.
function Backend:rescan(kind, value, facts)
    return self:track(kind, value, self:reanalyse(kind, value, facts))
end

-- Any answer of the service, "not found" or "queued" included, shows the key works.
local ANSWERS = { NotFoundError = true, NotAvailableYet = true }

function Backend:ping(kind, value)
    local raw, err = self:fetch(kind, value)
    if raw or ANSWERS[err.code] then
        return true
    end
    return nil, err
end

-- v3 ----------------------------------------------------------------------------------------------

local V3 = setmetatable({}, { __index = Backend })
V3.__index = V3

function V3:fetch(kind, value)
    return self.client[kind](self.client, value)
end

-- The facts of an object, with the relationships this backend reads for its kind.
function V3:complete(kind, value, obj)
    local relationships = self.relationships[kind]
    if not relationships then
        return report.facts(kind, obj, value)
    end
    local related = {}
    for _, rel in ipairs(relationships) do
        local items, err = {}, nil
        if self.related_limit > 0 then
            items, err = backend.related(self.client, kind, obj.id, rel, self.related_limit)
        end
        if not items then
            -- a relationship the service does not have for this object is empty
            if err.code ~= "NotFoundError" then
                err.message = ("%s (while reading the %s of %s)"):format(err.message, rel, obj.id)
                return nil, err
            end
            items = {}
        end
        related[rel] = items
    end
    return report.facts(kind, { data = obj, relationships = related }, value)
end

--- Looks up many indicators of one kind at once (`c:batch`, `concurrency` in flight). The first
-- goes alone: a wrong key or a spent quota then costs one request.
function V3:prefetch(kind, values)
    local times
    values, times = unique(values)
    if self.concurrency < 2 or #values < 2 then
        return
    end
    self:keep(kind, values[1], times[values[1]], self:fetch(kind, values[1]))
    local first = self.prefetched[kind .. "\0" .. values[1]]
    if not first[1] and first[2].code ~= "NotFoundError" then
        return
    end
    local list = {}
    for i = 2, #values do
        list[i - 1] = { kind, values[i] }
    end
    for i, r in ipairs(self.client:batch(list, { concurrency = self.concurrency })) do
        self:keep(kind, values[i + 1], times[values[i + 1]], r.value, r.err)
    end
end

local function analysis_pending(d, err)
    if not d then
        return nil, err
    end
    return { analysis = d.id }
end

function V3:reanalyse(kind, _, facts)
    return analysis_pending(self.client:reanalyse(kind, facts.id))
end

function V3:send(kind, what, progress)
    if kind == "url" then
        return analysis_pending(self.client:scan_url(what))
    end
    return analysis_pending(self.client:scan_file(what, { progress = progress }))
end

function V3.pending(_, kind, scan_id)
    local digest = scan_id:match("^(%x+)%-%d+$")
    if digest and #digest == 64 then
        return { object = digest }
    elseif (kind == "file" and vt.hash_type(scan_id)) or (kind == "url" and scan_id:find("[.:/]")) then
        return { object = scan_id }
    end
    return { analysis = scan_id }
end

local function present(x)
    return x ~= nil and x ~= vt.null
end

-- A finished analysis: its own facts, or with `value` a fresh look-up of the object (which
-- carries every field an analysis lacks).
function V3:analysis(kind, id, value)
    local analysis, err = self.client:analysis(id)
    if not analysis then
        return nil, err
    end
    -- a URL analysis carries url_info (and sometimes the fetched content's file_info too)
    local meta = type(analysis.meta) == "table" and analysis.meta or {}
    local of_url = present(meta.url_info)
    if (kind == "url" and not of_url and present(meta.file_info)) or (kind == "file" and of_url) then
        local other = kind == "url" and "file" or "url"
        return nil, vt.error("InvalidArgument", ("scan %s is a %s scan, not a %s scan; ask for report_type %s")
            :format(id, other, kind, other))
    end
    -- the core checks an answer's shape, and an object may come without attributes
    local status = type(analysis.attributes) == "table" and analysis.attributes.status
    if type(status) ~= "string" then
        return nil, vt.error("InvalidResponse", ("analysis %s came without a status"):format(id))
    end
    if status ~= "completed" then
        return false, status
    end
    if value then
        return self:find(kind, value)
    end
    return report.facts(kind, analysis)
end

function V3:comments(kind, id, n)
    local list, err = drain(function() return self.client:comments(kind, id, { limit = n, max = n }) end)
    if not list then
        return nil, err
    end
    for i, c in ipairs(list) do
        local attributes = type(c.attributes) == "table" and c.attributes or {}
        list[i] = { date = report.format_date(attributes.date), text = attributes.text }
    end
    return list
end

function V3:download(hash, dest)
    return self.client:download(hash, dest)
end

-- v2 ----------------------------------------------------------------------------------------------

local V2 = setmetatable({}, { __index = Backend })
V2.__index = V2

-- Endpoint and parameter of each look-up; file and URL reports also take several resources
-- at once, joined by the separator.
local V2_LOOKUP = {
    file = { "file/report", "resource", "," }, url = { "url/report", "resource", "\n" },
    domain = { "domain/report", "domain" }, ip = { "ip-address/report", "ip" },
}

local function v2_params(kind, value)
    local how = V2_LOOKUP[kind]
    local params = { [how[2]] = value }
    if how[3] then
        params.allinfo = "1"
    end
    return how[1], params
end

function V2:fetch(kind, value)
    return self.client:v2(v2_params(kind, value))
end

function V2.complete(_, kind, value, body)
    return report.facts(kind, body, value)
end

local V2_CODES = { [0] = "NotFoundError", [-2] = "NotAvailableYet" }

-- One report of a batch answer, as `c:v2` answers a single one: the body when response_code is
-- 1, else the error its code means.
local function batch_item(body)
    if type(body) ~= "table" then
        return nil, vt.error("InvalidResponse", "the batch answer holds no report for this resource")
    end
    local code = math.tointeger(body.response_code)
    if code == 1 then
        return body
    end
    local message = type(body.verbose_msg) == "string" and body.verbose_msg or "no message"
    return nil, vt.error(V2_CODES[code] or "InvalidArgument", ("%s (response_code %s)"):format(message, code),
        { http = 200 })
end

--- Looks up file or URL reports `v2_batch` resources a request (v2 takes up to 4 a request on a
-- public key, 25 on a premium one), one request after another; stops at a request that fails
-- as a whole (a wrong key, the quota), leaving the rest to `lookup`.
function V2:prefetch(kind, values)
    local separator = V2_LOOKUP[kind][3]
    local times
    values, times = unique(values)
    if not separator or self.v2_batch < 2 then
        return
    end
    -- a last group of one is left to `lookup`
    for first = 1, #values - 1, self.v2_batch do
        local group = table.move(values, first, math.min(first + self.v2_batch - 1, #values), 1, {})
        local endpoint, params = v2_params(kind, table.concat(group, separator))
        local answers, err = self.client:v2(endpoint, params)
        for i, v in ipairs(group) do
            if answers then
                self:keep(kind, v, times[v], batch_item(answers[i]))
            else
                self:keep(kind, v, times[v], nil, err)
            end
        end
        if not answers then
            return
        end
    end
end

local function scan_pending(body, err)
    if not body then
        return nil, err
    end
    if type(body.scan_id) ~= "string" then
        return nil, vt.error("InvalidResponse", "the v2 answer has no scan_id")
    end
    return { scan_id = body.scan_id }
end

function V2:reanalyse(kind, value)
    if kind == "file" then
        return scan_pending(self.client:v2("file/rescan", { resource = value }))
    end
    return self:send(kind, value)
end

function V2:send(kind, what, progress)
    if kind == "url" then
        return scan_pending(self.client:v2("url/scan", { url = what }))
    end
    return scan_pending(self.client:v2_file_scan(what, { progress = progress }))
end

function V2.pending(_, _, scan_id)
    return { scan_id = scan_id }
end

function V2.comments()
    return nil, vt.error("Unsupported", "comments need API v3")
end

function V2:download(hash, dest)
    return self.client:v2_file_download(hash, dest)
end

-- -------------------------------------------------------------------------------------------------

--- Makes the backend of the client's protocol.
-- @param client a `vt.client`; its `api` option chooses the protocol
-- @tparam[opt] table opts `relationships` (kind -> list of v3 relationship names a look-up of
--   that kind reads, e.g. `{ip = backend.NETWORK}`; default none), `related_limit` (objects read
--   of each, default 10; 0 reads none), `concurrency` (v3 look-ups of a prefetch in flight at
--   once, default 1), `v2_batch` (v2 resources a prefetch request carries, default 1),
--   `interval` (seconds between two polls, default the client's `poll_interval`), `sleep`
--   (`function(seconds)`, the pause between polls; default the client's, which yields in
--   coroutine mode), `progress` (`function(event)`, told each indicator's stage: see above)
-- @return the backend
function backend.new(client, opts)
    opts = opts or {}
    local options = client:options()
    local self = {
        client = client, api = options.api, prefetched = {},
        relationships = opts.relationships or {}, related_limit = opts.related_limit or 10,
        concurrency = opts.concurrency or 1, v2_batch = opts.v2_batch or 1,
        interval = opts.interval or options.poll_interval,
        sleep = opts.sleep or function(seconds) client:sleep(seconds) end,
        progress = opts.progress,
        -- what each pending record (by identity) is about, for the progress events of its polls
        subjects = setmetatable({}, { __mode = "k" }),
    }
    return setmetatable(self, options.api == "v2" and V2 or V3)
end

return backend
