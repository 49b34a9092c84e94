/* test_tlsrec_evp.c — TLS 1.2 record protection (tlsrec) through the libcrypto AEAD interface:
 * the RFC 8439 (the AEAD of RFC 7905) and NIST GCM vectors, the nonce and additional data of
 * RFC 7905 / RFC 5288 records checked against a second, independent construction, every
 * truncation and every bit flip refused, the content-type rules and the sequence-number wrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/aead.h"
#include "limpet/tlsrec.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        assert_true(n < cap);
        assert_int_equal(sscanf(hex, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static struct lp_aead aead(enum lp_tlsrec_cipher c, const uint8_t *key, bool seal)
{
    struct lp_aead a;
    char err[128];
    assert_int_equal(lp_aead_evp_new(c, key, seal, &a, err, sizeof(err)), LP_OK);
    return a;
}

static void aead_free(struct lp_aead *a)
{
    a->ops->free(a->ctx);
}

/* ---- the AEADs alone: published vectors -------------------------------------------------- */

struct vector {
    enum lp_tlsrec_cipher cipher;
    const char *key, *nonce, *aad, *plain, *cipher_text, *tag;
};

/* RFC 8439 §2.8.2 (the AEAD RFC 7905 names); GCM test cases 4 and 16 of the GCM spec as
 * submitted to NIST (McGrew and Viega), AES-128 and AES-256 with 20 bytes of AAD. */
static const struct vector vectors[] = {
    {LP_TLSREC_CHACHA20_POLY1305,
     "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "070000004041424344454647",
     "50515253c0c1c2c3c4c5c6c7",
     "4c616469657320616e642047656e746c656d656e206f662074686520636c617373206f66202739393a204966204"
     "920636f756c64206f6666657220796f75206f6e6c79206f6e652074697020666f7220746865206675747572652c"
     "2073756e73637265656e20776f756c642062652069742e",
     "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da"
     "92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585"
     "808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116",
     "1ae10b594f09e26a7e902ecbd0600691"},
    {LP_TLSREC_AES_128_GCM, "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
     "49a6b525b16aedf5aa0de657ba637b39",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5a"
     "ac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    {LP_TLSREC_AES_256_GCM, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
     "49a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
     "56828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void check_vector(const struct vector *v)
{
    uint8_t key[32], nonce[12], aad[32], plain[128], want[128], tag[16], out[128], got_tag[16];
    size_t kn = unhex(v->key, key, sizeof(key));
    size_t ad = unhex(v->aad, aad, sizeof(aad));
    size_t n = unhex(v->plain, plain, sizeof(plain));

    assert_int_equal(kn, lp_tlsrec_key_len(v->cipher));
    assert_int_equal(unhex(v->nonce, nonce, sizeof(nonce)), 12);
    assert_int_equal(unhex(v->cipher_text, want, sizeof(want)), n);
    assert_int_equal(unhex(v->tag, tag, sizeof(tag)), 16);

    struct lp_aead s = aead(v->cipher, key, true), o = aead(v->cipher, key, false);
    assert_int_equal(s.ops->seal(s.ctx, nonce, aad, ad, plain, n, out, got_tag), LP_OK);
    assert_memory_equal(out, want, n);
    assert_memory_equal(got_tag, tag, 16);
    /* in place, as the records are sealed */
    memcpy(out, plain, n);
    assert_int_equal(s.ops->seal(s.ctx, nonce, aad, ad, out, n, out, got_tag), LP_OK);
    assert_memory_equal(out, want, n);

    assert_int_equal(o.ops->open(o.ctx, nonce, aad, ad, want, n, tag, out), LP_OK);
    assert_memory_equal(out, plain, n);
    tag[15] ^= 1;
    assert_int_equal(o.ops->open(o.ctx, nonce, aad, ad, want, n, tag, out), LP_ERR_AUTH);
    tag[15] ^= 1;
    aad[0] ^= 0x80;
    assert_int_equal(o.ops->open(o.ctx, nonce, aad, ad, want, n, tag, out), LP_ERR_AUTH);
    aead_free(&s);
    aead_free(&o);
}

static void test_aead_chacha20_poly1305_matches_rfc8439(void **state)
{
    (void)state;
    check_vector(&vectors[0]);
}

static void test_aead_aes_128_gcm_matches_nist_test_case_4(void **state)
{
    (void)state;
    check_vector(&vectors[1]);
}

static void test_aead_aes_256_gcm_matches_nist_test_case_16(void **state)
{
    (void)state;
    check_vector(&vectors[2]);
}

/* ---- records ---------------------------------------------------------------------------------- */

static const enum lp_tlsrec_cipher ciphers[] = {LP_TLSREC_CHACHA20_POLY1305, LP_TLSREC_AES_128_GCM,
                                                LP_TLSREC_AES_256_GCM};

static uint8_t KEY_AB[32], KEY_BA[32], IV_AB[12], IV_BA[12];

static int keys_setup(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 32; i++) {
        KEY_AB[i] = (uint8_t)(0x11 * i + 1);
        KEY_BA[i] = (uint8_t)(0x53 * i + 7);
    }
    for (unsigned i = 0; i < 12; i++) {
        IV_AB[i] = (uint8_t)(0xa0 + i);
        IV_BA[i] = (uint8_t)(0x30 + 3 * i);
    }
    return 0;
}

/* Two ends of one link: a seals what b opens and the other way round. */
static void pair_init(struct lp_tlsrec *a, struct lp_tlsrec *b, enum lp_tlsrec_cipher c,
                      uint64_t seq_ab, uint64_t seq_ba)
{
    lp_tlsrec_init(a, c, aead(c, KEY_AB, true), IV_AB, seq_ab, aead(c, KEY_BA, false), IV_BA,
                   seq_ba);
    lp_tlsrec_init(b, c, aead(c, KEY_BA, true), IV_BA, seq_ba, aead(c, KEY_AB, false), IV_AB,
                   seq_ab);
}

static void pair_clear(struct lp_tlsrec *a, struct lp_tlsrec *b)
{
    lp_tlsrec_clear(a);
    lp_tlsrec_clear(b);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed);
}

static size_t seal_data(struct lp_tlsrec *r, const uint8_t *in, size_t len, uint8_t *rec)
{
    size_t n = 0;
    assert_int_equal(
        lp_tlsrec_seal(r, LP_TLSREC_APPLICATION_DATA, in, len, rec, LP_TLSREC_MAX_RECORD, &n),
        LP_OK);
    assert_int_equal(n, len + lp_tlsrec_overhead(r));
    return n;
}

static void test_tlsrec_records_round_trip_in_both_directions_for_every_cipher(void **state)
{
    static uint8_t plain[LP_TLSREC_MAX_PLAIN], rec[LP_TLSREC_MAX_RECORD], out[LP_TLSREC_MAX_PLAIN];
    const size_t sizes[] = {0, 1, 13, 1400, LP_TLSREC_MAX_PLAIN};
    (void)state;

    for (size_t c = 0; c < 3; c++) {
        struct lp_tlsrec a, b, *from, *to;
        pair_init(&a, &b, ciphers[c], 1, 1);
        for (unsigned i = 0; i < 2 * 5; i++) {
            from = i % 2 ? &b : &a;
            to = i % 2 ? &a : &b;
            size_t len = sizes[i / 2];
            fill(plain, len, i);
            size_t n = seal_data(from, plain, len, rec);
            assert_int_equal(rec[0], LP_TLSREC_APPLICATION_DATA);
            assert_int_equal(rec[1] << 8 | rec[2], 0x0303);
            assert_int_equal((size_t)(rec[3] << 8 | rec[4]), n - LP_TLSREC_HEADER);
            struct lp_tlsrec_msg m;
            /* every other record into the caller's buffer, the rest in place */
            bool direct = i % 4 < 2;
            assert_int_equal(lp_tlsrec_open(to, rec, n, direct ? out : NULL, sizeof(out), &m),
                             LP_OK);
            assert_int_equal(m.len, len);
            assert_int_equal(m.consumed, n);
            assert_ptr_equal(m.data, direct ? out : rec + n - LP_TLSREC_TAG - len);
            assert_memory_equal(m.data, plain, len);
        }
        assert_int_equal(a.tx.seq, 6);
        assert_int_equal(b.rx.seq, 6);
        assert_int_equal(a.tx.bytes, 1 + 13 + 1400 + LP_TLSREC_MAX_PLAIN);
        pair_clear(&a, &b);
    }
}

/* In place: the plaintext already sits where the ciphertext goes. */
static void test_tlsrec_seals_in_place(void **state)
{
    static uint8_t rec[LP_TLSREC_MAX_RECORD], plain[4000];
    (void)state;
    for (size_t c = 0; c < 3; c++) {
        struct lp_tlsrec a, b;
        struct lp_tlsrec_msg m;
        size_t n, at;
        pair_init(&a, &b, ciphers[c], 1, 1);
        at = lp_tlsrec_overhead(&a) - LP_TLSREC_TAG;
        fill(plain, sizeof(plain), 5);
        memcpy(rec + at, plain, sizeof(plain));
        assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_APPLICATION_DATA, rec + at, sizeof(plain),
                                        rec, sizeof(rec), &n),
                         LP_OK);
        assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_OK);
        assert_memory_equal(m.data, plain, sizeof(plain));
        pair_clear(&a, &b);
    }
}

/* The nonce and additional data rebuilt independently: ChaCha20's nonce is the IV xor the
 * sequence number (RFC 7905 §2), AES-GCM's the salt and the explicit nonce on the wire
 * (RFC 5288 §3); the additional data is seq | type | version | length (RFC 5246 §6.2.3.3). */
static void test_tlsrec_nonce_and_additional_data_follow_the_rfcs(void **state)
{
    static uint8_t plain[777], rec[LP_TLSREC_MAX_RECORD], out[777];
    const uint64_t seq = 0x0102030405060708ull;
    (void)state;
    for (size_t c = 0; c < 3; c++) {
        struct lp_tlsrec a, b;
        uint8_t nonce[12], aad[13] = {1, 2, 3, 4, 5, 6, 7, 8, 23, 3, 3, 777 >> 8, 777 & 0xff};
        pair_init(&a, &b, ciphers[c], seq, 1);
        fill(plain, sizeof(plain), 9);
        size_t n = seal_data(&a, plain, sizeof(plain), rec);
        size_t head = LP_TLSREC_HEADER;
        memcpy(nonce, IV_AB, 12);
        if (ciphers[c] == LP_TLSREC_CHACHA20_POLY1305) {
            for (unsigned i = 0; i < 8; i++)
                nonce[4 + i] ^= aad[i];
        } else {
            assert_memory_equal(rec + head, aad, 8); /* explicit nonce = sequence number */
            memcpy(nonce + 4, rec + head, 8);
            head += 8;
        }
        struct lp_aead o = aead(ciphers[c], KEY_AB, false);
        assert_int_equal(n, head + sizeof(plain) + 16);
        assert_int_equal(o.ops->open(o.ctx, nonce, aad, 13, rec + head, sizeof(plain),
                                     rec + head + sizeof(plain), out),
                         LP_OK);
        assert_memory_equal(out, plain, sizeof(plain));
        aead_free(&o);
        pair_clear(&a, &b);
    }
}

/* RFC 5288: the receiver takes the explicit nonce from the record, whatever the sender chose. */
static void test_tlsrec_gcm_opener_uses_the_explicit_nonce_it_receives(void **state)
{
    uint8_t rec[5 + 8 + 100 + 16], plain[100], nonce[12];
    const uint8_t chosen[8] = {0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 42};
    uint8_t aad[13] = {0, 0, 0, 0, 0, 0, 0, 1, 23, 3, 3, 0, 100};
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    (void)state;
    pair_init(&a, &b, LP_TLSREC_AES_128_GCM, 1, 1);
    fill(plain, sizeof(plain), 77);
    memcpy(nonce, IV_AB, 4);
    memcpy(nonce + 4, chosen, 8);
    struct lp_aead s = aead(LP_TLSREC_AES_128_GCM, KEY_AB, true);
    assert_int_equal(s.ops->seal(s.ctx, nonce, aad, 13, plain, 100, rec + 13, rec + 113), LP_OK);
    aead_free(&s);
    rec[0] = 23;
    rec[1] = rec[2] = 3;
    rec[3] = 0;
    rec[4] = 8 + 100 + 16;
    memcpy(rec + 5, chosen, 8);
    assert_int_equal(lp_tlsrec_open(&b, rec, sizeof(rec), NULL, 0, &m), LP_OK);
    assert_memory_equal(m.data, plain, 100);
    pair_clear(&a, &b);
}

static void test_tlsrec_every_truncation_waits_for_more(void **state)
{
    static uint8_t plain[300], rec[LP_TLSREC_MAX_RECORD], copy[LP_TLSREC_MAX_RECORD];
    (void)state;
    for (size_t c = 0; c < 3; c++) {
        struct lp_tlsrec a, b;
        struct lp_tlsrec_msg m;
        pair_init(&a, &b, ciphers[c], 1, 1);
        fill(plain, sizeof(plain), 3);
        size_t n = seal_data(&a, plain, sizeof(plain), rec);
        for (size_t cut = 0; cut < n; cut++) {
            memcpy(copy, rec, cut);
            assert_int_equal(lp_tlsrec_open(&b, copy, cut, NULL, 0, &m), LP_ERR_TRUNCATED);
            assert_int_equal(m.consumed, 0);
            assert_int_equal(m.need, cut < LP_TLSREC_HEADER ? LP_TLSREC_HEADER : n);
        }
        assert_int_equal(b.rx.seq, 1);
        assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_OK);
        assert_memory_equal(m.data, plain, sizeof(plain));
        pair_clear(&a, &b);
    }
}

/* Not one bit of a record may change unnoticed: header, explicit nonce, ciphertext or tag. A
 * flip that makes the length longer leaves the record incomplete (it would fail once whole);
 * every other is refused. The sequence number does not move, so the real record still opens. */
static void test_tlsrec_every_bit_flip_is_refused(void **state)
{
    static uint8_t plain[64], rec[256], copy[256 + 65536];
    (void)state;
    for (size_t c = 0; c < 3; c++) {
        struct lp_tlsrec a, b;
        struct lp_tlsrec_msg m;
        pair_init(&a, &b, ciphers[c], 1, 1);
        fill(plain, sizeof(plain), 11);
        size_t n = seal_data(&a, plain, sizeof(plain), rec);
        for (size_t bit = 0; bit < 8 * n; bit++) {
            memset(copy, 0, sizeof(copy));
            memcpy(copy, rec, n);
            copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            /* offer everything the header could claim: a longer record gets its bytes */
            lp_err rc = lp_tlsrec_open(&b, copy, sizeof(copy), NULL, 0, &m);
            assert_int_not_equal(rc, LP_OK);
            assert_int_not_equal(rc, LP_ERR_CLOSED);
            assert_null(m.data);
            assert_int_equal(m.consumed, 0);
            assert_int_equal(b.rx.seq, 1);
        }
        assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_OK);
        assert_memory_equal(m.data, plain, sizeof(plain));
        pair_clear(&a, &b);
    }
}

static void test_tlsrec_close_notify_is_a_clean_end(void **state)
{
    uint8_t rec[64];
    size_t n;
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    (void)state;
    pair_init(&a, &b, LP_TLSREC_CHACHA20_POLY1305, 1, 1);
    assert_int_equal(lp_tlsrec_seal_alert(&a, LP_TLSREC_ALERT_WARNING, LP_TLSREC_CLOSE_NOTIFY, rec,
                                          sizeof(rec), &n),
                     LP_OK);
    assert_int_equal(rec[0], LP_TLSREC_ALERT);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_CLOSED);
    assert_int_equal(m.consumed, n);
    pair_clear(&a, &b);
}

static void test_tlsrec_any_other_alert_breaks_the_link(void **state)
{
    uint8_t rec[64];
    size_t n;
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    (void)state;
    pair_init(&a, &b, LP_TLSREC_AES_256_GCM, 1, 1);
    assert_int_equal(lp_tlsrec_seal_alert(&a, LP_TLSREC_ALERT_FATAL, 20, rec, sizeof(rec), &n),
                     LP_OK);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_PROTOCOL);
    assert_non_null(strstr(b.why, "fatal alert 20"));
    assert_int_equal(lp_tlsrec_seal_alert(&a, LP_TLSREC_ALERT_WARNING, 90, rec, sizeof(rec), &n),
                     LP_OK);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_PROTOCOL);
    /* an alert must be two bytes */
    assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_ALERT, (const uint8_t *)"\x01\x00\x00", 3, rec,
                                    sizeof(rec), &n),
                     LP_OK);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_MALFORMED);
    pair_clear(&a, &b);
}

/* A HelloRequest, a renegotiation or a ChangeCipherSpec after the handshake breaks the link,
 * as do an unknown type, another version and a record over 2^14 plaintext bytes. */
static void test_tlsrec_refuses_handshake_ccs_and_malformed_headers(void **state)
{
    static uint8_t rec[LP_TLSREC_MAX_RECORD + 64];
    size_t n;
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    (void)state;
    pair_init(&a, &b, LP_TLSREC_CHACHA20_POLY1305, 1, 1);
    const uint8_t hello_request[4] = {0, 0, 0, 0};
    assert_int_equal(
        lp_tlsrec_seal(&a, LP_TLSREC_HANDSHAKE, hello_request, 4, rec, sizeof(rec), &n), LP_OK);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_PROTOCOL);
    assert_non_null(strstr(b.why, "handshake"));
    assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_CHANGE_CIPHER_SPEC, (const uint8_t *)"\x01", 1,
                                    rec, sizeof(rec), &n),
                     LP_OK);
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_PROTOCOL);

    uint8_t head[5] = {24, 3, 3, 0, 40};
    assert_int_equal(lp_tlsrec_open(&b, head, 5, NULL, 0, &m), LP_ERR_MALFORMED);
    head[0] = 23;
    head[2] = 1; /* TLS 1.0 */
    assert_int_equal(lp_tlsrec_open(&b, head, 5, NULL, 0, &m), LP_ERR_MALFORMED);
    head[2] = 3;
    head[3] = (LP_TLSREC_MAX_PLAIN + 17) >> 8; /* over 2^14 + tag */
    head[4] = (LP_TLSREC_MAX_PLAIN + 17) & 0xff;
    assert_int_equal(lp_tlsrec_open(&b, head, 5, NULL, 0, &m), LP_ERR_TOO_BIG);
    head[3] = 0;
    head[4] = 15; /* shorter than a tag */
    assert_int_equal(lp_tlsrec_open(&b, head, 5, NULL, 0, &m), LP_ERR_MALFORMED);
    /* nor will the sealer make a record over the limit */
    assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_APPLICATION_DATA, rec, LP_TLSREC_MAX_PLAIN + 1,
                                    rec, sizeof(rec), &n),
                     LP_ERR_TOO_BIG);
    assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_APPLICATION_DATA, rec, 100, rec, 100, &n),
                     LP_ERR_NOSPACE);
    pair_clear(&a, &b);
}

/* Sequence numbers never wrap: 2^64-1 is the last record either way. */
static void test_tlsrec_sequence_numbers_never_wrap(void **state)
{
    uint8_t rec[128], plain[16] = {1};
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    size_t n;
    (void)state;
    for (size_t c = 0; c < 3; c++) {
        pair_init(&a, &b, ciphers[c], UINT64_MAX - 2, UINT64_MAX - 2);
        assert_true(lp_tlsrec_rekey_due(&a, 0)); /* long before this point, really */
        for (int i = 0; i < 3; i++) {
            n = seal_data(&a, plain, sizeof(plain), rec);
            assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_OK);
        }
        assert_true(a.tx.spent);
        assert_true(b.rx.spent);
        assert_int_equal(lp_tlsrec_seal(&a, LP_TLSREC_APPLICATION_DATA, plain, sizeof(plain), rec,
                                        sizeof(rec), &n),
                         LP_ERR_STATE);
        /* a record the peer sealed past the end is refused too */
        struct lp_tlsrec a2, b2;
        pair_init(&a2, &b2, ciphers[c], 5, 5);
        n = seal_data(&a2, plain, sizeof(plain), rec);
        assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_STATE);
        pair_clear(&a2, &b2);
        pair_clear(&a, &b);
    }
}

static void test_tlsrec_rekey_is_due_after_the_byte_limit_or_half_the_gcm_budget(void **state)
{
    uint8_t rec[2048], plain[1000] = {0};
    struct lp_tlsrec a, b;
    struct lp_tlsrec_msg m;
    size_t n;
    (void)state;
    pair_init(&a, &b, LP_TLSREC_CHACHA20_POLY1305, 1, 1);
    n = seal_data(&a, plain, sizeof(plain), rec);
    assert_false(lp_tlsrec_rekey_due(&a, 2000));
    assert_false(lp_tlsrec_rekey_due(&a, 0));
    n = seal_data(&a, plain, sizeof(plain), rec);
    assert_true(lp_tlsrec_rekey_due(&a, 2000)); /* sealed 2000 */
    assert_false(lp_tlsrec_rekey_due(&b, 2000));
    /* sealed as record 2, offered where record 1 is due: refused */
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_AUTH);
    pair_clear(&a, &b);

    pair_init(&a, &b, LP_TLSREC_AES_128_GCM, 1, 1);
    a.tx.records = LP_TLSREC_GCM_REKEY_RECORDS - 1;
    assert_false(lp_tlsrec_rekey_due(&a, 0));
    n = seal_data(&a, plain, 10, rec);
    assert_true(lp_tlsrec_rekey_due(&a, 0));
    /* the hard budget: no record past 2^24 under one AES-GCM key */
    a.tx.records = LP_TLSREC_GCM_MAX_RECORDS - 1;
    n = seal_data(&a, plain, 10, rec);
    size_t none;
    assert_int_equal(
        lp_tlsrec_seal(&a, LP_TLSREC_APPLICATION_DATA, plain, 10, rec + n, sizeof(rec) - n, &none),
        LP_ERR_STATE);
    b.rx.records = LP_TLSREC_GCM_MAX_RECORDS;
    assert_int_equal(lp_tlsrec_open(&b, rec, n, NULL, 0, &m), LP_ERR_STATE);
    pair_clear(&a, &b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aead_chacha20_poly1305_matches_rfc8439),
        cmocka_unit_test(test_aead_aes_128_gcm_matches_nist_test_case_4),
        cmocka_unit_test(test_aead_aes_256_gcm_matches_nist_test_case_16),
        cmocka_unit_test(test_tlsrec_records_round_trip_in_both_directions_for_every_cipher),
        cmocka_unit_test(test_tlsrec_seals_in_place),
        cmocka_unit_test(test_tlsrec_nonce_and_additional_data_follow_the_rfcs),
        cmocka_unit_test(test_tlsrec_gcm_opener_uses_the_explicit_nonce_it_receives),
        cmocka_unit_test(test_tlsrec_every_truncation_waits_for_more),
        cmocka_unit_test(test_tlsrec_every_bit_flip_is_refused),
        cmocka_unit_test(test_tlsrec_close_notify_is_a_clean_end),
        cmocka_unit_test(test_tlsrec_any_other_alert_breaks_the_link),
        cmocka_unit_test(test_tlsrec_refuses_handshake_ccs_and_malformed_headers),
        cmocka_unit_test(test_tlsrec_sequence_numbers_never_wrap),
        cmocka_unit_test(test_tlsrec_rekey_is_due_after_the_byte_limit_or_half_the_gcm_budget),
    };
    return cmocka_run_group_tests(tests, keys_setup, NULL);
}
