/* Legacy v2: c:v2(endpoint, params) and its typed helpers (v2_file_report,
 * ...). The key goes as the apikey field; response_code becomes errors. */
/*** @module vt */
#include "client.h"

#include <ctype.h>
#include <string.h>

#define DIRECT_UPLOAD_MAX (32LL * 1024 * 1024)   /* v2 file/scan takes at most 32 MB */

/* -------------------------------------------------------------- legacy v2 */

typedef enum { V2_GET, V2_POST_FORM, V2_POST_FILE, V2_DOWNLOAD } v2_style;

typedef struct v2_endpoint {
    const char *name;
    v2_style style;
} v2_endpoint;

static const v2_endpoint v2_endpoints[] = {
    {"file/report", V2_GET},     {"file/scan", V2_POST_FILE},  {"file/rescan", V2_POST_FORM},
    {"file/download", V2_DOWNLOAD}, {"url/report", V2_GET},    {"url/scan", V2_POST_FORM},
    {"domain/report", V2_GET},   {"ip-address/report", V2_GET}, {NULL, V2_GET},
};

/* v2's response_code in a 200 body: 0 not found, -2 queued, -1 bad input. */
static int v2_done(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    vt_job *j = lua_touserdata(L, -1);
    vt_err e;
    int n = vt_client_result(L, c, j);
    if (n < 0) /* a corrupt cache entry: asked again */
        return vt_client_await(L, c, 1, -1, 1, 0, v2_done);
    if (n == 2)
        return 2;
    if (vt_check_v2_reports(L, -1, &e) != 0) {
        e.http = j->status;
        return vt_err_return(L, &e);
    }
    if (lua_rawlen(L, -1) > 0)
        return 1; /* a batch answers with a list: each report keeps its own code */
    lua_getfield(L, -1, "response_code");
    lua_Integer rc = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (rc == 1)
        return 1;
    if (lua_getfield(L, -1, "verbose_msg") != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "no message");
    }
    lua_pushfstring(L, "%s (response_code %d)", lua_tostring(L, -1), (int)rc);
    vt_err_set(&e, rc == 0 ? "NotFoundError" : rc == -2 ? "NotAvailableYet" : "InvalidArgument", "%s", "");
    vt_client_redacted_message(L, c, -1, &e);
    e.http = j->status;
    return vt_err_return(L, &e);
}

/* What c:v2's file/download takes besides hash and dest: the options of c:download. */
static const char *const v2_file_options[] = {"max_bytes", "progress", NULL};

/* Pushes the path and the query of a request to v2 endpoint `ep`: the string
 * parameters of the table at params_idx (file/scan's file and progress left out)
 * and the key. */
static void push_v2_target(lua_State *L, vt_client *c, const v2_endpoint *ep, int params_idx)
{
    lua_newtable(L); /* the string fields, with the key */
    int fields = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, params_idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "v2: parameter names must be strings");
        if (ep->style == V2_POST_FILE &&
            (strcmp(lua_tostring(L, -2), "file") == 0 || strcmp(lua_tostring(L, -2), "progress") == 0)) {
            lua_pop(L, 1);
            continue;
        }
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "v2: parameter '%s' must be a string or number", lua_tostring(L, -2));
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_tostring(L, -1);
        lua_settable(L, fields);
    }
    lua_pushstring(L, c->apikey);
    lua_setfield(L, fields, "apikey");
    lua_pushfstring(L, "/vtapi/v2/%s", ep->name);
    vt_push_query(L, fields);
    lua_remove(L, fields);
}

vt_job *vt_client_v2_get(lua_State *L, vt_client *c, const char *endpoint, int params)
{
    const v2_endpoint ep = {endpoint, V2_GET};
    params = lua_absindex(L, params);
    push_v2_target(L, c, &ep, params);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, -3), lua_tostring(L, -2));
    vt_cache_key_v2(L, c->policy.cache, j, endpoint, params);
    lua_replace(L, -3);
    lua_pop(L, 1);
    return j;
}

/* Runs v2 endpoint `ep` with the string parameters of the table at params_idx
 * (for file/scan, params.file is a source and params.progress a progress function; for
 * file/download, hash, dest, max_bytes and progress). */
static int v2_call(lua_State *L, vt_client *c, const v2_endpoint *ep, int params_idx)
{
    params_idx = lua_absindex(L, params_idx);
    if (ep->style == V2_DOWNLOAD) {
        lua_getfield(L, params_idx, "hash");
        lua_getfield(L, params_idx, "dest");
        lua_newtable(L);
        for (int i = 0; v2_file_options[i]; i++) {
            lua_getfield(L, params_idx, v2_file_options[i]);
            lua_setfield(L, -2, v2_file_options[i]);
        }
        return vt_client_download(L, c, lua_gettop(L) - 2, true);
    }
    if (ep->style == V2_GET) {
        int n = vt_cache_v2_batch(L, c, ep->name, params_idx); /* several reports, some cached */
        if (n >= 0)
            return n;
        vt_client_v2_get(L, c, ep->name, params_idx);
        return vt_client_await(L, c, 1, -1, 1, 0, v2_done);
    }
    push_v2_target(L, c, ep, params_idx);
    int query = lua_gettop(L), path = query - 1;
    vt_source *src = NULL;
    int progress = 0;
    if (ep->style == V2_POST_FILE) {
        vt_err e;
        vt_push_progress_opt(L, params_idx);
        progress = lua_gettop(L);
        if (lua_getfield(L, params_idx, "file") == LUA_TNIL)
            return luaL_error(L, "v2 file/scan: parameter 'file' is required");
        if (!(src = vt_push_upload_source(L, -1, &e)))
            return vt_err_return(L, &e);
        if (src->size > DIRECT_UPLOAD_MAX)
            return vt_fail(L, "TooLarge", "'%s' is %lld bytes; v2 file/scan takes at most 32 MB",
                           src->name, (long long)src->size);
    }
    vt_job *j = vt_job_push(L);
    if (ep->style == V2_POST_FORM) {
        vt_client_prepare(L, c, j, "POST", lua_tostring(L, path), NULL);
        vt_job_set_form(L, j, query);
    } else {
        /* the key in the query and as a form field, as the v2 service takes either */
        vt_client_prepare(L, c, j, "POST", lua_tostring(L, path), lua_tostring(L, query));
        vt_job_set_multipart(L, j, src, "apikey", c->apikey);
    }
    return vt_client_await_progress(L, c, 1, progress, vt_upload_progress, 0, v2_done);
}

/* The endpoint of that name (raises for an unknown one). */
static const v2_endpoint *v2_named(lua_State *L, const char *name)
{
    for (const v2_endpoint *ep = v2_endpoints; ep->name; ep++)
        if (strcmp(ep->name, name) == 0)
            return ep;
    luaL_error(L, "unknown v2 endpoint '%s' (expected file/report, file/scan, file/rescan, file/download, "
                  "url/report, url/scan, domain/report or ip-address/report)", name);
    return NULL;
}

/*** @type client */

/***
Any legacy v2 endpoint, the key sent as the `apikey` field. HTTP 204 becomes
`QuotaExceededError` (and marks the shared limiter's window spent); `response_code` 0 becomes
`NotFoundError`, -2 `NotAvailableYet`, -1 `InvalidArgument`.
@function client:v2
@tparam string endpoint `"file/report"` (also a comma-separated batch of resources, answered with a
list), `"file/scan"`, `"file/rescan"`, `"file/download"`, `"url/report"`, `"url/scan"`,
`"domain/report"` or `"ip-address/report"`
@tparam table params the endpoint's parameters (strings or numbers; for `file/scan`, `file` is a
source as `client:scan_file` takes it; for `file/download`, `hash`, `dest`, `max_bytes`)
@treturn[1] table the v2 body
@treturn[2] nil
@treturn[2] table the error value
@raise on an unknown endpoint or a wrong parameter type
*/
static int client_v2(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    const v2_endpoint *ep = v2_named(L, vt_checkstring(L, 2, NULL));
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    return v2_call(L, c, ep, 3);
}

/* Typed v2 helpers: validate the indicator like the v3 look-ups (no request
 * for a malformed one), then call the endpoint. */
static int v2_typed(lua_State *L, const char *endpoint, const char *param, vt_kind kind)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 3);
    vt_err e;
    int rc = kind == VT_KIND_URL ? vt_push_submit_url(L, 2, &e) : vt_push_object_id(L, kind, 2, &e);
    if (rc != 0)
        return vt_err_return(L, &e);
    lua_newtable(L);
    lua_insert(L, -2);
    lua_setfield(L, -2, param);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "scan") != LUA_TNIL) {
        lua_pushstring(L, lua_toboolean(L, -1) ? "1" : "0");
        lua_setfield(L, -3, "scan");
    }
    lua_settop(L, 4);
    return v2_call(L, c, v2_named(L, endpoint), 4);
}

/* A resource for file/report and file/rescan: a hash, or a v2 scan id "<sha256>-<epoch>". */
static int v2_resource(lua_State *L, const char *endpoint)
{
    size_t raw, len;
    const char *r = vt_checkstring(L, 2, &raw);
    r = vt_trim(r, raw, &len);
    const char *dash = memchr(r, '-', len);
    bool scan_id = dash && vt_hash_kind_of(r, (size_t)(dash - r)) == VT_HASH_SHA256 && dash + 1 < r + len;
    for (const char *p = dash ? dash + 1 : r; scan_id && p < r + len; p++)
        scan_id = isdigit((unsigned char)*p);
    if (!scan_id)
        return v2_typed(L, endpoint, "resource", VT_KIND_FILE);
    vt_client *c = vt_client_check(L, 1);
    lua_newtable(L);
    lua_pushlstring(L, r, len);
    lua_setfield(L, -2, "resource");
    return v2_call(L, c, v2_named(L, endpoint), -1);
}

/***
A v2 file report (`file/report`), the resource checked first (no request for a malformed one).
@function client:v2_file_report
@tparam string resource an MD5, SHA-1 or SHA-256, or a v2 scan id `<sha256>-<epoch>`
@treturn[1] table the report (`positives`, `total`, `scans`, ...)
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_file_report(lua_State *L) { return v2_resource(L, "file/report"); }

/***
Asks v2 for a new analysis of a known file (`file/rescan`).
@function client:v2_file_rescan
@tparam string resource a hash or a v2 scan id
@treturn[1] table the v2 body (`scan_id`, ...)
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_file_rescan(lua_State *L) { return v2_resource(L, "file/rescan"); }

/***
A v2 URL report (`url/report`).
@function client:v2_url_report
@tparam string url the URL (refanged first)
@tparam[opt] table opts `scan` (boolean: submit the URL when it is unknown)
@treturn[1] table the report
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_url_report(lua_State *L) { return v2_typed(L, "url/report", "resource", VT_KIND_URL); }

/***
Submits a URL to v2 (`url/scan`).
@function client:v2_url_scan
@tparam string url the URL
@treturn[1] table the v2 body (`scan_id`, ...)
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_url_scan(lua_State *L) { return v2_typed(L, "url/scan", "url", VT_KIND_URL); }

/***
A v2 domain report (`domain/report`).
@function client:v2_domain_report
@tparam string domain the domain
@treturn[1] table the report
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_domain_report(lua_State *L) { return v2_typed(L, "domain/report", "domain", VT_KIND_DOMAIN); }

/***
A v2 IP address report (`ip-address/report`).
@function client:v2_ip_report
@tparam string ip the address
@treturn[1] table the report
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_ip_report(lua_State *L) { return v2_typed(L, "ip-address/report", "ip", VT_KIND_IP); }

/***
Uploads a file to v2 (`file/scan`), at most 32 MB.
@function client:v2_file_scan
@param file a path, `{data = string, name = string}` or an open remote file
@treturn[1] table the v2 body (`scan_id`, `sha256`, ...)
@treturn[2] nil
@treturn[2] table the error value (`TooLarge` over 32 MB, before any request)
*/
static int client_v2_file_scan(lua_State *L)
{
    static const char *const keys[] = {"progress", NULL};
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 3);
    vt_check_opts(L, 3, "v2_file_scan", keys);
    vt_push_progress_opt(L, 3);
    lua_newtable(L); /* 4: the parameters, with the progress function */
    lua_insert(L, 4);
    lua_setfield(L, 4, "progress");
    lua_pushvalue(L, 2);
    lua_setfield(L, 4, "file");
    return v2_call(L, c, &v2_endpoints[1], 4);
}

/***
Downloads a file's content through v2 (`file/download`), as `client:download` does.
@function client:v2_file_download
@tparam string hash the file's hash
@tparam string dest the path to write
@tparam[opt] table opts `max_bytes`
@treturn[1] table `{path, size, md5, sha1, sha256}`
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_v2_file_download(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 4);
    return vt_client_download(L, c, 2, true);
}

void vt_v2_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"v2", client_v2},
        {"v2_file_report", client_v2_file_report},
        {"v2_file_rescan", client_v2_file_rescan},
        {"v2_file_scan", client_v2_file_scan},
        {"v2_file_download", client_v2_file_download},
        {"v2_url_report", client_v2_url_report},
        {"v2_url_scan", client_v2_url_scan},
        {"v2_domain_report", client_v2_domain_report},
        {"v2_ip_report", client_v2_ip_report},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
