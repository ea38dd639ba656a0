--- Readable text for any value: objects from look-ups, errors, `vt.versions()`,
-- `c:quota_status()`, `c:options()` and plain tables.
--
--    vt.pp(assert(c:file(hash)))          -- prints to io.stdout
--    vt.pp(c:quota_status(), 1)           -- one level of nesting, deeper tables summarised
--    local text = require("vt.pp").format(value, depth)   -- the same text, not printed
--
-- The text is indented `key: value` lines (two spaces a level) and `- item` lines for lists:
-- - keys sorted (numbers, then strings), the entries with a one-line value before the nested ones;
-- - a table with a `__tostring` (an object that has a summary) shows it first, then its fields;
--   an error value is its one-line `tostring`;
-- - a list of more than 12 items shows its first 10, then `… N more`; so does a map below the
--   second level (the engines of `last_analysis_results`), while an object's own fields and
--   attributes are all shown;
-- - a list of short values fits on one line (`[peexe, overlay]`);
-- - below `depth` levels (default 3) a table is one line: its `tostring` summary, its entries if
--   they fit (`{harmless: 0, malicious: 5}`), else its size (`{76 keys}`, `[12 items]`);
-- - a table met again inside itself is `<cycle>`; `vt.null` is `null`;
-- - strings are quoted when bare text would mislead (empty, edge spaces, control characters,
--   number-like, `true`/`nil`/`null`, ...), and cut after 160 bytes (`"…"… N more bytes`);
-- - an integer in a field named `date` or `*_date` is followed by its UTC time.
-- @module vt.pp
local vt = require "vt"

local M = {}

--- The nesting levels shown when `depth` is not given.
M.DEPTH = 3

local MAX_ITEMS = 10     -- entries shown of a list, or of a map below the second level, ...
local CUT_OVER = 12      -- ... that has more entries than this
local FULL_MAP_LEVELS = 2 -- maps whose entries sit at these levels are never cut
local MAX_STRING = 160   -- bytes of a string shown
local INLINE_WIDTH = 80  -- longest one-line form of a table
local INDENT = "  "

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
local MISREAD = { ["true"] = true, ["false"] = true, ["nil"] = true, ["null"] = true }

local function quoted(s)
    return '"' .. s:gsub('[%c"\\]', function(ch)
        return ESCAPES[ch] or ("\\%03d"):format(ch:byte())
    end) .. '"'
end

local function string_text(s)
    if #s > MAX_STRING then
        local cut = MAX_STRING
        while cut > 0 and (s:byte(cut + 1) or 0) & 0xC0 == 0x80 do
            cut = cut - 1 -- never split a UTF-8 sequence
        end
        return ("%s… %d more bytes"):format(quoted(s:sub(1, cut)), #s - cut)
    end
    if s == "" or s:find("^%s") or s:find("%s$") or s:find('[%c"]') or tonumber(s) or MISREAD[s]
        or s:find("^[-%[{#'<>|*&!%%@`]") or s:find("^…") then
        return quoted(s)
    end
    return s
end

local function is_date_key(key)
    return key == "date" or (type(key) == "string" and key:find("_date$") ~= nil)
end

local function is_error(v)
    local mt = getmetatable(v)
    return type(mt) == "table" and mt.__name == "vt.error"
end

-- The one-line summary a table's metatable gives, if any.
local function summary_of(t)
    local mt = getmetatable(t)
    if type(mt) == "table" and mt.__tostring then
        return tostring(t)
    end
end

local function scalar_text(v, key)
    local kind = type(v)
    if kind == "string" then
        return string_text(v)
    elseif kind == "number" then
        local text = tostring(v)
        if math.type(v) == "integer" and is_date_key(key) and v >= 1e8 and v < 1e11 then
            text = text .. os.date("! (%Y-%m-%d %H:%M:%S UTC)", v)
        end
        return text
    elseif v == vt.null then
        return "null"
    end
    return tostring(v)
end

local function key_text(k)
    if type(k) == "string" then
        if k ~= "" and not k:find("^%s") and not k:find("%s$") and not k:find("[%c\":]") then
            return k
        end
        return quoted(k)
    end
    return "[" .. scalar_text(k) .. "]"
end

local TYPE_ORDER = { number = 1, string = 2 }

local function key_before(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        return (TYPE_ORDER[ta] or 3) < (TYPE_ORDER[tb] or 3) or
            ((TYPE_ORDER[ta] or 3) == (TYPE_ORDER[tb] or 3) and ta < tb)
    elseif ta == "number" or ta == "string" then
        return a < b
    end
    return tostring(a) < tostring(b)
end

-- The keys of t (raw: a metatable's __index or __pairs is not the table's content), sorted,
-- and whether t is a list (keys exactly 1..n).
local function keys_of(t)
    local keys = {}
    for k in next, t do
        keys[#keys + 1] = k
    end
    local n = rawlen(t)
    local list = n > 0 and #keys == n
    if list then
        for i = 1, n do
            if rawget(t, i) == nil then
                list = false
                break
            end
        end
    end
    if list then
        for i = 1, n do
            keys[i] = i
        end
    else
        table.sort(keys, key_before)
    end
    return keys, list
end

-- A value that is never a block of lines: not a table, an error, an empty table.
local function one_line_value(v, key)
    if type(v) ~= "table" then
        return scalar_text(v, key)
    elseif is_error(v) then
        return tostring(v)
    elseif next(v) == nil then
        return summary_of(v) or "{}"
    end
end

-- How many of n entries are shown when they may be cut.
local function shown_of(n, cut)
    return (cut and n > CUT_OVER) and MAX_ITEMS or n
end

local inline_entries

-- A value on one line inside another table's one-line form, or nil when it has none.
local function inline_value(v, key, path)
    return one_line_value(v, key) or summary_of(v) or (path[v] and "<cycle>") or inline_entries(v, false, path)
end

-- The table's entries on one line, when the text fits (nested tables in braces too); `cut`: a
-- long list shows its first entries only; `path`: the tables being shown, around this one.
function inline_entries(t, cut, path)
    local keys, list = keys_of(t)
    local parts, width = {}, 2
    path[t] = true
    for i = 1, shown_of(#keys, cut) do
        local k = keys[i]
        local text = inline_value(rawget(t, k), k, path)
        if text and not list then
            text = key_text(k) .. ": " .. text
        end
        width = width + #(text or "") + 2
        if not text or width > INLINE_WIDTH then
            parts = nil
            break
        end
        parts[i] = text
    end
    path[t] = nil
    if not parts then
        return nil
    end
    if #keys > #parts then
        parts[#parts + 1] = ("… %d more"):format(#keys - #parts)
    end
    local text = table.concat(parts, ", ")
    text = list and "[" .. text .. "]" or "{" .. text .. "}"
    return #text <= INLINE_WIDTH and text or nil
end

-- The table on one line: its summary, else its entries if they fit, else its size.
local function inline_table(t, path)
    local keys, list = keys_of(t)
    local n = #keys
    return summary_of(t) or inline_entries(t, false, path)
        or (list and ("[%d item%s]") or ("{%d key%s}")):format(n, n == 1 and "" or "s")
end

-- A list (no summary of its own) of values that are not tables.
local function is_plain_list(t)
    local keys, list = keys_of(t)
    if not list or summary_of(t) then
        return false
    end
    for _, k in ipairs(keys) do
        if type(rawget(t, k)) == "table" then
            return false
        end
    end
    return true
end

local render_table

-- The lines of one entry (`label` is "key:" or "-") whose value v sits at `level`.
local function render_entry(lines, indent, label, v, key, level, state)
    local text = one_line_value(v, key)
    if not text and state.path[v] then
        text = "<cycle>"
    elseif not text and level > state.depth then
        text = inline_table(v, state.path)
    elseif not text and is_plain_list(v) then
        text = inline_entries(v, true, state.path) -- a list of short values reads best on one line
    end
    if text then
        lines[#lines + 1] = indent .. label .. " " .. text
        return
    end
    local header = summary_of(v)
    local first = #lines + 1
    if header or label ~= "-" then
        lines[#lines + 1] = indent .. label .. (header and " " .. header or "")
        render_table(lines, indent .. INDENT, v, level, state)
    else
        -- "- " takes the place of the indentation of the item's first line
        render_table(lines, indent .. INDENT, v, level, state)
        lines[first] = indent .. "- " .. lines[first]:sub(#indent + #INDENT + 1)
    end
end

-- The entries of table t, at `level`, as lines.
function render_table(lines, indent, t, level, state)
    state.path[t] = true
    local keys, list = keys_of(t)
    if not list then
        -- the one-line entries first, each group in key order
        local simple, nested = {}, {}
        for _, k in ipairs(keys) do
            local v = t[k]
            local group = (one_line_value(v, k) or state.path[v]) and simple or nested
            group[#group + 1] = k
        end
        table.move(nested, 1, #nested, #simple + 1, simple)
        keys = simple
    end
    local shown = shown_of(#keys, list or level > FULL_MAP_LEVELS)
    for i = 1, shown do
        local k = keys[i]
        render_entry(lines, indent, list and "-" or key_text(k) .. ":", rawget(t, k), k, level + 1, state)
    end
    if shown < #keys then
        lines[#lines + 1] = ("%s… %d more"):format(indent, #keys - shown)
    end
    state.path[t] = nil
end

local function check_depth(depth, fname)
    if depth == nil then
        return M.DEPTH
    end
    if math.type(depth) ~= "integer" or depth < 0 then
        error(("bad argument #2 to '%s' (depth must be a whole number, 0 or more)"):format(fname), 3)
    end
    return depth
end

--- The text `vt.pp` prints, without printing it.
-- @param value any Lua value
-- @tparam[opt=3] integer depth how many levels of nested tables are shown in full
-- @treturn string the text, lines separated by `"\n"`, with no newline at the end
-- @raise when `depth` is not a whole number of 0 or more
function M.format(value, depth)
    depth = check_depth(depth, "format")
    local text = one_line_value(value)
    if text then
        return text
    elseif depth == 0 then
        return inline_table(value, {})
    end
    local lines = {}
    local header = summary_of(value)
    if header then
        lines[1] = header
    end
    render_table(lines, header and INDENT or "", value, 1, { depth = depth, path = {} })
    return table.concat(lines, "\n")
end

--- Prints any value as indented, sorted, readable text on `io.stdout` (`vt.pp`).
-- @param value any Lua value: an object, an error, `vt.versions()`, `c:quota_status()`, a table
-- @tparam[opt=3] integer depth how many levels of nested tables are shown in full
-- @raise when `depth` is not a whole number of 0 or more
function M.pp(value, depth)
    check_depth(depth, "pp")
    io.stdout:write(M.format(value, depth), "\n")
    io.stdout:flush() -- the REPL writes errors to the unbuffered stderr: keep the order
end

return M
