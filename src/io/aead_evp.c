/* aead_evp.c — tlsrec's AEAD interface over OpenSSL's EVP. See aead.h.
 *
 * The key is set once per context; each record sets only its nonce (EVP_CipherInit_ex with
 * NULL cipher and key), feeds the additional data, the text and the tag. The nonce is 12
 * bytes, the default for both AEADs, so it is never set explicitly.
 */
#include "limpet/aead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_AES
#define HWCAP_AES (1 << 3)
#endif
#ifndef HWCAP_PMULL
#define HWCAP_PMULL (1 << 4)
#endif
#endif

static const EVP_CIPHER *evp_cipher(enum lp_tlsrec_cipher c)
{
    switch (c) {
    case LP_TLSREC_CHACHA20_POLY1305:
        return EVP_chacha20_poly1305();
    case LP_TLSREC_AES_128_GCM:
        return EVP_aes_128_gcm();
    case LP_TLSREC_AES_256_GCM:
        return EVP_aes_256_gcm();
    }
    return NULL;
}

static lp_err evp_seal(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                       uint8_t tag[LP_TLSREC_TAG])
{
    EVP_CIPHER_CTX *c = ctx;
    int n = 0, fin = 0;

    if (len > LP_TLSREC_MAX_PLAIN || aad_len > 256) /* ints for EVP; TLS asks for 13 */
        return LP_ERR_TOO_BIG;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
        (len > 0 && EVP_EncryptUpdate(c, out, &n, in, (int)len) != 1) ||
        EVP_EncryptFinal_ex(c, out + (len > 0 ? n : 0), &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, LP_TLSREC_TAG, tag) != 1)
        return LP_ERR_IO;
    return LP_OK;
}

static lp_err evp_open(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, size_t len,
                       const uint8_t tag[LP_TLSREC_TAG], uint8_t *out)
{
    EVP_CIPHER_CTX *c = ctx;
    uint8_t t[LP_TLSREC_TAG];
    int n = 0, fin = 0;

    if (len > LP_TLSREC_MAX_PLAIN || aad_len > 256) /* ints for EVP; TLS asks for 13 */
        return LP_ERR_TOO_BIG;
    memcpy(t, tag, sizeof(t)); /* the ctrl takes a non-const pointer */
    if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) != 1 ||
        (len > 0 && EVP_DecryptUpdate(c, out, &n, in, (int)len) != 1) ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, LP_TLSREC_TAG, t) != 1)
        return LP_ERR_IO;
    /* Final is where the tag is compared (in constant time, inside libcrypto). */
    if (EVP_DecryptFinal_ex(c, out + (len > 0 ? n : 0), &fin) != 1) {
        ERR_clear_error();
        return LP_ERR_AUTH;
    }
    return LP_OK;
}

static void evp_free(void *ctx)
{
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
}

static const struct lp_aead_ops evp_ops = {
    .seal = evp_seal,
    .open = evp_open,
    .free = evp_free,
};

lp_err lp_aead_evp_new(enum lp_tlsrec_cipher cipher, const uint8_t *key, bool seal,
                       struct lp_aead *out, char *err, size_t errlen)
{
    const EVP_CIPHER *type = evp_cipher(cipher);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    out->ops = NULL;
    out->ctx = NULL;
    if (c == NULL)
        return LP_ERR_NOMEM;
    /* key NULL: the context (and libcrypto's state behind it) exists, the key comes later */
    if (type == NULL || EVP_CipherInit_ex(c, type, NULL, key, NULL, seal ? 1 : 0) != 1) {
        unsigned long e = ERR_get_error();
        snprintf(err, errlen, "libcrypto refused %s: %s", lp_tlsrec_cipher_name(cipher),
                 e ? ERR_reason_error_string(e) : "no such cipher");
        ERR_clear_error();
        EVP_CIPHER_CTX_free(c);
        return LP_ERR_IO;
    }
    out->ops = &evp_ops;
    out->ctx = c;
    return LP_OK;
}

#if defined(__x86_64__) || defined(__i386__)
/* OPENSSL_ia32cap=[~]VALUE[:...] overrides what libcrypto believes of the CPU (bits 0-31:
 * CPUID(1).EDX, 32-63: CPUID(1).ECX): "~" clears the bits given, else the value replaces the
 * word. A user who masks AES-NI there gets no AES-NI from libcrypto, so nor do we count on it. */
static bool ia32cap_allows(uint64_t bits)
{
    const char *env = getenv("OPENSSL_ia32cap");
    char *end;

    if (env == NULL || *env == '\0' || *env == ':')
        return true;
    bool clear = *env == '~';
    unsigned long long v = strtoull(env + clear, &end, 0);
    if (end == env + clear)
        return true; /* unreadable: libcrypto ignores it too */
    return clear ? (v & bits) == 0 : (v & bits) == bits;
}
#endif

bool lp_aead_cpu_has_aes(void)
{
#if defined(__x86_64__) || defined(__i386__)
    const uint64_t aesni = 1ull << (32 + 25), pclmulqdq = 1ull << (32 + 1);
    __builtin_cpu_init();
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
           ia32cap_allows(aesni | pclmulqdq);
#elif defined(__aarch64__)
    unsigned long hw = getauxval(AT_HWCAP);
    return (hw & HWCAP_AES) && (hw & HWCAP_PMULL);
#else
    return false;
#endif
}

lp_err lp_aead_evp_set_key(struct lp_aead *a, const uint8_t *key)
{
    if (a->ops != &evp_ops || EVP_CipherInit_ex(a->ctx, NULL, NULL, key, NULL, -1) != 1) {
        ERR_clear_error();
        return LP_ERR_IO;
    }
    return LP_OK;
}
