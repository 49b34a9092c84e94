/* streamq.h — one mux stream's inbound bytes, held until the local socket takes them.
 *
 * Sans-I/O, used by the mux. A list of chunks: DATA payloads are appended to the youngest
 * chunk while they fit and a new chunk starts when they do not, so the glue can hand several
 * chunks to one writev (lp_streamq_peekv). Bytes leave only from the front (lp_streamq_drop)
 * and an emptied chunk is freed at once, so an idle stream holds no memory.
 *
 * No cap of its own: the mux's flow control bounds it, since DATA beyond the window the
 * receiver granted is refused before it is appended. An embedded struct: lp_streamq_init,
 * then lp_streamq_clear to free what it holds.
 */
#ifndef LIMPET_STREAMQ_H
#define LIMPET_STREAMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/mux.h"

#define LP_STREAMQ_CHUNK (64u * 1024u) /* inbound memory is allocated in chunks of this size */

struct lp_streamq_chunk;

/* Read the fields, change them only through the functions below. */
struct lp_streamq {
    struct lp_streamq_chunk *head; /* oldest chunk; owned, like every chunk on the list */
    struct lp_streamq_chunk *tail; /* chunk being appended to */
    size_t buffered;               /* bytes held: every chunk's unconsumed bytes */
    size_t chunk; /* allocation size, 0 = LP_STREAMQ_CHUNK; a stream whose window is smaller
                   * sets it to the window, so a slow reader holds what it was granted and no
                   * more */
};

void lp_streamq_init(struct lp_streamq *q);
/* Frees every chunk: the queue is empty (and initialised) again. */
void lp_streamq_clear(struct lp_streamq *q);

/* Copies n bytes to the back. False only when malloc failed; then nothing was appended. */
bool lp_streamq_append(struct lp_streamq *q, const uint8_t *p, size_t n);
/* Makes sure appends totalling up to n bytes, before any drop, need no allocation: a message
 * put in as several pieces then goes in whole or not at all. False when malloc failed
 * (nothing changed). */
bool lp_streamq_reserve(struct lp_streamq *q, size_t n);
/* Drops the first n bytes (at most buffered); emptied chunks are freed. */
void lp_streamq_drop(struct lp_streamq *q, size_t n);

/* The first contiguous run of bytes: returns its length (0 when empty), *data borrowed until
 * the next append, drop or clear. */
size_t lp_streamq_peek(const struct lp_streamq *q, const uint8_t **data);
/* The contiguous run that starts `off` bytes into the queue: returns its length (0 when off
 * is at or past the end), *data borrowed like lp_streamq_peek's. Walks from the front: for a
 * pass over the whole queue (saving a state), not for every byte. */
size_t lp_streamq_peek_at(const struct lp_streamq *q, size_t off, const uint8_t **data);
/* Up to `max` runs in order (for writev), borrowed like lp_streamq_peek's. Returns how many
 * spans were filled. */
size_t lp_streamq_peekv(const struct lp_streamq *q, struct lp_mux_span *spans, size_t max);
/* The offset of the first `byte` at or after offset `from` (counted from the first byte held),
 * or SIZE_MAX when none is held there. Walks the chunks before `from` without reading them,
 * so a caller that remembers how far it looked scans each byte once. */
size_t lp_streamq_find(const struct lp_streamq *q, size_t from, uint8_t byte);
/* Copies the first min(n, buffered) bytes to out, across chunks; returns how many. */
size_t lp_streamq_copy(const struct lp_streamq *q, uint8_t *out, size_t n);

#endif
