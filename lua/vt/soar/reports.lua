--- Reports of both protocols in one shape, for the playbook tools.
--
-- A report is `{raw, positives, total, date, permalink, engines, fields}`: `raw` is the service's
-- own answer (the v2 body, or the v3 object) and becomes the JSON result's `EntityResult`;
-- `positives` is the number of engines that detected it (v2 `positives`, v3
-- `last_analysis_stats.malicious`); `total` the engines that gave a verdict (v2 `total`; v3
-- malicious + suspicious + undetected + harmless); `date` the last analysis (epoch seconds, UTC);
-- `engines` one row per engine, sorted by name; `fields` the enrichment, without its `VT_` prefix.
-- @module vt.soar.reports
local vt = require "vt"

local reports = {}

local GUI = "https://www.virustotal.com/gui/"

--- Formats epoch seconds the way v2 dates read ("2019-02-05 15:41:52", UTC).
function reports.format_date(epoch)
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

--- Parses a v2 date ("2019-02-05 15:41:52", UTC) into epoch seconds, or nil.
function reports.parse_date(s)
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

-- A value as an enrichment field: nil for JSON null and empty strings, lists joined by ", ".
local function field(value)
    if value == nil or value == vt.null or value == "" then
        return nil
    end
    if type(value) == "table" then
        local parts = {}
        for _, v in ipairs(value) do
            if v ~= vt.null then
                parts[#parts + 1] = tostring(v)
            end
        end
        return #parts > 0 and table.concat(parts, ", ") or nil
    end
    return value
end

local function attr(obj)
    return type(obj) == "table" and type(obj.attributes) == "table" and obj.attributes or {}
end

local function sorted_engines(scans, convert)
    local names = {}
    for name in pairs(type(scans) == "table" and scans or {}) do
        names[#names + 1] = name
    end
    table.sort(names)
    local rows = {}
    for i, name in ipairs(names) do
        rows[i] = convert(name, scans[name])
    end
    return rows
end

local function v2_engines(scans)
    return sorted_engines(scans, function(name, s)
        return { engine = name, detected = s.detected == true, result = field(s.result),
            update = field(s.update) }
    end)
end

local function v3_engines(results)
    return sorted_engines(results, function(name, r)
        return { engine = name, detected = r.category == "malicious", result = field(r.result),
            update = field(r.engine_update) }
    end)
end

local function detecting(engines)
    local names = {}
    for _, e in ipairs(engines) do
        if e.detected then
            names[#names + 1] = e.engine
        end
    end
    return field(names)
end

local function v3_counts(stats)
    stats = type(stats) == "table" and stats or {}
    local function n(k) return math.tointeger(stats[k]) or 0 end
    return n "malicious", n "malicious" + n "suspicious" + n "undetected" + n "harmless"
end

local function risk_fields(report, fields)
    fields["Positives"] = report.positives
    fields["Total"] = report.total
    fields["Risk Score"] = ("%d/%d"):format(report.positives, report.total)
    fields["Detecting Engines"] = detecting(report.engines)
    fields["Permalink"] = report.permalink
    return fields
end

-- v2 file and URL reports share their scan part.
local function v2_scanned(body)
    local report = {
        raw = body,
        positives = math.tointeger(body.positives) or 0,
        total = math.tointeger(body.total) or 0,
        date = reports.parse_date(body.scan_date),
        permalink = field(body.permalink),
        engines = v2_engines(body.scans),
    }
    report.fields = risk_fields(report, {
        ["Scan ID"] = field(body.scan_id),
        ["Resource"] = field(body.resource),
        ["Scan Date"] = field(body.scan_date),
    })
    return report
end

local function v3_scanned(obj, permalink, resource)
    local a = attr(obj)
    local positives, total = v3_counts(a.last_analysis_stats)
    local date = math.tointeger(a.last_analysis_date)
    local report = {
        raw = obj, positives = positives, total = total, date = date, permalink = permalink,
        engines = v3_engines(a.last_analysis_results),
    }
    report.fields = risk_fields(report, {
        -- v3 has no scan ids; this is the id v2 gave the same analysis (<id>-<epoch>)
        ["Scan ID"] = date and (obj.id .. "-" .. date) or nil,
        ["Resource"] = resource,
        ["Scan Date"] = reports.format_date(date),
        ["First Submission"] = reports.format_date(a.first_submission_date),
        ["Last Submission"] = reports.format_date(a.last_submission_date),
    })
    return report
end

--- A file report from a v2 `file/report` body.
function reports.v2_file(body)
    local report = v2_scanned(body)
    local f, info = report.fields, type(body.additional_info) == "table" and body.additional_info or {}
    f["First Submission"] = field(body.first_seen)
    f["Last Submission"] = field(body.last_seen)
    f["MD5"], f["SHA1"], f["SHA256"] = field(body.md5), field(body.sha1), field(body.sha256)
    f["SSDeep"] = field(body.ssdeep)
    f["Authentihash"] = field(body.authentihash)
    f["File Type"] = field(body.type)
    f["Imphash"] = field(info["pe-imphash"])
    f["File Size"] = field(body.size)
    f["Magic Literal"] = field(info.magic)
    f["Tags"] = field(body.tags)
    f["Filename"] = field(body.submission_names)
    return report
end

--- A file report from a v3 file object.
function reports.v3_file(obj, resource)
    local a = attr(obj)
    local report = v3_scanned(obj, GUI .. "file/" .. tostring(obj.id), resource)
    local f = report.fields
    f["MD5"], f["SHA1"], f["SHA256"] = field(a.md5), field(a.sha1), field(a.sha256)
    f["SSDeep"] = field(a.ssdeep)
    f["Authentihash"] = field(a.authentihash)
    f["File Type"] = field(a.type_description)
    f["Imphash"] = field(type(a.pe_info) == "table" and a.pe_info.imphash or nil)
    f["File Size"] = field(a.size)
    f["Magic Literal"] = field(a.magic)
    f["Tags"] = field(a.tags)
    f["Filename"] = field(a.names)
    return report
end

--- A URL report from a v2 `url/report` body.
function reports.v2_url(body)
    local report = v2_scanned(body)
    report.fields["Scanned URL"] = field(body.url)
    return report
end

--- A URL report from a v3 URL object.
function reports.v3_url(obj, resource)
    local report = v3_scanned(obj, GUI .. "url/" .. tostring(obj.id), resource)
    report.fields["Scanned URL"] = field(attr(obj).url)
    return report
end

-- The four v2 lists an IP report's verdict comes from, with their names in the insight.
local IP_SAMPLE_LISTS = {
    { "detected_referrer_samples", "Malicious Referrer Samples" },
    { "detected_downloaded_samples", "Malicious Downloaded Samples" },
    { "detected_communicating_samples", "Malicious Communicating Samples" },
    { "detected_urls", "Malicious URLs" },
}

--- Relationships a v3 IP report reads, in the order of `IP_SAMPLE_LISTS`.
reports.IP_RELATIONSHIPS = { "referrer_files", "downloaded_files", "communicating_files", "urls" }

--- Builds an IP report. `positives` is the highest detection count of any related sample or URL
-- (the IP's own count is not used: the verdict is about what it served and talked to); `counts`
-- the number of detected items of each kind, for the insight.
-- @tparam table p `{raw, country, resolutions = {{date =, hostname =}}, lists = {{positives...}...}}`
local function ip_report(ip, p)
    local report = {
        raw = p.raw, positives = 0, permalink = GUI .. "ip-address/" .. ip,
        engines = {}, counts = {}, resolutions = p.resolutions,
    }
    for i, list in ipairs(p.lists) do
        local detected = 0
        for _, positives in ipairs(list) do
            if positives > 0 then
                detected = detected + 1
            end
            report.positives = math.max(report.positives, positives)
        end
        report.counts[i] = { IP_SAMPLE_LISTS[i][2], detected }
    end
    local hosts = {}
    for i, r in ipairs(p.resolutions) do
        hosts[i] = r.hostname
    end
    report.fields = {
        ["Country"] = field(p.country),
        ["Related Domains"] = field(hosts),
        ["Max Related Positives"] = report.positives,
        ["Permalink"] = report.permalink,
    }
    return report
end

--- An IP report from a v2 `ip-address/report` body.
function reports.v2_ip(ip, body)
    local lists = {}
    for i, spec in ipairs(IP_SAMPLE_LISTS) do
        lists[i] = {}
        for _, item in ipairs(type(body[spec[1]]) == "table" and body[spec[1]] or {}) do
            lists[i][#lists[i] + 1] = math.tointeger(type(item) == "table" and item.positives) or 0
        end
    end
    local resolutions = {}
    for _, r in ipairs(type(body.resolutions) == "table" and body.resolutions or {}) do
        resolutions[#resolutions + 1] = { date = field(r.last_resolved), hostname = field(r.hostname) }
    end
    return ip_report(ip, { raw = body, country = body.country, lists = lists, resolutions = resolutions })
end

--- An IP report from a v3 IP object and its related objects.
-- @tparam table related `{[relationship] = list of objects}` for `IP_RELATIONSHIPS` and
--   `resolutions`
function reports.v3_ip(obj, related)
    local lists = {}
    for i, rel in ipairs(reports.IP_RELATIONSHIPS) do
        lists[i] = {}
        for _, item in ipairs(related[rel] or {}) do
            lists[i][#lists[i] + 1] = (v3_counts(attr(item).last_analysis_stats))
        end
    end
    local resolutions = {}
    for _, r in ipairs(related.resolutions or {}) do
        local a = attr(r)
        resolutions[#resolutions + 1] = { date = reports.format_date(a.date), hostname = field(a.host_name) }
    end
    local raw = { data = obj, relationships = related }
    return ip_report(obj.id, { raw = raw, country = attr(obj).country, lists = lists, resolutions = resolutions })
end

--- A domain report from a v2 `domain/report` body. The category keys are the service's own
-- ("BitDefender category", ...), which the original integration misspelt and so left empty.
function reports.v2_domain(domain, body)
    return {
        raw = body, permalink = GUI .. "domain/" .. domain,
        fields = {
            ["Categories"] = field(body.categories),
            ["Bit Defender Category"] = field(body["BitDefender category"]),
            ["Bit Defender Domain Info"] = field(body["BitDefender domain info"]),
            ["Alexa Category"] = field(body["Alexa category"]),
            ["Alexa Domain Info"] = field(body["Alexa domain info"]),
            ["Force Point ThreatSeeker Category"] = field(body["Forcepoint ThreatSeeker category"]),
            ["Detected URLs"] = type(body.detected_urls) == "table" and #body.detected_urls or nil,
            ["Permalink"] = GUI .. "domain/" .. domain,
        },
    }
end

--- A domain report from a v3 domain object. v3 has no "domain info" texts and no Alexa
-- category; the Alexa popularity rank stands in for the Alexa domain info.
function reports.v3_domain(obj)
    local a = attr(obj)
    local categories = type(a.categories) == "table" and a.categories or {}
    local values, seen = {}, {}
    for _, engine in ipairs(sorted_engines(categories, function(name, c) return { name, c } end)) do
        if not seen[engine[2]] then
            seen[engine[2]] = true
            values[#values + 1] = engine[2]
        end
    end
    local ranks = type(a.popularity_ranks) == "table" and a.popularity_ranks or {}
    local alexa = type(ranks.Alexa) == "table" and math.tointeger(ranks.Alexa.rank)
    local has_stats = type(a.last_analysis_stats) == "table"
    local positives, total
    if has_stats then
        positives, total = v3_counts(a.last_analysis_stats)
    end
    return {
        raw = obj, positives = positives, total = total, permalink = GUI .. "domain/" .. tostring(obj.id),
        fields = {
            ["Categories"] = field(values),
            ["Bit Defender Category"] = field(categories.BitDefender),
            ["Force Point ThreatSeeker Category"] = field(categories["Forcepoint ThreatSeeker"]),
            ["Alexa Domain Info"] = alexa and ("Alexa rank %d"):format(alexa) or nil,
            ["Registrar"] = field(a.registrar),
            ["Creation Date"] = reports.format_date(a.creation_date),
            ["Reputation"] = math.tointeger(a.reputation),
            ["Positives"] = positives,
            ["Total"] = total,
            ["Risk Score"] = has_stats and ("%d/%d"):format(positives, total) or nil,
            ["Permalink"] = GUI .. "domain/" .. tostring(obj.id),
        },
    }
end

--- A file report from a completed v3 analysis (an upload whose file object cannot be read).
function reports.v3_analysis(analysis)
    local a = attr(analysis)
    local info = type(analysis.meta) == "table" and type(analysis.meta.file_info) == "table"
        and analysis.meta.file_info or {}
    local obj = {
        id = info.sha256 or analysis.id,
        attributes = {
            last_analysis_stats = a.stats, last_analysis_results = a.results, last_analysis_date = a.date,
            md5 = info.md5, sha1 = info.sha1, sha256 = info.sha256, size = info.size,
        },
    }
    local report = reports.v3_file(obj)
    report.raw = analysis
    return report
end

--- Adds the `VT_` prefix to every field.
function reports.prefixed(fields)
    local out = {}
    for k, v in pairs(fields) do
        out["VT_" .. k] = v
    end
    return out
end

return reports
