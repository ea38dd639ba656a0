/* Waiting: c:wait polls an analysis until it completes, c:sleep pauses; both
 * yield in coroutine mode like any call. */
/*** @module vt */
#include "client.h"

#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------------------- sleep */

static int sleep_done(lua_State *L, int status, lua_KContext ctx)
{
    return 0;
}

/*** @type client */

/***
Pauses the caller; in coroutine mode it yields like any call, so a playbook's pause never blocks
its host.
@function client:sleep
@tparam number seconds from 0 to 86400
*/
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
 * 10 the analysis, 11 its attributes, 12 its status, 13 what the progress function
 * returned. Blocking, it loops (a long
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
            /* always asked; the completed answer is kept like c:analysis's, and makes what
             * the cache held of the analysed object stale */
            vt_cache_key(c->policy.cache, j, VT_KIND_ANALYSIS, lua_tostring(L, 5), 0);
            if (vt_client_may_yield(L, c))
                return vt_client_await(L, c, 1, 9, 1, WAIT_POLLED, wait_step);
            vt_client_run(L, c, 9, 1);
            phase = WAIT_POLLED;
        }
        if (phase == WAIT_POLLED) {
            lua_settop(L, 9);
            if (vt_client_data_result(L, c, lua_touserdata(L, 9), VT_SHAPE_OBJECT, true) == 2) {
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
                lua_callk(L, 2, 1, WAIT_PROGRESSED, wait_step);
            }
            continue; /* checks the client again */
        }
        /* WAIT_PROGRESSED: the progress function's answer at 13, if it ran; false cancels */
        if (lua_gettop(L) == 13 && lua_type(L, 13) == LUA_TBOOLEAN && !lua_toboolean(L, 13)) {
            vt_err e;
            vt_err_set(&e, "Cancelled", "cancelled by the progress function (status %s)", lua_tostring(L, 12));
            snprintf(e.analysis_id, sizeof e.analysis_id, "%s", lua_tostring(L, 2));
            return vt_err_return(L, &e);
        }
        /* never sleep when no try would follow */
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

/***
Polls an analysis until it is completed, never sleeping after its last try.
@function client:wait
@tparam string id the analysis id
@tparam[opt] table opts `interval` and `timeout` (seconds; defaults: the client's `poll_interval`
and `poll_timeout`), `progress` (called as `progress(status, elapsed)` after each poll)
@treturn[1] table the completed analysis object, with its `meta`
@treturn[2] nil
@treturn[2] table the error value; on `Timeout` it carries `analysis_id`, so a later call (or
process) can go on
*/
static int client_wait(lua_State *L)
{
    static const char *const keys[] = {"interval", "timeout", "progress", NULL};
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 3);
    vt_check_opts(L, 3, "wait", keys);
    double interval = vt_opt_seconds(L, 3, "interval", c->poll_interval);
    double timeout = vt_opt_seconds(L, 3, "timeout", c->poll_timeout);
    vt_push_progress_opt(L, 3); /* 4 */
    vt_err e;
    if (vt_push_object_path(L, VT_KIND_ANALYSIS, 2, &e) != 0) /* 5 */
        return vt_err_return(L, &e);
    lua_pushnumber(L, vt_monotonic()); /* 6 */
    lua_pushnumber(L, interval);       /* 7 */
    lua_pushnumber(L, timeout);        /* 8 */
    return wait_step(L, LUA_OK, WAIT_POLL);
}

void vt_wait_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"wait", client_wait},
        {"sleep", client_sleep},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
