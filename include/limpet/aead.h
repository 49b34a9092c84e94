/* aead.h — the AEADs behind tlsrec (include/limpet/tlsrec.h), from OpenSSL's libcrypto.
 *
 * Only libcrypto's EVP AEAD is used (ChaCha20-Poly1305, AES-128-GCM, AES-256-GCM): one EVP
 * context per direction, its key set once here, only the nonce set per record. The TLS
 * implementation stays mbedTLS; this is the part that makes records fast.
 */
#ifndef LIMPET_AEAD_H
#define LIMPET_AEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"
#include "limpet/tlsrec.h"

/* An AEAD of `cipher` keyed with key[0..lp_tlsrec_key_len(cipher)), for sealing (seal true)
 * or opening. The key is copied into libcrypto's context (wiped when it is freed), so the
 * caller wipes its own copy. *out is owned: free with out->ops->free(out->ctx), or hand it to
 * lp_tlsrec_init. LP_ERR_NOMEM, or LP_ERR_IO when libcrypto refuses (err says so). */
LP_MUST_USE lp_err lp_aead_evp_new(enum lp_tlsrec_cipher cipher, const uint8_t *key, bool seal,
                                   struct lp_aead *out, char *err, size_t errlen);

/* With key NULL, lp_aead_evp_new makes the context without a key; this sets it (once). So a
 * link can make its contexts before its handshake, beside its other long-lived state, and
 * key them after: they then do not land in the holes the handshake leaves in the heap. */
LP_MUST_USE lp_err lp_aead_evp_set_key(struct lp_aead *a, const uint8_t *key);

/* True when this CPU has AES instructions libcrypto will use (x86: AES-NI and PCLMULQDQ, as
 * OPENSSL_ia32cap leaves them; arm64: the AES and PMULL extensions): AES-GCM then seals
 * faster than ChaCha20-Poly1305 and certificate mode offers it first. */
bool lp_aead_cpu_has_aes(void);

#endif
