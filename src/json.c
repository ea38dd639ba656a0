/* JSON through lua-cjson. Debian's lua-cjson 2.1.0 decodes every number as a
 * float on Lua 5.4, so decoded values are walked once and integral numbers
 * become Lua integers (sizes, counts and epoch times must compare as integers). */
#include "vt.h"

#include <string.h>

/* Per-Lua-state cjson instance, kept in the registry under this address. */
static const char json_key = 0;

void vt_json_open(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &json_key) != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    /* An instance of our own, so a user's cjson settings never change ours. */
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "encode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_remove(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &json_key);
}

static void push_cjson_field(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &json_key);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

void vt_json_push_null(lua_State *L)
{
    push_cjson_field(L, "null");
}

static void integralise(lua_State *L, int idx)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int t = lua_type(L, -1);
        if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Integer i;
            if (lua_numbertointeger(lua_tonumber(L, -1), &i)) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, i);
                lua_rawset(L, idx);
            }
        } else if (t == LUA_TTABLE)
            integralise(L, -1);
        lua_pop(L, 1);
    }
}

static int decode_protected(lua_State *L)
{
    /* [decode, text] */
    lua_call(L, 1, 1);
    if (lua_type(L, -1) == LUA_TTABLE)
        integralise(L, -1);
    else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
        lua_Integer i;
        if (lua_numbertointeger(lua_tonumber(L, -1), &i))
            lua_pushinteger(L, i), lua_remove(L, -2);
    }
    return 1;
}

int vt_json_decode(lua_State *L, const char *text, size_t len, vt_err *e)
{
    lua_pushcfunction(L, decode_protected);
    push_cjson_field(L, "decode");
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *why = lua_tostring(L, -1);
        vt_err_set(e, "InvalidResponse", "response is not valid JSON (%s)", why ? why : "unknown error");
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

void vt_json_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_cjson_field(L, "encode");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
}
