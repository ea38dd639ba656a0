/* Indicator helpers: vt.url_id, vt.hash_type, vt.refang, vt.ip_version,
 * vt.is_private_ip, vt.normalize, and the checks the client runs on an indicator
 * (kind names, validation, its id and path) before any request.
 *
 * Every input is a Lua string of known length that may hold NUL bytes, so
 * nothing here relies on NUL termination of its input.
 *
 * IP literal rules (decided here, documented in the spec file):
 *   - IPv4 is exactly four decimal octets 0..255 with no leading zeros: "010.1.1.1"
 *     is refused because inet_aton and many tools read it as octal (8.1.1.1) while
 *     others read it as decimal, so it names no single address.
 *   - IPv6 follows RFC 4291 text forms: full, "::"-compressed, and with an IPv4
 *     tail (which obeys the IPv4 rule above). Zone ids ("fe80::1%eth0") are
 *     refused: they only mean something on one host and VirusTotal cannot look
 *     them up. Brackets, ports, prefixes and surrounding spaces are refused too.
 * inet_pton (the same ISC-derived rules in glibc, musl and the BSDs) implements
 * exactly these, so it does the parsing; the spec pins every rule down. */

/*** @module vt */
#include "vt.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <ctype.h>
#include <string.h>

/* ------------------------------------------------------------------ text */

const char *vt_trim(const char *s, size_t len, size_t *out_len)
{
    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    *out_len = len;
    return s;
}

/* ------------------------------------------------------------------ hashes */

int vt_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

vt_hash_kind vt_hash_kind_of(const char *s, size_t len)
{
    if (len != VT_HASH_MD5 && len != VT_HASH_SHA1 && len != VT_HASH_SHA256)
        return VT_HASH_NONE;
    for (size_t i = 0; i < len; i++)
        if (vt_hex_value(s[i]) < 0)
            return VT_HASH_NONE;
    return (vt_hash_kind)len;
}

const char *vt_hash_name(vt_hash_kind k)
{
    switch (k) {
    case VT_HASH_MD5: return "md5";
    case VT_HASH_SHA1: return "sha1";
    case VT_HASH_SHA256: return "sha256";
    default: return NULL;
    }
}

/* ---------------------------------------------------------- IP addresses */

/* Parses s as an IP literal into addr (4 or 16 bytes used); returns 4, 6 or 0. */
static int parse_ip(const char *s, size_t len, unsigned char addr[16])
{
    /* The longest literal, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", has
     * INET6_ADDRSTRLEN - 1 characters; anything longer is refused unread. */
    char text[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof text || memchr(s, '\0', len) != NULL)
        return 0;
    memcpy(text, s, len);
    text[len] = '\0';
    if (memchr(text, ':', len) != NULL)
        return inet_pton(AF_INET6, text, addr) == 1 ? 6 : 0;
    return inet_pton(AF_INET, text, addr) == 1 ? 4 : 0;
}

int vt_ip_version_of(const char *s, size_t len)
{
    unsigned char addr[16];
    return parse_ip(s, len, addr);
}

/* 10/8, 172.16/12, 192.168/16 (RFC 1918), 127/8 loopback, 169.254/16 link-local,
 * 100.64/10 shared CGNAT space (RFC 6598), 0/8 "this network". */
static bool is_private_v4(const unsigned char a[4])
{
    return a[0] == 10
        || (a[0] == 172 && (a[1] & 0xf0) == 16)
        || (a[0] == 192 && a[1] == 168)
        || a[0] == 127
        || (a[0] == 169 && a[1] == 254)
        || (a[0] == 100 && (a[1] & 0xc0) == 64)
        || a[0] == 0;
}

/* :: unspecified, ::1 loopback, fe80::/10 link-local, fc00::/7 unique local,
 * and ::ffff:0:0/96 (IPv4-mapped) judged by the IPv4 address it carries. */
static bool is_private_v6(const unsigned char a[16])
{
    static const unsigned char zeros[15] = {0};
    static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped_prefix, sizeof mapped_prefix) == 0)
        return is_private_v4(a + 12);
    if (memcmp(a, zeros, sizeof zeros) == 0)
        return a[15] == 0 || a[15] == 1;
    return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

bool vt_is_private_ip_str(const char *s, size_t len)
{
    unsigned char addr[16];
    switch (parse_ip(s, len, addr)) {
    case 4: return is_private_v4(addr);
    case 6: return is_private_v6(addr);
    default: return false;
    }
}

/* ----------------------------------------------------------------- domains */

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_label_char(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '_';
}

/* "At least one dot" is read as at least two labels: "com." is a single label
 * with a root dot, not a name VirusTotal files a domain under. */
bool vt_is_domain(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '.')
        len--; /* the root's dot is not part of the name's length */
    if (len == 0 || len > 253)
        return false;
    size_t labels = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!is_label_char((unsigned char)s[i]))
                return false;
            continue;
        }
        size_t label_len = i - start;
        if (label_len == 0 || label_len > 63 || s[start] == '-' || s[i - 1] == '-')
            return false;
        labels++;
        start = i + 1;
    }
    return labels >= 2;
}

/* ------------------------------------------------------------------ base64 */

size_t vt_base64url(const char *data, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *in = (const unsigned char *)data;
    size_t n = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
        out[n++] = alphabet[v & 63];
    }
    /* A tail of 1 or 2 bytes gives 2 or 3 characters; the '=' padding is left off. */
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        if (i + 1 < len)
            out[n++] = alphabet[v >> 6 & 63];
    }
    out[n] = '\0';
    return n;
}

/* ------------------------------------------------------------------ refang */

typedef struct token { const char *defanged; const char *plain; } token;

/* Bracketed stand-ins, anywhere in the text. */
static const token bracket_tokens[] = {
    {"[.]", "."}, {"(.)", "."}, {"{.}", "."},
    {"[dot]", "."}, {"(dot)", "."}, {"{dot}", "."},
    {"[:]", ":"}, {"[://]", "://"},
    {"[@]", "@"}, {"[at]", "@"},
};

/* Defanged schemes; "hxxps" comes before its prefix "hxxp". */
static const token scheme_tokens[] = {
    {"hxxps", "https"}, {"hxxp", "http"}, {"fxp", "ftp"},
};

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Length of the first token of the table that s starts with, ignoring ASCII case
 * ("[DOT]", "hXXps"), with its plain form in *plain; 0 when none does. The
 * comparison is by hand: strncasecmp follows the locale a host may have set. */
static size_t match_token(const token *table, size_t count, const char *s, size_t len,
                          const char **plain)
{
    for (size_t t = 0; t < count; t++) {
        const char *d = table[t].defanged;
        size_t n = strlen(d), i = 0;
        while (i < n && i < len && ascii_lower((unsigned char)s[i]) == (unsigned char)d[i])
            i++;
        if (i == n) {
            *plain = table[t].plain;
            return n;
        }
    }
    return 0;
}

/* Length of a defanged scheme at s, or 0. Only a whole word followed by ':' or
 * '[' (the start of "://", "[:]//" or "[://]") counts, so prose such as
 * "the hxxp tool" or "sfxp:" is left alone. */
static size_t scheme_token(const char *s, size_t len, bool word_start, const char **plain)
{
    if (!word_start)
        return 0;
    size_t n = match_token(scheme_tokens, sizeof scheme_tokens / sizeof scheme_tokens[0],
                           s, len, plain);
    return n > 0 && n < len && (s[n] == ':' || s[n] == '[') ? n : 0;
}

void vt_push_refanged(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t copied = 0; /* s[copied..i) is plain text not yet added to b */
    size_t i = 0;
    while (i < len) {
        const char *plain = NULL;
        size_t n = 0;
        unsigned char c = (unsigned char)s[i];
        if (c == '[' || c == '(' || c == '{')
            n = match_token(bracket_tokens, sizeof bracket_tokens / sizeof bracket_tokens[0],
                            s + i, len - i, &plain);
        else if (c == 'h' || c == 'H' || c == 'f' || c == 'F')
            n = scheme_token(s + i, len - i, i == 0 || !is_alnum((unsigned char)s[i - 1]), &plain);
        if (n == 0) {
            i++;
            continue;
        }
        luaL_addlstring(&b, s + copied, i - copied);
        luaL_addstring(&b, plain);
        i += n;
        copied = i;
    }
    luaL_addlstring(&b, s + copied, len - copied);
    luaL_pushresult(&b);
}

/* ------------------------------------------- indicators as the service names them */

static void quote_for_message(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < cap; i++)
        out[n++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    if (n + 4 >= cap && len > n)
        memcpy(out + n - 3, "...", 3);
    out[n] = '\0';
}

int vt_malformed(vt_err *e, const char *what, const char *s, size_t len)
{
    char shown[80];
    quote_for_message(shown, sizeof shown, s, len);
    vt_err_set(e, "InvalidArgument", "not %s: '%s'", what, shown);
    return -1;
}

static const char *const kind_names[] = {"file", "url", "domain", "ip", "analysis", NULL};
static const char *const kind_collections[] = {"files", "urls", "domains", "ip_addresses", "analyses"};

vt_kind vt_kind_check(lua_State *L, int idx, bool allow_analysis)
{
    const char *name = vt_checkstring(L, idx, NULL);
    for (int k = 0; kind_names[k]; k++)
        if ((strcmp(name, kind_names[k]) == 0 || strcmp(name, kind_collections[k]) == 0) &&
            (allow_analysis || k != VT_KIND_ANALYSIS))
            return (vt_kind)k;
    return luaL_error(L, "bad kind '%s' (expected %s)", name,
                      allow_analysis ? "file, url, domain, ip or analysis" : "file, url, domain or ip");
}

/* The id part of each kind's path, normalised, pushed: 0, or -1 with e filled on bad data. */
static int push_file_id(lua_State *L, const char *h, size_t len, vt_err *e)
{
    if (!vt_hash_kind_of(h, len))
        return vt_malformed(e, "an MD5, SHA-1 or SHA-256 hash", h, len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; i++)
        luaL_addchar(&b, (char)tolower((unsigned char)h[i]));
    luaL_pushresult(&b);
    return 0;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0: no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return len;
}

bool vt_is_utf8(const char *s, size_t len)
{
    for (size_t i = 0, n; i < len; i += n)
        if (!(n = utf8_sequence((const unsigned char *)s + i, len - i)))
            return false;
    return true;
}

static bool is_ascii_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool vt_is_url(const char *s, size_t len)
{
    if (len == 0 || len > VT_URL_TEXT_MAX || !vt_is_utf8(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 127)
            return false; /* spaces and controls */
    /* the authority: after "scheme://", or from the start when there is no scheme */
    /* "://" ends a scheme only before the path, query or fragment: a scheme-less
     * "evil.example/login?next=https://bank.example/" has its "://" in the query */
    const char *auth = s, *end = s + len, *sep = NULL;
    for (const char *p = s; p + 2 < end && !sep && *p != '/' && *p != '?' && *p != '#'; p++)
        if (p[0] == ':' && p[1] == '/' && p[2] == '/')
            sep = p;
    if (sep) {
        bool scheme = sep > s && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'));
        for (const char *p = s; p < sep && scheme; p++)
            scheme = is_ascii_alnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.';
        if (!scheme)
            return false;
        auth = sep + 3;
    }
    const char *auth_end = auth;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    const char *host = auth;
    for (const char *p = auth; p < auth_end; p++)
        if (*p == '@')
            host = p + 1; /* user info ends at the last '@' */
    const char *host_end = auth_end;
    if (host < auth_end && *host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (!close || close == host + 1)
            return false;
        host_end = close + 1;
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));
        if (colon)
            host_end = colon;
    }
    if (host_end < auth_end) { /* a port: ':' and digits */
        if (*host_end != ':')
            return false;
        for (const char *p = host_end + 1; p < auth_end; p++)
            if (*p < '0' || *p > '9')
                return false;
    }
    if (host_end == host)
        return false;
    /* without a scheme, a bare word is no URL: the host has a dot (or is an IPv6 literal) */
    return sep || *host == '[' || memchr(host, '.', (size_t)(host_end - host)) != NULL;
}

int vt_push_url(lua_State *L, const char *u, size_t len, vt_err *e)
{
    vt_push_refanged(L, u, len);
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    if (!vt_is_url(r, rl))
        return lua_pop(L, 1), vt_malformed(e, "a URL", u, len);
    return 0;
}

/* A sha256 id or a bare URL identifier (URL-safe base64: no dot, slash or
 * colon) is used as is; anything else is a URL, refanged, whose id is computed. */
static int push_url_id(lua_State *L, const char *u, size_t len, vt_err *e)
{
    if (vt_hash_kind_of(u, len) == VT_HASH_SHA256)
        return push_file_id(L, u, len, e);
    bool is_id = len >= 8;
    for (size_t i = 0; i < len && is_id; i++)
        is_id = is_ascii_alnum((unsigned char)u[i]) || u[i] == '-' || u[i] == '_';
    if (is_id) {
        lua_pushlstring(L, u, len);
        return 0;
    }
    if (vt_push_url(L, u, len, e) != 0)
        return -1;
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    luaL_Buffer b;
    char *id = luaL_buffinitsize(L, &b, 4 * (rl / 3 + 1) + 1);
    luaL_pushresultsize(&b, vt_base64url(r, rl, id));
    lua_remove(L, -2);
    return 0;
}

static bool has_non_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

static int push_domain_id(lua_State *L, const char *d, size_t len, vt_err *e)
{
    vt_push_refanged(L, d, len);
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    if (rl > 0 && r[rl - 1] == '.')
        rl--; /* the root's dot; a second one ("4.1..") is an empty label */
    if (has_non_ascii(r, rl)) {
        /* an internationalised name: the service files it under its ASCII form (punycode) */
        lua_pushlstring(L, r, rl);
        char *ascii = NULL;
        int rc = idn2_to_ascii_8z(lua_tostring(L, -1), &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        lua_pop(L, 1);
        if (rc != IDN2_OK)
            return lua_pop(L, 1), vt_malformed(e, "a domain name", d, len);
        lua_pushstring(L, ascii);
        idn2_free(ascii);
        lua_replace(L, -2);
        r = lua_tolstring(L, -1, &rl);
    }
    if (!vt_is_domain(r, rl) || (rl > 0 && r[rl - 1] == '.'))
        return lua_pop(L, 1), vt_malformed(e, "a domain name", d, len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < rl; i++)
        luaL_addchar(&b, (char)tolower((unsigned char)r[i]));
    luaL_pushresult(&b);
    lua_remove(L, -2);
    /* the service calls a name under no known suffix "not a valid domain pattern" (xpressco.za:
     * the list has co.za, not za), and so would it corp.local: no request for those */
    if (!vt_psl_known_suffix(L, lua_tostring(L, -1)))
        return lua_pop(L, 1), vt_malformed(e, "a domain name under a known public suffix", d, len);
    return 0;
}

/* An address in the one text the service files it under: IPv4 as given (no leading zeros
 * pass), IPv6 in RFC 5952's form (lower case, zeros compressed), as inet_ntop writes it. */
static int push_ip_id(lua_State *L, const char *a, size_t len, vt_err *e)
{
    vt_push_refanged(L, a, len);
    size_t rl;
    const char *r = lua_tolstring(L, -1, &rl);
    unsigned char addr[16];
    char text[INET6_ADDRSTRLEN];
    int version = parse_ip(r, rl, addr);
    if (!version)
        return lua_pop(L, 1), vt_malformed(e, "an IP address", a, len);
    if (version == 6 && inet_ntop(AF_INET6, addr, text, sizeof text)) {
        lua_pop(L, 1);
        lua_pushstring(L, text);
    }
    return 0;
}

static int push_analysis_id(lua_State *L, const char *id, size_t len, vt_err *e)
{
    if (len > 512)
        return vt_malformed(e, "an analysis id", id, len);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    vt_add_escaped(&b, id, len);
    luaL_pushresult(&b);
    return 0;
}

int vt_push_object_id(lua_State *L, vt_kind kind, int idx, vt_err *e)
{
    static const char *const what[] = {"hash", "URL", "domain", "IP address", "analysis id"};
    size_t raw, len;
    const char *s = vt_checkstring(L, idx, &raw);
    s = vt_trim(s, raw, &len);
    if (len == 0) {
        vt_err_set(e, "InvalidArgument", "empty %s", what[kind]);
        return -1;
    }
    if (memchr(s, '\0', len)) {
        vt_err_set(e, "InvalidArgument", "%s contains a NUL byte", what[kind]);
        return -1;
    }
    switch (kind) {
    case VT_KIND_FILE: return push_file_id(L, s, len, e);
    case VT_KIND_URL: return push_url_id(L, s, len, e);
    case VT_KIND_DOMAIN: return push_domain_id(L, s, len, e);
    case VT_KIND_IP: return push_ip_id(L, s, len, e);
    default: return push_analysis_id(L, s, len, e);
    }
}

int vt_push_object_path(lua_State *L, vt_kind kind, int idx, vt_err *e)
{
    if (vt_push_object_id(L, kind, idx, e) != 0)
        return -1;
    lua_pushfstring(L, "/%s/%s", kind_collections[kind], lua_tostring(L, -1));
    lua_remove(L, -2);
    return 0;
}

/* ------------------------------------------------------------- Lua binding */

/* Like luaL_checklstring but refuses numbers: SPEC 3.3 has a wrong type raise,
 * and a number is never a hash, URL or address. */
static const char *check_string(lua_State *L, int arg, size_t *len)
{
    if (lua_type(L, arg) != LUA_TSTRING)
        luaL_typeerror(L, arg, "string");
    return lua_tolstring(L, arg, len);
}

/***
The v3 identifier of a URL, as in `/api/v3/urls/{id}`: its URL-safe base64 (RFC 4648 section 5)
without padding. The URL is encoded byte for byte, as given: refang it first if it may be
defanged.
@function url_id
@tparam string url the URL (any bytes, NUL included)
@treturn string the identifier (`""` for `""`)
@raise when `url` is not a string (a number is refused too)
@usage vt.url_id("http://example.com/") --> "aHR0cDovL2V4YW1wbGUuY29tLw"
*/
static int l_url_id(lua_State *L)
{
    size_t len;
    const char *url = check_string(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (len + 2) / 3 * 4 + 1);
    luaL_pushresultsize(&b, vt_base64url(url, len, out));
    return 1;
}

/***
The kind of a file hash, by its length, when it is all hexadecimal digits (either case).
@function hash_type
@tparam string s the text to judge
@treturn[1] string `"md5"` (32 digits), `"sha1"` (40) or `"sha256"` (64)
@return[2] nil when `s` is not one of these
@raise when `s` is not a string
*/
static int l_hash_type(lua_State *L)
{
    size_t len;
    const char *s = check_string(L, 1, &len);
    const char *name = vt_hash_name(vt_hash_kind_of(s, len));
    if (name)
        lua_pushstring(L, name);
    else
        luaL_pushfail(L);
    return 1;
}

/***
Undoes the usual defanging of indicators, in one pass over the text: `[.]`, `(.)`, `{.}`,
`[dot]`, `(dot)`, `{dot}` become `.`; `[:]` becomes `:` and `[://]` becomes `://`; `[@]` and
`[at]` become `@`; the schemes `hxxp`, `hxxps` and `fxp` become `http`, `https` and `ftp` when they
are a whole word followed by `:` or `[`. Letters may be in either case. Anything else is left
as it is.
@function refang
@tparam string s the defanged text
@treturn string the text with every defanged token restored
@raise when `s` is not a string
@usage vt.refang("hxxps://evil[.]example/x") --> "https://evil.example/x"
*/
static int l_refang(lua_State *L)
{
    size_t len;
    const char *s = check_string(L, 1, &len);
    vt_push_refanged(L, s, len);
    return 1;
}

/***
The version of a literal IP address. IPv4 is four decimal octets without leading zeros
(`010.1.1.1` is refused: tools read it as octal or as decimal); IPv6 is any RFC 4291 text form,
an IPv4 tail included. Zone ids, brackets, ports, prefixes and spaces are refused.
@function ip_version
@tparam string s the text to judge
@treturn[1] integer `4` or `6`
@return[2] nil when `s` is not an IP address
@raise when `s` is not a string
*/
static int l_ip_version(lua_State *L)
{
    size_t len;
    const char *s = check_string(L, 1, &len);
    int version = vt_ip_version_of(s, len);
    if (version)
        lua_pushinteger(L, version);
    else
        luaL_pushfail(L);
    return 1;
}

/***
The canonical id of an indicator, or why it is not one: the one definition of a valid hash,
URL, domain and IP address, which every client call and both playbook layers use.
@function normalize
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"` (also `"files"`, `"urls"`,
`"domains"`, `"ip_addresses"`)
@tparam string s the indicator, as it came (trimmed and refanged here)
@treturn[1] string the lower-case hash, the URL's id, the lower-case domain, or the address
@treturn[2] nil
@treturn[2] table an `InvalidArgument` error naming what is wrong
@raise when `kind` is not a kind or `s` is not a string
*/
static int l_normalize(lua_State *L)
{
    vt_kind kind = vt_kind_check(L, 1, false);
    vt_err e;
    if (vt_push_object_id(L, kind, 2, &e) != 0)
        return vt_err_return(L, &e);
    return 1;
}

/***
Whether an IP address is one VirusTotal cannot know about: RFC 1918 private networks, loopback,
link-local, "this network" (`0.0.0.0/8`), shared address space (`100.64.0.0/10`), IPv6
unspecified, unique local (`fc00::/7`), and IPv4-mapped IPv6 addresses of these.
@function is_private_ip
@tparam string s the address
@treturn boolean `true` when private; `false` for a public address and for text that is not
an address
@raise when `s` is not a string
*/
static int l_is_private_ip(lua_State *L)
{
    size_t len;
    const char *s = check_string(L, 1, &len);
    lua_pushboolean(L, vt_is_private_ip_str(s, len));
    return 1;
}

void vt_indicators_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"url_id", l_url_id},
        {"hash_type", l_hash_type},
        {"refang", l_refang},
        {"ip_version", l_ip_version},
        {"is_private_ip", l_is_private_ip},
        {"normalize", l_normalize},
        {NULL, NULL},
    };
    luaL_setfuncs(L, funcs, 0);
}
