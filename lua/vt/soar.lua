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
-- `{status, result_value, message, json_result, entities, requests, cache_hits, rule?, state?}`;
-- docs/soar.md has the parameters, statuses, the host interface and the quota each tool spends.
-- @module vt.soar
local core = require "vt.core"
local host = require "vt.soar.host"
local entities = require "vt.soar.entities"
local run = require "vt.soar.run"
local tools = require "vt.soar.tools"

local input, backend = core.input, core.backend

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
    v2_batch = "number", progress = "function",
}
for name, types in pairs(input.CLIENT_OPTIONS) do
    OPTIONS[name] = types
end

--- Makes the tools. They speak the client's protocol (its `api` option, v3 or v2).
-- @tparam table opts
-- @param opts.client a `vt.client`; or, to make one, `apikey` (default env `VT_API_KEY`),
--   `base_url`, `requests_per_minute`, `quota_state`, `max_wait`, `timeout`, `api` and `cache`
--   (default `true`: the response cache in the user's cache directory; `false` for none)
-- @tparam[opt] table opts.host the case host (default: an empty `memory_host`)
-- @tparam[opt] string opts.api `"v3"` or `"v2"`: when given, it must be the client's `api`
--   (a contradiction raises, naming both)
-- @tparam[opt=15] number opts.poll_interval seconds between two polls of a submission
-- @tparam[opt=600] number opts.poll_timeout how long a waiting tool polls in all, in seconds
-- @tparam[opt=10] integer opts.related_limit related objects of each of the five kinds a v3
--   `scan_ip` reads per address (0: none, one request per address)
-- @tparam[opt=0] integer opts.comments comments to read per done hash or URL, into a
--   "Comments to ..." table (v3 only; one more request per entity)
-- @tparam[opt=4] integer opts.concurrency v3 look-ups of one run in flight at once (through
--   `c:batch`, within the client's limiter); 1 looks entities up one after another
-- @tparam[opt=4] integer opts.v2_batch v2 file or URL reports asked for in one request (1 to 25;
--   a public key takes 4, a premium one 25); 1 asks one by one
-- @tparam[opt] function opts.sleep `function(seconds)`, the pause between two polls; default
--   the client's `sleep`, which yields in coroutine mode
-- @tparam[opt] function opts.progress `function(event)`, told each entity's stage as a tool runs:
--   `event.tool` (the tool's short name), `kind`, `value` (the indicator, or the file's path),
--   `stage` (`"looked up"`, `"not found"`, `"uploading"`, `"queued"`, `"in-progress"`, `"done"`,
--   `"failed"`), `text` (`"uploading 35%"`, `"in-progress 40 s"`, ...) and the stage's figures
--   (`percent`, `done_bytes`, `total_bytes`, `elapsed`, `reason`); see docs/soar.md. Returning
--   `false` while a file uploads cancels that upload
-- @treturn table the tools, by seed name and by short alias, and `resume`
function soar.new(opts)
    opts = input.options("soar.new", opts, OPTIONS)
    opts.client = input.client("soar.new", opts)
    input.whole("soar.new", opts, "related_limit", 0)
    input.whole("soar.new", opts, "comments", 0)
    input.whole("soar.new", opts, "concurrency", 1)
    input.whole("soar.new", opts, "v2_batch", 1, 25)
    local api = input.protocol("soar.new", opts.client, opts.api)
    if api == "v2" and (opts.comments or 0) > 0 then
        error("soar.new: option 'comments' needs a client speaking v3 (v2 has no comments endpoint)", 2)
    end
    local ctx = {
        api = api, client = opts.client,
        host = opts.host or soar.memory_host { cases = {} },
        poll_interval = opts.poll_interval or 15,
        poll_timeout = opts.poll_timeout or 600,
        comments = opts.comments or 0,
    }
    local progress = opts.progress and function(event)
        event.tool = ctx.running
        return opts.progress(event)
    end
    ctx.backend = backend.new(opts.client, {
        relationships = { ip = backend.NETWORK }, related_limit = opts.related_limit or 10,
        interval = opts.poll_interval or 15, sleep = opts.sleep,
        concurrency = opts.concurrency or 4, v2_batch = opts.v2_batch or 4, progress = progress,
    })
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
