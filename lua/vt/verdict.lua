--- Verdicts after Cortex XSOAR's VirusTotal (API v3) scoring, with the reasons in words.
--
--    local verdict = require "vt.verdict"
--    local res = verdict.verdict(assert(c:domain "example.com"), {
--        file = {malicious = 5}, domain = {popularity_rank = false},
--        preferred_vendors = {"Microsoft", "Kaspersky"},
--    })
--    print(res.verdict, res.score, table.concat(res.reasons, "; "))
--
-- It judges a v3 object (file, URL, domain, IP address, or a completed analysis with its `meta`)
-- as the client returns it, or a v2 report body. The rules, their order, their defaults and what
-- a v2 body can tell are in docs/verdict.md. The API (also `vt.verdict`, which is `M.verdict`):
--
--    M.verdict(obj [, policy])  -> {verdict = "malicious"|"suspicious"|"harmless"|"unknown",
--                                   score = 3|2|1|0, malicious, suspicious, total, reasons,
--                                   requests} | nil, err
--    M.parse_policy(policy)     -> the policy resolved per type (a table, a JSON text or nil in;
--                                  an already resolved one comes back as it is) | nil, err for a
--                                  JSON text that is no object; raises on an unknown key or type
--    M.explain(result)          -> "malicious (score 3): reason; reason"
--    M.DEFAULTS, M.SCORES, M.RELATIONSHIPS   XSOAR's defaults, the scores, the related lists
--
-- The playbook layers use it: `vt.soar` tools judge by a `policy` parameter, `vt.actions`
-- summaries carry the default policy's verdict and score.
-- @module vt.verdict
local vt = require "vt"
local backend = require "vt.core.backend"

local M = {}

-- nil and an InvalidArgument error.
local function fail(fmt, ...)
    return nil, vt.error("InvalidArgument", fmt:format(...))
end

--- XSOAR's defaults, used where a policy says nothing.
M.DEFAULTS = {
    malicious = 10, suspicious = 5, preferred_vendors = {}, preferred_threshold = 5,
    yara = 1, sigma = 5, ids = 5, popularity_rank = 10000,
    related = false, related_malicious = 3, related_suspicious = 2,
}

--- The score of each verdict (XSOAR's DBot scores).
M.SCORES = { malicious = 3, suspicious = 2, harmless = 1, unknown = 0 }

--- The relationships whose files the related-files rule counts, in XSOAR's order.
M.RELATIONSHIPS = { "communicating_files", "downloaded_files", "referrer_files" }

-- XSOAR reads the latest 20 related files of each relationship.
local RELATED_LOOKBACK = 20

-- Look-up failures that end the verdict with nil, err: the key itself is wrong.
local KEY_ERRORS = { WrongCredentialsError = true, AuthenticationRequiredError = true }

local KINDS = { "file", "url", "domain", "ip" }
local KIND_LABELS = { file = "file", url = "URL", domain = "domain", ip = "IP address" }
local OBJECT_KINDS = { file = "file", url = "url", domain = "domain", ip_address = "ip" }
local V2_RELATED_LISTS = {
    communicating_files = "detected_communicating_samples",
    downloaded_files = "detected_downloaded_samples",
    referrer_files = "detected_referrer_samples",
}

-- Policy keys and the kind of value each takes.
local RULE_KEYS = {
    malicious = "threshold", suspicious = "threshold", preferred_threshold = "threshold",
    related_malicious = "threshold", related_suspicious = "threshold",
    yara = "threshold or false", sigma = "threshold or false", ids = "threshold or false",
    popularity_rank = "threshold or false", related = "boolean", preferred_vendors = "names",
}

local Policy = { __name = "vt.verdict.policy" }

-- Whether a field is there and not JSON null (`vt.null`, which is not a table, number or string).
local function given(x)
    return x ~= nil and x ~= vt.null
end

-- A count from decoded JSON (Debian's lua-cjson gives floats): an integer, 0 when absent.
local function count(x)
    return type(x) == "number" and math.tointeger(x) or 0
end

local function describe(v)
    if type(v) == "string" then
        return ("%q"):format(v)
    elseif type(v) == "number" or type(v) == "boolean" then
        return tostring(v)
    end
    return type(v)
end

local function bad_value(name, what, v)
    error(("vt.verdict: policy key '%s' must be %s (got %s)"):format(name, what, describe(v)), 0)
end

-- The checked value of one rule key (integers stay integers).
local function check_rule(name, want, v)
    if want == "boolean" then
        if type(v) ~= "boolean" then
            bad_value(name, "true or false", v)
        end
        return v
    elseif want == "names" then
        if type(v) ~= "table" then
            bad_value(name, "a list of engine names", v)
        end
        local names = {}
        for k, engine in pairs(v) do
            if math.type(k) ~= "integer" or k < 1 or k > #v or type(engine) ~= "string" or engine == "" then
                bad_value(name, "a list of engine names", v)
            end
            names[k] = engine
        end
        return names
    elseif want == "threshold or false" and v == false then
        return false
    end
    local n = type(v) == "number" and math.tointeger(v)
    if not n or n < 1 then
        bad_value(name, want == "threshold" and "a whole number, 1 or more"
            or "a whole number, 1 or more, or false", v)
    end
    return n
end

-- The checked rule keys of one level of a policy (the top or one type).
local function check_level(t, prefix, allowed)
    local rules = {}
    for key, v in pairs(t) do
        local name = prefix .. tostring(key)
        local want = RULE_KEYS[key]
        if not want and not allowed[key] then
            error(("vt.verdict: unknown policy key '%s'"):format(name), 0)
        end
        if want and given(v) then
            rules[key] = check_rule(name, want, v)
        end
    end
    return rules
end

local TOP_LEVEL = { file = true, url = true, domain = true, ip = true, client = true }

--- Checks a policy and resolves it per type: each rule key of a type is the type's own value,
-- else the top level's, else XSOAR's default (`M.DEFAULTS`). JSON null counts as not given.
-- @tparam table|string|nil policy a table, a JSON text of one (as a SecOps parameter is), or nil
--   for the defaults; an already resolved policy is handed back as it is
-- @treturn[1] table the resolved policy: `{client =, file = {...}, url = {...}, domain = {...},
--   ip = {...}}`, each type with every rule key
-- @return[2] nil
-- @return[2] error `InvalidArgument` when the JSON text does not parse to an object
-- @raise on an unknown key or a value of the wrong type, naming the key (e.g. `file.malicious`)
function M.parse_policy(policy)
    if getmetatable(policy) == Policy then
        return policy
    end
    if type(policy) == "string" then
        local decoded, err = vt.decode(policy)
        if type(decoded) ~= "table" then
            return fail("the policy is not a JSON object: %s", err and err.message or "got " .. describe(decoded))
        end
        policy = decoded
    elseif policy == nil then
        policy = {}
    elseif type(policy) ~= "table" then
        error(("vt.verdict: the policy must be a table or a JSON text (got %s)"):format(type(policy)), 0)
    end
    local top = check_level(policy, "", TOP_LEVEL)
    local client = policy.client
    if not given(client) then
        client = nil
    elseif type(client) ~= "userdata" then
        bad_value("client", "a vt.client", client)
    end
    local resolved = { client = client }
    for _, kind in ipairs(KINDS) do
        local own = policy[kind]
        if not given(own) then
            own = {}
        elseif type(own) ~= "table" then
            bad_value(kind, "a table of rules", own)
        end
        own = check_level(own, kind .. ".", {})
        local rules = {}
        for key in pairs(RULE_KEYS) do
            local v = own[key]
            if v == nil then
                v = top[key]
            end
            if v == nil then
                v = M.DEFAULTS[key]
            end
            rules[key] = v
        end
        resolved[kind] = rules
    end
    return setmetatable(resolved, Policy)
end

local DEFAULT_POLICY = M.parse_policy()

-- ---------------------------------------------------------------- facts
-- What the rules need, read from a v3 object, an analysis or a v2 body: `kind`, `ranks`
-- (popularity ranks), `malicious`, `suspicious`, `total`, `says` (engine -> says malicious),
-- `unanalysed` (why there is no engine verdict), `yara`, `sigma`, `ids` (files), and `related`
-- (`{id =}` to look up, or `{lists =}` from a v2 body).

-- The engine counts; `total` is the engines that gave a verdict (malicious, suspicious,
-- undetected, harmless), as in the playbook layers.
local function set_counts(f, malicious, suspicious, total, says, missing)
    f.says = says
    if not malicious then
        f.unanalysed = missing
        return f
    end
    f.malicious, f.suspicious, f.total = malicious, suspicious, total
    if total == 0 then
        f.unanalysed = "no analysis yet: no engine has given a verdict (0 results)"
    end
    return f
end

-- engine -> whether it says malicious, from per-engine results (nil when there are none)
local function says(results, is_malicious)
    if type(results) ~= "table" then
        return nil
    end
    local out = {}
    for engine, r in pairs(results) do
        out[engine] = type(r) == "table" and is_malicious(r)
    end
    return out
end

local function v3_malicious(r)
    return r.category == "malicious"
end

local function v2_detected(r)
    return r.detected == true
end

-- The engine counts (from v3 stats) and per-engine results of a v3 object or analysis.
local function v3_engines(f, stats, results, missing)
    local malicious, suspicious, total
    if type(stats) == "table" then
        malicious, suspicious = count(stats.malicious), count(stats.suspicious)
        total = malicious + suspicious + count(stats.undetected) + count(stats.harmless)
    end
    return set_counts(f, malicious, suspicious, total, says(results, v3_malicious), missing)
end

local function v3_ranks(popularity)
    if type(popularity) ~= "table" or next(popularity) == nil then
        return nil
    end
    local ranks = {}
    for _, r in pairs(popularity) do
        ranks[#ranks + 1] = type(r) == "table" and count(r.rank) or 0
    end
    return ranks
end

local function high_and_critical(stats)
    return type(stats) == "table" and count(stats.high) + count(stats.critical) or nil
end

local function from_object(obj, kind)
    local a = obj.attributes
    if type(a) ~= "table" then
        return fail("a %s object without attributes", kind)
    end
    local f = { kind = kind }
    if kind == "file" then
        local yara = a.crowdsourced_yara_results
        f.yara = type(yara) == "table" and #yara or 0
        f.sigma = high_and_critical(a.sigma_analysis_stats)
        f.ids = high_and_critical(a.crowdsourced_ids_stats)
    else
        -- XSOAR ranks popularity, and counts related files, for URLs, domains and IPs only
        f.ranks = v3_ranks(a.popularity_ranks)
        f.related = type(obj.id) == "string" and { id = obj.id } or nil
    end
    return v3_engines(f, a.last_analysis_stats, a.last_analysis_results,
        "no analysis yet: the object has no last_analysis_stats")
end

local function from_analysis(obj)
    local a, meta = obj.attributes, type(obj.meta) == "table" and obj.meta or {}
    local kind = given(meta.url_info) and "url" or given(meta.file_info) and "file"
    if type(a) ~= "table" or not kind then
        return fail("an analysis needs its attributes and meta.url_info or meta.file_info to tell what it analysed")
    end
    local f = { kind = kind }
    if a.status ~= "completed" then
        f.unanalysed = "no analysis yet: the analysis is "
            .. (type(a.status) == "string" and a.status or "without a status")
        return f
    end
    return v3_engines(f, a.stats, a.results, "no analysis yet: the analysis has no stats")
end

-- A v2 file or URL report names its file by hash or its URL.
local function v2_scanned_kind(body)
    if given(body.sha256) or given(body.sha1) or given(body.md5) then
        return "file"
    elseif given(body.url) then
        return "url"
    end
end

-- A v2 domain report resolves to IP addresses, an IP report to host names.
local function v2_place_kind(body)
    local first = type(body.resolutions) == "table" and body.resolutions[1]
    if type(first) == "table" and first.hostname then
        return "ip"
    elseif type(first) == "table" and first.ip_address then
        return "domain"
    elseif given(body.asn) or given(body.as_owner) or given(body.network) then
        return "ip"
    elseif given(body.subdomains) or given(body.domain_siblings) or given(body["Alexa rank"]) then
        return "domain"
    end
end

local function from_v2(body)
    local code, message = body.response_code, body.verbose_msg
    message = type(message) == "string" and message ~= "" and (" (%s)"):format(message) or ""
    if code == 0 then
        return { unanalysed = "not in VirusTotal's dataset: response_code 0" .. message }
    elseif code ~= 1 then
        code = type(code) == "number" and math.tointeger(code) or code
        return { unanalysed = ("no report yet: response_code %s%s"):format(describe(code), message) }
    end
    if type(body.positives) == "number" or given(body.scan_id) then
        local kind = v2_scanned_kind(body)
        if not kind then
            return fail("a v2 scan report without a hash or a URL")
        end
        local f = { kind = kind }
        if type(body.positives) ~= "number" then
            f.unanalysed = "no report yet: the scan is queued" .. message
            return f
        end
        -- v2 knows detected or not: every detection counts as malicious, none as suspicious
        return set_counts(f, count(body.positives), 0, count(body.total), says(body.scans, v2_detected))
    end
    local kind = v2_place_kind(body)
    if not kind then
        return fail("a v2 report that is neither a file, URL, domain nor IP report")
    end
    local lists = {}
    for rel, field in pairs(V2_RELATED_LISTS) do
        lists[rel] = type(body[field]) == "table" and body[field] or {}
    end
    local alexa = body["Alexa rank"]
    return {
        kind = kind, ranks = type(alexa) == "number" and { count(alexa) } or nil,
        unanalysed = ("a v2 %s report has no engine verdicts of its own"):format(KIND_LABELS[kind]),
        related = { lists = lists },
    }
end

local function facts(obj)
    local t = obj.type
    if OBJECT_KINDS[t] then
        return from_object(obj, OBJECT_KINDS[t])
    elseif t == "analysis" then
        return from_analysis(obj)
    elseif obj.response_code ~= nil then
        return from_v2(obj)
    end
    return fail("not a VirusTotal object or v2 report (no type, no response_code)")
end

-- ---------------------------------------------------------------- rules

local function number(x)
    local n = math.tointeger(x)
    return n and tostring(n) or ("%.1f"):format(x)
end

-- The first crowdsourced rule that matches a file (XSOAR stops at the first), as a reason.
local function crowdsourced(f, p)
    if p.yara and f.yara and f.yara >= p.yara then
        return ("%d crowdsourced YARA %s (threshold %d)"):format(f.yara,
            f.yara == 1 and "rule matches" or "rules match", p.yara)
    elseif p.sigma and f.sigma and f.sigma >= p.sigma then
        return ("%d high or critical Sigma matches (threshold %d)"):format(f.sigma, p.sigma)
    elseif p.ids and f.ids and f.ids >= p.ids then
        return ("%d high or critical crowdsourced IDS alerts (threshold %d)"):format(f.ids, p.ids)
    end
end

-- XSOAR's rules on one indicator, related files aside. Returns the verdict (nil when there is
-- no engine verdict) and whether it is settled (popular, or malicious: nothing can change it).
-- `p` may be nil only for facts without a kind (a v2 body with no report).
local function judge(f, p, reasons)
    local function say(fmt, ...)
        reasons[#reasons + 1] = fmt:format(...)
    end
    if f.ranks and p.popularity_rank then
        local sum = 0
        for _, rank in ipairs(f.ranks) do
            sum = sum + rank
        end
        local average = sum / #f.ranks
        if average <= p.popularity_rank then
            say("popular %s: average rank %s ≤ %d", KIND_LABELS[f.kind], number(average), p.popularity_rank)
            return "harmless", true
        end
        say("not popular enough: average rank %s > %d", number(average), p.popularity_rank)
    end
    if f.unanalysed then
        say("%s", f.unanalysed)
        return nil
    end
    if #p.preferred_vendors > 0 then
        if not f.says then
            say("preferred vendors not checked: no per-engine results")
        else
            local listed, malicious = 0, 0
            for _, engine in ipairs(p.preferred_vendors) do
                if f.says[engine] ~= nil then
                    listed = listed + 1
                    malicious = malicious + (f.says[engine] and 1 or 0)
                end
            end
            say("%d of %d preferred vendors say malicious (threshold %d)", malicious, listed, p.preferred_threshold)
            if malicious >= p.preferred_threshold then
                return "malicious", true
            end
        end
    end
    local flagged = f.malicious + f.suspicious
    local base = "harmless"
    if f.malicious >= p.malicious then
        say("%d of %d engines say malicious (threshold %d)", f.malicious, f.total, p.malicious)
        return "malicious", true
    elseif flagged >= p.suspicious then
        say("%d of %d engines say malicious or suspicious (threshold %d)", flagged, f.total, p.suspicious)
        base = "suspicious"
    else
        say("below the thresholds: %d malicious (threshold %d), %d malicious or suspicious (threshold %d)"
            .. " of %d engines", f.malicious, p.malicious, flagged, p.suspicious, f.total)
    end
    local rule = f.kind == "file" and crowdsourced(f, p)
    if rule then
        say("%s", rule)
        if base == "suspicious" then
            say("suspicious both by engine count and by crowdsourced rules")
            return "malicious", true
        end
        return "suspicious"
    end
    return base
end

-- The related files of one relationship through the client: a list of facts, or nil, err.
local function look_up(client, kind, id, rel)
    local objects, err = backend.related(client, kind, id, rel, RELATED_LOOKBACK)
    if not objects then
        return nil, err
    end
    local files = {}
    for _, obj in ipairs(objects) do
        if type(obj) == "table" and obj.type == "file" then
            files[#files + 1] = from_object(obj, "file")
        end
    end
    return files
end

-- The samples a v2 domain or IP report lists with detections, as facts.
local function from_list(list)
    local files = {}
    for i = 1, math.min(#list, RELATED_LOOKBACK) do
        local sample = type(list[i]) == "table" and list[i] or {}
        files[i] = set_counts({ kind = "file" }, count(sample.positives), 0, count(sample.total))
    end
    return files
end

-- XSOAR's relationship factor: per relationship, the related files its file rules call
-- malicious and suspicious. Returns the verdict (nil when nothing could be counted and the
-- object had no verdict), or nil, err when a look-up failed for a wrong key.
local function weigh_related(f, base, policy, p, out)
    local client = policy.client
    if f.related.id and not client then
        error("vt.verdict: policy key 'client' is required when 'related' is true (v3 look-ups go through it)", 0)
    end
    local reasons = out.reasons
    local before = f.related.id and client:cache_stats().requests
    local verdict, flagged, counted = nil, false, false
    for _, rel in ipairs(M.RELATIONSHIPS) do
        local label = rel:gsub("_", " ")
        local files, err
        if f.related.id then
            files, err = look_up(client, f.kind, f.related.id, rel)
        else
            files = from_list(f.related.lists[rel])
        end
        if not files then
            if KEY_ERRORS[err.code] then
                return nil, err
            end
            reasons[#reasons + 1] = ("%s not counted: %s"):format(label, tostring(err))
        else
            counted = true
            local malicious, suspicious = 0, 0
            for _, file in ipairs(files) do
                local v = judge(file, policy.file, {})
                malicious = malicious + (v == "malicious" and 1 or 0)
                suspicious = suspicious + (v == "suspicious" and 1 or 0)
            end
            reasons[#reasons + 1] = ("%s (%d counted): %d malicious (threshold %d), %d malicious or suspicious"
                .. " (threshold %d)"):format(label, #files, malicious, p.related_malicious, malicious + suspicious,
                p.related_suspicious)
            if malicious >= p.related_malicious then
                verdict = "malicious"
                break
            elseif malicious + suspicious >= p.related_suspicious then
                if base == "suspicious" then
                    reasons[#reasons + 1] = "suspicious both by its own analysis and by related files"
                    verdict = "malicious"
                    break
                end
                flagged = true
            end
        end
    end
    if f.related.id then
        out.requests = client:cache_stats().requests - before
    end
    if verdict then
        return verdict
    elseif flagged or base == "suspicious" then
        return "suspicious"
    end
    return base or (counted and "harmless" or nil)
end

--- The verdict on one object after XSOAR's rules.
-- @tparam table obj a v3 file, URL, domain or IP object (`{type, id, attributes}`), a completed
--   v3 analysis with its `meta`, or a v2 report body
-- @tparam[opt] table|string policy overrides of the rules (see `parse_policy`)
-- @treturn[1] table `{verdict = "malicious"|"suspicious"|"harmless"|"unknown", score = 3|2|1|0,
--   malicious, suspicious, total, reasons = {...}, requests}`: the object's own engine counts,
--   the reasons in the order the rules fired (never empty), and the API requests the related-files
--   look-ups cost (0 without them)
-- @return[2] nil
-- @return[2] error `InvalidArgument` for something that is not an object or report (or a policy
--   JSON text that does not parse), or a related look-up's error when the API key is wrong
-- @raise when `obj` is not a table, or the policy has an unknown key or a wrong type
function M.verdict(obj, policy)
    if type(obj) ~= "table" then
        error(("vt.verdict: the object must be a table (got %s)"):format(type(obj)), 2)
    end
    local err
    if policy == nil then
        policy = DEFAULT_POLICY
    else
        policy, err = M.parse_policy(policy)
        if not policy then
            return nil, err
        end
    end
    local f
    f, err = facts(obj)
    if not f then
        return nil, err
    end
    local out = { malicious = f.malicious or 0, suspicious = f.suspicious or 0, total = f.total or 0,
        reasons = {}, requests = 0 }
    local p = policy[f.kind]
    local verdict, settled = judge(f, p, out.reasons)
    if not settled and f.related then
        if p.related then
            verdict, err = weigh_related(f, verdict, policy, p, out)
            if err then
                return nil, err
            end
        elseif verdict == nil then
            out.reasons[#out.reasons + 1] = "related files not counted (the policy's related is not true)"
        end
    end
    out.verdict = verdict or "unknown"
    out.score = M.SCORES[out.verdict]
    return out
end

--- One line for a verdict: `"malicious (score 3): reason; reason"`, for insights and summaries.
-- @tparam table result what `verdict` returned
-- @treturn string
function M.explain(result)
    return ("%s (score %d): %s"):format(result.verdict, result.score, table.concat(result.reasons, "; "))
end

return M
