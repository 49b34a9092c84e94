/* test_admit.c — caps on unauthenticated connections and the delay after failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "limpet/admit.h"

static const uint8_t A[4] = {10, 0, 0, 1}, B[4] = {10, 0, 0, 2};
static const uint8_t V6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static lp_admit *make(size_t total, size_t per)
{
    struct lp_admit_config cfg = {total, per, 100, 10000};
    lp_admit *a;
    assert_int_equal(lp_admit_new(&cfg, &a), LP_OK);
    return a;
}

static void test_admit_caps_one_source_and_lets_others_in(void **state)
{
    (void)state;
    lp_admit *a = make(100, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lp_admit_enter(a, A, 4, 0), LP_ADMIT_OK);
    assert_int_equal(lp_admit_enter(a, A, 4, 0), LP_ADMIT_SOURCE_FULL);
    assert_int_equal(lp_admit_enter(a, B, 4, 0), LP_ADMIT_OK); /* another address */
    lp_admit_leave(a, A, 4);
    assert_int_equal(lp_admit_enter(a, A, 4, 0), LP_ADMIT_OK); /* room again */
    assert_int_equal(lp_admit_pending(a), 4);
    lp_admit_free(a);
}

static void test_admit_caps_the_total(void **state)
{
    (void)state;
    lp_admit *a = make(5, 100);
    uint8_t src[4] = {192, 0, 2, 0};
    for (int i = 0; i < 5; i++) {
        src[3] = (uint8_t)i;
        assert_int_equal(lp_admit_enter(a, src, 4, 0), LP_ADMIT_OK);
    }
    assert_int_equal(lp_admit_enter(a, V6, 16, 0), LP_ADMIT_FULL);
    src[3] = 2;
    lp_admit_leave(a, src, 4);
    assert_int_equal(lp_admit_enter(a, V6, 16, 0), LP_ADMIT_OK);
    lp_admit_free(a);
}

static void test_admit_failure_delay_doubles_and_success_clears_it(void **state)
{
    (void)state;
    lp_admit *a = make(100, 10);
    lp_admit_failed(a, A, 4, 1000);
    assert_int_equal(lp_admit_enter(a, A, 4, 1099), LP_ADMIT_PENALTY);
    assert_int_equal(lp_admit_enter(a, B, 4, 1099), LP_ADMIT_OK); /* others unaffected */
    assert_int_equal(lp_admit_enter(a, A, 4, 1100), LP_ADMIT_OK);
    lp_admit_leave(a, A, 4);
    lp_admit_failed(a, A, 4, 2000); /* second: 200 ms */
    assert_int_equal(lp_admit_enter(a, A, 4, 2199), LP_ADMIT_PENALTY);
    assert_int_equal(lp_admit_enter(a, A, 4, 2200), LP_ADMIT_OK);
    lp_admit_leave(a, A, 4);
    for (int i = 0; i < 40; i++) /* capped at max */
        lp_admit_failed(a, A, 4, 3000);
    assert_int_equal(lp_admit_enter(a, A, 4, 12999), LP_ADMIT_PENALTY);
    assert_int_equal(lp_admit_enter(a, A, 4, 13000), LP_ADMIT_OK);
    lp_admit_leave(a, A, 4);
    lp_admit_failed(a, A, 4, 20000);
    lp_admit_succeeded(a, A, 4);
    assert_int_equal(lp_admit_enter(a, A, 4, 20000), LP_ADMIT_OK);
    lp_admit_free(a);
}

/* Many sources that fail once each: the table forgets the oldest idle ones instead of
 * growing, and pending connections are never forgotten. */
static void test_admit_table_stays_bounded_and_keeps_pending_sources(void **state)
{
    (void)state;
    lp_admit *a = make(10, 10);
    assert_int_equal(lp_admit_enter(a, V6, 16, 0), LP_ADMIT_OK);
    uint8_t src[4] = {198, 51, 0, 0};
    for (int i = 0; i < 5000; i++) {
        src[2] = (uint8_t)(i >> 8);
        src[3] = (uint8_t)i;
        lp_admit_failed(a, src, 4, (lp_time)i + 1);
    }
    lp_admit_leave(a, V6, 16); /* still known: pending was counted */
    assert_int_equal(lp_admit_pending(a), 0);
    lp_admit_free(a);
}

static void test_admit_leave_of_unknown_source_is_harmless(void **state)
{
    (void)state;
    lp_admit *a = make(10, 10);
    lp_admit_leave(a, A, 4);
    assert_int_equal(lp_admit_pending(a), 0);
    lp_admit_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_caps_one_source_and_lets_others_in),
        cmocka_unit_test(test_admit_caps_the_total),
        cmocka_unit_test(test_admit_failure_delay_doubles_and_success_clears_it),
        cmocka_unit_test(test_admit_table_stays_bounded_and_keeps_pending_sources),
        cmocka_unit_test(test_admit_leave_of_unknown_source_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
