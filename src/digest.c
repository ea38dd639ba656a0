/* MD5, SHA-1 and SHA-256 of one stream in a single pass (downloads are checked
 * against whichever hash the caller named, and all three are reported), through
 * OpenSSL's EVP interface.
 *
 * vt.h gives update and final no way to report failure, so a failed OpenSSL
 * call marks the digest failed and final then writes empty strings: an empty
 * digest matches no hash, so the caller's comparison fails safe. */
#include "vt.h"

#include <stdlib.h>

#include <openssl/evp.h>

enum { DIGEST_MD5, DIGEST_SHA1, DIGEST_SHA256, DIGEST_COUNT };

struct vt_digest {
    EVP_MD_CTX *ctx[DIGEST_COUNT];
    bool failed; /* an OpenSSL call failed, or final already ran */
};

/* Each digest's algorithm and size in bytes (the callers' hex buffers are sized
 * from these), in the order of the enum. */
static const struct {
    const EVP_MD *(*md)(void);
    unsigned int size;
} algorithms[DIGEST_COUNT] = {
    {EVP_md5, 16}, {EVP_sha1, 20}, {EVP_sha256, 32},
};

static void to_hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

void vt_digest_free(vt_digest *d)
{
    if (!d)
        return;
    for (int i = 0; i < DIGEST_COUNT; i++)
        EVP_MD_CTX_free(d->ctx[i]);
    free(d);
}

vt_digest *vt_digest_new(void)
{
    vt_digest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    for (int i = 0; i < DIGEST_COUNT; i++) {
        /* Init fails for MD5 when only a FIPS provider is loaded: treated like
         * an allocation failure, there is no digest to hand out. */
        d->ctx[i] = EVP_MD_CTX_new();
        if (!d->ctx[i] || EVP_DigestInit_ex(d->ctx[i], algorithms[i].md(), NULL) != 1) {
            vt_digest_free(d);
            return NULL;
        }
    }
    return d;
}

void vt_digest_update(vt_digest *d, const void *data, size_t len)
{
    if (d->failed || len == 0)
        return;
    for (int i = 0; i < DIGEST_COUNT; i++)
        if (EVP_DigestUpdate(d->ctx[i], data, len) != 1)
            d->failed = true;
}

/* Finishes one context into lowercase hex; false when OpenSSL fails or hands
 * back a size other than the one out was made for. */
static bool final_hex(EVP_MD_CTX *ctx, unsigned int size, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx, md, &n) != 1 || n != size)
        return false;
    to_hex(md, n, out);
    return true;
}

void vt_digest_final(vt_digest *d, char md5[33], char sha1[41], char sha256[65])
{
    char *out[DIGEST_COUNT] = {md5, sha1, sha256};
    bool ok = !d->failed;
    for (int i = 0; i < DIGEST_COUNT && ok; i++)
        ok = final_hex(d->ctx[i], algorithms[i].size, out[i]);
    if (!ok)
        for (int i = 0; i < DIGEST_COUNT; i++)
            out[i][0] = '\0';
    /* An EVP context may not be finalised twice; a second final gives "". */
    d->failed = true;
}

void vt_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != algorithms[DIGEST_SHA256].size) {
        out[0] = '\0';
        return;
    }
    to_hex(md, n, out);
}
