/* socks.h — the server side of a SOCKS handshake, as limpet's -D listener speaks it.
 *
 * Sans-I/O. Feed the bytes a local client sent; the parser says what it still needs, what to
 * write back, and finally which target the client asked for. Supported: SOCKS5 (RFC 1928)
 * with the "no authentication" method and the CONNECT command, for IPv4, IPv6 and domain-name
 * addresses; SOCKS4 and SOCKS4a CONNECT (user id ignored). Everything else is refused with
 * the reply the protocol defines for it (method not acceptable, command not supported,
 * address type not supported, request rejected), so the client hears why.
 *
 * Flow: lp_socks_feed() until it returns LP_SOCKS_REQUEST (the target is known; write the
 * pending output, which may hold the method reply) or LP_SOCKS_FAIL (write the pending output,
 * the refusal, then close). After the tunnel answered, lp_socks_reply() gives the final reply
 * for OPEN_OK or for an RST code. Bytes after the request (the application's first data) are
 * not consumed: *used says where they start.
 */
#ifndef LIMPET_SOCKS_H
#define LIMPET_SOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_SOCKS_OUT_MAX 32u    /* the longest reply limpet writes */
#define LP_SOCKS_HOST_MAX 256u  /* a domain name is at most 255 bytes, plus NUL */
#define LP_SOCKS_INPUT_MAX 600u /* a request longer than this is refused */

enum lp_socks_state {
    LP_SOCKS_NEED_MORE, /* feed more bytes (after writing any pending output) */
    LP_SOCKS_REQUEST,   /* target known: open the stream; reply later with lp_socks_reply */
    LP_SOCKS_FAIL,      /* refused: write the pending output (if any) and close */
};

enum lp_socks_version { LP_SOCKS_V4 = 4, LP_SOCKS_V5 = 5 };

struct lp_socks {
    uint8_t buf[LP_SOCKS_INPUT_MAX]; /* input held until a message is whole */
    size_t len;
    int phase;                     /* internal */
    enum lp_socks_version version; /* once known */
    uint8_t out[LP_SOCKS_OUT_MAX]; /* bytes to write to the client now */
    size_t out_len;
    char host[LP_SOCKS_HOST_MAX]; /* REQUEST: the target host (IPv6 without brackets) */
    uint16_t port;                /* REQUEST: the target port */
    const char *why;              /* FAIL: a reason for the log (static string) */
};

void lp_socks_init(struct lp_socks *s);

/* Consumes bytes of data[0..n) (*used says how many; the rest belongs to the stream) and
 * returns the new state. out/out_len hold what must be written to the client now (the caller
 * writes it and sets out_len to 0). Never reads past n; a truncated message is NEED_MORE. */
enum lp_socks_state lp_socks_feed(struct lp_socks *s, const uint8_t *data, size_t n, size_t *used);

/* The final reply to a REQUEST into s->out: success when code is 0, else the SOCKS error for
 * an lp_rst_code (NOT_ALLOWED -> "connection not allowed by ruleset", UNREACHABLE -> "host
 * unreachable", REFUSED -> "connection refused", TIMEOUT -> "TTL expired" (v5) ... anything
 * else -> "general failure"). SOCKS4 uses 90 granted / 91 rejected. */
void lp_socks_reply(struct lp_socks *s, uint16_t rst_code);

/* "HOST:PORT" (IPv6 in brackets) of the REQUEST into buf. Returns buf. */
const char *lp_socks_target(const struct lp_socks *s, char *buf, size_t len);

#endif
