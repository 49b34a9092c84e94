/* keys.h — key material on disk: pre-shared keys, self-signed certificates, fingerprints.
 *
 * A PSK file holds 32 random bytes as 64 hex digits and one newline. A certificate is an
 * ECDSA P-256 key (PEM, mode 0600) and a self-signed X.509 certificate (PEM) that peers pin
 * by the SHA-256 of its DER encoding, written "sha256:AB:CD:..." (32 bytes). Pinning is the
 * whole trust mechanism: there is no CA, so a certificate is made valid for 100 years and is
 * retired by removing its fingerprint from the config, not by letting it expire.
 *
 * Secret files (PSK files, private keys) are refused when group or others have any
 * permission bit, as ssh refuses private keys, with a message naming the file and the chmod
 * that fixes it. Error messages are one line, name the file, and never hold key bytes.
 * Every buffer that held a secret is wiped (mbedtls_platform_zeroize) on every path.
 *
 * err/errlen: a caller-owned buffer that gets one line on failure (LP_KEYS_ERR_MAX is
 * enough); untouched on success.
 */
#ifndef LIMPET_KEYS_H
#define LIMPET_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"
#include "limpet/fingerprint.h"

#define LP_PSK_LEN 32u     /* bytes of key; equals LP_TLS_PSK_LEN */
#define LP_PSK_HEX_LEN 64u /* hex digits in a PSK file */
#define LP_KEYS_ERR_MAX 512u
#define LP_KEYS_NAME_MAX 64u     /* identity names: at most 64 characters (the CN limit) */
#define LP_SECRET_FILE_MAX 8192u /* a PEM EC key is ~230 bytes; anything past this is refused */

/* Checks that path names a regular file that only its owner may access (mode & 077 == 0).
 * LP_ERR_INVALID with "FILE: permissions 0644 are too open; run: chmod 600 FILE" or
 * "FILE: not a regular file"; LP_ERR_IO when it cannot be examined. Borrows path.
 * For a caller that then opens the file itself (e.g. mbedtls_pk_parse_keyfile); prefer
 * lp_secret_file_read, which checks and reads the same open file. */
LP_MUST_USE lp_err lp_secret_file_check(const char *path, char *err, size_t errlen);

/* Opens path, applies the checks of lp_secret_file_check to the open file, and reads it
 * whole into buf (borrowed, cap bytes), NUL-terminated: *len excludes the NUL, so the PEM
 * length mbedtls_pk_parse_key wants is *len + 1. The caller wipes buf when done with it.
 * LP_ERR_TOO_BIG when the file does not fit in cap - 1 bytes; buf is wiped on every error. */
LP_MUST_USE lp_err lp_secret_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len,
                                       char *err, size_t errlen);

/* Parses the text of a PSK file held in memory: exactly 64 hex digits (either case) and at
 * most one trailing "\n". LP_ERR_MALFORMED with *why set to a static reason (never quoting
 * the text) otherwise. key is written only on LP_OK. Borrows text (not NUL-terminated). */
LP_MUST_USE lp_err lp_psk_parse(const uint8_t *text, size_t len, uint8_t key[LP_PSK_LEN],
                                const char **why);

/* Loads a PSK file: the secret-file checks, then lp_psk_parse. Errors: as
 * lp_secret_file_read, or LP_ERR_MALFORMED with "FILE: <reason>". */
LP_MUST_USE lp_err lp_psk_load(const char *path, uint8_t key[LP_PSK_LEN], char *err, size_t errlen);

/* Writes 32 fresh random bytes (CTR-DRBG seeded from the system entropy source) as lowercase
 * hex and a newline to a new file created with mode 0600. Never replaces a file:
 * LP_ERR_INVALID "FILE: already exists; ..." when path exists (even as a dangling link).
 * On a failed write the half-written file is removed. */
LP_MUST_USE lp_err lp_psk_generate(const char *path, char *err, size_t errlen);

/* True when name may be an identity: 1..LP_KEYS_NAME_MAX characters from [A-Za-z0-9._-],
 * not starting with '.' or '-'. It becomes a file name, a YAML key and a certificate CN,
 * so nothing in it needs quoting anywhere. */
bool lp_keys_name_valid(const char *name);

/* Makes a new ECDSA P-256 key, written as PEM to key_path (new file, mode 0600), and a
 * self-signed certificate for it to crt_path (new file, mode 0644): CN=name, a random
 * 127-bit serial, valid from a day ago (clock skew) for 100 years, SHA-256 signature,
 * basicConstraints CA:FALSE. Writes the certificate's fingerprint text into fingerprint.
 * Neither file may exist beforehand (LP_ERR_INVALID); on failure neither is left behind.
 * LP_ERR_INVALID for a name refused by lp_keys_name_valid. All arguments borrowed. */
LP_MUST_USE lp_err lp_cert_generate(const char *key_path, const char *crt_path, const char *name,
                                    char fingerprint[LP_FINGERPRINT_TEXT_MAX], char *err,
                                    size_t errlen);

/* Reads the first certificate of a PEM (or DER) file and returns the SHA-256 of its DER.
 * LP_ERR_IO when the file cannot be read, LP_ERR_MALFORMED when it is not a certificate,
 * LP_ERR_TOO_BIG past 64 KiB. No permission check: certificates are public. */
LP_MUST_USE lp_err lp_cert_fingerprint_file(const char *crt_path, uint8_t out[LP_FINGERPRINT_LEN],
                                            char *err, size_t errlen);

/* The `limpet keygen` command: argv[0] is "keygen". `keygen psk NAME [-o FILE]`,
 * `keygen cert NAME [-o PREFIX]`, `keygen --help`. Writes the files, then the config lines
 * to paste on each side to stdout. Returns the exit code: 0 on success, 1 with one line on
 * stderr on any error. Borrows argv. */
int lp_keygen_main(int argc, char **argv);

#endif
