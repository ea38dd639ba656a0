/* JSON. Decoding is our own, straight into Lua values: integral numbers become
 * Lua integers as they are read (sizes, counts and epoch times must compare as
 * integers; Debian's lua-cjson would hand back floats, to be walked a second
 * time), fractions stay floats, and strings without escapes go from the input
 * to Lua without a copy. null is a NULL light userdata, lua-cjson's cjson.null.
 * Encoding is our own too (below). vt.decode and vt.encode give Lua code the
 * same JSON. Numbers are read and written with JSON's '.', whatever LC_NUMERIC
 * the host set (a decimal comma would misread and miswrite them). */

/*** @module vt */
#include "vt.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000 /* nesting, as lua-cjson's decode_max_depth */

void vt_json_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

/* The C locale's numeric conventions, made once per process; (locale_t)0 when
 * even that fails (then the host's conventions are used). */
static locale_t c_numeric;
static pthread_once_t c_numeric_once = PTHREAD_ONCE_INIT;

static void c_numeric_init(void)
{
    c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static locale_t c_numeric_locale(void)
{
    pthread_once(&c_numeric_once, c_numeric_init);
    return c_numeric;
}

double vt_strtod_c(const char *s, char **end)
{
    locale_t c = c_numeric_locale();
    return c ? strtod_l(s, end, c) : strtod(s, end);
}

/* ------------------------------------------------------------------ decode */

typedef struct decoder {
    lua_State *L;
    const char *text, *p, *end;
    int depth;
    const char *why;            /* set on failure, with p where it happened */
} decoder;

/* The byte at p, or '\0' at the end (the text need not be NUL-terminated:
 * a feed's line is not). */
static char at(const decoder *d)
{
    return d->p < d->end ? *d->p : '\0';
}

static int fail(decoder *d, const char *why)
{
    d->why = why;
    return -1;
}

static void skip_space(decoder *d)
{
    for (char c = at(d); c == ' ' || c == '\n' || c == '\r' || c == '\t'; c = at(d))
        d->p++;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (unsigned)((c | 0x20) - 'a' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void add_utf8(luaL_Buffer *b, unsigned cp)
{
    if (cp < 0x80)
        luaL_addchar(b, (char)cp);
    else if (cp < 0x800) {
        luaL_addchar(b, (char)(0xc0 | (cp >> 6)));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        luaL_addchar(b, (char)(0xe0 | (cp >> 12)));
        luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3f)));
    } else {
        luaL_addchar(b, (char)(0xf0 | (cp >> 18)));
        luaL_addchar(b, (char)(0x80 | ((cp >> 12) & 0x3f)));
        luaL_addchar(b, (char)(0x80 | ((cp >> 6) & 0x3f)));
        luaL_addchar(b, (char)(0x80 | (cp & 0x3f)));
    }
}

/* The rest of a string with escapes, from p (just after the opening quote):
 * unescaped into a Lua buffer. Raw control characters pass, as lua-cjson lets
 * them; a NUL byte (the end of the text, or inside it) does not. */
static int escaped_string(decoder *d)
{
    luaL_Buffer b;
    luaL_buffinit(d->L, &b);
    const char *run = d->p;
    for (;;) {
        char c = at(d);
        if (c == '"') {
            luaL_addlstring(&b, run, (size_t)(d->p - run));
            d->p++;
            luaL_pushresult(&b);
            return 0;
        }
        if (c == '\0')
            return fail(d, d->p >= d->end ? "unterminated string" : "NUL byte in a string");
        if (c != '\\') {
            d->p++;
            continue;
        }
        luaL_addlstring(&b, run, (size_t)(d->p - run));
        char e = d->end - d->p > 1 ? d->p[1] : '\0';
        d->p += 2;
        switch (e) {
        case '"': case '\\': case '/': luaL_addchar(&b, e); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u': {
            unsigned cp, low;
            if (d->end - d->p < 4 || hex4(d->p, &cp) != 0)
                return fail(d, "invalid \\u escape");
            d->p += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(d, "lone low surrogate in a \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || hex4(d->p + 2, &low) != 0 ||
                    low < 0xdc00 || low > 0xdfff)
                    return fail(d, "high surrogate without its low half in a \\u escape");
                d->p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            }
            add_utf8(&b, cp);
            break;
        }
        default:
            d->p -= 2;
            return fail(d, "invalid escape");
        }
        run = d->p;
    }
}

/* A string, from its opening quote: pushed straight from the text when it has
 * no escape. */
static int string_value(decoder *d)
{
    const char *s = ++d->p;
    const char *quote = memchr(s, '"', (size_t)(d->end - s));
    size_t len = quote ? (size_t)(quote - s) : 0;
    if (!quote || memchr(s, '\\', len) || memchr(s, '\0', len))
        return escaped_string(d);
    lua_pushlstring(d->L, s, len);
    d->p = quote + 1;
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number by JSON's grammar. Up to 18 digits without fraction or exponent are
 * an integer at once; anything else goes through Lua's own conversion (exact
 * 64-bit integers, floats with the locale handled), and a float that is
 * integral and fits becomes an integer. */
static int number_value(decoder *d)
{
    const char *s = d->p;
    bool neg = at(d) == '-';
    if (neg)
        d->p++;
    const char *digits = d->p;
    if (at(d) == '0')
        d->p++;
    else if (is_digit(at(d)))
        while (is_digit(at(d)))
            d->p++;
    else
        return fail(d, "invalid number");
    bool integer = true;
    if (at(d) == '.') {
        integer = false;
        d->p++;
        if (!is_digit(at(d)))
            return fail(d, "invalid number");
        while (is_digit(at(d)))
            d->p++;
    }
    if (at(d) == 'e' || at(d) == 'E') {
        integer = false;
        d->p++;
        if (at(d) == '+' || at(d) == '-')
            d->p++;
        if (!is_digit(at(d)))
            return fail(d, "invalid number");
        while (is_digit(at(d)))
            d->p++;
    }
    if (is_digit(at(d)))
        return fail(d, "invalid number (leading zero)");
    if (integer && d->p - digits <= 18) {
        lua_Integer v = 0;
        for (const char *q = digits; q < d->p; q++)
            v = v * 10 + (*q - '0');
        lua_pushinteger(d->L, neg ? -v : v);
        return 0;
    }
    char small[64];
    size_t len = (size_t)(d->p - s);
    const char *token = small;
    if (len < sizeof small) {
        memcpy(small, s, len);
        small[len] = '\0';
    } else
        token = lua_pushlstring(d->L, s, len); /* NUL-terminated by Lua */
    bool read;
    if (integer) /* exact up to 64 bits, a float beyond; no decimal point, so no locale */
        read = lua_stringtonumber(d->L, token) != 0;
    else {
        char *stop;
        double v = vt_strtod_c(token, &stop);
        read = stop == token + len;
        if (read)
            lua_pushnumber(d->L, v);
    }
    if (token != small)
        lua_remove(d->L, read ? -2 : -1);
    if (!read)
        return fail(d, "invalid number");
    if (!lua_isinteger(d->L, -1)) {
        lua_Number n = lua_tonumber(d->L, -1);
        lua_Integer i;
        if (n == floor(n) && lua_numbertointeger(n, &i)) {
            lua_pop(d->L, 1);
            lua_pushinteger(d->L, i);
        }
    }
    return 0;
}

static int literal(decoder *d, const char *word, size_t len)
{
    if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0)
        return fail(d, "invalid value");
    d->p += len;
    return 0;
}

static int value(decoder *d);

/* Containers are built at their end, at their full size: their members wait on
 * the Lua stack (an object's as key, value pairs), so no table grows and
 * rehashes member by member. A long one moves its members into its table every
 * FLUSH_AT values, so the stack stays small. */
#define FLUSH_AT 4096

/* Opens an object or array at p: one level deeper, nil pushed in the place of
 * its table (made when its members are known). */
static int open_container(decoder *d)
{
    if (++d->depth > MAX_DEPTH || !lua_checkstack(d->L, 4))
        return fail(d, "nested too deeply");
    lua_pushnil(d->L);
    d->p++;
    skip_space(d);
    return 0;
}

/* Moves the members above the container's slot (at index slot; `pairs` for an
 * object) into its table, made first at their number; returns how many moved. */
static lua_Integer flush(lua_State *L, int slot, bool pairs, lua_Integer done)
{
    int top = lua_gettop(L);
    lua_Integer n = pairs ? (top - slot) / 2 : top - slot;
    if (lua_isnil(L, slot)) {
        lua_createtable(L, pairs ? 0 : (int)n, pairs ? (int)n : 0);
        lua_replace(L, slot);
    }
    for (int i = slot + 1; i <= top; i += pairs ? 2 : 1) {
        lua_pushvalue(L, i);
        if (pairs) { /* in order: a repeated key keeps its last value */
            lua_pushvalue(L, i + 1);
            lua_rawset(L, slot);
        } else
            lua_rawseti(L, slot, done + (i - slot));
    }
    lua_settop(L, slot);
    return n;
}

/* After a member (or at the start): 1 when the container ends here (closed
 * with `close`), 0 when a ',' says another member follows, -1 otherwise. */
static int next_member(decoder *d, char close, const char *expected)
{
    skip_space(d);
    if (at(d) == close) {
        d->p++;
        d->depth--;
        return 1;
    }
    if (at(d) != ',')
        return fail(d, expected);
    d->p++;
    skip_space(d);
    return 0;
}

/* A member's place: room on the stack, the container's members moved into its
 * table when FLUSH_AT wait. */
static int make_room(decoder *d, int slot, bool pairs, lua_Integer *done)
{
    if (lua_gettop(d->L) - slot >= FLUSH_AT)
        *done += flush(d->L, slot, pairs, *done);
    if (!lua_checkstack(d->L, 4))
        return fail(d, "too many members");
    return 0;
}

static int object_value(decoder *d)
{
    if (open_container(d) != 0)
        return -1;
    int slot = lua_gettop(d->L);
    lua_Integer done = 0;
    int end = at(d) == '}' ? next_member(d, '}', NULL) : 0;
    while (end == 0) {
        if (make_room(d, slot, true, &done) != 0)
            return -1;
        if (at(d) != '"')
            return fail(d, "expected a string key");
        if (string_value(d) != 0)
            return -1;
        skip_space(d);
        if (at(d) != ':')
            return fail(d, "expected ':'");
        d->p++;
        skip_space(d);
        if (value(d) != 0)
            return -1;
        end = next_member(d, '}', "expected ',' or '}'");
    }
    if (end < 0)
        return -1;
    flush(d->L, slot, true, done);
    return 0;
}

static int array_value(decoder *d)
{
    if (open_container(d) != 0)
        return -1;
    int slot = lua_gettop(d->L);
    lua_Integer done = 0;
    int end = at(d) == ']' ? next_member(d, ']', NULL) : 0;
    while (end == 0) {
        if (make_room(d, slot, false, &done) != 0)
            return -1;
        if (value(d) != 0)
            return -1;
        end = next_member(d, ']', "expected ',' or ']'");
    }
    if (end < 0)
        return -1;
    flush(d->L, slot, false, done);
    return 0;
}

static int value(decoder *d)
{
    switch (at(d)) {
    case '{': return object_value(d);
    case '[': return array_value(d);
    case '"': return string_value(d);
    case 't':
        if (literal(d, "true", 4) != 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (literal(d, "false", 5) != 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (literal(d, "null", 4) != 0)
            return -1;
        vt_json_push_null(d->L);
        return 0;
    case '\0':
        return fail(d, d->p >= d->end ? "unexpected end" : "NUL byte");
    default:
        if (at(d) == '-' || is_digit(at(d)))
            return number_value(d);
        return fail(d, "invalid value");
    }
}

/* Decodes text[0..len) and pushes the value; on failure
 * pushes nothing and writes why and where into why. */
static int json_decode(lua_State *L, const char *text, size_t len, char *why, size_t why_cap)
{
    decoder d = {L, text, text, text + len, 0, NULL};
    int top = lua_gettop(L);
    skip_space(&d);
    if (value(&d) == 0) {
        skip_space(&d);
        if (d.p == d.end)
            return 0;
        fail(&d, "text after the value");
    }
    lua_settop(L, top);
    snprintf(why, why_cap, "%s at byte %zu", d.why, (size_t)(d.p - text) + 1);
    return -1;
}

int vt_json_decode(lua_State *L, const char *text, size_t len, vt_err *e)
{
    char why[96];
    if (json_decode(L, text, len, why, sizeof why) == 0)
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
        if (isnan(d))
            luaL_error(L, "vt.encode: cannot encode NaN");
        if (isinf(d)) {
            /* what decode makes of a number beyond a double ("1e400"), written back as one:
             * JSON has no infinity, but its grammar has numbers that read as it */
            jb_add(L, b, d > 0 ? "1e999" : "-1e999", d > 0 ? 5 : 6);
            return;
        }
        locale_t c = c_numeric_locale(), host = c ? uselocale(c) : (locale_t)0;
        for (int digits = 15;; digits++) { /* the shortest text that reads back the same */
            n = snprintf(text, sizeof text, "%.*g", digits, d);
            if (digits == 17 || strtod(text, NULL) == d)
                break;
        }
        if (host)
            uselocale(host);
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
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* vt.null */
            jb_add(L, b, "null", 4);
            return;
        }
        break;
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

/***
Decodes JSON as the client decodes the service's answers: integral numbers as integers (every
64-bit integer exact), fractions as floats, null as `vt.null`, the last of repeated keys kept, at
most 1000 levels of nesting.
@function decode
@tparam string text the JSON text
@return[1] the value
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument`, saying what is wrong and at which byte)
@raise when `text` is not a string
*/
static int l_decode(lua_State *L)
{
    size_t len;
    const char *text = vt_checkstring(L, 1, &len);
    char why[96];
    if (json_decode(L, text, len, why, sizeof why) == 0)
        return 1;
    return vt_fail(L, "InvalidArgument", "not valid JSON (%s)", why);
}

/***
Encodes a value as JSON: integers as integers, floats with the fewest digits that read back the
same, `vt.null` as null; a table with keys 1..n is an array, any other (the empty one too) an
object.
@function encode
@param value a table, string, number, boolean, nil or `vt.null`
@treturn string the JSON text
@raise on a value JSON cannot hold (a function, NaN, a table nested deeper than 1000)
*/
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
