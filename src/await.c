/* Awaiting jobs: blocking on the engine, or yielding from a coroutine (to the
 * resumer or through the client's yield function) and going on where the call
 * stopped; and the host-loop interface (pollfd, events, timeout, step). */

/*** @module vt */
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
    /* a watched await (vt_client_await_progress): one job, a progress function, and a timer
     * job (user value 1) that wakes a yielding call when the next report is due */
    int progress_idx;         /* the function's stack index */
    vt_progress_args args;
    double next_report;       /* monotonic */
    bool ended_reported;      /* the report after the transfer ended was made (or cancelled) */
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

/* The await is over and its caller takes the results next: the slot's close leaves the jobs be. */
static void await_done(await_state *st)
{
    for (int i = 0; i < st->n; i++)
        vt_job_release(st->jobs[i]);
    st->n = 0;
}

/* The slot's close: after await_done, or for a call abandoned (an error, coroutine.close),
 * whose jobs are abandoned. */
static int await_close(lua_State *L)
{
    await_state *st = luaL_checkudata(L, 1, VT_AWAIT_MT);
    for (int i = 0; i < st->n; i++)
        vt_job_abandon(st->jobs[i]);
    st->n = 0;
    if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) /* a watched await's timer */
        vt_job_release(lua_touserdata(L, -1));
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
                await_done(st);
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
    *st = (await_state){.client = c, .client_idx = client_idx, .first = first, .n = n, .ctx = ctx, .then = then};
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

/* ------------------------------------------------------------- progress */

/* The progress function returned false: the transfers stop now (unlinked, so curl drops the
 * connection mid-transfer) and each job fails with Cancelled, which its caller's continuation
 * reports like any failure (a download's temporary file goes with it). Said after the last
 * report too, false still cancels: the call's result is dropped. */
static void cancel_jobs(await_state *st)
{
    for (int i = 0; i < st->n; i++) {
        vt_job *j = st->jobs[i];
        vt_job_release(j);
        vt_err_set(&j->err, "Cancelled", "cancelled by the progress function");
        j->state = VT_JOB_DONE;
    }
    st->ended_reported = true;
}

/* Wakes a yielding call when its next report is due: the host loop resumes it then. */
static void arm_timer(lua_State *L, await_state *st, int at)
{
    lua_getiuservalue(L, at, 1);
    vt_job *timer = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (timer->state == VT_JOB_QUOTA)
        return; /* still ticking */
    vt_job_release(timer);
    double wait = st->next_report - vt_monotonic();
    timer->timer = wait > 0 ? wait : 0;
    vt_job_submit(st->client->engine, timer, &st->client->transport, &st->client->policy);
}

static int watch_resume(lua_State *L, int status, lua_KContext k);

/* Goes on with a watched await (at: its state's index). `reported`: the progress function has
 * just returned, its result on the stack top. Blocking, it steps the engine until the next report
 * is due; yielding, it suspends as await_continue does, with the timer armed. A progress
 * function (or yield function) that returns without yielding loops here rather than recursing. */
static int watch_continue(lua_State *L, int at, bool reported)
{
    for (;;) {
        await_state *st = lua_touserdata(L, at);
        vt_job *j = st->jobs[0];
        if (reported && lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
            cancel_jobs(st);
        reported = false;
        lua_settop(L, at);
        vt_client *c = st->client;
        if (!c->engine)
            return luaL_error(L, "the vt client was closed during a call");
        bool yielding = vt_client_may_yield(L, c);
        if (j->state != VT_JOB_DONE && (st->suspended || !yielding)) {
            double wait = yielding ? 0 : st->next_report - vt_monotonic();
            vt_engine_step(c->engine, wait < 0 ? 0 : wait > 1 ? 1 : wait);
        }
        bool done = j->state == VT_JOB_DONE;
        double now = vt_monotonic();
        bool due = done ? !st->ended_reported : (st->suspended || !yielding) && now >= st->next_report;
        if (due) {
            st->ended_reported = done;
            st->next_report = now + VT_PROGRESS_INTERVAL;
            lua_pushvalue(L, st->progress_idx);
            int nargs = st->args(L, j, done);
            if (nargs == 0)
                continue; /* nothing to say: the function is dropped by the settop */
            lua_callk(L, nargs, 1, ((lua_KContext)at << 1) | 1, watch_resume);
            reported = true;
            continue;
        }
        if (done) {
            lua_KFunction then = st->then;
            lua_KContext ctx = st->ctx;
            await_done(st);
            lua_settop(L, at - 1); /* closes the slot: the timer is released */
            return then(L, LUA_OK, ctx);
        }
        if (!yielding)
            continue;
        st->suspended = true;
        arm_timer(L, st, at);
        if (c->mode == VT_YIELD_FN) {
            lua_getiuservalue(L, st->client_idx, 1);
            lua_pushvalue(L, st->client_idx);
            lua_callk(L, 1, 0, (lua_KContext)at << 1, watch_resume);
            continue;
        }
        lua_pushvalue(L, st->client_idx);
        return lua_yieldk(L, 1, (lua_KContext)at << 1, watch_resume);
    }
}

static int watch_resume(lua_State *L, int status, lua_KContext k)
{
    (void)status;
    return watch_continue(L, (int)(k >> 1), (k & 1) != 0);
}

int vt_client_await_progress(lua_State *L, vt_client *c, int client_idx, int progress_idx, vt_progress_args args,
                             lua_KContext ctx, lua_KFunction then)
{
    if (progress_idx == 0 || lua_isnoneornil(L, progress_idx))
        return vt_client_await(L, c, client_idx, -1, 1, ctx, then);
    client_idx = lua_absindex(L, client_idx);
    progress_idx = lua_absindex(L, progress_idx);
    int first = lua_gettop(L);
    submit_jobs(L, c, first, 1);
    await_state *st = lua_newuserdatauv(L, sizeof *st, 1);
    *st = (await_state){.client = c, .client_idx = client_idx, .first = first, .n = 1, .ctx = ctx, .then = then,
                        .jobs = {lua_touserdata(L, first)}, .progress_idx = progress_idx, .args = args,
                        .next_report = vt_monotonic() + VT_PROGRESS_INTERVAL};
    vt_job_push_timer(L, 0);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, VT_AWAIT_MT);
    int at = lua_gettop(L);
    lua_toclose(L, at);
    return watch_continue(L, at, false);
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

int vt_client_await_data_progress(lua_State *L, vt_client *c, vt_shape shape, int progress_idx,
                                  vt_progress_args args)
{
    return vt_client_await_progress(L, c, 1, progress_idx, args, shape, data_done);
}


/*** @type client */

/* The host-loop interface, after cqueues: a host polls pollfd() for events()
 * with timeout(), then calls step(). */

/***
The one file descriptor a host loop polls for this client (an epoll fd for the whole engine).
@function client:pollfd
@treturn integer the descriptor
*/
static int client_pollfd(lua_State *L)
{
    lua_pushinteger(L, vt_engine_fd(vt_client_check(L, 1)->engine));
    return 1;
}

/***
What to poll `client:pollfd` for.
@function client:events
@treturn string `"r"`
*/
static int client_events(lua_State *L)
{
    vt_client_check(L, 1);
    lua_pushliteral(L, "r"); /* the epoll fd turns readable when any transfer has I/O */
    return 1;
}

/***
When the engine needs a step even without I/O.
@function client:timeout
@treturn[1] number seconds (0: now)
@return[2] nil when nothing waits on a timer
*/
static int client_timeout(lua_State *L)
{
    double t = vt_engine_timeout(vt_client_check(L, 1)->engine);
    if (t < 0)
        lua_pushnil(L);
    else
        lua_pushnumber(L, t);
    return 1;
}

/***
Does what is ready: reads and writes, retries and quota waits that are due.
@function client:step
@tparam[opt=0] number timeout the most seconds to wait for something to do
@treturn integer the requests, timers and quota waits still pending
*/
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
