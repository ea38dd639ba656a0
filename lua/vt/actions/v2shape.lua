--- Maps v3 objects and analyses into the shape of the legacy v2 reports, so an action's data
-- paths are the same whichever protocol the client speaks.
--
-- Rules (documented in docs/actions.md):
-- * `scans` holds the engines that gave a verdict (categories malicious, suspicious,
--   undetected, harmless); engines that timed out, failed or do not support the type are left
--   out, as v2 left them out. `total` is the number of those engines, `positives` the number
--   whose category is malicious; `detected` is true for exactly those.
-- * Dates become v2's `"YYYY-MM-DD HH:MM:SS"` (UTC); `scan_id` is `<id>-<epoch>` for objects
--   (as v2) and the analysis id for analyses (the id `get_report` takes back).
-- * Values the service sent as JSON null stay `vt.null`, as in v2 bodies.
-- @module vt.actions.v2shape

local vt = require "vt"

local shape = {}

--- Where permalinks point: the VirusTotal web interface.
shape.GUI = "https://www.virustotal.com/gui"

--- Relationships fetched to fill a domain report (v3 relationship names).
shape.DOMAIN_RELATIONS = { "resolutions", "urls", "communicating_files", "downloaded_files",
   "referrer_files", "subdomains" }
--- Relationships fetched to fill an IP report.
shape.IP_RELATIONS = { "resolutions", "urls", "communicating_files", "downloaded_files",
   "referrer_files" }

local SCANNED = { malicious = true, suspicious = true, undetected = true, harmless = true }
local SAMPLE_LISTS = { communicating_files = "communicating_samples",
   downloaded_files = "downloaded_samples", referrer_files = "referrer_samples" }

-- nil for an absent or null value, else the value
local function value(x)
   if x == vt.null then
      return nil
   end
   return x
end

local function v2_date(epoch)
   epoch = value(epoch)
   if math.type(epoch) ~= "integer" then
      return nil
   end
   return os.date("!%Y-%m-%d %H:%M:%S", epoch)
end

-- v2 said "clean site", "malicious site"; v3 says "clean", "malicious".
local function url_result(result)
   if type(result) == "string" and not result:find("site$") then
      return result .. " site"
   end
   return result
end

-- Engine results to the v2 trio: scans, positives, total.
local function verdicts(report, results, kind)
   local scans, positives, total = {}, 0, 0
   for engine, r in pairs(value(results) or {}) do
      if type(r) == "table" and SCANNED[r.category] then
         local detected = r.category == "malicious"
         local scan = { detected = detected }
         if kind == "file" then
            scan.result = r.result
            scan.update = r.engine_update
            scan.version = r.engine_version
         else
            scan.result = url_result(r.result)
         end
         scans[engine] = scan
         total = total + 1
         if detected then
            positives = positives + 1
         end
      end
   end
   report.scans, report.positives, report.total = scans, positives, total
   return report
end

-- positives and total of a related object, from its stats (no per-engine results needed)
local function counts(attrs)
   local stats = value(attrs.last_analysis_stats) or {}
   local total = 0
   for category in pairs(SCANNED) do
      total = total + (value(stats[category]) or 0)
   end
   return value(stats.malicious) or 0, total
end

-- What every v2 report made from a v3 file or URL object carries: the verdicts,
-- the scan's date and id, the permalink, and the found answer.
local function object_report(obj, kind, verbose_msg)
   local a = obj.attributes
   local report = verdicts({}, a.last_analysis_results, kind)
   report.scan_date = v2_date(a.last_analysis_date)
   report.scan_id = report.scan_date and obj.id .. "-" .. a.last_analysis_date
   report.permalink = shape.GUI .. "/" .. kind .. "/" .. obj.id
   report.response_code = 1
   report.verbose_msg = verbose_msg
   return report, a
end

--- A v2 file report from a v3 file object.
-- @tparam table obj the file object (`c:file(h)`)
-- @tparam[opt] string resource what was asked for (v2 echoes it; default the sha256)
-- @treturn table
function shape.file(obj, resource)
   local report, a = object_report(obj, "file", "Scan finished, information embedded")
   report.md5, report.sha1, report.sha256 = value(a.md5), value(a.sha1), value(a.sha256) or obj.id
   report.resource = resource or obj.id
   return report
end

--- A v2 URL report from a v3 URL object.
-- @tparam table obj the URL object (`c:url(u)`)
-- @tparam[opt] string resource the URL asked for
-- @treturn table
function shape.url(obj, resource)
   local report, a = object_report(obj, "url", "Scan finished, scan information embedded in this object")
   report.url = value(a.url)
   report.resource = resource or report.url or obj.id
   return report
end

--- A v2 report from a completed v3 analysis (its results and `meta`).
-- @tparam table analysis `c:analysis(id)`, with `meta`
-- @tparam string kind `"file"` or `"url"`
-- @treturn table
function shape.analysis(analysis, kind)
   local a, meta = analysis.attributes, value(analysis.meta) or {}
   local report = verdicts({}, a.results, kind)
   report.scan_id = analysis.id
   report.scan_date = v2_date(a.date)
   report.response_code = 1
   if kind == "file" then
      local info = value(meta.file_info) or {}
      report.md5, report.sha1, report.sha256 = value(info.md5), value(info.sha1), value(info.sha256)
      report.resource = report.sha256
      report.permalink = report.sha256 and shape.GUI .. "/file/" .. report.sha256
      report.verbose_msg = "Scan finished, information embedded"
   else
      local info = value(meta.url_info) or {}
      report.url, report.resource = value(info.url), value(info.url)
      report.permalink = value(info.id) and shape.GUI .. "/url/" .. info.id
      report.verbose_msg = "Scan finished, scan information embedded in this object"
   end
   return report
end

-- The relationship lists a domain and an IP report share.
local function add_related(report, related, resolution_field)
   for rel, list in pairs(SAMPLE_LISTS) do
      local files = related[rel]
      if files then
         local detected, undetected = {}, {}
         for _, f in ipairs(files) do
            local positives, total = counts(f.attributes)
            local sample = { date = v2_date(f.attributes.last_analysis_date), positives = positives,
               total = total, sha256 = f.id }
            table.insert(positives > 0 and detected or undetected, sample)
         end
         report["detected_" .. list], report["undetected_" .. list] = detected, undetected
      end
   end
   if related.urls then
      local detected, undetected = {}, {}
      for _, u in ipairs(related.urls) do
         local positives, total = counts(u.attributes)
         local url, date = value(u.attributes.url), v2_date(u.attributes.last_analysis_date)
         if positives > 0 then
            detected[#detected + 1] = { url = url, positives = positives, total = total,
               scan_date = date }
         else
            -- v2 sent undetected URLs as [url, sha256, positives, total, scan_date] tuples
            undetected[#undetected + 1] = { url, u.id, positives, total, date }
         end
      end
      report.detected_urls, report.undetected_urls = detected, undetected
   end
   if related.resolutions then
      local resolutions = {}
      for _, r in ipairs(related.resolutions) do
         local a = r.attributes
         local other = resolution_field == "ip_address" and a.ip_address or a.host_name
         resolutions[#resolutions + 1] = { last_resolved = v2_date(a.date),
            [resolution_field] = value(other) }
      end
      report.resolutions = resolutions
   end
end

--- A v2 domain report from a v3 domain object and the related objects fetched for it.
-- @tparam table obj the domain object
-- @tparam table related relationship name → list of related objects (see DOMAIN_RELATIONS)
-- @treturn table
function shape.domain(obj, related)
   local a = obj.attributes
   local report = { response_code = 1, verbose_msg = "Domain found in dataset",
      whois = value(a.whois), whois_timestamp = value(a.whois_date) }
   local categories = value(a.categories)
   if categories then
      local seen, list = {}, {}
      for vendor, category in pairs(categories) do
         report[vendor .. " category"] = category
         if not seen[category] then
            seen[category] = true
            list[#list + 1] = category
         end
      end
      table.sort(list)
      report.categories = list
   end
   local alexa = value((value(a.popularity_ranks) or {}).Alexa)
   if alexa then
      report["Alexa rank"] = value(alexa.rank)
   end
   add_related(report, related, "ip_address")
   if related.subdomains then
      local names = {}
      for _, d in ipairs(related.subdomains) do
         names[#names + 1] = d.id
      end
      report.subdomains = names
   end
   return report
end

--- A v2 IP address report from a v3 ip_address object and its related objects.
-- @tparam table obj the ip_address object
-- @tparam table related relationship name → list of related objects (see IP_RELATIONS)
-- @treturn table
function shape.ip(obj, related)
   local a = obj.attributes
   local report = { response_code = 1, verbose_msg = "IP address in dataset",
      asn = value(a.asn), as_owner = value(a.as_owner), country = value(a.country),
      continent = value(a.continent), network = value(a.network), whois = value(a.whois),
      whois_timestamp = value(a.whois_date) }
   add_related(report, related, "hostname")
   return report
end

return shape
