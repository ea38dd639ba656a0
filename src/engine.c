/* The engine: one curl multi handle driven through epoll, and the life of a job
 * (wait for quota, run, retry transient failures with backoff and jitter, all
 * within the job's deadline). One attempt's transfer is transfer.c's. No Lua
 * here: curl's callbacks only touch C data, so no Lua error can ever longjmp
 * through libcurl. */
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

/* ---------------------------------------------------------------- helpers */

static double jitter(vt_engine *eng)
{
    /* xorshift: enough to spread retries of processes started together */
    unsigned x = eng->jitter_state;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    eng->jitter_state = x;
    return 0.5 + (x % 1000) / 2000.0; /* [0.5, 1.0) */
}

static void job_fail(vt_job *j, const vt_err *e)
{
    j->err = *e;
    j->state = VT_JOB_DONE;
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

static void unlink_job(vt_job *j)
{
    vt_engine *eng = j->engine;
    if (!eng)
        return;
    if (j->transfer)
        vt_transfer_drop(j);
    forget_source_fd(j);
    if (j->prev) j->prev->next = j->next;
    else eng->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    j->next = j->prev = NULL;
    j->engine = NULL;
}

void vt_engine_free(vt_engine *eng)
{
    if (!eng)
        return;
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

/* A job whose wake time has come asks the limiter for a slot. */
static void try_quota(vt_job *j, double mono)
{
    if (!j->url) { /* a timer: its time has come */
        j->state = VT_JOB_DONE;
        return;
    }
    vt_limiter *lim = j->policy->limiter;
    double wait = 0;
    if (lim && j->counts_quota) {
        vt_err e;
        if (vt_limiter_acquire(lim, vt_now(), &wait, &e) != 0) {
            job_fail(j, &e);
            return;
        }
        if (wait > 0) {
            if (mono + wait > j->deadline) {
                vt_err_set(&e, "RateLimited",
                           "local quota is spent; the next slot opens in %.1fs, beyond max_wait", wait);
                e.retry_after = wait;
                job_fail(j, &e);
            } else
                j->wake_at = mono + wait;
            return;
        }
    }
    start_transfer(j);
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
    j->state = VT_JOB_QUOTA;
    j->wake_at = mono + (j->url ? 0 : j->timer);
    if (j->url)
        try_quota(j, mono);
}

/* Seconds to wait before the next attempt, or < 0 when the failure is final. */
static double retry_delay(vt_job *j, bool *quota_spent)
{
    long s = j->status;
    *quota_spent = false;
    if (j->err.code[0] && strcmp(j->err.code, "ConnectionError") != 0 && strcmp(j->err.code, "Timeout") != 0)
        return -1; /* TooLarge, a source error, ...: retrying cannot help */
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
    double d = j->policy->retry_base * pow(2, j->attempts - 1);
    return (d > BACKOFF_CAP ? BACKOFF_CAP : d) * jitter(j->engine);
}

static void on_transfer_done(vt_job *j, CURLcode rc, double mono)
{
    forget_source_fd(j);
    vt_transfer_finish(j, rc);

    bool quota_spent;
    double delay = retry_delay(j, &quota_spent);
    if (quota_spent && j->policy->limiter) {
        vt_err e;
        vt_limiter_mark_spent(j->policy->limiter, vt_now(), delay, &e);
    }
    if (delay < 0 || j->attempts > j->policy->retries) {
        j->state = VT_JOB_DONE;
        return;
    }
    if (mono + delay > j->deadline) {
        /* Waiting would pass max_wait. A quota answer keeps the service's code;
         * a Retry-After the service asked for becomes RateLimited; a failure that
         * ran out of backoff time keeps its own code. Only the first two say when
         * to come back. */
        if (quota_spent)
            j->retry_after_hdr = delay;
        else if (j->retry_after_hdr >= 0 && !j->err.code[0]) {
            vt_err_set(&j->err, "RateLimited", "the service answered HTTP %ld and asks to wait %.0fs, beyond max_wait",
                       j->status, delay);
            j->err.http = j->status;
            j->err.retry_after = delay;
        }
        j->state = VT_JOB_DONE;
        return;
    }
    if (j->sink == VT_SINK_FILE && j->sink_fd >= 0) {
        /* start the file again */
        if (ftruncate(j->sink_fd, 0) != 0 || lseek(j->sink_fd, 0, SEEK_SET) != 0) {
            j->state = VT_JOB_DONE;
            return;
        }
        if (j->digest) {
            vt_digest_free(j->digest);
            j->digest = vt_digest_new();
        }
    }
    if (j->sink == VT_SINK_STREAM)
        j->stream.restart(j->stream.ud);
    vt_err rewind_err; /* the failure that called for the retry is the one to report */
    if (j->source && (!j->source->open || j->source->cls->rewind(j->source, &rewind_err) != 0)) {
        j->state = VT_JOB_DONE;
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

/* Seconds until curl or a waiting job needs a step (-1: none). */
static double next_due(vt_engine *eng)
{
    double mono = vt_monotonic(), soonest = -1;
    double ct = curl_timeout(eng);
    if (ct >= 0)
        soonest = mono + ct;
    for (vt_job *j = eng->jobs; j; j = j->next)
        if (j->state == VT_JOB_QUOTA && (soonest < 0 || j->wake_at < soonest))
            soonest = j->wake_at;
    if (soonest < 0)
        return -1;
    return soonest > mono ? soonest - mono : 0;
}

double vt_engine_timeout(vt_engine *eng)
{
    /* A job finished but not yet taken by its caller (maybe finished in another
     * call's step): the host must resume that caller now. A streaming job says
     * itself when its caller can go on (lines came, or it ended). */
    for (vt_job *j = eng->jobs; j; j = j->next)
        if (j->sink == VT_SINK_STREAM ? j->stream.ready(j->stream.ud) : j->state == VT_JOB_DONE)
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
        int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                    (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(eng->multi, fd, flags, &running);
    }
    if (curl_timeout(eng) == 0)
        curl_multi_socket_action(eng->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    read_finished(eng);
    double mono = vt_monotonic();
    int pending = 0;
    for (vt_job *j = eng->jobs; j; j = j->next) {
        if (j->state == VT_JOB_QUOTA && j->wake_at <= mono)
            try_quota(j, mono); /* a transfer it starts is kicked by curl's 0 timeout next step */
        if (j->state != VT_JOB_DONE)
            pending++;
    }
    return pending;
}
