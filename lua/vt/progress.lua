--- Progress on a terminal: one line that updates in place (`\r`) when the stream is a terminal,
-- plain lines when it is not (a file, a pipe, a CI log), each new text once.
--
--    local progress = require "vt.progress"
--    local line = progress.line(io.stderr)
--    c:scan_file(path, {progress = function(done, total) line:show(progress.bytes(done, total)) end})
--    line:clear()                     -- before printing anything else on that stream
--
--    local tools = soar.new{client = c, progress = function(event) line:show(progress.describe(event)) end}
-- @module vt.progress
local M = {}

local Line = {}
Line.__index = Line

local CLEAR_TO_END = "\27[K"

--- Whether a stream is a terminal: `io.stdout` or `io.stderr` (asked of the shell's `test -t`).
-- @param stream `io.stdout` or `io.stderr`
-- @treturn boolean
-- @raise for any other stream
function M.is_tty(stream)
    local fd = stream == io.stdout and 1 or stream == io.stderr and 2
    if not fd then
        error("progress.is_tty: the stream must be io.stdout or io.stderr", 2)
    end
    return os.execute("test -t " .. fd) == true
end

--- A progress line on a stream.
-- @param stream where it is written (`io.stdout` or `io.stderr`)
-- @tparam[opt] boolean tty whether it updates in place; default: whether the stream is a terminal
-- @return the line (`line:show(text)`, `line:clear()`)
function M.line(stream, tty)
    if tty == nil then
        tty = M.is_tty(stream)
    end
    return setmetatable({ stream = stream, tty = tty, shown = nil }, Line)
end

--- Shows `text`: on a terminal in place of what the line showed, else as a line of its own
-- (a text equal to the last one shown is not repeated).
-- @tparam string text one line
function Line:show(text)
    if text == self.shown then
        return
    end
    self.shown = text
    if self.tty then
        self.stream:write("\r", text, CLEAR_TO_END)
    else
        self.stream:write(text, "\n")
    end
    self.stream:flush()
end

--- Wipes the line on a terminal (before other output on the stream); elsewhere nothing to do.
function Line:clear()
    if self.tty and self.shown then
        self.stream:write("\r", CLEAR_TO_END)
        self.stream:flush()
    end
    self.shown = nil
end

-- A size as a person reads it: 31 bytes, 12.5 kB, 200.0 MB.
local function size_text(n)
    if n < 1024 then
        return ("%d bytes"):format(n)
    elseif n < 1024 * 1024 then
        return ("%.1f kB"):format(n / 1024)
    end
    return ("%.1f MB"):format(n / (1024 * 1024))
end

--- Bytes done of a total as text: `"35% (70.0 MB of 200.0 MB)"`, or `"12.5 MB"` when the total
-- is unknown.
-- @tparam integer done bytes done
-- @tparam[opt] integer total bytes in all
-- @treturn string
function M.bytes(done, total)
    if not total or total <= 0 then
        return size_text(done)
    end
    return ("%d%% (%s of %s)"):format(done * 100 // total, size_text(done), size_text(total))
end

--- One line for a playbook layer's progress event (`soar.new{progress = ...}`,
-- `actions.new{progress = ...}`): `"scan_hash 001015aafcae8a6942366cbb0e7d39c0738752a… looked
-- up"`. A file's path shows as its name; a value longer than 40 characters is cut.
-- @tparam table event the event: `tool` or `action`, `value`, `text`
-- @treturn string
function M.describe(event)
    local value = tostring(event.value)
    if not value:find("://", 1, true) then
        value = value:match("([^/]+)/*$") or value
    end
    if utf8.len(value) and utf8.len(value) > 40 then
        value = value:sub(1, utf8.offset(value, 40) - 1) .. "…"
    end
    return ("%s %s %s"):format(event.tool or event.action or event.kind, value, event.text)
end

return M
