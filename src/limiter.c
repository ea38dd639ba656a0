/* The request limiter: sliding and calendar windows, kept in this process or
 * in a state file shared by every process that uses the same API key.
 *
 * Windows. A sliding window (n, per) keeps the times of the last n requests
 * and has room when fewer than n of them are younger than per seconds (plus a
 * small guard, below). A calendar window keeps a counter and the start of the
 * UTC day or month it counts in (saturating at n). A window is identified by
 * (kind, n) and, for sliding ones, per.
 *
 * Clients with different windows may share a state. Every request is recorded
 * in every window of the state, not only in those its client checks: the
 * service counts all requests made with the key, whichever client made them.
 * A limiter registers its windows when it is created; a window that a state
 * does not hold yet starts from what the other windows remember. A window that
 * is empty and that no limiter has used for a day is dropped.
 * `blocked_until` (set by mark_spent) holds every process back.
 *
 * Clocks. Times are the caller's wall clock, never a server's. The caller
 * reads it before the lock is taken, so a state may hold times slightly ahead
 * of `now` (another process read the clock later but locked first): a request
 * is recorded no earlier than those. A time more than CLOCK_SKEW ahead means
 * the clock stepped back; it is pulled back to now + CLOCK_SKEW, so nothing
 * blocks for more than a window and a second (a hold: no longer than asked).
 *
 * Locking and crash safety. Every read-decide-write runs under flock() on
 * "<state>.lock", a file that is never removed and that each limiter keeps
 * open; the kernel drops the lock when its holder dies. The new state is
 * written to "<state>.tmp" and renamed over the state file, so the state file
 * is always one complete version. Only the lock holder writes the tmp file, so
 * a single name suffices: a writer killed mid-write leaves at most that one
 * file, which the next writer truncates and reuses. The file's format is in
 * limiter_file.c.
 */
#include "limiter.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLIDING_N 1000000 /* a sliding window stores one time per request */
#define KEEP_UNUSED 86400.0   /* how long an empty window outlives its last user */
#define CLOCK_SKEW 1.0        /* how far ahead of `now` a stored time may be (see Clocks) */
#define LOCK_TIMEOUT 10.0     /* a holder stopped (not killed) must not hang us forever */

struct vt_limiter {
    size_t count;
    vt_window *win;                  /* the windows this limiter checks */
    char *path, *lock_path, *tmp_path; /* all NULL when in memory */
    int lock_fd;
    lim_state st; /* in memory: the state; shared: the copy loaded under the lock */
};

/* ------------------------------------------------------------ windows */

/* Slots open this much later than `per` says: the limiter sees when a slot is
 * taken, the server when the request arrives, and that delay varies (a new
 * connection takes longer than a reused one). */
static double sliding_guard(double per)
{
    return fmin(per / 20, 1.0);
}

/* Start of the UTC day or month holding `now`, or of the one after (next = 1). */
static int64_t period_start(vt_window_kind kind, double now, int next)
{
    int64_t t = (int64_t)floor(now);
    if (kind == VT_WIN_DAY) {
        int64_t day = t / 86400 - (t % 86400 < 0);
        return (day + next) * 86400;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += next; /* timegm carries December + 1 into January */
    tm.tm_isdst = 0;
    return (int64_t)timegm(&tm);
}

static bool same_window(const win_state *ws, const vt_window *w)
{
    return ws->kind == w->kind && ws->n == w->n && (w->kind != VT_WIN_SLIDING || ws->per == w->per);
}

static win_state *find_window(lim_state *s, const vt_window *w)
{
    for (size_t i = 0; i < s->count; i++)
        if (same_window(&s->w[i], w))
            return &s->w[i];
    return NULL;
}

/* Seconds until window w (state ws, NULL when empty) has room at `now`. */
static double window_wait(const vt_window *w, const win_state *ws, double now)
{
    if (!ws || ws->used < ws->n)
        return 0;
    if (w->kind == VT_WIN_SLIDING)
        return ws->stamps[ws->used - ws->n] + w->per + sliding_guard(w->per) - now;
    return (double)period_start(w->kind, now, 1) - now;
}

static void prune_sliding(win_state *w, double now)
{
    double latest = now + CLOCK_SKEW;
    for (int64_t j = w->used; j > 0 && w->stamps[j - 1] > latest; j--)
        w->stamps[j - 1] = latest;
    double horizon = now - w->per - sliding_guard(w->per);
    int64_t expired = 0;
    while (expired < w->used && w->stamps[expired] <= horizon)
        expired++;
    if (expired == 0)
        return;
    memmove(w->stamps, w->stamps + expired, (size_t)(w->used - expired) * sizeof *w->stamps);
    w->used -= expired;
}

static void roll_calendar(win_state *w, double now)
{
    int64_t start = period_start(w->kind, now, 0);
    if (w->period < start)
        w->used = 0;
    w->period = start; /* also pulls a period from a clock that stepped back to today */
}

/* ------------------------------------------------------------- state */

void vt_limiter_state_clear(lim_state *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->w[i].stamps);
    free(s->w);
    memset(s, 0, sizeof *s);
}

static bool state_blocked(const lim_state *s)
{
    return s->blocked_until > s->blocked_from;
}

/* Brings the state to `now`: expires what is over, clamps what lies ahead of
 * the clock, and drops empty windows that nobody has used for a while. */
static void state_normalize(lim_state *s, double now)
{
    if (state_blocked(s) && s->blocked_from > now) {
        s->blocked_until = fmin(s->blocked_until, now + (s->blocked_until - s->blocked_from));
        s->blocked_from = now;
    }
    if (!state_blocked(s) || s->blocked_until <= now)
        s->blocked_from = s->blocked_until = 0;

    size_t kept = 0;
    for (size_t i = 0; i < s->count; i++) {
        win_state *w = &s->w[i];
        if (w->kind == VT_WIN_SLIDING)
            prune_sliding(w, now);
        else
            roll_calendar(w, now);
        w->seen = fmin(w->seen, now);
        if (w->used > 0 || w->seen + KEEP_UNUSED > now)
            s->w[kept++] = *w;
        else
            free(w->stamps);
    }
    s->count = kept;
}

static win_state *state_add(lim_state *s, const vt_window *w, double now)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4;
        win_state *grown = realloc(s->w, cap * sizeof *grown);
        if (!grown)
            return NULL;
        s->w = grown;
        s->cap = cap;
    }
    win_state *ws = &s->w[s->count++];
    memset(ws, 0, sizeof *ws);
    ws->kind = w->kind;
    ws->n = w->n;
    if (w->kind == VT_WIN_SLIDING)
        ws->per = w->per;
    else
        ws->period = period_start(w->kind, now, 0);
    return ws;
}

/* A window new to the state starts from what the other windows remember:
 * each saw every request made since it was created, so the fullest of them
 * is a lower bound of the requests that fall in this one. Best effort: short
 * of memory, it starts empty. */
static void seed_window(lim_state *s, win_state *ws, double now)
{
    double since = ws->kind == VT_WIN_SLIDING ? now - ws->per - sliding_guard(ws->per)
                                              : (double)ws->period;
    const win_state *from = NULL; /* the sliding window to copy times from */
    int64_t used = 0;
    for (size_t i = 0; i < s->count; i++) {
        const win_state *o = &s->w[i];
        if (o->kind == VT_WIN_SLIDING) {
            int64_t first = 0;
            while (first < o->used && o->stamps[first] < since)
                first++;
            if (o->used - first > used) {
                used = o->used - first;
                from = o;
            }
        } else if (ws->kind != VT_WIN_SLIDING &&
                   (o->kind == ws->kind || (o->kind == VT_WIN_DAY && ws->kind == VT_WIN_MONTH)) &&
                   o->used > used) {
            used = o->used;
            from = NULL;
        }
    }
    if (used > ws->n)
        used = ws->n;
    if (ws->kind != VT_WIN_SLIDING) {
        ws->used = used;
        return;
    }
    double *stamps = from ? malloc((size_t)used * sizeof *stamps) : NULL;
    if (!stamps)
        return;
    memcpy(stamps, from->stamps + (from->used - used), (size_t)used * sizeof *stamps);
    ws->stamps = stamps;
    ws->cap = (size_t)used;
    ws->used = used;
}

/* Makes sure the state holds every window of the limiter and marks them used. */
static int touch_own_windows(lim_state *s, const vt_window *own, size_t own_count, double now)
{
    for (size_t i = 0; i < own_count; i++) {
        win_state *ws = find_window(s, &own[i]);
        if (!ws) {
            ws = state_add(s, &own[i], now);
            if (!ws)
                return -1;
            seed_window(s, ws, now);
        }
        ws->seen = now;
    }
    return 0;
}

/* Records one request at `now` in every window of the state. All memory is
 * reserved first, so on failure the state holds the same requests as before. */
static int state_record(lim_state *s, double now)
{
    for (size_t i = 0; i < s->count; i++) {
        win_state *w = &s->w[i];
        size_t need = (size_t)(w->used < w->n ? w->used + 1 : w->n);
        if (w->kind != VT_WIN_SLIDING || need <= w->cap)
            continue;
        size_t cap = w->cap ? 2 * w->cap : 4;
        if (cap < need)
            cap = need;
        if (cap > (size_t)w->n)
            cap = (size_t)w->n;
        double *grown = realloc(w->stamps, cap * sizeof *grown);
        if (!grown)
            return -1;
        w->stamps = grown;
        w->cap = cap;
    }
    for (size_t i = 0; i < s->count; i++) {
        win_state *w = &s->w[i];
        if (w->kind != VT_WIN_SLIDING) {
            w->used += w->used < w->n;
            continue;
        }
        /* Never before the newest time: that one may come from a process
         * that read the clock after us but took the lock first. */
        double t = w->used ? fmax(now, w->stamps[w->used - 1]) : now;
        if (w->used == w->n) { /* a window this limiter does not check may be full */
            memmove(w->stamps, w->stamps + 1, (size_t)(w->used - 1) * sizeof *w->stamps);
            w->used--;
        }
        w->stamps[w->used++] = t;
    }
    return 0;
}

int vt_make_parents(char *path)
{
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        struct stat sb;
        int failure = 0;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            failure = errno; /* fine after all when the directory is there (EACCES above it) */
            if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
                failure = 0;
        }
        *slash = '/';
        if (failure) {
            errno = failure;
            return -1;
        }
    }
    return 0;
}

static int open_lock_file(vt_limiter *l)
{
    if (vt_make_parents(l->lock_path) < 0)
        return -1;
    l->lock_fd = open(l->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    return l->lock_fd < 0 ? -1 : 0;
}

/* Whether our open lock file is still the one at lock_path: locking a file
 * that someone removed or replaced would exclude nobody. */
static bool lock_file_current(vt_limiter *l)
{
    struct stat held, named;
    return fstat(l->lock_fd, &held) == 0 && stat(l->lock_path, &named) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

static int lock_state(vt_limiter *l, vt_err *e)
{
    double deadline = vt_monotonic() + LOCK_TIMEOUT;
    long pause_ns = 50000;
    if (l->lock_fd < 0 && open_lock_file(l) < 0) { /* made on first use: see vt_limiter_new */
        vt_err_set(e, QUOTA_ERR, "quota state %s: cannot create %s: %s", l->path, l->lock_path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (flock(l->lock_fd, LOCK_EX | LOCK_NB) == 0) {
            if (lock_file_current(l))
                return 0;
            close(l->lock_fd);
            if (open_lock_file(l) < 0) {
                vt_err_set(e, QUOTA_ERR, "quota state %s: cannot open %s: %s", l->path,
                           l->lock_path, strerror(errno));
                return -1;
            }
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK) {
            vt_err_set(e, QUOTA_ERR, "quota state %s: cannot lock %s: %s", l->path, l->lock_path,
                       strerror(errno));
            return -1;
        }
        if (vt_monotonic() >= deadline) {
            vt_err_set(e, QUOTA_ERR, "quota state %s: %s stayed locked for %.0f s", l->path,
                       l->lock_path, LOCK_TIMEOUT);
            return -1;
        }
        struct timespec pause = {0, pause_ns};
        nanosleep(&pause, NULL);
        if (pause_ns < 5000000)
            pause_ns *= 2;
    }
}

/* Writes the state back when it changed and releases the lock. */
static int end_update(vt_limiter *l, bool changed, vt_err *e)
{
    if (!l->path)
        return 0;
    int rc = changed ? vt_limiter_state_save(l->path, l->tmp_path, &l->st, e) : 0;
    flock(l->lock_fd, LOCK_UN);
    vt_limiter_state_clear(&l->st);
    return rc;
}

/* Makes l->st the current state at `now`, holding this limiter's windows: in
 * memory it already is; shared, it is loaded under the lock, which end_update
 * releases. */
static int begin_update(vt_limiter *l, double now, vt_err *e)
{
    if (l->path) {
        if (lock_state(l, e) < 0)
            return -1;
        if (vt_limiter_state_load(l->path, &l->st, e) < 0) {
            flock(l->lock_fd, LOCK_UN);
            return -1;
        }
    }
    state_normalize(&l->st, now);
    if (touch_own_windows(&l->st, l->win, l->count, now) < 0) {
        end_update(l, false, e);
        vt_err_oom(e, "updating the quota state");
        return -1;
    }
    return 0;
}


static char *concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

/* Sets up the files of a shared limiter; the errors name the user's path. */
static int open_shared(vt_limiter *l, const char *state_path, vt_err *e)
{
    size_t len = strlen(state_path);
    if (len == 0 || state_path[len - 1] == '/') {
        vt_err_set(e, "InvalidArgument", "quota_state '%s': need a file name", state_path);
        return -1;
    }
    char cwd[PATH_MAX] = "";
    if (state_path[0] != '/' && !getcwd(cwd, sizeof cwd)) {
        vt_err_set(e, "InvalidArgument", "quota_state %s: cannot resolve: %s", state_path,
                   strerror(errno));
        return -1;
    }
    /* Absolute, so a later chdir does not move the state. */
    l->path = concat(cwd, cwd[0] ? "/" : "", state_path);
    l->lock_path = l->path ? concat(l->path, ".lock", "") : NULL;
    l->tmp_path = l->path ? concat(l->path, ".tmp", "") : NULL;
    if (!l->tmp_path || !l->lock_path) {
        vt_err_oom(e, "opening the quota state");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- API */

vt_limiter *vt_limiter_new(const vt_window *w, size_t count, const char *state_path, vt_err *e)
{
    for (size_t i = 0; i < count; i++) {
        bool sliding = w[i].kind == VT_WIN_SLIDING;
        if (w[i].kind > VT_WIN_MONTH || w[i].n < 1 ||
            (sliding && (!(w[i].per > 0) || !isfinite(w[i].per) || w[i].n > MAX_SLIDING_N))) {
            vt_err_set(e, "InvalidArgument",
                       "rate window %zu: need 1 <= n%s and per > 0 (got n = %lld, per = %g)",
                       i + 1, sliding ? " <= 1000000" : "", (long long)w[i].n, w[i].per);
            return NULL;
        }
    }
    vt_limiter *l = calloc(1, sizeof *l);
    if (!l || (count && !(l->win = malloc(count * sizeof *w)))) {
        free(l);
        vt_err_oom(e, "creating the limiter");
        return NULL;
    }
    if (count)
        memcpy(l->win, w, count * sizeof *w);
    l->count = count;
    l->lock_fd = -1;
    if (state_path && open_shared(l, state_path, e) < 0) {
        vt_limiter_free(l);
        return NULL;
    }
    /* Registering the windows now lets other clients count their requests in them from
     * the start. What is wrong with the files (another program's file in the way, a
     * directory that cannot be written) is no reason to refuse a client: each call says
     * it (QuotaStateError) until someone puts it right, and then goes on. */
    vt_err ignored;
    if (state_path && count && begin_update(l, vt_now(), &ignored) == 0)
        end_update(l, true, &ignored);
    return l;
}

void vt_limiter_free(vt_limiter *l)
{
    if (!l)
        return;
    vt_limiter_state_clear(&l->st);
    if (l->lock_fd >= 0)
        close(l->lock_fd);
    free(l->path);
    free(l->lock_path);
    free(l->tmp_path);
    free(l->win);
    free(l);
}

int vt_limiter_acquire(vt_limiter *l, double now, double *wait, vt_err *e)
{
    if (begin_update(l, now, e) < 0)
        return -1;
    double need = state_blocked(&l->st) ? l->st.blocked_until - now : 0;
    for (size_t i = 0; i < l->count; i++)
        need = fmax(need, window_wait(&l->win[i], find_window(&l->st, &l->win[i]), now));
    if (need > 0) {
        *wait = fmax(need, 0.001);
        return end_update(l, false, e);
    }
    *wait = 0;
    if (state_record(&l->st, now) < 0) {
        end_update(l, false, e);
        vt_err_oom(e, "recording a request in the quota state");
        return -1;
    }
    return end_update(l, true, e);
}

/* Returns 0, or -1 with e filled. */
int vt_limiter_mark_spent(vt_limiter *l, double now, double hold, vt_err *e)
{
    if (!(hold > 0))
        return 0;
    hold = fmin(hold, VT_RETRY_AFTER_MAX); /* a longer one holds every process sharing the key */
    if (begin_update(l, now, e) < 0)
        return -1;
    bool extend = !state_blocked(&l->st) || now + hold > l->st.blocked_until;
    if (extend) {
        l->st.blocked_from = now;
        l->st.blocked_until = now + hold;
    }
    return end_update(l, extend, e);
}

static void push_seconds(lua_State *L, double s)
{
    if (s == floor(s) && fabs(s) < 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)s);
    else
        lua_pushnumber(L, s);
}

void vt_limiter_push_table(lua_State *L, const vt_window *w, size_t count, const vt_window_status *st,
                           double blocked_until, const char *where_field, const char *where)
{
    static const char *const kind_names[] = {"sliding", "day", "month"};
    lua_createtable(L, 0, 3);
    lua_createtable(L, (int)count, 0);
    for (size_t i = 0; i < count; i++) {
        lua_createtable(L, 0, 5);
        lua_pushstring(L, kind_names[w[i].kind]);
        lua_setfield(L, -2, "kind");
        lua_pushinteger(L, (lua_Integer)w[i].n);
        lua_setfield(L, -2, "n");
        push_seconds(L, w[i].per);
        lua_setfield(L, -2, "per");
        lua_pushinteger(L, (lua_Integer)st[i].used);
        lua_setfield(L, -2, "used");
        lua_pushnumber(L, st[i].next_slot_in);
        lua_setfield(L, -2, "next_slot_in");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "windows");
    if (blocked_until > 0) {
        lua_pushnumber(L, blocked_until);
        lua_setfield(L, -2, "blocked_until");
    }
    if (where) {
        lua_pushstring(L, where);
        lua_setfield(L, -2, where_field);
    }
}

/* Pushes the status table and returns 0, or pushes nothing and returns -1
 * with e filled. */
int vt_limiter_push_status(lua_State *L, vt_limiter *l, double now, vt_err *e)
{
    /* Lua-owned scratch, made before locking: a memory error raised here
     * leaves no lock held and nothing to free. */
    vt_window_status *sum = lua_newuserdatauv(L, (l->count ? l->count : 1) * sizeof *sum, 0);
    int scratch = lua_gettop(L);
    if (begin_update(l, now, e) < 0) {
        lua_pop(L, 1);
        return -1;
    }
    for (size_t i = 0; i < l->count; i++) {
        const win_state *ws = find_window(&l->st, &l->win[i]);
        sum[i].used = ws ? ws->used : 0;
        sum[i].next_slot_in = window_wait(&l->win[i], ws, now);
    }
    double blocked_until = state_blocked(&l->st) ? l->st.blocked_until : 0;
    end_update(l, false, e);
    vt_limiter_push_table(L, l->win, l->count, sum, blocked_until, "path", l->path);
    lua_remove(L, scratch);
    return 0;
}
