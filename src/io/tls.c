/* tls.c — TLS 1.2 sessions: the mbedTLS 2.28 handshake, the pin check, the choice of record
 * layer after it, and the records on the mbedTLS layer. See tls.h. Configurations live in
 * tls_conf.c, the records after the hand-off in tls_fast.c.
 *
 * Certificates are not checked against a CA: each side requests the other's certificate
 * (so the peer proves it holds the key, in CertificateVerify / the ECDHE signature) and then
 * compares its SHA-256 with the configured pin. mbedTLS is told VERIFY_OPTIONAL so that a
 * self-signed certificate does not fail before our own check runs.
 */
#include "tls_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "limpet/base.h"
#include "limpet/log.h"

#define TLS_RECORD 16384u /* plaintext per record: one lp_tls_write at most */

static void describe(int ret, const char *what, char *err, size_t errlen)
{
    char buf[96];
    mbedtls_strerror(ret, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s (-0x%04x)", what, buf, (unsigned)-ret);
}

/* ---- the socket -------------------------------------------------------------------------- */

ssize_t tls_sys_send(int fd, const void *buf, size_t len)
{
    ssize_t n;
    do {
        n = send(fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t tls_sys_recv(int fd, void *buf, size_t len)
{
    ssize_t n;
    do {
        n = recv(fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

lp_err tls_send_gathered(lp_tls *t)
{
    while (t->wpos < t->wlen) {
        ssize_t n = tls_sys_send(t->fd, t->wbuf + t->wpos, t->wlen - t->wpos);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return LP_ERR_TRUNCATED;
        if (n < 0) {
            snprintf(t->err, sizeof(t->err), "send: %s", strerror(errno));
            return LP_ERR_IO;
        }
        t->wpos += (size_t)n;
    }
    t->wpos = t->wlen = 0;
    return LP_OK;
}

static int send_now(lp_tls *t, const unsigned char *buf, size_t len)
{
    ssize_t n = tls_sys_send(t->fd, buf, len);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET
                                                 : MBEDTLS_ERR_NET_SEND_FAILED;
}

/* Plain send/recv: mbedtls_net_* would ask fcntl whether the socket blocks on every call.
 * After the handshake (gather), mbedTLS's records collect in wbuf and go out together when
 * the caller flushes, instead of one send per 16 KiB record. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    lp_tls *t = ctx;
    size_t room;

    if (!t->gather)
        return send_now(t, buf, len);
    if (t->wbuf == NULL && (t->wbuf = malloc(TLS_WBUF)) == NULL)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    if (t->wlen == TLS_WBUF) {
        lp_err rc = tls_send_gathered(t);
        if (rc == LP_ERR_IO)
            return MBEDTLS_ERR_NET_SEND_FAILED;
        if (rc != LP_OK)
            return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    room = LP_MIN(len, TLS_WBUF - t->wlen);
    memcpy(t->wbuf + t->wlen, buf, room);
    t->wlen += room;
    return (int)room;
}

/* mbedTLS reads a record as two exact reads (the 5-byte header, then the body): from the
 * socket that is two system calls per record. One recv fills rbuf instead. */
static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    lp_tls *t = ctx;

    if (t->rbuf == NULL && (t->rbuf = malloc(TLS_RBUF)) == NULL)
        return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    for (;;) {
        if (t->rpos < t->rlen) {
            size_t k = LP_MIN(len, t->rlen - t->rpos);
            memcpy(buf, t->rbuf + t->rpos, k);
            t->rpos += k;
            tls_rbuf_drained(t);
            return (int)k;
        }
        ssize_t n = tls_sys_recv(t->fd, t->rbuf, TLS_RBUF);
        if (n > 0) {
            t->rpos = 0;
            t->rlen = (size_t)n;
            t->rshort = (size_t)n < TLS_RBUF;
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return MBEDTLS_ERR_SSL_WANT_READ;
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

/* ---- sessions ------------------------------------------------------------------------------ */

lp_err lp_tls_new(lp_tls_conf *conf, int fd, lp_tls **out)
{
    lp_tls *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL)
        return LP_ERR_NOMEM;
    t->conf = conf;
    conf->users++;
    t->fd = fd;
    tls_fast_prepare(t);
    if ((t->ssl = calloc(1, sizeof(*t->ssl))) == NULL) {
        lp_tls_free(t);
        return LP_ERR_NOMEM;
    }
    mbedtls_ssl_init(t->ssl);
    if (mbedtls_ssl_setup(t->ssl, &conf->ssl) != 0) {
        lp_tls_free(t);
        return LP_ERR_NOMEM;
    }
    mbedtls_ssl_set_bio(t->ssl, t, bio_send, bio_recv, NULL);
    *out = t;
    return LP_OK;
}

lp_err lp_tls_set_sni(lp_tls *t, const char *name)
{
    /* The certificate check that would compare it is VERIFY_OPTIONAL (load_own_cert): a
     * mismatch only sets a flag, and peer_pinned decides. */
    if (t->ssl == NULL) /* the handshake is over and the records are limpet's */
        return LP_ERR_STATE;
    return mbedtls_ssl_set_hostname(t->ssl, name) == 0 ? LP_OK : LP_ERR_INVALID;
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

void tls_rbuf_drained(lp_tls *t)
{
    if (t->rbuf == NULL || t->rpos < t->rlen || t->plen > 0 || !t->rshort)
        return;
    free(t->rbuf); /* ciphertext, and plaintext already handed up */
    t->rbuf = NULL;
    t->rpos = t->rlen = 0;
}

void tls_drop_keys(lp_tls *t)
{
    if (t->keys == NULL)
        return;
    mbedtls_platform_zeroize(t->keys, sizeof(*t->keys));
    free(t->keys);
    t->keys = NULL;
}

/* Frees the mbedTLS context: its record buffers, handshake state and keys (all wiped). */
static void free_ssl(lp_tls *t)
{
    if (t->ssl == NULL)
        return;
    mbedtls_ssl_free(t->ssl);
    free(t->ssl);
    t->ssl = NULL;
    if (t->pend) {
        mbedtls_platform_zeroize(t->pend, TLS_RECORD);
        free(t->pend);
        t->pend = NULL;
    }
}

/* A link that ends without breaking says so: close_notify, best effort (never blocks). */
static void close_notify(lp_tls *t)
{
    if (!t->done || t->broken || t->fd < 0)
        return;
    if (t->fast) {
        tls_fast_close_notify(t);
        return;
    }
    /* Best effort, never blocking: the link is closing anyway, and a peer that misses the
     * alert only sees EOF, which it treats as a broken link and resumes from. */
    (void)mbedtls_ssl_close_notify(t->ssl); /* gathered into wbuf */
    if (tls_send_gathered(t) != LP_OK)
        lp_debug("TLS: close_notify not sent: the socket does not take it now");
}

void lp_tls_free(lp_tls *t)
{
    lp_tls_conf *conf;

    if (t == NULL)
        return;
    conf = t->conf;
    close_notify(t);
    free_ssl(t);
    tls_drop_keys(t);
    tls_fast_unprepare(t);
    lp_tlsrec_clear(&t->rec); /* frees the AEAD contexts, which wipe their keys */
    if (t->rbuf) {            /* ciphertext, and plaintext opened in place */
        mbedtls_platform_zeroize(t->rbuf, TLS_RBUF);
        free(t->rbuf);
    }
    free(t->wbuf); /* ciphertext only */
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
    if (t->has_fp)
        memcpy(fp, t->fp, LP_TLS_FP_LEN);
    return t->has_fp;
}

/* Kept from the mbedTLS context before it may be freed. */
static void note_peer(lp_tls *t)
{
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(t->ssl);
    const char *suite = mbedtls_ssl_get_ciphersuite(t->ssl);

    t->suite = suite ? suite : ""; /* a static string of mbedTLS's suite table */
    t->has_fp = peer != NULL;
    if (peer)
        lp_tls_fingerprint(peer->raw.p, peer->raw.len, t->fp);
}

/* Cert mode: the peer's certificate must be the pinned one (client) or a listed one
 * (server). mbedTLS already checked that the peer holds its private key. */
static bool peer_pinned(lp_tls *t)
{
    lp_tls_conf *c = t->conf;

    if (c->psk_mode || t->identity[0] != '\0')
        return true; /* the PSK suite ran: holding the identity's key is the proof */
    if (!t->has_fp)
        return false;
    if (c->is_server)
        return c->fp_lookup(c->user, t->fp);
    uint8_t d = 0;
    for (unsigned i = 0; i < LP_TLS_FP_LEN; i++)
        d |= (uint8_t)(t->fp[i] ^ c->pin[i]);
    return d == 0;
}

static bool is_auth_failure(int ret)
{
    return ret == MBEDTLS_ERR_SSL_UNKNOWN_IDENTITY || ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ||
           ret == MBEDTLS_ERR_SSL_BAD_HS_FINISHED || ret == MBEDTLS_ERR_SSL_INVALID_MAC ||
           ret == MBEDTLS_ERR_SSL_PK_TYPE_MISMATCH || ret == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE ||
           ret == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE_VERIFY;
}

/* The handshake is done and the peer is who it should be: the records go to tlsrec when the
 * configuration asks for it and they can, else they stay with mbedTLS. */
static void choose_record_layer(lp_tls *t)
{
    t->done = true;
    if (t->conf->layer == LP_TLS_LAYER_OPENSSL) {
        const char *why = tls_fast_switch(t);
        if (why != NULL)
            lp_warn("TLS %s: the records stay with mbedTLS: %s", t->suite, why);
    }
    tls_drop_keys(t); /* tlsrec's AEADs hold the keys now, if anyone does */
    t->gather = !t->fast;
}

lp_err lp_tls_handshake(lp_tls *t, char *err, size_t errlen)
{
    int ret;

    if (t->done)
        return LP_OK;
    t->conf->current = t; /* for the PSK and key-export callbacks */
    ret = mbedtls_ssl_handshake(t->ssl);
    t->conf->current = NULL;
    t->hs_want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return LP_ERR_TRUNCATED;
    if (ret != 0) {
        describe(ret, t->auth_failed ? "peer refused" : "TLS handshake", err, errlen);
        return t->auth_failed || is_auth_failure(ret) ? LP_ERR_AUTH : LP_ERR_IO;
    }
    note_peer(t);
    if (!peer_pinned(t)) {
        snprintf(err, errlen, "TLS handshake: the peer's certificate is not the one configured");
        mbedtls_ssl_send_alert_message(t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED);
        t->broken = true;
        return LP_ERR_AUTH;
    }
    choose_record_layer(t);
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
    return t->suite ? t->suite : "";
}

const char *lp_tls_record_layer(const lp_tls *t)
{
    return lp_tls_layer_name(t->fast ? LP_TLS_LAYER_OPENSSL : LP_TLS_LAYER_MBEDTLS);
}

const char *lp_tls_error(const lp_tls *t)
{
    return t->err;
}

bool lp_tls_rekey_due(const lp_tls *t, uint64_t bytes)
{
    if (!t->done)
        return false;
    if (t->fast)
        return lp_tlsrec_rekey_due(&t->rec, bytes);
    return bytes && (t->plain_in >= bytes || t->plain_out >= bytes);
}

/* ---- records on the mbedTLS layer ------------------------------------------------------------ */

static ssize_t mbed_failed(lp_tls *t, int ret, lp_err *rc)
{
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
        *rc = LP_ERR_TRUNCATED;
        return -1;
    }
    describe(ret, "TLS", t->err, sizeof(t->err));
    t->broken = true;
    *rc = LP_ERR_IO;
    return -1;
}

ssize_t lp_tls_read(lp_tls *t, void *buf, size_t len, lp_err *rc)
{
    if (t->fast)
        return tls_fast_read(t, buf, len, rc);
    int ret = mbedtls_ssl_read(t->ssl, buf, len);
    if (ret > 0) {
        t->plain_in += (uint64_t)ret;
        return ret;
    }
    if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        snprintf(t->err, sizeof(t->err), "the peer ended the link (TLS close_notify)");
        return 0;
    }
    if (ret == 0) {
        t->broken = true; /* EOF without close_notify */
        return 0;
    }
    return mbed_failed(t, ret, rc);
}

bool lp_tls_pending(const lp_tls *t)
{
    if (t->fast)
        return tls_fast_pending(t);
    /* Bytes read ahead are invisible to epoll: the caller must come back for them. */
    return mbedtls_ssl_get_bytes_avail(t->ssl) > 0 || t->rpos < t->rlen;
}

/* Finishes a record mbedTLS sealed but could not hand over whole (after WANT_WRITE). */
static lp_err finish_pending(lp_tls *t)
{
    while (t->pend_len > 0) {
        int ret = mbedtls_ssl_write(t->ssl, t->pend, t->pend_len);
        if (ret == MBEDTLS_ERR_SSL_WANT_WRITE || ret == MBEDTLS_ERR_SSL_WANT_READ)
            return LP_ERR_TRUNCATED;
        if (ret < 0) {
            describe(ret, "TLS", t->err, sizeof(t->err));
            return LP_ERR_IO;
        }
        t->pend_len = 0; /* the record went out whole */
    }
    return LP_OK;
}

lp_err lp_tls_flush(lp_tls *t)
{
    lp_err rc = tls_send_gathered(t);

    if (rc == LP_OK && !t->fast)
        rc = finish_pending(t);
    if (rc == LP_OK && !t->fast)
        rc = tls_send_gathered(t);
    if (rc == LP_ERR_IO)
        t->broken = true;
    if (rc == LP_OK && t->fast) { /* all sent: an idle link holds no buffer (see TLS_WBUF) */
        free(t->wbuf);
        t->wbuf = NULL;
    }
    return rc;
}

bool lp_tls_wants_write(const lp_tls *t)
{
    return t->pend_len > 0 || t->wpos < t->wlen;
}

ssize_t lp_tls_write(lp_tls *t, const void *buf, size_t len, lp_err *rc)
{
    if (t->fast)
        return tls_fast_write(t, buf, len, rc);
    lp_err f = finish_pending(t); /* gathered records wait for lp_tls_flush */
    if (f != LP_OK) {
        t->broken = f == LP_ERR_IO;
        *rc = f;
        return -1;
    }
    len = LP_MIN(len, (size_t)TLS_RECORD);
    int ret = mbedtls_ssl_write(t->ssl, buf, len);
    if (ret > 0) {
        t->plain_out += (uint64_t)ret;
        return ret;
    }
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
        t->plain_out += len;
        return (ssize_t)len;
    }
    return mbed_failed(t, ret, rc);
}
