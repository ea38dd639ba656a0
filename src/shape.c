/* What a successful answer must look like, call by call: a v3 body is an object whose `data`
 * is the object, the record, the list or the string the call asks for; a v2 body is a report
 * (or, for a batch, a list of them). Anything else is InvalidResponse, never a success.
 *
 * The decoder makes `[]` and `{}` alike (an empty table), so an empty decoded table cannot
 * tell `"attributes": []` from an object without attributes. Only then does a small scanner
 * read the structure of the raw text around `data` (vt_json_view_of): it follows JSON the
 * decoder has accepted already, never decodes a value, keeps no stack (a depth count), and
 * reads keys with their escapes, as the decoder does, taking the last of repeated keys. */
#include "vt.h"

#include <string.h>

/* ---------------------------------------------------------------- the scanner */

typedef struct scan {
    const char *p, *end;
} scan;

static void skip_space(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Past a string starting at its opening quote; false on a string without its end. */
static bool skip_string(scan *s)
{
    for (s->p++; s->p < s->end; s->p++) {
        if (*s->p == '\\')
            s->p++;
        else if (*s->p == '"') {
            s->p++;
            return true;
        }
    }
    return false;
}

static vt_json_kind kind_at(const scan *s)
{
    if (s->p >= s->end)
        return VT_JSON_NONE;
    switch (*s->p) {
    case '{': return VT_JSON_OBJECT;
    case '[': return VT_JSON_ARRAY;
    case '"': return VT_JSON_STRING;
    case 't': case 'f': case 'n': return VT_JSON_LITERAL;
    default: return VT_JSON_NUMBER;
    }
}

/* Past the value at s->p (nested ones by counting brackets outside strings). */
static bool skip_value(scan *s)
{
    vt_json_kind k = kind_at(s);
    if (k == VT_JSON_NONE)
        return false;
    if (k == VT_JSON_STRING)
        return skip_string(s);
    if (k != VT_JSON_OBJECT && k != VT_JSON_ARRAY) {
        while (s->p < s->end && !memchr(",]} \t\r\n", *s->p, 7))
            s->p++;
        return true;
    }
    size_t depth = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            if (!skip_string(s))
                return false;
            continue;
        }
        s->p++;
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0)
            return true;
    }
    return false;
}

/* Whether the string at s->p (a key, escapes and all) reads `name` (ASCII); moves past it,
 * *ok false when the string has no end. */
static bool key_is(scan *s, const char *name, bool *ok)
{
    const char *p = s->p + 1;
    *ok = skip_string(s);
    const char *close = s->p - 1;
    for (; *ok && p < close; name++) {
        unsigned code = (unsigned char)*p++;
        if (code == '\\') {
            char esc = *p++;
            if (esc == 'u') {
                code = 0;
                for (int i = 0; i < 4; i++) {
                    int d = p < close ? vt_hex_value(*p++) : -1;
                    if (d < 0)
                        return false;
                    code = code << 4 | (unsigned)d;
                }
            } else {
                static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
                const char *at = esc ? memchr(from, esc, 5) : NULL;
                code = (unsigned char)(at ? to[at - from] : esc);
            }
        }
        if (!*name || code != (unsigned char)*name)
            return false;
    }
    return *ok && !*name;
}

/* The value of the last member `name` of the object at s->p (value->p NULL when absent);
 * s->p ends past the object. Returns false on text it cannot follow. */
static bool find_member(scan *s, const char *name, scan *value)
{
    value->p = value->end = NULL;
    s->p++; /* '{' */
    skip_space(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return true;
    }
    while (s->p < s->end && *s->p == '"') {
        bool ok;
        bool match = key_is(s, name, &ok);
        if (!ok)
            return false;
        skip_space(s);
        if (s->p >= s->end || *s->p != ':')
            return false;
        s->p++;
        skip_space(s);
        if (match)
            *value = (scan){s->p, s->end};
        if (!skip_value(s))
            return false;
        skip_space(s);
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return true;
        }
        if (s->p >= s->end || *s->p != ',')
            return false;
        s->p++;
        skip_space(s);
    }
    return false;
}

/* Whether the object at s->p has a member "attributes" that is an array; moves past it. */
static bool attributes_array(scan *s, bool *ok)
{
    scan attrs;
    *ok = find_member(s, "attributes", &attrs);
    return *ok && attrs.p && kind_at(&attrs) == VT_JSON_ARRAY;
}

int vt_json_view_of(const char *text, size_t len, vt_json_view *v)
{
    *v = (vt_json_view){VT_JSON_NONE, false};
    scan s = {text, text + len}, data;
    skip_space(&s);
    if (kind_at(&s) != VT_JSON_OBJECT)
        return 0; /* no "data" in a body that is not an object */
    if (!find_member(&s, "data", &data))
        return -1;
    if (!data.p)
        return 0;
    v->data = kind_at(&data);
    bool ok = true;
    if (v->data == VT_JSON_OBJECT)
        v->attributes_array = attributes_array(&data, &ok);
    else if (v->data == VT_JSON_ARRAY) {
        data.p++; /* '[' */
        skip_space(&data);
        while (ok && data.p < data.end && *data.p != ']') {
            if (kind_at(&data) == VT_JSON_OBJECT)
                v->attributes_array |= attributes_array(&data, &ok);
            else
                ok = skip_value(&data);
            skip_space(&data);
            if (ok && data.p < data.end && *data.p == ',') {
                data.p++;
                skip_space(&data);
            } else if (data.p >= data.end || *data.p != ']')
                ok = false;
        }
    }
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ the decoded answer */

/* How a decoded value reads in a message. */
static const char *described(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return "missing";
    case LUA_TSTRING: return "a string";
    case LUA_TNUMBER: return "a number";
    case LUA_TBOOLEAN: return "a boolean";
    case LUA_TTABLE: return lua_rawlen(L, idx) > 0 ? "a list" : "an object";
    default: return "null";
    }
}

/* An object with a non-empty string type and id; attributes, when there, an object (the
 * raw view has said whether an empty one was a list). */
static int check_object(lua_State *L, int idx, const char *what, vt_err *e)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) > 0) {
        vt_err_set(e, "InvalidResponse", "%s is %s, not an object", what, described(L, idx));
        return -1;
    }
    int type = lua_getfield(L, idx, "type"), id = lua_getfield(L, idx, "id");
    int attrs = lua_getfield(L, idx, "attributes");
    bool attrs_ok = attrs == LUA_TNIL || (attrs == LUA_TTABLE && lua_rawlen(L, -1) == 0);
    bool named = type == LUA_TSTRING && lua_rawlen(L, -3) > 0 && id == LUA_TSTRING && lua_rawlen(L, -2) > 0;
    lua_pop(L, 3);
    if (!named) {
        vt_err_set(e, "InvalidResponse", "%s is an object without a type and an id", what);
        return -1;
    }
    if (!attrs_ok) {
        vt_err_set(e, "InvalidResponse", "%s has attributes that are not an object", what);
        return -1;
    }
    return 0;
}

static bool is_empty_table(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        return false;
    lua_pushnil(L);
    if (lua_next(L, idx) == 0)
        return true;
    lua_pop(L, 2);
    return false;
}

/* Whether the object's attributes decoded to an empty table: `{}` or `[]`, only the text says. */
static bool attributes_empty(lua_State *L, int idx)
{
    lua_getfield(L, idx, "attributes");
    bool empty = is_empty_table(L, -1);
    lua_pop(L, 1);
    return empty;
}

/* The view of the decoded data at idx, read from the value itself when no empty table makes
 * it ambiguous; false when only the raw text can tell (a rare, small answer: a busy answer's
 * objects have attributes, so the text is not scanned a second time). */
static bool decoded_view(lua_State *L, int idx, vt_json_view *v)
{
    *v = (vt_json_view){VT_JSON_NONE, false};
    if (lua_type(L, idx) != LUA_TTABLE)
        return true; /* a string, number, boolean, null or nothing: described as it is */
    if (is_empty_table(L, idx))
        return false;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    v->data = n > 0 ? VT_JSON_ARRAY : VT_JSON_OBJECT;
    if (n == 0)
        return !attributes_empty(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        bool ambiguous = lua_type(L, -1) == LUA_TTABLE && attributes_empty(L, -1);
        lua_pop(L, 1);
        if (ambiguous)
            return false;
    }
    return true;
}

int vt_check_shape(lua_State *L, int idx, const char *text, size_t len, vt_shape shape, vt_err *e)
{
    static const char *const wanted[] = {"an object", "an object", "a list", "a string"};
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) > 0) {
        vt_err_set(e, "InvalidResponse", "the answer is %s, not an object holding 'data'", described(L, idx));
        return -1;
    }
    int data = lua_getfield(L, idx, "data");
    vt_json_view view;
    if (!decoded_view(L, -1, &view) && vt_json_view_of(text, len, &view) != 0) {
        lua_pop(L, 1);
        vt_err_set(e, "InvalidResponse", "the answer's structure cannot be followed");
        return -1;
    }
    int rc = 0;
    bool kind_ok = shape == VT_SHAPE_STRING ? data == LUA_TSTRING
                 : shape == VT_SHAPE_LIST ? data == LUA_TTABLE && view.data == VT_JSON_ARRAY
                 : data == LUA_TTABLE && view.data == VT_JSON_OBJECT;
    if (!kind_ok) {
        vt_err_set(e, "InvalidResponse", "the answer's data is %s, not %s",
                   data == LUA_TTABLE ? (view.data == VT_JSON_ARRAY ? "a list" : "an object") : described(L, -1),
                   wanted[shape]);
        rc = -1;
    } else if (view.attributes_array) {
        vt_err_set(e, "InvalidResponse", "the answer's data has attributes that are a list, not an object");
        rc = -1;
    } else if (shape == VT_SHAPE_OBJECT)
        rc = check_object(L, -1, "the answer's data", e);
    else if (shape == VT_SHAPE_LIST) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n && rc == 0; i++) {
            lua_rawgeti(L, -1, i);
            rc = check_object(L, -1, "an item of the answer's list", e);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return rc;
}

/* A v2 report: an object with a numeric response_code. */
static bool is_report(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) > 0)
        return false;
    bool ok = lua_getfield(L, idx, "response_code") == LUA_TNUMBER;
    lua_pop(L, 1);
    return ok;
}

int vt_check_v2_reports(lua_State *L, int idx, vt_err *e)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) == 0) {
        if (is_report(L, idx))
            return 0;
        vt_err_set(e, "InvalidResponse", "the v2 answer is %s, not a report (no response_code)", described(L, idx));
        return -1;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx); /* a batch: a list of reports */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        bool ok = is_report(L, -1);
        lua_pop(L, 1);
        if (!ok) {
            vt_err_set(e, "InvalidResponse", "item %lld of the v2 answer is not a report (no response_code)",
                       (long long)i);
            return -1;
        }
    }
    return 0;
}
