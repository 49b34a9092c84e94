/* test_mux.c — the stream multiplexer (mux.h).
 *
 * Two muxes, each on its own pipe, the pipes joined in memory: the server pipe takes the
 * client's HELLO by hand (lp_frame_decode + lp_hello_decode + lp_pipe_accept), then pump()
 * moves pending output into the other pipe, hands every sequenced frame to lp_mux_recv and
 * logs every mux event, on a fake clock. Protocol-violation tests feed hand-built frames
 * straight into one mux.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"

#define EV_MAX 16384
#define TEXT_KEEP 128

struct logged {
    enum lp_mux_event_type type;
    uint32_t id;
    uint16_t code;
    uint8_t kind;
    char text[TEXT_KEEP];
    size_t text_len;
    char arg[TEXT_KEEP];
    size_t arg_len;
    void *user;
};

struct end {
    lp_pipe *pipe;
    lp_mux *mux;
    struct logged *ev; /* EV_MAX entries */
    size_t nev;
    lp_err rc; /* the first lp_mux_recv error */
    const char *why;
    bool auto_accept; /* accept every OPEN as its event is drained */
};

struct net {
    struct end c, s;
    lp_time now;
    bool linked;
    bool no_flush; /* ignore LP_PIPE_EV_ROOM: a glue that has not got to it yet */
    uint64_t gen_c, gen_s;
};

static const struct lp_pipe_config PIPE_CFG = {
    .replay_buffer = 4u * 1024u * 1024u,
    .ack_every = 16u * 1024u,
    .ack_delay = 5,
    .heartbeat = 3600000,
    .dead_after = 7200000,
};

static struct lp_mux_config mux_cfg(void)
{
    return (struct lp_mux_config){
        .stream_window = 64u * 1024u,
        .receive_buffer = 16u * 1024u * 1024u,
        .max_streams = 100,
    };
}

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 31u + 7u + (i >> 8));
}

/* ---- one end ------------------------------------------------------------------------ */

static void end_init(struct end *e, const struct lp_pipe_config *pc, const struct lp_mux_config *mc,
                     bool is_client)
{
    memset(e, 0, sizeof(*e));
    e->ev = calloc(EV_MAX, sizeof(*e->ev));
    assert_non_null(e->ev);
    assert_int_equal(lp_pipe_new(pc, is_client, &e->pipe), LP_OK);
    assert_int_equal(lp_mux_new(mc, e->pipe, is_client, &e->mux), LP_OK);
    e->auto_accept = true;
}

static void end_clear(struct end *e)
{
    lp_mux_free(e->mux);
    lp_pipe_free(e->pipe);
    free(e->ev);
}

static void copy_text(char *dst, size_t *dst_len, const char *src, size_t n)
{
    n = n < TEXT_KEEP - 1 ? n : TEXT_KEEP - 1;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
    *dst_len = n;
}

/* Drains and logs the mux's events. */
static bool end_events(struct end *e)
{
    struct lp_mux_event ev;
    bool any = false;

    while (lp_mux_next_event(e->mux, &ev)) {
        assert_true(e->nev < EV_MAX);
        struct logged *l = &e->ev[e->nev++];
        any = true;
        l->type = ev.type;
        l->id = ev.id;
        l->code = ev.code;
        l->kind = ev.kind;
        l->user = ev.user;
        copy_text(l->text, &l->text_len, ev.text, ev.text_len);
        copy_text(l->arg, &l->arg_len, ev.arg, ev.arg_len);
        if (ev.type == LP_MUX_EV_OPEN && e->auto_accept)
            assert_int_equal(lp_mux_accept(e->mux, ev.id), LP_OK);
    }
    return any;
}

static size_t count_events(const struct end *e, enum lp_mux_event_type type, uint32_t id)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nev; i++)
        n += e->ev[i].type == type && e->ev[i].id == id;
    return n;
}

static const struct logged *find_event(const struct end *e, enum lp_mux_event_type type,
                                       uint32_t id)
{
    for (size_t i = 0; i < e->nev; i++) {
        if (e->ev[i].type == type && e->ev[i].id == id)
            return &e->ev[i];
    }
    return NULL;
}

/* ---- the pair ----------------------------------------------------------------------- */

static void net_connect(struct net *n)
{
    const uint8_t *out;
    struct lp_frame f;
    struct lp_hello h;
    size_t used = 0;
    const char *why = NULL;

    n->gen_c = lp_pipe_connect(n->c.pipe, n->now);
    size_t len = lp_pipe_pending_output(n->c.pipe, &out);
    assert_int_equal(lp_frame_decode(out, len, &f, &used, &why), LP_OK);
    assert_int_equal(f.type, LP_FT_HELLO);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_int_equal(lp_pipe_accept(n->s.pipe, &h, n->now, &n->gen_s, &why), LP_OK);
    lp_pipe_output_sent(n->c.pipe, used, n->now);
    n->linked = true;
}

static struct net *net_new_with(const struct lp_mux_config *cc, const struct lp_mux_config *sc,
                                const struct lp_pipe_config *cpc)
{
    struct net *n = calloc(1, sizeof(*n));
    uint8_t sid[LP_SESSION_ID_LEN], token[LP_TOKEN_LEN];

    assert_non_null(n);
    n->now = 1000;
    end_init(&n->c, cpc, cc, true);
    end_init(&n->s, &PIPE_CFG, sc, false);
    for (size_t i = 0; i < sizeof(sid); i++)
        sid[i] = (uint8_t)(i + 1);
    for (size_t i = 0; i < sizeof(token); i++)
        token[i] = (uint8_t)(0xA0 + i);
    lp_pipe_set_identity(n->s.pipe, sid, token);
    net_connect(n);
    return n;
}

static struct net *net_new(void)
{
    struct lp_mux_config mc = mux_cfg();
    return net_new_with(&mc, &mc, &PIPE_CFG);
}

static void net_free(struct net *n)
{
    end_clear(&n->c);
    end_clear(&n->s);
    free(n);
}

static bool carry(struct net *n, struct end *from, struct end *to)
{
    const uint8_t *out;
    size_t len = lp_pipe_pending_output(from->pipe, &out);

    if (len == 0)
        return false;
    size_t took = lp_pipe_recv(to->pipe, out, len, n->now);
    lp_pipe_output_sent(from->pipe, took, n->now);
    return took > 0;
}

static bool drain(struct net *n, struct end *e)
{
    struct lp_frame f;
    struct lp_pipe_event pev;
    bool any = false;

    while (lp_pipe_next_frame(e->pipe, &f, n->now)) {
        const char *why = NULL;
        lp_err rc = lp_mux_recv(e->mux, &f, &why);
        any = true;
        if (rc != LP_OK && e->rc == LP_OK) {
            e->rc = rc;
            e->why = why;
        }
    }
    while (lp_pipe_next_event(e->pipe, &pev)) {
        any = true;
        assert_int_not_equal(pev.type, LP_PIPE_EV_LINK_DOWN);
        assert_int_not_equal(pev.type, LP_PIPE_EV_LOST);
        if (pev.type == LP_PIPE_EV_ROOM && !n->no_flush)
            lp_mux_flush(e->mux);
    }
    return end_events(e) || any;
}

static void tick(struct net *n, struct end *e)
{
    if (lp_pipe_next_deadline(e->pipe) <= n->now)
        lp_pipe_on_timeout(e->pipe, n->now);
}

/* Runs the pair until nothing moves for a while (long enough for delayed ACKs). */
static void pump(struct net *n)
{
    int idle = 0;

    for (int round = 0; round < 200000 && idle < 20; round++) {
        bool moved = false;
        if (n->linked) {
            moved |= carry(n, &n->c, &n->s);
            moved |= carry(n, &n->s, &n->c);
        }
        moved |= drain(n, &n->c);
        moved |= drain(n, &n->s);
        if (moved) {
            idle = 0;
            continue;
        }
        idle++;
        n->now++;
        tick(n, &n->c);
        tick(n, &n->s);
    }
    assert_true(idle >= 20);
}

/* Client opens a stream, the server accepts it (auto_accept), the client sees OPEN_OK. */
static uint32_t open_stream(struct net *n, const char *target)
{
    uint32_t id = 0;

    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, target, strlen(target), NULL, 0, &id),
                     LP_OK);
    pump(n);
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, id));
    return id;
}

static size_t send_pattern(lp_mux *m, uint32_t id, size_t from, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    size_t taken = 0;

    assert_non_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(from + i);
    assert_int_equal(lp_mux_send(m, id, buf, len, &taken), LP_OK);
    free(buf);
    return taken;
}

/* Consumes up to max bytes, checking them against pattern(from...). */
static size_t read_pattern(lp_mux *m, uint32_t id, size_t from, size_t max)
{
    size_t got = 0;

    for (int i = 0; i < 100000 && got < max; i++) {
        const uint8_t *data;
        size_t n = lp_mux_recv_peek(m, id, &data);
        if (n == 0)
            break;
        n = n < max - got ? n : max - got;
        for (size_t k = 0; k < n; k++) {
            if (data[k] != pattern(from + got + k))
                fail_msg("byte %zu differs", from + got + k);
        }
        lp_mux_recv_consumed(m, id, n);
        got += n;
    }
    return got;
}

/* ---- frames fed by hand ------------------------------------------------------------- */

static uint8_t fbuf[LP_FRAME_MAX];

static lp_err feed(lp_mux *m, size_t n, const char **why)
{
    struct lp_frame f;
    size_t used = 0;
    const char *w = NULL;

    assert_true(n > 0);
    assert_int_equal(lp_frame_decode(fbuf, n, &f, &used, &w), LP_OK);
    *why = NULL;
    return lp_mux_recv(m, &f, why);
}

static lp_err feed_open(lp_mux *m, uint32_t id, uint32_t window, const char **why)
{
    struct lp_open o = {
        .kind = LP_KIND_TCP, .window = window, .target = (const uint8_t *)"h:1", .target_len = 3};
    return feed(m, lp_open_encode(fbuf, sizeof(fbuf), id, &o), why);
}

static lp_err feed_data(lp_mux *m, uint32_t id, size_t len, const char **why)
{
    uint8_t data[LP_FRAME_MAX_PAYLOAD];
    for (size_t i = 0; i < len; i++)
        data[i] = pattern(i);
    return feed(m, lp_data_encode(fbuf, sizeof(fbuf), id, data, len), why);
}

static lp_err feed_u32(lp_mux *m, uint8_t type, uint32_t id, uint32_t v, const char **why)
{
    return feed(m, lp_u32_encode(fbuf, sizeof(fbuf), type, id, v), why);
}

static lp_err feed_fin(lp_mux *m, uint32_t id, const char **why)
{
    return feed(m, lp_empty_encode(fbuf, sizeof(fbuf), LP_FT_FIN, id), why);
}

static lp_err feed_rst(lp_mux *m, uint32_t id, uint16_t code, const char *msg, const char **why)
{
    return feed(m, lp_text_encode(fbuf, sizeof(fbuf), LP_FT_RST, id, code, msg, strlen(msg)), why);
}

/* A lone server mux on a detached pipe, for frames fed by hand. */
static void lone_server(struct end *e, const struct lp_mux_config *mc)
{
    end_init(e, &PIPE_CFG, mc, false);
}

/* ---- open, accept, data ------------------------------------------------------------- */

static void test_mux_opens_accepts_and_carries_data_both_ways(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = 0;

    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_MCP, "memory", 6, "scope-7", 7, &id), LP_OK);
    assert_int_equal(id, 1);
    pump(n);
    const struct logged *open = find_event(&n->s, LP_MUX_EV_OPEN, 1);
    assert_non_null(open);
    assert_int_equal(open->kind, LP_KIND_MCP);
    assert_string_equal(open->text, "memory");
    assert_string_equal(open->arg, "scope-7");
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, 1));

    size_t sent = 0;
    size_t got = 0;
    for (int i = 0; i < 100 && got < 150000; i++) {
        sent += send_pattern(n->c.mux, id, sent, 150000 - sent);
        pump(n);
        got += read_pattern(n->s.mux, id, got, SIZE_MAX);
        pump(n);
    }
    assert_int_equal(got, 150000);

    sent = got = 0;
    for (int i = 0; i < 100 && got < 90000; i++) {
        sent += send_pattern(n->s.mux, id, sent, 90000 - sent);
        pump(n);
        got += read_pattern(n->c.mux, id, got, SIZE_MAX);
        pump(n);
    }
    assert_int_equal(got, 90000);
    assert_int_equal(n->c.rc, LP_OK);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_ids_are_odd_for_client_and_even_for_server(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t a = 0, b = 0, c = 0, d = 0;

    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &a), LP_OK);
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &b), LP_OK);
    assert_int_equal(lp_mux_open(n->s.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &c), LP_OK);
    assert_int_equal(lp_mux_open(n->s.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &d), LP_OK);
    assert_int_equal(a, 1);
    assert_int_equal(b, 3);
    assert_int_equal(c, 2);
    assert_int_equal(d, 4);
    pump(n);
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN, 2));
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN, 4));
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN_OK, 2));
    assert_int_equal(lp_mux_stream_count(n->c.mux), 4);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 4);
    net_free(n);
}

static void test_mux_refused_open_reports_reason_to_opener(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = 0;
    const char *reason = "connection refused by 10.0.0.1:80";

    n->s.auto_accept = false;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "10.0.0.1:80", 11, NULL, 0, &id), LP_OK);
    pump(n);
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN, id));
    lp_mux_reset(n->s.mux, id, LP_RST_REFUSED, reason);
    assert_false(lp_mux_has_stream(n->s.mux, id));
    size_t server_events = n->s.nev;
    pump(n);

    const struct logged *rst = find_event(&n->c, LP_MUX_EV_RST, id);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_REFUSED);
    assert_string_equal(rst->text, reason);
    assert_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, id));
    assert_null(find_event(&n->c, LP_MUX_EV_CLOSED, id));
    assert_int_equal(n->s.nev, server_events); /* lp_mux_reset: no event of its own */
    assert_int_equal(lp_mux_stream_count(n->c.mux), 0);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 0);
    net_free(n);
}

/* ---- flow control ------------------------------------------------------------------- */

static void test_mux_sender_stops_at_exactly_the_window(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    uint8_t *buf;

    size_t sent = send_pattern(n->c.mux, id, 0, 200000);
    assert_int_equal(sent, 64u * 1024u);
    assert_int_equal(lp_mux_send_reserve(n->c.mux, id, &buf), 0);
    pump(n);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 64u * 1024u);
    assert_int_equal(send_pattern(n->c.mux, id, sent, 1000), 0);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_withholds_credit_until_consumed(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    uint8_t *buf;

    size_t sent = send_pattern(n->c.mux, id, 0, 200000);
    assert_int_equal(sent, 65536);
    pump(n);
    /* Buffered but unconsumed bytes earn no credit, however long we wait. */
    n->now += 10000;
    pump(n);
    assert_int_equal(lp_mux_send_reserve(n->c.mux, id, &buf), 0);
    assert_null(find_event(&n->c, LP_MUX_EV_WRITABLE, id));

    /* Below a quarter of the window, with bytes still queued: still no WINDOW. */
    assert_int_equal(read_pattern(n->s.mux, id, 0, 1000), 1000);
    pump(n);
    assert_int_equal(lp_mux_send_reserve(n->c.mux, id, &buf), 0);

    /* A quarter consumed: exactly that much credit comes back, with a WRITABLE. */
    assert_int_equal(read_pattern(n->s.mux, id, 1000, 16384 - 1000), 16384 - 1000);
    pump(n);
    assert_int_equal(count_events(&n->c, LP_MUX_EV_WRITABLE, id), 1);
    assert_int_equal(send_pattern(n->c.mux, id, sent, 100000), 16384);
    net_free(n);
}

/* One readv's worth at a time: the spans never add up to more than the stream's credit, and
 * what is committed arrives in order as if sent frame by frame. */
static size_t send_pattern_v(lp_mux *m, uint32_t id, size_t from, size_t len, size_t *count)
{
    struct lp_span spans[8];
    size_t room = lp_mux_send_reservev(m, id, spans, 8, count);
    size_t n = len < room ? len : room, done = 0;

    for (size_t k = 0; k < *count && done < n; k++) {
        for (size_t i = 0; i < spans[k].n && done < n; i++, done++)
            spans[k].p[i] = pattern(from + done);
    }
    if (n > 0)
        lp_mux_send_commitv(m, id, n);
    return room;
}

static void test_mux_reservev_spans_stay_within_credit(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    size_t count;

    /* 64 KiB of credit: four full frames. */
    assert_int_equal(send_pattern_v(n->c.mux, id, 0, 40000, &count), 65536);
    assert_int_equal(count, 4);
    /* 40000 taken: 25536 left, as one full frame and a short one. */
    assert_int_equal(send_pattern_v(n->c.mux, id, 40000, 25536, &count), 25536);
    assert_int_equal(count, 2);
    assert_int_equal(send_pattern_v(n->c.mux, id, 65536, 1, &count), 0); /* no credit */
    pump(n);
    assert_int_equal(read_pattern(n->s.mux, id, 0, 65536), 65536);
    net_free(n);
}

static void test_mux_interactive_stream_never_stalls_and_returns_credit_by_quarters(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    uint64_t base = lp_pipe_tx_seq(n->s.pipe);

    /* An interactive stream: 16 bytes at a time, each read at once, for two and a half
     * windows (64 KiB each). Every message goes through whole, so credit held back never
     * stalls it, and credit comes back a quarter window (16 KiB) at a time, not once per
     * message: 10 WINDOW frames of 12 bytes are all the server sends. */
    for (size_t i = 0; i < 163840; i += 16) {
        assert_int_equal(send_pattern(n->c.mux, id, i, 16), 16);
        pump(n);
        assert_int_equal(read_pattern(n->s.mux, id, i, 16), 16);
        pump(n);
    }
    assert_int_equal(lp_pipe_tx_seq(n->s.pipe) - base, 10 * 12);
    /* Everything was returned: the last quarter went back when it was reached. */
    assert_int_equal(send_pattern(n->c.mux, id, 163840, 200000), 65536);
    net_free(n);
}

/* One stream between a client and a server whose windows may grow: stream_window 64 KiB,
 * stream_window_max max, receive_buffer budget. */
static struct net *net_growing(size_t max, size_t budget, uint32_t *id)
{
    struct lp_mux_config cc = mux_cfg(), sc = mux_cfg();

    sc.stream_window_max = (uint32_t)max;
    sc.receive_buffer = budget;
    struct net *n = net_new_with(&cc, &sc, &PIPE_CFG);
    *id = open_stream(n, "h:1");
    return n;
}

/* Rounds of a bulk transfer: the sender uses all its credit, everything arrives, the
 * receiver consumes all of it but `lag` bytes. Returns the credit of the last round. */
static size_t bulk_rounds(struct net *n, uint32_t id, int rounds, size_t lag, size_t *wr,
                          size_t *rd)
{
    size_t credit = 0;

    for (int round = 0; round < rounds; round++) {
        credit = send_pattern(n->c.mux, id, *wr, 1u << 22);
        *wr += credit;
        pump(n);
        *rd += read_pattern(n->s.mux, id, *rd, *wr - *rd - lag);
        pump(n);
    }
    return credit;
}

/* A window that is used whole while the local end keeps up doubles, 64 -> 128 -> 256 KiB,
 * and stops at its max: the sender never has more credit than that. */
static void test_mux_busy_stream_window_grows_to_its_max(void **state)
{
    (void)state;
    uint32_t id;
    struct net *n = net_growing(256u * 1024u, 16u * 1024u * 1024u, &id);
    size_t wr = 0, rd = 0;

    assert_int_equal(bulk_rounds(n, id, 1, 0, &wr, &rd), 65536);
    assert_int_equal(bulk_rounds(n, id, 1, 0, &wr, &rd), 131072);
    for (int round = 0; round < 20; round++) {
        /* At most the max; at least three quarters of it (below a quarter may be held). */
        size_t credit = bulk_rounds(n, id, 1, 0, &wr, &rd);
        assert_true(credit <= 262144);
        assert_true(round < 2 || credit >= 196608);
    }
    assert_int_equal(rd, wr);
    assert_int_equal(lp_mux_granted(n->s.mux), 262144);
    assert_int_equal(n->s.rc, LP_OK);
    assert_int_equal(n->c.rc, LP_OK);
    net_free(n);
}

/* A local end that never empties the queue is the bottleneck, not the window: it stays. */
static void test_mux_window_does_not_grow_while_the_local_end_lags(void **state)
{
    (void)state;
    uint32_t id;
    struct net *n = net_growing(256u * 1024u, 16u * 1024u * 1024u, &id);
    size_t wr = 0, rd = 0;

    bulk_rounds(n, id, 20, 1, &wr, &rd);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536);
    assert_int_equal(wr - rd, 1);
    net_free(n);
}

/* Growth stops where the session would have granted more than half its receive_buffer, so
 * new streams still find their full window: with a 256 KiB budget, 128 KiB at most. */
static void test_mux_window_growth_leaves_half_the_budget(void **state)
{
    (void)state;
    uint32_t id, other;
    struct net *n = net_growing(1024u * 1024u, 256u * 1024u, &id);
    size_t wr = 0, rd = 0;

    assert_true(bulk_rounds(n, id, 20, 0, &wr, &rd) <= 131072);
    assert_int_equal(lp_mux_granted(n->s.mux), 131072);
    other = open_stream(n, "h:2");
    assert_int_equal(send_pattern(n->c.mux, other, 0, 1u << 22), 65536);
    net_free(n);
}

static void test_mux_slow_stream_does_not_stop_another(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t slow = open_stream(n, "slow:1");
    uint32_t fast = open_stream(n, "fast:1");
    const size_t total = 400000;

    assert_int_equal(send_pattern(n->c.mux, slow, 0, 200000), 65536);
    size_t sent = 0, got = 0;
    for (int i = 0; i < 1000 && got < total; i++) {
        sent += send_pattern(n->c.mux, fast, sent, total - sent);
        pump(n);
        got += read_pattern(n->s.mux, fast, got, SIZE_MAX);
    }
    assert_int_equal(got, total);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, slow), 65536);
    net_free(n);
}

static void test_mux_receive_buffer_shrinks_new_windows(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_mux_config sc = mux_cfg();
    cc.receive_buffer = 100u * 1024u; /* 64 KiB, then the 36 KiB left, then the minimum */
    struct net *n = net_new_with(&cc, &sc, &PIPE_CFG);
    uint32_t a = open_stream(n, "a:1");
    uint32_t b = open_stream(n, "b:1");
    uint32_t c = open_stream(n, "c:1");

    assert_int_equal(send_pattern(n->s.mux, a, 0, 200000), 65536);
    assert_int_equal(send_pattern(n->s.mux, b, 0, 200000), 36864);
    assert_int_equal(send_pattern(n->s.mux, c, 0, 200000), LP_MUX_MIN_WINDOW);

    /* Closing a frees its share for the next stream: 100 - 36 - 16 KiB are left. */
    lp_mux_reset(n->c.mux, a, LP_RST_RESET, "done");
    pump(n);
    uint32_t d = open_stream(n, "d:1");
    assert_int_equal(send_pattern(n->s.mux, d, 0, 200000), 49152);
    net_free(n);
}

static void test_mux_window_wakes_a_stream_blocked_on_credit(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");

    assert_int_equal(send_pattern(n->c.mux, id, 0, 65536), 65536);
    assert_int_equal(send_pattern(n->c.mux, id, 65536, 1), 0); /* blocked on credit */
    pump(n);
    assert_int_equal(read_pattern(n->s.mux, id, 0, 65536), 65536);
    pump(n);
    assert_true(count_events(&n->c, LP_MUX_EV_WRITABLE, id) >= 1);
    assert_int_equal(send_pattern(n->c.mux, id, 65536, 65536), 65536);
    net_free(n);
}

/* ---- extensions: credit for bytes the glue holds (lp_mux_recv_extend) ------------------- */

static void test_mux_extend_grants_credit_without_consuming(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    size_t granted = 0;

    assert_int_equal(send_pattern(n->c.mux, id, 0, 200000), 65536);
    pump(n);
    /* The glue holds all 64 KiB (a line not finished) and asks for 32 KiB more. */
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 32768, &granted), LP_OK);
    assert_int_equal(granted, 32768);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536 + 32768);
    assert_int_equal(lp_mux_held(n->s.mux), 65536 + 32768); /* the promise counts at once */
    /* Asking again for what is already outstanding grants nothing more. */
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 32768, &granted), LP_OK);
    assert_int_equal(granted, 0);
    pump(n);
    assert_true(count_events(&n->c, LP_MUX_EV_WRITABLE, id) >= 1);
    assert_int_equal(send_pattern(n->c.mux, id, 65536, 200000), 32768); /* exactly that */
    pump(n);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 98304);
    assert_int_equal(lp_mux_buffered(n->s.mux), 98304);
    assert_int_equal(lp_mux_held(n->s.mux), 98304); /* promised, then received: once */
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_extension_is_paid_back_before_credit_returns(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    size_t granted = 0, sent;

    assert_int_equal(send_pattern(n->c.mux, id, 0, 200000), 65536);
    pump(n);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 65536, &granted), LP_OK);
    assert_int_equal(granted, 65536);
    pump(n);
    sent = 65536 + send_pattern(n->c.mux, id, 65536, 200000);
    assert_int_equal(sent, 131072);
    pump(n);
    /* The first 64 KiB consumed pay the extension back: no credit returns for them. */
    assert_int_equal(read_pattern(n->s.mux, id, 0, 65536), 65536);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, id, sent, 1), 0);
    /* The rest returns credit as usual: the window is back to 64 KiB, no more. */
    assert_int_equal(read_pattern(n->s.mux, id, 65536, 65536), 65536);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, id, sent, 200000), 65536);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536);
    assert_int_equal(lp_mux_buffered(n->s.mux), 0);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

/* The extension's credit need not be used before the bytes leave: whatever the peer was not
 * sent yet is part of the window it already has, and the sum stays the window. */
static void test_mux_unused_extension_is_paid_back_too(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    size_t granted = 0;

    assert_int_equal(send_pattern(n->c.mux, id, 0, 200000), 65536);
    pump(n);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 65536, &granted), LP_OK);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, id, 65536, 100), 100); /* 100 of 64 KiB used */
    pump(n);
    assert_int_equal(lp_mux_held(n->s.mux), 65536 + 65536);
    assert_int_equal(read_pattern(n->s.mux, id, 0, SIZE_MAX), 65636);
    pump(n);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536);
    assert_int_equal(lp_mux_held(n->s.mux), 0); /* the unused promise went with it */
    /* The peer may now send one window, 64 KiB, less the 100 bytes consumed and not yet
     * returned (below a quarter window), and not a byte more. */
    assert_int_equal(send_pattern(n->c.mux, id, 65636, 200000), 65536 - 100);
    pump(n);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 65536 - 100);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_extend_stops_at_the_receive_buffer_and_wakes_when_budget_frees(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg(), sc = mux_cfg();
    sc.receive_buffer = 160u * 1024u; /* two 64 KiB windows, 32 KiB left for extensions */
    struct net *n = net_new_with(&cc, &sc, &PIPE_CFG);
    uint32_t a = open_stream(n, "a:1");
    uint32_t b = open_stream(n, "b:1");
    size_t granted = 0;

    assert_int_equal(send_pattern(n->c.mux, a, 0, 200000), 65536);
    pump(n);
    /* Asked for 64 KiB, given what is left: 32 KiB. */
    assert_int_equal(lp_mux_recv_extend(n->s.mux, a, 65536, &granted), LP_OK);
    assert_int_equal(granted, 32768);
    assert_int_equal(lp_mux_granted(n->s.mux), 160u * 1024u);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, a, 65536, 200000), 32768);
    pump(n);
    /* The budget is spent: refused, nothing granted, and nothing more can be sent. */
    assert_int_equal(lp_mux_recv_extend(n->s.mux, a, 65536, &granted), LP_ERR_NOSPACE);
    assert_int_equal(granted, 0);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, a, 98304, 1), 0);
    assert_int_equal(lp_mux_granted(n->s.mux), 160u * 1024u);

    /* b ends: its window comes free and a hears READABLE, so its glue asks again. */
    size_t before = count_events(&n->s, LP_MUX_EV_READABLE, a);
    lp_mux_reset(n->c.mux, b, LP_RST_RESET, "done");
    pump(n);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_READABLE, a), before + 1);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, a, 65536, &granted), LP_OK);
    assert_int_equal(granted, 65536);
    pump(n);
    assert_int_equal(send_pattern(n->c.mux, a, 98304, 200000), 65536);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_paying_back_an_extension_wakes_a_starved_stream(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg(), sc = mux_cfg();
    sc.receive_buffer = 192u * 1024u;
    struct net *n = net_new_with(&cc, &sc, &PIPE_CFG);
    uint32_t a = open_stream(n, "a:1");
    uint32_t b = open_stream(n, "b:1");
    size_t granted = 0;

    assert_int_equal(send_pattern(n->c.mux, a, 0, 200000), 65536);
    assert_int_equal(send_pattern(n->c.mux, b, 0, 200000), 65536);
    pump(n);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, a, 65536, &granted), LP_OK);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, b, 65536, &granted), LP_ERR_NOSPACE);
    pump(n);
    size_t before = count_events(&n->s, LP_MUX_EV_READABLE, b);
    /* a's line ends: consuming it pays the extension back, and b is told. */
    assert_int_equal(read_pattern(n->s.mux, a, 0, SIZE_MAX), 65536);
    pump(n);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_READABLE, b), before + 1);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, b, 65536, &granted), LP_OK);
    assert_int_equal(granted, 65536);
    net_free(n);
}

static void test_mux_extend_refuses_what_cannot_be_granted(void **state)
{
    (void)state;
    struct net *n = net_new();
    size_t granted = 7;

    assert_int_equal(lp_mux_recv_extend(n->s.mux, 99, 10, &granted), LP_ERR_NOT_FOUND);
    assert_int_equal(granted, 0);
    /* Not accepted yet: no WINDOW may go before OPEN_OK. */
    n->s.auto_accept = false;
    uint32_t id = 0;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &id), LP_OK);
    pump(n);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 10, &granted), LP_ERR_STATE);
    assert_int_equal(lp_mux_accept(n->s.mux, id), LP_OK);
    pump(n);
    /* More than a window can count. */
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, (size_t)UINT32_MAX + 1, &granted),
                     LP_ERR_TOO_BIG);
    /* After the peer's FIN nothing more can come: credit would be for nothing. */
    assert_int_equal(send_pattern(n->c.mux, id, 0, 100), 100);
    assert_int_equal(lp_mux_shutdown(n->c.mux, id), LP_OK);
    pump(n);
    assert_int_equal(lp_mux_recv_extend(n->s.mux, id, 65536, &granted), LP_ERR_CLOSED);
    assert_int_equal(granted, 0);
    assert_int_equal(lp_mux_granted(n->s.mux), 65536);
    net_free(n);
}

static void test_mux_recv_find_and_copy_see_across_pieces(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    uint8_t line[40000], got[40000];
    size_t taken = 0;

    memset(line, 'x', sizeof(line));
    line[30000] = '\n'; /* in the second 16 KiB frame */
    assert_int_equal(lp_mux_send(n->c.mux, id, line, sizeof(line), &taken), LP_OK);
    assert_int_equal(taken, sizeof(line));
    pump(n);
    assert_int_equal(lp_mux_recv_find(n->s.mux, id, 0, '\n'), 30000);
    assert_int_equal(lp_mux_recv_find(n->s.mux, id, 20000, '\n'), 30000);
    assert_int_equal(lp_mux_recv_find(n->s.mux, id, 30001, '\n'), SIZE_MAX);
    assert_int_equal(lp_mux_recv_find(n->s.mux, 77, 0, '\n'), SIZE_MAX);
    assert_int_equal(lp_mux_recv_copy(n->s.mux, id, got, 30001), 30001);
    assert_memory_equal(got, line, 30001);
    assert_int_equal(lp_mux_recv_copy(n->s.mux, id, got, sizeof(got) + 1), sizeof(line));
    /* Looking is not consuming: nothing left the queue, and new bytes re-arm READABLE. */
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), sizeof(line));
    size_t before = count_events(&n->s, LP_MUX_EV_READABLE, id);
    assert_int_equal(send_pattern(n->c.mux, id, 0, 10), 10);
    pump(n);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_READABLE, id), before + 1);
    net_free(n);
}

/* ---- half-close --------------------------------------------------------------------- */

static void half_close(bool client_first)
{
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    struct end *first = client_first ? &n->c : &n->s;
    struct end *second = client_first ? &n->s : &n->c;

    assert_int_equal(send_pattern(first->mux, id, 0, 1000), 1000);
    assert_int_equal(lp_mux_shutdown(first->mux, id), LP_OK);
    assert_int_equal(lp_mux_shutdown(first->mux, id), LP_OK); /* FIN goes out once */
    pump(n);
    /* FIN waits for the bytes before it to be consumed. */
    assert_int_equal(count_events(second, LP_MUX_EV_FIN, id), 0);
    assert_int_equal(read_pattern(second->mux, id, 0, SIZE_MAX), 1000);
    pump(n);
    assert_int_equal(count_events(second, LP_MUX_EV_FIN, id), 1);
    uint8_t *buf;
    assert_int_equal(lp_mux_send_reserve(first->mux, id, &buf), 0);

    /* The other direction still flows. */
    size_t sent = 0, got = 0;
    for (int i = 0; i < 100 && got < 100000; i++) {
        sent += send_pattern(second->mux, id, sent, 100000 - sent);
        pump(n);
        got += read_pattern(first->mux, id, got, SIZE_MAX);
        pump(n);
    }
    assert_int_equal(got, 100000);
    assert_int_equal(count_events(first, LP_MUX_EV_CLOSED, id), 0);
    assert_true(lp_mux_has_stream(first->mux, id));

    assert_int_equal(lp_mux_shutdown(second->mux, id), LP_OK);
    pump(n);
    assert_int_equal(count_events(first, LP_MUX_EV_FIN, id), 1);
    assert_int_equal(count_events(first, LP_MUX_EV_CLOSED, id), 1);
    assert_int_equal(count_events(second, LP_MUX_EV_CLOSED, id), 1);
    assert_int_equal(count_events(second, LP_MUX_EV_FIN, id), 1);
    assert_int_equal(lp_mux_stream_count(n->c.mux), 0);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 0);
    assert_int_equal(n->c.rc, LP_OK);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_half_close_client_first_then_server(void **state)
{
    (void)state;
    half_close(true);
}

static void test_mux_half_close_server_first_then_client(void **state)
{
    (void)state;
    half_close(false);
}

static void test_mux_fin_before_accept_is_delivered_after_accept(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = 0;

    n->s.auto_accept = false;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &id), LP_OK);
    assert_int_equal(lp_mux_shutdown(n->c.mux, id), LP_OK); /* before OPEN_OK: allowed */
    pump(n);
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN, id));
    assert_int_equal(count_events(&n->s, LP_MUX_EV_FIN, id), 0);
    assert_int_equal(lp_mux_shutdown(n->s.mux, id), LP_ERR_STATE); /* not accepted yet */
    assert_int_equal(lp_mux_accept(n->s.mux, id), LP_OK);
    assert_int_equal(lp_mux_accept(n->s.mux, id), LP_ERR_STATE);
    end_events(&n->s);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_FIN, id), 1);
    assert_int_equal(send_pattern(n->s.mux, id, 0, 5000), 5000);
    assert_int_equal(lp_mux_shutdown(n->s.mux, id), LP_OK);
    pump(n);
    assert_int_equal(read_pattern(n->c.mux, id, 0, SIZE_MAX), 5000);
    pump(n);
    assert_int_equal(count_events(&n->c, LP_MUX_EV_FIN, id), 1);
    assert_int_equal(count_events(&n->c, LP_MUX_EV_CLOSED, id), 1);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_CLOSED, id), 1);
    net_free(n);
}

static void test_mux_idle_stream_holds_no_buffered_bytes(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");

    assert_int_equal(send_pattern(n->c.mux, id, 0, 40000), 40000);
    pump(n);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 40000);
    assert_int_equal(read_pattern(n->s.mux, id, 0, SIZE_MAX), 40000);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 0);
    const uint8_t *data = (const uint8_t *)"x";
    assert_int_equal(lp_mux_recv_peek(n->s.mux, id, &data), 0);
    assert_null(data);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 1);
    net_free(n);
}

static void test_mux_readable_is_reported_once_until_peeked(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;
    const uint8_t *data;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    end_events(&e);
    assert_int_equal(feed_data(e.mux, 1, 100, &why), LP_OK);
    assert_int_equal(feed_data(e.mux, 1, 100, &why), LP_OK);
    end_events(&e);
    assert_int_equal(count_events(&e, LP_MUX_EV_READABLE, 1), 1);
    assert_int_equal(lp_mux_recv_peek(e.mux, 1, &data), 200);
    assert_int_equal(feed_data(e.mux, 1, 100, &why), LP_OK);
    end_events(&e);
    assert_int_equal(count_events(&e, LP_MUX_EV_READABLE, 1), 2);
    end_clear(&e);
}

/* ---- stream-level faults ------------------------------------------------------------ */

static void test_mux_data_beyond_window_resets_only_that_stream(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t bad = open_stream(n, "bad:1");
    uint32_t good = open_stream(n, "good:1");
    const char *why;

    /* The server granted 64 KiB; a fifth 16 KiB frame breaks it. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(feed_data(n->s.mux, bad, 16384, &why), LP_OK);
    assert_int_equal(feed_data(n->s.mux, bad, 1, &why), LP_OK);
    end_events(&n->s);
    const struct logged *local = find_event(&n->s, LP_MUX_EV_RST, bad);
    assert_non_null(local);
    assert_int_equal(local->code, LP_RST_PROTOCOL);
    assert_false(lp_mux_has_stream(n->s.mux, bad));
    pump(n);
    const struct logged *remote = find_event(&n->c, LP_MUX_EV_RST, bad);
    assert_non_null(remote);
    assert_int_equal(remote->code, LP_RST_PROTOCOL);
    assert_string_equal(remote->text, "data beyond window");
    assert_false(lp_mux_has_stream(n->c.mux, bad));

    assert_int_equal(send_pattern(n->c.mux, good, 0, 30000), 30000);
    pump(n);
    assert_int_equal(read_pattern(n->s.mux, good, 0, SIZE_MAX), 30000);
    assert_int_equal(n->s.rc, LP_OK);
    assert_int_equal(n->c.rc, LP_OK);
    net_free(n);
}

static void test_mux_data_after_fin_resets_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    assert_int_equal(feed_open(e.mux, 3, 65536, &why), LP_OK);
    end_events(&e);
    assert_int_equal(feed_fin(e.mux, 1, &why), LP_OK);
    assert_int_equal(feed_data(e.mux, 1, 10, &why), LP_OK);
    assert_int_equal(feed_fin(e.mux, 3, &why), LP_OK);
    assert_int_equal(feed_fin(e.mux, 3, &why), LP_OK);
    end_events(&e);
    const struct logged *rst = find_event(&e, LP_MUX_EV_RST, 1);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_PROTOCOL);
    assert_string_equal(rst->text, "data after FIN");
    rst = find_event(&e, LP_MUX_EV_RST, 3);
    assert_non_null(rst);
    assert_string_equal(rst->text, "duplicate FIN");
    assert_int_equal(lp_mux_stream_count(e.mux), 0);
    end_clear(&e);
}

static void test_mux_window_overflow_resets_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    end_events(&e);
    assert_int_equal(feed_u32(e.mux, LP_FT_WINDOW, 1, UINT32_MAX - 65536, &why), LP_OK);
    assert_true(lp_mux_has_stream(e.mux, 1)); /* exactly 2^32-1: still fine */
    assert_int_equal(feed_u32(e.mux, LP_FT_WINDOW, 1, 1, &why), LP_OK);
    end_events(&e);
    const struct logged *rst = find_event(&e, LP_MUX_EV_RST, 1);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_PROTOCOL);
    assert_false(lp_mux_has_stream(e.mux, 1));
    end_clear(&e);
}

static void test_mux_data_before_open_ok_resets_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;
    uint32_t id;

    lone_server(&e, &mc);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &id), LP_OK);
    assert_int_equal(feed_data(e.mux, id, 10, &why), LP_OK);
    end_events(&e);
    const struct logged *rst = find_event(&e, LP_MUX_EV_RST, id);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_PROTOCOL);
    assert_false(lp_mux_has_stream(e.mux, id));
    end_clear(&e);
}

/* ---- early data (one round trip per new stream) ------------------------------------ */

static void test_mux_opener_sends_early_data_up_to_the_allowance_before_open_ok(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = 0;
    uint8_t *buf;

    n->s.auto_accept = false;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &id), LP_OK);
    /* OPEN and the first 16 KiB go out together, before any answer. */
    assert_int_equal(send_pattern(n->c.mux, id, 0, 100000), LP_MUX_EARLY_DATA);
    assert_int_equal(lp_mux_send_reserve(n->c.mux, id, &buf), 0);
    pump(n);
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN, id));
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), LP_MUX_EARLY_DATA);
    assert_int_equal(n->s.rc, LP_OK);
    /* The glue takes it only once it has accepted; then the window (64 KiB) counts from the
     * first byte: 48 KiB more may follow. */
    assert_int_equal(lp_mux_accept(n->s.mux, id), LP_OK);
    assert_int_equal(read_pattern(n->s.mux, id, 0, SIZE_MAX), LP_MUX_EARLY_DATA);
    pump(n);
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, id));
    size_t more = send_pattern(n->c.mux, id, LP_MUX_EARLY_DATA, 200000);
    assert_true(more >= 48u * 1024u); /* plus whatever WINDOW already returned */
    pump(n);
    assert_int_equal(read_pattern(n->s.mux, id, LP_MUX_EARLY_DATA, SIZE_MAX), more);
    assert_int_equal(n->c.rc, LP_OK);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_early_data_of_a_refused_stream_is_dropped_with_its_budget(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = 0;

    n->s.auto_accept = false;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &id), LP_OK);
    assert_int_equal(send_pattern(n->c.mux, id, 0, 5000), 5000);
    pump(n);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 5000);
    lp_mux_reset(n->s.mux, id, LP_RST_NOT_ALLOWED, "not allowed by the server's policy");
    pump(n);
    const struct logged *rst = find_event(&n->c, LP_MUX_EV_RST, id);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_NOT_ALLOWED);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 0);
    /* The refused stream's window went back: a new stream gets the full stream_window. */
    n->s.auto_accept = true;
    uint32_t id2 = open_stream(n, "h:2");
    assert_int_equal(send_pattern(n->c.mux, id2, 0, 200000), 64u * 1024u);
    net_free(n);
}

static void test_mux_more_early_data_than_allowed_resets_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;

    lone_server(&e, &mc);
    e.auto_accept = false;
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    assert_int_equal(feed_data(e.mux, 1, LP_FRAME_MAX_PAYLOAD, &why), LP_OK); /* 16 KiB: fine */
    end_events(&e);
    assert_true(lp_mux_has_stream(e.mux, 1));
    assert_int_equal(feed_data(e.mux, 1, 1, &why), LP_OK); /* one byte more */
    end_events(&e);
    const struct logged *rst = find_event(&e, LP_MUX_EV_RST, 1);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_PROTOCOL);
    assert_false(lp_mux_has_stream(e.mux, 1));
    end_clear(&e);
}

static void test_mux_open_ok_window_below_the_early_data_resets_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;
    uint32_t id;

    lone_server(&e, &mc);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &id), LP_OK);
    assert_int_equal(send_pattern(e.mux, id, 0, 2000), 2000);
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, id, 1000, &why), LP_OK);
    end_events(&e);
    const struct logged *rst = find_event(&e, LP_MUX_EV_RST, id);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_PROTOCOL);
    end_clear(&e);
}

/* ---- session-level faults ----------------------------------------------------------- */

static void test_mux_rejects_open_with_wrong_parity(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 2, 65536, &why), LP_ERR_PROTOCOL);
    assert_non_null(why);
    assert_int_equal(lp_mux_stream_count(e.mux), 0);
    end_clear(&e);
}

static void test_mux_rejects_reused_stream_id(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 5, 65536, &why), LP_OK);
    assert_int_equal(feed_open(e.mux, 5, 65536, &why), LP_ERR_PROTOCOL);
    assert_non_null(why);
    assert_int_equal(feed_open(e.mux, 3, 65536, &why), LP_ERR_PROTOCOL); /* lower: reused */
    assert_int_equal(feed_open(e.mux, 7, 65536, &why), LP_OK);
    assert_int_equal(lp_mux_stream_count(e.mux), 2);
    end_clear(&e);
}

static void test_mux_rejects_frames_for_never_opened_streams(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;

    lone_server(&e, &mc);
    assert_int_equal(feed_data(e.mux, 7, 10, &why), LP_ERR_PROTOCOL);
    assert_non_null(why);
    assert_int_equal(feed_u32(e.mux, LP_FT_WINDOW, 9, 10, &why), LP_ERR_PROTOCOL);
    assert_int_equal(feed_fin(e.mux, 11, &why), LP_ERR_PROTOCOL);
    assert_int_equal(feed_rst(e.mux, 13, LP_RST_RESET, "x", &why), LP_ERR_PROTOCOL);
    /* Our own parity, never opened by us. */
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, 4, 1000, &why), LP_ERR_PROTOCOL);
    assert_int_equal(feed_data(e.mux, 2, 10, &why), LP_ERR_PROTOCOL);
    end_events(&e);
    assert_int_equal(e.nev, 0);
    end_clear(&e);
}

static void test_mux_ignores_late_frames_for_closed_streams(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;
    uint32_t ours;

    lone_server(&e, &mc);
    e.auto_accept = false;
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &ours), LP_OK);
    end_events(&e);
    lp_mux_reset(e.mux, 1, LP_RST_REFUSED, "no");
    lp_mux_reset(e.mux, ours, LP_RST_RESET, "gone");
    size_t before = e.nev;

    assert_int_equal(feed_data(e.mux, 1, 10, &why), LP_OK);
    assert_int_equal(feed_u32(e.mux, LP_FT_WINDOW, 1, 10, &why), LP_OK);
    assert_int_equal(feed_fin(e.mux, 1, &why), LP_OK);
    assert_int_equal(feed_rst(e.mux, 1, LP_RST_RESET, "late", &why), LP_OK);
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, ours, 1000, &why), LP_OK);
    assert_int_equal(feed_data(e.mux, ours, 10, &why), LP_OK);
    end_events(&e);
    assert_int_equal(e.nev, before);
    assert_int_equal(lp_mux_stream_count(e.mux), 0);
    end_clear(&e);
}

static void test_mux_refuses_open_beyond_max_streams(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_mux_config sc = mux_cfg();
    sc.max_streams = 3;
    struct net *n = net_new_with(&cc, &sc, &PIPE_CFG);
    uint32_t ids[4];

    for (int i = 0; i < 4; i++)
        assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &ids[i]), LP_OK);
    pump(n);
    for (int i = 0; i < 3; i++)
        assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, ids[i]));
    const struct logged *rst = find_event(&n->c, LP_MUX_EV_RST, ids[3]);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_LIMIT);
    assert_string_equal(rst->text, "too many streams");
    assert_null(find_event(&n->s, LP_MUX_EV_OPEN, ids[3]));
    assert_int_equal(lp_mux_stream_count(n->s.mux), 3);
    assert_int_equal(lp_mux_stream_count(n->c.mux), 3);
    /* Locally, the cap says no before anything is sent. */
    uint32_t id;
    assert_int_equal(lp_mux_open(n->s.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &id),
                     LP_ERR_NOSPACE);
    net_free(n);
}

static void test_mux_open_checks_its_arguments(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    char big[LP_FRAME_MAX_TEXT + 1];
    uint32_t id = 99;

    memset(big, 'a', sizeof(big));
    lone_server(&e, &mc);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_TCP, big, sizeof(big), NULL, 0, &id),
                     LP_ERR_TOO_BIG);
    assert_int_equal(id, 0);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_MCP, "m", 1, big, sizeof(big), &id),
                     LP_ERR_TOO_BIG);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_TCP, "", 0, NULL, 0, &id), LP_ERR_INVALID);
    assert_int_equal(lp_mux_open(e.mux, 0, "h:1", 3, NULL, 0, &id), LP_ERR_INVALID);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_TCP, "h\0:1", 4, NULL, 0, &id), LP_ERR_INVALID);
    assert_int_equal(
        lp_mux_open(e.mux, LP_KIND_TCP, big, LP_FRAME_MAX_TEXT, big, LP_FRAME_MAX_TEXT, &id),
        LP_OK);
    assert_int_equal(id, 2);
    assert_int_equal(lp_mux_stream_count(e.mux), 1);
    end_clear(&e);
}

static void test_mux_new_refuses_bad_config(void **state)
{
    (void)state;
    struct lp_mux_config mc = mux_cfg();
    lp_pipe *p;
    lp_mux *m = (lp_mux *)&mc;

    assert_int_equal(lp_pipe_new(&PIPE_CFG, false, &p), LP_OK);
    mc.stream_window = 0;
    assert_int_equal(lp_mux_new(&mc, p, false, &m), LP_ERR_INVALID);
    assert_null(m);
    mc = mux_cfg();
    mc.max_streams = 0;
    assert_int_equal(lp_mux_new(&mc, p, false, &m), LP_ERR_INVALID);
    lp_mux_free(NULL);
    lp_pipe_free(p);
}

/* ---- resets, goodbye, a full pipe --------------------------------------------------- */

static void test_mux_reset_all_emits_one_rst_per_stream_with_user_pointer(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t ids[5];
    int tags[5];

    for (int i = 0; i < 5; i++) {
        ids[i] = open_stream(n, "h:1");
        lp_mux_set_user(n->c.mux, ids[i], &tags[i]);
        assert_ptr_equal(lp_mux_user(n->c.mux, ids[i]), &tags[i]);
    }
    assert_int_equal(send_pattern(n->s.mux, ids[2], 0, 1000), 1000);
    pump(n);
    uint64_t tx = lp_pipe_tx_seq(n->c.pipe);
    size_t before = n->c.nev;
    lp_mux_reset_all(n->c.mux, LP_RST_SESSION_LOST, "session lost");
    assert_int_equal(lp_mux_stream_count(n->c.mux), 0);
    end_events(&n->c);
    assert_int_equal(n->c.nev - before, 5);
    for (int i = 0; i < 5; i++) {
        const struct logged *rst = find_event(&n->c, LP_MUX_EV_RST, ids[i]);
        assert_non_null(rst);
        assert_ptr_equal(rst->user, &tags[i]);
        assert_int_equal(rst->code, LP_RST_SESSION_LOST);
        assert_string_equal(rst->text, "session lost");
    }
    assert_int_equal(lp_pipe_tx_seq(n->c.pipe), tx); /* nothing sent */
    assert_null(lp_mux_user(n->c.mux, ids[0]));
    net_free(n);
}

static void test_mux_goodbye_reaches_the_peer(void **state)
{
    (void)state;
    struct net *n = net_new();

    lp_mux_goodbye(n->c.mux, LP_GOODBYE_SHUTDOWN, "client exits");
    pump(n);
    const struct logged *bye = find_event(&n->s, LP_MUX_EV_GOODBYE, 0);
    assert_non_null(bye);
    assert_int_equal(bye->code, LP_GOODBYE_SHUTDOWN);
    assert_string_equal(bye->text, "client exits");
    net_free(n);
}

static void test_mux_rst_from_peer_frees_stream_with_reason(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    int tag;

    lp_mux_set_user(n->s.mux, id, &tag);
    assert_int_equal(send_pattern(n->c.mux, id, 0, 5000), 5000);
    lp_mux_reset(n->c.mux, id, LP_RST_RESET, "local socket reset");
    pump(n);
    const struct logged *rst = find_event(&n->s, LP_MUX_EV_RST, id);
    assert_non_null(rst);
    assert_int_equal(rst->code, LP_RST_RESET);
    assert_string_equal(rst->text, "local socket reset");
    assert_ptr_equal(rst->user, &tag);
    assert_null(find_event(&n->s, LP_MUX_EV_CLOSED, id));
    assert_int_equal(lp_mux_stream_count(n->s.mux), 0);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_flush_sends_control_frames_held_by_a_full_pipe(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_mux_config sc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    char target[LP_FRAME_MAX_TEXT];
    uint32_t opened[200];
    size_t nopened = 0;
    uint8_t *buf;

    small.replay_buffer = 64u * 1024u;
    sc.stream_window = 1u << 20;
    cc.max_streams = sc.max_streams = 1000;
    struct net *n = net_new_with(&cc, &sc, &small);
    uint32_t a = open_stream(n, "a:1");
    uint32_t b = open_stream(n, "b:1");
    uint32_t c = open_stream(n, "c:1");

    /* Nothing is carried now, so nothing is acknowledged: fill the replay buffer. */
    size_t sent = send_pattern(n->c.mux, a, 0, 1u << 20);
    assert_true(sent > 60000);
    assert_int_equal(lp_mux_send_reserve(n->c.mux, b, &buf), 0); /* b waits for room */
    memset(target, 't', sizeof(target));
    size_t last = lp_pipe_buffered(n->c.pipe);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(
            lp_mux_open(n->c.mux, LP_KIND_TCP, target, sizeof(target), NULL, 0, &opened[nopened]),
            LP_OK);
        nopened++;
        size_t now_buffered = lp_pipe_buffered(n->c.pipe);
        if (now_buffered == last)
            break; /* this OPEN found the slack used up: it is pending */
        last = now_buffered;
    }
    assert_true(nopened < 200);
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "late:1", 6, NULL, 0, &opened[nopened]),
                     LP_OK);
    nopened++;
    assert_int_equal(lp_mux_shutdown(n->c.mux, a), LP_OK);
    lp_mux_reset(n->c.mux, c, LP_RST_RESET, "reset while full");
    assert_int_equal(lp_pipe_buffered(n->c.pipe), last); /* all of that is pending */

    pump(n); /* ACKs come back, ROOM -> lp_mux_flush */
    assert_int_equal(n->s.rc, LP_OK);
    uint32_t prev = 0;
    size_t opens = 0;
    for (size_t i = 0; i < n->s.nev; i++) {
        if (n->s.ev[i].type != LP_MUX_EV_OPEN)
            continue;
        assert_true(n->s.ev[i].id > prev); /* ids arrive in order */
        prev = n->s.ev[i].id;
        opens++;
    }
    assert_int_equal(opens, 3 + nopened);
    assert_int_equal(read_pattern(n->s.mux, a, 0, SIZE_MAX), sent);
    pump(n);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_FIN, a), 1);
    const struct logged *rst = find_event(&n->s, LP_MUX_EV_RST, c);
    assert_non_null(rst);
    assert_string_equal(rst->text, "reset while full");
    assert_int_equal(count_events(&n->c, LP_MUX_EV_WRITABLE, b), 1);
    assert_int_equal(send_pattern(n->c.mux, b, 0, 1000), 1000);
    net_free(n);
}

static void test_mux_reset_of_unsent_open_sends_nothing(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    char target[LP_FRAME_MAX_TEXT];
    uint32_t id = 0;

    small.replay_buffer = 64u * 1024u;
    struct net *n = net_new_with(&cc, &cc, &small);
    uint32_t a = open_stream(n, "a:1");
    send_pattern(n->c.mux, a, 0, 1u << 20);
    memset(target, 't', sizeof(target));
    size_t last = 0;
    for (int i = 0; i < 200 && lp_pipe_buffered(n->c.pipe) != last; i++) {
        last = lp_pipe_buffered(n->c.pipe);
        assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, target, sizeof(target), NULL, 0, &id),
                         LP_OK);
    }
    lp_mux_reset(n->c.mux, id, LP_RST_RESET, "never mind"); /* its OPEN never went out */
    uint32_t next = 0;
    assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "x:1", 3, NULL, 0, &next), LP_OK);
    pump(n);
    assert_int_equal(n->s.rc, LP_OK);
    assert_null(find_event(&n->s, LP_MUX_EV_OPEN, id));
    assert_null(find_event(&n->s, LP_MUX_EV_RST, id));
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN, next));
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN_OK, next));
    net_free(n);
}

/* Opens streams with 1 KiB targets until an OPEN finds the pipe full; returns the count. */
static size_t open_until_pending(struct end *e, uint32_t *ids, size_t max)
{
    char target[LP_FRAME_MAX_TEXT];
    size_t last = lp_pipe_buffered(e->pipe);

    memset(target, 't', sizeof(target));
    for (size_t i = 0; i < max; i++) {
        assert_int_equal(lp_mux_open(e->mux, LP_KIND_TCP, target, sizeof(target), NULL, 0, &ids[i]),
                         LP_OK);
        if (lp_pipe_buffered(e->pipe) == last)
            return i + 1;
        last = lp_pipe_buffered(e->pipe);
    }
    fail_msg("the pipe never filled");
    return 0;
}

static void test_mux_control_frames_alone_filling_the_pipe_are_flushed(void **state)
{
    (void)state;
    struct lp_mux_config mc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    uint32_t ids[300];

    small.replay_buffer = 64u * 1024u;
    mc.max_streams = 1000;
    struct net *n = net_new_with(&mc, &mc, &small);
    /* No DATA reserve ever failed here: the mux itself must get the pipe to report ROOM. */
    size_t count = open_until_pending(&n->c, ids, 300);
    pump(n);
    assert_int_equal(n->s.rc, LP_OK);
    for (size_t i = 0; i < count; i++)
        assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN, ids[i]));
    assert_int_equal(lp_mux_stream_count(n->s.mux), count);
    net_free(n);
}

static void test_mux_no_data_overtakes_a_pending_open_ok(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_mux_config sc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    uint32_t ids[200];
    uint32_t r = 0;

    small.replay_buffer = 64u * 1024u;
    sc.stream_window = 1u << 20;
    cc.max_streams = sc.max_streams = 1000;
    struct net *n = net_new_with(&cc, &sc, &small);
    uint32_t a = open_stream(n, "a:1");
    n->c.auto_accept = false;
    assert_int_equal(lp_mux_open(n->s.mux, LP_KIND_REVERSE, "r:1", 3, NULL, 0, &r), LP_OK);
    pump(n);
    assert_non_null(find_event(&n->c, LP_MUX_EV_OPEN, r));

    send_pattern(n->c.mux, a, 0, 1u << 20);
    open_until_pending(&n->c, ids, 200);
    size_t full = lp_pipe_buffered(n->c.pipe);
    assert_int_equal(lp_mux_accept(n->c.mux, r), LP_OK); /* OPEN_OK must wait */
    assert_int_equal(lp_pipe_buffered(n->c.pipe), full);

    /* ACKs make room, but the glue writes before it handles ROOM. */
    n->no_flush = true;
    pump(n);
    assert_true(lp_pipe_tx_room(n->c.pipe) > 0);
    assert_int_equal(send_pattern(n->c.mux, r, 0, 1000), 0);

    n->no_flush = false;
    lp_mux_flush(n->c.mux);
    end_events(&n->c);
    assert_int_equal(count_events(&n->c, LP_MUX_EV_WRITABLE, r), 1);
    assert_int_equal(send_pattern(n->c.mux, r, 0, 1000), 1000);
    pump(n);
    assert_non_null(find_event(&n->s, LP_MUX_EV_OPEN_OK, r));
    assert_null(find_event(&n->s, LP_MUX_EV_RST, r));
    assert_int_equal(read_pattern(n->s.mux, r, 0, SIZE_MAX), 1000);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_misplaced_open_ok_window_and_fin_reset_the_stream(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why;
    uint32_t a, b, c;

    lone_server(&e, &mc);
    assert_int_equal(feed_open(e.mux, 1, 65536, &why), LP_OK);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &a), LP_OK);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &b), LP_OK);
    assert_int_equal(lp_mux_open(e.mux, LP_KIND_REVERSE, "h:1", 3, NULL, 0, &c), LP_OK);
    end_events(&e);
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, 1, 1000, &why), LP_OK);
    assert_int_equal(feed_u32(e.mux, LP_FT_WINDOW, a, 1000, &why), LP_OK);
    assert_int_equal(feed_fin(e.mux, b, &why), LP_OK);
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, c, 1000, &why), LP_OK);
    assert_int_equal(feed_u32(e.mux, LP_FT_OPEN_OK, c, 1000, &why), LP_OK);
    end_events(&e);
    assert_string_equal(find_event(&e, LP_MUX_EV_RST, 1)->text,
                        "OPEN_OK for a stream the peer opened");
    assert_string_equal(find_event(&e, LP_MUX_EV_RST, a)->text, "WINDOW before OPEN_OK");
    assert_string_equal(find_event(&e, LP_MUX_EV_RST, b)->text, "FIN before OPEN_OK");
    assert_string_equal(find_event(&e, LP_MUX_EV_RST, c)->text, "duplicate OPEN_OK");
    /* The RST supersedes the OPEN_OK event the glue had not drained yet. */
    assert_null(find_event(&e, LP_MUX_EV_OPEN_OK, c));
    assert_int_equal(lp_mux_stream_count(e.mux), 0);
    end_clear(&e);
}

static void test_mux_rejects_malformed_and_foreign_frames(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const uint8_t short_open[] = {LP_KIND_TCP, 0, 1, 0}; /* window cut short */
    const uint8_t eight[8] = {0};
    struct lp_frame f = {
        .type = LP_FT_OPEN, .stream_id = 1, .payload = short_open, .len = sizeof(short_open)};
    const char *why = NULL;

    lone_server(&e, &mc);
    assert_int_equal(lp_mux_recv(e.mux, &f, &why), LP_ERR_PROTOCOL);
    assert_non_null(why);
    f = (struct lp_frame){.type = LP_FT_ACK, .payload = eight, .len = 8};
    assert_int_equal(lp_mux_recv(e.mux, &f, &why), LP_ERR_PROTOCOL);
    f = (struct lp_frame){
        .type = LP_FT_DATA, .flags = 1, .stream_id = 1, .payload = eight, .len = 8};
    assert_int_equal(lp_mux_recv(e.mux, &f, NULL), LP_ERR_PROTOCOL);
    f = (struct lp_frame){.type = LP_FT_DATA, .stream_id = 0, .payload = eight, .len = 8};
    assert_int_equal(lp_mux_recv(e.mux, &f, &why), LP_ERR_PROTOCOL);
    f = (struct lp_frame){.type = LP_FT_WINDOW, .stream_id = 1, .payload = eight, .len = 3};
    assert_int_equal(lp_mux_recv(e.mux, &f, &why), LP_ERR_PROTOCOL);
    f = (struct lp_frame){.type = LP_FT_GOODBYE, .payload = eight, .len = 1};
    assert_int_equal(lp_mux_recv(e.mux, &f, &why), LP_ERR_PROTOCOL);
    end_events(&e);
    assert_int_equal(e.nev, 0);
    end_clear(&e);
}

static void test_mux_local_calls_on_unknown_or_finished_streams_fail_cleanly(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t id = open_stream(n, "h:1");
    size_t taken = 99;
    const uint8_t byte = 1;

    assert_int_equal(lp_mux_send(n->c.mux, 77, &byte, 1, &taken), LP_ERR_NOT_FOUND);
    assert_int_equal(taken, 0);
    assert_int_equal(lp_mux_accept(n->c.mux, 77), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_mux_shutdown(n->c.mux, 77), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_mux_accept(n->c.mux, id), LP_ERR_STATE); /* we opened it */
    lp_mux_reset(n->c.mux, 77, LP_RST_RESET, "nothing");
    lp_mux_set_user(n->c.mux, 77, &taken);
    assert_null(lp_mux_user(n->c.mux, 77));
    assert_int_equal(lp_mux_recv_buffered(n->c.mux, 77), 0);
    lp_mux_recv_consumed(n->c.mux, 77, 10);
    assert_int_equal(lp_mux_shutdown(n->c.mux, id), LP_OK);
    assert_int_equal(lp_mux_send(n->c.mux, id, &byte, 1, &taken), LP_ERR_CLOSED);
    uint8_t *buf;
    assert_int_equal(lp_mux_send_reserve(n->c.mux, id, &buf), 0);
    lp_mux_send_commit(n->c.mux, id, 1); /* nothing reserved: ignored */
    pump(n);
    assert_int_equal(n->s.rc, LP_OK);
    assert_int_equal(lp_mux_recv_buffered(n->s.mux, id), 0);
    assert_int_equal(count_events(&n->s, LP_MUX_EV_FIN, id), 1);
    net_free(n);
}

static void test_mux_events_of_freed_streams_survive_new_streams(void **state)
{
    (void)state;
    struct net *n = net_new();
    uint32_t ids[3];
    int tags[3];
    struct lp_mux_event ev;

    for (int i = 0; i < 3; i++) {
        ids[i] = open_stream(n, "h:1");
        lp_mux_set_user(n->c.mux, ids[i], &tags[i]);
    }
    lp_mux_reset_all(n->c.mux, LP_RST_SESSION_LOST, "lost");
    assert_true(lp_mux_next_event(n->c.mux, &ev));
    assert_int_equal(ev.type, LP_MUX_EV_RST);
    assert_int_equal(ev.id, ids[0]);
    /* New streams while two RST events wait: their records must not be disturbed. */
    uint32_t more[20];
    for (int i = 0; i < 20; i++)
        assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &more[i]), LP_OK);
    for (int i = 1; i < 3; i++) {
        assert_true(lp_mux_next_event(n->c.mux, &ev));
        assert_int_equal(ev.type, LP_MUX_EV_RST);
        assert_int_equal(ev.id, ids[i]);
        assert_ptr_equal(ev.user, &tags[i]);
        assert_int_equal(ev.text_len, 4);
        assert_memory_equal(ev.text, "lost", 4);
    }
    assert_false(lp_mux_next_event(n->c.mux, &ev));
    assert_int_equal(lp_mux_stream_count(n->c.mux), 20);
    net_free(n);
}

static void test_mux_free_releases_undrained_events_and_pending_frames(void **state)
{
    (void)state;
    struct lp_mux_config mc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    uint32_t ids[200];

    small.replay_buffer = 64u * 1024u;
    mc.max_streams = 1000;
    struct net *n = net_new_with(&mc, &mc, &small);
    uint32_t a = open_stream(n, "a:1");
    uint32_t b = open_stream(n, "b:1");
    send_pattern(n->c.mux, a, 0, 1u << 20);
    open_until_pending(&n->c, ids, 200);
    lp_mux_reset(n->c.mux, b, LP_RST_RESET, "pending reset"); /* a zombie */
    lp_mux_goodbye(n->c.mux, LP_GOODBYE_NORMAL, "pending goodbye");
    assert_int_equal(feed_rst(n->c.mux, a, LP_RST_RESET, "undrained", &(const char *){NULL}),
                     LP_OK);
    /* net_free frees the mux with all of that still inside: LeakSanitizer checks. */
    net_free(n);
}

static void test_mux_thousands_of_streams_are_found_by_id(void **state)
{
    (void)state;
    struct lp_mux_config mc = mux_cfg();
    mc.max_streams = 5000;
    mc.stream_window = LP_MUX_MIN_WINDOW;
    struct net *n = net_new_with(&mc, &mc, &PIPE_CFG);
    enum { COUNT = 3000 };
    uint32_t *ids = calloc(COUNT, sizeof(*ids));

    assert_non_null(ids);
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(lp_mux_open(n->c.mux, LP_KIND_TCP, "h:1", 3, NULL, 0, &ids[i]), LP_OK);
    pump(n);
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(send_pattern(n->c.mux, ids[i], (size_t)i, 1), 1);
    pump(n);
    for (int i = 0; i < COUNT; i++) {
        assert_int_equal(read_pattern(n->s.mux, ids[i], (size_t)i, SIZE_MAX), 1);
        assert_int_equal(lp_mux_shutdown(n->s.mux, ids[i]), LP_OK);
        assert_int_equal(lp_mux_shutdown(n->c.mux, ids[i]), LP_OK);
    }
    pump(n);
    assert_int_equal(lp_mux_stream_count(n->c.mux), 0);
    assert_int_equal(lp_mux_stream_count(n->s.mux), 0);
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(count_events(&n->s, LP_MUX_EV_CLOSED, ids[i]), 1);
    free(ids);
    net_free(n);
}

static void test_mux_bind_request_and_answers_cross_the_pipe(void **state)
{
    (void)state;
    struct net *n = net_new();

    assert_int_equal(lp_mux_bind(n->c.mux, 1, "127.0.0.1:8022", 14), LP_OK);
    assert_int_equal(lp_mux_bind(n->c.mux, 2, "[::1]:0", 7), LP_OK);
    pump(n);
    const struct logged *b1 = find_event(&n->s, LP_MUX_EV_BIND, 1);
    const struct logged *b2 = find_event(&n->s, LP_MUX_EV_BIND, 2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_true(b1 < b2); /* in the order they were sent */
    assert_string_equal(b1->text, "127.0.0.1:8022");
    assert_string_equal(b2->text, "[::1]:0");

    assert_int_equal(lp_mux_bind_ok(n->s.mux, 2, 40123, "::1", 3), LP_OK);
    assert_int_equal(lp_mux_bind_fail(n->s.mux, 1, LP_RST_NOT_ALLOWED, "not allowed", 11), LP_OK);
    pump(n);
    const struct logged *ok = find_event(&n->c, LP_MUX_EV_BIND_OK, 2);
    const struct logged *no = find_event(&n->c, LP_MUX_EV_BIND_FAIL, 1);
    assert_non_null(ok);
    assert_int_equal(ok->code, 40123);
    assert_string_equal(ok->text, "::1");
    assert_non_null(no);
    assert_int_equal(no->code, LP_RST_NOT_ALLOWED);
    assert_string_equal(no->text, "not allowed");
    assert_int_equal(n->c.rc, LP_OK);
    assert_int_equal(n->s.rc, LP_OK);
    net_free(n);
}

static void test_mux_bind_checks_its_arguments(void **state)
{
    (void)state;
    struct net *n = net_new();
    char big[LP_FRAME_MAX_TEXT + 1];

    memset(big, 'a', sizeof(big));
    assert_int_equal(lp_mux_bind(n->c.mux, 0, "h:1", 3), LP_ERR_INVALID);
    assert_int_equal(lp_mux_bind(n->c.mux, 1, big, sizeof(big)), LP_ERR_INVALID);
    assert_int_equal(lp_mux_bind(n->c.mux, 1, "h\0:1", 4), LP_ERR_INVALID);
    assert_int_equal(lp_mux_bind_fail(n->s.mux, 1, 3, NULL, 0), LP_OK); /* empty reason is fine */
    net_free(n);
}

/* A full pipe holds bind frames back; a flush after ACKs sends them, still in order. */
static void test_mux_bind_waits_for_room_and_goes_out_in_order(void **state)
{
    (void)state;
    struct lp_mux_config cc = mux_cfg();
    struct lp_mux_config sc = mux_cfg();
    struct lp_pipe_config small = PIPE_CFG;
    char spec[LP_FRAME_MAX_TEXT];

    memset(spec, 's', sizeof(spec)); /* large texts: the pipe's slack for control frames fills */
    small.replay_buffer = 64u * 1024u;
    sc.stream_window = 1u << 20;
    struct net *n = net_new_with(&cc, &sc, &small);
    uint32_t a = open_stream(n, "a:1");
    assert_true(send_pattern(n->c.mux, a, 0, 1u << 20) > 60000); /* nothing acked: full */
    uint32_t queued = 0;
    lp_err rc = LP_OK;
    /* The pipe's slack takes a few; then LP_MUX_BIND_QUEUE wait, then the queue is full. */
    while (rc == LP_OK && queued < 4 * LP_MUX_BIND_QUEUE) {
        if ((rc = lp_mux_bind(n->c.mux, queued + 1, spec, sizeof(spec))) == LP_OK)
            queued++;
    }
    assert_int_equal(rc, LP_ERR_NOSPACE);
    assert_true(queued >= LP_MUX_BIND_QUEUE);
    pump(n);
    uint32_t want = 1;
    for (size_t i = 0; i < n->s.nev; i++)
        if (n->s.ev[i].type == LP_MUX_EV_BIND)
            assert_int_equal(n->s.ev[i].id, want++);
    assert_int_equal(want, queued + 1);
    net_free(n);
}

static void test_mux_too_many_bind_frames_at_once_is_a_session_fault(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;

    lone_server(&e, &mc);
    for (uint32_t i = 1; i <= LP_MUX_BIND_QUEUE; i++)
        assert_int_equal(
            feed(e.mux, lp_text_encode(fbuf, sizeof(fbuf), LP_FT_BIND, i, 0, "0:80", 4), &why),
            LP_OK);
    assert_int_equal(
        feed(e.mux, lp_text_encode(fbuf, sizeof(fbuf), LP_FT_BIND, 99, 0, "0:80", 4), &why),
        LP_ERR_PROTOCOL);
    assert_string_equal(why, "too many bind frames at once");
    end_events(&e);
    assert_int_equal(e.nev, LP_MUX_BIND_QUEUE); /* the ones taken are still handed out */
    /* drained: room again */
    assert_int_equal(
        feed(e.mux, lp_text_encode(fbuf, sizeof(fbuf), LP_FT_BIND_OK, 5, 80, "x", 1), &why), LP_OK);
    end_events(&e);
    assert_int_equal(e.ev[e.nev - 1].type, LP_MUX_EV_BIND_OK);
    assert_int_equal(e.ev[e.nev - 1].code, 80);
    end_clear(&e);
}

static void test_mux_reset_all_drops_queued_bind_frames(void **state)
{
    (void)state;
    struct end e;
    struct lp_mux_config mc = mux_cfg();
    const char *why = NULL;

    lone_server(&e, &mc);
    assert_int_equal(
        feed(e.mux, lp_text_encode(fbuf, sizeof(fbuf), LP_FT_BIND, 1, 0, "0:80", 4), &why), LP_OK);
    lp_mux_reset_all(e.mux, LP_RST_SESSION_LOST, "gone");
    end_events(&e);
    assert_int_equal(e.nev, 0);
    end_clear(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mux_opens_accepts_and_carries_data_both_ways),
        cmocka_unit_test(test_mux_ids_are_odd_for_client_and_even_for_server),
        cmocka_unit_test(test_mux_refused_open_reports_reason_to_opener),
        cmocka_unit_test(test_mux_sender_stops_at_exactly_the_window),
        cmocka_unit_test(test_mux_withholds_credit_until_consumed),
        cmocka_unit_test(test_mux_reservev_spans_stay_within_credit),
        cmocka_unit_test(test_mux_interactive_stream_never_stalls_and_returns_credit_by_quarters),
        cmocka_unit_test(test_mux_busy_stream_window_grows_to_its_max),
        cmocka_unit_test(test_mux_window_does_not_grow_while_the_local_end_lags),
        cmocka_unit_test(test_mux_window_growth_leaves_half_the_budget),
        cmocka_unit_test(test_mux_slow_stream_does_not_stop_another),
        cmocka_unit_test(test_mux_receive_buffer_shrinks_new_windows),
        cmocka_unit_test(test_mux_window_wakes_a_stream_blocked_on_credit),
        cmocka_unit_test(test_mux_extend_grants_credit_without_consuming),
        cmocka_unit_test(test_mux_extension_is_paid_back_before_credit_returns),
        cmocka_unit_test(test_mux_unused_extension_is_paid_back_too),
        cmocka_unit_test(test_mux_extend_stops_at_the_receive_buffer_and_wakes_when_budget_frees),
        cmocka_unit_test(test_mux_paying_back_an_extension_wakes_a_starved_stream),
        cmocka_unit_test(test_mux_extend_refuses_what_cannot_be_granted),
        cmocka_unit_test(test_mux_recv_find_and_copy_see_across_pieces),
        cmocka_unit_test(test_mux_half_close_client_first_then_server),
        cmocka_unit_test(test_mux_half_close_server_first_then_client),
        cmocka_unit_test(test_mux_fin_before_accept_is_delivered_after_accept),
        cmocka_unit_test(test_mux_idle_stream_holds_no_buffered_bytes),
        cmocka_unit_test(test_mux_readable_is_reported_once_until_peeked),
        cmocka_unit_test(test_mux_data_beyond_window_resets_only_that_stream),
        cmocka_unit_test(test_mux_data_after_fin_resets_the_stream),
        cmocka_unit_test(test_mux_window_overflow_resets_the_stream),
        cmocka_unit_test(test_mux_data_before_open_ok_resets_the_stream),
        cmocka_unit_test(test_mux_opener_sends_early_data_up_to_the_allowance_before_open_ok),
        cmocka_unit_test(test_mux_early_data_of_a_refused_stream_is_dropped_with_its_budget),
        cmocka_unit_test(test_mux_more_early_data_than_allowed_resets_the_stream),
        cmocka_unit_test(test_mux_open_ok_window_below_the_early_data_resets_the_stream),
        cmocka_unit_test(test_mux_rejects_open_with_wrong_parity),
        cmocka_unit_test(test_mux_rejects_reused_stream_id),
        cmocka_unit_test(test_mux_rejects_frames_for_never_opened_streams),
        cmocka_unit_test(test_mux_ignores_late_frames_for_closed_streams),
        cmocka_unit_test(test_mux_refuses_open_beyond_max_streams),
        cmocka_unit_test(test_mux_open_checks_its_arguments),
        cmocka_unit_test(test_mux_new_refuses_bad_config),
        cmocka_unit_test(test_mux_reset_all_emits_one_rst_per_stream_with_user_pointer),
        cmocka_unit_test(test_mux_goodbye_reaches_the_peer),
        cmocka_unit_test(test_mux_rst_from_peer_frees_stream_with_reason),
        cmocka_unit_test(test_mux_flush_sends_control_frames_held_by_a_full_pipe),
        cmocka_unit_test(test_mux_reset_of_unsent_open_sends_nothing),
        cmocka_unit_test(test_mux_control_frames_alone_filling_the_pipe_are_flushed),
        cmocka_unit_test(test_mux_no_data_overtakes_a_pending_open_ok),
        cmocka_unit_test(test_mux_thousands_of_streams_are_found_by_id),
        cmocka_unit_test(test_mux_misplaced_open_ok_window_and_fin_reset_the_stream),
        cmocka_unit_test(test_mux_rejects_malformed_and_foreign_frames),
        cmocka_unit_test(test_mux_local_calls_on_unknown_or_finished_streams_fail_cleanly),
        cmocka_unit_test(test_mux_events_of_freed_streams_survive_new_streams),
        cmocka_unit_test(test_mux_free_releases_undrained_events_and_pending_frames),
        cmocka_unit_test(test_mux_bind_request_and_answers_cross_the_pipe),
        cmocka_unit_test(test_mux_bind_checks_its_arguments),
        cmocka_unit_test(test_mux_bind_waits_for_room_and_goes_out_in_order),
        cmocka_unit_test(test_mux_too_many_bind_frames_at_once_is_a_session_fault),
        cmocka_unit_test(test_mux_reset_all_drops_queued_bind_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
