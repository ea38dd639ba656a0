--- The six SecOps VirusTotal tools, as definitions for the skeleton in vt.soar.run.
--
-- Each definition says which entities the tool takes and how it cleans them, what it asks
-- VirusTotal for one item (`start`), what it writes back for a done item (`write`), its
-- threshold rule and its message sections. docs/soar.md describes them for users.
-- @module vt.soar.tools
local vt = require "vt"
local verdict = require "vt.verdict"
local report = require("vt.core").report
local entities = require "vt.soar.entities"
local fields = require "vt.soar.fields"
local skeleton = require "vt.soar.run"

local tools = {}

local ENGINE_COLUMNS = { "Engine", "Is Malicious", "Result", "Last Analysis" }

local function now()
    return os.date("!%Y-%m-%d %H:%M:%S")
end

-- Message headers: the tool's own, then the same wording for every tool, by status.
local function sections(noun, own)
    local all = {
        done = ("Reports were fetched for the following %s: "):format(noun),
        not_found = ("The following %s were not found in VirusTotal: "):format(noun),
        queued = ("The following %s are still queued for analysis in VirusTotal: "):format(noun),
        forbidden = ("The following %s were refused by VirusTotal (the API key lacks the rights): "):format(noun),
        quota = ("The following %s were not processed due to reaching API request limitation: "):format(noun),
        failed = ("The following %s have failed: "):format(noun),
        invalid = ("The following %s are malformed and were not sent to VirusTotal: "):format(noun),
        skipped = ("The following %s were skipped without a request: "):format(noun),
    }
    for k, v in pairs(own) do
        all[k] = v
    end
    return all
end

local function at_least(positives, threshold)
    return positives >= threshold
end

-- The enrichment of a done item: its report's fields, with a policy its verdict and score.
local function enrichment(item)
    local out = fields.enrichment(item.report)
    if item.verdict then
        out.VT_verdict, out.VT_score = item.verdict.verdict, item.verdict.score
    end
    return out
end

-- The insight text of a suspicious item: the threshold's words, or with a policy the verdict's
-- reasons.
local function judgement(item, words, ...)
    if item.verdict then
        return ("VirusTotal - %s verdict: %s"):format(item.name, verdict.explain(item.verdict))
    end
    return words:format(...)
end

local function any_suspicious(run)
    for _, item in ipairs(run.items) do
        if item.suspicious then
            return true
        end
    end
    return false
end

local function ran()
    return true
end

-- hashes and URLs ---------------------------------------------------------------------------------

-- True when the report is at least `rescan_after_days` whole days old.
local function stale(run, facts)
    local days = run.p.rescan_after_days
    return days and days > 0 and facts.date and (os.time() - facts.date) // 86400 >= days
end

-- Look up; re-analyse when stale; submit a URL never seen (a hash never seen cannot be).
local function start_scan(run, item)
    local kind, b = run.tool.kind, run.backend
    local facts, err = b:lookup(kind, item.value)
    if facts then
        if not stale(run, facts) then
            return run:done(item, facts, "fetched")
        end
        local pending, rerr = b:rescan(kind, item.value, facts)
        if not pending then
            return run:fail(item, rerr, "rescan")
        end
        return run:queue(item, pending, run.tool.rescan_section,
            ("re-analysis requested, the last one was on %s"):format(report.format_date(facts.date)))
    elseif facts == false then
        -- queued at VirusTotal already: the second value is how to follow it
        return run:queue(item, err, "fetched", "already queued at VirusTotal")
    elseif err.code == "NotFoundError" and kind == "url" then
        local pending, serr = b:submit("url", item.value)
        if not pending then
            return run:fail(item, serr, "submit")
        end
        return run:queue(item, pending, "fetched", "never scanned before: submitted")
    end
    return run:fail(item, err)
end

local function write_comments(run, item)
    local n = run.ctx.comments
    if n == 0 then
        return
    end
    -- as in the original, a failure here only loses the comments table
    local list = run.backend:comments(run.tool.kind, item.report.id, n)
    if list and #list > 0 then
        local rows = {}
        for i, c in ipairs(list) do
            rows[i] = { c.date or "", c.text or "" }
        end
        run.host:add_table(run.case_id, {
            title = "Comments to " .. item.name, entity = item.name, columns = { "Date", "Comment" }, rows = rows,
        })
    end
end

local function write_scanned(run, item)
    local r, id, host = item.report, item.name, run.host
    host:update_entity(run.case_id, item.entity, { enrichment = enrichment(item), suspicious = item.suspicious })
    host:add_table(run.case_id, { title = id, entity = id, columns = ENGINE_COLUMNS, rows = fields.engine_rows(r) })
    host:add_link(run.case_id, { title = id .. " Link to web report", entity = id, url = r.permalink })
    if item.suspicious then
        host:add_insight(run.case_id, {
            entity = id, triggered_by = "VirusTotal", severity = "warn", title = "VirusTotal",
            message = judgement(item, run.tool.insight, item.positives, item.total, run.threshold),
        })
    end
    write_comments(run, item)
end

tools.scan_hash = {
    name = "scan_hash", seed = "virus_total_scan_hash", kind = "file", refetch = true,
    params = { threshold = "count", rescan_after_days = "count", wait = "boolean" },
    default_threshold = 3,
    entity_types = { FILEHASH = true },
    start = start_scan, write = write_scanned,
    suspicious = at_least, result_value = any_suspicious,
    rule = "Rule: a hash is suspicious when at least %d engines detect it (positives >= threshold).",
    insight = "VirusTotal - Hash was marked as malicious by %d of %d engines. Threshold set to - %d",
    empty = "No FILE HASH entities were found in current scope.",
    rescan_section = "rescanned",
    section_order = { "fetched", "rescanned" },
    sections = sections("hashes", {
        fetched = "Reports were fetched for the following hashes: ",
        rescanned = "Rescan the following hashes: ",
        not_found = "The following hashes do not exist on VirusTotal (file was never scanned before): ",
        forbidden = "Failed to rescan the following hashes (provided API Key is for public API, but private API "
            .. "access is required): ",
        quota = "Reports were not fetched for the following hashes due to reaching API request limitation: ",
    }),
}

tools.scan_url = {
    name = "scan_url", seed = "virus_total_scan_url", kind = "url", refetch = true,
    params = { threshold = "count", rescan_after_days = "count", wait = "boolean" },
    default_threshold = 3,
    entity_types = { DestinationURL = true },
    start = start_scan, write = write_scanned,
    suspicious = at_least, result_value = any_suspicious,
    rule = "Rule: a URL is suspicious when at least %d engines detect it (positives >= threshold).",
    insight = "VirusTotal - URL was marked as malicious by %d of %d engines. Threshold set to - %d",
    empty = "No URL entities were found in current scope.",
    rescan_section = "fetched",
    section_order = { "fetched" },
    sections = sections("urls", {
        fetched = "Reports were fetched for the following urls: ",
        not_found = "The following urls does not exist on VirusTotal (url was never scanned before): ",
        failed = "The following urls have failed: ",
        forbidden = "Failed to rescan the following urls (provided API Key is for public API, but private API "
            .. "access is required): ",
        quota = "Reports were not fetched for the following urls due to reaching API request limitation: ",
    }),
}

-- IP addresses ------------------------------------------------------------------------------------

local function clean_ip(e)
    local ip, why = entities.indicator(e, "ip")
    if not ip then
        return nil, why
    end
    -- neither kind is worth a request: VirusTotal knows nothing useful about them
    if e.IsInternal then
        return nil, "internal entity (IsInternal): no request made", "skipped"
    elseif vt.is_private_ip(ip) then
        return nil, "private or reserved address: no request made", "skipped"
    end
    return ip
end

local function start_lookup(run, item)
    local facts, err = run.backend:lookup(run.tool.kind, item.value)
    if not facts then
        return run:fail(item, err)
    end
    return run:done(item, facts)
end

local function write_ip(run, item)
    local r, id, host = item.report, item.name, run.host
    local props = enrichment(item)
    props.VT_Latest_scan_date = now()
    host:update_entity(run.case_id, item.entity, { enrichment = props, suspicious = item.suspicious })
    local lines = { "Country: " .. tostring(r.country or "") }
    for _, count in ipairs((fields.ip_counts(r))) do
        lines[#lines + 1] = ("%s: %d"):format(count[1], count[2])
    end
    if item.verdict then
        lines[#lines + 1] = "Verdict: " .. verdict.explain(item.verdict)
    end
    host:add_insight(run.case_id, {
        entity = id, triggered_by = "VirusTotal", severity = item.suspicious and "warn" or "info",
        title = "VirusTotal", message = table.concat(lines, "\n"),
    })
    if r.resolutions and #r.resolutions > 0 then
        local rows = {}
        for i, res in ipairs(r.resolutions) do
            rows[i] = { report.format_date(res.date) or "", res.host_name or "" }
        end
        host:add_table(run.case_id, { title = id, entity = id, columns = { "Last Resolved", "Hostname" }, rows = rows })
    end
    host:add_link(run.case_id, { title = id .. " Link to web report", entity = id, url = r.permalink })
end

local function analysed_each(list)
    local parts = {}
    for i, item in ipairs(list) do
        parts[i] = ("Entity %s was submitted and analyzed in VirusTotal\n \n *Check online report for full details.")
            :format(item.name)
    end
    return table.concat(parts, "\n")
end

tools.scan_ip = {
    name = "scan_ip", seed = "virus_total_scan_ip", kind = "ip",
    params = { threshold = "count" },
    default_threshold = 25,
    entity_types = { ADDRESS = true },
    clean = clean_ip, start = start_lookup, write = write_ip,
    -- the most-detected related sample or URL, not the address's own count
    measure = function(facts) return select(2, fields.ip_counts(facts)), nil end,
    suspicious = function(positives, threshold) return positives > threshold end,
    result_value = ran,
    rule = "Rule: an IP is suspicious when a related sample or URL is detected by more than %d engines "
        .. "(highest related positives > threshold).",
    empty = "No ADDRESS entities were found in current scope.",
    section_order = {},
    sections = sections("IPs", {
        done = analysed_each,
        not_found = "The following IPs were not found in VirusTotal: ",
        failed = "The following IPs were failed in VirusTotal: ",
        quota = "The following IPS were not analyzed due to reaching API request limitation: ",
        skipped = "The following IPs were skipped (internal or private addresses, no request made): ",
    }),
}

-- domains -----------------------------------------------------------------------------------------

local function write_domain(run, item)
    local r, id, host = item.report, item.name, run.host
    local props = enrichment(item)
    props.VT_Latest_scan_date = now()
    host:update_entity(run.case_id, item.entity, { enrichment = props, suspicious = item.suspicious })
    local names = {}
    for k in pairs(props) do
        names[#names + 1] = k
    end
    table.sort(names)
    local rows = {}
    for i, k in ipairs(names) do
        rows[i] = { k, props[k] }
    end
    host:add_table(run.case_id,
        { title = id .. " Score Report", entity = id, columns = { "Property", "Value" }, rows = rows })
    host:add_link(run.case_id, { title = id .. " Link to web report", entity = id, url = r.permalink })
    if item.suspicious then
        host:add_insight(run.case_id, { entity = id, triggered_by = "VirusTotal", severity = "warn",
            title = "VirusTotal", message = judgement(item) })
    end
end

tools.get_domain_report = {
    name = "get_domain_report", seed = "virus_total_get_domain_report", kind = "domain",
    params = {},
    entity_types = { HOSTNAME = true, DOMAIN = true, USERUNIQNAME = true, DestinationURL = true },
    start = start_lookup, write = write_domain, result_value = ran,
    empty = "No HOSTNAME or USER entities were found in current scope.",
    section_order = {},
    sections = sections("entities", {
        done = function(list)
            local names = {}
            for i, item in ipairs(list) do
                names[i] = item.name
            end
            return "The following entities were submitted and analyzed in VirusTotal: \n" .. table.concat(names, "\n")
                .. "\n \n *Check online report for full details."
        end,
        not_found = "The following entities were not found in VirusTotal: ",
        failed = "The following entities were failed in VirusTotal: ",
        quota = "The following entities were not enriched due to reaching API request limitation: ",
    }),
}

-- file uploads ------------------------------------------------------------------------------------

local function is_share(path)
    return path:sub(1, 2) == "\\\\" or path:lower():sub(1, 6) == "smb://"
end

local function upload_items(run)
    local p = run.p
    if not p.file_paths or #p.file_paths == 0 then
        return nil, "upload_and_scan_files: parameter 'file_paths' is required"
    end
    if p.linux_server_address and not p.linux_user then
        return nil, "upload_and_scan_files: parameter 'linux_user' is required with 'linux_server_address'"
    end
    local items = {}
    for i, path in ipairs(p.file_paths) do
        local item = { name = path, type = "FILE", value = path }
        -- a local file is looked up by its digest first (a remote one would be read twice)
        if not (is_share(path) or p.linux_server_address or p.always_upload) then
            local digest, err = vt.digest(path)
            if digest then
                item.sha256 = digest.sha256
            else
                item.status, item.reason = "failed", "cannot read the file: " .. tostring(err)
            end
        end
        items[i] = item
    end
    return items
end

-- The SFTP session of the run, opened on first use; a refused login or an unreachable host ends
-- the run (every later file would fail the same way).
local function sftp_session(run)
    if run.sftp == nil then
        local p = run.p
        if not vt.sftp then
            run:abort("This build of vt has no SFTP support (vt.sftp)")
            run.sftp = false
            return nil
        end
        local session, err = vt.sftp {
            host = p.linux_server_address, user = p.linux_user, password = p.linux_password,
            private_key = p.linux_private_key, known_hosts = p.known_hosts, insecure_host_key = p.insecure_host_key,
        }
        if not session then
            run:abort(("Could not open an SFTP session to %s: %s"):format(p.linux_server_address, tostring(err)))
            run.sftp = false
            return nil
        end
        run.sftp = session
        run.cleanup = function() session:close() end
    end
    return run.sftp or nil
end

-- The upload source of a path: a Windows share through libsmbclient, a remote file over SFTP
-- when a Linux server is given, else the local path itself.
local function open_source(run, path)
    if is_share(path) then
        local p = run.p
        if not vt.smb_open then
            return nil, "this build of vt cannot read Windows shares (no vt.smb_open)"
        end
        return vt.smb_open(path, { user = p.share_user, password = p.share_password, domain = p.share_domain })
    elseif run.p.linux_server_address then
        local session = sftp_session(run)
        if not session then
            return nil
        end
        return session:open(path)
    end
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    f:close()
    return path
end

-- A file the service knows already is not uploaded again: its last analysis answers, and a
-- second run (or another worker sharing the cache) spends nothing on it.
local function known_file(run, item)
    local facts, err = run.backend:lookup("file", item.sha256)
    if facts then
        run:done(item, facts, "known", ("already known to VirusTotal (last analysis %s): not uploaded again")
            :format(facts.date and os.date("!%Y-%m-%d", facts.date) or "unknown"))
        return true
    elseif facts == false then
        run:queue(item, err, "uploaded", "already queued at VirusTotal")
        return true
    elseif err.code ~= "NotFoundError" then
        run:fail(item, err, "look-up")
        return true
    end
    return false
end

local function start_upload(run, item)
    if item.sha256 and known_file(run, item) then
        return
    end
    local source, err = open_source(run, item.value)
    if not source then
        item.status = "failed"
        item.reason = run:redact(run.fatal or ("cannot read the file: " .. tostring(err)))
        return
    end
    local pending, serr = run.backend:submit("file", source)
    if type(source) ~= "string" then
        source:close()
    end
    if not pending then
        return run:fail(item, serr, "upload")
    end
    return run:queue(item, pending, "uploaded", "uploaded")
end

local function write_upload(run, item)
    local r, path, host = item.report, item.name, run.host
    host:add_table(run.case_id, { title = path .. " Report", columns = ENGINE_COLUMNS, rows = fields.engine_rows(r) })
    host:add_link(run.case_id, { title = path .. " Virus Total Web Link", url = r.permalink })
    if item.suspicious then
        host:add_insight(run.case_id, {
            title = ("File %s found as suspicious."):format(path), triggered_by = "Siemplify_System",
            severity = "warn",
            message = judgement(item, "VirusTotal - %s marked as malicious by %d of %d engines - Threshold set to - %d",
                path, item.positives, item.total, run.threshold),
        })
    end
end

tools.upload_and_scan_files = {
    name = "upload_and_scan_files", seed = "virus_total_upload_and_scan_files", kind = "file",
    params = {
        threshold = "count", file_paths = "paths", wait = "boolean",
        linux_server_address = "string", linux_user = "string", linux_password = "string",
        linux_private_key = "string", known_hosts = "string", insecure_host_key = "boolean",
        share_user = "string", share_password = "string", share_domain = "string", always_upload = "boolean",
    },
    default_threshold = 3,
    items = upload_items, start = start_upload, write = write_upload,
    suspicious = at_least, result_value = any_suspicious,
    rule = "Rule: a file is suspicious when at least %d engines detect it (positives >= threshold).",
    empty = "No files were given.",
    section_order = { "uploaded", "known" },
    sections = sections("files", {
        uploaded = "The following files were uploaded to VirusTotal for scan: ",
        known = "The following files were already known to VirusTotal and were not uploaded again: ",
        failed = "Failed to upload the following files: ",
        quota = "The following files were not uploaded properly due to reaching API request limitation: ",
    }),
}

-- ping --------------------------------------------------------------------------------------------

-- The URL the original integration's connectivity test looks up.
local PING_URL = "https://www.google.co.il"

tools.ping = {
    name = "ping", seed = "virus_total_ping", params = {},
    execute = function(ctx)
        local ok, err = ctx.backend:ping("url", PING_URL)
        local res = { json_result = {}, entities = {}, status = "Completed", result_value = true,
            message = "Connection Established" }
        if not ok then
            res.status, res.result_value = "Failed", false
            if skeleton.wrong_key(err, ctx.api) then
                res.message = skeleton.WRONG_KEY .. " (" .. tostring(err) .. ")"
            else
                res.message = "General error performing action VirusTotal - Ping. Error: " .. tostring(err)
            end
        end
        return res
    end,
}

return tools
