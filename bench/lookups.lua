-- N sequential look-ups (for callgrind): usage lua5.4 bench/lookups.lua BASE_URL HASH N
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local c = vt.client { apikey = "bench-key", base_url = arg[1], quota_state = false, retries = 0 }
for _ = 1, tonumber(arg[3]) do assert(c:file(arg[2])) end
c:close()
