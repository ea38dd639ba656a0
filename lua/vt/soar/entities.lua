--- Entities for the playbook tools: scopes, the choice of a run's entities, and the indicator
-- each stands for (cleaned by `vt.core.input`).
-- @module vt.soar.entities
local vt = require "vt"
local input = require "vt.core.input"

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

--- The indicator an entity stands for, cleaned for a tool of `kind`: a hash, a URL (the
-- `OriginalIdentifier`, which keeps the case of the path, when there is one), an IP address, or
-- the registered domain (public-suffix aware) of a host name, a URL or an e-mail address.
-- @tparam table e the entity
-- @tparam string kind `"file"`, `"url"`, `"ip"` or `"domain"`
-- @return the value, or nil and why not
function entities.indicator(e, kind)
    local id = e.Identifier
    if kind == "url" then
        id = e.AdditionalProperties and e.AdditionalProperties.OriginalIdentifier or id
    elseif kind == "domain" then
        if e.EntityType == "DestinationURL" then
            local url, err = input.url(id)
            if not url then
                return nil, err.message
            end
            id = url
        elseif e.EntityType == "USERUNIQNAME" and not tostring(id):find("@", 1, true) then
            return nil, "a user name without '@domain'"
        end
    end
    local value, err = input[kind == "file" and "hash" or kind](id)
    if not value then
        return nil, err.message
    end
    if kind ~= "domain" then
        return value
    end
    local registered = vt.registered_domain(value)
    if not registered then
        return nil, ("'%s' is a public suffix, not a registered domain"):format(value)
    end
    return registered
end

return entities
