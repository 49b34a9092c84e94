/* fuzz_tlsrec.c — libFuzzer target for the TLS record opener (src/core/tlsrec.c).
 *
 * Input: a cipher selector byte, a flags byte, then the bytes a link received. The records
 * are opened one after the other, as tls_fast.c does, until one waits for more bytes, ends
 * the link or is a close_notify. The AEAD is a toy one defined here (a keystream from the
 * nonce, a 16-byte checksum as tag): no crypto library, and a tag the fuzzer can learn through
 * its memcmp hooks, so it gets past the tag into the content rules. Checked on every input:
 * the opener never reads or writes outside what it is given, consumes whole records only,
 * hands up at most 2^14 bytes, says TRUNCATED exactly when lp_tlsrec_ready says it would, and
 * every record it accepts seals again (from the same key and sequence number) to the very bytes
 * it came from when the explicit nonce is the sequence number.
 * tests/fuzz/gen_corpus.py writes the seed corpus (tests/fuzz/corpus/tlsrec) with the same
 * toy AEAD.
 *
 * flags: bit 0  sequence numbers start at 2^64 - 3 instead of 1
 *        bit 1  open in place (no output buffer) instead of into the caller's buffer
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/tlsrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* ---- the toy AEAD (gen_corpus.py has its twin) ------------------------------------------------- */

static void toy_stream(const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *in, size_t len,
                       uint8_t *out)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(in[i] ^ nonce[i % LP_TLSREC_NONCE] ^ (uint8_t)i ^ 0x5a);
}

static void toy_tag(const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad, size_t aad_len,
                    const uint8_t *ct, size_t len, uint8_t tag[LP_TLSREC_TAG])
{
    uint32_t h = 2166136261u;
    const uint8_t *parts[3] = {nonce, aad, ct};
    size_t lens[3] = {LP_TLSREC_NONCE, aad_len, len};

    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < lens[p]; i++)
            h = (h ^ parts[p][i]) * 16777619u;
    for (unsigned j = 0; j < LP_TLSREC_TAG; j++)
        tag[j] = (uint8_t)((h >> (8 * (j % 4))) + j);
}

static lp_err toy_seal(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, size_t len, uint8_t *out,
                       uint8_t tag[LP_TLSREC_TAG])
{
    (void)ctx;
    toy_stream(nonce, in, len, out);
    toy_tag(nonce, aad, aad_len, out, len, tag);
    return LP_OK;
}

static lp_err toy_open(void *ctx, const uint8_t nonce[LP_TLSREC_NONCE], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, size_t len,
                       const uint8_t tag[LP_TLSREC_TAG], uint8_t *out)
{
    uint8_t want[LP_TLSREC_TAG];
    (void)ctx;
    toy_tag(nonce, aad, aad_len, in, len, want);
    toy_stream(nonce, in, len, out);
    return memcmp(want, tag, LP_TLSREC_TAG) == 0 ? LP_OK : LP_ERR_AUTH;
}

static const struct lp_aead_ops toy_ops = {.seal = toy_seal, .open = toy_open, .free = NULL};

/* ---- the harness ------------------------------------------------------------------------------ */

static const uint8_t IV[LP_TLSREC_NONCE] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                            0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};

static uint8_t out[LP_TLSREC_MAX_PLAIN];
static uint8_t again[LP_TLSREC_MAX_RECORD];

/* The record the opener accepted seals again to the same bytes (same key, IV and sequence
 * number; GCM only when the sender used the sequence number as explicit nonce). */
static void reseal(enum lp_tlsrec_cipher cipher, uint64_t seq, const uint8_t *rec, size_t total,
                   const struct lp_tlsrec_msg *m)
{
    struct lp_tlsrec tx;
    struct lp_aead a = {&toy_ops, NULL};
    uint8_t seqb[8];
    size_t n;

    for (int i = 0; i < 8; i++)
        seqb[i] = (uint8_t)(seq >> (56 - 8 * i));
    if (cipher != LP_TLSREC_CHACHA20_POLY1305 &&
        memcmp(rec + LP_TLSREC_HEADER, seqb, LP_TLSREC_EXPLICIT) != 0)
        return;
    lp_tlsrec_init(&tx, cipher, a, IV, seq, a, IV, seq);
    check(lp_tlsrec_seal(&tx, rec[0], m->data, m->len, again, sizeof(again), &n) == LP_OK);
    check(n == total && memcmp(again, rec, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[1 << 17];
    struct lp_tlsrec r;
    struct lp_aead a = {&toy_ops, NULL};

    if (size < 2 || size - 2 > sizeof(buf))
        return 0;
    enum lp_tlsrec_cipher cipher = (enum lp_tlsrec_cipher)(data[0] % 3);
    uint64_t seq = data[1] & 1 ? UINT64_MAX - 2 : 1;
    bool in_place = data[1] & 2;
    size_t len = size - 2;
    memcpy(buf, data + 2, len); /* the opener writes in place: not into libFuzzer's input */
    lp_tlsrec_init(&r, cipher, a, IV, seq, a, IV, seq);

    size_t pos = 0;
    for (;;) {
        struct lp_tlsrec_msg m;
        uint64_t before = r.rx.seq;
        bool ready = lp_tlsrec_ready(&r, buf + pos, len - pos);
        lp_err rc = lp_tlsrec_open(&r, buf + pos, len - pos, in_place ? NULL : out,
                                   in_place ? 0 : sizeof(out), &m);
        check((rc == LP_ERR_TRUNCATED) == !ready);
        if (rc == LP_ERR_TRUNCATED) {
            check(m.consumed == 0 && m.need > len - pos && m.need <= LP_TLSREC_MAX_RECORD);
            break;
        }
        if (rc != LP_OK && rc != LP_ERR_CLOSED) {
            check(r.why[0] != '\0' && m.consumed == 0 && m.data == NULL);
            break;
        }
        check(m.consumed >= lp_tlsrec_overhead(&r) && m.consumed <= len - pos);
        if (rc == LP_ERR_CLOSED)
            break;
        check(m.len <= LP_TLSREC_MAX_PLAIN && m.len == m.consumed - lp_tlsrec_overhead(&r));
        check(m.len == 0 || m.data == out ||
              (m.data >= buf + pos && m.data + m.len <= buf + pos + m.consumed));
        check(r.rx.spent || r.rx.seq == before + 1);
        /* the input record, as it was before being opened in place */
        reseal(cipher, before, data + 2 + pos, m.consumed, &m);
        pos += m.consumed;
    }
    lp_tlsrec_clear(&r);
    return 0;
}
