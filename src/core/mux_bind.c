/* mux_bind.c — BIND / BIND_OK / BIND_FAIL: the requests and answers of reverse forwarding.
 *
 * They are sequenced frames like stream frames, but they name a bind request, not a stream,
 * so they keep no per-id state here: two bounded FIFOs, one for frames the pipe had no room
 * for and one for frames received and not yet handed to the glue. What a bind means (a
 * listener, its policy) is the glue's business.
 */
#include <stdlib.h>
#include <string.h>

#include "mux_internal.h"

static struct bind_msg *ring_at(struct bind_ring *r, size_t i)
{
    return &r->q[(r->head + i) % LP_MUX_BIND_QUEUE];
}

static void ring_release(struct bind_ring *r)
{
    free(r->q);
    r->q = NULL;
    r->head = 0;
}

static lp_err ring_push(struct bind_ring *r, uint8_t type, uint32_t id, uint16_t code,
                        const void *text, size_t len)
{
    struct bind_msg *b;
    bool ok;
    char *copy;

    if (r->count == LP_MUX_BIND_QUEUE)
        return LP_ERR_NOSPACE;
    if (r->q == NULL && (r->q = calloc(LP_MUX_BIND_QUEUE, sizeof(*r->q))) == NULL)
        return LP_ERR_NOMEM;
    copy = mux_copy_text(text, len, &ok);
    if (!ok) {
        if (r->count == 0)
            ring_release(r);
        return LP_ERR_NOMEM;
    }
    b = ring_at(r, r->count);
    *b = (struct bind_msg){.type = type, .id = id, .code = code, .text = copy, .len = len};
    r->count++;
    return LP_OK;
}

static void ring_pop(struct bind_ring *r)
{
    free(r->q[r->head].text);
    r->q[r->head].text = NULL;
    r->head = (r->head + 1) % LP_MUX_BIND_QUEUE;
    if (--r->count == 0)
        ring_release(r);
}

void mux_bind_clear(lp_mux *m)
{
    while (m->bind_out.count > 0)
        ring_pop(&m->bind_out);
    while (m->bind_in.count > 0)
        ring_pop(&m->bind_in);
    ring_release(&m->bind_out); /* a load refused before its first message was in */
    ring_release(&m->bind_in);
}

lp_err mux_bind_recv(lp_mux *m, const struct lp_frame *f, const char **why)
{
    struct lp_text t;

    if (lp_text_decode(f, &t, why) != LP_OK)
        return LP_ERR_PROTOCOL;
    switch (ring_push(&m->bind_in, f->type, f->stream_id, t.code, t.msg, t.msg_len)) {
    case LP_OK:
        return LP_OK;
    case LP_ERR_NOSPACE:
        *why = "too many bind frames at once";
        return LP_ERR_PROTOCOL;
    default:
        *why = "out of memory for a bind frame";
        return LP_ERR_PROTOCOL;
    }
}

bool mux_bind_flush(lp_mux *m)
{
    uint8_t buf[LP_FRAME_HEADER + 2 + LP_FRAME_MAX_TEXT];

    while (m->bind_out.count > 0) {
        const struct bind_msg *b = ring_at(&m->bind_out, 0);
        size_t n = lp_text_encode(buf, sizeof(buf), b->type, b->id, b->code, b->text, b->len);
        lp_err rc = mux_send_frame(m, buf, n);
        if (rc == LP_ERR_NOSPACE)
            return false;
        ring_pop(&m->bind_out); /* sent, or impossible to encode: never retried */
        (void)rc;
    }
    return true;
}

bool mux_bind_next_event(lp_mux *m, struct lp_mux_event *ev)
{
    struct bind_msg *b;

    if (m->bind_in.count == 0)
        return false;
    b = ring_at(&m->bind_in, 0);
    ev->type = b->type == LP_FT_BIND      ? LP_MUX_EV_BIND
               : b->type == LP_FT_BIND_OK ? LP_MUX_EV_BIND_OK
                                          : LP_MUX_EV_BIND_FAIL;
    ev->id = b->id;
    ev->code = b->code;
    ev->text_len = b->len;
    ev->text = mux_lend(m, 0, &b->text); /* lent like every event text */
    ring_pop(&m->bind_in);
    return true;
}

static lp_err queue_bind(lp_mux *m, uint8_t type, uint32_t id, uint16_t code, const char *text,
                         size_t len)
{
    lp_err rc;

    if (id == 0 || len > LP_FRAME_MAX_TEXT || (len > 0 && (text == NULL || memchr(text, 0, len))))
        return LP_ERR_INVALID;
    if ((rc = ring_push(&m->bind_out, type, id, code, text, len)) != LP_OK)
        return rc;
    (void)mux_bind_flush(m);
    return LP_OK;
}

lp_err lp_mux_bind(lp_mux *m, uint32_t id, const char *spec, size_t len)
{
    return queue_bind(m, LP_FT_BIND, id, 0, spec, len);
}

lp_err lp_mux_bind_ok(lp_mux *m, uint32_t id, uint16_t port, const char *addr, size_t len)
{
    return queue_bind(m, LP_FT_BIND_OK, id, port, addr, len);
}

lp_err lp_mux_bind_fail(lp_mux *m, uint32_t id, uint16_t code, const char *reason, size_t len)
{
    return queue_bind(m, LP_FT_BIND_FAIL, id, code, reason, len);
}
