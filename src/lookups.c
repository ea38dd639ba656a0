/* Look-ups of v3 objects: one at a time (c:file, c:url, c:domain, c:ip,
 * c:analysis) or many at once (c:batch). */
#include "client.h"

/* -------------------------------------------------------------- look-ups */

static int lookup_done(lua_State *L, int status, lua_KContext kind)
{
    vt_client *c = vt_client_check(L, 1);
    return vt_client_data_result(L, c, lua_touserdata(L, -1), VT_SHAPE_OBJECT, kind == VT_KIND_ANALYSIS);
}

static int lookup(lua_State *L, vt_kind kind)
{
    vt_client *c = vt_client_check(L, 1);
    vt_err e;
    if (vt_push_object_path(L, kind, 2, &e) != 0)
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

/* ----------------------------------------------------------------- batch */

/* Pushes {ok = true, value = v} or {ok = false, err = e} from a finished job. */
static void push_outcome(lua_State *L, vt_client *c, vt_job *j, bool keep_meta)
{
    int n = vt_client_data_result(L, c, j, VT_SHAPE_OBJECT, keep_meta);
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, n == 1);
    lua_setfield(L, -2, "ok");
    lua_insert(L, -2);
    lua_setfield(L, -2, n == 1 ? "value" : "err");
    if (n == 2)
        lua_remove(L, -2);
}

static void push_failed_outcome(lua_State *L, const vt_err *e)
{
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "ok");
    vt_err_push(L, e);
    lua_setfield(L, -2, "err");
}

/* Stack of a batch: 1 client, 2 list, 3 opts, 4 results, 5 jobs by index, 6 this. */
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
        push_outcome(L, c, j, keep_meta);
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
    lua_settop(L, 6);
    batch_state *b = lua_touserdata(L, 6);
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
    static const char *const keys[] = {"concurrency", NULL};
    vt_client *c = vt_client_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    vt_check_opts(L, 3, "batch", keys);
    lua_Integer conc = vt_opt_integer(L, 3, "concurrency", 8, 1);
    lua_Integer n = luaL_len(L, 2);
    lua_createtable(L, (int)n, 0); /* 4: results */
    lua_createtable(L, (int)n, 0); /* 5: job userdata by index */
    lua_Integer total = 0;         /* jobs to run */
    /* validate everything first: a bad member costs no request */
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
            return luaL_error(L, "batch: item %d must be a table {kind, value}", (int)i);
        lua_rawgeti(L, -1, 1);
        vt_kind kind = vt_kind_check(L, -1, true);
        lua_rawgeti(L, -2, 2);
        vt_err e;
        if (vt_push_object_path(L, kind, -1, &e) != 0) {
            push_failed_outcome(L, &e);
            lua_rawseti(L, 4, i);
        } else {
            vt_job *j = vt_job_push(L);
            vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
            lua_pushboolean(L, kind == VT_KIND_ANALYSIS);
            lua_setiuservalue(L, -2, 1);
            lua_rawseti(L, 5, i);
            lua_pop(L, 1);
            total++;
        }
        lua_pop(L, 3);
    }
    lua_settop(L, 5);
    if (conc > total)
        conc = total > 0 ? total : 1; /* never more slots than jobs (and no overflowing size) */
    batch_state *b = lua_newuserdatauv(L, sizeof *b + sizeof(lua_Integer) * (size_t)conc, 0); /* 6 */
    *b = (batch_state){n, conc, 1, 0, total, 0};
    return batch_step(L, LUA_OK, 0);
}

void vt_lookups_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"file", client_file},
        {"url", client_url},
        {"domain", client_domain},
        {"ip", client_ip},
        {"analysis", client_analysis},
        {"batch", client_batch},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
