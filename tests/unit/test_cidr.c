/* test_cidr.c — address ranges for proxy_protocol.trusted, and the default node id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/cidr.h"

static struct lp_cidr parse_ok(const char *s)
{
    struct lp_cidr c;
    assert_int_equal(lp_cidr_parse(s, strlen(s), &c), LP_OK);
    return c;
}

static void test_cidr_ipv4_range_matches_only_its_addresses(void **state)
{
    (void)state;
    struct lp_cidr c = parse_ok("198.51.100.77/25"); /* host bits are cleared */
    static const uint8_t in1[4] = {198, 51, 100, 0}, in2[4] = {198, 51, 100, 127};
    static const uint8_t out1[4] = {198, 51, 100, 128}, out2[4] = {198, 51, 101, 1};
    assert_int_equal(c.family, 4);
    assert_int_equal(c.bits, 25);
    assert_true(lp_cidr_match(&c, 4, in1));
    assert_true(lp_cidr_match(&c, 4, in2));
    assert_false(lp_cidr_match(&c, 4, out1));
    assert_false(lp_cidr_match(&c, 4, out2));
}

static void test_cidr_single_address_is_a_full_prefix(void **state)
{
    (void)state;
    struct lp_cidr c = parse_ok("127.0.0.1");
    static const uint8_t lo[4] = {127, 0, 0, 1}, lo2[4] = {127, 0, 0, 2};
    assert_int_equal(c.bits, 32);
    assert_true(lp_cidr_match(&c, 4, lo));
    assert_false(lp_cidr_match(&c, 4, lo2));
}

static void test_cidr_ipv6_ranges_and_brackets(void **state)
{
    (void)state;
    struct lp_cidr c = parse_ok("2001:db8::/33");
    uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(c.family, 6);
    assert_true(lp_cidr_match(&c, 6, a));
    a[4] = 0x80; /* bit 33 set: outside */
    assert_false(lp_cidr_match(&c, 6, a));
    struct lp_cidr one = parse_ok("[::1]");
    uint8_t loop6[16] = {0};
    loop6[15] = 1;
    assert_true(lp_cidr_match(&one, 6, loop6));
    assert_false(lp_cidr_match(&one, 4, loop6)); /* another family never matches */
    (void)parse_ok("[2001:db8::]/32");
}

static void test_cidr_ipv4_mapped_peer_matches_ipv4_range(void **state)
{
    (void)state;
    struct lp_cidr c = parse_ok("127.0.0.0/8");
    uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 9};
    assert_true(lp_cidr_match(&c, 6, mapped));
    mapped[12] = 10;
    assert_false(lp_cidr_match(&c, 6, mapped));
}

static void test_cidr_zero_prefix_matches_everything_of_its_family(void **state)
{
    (void)state;
    struct lp_cidr c = parse_ok("0.0.0.0/0");
    static const uint8_t any[4] = {203, 0, 113, 9};
    assert_true(lp_cidr_match(&c, 4, any));
}

static void test_cidr_refuses_what_is_not_a_range(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",          "1.2.3", "1.2.3.4/33",   "1.2.3.4/",   "1.2.3.4/-1",  "::1/129",
        "[1.2.3.4]", "[::1",  "host.example", "1.2.3.4/8x", "1.2.3.4/0008"};
    struct lp_cidr c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lp_cidr_parse(bad[i], strlen(bad[i]), &c), LP_ERR_INVALID);
}

static void test_cidr_list_takes_commas_and_spaces_and_names_a_bad_entry(void **state)
{
    (void)state;
    struct lp_cidr_list l;
    char why[128] = "";
    static const uint8_t b[4] = {192, 0, 2, 200}, other[4] = {198, 51, 100, 1};
    assert_int_equal(lp_cidr_list_parse("127.0.0.1, 192.0.2.128/25 ::1", &l, why, sizeof(why)),
                     LP_OK);
    assert_int_equal(l.n, 3);
    assert_true(lp_cidr_list_match(&l, 4, b));
    assert_false(lp_cidr_list_match(&l, 4, other));
    assert_int_equal(lp_cidr_list_parse("", &l, why, sizeof(why)), LP_OK);
    assert_int_equal(l.n, 0);
    assert_false(lp_cidr_list_match(&l, 4, b));
    assert_int_equal(lp_cidr_list_parse("127.0.0.1,bogus", &l, why, sizeof(why)), LP_ERR_INVALID);
    assert_non_null(strstr(why, "\"bogus\""));
    /* a folded YAML scalar can carry a line break into an entry: the message stays one line */
    assert_int_equal(lp_cidr_list_parse("bad\nentry\x1b[2J", &l, why, sizeof(why)), LP_ERR_INVALID);
    assert_null(strchr(why, '\n'));
    assert_null(strchr(why, '\x1b'));
    assert_non_null(strstr(why, "\"bad\\x0aentry\\x1b[2J\""));
}

static void test_node_id_from_host_is_a_dns_label(void **state)
{
    (void)state;
    char out[LP_NODE_ID_BUF];
    lp_node_id_from_host("Web1.Example.COM", out);
    assert_string_equal(out, "web1-example-com");
    lp_node_id_from_host("", out);
    assert_string_equal(out, "node");
    lp_node_id_from_host("a_b c", out);
    assert_string_equal(out, "a-b-c");
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    lp_node_id_from_host(longname, out);
    assert_int_equal(strlen(out), 63);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_ipv4_range_matches_only_its_addresses),
        cmocka_unit_test(test_cidr_single_address_is_a_full_prefix),
        cmocka_unit_test(test_cidr_ipv6_ranges_and_brackets),
        cmocka_unit_test(test_cidr_ipv4_mapped_peer_matches_ipv4_range),
        cmocka_unit_test(test_cidr_zero_prefix_matches_everything_of_its_family),
        cmocka_unit_test(test_cidr_refuses_what_is_not_a_range),
        cmocka_unit_test(test_cidr_list_takes_commas_and_spaces_and_names_a_bad_entry),
        cmocka_unit_test(test_node_id_from_host_is_a_dns_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
