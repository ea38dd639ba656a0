-- Runs the Splunk SOAR-style actions of vt.actions on a few indicators and prints, for each,
-- its status, summary and message, then the run's summary.
--
--   VT_API_KEY=... lua5.4 examples/splunk_actions.lua [hash] [url] [domain] [ip]
--
-- Environment: VT_API_KEY (required by the service), VT_BASE_URL (another service root, e.g.
-- the fake one of the specs), VT_API_VERSION ("v3" default, or "v2"),
-- VT_REQUESTS_PER_MINUTE (the shared local limit; 4 suits a public key).
-- Run from the repository root after building (cmake -S . -B build && cmake --build build).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local vt = require "vt"
local actions = require "vt.actions"

local app = actions.new {
   apikey = os.getenv("VT_API_KEY"),
   base_url = os.getenv("VT_BASE_URL"),
   api = os.getenv("VT_API_VERSION"),
   requests_per_minute = os.getenv("VT_REQUESTS_PER_MINUTE"),
}

local hash = arg[1] or "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c"
local url = arg[2] or "http://github.com"
local domain = arg[3] or "github.com"
local ip = arg[4] or "1.1.1.1"

local runs = {
   { "test_connectivity", {} },
   { "file_reputation", { hash = hash } },
   { "url_reputation", { url = url } },
   { "domain_reputation", { domain = domain } },
   { "ip_reputation", { ip = ip } },
}

for _, run in ipairs(runs) do
   local action, params = run[1], run[2]
   local result = app[action](app, params)
   print(string.format("%-18s %-7s %s", action, result.status, vt.encode(result.summary)))
   print(string.format("%-18s         %s", "", result.message))
end
print("run summary: " .. vt.encode(app:summary()))
