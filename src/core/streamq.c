/* streamq.c — a mux stream's inbound chunk queue. See streamq.h. */
#include "limpet/streamq.h"

#include <stdlib.h>
#include <string.h>

#include "limpet/base.h"

struct lp_streamq_chunk {
    struct lp_streamq_chunk *next;
    size_t head; /* first unconsumed byte */
    size_t tail; /* end of the bytes written; head <= tail <= cap */
    size_t cap;
    uint8_t data[];
};

void lp_streamq_init(struct lp_streamq *q)
{
    q->head = q->tail = NULL;
    q->buffered = 0;
    q->chunk = 0;
}

void lp_streamq_clear(struct lp_streamq *q)
{
    /* Chunk by chunk, not by lp_streamq_drop: a reserved chunk may hold no bytes yet. */
    while (q->head != NULL) {
        struct lp_streamq_chunk *c = q->head;
        q->head = c->next;
        free(c);
    }
    q->tail = NULL;
    q->buffered = 0;
}

bool lp_streamq_reserve(struct lp_streamq *q, size_t n)
{
    struct lp_streamq_chunk *c = q->tail;

    if (c != NULL && c->cap - c->tail >= n)
        return true;
    size_t cap = LP_MAX(q->chunk ? q->chunk : (size_t)LP_STREAMQ_CHUNK, n);
    if ((c = malloc(sizeof(*c) + cap)) == NULL)
        return false;
    c->next = NULL;
    c->head = c->tail = 0;
    c->cap = cap;
    if (q->tail != NULL)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    return true;
}

bool lp_streamq_append(struct lp_streamq *q, const uint8_t *p, size_t n)
{
    struct lp_streamq_chunk *c;

    if (!lp_streamq_reserve(q, n))
        return false;
    c = q->tail;
    memcpy(c->data + c->tail, p, n);
    c->tail += n;
    q->buffered += n;
    return true;
}

void lp_streamq_drop(struct lp_streamq *q, size_t n)
{
    while (n > 0 && q->head != NULL) {
        struct lp_streamq_chunk *c = q->head;
        size_t take = LP_MIN(n, c->tail - c->head);
        c->head += take;
        q->buffered -= take;
        n -= take;
        if (c->head == c->tail) {
            q->head = c->next;
            if (q->head == NULL)
                q->tail = NULL;
            free(c);
        }
    }
}

size_t lp_streamq_peek(const struct lp_streamq *q, const uint8_t **data)
{
    *data = NULL;
    if (q->head == NULL)
        return 0;
    *data = q->head->data + q->head->head;
    return q->head->tail - q->head->head;
}

size_t lp_streamq_peekv(const struct lp_streamq *q, struct lp_mux_span *spans, size_t max)
{
    size_t n = 0;

    for (const struct lp_streamq_chunk *c = q->head; c != NULL && n < max; c = c->next) {
        if (c->tail == c->head)
            continue;
        spans[n].data = c->data + c->head;
        spans[n].len = c->tail - c->head;
        n++;
    }
    return n;
}

size_t lp_streamq_peek_at(const struct lp_streamq *q, size_t off, const uint8_t **data)
{
    *data = NULL;
    for (const struct lp_streamq_chunk *c = q->head; c != NULL; c = c->next) {
        size_t n = c->tail - c->head;
        if (off < n) {
            *data = c->data + c->head + off;
            return n - off;
        }
        off -= n;
    }
    return 0;
}

size_t lp_streamq_find(const struct lp_streamq *q, size_t from, uint8_t byte)
{
    size_t base = 0; /* offset of c's first unconsumed byte */

    for (const struct lp_streamq_chunk *c = q->head; c != NULL; c = c->next) {
        size_t len = c->tail - c->head;
        if (from < base + len) {
            size_t skip = from > base ? from - base : 0;
            const uint8_t *hit = memchr(c->data + c->head + skip, byte, len - skip);
            if (hit != NULL)
                return base + (size_t)(hit - (c->data + c->head));
        }
        base += len;
    }
    return SIZE_MAX;
}

size_t lp_streamq_copy(const struct lp_streamq *q, uint8_t *out, size_t n)
{
    size_t done = 0;

    for (const struct lp_streamq_chunk *c = q->head; c != NULL && done < n; c = c->next) {
        size_t take = LP_MIN(n - done, c->tail - c->head);
        memcpy(out + done, c->data + c->head, take);
        done += take;
    }
    return done;
}
