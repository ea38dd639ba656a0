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

return requests
