/* Feed batches as they stream in (src/feed_stream.c), on any bytes:
 *   - the line splitter, fed in chunks of any sizes, gives exactly the lines of the input
 *     (split at '\n', an unfinished last line at the end), or fails with InvalidResponse
 *     exactly when a line passes max_line;
 *   - a whole feed stream (bzip2, lines, the bounded queue, a skip) takes any bytes without
 *     crashing or leaking: lines within max_line, errors InvalidResponse or OutOfMemory (the
 *     first 256 KiB of lines of each input: a few bytes may unpack to megabytes).
 * Input: a mode byte (1 mod 4: a stream), a max_line byte, a chunking byte, then the bytes. */
#include "harness.h"
#include "vt.h"

#include <stdlib.h>
#include <string.h>

/* The size of chunk i: 1 to (seed % 31) + 1 bytes, varying. */
static size_t chunk_size(unsigned seed, size_t i)
{
    return 1 + (size_t)((seed * 7 + i * 13) % ((seed % 31) + 1));
}

static void check_splitter(const char *data, size_t size, size_t max_line, unsigned seed)
{
    vt_linesplit s;
    vt_linesplit_init(&s, max_line);
    size_t expect_at = 0; /* the next line of the input, as the reference reads it */
    bool failed = false;
    size_t chunk = 0;
    for (size_t at = 0; at < size && !failed; chunk++) {
        size_t n = chunk_size(seed, chunk);
        if (n > size - at)
            n = size - at;
        char *piece = malloc(n); /* its own allocation: a read past the chunk is caught */
        memcpy(piece, data + at, n);
        const char *p = piece, *line;
        size_t left = n, line_len;
        vt_err e;
        int rc;
        while ((rc = vt_linesplit_next(&s, &p, &left, &line, &line_len, &e)) == 1) {
            const char *nl = memchr(data + expect_at, '\n', size - expect_at);
            fuzz_check(nl != NULL, "a line only where the input has a line end");
            size_t want = (size_t)(nl - (data + expect_at));
            fuzz_check(line_len == want && memcmp(line, data + expect_at, want) == 0, "the input's next line");
            fuzz_check(line_len <= max_line, "within max_line");
            expect_at += want + 1;
        }
        if (rc < 0) {
            fuzz_check(strcmp(e.code, "InvalidResponse") == 0, "a long line is InvalidResponse");
            const char *nl = memchr(data + expect_at, '\n', size - expect_at);
            size_t next = nl ? (size_t)(nl - (data + expect_at)) : size - expect_at;
            fuzz_check(next > max_line, "refused only when the line passes max_line");
            failed = true;
        } else
            fuzz_check(left == 0, "0 means the chunk was taken");
        free(piece);
        at += n;
    }
    if (!failed) {
        const char *line;
        size_t line_len;
        if (vt_linesplit_end(&s, &line, &line_len) == 1) {
            fuzz_check(line_len == size - expect_at && memcmp(line, data + expect_at, line_len) == 0,
                       "the unfinished last line");
            expect_at = size;
        }
        fuzz_check(expect_at == size, "every line given");
    }
    vt_linesplit_clear(&s);
}

static void check_stream(const char *data, size_t size, size_t max_line, unsigned seed)
{
    vt_err e;
    vt_feed_stream *s = vt_feed_stream_new(max_line, seed % 4, &e);
    fuzz_check(s != NULL, "a stream is made");
    bool failed = false;
    int64_t lines = 0;
    size_t taken = 0; /* bytes of lines popped: a small input may unpack to megabytes */
    for (size_t at = 0, chunk = 0; at < size && !failed && taken < 256 * 1024; chunk++) {
        size_t n = chunk_size(seed, chunk) * 16;
        if (n > size - at)
            n = size - at;
        int rc = vt_feed_stream_write(s, data + at, n, &e);
        if (rc == VT_STREAM_ERROR) {
            failed = true;
            break;
        }
        if (rc == VT_STREAM_TOOK)
            at += n;
        const char *line;
        size_t len;
        int got;
        while ((got = vt_feed_stream_pop(s, &line, &len, &e)) == 1) {
            fuzz_check(len <= max_line && memchr(line, '\n', len) == NULL, "a queued line");
            lines++;
            taken += len + 1;
        }
        if (got < 0)
            failed = true;
    }
    if (failed)
        fuzz_check(strcmp(e.code, "InvalidResponse") == 0 || strcmp(e.code, VT_OOM) == 0, "a bad batch");
    else if (taken < 256 * 1024 && vt_feed_stream_end(s, &e) == 0) {
        const char *line;
        size_t len;
        while (vt_feed_stream_pop(s, &line, &len, &e) == 1)
            lines++;
    }
    fuzz_check(vt_feed_stream_position(s) >= lines, "the position counts the lines given");
    vt_feed_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max_line = data[1] < 200 ? (size_t)data[1] % 64 + 1 : (size_t)16 << 20;
    if (data[0] % 4 == 1) /* a stream costs a decompressor: one input in four */
        check_stream((const char *)data + 3, size - 3, max_line, data[2]);
    else
        check_splitter((const char *)data + 3, size - 3, max_line, data[2]);
    return 0;
}
