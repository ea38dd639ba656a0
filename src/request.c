/* Requests: how a call becomes a job (the job userdata, the URL, the key's header, query
 * strings, form bodies, extra headers) and c:request, the raw v3 request. */
/*** @module vt */
#include "client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void vt_add_escaped(luaL_Buffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        /* RFC 3986's unreserved characters, by hand: isalnum follows a locale a host may set */
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '_' || ch == '.' || ch == '~')
            luaL_addchar(b, (char)ch);
        else {
            luaL_addchar(b, '%');
            luaL_addchar(b, hex[ch >> 4]);
            luaL_addchar(b, hex[ch & 15]);
        }
    }
}

/* Pushes "k=v", both escaped. */
static void push_query_pair(lua_State *L, const char *k, size_t kl, const char *v, size_t vl)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    vt_add_escaped(&b, k, kl);
    luaL_addchar(&b, '=');
    vt_add_escaped(&b, v, vl);
    luaL_pushresult(&b);
}

void vt_push_query(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) {
        lua_pushliteral(L, "");
        return;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_newtable(L); /* the pairs, concatenated below */
    int parts = lua_gettop(L);
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "query keys must be strings");
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
            luaL_error(L, "query value for '%s' must be a string, number or boolean", lua_tostring(L, -2));
        size_t kl, vl;
        const char *k = lua_tolstring(L, -2, &kl);
        const char *v = luaL_tolstring(L, -1, &vl); /* copy: never convert the key in place */
        push_query_pair(L, k, kl, v, vl);
        lua_rawseti(L, parts, ++n);
        lua_pop(L, 2); /* the converted value and the value */
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '&');
        lua_rawgeti(L, parts, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_remove(L, parts);
}

/* ------------------------------------------------------------------ jobs */

static int job_gc(lua_State *L)
{
    vt_job_reset(luaL_checkudata(L, 1, VT_JOB_MT));
    return 0;
}

vt_job *vt_job_push(lua_State *L)
{
    vt_job *j = lua_newuserdatauv(L, sizeof *j, 0);
    vt_job_init(j);
    luaL_setmetatable(L, VT_JOB_MT);
    return j;
}

char *vt_dup(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        vt_raise_oom(L, "building a request");
    return d;
}

void vt_client_prepare(lua_State *L, vt_client *c, vt_job *j, const char *method, const char *path, const char *query)
{
    snprintf(j->method, sizeof j->method, "%s", method);
    bool v2 = strncmp(path, "/vtapi/v2/", 10) == 0;
    const char *prefix = v2 ? "" : "/api/v3";
    size_t bl = strlen(c->base_url), pl = strlen(prefix), rl = strlen(path), ql = query ? strlen(query) : 0;
    char *url = malloc(bl + pl + rl + ql + 2);
    if (!url)
        vt_raise_oom(L, "building a request");
    char *p = url;
    memcpy(p, c->base_url, bl), p += bl;
    memcpy(p, prefix, pl), p += pl;
    memcpy(p, path, rl), p += rl;
    if (ql)
        *p++ = '?', memcpy(p, query, ql), p += ql;
    *p = '\0';
    free(j->url);
    j->url = url;
    j->counts_quota = true;
    j->v2 = v2;
    j->shared_headers = v2 ? c->v2_headers : c->v3_headers;
}

bool vt_job_redirected(const vt_job *j)
{
    return !j->err.code[0] && j->status >= 301 && j->status <= 308 && j->location;
}

int vt_job_prepare_redirect(lua_State *L, vt_job *to, const char *location, vt_err *e)
{
    if (strncmp(location, "https://", 8) != 0 && strncmp(location, "http://", 7) != 0) {
        vt_err_set(e, "InvalidResponse", "redirected to a non-HTTP location");
        return -1;
    }
    snprintf(to->method, sizeof to->method, "GET");
    to->url = vt_dup(L, location);
    vt_job_add_header(L, to, "Accept: */*");
    to->counts_quota = false; /* the storage host is not the API */
    return 0;
}

vt_job *vt_job_push_timer(lua_State *L, double secs)
{
    vt_job *j = vt_job_push(L);
    j->timer = secs;
    return j;
}
/* The job's own list starts as a copy of the shared one: each node belongs to
 * the job as soon as it is appended, so a raise halfway leaks nothing. */
static void append_header(lua_State *L, vt_job *j, const char *line)
{
    struct curl_slist *h = curl_slist_append(j->headers, line);
    if (!h)
        vt_raise_oom(L, "building a request");
    j->headers = h;
}

void vt_job_add_header(lua_State *L, vt_job *j, const char *line)
{
    for (const struct curl_slist *s = j->headers ? NULL : j->shared_headers; s; s = s->next)
        append_header(L, j, s->data);
    append_header(L, j, line);
}

char *vt_dup_lua(lua_State *L, int idx, size_t *len)
{
    size_t l;
    const char *s = lua_tolstring(L, idx, &l);
    char *d = malloc(l + 1);
    if (!d)
        vt_raise_oom(L, "building a request");
    memcpy(d, s, l + 1);
    if (len)
        *len = l;
    return d;
}

void vt_job_set_form(lua_State *L, vt_job *j, int query_idx)
{
    j->body = vt_dup_lua(L, query_idx, &j->body_len);
    vt_job_add_header(L, j, "Content-Type: application/x-www-form-urlencoded");
}

/* -------------------------------------------------------------- raw request */

static int request_done(lua_State *L, int status, lua_KContext ctx)
{
    vt_job *j = lua_touserdata(L, -1);
    if (vt_client_result(L, vt_client_check(L, 1), j) == 2)
        return 2;
    lua_pushinteger(L, j->status);
    return 2;
}

/* Percent-decodes d[0..*len) in place (valid %XX only); whether anything changed. */
static bool percent_decode(char *d, size_t *len)
{
    size_t n = 0;
    bool changed = false;
    for (size_t i = 0; i < *len; i++) {
        int hi = -1, lo = -1;
        if (d[i] == '%' && i + 2 < *len) {
            hi = vt_hex_value(d[i + 1]);
            lo = vt_hex_value(d[i + 2]);
        }
        if (hi >= 0 && lo >= 0) {
            d[n++] = (char)(hi * 16 + lo);
            i += 2;
            changed = true;
        } else
            d[n++] = d[i];
    }
    *len = n;
    return changed;
}

/* Whether the segments of d[0..len) ('/' between them, and '\' too when backslash_splits;
 * ".." and "." also before a ';' parameter, as some servers read them) ever climb above
 * where they start. */
static bool climbs_out(const char *d, size_t len, bool backslash_splits)
{
    long depth = 0;
    for (size_t at = 0; at <= len;) {
        size_t end = at;
        while (end < len && d[end] != '/' && !(backslash_splits && d[end] == '\\'))
            end++;
        size_t seg = end - at;
        const char *semi = memchr(d + at, ';', seg);
        if (semi)
            seg = (size_t)(semi - (d + at));
        if (seg == 2 && d[at] == '.' && d[at + 1] == '.') {
            if (--depth < 0)
                return true;
        } else if (seg > 0 && !(seg == 1 && d[at] == '.'))
            depth++;
        at = end + 1;
    }
    return false;
}

int vt_check_api_path(const char *path, size_t len, vt_err *e)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)path[i] <= ' ' || path[i] == 127) {
            vt_err_set(e, "InvalidArgument", "the path holds a space, a line break, a NUL or a control character");
            return -1;
        }
    if (len == 0 || path[0] != '/') {
        vt_err_set(e, "InvalidArgument", "the path must start with '/', relative to /api/v3");
        return -1;
    }
    int shown = len > 200 ? 200 : (int)len;
    if (len >= 7 && memcmp(path, "/vtapi/", 7) == 0) {
        vt_err_set(e, "InvalidArgument", "request takes v3 paths; use c:v2 for %.*s", shown, path);
        return -1;
    }
    /* however many times a server decodes it, the path must stay under /api/v3 */
    size_t n = 0;
    while (n < len && path[n] != '?' && path[n] != '#')
        n++;
    char *d = malloc(n + 1);
    if (!d) {
        vt_err_oom(e, "checking a path");
        return -1;
    }
    memcpy(d, path, n);
    bool out = false, control = false;
    for (int round = 0; round < 4 && !out && !control; round++) {
        /* "/a\\b/../..": one level to libcurl and servers that keep a backslash, two to
         * those that read it as a slash; either reading may not climb */
        out = climbs_out(d, n, false) || climbs_out(d, n, true);
        if (!percent_decode(d, &n))
            break;
        /* an encoded NUL or control: a server in C may end the path there ("/..%00x") */
        for (size_t i = 0; i < n && !control; i++)
            control = (unsigned char)d[i] < ' ' || d[i] == 127;
    }
    free(d);
    if (control) {
        vt_err_set(e, "InvalidArgument", "the path '%.*s' holds an encoded NUL or control character", shown, path);
        return -1;
    }
    if (out) {
        vt_err_set(e, "InvalidArgument", "the path '%.*s' leaves /api/v3 (its dot segments climb above it)", shown,
                   path);
        return -1;
    }
    return 0;
}

/*** @type client */

/***
Any v3 request, for what the typed methods do not cover. It is raw: the decoded body comes back
as the service sent it, whatever its shape (the typed methods refuse a body that is not what they
ask for).
@function client:request
@tparam string method `"GET"`, `"POST"`, `"PUT"`, `"PATCH"` or `"DELETE"`
@tparam string path under `/api/v3`, starting with `/`; a path whose dot segments climb out of
`/api/v3`, as sent or percent-decoded, is `InvalidArgument` (the key would go along)
@tparam[opt] table opts `query` (a table), `form` (a table, sent urlencoded) or `json` (any
value, sent as JSON), `headers` (a table; `x-apikey` is refused)
@treturn[1] table the decoded body (`true` for an empty one)
@treturn[1] integer the HTTP status
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a bad path: no request; a redirect is
`InvalidResponse`)
@raise on a wrong method, option or header
*/
static int client_request(lua_State *L)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    static const char *const keys[] = {"query", "form", "json", "headers", NULL};
    vt_client *c = vt_client_check(L, 1);
    const char *method = methods[luaL_checkoption(L, 2, NULL, methods)];
    size_t plen;
    const char *path = vt_checkstring(L, 3, &plen);
    vt_check_opts(L, 4, "request", keys);
    vt_err e;
    if (vt_check_api_path(path, plen, &e) != 0)
        return vt_err_return(L, &e);
    bool has_opts = lua_istable(L, 4);
    lua_settop(L, 4);
    if (has_opts)
        lua_getfield(L, 4, "query");
    else
        lua_pushnil(L);
    vt_push_query(L, -1); /* 6 */
    vt_job *j = vt_job_push(L); /* 7 */
    vt_client_prepare(L, c, j, method, path, NULL);
    if (lua_rawlen(L, 6) > 0) {
        lua_pushfstring(L, "%s%c%s", j->url, strchr(path, '?') ? '&' : '?', lua_tostring(L, 6));
        char *url = vt_dup_lua(L, -1, NULL); /* may raise: j->url stays owned until replaced */
        free(j->url);
        j->url = url;
        lua_pop(L, 1);
    }
    if (has_opts) {
        if (lua_getfield(L, 4, "form") != LUA_TNIL) {
            vt_push_query(L, -1);
            j->body = vt_dup_lua(L, -1, &j->body_len);
            vt_job_add_header(L, j, "Content-Type: application/x-www-form-urlencoded");
            lua_pop(L, 1);
        } else if (lua_getfield(L, 4, "json") != LUA_TNIL) {
            vt_json_encode(L, -1);
            j->body = vt_dup_lua(L, -1, &j->body_len);
            vt_job_add_header(L, j, "Content-Type: application/json");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 4, "headers") != LUA_TNIL) {
            luaL_checktype(L, -1, LUA_TTABLE);
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                size_t kl, vl;
                const char *k = vt_checkstring(L, -2, &kl);
                const char *v = vt_checkstring(L, -1, &vl);
                if (strcasecmp(k, "x-apikey") == 0 || strcspn(k, ":\r\n") != kl || strcspn(v, "\r\n") != vl)
                    return luaL_error(L, "request: header '%s' is not allowed", k);
                lua_pushfstring(L, "%s: %s", k, v);
                vt_job_add_header(L, j, lua_tostring(L, -1));
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 7); /* the job on top */
    return vt_client_await(L, c, 1, -1, 1, 0, request_done);
}

void vt_request_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"request", client_request},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
    if (luaL_newmetatable(L, VT_JOB_MT)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}
