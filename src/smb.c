/* Remote files on Windows shares for uploads: vt.smb_open(path, opts) reads
 * \\server\share\dir\file or smb://server[:port]/share/dir/file with
 * libsmbclient and hands back an upload source (vt.h).
 *
 * libsmbclient has no non-blocking interface: this source's read blocks
 * until the server answers (bounded by the timeout option). The engine
 * calls it from curl's read callback, so a slow share stalls the transfers
 * running beside it for that long; that is the price of SMB support.
 *
 * Each source owns its own SMBCCTX, so credentials never go through
 * libsmbclient's process-wide compatibility API: the authentication callback
 * finds them through the context's user-data pointer. They are kept in the
 * source (libsmbclient may ask again when it reconnects) and wiped when it
 * closes; no message and no tostring ever shows the password.
 *
 * Built without libsmbclient (VT_HAVE_SMB undefined), vt.smb_open checks
 * its arguments the same way and fails with code Unsupported.
 */

/*** @module vt */
#include "vt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#define DEFAULT_TIMEOUT 30.0

static const char *const smb_options[] = {"user", "password", "domain", "port", "timeout", NULL};

typedef struct smb_opts {
    char user[256];
    char domain[256];
    char password[256];
    int port; /* 0: not given */
    double timeout;
} smb_opts;

static void opt_copy(lua_State *L, int idx, const char *key, char *out, size_t cap)
{
    int t = lua_getfield(L, idx, key);
    if (t == LUA_TSTRING) {
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);
        if (len >= cap || memchr(v, '\0', len))
            luaL_error(L, "vt.smb_open: option '%s' is too long or holds a NUL byte", key);
        memcpy(out, v, len + 1);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "vt.smb_open: option '%s' must be a string (got %s)", key, lua_typename(L, t));
    }
    lua_pop(L, 1);
}

/* Checks vt.smb_open's arguments (raising on wrong types or unknown keys)
 * and reads the options at idx 2 into o. */
static const char *check_smb_args(lua_State *L, size_t *len, smb_opts *o)
{
    const char *path = vt_checkstring(L, 1, len);
    memset(o, 0, sizeof *o);
    o->timeout = DEFAULT_TIMEOUT;
    if (lua_isnoneornil(L, 2))
        return path;
    luaL_checktype(L, 2, LUA_TTABLE);
    vt_check_option_keys(L, 2, "vt.smb_open", smb_options);
    opt_copy(L, 2, "user", o->user, sizeof o->user);
    opt_copy(L, 2, "password", o->password, sizeof o->password);
    opt_copy(L, 2, "domain", o->domain, sizeof o->domain);
    int t = lua_getfield(L, 2, "port");
    if (t != LUA_TNIL) {
        if (!lua_isinteger(L, -1))
            luaL_error(L, "vt.smb_open: option 'port' must be an integer (got %s)", luaL_typename(L, -1));
        lua_Integer p = lua_tointeger(L, -1);
        if (p < 1 || p > 65535)
            luaL_error(L, "vt.smb_open: option 'port' must be within 1..65535");
        o->port = (int)p;
    }
    t = lua_getfield(L, 2, "timeout");
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER)
            luaL_error(L, "vt.smb_open: option 'timeout' must be a number (got %s)", lua_typename(L, t));
        o->timeout = lua_tonumber(L, -1);
        if (!(o->timeout > 0))
            luaL_error(L, "vt.smb_open: option 'timeout' must be positive");
    }
    lua_pop(L, 2);
    /* "DOMAIN\\user" names the domain unless the domain option does. */
    char *sep = strchr(o->user, '\\');
    if (sep) {
        if (!o->domain[0])
            snprintf(o->domain, sizeof o->domain, "%.*s", (int)(sep - o->user), o->user);
        memmove(o->user, sep + 1, strlen(sep + 1) + 1);
    }
    return path;
}

#ifdef VT_HAVE_SMB

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <libsmbclient.h>
#include <dlfcn.h>
#include <pthread.h>

/* libsmbclient pulls in about a hundred Samba libraries: linked into vt.so they
 * cost every `require "vt"` some 18 ms (bench/run.sh). They are loaded on the
 * first vt.smb_open instead, once per process, and never unloaded (contexts
 * may outlive any one Lua state). The header still types every call. */
#define SMBC_API(X) \
    X(smbc_new_context) X(smbc_free_context) X(smbc_init_context) X(smbc_setDebug) \
    X(smbc_setOptionDebugToStderr) X(smbc_setOptionUserData) X(smbc_getOptionUserData) \
    X(smbc_setFunctionAuthDataWithContext) X(smbc_setOptionNoAutoAnonymousLogin) \
    X(smbc_setTimeout) X(smbc_setPort) X(smbc_getFunctionOpen) X(smbc_getFunctionRead) \
    X(smbc_getFunctionLseek) X(smbc_getFunctionFstat) X(smbc_getFunctionClose) \
    X(smbc_getFunctionOpendir) X(smbc_getFunctionClosedir)

static struct {
#define SMBC_POINTER(name) __typeof__(name) *name;
    SMBC_API(SMBC_POINTER)
#undef SMBC_POINTER
} smbc;

static pthread_once_t smbc_once = PTHREAD_ONCE_INIT;
static char smbc_load_error[256]; /* empty once loaded */

static void smbc_load(void)
{
    void *lib = dlopen("libsmbclient.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(smbc_load_error, sizeof smbc_load_error, "%s", dlerror());
        return;
    }
#define SMBC_RESOLVE(name)                                                              \
    if (!(smbc.name = (__typeof__(smbc.name))dlsym(lib, #name))) {                      \
        snprintf(smbc_load_error, sizeof smbc_load_error, "libsmbclient lacks " #name); \
        return;                                                                         \
    }
    SMBC_API(SMBC_RESOLVE)
#undef SMBC_RESOLVE
}

#define SMB_SOURCE_MT "vt.smb.source"

typedef struct smb_source {
    vt_source base; /* first member: the engine sees a vt_source */
    SMBCCTX *ctx;   /* NULL once closed */
    SMBCFILE *file;
    int64_t pos;
    /* What the authentication callback hands out. */
    char user[256];
    char domain[256];
    char password[256];
    char server[256];
    char url[3072];  /* smb://server/share/... with the path percent-encoded */
} smb_source;

/* Called by libsmbclient inside smbc_open (and on reconnects): C only. */
static void smb_auth(SMBCCTX *c, const char *srv, const char *shr, char *wg, int wglen, char *un, int unlen,
                     char *pw, int pwlen)
{
    smb_source *src = smbc.smbc_getOptionUserData(c);
    if (src->domain[0])
        snprintf(wg, (size_t)wglen, "%s", src->domain);
    snprintf(un, (size_t)unlen, "%s", src->user);
    snprintf(pw, (size_t)pwlen, "%s", src->password);
}

/* Closes the file and the context; idempotent. */
static void source_close(vt_source *base)
{
    smb_source *src = (smb_source *)base;
    if (src->ctx) {
        if (src->file)
            smbc.smbc_getFunctionClose(src->ctx)(src->ctx, src->file);
        smbc.smbc_free_context(src->ctx, 1);
    }
    src->ctx = NULL;
    src->file = NULL;
    explicit_bzero(src->password, sizeof src->password);
}

/* Blocks until the server answers (see the top of the file). At most `size`
 * bytes come out in all, so the engine's framing holds. */
static ptrdiff_t source_read(vt_source *base, char *buf, size_t len, int *fd, int *events, vt_err *e)
{
    smb_source *src = (smb_source *)base;
    int64_t left = base->size - src->pos;
    if (left <= 0)
        return 0;
    if ((uint64_t)len > (uint64_t)left)
        len = (size_t)left;
    ssize_t n = smbc.smbc_getFunctionRead(src->ctx)(src->ctx, src->file, buf, len);
    if (n < 0) {
        int err = errno;
        bool lost = err == ETIMEDOUT || err == ECONNRESET || err == ECONNABORTED || err == EPIPE;
        vt_err_set(e, lost ? "ConnectionError" : "RemoteFileError", "reading %s failed: %s", src->base.path,
                   strerror(err));
        return VT_SOURCE_ERROR;
    }
    if (n == 0) {
        vt_err_set(e, "RemoteFileError", "%s ended after %lld of %lld bytes (it shrank while read)", src->base.path,
                   (long long)src->pos, (long long)base->size);
        return VT_SOURCE_ERROR;
    }
    src->pos += n;
    return n;
}

static int source_rewind(vt_source *base, vt_err *e)
{
    smb_source *src = (smb_source *)base;
    if (smbc.smbc_getFunctionLseek(src->ctx)(src->ctx, src->file, 0, SEEK_SET) != 0) {
        vt_err_set(e, "RemoteFileError", "cannot rewind %s: %s", base->path, strerror(errno));
        return -1;
    }
    src->pos = 0;
    return 0;
}

/* [DOMAIN\]user@path */
static void source_describe(vt_source *base, luaL_Buffer *b)
{
    smb_source *src = (smb_source *)base;
    lua_pushfstring(b->L, "%s%s%s@%s", src->domain, src->domain[0] ? "\\" : "", src->user[0] ? src->user : "guest",
                    base->path);
    luaL_addvalue(b);
}

static const vt_source_class smb_source_class = {
    SMB_SOURCE_MT, "SMB source", source_read, source_rewind, source_close, source_describe,
};

/* ------------------------------------------------------------------- paths */

/* Appends s percent-encoded (everything but unreserved characters and '/'),
 * since libsmbclient URL-decodes the path. Returns -1 when out is full. */
static int append_encoded(char *out, size_t cap, size_t *used, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '.' || c == '_' || c == '~' || c == '/';
        if (*used + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[(*used)++] = (char)c;
        } else {
            out[(*used)++] = '%';
            out[(*used)++] = hex[c >> 4];
            out[(*used)++] = hex[c & 15];
        }
    }
    out[*used] = '\0';
    return 0;
}

/* \\server\share\dir\file, //server/share/... or smb://server[:port]/share/...
 * -> src->server, *port (left alone when the path names none), src->base.path
 * (the path as given, for messages), src->url (without the port, which goes
 * to smbc_setPort) and src->base.name. Every failure here is a wrong value. */
static int parse_smb_path(smb_source *src, const char *path, size_t len, int *port, vt_err *e)
{
    char buf[sizeof src->base.path];
    if (len >= sizeof buf || memchr(path, '\0', len)) {
        vt_err_set(e, "InvalidArgument", "invalid SMB path (too long or with a NUL byte)");
        return -1;
    }
    memcpy(buf, path, len + 1);
    char *rest;
    if (strncasecmp(buf, "smb://", 6) == 0)
        rest = buf + 6;
    else if ((buf[0] == '\\' || buf[0] == '/') && (buf[1] == '\\' || buf[1] == '/'))
        rest = buf + 2;
    else
        rest = NULL;
    for (char *p = buf; *p; p++)
        if (*p == '\\')
            *p = '/';
    char *slash = rest ? strchr(rest, '/') : NULL;
    size_t alen = slash ? (size_t)(slash - rest) : rest ? strlen(rest) : 0;
    /* Checked first, so that no message below can show a password. */
    if (rest && memchr(rest, '@', alen)) {
        vt_err_set(e, "InvalidArgument", "an SMB path must not carry credentials: pass user and password as options");
        return -1;
    }
    vt_source_set_path(&src->base, path, len);
    if (!rest) {
        vt_err_set(e, "InvalidArgument", "not an SMB path: %s (want \\\\server\\share\\file or smb://server/share/file)",
                   src->base.path);
        return -1;
    }
    char *host_end = rest + alen, *colon = NULL;
    if (rest[0] == '[') {
        char *close = memchr(rest, ']', alen);
        host_end = close ? close + 1 : rest;
        if (close && close + 1 < rest + alen)
            colon = close[1] == ':' ? close + 1 : rest; /* rest: anything else after ']' is malformed */
    } else if ((colon = memchr(rest, ':', alen)) != NULL) {
        host_end = colon;
    }
    size_t hlen = (size_t)(host_end - rest);
    if (hlen == 0 || hlen >= sizeof src->server || colon == rest) {
        vt_err_set(e, "InvalidArgument", "no valid server in SMB path %s", src->base.path);
        return -1;
    }
    memcpy(src->server, rest, hlen);
    src->server[hlen] = '\0';
    if (colon) {
        char *stop;
        long p = strtol(colon + 1, &stop, 10);
        if (stop == colon + 1 || stop != rest + alen || p < 1 || p > 65535) {
            vt_err_set(e, "InvalidArgument", "malformed port in SMB path %s", src->base.path);
            return -1;
        }
        *port = (int)p;
    }
    const char *share = slash ? slash + 1 : "";
    const char *share_end = strchr(share, '/');
    if (!share_end || share_end == share || !share_end[1] || buf[strlen(buf) - 1] == '/') {
        vt_err_set(e, "InvalidArgument", "SMB path %s names no file inside a share", src->base.path);
        return -1;
    }
    size_t used = (size_t)snprintf(src->url, sizeof src->url, "smb://%s", src->server);
    if (append_encoded(src->url, sizeof src->url, &used, slash, strlen(slash)) != 0) {
        vt_err_set(e, "InvalidArgument", "SMB path %s is too long", src->base.path);
        return -1;
    }
    snprintf(src->base.name, sizeof src->base.name, "%s", strrchr(buf, '/') + 1);
    return 0;
}

/* ------------------------------------------------------------- smb_open */

static int open_failure(smb_source *src, int err, vt_err *e)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        vt_err_set(e, "NotFound", "no such file or share: %s", src->base.path);
        break;
    case EACCES:
    case EPERM:
        /* libsmbclient says EACCES both for a refused login and for a file
         * the user may not read; the login is refused when the share's
         * root cannot be listed either. */
        {
            SMBCFILE *dir = NULL;
            char root[512];
            const char *share = strchr(src->url + 6, '/');
            const char *share_end = share ? strchr(share + 1, '/') : NULL;
            snprintf(root, sizeof root, "smb://%s%.*s", src->server, share_end ? (int)(share_end - share) : 0,
                     share ? share : "");
            dir = smbc.smbc_getFunctionOpendir(src->ctx)(src->ctx, root);
            if (dir) {
                smbc.smbc_getFunctionClosedir(src->ctx)(src->ctx, dir);
                vt_err_set(e, "PermissionDenied", "permission denied: %s", src->base.path);
            } else {
                vt_err_set(e, "AuthenticationFailed", "authentication failed for %s%s%s at %s (%s)", src->domain,
                           src->domain[0] ? "\\" : "", src->user[0] ? src->user : "guest", src->server, src->base.path);
            }
        }
        break;
    case ECONNREFUSED:
    case ECONNABORTED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case EHOSTDOWN:
    case ENETUNREACH:
    case ENETDOWN:
    case ETIMEDOUT:
        vt_err_set(e, "ConnectionError", "cannot reach %s for %s: %s", src->server, src->base.path, strerror(err));
        break;
    case EINVAL: {
        /* What libsmbclient says when it cannot find the server by name. */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
        int rc = getaddrinfo(src->server, NULL, &hints, &res);
        if (rc != 0) {
            vt_err_set(e, "ConnectionError", "cannot resolve %s for %s: %s", src->server, src->base.path, gai_strerror(rc));
            break;
        }
        freeaddrinfo(res);
        vt_err_set(e, "RemoteFileError", "cannot open %s: %s", src->base.path, strerror(err));
        break;
    }
    case EISDIR:
        vt_err_set(e, "RemoteFileError", "%s is not a regular file", src->base.path);
        break;
    default:
        vt_err_set(e, "RemoteFileError", "cannot open %s: %s", src->base.path, strerror(err));
    }
    return -1;
}

/* Makes the context, opens the file, learns its size. */
static int source_acquire(smb_source *src, int port, double timeout, vt_err *e)
{
    SMBCCTX *ctx = smbc.smbc_new_context();
    if (!ctx) {
        vt_err_set(e, "RemoteFileError", "cannot create an SMB context: %s", strerror(errno));
        return -1;
    }
    smbc.smbc_setDebug(ctx, 0);
    smbc.smbc_setOptionDebugToStderr(ctx, 1); /* stdout may carry a host's protocol */
    smbc.smbc_setOptionUserData(ctx, src);
    smbc.smbc_setFunctionAuthDataWithContext(ctx, smb_auth);
    smbc.smbc_setOptionNoAutoAnonymousLogin(ctx, 1); /* a refused login must not turn into guest */
    smbc.smbc_setTimeout(ctx, (int)(timeout * 1000));
    if (port)
        smbc.smbc_setPort(ctx, (uint16_t)port);
    if (!smbc.smbc_init_context(ctx)) {
        int err = errno;
        smbc.smbc_free_context(ctx, 0);
        vt_err_set(e, "RemoteFileError", "cannot set up libsmbclient: %s", strerror(err));
        return -1;
    }
    src->ctx = ctx;
    src->file = smbc.smbc_getFunctionOpen(ctx)(ctx, src->url, O_RDONLY, 0);
    if (!src->file)
        return open_failure(src, errno, e);
    struct stat st;
    if (smbc.smbc_getFunctionFstat(ctx)(ctx, src->file, &st) != 0) {
        vt_err_set(e, "RemoteFileError", "cannot read the size of %s: %s", src->base.path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        vt_err_set(e, "RemoteFileError", "%s is not a regular file", src->base.path);
        return -1;
    }
    src->base.size = (int64_t)st.st_size;
    return 0;
}

/***
Opens a file on a Windows share as an upload source, with libsmbclient (loaded on first use).
Its reads block until the server answers (libsmbclient has no other way), bounded by `timeout`.
The password is kept only while the source is open and never shown.
@function smb_open
@tparam string path `\\server\share\dir\file`, `//server/share/...` or
`smb://server[:port]/share/...` (no credentials in it)
@tparam[opt] table opts `user` (`"CORP\\analyst"` names the domain too), `password`, `domain`,
`port`, `timeout` (seconds, 30)
@treturn[1] source the file, for `client:scan_file`
@treturn[2] nil
@treturn[2] table the error value (`NotFound`, `PermissionDenied`, `AuthenticationFailed`,
`ConnectionError`, `RemoteFileError`, `InvalidArgument`; `Unsupported` in a build without
libsmbclient)
@raise on an unknown option or a wrong type
*/
static int vt_smb(lua_State *L)
{
    size_t len;
    smb_opts o;
    const char *path = check_smb_args(L, &len, &o);
    pthread_once(&smbc_once, smbc_load);
    if (smbc_load_error[0]) {
        explicit_bzero(o.password, sizeof o.password);
        return vt_fail(L, "Unsupported", "SMB support needs libsmbclient, which did not load: %s", smbc_load_error);
    }

    /* Created closed, with its metatable, before anything is acquired. */
    smb_source *src = vt_source_new(L, sizeof *src, &smb_source_class, 0);
    src->base.stall = DEFAULT_TIMEOUT; /* reads block: never waited for */
    memcpy(src->user, o.user, sizeof src->user);
    memcpy(src->domain, o.domain, sizeof src->domain);
    memcpy(src->password, o.password, sizeof src->password);
    explicit_bzero(o.password, sizeof o.password);

    vt_err e;
    int path_port = 0;
    if (parse_smb_path(src, path, len, &path_port, &e) != 0)
        goto fail;
    if (path_port && o.port && path_port != o.port) {
        vt_err_set(&e, "InvalidArgument", "SMB path %s names port %d but option port is %d", src->base.path, path_port,
                   o.port);
        goto fail;
    }
    if (source_acquire(src, path_port ? path_port : o.port, o.timeout, &e) != 0)
        goto fail;
    src->base.open = true;
    return 1;

fail:
    vt_source_close(&src->base);
    return vt_err_return(L, &e);
}

/* Registers vt.smb_open into the table at the top of the stack. */
void vt_smb_open(lua_State *L)
{
    lua_pushcfunction(L, vt_smb);
    lua_setfield(L, -2, "smb_open");
}

#else /* !VT_HAVE_SMB */

/* vt.smb_open(path, opts): the same argument checks, then Unsupported. */
static int vt_smb(lua_State *L)
{
    size_t len;
    smb_opts o;
    check_smb_args(L, &len, &o);
    explicit_bzero(o.password, sizeof o.password);
    return vt_fail(L, "Unsupported", "this build of vt lacks SMB support (libsmbclient was not found at build time)");
}

void vt_smb_open(lua_State *L)
{
    lua_pushcfunction(L, vt_smb);
    lua_setfield(L, -2, "smb_open");
}

#endif
