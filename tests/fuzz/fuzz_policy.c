/* fuzz_policy.c — libFuzzer target for the allow-list parser and matcher (policy.h).
 *
 * The input is read three ways, each with properties that abort on failure:
 * - as a target rule: a refusal carries a reason; an accepted rule's canonical text parses back
 *   to the same rule and prints the same again, and the rule allows its own network address
 *   (or name, or unix socket path) on its lowest port;
 * - as an MCP name rule: an accepted name is allowed by a policy holding it;
 * - as a target host (up to the first NUL): the `*` policy allows it exactly when inet_pton
 *   (the libc parser, used here as an oracle only) reads an IPv6 text with a ':' in it, and
 *   exactly when a rule made from the host itself allows it; the empty policy allows nothing.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static bool rules_equal(const struct lp_policy_rule *a, const struct lp_policy_rule *b)
{
    return a->kind == b->kind && a->prefix == b->prefix && memcmp(a->addr, b->addr, 16) == 0 &&
           a->port_lo == b->port_lo && a->port_hi == b->port_hi && strcmp(a->name, b->name) == 0;
}

static bool policy_of_one_allows(const struct lp_policy_rule *r, const char *host, uint16_t port)
{
    struct lp_policy p;
    char text[LP_POLICY_TEXT_MAX + 1];
    const char *why = NULL;
    size_t n = lp_policy_format_rule(r, text, sizeof(text));
    bool ok;

    check(n > 0);
    lp_policy_init(&p);
    check(lp_policy_add(&p, text, n, &why) == LP_OK);
    ok = lp_policy_allows(&p, host, port);
    lp_policy_clear(&p);
    return ok;
}

/* A host the rule must allow: its network address, its name, or one name below it. */
static bool sample_host(const struct lp_policy_rule *r, char *host, size_t cap)
{
    switch (r->kind) {
    case LP_POLICY_ANY:
        snprintf(host, cap, "localhost");
        return true;
    case LP_POLICY_V4:
        return inet_ntop(AF_INET, r->addr, host, (socklen_t)cap) != NULL;
    case LP_POLICY_V6:
        return inet_ntop(AF_INET6, r->addr, host, (socklen_t)cap) != NULL;
    case LP_POLICY_NAME:
        snprintf(host, cap, "%s", r->name);
        return true;
    case LP_POLICY_SUFFIX:
        if (strlen(r->name) + 2 > LP_POLICY_NAME_MAX)
            return false;
        snprintf(host, cap, "x.%s", r->name);
        return true;
    case LP_POLICY_UNIX:
        snprintf(host, cap, "unix:%s", r->name);
        return true;
    case LP_POLICY_UNIX_DIR:
        if (strlen(r->name) + 1 > LP_POLICY_UNIX_PATH_MAX)
            return false;
        snprintf(host, cap, "unix:%sx", r->name);
        return true;
    case LP_POLICY_MCP:
    case LP_POLICY_MCP_ANY:
        return false;
    }
    return false;
}

static bool is_unix_rule(const struct lp_policy_rule *r)
{
    return r->kind == LP_POLICY_UNIX || r->kind == LP_POLICY_UNIX_DIR;
}

static void fuzz_rule(const char *text, size_t len)
{
    struct lp_policy_rule r, again;
    char canon[LP_POLICY_TEXT_MAX + 1], canon2[LP_POLICY_TEXT_MAX + 1];
    char host[LP_POLICY_NAME_MAX + 8];
    const char *why = NULL;
    size_t n;

    if (lp_policy_parse_rule(text, len, &r, &why) != LP_OK) {
        check(why != NULL && why[0] != '\0');
        return;
    }
    check(why == NULL);
    if (is_unix_rule(&r)) /* no ports: they never match a host target */
        check(r.port_lo == 0 && r.port_hi == 0 && !policy_of_one_allows(&r, "localhost", 1));
    else
        check(r.port_lo >= 1 && r.port_lo <= r.port_hi);
    n = lp_policy_format_rule(&r, canon, sizeof(canon));
    check(n > 0 && n == strlen(canon));
    check(lp_policy_parse_rule(canon, n, &again, &why) == LP_OK);
    check(rules_equal(&r, &again));
    check(lp_policy_format_rule(&again, canon2, sizeof(canon2)) == n);
    check(memcmp(canon, canon2, n + 1) == 0);
    if (sample_host(&r, host, sizeof(host))) {
        check(policy_of_one_allows(&r, host, r.port_lo));
        check(policy_of_one_allows(&r, host, r.port_hi));
        if (r.port_lo > 1)
            check(!policy_of_one_allows(&r, host, (uint16_t)(r.port_lo - 1)));
    }
    if (r.kind == LP_POLICY_SUFFIX) /* strictly below: never the name itself */
        check(!policy_of_one_allows(&r, r.name, r.port_lo));
}

static void fuzz_mcp_name(const char *text, size_t len)
{
    struct lp_policy p;
    struct lp_policy_rule r;
    const char *why = NULL;

    if (lp_policy_parse_name(text, len, &r, &why) != LP_OK) {
        check(why != NULL && why[0] != '\0');
        return;
    }
    lp_policy_init(&p);
    check(lp_policy_add_name(&p, text, len, &why) == LP_OK);
    if (r.kind == LP_POLICY_MCP)
        check(lp_policy_allows_name(&p, r.name));
    check(!lp_policy_allows(&p, "localhost", 1));
    lp_policy_clear(&p);
}

/* Builds "host:1" or "[host]:1" and parses it; false when the rule is refused. */
static bool rule_from_host(const char *host, struct lp_policy_rule *r)
{
    char text[LP_POLICY_TEXT_MAX + 8];
    const char *why;
    int n = snprintf(text, sizeof(text), strchr(host, ':') ? "[%s]:1" : "%s:1", host);

    if (n < 0 || (size_t)n >= sizeof(text))
        return false;
    return lp_policy_parse_rule(text, (size_t)n, r, &why) == LP_OK;
}

static void fuzz_target(const char *host)
{
    struct lp_policy any, none;
    struct lp_policy_rule r;
    uint8_t bin[16];
    const char *why = NULL;
    bool valid, self;

    lp_policy_init(&any);
    lp_policy_init(&none);
    check(lp_policy_add(&any, "*:*", 3, &why) == LP_OK);
    valid = lp_policy_allows(&any, host, 443);
    check(!lp_policy_allows(&none, host, 443));
    check(!lp_policy_allows(&any, host, 0));
    if (strchr(host, ':') != NULL)
        check(valid == (inet_pton(AF_INET6, host, bin) == 1));
    else if (inet_pton(AF_INET, host, bin) == 1)
        check(valid);
    /* A rule made from a valid host allows it; hosts a rule cannot be made of (a `/`, a `*`,
     * brackets) must then be invalid targets too. */
    if (strpbrk(host, "/*[]") != NULL) {
        check(!valid);
    } else {
        self = rule_from_host(host, &r) && policy_of_one_allows(&r, host, 1);
        check(self == valid);
    }
    lp_policy_clear(&any);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char host[LP_POLICY_TEXT_MAX + 1];
    size_t n = size < sizeof(host) - 1 ? size : sizeof(host) - 1;

    fuzz_rule((const char *)data, size);
    fuzz_mcp_name((const char *)data, size);
    memcpy(host, data, n);
    host[n] = '\0';
    fuzz_target(host);
    return 0;
}
