/* test_policy.c — allow-lists (policy.h): every rule form, every refusal with its reason, CIDR
 * and port edges, IPv6 text forms checked against the C library's inet_pton, mapped IPv4,
 * names and wildcards, default deny, the rule cap, MCP names, truncation, canonical text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h> /* the test may use the libc parser as an oracle; src/core may not */
#include <cmocka.h>

#include "limpet/policy.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Parses text from a heap copy of exactly its length (no NUL after it), so ASan sees any read
 * past the end. Returns the parser's verdict; *why gets the reason. */
static lp_err parse_exact(const char *text, size_t len, struct lp_policy_rule *r, const char **why)
{
    char *copy = malloc(len ? len : 1);
    lp_err rc;

    assert_non_null(copy);
    memcpy(copy, text, len);
    rc = lp_policy_parse_rule(copy, len, r, why);
    free(copy);
    return rc;
}

static struct lp_policy_rule parse_ok(const char *text)
{
    struct lp_policy_rule r;
    const char *why = "unset";

    if (parse_exact(text, strlen(text), &r, &why) != LP_OK)
        fail_msg("\"%s\" refused: %s", text, why ? why : "no reason");
    assert_null(why);
    return r;
}

static void parse_ok_len(const char *text, size_t len)
{
    struct lp_policy_rule r;
    const char *why = NULL;

    if (parse_exact(text, len, &r, &why) != LP_OK)
        fail_msg("\"%.*s\" refused: %s", (int)len, text, why ? why : "no reason");
}

static void expect_refused(const char *text, size_t len, const char *reason)
{
    struct lp_policy_rule r;
    const char *why = NULL;

    if (parse_exact(text, len, &r, &why) != LP_ERR_MALFORMED)
        fail_msg("\"%.*s\" accepted, expected \"%s\"", (int)len, text, reason);
    assert_non_null(why);
    if (strstr(why, reason) == NULL)
        fail_msg("\"%.*s\": reason \"%s\", expected \"%s\"", (int)len, text, why, reason);
}

static const char *format(const struct lp_policy_rule *r)
{
    static char buf[LP_POLICY_TEXT_MAX + 1];

    assert_true(lp_policy_format_rule(r, buf, sizeof(buf)) > 0);
    return buf;
}

static void add_ok(struct lp_policy *p, const char *text)
{
    const char *why = NULL;

    if (lp_policy_add(p, text, strlen(text), &why) != LP_OK)
        fail_msg("add \"%s\": %s", text, why ? why : "no reason");
}

/* A policy of one rule: the question "does this rule allow that target". */
static bool one_allows(const char *rule, const char *host, uint16_t port)
{
    struct lp_policy p;
    bool ok;

    lp_policy_init(&p);
    add_ok(&p, rule);
    ok = lp_policy_allows(&p, host, port);
    lp_policy_clear(&p);
    return ok;
}

static void expect_allows(const char *rule, const char *host, uint16_t port)
{
    if (!one_allows(rule, host, port))
        fail_msg("\"%s\" should allow %s port %u", rule, host, (unsigned)port);
}

static void expect_denies(const char *rule, const char *host, uint16_t port)
{
    if (one_allows(rule, host, port))
        fail_msg("\"%s\" should not allow %s port %u", rule, host, (unsigned)port);
}

/* ---- every form parses ------------------------------------------------------------------- */

struct form {
    const char *text;
    enum lp_policy_kind kind;
    const char *canonical;
};

static const struct form forms[] = {
    {"127.0.0.1:22", LP_POLICY_V4, "127.0.0.1:22"},
    {"10.1.0.0/16:5432", LP_POLICY_V4, "10.1.0.0/16:5432"},
    {"db.internal:8000-8100", LP_POLICY_NAME, "db.internal:8000-8100"},
    {"[::1]:80", LP_POLICY_V6, "[::1]:80"},
    {"[fd00::/8]:22", LP_POLICY_V6, "[fd00::/8]:22"},
    {"*.example.com:443", LP_POLICY_SUFFIX, "*.example.com:443"},
    {"*:*", LP_POLICY_ANY, "*:*"},
    {"*:22", LP_POLICY_ANY, "*:22"},
    {"10.0.0.1:*", LP_POLICY_V4, "10.0.0.1:*"},
    {"DB.Internal.:22", LP_POLICY_NAME, "db.internal:22"},
    {"*.Example.COM.:1", LP_POLICY_SUFFIX, "*.example.com:1"},
    {"localhost:1-65535", LP_POLICY_NAME, "localhost:*"},
    {"host:5-5", LP_POLICY_NAME, "host:5"},
    {"_svc.my-host.example:1", LP_POLICY_NAME, "_svc.my-host.example:1"},
    {"t0nn.n0:1", LP_POLICY_NAME, "t0nn.n0:1"},
    {"1.2.3.n4:1", LP_POLICY_NAME, "1.2.3.n4:1"},
    {"0.0.0.0/0:*", LP_POLICY_V4, "0.0.0.0/0:*"},
    {"255.255.255.255/32:65535", LP_POLICY_V4, "255.255.255.255:65535"},
    {"[::/0]:*", LP_POLICY_V6, "[::/0]:*"},
    {"[::]:1", LP_POLICY_V6, "[::]:1"},
    {"[2001:DB8:0:0:0:0:0:1]:22", LP_POLICY_V6, "[2001:db8::1]:22"},
    {"[2001:db8:0:0:1:0:0:1]:22", LP_POLICY_V6, "[2001:db8::1:0:0:1]:22"},
    {"[1:0:0:2:0:0:0:3]:22", LP_POLICY_V6, "[1:0:0:2::3]:22"},
    {"[1:0:2:3:4:5:6:7]:22", LP_POLICY_V6, "[1:0:2:3:4:5:6:7]:22"},
    {"[0001:0db8::/32]:22", LP_POLICY_V6, "[1:db8::/32]:22"},
    {"[64:ff9b::1.2.3.4]:22", LP_POLICY_V6, "[64:ff9b::102:304]:22"},
    {"[::ffff:127.0.0.1]:22", LP_POLICY_V4, "127.0.0.1:22"},
    {"[::ffff:a00:0/104]:22", LP_POLICY_V4, "10.0.0.0/8:22"},
    {"[::ffff:0:0/96]:22", LP_POLICY_V4, "0.0.0.0/0:22"},
    {"[::fffe:0:0/95]:22", LP_POLICY_V6, "[::fffe:0:0/95]:22"},
    {"[8000::/1]:1", LP_POLICY_V6, "[8000::/1]:1"},
    {"unix:/run/app.sock", LP_POLICY_UNIX, "unix:/run/app.sock"},
    {"unix:/run/My App:1.sock", LP_POLICY_UNIX, "unix:/run/My App:1.sock"}, /* bytes as written */
    {"unix:/run/app/*", LP_POLICY_UNIX_DIR, "unix:/run/app/*"},
    {"unix:/*", LP_POLICY_UNIX_DIR, "unix:/*"},
    {"unix:22", LP_POLICY_NAME, "unix:22"}, /* a host called unix: no '/' after the ':' */
};

static void test_policy_parses_every_rule_form_to_its_canonical_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(forms); i++) {
        struct lp_policy_rule r = parse_ok(forms[i].text);

        if (r.kind != forms[i].kind)
            fail_msg("\"%s\": kind %d, expected %d", forms[i].text, r.kind, forms[i].kind);
        assert_string_equal(format(&r), forms[i].canonical);
    }
}

static void test_policy_rule_fields_hold_address_prefix_and_ports(void **state)
{
    (void)state;
    struct lp_policy_rule r = parse_ok("10.1.0.0/16:8000-8100");
    static const uint8_t net4[4] = {10, 1, 0, 0};
    static const uint8_t net6[16] = {0xfd};

    assert_int_equal(r.kind, LP_POLICY_V4);
    assert_memory_equal(r.addr, net4, 4);
    assert_int_equal(r.prefix, 16);
    assert_int_equal(r.port_lo, 8000);
    assert_int_equal(r.port_hi, 8100);
    r = parse_ok("[fd00::/8]:*");
    assert_int_equal(r.kind, LP_POLICY_V6);
    assert_memory_equal(r.addr, net6, 16);
    assert_int_equal(r.prefix, 8);
    assert_int_equal(r.port_lo, 1);
    assert_int_equal(r.port_hi, 65535);
    r = parse_ok("*.Example.com:443");
    assert_int_equal(r.kind, LP_POLICY_SUFFIX);
    assert_string_equal(r.name, "example.com");
}

static bool rules_equal(const struct lp_policy_rule *a, const struct lp_policy_rule *b)
{
    return a->kind == b->kind && a->prefix == b->prefix && memcmp(a->addr, b->addr, 16) == 0 &&
           a->port_lo == b->port_lo && a->port_hi == b->port_hi && strcmp(a->name, b->name) == 0;
}

static void test_policy_canonical_text_parses_back_to_the_same_rule(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(forms); i++) {
        struct lp_policy_rule r = parse_ok(forms[i].text);
        char text[LP_POLICY_TEXT_MAX + 1];
        struct lp_policy_rule again;

        assert_true(lp_policy_format_rule(&r, text, sizeof(text)) > 0);
        again = parse_ok(text);
        assert_true(rules_equal(&r, &again));
        assert_string_equal(format(&again), text);
    }
}

static void test_policy_format_returns_zero_when_the_buffer_is_short(void **state)
{
    (void)state;
    struct lp_policy_rule r = parse_ok("[2001:db8::/32]:8000-8100");
    const char *want = "[2001:db8::/32]:8000-8100";
    char buf[64];

    for (size_t cap = 0; cap <= strlen(want); cap++) {
        memset(buf, 'x', sizeof(buf));
        assert_int_equal(lp_policy_format_rule(&r, buf, cap), 0);
        if (cap > 0)
            assert_int_equal(buf[0], '\0');
        assert_int_equal(buf[cap], 'x'); /* nothing written past cap */
    }
    assert_int_equal(lp_policy_format_rule(&r, buf, strlen(want) + 1), strlen(want));
    assert_string_equal(buf, want);
}

/* ---- every malformed form is refused with a reason -------------------------------------- */

struct refusal {
    const char *text;
    const char *reason;
};

static const struct refusal refusals[] = {
    {"127.0.0.1", "missing port"},
    {"127.0.0.1:", "missing port"},
    {"db.internal", "missing port"},
    {"[::1]", "missing port"},
    {"host:0", "port 0"},
    {"host:65536", "above 65535"},
    {"host:99999", "above 65535"},
    {"host:123456", "above 65535"},
    {"host:022", "leading zero in port"},
    {"host:00", "leading zero in port"},
    {"host:2-1", "backwards"},
    {"host:65535-1", "backwards"},
    {"host:0-10", "port 0"},
    {"host:1-65536", "above 65535"},
    {"host:-5", "missing port"},
    {"host:5-", "missing port"},
    {"host:1-2-3", "not a number"},
    {"host:a", "not a number"},
    {"host:+1", "not a number"},
    {"host: 22", "not a number"},
    {"host:22 ", "not a number"},
    {"host:**", "not a number"},
    {"10.0.0.0/33:1", "above 32"},
    {"10.0.0.0/100:1", "above 32"},
    {"10.0.0.0/1000:1", "above 32"},
    {"[::/129]:1", "above 128"},
    {"[::/1000]:1", "above 128"},
    {"10.1.0.1/16:5432", "host bits set"},
    {"10.0.0.1/31:1", "host bits set"},
    {"128.0.0.0/0:1", "host bits set"},
    {"[fd00::1/8]:1", "host bits set"},
    {"[::1/127]:1", "host bits set"},
    {"[8000::/0]:1", "host bits set"},
    {"10.0.0.0/:1", "missing CIDR length"},
    {"10.0.0.0/08:1", "leading zero in CIDR length"},
    {"10.0.0.0/x:1", "not a number"},
    {"[::/]:1", "missing CIDR length"},
    {"::1:80", "brackets"},
    {"fe80::1:22", "brackets"},
    {"::1", "brackets"},
    {"127.0.0.1:22:33", "brackets"},
    {"[::1]80", "expected ':' after ']'"},
    {"[::1]]:80", "expected ':' after ']'"},
    {"[::1:80", "missing ']'"},
    {"[::1]:80x", "not a number"},
    {":22", "empty host"},
    {"[]:22", "empty IPv6 address"},
    {"[1.2.3.4]:22", "too few IPv6 groups"},
    {"010.0.0.1:22", "leading zero in IPv4"},
    {"1.2.3.04:22", "leading zero in IPv4"},
    {"256.0.0.1:22", "above 255"},
    {"1.2.3.1000:22", "above 255"},
    {"1.2.3:22", "four parts"},
    {"127.1:22", "four parts"},
    {"1.2.3.4.5:22", "more than four parts"},
    {"1..3.4:22", "empty IPv4 part"},
    {".1.2.3.4:22", "empty IPv4 part"},
    {" 127.0.0.1:22", "bad character in DNS name"},
    {"0x7f.0.0.1:22", "last label starts with a digit"},
    {"2130706433:22", "above 255"},
    {"12:22", "four parts"},
    {"2130706433x:22", "last label starts with a digit"},
    {"1.2.3.4a:22", "last label starts with a digit"},
    {"10.0.0.1.:22", "more than four parts"},
    {"a.10.0.0.1:22", "last label starts with a digit"},
    {"a.10.:22", "last label starts with a digit"},
    {"host.9x:22", "last label starts with a digit"},
    {"a..b:22", "empty label"},
    {".a:22", "empty label"},
    {"a.b..:22", "empty label"},
    {"-a.com:22", "starts or ends with '-'"},
    {"a-.com:22", "starts or ends with '-'"},
    {"a*.com:22", "'*' only as the whole first label"},
    {"foo.*.com:22", "'*' only as the whole first label"},
    {"*.*.com:22", "'*' only as the whole first label"},
    {"**:22", "'*' only as the whole first label"},
    {"*.:22", "'*' only as the whole first label"},
    {"a b.com:22", "bad character in DNS name"},
    {"exa$mple.com:22", "bad character in DNS name"},
    {"caf\xc3\xa9.example:22", "bad character in DNS name"},
    {"example.com/16:22", "bad character in IPv4"},
    {"[:::]:1", "empty IPv6 group"},
    {"[1::2::3]:1", "more than one '::'"},
    {"[::1::]:1", "more than one '::'"},
    {"[1:2:3:4:5:6:7:8:9]:1", "too many IPv6 groups"},
    {"[1:2:3:4:5:6:7:8::]:1", "too many IPv6 groups"},
    {"[::1:2:3:4:5:6:7:8]:1", "too many IPv6 groups"},
    {"[1:2:3:4:5:6:7]:1", "too few IPv6 groups"},
    {"[12345::]:1", "longer than 4 hex digits"},
    {"[::00000]:1", "longer than 4 hex digits"},
    {"[:1::]:1", "starts with a single ':'"},
    {"[1::2:]:1", "ends with a single ':'"},
    {"[1:2:3:4:5:6:7:8:]:1", "ends with a single ':'"},
    {"[::1.2.3.4:5]:1", "IPv4 part must end"},
    {"[1:2:3:4:5:6:7:1.2.3.4]:1", "too many IPv6 groups"},
    {"[::1.2.3]:1", "four parts"},
    {"[::01.2.3.4]:1", "leading zero in IPv4"},
    {"[fe80::1%eth0]:1", "zone ids"},
    {"[g::]:1", "bad character in IPv6"},
    {"[ ::1]:1", "bad character in IPv6"},
};

static void test_policy_refuses_each_malformed_rule_with_its_reason(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(refusals); i++)
        expect_refused(refusals[i].text, strlen(refusals[i].text), refusals[i].reason);
}

static void test_policy_refuses_empty_nul_and_overlong_rules(void **state)
{
    (void)state;
    char text[LP_POLICY_TEXT_MAX + 2];

    expect_refused("", 0, "empty rule");
    expect_refused("host\0:22", 8, "NUL in rule");
    expect_refused("host:22\0", 8, "NUL in rule");
    memset(text, 'a', sizeof(text));
    memcpy(text + LP_POLICY_TEXT_MAX - 3, ":22", 3);
    expect_refused(text, LP_POLICY_TEXT_MAX, "longer than 253"); /* parsed, name too long */
    memcpy(text + LP_POLICY_TEXT_MAX - 2, ":22", 3);
    expect_refused(text, LP_POLICY_TEXT_MAX + 1, "rule longer than 300");
}

static void test_policy_name_length_limits_are_exact(void **state)
{
    (void)state;
    char name[300];
    char rule[320];

    /* 63-character labels: four of them with dots make 255; trim to the edges. */
    memset(name, 'a', sizeof(name));
    for (size_t i = 63; i < 253; i += 64)
        name[i] = '.';
    snprintf(rule, sizeof(rule), "%.253s:1", name);
    parse_ok(rule);
    snprintf(rule, sizeof(rule), "%.253s.:1", name); /* a trailing dot is not counted */
    parse_ok(rule);
    name[253] = 'a';
    snprintf(rule, sizeof(rule), "%.254s:1", name);
    expect_refused(rule, strlen(rule), "longer than 253");
    snprintf(rule, sizeof(rule), "%.63s:1", name);
    parse_ok(rule);
    memset(name, 'b', 64);
    snprintf(rule, sizeof(rule), "%.64s:1", name);
    expect_refused(rule, strlen(rule), "label longer than 63");
}

static void test_policy_target_name_length_limits_are_exact(void **state)
{
    (void)state;
    char name[300];
    char rule[320];

    memset(name, 'a', sizeof(name));
    for (size_t i = 63; i < 253; i += 64)
        name[i] = '.';
    name[253] = '\0';
    snprintf(rule, sizeof(rule), "%s:1", name);
    expect_allows(rule, name, 1);
    expect_allows("*:1", name, 1);
    name[253] = '.';
    name[254] = '\0';
    expect_allows(rule, name, 1); /* the same name with its trailing dot */
    name[253] = 'a';
    expect_denies("*:1", name, 1); /* 254 characters: not a name */
    memset(name, 'c', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    expect_denies("*:*", name, 1);
}

/* Every prefix of a valid rule, from an exact-size buffer: parsed or refused with a reason,
 * never read past its end. A text rule has no "truncated" state (a prefix of a port is often a
 * port), but every prefix that stops before the port separator lacks its port. */
static void test_policy_every_prefix_of_a_valid_rule_is_parsed_or_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(forms); i++) {
        const char *text = forms[i].text;
        size_t len = strlen(text);
        size_t sep = text[0] == '[' ? (size_t)(strchr(text, ']') - text) + 1 : strcspn(text, ":");

        for (size_t n = 0; n < len; n++) {
            struct lp_policy_rule r;
            const char *why = NULL;
            lp_err rc = parse_exact(text, n, &r, &why);

            if (rc == LP_OK) {
                assert_null(why);
                assert_true(n > sep);
                continue;
            }
            assert_int_equal(rc, LP_ERR_MALFORMED);
            assert_non_null(why);
            assert_true(strlen(why) > 0);
        }
    }
}

/* ---- CIDR edges ------------------------------------------------------------------------- */

static void test_policy_v4_cidr_edges_first_last_and_just_outside(void **state)
{
    (void)state;
    expect_allows("0.0.0.0/0:1", "0.0.0.0", 1);
    expect_allows("0.0.0.0/0:1", "255.255.255.255", 1);
    expect_allows("0.0.0.0/1:1", "0.0.0.0", 1);
    expect_allows("0.0.0.0/1:1", "127.255.255.255", 1);
    expect_denies("0.0.0.0/1:1", "128.0.0.0", 1);
    expect_allows("128.0.0.0/1:1", "128.0.0.0", 1);
    expect_allows("128.0.0.0/1:1", "255.255.255.255", 1);
    expect_denies("128.0.0.0/1:1", "127.255.255.255", 1);
    expect_allows("10.0.0.2/31:1", "10.0.0.2", 1);
    expect_allows("10.0.0.2/31:1", "10.0.0.3", 1);
    expect_denies("10.0.0.2/31:1", "10.0.0.1", 1);
    expect_denies("10.0.0.2/31:1", "10.0.0.4", 1);
    expect_allows("10.0.0.3/32:1", "10.0.0.3", 1);
    expect_denies("10.0.0.3/32:1", "10.0.0.2", 1);
    expect_denies("10.0.0.3/32:1", "10.0.0.4", 1);
    expect_allows("10.1.0.0/16:1", "10.1.0.0", 1);
    expect_allows("10.1.0.0/16:1", "10.1.255.255", 1);
    expect_denies("10.1.0.0/16:1", "10.0.255.255", 1);
    expect_denies("10.1.0.0/16:1", "10.2.0.0", 1);
    expect_allows("10.16.0.0/12:1", "10.16.0.0", 1);
    expect_allows("10.16.0.0/12:1", "10.31.255.255", 1);
    expect_denies("10.16.0.0/12:1", "10.15.255.255", 1);
    expect_denies("10.16.0.0/12:1", "10.32.0.0", 1);
}

static void test_policy_v6_cidr_edges_first_last_and_just_outside(void **state)
{
    (void)state;
    const char *ones = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

    expect_allows("[::/0]:1", "::", 1);
    expect_allows("[::/0]:1", ones, 1);
    expect_allows("[::/1]:1", "::", 1);
    expect_allows("[::/1]:1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1);
    expect_denies("[::/1]:1", "8000::", 1);
    expect_allows("[8000::/1]:1", "8000::", 1);
    expect_allows("[8000::/1]:1", ones, 1);
    expect_denies("[8000::/1]:1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1);
    expect_allows("[2001:db8::/127]:1", "2001:db8::", 1);
    expect_allows("[2001:db8::/127]:1", "2001:db8::1", 1);
    expect_denies("[2001:db8::/127]:1", "2001:db8::2", 1);
    expect_denies("[2001:db8::/127]:1", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", 1);
    expect_allows("[2001:db8::1/128]:1", "2001:db8::1", 1);
    expect_allows("[2001:db8::1]:1", "2001:DB8:0:0:0:0:0:1", 1);
    expect_denies("[2001:db8::1/128]:1", "2001:db8::", 1);
    expect_denies("[2001:db8::1/128]:1", "2001:db8::2", 1);
    expect_allows("[fd00::/8]:22", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 22);
    expect_denies("[fd00::/8]:22", "fe00::", 22);
    expect_denies("[fd00::/8]:22", "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 22);
}

static uint32_t be32(const uint8_t *a)
{
    return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

/* Every prefix length against an independent integer computation. */
static void test_policy_every_v4_prefix_length_matches_integer_masking(void **state)
{
    (void)state;
    static const uint8_t probes[][4] = {{192, 168, 77, 5}, {192, 168, 77, 4},   {192, 169, 0, 0},
                                        {64, 168, 77, 5},  {192, 168, 77, 255}, {0, 0, 0, 0}};
    const uint8_t base[4] = {192, 168, 77, 5};

    for (unsigned len = 0; len <= 32; len++) {
        uint32_t mask = len == 0 ? 0 : 0xffffffffu << (32 - len);
        uint32_t net = be32(base) & mask;
        char rule[64];

        snprintf(rule, sizeof(rule), "%u.%u.%u.%u/%u:1", net >> 24, net >> 16 & 0xff,
                 net >> 8 & 0xff, net & 0xff, len);
        for (size_t i = 0; i < ARRAY_LEN(probes); i++) {
            char host[32];
            bool want = (be32(probes[i]) & mask) == net;

            snprintf(host, sizeof(host), "%u.%u.%u.%u", probes[i][0], probes[i][1], probes[i][2],
                     probes[i][3]);
            if (one_allows(rule, host, 1) != want)
                fail_msg("%s and %s: expected %d", rule, host, want);
        }
    }
}

static void test_policy_every_v6_prefix_length_matches_bitwise_masking(void **state)
{
    (void)state;
    uint8_t base[16], probe[16];
    char host[64], rule[96], net_text[64];

    for (int i = 0; i < 16; i++)
        base[i] = (uint8_t)(0xa5 ^ (i * 37)); /* not in ::ffff:0:0/96, whatever bit flips */
    for (int len = 0; len <= 128; len++) {
        uint8_t net[16] = {0};
        const int flips[] = {0, 1, len - 2, len - 1, len, len + 1, 63, 64, 127};

        for (int b = 0; b < len; b++)
            net[b / 8] |= (uint8_t)(base[b / 8] & (0x80 >> (b % 8)));
        assert_non_null(inet_ntop(AF_INET6, net, net_text, sizeof(net_text)));
        snprintf(rule, sizeof(rule), "[%s/%d]:1", net_text, len);
        assert_non_null(inet_ntop(AF_INET6, base, host, sizeof(host)));
        if (!one_allows(rule, host, 1))
            fail_msg("%s should allow its own base %s", rule, host);
        /* Flipping one bit leaves the target inside exactly when it is a host bit. */
        for (size_t i = 0; i < ARRAY_LEN(flips); i++) {
            int flip = flips[i];

            if (flip < 0 || flip > 127)
                continue;
            memcpy(probe, base, 16);
            probe[flip / 8] ^= (uint8_t)(0x80 >> (flip % 8));
            assert_non_null(inet_ntop(AF_INET6, probe, host, sizeof(host)));
            if (one_allows(rule, host, 1) != (flip >= len))
                fail_msg("%s and %s: expected %d", rule, host, flip >= len);
        }
    }
}

/* ---- ports ------------------------------------------------------------------------------ */

static void test_policy_port_range_edges(void **state)
{
    (void)state;
    expect_denies("h.example:1000-2000", "h.example", 999);
    expect_allows("h.example:1000-2000", "h.example", 1000);
    expect_allows("h.example:1000-2000", "h.example", 2000);
    expect_denies("h.example:1000-2000", "h.example", 2001);
    expect_allows("h.example:1", "h.example", 1);
    expect_denies("h.example:1", "h.example", 2);
    expect_allows("h.example:65535", "h.example", 65535);
    expect_denies("h.example:65535", "h.example", 65534);
    expect_allows("h.example:*", "h.example", 1);
    expect_allows("h.example:*", "h.example", 65535);
    expect_denies("h.example:*", "h.example", 0);
    expect_allows("h.example:1-65535", "h.example", 1);
    expect_allows("h.example:1-65535", "h.example", 65535);
    expect_allows("10.0.0.1:22", "10.0.0.1", 22);
    expect_denies("10.0.0.1:22", "10.0.0.1", 21);
    expect_denies("10.0.0.1:22", "10.0.0.1", 23);
}

/* ---- IPv6 text ------------------------------------------------------------------------- */

struct v6_case {
    const char *text;
    uint8_t addr[16];
};

static const struct v6_case v6_cases[] = {
    {"::", {0}},
    {"::1", {[15] = 1}},
    {"1::", {0, 1}},
    {"1:2::3:4", {0, 1, 0, 2, [12] = 0, 3, 0, 4}},
    {"1:2:3:4:5:6:7:8", {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}},
    {"1:2:3:4:5:6:7::", {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0}},
    {"::2:3:4:5:6:7:8", {0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}},
    {"ABCD:ef01::0", {0xab, 0xcd, 0xef, 0x01}},
    {"1:2:3:4:5:6:1.2.3.4", {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4}},
    {"::1.2.3.4", {[12] = 1, 2, 3, 4}},
    {"64:ff9b::192.0.2.33", {0, 0x64, 0xff, 0x9b, [12] = 192, 0, 2, 33}},
    {"1::5:6:255.255.255.255", {0, 1, [8] = 0, 5, 0, 6, 255, 255, 255, 255}},
};

static void test_policy_reads_ipv6_compression_and_embedded_ipv4(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(v6_cases); i++) {
        char rule[80];
        struct lp_policy_rule r;

        snprintf(rule, sizeof(rule), "[%s]:1", v6_cases[i].text);
        r = parse_ok(rule);
        assert_int_equal(r.kind, LP_POLICY_V6);
        assert_int_equal(r.prefix, 128);
        assert_memory_equal(r.addr, v6_cases[i].addr, 16);
        expect_allows(rule, v6_cases[i].text, 1);
    }
}

/* The strict choices agree with glibc's inet_pton on these, valid and invalid alike. */
/* One item a line (what the formatter wants here) would make this table five screens long. */
/* clang-format off */
static const char *const pton_texts[] = {
    "::", "::1", "1::", "1:2::3:4", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8::", "::1.2.3.4", "::01.2.3.4", "1::1.2.3.4", "::ffff:1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4", "00001::", "::1.2.3", "1.2.3.4::", ":1::", "1::2:", "0001:0db8::",
    ":::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "::1.2.3.4:5", "fe80::1%1", "::0.0.0.0",
    "::255.255.255.255", "::256.0.0.0", "1::2::3", ":", "1", "1:", "::ffff", "g::", "::1 ",
    "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4", "::1.2.3.4.5", "::1..2.3", "a:b:c:d:e:f:a:b",
    "0:0:0:0:0:0:0:0", "::0:0:0:0:0:0:0", "0:0:0:0:0:0:0::", "::1:2:3:4:5:6:7"};
/* clang-format on */

static void test_policy_ipv6_parser_agrees_with_inet_pton(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pton_texts); i++) {
        char rule[80];
        uint8_t want[16];
        struct lp_policy_rule r;
        const char *why;
        int ok = inet_pton(AF_INET6, pton_texts[i], want);

        snprintf(rule, sizeof(rule), "[%s]:1", pton_texts[i]);
        lp_err rc = parse_exact(rule, strlen(rule), &r, &why);
        if ((rc == LP_OK) != (ok == 1))
            fail_msg("[%s]: ours %s, inet_pton %d", pton_texts[i], rc == LP_OK ? "ok" : why, ok);
        if (ok != 1)
            continue;
        if (r.kind == LP_POLICY_V4) /* mapped: compare the IPv4 address it carries */
            assert_memory_equal(r.addr, want + 12, 4);
        else
            assert_memory_equal(r.addr, want, 16);
    }
}

/* A grid of dotted-quad parts, right and wrong, against inet_pton(AF_INET). */
static void test_policy_ipv4_parser_agrees_with_inet_pton(void **state)
{
    (void)state;
    static const char *const parts[] = {"0",   "1",   "00",   "01", "9", "10",  "255", "256",
                                        "099", "999", "1000", "",   "a", "0x1", " 1"};
    size_t np = ARRAY_LEN(parts);

    for (size_t k = 0; k < np * np * np * np; k++) {
        char host[64], rule[80];
        uint8_t want[4];
        struct lp_policy_rule r;
        const char *why;

        snprintf(host, sizeof(host), "%s.%s.%s.%s", parts[k % np], parts[k / np % np],
                 parts[k / np / np % np], parts[k / np / np / np]);
        snprintf(rule, sizeof(rule), "%s:1", host);
        int ok = inet_pton(AF_INET, host, want);
        lp_err rc = parse_exact(rule, strlen(rule), &r, &why);
        bool ours = rc == LP_OK && r.kind == LP_POLICY_V4; /* `0.0.a.` is a fine name */
        if (ours != (ok == 1))
            fail_msg("%s: ours %s, inet_pton %d", host, rc == LP_OK ? "ok" : why, ok);
        if (ok == 1)
            assert_memory_equal(r.addr, want, 4);
    }
}

/* ---- mapped IPv4, names, kinds ---------------------------------------------------------- */

static void test_policy_mapped_ipv4_target_matches_ipv4_rules(void **state)
{
    (void)state;
    expect_allows("10.1.0.0/16:22", "::ffff:10.1.2.3", 22);
    expect_allows("10.1.0.0/16:22", "::FFFF:a01:203", 22);
    expect_allows("10.1.0.0/16:22", "0:0:0:0:0:ffff:10.1.2.3", 22);
    expect_denies("10.1.0.0/16:22", "::ffff:10.2.0.0", 22);
    expect_allows("[::ffff:10.1.2.3]:22", "10.1.2.3", 22);
    expect_allows("[::ffff:10.1.2.3]:22", "::ffff:10.1.2.3", 22);
    expect_allows("[::ffff:a00:0/104]:22", "10.200.0.1", 22);
    /* Documented: a short IPv6 prefix never reaches IPv4, mapped or not. */
    expect_denies("[::/0]:22", "::ffff:10.1.2.3", 22);
    expect_denies("[::/0]:22", "10.1.2.3", 22);
    expect_denies("[::fffe:0:0/95]:22", "::ffff:10.1.2.3", 22);
    expect_allows("[::fffe:0:0/95]:22", "::fffe:10.1.2.3", 22);
    expect_denies("0.0.0.0/0:22", "::1", 22);
    /* Only ::ffff:0:0/96 is mapped; the deprecated compatible form and NAT64 stay IPv6. */
    expect_denies("10.1.0.0/16:22", "::10.1.2.3", 22);
    expect_denies("10.1.0.0/16:22", "64:ff9b::10.1.2.3", 22);
    expect_allows("[::10.1.2.3]:22", "::a01:203", 22);
}

static void test_policy_names_match_case_insensitively_and_exactly(void **state)
{
    (void)state;
    expect_allows("DB.Internal:22", "db.internal", 22);
    expect_allows("db.internal:22", "DB.INTERNAL", 22);
    expect_allows("db.internal:22", "db.internal.", 22);
    expect_allows("db.internal.:22", "db.internal", 22);
    expect_denies("db.internal:22", "db.internal.evil", 22);
    expect_denies("db.internal:22", "xdb.internal", 22);
    expect_denies("db.internal:22", "a.db.internal", 22);
    expect_denies("db.internal:22", "db.interna", 22);
    expect_denies("db.internal:22", "db.internal..", 22);
}

static void test_policy_wildcard_matches_subdomains_but_not_the_name_itself(void **state)
{
    (void)state;
    expect_allows("*.example.com:443", "a.example.com", 443);
    expect_allows("*.example.com:443", "A.B.EXAMPLE.COM", 443);
    expect_allows("*.example.com:443", "a.example.com.", 443);
    expect_denies("*.example.com:443", "example.com", 443);
    expect_denies("*.example.com:443", "example.com.", 443);
    expect_denies("*.example.com:443", "notexample.com", 443);
    expect_denies("*.example.com:443", "example.com.evil", 443);
    expect_denies("*.example.com:443", ".example.com", 443);
    expect_denies("*.example.com:443", "a.example.co", 443);
    expect_denies("*.example.com:443", "a.example.com", 444);
    expect_allows("*.com:1", "x.com", 1);
}

static void test_policy_numeric_targets_never_match_names_and_names_never_match_cidrs(void **state)
{
    (void)state;
    expect_denies("localhost:22", "127.0.0.1", 22);
    expect_denies("127.0.0.1:22", "localhost", 22);
    expect_denies("0.0.0.0/0:*", "localhost", 22);
    expect_denies("[::/0]:*", "localhost", 22);
    expect_denies("*.internal:*", "10.0.0.1", 22);
}

static void test_policy_star_allows_any_valid_target_and_no_invalid_one(void **state)
{
    (void)state;
    static const char *const valid[] = {"localhost",      "db.internal", "127.0.0.1", "::1",
                                        "::ffff:1.2.3.4", "fd00::1",     "_x.example"};
    static const char *const invalid[] = {
        "",      "127.1",      "010.0.0.1", "2130706433", "0x7f.0.0.1", "fe80::1%eth0",
        "[::1]", "1.2.3.4:22", "a..b",      ".",          "bad name",   "*.example.com",
        "*",     "-a.example", "1.2.3.4.",  "::1::",      "caf\xc3\xa9"};

    for (size_t i = 0; i < ARRAY_LEN(valid); i++)
        expect_allows("*:22", valid[i], 22);
    for (size_t i = 0; i < ARRAY_LEN(invalid); i++)
        expect_denies("*:*", invalid[i], 22);
    expect_denies("*:22", "localhost", 23);
}

/* ---- the policy ------------------------------------------------------------------------- */

static void test_policy_empty_policy_allows_nothing(void **state)
{
    (void)state;
    struct lp_policy p;
    static const char *const hosts[] = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::"};

    lp_policy_init(&p);
    for (size_t i = 0; i < ARRAY_LEN(hosts); i++) {
        assert_false(lp_policy_allows(&p, hosts[i], 22));
        assert_false(lp_policy_allows(&p, hosts[i], 65535));
    }
    assert_false(lp_policy_allows(&p, NULL, 22));
    assert_false(lp_policy_allows_name(&p, "memory"));
    lp_policy_clear(&p);
    lp_policy_clear(&p); /* clear is idempotent */
    assert_false(lp_policy_allows(&p, "localhost", 22));
}

/* -R with port 0 asks "may it listen on this host at all" before anything listens. */
static void test_policy_allows_host_is_true_only_where_some_port_is(void **state)
{
    (void)state;
    struct lp_policy p;

    lp_policy_init(&p);
    assert_false(lp_policy_allows_host(&p, "127.0.0.1"));
    add_ok(&p, "127.0.0.1:8000-8100");
    add_ok(&p, "[::1]:9000");
    add_ok(&p, "unix:/run/app.sock");
    add_ok(&p, "*.example.net:443");
    assert_true(lp_policy_allows_host(&p, "127.0.0.1"));
    assert_true(lp_policy_allows_host(&p, "::1"));
    assert_true(lp_policy_allows_host(&p, "www.example.net"));
    assert_false(lp_policy_allows_host(&p, "0.0.0.0"));
    assert_false(lp_policy_allows_host(&p, "127.0.0.2"));
    assert_false(lp_policy_allows_host(&p, "::"));
    assert_false(lp_policy_allows_host(&p, "unix:/run/app.sock"));
    assert_false(lp_policy_allows_host(&p, "127.1"));
    assert_false(lp_policy_allows_host(&p, NULL));
    lp_policy_clear(&p);
}

static void test_policy_allows_when_any_rule_matches(void **state)
{
    (void)state;
    struct lp_policy p;

    lp_policy_init(&p);
    add_ok(&p, "127.0.0.1:22");
    add_ok(&p, "10.1.0.0/16:5432");
    add_ok(&p, "db.internal:8000-8100");
    add_ok(&p, "[::1]:80");
    assert_true(lp_policy_allows(&p, "127.0.0.1", 22));
    assert_true(lp_policy_allows(&p, "10.1.9.9", 5432));
    assert_true(lp_policy_allows(&p, "db.internal", 8050));
    assert_true(lp_policy_allows(&p, "::1", 80));
    assert_false(lp_policy_allows(&p, "127.0.0.1", 5432));
    assert_false(lp_policy_allows(&p, "10.1.9.9", 22));
    assert_false(lp_policy_allows(&p, "::1", 22));
    assert_false(lp_policy_allows(&p, "127.0.0.2", 22));
    lp_policy_clear(&p);
}

static void test_policy_refused_add_leaves_the_policy_unchanged(void **state)
{
    (void)state;
    struct lp_policy p;
    const char *why = NULL;

    lp_policy_init(&p);
    add_ok(&p, "127.0.0.1:22");
    assert_int_equal(lp_policy_add(&p, "10.1.0.1/16:1", 13, &why), LP_ERR_MALFORMED);
    assert_string_equal(why, "host bits set in CIDR");
    assert_int_equal(p.count, 1);
    assert_false(lp_policy_allows(&p, "10.1.0.1", 1));
    assert_int_equal(lp_policy_add_name(&p, "a b", 3, &why), LP_ERR_MALFORMED);
    assert_non_null(why);
    assert_int_equal(p.count, 1);
    lp_policy_clear(&p);
}

static void test_policy_refuses_rules_beyond_the_cap(void **state)
{
    (void)state;
    struct lp_policy p;
    const char *why = NULL;
    char rule[64];

    lp_policy_init(&p);
    for (unsigned i = 0; i < LP_POLICY_MAX_RULES; i++) {
        snprintf(rule, sizeof(rule), "10.%u.%u.0/24:%u", i / 256, i % 256, i + 1);
        add_ok(&p, rule);
    }
    assert_int_equal(p.count, LP_POLICY_MAX_RULES);
    assert_int_equal(lp_policy_add(&p, "*:*", 3, &why), LP_ERR_TOO_BIG);
    assert_non_null(why);
    assert_int_equal(lp_policy_add_name(&p, "*", 1, &why), LP_ERR_TOO_BIG);
    assert_int_equal(p.count, LP_POLICY_MAX_RULES);
    assert_false(lp_policy_allows(&p, "192.0.2.1", 1));    /* the refused `*:*` is not there */
    assert_true(lp_policy_allows(&p, "10.3.255.7", 1024)); /* the last rule is */
    assert_false(lp_policy_allows(&p, "10.3.255.7", 1023));
    lp_policy_clear(&p);
    assert_int_equal(p.count, 0);
    add_ok(&p, "*:*"); /* usable again after clear */
    assert_true(lp_policy_allows(&p, "192.0.2.1", 1));
    lp_policy_clear(&p);
}

/* ---- MCP names -------------------------------------------------------------------------- */

static void test_policy_mcp_names_match_exactly(void **state)
{
    (void)state;
    struct lp_policy p;
    const char *why = NULL;

    lp_policy_init(&p);
    assert_int_equal(lp_policy_add_name(&p, "memory", 6, &why), LP_OK);
    assert_int_equal(lp_policy_add_name(&p, "fs.read-only_2", 14, &why), LP_OK);
    assert_true(lp_policy_allows_name(&p, "memory"));
    assert_true(lp_policy_allows_name(&p, "fs.read-only_2"));
    assert_false(lp_policy_allows_name(&p, "Memory"));
    assert_false(lp_policy_allows_name(&p, "memory2"));
    assert_false(lp_policy_allows_name(&p, "mem"));
    assert_false(lp_policy_allows_name(&p, ""));
    assert_false(lp_policy_allows_name(&p, NULL));
    /* Name rules and target rules never stand in for each other. */
    assert_false(lp_policy_allows(&p, "memory", 1));
    add_ok(&p, "*:*");
    assert_false(lp_policy_allows_name(&p, "other"));
    lp_policy_clear(&p);
}

static void test_policy_mcp_star_allows_every_valid_name_only(void **state)
{
    (void)state;
    struct lp_policy p;
    const char *why = NULL;
    char longest[LP_POLICY_MCP_NAME_MAX + 2];

    lp_policy_init(&p);
    assert_int_equal(lp_policy_add_name(&p, "*", 1, &why), LP_OK);
    assert_true(lp_policy_allows_name(&p, "memory"));
    memset(longest, 'm', sizeof(longest));
    longest[LP_POLICY_MCP_NAME_MAX] = '\0';
    assert_true(lp_policy_allows_name(&p, longest));
    longest[LP_POLICY_MCP_NAME_MAX] = 'm';
    longest[LP_POLICY_MCP_NAME_MAX + 1] = '\0';
    assert_false(lp_policy_allows_name(&p, longest));
    assert_false(lp_policy_allows_name(&p, ""));
    assert_false(lp_policy_allows_name(&p, "a b"));
    assert_false(lp_policy_allows_name(&p, "../x"));
    assert_false(lp_policy_allows(&p, "localhost", 1));
    lp_policy_clear(&p);
}

static void test_policy_refuses_malformed_mcp_names(void **state)
{
    (void)state;
    static const struct refusal bad[] = {
        {"", "empty"},
        {"a b", "bad character"},
        {"a/b", "bad character"},
        {"m\0x", "bad character"},
        {"**", "bad character"},
        {"mem:1", "bad character"},
    };
    char longest[LP_POLICY_MCP_NAME_MAX + 1];
    struct lp_policy_rule r;
    const char *why = NULL;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        size_t len = i == 3 ? 3 : strlen(bad[i].text);

        assert_int_equal(lp_policy_parse_name(bad[i].text, len, &r, &why), LP_ERR_MALFORMED);
        assert_non_null(strstr(why, bad[i].reason));
    }
    memset(longest, 'a', sizeof(longest));
    assert_int_equal(lp_policy_parse_name(longest, sizeof(longest), &r, &why), LP_ERR_MALFORMED);
    assert_non_null(strstr(why, "longer than 64"));
    assert_int_equal(lp_policy_parse_name(longest, sizeof(longest) - 1, &r, &why), LP_OK);
    assert_int_equal(r.kind, LP_POLICY_MCP);
    assert_string_equal(format(&r),
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(lp_policy_parse_name("*", 1, &r, &why), LP_OK);
    assert_int_equal(r.kind, LP_POLICY_MCP_ANY);
    assert_string_equal(format(&r), "*");
}

static void
test_policy_internal_addresses_are_loopback_unspecified_link_local_and_multicast(void **state)
{
    static const struct {
        const char *text;
        bool internal;
    } cases[] = {
        {"127.0.0.1", true},
        {"127.255.255.255", true},
        {"126.255.255.255", false},
        {"128.0.0.0", false},
        {"0.0.0.0", true},
        {"0.255.255.255", true},
        {"1.0.0.0", false},
        {"169.254.0.1", true},
        {"169.253.255.255", false},
        {"169.255.0.0", false},
        {"224.0.0.1", true},
        {"239.255.255.255", true},
        {"223.255.255.255", false},
        {"240.0.0.0", false},
        {"10.0.0.1", false},
        {"::1", true},
        {"::", true},
        {"::2", false},
        {"fe80::1", true},
        {"febf::1", true},
        {"fec0::1", false},
        {"ff02::1", true},
        {"2001:db8::1", false},
        {"::ffff:127.0.0.1", true},
        {"::ffff:10.0.0.1", false},
        {"::ffff:169.254.3.4", true},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t a[16];
        bool v4 = strchr(cases[i].text, ':') == NULL;
        assert_int_equal(inet_pton(v4 ? AF_INET : AF_INET6, cases[i].text, a), 1);
        if (lp_policy_addr_is_internal(a, v4 ? 4 : 16) != cases[i].internal)
            fail_msg("%s: expected %s", cases[i].text, cases[i].internal ? "internal" : "not");
    }
    assert_false(lp_policy_addr_is_internal((const uint8_t *)"\x7f\0\0\1", 3));
}

/* ---- unix socket targets ------------------------------------------------------------------ */

static void test_policy_refuses_unix_paths_that_are_not_canonical(void **state)
{
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"unix:/", "ends with '/'"},
        {"unix:/run/", "ends with '/'"},
        {"unix:/run//x.sock", "empty component"},
        {"unix:/run/../etc/x.sock", "'..' component"},
        {"unix:/run/./x.sock", "'.' or '..'"},
        {"unix:/run/..", "'..' component"},
        {"unix:/run/a*b", "'*' in unix socket path"},
        {"unix:/run/*/x.sock", "'*' in unix socket path"},
        {"unix:/run/../*", "'..' component"},
        {"unix:/run/x\tb", "control byte"},
        {"unix:/run/**", "'*' in unix socket path"},
    };
    char text[160];
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        expect_refused(cases[i].text, strlen(cases[i].text), cases[i].reason);
    /* 107 bytes of path fit sun_path; 108 do not */
    memset(text, 'a', sizeof(text));
    memcpy(text, "unix:/", 6);
    parse_ok_len(text, 5 + LP_POLICY_UNIX_PATH_MAX);
    expect_refused(text, 5 + LP_POLICY_UNIX_PATH_MAX + 1, "longer than 107 bytes");
}

static void test_policy_unix_rule_matches_exactly_that_socket(void **state)
{
    (void)state;
    expect_allows("unix:/run/app.sock", "unix:/run/app.sock", 0);
    expect_allows("unix:/run/app.sock", "unix:/run/app.sock", 443); /* a port means nothing */
    expect_denies("unix:/run/app.sock", "unix:/run/app.sock2", 0);
    expect_denies("unix:/run/app.sock", "unix:/run/app.soc", 0);
    expect_denies("unix:/run/app.sock", "unix:/RUN/app.sock", 0); /* paths are case-sensitive */
    expect_denies("unix:/run/app.sock", "unix:/run//app.sock", 0);
    expect_denies("unix:/run/app.sock", "unix:/run/./app.sock", 0);
    expect_denies("unix:/run/app.sock", "unix:run/app.sock", 0);
    expect_denies("unix:/run/app.sock", "/run/app.sock", 0);
}

static void test_policy_unix_directory_rule_matches_its_direct_entries_only(void **state)
{
    (void)state;
    expect_allows("unix:/run/app/*", "unix:/run/app/a.sock", 0);
    expect_allows("unix:/run/app/*", "unix:/run/app/x", 7);
    expect_denies("unix:/run/app/*", "unix:/run/app", 0);
    expect_denies("unix:/run/app/*", "unix:/run/app/", 0);
    expect_denies("unix:/run/app/*", "unix:/run/app/sub/a.sock", 0);
    expect_denies("unix:/run/app/*", "unix:/run/app/../secret.sock", 0);
    expect_denies("unix:/run/app/*", "unix:/run/apple.sock", 0);
    expect_denies("unix:/run/app/*", "unix:/run/appx/a.sock", 0);
    expect_allows("unix:/*", "unix:/a.sock", 0);
    expect_denies("unix:/*", "unix:/run/a.sock", 0);
}

/* A `*` rule opens the network, not this host's sockets (a docker.sock, say); and unix rules
 * never open the network. */
static void test_policy_unix_targets_need_unix_rules(void **state)
{
    struct lp_policy p;
    (void)state;
    expect_denies("*:*", "unix:/run/app.sock", 0);
    expect_denies("*:*", "unix:/run/app.sock", 80);
    expect_denies("unix:/run/app/*", "localhost", 80);
    expect_denies("unix:/run/app.sock", "127.0.0.1", 1);
    lp_policy_init(&p);
    assert_false(lp_policy_allows(&p, "unix:/run/app.sock", 0)); /* default deny */
    add_ok(&p, "127.0.0.1:*");
    add_ok(&p, "unix:/srv/db.sock");
    assert_true(lp_policy_allows(&p, "unix:/srv/db.sock", 0));
    assert_true(lp_policy_allows(&p, "127.0.0.1", 5));
    assert_false(lp_policy_allows(&p, "127.0.0.1", 0)); /* port 0 still never for hosts */
    assert_false(lp_policy_allows(&p, "unix:/srv/other.sock", 0));
    lp_policy_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_parses_every_rule_form_to_its_canonical_text),
        cmocka_unit_test(test_policy_rule_fields_hold_address_prefix_and_ports),
        cmocka_unit_test(test_policy_canonical_text_parses_back_to_the_same_rule),
        cmocka_unit_test(test_policy_format_returns_zero_when_the_buffer_is_short),
        cmocka_unit_test(test_policy_refuses_each_malformed_rule_with_its_reason),
        cmocka_unit_test(test_policy_refuses_empty_nul_and_overlong_rules),
        cmocka_unit_test(test_policy_name_length_limits_are_exact),
        cmocka_unit_test(test_policy_target_name_length_limits_are_exact),
        cmocka_unit_test(test_policy_every_prefix_of_a_valid_rule_is_parsed_or_refused),
        cmocka_unit_test(test_policy_v4_cidr_edges_first_last_and_just_outside),
        cmocka_unit_test(test_policy_v6_cidr_edges_first_last_and_just_outside),
        cmocka_unit_test(test_policy_every_v4_prefix_length_matches_integer_masking),
        cmocka_unit_test(test_policy_every_v6_prefix_length_matches_bitwise_masking),
        cmocka_unit_test(test_policy_port_range_edges),
        cmocka_unit_test(test_policy_reads_ipv6_compression_and_embedded_ipv4),
        cmocka_unit_test(test_policy_ipv6_parser_agrees_with_inet_pton),
        cmocka_unit_test(test_policy_ipv4_parser_agrees_with_inet_pton),
        cmocka_unit_test(test_policy_mapped_ipv4_target_matches_ipv4_rules),
        cmocka_unit_test(test_policy_names_match_case_insensitively_and_exactly),
        cmocka_unit_test(test_policy_wildcard_matches_subdomains_but_not_the_name_itself),
        cmocka_unit_test(test_policy_numeric_targets_never_match_names_and_names_never_match_cidrs),
        cmocka_unit_test(test_policy_star_allows_any_valid_target_and_no_invalid_one),
        cmocka_unit_test(test_policy_empty_policy_allows_nothing),
        cmocka_unit_test(test_policy_allows_when_any_rule_matches),
        cmocka_unit_test(test_policy_refused_add_leaves_the_policy_unchanged),
        cmocka_unit_test(test_policy_refuses_rules_beyond_the_cap),
        cmocka_unit_test(test_policy_mcp_names_match_exactly),
        cmocka_unit_test(test_policy_mcp_star_allows_every_valid_name_only),
        cmocka_unit_test(test_policy_refuses_malformed_mcp_names),
        cmocka_unit_test(test_policy_refuses_unix_paths_that_are_not_canonical),
        cmocka_unit_test(test_policy_unix_rule_matches_exactly_that_socket),
        cmocka_unit_test(test_policy_unix_directory_rule_matches_its_direct_entries_only),
        cmocka_unit_test(test_policy_unix_targets_need_unix_rules),
        cmocka_unit_test(test_policy_allows_host_is_true_only_where_some_port_is),
        cmocka_unit_test(
            test_policy_internal_addresses_are_loopback_unspecified_link_local_and_multicast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
