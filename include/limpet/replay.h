/* replay.h — the replay store: our sequenced stream from `acked` to `tx_seq`, kept until the
 * peer acknowledges it, so a new link can resend whatever the old one lost.
 *
 * Sans-I/O, used by the pipe. Memory is a list of chunks, each starting on a frame boundary
 * and holding whole frames only (a frame never straddles two chunks), so every frame's header
 * can be read in place and any position can be checked for being a frame boundary. Chunks
 * wholly below `acked` are freed as ACKs arrive; one freed chunk of the usual size is kept as
 * a spare against malloc churn.
 *
 * The store never checks what it is given: bytes are committed by the pipe, which wrote the
 * frame headers itself, and the caps (replay_buffer, control slack) are the pipe's to enforce.
 * An embedded struct: lp_replay_init, then lp_replay_clear to free everything.
 */
#ifndef LIMPET_REPLAY_H
#define LIMPET_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LP_REPLAY_CHUNK (256u * 1024u) /* replay memory is allocated in chunks of this size */

struct lp_replay_chunk;

/* Read the fields, change them only through the functions below. */
struct lp_replay {
    uint64_t tx_seq;               /* bytes committed so far: the end of the stream */
    uint64_t acked;                /* every chunk wholly below this is freed; <= tx_seq */
    struct lp_replay_chunk *head;  /* oldest chunk; owned, like every chunk on the list */
    struct lp_replay_chunk *tail;  /* chunk being appended to */
    struct lp_replay_chunk *spare; /* one freed LP_REPLAY_CHUNK kept against malloc churn */
    struct lp_replay_chunk *hint;  /* last chunk found by a lookup (a cache, may be NULL) */
};

/* An empty store at sequence 0: no memory is held until the first lp_replay_ensure_tail. */
void lp_replay_init(struct lp_replay *r);
/* An empty store whose stream starts at seq (acked = tx_seq = seq): a store being restored
 * from a saved state (pipe_state.c), whose bytes below seq are long acknowledged. */
void lp_replay_init_at(struct lp_replay *r, uint64_t seq);
/* Frees every chunk and the spare. The store may be used again after lp_replay_init. */
void lp_replay_clear(struct lp_replay *r);

/* Makes room for `need` contiguous bytes at the tail, starting a new chunk (of at least
 * LP_REPLAY_CHUNK bytes) when the current one has less. False only when malloc failed. */
bool lp_replay_ensure_tail(struct lp_replay *r, size_t need);
/* Contiguous free bytes at the tail; 0 before the first chunk. */
size_t lp_replay_tail_free(const struct lp_replay *r);
/* Where the next frame goes: borrowed, valid for lp_replay_tail_free bytes until the next
 * call that changes the store. NULL before the first chunk. */
uint8_t *lp_replay_tail(const struct lp_replay *r);
/* n (<= lp_replay_tail_free) bytes of whole frames were written at the tail: tx_seq += n. */
void lp_replay_commit(struct lp_replay *r, size_t n);

/* The peer holds everything below v: acked moves up to v (never down) and the chunks wholly
 * below it are freed. The caller checked that v <= tx_seq and lies on a frame boundary.
 * Returns true when acked moved. */
bool lp_replay_ack(struct lp_replay *r, uint64_t v);
/* True when v starts a frame (or is tx_seq), walking forward from acked, itself always a
 * boundary: over a session this costs one step per frame acknowledged. Needs
 * acked <= v <= tx_seq. */
bool lp_replay_ack_on_boundary(const struct lp_replay *r, uint64_t v);
/* True when seq lies in [acked, tx_seq] and starts a frame (tx_seq counts): the only places a
 * resumed link may start. Costs at most one chunk's frames. */
bool lp_replay_is_boundary(struct lp_replay *r, uint64_t seq);

/* The held bytes from seq to the end of its chunk: returns their count (0 when seq is not
 * held), *data borrowed until the next call that changes the store. */
size_t lp_replay_peek(struct lp_replay *r, uint64_t seq, const uint8_t **data);
/* lp_replay_peek for a store that may not change: the same bytes, found from the oldest chunk
 * without touching the lookup cache (saving a state walks the store once this way). */
size_t lp_replay_read(const struct lp_replay *r, uint64_t seq, const uint8_t **data);
/* Size (header included) of the frame that starts at seq; 0 when seq is not held. seq must
 * be a frame boundary: the length is read from our own header there. */
size_t lp_replay_frame_size(struct lp_replay *r, uint64_t seq);

/* How many chunks are held (the spare excluded). */
size_t lp_replay_chunks(const struct lp_replay *r);

#endif
