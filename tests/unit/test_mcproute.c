/* test_mcproute.c — JSON-RPC routing between one MCP child and its attachments (mcproute.h):
 * id and progress-token renaming, the initialize cache, cancellations, child → host
 * requests, detach, a crash and a fresh child, and the 2026 era passing through untouched.
 * Forwarded lines are compared byte for byte; re-encoded ones as JSON values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "limpet/mcproute.h"
#include "limpet/state.h"
#include "state_check.h"

#define CHILD LP_MCPROUTE_CHILD
#define A 11u
#define B 22u
#define C 33u

#define INIT_REQ(id)                                                                         \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"initialize\",\"params\":{"              \
    "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"h\"," \
    "\"version\":\"1\"}}}"
#define INIT_RESULT "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{}}}"
#define INIT_RESP(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":" INIT_RESULT "}"
#define INITIALIZED "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"

static void from_att(lp_mcproute *r, uint64_t att, const char *line)
{
    assert_int_equal(lp_mcproute_from_att(r, att, (const uint8_t *)line, strlen(line)), LP_OK);
}

static void from_child(lp_mcproute *r, const char *line)
{
    assert_int_equal(lp_mcproute_from_child(r, (const uint8_t *)line, strlen(line)), LP_OK);
}

/* The next output line is want + '\n' for dest, byte for byte. */
static void expect(lp_mcproute *r, uint64_t dest, const char *want)
{
    uint64_t d;
    char *line;
    size_t len;

    assert_true(lp_mcproute_next(r, &d, &line, &len));
    assert_int_equal(d, dest);
    assert_int_equal(len, strlen(want) + 1);
    assert_int_equal(line[len - 1], '\n');
    assert_memory_equal(line, want, len - 1);
    free(line);
}

/* The next output line is one JSON value equal to want (key order and spacing aside). */
static void expect_json(lp_mcproute *r, uint64_t dest, const char *want)
{
    json_t *a, *b;
    uint64_t d;
    char *line;
    size_t len;

    assert_true(lp_mcproute_next(r, &d, &line, &len));
    assert_int_equal(d, dest);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1));
    a = json_loadb(line, len - 1, 0, NULL);
    b = json_loads(want, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    if (!json_equal(a, b))
        fail_msg("got %.*s, want %s", (int)len - 1, line, want);
    json_decref(a);
    json_decref(b);
    free(line);
}

/* No output line is ready (held host lines may still count in queued()). */
static void expect_no_line(lp_mcproute *r)
{
    uint64_t d;
    char *line;
    size_t len;

    if (lp_mcproute_next(r, &d, &line, &len)) {
        char copy[256];
        snprintf(copy, sizeof(copy), "%.*s", (int)len, line);
        free(line);
        fail_msg("unexpected line for %llu: %s", (unsigned long long)d, copy);
    }
}

static void expect_nothing(lp_mcproute *r)
{
    expect_no_line(r);
    assert_int_equal(lp_mcproute_queued(r), 0);
}

static lp_mcproute *route_with(size_t max_inflight, uint64_t a, uint64_t b)
{
    lp_mcproute *r = lp_mcproute_new(max_inflight, SIZE_MAX);

    assert_non_null(r);
    if (a != 0)
        assert_int_equal(lp_mcproute_attach(r, a), LP_OK);
    if (b != 0)
        assert_int_equal(lp_mcproute_attach(r, b), LP_OK);
    return r;
}

/* A 2025-era session on r (A attached): A initializes, the child answers, A says
 * initialized. */
static lp_mcproute *initialize_route(lp_mcproute *r)
{
    from_att(r, A, INIT_REQ("0"));
    expect(r, CHILD, INIT_REQ("0"));
    from_child(r, INIT_RESP("0"));
    expect(r, A, INIT_RESP("0"));
    from_att(r, A, INITIALIZED);
    expect(r, CHILD, INITIALIZED);
    assert_true(lp_mcproute_initialized(r));
    return r;
}

static lp_mcproute *initialized_route(void)
{
    return initialize_route(route_with(16, A, 0));
}

static void test_mcproute_renames_an_id_another_attachment_has_in_flight(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    from_att(r, B, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"id\":\"lp-1\",\"method\":\"tools/call\",\"params\":{}}");
    assert_int_equal(lp_mcproute_inflight(r), 2);
    /* Answered out of order: each goes home with the id its host used. */
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":\"lp-1\",\"result\":{\"b\":true}}");
    from_child(r, "{\"jsonrpc\":\"2.0\", \"id\":1, \"result\":{\"a\":true}}");
    expect_json(r, B, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"b\":true}}");
    expect(r, A, "{\"jsonrpc\":\"2.0\", \"id\":1, \"result\":{\"a\":true}}");
    assert_int_equal(lp_mcproute_inflight(r), 0);
    /* Once answered, id 1 is free again and keeps its name. */
    from_att(r, B, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_fresh_ids_skip_ids_already_in_flight(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    /* A host that itself uses "lp-1" must not meet a renamed "lp-1". */
    from_att(r, A, "{\"id\":\"lp-1\",\"method\":\"x\"}");
    from_att(r, A, "{\"id\":7,\"method\":\"x\"}");
    from_att(r, B, "{\"id\":7,\"method\":\"y\"}");
    expect(r, CHILD, "{\"id\":\"lp-1\",\"method\":\"x\"}");
    expect(r, CHILD, "{\"id\":7,\"method\":\"x\"}");
    expect_json(r, CHILD, "{\"id\":\"lp-2\",\"method\":\"y\"}");
    /* A string id that reads like a number is another id: no collision. */
    from_att(r, B, "{\"id\":\"7\",\"method\":\"z\"}");
    expect(r, CHILD, "{\"id\":\"7\",\"method\":\"z\"}");
    from_child(r, "{\"id\":\"lp-2\",\"result\":2}");
    expect_json(r, B, "{\"id\":7,\"result\":2}");
    from_child(r, "{\"id\":\"lp-1\",\"result\":1}");
    expect(r, A, "{\"id\":\"lp-1\",\"result\":1}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_answers_a_later_initialize_from_the_cache(void **state)
{
    (void)state;
    lp_mcproute *r = initialized_route();

    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, INIT_REQ("\"b-init\""));
    expect_json(r, B, INIT_RESP("\"b-init\""));
    from_att(r, B, INITIALIZED); /* the child was told once already */
    from_att(r, B, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/list\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/list\"}");
    /* The same attachment initializing again is answered from the cache too. */
    from_att(r, A, INIT_REQ("5"));
    expect_json(r, A, INIT_RESP("5"));
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_caches_the_response_whose_id_matches_not_the_first_line(void **state)
{
    (void)state;
    static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\","
                               "\"params\":{\"level\":\"info\",\"data\":\"starting\"}}";
    static const char other[] = "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{\"nope\":1}}";
    lp_mcproute *r = route_with(16, A, 0);

    from_att(r, A, INIT_REQ("1"));
    expect(r, CHILD, INIT_REQ("1"));
    from_child(r, note);
    from_child(r, other); /* answers nothing in flight: dropped, not cached */
    from_child(r, INIT_RESP("1"));
    expect(r, A, note);
    expect(r, A, INIT_RESP("1"));
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, INIT_REQ("1"));
    expect_json(r, B, INIT_RESP("1"));
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_initialize_during_the_first_waits_for_its_answer(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, INIT_REQ("1"));
    from_att(r, B, INIT_REQ("1"));
    from_att(r, B, INIT_REQ("2"));
    expect(r, CHILD, INIT_REQ("1"));
    expect_nothing(r); /* the child sees one initialize */
    from_child(r, INIT_RESP("1"));
    expect(r, A, INIT_RESP("1"));
    expect_json(r, B, INIT_RESP("1"));
    expect_json(r, B, INIT_RESP("2"));
    from_att(r, B, INITIALIZED);
    from_att(r, A, INITIALIZED);
    expect(r, CHILD, INITIALIZED);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_failed_first_initialize_lets_a_waiting_one_try(void **state)
{
    (void)state;
    static const char err[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,"
                              "\"message\":\"unsupported\"}}";
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, INIT_REQ("1"));
    from_att(r, B, INIT_REQ("9"));
    expect(r, CHILD, INIT_REQ("1"));
    from_child(r, err);
    expect(r, A, err); /* an error is passed on, not cached */
    expect(r, CHILD, INIT_REQ("9"));
    from_child(r, INIT_RESP("9"));
    expect(r, B, INIT_RESP("9"));
    from_att(r, A, INIT_REQ("2"));
    expect_json(r, A, INIT_RESP("2"));
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_forwards_initialized_once_per_child_life(void **state)
{
    (void)state;
    lp_mcproute *r = initialized_route();

    from_att(r, A, INITIALIZED);
    expect_nothing(r);
    lp_mcproute_child_exited(r);
    assert_false(lp_mcproute_initialized(r));
    assert_int_equal(lp_mcproute_child_started(r), LP_OK);
    expect_json(r, CHILD, INIT_REQ("\"lp-init-1\""));
    from_child(r, INIT_RESP("\"lp-init-1\""));
    expect_json(r, CHILD, INITIALIZED);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, INITIALIZED);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_routes_progress_by_token_even_when_tokens_collide(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A,
             "{\"id\":1,\"method\":\"tools/call\",\"params\":{\"_meta\":"
             "{\"progressToken\":\"t\"}}}");
    from_att(r, B,
             "{\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"n\",\"_meta\":"
             "{\"progressToken\":\"t\"}}}");
    expect(r, CHILD,
           "{\"id\":1,\"method\":\"tools/call\",\"params\":{\"_meta\":"
           "{\"progressToken\":\"t\"}}}");
    expect_json(r, CHILD,
                "{\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"n\","
                "\"_meta\":{\"progressToken\":\"lp-1\"}}}");
    from_child(r, "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"lp-1\","
                  "\"progress\":1}}");
    from_child(r, "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\","
                  "\"progress\":2}}");
    from_child(r, "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"zz\","
                  "\"progress\":3}}"); /* nobody asked: dropped */
    expect_json(r, B,
                "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":"
                "\"t\",\"progress\":1}}");
    expect(r, A,
           "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\","
           "\"progress\":2}}");
    /* After the answer the token means nothing any more. */
    from_child(r, "{\"id\":2,\"result\":{}}");
    expect(r, B, "{\"id\":2,\"result\":{}}");
    from_child(r, "{\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"lp-1\","
                  "\"progress\":4}}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_maps_a_hosts_cancellation_to_the_childs_id(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, "{\"id\":1,\"method\":\"slow\"}");
    from_att(r, B, "{\"id\":1,\"method\":\"slow\"}");
    expect(r, CHILD, "{\"id\":1,\"method\":\"slow\"}");
    expect_json(r, CHILD, "{\"id\":\"lp-1\",\"method\":\"slow\"}");
    from_att(r, B,
             "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1,"
             "\"reason\":\"user\"}}");
    expect_json(r, CHILD,
                "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":"
                "\"lp-1\",\"reason\":\"user\"}}");
    assert_int_equal(lp_mcproute_inflight(r), 1);
    /* A cancellation of nothing this host has in flight would hit A's request: dropped. */
    from_att(r, B, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1}}");
    from_att(r, B, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":5}}");
    expect_nothing(r);
    /* A late answer to the cancelled request is dropped; A's own cancel passes unchanged. */
    from_child(r, "{\"id\":\"lp-1\",\"result\":{}}");
    from_att(r, A, "{\"method\":\"notifications/cancelled\", \"params\":{\"requestId\":1}}");
    expect(r, CHILD, "{\"method\":\"notifications/cancelled\", \"params\":{\"requestId\":1}}");
    expect_nothing(r);
    assert_int_equal(lp_mcproute_inflight(r), 0);
    lp_mcproute_free(r);
}

static void test_mcproute_sends_child_requests_to_the_latest_attachment(void **state)
{
    (void)state;
    static const char sampling[] = "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":"
                                   "\"sampling/createMessage\",\"params\":{\"maxTokens\":5}}";
    static const char answer[] = "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"role\":"
                                 "\"assistant\"}}";
    lp_mcproute *r = route_with(16, A, B);

    from_child(r, sampling);
    expect(r, B, sampling);
    from_att(r, B, answer);
    expect(r, CHILD, answer);
    /* A child's cancellation follows its request to the host that was asked. */
    assert_int_equal(lp_mcproute_attach(r, A), LP_OK); /* A is now the latest */
    from_child(r, "{\"id\":\"e\",\"method\":\"elicitation/create\"}");
    expect(r, A, "{\"id\":\"e\",\"method\":\"elicitation/create\"}");
    assert_int_equal(lp_mcproute_attach(r, C), LP_OK);
    from_child(r, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"e\"}}");
    expect(r, A, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"e\"}}");
    from_child(r, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"e\"}}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void
test_mcproute_answers_a_child_request_with_an_error_when_nobody_is_attached(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, 0, 0);

    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"roots/list\"}");
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32000,"
                "\"message\":\"no client attached\"}}");
    /* Notifications and junk with nobody to hear them are dropped. */
    from_child(r, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}");
    from_child(r, "junk");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_broadcasts_other_child_notifications(void **state)
{
    (void)state;
    static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}";
    lp_mcproute *r = route_with(16, A, B);

    from_child(r, note);
    expect(r, A, note);
    expect(r, B, note);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_detach_cancels_requests_in_flight_and_drops_late_answers(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, "{\"id\":1,\"method\":\"a\"}");
    from_att(r, B, "{\"id\":1,\"method\":\"b\"}");
    from_att(r, B, "{\"id\":2,\"method\":\"b\"}");
    expect(r, CHILD, "{\"id\":1,\"method\":\"a\"}");
    expect_json(r, CHILD, "{\"id\":\"lp-1\",\"method\":\"b\"}");
    expect(r, CHILD, "{\"id\":2,\"method\":\"b\"}");
    from_child(r, "{\"id\":2,\"result\":{}}"); /* queued for B, never read */
    assert_int_equal(lp_mcproute_detach(r, B), LP_OK);
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                "\"params\":{\"requestId\":\"lp-1\",\"reason\":\"client went away\"}}");
    expect_nothing(r);
    assert_int_equal(lp_mcproute_inflight(r), 1);
    from_child(r, "{\"id\":\"lp-1\",\"result\":{}}");
    expect_nothing(r);
    /* B is gone for good: it can neither leave again nor send. */
    assert_int_equal(lp_mcproute_detach(r, B), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_mcproute_from_att(r, B, (const uint8_t *)"{}", 2), LP_ERR_NOT_FOUND);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_detach_never_cancels_initialize_and_still_caches_it(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_att(r, A, INIT_REQ("1"));
    from_att(r, B, INIT_REQ("2"));
    expect(r, CHILD, INIT_REQ("1"));
    assert_int_equal(lp_mcproute_detach(r, A), LP_OK);
    expect_nothing(r); /* MCP forbids cancelling initialize */
    from_child(r, INIT_RESP("1"));
    expect_json(r, B, INIT_RESP("2"));
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_detach_answers_the_childs_request_to_that_host(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, B);

    from_child(r, "{\"id\":\"s1\",\"method\":\"sampling/createMessage\"}");
    expect(r, B, "{\"id\":\"s1\",\"method\":\"sampling/createMessage\"}");
    assert_int_equal(lp_mcproute_detach(r, B), LP_OK);
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"error\":{\"code\":-32000,"
                "\"message\":\"client went away\"}}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_orphans_keep_their_ids_reserved_but_are_bounded(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(2, A, B);

    from_att(r, A, "{\"id\":1,\"method\":\"a\"}");
    from_att(r, A, "{\"id\":2,\"method\":\"a\"}");
    expect(r, CHILD, "{\"id\":1,\"method\":\"a\"}");
    expect(r, CHILD, "{\"id\":2,\"method\":\"a\"}");
    assert_int_equal(lp_mcproute_detach(r, A), LP_OK);
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                "\"params\":{\"requestId\":1,\"reason\":\"client went away\"}}");
    expect_json(r, CHILD,
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\","
                "\"params\":{\"requestId\":2,\"reason\":\"client went away\"}}");
    assert_int_equal(lp_mcproute_inflight(r), 0);
    /* B's id 1 is renamed: the child may still answer A's abandoned 1. */
    from_att(r, B, "{\"id\":1,\"method\":\"b\"}");
    expect_json(r, CHILD, "{\"id\":\"lp-1\",\"method\":\"b\"}");
    from_child(r, "{\"id\":1,\"result\":\"for A\"}");
    expect_nothing(r);
    /* Two more orphans push the oldest remaining one (A's 2) out of memory. */
    from_att(r, B, "{\"id\":3,\"method\":\"b\"}");
    expect(r, CHILD, "{\"id\":3,\"method\":\"b\"}");
    from_att(r, B, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":1}}");
    from_att(r, B, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":3}}");
    expect_json(r, CHILD,
                "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":"
                "\"lp-1\"}}");
    expect(r, CHILD, "{\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":3}}");
    from_att(r, B, "{\"id\":2,\"method\":\"b\"}");
    expect(r, CHILD, "{\"id\":2,\"method\":\"b\"}");
    from_child(r, "{\"id\":2,\"result\":\"for B\"}");
    expect(r, B, "{\"id\":2,\"result\":\"for B\"}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_replays_initialize_to_a_fresh_child_and_holds_host_lines(void **state)
{
    (void)state;
    static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}";
    lp_mcproute *r = initialized_route();

    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\"}");
    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\"}");
    lp_mcproute_child_exited(r); /* the line for the dead child is dropped */
    assert_int_equal(lp_mcproute_inflight(r), 0);
    expect_nothing(r);
    assert_int_equal(lp_mcproute_from_att(r, A, (const uint8_t *)"{}", 2), LP_ERR_NOT_FOUND);
    /* A new host attaches before the child runs: its lines wait for the replay. */
    assert_int_equal(lp_mcproute_attach(r, C), LP_OK);
    from_att(r, C, INIT_REQ("1"));
    from_att(r, C, INITIALIZED);
    from_att(r, C, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    assert_true(lp_mcproute_queued(r) > 0);
    assert_int_equal(lp_mcproute_child_started(r), LP_OK);
    assert_true(lp_mcproute_initialized(r));
    expect_json(r, CHILD, INIT_REQ("\"lp-init-1\""));
    from_att(r, C, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}");
    from_child(r, note); /* before its answer, as servers may */
    expect(r, C, note);
    expect_no_line(r);
    assert_int_equal(lp_mcproute_queued(r), strlen(INIT_REQ("1")) + strlen(INITIALIZED) +
                                                2 * strlen("{\"jsonrpc\":\"2.0\",\"id\":2,"
                                                           "\"method\":\"tools/list\"}"));
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":\"lp-init-1\",\"result\":{\"protocolVersion\":"
                  "\"2025-11-25\",\"capabilities\":{\"tools\":{},\"new\":{}}}}");
    expect_json(r, CHILD, INITIALIZED);
    expect_json(r, C,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":"
                "\"2025-11-25\",\"capabilities\":{\"tools\":{},\"new\":{}}}}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}");
    expect_nothing(r);
    /* The next crash replays with a new id. */
    lp_mcproute_child_exited(r);
    assert_int_equal(lp_mcproute_child_started(r), LP_OK);
    expect_json(r, CHILD, INIT_REQ("\"lp-init-2\""));
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":\"lp-init-1\",\"result\":{}}"); /* stale */
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_refuses_requests_once_the_held_lines_are_full(void **state)
{
    (void)state;
    lp_mcproute *r = initialized_route();
    size_t i, before = 1;

    lp_mcproute_child_exited(r);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    /* Held lines count in queued() until it stops growing: the cap. */
    for (i = 0; i < 100000 && lp_mcproute_queued(r) != before; i++) {
        before = lp_mcproute_queued(r);
        from_att(r, B, "{\"method\":\"n\"}");
    }
    assert_true(i < 100000); /* a cap was reached */
    expect_no_line(r);
    from_att(r, B, "{\"method\":\"n\"}"); /* dropped */
    from_att(r, B, "{\"id\":1,\"method\":\"x\"}");
    expect_json(r, B,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,"
                "\"message\":\"too many requests in flight\"}}");
    expect_no_line(r);
    lp_mcproute_free(r);
}

/* Held lines are bounded in bytes as well as in lines: a host cannot make the route hold
 * thousands of long lines while a fresh child starts. */
static void test_mcproute_held_lines_are_bounded_in_bytes(void **state)
{
    (void)state;
    static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"p\":\"x\"}"; /* 38 */
    static const char req[] = "{\"id\":1,\"method\":\"tools/list\"}";                /* 30 */
    lp_mcproute *r = initialize_route(route_with(16, A, 0));
    lp_mcproute_free(r);
    r = lp_mcproute_new(16, 100);
    assert_non_null(r);
    assert_int_equal(lp_mcproute_attach(r, A), LP_OK);
    initialize_route(r);

    lp_mcproute_child_exited(r);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, note);
    from_att(r, B, note);
    assert_int_equal(lp_mcproute_queued(r), 76);
    from_att(r, B, note); /* 114 bytes would pass 100: dropped */
    assert_int_equal(lp_mcproute_queued(r), 76);
    assert_int_equal(lp_mcproute_memory(r), 76);
    from_att(r, B, req); /* a request is answered, so its host does not wait for ever */
    expect_json(r, B,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,"
                "\"message\":\"too many requests in flight\"}}");
    expect_no_line(r);
    /* The child comes back: the two notes that were held reach it, nothing else. */
    assert_int_equal(lp_mcproute_child_started(r), LP_OK);
    expect_json(r, CHILD, INIT_REQ("\"lp-init-1\""));
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":\"lp-init-1\",\"result\":{}}");
    expect_json(r, CHILD, INITIALIZED);
    expect(r, CHILD, note);
    expect(r, CHILD, note);
    expect_nothing(r);
    lp_mcproute_free(r);

    /* An empty queue takes one line of any length: the byte cap never refuses a line for
     * its length alone. */
    r = lp_mcproute_new(16, 10);
    assert_non_null(r);
    assert_int_equal(lp_mcproute_attach(r, A), LP_OK);
    initialize_route(r);
    lp_mcproute_child_exited(r);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, note);
    assert_int_equal(lp_mcproute_queued(r), 38);
    from_att(r, B, note);
    assert_int_equal(lp_mcproute_queued(r), 38);
    lp_mcproute_free(r);
}

/* Initializes waiting for the first one's answer are bounded in bytes too, and counted in
 * memory() (not in queued(): they are not output). */
static void test_mcproute_waiting_initializes_are_bounded_in_bytes(void **state)
{
    (void)state;
    size_t one = strlen(INIT_REQ("2"));
    lp_mcproute *r = lp_mcproute_new(16, 2 * one);

    assert_non_null(r);
    assert_int_equal(lp_mcproute_attach(r, A), LP_OK);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, A, INIT_REQ("1"));
    expect(r, CHILD, INIT_REQ("1"));
    from_att(r, B, INIT_REQ("2"));
    from_att(r, B, INIT_REQ("3"));
    from_att(r, B, INIT_REQ("4")); /* a third would pass the cap */
    expect_json(r, B,
                "{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-32000,"
                "\"message\":\"too many requests in flight\"}}");
    expect_no_line(r);
    assert_int_equal(lp_mcproute_queued(r), 0);
    assert_int_equal(lp_mcproute_memory(r), 2 * one);
    from_child(r, INIT_RESP("1"));
    expect(r, A, INIT_RESP("1"));
    expect_json(r, B, INIT_RESP("2"));
    expect_json(r, B, INIT_RESP("3"));
    expect_nothing(r);
    assert_int_equal(lp_mcproute_memory(r), 0);
    lp_mcproute_free(r);
}

static void test_mcproute_fresh_child_without_cache_takes_lines_at_once(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, 0);

    from_att(r, A, "{\"id\":1,\"method\":\"server/discover\"}");
    expect(r, CHILD, "{\"id\":1,\"method\":\"server/discover\"}");
    lp_mcproute_child_exited(r);
    assert_int_equal(lp_mcproute_attach(r, B), LP_OK);
    from_att(r, B, "{\"id\":1,\"method\":\"server/discover\"}");
    assert_int_equal(lp_mcproute_child_started(r), LP_OK);
    assert_false(lp_mcproute_initialized(r));
    expect(r, CHILD, "{\"id\":1,\"method\":\"server/discover\"}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_passes_a_2026_session_through_byte_for_byte(void **state)
{
    (void)state;
    static const char *const host[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{\"_meta\":"
        "{\"protocolVersion\":\"2026-07-28\",\"capabilities\":{}}}}",
        "{ \"jsonrpc\": \"2.0\", \"id\": \"c\", \"method\": \"tools/call\", \"params\": {"
        "\"name\": \"echo\", \"arguments\": {\"s\": \"\\u00e9\"}, \"_meta\": {"
        "\"protocolVersion\": \"2026-07-28\", \"progressToken\": 17}}}",
    };
    static const char *const child[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersions\":[\"2026-07-28\"]}}",
        ("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{"
         "\"progressToken\":17,\"progress\":0.5}}"),
        "{\"result\" : {\"content\":[]}, \"id\" : \"c\", \"jsonrpc\" : \"2.0\"}",
    };
    lp_mcproute *r = route_with(16, A, 0);

    for (size_t i = 0; i < 2; i++) {
        from_att(r, A, host[i]);
        expect(r, CHILD, host[i]);
    }
    for (size_t i = 0; i < 3; i++) {
        from_child(r, child[i]);
        expect(r, A, child[i]);
    }
    assert_false(lp_mcproute_initialized(r));
    assert_int_equal(lp_mcproute_inflight(r), 0);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_forwards_lines_that_are_not_json_rpc_objects(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "not json at all",
        "[{\"id\":1,\"method\":\"batch\"}]",
        "{\"id\":null,\"method\":\"x\"}",
        "{\"id\":1.5,\"result\":1}",
        "{\"what\":\"ever\"}",
    };
    lp_mcproute *r = route_with(16, A, B);

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        from_att(r, A, junk[i]);
        expect(r, CHILD, junk[i]);
        from_child(r, junk[i]);
        expect(r, A, junk[i]);
        expect(r, B, junk[i]);
    }
    assert_int_equal(lp_mcproute_inflight(r), 0);
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_refuses_requests_beyond_max_inflight(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(2, A, 0);

    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}");
    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"a\"}");
    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":\"three\",\"method\":\"a\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"a\"}");
    expect_json(r, A,
                "{\"jsonrpc\":\"2.0\",\"id\":\"three\",\"error\":{\"code\":-32000,"
                "\"message\":\"too many requests in flight\"}}");
    assert_int_equal(lp_mcproute_inflight(r), 2);
    /* Notifications are not requests: they still pass. */
    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"method\":\"n\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"method\":\"n\"}");
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    expect(r, A, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    from_att(r, A, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"a\"}");
    expect(r, CHILD, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"a\"}");
    expect_nothing(r);
    lp_mcproute_free(r);
}

static void test_mcproute_queued_counts_output_bytes(void **state)
{
    (void)state;
    lp_mcproute *r = route_with(16, A, 0);

    assert_int_equal(lp_mcproute_queued(r), 0);
    from_att(r, A, "{\"method\":\"n\"}");
    assert_int_equal(lp_mcproute_queued(r), 15);
    from_child(r, "[]");
    assert_int_equal(lp_mcproute_queued(r), 18);
    expect(r, CHILD, "{\"method\":\"n\"}");
    assert_int_equal(lp_mcproute_queued(r), 3);
    expect(r, A, "[]");
    expect_nothing(r);
    assert_int_equal(lp_mcproute_attach(r, 0), LP_ERR_INVALID);
    lp_mcproute_free(r);
    lp_mcproute_free(NULL);
}

/* The attachment table is full at LP_MCPROUTE_ATT_MAX: the next attach says so (the glue then
 * refuses that stream with a reason), leaves it unknown, and works again once one leaves. */
static void test_mcproute_attach_beyond_the_cap_is_refused_and_leaves_it_unknown(void **state)
{
    (void)state;
    lp_mcproute *r = lp_mcproute_new(16, SIZE_MAX);
    uint64_t extra = LP_MCPROUTE_ATT_MAX + 1;

    assert_non_null(r);
    for (uint64_t att = 1; att <= LP_MCPROUTE_ATT_MAX; att++)
        assert_int_equal(lp_mcproute_attach(r, att), LP_OK);
    assert_int_equal(lp_mcproute_attach(r, extra), LP_ERR_NOSPACE);
    assert_int_equal(lp_mcproute_attach(r, 1), LP_OK); /* attached already: still fine */
    assert_int_equal(lp_mcproute_from_att(r, extra, (const uint8_t *)"[]", 2), LP_ERR_NOT_FOUND);
    assert_int_equal(lp_mcproute_detach(r, extra), LP_ERR_NOT_FOUND);
    expect_nothing(r);
    assert_int_equal(lp_mcproute_detach(r, 7), LP_OK);
    assert_int_equal(lp_mcproute_attach(r, extra), LP_OK);
    assert_int_equal(lp_mcproute_from_att(r, extra, (const uint8_t *)"[]", 2), LP_OK);
    expect(r, CHILD, "[]");
    lp_mcproute_free(r);
}

/* ---- upgrade in place ------------------------------------------------------------------ */

/* One step of a scripted exchange: a line from a host or the child, an attach or detach, the
 * child's end or a fresh child, or the glue taking one output line. */
enum op_kind { OP_ATT, OP_CHILD, OP_ATTACH, OP_DETACH, OP_EXITED, OP_STARTED, OP_TAKE, OP_DRAIN };

struct op {
    enum op_kind kind;
    uint64_t att;
    const char *line;
};

#define REQ(id, method) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"" method "\"}"
#define TOKEN_REQ(id, token)                                                               \
    "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"method\":\"tools/call\",\"params\":{\"_meta\":{" \
    "\"progressToken\":" token "}}}"
#define RESULT(id) "{\"jsonrpc\":\"2.0\",\"id\":" id ",\"result\":{\"n\":" id "}}"
#define CANCEL(id) \
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":" id "}}"

/* Two hosts on one child: initialize while another is in flight, colliding ids and progress
 * tokens, a child request to a host, a cancellation, a host leaving with requests in flight, a
 * crash and a fresh child that is sent the cached initialize while host lines wait. */
static const struct op SCRIPT[] = {
    {OP_ATTACH, A, NULL},
    {OP_ATT, A, INIT_REQ("0")},
    {OP_ATTACH, B, NULL},
    {OP_ATT, B, INIT_REQ("0")},
    {OP_ATT, B, REQ("1", "tools/list")},
    {OP_TAKE, 0, NULL},
    {OP_CHILD, 0, INIT_RESP("0")},
    {OP_ATT, A, INITIALIZED},
    {OP_ATT, B, INITIALIZED},
    {OP_ATT, A, TOKEN_REQ("1", "\"t\"")},
    {OP_ATT, B, TOKEN_REQ("2", "\"t\"")},
    {OP_TAKE, 0, NULL},
    {OP_CHILD, 0,
     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{"
     "\"progressToken\":\"lp-2\",\"progress\":1.25}}"},
    {OP_CHILD, 0, "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\"}"},
    {OP_CHILD, 0, RESULT("\"lp-1\"")},
    {OP_ATT, B, "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"result\":{}}"},
    {OP_TAKE, 0, NULL},
    {OP_ATT, A, REQ("7", "tools/call")},
    {OP_ATT, A, CANCEL("7")},
    {OP_CHILD, 0, RESULT("7")},
    {OP_CHILD, 0, "{\"jsonrpc\":\"2.0\",\"id\":\"s2\",\"method\":\"roots/list\"}"},
    {OP_DRAIN, 0, NULL}, /* B's lines, before B leaves */
    {OP_DETACH, B, NULL},
    {OP_CHILD, 0, RESULT("1")},
    {OP_CHILD, 0, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}"},
    {OP_ATT, A, "not json at all"},
    {OP_ATT, A, REQ("8", "tools/list")},
    {OP_TAKE, 0, NULL},
    {OP_DRAIN, 0, NULL}, /* what a crash would drop, the glue wrote to the child before */
    {OP_EXITED, 0, NULL},
    {OP_ATTACH, A, NULL},
    {OP_ATT, A, REQ("9", "tools/list")},
    {OP_STARTED, 0, NULL},
    {OP_ATTACH, C, NULL},
    {OP_ATT, C, INIT_REQ("\"c\"")},
    {OP_ATT, A, REQ("10", "tools/list")},
    {OP_TAKE, 0, NULL},
    {OP_CHILD, 0, INIT_RESP("\"lp-init-1\"")},
    {OP_CHILD, 0, RESULT("9")},
    {OP_CHILD, 0, RESULT("10")},
    {OP_ATT, C, REQ("10", "tools/list")},
};
#define NOPS (sizeof(SCRIPT) / sizeof(SCRIPT[0]))

/* Everything the router handed the glue, in order: "dest:line" each. */
struct trace {
    char *text;
    size_t len, cap;
};

static void trace_line(struct trace *t, uint64_t dest, const char *line, size_t len)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "%llu:", (unsigned long long)dest);

    while (t->len + (size_t)n + len + 1 > t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4096;
        t->text = realloc(t->text, t->cap);
        assert_non_null(t->text);
    }
    memcpy(t->text + t->len, head, (size_t)n);
    memcpy(t->text + t->len + n, line, len);
    t->len += (size_t)n + len;
    t->text[t->len] = '\0';
}

static bool take_line(lp_mcproute *r, struct trace *t)
{
    uint64_t dest;
    char *line;
    size_t len;

    if (!lp_mcproute_next(r, &dest, &line, &len))
        return false;
    trace_line(t, dest, line, len);
    free(line);
    return true;
}

static void run_op(lp_mcproute *r, const struct op *op, struct trace *t)
{
    const uint8_t *line = (const uint8_t *)op->line;

    switch (op->kind) {
    case OP_ATT:
        assert_int_equal(lp_mcproute_from_att(r, op->att, line, strlen(op->line)), LP_OK);
        break;
    case OP_CHILD:
        assert_int_equal(lp_mcproute_from_child(r, line, strlen(op->line)), LP_OK);
        break;
    case OP_ATTACH:
        assert_int_equal(lp_mcproute_attach(r, op->att), LP_OK);
        break;
    case OP_DETACH:
        assert_int_equal(lp_mcproute_detach(r, op->att), LP_OK);
        break;
    case OP_EXITED:
        lp_mcproute_child_exited(r);
        break;
    case OP_STARTED:
        assert_int_equal(lp_mcproute_child_started(r), LP_OK);
        break;
    case OP_TAKE:
        (void)take_line(r, t);
        break;
    case OP_DRAIN:
        while (take_line(r, t))
            ;
        break;
    }
}

static size_t save_route(const lp_mcproute *r, struct lp_state_wr *w, const uint8_t **file)
{
    size_t len;

    lp_state_wr_init(w, 1u << 24);
    lp_state_begin(w);
    assert_int_equal(lp_mcproute_save(r, w), LP_OK);
    assert_int_equal(lp_state_finish(w, file, &len), LP_OK);
    return len;
}

/* The old process saves the router and ends; the new one loads it and saves it again: the
 * same bytes must come out. Returns the loaded router. */
static lp_mcproute *upgrade(lp_mcproute *r, size_t *bytes)
{
    struct lp_state_wr w, w2;
    struct lp_state_rd rd;
    const uint8_t *file, *file2;
    size_t len = save_route(r, &w, &file), len2;
    lp_mcproute *n;

    lp_mcproute_free(r);
    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    if (lp_mcproute_load(&rd, 16, SIZE_MAX, &n) != LP_OK)
        fail_msg("refused: %s", rd.why);
    assert_true(lp_state_at_end(&rd));
    len2 = save_route(n, &w2, &file2);
    assert_int_equal(len2, len);
    assert_memory_equal(file2, file, len);
    lp_state_wr_clear(&w);
    lp_state_wr_clear(&w2);
    *bytes = len;
    return n;
}

/* Runs the script, upgrading before op `at` (NOPS + 1: never); returns what the glue saw. */
static struct trace run_script(size_t at, size_t *bytes)
{
    lp_mcproute *r = lp_mcproute_new(16, SIZE_MAX);
    struct trace t = {0};

    assert_non_null(r);
    for (size_t i = 0; i < NOPS; i++) {
        if (i == at)
            r = upgrade(r, bytes);
        run_op(r, &SCRIPT[i], &t);
    }
    if (at == NOPS)
        r = upgrade(r, bytes);
    while (take_line(r, &t))
        ;
    lp_mcproute_free(r);
    return t;
}

static void test_mcproute_saved_and_loaded_at_every_step_routes_the_same_lines(void **state)
{
    (void)state;
    size_t bytes = 0, most = 0;
    struct trace ref = run_script(NOPS + 1, &bytes);

    /* The script reaches what it means to: renamed ids, the replayed initialize, a cancel. */
    assert_non_null(strstr(ref.text, "\"lp-init-1\""));
    assert_non_null(strstr(ref.text, "client went away"));
    assert_non_null(strstr(ref.text, "sampling/createMessage"));
    assert_non_null(strstr(ref.text, "\"progressToken\":\"t\",\"progress\":1.25"));
    for (size_t at = 0; at <= NOPS; at++) {
        struct trace t = run_script(at, &bytes);
        if (t.len != ref.len || memcmp(t.text, ref.text, ref.len) != 0)
            fail_msg("upgraded before step %zu:\n%s\nwant:\n%s", at, t.text, ref.text);
        most = LP_MAX(most, bytes);
        free(t.text);
    }
    assert_true(most > 500); /* some step held requests, lines and the cache */
    free(ref.text);
}

static lp_err load_route(struct lp_state_rd *rd, void *ctx)
{
    lp_mcproute *r;
    lp_err rc = lp_mcproute_load(rd, 16, SIZE_MAX, &r);
    uint64_t dest;
    char *line;
    size_t len;

    (void)ctx;
    if (rc != LP_OK)
        return rc;
    /* Whatever was taken must work on: a host line, a child line, a crash, a fresh child.
     * Any of them may refuse (the loaded state may be anything the loader accepts): only
     * crashes and leaks count here. */
    if (lp_mcproute_from_child(r, (const uint8_t *)RESULT("1"), strlen(RESULT("1"))) != LP_OK ||
        lp_mcproute_detach(r, A) != LP_OK) {
    }
    lp_mcproute_child_exited(r);
    if (lp_mcproute_child_started(r) != LP_OK) {
    }
    while (lp_mcproute_next(r, &dest, &line, &len))
        free(line);
    lp_mcproute_free(r);
    return LP_OK;
}

static void test_mcproute_loader_refuses_every_cut_and_bad_byte_with_a_reason(void **state)
{
    (void)state;
    lp_mcproute *r = lp_mcproute_new(16, SIZE_MAX);
    struct trace t = {0};
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len;

    /* Stop where the router holds the most: before the crash. */
    for (size_t i = 0; i < NOPS && SCRIPT[i].kind != OP_EXITED; i++)
        run_op(r, &SCRIPT[i], &t);
    len = save_route(r, &w, &file);
    state_check_loader(file, len, load_route, NULL, 4000);
    lp_state_wr_clear(&w);
    lp_mcproute_free(r);
    free(t.text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcproute_renames_an_id_another_attachment_has_in_flight),
        cmocka_unit_test(test_mcproute_fresh_ids_skip_ids_already_in_flight),
        cmocka_unit_test(test_mcproute_answers_a_later_initialize_from_the_cache),
        cmocka_unit_test(test_mcproute_caches_the_response_whose_id_matches_not_the_first_line),
        cmocka_unit_test(test_mcproute_initialize_during_the_first_waits_for_its_answer),
        cmocka_unit_test(test_mcproute_failed_first_initialize_lets_a_waiting_one_try),
        cmocka_unit_test(test_mcproute_forwards_initialized_once_per_child_life),
        cmocka_unit_test(test_mcproute_routes_progress_by_token_even_when_tokens_collide),
        cmocka_unit_test(test_mcproute_maps_a_hosts_cancellation_to_the_childs_id),
        cmocka_unit_test(test_mcproute_sends_child_requests_to_the_latest_attachment),
        cmocka_unit_test(
            test_mcproute_answers_a_child_request_with_an_error_when_nobody_is_attached),
        cmocka_unit_test(test_mcproute_broadcasts_other_child_notifications),
        cmocka_unit_test(test_mcproute_detach_cancels_requests_in_flight_and_drops_late_answers),
        cmocka_unit_test(test_mcproute_detach_never_cancels_initialize_and_still_caches_it),
        cmocka_unit_test(test_mcproute_detach_answers_the_childs_request_to_that_host),
        cmocka_unit_test(test_mcproute_orphans_keep_their_ids_reserved_but_are_bounded),
        cmocka_unit_test(test_mcproute_replays_initialize_to_a_fresh_child_and_holds_host_lines),
        cmocka_unit_test(test_mcproute_refuses_requests_once_the_held_lines_are_full),
        cmocka_unit_test(test_mcproute_held_lines_are_bounded_in_bytes),
        cmocka_unit_test(test_mcproute_waiting_initializes_are_bounded_in_bytes),
        cmocka_unit_test(test_mcproute_fresh_child_without_cache_takes_lines_at_once),
        cmocka_unit_test(test_mcproute_passes_a_2026_session_through_byte_for_byte),
        cmocka_unit_test(test_mcproute_forwards_lines_that_are_not_json_rpc_objects),
        cmocka_unit_test(test_mcproute_refuses_requests_beyond_max_inflight),
        cmocka_unit_test(test_mcproute_queued_counts_output_bytes),
        cmocka_unit_test(test_mcproute_attach_beyond_the_cap_is_refused_and_leaves_it_unknown),
        cmocka_unit_test(test_mcproute_saved_and_loaded_at_every_step_routes_the_same_lines),
        cmocka_unit_test(test_mcproute_loader_refuses_every_cut_and_bad_byte_with_a_reason),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
