/* mcppool.h — the server's MCP session pool: which child serves which (name, scope).
 *
 * Sans-I/O lifecycle only (the JSON-RPC routing of one child is mcproute.h; processes and
 * pipes are the glue's). Calls report events; the pool answers with actions, drained with
 * lp_mcppool_next(), which the glue carries out. The pool is the one owner of every entry:
 * whatever path wants an entry gone (eviction, idle, close by scope/name/all, a crash)
 * asks the pool, and the pool emits exactly one STOP per child and frees the entry once
 * the glue reports the child gone.
 *
 * Entry states:
 *   STARTING  SPAWN emitted, waiting for lp_mcppool_started; OPENs for the key wait here
 *             and share the start's result (ACCEPT) or failure (REFUSE).
 *   LIVE      a child runs; zero or more attachments (streams). With none it is detached
 *             and ends after idle_timeout (at once when it was opened ephemeral).
 *   CRASHED   the child exited on its own; attachments were RESET; the entry (and the
 *             glue's initialize cache for it) stays so the next OPEN restarts the same
 *             entry id. A child that exits within quick_exit of its start twice in a row
 *             is not restarted before a backoff (backoff_min doubling to backoff_max); an
 *             OPEN before then is REFUSEd with the reason and the time left.
 *   STOPPING  STOP emitted; the entry no longer counts against max_sessions and takes no
 *             OPENs (a new OPEN for the key makes a new entry); freed on lp_mcppool_exited.
 * max_sessions counts STARTING, LIVE and CRASHED entries; so does sessions_per_owner, per
 * owner (the identity that opened the entry). Each owner gets a fair share: at its own cap a
 * new key of that owner evicts that owner's least recently used detached entry, or is
 * REFUSEd (LP_RST_LIMIT) when all of its entries are attached. At the pool's cap a new key
 * evicts the asker's own least recently used detached entry first, else one of the owner
 * holding the most entries; an attached entry is never evicted, and when nothing is detached
 * the OPEN is REFUSEd with the reason. So one identity cannot push out another's detached
 * process (and its state) by opening scope after scope.
 */
#ifndef LIMPET_MCPPOOL_H
#define LIMPET_MCPPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"
#include "limpet/state.h"

typedef struct lp_mcppool lp_mcppool;

struct lp_mcppool_limits {
    size_t max_sessions;       /* mcp.max_sessions (256) */
    size_t sessions_per_owner; /* mcp.sessions_per_identity (32); 0: only max_sessions */
    lp_time idle_timeout; /* mcp.idle_timeout: a detached LIVE or CRASHED entry ends after it */
    lp_time quick_exit;   /* a child exiting this soon after its start "died at once" (5 s) */
    lp_time backoff_min;  /* restart delay after the second quick death in a row (1 s) */
    lp_time backoff_max;  /* the delay doubles per further quick death up to this (60 s) */
};

enum lp_mcppool_act_type {
    LP_MCPPOOL_SPAWN,  /* start entry's child (name); answer with lp_mcppool_started */
    LP_MCPPOOL_STOP,   /* stop entry's child (stdin closed, SIGTERM, SIGKILL to its
                        * process group); answer with lp_mcppool_exited */
    LP_MCPPOOL_ACCEPT, /* att is attached to entry: answer its OPEN with OPEN_OK */
    LP_MCPPOOL_REFUSE, /* att's OPEN is refused: RST(code, why); att is forgotten */
    LP_MCPPOOL_RESET,  /* att was attached and its entry ended: RST(code, why); forgotten */
};

struct lp_mcppool_action {
    enum lp_mcppool_act_type type;
    uint64_t entry; /* every type */
    uint64_t att;   /* ACCEPT, REFUSE, RESET */
    char name[128]; /* the entry's key, copied */
    char scope[128];
    uint16_t code; /* REFUSE, RESET: enum lp_rst_code */
    char why[256]; /* REFUSE, RESET: a reason a person can read; STOP: why (for the log) */
};

/* Returns NULL when out of memory. The limits are copied. */
lp_mcppool *lp_mcppool_new(const struct lp_mcppool_limits *lim);
/* Frees the pool and every entry without actions (the glue has stopped every child). */
void lp_mcppool_free(lp_mcppool *p);

/* An OPEN for (name, scope) by owner (the session's identity, "" under --insecure; 0..127
 * bytes) from attachment att (the glue's id: unique, never 0, never reused while the pool
 * knows it). name and scope are 1..127 bytes (LP_ERR_INVALID otherwise, nothing queued).
 * The owner of a key is the one that made its entry; another's OPEN of the same key joins it. ephemeral: the opener gave no scope; the entry is stopped
 * as soon as its last attachment leaves. Outcome by actions: ACCEPT (LIVE), SPAWN then
 * later ACCEPT/REFUSE (new key or CRASHED), wait (STARTING), REFUSE (cap, backoff).
 * LP_ERR_NOMEM: nothing queued, the glue refuses the OPEN itself. */
LP_MUST_USE lp_err lp_mcppool_open(lp_mcppool *p, const char *owner, const char *name,
                                   const char *scope, bool ephemeral, uint64_t att, lp_time now);

/* The attachment's stream ended (the host went away). Unknown att: ignored. */
void lp_mcppool_detach(lp_mcppool *p, uint64_t att, lp_time now);

/* The SPAWN for entry finished: ok (the child runs) or not (why says what failed; every
 * waiter is REFUSEd with "cannot start mcp server NAME: why" and the entry is freed, no STOP
 * since there is no child). Unknown entry: ignored. */
void lp_mcppool_started(lp_mcppool *p, uint64_t entry, bool ok, const char *why, lp_time now);

/* Entry's child is gone (why: "exited with status 1: <stderr tail>", "killed by signal 9").
 * STOPPING: the entry is freed. STARTING or LIVE: every attachment and waiter gets RESET
 * (LP_RST_EXITED, "mcp server NAME " + why) and the entry becomes CRASHED. */
void lp_mcppool_exited(lp_mcppool *p, uint64_t entry, const char *why, lp_time now);

/* Stop every entry with this scope / this server name / every entry: attachments get
 * RESET(LP_RST_SHUTDOWN, why), waiters REFUSE, children STOP, CRASHED entries are freed.
 * Returns how many entries were closed. */
size_t lp_mcppool_close_scope(lp_mcppool *p, const char *scope, const char *why, lp_time now);
size_t lp_mcppool_close_server(lp_mcppool *p, const char *name, const char *why, lp_time now);
size_t lp_mcppool_close_all(lp_mcppool *p, const char *why, lp_time now);

/* Time passes: idle entries end. Returns the next time tick has work (LP_TIME_NEVER). */
void lp_mcppool_tick(lp_mcppool *p, lp_time now);
lp_time lp_mcppool_deadline(const lp_mcppool *p);

/* Takes the oldest queued action into *a. False when none is queued. */
bool lp_mcppool_next(lp_mcppool *p, struct lp_mcppool_action *a);

/* Entries counted against max_sessions; every entry known (STOPPING too). */
size_t lp_mcppool_size(const lp_mcppool *p);
size_t lp_mcppool_entries(const lp_mcppool *p);
/* True while the pool still knows entry (the glue frees its own state for an entry once
 * this turns false: after a STOP's exit, a failed start, or a CRASHED entry's end). */
bool lp_mcppool_has_entry(const lp_mcppool *p, uint64_t entry);
/* The entry att is attached to or waits for, 0 when none. */
uint64_t lp_mcppool_entry_of(const lp_mcppool *p, uint64_t att);

/* ---- upgrade in place (mcppool_state.c) ---------------------------------------------------- */

/* Saves the pool into one LP_STATE_MCPPOOL section: every entry (id, name, scope, state, its
 * attachments and waiters in order, an owed STOP, the quick-death count), how long ago each
 * was last used and started, the backoff time left, and the actions not yet drained. The
 * children are not the pool's: the glue saves which process serves which entry id. */
LP_MUST_USE lp_err lp_mcppool_save(const lp_mcppool *p, struct lp_state_wr *w, lp_time now);

/* Loads the next section (LP_STATE_MCPPOOL) into a new pool with the new limits at the new
 * time. Entry and attachment ids are kept, so the glue re-adopts its children and streams by
 * them. On refusal nothing is built and rd->why says why. Returns owned. */
LP_MUST_USE lp_err lp_mcppool_load(struct lp_state_rd *rd, const struct lp_mcppool_limits *lim,
                                   lp_time now, lp_mcppool **pp);

#endif
