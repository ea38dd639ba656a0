#!/usr/bin/env lua5.4
-- Records the REPL session of examples/repl.md, so that it shows what the module does today.
--
--   lua5.4 tools/record_repl.lua [OUT]      (from anywhere; default OUT: examples/repl.md)
--
-- It starts the bundled fake VirusTotal (key "demo-key", analyses complete on their third poll),
-- feeds the lines below to `lua5.4 -i -l vt` on its standard input, and keeps everything the
-- interpreter writes, stdout and stderr as a terminal would interleave them: Debian's lua5.4 reads
-- through readline, which echoes each line after its prompt (on a "dumb" terminal wide enough
-- for every line), so the capture reads like a session at a terminal. The fake's port becomes
-- PORT and addresses become 0x...; the first line (the interpreter's banner) is left out. The
-- session runs without VT_API_KEY and with a fresh, empty state directory (for the limiter's
-- file), shown as $XDG_STATE_HOME. The transcript replaces the fenced block that follows
-- the "recorded by tools/record_repl.lua" line of examples/repl.md; the text around it is kept.
-- The modules come from LUA_PATH and LUA_CPATH when they are set, else from lua/ and build/.
local root = arg[0]:match("^(.*)/tools/[^/]*$") or "."
package.path = root .. "/spec/?.lua;" .. package.path
-- the fake's helper reads JSON with vt
package.cpath = (os.getenv("LUA_CPATH") and "" or root .. "/build/?.so;") .. package.cpath
local fake = require "helpers.fake"
local files = require "helpers.files"

-- What the person types. PORT is the fake's port.
local LINES = {
    'c = vt.client{apikey = "demo-key", base_url = "http://127.0.0.1:PORT", requests_per_minute = 30}',
    'c',
    'c:file("44d88612fea8a8f36de82e1278abb02f")',
    'f = assert(c:file("001015AAFCAE8A6942366CBB0E7D39C0738752A7800C41EA1C655D47B0A4D04C"))',
    'f',
    'f.meaningful_name, f.last_analysis_stats.malicious, math.type(f.size), f.size == f.attributes.size',
    'vt.pp(f, 2)',
    'd = assert(c:domain("haiku-os[.]org"))',
    'd, d.registrar',
    'c:ip("not an ip")',
    'assert(c:file("44d88612fea8a8f36de82e1278abb02f"))',
    'vt.is_private_ip("10.0.0.1"), vt.ip_version("2001:db8::1"), vt.url_id("http://example.com/")',
    'for sub in c:related("domain", "haiku-os.org", "subdomains", {limit = 2, max = 3}) do print(sub) end',
    'vt.pp(c:quota_status())',
    'a = assert(c:scan_url("hxxp://phish[.]example/VT-FAKE-MALICIOUS=9"))',
    'r = assert(c:wait(a.id, {interval = 1, progress = function(status, t) print(status, math.floor(t)) end}))',
    'r, r.stats.malicious, r.meta.url_info.url',
    'seen = {}',
    'function note(done, total) seen[#seen + 1] = done .. " of " .. total end',
    'up = assert(c:scan_file({data = "a sample VT-FAKE-MALICIOUS=3", name = "sample.txt"}, {progress = note}))',
    'up, seen[#seen]',
    'c:scan_file({data = "never mind"}, {progress = function(done, total) return false end})',
    'c:close()',
    'c',
}

local MARKER = "recorded by tools/record_repl.lua"

-- What `lua5.4 -i -l vt` shows for the lines, against the fake at `port`.
local function session(port)
    local dir = files.tmpdir()
    local input, output = dir .. "/input.lua", dir .. "/output.txt"
    files.write(input, ((table.concat(LINES, "\n") .. "\n"):gsub("PORT", tostring(port))))
    local command = table.concat({
        "cd", files.quote(root), "&&", "env -u VT_API_KEY TERM=dumb COLUMNS=10000 INPUTRC=/dev/null",
        "XDG_STATE_HOME=" .. files.quote(dir), "XDG_CACHE_HOME=" .. files.quote(dir),
        "LUA_PATH=" .. files.quote(os.getenv("LUA_PATH") or "lua/?.lua;lua/?/init.lua;;"),
        "LUA_CPATH=" .. files.quote(os.getenv("LUA_CPATH") or "build/?.so;;"),
        "lua5.4 -i -l vt <", files.quote(input), ">", files.quote(output), "2>&1",
    }, " ")
    local ok = os.execute(command)
    local text = files.read(output)
    files.rmtree(dir)
    assert(ok, "the REPL failed:\n" .. text)
    text = text:gsub("^[^\n]*\n", "", 1) -- the banner
    text = text:gsub("> \n?$", "")        -- the prompt that met the end of the input
    text = text:gsub("127%.0%.0%.1:" .. port, "127.0.0.1:PORT"):gsub("0x%x+", "0x...")
    text = text:gsub((dir:gsub("%p", "%%%0")), "$XDG_STATE_HOME")
    return text
end

-- The document with its transcript block replaced.
local function with_transcript(doc, transcript)
    local before, fence, after = doc:match("^(.-" .. MARKER .. "[^\n]*\n)(```[^\n]*\n).-\n```\n(.*)$")
    assert(before, "examples/repl.md has no fenced block after a line saying '" .. MARKER .. "'")
    return before .. fence .. transcript .. (transcript:find("\n$") and "" or "\n") .. "```\n" .. after
end

local out = arg[1] or (root .. "/examples/repl.md")
local srv = fake.start { key = "demo-key", analysis_steps = 3 }
local ok, transcript = pcall(session, srv.port)
srv:stop()
assert(ok, transcript)
files.write(out, with_transcript(files.read(root .. "/examples/repl.md"), transcript))
print("wrote " .. out)
