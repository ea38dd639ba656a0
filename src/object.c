/* Objects: the small metatable every v3 object from a look-up or an iterator carries, so that
 * it reads well at a REPL (SPEC 9): tostring gives one line, and an attribute reads as a field
 * of its own (obj.last_analysis_stats) when the top level has no such key, as vt-py's objects
 * do. The table stays the service's JSON: no field is added, so pairs and vt.encode (which
 * iterate raw) see exactly what the service sent. */
#include "vt.h"

#include <string.h>
#include <time.h>

#define ELLIPSIS "\xE2\x80\xA6"
#define SHORT_ID 8      /* characters shown of a file's hash, a URL's or an analysis' id */
#define MAX_ID 80       /* bytes shown of other ids (names, comment ids) */
#define MAX_TEXT 60     /* bytes of a URL or a comment shown */

/* The registry key of the metatable (its address; lua_rawgetp is one lookup). */
static const char object_mt_key = 0;

/* obj[k] for a key the top level lacks: obj.attributes[k]. Raw accesses only: this runs for
 * every missing key, and must never recurse into itself. */
static int object_index(lua_State *L)
{
    lua_pushliteral(L, "attributes");
    if (lua_rawget(L, 1) != LUA_TTABLE)
        return 0;
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* t[key] raw, pushed; its type. */
static int raw_field(lua_State *L, int t, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

/* The stack index of t[key] when it is a table (pushed), else 0 (nothing pushed); t 0 is none. */
static int table_field(lua_State *L, int t, const char *key)
{
    if (t == 0)
        return 0;
    if (raw_field(L, t, key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    return lua_gettop(L);
}

/* t[key] as an integer (0 when absent or not one; t 0 is none). */
static lua_Integer int_field(lua_State *L, int t, const char *key)
{
    if (t == 0)
        return 0;
    raw_field(L, t, key);
    lua_Integer v = lua_tointegerx(L, -1, NULL);
    lua_pop(L, 1);
    return v;
}

/* Pushes at most max bytes of s (never half a UTF-8 sequence; controls become spaces, so the
 * summary stays one line), with an ellipsis when s was longer. */
static void push_cut(lua_State *L, const char *s, size_t len, size_t max)
{
    size_t n = len;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++)
        luaL_addchar(&b, (unsigned char)s[i] < 32 || s[i] == 127 ? ' ' : s[i]);
    if (n < len)
        luaL_addstring(&b, ELLIPSIS);
    luaL_pushresult(&b);
}

/* Pushes `before` and t[key] cut to max bytes when t[key] is a string; returns whether it was. */
static bool push_string_field(lua_State *L, int t, const char *key, const char *before, size_t max)
{
    if (t == 0)
        return false;
    if (raw_field(L, t, key) != LUA_TSTRING) {
        lua_pop(L, 1);
        return false;
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lua_pushstring(L, before);
    push_cut(L, s, len, max);
    lua_remove(L, -3);
    return true;
}

/* Pushes ", last analysis YYYY-MM-DD" (UTC) of an epoch, or nothing for none. */
static void push_last_analysis(lua_State *L, lua_Integer epoch)
{
    char day[16];
    struct tm tm;
    time_t t = (time_t)epoch;
    if (epoch > 0 && gmtime_r(&t, &tm) && strftime(day, sizeof day, "%Y-%m-%d", &tm) > 0)
        lua_pushfstring(L, ", last analysis %s", day);
}

/* Pushes " 53/62 malicious" from stats (of the four categories that are verdicts, as the
 * playbook layers count), or " not analysed" without any. */
static void push_stats(lua_State *L, int stats)
{
    lua_Integer malicious = int_field(L, stats, "malicious");
    lua_Integer total = malicious + int_field(L, stats, "suspicious") + int_field(L, stats, "undetected") +
                        int_field(L, stats, "harmless");
    if (total > 0)
        lua_pushfstring(L, " %I/%I malicious", malicious, total);
    else
        lua_pushliteral(L, " not analysed");
}

/* Entries of table t. */
static lua_Integer count_entries(lua_State *L, int t)
{
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* The one-line summary, "file 001015aa… doc 53/62 malicious, last analysis 2020-04-10": the
 * pieces are pushed in order and joined. What the object lacks is left out; no shape raises. */
static int object_tostring(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (raw_field(L, 1, "type") != LUA_TSTRING) { /* 2 */
        lua_pop(L, 1);
        lua_pushliteral(L, "object");
    }
    if (raw_field(L, 1, "id") != LUA_TSTRING) { /* 3 */
        lua_pop(L, 1);
        lua_pushliteral(L, "?");
    }
    int attrs = table_field(L, 1, "attributes"); /* 4 when a table */
    const char *type = lua_tostring(L, 2);
    bool is_file = strcmp(type, "file") == 0, is_url = strcmp(type, "url") == 0;
    bool is_place = strcmp(type, "domain") == 0 || strcmp(type, "ip_address") == 0;
    bool is_analysis = strcmp(type, "analysis") == 0, is_comment = strcmp(type, "comment") == 0;
    int stats = table_field(L, attrs, is_analysis ? "stats" : "last_analysis_stats");
    int results = is_analysis ? table_field(L, attrs, "results") : 0;
    lua_Integer date = int_field(L, attrs, "last_analysis_date");
    int first = lua_gettop(L) + 1;

    lua_pushvalue(L, 2);
    if (!(is_url && push_string_field(L, attrs, "url", " ", MAX_TEXT))) {
        size_t idlen;
        const char *id = lua_tolstring(L, 3, &idlen);
        lua_pushliteral(L, " ");
        /* a hash or an analysis id is recognised by its start; names are read whole */
        push_cut(L, id, idlen, is_file || is_url || is_analysis ? SHORT_ID : MAX_ID);
    }
    if (is_file)
        push_string_field(L, attrs, "type_tag", " ", 32);
    if (is_analysis) {
        push_string_field(L, attrs, "status", " ", 32);
        if (results)
            lua_pushfstring(L, " %I results", count_entries(L, results));
        if (stats)
            lua_pushfstring(L, ", %I malicious", int_field(L, stats, "malicious"));
    } else if (is_file || is_url || is_place) {
        push_stats(L, stats);
        push_last_analysis(L, date);
    } else if (is_comment) {
        push_string_field(L, attrs, "text", ": ", MAX_TEXT);
    }
    lua_concat(L, lua_gettop(L) - first + 1);
    return 1;
}

bool vt_object_adopt(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return false;
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    bool object = raw_field(L, idx, "type") == LUA_TSTRING && raw_field(L, idx, "id") == LUA_TSTRING;
    lua_settop(L, top);
    if (object) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &object_mt_key);
        lua_setmetatable(L, idx);
    }
    return object;
}

void vt_object_open(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &object_mt_key) == LUA_TTABLE) {
        lua_pop(L, 1); /* made by an earlier luaopen_vt in this state */
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, object_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, object_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &object_mt_key);
}
