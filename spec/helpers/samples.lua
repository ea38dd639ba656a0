--- Sample answers as the client hands them over, for specs that read spec/fake/samples and the
-- copies of /work/shared/vt-samples in spec/fixtures; the objects the fake VirusTotal knows from
-- those samples (spec/fake/README.md, "What it knows").
local vt = require "vt"
local files = require "helpers.files"

local samples = {
    file = "417c06700c3e899f0554654102fa064385bf1d3ecec32471ac488096d81bf38c", -- Win32 EXE, 7/76
    file2 = "de10ba5e5402b46ea975b5cb8a45eb7df9e81dc81012fd4efd145ed2dce3a740", -- ELF
    url = "http://example.com/",
    domain = "haiku-os.org",
    ip = "8.8.8.8",
    analysis = "u-2a1b402420ef46577471cdc7409b0fa2c6a204db316e59ade2d805435489a067-1569484202",
}

--- A sample: a v3 body's `data` (an analysis keeps its `meta`), a v2 body as it is; a Siemplify
-- JsonResult file wraps the v2 body in `EntityResult`.
function samples.read(path)
    local body = assert(vt.decode(assert(files.read(path))))
    if body.data then
        body.data.meta = body.meta
        return body.data
    end
    return body[1] and body[1].EntityResult or body
end

--- Runs a collection iterator over those objects to its end: the items, or nil and what it
-- raised (iterators raise their error value: a `for` loop cannot return nil, err).
function samples.collect(make_iterator)
    local items = {}
    local ok, err = pcall(function()
        for item in make_iterator() do items[#items + 1] = item end
    end)
    if not ok then return nil, err end
    return items
end

return samples
