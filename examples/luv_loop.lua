-- Several look-ups in flight inside a luv (libuv) loop, while a luv timer ticks.
-- The client yields in coroutines; vt.loop resumes them when its fd or timer fires.
--   VT_API_KEY=... [VT_BASE_URL=http://127.0.0.1:PORT] lua5.4 examples/luv_loop.lua
package.cpath = "build/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local uv = require "luv"
local vt = require "vt"

local c = vt.client { apikey = os.getenv("VT_API_KEY"), base_url = os.getenv("VT_BASE_URL"), yield = true }
local loop = require("vt.loop").new(c)
local started = uv.hrtime()
local function stamp() return (uv.hrtime() - started) / 1e9 end

for _, target in ipairs { { "file", "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c" },
                          { "domain", "haiku-os.org" }, { "ip", "8.8.8.8" } } do
    loop:spawn(function()
        local obj, err = c[target[1]](c, target[2])
        print(("%6.3fs  %-6s %s  %s"):format(stamp(), target[1], target[2]:sub(1, 24),
            obj and obj.type or tostring(err)))
    end)
end

-- Wire the client into libuv: its fd for I/O, a timer for its timeouts.
local poll, timer, ticker = uv.new_poll(loop:pollfd()), uv.new_timer(), uv.new_timer()
local function drive()
    if loop:step() == 0 then -- every task is done: let uv.run return
        poll:stop(); timer:stop(); ticker:stop()
        return
    end
    timer:start(math.ceil((loop:timeout() or 0.05) * 1000), 0, drive)
end
poll:start(loop:events(), drive)
timer:start(0, 0, drive)
ticker:start(0, 50, function() print(("%6.3fs  tick"):format(stamp())) end)
uv.run()
for _, h in ipairs { poll, timer, ticker } do h:close() end
uv.run()
c:close()
