/* pipe.h — the backed pipe: one ordered byte stream each way that outlives its links.
 *
 * Sans-I/O. The glue feeds it link bytes and the time, and writes out what it hands back.
 * The pipe owns, per session:
 *   tx_seq  bytes of our sequenced stream (encoded mux frames) produced so far;
 *   acked   how far the peer acknowledged: the replay buffer holds [acked, tx_seq);
 *   rx_seq  bytes of the peer's sequenced stream received as whole frames and handed up.
 * Link frames (ACK, PING, PONG) and handshake frames (HELLO, WELCOME, REJECT) are not
 * sequenced: never buffered for replay, never counted, sent only between whole frames.
 *
 * Each link attached to the pipe gets a new generation; the glue tags what a link reports
 * with the generation it was given, and reports for an older one are ignored.
 *
 * Replay memory is a list of chunks; a frame never straddles two chunks. Committed bytes
 * (tx_seq - acked) never exceed cfg.replay_buffer for DATA: when the buffer is full,
 * lp_pipe_reserve() returns 0 and the caller stops reading its local sockets (backpressure,
 * never overwrite). Small control frames (lp_pipe_send_frame) may use LP_PIPE_CONTROL_SLACK
 * more so that credit, FIN and RST can always get out.
 */
#ifndef LIMPET_PIPE_H
#define LIMPET_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"
#include "limpet/frame.h"
#include "limpet/state.h"

#define LP_PIPE_CONTROL_SLACK (64u * 1024u)
#define LP_PIPE_MSG_MAX 256u

struct lp_pipe_config {
    size_t replay_buffer; /* cap on tx_seq - acked for DATA, bytes; >= 64 KiB */
    size_t ack_every;     /* ACK after this many unacknowledged received bytes */
    lp_time ack_delay;    /* ... or this long after the first unacknowledged byte */
    lp_time heartbeat;    /* PING after this long with nothing sent (or nothing received) */
    lp_time dead_after;   /* the link is dead after this long with nothing received;
                                also the client's limit on waiting for WELCOME */
};

enum lp_pipe_state {
    LP_PIPE_DETACHED,  /* no link */
    LP_PIPE_HANDSHAKE, /* client: HELLO queued/sent, waiting for WELCOME or REJECT */
    LP_PIPE_LIVE,      /* a link is attached and carrying the sequenced stream */
    LP_PIPE_LOST,      /* the session cannot go on (sequence out of range, REJECT): final */
};

enum lp_pipe_event_type {
    LP_PIPE_EV_LIVE,      /* handshake done on `gen`; `resumed` false for a new session */
    LP_PIPE_EV_LINK_DOWN, /* the pipe gave up on link `gen` (dead_after passed, handshake
                              timeout, protocol violation): close that socket; msg says why */
    LP_PIPE_EV_REJECTED,  /* client: the server sent REJECT `code` with `msg` on `gen` */
    LP_PIPE_EV_LOST,      /* the session is lost; msg says why with both sequence numbers */
    LP_PIPE_EV_ROOM,      /* the replay buffer was full and has room again */
    LP_PIPE_EV_RTT,       /* a PONG came back: `rtt` ms */
};

struct lp_pipe_event {
    enum lp_pipe_event_type type;
    uint64_t gen;
    uint16_t code;
    bool resumed;
    lp_time rtt;
    char msg[LP_PIPE_MSG_MAX];
};

typedef struct lp_pipe lp_pipe;

/* Creates a detached pipe. A client pipe starts with a zero session id (new session).
 * Returns owned (free with lp_pipe_free). */
LP_MUST_USE lp_err lp_pipe_new(const struct lp_pipe_config *cfg, bool is_client, lp_pipe **pp);
void lp_pipe_free(lp_pipe *p);

/* Server: the session's id and resume token, chosen (randomly) by the caller before the
 * first lp_pipe_accept. Copies both. */
void lp_pipe_set_identity(lp_pipe *p, const uint8_t id[LP_SESSION_ID_LEN],
                          const uint8_t token[LP_TOKEN_LEN]);
/* Borrowed, valid for the pipe's life. All zero until known. */
const uint8_t *lp_pipe_session_id(const lp_pipe *p);
const uint8_t *lp_pipe_token(const lp_pipe *p);

/* Server: this node's id (lp_node_id_ok), sent in WELCOME when the client's HELLO asks for
 * it (LP_HELLO_NODE; every client of this version does). Copies it; an invalid id is ignored
 * and LP_ERR_INVALID returned. */
LP_MUST_USE lp_err lp_pipe_set_node(lp_pipe *p, const char *node);
/* Client: the node id the last WELCOME named, "" if the server sent none (an older server).
 * Server: its own. Borrowed, NUL-terminated, valid until the next call on the pipe. */
const char *lp_pipe_node(const lp_pipe *p);

enum lp_pipe_state lp_pipe_state(const lp_pipe *p);
uint64_t lp_pipe_generation(const lp_pipe *p);
uint64_t lp_pipe_tx_seq(const lp_pipe *p);
uint64_t lp_pipe_acked(const lp_pipe *p);
uint64_t lp_pipe_rx_seq(const lp_pipe *p);
size_t lp_pipe_buffered(const lp_pipe *p); /* tx_seq - acked */
lp_time lp_pipe_rtt(const lp_pipe *p);     /* last RTT sample, 0 if none */

/* ---- link lifecycle ---------------------------------------------------------------- */

/* Client: a new link is up (TCP/TLS connected). Starts a new generation, drops whatever
 * the old link left half-sent or half-received, queues HELLO. Returns the generation. */
uint64_t lp_pipe_connect(lp_pipe *p, lp_time now);

/* Server: a HELLO for this session arrived on a new link (the caller has checked magic,
 * version, session id and token). Checks the client's rx_seq against [acked, tx_seq]:
 * outside it, returns LP_ERR_SEQ with *why (static storage in the pipe, both numbers) and
 * the pipe becomes LOST. Otherwise starts a new generation (*gen), queues WELCOME, then
 * the replay of [client rx_seq, tx_seq), and goes LIVE. */
LP_MUST_USE lp_err lp_pipe_accept(lp_pipe *p, const struct lp_hello *h, lp_time now, uint64_t *gen,
                                  const char **why);

/* The glue saw link `gen` fail (EOF, error, closed by us). Stale generations are ignored.
 * The pipe becomes DETACHED; half a frame in either direction is discarded. */
void lp_pipe_link_down(lp_pipe *p, uint64_t gen);

/* Marks the pipe LOST (e.g. the client's resume was refused). */
void lp_pipe_mark_lost(lp_pipe *p);

/* ---- receive ------------------------------------------------------------------------- */

/* Where to read link bytes into. Returns the room (0 when the buffer is full of frames the
 * caller has not taken yet: drain lp_pipe_next_frame first), *buf borrowed until the next
 * call on the pipe. Returns 0 when no link is attached. */
size_t lp_pipe_recv_space(lp_pipe *p, uint8_t **buf);
/* n bytes were read into that space at time now (any inbound byte proves the link alive). */
void lp_pipe_recv_commit(lp_pipe *p, size_t n, lp_time now);
/* Copying convenience (tests, fuzzers): feeds up to len bytes, returns how many were taken. */
size_t lp_pipe_recv(lp_pipe *p, const uint8_t *in, size_t len, lp_time now);

/* Parses buffered input in order. Link and handshake frames are handled inside. Returns
 * true with the next sequenced frame (payload borrowed until the next call on the pipe);
 * rx_seq has counted it, so the caller must take it. Returns false when no whole frame is
 * buffered, or when the input broke the protocol (then a LINK_DOWN event is queued and the
 * pipe is DETACHED). */
bool lp_pipe_next_frame(lp_pipe *p, struct lp_frame *f, lp_time now);

/* ---- transmit -------------------------------------------------------------------------- */

/* Free space for DATA in the replay buffer (0 = backpressure). */
size_t lp_pipe_tx_room(const lp_pipe *p);
/* Zero-copy DATA: returns contiguous room for a payload of up to `max` bytes (and at most
 * LP_FRAME_MAX_PAYLOAD), *buf borrowed until lp_pipe_commit. 0 when the buffer is full: an
 * LP_PIPE_EV_ROOM event follows when it frees up. */
size_t lp_pipe_reserve(lp_pipe *p, size_t max, uint8_t **buf);
/* Seals a reserved payload of n (1..reserved) bytes as one sequenced frame. */
void lp_pipe_commit(lp_pipe *p, uint8_t type, uint8_t flags, uint32_t id, size_t n);
/* Zero-copy DATA over several frames at once, for one readv: up to `nspan` frames back to
 * back in one chunk; spans[i] is the payload room of frame i and every span but the last
 * holds LP_FRAME_MAX_PAYLOAD. Returns the total room (<= max), *count the spans filled. */
size_t lp_pipe_reservev(lp_pipe *p, size_t max, struct lp_span *spans, size_t nspan, size_t *count);
/* Seals n (1..reserved) bytes written in order into those spans: ceil(n / 16 KiB) frames. */
void lp_pipe_commitv(lp_pipe *p, uint8_t type, uint8_t flags, uint32_t id, size_t n);
/* Appends one whole encoded sequenced frame (copied). LP_ERR_NOSPACE if it does not fit
 * even with the control slack; LP_ERR_INVALID if it is not a whole sequenced frame. */
LP_MUST_USE lp_err lp_pipe_send_frame(lp_pipe *p, const uint8_t *frame, size_t len);

/* Bytes to write to the link now: returns their count, *out borrowed until the next call
 * on the pipe. 0 when nothing is due or no link is attached. */
size_t lp_pipe_pending_output(lp_pipe *p, const uint8_t **out);
/* The link took n of those bytes at time now. */
void lp_pipe_output_sent(lp_pipe *p, size_t n, lp_time now);

/* ---- time and events --------------------------------------------------------------------- */

/* When lp_pipe_on_timeout must next be called; LP_TIME_NEVER if nothing is scheduled. */
lp_time lp_pipe_next_deadline(const lp_pipe *p);
/* Due ACKs and PINGs are queued; a silent link is declared dead (LINK_DOWN event). */
void lp_pipe_on_timeout(lp_pipe *p, lp_time now);

/* Client: the next HELLO (lp_pipe_connect) says REKEY: its link replaces a live one that
 * carried its keys' share. Informational: the server counts a rekey, not a reconnect. */
void lp_pipe_set_rekey(lp_pipe *p);

/* Pops the next event. Drain after every call that takes bytes, time or a link change. */
bool lp_pipe_next_event(lp_pipe *p, struct lp_pipe_event *ev);

/* ---- upgrade in place (pipe_state.c) ------------------------------------------------------- */

/* Saves the session into one LP_STATE_PIPE section: identity (session id, resume token,
 * client or server), generation, rx_seq, acked, tx_seq, the replay bytes [acked, tx_seq), a
 * ROOM still owed, the last RTT and how long ago the link last sent, received and pinged. The
 * link itself is not saved: whatever it had half sent or half received is dropped, as at a
 * link drop. Save between calls, never between lp_pipe_next_frame and the lp_mux_recv of the
 * frame it returned: that frame is counted in rx_seq, so the peer would not send it again.
 * Writer errors stick in w (and are returned). */
LP_MUST_USE lp_err lp_pipe_save(const lp_pipe *p, struct lp_state_wr *w, lp_time now);

/* Loads the next section (LP_STATE_PIPE) into a new pipe with the new cfg at the new time:
 * a DETACHED pipe (LOST if it was), as after lp_pipe_link_down, that resumes when its peer's
 * HELLO (lp_pipe_accept) or its own link (lp_pipe_connect) comes. The replay bytes must be
 * whole sequenced frames. On refusal nothing is built and rd->why says why. Returns owned. */
LP_MUST_USE lp_err lp_pipe_load(struct lp_state_rd *rd, const struct lp_pipe_config *cfg,
                                lp_time now, lp_pipe **pp);

#endif
