/* Submissions: c:scan_file (multipart uploads streamed from a source, through
 * an upload URL above 32 MB), c:scan_url and c:reanalyse. */
/*** @module vt */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIRECT_UPLOAD_MAX (32LL * 1024 * 1024)   /* POST /files above this is refused (413) */
#define UPLOAD_MAX (650LL * 1024 * 1024)         /* the service's absolute cap */

/* --------------------------------------------------------------- uploads */

/* The source at idx as a source userdata pushed on the stack (path, {data =,
 * name =} or a remote file). Returns it, or NULL with e filled. */
vt_source *vt_push_upload_source(lua_State *L, int idx, vt_err *e)
{
    static const char *const keys[] = {"data", "name", NULL};
    vt_source *s;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *path = lua_tolstring(L, idx, &len);
        if (len == 0 || strlen(path) != len) {
            vt_err_set(e, "InvalidArgument", "file path is empty or contains a NUL byte");
            return NULL;
        }
        if (vt_source_push_file(L, path, e) != 0)
            return NULL;
        return vt_source_test(L, -1);
    }
    if (lua_type(L, idx) == LUA_TTABLE) {
        vt_check_option_keys(L, idx, "file source", keys);
        lua_getfield(L, idx, "data");
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "file source: 'data' must be a string");
        const char *name = "file";
        if (lua_getfield(L, idx, "name") != LUA_TNIL)
            name = vt_checkstring(L, -1, NULL);
        vt_source_push_string(L, -2, name);
        lua_replace(L, -3);
        lua_pop(L, 1);
        return vt_source_test(L, -1);
    }
    if ((s = vt_source_test(L, idx)) != NULL) {
        lua_pushvalue(L, idx);
        return s;
    }
    luaL_error(L, "bad file source (expected a path, {data = ..., name = ...} or an open remote file, got %s)",
               luaL_typename(L, idx));
    return NULL;
}

/* A filename for a multipart header: quotes, backslashes and controls become '_'. */
static void add_safe_filename(luaL_Buffer *b, const char *name)
{
    for (const char *p = name; *p; p++)
        luaL_addchar(b, (*p == '"' || *p == '\\' || (unsigned char)*p < 32 || *p == 127) ? '_' : *p);
}

static void add_boundary_line(luaL_Buffer *b, const char *boundary)
{
    luaL_addstring(b, "--");
    luaL_addstring(b, boundary);
    luaL_addstring(b, "\r\nContent-Disposition: form-data; name=\"");
}

/* Frames the source as the "file" part of a multipart body, after one
 * optional text field (the v3 archive password, or the v2 key). */
void vt_job_set_multipart(lua_State *L, vt_job *j, vt_source *src, const char *field_name, const char *field_value)
{
    char boundary[48], rnd[65];
    vt_sha256_hex(j->url, strlen(j->url), rnd); /* mixed with the time below: unique enough */
    snprintf(boundary, sizeof boundary, "vt-lua-%.12s%08lx", rnd, (unsigned long)(vt_now() * 1e6));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (field_name) {
        add_boundary_line(&b, boundary);
        luaL_addstring(&b, field_name);
        luaL_addstring(&b, "\"\r\n\r\n");
        luaL_addstring(&b, field_value);
        luaL_addstring(&b, "\r\n");
    }
    add_boundary_line(&b, boundary);
    luaL_addstring(&b, "file\"; filename=\"");
    add_safe_filename(&b, src->name[0] ? src->name : "file");
    luaL_addstring(&b, "\"\r\nContent-Type: application/octet-stream\r\n\r\n");
    luaL_pushresult(&b);
    j->mp_head = vt_dup_lua(L, -1, &j->mp_head_len);
    lua_pop(L, 1);
    lua_pushfstring(L, "\r\n--%s--\r\n", boundary);
    j->mp_tail = vt_dup_lua(L, -1, &j->mp_tail_len);
    lua_pop(L, 1);
    lua_pushfstring(L, "Content-Type: multipart/form-data; boundary=%s", boundary);
    vt_job_add_header(L, j, lua_tostring(L, -1));
    lua_pop(L, 1);
    vt_job_add_header(L, j, "Expect:"); /* no 100-continue round trip */
    j->source = src;
    j->streaming = true;
}

/* Whether a finished job brought a successful answer. */
static bool job_succeeded(const vt_job *j)
{
    return !j->err.code[0] && j->status >= 200 && j->status < 300 && !(j->v2 && j->status == 204);
}

int vt_upload_progress(lua_State *L, vt_job *j, bool ended)
{
    int64_t size = j->source ? j->source->size : 0;
    int64_t done = j->sent - (int64_t)j->mp_head_len; /* the file's bytes, not the multipart framing */
    if (ended && !job_succeeded(j))
        return 0;
    if (ended || done > size)
        done = size;
    lua_pushinteger(L, done > 0 ? done : 0);
    lua_pushinteger(L, size);
    return 2;
}

/* Length of "scheme://host[:port]" at the start of url. */
static size_t origin_len(const char *url)
{
    const char *host = strstr(url, "://");
    if (!host)
        return 0;
    return (size_t)(host + 3 - url) + strcspn(host + 3, "/?#");
}

/* url is on the base URL's origin (scheme, host and port; default ports folded). */
static bool same_origin(const char *base, const char *url)
{
    size_t bl = origin_len(base), ul = origin_len(url);
    if (bl == 0 || ul == 0)
        return false;
    if (bl == ul)
        return strncmp(base, url, bl) == 0;
    const char *dflt = strncmp(base, "https://", 8) == 0 ? ":443" : ":80";
    size_t dl = strlen(dflt);
    return ul == bl + dl && strncmp(base, url, bl) == 0 && strncmp(url + bl, dflt, dl) == 0;
}

/* Stack of scan_file: 1 client, 2 source arg, 3 opts, 4 source, 5 password or nil,
 * 6 progress or nil, then the upload_url job (big files) and the upload job. */
enum { SCAN_POST, SCAN_AFTER_UPLOAD_URL };

static int scan_file_step(lua_State *L, int status, lua_KContext phase)
{
    vt_client *c = vt_client_check(L, 1);
    vt_source *src = vt_source_test(L, 4);
    if (!src)
        return luaL_error(L, "the file source was closed during the upload");
    const char *upload_url = NULL;
    if (phase == SCAN_AFTER_UPLOAD_URL) {
        if (vt_client_data_result(L, c, lua_touserdata(L, -1), VT_SHAPE_STRING, false) == 2)
            return 2;
        upload_url = lua_tostring(L, -1);
        if (!same_origin(c->base_url, upload_url))
            return vt_fail(L, "InvalidResponse", "refusing an upload URL outside %s", c->base_url);
    } else if (src->size > DIRECT_UPLOAD_MAX) {
        vt_job *uj = vt_job_push(L);
        vt_client_prepare(L, c, uj, "GET", "/files/upload_url", NULL);
        return vt_client_await(L, c, 1, -1, 1, SCAN_AFTER_UPLOAD_URL, scan_file_step);
    }
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", "/files", NULL);
    if (upload_url) {
        char *url = vt_dup(L, upload_url);
        free(j->url);
        j->url = url;
    }
    const char *password = lua_tostring(L, 5);
    vt_job_set_multipart(L, j, src, password ? "password" : NULL, password);
    return vt_client_await_data_progress(L, c, VT_SHAPE_OBJECT, 6, vt_upload_progress);
}

/*** @type client */

/***
Uploads a file for analysis, streamed from its source (never read whole): over 32 MB through
`GET /files/upload_url` (a URL on `base_url`'s origin only), over 650 MB refused before any
request.
@function client:scan_file
@param file a path, `{data = string, name = string}`, or an open remote file (`sess:open`,
`vt.smb_open`)
@tparam[opt] table opts `password` (of an archive)
@treturn[1] table the analysis descriptor (`type = "analysis"`, `id`): give its id to `client:wait`
@treturn[2] nil
@treturn[2] table the error value (`TooLarge`, `InvalidArgument` for a missing file, ...)
@raise on a wrong type or option
*/
static int client_scan_file(lua_State *L)
{
    static const char *const keys[] = {"password", "progress", NULL};
    vt_client_check(L, 1);
    vt_check_opts(L, 3, "scan_file", keys);
    lua_settop(L, 3);
    vt_err e;
    vt_source *src = vt_push_upload_source(L, 2, &e); /* 4 */
    if (!src)
        return vt_err_return(L, &e);
    if (src->size > UPLOAD_MAX)
        return vt_fail(L, "TooLarge", "'%s' is %lld bytes; VirusTotal accepts at most 650 MB",
                       src->name, (long long)src->size);
    lua_settop(L, 4);
    if (lua_istable(L, 3))
        lua_getfield(L, 3, "password"); /* 5 */
    else
        lua_pushnil(L);
    if (!lua_isnil(L, 5)) {
        size_t plen;
        const char *pw = vt_checkstring(L, 5, &plen);
        if (plen == 0 || strlen(pw) != plen || strpbrk(pw, "\r\n"))
            return vt_fail(L, "InvalidArgument", "the archive password must be one line of text");
    }
    vt_push_progress_opt(L, 3); /* 6 */
    return scan_file_step(L, LUA_OK, SCAN_POST);
}

int vt_push_submit_url(lua_State *L, int idx, vt_err *e)
{
    size_t raw, len;
    const char *u = vt_checkstring(L, idx, &raw);
    u = vt_trim(u, raw, &len);
    return vt_push_url(L, u, len, e);
}

/***
Submits a URL for analysis (refanged first).
@function client:scan_url
@tparam string url the URL
@treturn[1] table the analysis descriptor
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a malformed URL: no request)
*/
static int client_scan_url(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 2);
    vt_err e;
    if (vt_push_submit_url(L, 2, &e) != 0)
        return vt_err_return(L, &e);
    lua_newtable(L);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "url");
    vt_push_query(L, -1);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", "/urls", NULL);
    vt_job_set_form(L, j, -2);
    return vt_client_await_data(L, c, VT_SHAPE_OBJECT);
}

/***
Asks for a new analysis of an object VirusTotal knows.
@function client:reanalyse
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"`
@tparam string id the object's hash, URL, domain or address
@treturn[1] table the analysis descriptor
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_reanalyse(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    lua_settop(L, 3);
    vt_err e;
    if (vt_push_object_path(L, kind, 3, &e) != 0)
        return vt_err_return(L, &e);
    lua_pushfstring(L, "%s/analyse", lua_tostring(L, -1));
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", lua_tostring(L, -2), NULL);
    return vt_client_await_data(L, c, VT_SHAPE_OBJECT);
}

void vt_submit_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"scan_file", client_scan_file},
        {"scan_url", client_scan_url},
        {"reanalyse", client_reanalyse},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
