/* One transfer: the curl handle a job's attempt runs on (reused from attempt to
 * attempt and job to job), the callbacks that move the body (the response into
 * memory, a file or a stream sink; an upload from its multipart head, source
 * and tail), and what the response leaves on the job. Callbacks touch C data
 * only: no Lua error can longjmp through libcurl. */
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DEFAULT_BODY_CAP (64 * 1024 * 1024) /* JSON answers are far smaller */
#define MAX_IDLE_EASY 64 /* transfer handles kept for reuse */

/* -------------------------------------------------------------- callbacks */

/* The sinks take a piece of the body: 0, or -1 with j->err filled. */
static int sink_memory(vt_job *j, const char *data, size_t n)
{
    /* max_bytes is the answer's cap; a download's error body, kept here, has the default's */
    size_t cap = j->max_bytes > 0 && j->sink == VT_SINK_MEMORY ? (size_t)j->max_bytes : DEFAULT_BODY_CAP;
    if (j->resp_len + n > cap) {
        vt_err_set(&j->err, "TooLarge", "response body exceeds %zu bytes", cap);
        return -1;
    }
    if (j->resp_len + n + 1 > j->resp_cap) {
        /* the announced length, when it fits, is the one allocation needed */
        curl_off_t announced = -1;
        if (j->resp_len == 0)
            curl_easy_getinfo(j->transfer->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
        size_t want = j->resp_cap ? j->resp_cap : 16384;
        if (announced > 0 && (size_t)announced < cap && (size_t)announced + 1 > want)
            want = (size_t)announced + 1;
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
    curl_easy_getinfo(j->transfer->curl, CURLINFO_RESPONSE_CODE, &status);
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

/* The one header read as it comes: Retry-After (Content-Type and Location are
 * asked of curl once the transfer is done). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    vt_job *j = userp;
    size_t n = size * nmemb, len;
    const char *value;
    if (n > 5 && strncmp(data, "HTTP/", 5) == 0) /* a new response (after 100-continue) */
        j->retry_after_hdr = -1;
    else if (vt_header_value(data, n, "Retry-After", &value, &len))
        j->retry_after_hdr = vt_retry_after_seconds(value, len, vt_now());
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
            ev.data.u64 = vt_epoll_tag(TAG_SOURCE, fd);
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

/* ---------------------------------------------------------------- handles */

/* A transfer handle for the job: an idle one, or a new one (NULL when out of memory). */
static vt_easy *take_easy(vt_engine *eng)
{
    vt_easy *x = eng->idle;
    if (x) {
        eng->idle = x->next;
        eng->idle_count--;
        return x;
    }
    x = malloc(sizeof *x);
    if (x && !(x->curl = curl_easy_init())) {
        free(x);
        x = NULL;
    }
    return x;
}

void vt_transfer_drop(vt_job *j)
{
    vt_engine *eng = j->engine;
    vt_easy *x = j->transfer;
    j->transfer = NULL;
    curl_multi_remove_handle(eng->multi, x->curl);
    if (eng->idle_count >= MAX_IDLE_EASY) {
        curl_easy_cleanup(x->curl);
        free(x);
        return;
    }
    curl_easy_reset(x->curl);
    x->next = eng->idle;
    eng->idle = x;
    eng->idle_count++;
}

void vt_transfer_free_idle(vt_engine *eng)
{
    while (eng->idle) {
        vt_easy *x = eng->idle;
        eng->idle = x->next;
        curl_easy_cleanup(x->curl);
        free(x);
    }
}

static void clear_response(vt_job *j)
{
    j->status = 0;
    j->resp_len = 0;
    j->resp_total = 0;
    if (j->resp)
        j->resp[0] = '\0';
    j->json = false;
    free(j->content_type);
    free(j->location);
    j->content_type = j->location = NULL;
    j->retry_after_hdr = -1;
    memset(&j->err, 0, sizeof j->err);
    j->err.retry_after = -1;
    j->sent = 0;
    j->paused = false;
    j->sends = 0;
    j->connection_dropped = j->request_sent = false;
    j->moved = 0;
    j->moved_at = vt_monotonic();
}

int vt_job_set_response(vt_job *j, long status, const char *body, size_t len)
{
    clear_response(j);
    j->status = status;
    j->json = true;
    if (j->resp_cap < len + 1) {
        char *grown = realloc(j->resp, len + 1);
        if (!grown) {
            vt_err_oom(&j->err, "copying a response");
            return -1;
        }
        j->resp = grown;
        j->resp_cap = len + 1;
    }
    if (len > 0)
        memcpy(j->resp, body, len);
    j->resp[len] = '\0';
    j->resp_len = len;
    j->resp_total = (int64_t)len;
    return 0;
}

void vt_transfer_share(const vt_job *from, vt_job *to)
{
    if (vt_job_set_response(to, from->status, from->resp, from->resp_len) != 0)
        return;
    to->json = from->json;
    to->content_type = from->content_type ? strdup(from->content_type) : NULL; /* for messages only */
    to->retry_after_hdr = from->retry_after_hdr;
    to->err = from->err;
}

static vt_easy *make_easy(vt_job *j, const vt_transport *t)
{
    vt_easy *x = take_easy(j->engine);
    if (!x)
        return NULL;
    CURL *c = x->curl;
    x->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, j);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, j);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, j);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->headers ? j->headers : j->shared_headers);
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
    return x;
}

vt_easy *vt_transfer_prepare(vt_job *j)
{
    clear_response(j);
    return make_easy(j, j->transport);
}

/* --------------------------------------------------------------- the end */

/* Scrubs from msg the password of a proxy URL: curl quotes a proxy URL it cannot
 * parse whole ("Unsupported proxy syntax in '...'"). */
static void redact_proxy_password(char *msg, size_t cap, const char *proxy)
{
    size_t len;
    const char *password = proxy ? vt_proxy_password(proxy, &len) : NULL;
    if (password)
        vt_redact(msg, cap, password, len);
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
    vt_err_set(&j->err, code, "%s", j->transfer->errbuf[0] ? j->transfer->errbuf : curl_easy_strerror(rc));
    snprintf(j->err.curl, sizeof j->err.curl, "%s", curl_easy_strerror(rc));
    /* the proxy curl used: the option, else the variables curl reads */
    const char *from_env[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    if (j->transport->proxy)
        redact_proxy_password(j->err.message, sizeof j->err.message, j->transport->proxy);
    else
        for (size_t i = 0; i < sizeof from_env / sizeof *from_env; i++)
            redact_proxy_password(j->err.message, sizeof j->err.message, getenv(from_env[i]));
}

/* What the response's headers said that the job keeps: whether the body is
 * JSON (else its Content-Type, for messages) and where a redirect points. */
static void take_response_headers(vt_job *j)
{
    CURL *c = j->transfer->curl;
    char *type = NULL, *location = NULL;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    j->json = type && strncasecmp(type, "application/json", 16) == 0;
    if (type && !j->json && !(j->content_type = strdup(type)))
        vt_err_oom(&j->err, "keeping a response header");
    if (j->status >= 300 && j->status < 400 && curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &location) == CURLE_OK &&
        location && !(j->location = strdup(location)))
        vt_err_oom(&j->err, "keeping a response header");
}

void vt_transfer_finish(vt_job *j, CURLcode rc)
{
    long request_bytes = 0;
    curl_easy_getinfo(j->transfer->curl, CURLINFO_REQUEST_SIZE, &request_bytes);
    j->request_sent = request_bytes > 0;
    take_response_headers(j);
    if (rc != CURLE_OK)
        describe_curl_failure(j, rc);
    vt_transfer_drop(j);
}
