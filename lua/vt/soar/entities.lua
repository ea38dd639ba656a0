--- Entities for the playbook tools: scopes, the choice of a run's entities, and the cleaning of
-- indicators that arrive defanged or messy from alerts.
-- @module vt.soar.entities
local vt = require "vt"
local psl = require "vt.psl"

local entities = {}

--- Entity types of the SecOps model.
entities.TYPES = { "FILEHASH", "DestinationURL", "ADDRESS", "HOSTNAME", "DOMAIN", "USERUNIQNAME" }

local function is_type(kind)
    return function(e) return e.EntityType == kind end
end

-- Scope names with what each selects; the list order is the order of the error message.
local SCOPES = {
    { "All entities", function() return true end },
    { "Suspicious entities", function(e) return e.IsSuspicious == true end },
    { "Non-suspicious entities", function(e) return e.IsSuspicious ~= true end },
    { "Internal entities", function(e) return e.IsInternal == true end },
    { "External entities", function(e) return e.IsInternal ~= true end },
    { "All file hashes", is_type "FILEHASH" },
    { "All URLs", is_type "DestinationURL" },
    { "All IP addresses", is_type "ADDRESS" },
    { "All hostnames", is_type "HOSTNAME" },
    { "All domains", is_type "DOMAIN" },
    { "All users", is_type "USERUNIQNAME" },
}

--- The valid scope names, in order.
entities.SCOPES = {}
for i, scope in ipairs(SCOPES) do
    entities.SCOPES[i] = scope[1]
end

--- The filter of a scope (names match case-insensitively).
-- @treturn[1] function entity -> boolean
-- @treturn[2] nil
-- @treturn[2] string a message listing the valid scopes
function entities.scope_filter(name)
    for _, scope in ipairs(SCOPES) do
        if scope[1]:lower() == name:lower() then
            return scope[2]
        end
    end
    return nil, ("Invalid scope '%s'. Allowed values are: %s"):format(name, table.concat(entities.SCOPES, ", "))
end

local function identity(e)
    return e.EntityType .. "\0" .. tostring(e.Identifier):upper()
end

--- Chooses a run's entities: `target_entities` when given (matched to the case's own entities by
-- type and identifier, case-insensitively, so the findings land on them; an unmatched target is
-- used as given), else the scope's; then only the tool's types, each entity once.
-- @tparam table case_entities the host's entities of the case
-- @tparam table|nil targets list of `{Identifier =, EntityType =}`
-- @tparam function filter the scope's filter (ignored when targets are given)
-- @tparam table types set of entity types the tool takes
function entities.select(case_entities, targets, filter, types)
    local chosen, seen = {}, {}
    local function take(e)
        local id = identity(e)
        if types[e.EntityType] and not seen[id] then
            seen[id] = true
            chosen[#chosen + 1] = e
        end
    end
    if targets and #targets > 0 then
        local by_id = {}
        for _, e in ipairs(case_entities) do
            by_id[identity(e)] = by_id[identity(e)] or e
        end
        for _, t in ipairs(targets) do
            take(by_id[identity(t)] or {
                Identifier = t.Identifier, EntityType = t.EntityType, IsInternal = t.IsInternal == true,
                IsSuspicious = false, IsEnriched = false, AdditionalProperties = {},
            })
        end
    else
        for _, e in ipairs(case_entities) do
            if filter(e) then
                take(e)
            end
        end
    end
    return chosen
end

local function clean(s)
    return (vt.refang((tostring(s):gsub("^%s+", ""):gsub("%s+$", ""))))
end

-- A host name: dot-separated labels of letters, digits, '-' and '_' (and UTF-8 bytes, for
-- internationalised names), none empty.
local function host_name(s)
    s = s:lower():gsub("%.$", "")
    if s == "" or #s > 253 or s:find("[^%w%-_.\128-\255]") or s:find("%.%.") or s:find("^%.") then
        return nil
    end
    return s
end

-- The host part of a URL (with or without a scheme), lower-cased, without port or credentials.
local function url_host(url)
    local rest = url:match("^[%a][%w+.-]*://(.*)$") or url
    local authority = rest:match("^([^/?#]*)")
    authority = authority:match("@([^@]*)$") or authority
    local v6 = authority:match("^%[([%x:.]+)%]")
    if v6 then
        return v6
    end
    return (authority:gsub(":%d*$", ""))
end

--- Cleans a file hash: trimmed, lower-cased; MD5, SHA-1 or SHA-256.
-- @return the hash, or nil and why not
function entities.hash(identifier)
    local h = clean(identifier):lower()
    if not vt.hash_type(h) then
        return nil, "not an MD5, SHA-1 or SHA-256 hash"
    end
    return h
end

--- Cleans a URL: trimmed and refanged; it must name a host (a domain or an IP address) and hold
-- no spaces. The case of the path is kept.
-- @return the URL, or nil and why not
function entities.url(identifier)
    local url = clean(identifier)
    if url == "" or url:find("%s") then
        return nil, "not a URL (empty or holds spaces)"
    end
    local h = url_host(url)
    if not (vt.ip_version(h) or (host_name(h) and h:find("%."))) then
        return nil, "not a URL (no valid host name in it)"
    end
    return url
end

--- Cleans an IP address (IPv4 or IPv6).
-- @return the address, or nil and why not
function entities.ip(identifier)
    local ip = clean(identifier)
    if not vt.ip_version(ip) then
        return nil, "not an IPv4 or IPv6 address"
    end
    return ip
end

--- The registered domain (public-suffix aware) of a host name, a URL or an e-mail address.
-- @tparam string identifier
-- @tparam string kind the entity type: URLs give their host, user names the part after '@'
-- @return the domain, or nil and why not
function entities.domain(identifier, kind)
    local s = clean(identifier)
    local h
    if s:find("@", 1, true) and kind ~= "DestinationURL" then
        h = s:match("@([^@]*)$")
    elseif kind == "DestinationURL" then
        local url, err = entities.url(s)
        if not url then
            return nil, err
        end
        h = url_host(url)
    elseif kind == "USERUNIQNAME" then
        return nil, "a user name without '@domain'"
    else
        h = s
    end
    if vt.ip_version(h) then
        return nil, "an IP address, not a domain"
    end
    h = host_name(h)
    if not h then
        return nil, "not a valid host name"
    end
    local domain = psl.registered_domain(h)
    if not domain then
        return nil, ("'%s' is a public suffix, not a registered domain"):format(h)
    end
    return domain
end

return entities
