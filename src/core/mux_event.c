/* mux_event.c — the mux's event queue. See mux.c for the design and mux.h for the contract.
 *
 * Events are bits on the stream plus the stream's place on the `events` FIFO, so the queue
 * is bounded by the stream count. A stream that is freed while the glue still has to hear of
 * it (RST, CLOSED) leaves a record behind; a record slot is reserved when the stream is
 * created, so freeing never needs memory.
 */
#include "mux_internal.h"

#include <stdlib.h>
#include <string.h>

void mux_queue_event(lp_mux *m, struct stream *s, uint8_t ev)
{
    s->events |= ev;
    list_append(&m->events, &s->evq);
}

void mux_clear_event(struct stream *s, uint8_t ev)
{
    s->events &= (uint8_t)~ev;
    if (s->events == 0)
        list_remove(&s->evq);
}

bool mux_reserve_record(lp_mux *m)
{
    if (m->rec_head == m->rec_tail) {
        m->rec_head = m->rec_tail = 0;
    } else if (m->rec_head > 0) {
        memmove(m->recs, m->recs + m->rec_head, (m->rec_tail - m->rec_head) * sizeof(*m->recs));
        m->rec_tail -= m->rec_head;
        m->rec_head = 0;
    }
    size_t need = m->rec_tail + m->ids.count + 1;
    if (need <= m->rec_cap)
        return true;
    size_t cap = LP_MAX(need, LP_MAX(m->rec_cap * 2, (size_t)16));
    struct record *r = realloc(m->recs, cap * sizeof(*r));
    if (r == NULL)
        return false;
    m->recs = r;
    m->rec_cap = cap;
    return true;
}

void mux_push_record(lp_mux *m, const struct stream *s, uint8_t final, uint16_t code,
                     const char *msg, size_t msg_len)
{
    struct record *r = &m->recs[m->rec_tail++];
    bool ok;

    r->id = s->id;
    r->user = s->user;
    r->code = code;
    r->events = final;
    if (final == EV_CLOSED) /* after RST nothing else matters; FIN must precede CLOSED */
        r->events |= s->events & (EV_OPEN_OK | EV_FIN);
    r->text = mux_copy_text(msg, msg_len, &ok);
    r->text_len = ok ? msg_len : 0;
}

void mux_drop_records(lp_mux *m)
{
    for (size_t i = m->rec_head; i < m->rec_tail; i++)
        free(m->recs[i].text);
    m->rec_head = m->rec_tail = 0;
}

/* ---- events out --------------------------------------------------------------------- */

static uint8_t lowest_bit(uint8_t bits)
{
    return bits & (uint8_t)-bits;
}

void mux_free_lent(lp_mux *m)
{
    free(m->lent[0]);
    free(m->lent[1]);
    m->lent[0] = m->lent[1] = NULL;
}

/* Hands *owned (a heap copy, NULL when empty) to the glue as slot's text of this event: the
 * mux keeps it until the next event is asked for. Never NULL. */
const char *mux_lend(lp_mux *m, unsigned slot, char **owned)
{
    free(m->lent[slot]);
    m->lent[slot] = *owned;
    *owned = NULL;
    return m->lent[slot] != NULL ? m->lent[slot] : "";
}

static enum lp_mux_event_type event_type(uint8_t bit)
{
    switch (bit) {
    case EV_OPEN:
        return LP_MUX_EV_OPEN;
    case EV_OPEN_OK:
        return LP_MUX_EV_OPEN_OK;
    case EV_WRITABLE:
        return LP_MUX_EV_WRITABLE;
    case EV_READABLE:
        return LP_MUX_EV_READABLE;
    case EV_FIN:
        return LP_MUX_EV_FIN;
    case EV_CLOSED:
        return LP_MUX_EV_CLOSED;
    default:
        return LP_MUX_EV_RST;
    }
}

static void pop_record(lp_mux *m, struct lp_mux_event *ev)
{
    struct record *r = &m->recs[m->rec_head];
    uint8_t bit = lowest_bit(r->events);

    ev->type = event_type(bit);
    ev->id = r->id;
    ev->user = r->user;
    r->events &= (uint8_t)~bit;
    if (bit == EV_RST) {
        ev->code = r->code;
        ev->text = mux_lend(m, 0, &r->text);
        ev->text_len = r->text_len;
    }
    if (r->events == 0) {
        free(r->text);
        if (++m->rec_head == m->rec_tail)
            m->rec_head = m->rec_tail = 0;
    }
}

static void pop_stream_event(lp_mux *m, struct lp_mux_event *ev)
{
    struct stream *s = LP_CONTAINER_OF(m->events.next, struct stream, evq);
    uint8_t bit = lowest_bit(s->events);

    ev->type = event_type(bit);
    ev->id = s->id;
    ev->user = s->user;
    mux_clear_event(s, bit);
    if (bit != EV_OPEN)
        return;
    /* The copies are lent from mux storage, so the stream's can go now. */
    s->flags |= SF_OPEN_SEEN;
    ev->kind = s->kind;
    ev->text_len = s->target_len;
    ev->text = mux_lend(m, 0, &s->target);
    ev->arg_len = s->arg_len;
    ev->arg = mux_lend(m, 1, &s->arg);
    mux_free_open_copies(s);
}

bool lp_mux_next_event(lp_mux *m, struct lp_mux_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    mux_free_lent(m); /* the last event's texts: borrowed until this call */
    if (m->rec_head < m->rec_tail) {
        pop_record(m, ev);
        return true;
    }
    if (!list_empty(&m->events)) {
        pop_stream_event(m, ev);
        return true;
    }
    if (mux_bind_next_event(m, ev))
        return true;
    if (m->goodbye_rx) { /* last: every stream event before it is worth more */
        m->goodbye_rx = false;
        ev->type = LP_MUX_EV_GOODBYE;
        ev->code = m->goodbye_rx_code;
        ev->text = m->goodbye_rx_msg != NULL ? m->goodbye_rx_msg : "";
        ev->text_len = m->goodbye_rx_len;
        return true;
    }
    return false;
}
