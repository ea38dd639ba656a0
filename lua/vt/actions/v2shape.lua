--- The Splunk app's data: a report's facts (`vt.core.report`) in the shape of the legacy v2
-- reports, so an action's data paths are the same whichever protocol the client speaks. A v2
-- body is that shape already and is kept as the service sent it; v3 facts are mapped:
--
-- * `scans` holds the engines that gave a verdict (malicious, suspicious, undetected,
--   harmless); `detected` is true for the malicious ones. `positives` and `total` are the
--   service's counts (`last_analysis_stats`: malicious; malicious + suspicious + undetected +
--   harmless).
-- * Dates are v2's `"YYYY-MM-DD HH:MM:SS"` (UTC); `scan_id` is `<id>-<epoch>` for objects (as in
--   v2) and the analysis id for analyses (the id `get_report` takes back).
-- * What v2 sends as JSON null is `vt.null`: an engine's `result` when it found nothing, a URL
--   report's `filescan_id`.
-- @module vt.actions.v2shape
local vt = require "vt"
local report = require "vt.core.report"

local shape = {}

local date = report.format_date

-- v2 said "clean site", "malicious site"; v3 says "clean", "malicious".
local function url_result(result)
    if result and not result:find("site$") then
        return result .. " site"
    end
    return result
end

local function scans(f, kind)
    local out = {}
    for _, e in ipairs(f.engines) do
        if kind == "file" then
            out[e.name] = { detected = e.detected, result = e.result or vt.null, update = e.update,
                version = e.version }
        else
            out[e.name] = { detected = e.detected, result = url_result(e.result) or vt.null }
        end
    end
    return out
end

-- What every file and URL report carries: the verdicts, the scan's date and id, the permalink.
local function scanned(f, kind, verbose_msg)
    return {
        scans = scans(f, kind), positives = f.positives, total = f.total, scan_date = date(f.date),
        scan_id = f.scan_id, permalink = f.permalink, resource = f.resource, response_code = 1,
        verbose_msg = verbose_msg,
    }
end

local function file(f)
    local out = scanned(f, "file", "Scan finished, information embedded")
    out.md5, out.sha1, out.sha256 = f.md5, f.sha1, f.sha256
    return out
end

local function url(f)
    local out = scanned(f, "url", "Scan finished, scan information embedded in this object")
    out.url, out.filescan_id = f.url, vt.null
    return out
end

-- The related lists of a domain or IP report: detected and undetected samples and URLs, and
-- the resolutions (`other` names the far end: `ip_address` for a domain, `hostname` for an IP).
local function related(f, out, other)
    for rel, name in pairs(report.SAMPLES) do
        local samples = (f.samples or {})[rel]
        if samples then
            local detected, undetected = {}, {}
            for _, s in ipairs(samples) do
                table.insert(s.positives > 0 and detected or undetected,
                    { date = date(s.date), positives = s.positives, total = s.total, sha256 = s.sha256 })
            end
            out["detected_" .. name], out["undetected_" .. name] = detected, undetected
        end
    end
    if f.urls then
        local detected, undetected = {}, {}
        for _, u in ipairs(f.urls) do
            if u.positives > 0 then
                detected[#detected + 1] = { url = u.url, positives = u.positives, total = u.total,
                    scan_date = date(u.date) }
            else
                -- v2 sent undetected URLs as [url, sha256, positives, total, scan_date] tuples
                undetected[#undetected + 1] = { u.url, u.sha256, u.positives, u.total, date(u.date) }
            end
        end
        out.detected_urls, out.undetected_urls = detected, undetected
    end
    if f.resolutions then
        out.resolutions = {}
        for i, r in ipairs(f.resolutions) do
            out.resolutions[i] = { last_resolved = date(r.date), [other] = other == "hostname" and r.host_name
                or r.ip_address }
        end
    end
    return out
end

local function domain(f)
    local out = { response_code = 1, verbose_msg = "Domain found in dataset", whois = f.whois,
        whois_timestamp = f.whois_date, categories = f.category_list, subdomains = f.subdomains }
    for vendor, category in pairs(f.categories or {}) do
        out[vendor .. " category"] = category
    end
    out["Alexa rank"] = f.alexa_rank
    return related(f, out, "ip_address")
end

local function ip(f)
    return related(f, {
        response_code = 1, verbose_msg = "IP address in dataset", asn = f.asn, as_owner = f.as_owner,
        country = f.country, continent = f.continent, network = f.network, whois = f.whois,
        whois_timestamp = f.whois_date,
    }, "hostname")
end

local BY_KIND = { file = file, url = url, domain = domain, ip = ip }

--- A report in the v2 shape.
-- @tparam table f the facts
-- @treturn table the v2 body (as sent, over v2), or the v3 answer mapped into that shape
function shape.report(f)
    if f.protocol == "v2" then
        return f.raw
    end
    return BY_KIND[f.kind](f)
end

return shape
