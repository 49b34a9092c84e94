/* fingerprint.h — certificate fingerprints as people write them (base layer).
 *
 * A fingerprint is the SHA-256 of a certificate's DER encoding: "sha256:" (either case) and 32
 * bytes as 64 hex digits, either case, written either with no separators or as 32 pairs joined
 * by single ':' ("sha256:AB:CD:..."). Nothing else: no spaces, no colons between only some
 * bytes, no other hash. One parser for every place that reads one (the config's
 * server_fingerprint and auth.clients.*.cert_fingerprint, the TLS pin check), so a value the
 * config accepts is a value the handshake accepts.
 */
#ifndef LIMPET_FINGERPRINT_H
#define LIMPET_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_FINGERPRINT_LEN 32u /* SHA-256 of a certificate's DER; equals LP_TLS_FP_LEN */
/* "sha256:" + 32 bytes as "AB" joined by ':' + NUL */
#define LP_FINGERPRINT_TEXT_MAX (7u + LP_FINGERPRINT_LEN * 3u)
/* "sha256:" + 64 lowercase hex digits + NUL: the canonical form the config stores */
#define LP_FINGERPRINT_CANON_LEN (7u + LP_FINGERPRINT_LEN * 2u + 1u)

/* Parses text[0..n) (no NUL needed; an embedded NUL is refused). LP_ERR_MALFORMED with *why a
 * static reason fit to follow the value's name ("has fewer than 32 bytes ..."); out is
 * written only on LP_OK. */
LP_MUST_USE lp_err lp_fingerprint_parse_n(const char *text, size_t n,
                                          uint8_t out[LP_FINGERPRINT_LEN], const char **why)
    __attribute__((warn_unused_result));
/* The same for a NUL-terminated string (NULL reads as empty). */
LP_MUST_USE lp_err lp_fingerprint_parse(const char *text, uint8_t out[LP_FINGERPRINT_LEN],
                                        const char **why) __attribute__((warn_unused_result));

/* Writes "sha256:AB:CD:..." (uppercase, colon-separated) into out. LP_ERR_NOSPACE (out set
 * to "" when outlen > 0) if outlen < LP_FINGERPRINT_TEXT_MAX. */
LP_MUST_USE lp_err lp_fingerprint_format(const uint8_t in[LP_FINGERPRINT_LEN], char *out,
                                         size_t outlen) __attribute__((warn_unused_result));
/* Writes the canonical "sha256:" + 64 lowercase digits (LP_FINGERPRINT_CANON_LEN bytes with the
 * NUL), the form a pin is stored and compared in. */
void lp_fingerprint_canon(const uint8_t in[LP_FINGERPRINT_LEN], char out[LP_FINGERPRINT_CANON_LEN]);

#endif
