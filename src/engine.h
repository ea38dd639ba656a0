/* The engine's inside, shared by engine.c (the multi handle on epoll, the loop
 * that steps it), job.c (the life of a job: cache, shared requests, quota,
 * attempts, retries) and transfer.c (one transfer: its curl handle, the
 * callbacks that move the body, what the response leaves on the job). Private
 * to these three. */
#ifndef VT_ENGINE_H
#define VT_ENGINE_H

#include "vt.h"

/* epoll data tags: curl's sockets, sources' fds and watchers' fds share one epoll set. */
#define TAG_CURL   1u
#define TAG_SOURCE 2u
#define TAG_WATCH  3u

/* A curl transfer handle and what lives as long as it does. Handles are reused
 * from job to job (curl_easy_reset keeps nothing of the last request but its
 * caches): making one per request costs more than the request's own work. */
struct vt_easy {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
    vt_easy *next;        /* in the engine's idle list */
};

struct vt_engine {
    CURLM *multi;
    int epfd;
    vt_job *jobs;         /* every linked job */
    vt_watcher *watchers;
    vt_easy *idle;        /* transfer handles ready for reuse */
    int idle_count;
    unsigned jitter_state;
    uint64_t requests;    /* API requests sent (attempts that counted against the quota) */
};

static inline uint64_t vt_epoll_tag(unsigned kind, int fd)
{
    return ((uint64_t)kind << 32) | (uint32_t)fd;
}

/* job.c: what the loop hands a job */
/* A job's turn in a step: it acts on an answer that came, or asks the cache or
 * the limiter once its time has come. */
void vt_job_advance(vt_job *j, double mono);
/* The job's transfer ended (rc is curl's result): the job ends, or waits to try again. */
void vt_job_transfer_done(vt_job *j, CURLcode rc, double mono);
/* The engine is going away: every linked job leaves it, failing when not done;
 * none follows another any more, and none keeps a cache marker. */
void vt_job_close_all(vt_engine *eng);

/* transfer.c */
/* Clears what a last attempt left and sets the job's request on a transfer
 * handle (an idle one reused, else a new one): NULL when out of memory. */
vt_easy *vt_transfer_prepare(vt_job *j);
/* The transfer ended (rc is curl's result): the job keeps its status, whether
 * the body is JSON, a redirect's location and why it failed; the handle goes
 * back to the idle ones. */
void vt_transfer_finish(vt_job *j, CURLcode rc);
/* Takes the running transfer off the multi handle and keeps its handle for reuse. */
void vt_transfer_drop(vt_job *j);
/* Frees the idle handles (the engine is going away). */
void vt_transfer_free_idle(vt_engine *eng);
/* A follower gets a copy of the response of the job it followed (short of memory: fails). */
void vt_transfer_share(const vt_job *from, vt_job *to);

#endif
