/* stream.h — the local ends of a session's streams: socket pumps (-L, -D, -T, -R, stdio, a
 * dialled target) and filter ends (the MCP glue) that talk to the mux through hooks. */
#ifndef LIMPET_STREAM_H
#define LIMPET_STREAM_H

#include <stdint.h>

#include "limpet/mux.h"
#include "limpet/session.h"

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
LP_MUST_USE lp_err lp_stream_open_fds(struct lp_session *s, int rfd, int wfd, uint8_t kind,
                                      const char *target, const char *arg, lp_time wait,
                                      const struct lp_stream_hooks *hooks, void *user,
                                      struct lp_stream **out);
/* Server: a stream the peer opened, whose local end is a filter driven through hooks (the
 * MCP pool). Not yet accepted: the owner answers with lp_mux_accept or lp_stream_reset. */
LP_MUST_USE lp_err lp_stream_adopt(struct lp_session *s, uint32_t id,
                                   const struct lp_stream_hooks *hooks, void *user,
                                   struct lp_stream **out);
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

/* Client: a local connection (takes fd) wants `target`; waits up to `wait` for OPEN_OK. No
 * error to return: when the stream cannot be opened (too many streams, no memory) it logs why
 * with the session id and `from`, and resets fd, so the local application sees the refusal. */
void lp_stream_open_local(struct lp_session *s, int fd, uint8_t kind, const char *target,
                          lp_time wait, const char *from);
/* Server: the peer opened `id` to `target`; dial it (answers OPEN_OK or RST). */
void lp_stream_dial(struct lp_session *s, uint32_t id, const char *target, size_t target_len);
/* Handles one mux event addressed to a stream (READABLE, WRITABLE, OPEN_OK, FIN, RST,
 * CLOSED). */
void lp_stream_on_event(struct lp_session *s, const struct lp_mux_event *ev);
/* Server, after a reload: resets (RST NOT_ALLOWED, one log line each) every stream whose
 * target (a dialled HOST:PORT or unix socket, or a -R listener's bind) the identity's
 * allow-lists no longer permit. Returns how many. */
size_t lp_stream_recheck(struct lp_session *s);
/* ---- upgrade in place (upgrade.h) ---------------------------------------------------------- */

/* Where a pump end is in its life. */
enum lp_stream_phase {
    LP_STREAM_RESOLVING, /* server: its target's name is being looked up (no socket yet) */
    LP_STREAM_DIALING,   /* server: connecting to the target */
    LP_STREAM_OPENING,   /* our OPEN waits for OPEN_OK (a -R connection) */
    LP_STREAM_OPEN,      /* data flows */
};

/* A socket pump end as the previous binary hands it over. Texts are borrowed (from the stream
 * when made by lp_stream_image, from the state file when restored). */
struct lp_stream_image {
    uint32_t id;
    enum lp_stream_phase phase;
    int fd;          /* the socket, both ways; -1 while resolving */
    bool read_eof;   /* its EOF was read and our FIN is in the mux */
    bool write_shut; /* the peer's FIN was delivered: shutdown(SHUT_WR) done */
    uint8_t kind;    /* LP_KIND_* */
    uint64_t up, down;
    lp_time timer_left; /* the resolve/dial or OPEN_OK deadline, LP_TIME_NEVER: none */
    const char *target; /* a dialled stream's HOST:PORT or unix:/PATH, NULL for others */
    const char *shown;  /* what `limpet status` shows */
};

/* Fills img for a socket pump end and returns true; false for a filter end (its owner, the MCP
 * glue, hands it over) or a pump whose write side is not its socket (client side only). */
bool lp_stream_image(const struct lp_stream *st, struct lp_stream_image *img);
/* Makes the local end of stream img->id of s (which the loaded mux holds) from img, taking
 * img->fd, and arms it: a resolve starts again, a dial waits for its connect, an open one reads
 * and writes on. Errors leave img->fd to the caller. */
LP_MUST_USE lp_err lp_stream_restore(struct lp_session *s, const struct lp_stream_image *img);

/* Frees every local end at once (runtime shutdown). */
void lp_stream_free_all(struct lp_session *s);
void lp_runtime_reap_streams(struct lp_runtime *rt);

#endif
