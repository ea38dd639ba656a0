--- Error values of the actions layer, shaped like the C core's (`code`, `message`, one-line
-- `tostring`), so a playbook handles both the same way.
-- @module vt.actions.errors

local errors = {}

local Error = {
   __name = "vt.actions.error",
   __tostring = function(e)
      return e.code .. ": " .. e.message
   end,
}

--- A new error value.
-- @tparam string code e.g. `"InvalidArgument"`, `"NotFoundError"`
-- @tparam string fmt message format, then its arguments
-- @treturn table `{code =, message =}`
function errors.new(code, fmt, ...)
   return setmetatable({ code = code, message = string.format(fmt, ...) }, Error)
end

--- `nil` and a new error, for `return errors.fail(...)`.
function errors.fail(code, fmt, ...)
   return nil, errors.new(code, fmt, ...)
end

return errors
