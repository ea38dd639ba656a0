-- vt.soar: the six SecOps-style tools against the fake VirusTotal, over v3 and v2 (the client's
-- api deciding); v2 batches; verdict policies; the memory host.
local vt = require "vt"
local soar = require "vt.soar"
local cjson = require "cjson"
local fake = require "helpers.fake"
local requests_log = require "helpers.requests"

-- Indicators the fake knows (spec/fake/samples) and what it says about them.
local HASH = {
    bad = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",   -- 53 engines
    seven = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c", -- 7 engines
    clean = "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740", -- 0 engines
    unknown = "0123456789abcdef0123456789abcdef",
}
local URL_KNOWN = "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1" -- 5 engines

local srv

local function entity(id, kind, extra)
    local e = { Identifier = id, EntityType = kind }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
end

local function new_host(entities)
    return assert(soar.memory_host { cases = { { id = "1", alert_groups = { ["ag-1"] = { entities = entities } } } } })
end

-- The client's api alone decides the protocol of the tools made over it.
local function client(api, key)
    return vt.client { apikey = key or "test-key", base_url = srv.url, api = api, quota_state = false,
        max_wait = 1, retries = 0, retry_base = 0.01 }
end

-- One look-up after another (concurrency 1, v2_batch 1): the specs below assert exact request
-- sequences; look-ups in flight at once and v2 batches have their own specs.
local function make_tools(api, host, extra)
    local opts = { client = client(api), host = host, poll_interval = 0.05, poll_timeout = 10,
        concurrency = 1, v2_batch = 1 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return soar.new(opts)
end

-- The outcomes of a result, by entity (or file path).
local function by_name(res)
    local map = {}
    for _, o in ipairs(res.entities) do map[o.entity] = o end
    return map
end

-- The API requests the fake received (method and path, query included).
local function requests()
    return requests_log.lines(srv)
end

local count_matching = requests_log.count

local function entity_of(host, id)
    for _, e in ipairs(host:case("1").alert_groups["ag-1"].entities) do
        if e.Identifier == id then return e end
    end
end

local function tmpfile(content)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    return path
end

setup(function()
    srv = fake.start { analysis_steps = 2 }
end)

teardown(function()
    srv:stop()
end)

before_each(function()
    srv:reset()
end)

for _, api in ipairs { "v3", "v2" } do
    describe("vt.soar over " .. api, function()
        -- What a look-up, a re-analysis and a submission look like in the fake's log.
        local LOOKUP = api == "v3" and "^GET /api/v3/files/" or "^GET /vtapi/v2/file/report"
        local RESCAN = api == "v3" and "^POST /api/v3/files/.*/analyse" or "^POST /vtapi/v2/file/rescan"
        local URL_SUBMIT = api == "v3" and "^POST /api/v3/urls" or "^POST /vtapi/v2/url/scan"

        -- the client's api is the tools' protocol: a v2 run never reaches the v3 API
        after_each(function()
            assert.equal(0, count_matching(requests(), api == "v2" and "^%u+ /api/v3/" or "^%u+ /vtapi/v2/"))
        end)

        describe("ping", function()
            it("connects with a good key", function()
                local res = make_tools(api).virus_total_ping { case_id = "1", alert_group_identifiers = { "ag-1" } }
                assert.same({ "Completed", true, "Connection Established" }, { res.status, res.result_value, res.message })
            end)

            it("fails with the message on a wrong key", function()
                local tools = soar.new { client = client(api, "wrong-key") }
                local res = tools.ping {}
                assert.equal("Failed", res.status)
                assert.is_false(res.result_value)
                assert.matches("Invalid API key was provided. Access is forbidden.", res.message, 1, true)
            end)
        end)

        it("fails every tool's run with the message on a wrong key", function()
            local file = tmpfile("a file " .. api)
            local host = new_host { entity(URL_KNOWN, "DestinationURL"), entity("1.1.1.1", "ADDRESS"),
                entity("github.com", "DOMAIN") }
            local tools = soar.new { client = client(api, "wrong-key"), host = host }
            for name, params in pairs {
                scan_url = {}, scan_ip = {}, get_domain_report = {}, upload_and_scan_files = { file_paths = file },
            } do
                params.case_id = "1"
                local res = tools[name](params)
                assert.equal("Failed", res.status, name)
                assert.is_false(res.result_value, name)
                assert.matches("^Invalid API key was provided. Access is forbidden.", res.message)
                assert.equal("failed", res.entities[1].status, name)
            end
            assert.same({}, host:case("1").insights)
            os.remove(file)
        end)

        describe("scan_hash", function()
            it("gives each hash a status, enriches the done ones and flags them at >= threshold", function()
                local host = new_host {
                    entity(HASH.bad, "FILEHASH"), entity(" " .. HASH.seven:upper() .. "\t", "FILEHASH"),
                    entity(HASH.clean, "FILEHASH"), entity(HASH.unknown, "FILEHASH"), entity("not-a-hash", "FILEHASH"),
                    entity("8.8.8.8", "ADDRESS"),
                }
                local res = make_tools(api, host).virus_total_scan_hash { case_id = "1", threshold = "7" }
                assert.equal("Completed", res.status)
                assert.is_true(res.result_value)
                assert.matches(">= threshold", res.rule, 1, true)
                local o = by_name(res)
                assert.equal(5, #res.entities) -- the ADDRESS is not this tool's
                assert.same({ "done", 53, true }, { o[HASH.bad].status, o[HASH.bad].positives, o[HASH.bad].suspicious })
                local seven = o[" " .. HASH.seven:upper() .. "\t"]
                assert.same({ "done", 7, true, HASH.seven }, { seven.status, seven.positives, seven.suspicious, seven.value })
                assert.same({ "done", 0, false }, { o[HASH.clean].status, o[HASH.clean].positives, o[HASH.clean].suspicious })
                assert.equal("not_found", o[HASH.unknown].status)
                assert.matches("NotFoundError", o[HASH.unknown].reason)
                -- the reason is vt.normalize's, the one definition of a valid hash
                assert.same({ "invalid", "not an MD5, SHA-1 or SHA-256 hash: 'not-a-hash'" },
                    { o["not-a-hash"].status, o["not-a-hash"].reason })

                -- no request for the malformed one; one look-up for each of the others
                local log = requests()
                assert.equal(0, count_matching(log, "not%-a%-hash"))
                assert.equal(4, count_matching(log, LOOKUP))

                local bad = entity_of(host, HASH.bad)
                assert.is_true(bad.IsEnriched)
                assert.is_true(bad.IsSuspicious)
                local props = bad.AdditionalProperties
                assert.equal(53, props.VT_Positives)
                assert.equal("53/" .. props.VT_Total, props["VT_Risk Score"])
                assert.equal(HASH.bad, props.VT_SHA256)
                assert.equal("b214da9f6b0d6e6de5090b3f9672defe", props.VT_MD5)
                assert.is_string(props["VT_Scan Date"])
                assert.is_string(props["VT_Detecting Engines"])
                assert.is_false(entity_of(host, HASH.clean).IsSuspicious)
                assert.is_true(entity_of(host, HASH.clean).IsEnriched)
                assert.is_false(entity_of(host, HASH.unknown).IsEnriched)

                local case = host:case("1")
                local insights = {}
                for _, i in ipairs(case.insights) do insights[i.entity] = i.message end
                assert.equal("VirusTotal - Hash was marked as malicious by 53 of " .. props.VT_Total
                    .. " engines. Threshold set to - 7", insights[HASH.bad])
                assert.is_nil(insights[HASH.clean])
                assert.equal(3, #case.tables)
                assert.same({ "Engine", "Is Malicious", "Result", "Last Analysis" }, case.tables[1].columns)
                assert.equal(3, #case.links)
                assert.equal(3, #case.json_results)

                assert.equal(3, #res.json_result)
                assert.equal(HASH.bad, res.json_result[1].Entity)
                assert.is_table(res.json_result[1].EntityResult)
                assert.matches("Reports were fetched for the following hashes: \n" .. HASH.bad, res.message, 1, true)
                assert.matches("The following hashes do not exist on VirusTotal (file was never scanned before): \n"
                    .. HASH.unknown, res.message, 1, true)
                assert.matches("not%-a%-hash: not an MD5", res.message)
            end)

            it("leaves a hash clean when its detections are one short of the threshold", function()
                local host = new_host { entity(HASH.seven, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = 1, threshold = 8 }
                assert.is_false(res.entities[1].suspicious)
                assert.is_false(res.result_value)
                assert.is_false(entity_of(host, HASH.seven).IsSuspicious)
                assert.equal(0, #host:case("1").insights)
            end)

            it("fails the run with the message on a wrong key, listing every entity", function()
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.clean, "FILEHASH") }
                local tools = soar.new { client = client(api, "wrong-key"), host = host }
                local res = tools.scan_hash { case_id = "1" }
                assert.equal("Failed", res.status)
                assert.is_false(res.result_value)
                assert.matches("^Invalid API key was provided. Access is forbidden.", res.message)
                local o = by_name(res)
                assert.equal("failed", o[HASH.bad].status)
                assert.same({ "failed", "not tried: the run stopped" }, { o[HASH.clean].status, o[HASH.clean].reason })
                assert.equal(1, #requests())
                assert.is_false(entity_of(host, HASH.bad).IsEnriched)
            end)

            it("keeps what it has when the quota runs out mid-run", function()
                srv:quota { per_day = 1 }
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.seven, "FILEHASH"),
                    entity(HASH.clean, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1" }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.equal("done", o[HASH.bad].status)
                assert.equal("quota", o[HASH.seven].status)
                assert.matches("QuotaExceededError", o[HASH.seven].reason)
                assert.equal("quota", o[HASH.clean].status)
                assert.matches("^not tried: quota exhausted", o[HASH.clean].reason)
                assert.matches("due to reaching API request limitation", res.message, 1, true)
                -- the first result is written; the third hash cost no request
                assert.is_true(entity_of(host, HASH.bad).IsEnriched)
                assert.equal(2, #requests())
            end)

            it("rescans a stale report (rescan_after_days), returns a state and resumes it here", function()
                local host = new_host { entity(HASH.bad, "FILEHASH") }
                local tools = make_tools(api, host)
                local res = tools.scan_hash { case_id = "1", rescan_after_days = "1", wait = false }
                assert.equal("InProgress", res.status)
                assert.equal("queued", res.entities[1].status)
                assert.is_string(res.entities[1].analysis_id)
                assert.is_string(res.state)
                assert.is_nil(res.state:find("test-key", 1, true))
                assert.equal(1, count_matching(requests(), RESCAN))
                assert.is_false(entity_of(host, HASH.bad).IsEnriched)

                local done = tools.resume(res.state)
                assert.equal("Completed", done.status)
                assert.is_true(done.result_value)
                assert.same({ "done", 53 }, { done.entities[1].status, done.entities[1].positives })
                assert.matches("Rescan the following hashes: \n" .. HASH.bad, done.message, 1, true)
                assert.is_true(entity_of(host, HASH.bad).IsEnriched)
                assert.equal(1, #done.json_result)
            end)

            it("does not rescan a report younger than rescan_after_days", function()
                local host = new_host { entity(HASH.bad, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1", rescan_after_days = 100000 }
                assert.equal("done", res.entities[1].status)
                assert.equal(0, count_matching(requests(), RESCAN))
            end)

            it("resumes a state in a second process", function()
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.unknown, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1", rescan_after_days = 1, wait = false }
                assert.equal("InProgress", res.status)
                local case_file, state_file = os.tmpname(), tmpfile(res.state)
                assert(host:save(case_file))
                local child = tmpfile([[
          package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
          package.cpath = arg[5]
          local vt, soar = require "vt", require "vt.soar"
          local host = assert(soar.memory_host(arg[1]))
          local c = vt.client { apikey = "test-key", base_url = arg[3], api = arg[4], quota_state = false }
          local tools = soar.new { client = c, host = host, poll_interval = 0.05, poll_timeout = 10 }
          local f = io.open(arg[2]); local state = f:read("a"); f:close()
          local r = tools.resume(state)
          assert(host:save(arg[1]))
          io.write(require("cjson").encode { status = r.status, entities = r.entities, value = r.result_value })
        ]])
                local cmd = ("lua5.4 %s %s %s %s %s '%s'"):format(child, case_file, state_file, srv.url, api, package.cpath)
                local pipe = assert(io.popen(cmd))
                local out = cjson.decode(pipe:read("a"))
                assert.is_true(pipe:close())
                assert.equal("Completed", out.status)
                assert.is_true(out.value)
                local o = by_name(out)
                assert.equal("done", o[HASH.bad].status)
                assert.equal("not_found", o[HASH.unknown].status)
                local saved = assert(soar.memory_host(case_file))
                local e = saved:case("1").alert_groups["ag-1"].entities[1]
                assert.is_true(e.IsEnriched)
                assert.equal(53, e.AdditionalProperties.VT_Positives)
                assert.equal("integer", math.type(e.AdditionalProperties.VT_Positives))
                os.remove(case_file)
                os.remove(state_file)
                os.remove(child)
            end)

            it("reports a refused rescan as forbidden and goes on with the others", function()
                local path = api == "v3" and ("/api/v3/files/" .. HASH.bad .. "/analyse") or "/vtapi/v2/file/rescan"
                srv:fault { type = "status", status = 403, path = path, code = "ForbiddenError", count = 1 }
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.seven, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1", rescan_after_days = 1 }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.equal("forbidden", o[HASH.bad].status)
                assert.matches("^rescan: ", o[HASH.bad].reason)
                assert.equal("done", o[HASH.seven].status)
                assert.matches("Failed to rescan the following hashes", res.message, 1, true)
            end)

            it("fails one hash on a server error and goes on with the others", function()
                local path = api == "v3" and ("/api/v3/files/" .. HASH.bad) or "/vtapi/v2/file/report"
                srv:fault { type = "status", status = 500, path = path, count = 1 }
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.seven, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1" }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.equal("failed", o[HASH.bad].status)
                assert.matches("500", o[HASH.bad].reason)
                assert.equal("done", o[HASH.seven].status)
                assert.matches("The following hashes have failed: \n" .. HASH.bad, res.message, 1, true)
            end)

            it("times out with a state after poll_timeout, and a later resume finishes", function()
                local host = new_host { entity(HASH.seven, "FILEHASH") }
                local res = make_tools(api, host, { poll_timeout = 0 }).scan_hash { case_id = "1", rescan_after_days = 1 }
                assert.equal("TimedOut", res.status)
                assert.equal("queued", res.entities[1].status)
                local done = make_tools(api, host).resume(res.state)
                assert.equal("Completed", done.status)
                assert.equal("done", done.entities[1].status)
            end)

            it("lets target_entities override the scope, including entities the case lacks", function()
                local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.clean, "FILEHASH"),
                    entity(URL_KNOWN, "DestinationURL") }
                local res = make_tools(api, host).scan_hash {
                    case_id = "1", scope = "All URLs",
                    target_entities = { { Identifier = HASH.clean:upper(), EntityType = "FILEHASH" },
                        { Identifier = HASH.seven, EntityType = "FILEHASH" } },
                }
                assert.equal(2, #res.entities)
                local o = by_name(res)
                assert.equal(HASH.clean, res.entities[1].entity) -- the case's own entity
                assert.equal("done", o[HASH.clean].status)
                assert.equal("done", o[HASH.seven].status)
                -- matched to the case's own entity, so the findings land there
                assert.is_true(entity_of(host, HASH.clean).IsEnriched)
                assert.is_false(entity_of(host, HASH.bad).IsEnriched)
            end)

            it("takes only what the scope selects", function()
                local host = new_host { entity(HASH.bad, "FILEHASH", { IsSuspicious = true }), entity(HASH.clean, "FILEHASH") }
                local res = make_tools(api, host).scan_hash { case_id = "1", scope = "Suspicious entities" }
                assert.equal(1, #res.entities)
                assert.equal(HASH.bad, res.entities[1].entity)
                res = make_tools(api, host).scan_hash { case_id = "1", scope = "All URLs" }
                assert.equal(0, #res.entities)
                assert.equal("No FILE HASH entities were found in current scope.", res.message)
                assert.is_false(res.result_value)
            end)

            it("rejects an unknown scope with the list of valid ones, before any request", function()
                local res = make_tools(api, new_host { entity(HASH.bad, "FILEHASH") }).scan_hash {
                    case_id = "1", scope = "Everything" }
                assert.equal("Failed", res.status)
                assert.equal("Invalid scope 'Everything'. Allowed values are: " .. table.concat(soar.SCOPES, ", "), res.message)
                assert.equal(0, #requests())
            end)

            it("checks its parameters: values fail the run, types and unknown names raise", function()
                local tools = make_tools(api, new_host { entity(HASH.bad, "FILEHASH") })
                local res = tools.scan_hash { case_id = "1", threshold = "three" }
                assert.equal("Failed", res.status)
                assert.equal("scan_hash: parameter 'threshold' must be a whole number, 0 or more (got 'three')", res.message)
                assert.equal("Failed", tools.scan_hash { case_id = "1", rescan_after_days = -1 }.status)
                assert.equal("case 2 not found", tools.scan_hash { case_id = "2" }.message)
                assert.equal("scan_hash: parameter 'case_id' is required", tools.scan_hash {}.message)
                assert.has_error(function() tools.scan_hash { case_id = "1", treshold = 3 } end,
                    "scan_hash: unknown parameter 'treshold'")
                assert.has_error(function() tools.scan_hash { case_id = "1", threshold = {} } end,
                    "scan_hash: parameter 'threshold' must be a number or a numeric string (got table)")
                assert.has_error(function() tools.scan_hash { case_id = "1", wait = "no" } end)
                assert.equal(0, #requests())
            end)
        end)

        describe("scan_url", function()
            it("refangs and trims, rejects malformed URLs without a request, submits new ones and waits", function()
                local defanged = "  hxxps://www.dropbox[.]com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1 "
                local new = "http://fresh-" .. api .. ".example/VT-FAKE-MALICIOUS=8"
                local host = new_host { entity(defanged, "DestinationURL"), entity(new, "DestinationURL"),
                    entity("http//bad url", "DestinationURL"), entity("hxxp://", "DestinationURL") }
                local res = make_tools(api, host).virus_total_scan_url { case_id = "1", threshold = "6" }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.same({ "done", URL_KNOWN, 5, false }, { o[defanged].status, o[defanged].value, o[defanged].positives,
                    o[defanged].suspicious })
                assert.same({ "done", 8, true }, { o[new].status, o[new].positives, o[new].suspicious })
                assert.equal("invalid", o["http//bad url"].status)
                assert.equal("invalid", o["hxxp://"].status)
                assert.is_true(res.result_value)
                local log = requests()
                assert.equal(1, count_matching(log, URL_SUBMIT))
                assert.equal(0, count_matching(log, "bad"))
                local props = entity_of(host, new).AdditionalProperties
                assert.equal("8/" .. props.VT_Total, props["VT_Risk Score"])
                assert.matches("fresh%-" .. api, props["VT_Scanned URL"])
                assert.matches("VirusTotal - URL was marked as malicious by 8 of", host:case("1").insights[1].message, 1, true)
            end)

            it("sends the OriginalIdentifier, which keeps the case of the path", function()
                local original = "http://case-" .. api .. ".example/VT-FAKE-MALICIOUS=4"
                local host = new_host { entity(original:lower(), "DestinationURL",
                    { AdditionalProperties = { OriginalIdentifier = original } }) }
                local res = make_tools(api, host).scan_url { case_id = "1" }
                assert.equal(original, res.entities[1].value)
                assert.equal(4, res.entities[1].positives)
            end)

            it("keeps a submission whose polling ran out of quota, and a later resume finishes it", function()
                srv:quota { per_day = 3 } -- two look-ups and the submission; the first poll is refused
                local new = "http://quota-" .. api .. ".example/VT-FAKE-MALICIOUS=5"
                local host = new_host { entity(URL_KNOWN, "DestinationURL"), entity(new, "DestinationURL") }
                local res = make_tools(api, host).scan_url { case_id = "1" }
                assert.equal("InProgress", res.status)
                local o = by_name(res)
                assert.equal("done", o[URL_KNOWN].status)
                assert.equal("queued", o[new].status)
                assert.matches("polling stopped", o[new].reason)
                -- what is done is written at once
                assert.is_true(entity_of(host, URL_KNOWN).IsEnriched)
                assert.equal(1, #host:case("1").json_results)
                srv:quota {}
                local done = make_tools(api, host).resume(res.state)
                assert.equal("Completed", done.status)
                o = by_name(done)
                assert.equal("done", o[URL_KNOWN].status)
                assert.same({ "done", 5 }, { o[new].status, o[new].positives })
                assert.equal(2, #done.json_result)
                -- and written once only
                local case = host:case("1")
                assert.same({ 2, 2, 2 }, { #case.json_results, #case.tables, #case.links })
            end)
        end)

        describe("scan_ip", function()
            it("skips private and internal addresses without any request", function()
                local host = new_host { entity("10.0.0.5", "ADDRESS"), entity("192.168.1[.]20", "ADDRESS"),
                    entity("45.33.32.156", "ADDRESS", { IsInternal = true }), entity("999.1.1.1", "ADDRESS") }
                local res = make_tools(api, host).virus_total_scan_ip { case_id = "1" }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.equal("skipped", o["10.0.0.5"].status)
                assert.equal("skipped", o["192.168.1[.]20"].status)
                assert.matches("private", o["192.168.1[.]20"].reason)
                assert.equal("skipped", o["45.33.32.156"].status)
                assert.matches("IsInternal", o["45.33.32.156"].reason)
                assert.equal("invalid", o["999.1.1.1"].status)
                assert.same({}, srv:log())
            end)

            it("flags an IP whose most-detected related sample is above the threshold (strictly)", function()
                local host = new_host { entity("1.1.1.1", "ADDRESS"), entity("203.0.113.9", "ADDRESS") }
                local tools = make_tools(api, host)
                local first = tools.scan_ip { case_id = "1", threshold = 1000 }
                local top = by_name(first)["1.1.1.1"].positives
                assert.is_true(top > 0)
                assert.equal("not_found", by_name(first)["203.0.113.9"].status)
                assert.is_true(first.result_value)
                assert.is_false(by_name(tools.scan_ip { case_id = "1", threshold = top })["1.1.1.1"].suspicious)
                assert.is_false(entity_of(host, "1.1.1.1").IsSuspicious)
                local res = tools.scan_ip { case_id = "1", threshold = tostring(top - 1) }
                assert.is_true(by_name(res)["1.1.1.1"].suspicious)
                assert.is_true(entity_of(host, "1.1.1.1").IsSuspicious)
                assert.matches("> threshold", res.rule, 1, true)
                assert.matches("Entity 1.1.1.1 was submitted and analyzed in VirusTotal", res.message, 1, true)

                local props = entity_of(host, "1.1.1.1").AdditionalProperties
                assert.equal("AU", props.VT_Country)
                assert.is_string(props["VT_Related Domains"])
                assert.is_string(props.VT_Latest_scan_date)
                local case = host:case("1")
                -- an insight for every run over the IP, suspicious or not
                assert.equal(3, #case.insights)
                assert.matches("^Country: AU\nMalicious Referrer Samples: %d+\nMalicious Downloaded Samples: %d+\n"
                    .. "Malicious Communicating Samples: %d+\nMalicious URLs: %d+$", case.insights[1].message)
                assert.same({ "Last Resolved", "Hostname" }, case.tables[1].columns)
                assert.equal("https://www.virustotal.com/gui/ip-address/1.1.1.1", case.links[1].url)
            end)

            if api == "v3" then
                it("reads each related list once per IP (related_limit), or none with related_limit = 0", function()
                    local host = new_host { entity("1.1.1.1", "ADDRESS") }
                    make_tools(api, host, { related_limit = 3 }).scan_ip { case_id = "1" }
                    local log = requests()
                    assert.equal(6, #log)
                    assert.equal(1, count_matching(log, "^GET /api/v3/ip_addresses/1%.1%.1%.1/communicating_files%?.*limit=3"))
                    assert.equal(1, count_matching(log, "/resolutions"))
                    srv:reset()
                    local res = make_tools(api, host, { related_limit = 0 }).scan_ip { case_id = "1" }
                    assert.equal(1, #requests())
                    assert.equal(0, res.entities[1].positives)
                end)
            end
        end)

        describe("get_domain_report", function()
            it("fills every enrichment field the report has", function()
                local host = new_host { entity("mail.github.com", "HOSTNAME") }
                local res = make_tools(api, host).virus_total_get_domain_report { case_id = "1" }
                assert.equal("Completed", res.status)
                assert.is_true(res.result_value)
                assert.same({ "done", "github.com" }, { res.entities[1].status, res.entities[1].value })
                local props = entity_of(host, "mail.github.com").AdditionalProperties
                assert.equal("computersandsoftware", props["VT_Bit Defender Category"])
                assert.equal("information technology", props["VT_Force Point ThreatSeeker Category"])
                assert.matches("social networks", props.VT_Categories)
                assert.equal("https://www.virustotal.com/gui/domain/github.com", props.VT_Permalink)
                assert.is_string(props.VT_Latest_scan_date)
                if api == "v3" then
                    assert.equal("Alexa rank 105", props["VT_Alexa Domain Info"])
                    assert.equal("MarkMonitor Inc.", props.VT_Registrar)
                    assert.equal("2007-10-09 11:20:50", props["VT_Creation Date"])
                    assert.equal(2, props.VT_Reputation)
                else
                    assert.equal("This URL domain/host was seen to host badware at some point in time",
                        props["VT_Bit Defender Domain Info"])
                    assert.equal(100, props["VT_Detected URLs"])
                end
                local case = host:case("1")
                assert.equal("mail.github.com Score Report", case.tables[1].title)
                assert.equal("mail.github.com Link to web report", case.links[1].title)
                assert.equal(0, #case.insights)
                assert.is_false(entity_of(host, "mail.github.com").IsSuspicious)
            end)

            it("asks for the registered domain of hosts, URLs and e-mail addresses, public-suffix aware", function()
                local host = new_host {
                    entity("alice@mail.VirusTotal.com", "USERUNIQNAME"),
                    entity("hxxp://www[.]haiku-os.org/news", "DestinationURL"),
                    entity("www.shop.example.co.uk", "HOSTNAME"), entity("co.uk", "HOSTNAME"), entity("jdoe", "USERUNIQNAME"),
                    entity("10.1.2.3", "HOSTNAME"),
                }
                local res = make_tools(api, host).get_domain_report { case_id = "1" }
                local o = by_name(res)
                local function got(name) return { o[name].status, o[name].value } end
                assert.same({ "done", "virustotal.com" }, got "alice@mail.VirusTotal.com")
                assert.same({ "done", "haiku-os.org" }, got "hxxp://www[.]haiku-os.org/news")
                assert.same({ "not_found", "example.co.uk" }, got "www.shop.example.co.uk")
                assert.equal("invalid", o["co.uk"].status)
                assert.equal("invalid", o.jdoe.status)
                assert.equal("invalid", o["10.1.2.3"].status)
                assert.equal(3, #requests())
            end)
        end)

        describe("upload_and_scan_files", function()
            it("uploads local files, fails a missing one alone, and flags by threshold", function()
                local marked = tmpfile("sample VT-FAKE-MALICIOUS=9 " .. api)
                local clean = tmpfile("just text " .. api)
                local missing = "/nonexistent/" .. api .. "/sample.bin"
                local host = new_host {}
                local res = make_tools(api, host).virus_total_upload_and_scan_files {
                    case_id = "1", threshold = "9", file_paths = marked .. ", " .. missing .. "," .. clean }
                assert.equal("Completed", res.status)
                assert.is_true(res.result_value)
                local o = by_name(res)
                assert.same({ "done", 9, true, "FILE" },
                    { o[marked].status, o[marked].positives, o[marked].suspicious, o[marked].type })
                assert.same({ "done", 0, false }, { o[clean].status, o[clean].positives, o[clean].suspicious })
                assert.equal("failed", o[missing].status)
                assert.matches("No such file", o[missing].reason)
                assert.equal(2, #res.json_result)
                local case = host:case("1")
                assert.equal(1, #case.insights)
                assert.equal(("File %s found as suspicious."):format(marked), case.insights[1].title)
                assert.matches(("VirusTotal %%- %s marked as malicious by 9 of %%d+ engines %%- Threshold set to %%- 9"):format(
                    marked:gsub("%p", "%%%0")), case.insights[1].message)
                assert.equal(marked .. " Report", case.tables[1].title)
                assert.equal(marked .. " Virus Total Web Link", case.links[1].title)
                assert.matches("The following files were uploaded to VirusTotal for scan: ", res.message, 1, true)
                assert.matches("Failed to upload the following files: \n" .. missing, res.message, 1, true)
                os.remove(marked)
                os.remove(clean)
            end)

            it("looks a local file up by its digest first: a known one is not uploaded again", function()
                local content = "known already VT-FAKE-MALICIOUS=4 " .. api
                local known = tmpfile(content)
                local sha256 = srv:register_file(content).sha256
                local res = make_tools(api, new_host {}).upload_and_scan_files { case_id = "1", file_paths = known,
                    threshold = 4 }
                local o = by_name(res)[known]
                assert.same({ "done", 4, true }, { o.status, o.positives, o.suspicious })
                assert.matches("already known to VirusTotal", o.reason)
                assert.matches("were already known to VirusTotal and were not uploaded again: \n" .. known, res.message,
                    1, true)
                local sent = requests()
                assert.equal(1, #sent)
                assert.truthy(sent[1]:find(api == "v3" and sha256 or "file/report", 1, true), sent[1])
                assert.equal(0, count_matching(sent, "^POST"))
                -- always_upload asks for a fresh scan anyway
                srv:reset()
                res = make_tools(api, new_host {}).upload_and_scan_files { case_id = "1", file_paths = known,
                    always_upload = true }
                assert.equal("done", res.entities[1].status)
                assert.equal(1, count_matching(requests(), "^POST"))
                os.remove(known)
            end)

            it("returns InProgress with a state for wait = false and resumes", function()
                local file = tmpfile("resume me VT-FAKE-MALICIOUS=2 " .. api)
                local tools = make_tools(api, new_host {})
                local res = tools.upload_and_scan_files { case_id = "1", file_paths = { file }, wait = false }
                assert.equal("InProgress", res.status)
                local done = tools.resume(res.state)
                assert.equal("Completed", done.status)
                assert.is_false(done.result_value)
                assert.same({ "done", 2 }, { done.entities[1].status, done.entities[1].positives })
                os.remove(file)
            end)

            it("fails a Windows share path alone, and keeps its password out of the result", function()
                local local_file = tmpfile("local " .. api)
                local res = make_tools(api, new_host {}).upload_and_scan_files {
                    case_id = "1", file_paths = { [[\\127.0.0.1\noshare\x.bin]], local_file },
                    share_user = "u", share_password = "Sh4re-Secret" }
                assert.equal("Completed", res.status)
                local o = by_name(res)
                assert.equal("failed", o[ [[\\127.0.0.1\noshare\x.bin]] ].status)
                assert.equal("done", o[local_file].status)
                assert.is_nil(cjson.encode(res):find("Sh4re-Secret", 1, true))
                os.remove(local_file)
            end)

            describe("from a Windows share", function()
                local samba = require "helpers.samba"
                local proc = require "helpers.remote_proc"
                local usable, why = samba.usable()
                if not (vt.smb_open and vt.versions().smb) then
                    usable, why = false, "this build of vt has no SMB support"
                end
                if not usable then
                    pending(why)
                    return
                end
                local server
                lazy_setup(function()
                    server = samba.start()
                    proc.write(server.share .. "/mal.bin", "share VT-FAKE-MALICIOUS=6\n", "644")
                end)
                lazy_teardown(function() if server then server:stop() end end)

                it("reads smb:// paths; a missing file or a wrong password fails that file alone", function()
                    local tools = make_tools(api, new_host {})
                    local good, missing = server:url("mal.bin"), server:url("nope.bin")
                    local res = tools.upload_and_scan_files { case_id = "1", file_paths = { good, missing },
                        share_user = server.user, share_password = server.password }
                    assert.equal("Completed", res.status)
                    local o = by_name(res)
                    assert.same({ "done", 6 }, { o[good].status, o[good].positives })
                    assert.equal("failed", o[missing].status)
                    res = tools.upload_and_scan_files { case_id = "1", file_paths = good, share_user = server.user,
                        share_password = "Wr0ng-Share" }
                    assert.equal("Completed", res.status)
                    assert.equal("failed", res.entities[1].status)
                    assert.is_nil(cjson.encode(res):find("Wr0ng-Share", 1, true))
                end)
            end)

            describe("over SFTP", function()
                local sshd = require "helpers.sshd"
                local proc = require "helpers.remote_proc"
                local usable, why = sshd.usable()
                if not vt.sftp then
                    usable, why = false, "vt.sftp is not in this build"
                end
                if not usable then
                    pending(why)
                    return
                end
                local server
                lazy_setup(function()
                    server = sshd.start()
                    proc.write(server.files .. "/mal.bin", "remote VT-FAKE-MALICIOUS=11\n", "644")
                end)
                lazy_teardown(function() if server then server:stop() end end)

                local function upload(extra)
                    local p = { case_id = "1", file_paths = server.files .. "/mal.bin," .. server.files .. "/nope.bin",
                        linux_server_address = server.address, linux_user = server.user,
                        linux_password = server.password,
                        known_hosts = server.known_hosts.bracketed }
                    for k, v in pairs(extra or {}) do p[k] = v end
                    return make_tools(api, new_host {}).upload_and_scan_files(p)
                end

                it("streams remote files; a missing one fails alone", function()
                    local res = upload()
                    assert.equal("Completed", res.status)
                    local o = by_name(res)
                    assert.same({ "done", 11 }, { o[server.files .. "/mal.bin"].status, o[server.files .. "/mal.bin"].positives })
                    assert.equal("failed", o[server.files .. "/nope.bin"].status)
                    assert.is_nil(cjson.encode(res):find(server.password, 1, true))
                end)

                it("fails the run on a refused login, without the password anywhere", function()
                    local res = upload { linux_password = "Wr0ng-Passw0rd" }
                    assert.equal("Failed", res.status)
                    assert.matches("Could not open an SFTP session", res.message, 1, true)
                    assert.is_nil(cjson.encode(res):find("Wr0ng-Passw0rd", 1, true))
                    assert.equal(0, #requests())
                end)
            end)
        end)
    end)
end

-- scan_hash (threshold 5) over one FILEHASH entity per hash, by tools made with `opts`.
local function scan_hashes(hashes, opts)
    local list = {}
    for i, h in ipairs(hashes) do list[i] = entity(h, "FILEHASH") end
    opts.host = new_host(list)
    return soar.new(opts).scan_hash { case_id = "1", threshold = 5 }
end

describe("vt.soar look-ups in flight at once", function()
    local hashes = { HASH.bad, HASH.seven, HASH.clean, HASH.unknown }
    local function run_with(concurrency, c)
        return scan_hashes(hashes, { client = c or client("v3"), concurrency = concurrency })
    end

    it("gives the same outcomes as one look-up after another, with requests overlapping", function()
        local one = run_with(1)
        srv:reset()
        srv:fault { type = "slow", delay = 0.3, count = -1, path = "/api/v3/files/" }
        local many = run_with(4)
        for i, o in ipairs(one.entities) do
            local m = many.entities[i]
            assert.same({ o.entity, o.status, o.positives, o.suspicious }, { m.entity, m.status, m.positives, m.suspicious })
        end
        local log = srv:log()
        assert.equal(#hashes, #log)
        -- the first goes alone (a wrong key or a spent quota costs one request); the other
        -- three arrive together, before the second (slowed by 0.3 s) could have been answered
        assert.is_true(log[2].mono - log[1].mono >= 0.25)
        assert.is_true(log[4].mono - log[2].mono < 0.25)
    end)

    it("stays within the client's limiter", function()
        local c = vt.client { apikey = "test-key", base_url = srv.url, quota_state = false, max_wait = 5,
                              rate = { { n = 2, per = 0.5 } } }
        local res = run_with(4, c)
        assert.equal("Completed", res.status)
        local log = srv:log()
        assert.equal(#hashes, #log)
        for i = 3, #log do
            assert.is_true(log[i].mono - log[i - 2].mono >= 0.45, "three requests within 0.5 s")
        end
    end)

    it("rejects a concurrency that is not a whole number of 1 or more", function()
        assert.has_error(function() soar.new { client = client("v3"), concurrency = 0 } end)
        assert.has_error(function() soar.new { client = client("v3"), concurrency = 1.5 } end)
    end)
end)

-- The API requests in the fake's log whose "METHOD path" matches `pattern`, and their queries.
local function matching(pattern)
    local out = {}
    for _, e in ipairs(srv:log()) do
        if (e.method .. " " .. e.path):find(pattern) then out[#out + 1] = e.query end
    end
    return out
end

describe("vt.soar over v2 groups its look-ups (v2_batch)", function()
    -- the fifth is the first again (another entity, the same hash once cleaned)
    local hashes = { HASH.bad, HASH.seven, HASH.clean, HASH.unknown, " " .. HASH.bad, "b" .. HASH.seven:sub(2) }
    local function run_with(v2_batch, c)
        return scan_hashes(hashes, { client = c or client("v2"), v2_batch = v2_batch })
    end

    it("asks for 4 file reports a request by default, 25 when told, with the outcomes of one by one", function()
        local one = run_with(1)
        assert.equal(6, #matching("^GET /vtapi/v2/file/report$"))
        srv:reset()
        local four = run_with(nil)
        local queries = matching("^GET /vtapi/v2/file/report$")
        assert.equal(2, #queries) -- five distinct hashes: four, then one alone; the repeated one answered once
        assert.matches("resource=" .. HASH.bad .. "%%2C" .. HASH.seven .. "%%2C" .. HASH.clean .. "%%2C" .. HASH.unknown,
            queries[1])
        assert.equal(2, four.requests)
        srv:reset()
        srv:set_key("test-key", true) -- 25 resources a request need a premium key
        local all = run_with(25)
        assert.equal(1, #matching("^GET /vtapi/v2/file/report$"))
        assert.equal(1, all.requests)
        for i, o in ipairs(one.entities) do
            for _, res in ipairs { four, all } do
                local b = res.entities[i]
                assert.same({ o.entity, o.status, o.positives, o.suspicious },
                    { b.entity, b.status, b.positives, b.suspicious })
            end
        end
        assert.same({ "done", "done", "done", "not_found", "done", "not_found" },
            { all.entities[1].status, all.entities[2].status, all.entities[3].status, all.entities[4].status,
                all.entities[5].status, all.entities[6].status })
    end)

    it("asks for URL reports by new-line separated batches, and submits the unknown ones", function()
        local new = "http://batch-new.example/VT-FAKE-MALICIOUS=3"
        local host = new_host { entity(URL_KNOWN, "DestinationURL"), entity("http://github.com", "DestinationURL"),
            entity(new, "DestinationURL") }
        local res = soar.new { client = client("v2"), host = host, poll_interval = 0.05 }.scan_url { case_id = "1" }
        assert.equal("Completed", res.status)
        local o = by_name(res)
        assert.same({ "done", 5 }, { o[URL_KNOWN].status, o[URL_KNOWN].positives })
        assert.same({ "done", 3 }, { o[new].status, o[new].positives })
        local queries = matching("^GET /vtapi/v2/url/report$")
        assert.matches("%%0A", queries[1])
        assert.equal(1, #matching("^POST /vtapi/v2/url/scan$"))
        assert.equal(#srv:log(), res.requests)
    end)

    it("stops at a batch the quota refuses, keeping what the earlier ones brought", function()
        srv:quota { per_day = 1 }
        local res = run_with(nil)
        local o = by_name(res)
        assert.same({ "done", "done", "done", "not_found" },
            { o[HASH.bad].status, o[HASH.seven].status, o[HASH.clean].status, o[HASH.unknown].status })
        assert.equal("quota", o[hashes[6]].status)
        assert.equal(2, #srv:log()) -- the second batch was refused; nothing more was tried
        assert.matches("due to reaching API request limitation", res.message, 1, true)
    end)

    it("fails the run on a wrong key with one request", function()
        local res = run_with(nil, client("v2", "wrong-key"))
        assert.equal("Failed", res.status)
        assert.matches("^Invalid API key was provided", res.message)
        assert.equal(1, #srv:log())
        assert.equal("not tried: the run stopped", res.entities[2].reason)
    end)
end)

for _, api in ipairs { "v3", "v2" } do
    describe("vt.soar over " .. api .. " says what a run spent", function()
        it("in requests (the requests in the fake's log) and cache_hits", function()
            local file = tmpfile("spent " .. api)
            local host = new_host { entity(HASH.bad, "FILEHASH"), entity(URL_KNOWN, "DestinationURL"),
                entity("1.1.1.1", "ADDRESS"), entity("github.com", "DOMAIN") }
            local tools = make_tools(api, host)
            for _, call in ipairs {
                { "ping", {} }, { "scan_hash", {} }, { "scan_url", {} }, { "scan_ip", {} }, { "get_domain_report", {} },
                { "upload_and_scan_files", { file_paths = file } }, { "scan_hash", { threshold = "x" } },
                { "scan_hash", { rescan_after_days = 1, wait = false } },
            } do
                local before = #srv:log()
                call[2].case_id = "1"
                local res = tools[call[1]](call[2])
                assert.equal(#srv:log() - before, res.requests, call[1])
                assert.equal(0, res.cache_hits, call[1])
                if res.state then
                    before = #srv:log()
                    local done = tools.resume(res.state)
                    assert.equal("Completed", done.status)
                    assert.equal(#srv:log() - before, done.requests)
                    assert.is_true(done.requests > 0)
                end
            end
            os.remove(file)
        end)
    end)

    describe("vt.soar over " .. api .. " with a verdict policy", function()
        local function props(host, id) return entity_of(host, id).AdditionalProperties end
        local function insight_of(host, id)
            for _, i in ipairs(host:case("1").insights) do
                if i.entity == id or i.title:find(id, 1, true) then return i end
            end
        end

        it("scan_hash marks what the verdict calls malicious and explains it; a JSON text works alike", function()
            local host = new_host { entity(HASH.bad, "FILEHASH"), entity(HASH.seven, "FILEHASH"),
                entity(HASH.clean, "FILEHASH") }
            local res = make_tools(api, host).scan_hash { case_id = "1", threshold = 1,
                policy = { file = { malicious = 50 } } }
            assert.is_true(res.result_value)
            assert.matches("vt.verdict", res.rule, 1, true)
            local o = by_name(res)
            assert.same({ "malicious", 3, true }, { o[HASH.bad].verdict, o[HASH.bad].score, o[HASH.bad].suspicious })
            assert.same({ "suspicious", 2, false }, { o[HASH.seven].verdict, o[HASH.seven].score, o[HASH.seven].suspicious })
            assert.same({ "harmless", 1, false }, { o[HASH.clean].verdict, o[HASH.clean].score, o[HASH.clean].suspicious })
            assert.same({ "malicious", 3 }, { props(host, HASH.bad).VT_verdict, props(host, HASH.bad).VT_score })
            assert.same({ "suspicious", 2 }, { props(host, HASH.seven).VT_verdict, props(host, HASH.seven).VT_score })
            assert.is_true(entity_of(host, HASH.bad).IsSuspicious)
            assert.is_false(entity_of(host, HASH.seven).IsSuspicious) -- the threshold of 1 is not used
            assert.equal(1, #host:case("1").insights)
            assert.equal("VirusTotal - " .. HASH.bad .. " verdict: malicious (score 3): 53 of "
                .. o[HASH.bad].total .. " engines say malicious (threshold 50)", insight_of(host, HASH.bad).message)

            local again = new_host { entity(HASH.seven, "FILEHASH") }
            res = make_tools(api, again).scan_hash { case_id = "1", policy = '{"file": {"malicious": 50}}',
                suspicious_is_enough = true }
            assert.same({ "suspicious", true }, { res.entities[1].verdict, res.entities[1].suspicious })
            assert.matches("malicious or suspicious", res.rule, 1, true)
            assert.matches("verdict: suspicious %(score 2%): 7 of %d+ engines say malicious or suspicious %(threshold 5%)",
                insight_of(again, HASH.seven).message)
        end)

        it("scan_url marks a suspicious verdict with suspicious_is_enough", function()
            local host = new_host { entity(URL_KNOWN, "DestinationURL") }
            local res = make_tools(api, host).scan_url { case_id = "1", policy = {}, suspicious_is_enough = true }
            assert.same({ "suspicious", true }, { res.entities[1].verdict, res.entities[1].suspicious })
            assert.equal("suspicious", props(host, URL_KNOWN).VT_verdict)
            assert.matches("verdict: suspicious (score 2)", insight_of(host, URL_KNOWN).message, 1, true)
        end)

        it("scan_ip and get_domain_report judge by related files, looked up through the tools' client", function()
            local policy = { file = { malicious = 1 }, related = true, related_malicious = 1 }
            local host = new_host { entity("1.1.1.1", "ADDRESS"), entity("haiku-os.org", "DOMAIN") }
            local tools = make_tools(api, host)
            local ip = tools.scan_ip { case_id = "1", policy = policy }
            assert.same({ "malicious", 3, true }, { ip.entities[1].verdict, ip.entities[1].score, ip.entities[1].suspicious })
            assert.is_true(entity_of(host, "1.1.1.1").IsSuspicious)
            assert.equal(3, props(host, "1.1.1.1").VT_score)
            local text = insight_of(host, "1.1.1.1").message
            assert.matches("\nVerdict: malicious (score 3): ", text, 1, true)
            assert.matches("communicating files %(%d+ counted%): %d+ malicious %(threshold 1%)", text)
            -- v3: the IP, five related lists, and the verdict's one look-up; v2: the report has the lists
            assert.equal(api == "v3" and 7 or 1, ip.requests)
            local domain = tools.get_domain_report { case_id = "1", policy = vt.encode(policy) }
            assert.same({ "malicious", true }, { domain.entities[1].verdict, domain.entities[1].suspicious })
            assert.is_true(entity_of(host, "haiku-os.org").IsSuspicious)
            assert.equal("malicious", props(host, "haiku-os.org").VT_verdict)
            assert.matches("^VirusTotal %- haiku%-os%.org verdict: malicious %(score 3%)",
                insight_of(host, "haiku-os.org").message)
            local rows = {}
            for _, row in ipairs(host:case("1").tables[2].rows) do rows[row[1]] = row[2] end
            assert.same({ "malicious", 3 }, { rows.VT_verdict, rows.VT_score })
        end)

        it("upload_and_scan_files judges the finished analysis", function()
            local marked, mild = tmpfile("policy VT-FAKE-MALICIOUS=9 " .. api), tmpfile("policy VT-FAKE-MALICIOUS=2 " .. api)
            local host = new_host {}
            local res = make_tools(api, host).upload_and_scan_files { case_id = "1", file_paths = { marked, mild },
                policy = { file = { malicious = 9 } } }
            local o = by_name(res)
            assert.same({ "malicious", true }, { o[marked].verdict, o[marked].suspicious })
            assert.same({ "harmless", false }, { o[mild].verdict, o[mild].suspicious })
            local case = host:case("1")
            assert.equal(1, #case.insights)
            assert.equal(("File %s found as suspicious."):format(marked), case.insights[1].title)
            assert.matches("verdict: malicious (score 3): 9 of ", case.insights[1].message, 1, true)
            os.remove(marked)
            os.remove(mild)
        end)

        it("keeps the policy across resume", function()
            local host = new_host { entity(HASH.seven, "FILEHASH") }
            local tools = make_tools(api, host)
            local res = tools.scan_hash { case_id = "1", rescan_after_days = 1, wait = false,
                policy = { file = { malicious = 7 } } }
            assert.equal("InProgress", res.status)
            local done = tools.resume(res.state)
            assert.same({ "done", "malicious", true }, { done.entities[1].status, done.entities[1].verdict,
                done.entities[1].suspicious })
            assert.matches("vt.verdict", done.rule, 1, true)
        end)

        it("ping takes a policy; a malformed one fails a run before any request, a wrong key or type raises", function()
            local tools = make_tools(api, new_host { entity(HASH.bad, "FILEHASH") })
            assert.equal("Completed", tools.ping { policy = { file = { malicious = 3 } } }.status)
            srv:reset()
            for _, name in ipairs { "ping", "scan_hash" } do
                local res = tools[name] { case_id = "1", policy = "{not json" }
                assert.equal("Failed", res.status)
                assert.matches("parameter 'policy'", res.message, 1, true)
            end
            assert.equal("Failed", tools.scan_hash { case_id = "1", policy = '{"file": {"malicious": "many"}}' }.status)
            assert.matches("unknown policy key 'colour'", tools.scan_hash { case_id = "1", policy = '{"colour": 1}' }.message,
                1, true)
            assert.equal(0, #srv:log())
            assert.has_error(function() tools.scan_hash { case_id = "1", policy = { colour = 1 } } end,
                "vt.verdict: unknown policy key 'colour'")
            assert.has_error(function() tools.scan_hash { case_id = "1", policy = 3 } end)
            local plain = new_host { entity(HASH.bad, "FILEHASH") }
            make_tools(api, plain).scan_hash { case_id = "1" }
            assert.is_nil(props(plain, HASH.bad).VT_verdict) -- without a policy, the seed's threshold alone
        end)
    end)
end

describe("soar.new", function()
    it("checks its options", function()
        local c = vt.client { apikey = "k", quota_state = false }
        assert.has_error(function() soar.new { client = c, colour = 1 } end, "soar.new: unknown option 'colour'")
        assert.has_error(function() soar.new { client = c, api = "v2" } end,
            "soar.new: option 'api' is \"v2\" but the client speaks \"v3\" (the client's api decides)")
        assert.has_error(function() soar.new { client = c, api = "v4" } end)
        assert.has_error(function() soar.new { client = client("v2"), comments = 5 } end,
            "soar.new: option 'comments' needs a client speaking v3 (v2 has no comments endpoint)")
        for _, n in ipairs { 0, 26, 1.5 } do
            assert.has_error(function() soar.new { client = c, v2_batch = n } end)
        end
        assert.is_table(soar.new { client = c, api = "v3", v2_batch = 25 })
        if not os.getenv("VT_API_KEY") then -- with neither a client nor a key, the client it makes says why
            assert.has_error(function() soar.new {} end, "vt.client: option 'apikey' is required (or set VT_API_KEY)")
        end
        local tools = soar.new { client = c }
        local names = { "ping", "scan_hash", "scan_url", "scan_ip", "get_domain_report", "upload_and_scan_files" }
        for _, name in ipairs(names) do
            assert.is_function(tools[name])
            assert.is_function(tools["virus_total_" .. name])
        end
    end)

    it("refuses a state made for the other protocol", function()
        local host = new_host { entity(HASH.bad, "FILEHASH") }
        local state = make_tools("v2", host).scan_hash { case_id = "1", rescan_after_days = 1, wait = false }.state
        local v3 = soar.new { client = vt.client { apikey = "k", quota_state = false }, host = host }
        local res = v3.resume(state)
        assert.equal("Failed", res.status)
        assert.matches("made with API v2", res.message, 1, true)
        assert.equal("Failed", v3.resume("{}").status)
    end)

    it("pauses between v2 polls with the sleep it is given", function()
        local slept = {}
        local host = new_host { entity("http://sleepy.example/page", "DestinationURL") }
        local tools = soar.new { client = client("v2"), host = host, poll_interval = 0.25,
            sleep = function(s) slept[#slept + 1] = s end }
        local res = tools.scan_url { case_id = "1" }
        assert.equal("done", res.entities[1].status)
        assert.is_true(#slept >= 1)
        assert.equal(0.25, slept[1])
    end)

    it("runs inside a coroutine on a yielding client: look-ups and the pauses between polls yield", function()
        for _, api in ipairs { "v3", "v2" } do
            local c = vt.client { apikey = "test-key", base_url = srv.url, api = api, quota_state = false, yield = true }
            local url = "http://yield-" .. api .. ".example/VT-FAKE-MALICIOUS=2"
            local tools = soar.new { client = c, host = new_host { entity(url, "DestinationURL") }, poll_interval = 0.05 }
            local loop = require("vt.loop").new(c)
            local task = loop:spawn(function() return tools.scan_url { case_id = "1" } end)
            assert.is_false(task.done) -- waiting for the first look-up
            loop:run()
            assert.is_true(task.ok, tostring(task.error))
            assert.same({ "done", 2 }, { task.results[1].entities[1].status, task.results[1].entities[1].positives })
        end
    end)

    it("writes comments tables when asked (v3)", function()
        local host = new_host { entity(HASH.seven, "FILEHASH") }
        make_tools("v3", host, { comments = 3 }).scan_hash { case_id = "1" }
        local tables = host:case("1").tables
        assert.equal("Comments to " .. HASH.seven, tables[2].title)
        assert.equal(3, #tables[2].rows)
    end)
end)

describe("soar.memory_host", function()
    it("loads a case file, and dumps and saves what the tools wrote", function()
        local path = tmpfile(cjson.encode { cases = { { id = 42, alert_groups = { g = { entities = {
            { Identifier = HASH.seven, EntityType = "FILEHASH", IsInternal = false, IsSuspicious = false,
                AdditionalProperties = { Source = "mail", Count = 3 } } } } } } } })
        local host = assert(soar.memory_host(path))
        local case = host:case(42)
        assert.equal("42", case.id)
        assert.equal("integer", math.type(case.alert_groups.g.entities[1].AdditionalProperties.Count))
        make_tools("v3", host).scan_hash { case_id = "42", threshold = 5 }
        local dump = host:dump()
        local e = dump.cases[1].alert_groups.g.entities[1]
        assert.is_true(e.IsEnriched)
        assert.is_true(e.IsSuspicious)
        assert.equal("mail", e.AdditionalProperties.Source)
        assert.equal(7, e.AdditionalProperties.VT_Positives)
        assert.equal(1, #dump.cases[1].insights)
        assert.equal(HASH.seven, dump.cases[1].insights[1].entity)
        dump.cases[1].id = "changed" -- a copy
        assert.equal(case, host:case("42"))
        assert(host:save(path))
        local again = assert(soar.memory_host(path))
        assert.same(host:dump(), again:dump())
        os.remove(path)
    end)

    it("says what is wrong with a bad case file", function()
        local ok, err = soar.memory_host("/nonexistent/case.json")
        assert.is_nil(ok)
        assert.matches("No such file", err)
        local path = tmpfile("{\"nope\": 1}")
        ok, err = soar.memory_host(path)
        assert.is_nil(ok)
        assert.equal("a case file needs a 'cases' list", err)
        os.remove(path)
        assert.has_error(function() soar.memory_host(42) end)
    end)
end)
