/* test_socks.c — the SOCKS5 / SOCKS4(a) server handshake parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/socks.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A valid exchange: what the client sends (possibly several messages in one buffer), what
 * the parser must answer before the final reply, and the target it must find. */
struct exchange {
    const char *name;
    const uint8_t *in;
    size_t in_len;
    const uint8_t *out;
    size_t out_len;
    const char *host;
    uint16_t port;
    enum lp_socks_version version;
};

static const uint8_t v5_ipv4[] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80};
static const uint8_t v5_ipv6[] = {5, 2, 2, 0, /* offers user/pass first, then no-auth */
                                  5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
                                  0, 0, 0, 0, 0,    0,    0,    0,    1, 0x01, 0xbb};
static const uint8_t v5_domain[] = {5,   1,   0,   5,   1,   0,   3,   11,  'e',  'x', 'a',
                                    'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0x1f, 0x90};
static const uint8_t v4_ipv4[] = {4, 1, 0, 22, 10, 0, 0, 1, 'b', 'o', 'b', 0};
static const uint8_t v4_empty_user[] = {4, 1, 0x01, 0xbb, 192, 168, 1, 2, 0};
static const uint8_t v4a_domain[] = {4,   1,   0,   80,  0,   0,   0,   7,   'u', 0,   'e',
                                     'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g', 0};
static const uint8_t v5_accept[] = {5, 0};

static const struct exchange valid[] = {
    {"v5 ipv4", v5_ipv4, sizeof(v5_ipv4), v5_accept, 2, "127.0.0.1", 80, LP_SOCKS_V5},
    {"v5 ipv6", v5_ipv6, sizeof(v5_ipv6), v5_accept, 2, "2001:db8::1", 443, LP_SOCKS_V5},
    {"v5 domain", v5_domain, sizeof(v5_domain), v5_accept, 2, "example.com", 8080, LP_SOCKS_V5},
    {"v4", v4_ipv4, sizeof(v4_ipv4), NULL, 0, "10.0.0.1", 22, LP_SOCKS_V4},
    {"v4 empty user", v4_empty_user, sizeof(v4_empty_user), NULL, 0, "192.168.1.2", 443,
     LP_SOCKS_V4},
    {"v4a", v4a_domain, sizeof(v4a_domain), NULL, 0, "example.org", 80, LP_SOCKS_V4},
};

static void assert_request(const struct lp_socks *s, const struct exchange *x)
{
    assert_string_equal(s->host, x->host);
    assert_int_equal(s->port, x->port);
    assert_int_equal(s->version, x->version);
}

static void assert_out(const struct lp_socks *s, const uint8_t *want, size_t n)
{
    assert_int_equal(s->out_len, n);
    if (n > 0)
        assert_memory_equal(s->out, want, n);
}

static void test_socks_every_address_type_parses_in_one_write(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        struct lp_socks s;
        size_t used = 99;
        lp_socks_init(&s);
        assert_int_equal(lp_socks_feed(&s, valid[i].in, valid[i].in_len, &used), LP_SOCKS_REQUEST);
        assert_int_equal(used, valid[i].in_len);
        assert_request(&s, &valid[i]);
        assert_out(&s, valid[i].out, valid[i].out_len);
    }
}

static void test_socks5_greeting_alone_answers_no_auth_and_waits(void **state)
{
    static const uint8_t greeting[] = {5, 1, 0};
    struct lp_socks s;
    size_t used;
    (void)state;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, greeting, sizeof(greeting), &used), LP_SOCKS_NEED_MORE);
    assert_int_equal(used, 3);
    assert_out(&s, v5_accept, 2);
    s.out_len = 0;
    assert_int_equal(lp_socks_feed(&s, v5_ipv4 + 3, sizeof(v5_ipv4) - 3, &used), LP_SOCKS_REQUEST);
    assert_int_equal(used, sizeof(v5_ipv4) - 3);
    assert_int_equal(s.out_len, 0);
    assert_string_equal(s.host, "127.0.0.1");
}

/* Every split of every valid exchange into two writes, and one byte at a time: each prefix
 * waits, and the rest ends in the same request with the same output. */
static void test_socks_truncation_loop_every_prefix_needs_more(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        const struct exchange *x = &valid[i];
        for (size_t cut = 0; cut < x->in_len; cut++) {
            struct lp_socks s;
            size_t used = 99;
            lp_socks_init(&s);
            assert_int_equal(lp_socks_feed(&s, x->in, cut, &used), LP_SOCKS_NEED_MORE);
            assert_int_equal(used, cut);
            assert_int_equal(lp_socks_feed(&s, x->in + cut, x->in_len - cut, &used),
                             LP_SOCKS_REQUEST);
            assert_int_equal(used, x->in_len - cut);
            assert_request(&s, x);
            assert_out(&s, x->out, x->out_len);
        }
        struct lp_socks s;
        size_t used;
        lp_socks_init(&s);
        for (size_t k = 0; k + 1 < x->in_len; k++) {
            assert_int_equal(lp_socks_feed(&s, x->in + k, 1, &used), LP_SOCKS_NEED_MORE);
            assert_int_equal(used, 1);
        }
        assert_int_equal(lp_socks_feed(&s, x->in + x->in_len - 1, 1, &used), LP_SOCKS_REQUEST);
        assert_int_equal(used, 1);
        assert_request(&s, x);
        assert_out(&s, x->out, x->out_len);
    }
}

static void test_socks_empty_feed_needs_more(void **state)
{
    struct lp_socks s;
    size_t used = 99;
    (void)state;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, NULL, 0, &used), LP_SOCKS_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(s.out_len, 0);
}

/* The application's first bytes, sent right behind the request, stay for the stream. */
static void test_socks_leaves_data_after_request_unconsumed(void **state)
{
    static const char app[] = "GET / HTTP/1.1\r\n";
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(valid); i++) {
        uint8_t in[600];
        struct lp_socks s;
        size_t used = 0, n = valid[i].in_len;
        memcpy(in, valid[i].in, n);
        memcpy(in + n, app, sizeof(app) - 1);
        for (size_t cut = 0; cut < n; cut++) { /* wherever the first write ended */
            size_t used1;
            lp_socks_init(&s);
            assert_int_equal(lp_socks_feed(&s, in, cut, &used1), LP_SOCKS_NEED_MORE);
            assert_int_equal(lp_socks_feed(&s, in + cut, n - cut + sizeof(app) - 1, &used),
                             LP_SOCKS_REQUEST);
            assert_int_equal(used, n - cut);
            assert_request(&s, &valid[i]);
        }
        /* Later bytes are the stream's too, whatever they look like. */
        assert_int_equal(lp_socks_feed(&s, v5_ipv4, sizeof(v5_ipv4), &used), LP_SOCKS_REQUEST);
        assert_int_equal(used, 0);
    }
}

/* Data behind the request larger than the parser's buffer: only the request is taken. */
static void test_socks_large_first_write_takes_only_the_request(void **state)
{
    uint8_t in[2000];
    struct lp_socks s;
    size_t used;
    (void)state;
    memset(in, 'x', sizeof(in));
    memcpy(in, v5_domain, sizeof(v5_domain));
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_REQUEST);
    assert_int_equal(used, sizeof(v5_domain));
    assert_string_equal(s.host, "example.com");
}

static void test_socks5_pipelined_greeting_and_request_then_reply(void **state)
{
    static const uint8_t want[] = {5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    struct lp_socks s;
    size_t used;
    (void)state;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, v5_ipv4, sizeof(v5_ipv4), &used), LP_SOCKS_REQUEST);
    lp_socks_reply(&s, 0); /* the caller had not written the method reply yet: both go out */
    assert_out(&s, want, sizeof(want));
}

static void test_socks5_ipv6_text_is_rfc5952(void **state)
{
    static const struct {
        uint8_t addr[16];
        const char *text;
    } cases[] = {
        {{0}, "::"},
        {{[15] = 1}, "::1"},
        {{0, 1}, "1::"},
        {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1}, "2001:db8::1:0:0:1"},
        {{0x20, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, "2001:0:0:1::1"},
        {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, "2001:db8:0:1:1:1:1:1"},
        {{0xfe, 0x80, [14] = 0xab, [15] = 0xcd}, "fe80::abcd"},
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff},
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        {{[10] = 0xff, [11] = 0xff, [12] = 1, [13] = 2, [14] = 3, [15] = 4}, "::ffff:102:304"},
        {{0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3}, "1:0:0:2::3"},
    };
    char target[300];
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint8_t in[3 + 4 + 16 + 2] = {5, 1, 0, 5, 1, 0, 4};
        struct lp_socks s;
        size_t used;
        memcpy(in + 7, cases[i].addr, 16);
        in[23] = 0;
        in[24] = 22;
        lp_socks_init(&s);
        assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_REQUEST);
        assert_string_equal(s.host, cases[i].text);
        char want[300];
        snprintf(want, sizeof(want), "[%s]:22", cases[i].text);
        assert_string_equal(lp_socks_target(&s, target, sizeof(target)), want);
    }
}

static void test_socks_target_text_brackets_only_ipv6(void **state)
{
    struct lp_socks s;
    size_t used;
    char buf[300];
    (void)state;
    lp_socks_init(&s);
    lp_socks_feed(&s, v5_domain, sizeof(v5_domain), &used);
    assert_string_equal(lp_socks_target(&s, buf, sizeof(buf)), "example.com:8080");
    lp_socks_init(&s);
    lp_socks_feed(&s, v5_ipv6, sizeof(v5_ipv6), &used);
    assert_string_equal(lp_socks_target(&s, buf, sizeof(buf)), "[2001:db8::1]:443");
    lp_socks_init(&s);
    lp_socks_feed(&s, v4_ipv4, sizeof(v4_ipv4), &used);
    assert_string_equal(lp_socks_target(&s, buf, sizeof(buf)), "10.0.0.1:22");
    assert_ptr_equal(lp_socks_target(&s, buf, 5), buf); /* truncated, still a string */
    assert_string_equal(buf, "10.0");
}

static void test_socks5_domain_of_255_bytes_is_accepted(void **state)
{
    uint8_t in[3 + 5 + 255 + 2] = {5, 1, 0, 5, 1, 0, 3, 255};
    struct lp_socks s;
    size_t used;
    (void)state;
    memset(in + 8, 'a', 255);
    in[8 + 255] = 0;
    in[8 + 256] = 80;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_REQUEST);
    assert_int_equal(strlen(s.host), 255);
    assert_int_equal(s.port, 80);
}

static void test_socks4_user_id_and_domain_of_255_bytes_are_accepted(void **state)
{
    uint8_t in[8 + 256 + 256] = {4, 1, 0, 80, 0, 0, 0, 1};
    struct lp_socks s;
    size_t used;
    (void)state;
    memset(in + 8, 'u', 255);
    in[8 + 255] = 0;
    memset(in + 8 + 256, 'h', 255);
    in[sizeof(in) - 1] = 0;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_REQUEST);
    assert_int_equal(used, sizeof(in));
    assert_int_equal(strlen(s.host), 255);
    assert_int_equal(s.host[0], 'h');
}

/* SOCKS4 with 0.0.0.0 is a plain (odd) address, not the 4a marker (which needs x != 0). */
static void test_socks4_zero_address_is_not_socks4a(void **state)
{
    static const uint8_t in[] = {4, 1, 0, 80, 0, 0, 0, 0, 0, 'h', 0};
    struct lp_socks s;
    size_t used;
    (void)state;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_REQUEST);
    assert_string_equal(s.host, "0.0.0.0");
    assert_int_equal(used, 9);
}

/* ---- refusals, each with its exact reply ---- */

struct refusal {
    const char *name;
    const uint8_t *in;
    size_t in_len;
    const uint8_t *out; /* everything the client hears */
    size_t out_len;
};

#define V5_FAIL(rep) 5, 0, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0 /* after the method reply */
static const uint8_t r_no_method_in[] = {5, 2, 1, 2};
static const uint8_t r_no_method_out[] = {5, 0xff};
static const uint8_t r_zero_methods_in[] = {5, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80};
static const uint8_t r_http_in[] = {'G', 'E', 'T', ' ', '/'};
static const uint8_t r_v5_ver_in[] = {5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80};
static const uint8_t r_v5_rsv_in[] = {5, 1, 0, 5, 1, 1, 1, 1, 2, 3, 4, 0, 80};
static const uint8_t r_v5_generic_out[] = {V5_FAIL(1)};
static const uint8_t r_bind_in[] = {5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80};
static const uint8_t r_udp_in[] = {5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0};
static const uint8_t r_cmd9_in[] = {5, 1, 0, 5, 9, 0, 1};
static const uint8_t r_cmd_out[] = {V5_FAIL(7)};
static const uint8_t r_atyp2_in[] = {5, 1, 0, 5, 1, 0, 2, 1, 2, 3, 4, 0, 80};
static const uint8_t r_atyp0_in[] = {5, 1, 0, 5, 1, 0, 0};
static const uint8_t r_atyp_out[] = {V5_FAIL(8)};
static const uint8_t r_empty_domain_in[] = {5, 1, 0, 5, 1, 0, 3, 0, 0, 80};
static const uint8_t r_nul_domain_in[] = {5, 1, 0, 5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80};
static const uint8_t r_ctl_domain_in[] = {5, 1, 0, 5, 1, 0, 3, 3, 'a', '\n', 'b', 0, 80};
static const uint8_t r_v4_reject_out[] = {0, 0x5b, 0, 0, 0, 0, 0, 0};
static const uint8_t r_v4_bind_in[] = {4, 2, 0, 80, 1, 2, 3, 4, 0};
static const uint8_t r_v4_cmd0_in[] = {4, 0};
static const uint8_t r_v4a_empty_in[] = {4, 1, 0, 80, 0, 0, 0, 1, 'u', 0, 0};
static const uint8_t r_v4a_ctl_in[] = {4, 1, 0, 80, 0, 0, 0, 1, 0, 'a', 0x7f, 0};

static const struct refusal refusals[] = {
    {"no no-auth method", r_no_method_in, sizeof(r_no_method_in), r_no_method_out, 2},
    {"zero methods", r_zero_methods_in, sizeof(r_zero_methods_in), r_no_method_out, 2},
    {"not socks (http)", r_http_in, sizeof(r_http_in), NULL, 0},
    {"v5 request version 4", r_v5_ver_in, sizeof(r_v5_ver_in), r_v5_generic_out, 12},
    {"v5 rsv not zero", r_v5_rsv_in, sizeof(r_v5_rsv_in), r_v5_generic_out, 12},
    {"v5 bind", r_bind_in, sizeof(r_bind_in), r_cmd_out, 12},
    {"v5 udp associate", r_udp_in, sizeof(r_udp_in), r_cmd_out, 12},
    {"v5 unknown command", r_cmd9_in, sizeof(r_cmd9_in), r_cmd_out, 12},
    {"v5 atyp 2", r_atyp2_in, sizeof(r_atyp2_in), r_atyp_out, 12},
    {"v5 atyp 0", r_atyp0_in, sizeof(r_atyp0_in), r_atyp_out, 12},
    {"v5 empty domain", r_empty_domain_in, sizeof(r_empty_domain_in), r_v5_generic_out, 12},
    {"v5 domain with NUL", r_nul_domain_in, sizeof(r_nul_domain_in), r_v5_generic_out, 12},
    {"v5 domain with LF", r_ctl_domain_in, sizeof(r_ctl_domain_in), r_v5_generic_out, 12},
    {"v4 bind", r_v4_bind_in, sizeof(r_v4_bind_in), r_v4_reject_out, 8},
    {"v4 command 0", r_v4_cmd0_in, sizeof(r_v4_cmd0_in), r_v4_reject_out, 8},
    {"v4a empty host", r_v4a_empty_in, sizeof(r_v4a_empty_in), r_v4_reject_out, 8},
    {"v4a host with DEL", r_v4a_ctl_in, sizeof(r_v4a_ctl_in), r_v4_reject_out, 8},
};

static void test_socks_refusals_send_the_protocol_reply_and_fail(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(refusals); i++) {
        const struct refusal *r = &refusals[i];
        struct lp_socks s;
        size_t used;
        lp_socks_init(&s);
        assert_int_equal(lp_socks_feed(&s, r->in, r->in_len, &used), LP_SOCKS_FAIL);
        assert_out(&s, r->out, r->out_len);
        assert_non_null(s.why);
        assert_true(s.why[0] != '\0');
        /* Once refused, always refused, and nothing more is said. */
        s.out_len = 0;
        assert_int_equal(lp_socks_feed(&s, v5_ipv4, sizeof(v5_ipv4), &used), LP_SOCKS_FAIL);
        assert_int_equal(used, 0);
        assert_int_equal(s.out_len, 0);
        lp_socks_reply(&s, 0);
        assert_int_equal(s.out_len, 0);
    }
}

static void test_socks4_user_id_over_255_bytes_is_rejected(void **state)
{
    uint8_t in[8 + 300] = {4, 1, 0, 80, 1, 2, 3, 4};
    struct lp_socks s;
    size_t used;
    (void)state;
    memset(in + 8, 'u', 300);
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, 8 + 255, &used), LP_SOCKS_NEED_MORE);
    assert_int_equal(lp_socks_feed(&s, in + 8 + 255, 1, &used), LP_SOCKS_FAIL);
    assert_out(&s, r_v4_reject_out, 8);
}

static void test_socks4a_domain_over_255_bytes_is_rejected(void **state)
{
    uint8_t in[8 + 2 + 256] = {4, 1, 0, 80, 0, 0, 0, 9, 'u', 0};
    struct lp_socks s;
    size_t used;
    (void)state;
    memset(in + 10, 'h', 256);
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in) - 1, &used), LP_SOCKS_NEED_MORE);
    assert_int_equal(lp_socks_feed(&s, in + sizeof(in) - 1, 1, &used), LP_SOCKS_FAIL);
    assert_out(&s, r_v4_reject_out, 8);
}

/* A refused greeting ends the handshake: a request pipelined behind it gets no answer. */
static void test_socks5_refused_greeting_ignores_pipelined_request(void **state)
{
    static const uint8_t in[] = {5, 1, 2, 5, 1, 0, 1, 1, 2, 3, 4, 0, 80};
    struct lp_socks s;
    size_t used;
    (void)state;
    lp_socks_init(&s);
    assert_int_equal(lp_socks_feed(&s, in, sizeof(in), &used), LP_SOCKS_FAIL);
    assert_out(&s, r_no_method_out, 2);
}

/* ---- the final reply ---- */

static void test_socks5_reply_maps_every_rst_code(void **state)
{
    static const struct {
        uint16_t code;
        uint8_t rep;
    } map[] = {
        {0, 0x00},
        {LP_RST_NOT_ALLOWED, 0x02},
        {LP_RST_UNREACHABLE, 0x04},
        {LP_RST_BAD_TARGET, 0x04},
        {LP_RST_REFUSED, 0x05},
        {LP_RST_TIMEOUT, 0x06},
        {LP_RST_RESET, 0x01},
        {LP_RST_PROTOCOL, 0x01},
        {LP_RST_SESSION_LOST, 0x01},
        {LP_RST_LIMIT, 0x01},
        {LP_RST_INTERNAL, 0x01},
        {LP_RST_SHUTDOWN, 0x01},
        {LP_RST_EXITED, 0x01},
        {LP_RST_UNAVAILABLE, 0x01},
        {999, 0x01},
        {UINT16_MAX, 0x01},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(map); i++) {
        const uint8_t want[] = {5, map[i].rep, 0, 1, 0, 0, 0, 0, 0, 0};
        struct lp_socks s;
        size_t used;
        lp_socks_init(&s);
        assert_int_equal(lp_socks_feed(&s, v5_domain, sizeof(v5_domain), &used), LP_SOCKS_REQUEST);
        s.out_len = 0;
        lp_socks_reply(&s, map[i].code);
        assert_out(&s, want, sizeof(want));
    }
}

static void test_socks4_reply_is_granted_or_rejected(void **state)
{
    static const uint16_t codes[] = {0,
                                     LP_RST_NOT_ALLOWED,
                                     LP_RST_UNREACHABLE,
                                     LP_RST_BAD_TARGET,
                                     LP_RST_REFUSED,
                                     LP_RST_TIMEOUT,
                                     LP_RST_INTERNAL,
                                     999};
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
        const uint8_t want[] = {0, codes[i] == 0 ? 0x5a : 0x5b, 0, 0, 0, 0, 0, 0};
        struct lp_socks s;
        size_t used;
        lp_socks_init(&s);
        assert_int_equal(lp_socks_feed(&s, v4a_domain, sizeof(v4a_domain), &used),
                         LP_SOCKS_REQUEST);
        lp_socks_reply(&s, codes[i]);
        assert_out(&s, want, sizeof(want));
    }
}

static void test_socks_reply_is_written_once_and_only_to_a_request(void **state)
{
    static const uint8_t want[] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    static const uint8_t greeting[] = {5, 1, 0};
    struct lp_socks s;
    size_t used;
    (void)state;
    lp_socks_init(&s);
    lp_socks_reply(&s, 0); /* nothing asked yet */
    assert_int_equal(s.out_len, 0);
    lp_socks_feed(&s, greeting, sizeof(greeting), &used);
    s.out_len = 0;
    lp_socks_reply(&s, 0); /* greeting only: still no request */
    assert_int_equal(s.out_len, 0);
    lp_socks_feed(&s, v5_ipv4 + 3, sizeof(v5_ipv4) - 3, &used);
    lp_socks_reply(&s, 0);
    lp_socks_reply(&s, LP_RST_REFUSED);
    assert_out(&s, want, sizeof(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socks_every_address_type_parses_in_one_write),
        cmocka_unit_test(test_socks5_greeting_alone_answers_no_auth_and_waits),
        cmocka_unit_test(test_socks_truncation_loop_every_prefix_needs_more),
        cmocka_unit_test(test_socks_empty_feed_needs_more),
        cmocka_unit_test(test_socks_leaves_data_after_request_unconsumed),
        cmocka_unit_test(test_socks_large_first_write_takes_only_the_request),
        cmocka_unit_test(test_socks5_pipelined_greeting_and_request_then_reply),
        cmocka_unit_test(test_socks5_ipv6_text_is_rfc5952),
        cmocka_unit_test(test_socks_target_text_brackets_only_ipv6),
        cmocka_unit_test(test_socks5_domain_of_255_bytes_is_accepted),
        cmocka_unit_test(test_socks4_user_id_and_domain_of_255_bytes_are_accepted),
        cmocka_unit_test(test_socks4_zero_address_is_not_socks4a),
        cmocka_unit_test(test_socks_refusals_send_the_protocol_reply_and_fail),
        cmocka_unit_test(test_socks4_user_id_over_255_bytes_is_rejected),
        cmocka_unit_test(test_socks4a_domain_over_255_bytes_is_rejected),
        cmocka_unit_test(test_socks5_refused_greeting_ignores_pipelined_request),
        cmocka_unit_test(test_socks5_reply_maps_every_rst_code),
        cmocka_unit_test(test_socks4_reply_is_granted_or_rejected),
        cmocka_unit_test(test_socks_reply_is_written_once_and_only_to_a_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
