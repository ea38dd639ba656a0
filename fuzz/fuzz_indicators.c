/* The indicator helpers on any bytes: vt.normalize (each kind), vt.hash_type, vt.refang,
 * vt.url_id, vt.ip_version, vt.is_private_ip and vt.registered_domain, checked against what
 * they promise: no raise for a string, errors as one clean line, results that normalise to
 * themselves, URL ids that decode back to their input. */
#include "harness.h"

#include <ctype.h>
#include <string.h>

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* vt.url_id(s) must be the unpadded URL-safe base64 of s: decode it back. */
static void check_url_id(lua_State *L, const char *s, size_t len)
{
    lua_pushlstring(L, s, len);
    fuzz_check(fuzz_call(L, "url_id", 1) == 1 && lua_type(L, -1) == LUA_TSTRING, "url_id gives a string");
    size_t n;
    const unsigned char *id = (const unsigned char *)lua_tolstring(L, -1, &n);
    fuzz_check(n == len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0), "url_id length");
    unsigned bits = 0, nbits = 0;
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(id[i]);
        fuzz_check(v >= 0, "url_id alphabet");
        bits = bits << 6 | (unsigned)v;
        nbits += 6;
        if (nbits >= 8) {
            nbits -= 8;
            fuzz_check(out < len && (unsigned char)s[out] == ((bits >> nbits) & 0xff), "url_id decodes back");
            out++;
        }
    }
    fuzz_check(out == len, "url_id decodes to the whole input");
    lua_pop(L, 1);
}

static bool is_hash(const char *s, size_t len)
{
    if (len != 32 && len != 40 && len != 64)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* An error value: InvalidArgument, a message of printable text on one line. */
static void check_error(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    fuzz_check(lua_type(L, idx) == LUA_TTABLE, "normalize's error is a table");
    lua_getfield(L, idx, "code");
    fuzz_check(lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "InvalidArgument") == 0,
               "normalize fails with InvalidArgument");
    lua_getfield(L, idx, "message");
    size_t n;
    const char *m = lua_tolstring(L, -1, &n);
    fuzz_check(m && n > 0 && n < 512, "error message present and bounded");
    for (size_t i = 0; i < n; i++)
        fuzz_check((unsigned char)m[i] >= 32 && m[i] != 127, "error message printable");
    lua_pop(L, 2);
}

/* vt.normalize(kind, s): a non-empty id that is its own normal form, or nil, err. */
static void check_normalize(lua_State *L, const char *kind, const char *s, size_t len)
{
    lua_pushstring(L, kind);
    lua_pushlstring(L, s, len);
    int n = fuzz_call(L, "normalize", 2);
    fuzz_check(n == 1 || n == 2, "normalize does not raise on a string");
    if (lua_isnil(L, -n)) {
        fuzz_check(n == 2, "nil comes with an error");
        check_error(L, -1);
        lua_pop(L, 2);
        return;
    }
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    fuzz_check(r && rl > 0, "normalize gives a non-empty string");
    fuzz_check(memchr(r, '\0', rl) == NULL, "a normal form holds no NUL");
    if (strcmp(kind, "file") == 0)
        fuzz_check(is_hash(r, rl), "a file id is a hash");
    for (size_t i = 0; i < rl && strcmp(kind, "url") != 0; i++)
        fuzz_check(!(r[i] >= 'A' && r[i] <= 'Z'), "hashes, domains and addresses come in lower case");
    /* the normal form is its own normal form (a URL id only when it cannot be a URL itself) */
    if (strcmp(kind, "url") != 0 || rl >= 8) {
        lua_pushstring(L, kind);
        lua_pushvalue(L, -2);
        fuzz_check(fuzz_call(L, "normalize", 2) == 1, "a normal form normalises");
        fuzz_check(lua_rawequal(L, -1, -2), "normalize is idempotent");
        lua_pop(L, 1);
    }
    if (strcmp(kind, "ip") == 0) {
        lua_pushvalue(L, -1);
        fuzz_check(fuzz_call(L, "ip_version", 1) == 1 && lua_isinteger(L, -1), "a normalised address has a version");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = fuzz_lua();
    lua_settop(L, 0);
    const char *s = (const char *)data;

    lua_pushlstring(L, s, size);
    fuzz_check(fuzz_call(L, "hash_type", 1) == 1, "hash_type returns one value");
    fuzz_check(lua_isnil(L, -1) != is_hash(s, size), "hash_type names exactly the hashes");
    lua_settop(L, 0);

    lua_pushlstring(L, s, size);
    fuzz_check(fuzz_call(L, "ip_version", 1) == 1, "ip_version returns one value");
    bool is_ip = !lua_isnil(L, -1);
    fuzz_check(!is_ip || lua_tointeger(L, -1) == 4 || lua_tointeger(L, -1) == 6, "ip_version is 4 or 6");
    lua_pushlstring(L, s, size);
    fuzz_check(fuzz_call(L, "is_private_ip", 1) == 1 && lua_isboolean(L, -1), "is_private_ip is a boolean");
    fuzz_check(is_ip || !lua_toboolean(L, -1), "only an address is private");
    lua_settop(L, 0);

    lua_pushlstring(L, s, size);
    fuzz_check(fuzz_call(L, "refang", 1) == 1 && lua_type(L, -1) == LUA_TSTRING, "refang gives a string");
    fuzz_check(lua_rawlen(L, -1) <= size, "refanging never lengthens");
    lua_settop(L, 0);

    lua_pushlstring(L, s, size);
    fuzz_check(fuzz_call(L, "registered_domain", 1) == 1, "registered_domain returns one value");
    fuzz_check(lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0),
               "a registered domain is a name or nil");
    lua_settop(L, 0);

    check_url_id(L, s, size);
    for (int k = 0; k < 4; k++)
        check_normalize(L, (const char *[]){"file", "url", "domain", "ip"}[k], s, size);
    fuzz_done(L);
    return 0;
}
