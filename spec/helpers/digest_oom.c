/* Preloaded (LD_PRELOAD) into a child of spec/calls_spec.lua: from the second ftruncate
 * call of the process on (a download's redirect truncates its file once, its retry a
 * second time), EVP_MD_CTX_new fails as it does when memory runs out. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <sys/types.h>

static bool failing;

static int counted_ftruncate(const char *name, int fd, off_t length)
{
    static int calls;
    int (*real)(int, off_t) = (int (*)(int, off_t))dlsym(RTLD_NEXT, name);
    failing = failing || ++calls >= 2;
    return real(fd, length);
}

int ftruncate(int fd, off_t length) { return counted_ftruncate("ftruncate", fd, length); }
int ftruncate64(int fd, off_t length) { return counted_ftruncate("ftruncate64", fd, length); }

/* libcrypto comes with the module (dlopen'd, its symbols local): found by name, not RTLD_NEXT. */
void *EVP_MD_CTX_new(void)
{
    void *crypto = dlopen("libcrypto.so.3", RTLD_LAZY | RTLD_NOLOAD);
    void *(*real)(void) = crypto ? (void *(*)(void))dlsym(crypto, "EVP_MD_CTX_new") : 0;
    if (crypto)
        dlclose(crypto);
    return failing || !real ? (void *)0 : real();
}
