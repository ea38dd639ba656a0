--- A directory vault: files kept under their SHA-1 (the vault id), as the Splunk SOAR vault
-- does, so `get_file` can put samples in and `detonate_file` can take them out.
--
-- Layout of the directory: `<sha1>` holds the content, `<sha1>.meta` a JSON object with the
-- file's name; `.incoming-*` files are being written and become `<sha1>` by a rename, so a
-- reader never sees a partial file.
-- @module vt.actions.vault
local vt = require "vt"

local vault = {}

local CHUNK = 65536

local Vault = {}
Vault.__index = Vault

-- nil and an error, for `return fail(...)`.
local function fail(code, fmt, ...)
    return nil, vt.error(code, fmt:format(...))
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- mkdir -p: through luafilesystem when it is installed, else through the shell.
local function make_dirs(path)
    local ok_lfs, lfs = pcall(require, "lfs")
    if ok_lfs then
        local sofar = path:sub(1, 1) == "/" and "" or "."
        for part in path:gmatch("[^/]+") do
            sofar = sofar .. "/" .. part
            if not lfs.attributes(sofar, "mode") then
                local ok, msg = lfs.mkdir(sofar)
                if not ok and lfs.attributes(sofar, "mode") ~= "directory" then
                    return fail("VaultError", "cannot create %s: %s", sofar, msg)
                end
            end
        end
        return true
    end
    if os.execute("mkdir -p -- " .. shell_quote(path)) then
        return true
    end
    return fail("VaultError", "cannot create %s", path)
end

--- The default vault directory: `$XDG_DATA_HOME/vt/vault`, else `~/.local/share/vt/vault`.
-- @treturn string
function vault.default_path()
    local data = os.getenv("XDG_DATA_HOME")
    if not data or data == "" then
        data = (os.getenv("HOME") or ".") .. "/.local/share"
    end
    return data .. "/vt/vault"
end

-- A vault id normalised to lower case, or nil and an error.
local function check_id(id)
    if type(id) ~= "string" or not id:match("^%x+$") or #id ~= 40 then
        return fail("InvalidArgument", "not a vault id (a SHA-1, 40 hex digits): '%s'", tostring(id):sub(1, 80))
    end
    return id:lower()
end

local function basename(path)
    return path:match("([^/]+)/*$") or path
end

--- Opens (creating it if needed) a vault in directory `path`.
-- @tparam[opt] string path the directory; default `vault.default_path()`
-- @return the vault, or nil and an error
function vault.dir(path)
    if path ~= nil and type(path) ~= "string" then
        error("vault.dir: path must be a string", 2)
    end
    path = (path or vault.default_path()):gsub("/+$", "")
    local ok, err = make_dirs(path)
    if not ok then
        return nil, err
    end
    return setmetatable({ dir = path }, Vault)
end

--- A fresh path inside the vault directory for content that is still arriving; `adopt`
-- turns it into a vault entry (being on the same file system, that is a rename).
-- @treturn string
function Vault:staging()
    return ("%s/.incoming-%d-%08x"):format(self.dir, os.time(), math.random(0, 0x7fffffff))
end

-- Writes the sidecar with the file's name, atomically.
local function write_meta(v, id, name)
    local tmp = v:staging()
    local f, msg = io.open(tmp, "wb")
    if not f then
        return fail("VaultError", "cannot write %s: %s", tmp, msg)
    end
    f:write(vt.encode { name = name })
    f:close()
    local ok, rmsg = os.rename(tmp, v.dir .. "/" .. id .. ".meta")
    if not ok then
        os.remove(tmp)
        return fail("VaultError", "cannot store the name of %s: %s", id, rmsg)
    end
    return true
end

--- Takes a complete file from `staging()` into the vault under its SHA-1.
-- @tparam string tmp the staged file (it is moved, not copied)
-- @tparam string digest its SHA-1, as the caller verified it
-- @tparam[opt] string name the file's name (default: the digest)
-- @return the vault id, or nil and an error
function Vault:adopt(tmp, digest, name)
    local id, err = check_id(digest)
    if not id then
        os.remove(tmp)
        return nil, err
    end
    local ok, msg = os.rename(tmp, self.dir .. "/" .. id)
    if not ok then
        os.remove(tmp)
        return fail("VaultError", "cannot store %s: %s", id, msg)
    end
    local meta_ok, meta_err = write_meta(self, id, name or id)
    if not meta_ok then
        return nil, meta_err
    end
    return id
end

-- Copies `source` (a path or {data = string}) to a staging file: its path, or nil and an error.
local function stage(v, source)
    local src, msg
    if type(source) == "string" then
        src, msg = io.open(source, "rb")
        if not src then
            return fail("VaultError", "cannot read %s", msg)
        end
    end
    local tmp = v:staging()
    local out
    out, msg = io.open(tmp, "wb")
    if not out then
        if src then
            src:close()
        end
        return fail("VaultError", "cannot write %s: %s", tmp, msg)
    end
    if src then
        for chunk in src:lines(CHUNK) do
            out:write(chunk)
        end
        src:close()
    else
        out:write(source.data)
    end
    local closed, close_msg = out:close()
    if not closed then
        os.remove(tmp)
        return fail("VaultError", "cannot write %s: %s", tmp, close_msg)
    end
    return tmp
end

--- Adds a file or a string to the vault.
-- @param source a path, or `{data = string}`
-- @tparam[opt] string name the name to keep (default: the path's base name, else the id)
-- @return the vault id (SHA-1 of the content), or nil and an error
function Vault:add(source, name)
    if type(source) == "string" then
        name = name or basename(source)
    elseif type(source) ~= "table" or type(source.data) ~= "string" then
        error("vault:add: source must be a path or {data = string}", 2)
    end
    local tmp, err = stage(self, source)
    if not tmp then
        return nil, err
    end
    local digest
    digest, err = vt.digest(tmp)
    if not digest then
        os.remove(tmp)
        return nil, err
    end
    return self:adopt(tmp, digest.sha1, name)
end

--- Whether the vault holds `id`.
-- @tparam string id
-- @treturn boolean
function Vault:has(id)
    return self:path(id) ~= nil
end

--- The path of a vault entry.
-- @tparam string id
-- @return the path, or nil and an error (`InvalidArgument`, `NotFoundError`)
function Vault:path(id)
    local norm, err = check_id(id)
    if not norm then
        return nil, err
    end
    local path = self.dir .. "/" .. norm
    local f = io.open(path, "rb")
    if not f then
        return fail("NotFoundError", "vault id %s is not in the vault (%s)", norm, self.dir)
    end
    f:close()
    return path
end

--- What the vault knows of an entry.
-- @tparam string id
-- @return `{vault_id, path, name, size}`, or nil and an error
function Vault:info(id)
    local path, err = self:path(id)
    if not path then
        return nil, err
    end
    local f, msg = io.open(path, "rb")
    if not f then
        return fail("VaultError", "cannot read %s", msg)
    end
    local size = f:seek("end")
    f:close()
    local vault_id = path:sub(-40)
    local name = vault_id
    local meta = io.open(path .. ".meta", "rb")
    if meta then
        local decoded = vt.decode(meta:read("a"))
        meta:close()
        if type(decoded) == "table" and type(decoded.name) == "string" then
            name = decoded.name
        end
    end
    return { vault_id = vault_id, path = path, name = name, size = size }
end

return vault
