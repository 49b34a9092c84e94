/* mux.c — streams inside the pipe's sequenced stream. See mux.h and docs/PROTOCOL-mux.md.
 *
 * Every control frame (OPEN, OPEN_OK, WINDOW, FIN, RST) goes out through one path: a pending
 * bit on the stream, the stream on the `pending` list, then flush_pending() in list order.
 * When the pipe has room that happens at once; when it is full the bits wait, and because the
 * list is drained strictly in order nothing ever overtakes an older frame (an OPEN of a lower
 * id always precedes a higher one, a FIN always follows its OPEN). flush_pending() may free
 * the stream it sends for (its last FIN or RST went out), so callers queue control last.
 *
 * Events are bits on the stream plus the stream's place on the `events` FIFO, so the queue
 * is bounded by the stream count. A stream that is freed while the glue still has to hear of
 * it (RST, CLOSED) leaves a record behind; a record slot is reserved when the stream is
 * created, so freeing never needs memory.
 */
#include "limpet/mux.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE (64u * 1024u)
#define BUCKETS_MIN 16u

/* Stream flags. */
enum {
    SF_OURS = 1u << 0,           /* we opened it (our parity) */
    SF_ESTABLISHED = 1u << 1,    /* opener: the peer's OPEN_OK arrived; acceptor: we accepted */
    SF_OPEN_SEEN = 1u << 2,      /* acceptor: the glue has been handed the OPEN event */
    SF_FIN_WANTED = 1u << 3,     /* lp_mux_shutdown was called: no DATA from us any more */
    SF_FIN_SENT = 1u << 4,       /* our FIN is in the pipe */
    SF_PEER_FIN = 1u << 5,       /* the peer's FIN arrived */
    SF_FIN_DELIVERED = 1u << 6,  /* the FIN event is queued: every byte before it consumed */
    SF_READABLE_ARMED = 1u << 7, /* READABLE queued; not again until the glue peeks/consumes */
    SF_BLOCK_CREDIT = 1u << 8,   /* reserve found no credit: WINDOW wakes it */
    SF_ZOMBIE = 1u << 9,         /* reset: kept only until its RST finds room in the pipe */
};

/* Pending control frames, sent lowest bit first. */
enum {
    PC_OPEN = 1u << 0,
    PC_OPEN_OK = 1u << 1,
    PC_WINDOW = 1u << 2,
    PC_FIN = 1u << 3,
    PC_RST = 1u << 4
};

/* Pending events, handed out lowest bit first. */
enum {
    EV_OPEN = 1u << 0,
    EV_OPEN_OK = 1u << 1,
    EV_WRITABLE = 1u << 2,
    EV_READABLE = 1u << 3,
    EV_FIN = 1u << 4,
    EV_CLOSED = 1u << 5,
    EV_RST = 1u << 6
};

/* An intrusive list node; a node not on any list has next == NULL. */
struct node {
    struct node *prev, *next;
};

struct chunk {
    struct chunk *next;
    size_t head; /* first unconsumed byte */
    size_t tail; /* end of the bytes written; head <= tail <= cap */
    size_t cap;
    uint8_t data[];
};

struct stream {
    uint32_t id;
    uint32_t flags;  /* SF_* */
    uint8_t pending; /* PC_*: control frames still to go into the pipe */
    uint8_t events;  /* EV_*: events the glue has not drained yet */
    uint8_t kind;
    uint16_t rst_code;    /* with PC_RST */
    uint32_t send_credit; /* bytes the peer still lets us send */
    uint32_t window;      /* W we granted: buffered + recv_credit + unreported == window */
    uint32_t recv_credit; /* bytes the peer may still send before our next WINDOW */
    uint32_t unreported;  /* consumed bytes whose credit has not been returned yet */
    size_t buffered;      /* inbound bytes held in the chunk list */
    struct chunk *q_head, *q_tail;
    char *target, *arg; /* OPEN copies: until our OPEN is sent / the OPEN event is drained */
    size_t target_len, arg_len;
    char *rst_msg; /* with PC_RST */
    size_t rst_len;
    void *user;
    struct stream *hnext; /* hash chain */
    struct node pend;     /* on m->pending while pending != 0 */
    struct node wait;     /* on m->waiting while blocked on a full pipe */
    struct node evq;      /* on m->events while events != 0 */
};

/* The events of a stream already freed. */
struct record {
    uint32_t id;
    uint8_t events; /* EV_OPEN_OK, EV_FIN, EV_CLOSED, EV_RST */
    uint16_t code;
    void *user;
    char *text; /* owned; NULL when empty */
    size_t text_len;
};

struct lp_mux {
    struct lp_mux_config cfg;
    lp_pipe *pipe; /* borrowed */
    bool is_client;
    uint64_t next_id;      /* our next stream id; every lower id of our parity was used */
    uint32_t peer_highest; /* the highest id the peer opened, 0 before its first OPEN */
    struct stream **buckets;
    size_t nbuckets;     /* a power of two */
    size_t nlive;        /* streams in the hash table */
    size_t nzombie;      /* reset streams waiting to send their RST */
    size_t granted;      /* sum of the windows of live streams */
    struct node pending; /* streams with control frames to send, in order */
    struct node waiting; /* streams that found the pipe full in lp_mux_send_reserve */
    struct node events;  /* streams with events, in order */
    struct record *recs; /* [rec_head, rec_tail) undrained; rec_tail + nlive <= rec_cap */
    size_t rec_head, rec_tail, rec_cap;
    uint32_t reserved_id; /* lp_mux_send_reserve's stream and room, until commit */
    size_t reserved;
    bool goodbye_tx, goodbye_rx;
    uint16_t goodbye_tx_code, goodbye_rx_code;
    size_t goodbye_tx_len, goodbye_rx_len;
    char goodbye_tx_msg[LP_FRAME_MAX_TEXT];
    char goodbye_rx_msg[LP_FRAME_MAX_TEXT];
    char text[LP_FRAME_MAX_TEXT]; /* the last event's text and arg, lent to the glue */
    char arg[LP_FRAME_MAX_TEXT];
};

/* ---- lists -------------------------------------------------------------------------- */

static void list_init(struct node *l)
{
    l->prev = l->next = l;
}

static bool list_empty(const struct node *l)
{
    return l->next == l;
}

static bool linked(const struct node *n)
{
    return n->next != NULL;
}

static void list_append(struct node *l, struct node *n)
{
    if (linked(n))
        return;
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static void list_remove(struct node *n)
{
    if (!linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* ---- the id table ------------------------------------------------------------------- */

static size_t bucket_of(size_t nbuckets, uint32_t id)
{
    return (size_t)((id * 2654435761u) & (uint32_t)(nbuckets - 1));
}

static struct stream *find(const lp_mux *m, uint32_t id)
{
    struct stream *s = m->buckets[bucket_of(m->nbuckets, id)];

    while (s != NULL && s->id != id)
        s = s->hnext;
    return s;
}

/* Doubles the table; on failure the old one simply stays (longer chains, still correct). */
static void hash_grow(lp_mux *m)
{
    size_t n = m->nbuckets * 2;
    struct stream **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        while (m->buckets[i] != NULL) {
            struct stream *s = m->buckets[i];
            m->buckets[i] = s->hnext;
            s->hnext = b[bucket_of(n, s->id)];
            b[bucket_of(n, s->id)] = s;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

static void hash_insert(lp_mux *m, struct stream *s)
{
    if (m->nlive >= m->nbuckets && m->nbuckets <= SIZE_MAX / 2 / sizeof(*m->buckets))
        hash_grow(m);
    size_t b = bucket_of(m->nbuckets, s->id);
    s->hnext = m->buckets[b];
    m->buckets[b] = s;
}

static void hash_remove(lp_mux *m, struct stream *s)
{
    struct stream **pp = &m->buckets[bucket_of(m->nbuckets, s->id)];

    while (*pp != NULL && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp == s)
        *pp = s->hnext;
    s->hnext = NULL;
}

/* ---- inbound queue ------------------------------------------------------------------ */

static bool queue_append(struct stream *s, const uint8_t *p, size_t n)
{
    struct chunk *c = s->q_tail;

    if (c == NULL || c->cap - c->tail < n) {
        size_t cap = LP_MAX((size_t)CHUNK_SIZE, n);
        if ((c = malloc(sizeof(*c) + cap)) == NULL)
            return false;
        c->next = NULL;
        c->head = c->tail = 0;
        c->cap = cap;
        if (s->q_tail != NULL)
            s->q_tail->next = c;
        else
            s->q_head = c;
        s->q_tail = c;
    }
    memcpy(c->data + c->tail, p, n);
    c->tail += n;
    s->buffered += n;
    return true;
}

/* Drops n <= buffered bytes; emptied chunks are freed, so an idle stream holds none. */
static void queue_drop(struct stream *s, size_t n)
{
    while (n > 0 && s->q_head != NULL) {
        struct chunk *c = s->q_head;
        size_t take = LP_MIN(n, c->tail - c->head);
        c->head += take;
        s->buffered -= take;
        n -= take;
        if (c->head == c->tail) {
            s->q_head = c->next;
            if (s->q_head == NULL)
                s->q_tail = NULL;
            free(c);
        }
    }
}

static void queue_clear(struct stream *s)
{
    queue_drop(s, s->buffered);
}

/* ---- helpers ------------------------------------------------------------------------ */

static size_t text_len(const char *msg)
{
    return msg != NULL ? strnlen(msg, LP_FRAME_MAX_TEXT) : 0;
}

/* Returns an owned copy, NULL for an empty text; *ok false only when malloc failed. */
static char *copy_text(const void *p, size_t n, bool *ok)
{
    char *c = NULL;

    *ok = true;
    if (n > 0 && (c = malloc(n)) == NULL)
        *ok = false;
    else if (n > 0)
        memcpy(c, p, n);
    return c;
}

static size_t object_count(const lp_mux *m)
{
    return m->nlive + m->nzombie + (m->rec_tail - m->rec_head);
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
    m->granted += w;
}

/* ---- events ------------------------------------------------------------------------- */

static void queue_event(lp_mux *m, struct stream *s, uint8_t ev)
{
    s->events |= ev;
    list_append(&m->events, &s->evq);
}

static void clear_event(struct stream *s, uint8_t ev)
{
    s->events &= (uint8_t)~ev;
    if (s->events == 0)
        list_remove(&s->evq);
}

/* Keeps one record slot per live stream, so end_stream never allocates. */
static bool reserve_record(lp_mux *m)
{
    if (m->rec_head == m->rec_tail) {
        m->rec_head = m->rec_tail = 0;
    } else if (m->rec_head > 0) {
        memmove(m->recs, m->recs + m->rec_head, (m->rec_tail - m->rec_head) * sizeof(*m->recs));
        m->rec_tail -= m->rec_head;
        m->rec_head = 0;
    }
    size_t need = m->rec_tail + m->nlive + 1;
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

/* ---- stream lifetime ---------------------------------------------------------------- */

static struct stream *stream_new(lp_mux *m, uint32_t id, uint32_t flags)
{
    struct stream *s;

    if (!reserve_record(m) || (s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->id = id;
    s->flags = flags;
    hash_insert(m, s);
    m->nlive++;
    return s;
}

static void free_open_copies(struct stream *s)
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
    free_open_copies(s);
    free(s->rst_msg);
    free(s);
}

/* Takes a live stream out of the id table, freeing its buffers. final is EV_CLOSED, EV_RST or
 * 0 (no event); it becomes a record unless the glue never heard of the stream (its OPEN event
 * was not drained yet). The caller then destroys or zombifies s. */
static void end_stream(lp_mux *m, struct stream *s, uint8_t final, uint16_t code, const char *msg,
                       size_t msg_len)
{
    if (final != 0 && (s->flags & (SF_OURS | SF_OPEN_SEEN))) {
        struct record *r = &m->recs[m->rec_tail++];
        bool ok;
        r->id = s->id;
        r->user = s->user;
        r->code = code;
        r->events = final;
        if (final == EV_CLOSED) /* after RST nothing else matters; FIN must precede CLOSED */
            r->events |= s->events & (EV_OPEN_OK | EV_FIN);
        r->text = copy_text(msg, msg_len, &ok);
        r->text_len = ok ? msg_len : 0;
    }
    hash_remove(m, s);
    list_remove(&s->evq);
    list_remove(&s->wait);
    s->events = 0;
    m->granted -= s->window;
    s->window = 0;
    m->nlive--;
    queue_clear(s);
    free_open_copies(s);
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
    s->rst_msg = copy_text(msg, len, &ok);
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
static void maybe_deliver_fin(lp_mux *m, struct stream *s)
{
    if (!(s->flags & SF_PEER_FIN) || (s->flags & SF_FIN_DELIVERED) ||
        !(s->flags & SF_ESTABLISHED) || s->buffered > 0)
        return;
    s->flags |= SF_FIN_DELIVERED;
    queue_event(m, s, EV_FIN);
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
static lp_err send_frame(lp_mux *m, const uint8_t *buf, size_t n)
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
        if (send_frame(m, buf, encode_control(s, bit, buf, sizeof(buf))) == LP_ERR_NOSPACE)
            return LP_ERR_NOSPACE;
        s->pending &= (uint8_t)~bit;
        if (bit == PC_OPEN)
            free_open_copies(s);
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

    if (send_frame(m, buf, n) != LP_ERR_NOSPACE)
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
    if (m->goodbye_tx)
        send_goodbye(m);
}

/* Queues a control frame for s and sends what the pipe takes. s may be freed on return. */
static void queue_control(lp_mux *m, struct stream *s, uint8_t bit)
{
    s->pending |= bit;
    list_append(&m->pending, &s->pend);
    flush_pending(m);
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
    s->target = copy_text(o.target, o.target_len, &ok1);
    s->arg = copy_text(o.arg, o.arg_len, &ok2);
    if (!ok1 || !ok2) {
        end_stream(m, s, 0, 0, NULL, 0);
        stream_destroy(m, s);
        return refuse(m, f->stream_id, LP_RST_INTERNAL, "out of memory", why);
    }
    s->target_len = o.target_len;
    s->arg_len = o.arg_len;
    s->kind = o.kind;
    s->send_credit = o.window;
    queue_event(m, s, EV_OPEN);
    return LP_OK;
}

/* The stream a frame names: NULL with LP_OK for an id already closed (a harmless race with
 * our RST or close), LP_ERR_PROTOCOL for an id never opened. */
static lp_err find_target(const lp_mux *m, uint32_t id, struct stream **sp, const char **why)
{
    bool seen;

    if (id == 0)
        return protocol(why, "stream frame for stream 0");
    if ((*sp = find(m, id)) != NULL)
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
    s->flags |= SF_ESTABLISHED;
    s->send_credit = window;
    queue_event(m, s, EV_OPEN_OK);
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
    if (f->len == 0)
        return;
    if (!queue_append(s, f->payload, f->len)) {
        fail_stream(m, s, LP_RST_INTERNAL, "out of memory");
        return;
    }
    s->recv_credit -= (uint32_t)f->len;
    if (!(s->flags & SF_READABLE_ARMED)) {
        s->flags |= SF_READABLE_ARMED;
        queue_event(m, s, EV_READABLE);
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
        queue_event(m, s, EV_WRITABLE);
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
    maybe_deliver_fin(m, s);
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
    m->goodbye_rx_len = t.msg_len;
    memcpy(m->goodbye_rx_msg, t.msg, t.msg_len);
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
        return LP_OK; /* reverse forwarding is not implemented yet */
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
    if ((m->buckets = calloc(BUCKETS_MIN, sizeof(*m->buckets))) == NULL) {
        free(m);
        return LP_ERR_NOMEM;
    }
    m->nbuckets = BUCKETS_MIN;
    m->cfg = *cfg;
    m->pipe = pipe;
    m->is_client = is_client;
    m->next_id = is_client ? 1 : 2;
    list_init(&m->pending);
    list_init(&m->waiting);
    list_init(&m->events);
    *mp = m;
    return LP_OK;
}

static void drop_records(lp_mux *m)
{
    for (size_t i = m->rec_head; i < m->rec_tail; i++)
        free(m->recs[i].text);
    m->rec_head = m->rec_tail = 0;
}

void lp_mux_free(lp_mux *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nbuckets; i++) {
        while (m->buckets[i] != NULL) {
            struct stream *s = m->buckets[i];
            end_stream(m, s, 0, 0, NULL, 0);
            stream_destroy(m, s);
        }
    }
    while (!list_empty(&m->pending)) /* only zombies are left */
        stream_destroy(m, LP_CONTAINER_OF(m->pending.next, struct stream, pend));
    drop_records(m);
    free(m->recs);
    free(m->buckets);
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
    t = copy_text(target, target_len, &ok1);
    a = copy_text(arg, arg_len, &ok2);
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
    *id = s->id;
    rc = LP_OK;
    queue_control(m, s, PC_OPEN);
out:
    free(t);
    free(a);
    return rc;
}

lp_err lp_mux_accept(lp_mux *m, uint32_t id)
{
    struct stream *s = find(m, id);

    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (s->flags & (SF_OURS | SF_ESTABLISHED))
        return LP_ERR_STATE;
    s->flags |= SF_ESTABLISHED | SF_OPEN_SEEN;
    clear_event(s, EV_OPEN);
    free_open_copies(s);
    grant_window(m, s);
    /* Queued before OPEN_OK so that s cannot have been freed: our FIN is not sent yet. */
    maybe_deliver_fin(m, s);
    queue_control(m, s, PC_OPEN_OK);
    return LP_OK;
}

void lp_mux_reset(lp_mux *m, uint32_t id, uint16_t code, const char *msg)
{
    struct stream *s = find(m, id);

    if (s == NULL)
        return;
    end_stream(m, s, 0, 0, NULL, 0);
    zombify(m, s, code, msg, text_len(msg));
}

lp_err lp_mux_shutdown(lp_mux *m, uint32_t id)
{
    struct stream *s = find(m, id);

    if (s == NULL)
        return LP_ERR_NOT_FOUND;
    if (s->flags & SF_FIN_WANTED)
        return LP_OK; /* FIN goes out once */
    if (!(s->flags & (SF_OURS | SF_ESTABLISHED)))
        return LP_ERR_STATE;
    s->flags |= SF_FIN_WANTED;
    s->flags &= ~(uint32_t)SF_BLOCK_CREDIT;
    list_remove(&s->wait);
    clear_event(s, EV_WRITABLE);
    if (m->reserved_id == id)
        m->reserved = 0; /* a late commit would put DATA after the FIN */
    queue_control(m, s, PC_FIN);
    return LP_OK;
}

/* ---- data --------------------------------------------------------------------------- */

size_t lp_mux_send_reservev(lp_mux *m, uint32_t id, struct lp_span *spans, size_t nspan,
                            size_t *count)
{
    struct stream *s = find(m, id);
    size_t max, room;

    *count = 0;
    m->reserved = 0;
    /* An opener not yet accepted has no credit; its OPEN_OK event is the wake-up. */
    if (s == NULL || nspan == 0 || (s->flags & SF_FIN_WANTED) || !(s->flags & SF_ESTABLISHED))
        return 0;
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
    struct stream *s = find(m, id);

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
    struct stream *s = find(m, id);

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

size_t lp_mux_recv_peek(lp_mux *m, uint32_t id, const uint8_t **data)
{
    struct stream *s = find(m, id);

    *data = NULL;
    if (s == NULL)
        return 0;
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    if (s->q_head == NULL)
        return 0;
    *data = s->q_head->data + s->q_head->head;
    return s->q_head->tail - s->q_head->head;
}

size_t lp_mux_recv_peekv(lp_mux *m, uint32_t id, struct lp_mux_span *spans, size_t max)
{
    struct stream *s = find(m, id);
    size_t n = 0;

    if (s == NULL)
        return 0;
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    for (struct chunk *c = s->q_head; c != NULL && n < max; c = c->next) {
        if (c->tail == c->head)
            continue;
        spans[n].data = c->data + c->head;
        spans[n].len = c->tail - c->head;
        n++;
    }
    return n;
}

void lp_mux_recv_consumed(lp_mux *m, uint32_t id, size_t n)
{
    struct stream *s = find(m, id);

    if (s == NULL)
        return;
    n = LP_MIN(n, s->buffered);
    s->flags &= ~(uint32_t)SF_READABLE_ARMED;
    queue_drop(s, n);
    s->unreported += (uint32_t)n;
    if (s->buffered == 0)
        clear_event(s, EV_READABLE);
    if (s->flags & SF_PEER_FIN) { /* no more DATA can come: credit would be wasted */
        maybe_deliver_fin(m, s);
        return;
    }
    /* A quarter of the window keeps bulk transfers streaming with few WINDOW frames; an
     * emptied queue returns small amounts at once so interactive streams never stall. */
    if (s->unreported >= s->window / 4 || (s->buffered == 0 && s->unreported > 0))
        queue_control(m, s, PC_WINDOW);
}

size_t lp_mux_recv_buffered(const lp_mux *m, uint32_t id)
{
    const struct stream *s = find(m, id);

    return s != NULL ? s->buffered : 0;
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
        queue_event(m, s, EV_WRITABLE);
    }
}

lp_err lp_mux_goodbye(lp_mux *m, uint16_t code, const char *msg)
{
    m->goodbye_tx = true;
    m->goodbye_tx_code = code;
    m->goodbye_tx_len = text_len(msg);
    if (m->goodbye_tx_len > 0)
        memcpy(m->goodbye_tx_msg, msg, m->goodbye_tx_len);
    flush_pending(m); /* GOODBYE goes after every control frame still waiting */
    return LP_OK;
}

void lp_mux_reset_all(lp_mux *m, uint16_t code, const char *msg)
{
    size_t len = text_len(msg);

    for (size_t i = 0; i < m->nbuckets; i++) {
        while (m->buckets[i] != NULL) {
            struct stream *s = m->buckets[i];
            end_stream(m, s, EV_RST, code, msg, len);
            stream_destroy(m, s);
        }
    }
    while (!list_empty(&m->pending))
        stream_destroy(m, LP_CONTAINER_OF(m->pending.next, struct stream, pend));
    m->goodbye_tx = false;
    m->reserved = 0;
}

/* ---- events out --------------------------------------------------------------------- */

static uint8_t lowest_bit(uint8_t bits)
{
    return bits & (uint8_t)-bits;
}

static const char *lend_text(lp_mux *m, const char *p, size_t n)
{
    if (n > 0)
        memcpy(m->text, p, n);
    return m->text;
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
        ev->text = lend_text(m, r->text, r->text_len);
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
    clear_event(s, bit);
    if (bit != EV_OPEN)
        return;
    /* The copies are lent from mux storage, so the stream's can go now. */
    s->flags |= SF_OPEN_SEEN;
    ev->kind = s->kind;
    ev->text = lend_text(m, s->target, s->target_len);
    ev->text_len = s->target_len;
    if (s->arg_len > 0)
        memcpy(m->arg, s->arg, s->arg_len);
    ev->arg = m->arg;
    ev->arg_len = s->arg_len;
    free_open_copies(s);
}

bool lp_mux_next_event(lp_mux *m, struct lp_mux_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    if (m->rec_head < m->rec_tail) {
        pop_record(m, ev);
        return true;
    }
    if (!list_empty(&m->events)) {
        pop_stream_event(m, ev);
        return true;
    }
    if (m->goodbye_rx) { /* last: every stream event before it is worth more */
        m->goodbye_rx = false;
        ev->type = LP_MUX_EV_GOODBYE;
        ev->code = m->goodbye_rx_code;
        ev->text = lend_text(m, m->goodbye_rx_msg, m->goodbye_rx_len);
        ev->text_len = m->goodbye_rx_len;
        return true;
    }
    return false;
}

/* ---- small accessors ---------------------------------------------------------------- */

void lp_mux_set_user(lp_mux *m, uint32_t id, void *user)
{
    struct stream *s = find(m, id);

    if (s != NULL)
        s->user = user;
}

void *lp_mux_user(const lp_mux *m, uint32_t id)
{
    const struct stream *s = find(m, id);

    return s != NULL ? s->user : NULL;
}

size_t lp_mux_stream_count(const lp_mux *m)
{
    return m->nlive;
}

bool lp_mux_has_stream(const lp_mux *m, uint32_t id)
{
    return find(m, id) != NULL;
}
