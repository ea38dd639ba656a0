/* The engine: one curl multi handle driven through epoll, and the life of a job
 * (consult the cache, wait for quota, run, retry transient failures with backoff
 * and jitter, all within the job's deadline). One attempt's transfer is
 * transfer.c's. No Lua here: curl's callbacks and the answers of Redis only touch
 * C data, so no Lua error can ever longjmp through libcurl or hiredis.
 *
 * Shared requests. A look-up (a job with a cache key) that finds another job of
 * the engine asking for the same key follows it: it gets a copy of that job's
 * response when it ends. With a cache backend, a look-up asks the cache first;
 * without an entry it takes the key's in-flight marker, or, when another
 * process holds it, looks again now and then (for at most `timeout`) until that
 * process's answer is stored or its marker is gone. */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define RECYCLED_BODY_CAP (1024 * 1024) /* a recycled job keeps a body buffer up to this size */
#define BACKOFF_CAP 30.0
#define QUOTA_HOLD_DEFAULT 60.0 /* minute quotas are the ones a 429 usually means */
#define FIRST_POLL 0.02          /* seconds: first look at another process's answer */
#define MAX_POLL 0.25            /* ... growing by half each time up to this */

/* ---------------------------------------------------------------- helpers */

static double jitter(vt_engine *eng)
{
    /* xorshift: enough to spread retries of processes started together */
    unsigned x = eng->jitter_state;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    eng->jitter_state = x;
    return 0.5 + (x % 1000) / 2000.0; /* [0.5, 1.0) */
}


/* Every way a job ends: its followers end with it. */
static void job_done(vt_job *j)
{
    j->state = VT_JOB_DONE;
    vt_job *f = j->cache.followers;
    j->cache.followers = NULL;
    while (f) {
        vt_job *next = f->cache.next_follower;
        f->cache.leader = f->cache.next_follower = NULL;
        vt_transfer_share(j, f);
        f->cache.hit = j->cache.hit;
        f->cache.shared = true;
        f->state = VT_JOB_DONE;
        vt_cache_counters(j->policy->cache)->coalesced++;
        f = next;
    }
}

static void job_fail(vt_job *j, const vt_err *e)
{
    j->err = *e;
    job_done(j);
}


/* ------------------------------------------------------- curl callbacks */

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    vt_engine *eng = userp;
    struct epoll_event ev = {0};
    ev.data.u64 = vt_epoll_tag(TAG_CURL, s);
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(eng->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (epoll_ctl(eng->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
        epoll_ctl(eng->epfd, EPOLL_CTL_ADD, s, &ev);
    return 0;
}

/* ------------------------------------------------------------- engine */

vt_engine *vt_engine_new(vt_err *e)
{
    vt_engine *eng = calloc(1, sizeof *eng);
    if (!eng) {
        vt_err_oom(e, "creating the transfer engine");
        return NULL;
    }
    eng->epfd = epoll_create1(EPOLL_CLOEXEC);
    eng->multi = curl_multi_init();
    if (eng->epfd < 0 || !eng->multi) {
        vt_err_set(e, "ConnectionError", "cannot create the transfer engine");
        vt_engine_free(eng);
        return NULL;
    }
    eng->jitter_state = ((unsigned)getpid() ^ (unsigned)(vt_monotonic() * 1e6)) | 1u;
    curl_multi_setopt(eng->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(eng->multi, CURLMOPT_SOCKETDATA, eng);
    curl_multi_setopt(eng->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return eng;
}

/* A source's fd stops being watched: its session may close it once the job ends. */
static void forget_source_fd(vt_job *j)
{
    if (j->src_fd >= 0) {
        epoll_ctl(j->engine->epfd, EPOLL_CTL_DEL, j->src_fd, NULL);
        j->src_fd = -1;
    }
}

static void begin(vt_job *j, double mono);
static void advance(vt_job *j, double mono);

static void stop_following(vt_job *j)
{
    vt_job **p = &j->cache.leader->cache.followers;
    while (*p != j)
        p = &(*p)->cache.next_follower;
    *p = j->cache.next_follower;
    j->cache.leader = j->cache.next_follower = NULL;
}

static void give_up_marker(vt_job *j)
{
    if (j->cache.leased) {
        vt_cache_release(j->policy->cache, j);
        j->cache.leased = false;
    }
}

static void unlink_job(vt_job *j)
{
    vt_engine *eng = j->engine;
    if (!eng)
        return;
    if (j->ticket) {
        j->ticket->job = NULL;
        j->ticket = NULL;
    }
    j->answered = VT_ANSWER_NONE;
    if (j->cache.leader)
        stop_following(j);
    /* A finished look-up whose answer the cache may keep holds its marker until
     * its caller stores the answer (vt_cache_settle), right after this: others
     * keep waiting for that answer rather than ask. Any other gives it up now. */
    bool storable = j->state == VT_JOB_DONE && !j->err.code[0] && (j->status == 200 || j->status == 404);
    if (!storable)
        give_up_marker(j);
    if (j->transfer)
        vt_transfer_drop(j);
    forget_source_fd(j);
    if (j->prev) j->prev->next = j->next;
    else eng->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->next = j->prev = NULL;
    j->engine = NULL;
    /* Left before its request ended (its caller went away): its followers start
     * again, the first to begin leading the others. */
    vt_job *f = j->cache.followers;
    j->cache.followers = NULL;
    double mono = vt_monotonic();
    while (f) {
        vt_job *next = f->cache.next_follower;
        f->cache.leader = f->cache.next_follower = NULL;
        begin(f, mono);
        advance(f, mono);
        f = next;
    }
}

void vt_engine_free(vt_engine *eng)
{
    if (!eng)
        return;
    for (vt_job *j = eng->jobs; j; j = j->next) {
        j->cache.followers = j->cache.leader = j->cache.next_follower = NULL; /* all end here */
        give_up_marker(j);
    }
    for (vt_watcher *w = eng->watchers; w; w = w->next)
        w->engine = NULL;
    while (eng->jobs) {
        vt_job *j = eng->jobs;
        unlink_job(j);
        if (j->state != VT_JOB_DONE) {
            vt_err e;
            vt_err_set(&e, "ConnectionError", "the client was closed");
            job_fail(j, &e);
        }
    }
    vt_transfer_free_idle(eng);
    if (eng->multi)
        curl_multi_cleanup(eng->multi);
    if (eng->epfd >= 0)
        close(eng->epfd);
    free(eng);
}

int vt_engine_fd(vt_engine *eng) { return eng->epfd; }

/* [ux] progress: what the running answer announced, asked of curl outside its callbacks. */
int64_t vt_job_expected_bytes(const vt_job *j)
{
    long status = 0;
    curl_off_t length = -1;
    if (!j->transfer)
        return -1;
    curl_easy_getinfo(j->transfer->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return -1; /* a redirect's or an error's body is not the content */
    curl_easy_getinfo(j->transfer->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    return length;
}

uint64_t vt_engine_requests(const vt_engine *eng) { return eng->requests; }

int vt_engine_pending(const vt_engine *eng)
{
    int pending = 0;
    for (const vt_job *j = eng->jobs; j; j = j->next)
        pending += j->state != VT_JOB_DONE;
    return pending;
}

/* ---------------------------------------------------------------- jobs */

void vt_job_init(vt_job *j)
{
    memset(j, 0, sizeof *j);
    j->sink_fd = j->src_fd = -1;
    j->retry_after_hdr = -1;
    j->err.retry_after = -1;
}

void vt_job_reset(vt_job *j)
{
    vt_job_release(j);
    free(j->cache.key);
    free(j->url);
    curl_slist_free_all(j->headers);
    free(j->body);
    free(j->mp_head);
    free(j->mp_tail);
    free(j->resp);
    free(j->content_type);
    free(j->location);
    if (j->digest)
        vt_digest_free(j->digest);
    vt_job_init(j);
}

void vt_job_recycle(vt_job *j)
{
    char *resp = j->resp;
    size_t cap = j->resp_cap;
    j->resp = NULL;
    vt_job_reset(j);
    if (cap <= RECYCLED_BODY_CAP) {
        j->resp = resp;
        j->resp_cap = cap;
    } else
        free(resp);
}

void vt_job_release(vt_job *j)
{
    unlink_job(j);
}

void vt_job_abandon(vt_job *j)
{
    unlink_job(j);
    give_up_marker(j);
}

static void start_transfer(vt_job *j)
{
    j->transfer = vt_transfer_prepare(j);
    if (!j->transfer) {
        vt_err e;
        vt_err_oom(&e, "creating a transfer");
        job_fail(j, &e);
        return;
    }
    j->attempts++;
    if (j->counts_quota)
        j->engine->requests++;
    j->state = VT_JOB_RUNNING;
    if (curl_multi_add_handle(j->engine->multi, j->transfer->curl) != CURLM_OK) {
        vt_transfer_drop(j);
        vt_err e;
        vt_err_set(&e, "ConnectionError", "cannot start a transfer");
        job_fail(j, &e);
    }
}

/* curl's own next timeout, asked each time rather than mirrored from its timer
 * callback: curl does not announce again an expiry it announced before, so a
 * mirror reset after firing can miss one (seen as one-second stalls). */
static double curl_timeout(vt_engine *eng)
{
    long ms = -1;
    curl_multi_timeout(eng->multi, &ms);
    return ms < 0 ? -1 : ms / 1000.0;
}

/* The quota has no slot for wait seconds: the job sleeps, or fails when that
 * passes its deadline. */
static void quota_wait(vt_job *j, double mono, double wait)
{
    if (mono + wait > j->deadline) {
        vt_err e;
        vt_err_set(&e, "RateLimited", "local quota is spent; the next slot opens in %.1fs, beyond max_wait", wait);
        e.retry_after = wait;
        job_fail(j, &e);
    } else
        j->wake_at = mono + wait;
}

/* A job whose wake time has come asks the limiter for a slot (the Redis one
 * answers later, through vt_job_quota_answer). */
static void try_quota(vt_job *j, double mono)
{
    if (!j->url) { /* a timer: its time has come */
        job_done(j);
        return;
    }
    vt_limiter *lim = j->policy->limiter;
    if (j->counts_quota && j->policy->redis_limiter) {
        vt_redis_limiter_acquire(j->policy->redis_limiter, j);
        return;
    }
    double wait = 0;
    if (lim && j->counts_quota) {
        vt_err e;
        if (vt_limiter_acquire(lim, vt_now(), &wait, &e) != 0) {
            job_fail(j, &e);
            return;
        }
        if (wait > 0) {
            quota_wait(j, mono, wait);
            return;
        }
    }
    start_transfer(j);
}

/* Another job of the engine asking for the same key, whose request j can share. */
static vt_job *find_leader(vt_job *j)
{
    for (vt_job *o = j->engine->jobs; o; o = o->next)
        if (o != j && o->cache.key && !o->cache.leader && !o->cache.probe && o->state != VT_JOB_IDLE &&
            o->state != VT_JOB_DONE && strcmp(o->cache.key, j->cache.key) == 0)
            return o;
    return NULL;
}

/* Where a job's life starts (and starts again when the job it followed went away). */
static void begin(vt_job *j, double mono)
{
    vt_cache *cache = j->policy->cache;
    j->state = VT_JOB_QUOTA;
    j->wake_at = mono + (j->url ? 0 : j->timer);
    if (j->external) {
        j->state = VT_JOB_RUNNING;
        j->external(j);
        return;
    }
    if (!(j->url || j->cache.probe) || !j->cache.key || !cache)
        return;
    vt_job *leader = j->cache.read ? find_leader(j) : NULL;
    if (leader) {
        j->state = VT_JOB_FOLLOW;
        j->cache.leader = leader;
        j->cache.next_follower = leader->cache.followers;
        leader->cache.followers = j;
    } else if (vt_cache_active(cache)) {
        j->state = VT_JOB_CACHE;
        j->cache.poll = FIRST_POLL;
    } else if (j->cache.probe)
        job_done(j); /* nothing can answer it */
}

/* The cache answered a fetch. */
static void on_fetched(vt_job *j, double mono)
{
    vt_cache_stats *st = vt_cache_counters(j->policy->cache);
    switch (j->fetched) {
    case VT_FETCH_HIT:
        if (j->cache.wait_until > 0) { /* another process's answer, waited for */
            j->cache.shared = true;
            st->coalesced++;
        } else
            st->hits++;
        j->cache.hit = true;
        job_done(j);
        return;
    case VT_FETCH_CORRUPT: /* dropped: ask again, for the marker only */
        j->cache.skip_entry = true;
        j->wake_at = mono;
        return;
    case VT_FETCH_BUSY:
        if (j->cache.read) {
            if (j->cache.wait_until == 0)
                j->cache.wait_until = mono + j->transport->timeout;
            if (mono < j->cache.wait_until) {
                j->wake_at = fmin(mono + j->cache.poll, j->cache.wait_until);
                j->cache.poll = fmin(j->cache.poll * 1.5, MAX_POLL);
                return;
            }
        }
        st->misses++; /* waited long enough, or must not wait: asks itself */
        break;
    case VT_FETCH_LEASED:
        j->cache.leased = true;
        j->cache.refresh_at = mono + VT_LEASE_TTL / 3;
        st->misses++;
        break;
    case VT_FETCH_FREE:
        st->misses++;
        break;
    case VT_FETCH_ERROR:
        j->cache.failed = true;
        st->errors++;
        break;
    }
    if (j->cache.probe) { /* a miss: its caller asks the service */
        job_done(j);
        return;
    }
    j->state = VT_JOB_QUOTA;
    j->wake_at = mono;
}

static void on_quota(vt_job *j, double mono)
{
    if (j->quota_got > 0)
        start_transfer(j);
    else if (j->quota_got < 0)
        job_done(j); /* err was set with the answer */
    else
        quota_wait(j, mono, j->quota_wait);
}

/* Does what the job can do now: act on an answer, or, when its time has come
 * and it awaits nothing, ask the cache or the limiter. Loops while answers come
 * at once (SQLite, a Redis connection that is down). */
static void advance(vt_job *j, double mono)
{
    for (;;) {
        vt_answer_kind answered = j->answered;
        j->answered = VT_ANSWER_NONE;
        if (answered == VT_ANSWER_CACHE)
            on_fetched(j, mono);
        else if (answered == VT_ANSWER_QUOTA)
            on_quota(j, mono);
        else if (j->ticket || j->wake_at > mono)
            return;
        else if (j->state == VT_JOB_CACHE)
            vt_cache_fetch(j->policy->cache, j);
        else if (j->state == VT_JOB_QUOTA)
            try_quota(j, mono);
        else
            return;
    }
}

void vt_job_submit(vt_engine *eng, vt_job *j, const vt_transport *t, const vt_retry_policy *p)
{
    double mono = vt_monotonic();
    j->engine = eng;
    j->transport = t;
    j->policy = p;
    j->next = eng->jobs;
    j->prev = NULL;
    if (eng->jobs)
        eng->jobs->prev = j;
    eng->jobs = j;
    j->attempts = 0;
    j->deadline = mono + p->max_wait;
    size_t url_len = j->url ? strlen(j->url) : 0;
    if (url_len > VT_URL_MAX) {
        /* libcurl would refuse it as "No URL set" (a ConnectionError, and retried) */
        vt_err e;
        vt_err_set(&e, "InvalidArgument", "the request URL would be %zu bytes; at most %d are sent", url_len,
                   VT_URL_MAX);
        job_fail(j, &e);
        return;
    }
    begin(j, mono);
    if (j->url || j->cache.probe) /* a timer ends at a step, even one of 0 s: a coroutine yields once */
        advance(j, mono);
}

void vt_job_cache_answer(vt_job *j, vt_fetch fetched, long status, const char *body, size_t len)
{
    j->ticket = NULL;
    j->fetched = fetched;
    j->answered = VT_ANSWER_CACHE;
    if (fetched == VT_FETCH_HIT && vt_job_set_response(j, status, body, len) < 0)
        j->fetched = VT_FETCH_ERROR;
}

void vt_job_quota_answer(vt_job *j, int got, double wait, const vt_err *e)
{
    j->ticket = NULL;
    j->quota_got = got;
    j->quota_wait = wait;
    if (got < 0)
        j->err = *e;
    j->answered = VT_ANSWER_QUOTA;
}

void vt_job_finish(vt_job *j, const vt_err *e)
{
    j->ticket = NULL;
    if (e)
        j->err = *e;
    job_done(j);
}

void vt_job_refetch(vt_job *j)
{
    vt_job_release(j); /* its next answer replaces the response */
    j->cache.hit = j->cache.shared = j->cache.skip_entry = j->cache.failed = false;
    j->cache.read = false;
    j->cache.wait_until = 0;
    j->state = VT_JOB_IDLE;
}

/* Seconds to wait before the next attempt, or < 0 when the failure is final. */
static double retry_delay(vt_job *j, bool *quota_spent)
{
    long s = j->status;
    *quota_spent = false;
    if (j->err.code[0] && strcmp(j->err.code, "ConnectionError") != 0 && strcmp(j->err.code, "Timeout") != 0)
        return -1; /* TooLarge, a source error, ...: retrying cannot help */
    if (j->err.code[0] && j->once && j->request_sent)
        return -1; /* sent, and no answer: the service may have acted on it */
    if (!j->err.code[0]) {
        bool v2_quota = j->v2 && s == 204;
        bool quota = v2_quota || (s == 429 && j->resp && strstr(j->resp, "QuotaExceededError"));
        if (quota) {
            *quota_spent = true;
            return j->retry_after_hdr >= 0 ? j->retry_after_hdr : QUOTA_HOLD_DEFAULT;
        }
        if (s != 429 && s < 500)
            return -1;
    }
    if (j->retry_after_hdr >= 0 && !j->err.code[0])
        return j->retry_after_hdr;
    if (j->connection_dropped)
        return 0; /* the server is not in trouble: a new connection answers at once */
    double d = j->policy->retry_base * pow(2, j->attempts - 1);
    return (d > BACKOFF_CAP ? BACKOFF_CAP : d) * jitter(j->engine);
}

static void on_transfer_done(vt_job *j, CURLcode rc, double mono)
{
    forget_source_fd(j);
    vt_transfer_finish(j, rc);

    bool quota_spent;
    double delay = retry_delay(j, &quota_spent);
    if (quota_spent)
        j->retry_after_hdr = delay; /* the hold, told with the error whenever it ends the call */
    if (quota_spent && j->policy->redis_limiter)
        vt_redis_limiter_mark_spent(j->policy->redis_limiter, delay);
    else if (quota_spent && j->policy->limiter) {
        vt_err e;
        vt_limiter_mark_spent(j->policy->limiter, vt_now(), delay, &e);
    }
    if (delay < 0 || j->attempts > j->policy->retries) {
        job_done(j);
        return;
    }
    if (mono + delay > j->deadline) {
        /* Waiting would pass max_wait. A quota answer keeps the service's code;
         * a Retry-After the service asked for becomes RateLimited; a failure that
         * ran out of backoff time keeps its own code. Only the first two say when
         * to come back. */
        if (!quota_spent && j->retry_after_hdr >= 0 && !j->err.code[0]) {
            vt_err_set(&j->err, "RateLimited", "the service answered HTTP %ld and asks to wait %.0fs, beyond max_wait",
                       j->status, delay);
            j->err.http = j->status;
            j->err.retry_after = delay;
        }
        job_done(j);
        return;
    }
    if (j->sink == VT_SINK_FILE && j->sink_fd >= 0) {
        /* start the file again */
        if (ftruncate(j->sink_fd, 0) != 0 || lseek(j->sink_fd, 0, SEEK_SET) != 0) {
            job_done(j);
            return;
        }
        if (j->digest) {
            vt_digest_free(j->digest);
            if (!(j->digest = vt_digest_new())) {
                vt_err_oom(&j->err, "restarting the download's digest");
                job_done(j);
                return;
            }
        }
    }
    if (j->sink == VT_SINK_STREAM)
        j->stream.restart(j->stream.ud);
    vt_err rewind_err; /* the failure that called for the retry is the one to report */
    if (j->source && (!j->source->open || j->source->cls->rewind(j->source, &rewind_err) != 0)) {
        job_done(j);
        return;
    }
    memset(&j->err, 0, sizeof j->err);
    j->err.retry_after = -1;
    j->state = VT_JOB_QUOTA;
    j->wake_at = mono + delay;
}

static void read_finished(vt_engine *eng)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(eng->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        vt_job *j = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
        if (j)
            on_transfer_done(j, msg->data.result, vt_monotonic());
    }
}

static void resume_source(vt_engine *eng, int fd)
{
    for (vt_job *j = eng->jobs; j; j = j->next)
        if (j->src_fd == fd && j->transfer) {
            epoll_ctl(eng->epfd, EPOLL_CTL_DEL, fd, NULL);
            j->src_fd = -1;
            curl_easy_pause(j->transfer->curl, CURLPAUSE_CONT);
        }
}

static void sooner(double *soonest, double t)
{
    if (t >= 0 && (*soonest < 0 || t < *soonest))
        *soonest = t;
}

/* Seconds until curl, a waiting job or a watcher needs a step (-1: none). */
static double next_due(vt_engine *eng)
{
    double mono = vt_monotonic(), soonest = -1;
    double ct = curl_timeout(eng);
    if (ct >= 0)
        soonest = mono + ct;
    for (vt_job *j = eng->jobs; j; j = j->next) {
        if (j->answered != VT_ANSWER_NONE)
            sooner(&soonest, mono);
        else if (!j->ticket && (j->state == VT_JOB_QUOTA || j->state == VT_JOB_CACHE))
            sooner(&soonest, j->wake_at);
        if (j->cache.leased)
            sooner(&soonest, j->cache.refresh_at);
    }
    for (vt_watcher *w = eng->watchers; w; w = w->next)
        sooner(&soonest, w->due(w));
    if (soonest < 0)
        return -1;
    return soonest > mono ? soonest - mono : 0;
}

/* ------------------------------------------------------------ watchers */

void vt_engine_watch(vt_engine *eng, vt_watcher *w)
{
    w->engine = eng;
    w->fd = -1;
    w->events = 0;
    w->next = eng->watchers;
    eng->watchers = w;
}

void vt_engine_unwatch(vt_watcher *w)
{
    vt_engine *eng = w->engine;
    if (!eng)
        return;
    vt_engine_watch_fd(w, -1, 0);
    vt_watcher **p = &eng->watchers;
    while (*p != w)
        p = &(*p)->next;
    *p = w->next;
    w->engine = NULL;
}

void vt_engine_watch_fd(vt_watcher *w, int fd, int events)
{
    vt_engine *eng = w->engine;
    if (!eng)
        return;
    if (w->fd >= 0 && (events == 0 || fd != w->fd)) {
        epoll_ctl(eng->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        w->fd = -1;
        w->events = 0;
    }
    if (events == 0 || fd < 0 || events == w->events)
        return;
    struct epoll_event ev = {0};
    ev.events = (events & VT_WANT_READ ? EPOLLIN : 0) | (events & VT_WANT_WRITE ? EPOLLOUT : 0);
    ev.data.u64 = vt_epoll_tag(TAG_WATCH, fd);
    epoll_ctl(eng->epfd, w->fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    w->fd = fd;
    w->events = events;
}

static void watcher_io(vt_engine *eng, int fd, uint32_t events)
{
    int ready = (events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? VT_WANT_READ : 0) |
                (events & (EPOLLOUT | EPOLLERR) ? VT_WANT_WRITE : 0);
    for (vt_watcher *w = eng->watchers; w; w = w->next)
        if (w->fd == fd) {
            w->on_io(w, ready);
            return;
        }
}

double vt_engine_timeout(vt_engine *eng)
{
    /* A job finished but not yet taken by its caller (maybe finished in another
     * call's step): the host must resume that caller now. A streaming job says
     * itself when its caller can go on (lines came, or it ended). */
    for (vt_job *j = eng->jobs; j; j = j->next)
        if (j->answered != VT_ANSWER_NONE ||
            (j->sink == VT_SINK_STREAM ? j->stream.ready(j->stream.ud) : j->state == VT_JOB_DONE))
            return 0;
    return next_due(eng);
}

void vt_job_resume(vt_job *j)
{
    if (j->transfer && j->paused) {
        j->paused = false; /* first: the held bytes may fill the sink again at once */
        curl_easy_pause(j->transfer->curl, CURLPAUSE_CONT);
    }
}

int vt_engine_step(vt_engine *eng, double max_block)
{
    /* only what the engine itself waits for: a finished job that nobody took
     * (a cancelled coroutine's) must not turn blocking waits into a busy loop */
    double wait = next_due(eng);
    if (wait < 0 || wait > max_block)
        wait = max_block;
    if (wait > 86400)
        wait = 86400; /* epoll_wait takes an int of milliseconds */
    struct epoll_event evs[32];
    int n = epoll_wait(eng->epfd, evs, 32, (int)ceil(wait * 1000));
    int running;
    for (int i = 0; i < n; i++) {
        unsigned kind = (unsigned)(evs[i].data.u64 >> 32);
        int fd = (int)(uint32_t)evs[i].data.u64;
        if (kind == TAG_SOURCE) {
            resume_source(eng, fd);
            continue;
        }
        if (kind == TAG_WATCH) {
            watcher_io(eng, fd, evs[i].events);
            continue;
        }
        int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                    (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(eng->multi, fd, flags, &running);
    }
    if (curl_timeout(eng) == 0)
        curl_multi_socket_action(eng->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    read_finished(eng);
    double mono = vt_monotonic();
    for (vt_watcher *w = eng->watchers; w; w = w->next)
        w->tick(w, mono);
    int pending = 0;
    for (vt_job *j = eng->jobs; j; j = j->next) {
        advance(j, mono); /* a transfer it starts is kicked by curl's 0 timeout next step */
        if (j->cache.leased && j->cache.refresh_at <= mono) {
            vt_cache_refresh(j->policy->cache, j);
            j->cache.refresh_at = mono + VT_LEASE_TTL / 3;
        }
        if (j->state != VT_JOB_DONE)
            pending++;
    }
    return pending;
}
