/* server.h — the server process: the tunnel listener, handshakes and the session table. */
#ifndef LIMPET_SERVER_H
#define LIMPET_SERVER_H

#include "limpet/config.h"
#include "limpet/session.h"

struct lp_server;

/* Borrows cfg. Starts listening on cfg->listen. Returns owned (free with lp_server_free). */
LP_MUST_USE lp_err lp_server_new(struct lp_runtime *rt, const struct lp_config *cfg,
                                 struct lp_server **sp);
/* A reloaded configuration: new handshakes and sessions use it; sessions already running keep
 * the one they started with (which the caller keeps alive). The listen address is not
 * changed. NULL-safe. */
void lp_server_reconfigure(struct lp_server *srv, const struct lp_config *cfg);
/* Ends every session with GOODBYE (best effort) and stops the loop. */
void lp_server_stop(struct lp_server *srv);
void lp_server_free(struct lp_server *srv);

#endif
