/* pipe.c — the backed pipe. See pipe.h for the API and docs/PROTOCOL.md (the pipe's part)
 * for the rules on the wire.
 *
 * Positions in our sequenced stream:
 *
 *     acked <= send_seq <= frame_end ... <= tx_seq          (while LIVE)
 *
 * [acked, tx_seq) is held in the replay store (replay.h); send_seq is how far the current link
 * took; frame_end is the end of the frame send_seq is in, so send_seq == frame_end means "between
 * two whole frames", the only place an unsequenced frame may be slipped in.
 */
#include "limpet/pipe.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/replay.h"
#include "pipe_internal.h"

#define RX_CAP (256u * 1024u)  /* receive buffer per link: many whole frames */
#define OUT_MAX (256u * 1024u) /* sequenced bytes handed out per pending_output */
#define RESERVE_MIN 4096u      /* a reserve smaller than this starts a new chunk */
#define ROOM_MIN (64u * 1024u) /* ROOM when this much (or replay_buffer/4) is free */

/* ---- small helpers ---------------------------------------------------------------------- */

static lp_time since(lp_time now, lp_time then)
{
    return now > then ? now - then : 0;
}

static lp_time at(lp_time t, lp_time d)
{
    return d > LP_TIME_NEVER - t ? LP_TIME_NEVER : t + d;
}

static bool linked(const lp_pipe *p)
{
    return p->state == LP_PIPE_HANDSHAKE || p->state == LP_PIPE_LIVE;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= b[i];
    return acc == 0;
}

static void wipe(uint8_t *b, size_t n)
{
    volatile uint8_t *v = b; /* volatile: the compiler may not drop stores before free() */
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

/* Returns the slot for a new event. ROOM and RTT are coalesced with one already queued, so
 * they never crowd out the link events, of which a draining glue sees at most two per call. */
static struct lp_pipe_event *push_event(lp_pipe *p, enum lp_pipe_event_type type)
{
    struct lp_pipe_event *ev;
    bool coalesce = type == LP_PIPE_EV_ROOM || type == LP_PIPE_EV_RTT;

    for (size_t i = 0; coalesce && i < p->ev_count; i++) {
        ev = &p->evq[(p->ev_head + i) % EVQ_CAP];
        if (ev->type == type) {
            ev->gen = p->gen;
            return ev;
        }
    }
    if (p->ev_count == EVQ_CAP) {
        /* Only reachable when the glue stops draining: the oldest news goes first. */
        p->ev_head = (p->ev_head + 1) % EVQ_CAP;
        p->ev_count--;
    }
    ev = &p->evq[(p->ev_head + p->ev_count) % EVQ_CAP];
    p->ev_count++;
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->gen = p->gen;
    return ev;
}

static void vformat(char *out, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void vformat(char *out, const char *fmt, va_list ap)
{
    if (vsnprintf(out, LP_PIPE_MSG_MAX, fmt, ap) < 0)
        out[0] = '\0';
}

/* Forgets everything the current link left behind; the replay chunks stay. */
static void clear_link(lp_pipe *p)
{
    p->scratch_len = 0;
    p->scratch_off = 0;
    p->out_kind = OUT_NONE;
    p->out_avail = 0;
    p->pong_owed = false;
    p->ack_due = false;
    p->ping_due = false;
    p->rx_start = 0;
    p->rx_len = 0;
}

static void free_rx(lp_pipe *p)
{
    free(p->rx);
    p->rx = NULL;
    p->rx_start = 0;
    p->rx_len = 0;
}

static void detach(lp_pipe *p)
{
    if (p->state != LP_PIPE_LOST)
        p->state = LP_PIPE_DETACHED;
    clear_link(p);
    free_rx(p);
}

/* The pipe gives up on the current link: LINK_DOWN with the reason, then DETACHED. */
static void link_fail(lp_pipe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void link_fail(lp_pipe *p, const char *fmt, ...)
{
    struct lp_pipe_event *ev = push_event(p, LP_PIPE_EV_LINK_DOWN);
    va_list ap;

    va_start(ap, fmt);
    vformat(ev->msg, fmt, ap);
    va_end(ap);
    detach(p);
}

static void go_lost(lp_pipe *p)
{
    p->state = LP_PIPE_LOST;
    clear_link(p);
    free_rx(p);
}

/* ---- replay positions ------------------------------------------------------------------ */

/* A peer may resume only from a whole-frame position we still hold. On failure p->why says
 * why, with every number involved. */
static bool resume_point_ok(lp_pipe *p, uint64_t seq, const char *who)
{
    const struct lp_replay *r = &p->replay;

    if (seq < r->acked || seq > r->tx_seq) {
        snprintf(p->why, sizeof(p->why),
                 "%s resumes from %" PRIu64 " but we hold [%" PRIu64 ", %" PRIu64 "]", who, seq,
                 r->acked, r->tx_seq);
        return false;
    }
    if (!lp_replay_is_boundary(&p->replay, seq)) {
        snprintf(p->why, sizeof(p->why),
                 "%s resumes from %" PRIu64 ", inside a frame of the [%" PRIu64 ", %" PRIu64
                 "] we hold",
                 who, seq, r->acked, r->tx_seq);
        return false;
    }
    return true;
}

static void check_room(lp_pipe *p)
{
    if (p->starved && lp_pipe_tx_room(p) >= LP_MIN((size_t)ROOM_MIN, p->cfg.replay_buffer / 4)) {
        p->starved = false;
        push_event(p, LP_PIPE_EV_ROOM);
    }
}

static void set_acked(lp_pipe *p, uint64_t v)
{
    if (lp_replay_ack(&p->replay, v))
        check_room(p);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

lp_err lp_pipe_new(const struct lp_pipe_config *cfg, bool is_client, lp_pipe **pp)
{
    lp_pipe *p;

    *pp = NULL;
    if (cfg->replay_buffer < 64u * 1024u || cfg->replay_buffer > SIZE_MAX / 4 ||
        cfg->ack_every == 0 || cfg->heartbeat == 0 || cfg->dead_after == 0)
        return LP_ERR_INVALID;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return LP_ERR_NOMEM;
    p->cfg = *cfg;
    p->is_client = is_client;
    p->state = LP_PIPE_DETACHED;
    lp_replay_init(&p->replay);
    *pp = p;
    return LP_OK;
}

void lp_pipe_free(lp_pipe *p)
{
    if (p == NULL)
        return;
    lp_replay_clear(&p->replay);
    free(p->rx);
    /* The token lets anyone resume the session: do not leave it in freed memory (HELLO and
     * WELCOME carry it through the scratch buffer too). */
    wipe(p->token, sizeof(p->token));
    wipe(p->scratch, sizeof(p->scratch));
    free(p);
}

void lp_pipe_set_identity(lp_pipe *p, const uint8_t id[LP_SESSION_ID_LEN],
                          const uint8_t token[LP_TOKEN_LEN])
{
    memcpy(p->session_id, id, LP_SESSION_ID_LEN);
    memcpy(p->token, token, LP_TOKEN_LEN);
}

const uint8_t *lp_pipe_session_id(const lp_pipe *p)
{
    return p->session_id;
}

const uint8_t *lp_pipe_token(const lp_pipe *p)
{
    return p->token;
}

lp_err lp_pipe_set_node(lp_pipe *p, const char *node)
{
    size_t n = node ? strlen(node) : 0;
    if (!lp_node_id_ok((const uint8_t *)node, n))
        return LP_ERR_INVALID;
    memcpy(p->node, node, n + 1);
    return LP_OK;
}

const char *lp_pipe_node(const lp_pipe *p)
{
    return p->node;
}

enum lp_pipe_state lp_pipe_state(const lp_pipe *p)
{
    return p->state;
}

uint64_t lp_pipe_generation(const lp_pipe *p)
{
    return p->gen;
}

uint64_t lp_pipe_tx_seq(const lp_pipe *p)
{
    return p->replay.tx_seq;
}

uint64_t lp_pipe_acked(const lp_pipe *p)
{
    return p->replay.acked;
}

uint64_t lp_pipe_rx_seq(const lp_pipe *p)
{
    return p->rx_seq;
}

size_t lp_pipe_buffered(const lp_pipe *p)
{
    return (size_t)(p->replay.tx_seq - p->replay.acked);
}

lp_time lp_pipe_rtt(const lp_pipe *p)
{
    return p->rtt;
}

/* Test hook, not part of the API: how many replay chunks are allocated (spare excluded). */
size_t lp_pipe_replay_chunks(const lp_pipe *p);
size_t lp_pipe_replay_chunks(const lp_pipe *p)
{
    return lp_replay_chunks(&p->replay);
}

/* Resets the per-link state for a link that starts at `now`. */
static void start_link(lp_pipe *p, lp_time now)
{
    clear_link(p);
    p->gen++;
    p->connect_time = now;
    p->last_rx = now;
    p->last_tx = now;
    p->last_ping = now;
    p->ack_sent = p->rx_seq; /* HELLO / WELCOME tell the peer our rx_seq */
}

/* The link carries the sequenced stream from the peer's rx_seq on. */
static void go_live(lp_pipe *p, uint64_t peer_rx_seq, bool resumed)
{
    p->send_seq = peer_rx_seq;
    p->frame_end = peer_rx_seq;
    p->state = LP_PIPE_LIVE;
    p->was_live = true;
    struct lp_pipe_event *ev = push_event(p, LP_PIPE_EV_LIVE);
    ev->resumed = resumed;
    set_acked(p, peer_rx_seq);
}

uint64_t lp_pipe_connect(lp_pipe *p, lp_time now)
{
    if (p->state == LP_PIPE_LOST)
        return p->gen;
    start_link(p, now);
    p->state = LP_PIPE_HANDSHAKE;
    if (p->rx == NULL && (p->rx = malloc(RX_CAP)) == NULL) {
        link_fail(p, "out of memory for the receive buffer");
        return p->gen;
    }
    struct lp_hello h = {
        .magic = LP_PROTO_MAGIC,
        .version = LP_PROTO_VERSION,
        /* a server that knows it says which node holds the session */
        .flags = (uint16_t)(LP_HELLO_NODE | (p->rekey_next ? LP_HELLO_REKEY : 0)),
        .rx_seq = p->rx_seq,
    };
    memcpy(h.session_id, p->session_id, LP_SESSION_ID_LEN);
    memcpy(h.token, p->token, LP_TOKEN_LEN);
    p->scratch_len = lp_hello_encode(p->scratch, sizeof(p->scratch), &h);
    p->rekey_next = false;
    return p->gen;
}

void lp_pipe_set_rekey(lp_pipe *p)
{
    p->rekey_next = true;
}

/* The node id goes only to a client that asked for it: an older client checks that WELCOME
 * is exactly 68 bytes. */
static void queue_welcome(lp_pipe *p, bool resumed, bool send_node)
{
    uint16_t flags = resumed ? LP_WELCOME_RESUMED : 0;
    if (send_node && p->node[0] != '\0')
        flags |= LP_WELCOME_NODE;
    struct lp_welcome w = {
        .version = LP_PROTO_VERSION,
        .flags = flags,
        .node = (const uint8_t *)p->node,
        .node_len = strlen(p->node),
        .rx_seq = p->rx_seq,
        .heartbeat_ms = (uint32_t)LP_MIN(p->cfg.heartbeat, (lp_time)UINT32_MAX),
        .dead_after_ms = (uint32_t)LP_MIN(p->cfg.dead_after, (lp_time)UINT32_MAX),
    };
    memcpy(w.session_id, p->session_id, LP_SESSION_ID_LEN);
    if (!resumed) /* the token travels once, when the session is created */
        memcpy(w.token, p->token, LP_TOKEN_LEN);
    p->scratch_len = lp_welcome_encode(p->scratch, sizeof(p->scratch), &w);
}

lp_err lp_pipe_accept(lp_pipe *p, const struct lp_hello *h, lp_time now, uint64_t *gen,
                      const char **why)
{
    *why = NULL;
    if (p->state == LP_PIPE_LOST) {
        *why = "the session is lost";
        return LP_ERR_STATE;
    }
    if (!resume_point_ok(p, h->rx_seq, "client")) {
        go_lost(p);
        *why = p->why;
        return LP_ERR_SEQ;
    }
    if (p->rx == NULL && (p->rx = malloc(RX_CAP)) == NULL) {
        *why = "out of memory for the receive buffer";
        return LP_ERR_NOMEM;
    }
    bool resumed = p->was_live;
    start_link(p, now); /* a link still attached is replaced: its generation goes stale */
    queue_welcome(p, resumed, (h->flags & LP_HELLO_NODE) != 0);
    go_live(p, h->rx_seq, resumed);
    *gen = p->gen;
    return LP_OK;
}

void lp_pipe_link_down(lp_pipe *p, uint64_t gen)
{
    if (gen != p->gen)
        return; /* a report from a link already replaced */
    detach(p);
}

void lp_pipe_mark_lost(lp_pipe *p)
{
    go_lost(p);
}

/* ---- transmit ------------------------------------------------------------------------------ */

size_t lp_pipe_tx_room(const lp_pipe *p)
{
    size_t used = lp_pipe_buffered(p);
    return used < p->cfg.replay_buffer ? p->cfg.replay_buffer - used : 0;
}

size_t lp_pipe_reservev(lp_pipe *p, size_t max, struct lp_span *spans, size_t nspan, size_t *count)
{
    size_t budget = lp_pipe_tx_room(p), total = 0, n = 0;

    *count = 0;
    p->reserved = 0;
    /* Headers count against the buffer too, so committed frames never pass the cap. */
    if (budget <= LP_FRAME_HEADER) {
        p->starved = true;
        return 0;
    }
    if (max == 0 || nspan == 0)
        return 0;
    size_t first = LP_MIN(LP_MIN(budget - LP_FRAME_HEADER, max), (size_t)LP_FRAME_MAX_PAYLOAD);
    if (!lp_replay_ensure_tail(&p->replay, LP_FRAME_HEADER + LP_MIN(first, (size_t)RESERVE_MIN))) {
        p->starved = true; /* out of memory: retry when ACKs free some */
        return 0;
    }
    uint8_t *at = lp_replay_tail(&p->replay);
    size_t space = LP_MIN(lp_replay_tail_free(&p->replay), budget);
    /* Frames back to back: a readv fills them in order, so only the last can be short. */
    while (n < nspan && total < max && space > LP_FRAME_HEADER) {
        size_t take =
            LP_MIN(LP_MIN(space - LP_FRAME_HEADER, (size_t)LP_FRAME_MAX_PAYLOAD), max - total);
        spans[n].p = at + LP_FRAME_HEADER;
        spans[n].n = take;
        n++;
        total += take;
        at += LP_FRAME_HEADER + take;
        space -= LP_FRAME_HEADER + take;
        if (take < LP_FRAME_MAX_PAYLOAD)
            break;
    }
    p->reserved = total;
    *count = n;
    return total;
}

size_t lp_pipe_reserve(lp_pipe *p, size_t max, uint8_t **buf)
{
    struct lp_span span = {NULL, 0};
    size_t count;
    size_t room = lp_pipe_reservev(p, max, &span, 1, &count);

    *buf = room ? span.p : NULL;
    return room;
}

void lp_pipe_commitv(lp_pipe *p, uint8_t type, uint8_t flags, uint32_t id, size_t n)
{
    bool ok = n >= 1 && n <= p->reserved && lp_frame_is_sequenced(type);

    assert(ok); /* a caller bug: committing what was not reserved */
    while (ok && n > 0) {
        size_t len = LP_MIN(n, (size_t)LP_FRAME_MAX_PAYLOAD);
        lp_frame_put_header(lp_replay_tail(&p->replay), type, flags, (uint16_t)len, id);
        lp_replay_commit(&p->replay, LP_FRAME_HEADER + len);
        n -= len;
    }
    p->reserved = 0;
}

void lp_pipe_commit(lp_pipe *p, uint8_t type, uint8_t flags, uint32_t id, size_t n)
{
    lp_pipe_commitv(p, type, flags, id, n);
}

lp_err lp_pipe_send_frame(lp_pipe *p, const uint8_t *frame, size_t len)
{
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;
    size_t limit = p->cfg.replay_buffer + LP_PIPE_CONTROL_SLACK;
    size_t buffered = lp_pipe_buffered(p);

    if (frame == NULL || lp_frame_decode(frame, len, &f, &used, &why) != LP_OK || used != len ||
        !lp_frame_is_sequenced(f.type))
        return LP_ERR_INVALID;
    if (buffered > limit || limit - buffered < len)
        return LP_ERR_NOSPACE;
    p->reserved = 0; /* a pending reservation would be overwritten */
    if (!lp_replay_ensure_tail(&p->replay, len))
        return LP_ERR_NOMEM;
    memcpy(lp_replay_tail(&p->replay), frame, len);
    lp_replay_commit(&p->replay, len);
    return LP_OK;
}

static bool control_due(const lp_pipe *p)
{
    return p->pong_owed || p->ack_due || p->ping_due;
}

static void build_controls(lp_pipe *p)
{
    size_t n = 0;

    if (p->pong_owed) { /* first: the peer measures RTT with it */
        n += lp_u64_encode(p->scratch + n, sizeof(p->scratch) - n, LP_FT_PONG, p->pong_value);
        p->pong_owed = false;
    }
    if (p->ack_due) {
        n += lp_u64_encode(p->scratch + n, sizeof(p->scratch) - n, LP_FT_ACK, p->rx_seq);
        p->ack_sent = p->rx_seq;
        p->ack_due = false;
    }
    if (p->ping_due) {
        n += lp_u64_encode(p->scratch + n, sizeof(p->scratch) - n, LP_FT_PING, p->ping_value);
        p->ping_due = false;
    }
    p->scratch_len = n;
    p->scratch_off = 0;
}

static size_t hand_out(lp_pipe *p, enum out_kind kind, const uint8_t *bytes, size_t n,
                       const uint8_t **out)
{
    p->out_kind = kind;
    p->out_avail = n;
    *out = bytes;
    return n;
}

static size_t sequenced_output(lp_pipe *p, const uint8_t **out)
{
    const uint8_t *bytes;

    if (p->send_seq >= p->replay.tx_seq)
        return 0;
    size_t n = LP_MIN(lp_replay_peek(&p->replay, p->send_seq, &bytes), (size_t)OUT_MAX);
    if (n == 0)
        return 0; /* unreachable: [acked, tx_seq) is held and acked <= send_seq */
    if (control_due(p)) {
        /* Stop at the end of this frame so the control frames can follow it. */
        uint64_t end = p->frame_end;
        if (end == p->send_seq)
            end += lp_replay_frame_size(&p->replay, p->send_seq);
        n = LP_MIN(n, (size_t)(end - p->send_seq));
    }
    return hand_out(p, OUT_SEQ, bytes, n, out);
}

size_t lp_pipe_pending_output(lp_pipe *p, const uint8_t **out)
{
    *out = NULL;
    p->out_kind = OUT_NONE;
    p->out_avail = 0;
    if (!linked(p))
        return 0;
    if (p->scratch_off < p->scratch_len) /* started or queued: goes out whole, first */
        return hand_out(p, OUT_SCRATCH, p->scratch + p->scratch_off,
                        p->scratch_len - p->scratch_off, out);
    if (p->state != LP_PIPE_LIVE)
        return 0; /* HANDSHAKE: only HELLO until WELCOME */
    if (control_due(p) && p->send_seq == p->frame_end) {
        build_controls(p);
        return hand_out(p, OUT_SCRATCH, p->scratch, p->scratch_len, out);
    }
    return sequenced_output(p, out);
}

/* Moves frame_end to the end of the frame send_seq is now in (or to send_seq itself). */
static void advance_frame_end(lp_pipe *p)
{
    while (p->frame_end < p->send_seq) {
        size_t size = lp_replay_frame_size(&p->replay, p->frame_end);
        if (size == 0)
            break; /* unreachable: sent bytes are held until acknowledged */
        p->frame_end += size;
    }
}

void lp_pipe_output_sent(lp_pipe *p, size_t n, lp_time now)
{
    n = LP_MIN(n, p->out_avail);
    if (n == 0)
        return;
    p->out_avail -= n;
    p->last_tx = now;
    if (p->out_kind == OUT_SCRATCH) {
        p->scratch_off += n;
        if (p->scratch_off == p->scratch_len) {
            p->scratch_off = 0;
            p->scratch_len = 0;
        }
    } else if (p->out_kind == OUT_SEQ) {
        p->send_seq += n;
        advance_frame_end(p);
    }
}

/* ---- receive ------------------------------------------------------------------------------- */

size_t lp_pipe_recv_space(lp_pipe *p, uint8_t **buf)
{
    *buf = NULL;
    if (!linked(p) || p->rx == NULL)
        return 0;
    if (p->rx_start > 0) { /* what is left is less than a frame if the caller drained */
        memmove(p->rx, p->rx + p->rx_start, p->rx_len - p->rx_start);
        p->rx_len -= p->rx_start;
        p->rx_start = 0;
    }
    *buf = p->rx + p->rx_len;
    return RX_CAP - p->rx_len;
}

void lp_pipe_recv_commit(lp_pipe *p, size_t n, lp_time now)
{
    if (!linked(p) || p->rx == NULL)
        return;
    n = LP_MIN(n, RX_CAP - p->rx_len);
    p->rx_len += n;
    if (n > 0)
        p->last_rx = now;
}

size_t lp_pipe_recv(lp_pipe *p, const uint8_t *in, size_t len, lp_time now)
{
    uint8_t *buf;
    size_t room = lp_pipe_recv_space(p, &buf);
    size_t n = LP_MIN(room, len);

    if (n == 0)
        return 0;
    memcpy(buf, in, n);
    lp_pipe_recv_commit(p, n, now);
    return n;
}

static void on_ack(lp_pipe *p, uint64_t v)
{
    /* The peer counts only what reached it, and this link started at send_seq's origin:
     * nothing beyond send_seq (let alone tx_seq) can have arrived. */
    if (v > p->send_seq) {
        link_fail(p, "peer acknowledged %" PRIu64 " bytes but only %" PRIu64 " were sent", v,
                  p->send_seq);
        return;
    }
    if (v <= p->replay.acked)
        return;
    /* The peer's rx_seq moves by whole frames. A mid-frame acked would also be a resume
     * point we could never accept, so refuse it here, where the peer is to blame. */
    if (!lp_replay_ack_on_boundary(&p->replay, v)) {
        link_fail(p, "peer acknowledged %" PRIu64 " bytes, inside a frame", v);
        return;
    }
    set_acked(p, v);
}

static void on_pong(lp_pipe *p, uint64_t echoed, lp_time now)
{
    if (echoed > now)
        return; /* not a time we sent: ignore rather than report nonsense */
    p->rtt = now - echoed;
    push_event(p, LP_PIPE_EV_RTT)->rtt = p->rtt;
}

static void on_link_frame(lp_pipe *p, const struct lp_frame *f, lp_time now)
{
    uint64_t v = 0;
    const char *why = NULL;

    if (p->state != LP_PIPE_LIVE) {
        link_fail(p, "%s before WELCOME", lp_frame_type_name(f->type));
        return;
    }
    if (lp_u64_decode(f, &v, &why) != LP_OK) {
        link_fail(p, "bad frame from peer: %s", why ? why : "bad u64");
        return;
    }
    if (f->type == LP_FT_ACK) {
        on_ack(p, v);
    } else if (f->type == LP_FT_PING) {
        p->pong_owed = true; /* only the latest is echoed */
        p->pong_value = v;
    } else {
        on_pong(p, v, now);
    }
}

/* Checks WELCOME's session fields against what we asked for; false = link failed. */
static bool welcome_identity_ok(lp_pipe *p, const struct lp_welcome *w)
{
    bool resuming = !all_zero(p->session_id, LP_SESSION_ID_LEN);
    bool flagged = (w->flags & LP_WELCOME_RESUMED) != 0;

    if (w->version != LP_PROTO_VERSION)
        link_fail(p, "WELCOME with protocol version %u, we speak %u", (unsigned)w->version,
                  (unsigned)LP_PROTO_VERSION);
    else if (resuming && memcmp(w->session_id, p->session_id, LP_SESSION_ID_LEN) != 0)
        link_fail(p, "WELCOME names another session than the one we resume");
    else if (resuming && !flagged)
        link_fail(p, "WELCOME does not resume our session");
    else if (!resuming && all_zero(w->session_id, LP_SESSION_ID_LEN))
        link_fail(p, "WELCOME for a new session has no session id");
    else if (!resuming && flagged)
        link_fail(p, "WELCOME resumes a session we did not ask for");
    else
        return true;
    return false;
}

static void on_welcome(lp_pipe *p, const struct lp_frame *f)
{
    struct lp_welcome w;
    const char *why = NULL;

    if (lp_welcome_decode(f, &w, &why) != LP_OK) {
        link_fail(p, "bad frame from peer: %s", why ? why : "bad WELCOME");
        return;
    }
    if (!welcome_identity_ok(p, &w))
        return;
    if (!resume_point_ok(p, w.rx_seq, "server")) {
        go_lost(p);
        struct lp_pipe_event *ev = push_event(p, LP_PIPE_EV_LOST);
        memcpy(ev->msg, p->why, sizeof(ev->msg));
        return;
    }
    bool resumed = !all_zero(p->session_id, LP_SESSION_ID_LEN);
    /* w.node passed lp_node_id_ok, so it is at most LP_NODE_ID_MAX bytes with no NUL */
    memcpy(p->node, w.node ? (const char *)w.node : "", w.node_len);
    p->node[w.node_len] = '\0';
    if (!resumed) {
        memcpy(p->session_id, w.session_id, LP_SESSION_ID_LEN);
        memcpy(p->token, w.token, LP_TOKEN_LEN);
    }
    go_live(p, w.rx_seq, resumed);
}

static void on_reject(lp_pipe *p, const struct lp_frame *f)
{
    struct lp_text t;
    const char *why = NULL;

    if (lp_text_decode(f, &t, &why) != LP_OK) {
        link_fail(p, "bad frame from peer: %s", why ? why : "bad REJECT");
        return;
    }
    struct lp_pipe_event *ev = push_event(p, LP_PIPE_EV_REJECTED);
    size_t n = LP_MIN(t.msg_len, sizeof(ev->msg) - 1);
    ev->code = t.code;
    for (size_t i = 0; i < n; i++) /* the message goes to logs: no control characters */
        ev->msg[i] = (t.msg[i] < 0x20 || t.msg[i] == 0x7f) ? '?' : (char)t.msg[i];
    ev->msg[n] = '\0';
    detach(p);
}

static void on_unsequenced(lp_pipe *p, const struct lp_frame *f, lp_time now)
{
    bool handshaking = p->is_client && p->state == LP_PIPE_HANDSHAKE;

    switch (f->type) {
    case LP_FT_ACK:
    case LP_FT_PING:
    case LP_FT_PONG:
        on_link_frame(p, f, now);
        return;
    case LP_FT_WELCOME:
        if (handshaking) {
            on_welcome(p, f);
            return;
        }
        break;
    case LP_FT_REJECT:
        if (handshaking) {
            on_reject(p, f);
            return;
        }
        break;
    default:
        break;
    }
    link_fail(p, "unexpected %s from peer", lp_frame_type_name(f->type));
}

static void count_rx(lp_pipe *p, size_t n, lp_time now)
{
    if (p->rx_seq == p->ack_sent)
        p->first_unacked = now;
    p->rx_seq += n;
    if (p->rx_seq - p->ack_sent >= p->cfg.ack_every)
        p->ack_due = true;
}

bool lp_pipe_next_frame(lp_pipe *p, struct lp_frame *f, lp_time now)
{
    /* Each pass consumes a whole frame or returns, so this ends with the buffer. */
    while (linked(p) && p->rx != NULL) {
        struct lp_frame fr;
        size_t used = 0;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(p->rx + p->rx_start, p->rx_len - p->rx_start, &fr, &used, &why);
        if (rc == LP_ERR_TRUNCATED)
            return false;
        if (rc != LP_OK) {
            link_fail(p, "bad frame from peer: %s", why ? why : lp_strerror(rc));
            return false;
        }
        p->rx_start += used;
        if (!lp_frame_is_sequenced(fr.type)) {
            on_unsequenced(p, &fr, now);
            continue;
        }
        if (p->state != LP_PIPE_LIVE) {
            link_fail(p, "%s before WELCOME", lp_frame_type_name(fr.type));
            return false;
        }
        count_rx(p, used, now);
        *f = fr;
        return true;
    }
    return false;
}

/* ---- time and events ------------------------------------------------------------------------ */

/* A PING is due after a heartbeat with nothing sent, or with nothing received, but never
 * within a heartbeat of the last PING: that bounds PINGs even while output is stuck. */
static lp_time ping_deadline(const lp_pipe *p)
{
    lp_time quiet_since = LP_MIN(p->last_tx, p->last_rx);
    return at(LP_MAX(quiet_since, p->last_ping), p->cfg.heartbeat);
}

lp_time lp_pipe_next_deadline(const lp_pipe *p)
{
    if (p->state == LP_PIPE_HANDSHAKE)
        return at(p->connect_time, p->cfg.dead_after);
    if (p->state != LP_PIPE_LIVE)
        return LP_TIME_NEVER;
    /* Timers already fired (ack_due, ping_due) wait for a frame boundary, not for time. */
    lp_time d = at(p->last_rx, p->cfg.dead_after);
    if (p->rx_seq != p->ack_sent && !p->ack_due)
        d = LP_MIN(d, at(p->first_unacked, p->cfg.ack_delay));
    if (!p->ping_due)
        d = LP_MIN(d, ping_deadline(p));
    return d;
}

void lp_pipe_on_timeout(lp_pipe *p, lp_time now)
{
    if (p->state == LP_PIPE_HANDSHAKE) {
        lp_time waited = since(now, p->connect_time);
        if (waited >= p->cfg.dead_after)
            link_fail(p, "handshake timed out after %" PRIu64 " ms", waited);
        return;
    }
    if (p->state != LP_PIPE_LIVE)
        return;
    lp_time silent = since(now, p->last_rx);
    if (silent >= p->cfg.dead_after) {
        link_fail(p, "no data from peer for %" PRIu64 " ms", silent);
        return;
    }
    if (p->rx_seq != p->ack_sent && now >= at(p->first_unacked, p->cfg.ack_delay))
        p->ack_due = true;
    if (!p->ping_due && now >= ping_deadline(p)) {
        p->ping_due = true;
        p->ping_value = now;
        p->last_ping = now;
    }
}

bool lp_pipe_next_event(lp_pipe *p, struct lp_pipe_event *ev)
{
    if (p->ev_count == 0)
        return false;
    *ev = p->evq[p->ev_head];
    p->ev_head = (p->ev_head + 1) % EVQ_CAP;
    p->ev_count--;
    return true;
}
