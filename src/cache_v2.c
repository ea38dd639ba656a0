/* v2 report batches through the cache (vt_cache_v2_batch, client.h). v2's
 * file/report takes several resources per request (comma-separated; url/report:
 * newline-separated), which is how the playbook layers spare quota on v2 keys.
 * With a cache, each resource is first a probe (a job the engine answers from an
 * entry, or from another look-up of this client asking for the same report, and
 * never sends); the rest go in one request, whose reports are stored one by one,
 * as single reports would be; the list comes back in the order asked. Probes take
 * no in-flight marker: a batch's misses are asked together, not waited for one by
 * one in other processes. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#define GROUP 4 /* probes awaited at once (vt_client_await takes at most 4 jobs) */

/* The call's stack from `base`: the items asked in order ({raw =, key = path or nil}),
 * the probe jobs by path, their paths in order, the reports found by path, the
 * service's reports by raw resource, the raw resources asked of it in order, the
 * parameters, the endpoint; then what is being awaited. */
enum { ITEMS, PROBES, ORDER, FOUND, ANSWERS, ASKED, PARAMS, ENDPOINT, SLOTS };

static const struct {
    const char *endpoint;
    char separator;
    vt_kind kind;
} batches[] = {{"file/report", ',', VT_KIND_FILE}, {"url/report", '\n', VT_KIND_URL}};

static lua_KContext context(int base, lua_Integer next)
{
    return (lua_KContext)((next << 16) | base);
}

/* The list of reports, in the order of the items. */
static int assemble(lua_State *L, int base)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, base + ITEMS);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, base + ITEMS, i);
        if (lua_getfield(L, -1, "key") == LUA_TNIL || lua_rawget(L, base + FOUND) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_getfield(L, -1, "raw");
            lua_rawget(L, base + ANSWERS);
        }
        lua_rawseti(L, -3, i);
        lua_pop(L, 1);
    }
    return 1;
}

/* Stores a report of the service's answer as the probe's entry would have been. */
static void store_report(lua_State *L, vt_client *c, vt_job *probe, int report)
{
    vt_json_encode(L, report);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    if (vt_job_set_response(probe, 200, text, len) == 0) {
        lua_pushvalue(L, report);
        vt_cache_settle(L, c->policy.cache, probe, 1, c->apikey, c->apikey_len); /* a fresh answer: no refetch */
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* The service's answer to the resources not found (the stack of ask, the request
 * job on top): each report is stored (a single resource's job stored its own) and
 * joins the list. */
static int asked(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    int base = (int)(ctx & 0xffff), probes_by_raw = base + SLOTS;
    int n = vt_client_result(L, c, lua_touserdata(L, -1));
    if (n < 0) /* one resource, answered by a corrupt entry: asked again */
        return vt_client_await(L, c, 1, -1, 1, ctx, asked);
    if (n == 2)
        return 2;
    int answer = lua_gettop(L);
    lua_Integer count = (lua_Integer)lua_rawlen(L, base + ASKED);
    lua_Integer got = !lua_istable(L, answer) ? 0 : count == 1 ? 1 : (lua_Integer)lua_rawlen(L, answer);
    if (got != count)
        return vt_fail(L, "InvalidResponse", "v2 %s: %lld reports asked, %lld in the answer",
                       lua_tostring(L, base + ENDPOINT), (long long)count, (long long)got);
    for (lua_Integer i = 1; i <= count; i++) {
        if (count > 1)
            lua_rawgeti(L, answer, i);
        else
            lua_pushvalue(L, answer);
        int report = lua_gettop(L);
        lua_rawgeti(L, base + ASKED, i);
        lua_pushvalue(L, report);
        lua_rawset(L, base + ANSWERS);
        lua_rawgeti(L, base + ASKED, i);
        if (count > 1 && lua_rawget(L, probes_by_raw) == LUA_TUSERDATA && lua_istable(L, report))
            store_report(L, c, lua_touserdata(L, -1), report);
        lua_settop(L, answer);
    }
    return assemble(L, base);
}

/* The reports the probes found, then one request for the others. */
static int ask(lua_State *L, vt_client *c, int base)
{
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, base + ORDER); i <= n; i++) {
        lua_rawgeti(L, base + ORDER, i);
        lua_pushvalue(L, -1);
        lua_rawget(L, base + PROBES);
        vt_job *j = lua_touserdata(L, -1);
        if ((j->cache.hit || j->cache.shared) && vt_client_result(L, c, j) == 1 && lua_istable(L, -1)) {
            lua_pushvalue(L, -3);
            lua_insert(L, -2);
            lua_rawset(L, base + FOUND);
        }
        lua_settop(L, base + SLOTS - 1);
    }
    /* the resources not found, each once, and their probes (false: none) by raw resource */
    lua_newtable(L); /* base + SLOTS */
    lua_Integer count = 0;
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, base + ITEMS); i <= n; i++) {
        lua_rawgeti(L, base + ITEMS, i);
        int item = lua_gettop(L);
        bool found = lua_getfield(L, item, "key") != LUA_TNIL && lua_rawget(L, base + FOUND) != LUA_TNIL;
        lua_getfield(L, item, "raw");
        lua_pushvalue(L, -1);
        if (!found && lua_rawget(L, base + SLOTS) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, base + ASKED, ++count);
            if (lua_getfield(L, item, "key") == LUA_TNIL)
                lua_pushboolean(L, 0);
            else
                lua_rawget(L, base + PROBES);
            lua_rawset(L, base + SLOTS);
        }
        lua_settop(L, item - 1);
    }
    if (count == 0)
        return assemble(L, base);
    /* the parameters, with only those resources */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, base + PARAMS)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    const char separator[2] = {lua_tostring(L, base + ENDPOINT)[0] == 'f' ? ',' : '\n', '\0'};
    lua_rawgeti(L, base + ASKED, 1);
    for (lua_Integer i = 2; i <= count; i++) {
        lua_pushstring(L, separator);
        lua_rawgeti(L, base + ASKED, i);
        lua_concat(L, 3);
    }
    lua_setfield(L, -2, "resource");
    vt_client_v2_get(L, c, lua_tostring(L, base + ENDPOINT), -1);
    return vt_client_await(L, c, 1, -1, 1, context(base, 0), asked);
}

static int probe_step(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    int base = (int)(ctx & 0xffff);
    lua_Integer next = (lua_Integer)(ctx >> 16), n = 0;
    lua_settop(L, base + SLOTS - 1);
    lua_Integer total = (lua_Integer)lua_rawlen(L, base + ORDER);
    for (; n < GROUP && next + n <= total; n++) {
        lua_rawgeti(L, base + ORDER, next + n);
        lua_rawget(L, base + PROBES);
    }
    if (n == 0)
        return ask(L, c, base);
    return vt_client_await(L, c, 1, -(int)n, (int)n, context(base, next + n), probe_step);
}

int vt_cache_v2_batch(lua_State *L, vt_client *c, const char *endpoint, int params)
{
    params = lua_absindex(L, params);
    size_t which = 0;
    while (which < sizeof batches / sizeof *batches && strcmp(batches[which].endpoint, endpoint) != 0)
        which++;
    if (which == sizeof batches / sizeof *batches || !vt_cache_active(c->policy.cache))
        return -1;
    char separator = batches[which].separator;
    int top = lua_gettop(L);
    lua_getfield(L, params, "scan");
    bool scan = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "0") != 0;
    bool several = lua_getfield(L, params, "resource") == LUA_TSTRING && strchr(lua_tostring(L, -1), separator);
    if (scan || !several) {
        lua_settop(L, top);
        return -1;
    }
    const char *resources = lua_tostring(L, -1);
    int base = lua_gettop(L) + 1;
    for (int i = 0; i < PARAMS; i++)
        lua_newtable(L);
    lua_pushvalue(L, params);
    lua_pushstring(L, endpoint);
    for (const char *p = resources; *p;) {
        size_t len = strcspn(p, separator == ',' ? "," : "\n"), tl;
        const char *r = vt_trim(p, len, &tl);
        p += len + (p[len] != '\0');
        if (tl == 0)
            continue;
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, r, tl);
        lua_setfield(L, -2, "raw");
        lua_pushlstring(L, r, tl);
        if (vt_cache_push_v2_path(L, endpoint, params, -1)) {
            lua_pushvalue(L, -1);
            lua_setfield(L, -4, "key");
            lua_pushvalue(L, -1);
            if (lua_rawget(L, base + PROBES) == LUA_TNIL) {
                lua_pop(L, 1);
                vt_job *j = vt_job_push(L);
                j->v2 = j->cache.probe = true;
                vt_cache_key(c->policy.cache, j, batches[which].kind, lua_tostring(L, -2), -1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, base + PROBES);
                lua_rawseti(L, base + ORDER, (lua_Integer)lua_rawlen(L, base + ORDER) + 1);
            } else
                lua_pop(L, 2);
        }
        lua_pop(L, 1);
        lua_rawseti(L, base + ITEMS, (lua_Integer)lua_rawlen(L, base + ITEMS) + 1);
    }
    return probe_step(L, LUA_OK, context(base, 1));
}
