/* tlsrec.h — TLS 1.2 record protection after the handshake, sans-I/O.
 *
 * mbedTLS does the handshake; once it is done, the link protects its records with this core
 * and an AEAD from OpenSSL's libcrypto (the hand-off the kernel's kTLS does for user-space TLS
 * libraries). The records stay standard TLS 1.2, so any TLS 1.2 peer reads them:
 *
 *   record     type u8 | version u16 (0x0303) | length u16 | fragment[length]
 *   ChaCha20-Poly1305 (RFC 7905)   fragment = ciphertext | tag[16]
 *                                  nonce    = IV[12] xor (0[4] | seq u64)
 *   AES-GCM (RFC 5288)             fragment = explicit_nonce[8] | ciphertext | tag[16]
 *                                  nonce    = salt[4] | explicit_nonce (we send seq; the
 *                                             receiver uses what it receives)
 *   additional data (RFC 5246 §6.2.3.3) = seq u64 | type u8 | version u16 | plaintext length u16
 *
 * At most 2^14 plaintext bytes per record. Sequence numbers start where the handshake left
 * them (1 after Finished) and never wrap: the record with sequence number 2^64-1 is the last
 * one either way, after which seal and open refuse (LP_ERR_STATE).
 *
 * What the opener accepts after the handshake: application data, and one alert, close_notify
 * (LP_ERR_CLOSED: a clean end). Any other alert, a handshake message (HelloRequest, a
 * renegotiation), a ChangeCipherSpec, an unknown type or version, a record over the limits or
 * with a bad tag is refused with a reason in `why`: the link is then broken. Plaintext is
 * handed up only after its tag verified.
 *
 * The core never touches a cipher itself: it calls an AEAD through struct lp_aead (libcrypto
 * behind it in the program, anything in tests and fuzzing), so it needs no crypto library.
 */
#ifndef LIMPET_TLSREC_H
#define LIMPET_TLSREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_TLSREC_HEADER 5u
#define LP_TLSREC_TAG 16u
#define LP_TLSREC_NONCE 12u
#define LP_TLSREC_EXPLICIT 8u /* AES-GCM's explicit nonce on the wire */
#define LP_TLSREC_MAX_PLAIN 16384u
#define LP_TLSREC_MAX_OVERHEAD (LP_TLSREC_HEADER + LP_TLSREC_EXPLICIT + LP_TLSREC_TAG)
#define LP_TLSREC_MAX_RECORD (LP_TLSREC_MAX_PLAIN + LP_TLSREC_MAX_OVERHEAD)
#define LP_TLSREC_AAD 13u
#define LP_TLSREC_KEY_MAX 32u

/* AES-GCM: a key seals at most 2^24 records (the margin RFC 8446 §5.5 asks for, well inside
 * the bound of NIST SP 800-38D), and a link asks to be rekeyed at half of that. */
#define LP_TLSREC_GCM_MAX_RECORDS (1ull << 24)
#define LP_TLSREC_GCM_REKEY_RECORDS (1ull << 23)

/* Record content types (RFC 5246 §6.2.1) and the alerts this core speaks. */
enum {
    LP_TLSREC_CHANGE_CIPHER_SPEC = 20,
    LP_TLSREC_ALERT = 21,
    LP_TLSREC_HANDSHAKE = 22,
    LP_TLSREC_APPLICATION_DATA = 23,
};
#define LP_TLSREC_ALERT_WARNING 1
#define LP_TLSREC_ALERT_FATAL 2
#define LP_TLSREC_CLOSE_NOTIFY 0

enum lp_tlsrec_cipher {
    LP_TLSREC_CHACHA20_POLY1305, /* 32-byte key, 12-byte IV */
    LP_TLSREC_AES_128_GCM,       /* 16-byte key, 4-byte salt */
    LP_TLSREC_AES_256_GCM,       /* 32-byte key, 4-byte salt */
};

/* Key and fixed-IV lengths of a cipher, as the TLS 1.2 key block (RFC 5246 §6.3) holds them. */
size_t lp_tlsrec_key_len(enum lp_tlsrec_cipher c);
size_t lp_tlsrec_iv_len(enum lp_tlsrec_cipher c);
const char *lp_tlsrec_cipher_name(enum lp_tlsrec_cipher c);

/* An AEAD with its key set, one direction. The nonce is always 12 bytes, the tag 16.
 * seal: in == out (in place) or no overlap; writes len bytes to out and the tag.
 * open: the same; LP_ERR_AUTH when the tag does not verify (out then holds bytes that must
 *       not be used). Other errors are the library's failure (LP_ERR_IO).
 * free: releases ctx and wipes its key; NULL-safe. */
struct lp_aead_ops {
    lp_err (*seal)(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                   size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                   uint8_t tag[LP_TLSREC_TAG]);
    lp_err (*open)(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                   size_t aad_len, const uint8_t *in, size_t len, const uint8_t tag[LP_TLSREC_TAG],
                   uint8_t *out);
    void (*free)(void *ctx);
};

struct lp_aead {
    const struct lp_aead_ops *ops; /* NULL: none */
    void *ctx;
};

/* One direction's state. */
struct lp_tlsrec_dir {
    struct lp_aead aead;         /* owned */
    uint8_t iv[LP_TLSREC_NONCE]; /* ChaCha20: the 12-byte IV; AES-GCM: the 4-byte salt first */
    uint64_t seq;                /* sequence number of the next record */
    bool spent;                  /* the record numbered 2^64-1 went: no more under this key */
    uint64_t records;            /* records under this key so far */
    uint64_t bytes;              /* plaintext bytes under this key so far */
};

struct lp_tlsrec {
    enum lp_tlsrec_cipher cipher;
    struct lp_tlsrec_dir tx, rx;
    char why[96]; /* the last refusal, for the log (never key material) */
};

/* What one opened record turned out to be. */
struct lp_tlsrec_msg {
    const uint8_t *data; /* LP_OK: the plaintext (in out, or in place in the record) */
    size_t len;
    size_t consumed; /* record bytes used up (LP_OK, LP_ERR_CLOSED); 0 otherwise */
    size_t need;     /* LP_ERR_TRUNCATED: the whole record's length when the header is in,
                        else LP_TLSREC_HEADER */
};

/* Takes both AEADs (freed by lp_tlsrec_clear, also on the error paths of the caller). iv:
 * lp_tlsrec_iv_len(cipher) bytes each. tx_seq / rx_seq: the next sequence numbers. */
void lp_tlsrec_init(struct lp_tlsrec *r, enum lp_tlsrec_cipher cipher, struct lp_aead tx,
                    const uint8_t *tx_iv, uint64_t tx_seq, struct lp_aead rx, const uint8_t *rx_iv,
                    uint64_t rx_seq);
/* Frees the AEADs and wipes the IVs. Safe twice. */
void lp_tlsrec_clear(struct lp_tlsrec *r);

/* Record bytes added to len plaintext bytes: header, explicit nonce, tag. */
size_t lp_tlsrec_overhead(const struct lp_tlsrec *r);

/* Seals one record of `type` carrying in[0..len) (len <= 2^14) into out, which must hold
 * len + lp_tlsrec_overhead bytes; in may sit exactly at out + overhead - LP_TLSREC_TAG (in
 * place) or not overlap out. *out_len gets the record's length. LP_ERR_TOO_BIG, LP_ERR_NOSPACE,
 * LP_ERR_STATE (the sequence numbers or the AES-GCM record budget are spent). */
LP_MUST_USE lp_err lp_tlsrec_seal(struct lp_tlsrec *r, uint8_t type, const uint8_t *in, size_t len,
                                  uint8_t *out, size_t cap, size_t *out_len);
/* Seals a two-byte alert (level, description) the same way. */
LP_MUST_USE lp_err lp_tlsrec_seal_alert(struct lp_tlsrec *r, uint8_t level, uint8_t desc,
                                        uint8_t *out, size_t cap, size_t *out_len);

/* Reads the header at in[0..avail): LP_OK with *len the whole record's length when the header
 * is acceptable, LP_ERR_TRUNCATED when fewer than LP_TLSREC_HEADER bytes are there, another
 * error (reason in r->why) when the header alone shows the record is refused. */
LP_MUST_USE lp_err lp_tlsrec_record_len(struct lp_tlsrec *r, const uint8_t *in, size_t avail,
                                        size_t *len);

/* True when lp_tlsrec_open on in[0..avail) would not wait for more bytes: a whole record, or
 * a header already refused. False for nothing or part of a record. */
bool lp_tlsrec_ready(const struct lp_tlsrec *r, const uint8_t *in, size_t avail);

/* Opens the record at rec[0..avail). When out_cap holds the whole plaintext, it is written to
 * out; else (out may be NULL) it is decrypted in place and msg->data points into rec. Returns:
 *   LP_OK             application data: msg->data, msg->len (len may be 0)
 *   LP_ERR_CLOSED     the peer's close_notify: a clean end; nothing more will be opened
 *   LP_ERR_TRUNCATED  the record is not whole yet (msg->need says how long it is)
 *   anything else     refused, reason in r->why: LP_ERR_AUTH (bad tag), LP_ERR_PROTOCOL
 *                     (an alert, handshake or ChangeCipherSpec record), LP_ERR_MALFORMED,
 *                     LP_ERR_TOO_BIG, LP_ERR_STATE (sequence numbers spent).
 * The sequence number moves only past a record whose tag verified. */
LP_MUST_USE lp_err lp_tlsrec_open(struct lp_tlsrec *r, uint8_t *rec, size_t avail, uint8_t *out,
                                  size_t out_cap, struct lp_tlsrec_msg *msg);

/* True when the link should be replaced by a fresh handshake: either direction has carried
 * `bytes_limit` plaintext bytes (0: no byte limit), an AES-GCM key is at half its record
 * budget, or a sequence number is within 2^32 of running out. */
bool lp_tlsrec_rekey_due(const struct lp_tlsrec *r, uint64_t bytes_limit);

#endif
