/* The HTTP head parser (src/http_head.c) on any bytes: header lines as curl hands them over,
 * and Retry-After values, against what it promises: a kept Retry-After is a finite number of
 * seconds within a day; delta-seconds read as their digits say; an IMF-fixdate as the C
 * library's strptime and timegm read it; fields always terminated and within their size. */
#include "harness.h"
#include "vt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOW 1700000000.0 /* 2023-11-14: the clock is an input of the parser, fixed here */

static void check_seconds(double s)
{
    fuzz_check(s == -1 || (isfinite(s) && s >= 0 && s <= VT_RETRY_AFTER_MAX), "Retry-After kept within a day");
}

/* Retry-After of the whole input, checked against independent readings where they apply. */
static void check_retry_after(const char *v, size_t len)
{
    double s = vt_retry_after_seconds(v, len, NOW);
    check_seconds(s);
    char text[64];
    if (len == 0 || len >= sizeof text || memchr(v, '\0', len))
        return;
    memcpy(text, v, len);
    text[len] = '\0';
    if (strspn(text, "0123456789") == len) {
        double digits = strtod(text, NULL);
        fuzz_check(s == (digits > VT_RETRY_AFTER_MAX ? VT_RETRY_AFTER_MAX : digits), "delta-seconds read as digits");
    }
    struct tm tm = {0};
    const char *end = strptime(text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (s >= 0 && len == 29 && end && !*end) {
        double wait = (double)timegm(&tm) - NOW;
        wait = wait < 0 ? 0 : wait > VT_RETRY_AFTER_MAX ? VT_RETRY_AFTER_MAX : wait;
        fuzz_check(s == wait, "an HTTP date read as strptime reads it");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    check_retry_after(text, size);
    /* The input as a response head, line by line (each keeps its line end, as curl gives it). */
    vt_head *h = malloc(sizeof *h);
    vt_head_clear(h);
    vt_err e;
    for (size_t at = 0; at < size;) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - (text + at)) + 1 : size - at;
        char *line = malloc(n); /* its own allocation: a read past the line is caught */
        memcpy(line, text + at, n);
        int rc = vt_head_line(h, line, n, NOW, &e);
        free(line);
        fuzz_check(rc == 0 || (rc == -1 && strcmp(e.code, "InvalidResponse") == 0), "a header line fails clearly");
        fuzz_check(memchr(h->content_type, '\0', sizeof h->content_type) != NULL, "Content-Type terminated");
        fuzz_check(memchr(h->location, '\0', sizeof h->location) != NULL, "Location terminated");
        check_seconds(h->retry_after);
        at += n;
    }
    free(h);
    return 0;
}
