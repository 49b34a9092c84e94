/* tlsrec.c — TLS 1.2 AEAD records after the handshake. See tlsrec.h.
 *
 * Every record is checked in the same order: header (type, version, length bounds), then the
 * sequence number's budget, then the tag, and only then its content type's rules. Nothing is
 * handed up, and no sequence number moves, before the tag verified.
 */
#include "limpet/tlsrec.h"

#include <stdio.h>
#include <string.h>

#include "limpet/wire.h"

#define TLS12_VERSION 0x0303u
#define SEQ_LAST UINT64_MAX
#define SEQ_REKEY_MARGIN (1ull << 32) /* rekey long before the sequence numbers run out */

size_t lp_tlsrec_key_len(enum lp_tlsrec_cipher c)
{
    return c == LP_TLSREC_AES_128_GCM ? 16u : 32u;
}

size_t lp_tlsrec_iv_len(enum lp_tlsrec_cipher c)
{
    return c == LP_TLSREC_CHACHA20_POLY1305 ? 12u : 4u;
}

const char *lp_tlsrec_cipher_name(enum lp_tlsrec_cipher c)
{
    switch (c) {
    case LP_TLSREC_CHACHA20_POLY1305:
        return "chacha20-poly1305";
    case LP_TLSREC_AES_128_GCM:
        return "aes-128-gcm";
    case LP_TLSREC_AES_256_GCM:
        return "aes-256-gcm";
    }
    return "?";
}

static bool is_gcm(const struct lp_tlsrec *r)
{
    return r->cipher != LP_TLSREC_CHACHA20_POLY1305;
}

static size_t explicit_len(const struct lp_tlsrec *r)
{
    return is_gcm(r) ? LP_TLSREC_EXPLICIT : 0;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p; /* volatile: the stores must survive the optimizer */
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

static void dir_init(struct lp_tlsrec_dir *d, struct lp_aead aead, const uint8_t *iv, size_t ivlen,
                     uint64_t seq)
{
    memset(d, 0, sizeof(*d));
    d->aead = aead;
    memcpy(d->iv, iv, ivlen);
    d->seq = seq;
}

void lp_tlsrec_init(struct lp_tlsrec *r, enum lp_tlsrec_cipher cipher, struct lp_aead tx,
                    const uint8_t *tx_iv, uint64_t tx_seq, struct lp_aead rx, const uint8_t *rx_iv,
                    uint64_t rx_seq)
{
    memset(r, 0, sizeof(*r));
    r->cipher = cipher;
    dir_init(&r->tx, tx, tx_iv, lp_tlsrec_iv_len(cipher), tx_seq);
    dir_init(&r->rx, rx, rx_iv, lp_tlsrec_iv_len(cipher), rx_seq);
}

static void dir_clear(struct lp_tlsrec_dir *d)
{
    if (d->aead.ops && d->aead.ops->free)
        d->aead.ops->free(d->aead.ctx);
    d->aead.ops = NULL;
    d->aead.ctx = NULL;
    wipe(d->iv, sizeof(d->iv));
}

void lp_tlsrec_clear(struct lp_tlsrec *r)
{
    dir_clear(&r->tx);
    dir_clear(&r->rx);
}

size_t lp_tlsrec_overhead(const struct lp_tlsrec *r)
{
    return LP_TLSREC_HEADER + explicit_len(r) + LP_TLSREC_TAG;
}

/* The per-record nonce: ChaCha20 xors the sequence number into the IV's last 8 bytes
 * (RFC 7905 §2); AES-GCM follows its 4-byte salt with the explicit part (RFC 5288 §3). */
static void make_nonce(const struct lp_tlsrec *r, const struct lp_tlsrec_dir *d, uint64_t seq,
                       const uint8_t *explicit_nonce, uint8_t nonce[LP_TLSREC_NONCE])
{
    if (!is_gcm(r)) {
        uint8_t s[8];
        lp_store_u64(s, seq);
        memcpy(nonce, d->iv, LP_TLSREC_NONCE);
        for (unsigned i = 0; i < 8; i++)
            nonce[4 + i] ^= s[i];
        return;
    }
    memcpy(nonce, d->iv, 4);
    memcpy(nonce + 4, explicit_nonce, LP_TLSREC_EXPLICIT);
}

static void make_aad(uint64_t seq, uint8_t type, size_t len, uint8_t aad[LP_TLSREC_AAD])
{
    lp_store_u64(aad, seq);
    aad[8] = type;
    lp_store_u16(aad + 9, TLS12_VERSION);
    lp_store_u16(aad + 11, (uint16_t)len);
}

/* May one more record go under this key? */
static bool budget_left(const struct lp_tlsrec *r, const struct lp_tlsrec_dir *d)
{
    return !d->spent && (!is_gcm(r) || d->records < LP_TLSREC_GCM_MAX_RECORDS);
}

static void advance(struct lp_tlsrec_dir *d, size_t len)
{
    d->records++;
    d->bytes += len;
    if (d->seq == SEQ_LAST)
        d->spent = true; /* TLS sequence numbers never wrap (RFC 5246 §6.1) */
    else
        d->seq++;
}

lp_err lp_tlsrec_seal(struct lp_tlsrec *r, uint8_t type, const uint8_t *in, size_t len,
                      uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t nonce[LP_TLSREC_NONCE], aad[LP_TLSREC_AAD], seqb[8];
    size_t head = LP_TLSREC_HEADER + explicit_len(r);
    size_t total = head + len + LP_TLSREC_TAG;
    lp_err rc;

    *out_len = 0;
    if (len > LP_TLSREC_MAX_PLAIN)
        return LP_ERR_TOO_BIG;
    if (cap < total)
        return LP_ERR_NOSPACE;
    if (!budget_left(r, &r->tx)) {
        snprintf(r->why, sizeof(r->why), "no record may be sealed under this key any more");
        return LP_ERR_STATE;
    }
    /* The explicit nonce is the sequence number, as OpenSSL and mbedTLS send it: unique per
     * record under this key, which is all AES-GCM asks of it. */
    lp_store_u64(seqb, r->tx.seq);
    make_nonce(r, &r->tx, r->tx.seq, seqb, nonce);
    make_aad(r->tx.seq, type, len, aad);
    rc = r->tx.aead.ops->seal(r->tx.aead.ctx, nonce, aad, sizeof(aad), in, len, out + head,
                              out + head + len);
    if (rc != LP_OK) {
        snprintf(r->why, sizeof(r->why), "sealing a record failed");
        return rc;
    }
    out[0] = type;
    lp_store_u16(out + 1, TLS12_VERSION);
    lp_store_u16(out + 3, (uint16_t)(total - LP_TLSREC_HEADER));
    if (is_gcm(r))
        memcpy(out + LP_TLSREC_HEADER, seqb, LP_TLSREC_EXPLICIT);
    advance(&r->tx, len);
    *out_len = total;
    return LP_OK;
}

lp_err lp_tlsrec_seal_alert(struct lp_tlsrec *r, uint8_t level, uint8_t desc, uint8_t *out,
                            size_t cap, size_t *out_len)
{
    const uint8_t alert[2] = {level, desc};
    return lp_tlsrec_seal(r, LP_TLSREC_ALERT, alert, sizeof(alert), out, cap, out_len);
}

/* The header's verdict: LP_OK with *len the record's length, LP_ERR_TRUNCATED, or why not (in
 * why, when given). */
static lp_err check_header(const struct lp_tlsrec *r, const uint8_t *in, size_t avail, size_t *len,
                           char *why, size_t whylen)
{
    size_t min = explicit_len(r) + LP_TLSREC_TAG;
    size_t max = LP_TLSREC_MAX_PLAIN + min;
    uint8_t type;
    uint16_t version, length;
    struct lp_rd rd = lp_rd_init(in, avail);

    *len = LP_TLSREC_HEADER;
    lp_rd_u8(&rd, &type);
    lp_rd_u16(&rd, &version);
    lp_rd_u16(&rd, &length);
    if (rd.bad)
        return LP_ERR_TRUNCATED;
    switch (type) {
    case LP_TLSREC_APPLICATION_DATA:
    case LP_TLSREC_ALERT:
        break;
    case LP_TLSREC_HANDSHAKE:
        snprintf(why, whylen,
                 "a handshake message after the handshake (renegotiation is not allowed)");
        return LP_ERR_PROTOCOL;
    case LP_TLSREC_CHANGE_CIPHER_SPEC:
        snprintf(why, whylen, "a ChangeCipherSpec after the handshake");
        return LP_ERR_PROTOCOL;
    default:
        snprintf(why, whylen, "unknown record type %u", (unsigned)type);
        return LP_ERR_MALFORMED;
    }
    if (version != TLS12_VERSION) {
        snprintf(why, whylen, "record version 0x%04x, not TLS 1.2", (unsigned)version);
        return LP_ERR_MALFORMED;
    }
    if (length > max) {
        snprintf(why, whylen, "record of %u bytes: over the limit of %zu", (unsigned)length, max);
        return LP_ERR_TOO_BIG;
    }
    if (length < min) {
        snprintf(why, whylen, "record of %u bytes: too short for its nonce and tag",
                 (unsigned)length);
        return LP_ERR_MALFORMED;
    }
    *len = LP_TLSREC_HEADER + (size_t)length;
    return LP_OK;
}

lp_err lp_tlsrec_record_len(struct lp_tlsrec *r, const uint8_t *in, size_t avail, size_t *len)
{
    return check_header(r, in, avail, len, r->why, sizeof(r->why));
}

bool lp_tlsrec_ready(const struct lp_tlsrec *r, const uint8_t *in, size_t avail)
{
    size_t len;
    lp_err rc = check_header(r, in, avail, &len, NULL, 0);
    return rc != LP_ERR_TRUNCATED && (rc != LP_OK || len <= avail);
}

/* The content of an authenticated alert: close_notify ends cleanly, anything else breaks. */
static lp_err on_alert(struct lp_tlsrec *r, const uint8_t *p, size_t len)
{
    if (len != 2) {
        snprintf(r->why, sizeof(r->why), "alert record of %zu bytes", len);
        return LP_ERR_MALFORMED;
    }
    if (p[1] == LP_TLSREC_CLOSE_NOTIFY &&
        (p[0] == LP_TLSREC_ALERT_WARNING || p[0] == LP_TLSREC_ALERT_FATAL))
        return LP_ERR_CLOSED;
    snprintf(r->why, sizeof(r->why), "the peer sent %s alert %u",
             p[0] == LP_TLSREC_ALERT_FATAL ? "fatal" : "warning", (unsigned)p[1]);
    return LP_ERR_PROTOCOL;
}

lp_err lp_tlsrec_open(struct lp_tlsrec *r, uint8_t *rec, size_t avail, uint8_t *out, size_t out_cap,
                      struct lp_tlsrec_msg *msg)
{
    uint8_t nonce[LP_TLSREC_NONCE], aad[LP_TLSREC_AAD];
    size_t total, head = LP_TLSREC_HEADER + explicit_len(r);
    lp_err rc;

    memset(msg, 0, sizeof(*msg));
    rc = lp_tlsrec_record_len(r, rec, avail, &total);
    msg->need = total;
    if (rc != LP_OK)
        return rc;
    if (avail < total)
        return LP_ERR_TRUNCATED;
    if (!budget_left(r, &r->rx)) {
        snprintf(r->why, sizeof(r->why), "no record may be opened under this key any more");
        return LP_ERR_STATE;
    }
    size_t len = total - head - LP_TLSREC_TAG;
    uint8_t *cipher = rec + head;
    /* Alerts always open in place: only application data goes to the caller's buffer. */
    bool direct = rec[0] == LP_TLSREC_APPLICATION_DATA && out != NULL && out_cap >= len;
    uint8_t *plain = direct ? out : cipher;
    make_nonce(r, &r->rx, r->rx.seq, rec + LP_TLSREC_HEADER, nonce);
    make_aad(r->rx.seq, rec[0], len, aad);
    rc = r->rx.aead.ops->open(r->rx.aead.ctx, nonce, aad, sizeof(aad), cipher, len, cipher + len,
                              plain);
    if (rc != LP_OK) {
        snprintf(r->why, sizeof(r->why), "record %llu: %s", (unsigned long long)r->rx.seq,
                 rc == LP_ERR_AUTH ? "bad tag (corrupted or forged)" : "opening failed");
        return rc;
    }
    advance(&r->rx, len);
    if (rec[0] == LP_TLSREC_ALERT) {
        rc = on_alert(r, plain, len);
        if (rc == LP_ERR_CLOSED)
            msg->consumed = total;
        return rc;
    }
    msg->data = plain;
    msg->len = len;
    msg->consumed = total;
    return LP_OK;
}

bool lp_tlsrec_rekey_due(const struct lp_tlsrec *r, uint64_t bytes_limit)
{
    const struct lp_tlsrec_dir *d[2] = {&r->tx, &r->rx};

    for (unsigned i = 0; i < 2; i++) {
        if (bytes_limit && d[i]->bytes >= bytes_limit)
            return true;
        if (is_gcm(r) && d[i]->records >= LP_TLSREC_GCM_REKEY_RECORDS)
            return true;
        if (d[i]->spent || d[i]->seq >= SEQ_LAST - SEQ_REKEY_MARGIN)
            return true;
    }
    return false;
}
