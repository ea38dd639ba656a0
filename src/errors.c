/* The error value of SPEC 3.3: a table {code, message, http, retry_after,
 * curl, analysis_id} whose __tostring gives one readable line. */

/*** @module vt */
#include "vt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void vt_err_set(vt_err *e, const char *code, const char *fmt, ...)
{
    memset(e, 0, sizeof *e);
    e->retry_after = -1;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* The user info runs from after "scheme://" (or the start) to the string's last '@':
 * a password may hold '/', '?', '#' or '@' unencoded, and a proxy URL has no path
 * that could hold an '@' of its own. */
const char *vt_proxy_password(const char *proxy, size_t *len)
{
    size_t scheme = strspn(proxy, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    const char *user = scheme > 0 && strncmp(proxy + scheme, "://", 3) == 0 ? proxy + scheme + 3 : proxy;
    const char *at = strrchr(user, '@');
    const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (!colon || at == colon + 1)
        return NULL;
    *len = (size_t)(at - colon - 1);
    return colon + 1;
}

void vt_redact(char *s, size_t cap, const char *secret, size_t secret_len)
{
    if (secret_len == 0 || cap == 0)
        return;
    /* Copy with every occurrence replaced, scanning forward only (a short key
     * can never be found again inside its own replacement), bounded by cap. */
    char out[1024];
    size_t limit = cap < sizeof out ? cap : sizeof out, n = 0, len = strnlen(s, cap);
    for (size_t i = 0; i < len && n + 1 < limit;) {
        if (i + secret_len <= len && memcmp(s + i, secret, secret_len) == 0) {
            for (const char *r = "***"; *r && n + 1 < limit; r++)
                out[n++] = *r;
            i += secret_len;
        } else
            out[n++] = s[i++];
    }
    out[n] = '\0';
    memcpy(s, out, n + 1);
}

void vt_err_push(lua_State *L, const vt_err *e)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, e->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    if (e->http > 0) {
        lua_pushinteger(L, e->http);
        lua_setfield(L, -2, "http");
    }
    if (e->retry_after >= 0) {
        lua_pushnumber(L, e->retry_after);
        lua_setfield(L, -2, "retry_after");
    }
    if (e->curl[0]) {
        lua_pushstring(L, e->curl);
        lua_setfield(L, -2, "curl");
    }
    if (e->analysis_id[0]) {
        lua_pushstring(L, e->analysis_id);
        lua_setfield(L, -2, "analysis_id");
    }
    luaL_setmetatable(L, VT_ERROR_MT);
}

void vt_err_oom(vt_err *e, const char *doing)
{
    vt_err_set(e, VT_OOM, "out of memory %s", doing);
}

int vt_raise_oom(lua_State *L, const char *doing)
{
    vt_err e;
    vt_err_oom(&e, doing);
    vt_err_push(L, &e);
    return lua_error(L);
}

int vt_err_return(lua_State *L, const vt_err *e)
{
    lua_pushnil(L);
    vt_err_push(L, e);
    return 2;
}

int vt_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    vt_err e;
    vt_err_set(&e, code, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return vt_err_return(L, &e);
}

/* "NotFoundError (HTTP 404): File "x" not found; retry after 3s" */
static int error_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_getfield(L, 1, "code");
    luaL_addvalue(&b);
    if (lua_getfield(L, 1, "http") == LUA_TNUMBER) {
        lua_pushfstring(L, " (HTTP %d)", (int)lua_tointeger(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    } else
        lua_pop(L, 1);
    if (lua_getfield(L, 1, "curl") == LUA_TSTRING) {
        lua_pushfstring(L, " [%s]", lua_tostring(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    } else
        lua_pop(L, 1);
    luaL_addstring(&b, ": ");
    lua_getfield(L, 1, "message");
    luaL_addvalue(&b);
    if (lua_getfield(L, 1, "retry_after") == LUA_TNUMBER) {
        char text[64];
        snprintf(text, sizeof text, " (retry after %.1fs)", lua_tonumber(L, -1));
        lua_pop(L, 1);
        luaL_addstring(&b, text);
    } else
        lua_pop(L, 1);
    if (lua_getfield(L, 1, "analysis_id") == LUA_TSTRING) {
        lua_pushfstring(L, " (analysis %s)", lua_tostring(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    } else
        lua_pop(L, 1);
    luaL_pushresult(&b);
    return 1;
}

/***
An error value like the core's own, for Lua code that fails the way the client does: its
`tostring` is one line (`code (HTTP n): message (retry after ...)`).
@function error
@tparam string code e.g. `"NotFoundError"`
@tparam string message what happened
@tparam[opt] table fields copied into the value (`http`, `retry_after`, `analysis_id`, or the
caller's own)
@treturn table the error value
@raise on an empty code, or a field name that is not a string
*/
static int l_error(lua_State *L)
{
    size_t code_len;
    vt_checkstring(L, 1, &code_len);
    vt_checkstring(L, 2, NULL);
    luaL_argcheck(L, code_len > 0, 1, "error code must not be empty");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    lua_createtable(L, 0, 4);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "vt.error: field names must be strings");
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, 4);
        }
    }
    lua_pushvalue(L, 1);
    lua_setfield(L, 4, "code");
    lua_pushvalue(L, 2);
    lua_setfield(L, 4, "message");
    luaL_setmetatable(L, VT_ERROR_MT);
    return 1;
}

void vt_errors_open(lua_State *L)
{
    if (luaL_newmetatable(L, VT_ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "vt.error");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_error);
    lua_setfield(L, -2, "error");
}
