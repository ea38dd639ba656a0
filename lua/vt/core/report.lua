--- The one normaliser under the playbook layers: a v3 object (or completed analysis) or a v2
-- report body in, the facts `vt.soar` and `vt.actions` render out.
--
--    local facts = report.facts("file", assert(c:file(h)), h)
--    print(facts.positives, facts.total, facts.scan_id, facts.permalink)
--
-- Facts hold plain Lua values (JSON null and empty strings become nil; counts and dates are
-- integers; dates are epoch seconds, UTC):
--
--    kind        "file", "url", "domain" or "ip"
--    protocol    "v3" or "v2": which one answered
--    raw         the answer as a JSON value (a layer's JSON result; `facts(kind, raw)` rebuilds
--                these facts from it): the v2 body, the v3 object or analysis, or for a v3
--                look-up that read relationships `{data = object, relationships = {...}}`
--    object      what `vt.verdict` judges: the v3 object or analysis, or the v2 body
--    id, resource  the object's id (sha256, URL id, domain, address), and what was asked for
--    positives, total  engines that say malicious, engines that gave a verdict (malicious,
--                suspicious, undetected, harmless); nil when there is no analysis
--    engines     the engines that gave a verdict, by name: `{name, detected, result, update,
--                version, detail}`
--    date, scan_id, permalink  the last analysis; v2's scan id, `<id>-<epoch>` for a v3 object
--                (the id v2 gave the same analysis), the analysis id for an analysis; the web page
--    files:      first_seen, last_seen, md5, sha1, sha256, ssdeep, authentihash, file_type,
--                imphash, size, magic, tags, names
--    URLs:       url
--    domains, IPs: country, asn, as_owner, continent, network, whois, whois_date, registrar,
--                creation_date, reputation, alexa_rank, categories (vendor -> category),
--                category_list (the distinct categories), domain_info (vendor -> text, v2)
--    related (nil when not read): resolutions `{date, host_name, ip_address}`, samples
--                (relationship -> list of `{sha256, positives, total, date}`), urls (list of
--                `{url, sha256, positives, total, date}`: a URL's id is its SHA-256), subdomains
-- @module vt.core.report
local vt = require "vt"

local report = {}

--- The web interface the permalinks point to.
report.GUI = "https://www.virustotal.com/gui/"

--- The sample relationships (v3 names) and the v2 lists that hold the same samples.
report.SAMPLES = {
    referrer_files = "referrer_samples", downloaded_files = "downloaded_samples",
    communicating_files = "communicating_samples",
}

-- The engine categories that are a verdict; v2 listed only these engines.
local VERDICTS = { malicious = true, suspicious = true, undetected = true, harmless = true }

local GUI_PATH = { file = "file/", url = "url/", domain = "domain/", ip = "ip-address/" }

--- Formats epoch seconds the way v2 dates read (`"2019-02-05 15:41:52"`, UTC).
-- @param epoch an integer (anything else gives nil)
-- @treturn string|nil
function report.format_date(epoch)
    if math.type(epoch) ~= "integer" then
        return nil
    end
    return os.date("!%Y-%m-%d %H:%M:%S", epoch)
end

-- Days from 1970-01-01 to a civil date (proleptic Gregorian), so v2's UTC dates need no timegm.
local function days_from_civil(y, m, d)
    y = m <= 2 and y - 1 or y
    local era = (y >= 0 and y or y - 399) // 400
    local yoe = y - era * 400
    local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
end

--- Parses a v2 date (`"2019-02-05 15:41:52"`, UTC) into epoch seconds.
-- @param s the date text (anything else gives nil)
-- @treturn integer|nil
function report.parse_date(s)
    if type(s) ~= "string" then
        return nil
    end
    local y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[ T](%d%d):(%d%d):(%d%d)")
    if not y then
        return nil
    end
    return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + tonumber(h) * 3600
        + tonumber(mi) * 60 + tonumber(sec)
end

-- A value as a fact: nil for JSON null and empty strings.
local function value(x)
    if x == vt.null or x == "" then
        return nil
    end
    return x
end

local function int(x)
    return math.tointeger(value(x))
end

local function list(x)
    return type(x) == "table" and x or {}
end

-- A list of strings, without the nulls.
local function strings(x)
    local out = {}
    for _, s in ipairs(list(x)) do
        if type(s) == "string" then
            out[#out + 1] = s
        end
    end
    return #out > 0 and out or nil
end

-- positives and total from v3 engine stats (nil, nil without them).
local function counts(stats)
    if type(stats) ~= "table" then
        return nil, nil
    end
    local total = 0
    for category in pairs(VERDICTS) do
        total = total + (int(stats[category]) or 0)
    end
    return int(stats.malicious) or 0, total
end

-- The engines that gave a verdict, by name; `convert(name, result)` makes one row or nil.
local function engines(results, convert)
    local names = {}
    for name in pairs(list(results)) do
        names[#names + 1] = name
    end
    table.sort(names)
    local rows = {}
    for _, name in ipairs(names) do
        rows[#rows + 1] = type(results[name]) == "table" and convert(name, results[name]) or nil
    end
    return rows
end

local function v3_engine(name, r)
    if not VERDICTS[r.category] then
        return nil
    end
    return { name = name, detected = r.category == "malicious", result = value(r.result),
        update = value(r.engine_update), version = value(r.engine_version) }
end

local function v2_engine(name, s)
    return { name = name, detected = s.detected == true, result = value(s.result), update = value(s.update),
        version = value(s.version), detail = value(s.detail) }
end

-- v3 ----------------------------------------------------------------------------------------------

-- A related file or URL as an entry of a related list (a URL's id is the SHA-256 of the URL).
local function related_entry(obj)
    local a = list(obj.attributes)
    local positives, total = counts(a.last_analysis_stats)
    return { sha256 = value(obj.id), url = value(a.url), positives = positives or 0, total = total or 0,
        date = int(a.last_analysis_date) }
end

local function related_entries(objects)
    local entries = {}
    for i, obj in ipairs(objects) do
        entries[i] = related_entry(obj)
    end
    return entries
end

-- The related objects a v3 look-up read, as facts (only the relationships that were read).
local function v3_related(f, related)
    for rel in pairs(report.SAMPLES) do
        if related[rel] then
            f.samples = f.samples or {}
            f.samples[rel] = related_entries(related[rel])
        end
    end
    if related.urls then
        f.urls = related_entries(related.urls)
    end
    if related.resolutions then
        f.resolutions = {}
        for i, obj in ipairs(related.resolutions) do
            local a = list(obj.attributes)
            f.resolutions[i] = { date = int(a.date), host_name = value(a.host_name), ip_address = value(a.ip_address) }
        end
    end
    if related.subdomains then
        f.subdomains = {}
        for i, obj in ipairs(related.subdomains) do
            f.subdomains[i] = obj.id
        end
    end
end

local function v3_place(f, a)
    f.country, f.asn, f.as_owner = value(a.country), int(a.asn), value(a.as_owner)
    f.continent, f.network = value(a.continent), value(a.network)
    f.whois, f.whois_date = value(a.whois), int(a.whois_date)
    f.registrar, f.creation_date, f.reputation = value(a.registrar), int(a.creation_date), int(a.reputation)
    local categories = type(value(a.categories)) == "table" and a.categories or nil
    if categories then
        f.categories, f.category_list = {}, {}
        local seen = {}
        for vendor, category in pairs(categories) do
            f.categories[vendor] = category
            if not seen[category] then
                seen[category] = true
                f.category_list[#f.category_list + 1] = category
            end
        end
        table.sort(f.category_list)
    end
    local alexa = list(value(a.popularity_ranks)).Alexa
    f.alexa_rank = type(alexa) == "table" and int(alexa.rank) or nil
end

-- Facts of a v3 file, URL, domain or IP object.
local function v3_object(kind, obj, resource)
    local a = list(obj.attributes)
    local f = { id = value(obj.id), object = obj }
    f.positives, f.total = counts(a.last_analysis_stats)
    f.engines = engines(a.last_analysis_results, v3_engine)
    f.date = int(a.last_analysis_date)
    f.scan_id = f.date and f.id and (f.id .. "-" .. f.date) or nil
    f.permalink = f.id and (report.GUI .. GUI_PATH[kind] .. f.id) or nil
    f.resource = resource or f.id
    if kind == "file" then
        f.first_seen, f.last_seen = int(a.first_submission_date), int(a.last_submission_date)
        f.md5, f.sha1, f.sha256 = value(a.md5), value(a.sha1), value(a.sha256) or f.id
        f.ssdeep, f.authentihash = value(a.ssdeep), value(a.authentihash)
        f.file_type, f.size, f.magic = value(a.type_description), int(a.size), value(a.magic)
        f.imphash = type(a.pe_info) == "table" and value(a.pe_info.imphash) or nil
        f.tags, f.names = strings(a.tags), strings(a.names)
    elseif kind == "url" then
        f.url = value(a.url)
        f.first_seen, f.last_seen = int(a.first_submission_date), int(a.last_submission_date)
    else
        v3_place(f, a)
    end
    return f
end

-- Facts of a completed v3 analysis (with its meta): what a submission's polling ends with.
local function v3_analysis(analysis)
    local a, meta = list(analysis.attributes), list(value(analysis.meta))
    local url_info, file_info = value(meta.url_info), value(meta.file_info)
    local f = { kind = url_info and "url" or "file", id = value(analysis.id), object = analysis }
    f.positives, f.total = counts(a.stats)
    f.engines = engines(a.results, v3_engine)
    f.date, f.scan_id = int(a.date), f.id
    if url_info then
        f.url = value(url_info.url)
        f.resource = f.url
        f.permalink = value(url_info.id) and (report.GUI .. "url/" .. url_info.id) or nil
    else
        local info = list(file_info)
        f.md5, f.sha1, f.sha256, f.size = value(info.md5), value(info.sha1), value(info.sha256), int(info.size)
        f.resource = f.sha256
        f.permalink = f.sha256 and (report.GUI .. "file/" .. f.sha256) or nil
    end
    return f
end

-- v2 ----------------------------------------------------------------------------------------------

-- A v2 sample list entry as a fact.
local function v2_sample(s)
    s = list(s)
    return { sha256 = value(s.sha256), positives = int(s.positives) or 0, total = int(s.total) or 0,
        date = report.parse_date(s.date) }
end

-- v2 lists detected and undetected items apart; facts keep them together, in that order.
local function both_lists(body, name)
    local detected, undetected = body["detected_" .. name], body["undetected_" .. name]
    if detected == nil and undetected == nil then
        return nil
    end
    local out = {}
    for _, part in ipairs { list(detected), list(undetected) } do
        for _, item in ipairs(part) do
            out[#out + 1] = item
        end
    end
    return out
end

local function v2_place(f, body)
    f.country, f.asn, f.as_owner = value(body.country), int(body.asn), value(body.as_owner)
    f.continent, f.network = value(body.continent), value(body.network)
    f.whois, f.whois_date = value(body.whois), int(body.whois_timestamp)
    f.alexa_rank = int(body["Alexa rank"])
    f.category_list = strings(body.categories)
    for key, v in pairs(body) do
        local vendor, what = tostring(key):match("^(.+) domain (info)$")
        vendor = vendor or tostring(key):match("^(.+) category$")
        local group = what and "domain_info" or vendor and "categories"
        if group and value(v) then
            f[group] = f[group] or {}
            f[group][vendor] = v
        end
    end
    for rel, name in pairs(report.SAMPLES) do
        local items = both_lists(body, name)
        if items then
            f.samples = f.samples or {}
            f.samples[rel] = {}
            for i, s in ipairs(items) do
                f.samples[rel][i] = v2_sample(s)
            end
        end
    end
    local urls = both_lists(body, "urls")
    if urls then
        f.urls = {}
        for i, u in ipairs(urls) do
            -- undetected URLs come as [url, sha256, positives, total, scan_date] tuples
            u = list(u)
            f.urls[i] = { url = value(u.url or u[1]), sha256 = value(u[2]), positives = int(u.positives or u[3]) or 0,
                total = int(u.total or u[4]) or 0, date = report.parse_date(u.scan_date or u[5]) }
        end
    end
    if type(body.resolutions) == "table" then
        f.resolutions = {}
        for i, r in ipairs(body.resolutions) do
            r = list(r)
            f.resolutions[i] = { date = report.parse_date(r.last_resolved), host_name = value(r.hostname),
                ip_address = value(r.ip_address) }
        end
    end
    f.subdomains = strings(body.subdomains)
end

-- Facts of a v2 report body (response_code 1).
local function v2_body(kind, body, resource)
    local f = { object = body, resource = value(body.resource) or resource }
    f.positives, f.total = int(body.positives), int(body.total)
    f.engines = engines(body.scans, v2_engine)
    f.date, f.scan_id = report.parse_date(body.scan_date), value(body.scan_id)
    if kind == "file" then
        local info = list(body.additional_info)
        f.md5, f.sha1, f.sha256 = value(body.md5), value(body.sha1), value(body.sha256)
        f.id = f.sha256
        f.first_seen, f.last_seen = report.parse_date(body.first_seen), report.parse_date(body.last_seen)
        f.ssdeep, f.authentihash = value(body.ssdeep), value(body.authentihash)
        f.file_type, f.size, f.magic = value(body.type), int(body.size), value(info.magic)
        f.imphash = value(info["pe-imphash"])
        f.tags, f.names = strings(body.tags), strings(body.submission_names)
    elseif kind == "url" then
        f.url = value(body.url)
        f.id = f.url
    else
        f.id = resource
        v2_place(f, body)
    end
    f.permalink = value(body.permalink) or (f.id and report.GUI .. GUI_PATH[kind] .. f.id)
    return f
end

-- -------------------------------------------------------------------------------------------------

--- The facts of an answer.
-- @tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"`: what was asked for (a v3
--   analysis tells its own kind)
-- @tparam table raw a v3 object, a completed v3 analysis with its `meta`, a v2 report body, or
--   `{data = object, relationships = {[name] = list of objects}}` (a v3 look-up with the related
--   objects it read)
-- @tparam[opt] string resource what was asked for (the hash, URL, domain or address)
-- @treturn table the facts (see the module's description)
function report.facts(kind, raw, resource)
    local f
    if raw.response_code ~= nil then
        f = v2_body(kind, raw, resource)
        f.protocol = "v2"
    elseif raw.type == "analysis" then
        f = v3_analysis(raw)
        kind, f.protocol = f.kind, "v3"
    else
        local obj = raw.data or raw
        f = v3_object(kind, obj, resource)
        f.protocol = "v3"
        if raw.relationships then
            v3_related(f, raw.relationships)
        end
    end
    f.kind, f.raw = kind, raw
    return f
end

--- The detected items of a related list (those with positives > 0), and the highest positives.
-- @tparam table|nil items a list of `{positives = n, ...}` (nil: not read)
-- @treturn integer|nil how many have positives > 0 (nil when the list was not read)
-- @treturn integer the highest positives (0 for none)
function report.detected(items)
    if not items then
        return nil, 0
    end
    local n, top = 0, 0
    for _, item in ipairs(items) do
        n = n + (item.positives > 0 and 1 or 0)
        top = math.max(top, item.positives)
    end
    return n, top
end

return report
