--- SecOps-style playbook tools: the six tools of the Google SecOps VirusTotal integration.
--
--    local vt = require "vt"
--    local soar = require "vt.soar"
--    local host = assert(soar.memory_host "case.json")
--    local tools = soar.new{client = vt.client{apikey = key}, host = host}
--    local res = tools.scan_hash{case_id = "42", threshold = "5"}
--    print(res.status, res.result_value, res.message)
--
-- Tools (seed name and short alias): `virus_total_ping` / `ping`, `virus_total_scan_hash` /
-- `scan_hash`, `virus_total_scan_url` / `scan_url`, `virus_total_scan_ip` / `scan_ip`,
-- `virus_total_get_domain_report` / `get_domain_report`, `virus_total_upload_and_scan_files` /
-- `upload_and_scan_files`; plus `tools.resume(state)`.
--
-- Every tool takes one table of parameters and returns
-- `{status, result_value, message, json_result, entities, rule?, state?}`; docs/soar.md has the
-- parameters, statuses, the host interface and the quota each tool spends.
-- @module vt.soar
local host = require "vt.soar.host"
local entities = require "vt.soar.entities"
local backend = require "vt.soar.backend"
local run = require "vt.soar.run"
local tools = require "vt.soar.tools"

local soar = {}

--- Valid `scope` values.
soar.SCOPES = entities.SCOPES

--- Entity types of the SecOps model.
soar.ENTITY_TYPES = entities.TYPES

--- Item statuses a result's `entities` list uses.
soar.STATUSES = run.STATUSES

--- The embedded host: cases in memory, from a table or a JSON file (see vt.soar.host).
soar.memory_host = host.memory_host

local OPTIONS = {
    client = "userdata", host = "table", api = "string", poll_interval = "number", poll_timeout = "number",
    related_limit = "number", comments = "number", sleep = "function", concurrency = "number",
}

local function check_options(opts)
    if type(opts) ~= "table" then
        error("soar.new: options must be a table (got " .. type(opts) .. ")", 3)
    end
    for k, v in pairs(opts) do
        local want = OPTIONS[k]
        if not want then
            error(("soar.new: unknown option '%s'"):format(tostring(k)), 3)
        end
        if type(v) ~= want then
            local what = want == "userdata" and "vt.client" or want
            error(("soar.new: option '%s' must be a %s (got %s)"):format(k, what, type(v)), 3)
        end
    end
    if opts.client == nil then
        error("soar.new: option 'client' is required", 3)
    end
    if opts.api ~= nil and opts.api ~= "v3" and opts.api ~= "v2" then
        error(("soar.new: option 'api' must be \"v3\" or \"v2\" (got %q)"):format(opts.api), 3)
    end
    for _, k in ipairs { "related_limit", "comments" } do
        if opts[k] and (math.type(opts[k]) ~= "integer" or opts[k] < 0) then
            error(("soar.new: option '%s' must be a whole number, 0 or more"):format(k), 3)
        end
    end
    if opts.concurrency and (math.type(opts.concurrency) ~= "integer" or opts.concurrency < 1) then
        error("soar.new: option 'concurrency' must be a whole number, 1 or more", 3)
    end
    if opts.api == "v2" and (opts.comments or 0) > 0 then
        error("soar.new: option 'comments' needs api \"v3\" (v2 has no comments endpoint here)", 3)
    end
end

--- Makes the tools.
-- @tparam table opts
-- @param opts.client a `vt.client`
-- @tparam[opt] table opts.host the case host (default: an empty `memory_host`)
-- @tparam[opt="v3"] string opts.api the protocol to speak, `"v3"` or `"v2"`: give `"v2"` when the
--   client was made with `api = "v2"` (a client does not tell its protocol)
-- @tparam[opt=15] number opts.poll_interval seconds between two polls of a submission
-- @tparam[opt=600] number opts.poll_timeout how long a waiting tool polls in all, in seconds
-- @tparam[opt=10] integer opts.related_limit related objects of each of the five kinds a v3
--   `scan_ip` reads per address (0: none, one request per address)
-- @tparam[opt=0] integer opts.comments comments to read per done hash or URL, into a
--   "Comments to ..." table (v3 only; one more request per entity)
-- @tparam[opt=4] integer opts.concurrency look-ups of one run in flight at once (v3, through
--   `c:batch`, within the client's limiter); 1 looks entities up one after another
-- @tparam[opt] function opts.sleep `function(seconds)`, the pause between two v2 polls (v3
--   polls inside `c:wait`); default the client's `sleep`, which yields in coroutine mode
-- @treturn table the tools, by seed name and by short alias, and `resume`
function soar.new(opts)
    check_options(opts)
    local api = opts.api or "v3"
    local ctx = {
        api = api,
        host = opts.host or soar.memory_host { cases = {} },
        poll_timeout = opts.poll_timeout or 600,
        comments = opts.comments or 0,
        backend = backend.new {
            client = opts.client, api = api, poll_interval = opts.poll_interval or 15,
            related_limit = opts.related_limit or 10, sleep = opts.sleep,
            concurrency = opts.concurrency or 4,
        },
    }
    local set = {}
    for name, tool in pairs(tools) do
        local function call(params)
            return run.execute(ctx, tool, params)
        end
        set[name] = call
        set[tool.seed] = call
    end
    --- Goes on with a run that returned a `state` (InProgress or TimedOut), in this process or
    -- another; `opts.wait = false` polls once instead of waiting.
    function set.resume(state, resume_opts)
        return run.resume(ctx, tools, state, resume_opts)
    end
    return set
end

return soar
