--- Shims for LD_PRELOAD in child processes (spec/helpers/<name>.c: a libc or OpenSSL function
-- replaced to log, slow down or fail), compiled by the spec that needs one.
--
--    local preload = require "helpers.preload"
--    local so, why = preload.build("slow_resolver", dir)  -- nil and why without a C compiler
--    local value = preload.value(so)                      -- for LD_PRELOAD
local proc = require "helpers.remote_proc"

local preload = {}

--- Compiles spec/helpers/<name>.c into dir; returns the shared object's path, or nil and why.
function preload.build(name, dir)
    if not proc.ok("command -v cc") then return nil, "no C compiler for spec/helpers/" .. name .. ".c" end
    local so = dir .. "/" .. name .. ".so"
    assert(proc.ok(("cc -shared -fPIC -o %s spec/helpers/%s.c -ldl"):format(proc.q(so), name)))
    return so
end

--- The LD_PRELOAD value for a child: what this process preloads (AddressSanitizer's runtime,
-- which must come first) and then the shim.
function preload.value(so)
    local inherited = os.getenv("LD_PRELOAD")
    return inherited and inherited ~= "" and (inherited .. " " .. so) or so
end

return preload
