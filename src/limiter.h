/* The limiter's state, shared by limiter.c (windows, locking, the API) and
 * limiter_file.c (the state file's format, reading and writing it). Private
 * to these two files. */
#ifndef VT_LIMITER_H
#define VT_LIMITER_H

#include "vt.h"

#define STATE_MAGIC "vt-quota"
#define MAX_STATE_BYTES (64u << 20)
#define QUOTA_ERR "QuotaStateError"

typedef struct win_state {
    vt_window_kind kind;
    int64_t n;
    double per;     /* sliding: seconds; calendar: 0 (not part of the identity) */
    int64_t period; /* calendar: start of the period `used` counts in */
    int64_t used;   /* requests counted; sliding: the number of stamps */
    double seen;    /* last time a limiter checking this window used the state */
    size_t cap;     /* sliding: stamps allocated */
    double *stamps; /* sliding: times of the last `used` requests, oldest first */
} win_state;

typedef struct lim_state {
    double blocked_from, blocked_until; /* a hold, when until > from; else both 0 */
    size_t count, cap;
    win_state *w;
} lim_state;

/* Frees what the state holds and empties it. */
void vt_limiter_state_clear(lim_state *s);

/* limiter_file.c */
/* Replaces st by the content of the state file at path (empty when the file is absent,
 * or ours but damaged). Returns 0, or -1 with e filled: QuotaStateError when it cannot be
 * read, or when the path holds another program's file or no regular file. */
int vt_limiter_state_load(const char *path, lim_state *st, vt_err *e);
/* Writes st to tmp_path and renames it over path. Returns 0, or -1 with e filled. */
int vt_limiter_state_save(const char *path, const char *tmp_path, const lim_state *st, vt_err *e);

#endif
