-- Peak memory of following a feed: 3 minutes of 20,000 file objects each, against one minute of
-- 100, each run in a child process of its own (peak RSS is VmHWM of /proc/self/status), from the
-- fake VirusTotal's feed batches.
--
--   lua5.4 bench/feed.lua        (from the repository root, after cmake --build build)
--
-- Prints a Markdown table row (bench/run.sh adds them to its results) and exits 1 when the
-- big feed peaks at 32 MB or more.
local here = debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or "."
package.path = here .. "/spec/?.lua;" .. here .. "/lua/?.lua;" .. package.path
package.cpath = here .. "/build/?.so;" .. package.cpath

local BIG, SMALL, MINUTES = 20000, 100, 3
local LIMIT_MB = 32

local function peak_kb()
    local f = assert(io.open("/proc/self/status"))
    local kb = tonumber(f:read("a"):match("VmHWM:%s*(%d+)"))
    f:close()
    return kb
end

if arg[1] == "child" then
    -- child BASE_URL KEY KIND START STOP: follows, prints objects, peak KiB, CPU seconds
    local vt = require "vt"
    local c = vt.client { apikey = arg[3], base_url = arg[2], quota_state = false, timeout = 300 }
    local n, t0 = 0, os.clock()
    for obj in assert(c:follow(arg[4], { start = arg[5], stop = arg[6] })) do
        assert(obj.id)
        n = n + 1
    end
    print(n, peak_kb(), os.clock() - t0)
    return
end

local fake = require "helpers.fake"
local srv = fake.start { key = "bench-key", analysis_steps = 0 }
-- minutes 10:00-10:02 hold BIG objects each, 11:00 holds SMALL; the clock publishes them all
local first, small = "202401011000", "202401011100"
srv:feeds { now = "202401011300", running = false, count = BIG, minutes = { [small] = { count = SMALL } } }

local function run(start, stop)
    local cmd = ("%q %q child %q %q files %q %q"):format("lua5.4", arg[0], srv.url, srv.key, start, stop)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    assert(p:close(), "the feed child failed: " .. out)
    local n, kb, cpu = out:match("^(%d+)%s+(%d+)%s+([%d.]+)")
    return tonumber(n), tonumber(kb), tonumber(cpu)
end

-- the fake builds a batch on its first request: build them all before measuring
run(first, "202401011003")
local big_n, big_kb, big_cpu = run(first, "202401011003")
local small_n, small_kb = run(small, "202401011101")
srv:stop()
assert(big_n == BIG * MINUTES and small_n == SMALL, "unexpected object counts")

local function mb(kb) return ("%.1f MB"):format(kb / 1024) end
local over = big_kb >= LIMIT_MB * 1024 and (" **over %d MB**"):format(LIMIT_MB) or ""
local row = "| peak RSS, `c:follow` of %d minutes × %d file objects (%.0f objects/s of CPU) | %s%s | "
    .. "%s (1 minute × %d objects) | %.3f |"
print(row:format(MINUTES, BIG, big_n / big_cpu, mb(big_kb), over, mb(small_kb), SMALL, big_kb / small_kb))
os.exit(over == "" and 0 or 1)
