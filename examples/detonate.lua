-- A detonation playbook: put a local file in the vault, detonate it and a URL, and print the
-- verdicts. What VirusTotal already knows is not resubmitted; a scan that outlasts the polling
-- leaves its scan id for get_report, which this script then tries once more. While an action
-- runs, its stage (looked up, uploading 35%, queued, in-progress 40 s, done) shows on one
-- updating line when stdout is a terminal, as plain lines when it is not.
--
--   VT_API_KEY=... lua5.4 examples/detonate.lua [file] [url]
--
-- Environment: VT_API_KEY, VT_BASE_URL (another service root, e.g. the specs' fake),
-- VT_API_VERSION ("v3" or "v2"), VT_REQUESTS_PER_MINUTE, VT_POLL_EVERY (seconds between two
-- polls, default 60), VT_POLL_INTERVAL (minutes of polling, default 5), VT_VAULT (vault
-- directory; default the user's data directory).
-- Run from the repository root after building (cmake -S . -B build && cmake --build build).
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath

local actions = require "vt.actions"
local progress = require "vt.progress"

local line = progress.line(io.stdout)
local vault = assert(actions.dir_vault(os.getenv("VT_VAULT")))
local app = actions.new {
    apikey = os.getenv("VT_API_KEY"),
    base_url = os.getenv("VT_BASE_URL"),
    api = os.getenv("VT_API_VERSION"),
    requests_per_minute = os.getenv("VT_REQUESTS_PER_MINUTE"),
    poll_every = os.getenv("VT_POLL_EVERY"),
    poll_interval = os.getenv("VT_POLL_INTERVAL"),
    vault = vault,
    progress = function(event) line:show(progress.describe(event)) end,
}

-- print, after wiping the progress line
local function say(text)
    line:clear()
    print(text)
end

local path = arg[1] or arg[0] -- by default, this very script
local url = arg[2] or "http://example.com/"

-- Prints a detonation's verdict; finishes a timed-out one with get_report.
local function report(what, result, report_type)
    if result.status == "failed" and result.summary.scan_id then
        say(what .. ": not finished yet, asking get_report once more")
        result = app:get_report { scan_id = result.summary.scan_id, report_type = report_type }
    end
    if result.status == "success" then
        local s = result.summary
        local verdict = s.positives > 0 and "MALICIOUS" or "clean"
        say(string.format("%s: %s, %d/%d engines (scan id %s)", what, verdict, s.positives,
            s.total_scans, s.scan_id))
    else
        say(what .. ": " .. result.message)
    end
end

local vault_id, err = vault:add(path)
if not vault_id then
    io.stderr:write("cannot put ", path, " in the vault: ", tostring(err), "\n")
    os.exit(1)
end
say(string.format("vault: %s is %s", path, vault_id))
report("file " .. path, app:detonate_file { vault_id = vault_id }, "file")
report("URL " .. url, app:detonate_url { url = url }, "url")

local totals = app:summary()
say(string.format("%d actions, %d successful, %d with detections", totals.total_objects,
    totals.total_objects_successful, totals.total_positives))
