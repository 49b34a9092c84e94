/* ctl.h — operators' view of a running process: counters, the control socket behind
 * `limpet status`, and the Prometheus metrics page.
 *
 * Counters live in struct lp_stats inside the runtime (session.h); the glue bumps them where
 * things happen. Both answers are built from one snapshot, a JSON document (jansson) whose
 * schema is documented in README ("Operating a server") and fixed here:
 *
 *   {"process": {"role", "pid", "version", "uptime_ms", "sessions_created",
 *                "sessions_ended", "streams_opened", "streams_refused", "reconnects",
 *                "resumes", "rekeys", "bytes_in", "bytes_out", "mcp_processes",
 *                "memory_buffered", "memory_limit" (0: none), "upgrades",
 *                "upgrade_failures", "sessions_restored",
 *                "last_upgrade_ms" (ms since the last upgrade in place, null: none),
 *                "handshakes_refused": {REASON: n, ...},
 *                "resume_ms": {"count", "sum_ms", "buckets": [{"le_ms", "count"}...]}},
 *    "sessions": [{"id", "identity", "peer", "state" ("live"|"detached"), "uptime_ms",
 *                  "detached_ms", "reconnects", "rekeys", "tls_suite", "record_layer"
 *                  ("" with --insecure or while detached), "rtt_ms", "bytes_in", "bytes_out",
 *                  "replay_used", "replay_cap", "streams_open", "streams_truncated",
 *                  "streams": [{"id", "kind", "target", "bytes_up", "bytes_down"}]}]}
 *
 * Bucket counts are cumulative, as in Prometheus. The renderers below are pure (document in,
 * text out) so they are unit-tested without a loop.
 */
#ifndef LIMPET_CTL_H
#define LIMPET_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"

struct lp_runtime;
struct lp_config;

/* ---- counters ------------------------------------------------------------------------------ */

/* Resume latency buckets, upper bounds in ms; the last bucket (+Inf) is implicit. */
#define LP_HIST_BOUNDS 11
extern const lp_time lp_hist_bounds[LP_HIST_BOUNDS];

struct lp_hist {
    uint64_t buckets[LP_HIST_BOUNDS + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t count;
    uint64_t sum_ms;
};

void lp_hist_observe(struct lp_hist *h, lp_time ms);

/* Why the server refused or lost a connection before it became a session. The label values
 * are lp_hs_reason_name(); reject_* follow the REJECT code sent. */
enum lp_hs_reason {
    LP_HS_TIMEOUT,   /* no whole HELLO within limits.handshake_timeout */
    LP_HS_TLS_AUTH,  /* the TLS handshake refused the peer's key or certificate */
    LP_HS_TLS_ERROR, /* the TLS handshake failed otherwise */
    LP_HS_BAD_HELLO, /* bytes that are not a limpet HELLO */
    LP_HS_CLOSED,    /* the peer closed (or the socket failed) mid-handshake */
    LP_HS_ADMISSION, /* refused at accept: too many unauthenticated connections */
    LP_HS_EVICTED,   /* dropped, not yet authenticated, to make room for a newer one */
    LP_HS_PROXY,     /* PROXY listener: untrusted source, bad or missing PROXY v2 header; or
                        a PROXY header on the plain listener */
    LP_HS_REJECT_VERSION,
    LP_HS_REJECT_SESSION_UNKNOWN,
    LP_HS_REJECT_SEQ,
    LP_HS_REJECT_AUTH,
    LP_HS_REJECT_LIMIT,
    LP_HS_REJECT_OTHER,
    LP_HS_REASONS
};

const char *lp_hs_reason_name(enum lp_hs_reason r);
/* The reason counted for a REJECT code (frame.h LP_REJECT_*). */
enum lp_hs_reason lp_hs_reason_of_reject(uint16_t code);

/* Process-wide counters; every field only grows. */
struct lp_stats {
    lp_time started;           /* lp_now() when the runtime was set up */
    uint64_t sessions_created; /* lp_session_new */
    uint64_t sessions_ended;   /* lp_session_close */
    uint64_t streams_opened;   /* local ends begun: OPEN sent (client) or received (server) */
    uint64_t streams_refused;  /* of those, refused or failed before they opened */
    uint64_t reconnects;       /* client: handshakes done after a link loss; server: HELLOs
                                  asking to resume a session (accepted or not), rekeys aside */
    uint64_t resumes;          /* sessions resumed with their streams */
    uint64_t rekeys;           /* live links replaced by a new handshake because they carried
                                  tls.rekey_after (not counted as reconnects); the server
                                  counts the resumes whose HELLO says REKEY */
    struct lp_hist resume;     /* client: link down -> live again; server: time detached */
    uint64_t bytes_in_ended;   /* link bytes of sessions already freed */
    uint64_t bytes_out_ended;
    uint64_t handshakes_refused[LP_HS_REASONS];
    /* Server, upgrade in place (upgrade.h); carried from one binary to the next, as the
     * counters above are, so they count over the life of the process id. */
    uint64_t upgrades;          /* completed: the successor restored the state */
    uint64_t upgrade_failures;  /* not completed: check refused, exec failed, state refused */
    uint64_t sessions_restored; /* sessions the successors took over */
    lp_time last_upgrade;       /* lp_now() when the last one completed; 0: never */
};

/* ---- the control socket and the metrics listener ------------------------------------------ */

#define LP_CTL_REQUEST_MAX 256u      /* one request line, newline included */
#define LP_CTL_CONNS_MAX 4u          /* control connections served at once */
#define LP_METRICS_REQUEST_MAX 4096u /* an HTTP request head */
#define LP_METRICS_CONNS_MAX 8u
#define LP_CTL_TIMEOUT_MS 5000u      /* a connection's whole life */
#define LP_CTL_ANSWER_MAX (8u << 20) /* a longer answer is cut (and says so) */
#define LP_CTL_STREAMS_MAX 4096u     /* streams listed in one snapshot; the rest are counted */

struct lp_ctl;

/* The directory of this user's default control sockets: $XDG_RUNTIME_DIR/limpet, else
 * /tmp/limpet-UID. Writes it to out. */
void lp_ctl_default_dir(char *out, size_t len);
/* The default control socket of this process: DIR/ROLE-PID.sock (role "server" or "client"),
 * one per process, so several clients of one user never contend for a path; `limpet
 * status` asks every socket in DIR. Writes it to out. */
void lp_ctl_default_path(const char *role, char *out, size_t len);
/* True when dir is a directory (not a symlink) owned by this user that no one else may write
 * into; otherwise false with the reason in why (one line naming dir). */
bool lp_ctl_dir_trusted(const char *dir, char *why, size_t whylen);

/* Borrows rt and reads cfg only here. Opens the control
 * socket (cfg control.path, or the default for `role` when `use_default`) and the metrics
 * listener (metrics.listen, if set). A control path held by a live process is logged (one
 * WARN) and skipped. LP_ERR_INVALID (logged) when metrics.listen is not allowed or cannot be
 * bound: the caller stops. Returns owned (free with lp_ctl_free). */
LP_MUST_USE lp_err lp_ctl_new(struct lp_runtime *rt, const struct lp_config *cfg, const char *role,
                              bool use_default, struct lp_ctl **out);
/* The same with the listeners the previous binary handed over (upgrade in place; -1: none),
 * both taken: each is used when it is where cfg wants one, else closed (and a control socket's
 * file removed) and the listener opened as lp_ctl_new would. */
LP_MUST_USE lp_err lp_ctl_new_on(struct lp_runtime *rt, const struct lp_config *cfg,
                                 const char *role, bool use_default, int metrics_fd, int control_fd,
                                 struct lp_ctl **out);
/* The listening sockets (borrowed), -1 for none; both -1 for c NULL. */
void lp_ctl_fds(const struct lp_ctl *c, int *metrics_fd, int *control_fd);
/* Closes the listeners and connections and removes the socket file. NULL-safe. */
void lp_ctl_free(struct lp_ctl *c);

/* The snapshot of rt at `now`, owned by the caller (json_decref). NULL when out of memory. */
json_t *lp_ctl_snapshot(struct lp_runtime *rt, const char *role, lp_time now);

/* ---- pure renderers (document -> text) ----------------------------------------------------- */

/* Human form: a process line, then one block per session and its streams. Returns owned
 * text (free), NULL when out of memory. */
char *lp_ctl_render_text(const json_t *doc);
/* Prometheus text exposition format 0.0.4 with HELP and TYPE lines. Returns owned text. */
char *lp_ctl_render_metrics(const json_t *doc);

/* ---- `limpet status` -------------------------------------------------------------------------- */

/* Asks the process at `control` (or, when NULL, cfg's control.path or else the default
 * server and client paths in turn) and prints its answer to stdout. Returns the exit code:
 * 0 when at least one answered, 1 (with one line on stderr naming the paths) when none. */
int lp_status_main(const char *control, bool json, const struct lp_config *cfg);

#endif
