/* cidr.h (base layer) — address ranges ("10.0.0.0/8", "::1", "2001:db8::/32") and the node id
 * a server takes from its host name.
 *
 * Used for proxy_protocol.trusted: the balancers allowed to tell the server, in a PROXY v2
 * header, who a client really is. Addresses are raw bytes (4 for IPv4, 16 for IPv6); an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer)
 * matches the IPv4 ranges, so a listener on [::] trusts the same balancers as one on 0.0.0.0.
 */
#ifndef LIMPET_CIDR_H
#define LIMPET_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_CIDR_LIST_MAX 64u /* entries in one list at most */

struct lp_cidr {
    uint8_t family;   /* 4 or 6 */
    uint8_t bits;     /* prefix length: 0..32 or 0..128 */
    uint8_t addr[16]; /* network address, host bits zero; 4 bytes used for IPv4 */
};

struct lp_cidr_list {
    struct lp_cidr v[LP_CIDR_LIST_MAX];
    size_t n;
};

/* Parses one entry: an address ("192.0.2.7", "::1", "[::1]") or a range ("192.0.2.0/24",
 * "2001:db8::/32"). Host bits below the prefix are cleared. LP_ERR_INVALID if it is neither. */
LP_MUST_USE lp_err lp_cidr_parse(const char *s, size_t n, struct lp_cidr *c);

/* Parses entries separated by commas and/or spaces into l (emptied first). An empty string is
 * an empty list. LP_ERR_INVALID with why (NUL-terminated, quoting the entry) on the first bad
 * entry or past LP_CIDR_LIST_MAX entries. */
LP_MUST_USE lp_err lp_cidr_list_parse(const char *s, struct lp_cidr_list *l, char *why,
                                      size_t whylen);

/* True if addr (4 bytes for family 4, 16 for family 6) lies in c. */
bool lp_cidr_match(const struct lp_cidr *c, int family, const uint8_t *addr);
/* True if addr lies in any entry of l. */
bool lp_cidr_list_match(const struct lp_cidr_list *l, int family, const uint8_t *addr);

#define LP_NODE_ID_BUF 64u /* a node id (1..63 of [a-z0-9-]) and its NUL */

/* The default node.id from a host name: lowercased, every byte outside [a-z0-9-] turned to
 * '-', cut to 63 bytes; "node" if the host name is empty. out is NUL-terminated. */
void lp_node_id_from_host(const char *host, char out[LP_NODE_ID_BUF]);

#endif
