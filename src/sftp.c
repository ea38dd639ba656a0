/* Remote files over SFTP for uploads: vt.sftp(opts) opens an SSH session
 * (libssh2), checks the server's host key against known_hosts, logs in, and
 * sess:open(path) hands back an upload source (vt.h) for one remote file.
 *
 * libssh2 runs non-blocking from the first packet on. The set-up phases
 * (connect, handshake, authentication, opening a file) wait in poll() loops
 * bounded by the session's timeout; a source's ops->read never waits: it
 * returns VT_SOURCE_AGAIN with the session socket and the direction libssh2
 * is blocked on, so the upload engine can drive it from its event loop.
 *
 * Every source gets its own SFTP channel on the session: libssh2 keeps the
 * state of an interrupted (EAGAIN) read per SFTP channel, not per file
 * handle, so two files sharing one channel could not both be resumed.
 * The sources of one session share its socket and libssh2's transport, so
 * they must be driven from one thread (the Lua state's).
 *
 * Lifetimes: a source keeps its session userdata in a user value, so the
 * session outlives it; the session keeps its open sources in a list and
 * closing the session closes them first. Closing a source (or its session)
 * sets base.ops to NULL, which is how vt_source_test() sees a closed source.
 *
 * Secrets: the password and passphrase are read from the options table and
 * used during vt.sftp() only; they are never copied into the session, never
 * formatted into a message, and never shown by tostring.
 */
#include "vt.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <openssl/evp.h>


#define SFTP_SESSION_MT "vt.sftp.session"
#define SFTP_SOURCE_MT  "vt.sftp.source"

#define DEFAULT_TIMEOUT 30.0
/* Teardown (close, __gc) waits at most this long for a polite goodbye. */
#define CLOSE_TIMEOUT 5.0

typedef struct sftp_source sftp_source;

typedef struct sftp_session {
    LIBSSH2_SESSION *ssh; /* NULL once closed */
    int fd;               /* -1 once closed */
    double timeout;       /* seconds, for every wait */
    bool insecure;        /* the host key was not checked */
    bool handshaken;      /* a disconnect message makes sense */
    bool broken;          /* the socket was shut down: no more waiting */
    sftp_source *sources; /* open sources, closed with the session */
    /* Used by the keyboard-interactive callback during vt.sftp() only. */
    const char *kbd_password;
    size_t kbd_password_len;
    int kbd_rounds;
    char user[256];
    char host[256];
    int port;
} sftp_session;

struct sftp_source {
    vt_source base;       /* first member: the engine sees a vt_source */
    sftp_session *sess;   /* NULL once closed */
    LIBSSH2_SFTP *sftp;   /* this source's own SFTP channel */
    LIBSSH2_SFTP_HANDLE *handle;
    int64_t pos;          /* bytes handed out since the start */
    bool pending;         /* the last libssh2_sftp_read said EAGAIN: resume it first */
    bool restart;         /* a rewind is due once the pending read is drained */
    sftp_source *prev, *next;
    char path[1024];
};

/* ------------------------------------------------------------------ waiting */

/* Waits until fd is ready for events or the deadline passes.
 * Returns 1 when ready (or when poll itself fails, so that the next
 * library call reports the problem), 0 on timeout. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        double left = deadline - vt_monotonic();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int ms = left > 86400 ? 86400000 : (int)(left * 1000) + 1;
        int rc = poll(&p, 1, ms);
        if (rc > 0 || (rc < 0 && errno != EINTR))
            return 1;
    }
}

static short session_events(sftp_session *s)
{
    int dir = libssh2_session_block_directions(s->ssh);
    short ev = 0;
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        ev |= POLLIN;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        ev |= POLLOUT;
    return ev ? ev : POLLIN;
}

static int session_wait(sftp_session *s, double deadline)
{
    return wait_fd(s->fd, session_events(s), deadline);
}

/* Shuts the socket down so that whatever libssh2 still waits for fails at
 * once: teardown must end even when the peer stopped answering. */
static void session_break(sftp_session *s)
{
    if (!s->broken && s->fd >= 0) {
        shutdown(s->fd, SHUT_RDWR);
        s->broken = true;
    }
}

/* Runs a libssh2 call returning int until it stops saying EAGAIN; rc becomes
 * LIBSSH2_ERROR_TIMEOUT when the deadline passes first. */
#define SSH_DRIVE(s, deadline, rc, call)                                  \
    while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN)                       \
        if (!session_wait((s), (deadline))) {                             \
            (rc) = LIBSSH2_ERROR_TIMEOUT;                                 \
            break;                                                        \
        }

/* The same for calls returning a pointer (NULL with EAGAIN as last error);
 * on timeout ptr stays NULL and the last error stays EAGAIN. */
#define SSH_DRIVE_PTR(s, deadline, ptr, call)                             \
    while (!((ptr) = (call)) &&                                           \
           libssh2_session_last_errno((s)->ssh) == LIBSSH2_ERROR_EAGAIN)  \
        if (!session_wait((s), (deadline)))                               \
            break;

/* Teardown calls: past the deadline the socket is shut down and the call
 * gets one more second to fail and free what it holds. */
#define SSH_FINISH(s, deadline, call)                                     \
    do {                                                                  \
        double dl_ = (deadline);                                          \
        while ((call) == LIBSSH2_ERROR_EAGAIN) {                          \
            if (session_wait((s), dl_))                                   \
                continue;                                                 \
            if ((s)->broken)                                              \
                break;                                                    \
            session_break(s);                                             \
            dl_ = vt_monotonic() + 1.0;                                   \
        }                                                                 \
    } while (0)

static double close_deadline(sftp_session *s)
{
    return vt_monotonic() + (s->timeout < CLOSE_TIMEOUT ? s->timeout : CLOSE_TIMEOUT);
}

/* libssh2's own description of the last error. */
static const char *ssh_message(sftp_session *s)
{
    char *msg = NULL;
    libssh2_session_last_error(s->ssh, &msg, NULL, 0);
    return msg && *msg ? msg : "unknown libssh2 error";
}

static bool is_transport_error(int rc)
{
    switch (rc) {
    case LIBSSH2_ERROR_SOCKET_NONE:
    case LIBSSH2_ERROR_SOCKET_SEND:
    case LIBSSH2_ERROR_SOCKET_RECV:
    case LIBSSH2_ERROR_SOCKET_DISCONNECT:
    case LIBSSH2_ERROR_SOCKET_TIMEOUT:
    case LIBSSH2_ERROR_BAD_SOCKET:
    case LIBSSH2_ERROR_BANNER_RECV:
    case LIBSSH2_ERROR_BANNER_SEND:
    case LIBSSH2_ERROR_DECRYPT:
    case LIBSSH2_ERROR_INVALID_MAC:
    case LIBSSH2_ERROR_PROTO:
        return true;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------ sources */

static void source_unlink(sftp_source *src)
{
    sftp_session *s = src->sess;
    if (src->prev)
        src->prev->next = src->next;
    else
        s->sources = src->next;
    if (src->next)
        src->next->prev = src->prev;
    src->prev = src->next = NULL;
}

/* Releases whatever part of a source was acquired; idempotent. */
static void source_release(sftp_source *src)
{
    sftp_session *s = src->sess;
    src->base.ops = NULL;
    if (!s)
        return;
    double deadline = close_deadline(s);
    if (src->handle)
        SSH_FINISH(s, deadline, libssh2_sftp_close_handle(src->handle));
    if (src->sftp)
        SSH_FINISH(s, deadline, libssh2_sftp_shutdown(src->sftp));
    src->handle = NULL;
    src->sftp = NULL;
    source_unlink(src);
    src->sess = NULL;
}

static ptrdiff_t source_again(sftp_source *src, int *fd, int *events)
{
    int dir = libssh2_session_block_directions(src->sess->ssh);
    *fd = src->sess->fd;
    *events = 0;
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        *events |= VT_WANT_READ;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        *events |= VT_WANT_WRITE;
    if (!*events)
        *events = VT_WANT_READ;
    return VT_SOURCE_AGAIN;
}

static void source_read_error(sftp_source *src, ssize_t rc, vt_err *e)
{
    sftp_session *s = src->sess;
    if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
        vt_err_set(e, "RemoteFileError", "reading %s on %s:%d failed (SFTP status %lu)", src->path,
                   s->host, s->port, libssh2_sftp_last_error(src->sftp));
    } else if (is_transport_error((int)rc)) {
        vt_err_set(e, "ConnectionError", "connection to %s:%d lost while reading %s: %s", s->host,
                   s->port, src->path, ssh_message(s));
        session_break(s); /* later calls fail at once, with a clear message */
    } else {
        vt_err_set(e, "RemoteFileError", "reading %s on %s:%d failed: %s", src->path, s->host,
                   s->port, ssh_message(s));
    }
}

/* After EAGAIN: true (with e filled) when the SFTP server closed the channel,
 * which libssh2 1.10 would otherwise answer with EAGAIN forever. */
static bool server_gone(sftp_source *src, vt_err *e)
{
    if (!libssh2_channel_eof(libssh2_sftp_get_channel(src->sftp)))
        return false;
    vt_err_set(e, "ConnectionError", "the SFTP server on %s:%d went away while %s was read", src->sess->host,
               src->sess->port, src->path);
    session_break(src->sess); /* nothing on this session could finish an exchange now */
    return true;
}

/* ops->read: never waits. At most `size` bytes come out in all, so the
 * engine's framing holds even if the remote file grows meanwhile. */
static ptrdiff_t source_read(vt_source *base, char *buf, size_t len, int *fd, int *events, vt_err *e)
{
    sftp_source *src = (sftp_source *)base;
    if (!src->sess) {
        vt_err_set(e, "RemoteFileError", "the SFTP source %s is closed", src->path);
        return VT_SOURCE_ERROR;
    }
    if (src->restart) {
        /* libssh2 must finish an interrupted read before the handle may
         * seek; its bytes belong to the old position and are dropped. */
        while (src->pending) {
            ssize_t rc = libssh2_sftp_read(src->handle, buf, len);
            if (rc == LIBSSH2_ERROR_EAGAIN)
                return server_gone(src, e) ? VT_SOURCE_ERROR : source_again(src, fd, events);
            src->pending = false;
        }
        libssh2_sftp_seek64(src->handle, 0);
        src->pos = 0;
        src->restart = false;
    }
    int64_t left = base->size - src->pos;
    if (left <= 0)
        return 0;
    if ((uint64_t)len > (uint64_t)left)
        len = (size_t)left;
    ssize_t rc = libssh2_sftp_read(src->handle, buf, len);
    if (rc == LIBSSH2_ERROR_EAGAIN && server_gone(src, e))
        return VT_SOURCE_ERROR;
    if (rc == LIBSSH2_ERROR_EAGAIN) {
        src->pending = true;
        return source_again(src, fd, events);
    }
    src->pending = false;
    if (rc < 0) {
        source_read_error(src, rc, e);
        return VT_SOURCE_ERROR;
    }
    if (rc == 0) {
        vt_err_set(e, "RemoteFileError", "%s on %s:%d ended after %lld of %lld bytes (it shrank while read)",
                   src->path, src->sess->host, src->sess->port, (long long)src->pos, (long long)base->size);
        return VT_SOURCE_ERROR;
    }
    src->pos += rc;
    return rc;
}

/* ops->rewind: takes effect on the next read, which may first have to drain
 * an interrupted read without blocking. */
static int source_rewind(vt_source *base)
{
    sftp_source *src = (sftp_source *)base;
    if (!src->sess)
        return -1;
    src->restart = true;
    return 0;
}

static const vt_source_ops sftp_source_ops = {source_read, source_rewind};

static sftp_source *check_source(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SFTP_SOURCE_MT);
}

static sftp_source *check_open_source(lua_State *L, int idx)
{
    sftp_source *src = check_source(L, idx);
    if (!src->sess)
        luaL_error(L, "attempt to use a closed SFTP source");
    return src;
}

/* src:read([n]): up to n bytes (default 64 KiB), fewer only at the end of the
 * file; nil at the end; nil, err on failure. Blocks, bounded by the session
 * timeout between two bits of progress: for Lua callers, not the engine. */
static int source_lua_read(lua_State *L)
{
    sftp_source *src = check_open_source(L, 1);
    return vt_source_lua_read(L, &src->base, src->sess->timeout);
}

/* src:rewind(): the next read starts again from the first byte. */
static int source_lua_rewind(lua_State *L)
{
    sftp_source *src = check_open_source(L, 1);
    source_rewind(&src->base);
    lua_pushboolean(L, 1);
    return 1;
}

static int source_lua_close(lua_State *L)
{
    source_release(check_source(L, 1));
    lua_pushboolean(L, 1);
    return 1;
}

static int source_tostring(lua_State *L)
{
    sftp_source *src = check_source(L, 1);
    if (src->sess)
        lua_pushfstring(L, "vt.sftp.source (%s@%s:%d:%s, %I bytes)", src->sess->user, src->sess->host,
                        src->sess->port, src->path, (lua_Integer)src->base.size);
    else
        lua_pushfstring(L, "vt.sftp.source (%s, closed)", src->path);
    return 1;
}

/* Fields: size, name (basename), path, closed; then the methods. */
static int source_index(lua_State *L)
{
    sftp_source *src = check_source(L, 1);
    return vt_source_index(L, &src->base, src->path, src->sess == NULL);
}

/* ----------------------------------------------------------------- sessions */

static sftp_session *check_session(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SFTP_SESSION_MT);
}

static sftp_session *check_open_session(lua_State *L, int idx)
{
    sftp_session *s = check_session(L, idx);
    if (!s->ssh)
        luaL_error(L, "attempt to use a closed SFTP session");
    return s;
}

/* Closes the sources, says goodbye and frees everything; idempotent. */
static void session_release(sftp_session *s)
{
    while (s->sources)
        source_release(s->sources);
    if (s->ssh) {
        double deadline = close_deadline(s);
        if (s->handshaken && !s->broken)
            SSH_FINISH(s, deadline, libssh2_session_disconnect(s->ssh, "vt: session closed"));
        SSH_FINISH(s, deadline, libssh2_session_free(s->ssh));
        s->ssh = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static const char *basename_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Opens the file on the source's own SFTP channel and learns its size. */
static int source_acquire(sftp_source *src, vt_err *e)
{
    sftp_session *s = src->sess;
    double deadline = vt_monotonic() + s->timeout;
    SSH_DRIVE_PTR(s, deadline, src->sftp, libssh2_sftp_init(s->ssh));
    if (!src->sftp) {
        int rc = libssh2_session_last_errno(s->ssh);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            vt_err_set(e, "Timeout", "%s:%d did not start SFTP within %gs", s->host, s->port, s->timeout);
        else
            vt_err_set(e, is_transport_error(rc) ? "ConnectionError" : "RemoteFileError",
                       "cannot start SFTP on %s:%d: %s%s", s->host, s->port, ssh_message(s),
                       rc == LIBSSH2_ERROR_CHANNEL_FAILURE
                           ? " (each open source holds a channel, and servers limit them per connection: "
                             "OpenSSH's MaxSessions is 10 by default; close the sources you are done with)"
                           : "");
        return -1;
    }
    SSH_DRIVE_PTR(s, deadline, src->handle,
                  libssh2_sftp_open_ex(src->sftp, src->path, (unsigned)strlen(src->path), LIBSSH2_FXF_READ, 0,
                                       LIBSSH2_SFTP_OPENFILE));
    if (!src->handle) {
        int rc = libssh2_session_last_errno(s->ssh);
        unsigned long fx = rc == LIBSSH2_ERROR_SFTP_PROTOCOL ? libssh2_sftp_last_error(src->sftp) : 0;
        if (rc == LIBSSH2_ERROR_EAGAIN)
            vt_err_set(e, "Timeout", "%s:%d did not open %s within %gs", s->host, s->port, src->path, s->timeout);
        else if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH)
            vt_err_set(e, "NotFound", "no such file on %s:%d: %s", s->host, s->port, src->path);
        else if (fx == LIBSSH2_FX_PERMISSION_DENIED)
            vt_err_set(e, "PermissionDenied", "permission denied on %s:%d: %s", s->host, s->port, src->path);
        else if (fx)
            vt_err_set(e, "RemoteFileError", "cannot open %s on %s:%d (SFTP status %lu)", src->path, s->host,
                       s->port, fx);
        else
            vt_err_set(e, is_transport_error(rc) ? "ConnectionError" : "RemoteFileError",
                       "cannot open %s on %s:%d: %s", src->path, s->host, s->port, ssh_message(s));
        return -1;
    }
    LIBSSH2_SFTP_ATTRIBUTES attrs;
    int rc;
    SSH_DRIVE(s, deadline, rc, libssh2_sftp_fstat(src->handle, &attrs));
    if (rc != 0) {
        vt_err_set(e, rc == LIBSSH2_ERROR_TIMEOUT ? "Timeout" : "RemoteFileError",
                   "cannot read the size of %s on %s:%d: %s", src->path, s->host, s->port,
                   rc == LIBSSH2_ERROR_TIMEOUT ? "no answer in time" : ssh_message(s));
        return -1;
    }
    if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && !LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
        vt_err_set(e, "RemoteFileError", "%s on %s:%d is not a regular file", src->path, s->host, s->port);
        return -1;
    }
    if (!(attrs.flags & LIBSSH2_SFTP_ATTR_SIZE)) {
        vt_err_set(e, "RemoteFileError", "%s:%d did not tell the size of %s", s->host, s->port, src->path);
        return -1;
    }
    src->base.size = (int64_t)attrs.filesize;
    return 0;
}

/* sess:open(path) -> source | nil, err */
static int session_lua_open(lua_State *L)
{
    sftp_session *s = check_open_session(L, 1);
    size_t len;
    const char *path = vt_checkstring(L, 2, &len);
    if (len == 0 || len >= sizeof(((sftp_source *)0)->path) || memchr(path, '\0', len))
        return vt_fail(L, "InvalidArgument", "invalid remote path (empty, too long or with a NUL byte)");
    if (s->broken)
        return vt_fail(L, "ConnectionError", "the connection to %s:%d was lost; open a new session", s->host,
                       s->port);

    /* Created closed, with its metatable, before anything is acquired. */
    sftp_source *src = lua_newuserdatauv(L, sizeof *src, 1);
    memset(src, 0, sizeof *src);
    luaL_setmetatable(L, SFTP_SOURCE_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the session lives as long as the source */
    memcpy(src->path, path, len + 1);
    snprintf(src->base.name, sizeof src->base.name, "%s", basename_of(path));

    src->sess = s;
    src->next = s->sources; /* listed first, so that every exit releases it */
    if (s->sources)
        s->sources->prev = src;
    s->sources = src;

    vt_err e;
    if (source_acquire(src, &e) != 0) {
        if (strcmp(e.code, "ConnectionError") == 0)
            session_break(s);
        source_release(src);
        return vt_err_return(L, &e);
    }
    src->base.ops = &sftp_source_ops;
    return 1;
}

static int session_lua_close(lua_State *L)
{
    session_release(check_session(L, 1));
    lua_pushboolean(L, 1);
    return 1;
}

static int session_tostring(lua_State *L)
{
    sftp_session *s = check_session(L, 1);
    lua_pushfstring(L, "vt.sftp.session (%s@%s:%d, %s%s)", s->user, s->host, s->port, s->ssh ? "open" : "closed",
                    s->insecure ? ", host key NOT verified" : "");
    return 1;
}

/* Fields: host, port, user, insecure, closed; then the methods. */
static int session_index(lua_State *L)
{
    sftp_session *s = check_session(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "host") == 0)
        lua_pushstring(L, s->host);
    else if (strcmp(key, "port") == 0)
        lua_pushinteger(L, s->port);
    else if (strcmp(key, "user") == 0)
        lua_pushstring(L, s->user);
    else if (strcmp(key, "insecure") == 0)
        lua_pushboolean(L, s->insecure);
    else if (strcmp(key, "closed") == 0)
        lua_pushboolean(L, s->ssh == NULL);
    else
        lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* -------------------------------------------------------------- connecting */

/* "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 literal. *port is
 * left alone when the string names none. */
static int parse_host(const char *in, char *host, size_t cap, int *port, vt_err *e)
{
    const char *end, *rest;
    if (in[0] == '[') {
        end = strchr(in, ']');
        if (!end || end == in + 1) {
            vt_err_set(e, "InvalidArgument", "malformed host '%s'", in);
            return -1;
        }
        in++;
        rest = end + 1;
        if (*rest && *rest != ':') {
            vt_err_set(e, "InvalidArgument", "malformed host '%s'", in - 1);
            return -1;
        }
    } else {
        const char *colon = strchr(in, ':');
        bool one_colon = colon && !strchr(colon + 1, ':');
        end = one_colon ? colon : in + strlen(in); /* several colons: a bare IPv6 literal */
        rest = end;
    }
    size_t hlen = (size_t)(end - in);
    if (hlen == 0 || hlen >= cap) {
        vt_err_set(e, "InvalidArgument", "malformed host '%s'", in);
        return -1;
    }
    memcpy(host, in, hlen);
    host[hlen] = '\0';
    if (*rest == ':') {
        char *stop;
        errno = 0;
        long p = strtol(rest + 1, &stop, 10);
        if (rest[1] == '\0' || *stop || errno || p < 1 || p > 65535) {
            vt_err_set(e, "InvalidArgument", "malformed port in host '%s'", host);
            return -1;
        }
        *port = (int)p;
    }
    return 0;
}

/* Non-blocking connect to every address of host:port in turn. */
static int tcp_connect(sftp_session *s, double deadline, vt_err *e)
{
    char service[8];
    snprintf(service, sizeof service, "%d", s->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(s->host, service, &hints, &res);
    if (rc != 0) {
        vt_err_set(e, "ConnectionError", "cannot resolve %s:%d: %s", s->host, s->port, gai_strerror(rc));
        return -1;
    }
    int err = 0;
    bool timed_out = false;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* SFTP reads are many small requests in flight; without NODELAY,
         * Nagle and delayed ACKs stall every round trip (a 100 MB file took
         * 2 s on loopback instead of 0.4 s). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            s->fd = fd;
            break;
        }
        err = errno;
        if (err == EINPROGRESS) {
            if (wait_fd(fd, POLLOUT, deadline)) {
                socklen_t elen = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
                    err = errno;
                if (err == 0) {
                    s->fd = fd;
                    break;
                }
            } else {
                timed_out = true;
                close(fd);
                break;
            }
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (s->fd >= 0)
        return 0;
    if (timed_out)
        vt_err_set(e, "ConnectionError", "cannot connect to %s:%d: no answer within %gs", s->host, s->port,
                   s->timeout);
    else
        vt_err_set(e, "ConnectionError", "cannot connect to %s:%d: %s", s->host, s->port, strerror(err));
    return -1;
}

/* ------------------------------------------------------------- known hosts */

/* The name OpenSSH files a host under: "host" on port 22, else "[host]:port". */
static void known_hosts_name(sftp_session *s, char *out, size_t cap)
{
    if (s->port == 22)
        snprintf(out, cap, "%s", s->host);
    else
        snprintf(out, cap, "[%s]:%d", s->host, s->port);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* Reads known_hosts line by line, so that one line libssh2 cannot parse
 * (a newer key type, a @cert-authority marker) does not hide the rest.
 * @revoked lines go to `revoked`. Returns false when the file is absent. */
static bool load_known_hosts(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    static const char marker[] = "@revoked ";
    while ((n = getline(&line, &cap, f)) > 0) {
        if (strncmp(line, marker, sizeof marker - 1) == 0)
            libssh2_knownhost_readline(revoked, line + sizeof marker - 1, (size_t)n - (sizeof marker - 1),
                                       LIBSSH2_KNOWNHOST_FILE_OPENSSH);
        else if (line[0] != '@')
            libssh2_knownhost_readline(kh, line, (size_t)n, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    free(line);
    fclose(f);
    return true;
}

static int knownhost_key_type(int hostkey_type)
{
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

static int algorithm_key_type(const char *alg)
{
    if (strcmp(alg, "ssh-ed25519") == 0) return LIBSSH2_KNOWNHOST_KEY_ED25519;
    if (strcmp(alg, "ecdsa-sha2-nistp256") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    if (strcmp(alg, "ecdsa-sha2-nistp384") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    if (strcmp(alg, "ecdsa-sha2-nistp521") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    if (strcmp(alg, "rsa-sha2-512") == 0 || strcmp(alg, "rsa-sha2-256") == 0 || strcmp(alg, "ssh-rsa") == 0)
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    if (strcmp(alg, "ssh-dss") == 0) return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

/* Whether known_hosts holds a key of this type for name: a check with a key
 * that cannot be the right one says MISMATCH exactly when it does. */
static bool has_key_type(LIBSSH2_KNOWNHOSTS *kh, const char *name, int key_type)
{
    static const char probe[1] = {0};
    return libssh2_knownhost_check(kh, name, probe, sizeof probe,
                                   LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_type,
                                   NULL) == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
}

/* Like OpenSSH, asks first for the host key types already on file for this
 * host, so a server with several keys shows one we can check. */
static void prefer_known_key_types(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, const char *name)
{
    const char **algs = NULL;
    int n = libssh2_session_supported_algs(s->ssh, LIBSSH2_METHOD_HOSTKEY, &algs);
    if (n <= 0)
        return;
    char pref[1024] = "";
    size_t used = 0;
    bool any = false;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int type = algorithm_key_type(algs[i]);
            bool known = type != LIBSSH2_KNOWNHOST_KEY_UNKNOWN && has_key_type(kh, name, type);
            if (known != (pass == 0))
                continue;
            any = any || known;
            int w = snprintf(pref + used, sizeof pref - used, "%s%s", used ? "," : "", algs[i]);
            if (w < 0 || (size_t)w >= sizeof pref - used)
                break;
            used += (size_t)w;
        }
    libssh2_free(s->ssh, algs);
    if (any)
        libssh2_session_method_pref(s->ssh, LIBSSH2_METHOD_HOSTKEY, pref);
}

/* "SHA256:" and the unpadded base64 of the key's SHA-256, as ssh-keygen -l. */
static void host_key_fingerprint(sftp_session *s, char *out, size_t cap)
{
    const unsigned char *hash = (const unsigned char *)libssh2_hostkey_hash(s->ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (!hash) {
        snprintf(out, cap, "SHA256:(unavailable)");
        return;
    }
    unsigned char b64[48];
    int n = EVP_EncodeBlock(b64, hash, 32);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    snprintf(out, cap, "SHA256:%.*s", n, (const char *)b64);
}

static int check_host_key(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
                          bool have_file, const char *path, const char *name, vt_err *e)
{
    size_t keylen;
    int type;
    const char *key = libssh2_session_hostkey(s->ssh, &keylen, &type);
    if (!key) {
        vt_err_set(e, "ConnectionError", "%s:%d sent no host key", s->host, s->port);
        return -1;
    }
    char fp[80];
    host_key_fingerprint(s, fp, sizeof fp);
    int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownhost_key_type(type);
    if (libssh2_knownhost_check(revoked, name, key, keylen, mask, NULL) == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
        vt_err_set(e, "HostKeyChanged", "the host key of %s:%d (%s) is marked @revoked in %s", s->host, s->port,
                   fp, path);
        return -1;
    }
    switch (libssh2_knownhost_check(kh, name, key, keylen, mask, NULL)) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        return 0;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        vt_err_set(e, "HostKeyChanged",
                   "the host key of %s:%d has CHANGED: the server shows %s, which does not match %s; "
                   "someone may be intercepting the connection, or the key was replaced",
                   s->host, s->port, fp, path);
        return -1;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        vt_err_set(e, "HostKeyUnknown",
                   "the host key of %s:%d is unknown (%s)%s; add it to %s after checking it out of band "
                   "(ssh-keyscan -p %d %s), or set insecure_host_key = true",
                   s->host, s->port, fp, have_file ? "" : ": no known_hosts file", path, s->port, s->host);
        return -1;
    default:
        vt_err_set(e, "HostKeyUnknown", "cannot check the host key of %s:%d (%s) against %s", s->host, s->port, fp,
                   path);
        return -1;
    }
}

/* ---------------------------------------------------------- authentication */

/* Answers the server's hidden prompts with the password, on the first round
 * only: a second round means the password was refused or another factor is
 * wanted. Echoed prompts (a user name, say) never get the password. */
static void kbd_respond(const char *name, int name_len, const char *instruction, int instruction_len,
                        int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
                        LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
    sftp_session *s = *abstract;
    for (int i = 0; i < num_prompts; i++) {
        bool give = s->kbd_rounds == 0 && !prompts[i].echo && s->kbd_password;
        size_t len = give ? s->kbd_password_len : 0;
        responses[i].text = malloc(len + 1); /* libssh2 frees it with free() */
        responses[i].length = 0;
        if (responses[i].text) {
            if (len)
                memcpy(responses[i].text, s->kbd_password, len);
            responses[i].text[len] = '\0';
            responses[i].length = (unsigned)len;
        }
    }
    if (num_prompts > 0)
        s->kbd_rounds++;
}

typedef struct auth_opts {
    const char *password;
    size_t password_len;
    const char *private_key; /* expanded path */
    const char *passphrase;
} auth_opts;

static bool offers(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; (p = strstr(p, method)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static void add_tried(char *tried, size_t cap, const char *method)
{
    size_t used = strlen(tried);
    snprintf(tried + used, cap - used, "%s%s", used ? ", " : "", method);
}

static int authenticate(sftp_session *s, const auth_opts *a, double deadline, vt_err *e)
{
    unsigned ulen = (unsigned)strlen(s->user);
    char *list;
    SSH_DRIVE_PTR(s, deadline, list, libssh2_userauth_list(s->ssh, s->user, ulen));
    if (!list) {
        if (libssh2_userauth_authenticated(s->ssh))
            return 0; /* the server let us in with "none" */
        int rc = libssh2_session_last_errno(s->ssh);
        if (rc == LIBSSH2_ERROR_EAGAIN)
            vt_err_set(e, "Timeout", "%s:%d did not answer the login of %s within %gs", s->host, s->port, s->user,
                       s->timeout);
        else
            vt_err_set(e, "ConnectionError", "login of %s at %s:%d failed: %s", s->user, s->host, s->port,
                       ssh_message(s));
        return -1;
    }
    char offered[256];
    snprintf(offered, sizeof offered, "%s", list);

    char tried[96] = "";
    char note[400] = "";
    int rc;
    if (a->private_key && offers(offered, "publickey")) {
        add_tried(tried, sizeof tried, "publickey");
        if (access(a->private_key, R_OK) != 0) {
            snprintf(note, sizeof note, "; cannot read private key %.200s: %s", a->private_key, strerror(errno));
        } else {
            SSH_DRIVE(s, deadline, rc,
                      libssh2_userauth_publickey_fromfile_ex(s->ssh, s->user, ulen, NULL, a->private_key,
                                                             a->passphrase ? a->passphrase : ""));
            if (rc == 0)
                return 0;
            if (rc == LIBSSH2_ERROR_TIMEOUT)
                goto timeout;
            if (rc == LIBSSH2_ERROR_FILE)
                snprintf(note, sizeof note,
                         "; private key %.200s could not be loaded (wrong or missing passphrase, or unsupported format)",
                         a->private_key);
        }
    }
    if (a->password && offers(offered, "password")) {
        add_tried(tried, sizeof tried, "password");
        SSH_DRIVE(s, deadline, rc,
                  libssh2_userauth_password_ex(s->ssh, s->user, ulen, a->password, (unsigned)a->password_len,
                                               NULL));
        if (rc == 0)
            return 0;
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            goto timeout;
        if (rc == LIBSSH2_ERROR_PASSWORD_EXPIRED)
            snprintf(note, sizeof note, "; the password has expired");
    }
    if (a->password && offers(offered, "keyboard-interactive")) {
        add_tried(tried, sizeof tried, "keyboard-interactive");
        s->kbd_password = a->password;
        s->kbd_password_len = a->password_len;
        s->kbd_rounds = 0;
        SSH_DRIVE(s, deadline, rc, libssh2_userauth_keyboard_interactive_ex(s->ssh, s->user, ulen, kbd_respond));
        s->kbd_password = NULL;
        s->kbd_password_len = 0;
        if (rc == 0)
            return 0;
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            goto timeout;
    }
    if (!a->password && !a->private_key)
        snprintf(note, sizeof note, "; no password or private_key was given");
    vt_err_set(e, "AuthenticationFailed", "authentication failed for %s@%s:%d (tried: %s; server offers: %s)%s",
               s->user, s->host, s->port, tried[0] ? tried : "nothing", offered, note);
    return -1;
timeout:
    vt_err_set(e, "Timeout", "%s:%d did not finish the login of %s within %gs", s->host, s->port, s->user,
               s->timeout);
    return -1;
}

/* ------------------------------------------------------------------ vt.sftp */

/* "~/x" -> "$HOME/x" (or the passwd entry's home). */
static int expand_home(const char *in, char *out, size_t cap)
{
    if (in[0] != '~' || (in[1] != '/' && in[1] != '\0'))
        return snprintf(out, cap, "%s", in) < (int)cap ? 0 : -1;
    const char *home = getenv("HOME");
    struct passwd pw, *found = NULL;
    char buf[4096];
    if ((!home || !*home) && getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found)
        home = found->pw_dir;
    if (!home)
        home = "/";
    return snprintf(out, cap, "%s%s", home, in + 1) < (int)cap ? 0 : -1;
}

static const char *opt_string(lua_State *L, const char *key, size_t *len)
{
    int t = lua_getfield(L, 1, key);
    const char *v = NULL;
    if (t == LUA_TSTRING)
        v = lua_tolstring(L, -1, len);
    else if (t != LUA_TNIL)
        luaL_error(L, "vt.sftp: option '%s' must be a string (got %s)", key, lua_typename(L, t));
    lua_pop(L, 1); /* the string stays alive in the options table */
    return v;
}

static const char *const sftp_options[] = {"host",       "port",        "user",
                                           "password",   "private_key", "passphrase",
                                           "known_hosts", "insecure_host_key", "timeout",
                                           NULL};

/* vt.sftp(opts) -> session | nil, err */
static int vt_sftp(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    vt_check_option_keys(L, 1, "vt.sftp", sftp_options);

    size_t host_len, user_len, password_len = 0;
    const char *host_opt = opt_string(L, "host", &host_len);
    const char *user = opt_string(L, "user", &user_len);
    const char *password = opt_string(L, "password", &password_len);
    const char *private_key = opt_string(L, "private_key", NULL);
    const char *passphrase = opt_string(L, "passphrase", NULL);
    const char *known_hosts = opt_string(L, "known_hosts", NULL);
    if (!host_opt)
        return luaL_error(L, "vt.sftp: option 'host' is required");
    if (!user)
        return luaL_error(L, "vt.sftp: option 'user' is required");

    int port = -1;
    int t = lua_getfield(L, 1, "port");
    if (t != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            return luaL_error(L, "vt.sftp: option 'port' must be an integer (got %s)", luaL_typename(L, -1));
        lua_Integer p = lua_tointeger(L, -1);
        if (p < 1 || p > 65535)
            return luaL_error(L, "vt.sftp: option 'port' must be within 1..65535");
        port = (int)p;
    }
    double timeout = DEFAULT_TIMEOUT;
    t = lua_getfield(L, 1, "timeout");
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER)
            return luaL_error(L, "vt.sftp: option 'timeout' must be a number (got %s)", lua_typename(L, t));
        timeout = lua_tonumber(L, -1);
        if (!(timeout > 0))
            return luaL_error(L, "vt.sftp: option 'timeout' must be positive");
    }
    bool insecure = false;
    t = lua_getfield(L, 1, "insecure_host_key");
    if (t != LUA_TNIL) {
        if (t != LUA_TBOOLEAN)
            return luaL_error(L, "vt.sftp: option 'insecure_host_key' must be a boolean (got %s)",
                              lua_typename(L, t));
        insecure = lua_toboolean(L, -1);
    }
    lua_pop(L, 3);

    /* Wrong values (they often come from case data) are failures, not errors. */
    vt_err e;
    char host[256];
    int host_port = -1;
    if (memchr(host_opt, '\0', host_len) || parse_host(host_opt, host, sizeof host, &host_port, &e) != 0) {
        if (memchr(host_opt, '\0', host_len))
            vt_err_set(&e, "InvalidArgument", "malformed host");
        return vt_err_return(L, &e);
    }
    if (host_port > 0 && port > 0 && host_port != port)
        return vt_fail(L, "InvalidArgument", "host '%s' names port %d but option port is %d", host_opt, host_port,
                       port);
    port = host_port > 0 ? host_port : port > 0 ? port : 22;
    if (user_len == 0 || user_len >= sizeof(((sftp_session *)0)->user) || memchr(user, '\0', user_len))
        return vt_fail(L, "InvalidArgument", "invalid user name for %s:%d", host, port);

    char key_path[PATH_MAX], kh_path[PATH_MAX];
    if (private_key && expand_home(private_key, key_path, sizeof key_path) != 0)
        return vt_fail(L, "InvalidArgument", "private_key path too long");
    if (expand_home(known_hosts ? known_hosts : "~/.ssh/known_hosts", kh_path, sizeof kh_path) != 0)
        return vt_fail(L, "InvalidArgument", "known_hosts path too long");

    /* Created closed, with its metatable, before anything is acquired. */
    sftp_session *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    luaL_setmetatable(L, SFTP_SESSION_MT);
    s->timeout = timeout;
    s->insecure = insecure;
    s->port = port;
    snprintf(s->host, sizeof s->host, "%s", host);
    memcpy(s->user, user, user_len + 1);

    LIBSSH2_KNOWNHOSTS *kh = NULL, *revoked = NULL;
    bool have_file = false;
    char name[300];
    known_hosts_name(s, name, sizeof name);
    double deadline = vt_monotonic() + timeout;
    int rc;

    if (tcp_connect(s, deadline, &e) != 0)
        goto fail;
    s->ssh = libssh2_session_init_ex(NULL, NULL, NULL, s);
    if (!s->ssh) {
        vt_err_set(&e, "ConnectionError", "cannot create an SSH session for %s:%d", s->host, s->port);
        goto fail;
    }
    libssh2_session_set_blocking(s->ssh, 0);
    if (!insecure) {
        kh = libssh2_knownhost_init(s->ssh);
        revoked = libssh2_knownhost_init(s->ssh);
        if (!kh || !revoked) {
            vt_err_set(&e, "ConnectionError", "out of memory reading %s", kh_path);
            goto fail;
        }
        have_file = load_known_hosts(kh, revoked, kh_path);
        prefer_known_key_types(s, kh, name);
    }

    SSH_DRIVE(s, deadline, rc, libssh2_session_handshake(s->ssh, s->fd));
    if (rc != 0) {
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            vt_err_set(&e, "Timeout", "SSH handshake with %s:%d did not finish within %gs", s->host, s->port,
                       timeout);
        else
            vt_err_set(&e, "ConnectionError", "SSH handshake with %s:%d failed: %s", s->host, s->port,
                       ssh_message(s));
        goto fail;
    }
    s->handshaken = true;
    if (!insecure && check_host_key(s, kh, revoked, have_file, kh_path, name, &e) != 0)
        goto fail;
    if (kh) {
        libssh2_knownhost_free(kh);
        libssh2_knownhost_free(revoked);
        kh = revoked = NULL;
    }

    auth_opts a = {password, password_len, private_key ? key_path : NULL, passphrase};
    if (authenticate(s, &a, deadline, &e) != 0)
        goto fail;
    return 1;

fail:
    /* The collections live in the session's memory: free them first. */
    if (kh)
        libssh2_knownhost_free(kh);
    if (revoked)
        libssh2_knownhost_free(revoked);
    session_release(s);
    return vt_err_return(L, &e);
}

/* ------------------------------------------------------------ registration */

static void new_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods,
                      lua_CFunction index, bool is_source)
{
    if (luaL_newmetatable(L, mt)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_pushcclosure(L, index, 1);
        lua_setfield(L, -2, "__index");
        if (is_source) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "__vt_source");
        }
    }
    lua_pop(L, 1);
}

/* Registers vt.sftp into the table at the top of the stack. */
void vt_sftp_open(lua_State *L)
{
    static const luaL_Reg session_meta[] = {
        {"__gc", session_lua_close}, {"__close", session_lua_close}, {"__tostring", session_tostring}, {NULL, NULL}};
    static const luaL_Reg session_methods[] = {
        {"open", session_lua_open}, {"close", session_lua_close}, {NULL, NULL}};
    static const luaL_Reg source_meta[] = {
        {"__gc", source_lua_close}, {"__close", source_lua_close}, {"__tostring", source_tostring}, {NULL, NULL}};
    static const luaL_Reg source_methods[] = {
        {"read", source_lua_read}, {"rewind", source_lua_rewind}, {"close", source_lua_close}, {NULL, NULL}};

    new_class(L, SFTP_SESSION_MT, session_meta, session_methods, session_index, false);
    new_class(L, SFTP_SOURCE_MT, source_meta, source_methods, source_index, true);
    lua_pushcfunction(L, vt_sftp);
    lua_setfield(L, -2, "sftp");
}
