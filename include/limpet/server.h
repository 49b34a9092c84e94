/* server.h — the server process: the tunnel listener, handshakes and the session table. */
#ifndef LIMPET_SERVER_H
#define LIMPET_SERVER_H

#include "limpet/config.h"
#include "limpet/session.h"

struct lp_server;

/* Borrows cfg. Starts listening on cfg->listen. Returns owned (free with lp_server_free). */
lp_err lp_server_new(struct lp_runtime *rt, const struct lp_config *cfg, struct lp_server **sp);
/* Ends every session with GOODBYE (best effort) and stops the loop. */
void lp_server_stop(struct lp_server *srv);
void lp_server_free(struct lp_server *srv);

#endif
