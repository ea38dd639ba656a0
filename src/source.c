/* Upload sources: the one face every kind of source shows Lua (read, rewind,
 * close, tostring, the fields size, name, path and closed), as luv merges its
 * handle methods per type; and the sources that live on this machine, a local
 * file (read in bounded chunks, never whole) and a Lua string. Remote kinds
 * (sftp_source.c, smb.c) bring only their class: read, rewind, close and a
 * description. */

/*** @module vt */
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LUA_READ_CHUNK 65536

/* ------------------------------------------------------------------ waiting */

int vt_wait_fd(int fd, int events, double deadline)
{
    short want = (short)(((events & VT_WANT_READ) ? POLLIN : 0) | ((events & VT_WANT_WRITE) ? POLLOUT : 0));
    for (;;) {
        double left = deadline - vt_monotonic();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = want};
        int ms = left > 86400 ? 86400000 : (int)(left * 1000) + 1;
        int rc = poll(&p, 1, ms);
        if (rc > 0 || (rc < 0 && errno != EINTR))
            return 1;
    }
}

/* --------------------------------------------------------------- the face */

vt_source *vt_source_test(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__vt_source") == LUA_TNIL)
        return NULL;
    bool marked = lua_toboolean(L, -1);
    lua_pop(L, 1);
    vt_source *s = marked ? lua_touserdata(L, idx) : NULL;
    return s && s->open ? s : NULL;
}

void vt_source_close(vt_source *s)
{
    s->open = false;
    s->cls->close(s);
}

/* Any source at idx, open or closed; raises for anything else. */
static vt_source *check_source(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__vt_source") != LUA_TNIL) {
        lua_pop(L, 1);
        return lua_touserdata(L, idx);
    }
    luaL_typeerror(L, idx, "vt source");
    return NULL;
}

static vt_source *check_open_source(lua_State *L, int idx)
{
    vt_source *s = check_source(L, idx);
    if (!s->open)
        luaL_error(L, "attempt to use a closed %s", s->cls->label);
    return s;
}

/*** An upload source: a remote file opened by `sess:open` or `vt.smb_open`, which `c:scan_file`
and `c:v2_file_scan` stream into the upload. Fields: `size` (bytes), `name` (the base name, sent as
the upload's file name), `path` (as given), `closed` (boolean). A source is a to-be-closed value
(`local src <close> = ...`) and is closed when collected; the password it was opened with never
shows in `tostring`.
@type source
*/

/***
Reads the next bytes of the file, waiting for the server (at most the session's `timeout`
between two bits of progress). For Lua code that wants the bytes itself; an upload never calls it.
@function source:read
@tparam[opt=65536] integer n how many bytes to read
@treturn[1] string up to `n` bytes, fewer only at the end of the file
@return[2] nil at the end of the file
@treturn[3] nil
@treturn[3] table the error value (`Timeout`, `ConnectionError`, `RemoteFileError`)
@raise on a closed source, or when `n` is not a positive integer
*/
static int source_read(lua_State *L)
{
    vt_source *s = check_open_source(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, LUA_READ_CHUNK);
    luaL_argcheck(L, n > 0, 2, "must be positive");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t got = 0;
    double deadline = vt_monotonic() + s->stall;
    while (got < (size_t)n) {
        size_t want = (size_t)n - got;
        if (want > LUA_READ_CHUNK)
            want = LUA_READ_CHUNK;
        char *p = luaL_prepbuffsize(&b, want);
        int fd = -1, events = 0;
        vt_err e;
        ptrdiff_t rc = s->cls->read(s, p, want, &fd, &events, &e);
        if (rc == VT_SOURCE_AGAIN) {
            if (!vt_wait_fd(fd, events, deadline)) {
                vt_err_set(&e, "Timeout", "no data for %s within %gs", s->name, s->stall);
                return vt_err_return(L, &e);
            }
            continue;
        }
        if (rc == VT_SOURCE_ERROR)
            return vt_err_return(L, &e);
        if (rc == 0)
            break;
        luaL_addsize(&b, (size_t)rc);
        got += (size_t)rc;
        deadline = vt_monotonic() + s->stall;
    }
    if (got == 0)
        lua_pushnil(L);
    else
        luaL_pushresult(&b);
    return 1;
}

/***
Starts the file again from its first byte (an upload that is sent again does this itself).
@function source:rewind
@treturn[1] boolean `true`
@treturn[2] nil
@treturn[2] table the error value when the server refuses
@raise on a closed source
*/
static int source_rewind(lua_State *L)
{
    vt_source *s = check_open_source(L, 1);
    vt_err e;
    if (s->cls->rewind(s, &e) != 0)
        return vt_err_return(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/***
Closes the file and frees what it holds (its SFTP channel, its SMB connection). Closing twice is
fine; an upload still running from it then fails.
@function source:close
@treturn boolean `true`
*/
static int source_close(lua_State *L)
{
    vt_source_close(check_source(L, 1));
    lua_pushboolean(L, 1);
    return 1;
}

static int source_tostring(lua_State *L)
{
    vt_source *s = check_source(L, 1);
    if (!s->open) {
        lua_pushfstring(L, "%s (%s, closed)", s->cls->mt, s->path);
        return 1;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "%s (", s->cls->mt);
    luaL_addvalue(&b);
    if (s->cls->describe)
        s->cls->describe(s, &b);
    else
        luaL_addstring(&b, s->path);
    lua_pushfstring(L, ", %I bytes)", (lua_Integer)s->size);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return 1;
}

/* Fields first, then the methods (upvalue 1). */
static int source_index(lua_State *L)
{
    vt_source *s = check_source(L, 1);
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "size") == 0)
        lua_pushinteger(L, (lua_Integer)s->size);
    else if (strcmp(key, "name") == 0)
        lua_pushstring(L, s->name);
    else if (strcmp(key, "path") == 0)
        lua_pushstring(L, s->path);
    else if (strcmp(key, "closed") == 0)
        lua_pushboolean(L, !s->open);
    else
        lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

void *vt_source_new(lua_State *L, size_t size, const vt_source_class *cls, int nuvalue)
{
    static const luaL_Reg meta[] = {
        {"__gc", source_close}, {"__close", source_close}, {"__tostring", source_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"read", source_read},
        {"rewind", source_rewind},
        {"close", source_close},
        {NULL, NULL},
    };
    vt_source *s = lua_newuserdatauv(L, size, nuvalue);
    memset(s, 0, size);
    s->cls = cls;
    if (luaL_newmetatable(L, cls->mt)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_pushcclosure(L, source_index, 1);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "__vt_source");
    }
    lua_setmetatable(L, -2);
    return s;
}

void vt_source_set_path(vt_source *s, const char *path, size_t len)
{
    if (len >= sizeof s->path)
        len = sizeof s->path - 1;
    memcpy(s->path, path, len);
    s->path[len] = '\0';
    const char *slash = strrchr(s->path, '/');
    const char *base = slash && slash[1] ? slash + 1 : s->path;
    size_t n = strlen(base);
    if (n >= sizeof s->name)
        n = sizeof s->name - 1;
    memcpy(s->name, base, n);
    s->name[n] = '\0';
}

/* ---------------------------------------------------------- local sources */

typedef struct local_source {
    vt_source base;     /* first: the engine and the face see a vt_source */
    int fd;             /* -1 for a string source */
    const char *data;   /* string source: the string, kept alive by the uservalue */
    int64_t pos;
} local_source;

static ptrdiff_t local_read(vt_source *base, char *buf, size_t len, int *fd, int *events, vt_err *e)
{
    local_source *s = (local_source *)base;
    if (s->pos >= base->size)
        return 0;
    if ((int64_t)len > base->size - s->pos)
        len = (size_t)(base->size - s->pos);
    if (s->fd < 0) {
        memcpy(buf, s->data + s->pos, len);
        s->pos += (int64_t)len;
        return (ptrdiff_t)len;
    }
    ssize_t n;
    do
        n = pread(s->fd, buf, len, s->pos);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        vt_err_set(e, "InvalidArgument", "reading '%s' failed: %s", base->name, strerror(errno));
        return VT_SOURCE_ERROR;
    }
    s->pos += n;
    return n;
}

static int local_rewind(vt_source *base, vt_err *e)
{
    ((local_source *)base)->pos = 0;
    return 0;
}

static void local_close(vt_source *base)
{
    local_source *s = (local_source *)base;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

static const vt_source_class local_class = {
    "vt.local_source", "local source", local_read, local_rewind, local_close, NULL,
};

static local_source *push_local(lua_State *L)
{
    local_source *s = vt_source_new(L, sizeof *s, &local_class, 1);
    s->fd = -1;
    return s;
}

int vt_source_push_file(lua_State *L, const char *path, vt_err *e)
{
    local_source *s = push_local(L); /* exists before the fd does */
    /* O_NONBLOCK: opening a FIFO (a path taken from an alert) would wait for a writer for
     * ever; opened so, it fails the regular-file check below at once. Reads of a regular
     * file ignore the flag. */
    s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        vt_err_set(e, "InvalidArgument", "cannot open '%s': %s", path, strerror(errno));
        lua_pop(L, 1); /* __gc closes the fd */
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        vt_err_set(e, "InvalidArgument", "'%s' is not a regular file", path);
        lua_pop(L, 1);
        return -1;
    }
    s->base.size = st.st_size;
    vt_source_set_path(&s->base, path, strlen(path));
    s->base.open = true;
    return 0;
}

void vt_source_push_string(lua_State *L, int data_idx, const char *name)
{
    data_idx = lua_absindex(L, data_idx);
    size_t len;
    const char *data = lua_tolstring(L, data_idx, &len);
    local_source *s = push_local(L);
    lua_pushvalue(L, data_idx);
    lua_setiuservalue(L, -2, 1); /* keeps the string alive while the source is */
    s->data = data;
    s->base.size = (int64_t)len;
    vt_source_set_path(&s->base, name, strlen(name));
    s->base.open = true;
}
