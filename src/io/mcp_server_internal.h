/* mcp_server_internal.h — what mcp_server.c (the MCP pool at work) and mcp_upgrade.c (its
 * hand-over to a new binary) share. Not a module header: nothing else includes it. */
#ifndef LIMPET_MCP_SERVER_INTERNAL_H
#define LIMPET_MCP_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "limpet/child.h"
#include "limpet/mcpio.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/stream.h"
#include "limpet/streamq.h"

#define KEY_MAX 127u /* the pool's name and scope limit */

struct entry {
    struct lp_mcpd *m;
    uint64_t id;
    char name[KEY_MAX + 1];
    char scope[KEY_MAX + 1]; /* as the client wrote it (the pool's key adds the identity) */
    char tag[KEY_MAX * 2 + 32];
    lp_mcproute *route;
    struct lp_child *child;
    struct entry *next;
};

struct att {
    struct lp_mcpd *m;
    uint64_t id;
    uint64_t entry; /* 0 until ACCEPT */
    struct lp_stream *st;
    /* The host's lines are not copied out of the stream's receive queue until whole: a line
     * being received stays there, counted in the session's receive budget, and is passed on
     * (and its credit returned) once its newline is in. */
    size_t scanned;        /* bytes at the queue's front known to hold no '\n' */
    bool wants_memory;     /* its line needs credit and limits.memory is reached: retried */
    struct lp_streamq out; /* lines for the host not yet taken by the mux */
    bool forgotten;        /* the pool refused or reset it: nothing to report */
    uint16_t doom_code;    /* with doomed: the RST code */
    char doomed[160];      /* not empty: reset with this reason at the next sweep */
    struct att *next;
};

struct lp_mcpd {
    struct lp_runtime *rt;
    const struct lp_config *cfg;
    lp_mcppool *pool;
    ev_timer tick;
    ev_timer sweep;   /* resets doomed attachments, outside the callbacks that doomed them */
    ev_timer memwait; /* while a line waits at limits.memory: asks again every MEMORY_RETRY */
    size_t out_bytes; /* every attachment's out.buffered, for the memory count */
    struct entry *entries;
    struct att *atts;
    uint64_t next_att;
    bool (*may_use)(void *user, const char *identity, const char *name);
    void *user;
    void (*done)(void *);
    void *done_user;
};

/* mcp_server.c, for mcp_upgrade.c */
extern const struct lp_child_hooks mcpd_child_hooks;
extern const struct lp_stream_hooks mcpd_att_hooks;
void mcpd_run_actions(struct lp_mcpd *m);
void mcpd_flush_route(struct entry *e);
void mcpd_push_att(struct att *a);
void mcpd_drain_att(struct att *a);
void mcpd_free_att(struct att *a);

#endif
