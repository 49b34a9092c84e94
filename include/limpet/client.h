/* client.h — the client process: -L listeners and the reconnect loop over one session. */
#ifndef LIMPET_CLIENT_H
#define LIMPET_CLIENT_H

#include <ev.h>

#include "limpet/cli.h"
#include "limpet/config.h"
#include "limpet/session.h"

struct lp_client;

/* Borrows cfg and the forwards (they outlive the client). Opens the listeners and starts
 * connecting. Returns owned (free with lp_client_free); errors are logged. */
lp_err lp_client_new(struct lp_runtime *rt, const struct lp_config *cfg,
                     const struct lp_forward *fwd, size_t nfwd, struct lp_client **cp);
/* Ends cleanly: GOODBYE to the server if the link is up, then stops the loop. */
void lp_client_stop(struct lp_client *c);
/* The process exit code once the loop has stopped (0 clean, 4 gave up, 2 auth...). */
int lp_client_exit_code(const struct lp_client *c);
void lp_client_free(struct lp_client *c);

#endif
