#!/usr/bin/env lua5.4
-- Lists every public function that has no entry in the API reference (what LDoc makes of
-- config.ld), and exits 1 when there is one; 0 when all have one; 2 when it cannot tell.
--
--   lua5.4 tools/doc_coverage.lua     (needs build/vt.so: cmake -S . -B build && cmake --build build)
--
-- Public functions, and the LDoc entry each needs:
-- * C, from src/*.c: every entry of a luaL_Reg table (metamethods, "__" names, are not API) and
--   every `lua_pushcfunction(L, f); lua_setfield(L, -2, "name")`, which registers into the module
--   table (`vt.name`, the module being luaopen_vt's). A luaL_Reg table belongs to the LDoc section
--   in effect where it is written: after /*** @module vt */ its functions are `vt.name`, after
--   /*** @type client */ they are methods `client:name`. So a class's methods are documented under
--   its @type, and its luaL_Reg table is written in that section too.
-- * Lua, from each module under lua/vt/: the function-valued fields of the table `require`
--   returns (`vt.loop.new`); and in the public modules, lua/vt/NAME.lua, the methods the file
--   defines as `function Class:name` (`Loop:spawn`; a name starting with "_" is private). The
--   modules under lua/vt/NAME/ implement vt.NAME: their classes are internal.
local root = arg[0]:match("^(.*)/tools/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local function read(path)
    local f = assert(io.open(path, "rb"))
    local text = f:read("a")
    f:close()
    return text
end

local function lines_of(command)
    local p = assert(io.popen(command))
    local out = {}
    for line in p:lines() do
        out[#out + 1] = line
    end
    return out, p:close()
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function line_at(text, pos)
    local n = 1
    for _ in text:sub(1, pos):gmatch("\n") do
        n = n + 1
    end
    return n
end

-- Each expected entry: module, name (as LDoc names it inside the module), where it is defined,
-- and how the report shows it (`vt.client`, `client:file`, `Loop:spawn (vt.loop)`).
local expected, seen = {}, {}
local function expect(module, name, where, shown)
    local key = module .. "\t" .. name
    if not seen[key] then
        seen[key] = true
        expected[#expected + 1] = { module = module, name = name, where = where, shown = shown }
    end
end

-- ------------------------------------------------------------------------------ C

local c_files = lines_of("ls " .. shell_quote(root .. "/src") .. "/*.c")
local c_module
for _, path in ipairs(c_files) do
    c_module = c_module or read(path):match("luaopen_([%w_]+)%s*%(")
end
c_module = (c_module or "vt"):gsub("_", ".")

-- The LDoc sections of a C file, in order: {pos, module = name} or {pos, class = name}.
local function sections(text)
    local list = {}
    for pos, body in text:gmatch("()/%*%*%*(.-)%*/") do
        for tag, name in body:gmatch("@(%a+)%s+([%w_.]+)") do
            if tag == "module" or tag == "section" then
                list[#list + 1] = { pos = pos, module = true }
            elseif tag == "type" then
                list[#list + 1] = { pos = pos, class = name }
            end
        end
    end
    return list
end

local function section_at(list, pos)
    local current
    for _, s in ipairs(list) do
        if s.pos > pos then
            break
        end
        current = s
    end
    return current
end

for _, path in ipairs(c_files) do
    local text = read(path)
    local file = path:sub(#root + 2)
    local secs = sections(text)
    for pos, table_name, body in text:gmatch("()luaL_Reg%s+([%w_]+)%s*%[%s*%]%s*=%s*(%b{})") do
        local sec = section_at(secs, pos)
        for name in body:gmatch('{%s*"([^"]+)"%s*,%s*[%w_]+%s*}') do
            if not name:find("^__") then
                local where = ("%s:%d (luaL_Reg %s)"):format(file, line_at(text, pos), table_name)
                if not sec then
                    -- No section says whose functions these are: no entry can match.
                    expect(where, name, where .. ", no @module or @type before it", "?:" .. name)
                elseif sec.class then
                    expect(c_module, sec.class .. ":" .. name, where, sec.class .. ":" .. name)
                else
                    expect(c_module, name, where, c_module .. "." .. name)
                end
            end
        end
    end
    local pushes = { "lua_pushcfunction%(%s*L%s*,%s*[%w_]+%s*%)", "lua_pushcclosure%(%s*L%s*,%s*[%w_]+%s*,[^)]*%)" }
    for _, push in ipairs(pushes) do
        for pos, name in text:gmatch("()" .. push .. '%s*;%s*lua_setfield%(%s*L%s*,%s*%-2%s*,%s*"([^"]+)"%s*%)') do
            if not name:find("^__") then
                expect(c_module, name, ("%s:%d"):format(file, line_at(text, pos)), c_module .. "." .. name)
            end
        end
    end
end

-- ---------------------------------------------------------------------------- Lua

local failures = {}
local lua_files = lines_of("cd " .. shell_quote(root .. "/lua") .. " && find vt -name '*.lua' | sort")
local local_names = {} -- module -> the name its file gives its table (`return shape`)
for _, file in ipairs(lua_files) do
    local module = file:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    local path = "lua/" .. file
    local text = read(root .. "/" .. path)
    local_names[module] = text:match("\nreturn%s+([%a_][%w_]*)%s*$")
    local ok, value = pcall(require, module)
    if not ok then
        failures[#failures + 1] = ("%s does not load: %s"):format(module, value)
    elseif type(value) == "table" then
        for key, field in pairs(value) do
            if type(field) == "function" and type(key) == "string" then
                expect(module, key, path, module .. "." .. key)
            end
        end
    end
    local public = not file:find("/", #"vt/" + 1, true)
    for pos, class, method in text:gmatch("()%f[%w_]function%s+([%a_][%w_]*):([%a_][%w_]*)%s*%(") do
        if public and not method:find("^_") then
            local name = class .. ":" .. method
            expect(module, name, ("%s:%d"):format(path, line_at(text, pos)), ("%s (%s)"):format(name, module))
        end
    end
end

-- --------------------------------------------------------------------------- LDoc

local ldoc_out, ldoc_ok = lines_of("cd " .. shell_quote(root) .. " && LUA_PATH="
    .. shell_quote(root .. "/tools/?.lua;;") .. " ldoc --filter ldoc_items.print . 2>/dev/null")
local documented, items = {}, 0
for _, line in ipairs(ldoc_out) do
    local module, name = line:match("^item\t([^\t]+)\t([^\t]+)\t")
    if module then
        items = items + 1
        -- Module-level entries may carry the module's own prefix: `soar.new`, `shape.file`.
        local prefix, rest = name:match("^([%a_][%w_]*)%.([%a_][%w_]*)$")
        if prefix and (prefix == module:match("[^.]+$") or prefix == local_names[module]) then
            name = rest
        end
        documented[module .. "\t" .. name] = true
    end
end
if not ldoc_ok or items == 0 then
    failures[#failures + 1] = "ldoc listed no entries (run `ldoc .` to see why)"
end

-- ------------------------------------------------------------------------- report

for _, f in ipairs(failures) do
    io.stderr:write("doc_coverage: ", f, "\n")
end
if #failures > 0 then
    os.exit(2)
end

table.sort(expected, function(a, b)
    if a.module ~= b.module then
        return a.module < b.module
    end
    return a.name < b.name
end)
local missing = {}
for _, e in ipairs(expected) do
    if not documented[e.module .. "\t" .. e.name] then
        missing[#missing + 1] = e
    end
end
print(("doc coverage: %d of %d public functions have an entry in the reference")
    :format(#expected - #missing, #expected))
if #missing == 0 then
    os.exit(0)
end
print("no entry for:")
for _, e in ipairs(missing) do
    print(("  %-40s %s"):format(e.shown, e.where))
end
os.exit(1)
