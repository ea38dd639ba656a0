/* Upload sources that live on this machine: a local file (read in bounded
 * chunks, never whole) and a Lua string. Remote ones are in sftp.c and smb.c. */
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VT_LOCAL_SOURCE_MT "vt.local_source"

typedef struct local_source {
    vt_source base;     /* first: vt_source_test casts */
    int fd;             /* -1 for a string source */
    const char *data;   /* string source: the string, kept alive by the uservalue */
    int64_t pos;
} local_source;

vt_source *vt_source_test(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TUSERDATA || luaL_getmetafield(L, idx, "__vt_source") == LUA_TNIL)
        return NULL;
    bool marked = lua_toboolean(L, -1);
    lua_pop(L, 1);
    vt_source *s = marked ? lua_touserdata(L, idx) : NULL;
    return s && s->ops ? s : NULL;
}

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

static int local_rewind(vt_source *base)
{
    ((local_source *)base)->pos = 0;
    return 0;
}

static const vt_source_ops local_ops = {local_read, local_rewind};

static int local_close(lua_State *L)
{
    local_source *s = luaL_checkudata(L, 1, VT_LOCAL_SOURCE_MT);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->base.ops = NULL;
    return 0;
}

static local_source *push_local(lua_State *L)
{
    local_source *s = lua_newuserdatauv(L, sizeof *s, 1);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    if (luaL_newmetatable(L, VT_LOCAL_SOURCE_MT)) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "__vt_source");
        lua_pushcfunction(L, local_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, local_close);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return s;
}

static void set_name(vt_source *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    snprintf(s->name, sizeof s->name, "%s", slash && slash[1] ? slash + 1 : path);
}

int vt_source_push_file(lua_State *L, const char *path, vt_err *e)
{
    local_source *s = push_local(L); /* exists before the fd does */
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        vt_err_set(e, "InvalidArgument", "cannot open '%s': %s", path, strerror(errno));
        lua_pop(L, 1); /* __gc closes the fd */
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        vt_err_set(e, "InvalidArgument", "'%s' is not a regular file", path);
        lua_pop(L, 1);
        return 0;
    }
    s->base.size = st.st_size;
    set_name(&s->base, path);
    s->base.ops = &local_ops;
    return 1;
}

int vt_source_push_string(lua_State *L, int data_idx, const char *name)
{
    data_idx = lua_absindex(L, data_idx);
    size_t len;
    const char *data = lua_tolstring(L, data_idx, &len);
    local_source *s = push_local(L);
    lua_pushvalue(L, data_idx);
    lua_setiuservalue(L, -2, 1); /* keeps the string alive while the source is */
    s->data = data;
    s->base.size = (int64_t)len;
    set_name(&s->base, name);
    s->base.ops = &local_ops;
    return 1;
}

/* Waits until fd is ready for events (VT_WANT_*) or the deadline passes. */
static bool wait_ready(int fd, int events, double deadline)
{
    struct pollfd p = {fd, (short)(((events & VT_WANT_READ) ? POLLIN : 0) | ((events & VT_WANT_WRITE) ? POLLOUT : 0)), 0};
    for (;;) {
        double left = deadline - vt_monotonic();
        if (left <= 0)
            return false;
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc > 0)
            return true;
        if (rc < 0 && errno != EINTR)
            return false;
    }
}

#define LUA_READ_CHUNK 65536

int vt_source_lua_read(lua_State *L, vt_source *s, double stall)
{
    lua_Integer n = luaL_optinteger(L, 2, LUA_READ_CHUNK);
    luaL_argcheck(L, n > 0, 2, "must be positive");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t got = 0;
    double deadline = vt_monotonic() + stall;
    while (got < (size_t)n) {
        size_t want = (size_t)n - got;
        if (want > LUA_READ_CHUNK)
            want = LUA_READ_CHUNK;
        char *p = luaL_prepbuffsize(&b, want);
        int fd = -1, events = 0;
        vt_err e;
        ptrdiff_t rc = s->ops->read(s, p, want, &fd, &events, &e);
        if (rc == VT_SOURCE_AGAIN) {
            if (!wait_ready(fd, events, deadline)) {
                vt_err_set(&e, "Timeout", "no data for %s within %gs", s->name, stall);
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
        deadline = vt_monotonic() + stall;
    }
    if (got == 0)
        lua_pushnil(L);
    else
        luaL_pushresult(&b);
    return 1;
}

int vt_source_index(lua_State *L, const vt_source *s, const char *path, bool closed)
{
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "size") == 0)
        lua_pushinteger(L, (lua_Integer)s->size);
    else if (strcmp(key, "name") == 0)
        lua_pushstring(L, s->name);
    else if (strcmp(key, "path") == 0)
        lua_pushstring(L, path);
    else if (strcmp(key, "closed") == 0)
        lua_pushboolean(L, closed);
    else
        lua_rawget(L, lua_upvalueindex(1));
    return 1;
}
