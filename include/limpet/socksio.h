/* socksio.h — a -D listener's connection: SOCKS handshake, then a stream to the target. */
#ifndef LIMPET_SOCKSIO_H
#define LIMPET_SOCKSIO_H

#include <ev.h>

#include "limpet/session.h"

/* Takes fd (an accepted local connection). Reads its SOCKS request (at most 10 s), opens a
 * TCP stream on session(user) — asked at that moment, since the client may have replaced
 * its session — and answers the SOCKS client when the tunnel answers. Errors are logged. */
void lp_socks_accept(struct ev_loop *loop, const struct lp_config *cfg, int fd, const char *from,
                     struct lp_session *(*session)(void *user), void *user);

#endif
