--- The SecOps rendering of a report's facts (`vt.core.report`): the enrichment fields a tool
-- writes onto an entity (without their `VT_` prefix), the engines table, and an IP's related
-- counts.
-- @module vt.soar.fields
local report = require "vt.core.report"

local fields = {}

local date = report.format_date

-- A list as one field (", "-joined), nil when empty.
local function joined(list)
    if not list or #list == 0 then
        return nil
    end
    local parts = {}
    for i, v in ipairs(list) do
        parts[i] = tostring(v)
    end
    return table.concat(parts, ", ")
end

local function risk(f, out)
    if f.positives then
        out["Positives"], out["Total"] = f.positives, f.total
        out["Risk Score"] = ("%d/%d"):format(f.positives, f.total)
    end
    out["Permalink"] = f.permalink
    return out
end

-- The fields every file and URL report gives.
local function scanned(f)
    local detecting = {}
    for _, e in ipairs(f.engines) do
        if e.detected then
            detecting[#detecting + 1] = e.name
        end
    end
    return risk(f, {
        ["Scan ID"] = f.scan_id, ["Resource"] = f.resource, ["Scan Date"] = date(f.date),
        ["First Submission"] = date(f.first_seen), ["Last Submission"] = date(f.last_seen),
        ["Detecting Engines"] = joined(detecting),
    })
end

local function file(f)
    local out = scanned(f)
    out["MD5"], out["SHA1"], out["SHA256"] = f.md5, f.sha1, f.sha256
    out["SSDeep"], out["Authentihash"], out["Imphash"] = f.ssdeep, f.authentihash, f.imphash
    out["File Type"], out["File Size"], out["Magic Literal"] = f.file_type, f.size, f.magic
    out["Tags"], out["Filename"] = joined(f.tags), joined(f.names)
    return out
end

local function url(f)
    local out = scanned(f)
    out["Scanned URL"] = f.url
    return out
end

-- The four related lists an IP's verdict comes from, with their names in the insight.
local IP_LISTS = {
    { "referrer_files", "Malicious Referrer Samples" }, { "downloaded_files", "Malicious Downloaded Samples" },
    { "communicating_files", "Malicious Communicating Samples" }, { "urls", "Malicious URLs" },
}

--- What an IP's verdict comes from: the detected items of each related list (`{name, count}`,
-- in the insight's order) and the highest detection count of any of them.
-- @tparam table f the IP's facts
-- @treturn table the counts
-- @treturn integer the highest positives (0 when none)
function fields.ip_counts(f)
    local counts, top = {}, 0
    for i, list in ipairs(IP_LISTS) do
        local items = list[1] == "urls" and f.urls or (f.samples or {})[list[1]]
        local n, highest = report.detected(items)
        counts[i] = { list[2], n or 0 }
        top = math.max(top, highest)
    end
    return counts, top
end

local function ip(f)
    local hosts = {}
    for _, r in ipairs(f.resolutions or {}) do
        hosts[#hosts + 1] = r.host_name
    end
    local _, top = fields.ip_counts(f)
    return { ["Country"] = f.country, ["Related Domains"] = joined(hosts), ["Max Related Positives"] = top,
        ["Permalink"] = f.permalink }
end

-- The category keys are the service's own ("BitDefender category", ...), which the original
-- integration misspelt and so left empty.
local function domain(f)
    local categories, info = f.categories or {}, f.domain_info or {}
    local alexa = info.Alexa or (f.alexa_rank and ("Alexa rank %d"):format(f.alexa_rank))
    return risk(f, {
        ["Categories"] = joined(f.category_list),
        ["Bit Defender Category"] = categories.BitDefender,
        ["Bit Defender Domain Info"] = info.BitDefender,
        ["Alexa Category"] = categories.Alexa,
        ["Alexa Domain Info"] = alexa,
        ["Force Point ThreatSeeker Category"] = categories["Forcepoint ThreatSeeker"],
        ["Detected URLs"] = (report.detected(f.urls)),
        ["Registrar"] = f.registrar,
        ["Creation Date"] = date(f.creation_date),
        ["Reputation"] = f.reputation,
    })
end

local BY_KIND = { file = file, url = url, ip = ip, domain = domain }

--- The enrichment fields of a report, with the `VT_` prefix.
-- @tparam table f the facts
-- @treturn table field name -> value
function fields.enrichment(f)
    local out = {}
    for k, v in pairs(BY_KIND[f.kind](f)) do
        out["VT_" .. k] = v
    end
    return out
end

--- The rows of an engines table (`Engine`, `Is Malicious`, `Result`, `Last Analysis`).
-- @tparam table f the facts
function fields.engine_rows(f)
    local rows = {}
    for i, e in ipairs(f.engines) do
        rows[i] = { e.name, e.detected, e.result or "", e.update or "" }
    end
    return rows
end

return fields
