/* A Redis connection on the engine: hiredis' asynchronous context with our own
 * event adapter (its hooks add and remove the socket on the engine's epoll
 * set), a deadline for connecting and for each reply, and reconnection on use
 * after a failure. A host name is resolved by a thread of ours, never on the
 * host loop (hiredis' own getaddrinfo would block it): hiredis is handed the
 * address. See redis.h. */
#include "redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hiredis/async.h>

#define DEFAULT_PORT 6379
#define RETRY_PAUSE 0.5   /* seconds between two attempts to connect */
#define CLOSE_FLUSH 0.1   /* seconds a closing connection may spend writing what is left */

typedef struct resolution resolution;

/* A command given while the host name is being resolved, sent once connected. */
typedef struct queued {
    struct queued *next;
    vt_redis_call *call;
    char *cmd;                  /* in Redis' protocol (redisFormatCommandArgv) */
    int len;
} queued;

struct vt_redis {
    vt_watcher w;               /* first member: the engine hands it back */
    char *host, *user, *password;
    int port, db;
    bool host_is_address;       /* an IP address: nothing to resolve */
    char name[320];             /* the URL as shown: no password */
    double timeout;
    resolution *resolving;      /* the host name's resolution under way, or NULL */
    queued *queue, **queue_end; /* the commands waiting for it */
    redisAsyncContext *ac;      /* NULL while disconnected */
    bool connected;
    size_t outstanding;         /* replies awaited */
    double deadline;            /* monotonic: connecting (resolving included), or the next reply, must be done by then */
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
    unsigned char address[sizeof(struct in6_addr)];
    r->host_is_address = inet_pton(AF_INET, r->host, address) == 1 || inet_pton(AF_INET6, r->host, address) == 1;
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

/* ------------------------------------------------------------ resolving */

/* A host name's resolution: a thread runs getaddrinfo (IPv4 first, then IPv6, as
 * hiredis does) and signals an eventfd the engine watches. A connection given
 * up meanwhile (closed, or past its deadline) leaves it to the thread, which
 * frees it when getaddrinfo returns. done and abandoned are under resolve_lock. */
struct resolution {
    pthread_t thread;
    int fd;                           /* eventfd: readable once done */
    char *host;
    int rc;                           /* getaddrinfo's */
    char address[INET6_ADDRSTRLEN];   /* the first address found */
    bool done, abandoned;
};

static pthread_mutex_t resolve_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

static void resolution_free(resolution *res)
{
    close(res->fd);
    free(res->host);
    free(res);
}

static void *resolve(void *arg)
{
    resolution *res = arg;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *found = NULL;
    res->rc = getaddrinfo(res->host, NULL, &hints, &found);
    if (res->rc != 0) {
        hints.ai_family = AF_INET6;
        res->rc = getaddrinfo(res->host, NULL, &hints, &found);
    }
    if (res->rc == 0) {
        const void *a = found->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)found->ai_addr)->sin_addr
                                                    : (const void *)&((struct sockaddr_in6 *)found->ai_addr)->sin6_addr;
        inet_ntop(found->ai_family, a, res->address, sizeof res->address);
        freeaddrinfo(found);
    }
    pthread_mutex_lock(&resolve_lock);
    bool abandoned = res->abandoned;
    res->done = true;
    uint64_t one = 1;
    if (!abandoned && write(res->fd, &one, sizeof one) != sizeof one)
        res->rc = EAI_SYSTEM; /* unheard of for an eventfd; the connection's deadline would end the wait */
    pthread_mutex_unlock(&resolve_lock);
    if (abandoned)
        resolution_free(res);
    return NULL;
}

/* A resolver thread may outlive the Lua state that closes this module: the
 * module stays mapped until the process ends, so that the thread can return. */
static void pin_module(void)
{
    Dl_info info;
    if (dladdr((void *)resolve, &info) && info.dli_fname)
        dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

/* Starts resolving r's host, watched by the engine; -1 when it cannot start. */
static int resolve_start(vt_redis *r)
{
    pthread_once(&pin_once, pin_module);
    resolution *res = calloc(1, sizeof *res);
    if (!res)
        return -1;
    res->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (res->fd < 0 || !(res->host = strdup(r->host)) || pthread_create(&res->thread, NULL, resolve, res) != 0) {
        if (res->fd >= 0)
            close(res->fd);
        free(res->host);
        free(res);
        return -1;
    }
    r->resolving = res;
    vt_engine_watch_fd(&r->w, res->fd, VT_WANT_READ);
    return 0;
}

/* Ends r's resolution: returns it when its thread is done (joined: the caller frees
 * it), else leaves it to the thread and returns NULL. */
static resolution *resolve_end(vt_redis *r)
{
    resolution *res = r->resolving;
    r->resolving = NULL;
    vt_engine_watch_fd(&r->w, -1, 0);
    pthread_mutex_lock(&resolve_lock);
    bool done = res->done;
    res->abandoned = !done;
    pthread_t thread = res->thread; /* res is the thread's to free once unlocked */
    pthread_mutex_unlock(&resolve_lock);
    if (!done) {
        pthread_detach(thread);
        return NULL;
    }
    pthread_join(thread, NULL);
    return res;
}

/* ----------------------------------------------------------- the queue */

static int enqueue(vt_redis *r, vt_redis_call *call, int argc, const char **argv, const size_t *lens)
{
    queued *q = malloc(sizeof *q);
    if (!q || (q->len = redisFormatCommandArgv(&q->cmd, argc, argv, lens)) < 0) {
        free(q);
        snprintf(r->why, sizeof r->why, "%s: out of memory", r->name);
        return -1;
    }
    q->call = call;
    q->next = NULL;
    *r->queue_end = q;
    r->queue_end = &q->next;
    return 0;
}

/* The queued commands go to the new connection, or fail without one (vt_redis_why says why). */
static void flush_queue(vt_redis *r)
{
    queued *q = r->queue;
    r->queue = NULL;
    r->queue_end = &r->queue;
    while (q) {
        queued *next = q->next;
        if (r->ac && redisAsyncFormattedCommand(r->ac, on_reply, q->call, q->cmd, (size_t)q->len) == REDIS_OK)
            r->outstanding++;
        else if (q->call)
            q->call->done(q->call, NULL, vt_redis_why(r));
        redisFreeCommand(q->cmd);
        free(q);
        q = next;
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

/* Connects to an IP address (hiredis' getaddrinfo of it asks no DNS), AUTH and
 * SELECT first; -1 with r->why on failure. */
static int connect_to(vt_redis *r, const char *address)
{
    redisAsyncContext *ac = redisAsyncConnect(address, r->port);
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
    if (send_setup(r) < 0) {
        note_failure(r, "cannot send AUTH or SELECT", NULL);
        redisAsyncFree(ac);
        return -1;
    }
    return 0;
}

/* Starts a connection: to an address at once, else once its host name is resolved. */
static int connect_now(vt_redis *r)
{
    double mono = vt_monotonic();
    if (!r->w.engine || mono < r->retry_at)
        return -1; /* r->why says why */
    r->why[0] = '\0';
    r->deadline = mono + r->timeout;
    if (r->host_is_address)
        return connect_to(r, r->host);
    if (resolve_start(r) < 0) {
        note_failure(r, "cannot resolve the host name", "no thread for it");
        return -1;
    }
    return 0;
}

/* The resolution is over (its eventfd is signalled once done): connect, then send what waited. */
static void resolved(vt_redis *r)
{
    resolution *res = resolve_end(r);
    if (res->rc != 0)
        note_failure(r, "cannot resolve the host name", gai_strerror(res->rc));
    else
        connect_to(r, res->address);
    resolution_free(res);
    flush_queue(r);
}

static void on_io(vt_watcher *w, int ready)
{
    vt_redis *r = (vt_redis *)w;
    if (r->resolving) {
        resolved(r);
        return;
    }
    if (r->ac && (ready & VT_WANT_WRITE))
        redisAsyncHandleWrite(r->ac);
    if (r->ac && (ready & VT_WANT_READ))
        redisAsyncHandleRead(r->ac);
}

static bool waiting(const vt_redis *r)
{
    return r->resolving || (r->ac && (!r->connected || r->outstanding > 0));
}

static double due(vt_watcher *w)
{
    vt_redis *r = (vt_redis *)w;
    return waiting(r) ? r->deadline : -1;
}

/* Gives the resolution under way up (its thread finishes alone) and fails what waited for it. */
static void resolve_abandon(vt_redis *r)
{
    resolution *res = resolve_end(r);
    if (res)
        resolution_free(res);
    flush_queue(r);
}

static void tick(vt_watcher *w, double mono)
{
    vt_redis *r = (vt_redis *)w;
    if (waiting(r) && mono > r->deadline) {
        char what[64];
        snprintf(what, sizeof what, "no answer within %gs", r->timeout);
        if (r->resolving) {
            note_failure(r, "cannot resolve the host name", what);
            resolve_abandon(r);
        } else {
            note_failure(r, what, NULL);
            redisAsyncFree(r->ac); /* fails what is awaited; on_cleanup forgets it */
        }
    }
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
    r->queue_end = &r->queue;
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
    if (r->resolving)
        resolve_abandon(r);
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
    if (!r->ac && !r->resolving && connect_now(r) < 0)
        return -1;
    if (r->resolving)
        return enqueue(r, call, argc, argv, lens);
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
