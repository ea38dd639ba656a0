/* Awaiting jobs: blocking on the engine, or yielding from a coroutine (to the
 * resumer or through the client's yield function) and going on where the call
 * stopped; and the host-loop interface (pollfd, events, timeout, step). */
#include "client.h"

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

/* Continuation of a method whose last act was one job (on the stack top):
 * its body's data, or nil, err. The client is argument 1. */
static int data_done(lua_State *L, int status, lua_KContext shape)
{
    return vt_client_data_result(L, vt_client_check(L, 1), lua_touserdata(L, -1), (vt_shape)shape, false);
}

/* Runs the job on the stack top, then returns its data. */
int vt_client_await_data(lua_State *L, vt_client *c, vt_shape shape)
{
    return vt_client_await(L, c, 1, -1, 1, shape, data_done);
}


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

void vt_await_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"pollfd", client_pollfd},
        {"events", client_events},
        {"timeout", client_timeout},
        {"step", client_step},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
    if (luaL_newmetatable(L, VT_AWAIT_MT)) {
        lua_pushcfunction(L, await_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
}
