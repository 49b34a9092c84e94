/* link.h — one connected socket that carries a session's frames: plain TCP (--insecure), or
 * TLS over it. The session, the server's handshake reader and the client's dialer all move
 * bytes through these calls, so none of them cares which it is.
 *
 * Short counts differ: a plain write that takes less than offered means the socket is full;
 * a TLS write takes at most one record (16 KiB), so callers loop until LP_ERR_TRUNCATED.
 */
#ifndef LIMPET_LINK_H
#define LIMPET_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "limpet/err.h"
#include "limpet/tls.h"

struct lp_link {
    int fd;        /* owned; -1 when closed */
    lp_tls *tls;   /* owned; NULL for plain TCP */
    char err[160]; /* the last failure, for the log (never a secret) */
};

void lp_link_init(struct lp_link *l);
/* Takes fd (and tls, which may be NULL). */
void lp_link_set(struct lp_link *l, int fd, lp_tls *tls);
/* Moves the link from `from` (left closed) into `to`. */
void lp_link_move(struct lp_link *to, struct lp_link *from);
bool lp_link_open(const struct lp_link *l);

/* > 0 bytes read; 0 at EOF; -1 with *rc: LP_ERR_TRUNCATED (would block) or another error
 * (l->err says what). */
ssize_t lp_link_read(struct lp_link *l, void *buf, size_t len, lp_err *rc);
/* > 0 bytes taken; -1 with *rc as for lp_link_read. */
ssize_t lp_link_write(struct lp_link *l, const void *buf, size_t len, lp_err *rc);
/* Sends what an earlier write left sealed inside TLS: LP_OK when nothing is left. */
LP_MUST_USE lp_err lp_link_flush(struct lp_link *l);
/* Decrypted bytes wait inside TLS: read again without waiting for the socket. */
bool lp_link_pending(const struct lp_link *l);
/* Something taken is not on the wire yet: wait for writability and flush. */
bool lp_link_wants_write(const struct lp_link *l);
/* "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256, records by openssl", or "plain TCP", for
 * the log lines that say a link is up. */
void lp_link_describe(const struct lp_link *l, char *out, size_t len);
/* Frees TLS (with close_notify when the link did not break) and closes the socket. Safe on a
 * closed link. */
void lp_link_close(struct lp_link *l);

#endif
