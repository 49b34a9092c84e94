/* policy.c — allow-list rules: strict parsers for addresses, names and ports, and matching.
 * See policy.h for the syntax and the matching choices.
 *
 * No inet_pton here: src/core stays free of socket headers, and the parsers below are stricter
 * than the libc ones on purpose (no leading zeros, no short forms, no zone ids).
 */
#include "limpet/policy.h"
#include "limpet/hex.h"
#include "limpet/wire.h"

#include <stdlib.h>
#include <string.h>

#include "limpet/base.h"

/* An IPv6 address in ::ffff:0:0/96 is an IPv4 address on a dual-stack socket. */
static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

enum target_kind { T_BAD, T_V4, T_V6, T_NAME, T_UNIX };

struct target {
    enum target_kind kind;
    uint8_t addr[16];                  /* T_V4: first 4 bytes */
    char name[LP_POLICY_NAME_MAX + 1]; /* T_NAME: lower case, no trailing dot; T_UNIX: path */
    size_t name_len;
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static const char *find_char(const char *s, size_t n, char c)
{
    return n > 0 ? memchr(s, c, n) : NULL;
}

/* A decimal number of at most max_digits digits and no leading zero. Returns NULL or why. */
static const char *parse_decimal(const char *s, size_t n, size_t max_digits, unsigned *v,
                                 const char *what_not_number, const char *what_leading_zero,
                                 const char *what_too_big)
{
    *v = 0;
    if (n == 0)
        return what_not_number;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return what_not_number;
    }
    if (n > 1 && s[0] == '0')
        return what_leading_zero;
    if (n > max_digits)
        return what_too_big;
    for (size_t i = 0; i < n; i++)
        *v = *v * 10 + (unsigned)(s[i] - '0');
    return NULL;
}

/* ---- numbers ----------------------------------------------------------------------------- */

static const char *parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v;
    const char *why;

    if (n == 0)
        return "missing port";
    why = parse_decimal(s, n, 5, &v, "port is not a number", "leading zero in port",
                        "port above 65535");
    if (why != NULL)
        return why;
    if (v == 0)
        return "port 0 is not allowed";
    if (v > 65535)
        return "port above 65535";
    *port = (uint16_t)v;
    return NULL;
}

/* `*`, `N` or `LO-HI`. */
static const char *parse_ports(const char *s, size_t n, uint16_t *lo, uint16_t *hi)
{
    const char *dash = find_char(s, n, '-');
    const char *why;

    if (n == 1 && s[0] == '*') {
        *lo = 1;
        *hi = 65535;
        return NULL;
    }
    if (dash == NULL) {
        if ((why = parse_port(s, n, lo)) != NULL)
            return why;
        *hi = *lo;
        return NULL;
    }
    if ((why = parse_port(s, (size_t)(dash - s), lo)) != NULL)
        return why;
    if ((why = parse_port(dash + 1, n - (size_t)(dash - s) - 1, hi)) != NULL)
        return why;
    if (*lo > *hi)
        return "port range is backwards (LO above HI)";
    return NULL;
}

static const char *parse_prefix(const char *s, size_t n, unsigned max, uint8_t *prefix)
{
    unsigned v;
    const char *too_big = max == 32 ? "CIDR length above 32" : "CIDR length above 128";
    const char *why;

    if (n == 0)
        return "missing CIDR length after '/'";
    why = parse_decimal(s, n, 3, &v, "CIDR length is not a number", "leading zero in CIDR length",
                        too_big);
    if (why != NULL)
        return why;
    if (v > max)
        return too_big;
    *prefix = (uint8_t)v;
    return NULL;
}

/* ---- addresses --------------------------------------------------------------------------- */

/* Exactly four decimal parts 0-255 without leading zeros: anything looser means different
 * things to different resolvers (inet_aton reads 010 as octal 8). */
static const char *parse_v4(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;

    for (int part = 0; part < 4; part++) {
        size_t start;
        unsigned v = 0;

        if (part > 0) {
            if (i >= n || s[i] != '.')
                return i >= n ? "IPv4 address needs four parts" : "bad character in IPv4 address";
            i++;
        }
        for (start = i; i < n && is_digit(s[i]) && i - start < 4; i++)
            v = v * 10 + (unsigned)(s[i] - '0');
        if (i == start)
            return i < n && s[i] != '.' ? "bad character in IPv4 address" : "empty IPv4 part";
        if (i - start > 1 && s[start] == '0')
            return "leading zero in IPv4 address";
        if (v > 255 || (i < n && is_digit(s[i])))
            return "IPv4 part above 255";
        out[part] = (uint8_t)v;
    }
    if (i != n)
        return s[i] == '.' ? "IPv4 address has more than four parts"
                           : "bad character in IPv4 address";
    return NULL;
}

/* One field of an IPv6 address: 1-4 hex digits. */
static const char *parse_group(const char *s, size_t n, uint16_t *v)
{
    *v = 0;
    if (n == 0)
        return "empty IPv6 group (':::')";
    for (size_t i = 0; i < n; i++) {
        int h = lp_hex_value(s[i]);
        if (h < 0)
            return s[i] == '%' ? "zone ids ('%') are not allowed" : "bad character in IPv6 address";
        if (i == 4)
            return "IPv6 group longer than 4 hex digits";
        *v = (uint16_t)(*v << 4 | (unsigned)h);
    }
    return NULL;
}

struct v6_fields {
    uint16_t group[8];
    int count; /* groups filled, an embedded IPv4 counting as two */
    int gap;   /* where `::` stands (groups before it), or -1 */
};

/* Reads the field at s[0..n) (up to the next ':' or the end) into f. A dotted quad is only
 * allowed as the very last field. */
static const char *v6_field(const char *s, size_t n, bool last, struct v6_fields *f)
{
    uint8_t quad[4];
    const char *why;

    if (find_char(s, n, '.') != NULL) {
        if (!last)
            return "IPv4 part must end an IPv6 address";
        if (f->count > 6)
            return "too many IPv6 groups";
        if ((why = parse_v4(s, n, quad)) != NULL)
            return why;
        f->group[f->count++] = (uint16_t)(quad[0] << 8 | quad[1]);
        f->group[f->count++] = (uint16_t)(quad[2] << 8 | quad[3]);
        return NULL;
    }
    if (f->count == 8)
        return "too many IPv6 groups";
    return parse_group(s, n, &f->group[f->count++]);
}

/* Splits s[0..n) into fields and the one `::`. */
static const char *v6_split(const char *s, size_t n, struct v6_fields *f)
{
    size_t i = 0;
    const char *why;

    f->count = 0;
    f->gap = -1;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        f->gap = 0;
        i = 2;
    } else if (n >= 1 && s[0] == ':') {
        return "IPv6 address starts with a single ':'";
    }
    /* Each pass consumes one field and its separator; at most 9 fields can be read before
     * v6_field refuses, so the loop is bounded by the input length either way. */
    while (i < n) {
        const char *colon = find_char(s + i, n - i, ':');
        size_t end = colon != NULL ? (size_t)(colon - s) : n;

        if ((why = v6_field(s + i, end - i, end == n, f)) != NULL)
            return why;
        if (end == n)
            break;
        if (end + 1 < n && s[end + 1] == ':') {
            if (f->gap >= 0)
                return "more than one '::' in IPv6 address";
            f->gap = f->count;
            i = end + 2;
        } else if (end + 1 == n) {
            return "IPv6 address ends with a single ':'";
        } else {
            i = end + 1;
        }
    }
    return NULL;
}

static const char *parse_v6(const char *s, size_t n, uint8_t out[16])
{
    struct v6_fields f;
    const char *why;
    int at = 0;

    if (n == 0)
        return "empty IPv6 address";
    if ((why = v6_split(s, n, &f)) != NULL)
        return why;
    if (f.gap < 0 && f.count != 8)
        return "too few IPv6 groups";
    if (f.gap >= 0 && f.count > 7)
        return "too many IPv6 groups for '::'";
    memset(out, 0, 16);
    for (int g = 0; g < f.count; g++) {
        if (g == f.gap)
            at += 8 - f.count; /* the zero groups `::` stands for */
        out[2 * at] = (uint8_t)(f.group[g] >> 8);
        out[2 * at + 1] = (uint8_t)(f.group[g] & 0xff);
        at++;
    }
    return NULL;
}

static bool host_bits_clear(const uint8_t *addr, size_t bytes, unsigned prefix)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = prefix >= 8 * (i + 1) ? 8 : (prefix > 8 * i ? prefix - 8 * i : 0);
        uint8_t host = (uint8_t)(0xffu >> keep);

        if (addr[i] & host)
            return false;
    }
    return true;
}

static bool prefix_matches(const uint8_t *net, const uint8_t *addr, unsigned prefix)
{
    size_t whole = prefix / 8;
    unsigned rest = prefix % 8;

    if (memcmp(net, addr, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (net[whole] & mask) == (addr[whole] & mask);
}

/* ---- names ------------------------------------------------------------------------------- */

static bool is_name_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
}

/* Checks one DNS name (no wildcard, trailing dot already removed) and writes it in lower
 * case into out[LP_POLICY_NAME_MAX + 1]. */
static const char *parse_dns_name(const char *s, size_t n, char *out)
{
    size_t label = 0; /* start of the current label */
    size_t last = 0;  /* start of the last label seen whole */

    if (n == 0)
        return "empty host";
    if (n > LP_POLICY_NAME_MAX)
        return "DNS name longer than 253 characters";
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (s[i] == '*')
                return "'*' only as the whole first label (*.example.com)";
            if (!is_name_char(s[i]))
                return "bad character in DNS name";
            out[i] = lower(s[i]);
            continue;
        }
        if (i == label)
            return "empty label in DNS name";
        if (i - label > 63)
            return "DNS label longer than 63 characters";
        if (s[label] == '-' || s[i - 1] == '-')
            return "DNS label starts or ends with '-'";
        if (i < n)
            out[i] = '.';
        last = label;
        label = i + 1;
    }
    out[n] = '\0';
    /* A resolver may read a name whose last label is numeric as an address (`127.1`,
     * `0x7f.1`, `2130706433`), so such a string is never a name. */
    if (is_digit(s[last]))
        return "last label starts with a digit (not a DNS name; an address?)";
    return NULL;
}

/* HOST of a name rule: `name` or `*.name`, one trailing dot allowed. */
static const char *parse_name_rule(const char *s, size_t n, struct lp_policy_rule *r)
{
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n > LP_POLICY_NAME_MAX)
        return "DNS name longer than 253 characters";
    r->kind = LP_POLICY_NAME;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        r->kind = LP_POLICY_SUFFIX;
        s += 2;
        n -= 2;
    }
    return parse_dns_name(s, n, r->name);
}

/* ---- rules ------------------------------------------------------------------------------- */

/* An IPv6 rule inside ::ffff:0:0/96 means an IPv4 rule; stored as one so both spellings of
 * the same address match the same targets. */
static void unmap_rule(struct lp_policy_rule *r)
{
    if (r->prefix < 96 || memcmp(r->addr, mapped_prefix, 12) != 0)
        return;
    r->kind = LP_POLICY_V4;
    r->prefix = (uint8_t)(r->prefix - 96);
    memmove(r->addr, r->addr + 12, 4);
    memset(r->addr + 4, 0, 12);
}

/* `[v6]` or `[v6/len]`, brackets included. */
static const char *parse_v6_host(const char *s, size_t n, struct lp_policy_rule *r)
{
    const char *slash = find_char(s + 1, n - 2, '/');
    size_t addr_len = slash != NULL ? (size_t)(slash - s - 1) : n - 2;
    const char *why;

    r->kind = LP_POLICY_V6;
    r->prefix = 128;
    if ((why = parse_v6(s + 1, addr_len, r->addr)) != NULL)
        return why;
    if (slash != NULL) {
        if ((why = parse_prefix(slash + 1, n - 2 - addr_len - 1, 128, &r->prefix)) != NULL)
            return why;
        if (!host_bits_clear(r->addr, 16, r->prefix))
            return "host bits set in CIDR";
    }
    unmap_rule(r);
    return NULL;
}

/* Only digits and dots: an IPv4 address or nothing, since a name's last label may not start
 * with a digit; the IPv4 parser then gives the useful reason. */
static bool only_digits_and_dots(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]) && s[i] != '.')
            return false;
    }
    return true;
}

/* An unbracketed HOST: `*`, IPv4, IPv4 CIDR or a name. */
static const char *parse_plain_host(const char *s, size_t n, struct lp_policy_rule *r)
{
    const char *slash = find_char(s, n, '/');
    const char *why;

    if (n == 1 && s[0] == '*') {
        r->kind = LP_POLICY_ANY;
        return NULL;
    }
    if (slash == NULL && !only_digits_and_dots(s, n))
        return parse_name_rule(s, n, r);
    r->kind = LP_POLICY_V4;
    r->prefix = 32;
    if ((why = parse_v4(s, slash != NULL ? (size_t)(slash - s) : n, r->addr)) != NULL)
        return why;
    if (slash == NULL)
        return NULL;
    if ((why = parse_prefix(slash + 1, n - (size_t)(slash - s) - 1, 32, &r->prefix)) != NULL)
        return why;
    if (!host_bits_clear(r->addr, 4, r->prefix))
        return "host bits set in CIDR";
    return NULL;
}

/* Finds the ':' between HOST and PORTS and the end of HOST. */
static const char *split_rule(const char *s, size_t n, size_t *host_len)
{
    const char *colon;

    if (s[0] == '[') {
        const char *close = find_char(s, n, ']');
        if (close == NULL)
            return "missing ']' after IPv6 address";
        *host_len = (size_t)(close - s) + 1;
        if (*host_len == n)
            return "missing port (HOST:PORT)";
        if (s[*host_len] != ':')
            return "expected ':' after ']'";
        return NULL;
    }
    if ((colon = find_char(s, n, ':')) == NULL)
        return "missing port (HOST:PORT)";
    if (find_char(colon + 1, n - (size_t)(colon - s) - 1, ':') != NULL)
        return "IPv6 address must be in brackets ([::1]:80)";
    *host_len = (size_t)(colon - s);
    return NULL;
}

/* ---- unix socket paths ------------------------------------------------------------------ */

static bool is_unix_text(const char *s, size_t n)
{
    return n >= 6 && memcmp(s, "unix:/", 6) == 0;
}

/* An absolute path in one spelling only: what the server connects to is byte for byte what a
 * rule names, and no `..` climbs out of a directory rule. */
static const char *check_unix_path(const char *s, size_t n)
{
    size_t comp = 1; /* start of the current component */

    if (n == 0 || s[0] != '/')
        return "unix socket path must be absolute (unix:/PATH)";
    if (n > LP_POLICY_UNIX_PATH_MAX)
        return "unix socket path longer than 107 bytes";
    if (s[n - 1] == '/')
        return "unix socket path ends with '/'";
    for (size_t i = 1; i <= n; i++) {
        if (i < n && s[i] != '/') {
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                return "control byte in unix socket path";
            if (s[i] == '*')
                return "'*' in unix socket path (only as unix:/DIR/*)";
            continue;
        }
        if (i == comp)
            return "empty component ('//') in unix socket path";
        if (s[comp] == '.' && (i - comp == 1 || (i - comp == 2 && s[comp + 1] == '.')))
            return "'.' or '..' component in unix socket path";
        comp = i + 1;
    }
    return NULL;
}

/* PATH after `unix:`: `/run/x.sock`, or a directory and a last component `*` for every
 * socket directly in that directory. */
static const char *parse_unix_rule(const char *s, size_t n, struct lp_policy_rule *r)
{
    const char *why;

    r->kind = LP_POLICY_UNIX;
    if (n >= 2 && s[n - 2] == '/' && s[n - 1] == '*') {
        r->kind = LP_POLICY_UNIX_DIR;
        n -= 1; /* keep the '/': the directory is matched with it */
        if (n > 1 && (why = check_unix_path(s, n - 1)) != NULL)
            return why;
    } else if ((why = check_unix_path(s, n)) != NULL) {
        return why;
    }
    memcpy(r->name, s, n);
    r->name[n] = '\0';
    return NULL;
}

static const char *parse_rule_text(const char *s, size_t n, struct lp_policy_rule *r)
{
    size_t host_len = 0;
    const char *why;

    if (n == 0)
        return "empty rule";
    if (n > LP_POLICY_TEXT_MAX)
        return "rule longer than 300 characters";
    if (find_char(s, n, '\0') != NULL)
        return "NUL in rule";
    if (is_unix_text(s, n))
        return parse_unix_rule(s + 5, n - 5, r);
    if ((why = split_rule(s, n, &host_len)) != NULL)
        return why;
    if (s[0] == '[')
        why = parse_v6_host(s, host_len, r);
    else if (host_len == 0)
        why = "empty host";
    else
        why = parse_plain_host(s, host_len, r);
    if (why != NULL)
        return why;
    return parse_ports(s + host_len + 1, n - host_len - 1, &r->port_lo, &r->port_hi);
}

lp_err lp_policy_parse_rule(const char *text, size_t len, struct lp_policy_rule *out,
                            const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = parse_rule_text(text, len, out);
    return *why == NULL ? LP_OK : LP_ERR_MALFORMED;
}

static bool is_mcp_char(char c)
{
    return is_name_char(c) || c == '.';
}

/* MCP server names: a conservative character set so a name is safe in a log line, a config
 * key and a file name alike. */
static const char *check_mcp_name(const char *s, size_t n)
{
    if (n == 0)
        return "empty MCP server name";
    if (n > LP_POLICY_MCP_NAME_MAX)
        return "MCP server name longer than 64 characters";
    for (size_t i = 0; i < n; i++) {
        if (!is_mcp_char(s[i]))
            return "bad character in MCP server name (allowed: A-Z a-z 0-9 _ . -)";
    }
    return NULL;
}

lp_err lp_policy_parse_name(const char *text, size_t len, struct lp_policy_rule *out,
                            const char **why)
{
    memset(out, 0, sizeof(*out));
    *why = NULL;
    if (len == 1 && text[0] == '*') {
        out->kind = LP_POLICY_MCP_ANY;
        return LP_OK;
    }
    if ((*why = check_mcp_name(text, len)) != NULL)
        return LP_ERR_MALFORMED;
    out->kind = LP_POLICY_MCP;
    memcpy(out->name, text, len);
    out->name[len] = '\0';
    return LP_OK;
}

/* ---- the policy -------------------------------------------------------------------------- */

void lp_policy_init(struct lp_policy *p)
{
    p->rules = NULL;
    p->count = 0;
    p->room = 0;
}

void lp_policy_clear(struct lp_policy *p)
{
    free(p->rules);
    lp_policy_init(p);
}

/* Appends a parsed rule, growing the array by doubling up to the cap. */
static lp_err append(struct lp_policy *p, const struct lp_policy_rule *r, const char **why)
{
    if (p->count >= LP_POLICY_MAX_RULES) {
        *why = "more than 1024 rules";
        return LP_ERR_TOO_BIG;
    }
    if (p->count == p->room) {
        size_t room = p->room == 0 ? 8 : LP_MIN(p->room * 2, (size_t)LP_POLICY_MAX_RULES);
        struct lp_policy_rule *grown = realloc(p->rules, room * sizeof(*grown));

        if (grown == NULL) {
            *why = "out of memory";
            return LP_ERR_NOMEM;
        }
        p->rules = grown;
        p->room = room;
    }
    p->rules[p->count++] = *r;
    return LP_OK;
}

lp_err lp_policy_add(struct lp_policy *p, const char *text, size_t len, const char **why)
{
    struct lp_policy_rule r;
    lp_err rc;

    if ((rc = lp_policy_parse_rule(text, len, &r, why)) != LP_OK)
        return rc;
    return append(p, &r, why);
}

lp_err lp_policy_add_name(struct lp_policy *p, const char *text, size_t len, const char **why)
{
    struct lp_policy_rule r;
    lp_err rc;

    if ((rc = lp_policy_parse_name(text, len, &r, why)) != LP_OK)
        return rc;
    return append(p, &r, why);
}

/* ---- matching ---------------------------------------------------------------------------- */

/* What the client asked for, read with the same strict parsers as the rules. */
static void classify(const char *host, struct target *t)
{
    /* One byte past the longest name plus its trailing dot is enough to know it is too long,
     * and keeps the scan bounded whatever the caller passed. */
    size_t n = strnlen(host, LP_POLICY_NAME_MAX + 2);

    memset(t, 0, sizeof(*t));
    t->kind = T_BAD;
    if (is_unix_text(host, n)) {
        n = strnlen(host + 5, LP_POLICY_UNIX_PATH_MAX + 1);
        if (check_unix_path(host + 5, n) != NULL)
            return;
        t->kind = T_UNIX;
        memcpy(t->name, host + 5, n);
        t->name_len = n;
        return;
    }
    if (n == 0 || n > LP_POLICY_NAME_MAX + 1)
        return;
    if (find_char(host, n, ':') != NULL) {
        if (parse_v6(host, n, t->addr) != NULL)
            return;
        t->kind = T_V6;
        if (memcmp(t->addr, mapped_prefix, 12) == 0) {
            t->kind = T_V4;
            memmove(t->addr, t->addr + 12, 4);
            memset(t->addr + 4, 0, 12);
        }
        return;
    }
    if (parse_v4(host, n, t->addr) == NULL) {
        t->kind = T_V4;
        return;
    }
    if (host[n - 1] == '.')
        n--;
    if (parse_dns_name(host, n, t->name) != NULL)
        return;
    t->kind = T_NAME;
    t->name_len = n;
}

static bool host_matches(const struct lp_policy_rule *r, const struct target *t)
{
    size_t n;

    switch (r->kind) {
    case LP_POLICY_ANY:
        return true; /* t is valid: checked by the caller */
    case LP_POLICY_V4:
        return t->kind == T_V4 && prefix_matches(r->addr, t->addr, r->prefix);
    case LP_POLICY_V6:
        return t->kind == T_V6 && prefix_matches(r->addr, t->addr, r->prefix);
    case LP_POLICY_NAME:
        return t->kind == T_NAME && strcmp(r->name, t->name) == 0;
    case LP_POLICY_SUFFIX:
        /* Strictly below: at least one label and a dot before the suffix. */
        n = strlen(r->name);
        return t->kind == T_NAME && t->name_len > n + 1 && t->name[t->name_len - n - 1] == '.' &&
               memcmp(t->name + t->name_len - n, r->name, n) == 0;
    case LP_POLICY_MCP:
    case LP_POLICY_MCP_ANY:
    case LP_POLICY_UNIX:
    case LP_POLICY_UNIX_DIR:
        return false;
    }
    return false;
}

/* A unix target meets unix rules only: `*` is for the network, never for sockets. */
static bool unix_matches(const struct lp_policy_rule *r, const struct target *t)
{
    size_t n = strlen(r->name);

    if (r->kind == LP_POLICY_UNIX)
        return strcmp(r->name, t->name) == 0;
    /* Directly in the directory: a name after its '/' and no further '/'. */
    return r->kind == LP_POLICY_UNIX_DIR && t->name_len > n && memcmp(t->name, r->name, n) == 0 &&
           find_char(t->name + n, t->name_len - n, '/') == NULL;
}

bool lp_policy_allows(const struct lp_policy *p, const char *host, uint16_t port)
{
    struct target t;

    if (host == NULL)
        return false;
    classify(host, &t);
    if (t.kind == T_BAD || (port == 0 && t.kind != T_UNIX))
        return false;
    for (size_t i = 0; i < p->count; i++) {
        const struct lp_policy_rule *r = &p->rules[i];

        if (t.kind == T_UNIX ? unix_matches(r, &t)
                             : port >= r->port_lo && port <= r->port_hi && host_matches(r, &t))
            return true;
    }
    return false;
}

bool lp_policy_allows_host(const struct lp_policy *p, const char *host)
{
    struct target t;

    if (host == NULL)
        return false;
    classify(host, &t);
    if (t.kind == T_BAD || t.kind == T_UNIX)
        return false;
    for (size_t i = 0; i < p->count; i++)
        if (host_matches(&p->rules[i], &t)) /* false for name and unix rules */
            return true;
    return false;
}

bool lp_policy_allows_name(const struct lp_policy *p, const char *name)
{
    size_t n;

    if (name == NULL)
        return false;
    n = strnlen(name, LP_POLICY_MCP_NAME_MAX + 1);
    if (check_mcp_name(name, n) != NULL)
        return false;
    for (size_t i = 0; i < p->count; i++) {
        const struct lp_policy_rule *r = &p->rules[i];

        if (r->kind == LP_POLICY_MCP_ANY ||
            (r->kind == LP_POLICY_MCP && strcmp(r->name, name) == 0))
            return true;
    }
    return false;
}

static bool v4_internal(const uint8_t *a)
{
    return a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254) || (a[0] & 0xf0) == 224;
}

bool lp_policy_addr_is_internal(const uint8_t *addr, size_t len)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t zero[15] = {0};

    if (len == 4)
        return v4_internal(addr);
    if (len != 16)
        return false;
    if (memcmp(addr, mapped, sizeof(mapped)) == 0)
        return v4_internal(addr + 12);
    if (memcmp(addr, zero, sizeof(zero)) == 0 && (addr[15] == 0 || addr[15] == 1))
        return true; /* :: and ::1 */
    return (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) || addr[0] == 0xff;
}
