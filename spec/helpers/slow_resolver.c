/* Preloaded (LD_PRELOAD) into a worker of spec/redis_spec.lua: every getaddrinfo call is
 * written to the file $VT_SPEC_RESOLVER_LOG ("start NAME" and "end NAME"); the made-up
 * name $VT_SPEC_RESOLVER_SLOW takes 2 s (as a slow DNS server would), then resolves as
 * localhost; a name under .invalid is unknown at once (no DNS server is asked). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char *what, const char *node)
{
    const char *path = getenv("VT_SPEC_RESOLVER_LOG");
    int fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fd < 0)
        return;
    char line[512];
    int n = snprintf(line, sizeof line, "%s %s\n", what, node ? node : "(null)");
    if (write(fd, line, (size_t)n) != n)
        perror("slow_resolver");
    close(fd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
        (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT,
                                                                                               "getaddrinfo");
    const char *slow = getenv("VT_SPEC_RESOLVER_SLOW");
    note("start", node);
    int rc;
    size_t len = node ? strlen(node) : 0;
    if (node && slow && strcmp(node, slow) == 0) {
        sleep(2);
        rc = real("localhost", service, hints, res);
    } else if (len > 8 && strcmp(node + len - 8, ".invalid") == 0)
        rc = EAI_NONAME;
    else
        rc = real(node, service, hints, res);
    note("end", node);
    return rc;
}
