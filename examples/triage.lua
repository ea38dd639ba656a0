-- A phishing-triage playbook over a SecOps-style case: check the connection, then ask
-- VirusTotal about the case's hashes, URLs, IP addresses and domains, judge each by a verdict
-- policy (vt.verdict: Cortex XSOAR's rules with their defaults), and print one line per entity:
-- its verdict and the first reason for it, beside what the seed's threshold rule would say
-- where one applies; then what the run spent (API requests sent, look-ups the client's cache
-- answered). The findings (VT_* fields, insights, tables, links) go into the case, which is
-- written to a JSON file at the end. While the tools run, each entity's stage shows on one
-- updating line when stdout is a terminal (plain lines when it is not).
--
--   VT_API_KEY=... lua5.4 examples/triage.lua [case.json] [case id]
--
-- Environment: VT_API_KEY (required), VT_BASE_URL (another service root, such as the bundled
-- fake; tools/demo.sh sets both), VT_API_VERSION ("v3", the default, or "v2": the client's api,
-- which the tools speak),
-- VT_TRIAGE_OUT (where the enriched case goes; default $TMPDIR/phishing-triaged.json).
-- Run from the repository root after building (cmake -S . -B build && cmake --build build).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local vt = require "vt"
local soar = require "vt.soar"
local progress = require "vt.progress"

-- The seed's rule, shown beside the verdicts: how many engines make a hash or a URL
-- suspicious, and how many engines a sample related to an IP needs (strictly more) for the IP
-- to be suspicious. Domains have none (the seed only enriches them).
local THRESHOLD = { hash = 5, url = 3, ip = 20 }
-- The verdict policy every tool judges by: XSOAR's defaults (10 engines malicious, 5 malicious
-- or suspicious, popularity ranks); related files are not looked up.
local POLICY = {}

local case_file = arg[1] or "examples/cases/phishing.json"
local case_id = arg[2] or "4711"
local api = os.getenv("VT_API_VERSION") or "v3"
local out_file = os.getenv("VT_TRIAGE_OUT") or ((os.getenv("TMPDIR") or "/tmp") .. "/phishing-triaged.json")

local function fail(...)
    io.stderr:write(...)
    io.stderr:write("\n")
    os.exit(1)
end

if not os.getenv("VT_API_KEY") then
    fail("VT_API_KEY is not set (tools/demo.sh runs this playbook against the bundled fake)")
end

local host, err = soar.memory_host(case_file)
if not host then
    fail("cannot read ", case_file, ": ", err)
end
local case = host:case(case_id) or fail("no case ", case_id, " in ", case_file)

local client = vt.client { base_url = os.getenv("VT_BASE_URL"), api = api }
local line = progress.line(io.stdout)
-- related_limit 40: one page of each related list per IP (6 requests an address in v3)
local tools = soar.new { client = client, host = host, poll_interval = 2, poll_timeout = 300, related_limit = 40,
    progress = function(event) line:show(progress.describe(event)) end }

local ping = tools.ping {}
if ping.status ~= "Completed" then
    fail("VirusTotal: ", ping.message)
end
-- what the run spent: API requests sent, look-ups the client's cache answered, per tool
local requests, cache_hits, spent = ping.requests, ping.cache_hits, { ("ping %d"):format(ping.requests) }

-- Domains come from host names, domains and mail addresses; the URLs are judged by scan_url.
local domain_targets, groups = {}, {}
for name in pairs(case.alert_groups) do
    groups[#groups + 1] = name
end
table.sort(groups)
for _, name in ipairs(groups) do
    for _, e in ipairs(case.alert_groups[name].entities) do
        if e.EntityType == "HOSTNAME" or e.EntityType == "DOMAIN" or e.EntityType == "USERUNIQNAME" then
            domain_targets[#domain_targets + 1] = { Identifier = e.Identifier, EntityType = e.EntityType }
        end
    end
end

local runs = {
    { "hash", tools.scan_hash { case_id = case_id, threshold = THRESHOLD.hash, policy = POLICY } },
    { "url", tools.scan_url { case_id = case_id, threshold = THRESHOLD.url, policy = POLICY } },
    { "ip", tools.scan_ip { case_id = case_id, threshold = THRESHOLD.ip, policy = POLICY } },
    { "domain", tools.get_domain_report { case_id = case_id, target_entities = domain_targets, policy = POLICY } },
}
line:clear()

local function detections(kind, o)
    if not o.positives then
        return "-"
    elseif kind == "ip" then
        return ("max %d"):format(o.positives) -- the most-detected related sample
    end
    return ("%d/%d"):format(o.positives, o.total)
end

-- What the seed's threshold says of a done entity: "suspicious", "-", or "" where no rule applies.
local function seed_rule(kind, o)
    local threshold = THRESHOLD[kind]
    if not threshold or o.status ~= "done" or not o.positives then
        return ""
    end
    local over = kind == "ip" and o.positives > threshold or kind ~= "ip" and o.positives >= threshold
    return over and "suspicious" or "-"
end

-- The verdict and its first reason; an entity not judged says why.
local function verdict(o)
    if o.verdict then
        return o.verdict, o.reasons[1]
    end
    return o.status == "not_found" and "unknown" or "-", o.reason or ""
end

local rows = { { "ENTITY", "TYPE", "STATUS", "DETECTIONS", "SEED RULE", "VERDICT", "FIRST REASON" } }
local malicious, total = 0, 0
for _, r in ipairs(runs) do
    local kind, res = r[1], r[2]
    if res.status == "Failed" then
        fail(kind, ": ", res.message)
    end
    requests, cache_hits = requests + res.requests, cache_hits + res.cache_hits
    spent[#spent + 1] = ("%s %d"):format(kind, res.requests)
    for _, o in ipairs(res.entities) do
        local v, why = verdict(o)
        rows[#rows + 1] = { o.entity, o.type, o.status, detections(kind, o), seed_rule(kind, o), v, why }
        total = total + 1
        malicious = malicious + (v == "malicious" and 1 or 0)
    end
end

local widths = {}
for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do
        widths[i] = math.max(widths[i] or 0, #cell)
    end
end
for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do
        cells[i] = i < #row and cell .. (" "):rep(widths[i] - #cell) or cell
    end
    print(table.concat(cells, "  "))
end

print()
print(("Case %s (%s): %d of %d entities malicious; %d insights, %d tables, %d links written."):format(
    case_id, api, malicious, total, #case.insights, #case.tables, #case.links))
print("  " .. runs[1][2].rule .. " The policy: Cortex XSOAR's defaults (docs/verdict.md).")
print(("  Seed rule: a hash is suspicious when at least %d engines detect it, a URL at least %d, an IP when a"
    .. " related sample or URL is detected by more than %d."):format(THRESHOLD.hash, THRESHOLD.url, THRESHOLD.ip))
print(("Spent: %d API requests (%s), %d look-ups answered by the cache."):format(requests,
    table.concat(spent, ", "), cache_hits))
local ok, werr = host:save(out_file)
print(ok and ("Enriched case written to " .. out_file) or ("Could not write the case: " .. tostring(werr)))
