/* test_frame.c — the frame codec (frame.h): round trips, every rejection rule, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/wire.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint8_t out[LP_FRAME_MAX + 16];

/* Decodes exactly one whole frame from a heap copy of exactly n bytes (so ASan sees any
 * overrun) and insists it is accepted and consumes all n bytes. The payload view points into
 * the copy, which is kept until the next call. */
static uint8_t *held;

static struct lp_frame decode_ok(const uint8_t *buf, size_t n)
{
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;

    free(held);
    held = malloc(n ? n : 1);
    assert_non_null(held);
    memcpy(held, buf, n);
    lp_err rc = lp_frame_decode(held, n, &f, &used, &why);
    if (rc != LP_OK)
        fail_msg("decode failed: %d (%s)", rc, why ? why : "no reason");
    assert_int_equal(used, n);
    return f;
}

/* Expects lp_frame_decode to refuse buf[0..n) as malformed, with a reason. */
static void expect_malformed(const uint8_t *buf, size_t n)
{
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;
    uint8_t *copy = malloc(n ? n : 1);

    assert_non_null(copy);
    memcpy(copy, buf, n);
    assert_int_equal(lp_frame_decode(copy, n, &f, &used, &why), LP_ERR_MALFORMED);
    assert_non_null(why);
    assert_true(strlen(why) > 0);
    free(copy);
}

/* Builds header + payload into out and returns the size. */
static size_t raw_frame(uint8_t type, uint8_t flags, uint16_t len, uint32_t id, const void *payload,
                        size_t payload_len)
{
    lp_frame_put_header(out, type, flags, len, id);
    if (payload_len)
        memcpy(out + LP_FRAME_HEADER, payload, payload_len);
    return LP_FRAME_HEADER + payload_len;
}

static void fill_text(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
}

/* ---- round trips ---------------------------------------------------------------------- */

static void check_open_round_trip(uint32_t id, const struct lp_open *o)
{
    size_t n = lp_open_encode(out, sizeof(out), id, o);
    assert_int_equal(n, LP_FRAME_HEADER + 7 + o->target_len + o->arg_len);
    struct lp_frame f = decode_ok(out, n);
    struct lp_open got;
    const char *why = NULL;

    assert_int_equal(f.type, LP_FT_OPEN);
    assert_int_equal(f.stream_id, id);
    assert_int_equal(lp_open_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.kind, o->kind);
    assert_int_equal(got.window, o->window);
    assert_int_equal(got.target_len, o->target_len);
    assert_memory_equal(got.target, o->target, o->target_len);
    assert_int_equal(got.arg_len, o->arg_len);
    if (o->arg_len)
        assert_memory_equal(got.arg, o->arg, o->arg_len);
}

static void test_frame_open_round_trips_every_kind(void **state)
{
    (void)state;
    struct lp_open o = {
        .window = 262144, .target = (const uint8_t *)"example.org:443", .target_len = 15};
    for (uint8_t kind = LP_KIND_TCP; kind <= LP_KIND_REVERSE; kind++) {
        o.kind = kind;
        check_open_round_trip(1, &o);
    }
    o.kind = LP_KIND_MCP;
    o.target = (const uint8_t *)"browser";
    o.target_len = 7;
    o.arg = (const uint8_t *)"work";
    o.arg_len = 4;
    check_open_round_trip(0xFFFFFFFFu, &o);
}

static void test_frame_open_round_trips_max_target_and_arg(void **state)
{
    (void)state;
    static char target[LP_FRAME_MAX_TEXT], arg[LP_FRAME_MAX_TEXT];
    fill_text(target, sizeof(target));
    fill_text(arg, sizeof(arg));
    struct lp_open o = {.kind = LP_KIND_MCP,
                        .window = 0xFFFFFFFFu,
                        .target = (const uint8_t *)target,
                        .target_len = sizeof(target),
                        .arg = (const uint8_t *)arg,
                        .arg_len = sizeof(arg)};
    check_open_round_trip(2, &o);
    o.window = 1;
    o.target_len = 1;
    o.arg_len = 0;
    check_open_round_trip(3, &o);
}

static void test_frame_open_ok_and_window_round_trip(void **state)
{
    (void)state;
    static const uint8_t types[] = {LP_FT_OPEN_OK, LP_FT_WINDOW};
    static const uint32_t values[] = {1, 65536, 0xFFFFFFFFu};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            size_t n = lp_u32_encode(out, sizeof(out), types[t], 7, values[i]);
            assert_int_equal(n, 12);
            struct lp_frame f = decode_ok(out, n);
            uint32_t v = 0;
            const char *why = NULL;
            assert_int_equal(f.type, types[t]);
            assert_int_equal(f.stream_id, 7);
            assert_int_equal(lp_u32_decode(&f, &v, &why), LP_OK);
            assert_int_equal(v, values[i]);
        }
    }
}

static void test_frame_data_round_trips_one_byte_and_max_payload(void **state)
{
    (void)state;
    static uint8_t data[LP_FRAME_MAX_PAYLOAD];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    static const size_t sizes[] = {1, 2, 1000, LP_FRAME_MAX_PAYLOAD};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = lp_data_encode(out, sizeof(out), 9, data, sizes[i]);
        assert_int_equal(n, LP_FRAME_HEADER + sizes[i]);
        struct lp_frame f = decode_ok(out, n);
        assert_int_equal(f.type, LP_FT_DATA);
        assert_int_equal(f.stream_id, 9);
        assert_int_equal(f.len, sizes[i]);
        assert_memory_equal(f.payload, data, sizes[i]);
    }
}

static void test_frame_fin_round_trips(void **state)
{
    (void)state;
    size_t n = lp_empty_encode(out, sizeof(out), LP_FT_FIN, 4);
    assert_int_equal(n, LP_FRAME_HEADER);
    struct lp_frame f = decode_ok(out, n);
    assert_int_equal(f.type, LP_FT_FIN);
    assert_int_equal(f.stream_id, 4);
    assert_int_equal(f.len, 0);
}

static void test_frame_text_frames_round_trip_empty_and_max_messages(void **state)
{
    (void)state;
    static const uint8_t types[] = {LP_FT_RST,       LP_FT_BIND,    LP_FT_BIND_OK,
                                    LP_FT_BIND_FAIL, LP_FT_GOODBYE, LP_FT_REJECT};
    static char msg[LP_FRAME_MAX_TEXT];
    fill_text(msg, sizeof(msg));
    static const size_t lens[] = {0, 1, 17, LP_FRAME_MAX_TEXT};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        uint32_t id = (types[t] == LP_FT_GOODBYE || types[t] == LP_FT_REJECT) ? 0 : 5;
        for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
            uint16_t code = (uint16_t)(0xFFFF - i);
            size_t n = lp_text_encode(out, sizeof(out), types[t], id, code, msg, lens[i]);
            assert_int_equal(n, LP_FRAME_HEADER + 2 + lens[i]);
            struct lp_frame f = decode_ok(out, n);
            struct lp_text txt;
            const char *why = NULL;
            assert_int_equal(f.type, types[t]);
            assert_int_equal(f.stream_id, id);
            assert_int_equal(lp_text_decode(&f, &txt, &why), LP_OK);
            assert_int_equal(txt.code, code);
            assert_int_equal(txt.msg_len, lens[i]);
            if (lens[i])
                assert_memory_equal(txt.msg, msg, lens[i]);
        }
    }
}

static void test_frame_text_encode_accepts_null_empty_message(void **state)
{
    (void)state;
    size_t n = lp_text_encode(out, sizeof(out), LP_FT_GOODBYE, 0, LP_GOODBYE_NORMAL, NULL, 0);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "\x0A\x00\x00\x02\x00\x00\x00\x00\x00\x00", 10);
}

static void test_frame_link_frames_round_trip_u64(void **state)
{
    (void)state;
    static const uint8_t types[] = {LP_FT_ACK, LP_FT_PING, LP_FT_PONG};
    static const uint64_t values[] = {0, 1, 0x0123456789ABCDEFull, UINT64_MAX};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (size_t i = 0; i < ARRAY_LEN(values); i++) {
            size_t n = lp_u64_encode(out, sizeof(out), types[t], values[i]);
            assert_int_equal(n, 16);
            struct lp_frame f = decode_ok(out, n);
            uint64_t v = 1;
            const char *why = NULL;
            assert_int_equal(f.type, types[t]);
            assert_int_equal(f.stream_id, 0);
            assert_int_equal(lp_u64_decode(&f, &v, &why), LP_OK);
            assert_true(v == values[i]);
        }
    }
}

static struct lp_hello sample_hello(void)
{
    struct lp_hello h = {.magic = LP_PROTO_MAGIC,
                         .version = LP_PROTO_VERSION,
                         .flags = 0,
                         .rx_seq = 0x1122334455667788ull};
    for (size_t i = 0; i < LP_SESSION_ID_LEN; i++)
        h.session_id[i] = (uint8_t)(0xA0 + i);
    for (size_t i = 0; i < LP_TOKEN_LEN; i++)
        h.token[i] = (uint8_t)(0x30 + i);
    return h;
}

static void test_frame_hello_round_trips(void **state)
{
    (void)state;
    struct lp_hello h = sample_hello();
    size_t n = lp_hello_encode(out, sizeof(out), &h);
    assert_int_equal(n, LP_FRAME_HEADER + 64);
    struct lp_frame f = decode_ok(out, n);
    struct lp_hello got;
    const char *why = NULL;
    assert_int_equal(f.type, LP_FT_HELLO);
    assert_int_equal(lp_hello_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.magic, LP_PROTO_MAGIC);
    assert_int_equal(got.version, h.version);
    assert_int_equal(got.flags, h.flags);
    assert_memory_equal(got.session_id, h.session_id, LP_SESSION_ID_LEN);
    assert_memory_equal(got.token, h.token, LP_TOKEN_LEN);
    assert_true(got.rx_seq == h.rx_seq);
}

static void test_frame_hello_layout_matches_literal_bytes(void **state)
{
    (void)state;
    struct lp_hello h = sample_hello();
    h.magic = 0; /* the encoder always writes LP_PROTO_MAGIC */
    h.version = 0x0102;
    h.flags = 0x0304;
    size_t n = lp_hello_encode(out, sizeof(out), &h);
    assert_int_equal(n, 72);
    assert_memory_equal(out, "\x50\x00\x00\x40\x00\x00\x00\x00", 8);
    assert_memory_equal(out + 8, "LMPT\x01\x02\x03\x04", 8);
    assert_memory_equal(out + 16, h.session_id, 16);
    assert_memory_equal(out + 32, h.token, 32);
    assert_memory_equal(out + 64, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
}

static void test_frame_hello_decode_returns_any_version(void **state)
{
    (void)state;
    struct lp_hello h = sample_hello();
    h.version = 0xBEEF;
    size_t n = lp_hello_encode(out, sizeof(out), &h);
    struct lp_frame f = decode_ok(out, n);
    struct lp_hello got;
    const char *why = NULL;
    assert_int_equal(lp_hello_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.version, 0xBEEF);
}

static void test_frame_welcome_round_trips(void **state)
{
    (void)state;
    struct lp_welcome w = {.version = LP_PROTO_VERSION,
                           .flags = LP_WELCOME_RESUMED,
                           .rx_seq = UINT64_MAX - 1,
                           .heartbeat_ms = 2000,
                           .dead_after_ms = 0xFFFFFFFFu};
    memset(w.session_id, 0x5A, sizeof(w.session_id));
    memset(w.token, 0xC3, sizeof(w.token));
    size_t n = lp_welcome_encode(out, sizeof(out), &w);
    assert_int_equal(n, LP_FRAME_HEADER + 68);
    assert_memory_equal(out, "\x51\x00\x00\x44\x00\x00\x00\x00\x00\x01\x00\x01", 12);
    struct lp_frame f = decode_ok(out, n);
    struct lp_welcome got;
    const char *why = NULL;
    assert_int_equal(lp_welcome_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.version, w.version);
    assert_int_equal(got.flags, w.flags);
    assert_memory_equal(got.session_id, w.session_id, LP_SESSION_ID_LEN);
    assert_memory_equal(got.token, w.token, LP_TOKEN_LEN);
    assert_true(got.rx_seq == w.rx_seq);
    assert_int_equal(got.heartbeat_ms, 2000);
    assert_int_equal(got.dead_after_ms, 0xFFFFFFFFu);
}

static void test_frame_welcome_carries_the_node_id_only_with_its_flag(void **state)
{
    (void)state;
    struct lp_welcome w = {.version = LP_PROTO_VERSION,
                           .flags = LP_WELCOME_RESUMED | LP_WELCOME_NODE,
                           .rx_seq = 77,
                           .heartbeat_ms = 2000,
                           .dead_after_ms = 6000,
                           .node = (const uint8_t *)"edge-3",
                           .node_len = 6};
    memset(w.session_id, 0x5A, sizeof(w.session_id));
    size_t n = lp_welcome_encode(out, sizeof(out), &w);
    assert_int_equal(n, LP_FRAME_HEADER + 68 + 1 + 6);
    assert_memory_equal(out, "\x51\x00\x00\x4B\x00\x00\x00\x00\x00\x01\x00\x03", 12);
    assert_memory_equal(out + LP_FRAME_HEADER + 68,
                        "\x06"
                        "edge-3",
                        7);
    struct lp_frame f = decode_ok(out, n);
    struct lp_welcome got;
    const char *why = NULL;
    assert_int_equal(lp_welcome_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.node_len, 6);
    assert_memory_equal(got.node, "edge-3", 6);
    assert_true(got.rx_seq == 77);

    /* without the flag the node is not sent, and WELCOME stays the 68 bytes old peers check */
    w.flags = LP_WELCOME_RESUMED;
    assert_int_equal(lp_welcome_encode(out, sizeof(out), &w), LP_FRAME_HEADER + 68);
    f = decode_ok(out, LP_FRAME_HEADER + 68);
    assert_int_equal(lp_welcome_decode(&f, &got, &why), LP_OK);
    assert_int_equal(got.node_len, 0);
    assert_null(got.node);
}

static void test_frame_welcome_refuses_a_bad_node_id(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",    "Edge", "a.b",
        "a_b", "a b",  "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct lp_welcome w = {.version = 1,
                               .flags = LP_WELCOME_NODE,
                               .node = (const uint8_t *)bad[i],
                               .node_len = strlen(bad[i])};
        assert_int_equal(lp_welcome_encode(out, sizeof(out), &w), 0);
        assert_false(lp_node_id_ok((const uint8_t *)bad[i], strlen(bad[i])));
    }
    assert_true(lp_node_id_ok((const uint8_t *)"a", 1));
    assert_true(lp_node_id_ok((const uint8_t *)bad[5], 63));

    /* a decoder meets the same ids from a peer, and node_len that does not fill the payload */
    uint8_t p[68 + 1 + 64] = {0};
    p[3] = LP_WELCOME_NODE;
    struct {
        size_t len;
        uint8_t node_len;
        const char *node;
    } cases[] = {{69, 0, ""}, {73, 4, "Edge"}, {72, 4, "edg"}, {74, 4, "edge-"}, {71, 3, "a.b"}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        p[68] = cases[i].node_len;
        memcpy(p + 69, cases[i].node, strlen(cases[i].node));
        struct lp_frame f = {.type = LP_FT_WELCOME, .payload = p, .len = cases[i].len};
        struct lp_welcome got;
        const char *why = NULL;
        assert_int_equal(lp_welcome_decode(&f, &got, &why), LP_ERR_MALFORMED);
        assert_non_null(why);
    }
    /* the envelope: 68..132 bytes */
    uint8_t hdr[4] = {LP_FT_WELCOME, 0, 0, 67};
    expect_malformed(hdr, 4);
    hdr[3] = 133;
    expect_malformed(hdr, 4);
}

static void test_frame_header_layout_is_big_endian(void **state)
{
    (void)state;
    uint8_t h[LP_FRAME_HEADER];
    lp_frame_put_header(h, 0x03, 0x00, 0x1234, 0x89ABCDEFu);
    assert_memory_equal(h, "\x03\x00\x12\x34\x89\xAB\xCD\xEF", 8);
    size_t n = lp_u32_encode(out, sizeof(out), LP_FT_WINDOW, 0x01020304u, 0x0A0B0C0Du);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "\x04\x00\x00\x04\x01\x02\x03\x04\x0A\x0B\x0C\x0D", 12);
}

static void test_frame_decode_reports_used_and_leaves_following_bytes(void **state)
{
    (void)state;
    size_t a = lp_data_encode(out, sizeof(out), 1, (const uint8_t *)"abc", 3);
    size_t b = lp_empty_encode(out + a, sizeof(out) - a, LP_FT_FIN, 1);
    size_t c = lp_u64_encode(out + a + b, sizeof(out) - a - b, LP_FT_ACK, 42);
    size_t total = a + b + c;
    struct lp_frame f;
    size_t used, off = 0;
    const char *why = NULL;
    uint8_t want[] = {LP_FT_DATA, LP_FT_FIN, LP_FT_ACK};

    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        assert_int_equal(lp_frame_decode(out + off, total - off, &f, &used, &why), LP_OK);
        assert_int_equal(f.type, want[i]);
        off += used;
    }
    assert_int_equal(off, total);
    assert_int_equal(lp_frame_decode(out + off, 0, &f, &used, &why), LP_ERR_TRUNCATED);
}

/* ---- envelope rejections -------------------------------------------------------------- */

static int known_type(unsigned t)
{
    return (t >= 0x01 && t <= 0x0A) || (t >= 0x40 && t <= 0x42) || (t >= 0x50 && t <= 0x52);
}

static void test_frame_rejects_unknown_type_after_first_byte(void **state)
{
    (void)state;
    for (unsigned t = 0; t < 256; t++) {
        uint8_t b = (uint8_t)t;
        struct lp_frame f;
        size_t used;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(&b, 1, &f, &used, &why);
        if (known_type(t)) {
            assert_int_equal(rc, LP_ERR_TRUNCATED);
            assert_string_not_equal(lp_frame_type_name(b), "?");
        } else {
            assert_int_equal(rc, LP_ERR_MALFORMED);
            assert_non_null(why);
            assert_string_equal(lp_frame_type_name(b), "?");
        }
    }
}

static void test_frame_rejects_http_and_tls_probes_at_once(void **state)
{
    (void)state;
    expect_malformed((const uint8_t *)"GET / HTTP/1.1\r\n", 16);
    expect_malformed((const uint8_t *)"\x16\x03\x01\x02\x00", 5);
    expect_malformed((const uint8_t *)"SSH-2.0-OpenSSH", 1);
}

static void test_frame_rejects_nonzero_flags_after_second_byte(void **state)
{
    (void)state;
    static const uint8_t types[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                    0x09, 0x0A, 0x40, 0x41, 0x42, 0x50, 0x51, 0x52};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        for (unsigned flags = 1; flags < 256; flags <<= 1) {
            uint8_t b[2] = {types[t], (uint8_t)flags};
            expect_malformed(b, 2);
        }
        uint8_t ok[2] = {types[t], 0};
        struct lp_frame f;
        size_t used;
        const char *why;
        assert_int_equal(lp_frame_decode(ok, 2, &f, &used, &why), LP_ERR_TRUNCATED);
    }
}

static void test_frame_rejects_length_beyond_max_after_fourth_byte(void **state)
{
    (void)state;
    uint8_t b[4] = {LP_FT_DATA, 0, 0x40, 0x01}; /* 16385 */
    expect_malformed(b, 4);
    b[2] = 0xFF;
    b[3] = 0xFF;
    expect_malformed(b, 4);
    b[2] = 0x40;
    b[3] = 0x00; /* exactly 16384: still waiting for the rest */
    struct lp_frame f;
    size_t used;
    const char *why;
    assert_int_equal(lp_frame_decode(b, 4, &f, &used, &why), LP_ERR_TRUNCATED);
}

static void test_frame_rejects_wrong_size_for_fixed_size_types(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint16_t size;
    } fixed[] = {{LP_FT_OPEN_OK, 4}, {LP_FT_WINDOW, 4}, {LP_FT_FIN, 0},   {LP_FT_ACK, 8},
                 {LP_FT_PING, 8},    {LP_FT_PONG, 8},   {LP_FT_HELLO, 64}};
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++) {
        uint16_t wrong[] = {(uint16_t)(fixed[i].size + 1), (uint16_t)(fixed[i].size - 1), 0,
                            (uint16_t)LP_FRAME_MAX_PAYLOAD};
        for (size_t w = 0; w < ARRAY_LEN(wrong); w++) {
            if (wrong[w] == fixed[i].size)
                continue;
            uint8_t b[4] = {fixed[i].type, 0, (uint8_t)(wrong[w] >> 8), (uint8_t)wrong[w]};
            expect_malformed(b, 4);
        }
    }
}

static void test_frame_rejects_empty_data(void **state)
{
    (void)state;
    size_t n = raw_frame(LP_FT_DATA, 0, 0, 1, NULL, 0);
    expect_malformed(out, 4);
    expect_malformed(out, n);
}

static void test_frame_rejects_text_frame_shorter_than_code_or_longer_than_cap(void **state)
{
    (void)state;
    static const uint8_t types[] = {LP_FT_RST,       LP_FT_BIND,    LP_FT_BIND_OK,
                                    LP_FT_BIND_FAIL, LP_FT_GOODBYE, LP_FT_REJECT};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        uint16_t bad[] = {0, 1, 2 + LP_FRAME_MAX_TEXT + 1, LP_FRAME_MAX_PAYLOAD};
        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            uint8_t b[4] = {types[t], 0, (uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
            expect_malformed(b, 4);
        }
    }
}

static void test_frame_rejects_open_shorter_than_minimum_or_longer_than_cap(void **state)
{
    (void)state;
    static const uint16_t bad[] = {0, 1, 7, 7 + 2 * LP_FRAME_MAX_TEXT + 1};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        uint8_t b[4] = {LP_FT_OPEN, 0, (uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        expect_malformed(b, 4);
    }
}

static void test_frame_rejects_zero_stream_id_on_stream_frames(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint16_t len;
    } stream[] = {{LP_FT_OPEN, 8},   {LP_FT_OPEN_OK, 4}, {LP_FT_DATA, 1},
                  {LP_FT_WINDOW, 4}, {LP_FT_FIN, 0},     {LP_FT_RST, 2},
                  {LP_FT_BIND, 2},   {LP_FT_BIND_OK, 2}, {LP_FT_BIND_FAIL, 2}};
    for (size_t i = 0; i < ARRAY_LEN(stream); i++) {
        raw_frame(stream[i].type, 0, stream[i].len, 0, NULL, 0);
        expect_malformed(out, LP_FRAME_HEADER);
    }
}

static void test_frame_rejects_nonzero_stream_id_on_link_frames(void **state)
{
    (void)state;
    static const struct {
        uint8_t type;
        uint16_t len;
    } link[] = {{LP_FT_GOODBYE, 2}, {LP_FT_ACK, 8},      {LP_FT_PING, 8},  {LP_FT_PONG, 8},
                {LP_FT_HELLO, 64},  {LP_FT_WELCOME, 68}, {LP_FT_REJECT, 2}};
    for (size_t i = 0; i < ARRAY_LEN(link); i++) {
        raw_frame(link[i].type, 0, link[i].len, 1, NULL, 0);
        expect_malformed(out, LP_FRAME_HEADER);
        raw_frame(link[i].type, 0, link[i].len, 0x80000000u, NULL, 0);
        expect_malformed(out, LP_FRAME_HEADER);
    }
}

/* ---- payload rejections --------------------------------------------------------------- */

/* Builds an OPEN frame by hand so fields the encoder refuses can be put on the wire. */
static size_t raw_open(uint8_t kind, uint32_t window, uint16_t target_len, const void *rest,
                       size_t rest_len)
{
    uint8_t payload[LP_FRAME_MAX_PAYLOAD];
    struct lp_wr w = lp_wr_init(payload, sizeof(payload));
    lp_wr_u8(&w, kind);
    lp_wr_u32(&w, window);
    lp_wr_u16(&w, target_len);
    lp_wr_bytes(&w, rest, rest_len);
    assert_false(w.bad);
    return raw_frame(LP_FT_OPEN, 0, (uint16_t)w.off, 1, payload, w.off);
}

static void expect_open_malformed(size_t n)
{
    struct lp_frame f = decode_ok(out, n);
    struct lp_open o;
    const char *why = NULL;
    assert_int_equal(lp_open_decode(&f, &o, &why), LP_ERR_MALFORMED);
    assert_non_null(why);
}

static void test_frame_open_rejects_unknown_kind(void **state)
{
    (void)state;
    expect_open_malformed(raw_open(0, 1, 1, "x", 1));
    expect_open_malformed(raw_open(5, 1, 1, "x", 1));
    expect_open_malformed(raw_open(0xFF, 1, 1, "x", 1));
}

static void test_frame_open_rejects_zero_window(void **state)
{
    (void)state;
    expect_open_malformed(raw_open(LP_KIND_TCP, 0, 1, "x", 1));
}

static void test_frame_open_rejects_empty_target(void **state)
{
    (void)state;
    expect_open_malformed(raw_open(LP_KIND_TCP, 1, 0, "x", 1)); /* "x" is then the arg */
}

static void test_frame_open_rejects_target_past_payload(void **state)
{
    (void)state;
    expect_open_malformed(raw_open(LP_KIND_TCP, 1, 2, "x", 1));
    expect_open_malformed(raw_open(LP_KIND_TCP, 1, 0xFFFF, "x", 1));
}

static void test_frame_open_rejects_target_or_arg_longer_than_cap(void **state)
{
    (void)state;
    static char text[LP_FRAME_MAX_TEXT + 2];
    fill_text(text, sizeof(text));
    expect_open_malformed(
        raw_open(LP_KIND_TCP, 1, LP_FRAME_MAX_TEXT + 1, text, LP_FRAME_MAX_TEXT + 1));
    expect_open_malformed(raw_open(LP_KIND_MCP, 1, 1, text, LP_FRAME_MAX_TEXT + 2));
}

static void test_frame_open_rejects_nul_in_target_or_arg(void **state)
{
    (void)state;
    expect_open_malformed(raw_open(LP_KIND_TCP, 1, 3, "a\0b", 3));
    expect_open_malformed(raw_open(LP_KIND_MCP, 1, 1, "ab\0", 3));
    struct lp_frame f = decode_ok(out, raw_open(LP_KIND_MCP, 1, 1, "ab\0", 3));
    struct lp_open o;
    const char *why = NULL;
    assert_int_equal(lp_open_decode(&f, &o, &why), LP_ERR_MALFORMED);
    assert_string_equal(why, "NUL in text");
}

static void test_frame_u32_rejects_zero_window_and_increment(void **state)
{
    (void)state;
    static const uint8_t types[] = {LP_FT_OPEN_OK, LP_FT_WINDOW};
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        struct lp_frame f = decode_ok(out, raw_frame(types[t], 0, 4, 1, "\0\0\0\0", 4));
        uint32_t v;
        const char *why = NULL;
        assert_int_equal(lp_u32_decode(&f, &v, &why), LP_ERR_MALFORMED);
        assert_non_null(why);
    }
}

static void test_frame_text_rejects_nul_in_message(void **state)
{
    (void)state;
    struct lp_frame f = decode_ok(out, raw_frame(LP_FT_RST, 0, 5, 1, "\0\1ab\0", 5));
    struct lp_text t;
    const char *why = NULL;
    assert_int_equal(lp_text_decode(&f, &t, &why), LP_ERR_MALFORMED);
    assert_string_equal(why, "NUL in text");
}

static void test_frame_hello_rejects_bad_magic(void **state)
{
    (void)state;
    struct lp_hello h = sample_hello();
    size_t n = lp_hello_encode(out, sizeof(out), &h);
    out[LP_FRAME_HEADER + 3] ^= 1;
    struct lp_frame f = decode_ok(out, n);
    struct lp_hello got;
    const char *why = NULL;
    assert_int_equal(lp_hello_decode(&f, &got, &why), LP_ERR_MALFORMED);
    assert_string_equal(why, "bad magic");
}

/* The typed decoders also stand alone: a hand-made frame of the wrong type or size is
 * refused, never read past. */
static void test_frame_typed_decoders_refuse_wrong_type_or_size(void **state)
{
    (void)state;
    static const uint8_t zeros[80];
    static char longmsg[2 + LP_FRAME_MAX_TEXT + 1];
    fill_text(longmsg, sizeof(longmsg));
    struct lp_frame data = {.type = LP_FT_DATA, .stream_id = 1, .payload = zeros, .len = 80};
    struct lp_frame short_open = {.type = LP_FT_OPEN, .stream_id = 1, .payload = zeros, .len = 6};
    struct lp_frame short_u32 = {.type = LP_FT_WINDOW, .stream_id = 1, .payload = zeros, .len = 3};
    struct lp_frame long_u64 = {.type = LP_FT_PING, .payload = zeros, .len = 9};
    struct lp_frame short_text = {.type = LP_FT_RST, .stream_id = 1, .payload = zeros, .len = 1};
    struct lp_frame long_text = {
        .type = LP_FT_REJECT, .payload = (const uint8_t *)longmsg, .len = sizeof(longmsg)};
    struct lp_frame short_hello = {.type = LP_FT_HELLO, .payload = zeros, .len = 63};
    struct lp_frame long_welcome = {.type = LP_FT_WELCOME, .payload = zeros, .len = 69};
    struct lp_frame null_hello = {.type = LP_FT_HELLO, .payload = NULL, .len = 64};
    struct lp_open o;
    struct lp_text t;
    struct lp_hello h;
    struct lp_welcome w;
    uint32_t v32;
    uint64_t v64;
    const char *why;

#define REFUSED(call)                               \
    do {                                            \
        why = NULL;                                 \
        assert_int_equal((call), LP_ERR_MALFORMED); \
        assert_non_null(why);                       \
    } while (0)
    REFUSED(lp_open_decode(&data, &o, &why));
    REFUSED(lp_u32_decode(&data, &v32, &why));
    REFUSED(lp_u64_decode(&data, &v64, &why));
    REFUSED(lp_text_decode(&data, &t, &why));
    REFUSED(lp_hello_decode(&data, &h, &why));
    REFUSED(lp_welcome_decode(&data, &w, &why));
    REFUSED(lp_open_decode(&short_open, &o, &why));
    REFUSED(lp_u32_decode(&short_u32, &v32, &why));
    REFUSED(lp_u64_decode(&long_u64, &v64, &why));
    REFUSED(lp_text_decode(&short_text, &t, &why));
    REFUSED(lp_text_decode(&long_text, &t, &why));
    REFUSED(lp_hello_decode(&short_hello, &h, &why));
    REFUSED(lp_hello_decode(&null_hello, &h, &why));
    REFUSED(lp_welcome_decode(&long_welcome, &w, &why));
#undef REFUSED
}

/* ---- encoders refuse what decoders would refuse --------------------------------------- */

static void test_frame_encoders_refuse_out_of_range_fields(void **state)
{
    (void)state;
    static uint8_t big[LP_FRAME_MAX_PAYLOAD + 1];
    static char text[LP_FRAME_MAX_TEXT + 1];
    fill_text(text, sizeof(text));
    struct lp_open o = {
        .kind = LP_KIND_TCP, .window = 1, .target = (const uint8_t *)"h:1", .target_len = 3};

    assert_int_not_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    assert_int_equal(lp_open_encode(out, sizeof(out), 0, &o), 0);
    o.kind = 0;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.kind = 5;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.kind = LP_KIND_TCP;
    o.window = 0;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.window = 1;
    o.target_len = 0;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.target = (const uint8_t *)text;
    o.target_len = LP_FRAME_MAX_TEXT + 1;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.target_len = 1;
    o.arg = (const uint8_t *)text;
    o.arg_len = LP_FRAME_MAX_TEXT + 1;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);
    o.arg = (const uint8_t *)"a\0";
    o.arg_len = 2;
    assert_int_equal(lp_open_encode(out, sizeof(out), 1, &o), 0);

    assert_int_equal(lp_u32_encode(out, sizeof(out), LP_FT_WINDOW, 1, 0), 0);
    assert_int_equal(lp_u32_encode(out, sizeof(out), LP_FT_WINDOW, 0, 1), 0);
    assert_int_equal(lp_u32_encode(out, sizeof(out), LP_FT_DATA, 1, 1), 0);
    assert_int_equal(lp_u64_encode(out, sizeof(out), LP_FT_HELLO, 1), 0);
    assert_int_equal(lp_empty_encode(out, sizeof(out), LP_FT_FIN, 0), 0);
    assert_int_equal(lp_empty_encode(out, sizeof(out), LP_FT_DATA, 1), 0);
    assert_int_equal(lp_data_encode(out, sizeof(out), 1, big, 0), 0);
    assert_int_equal(lp_data_encode(out, sizeof(out), 1, big, sizeof(big)), 0);
    assert_int_equal(lp_data_encode(out, sizeof(out), 0, big, 1), 0);

    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_RST, 1, 1, text, sizeof(text)), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_RST, 1, 1, "a\0b", 3), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_RST, 0, 1, "x", 1), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_GOODBYE, 1, 0, "x", 1), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_REJECT, 3, 1, "x", 1), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_DATA, 1, 0, "x", 1), 0);
    assert_int_equal(lp_text_encode(out, sizeof(out), LP_FT_RST, 1, 1, NULL, 1), 0);
}

/* Every encoder returns 0 for every capacity short of its frame, and the frame for exact. */
static void check_cap(size_t (*enc)(uint8_t *, size_t), size_t want)
{
    uint8_t *buf = malloc(want);
    assert_non_null(buf);
    for (size_t cap = 0; cap < want; cap++)
        assert_int_equal(enc(buf, cap), 0);
    assert_int_equal(enc(buf, want), want);
    free(buf);
}

static size_t enc_open(uint8_t *b, size_t cap)
{
    struct lp_open o = {.kind = LP_KIND_MCP,
                        .window = 9,
                        .target = (const uint8_t *)"srv",
                        .target_len = 3,
                        .arg = (const uint8_t *)"scope",
                        .arg_len = 5};
    return lp_open_encode(b, cap, 1, &o);
}
static size_t enc_u32(uint8_t *b, size_t cap)
{
    return lp_u32_encode(b, cap, LP_FT_OPEN_OK, 1, 5);
}
static size_t enc_u64(uint8_t *b, size_t cap)
{
    return lp_u64_encode(b, cap, LP_FT_PONG, 5);
}
static size_t enc_text(uint8_t *b, size_t cap)
{
    return lp_text_encode(b, cap, LP_FT_BIND_FAIL, 3, LP_RST_NOT_ALLOWED, "denied", 6);
}
static size_t enc_fin(uint8_t *b, size_t cap)
{
    return lp_empty_encode(b, cap, LP_FT_FIN, 2);
}
static size_t enc_data(uint8_t *b, size_t cap)
{
    return lp_data_encode(b, cap, 2, (const uint8_t *)"hello", 5);
}
static size_t enc_hello(uint8_t *b, size_t cap)
{
    struct lp_hello h = sample_hello();
    return lp_hello_encode(b, cap, &h);
}
static size_t enc_welcome(uint8_t *b, size_t cap)
{
    struct lp_welcome w = {.version = 1, .heartbeat_ms = 2000, .dead_after_ms = 6000};
    return lp_welcome_encode(b, cap, &w);
}
static size_t enc_welcome_node(uint8_t *b, size_t cap)
{
    struct lp_welcome w = {.version = 1,
                           .flags = LP_WELCOME_NODE,
                           .heartbeat_ms = 2000,
                           .dead_after_ms = 6000,
                           .node = (const uint8_t *)"node-b",
                           .node_len = 6};
    return lp_welcome_encode(b, cap, &w);
}

static void test_frame_encoders_return_zero_when_output_too_small(void **state)
{
    (void)state;
    check_cap(enc_open, 8 + 7 + 3 + 5);
    check_cap(enc_u32, 12);
    check_cap(enc_u64, 16);
    check_cap(enc_text, 8 + 2 + 6);
    check_cap(enc_fin, 8);
    check_cap(enc_data, 8 + 5);
    check_cap(enc_hello, 72);
    check_cap(enc_welcome, 76);
    check_cap(enc_welcome_node, 76 + 1 + 6);
    assert_int_equal(lp_u64_encode(NULL, 100, LP_FT_ACK, 1), 0);
}

/* ---- truncation ----------------------------------------------------------------------- */

static void test_frame_every_prefix_of_a_valid_frame_is_truncated(void **state)
{
    (void)state;
    static size_t (*const encoders[])(uint8_t *, size_t) = {
        enc_open, enc_u32,   enc_u64,     enc_text,        enc_fin,
        enc_data, enc_hello, enc_welcome, enc_welcome_node};
    static uint8_t frame[LP_FRAME_MAX];
    static uint8_t data[LP_FRAME_MAX_PAYLOAD];
    size_t sizes[ARRAY_LEN(encoders) + 1];
    const uint8_t *frames[ARRAY_LEN(encoders) + 1];
    uint8_t *bufs[ARRAY_LEN(encoders)];

    for (size_t i = 0; i < ARRAY_LEN(encoders); i++) {
        bufs[i] = malloc(LP_FRAME_MAX);
        assert_non_null(bufs[i]);
        sizes[i] = encoders[i](bufs[i], LP_FRAME_MAX);
        frames[i] = bufs[i];
    }
    sizes[ARRAY_LEN(encoders)] = lp_data_encode(frame, sizeof(frame), 1, data, sizeof(data));
    frames[ARRAY_LEN(encoders)] = frame;

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        assert_int_not_equal(sizes[i], 0);
        for (size_t n = 0; n < sizes[i]; n++) {
            /* an exact-size copy of the prefix, so ASan sees any read past n */
            uint8_t *prefix = malloc(n ? n : 1);
            struct lp_frame f;
            size_t used = 12345;
            const char *why = NULL;
            assert_non_null(prefix);
            memcpy(prefix, frames[i], n);
            assert_int_equal(lp_frame_decode(prefix, n, &f, &used, &why), LP_ERR_TRUNCATED);
            assert_int_equal(used, 12345);
            free(prefix);
        }
        decode_ok(frames[i], sizes[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(encoders); i++)
        free(bufs[i]);
}

static void test_frame_null_buffer_is_truncated(void **state)
{
    (void)state;
    struct lp_frame f;
    size_t used;
    const char *why;
    assert_int_equal(lp_frame_decode(NULL, 0, &f, &used, &why), LP_ERR_TRUNCATED);
}

/* ---- names ---------------------------------------------------------------------------- */

static void test_frame_names_cover_every_type_and_code(void **state)
{
    (void)state;
    assert_string_equal(lp_frame_type_name(LP_FT_OPEN), "OPEN");
    assert_string_equal(lp_frame_type_name(LP_FT_OPEN_OK), "OPEN_OK");
    assert_string_equal(lp_frame_type_name(LP_FT_DATA), "DATA");
    assert_string_equal(lp_frame_type_name(LP_FT_WINDOW), "WINDOW");
    assert_string_equal(lp_frame_type_name(LP_FT_FIN), "FIN");
    assert_string_equal(lp_frame_type_name(LP_FT_RST), "RST");
    assert_string_equal(lp_frame_type_name(LP_FT_BIND), "BIND");
    assert_string_equal(lp_frame_type_name(LP_FT_BIND_OK), "BIND_OK");
    assert_string_equal(lp_frame_type_name(LP_FT_BIND_FAIL), "BIND_FAIL");
    assert_string_equal(lp_frame_type_name(LP_FT_GOODBYE), "GOODBYE");
    assert_string_equal(lp_frame_type_name(LP_FT_ACK), "ACK");
    assert_string_equal(lp_frame_type_name(LP_FT_PING), "PING");
    assert_string_equal(lp_frame_type_name(LP_FT_PONG), "PONG");
    assert_string_equal(lp_frame_type_name(LP_FT_HELLO), "HELLO");
    assert_string_equal(lp_frame_type_name(LP_FT_WELCOME), "WELCOME");
    assert_string_equal(lp_frame_type_name(LP_FT_REJECT), "REJECT");
    assert_string_equal(lp_frame_type_name(0x00), "?");

    static const char *const rst[] = {
        "?",        "REFUSED",    "UNREACHABLE",  "NOT_ALLOWED", "TIMEOUT",
        "RESET",    "PROTOCOL",   "SESSION_LOST", "LIMIT",       "INTERNAL",
        "SHUTDOWN", "BAD_TARGET", "EXITED",       "UNAVAILABLE", "?"};
    for (uint16_t c = 0; c < ARRAY_LEN(rst); c++)
        assert_string_equal(lp_rst_code_name(c), rst[c]);
    static const char *const rej[] = {"?",    "VERSION", "SESSION_UNKNOWN", "SEQ_OUT_OF_RANGE",
                                      "AUTH", "LIMIT",   "PROTOCOL",        "SHUTDOWN",
                                      "?"};
    for (uint16_t c = 0; c < ARRAY_LEN(rej); c++)
        assert_string_equal(lp_reject_code_name(c), rej[c]);
    assert_string_equal(lp_rst_code_name(0xFFFF), "?");
    assert_string_equal(lp_reject_code_name(0xFFFF), "?");
}

static void test_frame_sequenced_types_are_exactly_the_mux_frames(void **state)
{
    (void)state;
    for (unsigned t = 0; t < 256; t++)
        assert_int_equal(lp_frame_is_sequenced((uint8_t)t), t >= 0x01 && t <= 0x0A);
}

static int teardown_held(void **state)
{
    (void)state;
    free(held);
    held = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_open_round_trips_every_kind),
        cmocka_unit_test(test_frame_open_round_trips_max_target_and_arg),
        cmocka_unit_test(test_frame_open_ok_and_window_round_trip),
        cmocka_unit_test(test_frame_data_round_trips_one_byte_and_max_payload),
        cmocka_unit_test(test_frame_fin_round_trips),
        cmocka_unit_test(test_frame_text_frames_round_trip_empty_and_max_messages),
        cmocka_unit_test(test_frame_text_encode_accepts_null_empty_message),
        cmocka_unit_test(test_frame_link_frames_round_trip_u64),
        cmocka_unit_test(test_frame_hello_round_trips),
        cmocka_unit_test(test_frame_hello_layout_matches_literal_bytes),
        cmocka_unit_test(test_frame_hello_decode_returns_any_version),
        cmocka_unit_test(test_frame_welcome_round_trips),
        cmocka_unit_test(test_frame_welcome_carries_the_node_id_only_with_its_flag),
        cmocka_unit_test(test_frame_welcome_refuses_a_bad_node_id),
        cmocka_unit_test(test_frame_header_layout_is_big_endian),
        cmocka_unit_test(test_frame_decode_reports_used_and_leaves_following_bytes),
        cmocka_unit_test(test_frame_rejects_unknown_type_after_first_byte),
        cmocka_unit_test(test_frame_rejects_http_and_tls_probes_at_once),
        cmocka_unit_test(test_frame_rejects_nonzero_flags_after_second_byte),
        cmocka_unit_test(test_frame_rejects_length_beyond_max_after_fourth_byte),
        cmocka_unit_test(test_frame_rejects_wrong_size_for_fixed_size_types),
        cmocka_unit_test(test_frame_rejects_empty_data),
        cmocka_unit_test(test_frame_rejects_text_frame_shorter_than_code_or_longer_than_cap),
        cmocka_unit_test(test_frame_rejects_open_shorter_than_minimum_or_longer_than_cap),
        cmocka_unit_test(test_frame_rejects_zero_stream_id_on_stream_frames),
        cmocka_unit_test(test_frame_rejects_nonzero_stream_id_on_link_frames),
        cmocka_unit_test(test_frame_open_rejects_unknown_kind),
        cmocka_unit_test(test_frame_open_rejects_zero_window),
        cmocka_unit_test(test_frame_open_rejects_empty_target),
        cmocka_unit_test(test_frame_open_rejects_target_past_payload),
        cmocka_unit_test(test_frame_open_rejects_target_or_arg_longer_than_cap),
        cmocka_unit_test(test_frame_open_rejects_nul_in_target_or_arg),
        cmocka_unit_test(test_frame_u32_rejects_zero_window_and_increment),
        cmocka_unit_test(test_frame_text_rejects_nul_in_message),
        cmocka_unit_test(test_frame_hello_rejects_bad_magic),
        cmocka_unit_test(test_frame_typed_decoders_refuse_wrong_type_or_size),
        cmocka_unit_test(test_frame_encoders_refuse_out_of_range_fields),
        cmocka_unit_test(test_frame_encoders_return_zero_when_output_too_small),
        cmocka_unit_test(test_frame_every_prefix_of_a_valid_frame_is_truncated),
        cmocka_unit_test(test_frame_null_buffer_is_truncated),
        cmocka_unit_test(test_frame_names_cover_every_type_and_code),
        cmocka_unit_test(test_frame_sequenced_types_are_exactly_the_mux_frames),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_held);
}
