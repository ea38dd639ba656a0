/* Collections: iterators over relationships, comments and search results
 * (pages fetched by cursor as the loop goes), and the user's quotas. */
/*** @module vt */
#include "client.h"

#include <string.h>

/* ----------------------------------------------------------- collections */

/* Iterator state, upvalue 1 of the iterator closure; upvalue 2 is the client. */
typedef struct collection {
    lua_Integer limit, max, count, index, page_len;
    bool fetched, done;
    int of_kind; /* the kind of the object whose relationship this is; -1: pages not kept */
} collection;

/* Raises e's error value: a call that returns an iterator fails the way iterators do, as a
 * `for` loop cannot take nil, err ("attempt to call a nil value" otherwise). */
static int iterator_fails(lua_State *L, const vt_err *e)
{
    vt_err_push(L, e);
    return lua_error(L);
}

/* Takes the fetched page (the job on the stack top) into the upvalues; false when a corrupt
 * cache entry made the job ask again (it is on the stack top again). */
static bool collection_take_page(lua_State *L, vt_client *c, collection *it)
{
    vt_job *j = lua_touserdata(L, -1);
    vt_err e;
    int n = vt_client_result(L, c, j);
    if (n < 0)
        return false;
    if (n == 2) {
        it->done = true;
        lua_error(L); /* a for loop would drop nil, err: raise the error value */
    }
    if (vt_check_shape(L, -1, j->resp, j->resp_len, VT_SHAPE_LIST, &e) != 0) {
        it->done = true;
        e.http = j->status;
        iterator_fails(L, &e);
    }
    it->fetched = true;
    it->index = 0;
    lua_getfield(L, -1, "data");
    it->page_len = (lua_Integer)lua_rawlen(L, -1);
    lua_replace(L, lua_upvalueindex(5));
    if (lua_getfield(L, -1, "meta") == LUA_TTABLE && lua_getfield(L, -1, "cursor") == LUA_TSTRING &&
        lua_rawlen(L, -1) > 0)
        lua_replace(L, lua_upvalueindex(6));
    else {
        lua_pushnil(L);
        lua_replace(L, lua_upvalueindex(6));
    }
    if (it->page_len == 0)
        it->done = true;
    lua_settop(L, 0);
    return true;
}

static int collection_step(lua_State *L, int status, lua_KContext fetched)
{
    vt_client *c = vt_client_check(L, lua_upvalueindex(1));
    collection *it = lua_touserdata(L, lua_upvalueindex(2));
    if (fetched && !collection_take_page(L, c, it))
        return vt_client_await(L, c, lua_upvalueindex(1), -1, 1, 1, collection_step);
    if (it->done || it->count >= it->max)
        return 0;
    if (it->index < it->page_len) {
        it->index++;
        it->count++;
        lua_rawgeti(L, lua_upvalueindex(5), it->index);
        vt_object_adopt(L, -1);
        return 1;
    }
    if (it->fetched && lua_isnil(L, lua_upvalueindex(6))) {
        it->done = true;
        return 0;
    }
    /* next page: base query + limit + cursor */
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, lua_upvalueindex(4))) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    lua_pushinteger(L, it->limit);
    lua_setfield(L, -2, "limit");
    lua_pushvalue(L, lua_upvalueindex(6));
    lua_setfield(L, -2, "cursor");
    vt_push_query(L, -1);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, lua_upvalueindex(3)), lua_tostring(L, -2));
    if (it->of_kind >= 0) /* a relationship's pages are kept for its object's TTL */
        vt_cache_key_page(c->policy.cache, j, (vt_kind)it->of_kind, lua_tostring(L, lua_upvalueindex(3)),
                          (long long)it->limit, lua_tostring(L, lua_upvalueindex(6)));
    return vt_client_await(L, c, lua_upvalueindex(1), -1, 1, 1, collection_step);
}

/* Iterator upvalues: 1 client, 2 state userdata, 3 path, 4 base query table,
 * 5 current page (table), 6 next cursor (string or nil). */
static int collection_next(lua_State *L)
{
    lua_settop(L, 0);
    return collection_step(L, LUA_OK, 0);
}

/* Pushes an iterator over the collection at path (pushed by the caller at
 * path_idx), with opts (limit, max, cursor) at opts_idx and the base query
 * table at query_idx; of_kind: the kind of the object whose relationship it is, or -1 for
 * pages the cache does not keep (comments change as c:add_comment adds one; searches). */
static int push_collection(lua_State *L, int path_idx, int opts_idx, int query_idx, int of_kind)
{
    static const char *const keys[] = {"limit", "max", "cursor", NULL};
    vt_check_opts(L, opts_idx, "collection", keys);
    lua_pushvalue(L, 1); /* client */
    collection *it = lua_newuserdatauv(L, sizeof *it, 0);
    memset(it, 0, sizeof *it);
    it->limit = vt_opt_integer(L, opts_idx, "limit", 10, 1);
    it->max = vt_opt_integer(L, opts_idx, "max", LUA_MAXINTEGER, 0);
    it->of_kind = of_kind;
    lua_pushvalue(L, path_idx);
    lua_pushvalue(L, query_idx);
    lua_newtable(L); /* page */
    if (lua_istable(L, opts_idx))
        lua_getfield(L, opts_idx, "cursor");
    else
        lua_pushnil(L);
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "option 'cursor' must be a string");
    size_t cursor_len;
    const char *cursor = lua_tolstring(L, -1, &cursor_len);
    if (cursor && memchr(cursor, '\0', cursor_len)) { /* no cursor of the service's holds one */
        vt_err e;
        vt_malformed(&e, "a cursor", cursor, cursor_len);
        return iterator_fails(L, &e);
    }
    lua_pushcclosure(L, collection_next, 6);
    return 1;
}

#define RELATIONSHIP_MAX 64 /* the service's names are under 40 characters */

/*** @type client */

/***
An iterator over the objects related to one: pages are fetched by cursor as the loop goes. A
page that fails **raises** the error value (a `for` loop cannot take `nil, err`), and so does a
malformed argument, at the call (no request). With the client's `cache`, a page is kept for
its object's `cache_ttl` (not the pages of `"comments"` and `"votes"`, which `client:add_comment`
and `client:vote` change) and identical pages in flight share one request.
@function client:related
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"`
@tparam string id the object's hash, URL, domain or address
@tparam string relationship e.g. `"communicating_files"`, `"resolutions"`
@tparam[opt] table opts `limit` (per page, default 10), `max` (objects in all), `cursor` (to go on)
@treturn function the iterator, giving one object at a time
@raise on a wrong type or option; the error value `InvalidArgument` for a malformed id or
relationship name (no request); from the iterator, the error value of a page that failed
@usage for f in c:related("ip", "1.1.1.1", "communicating_files", {max = 30}) do print(f.id) end
*/
static int client_related(lua_State *L)
{
    vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    size_t rlen;
    const char *rel = vt_checkstring(L, 4, &rlen);
    lua_settop(L, 5);
    vt_err e;
    bool named = rlen > 0 && rlen <= RELATIONSHIP_MAX;
    for (size_t i = 0; i < rlen && named; i++)
        named = (rel[i] >= 'a' && rel[i] <= 'z') || (rel[i] >= '0' && rel[i] <= '9') || rel[i] == '_';
    if (!named) {
        vt_malformed(&e, "a relationship name", rel, rlen);
        return iterator_fails(L, &e);
    }
    if (vt_push_object_path(L, kind, 3, &e) != 0) /* 6 */
        return iterator_fails(L, &e);
    lua_pushfstring(L, "%s/%s", lua_tostring(L, 6), rel); /* 7 */
    lua_newtable(L);                                     /* 8 */
    /* comments and votes are relationships too, which c:add_comment and c:vote change */
    bool changed_here = strcmp(rel, "comments") == 0 || strcmp(rel, "votes") == 0;
    return push_collection(L, 7, 5, 8, changed_here ? -1 : (int)kind);
}

/***
An iterator over the comments on an object, as `client:related` iterates.
@function client:comments
@tparam string kind `"file"`, `"url"`, `"domain"` or `"ip"`
@tparam string id the object's hash, URL, domain or address
@tparam[opt] table opts `limit`, `max`, `cursor`
@treturn function the iterator, giving one comment object at a time
@raise on a wrong type or option; the error value `InvalidArgument` for a malformed id (no
request); from the iterator, the error value of a page that failed
*/
static int client_comments(lua_State *L)
{
    vt_client_check(L, 1);
    vt_kind kind = vt_kind_check(L, 2, false);
    lua_settop(L, 4);
    vt_err e;
    if (vt_push_object_path(L, kind, 3, &e) != 0) /* 5 */
        return iterator_fails(L, &e);
    lua_pushfstring(L, "%s/comments", lua_tostring(L, 5)); /* 6 */
    lua_newtable(L);                                      /* 7 */
    return push_collection(L, 6, 4, 7, -1);
}

/***
An iterator over the results of a search (VirusTotal's intelligence search syntax where the key
allows it), as `client:related` iterates.
@function client:search
@tparam string query the query
@tparam[opt] table opts `limit`, `max`, `cursor`
@treturn function the iterator
@raise on a wrong type or option; the error value `InvalidArgument` for an empty query or one
holding a NUL (no request); from the iterator, the error value of a page that failed
*/
static int client_search(lua_State *L)
{
    vt_client_check(L, 1);
    size_t qlen;
    const char *q = vt_checkstring(L, 2, &qlen);
    lua_settop(L, 3);
    if (qlen == 0 || strlen(q) != qlen) {
        vt_err e;
        vt_err_set(&e, "InvalidArgument", "search query is empty or contains a NUL byte");
        return iterator_fails(L, &e);
    }
    lua_pushliteral(L, "/search"); /* 4 */
    lua_newtable(L);               /* 5 */
    lua_pushvalue(L, 2);
    lua_setfield(L, 5, "query");
    return push_collection(L, 4, 3, 5, -1);
}

/***
A user's overall quotas. The service names the user in the path; without a user id the API key
is that name (the one request where the key leaves the header: the service offers no other way).
@function client:quotas
@tparam[opt] string user the user id
@treturn[1] table the quotas (`api_requests_daily`, ...)
@treturn[2] nil
@treturn[2] table the error value
*/
static int client_quotas(lua_State *L)
{
    vt_client *c = vt_client_check(L, 1);
    size_t ulen = 0;
    const char *user = lua_isnoneornil(L, 2) ? NULL : vt_checkstring(L, 2, &ulen);
    if (user && (ulen == 0 || strlen(user) != ulen))
        return vt_fail(L, "InvalidArgument", "user id is empty or contains a NUL byte");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "/users/");
    vt_add_escaped(&b, user ? user : c->apikey, user ? ulen : c->apikey_len);
    luaL_addstring(&b, "/overall_quotas");
    luaL_pushresult(&b);
    vt_job *j = vt_job_push(L);
    vt_client_prepare(L, c, j, "GET", lua_tostring(L, -2), NULL);
    return vt_client_await_data(L, c, VT_SHAPE_RECORD);
}

void vt_collections_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"related", client_related},
        {"comments", client_comments},
        {"search", client_search},
        {"quotas", client_quotas},
        {NULL, NULL},
    };
    luaL_setfuncs(L, methods, 0);
}
