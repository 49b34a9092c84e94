/* tls_conf.c — TLS configurations: keys, certificates, suites and the record layer of the
 * links made from them. See tls.h. */
#include "tls_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>

#include "limpet/aead.h"

static void describe(int ret, const char *what, char *err, size_t errlen)
{
    char buf[160];
    mbedtls_strerror(ret, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s (-0x%04x)", what, buf, (unsigned)-ret);
}

const char *lp_tls_layer_name(enum lp_tls_layer layer)
{
    return layer == LP_TLS_LAYER_MBEDTLS ? "mbedtls" : "openssl";
}

bool lp_tls_prefers_aes_gcm(void)
{
    static int known = -1; /* the CPU does not change under us */
    if (known < 0)
        known = lp_aead_cpu_has_aes();
    return known == 1;
}

/* The suites a configuration offers, best first. The server picks by its own order (mbedTLS
 * does not honour the client's), so both sides order the same way. libcrypto's AES-GCM with
 * AES instructions seals ~1.8x as fast as its ChaCha20-Poly1305; mbedTLS's ChaCha20 ~1.5x its
 * AES-GCM; without AES instructions ChaCha20 wins in both. */
/* The ECDHE groups, best first. P-256 and X25519 are both 128-bit secure, and mbedTLS 2.28
 * computes P-256 about twice as fast (its NIST reduction, and precomputed tables for the
 * generator); its X25519 is a generic Montgomery ladder. Measured on this project's 2-core
 * machine: 3.0 ms of server CPU per PSK handshake against 5.5 ms, which is what a storm of
 * resumes after an outage costs. The client's order decides (the server takes the first
 * group of the client's list it has); a peer listing only X25519 still gets it. */
static const mbedtls_ecp_group_id tls_groups[] = {
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

static void set_suites(lp_tls_conf *c)
{
    bool aes_first = c->layer == LP_TLS_LAYER_OPENSSL && lp_tls_prefers_aes_gcm();
    int n = 0;

    if (c->has_cert) {
        if (!aes_first)
            c->suites[n++] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
        c->suites[n++] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        c->suites[n++] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
        if (aes_first)
            c->suites[n++] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
    }
    /* PSK clients of a server with a certificate get the PSK suite after the ECDSA ones. */
    if (c->offers_psk)
        c->suites[n++] = MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256;
    c->suites[n] = 0;
    mbedtls_ssl_conf_ciphersuites(&c->ssl, c->suites);
}

void lp_tls_conf_set_record_layer(lp_tls_conf *c, enum lp_tls_layer layer)
{
    c->layer = layer;
    set_suites(c);
}

/* mbedTLS 2.28 exports the key block to the configuration, not to the session: the session
 * whose handshake runs now is conf->current (see tls_internal.h). The block is the RFC 5246
 * §6.3 one: client_write_key, server_write_key, client_write_IV, server_write_IV (no MAC keys
 * for an AEAD suite). */
static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                       size_t keylen, size_t ivlen, const unsigned char client_random[32],
                       const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    lp_tls_conf *c = p;
    lp_tls *t = c->current;
    (void)ms;
    (void)client_random;
    (void)server_random;
    (void)prf;

    if (t == NULL || c->layer != LP_TLS_LAYER_OPENSSL)
        return 0; /* nobody will take the keys over: do not copy them */
    tls_drop_keys(t);
    if (maclen != 0 || keylen > LP_TLSREC_KEY_MAX || ivlen > LP_TLSREC_NONCE)
        return 0; /* not an AEAD suite: the records stay with mbedTLS */
    if ((t->keys = malloc(sizeof(*t->keys))) == NULL)
        return 0; /* the hand-off will say so */
    memcpy(t->keys->block, kb, 2 * keylen + 2 * ivlen);
    t->keys->keylen = keylen;
    t->keys->ivlen = ivlen;
    return 0;
}

static lp_err conf_new(bool is_server, bool psk_mode, lp_tls_conf **out, char *err, size_t errlen)
{
    lp_tls_conf *c = calloc(1, sizeof(*c));
    int ret;

    *out = NULL;
    if (c == NULL)
        return LP_ERR_NOMEM;
    c->is_server = is_server;
    c->psk_mode = psk_mode;
    c->offers_psk = psk_mode;
    c->layer = LP_TLS_LAYER_OPENSSL;
    mbedtls_ssl_config_init(&c->ssl);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    mbedtls_x509_crt_init(&c->crt);
    mbedtls_pk_init(&c->pk);
    if ((ret = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
                                     (const unsigned char *)"limpet", 6)) != 0 ||
        (ret = mbedtls_ssl_config_defaults(
             &c->ssl, is_server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
             MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        describe(ret, "TLS set-up", err, errlen);
        lp_tls_conf_free(c);
        return LP_ERR_IO;
    }
    set_suites(c);
    mbedtls_ssl_conf_curves(&c->ssl, tls_groups);
    mbedtls_ssl_conf_min_version(&c->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&c->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_renegotiation(&c->ssl, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_rng(&c->ssl, mbedtls_ctr_drbg_random, &c->drbg);
    mbedtls_ssl_conf_export_keys_ext_cb(&c->ssl, export_keys, c);
    *out = c;
    return LP_OK;
}

void lp_tls_conf_free(lp_tls_conf *c)
{
    if (c == NULL)
        return;
    mbedtls_ssl_config_free(&c->ssl); /* wipes a configured PSK */
    mbedtls_x509_crt_free(&c->crt);
    mbedtls_pk_free(&c->pk);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    mbedtls_platform_zeroize(c, sizeof(*c));
    free(c);
}

lp_err lp_tls_conf_client_psk(const char *identity, const uint8_t key[LP_TLS_PSK_LEN],
                              lp_tls_conf **out, char *err, size_t errlen)
{
    lp_err rc = conf_new(false, true, out, err, errlen);
    int ret;

    if (rc != LP_OK)
        return rc;
    if ((ret = mbedtls_ssl_conf_psk(&(*out)->ssl, key, LP_TLS_PSK_LEN,
                                    (const unsigned char *)identity, strlen(identity))) != 0) {
        describe(ret, "PSK set-up", err, errlen);
        lp_tls_conf_free(*out);
        *out = NULL;
        return LP_ERR_INVALID;
    }
    return LP_OK;
}

static int psk_cb(void *p, mbedtls_ssl_context *ssl, const unsigned char *id, size_t len)
{
    lp_tls_conf *c = p;
    lp_tls *t = c->current;
    uint8_t key[LP_TLS_PSK_LEN];

    if (t == NULL || t->ssl != ssl)
        return -1;
    if (len == 0 || len > LP_TLS_IDENTITY_MAX || memchr(id, 0, len) != NULL) {
        t->auth_failed = true;
        return -1;
    }
    memcpy(t->identity, id, len);
    t->identity[len] = '\0';
    if (!c->psk_lookup(c->user, t->identity, key)) {
        t->auth_failed = true;
        return -1;
    }
    int ret = mbedtls_ssl_set_hs_psk(ssl, key, sizeof(key));
    mbedtls_platform_zeroize(key, sizeof(key));
    return ret;
}

lp_err lp_tls_conf_server_psk(lp_tls_psk_lookup lookup, void *user, lp_tls_conf **out, char *err,
                              size_t errlen)
{
    lp_err rc = conf_new(true, true, out, err, errlen);
    if (rc != LP_OK)
        return rc;
    (*out)->psk_lookup = lookup;
    (*out)->user = user;
    mbedtls_ssl_conf_psk_cb(&(*out)->ssl, psk_cb, *out);
    return LP_OK;
}

static lp_err load_own_cert(lp_tls_conf *c, const char *crt_path, const char *key_path, char *err,
                            size_t errlen)
{
    int ret;
    if ((ret = mbedtls_x509_crt_parse_file(&c->crt, crt_path)) != 0) {
        describe(ret, crt_path, err, errlen);
        return LP_ERR_INVALID;
    }
    if ((ret = mbedtls_pk_parse_keyfile(&c->pk, key_path, NULL)) != 0) {
        describe(ret, key_path, err, errlen);
        return LP_ERR_INVALID;
    }
    if ((ret = mbedtls_ssl_conf_own_cert(&c->ssl, &c->crt, &c->pk)) != 0) {
        describe(ret, "certificate and key", err, errlen);
        return LP_ERR_INVALID;
    }
    /* Our own check (pins) decides; mbedTLS only makes the peer prove its key. */
    mbedtls_ssl_conf_authmode(&c->ssl, MBEDTLS_SSL_VERIFY_OPTIONAL);
    c->has_cert = true;
    set_suites(c);
    return LP_OK;
}

lp_err lp_tls_conf_client_cert(const char *crt_path, const char *key_path,
                               const uint8_t server_fp[LP_TLS_FP_LEN], lp_tls_conf **out, char *err,
                               size_t errlen)
{
    lp_err rc = conf_new(false, false, out, err, errlen);
    if (rc == LP_OK && (rc = load_own_cert(*out, crt_path, key_path, err, errlen)) != LP_OK) {
        lp_tls_conf_free(*out);
        *out = NULL;
    }
    if (rc == LP_OK) {
        memcpy((*out)->pin, server_fp, LP_TLS_FP_LEN);
        (*out)->has_pin = true;
    }
    return rc;
}

lp_err lp_tls_conf_server_cert(const char *crt_path, const char *key_path, lp_tls_fp_lookup lookup,
                               void *user, lp_tls_conf **out, char *err, size_t errlen)
{
    lp_err rc = conf_new(true, false, out, err, errlen);
    if (rc == LP_OK && (rc = load_own_cert(*out, crt_path, key_path, err, errlen)) != LP_OK) {
        lp_tls_conf_free(*out);
        *out = NULL;
    }
    if (rc == LP_OK) {
        (*out)->fp_lookup = lookup;
        (*out)->user = user;
    }
    return rc;
}

lp_err lp_tls_conf_server(const char *crt_path, const char *key_path, lp_tls_psk_lookup psk_lookup,
                          lp_tls_fp_lookup fp_lookup, void *user, lp_tls_conf **out, char *err,
                          size_t errlen)
{
    bool certs = crt_path && crt_path[0] && key_path && key_path[0];
    lp_err rc = conf_new(true, !certs, out, err, errlen);

    if (rc != LP_OK)
        return rc;
    lp_tls_conf *c = *out;
    c->user = user;
    c->psk_lookup = psk_lookup;
    c->fp_lookup = fp_lookup;
    c->offers_psk = true;
    mbedtls_ssl_conf_psk_cb(&c->ssl, psk_cb, c);
    if (certs && (rc = load_own_cert(c, crt_path, key_path, err, errlen)) != LP_OK) {
        lp_tls_conf_free(c);
        *out = NULL;
        return rc;
    }
    return LP_OK;
}
