/* tls_internal.h — what tls.c (configurations, the mbedTLS handshake and record layer) and
 * tls_fast.c (the records after the hand-off, by tlsrec over libcrypto) share. Not a module
 * header: nothing outside these two files includes it. */
#ifndef LIMPET_TLS_INTERNAL_H
#define LIMPET_TLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "limpet/tls.h"
#include "limpet/tlsrec.h"

#define TLS_SUITES_MAX 6

struct lp_tls_conf {
    mbedtls_ssl_config ssl;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    int suites[TLS_SUITES_MAX];
    bool is_server;
    bool psk_mode;   /* PSK only: no certificate to check */
    bool offers_psk; /* the ECDHE-PSK suite offered */
    bool has_cert;   /* ECDHE-ECDSA suites offered */
    bool has_pin;
    enum lp_tls_layer layer;      /* who protects the records after the handshake */
    uint8_t pin[LP_TLS_FP_LEN];   /* client, cert mode: the server's fingerprint */
    lp_tls_psk_lookup psk_lookup; /* server, PSK mode */
    lp_tls_fp_lookup fp_lookup;   /* server, cert mode */
    void *user;
    /* The session whose mbedtls_ssl_handshake is running: mbedTLS 2.28 calls the PSK and
     * key-export callbacks with the configuration's context only, and handshakes run one
     * at a time on the loop thread, inside lp_tls_handshake. */
    struct lp_tls *current;
    size_t users;               /* lp_tls objects made from this conf and not yet freed */
    void (*on_idle)(void *arg); /* called when users falls to 0 (a retired conf is freed) */
    void *idle_arg;
};

/* The RFC 5246 §6.3 key block of an AEAD suite as mbedTLS exported it: client_write_key,
 * server_write_key, client_write_IV, server_write_IV. Held from the export to the hand-off
 * only (then wiped and freed), so an idle link does not carry it. */
#define TLS_KEYBLOCK_MAX (2u * LP_TLSREC_KEY_MAX + 2u * LP_TLSREC_NONCE)
struct tls_keys {
    size_t keylen, ivlen;
    uint8_t block[TLS_KEYBLOCK_MAX];
};

struct lp_tls {
    mbedtls_ssl_context *ssl; /* the handshake and, on the mbedTLS layer, the records; freed
                                 (with its 16 KiB buffers) once tlsrec takes over */
    lp_tls_conf *conf;
    int fd;
    bool auth_failed;   /* a callback refused the peer: report LP_ERR_AUTH */
    bool hs_want_write; /* the handshake last waited to write */
    bool done;          /* the handshake finished and the peer is the one configured */
    bool fast;          /* records by tlsrec over libcrypto (ssl is NULL) */
    bool broken;        /* a read or write failed: no close_notify at the end */
    bool peer_closed;   /* the peer's close_notify came: nothing more to read */
    char identity[LP_TLS_IDENTITY_MAX + 1];
    const char *suite; /* static name, kept past the mbedTLS context */
    bool has_fp;
    uint8_t fp[LP_TLS_FP_LEN]; /* the peer certificate's, kept past the mbedTLS context */
    char err[128];             /* the last failure after the handshake (never a secret) */
    struct tls_keys *keys;     /* exported by mbedTLS; freed once tlsrec holds the keys */

    /* mbedTLS layer */
    uint8_t *pend;                /* a record mbedTLS holds after WANT_WRITE: its plaintext */
    size_t pend_len;              /* (mbedTLS wants the same buffer again to finish it) */
    bool gather;                  /* handshake done: sealed records collect in wbuf */
    uint64_t plain_in, plain_out; /* plaintext carried, for the rekey */

    /* both layers: ciphertext read ahead and sealed records not yet sent */
    uint8_t *rbuf; /* TLS_RBUF bytes while it holds something (see tls_rbuf_drained) */
    size_t rpos, rlen;
    bool rshort;   /* the last recv did not fill rbuf: the socket had nothing more then */
    uint8_t *wbuf; /* TLS_WBUF bytes once allocated */
    size_t wpos, wlen;

    /* tlsrec layer */
    bool pre; /* pre_tx/pre_rx made for pre_cipher, keyless, at lp_tls_new */
    enum lp_tlsrec_cipher pre_cipher;
    struct lp_aead pre_tx, pre_rx;
    struct lp_tlsrec rec;
    size_t ppos, plen; /* opened plaintext still in rbuf (a record opened in place) */
};

/* One recv fills this and records are served from it, instead of mbedTLS's two reads (header,
 * body) per record; as large as the pipe's receive buffer, so a busy link reads as much per
 * system call as a plain-TCP one. Held only while busy: an idle link frees it. */
#define TLS_RBUF (256u * 1024u)
/* Sealed records gather here and go out in one send: sixteen whole records, ~256 KiB, as much
 * as the pipe hands out at once (its OUT_MAX). Measured on loopback: ~10% less CPU per byte on
 * both ends than with four. Freed once flushed. */
#define TLS_WBUF (16u * LP_TLSREC_MAX_RECORD)

/* tls.c */
/* Frees rbuf once everything in it is used up and the socket had nothing more at the last
 * recv: an idle link holds no buffer, and a burst of new links (each read a few hundred bytes)
 * does not leave a touched 64 KiB block behind each. A busy link keeps it. */
void tls_rbuf_drained(lp_tls *t);
/* Wipes and frees t->keys. */
void tls_drop_keys(lp_tls *t);
/* Sends wbuf[wpos, wlen): LP_OK when empty, LP_ERR_TRUNCATED when the socket is full,
 * LP_ERR_IO (t->err says why) when it failed. */
LP_MUST_USE lp_err tls_send_gathered(lp_tls *t);
/* recv/send without SIGPIPE, EINTR retried: >= 0 bytes, or -1 with errno. */
ssize_t tls_sys_recv(int fd, void *buf, size_t len);
ssize_t tls_sys_send(int fd, const void *buf, size_t len);

/* tls_fast.c */
/* Makes the AEAD contexts of the cipher the handshake will most likely pick, keyless, before
 * the handshake allocates anything (see lp_aead_evp_set_key). Best effort. */
void tls_fast_prepare(lp_tls *t);
/* Frees what tls_fast_prepare made and the switch did not take. */
void tls_fast_unprepare(lp_tls *t);
/* After the handshake: hands the records to tlsrec, frees the mbedTLS context. NULL when
 * done; else the reason it could not (the records stay with mbedTLS). */
const char *tls_fast_switch(lp_tls *t);
ssize_t tls_fast_read(lp_tls *t, void *buf, size_t len, lp_err *rc);
ssize_t tls_fast_write(lp_tls *t, const void *buf, size_t len, lp_err *rc);
bool tls_fast_pending(const lp_tls *t);
/* Best effort, non-blocking: what is gathered, then close_notify. */
void tls_fast_close_notify(lp_tls *t);

#endif
