/* The engine: one curl multi handle driven through epoll, beside the fds of
 * upload sources and of watchers (a Redis connection); a step runs what is due
 * and hands each job its turn. What a job does with its turn (cache, quota,
 * attempts, retries) is job.c's; one attempt's transfer is transfer.c's. No Lua
 * here: curl's callbacks only touch C data, so no Lua error can ever longjmp
 * through libcurl. */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

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

void vt_engine_free(vt_engine *eng)
{
    if (!eng)
        return;
    vt_job_close_all(eng);
    for (vt_watcher *w = eng->watchers; w; w = w->next)
        w->engine = NULL;
    vt_transfer_free_idle(eng);
    if (eng->multi)
        curl_multi_cleanup(eng->multi);
    if (eng->epfd >= 0)
        close(eng->epfd);
    free(eng);
}

int vt_engine_fd(vt_engine *eng) { return eng->epfd; }

uint64_t vt_engine_requests(const vt_engine *eng) { return eng->requests; }

int vt_engine_pending(const vt_engine *eng)
{
    int pending = 0;
    for (const vt_job *j = eng->jobs; j; j = j->next)
        pending += j->state != VT_JOB_DONE;
    return pending;
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
            vt_job_transfer_done(j, msg->data.result, vt_monotonic());
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

/* --------------------------------------------------------------- steps */

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
        vt_job_advance(j, mono); /* a transfer it starts is kicked by curl's 0 timeout next step */
        if (j->cache.leased && j->cache.refresh_at <= mono) {
            vt_cache_refresh(j->policy->cache, j);
            j->cache.refresh_at = mono + VT_LEASE_TTL / 3;
        }
        if (j->state != VT_JOB_DONE)
            pending++;
    }
    return pending;
}
