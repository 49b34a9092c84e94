/* mux_recv.c — a stream's inbound bytes and the credit they hold. See mux.h.
 *
 * Credit is returned only when the glue consumes bytes (lp_mux_recv_consumed), so what a
 * stream buffers is bounded by its window. A glue that must hold bytes it cannot pass on yet
 * — the start of an MCP line whose newline has not arrived — leaves them here, still counted,
 * and asks for more credit with lp_mux_recv_extend. The extension is taken from the same
 * budget as every window (cfg.receive_buffer, through m->granted), and paid back from the
 * first bytes consumed afterwards: their credit is not returned, so the window shrinks back
 * to what it was granted and the budget comes free for other streams. A stream refused an
 * extension waits on m->starved and hears READABLE again when budget comes free.
 */
#include "mux_internal.h"

#include <stdint.h>

size_t lp_mux_recv_peek(lp_mux *m, uint32_t id, const uint8_t **data)
{
    struct stream *s = mux_find(m, id);

    *data = NULL;
    if (s == NULL)
        return 0;
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    return lp_streamq_peek(&s->inq, data);
}

size_t lp_mux_recv_peekv(lp_mux *m, uint32_t id, struct lp_mux_span *spans, size_t max)
{
    struct stream *s = mux_find(m, id);

    if (s == NULL)
        return 0;
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    return lp_streamq_peekv(&s->inq, spans, max);
}

size_t lp_mux_recv_find(lp_mux *m, uint32_t id, size_t from, uint8_t byte)
{
    struct stream *s = mux_find(m, id);

    if (s == NULL)
        return SIZE_MAX;
    s->flags &= ~(uint32_t)SF_READABLE_ARMED; /* a look, like a peek: new bytes re-arm */
    return lp_streamq_find(&s->inq, from, byte);
}

size_t lp_mux_recv_copy(const lp_mux *m, uint32_t id, uint8_t *out, size_t n)
{
    const struct stream *s = mux_find(m, id);

    return s != NULL ? lp_streamq_copy(&s->inq, out, n) : 0;
}

void mux_wake_starved(lp_mux *m)
{
    while (!list_empty(&m->starved)) {
        struct stream *s = LP_CONTAINER_OF(m->starved.next, struct stream, starved);
        list_remove(&s->starved);
        s->flags |= SF_READABLE_ARMED;
        mux_queue_event(m, s, EV_READABLE);
    }
}

void lp_mux_recv_consumed(lp_mux *m, uint32_t id, size_t n)
{
    struct stream *s = mux_find(m, id);
    uint32_t pay;

    if (s == NULL)
        return;
    n = LP_MIN(n, s->inq.buffered);
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    lp_streamq_drop(&s->inq, n);
    m->buffered -= n;
    /* An extension is paid back first: window, recv_credit and unreported still add up,
     * since the bytes leave the queue and the window by the same amount. */
    pay = (uint32_t)LP_MIN((size_t)s->extended, n);
    promise_begin(m, s);
    s->extended -= pay;
    s->window -= pay;
    m->granted -= pay;
    s->unreported += (uint32_t)(n - pay);
    s->run = (uint32_t)LP_MIN((uint64_t)s->run + (n - pay), (uint64_t)UINT32_MAX);
    promise_end(m, s);
    if (pay > 0)
        mux_wake_starved(m);
    if (s->inq.buffered == 0)
        mux_clear_event(s, EV_READABLE);
    if (s->flags & SF_PEER_FIN) { /* no more DATA can come: credit would be wasted */
        mux_maybe_deliver_fin(m, s);
        return;
    }
    if (!(s->flags & SF_ESTABLISHED))
        return; /* no WINDOW before our OPEN_OK: lp_mux_accept sends it */
    mux_maybe_return_credit(m, s);
}

lp_err lp_mux_recv_extend(lp_mux *m, uint32_t id, size_t want, size_t *granted)
{
    struct stream *s = mux_find(m, id);
    size_t outstanding, left, grant;

    *granted = 0;
    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (!(s->flags & SF_ESTABLISHED))
        return LP_ERR_STATE; /* no WINDOW may precede OPEN_OK */
    if (s->flags & SF_PEER_FIN)
        return LP_ERR_CLOSED; /* nothing more will come, however much credit it has */
    /* What the peer may still send: now (recv_credit) or once our WINDOW goes out. */
    outstanding = (size_t)s->recv_credit + s->unreported;
    if (outstanding >= want)
        return LP_OK;
    if (want - outstanding > UINT32_MAX - s->window)
        return LP_ERR_TOO_BIG;
    left = m->cfg.receive_buffer > m->granted ? m->cfg.receive_buffer - m->granted : 0;
    grant = LP_MIN(want - outstanding, left);
    if (grant == 0) {
        list_append(&m->starved, &s->starved);
        return LP_ERR_NOSPACE;
    }
    list_remove(&s->starved);
    promise_begin(m, s);
    s->window += (uint32_t)grant;
    s->extended += (uint32_t)grant;
    s->unreported += (uint32_t)grant; /* sent as WINDOW like consumed credit */
    promise_end(m, s);
    m->granted += grant;
    *granted = grant;
    mux_queue_control(m, s, PC_WINDOW); /* last: may free s (never does here: no FIN) */
    return LP_OK;
}

size_t lp_mux_recv_buffered(const lp_mux *m, uint32_t id)
{
    const struct stream *s = mux_find(m, id);

    return s != NULL ? s->inq.buffered : 0;
}

size_t lp_mux_buffered(const lp_mux *m)
{
    return m->buffered;
}

size_t lp_mux_held(const lp_mux *m)
{
    return m->buffered + m->promised;
}

size_t lp_mux_granted(const lp_mux *m)
{
    return m->granted;
}
