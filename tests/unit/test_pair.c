/* test_pair.c — the whole sans-I/O stack: client pipe+mux ⇄ server pipe+mux, joined by an
 * in-memory link that can be cut at any byte.
 *
 * Four streams (two opened by each side, before any link exists) carry deterministic
 * pseudo-random bytes both ways, then half-close. The applications at both ends act only on
 * mux events, like the libev glue will: they write after OPEN_OK / accept / WRITABLE until a
 * reserve says 0, and read after READABLE at a random pace. Whatever the link does, every
 * stream must deliver exactly the bytes sent, then one FIN, then one CLOSED, on both sides.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"

#define NSTREAMS 4
#define MAX_ROUNDS 400000
#define NEVER SIZE_MAX

struct flow {       /* one direction of one stream, as one end sees it */
    size_t total;   /* bytes this direction carries */
    size_t done;    /* written (tx) or received and checked (rx) */
    uint64_t rng;   /* the byte generator, advanced once per byte */
    bool fin_sent;  /* tx: lp_mux_shutdown called */
    int fin_events; /* rx: LP_MUX_EV_FIN seen */
};

struct app_stream {
    uint32_t id;     /* 0 until opened / announced */
    bool ready;      /* OPEN_OK seen (opener) or accepted (acceptor) */
    bool want_write; /* woken since the last reserve that returned 0 */
    bool want_read;
    int closed; /* LP_MUX_EV_CLOSED seen */
    struct flow tx, rx;
};

struct side {
    lp_pipe *pipe;
    lp_mux *mux;
    bool is_client;
    struct app_stream st[NSTREAMS];
    uint64_t rnd; /* chunk sizes and reading pace */
};

struct scenario {
    size_t sizes[NSTREAMS][2]; /* [slot][0: client->server, 1: server->client] */
    size_t replay_buffer;
    size_t rate;      /* bytes carried per direction per round */
    size_t max_chunk; /* writer's largest write */
    size_t cut_at;    /* first cut after this many bytes on a link (NEVER) */
    size_t cut_every; /* later cuts, per link (0: just one) */
};

struct world {
    const struct scenario *sc;
    struct side c, s;
    lp_time now;
    bool up;        /* a link exists */
    bool server_on; /* the server pipe took this link's HELLO */
    bool server_was_live;
    uint8_t hello[LP_FRAME_MAX];
    size_t hello_len;
    uint64_t gen_c, gen_s;
    size_t carried; /* bytes carried on the current link, both ways */
    size_t next_cut;
    int down_rounds;
    int cuts;
};

static const uint8_t SID[LP_SESSION_ID_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
                                               9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t TOKEN[LP_TOKEN_LEN] = {0x5A, 0x11, 0x22, 0x33};

static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint8_t next_byte(uint64_t *x)
{
    return (uint8_t)(next_rand(x) >> 24);
}

/* Stream ids are known in advance: client opens 1, 3; server opens 2, 4. */
static int slot_of(uint32_t id)
{
    if (id == 0 || id > 2 * NSTREAMS)
        return -1;
    return (id & 1u) ? (int)(id / 2) : (int)(2 + id / 2 - 1);
}

static uint32_t id_of(int slot)
{
    return slot < 2 ? (uint32_t)(2 * slot + 1) : (uint32_t)(2 * (slot - 2) + 2);
}

/* ---- one side ----------------------------------------------------------------------- */

static void side_open_streams(struct side *sd)
{
    for (int k = 0; k < NSTREAMS; k++) {
        bool mine = sd->is_client ? k < 2 : k >= 2;
        uint32_t id = 0;
        if (!mine)
            continue;
        assert_int_equal(lp_mux_open(sd->mux, LP_KIND_TCP, "target:1", 8, NULL, 0, &id), LP_OK);
        assert_int_equal(id, id_of(k));
        sd->st[k].id = id;
    }
}

static void side_init(struct world *w, struct side *sd, bool is_client)
{
    const struct scenario *sc = w->sc;
    struct lp_pipe_config pc = {
        .replay_buffer = sc->replay_buffer,
        .ack_every = 8u * 1024u,
        .ack_delay = 2,
        .heartbeat = 1000,
        .dead_after = 100000000,
    };
    struct lp_mux_config mc = {
        .stream_window = 64u * 1024u,
        .receive_buffer = 16u * 1024u * 1024u,
        .max_streams = 16,
    };

    memset(sd, 0, sizeof(*sd));
    sd->is_client = is_client;
    sd->rnd = is_client ? 0x1234567u : 0x7654321u;
    assert_int_equal(lp_pipe_new(&pc, is_client, &sd->pipe), LP_OK);
    if (!is_client)
        lp_pipe_set_identity(sd->pipe, SID, TOKEN);
    assert_int_equal(lp_mux_new(&mc, sd->pipe, is_client, &sd->mux), LP_OK);
    for (int k = 0; k < NSTREAMS; k++) {
        int tx_dir = is_client ? 0 : 1;
        struct app_stream *a = &sd->st[k];
        a->tx.total = sc->sizes[k][tx_dir];
        a->rx.total = sc->sizes[k][1 - tx_dir];
        a->tx.rng = 0x9E3779B97F4A7C15ull * (uint64_t)(2 * k + tx_dir + 1);
        a->rx.rng = 0x9E3779B97F4A7C15ull * (uint64_t)(2 * k + (1 - tx_dir) + 1);
    }
    side_open_streams(sd);
}

static void side_clear(struct side *sd)
{
    lp_mux_free(sd->mux);
    lp_pipe_free(sd->pipe);
}

static struct app_stream *stream_of(struct side *sd, uint32_t id)
{
    int k = slot_of(id);
    if (k < 0)
        fail_msg("event for unexpected stream %u", (unsigned)id);
    return &sd->st[k];
}

static void on_event(struct side *sd, const struct lp_mux_event *ev)
{
    struct app_stream *a = stream_of(sd, ev->id);

    switch (ev->type) {
    case LP_MUX_EV_OPEN:
        assert_int_equal(a->id, 0);
        a->id = ev->id;
        assert_int_equal(lp_mux_accept(sd->mux, ev->id), LP_OK);
        a->ready = a->want_write = true;
        break;
    case LP_MUX_EV_OPEN_OK:
        a->ready = a->want_write = true;
        break;
    case LP_MUX_EV_WRITABLE:
        a->want_write = true;
        break;
    case LP_MUX_EV_READABLE:
        a->want_read = true;
        break;
    case LP_MUX_EV_FIN:
        assert_int_equal(a->rx.done, a->rx.total); /* every byte came before the FIN */
        a->rx.fin_events++;
        break;
    case LP_MUX_EV_CLOSED:
        assert_true(a->tx.fin_sent);
        assert_int_equal(a->rx.fin_events, 1);
        a->closed++;
        break;
    case LP_MUX_EV_RST:
        fail_msg("stream %u reset: %.*s", (unsigned)ev->id, (int)ev->text_len, ev->text);
        break;
    case LP_MUX_EV_GOODBYE:
    case LP_MUX_EV_BIND:
    case LP_MUX_EV_BIND_OK:
    case LP_MUX_EV_BIND_FAIL:
        fail_msg("unexpected event %d", (int)ev->type);
        break;
    }
}

static void side_write(struct side *sd, struct app_stream *a, size_t max_chunk)
{
    /* Opener with nothing to say: FIN may go even before OPEN_OK. */
    bool can_fin = a->ready || (a->id != 0 && a->tx.total == 0 && (a->id & 1u) == sd->is_client);

    for (int i = 0; i < 64 && !a->tx.fin_sent; i++) {
        uint8_t *buf;
        if (a->tx.done == a->tx.total) {
            if (can_fin) {
                assert_int_equal(lp_mux_shutdown(sd->mux, a->id), LP_OK);
                a->tx.fin_sent = true;
            }
            return;
        }
        if (!a->ready || !a->want_write)
            return;
        size_t room = lp_mux_send_reserve(sd->mux, a->id, &buf);
        if (room == 0) {
            a->want_write = false; /* a WRITABLE (or OPEN_OK) must follow */
            return;
        }
        size_t n = 1 + (size_t)(next_rand(&sd->rnd) % max_chunk);
        n = LP_MIN(n, LP_MIN(room, a->tx.total - a->tx.done));
        for (size_t j = 0; j < n; j++)
            buf[j] = next_byte(&a->tx.rng);
        lp_mux_send_commit(sd->mux, a->id, n);
        a->tx.done += n;
    }
}

static void side_read(struct side *sd, struct app_stream *a)
{
    if (!a->want_read || next_rand(&sd->rnd) % 4 == 0) /* a local socket that lags */
        return;
    size_t budget = 1 + (size_t)(next_rand(&sd->rnd) % 9000);
    for (int i = 0; i < 64 && budget > 0; i++) {
        const uint8_t *data;
        size_t n = lp_mux_recv_peek(sd->mux, a->id, &data);
        if (n == 0) {
            a->want_read = false;
            return;
        }
        n = LP_MIN(n, budget);
        assert_true(a->rx.done + n <= a->rx.total);
        for (size_t j = 0; j < n; j++) {
            if (data[j] != next_byte(&a->rx.rng))
                fail_msg("stream %u: byte %zu differs", (unsigned)a->id, a->rx.done + j);
        }
        a->rx.done += n;
        budget -= n;
        lp_mux_recv_consumed(sd->mux, a->id, n);
    }
}

static void side_drain(struct world *w, struct side *sd)
{
    struct lp_frame f;
    struct lp_pipe_event pev;
    struct lp_mux_event ev;

    while (lp_pipe_next_frame(sd->pipe, &f, w->now)) {
        const char *why = NULL;
        lp_err rc = lp_mux_recv(sd->mux, &f, &why);
        if (rc != LP_OK)
            fail_msg("lp_mux_recv: %s (%s)", lp_strerror(rc), why ? why : "?");
    }
    while (lp_pipe_next_event(sd->pipe, &pev)) {
        if (pev.type == LP_PIPE_EV_LINK_DOWN || pev.type == LP_PIPE_EV_LOST ||
            pev.type == LP_PIPE_EV_REJECTED)
            fail_msg("pipe event %d: %s", (int)pev.type, pev.msg);
        if (pev.type == LP_PIPE_EV_ROOM)
            lp_mux_flush(sd->mux);
    }
    for (int i = 0; i < 100000 && lp_mux_next_event(sd->mux, &ev); i++)
        on_event(sd, &ev);
}

static void side_app(struct world *w, struct side *sd)
{
    for (int k = 0; k < NSTREAMS; k++) {
        if (sd->st[k].id == 0 || sd->st[k].closed)
            continue;
        side_write(sd, &sd->st[k], w->sc->max_chunk);
        side_read(sd, &sd->st[k]);
    }
}

static bool side_done(const struct side *sd)
{
    for (int k = 0; k < NSTREAMS; k++) {
        const struct app_stream *a = &sd->st[k];
        if (a->closed != 1 || a->tx.done != a->tx.total || a->rx.done != a->rx.total)
            return false;
    }
    return true;
}

/* ---- the link ----------------------------------------------------------------------- */

static void cut(struct world *w)
{
    lp_pipe_link_down(w->c.pipe, w->gen_c);
    if (w->server_on)
        lp_pipe_link_down(w->s.pipe, w->gen_s);
    w->up = false;
    w->down_rounds = 3;
    w->cuts++;
}

/* A client that never saw WELCOME asks for a new session again: the server side starts a
 * fresh one, as the real server would (the old one would expire unused). */
static void server_takes_hello(struct world *w)
{
    struct lp_frame f;
    struct lp_hello h;
    size_t used = 0;
    const char *why = NULL;

    if (lp_frame_decode(w->hello, w->hello_len, &f, &used, &why) != LP_OK)
        return; /* not whole yet */
    assert_int_equal(used, w->hello_len);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    bool fresh = true;
    for (size_t i = 0; i < LP_SESSION_ID_LEN; i++)
        fresh &= h.session_id[i] == 0;
    if (fresh && w->server_was_live) {
        side_clear(&w->s);
        side_init(w, &w->s, false);
    }
    if (lp_pipe_accept(w->s.pipe, &h, w->now, &w->gen_s, &why) != LP_OK)
        fail_msg("lp_pipe_accept: %s", why ? why : "?");
    w->server_on = true;
    w->server_was_live = true;
}

static void reconnect(struct world *w)
{
    w->gen_c = lp_pipe_connect(w->c.pipe, w->now);
    w->up = true;
    w->server_on = false;
    w->hello_len = 0;
    w->carried = 0;
    w->next_cut = w->cuts == 0 ? w->sc->cut_at : (w->sc->cut_every ? w->sc->cut_every : NEVER);
}

/* Carries up to the rate limit from one pipe to the other, cutting at next_cut. */
static void carry(struct world *w, struct side *from, struct side *to)
{
    const uint8_t *out;
    size_t n, took;

    if (!w->up || (from == &w->s && !w->server_on))
        return;
    if (w->carried >= w->next_cut) {
        cut(w);
        return;
    }
    if ((n = lp_pipe_pending_output(from->pipe, &out)) == 0)
        return;
    n = LP_MIN(n, LP_MIN(w->sc->rate, w->next_cut - w->carried));
    if (to == &w->s && !w->server_on) {
        n = LP_MIN(n, sizeof(w->hello) - w->hello_len);
        memcpy(w->hello + w->hello_len, out, n);
        w->hello_len += n;
        took = n;
    } else {
        took = lp_pipe_recv(to->pipe, out, n, w->now);
    }
    lp_pipe_output_sent(from->pipe, took, w->now);
    w->carried += took;
    if (to == &w->s && !w->server_on)
        server_takes_hello(w);
}

static void tick(struct world *w, struct side *sd)
{
    if (lp_pipe_next_deadline(sd->pipe) <= w->now)
        lp_pipe_on_timeout(sd->pipe, w->now);
}

/* Runs a scenario to the end; returns the number of link cuts it took. */
static int run(const struct scenario *sc)
{
    struct world *w = calloc(1, sizeof(*w));
    int round;

    assert_non_null(w);
    w->sc = sc;
    w->now = 1;
    side_init(w, &w->c, true);
    side_init(w, &w->s, false);
    reconnect(w);
    for (round = 0; round < MAX_ROUNDS; round++) {
        if (!w->up && --w->down_rounds <= 0)
            reconnect(w);
        carry(w, &w->c, &w->s);
        carry(w, &w->s, &w->c);
        side_drain(w, &w->c);
        side_drain(w, &w->s);
        side_app(w, &w->c);
        side_app(w, &w->s);
        if (side_done(&w->c) && side_done(&w->s))
            break;
        w->now++;
        tick(w, &w->c);
        tick(w, &w->s);
    }
    if (round == MAX_ROUNDS)
        fail_msg("stalled (cut at %zu)", sc->cut_at);
    /* A while longer: no second FIN or CLOSED may show up. */
    for (int i = 0; i < 50; i++) {
        carry(w, &w->c, &w->s);
        carry(w, &w->s, &w->c);
        side_drain(w, &w->c);
        side_drain(w, &w->s);
        w->now++;
    }
    for (int k = 0; k < NSTREAMS; k++) {
        assert_int_equal(w->c.st[k].rx.fin_events, 1);
        assert_int_equal(w->s.st[k].rx.fin_events, 1);
        assert_int_equal(w->c.st[k].closed, 1);
        assert_int_equal(w->s.st[k].closed, 1);
    }
    assert_int_equal(lp_mux_stream_count(w->c.mux), 0);
    assert_int_equal(lp_mux_stream_count(w->s.mux), 0);
    int cuts = w->cuts;
    side_clear(&w->c);
    side_clear(&w->s);
    free(w);
    return cuts;
}

static const struct scenario BASE = {
    .sizes = {{12000, 5000}, {0, 15000}, {7000, 16000}, {4000, 0}},
    .replay_buffer = 1u << 20,
    .rate = 4096,
    .max_chunk = 3000,
    .cut_at = NEVER,
    .cut_every = 0,
};

/* ---- tests -------------------------------------------------------------------------- */

static void test_pair_streams_arrive_exactly_without_cuts(void **state)
{
    (void)state;
    assert_int_equal(run(&BASE), 0);
}

static void test_pair_streams_survive_a_cut_at_every_early_byte(void **state)
{
    (void)state;
    struct scenario sc = BASE;

    /* Handshake, OPENs, OPEN_OKs and the first DATA frames: every byte offset. Small
     * writes make many small frames, so the range crosses a dozen frame boundaries. */
    sc.max_chunk = 400;
    for (size_t k = 0; k < 3000; k++) {
        sc.cut_at = k;
        assert_int_equal(run(&sc), 1);
    }
}

static void test_pair_streams_survive_a_cut_anywhere_later(void **state)
{
    (void)state;
    struct scenario sc = BASE;
    int cut_runs = 0;

    for (size_t k = 3000; k < 200000; k += 997) {
        sc.cut_at = k;
        cut_runs += run(&sc);
    }
    assert_true(cut_runs > 40); /* the later offsets fell inside real traffic */
}

static void test_pair_streams_survive_repeated_cuts(void **state)
{
    (void)state;
    struct scenario sc = BASE;

    /* Each link carries 5000 bytes: every frame must fit in that, or no link could ever
     * deliver it whole (max_chunk keeps DATA frames near 3 KiB). */
    sc.cut_at = 333;
    sc.cut_every = 5000;
    assert_true(run(&sc) > 10);
}

static void test_pair_tiny_replay_buffer_applies_backpressure_and_loses_nothing(void **state)
{
    (void)state;
    struct scenario sc = {
        .sizes = {{300000, 200000}, {150000, 400000}, {250000, 1}, {1, 350000}},
        .replay_buffer = 64u * 1024u,
        .rate = 3000,
        .max_chunk = 20000,
        .cut_at = 40000,
        .cut_every = 150000,
    };

    assert_true(run(&sc) >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_streams_arrive_exactly_without_cuts),
        cmocka_unit_test(test_pair_streams_survive_a_cut_at_every_early_byte),
        cmocka_unit_test(test_pair_streams_survive_a_cut_anywhere_later),
        cmocka_unit_test(test_pair_streams_survive_repeated_cuts),
        cmocka_unit_test(test_pair_tiny_replay_buffer_applies_backpressure_and_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
