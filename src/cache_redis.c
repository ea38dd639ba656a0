/* The cache on Redis, shared by every host that points there. Each operation
 * is one script (EVAL), so that a fetch reads the entry and, without one,
 * takes the in-flight marker atomically, and a store writes the entry, its
 * aliases and gives the marker up at once. Ages come from Redis' clock (TIME),
 * the one clock of all hosts; entries and markers expire by Redis' own TTLs.
 *
 * Keys: "vt:e:<key>" a hash {t = stored (ms), n = negative (0/1), f = frame};
 * "vt:a:<alias>" the name of the entry an alias stands for; "vt:l:<key>" the
 * marker (its owner's token). Every call is asynchronous (redis.h): a fetch
 * answers its job from the reply; stores and markers are sent without waiting,
 * their failures counted. Dynamic key names (an alias's entry) make the scripts
 * right for a single Redis server, not a cluster. */
#include "cache.h"
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY "vt:e:"
#define ALIAS "vt:a:"
#define MARKER "vt:l:"

/* KEYS: entry, alias, marker. ARGV: want_entry (1/0), max_age ms, max_age of a negative
 * entry ms, token ('': no marker), marker TTL ms. {1, frame, entry name} | {2}: marker
 * taken | {3}: held | {0}: no entry, no marker asked. */
static const char fetch_script[] =
    "if ARGV[1] == '1' then\n"
    "  local name = KEYS[1]\n"
    "  if redis.call('EXISTS', name) == 0 then name = redis.call('GET', KEYS[2]) end\n"
    "  if name then\n"
    "    local e = redis.call('HMGET', name, 't', 'n', 'f')\n"
    "    local stored = tonumber(e[1])\n"
    "    if stored and e[3] then\n"
    "      local t = redis.call('TIME')\n"
    "      local age = t[1] * 1000 + math.floor(t[2] / 1000) - stored\n"
    "      if age <= tonumber(e[2] == '1' and ARGV[3] or ARGV[2]) then return {1, e[3], name} end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[4] == '' then return {0} end\n"
    "if redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5]) then return {2} end\n"
    "return {3}\n";

/* KEYS: entry, marker, the alias named like the entry, then the aliases. ARGV: frame,
 * negative (1/0), TTL ms, token ('' when no marker is held). */
static const char store_script[] =
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "redis.call('DEL', KEYS[1], KEYS[3])\n"
    "redis.call('HSET', KEYS[1], 't', now, 'n', ARGV[2], 'f', ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "for i = 4, #KEYS do\n"
    "  redis.call('DEL', 'vt:e:' .. string.sub(KEYS[i], 6))\n"
    "  redis.call('SET', KEYS[i], KEYS[1], 'PX', ARGV[3])\n"
    "end\n"
    "if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

/* KEYS: marker. ARGV: token, TTL ms (refresh). */
static const char refresh_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return 0\n";
static const char release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";
/* KEYS: entry, alias. */
static const char drop_script[] =
    "local name = KEYS[1]\n"
    "if redis.call('EXISTS', name) == 0 then name = redis.call('GET', KEYS[2]) end\n"
    "if name then return redis.call('DEL', name) end\n"
    "return 0\n";

typedef struct redis_cache {
    vt_redis *r;
    vt_cache *cache;
    vt_redis_call store_done;  /* a store failed: it does not count as one */
    vt_redis_call marker_done; /* a marker update or a drop failed */
} redis_cache;

typedef struct fetch_ticket {
    vt_ticket ticket;          /* first: the engine clears ticket.job */
    vt_redis_call call;
    vt_cache *cache;
    redis_cache *rc;
} fetch_ticket;

/* ------------------------------------------------------------------ calls */

static bool failed_reply(const redisReply *reply)
{
    return !reply || reply->type == REDIS_REPLY_ERROR;
}

static void on_store(vt_redis_call *call, const redisReply *reply, const char *why)
{
    redis_cache *rc = (redis_cache *)((char *)call - offsetof(redis_cache, store_done));
    if (failed_reply(reply)) {
        vt_cache_stats *st = vt_cache_counters(rc->cache);
        st->stores--;
        st->errors++;
    }
}

static void on_marker(vt_redis_call *call, const redisReply *reply, const char *why)
{
    redis_cache *rc = (redis_cache *)((char *)call - offsetof(redis_cache, marker_done));
    if (failed_reply(reply))
        vt_cache_counters(rc->cache)->errors++;
}

/* "<prefix><key>" in buf (malloc'd when longer than cap); NULL when out of memory. */
static char *prefixed(const char *prefix, const char *key, char *buf, size_t cap)
{
    size_t len = strlen(prefix) + strlen(key) + 1;
    char *out = len <= cap ? buf : malloc(len);
    if (out)
        snprintf(out, len, "%s%s", prefix, key);
    return out;
}

static void free_prefixed(char *s, char *buf)
{
    if (s != buf)
        free(s);
}

/* EVAL script with the keys (each prefixed) and the arguments; -1 when it cannot be sent. */
static int eval(redis_cache *rc, vt_redis_call *call, const char *script, size_t nkeys, const char *const *prefixes,
                const char *const *keys, size_t nargs, const char *const *args, const size_t *arg_lens)
{
    enum { MAX_ARGS = 16 };
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char names[8][160], count[16];
    char *owned[8] = {NULL};
    int argc = 0, rc_send = -1;
    if (3 + nkeys + nargs > MAX_ARGS || nkeys > 8)
        return -1;
    snprintf(count, sizeof count, "%zu", nkeys);
    argv[argc] = "EVAL", lens[argc++] = 4;
    argv[argc] = script, lens[argc++] = strlen(script);
    argv[argc] = count, lens[argc++] = strlen(count);
    for (size_t i = 0; i < nkeys; i++) {
        if (!(owned[i] = prefixed(prefixes[i], keys[i], names[i], sizeof names[i])))
            goto done;
        argv[argc] = owned[i], lens[argc++] = strlen(owned[i]);
    }
    for (size_t i = 0; i < nargs; i++)
        argv[argc] = args[i], lens[argc++] = arg_lens ? arg_lens[i] : strlen(args[i]);
    rc_send = vt_redis_command(rc->r, call, argc, argv, lens);
done:
    for (size_t i = 0; i < nkeys; i++)
        if (owned[i])
            free_prefixed(owned[i], names[i]);
    return rc_send;
}

static void ms(char out[32], double seconds)
{
    snprintf(out, 32, "%.0f", seconds * 1000);
}

/* ------------------------------------------------------------- operations */

static void redis_drop(void *be, vt_cache *c, const char *key);

static void on_fetch(vt_redis_call *call, const redisReply *reply, const char *why)
{
    fetch_ticket *t = (fetch_ticket *)((char *)call - offsetof(fetch_ticket, call));
    vt_job *j = t->ticket.job;
    if (j) {
        if (failed_reply(reply) || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
            reply->element[0]->type != REDIS_REPLY_INTEGER)
            vt_cache_answer(t->cache, j, VT_FETCH_ERROR, NULL, 0, NULL);
        else if (reply->element[0]->integer == 1 && reply->elements == 3 &&
                 reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING &&
                 strncmp(reply->element[2]->str, ENTRY, strlen(ENTRY)) == 0) {
            const char *name = reply->element[2]->str + strlen(ENTRY);
            if (vt_cache_answer(t->cache, j, VT_FETCH_HIT, reply->element[1]->str, reply->element[1]->len, name))
                redis_drop(t->rc, t->cache, name);
        } else {
            long long answer = reply->element[0]->integer;
            vt_cache_answer(t->cache, j, answer == 2 ? VT_FETCH_LEASED : answer == 3 ? VT_FETCH_BUSY : VT_FETCH_FREE,
                            NULL, 0, NULL);
        }
    }
    free(t);
}

static void redis_fetch(void *be, vt_cache *c, vt_job *j, bool want_entry, double max_age, double max_age_negative,
                        const char *token)
{
    redis_cache *rc = be;
    fetch_ticket *t = calloc(1, sizeof *t);
    if (!t) {
        vt_cache_answer(c, j, VT_FETCH_ERROR, NULL, 0, NULL);
        return;
    }
    t->call.done = on_fetch;
    t->cache = c;
    t->rc = rc;
    t->ticket.job = j;
    char age[32], age_negative[32], ttl[32];
    ms(age, max_age);
    ms(age_negative, max_age_negative);
    ms(ttl, VT_LEASE_TTL);
    const char *prefixes[] = {ENTRY, ALIAS, MARKER};
    const char *keys[] = {j->cache.key, j->cache.key, j->cache.key};
    const char *args[] = {want_entry ? "1" : "0", age, age_negative, token ? token : "", ttl};
    j->ticket = &t->ticket;
    if (eval(rc, &t->call, fetch_script, 3, prefixes, keys, 5, args, NULL) < 0) {
        free(t);
        vt_cache_answer(c, j, VT_FETCH_ERROR, NULL, 0, NULL); /* clears j->ticket */
    }
}

static bool redis_store(void *be, vt_cache *c, const char *key, const char *const *aliases, size_t n_aliases,
                        const char *frame, size_t len, bool negative, double ttl, const char *token)
{
    redis_cache *rc = be;
    const char *prefixes[3 + 4] = {ENTRY, MARKER, ALIAS, ALIAS, ALIAS, ALIAS, ALIAS};
    const char *keys[3 + 4] = {key, key, key};
    size_t nkeys = 3;
    for (size_t i = 0; i < n_aliases && nkeys < sizeof keys / sizeof *keys; i++)
        keys[nkeys++] = aliases[i];
    char ttl_ms[32];
    ms(ttl_ms, ttl);
    const char *args[] = {frame, negative ? "1" : "0", ttl_ms, token ? token : ""};
    const size_t lens[] = {len, 1, strlen(ttl_ms), token ? strlen(token) : 0};
    if (eval(rc, &rc->store_done, store_script, nkeys, prefixes, keys, 4, args, lens) < 0) {
        vt_cache_counters(c)->errors++;
        return false;
    }
    vt_cache_counters(c)->stores++; /* taken back if Redis refuses it */
    return true; /* the script gives the marker up with the entry */
}

static void marker_call(redis_cache *rc, vt_cache *c, const char *script, const char *key, const char *token,
                        bool with_ttl)
{
    char ttl[32];
    ms(ttl, VT_LEASE_TTL);
    const char *prefixes[] = {MARKER};
    const char *keys[] = {key};
    const char *args[] = {token, ttl};
    if (eval(rc, &rc->marker_done, script, 1, prefixes, keys, with_ttl ? 2 : 1, args, NULL) < 0)
        vt_cache_counters(c)->errors++;
}

static void redis_refresh(void *be, vt_cache *c, const char *key, const char *token)
{
    marker_call(be, c, refresh_script, key, token, true);
}

static void redis_release(void *be, vt_cache *c, const char *key, const char *token)
{
    marker_call(be, c, release_script, key, token, false);
}

static void redis_drop(void *be, vt_cache *c, const char *key)
{
    const char *prefixes[] = {ENTRY, ALIAS};
    const char *keys[] = {key, key};
    if (eval(be, &((redis_cache *)be)->marker_done, drop_script, 2, prefixes, keys, 0, NULL, NULL) < 0)
        vt_cache_counters(c)->errors++;
}

static void redis_free(void *be)
{
    redis_cache *rc = be;
    vt_redis_free(rc->r);
    free(rc);
}

void *vt_cache_redis_new(vt_redis *r, vt_cache *c)
{
    redis_cache *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->r = r;
    rc->cache = c;
    rc->store_done.done = on_store;
    rc->marker_done.done = on_marker;
    return rc;
}

const vt_cache_backend vt_cache_redis = {
    "redis", redis_fetch, redis_store, redis_refresh, redis_release, redis_drop, redis_free,
};
