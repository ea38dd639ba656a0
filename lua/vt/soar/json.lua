--- JSON for the playbook layer: the core's `vt.decode` and `vt.encode` (integers kept, floats
-- written whole, JSON null as `vt.null`), with file helpers.
-- @module vt.soar.json
local vt = require "vt"

local json = {}

--- Decodes a JSON text.
-- @tparam string text
-- @return the value, or nil and a message
function json.decode(text)
    local value, err = vt.decode(text)
    if err then
        return nil, err.message
    end
    return value
end

--- Encodes a value as JSON.
-- @return the text, or nil and a message
function json.encode(value)
    local ok, text = pcall(vt.encode, value)
    if not ok then
        return nil, text
    end
    return text
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
