/* The baseline of the CPU benchmark: N GETs of the same URL with plain libcurl
 * (one easy handle reused, kept-alive connection, driven by a multi handle as
 * the module is), each body decoded by lua-cjson. usage: plain_fetch URL N */
#include <curl/curl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *data; size_t len, cap; } buffer;

static size_t collect(char *p, size_t size, size_t n, void *userp)
{
    buffer *b = userp;
    size_t add = size * n;
    if (b->len + add > b->cap) {
        b->cap = (b->len + add) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data)
            return 0;
    }
    memcpy(b->data + b->len, p, add);
    b->len += add;
    return add;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    long n = atol(argv[2]);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_dostring(L, "return require('cjson').decode") != LUA_OK)
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "x-apikey: bench-key");
    buffer b = {0};
    curl_easy_setopt(c, CURLOPT_URL, argv[1]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLM *m = curl_multi_init();
    for (long i = 0; i < n; i++) {
        b.len = 0;
        curl_multi_add_handle(m, c);
        int running = 1;
        while (running) {
            if (curl_multi_perform(m, &running) != CURLM_OK)
                return 1;
            if (running)
                curl_multi_poll(m, NULL, 0, 1000, NULL);
        }
        int left;
        CURLMsg *msg = curl_multi_info_read(m, &left);
        if (!msg || msg->data.result != CURLE_OK)
            return 1;
        curl_multi_remove_handle(m, c);
        lua_pushvalue(L, -1);
        lua_pushlstring(L, b.data, b.len);
        lua_call(L, 1, 1);
        lua_pop(L, 1);
    }
    curl_slist_free_all(h);
    curl_multi_cleanup(m);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    free(b.data);
    lua_close(L);
    return 0;
}
