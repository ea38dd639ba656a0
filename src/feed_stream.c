/* Feed batches as they stream in: curl's bytes go through the bzip2
 * decompressor (libbz2's streaming API) and the line splitter into a queue of
 * lines whose size is bounded, so memory stays flat whatever the batch size.
 * When the queue is full the bytes not yet decompressed are held back and the
 * transfer pauses; popping lines lets it go on. No Lua here: the engine calls
 * vt_feed_stream_write from curl's write callback. */
#include "vt.h"

#include <bzlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define OUT_CAP (64 * 1024)       /* decompressed text not yet split */
#define QUEUE_BYTES (256 * 1024)  /* queued lines past this: the queue is full */

/* ----------------------------------------------------------- line splitter */

void vt_linesplit_init(vt_linesplit *s, size_t max_line)
{
    memset(s, 0, sizeof *s);
    s->max_line = max_line;
}

void vt_linesplit_clear(vt_linesplit *s)
{
    free(s->partial);
    vt_linesplit_init(s, s->max_line);
}

/* Makes *buf hold at least need bytes (doubling, from first); false when out of memory. */
static bool reserve(char **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap)
        return true;
    size_t want = *cap ? *cap : first;
    while (want < need)
        want *= 2;
    char *grown = realloc(*buf, want);
    if (!grown)
        return false;
    *buf = grown;
    *cap = want;
    return true;
}

static bool keep(vt_linesplit *s, const char *data, size_t n, vt_err *e)
{
    if (n == 0)
        return true; /* nothing kept may be nothing allocated: no pointer arithmetic on NULL */
    if (!reserve(&s->partial, &s->partial_cap, s->partial_len + n, 4096)) {
        vt_err_oom(e, "keeping a feed line");
        return false;
    }
    memcpy(s->partial + s->partial_len, data, n);
    s->partial_len += n;
    return true;
}

static int too_long(vt_linesplit *s, vt_err *e)
{
    vt_err_set(e, "InvalidResponse", "a feed line is longer than %zu bytes", s->max_line);
    return -1;
}

int vt_linesplit_next(vt_linesplit *s, const char **data, size_t *len, const char **line, size_t *line_len,
                      vt_err *e)
{
    if (s->handed) {
        s->partial_len = 0;
        s->handed = false;
    }
    const char *nl = *len ? memchr(*data, '\n', *len) : NULL;
    size_t upto = nl ? (size_t)(nl - *data) : *len; /* bytes of this line in the input */
    if (s->partial_len + upto > s->max_line)
        return too_long(s, e);
    if (!nl) {
        if (!keep(s, *data, upto, e))
            return -1;
        *data += upto;
        *len = 0;
        return 0;
    }
    if (s->partial_len == 0) { /* the whole line is in the input: no copy */
        *line = *data;
        *line_len = upto;
    } else {
        if (!keep(s, *data, upto, e))
            return -1;
        *line = s->partial;
        *line_len = s->partial_len;
        s->handed = true;
    }
    *data += upto + 1;
    *len -= upto + 1;
    return 1;
}

int vt_linesplit_end(vt_linesplit *s, const char **line, size_t *line_len)
{
    if (s->handed || s->partial_len == 0)
        return 0;
    *line = s->partial;
    *line_len = s->partial_len;
    s->handed = true;
    return 1;
}

/* ------------------------------------------------------------------ stream */

struct vt_feed_stream {
    bz_stream bz;
    bool bz_open;           /* a bzip2 stream has begun and not ended */
    int64_t streams;        /* bzip2 streams that ended whole */
    char out[OUT_CAP];      /* decompressed, from out_pos to out_len not yet split */
    size_t out_pos, out_len;
    vt_linesplit split;
    char *held;             /* compressed bytes taken from curl, not yet decompressed */
    size_t held_pos, held_len, held_cap;
    char *queue;            /* lines: a 4-byte length, then the bytes; from q_head to q_tail */
    size_t q_head, q_tail, q_cap;
    int64_t first_skip;     /* lines of the batch to pass over (a cursor's N) */
    int64_t skip_left;      /* of those, still to pass over since the (re)start */
    int64_t popped;         /* lines handed out */
    bool failed, ended;
    vt_err err;             /* failed: why; reported once the queue is empty */
};

vt_feed_stream *vt_feed_stream_new(size_t max_line, int64_t skip, vt_err *e)
{
    vt_feed_stream *s = calloc(1, sizeof *s);
    if (!s) {
        vt_err_oom(e, "reading a feed batch");
        return NULL;
    }
    vt_linesplit_init(&s->split, max_line);
    s->first_skip = s->skip_left = skip;
    return s;
}

static void close_bz(vt_feed_stream *s)
{
    if (s->bz_open)
        BZ2_bzDecompressEnd(&s->bz);
    s->bz_open = false;
}

void vt_feed_stream_free(vt_feed_stream *s)
{
    if (!s)
        return;
    close_bz(s);
    vt_linesplit_clear(&s->split);
    free(s->held);
    free(s->queue);
    free(s);
}

/* Keeps the first failure, reported once the lines before it are out: the
 * batch proved corrupt (InvalidResponse, what is wrong), or memory ran out
 * (oom: OutOfMemory, what was being done). */
static int fail(vt_feed_stream *s, bool oom, const char *what)
{
    if (!s->failed) {
        if (oom)
            vt_err_oom(&s->err, what);
        else
            vt_err_set(&s->err, "InvalidResponse", "%s", what);
        s->failed = true;
    }
    return -1;
}

static size_t queued_bytes(const vt_feed_stream *s) { return s->q_tail - s->q_head; }

bool vt_feed_stream_queued(const vt_feed_stream *s) { return queued_bytes(s) > 0; }

/* Bytes taken from curl that have not become queued lines yet. */
bool vt_feed_stream_held(const vt_feed_stream *s) { return s->held_len > s->held_pos || s->out_pos < s->out_len; }

int64_t vt_feed_stream_position(const vt_feed_stream *s) { return s->first_skip + s->popped; }

/* Appends a line to the queue, or passes over it while lines are to be skipped. */
static bool enqueue(vt_feed_stream *s, const char *line, size_t len)
{
    if (s->skip_left > 0) {
        s->skip_left--;
        return true;
    }
    uint32_t n = (uint32_t)len; /* max_line (at most 1 GiB, feed.c) keeps it below 4 GiB */
    size_t need = sizeof n + len;
    if (s->q_tail + need > s->q_cap && s->q_head > 0) { /* reclaim what was popped */
        memmove(s->queue, s->queue + s->q_head, queued_bytes(s));
        s->q_tail -= s->q_head;
        s->q_head = 0;
    }
    if (!reserve(&s->queue, &s->q_cap, s->q_tail + need, 64 * 1024))
        return false;
    memcpy(s->queue + s->q_tail, &n, sizeof n);
    memcpy(s->queue + s->q_tail + sizeof n, line, len);
    s->q_tail += need;
    return true;
}

static const char *bz_problem(int rc)
{
    switch (rc) {
    case BZ_DATA_ERROR_MAGIC: return "the feed batch is not bzip2 data";
    case BZ_DATA_ERROR: return "the feed batch holds corrupt bzip2 data";
    case BZ_MEM_ERROR: return "decompressing a feed batch";
    default: return "decompressing the feed batch failed";
    }
}

/* Decompresses from *src (*len bytes) and splits the text into queued lines
 * until the input is used up or the queue is full. Returns 0, or -1 once the
 * stream failed. */
static int pump(vt_feed_stream *s, const char **src, size_t *len)
{
    if (s->failed)
        return -1;
    for (;;) {
        while (s->out_pos < s->out_len) {
            if (queued_bytes(s) >= QUEUE_BYTES)
                return 0;
            const char *text = s->out + s->out_pos, *line;
            size_t left = s->out_len - s->out_pos, line_len;
            int r = vt_linesplit_next(&s->split, &text, &left, &line, &line_len, &s->err);
            s->out_pos = s->out_len - left;
            if (r < 0) {
                s->failed = true;
                return -1;
            }
            if (r > 0 && !enqueue(s, line, line_len))
                return fail(s, true, "queueing feed lines");
        }
        if (*len == 0)
            return 0;
        if (!s->bz_open) { /* the first stream, or one more after a whole one */
            memset(&s->bz, 0, sizeof s->bz);
            int rc = BZ2_bzDecompressInit(&s->bz, 0, 0);
            if (rc != BZ_OK)
                return fail(s, rc == BZ_MEM_ERROR, bz_problem(rc));
            s->bz_open = true;
        }
        unsigned in = *len > UINT_MAX ? UINT_MAX : (unsigned)*len;
        s->bz.next_in = (char *)*src;
        s->bz.avail_in = in;
        s->bz.next_out = s->out;
        s->bz.avail_out = sizeof s->out;
        int rc = BZ2_bzDecompress(&s->bz);
        size_t used = in - s->bz.avail_in;
        *src += used;
        *len -= used;
        s->out_pos = 0;
        s->out_len = sizeof s->out - s->bz.avail_out;
        if (rc == BZ_STREAM_END) {
            close_bz(s);
            s->streams++;
        } else if (rc != BZ_OK)
            return fail(s, rc == BZ_MEM_ERROR, bz_problem(rc));
        else if (used == 0 && s->out_len == 0)
            return fail(s, false, "the bzip2 decompressor made no progress");
    }
}

/* Splits the text and decompresses the bytes held back, as far as the queue has room. */
static int pump_pending(vt_feed_stream *s)
{
    const char *src = s->held + s->held_pos;
    size_t len = s->held_len - s->held_pos;
    int r = pump(s, &src, &len);
    s->held_pos = s->held_len - len;
    if (s->held_pos == s->held_len)
        s->held_pos = s->held_len = 0;
    return r;
}

static bool hold(vt_feed_stream *s, const char *data, size_t n)
{
    if (!reserve(&s->held, &s->held_cap, n, n))
        return false;
    memcpy(s->held, data, n);
    s->held_pos = 0;
    s->held_len = n;
    return true;
}

int vt_feed_stream_write(vt_feed_stream *s, const char *data, size_t n, vt_err *e)
{
    if (vt_feed_stream_held(s)) {
        if (pump_pending(s) < 0)
            goto failed;
        if (vt_feed_stream_held(s))
            return VT_STREAM_FULL;
    }
    if (pump(s, &data, &n) < 0)
        goto failed;
    if (n > 0 && !hold(s, data, n)) {
        fail(s, true, "holding feed bytes");
        goto failed;
    }
    return VT_STREAM_TOOK;
failed:
    *e = s->err;
    return VT_STREAM_ERROR;
}

void vt_feed_stream_restart(vt_feed_stream *s)
{
    close_bz(s);
    s->streams = 0;
    s->out_pos = s->out_len = 0;
    vt_linesplit_clear(&s->split);
    s->held_pos = s->held_len = 0;
    s->q_head = s->q_tail = 0;
    s->failed = s->ended = false;
    s->skip_left = s->first_skip + s->popped; /* what was handed out is not handed out again */
}

int vt_feed_stream_pop(vt_feed_stream *s, const char **line, size_t *line_len, vt_err *e)
{
    /* refill before taking a line: a refill may move the queue */
    if (queued_bytes(s) < QUEUE_BYTES / 2 && vt_feed_stream_held(s))
        pump_pending(s); /* a failure is reported once the lines before it are out */
    if (queued_bytes(s) == 0) {
        if (s->failed) {
            *e = s->err;
            return -1;
        }
        return 0;
    }
    uint32_t n;
    memcpy(&n, s->queue + s->q_head, sizeof n);
    *line = s->queue + s->q_head + sizeof n;
    *line_len = n;
    s->q_head += sizeof n + n;
    if (s->q_head == s->q_tail)
        s->q_head = s->q_tail = 0; /* the line stays in place until the next enqueue */
    s->popped++;
    return 1;
}

int vt_feed_stream_end(vt_feed_stream *s, vt_err *e)
{
    if (s->ended)
        return 0;
    if (s->failed || s->bz_open || s->streams == 0) {
        if (!s->failed)
            fail(s, false, s->streams == 0 && !s->bz_open ? "the feed batch is empty (no bzip2 data)"
                                                         : "the feed batch is cut short (bzip2 data ends early)");
        *e = s->err;
        return -1;
    }
    s->ended = true;
    const char *line;
    size_t len;
    if (vt_linesplit_end(&s->split, &line, &len) && !enqueue(s, line, len)) {
        fail(s, true, "queueing feed lines");
        *e = s->err;
        return -1;
    }
    return 0;
}
