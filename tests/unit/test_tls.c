/* test_tls.c — TLS links over a socketpair: both modes carry data both ways on either record
 * layer (mbedTLS, or tlsrec over libcrypto after the hand-off) and across them, every kind of
 * wrong key or certificate is refused as an authentication failure, close_notify ends a link
 * cleanly and a forged record breaks it. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "limpet/tls.h"

#include "../../src/io/tls_internal.h" /* tls_fast_switch, for the refusal made by hand */

/* The suite certificate mode picks on the default (openssl) record layer on this CPU. */
static const char *cert_suite(void)
{
    return lp_tls_prefers_aes_gcm() ? "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"
                                    : "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256";
}

static const uint8_t KEY_A[LP_TLS_PSK_LEN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                              12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                              23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static uint8_t KEY_B[LP_TLS_PSK_LEN];

static bool lookup_laptop(void *user, const char *identity, uint8_t key[LP_TLS_PSK_LEN])
{
    (void)user;
    if (strcmp(identity, "laptop") != 0)
        return false;
    memcpy(key, KEY_A, LP_TLS_PSK_LEN);
    return true;
}

struct pair {
    int fds[2];
    lp_tls *c, *s;
    lp_err crc, src;
    char cerr[256], serr[256];
};

static void pair_open(struct pair *p, lp_tls_conf *cc, lp_tls_conf *sc)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds), 0);
    assert_int_equal(lp_tls_new(cc, p->fds[0], &p->c), LP_OK);
    assert_int_equal(lp_tls_new(sc, p->fds[1], &p->s), LP_OK);
}

/* Alternates the two handshakes until neither is waiting (bounded). */
static void pair_handshake(struct pair *p)
{
    p->crc = p->src = LP_ERR_TRUNCATED;
    for (int i = 0; i < 1000 && (p->crc == LP_ERR_TRUNCATED || p->src == LP_ERR_TRUNCATED); i++) {
        if (p->crc == LP_ERR_TRUNCATED)
            p->crc = lp_tls_handshake(p->c, p->cerr, sizeof(p->cerr));
        if (p->src == LP_ERR_TRUNCATED)
            p->src = lp_tls_handshake(p->s, p->serr, sizeof(p->serr));
        if (p->crc != LP_ERR_TRUNCATED && p->src != LP_ERR_TRUNCATED)
            break;
        if (p->crc != LP_OK && p->crc != LP_ERR_TRUNCATED)
            shutdown(p->fds[0], SHUT_RDWR); /* a failed side closes, as the runtime does */
        if (p->src != LP_OK && p->src != LP_ERR_TRUNCATED)
            shutdown(p->fds[1], SHUT_RDWR);
    }
}

static void pair_close(struct pair *p)
{
    lp_tls_free(p->c);
    lp_tls_free(p->s);
    close(p->fds[0]);
    close(p->fds[1]);
}

/* Moves n bytes from one end to the other through TLS, both non-blocking. */
static void carry(lp_tls *from, lp_tls *to, size_t n)
{
    uint8_t *out = malloc(n), *in = malloc(n);
    size_t sent = 0, got = 0;
    lp_err rc;

    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(i * 7 + 3);
    for (int i = 0; i < 100000 && got < n; i++) {
        if (sent < n) {
            ssize_t w = lp_tls_write(from, out + sent, n - sent, &rc);
            if (w > 0)
                sent += (size_t)w;
        } else {
            rc = lp_tls_flush(from); /* would block: the reader below makes room */
            assert_true(rc == LP_OK || rc == LP_ERR_TRUNCATED);
        }
        ssize_t r = lp_tls_read(to, in + got, n - got, &rc);
        if (r > 0)
            got += (size_t)r;
    }
    assert_int_equal(got, n);
    assert_memory_equal(in, out, n);
    free(out);
    free(in);
}

static void test_tls_psk_carries_data_both_ways_with_chacha20(void **state)
{
    lp_tls_conf *cc, *sc;
    struct pair p;
    char err[256];
    (void)state;
    assert_int_equal(lp_tls_conf_client_psk("laptop", KEY_A, &cc, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_tls_conf_server_psk(lookup_laptop, NULL, &sc, err, sizeof(err)), LP_OK);
    pair_open(&p, cc, sc);
    pair_handshake(&p);
    assert_int_equal(p.crc, LP_OK);
    assert_int_equal(p.src, LP_OK);
    assert_string_equal(lp_tls_peer_identity(p.s), "laptop");
    assert_string_equal(lp_tls_suite(p.c), "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256");
    assert_string_equal(lp_tls_record_layer(p.c), "openssl");
    assert_string_equal(lp_tls_record_layer(p.s), "openssl");
    carry(p.c, p.s, 300000); /* more than a socket buffer: WANT_WRITE paths run */
    carry(p.s, p.c, 300000);
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

static void psk_refused(const char *identity, const uint8_t *key)
{
    lp_tls_conf *cc, *sc;
    struct pair p;
    char err[256];
    assert_int_equal(lp_tls_conf_client_psk(identity, key, &cc, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_tls_conf_server_psk(lookup_laptop, NULL, &sc, err, sizeof(err)), LP_OK);
    pair_open(&p, cc, sc);
    pair_handshake(&p);
    assert_int_equal(p.src, LP_ERR_AUTH);
    assert_int_not_equal(p.crc, LP_OK);
    assert_null(strstr(p.serr, "\x01\x02\x03")); /* no key bytes in the message */
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

static void test_tls_psk_refuses_unknown_identity(void **state)
{
    (void)state;
    psk_refused("stranger", KEY_A);
}

static void test_tls_psk_refuses_wrong_key(void **state)
{
    (void)state;
    memset(KEY_B, 0x5a, sizeof(KEY_B));
    psk_refused("laptop", KEY_B);
}

/* ---- record layers -------------------------------------------------------------------------- */

static void psk_pair(struct pair *p, lp_tls_conf **cc, lp_tls_conf **sc, enum lp_tls_layer cl,
                     enum lp_tls_layer sl)
{
    char err[256];
    assert_int_equal(lp_tls_conf_client_psk("laptop", KEY_A, cc, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_tls_conf_server_psk(lookup_laptop, NULL, sc, err, sizeof(err)), LP_OK);
    lp_tls_conf_set_record_layer(*cc, cl);
    lp_tls_conf_set_record_layer(*sc, sl);
    pair_open(p, *cc, *sc);
}

/* Records sealed by tlsrec open in mbedTLS and the other way round: the wire is the same. */
static void test_tls_fast_records_and_mbedtls_records_interoperate(void **state)
{
    const enum lp_tls_layer layers[][2] = {{LP_TLS_LAYER_OPENSSL, LP_TLS_LAYER_MBEDTLS},
                                           {LP_TLS_LAYER_MBEDTLS, LP_TLS_LAYER_OPENSSL},
                                           {LP_TLS_LAYER_MBEDTLS, LP_TLS_LAYER_MBEDTLS}};
    (void)state;
    for (size_t i = 0; i < 3; i++) {
        lp_tls_conf *cc, *sc;
        struct pair p;
        psk_pair(&p, &cc, &sc, layers[i][0], layers[i][1]);
        pair_handshake(&p);
        assert_int_equal(p.crc, LP_OK);
        assert_int_equal(p.src, LP_OK);
        assert_string_equal(lp_tls_record_layer(p.c), lp_tls_layer_name(layers[i][0]));
        assert_string_equal(lp_tls_record_layer(p.s), lp_tls_layer_name(layers[i][1]));
        carry(p.c, p.s, 300000);
        carry(p.s, p.c, 300000);
        pair_close(&p);
        lp_tls_conf_free(cc);
        lp_tls_conf_free(sc);
    }
}

/* The server's first record can arrive with its Finished, in the client's read-ahead buffer
 * before the hand-off: tlsrec opens it after. */
static void test_tls_records_read_ahead_in_the_handshake_open_after_the_switch(void **state)
{
    lp_tls_conf *cc, *sc;
    struct pair p;
    lp_err rc;
    uint8_t buf[64];
    (void)state;
    psk_pair(&p, &cc, &sc, LP_TLS_LAYER_OPENSSL, LP_TLS_LAYER_OPENSSL);
    p.crc = p.src = LP_ERR_TRUNCATED;
    /* the client's last flight reaches the server, which finishes first ... */
    for (int i = 0; i < 1000 && p.src == LP_ERR_TRUNCATED; i++) {
        if (p.crc == LP_ERR_TRUNCATED)
            p.crc = lp_tls_handshake(p.c, p.cerr, sizeof(p.cerr));
        p.src = lp_tls_handshake(p.s, p.serr, sizeof(p.serr));
    }
    assert_int_equal(p.src, LP_OK);
    assert_int_equal(p.crc, LP_ERR_TRUNCATED);
    /* ... and writes at once, behind its Finished */
    assert_int_equal(lp_tls_write(p.s, "early bytes", 11, &rc), 11);
    assert_int_equal(lp_tls_flush(p.s), LP_OK);
    assert_int_equal(lp_tls_handshake(p.c, p.cerr, sizeof(p.cerr)), LP_OK);
    assert_string_equal(lp_tls_record_layer(p.c), "openssl");
    assert_true(lp_tls_pending(p.c)); /* read ahead, invisible to epoll */
    assert_int_equal(lp_tls_read(p.c, buf, sizeof(buf), &rc), 11);
    assert_memory_equal(buf, "early bytes", 11);
    assert_false(lp_tls_pending(p.c));
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

/* A key block of the right shape for the ChaCha20-Poly1305 suite, as if mbedTLS had just
 * exported it: what lets tls_fast_switch reach its last check. */
static void give_keys(lp_tls *t)
{
    t->keys = calloc(1, sizeof(*t->keys));
    assert_non_null(t->keys);
    t->keys->keylen = lp_tlsrec_key_len(LP_TLSREC_CHACHA20_POLY1305);
    t->keys->ivlen = lp_tlsrec_iv_len(LP_TLSREC_CHACHA20_POLY1305);
}

/* The hand-off is refused while mbedTLS holds bytes tlsrec would never see (decrypted bytes
 * not read yet; a record not yet sent), and the link goes on with mbedTLS's records, losing
 * nothing. A handshake that just ended leaves nothing behind (mbedTLS reads exactly the
 * records it needs, and has flushed its last flight), so both states are made by hand on
 * links that stayed with mbedTLS. */
static void test_tls_no_switch_while_mbedtls_holds_bytes(void **state)
{
    lp_tls_conf *cc, *sc;
    struct pair p;
    lp_err rc;
    uint8_t buf[1000], big[16384];
    ssize_t n;
    const char *why;
    (void)state;
    psk_pair(&p, &cc, &sc, LP_TLS_LAYER_MBEDTLS, LP_TLS_LAYER_MBEDTLS);
    pair_handshake(&p);
    assert_int_equal(p.crc, LP_OK);
    assert_int_equal(p.src, LP_OK);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 13 + 1);

    /* decrypted bytes left unread on the client */
    assert_int_equal(lp_tls_write(p.s, buf, sizeof(buf), &rc), (ssize_t)sizeof(buf));
    assert_int_equal(lp_tls_flush(p.s), LP_OK);
    uint8_t first, rest[sizeof(buf)];
    assert_int_equal(lp_tls_read(p.c, &first, 1, &rc), 1);
    give_keys(p.c);
    why = tls_fast_switch(p.c);
    assert_non_null(why);
    assert_non_null(strstr(why, "mbedTLS holds"));
    assert_false(p.c->fast);
    assert_non_null(p.c->ssl);
    tls_drop_keys(p.c);
    assert_string_equal(lp_tls_record_layer(p.c), "mbedtls");
    n = lp_tls_read(p.c, rest, sizeof(rest), &rc);
    assert_int_equal(n, (ssize_t)sizeof(buf) - 1);
    assert_int_equal(first, buf[0]);
    assert_memory_equal(rest, buf + 1, sizeof(buf) - 1);

    /* output mbedTLS has sealed but the socket did not take */
    memset(big, 0x5a, sizeof(big));
    for (int i = 0; i < 10000; i++) {
        if (lp_tls_write(p.c, big, sizeof(big), &rc) < 0)
            break; /* the socket is full: mbedTLS keeps the record it sealed */
        rc = lp_tls_flush(p.c);
    }
    assert_int_equal(rc, LP_ERR_TRUNCATED);
    give_keys(p.c);
    why = tls_fast_switch(p.c);
    assert_non_null(why);
    assert_non_null(strstr(why, "output not yet sent"));
    assert_false(p.c->fast);
    tls_drop_keys(p.c);
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

/* Records that arrived together come out of one read, as bytes do on plain TCP: the layers
 * above then handle them in one go (one write to a target, not one per record). */
static void test_tls_one_read_returns_every_record_that_arrived(void **state)
{
    lp_tls_conf *cc, *sc;
    struct pair p;
    lp_err rc;
    static uint8_t out[3 * 20000], in[sizeof(out) + 1];
    (void)state;
    psk_pair(&p, &cc, &sc, LP_TLS_LAYER_OPENSSL, LP_TLS_LAYER_OPENSSL);
    pair_handshake(&p);
    assert_int_equal(p.crc, LP_OK);
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 5 + 1);
    size_t sent = 0; /* 20000-byte writes: records of 16384 and 3616 bytes */
    for (int i = 0; i < 3; i++) {
        size_t part = 0;
        while (part < 20000) {
            ssize_t n = lp_tls_write(p.c, out + sent, 20000 - part, &rc);
            assert_true(n > 0);
            part += (size_t)n;
            sent += (size_t)n;
        }
    }
    assert_int_equal(lp_tls_flush(p.c), LP_OK);
    assert_int_equal(lp_tls_read(p.s, in, sizeof(in), &rc), (ssize_t)sizeof(out));
    assert_memory_equal(in, out, sizeof(out));
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

/* Closing a link that did not break sends close_notify: the peer reads a clean end. */
static void test_tls_close_notify_ends_the_link_cleanly(void **state)
{
    (void)state;
    for (int layer = 0; layer < 2; layer++) {
        lp_tls_conf *cc, *sc;
        struct pair p;
        lp_err rc = LP_OK;
        uint8_t buf[64];
        psk_pair(&p, &cc, &sc, (enum lp_tls_layer)layer, (enum lp_tls_layer)layer);
        pair_handshake(&p);
        assert_int_equal(p.crc, LP_OK);
        carry(p.c, p.s, 1000);
        lp_tls_free(p.c);
        p.c = NULL;
        assert_int_equal(lp_tls_read(p.s, buf, sizeof(buf), &rc), 0);
        assert_non_null(strstr(lp_tls_error(p.s), "close_notify"));
        pair_close(&p);
        lp_tls_conf_free(cc);
        lp_tls_conf_free(sc);
    }
}

/* A record that was not sealed with the link's key, or a handshake message after the
 * handshake, ends the link: the read fails and says why; no plaintext comes out. */
static void test_tls_forged_or_unexpected_records_break_the_link(void **state)
{
    static const uint8_t forged[] = {23, 3,  3,  0,  24, 1,  2,  3,  4,  5,  6,  7,  8,  9, 10,
                                     11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
    static const uint8_t hello_request[] = {22, 3, 3, 0, 20, 0, 0, 0, 0, 9, 9, 9,
                                            9,  9, 9, 9, 9,  9, 9, 9, 9, 9, 9, 9};
    const struct {
        const uint8_t *rec;
        size_t len;
        const char *why;
    } cases[] = {{forged, sizeof(forged), "bad tag"},
                 {hello_request, sizeof(hello_request), "handshake message"}};
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        lp_tls_conf *cc, *sc;
        struct pair p;
        lp_err rc = LP_OK;
        uint8_t buf[64];
        psk_pair(&p, &cc, &sc, LP_TLS_LAYER_OPENSSL, LP_TLS_LAYER_OPENSSL);
        pair_handshake(&p);
        assert_int_equal(p.src, LP_OK);
        assert_int_equal(write(p.fds[0], cases[i].rec, cases[i].len), (ssize_t)cases[i].len);
        assert_int_equal(lp_tls_read(p.s, buf, sizeof(buf), &rc), -1);
        assert_int_equal(rc, LP_ERR_PROTOCOL);
        assert_non_null(strstr(lp_tls_error(p.s), cases[i].why));
        pair_close(&p);
        lp_tls_conf_free(cc);
        lp_tls_conf_free(sc);
    }
}

static void test_tls_rekey_is_due_once_the_link_carried_enough(void **state)
{
    (void)state;
    for (int layer = 0; layer < 2; layer++) {
        lp_tls_conf *cc, *sc;
        struct pair p;
        psk_pair(&p, &cc, &sc, (enum lp_tls_layer)layer, (enum lp_tls_layer)layer);
        pair_handshake(&p);
        assert_int_equal(p.crc, LP_OK);
        assert_false(lp_tls_rekey_due(p.c, 100000));
        carry(p.c, p.s, 100000);
        assert_true(lp_tls_rekey_due(p.c, 100000)); /* sent */
        assert_true(lp_tls_rekey_due(p.s, 100000)); /* received */
        assert_false(lp_tls_rekey_due(p.c, 200000));
        assert_false(lp_tls_rekey_due(p.c, 0)); /* no byte limit */
        pair_close(&p);
        lp_tls_conf_free(cc);
        lp_tls_conf_free(sc);
    }
}

/* ---- certificates ---------------------------------------------------------------------- */

static char dir[64];

static void make_cert(const char *name)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=%s -keyout %s/%s.key -out %s/%s.crt >/dev/null 2>&1",
             name, dir, name, dir, name);
    assert_int_equal(system(cmd), 0);
}

static void cert_fp(const char *name, uint8_t fp[LP_TLS_FP_LEN])
{
    char cmd[512], hex[3 * LP_TLS_FP_LEN + 8];
    snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/%s.crt -outform DER | sha256sum", dir, name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(hex, sizeof(hex), f));
    pclose(f);
    for (unsigned i = 0; i < LP_TLS_FP_LEN; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        fp[i] = (uint8_t)v;
    }
}

static uint8_t listed_client[LP_TLS_FP_LEN];

static bool lookup_fp(void *user, const uint8_t fp[LP_TLS_FP_LEN])
{
    (void)user;
    return memcmp(fp, listed_client, LP_TLS_FP_LEN) == 0;
}

static int certs_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/limpet-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    make_cert("server");
    make_cert("client");
    make_cert("other");
    return 0;
}

static int certs_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void cert_run(const char *client, const uint8_t *pin, lp_err want_c, lp_err want_s)
{
    char crt[128], key[128], scrt[128], skey[128], err[256];
    lp_tls_conf *cc, *sc;
    struct pair p;

    snprintf(crt, sizeof(crt), "%s/%s.crt", dir, client);
    snprintf(key, sizeof(key), "%s/%s.key", dir, client);
    snprintf(scrt, sizeof(scrt), "%s/server.crt", dir);
    snprintf(skey, sizeof(skey), "%s/server.key", dir);
    assert_int_equal(lp_tls_conf_client_cert(crt, key, pin, &cc, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_tls_conf_server_cert(scrt, skey, lookup_fp, NULL, &sc, err, sizeof(err)),
                     LP_OK);
    pair_open(&p, cc, sc);
    pair_handshake(&p);
    if (want_c == LP_OK && want_s == LP_OK) {
        assert_int_equal(p.crc, LP_OK);
        assert_int_equal(p.src, LP_OK);
        assert_string_equal(lp_tls_suite(p.c), cert_suite());
        assert_string_equal(lp_tls_record_layer(p.s), "openssl");
        carry(p.c, p.s, 100000);
        carry(p.s, p.c, 100000);
    } else {
        if (want_c != LP_OK)
            assert_int_equal(p.crc, want_c);
        if (want_s != LP_OK)
            assert_int_equal(p.src, want_s);
    }
    pair_close(&p);
    lp_tls_conf_free(cc);
    lp_tls_conf_free(sc);
}

static void test_tls_cert_mode_with_pins_on_both_sides(void **state)
{
    uint8_t server_fp[LP_TLS_FP_LEN];
    (void)state;
    cert_fp("server", server_fp);
    cert_fp("client", listed_client);
    cert_run("client", server_fp, LP_OK, LP_OK);
}

static void test_tls_client_refuses_server_with_other_fingerprint(void **state)
{
    uint8_t wrong[LP_TLS_FP_LEN];
    (void)state;
    cert_fp("other", wrong);
    cert_fp("client", listed_client);
    cert_run("client", wrong, LP_ERR_AUTH, LP_OK);
}

static void test_tls_server_refuses_unlisted_client_certificate(void **state)
{
    uint8_t server_fp[LP_TLS_FP_LEN];
    (void)state;
    cert_fp("server", server_fp);
    cert_fp("client", listed_client);
    cert_run("other", server_fp, LP_OK, LP_ERR_AUTH);
}

/* One server configuration serves a PSK client and a certificate client alike. */
static void test_tls_mixed_server_accepts_psk_and_cert_clients(void **state)
{
    char scrt[128], skey[128], crt[128], key[128], err[256];
    uint8_t server_fp[LP_TLS_FP_LEN];
    lp_tls_conf *sc, *pc, *cc;
    struct pair p;
    (void)state;
    snprintf(scrt, sizeof(scrt), "%s/server.crt", dir);
    snprintf(skey, sizeof(skey), "%s/server.key", dir);
    snprintf(crt, sizeof(crt), "%s/client.crt", dir);
    snprintf(key, sizeof(key), "%s/client.key", dir);
    cert_fp("server", server_fp);
    cert_fp("client", listed_client);
    assert_int_equal(
        lp_tls_conf_server(scrt, skey, lookup_laptop, lookup_fp, NULL, &sc, err, sizeof(err)),
        LP_OK);
    assert_int_equal(lp_tls_conf_client_psk("laptop", KEY_A, &pc, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_tls_conf_client_cert(crt, key, server_fp, &cc, err, sizeof(err)), LP_OK);

    pair_open(&p, pc, sc);
    pair_handshake(&p);
    assert_int_equal(p.crc, LP_OK);
    assert_int_equal(p.src, LP_OK);
    assert_string_equal(lp_tls_peer_identity(p.s), "laptop");
    carry(p.c, p.s, 50000);
    pair_close(&p);

    pair_open(&p, cc, sc);
    pair_handshake(&p);
    assert_int_equal(p.crc, LP_OK);
    assert_int_equal(p.src, LP_OK);
    assert_string_equal(lp_tls_suite(p.c), cert_suite());
    carry(p.s, p.c, 50000);
    pair_close(&p);

    lp_tls_conf_free(sc);
    lp_tls_conf_free(pc);
    lp_tls_conf_free(cc);
}

/* Certificate mode on the mbedTLS layer keeps ChaCha20 first (mbedTLS's fastest AEAD), and a
 * client on one layer talks to a server on the other. */
static void test_tls_cert_mode_on_each_record_layer(void **state)
{
    char crt[128], key[128], scrt[128], skey[128], err[256];
    uint8_t server_fp[LP_TLS_FP_LEN];
    (void)state;
    snprintf(crt, sizeof(crt), "%s/client.crt", dir);
    snprintf(key, sizeof(key), "%s/client.key", dir);
    snprintf(scrt, sizeof(scrt), "%s/server.crt", dir);
    snprintf(skey, sizeof(skey), "%s/server.key", dir);
    cert_fp("server", server_fp);
    cert_fp("client", listed_client);
    for (int i = 0; i < 3; i++) {
        enum lp_tls_layer cl = i == 1 ? LP_TLS_LAYER_OPENSSL : LP_TLS_LAYER_MBEDTLS;
        enum lp_tls_layer sl = i == 2 ? LP_TLS_LAYER_OPENSSL : LP_TLS_LAYER_MBEDTLS;
        lp_tls_conf *cc, *sc;
        struct pair p;
        assert_int_equal(lp_tls_conf_client_cert(crt, key, server_fp, &cc, err, sizeof(err)),
                         LP_OK);
        assert_int_equal(
            lp_tls_conf_server_cert(scrt, skey, lookup_fp, NULL, &sc, err, sizeof(err)), LP_OK);
        lp_tls_conf_set_record_layer(cc, cl);
        lp_tls_conf_set_record_layer(sc, sl);
        pair_open(&p, cc, sc);
        pair_handshake(&p);
        assert_int_equal(p.crc, LP_OK);
        assert_int_equal(p.src, LP_OK);
        if (i == 0)
            assert_string_equal(lp_tls_suite(p.c), "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256");
        assert_string_equal(lp_tls_record_layer(p.c), lp_tls_layer_name(cl));
        assert_string_equal(lp_tls_record_layer(p.s), lp_tls_layer_name(sl));
        carry(p.c, p.s, 200000);
        carry(p.s, p.c, 200000);
        pair_close(&p);
        lp_tls_conf_free(cc);
        lp_tls_conf_free(sc);
    }
}

int main(void)
{
    const struct CMUnitTest psk[] = {
        cmocka_unit_test(test_tls_psk_carries_data_both_ways_with_chacha20),
        cmocka_unit_test(test_tls_psk_refuses_unknown_identity),
        cmocka_unit_test(test_tls_psk_refuses_wrong_key),
        cmocka_unit_test(test_tls_fast_records_and_mbedtls_records_interoperate),
        cmocka_unit_test(test_tls_records_read_ahead_in_the_handshake_open_after_the_switch),
        cmocka_unit_test(test_tls_no_switch_while_mbedtls_holds_bytes),
        cmocka_unit_test(test_tls_one_read_returns_every_record_that_arrived),
        cmocka_unit_test(test_tls_close_notify_ends_the_link_cleanly),
        cmocka_unit_test(test_tls_forged_or_unexpected_records_break_the_link),
        cmocka_unit_test(test_tls_rekey_is_due_once_the_link_carried_enough),
    };
    const struct CMUnitTest certs[] = {
        cmocka_unit_test(test_tls_cert_mode_with_pins_on_both_sides),
        cmocka_unit_test(test_tls_client_refuses_server_with_other_fingerprint),
        cmocka_unit_test(test_tls_server_refuses_unlisted_client_certificate),
        cmocka_unit_test(test_tls_mixed_server_accepts_psk_and_cert_clients),
        cmocka_unit_test(test_tls_cert_mode_on_each_record_layer),
    };
    int fails = cmocka_run_group_tests(psk, NULL, NULL);
    return fails + cmocka_run_group_tests(certs, certs_setup, certs_teardown);
}
