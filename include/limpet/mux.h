/* mux.h — streams inside the pipe's sequenced stream.
 *
 * Sans-I/O. The mux turns local actions (open, data, half-close, reset) into mux frames it
 * appends to the pipe it borrows, and turns sequenced frames from the pipe into events.
 *
 * Stream ids: the client opens odd ids (1, 3, ...), the server even ids (2, 4, ...), each
 * side's strictly increasing, so a frame for a lower id that no longer exists is a harmless
 * race (ignored) and a frame for an id never opened is a protocol violation.
 *
 * Flow control: every stream has a credit window per direction. The receiver grants the
 * initial window in OPEN / OPEN_OK and returns credit with WINDOW only as the local socket
 * really takes the bytes (lp_mux_recv_consumed), so a slow reader holds up only its own
 * stream and the receiver can always take every frame it is sent. The sum of windows a side
 * grants is held near cfg.receive_buffer: with many streams a new stream's window shrinks
 * (down to LP_MUX_MIN_WINDOW) instead of memory growing with the stream count. A glue that
 * must hold more than a window before it can pass anything on (an MCP line longer than the
 * window) asks for more with lp_mux_recv_extend: from the same budget, paid back as the
 * bytes leave, refused when the budget is spent.
 *
 * Half-close: lp_mux_shutdown sends FIN after the stream's data; a FIN received becomes an
 * LP_MUX_EV_FIN event once every byte before it was consumed. A stream is freed when both
 * directions are done, or at RST, and then an LP_MUX_EV_CLOSED event is emitted (not after
 * RST events, which end the stream by themselves).
 */
#ifndef LIMPET_MUX_H
#define LIMPET_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"
#include "limpet/frame.h"
#include "limpet/pipe.h"

#define LP_MUX_MIN_WINDOW (16u * 1024u)
/* An opener may send this much DATA before OPEN_OK (its OPEN and that DATA travel together,
 * so a new stream costs one round trip, not two); the acceptor's OPEN_OK window counts from
 * the stream's first byte. Equal to the minimum window, so every grant covers it. */
#define LP_MUX_EARLY_DATA LP_MUX_MIN_WINDOW
/* Bind frames (BIND, BIND_OK, BIND_FAIL) queued each way at most: a client sends one BIND per
 * -R forward, so it may have at most this many; more unanswered BINDs from a peer at once is
 * a session-level fault. */
#define LP_MUX_BIND_QUEUE 64u

struct lp_mux_config {
    uint32_t stream_window; /* window granted per stream when memory allows (256 KiB) */
    size_t receive_buffer;  /* target cap on the sum of granted windows (16 MiB) */
    size_t max_streams;     /* OPENs beyond this many live streams are refused (RST LIMIT) */
    /* A busy stream's window may grow up to this (0 or at most stream_window: it never
     * grows), so one bulk stream is not held to stream_window per round trip while the
     * session has room: see mux_maybe_return_credit in src/core/mux_internal.h. */
    uint32_t stream_window_max;
};

enum lp_mux_event_type {
    LP_MUX_EV_OPEN,      /* the peer opened `id`: kind, text = target, arg. Answer with
                            lp_mux_accept or lp_mux_reset. */
    LP_MUX_EV_OPEN_OK,   /* our OPEN of `id` was accepted: data may flow */
    LP_MUX_EV_READABLE,  /* `id` has inbound bytes: lp_mux_recv_peek them */
    LP_MUX_EV_WRITABLE,  /* `id` may send again (credit or replay room came back) */
    LP_MUX_EV_FIN,       /* the peer finished sending on `id` and every byte was consumed:
                            shutdown(SHUT_WR) the local socket */
    LP_MUX_EV_RST,       /* the peer reset `id` (code, text): close the local end; the stream
                            is already freed */
    LP_MUX_EV_CLOSED,    /* `id` is done both ways and freed */
    LP_MUX_EV_GOODBYE,   /* the peer ended the session on purpose (code, text) */
    LP_MUX_EV_BIND,      /* the peer asks us to listen (reverse forward): id = bind request id,
                            text = bind spec. Answer with lp_mux_bind_ok or lp_mux_bind_fail. */
    LP_MUX_EV_BIND_OK,   /* our BIND `id` is listening: code = port, text = address */
    LP_MUX_EV_BIND_FAIL, /* our BIND `id` was refused: code (RST codes), text = reason */
};

struct lp_mux_event {
    enum lp_mux_event_type type;
    uint32_t id;
    uint8_t kind;     /* OPEN */
    uint16_t code;    /* RST, GOODBYE, BIND_FAIL; the port for BIND_OK */
    const char *text; /* OPEN target, RST/GOODBYE message; borrowed until the next
                               call on the mux; not NUL-terminated */
    size_t text_len;
    const char *arg; /* OPEN arg (MCP scope); borrowed likewise */
    size_t arg_len;
    void *user; /* the stream's user pointer (lp_mux_set_user), if any */
};

typedef struct lp_mux lp_mux;

/* `pipe` is borrowed and must outlive the mux. Returns owned (free with lp_mux_free). */
LP_MUST_USE lp_err lp_mux_new(const struct lp_mux_config *cfg, lp_pipe *pipe, bool is_client,
                              lp_mux **mp);
/* Frees every stream without sending anything. */
void lp_mux_free(lp_mux *m);

/* Takes one sequenced frame from lp_pipe_next_frame. Stream-level faults (DATA beyond the
 * window, DATA after FIN) reset that stream with LP_RST_PROTOCOL and return LP_OK;
 * session-level faults (an OPEN with the wrong parity or a reused id, a frame for an id
 * never opened) return LP_ERR_PROTOCOL with *why: the caller drops the link. */
LP_MUST_USE lp_err lp_mux_recv(lp_mux *m, const struct lp_frame *f, const char **why);

/* Opens a stream (queues OPEN). text/arg are copied. *id is the new stream's id.
 * LP_ERR_TOO_BIG if target or arg exceed LP_FRAME_MAX_TEXT, LP_ERR_NOSPACE at max_streams. */
LP_MUST_USE lp_err lp_mux_open(lp_mux *m, uint8_t kind, const char *target, size_t target_len,
                               const char *arg, size_t arg_len, uint32_t *id);
/* Accepts a stream the peer opened (queues OPEN_OK). */
LP_MUST_USE lp_err lp_mux_accept(lp_mux *m, uint32_t id);
/* Resets a stream (queues RST with code and msg, up to LP_FRAME_MAX_TEXT bytes) and frees
 * it at once: no event follows for it. Unknown ids are ignored. */
void lp_mux_reset(lp_mux *m, uint32_t id, uint16_t code, const char *msg);
/* Local EOF: FIN goes out after the data already sent. */
LP_MUST_USE lp_err lp_mux_shutdown(lp_mux *m, uint32_t id);

/* Zero-copy send: room for a DATA payload on `id` (credit, frame cap and replay room
 * allowing), *buf borrowed until lp_mux_send_commit. 0 means blocked: an
 * LP_MUX_EV_WRITABLE event comes when that changes. */
size_t lp_mux_send_reserve(lp_mux *m, uint32_t id, uint8_t **buf);
/* n (1..reserved) bytes were written into the reserved room: sends them as DATA. */
void lp_mux_send_commit(lp_mux *m, uint32_t id, size_t n);
/* The same over several DATA frames at once (for one readv): see lp_pipe_reservev. */
size_t lp_mux_send_reservev(lp_mux *m, uint32_t id, struct lp_span *spans, size_t nspan,
                            size_t *count);
void lp_mux_send_commitv(lp_mux *m, uint32_t id, size_t n);
/* Copying convenience: sends up to n bytes, *taken says how many. */
LP_MUST_USE lp_err lp_mux_send(lp_mux *m, uint32_t id, const uint8_t *data, size_t n,
                               size_t *taken);

/* Inbound bytes buffered for `id`: returns a count, *data borrowed until the next call on
 * the mux. Several calls may be needed to see all of them. */
size_t lp_mux_recv_peek(lp_mux *m, uint32_t id, const uint8_t **data);
/* One piece of a stream's inbound bytes, borrowed like lp_mux_recv_peek's. */
struct lp_mux_span {
    const uint8_t *data;
    size_t len;
};
/* lp_mux_recv_peek for up to `max` pieces at once, in order (for writev). Returns how many
 * spans were filled; 0 when nothing is buffered. */
size_t lp_mux_recv_peekv(lp_mux *m, uint32_t id, struct lp_mux_span *spans, size_t max);
/* The local end took n bytes: drop them and return their credit to the peer (what an
 * extension added is paid back first instead: see lp_mux_recv_extend). */
void lp_mux_recv_consumed(lp_mux *m, uint32_t id, size_t n);
size_t lp_mux_recv_buffered(const lp_mux *m, uint32_t id);
/* The offset of the first `byte` in id's inbound bytes at or after offset `from`, SIZE_MAX
 * when there is none (or no such stream). Counts as a peek: bytes arriving later bring
 * READABLE again. A caller that remembers how far it looked scans each byte once. */
size_t lp_mux_recv_find(lp_mux *m, uint32_t id, size_t from, uint8_t byte);
/* Copies the first min(n, buffered) inbound bytes of id to out (across pieces); returns how
 * many. Nothing is consumed. */
size_t lp_mux_recv_copy(const lp_mux *m, uint32_t id, uint8_t *out, size_t n);
/* For a glue that must hold id's buffered bytes until more arrive (an MCP line whose newline
 * has not come): makes sure the peer may send at least `want` bytes more than are buffered,
 * granting the shortfall with WINDOW without consuming anything. The extra credit comes out
 * of the session's budget (cfg.receive_buffer, shared with every window) and is paid back
 * from the next bytes consumed, whose credit is then not returned: the window shrinks back.
 * *granted is what was added (0 when the peer could already send `want`; less than the
 * shortfall when the budget ran short). LP_ERR_NOSPACE: no budget is left, nothing granted;
 * the stream hears LP_MUX_EV_READABLE again when budget comes free (an extension paid back,
 * a stream ended), and its glue asks again. LP_ERR_CLOSED: the peer sent FIN, nothing more
 * can come. LP_ERR_STATE before the stream is established, LP_ERR_TOO_BIG when the window
 * would pass 2^32 - 1, LP_ERR_NOT_FOUND for an unknown id. */
LP_MUST_USE lp_err lp_mux_recv_extend(lp_mux *m, uint32_t id, size_t want, size_t *granted);
/* Inbound bytes held over every stream; and those plus what granted extensions may still
 * bring (memory promised: for the process's memory count, so that extensions asked for at
 * once see each other). */
size_t lp_mux_buffered(const lp_mux *m);
size_t lp_mux_held(const lp_mux *m);
/* The windows granted over every stream, extensions included: what the peer may have
 * buffered here at most. */
size_t lp_mux_granted(const lp_mux *m);

/* Retries control frames that found the replay buffer full and wakes streams that were
 * blocked on it. Call after LP_PIPE_EV_ROOM (calling more often is harmless). */
void lp_mux_flush(lp_mux *m);

/* Reverse forwarding. Bind request ids are the sender's own, apart from stream ids (any
 * non-zero value; the answer echoes it). Texts are copied (up to LP_FRAME_MAX_TEXT bytes, no
 * NUL). LP_ERR_NOSPACE when LP_MUX_BIND_QUEUE frames already wait for room in the pipe,
 * LP_ERR_INVALID for id 0 or a bad text. The frames are sequenced: they survive link drops. */
LP_MUST_USE lp_err lp_mux_bind(lp_mux *m, uint32_t id, const char *spec, size_t len);
LP_MUST_USE lp_err lp_mux_bind_ok(lp_mux *m, uint32_t id, uint16_t port, const char *addr,
                                  size_t len);
LP_MUST_USE lp_err lp_mux_bind_fail(lp_mux *m, uint32_t id, uint16_t code, const char *reason,
                                    size_t len);

/* Queues GOODBYE: the session ends on purpose. It cannot fail (one GOODBYE waits in the mux
 * itself, not in a queue), so it returns nothing; a second call before it is sent replaces
 * the first. */
void lp_mux_goodbye(lp_mux *m, uint16_t code, const char *msg);

/* The session is gone: frees every stream and queues an LP_MUX_EV_RST (code, msg) event for
 * each, so the glue closes the local ends. Nothing is sent. */
void lp_mux_reset_all(lp_mux *m, uint16_t code, const char *msg);

bool lp_mux_next_event(lp_mux *m, struct lp_mux_event *ev);

/* The glue's pointer for a stream (e.g. its endpoint). NULL for unknown ids. */
void lp_mux_set_user(lp_mux *m, uint32_t id, void *user);
void *lp_mux_user(const lp_mux *m, uint32_t id);

size_t lp_mux_stream_count(const lp_mux *m);
/* True when `id` exists. */
bool lp_mux_has_stream(const lp_mux *m, uint32_t id);

/* ---- upgrade in place (mux_state.c) -------------------------------------------------------- */

/* Saves the mux into one LP_STATE_MUX section: every stream (live, or reset and still owing
 * its RST) with its kind, flags, credit and window both ways, half-close state, control frames
 * not yet in the pipe, undrained events and the inbound bytes not yet consumed; the order of
 * pending frames and events; records of freed streams not yet reported; both bind FIFOs; a
 * GOODBYE either way; the next stream ids. User pointers are not saved. */
LP_MUST_USE lp_err lp_mux_save(const lp_mux *m, struct lp_state_wr *w);

/* Loads the next section (LP_STATE_MUX) into a new mux on `pipe` (borrowed, the one loaded with
 * it) with the new cfg. Every user pointer is NULL until the glue sets it again by id (the
 * records of freed streams keep NULL). Undrained events come out of lp_mux_next_event as they
 * would have; control frames go into the pipe at the next lp_mux_flush or local action. On
 * refusal nothing is built and rd->why says why. Returns owned. */
LP_MUST_USE lp_err lp_mux_load(struct lp_state_rd *rd, const struct lp_mux_config *cfg,
                               lp_pipe *pipe, lp_mux **mp);

#endif
