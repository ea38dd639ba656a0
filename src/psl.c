/* vt.registered_domain: the registrable domain of a host name by the Public
 * Suffix List, through libpsl (already loaded with libcurl). libpsl reads the
 * system's list (Debian's publicsuffix package) or falls back to the list built
 * into it, and understands internationalised names in UTF-8 and in punycode.
 *
 * The list is loaded on first use, once per Lua state, and freed with it; vt.normalize's
 * domain rule (indicators.c) reads the same list. */

/*** @module vt */
#include "vt.h"

#include <string.h>

#include <libpsl.h>

#define VT_PSL_MT "vt.psl"
#define VT_PSL_KEY "vt.psl.list" /* the state's holder, in the registry */

typedef struct psl_holder {
    psl_ctx_t *ctx;
} psl_holder;

static int psl_holder_gc(lua_State *L)
{
    psl_holder *h = luaL_checkudata(L, 1, VT_PSL_MT);
    if (h->ctx)
        psl_free(h->ctx);
    h->ctx = NULL;
    return 0;
}

/***
The registered domain of a host name by the public suffix list (libpsl): `"example.co.uk"` for
`"www.example.co.uk"`. Internationalised names work in UTF-8 or punycode.
@function registered_domain
@tparam string name the host name
@treturn[1] string the registered domain, lower-cased
@return[2] nil for a public suffix itself, an IP address, or what is not a host name
@raise when `name` is not a string
*/
/* The Lua state's list: the system's when newer, else libpsl's own; NULL when neither loads. */
static const psl_ctx_t *state_list(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, VT_PSL_KEY);
    psl_holder *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!h)
        return psl_builtin();
    if (!h->ctx)
        h->ctx = psl_latest(NULL);
    return h->ctx ? h->ctx : psl_builtin();
}

bool vt_psl_known_suffix(lua_State *L, const char *name)
{
    const psl_ctx_t *psl = state_list(L);
    if (!psl)
        return true; /* no list at all: the syntax alone decides */
    for (const char *suffix = name; suffix;) {
        if (psl_is_public_suffix2(psl, suffix, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE))
            return true;
        const char *dot = strchr(suffix, '.');
        suffix = dot ? dot + 1 : NULL;
    }
    return false;
}

static int l_registered_domain(lua_State *L)
{
    size_t len;
    const char *name = vt_checkstring(L, 1, &len);
    const psl_ctx_t *psl = state_list(L);
    if (!psl)
        return luaL_error(L, "vt.registered_domain: the public suffix list cannot be loaded");
    if (len > 0 && name[len - 1] == '.')
        len--; /* the root's dot */
    if (len == 0 || len > 253 || memchr(name, '\0', len) || vt_ip_version_of(name, len)) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushlstring(L, name, len);
    char *lower = NULL;
    if (psl_str_to_utf8lower(lua_tostring(L, -1), "utf-8", NULL, &lower) != PSL_SUCCESS) {
        luaL_pushfail(L);
        return 1;
    }
    const char *reg = psl_registrable_domain(psl, lower);
    if (reg)
        lua_pushstring(L, reg);
    else
        luaL_pushfail(L);
    psl_free_string(lower);
    return 1;
}

void vt_psl_open(lua_State *L)
{
    psl_holder *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->ctx = NULL;
    if (luaL_newmetatable(L, VT_PSL_MT)) {
        lua_pushcfunction(L, psl_holder_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, VT_PSL_KEY);
    lua_pushcfunction(L, l_registered_domain);
    lua_setfield(L, -2, "registered_domain");
}
