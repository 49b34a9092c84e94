/* test_tlsrec_mbedtls.c — tlsrec against mbedTLS's own record layer, in memory: two mbedTLS
 * endpoints shake hands, then one of them is replaced by tlsrec (with the key block mbedTLS
 * exported and its sequence numbers), and records go both ways: sealed by mbedTLS and opened
 * by tlsrec, sealed by tlsrec and opened by mbedTLS. For ChaCha20-Poly1305, AES-128-GCM and
 * AES-256-GCM, tlsrec as the client and as the server, sequence numbers 1, 2, ... and the last
 * ones before 2^64 (where both refuse to wrap); close_notify both ways; a flipped bit refused by
 * mbedTLS too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>

#include "limpet/aead.h"
#include "limpet/tlsrec.h"

/* ---- an in-memory byte pipe per direction ----------------------------------------------------- */

#define QCAP (256u * 1024u)

struct queue {
    uint8_t buf[QCAP];
    size_t rpos, wpos;
};

static int q_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct queue *q = ctx;
    if (len > QCAP - q->wpos)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    memcpy(q->buf + q->wpos, buf, len);
    q->wpos += len;
    return (int)len;
}

static int q_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct queue *q = ctx;
    size_t n = q->wpos - q->rpos;
    if (n == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    n = n < len ? n : len;
    memcpy(buf, q->buf + q->rpos, n);
    q->rpos += n;
    if (q->rpos == q->wpos)
        q->rpos = q->wpos = 0;
    return (int)n;
}

/* ---- two mbedTLS endpoints -------------------------------------------------------------------- */

struct keys {
    uint8_t block[2 * 32 + 2 * 12];
    size_t keylen, ivlen;
    bool got;
};

struct end {
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    struct keys keys;
};

struct world {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    struct end c, s;
    struct queue c2s, s2c;
    int suites[2];
};

static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                       size_t keylen, size_t ivlen, const unsigned char cr[32],
                       const unsigned char sr[32], mbedtls_tls_prf_types prf)
{
    struct keys *k = p;
    (void)ms;
    (void)cr;
    (void)sr;
    (void)prf;
    assert_int_equal(maclen, 0);
    memcpy(k->block, kb, 2 * keylen + 2 * ivlen);
    k->keylen = keylen;
    k->ivlen = ivlen;
    k->got = true;
    return 0;
}

static const uint8_t PSK[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6,
                                7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3};

static void end_init(struct world *w, struct end *e, int endpoint)
{
    mbedtls_ssl_config_init(&e->conf);
    mbedtls_ssl_init(&e->ssl);
    assert_int_equal(mbedtls_ssl_config_defaults(&e->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                                 MBEDTLS_SSL_PRESET_DEFAULT),
                     0);
    mbedtls_ssl_conf_rng(&e->conf, mbedtls_ctr_drbg_random, &w->drbg);
    mbedtls_ssl_conf_ciphersuites(&e->conf, w->suites);
    mbedtls_ssl_conf_min_version(&e->conf, 3, 3);
    assert_int_equal(mbedtls_ssl_conf_psk(&e->conf, PSK, sizeof(PSK), (const uint8_t *)"t", 1), 0);
    mbedtls_ssl_conf_export_keys_ext_cb(&e->conf, export_keys, &e->keys);
    assert_int_equal(mbedtls_ssl_setup(&e->ssl, &e->conf), 0);
}

static void world_init(struct world *w, int suite)
{
    memset(w, 0, sizeof(*w));
    w->suites[0] = suite;
    mbedtls_entropy_init(&w->entropy);
    mbedtls_ctr_drbg_init(&w->drbg);
    assert_int_equal(mbedtls_ctr_drbg_seed(&w->drbg, mbedtls_entropy_func, &w->entropy, NULL, 0),
                     0);
    end_init(w, &w->c, MBEDTLS_SSL_IS_CLIENT);
    end_init(w, &w->s, MBEDTLS_SSL_IS_SERVER);
}

/* Each end writes into its own queue (the bio context) and reads the other's. */
static struct world *the_world;

static int c_recv(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return q_recv(&the_world->s2c, buf, len);
}

static int s_recv(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return q_recv(&the_world->c2s, buf, len);
}

static void world_handshake(struct world *w)
{
    int rc = 1, rs = 1;
    the_world = w;
    mbedtls_ssl_set_bio(&w->c.ssl, &w->c2s, q_send, c_recv, NULL);
    mbedtls_ssl_set_bio(&w->s.ssl, &w->s2c, q_send, s_recv, NULL);
    for (int i = 0; i < 100 && (rc != 0 || rs != 0); i++) {
        if (rc != 0)
            rc = mbedtls_ssl_handshake(&w->c.ssl);
        if (rs != 0)
            rs = mbedtls_ssl_handshake(&w->s.ssl);
        if (rc != 0)
            assert_true(rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (rs != 0)
            assert_true(rs == MBEDTLS_ERR_SSL_WANT_READ || rs == MBEDTLS_ERR_SSL_WANT_WRITE);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rs, 0);
    assert_true(w->c.keys.got && w->s.keys.got);
    assert_memory_equal(w->c.keys.block, w->s.keys.block, sizeof(w->c.keys.block));
}

static void world_free(struct world *w)
{
    mbedtls_ssl_free(&w->c.ssl);
    mbedtls_ssl_free(&w->s.ssl);
    mbedtls_ssl_config_free(&w->c.conf);
    mbedtls_ssl_config_free(&w->s.conf);
    mbedtls_ctr_drbg_free(&w->drbg);
    mbedtls_entropy_free(&w->entropy);
}

static uint64_t ctr(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void set_ctr(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* tlsrec in the place of end `me` (its keys and sequence numbers), as tls_fast.c builds it. */
static void take_over(struct lp_tlsrec *r, enum lp_tlsrec_cipher cipher, struct end *me,
                      bool is_server)
{
    const struct keys *k = &me->keys;
    const uint8_t *ckey = k->block, *skey = ckey + k->keylen;
    const uint8_t *civ = skey + k->keylen, *siv = civ + k->ivlen;
    struct lp_aead tx, rx;
    char err[128];

    assert_int_equal(k->keylen, lp_tlsrec_key_len(cipher));
    assert_int_equal(k->ivlen, lp_tlsrec_iv_len(cipher));
    assert_int_equal(lp_aead_evp_new(cipher, is_server ? skey : ckey, true, &tx, err, sizeof(err)),
                     LP_OK);
    assert_int_equal(lp_aead_evp_new(cipher, is_server ? ckey : skey, false, &rx, err, sizeof(err)),
                     LP_OK);
    assert_int_equal(ctr(me->ssl.cur_out_ctr), 1); /* Finished was record 0 */
    assert_int_equal(ctr(me->ssl.in_ctr), 1);
    lp_tlsrec_init(r, cipher, tx, is_server ? siv : civ, ctr(me->ssl.cur_out_ctr), rx,
                   is_server ? civ : siv, ctr(me->ssl.in_ctr));
}

/* ---- the exchanges ---------------------------------------------------------------------------- */

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 13 + seed * 7);
}

/* One record mbedTLS seals (peer writes into `to_me`), tlsrec opens. */
static void mbedtls_to_tlsrec(struct end *peer, struct queue *to_me, struct lp_tlsrec *r,
                              size_t len, unsigned seed)
{
    static uint8_t plain[LP_TLSREC_MAX_PLAIN], out[LP_TLSREC_MAX_PLAIN];
    struct lp_tlsrec_msg m;
    uint64_t seq = r->rx.seq;

    fill(plain, len, seed);
    assert_int_equal(mbedtls_ssl_write(&peer->ssl, plain, len), (int)len);
    assert_int_equal(lp_tlsrec_open(r, to_me->buf + to_me->rpos, to_me->wpos - to_me->rpos, out,
                                    sizeof(out), &m),
                     LP_OK);
    assert_int_equal(m.len, len);
    assert_memory_equal(m.data, plain, len);
    assert_int_equal(m.consumed, to_me->wpos - to_me->rpos); /* one whole record */
    to_me->rpos = to_me->wpos = 0;
    assert_int_equal(r->rx.seq, seq + 1);
}

/* One record tlsrec seals into the peer's input queue, mbedTLS opens. */
static void tlsrec_to_mbedtls(struct lp_tlsrec *r, struct queue *to_peer, struct end *peer,
                              size_t len, unsigned seed)
{
    static uint8_t plain[LP_TLSREC_MAX_PLAIN], got[LP_TLSREC_MAX_PLAIN];
    size_t n, have = 0;

    fill(plain, len, seed);
    assert_int_equal(lp_tlsrec_seal(r, LP_TLSREC_APPLICATION_DATA, plain, len,
                                    to_peer->buf + to_peer->wpos, QCAP - to_peer->wpos, &n),
                     LP_OK);
    to_peer->wpos += n;
    while (have < len) {
        int ret = mbedtls_ssl_read(&peer->ssl, got + have, len - have);
        assert_true(ret > 0);
        have += (size_t)ret;
    }
    assert_memory_equal(got, plain, len);
}

struct suite_case {
    int suite;
    enum lp_tlsrec_cipher cipher;
};

static const struct suite_case suites[] = {
    {MBEDTLS_TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, LP_TLSREC_CHACHA20_POLY1305},
    {MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256, LP_TLSREC_AES_128_GCM},
    {MBEDTLS_TLS_PSK_WITH_AES_256_GCM_SHA384, LP_TLSREC_AES_256_GCM},
};

/* tlsrec takes the place of the client (is_server false) or the server. */
static void exchange(const struct suite_case *sc, bool is_server, bool near_end)
{
    static struct world w;
    struct lp_tlsrec r;
    struct end *me, *peer;
    struct queue *to_me, *to_peer;
    const size_t sizes[] = {1, 100, 1400, LP_TLSREC_MAX_PLAIN, 0, 5000};

    world_init(&w, sc->suite);
    world_handshake(&w);
    me = is_server ? &w.s : &w.c;
    peer = is_server ? &w.c : &w.s;
    to_me = is_server ? &w.c2s : &w.s2c;
    to_peer = is_server ? &w.s2c : &w.c2s;
    take_over(&r, sc->cipher, me, is_server);
    if (near_end) { /* the last records before 2^64, both ways, on both stacks */
        const uint64_t start = UINT64_MAX - 2;
        set_ctr(peer->ssl.cur_out_ctr, start);
        set_ctr(peer->ssl.in_ctr, start);
        r.tx.seq = r.rx.seq = start;
    }
    size_t rounds = near_end ? 2 : sizeof(sizes) / sizeof(sizes[0]);
    for (size_t i = 0; i < rounds; i++) {
        mbedtls_to_tlsrec(peer, to_me, &r, sizes[i], (unsigned)i);
        tlsrec_to_mbedtls(&r, to_peer, peer, sizes[i] ? sizes[i] : 1, (unsigned)i + 50);
    }
    if (near_end) {
        /* 2^64-2 went both ways. mbedTLS stops there (it will not send the record whose
         * successor would wrap); tlsrec may still send 2^64-1, the last, then nothing. */
        uint8_t buf[64];
        size_t n;
        assert_int_equal(r.tx.seq, UINT64_MAX);
        assert_false(r.tx.spent);
        assert_int_equal(mbedtls_ssl_write(&peer->ssl, buf, 10), MBEDTLS_ERR_SSL_COUNTER_WRAPPING);
        assert_int_equal(
            lp_tlsrec_seal(&r, LP_TLSREC_APPLICATION_DATA, buf, 10, buf, sizeof(buf), &n), LP_OK);
        assert_true(r.tx.spent);
        assert_int_equal(
            lp_tlsrec_seal(&r, LP_TLSREC_APPLICATION_DATA, buf, 10, buf, sizeof(buf), &n),
            LP_ERR_STATE);
    } else {
        assert_int_equal(r.tx.seq, 1 + rounds);
        assert_int_equal(r.rx.seq, 1 + rounds);
    }
    lp_tlsrec_clear(&r);
    world_free(&w);
}

static void test_tlsrec_and_mbedtls_records_open_each_other_client_side(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++)
        exchange(&suites[i], false, false);
}

static void test_tlsrec_and_mbedtls_records_open_each_other_server_side(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++)
        exchange(&suites[i], true, false);
}

static void test_tlsrec_and_mbedtls_agree_up_to_the_last_sequence_number(void **state)
{
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        exchange(&suites[i], false, true);
        exchange(&suites[i], true, true);
    }
}

/* close_notify means the same to both; a record tlsrec sealed and the path corrupted is
 * refused by mbedTLS as well. */
static void test_close_notify_and_corruption_mean_the_same_to_both(void **state)
{
    static struct world w;
    struct lp_tlsrec r;
    struct lp_tlsrec_msg m;
    uint8_t plain[300];
    size_t n;
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        world_init(&w, suites[i].suite);
        world_handshake(&w);
        take_over(&r, suites[i].cipher, &w.c, false);
        /* mbedTLS's close_notify: a clean end for tlsrec */
        assert_int_equal(mbedtls_ssl_close_notify(&w.s.ssl), 0);
        assert_int_equal(lp_tlsrec_open(&r, w.s2c.buf, w.s2c.wpos, NULL, 0, &m), LP_ERR_CLOSED);
        /* a flipped bit in a tlsrec record: mbedTLS says its MAC is bad */
        fill(plain, sizeof(plain), 3);
        assert_int_equal(lp_tlsrec_seal(&r, LP_TLSREC_APPLICATION_DATA, plain, sizeof(plain),
                                        w.c2s.buf, QCAP, &n),
                         LP_OK);
        w.c2s.buf[n - 20] ^= 0x04;
        w.c2s.wpos = n;
        assert_int_equal(mbedtls_ssl_read(&w.s.ssl, plain, sizeof(plain)),
                         MBEDTLS_ERR_SSL_INVALID_MAC);
        lp_tlsrec_clear(&r);
        world_free(&w);

        /* tlsrec's close_notify: mbedTLS reads the peer's close */
        world_init(&w, suites[i].suite);
        world_handshake(&w);
        take_over(&r, suites[i].cipher, &w.c, false);
        assert_int_equal(lp_tlsrec_seal_alert(&r, LP_TLSREC_ALERT_WARNING, LP_TLSREC_CLOSE_NOTIFY,
                                              w.c2s.buf, QCAP, &n),
                         LP_OK);
        w.c2s.wpos = n;
        assert_int_equal(mbedtls_ssl_read(&w.s.ssl, plain, sizeof(plain)),
                         MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
        lp_tlsrec_clear(&r);
        world_free(&w);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tlsrec_and_mbedtls_records_open_each_other_client_side),
        cmocka_unit_test(test_tlsrec_and_mbedtls_records_open_each_other_server_side),
        cmocka_unit_test(test_tlsrec_and_mbedtls_agree_up_to_the_last_sequence_number),
        cmocka_unit_test(test_close_notify_and_corruption_mean_the_same_to_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
