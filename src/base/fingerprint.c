/* fingerprint.c — the one parser and formatter of "sha256:..." certificate fingerprints. */
#include "limpet/fingerprint.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "limpet/hex.h"

#define FP_PREFIX "sha256:"
#define FP_PREFIX_LEN 7u
#define FP_BARE_LEN (LP_FINGERPRINT_LEN * 2u)       /* "ABCD...EF" */
#define FP_COLON_LEN (LP_FINGERPRINT_LEN * 3u - 1u) /* "AB:CD:...:EF" */

/* Counts hex digits and colons of body[0..n); the first other byte ends it with a reason. */
static const char *fp_scan(const char *s, size_t n, size_t *digits, size_t *colons)
{
    *digits = *colons = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ':')
            (*colons)++;
        else if (lp_hex_value((unsigned char)s[i]) >= 0)
            (*digits)++;
        else if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
            return "contains whitespace";
        else
            return "contains a character that is not a hex digit or ':'";
    }
    return NULL;
}

/* NULL when body[0..n) is 64 digits, or 32 pairs joined by single colons; else the reason. */
static const char *fp_body_reason(const char *body, size_t n)
{
    size_t digits, colons;
    const char *why = fp_scan(body, n, &digits, &colons);

    if (why != NULL)
        return why;
    if (digits == 0)
        return "has nothing after \"sha256:\"";
    if (digits != FP_BARE_LEN)
        return digits < FP_BARE_LEN ? "has fewer than 32 bytes (64 hex digits)"
                                    : "has more than 32 bytes (64 hex digits)";
    if (colons == 0)
        return NULL;
    if (colons == LP_FINGERPRINT_LEN - 1) {
        /* 64 digits and 31 colons make exactly FP_COLON_LEN bytes: every third one a colon */
        for (size_t i = 2; i < FP_COLON_LEN; i += 3)
            if (body[i] != ':')
                return "has a misplaced ':' (write AB:CD:... or the 64 digits together)";
        return NULL;
    }
    return "has colons between some bytes only (write AB:CD:... or the 64 digits together)";
}

/* "sha1:..." or "MD5:...": a name before the first ':' that is not itself a hex byte, so the
 * user gets told the hash is wrong rather than that a prefix is missing. */
static bool other_hash(const char *text, size_t len)
{
    const char *colon = memchr(text, ':', len);
    size_t n = colon != NULL ? (size_t)(colon - text) : 0;
    bool non_hex = false;

    if (colon == NULL || n < 3 || n > 8)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
        non_hex = non_hex || lp_hex_value((unsigned char)c) < 0;
    }
    return non_hex;
}

lp_err lp_fingerprint_parse_n(const char *text, size_t n, uint8_t out[LP_FINGERPRINT_LEN],
                              const char **why)
{
    const char *body;
    size_t step;

    if (text == NULL || n == 0) {
        *why = "is empty (expected sha256:AB:CD:...)";
        return LP_ERR_MALFORMED;
    }
    if (n < FP_PREFIX_LEN || strncasecmp(text, FP_PREFIX, FP_PREFIX_LEN) != 0) {
        *why = other_hash(text, n) ? "is not a SHA-256 fingerprint (expected sha256:AB:CD:...)"
                                   : "does not start with \"sha256:\" (expected sha256:AB:CD:...)";
        return LP_ERR_MALFORMED;
    }
    body = text + FP_PREFIX_LEN;
    if ((*why = fp_body_reason(body, n - FP_PREFIX_LEN)) != NULL)
        return LP_ERR_MALFORMED;
    step = n - FP_PREFIX_LEN == FP_COLON_LEN ? 3 : 2;
    for (size_t i = 0; i < LP_FINGERPRINT_LEN; i++) {
        const char *p = body + i * step;
        out[i] =
            (uint8_t)(lp_hex_value((unsigned char)p[0]) << 4 | lp_hex_value((unsigned char)p[1]));
    }
    return LP_OK;
}

lp_err lp_fingerprint_parse(const char *text, uint8_t out[LP_FINGERPRINT_LEN], const char **why)
{
    return lp_fingerprint_parse_n(text, text != NULL ? strlen(text) : 0, out, why);
}

lp_err lp_fingerprint_format(const uint8_t in[LP_FINGERPRINT_LEN], char *out, size_t outlen)
{
    size_t n = FP_PREFIX_LEN;

    if (outlen < LP_FINGERPRINT_TEXT_MAX) {
        if (outlen > 0)
            out[0] = '\0';
        return LP_ERR_NOSPACE;
    }
    memcpy(out, FP_PREFIX, FP_PREFIX_LEN);
    for (size_t i = 0; i < LP_FINGERPRINT_LEN; i++) {
        if (i > 0)
            out[n++] = ':';
        lp_hex_encode(&in[i], 1, out + n, true);
        n += 2;
    }
    out[n] = '\0';
    return LP_OK;
}

void lp_fingerprint_canon(const uint8_t in[LP_FINGERPRINT_LEN], char out[LP_FINGERPRINT_CANON_LEN])
{
    memcpy(out, FP_PREFIX, FP_PREFIX_LEN);
    lp_hex_encode(in, LP_FINGERPRINT_LEN, out + FP_PREFIX_LEN, false);
    out[LP_FINGERPRINT_CANON_LEN - 1] = '\0';
}
