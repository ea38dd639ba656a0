-- Quota economy of the playbook layer (issue 10): three cases whose entities overlap, triaged by
-- the six vt.soar tools in three processes at once, each making its own client (the response
-- cache on by default, in one $XDG_CACHE_HOME): the fake VirusTotal sees one request per
-- distinct indicator, and a second pass within the TTL sends none.
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"
local workers = require "helpers.workers"
local system = require "system"

local HASHES = {
    "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c", -- Win32 EXE
    "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740", -- ELF
    "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c", -- MS Word
}
local URLS = { "http://example.com/", "https://www.dropbox.com/s/qmi112rc4ns75eb/Confidential_123.xls?dl=1" }
local IPS = { "8.8.8.8", "1.1.1.1" }
local DOMAINS = { "github.com", "virustotal.com", "haiku-os.org" }

local function entity(id, kind)
    return { Identifier = id, EntityType = kind, IsInternal = false, IsSuspicious = false, AdditionalProperties = {} }
end

-- Case p takes every indicator but one of each kind, so each appears in two or three cases.
local function case_entities(p)
    local list = {}
    local function add(values, kind)
        for i, v in ipairs(values) do
            if i % 3 ~= p % 3 or #values < 3 and i ~= p then list[#list + 1] = entity(v, kind) end
        end
    end
    add(HASHES, "FILEHASH")
    add(URLS, "DestinationURL")
    add(IPS, "ADDRESS")
    add(DOMAINS, "DOMAIN")
    return list
end

describe("vt.soar workers sharing the default cache", function()
    local srv, dir

    setup(function()
        srv = fake.start { analysis_steps = 0 }
        dir = files.tmpdir()
    end)
    teardown(function()
        srv:stop()
        files.rmtree(dir)
    end)

    it("send one request per distinct indicator over the six tools, and none on a second pass", function()
        local uploads = {}
        for i = 1, 3 do
            local content = "a sample the service knows " .. i
            srv:register_file(content)
            uploads[i] = dir .. "/sample" .. i .. ".bin"
            files.write(uploads[i], content)
        end
        local jobs = {}
        for p = 1, 3 do
            local case = dir .. "/case" .. p .. ".json"
            files.write(case, vt.encode { cases = { { id = tostring(p),
                alert_groups = { ["ag-1"] = { entities = case_entities(p) } } } } })
            local params = { case_id = tostring(p) }
            jobs[p] = {
                soar = { apikey = srv.key, base_url = srv.url, quota_state = false, poll_interval = 0.05 },
                case = case,
                tools = { { "ping", {} }, { "scan_hash", params }, { "scan_url", params }, { "scan_ip", params },
                          { "get_domain_report", params },
                          { "upload_and_scan_files", { case_id = tostring(p),
                            file_paths = { uploads[p], uploads[p % 3 + 1] } } } },
            }
        end
        local env = { XDG_CACHE_HOME = dir .. "/cache" }
        for pass = 1, 2 do
            local since = #srv:log()
            local start = system.gettime() + 0.5
            for _, job in ipairs(jobs) do job.start = start end
            local outputs = workers.run(jobs, env)
            local hits, cache_errors = 0, 0
            for p = 1, 3 do
                assert.equal(7, #outputs[p], table.concat(outputs[p], "\n"))
                cache_errors = cache_errors + workers.stats(outputs[p]).errors
                for _, line in ipairs(outputs[p]) do
                    local name, status, _, cache_hits, statuses = line:match("^tool (%S+) (%S+) (%d+) (%d+) ?(.*)$")
                    assert.equal("Completed", status, line)
                    assert.is_nil(statuses:find("failed", 1, true), line)
                    hits = hits + tonumber(cache_hits)
                    assert.truthy(name)
                end
            end
            local distinct, extra = workers.paths_asked(srv, since, function(e)
                assert.equal("GET", e.method, e.path) -- nothing uploaded: the files are known
            end)
            -- a second request for one path only where a worker's cache call failed (a lock held
            -- past the busy timeout on a loaded host): the look-up then goes on uncached, counted
            assert.is_true(extra <= cache_errors, ("%d requests beyond one per path, %d cache errors"):format(
                extra, cache_errors))
            if pass == 1 then
                -- the ping URL, 3 hashes, 2 URLs, 2 IPs and the first page of each of their 5
                -- related lists, 3 domains and the URLs' own domains (example.com,
                -- www.dropbox.com), 3 uploaded files
                assert.equal(1 + 3 + 2 + 2 * (1 + 5) + 3 + 2 + 3, distinct)
            else
                assert.equal(0, distinct)
                assert.is_true(hits > 0)
            end
        end
    end)
end)
