--- The embedded default host of `vt.soar`: cases kept in memory, loaded from a table or a JSON
-- file, written back with `host:save(path)`.
--
-- A host is what a tool reads the case from and writes its findings to. Engines plug in their
-- own: any table (or object) with these six methods will do (see docs/soar.md):
--
--    host:entities(case_id, alert_group_identifiers) -> list of entity tables | nil, message
--    host:update_entity(case_id, entity, update)   -- update = {enrichment =, suspicious =}
--    host:add_insight(case_id, insight)            -- {title, message, entity?, severity, triggered_by}
--    host:add_table(case_id, tbl)                  -- {title, entity?, columns, rows}
--    host:add_link(case_id, link)                  -- {title, url, entity?}
--    host:add_json_result(case_id, entry)          -- {tool, Entity, EntityResult}
--
-- Entities use the SecOps field names: `Identifier`, `EntityType`, `IsInternal`, `IsSuspicious`,
-- `IsEnriched`, `AdditionalProperties`.
-- @module vt.soar.host
local vt = require "vt"

local host = {}

-- Reads and decodes a JSON file: the value, or nil and a message naming the file.
local function read_json(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local text = f:read("a")
    f:close()
    local value, derr = vt.decode(text)
    if value == nil then
        return nil, path .. ": " .. derr.message
    end
    return value
end

-- Encodes a value into a file, through a temporary file, so a reader never sees half of it.
local function write_json(path, value)
    local ok, text = pcall(vt.encode, value)
    if not ok then
        return nil, text
    end
    local tmp = path .. ".tmp"
    local f, err = io.open(tmp, "wb")
    if not f then
        return nil, err
    end
    local written, werr = f:write(text, "\n")
    f:close()
    if not written then
        os.remove(tmp)
        return nil, werr
    end
    return os.rename(tmp, path)
end

local MemoryHost = {}
MemoryHost.__index = MemoryHost

local function copy(value)
    if type(value) ~= "table" then
        return value
    end
    local out = {}
    for k, v in pairs(value) do
        out[k] = copy(v)
    end
    return out
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    return keys
end

-- Gives every case the lists the tools append to, and every entity the fields they read.
local function prepare(data)
    if type(data.cases) ~= "table" then
        return nil, "a case file needs a 'cases' list"
    end
    for i, case in ipairs(data.cases) do
        if case.id == nil then
            return nil, ("case #%d has no 'id'"):format(i)
        end
        case.id = tostring(case.id)
        case.alert_groups = case.alert_groups or {}
        for _, list in ipairs { "insights", "tables", "links", "json_results" } do
            case[list] = case[list] or {}
        end
        for name, group in pairs(case.alert_groups) do
            if type(group) ~= "table" or type(group.entities or {}) ~= "table" then
                return nil, ("case %s: alert group %s needs an 'entities' list"):format(case.id, tostring(name))
            end
            group.entities = group.entities or {}
            for _, entity in ipairs(group.entities) do
                entity.AdditionalProperties = entity.AdditionalProperties or {}
                entity.IsInternal = entity.IsInternal == true
                entity.IsSuspicious = entity.IsSuspicious == true
                entity.IsEnriched = entity.IsEnriched == true
            end
        end
    end
    return data
end

--- Makes a host over cases held in memory.
-- @tparam table|string cases `{cases = {{id =, alert_groups = {[name] = {entities = {...}}}}}}`,
--   or the path of a JSON file of that shape (the table is used live, not copied)
-- @treturn[1] table the host
-- @treturn[2] nil
-- @treturn[2] string why the cases could not be read
function host.memory_host(cases)
    local data, err = cases
    if type(cases) == "string" then
        data, err = read_json(cases)
        if not data then
            return nil, err
        end
    elseif type(cases) ~= "table" then
        error("memory_host: cases must be a table or a JSON file path (got " .. type(cases) .. ")", 2)
    end
    data, err = prepare(data)
    if not data then
        return nil, err
    end
    return setmetatable({ data = data }, MemoryHost)
end

--- The live case table, or nil.
-- @tparam string|number id
function MemoryHost:case(id)
    id = tostring(id)
    for _, case in ipairs(self.data.cases) do
        if case.id == id then
            return case
        end
    end
    return nil
end

--- A copy of everything the host holds: `{cases = {...}}`.
function MemoryHost:dump()
    return copy(self.data)
end

--- Writes everything to a JSON file (the shape `memory_host` reads back).
-- @tparam string path
-- @return true, or nil and a message
function MemoryHost:save(path)
    return write_json(path, self.data)
end

local function case_or_error(self, case_id)
    local case = self:case(case_id)
    if not case then
        return nil, ("case %s not found"):format(tostring(case_id))
    end
    return case
end

--- The entities of a case's alert groups (all groups when `groups` is nil or empty), each
-- entity once, groups in name order.
function MemoryHost:entities(case_id, groups)
    local case, err = case_or_error(self, case_id)
    if not case then
        return nil, err
    end
    local names = groups
    if not names or #names == 0 then
        names = sorted_keys(case.alert_groups)
    end
    local list, seen = {}, {}
    for _, name in ipairs(names) do
        local group = case.alert_groups[name]
        if not group then
            return nil, ("case %s has no alert group %s"):format(case.id, tostring(name))
        end
        for _, entity in ipairs(group.entities) do
            if not seen[entity] then
                seen[entity] = true
                list[#list + 1] = entity
            end
        end
    end
    return list
end

--- Writes a tool's findings onto an entity: `VT_*` fields into `AdditionalProperties`,
-- `IsEnriched`, and `IsSuspicious` when the update says so (never set back to false).
function MemoryHost.update_entity(_, _, entity, update)
    for k, v in pairs(update.enrichment or {}) do
        entity.AdditionalProperties[k] = v
    end
    entity.IsEnriched = true
    if update.suspicious then
        entity.IsSuspicious = true
    end
end

local function appender(list)
    return function(self, case_id, item)
        local case = case_or_error(self, case_id)
        if case then
            table.insert(case[list], copy(item))
        end
    end
end

MemoryHost.add_insight = appender("insights")
MemoryHost.add_table = appender("tables")
MemoryHost.add_link = appender("links")
MemoryHost.add_json_result = appender("json_results")

return host
