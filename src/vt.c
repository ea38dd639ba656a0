/* Module entry: luaopen_vt, one-time library set-up, vt.versions. */

/*** @module vt */
#include "vt.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <libssh2.h>


/* curl_global_init and libssh2_init are not thread-safe and must run once per
 * process, however many Lua states load the module (busted re-opens it per spec
 * file). pthread_once gives both guarantees. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_status;

static void global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        global_status = -1;
    else if (libssh2_init(0) != 0)
        global_status = -2;
}

double vt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double vt_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

const char *vt_checkstring(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_typeerror(L, idx, "string");
    return lua_tolstring(L, idx, len);
}

void vt_check_option_keys(lua_State *L, int idx, const char *what, const char *const allowed[])
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option keys must be strings (got %s)", what, luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i])
            luaL_error(L, "%s: unknown option '%s'", what, key);
    }
}

void vt_check_opts(lua_State *L, int idx, const char *what, const char *const keys[])
{
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        vt_check_option_keys(L, idx, what, keys);
    }
}

double vt_opt_seconds(lua_State *L, int opts, const char *key, double dflt)
{
    if (lua_isnoneornil(L, opts))
        return dflt;
    int t = lua_getfield(L, opts, key);
    double v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
            luaL_error(L, "option '%s' must be a number >= 0", key);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

lua_Integer vt_opt_integer(lua_State *L, int opts, const char *key, lua_Integer dflt, lua_Integer min)
{
    if (lua_isnoneornil(L, opts))
        return dflt;
    int t = lua_getfield(L, opts, key);
    lua_Integer v = dflt;
    if (t != LUA_TNIL) {
        int isint;
        v = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint || v < min)
            luaL_error(L, "option '%s' must be an integer >= %d", key, (int)min);
    }
    lua_pop(L, 1);
    return v;
}

void vt_push_progress_opt(lua_State *L, int opts)
{
    if (lua_isnoneornil(L, opts))
        lua_pushnil(L);
    else if (lua_getfield(L, opts, "progress") != LUA_TNIL && !lua_isfunction(L, -1))
        luaL_error(L, "option 'progress' must be a function");
}

/***
What this build of vt runs on, for bug reports and feature checks.
@function versions
@treturn table `vt` (this module's version), `libcurl`, `tls` (the TLS library with its version,
or `"none"`), `libssh2`, `lua` (the Lua release vt was built against), and two booleans: `http2`
(libcurl can speak HTTP/2) and `smb` (built with libsmbclient's headers, so `vt.smb_open` can read
Windows shares)
*/
static int vt_versions(lua_State *L)
{
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, VT_VERSION);
    lua_setfield(L, -2, "vt");
    lua_pushstring(L, cv->version);
    lua_setfield(L, -2, "libcurl");
    lua_pushstring(L, cv->ssl_version ? cv->ssl_version : "none");
    lua_setfield(L, -2, "tls");
    lua_pushstring(L, libssh2_version(0));
    lua_setfield(L, -2, "libssh2");
    lua_pushliteral(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
    lua_pushboolean(L, (cv->features & CURL_VERSION_HTTP2) != 0);
    lua_setfield(L, -2, "http2");
#ifdef VT_HAVE_SMB
    lua_pushboolean(L, 1);
#else
    lua_pushboolean(L, 0);
#endif
    lua_setfield(L, -2, "smb");
    return 1;
}

/* The loader finds it by name; declared for -Wmissing-prototypes. */
LUALIB_API int luaopen_vt(lua_State *L);

/* Functions of the vt table written in Lua (lua/vt/NAME.lua, field NAME): loaded
 * on first use, so `require "vt"` stays the C module and pays nothing for them. */
static const char *const lua_backed[] = {"verdict", "pp", NULL};

static int vt_index(lua_State *L)
{
    const char *key = lua_tostring(L, 2);
    for (int i = 0; key && lua_backed[i]; i++) {
        if (strcmp(key, lua_backed[i]) != 0)
            continue;
        lua_getglobal(L, "require");
        lua_pushfstring(L, "vt.%s", key);
        lua_call(L, 1, 1);
        lua_getfield(L, -1, key);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1); /* later look-ups find it directly */
        return 1;
    }
    return 0;
}

LUALIB_API int luaopen_vt(lua_State *L)
{
    luaL_checkversion(L);
    pthread_once(&global_once, global_init);
    if (global_status != 0)
        return luaL_error(L, "vt: %s failed", global_status == -1 ? "curl_global_init" : "libssh2_init");

    lua_newtable(L);
    /*** The module's version, `"vt X.Y.Z"`.
    @field _VERSION
    */
    lua_pushliteral(L, "vt " VT_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushcfunction(L, vt_versions);
    lua_setfield(L, -2, "versions");
    /*** JSON's null in decoded objects (a NULL light userdata, equal to lua-cjson's `cjson.null`).
    @field null
    */
    vt_json_push_null(L);
    lua_setfield(L, -2, "null");
    vt_json_register(L);
    vt_errors_open(L);
    vt_object_open(L);
    vt_indicators_open(L);
    vt_digest_open(L);
    vt_psl_open(L);
    vt_client_open(L);
    vt_sftp_open(L);
    vt_smb_open(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, vt_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    return 1;
}
