--- The API requests a fake VirusTotal (helpers.fake) received, as "METHOD path?query" lines.
local requests = {}

--- The lines of the server's log, in arrival order.
function requests.lines(srv)
    local list = {}
    for _, e in ipairs(srv:log()) do
        list[#list + 1] = e.method .. " " .. e.path .. (e.query ~= "" and ("?" .. e.query) or "")
    end
    return list
end

--- How many lines match a Lua pattern.
function requests.count(list, pattern)
    local n = 0
    for _, line in ipairs(list) do
        if line:find(pattern) then n = n + 1 end
    end
    return n
end

--- The most requests the server was serving at once, from the arrival time and duration it
-- logged for each (`srv:log()` entries).
function requests.most_at_once(log)
    local events = {}
    for _, e in ipairs(log) do
        events[#events + 1] = { e.mono, 1 }
        events[#events + 1] = { e.mono + e.duration, -1 }
    end
    table.sort(events, function(a, b)
        if a[1] == b[1] then return a[2] < b[2] end -- an end before a start at the same instant
        return a[1] < b[1]
    end)
    local now, most = 0, 0
    for _, ev in ipairs(events) do
        now = now + ev[2]
        most = math.max(most, now)
    end
    return most
end

return requests
