/* MD5, SHA-1 and SHA-256 of one stream in a single pass (downloads are checked
 * against whichever hash the caller named, and all three are reported), through
 * OpenSSL's EVP interface; and vt.digest, the same for a file or a string.
 *
 * vt.h gives update and final no way to report failure, so a failed OpenSSL
 * call marks the digest failed and final then writes empty strings: an empty
 * digest matches no hash, so the caller's comparison fails safe. */

/*** @module vt */
#include "vt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

enum { DIGEST_MD5, DIGEST_SHA1, DIGEST_SHA256, DIGEST_COUNT };

struct vt_digest {
    EVP_MD_CTX *ctx[DIGEST_COUNT];
    bool failed; /* an OpenSSL call failed, or final already ran */
};

/* Each digest's algorithm and size in bytes (the callers' hex buffers are sized
 * from these), in the order of the enum. */
static const struct {
    const EVP_MD *(*md)(void);
    unsigned int size;
} algorithms[DIGEST_COUNT] = {
    {EVP_md5, 16}, {EVP_sha1, 20}, {EVP_sha256, 32},
};

static void to_hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

void vt_digest_free(vt_digest *d)
{
    if (!d)
        return;
    for (int i = 0; i < DIGEST_COUNT; i++)
        EVP_MD_CTX_free(d->ctx[i]);
    free(d);
}

vt_digest *vt_digest_new(void)
{
    vt_digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    for (int i = 0; i < DIGEST_COUNT; i++) {
        /* Init fails for MD5 when only a FIPS provider is loaded: treated like
         * an allocation failure, there is no digest to hand out. */
        d->ctx[i] = EVP_MD_CTX_new();
        if (!d->ctx[i] || EVP_DigestInit_ex(d->ctx[i], algorithms[i].md(), NULL) != 1) {
            vt_digest_free(d);
            return NULL;
        }
    }
    return d;
}

void vt_digest_update(vt_digest *d, const void *data, size_t len)
{
    if (d->failed || len == 0)
        return;
    for (int i = 0; i < DIGEST_COUNT; i++)
        if (EVP_DigestUpdate(d->ctx[i], data, len) != 1)
            d->failed = true;
}

/* Finishes one context into lowercase hex; false when OpenSSL fails or hands
 * back a size other than the one out was made for. */
static bool final_hex(EVP_MD_CTX *ctx, unsigned int size, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx, md, &n) != 1 || n != size)
        return false;
    to_hex(md, n, out);
    return true;
}

void vt_digest_final(vt_digest *d, char md5[33], char sha1[41], char sha256[65])
{
    char *out[DIGEST_COUNT] = {md5, sha1, sha256};
    bool ok = !d->failed;
    for (int i = 0; i < DIGEST_COUNT && ok; i++)
        ok = final_hex(d->ctx[i], algorithms[i].size, out[i]);
    if (!ok)
        for (int i = 0; i < DIGEST_COUNT; i++)
            out[i][0] = '\0';
    /* An EVP context may not be finalised twice; a second final gives "". */
    d->failed = true;
}

void vt_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != algorithms[DIGEST_SHA256].size) {
        out[0] = '\0';
        return;
    }
    to_hex(md, n, out);
}

/* ---------------------------------------------------------------- vt.digest */

#define VT_DIGEST_MT "vt.digest"
#define READ_CHUNK 65536

/* A digest owned by a userdata, so a raise cannot leak it. */
static vt_digest **push_owned_digest(lua_State *L)
{
    vt_digest **slot = lua_newuserdatauv(L, sizeof *slot, 0);
    *slot = NULL;
    luaL_setmetatable(L, VT_DIGEST_MT);
    if (!(*slot = vt_digest_new()))
        vt_raise_oom(L, "starting a digest");
    return slot;
}

static int digest_gc(lua_State *L)
{
    vt_digest **slot = luaL_checkudata(L, 1, VT_DIGEST_MT);
    vt_digest_free(*slot);
    *slot = NULL;
    return 0;
}

/* Feeds the regular file at path to d, in bounded chunks; 0, or -1 with e filled.
 * O_NONBLOCK: opening a FIFO or a device named by an alert never blocks. */
static int digest_file(vt_digest *d, const char *path, int64_t *size, vt_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        vt_err_set(e, "InvalidArgument", "cannot open '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        vt_err_set(e, "InvalidArgument", "'%s' is not a regular file", path);
        close(fd);
        return -1;
    }
    char buf[READ_CHUNK];
    *size = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            vt_err_set(e, "InvalidArgument", "reading '%s' failed: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        vt_digest_update(d, buf, (size_t)n);
        *size += n;
    }
    close(fd);
    return 0;
}

/***
The MD5, SHA-1 and SHA-256 of a file (streamed, never read whole) or of a string.
@function digest
@param source a path, or `{data = string}`
@treturn[1] table `{md5, sha1, sha256, size}` (lower-case hex)
@treturn[2] nil
@treturn[2] table the error value (`InvalidArgument` for a missing file, or one that is not a
regular file: it fails at once)
@raise on a wrong type or an unknown key
*/
static int l_digest(lua_State *L)
{
    static const char *const keys[] = {"data", NULL};
    int64_t size = 0;
    vt_err e;
    int t = lua_type(L, 1);
    if (t != LUA_TSTRING && t != LUA_TTABLE)
        return luaL_typeerror(L, 1, "path or {data = string}");
    lua_settop(L, 1);
    vt_digest **slot = push_owned_digest(L); /* 2 */
    if (t == LUA_TTABLE) {
        vt_check_option_keys(L, 1, "vt.digest", keys);
        if (lua_getfield(L, 1, "data") != LUA_TSTRING)
            return luaL_error(L, "vt.digest: 'data' must be a string");
        size_t len;
        const char *data = lua_tolstring(L, -1, &len);
        vt_digest_update(*slot, data, len);
        size = (int64_t)len;
    } else {
        size_t len;
        const char *path = lua_tolstring(L, 1, &len);
        if (len == 0 || strlen(path) != len)
            return vt_fail(L, "InvalidArgument", "file path is empty or contains a NUL byte");
        if (digest_file(*slot, path, &size, &e) < 0)
            return vt_err_return(L, &e);
    }
    char md5[33], sha1[41], sha256[65];
    vt_digest_final(*slot, md5, sha1, sha256);
    if (!sha256[0])
        return vt_fail(L, "InvalidArgument", "the digest could not be computed (OpenSSL failed)");
    vt_push_digests(L, md5, sha1, sha256, size);
    return 1;
}

void vt_push_digests(lua_State *L, const char *md5, const char *sha1, const char *sha256, int64_t size)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, md5);
    lua_setfield(L, -2, "md5");
    lua_pushstring(L, sha1);
    lua_setfield(L, -2, "sha1");
    lua_pushstring(L, sha256);
    lua_setfield(L, -2, "sha256");
    lua_pushinteger(L, (lua_Integer)size);
    lua_setfield(L, -2, "size");
}

void vt_digest_open(lua_State *L)
{
    if (luaL_newmetatable(L, VT_DIGEST_MT)) {
        lua_pushcfunction(L, digest_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_digest);
    lua_setfield(L, -2, "digest");
}
