/* test_backoff.c — full-jitter exponential backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limpet/backoff.h"

static void test_backoff_first_retry_is_immediate(void **state)
{
    struct lp_backoff b;
    (void)state;
    lp_backoff_init(&b, 100, 5000);
    assert_int_equal(lp_backoff_next(&b, UINT32_MAX), 0);
}

/* With the largest random value the delay is the cap of each step: 100, 200, 400, ... 5000. */
static void test_backoff_cap_doubles_up_to_max(void **state)
{
    struct lp_backoff b;
    static const lp_time want[] = {0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    (void)state;
    lp_backoff_init(&b, 100, 5000);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        lp_time d = lp_backoff_next(&b, UINT32_MAX);
        /* rnd * (cap + 1) >> 32 with rnd = 2^32 - 1 is cap exactly */
        assert_int_equal(d, want[i]);
    }
}

static void test_backoff_jitter_spans_zero_to_cap(void **state)
{
    struct lp_backoff b;
    (void)state;
    lp_backoff_init(&b, 100, 5000);
    lp_backoff_next(&b, 0);
    assert_int_equal(lp_backoff_next(&b, 0), 0);          /* full jitter reaches zero */
    assert_int_equal(lp_backoff_next(&b, 1u << 31), 100); /* half of cap 200 */
}

static void test_backoff_reset_starts_over(void **state)
{
    struct lp_backoff b;
    (void)state;
    lp_backoff_init(&b, 100, 5000);
    for (int i = 0; i < 20; i++)
        lp_backoff_next(&b, UINT32_MAX);
    assert_int_equal(lp_backoff_next(&b, UINT32_MAX), 5000);
    lp_backoff_reset(&b);
    assert_int_equal(lp_backoff_next(&b, UINT32_MAX), 0);
    assert_int_equal(lp_backoff_next(&b, UINT32_MAX), 100);
}

static void test_backoff_survives_many_attempts(void **state)
{
    struct lp_backoff b;
    (void)state;
    lp_backoff_init(&b, 1, 3600000);
    for (int i = 0; i < 100000; i++)
        assert_true(lp_backoff_next(&b, UINT32_MAX) <= 3600000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_first_retry_is_immediate),
        cmocka_unit_test(test_backoff_cap_doubles_up_to_max),
        cmocka_unit_test(test_backoff_jitter_spans_zero_to_cap),
        cmocka_unit_test(test_backoff_reset_starts_over),
        cmocka_unit_test(test_backoff_survives_many_attempts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
