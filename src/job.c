/* The life of a job: consult the cache, wait for quota, run, retry transient
 * failures with backoff and jitter, all within the job's deadline. The loop that
 * drives jobs (epoll, curl's multi handle) is engine.c's; one attempt's transfer
 * is transfer.c's. No Lua here: the answers of the cache and of Redis only touch
 * C data, so no Lua error can ever longjmp through libcurl or hiredis.
 *
 * Shared requests. A look-up (a job with a cache key) that finds another job of
 * the engine asking for the same key follows it: it gets a copy of that job's
 * response when it ends. With a cache backend, a look-up asks the cache first;
 * without an entry it takes the key's in-flight marker, or, when another
 * process holds it, looks again now and then (for at most `timeout`) until that
 * process's answer is stored or its marker is gone. */
#include "engine.h"

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

/* ------------------------------------------------------ leaving the engine */

/* A source's fd stops being watched: its session may close it once the job ends. */
static void forget_source_fd(vt_job *j)
{
    if (j->src_fd >= 0) {
        epoll_ctl(j->engine->epfd, EPOLL_CTL_DEL, j->src_fd, NULL);
        j->src_fd = -1;
    }
}

static void begin(vt_job *j, double mono);

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
        vt_job_advance(f, mono);
        f = next;
    }
}

void vt_job_close_all(vt_engine *eng)
{
    for (vt_job *j = eng->jobs; j; j = j->next) {
        j->cache.followers = j->cache.leader = j->cache.next_follower = NULL; /* all end here */
        give_up_marker(j);
    }
    while (eng->jobs) {
        vt_job *j = eng->jobs;
        unlink_job(j);
        if (j->state != VT_JOB_DONE) {
            vt_err e;
            vt_err_set(&e, "ConnectionError", "the client was closed");
            job_fail(j, &e);
        }
    }
}

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
void vt_job_advance(vt_job *j, double mono)
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
        vt_job_advance(j, mono);
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

void vt_job_transfer_done(vt_job *j, CURLcode rc, double mono)
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

void vt_job_resume(vt_job *j)
{
    if (j->transfer && j->paused) {
        j->paused = false; /* first: the held bytes may fill the sink again at once */
        curl_easy_pause(j->transfer->curl, CURLPAUSE_CONT);
    }
}
