/* Look-ups of v3 objects: one at a time (c:file, c:url, c:domain, c:ip,
 * c:analysis) or many (c:batch, c:each). Many go through a run: a few job
 * slots, each refilled with the next item as soon as its result is taken, so
 * that a list of any length holds at most `concurrency` jobs and results. */

/*** @module vt */
#include "client.h"

#include <string.h>

#define VT_RUN_MT "vt.lookup_run"
#define DEFAULT_CONCURRENCY 8

/*** @type client */

/* ---------------------------------------------------------------- one */

static int lookup_done(lua_State *L, int status, lua_KContext kind)
{
    vt_client *c = vt_client_check(L, 1);
    int n = vt_client_data_result(L, c, lua_touserdata(L, -1), VT_SHAPE_OBJECT, kind == VT_KIND_ANALYSIS);
    if (n < 0) /* a corrupt cache entry: asked again */
        return vt_client_await(L, c, 1, -1, 1, kind, lookup_done);
    return n;
}

static int lookup(lua_State *L, vt_kind kind)
{
    static const char *const keys[] = {"max_age", NULL};
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 3);
    vt_check_opts(L, 3, "look-up", keys);
    double max_age = vt_cache_max_age(L, 3);
    vt_err e;
    if (vt_push_object_path(L, kind, 2, &e) != 0)
        return vt_err_return(L, &e);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
    vt_cache_key(c->policy.cache, j, kind, lua_tostring(L, -2), max_age);
    return vt_client_await(L, c, 1, -1, 1, kind, lookup_done);
}

/***
A file object by its MD5, SHA-1 or SHA-256 (either case, spaces around ignored).
@function client:file
@tparam string hash the file's hash
@tparam[opt] table opts `max_age`: seconds the cache's answer may have (default the client's
`cache_ttl`; 0: ask the service, and store its answer)
@treturn[1] table the file object (`type`, `id` (its SHA-256), `attributes`, `links`)
@treturn[2] nil
@treturn[2] table the error value: `InvalidArgument` for a malformed hash (no request is made),
`NotFoundError`, or any other failure
@raise when `hash` is not a string, or on a closed client
@usage local f = assert(c:file("44d88612fea8a8f36de82e1278abb02f"))
print(f.attributes.last_analysis_stats.malicious)
*/
static int client_file(lua_State *L) { return lookup(L, VT_KIND_FILE); }

/***
A URL object by the URL (defanged is fine: `hxxp://example[.]com/`), its v3 identifier or its
SHA-256.
@function client:url
@tparam string url the URL or its identifier
@tparam[opt] table opts `max_age`, as for `client:file`
@treturn[1] table the URL object
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a malformed URL: no request)
@raise when `url` is not a string, or on a closed client
*/
static int client_url(lua_State *L) { return lookup(L, VT_KIND_URL); }

/***
A domain object (the name refanged and lower-cased first).
@function client:domain
@tparam string name the domain
@tparam[opt] table opts `max_age`, as for `client:file`
@treturn[1] table the domain object
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a malformed name: no request)
@raise when `name` is not a string, or on a closed client
*/
static int client_domain(lua_State *L) { return lookup(L, VT_KIND_DOMAIN); }

/***
An IP address object (IPv4 or IPv6).
@function client:ip
@tparam string address the address
@tparam[opt] table opts `max_age`, as for `client:file`
@treturn[1] table the ip_address object
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a malformed address: no request)
@raise when `address` is not a string, or on a closed client
*/
static int client_ip(lua_State *L) { return lookup(L, VT_KIND_IP); }

/***
An analysis object, with the body's `meta` kept in it (`meta.file_info` or `meta.url_info`).
@function client:analysis
@tparam string id the analysis id (as `c:scan_file` or `c:scan_url` gave it)
@tparam[opt] table opts `max_age`, as for `client:file`
@treturn[1] table the analysis object
@treturn[2] nil
@treturn[2] table the error value
@raise when `id` is not a string, or on a closed client
*/
static int client_analysis(lua_State *L) { return lookup(L, VT_KIND_ANALYSIS); }

/* ---------------------------------------------------------------- runs */

/* The list's items, slot by slot. User values: 1 the list, 2 the slots' jobs
 * (a table by slot number, each made when its slot is first used), 3 c:batch's
 * repeated items (item -> the earlier item asking the same: never started). */
typedef struct run {
    lua_Integer n, next;  /* items; the next one to start */
    lua_Integer done;     /* c:batch: results stored */
    lua_Integer repeated; /* c:batch: items asking what an earlier item asks */
    double max_age;       /* the look-ups' opts.max_age (-1: the client's cache_ttl) */
    const char *what;     /* "batch" or "each", for errors */
    lua_Integer bad_item; /* c:each: a malformed item to hand out next (0: none) */
    vt_err bad;           /* its error, or run_fill's latest */
    bool closed;          /* c:each: the loop is over; nothing more starts */
    int nslots, busy;
    struct {
        lua_Integer item; /* 0: free */
        bool keep_meta;   /* an analysis: its meta stays */
    } slot[];
} run;

/* Pushes item i's value after checking the item: a table {kind, value}, with a
 * kind name and a string value, or it raises (a malformed value fails that
 * item later). Runs check every item before any request and again when they
 * start it: the loop's body or another coroutine may have changed the list. */
static vt_kind push_item(lua_State *L, int list, lua_Integer i, const char *what)
{
    if (lua_rawgeti(L, list, i) != LUA_TTABLE)
        luaL_error(L, "%s: item %d must be a table {kind, value}", what, (int)i);
    lua_rawgeti(L, -1, 1);
    vt_kind kind = vt_kind_check(L, -1, true);
    if (lua_rawgeti(L, -2, 2) != LUA_TSTRING)
        luaL_error(L, "%s: item %d: the value must be a string (got %s)", what, (int)i, luaL_typename(L, -1));
    lua_replace(L, -3);
    lua_pop(L, 1);
    return kind;
}

static void check_items(lua_State *L, int list, lua_Integer n, const char *what)
{
    for (lua_Integer i = 1; i <= n; i++) {
        push_item(L, list, i, what);
        lua_pop(L, 1);
    }
}

/* The arguments of c:batch and c:each (1 client, 2 list, 3 opts; the stack set to
 * these three): returns the list's length, its concurrency in *concurrency, its
 * max_age in *max_age. */
static lua_Integer check_list(lua_State *L, const char *what, lua_Integer *concurrency, double *max_age)
{
    static const char *const keys[] = {"concurrency", "max_age", NULL};
    vt_client_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 3);
    vt_check_opts(L, 3, what, keys);
    *concurrency = vt_opt_integer(L, 3, "concurrency", DEFAULT_CONCURRENCY, 1);
    *max_age = vt_cache_max_age(L, 3);
    lua_Integer n = luaL_len(L, 2);
    check_items(L, 2, n, what);
    return n;
}

static int run_close(lua_State *L);

/* Pushes a run over the n items of the list at index list. */
static run *push_run(lua_State *L, const char *what, int list, lua_Integer n, lua_Integer concurrency,
                    double max_age)
{
    int nslots = (int)(concurrency < n ? concurrency : n > 0 ? n : 1);
    run *r = lua_newuserdatauv(L, sizeof *r + (size_t)nslots * sizeof r->slot[0], 3);
    memset(r, 0, sizeof *r + (size_t)nslots * sizeof r->slot[0]);
    r->n = n;
    r->next = 1;
    r->nslots = nslots;
    r->max_age = max_age;
    r->what = what;
    if (luaL_newmetatable(L, VT_RUN_MT)) {
        lua_pushcfunction(L, run_close);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, list);
    lua_setiuservalue(L, -2, 1);
    lua_createtable(L, nslots, 0);
    lua_setiuservalue(L, -2, 2);
    return r;
}

/* Pushes the job of slot k (run at index at), made on first use. */
static vt_job *slot_job(lua_State *L, int at, int k)
{
    lua_getiuservalue(L, at, 2);
    if (lua_rawgeti(L, -1, k) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        vt_job_push(L);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, k);
    }
    lua_remove(L, -2);
    return lua_touserdata(L, -1);
}

/* Starts the next items in the free slots. Returns 0 once every slot is busy
 * or no item is left; or the index of a malformed item it met (not started,
 * its error in r->bad), so the caller can hand that one out. */
static lua_Integer run_fill(lua_State *L, vt_client *c, run *r, int at)
{
    lua_getiuservalue(L, at, 3);
    int repeated = lua_gettop(L);
    for (int k = 0; k < r->nslots && r->next <= r->n; k++) {
        if (r->slot[k].item)
            continue;
        lua_Integer i = r->next++;
        if (lua_istable(L, repeated) && lua_rawgeti(L, repeated, i) != LUA_TNIL) { /* answered by its first */
            lua_pop(L, 1);
            k--;
            continue;
        }
        if (lua_istable(L, repeated))
            lua_pop(L, 1);
        lua_getiuservalue(L, at, 1);
        vt_kind kind = push_item(L, lua_gettop(L), i, r->what);
        if (vt_push_object_path(L, kind, -1, &r->bad) != 0) {
            lua_settop(L, repeated - 1);
            return i;
        }
        vt_job *j = slot_job(L, at, k + 1);
        vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
        vt_cache_key(c->policy.cache, j, kind, lua_tostring(L, -2), r->max_age);
        vt_job_submit(c->engine, j, &c->transport, &c->policy);
        lua_settop(L, repeated);
        r->slot[k].item = i;
        r->slot[k].keep_meta = kind == VT_KIND_ANALYSIS;
        r->busy++;
    }
    lua_settop(L, repeated - 1);
    return 0;
}

/* Whether a busy slot's job is done (a host loop's step may have finished it). */
static bool run_ready(lua_State *L, run *r, int at)
{
    bool ready = false;
    lua_getiuservalue(L, at, 2);
    for (int k = 0; k < r->nslots && !ready; k++) {
        if (!r->slot[k].item)
            continue;
        lua_rawgeti(L, -1, k + 1);
        ready = ((vt_job *)lua_touserdata(L, -1))->state == VT_JOB_DONE;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ready;
}

/* Takes the result of a finished slot: pushes ok (a boolean) and the object or
 * the error value, frees the slot and returns its item; 0 (nothing pushed)
 * when no slot has finished. */
static lua_Integer run_take(lua_State *L, vt_client *c, run *r, int at)
{
    for (int k = 0; k < r->nslots; k++) {
        if (!r->slot[k].item)
            continue;
        vt_job *j = slot_job(L, at, k + 1);
        if (j->state != VT_JOB_DONE) {
            lua_pop(L, 1);
            continue;
        }
        int n = vt_client_data_result(L, c, j, VT_SHAPE_OBJECT, r->slot[k].keep_meta);
        if (n < 0) { /* a corrupt cache entry: the slot asks again */
            vt_job_submit(c->engine, j, &c->transport, &c->policy);
            lua_pop(L, 1);
            continue;
        }
        lua_pushboolean(L, n == 1);
        lua_replace(L, -2 - n); /* the job's place: ok, value or ok, nil, err */
        if (n == 2)
            lua_remove(L, -2);
        vt_job_recycle(j);
        lua_Integer item = r->slot[k].item;
        r->slot[k].item = 0;
        r->busy--;
        return item;
    }
    return 0;
}

/* The run's __close (and the end of an abandoned batch): the jobs still in
 * flight, and those done whose results nobody took, are abandoned. */
static int run_close(lua_State *L)
{
    run *r = luaL_checkudata(L, 1, VT_RUN_MT);
    for (int k = 0; k < r->nslots; k++)
        if (r->slot[k].item) {
            vt_job_abandon(slot_job(L, 1, k + 1));
            lua_pop(L, 1);
            r->slot[k].item = 0;
        }
    r->busy = 0;
    r->closed = true;
    return 0;
}

/* Waits for the engine: blocking, one step; yielding, suspends and goes on in then. */
#define RUN_WAIT(L, c, client_idx, then)                                   \
    do {                                                                   \
        if (vt_client_may_yield((L), (c)))                                 \
            return vt_client_suspend((L), (c), (client_idx), 0, (then));   \
        vt_engine_step((c)->engine, 1.0);                                  \
    } while (0)

/* --------------------------------------------------------------- batch */

/* Stores {ok = ok, value = v | err = e} (the two values on top) as results[item]. */
static void store_outcome(lua_State *L, int results, lua_Integer item)
{
    bool ok = lua_toboolean(L, -2);
    lua_createtable(L, 0, 2);
    lua_insert(L, -2);
    lua_setfield(L, -2, ok ? "value" : "err");
    lua_insert(L, -2);
    lua_setfield(L, -2, "ok");
    lua_rawseti(L, results, item);
}

/* Pushes {item = earlier item} for the items of the list at index list that ask
 * for what an earlier one asks (the same normalised path): one request answers
 * both. Returns how many. */
static lua_Integer push_repeated(lua_State *L, vt_client *c, int list, lua_Integer n)
{
    lua_newtable(L);
    lua_newtable(L); /* the first item by path */
    int repeated = lua_gettop(L) - 1;
    lua_Integer count = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        vt_kind kind = push_item(L, list, i, "batch");
        vt_err e;
        if (vt_push_object_path(L, kind, -1, &e) == 0) {
            lua_pushvalue(L, -1);
            if (lua_rawget(L, repeated + 1) == LUA_TNUMBER) {
                lua_rawseti(L, repeated, i);
                count++;
            } else {
                lua_pop(L, 1);
                lua_pushinteger(L, i);
                lua_rawset(L, repeated + 1);
            }
        }
        lua_settop(L, repeated + 1);
    }
    lua_pop(L, 1);
    vt_cache_counters(c->policy.cache)->coalesced += (uint64_t)count;
    return count;
}

/* The repeated items get their own outcome tables, with the value or error of
 * their earlier item's. */
static void share_repeated(lua_State *L, int results, int at)
{
    lua_getiuservalue(L, at, 3);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_rawget(L, results); /* the earlier item's outcome */
        lua_createtable(L, 0, 2);
        for (int f = 0; f < 3; f++) {
            static const char *const fields[] = {"ok", "value", "err"};
            lua_getfield(L, -2, fields[f]);
            lua_setfield(L, -2, fields[f]);
        }
        lua_pushvalue(L, -3);
        lua_insert(L, -2);
        lua_rawset(L, results);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Stack of a batch: 1 client, 2 list, 3 opts, 4 results, 5 the run. */
static int batch_step(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 5);
    run *r = lua_touserdata(L, 5);
    for (;;) {
        lua_Integer i;
        while ((i = run_take(L, c, r, 5)) != 0) {
            store_outcome(L, 4, i);
            r->done++;
        }
        while ((i = run_fill(L, c, r, 5)) != 0) {
            lua_pushboolean(L, 0);
            vt_err_push(L, &r->bad);
            store_outcome(L, 4, i);
            r->done++;
        }
        if (r->done + r->repeated == r->n) {
            share_repeated(L, 4, 5);
            lua_pushvalue(L, 4);
            return 1;
        }
        if (!run_ready(L, r, 5))
            RUN_WAIT(L, c, 1, batch_step);
    }
}

/***
Looks many objects up at once, at most `concurrency` requests in flight (and that many jobs in
memory, whatever the list's length), within the limiter. Items are checked first: a wrong shape or
kind raises before any request, and a malformed indicator fails its item without a request.
@function client:batch
@tparam {{string,string},...} list items `{kind, value}`, kind `"file"`, `"url"`, `"domain"`,
`"ip"` or `"analysis"`
@tparam[opt] table opts `concurrency` (default 8), `max_age` (as for `client:file`)
@treturn table one result per item, in the list's order: `{ok = true, value = object}` or
`{ok = false, err = error value}`
@raise on a wrong item, option or kind (before any request; and when an item not yet started was
changed to a wrong shape, as another coroutine may), or on a closed client
@usage local results = c:batch({{"file", h1}, {"domain", "example.com"}}, {concurrency = 8})
for i, r in ipairs(results) do print(i, r.ok and r.value.id or tostring(r.err)) end
*/
static int client_batch(lua_State *L)
{
    lua_Integer concurrency;
    double max_age;
    lua_Integer n = check_list(L, "batch", &concurrency, &max_age);
    lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0); /* 4: results */
    run *r = push_run(L, "batch", 2, n, concurrency, max_age);  /* 5 */
    lua_toclose(L, 5); /* a batch abandoned by coroutine.close releases its jobs */
    r->repeated = push_repeated(L, vt_client_check(L, 1), 2, n);
    lua_setiuservalue(L, 5, 3);
    return batch_step(L, LUA_OK, 0);
}

/* ---------------------------------------------------------------- each */

/* The iterator of c:each; upvalues: 1 the client, 2 the run. */
static int each_step(lua_State *L, int status, lua_KContext ctx)
{
    run *r = lua_touserdata(L, lua_upvalueindex(2));
    if (r->closed)
        return 0;
    vt_client *c = vt_client_check(L, lua_upvalueindex(1));
    lua_settop(L, 0);
    lua_pushvalue(L, lua_upvalueindex(2)); /* 1: the run, for the helpers */
    for (;;) {
        lua_Integer i;
        if (r->bad_item) {
            lua_pushinteger(L, r->bad_item);
            lua_pushboolean(L, 0);
            vt_err_push(L, &r->bad);
            r->bad_item = 0;
            return 3;
        }
        if ((i = run_take(L, c, r, 1)) != 0) {
            lua_pushinteger(L, i);
            lua_insert(L, -3);
            /* the freed slot starts its next item while the loop's body runs */
            r->bad_item = run_fill(L, c, r, 1);
            return 3;
        }
        if ((r->bad_item = run_fill(L, c, r, 1)) != 0)
            continue;
        if (r->busy == 0) { /* every item handed out */
            r->closed = true;
            return 0;
        }
        if (!run_ready(L, r, 1))
            RUN_WAIT(L, c, lua_upvalueindex(1), each_step);
    }
}

static int each_next(lua_State *L)
{
    return each_step(L, LUA_OK, 0);
}

/***
Looks many objects up and hands each result out as it comes (completion order), for lists too
long to hold every result at once: at most `concurrency` requests in flight and results held,
whatever the list's length, within the limiter. Blocking, or yielding in coroutine mode (also
through `vt.loop`). A `break` out of the loop (or an error in it) releases the requests in flight:
the fourth value is a to-be-closed value, as Lua 5.4's generic `for` allows.
@function client:each
@tparam {{string,string},...} list items `{kind, value}` as for `client:batch`
@tparam[opt] table opts `concurrency` (default 8), `max_age` (as for `client:file`)
@treturn function the iterator, giving `i` (the item's index in `list`), `ok`, and the object or
the error value (`InvalidArgument` for a malformed indicator, which costs no request)
@return nil
@return nil
@return the closing value
@raise on a wrong item, option or kind (before any request; and when the loop's body changed an
item not yet started to a wrong shape), or on a closed client
@usage for i, ok, obj in c:each(list, {concurrency = 8}) do
  if ok then print(i, obj.id) else print(i, tostring(obj)) end
end
*/
static int client_each(lua_State *L)
{
    lua_Integer concurrency;
    double max_age;
    lua_Integer n = check_list(L, "each", &concurrency, &max_age);
    lua_pushvalue(L, 1);
    push_run(L, "each", 2, n, concurrency, max_age);
    lua_pushvalue(L, -1);
    lua_insert(L, -3); /* the run, then the closure's upvalues: client, run */
    lua_pushcclosure(L, each_next, 2);
    lua_insert(L, -2);
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 4; /* iterator, nil, nil, the run (to be closed) */
}

/***
The requests, timers and quota waits of this client still pending: what `client:step` would
return, without doing anything. A host loop can stop stepping at 0; a `client:each` or
`client:batch` adds at most its concurrency to it.
@function client:pending
@treturn integer how many
@raise on a closed client
*/
static int client_pending(lua_State *L)
{
    lua_pushinteger(L, vt_engine_pending(vt_client_check(L, 1)->engine));
    return 1;
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
        {"each", client_each},
        {"pending", client_pending},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
