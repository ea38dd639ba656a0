-- One playbook worker of bench/fleet.lua: triages its alerts one after another, each
-- alert's entities looked up at once (c:batch), then prints "stats <c:cache_stats() JSON>".
--
--   lua5.4 bench/fleet_worker.lua '<JSON {client = {...}, alerts = {{{kind, value}, ...}, ...}, start = t}>'
local vt = require "vt"
local system = require "system"

local job = assert(vt.decode(arg[1]))
local c = vt.client(job.client)
local wait = job.start - system.gettime()
if wait > 0 then c:sleep(wait) end
local failed = 0
for _, alert in ipairs(job.alerts) do
    for _, r in ipairs(c:batch(alert)) do
        if not r.ok then failed = failed + 1 end
    end
end
local stats = c:cache_stats()
stats.failed = failed
io.write("stats ", vt.encode(stats), "\n")
c:close()
