/* Results: a finished job becomes Lua values here, the decoded body or nil
 * and an error value (the service's code where it sent one, the key scrubbed). */
#include "client.h"

#include <stdio.h>
#include <string.h>

/* ----------------------------------------------------- results and errors */

/* Copies text into out with the key replaced BEFORE any cut: a key straddling
 * the cut would otherwise survive in part. Non-printable bytes become spaces. */
static void copy_redacted(lua_State *L, vt_client *c, const char *text, size_t len, char *out, size_t cap)
{
    lua_pushlstring(L, text, len);
    lua_pushlstring(L, c->apikey, c->apikey_len);
    const char *clean = luaL_gsub(L, lua_tostring(L, -2), lua_tostring(L, -1), "***");
    size_t n = 0;
    for (; clean[n] && n + 1 < cap; n++)
        out[n] = ((unsigned char)clean[n] >= 32 && clean[n] != 127) ? clean[n] : ' ';
    out[n] = '\0';
    lua_pop(L, 3);
}

void vt_client_redacted_message(lua_State *L, vt_client *c, int idx, vt_err *e)
{
    size_t len;
    const char *m = lua_tolstring(L, idx, &len);
    copy_redacted(L, c, m, len, e->message, sizeof e->message);
}

/* The service's code for an HTTP status, for errors that came without one
 * (v2 answers by status alone; proxies answer in HTML). */
static const char *code_for_status(long status)
{
    switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationRequiredError";
    case 403: return "ForbiddenError";
    case 404: return "NotFoundError";
    case 409: return "AlreadyExistsError";
    case 413: return "TooLarge";
    case 424: return "FailedDependencyError";
    case 429: return "TooManyRequestsError";
    case 504: return "DeadlineExceededError";
    default: return status >= 500 ? "TransientError" : "BadRequestError";
    }
}

/* A code as the service writes them ("NotFoundError"): 1 to 47 letters, digits, '_', '-' or
 * '.'. Anything else in a body (empty, a line break, a sentence) leaves the status's code. */
static bool is_code(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len == 0 || len >= sizeof ((vt_err *)0)->code)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

bool vt_client_job_error(lua_State *L, vt_client *c, vt_job *j, vt_err *e)
{
    if (j->err.code[0]) {
        *e = j->err;
    } else if (j->status >= 200 && j->status < 300 && !(j->v2 && j->status == 204)) {
        if (j->sink == VT_SINK_FILE || j->json || j->resp_len == 0)
            return false;
        vt_err_set(e, "InvalidResponse", "expected JSON from %s, got '%s' (HTTP %ld)",
                   j->v2 ? "v2" : "v3", j->content_type ? j->content_type : "no Content-Type", j->status);
        e->http = j->status;
    } else if (j->status >= 300 && j->status < 400) {
        /* API calls follow no redirect: the key would go along (downloads follow their own) */
        vt_err_set(e, "InvalidResponse", "the service answered with a redirect (HTTP %ld) to '%.300s', "
                   "which an API call does not follow", j->status, j->location ? j->location : "nowhere");
        e->http = j->status;
    } else if (j->v2 && j->status == 204) {
        vt_err_set(e, "QuotaExceededError", "v2 request rate or quota exceeded (HTTP 204)");
        e->http = 204;
    } else {
        char excerpt[161];
        vt_err_set(e, code_for_status(j->status), "HTTP %ld", j->status);
        if (j->json && j->resp_len > 0) {
            vt_err jerr;
            int top = lua_gettop(L);
            if (vt_json_decode(L, j->resp, j->resp_len, &jerr) == 0 && lua_istable(L, -1) &&
                lua_getfield(L, -1, "error") == LUA_TTABLE) {
                if (lua_getfield(L, -1, "code") == LUA_TSTRING && is_code(L, -1))
                    snprintf(e->code, sizeof e->code, "%s", lua_tostring(L, -1));
                if (lua_getfield(L, -2, "message") == LUA_TSTRING)
                    vt_client_redacted_message(L, c, -1, e);
            }
            lua_settop(L, top);
        } else if (j->resp_len > 0) {
            /* the whole (bounded) body is redacted, then cut */
            size_t scan = j->resp_len < 4096 + c->apikey_len ? j->resp_len : 4096 + c->apikey_len;
            copy_redacted(L, c, j->resp, scan, excerpt, sizeof excerpt);
            snprintf(e->message, sizeof e->message, "HTTP %ld: %s", j->status, excerpt);
        }
        e->http = j->status;
    }
    if (!j->err.code[0] && j->retry_after_hdr >= 0 && e->http >= 400)
        e->retry_after = j->retry_after_hdr;
    if (j->v2 && j->status == 204 && j->retry_after_hdr >= 0)
        e->retry_after = j->retry_after_hdr;
    vt_redact(e->message, sizeof e->message, c->apikey, c->apikey_len);
    return true;
}

static int job_result(lua_State *L, vt_client *c, vt_job *j)
{
    vt_err e;
    if (vt_client_job_error(L, c, j, &e))
        return vt_err_return(L, &e);
    if (j->resp_len == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (vt_json_decode(L, j->resp, j->resp_len, &e) != 0) {
        e.http = j->status;
        return vt_err_return(L, &e);
    }
    return 1;
}

int vt_client_result(lua_State *L, vt_client *c, vt_job *j)
{
    int n = job_result(L, c, j);
    if (j->cache.key && !vt_cache_settle(L, c->policy.cache, j, n, c->apikey, c->apikey_len))
        return -1;
    return n;
}

int vt_client_data_result(lua_State *L, vt_client *c, vt_job *j, vt_shape shape, bool keep_meta)
{
    int n = vt_client_result(L, c, j);
    if (n != 1)
        return n;
    vt_err e;
    if (j->resp_len == 0)
        vt_err_set(&e, "InvalidResponse", "the answer is empty (HTTP %ld) where data was expected", j->status);
    if (j->resp_len == 0 || vt_check_shape(L, -1, j->resp, j->resp_len, shape, &e) != 0) {
        e.http = j->status;
        return vt_err_return(L, &e);
    }
    lua_getfield(L, -1, "data");
    if (keep_meta) {
        lua_getfield(L, -2, "meta");
        lua_setfield(L, -2, "meta");
    }
    lua_remove(L, -2); /* the body */
    vt_object_adopt(L, -1);
    return 1;
}

