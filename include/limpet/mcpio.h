/* mcpio.h — the libev ends of MCP: `limpet mcp` (the host's side) and the server's pool of
 * MCP server processes.
 *
 * Client (`limpet mcp [--scope K] NAME`): a client app whose stream (kind MCP, target NAME,
 * arg the scope) carries the host's JSON-RPC lines, filtered by lp_mcpc (mcpclient.h). The
 * stream survives drops like any other. When it is reset (the MCP server process exited,
 * ...) the host's pending requests are answered with the reason and the next message opens
 * a new stream; when the session is lost they are answered and the process exits 3. It
 * exits 0 when its stdin closes. Without --scope the scope is unique to this process, so
 * its server process ends with it.
 *
 * Server: the pool (mcppool.h) of child processes, each routed by mcproute.h, attached to
 * the MCP streams that clients open. Children run in their own process group and are stopped
 * as the MCP spec asks (stdin closed, stop_grace, SIGTERM, stop_grace, SIGKILL).
 */
#ifndef LIMPET_MCPIO_H
#define LIMPET_MCPIO_H

#include "limpet/client.h"
#include "limpet/session.h"

struct lp_mcp_client;

LP_MUST_USE lp_err lp_mcp_client_new(const struct lp_config *cfg, const char *name,
                                     const char *scope, struct lp_mcp_client **out);
const struct lp_client_app *lp_mcp_client_app(void);
void lp_mcp_client_set_client(struct lp_mcp_client *m, struct lp_client *c);
void lp_mcp_client_free(struct lp_mcp_client *m);

struct lp_mcpd;

/* Borrows rt and cfg. Sets rt->open_mcp. may_use(user, identity, name) says whether an
 * identity may use an MCP server name (NULL: every configured name, for --insecure). */
LP_MUST_USE lp_err lp_mcpd_new(struct lp_runtime *rt, const struct lp_config *cfg,
                               bool (*may_use)(void *user, const char *identity, const char *name),
                               void *user, struct lp_mcpd **out);
/* A reloaded configuration (borrowed; the old one stays alive for the caller) and the `user`
 * passed to may_use from now on (the new configuration's auth). Processes of
 * servers whose command, args, env or cwd changed, or that are gone, are stopped (their
 * streams reset with the reason); the next OPEN starts them from the new configuration.
 * NULL-safe. */
void lp_mcpd_reconfigure(struct lp_mcpd *m, const struct lp_config *cfg, void *user);
/* Stops every child (the MCP way) and calls done(done_user) when all are gone, at once if
 * none runs. */
void lp_mcpd_shutdown(struct lp_mcpd *m, void (*done)(void *), void *done_user);
/* MCP server processes in the pool (starting, running or stopping), for metrics. NULL: 0. */
size_t lp_mcpd_processes(const struct lp_mcpd *m);
/* Kills what is left (SIGKILL to each process group) and frees. NULL-safe. */
void lp_mcpd_free(struct lp_mcpd *m);

#endif
