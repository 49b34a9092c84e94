/* aead_ceiling.c — the crypto ceiling for scripts/bench.sh: how fast one core seals TLS records
 * with each library limpet links: mbedTLS (its own record layer, tls.record_layer: mbedtls) and
 * OpenSSL's libcrypto through EVP (tlsrec's, the default), so a tunnel's throughput can be read
 * against the library that really sealed its records.
 *
 *   aead_ceiling [SECONDS [RECORD_BYTES]]       (defaults: 2 s per cipher, 16384-byte records)
 *
 * For ChaCha20-Poly1305, AES-128-GCM and AES-256-GCM in turn, first with mbedTLS, then with
 * OpenSSL EVP (one context, the key set once, only the nonce per record, as tlsrec's glue does):
 * encrypt and tag one record after the other, in place, with a fresh nonce and a 13-byte
 * additional data block each (what a TLS 1.2 record carries), for SECONDS on the calling thread.
 * One "key=value" line per library and cipher:
 *   chacha20-poly1305 records=N bytes=N secs=S bps=B peak_bps=P cpu_secs=C cpu_bps=Q
 *   evp-chacha20-poly1305 records=N ...
 * bps counts plaintext bytes sealed per second over the whole run; peak_bps is the fastest
 * 100 ms slice of it. On a shared machine other work takes the core now and then, and the mean
 * drops with it while the peak stays what one core can do; the peak is the stricter ceiling.
 * cpu_bps counts the same bytes per second of this thread's own CPU time (cpu_secs), so it does
 * not drop when the core is taken away: it is the like-for-like reference for a tunnel measured
 * in bytes per CPU-second of its sealing process.
 * Only the sealing is timed: no copy into the record, no syscall, so a tunnel that seals its
 * bytes on one core can come near it but not past it.
 * Built by bench.sh with cc -O2 ... -lmbedcrypto -lcrypto (mbedTLS 2.28, OpenSSL 3).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/chachapoly.h>
#include <mbedtls/gcm.h>
#include <openssl/evp.h>

#define MAX_RECORD 16384 /* TLS's maximum plaintext per record */
#define MAX_SECONDS 60
#define TAG_LEN 16
#define AAD_LEN 13
#define SLICE_NS 100000000u /* peak_bps is the fastest slice this long */

enum aead { CHACHA20_POLY1305, AES_128_GCM, AES_256_GCM };

struct sealer {
    enum aead kind;
    bool evp; /* OpenSSL EVP instead of mbedTLS */
    mbedtls_chachapoly_context chacha;
    mbedtls_gcm_context gcm;
    EVP_CIPHER_CTX *ctx;
};

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static unsigned long parse_num(const char *s, const char *what, unsigned long lo, unsigned long hi)
{
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);

    if (end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "aead_ceiling: %s must be %lu..%lu, not %s\n", what, lo, hi, s);
        exit(2);
    }
    return v;
}

/* Returns 0, or an mbedTLS error code (-1 for an EVP failure). */
static int sealer_init(struct sealer *s, enum aead kind, bool evp)
{
    static const unsigned char key[32] = {
        0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae,
        0xf0, 0x85, 0x7d, 0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61,
        0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
    };

    s->kind = kind;
    s->evp = evp;
    s->ctx = NULL;
    mbedtls_chachapoly_init(&s->chacha);
    mbedtls_gcm_init(&s->gcm);
    if (evp) {
        const EVP_CIPHER *c = kind == CHACHA20_POLY1305 ? EVP_chacha20_poly1305()
                              : kind == AES_128_GCM     ? EVP_aes_128_gcm()
                                                        : EVP_aes_256_gcm();
        s->ctx = EVP_CIPHER_CTX_new();
        return s->ctx && EVP_EncryptInit_ex(s->ctx, c, NULL, key, NULL) == 1 ? 0 : -1;
    }
    if (kind == CHACHA20_POLY1305)
        return mbedtls_chachapoly_setkey(&s->chacha, key);
    return mbedtls_gcm_setkey(&s->gcm, MBEDTLS_CIPHER_ID_AES, key,
                              kind == AES_128_GCM ? 128u : 256u);
}

static void sealer_free(struct sealer *s)
{
    mbedtls_chachapoly_free(&s->chacha);
    mbedtls_gcm_free(&s->gcm);
    EVP_CIPHER_CTX_free(s->ctx);
}

/* As src/io/aead_evp.c seals: the nonce, the additional data, the text, the tag. */
static int evp_seal(EVP_CIPHER_CTX *c, const unsigned char *nonce, const unsigned char *aad,
                    unsigned char *rec, size_t len, unsigned char tag[TAG_LEN])
{
    int n = 0, fin = 0;
    if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, aad, AAD_LEN) != 1 ||
        EVP_EncryptUpdate(c, rec, &n, rec, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, rec + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) != 1)
        return -1;
    return 0;
}

/* Seals record number seq in place, as TLS 1.2 would: the nonce and the additional data both
 * carry the sequence number, so no two records share a nonce. */
static int seal(struct sealer *s, uint64_t seq, unsigned char *rec, size_t len,
                unsigned char tag[TAG_LEN])
{
    unsigned char nonce[12] = {0}, aad[AAD_LEN] = {0};

    for (int b = 0; b < 8; b++) {
        nonce[4 + b] = (unsigned char)(seq >> (56 - 8 * b));
        aad[b] = nonce[4 + b];
    }
    aad[8] = 23; /* application data, TLS 1.2, then the length */
    aad[9] = 3;
    aad[10] = 3;
    aad[11] = (unsigned char)(len >> 8);
    aad[12] = (unsigned char)len;
    if (s->evp)
        return evp_seal(s->ctx, nonce, aad, rec, len, tag);
    if (s->kind == CHACHA20_POLY1305)
        return mbedtls_chachapoly_encrypt_and_tag(&s->chacha, len, nonce, aad, AAD_LEN, rec, rec,
                                                  tag);
    return mbedtls_gcm_crypt_and_tag(&s->gcm, MBEDTLS_GCM_ENCRYPT, len, nonce, sizeof(nonce), aad,
                                     AAD_LEN, rec, rec, TAG_LEN, tag);
}

/* Seals records for the given time after a short warm-up; prints the line. Returns 0 or 1. */
static int run(enum aead kind, bool evp, const char *name, unsigned long seconds, size_t len)
{
    static unsigned char rec[MAX_RECORD];
    unsigned char tag[TAG_LEN];
    uint64_t seq = 0, records = 0, start, end, warm_until, slice_start, slice_records = 0;
    uint64_t cpu_start;
    double peak = 0;
    struct sealer s;
    int ret;

    memset(rec, 0x5a, sizeof(rec));
    if ((ret = sealer_init(&s, kind, evp)) != 0)
        goto out;
    warm_until = now_ns() + 100000000u; /* 100 ms: caches, branch predictors, clock ramp-up */
    while (ret == 0 && now_ns() < warm_until)
        ret = seal(&s, seq++, rec, len, tag);
    cpu_start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    start = slice_start = now_ns();
    end = start + (uint64_t)seconds * 1000000000u;
    for (uint64_t t = start; ret == 0 && t < end; t = now_ns()) {
        ret = seal(&s, seq++, rec, len, tag);
        records++;
        slice_records++;
        if (t - slice_start >= SLICE_NS) {
            double rate = (double)(slice_records * len) * 1e9 / (double)(t - slice_start);
            peak = rate > peak ? rate : peak;
            slice_start = t;
            slice_records = 0;
        }
    }
    if (ret == 0) {
        double secs = (double)(now_ns() - start) / 1e9;
        double cpu_secs = (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start) / 1e9;
        double sealed = (double)(records * len);

        printf("%s records=%llu bytes=%llu secs=%.3f bps=%.0f peak_bps=%.0f cpu_secs=%.3f"
               " cpu_bps=%.0f\n",
               name, (unsigned long long)records, (unsigned long long)(records * len), secs,
               sealed / secs, peak, cpu_secs, cpu_secs > 0 ? sealed / cpu_secs : 0.0);
    }
out:
    if (ret != 0)
        printf("%s error=-0x%04x\n", name, (unsigned)-ret);
    sealer_free(&s);
    return ret != 0;
}

int main(int argc, char **argv)
{
    unsigned long seconds = 2, len = MAX_RECORD;
    int failed = 0;

    if (argc > 3) {
        fputs("usage: aead_ceiling [SECONDS [RECORD_BYTES]]\n", stderr);
        return 2;
    }
    if (argc > 1)
        seconds = parse_num(argv[1], "SECONDS", 1, MAX_SECONDS);
    if (argc > 2)
        len = parse_num(argv[2], "RECORD_BYTES", 1, MAX_RECORD);
    setvbuf(stdout, NULL, _IOLBF, 0);
    failed |= run(CHACHA20_POLY1305, false, "chacha20-poly1305", seconds, len);
    failed |= run(AES_128_GCM, false, "aes-128-gcm", seconds, len);
    failed |= run(AES_256_GCM, false, "aes-256-gcm", seconds, len);
    failed |= run(CHACHA20_POLY1305, true, "evp-chacha20-poly1305", seconds, len);
    failed |= run(AES_128_GCM, true, "evp-aes-128-gcm", seconds, len);
    failed |= run(AES_256_GCM, true, "evp-aes-256-gcm", seconds, len);
    return failed;
}
