/* What requests are built from, on any bytes: the c:request path check, the query builder,
 * the multipart framing of uploads and each kind's object path.
 *   - an accepted path stays under /api/v3, as libcurl resolves it and as a server that
 *     percent-decodes it (and takes a backslash for a slash) would;
 *   - a query is unreserved characters, %XX, '=' and '&' only, and decodes back to its pairs;
 *   - a multipart head has exactly its lines, its file name no quote, backslash or control;
 *   - an object path's id has no '/', '?', '#', space, control character or stray '%'.
 * Input: a selector byte, then the bytes (for a query, 0xFF between keys and values). */
#include "harness.h"
#include "client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

/* Whether a path, percent-decoded once, with '\' read as '/', ever climbs above its start:
 * an oracle written apart from the checker's own. */
static bool climbs(const char *path, size_t len)
{
    char *d = malloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (path[i] == '%' && i + 2 < len && vt_hex_value(path[i + 1]) >= 0 && vt_hex_value(path[i + 2]) >= 0) {
            d[n++] = (char)(vt_hex_value(path[i + 1]) * 16 + vt_hex_value(path[i + 2]));
            i += 2;
        } else
            d[n++] = path[i];
    }
    d[n] = '\0';
    int depth = 0;
    bool climbed = false;
    for (char *seg = d, *end; !climbed && seg <= d + n; seg = end + 1) {
        end = seg + strcspn(seg, "/\\");
        size_t sl = (size_t)(end - seg);
        if (sl == 2 && seg[0] == '.' && seg[1] == '.')
            climbed = --depth < 0;
        else if (sl > 0 && !(sl == 1 && seg[0] == '.'))
            depth++;
    }
    free(d);
    return climbed;
}

static void check_api_path(const char *s, size_t len)
{
    vt_err e;
    if (vt_check_api_path(s, len, &e) != 0) {
        fuzz_check(strcmp(e.code, "InvalidArgument") == 0, "a refused path is InvalidArgument");
        return;
    }
    fuzz_check(len > 0 && s[0] == '/' && memchr(s, '\0', len) == NULL, "an accepted path starts with '/'");
    size_t plen = 0;
    while (plen < len && s[plen] != '?' && s[plen] != '#')
        plen++;
    fuzz_check(!climbs(s, plen), "an accepted path never leaves /api/v3");
    char *url = malloc(len + 16);
    memcpy(url, "http://h/api/v3", 15);
    memcpy(url + 15, s, len);
    url[15 + len] = '\0';
    CURLU *u = curl_url();
    char *path = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK)
        fuzz_check(strncmp(path, "/api/v3", 7) == 0 && (path[7] == '/' || path[7] == '\0'),
                   "libcurl keeps an accepted path under /api/v3");
    curl_free(path);
    curl_url_cleanup(u);
    free(url);
}

/* Percent-decodes q[at..end) into a pushed string, checking that nothing else was escaped. */
static void push_decoded(lua_State *L, const char *q, size_t at, size_t end)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = at; i < end; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c == '%') {
            fuzz_check(i + 2 < end && vt_hex_value(q[i + 1]) >= 0 && vt_hex_value(q[i + 2]) >= 0, "a %XX escape");
            luaL_addchar(&b, (char)(vt_hex_value(q[i + 1]) * 16 + vt_hex_value(q[i + 2])));
            i += 2;
        } else {
            fuzz_check(unreserved(c), "only unreserved characters unescaped");
            luaL_addchar(&b, (char)c);
        }
    }
    luaL_pushresult(&b);
}

static void check_query(lua_State *L, const char *s, size_t len)
{
    lua_newtable(L); /* key 0xFF value 0xFF key 0xFF value ... */
    int t = lua_gettop(L), keys = 0;
    for (size_t at = 0; at < len;) {
        const char *sep = memchr(s + at, 0xff, len - at);
        size_t klen = sep ? (size_t)(sep - (s + at)) : len - at;
        size_t vat = sep ? (size_t)(sep - s) + 1 : len;
        const char *vend = memchr(s + vat, 0xff, len - vat);
        size_t vlen = vend ? (size_t)(vend - (s + vat)) : len - vat;
        lua_pushlstring(L, s + at, klen);
        lua_pushvalue(L, -1);
        keys += lua_rawget(L, t) == LUA_TNIL;
        lua_pop(L, 1);
        lua_pushlstring(L, s + vat, vlen);
        lua_rawset(L, t);
        at = vend ? (size_t)(vend - s) + 1 : len;
    }
    vt_push_query(L, t);
    size_t qlen;
    const char *q = lua_tolstring(L, -1, &qlen);
    int pairs = 0;
    for (size_t at = 0; at < qlen; pairs++) {
        size_t end = at;
        while (end < qlen && q[end] != '&')
            end++;
        const char *eq = memchr(q + at, '=', end - at);
        fuzz_check(eq != NULL, "each pair has a '='");
        push_decoded(L, q, at, (size_t)(eq - q));
        push_decoded(L, q, (size_t)(eq - q) + 1, end);
        lua_pushvalue(L, -2);
        lua_rawget(L, t);
        fuzz_check(lua_rawequal(L, -1, -2), "a pair decodes to the table's");
        lua_pop(L, 3);
        fuzz_check(end == qlen || end + 1 < qlen, "no empty pair at the end");
        at = end + 1;
    }
    fuzz_check(pairs == keys, "one pair per key");
}

static void check_multipart(lua_State *L, const char *s, size_t len)
{
    /* a first line is the field (callers refuse a password that is not one line), the rest
     * the file name (any bytes, cut at a NUL as names are C strings) */
    const char *nl = memchr(s, '\n', len);
    size_t flen = nl ? (size_t)(nl - s) : 0;
    if (memchr(s, '\r', flen) || memchr(s, '\0', flen))
        return;
    vt_source src;
    memset(&src, 0, sizeof src);
    const char *name = nl ? nl + 1 : s;
    size_t name_len = (size_t)(s + len - name);
    if (name_len >= sizeof src.name)
        name_len = sizeof src.name - 1;
    memcpy(src.name, name, name_len);
    lua_pushlstring(L, s, flen);
    const char *field = nl ? lua_tostring(L, -1) : NULL;
    vt_job *j = vt_job_push(L);
    j->url = strdup("http://h/api/v3/files");
    vt_job_set_multipart(L, j, &src, field ? "password" : NULL, field);
    size_t crlf = 0;
    for (size_t i = 0; i + 1 < j->mp_head_len; i++)
        crlf += j->mp_head[i] == '\r' && j->mp_head[i + 1] == '\n';
    fuzz_check(crlf == (field ? 8u : 4u), "a multipart head has exactly its lines");
    /* the file part's header line (a field value holds no line break) */
    static const char disposition[] = "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"";
    const char *fn = strstr(j->mp_head, disposition);
    fuzz_check(fn != NULL, "the file part names a file");
    fn += sizeof disposition - 1;
    static const char part_end[] = "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
    const char *close = strstr(fn, part_end);
    fuzz_check(close != NULL && close + sizeof part_end - 1 == j->mp_head + j->mp_head_len,
               "the head ends with the part's headers");
    for (const char *p = fn; p < close; p++)
        fuzz_check(*p != '"' && *p != '\\' && (unsigned char)*p >= 32 && *p != 127, "a safe file name");
    fuzz_check(j->mp_tail_len > 8 && memcmp(j->mp_tail, "\r\n--", 4) == 0, "the tail closes the body");
    vt_job_reset(j);
}

static void check_object_paths(lua_State *L, const char *s, size_t len)
{
    static const char *const collections[] = {"files", "urls", "domains", "ip_addresses", "analyses"};
    for (int k = VT_KIND_FILE; k <= VT_KIND_ANALYSIS; k++) {
        lua_pushlstring(L, s, len);
        vt_err e;
        if (vt_push_object_path(L, (vt_kind)k, -1, &e) == 0) {
            size_t plen;
            const char *p = lua_tolstring(L, -1, &plen);
            size_t cl = strlen(collections[k]);
            fuzz_check(plen > cl + 2 && p[0] == '/' && memcmp(p + 1, collections[k], cl) == 0 && p[cl + 1] == '/',
                       "/<collection>/<id>");
            for (size_t i = cl + 2; i < plen; i++) {
                unsigned char c = (unsigned char)p[i];
                fuzz_check(c > 32 && c < 127 && c != '/' && c != '?' && c != '#', "an id stays one path segment");
                fuzz_check(c != '%' || (i + 2 < plen && vt_hex_value(p[i + 1]) >= 0 && vt_hex_value(p[i + 2]) >= 0),
                           "a '%' starts an escape");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    lua_State *L = fuzz_lua();
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0: check_api_path(s, len); break;
    case 1: check_query(L, s, len); break;
    case 2: check_multipart(L, s, len); break;
    default: check_object_paths(L, s, len); break;
    }
    fuzz_done(L);
    return 0;
}
