/* Client methods beyond the look-ups: raw requests, submissions, waiting,
 * downloads, collections, batch and legacy v2. */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIRECT_UPLOAD_MAX (32LL * 1024 * 1024)   /* POST /files above this is refused (413) */
#define UPLOAD_MAX (650LL * 1024 * 1024)         /* the service's absolute cap */
#define DOWNLOAD_MAX_DEFAULT (100LL * 1024 * 1024)
#define MAX_REDIRECTS 3
#define VT_TEMPFILE_MT "vt.tempfile"

/* --------------------------------------------------------------- helpers */

static void check_keys(lua_State *L, int idx, const char *what, const char *const keys[])
{
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        vt_check_option_keys(L, idx, what, keys);
    }
}

static double opt_seconds(lua_State *L, int opts, const char *key, double dflt)
{
    if (lua_isnoneornil(L, opts))
        return dflt;
    int t = lua_getfield(L, opts, key);
    double v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
            luaL_error(L, "option '%s' must be a number >= 0", key);
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static lua_Integer opt_int(lua_State *L, int opts, const char *key, lua_Integer dflt, lua_Integer min)
{
    if (lua_isnoneornil(L, opts))
        return dflt;
    int t = lua_getfield(L, opts, key);
    lua_Integer v = dflt;
    if (t != LUA_TNIL) {
        int isint;
        v = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint || v < min)
            luaL_error(L, "option '%s' must be an integer >= %d", key, (int)min);
    }
    lua_pop(L, 1);
    return v;
}

/* Appends a header line to the job (raises on OOM). */
static void add_header(lua_State *L, vt_job *j, const char *line)
{
    struct curl_slist *h = curl_slist_append(j->headers, line);
    if (!h)
        luaL_error(L, "out of memory");
    j->headers = h;
}

static char *dup_lua(lua_State *L, int idx, size_t *len)
{
    size_t l;
    const char *s = lua_tolstring(L, idx, &l);
    char *d = malloc(l + 1);
    if (!d)
        luaL_error(L, "out of memory");
    memcpy(d, s, l + 1);
    if (len)
        *len = l;
    return d;
}

/* Continuation of a method whose last act was one job (on the stack top):
 * its body's data, or nil, err. The client is argument 1. */
static int data_done(lua_State *L, int status, lua_KContext ctx)
{
    return vt_client_data_result(L, vt_client_check(L, 1), lua_touserdata(L, -1), false);
}

/* Runs the job on the stack top, then returns its data. */
static int await_data(lua_State *L, vt_client *c)
{
    return vt_client_await(L, c, 1, -1, 1, 0, data_done);
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

static int client_request(lua_State *L)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
    static const char *const keys[] = {"query", "form", "json", "headers", NULL};
    vt_client *c = vt_client_check(L, 1);
    const char *method = methods[luaL_checkoption(L, 2, NULL, methods)];
    size_t plen;
    const char *path = vt_checkstring(L, 3, &plen);
    check_keys(L, 4, "request", keys);
    if (plen == 0 || path[0] != '/' || strlen(path) != plen || strpbrk(path, " \t\r\n"))
        return vt_fail(L, "InvalidArgument", "path must start with '/' relative to /api/v3 and hold no spaces");
    if (strncmp(path, "/vtapi/", 7) == 0)
        return vt_fail(L, "InvalidArgument", "request takes v3 paths; use c:v2 for %s", path);
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
        char *url = dup_lua(L, -1, NULL); /* may raise: j->url stays owned until replaced */
        free(j->url);
        j->url = url;
        lua_pop(L, 1);
    }
    if (has_opts) {
        if (lua_getfield(L, 4, "form") != LUA_TNIL) {
            vt_push_query(L, -1);
            j->body = dup_lua(L, -1, &j->body_len);
            add_header(L, j, "Content-Type: application/x-www-form-urlencoded");
            lua_pop(L, 1);
        } else if (lua_getfield(L, 4, "json") != LUA_TNIL) {
            vt_json_encode(L, -1);
            j->body = dup_lua(L, -1, &j->body_len);
            add_header(L, j, "Content-Type: application/json");
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
                add_header(L, j, lua_tostring(L, -1));
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
    lua_settop(L, 7); /* the job on top */
    return vt_client_await(L, c, 1, -1, 1, 0, request_done);
}

/* --------------------------------------------------------------- uploads */

/* The source at idx as a source userdata pushed on the stack (path, {data =,
 * name =} or a remote file). Returns it, or NULL with e filled. */
static vt_source *push_source(lua_State *L, int idx, vt_err *e)
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
        if (!vt_source_push_file(L, path, e))
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
        luaL_addchar(b, (*p == '"' || *p == '\\' || (unsigned char)*p < 32) ? '_' : *p);
}

static void add_boundary_line(luaL_Buffer *b, const char *boundary)
{
    luaL_addstring(b, "--");
    luaL_addstring(b, boundary);
    luaL_addstring(b, "\r\nContent-Disposition: form-data; name=\"");
}

/* Frames the source as the "file" part of a multipart body, after one
 * optional text field (the v3 archive password, or the v2 key). */
static void set_multipart(lua_State *L, vt_job *j, vt_source *src, const char *field_name, const char *field_value)
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
    j->mp_head = dup_lua(L, -1, &j->mp_head_len);
    lua_pop(L, 1);
    lua_pushfstring(L, "\r\n--%s--\r\n", boundary);
    j->mp_tail = dup_lua(L, -1, &j->mp_tail_len);
    lua_pop(L, 1);
    lua_pushfstring(L, "Content-Type: multipart/form-data; boundary=%s", boundary);
    add_header(L, j, lua_tostring(L, -1));
    lua_pop(L, 1);
    add_header(L, j, "Expect:"); /* no 100-continue round trip */
    j->source = src;
    j->streaming = true;
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
 * then the upload_url job (big files) and the upload job. */
enum { SCAN_POST, SCAN_AFTER_UPLOAD_URL };

static int scan_file_step(lua_State *L, int status, lua_KContext phase)
{
    vt_client *c = vt_client_check(L, 1);
    vt_source *src = vt_source_test(L, 4);
    if (!src)
        return luaL_error(L, "the file source was closed during the upload");
    const char *upload_url = NULL;
    if (phase == SCAN_AFTER_UPLOAD_URL) {
        if (vt_client_data_result(L, c, lua_touserdata(L, -1), false) == 2)
            return 2;
        if (lua_type(L, -1) != LUA_TSTRING)
            return vt_fail(L, "InvalidResponse", "upload_url answer holds no URL");
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
        free(j->url);
        j->url = strdup(upload_url);
        if (!j->url)
            return luaL_error(L, "out of memory");
    }
    const char *password = lua_tostring(L, 5);
    set_multipart(L, j, src, password ? "password" : NULL, password);
    return await_data(L, c);
}

static int client_scan_file(lua_State *L)
{
    static const char *const keys[] = {"password", NULL};
    vt_client_check(L, 1);
    check_keys(L, 3, "scan_file", keys);
    lua_settop(L, 3);
    vt_err e;
    vt_source *src = push_source(L, 2, &e); /* 4 */
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
    return scan_file_step(L, LUA_OK, SCAN_POST);
}

/* A URL to submit: trimmed, refanged, no spaces or controls. Pushed. */
static int push_submit_url(lua_State *L, int idx, vt_err *e)
{
    size_t raw, len;
    const char *u = vt_checkstring(L, idx, &raw);
    u = vt_trim(u, raw, &len);
    vt_push_refanged(L, u, len);
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    bool ok = rl > 0 && rl <= 8192;
    for (size_t i = 0; i < rl && ok; i++)
        ok = (unsigned char)r[i] > 32 && r[i] != 127;
    if (!ok || !(strchr(r, '.') || strstr(r, "://"))) {
        lua_pop(L, 1);
        vt_err_set(e, "InvalidArgument", "not a URL: '%.*s'", (int)(len > 80 ? 80 : len), u);
        for (char *p = e->message; *p; p++)
            if ((unsigned char)*p < 32)
                *p = '?';
        return 0;
    }
    return 1;
}

static void set_form_body(lua_State *L, vt_job *j, int query_idx)
{
    j->body = dup_lua(L, query_idx, &j->body_len);
    add_header(L, j, "Content-Type: application/x-www-form-urlencoded");
}

static int client_scan_url(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 2);
    vt_err e;
    if (!push_submit_url(L, 2, &e))
        return vt_err_return(L, &e);
    lua_newtable(L);
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "url");
    vt_push_query(L, -1);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", "/urls", NULL);
    set_form_body(L, j, -2);
    return await_data(L, c);
}

static int client_reanalyse(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    lua_settop(L, 3);
    vt_err e;
    if (!vt_push_object_path(L, kind, 3, &e))
        return vt_err_return(L, &e);
    lua_pushfstring(L, "%s/analyse", lua_tostring(L, -1));
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", lua_tostring(L, -2), NULL);
    return await_data(L, c);
}

/* ----------------------------------------------------------------- sleep */

static int sleep_done(lua_State *L, int status, lua_KContext ctx)
{
    return 0;
}

/* Pauses the calling code for secs; in coroutine mode it yields like any call,
 * so a playbook's pause between polls never blocks its host. */
static int client_sleep(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    luaL_checktype(L, 2, LUA_TNUMBER); /* strictly: no string conversion */
    double secs = lua_tonumber(L, 2);
    luaL_argcheck(L, secs >= 0 && secs <= 86400, 2, "seconds must be within 0..86400");
    lua_settop(L, 2);
    vt_job_push_timer(L, secs);
    return vt_client_await(L, c, 1, -1, 1, 0, sleep_done);
}

/* ------------------------------------------------------------------ wait */

/* Stack of wait: 1 client, 2 id, 3 opts, 4 progress or nil, 5 path, 6 start,
 * 7 interval, 8 timeout, then the poll (or the pause) job at 9; after a poll,
 * 10 the analysis, 11 its attributes, 12 its status. Blocking, it loops (a long
 * wait must not grow the C stack); yielding, it continues here after each wait
 * and after the progress callback (which may yield too). */
enum { WAIT_POLL, WAIT_POLLED, WAIT_PROGRESSED };

static int wait_step(lua_State *L, int status, lua_KContext phase)
{
    for (;;) {
        vt_client *c = vt_client_check(L, 1); /* again each turn: a callback may close it */
        if (phase == WAIT_POLL) {
            lua_settop(L, 8);
            vt_job *j = vt_job_push(L);
            vt_client_prepare(L, c, j, "GET", lua_tostring(L, 5), NULL);
            if (vt_client_may_yield(L, c))
                return vt_client_await(L, c, 1, 9, 1, WAIT_POLLED, wait_step);
            vt_client_run(L, c, 9, 1);
            phase = WAIT_POLLED;
        }
        if (phase == WAIT_POLLED) {
            lua_settop(L, 9);
            if (vt_client_data_result(L, c, lua_touserdata(L, 9), true) == 2) {
                lua_pushvalue(L, 2);
                lua_setfield(L, -2, "analysis_id");
                return 2;
            }
            if (lua_getfield(L, 10, "attributes") != LUA_TTABLE || lua_getfield(L, 11, "status") != LUA_TSTRING) {
                lua_settop(L, 11);
                lua_pushliteral(L, "unknown");
            }
            if (strcmp(lua_tostring(L, 12), "completed") == 0) {
                lua_settop(L, 10);
                return 1;
            }
            phase = WAIT_PROGRESSED;
            if (!lua_isnil(L, 4)) {
                lua_pushvalue(L, 4);
                lua_pushvalue(L, 12);
                lua_pushnumber(L, vt_monotonic() - lua_tonumber(L, 6));
                lua_callk(L, 2, 0, WAIT_PROGRESSED, wait_step);
            }
            continue; /* checks the client again */
        }
        /* WAIT_PROGRESSED: never sleep when no try would follow */
        lua_settop(L, 12);
        double elapsed = vt_monotonic() - lua_tonumber(L, 6), interval = lua_tonumber(L, 7);
        if (elapsed + interval > lua_tonumber(L, 8)) {
            vt_err e;
            vt_err_set(&e, "Timeout", "analysis not completed after %.0fs (status %s)", elapsed, lua_tostring(L, 12));
            snprintf(e.analysis_id, sizeof e.analysis_id, "%s", lua_tostring(L, 2));
            return vt_err_return(L, &e);
        }
        lua_settop(L, 8);
        vt_job_push_timer(L, interval);
        if (vt_client_may_yield(L, c))
            return vt_client_await(L, c, 1, 9, 1, WAIT_POLL, wait_step);
        vt_client_run(L, c, 9, 1);
        phase = WAIT_POLL;
    }
}

static int client_wait(lua_State *L)
{
    static const char *const keys[] = {"interval", "timeout", "progress", NULL};
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 3);
    check_keys(L, 3, "wait", keys);
    double interval = opt_seconds(L, 3, "interval", c->poll_interval);
    double timeout = opt_seconds(L, 3, "timeout", c->poll_timeout);
    if (lua_istable(L, 3))
        lua_getfield(L, 3, "progress");
    else
        lua_pushnil(L);
    if (!lua_isnil(L, 4))
        luaL_checktype(L, 4, LUA_TFUNCTION);
    vt_err e;
    if (!vt_push_object_path(L, VT_KIND_ANALYSIS, 2, &e)) /* 5 */
        return vt_err_return(L, &e);
    lua_pushnumber(L, vt_monotonic()); /* 6 */
    lua_pushnumber(L, interval);       /* 7 */
    lua_pushnumber(L, timeout);        /* 8 */
    return wait_step(L, LUA_OK, WAIT_POLL);
}

/* ------------------------------------------------------------- downloads */

typedef struct tempfile {
    int fd;
    bool committed;
    char path[PATH_MAX];
} tempfile;

/* Closes the file; removes it unless it was renamed into place. */
static void tempfile_release(tempfile *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (!t->committed && t->path[0])
        unlink(t->path);
    t->path[0] = '\0';
}

static int tempfile_gc(lua_State *L)
{
    tempfile_release(luaL_checkudata(L, 1, VT_TEMPFILE_MT));
    return 0;
}

/* A temporary file beside dest that disappears unless committed. */
static tempfile *push_tempfile(lua_State *L, const char *dest, vt_err *e)
{
    tempfile *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->fd = -1;
    t->committed = false;
    t->path[0] = '\0';
    if (luaL_newmetatable(L, VT_TEMPFILE_MT)) {
        lua_pushcfunction(L, tempfile_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (snprintf(t->path, sizeof t->path, "%s.vt-XXXXXX", dest) >= (int)sizeof t->path) {
        t->path[0] = '\0';
        vt_err_set(e, "InvalidArgument", "destination path too long");
        return NULL;
    }
    t->fd = mkostemp(t->path, O_CLOEXEC);
    if (t->fd < 0) {
        vt_err_set(e, "InvalidArgument", "cannot create a file beside '%s': %s", dest, strerror(errno));
        t->path[0] = '\0';
        return NULL;
    }
    return t;
}

static void set_file_sink(lua_State *L, vt_job *j, tempfile *t, int64_t max_bytes)
{
    j->sink = VT_SINK_FILE;
    j->sink_fd = t->fd;
    j->max_bytes = max_bytes;
    j->streaming = true;
    j->digest = vt_digest_new();
    if (!j->digest)
        luaL_error(L, "out of memory");
}

/* Stack of a download, from `base` (the continuation's ctx): the lowercase
 * hash, dest, max_bytes, the temporary file, then one job per hop. */
static int download_verify(lua_State *L, vt_client *c, int base)
{
    const char *expected = lua_tostring(L, base), *dest = lua_tostring(L, base + 1);
    tempfile *t = lua_touserdata(L, base + 3);
    vt_job *j = lua_touserdata(L, -1);
    int hops = lua_gettop(L) - (base + 3);
    if (!j->err.code[0] && j->status >= 301 && j->status <= 308 && j->location[0]) {
        /* follow it ourselves, WITHOUT the key: libcurl would forward custom headers */
        if (hops > MAX_REDIRECTS)
            return vt_fail(L, "InvalidResponse", "too many redirects");
        if (strncmp(j->location, "https://", 8) != 0 && strncmp(j->location, "http://", 7) != 0)
            return vt_fail(L, "InvalidResponse", "download redirected to a non-HTTP location");
        if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) != 0)
            return vt_fail(L, "InvalidArgument", "cannot write '%s': %s", t->path, strerror(errno));
        vt_job *next = vt_job_push(L);
        snprintf(next->method, sizeof next->method, "GET");
        if (!(next->url = strdup(j->location)))
            return luaL_error(L, "out of memory");
        add_header(L, next, "Accept: */*");
        set_file_sink(L, next, t, lua_tointeger(L, base + 2));
        next->counts_quota = false; /* the storage host is not the API */
        return -1;                  /* the caller awaits it */
    }
    vt_err e;
    if (vt_client_job_error(L, c, j, &e))
        return vt_err_return(L, &e);
    char md5[33], sha1[41], sha256[65];
    vt_digest_final(j->digest, md5, sha1, sha256);
    size_t len = strlen(expected);
    const char *got = len == 32 ? md5 : len == 40 ? sha1 : sha256;
    if (strcmp(got, expected) != 0)
        return vt_fail(L, "DigestMismatch", "downloaded content has %s %s, not the %s asked for",
                       vt_hash_name(vt_hash_kind_of(expected, len)), got, expected);
    /* mkostemp made it 0600; a finished download gets the mode any new file would */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(t->fd, 0666 & ~mask) != 0 || fsync(t->fd) != 0 || rename(t->path, dest) != 0)
        return vt_fail(L, "InvalidArgument", "cannot move the download to '%s': %s", dest, strerror(errno));
    t->committed = true;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, dest);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, j->resp_total);
    lua_setfield(L, -2, "size");
    lua_pushstring(L, md5);
    lua_setfield(L, -2, "md5");
    lua_pushstring(L, sha1);
    lua_setfield(L, -2, "sha1");
    lua_pushstring(L, sha256);
    lua_setfield(L, -2, "sha256");
    return 1;
}

static int download_step(lua_State *L, int status, lua_KContext base)
{
    vt_client *c = vt_client_check(L, 1);
    int n = download_verify(L, c, (int)base);
    if (n < 0)
        return vt_client_await(L, c, 1, -1, 1, base, download_step);
    tempfile_release(lua_touserdata(L, (int)base + 3)); /* now: no partial file survives */
    return n;
}

/* Shared by c:download and v2 file/download: hash at idx, dest at idx+1, opts at idx+2. */
static int download(lua_State *L, vt_client *c, int idx, bool v2)
{
    static const char *const keys[] = {"max_bytes", NULL};
    vt_err e;
    idx = lua_absindex(L, idx);
    vt_checkstring(L, idx + 1, NULL);
    check_keys(L, idx + 2, "download", keys);
    int64_t max_bytes = opt_int(L, idx + 2, "max_bytes", DOWNLOAD_MAX_DEFAULT, 1);
    if (!vt_push_object_id(L, VT_KIND_FILE, idx, &e))
        return vt_err_return(L, &e);
    int base = lua_gettop(L);
    const char *hash = lua_tostring(L, base);
    lua_pushvalue(L, idx + 1);
    lua_pushinteger(L, max_bytes);
    tempfile *t = push_tempfile(L, lua_tostring(L, base + 1), &e);
    if (!t)
        return vt_err_return(L, &e);
    vt_job *j = vt_job_push(L);
    if (v2) {
        lua_newtable(L);
        lua_pushstring(L, hash);
        lua_setfield(L, -2, "hash");
        lua_pushstring(L, c->apikey);
        lua_setfield(L, -2, "apikey");
        vt_push_query(L, -1);
        vt_client_prepare(L, c, j, "GET", "/vtapi/v2/file/download", lua_tostring(L, -1));
        lua_pop(L, 2);
    } else {
        lua_pushfstring(L, "/files/%s/download", hash);
        vt_client_prepare(L, c, j, "GET", lua_tostring(L, -1), NULL);
        lua_pop(L, 1);
    }
    set_file_sink(L, j, t, max_bytes);
    return vt_client_await(L, c, 1, -1, 1, base, download_step);
}

static int client_download(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 4);
    return download(L, c, 2, false);
}

/* ----------------------------------------------------------- collections */

/* Iterator state, upvalue 1 of the iterator closure; upvalue 2 is the client. */
typedef struct collection {
    lua_Integer limit, max, count, index, page_len;
    bool fetched, done;
} collection;

/* Takes the fetched page (the job on the stack top) into the upvalues. */
static void collection_take_page(lua_State *L, vt_client *c, collection *it)
{
    if (vt_client_result(L, c, lua_touserdata(L, -1)) == 2) {
        it->done = true;
        lua_error(L); /* a for loop would drop nil, err: raise the error value */
    }
    it->fetched = true;
    it->index = 0;
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "data") != LUA_TTABLE) {
        it->done = true;
        vt_err e;
        vt_err_set(&e, "InvalidResponse", "collection page holds no 'data' list");
        vt_err_push(L, &e);
        lua_error(L);
    }
    it->page_len = (lua_Integer)lua_rawlen(L, -1);
    lua_replace(L, lua_upvalueindex(5));
    if (lua_getfield(L, -1, "meta") == LUA_TTABLE && lua_getfield(L, -1, "cursor") == LUA_TSTRING &&
        lua_rawlen(L, -1) > 0)
        lua_replace(L, lua_upvalueindex(6));
    else {
        lua_pushnil(L);
        lua_replace(L, lua_upvalueindex(6));
    }
    if (it->page_len == 0)
        it->done = true;
    lua_settop(L, 0);
}

static int collection_step(lua_State *L, int status, lua_KContext fetched)
{
    vt_client *c = vt_client_check(L, lua_upvalueindex(1));
    collection *it = lua_touserdata(L, lua_upvalueindex(2));
    if (fetched)
        collection_take_page(L, c, it);
    if (it->done || it->count >= it->max)
        return 0;
    if (it->index < it->page_len) {
        it->index++;
        it->count++;
        lua_rawgeti(L, lua_upvalueindex(5), it->index);
        return 1;
    }
    if (it->fetched && lua_isnil(L, lua_upvalueindex(6))) {
        it->done = true;
        return 0;
    }
    /* next page: base query + limit + cursor */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, lua_upvalueindex(4))) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    lua_pushinteger(L, it->limit);
    lua_setfield(L, -2, "limit");
    lua_pushvalue(L, lua_upvalueindex(6));
    lua_setfield(L, -2, "cursor");
    vt_push_query(L, -1);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, lua_upvalueindex(3)), lua_tostring(L, -2));
    return vt_client_await(L, c, lua_upvalueindex(1), -1, 1, 1, collection_step);
}

/* Iterator upvalues: 1 client, 2 state userdata, 3 path, 4 base query table,
 * 5 current page (table), 6 next cursor (string or nil). */
static int collection_next(lua_State *L)
{
    lua_settop(L, 0);
    return collection_step(L, LUA_OK, 0);
}

/* Pushes an iterator over the collection at path (pushed by the caller at
 * path_idx), with opts (limit, max, cursor) at opts_idx and the base query
 * table at query_idx. */
static int push_collection(lua_State *L, int path_idx, int opts_idx, int query_idx)
{
    static const char *const keys[] = {"limit", "max", "cursor", NULL};
    check_keys(L, opts_idx, "collection", keys);
    lua_pushvalue(L, 1); /* client */
    collection *it = lua_newuserdatauv(L, sizeof *it, 0);
    memset(it, 0, sizeof *it);
    it->limit = opt_int(L, opts_idx, "limit", 10, 1);
    it->max = opt_int(L, opts_idx, "max", LUA_MAXINTEGER, 0);
    lua_pushvalue(L, path_idx);
    lua_pushvalue(L, query_idx);
    lua_newtable(L); /* page */
    if (lua_istable(L, opts_idx))
        lua_getfield(L, opts_idx, "cursor");
    else
        lua_pushnil(L);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "option 'cursor' must be a string");
    lua_pushcclosure(L, collection_next, 6);
    return 1;
}

static int client_related(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    size_t rlen;
    const char *rel = vt_checkstring(L, 4, &rlen);
    lua_settop(L, 5);
    (void)c;
    for (size_t i = 0; i < rlen; i++)
        if (!(islower((unsigned char)rel[i]) || isdigit((unsigned char)rel[i]) || rel[i] == '_'))
            return vt_fail(L, "InvalidArgument", "not a relationship name: '%.40s'", rel);
    if (rlen == 0)
        return vt_fail(L, "InvalidArgument", "empty relationship name");
    vt_err e;
    if (!vt_push_object_path(L, kind, 3, &e)) /* 6 */
        return vt_err_return(L, &e);
    lua_pushfstring(L, "%s/%s", lua_tostring(L, 6), rel); /* 7 */
    lua_newtable(L);                                     /* 8 */
    return push_collection(L, 7, 5, 8);
}

static int client_comments(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    lua_settop(L, 4);
    (void)c;
    vt_err e;
    if (!vt_push_object_path(L, kind, 3, &e)) /* 5 */
        return vt_err_return(L, &e);
    lua_pushfstring(L, "%s/comments", lua_tostring(L, 5)); /* 6 */
    lua_newtable(L);                                      /* 7 */
    return push_collection(L, 6, 4, 7);
}

static int client_search(lua_State *L)
{
    vt_client_check(L, 1);
    size_t qlen;
    const char *q = vt_checkstring(L, 2, &qlen);
    lua_settop(L, 3);
    if (qlen == 0 || strlen(q) != qlen)
        return vt_fail(L, "InvalidArgument", "search query is empty or contains a NUL byte");
    lua_pushliteral(L, "/search"); /* 4 */
    lua_newtable(L);               /* 5 */
    lua_pushvalue(L, 2);
    lua_setfield(L, 5, "query");
    return push_collection(L, 4, 3, 5);
}

/* The user's overall quotas. The service names the user in the path; without
 * a user id the API key is that name (the one place it goes beyond the header,
 * because the service offers no other way). */
static int client_quotas(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    size_t ulen = 0;
    const char *user = luaL_optlstring(L, 2, NULL, &ulen);
    if (user && (ulen == 0 || strlen(user) != ulen))
        return vt_fail(L, "InvalidArgument", "user id is empty or contains a NUL byte");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "/users/");
    vt_add_escaped(&b, user ? user : c->apikey, user ? ulen : c->apikey_len);
    luaL_addstring(&b, "/overall_quotas");
    luaL_pushresult(&b);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
    return await_data(L, c);
}

/* ----------------------------------------------------------------- batch */

/* Pushes {ok = true, value = v} or {ok = false, err = e} from a finished job;
 * false (pushing nothing) when the job must run again (a corrupt cache entry). */
static bool push_outcome(lua_State *L, vt_client *c, vt_job *j, bool keep_meta)
{
    int n = vt_client_data_result(L, c, j, keep_meta);
    if (n < 0)
        return false;
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, n == 1);
    lua_setfield(L, -2, "ok");
    lua_insert(L, -2);
    lua_setfield(L, -2, n == 1 ? "value" : "err");
    if (n == 2)
        lua_remove(L, -2);
    return true;
}

static void push_failed_outcome(lua_State *L, const vt_err *e)
{
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    vt_err_push(L, e);
    lua_setfield(L, -2, "err");
}

/* Stack of a batch: 1 client, 2 list, 3 opts, 4 results, 5 jobs by index, 6 the
 * later indices of a look-up asked more than once, by first index, 7 this. */
typedef struct batch_state {
    lua_Integer n, conc, next, done, total, inflight;
    lua_Integer flight[]; /* indices of the jobs in flight */
} batch_state;

static void batch_submit(lua_State *L, vt_client *c, batch_state *b)
{
    while (b->inflight < b->conc && b->next <= b->n) {
        if (lua_rawgeti(L, 5, b->next) == LUA_TUSERDATA) {
            vt_job_submit(c->engine, lua_touserdata(L, -1), &c->transport, &c->policy);
            b->flight[b->inflight++] = b->next;
        }
        lua_pop(L, 1);
        b->next++;
    }
}

/* Moves the outcomes of finished jobs into the results, in input order. */
static void batch_collect(lua_State *L, vt_client *c, batch_state *b)
{
    for (lua_Integer k = 0; k < b->inflight;) {
        lua_rawgeti(L, 5, b->flight[k]);
        vt_job *j = lua_touserdata(L, -1);
        if (j->state != VT_JOB_DONE) {
            lua_pop(L, 1);
            k++;
            continue;
        }
        lua_getiuservalue(L, -1, 1);
        bool keep_meta = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!push_outcome(L, c, j, keep_meta)) {
            vt_job_submit(c->engine, j, &c->transport, &c->policy);
            lua_pop(L, 1);
            k++;
            continue;
        }
        /* the look-up's duplicates share its outcome (their own table, the same value) */
        if (lua_rawgeti(L, 6, b->flight[k]) == LUA_TTABLE) {
            for (lua_Integer d = 1, n = (lua_Integer)lua_rawlen(L, -1); d <= n; d++) {
                lua_createtable(L, 0, 2);
                for (int f = 0; f < 3; f++) {
                    static const char *const fields[] = {"ok", "value", "err"};
                    lua_getfield(L, -3, fields[f]);
                    lua_setfield(L, -2, fields[f]);
                }
                lua_rawgeti(L, -2, d);
                lua_insert(L, -2);
                lua_rawset(L, 4);
            }
        }
        lua_pop(L, 1);
        lua_rawseti(L, 4, b->flight[k]);
        vt_job_reset(j); /* free its buffers now: memory stays flat over big batches */
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawseti(L, 5, b->flight[k]);
        b->flight[k] = b->flight[--b->inflight];
        b->done++;
    }
}

static int batch_step(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 7);
    batch_state *b = lua_touserdata(L, 7);
    for (;;) {
        batch_collect(L, c, b);
        batch_submit(L, c, b);
        batch_collect(L, c, b); /* members that failed at once (quota) */
        if (b->done == b->total) {
            lua_pushvalue(L, 4);
            return 1;
        }
        if (vt_client_may_yield(L, c))
            return vt_client_suspend(L, c, 1, 0, batch_step);
        vt_engine_step(c->engine, 1.0);
    }
}

static int client_batch(lua_State *L)
{
    static const char *const keys[] = {"concurrency", "max_age", NULL};
    vt_client *c = vt_client_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    check_keys(L, 3, "batch", keys);
    lua_Integer conc = opt_int(L, 3, "concurrency", 8, 1);
    double max_age = vt_cache_max_age(L, 3);
    lua_Integer n = luaL_len(L, 2);
    lua_createtable(L, (int)n, 0); /* 4: results */
    lua_createtable(L, (int)n, 0); /* 5: job userdata by index */
    lua_newtable(L);               /* 6: duplicates by first index */
    lua_newtable(L);               /* 7 (until the state replaces it): first index by path */
    lua_Integer total = 0;         /* jobs to run */
    /* validate everything first: a bad member costs no request */
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
            return luaL_error(L, "batch: item %d must be a table {kind, value}", (int)i);
        lua_rawgeti(L, -1, 1);
        vt_kind kind = vt_kind_check(L, -1, true);
        lua_rawgeti(L, -2, 2);
        vt_err e;
        if (!vt_push_object_path(L, kind, -1, &e)) {
            push_failed_outcome(L, &e);
            lua_rawseti(L, 4, i);
        } else if (lua_pushvalue(L, -1), lua_rawget(L, 7) == LUA_TNUMBER) {
            /* asked before in this batch: one request serves both */
            lua_Integer first = lua_tointeger(L, -1);
            if (lua_rawgeti(L, 6, first) != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_rawseti(L, 6, first);
            }
            lua_pushinteger(L, i);
            lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
            lua_pop(L, 3);
            vt_cache_counters(c->policy.cache)->coalesced++;
        } else {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushinteger(L, i);
            lua_rawset(L, 7);
            vt_job *j = vt_job_push(L);
            vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
            vt_cache_key(c->policy.cache, j, kind, lua_tostring(L, -2), max_age);
            lua_pushboolean(L, kind == VT_KIND_ANALYSIS);
            lua_setiuservalue(L, -2, 1);
            lua_rawseti(L, 5, i);
            lua_pop(L, 1);
            total++;
        }
        lua_pop(L, 3);
    }
    lua_settop(L, 6);
    if (conc > total)
        conc = total > 0 ? total : 1; /* never more slots than jobs (and no overflowing size) */
    batch_state *b = lua_newuserdatauv(L, sizeof *b + sizeof(lua_Integer) * (size_t)conc, 0); /* 7 */
    *b = (batch_state){n, conc, 1, 0, total, 0};
    return batch_step(L, LUA_OK, 0);
}

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
    int n = vt_client_result(L, c, j);
    if (n < 0) /* a corrupt cache entry: asked again */
        return vt_client_await(L, c, 1, -1, 1, 0, v2_done);
    if (n == 2)
        return 2;
    if (!lua_istable(L, -1))
        return 1;
    if (lua_getfield(L, -1, "response_code") != LUA_TNUMBER) {
        lua_pop(L, 1);
        return 1; /* a batch answers with a list: each report keeps its own code */
    }
    lua_Integer rc = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (rc == 1)
        return 1;
    if (lua_getfield(L, -1, "verbose_msg") != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "no message");
    }
    lua_pushfstring(L, "%s (response_code %d)", lua_tostring(L, -1), (int)rc);
    vt_err e;
    vt_err_set(&e, rc == 0 ? "NotFoundError" : rc == -2 ? "NotAvailableYet" : "InvalidArgument", "%s", "");
    vt_client_redacted_message(L, c, -1, &e);
    e.http = j->status;
    return vt_err_return(L, &e);
}

/* Pushes the path and the query of a request to v2 endpoint `ep`: the string
 * parameters of the table at params_idx (file/scan's file left out) and the key. */
static void push_v2_target(lua_State *L, vt_client *c, const v2_endpoint *ep, int params_idx)
{
    lua_newtable(L); /* the string fields, with the key */
    int fields = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, params_idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "v2: parameter names must be strings");
        if (ep->style == V2_POST_FILE && strcmp(lua_tostring(L, -2), "file") == 0) {
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
 * (for file/scan, params.file is a source; for file/download, hash and dest). */
static int v2_call(lua_State *L, vt_client *c, const v2_endpoint *ep, int params_idx)
{
    params_idx = lua_absindex(L, params_idx);
    if (ep->style == V2_DOWNLOAD) {
        lua_getfield(L, params_idx, "hash");
        lua_getfield(L, params_idx, "dest");
        lua_newtable(L);
        if (lua_getfield(L, params_idx, "max_bytes") != LUA_TNIL)
            lua_setfield(L, -2, "max_bytes");
        else
            lua_pop(L, 1);
        return download(L, c, lua_gettop(L) - 2, true);
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
    if (ep->style == V2_POST_FILE) {
        vt_err e;
        if (lua_getfield(L, params_idx, "file") == LUA_TNIL)
            return luaL_error(L, "v2 file/scan: parameter 'file' is required");
        if (!(src = push_source(L, -1, &e)))
            return vt_err_return(L, &e);
        if (src->size > DIRECT_UPLOAD_MAX)
            return vt_fail(L, "TooLarge", "'%s' is %lld bytes; v2 file/scan takes at most 32 MB",
                           src->name, (long long)src->size);
    }
    vt_job *j = vt_job_push(L);
    if (ep->style == V2_POST_FORM) {
        vt_client_prepare(L, c, j, "POST", lua_tostring(L, path), NULL);
        set_form_body(L, j, query);
    } else {
        /* the key in the query and as a form field, as the v2 service takes either */
        vt_client_prepare(L, c, j, "POST", lua_tostring(L, path), lua_tostring(L, query));
        set_multipart(L, j, src, "apikey", c->apikey);
    }
    return vt_client_await(L, c, 1, -1, 1, 0, v2_done);
}

static const v2_endpoint *v2_find(lua_State *L, int idx)
{
    const char *name = vt_checkstring(L, idx, NULL);
    for (const v2_endpoint *ep = v2_endpoints; ep->name; ep++)
        if (strcmp(ep->name, name) == 0)
            return ep;
    luaL_error(L, "unknown v2 endpoint '%s' (expected file/report, file/scan, file/rescan, file/download, "
                  "url/report, url/scan, domain/report or ip-address/report)", name);
    return NULL;
}

static int client_v2(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    const v2_endpoint *ep = v2_find(L, 2);
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
    int ok = kind == VT_KIND_URL ? push_submit_url(L, 2, &e) : vt_push_object_id(L, kind, 2, &e);
    if (!ok)
        return vt_err_return(L, &e);
    lua_newtable(L);
    lua_insert(L, -2);
    lua_setfield(L, -2, param);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "scan") != LUA_TNIL) {
        lua_pushstring(L, lua_toboolean(L, -1) ? "1" : "0");
        lua_setfield(L, -3, "scan");
    }
    lua_settop(L, 4);
    for (const v2_endpoint *ep = v2_endpoints; ep->name; ep++)
        if (strcmp(ep->name, endpoint) == 0)
            return v2_call(L, c, ep, 4);
    return luaL_error(L, "internal: no v2 endpoint %s", endpoint);
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
    for (const v2_endpoint *ep = v2_endpoints; ep->name; ep++)
        if (strcmp(ep->name, endpoint) == 0)
            return v2_call(L, c, ep, -1);
    return 0;
}

static int client_v2_file_report(lua_State *L) { return v2_resource(L, "file/report"); }
static int client_v2_file_rescan(lua_State *L) { return v2_resource(L, "file/rescan"); }
static int client_v2_url_report(lua_State *L) { return v2_typed(L, "url/report", "resource", VT_KIND_URL); }
static int client_v2_url_scan(lua_State *L) { return v2_typed(L, "url/scan", "url", VT_KIND_URL); }
static int client_v2_domain_report(lua_State *L) { return v2_typed(L, "domain/report", "domain", VT_KIND_DOMAIN); }
static int client_v2_ip_report(lua_State *L) { return v2_typed(L, "ip-address/report", "ip", VT_KIND_IP); }

static int client_v2_file_scan(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 2);
    lua_newtable(L);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "file");
    return v2_call(L, c, &v2_endpoints[1], 3);
}

static int client_v2_file_download(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 4);
    return download(L, c, 2, true);
}

void vt_calls_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"request", client_request},
        {"scan_file", client_scan_file},
        {"scan_url", client_scan_url},
        {"reanalyse", client_reanalyse},
        {"wait", client_wait},
        {"sleep", client_sleep},
        {"download", client_download},
        {"related", client_related},
        {"comments", client_comments},
        {"search", client_search},
        {"quotas", client_quotas},
        {"batch", client_batch},
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
