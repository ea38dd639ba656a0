/* What the client makes of an answer, on any status, labels and body: the error mapping of
 * src/result.c (code, message, http, retry_after from the status and the error body), the
 * shape checks of src/shape.c for every kind of call and the v2 report check, and the raw
 * structure scanner against what the JSON decoder made of the same text. The key never
 * appears in a message; every message is one line of printable text; a shape check never
 * raises and leaves the stack as it found it.
 * Input: a status selector, a flags byte (v2, a Retry-After, the Content-Type), the body. */
#include "harness.h"
#include "client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const long statuses[] = {200, 201, 204, 302, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504, 599};
static const char *const content_types[] = {"application/json; charset=utf-8", "application/json",
                                            "text/html; charset=utf-8", "", "APPLICATION/JSON"};
static const char key[] = "6f2b1c9e0d4a8b7c3e5f1a2b9c8d7e6f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d";

/* The body with every occurrence of the key replaced, left to right. */
static char *without_key(const char *body, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0, klen = sizeof key - 1;
    for (size_t i = 0; i < len;) {
        if (len - i >= klen && memcmp(body + i, key, klen) == 0) {
            memcpy(out + n, "***", 3);
            n += 3;
            i += klen;
        } else
            out[n++] = body[i++];
    }
    out[n] = '\0';
    return out;
}

/* body: the answer's raw bytes, when they hold no JSON escape (a message decoded from one
 * may hold what the raw bytes do not). */
static void check_message(const vt_err *e, const char *body, size_t len)
{
    fuzz_check(e->code[0] != '\0', "an error has a code");
    for (const char *p = e->code; *p; p++)
        fuzz_check((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                   (*p && strchr("_-.", *p)), "a code is a word");
    size_t n = strnlen(e->message, sizeof e->message);
    fuzz_check(n < sizeof e->message, "message terminated");
    for (size_t i = 0; i < n; i++)
        fuzz_check((unsigned char)e->message[i] >= 32 && e->message[i] != 127, "message printable, one line");
    fuzz_check(strstr(e->message, key) == NULL, "the key never shows");
    if (body && !memchr(body, '\\', len)) {
        /* a piece of the key shows only where the answer had that piece outside the key */
        char *rest = without_key(body, len);
        for (size_t k = 0; k + 16 <= sizeof key - 1; k++) {
            char piece[17];
            memcpy(piece, key + k, 16);
            piece[16] = '\0';
            fuzz_check(!strstr(e->message, piece) || memmem(rest, strlen(rest), piece, 16),
                       "no piece of a key that was in the answer shows");
        }
        free(rest);
    }
    fuzz_check(e->retry_after == -1 || (isfinite(e->retry_after) && e->retry_after >= 0 &&
                                        e->retry_after <= VT_RETRY_AFTER_MAX), "retry_after within a day");
}

/* The scanner's view of data agrees with the decoded body at idx. */
static void check_view(lua_State *L, int idx, const vt_json_view *v)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) > 0) {
        fuzz_check(v->data == VT_JSON_NONE, "no data outside an object");
        return;
    }
    int t = lua_getfield(L, idx, "data");
    switch (v->data) {
    case VT_JSON_NONE: fuzz_check(t == LUA_TNIL, "data seen where the decoder found it"); break;
    case VT_JSON_OBJECT: fuzz_check(t == LUA_TTABLE && lua_rawlen(L, -1) == 0, "data an object"); break;
    case VT_JSON_ARRAY: fuzz_check(t == LUA_TTABLE, "data a list"); break;
    case VT_JSON_STRING: fuzz_check(t == LUA_TSTRING, "data a string"); break;
    case VT_JSON_NUMBER: fuzz_check(t == LUA_TNUMBER, "data a number"); break;
    case VT_JSON_LITERAL: fuzz_check(t == LUA_TBOOLEAN || t == LUA_TLIGHTUSERDATA, "data a literal"); break;
    }
    if (v->attributes_array && v->data == VT_JSON_OBJECT) {
        bool keyed = false;
        int a = lua_getfield(L, -1, "attributes");
        if (a == LUA_TTABLE) {
            lua_pushnil(L);
            while (!keyed && lua_next(L, -2)) {
                keyed = lua_type(L, -2) == LUA_TSTRING;
                lua_pop(L, keyed ? 2 : 1);
            }
        }
        fuzz_check(a == LUA_TTABLE && !keyed, "attributes seen as a list are one");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    lua_State *L = fuzz_lua();
    vt_client c;
    memset(&c, 0, sizeof c);
    c.apikey = (char *)key;
    c.apikey_len = sizeof key - 1;
    vt_job j;
    vt_job_init(&j);
    j.status = statuses[data[0] % (sizeof statuses / sizeof *statuses)];
    j.v2 = data[1] & 1;
    j.retry_after_hdr = (data[1] & 2) ? (double)(data[1] >> 2) : -1;
    const char *type = content_types[(data[1] >> 4) % (sizeof content_types / sizeof *content_types)];
    j.json = strncasecmp(type, "application/json", 16) == 0; /* as transfer.c reads it */
    j.content_type = j.json || !*type ? NULL : strdup(type);
    j.resp_len = size - 2;
    j.resp = malloc(j.resp_len + 1); /* as the engine keeps it: NUL-terminated */
    memcpy(j.resp, data + 2, j.resp_len);
    j.resp[j.resp_len] = '\0';

    vt_err e;
    if (vt_client_job_error(L, &c, &j, &e)) {
        check_message(&e, j.resp, j.resp_len);
    } else if (j.resp_len > 0) {
        if (vt_json_decode(L, j.resp, j.resp_len, &e) == 0) {
            vt_json_view v;
            if (vt_json_view_of(j.resp, j.resp_len, &v) == 0)
                check_view(L, -1, &v);
            for (int shape = VT_SHAPE_OBJECT; shape <= VT_SHAPE_STRING; shape++) {
                int top = lua_gettop(L);
                if (vt_check_shape(L, -1, j.resp, j.resp_len, (vt_shape)shape, &e) != 0)
                    check_message(&e, NULL, 0);
                fuzz_check(lua_gettop(L) == top, "a shape check leaves the stack as it was");
            }
            if (vt_check_v2_reports(L, -1, &e) != 0)
                check_message(&e, NULL, 0);
        } else
            check_message(&e, NULL, 0);
    }
    vt_job_reset(&j);
    fuzz_done(L);
    return 0;
}
