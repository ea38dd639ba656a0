#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

LUALIB_API int luaopen_vt(lua_State *L);

lua_State *fuzz_lua(void)
{
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaL_requiref(L, "vt", luaopen_vt, 1);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    lua_getglobal(L, "vt");
    return L;
}

int fuzz_call(lua_State *L, const char *name, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_getglobal(L, "vt");
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_insert(L, base + 1);
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK)
        return -1;
    return lua_gettop(L) - base;
}

void fuzz_done(lua_State *L)
{
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT);
}

void fuzz_check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz invariant broken: %s\n", what);
        abort();
    }
}
