/* proxy_listen.h — the server's second tunnel listener, for a balancer (proxy_protocol.listen).
 *
 * HAProxy in front of several servers hides every client behind its own address. With
 * `send-proxy-v2` it opens each connection with a PROXY v2 header naming the client. This
 * listener takes connections only from proxy_protocol.trusted, reads that header (and not one
 * byte more: the TLS handshake follows it) within limits.handshake_timeout, and hands the
 * connection on with the client's real address, which then counts in admission limits,
 * failure delays, logs and status exactly as a direct client's would.
 *
 * A LOCAL header is the balancer's own health check: it is answered with one line,
 * "limpet ready\n" or, while the server drains (SIGUSR1), "limpet draining\n", and closed,
 * with no log line (debug only). An untrusted source, a bad header, or none in time is
 * refused with one log line (rate-limited: at most one a second, with a count of the rest).
 */
#ifndef LIMPET_PROXY_LISTEN_H
#define LIMPET_PROXY_LISTEN_H

#include "limpet/accept.h"
#include "limpet/config.h"
#include "limpet/session.h"

struct lp_proxy_listener;

/* Listens on cfg->proxy_protocol.listen. fn(user, fd, client) gets each connection whose
 * header was whole, fd positioned just after it. rt and cfg are borrowed (cfg until the next
 * lp_proxy_listener_reconfigure). Returns owned (free with lp_proxy_listener_free). */
LP_MUST_USE lp_err lp_proxy_listener_new(struct lp_runtime *rt, const struct lp_config *cfg,
                                         lp_accept_fn *fn, void *user,
                                         struct lp_proxy_listener **out);
/* A reloaded configuration: its trusted list and handshake timeout apply to new connections. */
void lp_proxy_listener_reconfigure(struct lp_proxy_listener *pl, const struct lp_config *cfg);
/* Stops accepting (connections still reading their header go on). NULL-safe. */
void lp_proxy_listener_stop(struct lp_proxy_listener *pl);
/* Stops, closes the listener and every connection still reading its header. NULL-safe. */
void lp_proxy_listener_free(struct lp_proxy_listener *pl);

#endif
