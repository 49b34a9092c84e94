/* session.h — one tunnel session on a libev loop: a pipe and a mux (the sans-I/O cores),
 * the TCP link under them and the local ends of its streams. Shared by client and server.
 *
 * Ownership: the owner (client or server) creates sessions and ends them with
 * lp_session_close(); memory is released at the end of the loop iteration, so a callback
 * further down the same iteration never sees freed memory. Hooks report what the owner
 * must decide; a hook may call lp_session_close() on its session but must not free it.
 */
#ifndef LIMPET_SESSION_H
#define LIMPET_SESSION_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "limpet/config.h"
#include "limpet/ctl.h"
#include "limpet/link.h"
#include "limpet/mux.h"
#include "limpet/net.h"
#include "limpet/pipe.h"
#include "limpet/resolve.h"

struct lp_session;
struct lp_stream;
struct lp_rlistener;

/* Process-wide glue state: deferred writes and deferred frees. */
struct lp_runtime {
    struct ev_loop *loop;
    ev_prepare flush;         /* before the loop sleeps: write dirty sessions' output */
    ev_check reap;            /* after each wake-up: free what was closed */
    struct lp_session *dirty; /* sessions with output or deadlines to refresh */
    struct lp_session *dead_sessions;
    struct lp_stream *dead_streams;
    struct lp_resolver resolver; /* name lookups off the loop thread */
    lp_tls_conf *tls;            /* borrowed; NULL with --insecure (plain TCP) */
    /* Server: may this identity reach host:port? NULL with --insecure (anything goes). */
    bool (*allow_target)(void *user, const char *identity, const char *host, uint16_t port);
    void *allow_user;
    /* Server: the auth.clients name for a TLS identity (PSK identity or "sha256:..."), by
     * which sessions are keyed and logged. NULL: the identity as it is. */
    const char *(*name_of)(void *user, const char *identity);
    /* Server: the peer opened an MCP stream (kind MCP: text = server name, arg = scope, both
     * not NUL-terminated). NULL: no MCP pool here, the OPEN is refused. */
    void (*open_mcp)(void *user, struct lp_session *s, const struct lp_mux_event *ev);
    void *mcp_user;
    /* Server: may this identity listen on host:port (-R)? Port 0: on host at all, on some
     * port (asked before listening; the port the kernel picks is asked after). allow_user is
     * passed. NULL with --insecure (anything goes). */
    bool (*allow_bind)(void *user, const char *identity, const char *host, uint16_t port);
    /* Server: a session takes a hold on the configuration it was made with (hold true) and
     * gives it back when freed (hold false), so a reload can free a retired configuration
     * as soon as no session uses it. NULL: configurations live as long as the process. */
    void (*cfg_hold)(void *user, const struct lp_config *cfg, bool hold);
    void *cfg_user;
    /* Server: may s's identity hold one stream more (limits.streams_per_identity, counted
     * over all its sessions)? When not, *cap is the limit in force. NULL: no such limit. */
    bool (*stream_room)(void *user, const struct lp_session *s, size_t *cap);
    void *stream_user;
    size_t nstreams; /* local ends of every session's streams (the sum of their nstreams) */
    /* Bytes buffered for peers (limits.memory): every session's replay buffer and receive
     * queues, charged as the session is flushed (each session's mem_charged), plus what
     * memory_extra reports when asked (the MCP pool's line queues and child pipes). */
    size_t memory_sessions;
    size_t memory_limit; /* server: limits.memory; 0: no bound (clients) */
    size_t (*memory_extra)(void *user);
    void *memory_user;
    lp_time memory_logged;    /* when a refusal at the limit was last logged */
    uint64_t memory_refusals; /* refusals since then, for the next line */
    /* Every session not yet freed, client's or server's, for status and metrics (linked by
     * lp_session_new, unlinked when freed; closing ones are skipped by readers). */
    struct lp_session *all;
    struct lp_stats stats;
    /* Server: SIGUSR1 asked it to take no new sessions (REJECT LIMIT "draining") while its
     * own keep resuming; shown by status and metrics. */
    bool draining;
    char node[64]; /* server: node.id, as status shows it; "" in clients */
};

void lp_runtime_init(struct lp_runtime *rt, struct ev_loop *loop);
/* Frees everything still on the dead lists. */
void lp_runtime_clear(struct lp_runtime *rt);

/* Bytes buffered for peers now: the sessions' charges plus memory_extra's. */
size_t lp_runtime_memory(const struct lp_runtime *rt);
/* How many more bytes may be buffered before limits.memory: 0 at or past it, SIZE_MAX when
 * there is no limit. Checked where something new would be admitted. */
size_t lp_runtime_memory_room(const struct lp_runtime *rt);
/* Logs that `what` was refused at limits.memory: at most one line a second, with a count of
 * the refusals it stands for, so a flood of refusals cannot flood the log. */
void lp_runtime_memory_refused(struct lp_runtime *rt, const char *what);

struct lp_session_hooks {
    /* The link failed or was replaced; the session is detached (reason for the log). */
    void (*link_down)(struct lp_session *s, const char *reason);
    /* The handshake finished on the current link. */
    void (*live)(struct lp_session *s, bool resumed);
    /* Client: the server refused the handshake. */
    void (*rejected)(struct lp_session *s, uint16_t code, const char *msg);
    /* The session cannot go on (the resume point is out of range, ...). */
    void (*lost)(struct lp_session *s, const char *reason);
    /* The peer ended the session on purpose (GOODBYE code and its message). */
    void (*goodbye)(struct lp_session *s, uint16_t code, const char *msg);
    /* Client: the server opened a REVERSE stream (a -R connection): answer it (NULL: reset). */
    void (*open_reverse)(struct lp_session *s, const struct lp_mux_event *ev);
    /* Client: the answer to one of our BINDs (LP_MUX_EV_BIND_OK or _FAIL). */
    void (*bind_answer)(struct lp_session *s, const struct lp_mux_event *ev);
    /* Client: the live TLS link has carried tls.rekey_after under its keys (or an AES-GCM key
     * is at half its record budget): the owner may replace it by a new link. Returns true when
     * it took the request; the session then asks no more on this link. NULL: never asked. */
    bool (*rekey_due)(struct lp_session *s);
};

struct lp_session {
    struct lp_runtime *rt;
    const struct lp_config *cfg; /* borrowed; outlives the session (held: rt->cfg_hold) */
    bool holds_cfg;              /* cfg_hold(true) was called for cfg */
    const struct lp_session_hooks *hooks;
    void *owner; /* the client or server */
    bool is_client;
    lp_pipe *pipe;
    lp_mux *mux;
    char tag[9];                             /* first 8 hex digits of the id, for logs */
    char identity[LP_TLS_IDENTITY_MAX + 80]; /* server: who created it (its auth.clients
                                              * name; a certificate unknown by name stays
                                              * "sha256:..."), "" with --insecure; a resume
                                              * must match */
    struct lp_link link;                     /* open only while attached */
    uint64_t gen;                            /* the pipe generation this fd carries */
    char peer[64];                           /* the link's peer address, for logs */
    ev_io rio, wio;
    ev_timer deadline; /* the pipe's next deadline */
    lp_time armed;     /* what `deadline` is set to (NEVER: stopped) */
    bool closing;
    bool in_dirty;
    struct lp_session *next_dirty;
    struct lp_session *next_dead;
    struct lp_stream *streams;       /* local ends, doubly linked */
    struct lp_rlistener *rlisteners; /* server: this session's -R listeners (reverse.h) */
    size_t nstreams;
    /* owner's list linkage and counters for status/logs */
    struct lp_session *prev, *next;
    uint64_t reconnects;
    uint64_t rekeys;  /* links replaced because they carried their keys' share (the server
                       * counts the HELLOs flagged REKEY) */
    bool rekey_asked; /* rekey_due took the request for the current link */
    uint64_t bytes_in, bytes_out;
    ev_timer ttl; /* server: detached-session lifetime */

    /* rt->all linkage; when it was made (lp_session_new) and when its link was last lost
     * (valid while detached), for status and the resume histogram */
    struct lp_session *all_prev, *all_next;
    lp_time created;
    lp_time down_since;
    size_t mem_charged; /* what this session adds to rt->memory_sessions */
};

LP_MUST_USE lp_err lp_session_new(struct lp_runtime *rt, const struct lp_config *cfg,
                                  bool is_client, const struct lp_session_hooks *hooks, void *owner,
                                  struct lp_session **sp);
/* Server, upgrade in place: a session around a pipe and a mux loaded from the state file (both
 * taken, freed on failure), detached; the caller restores the rest. */
LP_MUST_USE lp_err lp_session_adopt(struct lp_runtime *rt, const struct lp_config *cfg,
                                    const struct lp_session_hooks *hooks, void *owner,
                                    lp_pipe *pipe, lp_mux *mux, struct lp_session **sp);
/* The pipe and mux configurations a session made with cfg uses (what lp_pipe_load and
 * lp_mux_load take). */
void lp_session_core_config(const struct lp_config *cfg, struct lp_pipe_config *pc,
                            struct lp_mux_config *mc);
/* Refreshes `tag` from the pipe's session id (after WELCOME / set_identity). */
void lp_session_retag(struct lp_session *s);

/* Attaches a connected link (plain or TLS, handshake done) for pipe generation `gen`; takes
 * it (link is left closed). Bytes the owner already read past the handshake go in `extra`. */
void lp_session_attach(struct lp_session *s, struct lp_link *link, uint64_t gen, const char *peer,
                       const uint8_t *extra, size_t extra_len);
/* Drops the link (if any) because of a fault on it (the peer broke the protocol, a queue it
 * fills overflowed) and calls the link_down hook, as a failed socket would: a server session
 * becomes detached, with its ttl running. */
void lp_session_link_failed(struct lp_session *s, const char *reason);
/* Drops the link (if any) without calling the link_down hook. */
void lp_session_detach(struct lp_session *s, const char *reason);
bool lp_session_attached(const struct lp_session *s);

/* Resets every stream locally (code, msg), drops the link and frees the session later. */
void lp_session_close(struct lp_session *s, uint16_t code, const char *msg);
/* Sends GOODBYE and tries to write it out now (best effort, non-blocking). */
void lp_session_goodbye(struct lp_session *s, uint16_t code, const char *msg);
/* Writes what the link takes now, without blocking (best effort; a failed write drops the
 * link as any would). */
void lp_session_flush(struct lp_session *s);
/* True when nothing is left to write on the link. */
bool lp_session_flushed(struct lp_session *s);

/* Server: true when s's identity may hold one stream more; else logs why (one line, naming
 * `what` and the limit) and returns false, and the caller refuses the stream. */
bool lp_session_stream_room(struct lp_session *s, const char *what);

/* Brings the process's memory count (rt->memory_sessions) up to date with what s holds. Done
 * at every flush; call it at once after promising memory (a window extension), so that the
 * next check of limits.memory in the same loop iteration sees it. */
void lp_session_recount(struct lp_session *s);

/* Marks the session for an output flush before the loop sleeps. */
void lp_session_dirty(struct lp_session *s);
/* Drains the cores' events after a stream touched the mux, and marks the session dirty. */
void lp_session_process(struct lp_session *s);

#endif
