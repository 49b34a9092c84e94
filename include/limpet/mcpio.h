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
struct lp_mcppool_limits;

#define LP_MCPD_MAX_INFLIGHT 1024u /* requests in flight to one MCP server process */
/* Bytes of host lines a route holds while its child restarts (and apart, initializes waiting
 * for the first answer): beyond, a request is answered with an error. One line always fits. */
#define LP_MCPD_ROUTE_HELD_MAX (4u << 20)

/* The pool limits a configuration sets (what lp_mcpd_new and a restored pool use). */
void lp_mcpd_limits(const struct lp_config *cfg, struct lp_mcppool_limits *lim);

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

/* ---- upgrade in place (upgrade.h) ---------------------------------------------------------- */

struct lp_child;
struct lp_child_image;
struct lp_streamq;
typedef struct lp_mcppool lp_mcppool;
typedef struct lp_mcproute lp_mcproute;

/* One pool entry's process and router. Texts borrowed. */
struct lp_mcpd_entry_image {
    uint64_t id;
    const char *name, *scope;     /* scope as the client wrote it (the pool's key adds the owner) */
    lp_mcproute *route;           /* saving: borrowed; restoring: taken */
    const struct lp_child *child; /* saving: its process, NULL when none runs */
    const struct lp_child_image *child_img; /* restoring: the same, NULL when none */
};

/* One attachment: an MCP stream and what the glue holds for it beyond the mux. */
struct lp_mcpd_att_image {
    uint64_t id;
    uint64_t entry;             /* 0 until the pool accepted it */
    struct lp_session *session; /* its stream's session ... */
    uint32_t stream;            /* ... and stream id */
    bool forgotten;             /* the pool refused or reset it */
    uint16_t doomed_code;       /* with doomed not "": reset at the next sweep */
    const char *doomed;
    const uint8_t *in_part; /* the host's partial line (in_len bytes) ... */
    size_t in_len;
    bool in_skipping;             /* ... or inside a too-long one */
    const struct lp_streamq *out; /* saving: lines for the host the mux has not taken */
    const uint8_t *out_bytes;     /* restoring: the same, out_len bytes */
    size_t out_len;
};

/* The pool (borrowed) and the next attachment id: what the state file keeps of m itself. */
const lp_mcppool *lp_mcpd_pool(const struct lp_mcpd *m);
uint64_t lp_mcpd_next_att(const struct lp_mcpd *m);
/* Calls entry() for every entry, then att() for every attachment. */
void lp_mcpd_each(struct lp_mcpd *m, void (*entry)(void *, const struct lp_mcpd_entry_image *),
                  void (*att)(void *, const struct lp_mcpd_att_image *), void *user);
/* Restoring, in this order: the pool (taken) in place of the empty one, each entry (its router
 * taken, its child adopted), each attachment (adopting its stream), then done: what was due
 * goes out and the pool's timers run. Errors leave the fds of what failed to the caller. */
void lp_mcpd_restore_pool(struct lp_mcpd *m, lp_mcppool *pool, uint64_t next_att);
LP_MUST_USE lp_err lp_mcpd_restore_entry(struct lp_mcpd *m, const struct lp_mcpd_entry_image *img);
LP_MUST_USE lp_err lp_mcpd_restore_att(struct lp_mcpd *m, const struct lp_mcpd_att_image *img);
void lp_mcpd_restore_done(struct lp_mcpd *m);
/* True when one of m's entries runs process pid (after a restore: it was adopted). */
bool lp_mcpd_runs(const struct lp_mcpd *m, pid_t pid);

#endif
