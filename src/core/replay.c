/* replay.c — the replay store: chunks of whole frames from acked to tx_seq. See replay.h. */
#include "limpet/replay.h"

#include <stdlib.h>

#include "limpet/base.h"
#include "limpet/frame.h"
#include "limpet/wire.h"

/* One piece of replay memory. It starts on a frame boundary and holds whole frames only,
 * so every frame's header can be read in place. */
struct lp_replay_chunk {
    struct lp_replay_chunk *next; /* the next younger chunk; its seq == this seq + len */
    uint64_t seq;                 /* sequence number of data[0] */
    size_t cap;
    size_t len; /* committed bytes, whole frames */
    uint8_t data[];
};

void lp_replay_init(struct lp_replay *r)
{
    r->tx_seq = 0;
    r->acked = 0;
    r->head = r->tail = r->spare = r->hint = NULL;
}

void lp_replay_init_at(struct lp_replay *r, uint64_t seq)
{
    lp_replay_init(r);
    r->tx_seq = seq;
    r->acked = seq;
}

void lp_replay_clear(struct lp_replay *r)
{
    while (r->head != NULL) {
        struct lp_replay_chunk *c = r->head;
        r->head = c->next;
        free(c);
    }
    free(r->spare);
    r->tail = r->spare = r->hint = NULL;
}

static void release_chunk(struct lp_replay *r, struct lp_replay_chunk *c)
{
    if (r->hint == c)
        r->hint = NULL;
    if (c->cap == LP_REPLAY_CHUNK && r->spare == NULL) {
        r->spare = c;
        return;
    }
    free(c);
}

/* Frees every chunk wholly below acked. The tail stays: it is where the next frame goes. */
static void trim(struct lp_replay *r)
{
    while (r->head != NULL && r->head != r->tail && r->head->seq + r->head->len <= r->acked) {
        struct lp_replay_chunk *c = r->head;
        r->head = c->next;
        release_chunk(r, c);
    }
}

static bool new_chunk(struct lp_replay *r, size_t need)
{
    size_t cap = LP_MAX((size_t)LP_REPLAY_CHUNK, need);
    struct lp_replay_chunk *c;

    if (cap == LP_REPLAY_CHUNK && r->spare != NULL) {
        c = r->spare;
        r->spare = NULL;
    } else if ((c = malloc(sizeof(*c) + cap)) == NULL) {
        return false;
    }
    c->next = NULL;
    c->seq = r->tx_seq;
    c->cap = cap;
    c->len = 0;
    if (r->tail != NULL)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    trim(r); /* the old tail may already be wholly acknowledged */
    return true;
}

size_t lp_replay_tail_free(const struct lp_replay *r)
{
    return r->tail != NULL ? r->tail->cap - r->tail->len : 0;
}

bool lp_replay_ensure_tail(struct lp_replay *r, size_t need)
{
    return lp_replay_tail_free(r) >= need || new_chunk(r, need);
}

uint8_t *lp_replay_tail(const struct lp_replay *r)
{
    return r->tail != NULL ? r->tail->data + r->tail->len : NULL;
}

void lp_replay_commit(struct lp_replay *r, size_t n)
{
    n = LP_MIN(n, lp_replay_tail_free(r)); /* a caller bug; never write past the chunk */
    if (r->tail == NULL)
        return;
    r->tail->len += n;
    r->tx_seq += n;
}

bool lp_replay_ack(struct lp_replay *r, uint64_t v)
{
    if (v <= r->acked)
        return false;
    r->acked = v;
    trim(r);
    return true;
}

/* The chunk holding byte `seq`, or NULL if no held chunk does. */
static struct lp_replay_chunk *find_chunk(struct lp_replay *r, uint64_t seq)
{
    struct lp_replay_chunk *c = r->hint;

    if (c == NULL || c->seq > seq)
        c = r->head;
    for (; c != NULL; c = c->next) {
        if (seq >= c->seq && seq - c->seq < c->len) {
            r->hint = c;
            return c;
        }
    }
    return NULL;
}

/* Size of the frame at chunk offset off. Our own bytes: the header was written by us. */
static size_t frame_size_at(const struct lp_replay_chunk *c, size_t off)
{
    return LP_FRAME_HEADER + lp_load_u16(c->data + off + 2);
}

bool lp_replay_ack_on_boundary(const struct lp_replay *r, uint64_t v)
{
    uint64_t pos = r->acked;
    const struct lp_replay_chunk *c = r->head;

    while (pos < v && c != NULL) {
        if (pos - c->seq >= c->len)
            c = c->next; /* pos is at this chunk's end: the next one starts there */
        else
            pos += frame_size_at(c, (size_t)(pos - c->seq));
    }
    return pos == v;
}

bool lp_replay_is_boundary(struct lp_replay *r, uint64_t seq)
{
    if (seq < r->acked || seq > r->tx_seq)
        return false;
    if (seq == r->tx_seq)
        return true;
    struct lp_replay_chunk *c = find_chunk(r, seq);
    if (c == NULL)
        return false;
    size_t target = (size_t)(seq - c->seq);
    size_t off = 0;
    while (off < target) /* frames tile the chunk, each at least a header long */
        off += frame_size_at(c, off);
    return off == target;
}

size_t lp_replay_peek(struct lp_replay *r, uint64_t seq, const uint8_t **data)
{
    struct lp_replay_chunk *c = find_chunk(r, seq);

    *data = NULL;
    if (c == NULL)
        return 0;
    size_t off = (size_t)(seq - c->seq);
    *data = c->data + off;
    return c->len - off;
}

size_t lp_replay_read(const struct lp_replay *r, uint64_t seq, const uint8_t **data)
{
    *data = NULL;
    for (const struct lp_replay_chunk *c = r->head; c != NULL; c = c->next) {
        if (seq >= c->seq && seq - c->seq < c->len) {
            size_t off = (size_t)(seq - c->seq);
            *data = c->data + off;
            return c->len - off;
        }
    }
    return 0;
}

size_t lp_replay_frame_size(struct lp_replay *r, uint64_t seq)
{
    struct lp_replay_chunk *c = find_chunk(r, seq);

    return c != NULL ? frame_size_at(c, (size_t)(seq - c->seq)) : 0;
}

size_t lp_replay_chunks(const struct lp_replay *r)
{
    size_t n = 0;

    for (const struct lp_replay_chunk *c = r->head; c != NULL; c = c->next)
        n++;
    return n;
}
