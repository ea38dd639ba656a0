--- Small file, directory and clock helpers the specs share.
local files = {}

--- A shell-quoted string.
function files.quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- A new empty directory under /tmp.
function files.tmpdir()
    local p = assert(io.popen("mktemp -d"))
    local dir = p:read("l")
    p:close()
    return dir
end

--- Removes a directory and everything in it.
function files.rmtree(path)
    os.execute("rm -rf " .. files.quote(path))
end

--- The names in a directory (dot-files too), sorted.
function files.ls(dir)
    local p = assert(io.popen("ls -A " .. files.quote(dir)))
    local names = {}
    for line in p:lines() do names[#names + 1] = line end
    p:close()
    table.sort(names)
    return names
end

--- A whole file's bytes.
function files.read(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("a")
    f:close()
    return data
end

--- Writes a whole file (replacing it).
function files.write(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    assert(f:close())
end

function files.exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

--- Wall-clock seconds with sub-second precision (os.time has whole seconds only).
function files.now()
    local p = assert(io.popen("date +%s.%N"))
    local t = tonumber(p:read("l"))
    p:close()
    return t
end

return files
