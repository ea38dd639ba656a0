--- The output of `vt-lua` (the `vt.cli` module's): an aligned table, or one JSON document per
-- line, and whether any item failed.
-- @module vt.cli.report
local vt = require "vt"

local report = {}

-- A plain table of an error value's fields, for JSON.
local function error_fields(err)
    local t = {}
    if type(err) == "table" then
        for k, v in pairs(err) do
            t[k] = v
        end
    else
        t.message = tostring(err)
    end
    return t
end

local function text_of(v)
    if v == nil then
        return "-"
    elseif v == vt.null then
        return "null"
    elseif type(v) == "table" then
        return vt.encode(v)
    end
    return tostring(v)
end

local function utc_day(t)
    if type(t) == "number" then
        return os.date("!%Y-%m-%d", math.floor(t))
    elseif type(t) == "string" and t:find("^%d%d%d%d%-%d%d%-%d%d") then
        return t:sub(1, 10) -- v2's "2020-04-10 19:24:05"
    end
    return "-"
end

local KIND_OF_TYPE = { file = "file", url = "url", domain = "domain", ip_address = "ip", analysis = "analysis" }

-- What identifies an object to a person: a URL's address, else its id.
local function indicator_of(obj)
    local a = type(obj.attributes) == "table" and obj.attributes or {}
    if obj.type == "url" and type(a.url) == "string" then
        return a.url
    end
    return text_of(obj.id)
end

-- The non-empty strings among the arguments, joined with ", ".
local function joined(...)
    local parts = {}
    for i = 1, select("#", ...) do
        local s = select(i, ...)
        if type(s) == "string" and s ~= "" then
            parts[#parts + 1] = s
        end
    end
    return table.concat(parts, ", ")
end

-- The name-like facts of an object (or v2 report) that follow its verdict.
local function details(obj)
    local a = type(obj.attributes) == "table" and obj.attributes or obj
    local kind = obj.type
    if kind == "file" then
        local name = a.meaningful_name or (type(a.names) == "table" and a.names[1])
        return joined(name, a.type_description)
    elseif kind == "url" then
        return joined(a.title)
    elseif kind == "domain" then
        return joined(a.registrar)
    elseif kind == "ip_address" then
        return joined(a.as_owner, a.country)
    elseif kind == "analysis" then
        return joined(a.status or "submitted", "analysis " .. text_of(obj.id))
    end
    return joined(obj.verbose_msg) -- a v2 report
end

local OBJECT_COLUMNS = { "DETECTIONS", "VERDICT", "DATE", "DETAILS" }

-- DETECTIONS, VERDICT, DATE and DETAILS of an object or a v2 report.
local function object_cells(obj)
    local v = vt.verdict(obj)
    local a = type(obj.attributes) == "table" and obj.attributes or obj
    local judged = v and (v.total > 0 or obj.type ~= "analysis") -- an analysis without results yet
    return judged and v.total > 0 and ("%d/%d"):format(v.malicious, v.total) or "-",
        judged and v.verdict or "-",
        utc_day(a.last_analysis_date or a.date or a.scan_date),
        details(obj)
end

local function walk(t, path)
    for part in path:gmatch("[^.]+") do
        if type(t) ~= "table" then
            return nil
        end
        t = t[part]
    end
    return t
end

-- A field of an object: a dotted path into its attributes, else into the object itself.
local function field_value(obj, path)
    local a = obj.attributes
    if type(a) == "table" and a[path:match("^[^.]+")] ~= nil then
        return walk(a, path), true
    end
    return walk(obj, path), false
end

local function set_path(t, path, v)
    local parts = {}
    for part in path:gmatch("[^.]+") do
        parts[#parts + 1] = part
    end
    for i = 1, #parts - 1 do
        t[parts[i]] = type(t[parts[i]]) == "table" and t[parts[i]] or {}
        t = t[parts[i]]
    end
    t[parts[#parts]] = v
end

-- The object with only the fields asked for (and its type and id), in the service's shape.
local function picked(obj, fields)
    local out = { type = obj.type, id = obj.id }
    for _, path in ipairs(fields) do
        local v, in_attributes = field_value(obj, path)
        if v ~= nil then
            if in_attributes then
                out.attributes = out.attributes or {}
                set_path(out.attributes, path, v)
            else
                set_path(out, path, v)
            end
        end
    end
    return out
end

-- The lines of an aligned table: two spaces between columns; a row's last cell is not
-- padded and does not widen its column (an error's text spans the columns after the kind).
local function aligned(rows)
    local widths = {}
    for _, row in ipairs(rows) do
        for i = 1, #row - 1 do
            widths[i] = math.max(widths[i] or 0, utf8.len(row[i]) or #row[i])
        end
    end
    local lines = {}
    for r, row in ipairs(rows) do
        local cells = {}
        for i, cell in ipairs(row) do
            cells[i] = i < #row and cell .. (" "):rep(widths[i] - (utf8.len(cell) or #cell)) or cell
        end
        lines[r] = table.concat(cells, "  "):gsub("%s+$", "") -- an empty last cell leaves no blanks
    end
    return lines
end

-- ------------------------------------------------------------------- the report

local Report = {}
Report.__index = Report

--- A report for one command.
-- @tparam table opts `json` (true: one JSON document per line, else a table printed by
--   `finish`), `fields` (a list of dotted paths: objects show only these)
-- @treturn table the report: `header`, `object_header`, `object`, `row`, `failure`,
--   `failed_item`, `finish`
function report.new(opts)
    return setmetatable({ json = opts.json == true, fields = opts.fields, rows = {}, failed = false }, Report)
end

--- The text of a value in a table cell: `-` for nil, `null`, JSON for a table.
report.text = text_of

--- A plain table of an error value's fields (or `{message = ...}` for another value), for JSON.
report.error_fields = error_fields

--- What identifies an object to a person: a URL's address, else its id.
report.indicator_of = indicator_of

--- The kind of an object as the commands name it (`ip` for `ip_address`).
function report.kind_of(obj)
    return KIND_OF_TYPE[obj.type] or text_of(obj.type)
end

function Report:header(cells)
    if not self.json then
        self.rows[#self.rows + 1] = cells
    end
end

-- The header of a table of objects whose first column is named `first`.
function Report:object_header(first)
    local cells = { first, "KIND" }
    for _, path in ipairs(self.fields or OBJECT_COLUMNS) do
        cells[#cells + 1] = self.fields and path:upper() or path
    end
    self:header(cells)
end

-- Counts an item as failed (its line is printed as any other).
function Report:failed_item()
    self.failed = true
end

-- One item that failed: a row with its one-line error, or `{"input", "kind", "error"}`.
function Report:failure(input, kind, err)
    self.failed = true
    if self.json then
        io.stdout:write(vt.encode { input = input, kind = kind, error = error_fields(err) }, "\n")
    else
        self.rows[#self.rows + 1] = { input, kind or "-", tostring(err) }
    end
end

-- One object (or v2 report) found for `input`, or its failure.
function Report:object(input, kind, obj, err)
    if obj == nil then
        return self:failure(input, kind, err)
    end
    if self.json then
        io.stdout:write(vt.encode(self.fields and picked(obj, self.fields) or obj), "\n")
        return
    end
    local row = { input, kind }
    if self.fields then
        for _, path in ipairs(self.fields) do
            row[#row + 1] = text_of((field_value(obj, path)))
        end
    else
        row[3], row[4], row[5], row[6] = object_cells(obj)
    end
    self.rows[#self.rows + 1] = row
end

-- Any other item: its cells in a table, its document in JSON.
function Report:row(cells, document)
    if self.json then
        io.stdout:write(vt.encode(document), "\n")
    else
        self.rows[#self.rows + 1] = cells
    end
end

-- Prints the table and gives the exit status: 1 when an item failed, else 0.
function Report:finish()
    if #self.rows > 1 then -- more than the header
        io.stdout:write(table.concat(aligned(self.rows), "\n"), "\n")
    end
    io.stdout:flush()
    return self.failed and 1 or 0
end

return report
