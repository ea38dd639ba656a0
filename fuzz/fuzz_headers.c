/* The HTTP head parser (src/http_head.c) on any bytes: header lines as curl hands them over,
 * and Retry-After values, against what it promises: a header's value lies inside its line,
 * without the white space around it; a kept Retry-After is a finite number of seconds within
 * a day; delta-seconds read as their digits say; an IMF-fixdate as the C library's strptime and
 * timegm read it. */
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
    for (size_t at = 0; at < size;) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - (text + at)) + 1 : size - at;
        char *line = malloc(n); /* its own allocation: a read past the line is caught */
        memcpy(line, text + at, n);
        const char *value;
        size_t len;
        if (vt_header_value(line, n, "Retry-After", &value, &len)) {
            fuzz_check(value >= line + 12 && value + len <= line + n, "the value lies inside the line");
            fuzz_check(len == 0 || (value[0] != ' ' && value[len - 1] != ' ' && value[len - 1] != '\n'),
                       "the value without the white space around it");
            check_seconds(vt_retry_after_seconds(value, len, NOW));
        }
        free(line);
        at += n;
    }
    return 0;
}
