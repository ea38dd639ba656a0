/* vt.client: options, the handle (close/__gc/__close/__tostring), the shared
 * request plumbing, and the v3 look-ups. */
#include "client.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_BASE_URL "https://www.virustotal.com"
#define MAX_RATE_WINDOWS (VT_MAX_WINDOWS - 3) /* beside the minute, day and month ones */

/* ------------------------------------------------------------ small tools */

const char *vt_trim(const char *s, size_t len, size_t *out_len)
{
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    *out_len = len;
    return s;
}

void vt_add_escaped(luaL_Buffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~')
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

/* --------------------------------------------------------------- options */

static const char *const client_option_names[] = {
    "apikey", "base_url", "api", "requests_per_minute", "requests_per_day", "requests_per_month",
    "rate", "quota_state", "max_wait", "timeout", "connect_timeout", "retries", "proxy", "cainfo",
    "insecure", "user_agent", "poll_interval", "poll_timeout", "yield", "retry_base", NULL,
};

/* Reads opts[key]; raises naming the key when present with another type. */
static bool opt_field(lua_State *L, int opts, const char *key, int type)
{
    int t = lua_getfield(L, opts, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return false;
    }
    if (t != type)
        luaL_error(L, "vt.client: option '%s' must be a %s (got %s)", key, lua_typename(L, type), luaL_typename(L, -1));
    return true;
}

static char *opt_string(lua_State *L, int opts, const char *key, const char *dflt)
{
    const char *v = dflt;
    size_t len = v ? strlen(v) : 0;
    bool present = opt_field(L, opts, key, LUA_TSTRING);
    if (present)
        v = lua_tolstring(L, -1, &len);
    char *copy = NULL;
    if (v) {
        if (memchr(v, '\0', len) || memchr(v, '\r', len) || memchr(v, '\n', len))
            luaL_error(L, "vt.client: option '%s' must not contain NUL or line breaks", key);
        copy = strndup(v, len);
        if (!copy)
            luaL_error(L, "vt.client: out of memory");
    }
    if (present)
        lua_pop(L, 1);
    return copy;
}

/* opts[key], a number within [min, max]; raises naming the option and the range
 * (NaN is outside every range). */
static double opt_number(lua_State *L, int opts, const char *key, double dflt, double min, double max)
{
    if (!opt_field(L, opts, key, LUA_TNUMBER))
        return dflt;
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= min && v <= max)) {
        char got[32], msg[160];
        if (isnan(v))
            snprintf(got, sizeof got, "NaN");
        else
            snprintf(got, sizeof got, "%g", v);
        snprintf(msg, sizeof msg, "vt.client: option '%s' must be a number from %g to %g (got %s)", key, min, max, got);
        luaL_error(L, "%s", msg);
    }
    return v;
}

static lua_Integer opt_count(lua_State *L, int opts, const char *key)
{
    if (!opt_field(L, opts, key, LUA_TNUMBER))
        return 0;
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    lua_pop(L, 1);
    if (!isint || v < 1)
        luaL_error(L, "vt.client: option '%s' must be a positive integer", key);
    return v;
}

/* requests_per_* and rate = {{n =, per =}, ...} into windows. */
static size_t read_windows(lua_State *L, int opts, vt_window *w)
{
    size_t count = 0;
    lua_Integer v;
    if ((v = opt_count(L, opts, "requests_per_minute")))
        w[count++] = (vt_window){VT_WIN_SLIDING, v, 60};
    if ((v = opt_count(L, opts, "requests_per_day")))
        w[count++] = (vt_window){VT_WIN_DAY, v, 86400};
    if ((v = opt_count(L, opts, "requests_per_month")))
        w[count++] = (vt_window){VT_WIN_MONTH, v, 0};
    if (opt_field(L, opts, "rate", LUA_TTABLE)) {
        int rate = lua_gettop(L);
        lua_Integer len = luaL_len(L, rate);
        for (lua_Integer i = 1; i <= len; i++) {
            if (lua_rawgeti(L, rate, i) != LUA_TTABLE)
                luaL_error(L, "vt.client: option 'rate' must be a list of {n = N, per = SECONDS}");
            static const char *const window_keys[] = {"n", "per", NULL};
            vt_check_option_keys(L, -1, "vt.client: rate window", window_keys);
            lua_getfield(L, -1, "n");
            lua_getfield(L, -2, "per");
            int isint;
            lua_Integer n = lua_tointegerx(L, -2, &isint);
            double per = lua_tonumber(L, -1);
            if (!isint || n < 1 || !lua_isnumber(L, -1) || !(per > 0))
                luaL_error(L, "vt.client: rate[%d] needs n (a positive integer) and per (seconds > 0)", (int)i);
            if (i > MAX_RATE_WINDOWS)
                luaL_error(L, "vt.client: at most %d rate windows", MAX_RATE_WINDOWS);
            w[count++] = (vt_window){VT_WIN_SLIDING, n, per};
            lua_pop(L, 3);
        }
        lua_pop(L, 1);
    }
    return count;
}

/* $XDG_STATE_HOME/vt (or ~/.local/state/vt) /quota-<sha256(key)[:16]>.state */
static char *default_quota_path(lua_State *L, const char *key, size_t keylen)
{
    char digest[65];
    vt_sha256_hex(key, keylen, digest);
    digest[16] = '\0';
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    lua_pushfstring(L, xdg && *xdg ? "%s/vt/quota-%s.state" : "%s/.local/state/vt/quota-%s.state",
                    xdg && *xdg ? xdg : (home && *home ? home : "/tmp"), digest);
    char *path = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return path;
}

/* ---------------------------------------------------------------- handle */

static void client_release(vt_client *c)
{
    if (c->engine) {
        vt_engine_free(c->engine);
        c->engine = NULL;
    }
    if (c->limiter) {
        vt_limiter_free(c->limiter);
        c->limiter = c->policy.limiter = NULL;
    }
    if (c->apikey) {
        memset(c->apikey, 0, c->apikey_len);
        free(c->apikey);
        c->apikey = NULL;
    }
    free(c->base_url);
    free(c->quota_path);
    free(c->transport.proxy);
    free(c->transport.cainfo);
    free(c->transport.user_agent);
    c->base_url = c->quota_path = c->transport.proxy = c->transport.cainfo = c->transport.user_agent = NULL;
}

vt_client *vt_client_check(lua_State *L, int idx)
{
    vt_client *c = luaL_checkudata(L, idx, VT_CLIENT_MT);
    if (!c->engine)
        luaL_error(L, "attempt to use a closed vt client");
    luaL_checkstack(L, 40, "vt client call"); /* the deepest method keeps ~20 values */
    return c;
}

static int client_new(lua_State *L)
{
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    vt_check_option_keys(L, 1, "vt.client", client_option_names);

    /* The handle exists (closed) before anything is acquired, so a raise
     * below leaves nothing unowned: __gc releases what was set. */
    vt_client *c = lua_newuserdatauv(L, sizeof *c, 1);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, VT_CLIENT_MT);
    int self = lua_gettop(L);

    c->apikey = opt_string(L, 1, "apikey", getenv("VT_API_KEY"));
    if (!c->apikey || !*c->apikey)
        return luaL_error(L, "vt.client: option 'apikey' is required (or set VT_API_KEY)");
    c->apikey_len = strlen(c->apikey);

    c->base_url = opt_string(L, 1, "base_url", DEFAULT_BASE_URL);
    size_t bl = strlen(c->base_url);
    while (bl > 0 && c->base_url[bl - 1] == '/')
        c->base_url[--bl] = '\0';
    if (strncmp(c->base_url, "http://", 7) != 0 && strncmp(c->base_url, "https://", 8) != 0)
        return luaL_error(L, "vt.client: option 'base_url' must start with http:// or https://");

    char *api = opt_string(L, 1, "api", "v3");
    bool api_ok = strcmp(api, "v3") == 0 || strcmp(api, "v2") == 0;
    if (api_ok)
        memcpy(c->api, api, 3);
    free(api);
    if (!api_ok)
        return luaL_error(L, "vt.client: option 'api' must be \"v3\" or \"v2\"");

    c->policy.max_wait = opt_number(L, 1, "max_wait", 60, 0, 86400);
    double retries = opt_number(L, 1, "retries", 3, 0, 100);
    if (retries != (int)retries)
        return luaL_error(L, "vt.client: option 'retries' must be a whole number from 0 to 100");
    c->policy.retries = (int)retries;
    c->policy.retry_base = opt_number(L, 1, "retry_base", 1, 0, 60);
    c->transport.timeout = opt_number(L, 1, "timeout", 60, 0.001, 86400);
    c->transport.connect_timeout = opt_number(L, 1, "connect_timeout", 10, 0.001, 86400);
    c->transport.proxy = opt_string(L, 1, "proxy", NULL);
    c->transport.cainfo = opt_string(L, 1, "cainfo", NULL);
    c->transport.user_agent = opt_string(L, 1, "user_agent", "vt-lua/" VT_VERSION);
    if (opt_field(L, 1, "insecure", LUA_TBOOLEAN)) {
        c->transport.insecure = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    int yt = lua_getfield(L, 1, "yield");
    if (yt == LUA_TFUNCTION) {
        c->mode = VT_YIELD_FN;
        lua_setiuservalue(L, self, 1);
    } else if (yt == LUA_TBOOLEAN || yt == LUA_TNIL) {
        c->mode = lua_toboolean(L, -1) ? VT_YIELD : VT_BLOCK;
        lua_pop(L, 1);
    } else
        return luaL_error(L, "vt.client: option 'yield' must be a boolean or a function (got %s)", luaL_typename(L, -1));
    c->poll_interval = opt_number(L, 1, "poll_interval", 15, 0, 86400);
    c->poll_timeout = opt_number(L, 1, "poll_timeout", 600, 0, 30 * 86400);

    c->nwin = read_windows(L, 1, c->windows);
    c->per_minute = opt_field(L, 1, "requests_per_minute", LUA_TNUMBER);
    if (c->per_minute)
        lua_pop(L, 1);

    int qt = lua_getfield(L, 1, "quota_state");
    if (qt == LUA_TSTRING) {
        size_t ql;
        const char *q = lua_tolstring(L, -1, &ql);
        if (ql == 0 || memchr(q, '\0', ql))
            return luaL_error(L, "vt.client: option 'quota_state' must be a path, or false");
        c->quota_path = strdup(q);
    } else if (qt == LUA_TNIL)
        c->quota_path = default_quota_path(L, c->apikey, c->apikey_len);
    else if (!(qt == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
        return luaL_error(L, "vt.client: option 'quota_state' must be a path (string) or false");
    lua_pop(L, 1);

    vt_err e;
    c->limiter = vt_limiter_new(c->windows, c->nwin, c->quota_path, &e);
    if (!c->limiter)
        return luaL_error(L, "vt.client: %s", e.message);
    c->policy.limiter = c->limiter;
    c->engine = vt_engine_new(&e);
    if (!c->engine)
        return luaL_error(L, "vt.client: %s", e.message);
    lua_pushvalue(L, self);
    return 1;
}

static int client_close(lua_State *L)
{
    vt_client *c = luaL_checkudata(L, 1, VT_CLIENT_MT);
    client_release(c);
    return 0;
}

static int client_tostring(lua_State *L)
{
    vt_client *c = luaL_checkudata(L, 1, VT_CLIENT_MT);
    if (!c->engine)
        lua_pushliteral(L, "vt.client (closed)");
    else
        lua_pushfstring(L, "vt.client (%s %s, %I requests) %p", c->api, c->base_url,
                        (lua_Integer)vt_engine_requests(c->engine), (void *)c);
    return 1;
}

/* ------------------------------------------------------------------ jobs */

static int job_gc(lua_State *L)
{
    vt_job_reset(luaL_checkudata(L, 1, VT_JOB_MT));
    return 0;
}

vt_job *vt_job_push(lua_State *L)
{
    vt_job *j = lua_newuserdatauv(L, sizeof *j, 1);
    vt_job_init(j);
    luaL_setmetatable(L, VT_JOB_MT);
    return j;
}

/* Duplicates a Lua string into malloc'd memory (raises on OOM before owning). */
static char *dup_or_raise(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        luaL_error(L, "out of memory");
    return d;
}

void vt_client_prepare(lua_State *L, vt_client *c, vt_job *j, const char *method, const char *path, const char *query)
{
    snprintf(j->method, sizeof j->method, "%s", method);
    bool v2 = strncmp(path, "/vtapi/v2/", 10) == 0;
    lua_pushfstring(L, "%s%s%s%s%s", c->base_url, v2 ? "" : "/api/v3", path,
                    query && *query ? "?" : "", query ? query : "");
    j->url = dup_or_raise(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    j->counts_quota = true;
    j->v2 = v2;
    /* each list node belongs to the job at once: a raise below leaks nothing */
    if (!(j->headers = curl_slist_append(NULL, "Accept: application/json")))
        luaL_error(L, "out of memory");
    if (!v2) {
        lua_pushfstring(L, "x-apikey: %s", c->apikey);
        struct curl_slist *h = curl_slist_append(j->headers, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!h)
            luaL_error(L, "out of memory");
        j->headers = h;
    }
}

vt_job *vt_job_push_timer(lua_State *L, double secs)
{
    vt_job *j = vt_job_push(L);
    j->timer = secs;
    return j;
}

#define AWAIT_MAX_JOBS 4
#define VT_AWAIT_MT "vt.await"

/* Where a suspended call keeps what it needs to go on; ctx of the continuation
 * is this userdata's stack index. It is a to-be-closed slot: a call abandoned
 * by coroutine.close (or by an error in a yield function) releases its jobs. */
typedef struct await_state {
    vt_client *client;
    int client_idx, first, n; /* n == 0: a pause, not jobs */
    bool suspended;           /* has yielded (or called the yield function) once */
    lua_KContext ctx;
    lua_KFunction then;
    vt_job *jobs[AWAIT_MAX_JOBS];
} await_state;

static bool jobs_done(lua_State *L, int first, int n)
{
    for (int i = 0; i < n; i++)
        if (((vt_job *)lua_touserdata(L, first + i))->state != VT_JOB_DONE)
            return false;
    return true;
}

/* The caller has its results: the engine need not wake anyone for these. */
static void release_jobs(lua_State *L, int first, int n)
{
    for (int i = 0; i < n; i++)
        vt_job_release(lua_touserdata(L, first + i));
}

static int await_close(lua_State *L)
{
    await_state *st = luaL_checkudata(L, 1, VT_AWAIT_MT);
    for (int i = 0; i < st->n; i++)
        vt_job_release(st->jobs[i]);
    st->n = 0;
    return 0;
}

static void submit_jobs(lua_State *L, vt_client *c, int first, int n)
{
    if (!c->engine)
        luaL_error(L, "attempt to use a closed vt client");
    for (int i = 0; i < n; i++) {
        vt_job *j = lua_touserdata(L, first + i);
        if (j->state == VT_JOB_IDLE) {
            vt_job_submit(c->engine, j, &c->transport, &c->policy);
        }
    }
}

void vt_client_run(lua_State *L, vt_client *c, int first, int n)
{
    first = lua_absindex(L, first);
    submit_jobs(L, c, first, n);
    while (!jobs_done(L, first, n))
        vt_engine_step(c->engine, 1.0);
    release_jobs(L, first, n);
}

static int await_resume(lua_State *L, int status, lua_KContext at);

/* Goes on with a suspended call: once it has been suspended and its jobs are
 * done, runs `then`; otherwise suspends it (again). A yield function that
 * returns without yielding loops here rather than recursing. */
static int await_continue(lua_State *L, int at)
{
    for (;;) {
        lua_settop(L, at); /* drops what resume or the yield function left */
        await_state *st = lua_touserdata(L, at);
        vt_client *c = st->client;
        if (!c->engine)
            return luaL_error(L, "the vt client was closed during a call");
        if (st->suspended) {
            vt_engine_step(c->engine, 0);
            if (st->n == 0 || jobs_done(L, st->first, st->n)) {
                lua_KFunction then = st->then;
                lua_KContext ctx = st->ctx;
                release_jobs(L, st->first, st->n);
                lua_settop(L, at - 1); /* closes the slot too */
                return then(L, LUA_OK, ctx);
            }
        }
        st->suspended = true;
        if (c->mode == VT_YIELD_FN) {
            lua_getiuservalue(L, st->client_idx, 1);
            lua_pushvalue(L, st->client_idx);
            lua_callk(L, 1, 0, at, await_resume);
            continue; /* it returned without yielding */
        }
        lua_pushvalue(L, st->client_idx);
        return lua_yieldk(L, 1, at, await_resume);
    }
}

static int await_resume(lua_State *L, int status, lua_KContext at)
{
    (void)status;
    return await_continue(L, (int)at);
}

bool vt_client_may_yield(lua_State *L, vt_client *c)
{
    return c->mode != VT_BLOCK && lua_isyieldable(L);
}

static int suspend_new(lua_State *L, vt_client *c, int client_idx, int first, int n, lua_KContext ctx,
                       lua_KFunction then)
{
    await_state *st = lua_newuserdatauv(L, sizeof *st, 0);
    *st = (await_state){c, client_idx, first, n, false, ctx, then, {NULL}};
    for (int i = 0; i < n; i++)
        st->jobs[i] = lua_touserdata(L, first + i);
    luaL_setmetatable(L, VT_AWAIT_MT);
    int at = lua_gettop(L);
    lua_toclose(L, at);
    return await_continue(L, at);
}

int vt_client_await(lua_State *L, vt_client *c, int client_idx, int first, int n, lua_KContext ctx,
                    lua_KFunction then)
{
    luaL_argcheck(L, n <= AWAIT_MAX_JOBS, 1, "internal: too many jobs to await");
    client_idx = lua_absindex(L, client_idx);
    first = lua_absindex(L, first);
    submit_jobs(L, c, first, n);
    if (!jobs_done(L, first, n) && vt_client_may_yield(L, c))
        return suspend_new(L, c, client_idx, first, n, ctx, then);
    vt_client_run(L, c, first, n);
    return then(L, LUA_OK, ctx);
}

int vt_client_suspend(lua_State *L, vt_client *c, int client_idx, lua_KContext ctx, lua_KFunction then)
{
    return suspend_new(L, c, lua_absindex(L, client_idx), 0, 0, ctx, then);
}

/* ----------------------------------------------------- results and errors */

static bool is_json(const vt_job *j)
{
    return strncasecmp(j->content_type, "application/json", 16) == 0;
}

/* Copies text into out with the key replaced BEFORE any cut: a key straddling
 * the cut would otherwise survive in part. Non-printable bytes become spaces. */
static void copy_redacted(lua_State *L, vt_client *c, const char *text, size_t len, char *out, size_t cap)
{
    lua_pushlstring(L, text, len);
    lua_pushlstring(L, c->apikey, c->apikey_len);
    const char *clean = luaL_gsub(L, lua_tostring(L, -2), lua_tostring(L, -1), "***");
    size_t n = 0;
    for (; clean[n] && n + 1 < cap; n++)
        out[n] = ((unsigned char)clean[n] >= 32 && clean[n] != 127) ? clean[n] : ' ';
    out[n] = '\0';
    lua_pop(L, 3);
}

void vt_client_redacted_message(lua_State *L, vt_client *c, int idx, vt_err *e)
{
    size_t len;
    const char *m = lua_tolstring(L, idx, &len);
    copy_redacted(L, c, m, len, e->message, sizeof e->message);
}

/* The service's code for an HTTP status, for errors that came without one
 * (v2 answers by status alone; proxies answer in HTML). */
static const char *code_for_status(long status)
{
    switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationRequiredError";
    case 403: return "ForbiddenError";
    case 404: return "NotFoundError";
    case 409: return "AlreadyExistsError";
    case 413: return "TooLarge";
    case 424: return "FailedDependencyError";
    case 429: return "TooManyRequestsError";
    case 504: return "DeadlineExceededError";
    default: return status >= 500 ? "TransientError" : "BadRequestError";
    }
}

bool vt_client_job_error(lua_State *L, vt_client *c, vt_job *j, vt_err *e)
{
    if (j->err.code[0]) {
        *e = j->err;
    } else if (j->status >= 200 && j->status < 300 && !(j->v2 && j->status == 204)) {
        if (j->sink == VT_SINK_FILE || is_json(j) || j->resp_len == 0)
            return false;
        vt_err_set(e, "InvalidResponse", "expected JSON from %s, got '%s' (HTTP %ld)",
                   j->v2 ? "v2" : "v3", j->content_type[0] ? j->content_type : "no Content-Type", j->status);
        e->http = j->status;
    } else if (j->v2 && j->status == 204) {
        vt_err_set(e, "QuotaExceededError", "v2 request rate or quota exceeded (HTTP 204)");
        e->http = 204;
    } else {
        char excerpt[161];
        vt_err_set(e, code_for_status(j->status), "HTTP %ld", j->status);
        if (is_json(j) && j->resp_len > 0) {
            vt_err jerr;
            int top = lua_gettop(L);
            if (vt_json_decode(L, j->resp, j->resp_len, &jerr) && lua_istable(L, -1) &&
                lua_getfield(L, -1, "error") == LUA_TTABLE) {
                if (lua_getfield(L, -1, "code") == LUA_TSTRING)
                    snprintf(e->code, sizeof e->code, "%s", lua_tostring(L, -1));
                if (lua_getfield(L, -2, "message") == LUA_TSTRING)
                    vt_client_redacted_message(L, c, -1, e);
            }
            lua_settop(L, top);
        } else if (j->resp_len > 0) {
            /* the whole (bounded) body is redacted, then cut */
            size_t scan = j->resp_len < 4096 + c->apikey_len ? j->resp_len : 4096 + c->apikey_len;
            copy_redacted(L, c, j->resp, scan, excerpt, sizeof excerpt);
            snprintf(e->message, sizeof e->message, "HTTP %ld: %s", j->status, excerpt);
        }
        e->http = j->status;
    }
    if (!j->err.code[0] && j->retry_after_hdr >= 0 && e->http >= 400)
        e->retry_after = j->retry_after_hdr;
    if (j->v2 && j->status == 204 && j->retry_after_hdr >= 0)
        e->retry_after = j->retry_after_hdr;
    vt_redact(e->message, sizeof e->message, c->apikey, c->apikey_len);
    return true;
}

int vt_client_result(lua_State *L, vt_client *c, vt_job *j)
{
    vt_err e;
    if (vt_client_job_error(L, c, j, &e))
        return vt_err_return(L, &e);
    if (j->resp_len == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (!vt_json_decode(L, j->resp, j->resp_len, &e)) {
        e.http = j->status;
        return vt_err_return(L, &e);
    }
    return 1;
}

int vt_client_data_result(lua_State *L, vt_client *c, vt_job *j, bool keep_meta)
{
    if (vt_client_result(L, c, j) == 2)
        return 2;
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "data") == LUA_TNIL) {
        vt_err e;
        vt_err_set(&e, "InvalidResponse", "the answer has no 'data' member");
        e.http = j->status;
        return vt_err_return(L, &e);
    }
    if (keep_meta && lua_istable(L, -1)) {
        lua_getfield(L, -2, "meta");
        lua_setfield(L, -2, "meta");
    }
    lua_remove(L, -2); /* the body */
    return 1;
}

/* -------------------------------------------------------------- look-ups */

static int lookup_done(lua_State *L, int status, lua_KContext kind)
{
    vt_client *c = vt_client_check(L, 1);
    return vt_client_data_result(L, c, lua_touserdata(L, -1), kind == VT_KIND_ANALYSIS);
}

static int lookup(lua_State *L, vt_kind kind)
{
    vt_client *c = vt_client_check(L, 1);
    vt_err e;
    if (!vt_push_object_path(L, kind, 2, &e))
        return vt_err_return(L, &e);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
    return vt_client_await(L, c, 1, -1, 1, kind, lookup_done);
}

static int client_file(lua_State *L) { return lookup(L, VT_KIND_FILE); }
static int client_url(lua_State *L) { return lookup(L, VT_KIND_URL); }
static int client_domain(lua_State *L) { return lookup(L, VT_KIND_DOMAIN); }
static int client_ip(lua_State *L) { return lookup(L, VT_KIND_IP); }
static int client_analysis(lua_State *L) { return lookup(L, VT_KIND_ANALYSIS); }

/* The host-loop interface, after cqueues: a host polls pollfd() for events()
 * with timeout(), then calls step(). */
static int client_pollfd(lua_State *L)
{
    lua_pushinteger(L, vt_engine_fd(vt_client_check(L, 1)->engine));
    return 1;
}

static int client_events(lua_State *L)
{
    vt_client_check(L, 1);
    lua_pushliteral(L, "r"); /* the epoll fd turns readable when any transfer has I/O */
    return 1;
}

static int client_timeout(lua_State *L)
{
    double t = vt_engine_timeout(vt_client_check(L, 1)->engine);
    if (t < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, t);
    return 1;
}

/* Does what is ready (waiting at most `timeout` seconds, 0 by default) and
 * returns the number of requests, timers and quota waits still pending. */
static int client_step(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    double wait = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, wait >= 0, 2, "timeout must be >= 0");
    lua_pushinteger(L, vt_engine_step(c->engine, wait));
    return 1;
}

static int client_quota_status(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_err e;
    if (!vt_limiter_push_status(L, c->limiter, vt_now(), &e))
        return vt_err_return(L, &e);
    return 1;
}

/* Pushes a proxy URL with the password of its user part replaced by "***". */
static void push_redacted_proxy(lua_State *L, const char *proxy)
{
    const char *auth = strstr(proxy, "://");
    auth = auth ? auth + 3 : proxy;
    size_t authority = strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', authority);
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) {
        lua_pushstring(L, proxy);
        return;
    }
    lua_pushfstring(L, "%s***%s", lua_pushlstring(L, proxy, (size_t)(colon + 1 - proxy)), at);
    lua_remove(L, -2);
}

static void set_string_field(lua_State *L, const char *key, const char *value)
{
    if (value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

static void set_number_field(lua_State *L, const char *key, double value)
{
    lua_Integer i;
    if (lua_numbertointeger(value, &i) && (double)i == value)
        lua_pushinteger(L, i);
    else
        lua_pushnumber(L, value);
    lua_setfield(L, -2, key);
}

/* c:options(): the client's effective options, every default filled in, without
 * the key (and without a proxy password), so the playbook layers follow the
 * client and a user can see what a client does. */
static int client_options(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_createtable(L, 0, 24);
    set_string_field(L, "api", c->api);
    set_string_field(L, "base_url", c->base_url);
    lua_createtable(L, (int)c->nwin, 0);
    lua_Integer rates = 0;
    for (size_t i = 0; i < c->nwin; i++) {
        const vt_window *w = &c->windows[i];
        if (i == 0 && c->per_minute)
            lua_pushinteger(L, (lua_Integer)w->n), lua_setfield(L, -3, "requests_per_minute");
        else if (w->kind == VT_WIN_DAY)
            lua_pushinteger(L, (lua_Integer)w->n), lua_setfield(L, -3, "requests_per_day");
        else if (w->kind == VT_WIN_MONTH)
            lua_pushinteger(L, (lua_Integer)w->n), lua_setfield(L, -3, "requests_per_month");
        else {
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, (lua_Integer)w->n);
            lua_setfield(L, -2, "n");
            set_number_field(L, "per", w->per);
            lua_rawseti(L, -2, ++rates);
        }
    }
    if (rates > 0)
        lua_setfield(L, -2, "rate");
    else
        lua_pop(L, 1);
    if (c->quota_path)
        lua_pushstring(L, c->quota_path);
    else
        lua_pushboolean(L, 0);
    lua_setfield(L, -2, "quota_state");
    set_number_field(L, "max_wait", c->policy.max_wait);
    set_number_field(L, "timeout", c->transport.timeout);
    set_number_field(L, "connect_timeout", c->transport.connect_timeout);
    lua_pushinteger(L, c->policy.retries);
    lua_setfield(L, -2, "retries");
    set_number_field(L, "retry_base", c->policy.retry_base);
    if (c->transport.proxy) {
        push_redacted_proxy(L, c->transport.proxy);
        lua_setfield(L, -2, "proxy");
    }
    set_string_field(L, "cainfo", c->transport.cainfo);
    lua_pushboolean(L, c->transport.insecure);
    lua_setfield(L, -2, "insecure");
    set_string_field(L, "user_agent", c->transport.user_agent);
    set_number_field(L, "poll_interval", c->poll_interval);
    set_number_field(L, "poll_timeout", c->poll_timeout);
    if (c->mode == VT_YIELD_FN)
        lua_getiuservalue(L, 1, 1);
    else
        lua_pushboolean(L, c->mode == VT_YIELD);
    lua_setfield(L, -2, "yield");
    return 1;
}

/* c:cache_stats(): what the response cache did, and the API requests this client
 * has sent (each attempt that took a quota slot). */
static int client_cache_stats(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    static const char *const counters[] = {"hits", "misses", "stores", "coalesced", "errors", NULL};
    lua_createtable(L, 0, 7);
    lua_pushliteral(L, "none");
    lua_setfield(L, -2, "backend");
    for (int i = 0; counters[i]; i++) {
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, counters[i]);
    }
    lua_pushinteger(L, (lua_Integer)vt_engine_requests(c->engine));
    lua_setfield(L, -2, "requests");
    return 1;
}

void vt_client_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"file", client_file},
        {"url", client_url},
        {"domain", client_domain},
        {"ip", client_ip},
        {"analysis", client_analysis},
        {"quota_status", client_quota_status},
        {"options", client_options},
        {"cache_stats", client_cache_stats},
        {"pollfd", client_pollfd},
        {"events", client_events},
        {"timeout", client_timeout},
        {"step", client_step},
        {"close", client_close},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, VT_CLIENT_MT)) {
        lua_pushcfunction(L, client_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, client_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, client_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, methods);
        vt_calls_register(L);
        vt_feed_register(L);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, VT_JOB_MT)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, VT_AWAIT_MT)) {
        lua_pushcfunction(L, await_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, client_new);
    lua_setfield(L, -2, "client");
}
