--- JSON for the playbook layer: lua-cjson, with whole numbers handed back as Lua integers.
--
-- Debian's lua-cjson 2.1.0 decodes every number as a float on Lua 5.4; case files and resume
-- states carry counts and ids that must stay integers (`54`, not `54.0`). JSON null decodes to
-- `vt.null` (the same sentinel as `cjson.null`).
-- @module vt.soar.json
local cjson = require "cjson.safe"

local json = {}

local function integers(value)
    if type(value) == "number" then
        return math.tointeger(value) or value
    end
    if type(value) == "table" then
        for k, v in pairs(value) do
            value[k] = integers(v)
        end
    end
    return value
end

--- Decodes a JSON text.
-- @tparam string text
-- @return the value, or nil and a message
function json.decode(text)
    local value, err = cjson.decode(text)
    if value == nil then
        return nil, err
    end
    return integers(value)
end

--- Encodes a value as JSON.
-- @return the text, or nil and a message
function json.encode(value)
    return cjson.encode(value)
end

--- Reads and decodes a JSON file.
-- @tparam string path
-- @return the value, or nil and a message naming the file
function json.read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local text = f:read("a")
    f:close()
    local value, derr = json.decode(text)
    if value == nil then
        return nil, path .. ": " .. tostring(derr)
    end
    return value
end

--- Encodes a value and writes it to a file (through a temporary file, so a reader never sees
-- half of it).
-- @tparam string path
-- @return true, or nil and a message
function json.write_file(path, value)
    local text, err = json.encode(value)
    if not text then
        return nil, err
    end
    local tmp = path .. ".tmp"
    local f, oerr = io.open(tmp, "wb")
    if not f then
        return nil, oerr
    end
    local ok, werr = f:write(text, "\n")
    f:close()
    if not ok then
        os.remove(tmp)
        return nil, werr
    end
    return os.rename(tmp, path)
end

return json
