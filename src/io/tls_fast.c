/* tls_fast.c — a link's records after the hand-off: tlsrec (src/core/tlsrec.c) over
 * libcrypto's AEAD, with the mbedTLS context freed. See tls.h.
 *
 * Reading: one recv fills rbuf with as many records as the socket holds; each whole record
 * is opened straight into the caller's buffer when its plaintext fits there, else in place
 * in rbuf and served from there. Writing: each call seals one record from the caller's
 * buffer into wbuf, and wbuf goes out in one send when it is full or flushed. So the only
 * passes over the bytes are the AEAD's and the kernel's, as on the plain-TCP path.
 */
#include "tls_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h> /* malloc_trim */
#endif

#include <mbedtls/platform_util.h>

#include "limpet/aead.h"
#include "limpet/base.h"

/* The cipher of an mbedTLS suite name, false when tlsrec has none for it. */
static bool cipher_of(const char *suite, enum lp_tlsrec_cipher *c)
{
    if (strstr(suite, "-CHACHA20-POLY1305-"))
        *c = LP_TLSREC_CHACHA20_POLY1305;
    else if (strstr(suite, "-AES-128-GCM-"))
        *c = LP_TLSREC_AES_128_GCM;
    else if (strstr(suite, "-AES-256-GCM-"))
        *c = LP_TLSREC_AES_256_GCM;
    else
        return false;
    return true;
}

/* What mbedTLS might still hold that tlsrec would never see: then no hand-off. */
static const char *mbedtls_holds(lp_tls *t)
{
    if (mbedtls_ssl_check_pending(t->ssl))
        return "mbedTLS holds a record it read but has not processed";
    if (mbedtls_ssl_get_bytes_avail(t->ssl) > 0)
        return "mbedTLS holds decrypted bytes not yet read";
    if (t->ssl->out_left > 0 || t->pend_len > 0)
        return "mbedTLS holds output not yet sent";
    return NULL;
}

/* A handshake leaves ~40 KiB of freed memory behind (mbedTLS's record buffers, its handshake
 * state, the big-number scratch of ECDHE): glibc keeps it resident in the heap, and a burst of
 * handshakes would leave the server that much bigger per session than its idle links need.
 * malloc_trim hands whole free pages back to the kernel (~2 us when there is little to give);
 * the next handshake faults a few pages in again. */
static void release_freed_memory(void)
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

static uint64_t counter(const unsigned char *ctr)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v = v << 8 | ctr[i];
    return v;
}

void tls_fast_prepare(lp_tls *t)
{
    lp_tls_conf *c = t->conf;
    char err[128];

    if (c->layer != LP_TLS_LAYER_OPENSSL)
        return;
    /* the suite set_suites puts first; a PSK client of a server with a certificate gets
     * another, and the switch then makes its own contexts */
    t->pre_cipher = c->has_cert && lp_tls_prefers_aes_gcm() ? LP_TLSREC_AES_128_GCM
                                                            : LP_TLSREC_CHACHA20_POLY1305;
    if (lp_aead_evp_new(t->pre_cipher, NULL, true, &t->pre_tx, err, sizeof(err)) != LP_OK)
        return;
    if (lp_aead_evp_new(t->pre_cipher, NULL, false, &t->pre_rx, err, sizeof(err)) != LP_OK) {
        t->pre_tx.ops->free(t->pre_tx.ctx);
        return;
    }
    t->pre = true;
}

void tls_fast_unprepare(lp_tls *t)
{
    if (!t->pre)
        return;
    t->pre_tx.ops->free(t->pre_tx.ctx);
    t->pre_rx.ops->free(t->pre_rx.ctx);
    t->pre = false;
}

/* The two AEADs of cipher keyed for this side: the prepared ones when they fit. */
static lp_err make_aeads(lp_tls *t, enum lp_tlsrec_cipher cipher, const uint8_t *txkey,
                         const uint8_t *rxkey, struct lp_aead *tx, struct lp_aead *rx)
{
    char err[128];

    if (t->pre && t->pre_cipher == cipher && lp_aead_evp_set_key(&t->pre_tx, txkey) == LP_OK &&
        lp_aead_evp_set_key(&t->pre_rx, rxkey) == LP_OK) {
        *tx = t->pre_tx;
        *rx = t->pre_rx;
        t->pre = false; /* taken */
        return LP_OK;
    }
    tls_fast_unprepare(t);
    if (lp_aead_evp_new(cipher, txkey, true, tx, err, sizeof(err)) != LP_OK ||
        lp_aead_evp_new(cipher, rxkey, false, rx, err, sizeof(err)) != LP_OK) {
        if (tx->ops)
            tx->ops->free(tx->ctx);
        snprintf(t->err, sizeof(t->err), "%s", err);
        return LP_ERR_IO;
    }
    return LP_OK;
}

const char *tls_fast_switch(lp_tls *t)
{
    enum lp_tlsrec_cipher cipher;
    struct lp_aead tx = {0}, rx = {0};
    const char *why;

    if (!cipher_of(t->suite, &cipher))
        return "no fast record layer for this suite";
    if (t->keys == NULL)
        return "mbedTLS did not export the key block";
    if (t->keys->keylen != lp_tlsrec_key_len(cipher) || t->keys->ivlen != lp_tlsrec_iv_len(cipher))
        return "the exported key block does not fit the suite";
    if ((why = mbedtls_holds(t)) != NULL)
        return why;
    /* key block: client_write_key | server_write_key | client_write_IV | server_write_IV */
    const uint8_t *ckey = t->keys->block, *skey = ckey + t->keys->keylen;
    const uint8_t *civ = skey + t->keys->keylen, *siv = civ + t->keys->ivlen;
    bool server = t->conf->is_server;
    if (make_aeads(t, cipher, server ? skey : ckey, server ? ckey : skey, &tx, &rx) != LP_OK)
        return t->err;
    /* Both are 1 after Finished; read them anyway, the numbers are mbedTLS's to give. */
    lp_tlsrec_init(&t->rec, cipher, tx, server ? siv : civ, counter(t->ssl->cur_out_ctr), rx,
                   server ? civ : siv, counter(t->ssl->in_ctr));
    /* Ciphertext already read ahead (rbuf) is the peer's next records: tlsrec opens them. */
    mbedtls_ssl_free(t->ssl);
    free(t->ssl);
    t->ssl = NULL;
    t->fast = true;
    release_freed_memory();
    return NULL;
}

/* ---- reading ------------------------------------------------------------------------------ */

static ssize_t broke(lp_tls *t, lp_err *rc, lp_err e, const char *why)
{
    if (why != t->err)
        snprintf(t->err, sizeof(t->err), "%s", why);
    t->broken = true;
    *rc = e;
    return -1;
}

/* Reads more ciphertext so that `need` bytes from rpos can be whole. LP_OK: more came;
 * LP_ERR_TRUNCATED: the socket has none now; LP_ERR_CLOSED: EOF; LP_ERR_IO / NOMEM. */
static lp_err fill(lp_tls *t, size_t need)
{
    if (t->rbuf == NULL && (t->rbuf = malloc(TLS_RBUF)) == NULL)
        return LP_ERR_NOMEM;
    if (t->rpos == t->rlen) {
        t->rpos = t->rlen = 0;
    } else if (TLS_RBUF - t->rpos < need) { /* the record would not fit: move it to the front */
        memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
        t->rlen -= t->rpos;
        t->rpos = 0;
    }
    ssize_t n = tls_sys_recv(t->fd, t->rbuf + t->rlen, TLS_RBUF - t->rlen);
    if (n > 0) {
        t->rshort = (size_t)n < TLS_RBUF - t->rlen;
        t->rlen += (size_t)n;
        return LP_OK;
    }
    if (n == 0)
        return LP_ERR_CLOSED;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (t->rlen == 0) { /* an idle link holds no buffer */
            free(t->rbuf);
            t->rbuf = NULL;
        }
        return LP_ERR_TRUNCATED;
    }
    snprintf(t->err, sizeof(t->err), "recv: %s", strerror(errno));
    return LP_ERR_IO;
}

static size_t serve_plain(lp_tls *t, void *buf, size_t len)
{
    size_t k = LP_MIN(len, t->plen);
    memcpy(buf, t->rbuf + t->ppos, k);
    t->ppos += k;
    t->plen -= k;
    tls_rbuf_drained(t);
    return k;
}

/* Opens the whole record at rpos. > 0: bytes given to buf; 0: nothing for the caller (an
 * empty record, or plaintext kept in rbuf); -1: refused (rc set); -2: close_notify. */
static ssize_t open_record(lp_tls *t, void *buf, size_t len, size_t total, lp_err *rc)
{
    struct lp_tlsrec_msg m;
    size_t plain_max = total - lp_tlsrec_overhead(&t->rec);
    bool direct = len >= plain_max; /* straight into the caller's buffer: no copy */
    lp_err e = lp_tlsrec_open(&t->rec, t->rbuf + t->rpos, t->rlen - t->rpos, direct ? buf : NULL,
                              direct ? len : 0, &m);

    if (e == LP_ERR_CLOSED) {
        t->rpos += m.consumed;
        t->peer_closed = true;
        snprintf(t->err, sizeof(t->err), "the peer ended the link (TLS close_notify)");
        return -2;
    }
    if (e != LP_OK) /* a refused record: the peer (or the path) broke the protocol */
        return broke(t, rc, LP_ERR_PROTOCOL, t->rec.why);
    t->rpos += m.consumed;
    if (m.len == 0 || m.data == buf) {
        tls_rbuf_drained(t);
        return (ssize_t)m.len;
    }
    t->ppos = (size_t)(m.data - t->rbuf);
    t->plen = m.len;
    return 0;
}

/* After a record went straight into buf (got bytes), the whole application-data records
 * read ahead behind it follow while their plaintext fits: one read hands up what one recv
 * brought, as on the plain-TCP path, instead of one record per call (which made the server,
 * among others, write to its targets sixteen times as often). An alert, a partial record or
 * a refused one waits for the next call. */
static size_t open_more(lp_tls *t, uint8_t *buf, size_t len, size_t got)
{
    size_t need, overhead = lp_tlsrec_overhead(&t->rec);
    lp_err rc;

    while (got < len && t->rbuf != NULL && t->plen == 0) {
        const uint8_t *rec = t->rbuf + t->rpos;
        size_t avail = t->rlen - t->rpos;
        if (lp_tlsrec_record_len(&t->rec, rec, avail, &need) != LP_OK || need > avail ||
            rec[0] != LP_TLSREC_APPLICATION_DATA || len - got < need - overhead)
            break;
        ssize_t n = open_record(t, buf + got, len - got, need, &rc);
        if (n < 0)
            break; /* the next call meets it again and says so */
        got += (size_t)n;
    }
    return got;
}

ssize_t tls_fast_read(lp_tls *t, void *buf, size_t len, lp_err *rc)
{
    for (;;) {
        size_t need = LP_TLSREC_HEADER;
        if (t->plen > 0)
            return (ssize_t)serve_plain(t, buf, len);
        if (t->peer_closed)
            return 0;
        lp_err e = t->rbuf == NULL
                       ? LP_ERR_TRUNCATED
                       : lp_tlsrec_record_len(&t->rec, t->rbuf + t->rpos, t->rlen - t->rpos, &need);
        if (e == LP_OK && need <= t->rlen - t->rpos) {
            ssize_t n = open_record(t, buf, len, need, rc);
            if (n == -2)
                return 0;
            if (n > 0)
                return (ssize_t)open_more(t, buf, len, (size_t)n);
            if (n < 0)
                return n;
            continue;
        }
        if (e != LP_OK && e != LP_ERR_TRUNCATED)
            return broke(t, rc, LP_ERR_PROTOCOL, t->rec.why);
        if ((e = fill(t, need)) == LP_OK)
            continue;
        if (e == LP_ERR_TRUNCATED) {
            *rc = e;
            return -1;
        }
        if (e == LP_ERR_CLOSED) { /* EOF without close_notify: the link broke */
            t->broken = true;
            snprintf(t->err, sizeof(t->err), "the peer closed the connection without close_notify");
            return 0;
        }
        return broke(t, rc, e, e == LP_ERR_NOMEM ? "out of memory" : t->err);
    }
}

bool tls_fast_pending(const lp_tls *t)
{
    /* A whole record, or a header already known to be refused: a read makes progress. A
     * partial record does not: the socket must bring the rest, and epoll will say so. */
    if (t->plen > 0)
        return true;
    if (t->rbuf == NULL || t->peer_closed)
        return false;
    return lp_tlsrec_ready(&t->rec, t->rbuf + t->rpos, t->rlen - t->rpos);
}

/* ---- writing ------------------------------------------------------------------------------ */

ssize_t tls_fast_write(lp_tls *t, const void *buf, size_t len, lp_err *rc)
{
    size_t n;

    len = LP_MIN(len, (size_t)LP_TLSREC_MAX_PLAIN);
    size_t need = len + lp_tlsrec_overhead(&t->rec);
    if (t->wbuf == NULL && (t->wbuf = malloc(TLS_WBUF)) == NULL)
        return broke(t, rc, LP_ERR_NOMEM, "out of memory");
    if (TLS_WBUF - t->wlen < need) {
        lp_err e = tls_send_gathered(t);
        if (e == LP_ERR_IO)
            return broke(t, rc, e, t->err);
        if (TLS_WBUF - t->wlen < need && t->wpos > 0) { /* the sent part makes room */
            memmove(t->wbuf, t->wbuf + t->wpos, t->wlen - t->wpos);
            t->wlen -= t->wpos;
            t->wpos = 0;
        }
        if (TLS_WBUF - t->wlen < need) {
            *rc = LP_ERR_TRUNCATED;
            return -1;
        }
    }
    lp_err e = lp_tlsrec_seal(&t->rec, LP_TLSREC_APPLICATION_DATA, buf, len, t->wbuf + t->wlen,
                              TLS_WBUF - t->wlen, &n);
    if (e != LP_OK)
        return broke(t, rc, LP_ERR_IO, t->rec.why);
    t->wlen += n;
    return (ssize_t)len;
}

void tls_fast_close_notify(lp_tls *t)
{
    uint8_t rec[LP_TLSREC_HEADER + LP_TLSREC_EXPLICIT + 2 + LP_TLSREC_TAG];
    size_t n;

    /* After what is already gathered, or not at all: the peer must not see it out of order. */
    if (t->wpos < t->wlen && tls_send_gathered(t) != LP_OK)
        return;
    if (lp_tlsrec_seal_alert(&t->rec, LP_TLSREC_ALERT_WARNING, LP_TLSREC_CLOSE_NOTIFY, rec,
                             sizeof(rec), &n) == LP_OK)
        (void)tls_sys_send(t->fd, rec, n);
}
