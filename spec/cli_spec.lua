-- vt-lua, run as a command (bin/vt-lua in a child process) against the fake VirusTotal: every
-- subcommand, --json parsed back, the exit statuses, what reached the server (its request log),
-- the key kept out of the command line and out of every output, and the examples of docs/cli.md.
-- The child keeps this process's LD_PRELOAD (it is the code under test: the sanitizer run covers
-- it); valgrind does not trace children, so under valgrind only this file's own code is checked.
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"

local KEY = "cli-secret-key-5f0c7e1d"
local DOC = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c" -- 53/62, cDCUTY.tmp
local EXE = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c" -- 7 malicious
local UNKNOWN_MD5 = "44d88612fea8a8f36de82e1278abb02f"

local function lines_of(text)
    local lines = {}
    for line in text:gmatch("([^\n]*)\n") do
        lines[#lines + 1] = line
    end
    return lines
end

local quote, read, write = files.quote, files.read, files.write
local ROOT = assert(io.popen("pwd")):read("l")

-- This process's module paths, made absolute, for the child.
local function absolute(paths)
    local out = {}
    for template in paths:gmatch("[^;]+") do
        out[#out + 1] = template:sub(1, 1) == "/" and template or ROOT .. "/" .. template
    end
    return table.concat(out, ";")
end

-- The path part of a logged request (the fake logs the query apart).
local function paths_of(entries)
    local list = {}
    for i, e in ipairs(entries) do
        list[i] = e.method .. " " .. e.path
    end
    return list
end

local function json_lines(text)
    local docs = {}
    for i, line in ipairs(lines_of(text)) do
        docs[i] = assert(vt.decode(line), line)
    end
    return docs
end

describe("vt-lua", function()
    local srv, tmp, env

    -- Runs a shell command line (where `vt-lua` is bin/vt-lua) in `tmp`; returns
    -- {code, out, err}. opts: stdin (text), env (name -> value, or false to unset).
    local function run(cmdline, opts)
        opts = opts or {}
        local vars = {}
        for k, v in pairs(env) do
            vars[k] = v
        end
        for k, v in pairs(opts.env or {}) do
            vars[k] = v
        end
        local names = {}
        for k in pairs(vars) do
            names[#names + 1] = k
        end
        table.sort(names)
        local command = { "cd", quote(tmp), "&&", "env -u LD_PRELOAD" }
        for _, k in ipairs(names) do
            if not vars[k] then
                command[#command + 1] = "-u " .. k -- env takes these before the settings
            end
        end
        for _, k in ipairs(names) do
            if vars[k] then
                command[#command + 1] = k .. "=" .. quote(vars[k])
            end
        end
        write(tmp .. "/stdin", opts.stdin or "")
        command[#command + 1] = ("timeout -k 5 120 sh -c %s <%s >%s 2>%s"):format(quote(cmdline),
            quote(tmp .. "/stdin"), quote(tmp .. "/stdout"), quote(tmp .. "/stderr"))
        local _, _, code = os.execute(table.concat(command, " "))
        local res = { code = code, out = read(tmp .. "/stdout"), err = read(tmp .. "/stderr") }
        -- whatever happened, the key shows in no output
        assert.is_nil(res.out:find(KEY, 1, true), "the key is in stdout:\n" .. res.out)
        assert.is_nil(res.err:find(KEY, 1, true), "the key is in stderr:\n" .. res.err)
        return res
    end

    setup(function()
        srv = fake.start { key = KEY, analysis_steps = 0 }
        tmp = files.tmpdir()
        assert(os.execute("mkdir " .. quote(tmp .. "/bin") .. " " .. quote(tmp .. "/state")))
        -- `vt-lua` on the children's PATH: bin/vt-lua with this process's LD_PRELOAD
        local preload = os.getenv("LD_PRELOAD")
        write(tmp .. "/bin/vt-lua", "#!/bin/sh\n"
            .. (preload and "LD_PRELOAD=" .. quote(preload) .. "; export LD_PRELOAD\n" or "")
            .. "exec " .. quote(ROOT .. "/bin/vt-lua") .. ' "$@"\n')
        assert(os.execute("chmod +x " .. quote(tmp .. "/bin/vt-lua")))
        env = {
            PATH = tmp .. "/bin:" .. os.getenv("PATH"),
            LUA_PATH = absolute(package.path), LUA_CPATH = absolute(package.cpath),
            XDG_STATE_HOME = tmp .. "/state", XDG_CACHE_HOME = tmp .. "/cache",
            VT_API_KEY = KEY, VT_BASE_URL = srv.url,
        }
    end)

    teardown(function()
        srv:stop()
        files.rmtree(tmp)
    end)

    before_each(function()
        srv:reset()
    end)

    describe("help and usage", function()
        it("prints help for the command and for each subcommand, exit 0, without a key or a request", function()
            local res = run("vt-lua --help", { env = { VT_API_KEY = false } })
            assert.equal(0, res.code)
            assert.matches("^Usage: vt%-lua COMMAND", res.out)
            assert.equal("", res.err)
            assert.equal(res.out, run("vt-lua help").out)
            assert.equal(res.out, run("vt-lua -h").out)
            for _, cmd in ipairs { "file", "url", "domain", "ip", "scan", "download", "related", "triage", "quota" } do
                local sub = run("vt-lua " .. cmd .. " --help", { env = { VT_API_KEY = false } })
                assert.equal(0, sub.code)
                local usage = sub.out:match("^Usage: vt%-lua (%S+)")
                assert.equal(cmd, usage:find("|", 1, true) and usage:match(cmd) or usage)
                assert.equal(sub.out, run("vt-lua help " .. cmd).out)
            end
            assert.same({}, srv:log())
        end)

        it("ends usage errors with exit 2, a message and a pointer to the help, before any request", function()
            local cases = {
                { "vt-lua", "no command given", "Try 'vt-lua --help'" },
                { "vt-lua lookup x", "unknown command 'lookup'", "Try 'vt-lua --help'" },
                { "vt-lua file " .. DOC .. " --colour", "unknown option '--colour'", "Try 'vt-lua --help'" },
                { "vt-lua quota --max 3", "quota does not take --max", "Try 'vt-lua quota --help'" },
                { "vt-lua related domain example.com subdomains --max", "--max needs a value (N)",
                    "Try 'vt-lua --help'" },
                { "vt-lua related domain example.com subdomains --max 0", "--max must be a whole number, 1 or more",
                    "Try 'vt-lua related --help'" },
                { "vt-lua related host example.com subdomains", "the kind must be file, url, domain or ip",
                    "Try 'vt-lua related --help'" },
                { "vt-lua file " .. DOC .. " --api v4", "--api must be v2 or v3", "Try 'vt-lua file --help'" },
                { "vt-lua file " .. DOC .. " --fields 'a..b'", "--fields: 'a..b' is not a dotted path",
                    "Try 'vt-lua file --help'" },
                { "vt-lua file " .. DOC .. " --concurrency 0", "--concurrency must be a whole number, 1 or more",
                    "Try 'vt-lua file --help'" },
                { "vt-lua file", "give at least one hash, or - to read them from stdin", "Try 'vt-lua file --help'" },
                { "vt-lua download " .. DOC, "give a hash and a destination path", "Try 'vt-lua download --help'" },
                { "vt-lua scan --json", "give at least one file or URL", "Try 'vt-lua scan --help'" },
                { "vt-lua json --wait", "unknown command 'json'", "Try 'vt-lua --help'" },
                { "vt-lua quota --api v2", "quota does not take --api", "Try 'vt-lua quota --help'" },
                { "vt-lua file " .. DOC .. " --apikey-file missing.key", "--apikey-file: missing.key: No such file",
                    "Try 'vt-lua file --help'" },
            }
            for _, case in ipairs(cases) do
                local res = run(case[1])
                assert.equal(2, res.code, case[1])
                assert.equal("", res.out, case[1])
                assert.equal("vt-lua: ", res.err:sub(1, 8), case[1])
                assert.truthy(res.err:find(case[2], 1, true), case[1] .. " said: " .. res.err)
                assert.truthy(res.err:find(case[3], 1, true), case[1] .. " said: " .. res.err)
            end
            assert.same({}, srv:log())
        end)

        it("asks for a key when there is none", function()
            local res = run("vt-lua file " .. DOC, { env = { VT_API_KEY = false } })
            assert.equal(2, res.code)
            assert.matches("no API key: set VT_API_KEY or give %-%-apikey%-file PATH", res.err)
            assert.same({}, srv:log())
        end)

        it("refuses a key on the command line, saying why, and never echoes it", function()
            for _, args in ipairs { "--apikey not-the-real-key", "--apikey=not-the-real-key", "--api-key x" } do
                local res = run("vt-lua file " .. DOC .. " " .. args)
                assert.equal(2, res.code)
                assert.matches("is refused: the API key is not taken from the command line, where `ps`", res.err)
                assert.matches("set VT_API_KEY or give %-%-apikey%-file PATH", res.err)
                assert.is_nil(res.err:find("not-the-real-key", 1, true))
            end
            assert.same({}, srv:log())
        end)

        it("passes a client option's own error on as a usage error", function()
            local res = run("vt-lua file " .. DOC .. " --base-url ftp://example.com")
            assert.equal(2, res.code)
            assert.matches("^vt%-lua: .*base_url", res.err)
            assert.same({}, srv:log())
        end)
    end)

    describe("file|url|domain|ip", function()
        it("prints a table: one line per indicator, errors as their one line; exit 1 when one failed", function()
            local res = run("vt-lua file " .. DOC .. " " .. UNKNOWN_MD5 .. " not-a-hash " .. EXE)
            assert.equal(1, res.code)
            assert.equal("", res.err)
            local lines = lines_of(res.out)
            assert.equal(5, #lines)
            assert.matches("^INDICATOR%s+KIND%s+DETECTIONS%s+VERDICT%s+DATE%s+DETAILS$", lines[1])
            assert.matches("^" .. DOC .. "  file  53/62%s+malicious%s+2020%-04%-10  cDCUTY%.tmp, MS Word Document$",
                lines[2])
            assert.matches("^" .. UNKNOWN_MD5 .. "%s+file  NotFoundError %(HTTP 404%): File \"" .. UNKNOWN_MD5
                .. "\" not found$", lines[3])
            assert.matches("^not%-a%-hash%s+file  InvalidArgument: not an MD5, SHA%-1 or SHA%-256 hash: "
                .. "'not%-a%-hash'$", lines[4])
            assert.matches("^" .. EXE .. "  file  7/72%s+suspicious%s+2023%-12%-18  source%.exe, Win32 EXE$", lines[5])
            -- the malformed one cost nothing
            local sent = paths_of(srv:log())
            table.sort(sent)
            assert.same({ "GET /api/v3/files/" .. DOC, "GET /api/v3/files/" .. EXE,
                "GET /api/v3/files/" .. UNKNOWN_MD5 }, sent)
        end)

        it("looks up URLs, domains and IP addresses, defanged or not; exit 0 when all succeeded", function()
            local res = run("vt-lua url 'hxxp://example[.]com/'")
            assert.equal(0, res.code)
            assert.matches("\nhxxp://example%[%.%]com/  url   0/71%s+harmless%s+2019%-10%-19  Example Domain\n$",
                res.out)
            res = run("vt-lua domain haiku-os[.]org virustotal.com")
            assert.equal(0, res.code)
            assert.matches("\nhaiku%-os%[%.%]org  domain  0/94%s+harmless%s+2025%-03%-15  NameCheap, Inc%.\n", res.out)
            res = run("vt-lua ip 8.8.8.8")
            assert.equal(0, res.code)
            assert.matches("\n8%.8%.8%.8%s+ip%s+0/94%s+harmless%s+%-%s+Google LLC, US\n$", res.out)
            local sent = paths_of(srv:log())
            table.sort(sent)
            assert.same({ "GET /api/v3/domains/haiku-os.org", "GET /api/v3/domains/virustotal.com",
                "GET /api/v3/ip_addresses/8.8.8.8", "GET /api/v3/urls/aHR0cDovL2V4YW1wbGUuY29tLw" }, sent)
        end)

        it("fails a malformed indicator with InvalidArgument, exit 1, and sends no request", function()
            local res = run("vt-lua ip 300.1.1.1 --json")
            assert.equal(1, res.code)
            assert.same({ { input = "300.1.1.1", kind = "ip", error = { code = "InvalidArgument",
                message = "not an IP address: '300.1.1.1'" } } }, json_lines(res.out))
            assert.same({}, srv:log())
        end)

        it("prints one JSON document per line with --json, in input order, errors with their input", function()
            local res = run("vt-lua file " .. EXE .. " " .. UNKNOWN_MD5 .. " " .. DOC .. " --json")
            assert.equal(1, res.code)
            local docs = json_lines(res.out)
            assert.equal(3, #docs)
            assert.equal(EXE, docs[1].id)
            assert.equal("file", docs[1].type)
            assert.equal(7, docs[1].attributes.last_analysis_stats.malicious)
            assert.equal("integer", math.type(docs[1].attributes.size))
            assert.same({ input = UNKNOWN_MD5, kind = "file", error = { code = "NotFoundError", http = 404,
                message = 'File "' .. UNKNOWN_MD5 .. '" not found' } }, docs[2])
            assert.equal(DOC, docs[3].id)
        end)

        it("picks attributes with --fields, in the table and in JSON", function()
            local res = run("vt-lua file " .. DOC .. " --fields last_analysis_stats.malicious,meaningful_name,size,id")
            assert.equal(0, res.code)
            assert.same({
                "INDICATOR" .. (" "):rep(55) .. "  KIND  LAST_ANALYSIS_STATS.MALICIOUS  MEANINGFUL_NAME  SIZE   ID",
                DOC .. "  file  53                             cDCUTY.tmp       64000  " .. DOC }, lines_of(res.out))
            res = run("vt-lua file " .. DOC
                .. " --json --fields last_analysis_stats.malicious,meaningful_name,nothing.here")
            assert.same({ { type = "file", id = DOC, attributes = { meaningful_name = "cDCUTY.tmp",
                last_analysis_stats = { malicious = 53 } } } }, json_lines(res.out))
        end)

        it("speaks v2 with --api v2", function()
            local res = run("vt-lua file " .. DOC .. " --api v2")
            assert.equal(0, res.code)
            assert.matches("\n" .. DOC .. "  file  53/62%s+malicious%s+2020%-04%-10  ", res.out)
            res = run("vt-lua url http://github.com/ --api v2 --json --fields positives,total")
            assert.equal(0, res.code)
            assert.same({ { positives = 0, total = 66 } }, json_lines(res.out))
            assert.same({ "GET /vtapi/v2/file/report", "GET /vtapi/v2/url/report" }, paths_of(srv:log()))
        end)

        describe("on stdin", function()
            local hashes

            before_each(function()
                hashes = {}
                for i = 1, 50 do
                    hashes[i] = srv:register_file(("indicator %d of 50"):format(i)).sha256
                end
            end)

            it("looks 50 indicators up with 50 requests, skipping blank and # lines", function()
                local input = "# from the mail gateway\n\n" .. table.concat(hashes, "\n") .. "\n"
                local res = run("vt-lua file - --json", { stdin = input })
                assert.equal(0, res.code, res.err)
                local docs = json_lines(res.out)
                assert.equal(50, #docs)
                for i, d in ipairs(docs) do
                    assert.equal(hashes[i], d.id)
                end
                local sent = srv:log()
                assert.equal(50, #sent)
                local asked = {}
                for _, e in ipairs(sent) do
                    asked[e.path] = true
                end
                for _, h in ipairs(hashes) do
                    assert.is_true(asked["/api/v3/files/" .. h])
                end
            end)

            it("spends fewer requests on a second run with --cache sqlite:PATH", function()
                local input = table.concat(hashes, "\n")
                local spec = "sqlite:" .. tmp .. "/cache.db"
                assert.equal(0, run("vt-lua file - --cache " .. spec, { stdin = input }).code)
                assert.equal(50, #srv:log())
                local res = run("vt-lua file - --json --cache=" .. spec, { stdin = input })
                assert.equal(0, res.code)
                assert.equal(50, #json_lines(res.out))
                assert.equal(50, #srv:log()) -- every look-up came from the cache
            end)
        end)
    end)

    describe("scan", function()
        before_each(function()
            write(tmp .. "/sample.txt", "a sample VT-FAKE-MALICIOUS=7")
        end)

        it("submits files and URLs and prints their analysis ids", function()
            local res = run("vt-lua scan sample.txt 'hxxp://phish[.]example/VT-FAKE-MALICIOUS=9' --json")
            assert.equal(0, res.code, res.err)
            local docs = json_lines(res.out)
            assert.equal(2, #docs)
            assert.equal("analysis", docs[1].type)
            assert.matches("^u%-", docs[2].id)
            assert.same({ "POST /api/v3/files", "POST /api/v3/urls" }, paths_of(srv:log()))
            res = run("vt-lua scan sample.txt")
            assert.matches("\nsample%.txt  file  %-%s+%-%s+%-%s+submitted, analysis %S+\n$", res.out)
        end)

        it("fails a missing file and a malformed URL (no request), exit 1", function()
            local res = run("vt-lua scan missing.bin 'http://bad url' sample.txt")
            assert.equal(1, res.code)
            local lines = lines_of(res.out)
            assert.matches("^missing%.bin%s+file  InvalidArgument: cannot open 'missing%.bin'", lines[2])
            assert.matches("^http://bad url%s+url   InvalidArgument: not a URL", lines[3])
            assert.same({ "POST /api/v3/files" }, paths_of(srv:log()))
        end)

        it("waits with --wait, showing the progress on stderr and the result on stdout", function()
            srv:analysis_steps(3)
            local res = run("vt-lua scan sample.txt --wait --poll-interval 0.1 --fields stats.malicious,status")
            assert.equal(0, res.code, res.err)
            assert.same({ "TARGET      KIND  STATS.MALICIOUS  STATUS", "sample.txt  file  7                completed" },
                lines_of(res.out))
            -- stderr is a pipe here: plain lines, the upload's then the polls'
            local progress = lines_of(res.err)
            assert.equal(3, #progress)
            assert.equal("sample.txt: uploading 100% (28 bytes of 28 bytes)", progress[1])
            assert.equal("sample.txt: queued, 0 s", progress[2])
            assert.matches("^sample%.txt: in%-progress, %d+ s$", progress[3])
            local sent = paths_of(srv:log())
            assert.equal(4, #sent) -- the upload and three polls
            assert.matches("^GET /api/v3/analyses/", sent[4])
        end)
    end)

    describe("download", function()
        it("saves the content and prints what it saved", function()
            local info = srv:register_file("downloadable content", "d.txt")
            local res = run("vt-lua download " .. info.md5 .. " saved.bin --json")
            assert.equal(0, res.code, res.err)
            local doc = json_lines(res.out)[1]
            assert.equal(info.sha256, doc.sha256)
            assert.equal(20, doc.size)
            assert.equal("downloadable content", read(tmp .. "/saved.bin"))
            res = run("vt-lua download " .. info.sha256 .. " again.bin --api v2")
            assert.equal(0, res.code, res.err)
            assert.same({ "HASH" .. (" "):rep(60) .. "  SIZE  SHA256" .. (" "):rep(58) .. "  PATH",
                info.sha256 .. "  20    " .. info.sha256 .. "  again.bin" }, lines_of(res.out))
            local main = table.concat(paths_of(srv:log { listener = "main" }), "\n")
            assert.truthy(main:find("GET /vtapi/v2/file/download", 1, true))
        end)

        it("fails, exit 1, leaving nothing, when the content is not available", function()
            local res = run("vt-lua download " .. DOC .. " nothing.bin")
            assert.equal(1, res.code)
            assert.matches("NotFoundError %(HTTP 404%)", res.out)
            assert.is_false(files.exists(tmp .. "/nothing.bin"))
        end)
    end)

    describe("related", function()
        it("lists related objects up to --max", function()
            local res = run("vt-lua related domain haiku-os.org subdomains --max 3 --json --fields last_analysis_stats")
            assert.equal(0, res.code, res.err)
            local docs = json_lines(res.out)
            assert.equal(3, #docs)
            for i, d in ipairs(docs) do
                assert.equal(("sub%d.haiku-os.org"):format(i - 1), d.id)
                assert.is_table(d.attributes.last_analysis_stats)
            end
            local sent = srv:log()
            assert.equal(1, #sent)
            assert.equal("/api/v3/domains/haiku-os.org/subdomains", sent[1].path)
            assert.matches("limit=3", sent[1].query)
            res = run("vt-lua related ip 8.8.8.8 urls --max 2")
            assert.matches("\nhttp://8%.8%.8%.8/urls/1  url   0/71%s+harmless%s+%S+  Fake page\n$", res.out)
        end)

        it("fails on the service's error and on a malformed id (no request), exit 1", function()
            local res = run("vt-lua related ip 8.8.8.8 nope")
            assert.equal(1, res.code)
            assert.matches("8%.8%.8%.8%s+ip%s+InvalidArgumentError %(HTTP 400%)", res.out)
            srv:reset()
            res = run("vt-lua related ip 8.8.8 urls")
            assert.equal(1, res.code)
            assert.matches("InvalidArgument: not an IP address", res.out)
            assert.same({}, srv:log())
        end)
    end)

    describe("triage", function()
        local CASE = {
            cases = { {
                id = "7", alert_groups = { edr = { entities = {
                    { Identifier = DOC, EntityType = "FILEHASH", IsInternal = false, IsSuspicious = false,
                        AdditionalProperties = {} },
                    { Identifier = "http://example.com/", EntityType = "DestinationURL", IsInternal = false,
                        IsSuspicious = false, AdditionalProperties = {} },
                    { Identifier = "github.com", EntityType = "DOMAIN", IsInternal = false, IsSuspicious = false,
                        AdditionalProperties = {} },
                } } },
            } },
        }

        it("runs the tools that apply to the case's entities and saves the enriched case", function()
            write(tmp .. "/case.json", vt.encode(CASE))
            local res = run("vt-lua triage case.json --threshold 10 --save enriched.json --json")
            assert.equal(0, res.code, res.err)
            local docs = json_lines(res.out)
            assert.equal(3, #docs)
            assert.same({ "scan_hash", "scan_url", "get_domain_report" }, { docs[1].tool, docs[2].tool, docs[3].tool })
            for _, d in ipairs(docs) do
                assert.equal("7", d.case)
                assert.equal("done", d.status)
            end
            assert.equal(DOC, docs[1].entity)
            assert.is_true(docs[1].suspicious)
            assert.equal(53, docs[1].positives)
            local saved = vt.decode(read(tmp .. "/enriched.json"))
            local entity = saved.cases[1].alert_groups.edr.entities[1]
            assert.is_true(entity.IsSuspicious)
            assert.equal("53", tostring(entity.AdditionalProperties.VT_Positives))
            -- no scan_ip: the case has no address
            for _, e in ipairs(srv:log()) do
                assert.is_nil(e.path:find("/ip_addresses/", 1, true))
            end
        end)

        it("prints a table of outcomes; invalid entities make exit 1", function()
            local res = run("vt-lua triage " .. quote(ROOT .. "/examples/cases/phishing.json"))
            assert.equal(1, res.code, res.err)
            local lines = lines_of(res.out)
            assert.matches("^ENTITY%s+TYPE%s+TOOL%s+STATUS%s+DETECTIONS%s+VERDICT%s+REASON$", lines[1])
            assert.equal(17, #lines)
            assert.matches("\nd41d8cd98f00b204e9800998ecf8427%s+FILEHASH%s+scan_hash%s+invalid ", res.out)
            assert.matches("\n10%.20%.30%.40%s+ADDRESS%s+scan_ip%s+skipped ", res.out)
            assert.matches("\nhttp://login%-micros0ft%.example/VT%-FAKE%-MALICIOUS=14%s+DestinationURL%s+scan_url"
                .. "%s+done%s+14/71%s+suspicious ", res.out)
        end)

        it("fails a missing case file or case, exit 1", function()
            local res = run("vt-lua triage nowhere.json")
            assert.equal(1, res.code)
            assert.matches("nowhere%.json%s+case  InvalidArgument: nowhere%.json", res.out)
            write(tmp .. "/case.json", vt.encode(CASE))
            res = run("vt-lua triage case.json --case 8 --json")
            assert.equal(1, res.code)
            assert.same({ { input = "8", kind = "case", error = { code = "InvalidArgument",
                message = "no case 8 in case.json" } } }, json_lines(res.out))
            assert.same({}, srv:log())
        end)
    end)

    describe("quota", function()
        it("shows the local limiter and the service's quotas", function()
            local res = run("vt-lua quota --requests-per-minute 10 --json")
            assert.equal(0, res.code, res.err)
            local doc = json_lines(res.out)[1]
            assert.equal(10, doc.limiter.windows[1].n)
            assert.equal("sliding", doc.limiter.windows[1].kind)
            assert.equal(500, doc.service.api_requests_daily.user.allowed)
            res = run("vt-lua quota")
            assert.equal(0, res.code)
            local lines = lines_of(res.out)
            assert.matches("^SOURCE%s+WINDOW%s+USED%s+LIMIT%s+NEXT SLOT$", lines[1])
            assert.equal("limiter  none (no local limit)", lines[2])
            assert.matches("^service  api_requests_daily%s+%d+%s+500$", lines[3])
            assert.equal(5, #lines)
        end)

        it("shows the service's refusal, exit 1", function()
            srv:fault { type = "status", status = 403, path = "/api/v3/users/" }
            local res = run("vt-lua quota --json")
            assert.equal(1, res.code)
            local doc = json_lines(res.out)[1]
            assert.same({ windows = {} }, { windows = doc.limiter.windows })
            assert.equal("ForbiddenError", doc.service.error.code)
        end)
    end)

    describe("the API key", function()
        it("is read from --apikey-file", function()
            write(tmp .. "/key.txt", KEY .. "\n")
            local res = run("vt-lua file " .. DOC .. " --apikey-file key.txt", { env = { VT_API_KEY = false } })
            assert.equal(0, res.code, res.err)
            assert.equal(KEY, srv:log()[1].key)
        end)

        it("is not among the arguments `ps` shows of a running vt-lua", function()
            srv:fault { type = "slow", delay = 3, path = "/api/v3/files/" }
            -- the shell waits until the child runs as lua5.4 (after env's exec), copies its
            -- arguments while the fake holds the answer back, then waits for its exit
            local res = run([[
vt-lua file ]] .. DOC .. [[ >out.txt &
pid=$!
n=0
while [ $n -lt 500 ]; do
  args=$(tr '\0' ' ' < /proc/$pid/cmdline)
  case "$args" in lua5.4*) break ;; esac
  n=$((n + 1)); sleep 0.01
done
printf '%s' "$args"
wait $pid
]])
            assert.equal(0, res.code, res.err)
            assert.matches("^lua5%.4 %S*bin/vt%-lua file " .. DOC .. " ?$", res.out)
            assert.is_nil(res.out:find(KEY, 1, true))
            assert.equal("slow", srv:log()[1].fault) -- it was read while the request was held
            assert.matches("53/62", read(tmp .. "/out.txt"))
        end)

        it("is in no output even when the service echoes it", function()
            srv:fault { type = "status", status = 401, code = "WrongCredentialsError", path = "/api/v3/files/",
                message = "Wrong API key: " .. KEY, count = -1 }
            for _, args in ipairs { "file " .. DOC, "file " .. DOC .. " --json", "file - --json" } do
                local res = run("vt-lua " .. args, { stdin = DOC .. "\n" .. EXE .. "\n" })
                assert.equal(1, res.code)
                assert.matches("WrongCredentialsError", res.out)
                assert.matches("Wrong API key: %*%*%*", res.out)
            end
            srv:fault { type = "status", status = 400, path = "/api/v3/users/", body = "no quota for " .. KEY,
                content_type = "text/plain" }
            local res = run("vt-lua quota")
            assert.equal(1, res.code)
            assert.matches("service", res.out)
            srv:fault { type = "status", status = 401, code = "WrongCredentialsError", method = "POST",
                message = "Wrong API key: " .. KEY }
            write(tmp .. "/sample.txt", "a sample")
            res = run("vt-lua scan sample.txt --json")
            assert.equal(1, res.code)
            assert.equal("WrongCredentialsError", json_lines(res.out)[1].error.code)
            srv:fault { type = "status", status = 401, code = "WrongCredentialsError",
                message = "Wrong API key: " .. KEY, count = -1 }
            write(tmp .. "/case.json", '{"cases": [{"id": "1", "alert_groups": {"g": {"entities": ['
                .. '{"Identifier": "' .. DOC .. '", "EntityType": "FILEHASH"}]}}}]}')
            res = run("vt-lua triage case.json --save case-out.json")
            assert.equal(1, res.code)
            assert.matches("WrongCredentialsError", res.out)
            assert.is_nil(read(tmp .. "/case-out.json"):find(KEY, 1, true))
        end)
    end)

    describe("docs/cli.md", function()
        -- Each ```console block: "$ " lines run in order (in one directory, with the fake and
        -- examples/ at hand); the lines after one are its stdout. In them "..." stands for any
        -- text, a line "..." alone for any further lines, and a JSON line is compared decoded.
        -- A command's exit status is 0 unless it ends with "# exit N".
        local function examples()
            local list, block = {}, nil
            for line in read(ROOT .. "/docs/cli.md"):gmatch("([^\n]*)\n") do
                if line == "```console" then
                    block = true
                elseif line == "```" then
                    block = nil
                elseif block and line:sub(1, 2) == "$ " then
                    list[#list + 1] = { command = line:sub(3), expected = {},
                        status = tonumber(line:match("# exit (%d+)$")) or 0 }
                elseif block then
                    table.insert(list[#list].expected, line)
                end
            end
            return list
        end

        local function like(pattern_text, line)
            local pattern = "^" .. pattern_text:gsub("%p", "%%%0"):gsub("%%%.%%%.%%%.", ".-") .. "$"
            return line:find(pattern) ~= nil
        end

        local function check(example, out)
            local got = lines_of(out)
            for i, want in ipairs(example.expected) do
                if want == "..." then
                    return
                elseif want:sub(1, 1) == "{" then
                    assert.same(vt.decode(want), got[i] and vt.decode(got[i]), example.command)
                else
                    assert.is_true(got[i] ~= nil and like(want, got[i]),
                        ("%s\nline %d: wanted %s\ngot:\n%s"):format(example.command, i, want, out))
                end
            end
            assert.equal(#example.expected, #got, example.command .. "\n" .. out)
        end

        it("run as shown", function()
            local list = examples()
            assert.truthy(#list >= 10)
            local seen = {}
            local dir = tmp .. "/docs"
            assert(os.execute(("mkdir %s && ln -s %s %s"):format(quote(dir), quote(ROOT .. "/examples"),
                quote(dir .. "/examples"))))
            for _, example in ipairs(list) do
                -- a state directory of their own: the limiter's windows start empty
                local res = run("cd docs && " .. example.command, { env = { XDG_STATE_HOME = dir .. "/state" } })
                assert.equal(example.status, res.code, example.command .. "\n" .. res.out .. res.err)
                check(example, res.out)
                seen[example.command:match("vt%-lua (%S+)") or ""] = true
            end
            for _, cmd in ipairs { "file", "url", "domain", "ip", "scan", "download", "related", "triage", "quota" } do
                assert.is_true(seen[cmd], "docs/cli.md shows no example of " .. cmd)
            end
        end)
    end)
end)
