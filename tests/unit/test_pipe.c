/* test_pipe.c — the backed pipe (pipe.h): handshakes, replay on resume at every byte offset,
 * ACK trimming, backpressure, range checks, liveness, generations, protocol errors.
 *
 * Two pipes are joined in memory with a fake clock: `move` hands one pipe's pending output
 * to the other, optionally cutting the link after a given number of bytes (the sender still
 * believes it sent them: exactly what a dropped TCP connection does). The server glue is
 * played by `server_in`: it decodes the HELLO itself and calls lp_pipe_accept, as the real
 * server does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/pipe.h"
#include "limpet/wire.h"

/* Test hook in pipe.c (not part of the API): replay chunks currently allocated. */
size_t lp_pipe_replay_chunks(const lp_pipe *p);

#define C2S 0
#define S2C 1
#define EV_CAP 64u
#define WIRE_CAP (256u * 1024u)
#define NO_LIMIT SIZE_MAX

static const struct lp_pipe_config cfg_default = {
    .replay_buffer = 64u * 1024u,
    .ack_every = 1024,
    .ack_delay = 5,
    .heartbeat = 1000,
    .dead_after = 3000,
};

static const uint8_t SID[LP_SESSION_ID_LEN] = {0x51, 2,  3,  4,  5,  6,  7,  8,
                                               9,    10, 11, 12, 13, 14, 15, 16};
static uint8_t TOKEN[LP_TOKEN_LEN];

/* A growable-free byte log with a hard cap. */
struct blob {
    uint8_t *b;
    size_t len;
    size_t cap;
};

struct side {
    lp_pipe *p;
    uint64_t gen;
    struct blob got;                 /* every sequenced frame received, re-encoded */
    struct lp_pipe_event ev[EV_CAP]; /* events other than RTT */
    size_t nev;
    size_t n_rtt;
    lp_time last_rtt;
};

struct pair {
    struct side c, s;
    lp_time now;
    bool accepted;      /* the server accepted on the current link */
    uint8_t hello[128]; /* server glue: bytes before accept */
    size_t hello_len;
    size_t limit[2]; /* bytes the current link delivers per direction */
    size_t moved[2]; /* bytes put on the current link per direction */
    lp_time last_delivery[2];
    size_t step;          /* bytes per output_sent; 0 = all offered */
    struct blob *wire[2]; /* optional raw recording of what was delivered */
};

/* ---- helpers -------------------------------------------------------------------------- */

static void blob_init(struct blob *bl, size_t cap)
{
    bl->b = malloc(cap);
    assert_non_null(bl->b);
    bl->len = 0;
    bl->cap = cap;
}

static void blob_put(struct blob *bl, const void *in, size_t n)
{
    assert_true(n <= bl->cap - bl->len);
    memcpy(bl->b + bl->len, in, n);
    bl->len += n;
}

static void blob_free(struct blob *bl)
{
    free(bl->b);
    bl->b = NULL;
}

static void put_frame(struct blob *bl, const struct lp_frame *f)
{
    uint8_t h[LP_FRAME_HEADER];
    lp_frame_put_header(h, f->type, f->flags, (uint16_t)f->len, f->stream_id);
    blob_put(bl, h, sizeof(h));
    blob_put(bl, f->payload, f->len);
}

static void drain(struct side *sd, lp_time now)
{
    struct lp_frame f;
    struct lp_pipe_event ev;

    while (lp_pipe_next_frame(sd->p, &f, now))
        put_frame(&sd->got, &f);
    while (lp_pipe_next_event(sd->p, &ev)) {
        if (ev.type == LP_PIPE_EV_RTT) {
            sd->n_rtt++;
            sd->last_rtt = ev.rtt;
            continue;
        }
        assert_true(sd->nev < EV_CAP);
        sd->ev[sd->nev++] = ev;
    }
}

static size_t count_ev(const struct side *sd, enum lp_pipe_event_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < sd->nev; i++)
        n += sd->ev[i].type == type;
    return n;
}

static const struct lp_pipe_event *last_ev(const struct side *sd, enum lp_pipe_event_type type)
{
    for (size_t i = sd->nev; i > 0; i--) {
        if (sd->ev[i - 1].type == type)
            return &sd->ev[i - 1];
    }
    fail_msg("no event of type %d", (int)type);
    return NULL;
}

static bool has_u64(const char *msg, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    return strstr(msg, num) != NULL;
}

static void side_new(struct side *sd, bool is_client, const struct lp_pipe_config *cfg,
                     size_t got_cap)
{
    memset(sd, 0, sizeof(*sd));
    assert_int_equal(lp_pipe_new(cfg, is_client, &sd->p), LP_OK);
    blob_init(&sd->got, got_cap);
}

/* got_cap: room for what each side receives. The resume tests build thousands of pairs and
 * keep it under 128 KiB, off ASan's slow path for large allocations. */
static void pair_new_cap(struct pair *pr, const struct lp_pipe_config *cfg, size_t got_cap)
{
    memset(pr, 0, sizeof(*pr));
    for (size_t i = 0; i < LP_TOKEN_LEN; i++)
        TOKEN[i] = (uint8_t)(0xA0 + i);
    side_new(&pr->c, true, cfg, got_cap);
    side_new(&pr->s, false, cfg, got_cap);
    lp_pipe_set_identity(pr->s.p, SID, TOKEN);
    pr->now = 1000;
    pr->limit[C2S] = NO_LIMIT;
    pr->limit[S2C] = NO_LIMIT;
}

static void pair_new_cfg(struct pair *pr, const struct lp_pipe_config *cfg)
{
    pair_new_cap(pr, cfg, 2 * (cfg->replay_buffer + LP_PIPE_CONTROL_SLACK));
}

static void pair_new(struct pair *pr)
{
    pair_new_cfg(pr, &cfg_default);
}

static void pair_free(struct pair *pr)
{
    lp_pipe_free(pr->c.p);
    lp_pipe_free(pr->s.p);
    blob_free(&pr->c.got);
    blob_free(&pr->s.got);
}

/* Feeds bytes the way the glue does: recv, then drain frames and events. */
static void feed(struct side *sd, const uint8_t *b, size_t n, lp_time now)
{
    for (int guard = 0; n > 0 && guard < 1000; guard++) {
        size_t k = lp_pipe_recv(sd->p, b, n, now);
        drain(sd, now);
        if (k == 0)
            break; /* no link any more: the rest is lost, as on a real cut */
        b += k;
        n -= k;
    }
}

/* The server glue: gathers the HELLO, accepts, then feeds the pipe. */
static void server_in(struct pair *pr, const uint8_t *b, size_t n)
{
    if (!pr->accepted) {
        size_t take = n < sizeof(pr->hello) - pr->hello_len ? n : sizeof(pr->hello) - pr->hello_len;
        struct lp_frame f;
        struct lp_hello h;
        size_t used = 0;
        const char *why = NULL;

        memcpy(pr->hello + pr->hello_len, b, take);
        pr->hello_len += take;
        b += take;
        n -= take;
        lp_err rc = lp_frame_decode(pr->hello, pr->hello_len, &f, &used, &why);
        if (rc == LP_ERR_TRUNCATED)
            return;
        assert_int_equal(rc, LP_OK);
        assert_int_equal(f.type, LP_FT_HELLO);
        assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
        rc = lp_pipe_accept(pr->s.p, &h, pr->now, &pr->s.gen, &why);
        if (rc != LP_OK)
            fail_msg("accept failed: %s", why ? why : "?");
        pr->accepted = true;
        drain(&pr->s, pr->now);
        feed(&pr->s, pr->hello + used, pr->hello_len - used, pr->now);
    }
    feed(&pr->s, b, n, pr->now);
}

/* Moves one batch of output across the link in direction dir; returns bytes offered. */
static size_t move(struct pair *pr, int dir)
{
    static uint8_t buf[512u * 1024u]; /* more than one pending_output hands out */
    struct side *from = dir == C2S ? &pr->c : &pr->s;
    const uint8_t *out = NULL;
    size_t n = lp_pipe_pending_output(from->p, &out);

    if (n == 0)
        return 0;
    if (pr->step != 0 && n > pr->step)
        n = pr->step;
    assert_true(n <= sizeof(buf));
    memcpy(buf, out, n);
    lp_pipe_output_sent(from->p, n, pr->now);
    size_t deliver = 0;
    if (pr->moved[dir] < pr->limit[dir])
        deliver = n < pr->limit[dir] - pr->moved[dir] ? n : pr->limit[dir] - pr->moved[dir];
    pr->moved[dir] += n;
    if (deliver == 0)
        return n;
    pr->last_delivery[dir] = pr->now;
    if (pr->wire[dir] != NULL)
        blob_put(pr->wire[dir], buf, deliver);
    if (dir == C2S)
        server_in(pr, buf, deliver);
    else
        feed(&pr->c, buf, deliver, pr->now);
    return n;
}

static void tick(struct pair *pr, struct side *sd)
{
    if (pr->now >= lp_pipe_next_deadline(sd->p))
        lp_pipe_on_timeout(sd->p, pr->now);
    drain(sd, pr->now);
}

/* Runs the link one round at a time (1 ms each) until it has been idle for `idle_stop`
 * rounds or `max_rounds` passed. on_timeout is called only when next_deadline says so. */
static void pump_rounds(struct pair *pr, size_t max_rounds, size_t idle_stop)
{
    size_t idle = 0;

    for (size_t i = 0; i < max_rounds; i++) {
        size_t m = move(pr, C2S) + move(pr, S2C);
        pr->now += 1;
        tick(pr, &pr->c);
        tick(pr, &pr->s);
        idle = m == 0 ? idle + 1 : 0;
        if (idle >= idle_stop)
            return;
    }
}

static void pump(struct pair *pr)
{
    pump_rounds(pr, 1000000, 30);
}

static void link_up(struct pair *pr)
{
    pr->c.gen = lp_pipe_connect(pr->c.p, pr->now);
    pr->accepted = false;
    pr->hello_len = 0;
    pr->moved[C2S] = 0;
    pr->moved[S2C] = 0;
    drain(&pr->c, pr->now);
}

static void link_cut(struct pair *pr)
{
    lp_pipe_link_down(pr->c.p, pr->c.gen);
    if (pr->accepted)
        lp_pipe_link_down(pr->s.p, pr->s.gen);
    pr->accepted = false;
}

static void connect_pair(struct pair *pr)
{
    link_up(pr);
    pump(pr);
    assert_int_equal(lp_pipe_state(pr->c.p), LP_PIPE_LIVE);
    assert_int_equal(lp_pipe_state(pr->s.p), LP_PIPE_LIVE);
}

/* Writes a DATA frame through reserve/commit and logs it in `expect`. */
static void write_data(lp_pipe *p, uint32_t id, size_t n, uint8_t seed, struct blob *expect)
{
    uint8_t *buf = NULL;
    size_t room = lp_pipe_reserve(p, n, &buf);

    assert_int_equal(room, n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 8));
    lp_pipe_commit(p, LP_FT_DATA, 0, id, n);
    struct lp_frame f = {.type = LP_FT_DATA, .stream_id = id, .payload = buf, .len = n};
    if (expect != NULL)
        put_frame(expect, &f);
}

/* Writes a whole control frame through lp_pipe_send_frame and logs it. */
static void write_frame(lp_pipe *p, const uint8_t *frame, size_t len, struct blob *expect)
{
    assert_int_equal(lp_pipe_send_frame(p, frame, len), LP_OK);
    if (expect != NULL)
        blob_put(expect, frame, len);
}

static const size_t script_sizes[] = {1, 7, 300, 1000, 2, 2500, 13, 1600, 9, 1200, 50, 700, 3};
#define SCRIPT_LEN (sizeof(script_sizes) / sizeof(script_sizes[0]))

/* Frames [from, to) of a varied script: DATA of many sizes, WINDOW and FIN between. */
static void write_script(lp_pipe *p, size_t from, size_t to, uint8_t salt, struct blob *expect)
{
    uint8_t fr[64];
    size_t n;

    for (size_t i = from; i < to && i < SCRIPT_LEN; i++) {
        uint32_t id = (uint32_t)(1 + 2 * (i % 3)) + salt;
        write_data(p, id, script_sizes[i], (uint8_t)(salt + i * 13), expect);
        if (i % 3 == 1) {
            n = lp_u32_encode(fr, sizeof(fr), LP_FT_WINDOW, id, (uint32_t)(1000 + i));
            assert_true(n > 0);
            write_frame(p, fr, n, expect);
        }
        if (i % 5 == 4) {
            n = lp_empty_encode(fr, sizeof(fr), LP_FT_FIN, id);
            assert_true(n > 0);
            write_frame(p, fr, n, expect);
        }
    }
}

static void assert_blob_equal(const struct blob *got, const struct blob *want)
{
    assert_int_equal(got->len, want->len);
    assert_memory_equal(got->b, want->b, want->len);
}

static size_t welcome_frame(uint8_t *out, size_t cap, const uint8_t *id, uint16_t flags,
                            uint64_t rx_seq)
{
    struct lp_welcome w = {.version = LP_PROTO_VERSION,
                           .flags = flags,
                           .rx_seq = rx_seq,
                           .heartbeat_ms = 1000,
                           .dead_after_ms = 3000};
    memcpy(w.session_id, id, LP_SESSION_ID_LEN);
    if (!(flags & LP_WELCOME_RESUMED))
        memcpy(w.token, TOKEN, LP_TOKEN_LEN);
    size_t n = lp_welcome_encode(out, cap, &w);
    assert_true(n > 0);
    return n;
}

/* Decodes the first frame of a pipe's pending output (without sending it). */
static struct lp_frame peek_output(lp_pipe *p, size_t *n_out)
{
    const uint8_t *out = NULL;
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;

    *n_out = lp_pipe_pending_output(p, &out);
    assert_true(*n_out > 0);
    assert_int_equal(lp_frame_decode(out, *n_out, &f, &used, &why), LP_OK);
    return f;
}

/* ---- handshake ---------------------------------------------------------------------- */

static void test_pipe_new_session_handshake_agrees_on_id_and_token(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);

    link_up(&pr);
    size_t n;
    struct lp_frame f = peek_output(pr.c.p, &n);
    struct lp_hello h;
    const char *why = NULL;
    assert_int_equal(f.type, LP_FT_HELLO);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    uint8_t zero[LP_TOKEN_LEN] = {0};
    assert_memory_equal(h.session_id, zero, LP_SESSION_ID_LEN);
    assert_int_equal(h.rx_seq, 0);

    pump(&pr);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LIVE);
    assert_int_equal(lp_pipe_state(pr.s.p), LP_PIPE_LIVE);
    assert_memory_equal(lp_pipe_session_id(pr.c.p), SID, LP_SESSION_ID_LEN);
    assert_memory_equal(lp_pipe_token(pr.c.p), TOKEN, LP_TOKEN_LEN);
    assert_int_equal(count_ev(&pr.c, LP_PIPE_EV_LIVE), 1);
    assert_int_equal(count_ev(&pr.s, LP_PIPE_EV_LIVE), 1);
    assert_false(last_ev(&pr.c, LP_PIPE_EV_LIVE)->resumed);
    assert_false(last_ev(&pr.s, LP_PIPE_EV_LIVE)->resumed);
    assert_int_equal(last_ev(&pr.c, LP_PIPE_EV_LIVE)->gen, pr.c.gen);
    assert_int_equal(last_ev(&pr.s, LP_PIPE_EV_LIVE)->gen, pr.s.gen);
    pair_free(&pr);
}

static void test_pipe_second_link_resumes_with_id_and_token(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    link_cut(&pr);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_DETACHED);
    assert_int_equal(lp_pipe_state(pr.s.p), LP_PIPE_DETACHED);

    link_up(&pr);
    size_t n;
    struct lp_frame f = peek_output(pr.c.p, &n);
    struct lp_hello h;
    const char *why = NULL;
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_memory_equal(h.session_id, SID, LP_SESSION_ID_LEN);
    assert_memory_equal(h.token, TOKEN, LP_TOKEN_LEN);

    pump(&pr);
    assert_int_equal(count_ev(&pr.c, LP_PIPE_EV_LIVE), 2);
    assert_true(last_ev(&pr.c, LP_PIPE_EV_LIVE)->resumed);
    assert_true(last_ev(&pr.s, LP_PIPE_EV_LIVE)->resumed);
    assert_int_equal(lp_pipe_generation(pr.c.p), 2);
    assert_memory_equal(lp_pipe_token(pr.c.p), TOKEN, LP_TOKEN_LEN);
    pair_free(&pr);
}

static void test_pipe_only_hello_is_sent_before_welcome(void **state)
{
    struct pair pr;
    uint8_t *buf;
    const uint8_t *out;
    (void)state;
    pair_new(&pr);
    write_data(pr.c.p, 1, 100, 1, NULL);

    link_up(&pr);
    size_t n = lp_pipe_pending_output(pr.c.p, &out);
    assert_int_equal(n, LP_FRAME_HEADER + 64);
    lp_pipe_output_sent(pr.c.p, n, pr.now);
    assert_int_equal(lp_pipe_pending_output(pr.c.p, &out), 0);
    assert_true(lp_pipe_reserve(pr.c.p, 10, &buf) > 0); /* the stream still grows */
    lp_pipe_commit(pr.c.p, LP_FT_DATA, 0, 1, 10);
    assert_int_equal(lp_pipe_pending_output(pr.c.p, &out), 0);
    pair_free(&pr);
}

/* ---- sequenced data ----------------------------------------------------------------- */

static void test_pipe_sequenced_frames_arrive_byte_exact_in_order(void **state)
{
    struct pair pr;
    struct blob c2s, s2c;
    (void)state;
    pair_new(&pr);
    blob_init(&c2s, WIRE_CAP);
    blob_init(&s2c, WIRE_CAP);

    write_script(pr.c.p, 0, SCRIPT_LEN, 0, &c2s);
    write_data(pr.c.p, 9, LP_FRAME_MAX_PAYLOAD, 3, &c2s);
    connect_pair(&pr);
    write_script(pr.s.p, 0, SCRIPT_LEN, 2, &s2c);
    write_data(pr.s.p, 4, LP_FRAME_MAX_PAYLOAD, 5, &s2c);
    pump(&pr);

    assert_blob_equal(&pr.s.got, &c2s);
    assert_blob_equal(&pr.c.got, &s2c);
    assert_int_equal(lp_pipe_rx_seq(pr.s.p), c2s.len);
    assert_int_equal(lp_pipe_tx_seq(pr.c.p), c2s.len);
    assert_int_equal(lp_pipe_acked(pr.c.p), c2s.len); /* ACKs came back */
    assert_int_equal(lp_pipe_acked(pr.s.p), s2c.len);
    blob_free(&c2s);
    blob_free(&s2c);
    pair_free(&pr);
}

/* One readv's worth: n bytes written in order into the spans become full 16 KiB frames and a
 * short last one; the peer receives exactly those frames. */
static void reservev_roundtrip(size_t n)
{
    struct pair pr;
    struct blob want;
    struct lp_span spans[4];
    size_t count;
    uint8_t hdr[LP_FRAME_HEADER];
    struct lp_pipe_config cfg = cfg_default;

    cfg.replay_buffer = 1024u * 1024u;
    pair_new_cfg(&pr, &cfg);
    blob_init(&want, WIRE_CAP);
    size_t room = lp_pipe_reservev(pr.c.p, 4 * LP_FRAME_MAX_PAYLOAD, spans, 4, &count);
    assert_int_equal(room, 4 * LP_FRAME_MAX_PAYLOAD);
    assert_int_equal(count, 4);
    for (size_t k = 0; k < count; k++)
        assert_int_equal(spans[k].n, LP_FRAME_MAX_PAYLOAD);
    size_t left = n;
    for (size_t k = 0; k < count && left > 0; k++) { /* fill like readv: in order */
        size_t take = left < spans[k].n ? left : spans[k].n;
        for (size_t i = 0; i < take; i++)
            spans[k].p[i] = (uint8_t)(k * 31 + i);
        lp_frame_put_header(hdr, LP_FT_DATA, 0, (uint16_t)take, 7);
        blob_put(&want, hdr, sizeof(hdr));
        blob_put(&want, spans[k].p, take);
        left -= take;
    }
    lp_pipe_commitv(pr.c.p, LP_FT_DATA, 0, 7, n);
    size_t frames = (n + LP_FRAME_MAX_PAYLOAD - 1) / LP_FRAME_MAX_PAYLOAD;
    assert_int_equal(lp_pipe_tx_seq(pr.c.p), n + frames * LP_FRAME_HEADER);
    connect_pair(&pr);
    pump(&pr);
    assert_blob_equal(&pr.s.got, &want);
    blob_free(&want);
    pair_free(&pr);
}

static void test_pipe_reservev_commits_full_frames_then_a_short_one(void **state)
{
    (void)state;
    reservev_roundtrip(1);
    reservev_roundtrip(LP_FRAME_MAX_PAYLOAD);
    reservev_roundtrip(2 * LP_FRAME_MAX_PAYLOAD + 100);
    reservev_roundtrip(4 * LP_FRAME_MAX_PAYLOAD);
}

/* Near the cap, the spans shrink so that headers and payloads together never pass it. */
static void test_pipe_reservev_never_passes_the_replay_cap(void **state)
{
    struct lp_pipe_config cfg = cfg_default;
    struct lp_pipe *p;
    struct lp_span spans[4];
    size_t count;
    uint8_t *buf;
    (void)state;
    cfg.replay_buffer = 64u * 1024u;
    assert_int_equal(lp_pipe_new(&cfg, true, &p), LP_OK);
    size_t n = lp_pipe_reserve(p, 30000, &buf); /* one frame of 16 KiB at most */
    lp_pipe_commit(p, LP_FT_DATA, 0, 1, n);
    size_t room = lp_pipe_reservev(p, SIZE_MAX, spans, 4, &count);
    size_t headers = count * LP_FRAME_HEADER;
    assert_true(count >= 2);
    assert_true(lp_pipe_buffered(p) + room + headers <= cfg.replay_buffer);
    lp_pipe_commitv(p, LP_FT_DATA, 0, 1, room);
    assert_true(lp_pipe_buffered(p) <= cfg.replay_buffer);
    assert_int_equal(lp_pipe_reservev(p, SIZE_MAX, spans, 4, &count), 0); /* full */
    lp_pipe_free(p);
}

static void test_pipe_send_frame_refuses_what_is_not_one_sequenced_frame(void **state)
{
    lp_pipe *p;
    uint8_t fr[64];
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, true, &p), LP_OK);

    size_t n = lp_u64_encode(fr, sizeof(fr), LP_FT_ACK, 5);
    assert_int_equal(lp_pipe_send_frame(p, fr, n), LP_ERR_INVALID); /* not sequenced */
    n = lp_empty_encode(fr, sizeof(fr), LP_FT_FIN, 3);
    assert_int_equal(lp_pipe_send_frame(p, fr, n - 1), LP_ERR_INVALID); /* cut short */
    memcpy(fr + n, fr, n);
    assert_int_equal(lp_pipe_send_frame(p, fr, 2 * n), LP_ERR_INVALID); /* two frames */
    assert_int_equal(lp_pipe_tx_seq(p), 0);
    assert_int_equal(lp_pipe_send_frame(p, fr, n), LP_OK);
    assert_int_equal(lp_pipe_tx_seq(p), n);
    lp_pipe_free(p);
}

/* ---- resume at every byte offset ---------------------------------------------------- */

/* One run: link 1 delivers only `k` bytes in direction `dir`, then both ends see it drop;
 * link 2 runs to completion. Returns the bytes link 1 offered in `dir`. `fresh`: link 1
 * is the session's first (else a session with no data was set up before). */
static size_t resume_run(int dir, size_t k, bool fresh)
{
    struct pair pr;
    struct blob c2s, s2c;
    pair_new_cap(&pr, &cfg_default, 64u * 1024u);
    blob_init(&c2s, 64u * 1024u);
    blob_init(&s2c, 64u * 1024u);
    pr.step = 700;

    if (!fresh) {
        connect_pair(&pr);
        link_cut(&pr);
    }
    write_script(pr.c.p, 0, 4, 0, &c2s);
    write_script(pr.s.p, 0, 4, 1, &s2c);
    pr.limit[dir] = k;
    link_up(&pr);
    pump_rounds(&pr, 3, 1000);
    write_script(pr.c.p, 4, 8, 0, &c2s); /* while the link runs */
    write_script(pr.s.p, 4, 8, 1, &s2c);
    pump(&pr);
    size_t offered = pr.moved[dir];
    link_cut(&pr);
    write_script(pr.c.p, 8, SCRIPT_LEN, 0, &c2s); /* while detached */
    write_script(pr.s.p, 8, SCRIPT_LEN, 1, &s2c);

    pr.limit[dir] = NO_LIMIT;
    link_up(&pr);
    pump(&pr);
    if (lp_pipe_state(pr.c.p) != LP_PIPE_LIVE || lp_pipe_state(pr.s.p) != LP_PIPE_LIVE)
        fail_msg("dir %d cut at %zu: not live after resume", dir, k);
    if (pr.s.got.len != c2s.len || memcmp(pr.s.got.b, c2s.b, c2s.len) != 0)
        fail_msg("dir %d cut at %zu: server got %zu bytes, want %zu", dir, k, pr.s.got.len,
                 c2s.len);
    if (pr.c.got.len != s2c.len || memcmp(pr.c.got.b, s2c.b, s2c.len) != 0)
        fail_msg("dir %d cut at %zu: client got %zu bytes, want %zu", dir, k, pr.c.got.len,
                 s2c.len);
    assert_int_equal(lp_pipe_buffered(pr.c.p), 0); /* everything acknowledged in the end */
    assert_int_equal(lp_pipe_buffered(pr.s.p), 0);
    assert_int_equal(count_ev(&pr.c, LP_PIPE_EV_LINK_DOWN), 0);
    assert_int_equal(count_ev(&pr.s, LP_PIPE_EV_LINK_DOWN), 0);
    blob_free(&c2s);
    blob_free(&s2c);
    pair_free(&pr);
    return offered;
}

/* Cuts link 1 after every k in [0, max_k] bytes (all of it when max_k is NO_LIMIT). */
static void resume_every_offset(int dir, bool fresh, size_t max_k)
{
    size_t total = resume_run(dir, NO_LIMIT, fresh);
    assert_true(total > 4000); /* the run carried several KiB */
    for (size_t k = 0; k <= total && k <= max_k; k++)
        resume_run(dir, k, fresh);
}

static void test_pipe_resumes_after_cut_at_every_client_to_server_offset(void **state)
{
    (void)state;
    resume_every_offset(C2S, false, NO_LIMIT);
}

static void test_pipe_resumes_after_cut_at_every_server_to_client_offset(void **state)
{
    (void)state;
    resume_every_offset(S2C, false, NO_LIMIT);
}

/* The first link of a new session: a cut inside the HELLO leaves the server without the
 * session, a later one leaves a session to resume. The offsets past the first frames add
 * nothing the resumed variant does not cover. */
static void test_pipe_first_link_cut_at_every_client_offset_still_delivers(void **state)
{
    (void)state;
    resume_every_offset(C2S, true, 600);
}

/* ---- ACKs and backpressure ---------------------------------------------------------- */

static void test_pipe_acks_free_replay_chunks(void **state)
{
    struct lp_pipe_config cfg = cfg_default;
    struct pair pr;
    (void)state;
    cfg.replay_buffer = 2u * 1024u * 1024u;
    cfg.ack_every = 64u * 1024u;
    pair_new_cfg(&pr, &cfg);

    size_t total = 0;
    for (int i = 0; total < 900u * 1024u; i++) {
        uint8_t *buf;
        size_t n = lp_pipe_reserve(pr.c.p, LP_FRAME_MAX_PAYLOAD, &buf);
        assert_true(n > 0);
        memset(buf, i, n);
        lp_pipe_commit(pr.c.p, LP_FT_DATA, 0, 1, n);
        total += LP_FRAME_HEADER + n;
    }
    assert_int_equal(lp_pipe_buffered(pr.c.p), total);
    size_t n0 = lp_pipe_replay_chunks(pr.c.p);
    assert_true(n0 >= 4);
    assert_int_equal(lp_pipe_acked(pr.c.p), 0);

    link_up(&pr);
    uint64_t prev = 0;
    size_t steps = 0;
    for (int i = 0; i < 100000 && lp_pipe_acked(pr.c.p) < total; i++) {
        pump_rounds(&pr, 1, 1000);
        uint64_t acked = lp_pipe_acked(pr.c.p);
        assert_true(acked >= prev);
        steps += acked != prev;
        prev = acked;
        /* Chunks hold at most 256 KiB each: every whole 256 KiB acknowledged frees one. */
        size_t freed = (size_t)(acked / (256u * 1024u));
        size_t bound = freed >= n0 ? 1 : n0 - freed;
        assert_true(lp_pipe_replay_chunks(pr.c.p) <= LP_MAX(bound, (size_t)1));
    }
    assert_true(steps >= 3); /* acknowledged piece by piece, not all at the end */
    assert_int_equal(lp_pipe_acked(pr.c.p), total);
    assert_int_equal(lp_pipe_buffered(pr.c.p), 0);
    assert_int_equal(lp_pipe_replay_chunks(pr.c.p), 1); /* only the tail stays */
    assert_int_equal(lp_pipe_rx_seq(pr.s.p), total);
    pair_free(&pr);
}

static void test_pipe_full_replay_buffer_stops_reserve_until_acked(void **state)
{
    struct pair pr;
    uint8_t *buf;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);

    size_t frames = 0;
    while (lp_pipe_reserve(pr.c.p, LP_FRAME_MAX_PAYLOAD, &buf) > 0 && frames < 100) {
        size_t n = lp_pipe_reserve(pr.c.p, LP_FRAME_MAX_PAYLOAD, &buf);
        lp_pipe_commit(pr.c.p, LP_FT_DATA, 0, 1, n);
        frames++;
    }
    assert_true(frames >= 4);
    assert_int_equal(lp_pipe_buffered(pr.c.p), cfg_default.replay_buffer); /* exactly full */
    assert_int_equal(lp_pipe_tx_room(pr.c.p), 0);
    assert_int_equal(lp_pipe_reserve(pr.c.p, 1, &buf), 0);
    drain(&pr.c, pr.now);
    assert_int_equal(count_ev(&pr.c, LP_PIPE_EV_ROOM), 0);

    /* Control frames may still go, up to the slack, and then no more. */
    uint8_t fr[32];
    size_t n = lp_u32_encode(fr, sizeof(fr), LP_FT_WINDOW, 1, 4096);
    size_t sent = 0;
    while (lp_pipe_send_frame(pr.c.p, fr, n) == LP_OK && sent < 100000)
        sent++;
    assert_true(sent > 0);
    assert_int_equal(lp_pipe_send_frame(pr.c.p, fr, n), LP_ERR_NOSPACE);
    size_t limit = cfg_default.replay_buffer + LP_PIPE_CONTROL_SLACK;
    assert_true(lp_pipe_buffered(pr.c.p) <= limit);
    assert_true(lp_pipe_buffered(pr.c.p) + n > limit);

    pump(&pr);
    assert_int_equal(count_ev(&pr.c, LP_PIPE_EV_ROOM), 1);
    assert_int_equal(lp_pipe_buffered(pr.c.p), 0);
    assert_int_equal(lp_pipe_reserve(pr.c.p, 100, &buf), 100);
    pair_free(&pr);
}

/* ---- range checks --------------------------------------------------------------------- */

static void test_pipe_accept_refuses_client_ahead_of_tx_seq(void **state)
{
    lp_pipe *s;
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = 1};
    uint64_t gen = 0;
    const char *why = NULL;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, false, &s), LP_OK);
    write_script(s, 0, 6, 0, NULL);
    uint64_t tx = lp_pipe_tx_seq(s);

    h.rx_seq = tx + 777;
    assert_int_equal(lp_pipe_accept(s, &h, 5, &gen, &why), LP_ERR_SEQ);
    assert_non_null(why);
    assert_true(has_u64(why, tx + 777));
    assert_true(has_u64(why, tx));
    assert_int_equal(lp_pipe_state(s), LP_PIPE_LOST);
    const uint8_t *out;
    assert_int_equal(lp_pipe_pending_output(s, &out), 0);
    lp_pipe_free(s);
}

static void test_pipe_accept_refuses_mid_frame_resume_point(void **state)
{
    lp_pipe *s;
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = 1};
    uint64_t gen = 0;
    const char *why = NULL;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, false, &s), LP_OK);
    write_data(s, 1, 100, 0, NULL);
    write_data(s, 1, 100, 0, NULL);

    h.rx_seq = 50; /* inside the first frame */
    assert_int_equal(lp_pipe_accept(s, &h, 5, &gen, &why), LP_ERR_SEQ);
    assert_true(has_u64(why, 50));
    assert_true(strstr(why, "inside a frame") != NULL);
    assert_int_equal(lp_pipe_state(s), LP_PIPE_LOST);
    lp_pipe_free(s);

    assert_int_equal(lp_pipe_new(&cfg_default, false, &s), LP_OK);
    write_data(s, 1, 100, 0, NULL);
    write_data(s, 1, 100, 0, NULL);
    h.rx_seq = LP_FRAME_HEADER + 100; /* a boundary is fine */
    assert_int_equal(lp_pipe_accept(s, &h, 5, &gen, &why), LP_OK);
    assert_int_equal(lp_pipe_acked(s), LP_FRAME_HEADER + 100);
    lp_pipe_free(s);
}

static void test_pipe_accept_refuses_client_behind_acked_as_lost(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    write_script(pr.s.p, 0, SCRIPT_LEN, 0, NULL);
    pump(&pr);
    uint64_t acked = lp_pipe_acked(pr.s.p);
    assert_true(acked > 1000);
    link_cut(&pr);

    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = 1};
    memcpy(h.session_id, SID, LP_SESSION_ID_LEN);
    h.rx_seq = acked - 999;
    uint64_t gen = 0;
    const char *why = NULL;
    assert_int_equal(lp_pipe_accept(pr.s.p, &h, pr.now, &gen, &why), LP_ERR_SEQ);
    assert_true(has_u64(why, acked - 999));
    assert_true(has_u64(why, acked));
    assert_int_equal(lp_pipe_state(pr.s.p), LP_PIPE_LOST);
    assert_int_equal(lp_pipe_accept(pr.s.p, &h, pr.now, &gen, &why), LP_ERR_STATE);
    pair_free(&pr);
}

static void test_pipe_client_goes_lost_when_welcome_is_ahead_of_tx_seq(void **state)
{
    lp_pipe *c;
    uint8_t fr[128];
    struct lp_pipe_event ev;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
    write_script(c, 0, 5, 0, NULL);
    uint64_t tx = lp_pipe_tx_seq(c);
    lp_pipe_connect(c, 10);

    size_t n = welcome_frame(fr, sizeof(fr), SID, 0, tx + 4242);
    assert_int_equal(lp_pipe_recv(c, fr, n, 11), n);
    struct lp_frame f;
    assert_false(lp_pipe_next_frame(c, &f, 11));
    assert_true(lp_pipe_next_event(c, &ev));
    assert_int_equal(ev.type, LP_PIPE_EV_LOST);
    assert_true(has_u64(ev.msg, tx + 4242));
    assert_true(has_u64(ev.msg, tx));
    assert_int_equal(lp_pipe_state(c), LP_PIPE_LOST);
    assert_false(lp_pipe_next_event(c, &ev));
    /* LOST is final: a new link does nothing. */
    lp_pipe_connect(c, 12);
    assert_int_equal(lp_pipe_state(c), LP_PIPE_LOST);
    const uint8_t *out;
    assert_int_equal(lp_pipe_pending_output(c, &out), 0);
    lp_pipe_free(c);
}

static void test_pipe_client_goes_lost_when_welcome_is_behind_acked(void **state)
{
    struct pair pr;
    uint8_t fr[128];
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    write_script(pr.c.p, 0, SCRIPT_LEN, 0, NULL);
    pump(&pr);
    uint64_t acked = lp_pipe_acked(pr.c.p);
    assert_true(acked > 1000);
    link_cut(&pr);

    link_up(&pr);
    size_t n = welcome_frame(fr, sizeof(fr), SID, LP_WELCOME_RESUMED, acked - 321);
    feed(&pr.c, fr, n, pr.now);
    const struct lp_pipe_event *ev = last_ev(&pr.c, LP_PIPE_EV_LOST);
    assert_true(has_u64(ev->msg, acked - 321));
    assert_true(has_u64(ev->msg, acked));
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LOST);
    pair_free(&pr);
}

static void test_pipe_client_goes_lost_when_welcome_is_mid_frame(void **state)
{
    lp_pipe *c;
    uint8_t fr[128];
    struct lp_pipe_event ev;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
    write_data(c, 1, 100, 0, NULL);
    lp_pipe_connect(c, 10);
    size_t n = welcome_frame(fr, sizeof(fr), SID, 0, 9);
    lp_pipe_recv(c, fr, n, 11);
    struct lp_frame f;
    assert_false(lp_pipe_next_frame(c, &f, 11));
    assert_true(lp_pipe_next_event(c, &ev));
    assert_int_equal(ev.type, LP_PIPE_EV_LOST);
    assert_true(strstr(ev.msg, "inside a frame") != NULL);
    lp_pipe_free(c);
}

/* ---- generations -------------------------------------------------------------------- */

static void test_pipe_ignores_link_down_from_stale_generation(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);
    uint64_t g1 = lp_pipe_connect(pr.c.p, pr.now);
    link_up(&pr); /* the glue replaced link 1 before it finished */
    assert_int_equal(pr.c.gen, g1 + 1);
    lp_pipe_link_down(pr.c.p, g1);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_HANDSHAKE);
    pump(&pr);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LIVE);
    uint64_t s1 = pr.s.gen;

    /* The server takes a resume while it still holds the old link. */
    link_up(&pr);
    pump(&pr);
    assert_true(pr.s.gen > s1);
    lp_pipe_link_down(pr.s.p, s1);
    lp_pipe_link_down(pr.c.p, g1);
    assert_int_equal(lp_pipe_state(pr.s.p), LP_PIPE_LIVE);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LIVE);
    lp_pipe_link_down(pr.s.p, pr.s.gen);
    assert_int_equal(lp_pipe_state(pr.s.p), LP_PIPE_DETACHED);
    pair_free(&pr);
}

/* ---- liveness --------------------------------------------------------------------------- */

static void test_pipe_pings_after_heartbeat_of_silence_and_pong_gives_rtt(void **state)
{
    struct pair pr;
    const uint8_t *out;
    uint64_t v = 0;
    const char *why = NULL;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    lp_time t0 = pr.now;

    lp_time d = lp_pipe_next_deadline(pr.c.p);
    assert_true(d > t0);
    assert_true(d <= t0 + cfg_default.heartbeat);
    lp_pipe_on_timeout(pr.c.p, d - 1);
    assert_int_equal(lp_pipe_pending_output(pr.c.p, &out), 0);

    pr.now = d;
    lp_pipe_on_timeout(pr.c.p, d);
    size_t n;
    struct lp_frame f = peek_output(pr.c.p, &n);
    assert_int_equal(f.type, LP_FT_PING);
    assert_int_equal(lp_u64_decode(&f, &v, &why), LP_OK);
    assert_int_equal(v, d);
    assert_true(lp_pipe_next_deadline(pr.c.p) > d); /* not due again at once */

    move(&pr, C2S);
    f = peek_output(pr.s.p, &n);
    assert_int_equal(f.type, LP_FT_PONG);
    pr.now = d + 7;
    move(&pr, S2C);
    assert_int_equal(pr.c.n_rtt, 1);
    assert_int_equal(pr.c.last_rtt, 7);
    assert_int_equal(lp_pipe_rtt(pr.c.p), 7);
    pair_free(&pr);
}

static void test_pipe_declares_link_dead_after_silence(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    lp_time last_in = pr.last_delivery[S2C];

    /* The glue keeps calling on_timeout at each deadline; nothing comes back. */
    for (int i = 0; i < 100 && lp_pipe_state(pr.c.p) == LP_PIPE_LIVE; i++) {
        lp_time d = lp_pipe_next_deadline(pr.c.p);
        assert_true(d >= pr.now);
        pr.now = d;
        lp_pipe_on_timeout(pr.c.p, pr.now);
        drain(&pr.c, pr.now);
    }
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_DETACHED);
    assert_int_equal(pr.now, last_in + cfg_default.dead_after);
    const struct lp_pipe_event *ev = last_ev(&pr.c, LP_PIPE_EV_LINK_DOWN);
    assert_string_equal(ev->msg, "no data from peer for 3000 ms");
    assert_int_equal(ev->gen, pr.c.gen);
    assert_int_equal(lp_pipe_next_deadline(pr.c.p), LP_TIME_NEVER);
    pair_free(&pr);
}

static void test_pipe_handshake_times_out_without_welcome(void **state)
{
    lp_pipe *c;
    struct lp_pipe_event ev;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
    uint64_t gen = lp_pipe_connect(c, 100);
    assert_int_equal(lp_pipe_next_deadline(c), 100 + cfg_default.dead_after);
    lp_pipe_on_timeout(c, 100 + cfg_default.dead_after - 1);
    assert_false(lp_pipe_next_event(c, &ev));
    lp_pipe_on_timeout(c, 100 + cfg_default.dead_after);
    assert_true(lp_pipe_next_event(c, &ev));
    assert_int_equal(ev.type, LP_PIPE_EV_LINK_DOWN);
    assert_int_equal(ev.gen, gen);
    assert_string_equal(ev.msg, "handshake timed out after 3000 ms");
    assert_int_equal(lp_pipe_state(c), LP_PIPE_DETACHED);
    assert_int_equal(lp_pipe_next_deadline(c), LP_TIME_NEVER);
    lp_pipe_free(c);
}

static void test_pipe_deadline_does_not_stay_in_the_past_mid_frame(void **state)
{
    struct pair pr;
    const uint8_t *out;
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    write_data(pr.c.p, 1, 5000, 0, NULL);
    size_t n = lp_pipe_pending_output(pr.c.p, &out);
    assert_true(n > 1);
    lp_pipe_output_sent(pr.c.p, 1, pr.now); /* now mid-frame, and the link stalls */

    pr.now += 2 * cfg_default.heartbeat / 3;
    lp_pipe_on_timeout(pr.c.p, pr.now);
    pr.now = lp_pipe_next_deadline(pr.c.p);
    lp_pipe_on_timeout(pr.c.p, pr.now); /* PING due, but it must wait for the frame end */
    lp_time d = lp_pipe_next_deadline(pr.c.p);
    assert_true(d > pr.now);
    n = lp_pipe_pending_output(pr.c.p, &out);
    assert_int_equal(n, LP_FRAME_HEADER + 5000 - 1); /* only up to the end of the frame */
    lp_pipe_output_sent(pr.c.p, n, pr.now);
    size_t m;
    struct lp_frame f = peek_output(pr.c.p, &m);
    assert_int_equal(f.type, LP_FT_PING);
    pair_free(&pr);
}

/* ---- control frames only between sequenced frames ------------------------------------- */

/* Parses a recorded link byte stream: it must be whole frames back to back. Sequenced
 * frames go to `seq`; returns the count of each unsequenced type in counts[type - 0x40]. */
static void parse_wire(const struct blob *w, struct blob *seq, size_t counts[3])
{
    size_t off = 0;
    while (off < w->len) {
        struct lp_frame f;
        size_t used = 0;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(w->b + off, w->len - off, &f, &used, &why);
        if (rc != LP_OK)
            fail_msg("wire not whole frames at %zu: %s", off, why ? why : "truncated");
        if (lp_frame_is_sequenced(f.type))
            put_frame(seq, &f);
        else if (f.type >= LP_FT_ACK && f.type <= LP_FT_PONG)
            counts[f.type - LP_FT_ACK]++;
        off += used;
    }
}

static void test_pipe_control_frames_never_split_a_sequenced_frame(void **state)
{
    struct lp_pipe_config cfg = cfg_default;
    struct pair pr;
    struct blob c2s, s2c, wire_c2s, wire_s2c, seq_c2s, seq_s2c;
    (void)state;
    cfg.heartbeat = 200;
    cfg.dead_after = 5000;
    pair_new_cfg(&pr, &cfg);
    blob_init(&c2s, WIRE_CAP);
    blob_init(&s2c, WIRE_CAP);
    blob_init(&wire_c2s, WIRE_CAP);
    blob_init(&wire_s2c, WIRE_CAP);
    blob_init(&seq_c2s, WIRE_CAP);
    blob_init(&seq_s2c, WIRE_CAP);
    pr.wire[C2S] = &wire_c2s;
    pr.wire[S2C] = &wire_s2c;
    pr.step = 1;

    for (int i = 0; i < 3; i++)
        write_data(pr.c.p, 1, LP_FRAME_MAX_PAYLOAD, (uint8_t)i, &c2s);
    write_script(pr.s.p, 0, SCRIPT_LEN, 0, &s2c);
    link_up(&pr);
    pump(&pr);

    assert_blob_equal(&pr.s.got, &c2s);
    assert_blob_equal(&pr.c.got, &s2c);
    size_t cnt_c2s[3] = {0}, cnt_s2c[3] = {0};
    parse_wire(&wire_c2s, &seq_c2s, cnt_c2s);
    parse_wire(&wire_s2c, &seq_s2c, cnt_s2c);
    assert_blob_equal(&seq_c2s, &c2s);
    assert_blob_equal(&seq_s2c, &s2c);
    assert_true(cnt_c2s[0] > 0); /* ACK */
    assert_true(cnt_c2s[1] > 0); /* PING */
    assert_true(cnt_c2s[2] > 0); /* PONG */
    assert_true(cnt_s2c[0] > 0);
    blob_free(&c2s);
    blob_free(&s2c);
    blob_free(&wire_c2s);
    blob_free(&wire_s2c);
    blob_free(&seq_c2s);
    blob_free(&seq_s2c);
    pair_free(&pr);
}

/* ---- REJECT and protocol errors --------------------------------------------------------- */

static void test_pipe_reject_in_handshake_reports_code_and_message(void **state)
{
    lp_pipe *c;
    uint8_t fr[LP_FRAME_MAX];
    struct lp_pipe_event ev;
    struct lp_frame f;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
    uint64_t gen = lp_pipe_connect(c, 10);
    const char *msg = "authentication failed: unknown key";
    size_t n = lp_text_encode(fr, sizeof(fr), LP_FT_REJECT, 0, LP_REJECT_AUTH, msg, strlen(msg));
    assert_int_equal(lp_pipe_recv(c, fr, n, 11), n);
    assert_false(lp_pipe_next_frame(c, &f, 11));
    assert_true(lp_pipe_next_event(c, &ev));
    assert_int_equal(ev.type, LP_PIPE_EV_REJECTED);
    assert_int_equal(ev.code, LP_REJECT_AUTH);
    assert_int_equal(ev.gen, gen);
    assert_string_equal(ev.msg, msg);
    assert_int_equal(lp_pipe_state(c), LP_PIPE_DETACHED);

    /* A long message is cut to fit and stays terminated. */
    char longmsg[LP_FRAME_MAX_TEXT];
    memset(longmsg, 'x', sizeof(longmsg));
    lp_pipe_connect(c, 20);
    n = lp_text_encode(fr, sizeof(fr), LP_FT_REJECT, 0, LP_REJECT_LIMIT, longmsg, sizeof(longmsg));
    assert_true(n > 0);
    lp_pipe_recv(c, fr, n, 21);
    assert_false(lp_pipe_next_frame(c, &f, 21));
    assert_true(lp_pipe_next_event(c, &ev));
    assert_int_equal(ev.type, LP_PIPE_EV_REJECTED);
    assert_int_equal(strlen(ev.msg), LP_PIPE_MSG_MAX - 1);
    lp_pipe_free(c);
}

static void expect_link_down(struct side *sd, const char *needle)
{
    const struct lp_pipe_event *ev = last_ev(sd, LP_PIPE_EV_LINK_DOWN);
    if (strstr(ev->msg, needle) == NULL)
        fail_msg("LINK_DOWN says \"%s\", expected \"%s\" in it", ev->msg, needle);
    assert_int_equal(ev->gen, sd->gen);
    assert_int_equal(lp_pipe_state(sd->p), LP_PIPE_DETACHED);
}

static void test_pipe_hello_while_live_is_a_protocol_error(void **state)
{
    struct pair pr;
    uint8_t fr[128];
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = 1};
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    size_t n = lp_hello_encode(fr, sizeof(fr), &h);
    feed(&pr.s, fr, n, pr.now);
    expect_link_down(&pr.s, "unexpected HELLO");

    n = welcome_frame(fr, sizeof(fr), SID, LP_WELCOME_RESUMED, 0);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "unexpected WELCOME");
    pair_free(&pr);
}

static void test_pipe_ack_beyond_what_was_sent_is_a_protocol_error(void **state)
{
    struct pair pr;
    uint8_t fr[32];
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    write_script(pr.c.p, 0, 5, 0, NULL);
    pump(&pr);
    uint64_t tx = lp_pipe_tx_seq(pr.c.p);

    size_t n = lp_u64_encode(fr, sizeof(fr), LP_FT_ACK, tx); /* in range: fine */
    feed(&pr.c, fr, n, pr.now);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LIVE);
    n = lp_u64_encode(fr, sizeof(fr), LP_FT_ACK, tx + 5000);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "acknowledged");
    const struct lp_pipe_event *ev = last_ev(&pr.c, LP_PIPE_EV_LINK_DOWN);
    assert_true(has_u64(ev->msg, tx + 5000));
    assert_true(has_u64(ev->msg, tx));
    assert_int_equal(lp_pipe_acked(pr.c.p), tx);
    pair_free(&pr);
}

static void test_pipe_ack_inside_a_frame_is_a_protocol_error(void **state)
{
    struct pair pr;
    uint8_t fr[32];
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    write_data(pr.c.p, 1, 100, 0, NULL);
    write_data(pr.c.p, 1, 100, 0, NULL);
    const uint8_t *out;
    size_t n = lp_pipe_pending_output(pr.c.p, &out);
    lp_pipe_output_sent(pr.c.p, n, pr.now); /* sent, not yet delivered or acknowledged */

    n = lp_u64_encode(fr, sizeof(fr), LP_FT_ACK, LP_FRAME_HEADER + 100); /* a boundary */
    feed(&pr.c, fr, n, pr.now);
    assert_int_equal(lp_pipe_acked(pr.c.p), LP_FRAME_HEADER + 100);
    n = lp_u64_encode(fr, sizeof(fr), LP_FT_ACK, LP_FRAME_HEADER + 150);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "inside a frame");
    assert_true(has_u64(last_ev(&pr.c, LP_PIPE_EV_LINK_DOWN)->msg, LP_FRAME_HEADER + 150));
    assert_int_equal(lp_pipe_acked(pr.c.p), LP_FRAME_HEADER + 100);
    pair_free(&pr);
}

static void test_pipe_garbage_from_peer_drops_the_link(void **state)
{
    struct pair pr;
    const uint8_t junk[] = "GET / HTTP/1.1\r\n\r\n";
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    feed(&pr.c, junk, sizeof(junk) - 1, pr.now);
    expect_link_down(&pr.c, "bad frame from peer: ");
    uint8_t *buf;
    assert_int_equal(lp_pipe_recv_space(pr.c.p, &buf), 0); /* no link, no input */

    /* The session carries on over a new link. */
    link_up(&pr);
    pump(&pr);
    assert_int_equal(lp_pipe_state(pr.c.p), LP_PIPE_LIVE);
    pair_free(&pr);
}

static void test_pipe_sequenced_frame_before_welcome_is_a_protocol_error(void **state)
{
    struct pair pr;
    uint8_t fr[32];
    (void)state;
    pair_new(&pr);
    link_up(&pr);
    size_t n = lp_empty_encode(fr, sizeof(fr), LP_FT_FIN, 2);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "FIN before WELCOME");

    link_up(&pr);
    n = lp_u64_encode(fr, sizeof(fr), LP_FT_PING, 1);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "PING before WELCOME");
    pair_free(&pr);
}

static void test_pipe_welcome_for_wrong_session_is_a_protocol_error(void **state)
{
    struct pair pr;
    uint8_t fr[128];
    uint8_t other[LP_SESSION_ID_LEN] = {9};
    (void)state;
    pair_new(&pr);
    connect_pair(&pr);
    link_cut(&pr);
    link_up(&pr);
    size_t n = welcome_frame(fr, sizeof(fr), other, LP_WELCOME_RESUMED, 0);
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "another session");

    link_up(&pr);
    n = welcome_frame(fr, sizeof(fr), SID, 0, 0); /* RESUMED missing */
    feed(&pr.c, fr, n, pr.now);
    expect_link_down(&pr.c, "does not resume");
    pair_free(&pr);
}

static void test_pipe_client_learns_the_node_that_holds_its_session(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr);
    assert_int_equal(lp_pipe_set_node(pr.s.p, "edge-2"), LP_OK);
    assert_int_equal(lp_pipe_set_node(pr.s.p, "Edge.2"), LP_ERR_INVALID); /* kept "edge-2" */
    assert_string_equal(lp_pipe_node(pr.c.p), "");

    link_up(&pr);
    size_t n;
    struct lp_frame f = peek_output(pr.c.p, &n);
    struct lp_hello h;
    const char *why = NULL;
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_int_equal(h.flags & LP_HELLO_NODE, LP_HELLO_NODE);
    pump(&pr);
    assert_string_equal(lp_pipe_node(pr.c.p), "edge-2");

    /* the resume's WELCOME names it again */
    link_cut(&pr);
    link_up(&pr);
    pump(&pr);
    assert_true(last_ev(&pr.c, LP_PIPE_EV_LIVE)->resumed);
    assert_string_equal(lp_pipe_node(pr.c.p), "edge-2");
    pair_free(&pr);
}

/* The HELLO of a link that replaces one for new keys says REKEY, once: the next resume after
 * a loss is a reconnect again, and the first HELLO of all never says it. */
static void test_pipe_hello_says_rekey_only_for_the_link_after_set_rekey(void **state)
{
    struct pair pr;
    struct lp_hello h;
    const char *why = NULL;
    size_t n;
    struct lp_frame f;
    (void)state;
    pair_new(&pr);
    link_up(&pr);
    f = peek_output(pr.c.p, &n);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_int_equal(h.flags & LP_HELLO_REKEY, 0);
    pump(&pr);

    link_cut(&pr);
    lp_pipe_set_rekey(pr.c.p);
    link_up(&pr);
    f = peek_output(pr.c.p, &n);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_int_equal(h.flags & (LP_HELLO_REKEY | LP_HELLO_NODE), LP_HELLO_REKEY | LP_HELLO_NODE);
    pump(&pr);
    assert_true(last_ev(&pr.c, LP_PIPE_EV_LIVE)->resumed);

    link_cut(&pr);
    link_up(&pr);
    f = peek_output(pr.c.p, &n);
    assert_int_equal(lp_hello_decode(&f, &h, &why), LP_OK);
    assert_int_equal(h.flags & LP_HELLO_REKEY, 0);
    pair_free(&pr);
}

static void test_pipe_server_sends_no_node_to_a_client_that_did_not_ask(void **state)
{
    lp_pipe *s;
    const uint8_t *out;
    const char *why = NULL;
    uint64_t gen = 0;
    (void)state;
    assert_int_equal(lp_pipe_new(&cfg_default, false, &s), LP_OK);
    lp_pipe_set_identity(s, SID, TOKEN);
    assert_int_equal(lp_pipe_set_node(s, "edge-2"), LP_OK);
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION, .flags = 0};
    assert_int_equal(lp_pipe_accept(s, &h, 1, &gen, &why), LP_OK);
    /* an older client checks that WELCOME is exactly 68 bytes */
    assert_int_equal(lp_pipe_pending_output(s, &out), LP_FRAME_HEADER + 68);
    assert_int_equal(out[LP_FRAME_HEADER + 3] & LP_WELCOME_NODE, 0);
    lp_pipe_free(s);
}

static void test_pipe_client_of_an_older_server_has_no_node(void **state)
{
    struct pair pr;
    (void)state;
    pair_new(&pr); /* the server side never set a node: it sends the 68-byte WELCOME */
    connect_pair(&pr);
    assert_string_equal(lp_pipe_node(pr.c.p), "");
    pair_free(&pr);
}

/* ---- truncation ------------------------------------------------------------------------- */

static void test_pipe_every_prefix_of_a_welcome_with_a_node_is_waited_for(void **state)
{
    uint8_t stream[256];
    struct lp_pipe_event ev;
    struct lp_frame f;
    (void)state;
    struct lp_welcome w = {.version = LP_PROTO_VERSION,
                           .flags = LP_WELCOME_NODE,
                           .heartbeat_ms = 1000,
                           .dead_after_ms = 3000,
                           .node = (const uint8_t *)"n7",
                           .node_len = 2};
    memcpy(w.session_id, SID, LP_SESSION_ID_LEN);
    size_t n = lp_welcome_encode(stream, sizeof(stream), &w);
    assert_int_equal(n, LP_FRAME_HEADER + 68 + 3);

    for (size_t k = 0; k <= n; k++) {
        lp_pipe *c;
        assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
        lp_pipe_connect(c, 1);
        uint8_t *copy = malloc(k ? k : 1); /* exact size, so ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, stream, k);
        assert_int_equal(lp_pipe_recv(c, copy, k, 2), k);
        assert_false(lp_pipe_next_frame(c, &f, 2));
        bool any_event = lp_pipe_next_event(c, &ev);
        assert_int_equal(any_event, k == n);
        assert_string_equal(lp_pipe_node(c), k == n ? "n7" : "");
        assert_int_equal(lp_pipe_state(c), k == n ? LP_PIPE_LIVE : LP_PIPE_HANDSHAKE);
        free(copy);
        lp_pipe_free(c);
    }
}

static void test_pipe_every_prefix_of_a_welcome_is_waited_for(void **state)
{
    uint8_t stream[256];
    struct lp_pipe_event ev;
    struct lp_frame f;
    (void)state;
    size_t n = welcome_frame(stream, sizeof(stream), SID, 0, 0);
    size_t m = lp_empty_encode(stream + n, sizeof(stream) - n, LP_FT_FIN, 2);
    size_t total = n + m;

    for (size_t k = 0; k <= total; k++) {
        lp_pipe *c;
        assert_int_equal(lp_pipe_new(&cfg_default, true, &c), LP_OK);
        lp_pipe_connect(c, 1);
        uint8_t *copy = malloc(k ? k : 1); /* exact size, so ASan sees any overread */
        assert_non_null(copy);
        memcpy(copy, stream, k);
        assert_int_equal(lp_pipe_recv(c, copy, k, 2), k);
        bool got = lp_pipe_next_frame(c, &f, 2);
        bool any_event = lp_pipe_next_event(c, &ev);
        if (k < n) {
            assert_false(got);
            assert_false(any_event);
            assert_int_equal(lp_pipe_state(c), LP_PIPE_HANDSHAKE);
        } else {
            assert_true(any_event);
            assert_int_equal(ev.type, LP_PIPE_EV_LIVE);
            assert_int_equal(got, k == total);
        }
        free(copy);
        lp_pipe_free(c);
    }
}

static void test_pipe_rejects_bad_config(void **state)
{
    struct lp_pipe_config cfg = cfg_default;
    lp_pipe *p = NULL;
    (void)state;
    cfg.replay_buffer = 1000;
    assert_int_equal(lp_pipe_new(&cfg, true, &p), LP_ERR_INVALID);
    assert_null(p);
    cfg = cfg_default;
    cfg.heartbeat = 0;
    assert_int_equal(lp_pipe_new(&cfg, true, &p), LP_ERR_INVALID);
    lp_pipe_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_new_session_handshake_agrees_on_id_and_token),
        cmocka_unit_test(test_pipe_second_link_resumes_with_id_and_token),
        cmocka_unit_test(test_pipe_only_hello_is_sent_before_welcome),
        cmocka_unit_test(test_pipe_sequenced_frames_arrive_byte_exact_in_order),
        cmocka_unit_test(test_pipe_send_frame_refuses_what_is_not_one_sequenced_frame),
        cmocka_unit_test(test_pipe_resumes_after_cut_at_every_client_to_server_offset),
        cmocka_unit_test(test_pipe_resumes_after_cut_at_every_server_to_client_offset),
        cmocka_unit_test(test_pipe_first_link_cut_at_every_client_offset_still_delivers),
        cmocka_unit_test(test_pipe_reservev_commits_full_frames_then_a_short_one),
        cmocka_unit_test(test_pipe_reservev_never_passes_the_replay_cap),
        cmocka_unit_test(test_pipe_acks_free_replay_chunks),
        cmocka_unit_test(test_pipe_full_replay_buffer_stops_reserve_until_acked),
        cmocka_unit_test(test_pipe_accept_refuses_client_ahead_of_tx_seq),
        cmocka_unit_test(test_pipe_accept_refuses_mid_frame_resume_point),
        cmocka_unit_test(test_pipe_accept_refuses_client_behind_acked_as_lost),
        cmocka_unit_test(test_pipe_client_goes_lost_when_welcome_is_ahead_of_tx_seq),
        cmocka_unit_test(test_pipe_client_goes_lost_when_welcome_is_behind_acked),
        cmocka_unit_test(test_pipe_client_goes_lost_when_welcome_is_mid_frame),
        cmocka_unit_test(test_pipe_ignores_link_down_from_stale_generation),
        cmocka_unit_test(test_pipe_pings_after_heartbeat_of_silence_and_pong_gives_rtt),
        cmocka_unit_test(test_pipe_declares_link_dead_after_silence),
        cmocka_unit_test(test_pipe_handshake_times_out_without_welcome),
        cmocka_unit_test(test_pipe_deadline_does_not_stay_in_the_past_mid_frame),
        cmocka_unit_test(test_pipe_control_frames_never_split_a_sequenced_frame),
        cmocka_unit_test(test_pipe_reject_in_handshake_reports_code_and_message),
        cmocka_unit_test(test_pipe_hello_while_live_is_a_protocol_error),
        cmocka_unit_test(test_pipe_ack_beyond_what_was_sent_is_a_protocol_error),
        cmocka_unit_test(test_pipe_ack_inside_a_frame_is_a_protocol_error),
        cmocka_unit_test(test_pipe_garbage_from_peer_drops_the_link),
        cmocka_unit_test(test_pipe_sequenced_frame_before_welcome_is_a_protocol_error),
        cmocka_unit_test(test_pipe_welcome_for_wrong_session_is_a_protocol_error),
        cmocka_unit_test(test_pipe_every_prefix_of_a_welcome_is_waited_for),
        cmocka_unit_test(test_pipe_every_prefix_of_a_welcome_with_a_node_is_waited_for),
        cmocka_unit_test(test_pipe_client_learns_the_node_that_holds_its_session),
        cmocka_unit_test(test_pipe_hello_says_rekey_only_for_the_link_after_set_rekey),
        cmocka_unit_test(test_pipe_server_sends_no_node_to_a_client_that_did_not_ask),
        cmocka_unit_test(test_pipe_client_of_an_older_server_has_no_node),
        cmocka_unit_test(test_pipe_rejects_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
