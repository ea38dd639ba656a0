/* The limiter's windows in Redis (quota_state = "redis://..."), for processes
 * on many hosts that share one API key. The same windows as limiter.c (sliding,
 * UTC day and month, and the hold after the service said the quota is spent),
 * the same rules (every request is recorded in every window any client of the
 * key registered; a new window starts from what the others remember; a window
 * nobody used for a day goes), decided by one script that Redis runs
 * atomically, with Redis' TIME as the one clock of every host.
 *
 * Keys, under "vt:quota:<sha256 of the key, 16 hex>": ":windows" (sorted set:
 * window id -> last use), ":w:<id>" (a sliding window: sorted set of request
 * times; a calendar window: hash {period, used}), ":hold" (end of the hold),
 * ":seq" (makes request members unique). Window ids: "s:<n>:<per>",
 * "d:<n>:0", "m:<n>:0".
 *
 * Fail closed: when Redis cannot be reached or fails, a request that needs a
 * slot fails with QuotaStateError and is not sent. */
#include "client.h"
#include "redis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUOTA_ERR "QuotaStateError"
#define MAX_SCRIPT_ARGS (3 + 3 + VT_MAX_WINDOWS)

/* ARGV: prefix, op (acquire | status | spent), hold seconds, own window ids.
 * acquire: {1} | {0, wait}; status: {blocked_until, used1, next1, ...}; spent: 1. */
static const char limiter_script[] =
    "local prefix, op = ARGV[1], ARGV[2]\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"
    "local registry, hold_key, seq_key = prefix .. ':windows', prefix .. ':hold', prefix .. ':seq'\n"
    "local KEEP, MAX_HOLD = 86400, 32 * 86400\n"
    "local hold_until = tonumber(redis.call('GET', hold_key) or '0') or 0\n"
    "if op == 'spent' then\n"
    "  local h = math.min(tonumber(ARGV[3]) or 0, MAX_HOLD)\n"
    "  if h > 0 and now + h > hold_until then\n"
    "    redis.call('SET', hold_key, string.format('%.6f', now + h), 'PX', math.ceil(h * 1000))\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    /* slots open later than `per` says, as in limiter.c: the server sees a request later than we */
    "local function guard(per) return math.min(per / 20, 1.0) end\n"
    /* days since the epoch of a UTC date and back (H. Hinnant's civil algorithms) */
    "local function days_from_civil(y, m, d)\n"
    "  if m <= 2 then y = y - 1 end\n"
    "  local era = math.floor(y / 400)\n"
    "  local yoe = y - era * 400\n"
    "  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1\n"
    "  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468\n"
    "end\n"
    "local function civil_from_days(z)\n"
    "  z = z + 719468\n"
    "  local era = math.floor(z / 146097)\n"
    "  local doe = z - era * 146097\n"
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n"
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"
    "  local mp = math.floor((5 * doy + 2) / 153)\n"
    "  local m = mp < 10 and mp + 3 or mp - 9\n"
    "  return yoe + era * 400 + (m <= 2 and 1 or 0), m\n"
    "end\n"
    "local function period_start(kind, nxt)\n"
    "  local day = math.floor(now / 86400)\n"
    "  if kind == 'd' then return (day + nxt) * 86400 end\n"
    "  local y, m = civil_from_days(day)\n"
    "  m = m + nxt\n"
    "  if m > 12 then m, y = m - 12, y + 1 end\n"
    "  return days_from_civil(y, m, 1) * 86400\n"
    "end\n"
    "local function parse(id)\n"
    "  local kind, n, per = string.match(id, '^(%a):(%d+):(.+)$')\n"
    "  return kind, tonumber(n), tonumber(per)\n"
    "end\n"
    "local function wkey(id) return prefix .. ':w:' .. id end\n"
    /* requests a window holds now (expired ones go) */
    "local function used_of(id)\n"
    "  local kind, n, per = parse(id)\n"
    "  if kind == 's' then\n"
    "    redis.call('ZREMRANGEBYSCORE', wkey(id), '-inf', now - per - guard(per))\n"
    "    return redis.call('ZCARD', wkey(id))\n"
    "  end\n"
    "  local v = redis.call('HMGET', wkey(id), 'period', 'used')\n"
    "  if tonumber(v[1]) ~= period_start(kind, 0) then return 0 end\n"
    "  return tonumber(v[2]) or 0\n"
    "end\n"
    "local function wait_of(id, used)\n"
    "  local kind, n, per = parse(id)\n"
    "  if used < n then return 0 end\n"
    "  if kind == 's' then\n"
    "    local s = redis.call('ZRANGE', wkey(id), -n, -n, 'WITHSCORES')\n"
    "    return tonumber(s[2]) + per + guard(per) - now\n"
    "  end\n"
    "  return period_start(kind, 1) - now\n"
    "end\n"
    /* a window new to the key starts from the fullest of the others (a lower bound) */
    "local function seed(id)\n"
    "  local kind, n, per = parse(id)\n"
    "  local since = kind == 's' and now - per - guard(per) or period_start(kind, 0)\n"
    "  local best, from = 0, nil\n"
    "  for _, other in ipairs(redis.call('ZRANGE', registry, 0, -1)) do\n"
    "    local okind = parse(other)\n"
    "    if okind == 's' then\n"
    "      local c = redis.call('ZCOUNT', wkey(other), since, '+inf')\n"
    "      if c > best then best, from = c, other end\n"
    "    elseif kind ~= 's' and (okind == kind or (okind == 'd' and kind == 'm')) then\n"
    "      local c = used_of(other)\n"
    "      if c > best then best, from = c, nil end\n"
    "    end\n"
    "  end\n"
    "  best = math.min(best, n)\n"
    "  if best == 0 then return end\n"
    "  if kind ~= 's' then\n"
    "    redis.call('HSET', wkey(id), 'period', period_start(kind, 0), 'used', best)\n"
    "  elseif from then\n"
    "    local s = redis.call('ZRANGEBYSCORE', wkey(from), since, '+inf', 'WITHSCORES')\n"
    "    for i = #s - 2 * best + 1, #s, 2 do redis.call('ZADD', wkey(id), s[i + 1], s[i]) end\n"
    "    redis.call('PEXPIRE', wkey(id), math.ceil((per + guard(per) + 1) * 1000))\n"
    "  end\n"
    "end\n"
    "local own = {}\n"
    "for i = 4, #ARGV do\n"
    "  own[#own + 1] = ARGV[i]\n"
    "  if not redis.call('ZSCORE', registry, ARGV[i]) then seed(ARGV[i]) end\n"
    "  redis.call('ZADD', registry, now, ARGV[i])\n"
    "end\n"
    "redis.call('EXPIRE', registry, 2 * KEEP)\n"
    "local need = math.max(hold_until - now, 0)\n"
    "local report = {string.format('%.6f', hold_until > now and hold_until or 0)}\n"
    "for _, id in ipairs(own) do\n"
    "  local used = used_of(id)\n"
    "  local wait = math.max(wait_of(id, used), 0)\n"
    "  need = math.max(need, wait)\n"
    "  report[#report + 1] = tostring(used)\n"
    "  report[#report + 1] = string.format('%.6f', wait)\n"
    "end\n"
    "if op == 'status' then return report end\n"
    "if need > 0 then return {0, string.format('%.6f', math.max(need, 0.001))} end\n"
    /* recorded in every window of the key; an empty one nobody used for a day goes */
    "local seq = redis.call('INCR', seq_key)\n"
    "redis.call('EXPIRE', seq_key, KEEP)\n"
    "local all = redis.call('ZRANGE', registry, 0, -1, 'WITHSCORES')\n"
    "for i = 1, #all, 2 do\n"
    "  local id, seen = all[i], tonumber(all[i + 1])\n"
    "  local kind, n, per = parse(id)\n"
    "  local used = used_of(id)\n"
    "  if used == 0 and seen + KEEP < now then\n"
    "    redis.call('ZREM', registry, id)\n"
    "    redis.call('DEL', wkey(id))\n"
    "  elseif kind == 's' then\n"
    "    redis.call('ZADD', wkey(id), now, string.format('%.6f:%d', now, seq))\n"
    "    redis.call('ZREMRANGEBYRANK', wkey(id), 0, -(n + 1))\n"
    "    redis.call('PEXPIRE', wkey(id), math.ceil((per + guard(per) + 1) * 1000))\n"
    "  else\n"
    "    redis.call('HSET', wkey(id), 'period', period_start(kind, 0), 'used', math.min(used + 1, n))\n"
    "    redis.call('PEXPIREAT', wkey(id), math.ceil(period_start(kind, 1) * 1000) + 60000)\n"
    "  end\n"
    "end\n"
    "return {1}\n";

struct vt_redis_limiter {
    vt_redis *r;
    char prefix[32];
    size_t count;
    vt_window win[VT_MAX_WINDOWS];
    char ids[VT_MAX_WINDOWS][48];
    vt_redis_call spent_done; /* a hold not recorded is not waited for: nothing to count */
};

typedef struct quota_ticket {
    vt_ticket ticket; /* first: the engine clears ticket.job */
    vt_redis_call call;
    vt_redis_limiter *limiter;
} quota_ticket;

static void ignore_reply(vt_redis_call *call, const redisReply *reply, const char *why) {}

/* why comes from the connection and names it already. */
static void failure(const vt_redis_limiter *l, const redisReply *reply, const char *why, vt_err *e)
{
    if (reply)
        vt_err_set(e, QUOTA_ERR, "quota state %s: %s", vt_redis_name(l->r),
                   reply->type == REDIS_REPLY_ERROR ? reply->str : why ? why : "unexpected answer from Redis");
    else
        vt_err_set(e, QUOTA_ERR, "quota state %s", why);
}

/* EVAL of the script for op; -1 when it cannot be sent. */
static int run_script(vt_redis_limiter *l, vt_redis_call *call, const char *op, double hold)
{
    const char *argv[MAX_SCRIPT_ARGS];
    size_t lens[MAX_SCRIPT_ARGS];
    char hold_s[32];
    int argc = 0;
    /* whole microseconds, written by hand: "%f" would follow a locale the host set ("0,5") */
    long long us = hold > 0 && hold < 1e12 ? llround(hold * 1e6) : 0;
    snprintf(hold_s, sizeof hold_s, "%lld.%06lld", us / 1000000, us % 1000000);
    argv[argc++] = "EVAL";
    argv[argc++] = limiter_script;
    argv[argc++] = "0";
    argv[argc++] = l->prefix;
    argv[argc++] = op;
    argv[argc++] = hold_s;
    for (size_t i = 0; i < l->count && strcmp(op, "spent") != 0; i++)
        argv[argc++] = l->ids[i];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return vt_redis_command(l->r, call, argc, argv, lens);
}

static double reply_number(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return (double)r->integer;
    return r->type == REDIS_REPLY_STRING ? vt_strtod_c(r->str, NULL) : NAN;
}

/* --------------------------------------------------------------- acquire */

static void on_acquire(vt_redis_call *call, const redisReply *reply, const char *why)
{
    quota_ticket *t = (quota_ticket *)((char *)call - offsetof(quota_ticket, call));
    vt_job *j = t->ticket.job;
    if (j) {
        vt_err e;
        double wait = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
                          ? reply_number(reply->element[1]) : NAN;
        if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 && reply_number(reply->element[0]) == 1)
            vt_job_quota_answer(j, 1, 0, NULL);
        else if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && wait > 0)
            vt_job_quota_answer(j, 0, wait, NULL);
        else {
            failure(t->limiter, reply, why, &e);
            vt_job_quota_answer(j, -1, 0, &e);
        }
    }
    free(t);
}

/* Sends op's script for j, whose answer comes through done; 0, or -1 with e filled
 * (the connection is down, or no memory): j then awaits nothing. */
static int ask(vt_redis_limiter *l, vt_job *j, const char *op, void (*done)(vt_redis_call *, const redisReply *,
                                                                        const char *), vt_err *e)
{
    quota_ticket *t = calloc(1, sizeof *t);
    if (!t) {
        vt_err_oom(e, "asking Redis for quota");
        return -1;
    }
    t->ticket.job = j;
    t->call.done = done;
    t->limiter = l;
    j->ticket = &t->ticket;
    if (run_script(l, &t->call, op, 0) < 0) {
        j->ticket = NULL;
        free(t);
        failure(l, NULL, vt_redis_why(l->r), e);
        return -1;
    }
    return 0;
}

void vt_redis_limiter_acquire(vt_redis_limiter *l, vt_job *j)
{
    vt_err e;
    if (ask(l, j, "acquire", on_acquire, &e) < 0)
        vt_job_quota_answer(j, -1, 0, &e);
}

void vt_redis_limiter_mark_spent(vt_redis_limiter *l, double hold)
{
    if (hold > 0)
        run_script(l, &l->spent_done, "spent", hold);
}

/* ---------------------------------------------------------------- status */

/* The reply of a status, in the job's response buffer as doubles:
 * blocked_until, then used and next_slot_in of each window. */
static void on_status(vt_redis_call *call, const redisReply *reply, const char *why)
{
    quota_ticket *t = (quota_ticket *)((char *)call - offsetof(quota_ticket, call));
    vt_job *j = t->ticket.job;
    size_t want = 1 + 2 * t->limiter->count;
    if (j) {
        vt_err e;
        bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == want;
        double *values = ok ? malloc(want * sizeof *values) : NULL;
        for (size_t i = 0; values && i < want; i++)
            values[i] = reply_number(reply->element[i]);
        if (values) {
            free(j->resp);
            j->resp = (char *)values;
            j->resp_len = j->resp_cap = want * sizeof *values;
            vt_job_finish(j, NULL);
        } else {
            if (ok)
                vt_err_oom(&e, "reading the quota's status");
            else
                failure(t->limiter, reply, why, &e);
            vt_job_finish(j, &e);
        }
    }
    free(t);
}

/* Starts the status job (vt_job.external). */
static void start_status(vt_job *j)
{
    vt_err e;
    if (ask(j->policy->redis_limiter, j, "status", on_status, &e) < 0)
        vt_job_finish(j, &e);
}

static int status_done(lua_State *L, int status, lua_KContext ctx)
{
    vt_client *c = vt_client_check(L, 1);
    vt_job *j = lua_touserdata(L, -1);
    vt_redis_limiter *l = c->policy.redis_limiter;
    if (j->err.code[0])
        return vt_err_return(L, &j->err);
    const double *values = (const double *)j->resp;
    vt_window_status st[VT_MAX_WINDOWS];
    for (size_t i = 0; i < l->count; i++) {
        st[i].used = (int64_t)values[1 + 2 * i];
        st[i].next_slot_in = values[2 + 2 * i];
    }
    vt_limiter_push_table(L, l->win, l->count, st, values[0], "url", vt_redis_name(l->r));
    return 1;
}

int vt_client_redis_quota_status(lua_State *L, vt_client *c)
{
    vt_job *j = vt_job_push(L);
    j->external = start_status;
    return vt_client_await(L, c, 1, -1, 1, 0, status_done);
}

/* ------------------------------------------------------------ life cycle */

vt_redis_limiter *vt_redis_limiter_new(vt_engine *eng, const char *url, const vt_window *w, size_t count,
                                       const char *apikey, size_t apikey_len, double timeout, vt_err *e)
{
    if (count > VT_MAX_WINDOWS) {
        vt_err_set(e, "InvalidArgument", "at most %d windows", VT_MAX_WINDOWS);
        return NULL;
    }
    vt_redis_limiter *l = calloc(1, sizeof *l);
    if (!l) {
        vt_err_oom(e, "for the Redis limiter");
        return NULL;
    }
    if (!(l->r = vt_redis_new(eng, url, timeout, e))) {
        free(l);
        return NULL;
    }
    char digest[65];
    vt_sha256_hex(apikey, apikey_len, digest);
    snprintf(l->prefix, sizeof l->prefix, "vt:quota:%.16s", digest);
    static const char kinds[] = {'s', 'd', 'm'};
    l->count = count;
    for (size_t i = 0; i < count; i++) {
        l->win[i] = w[i];
        snprintf(l->ids[i], sizeof l->ids[i], "%c:%lld:%.17g", kinds[w[i].kind], (long long)w[i].n,
                 w[i].kind == VT_WIN_SLIDING ? w[i].per : 0.0);
    }
    l->spent_done.done = ignore_reply;
    return l;
}

void vt_redis_limiter_free(vt_redis_limiter *l)
{
    if (!l)
        return;
    vt_redis_free(l->r);
    free(l);
}

const char *vt_redis_limiter_name(const vt_redis_limiter *l) { return vt_redis_name(l->r); }
