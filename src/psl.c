/* vt.registered_domain: the registrable domain of a host name by the Public
 * Suffix List, through libpsl (already loaded with libcurl). libpsl reads the
 * system's list (Debian's publicsuffix package) or falls back to the list built
 * into it, and understands internationalised names in UTF-8 and in punycode.
 *
 * The list is loaded on first use, once per Lua state, and freed with it. */

/*** @module vt */
#include "vt.h"

#include <string.h>

#include <libpsl.h>

#define VT_PSL_MT "vt.psl"

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
static int l_registered_domain(lua_State *L)
{
    size_t len;
    const char *name = vt_checkstring(L, 1, &len);
    psl_holder *h = lua_touserdata(L, lua_upvalueindex(1));
    if (!h->ctx && !(h->ctx = psl_latest(NULL)))
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
    const char *reg = psl_registrable_domain(h->ctx, lower);
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
    lua_pushcclosure(L, l_registered_domain, 1);
    lua_setfield(L, -2, "registered_domain");
}
