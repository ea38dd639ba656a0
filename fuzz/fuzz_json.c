/* JSON on any bytes: vt.decode never raises, keeps integral numbers as integers, and what it
 * decodes goes through vt.encode and back unchanged (floats to the bit, integers as integers,
 * null as vt.null, strings byte for byte). */
#include "harness.h"

#include <math.h>
#include <string.h>

/* Deep equality of two decoded values, with the number subtypes compared too. */
static bool same(lua_State *L, int a, int b, int depth)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    fuzz_check(depth < 2000, "nesting beyond what decode accepts");
    if (lua_type(L, a) != lua_type(L, b))
        return false;
    switch (lua_type(L, a)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b))
            return false;
        if (lua_isinteger(L, a))
            return lua_tointeger(L, a) == lua_tointeger(L, b);
        return memcmp(&(double){lua_tonumber(L, a)}, &(double){lua_tonumber(L, b)}, sizeof(double)) == 0;
    case LUA_TTABLE:
        luaL_checkstack(L, 8, "deep");
        if (lua_rawlen(L, a) != lua_rawlen(L, b))
            return false;
        lua_pushnil(L);
        while (lua_next(L, a)) {
            lua_pushvalue(L, -2);
            lua_rawget(L, b);
            if (lua_isnil(L, -1) || !same(L, -2, -1, depth + 1)) {
                lua_pop(L, 3);
                return false;
            }
            lua_pop(L, 2);
        }
        lua_pushnil(L);
        while (lua_next(L, b)) { /* b has no key a lacks */
            lua_pushvalue(L, -2);
            lua_rawget(L, a);
            bool missing = lua_isnil(L, -1);
            lua_pop(L, 2);
            if (missing) {
                lua_pop(L, 1);
                return false;
            }
        }
        return true;
    default:
        return lua_rawequal(L, a, b);
    }
}

/* Every float left by decode is one an integer cannot stand for. */
static void check_integers(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) {
        lua_Number d = lua_tonumber(L, idx);
        lua_Integer i;
        fuzz_check(!(d == floor(d) && lua_numbertointeger(d, &i)), "an integral number decoded as a float");
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        luaL_checkstack(L, 4, "deep");
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            check_integers(L, -1, depth + 1);
            lua_pop(L, 1);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = fuzz_lua();
    lua_settop(L, 0);
    lua_pushlstring(L, (const char *)data, size);
    int n = fuzz_call(L, "decode", 1);
    fuzz_check(n == 1 || n == 2, "decode does not raise on a string");
    if (n == 2) {
        fuzz_check(lua_isnil(L, 1) && lua_type(L, 2) == LUA_TTABLE, "decode fails with nil, err");
        lua_settop(L, 0);
        return 0;
    }
    check_integers(L, 1, 0);
    lua_pushvalue(L, 1);
    n = fuzz_call(L, "encode", 1);
    fuzz_check(n == 1 && lua_type(L, -1) == LUA_TSTRING, "what decode gives, encode takes");
    n = fuzz_call(L, "decode", 1);
    fuzz_check(n == 1, "what encode gives, decode takes");
    fuzz_check(same(L, 1, 2, 0), "decode(encode(v)) equals v");
    fuzz_done(L);
    return 0;
}
