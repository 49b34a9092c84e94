/* mux_state.c — the mux saved to and loaded from a state file (upgrade in place). See mux.h
 * for the contract and docs/PROTOCOL.md ("State file") for the layout.
 *
 * Everything of the mux crosses except the glue's user pointers (the glue re-attaches them
 * by id) and a reservation (which never outlives the call that made it): every stream, live
 * or a zombie still owing its RST, with its flags, pending control frames, undrained events,
 * credit both ways and the inbound bytes the local socket has not taken; the three lists in
 * their order (pending control frames are sent strictly in list order, and events are handed
 * out in list order); records of freed streams the glue has not heard of yet; both bind FIFOs;
 * a GOODBYE either way.
 *
 * Streams are saved in increasing id order, so the same mux always saves to the same bytes,
 * and a load finds a stream by binary search and refuses a repeated id for free. A load
 * checks every invariant the mux relies on (mux_internal.h), so no state it accepts can make
 * the mux read or write out of bounds later.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/state.h"
#include "mux_internal.h"

enum {
    MF_CLIENT = 1u << 0,
    MF_GOODBYE_TX = 1u << 1, /* our GOODBYE waits for room in the pipe */
    MF_GOODBYE_RX = 1u << 2, /* the peer's GOODBYE waits to be handed out */
    MF_ALL = (1u << 3) - 1,
};

#define SF_ALL ((1u << 10) - 1)
#define PC_ALL ((1u << 5) - 1)
#define EV_ALL ((1u << 7) - 1)
#define RECORD_EVENTS (EV_OPEN_OK | EV_FIN | EV_CLOSED | EV_RST)
#define STREAM_MIN 39u /* the smallest saved stream: fixed fields and four empty lengths */

static bool ours(const lp_mux *m, uint32_t id)
{
    return ((id & 1u) == 1u) == m->is_client;
}

/* ---- saving ------------------------------------------------------------------------------- */

static int by_id(const void *a, const void *b)
{
    uint32_t x = (*(const struct stream *const *)a)->id;
    uint32_t y = (*(const struct stream *const *)b)->id;

    return x < y ? -1 : x > y;
}

/* Every stream object, live (in the id table) or zombie (only on the pending list), sorted by
 * id. Returns owned (free()), NULL with *n 0 when there are none or no memory (*ok false). */
static struct stream **all_streams(const lp_mux *m, size_t *n, bool *ok)
{
    struct stream **all;
    size_t k = 0;

    *n = m->ids.count + m->nzombie;
    *ok = true;
    if (*n == 0)
        return NULL;
    if ((all = calloc(*n, sizeof(*all))) == NULL) {
        *ok = false;
        return NULL;
    }
    for (size_t b = 0; b < m->ids.nbuckets; b++)
        for (struct lp_idtab_node *hn = m->ids.buckets[b]; hn != NULL && k < *n; hn = hn->next)
            all[k++] = LP_CONTAINER_OF(hn, struct stream, hn);
    for (const struct node *l = m->pending.next; l != &m->pending && k < *n; l = l->next) {
        struct stream *s = LP_CONTAINER_OF(l, struct stream, pend);
        if (s->flags & SF_ZOMBIE)
            all[k++] = s;
    }
    *n = k;
    qsort(all, k, sizeof(*all), by_id);
    return all;
}

static void save_stream(struct lp_state_wr *w, const struct stream *s)
{
    lp_state_put_u32(w, s->id);
    lp_state_put_u32(w, s->flags);
    lp_state_put_u8(w, s->pending);
    lp_state_put_u8(w, s->events);
    lp_state_put_u8(w, s->kind);
    lp_state_put_u16(w, s->rst_code);
    lp_state_put_u32(w, s->send_credit);
    lp_state_put_u32(w, s->window);
    lp_state_put_u32(w, s->recv_credit);
    lp_state_put_u32(w, s->unreported);
    lp_state_put_u32(w, s->extended);
    lp_state_put_text(w, s->target, s->target_len);
    lp_state_put_text(w, s->arg, s->arg_len);
    lp_state_put_text(w, s->rst_msg, s->rst_len);
    if (s->inq.buffered > UINT32_MAX)
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
    lp_state_put_u32(w, (uint32_t)s->inq.buffered);
    for (size_t off = 0; off < s->inq.buffered && w->err == LP_OK;) {
        const uint8_t *data;
        size_t n = lp_streamq_peek_at(&s->inq, off, &data);
        if (n == 0) {
            lp_state_wr_fail(w, LP_ERR_STATE); /* unreachable: buffered counts the chunks */
            break;
        }
        lp_state_put_bytes(w, data, n);
        off += n;
    }
}

/* A list as the ids of its streams in order; `which` picks the node. */
enum which { ON_PENDING, ON_WAITING, ON_EVENTS };

static void save_list(struct lp_state_wr *w, const struct node *head, enum which which)
{
    uint32_t n = 0;

    for (const struct node *l = head->next; l != head; l = l->next)
        n++;
    lp_state_put_u32(w, n);
    for (const struct node *l = head->next; l != head; l = l->next) {
        const struct stream *s = which == ON_PENDING   ? LP_CONTAINER_OF(l, struct stream, pend)
                                 : which == ON_WAITING ? LP_CONTAINER_OF(l, struct stream, wait)
                                                       : LP_CONTAINER_OF(l, struct stream, evq);
        lp_state_put_u32(w, s->id);
    }
}

static void save_ring(struct lp_state_wr *w, const struct bind_ring *r)
{
    lp_state_put_u32(w, (uint32_t)r->count);
    for (size_t i = 0; i < r->count; i++) {
        const struct bind_msg *b = &r->q[(r->head + i) % LP_MUX_BIND_QUEUE];
        lp_state_put_u8(w, b->type);
        lp_state_put_u32(w, b->id);
        lp_state_put_u16(w, b->code);
        lp_state_put_text(w, b->text, b->len);
    }
}

static void save_records(struct lp_state_wr *w, const lp_mux *m)
{
    lp_state_put_u32(w, (uint32_t)(m->rec_tail - m->rec_head));
    for (size_t i = m->rec_head; i < m->rec_tail; i++) {
        const struct record *r = &m->recs[i];
        lp_state_put_u32(w, r->id);
        lp_state_put_u8(w, r->events);
        lp_state_put_u16(w, r->code);
        lp_state_put_text(w, r->text, r->text_len);
    }
}

lp_err lp_mux_save(const lp_mux *m, struct lp_state_wr *w)
{
    size_t n;
    bool ok;
    struct stream **all = all_streams(m, &n, &ok);

    if (!ok) {
        lp_state_wr_fail(w, LP_ERR_NOMEM);
        return w->err;
    }
    lp_state_section_begin(w, LP_STATE_MUX);
    lp_state_put_u8(w,
                    (uint8_t)((m->is_client ? MF_CLIENT : 0) | (m->goodbye_tx ? MF_GOODBYE_TX : 0) |
                              (m->goodbye_rx ? MF_GOODBYE_RX : 0)));
    lp_state_put_u64(w, m->next_id);
    lp_state_put_u32(w, m->peer_highest);
    lp_state_put_u16(w, m->goodbye_tx_code);
    lp_state_put_text(w, m->goodbye_tx_msg, m->goodbye_tx_len);
    lp_state_put_u16(w, m->goodbye_rx_code);
    lp_state_put_text(w, m->goodbye_rx_msg, m->goodbye_rx_len);
    lp_state_put_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        save_stream(w, all[i]);
    save_list(w, &m->pending, ON_PENDING);
    save_list(w, &m->waiting, ON_WAITING);
    save_list(w, &m->events, ON_EVENTS);
    save_records(w, m);
    save_ring(w, &m->bind_out);
    save_ring(w, &m->bind_in);
    lp_state_section_end(w);
    free(all);
    return w->err;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* What a load has built so far, all of it freed again if the load is refused. */
struct build {
    lp_mux *m;
    struct stream **all; /* every stream object, by increasing id */
    size_t n, cap;
};

static bool copy_text(struct lp_state_rd *rd, char **out, size_t *len)
{
    bool ok;
    const uint8_t *p = lp_state_text(rd, LP_FRAME_MAX_TEXT, len);

    *out = NULL;
    if (lp_state_err(rd) != LP_OK)
        return false;
    *out = mux_copy_text(p, *len, &ok);
    if (!ok) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        *len = 0;
    }
    return ok;
}

/* The rules a saved stream must keep for the mux to handle it safely. */
static void check_stream(struct lp_state_rd *rd, const lp_mux *m, const struct stream *s)
{
    bool zombie = (s->flags & SF_ZOMBIE) != 0;
    uint64_t held = (uint64_t)s->inq.buffered + s->recv_credit + s->unreported;
    uint64_t seen = ours(m, s->id) ? m->next_id : (uint64_t)m->peer_highest + 1;

    if (s->id == 0 || ((s->flags & SF_OURS) != 0) != ours(m, s->id) || s->id >= seen)
        lp_state_fail(rd, LP_ERR_MALFORMED, "stream %" PRIu32 ": id not one %s opened", s->id,
                      (s->flags & SF_OURS) ? "we" : "the peer");
    else if ((s->flags & ~SF_ALL) || (s->pending & ~PC_ALL) || (s->events & ~EV_ALL))
        lp_state_fail(rd, LP_ERR_MALFORMED, "stream %" PRIu32 ": unknown flags", s->id);
    else if (zombie && (s->pending != PC_RST || s->events != 0 || s->window != 0 ||
                        s->inq.buffered != 0 || s->target_len != 0 || s->arg_len != 0))
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "stream %" PRIu32 ": a reset stream holds more "
                      "than its RST",
                      s->id);
    else if (!zombie && ((s->pending & PC_RST) || s->rst_len != 0 || s->kind < LP_KIND_TCP ||
                         s->kind > LP_KIND_REVERSE))
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "stream %" PRIu32 ": a live stream with an RST "
                      "or kind %u",
                      s->id, (unsigned)s->kind);
    else if (!zombie && held != s->window)
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "stream %" PRIu32 ": window %" PRIu32
                      " is not queued + credit + unreported (%" PRIu64 ")",
                      s->id, s->window, held);
    else if (s->extended > s->window || (zombie && s->extended != 0))
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "stream %" PRIu32 ": an extension of %" PRIu32 " beyond its window", s->id,
                      s->extended);
}

/* Reads one stream into b->all (and the id table when live). */
static void load_stream(struct lp_state_rd *rd, struct build *b)
{
    struct stream *s;
    const uint8_t *inq;
    size_t inq_len;

    if ((s = calloc(1, sizeof(*s))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    lp_streamq_init(&s->inq);
    b->all[b->n++] = s; /* from here on the build frees it */
    s->id = lp_state_u32(rd);
    s->flags = lp_state_u32(rd);
    s->pending = lp_state_u8(rd);
    s->events = lp_state_u8(rd);
    s->kind = lp_state_u8(rd);
    s->rst_code = lp_state_u16(rd);
    s->send_credit = lp_state_u32(rd);
    s->window = lp_state_u32(rd);
    s->recv_credit = lp_state_u32(rd);
    s->unreported = lp_state_u32(rd);
    s->extended = lp_state_u32(rd);
    if (!copy_text(rd, &s->target, &s->target_len) || !copy_text(rd, &s->arg, &s->arg_len) ||
        !copy_text(rd, &s->rst_msg, &s->rst_len))
        return;
    inq = lp_state_blob(rd, UINT32_MAX, &inq_len);
    if (lp_state_err(rd) != LP_OK)
        return;
    if (b->n > 1 && b->all[b->n - 2]->id >= s->id) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "stream %" PRIu32 " out of order", s->id);
        return;
    }
    s->inq.chunk = LP_MIN((size_t)s->window, (size_t)LP_STREAMQ_CHUNK);
    if (inq_len > 0 && !lp_streamq_append(&s->inq, inq, inq_len)) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    check_stream(rd, b->m, s);
    if (lp_state_err(rd) != LP_OK)
        return;
    s->hn.id = s->id;
    if (s->flags & SF_ZOMBIE) {
        b->m->nzombie++;
    } else {
        lp_idtab_insert(&b->m->ids, &s->hn);
        b->m->granted += s->window;
        b->m->buffered += s->inq.buffered; /* the sums mux_recv.c keeps, rebuilt */
        b->m->promised += ext_unfilled(s);
    }
}

static struct stream *lookup(const struct build *b, uint32_t id)
{
    size_t lo = 0, hi = b->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->all[mid]->id == id)
            return b->all[mid];
        if (b->all[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static struct node *node_of(struct stream *s, enum which which)
{
    return which == ON_PENDING ? &s->pend : which == ON_WAITING ? &s->wait : &s->evq;
}

static const char *list_name(enum which which)
{
    return which == ON_PENDING ? "pending" : which == ON_WAITING ? "waiting" : "event";
}

static void load_list(struct lp_state_rd *rd, struct build *b, struct node *head, enum which which)
{
    size_t n = lp_state_count(rd, 4, b->n, "list entries");

    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        uint32_t id = lp_state_u32(rd);
        struct stream *s = lookup(b, id);
        bool fits = s != NULL && (which == ON_PENDING   ? s->pending != 0
                                  : which == ON_WAITING ? !(s->flags & SF_ZOMBIE)
                                                        : s->events != 0);
        if (lp_state_err(rd) != LP_OK)
            return;
        if (!fits || linked(node_of(s, which))) {
            lp_state_fail(rd, LP_ERR_MALFORMED, "%s list: stream %" PRIu32 " cannot be on it",
                          list_name(which), id);
            return;
        }
        list_append(head, node_of(s, which));
    }
}

/* Every stream with pending frames or events must be on its list (else it would never be
 * served): the lists name each exactly once. */
static void check_lists(struct lp_state_rd *rd, const struct build *b)
{
    for (size_t i = 0; i < b->n && lp_state_err(rd) == LP_OK; i++) {
        const struct stream *s = b->all[i];
        if ((s->pending != 0) != linked(&s->pend) || (s->events != 0) != linked(&s->evq))
            lp_state_fail(rd, LP_ERR_MALFORMED, "stream %" PRIu32 " is missing from a list", s->id);
    }
}

static void load_records(struct lp_state_rd *rd, lp_mux *m, size_t nlive)
{
    size_t n = lp_state_count(rd, 9, SIZE_MAX / sizeof(struct record) / 2, "records");

    /* One free slot per live stream, as mux_reserve_record keeps: freeing never allocates. */
    if (lp_state_err(rd) != LP_OK)
        return;
    m->rec_cap = n + nlive + 16;
    if ((m->recs = calloc(m->rec_cap, sizeof(*m->recs))) == NULL) {
        m->rec_cap = 0;
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        struct record *r = &m->recs[m->rec_tail];
        r->id = lp_state_u32(rd);
        r->events = lp_state_u8(rd);
        r->code = lp_state_u16(rd);
        if (!copy_text(rd, &r->text, &r->text_len))
            return;
        m->rec_tail++; /* from here on mux_drop_records frees its text */
        if (r->id == 0 || r->events == 0 || (r->events & ~RECORD_EVENTS))
            lp_state_fail(rd, LP_ERR_MALFORMED, "record of stream %" PRIu32 ": events 0x%02x",
                          r->id, (unsigned)r->events);
    }
}

static void load_ring(struct lp_state_rd *rd, struct bind_ring *r, const char *what)
{
    size_t n = lp_state_count(rd, 9, LP_MUX_BIND_QUEUE, what);

    if (n > 0 && lp_state_err(rd) == LP_OK &&
        (r->q = calloc(LP_MUX_BIND_QUEUE, sizeof(*r->q))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        struct bind_msg *b = &r->q[r->count];
        b->type = lp_state_u8(rd);
        b->id = lp_state_u32(rd);
        b->code = lp_state_u16(rd);
        if (!copy_text(rd, &b->text, &b->len))
            return;
        r->count++; /* from here on mux_bind_clear frees its text */
        if (b->id == 0 ||
            (b->type != LP_FT_BIND && b->type != LP_FT_BIND_OK && b->type != LP_FT_BIND_FAIL))
            lp_state_fail(rd, LP_ERR_MALFORMED, "%s: frame type 0x%02x for id %" PRIu32, what,
                          (unsigned)b->type, b->id);
    }
}

static void load_goodbye(struct lp_state_rd *rd, uint16_t *code, char **msg, size_t *len)
{
    *code = lp_state_u16(rd);
    (void)copy_text(rd, msg, len);
}

/* The session-wide fields before the streams; makes the mux. */
static lp_err load_head(struct lp_state_rd *rd, const struct lp_mux_config *cfg, lp_pipe *pipe,
                        lp_mux **mp)
{
    uint8_t flags = lp_state_u8(rd);
    uint64_t next_id = lp_state_u64(rd);
    uint32_t peer_highest = lp_state_u32(rd);
    lp_mux *m;
    lp_err rc;

    if (lp_state_err(rd) != LP_OK)
        return lp_state_err(rd);
    if ((flags & ~MF_ALL) || next_id == 0 || next_id > (uint64_t)UINT32_MAX + 2 ||
        ((next_id & 1u) == 1u) != ((flags & MF_CLIENT) != 0)) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "flags 0x%02x with next stream id %" PRIu64,
                      (unsigned)flags, next_id);
        return lp_state_err(rd);
    }
    if ((rc = lp_mux_new(cfg, pipe, (flags & MF_CLIENT) != 0, &m)) != LP_OK) {
        lp_state_fail(rd, rc, "cannot build the mux: %s", lp_strerror(rc));
        return rc;
    }
    m->next_id = next_id;
    m->peer_highest = peer_highest;
    m->goodbye_tx = (flags & MF_GOODBYE_TX) != 0;
    m->goodbye_rx = (flags & MF_GOODBYE_RX) != 0;
    load_goodbye(rd, &m->goodbye_tx_code, &m->goodbye_tx_msg, &m->goodbye_tx_len);
    load_goodbye(rd, &m->goodbye_rx_code, &m->goodbye_rx_msg, &m->goodbye_rx_len);
    *mp = m;
    return lp_state_err(rd);
}

/* Frees what a refused load built: streams first (zombies may be on no list yet), then the
 * mux with its records and bind frames. */
static void drop_build(struct build *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct stream *s = b->all[i];
        lp_idtab_remove(&b->m->ids, &s->hn); /* by address: one never inserted is ignored */
        list_remove(&s->pend);
        list_remove(&s->wait);
        list_remove(&s->evq);
        lp_streamq_clear(&s->inq);
        mux_free_open_copies(s);
        free(s->rst_msg);
        free(s);
    }
    if (b->m != NULL) {
        b->m->granted = 0;
        b->m->nzombie = 0;
        b->m->buffered = 0;
        b->m->promised = 0;
    }
    lp_mux_free(b->m);
    free(b->all);
}

static void load_body(struct lp_state_rd *rd, struct build *b)
{
    size_t n = lp_state_count(rd, STREAM_MIN, SIZE_MAX / sizeof(struct stream *), "streams");

    if (lp_state_err(rd) != LP_OK)
        return;
    if (n > 0 && (b->all = calloc(n, sizeof(*b->all))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
        load_stream(rd, b);
    load_list(rd, b, &b->m->pending, ON_PENDING);
    load_list(rd, b, &b->m->waiting, ON_WAITING);
    load_list(rd, b, &b->m->events, ON_EVENTS);
    check_lists(rd, b);
    load_records(rd, b->m, b->m->ids.count);
    load_ring(rd, &b->m->bind_out, "bind frames to send");
    load_ring(rd, &b->m->bind_in, "bind frames received");
}

lp_err lp_mux_load(struct lp_state_rd *rd, const struct lp_mux_config *cfg, lp_pipe *pipe,
                   lp_mux **mp)
{
    struct lp_state_mark mark;
    struct build b = {0};
    lp_err rc;

    *mp = NULL;
    lp_state_enter(rd, LP_STATE_MUX, &mark);
    if (load_head(rd, cfg, pipe, &b.m) == LP_OK)
        load_body(rd, &b);
    lp_state_leave(rd, &mark);
    if ((rc = lp_state_err(rd)) != LP_OK) {
        drop_build(&b);
        return rc;
    }
    free(b.all);
    *mp = b.m;
    return LP_OK;
}
