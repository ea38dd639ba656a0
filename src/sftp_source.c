/* Remote files over SFTP as upload sources: each on its own SFTP channel of
 * the session; reads never wait (see sftp.c). */
#include "sftp.h"

#include <stdio.h>
#include <string.h>

#define SFTP_SOURCE_MT "vt.sftp.source"

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
static void source_close(vt_source *base)
{
    sftp_source *src = (sftp_source *)base;
    sftp_session *s = src->sess;
    if (!s)
        return;
    double deadline = vt_sftp_close_deadline(s);
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
    *fd = src->sess->fd;
    *events = vt_sftp_session_events(src->sess);
    return VT_SOURCE_AGAIN;
}

static void source_read_error(sftp_source *src, ssize_t rc, vt_err *e)
{
    sftp_session *s = src->sess;
    if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
        vt_err_set(e, "RemoteFileError", "reading %s on %s:%d failed (SFTP status %lu)", src->base.path,
                   s->host, s->port, libssh2_sftp_last_error(src->sftp));
    } else if (vt_sftp_transport_error((int)rc)) {
        vt_err_set(e, "ConnectionError", "connection to %s:%d lost while reading %s: %s", s->host,
                   s->port, src->base.path, vt_sftp_message(s));
        vt_sftp_session_break(s); /* later calls fail at once, with a clear message */
    } else {
        vt_err_set(e, "RemoteFileError", "reading %s on %s:%d failed: %s", src->base.path, s->host,
                   s->port, vt_sftp_message(s));
    }
}

/* After EAGAIN: true (with e filled) when the SFTP server closed the channel,
 * which libssh2 1.10 would otherwise answer with EAGAIN forever. */
static bool server_gone(sftp_source *src, vt_err *e)
{
    if (!libssh2_channel_eof(libssh2_sftp_get_channel(src->sftp)))
        return false;
    vt_err_set(e, "ConnectionError", "the SFTP server on %s:%d went away while %s was read", src->sess->host,
               src->sess->port, src->base.path);
    vt_sftp_session_break(src->sess); /* nothing on this session could finish an exchange now */
    return true;
}

/* Never waits. At most `size` bytes come out in all, so the engine's framing
 * holds even if the remote file grows meanwhile. */
static ptrdiff_t source_read(vt_source *base, char *buf, size_t len, int *fd, int *events, vt_err *e)
{
    sftp_source *src = (sftp_source *)base;
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
                   src->base.path, src->sess->host, src->sess->port, (long long)src->pos, (long long)base->size);
        return VT_SOURCE_ERROR;
    }
    src->pos += rc;
    return rc;
}

/* Takes effect on the next read, which may first have to drain an interrupted
 * read without blocking. */
static int source_rewind(vt_source *base, vt_err *e)
{
    ((sftp_source *)base)->restart = true;
    return 0;
}

/* user@host:port:path */
static void source_describe(vt_source *base, luaL_Buffer *b)
{
    sftp_session *s = ((sftp_source *)base)->sess;
    lua_pushfstring(b->L, "%s@%s:%d:%s", s->user, s->host, s->port, base->path);
    luaL_addvalue(b);
}

static const vt_source_class sftp_source_class = {
    SFTP_SOURCE_MT, "SFTP source", source_read, source_rewind, source_close, source_describe,
};

/* Fills e for a failed stat or open of the source's path (rc: libssh2's error). Returns -1. */
static int open_failed(sftp_source *src, const char *doing, int rc, vt_err *e)
{
    sftp_session *s = src->sess;
    unsigned long fx = rc == LIBSSH2_ERROR_SFTP_PROTOCOL ? libssh2_sftp_last_error(src->sftp) : 0;
    if (rc == LIBSSH2_ERROR_EAGAIN)
        vt_err_set(e, "Timeout", "%s:%d did not %s %s within %gs", s->host, s->port, doing, src->base.path, s->timeout);
    else if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH)
        vt_err_set(e, "NotFound", "no such file on %s:%d: %s", s->host, s->port, src->base.path);
    else if (fx == LIBSSH2_FX_PERMISSION_DENIED)
        vt_err_set(e, "PermissionDenied", "permission denied on %s:%d: %s", s->host, s->port, src->base.path);
    else if (fx)
        vt_err_set(e, "RemoteFileError", "cannot %s %s on %s:%d (SFTP status %lu)", doing, src->base.path, s->host,
                   s->port, fx);
    else
        vt_err_set(e, vt_sftp_transport_error(rc) ? "ConnectionError" : "RemoteFileError",
                   "cannot %s %s on %s:%d: %s", doing, src->base.path, s->host, s->port, vt_sftp_message(s));
    return -1;
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
            vt_err_set(e, vt_sftp_transport_error(rc) ? "ConnectionError" : "RemoteFileError",
                       "cannot start SFTP on %s:%d: %s%s", s->host, s->port, vt_sftp_message(s),
                       rc == LIBSSH2_ERROR_CHANNEL_FAILURE
                           ? " (each open source holds a channel, and servers limit them per connection: "
                             "OpenSSH's MaxSessions is 10 by default; close the sources you are done with)"
                           : "");
        return -1;
    }
    /* The path is looked at before it is opened: the server's open() of a FIFO would wait
     * for a writer (until our timeout, holding the channel). */
    LIBSSH2_SFTP_ATTRIBUTES attrs;
    int rc;
    SSH_DRIVE(s, deadline, rc, libssh2_sftp_stat_ex(src->sftp, src->base.path, (unsigned)strlen(src->base.path),
                                                     LIBSSH2_SFTP_STAT, &attrs));
    if (rc != 0)
        return open_failed(src, "look at", rc == LIBSSH2_ERROR_TIMEOUT ? LIBSSH2_ERROR_EAGAIN : rc, e);
    if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && !LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
        vt_err_set(e, "RemoteFileError", "%s on %s:%d is not a regular file", src->base.path, s->host, s->port);
        return -1;
    }
    SSH_DRIVE_PTR(s, deadline, src->handle,
                  libssh2_sftp_open_ex(src->sftp, src->base.path, (unsigned)strlen(src->base.path), LIBSSH2_FXF_READ, 0,
                                       LIBSSH2_SFTP_OPENFILE));
    if (!src->handle)
        return open_failed(src, "open", libssh2_session_last_errno(s->ssh), e);
    SSH_DRIVE(s, deadline, rc, libssh2_sftp_fstat(src->handle, &attrs));
    if (rc != 0) {
        vt_err_set(e, rc == LIBSSH2_ERROR_TIMEOUT ? "Timeout" : "RemoteFileError",
                   "cannot read the size of %s on %s:%d: %s", src->base.path, s->host, s->port,
                   rc == LIBSSH2_ERROR_TIMEOUT ? "no answer in time" : vt_sftp_message(s));
        return -1;
    }
    if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && !LIBSSH2_SFTP_S_ISREG(attrs.permissions)) {
        vt_err_set(e, "RemoteFileError", "%s on %s:%d is not a regular file", src->base.path, s->host, s->port);
        return -1;
    }
    if (!(attrs.flags & LIBSSH2_SFTP_ATTR_SIZE)) {
        vt_err_set(e, "RemoteFileError", "%s:%d did not tell the size of %s", s->host, s->port, src->base.path);
        return -1;
    }
    src->base.size = (int64_t)attrs.filesize;
    return 0;
}

/* Opens path on the session as a source (pushed), or pushes nil, err. */
int vt_sftp_session_open(lua_State *L, sftp_session *s)
{
    size_t len;
    const char *path = vt_checkstring(L, 2, &len);
    if (len == 0 || len >= sizeof(((vt_source *)0)->path) || memchr(path, '\0', len))
        return vt_fail(L, "InvalidArgument", "invalid remote path (empty, too long or with a NUL byte)");
    if (s->broken)
        return vt_fail(L, "ConnectionError", "the connection to %s:%d was lost; open a new session", s->host,
                       s->port);

    /* Created closed, with its metatable, before anything is acquired. */
    sftp_source *src = vt_source_new(L, sizeof *src, &sftp_source_class, 1);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the session lives as long as the source */
    vt_source_set_path(&src->base, path, len);
    src->base.stall = s->timeout;

    src->sess = s;
    src->next = s->sources; /* listed first, so that every exit releases it */
    if (s->sources)
        s->sources->prev = src;
    s->sources = src;

    vt_err e;
    if (source_acquire(src, &e) != 0) {
        if (strcmp(e.code, "ConnectionError") == 0)
            vt_sftp_session_break(s);
        vt_source_close(&src->base);
        return vt_err_return(L, &e);
    }
    src->base.open = true;
    return 1;
}
