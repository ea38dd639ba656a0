/* The known_hosts reader of the SFTP host key check (src/known_hosts.c) on any file, then
 * libssh2's checks against what it read, for plain and [host]:port names and each key type:
 * whatever the lines (hashed names, markers, bad base64, long lines), no crash and no leak. */
#include "harness.h"
#include "sftp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const int key_types[] = {LIBSSH2_KNOWNHOST_KEY_ED25519, LIBSSH2_KNOWNHOST_KEY_SSHRSA};
static const char *const names[] = {"example.com", "example.com", "10.0.0.1"};
static const int ports[] = {22, 2222, 22};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static LIBSSH2_SESSION *session;
    static int fd = -1;
    static char path[64];
    if (!session) {
        libssh2_init(0);
        session = libssh2_session_init();
        fd = memfd_create("known_hosts", MFD_CLOEXEC); /* a file vt_known_hosts_load opens by name */
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return 0;
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(session), *revoked = libssh2_knownhost_init(session);
    fuzz_check(vt_known_hosts_load(kh, revoked, path), "an existing file is read");
    /* a key blob from the input's tail, checked under each name and type */
    size_t klen = size < 64 ? size : 64;
    const char *key = klen ? (const char *)data + size - klen : "";
    for (size_t n = 0; n < sizeof names / sizeof *names; n++)
        for (size_t t = 0; t < sizeof key_types / sizeof *key_types; t++) {
            int typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_types[t];
            int rc = libssh2_knownhost_checkp(kh, names[n], ports[n], key, klen, typemask, NULL);
            fuzz_check(rc >= LIBSSH2_KNOWNHOST_CHECK_MATCH && rc <= LIBSSH2_KNOWNHOST_CHECK_FAILURE,
                       "a check has one of its four results");
            libssh2_knownhost_checkp(revoked, names[n], ports[n], key, klen, typemask, NULL);
        }
    libssh2_knownhost_free(kh);
    libssh2_knownhost_free(revoked);
    return 0;
}
