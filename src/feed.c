/* c:feed and c:follow (SPEC 10): VirusTotal's feeds, one batch a minute per
 * kind, handed over object by object while the batch streams in
 * (feed_stream.c decompresses and splits it; the engine pauses the transfer
 * while the iterator's queue is full). The batch is asked of the API with the
 * key; the storage host the API redirects to is asked without it, as
 * downloads do. Feeds are never cached: their jobs carry no cache key. */
#include "client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VT_FEED_MT "vt.feed"
#define MAX_REDIRECTS 3
#define MAX_LINE_DEFAULT (16 * 1024 * 1024)
#define MAX_LINE_CEILING (1024 * 1024 * 1024) /* the line queue stores lengths in 32 bits */
#define START_BEHIND (70 * 60) /* the service publishes a minute about an hour after it ends */
#define INTERVAL_DEFAULT 60.0  /* seconds between two asks for a batch not published yet */
#define NO_STOP INT64_MAX

static const char *const feed_kinds[] = {"files", "urls", "domains", "ip_addresses", "file-behaviours", NULL};

typedef enum {
    FEED_REQUEST,  /* ask for the batch of `minute` (or end at `stop`) */
    FEED_TRANSFER, /* the batch streams in: hand out its objects */
    FEED_LATE,     /* waited for a batch not published yet: ask again */
    FEED_DONE
} feed_phase;

/* The iterator's state, upvalue 2 of the iterator (the client is upvalue 1) and
 * the to-be-closed value of a generic for. */
typedef struct feed_iter {
    vt_job job;               /* first member: awaited like any job */
    vt_feed_stream *stream;   /* the batch being read; NULL between batches */
    const char *kind;         /* one of feed_kinds */
    int64_t minute, stop;     /* epoch seconds of minutes; stop is excluded */
    int64_t skip;             /* lines of this minute's batch already handed out (a cursor's N) */
    size_t max_line;
    lua_Integer missing, missing_max; /* missing batches in a row; how many are passed over */
    double interval, patience; /* patience < 0: wait as long as it takes */
    double late_since;        /* monotonic: first "not available yet" for this minute; < 0 none */
    int hops;                 /* redirects followed for this batch */
    bool follow;              /* walks minutes: waits for late batches, passes over missing ones */
    bool waiting;             /* suspended until the stream has a line or the job ends */
    feed_phase phase;
} feed_iter;

/* ------------------------------------------------------------ minutes */

/* "YYYYMMDDhhmm" (UTC) of a minute given in epoch seconds. */
static void format_minute(int64_t minute, char out[13])
{
    time_t t = (time_t)minute;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 13, "%Y%m%d%H%M", &tm);
}

/* The 12 digits at s as a minute since the epoch; false when they are not one
 * (the 30th of February, 24:00 and the like too). */
static bool parse_minute(const char *s, int64_t *out)
{
    int v[5] = {0};
    static const int widths[5] = {4, 2, 2, 2, 2};
    for (int f = 0, i = 0; f < 5; f++)
        for (int w = 0; w < widths[f]; w++, i++) {
            if (!isdigit((unsigned char)s[i]))
                return false;
            v[f] = v[f] * 10 + (s[i] - '0');
        }
    if (v[0] < 1970)
        return false;
    struct tm tm = {.tm_year = v[0] - 1900, .tm_mon = v[1] - 1, .tm_mday = v[2], .tm_hour = v[3], .tm_min = v[4]};
    int64_t t = (int64_t)timegm(&tm);
    char back[13];
    format_minute(t, back);
    if (memcmp(back, s, 12) != 0)
        return false;
    *out = t;
    return true;
}

/* A minute "YYYYMMDDhhmm", or (cursor_ok) a cursor "YYYYMMDDhhmm-N": the minute
 * and N (0 for a minute). */
static bool parse_position(const char *s, size_t len, bool cursor_ok, int64_t *minute, int64_t *skip)
{
    *skip = 0;
    if (len < 12 || !parse_minute(s, minute))
        return false;
    if (len == 12)
        return true;
    if (!cursor_ok || s[12] != '-' || len == 13 || len > 13 + 15)
        return false;
    for (size_t i = 13; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        *skip = *skip * 10 + (s[i] - '0');
    }
    return true;
}

/* The string at idx as a minute (or cursor): 0, or -1 with e (InvalidArgument) when it is not one. */
static int check_position(lua_State *L, int idx, const char *what, bool cursor_ok, int64_t *minute, int64_t *skip,
                          vt_err *e)
{
    size_t len;
    const char *s = vt_checkstring(L, idx, &len);
    if (parse_position(s, len, cursor_ok, minute, skip))
        return 0;
    char shown[41];
    size_t n = len < sizeof shown - 1 ? len : sizeof shown - 1;
    for (size_t i = 0; i < n; i++)
        shown[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
    shown[n] = '\0';
    vt_err_set(e, "InvalidArgument", "%s is not a minute %s(UTC): '%s'", what,
               cursor_ok ? "YYYYMMDDhhmm or a cursor YYYYMMDDhhmm-N " : "YYYYMMDDhhmm ", shown);
    return -1;
}

static const char *check_kind(lua_State *L, int idx)
{
    size_t len;
    const char *k = vt_checkstring(L, idx, &len);
    for (int i = 0; feed_kinds[i]; i++)
        if (strlen(feed_kinds[i]) == len && strcmp(feed_kinds[i], k) == 0)
            return feed_kinds[i];
    luaL_error(L, "unknown feed '%s' (expected files, urls, domains, ip_addresses or file-behaviours)", k);
    return NULL;
}

/* ------------------------------------------------------------ state */

/* The engine's sink callbacks (ud is the iterator, whose stream takes the bytes). */
static int sink_write(void *ud, const char *data, size_t n, vt_err *e)
{
    return vt_feed_stream_write(((feed_iter *)ud)->stream, data, n, e);
}

static void sink_restart(void *ud)
{
    vt_feed_stream_restart(((feed_iter *)ud)->stream);
}

static bool sink_ready(void *ud)
{
    feed_iter *it = ud;
    return it->waiting && (vt_feed_stream_queued(it->stream) || it->job.state == VT_JOB_DONE);
}

static void set_stream_sink(feed_iter *it)
{
    it->job.sink = VT_SINK_STREAM;
    it->job.stream = (vt_stream_sink){sink_write, sink_restart, sink_ready, it};
    it->job.streaming = true; /* a batch may take longer than `timeout`; a stalled one may not */
}

/* Lets the batch go: its transfer first (the engine must not call into a
 * freed stream), then its stream. */
static void drop_batch(feed_iter *it)
{
    vt_job_reset(&it->job);
    vt_feed_stream_free(it->stream);
    it->stream = NULL;
}

/* At the end, on an error, on break. */
static void feed_finish(feed_iter *it)
{
    drop_batch(it);
    it->phase = FEED_DONE;
}

static int feed_close(lua_State *L)
{
    feed_finish(luaL_checkudata(L, 1, VT_FEED_MT));
    return 0;
}

/* Lines of this minute's batch behind the iterator: the N of its cursor. */
static int64_t position(const feed_iter *it)
{
    return it->stream ? vt_feed_stream_position(it->stream) : it->skip;
}

/* Pushes the cursor "YYYYMMDDhhmm-N" of the current minute at position n. */
static void push_cursor(lua_State *L, const feed_iter *it, int64_t n)
{
    char minute[13];
    format_minute(it->minute, minute);
    lua_pushfstring(L, "%s-%I", minute, (lua_Integer)n);
}

/* Raises e (iterators raise: a for loop would drop nil, err) with the cursor
 * of position n, from which a new iterator goes on exactly where this one
 * stopped. */
static int feed_raise(lua_State *L, feed_iter *it, const vt_err *e, int64_t n)
{
    vt_err_push(L, e);
    push_cursor(L, it, n);
    lua_setfield(L, -2, "cursor");
    feed_finish(it);
    return lua_error(L);
}

static void next_minute(feed_iter *it)
{
    drop_batch(it);
    it->minute += 60;
    it->skip = 0;
    it->late_since = -1;
    it->phase = FEED_REQUEST;
}

/* Asks the API for the batch of it->minute. */
static void request_batch(lua_State *L, vt_client *c, feed_iter *it)
{
    char minute[13];
    format_minute(it->minute, minute);
    drop_batch(it);
    vt_err e;
    if (!(it->stream = vt_feed_stream_new(it->max_line, it->skip, &e)))
        feed_raise(L, it, &e, it->skip);
    lua_pushfstring(L, "/feeds/%s/%s", it->kind, minute);
    vt_client_prepare(L, c, &it->job, "GET", lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    set_stream_sink(it);
    it->hops = 0;
    vt_job_submit(c->engine, &it->job, &c->transport, &c->policy);
    it->phase = FEED_TRANSFER;
}

/* The API redirected to the batch: asks the storage host, without the key and
 * without taking quota. */
static void follow_redirect(lua_State *L, vt_client *c, feed_iter *it)
{
    vt_err e;
    if (++it->hops > MAX_REDIRECTS) {
        vt_err_set(&e, "InvalidResponse", "too many redirects for a feed batch");
        feed_raise(L, it, &e, position(it));
    }
    lua_pushstring(L, it->job.location);
    vt_job_reset(&it->job);
    if (vt_job_prepare_redirect(L, &it->job, lua_tostring(L, -1), &e) != 0)
        feed_raise(L, it, &e, position(it));
    lua_pop(L, 1);
    set_stream_sink(it);
    vt_job_submit(c->engine, &it->job, &c->transport, &c->policy);
}

/* ------------------------------------------------------------ iteration */

static int feed_step(lua_State *L, int status, lua_KContext ctx);

/* Waits for the engine: yields in coroutine mode (returns what to return),
 * else steps it once (returns -1: go on). */
static int wait_engine(lua_State *L, vt_client *c, feed_iter *it)
{
    it->waiting = true;
    if (vt_client_may_yield(L, c))
        return vt_client_suspend(L, c, lua_upvalueindex(1), 0, feed_step);
    vt_engine_step(c->engine, 1.0);
    return -1;
}

/* A transfer paused by a full queue goes on once the queue took every byte
 * held back (curl may hand more lines over at once, moving the queue). */
static void let_transfer_go_on(feed_iter *it)
{
    if (it->job.paused && !vt_feed_stream_held(it->stream))
        vt_job_resume(&it->job);
}

/* The next object of the batch: 2 (object and cursor pushed), 0 when none is
 * queued now, -1 when a blank line was passed over. Raises on a bad line. */
static int take_object(lua_State *L, feed_iter *it)
{
    const char *line;
    size_t len;
    vt_err e;
    int r = vt_feed_stream_pop(it->stream, &line, &len, &e);
    if (r < 0)
        return feed_raise(L, it, &e, position(it));
    if (r == 0)
        return 0;
    size_t blank = 0;
    while (blank < len && isspace((unsigned char)line[blank]))
        blank++;
    if (blank == len)
        return -1; /* a blank line holds no object, but counts in cursors */
    bool decoded = vt_json_decode(L, line, len, &e) == 0;
    if (!decoded || !lua_istable(L, -1)) {
        char minute[13];
        format_minute(it->minute, minute);
        if (decoded)
            vt_err_set(&e, "InvalidResponse", "not a JSON object");
        vt_err bad;
        vt_err_set(&bad, "InvalidResponse", "feed batch %s/%s, line %lld: %s", it->kind, minute,
                   (long long)position(it), e.message);
        /* the cursor stays before the bad line */
        return feed_raise(L, it, &bad, position(it) - 1);
    }
    let_transfer_go_on(it); /* the line is decoded: the queue may move now */
    vt_object_adopt(L, -1); /* reads well, as every object handed out */
    push_cursor(L, it, position(it));
    return 2;
}

/* The batch's transfer is over and every queued object was handed out: a
 * redirect to follow, the end of the batch, or an error (some of which a
 * follower waits for or passes over). Returns -1 (go on) or what to return. */
static int batch_over(lua_State *L, vt_client *c, feed_iter *it)
{
    vt_job *j = &it->job;
    vt_job_release(j);
    if (vt_job_redirected(j)) {
        follow_redirect(L, c, it);
        return -1;
    }
    vt_err e;
    if (vt_client_job_error(L, c, j, &e)) {
        if (it->follow && it->hops == 0 && strcmp(e.code, "NotAvailableYet") == 0) {
            double now = vt_monotonic();
            if (it->late_since < 0)
                it->late_since = now;
            if (it->patience >= 0 && now + it->interval - it->late_since > it->patience)
                return feed_raise(L, it, &e, position(it));
            lua_settop(L, 0);
            vt_job_push_timer(L, it->interval);
            it->phase = FEED_LATE;
            if (vt_client_may_yield(L, c))
                return vt_client_await(L, c, lua_upvalueindex(1), 1, 1, 0, feed_step);
            vt_client_run(L, c, 1, 1);
            return -1;
        }
        if (it->follow && it->hops == 0 && strcmp(e.code, "NotFoundError") == 0 && it->missing < it->missing_max) {
            it->missing++;
            next_minute(it);
            return -1;
        }
        return feed_raise(L, it, &e, position(it));
    }
    if (vt_feed_stream_end(it->stream, &e) < 0)
        return feed_raise(L, it, &e, position(it));
    if (vt_feed_stream_queued(it->stream))
        return -1; /* the last line had no '\n' */
    it->missing = 0;
    next_minute(it);
    return -1;
}

static int feed_step(lua_State *L, int status, lua_KContext ctx)
{
    for (;;) {
        lua_settop(L, 0);
        feed_iter *it = lua_touserdata(L, lua_upvalueindex(2));
        it->waiting = false;
        if (it->phase == FEED_DONE)
            return 0;
        vt_client *c = vt_client_check(L, lua_upvalueindex(1));
        int n = -1;
        if (it->phase == FEED_LATE)
            it->phase = FEED_REQUEST;
        else if (it->phase == FEED_REQUEST) {
            if (it->minute >= it->stop) {
                feed_finish(it);
                return 0;
            }
            request_batch(L, c, it);
        } else if ((n = take_object(L, it)) == 0) {
            let_transfer_go_on(it);
            n = it->job.state == VT_JOB_DONE ? batch_over(L, c, it) : wait_engine(L, c, it);
        }
        if (n >= 0)
            return n;
    }
}

static int feed_next(lua_State *L)
{
    return feed_step(L, LUA_OK, 0);
}

/* Pushes the generic-for values: the iterator, nil, nil, and the state as
 * the to-be-closed value (a break releases the transfer). */
static int push_iterator(lua_State *L, const feed_iter *init)
{
    lua_pushvalue(L, 1); /* the client */
    feed_iter *it = lua_newuserdatauv(L, sizeof *it, 0);
    *it = *init;
    vt_job_init(&it->job);
    it->stream = NULL;
    it->late_since = -1;
    it->phase = FEED_REQUEST;
    luaL_setmetatable(L, VT_FEED_MT);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, feed_next, 2);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_pushvalue(L, -4);
    return 4;
}

/*** @module vt */

/*** @type client */

/* opts.max_line of c:feed or c:follow (what), raising beyond MAX_LINE_CEILING. */
static size_t opt_max_line(lua_State *L, int opts, const char *what)
{
    lua_Integer v = vt_opt_integer(L, opts, "max_line", MAX_LINE_DEFAULT, 1);
    if (v > MAX_LINE_CEILING)
        luaL_error(L, "%s: option 'max_line' must be at most %d bytes (1 GiB)", what, MAX_LINE_CEILING);
    return (size_t)v;
}

/***
The objects of one minute's feed batch, one at a time, while the batch streams in: memory stays
flat whatever its size. The batch (a bzip2 file of JSON lines) comes from the storage host the API
redirects to, asked without the API key, or from the API itself; only the API request takes quota.
Each object is a table as the feed sends it (`type`, `id`, `attributes`, `context_attributes`,
`links`), integers kept.
@function feed
@tparam string kind `"files"`, `"urls"`, `"domains"`, `"ip_addresses"` or `"file-behaviours"`
@tparam string minute `"YYYYMMDDhhmm"` (UTC)
@tparam[opt] table opts `skip` (objects of the batch to pass over: the `N` of a cursor
`"YYYYMMDDhhmm-N"`), `max_line` (bytes of the longest line accepted, default 16 MiB, at most 1 GiB)
@treturn[1] function the iterator of a generic `for`, followed by its to-be-closed value (a
`break` releases the transfer); each step gives an object and its cursor `"YYYYMMDDhhmm-N"`
@treturn[2] nil when `minute` is not a minute (no request is made)
@treturn[2] table an `InvalidArgument` error
@raise at the call: an unknown kind or option, a wrong type. In the loop, the error value of the
step that failed, with `err.cursor`: `NotAvailableYet` (not published yet), `NotFoundError`
(missing), `InvalidResponse` (a corrupt batch, after every object before the damage)
@usage for obj, cursor in assert(c:feed("files", "202501011200")) do print(obj.id) end
*/
static int client_feed(lua_State *L)
{
    static const char *const keys[] = {"skip", "max_line", NULL};
    vt_client_check(L, 1);
    feed_iter init = {.kind = check_kind(L, 2), .stop = 0, .missing_max = 0, .patience = -1};
    lua_settop(L, 4);
    vt_check_opts(L, 4, "feed", keys);
    init.skip = vt_opt_integer(L, 4, "skip", 0, 0);
    init.max_line = opt_max_line(L, 4, "feed");
    vt_err e;
    int64_t skip_in_minute;
    if (check_position(L, 3, "the feed minute", false, &init.minute, &skip_in_minute, &e) != 0)
        return vt_err_return(L, &e);
    init.stop = init.minute + 60;
    return push_iterator(L, &init);
}

/***
Follows a feed minute after minute, object after object. Each step gives an object and its
cursor; given back as `start`, a cursor goes on right after its object, so a restarted process
loses none and repeats none. A batch not published yet (`NotAvailableYet`) is asked for again
every `interval` seconds, waiting through the client's engine (in coroutine mode it yields); a
missing one (`NotFoundError`) is passed over, up to `missing` in a row.
@function follow
@tparam string kind `"files"`, `"urls"`, `"domains"`, `"ip_addresses"` or `"file-behaviours"`
@tparam[opt] table opts `start` (a minute `"YYYYMMDDhhmm"` or a cursor; default 70 minutes ago,
UTC, as the service publishes a minute about an hour after it), `stop` (a minute, excluded;
default none: forever), `missing` (default 1), `interval` (seconds, default 60), `patience`
(seconds one batch is waited for before its `NotAvailableYet` is raised; default no limit),
`max_line` (as for `feed`)
@treturn[1] function the iterator of a generic `for`, followed by its to-be-closed value
@treturn[2] nil when `start` or `stop` is malformed (no request is made)
@treturn[2] table an `InvalidArgument` error
@raise at the call: an unknown kind or option, a wrong type. In the loop, the error value of the
step that failed, with `err.cursor` (where a new follower takes over): a corrupt batch
(`InvalidResponse`, after every object before the damage), more missing batches in a row than
`missing`, a transfer that failed
@usage for obj, cursor in assert(c:follow("urls", {start = saved})) do handle(obj); saved = cursor end
*/
static int client_follow(lua_State *L)
{
    static const char *const keys[] = {"start", "stop", "missing", "interval", "patience", "max_line", NULL};
    vt_client_check(L, 1);
    feed_iter init = {.kind = check_kind(L, 2), .stop = NO_STOP, .follow = true};
    lua_settop(L, 3);
    vt_check_opts(L, 3, "follow", keys);
    init.missing_max = vt_opt_integer(L, 3, "missing", 1, 0);
    init.interval = vt_opt_seconds(L, 3, "interval", INTERVAL_DEFAULT);
    init.patience = vt_opt_seconds(L, 3, "patience", -1);
    init.max_line = opt_max_line(L, 3, "follow");
    init.minute = ((int64_t)vt_now() - START_BEHIND) / 60 * 60;
    vt_err e;
    int64_t none;
    if (lua_istable(L, 3) && lua_getfield(L, 3, "start") != LUA_TNIL &&
        check_position(L, -1, "option 'start'", true, &init.minute, &init.skip, &e) != 0)
        return vt_err_return(L, &e);
    lua_settop(L, 3);
    if (lua_istable(L, 3) && lua_getfield(L, 3, "stop") != LUA_TNIL &&
        check_position(L, -1, "option 'stop'", false, &init.stop, &none, &e) != 0)
        return vt_err_return(L, &e);
    lua_settop(L, 3);
    return push_iterator(L, &init);
}

void vt_feed_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"feed", client_feed},
        {"follow", client_follow},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, VT_FEED_MT)) {
        lua_pushcfunction(L, feed_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, feed_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, methods, 0);
}
