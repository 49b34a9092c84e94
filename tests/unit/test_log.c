/* test_log.c — one line per event on stderr, never more, never a raw control character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "limpet/log.h"

/* Runs lp_log with stderr redirected into a pipe and returns what was written. */
static size_t capture(char *out, size_t cap, int level, const char *msg)
{
    int fds[2], saved = dup(2);
    assert_int_equal(pipe(fds), 0);
    dup2(fds[1], 2);
    lp_log(level, "%s", msg);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    out[n] = '\0';
    return n;
}

static void test_log_writes_one_line_with_tag_and_level(void **state)
{
    char buf[2048];
    (void)state;
    lp_log_set_level(LP_LOG_INFO);
    lp_log_set_tag("server");
    size_t n = capture(buf, sizeof(buf), LP_LOG_INFO, "sess=1a2b3c4d resumed");
    assert_true(n > 0);
    assert_non_null(strstr(buf, " server INFO sess=1a2b3c4d resumed\n"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* exactly one line */
    assert_true(buf[4] == '-' && buf[10] == 'T');     /* ISO-8601 time first */
}

static void test_log_escapes_newlines_so_an_event_stays_one_line(void **state)
{
    char buf[2048];
    (void)state;
    lp_log_set_level(LP_LOG_INFO);
    size_t n = capture(buf, sizeof(buf), LP_LOG_WARN, "reason from peer:\nFAKE INFO line\r\x1b[2J");
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    assert_null(strchr(buf, '\r'));
    assert_null(strchr(buf, '\x1b'));
    assert_non_null(strstr(buf, "FAKE INFO line"));
}

static void test_log_filters_below_level(void **state)
{
    char buf[256];
    (void)state;
    lp_log_set_level(LP_LOG_WARN);
    assert_int_equal(capture(buf, sizeof(buf), LP_LOG_INFO, "hidden"), 0);
    assert_true(capture(buf, sizeof(buf), LP_LOG_ERROR, "shown") > 0);
    lp_log_set_level(LP_LOG_INFO);
}

static void test_log_cuts_long_messages_to_one_line(void **state)
{
    static char big[8192], buf[16384];
    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    lp_log_set_level(LP_LOG_INFO);
    size_t n = capture(buf, sizeof(buf), LP_LOG_INFO, big);
    assert_true(n > 100 && n < sizeof(big));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
}

static void test_log_json_is_one_valid_object_per_line_with_ids_as_fields(void **state)
{
    char buf[4096];
    (void)state;
    lp_log_set_level(LP_LOG_INFO);
    lp_log_set_tag("server");
    lp_log_set_json(true);
    size_t n = capture(
        buf, sizeof(buf), LP_LOG_WARN,
        "sess=1a2b3c4d stream=7 reset: \"quoted\" \\ tab\there\nFAKE \xff\xfe \xe2\x80\x94");
    lp_log_set_json(false);
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* exactly one line */
    assert_true(strncmp(buf, "{\"time\":\"", 9) == 0);
    assert_non_null(strstr(buf, "\"proc\":\"server\",\"level\":\"WARN\",\"sess\":\"1a2b3c4d\","
                                "\"stream\":7,\"msg\":\"sess=1a2b3c4d stream=7 reset: "
                                "\\\"quoted\\\" \\\\ tab\\u0009here\\u000aFAKE "
                                "\\ufffd\\ufffd \xe2\x80\x94\"}\n"));
    /* no sess= prefix: no sess field */
    lp_log_set_json(true);
    capture(buf, sizeof(buf), LP_LOG_INFO, "listening on 127.0.0.1:7070");
    lp_log_set_json(false);
    assert_null(strstr(buf, "\"sess\""));
    assert_non_null(strstr(buf, "\"msg\":\"listening on 127.0.0.1:7070\"}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_json_is_one_valid_object_per_line_with_ids_as_fields),
        cmocka_unit_test(test_log_writes_one_line_with_tag_and_level),
        cmocka_unit_test(test_log_escapes_newlines_so_an_event_stays_one_line),
        cmocka_unit_test(test_log_filters_below_level),
        cmocka_unit_test(test_log_cuts_long_messages_to_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
