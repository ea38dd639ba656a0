/* vt.client: the options, the handle (close/__gc/__close/__tostring), what
 * the client tells about itself (c:options, c:quota_status, c:cache_stats),
 * and the method table every client file adds its methods to. */

/*** @module vt */
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

/* --------------------------------------------------------------- options */

static const char *const client_option_names[] = {
    "apikey", "base_url", "api", "requests_per_minute", "requests_per_day", "requests_per_month",
    "rate", "quota_state", "max_wait", "timeout", "connect_timeout", "retries", "proxy", "cainfo",
    "insecure", "user_agent", "poll_interval", "poll_timeout", "yield", "retry_base",
    "cache", "cache_ttl", "cache_max_bytes", NULL,
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
            vt_raise_oom(L, "copying the client's options");
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
    /* after the engine: its jobs give their in-flight markers up through the cache */
    vt_cache_free(c->policy.cache);
    vt_redis_limiter_free(c->policy.redis_limiter);
    c->policy.cache = NULL;
    c->policy.redis_limiter = NULL;
    if (c->limiter) {
        vt_limiter_free(c->limiter);
        c->limiter = c->policy.limiter = NULL;
    }
    if (c->apikey) {
        memset(c->apikey, 0, c->apikey_len);
        free(c->apikey);
        c->apikey = NULL;
    }
    for (struct curl_slist *h = c->v3_headers; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data)); /* the key's header */
    curl_slist_free_all(c->v3_headers);
    curl_slist_free_all(c->v2_headers);
    c->v3_headers = c->v2_headers = NULL;
    free(c->base_url);
    free(c->quota_path);
    if (c->transport.proxy)
        explicit_bzero(c->transport.proxy, strlen(c->transport.proxy)); /* may hold a password */
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

/***
A client of the VirusTotal API (v3, and legacy v2), with its own transfer engine and a rate
limiter shared by every process using the same key. The options are in the README (Client
options, Cache); an unknown option, a wrong type or a value out of range raises naming the option.
`quota_state` may be `"redis://..."`: the windows then live in Redis for every host (one atomic
script, Redis' clock; Redis unreachable means `QuotaStateError` and no request). The response
cache's options:

- `cache`: `false` (default), `true` (SQLite at `$XDG_CACHE_HOME/vt/cache.sqlite`, else
  `~/.cache/vt/cache.sqlite`; the directory is made 0700, the file 0600), `"sqlite:PATH"` or
  `"redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]"`. Look-ups (`c:file`, `c:url`, `c:domain`,
  `c:ip`, `c:analysis`, `c:batch`, `c:each`, v2 reports) are answered from it when it holds a
  fresh answer: no request, no quota slot. Identical look-ups in flight share one request, in
  this client and, through the cache, across processes.
- `cache_ttl`: seconds an entry is used, a number for every kind or
  `{file =, url =, domain =, ip =, analysis =, not_found =}` (defaults 3600, 3600, 3600, 3600,
  30 days for completed analyses, 600 for NotFound answers).
- `cache_max_bytes`: the SQLite cache's size (default 256 MiB); the least recently used
  entries go first.
@function client
@tparam table opts `apikey` (else `VT_API_KEY`), `base_url`, `api` (`"v3"` or `"v2"`),
`requests_per_minute`, `requests_per_day`, `requests_per_month`, `rate`, `quota_state`,
`max_wait`, `timeout`, `connect_timeout` (also the longest wait for Redis), `retries`, `retry_base`,
`proxy`, `cainfo`, `insecure`, `user_agent`, `poll_interval`, `poll_timeout`, `yield`, `cache`,
`cache_ttl`, `cache_max_bytes`
@treturn client the client (a to-be-closed value; closed when collected)
@raise on a missing key, an unknown option, a wrong type or a value out of range, or when the
limiter's state file cannot be used
@usage local c <close> = vt.client{apikey = os.getenv("VT_API_KEY"), cache = true,
                                quota_state = "redis://:pw@10.0.0.5/2"}
*/
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

    vt_err e;
    c->engine = vt_engine_new(&e);
    if (!c->engine)
        return luaL_error(L, "vt.client: %s", e.message);
    int qt = lua_getfield(L, 1, "quota_state");
    if (qt == LUA_TSTRING && strncmp(lua_tostring(L, -1), "redis://", 8) == 0) {
        c->policy.redis_limiter = vt_redis_limiter_new(c->engine, lua_tostring(L, -1), c->windows, c->nwin, c->apikey,
                                                       c->apikey_len, c->transport.connect_timeout, &e);
        if (!c->policy.redis_limiter)
            return luaL_error(L, "vt.client: option 'quota_state': %s", e.message);
    } else if (qt == LUA_TSTRING) {
        size_t ql;
        const char *q = lua_tolstring(L, -1, &ql);
        if (ql == 0 || memchr(q, '\0', ql))
            return luaL_error(L, "vt.client: option 'quota_state' must be a path, or false");
        c->quota_path = strdup(q);
    } else if (qt == LUA_TNIL)
        c->quota_path = default_quota_path(L, c->apikey, c->apikey_len);
    else if (!(qt == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
        return luaL_error(L, "vt.client: option 'quota_state' must be a path (string), \"redis://...\" or false");
    lua_pop(L, 1);

    lua_pushfstring(L, "x-apikey: %s", c->apikey);
    if (!(c->v2_headers = curl_slist_append(NULL, "Accept: application/json")) ||
        !(c->v3_headers = curl_slist_append(NULL, "Accept: application/json")) ||
        !curl_slist_append(c->v3_headers, lua_tostring(L, -1))) {
        lua_pop(L, 1);
        return vt_raise_oom(L, "creating the client");
    }
    lua_pop(L, 1);

    if (!c->policy.redis_limiter) {
        c->limiter = vt_limiter_new(c->windows, c->nwin, c->quota_path, &e);
        if (!c->limiter)
            return luaL_error(L, "vt.client: %s", e.message);
        c->policy.limiter = c->limiter;
    }
    c->policy.cache = vt_cache_open(L, 1, c->base_url, c->engine, c->transport.connect_timeout);
    lua_pushvalue(L, self);
    return 1;
}

/*** A client: `vt.client(opts)` makes one. Every method but `close` raises on a closed client.
A failure returns `nil` and the error value (README: Errors); a wrong type raises.
@type client
*/

/***
Closes the client: transfers still running fail with `ConnectionError`, its cache and Redis
connections close after writing what they still hold. The client's own copies of the key (its
string and the v3 `x-apikey` header) and of the proxy and Redis passwords are overwritten before
they are freed; copies in Lua strings (the options table, the v2 parameters and header strings
made for requests) are not: Lua's collector frees them in its time, as it does any string.
Closing twice is fine; also done by `__close` and `__gc`.
@function client:close
*/
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


/***
What the limiter knows now, read from the shared state: the state file, or Redis (with
`quota_state = "redis://..."`, shared by every host).
@function client:quota_status
@treturn[1] table `windows` (a list of `{kind, n, per, used, next_slot_in}`), `blocked_until`
(when the service said the quota is spent), `path` (the shared state file, if any) or `url` (the
Redis, without its password)
@treturn[2] nil
@treturn[2] table the error value (`QuotaStateError`)
*/
static int client_quota_status(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    if (c->policy.redis_limiter)
        return vt_client_redis_quota_status(L, c);
    vt_err e;
    if (vt_limiter_push_status(L, c->limiter, vt_now(), &e) != 0)
        return vt_err_return(L, &e);
    return 1;
}

/* Pushes a proxy URL with its password replaced by "***". */
static void push_redacted_proxy(lua_State *L, const char *proxy)
{
    size_t len;
    const char *password = vt_proxy_password(proxy, &len);
    if (!password) {
        lua_pushstring(L, proxy);
        return;
    }
    lua_pushlstring(L, proxy, (size_t)(password - proxy));
    lua_pushliteral(L, "***");
    lua_pushstring(L, password + len);
    lua_concat(L, 3);
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

/***
The client's effective options, every default filled in, without the key (and with a proxy's
or Redis' password as `***`; `cache` as `"sqlite:PATH"`, `"redis://..."` or `false`, `cache_ttl` a
table of every kind): so the playbook layers follow the client, and a user can see what it does.
@function client:options
@treturn table the options, as `vt.client` takes them
*/
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
    if (c->policy.redis_limiter)
        lua_pushstring(L, vt_redis_limiter_name(c->policy.redis_limiter));
    else if (c->quota_path)
        lua_pushstring(L, c->quota_path);
    else
        lua_pushboolean(L, 0);
    lua_setfield(L, -2, "quota_state");
    vt_cache_push_options(L, c->policy.cache);
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

/***
What the response cache did, and the API requests this client has sent.
@function client:cache_stats
@treturn table `backend` (`"none"`, `"sqlite"` or `"redis"`), `hits` (look-ups answered from the
cache), `misses` (ones it had no fresh answer for), `stores` (answers written), `coalesced`
(look-ups that shared another's request: in this client, or another process's found in flight),
`errors` (times the cache failed and was skipped), and `requests` (every attempt that took a
quota slot, retries included)
*/
static int client_cache_stats(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_cache_push_stats(L, c->policy.cache, vt_engine_requests(c->engine));
    return 1;
}

void vt_client_open(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"quota_status", client_quota_status},
        {"options", client_options},
        {"cache_stats", client_cache_stats},
        {"close", client_close},
        {NULL, NULL},
    };
    static const luaL_Reg meta[] = {
        {"__gc", client_close}, {"__close", client_close}, {"__tostring", client_tostring}, {NULL, NULL}};
    if (luaL_newmetatable(L, VT_CLIENT_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        vt_lookups_register(L);
        vt_request_register(L);
        vt_submit_register(L);
        vt_contribute_register(L);
        vt_wait_register(L);
        vt_download_register(L);
        vt_collections_register(L);
        vt_v2_register(L);
        vt_await_register(L);
        vt_feed_register(L);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, client_new);
    lua_setfield(L, -2, "client");
}
