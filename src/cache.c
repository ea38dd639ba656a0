/* The response cache (SPEC 7): its options, the keys of look-ups, what is
 * stored and when, and c:cache_stats. An entry's bytes are a frame
 * (cache_frame.c); the backends are in cache_sqlite.c and cache_redis.c
 * (cache.h); the engine consults the cache before the limiter and shares
 * requests in flight (job.c).
 *
 * Keys. "<scope>:<path>": the scope is a digest of base_url (entries are the
 * service's objects, shared by every key on one base_url); the path is the
 * object's API path as the look-up normalised it ("/files/<hash>", "/urls/<id>",
 * ...), or "v2/<endpoint>/<resource>" for v2 reports. An answer is stored under
 * its object's own key (a file's sha256, a URL's sha256 id) and found by its
 * aliases: the key asked for, a file's other hashes, the id of a URL's
 * canonical form.
 *
 * A reader checks an entry's frame, then the decoded body's shape; a corrupt
 * entry is dropped and the look-up asks the service. */
#include "cache.h"
#include "redis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define DEFAULT_MAX_BYTES (256LL * 1024 * 1024)
#define MAX_TTL (10 * 365 * 86400.0)
#define MAX_ALIASES 4

struct vt_cache {
    const vt_cache_backend *ops; /* NULL: no backend ("none") */
    void *be;
    vt_cache_stats stats;
    double ttl[VT_TTL_COUNT];
    int64_t max_bytes;
    char scope[17];              /* digest of base_url */
    char *shown;                 /* the option as c:options shows it (no password) */
    char token_prefix[32];       /* owner names of this cache's markers */
    uint64_t tokens;
};

static const double default_ttl[VT_TTL_COUNT] = {3600, 3600, 3600, 3600, 30 * 86400.0, 600};
static const char *const ttl_names[] = {"file", "url", "domain", "ip", "analysis", "not_found", NULL};
/* data.type of each kind's objects */
static const char *const object_types[] = {"file", "url", "domain", "ip_address", "analysis"};

vt_cache_stats *vt_cache_counters(vt_cache *c) { return &c->stats; }

bool vt_cache_active(const vt_cache *c) { return c->ops != NULL; }

/* ------------------------------------------------------------ the engine side */

static const char *new_token(vt_cache *c, vt_job *j)
{
    snprintf(j->cache.token, sizeof j->cache.token, "%s-%llu", c->token_prefix, (unsigned long long)++c->tokens);
    return j->cache.token;
}

void vt_cache_fetch(vt_cache *c, vt_job *j)
{
    bool want_entry = j->cache.read && !j->cache.skip_entry;
    double max_age = j->cache.max_age >= 0 ? j->cache.max_age : c->ttl[j->cache.kind];
    double max_age_negative = j->cache.max_age >= 0 ? j->cache.max_age : c->ttl[VT_TTL_NOT_FOUND];
    c->ops->fetch(c->be, c, j, want_entry, max_age, max_age_negative, j->cache.probe ? NULL : new_token(c, j));
}

void vt_cache_refresh(vt_cache *c, vt_job *j)
{
    c->ops->refresh(c->be, c, j->cache.key, j->cache.token);
}

void vt_cache_release(vt_cache *c, vt_job *j)
{
    c->ops->release(c->be, c, j->cache.key, j->cache.token);
}

bool vt_cache_answer(vt_cache *c, vt_job *j, vt_fetch fetched, const char *frame, size_t len, const char *name)
{
    long status = 0;
    const char *body = NULL;
    size_t body_len = 0;
    bool corrupt = fetched == VT_FETCH_HIT && !vt_cache_frame_open(frame, len, name, &status, &body, &body_len);
    vt_job_cache_answer(j, corrupt ? VT_FETCH_CORRUPT : fetched, status, body, body_len);
    return corrupt;
}

/* ---------------------------------------------------------------- options */

static double ttl_value(lua_State *L, int idx, const char *name)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "vt.client: option 'cache_ttl'%s%s must be a number of seconds (got %s)", name ? "." : "",
                   name ? name : "", luaL_typename(L, idx));
    double v = lua_tonumber(L, idx);
    if (!(v >= 0 && v <= MAX_TTL))
        luaL_error(L, "vt.client: option 'cache_ttl'%s%s must be from 0 to %d seconds", name ? "." : "",
                   name ? name : "", (int)MAX_TTL);
    return v;
}

static void read_ttl(lua_State *L, int opts, vt_cache *c)
{
    memcpy(c->ttl, default_ttl, sizeof c->ttl);
    int t = lua_getfield(L, opts, "cache_ttl");
    if (t == LUA_TNUMBER) {
        double v = ttl_value(L, -1, NULL);
        for (int i = 0; i < VT_TTL_COUNT; i++)
            c->ttl[i] = v;
    } else if (t == LUA_TTABLE) {
        vt_check_option_keys(L, -1, "vt.client: cache_ttl", ttl_names);
        for (int i = 0; i < VT_TTL_COUNT; i++) {
            if (lua_getfield(L, -1, ttl_names[i]) != LUA_TNIL)
                c->ttl[i] = ttl_value(L, -1, ttl_names[i]);
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL)
        luaL_error(L, "vt.client: option 'cache_ttl' must be a number or a table (got %s)", luaL_typename(L, -1));
    lua_pop(L, 1);
}

static void read_max_bytes(lua_State *L, int opts, vt_cache *c)
{
    c->max_bytes = DEFAULT_MAX_BYTES;
    int t = lua_getfield(L, opts, "cache_max_bytes");
    if (t != LUA_TNIL) {
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER)
            luaL_error(L, "vt.client: option 'cache_max_bytes' must be a number (got %s)", luaL_typename(L, -1));
        if (!isint || v < 4096 || v > ((lua_Integer)1 << 50))
            luaL_error(L, "vt.client: option 'cache_max_bytes' must be a whole number of bytes from 4096 to 2^50");
        c->max_bytes = v;
    }
    lua_pop(L, 1);
}

/* $XDG_CACHE_HOME/vt/cache.sqlite, else ~/.cache/vt/cache.sqlite, pushed. */
static void push_default_path(lua_State *L)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        lua_pushfstring(L, "%s/vt/cache.sqlite", xdg);
    else
        lua_pushfstring(L, "%s/.cache/vt/cache.sqlite", home && *home ? home : "/tmp");
}

static char *dup_or_raise(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (!d)
        vt_raise_oom(L, "opening the cache");
    return d;
}

/* Opens the backend the option at the top names (and pops it). */
static void open_backend(lua_State *L, vt_cache *c, vt_engine *eng, double timeout)
{
    int t = lua_type(L, -1);
    if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        lua_pop(L, 1);
        return;
    }
    const char *path = NULL;
    if (t == LUA_TBOOLEAN) {
        push_default_path(L);
        path = lua_tostring(L, -1);
    } else if (t == LUA_TSTRING && strncmp(lua_tostring(L, -1), "sqlite:", 7) == 0 && lua_rawlen(L, -1) > 7 &&
               strlen(lua_tostring(L, -1)) == lua_rawlen(L, -1))
        path = lua_tostring(L, -1) + 7;
    else if (t == LUA_TSTRING && strncmp(lua_tostring(L, -1), "redis://", 8) == 0) {
        vt_err e;
        vt_redis *r = vt_redis_new(eng, lua_tostring(L, -1), timeout, &e);
        if (!r)
            luaL_error(L, "vt.client: option 'cache': %s", e.message);
        c->be = vt_cache_redis_new(r, c);
        if (!c->be) {
            vt_redis_free(r);
            vt_raise_oom(L, "opening the cache");
        }
        c->ops = &vt_cache_redis;
        c->shown = dup_or_raise(L, vt_redis_name(r));
        lua_pop(L, 1);
        return;
    } else
        luaL_error(L, "vt.client: option 'cache' must be false, true, \"sqlite:PATH\" or "
                      "\"redis://[:PASSWORD@]HOST[:PORT][/DB]\" (got %s)", luaL_typename(L, -1));
    c->be = vt_cache_sqlite_new(path, c->max_bytes);
    if (!c->be)
        vt_raise_oom(L, "opening the cache");
    c->ops = &vt_cache_sqlite;
    lua_pushfstring(L, "sqlite:%s", path);
    c->shown = dup_or_raise(L, lua_tostring(L, -1));
    lua_pop(L, t == LUA_TBOOLEAN ? 3 : 2);
}

static void cache_release(vt_cache *c)
{
    if (c->ops)
        c->ops->free(c->be);
    free(c->shown);
    free(c);
}

#define VT_CACHE_MT "vt.cache.opening"

static int opening_gc(lua_State *L)
{
    vt_cache **slot = lua_touserdata(L, 1);
    if (*slot)
        cache_release(*slot);
    *slot = NULL;
    return 0;
}

vt_cache *vt_cache_open(lua_State *L, int opts, const char *base_url, vt_engine *eng, double timeout)
{
    opts = lua_absindex(L, opts);
    /* owned by a userdata until it is whole, so that a raise leaks nothing */
    vt_cache **slot = lua_newuserdatauv(L, sizeof *slot, 0);
    *slot = calloc(1, sizeof **slot);
    if (luaL_newmetatable(L, VT_CACHE_MT)) {
        lua_pushcfunction(L, opening_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    vt_cache *c = *slot;
    if (!c)
        vt_raise_oom(L, "opening the cache");
    char digest[65];
    vt_sha256_hex(base_url, strlen(base_url), digest);
    memcpy(c->scope, digest, 16);
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (uint64_t)(vt_now() * 1e9) ^ (uint64_t)(uintptr_t)c;
    snprintf(c->token_prefix, sizeof c->token_prefix, "%ld-%016llx", (long)getpid(), (unsigned long long)rnd);
    read_ttl(L, opts, c);
    read_max_bytes(L, opts, c);
    lua_getfield(L, opts, "cache");
    open_backend(L, c, eng, timeout);
    *slot = NULL;
    lua_pop(L, 1);
    return c;
}

void vt_cache_free(vt_cache *c)
{
    if (c)
        cache_release(c);
}

double vt_cache_max_age(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return -1;
    int t = lua_getfield(L, idx, "max_age");
    double v = lua_tonumber(L, -1);
    if (t != LUA_TNIL && (t != LUA_TNUMBER || !(v >= 0 && v <= MAX_TTL)))
        luaL_error(L, "option 'max_age' must be a number of seconds from 0 to %d", (int)MAX_TTL);
    lua_pop(L, 1);
    return t == LUA_TNIL ? -1 : v;
}

void vt_cache_push_options(lua_State *L, vt_cache *c)
{
    if (c->shown)
        lua_pushstring(L, c->shown);
    else
        lua_pushboolean(L, 0);
    lua_setfield(L, -2, "cache");
    lua_createtable(L, 0, VT_TTL_COUNT);
    for (int i = 0; i < VT_TTL_COUNT; i++) {
        lua_Integer whole;
        if (lua_numbertointeger(c->ttl[i], &whole) && (double)whole == c->ttl[i])
            lua_pushinteger(L, whole);
        else
            lua_pushnumber(L, c->ttl[i]);
        lua_setfield(L, -2, ttl_names[i]);
    }
    lua_setfield(L, -2, "cache_ttl");
    lua_pushinteger(L, (lua_Integer)c->max_bytes);
    lua_setfield(L, -2, "cache_max_bytes");
}

void vt_cache_push_stats(lua_State *L, vt_cache *c, uint64_t requests)
{
    lua_createtable(L, 0, 7);
    lua_pushstring(L, c->ops ? c->ops->name : "none");
    lua_setfield(L, -2, "backend");
    const struct {
        const char *name;
        uint64_t value;
    } counters[] = {{"hits", c->stats.hits},           {"misses", c->stats.misses}, {"stores", c->stats.stores},
                    {"coalesced", c->stats.coalesced}, {"errors", c->stats.errors}, {"requests", requests}};
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
        lua_pushinteger(L, (lua_Integer)counters[i].value);
        lua_setfield(L, -2, counters[i].name);
    }
}

/* ------------------------------------------------------------------- keys */

/* Makes key (owned from now on; NULL when short of memory: an ordinary request) j's. */
static bool install_key(vt_job *j, char *key, int kind, double max_age)
{
    if (!key)
        return false;
    free(j->cache.key);
    j->cache.key = key;
    j->cache.kind = kind;
    j->cache.max_age = max_age;
    j->cache.read = max_age != 0;
    return true;
}

static void set_key(vt_cache *c, vt_job *j, int kind, const char *path, size_t path_len, double max_age)
{
    size_t len = sizeof c->scope + path_len + 1;
    char *key = malloc(len);
    if (key)
        snprintf(key, len, "%s:%.*s", c->scope, (int)path_len, path);
    install_key(j, key, kind, max_age);
}

void vt_cache_key(vt_cache *c, vt_job *j, vt_kind kind, const char *path, double max_age)
{
    set_key(c, j, kind, path, strlen(path), max_age);
}

void vt_cache_key_page(vt_cache *c, vt_job *j, vt_kind kind, const char *path, long long limit,
                       const char *cursor)
{
    /* the query in one order, whatever order the request's has */
    size_t len = sizeof c->scope + strlen(path) + (cursor ? strlen(cursor) : 0) + 48;
    char *key = malloc(len);
    if (key)
        snprintf(key, len, "%s:%s?limit=%lld&cursor=%s", c->scope, path, limit, cursor ? cursor : "");
    j->cache.page = install_key(j, key, kind, -1);
}

/* The v2 reports a look-up may be: each names its object by one parameter. */
static const struct {
    const char *endpoint, *param;
    vt_kind kind;
} v2_reports[] = {{"file/report", "resource", VT_KIND_FILE},
                  {"url/report", "resource", VT_KIND_URL},
                  {"domain/report", "domain", VT_KIND_DOMAIN},
                  {"ip-address/report", "ip", VT_KIND_IP}};

/* The variants of a v2 report, by the parameters that change its body. */
static const char *const v2_variants[] = {"", "+allinfo"};

/* The variant the parameters at params ask for (besides the resource, named param),
 * or NULL when they make the request no look-up: a URL report that may submit (scan),
 * any parameter the variants do not tell apart. */
static const char *v2_variant(lua_State *L, int params, const char *param)
{
    const char *variant = v2_variants[0];
    lua_pushnil(L);
    while (lua_next(L, params)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        const char *value = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : "";
        lua_pop(L, 1);
        if (strcmp(name, param) == 0 || strcmp(name, "apikey") == 0 || (strcmp(name, "scan") == 0 && strcmp(value, "0") == 0))
            continue;
        if (strcmp(name, "allinfo") == 0 && (strcmp(value, "1") == 0 || strcmp(value, "true") == 0)) {
            variant = v2_variants[1];
            continue;
        }
        lua_pop(L, 1);
        return NULL;
    }
    return variant;
}

/* A v2 scan id, "<sha256>-<epoch>": the report of one scan. */
static bool is_scan_id(const char *s, size_t len)
{
    size_t hex = strspn(s, "0123456789abcdefABCDEF");
    return hex == 64 && hex + 1 < len && s[hex] == '-' && strspn(s + hex + 1, "0123456789") == len - hex - 1;
}

bool vt_cache_push_v2_path(lua_State *L, const char *endpoint, int params, int idx)
{
    idx = lua_absindex(L, idx);
    params = lua_absindex(L, params);
    for (size_t i = 0; i < sizeof v2_reports / sizeof *v2_reports; i++) {
        if (strcmp(endpoint, v2_reports[i].endpoint) != 0)
            continue;
        size_t len;
        const char *resource = lua_tolstring(L, idx, &len);
        const char *variant = v2_variant(L, params, v2_reports[i].param);
        vt_err e;
        if (!variant || is_scan_id(resource, len) || vt_push_object_id(L, v2_reports[i].kind, idx, &e) != 0)
            return false;
        lua_pushfstring(L, "v2/%s%s/%s", endpoint, variant, lua_tostring(L, -1));
        lua_remove(L, -2);
        return true;
    }
    return false;
}

void vt_cache_key_v2(lua_State *L, vt_cache *c, vt_job *j, const char *endpoint, int params)
{
    params = lua_absindex(L, params);
    for (size_t i = 0; i < sizeof v2_reports / sizeof *v2_reports; i++) {
        if (strcmp(endpoint, v2_reports[i].endpoint) != 0)
            continue;
        int top = lua_gettop(L);
        /* a batch (several resources) is no look-up */
        if (lua_getfield(L, params, v2_reports[i].param) == LUA_TSTRING &&
            !strpbrk(lua_tostring(L, -1), v2_reports[i].kind == VT_KIND_URL ? "\n" : ",") &&
            vt_cache_push_v2_path(L, endpoint, params, -1)) {
            size_t len;
            const char *path = lua_tolstring(L, -1, &len);
            set_key(c, j, v2_reports[i].kind, path, len, -1);
        }
        lua_settop(L, top);
        return;
    }
}

/* ------------------------------------------------------- what is stored */

/* t[name] at idx when it is a string of hex digits of a hash's length, lower-cased into out. */
static bool hash_field(lua_State *L, int idx, const char *name, char out[65])
{
    bool ok = false;
    if (lua_getfield(L, idx, name) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (vt_hash_kind_of(s, len)) {
            for (size_t i = 0; i <= len; i++)
                out[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
            ok = true;
        }
    }
    lua_pop(L, 1);
    return ok;
}

/* Pushes "<scope>:<prefix><id>" and adds it to the list at list_idx unless it is there. */
static void add_key(lua_State *L, vt_cache *c, int list_idx, const char *prefix, const char *id, size_t id_len)
{
    lua_pushfstring(L, "%s:%s", c->scope, prefix);
    lua_pushlstring(L, id, id_len);
    lua_concat(L, 2);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list_idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list_idx, i);
        bool same = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
        if (same) {
            lua_pop(L, 1);
            return;
        }
    }
    lua_rawseti(L, list_idx, n + 1);
}

/* The URL ids of the string t[name] at idx (the id of the URL as written). */
static void add_url_alias(lua_State *L, vt_cache *c, int list_idx, int idx, const char *name, const char *prefix)
{
    size_t len;
    if (lua_getfield(L, idx, name) == LUA_TSTRING && (lua_tolstring(L, -1, &len), len > 0 && len <= 8192)) {
        luaL_Buffer b;
        const char *url = lua_tostring(L, -1);
        char *id = luaL_buffinitsize(L, &b, 4 * (len / 3 + 1) + 1);
        luaL_pushresultsize(&b, vt_base64url(url, len, id));
        size_t id_len;
        const char *s = lua_tolstring(L, -1, &id_len);
        add_key(L, c, list_idx, prefix, s, id_len);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Fills the list at list_idx with the keys of the answer at obj (a v3 object, or a
 * v2 report): its own key first (an entry is stored under it), then its aliases. */
static void answer_keys(lua_State *L, vt_cache *c, vt_job *j, int obj, int list_idx)
{
    char h[3][65];
    const char *prefix = j->cache.kind == VT_KIND_FILE ? "/files/" : "/urls/";
    if (j->v2) { /* the key's path up to its id: the report's variant too */
        const char *path = strchr(j->cache.key, ':') + 1;
        lua_pushlstring(L, path, (size_t)(strrchr(path, '/') + 1 - path));
        prefix = lua_tostring(L, -1);
    }
    if (j->cache.kind == VT_KIND_FILE) {
        int attrs = obj;
        if (!j->v2) {
            lua_getfield(L, obj, "attributes");
            attrs = lua_gettop(L);
        }
        if (lua_istable(L, attrs)) {
            static const char *const names[] = {"sha256", "sha1", "md5"};
            for (int i = 0; i < 3; i++)
                if (hash_field(L, attrs, names[i], h[i]))
                    add_key(L, c, list_idx, prefix, h[i], strlen(h[i]));
        }
        if (!j->v2)
            lua_pop(L, 1);
    } else if (j->cache.kind == VT_KIND_URL) {
        if (!j->v2 && hash_field(L, obj, "id", h[0]))
            add_key(L, c, list_idx, prefix, h[0], strlen(h[0]));
        if (!j->v2 && lua_getfield(L, obj, "attributes") == LUA_TTABLE)
            add_url_alias(L, c, list_idx, lua_gettop(L), "url", prefix);
        if (!j->v2)
            lua_pop(L, 1);
        else
            add_url_alias(L, c, list_idx, obj, "url", prefix);
    }
    lua_pushstring(L, j->cache.key);
    lua_Integer n = (lua_Integer)lua_rawlen(L, list_idx);
    bool listed = false;
    for (lua_Integer i = 1; i <= n && !listed; i++) {
        lua_rawgeti(L, list_idx, i);
        listed = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
    }
    if (listed)
        lua_pop(L, 1);
    else
        lua_rawseti(L, list_idx, n + 1);
    if (j->v2)
        lua_pop(L, 1); /* the prefix */
}

/* Whether the answer at the top is what j asked for: the decoded body (v3
 * positive: data.type; v2: response_code 1 or 0), or a v3 NotFoundError.
 * *negative tells which; obj is left pushed: data (v3), the body (a collection's
 * page) or the report (v2). */
static bool answer_shape(lua_State *L, vt_job *j, int nresults, bool *negative)
{
    int top = lua_gettop(L);
    *negative = false;
    if (nresults == 2) {
        bool not_found = j->status == 404 && !j->v2 && lua_istable(L, top) &&
                         lua_getfield(L, top, "code") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "NotFoundError") == 0;
        lua_settop(L, top);
        lua_pushnil(L);
        *negative = not_found;
        return not_found;
    }
    if (j->status != 200 || !lua_istable(L, top)) {
        lua_pushnil(L);
        return false;
    }
    if (j->v2) {
        lua_pushvalue(L, top);
        lua_getfield(L, top, "response_code");
        int isint;
        lua_Integer rc = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        *negative = isint && rc == 0;
        return isint && (rc == 0 || rc == 1);
    }
    vt_err e; /* an answer the call refuses (src/shape.c) is no entry either */
    if (j->cache.page) {
        lua_pushvalue(L, top);
        return vt_check_shape(L, top, j->resp, j->resp_len, VT_SHAPE_LIST, &e) == 0;
    }
    bool shaped = vt_check_shape(L, top, j->resp, j->resp_len, VT_SHAPE_OBJECT, &e) == 0;
    if (lua_getfield(L, top, "data") != LUA_TTABLE)
        return false;
    bool ok = shaped && lua_getfield(L, -1, "type") == LUA_TSTRING &&
              strcmp(lua_tostring(L, -1), object_types[j->cache.kind]) == 0;
    lua_pop(L, 1);
    return ok;
}

/* A completed analysis (the only kind of analysis kept). */
static bool analysis_completed(lua_State *L, int data)
{
    bool done = lua_getfield(L, data, "attributes") == LUA_TTABLE && lua_getfield(L, -1, "status") == LUA_TSTRING &&
                strcmp(lua_tostring(L, -1), "completed") == 0;
    lua_settop(L, data);
    return done;
}

/* Stores the answer (obj: data or the v2 report), giving the marker up with it when
 * the backend keeps it (vt_cache_settle releases it otherwise). */
static void store(lua_State *L, vt_cache *c, vt_job *j, int obj, bool negative)
{
    lua_newtable(L);
    int list = lua_gettop(L);
    if (!negative && !j->cache.page)
        answer_keys(L, c, j, obj, list);
    else {
        lua_pushstring(L, j->cache.key);
        lua_rawseti(L, list, 1);
    }
    size_t n = lua_rawlen(L, list), len;
    const char *aliases[MAX_ALIASES];
    size_t n_aliases = 0;
    for (size_t i = 2; i <= n && n_aliases < MAX_ALIASES; i++) {
        lua_rawgeti(L, list, (lua_Integer)i);
        aliases[n_aliases++] = lua_tostring(L, -1); /* the list keeps it alive */
        lua_pop(L, 1);
    }
    lua_rawgeti(L, list, 1);
    const char *key = lua_tostring(L, -1);
    char *frame = vt_cache_frame_new(key, j->status, negative, j->resp, j->resp_len, &len);
    double ttl = c->ttl[negative ? VT_TTL_NOT_FOUND : j->cache.kind];
    if (!frame)
        c->stats.errors++;
    else if (ttl > 0 &&
             c->ops->store(c->be, c, key, aliases, n_aliases, frame, len, negative, ttl,
                           j->cache.leased ? j->cache.token : NULL))
        j->cache.leased = false; /* the store gave the marker up */
    free(frame);
    lua_settop(L, list - 1);
}

/* Drops the entry "<scope>:<prefix><id>" (any of its keys names it). */
static void drop_key(lua_State *L, vt_cache *c, const char *prefix, const char *id)
{
    lua_pushfstring(L, "%s:%s%s", c->scope, prefix, id);
    c->ops->drop(c->be, c, lua_tostring(L, -1));
    lua_pop(L, 1);
}

/* A completed analysis makes what was kept of its object stale: the object's last
 * analysis changed, and a "not found" no longer holds (another worker would upload
 * or submit it again). body is the analysis' decoded answer, with its meta. */
static void drop_analysed(lua_State *L, vt_cache *c, int body)
{
    int top = lua_gettop(L);
    if (lua_getfield(L, body, "meta") != LUA_TTABLE) {
        lua_settop(L, top);
        return;
    }
    int meta = lua_gettop(L);
    char h[65];
    if (lua_getfield(L, meta, "file_info") == LUA_TTABLE) {
        static const char *const names[] = {"sha256", "sha1", "md5"};
        for (int i = 0; i < 3; i++)
            if (hash_field(L, lua_gettop(L), names[i], h)) {
                drop_key(L, c, "/files/", h);
                for (size_t v = 0; v < sizeof v2_variants / sizeof *v2_variants; v++) {
                    lua_pushfstring(L, "v2/file/report%s/", v2_variants[v]);
                    drop_key(L, c, lua_tostring(L, -1), h);
                    lua_pop(L, 1);
                }
            }
    }
    if (lua_getfield(L, meta, "url_info") == LUA_TTABLE) {
        int info = lua_gettop(L);
        if (hash_field(L, info, "id", h))
            drop_key(L, c, "/urls/", h);
        lua_newtable(L);
        int ids = lua_gettop(L);
        add_url_alias(L, c, ids, info, "url", "/urls/");
        for (size_t v = 0; v < sizeof v2_variants / sizeof *v2_variants; v++) {
            lua_pushfstring(L, "v2/url/report%s/", v2_variants[v]);
            add_url_alias(L, c, ids, info, "url", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, ids); i++) {
            lua_rawgeti(L, ids, i);
            c->ops->drop(c->be, c, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_settop(L, top);
}

bool vt_cache_settle(lua_State *L, vt_cache *c, vt_job *j, int nresults, const char *apikey, size_t apikey_len)
{
    int top = lua_gettop(L);
    bool negative;
    bool ok = answer_shape(L, j, nresults, &negative);
    int obj = lua_gettop(L);
    if (j->cache.hit) {
        lua_settop(L, top);
        if (ok)
            return true;
        /* an entry that passed its checksum yet is not what was asked: drop it, ask */
        c->ops->drop(c->be, c, j->cache.key);
        if (j->cache.shared)
            c->stats.coalesced--;
        else
            c->stats.hits--;
        lua_pop(L, nresults);
        vt_job_refetch(j);
        return false;
    }
    /* a page's "not found" is its object's, which has its own entry, dropped when an upload
     * or a submission makes the object: the page's would outlive it */
    bool keep = ok && !(j->cache.page && negative) && !j->cache.shared && !j->cache.failed && c->ops &&
                j->resp_len > 0 &&
                !(j->cache.kind == VT_KIND_ANALYSIS && !negative && !analysis_completed(L, obj)) &&
                !memmem(j->resp, j->resp_len, apikey, apikey_len);
    if (keep) {
        store(L, c, j, obj, negative);
        if (j->cache.kind == VT_KIND_ANALYSIS && !negative)
            drop_analysed(L, c, top);
    }
    if (j->cache.leased) { /* nothing stored: others ask themselves */
        vt_cache_release(c, j);
        j->cache.leased = false;
    }
    lua_settop(L, top);
    return true;
}
