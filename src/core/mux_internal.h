/* mux_internal.h — what mux.c and mux_event.c share: the stream and mux structs and the
 * event queue's entry points. Private to src/core/mux*.c; the contract is mux.h.
 */
#ifndef LIMPET_MUX_INTERNAL_H
#define LIMPET_MUX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/idtab.h"
#include "limpet/mux.h"
#include "limpet/streamq.h"

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

static inline void list_init(struct node *l)
{
    l->prev = l->next = l;
}

static inline bool list_empty(const struct node *l)
{
    return l->next == l;
}

static inline bool linked(const struct node *n)
{
    return n->next != NULL;
}

static inline void list_append(struct node *l, struct node *n)
{
    if (linked(n))
        return;
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static inline void list_remove(struct node *n)
{
    if (!linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

struct stream {
    uint32_t id;
    uint32_t flags;  /* SF_* */
    uint8_t pending; /* PC_*: control frames still to go into the pipe */
    uint8_t events;  /* EV_*: events the glue has not drained yet */
    uint8_t kind;
    uint16_t rst_code;     /* with PC_RST */
    uint32_t send_credit;  /* bytes the peer still lets us send */
    uint32_t window;       /* W we granted: inq.buffered + recv_credit + unreported == window */
    uint32_t recv_credit;  /* bytes the peer may still send before our next WINDOW */
    uint32_t unreported;   /* consumed bytes whose credit has not been returned yet */
    uint32_t extended;     /* part of window granted by lp_mux_recv_extend and not yet paid
                            * back: the next bytes consumed shrink the window by this much
                            * instead of returning credit */
    uint32_t run;          /* bytes consumed since the window last grew (or the stream began);
                            * not saved across an upgrade: a heuristic's memory */
    struct lp_streamq inq; /* inbound bytes the local socket has not taken yet */
    char *target, *arg;    /* OPEN copies: until our OPEN is sent / the OPEN event is drained */
    size_t target_len, arg_len;
    char *rst_msg; /* with PC_RST */
    size_t rst_len;
    void *user;
    struct lp_idtab_node hn; /* in m->ids while live; hn.id == id */
    struct node pend;        /* on m->pending while pending != 0 */
    struct node wait;        /* on m->waiting while blocked on a full pipe */
    struct node starved;     /* on m->starved while an extension found no budget */
    struct node evq;         /* on m->events while events != 0 */
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

/* One BIND, BIND_OK or BIND_FAIL frame waiting to be sent or to be handed to the glue. */
struct bind_msg {
    uint8_t type; /* LP_FT_BIND, LP_FT_BIND_OK, LP_FT_BIND_FAIL */
    uint32_t id;  /* the bind request id */
    uint16_t code;
    char *text; /* owned; NULL when empty */
    size_t len;
};

/* A FIFO of bind messages; LP_MUX_BIND_QUEUE at most. The slots are allocated with the first
 * message and freed with the last: only a session that forwards -R holds them, and only while
 * a bind is in flight. */
struct bind_ring {
    struct bind_msg *q; /* LP_MUX_BIND_QUEUE slots while count > 0, else NULL */
    size_t head, count;
};

struct lp_mux {
    struct lp_mux_config cfg;
    lp_pipe *pipe; /* borrowed */
    bool is_client;
    uint64_t next_id;      /* our next stream id; every lower id of our parity was used */
    uint32_t peer_highest; /* the highest id the peer opened, 0 before its first OPEN */
    struct lp_idtab ids;   /* the live streams; ids.count of them */
    size_t nzombie;        /* reset streams waiting to send their RST */
    size_t granted;        /* sum of the windows of live streams, extensions included */
    size_t buffered;       /* sum of the live streams' inq.buffered */
    size_t promised;       /* sum of the live streams' ext_unfilled(): extension credit the
                            * peer has not used yet, memory already promised */
    struct node pending;   /* streams with control frames to send, in order */
    struct node waiting;   /* streams that found the pipe full in lp_mux_send_reserve */
    struct node starved;   /* streams refused an extension: READABLE again when budget frees */
    struct node events;    /* streams with events, in order */
    struct record *recs;   /* [rec_head, rec_tail) undrained; rec_tail + ids.count <= rec_cap */
    size_t rec_head, rec_tail, rec_cap;
    uint32_t reserved_id; /* lp_mux_send_reserve's stream and room, until commit */
    size_t reserved;
    bool goodbye_tx, goodbye_rx;
    uint16_t goodbye_tx_code, goodbye_rx_code;
    size_t goodbye_tx_len, goodbye_rx_len;
    char *goodbye_tx_msg;      /* owned; NULL when empty */
    char *goodbye_rx_msg;      /* owned; NULL when empty */
    struct bind_ring bind_out; /* bind frames the pipe had no room for yet */
    struct bind_ring bind_in;  /* bind frames received, not yet handed out as events */
    /* The last event's text and arg: the heap copies the mux held (an OPEN's target, an RST's
     * or a bind's message), handed over with the event and freed at the next
     * lp_mux_next_event. An idle session holds no text buffer at all (it used to hold 8 KiB of
     * fixed ones, a third of a TLS session's memory). */
    char *lent[2];
};

/* What of s's extension the peer may still send: credit beyond its base window. Kept
 * summed in m->promised, so every change to extended, recv_credit or unreported on a stream
 * that has an extension goes through promise_begin / promise_end around it. */
static inline uint32_t ext_unfilled(const struct stream *s)
{
    uint32_t credit = s->recv_credit + s->unreported;
    return s->extended < credit ? s->extended : credit;
}

static inline void promise_begin(lp_mux *m, const struct stream *s)
{
    m->promised -= ext_unfilled(s);
}

static inline void promise_end(lp_mux *m, const struct stream *s)
{
    m->promised += ext_unfilled(s);
}

/* ---- mux.c ---------------------------------------------------------------------------- */

/* Returns an owned copy, NULL for an empty text; *ok false only when malloc failed. */
char *mux_copy_text(const void *p, size_t n, bool *ok);
/* Frees the texts lent with the last event. */
void mux_free_lent(lp_mux *m);
const char *mux_lend(lp_mux *m, unsigned slot, char **owned);

/* Frees the OPEN target and arg copies of s. */
void mux_free_open_copies(struct stream *s);

/* The pipe takes a whole frame, or LP_ERR_NOSPACE (then LP_PIPE_EV_ROOM brings a flush). */
LP_MUST_USE lp_err mux_send_frame(lp_mux *m, const uint8_t *buf, size_t n);

/* The live stream with this id, NULL if none. */
struct stream *mux_find(const lp_mux *m, uint32_t id);
/* Queues a control frame (PC_*) for s and sends what the pipe takes. s may be freed on
 * return, so callers queue control last. */
void mux_queue_control(lp_mux *m, struct stream *s, uint8_t bit);
/* Returns consumed credit (WINDOW) once it reaches a quarter of the window. Never sooner:
 * the peer still holds at least three quarters, so no stream can stall on what is kept back,
 * and a small exchange (a keystroke, a request) costs one frame each way, not two. A stream
 * that has moved a whole window through a local end that keeps up gets its window doubled
 * with that WINDOW, up to cfg.stream_window_max, while the session has granted at
 * most half its receive_buffer (docs/PROTOCOL.md 4.4.1, 4.4.2). May free s, like
 * mux_queue_control. */
void mux_maybe_return_credit(lp_mux *m, struct stream *s);
/* Queues the FIN event once the peer's FIN arrived and every byte before it was consumed
 * (and, on a stream the peer opened, it was accepted). May free s. */
void mux_maybe_deliver_fin(lp_mux *m, struct stream *s);

/* ---- mux_recv.c: inbound bytes and the credit they hold -------------------------------- */

/* Budget came free (an extension paid back, a stream ended): every stream that was refused an
 * extension hears READABLE, so its glue asks again. */
void mux_wake_starved(lp_mux *m);

/* ---- mux_bind.c: reverse-forwarding requests ------------------------------------------ */

/* A BIND, BIND_OK or BIND_FAIL frame from the peer: queued for lp_mux_next_event. */
LP_MUST_USE lp_err mux_bind_recv(lp_mux *m, const struct lp_frame *f, const char **why);
/* Sends queued bind frames in order; false if the pipe filled up first. */
bool mux_bind_flush(lp_mux *m);
/* The next received bind frame as an event; false when none. */
bool mux_bind_next_event(lp_mux *m, struct lp_mux_event *ev);
/* Drops both queues (the session is gone, or the mux is freed). */
void mux_bind_clear(lp_mux *m);

/* ---- mux_event.c: the event queue ------------------------------------------------------ */

/* Sets ev on s and puts s at the back of the event FIFO (if not already on it). */
void mux_queue_event(lp_mux *m, struct stream *s, uint8_t ev);
/* Clears ev on s; s leaves the FIFO when it has no events left. */
void mux_clear_event(struct stream *s, uint8_t ev);
/* Keeps one record slot per live stream, so mux_push_record never allocates. Call before a
 * stream is added to m->ids; false when out of memory. */
bool mux_reserve_record(lp_mux *m);
/* s (still live) is being freed with final event `final` (EV_CLOSED or EV_RST): leaves a
 * record behind so the glue still hears of it. msg is copied. */
void mux_push_record(lp_mux *m, const struct stream *s, uint8_t final, uint16_t code,
                     const char *msg, size_t msg_len);
/* Frees every undrained record. */
void mux_drop_records(lp_mux *m);

#endif
