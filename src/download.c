/* Downloads: c:download (and v2 file/download) stream the content to a
 * temporary file beside the destination, follow the storage redirect without
 * the key, verify the digest and rename the file into place. */
/*** @module vt */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOWNLOAD_MAX_DEFAULT (100LL * 1024 * 1024)
#define MAX_REDIRECTS 3
#define VT_TEMPFILE_MT "vt.tempfile"

/* ------------------------------------------------------------- downloads */

typedef struct tempfile {
    int fd;
    bool committed;
    char path[PATH_MAX];
} tempfile;

/* Closes the file; removes it unless it was renamed into place. */
static void tempfile_release(tempfile *t)
{
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    if (!t->committed && t->path[0])
        unlink(t->path);
    t->path[0] = '\0';
}

static int tempfile_gc(lua_State *L)
{
    tempfile_release(luaL_checkudata(L, 1, VT_TEMPFILE_MT));
    return 0;
}

/* A temporary file beside dest that disappears unless committed: when the call returns, or
 * raises (a progress function's error), or at the latest when collected. */
static tempfile *push_tempfile(lua_State *L, const char *dest, vt_err *e)
{
    tempfile *t = lua_newuserdatauv(L, sizeof *t, 0);
    t->fd = -1;
    t->committed = false;
    t->path[0] = '\0';
    if (luaL_newmetatable(L, VT_TEMPFILE_MT)) {
        lua_pushcfunction(L, tempfile_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, tempfile_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    lua_toclose(L, -1);
    if (snprintf(t->path, sizeof t->path, "%s.vt-XXXXXX", dest) >= (int)sizeof t->path) {
        t->path[0] = '\0';
        vt_err_set(e, "InvalidArgument", "destination path too long");
        return NULL;
    }
    t->fd = mkostemp(t->path, O_CLOEXEC);
    if (t->fd < 0) {
        vt_err_set(e, "InvalidArgument", "cannot create a file beside '%s': %s", dest, strerror(errno));
        t->path[0] = '\0';
        return NULL;
    }
    return t;
}

static void set_file_sink(lua_State *L, vt_job *j, tempfile *t, int64_t max_bytes)
{
    j->sink = VT_SINK_FILE;
    j->sink_fd = t->fd;
    j->max_bytes = max_bytes;
    j->streaming = true;
    j->digest = vt_digest_new();
    if (!j->digest)
        vt_raise_oom(L, "starting a digest");
}

/* The progress of a download (vt_progress_args): the content's bytes written so far (the file's
 * offset: a redirect or a retry starts it again) and its announced length (nil when unknown). */
static int download_progress(lua_State *L, vt_job *j, bool ended)
{
    bool ok = !j->err.code[0] && j->status >= 200 && j->status < 300;
    if (ended && !ok)
        return 0; /* a redirect to the content, or a failure: nothing to say */
    off_t done = lseek(j->sink_fd, 0, SEEK_CUR);
    int64_t total = ended ? (int64_t)done : vt_job_expected_bytes(j);
    lua_pushinteger(L, done > 0 ? (lua_Integer)done : 0);
    if (total >= 0)
        lua_pushinteger(L, total);
    else
        lua_pushnil(L);
    return 2;
}

/* Stack of a download, from `base` (the continuation's ctx): the lowercase
 * hash, dest, max_bytes, the progress function or nil, the temporary file, then one job per
 * hop. */
static int download_verify(lua_State *L, vt_client *c, int base)
{
    const char *expected = lua_tostring(L, base), *dest = lua_tostring(L, base + 1);
    tempfile *t = lua_touserdata(L, base + 4);
    vt_job *j = lua_touserdata(L, -1);
    int hops = lua_gettop(L) - (base + 4);
    vt_err e;
    if (vt_job_redirected(j)) {
        /* follow it ourselves, WITHOUT the key: libcurl would forward custom headers */
        if (hops > MAX_REDIRECTS)
            return vt_fail(L, "InvalidResponse", "too many redirects");
        if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) != 0)
            return vt_fail(L, "InvalidArgument", "cannot write '%s': %s", t->path, strerror(errno));
        vt_job *next = vt_job_push(L);
        if (vt_job_prepare_redirect(L, next, j->location, &e) != 0)
            return vt_err_return(L, &e);
        set_file_sink(L, next, t, lua_tointeger(L, base + 2));
        return -1; /* the caller awaits it */
    }
    if (vt_client_job_error(L, c, j, &e))
        return vt_err_return(L, &e);
    char md5[33], sha1[41], sha256[65];
    vt_digest_final(j->digest, md5, sha1, sha256);
    size_t len = strlen(expected);
    const char *got = len == 32 ? md5 : len == 40 ? sha1 : sha256;
    if (strcmp(got, expected) != 0)
        return vt_fail(L, "DigestMismatch", "downloaded content has %s %s, not the %s asked for",
                       vt_hash_name(vt_hash_kind_of(expected, len)), got, expected);
    /* mkostemp made it 0600; a finished download gets the mode any new file would */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(t->fd, 0666 & ~mask) != 0 || fsync(t->fd) != 0 || rename(t->path, dest) != 0)
        return vt_fail(L, "InvalidArgument", "cannot move the download to '%s': %s", dest, strerror(errno));
    t->committed = true;
    vt_push_digests(L, md5, sha1, sha256, j->resp_total);
    lua_pushstring(L, dest);
    lua_setfield(L, -2, "path");
    return 1;
}

static int download_step(lua_State *L, int status, lua_KContext base)
{
    vt_client *c = vt_client_check(L, 1);
    int n = download_verify(L, c, (int)base);
    if (n < 0)
        return vt_client_await_progress(L, c, 1, (int)base + 3, download_progress, base, download_step);
    tempfile_release(lua_touserdata(L, (int)base + 4)); /* now: no partial file survives */
    return n;
}

/* Shared by c:download and v2 file/download: hash at idx, dest at idx+1, opts at idx+2. */
/* Before any request: a destination that can become the downloaded file. It may exist as a
 * regular file (it is replaced); a directory, a FIFO or a device in its place is refused,
 * and a missing directory shows when the temporary file beside it cannot be made. */
static int check_destination(const char *dest, size_t len, vt_err *e)
{
    struct stat st;
    if (len == 0 || memchr(dest, '\0', len)) {
        vt_err_set(e, "InvalidArgument", "the destination path is empty or holds a NUL byte");
        return -1;
    }
    if (stat(dest, &st) == 0 && !S_ISREG(st.st_mode)) {
        vt_err_set(e, "InvalidArgument", "the destination '%s' exists and is not a regular file", dest);
        return -1;
    }
    return 0;
}

int vt_client_download(lua_State *L, vt_client *c, int idx, bool v2)
{
    static const char *const keys[] = {"max_bytes", "progress", NULL};
    vt_err e;
    idx = lua_absindex(L, idx);
    size_t dest_len;
    const char *dest = vt_checkstring(L, idx + 1, &dest_len);
    vt_check_opts(L, idx + 2, "download", keys);
    int64_t max_bytes = vt_opt_integer(L, idx + 2, "max_bytes", DOWNLOAD_MAX_DEFAULT, 1);
    if (check_destination(dest, dest_len, &e) != 0 || vt_push_object_id(L, VT_KIND_FILE, idx, &e) != 0)
        return vt_err_return(L, &e);
    int base = lua_gettop(L);
    const char *hash = lua_tostring(L, base);
    lua_pushvalue(L, idx + 1);
    lua_pushinteger(L, max_bytes);
    vt_push_progress_opt(L, idx + 2);
    tempfile *t = push_tempfile(L, lua_tostring(L, base + 1), &e);
    if (!t)
        return vt_err_return(L, &e);
    vt_job *j = vt_job_push(L);
    if (v2) {
        lua_newtable(L);
        lua_pushstring(L, hash);
        lua_setfield(L, -2, "hash");
        lua_pushstring(L, c->apikey);
        lua_setfield(L, -2, "apikey");
        vt_push_query(L, -1);
        vt_client_prepare(L, c, j, "GET", "/vtapi/v2/file/download", lua_tostring(L, -1));
        lua_pop(L, 2);
    } else {
        lua_pushfstring(L, "/files/%s/download", hash);
        vt_client_prepare(L, c, j, "GET", lua_tostring(L, -1), NULL);
        lua_pop(L, 1);
    }
    set_file_sink(L, j, t, max_bytes);
    return vt_client_await_progress(L, c, 1, base + 3, download_progress, base, download_step);
}

/*** @type client */

/***
Downloads a file's content (a premium key's right): follows the redirect to the storage host
itself, without the key, streams into a temporary file beside `dest`, checks the content
against the hash given, and renames it into place only when it matches: no partial file is left.
@function client:download
@tparam string hash the file's MD5, SHA-1 or SHA-256
@tparam string dest the path to write
@tparam[opt] table opts `max_bytes` (default 100 MB)
@treturn[1] table `{path, size, md5, sha1, sha256}`
@treturn[2] nil
@treturn[2] table the error value (`DigestMismatch`, `TooLarge`, `NotFoundError`, ...)
*/
static int client_download(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    lua_settop(L, 4);
    return vt_client_download(L, c, 2, false);
}

void vt_download_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"download", client_download},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
