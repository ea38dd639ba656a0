--- What both playbook layers take in: their options (checked alike, the protocol taken from the
-- client) and the indicators alerts carry (trimmed, refanged, and checked by `vt.normalize`, the
-- one definition of a valid hash, URL, domain and IP address).
-- @module vt.core.input
local vt = require "vt"

local input = {}

local function describe(want)
    return want == "userdata" and "vt.client" or want:gsub("|", " or ")
end

--- Checks a layer's options: an unknown name or a value of the wrong type raises, naming it.
-- @tparam string who the function checking (`"soar.new"`), for the messages
-- @param opts the options given (must be a table)
-- @tparam table spec option name -> accepted Lua types (`"number"`, `"string|boolean"`, ...)
-- @tparam[opt] boolean numeric_strings whether a number may come as a numeric string (asset
--   settings often do); such options come back as numbers
-- @treturn table the options, numbers converted
function input.options(who, opts, spec, numeric_strings)
    if type(opts) ~= "table" then
        error(("%s: options must be a table (got %s)"):format(who, type(opts)), 3)
    end
    local checked = {}
    for name, v in pairs(opts) do
        local want = spec[name]
        if not want then
            error(("%s: unknown option '%s'"):format(who, tostring(name)), 3)
        end
        if want == "number" and numeric_strings then
            v = tonumber(v)
        end
        if v == nil or not ("|" .. want .. "|"):find("|" .. type(v) .. "|", 1, true) then
            error(("%s: option '%s' must be a %s (got %s)"):format(who, name, describe(want), type(opts[name])), 3)
        end
        checked[name] = v
    end
    return checked
end

--- Checks that a numeric option, when given, is a whole number within bounds (and makes it an
-- integer).
-- @tparam string who
-- @tparam table opts the checked options
-- @tparam string name
-- @tparam integer min
-- @tparam[opt] integer max
function input.whole(who, opts, name, min, max)
    local v = opts[name]
    local n = math.tointeger(v)
    if v ~= nil and (not n or n < min or (max and n > max)) then
        local range = max and ("%d to %d"):format(min, max) or ("%d or more"):format(min)
        error(("%s: option '%s' must be a whole number, %s (got %s)"):format(who, name, range, tostring(v)), 3)
    end
    opts[name] = n
end

--- The protocol a layer speaks: the client's `api`. An `api` given too must agree with it.
-- @tparam string who
-- @param client a `vt.client`
-- @tparam[opt] string api the `api` option given to the layer
-- @treturn string `"v3"` or `"v2"`
-- @raise when `api` contradicts the client's, naming both
function input.protocol(who, client, api)
    local speaks = client:options().api
    if api ~= nil and api ~= speaks then
        error(("%s: option 'api' is %q but the client speaks %q (the client's api decides)"):format(who, api, speaks),
            3)
    end
    return speaks
end

--- The options a layer takes to make its own client when it is given none.
input.CLIENT_OPTIONS = {
    apikey = "string", base_url = "string", requests_per_minute = "number", quota_state = "string|boolean",
    max_wait = "number", timeout = "number", cache = "boolean|string",
}

--- The client of a layer: `opts.client`, or one made from the client options, with the response
-- cache on by default (`cache = true`: a playbook's look-ups of this morning's indicators cost no
-- quota again). With `client`, a client option given too raises.
-- @tparam string who
-- @tparam table opts the layer's checked options
-- @return a `vt.client`
function input.client(who, opts)
    if opts.client then
        for key in pairs(input.CLIENT_OPTIONS) do
            if opts[key] ~= nil then
                error(("%s: give 'client' or '%s', not both"):format(who, key), 3)
            end
        end
        return opts.client
    end
    if opts.api ~= nil and opts.api ~= "v3" and opts.api ~= "v2" then
        error(("%s: option 'api' must be \"v3\" or \"v2\" (got %q)"):format(who, opts.api), 3)
    end
    local client_opts = { api = opts.api, cache = true }
    for key in pairs(input.CLIENT_OPTIONS) do
        if opts[key] ~= nil then
            client_opts[key] = opts[key]
        end
    end
    return vt.client(client_opts)
end

local function cleaned(s)
    return vt.refang((tostring(s):gsub("^%s+", ""):gsub("%s+$", "")))
end

--- The host a URL names (with or without a scheme), or the domain of an e-mail address:
-- without credentials, port or brackets.
-- @tparam string s a URL, a host name or an address `user@host`
-- @treturn string
function input.host(s)
    local rest = s:match("^[%a][%w+.-]*://(.*)$") or s
    local authority = rest:match("^([^/?#]*)")
    authority = authority:match("@([^@]*)$") or authority
    return authority:match("^%[([%x:.]+)%]") or (authority:gsub(":%d*$", ""))
end

--- A file hash: trimmed, lower-cased; MD5, SHA-1 or SHA-256.
-- @tparam string s
-- @return the hash, or nil and an `InvalidArgument` error
function input.hash(s)
    return vt.normalize("file", cleaned(s))
end

--- An IP address (IPv4 or IPv6), trimmed and refanged.
-- @tparam string s
-- @return the address, or nil and an `InvalidArgument` error
function input.ip(s)
    return vt.normalize("ip", cleaned(s))
end

--- A URL, trimmed and refanged (the case of its path kept), valid for `vt.normalize`: a scheme
-- and a host, or a host with a dot; UTF-8, without spaces or controls.
-- @tparam string s
-- @return the URL, or nil and an `InvalidArgument` error
function input.url(s)
    local url = cleaned(s)
    local ok, err = vt.normalize("url", url)
    if not ok then
        return nil, err
    end
    -- vt.normalize also takes a URL's id (a word of URL-safe base64, which has none of these);
    -- an entity must be the URL itself, and every URL has a dot, a colon or a bracket
    if not url:find("[.:%[]") then
        return nil, vt.error("InvalidArgument", ("not a URL: '%s'"):format(url:sub(1, 100)))
    end
    return url
end

--- A domain name, also when given as a URL or an e-mail address (their host): lower-cased.
-- @tparam string s
-- @return the domain, or nil and an `InvalidArgument` error
function input.domain(s)
    return vt.normalize("domain", input.host(cleaned(s)))
end

return input
