-- One playbook worker of a fleet: run it on every host (and as many times per host as you
-- like), all pointed at one Redis. The quota of the key and the cache of answers live there, so
-- the fleet never overruns the key's quota and an indicator one worker looked up costs the
-- others nothing.
--
--   VT_API_KEY=... VT_REDIS=redis://:password@10.0.0.5:6379/0 \
--     lua5.4 examples/fleet.lua examples/cases/phishing.json [CASE.json ...]
--
-- VT_REQUESTS_PER_MINUTE (default 4, the public key's) is the key's quota, shared by the
-- whole fleet; VT_BASE_URL points at another service (the fake VirusTotal, in the specs).
-- Each case file is triaged by four vt.soar look-up tools (hashes, URLs, addresses, domains);
-- one line per case says what it spent.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local vt = require "vt"
local soar = require "vt.soar"

local redis = os.getenv("VT_REDIS")
if not redis or #arg == 0 then
    io.stderr:write("usage: VT_API_KEY=... VT_REDIS=redis://HOST[:PORT][/DB] lua5.4 examples/fleet.lua CASE.json...\n")
    os.exit(2)
end

-- One client for every case of this worker: its limiter's windows and its cache are in Redis.
-- Redis down: calls that need quota fail with QuotaStateError and send nothing (never overrun
-- the quota); the cache is skipped (look-ups go on, uncached); both recover by themselves.
local client = vt.client {
    apikey = os.getenv("VT_API_KEY"),
    base_url = os.getenv("VT_BASE_URL"),
    requests_per_minute = math.tointeger(tonumber(os.getenv("VT_REQUESTS_PER_MINUTE") or "4")),
    quota_state = redis,
    cache = redis,
    max_wait = 600, -- a worker may wait for its turn in the fleet's quota
}

local failed = false
for _, path in ipairs(arg) do
    local host = assert(soar.memory_host(path))
    local tools = soar.new { client = client, host = host }
    for _, case in ipairs(host:dump().cases) do
        local spent, hits, malicious = 0, 0, 0
        local params = { case_id = case.id, policy = {} } -- judged by vt.verdict's defaults
        for _, run in ipairs {
            { tools.scan_hash, params }, { tools.scan_url, params }, { tools.scan_ip, params },
            { tools.get_domain_report, params },
        } do
            local res = run[1](run[2])
            spent, hits = spent + res.requests, hits + res.cache_hits
            failed = failed or res.status == "Failed"
            for _, e in ipairs(res.entities) do
                if e.verdict == "malicious" then malicious = malicious + 1 end
            end
        end
        print(("case %s: %d malicious; %d requests sent, %d answers from the fleet's cache"):format(
            case.id, malicious, spent, hits))
    end
end
local stats = client:cache_stats()
print(("worker: %d requests, %d cache hits, %d shared with look-ups in flight, cache errors %d"):format(
    stats.requests, stats.hits, stats.coalesced, stats.errors))
client:close()
os.exit(failed and 1 or 0)
