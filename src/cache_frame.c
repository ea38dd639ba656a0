/* The bytes of a cache entry, the same in every backend: a frame, made when an
 * answer is stored and checked whenever one is read.
 *
 * An entry's bytes: "VTC1", u16 status (200, or 404 for a negative
 * v3 answer), u16 flags (bit 0: negative), u32 key length, u32 body length,
 * the key, the body as the service sent it, then a u64 checksum of all before
 * (frame_sum; all integers little-endian). A reader checks the frame, then
 * (cache.c) the decoded body's shape; a corrupt entry is dropped and the
 * look-up asks the service. */
#include "cache.h"

#include <stdlib.h>
#include <string.h>

#define FRAME_MAGIC "VTC1"
#define FRAME_HEAD 16
#define FRAME_TAIL 8
#define FLAG_NEGATIVE 1u

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A checksum of a frame, eight bytes at a time (a byte-at-a-time hash was a tenth
 * of what a hit costs): each little-endian word is mixed in by xor, multiply and
 * shift; the last word is padded with zeros; the length goes in first. */
static uint64_t frame_sum(const unsigned char *p, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word; /* one load, not eight: this loop is most of a hit's checking */
        memcpy(&word, p + i, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word);
#endif
        h = (h ^ word) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    uint64_t last = 0;
    for (size_t k = 0; i + k < len; k++)
        last |= (uint64_t)p[i + k] << (8 * k);
    h = (h ^ last) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

char *vt_cache_frame_new(const char *key, long status, bool negative, const char *body, size_t body_len, size_t *len)
{
    size_t key_len = strlen(key);
    *len = FRAME_HEAD + key_len + body_len + FRAME_TAIL;
    unsigned char *f = malloc(*len);
    if (!f)
        return NULL;
    memcpy(f, FRAME_MAGIC, 4);
    put_le(f + 4, (uint64_t)status, 2);
    put_le(f + 6, negative ? FLAG_NEGATIVE : 0, 2);
    put_le(f + 8, key_len, 4);
    put_le(f + 12, body_len, 4);
    memcpy(f + FRAME_HEAD, key, key_len);
    memcpy(f + FRAME_HEAD + key_len, body, body_len);
    put_le(f + *len - FRAME_TAIL, frame_sum(f, *len - FRAME_TAIL), 8);
    return (char *)f;
}

bool vt_cache_frame_open(const char *frame, size_t len, const char *name, long *status, const char **body,
                         size_t *body_len)
{
    const unsigned char *f = (const unsigned char *)frame;
    if (len < FRAME_HEAD + FRAME_TAIL || memcmp(f, FRAME_MAGIC, 4) != 0)
        return false;
    uint64_t key_len = get_le(f + 8, 4), blen = get_le(f + 12, 4);
    if (FRAME_HEAD + key_len + blen + FRAME_TAIL != len || blen == 0)
        return false;
    if (get_le(f + len - FRAME_TAIL, 8) != frame_sum(f, len - FRAME_TAIL))
        return false;
    if (strlen(name) != key_len || memcmp(f + FRAME_HEAD, name, key_len) != 0)
        return false;
    *status = (long)get_le(f + 4, 2);
    *body = frame + FRAME_HEAD + key_len;
    *body_len = (size_t)blen;
    return *status == 200 || *status == 404;
}
