/* policy_text.c — the canonical text of a parsed allow-list rule (lp_policy_format_rule in
 * policy.h), for logs and for the round-trip property the fuzzer checks: formatting a rule
 * and parsing the text again gives the same rule. Kept apart from the parsers in policy.c.
 */
#include "limpet/policy.h"
#include "limpet/hex.h"

#include <string.h>

struct text {
    char *p;    /* borrowed: the caller's buffer */
    size_t cap; /* its size */
    size_t len; /* characters written; len < cap while !bad, so a NUL always fits */
    bool bad;   /* sticky: something did not fit */
};

static void put_char(struct text *t, char c)
{
    if (t->bad || t->cap - t->len < 2) {
        t->bad = true;
        return;
    }
    t->p[t->len++] = c;
    t->p[t->len] = '\0';
}

static void put_str(struct text *t, const char *s)
{
    while (*s != '\0')
        put_char(t, *s++);
}

static void put_uint(struct text *t, unsigned v, unsigned base)
{
    char digits[12];
    size_t n = 0;

    do {
        digits[n++] = lp_hex_digit((unsigned)(v % base), false);
        v /= base;
    } while (v != 0 && n < sizeof(digits));
    while (n > 0)
        put_char(t, digits[--n]);
}

static void put_v4(struct text *t, const uint8_t *a)
{
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            put_char(t, '.');
        put_uint(t, a[i], 10);
    }
}

/* RFC 5952: lower-case hex without leading zeros; the longest run of two or more zero groups
 * (the first of equals) becomes `::`. */
static void put_v6(struct text *t, const uint8_t *a)
{
    unsigned g[8];
    int best = -1, best_len = 1;

    for (int i = 0; i < 8; i++)
        g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
    for (int i = 0; i < 8; i++) {
        int run = 0;
        while (i + run < 8 && g[i + run] == 0)
            run++;
        if (run > best_len) {
            best = i;
            best_len = run;
        }
    }
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            put_str(t, "::");
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len)
            put_char(t, ':');
        put_uint(t, g[i], 16);
    }
}

static void put_ports(struct text *t, const struct lp_policy_rule *r)
{
    put_char(t, ':');
    if (r->port_lo == 1 && r->port_hi == 65535) {
        put_char(t, '*');
        return;
    }
    put_uint(t, r->port_lo, 10);
    if (r->port_hi != r->port_lo) {
        put_char(t, '-');
        put_uint(t, r->port_hi, 10);
    }
}

size_t lp_policy_format_rule(const struct lp_policy_rule *r, char *out, size_t cap)
{
    struct text t = {.p = out, .cap = cap, .len = 0, .bad = cap == 0};

    if (cap > 0)
        out[0] = '\0';
    switch (r->kind) {
    case LP_POLICY_ANY:
    case LP_POLICY_MCP_ANY:
        put_char(&t, '*');
        break;
    case LP_POLICY_V4:
        put_v4(&t, r->addr);
        if (r->prefix != 32) {
            put_char(&t, '/');
            put_uint(&t, r->prefix, 10);
        }
        break;
    case LP_POLICY_V6:
        put_char(&t, '[');
        put_v6(&t, r->addr);
        if (r->prefix != 128) {
            put_char(&t, '/');
            put_uint(&t, r->prefix, 10);
        }
        put_char(&t, ']');
        break;
    case LP_POLICY_SUFFIX:
        put_str(&t, "*.");
        put_str(&t, r->name);
        break;
    case LP_POLICY_NAME:
    case LP_POLICY_MCP:
        put_str(&t, r->name);
        break;
    case LP_POLICY_UNIX:
        put_str(&t, "unix:");
        put_str(&t, r->name);
        break;
    case LP_POLICY_UNIX_DIR:
        put_str(&t, "unix:");
        put_str(&t, r->name);
        put_char(&t, '*');
        break;
    }
    if (r->kind != LP_POLICY_MCP && r->kind != LP_POLICY_MCP_ANY && r->kind != LP_POLICY_UNIX &&
        r->kind != LP_POLICY_UNIX_DIR)
        put_ports(&t, r);
    if (t.bad) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    return t.len;
}
