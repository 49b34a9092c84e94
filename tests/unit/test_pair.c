/* test_pair.c — the whole sans-I/O stack: client pipe+mux ⇄ server pipe+mux, joined by an
 * in-memory link that can be cut at any byte.
 *
 * Four streams (two opened by each side, before any link exists) carry deterministic
 * pseudo-random bytes both ways, then half-close; scripted runs add streams opened later and
 * streams one side resets part-way. The applications at both ends act only on mux events,
 * like the libev glue will: they write after OPEN_OK / accept / WRITABLE until a reserve says
 * 0, and read after READABLE at a random pace. Whatever the link does, every stream must
 * deliver exactly the bytes sent, then one FIN, then one CLOSED, on both sides (a reset stream:
 * a prefix of them, then one RST at the other end).
 *
 * The server may also be upgraded in place at any step: its pipe and mux are saved into a
 * state file, freed, and loaded into fresh objects (the old link dies with the old process),
 * while its applications stay, as the glue keeps the local sockets across the exec. The
 * client resumes, and the streams must come out exactly as in a run without the upgrade.
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
#include "limpet/state.h"

#define NSTREAMS 8 /* slots 0-3 open before any link; 4-7 when a script says */
#define MAX_ROUNDS 400000
#define NEVER SIZE_MAX
#define MAX_UPGRADES 4
#define STEPS_PER_ROUND 6 /* places in a round where the server may be upgraded, at least */

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
    bool reset_sent; /* this end reset the stream (lp_mux_reset) */
    int resets;      /* LP_MUX_EV_RST seen */
    int closed;      /* LP_MUX_EV_CLOSED seen */
    struct flow tx, rx;
};

struct side {
    const struct scenario *sc;
    lp_pipe *pipe;
    lp_mux *mux;
    bool is_client;
    struct app_stream st[NSTREAMS];
    uint64_t rnd; /* chunk sizes and reading pace */
};

struct scenario {
    size_t sizes[NSTREAMS][2]; /* [slot][0: client->server, 1: server->client] */
    size_t nstreams;           /* slots in use: 4 (the default when 0) or NSTREAMS */
    int open_round[NSTREAMS];  /* slots 4-7: the round their opener opens them */
    /* [slot][dir]: the writer of that direction resets the stream once it has written this
     * many bytes (at least 1, so its OPEN is out). 0: never. */
    size_t reset_after[NSTREAMS][2];
    size_t replay_buffer;
    size_t rate;      /* bytes carried per direction per round */
    size_t max_chunk; /* writer's largest write */
    size_t cut_at;    /* first cut after this many bytes on a link (NEVER) */
    size_t cut_every; /* later cuts, per link (0: just one) */
    /* steps (round * STEPS_PER_ROUND + place) at which the server is upgraded in place,
     * increasing; 0 ends the list (step 0 itself is never an upgrade point) */
    size_t upgrade_at[MAX_UPGRADES];
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
    int round;
    size_t step;
    int upgrades;
    size_t state_bytes; /* the last upgrade's state file */
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

/* Stream ids are known in advance: in each group of four slots the client opens the first two
 * (ids 1, 3, then 5, 7), the server the other two (2, 4, then 6, 8). */
static int slot_of(uint32_t id)
{
    if (id == 0 || id > NSTREAMS)
        return -1;
    uint32_t n = (id & 1u) ? (id - 1) / 2 : id / 2 - 1; /* the opener's n-th stream */
    return (int)((n / 2) * 4 + ((id & 1u) ? 0 : 2) + n % 2);
}

static uint32_t id_of(int slot)
{
    uint32_t n = (uint32_t)(slot / 4 * 2 + slot % 2);
    return slot % 4 < 2 ? 2 * n + 1 : 2 * n + 2;
}

static size_t nstreams(const struct scenario *sc)
{
    return sc->nstreams ? sc->nstreams : 4;
}

static bool opens(const struct side *sd, int slot)
{
    return sd->is_client == (slot % 4 < 2);
}

/* ---- one side ----------------------------------------------------------------------- */

static void side_open(struct side *sd, int k)
{
    uint32_t id = 0;

    assert_int_equal(lp_mux_open(sd->mux, LP_KIND_TCP, "target:1", 8, NULL, 0, &id), LP_OK);
    assert_int_equal(id, id_of(k));
    sd->st[k].id = id;
}

/* The streams a side opens before any link exists. */
static void side_open_streams(const struct scenario *sc, struct side *sd)
{
    for (int k = 0; k < (int)nstreams(sc); k++)
        if (opens(sd, k) && sc->open_round[k] == 0)
            side_open(sd, k);
}

static struct lp_pipe_config pipe_config(const struct scenario *sc)
{
    struct lp_pipe_config pc = {
        .replay_buffer = sc->replay_buffer,
        .ack_every = 8u * 1024u,
        .ack_delay = 2,
        .heartbeat = 1000,
        .dead_after = 100000000,
    };
    return pc;
}

static struct lp_mux_config mux_config(void)
{
    struct lp_mux_config mc = {
        .stream_window = 64u * 1024u,
        .receive_buffer = 16u * 1024u * 1024u,
        .max_streams = 16,
    };
    return mc;
}

static void side_init(struct world *w, struct side *sd, bool is_client)
{
    const struct scenario *sc = w->sc;
    struct lp_pipe_config pc = pipe_config(sc);
    struct lp_mux_config mc = mux_config();

    memset(sd, 0, sizeof(*sd));
    sd->sc = sc;
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
    side_open_streams(sc, sd);
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

/* What the peer's script says: the bytes after which it resets slot k, 0 for never. */
static size_t peer_resets_after(const struct side *sd, int k)
{
    return sd->sc->reset_after[k][sd->is_client ? 1 : 0];
}

static size_t we_reset_after(const struct side *sd, int k)
{
    return sd->sc->reset_after[k][sd->is_client ? 0 : 1];
}

static void on_rst(struct side *sd, struct app_stream *a, const struct lp_mux_event *ev)
{
    size_t after = peer_resets_after(sd, slot_of(ev->id));

    if (after == 0)
        fail_msg("stream %u reset: %.*s", (unsigned)ev->id, (int)ev->text_len, ev->text);
    assert_int_equal(ev->code, LP_RST_RESET);
    assert_true(a->rx.done <= after); /* a prefix of what the peer wrote, never more */
    assert_int_equal(a->closed, 0);
    a->resets++;
    a->ready = a->want_write = a->want_read = false;
}

static void on_event(struct side *sd, const struct lp_mux_event *ev)
{
    struct app_stream *a = stream_of(sd, ev->id);

    assert_false(a->reset_sent); /* nothing more is heard of a stream this end reset */

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
        on_rst(sd, a, ev);
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
    size_t reset_after = we_reset_after(sd, slot_of(a->id));
    size_t until = reset_after ? reset_after : a->tx.total;

    for (int i = 0; i < 64 && !a->tx.fin_sent; i++) {
        uint8_t *buf;
        if (reset_after != 0 && a->tx.done == reset_after) {
            lp_mux_reset(sd->mux, a->id, LP_RST_RESET, "scripted reset");
            a->reset_sent = true;
            return;
        }
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
        n = LP_MIN(n, LP_MIN(room, until - a->tx.done));
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

static void step(struct world *w);

/* Feeds whole frames to the mux, then drains the pipe's and the mux's events. The server may
 * be upgraded between two frames and before its events are drained. */
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
        if (sd == &w->s)
            step(w);
    }
    if (sd == &w->s)
        step(w);
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

/* A stream this end still serves. */
static bool serving(const struct app_stream *a)
{
    return a->id != 0 && !a->closed && !a->reset_sent && a->resets == 0;
}

static void side_app(struct world *w, struct side *sd)
{
    for (int k = 0; k < (int)nstreams(w->sc); k++) {
        struct app_stream *a = &sd->st[k];
        if (a->id == 0 && opens(sd, k) && w->sc->open_round[k] > 0 &&
            w->round >= w->sc->open_round[k])
            side_open(sd, k);
        if (!serving(a))
            continue;
        side_write(sd, a, w->sc->max_chunk);
        side_read(sd, a);
    }
}

static bool side_done(const struct side *sd)
{
    for (int k = 0; k < (int)nstreams(sd->sc); k++) {
        const struct app_stream *a = &sd->st[k];
        if (we_reset_after(sd, k) != 0) {
            if (!a->reset_sent)
                return false;
        } else if (peer_resets_after(sd, k) != 0) {
            if (a->resets != 1)
                return false;
        } else if (a->closed != 1 || a->tx.done != a->tx.total || a->rx.done != a->rx.total) {
            return false;
        }
    }
    return true;
}

/* Once the run is over: every stream ended the one way its script says, exactly once. */
static void side_check_end(const struct side *sd)
{
    for (int k = 0; k < (int)nstreams(sd->sc); k++) {
        const struct app_stream *a = &sd->st[k];
        if (we_reset_after(sd, k) != 0) {
            assert_true(a->reset_sent);
            assert_int_equal(a->resets, 0);
            assert_int_equal(a->closed, 0);
        } else if (peer_resets_after(sd, k) != 0) {
            assert_int_equal(a->resets, 1);
            assert_int_equal(a->closed, 0);
            assert_int_equal(a->rx.fin_events, 0);
        } else {
            assert_int_equal(a->rx.fin_events, 1);
            assert_int_equal(a->closed, 1);
        }
    }
    assert_int_equal(lp_mux_stream_count(sd->mux), 0);
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

/* ---- upgrade in place ------------------------------------------------------------------ */

/* The old server saves its pipe and mux and ends; its link goes with it. A new one loads
 * them a little later. The applications (w->s.st) stay, as the local sockets do. */
static void upgrade_server(struct world *w)
{
    struct lp_pipe_config pc = pipe_config(w->sc);
    struct lp_mux_config mc = mux_config();
    struct lp_state_wr wr, again;
    struct lp_state_rd rd;
    const uint8_t *file, *file2;
    size_t len, len2;

    lp_state_wr_init(&wr, 64u << 20);
    lp_state_begin(&wr);
    assert_int_equal(lp_pipe_save(w->s.pipe, &wr, w->now), LP_OK);
    assert_int_equal(lp_mux_save(w->s.mux, &wr), LP_OK);
    assert_int_equal(lp_state_finish(&wr, &file, &len), LP_OK);
    lp_mux_free(w->s.mux);
    lp_pipe_free(w->s.pipe);
    if (w->up)
        lp_pipe_link_down(w->c.pipe, w->gen_c); /* the client sees the connection close */
    w->up = false;
    w->server_on = false;
    w->down_rounds = 3;

    w->now += 5; /* the exec takes a while */
    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    if (lp_pipe_load(&rd, &pc, w->now, &w->s.pipe) != LP_OK ||
        lp_mux_load(&rd, &mc, w->s.pipe, &w->s.mux) != LP_OK)
        fail_msg("load refused: %s", rd.why);
    assert_true(lp_state_at_end(&rd));
    assert_int_equal(lp_pipe_state(w->s.pipe), LP_PIPE_DETACHED);

    /* What was loaded saves to the same bytes: nothing was lost or made up on the way. */
    lp_state_wr_init(&again, 64u << 20);
    lp_state_begin(&again);
    assert_int_equal(lp_pipe_save(w->s.pipe, &again, w->now), LP_OK);
    assert_int_equal(lp_mux_save(w->s.mux, &again), LP_OK);
    assert_int_equal(lp_state_finish(&again, &file2, &len2), LP_OK);
    assert_int_equal(len2, len);
    assert_memory_equal(file2, file, len);
    lp_state_wr_clear(&again);
    lp_state_wr_clear(&wr);
    w->state_bytes = len;
    w->upgrades++;
}

/* One place in the round where the server may be upgraded. */
static void step(struct world *w)
{
    w->step++;
    if (w->upgrades < MAX_UPGRADES && w->sc->upgrade_at[w->upgrades] == w->step)
        upgrade_server(w);
}

/* ---- a run ------------------------------------------------------------------------------ */

struct outcome {
    int cuts;
    int upgrades;
    size_t steps;       /* upgrade points the run passed */
    size_t state_bytes; /* the last upgrade's state file */
};

/* Runs a scenario to the end: every stream must end as its script says. */
static struct outcome run_ex(const struct scenario *sc)
{
    struct world *w = calloc(1, sizeof(*w));
    struct outcome o;
    int round;

    assert_non_null(w);
    w->sc = sc;
    w->now = 1;
    side_init(w, &w->c, true);
    side_init(w, &w->s, false);
    reconnect(w);
    for (round = 0; round < MAX_ROUNDS; round++) {
        w->round = round;
        if (!w->up && --w->down_rounds <= 0)
            reconnect(w);
        carry(w, &w->c, &w->s);
        step(w);
        carry(w, &w->s, &w->c);
        step(w);
        side_drain(w, &w->c);
        side_drain(w, &w->s);
        step(w);
        side_app(w, &w->c);
        side_app(w, &w->s);
        step(w);
        if (side_done(&w->c) && side_done(&w->s))
            break;
        w->now++;
        tick(w, &w->c);
        tick(w, &w->s);
        step(w);
    }
    if (round == MAX_ROUNDS)
        fail_msg("stalled (cut at %zu, upgrade at %zu)", sc->cut_at, sc->upgrade_at[0]);
    /* A while longer: no second FIN, CLOSED or RST may show up. */
    for (int i = 0; i < 50; i++) {
        carry(w, &w->c, &w->s);
        carry(w, &w->s, &w->c);
        side_drain(w, &w->c);
        side_drain(w, &w->s);
        w->now++;
    }
    side_check_end(&w->c);
    side_check_end(&w->s);
    o.cuts = w->cuts;
    o.upgrades = w->upgrades;
    o.steps = w->step;
    o.state_bytes = w->state_bytes;
    side_clear(&w->c);
    side_clear(&w->s);
    free(w);
    return o;
}

/* Returns the number of link cuts the run took. */
static int run(const struct scenario *sc)
{
    return run_ex(sc).cuts;
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

/* Streams opened later by either side, half-closes, resets by an opener and by an acceptor. */
static const struct scenario SCRIPT = {
    .sizes = {{12000, 5000},
              {0, 15000},
              {7000, 16000},
              {4000, 0},
              {9000, 3000},
              {20000, 8000},
              {2000, 11000},
              {5000, 6000}},
    .nstreams = NSTREAMS,
    .open_round = {0, 0, 0, 0, 5, 12, 8, 12},
    .reset_after = {[5] = {6000, 0}, [6] = {0, 4000}, [7] = {2500, 0}},
    .replay_buffer = 1u << 20,
    .rate = 4096,
    .max_chunk = 3000,
    .cut_at = NEVER,
    .cut_every = 0,
};

static void test_pair_scripted_opens_half_closes_and_resets_arrive_exactly(void **state)
{
    (void)state;
    struct outcome o = run_ex(&SCRIPT);

    assert_int_equal(o.cuts, 0);
    assert_int_equal(o.upgrades, 0);
}

/* Upgrades at every step of one run: each must end exactly as the run without it. */
static void upgrade_at_every_step(const struct scenario *base, size_t stride, size_t *max_state)
{
    struct scenario sc = *base;
    size_t steps = run_ex(base).steps;

    for (size_t at = 1; at <= steps; at += stride) {
        sc.upgrade_at[0] = at;
        struct outcome o = run_ex(&sc);
        assert_int_equal(o.upgrades, 1);
        *max_state = LP_MAX(*max_state, o.state_bytes);
    }
}

static void test_pair_server_upgraded_at_every_step_delivers_the_same_bytes(void **state)
{
    (void)state;
    size_t max_state = 0;

    upgrade_at_every_step(&SCRIPT, 1, &max_state);
    assert_true(max_state > 1000); /* the state held streams and replay bytes */
}

static void test_pair_server_upgraded_at_every_step_around_a_mid_frame_cut(void **state)
{
    (void)state;
    struct scenario sc = SCRIPT;
    size_t max_state = 0;

    /* Cuts at byte 9005 of the first link and every 6007 bytes of later ones, odd offsets in
     * a stream of frames up to 1.5 KB long, so they fall inside frames: the upgrade lands
     * before, between and after them, with half a frame in flight either way. */
    sc.cut_at = 9005;
    sc.cut_every = 6007;
    sc.max_chunk = 1500;
    upgrade_at_every_step(&sc, 1, &max_state);
}

static void test_pair_server_upgraded_three_times_in_one_run(void **state)
{
    (void)state;
    struct scenario sc = SCRIPT;
    size_t steps = run_ex(&SCRIPT).steps;

    /* old -> new -> old -> new, a few steps apart and far apart */
    for (size_t gap = 1; gap < 40; gap += 7) {
        /* a run with upgrades may take a round or two less than without: margin */
        for (size_t at = 1; at + 2 * gap + 4 * STEPS_PER_ROUND <= steps; at += 3) {
            sc.upgrade_at[0] = at;
            sc.upgrade_at[1] = at + gap;
            sc.upgrade_at[2] = at + 2 * gap;
            struct outcome o = run_ex(&sc);
            if (o.upgrades != 3)
                fail_msg("at %zu gap %zu: %d upgrades, %zu steps of %zu", at, gap, o.upgrades,
                         o.steps, steps);
        }
    }
}

static void test_pair_server_upgraded_under_backpressure_loses_nothing(void **state)
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
    size_t max_state = 0;

    /* A full replay buffer, streams waiting for room, credit withheld: every 23rd step. */
    upgrade_at_every_step(&sc, 23, &max_state);
    assert_true(max_state > 64u * 1024u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_streams_arrive_exactly_without_cuts),
        cmocka_unit_test(test_pair_streams_survive_a_cut_at_every_early_byte),
        cmocka_unit_test(test_pair_streams_survive_a_cut_anywhere_later),
        cmocka_unit_test(test_pair_streams_survive_repeated_cuts),
        cmocka_unit_test(test_pair_tiny_replay_buffer_applies_backpressure_and_loses_nothing),
        cmocka_unit_test(test_pair_scripted_opens_half_closes_and_resets_arrive_exactly),
        cmocka_unit_test(test_pair_server_upgraded_at_every_step_delivers_the_same_bytes),
        cmocka_unit_test(test_pair_server_upgraded_at_every_step_around_a_mid_frame_cut),
        cmocka_unit_test(test_pair_server_upgraded_three_times_in_one_run),
        cmocka_unit_test(test_pair_server_upgraded_under_backpressure_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
