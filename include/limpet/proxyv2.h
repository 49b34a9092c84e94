/* proxyv2.h — the PROXY protocol version 2 header a balancer (HAProxy `send-proxy-v2`) puts in
 * front of a connection to tell the server who the client really is. Sans-I/O: bytes in, the
 * addresses and the header's length out. Spec: HAProxy's doc/proxy-protocol.txt, section 2.2.
 *
 * Layout (all integers big-endian):
 *   sig[12]  0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A
 *   ver_cmd  high nibble 2 (the version), low nibble 0 LOCAL or 1 PROXY
 *   fam      high nibble 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX; low nibble 0 UNSPEC, 1 STREAM,
 *            2 DGRAM
 *   len u16  bytes that follow: the address block, then TLVs
 *   INET:  src[4] dst[4] sport u16 dport u16 (12)    INET6: src[16] dst[16] sport dport (36)
 *   UNIX:  src[108] dst[108] (216)
 *   TLVs:  type u8, length u16, value[length], until the end of len
 *
 * What limpet accepts: version 2; LOCAL (a balancer's own health check: the connection's own
 * addresses stand) or PROXY; for PROXY, INET or INET6 over STREAM (a tunnel client is a TCP
 * client), or UNSPEC (addresses unknown: the connection's own stand, as the spec asks). TLVs
 * must tile the rest exactly; a CRC32C TLV (type 0x03), when present, must match. Anything
 * else is refused with a reason. The whole header is at most LP_PROXY_MAX bytes.
 */
#ifndef LIMPET_PROXYV2_H
#define LIMPET_PROXYV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_PROXY_SIG_LEN 12u
#define LP_PROXY_FIXED_LEN 16u /* signature, ver_cmd, fam, len */
#define LP_PROXY_MAX 1024u     /* HAProxy sends ~16 + 36 + a few TLVs; more is refused */

enum lp_proxy_family { LP_PROXY_NONE = 0, LP_PROXY_INET = 1, LP_PROXY_INET6 = 2 };

struct lp_proxy_hdr {
    bool local;                  /* LOCAL command: use the connection's own addresses */
    enum lp_proxy_family family; /* NONE with LOCAL or UNSPEC */
    uint8_t src[16], dst[16];    /* 4 bytes used for INET */
    uint16_t sport, dport;
    size_t len; /* bytes of the whole header: the stream's own bytes start after them */
};

/* Parses the header at the start of in[0..n). LP_OK: *h filled, h->len bytes consumed.
 * LP_ERR_TRUNCATED: every byte so far fits a header, read more (at most LP_PROXY_MAX in all).
 * LP_ERR_MALFORMED: not a valid header, *why says what (static). Never reads past in[n). */
LP_MUST_USE lp_err lp_proxy_parse(const uint8_t *in, size_t n, struct lp_proxy_hdr *h,
                                  const char **why);

/* True when in[0..n) begins like a PROXY header of either version (v2's signature, or v1's
 * "PROXY "), as far as n goes: a server without a PROXY listener refuses such a connection
 * with a clear line rather than a handshake error. */
bool lp_proxy_looks_like(const uint8_t *in, size_t n);

/* CRC32C (Castagnoli) of in[0..n), continuing from crc (start with 0). */
uint32_t lp_crc32c(uint32_t crc, const uint8_t *in, size_t n);

#endif
