/* test_ctl.c — the pure half of ctl: histogram bucketing, REJECT reasons, the Prometheus
 * exposition and the human status page rendered from a snapshot document; and the snapshot
 * of a runtime holding one session (no link, no traffic, so nothing depends on timing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/ctl.h"
#include "limpet/config_load.h"
#include "limpet/frame.h"
#include "limpet/session.h"

/* ---- helpers ------------------------------------------------------------------------------- */

/* A document as lp_ctl_snapshot builds it: two sessions (one live with two streams, one
 * detached), 3 resumes at 5 ms, 70 ms and 2 minutes, two refusals. */
static json_t *sample_doc(void)
{
    json_error_t e;
    json_t *doc = json_loads(
        "{\"process\": {\"role\": \"server\", \"pid\": 42, \"version\": \"0.1.0\", "
        "\"uptime_ms\": 61000, \"sessions_created\": 5, \"sessions_ended\": 3, "
        "\"streams_opened\": 9, \"streams_refused\": 1, \"reconnects\": 4, \"resumes\": 3, "
        "\"rekeys\": 5, "
        "\"bytes_in\": 1000, \"bytes_out\": 2048, \"mcp_processes\": 2, "
        "\"memory_buffered\": 3145728, \"memory_limit\": 1073741824, "
        "\"handshakes_refused\": {\"timeout\": 1, \"reject_auth\": 1}, "
        "\"resume_ms\": {\"count\": 3, \"sum_ms\": 120075, \"buckets\": ["
        "{\"le_ms\": 10, \"count\": 1}, {\"le_ms\": 100, \"count\": 2}, "
        "{\"le_ms\": 60000, \"count\": 2}]}}, "
        "\"sessions\": ["
        "{\"id\": \"1a2b3c4d\", \"identity\": \"laptop\", \"peer\": \"127.0.0.1:5000\", "
        "\"state\": \"live\", \"uptime_ms\": 30000, \"detached_ms\": 0, \"reconnects\": 1, "
        "\"rekeys\": 2, \"tls_suite\": \"TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256\", "
        "\"record_layer\": \"openssl\", "
        "\"rtt_ms\": 3, \"bytes_in\": 500, \"bytes_out\": 1500, \"replay_used\": 10, "
        "\"replay_cap\": 8388608, \"streams_open\": 3, \"streams_truncated\": true, "
        "\"streams\": [{\"id\": 1, \"kind\": \"tcp\", \"target\": \"db:5432\", "
        "\"bytes_up\": 100, \"bytes_down\": 200}, {\"id\": 3, \"kind\": \"mcp\", \"target\": "
        "\"\", \"bytes_up\": 0, \"bytes_down\": 0}]}, "
        "{\"id\": \"99887766\", \"identity\": \"\", \"peer\": \"[::1]:6000\", "
        "\"state\": \"detached\", \"uptime_ms\": 4000, \"detached_ms\": 2500, \"reconnects\": 0, "
        "\"rtt_ms\": 0, \"bytes_in\": 0, \"bytes_out\": 0, \"replay_used\": 0, "
        "\"replay_cap\": 65536, \"streams_open\": 0, \"streams_truncated\": false, "
        "\"streams\": []}]}",
        0, &e);
    if (doc == NULL)
        fail_msg("sample: %s at %d", e.text, e.line);
    return doc;
}

/* The value of the one sample line "name{labels} value" (labels as written, "" for none). */
static double sample_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    fail_msg("no sample %s in:\n%s", series, text);
    return -1;
}

/* ---- histogram and reasons ----------------------------------------------------------------- */

static void test_hist_puts_a_sample_in_the_first_bucket_whose_bound_holds_it(void **state)
{
    struct lp_hist h;
    (void)state;
    memset(&h, 0, sizeof(h));
    lp_hist_observe(&h, 0);
    lp_hist_observe(&h, 10); /* bounds are inclusive, as Prometheus' le */
    lp_hist_observe(&h, 11);
    lp_hist_observe(&h, 60000);
    lp_hist_observe(&h, 60001);
    assert_int_equal(h.buckets[0], 2);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.buckets[LP_HIST_BOUNDS - 1], 1);
    assert_int_equal(h.buckets[LP_HIST_BOUNDS], 1); /* +Inf */
    assert_int_equal(h.count, 5);
    assert_int_equal(h.sum_ms, 0 + 10 + 11 + 60000 + 60001);
}

static void test_hist_bounds_grow_strictly(void **state)
{
    (void)state;
    for (size_t i = 1; i < LP_HIST_BOUNDS; i++)
        assert_true(lp_hist_bounds[i] > lp_hist_bounds[i - 1]);
}

static void test_ctl_reject_codes_map_to_their_reasons(void **state)
{
    (void)state;
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_VERSION), LP_HS_REJECT_VERSION);
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_SESSION_UNKNOWN),
                     LP_HS_REJECT_SESSION_UNKNOWN);
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_SEQ_OUT_OF_RANGE), LP_HS_REJECT_SEQ);
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_AUTH), LP_HS_REJECT_AUTH);
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_LIMIT), LP_HS_REJECT_LIMIT);
    assert_int_equal(lp_hs_reason_of_reject(LP_REJECT_PROTOCOL), LP_HS_REJECT_OTHER);
    assert_int_equal(lp_hs_reason_of_reject(0xffff), LP_HS_REJECT_OTHER);
    assert_string_equal(lp_hs_reason_name(LP_HS_REJECT_AUTH), "reject_auth");
    assert_string_equal(lp_hs_reason_name(LP_HS_REASONS), "?");
    for (int r = 0; r < LP_HS_REASONS; r++) { /* label values: [a-z_] only, no quoting needed */
        const char *n = lp_hs_reason_name((enum lp_hs_reason)r);
        assert_true(n[0] != '\0' && strspn(n, "abcdefghijklmnopqrstuvwxyz_") == strlen(n));
    }
}

/* ---- Prometheus exposition ------------------------------------------------------------------ */

/* Every sample belongs to a family announced just before by # HELP and # TYPE, and every line
 * is "name[{labels}] number". */
static void test_ctl_metrics_announce_every_family_with_help_and_type(void **state)
{
    json_t *doc = sample_doc();
    char *text = lp_ctl_render_metrics(doc);
    char family[128] = "";
    size_t samples = 0;
    (void)state;

    assert_non_null(text);
    for (char *line = text, *nl; *line; line = nl + 1) {
        assert_non_null(nl = strchr(line, '\n')); /* every line ends with a newline */
        *nl = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            snprintf(family, sizeof(family), "%.*s", (int)strcspn(line + 7, " "), line + 7);
            assert_true(strlen(line) > 7 + strlen(family) + 1); /* some help text */
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_true(strncmp(line + 7, family, strlen(family)) == 0);
            const char *type = line + 7 + strlen(family) + 1;
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
        } else {
            char *sp = strrchr(line, ' '), *end;
            assert_true(family[0] != '\0');
            assert_true(strncmp(line, family, strlen(family)) == 0);
            assert_non_null(sp);
            strtod(sp + 1, &end);
            assert_true(*end == '\0' && end != sp + 1);
            samples++;
        }
    }
    assert_true(samples > 20);
    free(text);
    json_decref(doc);
}

static void test_ctl_metrics_count_sessions_by_state_and_sum_streams(void **state)
{
    json_t *doc = sample_doc();
    char *text = lp_ctl_render_metrics(doc);
    (void)state;
    assert_non_null(text);
    assert_true(sample_value(text, "limpet_sessions{state=\"live\"}") == 1);
    assert_true(sample_value(text, "limpet_sessions{state=\"detached\"}") == 1);
    assert_true(sample_value(text, "limpet_streams") == 3);
    assert_true(sample_value(text, "limpet_bytes_total{direction=\"in\"}") == 1000);
    assert_true(sample_value(text, "limpet_bytes_total{direction=\"out\"}") == 2048);
    assert_true(sample_value(text, "limpet_reconnects_total") == 4);
    assert_true(sample_value(text, "limpet_resumes_total") == 3);
    assert_true(sample_value(text, "limpet_rekeys_total") == 5);
    assert_true(sample_value(text, "limpet_streams_refused_total") == 1);
    assert_true(sample_value(text, "limpet_mcp_pool_processes") == 2);
    assert_true(sample_value(text, "limpet_memory_buffered_bytes") == 3145728);
    assert_true(sample_value(text, "limpet_handshakes_refused_total{reason=\"timeout\"}") == 1);
    assert_true(sample_value(text, "limpet_handshakes_refused_total{reason=\"reject_auth\"}") == 1);
    assert_true(sample_value(text, "limpet_handshakes_refused_total{reason=\"closed\"}") == 0);
    free(text);
    json_decref(doc);
}

static void test_ctl_metrics_histogram_is_in_seconds_and_ends_at_inf(void **state)
{
    json_t *doc = sample_doc();
    char *text = lp_ctl_render_metrics(doc);
    (void)state;
    assert_non_null(text);
    assert_true(sample_value(text, "limpet_resume_seconds_bucket{le=\"0.01\"}") == 1);
    assert_true(sample_value(text, "limpet_resume_seconds_bucket{le=\"0.1\"}") == 2);
    assert_true(sample_value(text, "limpet_resume_seconds_bucket{le=\"60\"}") == 2);
    assert_true(sample_value(text, "limpet_resume_seconds_bucket{le=\"+Inf\"}") == 3);
    assert_true(sample_value(text, "limpet_resume_seconds_count") == 3);
    assert_true(sample_value(text, "limpet_resume_seconds_sum") == 120.075);
    free(text);
    json_decref(doc);
}

/* A document with nothing in it still renders (zeros), never crashes. */
static void test_ctl_renderers_take_an_empty_document(void **state)
{
    json_t *doc = json_object();
    char *m = lp_ctl_render_metrics(doc), *t = lp_ctl_render_text(doc);
    (void)state;
    assert_non_null(m);
    assert_non_null(t);
    assert_true(sample_value(m, "limpet_sessions{state=\"live\"}") == 0);
    assert_true(sample_value(m, "limpet_resume_seconds_bucket{le=\"+Inf\"}") == 0);
    assert_non_null(strstr(t, "0 sessions"));
    free(m);
    free(t);
    json_decref(doc);
}

/* ---- the human page ------------------------------------------------------------------------- */

static void test_ctl_text_shows_each_session_with_its_streams(void **state)
{
    json_t *doc = sample_doc();
    char *t = lp_ctl_render_text(doc);
    (void)state;
    assert_non_null(t);
    assert_non_null(strstr(t, "limpet server 0.1.0, pid 42, up 1m1s: 2 sessions, 3 resumes, "
                              "5 rekeys, 2 handshakes refused\n"
                              "memory buffered 3.0 MiB of 1.0 GiB (limits.memory)\n"));
    assert_non_null(strstr(t, "session 1a2b3c4d  identity laptop  peer 127.0.0.1:5000\n"));
    assert_non_null(strstr(t, "  state live, up 30.0s, reconnects 1, last rtt 3ms\n"));
    assert_non_null(strstr(t, "  tls TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256, records by "
                              "openssl, rekeys 2\n"));
    assert_non_null(strstr(t, "  bytes in 500 B, out 1.5 KiB; replay buffer 10 B of 8.0 MiB\n"));
    assert_non_null(strstr(t, "    stream 1  tcp db:5432  up 100 B  down 200 B\n"));
    assert_non_null(strstr(t, "    stream 3  mcp -  up 0 B  down 0 B\n"));
    assert_non_null(strstr(t, "    ... 1 more not listed\n"));
    assert_non_null(strstr(t, "session 99887766  identity -  peer [::1]:6000\n"));
    assert_non_null(strstr(t, "  state detached for 2.5s, up 4.0s"));
    free(t);
    json_decref(doc);
}

/* A server upgraded in place says so on its first line's heels, and counts it for Prometheus. */
static void test_ctl_an_upgraded_server_shows_its_upgrades_and_counts_them(void **state)
{
    json_t *doc = sample_doc(), *p;
    char *t, *m;
    (void)state;

    t = lp_ctl_render_text(doc);
    assert_non_null(t);
    assert_null(strstr(t, "upgraded")); /* none yet: nothing said */
    free(t);
    p = json_object_get(doc, "process");
    json_object_set_new(p, "upgrades", json_integer(3));
    json_object_set_new(p, "upgrade_failures", json_integer(1));
    json_object_set_new(p, "sessions_restored", json_integer(7));
    json_object_set_new(p, "last_upgrade_ms", json_integer(12000));
    t = lp_ctl_render_text(doc);
    m = lp_ctl_render_metrics(doc);
    assert_non_null(t);
    assert_non_null(m);
    assert_non_null(
        strstr(t, "handshakes refused\nmemory buffered 3.0 MiB of 1.0 GiB (limits.memory)\n"
                  "  upgraded in place 3 times (1 failed), the "
                  "last 12.0s ago; 7 sessions restored\n"));
    assert_true(sample_value(m, "limpet_upgrades_total") == 3);
    assert_true(sample_value(m, "limpet_upgrade_failures_total") == 1);
    assert_true(sample_value(m, "limpet_sessions_restored_total") == 7);
    free(t);
    free(m);
    json_decref(doc);
}

/* ---- the snapshot of a runtime -------------------------------------------------------------- */

static void test_ctl_snapshot_lists_a_new_session_as_detached(void **state)
{
    struct lp_runtime rt;
    struct lp_config cfg;
    struct lp_session *s = NULL;
    static const struct lp_session_hooks hooks = {0};
    char err[LP_CONFIG_ERR_MAX];
    (void)state;

    lp_config_defaults(&cfg);
    assert_int_equal(lp_config_finish(&cfg, err, sizeof(err)), LP_OK);
    lp_runtime_init(&rt, EV_DEFAULT);
    assert_int_equal(lp_session_new(&rt, &cfg, true, &hooks, NULL, &s), LP_OK);
    s->bytes_in = 7;
    json_t *doc = lp_ctl_snapshot(&rt, "client", lp_now());
    assert_non_null(doc);
    json_t *p = json_object_get(doc, "process"), *ss = json_object_get(doc, "sessions");
    assert_string_equal(json_string_value(json_object_get(p, "role")), "client");
    assert_int_equal(json_integer_value(json_object_get(p, "sessions_created")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "bytes_in")), 7);
    assert_int_equal(json_array_size(json_object_get(json_object_get(p, "resume_ms"), "buckets")),
                     LP_HIST_BOUNDS);
    assert_int_equal(json_integer_value(json_object_get(p, "upgrades")), 0);
    assert_true(json_is_null(json_object_get(p, "last_upgrade_ms"))); /* never upgraded */
    assert_int_equal(json_array_size(ss), 1);
    json_t *js = json_array_get(ss, 0);
    assert_string_equal(json_string_value(json_object_get(js, "state")), "detached");
    assert_int_equal(json_integer_value(json_object_get(js, "replay_cap")),
                     (json_int_t)cfg.session.replay_buffer);
    assert_int_equal(json_array_size(json_object_get(js, "streams")), 0);
    json_decref(doc);

    /* a closed session is no longer listed, and its bytes stay in the process total */
    lp_session_close(s, LP_RST_SHUTDOWN, "test");
    doc = lp_ctl_snapshot(&rt, "client", lp_now());
    assert_int_equal(json_array_size(json_object_get(doc, "sessions")), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(doc, "process"), "sessions_ended")), 1);
    json_decref(doc);
    lp_runtime_clear(&rt);
    assert_int_equal(rt.stats.bytes_in_ended, 7);
    assert_null(rt.all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_puts_a_sample_in_the_first_bucket_whose_bound_holds_it),
        cmocka_unit_test(test_hist_bounds_grow_strictly),
        cmocka_unit_test(test_ctl_reject_codes_map_to_their_reasons),
        cmocka_unit_test(test_ctl_metrics_announce_every_family_with_help_and_type),
        cmocka_unit_test(test_ctl_metrics_count_sessions_by_state_and_sum_streams),
        cmocka_unit_test(test_ctl_metrics_histogram_is_in_seconds_and_ends_at_inf),
        cmocka_unit_test(test_ctl_renderers_take_an_empty_document),
        cmocka_unit_test(test_ctl_text_shows_each_session_with_its_streams),
        cmocka_unit_test(test_ctl_an_upgraded_server_shows_its_upgrades_and_counts_them),
        cmocka_unit_test(test_ctl_snapshot_lists_a_new_session_as_detached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
