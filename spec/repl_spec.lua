-- examples/repl.md stays true: tools/record_repl.lua replays its session against the fake
-- VirusTotal, and the transcript it writes must be the committed one. When behaviour changes on
-- purpose, `lua5.4 tools/record_repl.lua` rewrites the file.

local files = require "helpers.files"

describe("examples/repl.md", function()
    it("is what tools/record_repl.lua records today", function()
        local out = os.tmpname()
        -- the recorder's REPL loads the modules this spec loads (the sanitizer build in CI)
        local command = ("LUA_PATH=%s LUA_CPATH=%s lua5.4 tools/record_repl.lua %s 2>&1"):format(
            files.quote(package.path), files.quote(package.cpath), files.quote(out))
        local pipe = io.popen(command)
        local said = pipe:read("a")
        local ok = pipe:close()
        local recorded = files.read(out)
        os.remove(out)
        assert.is_true(ok, said)
        local committed = files.read("examples/repl.md")
        if recorded ~= committed then
            -- the first line that differs says more than two whole documents
            local want, got = {}, {}
            for line in committed:gmatch("[^\n]*") do want[#want + 1] = line end
            for line in recorded:gmatch("[^\n]*") do got[#got + 1] = line end
            for i = 1, math.max(#want, #got) do
                if want[i] ~= got[i] then
                    error(("examples/repl.md is stale at line %d (run lua5.4 tools/record_repl.lua):\n"
                        .. "committed: %s\nrecorded:  %s"):format(i, tostring(want[i]), tostring(got[i])))
                end
            end
        end
        assert.matches("\n> f\nfile 001015aa… doc 53/62 malicious, last analysis 2020%-04%-10\n", recorded)
        assert.matches("\n> vt.pp%(f, 2%)\nfile 001015aa… [^\n]*\n  id: 001015aa", recorded)
        assert.matches("\nqueued\t0\nin%-progress\t1\n", recorded)
        assert.matches("\nnil\tCancelled: cancelled by the progress function\n", recorded)
    end)
end)
