--- Start, drive and stop the fake VirusTotal server (spec/fake/fakevt.py) from specs.
--
--    local fake = require "helpers.fake"
--    local srv = fake.start{analysis_steps = 0}
--    -- srv.url, srv.storage_url, srv.port, srv.storage_port, srv.pid, srv.key
--    srv:fault{type = "status", status = 503}
--    srv:stop()
--
-- Control calls go through the curl command-line tool; see spec/fake/README.md for the
-- server's endpoints, control API and fault switches.
-- vt's own JSON: lua-cjson reads and writes numbers by the host's locale (a spec may set one)
local json = require "vt"

local fake = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
fake.script = here .. "/../fake/fakevt.py"

-- Children run without LD_PRELOAD: under an AddressSanitizer run it would preload libasan
-- into curl and python too (curl can then hang on start).
local CLEAN_ENV = "env -u LD_PRELOAD"

local function quote(s)
    return "'" .. (tostring(s):gsub("'", "'\\''")) .. "'"
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local data = f:read("*a")
    f:close()
    return data
end

local function write_temp(data)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    return path
end

local function sorted_pairs(t)
    local keys = {}
    for k in pairs(t or {}) do keys[#keys + 1] = k end
    table.sort(keys)
    local i = 0
    return function()
        i = i + 1
        if keys[i] ~= nil then return keys[i], t[keys[i]] end
    end
end

--- The headers of the last response in a curl -D dump (after any "100 Continue").
local function parse_headers(dump)
    local headers = {}
    local last = dump:match(".*()HTTP/") or 1
    for line in dump:sub(last):gmatch("[^\r\n]+") do
        local name, value = line:match("^([^:]+):%s*(.*)$")
        if name then headers[name:lower()] = value end
    end
    return headers
end

--- One HTTP request with the curl CLI.
-- opts: headers (table), data (raw body string), urlencoded (table: --data-urlencode),
-- form (table: multipart text fields), files (table: field -> path, multipart file parts),
-- timeout (seconds, default 30), args (extra curl arguments).
-- Returns {status = number (0 if none), headers = {lower-case name = value}, body = string,
-- exit = curl's exit code, time = seconds}.
function fake.http(method, url, opts)
    opts = opts or {}
    local body_path, head_path = os.tmpname(), os.tmpname()
    local temps = {body_path, head_path}
    local args = {"curl", "-sS", "-X", method, "-o", body_path, "-D", head_path,
                  "-w", "%{http_code} %{time_total}", "--max-time", tostring(opts.timeout or 30)}
    local function add(...)
        for _, a in ipairs{...} do args[#args + 1] = a end
    end
    for name, value in sorted_pairs(opts.headers) do add("-H", name .. ": " .. value) end
    if opts.data then
        local path = write_temp(opts.data)
        temps[#temps + 1] = path
        add("--data-binary", "@" .. path)
    end
    for name, value in sorted_pairs(opts.urlencoded) do add("--data-urlencode", name .. "=" .. value) end
    for name, value in sorted_pairs(opts.form) do add("--form-string", name .. "=" .. value) end
    for name, path in sorted_pairs(opts.files) do add("-F", name .. "=@" .. path) end
    for _, a in ipairs(opts.args or {}) do add(a) end
    add(url)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = quote(a) end
    -- curl's exit status is echoed because Lua 5.1's pipe:close() does not return it.
    local pipe = assert(io.popen(CLEAN_ENV .. " " .. table.concat(quoted, " ") ..
                                 ' 2>/dev/null; echo " $?"'))
    local out = pipe:read("*a")
    pipe:close()
    local status, seconds, exit = out:match("^(%d+) ([%d.]+) (%d+)")
    local res = {status = tonumber(status) or 0, time = tonumber(seconds), exit = tonumber(exit),
                 body = read_file(body_path) or "", headers = parse_headers(read_file(head_path) or "")}
    for _, path in ipairs(temps) do os.remove(path) end
    return res
end

local Server = {}
Server.__index = Server

--- Start a server. opts: keys (list) or key (string; default "test-key"), premium_keys (list),
-- analysis_steps, max_lifetime, samples, storage_host, suffix_list, python (default
-- $FAKEVT_PYTHON or "python3").
function fake.start(opts)
    opts = opts or {}
    local keys = opts.keys or {opts.key or "test-key"}
    local cmd = {"exec", CLEAN_ENV, quote(opts.python or os.getenv("FAKEVT_PYTHON") or "python3"),
                 quote(fake.script)}
    for _, key in ipairs(keys) do cmd[#cmd + 1] = "--key " .. quote(key) end
    for _, key in ipairs(opts.premium_keys or {}) do cmd[#cmd + 1] = "--premium-key " .. quote(key) end
    for option, flag in pairs{analysis_steps = "--analysis-steps", max_lifetime = "--max-lifetime",
                              samples = "--samples", storage_host = "--storage-host",
                              suffix_list = "--suffix-list"} do
        if opts[option] ~= nil then cmd[#cmd + 1] = flag .. " " .. quote(opts[option]) end
    end
    -- "exec" makes the server a direct child of this process, so it notices when we die.
    local pipe = assert(io.popen(table.concat(cmd, " "), "r"))
    local line = pipe:read("*l")
    local port, storage_port, pid = (line or ""):match("^LISTENING (%d+) (%d+) (%d+)$")
    if not port then
        pipe:close()
        error("the fake VirusTotal server did not start (got " .. tostring(line) .. ")", 2)
    end
    local storage_host = opts.storage_host or "127.0.0.2"
    return setmetatable({
        url = "http://127.0.0.1:" .. port,
        storage_url = "http://" .. storage_host .. ":" .. storage_port,
        port = tonumber(port), storage_port = tonumber(storage_port), pid = tonumber(pid),
        key = keys[1], keys = keys, _pipe = pipe,
    }, Server)
end

--- A control API call; raises on any answer but 200.
function Server:control(method, path, body)
    local res = fake.http(method, self.url .. path, {
        data = body ~= nil and json.encode(body) or nil,
        headers = {["Content-Type"] = "application/json"}})
    if res.status ~= 200 then
        error(("fake control %s %s failed: %d %s"):format(method, path, res.status, res.body), 2)
    end
    return json.decode(res.body)
end

--- The request log (a list of entries), optionally {listener = "main"|"storage", since = seq}.
function Server:log(filter)
    filter = filter or {}
    local query = {}
    if filter.listener then query[#query + 1] = "listener=" .. filter.listener end
    if filter.since then query[#query + 1] = "since=" .. filter.since end
    local path = "/_fake/log" .. (#query > 0 and "?" .. table.concat(query, "&") or "")
    return self:control("GET", path).entries
end

function Server:reset()
    return self:control("POST", "/_fake/reset")
end

--- Arm one fault (a table) or several (a list of tables); returns their ids.
function Server:fault(spec)
    return self:control("POST", "/_fake/faults", spec).ids
end

--- The armed faults, with their remaining counts.
function Server:faults()
    return self:control("GET", "/_fake/faults").faults
end

function Server:quota(spec)
    return self:control("POST", "/_fake/quota", spec)
end

--- Make content known (the file object exists at once); returns
-- {md5, sha1, sha256, size, malicious, download_url}.
function Server:register_file(data, name)
    local path = "/_fake/files" .. (name and "?name=" .. name or "")
    local res = fake.http("POST", self.url .. path, {data = data,
        headers = {["Content-Type"] = "application/octet-stream"}})
    if res.status ~= 200 then
        error(("fake register_file failed: %d %s"):format(res.status, res.body), 2)
    end
    return json.decode(res.body)
end

function Server:analysis_steps(n)
    return self:control("POST", "/_fake/analysis_steps", {steps = n})
end

--- Make a key valid, premium (v2 batches of 25) or public (4); until the next reset.
function Server:set_key(key, premium)
    return self:control("POST", "/_fake/keys", {key = key, premium = premium or false})
end

--- Change the feeds (clock, publication delay, objects per minute, delivery, per-minute
-- overrides; see the README's "Feeds") and return their state; without a spec, just the state.
function Server:feeds(spec)
    if spec == nil then return self:control("GET", "/_fake/feeds") end
    return self:control("POST", "/_fake/feeds", spec)
end

--- Stop the server and wait for it to exit; safe to call more than once.
function Server:stop()
    if self._pipe then
        os.execute("kill " .. self.pid .. " 2>/dev/null")
        self._pipe:close()
        self._pipe = nil
    end
end

Server.__gc = Server.stop
Server.__close = Server.stop

return fake
