/* The feed line splitter (vt_linesplit, src/feed_stream.c) on any bytes, fed in chunks of any
 * sizes: it gives exactly the lines of the input (split at '\n', an unfinished last line at the
 * end), or fails with InvalidResponse exactly when a line passes max_line. (The bzip2 side of a
 * feed batch is libbz2's; the specs feed it truncated and garbage batches.)
 * Input: a max_line byte, a chunking byte, then the bytes. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_line = data[0] < 200 ? (size_t)data[0] % 64 + 1 : (size_t)16 << 20;
    check_splitter((const char *)data + 2, size - 2, max_line, data[1]);
    return 0;
}
