-- Progress and cancel on everything long (SPEC 9): uploads and downloads call
-- `progress(done_bytes, total_bytes)` from the await loop (never from a curl callback), waits call
-- `progress(status, elapsed)`; a progress function returning false cancels the call: nil, err
-- with Cancelled, the transfer aborted, nothing partial left on disk.
local vt = require "vt"
local fake = require "helpers.fake"
local files = require "helpers.files"

-- The log entry of the first request to `path`, once the fake has finished with it (a cancelled
-- transfer is logged when the server notices the connection is gone).
local function finished_entry(srv, path)
  for _ = 1, 200 do
    for _, e in ipairs(srv:log()) do
      if e.path:find(path, 1, true) == 1 and e.status then
        return e
      end
    end
    os.execute("sleep 0.05")
  end
  error("no finished request to " .. path)
end

-- A progress function that records its calls, and answers what `answer(done, total)` says.
local function recorder(answer)
  local calls = {}
  return calls, function(done, total)
    calls[#calls + 1] = { done, total }
    if answer then
      return answer(done, total)
    end
  end
end

-- Temporary download files left beside a destination in dir.
local function leftovers(dir)
  local list = {}
  for _, name in ipairs(files.ls(dir)) do
    if name:find("%.vt%-") then
      list[#list + 1] = name
    end
  end
  return list
end

describe("progress and cancel", function()
  local srv, c, dir
  setup(function()
    srv = fake.start { analysis_steps = 0 }
    c = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, poll_interval = 0.01 }
    dir = files.tmpdir()
  end)
  teardown(function()
    c:close()
    srv:stop()
    files.rmtree(dir)
  end)
  before_each(function()
    srv:reset()
    srv:analysis_steps(0)
  end)

  describe("of an upload", function()
    it("reports the file's bytes, ending with the whole size", function()
      local calls, progress = recorder()
      local d = assert(c:scan_file({ data = ("u"):rep(300000), name = "u.bin" }, { progress = progress }))
      assert.equal("analysis", d.type)
      assert.is_true(#calls >= 1)
      assert.same({ 300000, 300000 }, calls[#calls])
      for i, call in ipairs(calls) do
        assert.equal("integer", math.type(call[1]))
        assert.is_true(call[1] <= call[2] and (i == 1 or call[1] >= calls[i - 1][1]))
      end
    end)

    it("is called at most every quarter of a second while the call runs, then once at its end", function()
      srv:fault { type = "slow", delay = 1.2, method = "POST", path = "/api/v3/files" }
      local monotime = require("system").monotime
      local stamps = {}
      assert(c:scan_file({ data = "slow answer", name = "slow.txt" }, { progress = function()
        stamps[#stamps + 1] = monotime()
      end }))
      assert.is_true(#stamps >= 3, #stamps) -- a few while the answer is awaited, and the last
      for i = 2, #stamps - 1 do -- the last call, at the end, may come sooner
        assert.is_true(stamps[i] - stamps[i - 1] >= 0.25 - 0.005, tostring(stamps[i] - stamps[i - 1]))
      end
    end)

    it("is cancelled by a progress function returning false, the connection dropped mid-body", function()
      -- the fake reads nothing for a second: the upload stalls once the socket buffers are full
      srv:fault { type = "slow", delay = 1, method = "POST", path = "/api/v3/files" }
      local size = 20 * 1000 * 1000
      local calls, progress = recorder(function() return false end)
      local d, err = c:scan_file({ data = ("c"):rep(size) }, { progress = progress })
      assert.is_nil(d)
      assert.equal("Cancelled", err.code)
      assert.equal(1, #calls) -- the first report cancelled it
      assert.is_true(calls[1][1] < size)
      local upload = finished_entry(srv, "/api/v3/files")
      assert.is_true(upload.body_length < size / 2, "the fake received " .. upload.body_length)
      -- the client goes on, on another connection
      assert(c:file("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
      local entries = srv:log()
      assert.equal(2, #entries)
      assert.are_not.equal(entries[1].conn, entries[2].conn)
    end)

    it("stops a 200 MB upload within a fraction of it #heavy", function()
      local path = dir .. "/200.bin"
      assert(os.execute("head -c 200M /dev/zero > " .. path))
      local size = 200 * 1024 * 1024
      local calls, progress = recorder(function(done) return done == 0 end) -- cancels once bytes flow
      local d, err = c:scan_file(path, { progress = progress })
      assert.is_nil(d)
      assert.equal("Cancelled", err.code)
      local sent = calls[#calls][1]
      assert.is_true(sent > 0 and sent < size)
      local upload = finished_entry(srv, "/_ah/upload/")
      assert.is_true(upload.body_length < size / 2,
        ("the fake received %d of %d bytes"):format(upload.body_length, size))
      os.remove(path)
    end)

    it("is watched over v2 too", function()
      local v2 = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, api = "v2" }
      local calls, progress = recorder()
      assert(v2:v2_file_scan({ data = ("2"):rep(1000) }, { progress = progress }))
      assert.same({ 1000, 1000 }, calls[#calls])
      srv:fault { type = "slow", delay = 1, method = "POST", path = "/vtapi/v2/file/scan" }
      local _, err = v2:v2("file/scan", { file = { data = ("2"):rep(20e6) }, progress = function() return false end })
      assert.equal("Cancelled", err.code)
      assert.is_true(finished_entry(srv, "/vtapi/v2/file/scan").body_length < 10e6)
      v2:close()
    end)
  end)

  describe("of a download", function()
    local content = ("d"):rep(2 * 1000 * 1000)
    local sha256

    before_each(function()
      sha256 = srv:register_file(content, "d.bin").sha256
    end)

    it("reports the bytes written and the announced length, ending with the whole size", function()
      local calls, progress = recorder()
      local got = assert(c:download(sha256, dir .. "/d.bin", { progress = progress }))
      assert.equal(#content, got.size)
      assert.same({ #content, #content }, calls[#calls])
      for _, call in ipairs(calls) do
        assert.is_true(call[2] == nil or call[2] == #content) -- nil until the content's answer came
      end
      os.remove(dir .. "/d.bin")
    end)

    it("is cancelled by a progress function returning false, leaving no file", function()
      -- the storage host sends its headers, then waits a second before the body
      srv:fault { type = "slow_body", delay = 1, listener = "storage" }
      local calls, progress = recorder(function() return false end)
      local got, err = c:download(sha256, dir .. "/cancelled.bin", { progress = progress })
      assert.is_nil(got)
      assert.equal("Cancelled", err.code)
      assert.same({ { 0, #content } }, calls) -- the length was announced, no byte came yet
      assert.is_false(files.exists(dir .. "/cancelled.bin"))
      assert.same({}, leftovers(dir))
    end)

    it("is cancelled by false even at its last report, the content then dropped", function()
      local calls, progress = recorder(function(done, total) return total == nil or done < total end)
      local got, err = c:download(sha256, dir .. "/last.bin", { progress = progress })
      assert.is_nil(got)
      assert.equal("Cancelled", err.code)
      assert.same({ #content, #content }, calls[#calls])
      assert.is_false(files.exists(dir .. "/last.bin"))
      assert.same({}, leftovers(dir))
    end)

    it("stops a 200 MB download part-way, leaving no file #heavy", function()
      local size = 200 * 1024 * 1024
      local big = srv:register_file(("b"):rep(size), "big.bin").sha256
      local calls, progress = recorder(function(done) return done == 0 end)
      local got, err = c:download(big, dir .. "/big.bin", { progress = progress, max_bytes = 300e6 })
      assert.is_nil(got)
      assert.equal("Cancelled", err.code)
      local written = calls[#calls][1]
      assert.is_true(written > 0 and written < size, ("%d of %d bytes written"):format(written, size))
      assert.is_false(files.exists(dir .. "/big.bin"))
      assert.same({}, leftovers(dir))
    end)

    it("removes the temporary file at once when the progress function raises", function()
      srv:fault { type = "slow_body", delay = 1, listener = "storage" }
      assert.has_error(function()
        c:download(sha256, dir .. "/raised.bin", { progress = function() error("stop here") end })
      end)
      assert.same({}, leftovers(dir))
      assert(c:download(sha256, dir .. "/after.bin")) -- the client goes on
      os.remove(dir .. "/after.bin")
    end)

    it("is watched over v2 too", function()
      local v2 = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, api = "v2" }
      local calls, progress = recorder()
      assert(v2:v2_file_download(sha256, dir .. "/v2.bin", { progress = progress }))
      assert.same({ #content, #content }, calls[#calls])
      srv:fault { type = "slow_body", delay = 1, listener = "storage" }
      local _, err = v2:v2("file/download",
        { hash = sha256, dest = dir .. "/v2c.bin", progress = function() return false end })
      assert.equal("Cancelled", err.code)
      assert.is_false(files.exists(dir .. "/v2c.bin"))
      assert.same({}, leftovers(dir))
      os.remove(dir .. "/v2.bin")
      v2:close()
    end)
  end)

  it("cancels a wait, which then polls no more", function()
    srv:analysis_steps(50)
    local d = assert(c:scan_file { data = "waited for" })
    local mark = #srv:log()
    local statuses = {}
    local a, err = c:wait(d.id, { interval = 0.01, progress = function(status)
      statuses[#statuses + 1] = status
      return #statuses < 2
    end })
    assert.is_nil(a)
    assert.equal("Cancelled", err.code)
    assert.equal(d.id, err.analysis_id)
    assert.same({ "queued", "in-progress" }, statuses)
    assert.equal(2, #srv:log { since = mark })
  end)

  it("runs the progress function between yields in coroutine mode; it may yield too", function()
    local yc = vt.client { apikey = srv.key, base_url = srv.url, quota_state = false, yield = true }
    local loop = require("vt.loop").new(yc)
    srv:fault { type = "slow", delay = 1, method = "POST", path = "/api/v3/files" }
    local yielded = 0
    local task = loop:spawn(function()
      return yc:scan_file({ data = ("y"):rep(20e6) }, { progress = function()
        -- a call inside the progress function yields to the loop like any other
        assert(yc:file("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        return false
      end })
    end)
    local other = loop:spawn(function()
      while not task.done do
        yielded = yielded + 1
        yc:sleep(0.01)
      end
    end)
    loop:run()
    assert.is_true(task.ok and other.ok, tostring(task.error or other.error))
    assert.is_nil(task.results[1])
    assert.equal("Cancelled", task.results[2].code)
    assert.is_true(yielded > 1) -- the other task ran while the upload was watched
    assert.is_not_nil(finished_entry(srv, "/api/v3/files/e3b0"))
    yc:close()
  end)

  it("refuses a progress option that is not a function", function()
    assert.has_error(function() c:scan_file({ data = "x" }, { progress = true }) end,
      "option 'progress' must be a function")
    assert.has_error(function() c:download(("a"):rep(64), dir .. "/x", { progress = 1 }) end,
      "option 'progress' must be a function")
    assert.has_error(function() c:wait("x", { progress = "no" }) end, "option 'progress' must be a function")
    assert.same({}, srv:log())
  end)
end)

describe("vt.progress", function()
  local progress = require "vt.progress"

  -- What a line wrote to its stream.
  local function written(tty, fn)
    local stream = io.tmpfile()
    fn(progress.line(stream, tty))
    stream:seek("set")
    local text = stream:read("a")
    stream:close()
    return text
  end

  -- the same texts shown, then the line wiped
  local function show_twice_and_clear(line)
    line:show("a 1%")
    line:show("a 2%")
    line:show("a 2%")
    line:clear()
  end

  it("updates one line in place on a terminal, and wipes it", function()
    assert.equal("\ra 1%\27[K\ra 2%\27[K\r\27[K", written(true, show_twice_and_clear))
  end)

  it("writes plain lines elsewhere, each new text once", function()
    assert.equal("a 1%\na 2%\n", written(false, show_twice_and_clear))
  end)

  it("asks whether io.stdout or io.stderr is a terminal, and only those", function()
    assert.is_boolean(progress.is_tty(io.stderr))
    assert.has_error(function() progress.is_tty(io.tmpfile()) end,
      "progress.is_tty: the stream must be io.stdout or io.stderr")
  end)

  it("says sizes and events as a person reads them", function()
    assert.equal("35% (70.0 MB of 200.0 MB)", progress.bytes(70 * 1024 * 1024, 200 * 1024 * 1024))
    assert.equal("100% (28 bytes of 28 bytes)", progress.bytes(28, 28))
    assert.equal("1.5 kB", progress.bytes(1536))
    assert.equal("scan_hash 001015aafcae8a6942366cbb0e7d39c0738752a… looked up", progress.describe {
      tool = "scan_hash", value = "001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c",
      text = "looked up" })
    assert.equal("detonate_file sample.exe uploading 35%",
      progress.describe { action = "detonate_file", value = "/tmp/vault/sample.exe", text = "uploading 35%" })
    assert.equal("scan_url http://example.com/ done", progress.describe { tool = "scan_url",
      value = "http://example.com/", text = "done" })
  end)
end)
