/* policy.h — per-identity allow-lists: which forward targets an identity may reach
 * (allow.forward), where it may have the server listen (allow.reverse, the same rule syntax)
 * and which MCP server names it may use (name rules). Sans-I/O and allocation-bounded.
 *
 * The default is to allow nothing: an empty policy refuses every target and every name, so the
 * server is never an open proxy by omission.
 *
 * A target rule is `HOST:PORTS`:
 *   HOST   `*`                  any target that is a valid address or DNS name
 *          `10.1.2.3`           one IPv4 address (strict dotted quad, see below)
 *          `10.1.0.0/16`        an IPv4 network; host bits must be zero (`10.1.0.1/16` is refused)
 *          `[::1]` `[fd00::/8]` an IPv6 address or network, always in brackets
 *          `db.internal`        one DNS name, case-insensitive; one trailing dot is ignored
 *          `*.example.com`      any name strictly below example.com (a.example.com, a.b.example.com)
 *                               but NOT example.com itself: list that separately if wanted
 *   PORTS  `22`, `8000-8100` (1 <= LO <= HI <= 65535, inclusive) or `*` (1-65535)
 *
 * Strict numeric syntax, because the text is also what the server later hands to the resolver
 * and a lenient parser there reads `010.0.0.1` as octal and `127.1` as 127.0.0.1:
 * - an IPv4 address is exactly four decimal parts 0-255 with no leading zeros (`010.0.0.1`
 *   is refused);
 * - IPv6 is RFC 4291 text: 1-4 hex digits a group, at most one `::`, an optional dotted quad
 *   as the last 32 bits; no zone ids (`%eth0`);
 * - a DNS name is labels of 1-63 characters from [A-Za-z0-9_-], not starting or ending with
 *   `-`, at most 253 characters, and its last label must not start with a digit. That last
 *   rule keeps every string a resolver might take for a number (`127.1`, `0x7f.1`,
 *   `2130706433`) out of the name space.
 * A port and a CIDR length are plain decimal without leading zeros.
 *
 * Matching a target (the host as the client asked for it, without brackets, and a port):
 * - a numeric target matches only address/CIDR rules and `*`; a name target matches only name
 *   rules and `*`. The server resolves names after this check, so a name rule does NOT
 *   constrain what the name resolves to, and a CIDR rule never matches a name, even one that
 *   resolves inside the CIDR. This is the conservative reading: allowing `db.internal` trusts
 *   the server's resolver for that name, and nothing else.
 * - an IPv4-mapped IPv6 target (`::ffff:10.1.2.3`) is the IPv4 address it carries: it matches
 *   IPv4 rules. Likewise an IPv6 rule inside ::ffff:0:0/96 (prefix >= 96) is stored as the
 *   IPv4 rule it means. IPv6 rules with a shorter prefix (`[::/0]`) never match mapped
 *   targets. Other IPv4-embedding forms (::a.b.c.d, 64:ff9b::/96, 2002::/16) stay IPv6.
 * - a target that is neither a strict address nor a valid name (`127.1`, `fe80::1%eth0`,
 *   an empty string, anything too long) matches nothing, not even `*`.
 *
 * Unix socket targets (an OPEN target "unix:/PATH") have rules of their own, with no PORTS:
 *   `unix:/run/app.sock`   exactly that socket
 *   `unix:/run/app/\*`     any socket directly in /run/app (not in its subdirectories);
 *                          written without the backslash, which only keeps this comment open
 * A path is absolute, at most 107 bytes, with no empty, `.` or `..` component, no trailing '/'
 * and no control byte; `*` only as the last component of a directory rule. A target path is
 * read with the same rules (so `/run/app/../x` matches nothing) and compared byte for byte.
 * `*` (any host) never matches a unix socket: each socket a client may reach is listed, since
 * one of them may be a daemon's control socket. Unix rules never match host targets.
 *
 * MCP server names are a separate kind of rule in the same type (lp_policy_add_name): a name of
 * 1-64 characters from [A-Za-z0-9_.-], compared exactly (case-sensitive, like the config keys
 * under mcp.servers), or `*` for every valid name. Name rules never match targets and target
 * rules never match names, so keep one lp_policy per list (forward, reverse, mcp).
 */
#ifndef LIMPET_POLICY_H
#define LIMPET_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_POLICY_MAX_RULES 1024u /* per policy; lp_policy_add refuses more */
#define LP_POLICY_NAME_MAX 253u   /* longest DNS name, without a trailing dot */
#define LP_POLICY_MCP_NAME_MAX 64u
#define LP_POLICY_UNIX_PATH_MAX 107u /* longest unix socket path (sun_path without its NUL) */
#define LP_POLICY_TEXT_MAX \
    300u /* longest rule text accepted, and enough for lp_policy_format_rule */

enum lp_policy_kind {
    LP_POLICY_ANY,      /* `*`: any valid target */
    LP_POLICY_V4,       /* addr[0..3] / prefix 0..32, host bits zero */
    LP_POLICY_V6,       /* addr / prefix 0..128, host bits zero; never ::ffff:0:0/96 or inside */
    LP_POLICY_NAME,     /* exactly `name` */
    LP_POLICY_SUFFIX,   /* any name ending in "." + `name` (written `*.name`) */
    LP_POLICY_MCP,      /* the MCP server called `name` */
    LP_POLICY_MCP_ANY,  /* every valid MCP server name */
    LP_POLICY_UNIX,     /* the unix socket at exactly `name` (an absolute path) */
    LP_POLICY_UNIX_DIR, /* any unix socket directly in the directory `name` (ends in '/') */
};

struct lp_policy_rule {
    enum lp_policy_kind kind;
    uint8_t prefix;   /* V4/V6: network length in bits */
    uint8_t addr[16]; /* V4: the first 4 bytes; V6: all 16; network byte order */
    uint16_t port_lo; /* host target kinds: 1 <= port_lo <= port_hi; MCP and UNIX kinds: 0 */
    uint16_t port_hi;
    char name[LP_POLICY_NAME_MAX + 1]; /* NAME/SUFFIX: lower case; MCP: as written; UNIX: the
                                          path; UNIX_DIR: the directory with a '/'; NUL-ended */
};

struct lp_policy {
    struct lp_policy_rule *rules; /* owned; `count` in use, room for `room` */
    size_t count;                 /* <= LP_POLICY_MAX_RULES */
    size_t room;
};

/* Parses one target rule from text[0..len) (borrowed; need not be NUL-terminated, and a NUL
 * inside is refused). On LP_OK fills *out. On LP_ERR_MALFORMED *why is a static reason
 * ("host bits set in CIDR", "missing port", ...) and *out is unspecified. */
LP_MUST_USE lp_err lp_policy_parse_rule(const char *text, size_t len, struct lp_policy_rule *out,
                                        const char **why);
/* The same for an MCP server name rule (`memory`, or `*`). */
LP_MUST_USE lp_err lp_policy_parse_name(const char *text, size_t len, struct lp_policy_rule *out,
                                        const char **why);

/* Writes r in its canonical text (lower case, RFC 5952 IPv6, `*` for ports 1-65535) into
 * out[cap] with a NUL; parsing it gives back the same rule. Returns the length without the
 * NUL, or 0 when it does not fit (LP_POLICY_TEXT_MAX + 1 always fits). */
size_t lp_policy_format_rule(const struct lp_policy_rule *r, char *out, size_t cap);

/* An empty policy: allows nothing. Never allocates. */
void lp_policy_init(struct lp_policy *p);
/* Frees the rules; p is empty (and usable) again. */
void lp_policy_clear(struct lp_policy *p);

/* Parses text[0..len) (borrowed) as a target rule (lp_policy_parse_rule) and appends it.
 * LP_ERR_MALFORMED with *why; LP_ERR_TOO_BIG when the policy already holds
 * LP_POLICY_MAX_RULES rules; LP_ERR_NOMEM. On any error the policy is unchanged. */
LP_MUST_USE lp_err lp_policy_add(struct lp_policy *p, const char *text, size_t len,
                                 const char **why);
/* The same for an MCP server name rule (lp_policy_parse_name). */
LP_MUST_USE lp_err lp_policy_add_name(struct lp_policy *p, const char *text, size_t len,
                                      const char **why);

/* True when some target rule allows host (borrowed, NUL-terminated: a name, or a numeric IPv4
 * or IPv6 address without brackets) on port. See the matching rules at the top. A host
 * "unix:/PATH" is a unix socket target: only unix rules match it and port is ignored. */
bool lp_policy_allows(const struct lp_policy *p, const char *host, uint16_t port);
/* True when some target rule allows host on some port: whether an identity may listen on host
 * at all, before the kernel picks a port (-R with port 0). Never true for a unix path. */
bool lp_policy_allows_host(const struct lp_policy *p, const char *host);
/* True when some MCP rule allows the server called name (borrowed, NUL-terminated). */
bool lp_policy_allows_name(const struct lp_policy *p, const char *name);

/* True for addresses a name should not lead to unless an address rule names them: loopback
 * (127/8, ::1), unspecified (0/8, ::), link-local (169.254/16, fe80::/10), multicast
 * (224/4, ff00::/8), and the same in IPv4-mapped IPv6. A DNS answer the client controls
 * must not turn an allowed name into this machine's own services. addr is 4 or 16 bytes. */
bool lp_policy_addr_is_internal(const uint8_t *addr, size_t len);

#endif
