/* server.h — the server process: the tunnel listener, handshakes and the session table. */
#ifndef LIMPET_SERVER_H
#define LIMPET_SERVER_H

#include "limpet/config.h"
#include "limpet/session.h"

struct lp_server;

/* Borrows cfg. Starts listening on cfg->listen. Returns owned (free with lp_server_free). */
LP_MUST_USE lp_err lp_server_new(struct lp_runtime *rt, const struct lp_config *cfg,
                                 struct lp_server **sp);
/* The same on the tunnel port the previous binary handed over (upgrade in place): inherited
 * (taken) is used when it is bound to cfg->listen, else closed and cfg->listen listened on; -1
 * for none (lp_server_new). */
LP_MUST_USE lp_err lp_server_new_on(struct lp_runtime *rt, const struct lp_config *cfg,
                                    int inherited, struct lp_server **sp);
/* A reloaded configuration: new handshakes and sessions use it; sessions already running keep
 * the one they started with (which the caller keeps alive). The listen address is not
 * changed. NULL-safe. */
void lp_server_reconfigure(struct lp_server *srv, const struct lp_config *cfg);
/* After a reload (rt's allow hooks already point at the new auth): ends, with GOODBYE REVOKED
 * and the reason, every session whose identity revoked(user, identity) says may not go on
 * (removed, or re-keyed); in every other session closes the -R listeners and resets the
 * streams the new allow-lists no longer permit. Returns the sessions ended. NULL-safe. */
size_t lp_server_revoke(struct lp_server *srv,
                        const char *(*revoked)(void *user, const char *identity), void *user);
/* SIGUSR1: take no new sessions (REJECT LIMIT "draining", which clients retry and a
 * balancer sends elsewhere) while resumes of the sessions held here go on; status shows it.
 * Idempotent; NULL-safe. */
void lp_server_drain(struct lp_server *srv);
/* Ends every session with GOODBYE (best effort) and stops the loop. */
void lp_server_stop(struct lp_server *srv);
void lp_server_free(struct lp_server *srv);

/* ---- upgrade in place (upgrade.h) ------------------------------------------------------------ */

/* The tunnel port's listening socket (borrowed). */
int lp_server_fd(const struct lp_server *srv);
/* A session the previous binary handed over: pipe and mux (loaded, taken even on failure),
 * detached, ending in ttl_left ms (at most session.ttl) unless its client resumes it first.
 * *out is borrowed like every server session. */
LP_MUST_USE lp_err lp_server_restore_session(struct lp_server *srv, lp_pipe *pipe, lp_mux *mux,
                                             const char *identity, lp_time ttl_left,
                                             struct lp_session **out);
/* How long a server session has left before its ttl ends it once detached: what is left of a
 * detached one's, the whole session.ttl for one still attached. */
lp_time lp_server_ttl_left(const struct lp_session *s);

#endif
