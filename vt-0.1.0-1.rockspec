package = "vt"
version = "0.1.0-1"
source = {
   url = "git+file:///vt",
   tag = "v0.1.0",
}
description = {
   summary = "VirusTotal for Lua 5.4: a C core on libcurl with a shared rate limiter, and SOAR-style playbook tools",
   detailed = [[
A C module registering a `vt` table that calls the VirusTotal API (v3 and legacy v2) on curl's multi
engine, limits requests across processes that share a key, streams uploads and downloads, reads
remote files over SFTP (libssh2) and SMB, plus Lua playbook layers in the style of the Google SecOps
and Splunk SOAR VirusTotal integrations.]],
   license = "MIT",
}
dependencies = {
   "lua == 5.4",
   "lua-cjson",
}
-- Probed by library: Debian keeps curl/curl.h under the multiarch include directory,
-- which LuaRocks' header probe does not search. CMake finds the headers itself.
external_dependencies = {
   CURL = { library = "curl" },
   LIBSSH2 = { library = "ssh2" },
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LUA_LIBDIR = "$(LIBDIR)",
      LUA_LUADIR = "$(LUADIR)",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
   },
}
