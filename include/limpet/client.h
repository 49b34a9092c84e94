/* client.h — the client process: -L listeners and the reconnect loop over one session. */
#ifndef LIMPET_CLIENT_H
#define LIMPET_CLIENT_H

#include <ev.h>

#include "limpet/fwdspec.h"
#include "limpet/config.h"
#include "limpet/session.h"

struct lp_client;

/* A client that carries one program's streams (limpet stdio, limpet mcp) instead of, or
 * besides, listeners. */
struct lp_client_app {
    /* The first session exists (not yet connected): open the stream(s) now; their OPENs
     * wait in the replay buffer until the link is up. */
    void (*start)(void *user, struct lp_session *s);
    /* The session is gone for good (code 3: the server no longer knows it; 4: gave up
     * reconnecting); its streams have already ended. The client does not start another:
     * the app says what it must (pending answers), then calls lp_client_finish. */
    void (*lost)(void *user, int code, const char *why);
};

/* Borrows cfg, the forwards and app (they outlive the client); app may be NULL. Opens the
 * listeners and starts connecting. Returns owned (free with lp_client_free); errors are
 * logged. */
LP_MUST_USE lp_err lp_client_new(struct lp_runtime *rt, const struct lp_config *cfg,
                                 const struct lp_forward *fwd, size_t nfwd,
                                 const struct lp_client_app *app, void *app_user,
                                 struct lp_client **cp);
/* Ends with exit code `code`: GOODBYE to the server first when the link is up. */
void lp_client_finish(struct lp_client *c, int code);
/* Ends cleanly: GOODBYE to the server if the link is up, then stops the loop. */
void lp_client_stop(struct lp_client *c);
/* The process exit code once the loop has stopped (0 clean, 4 gave up, 2 auth...). */
int lp_client_exit_code(const struct lp_client *c);
void lp_client_free(struct lp_client *c);

#endif
