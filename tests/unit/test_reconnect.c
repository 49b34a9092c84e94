/* test_reconnect.c — the client's single-flight reconnect loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limpet/reconnect.h"

static void test_reconnect_first_attempt_is_immediate(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 1000);
    assert_int_equal(lp_reconnect_schedule(&r, 1000, UINT32_MAX), 1000);
    assert_true(lp_reconnect_start(&r, 1000, &a));
    assert_int_equal(r.state, LP_RC_CONNECTING);
}

static void test_reconnect_allows_one_attempt_in_flight(void **state)
{
    struct lp_reconnect r;
    uint64_t a, b;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 0);
    lp_reconnect_schedule(&r, 0, 0);
    /* a second request while one is scheduled changes nothing */
    assert_int_equal(lp_reconnect_schedule(&r, 0, 0), LP_TIME_NEVER);
    assert_true(lp_reconnect_start(&r, 0, &a));
    /* nor while it is in flight */
    assert_int_equal(lp_reconnect_schedule(&r, 5, 0), LP_TIME_NEVER);
    assert_false(lp_reconnect_start(&r, 5, &b));
    assert_int_equal(r.attempts, 1);
}

static void test_reconnect_waits_for_backoff_after_failure(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 0);
    lp_reconnect_schedule(&r, 0, UINT32_MAX);
    lp_reconnect_start(&r, 0, &a);
    lp_reconnect_failed(&r, a);
    lp_time at = lp_reconnect_schedule(&r, 10, UINT32_MAX);
    assert_int_equal(at, 110);
    assert_false(lp_reconnect_start(&r, 109, &a)); /* too early */
    assert_true(lp_reconnect_start(&r, 110, &a));
}

static void test_reconnect_ignores_stale_attempt_results(void **state)
{
    struct lp_reconnect r;
    uint64_t first, second;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 0);
    lp_reconnect_schedule(&r, 0, 0);
    lp_reconnect_start(&r, 0, &first);
    lp_reconnect_failed(&r, first);
    lp_reconnect_schedule(&r, 0, 0);
    lp_reconnect_start(&r, 0, &second);
    lp_reconnect_failed(&r, first); /* a late report from the first attempt */
    assert_int_equal(r.state, LP_RC_CONNECTING);
    lp_reconnect_live(&r, first);
    assert_int_equal(r.state, LP_RC_CONNECTING);
    lp_reconnect_live(&r, second);
    assert_int_equal(r.state, LP_RC_LIVE);
}

static void test_reconnect_close_cancels_attempt_in_flight(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 0);
    lp_reconnect_schedule(&r, 0, 0);
    lp_reconnect_start(&r, 0, &a);
    lp_reconnect_close(&r);
    lp_reconnect_live(&r, a); /* the cancelled attempt completes late */
    assert_int_equal(r.state, LP_RC_CLOSED);
    assert_int_equal(lp_reconnect_schedule(&r, 1, 0), LP_TIME_NEVER);
}

static void test_reconnect_close_cancels_scheduled_attempt(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 60000, 0);
    lp_reconnect_schedule(&r, 0, UINT32_MAX);
    lp_reconnect_close(&r);
    assert_false(lp_reconnect_start(&r, 100000, &a));
}

static void test_reconnect_gives_up_after_limit(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 10000, 0);
    lp_time now = 0;
    for (int i = 0; i < 1000 && r.state != LP_RC_GAVE_UP; i++) {
        lp_time at = lp_reconnect_schedule(&r, now, UINT32_MAX);
        if (at == LP_TIME_NEVER)
            break;
        now = at;
        assert_true(lp_reconnect_start(&r, now, &a));
        lp_reconnect_failed(&r, a);
    }
    assert_int_equal(r.state, LP_RC_GAVE_UP);
    /* the last attempt was scheduled before the limit, at most one max_delay later */
    assert_true(now >= 10000 - 5000);
    assert_true(now < 10000 + 5000);
}

static void test_reconnect_live_resets_backoff_and_give_up_clock(void **state)
{
    struct lp_reconnect r;
    uint64_t a;
    (void)state;
    lp_reconnect_init(&r, 100, 5000, 10000, 0);
    for (int i = 0; i < 5; i++) {
        lp_time at = lp_reconnect_schedule(&r, 9000, UINT32_MAX);
        lp_reconnect_start(&r, at, &a);
        if (i < 4)
            lp_reconnect_failed(&r, a);
    }
    lp_reconnect_live(&r, a);
    lp_reconnect_down(&r, 50000);
    /* down just now: not giving up, and the first retry is immediate again */
    assert_int_equal(lp_reconnect_schedule(&r, 50000, UINT32_MAX), 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconnect_first_attempt_is_immediate),
        cmocka_unit_test(test_reconnect_allows_one_attempt_in_flight),
        cmocka_unit_test(test_reconnect_waits_for_backoff_after_failure),
        cmocka_unit_test(test_reconnect_ignores_stale_attempt_results),
        cmocka_unit_test(test_reconnect_close_cancels_attempt_in_flight),
        cmocka_unit_test(test_reconnect_close_cancels_scheduled_attempt),
        cmocka_unit_test(test_reconnect_gives_up_after_limit),
        cmocka_unit_test(test_reconnect_live_resets_backoff_and_give_up_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
