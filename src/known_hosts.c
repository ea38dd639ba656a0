/* The server's host key, checked against OpenSSH's known_hosts before any
 * secret is sent: a changed or revoked key is refused, an unknown one too
 * (unless the session is insecure). */
#include "sftp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>


/* The name OpenSSH files a host under: "host" on port 22, else "[host]:port". */
void vt_known_hosts_name(sftp_session *s, char *out, size_t cap)
{
    if (s->port == 22)
        snprintf(out, cap, "%s", s->host);
    else
        snprintf(out, cap, "[%s]:%d", s->host, s->port);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

/* Reads known_hosts line by line, so that one line libssh2 cannot parse
 * (a newer key type, a @cert-authority marker) does not hide the rest.
 * @revoked lines go to `revoked`. Returns false when the file is absent. */
bool vt_known_hosts_load(LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    static const char marker[] = "@revoked ";
    while ((n = getline(&line, &cap, f)) > 0) {
        if (strncmp(line, marker, sizeof marker - 1) == 0)
            libssh2_knownhost_readline(revoked, line + sizeof marker - 1, (size_t)n - (sizeof marker - 1),
                                       LIBSSH2_KNOWNHOST_FILE_OPENSSH);
        else if (line[0] != '@')
            libssh2_knownhost_readline(kh, line, (size_t)n, LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    free(line);
    fclose(f);
    return true;
}

static int knownhost_key_type(int hostkey_type)
{
    switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

static int algorithm_key_type(const char *alg)
{
    if (strcmp(alg, "ssh-ed25519") == 0) return LIBSSH2_KNOWNHOST_KEY_ED25519;
    if (strcmp(alg, "ecdsa-sha2-nistp256") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    if (strcmp(alg, "ecdsa-sha2-nistp384") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    if (strcmp(alg, "ecdsa-sha2-nistp521") == 0) return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    if (strcmp(alg, "rsa-sha2-512") == 0 || strcmp(alg, "rsa-sha2-256") == 0 || strcmp(alg, "ssh-rsa") == 0)
        return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    if (strcmp(alg, "ssh-dss") == 0) return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

/* Whether known_hosts holds a key of this type for name: a check with a key
 * that cannot be the right one says MISMATCH exactly when it does. */
static bool has_key_type(LIBSSH2_KNOWNHOSTS *kh, const char *name, int key_type)
{
    static const char probe[1] = {0};
    return libssh2_knownhost_check(kh, name, probe, sizeof probe,
                                   LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_type,
                                   NULL) == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
}

/* Like OpenSSH, asks first for the host key types already on file for this
 * host, so a server with several keys shows one we can check. */
void vt_known_hosts_prefer(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, const char *name)
{
    const char **algs = NULL;
    int n = libssh2_session_supported_algs(s->ssh, LIBSSH2_METHOD_HOSTKEY, &algs);
    if (n <= 0)
        return;
    char pref[1024] = "";
    size_t used = 0;
    bool any = false;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            int type = algorithm_key_type(algs[i]);
            bool known = type != LIBSSH2_KNOWNHOST_KEY_UNKNOWN && has_key_type(kh, name, type);
            if (known != (pass == 0))
                continue;
            any = any || known;
            int w = snprintf(pref + used, sizeof pref - used, "%s%s", used ? "," : "", algs[i]);
            if (w < 0 || (size_t)w >= sizeof pref - used)
                break;
            used += (size_t)w;
        }
    libssh2_free(s->ssh, algs);
    if (any)
        libssh2_session_method_pref(s->ssh, LIBSSH2_METHOD_HOSTKEY, pref);
}

/* "SHA256:" and the unpadded base64 of the key's SHA-256, as ssh-keygen -l. */
static void host_key_fingerprint(sftp_session *s, char *out, size_t cap)
{
    const unsigned char *hash = (const unsigned char *)libssh2_hostkey_hash(s->ssh, LIBSSH2_HOSTKEY_HASH_SHA256);
    if (!hash) {
        snprintf(out, cap, "SHA256:(unavailable)");
        return;
    }
    unsigned char b64[48];
    int n = EVP_EncodeBlock(b64, hash, 32);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    snprintf(out, cap, "SHA256:%.*s", n, (const char *)b64);
}

int vt_known_hosts_check(sftp_session *s, LIBSSH2_KNOWNHOSTS *kh, LIBSSH2_KNOWNHOSTS *revoked,
                         bool have_file, const char *path, const char *name, vt_err *e)
{
    size_t keylen;
    int type;
    const char *key = libssh2_session_hostkey(s->ssh, &keylen, &type);
    if (!key) {
        vt_err_set(e, "ConnectionError", "%s:%d sent no host key", s->host, s->port);
        return -1;
    }
    char fp[80];
    host_key_fingerprint(s, fp, sizeof fp);
    int mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownhost_key_type(type);
    if (libssh2_knownhost_check(revoked, name, key, keylen, mask, NULL) == LIBSSH2_KNOWNHOST_CHECK_MATCH) {
        vt_err_set(e, "HostKeyChanged", "the host key of %s:%d (%s) is marked @revoked in %s", s->host, s->port,
                   fp, path);
        return -1;
    }
    switch (libssh2_knownhost_check(kh, name, key, keylen, mask, NULL)) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
        return 0;
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
        vt_err_set(e, "HostKeyChanged",
                   "the host key of %s:%d has CHANGED: the server shows %s, which does not match %s; "
                   "someone may be intercepting the connection, or the key was replaced",
                   s->host, s->port, fp, path);
        return -1;
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
        vt_err_set(e, "HostKeyUnknown",
                   "the host key of %s:%d is unknown (%s)%s; add it to %s after checking it out of band "
                   "(ssh-keyscan -p %d %s), or set insecure_host_key = true",
                   s->host, s->port, fp, have_file ? "" : ": no known_hosts file", path, s->port, s->host);
        return -1;
    default:
        vt_err_set(e, "HostKeyUnknown", "cannot check the host key of %s:%d (%s) against %s", s->host, s->port, fp,
                   path);
        return -1;
    }
}

