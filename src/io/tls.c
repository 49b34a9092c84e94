/* tls.c — TLS 1.2 links with mbedTLS 2.28: ECDHE + AEAD only, mutual authentication by PSK
 * identity or by pinned certificate fingerprints. See tls.h.
 *
 * Certificates are not checked against a CA: each side requests the other's certificate
 * (so the peer proves it holds the key, in CertificateVerify / the ECDHE signature) and then
 * compares its SHA-256 with the configured pin. mbedTLS is told VERIFY_OPTIONAL so that a
 * self-signed certificate does not fail before our own check runs.
 */
#include "limpet/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "limpet/base.h"

#define TLS_RECORD 16384u /* plaintext per record: one lp_tls_write at most */

struct lp_tls_conf {
    mbedtls_ssl_config ssl;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    int suites[5];
    bool is_server;
    bool psk_mode;
    bool has_pin;
    uint8_t pin[LP_TLS_FP_LEN];   /* client, cert mode: the server's fingerprint */
    lp_tls_psk_lookup psk_lookup; /* server, PSK mode */
    lp_tls_fp_lookup fp_lookup;   /* server, cert mode */
    void *user;
    size_t users;               /* lp_tls objects made from this conf and not yet freed */
    void (*on_idle)(void *arg); /* called when users falls to 0 */
    void *idle_arg;
};

struct lp_tls {
    mbedtls_ssl_context ssl;
    lp_tls_conf *conf;
    int fd;
    bool auth_failed;   /* a callback refused the peer: report LP_ERR_AUTH */
    bool hs_want_write; /* the handshake last waited to write */
    char identity[LP_TLS_IDENTITY_MAX + 1];
    uint8_t *pend;   /* a record mbedTLS holds after WANT_WRITE: its plaintext */
    size_t pend_len; /* (mbedTLS wants the same buffer again to finish it) */
    uint8_t *rbuf;   /* ciphertext read ahead (RBUF bytes once allocated) */
    size_t rpos, rlen;
    bool gather;   /* handshake done: sealed records collect in wbuf */
    uint8_t *wbuf; /* sealed records not yet sent (WBUF bytes once allocated) */
    size_t wlen;
};

/* After the handshake, sealed records are gathered and sent together when the caller
 * flushes (lp_tls_flush), instead of one send per 16 KiB record. */
#define WBUF (64u * 1024u)

/* mbedTLS reads a record as two exact reads (the 5-byte header, then the body): from the
 * socket that is two system calls per 16 KiB. One recv fills this instead, and the records
 * are served from it. */
#define RBUF (64u * 1024u)

static void describe(int ret, const char *what, char *err, size_t errlen)
{
    char buf[160];
    mbedtls_strerror(ret, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s (-0x%04x)", what, buf, (unsigned)-ret);
}

/* ---- configurations --------------------------------------------------------------------- */

static lp_err conf_new(bool is_server, bool psk_mode, lp_tls_conf **out, char *err, size_t errlen)
{
    lp_tls_conf *c = calloc(1, sizeof(*c));
    int ret;

    *out = NULL;
    if (c == NULL)
        return LP_ERR_NOMEM;
    c->is_server = is_server;
    c->psk_mode = psk_mode;
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
    if (psk_mode) {
        c->suites[0] = MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256;
        c->suites[1] = 0;
    } else {
        c->suites[0] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
        c->suites[1] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        c->suites[2] = MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;
        c->suites[3] = 0;
    }
    mbedtls_ssl_conf_ciphersuites(&c->ssl, c->suites);
    mbedtls_ssl_conf_min_version(&c->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&c->ssl, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_renegotiation(&c->ssl, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_rng(&c->ssl, mbedtls_ctr_drbg_random, &c->drbg);
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
    lp_tls *t = LP_CONTAINER_OF(ssl, lp_tls, ssl);
    uint8_t key[LP_TLS_PSK_LEN];

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
    mbedtls_ssl_conf_psk_cb(&c->ssl, psk_cb, c);
    if (certs) {
        if ((rc = load_own_cert(c, crt_path, key_path, err, errlen)) != LP_OK) {
            lp_tls_conf_free(c);
            *out = NULL;
            return rc;
        }
        /* ECDSA suites first for certificate clients; the PSK suite for PSK clients. */
        c->suites[3] = MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256;
        c->suites[4] = 0;
        mbedtls_ssl_conf_ciphersuites(&c->ssl, c->suites);
    }
    return LP_OK;
}

/* ---- sessions ------------------------------------------------------------------------------ */

static int send_now(lp_tls *t, const unsigned char *buf, size_t len);

/* Sends what wbuf holds: LP_OK when empty, LP_ERR_TRUNCATED when the socket is full. */
static lp_err send_gathered(lp_tls *t)
{
    while (t->wlen > 0) {
        int n = send_now(t, t->wbuf, t->wlen);
        if (n == MBEDTLS_ERR_SSL_WANT_WRITE)
            return LP_ERR_TRUNCATED;
        if (n < 0)
            return LP_ERR_IO;
        memmove(t->wbuf, t->wbuf + n, t->wlen - (size_t)n);
        t->wlen -= (size_t)n;
    }
    return LP_OK;
}

/* Plain send/recv: mbedtls_net_* would ask fcntl whether the socket blocks on every call. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    lp_tls *t = ctx;
    size_t room;

    if (!t->gather)
        return send_now(t, buf, len);
    if (t->wbuf == NULL && (t->wbuf = malloc(WBUF)) == NULL)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    if (t->wlen == WBUF) {
        lp_err rc = send_gathered(t);
        if (rc == LP_ERR_IO)
            return MBEDTLS_ERR_NET_SEND_FAILED;
        if (t->wlen == WBUF)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    room = LP_MIN(len, WBUF - t->wlen);
    memcpy(t->wbuf + t->wlen, buf, room);
    t->wlen += room;
    return (int)room;
}

static int send_now(lp_tls *t, const unsigned char *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
                                                     : MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    lp_tls *t = ctx;

    if (t->rpos == t->rlen && t->rbuf == NULL && (t->rbuf = malloc(RBUF)) == NULL)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    for (;;) {
        if (t->rpos < t->rlen) {
            size_t k = LP_MIN(len, t->rlen - t->rpos);
            memcpy(buf, t->rbuf + t->rpos, k);
            t->rpos += k;
            return (int)k;
        }
        ssize_t n = recv(t->fd, t->rbuf, RBUF, 0);
        if (n > 0) {
            t->rpos = 0;
            t->rlen = (size_t)n;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_READ;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

lp_err lp_tls_new(lp_tls_conf *conf, int fd, lp_tls **out)
{
    lp_tls *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL)
        return LP_ERR_NOMEM;
    t->conf = conf;
    conf->users++;
    t->fd = fd;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &conf->ssl) != 0) {
        lp_tls_free(t);
        return LP_ERR_NOMEM;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    *out = t;
    return LP_OK;
}

lp_err lp_tls_set_sni(lp_tls *t, const char *name)
{
    /* The certificate check that would compare it is VERIFY_OPTIONAL (load_own_cert): a
     * mismatch only sets a flag, and peer_pinned decides. */
    return mbedtls_ssl_set_hostname(&t->ssl, name) == 0 ? LP_OK : LP_ERR_INVALID;
}

size_t lp_tls_conf_users(const lp_tls_conf *c)
{
    return c->users;
}

void lp_tls_conf_on_idle(lp_tls_conf *c, void (*fn)(void *arg), void *arg)
{
    c->on_idle = fn;
    c->idle_arg = arg;
}

/* The last thing lp_tls_free does: the callback may free the conf. */
static void conf_release(lp_tls_conf *c)
{
    if (--c->users == 0 && c->on_idle != NULL)
        c->on_idle(c->idle_arg);
}

void lp_tls_free(lp_tls *t)
{
    lp_tls_conf *conf;

    if (t == NULL)
        return;
    conf = t->conf;
    mbedtls_ssl_free(&t->ssl); /* wipes keys and record buffers */
    if (t->pend) {
        mbedtls_platform_zeroize(t->pend, TLS_RECORD);
        free(t->pend);
    }
    free(t->rbuf); /* ciphertext only */
    free(t->wbuf);
    mbedtls_platform_zeroize(t, sizeof(*t));
    free(t);
    conf_release(conf);
}

void lp_tls_fingerprint(const uint8_t *der, size_t len, uint8_t fp[LP_TLS_FP_LEN])
{
    mbedtls_sha256_ret(der, len, fp, 0);
}

bool lp_tls_peer_fingerprint(const lp_tls *t, uint8_t fp[LP_TLS_FP_LEN])
{
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
    if (peer == NULL)
        return false;
    lp_tls_fingerprint(peer->raw.p, peer->raw.len, fp);
    return true;
}

/* Cert mode: the peer's certificate must be the pinned one (client) or a listed one
 * (server). mbedTLS already checked that the peer holds its private key. */
static bool peer_pinned(lp_tls *t)
{
    uint8_t fp[LP_TLS_FP_LEN];
    lp_tls_conf *c = t->conf;

    if (c->psk_mode || t->identity[0] != '\0')
        return true; /* the PSK suite ran: holding the identity's key is the proof */
    if (!lp_tls_peer_fingerprint(t, fp))
        return false;
    if (c->is_server)
        return c->fp_lookup(c->user, fp);
    uint8_t d = 0;
    for (unsigned i = 0; i < LP_TLS_FP_LEN; i++)
        d |= (uint8_t)(fp[i] ^ c->pin[i]);
    return d == 0;
}

static bool is_auth_failure(int ret)
{
    return ret == MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY || ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ||
           ret == MBEDTLS_ERR_SSL_BAD_HS_FINISHED || ret == MBEDTLS_ERR_SSL_INVALID_MAC ||
           ret == MBEDTLS_ERR_SSL_PK_TYPE_MISMATCH || ret == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE ||
           ret == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE_VERIFY;
}

lp_err lp_tls_handshake(lp_tls *t, char *err, size_t errlen)
{
    int ret = mbedtls_ssl_handshake(&t->ssl);

    t->hs_want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return LP_ERR_TRUNCATED;
    if (ret != 0) {
        describe(ret, t->auth_failed ? "peer refused" : "TLS handshake", err, errlen);
        return t->auth_failed || is_auth_failure(ret) ? LP_ERR_AUTH : LP_ERR_IO;
    }
    if (!peer_pinned(t)) {
        snprintf(err, errlen, "TLS handshake: the peer's certificate is not the one configured");
        mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED);
        return LP_ERR_AUTH;
    }
    t->gather = true;
    return LP_OK;
}

bool lp_tls_handshake_wants_write(const lp_tls *t)
{
    return t->hs_want_write;
}

const char *lp_tls_peer_identity(const lp_tls *t)
{
    return t->identity;
}

const char *lp_tls_suite(const lp_tls *t)
{
    const char *s = mbedtls_ssl_get_ciphersuite(&t->ssl);
    return s ? s : "";
}

ssize_t lp_tls_read(lp_tls *t, void *buf, size_t len, lp_err *rc)
{
    int ret = mbedtls_ssl_read(&t->ssl, buf, len);

    if (ret > 0)
        return ret;
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return 0;
    *rc = ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE ? LP_ERR_TRUNCATED
                                                                                : LP_ERR_IO;
    return -1;
}

bool lp_tls_pending(const lp_tls *t)
{
    /* Bytes read ahead are invisible to epoll: the caller must come back for them. */
    return mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 || t->rpos < t->rlen;
}

/* Finishes a record mbedTLS sealed but could not hand over whole (after WANT_WRITE). */
static lp_err finish_pending(lp_tls *t)
{
    while (t->pend_len > 0) {
        int ret = mbedtls_ssl_write(&t->ssl, t->pend, t->pend_len);
        if (ret == MBEDTLS_ERR_SSL_WANT_WRITE || ret == MBEDTLS_ERR_SSL_WANT_READ)
            return LP_ERR_TRUNCATED;
        if (ret < 0)
            return LP_ERR_IO;
        t->pend_len = 0; /* the record went out whole */
    }
    return LP_OK;
}

lp_err lp_tls_flush(lp_tls *t)
{
    lp_err rc = send_gathered(t);

    if (rc == LP_OK)
        rc = finish_pending(t);
    if (rc == LP_OK)
        rc = send_gathered(t);
    return rc;
}

bool lp_tls_wants_write(const lp_tls *t)
{
    return t->pend_len > 0 || t->wlen > 0;
}

ssize_t lp_tls_write(lp_tls *t, const void *buf, size_t len, lp_err *rc)
{
    lp_err f = finish_pending(t); /* gathered records wait for lp_tls_flush */

    if (f != LP_OK) {
        *rc = f;
        return -1;
    }
    len = LP_MIN(len, (size_t)TLS_RECORD);
    int ret = mbedtls_ssl_write(&t->ssl, buf, len);
    if (ret > 0)
        return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        /* The record is sealed inside mbedTLS but not all sent: the bytes count as taken,
         * and the same plaintext must be offered again to finish it (a private copy, so the
         * caller's buffer is free to change). */
        if (t->pend == NULL && (t->pend = malloc(TLS_RECORD)) == NULL) {
            *rc = LP_ERR_NOMEM;
            return -1;
        }
        memcpy(t->pend, buf, len);
        t->pend_len = len;
        return (ssize_t)len;
    }
    *rc = ret == MBEDTLS_ERR_SSL_WANT_READ ? LP_ERR_TRUNCATED : LP_ERR_IO;
    return -1;
}
