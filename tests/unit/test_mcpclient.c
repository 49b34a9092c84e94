/* test_mcpclient.c — the JSON-RPC promises of `limpet mcp` (mcpclient.h): byte-exact
 * forwarding both ways whatever the read sizes, parse errors for bad host lines, an error
 * for every pending request when the stream is lost, at most one response per request, and
 * all of that kept when memory runs out.
 *
 * Allocation failures are real ones: this binary is linked with -Wl,--wrap=malloc (and
 * calloc, realloc; see the Makefile), so every allocation the core objects make goes through
 * wrap_alloc below, and jansson's go there too through json_set_alloc_funcs. A test arms it
 * to fail the n-th allocation from now and runs n = 0, 1, 2, ... until one run makes fewer
 * allocations than that: every allocation of the operation has then failed once.
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

#include <jansson.h>

#include "limpet/base.h"
#include "limpet/mcpclient.h"
#include "limpet/streamq.h"

#define MAX_MESSAGE 4096u

/* ---- allocation failures ------------------------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static long fail_in = -1; /* allocations left before the one that fails; -1: none fails */
static bool sticky;       /* after the first failure, every allocation fails */
static bool fired;        /* an allocation failed since fail_nth */

static bool alloc_fails(void)
{
    if (fired && sticky)
        return true;
    if (fail_in < 0)
        return false;
    if (fail_in-- > 0)
        return false;
    fired = true;
    return true;
}

void *__wrap_malloc(size_t n)
{
    return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return alloc_fails() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : __real_realloc(p, n);
}

static void *json_alloc(size_t n)
{
    return __wrap_malloc(n);
}

/* The n-th allocation from now fails (n = 0: the next one); with stay, every later one too. */
static void fail_nth(long n, bool stay)
{
    fail_in = n;
    sticky = stay;
    fired = false;
}

/* Disarms; true when an allocation failed since fail_nth. */
static bool fail_off(void)
{
    bool was = fired;
    fail_in = -1;
    sticky = fired = false;
    return was;
}

static int setup_alloc(void **state)
{
    (void)state;
    json_set_alloc_funcs(json_alloc, free);
    return 0;
}

static lp_mcpc *client(size_t max_pending)
{
    lp_mcpc *c = lp_mcpc_new(MAX_MESSAGE, max_pending);
    assert_non_null(c);
    return c;
}

/* Everything queued, as a string (owned by a static buffer, valid until the next call). */
static const char *drain(struct lp_streamq *q)
{
    static char out[64 * 1024];
    size_t n = 0, rounds = 0;
    const uint8_t *data;
    size_t len;

    while ((len = lp_streamq_peek(q, &data)) > 0) {
        assert_true(n + len < sizeof(out));
        assert_true(++rounds < 1000);
        memcpy(out + n, data, len);
        n += len;
        lp_streamq_drop(q, len);
    }
    out[n] = '\0';
    assert_int_equal(q->buffered, 0);
    return out;
}

static void host(lp_mcpc *c, const char *s)
{
    assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)s, strlen(s)), LP_OK);
}

static void tunnel(lp_mcpc *c, const char *s)
{
    assert_int_equal(lp_mcpc_from_tunnel(c, (const uint8_t *)s, strlen(s)), LP_OK);
}

static void host_sees(lp_mcpc *c, const char *want)
{
    assert_string_equal(drain(lp_mcpc_to_host(c)), want);
}

static void tunnel_sees(lp_mcpc *c, const char *want)
{
    assert_string_equal(drain(lp_mcpc_to_tunnel(c)), want);
}

/* Odd spacing, key order, escapes and non-ASCII: a re-encoder would change every one. */
#define REQ1                                                                           \
    "{ \"method\":\"tools/call\",\"jsonrpc\":\"2.0\",  \"id\":1,\"params\":{\"name\":" \
    "\"a\\u00e9\\/b\",\"arguments\":{\"x\":1.50,\"y\":\"\xc3\xa9\"}}}"
#define NOTE1 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"
#define REQ2                                                             \
    "{\"jsonrpc\":\"2.0\",\"id\":\"b-2\",\"method\":\"resources/read\"," \
    "\"params\":{\"uri\":\"x://y\"}}"
#define RESP_TO_SERVER \
    "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"content\":{\"type\":\"text\",\"text\":\"hi\"}}}"
#define RESP1                                                                     \
    "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"content\":[ {\"type\":\"text\"," \
    "\"text\":\"\\u263a\"} ]}}"
#define PROGRESS                                                  \
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"," \
    "\"params\":{\"progressToken\":1,\"progress\":0.5}}"
#define SERVER_REQ \
    "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}"
#define RESP2 "{\"jsonrpc\":\"2.0\",\"id\":\"b-2\",\"error\":{\"code\":-32602,\"message\":\"no\"}}"

static const char HOST_STREAM[] = REQ1 "\n" NOTE1 "\n" REQ2 "\n" RESP_TO_SERVER "\n";
static const char TUNNEL_STREAM[] =
    PROGRESS "\n" SERVER_REQ "\nnot json at all\n" RESP1 "\n" RESP2 "\n";

/* ---- forwarding ---------------------------------------------------------------------------- */

static void test_mcpc_forwards_host_lines_byte_exact_in_order(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, HOST_STREAM);
    tunnel_sees(c, HOST_STREAM);
    host_sees(c, "");
    assert_int_equal(lp_mcpc_pending(c), 2); /* REQ1 and REQ2; the rest are not requests */
    lp_mcpc_free(c);
}

static void test_mcpc_forwards_tunnel_lines_byte_exact_in_order(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ1 "\n" REQ2 "\n");
    tunnel_sees(c, REQ1 "\n" REQ2 "\n");
    tunnel(c, TUNNEL_STREAM);
    host_sees(c, TUNNEL_STREAM); /* not JSON from the far side goes through untouched */
    tunnel_sees(c, "");
    assert_int_equal(lp_mcpc_pending(c), 0);
    lp_mcpc_free(c);
}

/* Every way of cutting each stream in two gives the same output, and so does one byte at a
 * time. */
static void test_mcpc_same_output_whatever_the_splits(void **state)
{
    (void)state;
    size_t hn = strlen(HOST_STREAM), tn = strlen(TUNNEL_STREAM);

    for (size_t cut = 0; cut <= LP_MAX(hn, tn); cut++) {
        lp_mcpc *c = client(16);
        size_t h = LP_MIN(cut, hn), t = LP_MIN(cut, tn);
        assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)HOST_STREAM, h), LP_OK);
        assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)HOST_STREAM + h, hn - h), LP_OK);
        assert_int_equal(lp_mcpc_from_tunnel(c, (const uint8_t *)TUNNEL_STREAM, t), LP_OK);
        assert_int_equal(lp_mcpc_from_tunnel(c, (const uint8_t *)TUNNEL_STREAM + t, tn - t), LP_OK);
        tunnel_sees(c, HOST_STREAM);
        host_sees(c, TUNNEL_STREAM);
        assert_int_equal(lp_mcpc_pending(c), 0);
        lp_mcpc_free(c);
    }
    lp_mcpc *c = client(16);
    for (size_t i = 0; i < LP_MAX(hn, tn); i++) {
        if (i < hn)
            assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)HOST_STREAM + i, 1), LP_OK);
        if (i < tn)
            assert_int_equal(lp_mcpc_from_tunnel(c, (const uint8_t *)TUNNEL_STREAM + i, 1), LP_OK);
    }
    tunnel_sees(c, HOST_STREAM);
    host_sees(c, TUNNEL_STREAM);
    lp_mcpc_free(c);
}

static void test_mcpc_forwards_both_protocol_eras_untouched(void **state)
{
    (void)state;
    static const char legacy[] =
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"h\",\"version\":\"1\"}}}"
        "\n" NOTE1 "\n";
    static const char stateless[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{\"_meta\":"
        "{\"protocolVersion\":\"2026-07-28\",\"capabilities\":{}}}}\n";
    lp_mcpc *c = client(16);

    host(c, legacy);
    tunnel_sees(c, legacy);
    host(c, stateless);
    tunnel_sees(c, stateless);
    assert_int_equal(lp_mcpc_pending(c), 2);
    lp_mcpc_free(c);
}

/* A '\r' before the '\n' is framing, not message: the line goes on with '\n' alone. */
static void test_mcpc_crlf_line_is_forwarded_with_lf(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ2 "\r\n");
    tunnel_sees(c, REQ2 "\n");
    tunnel(c, RESP2 "\r\n");
    host_sees(c, RESP2 "\n");
    lp_mcpc_free(c);
}

/* ---- bad host lines ----------------------------------------------------------------------- */

static void test_mcpc_answers_non_json_line_with_parse_error(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, "hello there\n" REQ2 "\n{\"jsonrpc\":\"2.0\",\n7\n");
    tunnel_sees(c, REQ2 "\n"); /* only the good line, the session goes on */
    const char *out = drain(lp_mcpc_to_host(c));
    const char *prefix = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                         "\"message\":\"limpet: not JSON: ";
    assert_memory_equal(out, prefix, strlen(prefix));
    const char *second = strchr(out, '\n');
    assert_non_null(second);
    assert_memory_equal(second + 1, prefix, strlen(prefix));
    const char *third = strchr(second + 1, '\n'); /* a bare number is not a message */
    assert_non_null(third);
    assert_memory_equal(third + 1, prefix, strlen(prefix));
    assert_non_null(strchr(third + 1, '\n'));
    assert_string_equal(strchr(third + 1, '\n'), "\n");
    assert_int_equal(lp_mcpc_pending(c), 1);
    lp_mcpc_free(c);
}

static void test_mcpc_too_long_line_is_answered_and_next_line_goes_on(void **state)
{
    (void)state;
    static const char want_err[] =
        "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":"
        "\"limpet: message longer than mcp.max_message (4096 bytes), not forwarded\"}}\n";
    size_t big = MAX_MESSAGE + 100;
    char *in = malloc(big + sizeof(REQ2) + 2);

    assert_non_null(in);
    memset(in, 'x', big);
    memcpy(in, "{\"a\":\"", 6);
    in[big - 1] = '\n';
    memcpy(in + big, REQ2 "\n", sizeof(REQ2) + 1);
    size_t n = strlen(in);
    for (size_t cut = 0; cut <= n; cut += (cut < 10 || n - cut < 300) ? 1 : 97) {
        lp_mcpc *c = client(16);
        assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)in, cut), LP_OK);
        assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)in + cut, n - cut), LP_OK);
        host_sees(c, want_err);
        tunnel_sees(c, REQ2 "\n");
        assert_int_equal(lp_mcpc_pending(c), 1);
        lp_mcpc_free(c);
    }
    /* exactly max_message bytes is still one message */
    lp_mcpc *c = client(16);
    char *ok = malloc(MAX_MESSAGE + 2);
    assert_non_null(ok);
    memset(ok, ' ', MAX_MESSAGE);
    memcpy(ok, NOTE1, strlen(NOTE1));
    ok[MAX_MESSAGE] = '\n';
    ok[MAX_MESSAGE + 1] = '\0';
    host(c, ok);
    assert_int_equal(lp_mcpc_to_tunnel(c)->buffered, MAX_MESSAGE + 1);
    host_sees(c, "");
    free(ok);
    free(in);
    lp_mcpc_free(c);
}

static void test_mcpc_host_eof_handles_last_line_without_newline(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, NOTE1 "\n" REQ2);
    tunnel_sees(c, NOTE1 "\n");
    assert_int_equal(lp_mcpc_host_eof(c), LP_OK);
    tunnel_sees(c, REQ2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 1);
    assert_int_equal(lp_mcpc_host_eof(c), LP_OK); /* nothing left: nothing more */
    tunnel_sees(c, "");
    host(c, "{\"jsonrpc\"");
    assert_int_equal(lp_mcpc_host_eof(c), LP_OK);
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":"
                 "\"limpet: not JSON: ':' expected near end of file at column 10\"}}\n");
    tunnel_sees(c, "");
    lp_mcpc_free(c);
}

/* Every prefix of a stream, then EOF: the whole lines go through, the cut one is forwarded
 * when it is a message and answered with a parse error when it is not; never a crash. */
static void test_mcpc_every_prefix_then_eof_keeps_lines_whole(void **state)
{
    (void)state;
    size_t n = strlen(HOST_STREAM);

    for (size_t cut = 0; cut <= n; cut++) {
        lp_mcpc *c = client(16);
        size_t whole = cut;
        while (whole > 0 && HOST_STREAM[whole - 1] != '\n')
            whole--;
        assert_int_equal(lp_mcpc_from_host(c, (const uint8_t *)HOST_STREAM, cut), LP_OK);
        assert_int_equal(lp_mcpc_host_eof(c), LP_OK);
        const char *out = drain(lp_mcpc_to_tunnel(c));
        assert_memory_equal(out, HOST_STREAM, whole);
        bool forwarded = strlen(out) > whole;
        if (forwarded) /* the cut line ended exactly at a closing brace */
            assert_memory_equal(out + whole, HOST_STREAM + whole, cut - whole);
        const char *err = drain(lp_mcpc_to_host(c));
        assert_int_equal(strstr(err, "\"code\":-32700") != NULL, !forwarded && cut > whole);
        lp_mcpc_free(c);
    }
}

static void test_mcpc_tunnel_eof_forwards_last_line_with_newline(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ2 "\n");
    tunnel(c, PROGRESS "\n" RESP2);
    host_sees(c, PROGRESS "\n");
    assert_int_equal(lp_mcpc_pending(c), 1);
    assert_int_equal(lp_mcpc_tunnel_eof(c), LP_OK);
    host_sees(c, RESP2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    tunnel(c, "garbage without end");
    assert_int_equal(lp_mcpc_tunnel_eof(c), LP_OK);
    host_sees(c, "garbage without end\n");
    lp_mcpc_free(c);
}

static void test_mcpc_too_long_tunnel_line_is_dropped(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);
    char *big = malloc(MAX_MESSAGE + 10);

    assert_non_null(big);
    memset(big, 'y', MAX_MESSAGE + 8);
    big[MAX_MESSAGE + 8] = '\n';
    big[MAX_MESSAGE + 9] = '\0';
    tunnel(c, big);
    tunnel(c, PROGRESS "\n");
    host_sees(c, PROGRESS "\n");
    free(big);
    lp_mcpc_free(c);
}

/* ---- pending requests ------------------------------------------------------------------------ */

static void test_mcpc_stream_lost_answers_every_pending_request(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ1 "\n" REQ2 "\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n");
    tunnel_sees(c, REQ1 "\n" REQ2 "\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\n");
    tunnel(c, RESP1 "\n");
    assert_int_equal(lp_mcpc_pending(c), 2);
    assert_int_equal(lp_mcpc_stream_lost(c, "mcp server memory exited with status 1"), LP_OK);
    host_sees(c, RESP1 "\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":\"b-2\",\"error\":{\"code\":-32000,\"message\":"
                       "\"limpet: mcp server memory exited with status 1\"}}\n"
                       "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32000,\"message\":"
                       "\"limpet: mcp server memory exited with status 1\"}}\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    assert_int_equal(lp_mcpc_stream_lost(c, "again"), LP_OK); /* nothing pending: nothing */
    host_sees(c, "");
    lp_mcpc_free(c);
}

static void test_mcpc_stream_lost_empties_to_tunnel_and_answers_queued_requests(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, NOTE1 "\n" REQ2 "\n" RESP_TO_SERVER "\n"); /* the glue has sent none of it */
    assert_int_equal(lp_mcpc_stream_lost(c, "the session was lost"), LP_OK);
    tunnel_sees(c, "");
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":\"b-2\",\"error\":{\"code\":-32000,\"message\":"
                 "\"limpet: the session was lost\"}}\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    lp_mcpc_free(c);
}

static void test_mcpc_goes_on_with_a_new_stream_after_loss(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ1 "\n");
    tunnel_sees(c, REQ1 "\n");
    tunnel(c, "{\"jsonrpc\":\"2.0\",\"id\":1,"); /* half a response when the stream dies */
    assert_int_equal(lp_mcpc_stream_lost(c, "reset"), LP_OK);
    drain(lp_mcpc_to_host(c));
    host(c, REQ2 "\n");
    tunnel_sees(c, REQ2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 1);
    tunnel(c, PROGRESS "\n"); /* the new stream's first line is not glued to the old half */
    host_sees(c, PROGRESS "\n");
    tunnel(c, RESP2 "\n");
    host_sees(c, RESP2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    lp_mcpc_free(c);
}

static void test_mcpc_duplicate_response_is_dropped(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ2 "\n");
    tunnel(c, RESP2 "\n" RESP2 "\n" PROGRESS "\n");
    host_sees(c, RESP2 "\n" PROGRESS "\n");
    lp_mcpc_free(c);
}

/* The far side may answer a request limpet did not see as one (e.g. an id it cannot route
 * by); limpet does not second-guess it. */
static void test_mcpc_response_to_unknown_id_is_forwarded(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    tunnel(c, "{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{}}\n");
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{}}\n");
    lp_mcpc_free(c);
}

static void test_mcpc_late_response_after_loss_is_dropped(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ2 "\n");
    assert_int_equal(lp_mcpc_stream_lost(c, "reset"), LP_OK);
    drain(lp_mcpc_to_host(c));
    tunnel(c, RESP2 "\n"); /* limpet answered b-2 already */
    host_sees(c, "");
    host(c, REQ2 "\n"); /* the id used again for a new request: its answer is new */
    tunnel(c, RESP2 "\n");
    host_sees(c, RESP2 "\n");
    lp_mcpc_free(c);
}

/* The answered set is bounded: the oldest keys are forgotten first. */
static void test_mcpc_forgets_oldest_answered_ids_beyond_its_cap(void **state)
{
    (void)state;
    lp_mcpc *c = client(1); /* remembers 64 answered ids at least */
    char line[128];

    for (int id = 1; id <= 65; id++) {
        snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"m\"}\n", id);
        host(c, line);
        snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{}}\n", id);
        tunnel(c, line);
    }
    drain(lp_mcpc_to_host(c));
    tunnel(c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n"); /* remembered: dropped */
    host_sees(c, "");
    tunnel(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n"); /* forgotten: forwarded */
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
    lp_mcpc_free(c);
}

/* A host must not reuse an id in flight; if it does, each use still gets its one answer. */
static void test_mcpc_reused_pending_id_counts_each_request(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    host(c, REQ2 "\n" REQ2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 2);
    tunnel(c, RESP2 "\n");
    assert_int_equal(lp_mcpc_pending(c), 1);
    assert_int_equal(lp_mcpc_stream_lost(c, "gone"), LP_OK);
    host_sees(c, RESP2 "\n{\"jsonrpc\":\"2.0\",\"id\":\"b-2\",\"error\":{\"code\":-32000,"
                       "\"message\":\"limpet: gone\"}}\n");
    lp_mcpc_free(c);
}

static void test_mcpc_max_pending_answers_extra_requests_at_once(void **state)
{
    (void)state;
    lp_mcpc *c = client(2);

    host(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}\n"
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"b\"}\n"
            "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"c\"}\n" NOTE1 "\n");
    tunnel_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}\n"
                   "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"b\"}\n" NOTE1 "\n");
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32000,\"message\":"
                 "\"limpet: too many requests in flight (2 pending, the most allowed)\"}}\n");
    assert_int_equal(lp_mcpc_pending(c), 2);
    tunnel(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
    host(c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"d\"}\n");
    tunnel_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"d\"}\n");
    assert_int_equal(lp_mcpc_pending(c), 2);
    lp_mcpc_free(c);
}

static void test_mcpc_cancelled_request_is_no_longer_pending(void **state)
{
    (void)state;
    static const char cancel[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                                 "\"params\":{\"requestId\":\"b-2\",\"reason\":\"user\"}}\n";
    lp_mcpc *c = client(1);

    host(c, REQ2 "\n");
    host(c, cancel);
    tunnel_sees(c, REQ2 "\n"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                        "\"params\":{\"requestId\":\"b-2\",\"reason\":\"user\"}}\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    host(c, REQ1 "\n"); /* the slot is free again */
    tunnel_sees(c, REQ1 "\n");
    assert_int_equal(lp_mcpc_stream_lost(c, "gone"), LP_OK);
    host_sees(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":"
                 "\"limpet: gone\"}}\n");
    lp_mcpc_free(c);
}

static void test_mcpc_server_requests_and_host_responses_are_not_pending(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    tunnel(c, SERVER_REQ "\n");
    host_sees(c, SERVER_REQ "\n");
    host(c, RESP_TO_SERVER "\n");
    tunnel_sees(c, RESP_TO_SERVER "\n");
    assert_int_equal(lp_mcpc_pending(c), 0);
    assert_int_equal(lp_mcpc_stream_lost(c, "gone"), LP_OK);
    host_sees(c, "");
    lp_mcpc_free(c);
}

static void test_mcpc_free_of_null_is_a_no_op(void **state)
{
    (void)state;
    lp_mcpc_free(NULL);
}

/* ---- out of memory ------------------------------------------------------------------------ */

/* What the host was told about request `id` in out (lines from to_host): 1 for the one answer
 * to it (a result, or an error whose message contains `says` when not NULL), 0 for none;
 * anything else fails the test (two answers, a line that is not whole JSON). */
static int answers_to(const char *out, int id, const char *says)
{
    int n = 0;

    for (const char *p = out; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* whole lines only */
        json_t *m = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(m);
        json_t *mid = json_object_get(m, "id");
        if (json_is_integer(mid) && json_integer_value(mid) == id) {
            json_t *err = json_object_get(m, "error");
            if (err != NULL && says != NULL)
                assert_non_null(strstr(json_string_value(json_object_get(err, "message")), says));
            n++;
        }
        json_decref(m);
        p = nl + 1;
    }
    assert_true(n <= 1);
    return n;
}

/* A host request meets an allocation failure at every point it allocates, once or for good.
 * Whatever fails, the request is forwarded whole (and pending), or answered at once with an
 * error that says why, or - when not even that could be queued - LP_ERR_NOMEM tells the glue,
 * whose lp_mcpc_stream_lost then answers it once memory is back. Never neither. */
static void test_mcpc_request_without_memory_is_forwarded_or_answered(void **state)
{
    (void)state;
    static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}\n";
    long n = 0;

    for (int stay = 0; stay < 2; stay++) {
        for (n = 0; n < 1000; n++) {
            lp_mcpc *c = client(16);
            fail_nth(n, stay);
            lp_err rc = lp_mcpc_from_host(c, (const uint8_t *)req, sizeof(req) - 1);
            bool failed = fail_off();
            const char *sent = drain(lp_mcpc_to_tunnel(c));
            bool forwarded = strcmp(sent, req) == 0;
            assert_true(forwarded || sent[0] == '\0'); /* the whole line, or nothing */
            assert_int_equal(lp_mcpc_pending(c), forwarded ? 1 : 0);
            int answered = answers_to(drain(lp_mcpc_to_host(c)), 7, "out of memory");
            assert_true(rc == LP_OK || rc == LP_ERR_NOMEM);
            if (rc == LP_OK)
                assert_int_equal(forwarded + answered, 1);
            else if (forwarded) /* the glue's answer for what is pending, memory back */
                assert_int_equal(lp_mcpc_stream_lost(c, "gave up"), LP_OK);
            else
                assert_int_equal(answered, 0); /* not even parsed: the glue exits */
            /* memory back: the next request goes through as if nothing happened */
            host(c, REQ2 "\n");
            tunnel_sees(c, REQ2 "\n");
            lp_mcpc_free(c);
            if (!failed)
                break;
        }
        assert_true(n > 3 && n < 1000); /* it does allocate, and the loop saw the end of it */
    }
}

/* The answer to a pending request meets a failure at each of its allocations: it reaches the
 * host, or the request stays pending and the glue's lp_mcpc_stream_lost answers it. Either
 * way the host hears exactly once about it. */
static void test_mcpc_response_without_memory_leaves_the_request_pending(void **state)
{
    (void)state;
    static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}\n";
    static const char resp[] = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[]}}\n";
    long n;

    for (n = 0; n < 1000; n++) {
        lp_mcpc *c = client(16);
        host(c, req);
        tunnel_sees(c, req);
        fail_nth(n, true);
        lp_err rc = lp_mcpc_from_tunnel(c, (const uint8_t *)resp, sizeof(resp) - 1);
        bool failed = fail_off();
        const char *out = drain(lp_mcpc_to_host(c));
        if (rc == LP_OK) {
            assert_string_equal(out, resp);
            assert_int_equal(lp_mcpc_pending(c), 0);
        } else {
            assert_int_equal(rc, LP_ERR_NOMEM);
            assert_string_equal(out, "");
            assert_int_equal(lp_mcpc_pending(c), 1);
            assert_int_equal(lp_mcpc_stream_lost(c, "the answer was lost"), LP_OK);
            assert_int_equal(answers_to(drain(lp_mcpc_to_host(c)), 7, "the answer was lost"), 1);
        }
        lp_mcpc_free(c);
        if (!failed)
            break;
    }
    assert_true(n > 1 && n < 1000);
}

/* Answering the pending requests on a loss needs memory too: what could not be answered stays
 * pending, so a later call (the glue's, once memory is back) answers it; no request is
 * answered twice or forgotten. */
static void test_mcpc_stream_lost_without_memory_keeps_the_rest_pending(void **state)
{
    (void)state;
    long n;

    for (n = 0; n < 1000; n++) {
        lp_mcpc *c = client(16);
        host(c, REQ1 "\n" REQ2 "\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\"}\n");
        drain(lp_mcpc_to_tunnel(c));
        fail_nth(n, false);
        lp_err rc = lp_mcpc_stream_lost(c, "lost");
        bool failed = fail_off();
        assert_true(rc == LP_OK || rc == LP_ERR_NOMEM);
        assert_int_equal(lp_mcpc_pending(c) == 0, rc == LP_OK);
        assert_int_equal(lp_mcpc_stream_lost(c, "lost"), LP_OK);
        assert_int_equal(lp_mcpc_pending(c), 0);
        const char *out = drain(lp_mcpc_to_host(c));
        assert_int_equal(answers_to(out, 1, "lost") + answers_to(out, 3, "lost"), 2);
        assert_non_null(strstr(out, "\"id\":\"b-2\""));
        assert_null(strstr(strstr(out, "\"id\":\"b-2\"") + 1, "\"id\":\"b-2\""));
        lp_mcpc_free(c);
        if (!failed)
            break;
    }
    assert_true(n > 1 && n < 1000);
}

/* A line cut across two reads needs the line buffer; when it cannot grow, the line is lost
 * and LP_ERR_NOMEM says so (the glue gives up) - it is not mistaken for a too-long line and
 * answered with a misleading parse error. */
static void test_mcpc_partial_line_without_memory_is_reported_not_misnamed(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);

    fail_nth(0, true);
    lp_err rc = lp_mcpc_from_host(c, (const uint8_t *)REQ2, 10);
    assert_true(fail_off());
    assert_int_equal(rc, LP_ERR_NOMEM);
    host_sees(c, "");
    host(c, REQ2 + 10); /* the rest of the lost line is skipped up to its newline */
    host(c, "\n" REQ2 "\n");
    tunnel_sees(c, REQ2 "\n");
    host_sees(c, "");
    lp_mcpc_free(c);
}

/* A line lost for want of memory costs that line only: the lines after it in the same read
 * go through, and LP_ERR_NOMEM still says one was lost. */
static void test_mcpc_lost_line_does_not_cost_the_lines_after_it(void **state)
{
    (void)state;
    lp_mcpc *c = client(16);
    char rest[400];

    memset(rest, ' ', 300); /* more than the line buffer holds yet: it must grow */
    snprintf(rest + 300, sizeof(rest) - 300, "}\n%s\n", REQ2);
    host(c, "{\"a\":1"); /* buffered: no newline yet */
    fail_nth(0, false);
    lp_err rc = lp_mcpc_from_host(c, (const uint8_t *)rest, strlen(rest));
    assert_true(fail_off());
    assert_int_equal(rc, LP_ERR_NOMEM);
    tunnel_sees(c, REQ2 "\n");
    host_sees(c, "");
    assert_int_equal(lp_mcpc_pending(c), 1);
    lp_mcpc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcpc_forwards_host_lines_byte_exact_in_order),
        cmocka_unit_test(test_mcpc_forwards_tunnel_lines_byte_exact_in_order),
        cmocka_unit_test(test_mcpc_same_output_whatever_the_splits),
        cmocka_unit_test(test_mcpc_forwards_both_protocol_eras_untouched),
        cmocka_unit_test(test_mcpc_crlf_line_is_forwarded_with_lf),
        cmocka_unit_test(test_mcpc_answers_non_json_line_with_parse_error),
        cmocka_unit_test(test_mcpc_too_long_line_is_answered_and_next_line_goes_on),
        cmocka_unit_test(test_mcpc_host_eof_handles_last_line_without_newline),
        cmocka_unit_test(test_mcpc_every_prefix_then_eof_keeps_lines_whole),
        cmocka_unit_test(test_mcpc_tunnel_eof_forwards_last_line_with_newline),
        cmocka_unit_test(test_mcpc_too_long_tunnel_line_is_dropped),
        cmocka_unit_test(test_mcpc_stream_lost_answers_every_pending_request),
        cmocka_unit_test(test_mcpc_stream_lost_empties_to_tunnel_and_answers_queued_requests),
        cmocka_unit_test(test_mcpc_goes_on_with_a_new_stream_after_loss),
        cmocka_unit_test(test_mcpc_duplicate_response_is_dropped),
        cmocka_unit_test(test_mcpc_response_to_unknown_id_is_forwarded),
        cmocka_unit_test(test_mcpc_late_response_after_loss_is_dropped),
        cmocka_unit_test(test_mcpc_forgets_oldest_answered_ids_beyond_its_cap),
        cmocka_unit_test(test_mcpc_reused_pending_id_counts_each_request),
        cmocka_unit_test(test_mcpc_max_pending_answers_extra_requests_at_once),
        cmocka_unit_test(test_mcpc_cancelled_request_is_no_longer_pending),
        cmocka_unit_test(test_mcpc_server_requests_and_host_responses_are_not_pending),
        cmocka_unit_test(test_mcpc_free_of_null_is_a_no_op),
        cmocka_unit_test(test_mcpc_request_without_memory_is_forwarded_or_answered),
        cmocka_unit_test(test_mcpc_response_without_memory_leaves_the_request_pending),
        cmocka_unit_test(test_mcpc_stream_lost_without_memory_keeps_the_rest_pending),
        cmocka_unit_test(test_mcpc_partial_line_without_memory_is_reported_not_misnamed),
        cmocka_unit_test(test_mcpc_lost_line_does_not_cost_the_lines_after_it),
    };
    return cmocka_run_group_tests(tests, setup_alloc, NULL);
}
