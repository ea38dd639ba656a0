/* A Redis connection driven by a client's engine (redis.c), for the cache's
 * Redis backend (cache_redis.c) and the Redis limiter (limiter_redis.c).
 *
 * hiredis' asynchronous API on the engine's epoll set: nothing here blocks the
 * host loop (a host name is resolved on a thread, the engine watching for its
 * end). The connection is made on first use and made again after a failure
 * (not before RETRY_PAUSE); while it is down, commands fail at once. */
#ifndef VT_REDIS_H
#define VT_REDIS_H

#include "vt.h"

#include <hiredis/hiredis.h>

typedef struct vt_redis vt_redis;

/* A command's completion. reply is NULL when the connection failed or gave up
 * waiting (why says what happened; it never holds the password). Runs inside
 * hiredis' read handler: C data only, no new command on this connection. */
typedef struct vt_redis_call vt_redis_call;
struct vt_redis_call {
    void (*done)(vt_redis_call *call, const redisReply *reply, const char *why);
};

/* Parses "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]" (user and password may be
 * percent-encoded; HOST may be [IPv6]); connects on first use. timeout bounds
 * the connection and each reply. NULL with e (InvalidArgument) on a bad URL. */
vt_redis *vt_redis_new(vt_engine *eng, const char *url, double timeout, vt_err *e);
/* Writes what is still buffered (for at most a tenth of a second: the last
 * stores and releases of a closing client), then closes. */
void vt_redis_free(vt_redis *r);
/* "redis://[USER:***@]HOST:PORT/DB": the URL as shown (options, messages). */
const char *vt_redis_name(const vt_redis *r);
/* Sends a command (binary-safe arguments), written at once when connected (kept
 * until then while the host name is resolved).
 * call->done runs with its reply (at once when that write fails); call NULL:
 * the reply is not wanted. Returns -1 when the command cannot be sent (the
 * connection is down): call is not used, vt_redis_why says why. */
int vt_redis_command(vt_redis *r, vt_redis_call *call, int argc, const char **argv, const size_t *lens);
const char *vt_redis_why(const vt_redis *r);

#endif
