/* A Redis connection on the engine: hiredis' asynchronous context with our own
 * event adapter (its hooks add and remove the socket on the engine's epoll
 * set), a deadline for connecting and for each reply, and reconnection on use
 * after a failure. See redis.h. */
#include "redis.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#define DEFAULT_PORT 6379
#define RETRY_PAUSE 0.5   /* seconds between two attempts to connect */
#define CLOSE_FLUSH 0.1   /* seconds a closing connection may spend writing what is left */

struct vt_redis {
    vt_watcher w;               /* first member: the engine hands it back */
    char *host, *user, *password;
    int port, db;
    char name[320];             /* the URL as shown: no password */
    double timeout;
    redisAsyncContext *ac;      /* NULL while disconnected */
    bool connected;
    size_t outstanding;         /* replies awaited */
    double deadline;            /* monotonic: connecting, or the next reply, must be done by then */
    double retry_at;            /* monotonic: no new connection before */
    vt_redis_call setup;        /* AUTH and SELECT */
    char why[640];
};

/* ----------------------------------------------------------------- URL */

static int hex_value(char c)
{
    return isdigit((unsigned char)c) ? c - '0' : isxdigit((unsigned char)c) ? (tolower((unsigned char)c) - 'a' + 10) : -1;
}

/* A malloc'd copy of s[0..len) with %XX decoded; NULL on a bad escape or a NUL. */
static char *decode_part(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
        int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

static int bad_url(vt_err *e, const char *why)
{
    vt_err_set(e, "InvalidArgument", "not a Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB]): %s", why);
    return -1;
}

static int parse_url(vt_redis *r, const char *url, vt_err *e)
{
    if (strncmp(url, "redis://", 8) != 0)
        return bad_url(e, "it must start with redis://");
    const char *auth = url + 8, *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p; /* the last one: a raw '@' in the password stays inside the user part */
    const char *host = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (!colon)
            return bad_url(e, "the part before '@' must be [USER]:PASSWORD");
        if (colon > auth && !(r->user = decode_part(auth, (size_t)(colon - auth))))
            return bad_url(e, "bad %-escape in the user name");
        if (!(r->password = decode_part(colon + 1, (size_t)(at - colon - 1))))
            return bad_url(e, "bad %-escape in the password");
        host = at + 1;
    }
    const char *port = NULL, *host_end;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close)
            return bad_url(e, "unclosed '[' in the host");
        host_end = close + 1;
        if (host_end < end && *host_end != ':')
            return bad_url(e, "junk after the IPv6 address");
        r->host = strndup(host + 1, (size_t)(close - host - 1));
    } else {
        host_end = memchr(host, ':', (size_t)(end - host));
        if (!host_end)
            host_end = end;
        r->host = strndup(host, (size_t)(host_end - host));
    }
    if (!r->host || !*r->host)
        return bad_url(e, "no host");
    if (host_end < end)
        port = host_end + 1;
    r->port = DEFAULT_PORT;
    if (port) {
        char *stop;
        long p = strtol(port, &stop, 10);
        if (stop != end || p < 1 || p > 65535 || !isdigit((unsigned char)*port))
            return bad_url(e, "the port must be a number from 1 to 65535");
        r->port = (int)p;
    }
    r->db = 0;
    if (*end == '/' && end[1]) {
        char *stop;
        long db = strtol(end + 1, &stop, 10);
        if (*stop || db < 0 || db > 1000000 || !isdigit((unsigned char)end[1]))
            return bad_url(e, "the database must be a number");
        r->db = (int)db;
    } else if (*end && strcmp(end, "/") != 0)
        return bad_url(e, "no query or fragment is taken");
    bool v6 = strchr(r->host, ':') != NULL;
    snprintf(r->name, sizeof r->name, "redis://%s%s%s%s%s:%d/%d", r->password && r->user ? r->user : "",
             r->password ? ":***@" : "", v6 ? "[" : "", r->host, v6 ? "]" : "", r->port, r->db);
    return 0;
}

/* ------------------------------------------------------- event adapter */

static void want(vt_redis *r, int add, int remove)
{
    if (!r->ac)
        return;
    vt_engine_watch_fd(&r->w, r->ac->c.fd, (r->w.events | add) & ~remove);
}

static void add_read(void *data) { want(data, VT_WANT_READ, 0); }
static void del_read(void *data) { want(data, 0, VT_WANT_READ); }
static void add_write(void *data) { want(data, VT_WANT_WRITE, 0); }
static void del_write(void *data) { want(data, 0, VT_WANT_WRITE); }

/* hiredis is about to free the context (after failing the replies still
 * awaited): forget its socket. */
static void on_cleanup(void *data)
{
    vt_redis *r = data;
    vt_engine_watch_fd(&r->w, -1, 0);
    r->ac = NULL;
    r->connected = false;
    r->outstanding = 0;
}

/* Remembers why the connection failed ("<url>: <what>[: <detail>]"); no new one for a while. */
static void note_failure(vt_redis *r, const char *what, const char *detail)
{
    snprintf(r->why, sizeof r->why, "%s: %s%s%s", r->name, what, detail ? ": " : "", detail ? detail : "");
    r->retry_at = vt_monotonic() + RETRY_PAUSE;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    vt_redis *r = ac->data;
    if (status != REDIS_OK)
        note_failure(r, "cannot connect", ac->errstr);
    else {
        r->connected = true;
        r->deadline = vt_monotonic() + r->timeout;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    vt_redis *r = ac->data;
    if (status != REDIS_OK)
        note_failure(r, "connection lost", ac->errstr);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    vt_redis *r = ac->data;
    if (r->outstanding > 0)
        r->outstanding--;
    r->deadline = vt_monotonic() + r->timeout;
    if (!reply && ac->err && !r->why[0])
        note_failure(r, ac->errstr, NULL);
    vt_redis_call *call = privdata;
    if (call)
        call->done(call, reply, reply ? NULL : r->why);
}

/* AUTH or SELECT refused: the commands after it would fail too. */
static void on_setup(vt_redis_call *call, const redisReply *reply, const char *why)
{
    vt_redis *r = (vt_redis *)((char *)call - offsetof(vt_redis, setup));
    if (reply && reply->type == REDIS_REPLY_ERROR && r->ac) {
        note_failure(r, reply->str, NULL);
        redisAsyncFree(r->ac); /* inside a callback: hiredis frees it once this returns */
    }
}

static void on_io(vt_watcher *w, int ready)
{
    vt_redis *r = (vt_redis *)w;
    if (r->ac && (ready & VT_WANT_WRITE))
        redisAsyncHandleWrite(r->ac);
    if (r->ac && (ready & VT_WANT_READ))
        redisAsyncHandleRead(r->ac);
}

static bool waiting(const vt_redis *r)
{
    return r->ac && (!r->connected || r->outstanding > 0);
}

static double due(vt_watcher *w)
{
    vt_redis *r = (vt_redis *)w;
    return waiting(r) ? r->deadline : -1;
}

static void tick(vt_watcher *w, double mono)
{
    vt_redis *r = (vt_redis *)w;
    if (waiting(r) && mono > r->deadline) {
        char what[64];
        snprintf(what, sizeof what, "no answer within %gs", r->timeout);
        note_failure(r, what, NULL);
        redisAsyncFree(r->ac); /* fails what is awaited; on_cleanup forgets it */
    }
}

static int send_setup(vt_redis *r)
{
    char db[24];
    const char *argv[3];
    size_t lens[3];
    if (r->password) {
        int argc = 0;
        argv[argc] = "AUTH", lens[argc++] = 4;
        if (r->user)
            argv[argc] = r->user, lens[argc++] = strlen(r->user);
        argv[argc] = r->password, lens[argc++] = strlen(r->password);
        if (redisAsyncCommandArgv(r->ac, on_reply, &r->setup, argc, argv, lens) != REDIS_OK)
            return -1;
        r->outstanding++;
    }
    if (r->db != 0) {
        snprintf(db, sizeof db, "%d", r->db);
        argv[0] = "SELECT", lens[0] = 6;
        argv[1] = db, lens[1] = strlen(db);
        if (redisAsyncCommandArgv(r->ac, on_reply, &r->setup, 2, argv, lens) != REDIS_OK)
            return -1;
        r->outstanding++;
    }
    return 0;
}

static int connect_now(vt_redis *r)
{
    double mono = vt_monotonic();
    if (!r->w.engine || mono < r->retry_at)
        return -1; /* r->why says why */
    r->why[0] = '\0';
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        note_failure(r, "cannot connect", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = on_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->connected = false;
    r->outstanding = 0;
    r->deadline = mono + r->timeout;
    if (send_setup(r) < 0) {
        note_failure(r, "cannot send AUTH or SELECT", NULL);
        redisAsyncFree(ac);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ API */

vt_redis *vt_redis_new(vt_engine *eng, const char *url, double timeout, vt_err *e)
{
    vt_redis *r = calloc(1, sizeof *r);
    if (!r) {
        vt_err_oom(e, "for a Redis connection");
        return NULL;
    }
    r->setup.done = on_setup;
    r->timeout = timeout;
    r->w.on_io = on_io;
    r->w.due = due;
    r->w.tick = tick;
    if (parse_url(r, url, e) < 0) {
        vt_redis_free(r);
        return NULL;
    }
    vt_engine_watch(eng, &r->w);
    return r;
}

void vt_redis_free(vt_redis *r)
{
    if (!r)
        return;
    vt_engine_unwatch(&r->w);
    double stop = vt_monotonic() + CLOSE_FLUSH;
    while (r->ac && (!r->connected || sdslen(r->ac->c.obuf) > 0)) {
        double left = stop - vt_monotonic();
        struct pollfd p = {r->ac->c.fd, POLLOUT, 0};
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0)
            break;
        redisAsyncHandleWrite(r->ac);
    }
    if (r->ac)
        redisAsyncFree(r->ac);
    if (r->password) {
        memset(r->password, 0, strlen(r->password));
        free(r->password);
    }
    free(r->user);
    free(r->host);
    free(r);
}

const char *vt_redis_name(const vt_redis *r) { return r->name; }

const char *vt_redis_why(const vt_redis *r) { return r->why[0] ? r->why : "Redis is not reachable"; }

int vt_redis_command(vt_redis *r, vt_redis_call *call, int argc, const char **argv, const size_t *lens)
{
    if (!r->ac && connect_now(r) < 0)
        return -1;
    if (r->connected && r->outstanding == 0)
        r->deadline = vt_monotonic() + r->timeout;
    if (redisAsyncCommandArgv(r->ac, on_reply, call, argc, argv, lens) != REDIS_OK) {
        snprintf(r->why, sizeof r->why, "%s: the connection is closing", r->name);
        return -1;
    }
    r->outstanding++;
    /* Written now rather than at the next step: a command nobody waits for (a
     * hold, a store) must reach Redis even if this process does nothing more.
     * Not from inside a reply's callback: a failed write would free the context
     * under hiredis' feet (the engine writes it at its next step). */
    if (r->connected && !(r->ac->c.flags & REDIS_IN_CALLBACK))
        redisAsyncHandleWrite(r->ac);
    return 0;
}
