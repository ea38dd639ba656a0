/* JSON. Decoding goes through lua-cjson; Debian's lua-cjson 2.1.0 decodes every
 * number as a float on Lua 5.4, so decoded values are walked once and integral
 * numbers become Lua integers (sizes, counts and epoch times must compare as
 * integers). Encoding is our own (below). vt.decode and vt.encode give Lua code
 * the same JSON. */
#include "vt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ------------------------------------------------------------------ decode */

/* The integer equal to the float at idx, if there is one (lua_numbertointeger
 * checks the range only: 1.5 would become 1). */
static bool integral(lua_State *L, int idx, lua_Integer *out)
{
    lua_Number n = lua_tonumber(L, idx);
    return n == floor(n) && lua_numbertointeger(n, out);
}

/* A number JSON cannot hold back: lua-cjson reads "9e9999" as infinity (its grammar is
 * JSON's; its value is not a double), which nothing could encode again. */
static void refuse_infinite(lua_State *L, int idx)
{
    if (!isfinite(lua_tonumber(L, idx)))
        luaL_error(L, "a number out of range");
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
            refuse_infinite(L, -1);
            if (integral(L, -1, &i)) {
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
        refuse_infinite(L, -1);
        if (integral(L, -1, &i))
            lua_pushinteger(L, i), lua_remove(L, -2);
    }
    return 1;
}

/* Decodes text and pushes the value; on failure pushes nothing and copies
 * cjson's reason into why. */
static bool json_decode(lua_State *L, const char *text, size_t len, char *why, size_t why_cap)
{
    lua_pushcfunction(L, decode_protected);
    push_cjson_field(L, "decode");
    lua_pushlstring(L, text, len);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        snprintf(why, why_cap, "%s", m ? m : "unknown error");
        lua_pop(L, 1);
        return false;
    }
    return true;
}

int vt_json_decode(lua_State *L, const char *text, size_t len, vt_err *e)
{
    char why[256];
    if (json_decode(L, text, len, why, sizeof why))
        return 0;
    vt_err_set(e, "InvalidResponse", "response is not valid JSON (%s)", why);
    return -1;
}

/* ------------------------------------------------------------------ encode
 * Our own encoder: lua-cjson 2.1.0 writes at most 14 significant digits, so a
 * float from the service (an entropy, a score) would not survive a round trip
 * through a saved state. Floats are written with the fewest digits that read
 * back to the same double; integers as integers. */

#define VT_JSONBUF_MT "vt.jsonbuf"
#define MAX_DEPTH 1000

typedef struct jbuf {
    char *p;
    size_t len, cap;
} jbuf;

static int jbuf_gc(lua_State *L)
{
    jbuf *b = luaL_checkudata(L, 1, VT_JSONBUF_MT);
    free(b->p);
    b->p = NULL;
    return 0;
}

static void jb_add(lua_State *L, jbuf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown)
            vt_raise_oom(L, "encoding JSON");
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_string(lua_State *L, jbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    jb_add(L, b, "\"", 1);
    size_t run = 0; /* s[run..i) is plain text not yet added */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        jb_add(L, b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', (char)c};
        size_t n = 2;
        switch (c) {
        case '"': case '\\': break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        jb_add(L, b, esc, n);
    }
    jb_add(L, b, s + run, len - run);
    jb_add(L, b, "\"", 1);
}

static void jb_number(lua_State *L, jbuf *b, int idx)
{
    char text[40];
    int n;
    if (lua_isinteger(L, idx))
        n = snprintf(text, sizeof text, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    else {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d))
            luaL_error(L, "vt.encode: cannot encode %s", isnan(d) ? "NaN" : "an infinite number");
        for (int digits = 15;; digits++) { /* the shortest text that reads back the same */
            n = snprintf(text, sizeof text, "%.*g", digits, d);
            if (digits == 17 || strtod(text, NULL) == d)
                break;
        }
    }
    jb_add(L, b, text, (size_t)n);
}

/* A table is an array when its keys are exactly 1..n (n >= 1); an empty table
 * is an object, as lua-cjson writes it. */
static lua_Integer array_length(lua_State *L, int idx)
{
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max)
            max = k;
        count++;
    }
    return count > 0 && count == max ? max : -1;
}

static void jb_value(lua_State *L, jbuf *b, int idx, int depth);

static void jb_table(lua_State *L, jbuf *b, int idx, int depth)
{
    if (depth >= MAX_DEPTH)
        luaL_error(L, "vt.encode: nested deeper than %d levels", MAX_DEPTH);
    luaL_checkstack(L, 6, "vt.encode: nested too deeply");
    lua_Integer n = array_length(L, idx);
    if (n > 0) {
        jb_add(L, b, "[", 1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1)
                jb_add(L, b, ",", 1);
            lua_rawgeti(L, idx, i);
            jb_value(L, b, -1, depth + 1);
            lua_pop(L, 1);
        }
        jb_add(L, b, "]", 1);
        return;
    }
    jb_add(L, b, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (!first)
            jb_add(L, b, ",", 1);
        first = false;
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
            luaL_error(L, "vt.encode: cannot encode a %s key", luaL_typename(L, -2));
        lua_pushvalue(L, -2); /* a copy: lua_next's key must not be converted */
        size_t len;
        const char *k = lua_tolstring(L, -1, &len);
        jb_string(L, b, k, len);
        lua_pop(L, 1);
        jb_add(L, b, ":", 1);
        jb_value(L, b, -1, depth + 1);
        lua_pop(L, 1);
    }
    jb_add(L, b, "}", 1);
}

static void jb_value(lua_State *L, jbuf *b, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        jb_add(L, b, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            jb_add(L, b, "true", 4);
        else
            jb_add(L, b, "false", 5);
        return;
    case LUA_TNUMBER:
        jb_number(L, b, idx);
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        jb_string(L, b, s, len);
        return;
    }
    case LUA_TTABLE:
        jb_table(L, b, idx, depth);
        return;
    case LUA_TLIGHTUSERDATA: {
        vt_json_push_null(L);
        bool is_null = lua_rawequal(L, -1, idx);
        lua_pop(L, 1);
        if (is_null) {
            jb_add(L, b, "null", 4);
            return;
        }
        break;
    }
    default:
        break;
    }
    luaL_error(L, "vt.encode: cannot encode a %s", luaL_typename(L, idx));
}

void vt_json_encode(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    jbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    if (luaL_newmetatable(L, VT_JSONBUF_MT)) {
        lua_pushcfunction(L, jbuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    jb_value(L, b, idx, 0);
    lua_pushlstring(L, b->p ? b->p : "", b->len);
    lua_remove(L, -2); /* the buffer: its __gc frees the memory */
}

/* ---------------------------------------------------------- vt.decode/encode */

/* vt.decode(text) -> value | nil, err: JSON with integers kept and null as vt.null. */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = vt_checkstring(L, 1, &len);
    char why[256];
    if (json_decode(L, text, len, why, sizeof why))
        return 1;
    return vt_fail(L, "InvalidArgument", "not valid JSON (%s)", why);
}

/* vt.encode(value) -> text; a value JSON cannot hold (a function, NaN, ...) raises. */
static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    vt_json_encode(L, 1);
    return 1;
}

void vt_json_register(lua_State *L)
{
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
}
