--- The `vt-lua` command: VirusTotal from the shell (`bin/vt-lua` runs `main`).
--
--    vt-lua file 44d88612fea8a8f36de82e1278abb02f
--    cut -f2 iocs.tsv | vt-lua domain - --json --fields last_analysis_stats.malicious
--
-- Look-ups, scans, downloads, related objects, a SecOps-style triage of a case file and the
-- quotas, printed as an aligned table or as one JSON document per line. The key comes from
-- `VT_API_KEY` or `--apikey-file`, never from an argument. Exit status 0 when every item
-- succeeded, 1 when any failed, 2 on a usage error. The commands, their options and their output
-- are described in docs/cli.md and by `vt-lua --help`.
-- @module vt.cli
local vt = require "vt"
local report = require "vt.cli.report"
local progress = require "vt.progress"

local cli = {}

local PROG = "vt-lua"

local LOOKUPS = { file = true, url = true, domain = true, ip = true }
local OBJECT_COMMANDS = { file = true, url = true, domain = true, ip = true, scan = true, related = true }
local WHAT = { file = "hash", url = "URL", domain = "domain", ip = "IP address" }

-- Every option: the name of its value (flags have none) and the commands that take it (nil: all).
local OPTIONS = {
    help = {},
    json = {},
    ["apikey-file"] = { value = "PATH" },
    ["base-url"] = { value = "URL" },
    cache = { value = "SPEC", optional = true },
    ["requests-per-minute"] = { value = "N" },
    api = { value = "v2|v3", commands = { file = true, url = true, domain = true, ip = true, download = true,
        triage = true } },
    fields = { value = "LIST", commands = OBJECT_COMMANDS },
    concurrency = { value = "N", commands = LOOKUPS },
    wait = { commands = { scan = true } },
    ["poll-interval"] = { value = "SECONDS", commands = { scan = true, triage = true } },
    max = { value = "N", commands = { related = true } },
    case = { value = "ID", commands = { triage = true } },
    threshold = { value = "N", commands = { triage = true } },
    save = { value = "PATH", commands = { triage = true } },
}

local KEY_REFUSED = "the API key is not taken from the command line, where `ps` and the shell's history "
    .. "would show it: set VT_API_KEY or give --apikey-file PATH"

local HELP = {}

HELP.main = [[
Usage: vt-lua COMMAND [ARGUMENTS] [OPTIONS]

VirusTotal from the shell.

Commands:
  file|url|domain|ip ID...   look indicators up; - reads one a line from stdin
  scan FILE|URL...           submit files and URLs for analysis (--wait for the result)
  download HASH DEST         save a file's content to DEST
  related KIND ID REL        the objects related to one (--max N)
  triage CASE.json           run the SecOps tools on the entities of a case file
  quota                      the local limiter's windows and the service's quotas
  help [COMMAND]             this text, or a command's

Options of every command:
  --json                     one JSON document per line instead of a table
  --apikey-file PATH         read the API key from PATH (default: $VT_API_KEY)
  --base-url URL             the service (default: $VT_BASE_URL, else VirusTotal)
  --cache[=SPEC]             the client's response cache: bare for the default
                             (SQLite in the user's cache directory), sqlite:PATH or redis://...
  --requests-per-minute N    a local limit, shared by every process using the key
  -h, --help                 help (vt-lua COMMAND --help for a command's)

The key is never taken from an argument (--apikey is refused): `ps` would show it.
Exit status: 0 when every item succeeded, 1 when any failed, 2 on a usage error.
]]

HELP.lookup = [[
Usage: vt-lua file|url|domain|ip ID... [OPTIONS]
       vt-lua file|url|domain|ip - [OPTIONS]      (one indicator a line on stdin)

Looks each indicator up: a file by MD5, SHA-1 or SHA-256, a URL (or its id), a domain, an IP
address. Defanged forms (hxxp://, [.]) are accepted. Each indicator is checked first: a
malformed one fails with InvalidArgument and costs no request. The look-ups go out together
within the client's limiter (and its cache, with --cache). On stdin, blank lines and lines
starting with # are skipped.

Options:
  --fields a,b.c             show these attributes (dotted paths into attributes; a path the
                             attributes lack is looked up on the object: id, type, links)
  --concurrency N            look-ups in flight at once (default 8)
  --api v2|v3                the protocol (default v3; v2: one report request each)
  --json, --apikey-file, --base-url, --cache, --requests-per-minute (see vt-lua --help)

Output: INDICATOR, KIND, DETECTIONS (malicious/engines), VERDICT (vt.verdict's), DATE (of
the last analysis, UTC) and DETAILS (a name, a registrar, an owner); a failed item shows its
error instead. With --json, each object as the service sent it, or {"input", "kind", "error"}.
]]

HELP.scan = [[
Usage: vt-lua scan FILE|URL... [--wait] [OPTIONS]

Submits each argument for analysis: a URL when it has a scheme (http://, hxxp://, ...), else a
local file. Prints the analysis id; with --wait, polls each analysis until it completes and
prints its result. A file's upload and the polls show their progress on stderr: one updating
line on a terminal, plain lines otherwise.

Options:
  --wait                     wait for each analysis to complete
  --poll-interval SECONDS    between two polls (default 15)
  --fields a,b.c             show these attributes of the analysis (e.g. stats.malicious,status)
  --json, --apikey-file, --base-url, --cache, --requests-per-minute (see vt-lua --help)
]]

HELP.download = [[
Usage: vt-lua download HASH DEST [OPTIONS]

Saves the content of the file HASH (MD5, SHA-1 or SHA-256) to DEST. The content is checked
against the hash; nothing is left at DEST when the download fails. Needs a key with download
rights.

Options:
  --api v2|v3                the protocol (default v3)
  --json, --apikey-file, --base-url, --requests-per-minute (see vt-lua --help)

Output: HASH, SIZE, SHA256 and PATH; with --json {"path", "size", "md5", "sha1", "sha256"}.
]]

HELP.related = [[
Usage: vt-lua related KIND ID RELATIONSHIP [--max N] [OPTIONS]

Lists the objects related to one: KIND is file, url, domain or ip; RELATIONSHIP is one of the
service's names for that kind (contacted_domains, communicating_files, resolutions,
subdomains, ...). Follows the service's pages up to --max objects.

Options:
  --max N                    at most N objects (default 10)
  --fields a,b.c             show these attributes of each object
  --json, --apikey-file, --base-url, --cache, --requests-per-minute (see vt-lua --help)
]]

HELP.triage = [[
Usage: vt-lua triage CASE.json [--case ID] [--threshold N] [--save OUT.json] [OPTIONS]

Runs the SecOps tools of vt.soar (docs/soar.md) on the cases of a case file (the shape
soar.memory_host reads): scan_hash on its FILEHASH entities, scan_url on its DestinationURL
entities, scan_ip on its ADDRESS entities and get_domain_report on its HOSTNAME, DOMAIN and
USERUNIQNAME entities, each tool only when the case has such entities. Prints every entity's
outcome. An entity counts as failed when its status is failed, quota, forbidden or invalid.

Options:
  --case ID                  only this case (default: every case in the file)
  --threshold N              detections that make a hash or a URL suspicious (default 3)
  --save OUT.json            write the enriched cases (VT_ fields, insights, tables, links)
  --poll-interval SECONDS    between two polls of a submitted URL (default 15)
  --api v2|v3                the protocol the tools speak (default v3)
  --json, --apikey-file, --base-url, --cache, --requests-per-minute (see vt-lua --help)

Output: ENTITY, TYPE, TOOL, STATUS, DETECTIONS, VERDICT and REASON; with --json each outcome
with its "case" and "tool".
]]

HELP.quota = [[
Usage: vt-lua quota [OPTIONS]

Shows the local limiter's windows (c:quota_status(): with --requests-per-minute, shared by the
processes using the key) and the service's quotas for the key (c:quotas()).

Options:
  --json, --apikey-file, --base-url, --requests-per-minute (see vt-lua --help)

Output: SOURCE, WINDOW, USED, LIMIT and NEXT SLOT; with --json one document
{"limiter": ..., "service": ...} (the service's part is {"error": ...} when it did not answer).
]]

for kind in pairs(LOOKUPS) do
    HELP[kind] = HELP.lookup
end
HELP.lookup = nil

-- ------------------------------------------------------------------ usage errors

local UsageError = {}

-- Ends the command with exit status 2; `command` names the help to point at.
local function usage(command, fmt, ...)
    error(setmetatable({ command = command, message = fmt:format(...) }, UsageError), 0)
end

local function whole_number(command, name, text, least)
    local n = math.tointeger(tonumber(text))
    if not n or n < least then
        usage(command, "--%s must be a whole number, %d or more (got '%s')", name, least, text)
    end
    return n
end

local function seconds(command, name, text)
    local n = tonumber(text)
    if not n or n <= 0 then
        usage(command, "--%s must be a number of seconds above 0 (got '%s')", name, text)
    end
    return n
end

-- `--cache SPEC` takes the next argument only when it is a cache spec.
local function is_cache_spec(s)
    return s:find("^sqlite:") or s:find("^rediss?://")
end

-- The options (name -> value, true for a flag) and the other words, in order.
local function parse(args)
    local opts, words = {}, {}
    local i, rest = 1, false
    while i <= #args do
        local a = args[i]
        if rest or a == "-" or a:sub(1, 1) ~= "-" then
            words[#words + 1] = a
        elseif a == "--" then
            rest = true
        elseif a == "-h" then
            opts.help = true
        else
            local name, value = a:match("^%-%-([^=]+)=(.*)$")
            name = name or a:match("^%-%-(.+)$")
            if name == "apikey" or name == "api-key" then
                usage(nil, "--%s is refused: %s", name, KEY_REFUSED)
            end
            local spec = name and OPTIONS[name]
            if not spec then
                usage(nil, "unknown option '%s'", name and "--" .. name or a)
            elseif not spec.value and value then
                usage(nil, "--%s takes no value", name)
            elseif spec.value and not value then
                local nxt = args[i + 1]
                if spec.optional then
                    if nxt and is_cache_spec(nxt) then
                        value, i = nxt, i + 1
                    end
                elseif nxt == nil then
                    usage(nil, "--%s needs a value (%s)", name, spec.value)
                else
                    value, i = nxt, i + 1
                end
            end
            opts[name] = value or true
        end
        i = i + 1
    end
    return opts, words
end

-- ------------------------------------------------------------------- context

-- What a command works with: its name, its options, the protocol, its report, and its client
-- (`client(ctx)`, made on first use).
local function new_context(command, opts)
    if opts.api and opts.api ~= "v2" and opts.api ~= "v3" then
        usage(command, "--api must be v2 or v3 (got '%s')", tostring(opts.api))
    end
    local fields
    if opts.fields then
        fields = {}
        for path in tostring(opts.fields):gmatch("[^,]+") do
            path = path:match("^%s*(.-)%s*$")
            if not path:find("^[%w_%-]+[%w_%-.]*$") or path:find("%.%.") or path:find("%.$") then
                usage(command, "--fields: '%s' is not a dotted path of attribute names", path)
            end
            fields[#fields + 1] = path
        end
        if #fields == 0 then
            usage(command, "--fields needs at least one attribute name")
        end
    end
    return { command = command, opts = opts, api = opts.api or "v3",
        out = report.new { json = opts.json, fields = fields } }
end

local function read_key(ctx)
    local path = ctx.opts["apikey-file"]
    if path == nil then
        local key = os.getenv("VT_API_KEY")
        if key == nil or key == "" then
            usage(ctx.command, "no API key: set VT_API_KEY or give --apikey-file PATH")
        end
        return key
    end
    local f, err = io.open(path, "r")
    if not f then
        usage(ctx.command, "--apikey-file: %s", err)
    end
    local key = (f:read("l") or ""):match("^%s*(.-)%s*$")
    f:close()
    if key == "" then
        usage(ctx.command, "--apikey-file: the first line of %s is empty", path)
    end
    return key
end

-- The client, made on first use from the options and the environment.
local function client(ctx)
    if ctx.client then
        return ctx.client
    end
    local opts = ctx.opts
    local base_url = opts["base-url"] or os.getenv("VT_BASE_URL")
    local copts = { apikey = read_key(ctx), api = ctx.api, base_url = base_url ~= "" and base_url or nil }
    if opts.cache then
        copts.cache = opts.cache -- true or a spec
    end
    if opts["requests-per-minute"] then
        copts.requests_per_minute = whole_number(ctx.command, "requests-per-minute", opts["requests-per-minute"], 1)
    end
    if opts["poll-interval"] then
        copts.poll_interval = seconds(ctx.command, "poll-interval", opts["poll-interval"])
    end
    local ok, c = pcall(vt.client, copts)
    if not ok then
        usage(ctx.command, "%s", (tostring(c):gsub("^[^:]*:%d+: ", "")))
    end
    ctx.client = c
    return c
end

-- ------------------------------------------------------------------- commands

local V2_REPORTS = { file = "v2_file_report", url = "v2_url_report", domain = "v2_domain_report", ip = "v2_ip_report" }

-- Calls put(i, value, err) for results that come in any order, in input order.
local function in_order(put)
    local pending, next_i = {}, 1
    return function(i, value, err)
        pending[i] = { value, err }
        while pending[next_i] do
            put(next_i, pending[next_i][1], pending[next_i][2])
            pending[next_i] = nil
            next_i = next_i + 1
        end
    end
end

local function read_indicators(command, words)
    local inputs = {}
    for _, w in ipairs(words) do
        if w == "-" then
            for line in io.stdin:lines() do
                line = line:match("^%s*(.-)%s*$")
                if line ~= "" and not line:find("^#") then
                    inputs[#inputs + 1] = line
                end
            end
        else
            inputs[#inputs + 1] = w
        end
    end
    if #inputs == 0 and #words == 0 then
        usage(command, "give at least one %s, or - to read them from stdin", WHAT[command])
    end
    return inputs
end

local function lookup(ctx, words)
    local kind = ctx.command
    local inputs = read_indicators(kind, words)
    local concurrency = ctx.opts.concurrency and whole_number(kind, "concurrency", ctx.opts.concurrency, 1) or 8
    local c = client(ctx)
    ctx.out:object_header("INDICATOR")
    local put = in_order(function(i, value, err)
        ctx.out:object(inputs[i], kind, value, err)
    end)
    -- malformed indicators fail here, before any request
    local list, index = {}, {}
    for i, input in ipairs(inputs) do
        local id, err = vt.normalize(kind, input)
        if id then
            list[#list + 1] = { kind, id }
            index[#list] = i
        else
            put(i, nil, err)
        end
    end
    if ctx.api == "v2" then
        for j, item in ipairs(list) do
            -- v2 takes the URL itself, not its v3 id
            local resource = kind == "url" and vt.refang(inputs[index[j]]) or item[2]
            put(index[j], c[V2_REPORTS[kind]](c, resource))
        end
    elseif #list > 0 then
        for j, ok, v in c:each(list, { concurrency = concurrency }) do
            put(index[j], ok and v or nil, not ok and v or nil)
        end
    end
    return ctx.out:finish()
end

local function is_url_argument(s)
    return vt.refang(s):find("^%a[%w+.-]*://") ~= nil
end

local function scan(ctx, words)
    if #words == 0 then
        usage("scan", "give at least one file or URL")
    end
    local c = client(ctx)
    -- the upload's and the wait's progress: one updating line on a terminal, else plain lines
    local line = progress.line(io.stderr)
    ctx.out:object_header("TARGET")
    for _, target in ipairs(words) do
        local kind = is_url_argument(target) and "url" or "file"
        local res, err
        if kind == "url" then
            res, err = vt.normalize("url", target)
            if res then
                res, err = c:scan_url(target)
            end
        else
            res, err = c:scan_file(target, { progress = function(done, total)
                line:show(("%s: uploading %s"):format(target, progress.bytes(done, total)))
            end })
        end
        if res and ctx.opts.wait then
            res, err = c:wait(res.id, { progress = function(status, elapsed)
                line:show(("%s: %s, %d s"):format(target, status, math.floor(elapsed)))
            end })
        end
        line:clear()
        ctx.out:object(target, kind, res, err)
    end
    return ctx.out:finish()
end

local function download(ctx, words)
    if #words ~= 2 then
        usage("download", "give a hash and a destination path")
    end
    local hash, dest = words[1], words[2]
    local c = client(ctx)
    ctx.out:header { "HASH", "SIZE", "SHA256", "PATH" }
    local id, err = vt.normalize("file", hash)
    local info
    if id and ctx.api == "v2" then
        info, err = c:v2_file_download(id, dest)
    elseif id then
        info, err = c:download(id, dest)
    end
    if not info then
        ctx.out:failure(hash, "file", err)
    else
        ctx.out:row({ hash, tostring(info.size), info.sha256, info.path }, info)
    end
    return ctx.out:finish()
end

local RELATED_MAX = 10
local PAGE_LIMIT = 40 -- the service's largest page

local function related(ctx, words)
    if #words ~= 3 then
        usage("related", "give a kind, an id and a relationship")
    end
    local kind, id, relationship = words[1], words[2], words[3]
    if not LOOKUPS[kind] then
        usage("related", "the kind must be file, url, domain or ip (got '%s')", kind)
    elseif not relationship:find("^[%w_]+$") then
        usage("related", "'%s' is not a relationship name", relationship)
    end
    local max = ctx.opts.max and whole_number("related", "max", ctx.opts.max, 1) or RELATED_MAX
    local c = client(ctx)
    ctx.out:object_header("INDICATOR")
    local norm, err = vt.normalize(kind, id)
    if not norm then
        ctx.out:failure(id, kind, err)
        return ctx.out:finish()
    end
    -- a failing page raises the error value (a for loop cannot return it)
    local ok, page_err = pcall(function()
        for obj in c:related(kind, norm, relationship, { limit = math.min(max, PAGE_LIMIT), max = max }) do
            ctx.out:object(report.indicator_of(obj), report.kind_of(obj), obj)
        end
    end)
    if not ok then
        if type(page_err) ~= "table" then
            error(page_err, 0)
        end
        ctx.out:failure(id, kind, page_err)
    end
    return ctx.out:finish()
end

-- The tools triage runs, each on the entity types it takes.
local TRIAGE_TOOLS = {
    { name = "scan_hash", types = { FILEHASH = true }, threshold = true },
    { name = "scan_url", types = { DestinationURL = true }, threshold = true },
    { name = "scan_ip", types = { ADDRESS = true } },
    -- a URL's domain is not asked for again: scan_url judged the URL
    { name = "get_domain_report", types = { HOSTNAME = true, DOMAIN = true, USERUNIQNAME = true }, targets = true },
}

-- Outcome statuses that mean the entity could not be judged.
local FAILED_STATUSES = { failed = true, quota = true, forbidden = true, invalid = true }

-- The entities of a case whose type a tool takes, groups in name order.
local function entities_for(case, types)
    local groups, list = {}, {}
    for name in pairs(case.alert_groups or {}) do
        groups[#groups + 1] = name
    end
    table.sort(groups)
    for _, name in ipairs(groups) do
        for _, e in ipairs(case.alert_groups[name].entities or {}) do
            if types[e.EntityType] then
                list[#list + 1] = { Identifier = e.Identifier, EntityType = e.EntityType }
            end
        end
    end
    return list
end

local function outcome_cells(tool, o)
    local detections = "-"
    if o.positives and o.total then
        detections = ("%d/%d"):format(o.positives, o.total)
    elseif o.positives then
        detections = ("max %d"):format(o.positives) -- scan_ip: the most detected related item
    end
    local verdict = o.suspicious and "suspicious" or "-"
    return { report.text(o.entity), report.text(o.type), tool, report.text(o.status), detections, verdict,
        report.text(o.reason) }
end

local function triage(ctx, words)
    if #words ~= 1 then
        usage("triage", "give one case file")
    end
    local path = words[1]
    local threshold = ctx.opts.threshold and whole_number("triage", "threshold", ctx.opts.threshold, 0)
    local c = client(ctx)
    local soar = require "vt.soar"
    ctx.out:header { "ENTITY", "TYPE", "TOOL", "STATUS", "DETECTIONS", "VERDICT", "REASON" }
    local host, err = soar.memory_host(path)
    if not host then
        ctx.out:failure(path, "case", vt.error("InvalidArgument", err))
        return ctx.out:finish()
    end
    local case_ids = {}
    if ctx.opts.case then
        case_ids[1] = ctx.opts.case
    else
        for _, case in ipairs(host:dump().cases) do
            case_ids[#case_ids + 1] = case.id
        end
    end
    local tools = soar.new { client = c, host = host, api = ctx.api,
        poll_interval = ctx.opts["poll-interval"] and seconds("triage", "poll-interval", ctx.opts["poll-interval"]) }
    for _, case_id in ipairs(case_ids) do
        local case = host:case(case_id)
        if not case then
            ctx.out:failure(case_id, "case", vt.error("InvalidArgument", ("no case %s in %s"):format(case_id, path)))
        end
        for _, tool in ipairs(case and TRIAGE_TOOLS or {}) do
            local targets = entities_for(case, tool.types)
            if #targets > 0 then
                local res = tools[tool.name] {
                    case_id = case_id, threshold = tool.threshold and threshold or nil,
                    target_entities = tool.targets and targets or nil,
                }
                if res.status == "Failed" then
                    ctx.out:failure(case_id, tool.name, vt.error("Failed", res.message))
                end
                for _, o in ipairs(res.entities or {}) do
                    if FAILED_STATUSES[o.status] then
                        ctx.out:failed_item()
                    end
                    local doc = { case = case_id, tool = tool.name }
                    for k, v in pairs(o) do
                        doc[k] = v
                    end
                    ctx.out:row(outcome_cells(tool.name, o), doc)
                end
            end
        end
    end
    if ctx.opts.save then
        local ok, serr = host:save(ctx.opts.save)
        if not ok then
            ctx.out:failure(ctx.opts.save, "save", vt.error("InvalidArgument", serr))
        end
    end
    return ctx.out:finish()
end

local function window_label(w)
    if w.kind == "sliding" then
        return ("%s s"):format(report.text(w.per))
    end
    return report.text(w.kind)
end

local function quota(ctx, words)
    if #words > 0 then
        usage("quota", "quota takes no arguments")
    end
    local c = client(ctx)
    local status = c:quota_status()
    local service, err = c:quotas()
    if ctx.out.json then
        ctx.out:row(nil, { limiter = status, service = service or { error = report.error_fields(err) } })
        if not service then
            ctx.out:failed_item()
        end
        return ctx.out:finish()
    end
    ctx.out:header { "SOURCE", "WINDOW", "USED", "LIMIT", "NEXT SLOT" }
    for _, w in ipairs(status.windows) do
        ctx.out:row { "limiter", window_label(w), report.text(w.used), report.text(w.n),
            ("in %s s"):format(report.text(math.ceil(w.next_slot_in or 0))) }
    end
    if #status.windows == 0 then
        ctx.out:row { "limiter", "none (no local limit)" }
    end
    if not service then
        ctx.out:failure("service", nil, err)
        return ctx.out:finish()
    end
    local names = {}
    for name in pairs(service) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local q = type(service[name]) == "table" and service[name].user or {}
        ctx.out:row { "service", name, report.text(q.used), report.text(q.allowed) }
    end
    return ctx.out:finish()
end

local COMMANDS = {
    file = lookup, url = lookup, domain = lookup, ip = lookup,
    scan = scan, download = download, related = related, triage = triage, quota = quota,
}

-- ------------------------------------------------------------------- main

local function run(args)
    local opts, words = parse(args)
    local command = table.remove(words, 1)
    if command == "help" then
        command, opts.help = words[1], true
    end
    if command and not COMMANDS[command] then
        usage(nil, "unknown command '%s'", command)
    end
    if opts.help then
        io.stdout:write(HELP[command or "main"])
        return 0
    elseif not command then
        usage(nil, "no command given")
    end
    for name in pairs(opts) do
        local allowed = OPTIONS[name].commands
        if allowed and not allowed[command] then
            usage(command, "%s does not take --%s", command, name)
        end
    end
    return COMMANDS[command](new_context(command, opts), words)
end

--- Runs `vt-lua` with its arguments.
-- @tparam {string,...} args the command line after the program name (`arg` of a script)
-- @treturn integer the exit status: 0 every item succeeded, 1 some item failed, 2 a usage error
--   (its message and a pointer to the help on stderr)
-- @raise what a bug raises, with its traceback
function cli.main(args)
    local ok, status = xpcall(run, function(e)
        if getmetatable(e) == UsageError then
            return e
        end
        return debug.traceback(tostring(e), 2)
    end, args)
    if ok then
        return status
    elseif getmetatable(status) ~= UsageError then
        error(status, 0)
    end
    io.stdout:flush()
    io.stderr:write(("%s: %s\n"):format(PROG, status.message))
    io.stderr:write(("Try '%s%s --help'.\n"):format(PROG, status.command and " " .. status.command or ""))
    return 2
end

return cli
