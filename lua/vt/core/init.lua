--- The shared core of the playbook layers (`vt.soar`, `vt.actions`): `backend` (the protocol,
-- v3 or v2 as the client speaks), `report` (the one normaliser of answers into facts) and
-- `input` (options, the client's api, and the indicators alerts carry).
-- @module vt.core
return {
    backend = require "vt.core.backend",
    report = require "vt.core.report",
    input = require "vt.core.input",
}
