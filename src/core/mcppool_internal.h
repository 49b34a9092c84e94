/* mcppool_internal.h — the MCP pool's structs, shared by mcppool.c and mcppool_state.c (its
 * save and load). Private to src/core/mcppool*.c; the contract is mcppool.h.
 */
#ifndef LIMPET_MCPPOOL_INTERNAL_H
#define LIMPET_MCPPOOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/mcppool.h"

#define KEY_MAX 128u /* name and scope buffers: 1..127 bytes and a NUL */
#define WHY_MAX sizeof(((struct lp_mcppool_action *)0)->why)

enum entry_state {
    ST_STARTING, /* SPAWN emitted; atts are waiters */
    ST_LIVE,     /* a child runs; atts are attached */
    ST_CRASHED,  /* no child, no atts; the next OPEN restarts the same id */
    ST_STOPPING, /* no atts; STOP emitted (or owed: stop_owed), freed on exited */
};

struct entry {
    struct entry *next; /* the pool's list, oldest entry first */
    uint64_t id;        /* from the pool's counter, never reused */
    enum entry_state state;
    bool ephemeral; /* every opener gave no scope: stop when the last attachment leaves */
    bool stop_owed; /* STOPPING while the SPAWN was still running: STOP goes out once the
                     * glue reports the child started, since before that there is none */
    char name[KEY_MAX];
    char scope[KEY_MAX];
    char owner[KEY_MAX];    /* the identity that made it: its fair share is counted by this */
    char stop_why[WHY_MAX]; /* the reason kept for an owed STOP */
    uint64_t *atts;         /* owned; natts of cap used; empty unless STARTING or LIVE */
    size_t natts, cap;
    lp_time last_used;     /* last OPEN, attach or detach: the LRU order and the idle clock */
    lp_time started_at;    /* when the current (or last) child started */
    unsigned quick_deaths; /* children in a row that exited within quick_exit of starting */
    lp_time restart_at;    /* a CRASHED entry is not restarted before this (backoff) */
};

struct lp_mcppool {
    struct lp_mcppool_limits lim;
    struct entry *head;          /* every entry, oldest first */
    size_t nentries;             /* every entry on the list */
    size_t natts;                /* every waiter and attachment of every entry */
    uint64_t next_id;            /* the next entry id; starts at 1 so 0 means none */
    struct lp_mcppool_action *q; /* q[qhead .. qhead + qlen) queued, oldest first; owned */
    size_t qhead, qlen, qcap;
};

#endif
