/* test_state.c — the state file (state.h) and the pipe's and mux's save and load
 * (pipe_state.c, mux_state.c): the container's header and sections, refusals with reasons,
 * a pipe that resumes from its loaded replay bytes, a mux whose every corner (control frames
 * waiting for room, reset streams owing their RST, undrained events and records, bind frames
 * both ways, GOODBYE both ways) survives the trip.
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
#include "limpet/state.h"
#include "limpet/wire.h"
#include "state_check.h"

#define CAP (16u << 20)

static const struct lp_pipe_config PIPE_CFG = {
    .replay_buffer = 64u * 1024u,
    .ack_every = 4096,
    .ack_delay = 5,
    .heartbeat = 1000,
    .dead_after = 3000,
};

static const struct lp_mux_config MUX_CFG = {
    .stream_window = 64u * 1024u,
    .receive_buffer = 1u << 20,
    .max_streams = 200,
};

static const uint8_t SID[LP_SESSION_ID_LEN] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
static const uint8_t TOKEN[LP_TOKEN_LEN] = {0xAB, 0xCD, 0xEF, 1, 2, 3};

/* ---- the container ------------------------------------------------------------------------ */

static void test_state_sections_nest_and_read_back(void **state)
{
    (void)state;
    struct lp_state_wr w;
    struct lp_state_rd rd;
    struct lp_state_mark outer, inner;
    const uint8_t *file, *text;
    size_t len, n;
    char name[8];

    lp_state_wr_init(&w, CAP);
    lp_state_begin(&w);
    lp_state_section_begin(&w, LP_STATE_GLUE_FIRST);
    lp_state_put_u64(&w, 0x1122334455667788ull);
    lp_state_section_begin(&w, LP_STATE_GLUE_FIRST + 1);
    lp_state_put_text(&w, "hello", 5);
    lp_state_section_end(&w);
    lp_state_put_u16(&w, 7);
    lp_state_section_end(&w);
    assert_int_equal(lp_state_finish(&w, &file, &len), LP_OK);
    assert_int_equal(len, LP_STATE_HEADER + 6 + 8 + 6 + 7 + 2);
    assert_int_equal(lp_load_u32(file), LP_STATE_MAGIC);

    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    lp_state_enter(&rd, LP_STATE_GLUE_FIRST, &outer);
    assert_true(lp_state_u64(&rd) == 0x1122334455667788ull);
    lp_state_enter(&rd, LP_STATE_GLUE_FIRST + 1, &inner);
    text = lp_state_text(&rd, 16, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(text, "hello", 5);
    lp_state_leave(&rd, &inner);
    assert_int_equal(lp_state_u16(&rd), 7);
    lp_state_leave(&rd, &outer);
    assert_int_equal(lp_state_err(&rd), LP_OK);
    assert_true(lp_state_at_end(&rd));

    /* A field read past its section's end fails there, though the file goes on. */
    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    lp_state_enter(&rd, LP_STATE_GLUE_FIRST, &outer);
    (void)lp_state_u64(&rd);
    lp_state_enter(&rd, LP_STATE_GLUE_FIRST + 1, &inner);
    lp_state_cstr(&rd, name, 5, "a name"); /* 5 bytes do not fit with their NUL in 5 */
    assert_int_equal(lp_state_err(&rd), LP_ERR_TOO_BIG);
    assert_non_null(strstr(rd.why, "section 0x0101 (glue)"));
    lp_state_wr_clear(&w);
}

static void test_state_refuses_other_files_whole_with_a_reason(void **state)
{
    (void)state;
    struct lp_state_wr w;
    struct lp_state_rd rd;
    const uint8_t *file;
    uint8_t copy[64];
    size_t len;

    lp_state_wr_init(&w, CAP);
    lp_state_begin(&w);
    lp_state_section_begin(&w, LP_STATE_GLUE_FIRST);
    lp_state_put_u32(&w, 5);
    lp_state_section_end(&w);
    assert_int_equal(lp_state_finish(&w, &file, &len), LP_OK);
    assert_true(len < sizeof(copy));

    memcpy(copy, file, len);
    lp_store_u16(copy + 4, 3);
    assert_int_equal(lp_state_open(&rd, copy, len), LP_ERR_VERSION);
    assert_string_equal(rd.why, "state file version 3, this binary reads 1");

    memcpy(copy, file, len);
    copy[0] = 'X';
    assert_int_equal(lp_state_open(&rd, copy, len), LP_ERR_MALFORMED);
    assert_non_null(strstr(rd.why, "not a limpet state file"));

    memcpy(copy, file, len);
    lp_store_u16(copy + 6, 1);
    assert_int_equal(lp_state_open(&rd, copy, len), LP_ERR_MALFORMED);
    assert_non_null(strstr(rd.why, "flags"));

    memcpy(copy, file, len);
    copy[len] = 0;
    assert_int_equal(lp_state_open(&rd, copy, len + 1), LP_ERR_MALFORMED);
    assert_non_null(strstr(rd.why, "follow the state file's end"));

    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(lp_state_open(&rd, file, cut), LP_ERR_TRUNCATED);
        assert_true(rd.why[0] != '\0');
    }

    /* An unknown section is named in the refusal. */
    memcpy(copy, file, len);
    lp_store_u16(copy + LP_STATE_HEADER, 0x0007);
    assert_int_equal(lp_state_open(&rd, copy, len), LP_OK);
    struct lp_state_mark mark;
    lp_state_enter(&rd, LP_STATE_GLUE_FIRST, &mark);
    lp_state_leave(&rd, &mark);
    assert_int_equal(lp_state_err(&rd), LP_ERR_MALFORMED);
    assert_non_null(strstr(rd.why, "section 0x0007 (unknown)"));
    lp_state_wr_clear(&w);
}

static void test_state_writer_stops_at_its_cap(void **state)
{
    (void)state;
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len;
    uint8_t big[100] = {0};

    lp_state_wr_init(&w, 64);
    lp_state_begin(&w);
    lp_state_put_bytes(&w, big, sizeof(big));
    assert_int_equal(lp_state_finish(&w, &file, &len), LP_ERR_TOO_BIG);
    assert_null(file);
    lp_state_wr_clear(&w);

    lp_state_wr_init(&w, CAP);
    lp_state_section_begin(&w, 1); /* never closed */
    assert_int_equal(lp_state_finish(&w, &file, &len), LP_ERR_STATE);
    lp_state_wr_clear(&w);
}

static void test_state_reads_its_own_version_only(void **state)
{
    (void)state;
    assert_true(lp_state_reads(LP_STATE_VERSION));
    assert_false(lp_state_reads(LP_STATE_VERSION + 1));
    assert_false(lp_state_reads(0));
}

static void test_state_times_cross_as_ages(void **state)
{
    (void)state;
    assert_int_equal(lp_state_age(1000, 400), 600);
    assert_int_equal(lp_state_age(400, 1000), 0);
    assert_int_equal(lp_state_since(5000, 600), 4400);
    assert_int_equal(lp_state_since(100, 600), 0);
    assert_int_equal(lp_state_left(1000, 1500), 500);
    assert_int_equal(lp_state_left(1000, 900), 0);
    assert_true(lp_state_left(1000, LP_TIME_NEVER) == LP_TIME_NEVER);
    assert_int_equal(lp_state_due(7, 500), 507);
    assert_true(lp_state_due(7, LP_TIME_NEVER) == LP_TIME_NEVER);
}

/* ---- the pipe --------------------------------------------------------------------------- */

/* A server pipe that accepted a new session and holds `frames` DATA frames for replay. */
static lp_pipe *server_with_replay(int frames, lp_time now)
{
    lp_pipe *p;
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION};
    const char *why;
    uint64_t gen;
    uint8_t frame[LP_FRAME_MAX];
    uint8_t payload[700];

    assert_int_equal(lp_pipe_new(&PIPE_CFG, false, &p), LP_OK);
    lp_pipe_set_identity(p, SID, TOKEN);
    assert_int_equal(lp_pipe_accept(p, &h, now, &gen, &why), LP_OK);
    for (int i = 0; i < frames; i++) {
        memset(payload, 'a' + i % 26, sizeof(payload));
        size_t n = lp_data_encode(frame, sizeof(frame), 1, payload, 100 + (size_t)i * 3);
        assert_int_equal(lp_pipe_send_frame(p, frame, n), LP_OK);
    }
    return p;
}

static size_t save_pipe_file(const lp_pipe *p, lp_time now, struct lp_state_wr *w,
                             const uint8_t **file)
{
    size_t len;

    lp_state_wr_init(w, CAP);
    lp_state_begin(w);
    assert_int_equal(lp_pipe_save(p, w, now), LP_OK);
    assert_int_equal(lp_state_finish(w, file, &len), LP_OK);
    return len;
}

static void test_pipe_state_loads_detached_and_replays_from_the_clients_rx_seq(void **state)
{
    (void)state;
    lp_pipe *old = server_with_replay(40, 100), *p;
    struct lp_state_wr w;
    struct lp_state_rd rd;
    const uint8_t *file, *out;
    size_t len = save_pipe_file(old, 150, &w, &file);
    uint64_t gen, tx_seq = lp_pipe_tx_seq(old), from = 0;
    const char *why;
    struct lp_frame f;
    size_t used, n;
    struct lp_pipe_event ev;

    /* Where the client's rx_seq will be: the start of the 11th frame. */
    for (int i = 0; i < 10; i++)
        from += LP_FRAME_HEADER + 100 + (uint64_t)i * 3;
    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    assert_int_equal(lp_pipe_load(&rd, &PIPE_CFG, 90000, &p), LP_OK);
    assert_int_equal(lp_pipe_state(p), LP_PIPE_DETACHED);
    assert_int_equal(lp_pipe_tx_seq(p), tx_seq);
    assert_int_equal(lp_pipe_acked(p), 0);
    assert_int_equal(lp_pipe_generation(p), lp_pipe_generation(old));
    assert_memory_equal(lp_pipe_session_id(p), SID, LP_SESSION_ID_LEN);
    assert_memory_equal(lp_pipe_token(p), TOKEN, LP_TOKEN_LEN);
    assert_int_equal(lp_pipe_pending_output(p, &out), 0); /* no link: nothing goes out */
    assert_false(lp_pipe_next_event(p, &ev));

    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION, .rx_seq = from};
    memcpy(h.session_id, SID, LP_SESSION_ID_LEN);
    memcpy(h.token, TOKEN, LP_TOKEN_LEN);
    assert_int_equal(lp_pipe_accept(p, &h, 90000, &gen, &why), LP_OK);
    assert_int_equal(gen, lp_pipe_generation(old) + 1);
    /* WELCOME (resumed), then frames 10..39 exactly as they were sent. */
    n = lp_pipe_pending_output(p, &out);
    assert_int_equal(lp_frame_decode(out, n, &f, &used, &why), LP_OK);
    assert_int_equal(f.type, LP_FT_WELCOME);
    lp_pipe_output_sent(p, used, 90000);
    for (int i = 10; i < 40; i++) {
        n = lp_pipe_pending_output(p, &out);
        assert_int_equal(lp_frame_decode(out, n, &f, &used, &why), LP_OK);
        assert_int_equal(f.type, LP_FT_DATA);
        assert_int_equal(f.len, 100 + (size_t)i * 3);
        assert_int_equal(f.payload[0], 'a' + i % 26);
        lp_pipe_output_sent(p, used, 90000);
    }
    assert_int_equal(lp_pipe_pending_output(p, &out), 0);
    lp_pipe_free(p);
    lp_pipe_free(old);
    lp_state_wr_clear(&w);
}

static void test_pipe_state_refuses_a_resume_point_inside_a_frame(void **state)
{
    (void)state;
    lp_pipe *old = server_with_replay(3, 100), *p;
    struct lp_state_wr w;
    struct lp_state_rd rd;
    const uint8_t *file;
    size_t len = save_pipe_file(old, 100, &w, &file);
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION, .rx_seq = 5};
    const char *why = NULL;
    uint64_t gen;

    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    assert_int_equal(lp_pipe_load(&rd, &PIPE_CFG, 100, &p), LP_OK);
    assert_int_equal(lp_pipe_accept(p, &h, 100, &gen, &why), LP_ERR_SEQ);
    assert_non_null(strstr(why, "inside a frame"));
    lp_pipe_free(p);
    lp_pipe_free(old);
    lp_state_wr_clear(&w);
}

/* Loads, saves again (the same bytes must come out), frees. */
static lp_err load_pipe(struct lp_state_rd *rd, void *ctx)
{
    lp_pipe *p;
    struct lp_state_wr w;
    struct lp_state_rd again;
    const uint8_t *file;
    size_t len;
    lp_err rc = lp_pipe_load(rd, &PIPE_CFG, 1000, &p);

    (void)ctx;
    if (rc != LP_OK)
        return rc;
    len = save_pipe_file(p, 1000, &w, &file);
    assert_int_equal(lp_state_open(&again, file, len), LP_OK);
    lp_pipe_free(p);
    assert_int_equal(lp_pipe_load(&again, &PIPE_CFG, 1000, &p), LP_OK);
    lp_pipe_free(p);
    lp_state_wr_clear(&w);
    return LP_OK;
}

static void test_pipe_state_loader_refuses_every_cut_and_bad_byte_with_a_reason(void **state)
{
    (void)state;
    lp_pipe *p = server_with_replay(6, 100);
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len = save_pipe_file(p, 500, &w, &file);

    state_check_loader(file, len, load_pipe, NULL, 400);
    lp_pipe_free(p);
    lp_state_wr_clear(&w);
}

static void test_pipe_state_refuses_replay_bytes_that_are_not_whole_frames(void **state)
{
    (void)state;
    lp_pipe *p = server_with_replay(2, 100);
    struct lp_state_wr w;
    struct lp_state_rd rd;
    const uint8_t *file;
    size_t len = save_pipe_file(p, 100, &w, &file);
    uint8_t *copy = malloc(len);
    /* The replay bytes are the body's last tx_seq - acked bytes: the first frame's length. */
    size_t first = len - (size_t)lp_pipe_tx_seq(p);
    lp_pipe *q;

    assert_non_null(copy);
    memcpy(copy, file, len);
    lp_store_u16(copy + first + 2, 99); /* the first frame now claims 99 bytes, not 100 */
    assert_int_equal(lp_state_open(&rd, copy, len), LP_OK);
    assert_int_equal(lp_pipe_load(&rd, &PIPE_CFG, 100, &q), LP_ERR_MALFORMED);
    assert_non_null(strstr(rd.why, "replay frame"));

    memcpy(copy, file, len);
    copy[first] = LP_FT_ACK; /* not a sequenced frame */
    assert_int_equal(lp_state_open(&rd, copy, len), LP_OK);
    assert_int_equal(lp_pipe_load(&rd, &PIPE_CFG, 100, &q), LP_ERR_MALFORMED);
    free(copy);
    lp_pipe_free(p);
    lp_state_wr_clear(&w);
}

/* ---- the mux ------------------------------------------------------------------------------ */

/* Feeds one encoded frame to the mux as if the pipe had handed it up. */
static void feed(lp_mux *m, const uint8_t *buf, size_t n)
{
    struct lp_frame f;
    size_t used;
    const char *why = NULL;

    assert_int_equal(lp_frame_decode(buf, n, &f, &used, &why), LP_OK);
    assert_int_equal(lp_mux_recv(m, &f, &why), LP_OK);
}

static void peer_open(lp_mux *m, uint32_t id, uint8_t kind, const char *target, const char *arg)
{
    uint8_t buf[LP_FRAME_MAX];
    struct lp_open o = {.kind = kind,
                        .window = 32768,
                        .target = (const uint8_t *)target,
                        .target_len = strlen(target),
                        .arg = (const uint8_t *)arg,
                        .arg_len = strlen(arg)};

    feed(m, buf, lp_open_encode(buf, sizeof(buf), id, &o));
}

static void peer_text(lp_mux *m, uint8_t type, uint32_t id, uint16_t code, const char *msg)
{
    uint8_t buf[LP_FRAME_MAX];

    feed(m, buf, lp_text_encode(buf, sizeof(buf), type, id, code, msg, strlen(msg)));
}

static void drain_one(lp_mux *m, enum lp_mux_event_type type, uint32_t id)
{
    struct lp_mux_event ev;

    assert_true(lp_mux_next_event(m, &ev));
    assert_int_equal(ev.type, type);
    assert_int_equal(ev.id, id);
}

/* A server mux with something in every corner of its state. */
static lp_mux *rich_mux(lp_pipe **pp)
{
    lp_pipe *p;
    lp_mux *m;
    uint8_t buf[LP_FRAME_MAX];
    char target[1025];
    uint32_t id;
    size_t taken;

    assert_int_equal(lp_pipe_new(&PIPE_CFG, false, &p), LP_OK);
    lp_pipe_set_identity(p, SID, TOKEN);
    assert_int_equal(lp_mux_new(&MUX_CFG, p, false, &m), LP_OK);
    peer_open(m, 1, LP_KIND_TCP, "db:5432", "");
    drain_one(m, LP_MUX_EV_OPEN, 1);
    assert_int_equal(lp_mux_accept(m, 1), LP_OK);
    feed(m, buf, lp_data_encode(buf, sizeof(buf), 1, (const uint8_t *)"hello", 5));
    peer_open(m, 5, LP_KIND_TCP, "web:80", "");
    drain_one(m, LP_MUX_EV_READABLE, 1);
    drain_one(m, LP_MUX_EV_OPEN, 5);
    assert_int_equal(lp_mux_accept(m, 5), LP_OK);
    feed(m, buf, lp_empty_encode(buf, sizeof(buf), LP_FT_FIN, 5)); /* FIN event, undrained */
    peer_open(m, 7, LP_KIND_STDIO, "host:22", "");
    drain_one(m, LP_MUX_EV_FIN, 5);
    drain_one(m, LP_MUX_EV_OPEN, 7);
    assert_int_equal(lp_mux_accept(m, 7), LP_OK);
    peer_text(m, LP_FT_RST, 7, LP_RST_REFUSED, "refused over there"); /* a record */
    peer_open(m, 9, LP_KIND_MCP, "browser", "work");                  /* an OPEN event, undrained */
    feed(m, buf, lp_data_encode(buf, sizeof(buf), 1, (const uint8_t *)" world", 6));
    assert_int_equal(lp_mux_open(m, LP_KIND_REVERSE, "0.0.0.0:8080", 12, NULL, 0, &id), LP_OK);
    assert_int_equal(id, 2);
    feed(m, buf, lp_u32_encode(buf, sizeof(buf), LP_FT_OPEN_OK, 2, 1000));
    assert_int_equal(lp_mux_send(m, 2, (const uint8_t *)"xyz", 3, &taken), LP_OK);
    assert_int_equal(lp_mux_open(m, LP_KIND_TCP, "t:4", 3, NULL, 0, &id), LP_OK);
    assert_int_equal(lp_mux_shutdown(m, id), LP_OK);
    assert_int_equal(lp_mux_bind(m, 101, "127.0.0.1:2222", 14), LP_OK);
    peer_text(m, LP_FT_BIND, 11, 0, "127.0.0.1:22");
    peer_text(m, LP_FT_BIND_FAIL, 101, LP_RST_NOT_ALLOWED, "no");
    peer_text(m, LP_FT_GOODBYE, 0, LP_GOODBYE_SHUTDOWN, "see you");
    /* Fill the pipe with OPENs until control frames wait for room. */
    memset(target, 't', 1024);
    target[1024] = '\0';
    for (int i = 0; i < 70; i++)
        assert_int_equal(lp_mux_open(m, LP_KIND_TCP, target, 1024, target, 1024, &id), LP_OK);
    lp_mux_reset(m, 6, LP_RST_RESET, "reset while the pipe is full"); /* a zombie */
    assert_int_equal(lp_mux_bind_ok(m, 11, 2222, "127.0.0.1", 9), LP_OK);
    lp_mux_goodbye(m, LP_GOODBYE_NORMAL, "bye");
    *pp = p;
    return m;
}

static size_t save_session(const lp_pipe *p, const lp_mux *m, struct lp_state_wr *w,
                           const uint8_t **file)
{
    size_t len;

    lp_state_wr_init(w, CAP);
    lp_state_begin(w);
    assert_int_equal(lp_pipe_save(p, w, 10), LP_OK);
    assert_int_equal(lp_mux_save(m, w), LP_OK);
    assert_int_equal(lp_state_finish(w, file, &len), LP_OK);
    return len;
}

static void load_session(const uint8_t *file, size_t len, lp_pipe **p, lp_mux **m)
{
    struct lp_state_rd rd;

    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    if (lp_pipe_load(&rd, &PIPE_CFG, 10, p) != LP_OK || lp_mux_load(&rd, &MUX_CFG, *p, m) != LP_OK)
        fail_msg("refused: %s", rd.why);
    assert_true(lp_state_at_end(&rd));
}

/* Every event either mux hands out, in order, must be the same. */
static void expect_same_events(lp_mux *a, lp_mux *b)
{
    struct lp_mux_event x, y;
    int n = 0;

    while (lp_mux_next_event(a, &x)) {
        assert_true(lp_mux_next_event(b, &y));
        assert_int_equal(x.type, y.type);
        assert_int_equal(x.id, y.id);
        assert_int_equal(x.kind, y.kind);
        assert_int_equal(x.code, y.code);
        assert_int_equal(x.text_len, y.text_len);
        assert_int_equal(x.arg_len, y.arg_len);
        if (x.text_len > 0)
            assert_memory_equal(x.text, y.text, x.text_len);
        if (x.arg_len > 0)
            assert_memory_equal(x.arg, y.arg, x.arg_len);
        n++;
    }
    assert_false(lp_mux_next_event(b, &y));
    assert_true(n >= 6); /* READABLE, OPEN, RST, CLOSED..., BIND, BIND_FAIL, GOODBYE */
}

static void test_mux_state_round_trips_every_corner(void **state)
{
    (void)state;
    lp_pipe *p, *p2;
    lp_mux *m = rich_mux(&p), *m2;
    struct lp_state_wr w, w2;
    const uint8_t *file, *file2;
    size_t len = save_session(p, m, &w, &file), len2;
    const uint8_t *data;

    load_session(file, len, &p2, &m2);
    len2 = save_session(p2, m2, &w2, &file2);
    assert_int_equal(len2, len);
    assert_memory_equal(file2, file, len);
    assert_int_equal(lp_mux_stream_count(m2), lp_mux_stream_count(m));
    assert_int_equal(lp_mux_recv_buffered(m2, 1), 11);
    assert_int_equal(lp_mux_recv_peek(m2, 1, &data), 11); /* the peer's two DATA frames */
    assert_memory_equal(data, "hello world", 11);
    assert_null(lp_mux_user(m2, 1));
    expect_same_events(m, m2);
    lp_mux_free(m2);
    lp_pipe_free(p2);
    lp_mux_free(m);
    lp_pipe_free(p);
    lp_state_wr_clear(&w);
    lp_state_wr_clear(&w2);
}

static lp_err load_mux(struct lp_state_rd *rd, void *ctx)
{
    lp_pipe *p;
    lp_mux *m;
    lp_err rc;

    (void)ctx;
    assert_int_equal(lp_pipe_new(&PIPE_CFG, false, &p), LP_OK);
    if ((rc = lp_mux_load(rd, &MUX_CFG, p, &m)) == LP_OK) {
        /* Whatever was taken must work: drain it, flush it, end it. */
        struct lp_mux_event ev;
        for (int i = 0; i < 1000 && lp_mux_next_event(m, &ev); i++)
            ;
        lp_mux_flush(m);
        lp_mux_reset_all(m, LP_RST_SHUTDOWN, "done");
        while (lp_mux_next_event(m, &ev))
            ;
        lp_mux_free(m);
    }
    lp_pipe_free(p);
    return rc;
}

static void test_mux_state_loader_refuses_every_cut_and_bad_byte_with_a_reason(void **state)
{
    (void)state;
    lp_pipe *p;
    lp_mux *m = rich_mux(&p);
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len;

    lp_state_wr_init(&w, CAP);
    lp_state_begin(&w);
    assert_int_equal(lp_mux_save(m, &w), LP_OK);
    assert_int_equal(lp_state_finish(&w, &file, &len), LP_OK);
    state_check_loader(file, len, load_mux, NULL, 3000);
    lp_mux_free(m);
    lp_pipe_free(p);
    lp_state_wr_clear(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_sections_nest_and_read_back),
        cmocka_unit_test(test_state_refuses_other_files_whole_with_a_reason),
        cmocka_unit_test(test_state_writer_stops_at_its_cap),
        cmocka_unit_test(test_state_reads_its_own_version_only),
        cmocka_unit_test(test_state_times_cross_as_ages),
        cmocka_unit_test(test_pipe_state_loads_detached_and_replays_from_the_clients_rx_seq),
        cmocka_unit_test(test_pipe_state_refuses_a_resume_point_inside_a_frame),
        cmocka_unit_test(test_pipe_state_loader_refuses_every_cut_and_bad_byte_with_a_reason),
        cmocka_unit_test(test_pipe_state_refuses_replay_bytes_that_are_not_whole_frames),
        cmocka_unit_test(test_mux_state_round_trips_every_corner),
        cmocka_unit_test(test_mux_state_loader_refuses_every_cut_and_bad_byte_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
