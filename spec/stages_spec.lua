-- The playbook layers tell each entity's stage (SPEC 9): soar.new{progress = fn} and
-- actions.new{progress = fn} call fn(event) as look-ups, uploads and polls go, over either
-- protocol (the client's api decides); the shared backend (vt.core.backend) makes the events.
local vt = require "vt"
local soar = require "vt.soar"
local actions = require "vt.actions"
local fake = require "helpers.fake"
local files = require "helpers.files"

local BAD = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c" -- 53 engines
local UNKNOWN = "0123456789abcdef0123456789abcdef"

local srv

setup(function()
    srv = fake.start { analysis_steps = 3 }
end)

teardown(function()
    srv:stop()
end)

-- A progress function keeping every event, and the events kept.
local function recorder(answer)
    local events = {}
    return events, function(event)
        events[#events + 1] = event
        if answer then
            return answer(event)
        end
    end
end

-- The events' stages, and what they were about, as "value stage" lines.
local function lines(events, field)
    local out = {}
    for i, e in ipairs(events) do
        out[i] = ("%s %s %s"):format(e[field], e.value, e.text)
    end
    return out
end

for _, api in ipairs { "v3", "v2" } do
    describe("the playbook layers over " .. api .. " tell each entity's stage", function()
        local dir, path, c

        before_each(function()
            srv:reset()
            srv:analysis_steps(3)
            dir = files.tmpdir()
            path = dir .. "/sample.bin"
            files.write(path, "a sample for the stages spec over " .. api)
            c = vt.client { apikey = srv.key, base_url = srv.url, api = api, quota_state = false, retries = 0 }
        end)

        after_each(function()
            c:close()
            files.rmtree(dir)
        end)

        local function tools(progress)
            local host = assert(soar.memory_host { cases = { { id = "1", alert_groups = { ag = { entities = {
                { Identifier = BAD, EntityType = "FILEHASH" }, { Identifier = UNKNOWN, EntityType = "FILEHASH" },
            } } } } } })
            return soar.new { client = c, host = host, poll_interval = 0.01, concurrency = 1, v2_batch = 1,
                progress = progress }
        end

        it("soar: a look-up's entities are looked up or not found", function()
            local events, progress = recorder()
            tools(progress).scan_hash { case_id = "1" }
            assert.same({ "scan_hash " .. BAD .. " looked up", "scan_hash " .. UNKNOWN .. " not found" },
                lines(events, "tool"))
            assert.equal("file", events[1].kind)
            assert.equal("looked up", events[1].stage)
        end)

        it("soar: an upload is uploading, queued, polled with the seconds waited, then done", function()
            local events, progress = recorder()
            local res = tools(progress).upload_and_scan_files { case_id = "1", file_paths = path }
            assert.equal("done", res.entities[1].status)
            -- the file is looked up by its digest first: unknown, so it is uploaded
            local lookup = table.remove(events, 1)
            assert.same({ "not found", vt.digest(path).sha256, "upload_and_scan_files" },
                { lookup.stage, lookup.value, lookup.tool })
            local first, second, last = events[1], events[2], events[#events]
            assert.equal("uploading", first.stage)
            assert.equal("uploading 100%", first.text)
            assert.equal(first.total_bytes, first.done_bytes)
            assert.equal(#files.read(path), first.total_bytes)
            assert.equal("queued", second.stage)
            assert.is_nil(second.elapsed)
            assert.equal("done", last.stage)
            assert.is_true(#events > 3) -- the fake answers completed at the third poll
            for i = 3, #events - 1 do
                local e = events[i]
                assert.truthy(e.stage == "queued" or e.stage == "in-progress", e.stage)
                assert.equal("integer", math.type(e.elapsed))
                assert.equal(("%s %d s"):format(e.stage, e.elapsed), e.text)
            end
            for _, e in ipairs(events) do
                assert.equal("upload_and_scan_files", e.tool)
                assert.equal(path, e.value)
            end
        end)

        it("soar: a progress function returning false while a file uploads cancels that upload", function()
            local events, progress = recorder(function(e) return e.stage ~= "uploading" end)
            local res = tools(progress).upload_and_scan_files { case_id = "1", file_paths = path }
            assert.equal("failed", res.entities[1].status)
            assert.matches("Cancelled", res.entities[1].reason)
            assert.same({ "not found", "uploading", "failed" }, { events[1].stage, events[2].stage, events[3].stage })
            assert.matches("^failed: Cancelled", events[3].text)
            assert.equal(3, #events)
        end)

        it("soar: a failed look-up says why", function()
            srv:fault { type = "status", status = 503 }
            local events, progress = recorder()
            tools(progress).scan_hash { case_id = "1", target_entities = { { Identifier = BAD, EntityType = "FILEHASH" } } }
            assert.equal("failed", events[1].stage)
            assert.matches("^TransientError", events[1].reason)
            assert.equal("failed: " .. events[1].reason, events[1].text)
        end)

        it("actions: a detonation is not found, uploaded, queued, polled, done; a reputation looked up", function()
            local events, progress = recorder()
            local vault = assert(actions.dir_vault(dir .. "/vault"))
            local app = actions.new { client = c, vault = vault, poll_every = 0.01, progress = progress }
            local id = assert(vault:add(path))
            assert.equal("success", app:detonate_file { vault_id = id }.status)
            local stages = {}
            for i, e in ipairs(events) do
                assert.equal("detonate_file", e.action)
                stages[i] = e.stage
            end
            assert.same({ "not found", "uploading", "queued" }, table.move(stages, 1, 3, 1, {}))
            assert.equal("done", stages[#stages])
            assert.equal(id, events[1].value) -- looked up by its SHA-1
            assert.equal(vault:path(id), events[2].value) -- uploaded from the vault
            assert.equal(vault:path(id), events[#events].value) -- the polls are about the upload
            app:file_reputation { hash = BAD }
            assert.equal("file_reputation " .. BAD .. " looked up", lines(events, "action")[#events])
        end)
    end)
end
