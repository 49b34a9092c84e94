/* test_jsonrpc.c — MCP stdio framing (lp_lines) and JSON-RPC message helpers (lp_rpc_*):
 * lines come out the same whatever the read sizes, too-long lines cost only themselves,
 * messages are classified per JSON-RPC 2.0, and the lines limpet writes are exact.
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

#include "limpet/jsonrpc.h"

#define MAX_LINES 32

/* The lines (and TOO_LONG reports, as "!") seen while feeding a stream in chunks. */
struct seen {
    char text[MAX_LINES][128];
    size_t count;
    size_t max_cap; /* the largest partial-line buffer seen */
};

static void record(struct seen *s, enum lp_line_kind k, const uint8_t *line, size_t len)
{
    assert_true(s->count < MAX_LINES);
    if (k == LP_LINE_TOO_LONG) {
        snprintf(s->text[s->count++], sizeof(s->text[0]), "!");
        return;
    }
    assert_int_equal(k, LP_LINE_OK);
    assert_true(len > 0 && len < sizeof(s->text[0]));
    memcpy(s->text[s->count], line, len);
    s->text[s->count++][len] = '\0';
}

/* Feeds one chunk completely, recording what comes out. */
static void feed(struct lp_lines *l, struct seen *s, const uint8_t *data, size_t n)
{
    size_t off = 0, rounds = 0;

    while (off < n) {
        const uint8_t *line;
        size_t len, used;
        enum lp_line_kind k = lp_lines_next(l, data + off, n - off, &used, &line, &len);
        assert_true(used <= n - off);
        assert_true(++rounds <= n + 1);
        off += used;
        if (l->cap > s->max_cap)
            s->max_cap = l->cap;
        if (k == LP_LINE_NONE) {
            assert_int_equal(off, n);
            break;
        }
        record(s, k, line, len);
    }
}

static void finish(struct lp_lines *l, struct seen *s)
{
    const uint8_t *line;
    size_t len;
    enum lp_line_kind k = lp_lines_finish(l, &line, &len);

    if (k != LP_LINE_NONE)
        record(s, k, line, len);
    assert_int_equal(lp_lines_pending(l), 0);
}

/* Feeds text cut at the given points (ascending, each < n) and finishes. */
static void feed_cut(size_t max, const char *text, const size_t *cuts, size_t ncuts, struct seen *s)
{
    struct lp_lines l;
    const uint8_t *p = (const uint8_t *)text;
    size_t n = strlen(text), from = 0;

    memset(s, 0, sizeof(*s));
    lp_lines_init(&l, max);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        feed(&l, s, p + from, to - from);
        from = to;
    }
    finish(&l, s);
    lp_lines_free(&l);
}

static void assert_seen(const struct seen *s, const char *const *want, size_t nwant)
{
    assert_int_equal(s->count, nwant);
    for (size_t i = 0; i < nwant; i++)
        assert_string_equal(s->text[i], want[i]);
}

/* ---- framing ------------------------------------------------------------------------- */

static void test_lines_points_into_data_when_whole_line_is_there(void **state)
{
    (void)state;
    static const uint8_t in[] = "{\"a\":1}\n{\"b\":2}\n";
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;

    lp_lines_init(&l, 64);
    assert_int_equal(lp_lines_next(&l, in, sizeof(in) - 1, &used, &line, &len), LP_LINE_OK);
    assert_ptr_equal(line, in);
    assert_int_equal(len, 7);
    assert_int_equal(used, 8);
    assert_int_equal(lp_lines_next(&l, in + 8, sizeof(in) - 9, &used, &line, &len), LP_LINE_OK);
    assert_ptr_equal(line, in + 8);
    assert_int_equal(used, 8);
    assert_null(l.buf); /* nothing was ever copied */
    lp_lines_free(&l);
}

static void test_lines_come_out_the_same_at_every_cut_point(void **state)
{
    (void)state;
    static const char text[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n"
                               "\n\r\n"
                               "[1,2]\n"
                               "junk line\n"
                               "{\"id\":\"x\",\"result\":{}}";
    static const char *const want[] = {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
                                       "[1,2]", "junk line", "{\"id\":\"x\",\"result\":{}}"};
    size_t n = strlen(text);
    struct seen s;

    feed_cut(64, text, NULL, 0, &s);
    assert_seen(&s, want, 4);
    for (size_t a = 1; a < n; a++) {
        feed_cut(64, text, &a, 1, &s);
        assert_seen(&s, want, 4);
        for (size_t b = a + 1; b < n; b += 7) {
            size_t cuts[2] = {a, b};
            feed_cut(64, text, cuts, 2, &s);
            assert_seen(&s, want, 4);
        }
    }
    size_t ones[sizeof(text)];
    for (size_t i = 0; i + 1 < n; i++)
        ones[i] = i + 1;
    feed_cut(64, text, ones, n - 1, &s);
    assert_seen(&s, want, 4);
}

static void test_lines_accepts_exactly_max_and_reports_max_plus_one_once(void **state)
{
    (void)state;
    /* max 8: "12345678" fits (also with \r\n), "123456789" does not. */
    static const char text[] = "12345678\n123456789\nok\n12345678\r\n123456789\r\nend\n";
    static const char *const want[] = {"12345678", "!", "ok", "12345678", "!", "end"};
    size_t n = strlen(text);
    struct seen s;

    feed_cut(8, text, NULL, 0, &s);
    assert_seen(&s, want, 6);
    for (size_t a = 1; a < n; a++) {
        feed_cut(8, text, &a, 1, &s);
        assert_seen(&s, want, 6);
        assert_true(s.max_cap <= 9);
    }
    size_t ones[sizeof(text)];
    for (size_t i = 0; i + 1 < n; i++)
        ones[i] = i + 1;
    feed_cut(8, text, ones, n - 1, &s);
    assert_seen(&s, want, 6);
    assert_true(s.max_cap <= 9);
}

static void test_lines_reports_too_long_as_soon_as_known_then_skips_to_newline(void **state)
{
    (void)state;
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;

    lp_lines_init(&l, 4);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"abc", 3, &used, &line, &len),
                     LP_LINE_NONE);
    assert_int_equal(lp_lines_pending(&l), 3);
    /* "abcde": five bytes not ending in '\r' cannot become a line of at most 4. */
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"de", 2, &used, &line, &len),
                     LP_LINE_TOO_LONG);
    assert_int_equal(used, 2);
    assert_int_equal(lp_lines_pending(&l), 0);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"xxxxxxxx", 8, &used, &line, &len),
                     LP_LINE_NONE);
    assert_int_equal(used, 8);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"yy\nok\n", 6, &used, &line, &len),
                     LP_LINE_OK);
    assert_int_equal(used, 6);
    assert_memory_equal(line, "ok", 2);
    assert_int_equal(len, 2);
    /* Five bytes ending in '\r' may still be "abcd\r\n": wait for the next byte. */
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"abcd\r", 5, &used, &line, &len),
                     LP_LINE_NONE);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"x", 1, &used, &line, &len),
                     LP_LINE_TOO_LONG);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"\nabcd\r", 6, &used, &line, &len),
                     LP_LINE_NONE);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"\n", 1, &used, &line, &len), LP_LINE_OK);
    assert_memory_equal(line, "abcd", 4);
    assert_int_equal(len, 4);
    assert_true(l.cap <= 5);
    lp_lines_free(&l);
}

static void test_lines_too_long_inside_one_chunk_costs_only_itself(void **state)
{
    (void)state;
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;
    static const char in[] = "0123456789abcdef\n{}\n";

    lp_lines_init(&l, 8);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)in, 20, &used, &line, &len),
                     LP_LINE_TOO_LONG);
    assert_int_equal(used, 17);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)in + 17, 3, &used, &line, &len),
                     LP_LINE_OK);
    assert_int_equal(len, 2);
    assert_null(l.buf);
    lp_lines_free(&l);
}

static void test_lines_skips_blank_lines_and_strips_one_cr(void **state)
{
    (void)state;
    static const char *const want[] = {"a\r", "b"};
    struct seen s;

    feed_cut(16, "\n\r\n\n\r\na\r\r\n\r\nb\r\n\r", NULL, 0, &s);
    assert_seen(&s, want, 2);
}

static void test_lines_finish_returns_last_unterminated_line(void **state)
{
    (void)state;
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;

    lp_lines_init(&l, 16);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"tail\r", 5, &used, &line, &len),
                     LP_LINE_NONE);
    assert_int_equal(lp_lines_pending(&l), 5);
    assert_int_equal(lp_lines_finish(&l, &line, &len), LP_LINE_OK);
    assert_memory_equal(line, "tail", 4);
    assert_int_equal(len, 4);
    assert_int_equal(lp_lines_finish(&l, &line, &len), LP_LINE_NONE);
    lp_lines_free(&l);
    /* A too-long tail was already reported: finish has nothing more to say about it. */
    lp_lines_init(&l, 2);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"abcdef", 6, &used, &line, &len),
                     LP_LINE_TOO_LONG);
    assert_int_equal(lp_lines_finish(&l, &line, &len), LP_LINE_NONE);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"ab\n", 3, &used, &line, &len), LP_LINE_OK);
    lp_lines_free(&l);
}

static void test_lines_buffer_grows_but_never_beyond_max_plus_one(void **state)
{
    (void)state;
    enum { MAX = 5000 };
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;
    static uint8_t big[MAX + 1];

    memset(big, 'x', sizeof(big));
    big[MAX] = '\n';
    lp_lines_init(&l, MAX);
    for (size_t i = 0; i < MAX; i += 100) {
        assert_int_equal(lp_lines_next(&l, big + i, 100, &used, &line, &len), LP_LINE_NONE);
        assert_true(l.cap <= MAX + 1);
    }
    assert_int_equal(lp_lines_next(&l, big + MAX, 1, &used, &line, &len), LP_LINE_OK);
    assert_int_equal(len, MAX);
    assert_ptr_equal(line, l.buf);
    assert_true(l.cap <= MAX + 1);
    lp_lines_free(&l);
}

/* One long message must not leave its buffer behind for the rest of the stream's life. */
static void test_lines_does_not_keep_a_large_buffer_once_its_line_went(void **state)
{
    (void)state;
    enum { BIG = 200000 };
    struct lp_lines l;
    const uint8_t *line;
    size_t len, used;
    uint8_t *big = malloc(BIG + 1);

    assert_non_null(big);
    memset(big, 'x', BIG);
    big[BIG] = '\n';
    lp_lines_init(&l, 1u << 20);
    assert_int_equal(lp_lines_next(&l, big, BIG / 2, &used, &line, &len), LP_LINE_NONE);
    assert_int_equal(lp_lines_next(&l, big + BIG / 2, BIG / 2 + 1, &used, &line, &len), LP_LINE_OK);
    assert_int_equal(len, BIG);
    assert_true(l.cap >= BIG); /* the line is still lent out of it */
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"ab\n", 3, &used, &line, &len), LP_LINE_OK);
    assert_int_equal(l.cap, 0);
    assert_memory_equal(line, "ab", 2);
    /* A small buffer stays: most lines are small, and reallocating for each would cost. */
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"cd", 2, &used, &line, &len), LP_LINE_NONE);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"\n", 1, &used, &line, &len), LP_LINE_OK);
    assert_int_equal(lp_lines_next(&l, (const uint8_t *)"e", 1, &used, &line, &len), LP_LINE_NONE);
    assert_true(l.cap > 0 && l.cap <= 65536);
    lp_lines_free(&l);
    free(big);
}

/* ---- messages ------------------------------------------------------------------------ */

static enum lp_rpc_kind kind_of(const char *text, char *key, size_t keylen)
{
    struct lp_rpc_msg m;
    char why[128];

    assert_int_equal(lp_rpc_parse((const uint8_t *)text, strlen(text), &m, why, sizeof(why)),
                     LP_OK);
    enum lp_rpc_kind k = m.kind;
    if (key != NULL)
        snprintf(key, keylen, "%s", m.id_key);
    if (k == LP_RPC_REQUEST || k == LP_RPC_RESPONSE)
        assert_non_null(m.id);
    else
        assert_null(m.id);
    if (k == LP_RPC_REQUEST || k == LP_RPC_NOTIFICATION)
        assert_non_null(m.method);
    else
        assert_null(m.method);
    lp_rpc_msg_clear(&m);
    return k;
}

static void test_rpc_classifies_requests_notifications_and_responses(void **state)
{
    (void)state;
    char key[80];

    assert_int_equal(
        kind_of("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}", key, sizeof(key)),
        LP_RPC_REQUEST);
    assert_string_equal(key, "7");
    assert_int_equal(kind_of("{\"id\":\"a\\\"b\",\"method\":\"x\"}", key, sizeof(key)),
                     LP_RPC_REQUEST); /* no "jsonrpc": still forwarded as a request */
    assert_string_equal(key, "\"a\\\"b\"");
    assert_int_equal(
        kind_of("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", key, sizeof(key)),
        LP_RPC_NOTIFICATION);
    assert_string_equal(key, "");
    assert_int_equal(kind_of("{\"jsonrpc\":\"2.0\",\"id\":-3,\"result\":{}}", key, sizeof(key)),
                     LP_RPC_RESPONSE);
    assert_string_equal(key, "-3");
    assert_int_equal(
        kind_of("{\"id\":\"lp-1\",\"error\":{\"code\":-1,\"message\":\"m\"}}", key, sizeof(key)),
        LP_RPC_RESPONSE);
    assert_string_equal(key, "\"lp-1\"");
}

static void test_rpc_classifies_odd_ids_and_shapes_as_other(void **state)
{
    (void)state;
    static const char *const other[] = {
        "{\"id\":null,\"method\":\"x\"}",
        "{\"id\":1.5,\"method\":\"x\"}",
        "{\"id\":{},\"method\":\"x\"}",
        "{\"id\":true,\"result\":1}",
        "{\"id\":null,\"error\":{}}",
        "{\"id\":1}",
        "{\"method\":5}",
        "{\"id\":1,\"method\":[],\"result\":1}",
        "{}",
        "[{\"id\":1,\"method\":\"x\"}]",
        "[]",
    };
    char key[80];

    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        assert_int_equal(kind_of(other[i], key, sizeof(key)), LP_RPC_OTHER);
        assert_string_equal(key, "");
    }
}

static void test_rpc_id_too_long_for_key_is_other(void **state)
{
    (void)state;
    char text[256];
    char id[100];

    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    snprintf(text, sizeof(text), "{\"id\":\"%s\",\"method\":\"x\"}", id);
    assert_int_equal(kind_of(text, NULL, 0), LP_RPC_OTHER);
    /* 78 characters plus quotes is the longest that fits in 80 with its NUL. */
    id[77] = '\0';
    snprintf(text, sizeof(text), "{\"id\":\"%s\",\"method\":\"x\"}", id);
    assert_int_equal(kind_of(text, NULL, 0), LP_RPC_REQUEST);
    id[77] = 'i';
    id[78] = '\0';
    snprintf(text, sizeof(text), "{\"id\":\"%s\",\"method\":\"x\"}", id);
    assert_int_equal(kind_of(text, NULL, 0), LP_RPC_OTHER);
}

static void test_rpc_parse_rejects_non_json_with_column(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json", "7", "\"s\"", "{\"a\":1} x", "{\"a\":\"\\u0000\"}", "{\"a\":}", "\xff"};
    struct lp_rpc_msg m;
    char why[160];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(
            lp_rpc_parse((const uint8_t *)bad[i], strlen(bad[i]), &m, why, sizeof(why)),
            LP_ERR_MALFORMED);
        assert_null(m.root);
        assert_non_null(strstr(why, "not JSON: "));
        assert_non_null(strstr(why, " at column "));
        assert_null(strchr(why, '\n'));
        lp_rpc_msg_clear(&m);
    }
    assert_int_equal(lp_rpc_parse((const uint8_t *)"{\"a\":}", 6, &m, why, sizeof(why)),
                     LP_ERR_MALFORMED);
    assert_non_null(strstr(why, "at column 6"));
    /* A tiny or absent reason buffer is fine. */
    assert_int_equal(lp_rpc_parse((const uint8_t *)"x", 1, &m, why, 4), LP_ERR_MALFORMED);
    assert_int_equal(strlen(why), 3);
    assert_int_equal(lp_rpc_parse((const uint8_t *)"x", 1, &m, NULL, 0), LP_ERR_MALFORMED);
}

/* Every strict prefix of a valid message is refused (JSON cannot be cut short and stay
 * valid for an object or array), never crashes, and leaves nothing to free. */
static void test_rpc_parse_refuses_every_prefix(void **state)
{
    (void)state;
    static const char *const valid[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"method\":\"server/discover\",\"params\":{\"_meta\":"
        "{\"protocolVersion\":\"2026-07-28\"}}}",
        "[{\"id\":-12,\"result\":[true,false,null,1.5e3,\"\\u00e9\"]}]",
    };
    struct lp_rpc_msg m;
    char why[160];

    for (size_t v = 0; v < sizeof(valid) / sizeof(valid[0]); v++) {
        size_t n = strlen(valid[v]);
        assert_int_equal(lp_rpc_parse((const uint8_t *)valid[v], n, &m, why, sizeof(why)), LP_OK);
        lp_rpc_msg_clear(&m);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(lp_rpc_parse((const uint8_t *)valid[v], i, &m, why, sizeof(why)),
                             LP_ERR_MALFORMED);
            assert_null(m.root);
        }
    }
}

static void test_rpc_id_key_gives_compact_text_or_an_error(void **state)
{
    (void)state;
    char key[8];
    json_t *id;

    id = json_integer(-42);
    assert_int_equal(lp_rpc_id_key(id, key, sizeof(key)), LP_OK);
    assert_string_equal(key, "-42");
    json_decref(id);
    id = json_string("ab/c");
    assert_int_equal(lp_rpc_id_key(id, key, sizeof(key)), LP_OK);
    assert_string_equal(key, "\"ab/c\"");
    json_decref(id);
    id = json_string("abcdef"); /* 8 characters: no room for the NUL */
    assert_int_equal(lp_rpc_id_key(id, key, sizeof(key)), LP_ERR_TOO_BIG);
    assert_string_equal(key, "");
    json_decref(id);
    id = json_real(1.0);
    assert_int_equal(lp_rpc_id_key(id, key, sizeof(key)), LP_ERR_INVALID);
    json_decref(id);
    assert_int_equal(lp_rpc_id_key(json_null(), key, sizeof(key)), LP_ERR_INVALID);
    assert_int_equal(lp_rpc_id_key(NULL, key, sizeof(key)), LP_ERR_INVALID);
}

static void test_rpc_encode_is_compact_keeps_key_order_and_ends_in_newline(void **state)
{
    (void)state;
    static const char text[] = "{ \"z\" : 1, \"a\" : [ 1 , \"/\" ], \"m\" : { } }";
    json_t *root = json_loads(text, 0, NULL);
    size_t len;
    char *out;

    assert_non_null(root);
    out = lp_rpc_encode(root, &len);
    assert_non_null(out);
    assert_string_equal(out, "{\"z\":1,\"a\":[1,\"/\"],\"m\":{}}\n");
    assert_int_equal(len, strlen(out));
    free(out);
    json_decref(root);
}

static void test_rpc_error_line_is_exact_and_replaces_bad_utf8(void **state)
{
    (void)state;
    json_t *id = json_integer(5);
    size_t len;
    char *out;

    out = lp_rpc_error_line(id, LP_RPC_LIMPET_ERROR, "child exited with status 3", &len);
    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":-32000,"
                             "\"message\":\"child exited with status 3\"}}\n");
    assert_int_equal(len, strlen(out));
    free(out);
    json_decref(id);
    out = lp_rpc_error_line(NULL, LP_RPC_PARSE_ERROR, "bad \xff\xc3(\xe2\x82 \xc3\xa9", &len);
    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                             "\"message\":\"bad \xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd"
                             " \xc3\xa9\"}}\n");
    free(out);
    /* Overlong and surrogate encodings are not valid UTF-8 either. */
    out = lp_rpc_error_line(NULL, 1, "\xc0\xaf\xed\xa0\x80", &len);
    assert_non_null(out);
    assert_null(strstr(out, "\xc0"));
    assert_null(strstr(out, "\xed"));
    free(out);
}

static void test_rpc_result_line_does_not_consume_result(void **state)
{
    (void)state;
    json_t *id = json_string("lp-1");
    json_t *result = json_pack("{s:s,s:{}}", "protocolVersion", "2025-11-25", "capabilities");
    size_t len;
    char *out;

    out = lp_rpc_result_line(id, result, &len);
    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":\"lp-1\",\"result\":{\"protocolVersion\":"
                             "\"2025-11-25\",\"capabilities\":{}}}\n");
    assert_int_equal(len, strlen(out));
    free(out);
    assert_int_equal(result->refcount, 1);
    assert_int_equal(id->refcount, 1);
    json_decref(result);
    json_decref(id);
}

static void test_rpc_notification_line_with_and_without_params(void **state)
{
    (void)state;
    json_t *params = json_pack("{s:i,s:s}", "requestId", 3, "reason", "client went away");
    size_t len;
    char *out;

    out = lp_rpc_notification_line("notifications/cancelled", params, &len);
    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                             "\"params\":{\"requestId\":3,\"reason\":\"client went away\"}}\n");
    free(out);
    assert_int_equal(params->refcount, 1);
    json_decref(params);
    out = lp_rpc_notification_line("notifications/initialized", NULL, &len);
    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    assert_int_equal(len, strlen(out));
    free(out);
}

struct fed {
    char text[256];
    size_t calls, stop_at;
};

static lp_err record_piece(void *user, const uint8_t *line, size_t len)
{
    struct fed *f = user;
    size_t used = strlen(f->text);

    if (++f->calls == f->stop_at)
        return LP_ERR_NOMEM;
    snprintf(f->text + used, sizeof(f->text) - used, "[%.*s]", line ? (int)len : 4,
             line ? (const char *)line : "LONG");
    return LP_OK;
}

static void test_lines_feed_hands_over_every_line_and_too_long_in_order(void **state)
{
    static const char in[] = "a\r\n\nbb\n0123456789abc\nc\npart";
    struct lp_lines l;
    struct fed f = {.stop_at = 0};
    (void)state;

    lp_lines_init(&l, 8);
    assert_int_equal(lp_lines_feed(&l, (const uint8_t *)in, strlen(in), record_piece, &f), LP_OK);
    assert_string_equal(f.text, "[a][bb][LONG][c]");
    assert_int_equal(lp_lines_pending(&l), 4); /* "part" waits for its newline */
    lp_lines_free(&l);

    /* An error from the callback stops the feed at once. */
    memset(&f, 0, sizeof(f));
    f.stop_at = 2;
    lp_lines_init(&l, 8);
    assert_int_equal(lp_lines_feed(&l, (const uint8_t *)in, strlen(in), record_piece, &f),
                     LP_ERR_NOMEM);
    assert_string_equal(f.text, "[a]");
    assert_int_equal(f.calls, 2);
    lp_lines_free(&l);
}

/* Upgrade in place: a partial line taken back goes on as if the bytes had never left. */
static void test_lines_restore_goes_on_where_the_partial_line_left_off(void **state)
{
    struct lp_lines l;
    struct seen s = {0};
    (void)state;

    lp_lines_init(&l, 16);
    assert_int_equal(lp_lines_restore(&l, (const uint8_t *)"{\"a\":", 5, false), LP_OK);
    assert_int_equal(lp_lines_pending(&l), 5);
    feed(&l, &s, (const uint8_t *)"1}\nnext\n", 8);
    assert_int_equal(s.count, 2);
    assert_string_equal(s.text[0], "{\"a\":1}");
    assert_string_equal(s.text[1], "next");
    lp_lines_free(&l);

    /* inside a too-long line: the rest of it is skipped without a second report */
    memset(&s, 0, sizeof(s));
    lp_lines_init(&l, 16);
    assert_int_equal(lp_lines_restore(&l, NULL, 0, true), LP_OK);
    feed(&l, &s, (const uint8_t *)"tail of it\nok\n", 14);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.text[0], "ok");
    lp_lines_free(&l);

    /* a partial line longer than a lowered max is skipped to its end */
    memset(&s, 0, sizeof(s));
    lp_lines_init(&l, 4);
    assert_int_equal(lp_lines_restore(&l, (const uint8_t *)"0123456789", 10, false), LP_OK);
    assert_int_equal(lp_lines_pending(&l), 0);
    feed(&l, &s, (const uint8_t *)"ab\ncd\n", 6);
    assert_int_equal(s.count, 1);
    assert_string_equal(s.text[0], "cd");
    lp_lines_free(&l);

    /* what no lp_lines can have held is refused */
    lp_lines_init(&l, 16);
    assert_int_equal(lp_lines_restore(&l, (const uint8_t *)"a\nb", 3, false), LP_ERR_MALFORMED);
    assert_int_equal(lp_lines_restore(&l, (const uint8_t *)"ab", 2, true), LP_ERR_MALFORMED);
    assert_int_equal(lp_lines_pending(&l), 0);
    lp_lines_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_points_into_data_when_whole_line_is_there),
        cmocka_unit_test(test_lines_restore_goes_on_where_the_partial_line_left_off),
        cmocka_unit_test(test_lines_come_out_the_same_at_every_cut_point),
        cmocka_unit_test(test_lines_accepts_exactly_max_and_reports_max_plus_one_once),
        cmocka_unit_test(test_lines_reports_too_long_as_soon_as_known_then_skips_to_newline),
        cmocka_unit_test(test_lines_too_long_inside_one_chunk_costs_only_itself),
        cmocka_unit_test(test_lines_skips_blank_lines_and_strips_one_cr),
        cmocka_unit_test(test_lines_finish_returns_last_unterminated_line),
        cmocka_unit_test(test_lines_buffer_grows_but_never_beyond_max_plus_one),
        cmocka_unit_test(test_lines_does_not_keep_a_large_buffer_once_its_line_went),
        cmocka_unit_test(test_rpc_classifies_requests_notifications_and_responses),
        cmocka_unit_test(test_rpc_classifies_odd_ids_and_shapes_as_other),
        cmocka_unit_test(test_rpc_id_too_long_for_key_is_other),
        cmocka_unit_test(test_rpc_parse_rejects_non_json_with_column),
        cmocka_unit_test(test_rpc_parse_refuses_every_prefix),
        cmocka_unit_test(test_rpc_id_key_gives_compact_text_or_an_error),
        cmocka_unit_test(test_rpc_encode_is_compact_keeps_key_order_and_ends_in_newline),
        cmocka_unit_test(test_rpc_error_line_is_exact_and_replaces_bad_utf8),
        cmocka_unit_test(test_rpc_result_line_does_not_consume_result),
        cmocka_unit_test(test_rpc_notification_line_with_and_without_params),
        cmocka_unit_test(test_lines_feed_hands_over_every_line_and_too_long_in_order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
