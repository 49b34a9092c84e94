/* tls.h — the TLS layer of a link (mbedTLS 2.28, TLS 1.2 only).
 *
 * Suites: AEAD with ECDHE only, so every session has forward secrecy:
 *   PSK mode   ECDHE-PSK-CHACHA20-POLY1305-SHA256 (mbedTLS 2.28 has no ECDHE-PSK AES-GCM suite)
 *   cert mode  ECDHE-ECDSA with AES-128-GCM, AES-256-GCM, then ChaCha20-Poly1305 where the
 *              CPU has AES instructions and libcrypto seals the records (its AES-GCM is then
 *              ~1.8x its ChaCha20); ChaCha20-Poly1305 first otherwise, and on the mbedTLS
 *              record layer (where ChaCha20 is ~1.5x AES-GCM).
 * No renegotiation, no compression, nothing older than TLS 1.2. Both sides authenticate:
 * the client by a PSK identity or a certificate whose SHA-256 fingerprint the server lists,
 * the server by the same PSK or by a certificate fingerprint the client pins. No CA.
 *
 * Record layers. mbedTLS always does the handshake. Then, on the default layer (openssl), the
 * session takes the key block mbedTLS exports and the sequence numbers, checks that mbedTLS
 * holds nothing (no record read ahead, no decrypted byte unread, no output unsent), frees the
 * mbedTLS context and protects the records itself (tlsrec.h) with libcrypto's AEAD: the same
 * standard TLS 1.2 records, several times faster. When it cannot (that check fails, or the
 * suite has no fast path), it says why in one log line and the records stay with mbedTLS, as
 * they always do on the mbedtls layer. After the handshake, close_notify is a clean end of
 * the link and anything else unexpected (another alert, a bad record, a handshake message)
 * ends it as broken. Closing a link that did not break sends close_notify (best effort).
 *
 * Non-blocking: lp_tls_handshake / _read / _write return LP_ERR_TRUNCATED when the socket
 * would block (wait for readability or writability as lp_tls_wants_write says).
 */
#ifndef LIMPET_TLS_H
#define LIMPET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "limpet/err.h"

#define LP_TLS_PSK_LEN 32u
#define LP_TLS_FP_LEN 32u /* SHA-256 of the peer certificate's DER */
#define LP_TLS_IDENTITY_MAX 128u

typedef struct lp_tls_conf lp_tls_conf;
typedef struct lp_tls lp_tls;

/* Who protects the records once the handshake is done (config key tls.record_layer). */
enum lp_tls_layer {
    LP_TLS_LAYER_OPENSSL, /* tlsrec over libcrypto's EVP AEAD (the default) */
    LP_TLS_LAYER_MBEDTLS, /* mbedTLS itself, as before the fast path existed */
};
const char *lp_tls_layer_name(enum lp_tls_layer layer); /* "openssl" / "mbedtls" */

/* Server, PSK mode: looks an identity up; copies its key into key and returns true, or
 * returns false for an unknown identity (the handshake then fails). */
typedef bool (*lp_tls_psk_lookup)(void *user, const char *identity, uint8_t key[LP_TLS_PSK_LEN]);
/* Server, cert mode: true when a client certificate with this fingerprint is listed. */
typedef bool (*lp_tls_fp_lookup)(void *user, const uint8_t fp[LP_TLS_FP_LEN]);

/* Each returns owned (free with lp_tls_conf_free); err gets one line on failure. Keys are
 * copied and wiped when the configuration is freed. */
LP_MUST_USE lp_err lp_tls_conf_client_psk(const char *identity, const uint8_t key[LP_TLS_PSK_LEN],
                                          lp_tls_conf **out, char *err, size_t errlen);
LP_MUST_USE lp_err lp_tls_conf_server_psk(lp_tls_psk_lookup lookup, void *user, lp_tls_conf **out,
                                          char *err, size_t errlen);
/* Cert mode: our own key and certificate (PEM files), and the peer's pinned fingerprint
 * (client) or the lookup of client fingerprints (server). */
LP_MUST_USE lp_err lp_tls_conf_client_cert(const char *crt_path, const char *key_path,
                                           const uint8_t server_fp[LP_TLS_FP_LEN],
                                           lp_tls_conf **out, char *err, size_t errlen);
LP_MUST_USE lp_err lp_tls_conf_server_cert(const char *crt_path, const char *key_path,
                                           lp_tls_fp_lookup lookup, void *user, lp_tls_conf **out,
                                           char *err, size_t errlen);
/* Server for both kinds of client at once: PSK identities (psk_lookup) and, when crt_path and
 * key_path are given, certificate clients (fp_lookup). Offers the PSK suite and, with a
 * certificate, the ECDHE-ECDSA suites; each client picks the one its mode allows. */
LP_MUST_USE lp_err lp_tls_conf_server(const char *crt_path, const char *key_path,
                                      lp_tls_psk_lookup psk_lookup, lp_tls_fp_lookup fp_lookup,
                                      void *user, lp_tls_conf **out, char *err, size_t errlen);
void lp_tls_conf_free(lp_tls_conf *c);
/* Each lp_tls made from c uses it until lp_tls_free. The number of them, and a function
 * called (with arg) each time the number falls to zero: the owner of a retired conf frees it
 * then, not before (a handshake or a link in flight still reads it). fn may free c. */
size_t lp_tls_conf_users(const lp_tls_conf *c);
void lp_tls_conf_on_idle(lp_tls_conf *c, void (*fn)(void *arg), void *arg);
/* Chooses the record layer of links made from c from now on (default: openssl). In cert mode
 * it also orders the AEAD suites for that layer (see above). */
void lp_tls_conf_set_record_layer(lp_tls_conf *c, enum lp_tls_layer layer);
/* True when certificate mode offers AES-GCM before ChaCha20-Poly1305 on the openssl layer:
 * the CPU has AES instructions libcrypto uses. */
bool lp_tls_prefers_aes_gcm(void);

/* A TLS session over the connected non-blocking socket fd (borrowed: the caller closes
 * it after lp_tls_free). conf is borrowed and must outlive it. */
LP_MUST_USE lp_err lp_tls_new(lp_tls_conf *conf, int fd, lp_tls **out);
void lp_tls_free(lp_tls *t);
/* Client, before the handshake: the server name sent in the ClientHello (SNI), so that a
 * balancer in front of several servers can route on it. Routing only: limpet authenticates by
 * PSK or pinned fingerprint, never by name, so a name that does not match the certificate
 * does not fail the handshake. Copies name. */
LP_MUST_USE lp_err lp_tls_set_sni(lp_tls *t, const char *name);

/* Drives the handshake. LP_OK when done; LP_ERR_TRUNCATED to wait for the socket;
 * LP_ERR_AUTH when the peer's key, identity or certificate was refused; other errors for a
 * broken handshake. err gets one line (never a secret). */
LP_MUST_USE lp_err lp_tls_handshake(lp_tls *t, char *err, size_t errlen);
/* While the handshake waits (LP_ERR_TRUNCATED): true when it waits to write, false to read. */
bool lp_tls_handshake_wants_write(const lp_tls *t);
/* After the handshake: the client's PSK identity (server side, PSK mode) or "" */
const char *lp_tls_peer_identity(const lp_tls *t);
/* After the handshake: the peer certificate's fingerprint; false in PSK mode. */
bool lp_tls_peer_fingerprint(const lp_tls *t, uint8_t fp[LP_TLS_FP_LEN]);
/* SHA-256 of a DER certificate: the fingerprint that pins it. */
void lp_tls_fingerprint(const uint8_t *der, size_t len, uint8_t fp[LP_TLS_FP_LEN]);
/* The suite in use, e.g. "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256". */
const char *lp_tls_suite(const lp_tls *t);
/* After the handshake: who protects the records now, "openssl" or "mbedtls". */
const char *lp_tls_record_layer(const lp_tls *t);
/* True when the link has carried enough under its keys to be replaced by a new handshake:
 * `bytes` plaintext bytes in either direction (0: no byte limit), or half the records an
 * AES-GCM key may seal. TLS 1.2 has no key update: the owner dials a new link. */
bool lp_tls_rekey_due(const lp_tls *t, uint64_t bytes);
/* What the last failed read or write after the handshake ran into ("" if none). */
const char *lp_tls_error(const lp_tls *t);

/* Reads plaintext: > 0 bytes read; 0 when the peer closed (close_notify, or EOF); -1 with
 * *rc set otherwise (LP_ERR_TRUNCATED: would block; else the link is broken, see
 * lp_tls_error). A read never returns plaintext whose record has not been authenticated. */
ssize_t lp_tls_read(lp_tls *t, void *buf, size_t len, lp_err *rc);
/* True when decrypted bytes wait inside the TLS layer: read again without waiting for the
 * socket, which may have nothing more to say. */
bool lp_tls_pending(const lp_tls *t);
/* Writes plaintext: returns how many bytes were taken (at most one 16 KiB record). Bytes
 * taken may still sit encrypted in the TLS layer (lp_tls_wants_write); they go out with
 * lp_tls_flush or the next write. -1 with *rc set on error or when nothing was taken
 * (LP_ERR_TRUNCATED: would block). */
ssize_t lp_tls_write(lp_tls *t, const void *buf, size_t len, lp_err *rc);
/* Pushes out an encrypted record still held; LP_OK when nothing is left. */
LP_MUST_USE lp_err lp_tls_flush(lp_tls *t);
bool lp_tls_wants_write(const lp_tls *t);

#endif
