--- Registered domains, aware of the Public Suffix List.
--
-- `psl.registered_domain("mail.a.example.co.uk")` gives `"example.co.uk"`: the public suffix
-- (`co.uk`) plus one label. The list comes from Debian's `publicsuffix` package
-- (`/usr/share/publicsuffix/public_suffix_list.dat`), read once, on first use. When that file is
-- missing, a small built-in list stands in and one warning line goes to stderr; `psl.source()`
-- says which list is in use, so callers can warn their own users too.
--
-- The algorithm is the one of publicsuffix.org: wildcard rules (`*.ck`), exception rules
-- (`!www.ck`), the longest matching rule wins, an exception beats every other rule, and a name no
-- rule matches has its last label as public suffix (the implicit `*` rule). Rules of the list's
-- PRIVATE section (`github.io`, `blogspot.com`, ...) count unless `{private = false}` is given.
--
-- Names are compared in lower-case ASCII; an internationalised name is matched as given (UTF-8
-- against the list's UTF-8 rules), so a punycode (`xn--`) name only meets the implicit rule.
-- @module vt.psl
local psl = {}

--- Where the list is read from by default.
psl.DEFAULT_PATH = "/usr/share/publicsuffix/public_suffix_list.dat"

-- Stand-in when the file is missing: the common multi-label suffixes. Single-label TLDs need no
-- entry: the implicit rule already treats any last label as a public suffix.
local BUILTIN_RULES = [[
ac.uk co.uk gov.uk ltd.uk me.uk net.uk nhs.uk org.uk plc.uk police.uk sch.uk
com.au edu.au gov.au net.au org.au asn.au id.au
co.nz net.nz org.nz govt.nz ac.nz
ac.jp co.jp go.jp ne.jp or.jp
com.br net.br org.br gov.br
com.cn net.cn org.cn gov.cn edu.cn
co.in net.in org.in gov.in ac.in firm.in
co.il org.il net.il ac.il gov.il
co.za org.za gov.za
co.kr or.kr go.kr
com.mx org.mx gob.mx
com.tr org.tr gov.tr
com.ar com.sg com.hk com.tw com.my com.ua com.ru com.pl com.es
co.id co.th ac.th
*.ck !www.ck
]]

local rules       -- nil until loaded: { [suffix] = "icann" | "private" }
local wildcards   -- { [parent] = section } for "*.parent"
local exceptions  -- { [name] = section } for "!name"
local source      -- path of the loaded file, or "builtin"

local function reset()
    rules, wildcards, exceptions = {}, {}, {}
end

local function add_rule(rule, section)
    rule = rule:lower()
    if rule:sub(1, 1) == "!" then
        exceptions[rule:sub(2)] = section
    elseif rule:sub(1, 2) == "*." then
        wildcards[rule:sub(3)] = section
    else
        rules[rule] = section
    end
end

--- Loads the list from a file, replacing the one in use.
-- @tparam string path a file in the publicsuffix.org format
-- @treturn[1] number how many rules were read
-- @treturn[2] nil
-- @treturn[2] string why the file could not be read
function psl.load(path)
    if type(path) ~= "string" then
        error("psl.load: path must be a string (got " .. type(path) .. ")", 2)
    end
    local f, err = io.open(path, "r")
    if not f then
        return nil, err
    end
    reset()
    local section, count = "icann", 0
    for line in f:lines() do
        if line:find("===BEGIN PRIVATE DOMAINS===", 1, true) then
            section = "private"
        elseif line:find("===BEGIN ICANN DOMAINS===", 1, true) then
            section = "icann"
        else
            local rule = line:match("^%s*([^%s/][^%s]*)")
            if rule then
                add_rule(rule, section)
                count = count + 1
            end
        end
    end
    f:close()
    source = path
    return count
end

local function load_builtin()
    reset()
    for rule in BUILTIN_RULES:gmatch("%S+") do
        add_rule(rule, "icann")
    end
    source = "builtin"
end

local function ensure_loaded()
    if rules then
        return
    end
    if not psl.load(psl.DEFAULT_PATH) then
        load_builtin()
        io.stderr:write("vt.psl: ", psl.DEFAULT_PATH, " is missing; using a small built-in list ",
            "(install Debian's publicsuffix package for exact registered domains)\n")
    end
end

--- Which list is in use: the path of the file read, or `"builtin"` (loads the list if needed).
-- @treturn string
function psl.source()
    ensure_loaded()
    return source
end

local function counts(section, opts)
    return section and (section == "icann" or opts.private ~= false)
end

-- Splits a host name into labels; nil when it is empty or has an empty label.
local function labels_of(host)
    host = host:lower():gsub("%.$", "")
    if host == "" or host:find("..", 1, true) or host:sub(1, 1) == "." then
        return nil
    end
    local labels = {}
    for label in host:gmatch("[^.]+") do
        labels[#labels + 1] = label
    end
    return labels
end

--- The public suffix of a host name (`"co.uk"` for `"a.example.co.uk"`).
-- @tparam string host a host name (a trailing dot is ignored)
-- @tparam[opt] table opts `private = false` ignores the list's PRIVATE section
-- @treturn string|nil the suffix, or nil for an empty or malformed name
function psl.public_suffix(host, opts)
    if type(host) ~= "string" then
        error("psl.public_suffix: host must be a string (got " .. type(host) .. ")", 2)
    end
    opts = opts or {}
    ensure_loaded()
    local labels = labels_of(host)
    if not labels then
        return nil
    end
    local n = #labels
    local function suffix_from(i)
        return table.concat(labels, ".", i, n)
    end
    -- An exception rule names a registrable name: the suffix starts one label to its right.
    for i = 1, n - 1 do
        if counts(exceptions[suffix_from(i)], opts) then
            return suffix_from(i + 1)
        end
    end
    -- Otherwise the longest matching rule, found by trying the longest candidates first.
    for i = 1, n do
        if counts(rules[suffix_from(i)], opts) or (i < n and counts(wildcards[suffix_from(i + 1)], opts)) then
            return suffix_from(i)
        end
    end
    return labels[n]
end

--- The registered domain of a host name: its public suffix plus one label.
-- `psl.registered_domain("mail.a.example.co.uk")` is `"example.co.uk"`;
-- a name that is itself a public suffix (`"co.uk"`) has none.
-- @tparam string host a host name (a trailing dot is ignored)
-- @tparam[opt] table opts `private = false` ignores the list's PRIVATE section
-- @treturn string|nil the registered domain, lower-cased, or nil
function psl.registered_domain(host, opts)
    if type(host) ~= "string" then
        error("psl.registered_domain: host must be a string (got " .. type(host) .. ")", 2)
    end
    local suffix = psl.public_suffix(host, opts)
    if not suffix then
        return nil
    end
    local name = host:lower():gsub("%.$", "")
    if #name == #suffix then
        return nil
    end
    local head = name:sub(1, #name - #suffix - 1)
    return (head:match("([^.]+)$") or head) .. "." .. suffix
end

return psl
