/* The engine: one curl multi handle driven through epoll, and the life of a job
 * (wait for quota, run, retry transient failures with backoff and jitter, all
 * within the job's deadline). No Lua here: curl's callbacks only touch C data,
 * so no Lua error can ever longjmp through libcurl. */
#include "vt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DEFAULT_BODY_CAP (64 * 1024 * 1024) /* JSON answers are far smaller */
#define BACKOFF_CAP 30.0
#define QUOTA_HOLD_DEFAULT 60.0 /* minute quotas are the ones a 429 usually means */

/* epoll data tags: curl's sockets and sources' fds share one epoll set. */
#define TAG_CURL   1u
#define TAG_SOURCE 2u

struct vt_engine {
    CURLM *multi;
    int epfd;
    vt_job *jobs;         /* every linked job */
    unsigned jitter_state;
    uint64_t requests;    /* API requests sent (attempts that counted against the quota) */
};

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

static uint64_t tag(unsigned kind, int fd) { return ((uint64_t)kind << 32) | (uint32_t)fd; }

/* ------------------------------------------------------- curl callbacks */

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    vt_engine *eng = userp;
    struct epoll_event ev = {0};
    ev.data.u64 = tag(TAG_CURL, s);
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(eng->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (epoll_ctl(eng->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
        epoll_ctl(eng->epfd, EPOLL_CTL_ADD, s, &ev);
    return 0;
}

/* The sinks take a piece of the body: 0, or -1 with j->err filled. */
static int sink_memory(vt_job *j, const char *data, size_t n)
{
    size_t cap = j->max_bytes > 0 ? (size_t)j->max_bytes : DEFAULT_BODY_CAP;
    if (j->resp_len + n > cap) {
        vt_err_set(&j->err, "TooLarge", "response body exceeds %zu bytes", cap);
        return -1;
    }
    if (j->resp_len + n + 1 > j->resp_cap) {
        size_t want = j->resp_cap ? j->resp_cap : 16384;
        while (want < j->resp_len + n + 1)
            want *= 2;
        char *grown = realloc(j->resp, want);
        if (!grown) {
            vt_err_oom(&j->err, "buffering the response");
            return -1;
        }
        j->resp = grown;
        j->resp_cap = want;
    }
    memcpy(j->resp + j->resp_len, data, n);
    j->resp_len += n;
    j->resp[j->resp_len] = '\0';
    return 0;
}

static int sink_file(vt_job *j, const char *data, size_t n)
{
    if (j->max_bytes > 0 && j->resp_total + (int64_t)n > j->max_bytes) {
        vt_err_set(&j->err, "TooLarge", "download exceeds max_bytes (%lld bytes)", (long long)j->max_bytes);
        return -1;
    }
    if (j->digest)
        vt_digest_update(j->digest, data, n);
    while (n > 0) {
        ssize_t w = write(j->sink_fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            vt_err_set(&j->err, "ConnectionError", "writing the download failed: %s", strerror(errno));
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    vt_job *j = userp;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    /* Only a successful body goes to the file or the stream; an error body is
     * kept in memory so that it can be reported. */
    bool success = status >= 200 && status < 300;
    if (j->sink == VT_SINK_STREAM && success) {
        int took = j->stream.write(j->stream.ud, data, n, &j->err);
        if (took == VT_STREAM_FULL) {
            j->paused = true;
            return CURL_WRITEFUNC_PAUSE;
        }
        if (took != VT_STREAM_TOOK)
            return CURL_WRITEFUNC_ERROR;
        j->resp_total += (int64_t)n;
        return n;
    }
    bool to_file = j->sink == VT_SINK_FILE && success;
    if ((to_file ? sink_file(j, data, n) : sink_memory(j, data, n)) != 0)
        return CURL_WRITEFUNC_ERROR;
    j->resp_total += (int64_t)n;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    vt_job *j = userp;
    size_t n = size * nmemb;
    if (vt_head_line(&j->head, data, n, vt_now(), &j->err) != 0)
        return 0; /* ends the transfer */
    return n;
}

/* Called before each request a transfer sends. libcurl sends a request again, on its own,
 * when a kept-alive connection closes before any answer (the server dropped it as the
 * request arrived): a request beyond the client's retries, and one no quota slot was taken
 * for. That second send is refused here, and the job retries it as its own attempt. */
static int on_prereq(void *userp, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    vt_job *j = userp;
    if (j->sends++ == 0)
        return CURL_PREREQFUNC_OK;
    j->connection_dropped = true;
    vt_err_set(&j->err, "ConnectionError", "the connection closed before the service answered");
    return CURL_PREREQFUNC_ABORT;
}

/* Progress of a streaming transfer: bytes moved either way. */
static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    vt_job *j = userp;
    double now = vt_monotonic();
    if (dlnow + ulnow != j->moved || j->paused) {
        /* progress, or a pause of our own (a full stream sink waits for its reader, who
         * may take their time): the clock starts again */
        j->moved = dlnow + ulnow;
        j->moved_at = now;
    } else if (now - j->moved_at > j->transport->timeout) {
        vt_err_set(&j->err, "Timeout", "nothing sent or received for %gs", j->transport->timeout);
        return 1; /* ends the transfer */
    }
    return 0;
}

/* Upload body: multipart head, then the source, then the tail. */
static size_t on_read(char *buf, size_t size, size_t nmemb, void *userp)
{
    vt_job *j = userp;
    size_t cap = size * nmemb, out = 0;
    int64_t pos = j->sent;
    int64_t src_end = (int64_t)j->mp_head_len + (j->source ? j->source->size : 0);

    if (pos < (int64_t)j->mp_head_len) {
        size_t n = j->mp_head_len - (size_t)pos;
        if (n > cap) n = cap;
        memcpy(buf, j->mp_head + pos, n);
        out = n;
    } else if (pos < src_end) {
        int fd = -1, events = 0;
        size_t want = cap;
        if ((int64_t)want > src_end - pos)
            want = (size_t)(src_end - pos);
        if (!j->source->open) { /* a host closed the source (or its session) mid-upload */
            vt_err_set(&j->err, "InvalidArgument", "the file source was closed during the upload");
            return CURL_READFUNC_ABORT;
        }
        ptrdiff_t r = j->source->cls->read(j->source, buf, want, &fd, &events, &j->err);
        if (r == VT_SOURCE_AGAIN) {
            j->src_fd = fd;
            j->src_events = events;
            struct epoll_event ev = {0};
            ev.events = (events & VT_WANT_READ ? EPOLLIN : 0) | (events & VT_WANT_WRITE ? EPOLLOUT : 0);
            ev.data.u64 = tag(TAG_SOURCE, fd);
            if (epoll_ctl(j->engine->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
                epoll_ctl(j->engine->epfd, EPOLL_CTL_MOD, fd, &ev);
            return CURL_READFUNC_PAUSE;
        }
        if (r == VT_SOURCE_ERROR)
            return CURL_READFUNC_ABORT;
        if (r == 0) {
            vt_err_set(&j->err, "InvalidArgument", "the file to upload ended early (%lld of %lld bytes)",
                       (long long)(pos - (int64_t)j->mp_head_len), (long long)j->source->size);
            return CURL_READFUNC_ABORT;
        }
        out = (size_t)r;
    } else {
        size_t off = (size_t)(pos - src_end);
        size_t n = j->mp_tail_len - off;
        if (n > cap) n = cap;
        memcpy(buf, j->mp_tail + off, n);
        out = n;
    }
    j->sent += (int64_t)out;
    return out;
}

static int on_seek(void *userp, curl_off_t offset, int origin)
{
    vt_job *j = userp;
    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    if (j->source && (!j->source->open || j->source->cls->rewind(j->source, &j->err) != 0))
        return CURL_SEEKFUNC_FAIL;
    j->sent = 0;
    return CURL_SEEKFUNC_OK;
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
    if (j->easy) {
        curl_multi_remove_handle(eng->multi, j->easy);
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
    }
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
    if (!j->easy)
        return -1;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return -1; /* a redirect's or an error's body is not the content */
    curl_easy_getinfo(j->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    return length;
}

uint64_t vt_engine_requests(const vt_engine *eng) { return eng->requests; }

/* ---------------------------------------------------------------- jobs */

void vt_job_init(vt_job *j)
{
    memset(j, 0, sizeof *j);
    j->sink_fd = j->src_fd = -1;
    vt_head_clear(&j->head);
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
    if (j->digest)
        vt_digest_free(j->digest);
    vt_job_init(j);
}

void vt_job_release(vt_job *j)
{
    unlink_job(j);
}

static void clear_response(vt_job *j)
{
    j->status = 0;
    j->resp_len = 0;
    j->resp_total = 0;
    if (j->resp)
        j->resp[0] = '\0';
    vt_head_clear(&j->head);
    j->sends = 0;
    j->connection_dropped = false;
    j->moved = 0;
    j->moved_at = vt_monotonic();
    j->curl_errbuf[0] = '\0';
    memset(&j->err, 0, sizeof j->err);
    j->err.retry_after = -1;
    j->sent = 0;
    j->paused = false;
}

static CURL *make_easy(vt_job *j, const vt_transport *t)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, j->curl_errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, j);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, j);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->headers);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* redirects are followed by the caller, without the key */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(t->connect_timeout * 1000));
    /* Concurrent transfers to a host not yet connected wait to learn whether its
     * connection multiplexes (HTTP/2) instead of each opening their own. Over TLS
     * the handshake (ALPN) tells; over plain HTTP only the first answer would, so
     * a slow one would hold the others back: there they do not wait. */
    if (strncmp(j->url, "https://", 8) == 0)
        curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
    if (j->streaming) {
        /* A 200 MB transfer may take longer than `timeout`; a stalled one may not. The low
         * speed limit makes libcurl look at the transfer every second, also while nothing
         * moves; on_progress ends it after `timeout` seconds without a byte either way
         * (libcurl's own check averages over 5 s: an upload that stopped would wait for
         * its answer that long beyond `timeout`). */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(t->timeout > 1 ? t->timeout : 1));
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, j);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    } else
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(t->timeout * 1000));
    if (t->user_agent)
        curl_easy_setopt(c, CURLOPT_USERAGENT, t->user_agent);
    if (t->proxy)
        curl_easy_setopt(c, CURLOPT_PROXY, t->proxy);
    if (t->cainfo)
        curl_easy_setopt(c, CURLOPT_CAINFO, t->cainfo);
    if (t->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (j->mp_head) {
        curl_off_t total = (curl_off_t)(j->mp_head_len + j->mp_tail_len) + (j->source ? j->source->size : 0);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, j);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, j);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, total);
    } else if (j->body || strcmp(j->method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body ? j->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
    }
    if (strcmp(j->method, "GET") != 0 && strcmp(j->method, "POST") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, j->method);
    return c;
}

static void start_transfer(vt_job *j)
{
    clear_response(j);
    j->easy = make_easy(j, j->transport);
    if (!j->easy) {
        vt_err e;
        vt_err_set(&e, "ConnectionError", "cannot create a transfer");
        job_fail(j, &e);
        return;
    }
    j->attempts++;
    if (j->counts_quota)
        j->engine->requests++;
    j->state = VT_JOB_RUNNING;
    if (curl_multi_add_handle(j->engine->multi, j->easy) != CURLM_OK) {
        curl_easy_cleanup(j->easy);
        j->easy = NULL;
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
    size_t url_len = j->url ? strlen(j->url) : 0;
    if (url_len > VT_URL_MAX) {
        /* libcurl would refuse it as "No URL set" (a ConnectionError, and retried) */
        vt_err e;
        vt_err_set(&e, "InvalidArgument", "the request URL would be %zu bytes; at most %d are sent", url_len,
                   VT_URL_MAX);
        job_fail(j, &e);
    } else if (j->url)
        try_quota(j, mono);
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
            return j->head.retry_after >= 0 ? j->head.retry_after : QUOTA_HOLD_DEFAULT;
        }
        if (s != 429 && s < 500)
            return -1;
    }
    if (j->head.retry_after >= 0 && !j->err.code[0])
        return j->head.retry_after;
    if (j->connection_dropped)
        return 0; /* the server is not in trouble: a new connection answers at once */
    double d = j->policy->retry_base * pow(2, j->attempts - 1);
    return (d > BACKOFF_CAP ? BACKOFF_CAP : d) * jitter(j->engine);
}

/* Scrubs from msg the password of a proxy URL "[scheme://]user:password@host...":
 * curl quotes a proxy URL it cannot parse whole ("Unsupported proxy syntax in '...'").
 * Found by hand, because such a URL is exactly the one curl's URL parser refuses. */
static void redact_proxy_password(char *msg, size_t cap, const char *proxy)
{
    if (!proxy)
        return;
    const char *user = strstr(proxy, "://");
    user = user ? user + 3 : proxy;
    const char *end = user + strcspn(user, "/?#"), *at = NULL;
    for (const char *p = user; p < end; p++)
        if (*p == '@')
            at = p; /* the last one: a raw '@' in the password stays inside the span */
    const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (colon && at > colon + 1)
        vt_redact(msg, cap, colon + 1, (size_t)(at - colon - 1));
}

static void describe_curl_failure(vt_job *j, CURLcode rc)
{
    if (j->err.code[0])
        return; /* a callback already said why */
    const char *code = "ConnectionError";
    if (rc == CURLE_OPERATION_TIMEDOUT)
        code = "Timeout";
    else if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
             rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_CACERT_BADFILE ||
             rc == CURLE_SSL_CIPHER || rc == CURLE_SSL_ISSUER_ERROR ||
             rc == CURLE_SSL_ENGINE_NOTFOUND || rc == CURLE_SSL_ENGINE_SETFAILED ||
             rc == CURLE_SSL_ENGINE_INITFAILED || rc == CURLE_SSL_SHUTDOWN_FAILED ||
             rc == CURLE_SSL_CRL_BADFILE || rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH ||
             rc == CURLE_SSL_INVALIDCERTSTATUS || rc == CURLE_SSL_CLIENTCERT)
        code = "TLSError";
    vt_err_set(&j->err, code, "%s", j->curl_errbuf[0] ? j->curl_errbuf : curl_easy_strerror(rc));
    snprintf(j->err.curl, sizeof j->err.curl, "%s", curl_easy_strerror(rc));
    /* the proxy curl used: the option, else the variables curl reads */
    const char *from_env[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    if (j->transport->proxy)
        redact_proxy_password(j->err.message, sizeof j->err.message, j->transport->proxy);
    else
        for (size_t i = 0; i < sizeof from_env / sizeof *from_env; i++)
            redact_proxy_password(j->err.message, sizeof j->err.message, getenv(from_env[i]));
}

static void on_transfer_done(vt_job *j, CURLcode rc, double mono)
{
    forget_source_fd(j);
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &j->status);
    long request_bytes = 0;
    curl_easy_getinfo(j->easy, CURLINFO_REQUEST_SIZE, &request_bytes);
    j->request_sent = request_bytes > 0;
    curl_multi_remove_handle(j->engine->multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    if (rc != CURLE_OK)
        describe_curl_failure(j, rc);

    bool quota_spent;
    double delay = retry_delay(j, &quota_spent);
    if (quota_spent) {
        j->head.retry_after = delay; /* the hold, told with the error whenever it ends the call */
        if (j->policy->limiter) {
            vt_err e;
            vt_limiter_mark_spent(j->policy->limiter, vt_now(), delay, &e);
        }
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
        if (!quota_spent && j->head.retry_after >= 0 && !j->err.code[0]) {
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
        if (j->src_fd == fd && j->easy) {
            epoll_ctl(eng->epfd, EPOLL_CTL_DEL, fd, NULL);
            j->src_fd = -1;
            curl_easy_pause(j->easy, CURLPAUSE_CONT);
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
    if (j->easy && j->paused) {
        j->paused = false; /* first: the held bytes may fill the sink again at once */
        curl_easy_pause(j->easy, CURLPAUSE_CONT);
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
