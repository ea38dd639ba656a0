/* The head of an HTTP answer as libcurl hands it over, a header line at a time: a header's
 * value, and what a Retry-After says. Plain C on plain data: curl's header callback
 * (transfer.c) calls it, and the fuzzer calls it directly.
 *
 * Retry-After. A value no process should obey is ignored, so that the caller's default
 * applies (backoff, or the quota hold): it is either delta-seconds (digits, with a decimal
 * fraction tolerated) or an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 5.6.7;
 * the two obsolete date forms are ignored). Anything else ("inf", "1e308", "-5", "nan", a
 * hex float that strtod would read) is ignored. What is kept is capped at a day: a hold
 * beyond that is written to the state every process shares. */
#include "vt.h"

#include <string.h>
#include <strings.h>

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits of a fixed count at s into *out. */
static bool fixed_number(const char *s, int count, int *out)
{
    int v = 0;
    for (int i = 0; i < count; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long days_from_civil(long y, int m, int d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* An IMF-fixdate, exactly 29 bytes: "Sun, 06 Nov 1994 08:49:37 GMT"; seconds since the epoch. */
static bool imf_fixdate(const char *s, size_t len, double *epoch)
{
    static const char days[] = "MonTueWedThuFriSatSun";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (len != 29 || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return false;
    bool day_name = false;
    for (int i = 0; i < 7 && !day_name; i++)
        day_name = memcmp(s, days + 3 * i, 3) == 0;
    int month = 0;
    for (int i = 0; i < 12 && !month; i++)
        if (memcmp(s + 8, months + 3 * i, 3) == 0)
            month = i + 1;
    int day, year, hour, minute, second;
    if (!day_name || !month || !fixed_number(s + 5, 2, &day) || !fixed_number(s + 12, 4, &year) ||
        !fixed_number(s + 17, 2, &hour) || !fixed_number(s + 20, 2, &minute) || !fixed_number(s + 23, 2, &second))
        return false;
    if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return false;
    *epoch = (double)days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return true;
}

double vt_retry_after_seconds(const char *value, size_t len, double now)
{
    while (len > 0 && (*value == ' ' || *value == '\t'))
        value++, len--;
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    double epoch;
    if (imf_fixdate(value, len, &epoch)) {
        double wait = epoch - now;
        return wait < 0 ? 0 : wait > VT_RETRY_AFTER_MAX ? VT_RETRY_AFTER_MAX : wait;
    }
    size_t i = 0;
    double secs = 0;
    while (i < len && is_digit(value[i])) {
        if (secs <= VT_RETRY_AFTER_MAX) /* beyond the cap the exact value no longer matters */
            secs = secs * 10 + (value[i] - '0');
        i++;
    }
    if (i == 0)
        return -1;
    if (i < len && value[i] == '.') {
        double scale = 0.1;
        size_t digits = ++i;
        for (; i < len && is_digit(value[i]); i++, scale /= 10)
            secs += (value[i] - '0') * scale;
        if (i == digits)
            return -1; /* "5." */
    }
    if (i != len)
        return -1;
    return secs > VT_RETRY_AFTER_MAX ? VT_RETRY_AFTER_MAX : secs;
}

bool vt_header_value(const char *line, size_t len, const char *name, const char **value, size_t *value_len)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    *value_len = (size_t)(end - v);
    return true;
}
