/* Remote files over SFTP for uploads: vt.sftp(opts) opens an SSH session
 * (libssh2), checks the server's host key against known_hosts, logs in, and
 * sess:open(path) hands back an upload source (vt.h) for one remote file.
 *
 * libssh2 runs non-blocking from the first packet on. The set-up phases
 * (connect, handshake, authentication, opening a file) wait in poll() loops
 * bounded by the session's timeout; a source's read never waits: it
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
 * closing the session closes them first. A closed source (or one of a closed
 * session) is no longer `open`, which every use of it checks.
 *
 * Secrets: the password and passphrase are read from the options table and
 * used during vt.sftp() only; they are never copied into the session, never
 * formatted into a message, and never shown by tostring.
 */

/*** @module vt */
#include "sftp.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#define SFTP_SESSION_MT "vt.sftp.session"

#define DEFAULT_TIMEOUT 30.0
/* Teardown (close, __gc) waits at most this long for a polite goodbye. */
#define CLOSE_TIMEOUT 5.0

/* ------------------------------------------------------------------ waiting */

int vt_sftp_session_events(sftp_session *s)
{
    int dir = libssh2_session_block_directions(s->ssh);
    int events = 0;
    if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
        events |= VT_WANT_READ;
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        events |= VT_WANT_WRITE;
    return events ? events : VT_WANT_READ;
}

int vt_sftp_session_wait(sftp_session *s, double deadline)
{
    return vt_wait_fd(s->fd, vt_sftp_session_events(s), deadline);
}

/* Shuts the socket down so that whatever libssh2 still waits for fails at
 * once: teardown must end even when the peer stopped answering. */
void vt_sftp_session_break(sftp_session *s)
{
    if (!s->broken && s->fd >= 0) {
        shutdown(s->fd, SHUT_RDWR);
        s->broken = true;
    }
}

double vt_sftp_close_deadline(sftp_session *s)
{
    return vt_monotonic() + (s->timeout < CLOSE_TIMEOUT ? s->timeout : CLOSE_TIMEOUT);
}

/* libssh2's own description of the last error. */
const char *vt_sftp_message(sftp_session *s)
{
    char *msg = NULL;
    libssh2_session_last_error(s->ssh, &msg, NULL, 0);
    return msg && *msg ? msg : "unknown libssh2 error";
}

bool vt_sftp_transport_error(int rc)
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
        vt_source_close(&s->sources->base);
    if (s->ssh) {
        double deadline = vt_sftp_close_deadline(s);
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
            if (vt_wait_fd(fd, VT_WANT_WRITE, deadline)) {
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

/***
Opens an SSH session for reading remote files (libssh2, never blocking the client's engine):
the host key is checked against `known_hosts` before any secret is sent (unknown:
`HostKeyUnknown` with the key's `SHA256:` fingerprint; changed or revoked: `HostKeyChanged`),
then the login tries the private key, the password and keyboard-interactive, as the server offers.
The password and passphrase are used during this call only and never shown.
@function sftp
@tparam table opts `host` (`"host"`, `"host:port"`, `"[v6]:port"`), `port` (22), `user`,
`password`, `private_key` (a path; `~` expanded), `passphrase`, `known_hosts` (default
`~/.ssh/known_hosts`), `insecure_host_key` (skip the check), `timeout` (seconds, 30)
@treturn[1] sftp_session the session
@treturn[2] nil
@treturn[2] table the error value (`HostKeyUnknown`, `HostKeyChanged`, `AuthenticationFailed`,
`ConnectionError`, `Timeout`, `InvalidArgument`)
@raise on a missing `host` or `user`, an unknown option or a wrong type
@usage local sess = assert(vt.sftp{host = "files.example:2222", user = "ir", private_key = "~/.ssh/id_ed25519"})
local d = assert(c:scan_file(assert(sess:open("/srv/quarantine/invoke.exe"))))
*/
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
    vt_known_hosts_name(s, name, sizeof name);
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
            vt_err_oom(&e, "reading known_hosts");
            goto fail;
        }
        have_file = vt_known_hosts_load(kh, revoked, kh_path);
        vt_known_hosts_prefer(s, kh, name);
    }

    SSH_DRIVE(s, deadline, rc, libssh2_session_handshake(s->ssh, s->fd));
    if (rc != 0) {
        if (rc == LIBSSH2_ERROR_TIMEOUT)
            vt_err_set(&e, "Timeout", "SSH handshake with %s:%d did not finish within %gs", s->host, s->port,
                       timeout);
        else
            vt_err_set(&e, "ConnectionError", "SSH handshake with %s:%d failed: %s", s->host, s->port,
                       vt_sftp_message(s));
        goto fail;
    }
    s->handshaken = true;
    if (!insecure && vt_known_hosts_check(s, kh, revoked, have_file, kh_path, name, &e) != 0)
        goto fail;
    if (kh) {
        libssh2_knownhost_free(kh);
        libssh2_knownhost_free(revoked);
        kh = revoked = NULL;
    }

    auth_opts a = {password, password_len, private_key ? key_path : NULL, passphrase};
    if (vt_sftp_authenticate(s, &a, deadline, &e) != 0)
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

/* ---------------------------------------------------------------- sessions */

/*** An SFTP session, made by `vt.sftp`. Fields: `host`, `port`, `user`, `insecure` (the host key
was not checked), `closed`.
@type sftp_session
*/

/***
Opens a remote file as an upload source, on its own SFTP channel of the session (servers limit
channels per connection: OpenSSH's MaxSessions is 10 by default, so close the sources you are
done with).
@function sftp_session:open
@tparam string path the remote path
@treturn[1] source the file, for `client:scan_file`
@treturn[2] nil
@treturn[2] table the error value (`NotFound`, `PermissionDenied`, `RemoteFileError`, `Timeout`,
`ConnectionError`)
@raise on a closed session, or when `path` is not a string
*/
static int session_lua_open(lua_State *L)
{
    return vt_sftp_session_open(L, check_open_session(L, 1));
}

/***
Closes the session and every source opened on it (an upload still reading from one then fails).
Closing twice is fine; also done by `__close` and `__gc`.
@function sftp_session:close
@treturn boolean `true`
*/
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

/* ------------------------------------------------------------ registration */

/* Registers vt.sftp into the table at the top of the stack. */
void vt_sftp_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", session_lua_close}, {"__close", session_lua_close}, {"__tostring", session_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"open", session_lua_open}, {"close", session_lua_close}, {NULL, NULL}};
    if (luaL_newmetatable(L, SFTP_SESSION_MT)) {
        luaL_setfuncs(L, meta, 0);
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_pushcclosure(L, session_index, 1);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, vt_sftp);
    lua_setfield(L, -2, "sftp");
}
