--- The skeleton every playbook tool runs on: parameters, the run's items (entities or files),
-- the per-item loop, polling, writing to the host, and the result.
--
-- A tool definition (see vt.soar.tools) supplies only what differs:
--
--    name, seed, params = {name = parser}, default_threshold, entity_types = {TYPE = true},
--    kind                                   -- the backend kind of its look-ups and submissions
--    refetch                                -- a finished analysis is followed by a fresh look-up
--    clean(entity) -> value | nil, why[, status]   -- for entity tools, when more than
--                                              `entities.indicator(entity, kind)` decides
--    items(run) -> list | nil, message      -- for tools without entities (uploads)
--    start(run, item)                       -- first requests for one item
--    write(run, item)                       -- findings of a done item into the host
--    measure(facts) -> positives, total     -- what the threshold is held against (default the
--                                              facts' own)
--    suspicious(positives, threshold), rule, result_value(run)
--    empty, section_order, sections         -- the message
--    execute(ctx, params)                   -- instead of all the above (ping)
--
-- Items carry `name` (the entity's identifier or the file path), `type`, `value` (the cleaned
-- indicator), `status`, `reason`, and as they go `report` (the facts, vt.core.report),
-- `pending`, `section`, `suspicious`, `positives`, `total`, and with a policy `verdict`.
-- @module vt.soar.run
local vt = require "vt"
local verdict = require "vt.verdict"
local report = require "vt.core.report"
local entities = require "vt.soar.entities"

local run = {}

--- Item statuses, in the order messages list them after the tool's own sections.
run.STATUSES = { "done", "not_found", "queued", "forbidden", "quota", "failed", "invalid", "skipped" }

local STATE_VERSION = 2

-- What a threshold is held against, unless the tool says otherwise.
local function own_counts(facts)
    return facts.positives, facts.total
end

--- The message of a run stopped by a wrong API key (the original's words).
run.WRONG_KEY = "Invalid API key was provided. Access is forbidden."

-- parameters --------------------------------------------------------------------------------------

local function value_error(tool, name, what, value)
    return ("%s: parameter '%s' must be %s (got '%s')"):format(tool, name, what, tostring(value))
end

local function type_error(tool, name, what, value)
    -- level 5: the caller of the tool (type_error < parser < parse < execute, a tail call)
    error(("%s: parameter '%s' must be %s (got %s)"):format(tool, name, what, type(value)), 5)
end

-- Each parser takes (value, name, tool) and gives the parsed value, or nil and a message for a
-- wrong value; a wrong type raises.
local PARSERS = {}

function PARSERS.id(v, name, tool)
    if v ~= nil and type(v) ~= "string" and math.type(v) ~= "integer" then
        type_error(tool, name, "a string or an integer", v)
    end
    return v ~= nil and tostring(v) or nil
end

function PARSERS.string(v, name, tool)
    if v ~= nil and type(v) ~= "string" then
        type_error(tool, name, "a string", v)
    end
    if v == "" then
        return nil
    end
    return v
end

function PARSERS.boolean(v, name, tool)
    if v ~= nil and type(v) ~= "boolean" then
        type_error(tool, name, "a boolean", v)
    end
    return v
end

local function string_list(v, name, tool, separator)
    if type(v) == "string" then
        local list = {}
        for part in v:gmatch("[^" .. separator .. "]+") do
            part = part:match("^%s*(.-)%s*$")
            if part ~= "" then
                list[#list + 1] = part
            end
        end
        return list
    end
    if v ~= nil and type(v) ~= "table" then
        type_error(tool, name, "a string or a list of strings", v)
    end
    for i, s in ipairs(v or {}) do
        if type(s) ~= "string" then
            type_error(tool, name .. "[" .. i .. "]", "a string", s)
        end
    end
    return v
end

function PARSERS.groups(v, name, tool)
    return string_list(v, name, tool, ",")
end

function PARSERS.paths(v, name, tool)
    return string_list(v, name, tool, ",")
end

function PARSERS.targets(v, name, tool)
    if v ~= nil and type(v) ~= "table" then
        type_error(tool, name, "a list of {Identifier =, EntityType =}", v)
    end
    for i, t in ipairs(v or {}) do
        if type(t) ~= "table" or type(t.Identifier) ~= "string" or type(t.EntityType) ~= "string" then
            type_error(tool, ("%s[%d]"):format(name, i), "a table {Identifier = string, EntityType = string}", t)
        end
    end
    return v
end

--- Whole numbers, as numbers or numeric strings (the seed tools take strings); "" means unset.
function PARSERS.count(v, name, tool)
    if v == nil or v == "" then
        return nil
    end
    if type(v) ~= "string" and type(v) ~= "number" then
        type_error(tool, name, "a number or a numeric string", v)
    end
    local n = math.tointeger(tonumber(v))
    if not n or n < 0 then
        return nil, value_error(tool, name, "a whole number, 0 or more", v)
    end
    return n
end

--- A verdict policy: a table (checked by `vt.verdict.parse_policy`, which raises on a wrong key or
-- type), or a JSON text as a SecOps parameter carries one (whose faults fail the run instead).
function PARSERS.policy(v, name, tool)
    if v == nil or v == "" then
        return nil
    end
    if type(v) == "table" then
        return verdict.parse_policy(v)
    elseif type(v) ~= "string" then
        type_error(tool, name, "a table or a JSON text", v)
    end
    local ok, policy, err = pcall(verdict.parse_policy, v)
    if not (ok and policy) then
        return nil, ("%s: parameter '%s': %s"):format(tool, name, ok and err.message or policy)
    end
    return policy
end

local COMMON_PARAMS = {
    case_id = "id", alert_group_identifiers = "groups", target_entities = "targets", scope = "string",
    policy = "policy", suspicious_is_enough = "boolean",
}

local function parse(tool, params)
    if params ~= nil and type(params) ~= "table" then
        error(("%s: parameters must be a table (got %s)"):format(tool.name, type(params)), 3)
    end
    params = params or {}
    for k in pairs(params) do
        if not (COMMON_PARAMS[k] or tool.params[k]) then
            error(("%s: unknown parameter '%s'"):format(tool.name, tostring(k)), 3)
        end
    end
    local p = {}
    for _, set in ipairs { COMMON_PARAMS, tool.params } do
        for name, kind in pairs(set) do
            local value, err = PARSERS[kind](params[name], name, tool.name)
            if err then
                return nil, err
            end
            p[name] = value
        end
    end
    if p.target_entities and #p.target_entities == 0 then
        p.target_entities = nil
    end
    if not p.target_entities then
        local filter, err = entities.scope_filter(p.scope or "All entities")
        if not filter then
            return nil, err
        end
        p.filter = filter
    end
    if tool.name ~= "ping" and not p.case_id then
        return nil, tool.name .. ": parameter 'case_id' is required"
    end
    return p
end

-- the run -----------------------------------------------------------------------------------------

local Run = {}
Run.__index = Run

local function new_run(ctx, tool, p)
    local self = setmetatable({
        ctx = ctx, tool = tool, backend = ctx.backend, host = ctx.host, api = ctx.api, p = p,
        case_id = p.case_id, groups = p.alert_group_identifiers,
        threshold = p.threshold or tool.default_threshold, policy = p.policy,
        items = {}, secrets = {},
    }, Run)
    ctx.running = tool.name -- names the tool in the progress events of its items
    if self.policy and self.policy.client == nil then
        -- related files (policy key related) are looked up through the tools' client
        self.policy.client = ctx.client
    end
    for _, secret in ipairs { p.linux_password, p.share_password } do
        self.secrets[#self.secrets + 1] = secret
    end
    return self
end

--- A text with every secret of the run (passwords) blotted out.
function Run:redact(text)
    text = tostring(text)
    for _, secret in ipairs(self.secrets) do
        local at = 1
        repeat
            local i, j = text:find(secret, at, true)
            if i then
                text = text:sub(1, i - 1) .. "***" .. text:sub(j + 1)
                at = i + 3
            end
        until not i
    end
    return text
end

--- Marks an item done with its report, and judges it: by the policy's verdict when the run has
-- a policy (an earlier call's verdict, from a resume state, is kept), else by the tool's
-- threshold rule.
function Run:done(item, facts, section, reason, judged)
    item.status, item.report, item.section, item.pending = "done", facts, section, nil
    item.reason = reason or "report fetched"
    item.positives, item.total = (self.tool.measure or own_counts)(facts)
    if self.policy then
        local err
        item.verdict = judged
        if not judged then
            item.verdict, err = verdict.verdict(facts.object, self.policy)
        end
        if not item.verdict then
            return self:fail(item, err, "verdict")
        end
        local v = item.verdict.verdict
        item.suspicious = v == "malicious" or (self.p.suspicious_is_enough == true and v == "suspicious")
    elseif self.tool.suspicious then
        item.suspicious = self.tool.suspicious(item.positives or 0, self.threshold)
    end
end

--- Marks an item waiting for a submission or re-analysis to finish.
function Run.queue(_, item, pending, section, reason)
    item.status, item.pending, item.section = "queued", pending, section
    item.reason = ("%s (%s %s)"):format(reason, pending.analysis and "analysis" or "scan id",
        pending.analysis or pending.scan_id)
end

local CREDENTIALS = { WrongCredentialsError = true, AuthenticationRequiredError = true }

--- True when an error says the API key is wrong (v2 says so with HTTP 403).
function run.wrong_key(err, api)
    return CREDENTIALS[err.code] or (api == "v2" and err.http == 403)
end

local QUOTA = { QuotaExceededError = true, RateLimited = true, TooManyRequestsError = true }
local STATUS_OF = {
    NotFoundError = "not_found", ForbiddenError = "forbidden", InvalidArgument = "invalid",
    InvalidArgumentError = "invalid", BadRequestError = "invalid",
}

--- Records a failed request on an item. A wrong key stops the run (v2 says so with HTTP 403,
-- except on a rescan, where 403 means the key lacks private-API rights); running out of quota
-- stops further requests; other errors stay with their item.
-- @tparam table item
-- @tparam table err the client's error
-- @tparam[opt] string step what was tried ("rescan", "submit", ...), for the reason
function Run:fail(item, err, step)
    local text = self:redact(tostring(err))
    item.reason = step and (step .. ": " .. text) or text
    if run.wrong_key(err, self.api) and step ~= "rescan" then
        self.fatal = run.WRONG_KEY .. " (" .. text .. ")"
        item.status = "failed"
    elseif QUOTA[err.code] then
        self.quota = text
        item.status = "quota"
    else
        item.status = STATUS_OF[err.code] or (err.http == 403 and "forbidden") or "failed"
    end
end

--- Ends the run early with a message (a refused SFTP login, ...): items not yet tried fail.
function Run:abort(message)
    self.fatal = self:redact(message)
end

-- The run's items from the case's entities, or from the tool (files).
function Run:collect()
    local case_entities, err = self.host:entities(self.case_id, self.groups)
    if not case_entities then
        return nil, err
    end
    if self.tool.items then
        return self.tool.items(self)
    end
    local items = {}
    for _, e in ipairs(entities.select(case_entities, self.p.target_entities, self.p.filter, self.tool.entity_types)) do
        local item = { entity = e, name = e.Identifier, type = e.EntityType }
        local value, why, status
        if self.tool.clean then
            value, why, status = self.tool.clean(e)
        else
            value, why = entities.indicator(e, self.tool.kind)
        end
        if value then
            item.value = value
        else
            item.status, item.reason = status or "invalid", why
        end
        items[#items + 1] = item
    end
    return items
end

-- What an item is looked up by: its indicator, or a file's digest.
local function lookup_key(item)
    return item.sha256 or item.value
end

function Run:start_all()
    local kind, values = self.tool.kind, {}
    for _, item in ipairs(self.items) do
        if not item.status then values[#values + 1] = lookup_key(item) end
    end
    self.backend:prefetch(kind, values)
    for _, item in ipairs(self.items) do
        -- an item with a status already was cleaned out before any request (invalid, skipped)
        if not item.status then
            if self.fatal then
                item.status, item.reason = "failed", "not tried: the run stopped"
            elseif self.quota and not self.backend:fetched(kind, lookup_key(item)) then
                item.status = "quota"
                item.reason = "not tried: quota exhausted earlier in this run (" .. self.quota .. ")"
            else
                self.tool.start(self, item)
            end
        end
    end
end

-- Follows the queued items: once each (wait = false), or until done or poll_timeout.
function Run:settle(wait)
    local deadline, interval = os.time() + self.ctx.poll_timeout, self.ctx.poll_interval
    for _, item in ipairs(self.items) do
        if item.status == "queued" and not self.fatal and not self.quota and not self.timed_out then
            local facts, err
            local value = self.tool.refetch and item.value or nil
            if wait then
                local left = deadline - os.time()
                if left > 0 then
                    facts, err = self.backend:wait(self.tool.kind, item.pending, value, left // interval + 1)
                else
                    facts = false
                end
            else
                facts, err = self.backend:check(self.tool.kind, item.pending, value)
            end
            if facts then
                self:done(item, facts, item.section, "analysis finished")
            elseif facts == false then
                self.timed_out = wait
            elseif QUOTA[err.code] then
                self.quota = self:redact(tostring(err))
                item.reason = item.reason .. "; polling stopped: " .. self.quota
            else
                self:fail(item, err, "poll")
            end
        end
    end
end

-- Hands the findings of items that became final to the host, once each.
function Run:write_all()
    for _, item in ipairs(self.items) do
        if item.status ~= "queued" and not item.written then
            item.written = true
            if item.status == "done" then
                self.tool.write(self, item)
                self.host:add_json_result(self.case_id, {
                    tool = self.tool.name, Entity = item.name, EntityResult = item.report.raw,
                })
            end
        end
    end
end

-- result ------------------------------------------------------------------------------------------

local function outcome(item)
    local o = {
        entity = item.name, type = item.type, value = item.value, status = item.status, reason = item.reason,
        suspicious = item.suspicious, positives = item.positives, total = item.total,
        permalink = item.report and item.report.permalink,
    }
    if item.pending then
        o.analysis_id = item.pending.analysis or item.pending.scan_id or item.pending.object
    end
    if item.verdict then
        o.verdict, o.score, o.reasons = item.verdict.verdict, item.verdict.score, item.verdict.reasons
    end
    return o
end

--- The rule a run judges by, as a sentence.
function Run:rule()
    if self.policy then
        return ("Rule: an entity is suspicious when vt.verdict, under the policy given, calls it malicious%s "
            .. "(the threshold is not used)."):format(self.p.suspicious_is_enough and " or suspicious" or "")
    end
    return self.tool.rule and self.tool.rule:format(self.threshold)
end

-- The message: the tool's sections (done items by their section), then one per status; a section
-- lists identifiers, with the reason for anything not done.
function Run:message()
    local tool, parts = self.tool, {}
    if self.fatal then
        parts[1] = self.fatal
    end
    if #self.items == 0 then
        parts[#parts + 1] = tool.empty
    end
    local order, groups = {}, {}
    for _, key in ipairs(tool.section_order) do
        order[#order + 1] = key
    end
    for _, status in ipairs(run.STATUSES) do
        order[#order + 1] = status
    end
    for _, item in ipairs(self.items) do
        local key = item.status == "done" and item.section or item.status
        groups[key] = groups[key] or {}
        table.insert(groups[key], item)
    end
    for _, key in ipairs(order) do
        local list = groups[key]
        if list then
            groups[key] = nil
            local section = tool.sections[key]
            if type(section) == "function" then
                parts[#parts + 1] = section(list)
            else
                local lines = {}
                for i, item in ipairs(list) do
                    lines[i] = item.status == "done" and item.name or (item.name .. ": " .. item.reason)
                end
                parts[#parts + 1] = section .. "\n" .. table.concat(lines, "\n")
            end
        end
    end
    if self:rule() and #self.items > 0 then
        parts[#parts + 1] = self:rule()
    end
    return table.concat(parts, "\n\n")
end

-- The policy as a JSON value: its rules per type, without the client (a resume supplies its own).
local function portable(policy)
    if not policy then
        return nil
    end
    local rules = {}
    for _, kind in ipairs { "file", "url", "domain", "ip" } do
        rules[kind] = policy[kind]
    end
    return rules
end

function Run:state()
    local items = {}
    for i, item in ipairs(self.items) do
        items[i] = {
            name = item.name, type = item.type, value = item.value, status = item.status, reason = item.reason,
            section = item.section, pending = item.pending, written = item.written,
            raw = item.report and item.report.raw, verdict = item.verdict,
        }
    end
    return vt.encode {
        version = STATE_VERSION, tool = self.tool.name, api = self.api, case_id = self.case_id,
        alert_group_identifiers = self.groups, threshold = self.threshold,
        rescan_after_days = self.p.rescan_after_days, policy = portable(self.policy),
        suspicious_is_enough = self.p.suspicious_is_enough, items = items,
    }
end

function Run:result()
    local res = { json_result = {}, entities = {}, message = self:message() }
    local queued = false
    for i, item in ipairs(self.items) do
        res.entities[i] = outcome(item)
        queued = queued or item.status == "queued"
        if item.status == "done" then
            res.json_result[#res.json_result + 1] = { Entity = item.name, EntityResult = item.report.raw }
        end
    end
    if self.fatal then
        res.status, res.result_value = "Failed", false
    else
        res.status = not queued and "Completed" or self.timed_out and "TimedOut" or "InProgress"
        res.result_value = self.tool.result_value(self)
    end
    if queued then
        res.state = self:state()
    end
    res.rule = self:rule()
    return res
end

--- A failed run that made no request (a bad parameter, a missing case).
local function failed(message)
    return { status = "Failed", result_value = false, message = message, json_result = {}, entities = {} }
end

-- The second half of every run: requests, polling, writing, the result.
function Run:go(wait)
    self:start_all()
    self:settle(wait ~= false)
    if self.cleanup then
        self.cleanup()
    end
    self:write_all()
    return self:result()
end

-- Runs `fn` and adds to its result what it spent: the API requests the client sent, and the
-- look-ups its cache answered.
local function spending(ctx, fn)
    local before = ctx.client:cache_stats()
    local res = fn()
    local after = ctx.client:cache_stats()
    res.requests, res.cache_hits = after.requests - before.requests, after.hits - before.hits
    return res
end

--- Runs a tool.
-- @tparam table ctx `{client, backend, host, api, poll_interval, poll_timeout, comments}` (a run
--   sets `ctx.running`, its tool's name)
-- @tparam table tool the tool definition
-- @tparam table params the caller's parameters
function run.execute(ctx, tool, params)
    local p, err = parse(tool, params)
    return spending(ctx, function()
        if not p then
            return failed(err)
        end
        if tool.execute then
            return tool.execute(ctx, p)
        end
        local self = new_run(ctx, tool, p)
        self.items, err = self:collect()
        if not self.items then
            return failed(self:redact(err))
        end
        return self:go(p.wait)
    end)
end

-- The run a state describes, its done items judged again from their saved reports.
local function restore(ctx, tool, s)
    local ok, policy = pcall(verdict.parse_policy, s.policy)
    if not (ok and policy) then
        return nil, "resume: the state's policy is not valid"
    end
    local self = new_run(ctx, tool, { case_id = s.case_id, alert_group_identifiers = s.alert_group_identifiers,
        threshold = s.threshold, rescan_after_days = s.rescan_after_days,
        policy = s.policy ~= nil and policy or nil, suspicious_is_enough = s.suspicious_is_enough })
    local case_entities, err = self.host:entities(self.case_id, self.groups)
    if not case_entities then
        return nil, err
    end
    for i, saved in ipairs(s.items) do
        local item = {
            name = saved.name, type = saved.type, value = saved.value, status = saved.status, reason = saved.reason,
            section = saved.section, pending = saved.pending, written = saved.written,
        }
        if tool.entity_types then
            item.entity = entities.select(case_entities, { { Identifier = saved.name, EntityType = saved.type } },
                nil, tool.entity_types)[1]
        end
        if saved.raw then
            self:done(item, report.facts(tool.kind, saved.raw, item.value), item.section, item.reason, saved.verdict)
        end
        self.items[i] = item
    end
    return self
end

--- Goes on with a run that ended InProgress or TimedOut, from its `state`.
-- @tparam table ctx as for `execute`
-- @tparam table tools the tool definitions by name
-- @tparam string state the result's `state`
-- @tparam[opt] table opts `wait = false` polls each queued item once instead of waiting
function run.resume(ctx, tools, state, opts)
    if type(state) ~= "string" then
        error("resume: state must be a string (got " .. type(state) .. ")", 2)
    end
    opts = opts or {}
    return spending(ctx, function()
        local s = vt.decode(state)
        if type(s) ~= "table" or s.version ~= STATE_VERSION or not tools[s.tool] or type(s.items) ~= "table" then
            return failed("resume: not a state of these tools")
        end
        if s.api ~= ctx.api then
            return failed(("resume: the state was made with API %s, these tools speak %s"):format(s.api, ctx.api))
        end
        local self, err = restore(ctx, tools[s.tool], s)
        if not self then
            return failed(err)
        end
        return self:go(opts.wait)
    end)
end

return run
