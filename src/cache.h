/* The response cache's parts: cache.c (options, keys, entries, what is stored,
 * the counters), cache_frame.c (an entry's bytes) and its backends,
 * cache_sqlite.c and cache_redis.c.
 *
 * An entry is one answer of the service, stored under its key (the scope, a
 * digest of base_url, then the object's path) and found by its aliases too (a
 * file's three hashes, a URL's ids). Its bytes are a frame (cache_frame.c) that a
 * reader checks before trusting them. Beside the entries, a backend keeps the
 * in-flight markers: who is asking the service for a key right now. */
#ifndef VT_CACHE_H
#define VT_CACHE_H

#include "vt.h"

/* TTL classes: the kinds of vt_kind, then the negative answers. */
enum { VT_TTL_NOT_FOUND = VT_KIND_ANALYSIS + 1, VT_TTL_COUNT };

typedef struct vt_cache_backend {
    const char *name; /* "sqlite" or "redis" */
    /* Answers j through vt_cache_answer: the entry of j->cache.key when want_entry
     * and it is younger than max_age (seconds; max_age_negative for a negative
     * one), else the key's in-flight marker for token (taken when free or held
     * by nobody alive); token NULL: no marker (VT_FETCH_FREE). */
    void (*fetch)(void *be, vt_cache *c, vt_job *j, bool want_entry, double max_age, double max_age_negative,
                  const char *token);
    /* Stores the frame under key and its aliases for ttl seconds, and gives up
     * the marker of token (when not NULL) with it. Failures count in c's errors.
     * Returns false when the marker may still be held (the entry was skipped, or
     * the store failed): the cache then releases it. */
    bool (*store)(void *be, vt_cache *c, const char *key, const char *const *aliases, size_t n_aliases,
                  const char *frame, size_t len, bool negative, double ttl, const char *token);
    void (*refresh)(void *be, vt_cache *c, const char *key, const char *token);
    void (*release)(void *be, vt_cache *c, const char *key, const char *token);
    void (*drop)(void *be, vt_cache *c, const char *key); /* the entry found by key (or alias) */
    void (*free)(void *be);
} vt_cache_backend;

/* cache_frame.c: a new frame (malloc'd) of body under key; NULL when out of memory. */
char *vt_cache_frame_new(const char *key, long status, bool negative, const char *body, size_t body_len,
                         size_t *len);
/* Checks a frame read under name; gives its status and body (pointing into frame). */
bool vt_cache_frame_open(const char *frame, size_t len, const char *name, long *status, const char **body,
                         size_t *body_len);

/* A backend's answer to fetch. frame/len/name: a fresh entry (VT_FETCH_HIT) and the
 * key it is stored under; the cache checks it (the job keeps a copy of the body).
 * True when the entry is corrupt: the backend drops it, once done with the frame
 * (a drop may end the read that holds it). */
bool vt_cache_answer(vt_cache *c, vt_job *j, vt_fetch fetched, const char *frame, size_t len, const char *name);

/* cache_sqlite.c: the backend on the file at path (created 0600 in a 0700
 * directory when missing); opened on first use. NULL when out of memory. */
void *vt_cache_sqlite_new(const char *path, int64_t max_bytes);
extern const vt_cache_backend vt_cache_sqlite;

/* cache_redis.c: the backend on a Redis connection (redis.h) it takes over. */
typedef struct vt_redis vt_redis;
void *vt_cache_redis_new(vt_redis *r, vt_cache *c);
extern const vt_cache_backend vt_cache_redis;

#endif
