/* The limiter's state file: its format, and reading and writing it whole.
 *
 * Format (integers little-endian, doubles as their IEEE-754 bits):
 *   magic "vt-quota" | u32 version 1 | u32 payload length L | payload | u64 FNV-1a of all before
 *   payload: f64 blocked_from, f64 blocked_until, u32 window count, then per window
 *            u32 kind, u32 0, i64 n, f64 per (0 for calendar kinds), i64 period start,
 *            i64 used, f64 seen (last use by a limiter checking it), and for sliding
 *            windows `used` f64 times, oldest first.
 *
 * A file that fails its checks (torn by a power loss, say) is read as empty; one
 * that is not ours at all is told apart, so that it is never overwritten.
 */
#include "limiter.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_VERSION 1u
#define HEADER_SIZE 16      /* magic, version, payload length */
#define TRAILER_SIZE 8      /* checksum */
#define PAYLOAD_HEAD_SIZE 20
#define WINDOW_HEAD_SIZE 48

/* ----------------------------------------------------------- encoding */

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static unsigned char *put_f64(unsigned char *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return put_u64(p, bits);
}

static uint64_t fnv1a64(const unsigned char *p, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    while (len--) {
        h ^= *p++;
        h *= 1099511628211ull;
    }
    return h;
}

/* Serializes s into a new buffer; NULL when out of memory. */
static unsigned char *state_encode(const lim_state *s, size_t *len)
{
    size_t payload = PAYLOAD_HEAD_SIZE;
    for (size_t i = 0; i < s->count; i++)
        payload += WINDOW_HEAD_SIZE +
                   (s->w[i].kind == VT_WIN_SLIDING ? (size_t)s->w[i].used * 8 : 0);
    *len = HEADER_SIZE + payload + TRAILER_SIZE;
    unsigned char *buf = malloc(*len);
    if (!buf)
        return NULL;
    unsigned char *p = buf;
    memcpy(p, STATE_MAGIC, 8);
    p = put_u32(p + 8, STATE_VERSION);
    p = put_u32(p, (uint32_t)payload);
    p = put_f64(p, s->blocked_from);
    p = put_f64(p, s->blocked_until);
    p = put_u32(p, (uint32_t)s->count);
    for (size_t i = 0; i < s->count; i++) {
        const win_state *w = &s->w[i];
        p = put_u32(p, (uint32_t)w->kind);
        p = put_u32(p, 0);
        p = put_u64(p, (uint64_t)w->n);
        p = put_f64(p, w->per);
        p = put_u64(p, (uint64_t)w->period);
        p = put_u64(p, (uint64_t)w->used);
        p = put_f64(p, w->seen);
        for (int64_t j = 0; w->kind == VT_WIN_SLIDING && j < w->used; j++)
            p = put_f64(p, w->stamps[j]);
    }
    put_u64(p, fnv1a64(buf, (size_t)(p - buf)));
    return buf;
}

typedef struct reader {
    const unsigned char *p, *end;
    bool ok;
} reader;

static uint64_t get_u64n(reader *r, int bytes)
{
    if (!r->ok || r->end - r->p < bytes) {
        r->ok = false;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += bytes;
    return v;
}

static uint32_t get_u32(reader *r) { return (uint32_t)get_u64n(r, 4); }
static int64_t get_i64(reader *r) { return (int64_t)get_u64n(r, 8); }

static double get_f64(reader *r)
{
    uint64_t bits = get_u64n(r, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    if (!isfinite(d))
        r->ok = false;
    return d;
}

typedef enum { DECODE_OK, DECODE_INVALID, DECODE_NO_MEMORY } decode_result;

/* Parses buf into the empty state s, which stays empty unless buf is a
 * complete, intact state of this version. Running out of memory is told
 * apart: reading a good state as empty would then overwrite it. */
static decode_result state_decode(lim_state *s, const unsigned char *buf, size_t len)
{
    if (len < HEADER_SIZE + TRAILER_SIZE || memcmp(buf, STATE_MAGIC, 8) != 0)
        return DECODE_INVALID;
    reader r = {buf + 8, buf + len, true};
    bool short_of_memory = false;
    uint32_t version = get_u32(&r);
    uint32_t payload = get_u32(&r);
    if (version != STATE_VERSION || payload != len - HEADER_SIZE - TRAILER_SIZE)
        return DECODE_INVALID;
    reader tail = {buf + len - TRAILER_SIZE, buf + len, true};
    if ((uint64_t)get_i64(&tail) != fnv1a64(buf, len - TRAILER_SIZE))
        return DECODE_INVALID;
    r.end = buf + len - TRAILER_SIZE;

    s->blocked_from = get_f64(&r);
    s->blocked_until = get_f64(&r);
    uint32_t count = get_u32(&r);
    if (!r.ok || count > (size_t)(r.end - r.p) / WINDOW_HEAD_SIZE)
        return DECODE_INVALID;
    s->w = calloc(count ? count : 1, sizeof *s->w);
    if (!s->w)
        return DECODE_NO_MEMORY;
    s->cap = count ? count : 1;
    for (uint32_t i = 0; i < count && r.ok; i++) {
        win_state *w = &s->w[s->count++];
        uint32_t kind = get_u32(&r);
        get_u32(&r);
        w->kind = (vt_window_kind)kind;
        w->n = get_i64(&r);
        w->per = get_f64(&r);
        w->period = get_i64(&r);
        w->used = get_i64(&r);
        w->seen = get_f64(&r);
        if (!r.ok || kind > VT_WIN_MONTH || w->n < 1 || w->used < 0 || w->used > w->n)
            r.ok = false;
        else if (kind == VT_WIN_SLIDING) {
            if (!(w->per > 0) || (size_t)w->used > (size_t)(r.end - r.p) / 8) {
                r.ok = false;
                break;
            }
            w->cap = (size_t)w->used;
            w->stamps = malloc((w->cap ? w->cap : 1) * sizeof *w->stamps);
            if (!w->stamps) {
                short_of_memory = true;
                r.ok = false;
            }
            for (int64_t j = 0; j < w->used && r.ok; j++)
                w->stamps[j] = get_f64(&r);
        }
    }
    if (!r.ok || r.p != r.end) {
        vt_limiter_state_clear(s);
        return short_of_memory ? DECODE_NO_MEMORY : DECODE_INVALID;
    }
    return DECODE_OK;
}

/* -------------------------------------------------------------- files */

static ssize_t read_all(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static int write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, buf, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        buf += k;
        len -= (size_t)k;
    }
    return 0;
}

/* A file that starts neither like a state file (its magic, or a part of it when cut short)
 * nor with the zeros a crashed file system can leave is someone else's. */
static bool foreign(const unsigned char *buf, size_t len)
{
    size_t head = len < 8 ? len : 8;
    if (memcmp(buf, STATE_MAGIC, head) == 0)
        return false;
    for (size_t i = 0; i < head; i++)
        if (buf[i] != 0)
            return true;
    return false;
}

/* A state file we may not use, with what to do about it. */
static int not_ours(const char *path, const char *what, vt_err *e)
{
    vt_err_set(e, QUOTA_ERR, "quota state %s: %s; remove it, or give quota_state another path "
               "(requests wait until then, as they could not be counted)", path, what);
    return -1;
}

/* 0 when the file's first bytes allow rebuilding it (ours, damaged), else not_ours: another
 * program's file, or a state of a newer vt, which this one cannot read and must not undo. */
static int may_rebuild(const char *path, const unsigned char *head, size_t len, vt_err *e)
{
    if (foreign(head, len))
        return not_ours(path, "the file is not a vt quota state", e);
    if (len >= 12 && memcmp(head, STATE_MAGIC, 8) == 0) {
        reader r = {head + 8, head + 12, true};
        uint32_t version = get_u32(&r);
        if (version > STATE_VERSION)
            return not_ours(path, "the file is the state of a newer vt", e);
    }
    return 0;
}

int vt_limiter_state_load(const char *path, lim_state *st, vt_err *e)
{
    vt_limiter_state_clear(st);
    /* O_NONBLOCK: a FIFO put in its place must not hang every process on the key */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        vt_err_set(e, QUOTA_ERR, "quota state %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        vt_err_set(e, QUOTA_ERR, "quota state %s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return not_ours(path, "not a regular file", e);
    }
    if (sb.st_size <= 0) {
        close(fd);
        return 0;
    }
    if (sb.st_size > (off_t)MAX_STATE_BYTES) { /* no state of ours is this large: whose is it? */
        unsigned char head[HEADER_SIZE];
        ssize_t got = read_all(fd, head, sizeof head);
        int saved = errno;
        close(fd);
        if (got < 0) {
            vt_err_set(e, QUOTA_ERR, "quota state %s: cannot read: %s", path, strerror(saved));
            return -1;
        }
        /* zeros are what a torn write of ours may leave in a small file, not in a large one
         * (a disk image, a preallocated file): here only our magic allows a rebuild */
        if ((size_t)got < 8 || memcmp(head, STATE_MAGIC, 8) != 0)
            return not_ours(path, "the file is not a vt quota state", e);
        return may_rebuild(path, head, (size_t)got, e);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = malloc(size);
    if (!buf) {
        vt_err_oom(e, "reading the quota state");
        close(fd);
        return -1;
    }
    ssize_t got = read_all(fd, buf, size);
    int saved = errno;
    close(fd);
    if (got < 0) {
        free(buf);
        vt_err_set(e, QUOTA_ERR, "quota state %s: cannot read: %s", path, strerror(saved));
        return -1;
    }
    decode_result decoded = state_decode(st, buf, (size_t)got);
    /* ours but damaged (a bad checksum, cut short) is read as empty and rebuilt; another
     * program's file is never overwritten */
    int rc = decoded == DECODE_INVALID ? may_rebuild(path, buf, (size_t)got, e) : 0;
    free(buf);
    if (decoded == DECODE_NO_MEMORY) {
        vt_err_oom(e, "reading the quota state");
        return -1;
    }
    return rc;
}

int vt_limiter_state_save(const char *path, const char *tmp_path, const lim_state *st, vt_err *e)
{
    size_t len;
    unsigned char *buf = state_encode(st, &len);
    if (!buf) {
        vt_err_oom(e, "writing the quota state");
        return -1;
    }
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = fd >= 0 && write_all(fd, buf, len) == 0;
    int saved = errno;
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = false;
        saved = errno;
    }
    free(buf);
    if (ok && rename(tmp_path, path) < 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp_path);
        vt_err_set(e, QUOTA_ERR, "quota state %s: cannot write: %s", path, strerror(saved));
        return -1;
    }
    return 0;
}

