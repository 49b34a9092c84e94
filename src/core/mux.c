/* mux.c — streams inside the pipe's sequenced stream. See mux.h and docs/PROTOCOL-mux.md.
 *
 * Every control frame (OPEN, OPEN_OK, WINDOW, FIN, RST) goes out through one path: a pending
 * bit on the stream, the stream on the `pending` list, then flush_pending() in list order.
 * When the pipe has room that happens at once; when it is full the bits wait, and because the
 * list is drained strictly in order nothing ever overtakes an older frame (an OPEN of a lower
 * id always precedes a higher one, a FIN always follows its OPEN). flush_pending() may free
 * the stream it sends for (its last FIN or RST went out), so callers queue control last.
 *
 * Events go out through the event queue in mux_event.c; live streams are found by id in an
 * idtab (idtab.h) and hold their inbound bytes in a streamq (streamq.h).
 */
#include "mux_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------ */

struct stream *mux_find(const lp_mux *m, uint32_t id)
{
    struct lp_idtab_node *n = lp_idtab_find(&m->ids, id);

    return n != NULL ? LP_CONTAINER_OF(n, struct stream, hn) : NULL;
}

static size_t text_len(const char *msg)
{
    return msg != NULL ? strnlen(msg, LP_FRAME_MAX_TEXT) : 0;
}

char *mux_copy_text(const void *p, size_t n, bool *ok)
{
    char *c = NULL;

    *ok = true;
    if (n > 0 && (c = malloc(n)) == NULL)
        *ok = false;
    else if (n > 0)
        memcpy(c, p, n);
    return c;
}

/* Replaces *text with a copy of p[0..n). Out of memory it is left empty: a GOODBYE still
 * says goodbye, only without its reason. */
static void set_text(char **text, size_t *len, const void *p, size_t n)
{
    bool ok;

    free(*text);
    *text = mux_copy_text(p, n, &ok);
    *len = ok ? n : 0;
}

static size_t object_count(const lp_mux *m)
{
    return m->ids.count + m->nzombie + (m->rec_tail - m->rec_head);
}

static bool ours(const lp_mux *m, uint32_t id)
{
    return ((id & 1u) == 1u) == m->is_client;
}

/* The window for a new stream: what is left of receive_buffer, at least LP_MUX_MIN_WINDOW,
 * at most stream_window. */
static void grant_window(lp_mux *m, struct stream *s)
{
    size_t left = m->cfg.receive_buffer > m->granted ? m->cfg.receive_buffer - m->granted : 0;
    size_t w = LP_MIN(LP_MAX(left, (size_t)LP_MUX_MIN_WINDOW), (size_t)m->cfg.stream_window);

    s->window = (uint32_t)w;
    s->recv_credit = s->window;
    s->inq.chunk = LP_MIN(w, (size_t)LP_STREAMQ_CHUNK);
    m->granted += w;
}

/* ---- stream lifetime ---------------------------------------------------------------- */

static struct stream *stream_new(lp_mux *m, uint32_t id, uint32_t flags)
{
    struct stream *s;

    if (!mux_reserve_record(m) || (s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->id = id;
    s->flags = flags;
    lp_streamq_init(&s->inq);
    s->hn.id = id;
    lp_idtab_insert(&m->ids, &s->hn);
    return s;
}

void mux_free_open_copies(struct stream *s)
{
    free(s->target);
    free(s->arg);
    s->target = s->arg = NULL;
    s->target_len = s->arg_len = 0;
}

/* The last step for every stream object, live or zombie. */
static void stream_destroy(lp_mux *m, struct stream *s)
{
    list_remove(&s->pend);
    if (s->flags & SF_ZOMBIE)
        m->nzombie--;
    mux_free_open_copies(s);
    free(s->rst_msg);
    free(s);
}

/* Takes a live stream out of the id table, freeing its buffers. final is EV_CLOSED, EV_RST or
 * 0 (no event); it becomes a record unless the glue never heard of the stream (its OPEN event
 * was not drained yet). The caller then destroys or zombifies s. */
static void end_stream(lp_mux *m, struct stream *s, uint8_t final, uint16_t code, const char *msg,
                       size_t msg_len)
{
    if (final != 0 && (s->flags & (SF_OURS | SF_OPEN_SEEN)))
        mux_push_record(m, s, final, code, msg, msg_len);
    lp_idtab_remove(&m->ids, &s->hn);
    list_remove(&s->evq);
    list_remove(&s->wait);
    list_remove(&s->starved);
    s->events = 0;
    m->granted -= s->window;
    m->buffered -= s->inq.buffered;
    promise_begin(m, s);
    s->window = 0;
    s->extended = 0;
    lp_streamq_clear(&s->inq);
    mux_free_open_copies(s);
    mux_wake_starved(m); /* its window is free for others' extensions */
}

static void flush_pending(lp_mux *m);

/* An ended stream keeps only an RST to send. If its OPEN never went out the peer has never
 * heard of the id, so there is nothing to say: ids only need to increase, not be dense. */
static void zombify(lp_mux *m, struct stream *s, uint16_t code, const char *msg, size_t len)
{
    bool ok;

    if (s->pending & PC_OPEN) {
        stream_destroy(m, s);
        return;
    }
    s->flags |= SF_ZOMBIE;
    m->nzombie++;
    s->rst_code = code;
    s->rst_msg = mux_copy_text(msg, len, &ok);
    s->rst_len = ok ? len : 0;
    s->pending = PC_RST;
    list_append(&m->pending, &s->pend);
    flush_pending(m);
}

/* A stream-level fault: the glue hears RST (code), the peer is sent RST (code). */
static void fail_stream(lp_mux *m, struct stream *s, uint16_t code, const char *msg)
{
    end_stream(m, s, EV_RST, code, msg, strlen(msg));
    zombify(m, s, code, msg, strlen(msg));
}

static void maybe_finish(lp_mux *m, struct stream *s)
{
    if ((s->flags & SF_FIN_SENT) && (s->flags & SF_FIN_DELIVERED)) {
        end_stream(m, s, EV_CLOSED, 0, NULL, 0);
        stream_destroy(m, s);
    }
}

/* The FIN event waits for every byte before it and, on a stream the peer opened, for the
 * accept, so the glue never hears of a FIN on a stream it has not taken. May free s. */
void mux_maybe_deliver_fin(lp_mux *m, struct stream *s)
{
    if (!(s->flags & SF_PEER_FIN) || (s->flags & SF_FIN_DELIVERED) ||
        !(s->flags & SF_ESTABLISHED) || s->inq.buffered > 0)
        return;
    s->flags |= SF_FIN_DELIVERED;
    mux_queue_event(m, s, EV_FIN);
    maybe_finish(m, s);
}

/* ---- control frames ----------------------------------------------------------------- */

static size_t encode_control(const struct stream *s, uint8_t bit, uint8_t *buf, size_t cap)
{
    struct lp_open o;

    switch (bit) {
    case PC_OPEN:
        o.kind = s->kind;
        o.window = s->window;
        o.target = (const uint8_t *)s->target;
        o.target_len = s->target_len;
        o.arg = (const uint8_t *)s->arg;
        o.arg_len = s->arg_len;
        return lp_open_encode(buf, cap, s->id, &o);
    case PC_OPEN_OK:
        return lp_u32_encode(buf, cap, LP_FT_OPEN_OK, s->id, s->window);
    case PC_WINDOW:
        return lp_u32_encode(buf, cap, LP_FT_WINDOW, s->id, s->unreported);
    case PC_FIN:
        return lp_empty_encode(buf, cap, LP_FT_FIN, s->id);
    default:
        return lp_text_encode(buf, cap, LP_FT_RST, s->id, s->rst_code, s->rst_msg, s->rst_len);
    }
}

/* LP_ERR_NOSPACE: try again later (the pipe is full or out of memory). Anything else means
 * the frame is gone: sent, or (a bug, every field was checked when queued) unencodable. */
lp_err mux_send_frame(lp_mux *m, const uint8_t *buf, size_t n)
{
    lp_err rc;

    /* A control frame lands where a reserved DATA payload would: the reservation is void. */
    m->reserved = 0;
    if (n == 0)
        return LP_ERR_INVALID;
    rc = lp_pipe_send_frame(m->pipe, buf, n);
    if (rc != LP_ERR_NOSPACE && rc != LP_ERR_NOMEM)
        return rc;
    /* The pipe owes LP_PIPE_EV_ROOM only to a reserve that found it full; ask for one, so
     * the glue calls lp_mux_flush even when no stream has DATA waiting. */
    uint8_t *unused;
    (void)lp_pipe_reserve(m->pipe, 1, &unused);
    return LP_ERR_NOSPACE;
}

/* Sends s's pending frames in order. LP_ERR_NOSPACE: the pipe is full, s stays queued.
 * Otherwise s is off the list and may have been freed. */
static lp_err send_pending(lp_mux *m, struct stream *s)
{
    uint8_t buf[LP_FRAME_HEADER + 7 + 2 * LP_FRAME_MAX_TEXT];

    while (s->pending != 0) {
        uint8_t bit = s->pending & (uint8_t)-s->pending;
        if (bit == PC_WINDOW && s->unreported == 0) {
            s->pending &= (uint8_t)~bit;
            continue;
        }
        if (mux_send_frame(m, buf, encode_control(s, bit, buf, sizeof(buf))) == LP_ERR_NOSPACE)
            return LP_ERR_NOSPACE;
        s->pending &= (uint8_t)~bit;
        if (bit == PC_OPEN)
            mux_free_open_copies(s);
        if (bit == PC_WINDOW) {
            s->recv_credit += s->unreported;
            s->unreported = 0;
        }
        if (bit == PC_FIN)
            s->flags |= SF_FIN_SENT;
    }
    list_remove(&s->pend);
    if (s->flags & SF_ZOMBIE)
        stream_destroy(m, s);
    else
        maybe_finish(m, s);
    return LP_OK;
}

static void send_goodbye(lp_mux *m)
{
    uint8_t buf[LP_FRAME_HEADER + 2 + LP_FRAME_MAX_TEXT];
    size_t n = lp_text_encode(buf, sizeof(buf), LP_FT_GOODBYE, 0, m->goodbye_tx_code,
                              m->goodbye_tx_msg, m->goodbye_tx_len);

    if (mux_send_frame(m, buf, n) != LP_ERR_NOSPACE)
        m->goodbye_tx = false;
}

/* Strictly in list order: stop at the first frame that does not fit. */
static void flush_pending(lp_mux *m)
{
    struct node *n, *next;

    for (n = m->pending.next; n != &m->pending; n = next) {
        next = n->next; /* send_pending may free only the stream it is given */
        if (send_pending(m, LP_CONTAINER_OF(n, struct stream, pend)) != LP_OK)
            return;
    }
    if (!mux_bind_flush(m))
        return;
    if (m->goodbye_tx)
        send_goodbye(m);
}

/* Queues a control frame for s and sends what the pipe takes. s may be freed on return. */
void mux_queue_control(lp_mux *m, struct stream *s, uint8_t bit)
{
    s->pending |= bit;
    list_append(&m->pending, &s->pend);
    flush_pending(m);
}

/* Doubles s's window (see mux_maybe_return_credit) when it has earned it. The extra credit
 * goes out in the WINDOW about to be sent, and is taken from the budget like any grant. */
static void maybe_grow(lp_mux *m, struct stream *s)
{
    size_t cap = m->cfg.stream_window_max, grow;

    if (s->extended != 0 || s->inq.buffered != 0 || s->run < s->window || s->window >= cap)
        return; /* lent credit, a local end behind, not a window's worth yet, or at the cap */
    grow = LP_MIN((size_t)s->window, cap - s->window);
    if (m->granted + grow > m->cfg.receive_buffer / 2)
        return; /* half the budget stays for new streams' full grants */
    s->window += (uint32_t)grow;
    s->unreported += (uint32_t)grow;
    s->run = 0;
    m->granted += grow;
}

void mux_maybe_return_credit(lp_mux *m, struct stream *s)
{
    if (s->unreported == 0 || s->unreported < s->window / 4)
        return;
    maybe_grow(m, s);
    mux_queue_control(m, s, PC_WINDOW);
}

/* ---- receiving ---------------------------------------------------------------------- */

static lp_err protocol(const char **why, const char *reason)
{
    *why = reason;
    return LP_ERR_PROTOCOL;
}

/* Refuses a peer OPEN without making it a live stream. */
static lp_err refuse(lp_mux *m, uint32_t id, uint16_t code, const char *msg, const char **why)
{
    struct stream *s;

    /* Zombies pile up only while the pipe is full; a peer that keeps opening then is
     * flooding us, and memory must stay bounded. */
    if (m->nzombie >= m->cfg.max_streams)
        return protocol(why, "peer opens streams faster than they can be refused");
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        *why = "out of memory";
        return LP_ERR_NOMEM;
    }
    s->id = id;
    zombify(m, s, code, msg, strlen(msg));
    return LP_OK;
}

static lp_err recv_open(lp_mux *m, const struct lp_frame *f, const char **why)
{
    struct lp_open o;
    struct stream *s;
    bool ok1, ok2;
    lp_err rc;

    if ((rc = lp_open_decode(f, &o, why)) != LP_OK)
        return LP_ERR_PROTOCOL;
    if (ours(m, f->stream_id))
        return protocol(why, "OPEN with our stream id parity");
    if (f->stream_id <= m->peer_highest)
        return protocol(why, "OPEN reuses a stream id");
    m->peer_highest = f->stream_id;
    if (object_count(m) >= m->cfg.max_streams)
        return refuse(m, f->stream_id, LP_RST_LIMIT, "too many streams", why);
    if ((s = stream_new(m, f->stream_id, 0)) == NULL)
        return refuse(m, f->stream_id, LP_RST_INTERNAL, "out of memory", why);
    s->target = mux_copy_text(o.target, o.target_len, &ok1);
    s->arg = mux_copy_text(o.arg, o.arg_len, &ok2);
    if (!ok1 || !ok2) {
        end_stream(m, s, 0, 0, NULL, 0);
        stream_destroy(m, s);
        return refuse(m, f->stream_id, LP_RST_INTERNAL, "out of memory", why);
    }
    s->target_len = o.target_len;
    s->arg_len = o.arg_len;
    s->kind = o.kind;
    s->send_credit = o.window;
    grant_window(m, s); /* now: the opener's early DATA may follow its OPEN */
    mux_queue_event(m, s, EV_OPEN);
    return LP_OK;
}

/* The stream a frame names: NULL with LP_OK for an id already closed (a harmless race with
 * our RST or close), LP_ERR_PROTOCOL for an id never opened. */
static lp_err find_target(const lp_mux *m, uint32_t id, struct stream **sp, const char **why)
{
    bool seen;

    if (id == 0)
        return protocol(why, "stream frame for stream 0");
    if ((*sp = mux_find(m, id)) != NULL)
        return LP_OK;
    seen = ours(m, id) ? id < m->next_id : id <= m->peer_highest;
    return seen ? LP_OK : protocol(why, "frame for a stream never opened");
}

static void recv_open_ok(lp_mux *m, struct stream *s, uint32_t window)
{
    if (!(s->flags & SF_OURS)) {
        fail_stream(m, s, LP_RST_PROTOCOL, "OPEN_OK for a stream the peer opened");
        return;
    }
    if (s->flags & SF_ESTABLISHED) {
        fail_stream(m, s, LP_RST_PROTOCOL, "duplicate OPEN_OK");
        return;
    }
    uint32_t early = LP_MUX_EARLY_DATA - s->send_credit; /* sent before this OPEN_OK */
    if (window < early) {
        fail_stream(m, s, LP_RST_PROTOCOL, "OPEN_OK window below the data sent before it");
        return;
    }
    s->flags |= SF_ESTABLISHED;
    s->send_credit = window - early;
    mux_queue_event(m, s, EV_OPEN_OK);
}

/* The opener's side of a stream is not open until OPEN_OK: nothing but RST may precede it. */
static bool before_open_ok(const struct stream *s)
{
    return (s->flags & SF_OURS) && !(s->flags & SF_ESTABLISHED);
}

static void recv_data(lp_mux *m, struct stream *s, const struct lp_frame *f)
{
    if (before_open_ok(s)) {
        fail_stream(m, s, LP_RST_PROTOCOL, "data before OPEN_OK");
        return;
    }
    if (s->flags & SF_PEER_FIN) {
        fail_stream(m, s, LP_RST_PROTOCOL, "data after FIN");
        return;
    }
    if (f->len > s->recv_credit) {
        fail_stream(m, s, LP_RST_PROTOCOL, "data beyond window");
        return;
    }
    if (!(s->flags & SF_ESTABLISHED) && s->window - s->recv_credit + f->len > LP_MUX_EARLY_DATA) {
        fail_stream(m, s, LP_RST_PROTOCOL, "more data before OPEN_OK than the early allowance");
        return;
    }
    if (f->len == 0)
        return;
    if (!lp_streamq_append(&s->inq, f->payload, f->len)) {
        fail_stream(m, s, LP_RST_INTERNAL, "out of memory");
        return;
    }
    promise_begin(m, s);
    s->recv_credit -= (uint32_t)f->len;
    promise_end(m, s);
    m->buffered += f->len;
    if (!(s->flags & SF_READABLE_ARMED)) {
        s->flags |= SF_READABLE_ARMED;
        mux_queue_event(m, s, EV_READABLE);
    }
}

static void recv_window(lp_mux *m, struct stream *s, uint32_t inc)
{
    if (before_open_ok(s)) {
        fail_stream(m, s, LP_RST_PROTOCOL, "WINDOW before OPEN_OK");
        return;
    }
    if (inc > UINT32_MAX - s->send_credit) {
        fail_stream(m, s, LP_RST_PROTOCOL, "window overflow");
        return;
    }
    s->send_credit += inc;
    if ((s->flags & SF_BLOCK_CREDIT) && inc > 0) {
        s->flags &= ~(uint32_t)SF_BLOCK_CREDIT;
        mux_queue_event(m, s, EV_WRITABLE);
    }
}

static void recv_fin(lp_mux *m, struct stream *s)
{
    if (before_open_ok(s)) {
        fail_stream(m, s, LP_RST_PROTOCOL, "FIN before OPEN_OK");
        return;
    }
    if (s->flags & SF_PEER_FIN) {
        fail_stream(m, s, LP_RST_PROTOCOL, "duplicate FIN");
        return;
    }
    s->flags |= SF_PEER_FIN;
    mux_maybe_deliver_fin(m, s);
}

static void recv_rst(lp_mux *m, struct stream *s, const struct lp_text *t)
{
    /* The peer has forgotten the stream: nothing more is sent for it, not even our RST. */
    end_stream(m, s, EV_RST, t->code, (const char *)t->msg, t->msg_len);
    stream_destroy(m, s);
}

static lp_err recv_goodbye(lp_mux *m, const struct lp_frame *f, const char **why)
{
    struct lp_text t;

    if (lp_text_decode(f, &t, why) != LP_OK)
        return LP_ERR_PROTOCOL;
    m->goodbye_rx = true;
    m->goodbye_rx_code = t.code;
    set_text(&m->goodbye_rx_msg, &m->goodbye_rx_len, t.msg, t.msg_len);
    return LP_OK;
}

/* Decodes the typed payload first: a malformed frame is a session fault whatever the id. */
static lp_err recv_stream_frame(lp_mux *m, const struct lp_frame *f, const char **why)
{
    struct stream *s;
    struct lp_text t;
    uint32_t v = 0;
    lp_err rc;

    if (f->type == LP_FT_OPEN_OK || f->type == LP_FT_WINDOW)
        rc = lp_u32_decode(f, &v, why);
    else if (f->type == LP_FT_RST)
        rc = lp_text_decode(f, &t, why);
    else
        rc = f->type == LP_FT_FIN && f->len != 0 ? protocol(why, "FIN with a payload") : LP_OK;
    if (rc != LP_OK)
        return LP_ERR_PROTOCOL;
    if ((rc = find_target(m, f->stream_id, &s, why)) != LP_OK || s == NULL)
        return rc;
    switch (f->type) {
    case LP_FT_OPEN_OK:
        recv_open_ok(m, s, v);
        break;
    case LP_FT_DATA:
        recv_data(m, s, f);
        break;
    case LP_FT_WINDOW:
        recv_window(m, s, v);
        break;
    case LP_FT_FIN:
        recv_fin(m, s);
        break;
    default:
        recv_rst(m, s, &t);
        break;
    }
    return LP_OK;
}

lp_err lp_mux_recv(lp_mux *m, const struct lp_frame *f, const char **why)
{
    const char *dummy;

    if (why == NULL)
        why = &dummy;
    *why = NULL;
    if (f->flags != 0)
        return protocol(why, "unknown frame flags");
    switch (f->type) {
    case LP_FT_OPEN:
        return recv_open(m, f, why);
    case LP_FT_OPEN_OK:
    case LP_FT_DATA:
    case LP_FT_WINDOW:
    case LP_FT_FIN:
    case LP_FT_RST:
        return recv_stream_frame(m, f, why);
    case LP_FT_GOODBYE:
        return recv_goodbye(m, f, why);
    case LP_FT_BIND:
    case LP_FT_BIND_OK:
    case LP_FT_BIND_FAIL:
        return mux_bind_recv(m, f, why);
    default:
        return protocol(why, "not a mux frame");
    }
}

/* ---- local actions ------------------------------------------------------------------ */

lp_err lp_mux_new(const struct lp_mux_config *cfg, lp_pipe *pipe, bool is_client, lp_mux **mp)
{
    lp_mux *m;

    *mp = NULL;
    if (cfg == NULL || pipe == NULL || cfg->stream_window == 0 || cfg->max_streams == 0)
        return LP_ERR_INVALID;
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return LP_ERR_NOMEM;
    if (lp_idtab_init(&m->ids) != LP_OK) {
        free(m);
        return LP_ERR_NOMEM;
    }
    m->cfg = *cfg;
    m->pipe = pipe;
    m->is_client = is_client;
    m->next_id = is_client ? 1 : 2;
    list_init(&m->pending);
    list_init(&m->waiting);
    list_init(&m->starved);
    list_init(&m->events);
    *mp = m;
    return LP_OK;
}

void lp_mux_free(lp_mux *m)
{
    struct lp_idtab_node *n;
    size_t cursor = 0;

    if (m == NULL)
        return;
    while ((n = lp_idtab_drain_next(&m->ids, &cursor)) != NULL) {
        struct stream *s = LP_CONTAINER_OF(n, struct stream, hn);
        end_stream(m, s, 0, 0, NULL, 0);
        stream_destroy(m, s);
    }
    while (!list_empty(&m->pending)) /* only zombies are left */
        stream_destroy(m, LP_CONTAINER_OF(m->pending.next, struct stream, pend));
    mux_drop_records(m);
    mux_bind_clear(m);
    mux_free_lent(m);
    free(m->goodbye_tx_msg);
    free(m->goodbye_rx_msg);
    free(m->recs);
    lp_idtab_clear(&m->ids);
    free(m);
}

static bool valid_text(const char *p, size_t n)
{
    return n == 0 || (p != NULL && memchr(p, 0, n) == NULL);
}

lp_err lp_mux_open(lp_mux *m, uint8_t kind, const char *target, size_t target_len, const char *arg,
                   size_t arg_len, uint32_t *id)
{
    struct stream *s;
    char *t = NULL, *a = NULL;
    bool ok1, ok2;
    lp_err rc = LP_ERR_NOMEM;

    *id = 0;
    if (target_len > LP_FRAME_MAX_TEXT || arg_len > LP_FRAME_MAX_TEXT)
        return LP_ERR_TOO_BIG;
    if (kind < LP_KIND_TCP || kind > LP_KIND_REVERSE || target_len == 0 ||
        !valid_text(target, target_len) || !valid_text(arg, arg_len))
        return LP_ERR_INVALID;
    if (object_count(m) >= m->cfg.max_streams || m->next_id > UINT32_MAX)
        return LP_ERR_NOSPACE;
    t = mux_copy_text(target, target_len, &ok1);
    a = mux_copy_text(arg, arg_len, &ok2);
    if (!ok1 || !ok2 || (s = stream_new(m, (uint32_t)m->next_id, SF_OURS)) == NULL)
        goto out;
    m->next_id += 2;
    s->kind = kind;
    s->target = t;
    s->arg = a;
    s->target_len = target_len;
    s->arg_len = arg_len;
    t = a = NULL; /* the stream owns them until its OPEN is sent */
    grant_window(m, s);
    s->send_credit = LP_MUX_EARLY_DATA; /* until OPEN_OK says how much the peer grants */
    *id = s->id;
    rc = LP_OK;
    mux_queue_control(m, s, PC_OPEN);
out:
    free(t);
    free(a);
    return rc;
}

lp_err lp_mux_accept(lp_mux *m, uint32_t id)
{
    struct stream *s = mux_find(m, id);

    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (s->flags & (SF_OURS | SF_ESTABLISHED))
        return LP_ERR_STATE;
    s->flags |= SF_ESTABLISHED | SF_OPEN_SEEN;
    mux_clear_event(s, EV_OPEN);
    mux_free_open_copies(s);
    /* The window was granted when the OPEN arrived (early DATA needed it). Queued before
     * OPEN_OK so that s cannot have been freed: our FIN is not sent yet. */
    mux_maybe_deliver_fin(m, s);
    mux_queue_control(m, s, PC_OPEN_OK);
    mux_maybe_return_credit(m, s); /* early bytes the glue took before accepting */
    return LP_OK;
}

void lp_mux_reset(lp_mux *m, uint32_t id, uint16_t code, const char *msg)
{
    struct stream *s = mux_find(m, id);

    if (s == NULL)
        return;
    end_stream(m, s, 0, 0, NULL, 0);
    zombify(m, s, code, msg, text_len(msg));
}

lp_err lp_mux_shutdown(lp_mux *m, uint32_t id)
{
    struct stream *s = mux_find(m, id);

    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (s->flags & SF_FIN_WANTED)
        return LP_OK; /* FIN goes out once */
    if (!(s->flags & (SF_OURS | SF_ESTABLISHED)))
        return LP_ERR_STATE;
    s->flags |= SF_FIN_WANTED;
    s->flags &= ~(uint32_t)SF_BLOCK_CREDIT;
    list_remove(&s->wait);
    mux_clear_event(s, EV_WRITABLE);
    if (m->reserved_id == id)
        m->reserved = 0; /* a late commit would put DATA after the FIN */
    mux_queue_control(m, s, PC_FIN);
    return LP_OK;
}

/* ---- data --------------------------------------------------------------------------- */

size_t lp_mux_send_reservev(lp_mux *m, uint32_t id, struct lp_span *spans, size_t nspan,
                            size_t *count)
{
    struct stream *s = mux_find(m, id);
    size_t max, room;

    *count = 0;
    m->reserved = 0;
    /* An acceptor sends only after its OPEN_OK; an opener may send its early credit at once,
     * but never ahead of its own OPEN. */
    if (s == NULL || nspan == 0 || (s->flags & SF_FIN_WANTED) ||
        !(s->flags & (SF_ESTABLISHED | SF_OURS)))
        return 0;
    if (s->pending & PC_OPEN) {
        list_append(&m->waiting, &s->wait);
        return 0;
    }
    if (s->pending & PC_OPEN_OK) { /* no DATA may overtake our OPEN_OK */
        list_append(&m->waiting, &s->wait);
        return 0;
    }
    if (s->send_credit == 0) {
        s->flags |= SF_BLOCK_CREDIT;
        return 0;
    }
    max = LP_MIN((size_t)s->send_credit, nspan * (size_t)LP_FRAME_MAX_PAYLOAD);
    if ((room = lp_pipe_reservev(m->pipe, max, spans, nspan, count)) == 0) {
        list_append(&m->waiting, &s->wait);
        return 0;
    }
    m->reserved_id = id;
    m->reserved = room;
    return room;
}

size_t lp_mux_send_reserve(lp_mux *m, uint32_t id, uint8_t **buf)
{
    struct lp_span span = {NULL, 0};
    size_t count;
    size_t room = lp_mux_send_reservev(m, id, &span, 1, &count);

    *buf = room ? span.p : NULL;
    return room;
}

void lp_mux_send_commitv(lp_mux *m, uint32_t id, size_t n)
{
    struct stream *s = mux_find(m, id);

    /* Anything but the reservation just made is a caller bug; dropping it keeps the
     * stream's credit and the pipe consistent. */
    if (s == NULL || id != m->reserved_id || n == 0 || n > m->reserved)
        return;
    m->reserved = 0;
    s->send_credit -= (uint32_t)n;
    lp_pipe_commitv(m->pipe, LP_FT_DATA, 0, id, n);
}

void lp_mux_send_commit(lp_mux *m, uint32_t id, size_t n)
{
    lp_mux_send_commitv(m, id, n);
}

lp_err lp_mux_send(lp_mux *m, uint32_t id, const uint8_t *data, size_t n, size_t *taken)
{
    struct stream *s = mux_find(m, id);

    *taken = 0;
    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (s->flags & SF_FIN_WANTED)
        return LP_ERR_CLOSED;
    /* Each round takes at least one byte or stops, so n bounds the loop. */
    while (*taken < n) {
        uint8_t *buf;
        size_t room = lp_mux_send_reserve(m, id, &buf);
        if (room == 0)
            break;
        room = LP_MIN(room, n - *taken);
        memcpy(buf, data + *taken, room);
        lp_mux_send_commit(m, id, room);
        *taken += room;
    }
    return LP_OK;
}

/* ---- session ------------------------------------------------------------------------ */

void lp_mux_flush(lp_mux *m)
{
    struct node *n, *next;

    flush_pending(m);
    if (lp_pipe_tx_room(m->pipe) == 0)
        return; /* still full: LP_PIPE_EV_ROOM brings us back */
    for (n = m->waiting.next; n != &m->waiting; n = next) {
        struct stream *s = LP_CONTAINER_OF(n, struct stream, wait);
        next = n->next;
        if (s->pending & PC_OPEN_OK)
            continue;
        list_remove(&s->wait);
        mux_queue_event(m, s, EV_WRITABLE);
    }
}

void lp_mux_goodbye(lp_mux *m, uint16_t code, const char *msg)
{
    m->goodbye_tx = true;
    m->goodbye_tx_code = code;
    set_text(&m->goodbye_tx_msg, &m->goodbye_tx_len, msg, text_len(msg));
    flush_pending(m); /* GOODBYE goes after every control frame still waiting */
}

void lp_mux_reset_all(lp_mux *m, uint16_t code, const char *msg)
{
    size_t len = text_len(msg), cursor = 0;
    struct lp_idtab_node *n;

    while ((n = lp_idtab_drain_next(&m->ids, &cursor)) != NULL) {
        struct stream *s = LP_CONTAINER_OF(n, struct stream, hn);
        end_stream(m, s, EV_RST, code, msg, len);
        stream_destroy(m, s);
    }
    while (!list_empty(&m->pending))
        stream_destroy(m, LP_CONTAINER_OF(m->pending.next, struct stream, pend));
    m->goodbye_tx = false;
    m->reserved = 0;
    mux_bind_clear(m);
}

/* ---- small accessors ---------------------------------------------------------------- */

void lp_mux_set_user(lp_mux *m, uint32_t id, void *user)
{
    struct stream *s = mux_find(m, id);

    if (s != NULL)
        s->user = user;
}

void *lp_mux_user(const lp_mux *m, uint32_t id)
{
    const struct stream *s = mux_find(m, id);

    return s != NULL ? s->user : NULL;
}

size_t lp_mux_stream_count(const lp_mux *m)
{
    return m->ids.count;
}

bool lp_mux_has_stream(const lp_mux *m, uint32_t id)
{
    return mux_find(m, id) != NULL;
}
