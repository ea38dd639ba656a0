-- Several look-ups in flight inside a cqueues loop, while the loop's own timer ticks.
--   VT_API_KEY=... [VT_BASE_URL=http://127.0.0.1:PORT] lua5.4 examples/cqueues_loop.lua
package.cpath = "build/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local cqueues = require "cqueues"
local vt = require "vt"

local c = vt.client {
    apikey = os.getenv("VT_API_KEY"), base_url = os.getenv("VT_BASE_URL"),
    yield = cqueues.poll, -- a call waiting for the network hands the client to cqueues
}
local hashes = {
    "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c",
    "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
    "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740",
}

local cq, pending, started = cqueues.new(), #hashes, cqueues.monotime()
for _, hash in ipairs(hashes) do
    cq:wrap(function()
        local file, err = c:file(hash)
        local stats = file and file.attributes.last_analysis_stats
        print(("%6.3fs  %s  %s"):format(cqueues.monotime() - started, hash:sub(1, 12),
            stats and ("%d malicious"):format(stats.malicious) or tostring(err)))
        pending = pending - 1
    end)
end
cq:wrap(function() -- the host's own work goes on meanwhile
    while pending > 0 do
        print(("%6.3fs  tick"):format(cqueues.monotime() - started))
        cqueues.sleep(0.05)
    end
end)
assert(cq:loop())
c:close()
