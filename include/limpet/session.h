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
    /* Server: may this identity listen on host:port (-R)? allow_user is passed. NULL with
     * --insecure (anything goes). */
    bool (*allow_bind)(void *user, const char *identity, const char *host, uint16_t port);
    /* Every session not yet freed, client's or server's, for status and metrics (linked by
     * lp_session_new, unlinked when freed; closing ones are skipped by readers). */
    struct lp_session *all;
    struct lp_stats stats;
};

void lp_runtime_init(struct lp_runtime *rt, struct ev_loop *loop);
/* Frees everything still on the dead lists. */
void lp_runtime_clear(struct lp_runtime *rt);

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
    const struct lp_config *cfg; /* borrowed; outlives the session */
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
    uint64_t rekeys;  /* client: links replaced because they carried their keys' share */
    bool rekey_asked; /* rekey_due took the request for the current link */
    uint64_t bytes_in, bytes_out;
    ev_timer ttl; /* server: detached-session lifetime */

    /* rt->all linkage; when it was made (lp_session_new) and when its link was last lost
     * (valid while detached), for status and the resume histogram */
    struct lp_session *all_prev, *all_next;
    lp_time created;
    lp_time down_since;
};

lp_err lp_session_new(struct lp_runtime *rt, const struct lp_config *cfg, bool is_client,
                      const struct lp_session_hooks *hooks, void *owner, struct lp_session **sp);
/* Refreshes `tag` from the pipe's session id (after WELCOME / set_identity). */
void lp_session_retag(struct lp_session *s);

/* Attaches a connected link (plain or TLS, handshake done) for pipe generation `gen`; takes
 * it (link is left closed). Bytes the owner already read past the handshake go in `extra`. */
void lp_session_attach(struct lp_session *s, struct lp_link *link, uint64_t gen, const char *peer,
                       const uint8_t *extra, size_t extra_len);
/* Drops the link (if any) without calling the link_down hook. */
void lp_session_detach(struct lp_session *s, const char *reason);
bool lp_session_attached(const struct lp_session *s);

/* Resets every stream locally (code, msg), drops the link and frees the session later. */
void lp_session_close(struct lp_session *s, uint16_t code, const char *msg);
/* Sends GOODBYE and tries to write it out now (best effort, non-blocking). */
void lp_session_goodbye(struct lp_session *s, uint16_t code, const char *msg);
/* True when nothing is left to write on the link. */
bool lp_session_flushed(struct lp_session *s);

/* Marks the session for an output flush before the loop sleeps. */
void lp_session_dirty(struct lp_session *s);
/* Drains the cores' events after a stream touched the mux, and marks the session dirty. */
void lp_session_process(struct lp_session *s);

/* What the owner of a stream that is not a plain socket pump wants to hear. */
struct lp_stream_hooks {
    /* When set, READABLE / WRITABLE / OPEN_OK / FIN go here instead of the built-in pump
     * (a filter end, such as `limpet mcp`'s, that talks to the mux itself). */
    void (*event)(struct lp_stream *st, const struct lp_mux_event *ev, void *user);
    /* Called exactly once when the stream is over, for any reason: code 0 when it closed
     * cleanly (both directions done), else the RST code and its message (sent or received).
     * st is freed at the end of the loop iteration; do not touch it after this returns. */
    void (*ended)(struct lp_stream *st, uint16_t code, const char *why, void *user);
    /* A pump end: the peer finished sending, every byte was written and the local write
     * side is shut (stdout closed). */
    void (*fin)(struct lp_stream *st, void *user);
    /* A pump end: OPEN_OK arrived; called before any byte of the stream is written to the
     * local end (a SOCKS proxy writes its success reply here). */
    void (*open_ok)(struct lp_stream *st, int fd, void *user);
};

/* Opens a stream whose local end is rfd/wfd (taken; pipes, stdin/stdout or one socket) or,
 * with rfd = wfd = -1, a filter end driven through hooks->event. kind/target/arg as in
 * OPEN; waits up to `wait` for OPEN_OK (then ended(LP_RST_TIMEOUT)). hooks may be NULL
 * (a pump like -L's). *out is borrowed until ended. Errors are logged. */
lp_err lp_stream_open_fds(struct lp_session *s, int rfd, int wfd, uint8_t kind, const char *target,
                          const char *arg, lp_time wait, const struct lp_stream_hooks *hooks,
                          void *user, struct lp_stream **out);
/* Server: a stream the peer opened, whose local end is a filter driven through hooks (the
 * MCP pool). Not yet accepted: the owner answers with lp_mux_accept or lp_stream_reset. */
lp_err lp_stream_adopt(struct lp_session *s, uint32_t id, const struct lp_stream_hooks *hooks,
                       void *user, struct lp_stream **out);
/* Resets the stream (RST code/why to the peer) and ends it (hooks->ended is called). */
void lp_stream_reset(struct lp_stream *st, uint16_t code, const char *why);
uint32_t lp_stream_id(const struct lp_stream *st);
struct lp_session *lp_stream_session(const struct lp_stream *st);
/* Bytes carried local→tunnel and tunnel→local by a pump end. */
void lp_stream_counts(const struct lp_stream *st, uint64_t *up, uint64_t *down);
/* What the stream was opened to (its OPEN target, cut to 127 bytes; "" for an MCP end) and
 * its kind (LP_KIND_*). Returns borrowed, valid until the stream ends. */
const char *lp_stream_target(const struct lp_stream *st, uint8_t *kind);
/* The session's next live stream after st (start from s->streams), NULL at the end. */
struct lp_stream *lp_stream_next(const struct lp_stream *st);

/* Client: a local connection (takes fd) wants `target`; waits up to `wait` for OPEN_OK. */
lp_err lp_stream_open_local(struct lp_session *s, int fd, uint8_t kind, const char *target,
                            lp_time wait, const char *from);
/* Server: the peer opened `id` to `target`; dial it (answers OPEN_OK or RST). */
void lp_stream_dial(struct lp_session *s, uint32_t id, const char *target, size_t target_len);
/* Handles one mux event addressed to a stream (READABLE, WRITABLE, OPEN_OK, FIN, RST,
 * CLOSED). */
void lp_stream_on_event(struct lp_session *s, const struct lp_mux_event *ev);
/* Frees every local end at once (runtime shutdown). */
void lp_stream_free_all(struct lp_session *s);
void lp_runtime_reap_streams(struct lp_runtime *rt);

#endif
