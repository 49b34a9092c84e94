/* test_admit.c — caps on unauthenticated connections, eviction of the oldest stranger when the
 * table is full, IPv6 sources counted per /64, and the delay after failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/admit.h"

static const uint8_t A[4] = {10, 0, 0, 1}, B[4] = {10, 0, 0, 2};
static const uint8_t V6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

#define CONNS 64
static struct lp_admit_entry conn[CONNS]; /* the glue's connections, by index */

static lp_admit *make(size_t total, size_t per)
{
    struct lp_admit_config cfg = {total, per, 100, 10000};
    lp_admit *a;
    memset(conn, 0, sizeof(conn));
    assert_int_equal(lp_admit_new(&cfg, &a), LP_OK);
    return a;
}

/* Enters connection i from addr; returns the verdict and asserts nothing was evicted. */
static enum lp_admit_verdict enter(lp_admit *a, int i, const uint8_t *addr, size_t len, lp_time now)
{
    struct lp_admit_entry *evicted = NULL;
    enum lp_admit_verdict v = lp_admit_enter(a, &conn[i], addr, len, now, &evicted);
    assert_null(evicted);
    return v;
}

/* Enters connection i, which must be admitted by dropping the one returned (its index). */
static int enter_evicting(lp_admit *a, int i, const uint8_t *addr, size_t len, lp_time now)
{
    struct lp_admit_entry *evicted = NULL;
    assert_int_equal(lp_admit_enter(a, &conn[i], addr, len, now, &evicted), LP_ADMIT_OK);
    assert_non_null(evicted);
    return (int)(evicted - conn);
}

static void test_admit_caps_one_source_and_lets_others_in(void **state)
{
    (void)state;
    lp_admit *a = make(100, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(enter(a, i, A, 4, 0), LP_ADMIT_OK);
    assert_int_equal(enter(a, 3, A, 4, 0), LP_ADMIT_SOURCE_FULL);
    assert_int_equal(enter(a, 4, B, 4, 0), LP_ADMIT_OK); /* another address */
    lp_admit_leave(a, &conn[1]);
    assert_int_equal(enter(a, 5, A, 4, 0), LP_ADMIT_OK); /* room again */
    assert_int_equal(lp_admit_pending(a), 4);
    lp_admit_free(a);
}

/* The issue 12 lock-out: a full table used to refuse every newcomer until the strangers timed
 * out. Now the newcomer gets in and the oldest waiting connection goes, in age order. */
static void test_admit_full_table_evicts_the_oldest_waiting_connection(void **state)
{
    (void)state;
    lp_admit *a = make(5, 100);
    uint8_t src[4] = {192, 0, 2, 0};
    for (int i = 0; i < 5; i++) {
        src[3] = (uint8_t)i;
        assert_int_equal(enter(a, i, src, 4, (lp_time)i), LP_ADMIT_OK);
    }
    assert_int_equal(enter_evicting(a, 5, V6, 16, 10), 0);
    assert_int_equal(enter_evicting(a, 6, A, 4, 11), 1);
    assert_int_equal(lp_admit_pending(a), 5);
    lp_admit_leave(a, &conn[0]); /* the glue closing the evicted one: already not counted */
    assert_int_equal(lp_admit_pending(a), 5);
    lp_admit_leave(a, &conn[3]); /* one leaves: the next needs no eviction */
    assert_int_equal(enter(a, 7, B, 4, 12), LP_ADMIT_OK);
    assert_int_equal(enter_evicting(a, 8, A, 4, 13), 2); /* one each: the oldest (3 left) */
    lp_admit_free(a);
}

/* A flood from a few sources that reconnects as fast as it is dropped only ever pushes out its
 * own connections: the source holding the most loses its oldest, never the lone connection of
 * a real client, however old that one gets. */
static void test_admit_evicts_from_the_source_holding_the_most(void **state)
{
    (void)state;
    lp_admit *a = make(6, 100);
    uint8_t f1[4] = {192, 0, 2, 1}, f2[4] = {192, 0, 2, 2};
    assert_int_equal(enter(a, 0, A, 4, 0), LP_ADMIT_OK); /* the real client, oldest of all */
    for (int i = 1; i < 6; i++)
        assert_int_equal(enter(a, i, i % 2 ? f1 : f2, 4, (lp_time)i), LP_ADMIT_OK);
    /* f1 holds 1, 3, 5; f2 holds 2, 4 */
    assert_int_equal(enter_evicting(a, 6, f2, 4, 10), 1); /* f1's oldest */
    /* now f1: 3, 5; f2: 2, 4, 6 */
    assert_int_equal(enter_evicting(a, 1, f1, 4, 11), 2);
    /* f1: 3, 5, 1; f2: 4, 6 */
    int gone = 2;
    for (int round = 0; round < 100; round++) { /* the churn goes on: A stays */
        int next = enter_evicting(a, gone, round % 2 ? f1 : f2, 4, (lp_time)(12 + round));
        assert_int_not_equal(next, 0);
        gone = next;
    }
    assert_int_equal(lp_admit_pending(a), 6);
    lp_admit_leave(a, &conn[0]); /* still counted after all that: it was never dropped */
    assert_int_equal(lp_admit_pending(a), 5);
    lp_admit_free(a);
}

/* A connection that authenticated is no stranger: it is never dropped for room. When all
 * have settled the newest is refused, as before. */
static void test_admit_never_evicts_settled_connections(void **state)
{
    (void)state;
    lp_admit *a = make(3, 100);
    assert_int_equal(enter(a, 0, A, 4, 0), LP_ADMIT_OK);
    assert_int_equal(enter(a, 1, B, 4, 1), LP_ADMIT_OK);
    assert_int_equal(enter(a, 2, V6, 16, 2), LP_ADMIT_OK);
    lp_admit_settle(a, &conn[0]);
    lp_admit_settle(a, &conn[0]);                       /* twice: harmless */
    assert_int_equal(enter_evicting(a, 3, A, 4, 3), 1); /* 0 is older, but settled */
    lp_admit_settle(a, &conn[2]);
    lp_admit_settle(a, &conn[3]);
    assert_int_equal(enter(a, 4, B, 4, 4), LP_ADMIT_FULL);
    lp_admit_leave(a, &conn[0]); /* a settled one leaves: its count goes */
    assert_int_equal(enter(a, 5, B, 4, 5), LP_ADMIT_OK);
    assert_int_equal(lp_admit_pending(a), 3);
    lp_admit_free(a);
}

/* A source at its own cap is refused rather than evicting someone else's connection. */
static void test_admit_source_at_its_cap_does_not_evict(void **state)
{
    (void)state;
    lp_admit *a = make(3, 2);
    assert_int_equal(enter(a, 0, B, 4, 0), LP_ADMIT_OK);
    assert_int_equal(enter(a, 1, A, 4, 1), LP_ADMIT_OK);
    assert_int_equal(enter(a, 2, A, 4, 2), LP_ADMIT_OK);
    assert_int_equal(enter(a, 3, A, 4, 3), LP_ADMIT_SOURCE_FULL);
    assert_int_equal(lp_admit_pending(a), 3);
    lp_admit_free(a);
}

/* IPv6 addresses in one /64 are one source; the next /64 is another. */
static void test_admit_counts_ipv6_per_64(void **state)
{
    (void)state;
    lp_admit *a = make(100, 2);
    uint8_t x[16];
    memcpy(x, V6, 16);
    for (int i = 0; i < 2; i++) {
        x[15] = (uint8_t)(i + 1);
        x[8] = (uint8_t)(0x10 * i); /* differing in the interface half */
        assert_int_equal(enter(a, i, x, 16, 0), LP_ADMIT_OK);
    }
    x[15] = 0x99;
    x[9] = 0x42;
    assert_int_equal(enter(a, 2, x, 16, 0), LP_ADMIT_SOURCE_FULL);
    x[7] = 1; /* the next /64 */
    assert_int_equal(enter(a, 3, x, 16, 0), LP_ADMIT_OK);
    lp_admit_free(a);
}

/* A failure delays the whole /64, not one address of it. */
static void test_admit_failure_delay_covers_the_64(void **state)
{
    (void)state;
    lp_admit *a = make(100, 10);
    uint8_t x[16];
    memcpy(x, V6, 16);
    lp_admit_failed(a, x, 16, 1000);
    x[15] = 0x77; /* another address in the same /64 */
    assert_int_equal(enter(a, 0, x, 16, 1050), LP_ADMIT_PENALTY);
    x[6] = 1; /* another /64 */
    assert_int_equal(enter(a, 1, x, 16, 1050), LP_ADMIT_OK);
    lp_admit_free(a);
}

static void test_admit_source_key_of_each_family(void **state)
{
    uint8_t key[LP_ADMIT_KEY_MAX];
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    (void)state;

    assert_int_equal(lp_admit_source_key(A, 4, key), 4);
    assert_memory_equal(key, A, 4);
    assert_int_equal(lp_admit_source_key(V6, 16, key), 8);
    assert_memory_equal(key, V6, 8);
    /* ::ffff:10.0.0.1 is 10.0.0.1, not a /64 shared with every other IPv4 client */
    assert_int_equal(lp_admit_source_key(mapped, 16, key), 4);
    assert_memory_equal(key, A, 4);
    assert_int_equal(lp_admit_source_key(A, 3, key), 0);
    assert_int_equal(lp_admit_source_key(V6, 0, key), 0);
}

static void test_admit_mapped_ipv4_shares_the_ipv4_source(void **state)
{
    (void)state;
    static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
    lp_admit *a = make(100, 1);
    assert_int_equal(enter(a, 0, A, 4, 0), LP_ADMIT_OK);
    assert_int_equal(enter(a, 1, mapped, 16, 0), LP_ADMIT_SOURCE_FULL);
    assert_int_equal(enter(a, 2, B, 4, 0), LP_ADMIT_OK);
    lp_admit_free(a);
}

static void test_admit_failure_delay_doubles_and_success_clears_it(void **state)
{
    (void)state;
    lp_admit *a = make(100, 10);
    lp_admit_failed(a, A, 4, 1000);
    assert_int_equal(enter(a, 0, A, 4, 1099), LP_ADMIT_PENALTY);
    assert_int_equal(enter(a, 1, B, 4, 1099), LP_ADMIT_OK); /* others unaffected */
    assert_int_equal(enter(a, 2, A, 4, 1100), LP_ADMIT_OK);
    lp_admit_leave(a, &conn[2]);
    lp_admit_failed(a, A, 4, 2000); /* second: 200 ms */
    assert_int_equal(enter(a, 3, A, 4, 2199), LP_ADMIT_PENALTY);
    assert_int_equal(enter(a, 4, A, 4, 2200), LP_ADMIT_OK);
    lp_admit_leave(a, &conn[4]);
    for (int i = 0; i < 40; i++) /* capped at max */
        lp_admit_failed(a, A, 4, 3000);
    assert_int_equal(enter(a, 5, A, 4, 12999), LP_ADMIT_PENALTY);
    assert_int_equal(enter(a, 6, A, 4, 13000), LP_ADMIT_OK);
    lp_admit_leave(a, &conn[6]);
    lp_admit_failed(a, A, 4, 20000);
    lp_admit_succeeded(a, A, 4);
    assert_int_equal(enter(a, 7, A, 4, 20000), LP_ADMIT_OK);
    lp_admit_free(a);
}

/* Many sources that fail once each: the table forgets the oldest idle ones instead of
 * growing, and pending connections are never forgotten. */
static void test_admit_table_stays_bounded_and_keeps_pending_sources(void **state)
{
    (void)state;
    lp_admit *a = make(10, 10);
    assert_int_equal(enter(a, 0, V6, 16, 0), LP_ADMIT_OK);
    uint8_t src[4] = {198, 51, 0, 0};
    for (int i = 0; i < 5000; i++) {
        src[2] = (uint8_t)(i >> 8);
        src[3] = (uint8_t)i;
        lp_admit_failed(a, src, 4, (lp_time)i + 1);
    }
    assert_int_equal(enter(a, 1, V6, 16, 6000), LP_ADMIT_OK); /* still one source, two in */
    lp_admit_leave(a, &conn[0]);
    lp_admit_leave(a, &conn[1]);
    assert_int_equal(lp_admit_pending(a), 0);
    lp_admit_free(a);
}

static void test_admit_leave_twice_or_never_entered_is_harmless(void **state)
{
    (void)state;
    lp_admit *a = make(10, 10);
    lp_admit_leave(a, &conn[0]);
    assert_int_equal(enter(a, 1, A, 4, 0), LP_ADMIT_OK);
    lp_admit_leave(a, &conn[1]);
    lp_admit_leave(a, &conn[1]);
    assert_int_equal(lp_admit_pending(a), 0);
    lp_admit_free(a);
}

/* A churning flood through a full table: counts stay exact, the age list stays whole, and a
 * newcomer that settles is never among the evicted however long the flood goes on. */
static void test_admit_churn_keeps_counts_and_spares_the_settled(void **state)
{
    (void)state;
    lp_admit *a = make(8, 100);
    uint8_t src[4] = {192, 0, 2, 0};
    for (int i = 0; i < 8; i++)
        assert_int_equal(enter(a, i, src, 4, 0), LP_ADMIT_OK);
    assert_int_equal(enter_evicting(a, 8, A, 4, 1), 0); /* the real client ... */
    lp_admit_settle(a, &conn[8]);                       /* ... authenticates */
    int slot = 0; /* the flood reuses the evicted connection's index */
    for (int round = 0; round < 1000; round++) {
        int gone = enter_evicting(a, slot, src, 4, (lp_time)round + 2);
        assert_int_not_equal(gone, 8);
        assert_int_not_equal(gone, slot);
        slot = gone;
        assert_int_equal(lp_admit_pending(a), 8);
    }
    lp_admit_leave(a, &conn[8]);
    assert_int_equal(lp_admit_pending(a), 7);
    lp_admit_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_caps_one_source_and_lets_others_in),
        cmocka_unit_test(test_admit_full_table_evicts_the_oldest_waiting_connection),
        cmocka_unit_test(test_admit_evicts_from_the_source_holding_the_most),
        cmocka_unit_test(test_admit_never_evicts_settled_connections),
        cmocka_unit_test(test_admit_source_at_its_cap_does_not_evict),
        cmocka_unit_test(test_admit_counts_ipv6_per_64),
        cmocka_unit_test(test_admit_failure_delay_covers_the_64),
        cmocka_unit_test(test_admit_source_key_of_each_family),
        cmocka_unit_test(test_admit_mapped_ipv4_shares_the_ipv4_source),
        cmocka_unit_test(test_admit_failure_delay_doubles_and_success_clears_it),
        cmocka_unit_test(test_admit_table_stays_bounded_and_keeps_pending_sources),
        cmocka_unit_test(test_admit_leave_twice_or_never_entered_is_harmless),
        cmocka_unit_test(test_admit_churn_keeps_counts_and_spares_the_settled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
