/* cidr.c — address ranges for proxy_protocol.trusted, and the default node id. */
#include "limpet/cidr.h"
#include "limpet/base.h"
#include "limpet/text.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_MAX 64u /* "[ffff:...:255.255.255.255]/128" fits with room to spare */

/* Clears the bits below the prefix, so that matching compares whole bytes and one mask. */
static void mask_host_bits(struct lp_cidr *c)
{
    size_t len = c->family == 4 ? 4u : 16u;
    for (size_t i = 0; i < len; i++) {
        size_t first_bit = i * 8u;
        if (first_bit >= c->bits)
            c->addr[i] = 0;
        else if (c->bits - first_bit < 8u)
            c->addr[i] &= (uint8_t)(0xFFu << (8u - (c->bits - first_bit)));
    }
}

/* A prefix length: 1..3 decimal digits, no sign, at most max. */
static bool parse_bits(const char *s, unsigned max, uint8_t *out)
{
    unsigned v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 3)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10u + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = (uint8_t)v;
    return true;
}

lp_err lp_cidr_parse(const char *s, size_t n, struct lp_cidr *c)
{
    char buf[ENTRY_MAX];
    char *slash, *addr = buf;

    if (s == NULL || n == 0 || n >= sizeof(buf) || memchr(s, '\0', n) != NULL)
        return LP_ERR_INVALID;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(c, 0, sizeof(*c));
    if ((slash = strchr(buf, '/')) != NULL)
        *slash++ = '\0';
    if (addr[0] == '[') { /* "[::1]" and "[2001:db8::]/32", as addresses are written in URLs */
        size_t al = strlen(addr);
        if (al < 3 || addr[al - 1] != ']')
            return LP_ERR_INVALID;
        addr[al - 1] = '\0';
        addr++;
        if (strchr(addr, ':') == NULL)
            return LP_ERR_INVALID;
    }
    if (inet_pton(AF_INET, addr, c->addr) == 1) {
        c->family = 4;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
        c->family = 6;
        c->bits = 128;
    } else {
        return LP_ERR_INVALID;
    }
    if (slash != NULL && !parse_bits(slash, c->bits, &c->bits))
        return LP_ERR_INVALID;
    mask_host_bits(c);
    return LP_OK;
}

lp_err lp_cidr_list_parse(const char *s, struct lp_cidr_list *l, char *why, size_t whylen)
{
    static const char seps[] = ", \t";

    l->n = 0;
    for (size_t i = 0; s[i] != '\0';) {
        size_t len = strcspn(s + i, seps);
        if (len == 0) {
            i++;
            continue;
        }
        if (l->n == LP_CIDR_LIST_MAX) {
            snprintf(why, whylen, "more than %u entries", (unsigned)LP_CIDR_LIST_MAX);
            return LP_ERR_INVALID;
        }
        if (lp_cidr_parse(s + i, len, &l->v[l->n]) != LP_OK) {
            char shown[4 * ENTRY_MAX]; /* a YAML scalar can hold line breaks: one line */
            lp_text_safe(shown, sizeof(shown), s + i, LP_MIN(len, (size_t)ENTRY_MAX), false);
            snprintf(why, whylen, "\"%s\" is not an address or ADDRESS/BITS range", shown);
            return LP_ERR_INVALID;
        }
        l->n++;
        i += len;
    }
    return LP_OK;
}

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

bool lp_cidr_match(const struct lp_cidr *c, int family, const uint8_t *addr)
{
    if (family == 6 && c->family == 4 && memcmp(addr, v4_mapped, sizeof(v4_mapped)) == 0) {
        family = 4;
        addr += sizeof(v4_mapped);
    }
    if (family != c->family)
        return false;
    size_t whole = c->bits / 8u, rest = c->bits % 8u;
    if (memcmp(addr, c->addr, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8u - rest));
    return (addr[whole] & mask) == c->addr[whole];
}

bool lp_cidr_list_match(const struct lp_cidr_list *l, int family, const uint8_t *addr)
{
    for (size_t i = 0; i < l->n; i++)
        if (lp_cidr_match(&l->v[i], family, addr))
            return true;
    return false;
}

void lp_node_id_from_host(const char *host, char out[LP_NODE_ID_BUF])
{
    size_t n = 0;

    for (; host != NULL && host[n] != '\0' && n < LP_NODE_ID_BUF - 1; n++) {
        char ch = host[n];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            ch = '-';
        out[n] = ch;
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, LP_NODE_ID_BUF, "%s", "node");
}
