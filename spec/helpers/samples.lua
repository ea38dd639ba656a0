--- Sample answers as the client hands them over, for specs that read spec/fake/samples and the
-- copies of /work/shared/vt-samples in spec/fixtures.
local vt = require "vt"
local files = require "helpers.files"

local samples = {}

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

return samples
