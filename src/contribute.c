/* Contributions: c:add_comment and c:vote, what a user adds to an object on VirusTotal
 * (POST /{collection}/{id}/comments and /votes). Everything is checked before any request,
 * and neither is sent twice: a comment or a vote that went out without an answer (a cut, a
 * timeout) may have been taken, so it is retried only when it was never sent, or when the
 * service answered that it was not (429, 5xx). */

/*** @module vt */
#include "client.h"

#include <string.h>

/* Stack: 1 client, 2 kind, 3 id, 4 the text or the verdict. Posts {"data": {"type": type,
 * "attributes": {field: <argument 4>}}} to the object's collection `what`; returns the
 * created object, or nil, err. */
static int contribute(lua_State *L, vt_client *c, const char *what, const char *type, const char *field)
{
    vt_err e;
    vt_kind kind = vt_kind_check(L, 2, false);
    if (vt_push_object_path(L, kind, 3, &e) != 0) /* 5 */
        return vt_err_return(L, &e);
    lua_pushfstring(L, "%s/%s", lua_tostring(L, 5), what); /* 6 */
    lua_createtable(L, 0, 1);                              /* 7: the body */
    lua_createtable(L, 0, 2);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, field);
    lua_setfield(L, -2, "attributes");
    lua_setfield(L, -2, "data");
    vt_json_encode(L, 7); /* 8 */
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "POST", lua_tostring(L, 6), NULL);
    j->body = vt_dup_lua(L, 8, &j->body_len);
    vt_job_add_header(L, j, "Content-Type: application/json");
    j->once = true;
    return vt_client_await_data(L, c, VT_SHAPE_OBJECT);
}

/*** The client's methods (`vt.client` makes one).
@type client
*/

/***
Adds a comment to an object. Everything is checked before any request: the kind, the id (as
`vt.normalize` reads it: refanged, trimmed) and the text. A comment is not sent twice: after a
cut connection or a timeout (it may have been taken) the call fails instead of retrying; after a
429 or 5xx answer it is retried like any call.
@function client:add_comment
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"` (or their collection names)
@tparam string id the object: a hash, a URL (or its id), a domain, an address
@tparam string text the comment, UTF-8 and not blank; `#words` become its tags
@treturn[1] table the comment the service made (`type` `"comment"`, `id`, `attributes.text`,
`attributes.date`, `attributes.tags`, ...)
@treturn[2] nil
@treturn[2] table the error value: `InvalidArgument` for a malformed id or text (no request),
else the service's (`NotFoundError`, ...)
@raise when `kind` is not a kind, or `id` or `text` is not a string
@usage local cm = assert(c:add_comment("domain", "evil[.]example", "Phishing kit, #credential-theft"))
*/
static int client_add_comment(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind_check(L, 2, false);
    vt_checkstring(L, 3, NULL);
    size_t len, trimmed;
    const char *text = vt_checkstring(L, 4, &len);
    lua_settop(L, 4);
    vt_trim(text, len, &trimmed);
    if (trimmed == 0 || memchr(text, '\0', len) || !vt_is_utf8(text, len))
        return vt_fail(L, "InvalidArgument", "a comment is UTF-8 text, not blank, without NUL bytes");
    return contribute(L, c, "comments", "comment", "text");
}

/***
Votes on an object, `"harmless"` or `"malicious"`. Checked before any request like
`add_comment`, and not sent twice either.
@function client:vote
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"`
@tparam string id the object
@tparam string verdict `"harmless"` or `"malicious"`
@treturn[1] table the vote the service recorded (`type` `"vote"`, `attributes.verdict`,
`attributes.value`: 1 or -1, `attributes.date`)
@treturn[2] nil
@treturn[2] table the error value: `InvalidArgument` for a malformed id or another verdict (no
request), else the service's
@raise when `kind` is not a kind, or `id` or `verdict` is not a string
@usage c:vote("ip", "203.0.113.7", "malicious")
*/
static int client_vote(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    vt_kind_check(L, 2, false);
    vt_checkstring(L, 3, NULL);
    size_t len;
    const char *verdict = vt_checkstring(L, 4, &len);
    lua_settop(L, 4);
    /* by length too: "harmless\0junk" is no verdict */
    if (!(len == 8 && memcmp(verdict, "harmless", 8) == 0) && !(len == 9 && memcmp(verdict, "malicious", 9) == 0)) {
        vt_err e;
        vt_malformed(&e, "a verdict (\"harmless\" or \"malicious\")", verdict, len);
        return vt_err_return(L, &e);
    }
    return contribute(L, c, "votes", "vote", "verdict");
}

void vt_contribute_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"add_comment", client_add_comment},
        {"vote", client_vote},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
