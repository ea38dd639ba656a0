/* The client handle, shared by the files that implement its methods (the
 * file map is in vt.h): private to them. */
#ifndef VT_CLIENT_H
#define VT_CLIENT_H

#include "vt.h"

#define VT_JOB_MT "vt.job"
#define VT_MAX_WINDOWS 19 /* requests_per_minute/day/month and 16 `rate` windows */

typedef struct vt_client {
    vt_engine *engine;          /* NULL once closed */
    vt_limiter *limiter;
    char *apikey;               /* never printed */
    size_t apikey_len;
    char *base_url;             /* no trailing slash */
    struct curl_slist *v3_headers, *v2_headers; /* every API request's, shared by its jobs */
    char *quota_path;           /* NULL when kept in memory */
    char api[3];                /* "v3" or "v2" */
    vt_transport transport;
    vt_retry_policy policy;
    double poll_interval, poll_timeout;
    vt_window windows[VT_MAX_WINDOWS]; /* the limiter's windows, as given (for c:options) */
    size_t nwin;
    bool per_minute;            /* windows[0] came from requests_per_minute */
    enum { VT_BLOCK, VT_YIELD, VT_YIELD_FN } mode; /* VT_YIELD_FN: uservalue 1 is the function */
} vt_client;

/* Raises "attempt to use a closed vt client" for a closed one. */
vt_client *vt_client_check(lua_State *L, int idx);

/* A job userdata (VT_JOB_MT, its __gc frees everything the job owns), pushed. */
vt_job *vt_job_push(lua_State *L);
/* Prepares a request to the API: method, path under the base URL (already
 * escaped, starting with '/'), an optional query (escaped, without '?').
 * v3 jobs share the client's headers (Accept, x-apikey); v2 ones carry the key
 * in their query or body. */
void vt_client_prepare(lua_State *L, vt_client *c, vt_job *j, const char *method,
                       const char *path, const char *query);
/* Starts the n jobs at stack[first..first+n-1] (those not yet started) and
 * continues with then(L, LUA_OK, ctx) once all are done, the stack as it is
 * now. Outside a coroutine, or without the client's `yield` option, it blocks
 * on the engine; inside one it yields (the client, or through the client's
 * yield function) and resumes where it stopped. client_idx may be an upvalue
 * index. Use as `return vt_client_await(...)`. */
int vt_client_await(lua_State *L, vt_client *c, int client_idx, int first, int n, lua_KContext ctx,
                    lua_KFunction then);
/* Seconds between two calls of a progress function while a transfer runs. */
#define VT_PROGRESS_INTERVAL 0.25
/* Pushes the arguments of a progress function about job j (done bytes, total bytes) and returns
 * their count; 0 pushes nothing and skips the call. `ended`: the transfer is over (then only a
 * success has something to say). Reads C state only: the job's counters, its file, curl's info. */
typedef int (*vt_progress_args)(lua_State *L, vt_job *j, bool ended);
/* vt_client_await for the one job on the stack top, watched by the progress function at
 * progress_idx (0 or nil: none, plain vt_client_await). While the job runs the function is
 * called every VT_PROGRESS_INTERVAL seconds, and once more when it has ended, with what args
 * pushes; never from a curl callback. It may yield in coroutine mode. A call that returns false
 * cancels: the transfer is aborted and unlinked at once, the job fails with Cancelled, and `then`
 * runs as after any failure. */
int vt_client_await_progress(lua_State *L, vt_client *c, int client_idx, int progress_idx, vt_progress_args args,
                             lua_KContext ctx, lua_KFunction then);
/* Starts the n jobs at stack[first..] and blocks until they are done (never
 * yields): for loops that must not grow the C stack call by call. */
void vt_client_run(lua_State *L, vt_client *c, int first, int n);
/* Pushes a timer job (done after secs) for vt_client_await. */
vt_job *vt_job_push_timer(lua_State *L, double secs);
/* Whether a call may yield here (the client's `yield` option, inside a coroutine). */
bool vt_client_may_yield(lua_State *L, vt_client *c);
/* Yields one turn (as vt_client_await does), then continues with then(L, LUA_OK, ctx). */
int vt_client_suspend(lua_State *L, vt_client *c, int client_idx, lua_KContext ctx, lua_KFunction then);
/* Turns a finished job into Lua values: the decoded body (1 value) or nil, err
 * (2 values). Errors carry the service's code where it sent one; the key is
 * scrubbed from every message. A look-up (a job with a cache key) answered by
 * a corrupt cache entry returns -1, pushing nothing: the job is ready to be
 * awaited again (vt_cache_settle). */
int vt_client_result(lua_State *L, vt_client *c, vt_job *j);
/* Same, but returns body.data when it has the shape the call expects (keeping body.meta in
 * it when keep_meta); another answer is InvalidResponse. */
int vt_client_data_result(lua_State *L, vt_client *c, vt_job *j, vt_shape shape, bool keep_meta);
/* Fills e from a failed job (transport error, HTTP error, not JSON); false if it succeeded. */
bool vt_client_job_error(lua_State *L, vt_client *c, vt_job *j, vt_err *e);

/* Sets e->message from the string at idx with the key replaced before any cut. */
void vt_client_redacted_message(lua_State *L, vt_client *c, int idx, vt_err *e);
/* Runs the job on the stack top (the client is argument 1), then returns its
 * body's data of that shape, or nil, err: `return vt_client_await_data(L, c, shape)`. */
int vt_client_await_data(lua_State *L, vt_client *c, vt_shape shape);
/* The same, watched by the progress function at progress_idx (vt_client_await_progress). */
int vt_client_await_data_progress(lua_State *L, vt_client *c, vt_shape shape, int progress_idx,
                                  vt_progress_args args);

/* request.c: request building blocks (each raises OutOfMemory when malloc fails) */
/* A malloc'd copy of s. */
char *vt_dup(lua_State *L, const char *s);
/* Appends a header line to the job. */
void vt_job_add_header(lua_State *L, vt_job *j, const char *line);
/* A malloc'd copy of the Lua string at idx (its length in *len when len is not NULL). */
char *vt_dup_lua(lua_State *L, int idx, size_t *len);
/* c:request's path: '/'-first, one line of visible characters (also once percent-decoded), not
 * /vtapi/, and under /api/v3 however a server reads it (percent-decoded, repeatedly; a backslash
 * for '/'; dot segments resolved). 0, or -1 with e filled (InvalidArgument). */
int vt_check_api_path(const char *path, size_t len, vt_err *e);
/* The job answered a redirect (3xx with a Location) that the caller follows itself. */
bool vt_job_redirected(const vt_job *j);
/* Prepares the fresh job `to` to GET location WITHOUT the key (libcurl would forward
 * custom headers) and without taking quota: redirects lead to the storage host, not the
 * API. Returns 0, or -1 with e filled (InvalidResponse) when location is not http(s). */
int vt_job_prepare_redirect(lua_State *L, vt_job *to, const char *location, vt_err *e);
/* The query string at query_idx as the job's urlencoded form body. */
void vt_job_set_form(lua_State *L, vt_job *j, int query_idx);

/* submit.c, shared with v2.c */
/* The upload source at idx (a path, {data =, name =} or an open remote file), pushed.
 * Returns it, or NULL with e filled (pushing nothing). */
vt_source *vt_push_upload_source(lua_State *L, int idx, vt_err *e);
/* Frames src as the "file" part of a multipart body after one optional text field. */
void vt_job_set_multipart(lua_State *L, vt_job *j, vt_source *src, const char *field_name, const char *field_value);
/* The progress of an upload (vt_progress_args): the file's bytes sent so far, and its size. */
int vt_upload_progress(lua_State *L, vt_job *j, bool ended);
/* A URL to submit at idx: trimmed, refanged, a URL by vt_is_url; pushed. Returns 0, or -1
 * with e filled (pushing nothing) when it is malformed. */
int vt_push_submit_url(lua_State *L, int idx, vt_err *e);

/* download.c: c:download and v2 file/download; hash at idx, dest at idx+1, opts at idx+2. */
int vt_client_download(lua_State *L, vt_client *c, int idx, bool v2);

/* Each client file adds its methods to the method table at the top of the stack. */
void vt_lookups_register(lua_State *L);
void vt_request_register(lua_State *L);
void vt_submit_register(lua_State *L);
void vt_contribute_register(lua_State *L);
void vt_wait_register(lua_State *L);
void vt_download_register(lua_State *L);
void vt_collections_register(lua_State *L);
void vt_v2_register(lua_State *L);
void vt_await_register(lua_State *L);
void vt_feed_register(lua_State *L); /* feed.c: c:feed, c:follow */

/* limiter_redis.c: c:quota_status of a client whose quota_state is in Redis. */
int vt_client_redis_quota_status(lua_State *L, vt_client *c);

/* v2.c: pushes a prepared GET job for v2 endpoint with the string parameters of
 * the table at params and the key (a look-up for the cache when it is one report). */
vt_job *vt_client_v2_get(lua_State *L, vt_client *c, const char *endpoint, int params);
/* cache_v2.c: a v2 report endpoint's call with several resources (file/report by
 * commas, url/report by newlines) when the client has a cache: the reports it holds
 * come from it, the others from one request, stored one by one; returns the values
 * of the call (the list of reports, in the order asked; or nil, err). -1 (pushing
 * nothing) for any other call. */
int vt_cache_v2_batch(lua_State *L, vt_client *c, const char *endpoint, int params);

#endif
