/* vt: VirusTotal for Lua 5.4. Private header shared by the C core's files.
 *
 * One file per concept:
 *   vt.c          module entry (luaopen_vt), one-time library set-up, vt.versions
 *   indicators.c  vt.url_id, vt.hash_type, vt.refang, vt.ip_version, vt.is_private_ip,
 *                 vt.normalize, and the indicator checks of every call (kinds, ids, paths)
 *   psl.c         vt.registered_domain (libpsl)
 *   errors.c      the error value of SPEC 3.3 (table with code/message/http/..., __tostring), vt.error
 *   json.c        lua-cjson decode with integral numbers handed back as integers; encode;
 *                 vt.decode, vt.encode
 *   digest.c      md5/sha1/sha256 (OpenSSL EVP), streaming; vt.digest
 *   limiter.c     sliding and calendar windows shared across processes through a locked file
 *   engine.c      curl multi engine on epoll: jobs, transfers, timers, retries
 *   client.c      vt.client: options, the handle, awaiting jobs (blocking or yielding), look-ups
 *   calls.c       the other client methods: submissions, wait, downloads, collections, batch, v2
 *   source.c      upload sources on this machine (a file, a string)
 *   sftp.c        vt.sftp: remote files over SFTP (libssh2, non-blocking)
 *   smb.c         vt.smb_open: remote files on Windows shares (libsmbclient, loaded on first use)
 * client.h is shared by client.c and calls.c only.
 */
#ifndef VT_H
#define VT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include <curl/curl.h>

#include <lua.h>
#include <lauxlib.h>

#define VT_VERSION "0.1.0"

/* Registry names of the metatables. */
#define VT_CLIENT_MT "vt.client"
#define VT_ERROR_MT  "vt.error"

/* ------------------------------------------------------------------ errors */

/* A failure as plain C data, so it can be built where Lua must not be
 * called (inside curl callbacks) and pushed later. Empty strings mean
 * "absent"; http 0 means none; retry_after < 0 means none. */
typedef struct vt_err {
    char code[48];
    char message[512];
    long http;
    double retry_after;
    char curl[48];
    char analysis_id[160];
} vt_err;

void vt_err_set(vt_err *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Pushes the error table (with its metatable). */
void vt_err_push(lua_State *L, const vt_err *e);
/* Pushes nil and the error table; returns 2 for `return vt_err_return(...)`. */
int vt_err_return(lua_State *L, const vt_err *e);
/* Shorthand: nil plus a new error of `code` with a formatted message. */
int vt_fail(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replaces every occurrence of secret (len > 0) in s, in place, by "***". */
void vt_redact(char *s, size_t cap, const char *secret, size_t secret_len);
/* The error metatable; registers vt.error into the table at the top. */
void vt_errors_open(lua_State *L);

/* -------------------------------------------------------------- indicators */

typedef enum { VT_HASH_NONE = 0, VT_HASH_MD5 = 32, VT_HASH_SHA1 = 40, VT_HASH_SHA256 = 64 } vt_hash_kind;

/* Kind of s by length when it is all hex digits (either case), else NONE. */
vt_hash_kind vt_hash_kind_of(const char *s, size_t len);
const char *vt_hash_name(vt_hash_kind k); /* "md5", "sha1", "sha256" or NULL */
/* 4 or 6 when s is a literal IPv4/IPv6 address (no port, no brackets), else 0. */
int vt_ip_version_of(const char *s, size_t len);
bool vt_is_private_ip_str(const char *s, size_t len);
/* A plausible DNS name: labels of [A-Za-z0-9-_], 1..63 each, 253 in all, at least one dot,
 * no leading/trailing hyphen in a label, no empty label (a trailing dot is allowed). */
bool vt_is_domain(const char *s, size_t len);
/* URL-safe unpadded base64 of data into out (needs 4*ceil(len/3)+1 bytes); returns length. */
size_t vt_base64url(const char *data, size_t len, char *out);
/* Pushes the refanged copy of s. */
void vt_push_refanged(lua_State *L, const char *s, size_t len);
/* Percent-encodes s for a path segment or query component into a Lua buffer. */
void vt_add_escaped(luaL_Buffer *b, const char *s, size_t len);
/* Pushes a query string built from the table at idx (nil: pushes ""). */
void vt_push_query(lua_State *L, int idx);
/* Trims ASCII whitespace; returns the trimmed view. */
const char *vt_trim(const char *s, size_t len, size_t *out_len);

typedef enum { VT_KIND_FILE, VT_KIND_URL, VT_KIND_DOMAIN, VT_KIND_IP, VT_KIND_ANALYSIS } vt_kind;
/* The kind named at idx ("file" or "files", ...); raises listing the valid ones. */
vt_kind vt_kind_check(lua_State *L, int idx, bool allow_analysis);
/* Validates and normalises the indicator at idx (trim, refang, lowercase) and
 * pushes its id / its path ("/files/<sha256>"); on malformed data returns 0 with
 * e filled (InvalidArgument) and pushes nothing. Non-strings raise. */
int vt_push_object_id(lua_State *L, vt_kind kind, int idx, vt_err *e);
int vt_push_object_path(lua_State *L, vt_kind kind, int idx, vt_err *e);

/* Registers url_id, hash_type, refang, ip_version, is_private_ip, normalize into the table at the top. */
void vt_indicators_open(lua_State *L);
/* psl.c: registers vt.registered_domain (libpsl) into the table at the top. */
void vt_psl_open(lua_State *L);

/* ------------------------------------------------------------------ digest */

typedef struct vt_digest vt_digest; /* md5 + sha1 + sha256 at once */
vt_digest *vt_digest_new(void);
void vt_digest_update(vt_digest *d, const void *data, size_t len);
/* Writes lowercase hex digests (33, 41 and 65 bytes with NUL). */
void vt_digest_final(vt_digest *d, char md5[33], char sha1[41], char sha256[65]);
void vt_digest_free(vt_digest *d);
/* Lowercase hex SHA-256 of data. */
void vt_sha256_hex(const void *data, size_t len, char out[65]);
/* Registers vt.digest into the table at the top. */
void vt_digest_open(lua_State *L);

/* -------------------------------------------------------------------- json */

/* Decodes JSON text and pushes the value, with every integral number as a Lua
 * integer. Returns 1 on success; on failure pushes nothing, fills e (InvalidResponse)
 * and returns 0. Never raises for bad input. */
int vt_json_decode(lua_State *L, const char *text, size_t len, vt_err *e);
/* Encodes the value at idx; pushes the string. Raises on unencodable values. */
void vt_json_encode(lua_State *L, int idx);
/* Pushes the null sentinel (cjson.null). */
void vt_json_push_null(lua_State *L);
void vt_json_open(lua_State *L); /* loads cjson once per Lua state */
void vt_json_register(lua_State *L); /* vt.decode, vt.encode into the table at the top */

/* ----------------------------------------------------------------- limiter */

typedef enum {
    VT_WIN_SLIDING = 0, /* any `per` seconds */
    VT_WIN_DAY,         /* calendar day, resets 00:00 UTC */
    VT_WIN_MONTH        /* calendar month, resets on the 1st 00:00 UTC */
} vt_window_kind;

typedef struct vt_window {
    vt_window_kind kind;
    int64_t n;    /* requests allowed in the window */
    double per;   /* seconds (sliding); 86400 / 0 for calendar kinds (informative) */
} vt_window;

typedef struct vt_limiter vt_limiter;

/* state_path NULL keeps the windows in this process only. Returns NULL and fills e
 * when the state file cannot be opened or created. */
vt_limiter *vt_limiter_new(const vt_window *w, size_t count, const char *state_path, vt_err *e);
void vt_limiter_free(vt_limiter *l);
/* Takes one slot at wall-clock time `now` if every window has room: returns 1.
 * Otherwise takes nothing, sets *wait to the seconds until a slot may open, returns 0.
 * On I/O failure returns -1 and fills e. */
int vt_limiter_acquire(vt_limiter *l, double now, double *wait, vt_err *e);
/* The service said the quota is spent (v3 429 QuotaExceededError, v2 204): no process
 * sharing the state takes a slot before now + hold seconds. */
int vt_limiter_mark_spent(vt_limiter *l, double now, double hold, vt_err *e);
/* Pushes {windows = {{n=, per=, kind=, used=, next_slot_in=}, ...}, blocked_until=} */
int vt_limiter_push_status(lua_State *L, vt_limiter *l, double now, vt_err *e);

/* ------------------------------------------------------------ upload sources */

/* A stream of known size that an upload pulls from: a local file, a string, a
 * remote file over SFTP (sftp.c) or SMB (smb.c). The engine drives it from
 * curl's read callback, so read must never call Lua and never block for long:
 * a network source returns VT_SOURCE_AGAIN with the fd and the events
 * (VT_WANT_READ / VT_WANT_WRITE) to wait for, and the engine pauses the transfer
 * until the fd is ready. */
#define VT_SOURCE_AGAIN  (-2)
#define VT_SOURCE_ERROR  (-1)
#define VT_WANT_READ  1
#define VT_WANT_WRITE 2

typedef struct vt_source vt_source;
typedef struct vt_source_ops {
    /* > 0 bytes read, 0 at the end, VT_SOURCE_AGAIN (fill *fd, *events) or
     * VT_SOURCE_ERROR (fill e). */
    ptrdiff_t (*read)(vt_source *s, char *buf, size_t len, int *fd, int *events, vt_err *e);
    /* Rewinds to the start (curl may need to resend); returns 0 or -1. */
    int (*rewind)(vt_source *s);
} vt_source_ops;

struct vt_source {
    const vt_source_ops *ops;
    int64_t size;       /* total bytes, known before the upload starts */
    char name[256];     /* file name for the multipart part (basename) */
};

/* Userdata whose metatable has the field __vt_source = true start with a
 * vt_source (the first member of their struct). Returns it, or NULL when idx
 * holds something else or a closed source (ops == NULL). */
vt_source *vt_source_test(lua_State *L, int idx);
/* source.c: push a local file source (0 with e when it cannot be opened) or a
 * source reading the Lua string at data_idx (kept alive by the source). */
int vt_source_push_file(lua_State *L, const char *path, vt_err *e);
int vt_source_push_string(lua_State *L, int data_idx, const char *name);
/* src:read([n]) for every source kind (argument 2 is n): up to n bytes (default
 * 64 KiB), fewer only at the end; nil at the end; nil, err on failure. Blocks,
 * waiting on the source's fd at most `stall` seconds between two bits of
 * progress: for Lua callers and tests, never the engine. */
int vt_source_lua_read(lua_State *L, vt_source *s, double stall);
/* __index of a remote source (key at argument 2): the fields size, name, path
 * and closed, else the method table in upvalue 1. */
int vt_source_index(lua_State *L, const vt_source *s, const char *path, bool closed);

/* ------------------------------------------------------------------ engine */

/* One curl multi handle per client, driven through epoll so that the whole
 * engine is one pollable fd (SPEC 3.5). A job is one logical request: it waits
 * for quota, runs, and on a transient failure waits and runs again, all within
 * its deadline. Jobs live in Lua userdata (the caller keeps them on its stack),
 * so a Lua error anywhere leaves nothing unowned; the engine only links them. */
typedef struct vt_engine vt_engine;

typedef struct vt_transport {
    double timeout, connect_timeout;   /* seconds */
    char *proxy, *cainfo, *user_agent; /* NULL = default */
    bool insecure;
} vt_transport;

typedef struct vt_retry_policy {
    int retries;        /* extra attempts after the first */
    double retry_base;  /* seconds: the first backoff step, doubled each retry */
    double max_wait;    /* seconds a job may spend waiting (quota + backoff) */
    vt_limiter *limiter;/* NULL = no local quota */
} vt_retry_policy;

typedef enum { VT_JOB_IDLE, VT_JOB_QUOTA, VT_JOB_RUNNING, VT_JOB_DONE } vt_job_state;
typedef enum { VT_SINK_MEMORY, VT_SINK_FILE } vt_sink_kind;

typedef struct vt_job vt_job;
struct vt_job {
    /* request, set before vt_job_submit */
    char method[8];
    char *url;                   /* owned */
    struct curl_slist *headers;  /* owned */
    char *body; size_t body_len; /* owned; sent as is */
    /* streamed multipart upload: head + source + tail (all owned but source) */
    char *mp_head, *mp_tail; size_t mp_head_len, mp_tail_len;
    vt_source *source;
    bool counts_quota;           /* takes a limiter slot (API requests do, storage does not) */
    bool streaming;              /* long upload/download: stall timeout instead of a total one */
    bool v2;                     /* HTTP 204 means quota spent */
    double timer;                /* a job without url is a timer: done after this many seconds */
    /* response sink */
    vt_sink_kind sink;
    int sink_fd;                 /* VT_SINK_FILE */
    vt_digest *digest;           /* VT_SINK_FILE: hashes what is written */
    int64_t max_bytes;           /* cap of the body; 0 = default cap */
    /* response */
    long status;
    char *resp; size_t resp_len, resp_cap;
    int64_t resp_total;          /* bytes received (file sink too) */
    char content_type[128];
    char location[8192];         /* a longer redirect fails the job (InvalidResponse) */
    double retry_after_hdr;      /* < 0: absent */
    vt_err err;                  /* code[0] != 0 when the job failed */
    /* bookkeeping */
    vt_job_state state;
    int attempts;
    double deadline, wake_at;    /* monotonic */
    int64_t sent;                /* upload position */
    int src_fd, src_events;      /* source waiting on this fd (paused) */
    void *easy;                  /* CURL * */
    vt_engine *engine;
    const vt_transport *transport; /* the client's; valid while linked */
    const vt_retry_policy *policy;
    vt_job *next, *prev;
    char curl_errbuf[256];
};

vt_engine *vt_engine_new(vt_err *e);
void vt_engine_free(vt_engine *eng);          /* detaches (fails) every linked job */
void vt_job_init(vt_job *j);                   /* zero + defaults; call once on fresh memory */
void vt_job_reset(vt_job *j);                  /* frees owned request/response data, keeps memory */
/* Links the job and starts its life (quota wait first). The job must stay at
 * this address until it is done or released. */
void vt_job_submit(vt_engine *eng, vt_job *j, const vt_transport *t, const vt_retry_policy *p);
/* Unlinks (aborting a running transfer). A done job stays linked until its
 * caller releases it, and keeps vt_engine_timeout at 0 meanwhile: a host loop
 * then resumes that caller even when another call's step finished the job. */
void vt_job_release(vt_job *j);
/* Does what is ready; blocks at most max_block seconds (0 = poll). Returns the
 * number of jobs not yet done. */
int vt_engine_step(vt_engine *eng, double max_block);
int vt_engine_fd(vt_engine *eng);
/* API requests the engine has sent (each attempt that took a quota slot counts). */
uint64_t vt_engine_requests(const vt_engine *eng);
/* Seconds until the engine needs a step even without I/O (-1 = no timer). */
double vt_engine_timeout(vt_engine *eng);

/* ------------------------------------------------------------ remote files */

void vt_sftp_open(lua_State *L); /* sftp.c: registers vt.sftp into the table at the top */
void vt_smb_open(lua_State *L);  /* smb.c: registers vt.smb_open */

/* --------------------------------------------------------------- utilities */

double vt_now(void);        /* wall clock, seconds since the epoch (limiter) */
double vt_monotonic(void);  /* monotonic seconds (timeouts, backoff) */

/* A string argument, strictly: numbers are not converted (a wrong type raises). */
const char *vt_checkstring(lua_State *L, int idx, size_t *len);

/* Strict option tables: raises naming the key when t (at idx) holds a key not in
 * allowed (NULL-terminated) or a value of the wrong type. */
void vt_check_option_keys(lua_State *L, int idx, const char *what, const char *const allowed[]);

#endif
