/* test_proxyv2.c — the PROXY protocol v2 header a balancer puts before a tunnel connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/proxyv2.h"

static const uint8_t SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A header: signature, ver_cmd, fam, then body (its length written for it). */
static size_t build(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t n)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(n >> 8);
    out[15] = (uint8_t)n;
    if (n > 0) /* body may be NULL when empty, and may already sit there */
        memmove(out + 16, body, n);
    return 16 + n;
}

/* 127.0.0.2:50000 -> 127.0.0.1:7070, then a NOOP TLV of 3 bytes */
static const uint8_t INET_BODY[] = {127,  0,    0,    2,    127, 0, 0,   1,   0xc3,
                                    0x50, 0x1b, 0x9e, 0x04, 0,   3, 'a', 'b', 'c'};

static void test_proxy_reads_an_ipv4_tcp_header_and_leaves_the_stream(void **state)
{
    uint8_t buf[128];
    struct lp_proxy_hdr h;
    const char *why;
    size_t n = build(buf, 0x21, 0x11, INET_BODY, sizeof(INET_BODY));
    (void)state;

    memcpy(buf + n, "\x16\x03\x01", 3); /* the TLS ClientHello that follows */
    assert_int_equal(lp_proxy_parse(buf, n + 3, &h, &why), LP_OK);
    assert_int_equal(h.len, n);
    assert_false(h.local);
    assert_int_equal(h.family, LP_PROXY_INET);
    assert_memory_equal(h.src, "\x7f\x00\x00\x02", 4);
    assert_memory_equal(h.dst, "\x7f\x00\x00\x01", 4);
    assert_int_equal(h.sport, 50000);
    assert_int_equal(h.dport, 7070);
}

static void test_proxy_reads_an_ipv6_header(void **state)
{
    uint8_t body[36] = {0}, buf[128];
    struct lp_proxy_hdr h;
    const char *why;
    (void)state;

    body[15] = 1;                                                       /* ::1 */
    body[16] = 0x20, body[17] = 0x01, body[18] = 0x0d, body[19] = 0xb8; /* 2001:db8:: */
    body[32] = 0x12, body[33] = 0x34, body[34] = 0x00, body[35] = 0x50;
    assert_int_equal(lp_proxy_parse(buf, build(buf, 0x21, 0x21, body, 36), &h, &why), LP_OK);
    assert_int_equal(h.family, LP_PROXY_INET6);
    assert_int_equal(h.src[15], 1);
    assert_int_equal(h.dst[0], 0x20);
    assert_int_equal(h.sport, 0x1234);
    assert_int_equal(h.dport, 80);
    assert_int_equal(h.len, 52);
}

static void test_proxy_local_and_unspec_keep_the_connection_addresses(void **state)
{
    uint8_t buf[128];
    struct lp_proxy_hdr h;
    const char *why;
    (void)state;

    /* HAProxy's health check: LOCAL, no address */
    assert_int_equal(lp_proxy_parse(buf, build(buf, 0x20, 0x00, NULL, 0), &h, &why), LP_OK);
    assert_true(h.local);
    assert_int_equal(h.family, LP_PROXY_NONE);
    assert_int_equal(h.len, 16);
    /* LOCAL with an address block: ignored */
    assert_int_equal(lp_proxy_parse(buf, build(buf, 0x20, 0x11, INET_BODY, 12), &h, &why), LP_OK);
    assert_true(h.local);
    assert_int_equal(h.family, LP_PROXY_NONE);
    /* PROXY over UNSPEC: addresses unknown */
    assert_int_equal(lp_proxy_parse(buf, build(buf, 0x21, 0x00, NULL, 0), &h, &why), LP_OK);
    assert_false(h.local);
    assert_int_equal(h.family, LP_PROXY_NONE);
}

static void test_proxy_every_prefix_asks_for_more(void **state)
{
    uint8_t buf[128];
    struct lp_proxy_hdr h;
    const char *why;
    size_t n = build(buf, 0x21, 0x11, INET_BODY, sizeof(INET_BODY));
    (void)state;

    for (size_t k = 1; k < n; k++)
        assert_int_equal(lp_proxy_parse(buf, k, &h, &why), LP_ERR_TRUNCATED);
}

static void expect_refused(const uint8_t *buf, size_t n, const char *want)
{
    struct lp_proxy_hdr h;
    const char *why = NULL;
    lp_err rc = lp_proxy_parse(buf, n, &h, &why);
    assert_true(rc == LP_ERR_MALFORMED || rc == LP_ERR_TOO_BIG);
    assert_non_null(why);
    assert_non_null(strstr(why, want));
}

static void test_proxy_refuses_what_is_not_a_tcp_header(void **state)
{
    uint8_t buf[1200], unix_body[216] = {0};
    size_t n;
    (void)state;

    n = build(buf, 0x21, 0x11, INET_BODY, sizeof(INET_BODY));
    for (size_t i = 0; i < 12; i++) { /* every signature byte */
        buf[i] ^= 0x40;
        expect_refused(buf, n, "signature");
        buf[i] ^= 0x40;
    }
    expect_refused(buf, build(buf, 0x11, 0x11, INET_BODY, 12), "version 2");
    expect_refused(buf, build(buf, 0x22, 0x11, INET_BODY, 12), "unknown command");
    expect_refused(buf, build(buf, 0x21, 0x12, INET_BODY, 12), "not a TCP connection"); /* UDP */
    expect_refused(buf, build(buf, 0x21, 0x31, unix_body, 216), "not a TCP connection");
    expect_refused(buf, build(buf, 0x21, 0x41, INET_BODY, 12), "unknown address family");
    expect_refused(buf, build(buf, 0x21, 0x11, INET_BODY, 11), "shorter than its address");
    expect_refused(buf, build(buf, 0x21, 0x21, INET_BODY, 12), "shorter than its address");
    expect_refused(buf, build(buf, 0x21, 0x11, INET_BODY, 14), "TLV runs past"); /* cut TLV */
    memset(buf + 16, 0, 1100);
    expect_refused(buf, build(buf, 0x21, 0x11, buf + 16, 1100), "longer than");
    /* v1 text is not v2 */
    expect_refused((const uint8_t *)"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 32, "signature");
}

static void test_proxy_checks_a_crc32c_tlv(void **state)
{
    uint8_t body[12 + 7], buf[64];
    struct lp_proxy_hdr h;
    const char *why;
    uint32_t crc;
    size_t n;
    (void)state;

    memcpy(body, INET_BODY, 12);
    memcpy(body + 12, "\x03\x00\x04\x00\x00\x00\x00", 7);
    n = build(buf, 0x21, 0x11, body, sizeof(body));
    crc = lp_crc32c(0, buf, n); /* over the header with the value zero */
    buf[n - 4] = (uint8_t)(crc >> 24), buf[n - 3] = (uint8_t)(crc >> 16);
    buf[n - 2] = (uint8_t)(crc >> 8), buf[n - 1] = (uint8_t)crc;
    assert_int_equal(lp_proxy_parse(buf, n, &h, &why), LP_OK);
    buf[19] ^= 1; /* one bit of the source address */
    expect_refused(buf, n, "CRC32C");
}

static void test_crc32c_known_answer(void **state)
{
    (void)state;
    /* the standard check value of CRC-32C (Castagnoli) */
    assert_int_equal(lp_crc32c(0, (const uint8_t *)"123456789", 9), 0xe3069283u);
    assert_int_equal(
        lp_crc32c(lp_crc32c(0, (const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5),
        0xe3069283u);
}

static void test_proxy_looks_like_either_version(void **state)
{
    (void)state;
    assert_true(lp_proxy_looks_like(SIG, 12));
    assert_true(lp_proxy_looks_like(SIG, 5));
    assert_true(lp_proxy_looks_like((const uint8_t *)"PROXY TCP4 ", 11));
    assert_true(lp_proxy_looks_like((const uint8_t *)"PRO", 3));
    assert_false(lp_proxy_looks_like((const uint8_t *)"\x16\x03\x01\x02\x00", 5));
    assert_false(lp_proxy_looks_like((const uint8_t *)"LMPT", 4));
    assert_false(lp_proxy_looks_like(SIG, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxy_reads_an_ipv4_tcp_header_and_leaves_the_stream),
        cmocka_unit_test(test_proxy_reads_an_ipv6_header),
        cmocka_unit_test(test_proxy_local_and_unspec_keep_the_connection_addresses),
        cmocka_unit_test(test_proxy_every_prefix_asks_for_more),
        cmocka_unit_test(test_proxy_refuses_what_is_not_a_tcp_header),
        cmocka_unit_test(test_proxy_checks_a_crc32c_tlv),
        cmocka_unit_test(test_crc32c_known_answer),
        cmocka_unit_test(test_proxy_looks_like_either_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
