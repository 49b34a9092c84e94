/* test_idtab.c — the intrusive id table (idtab.h): find, remove, growth keeps every node
 * findable, draining visits each node once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/base.h"
#include "limpet/idtab.h"

struct item {
    int value;
    struct lp_idtab_node hn;
};

#define MANY 1000u

static struct item *get(const struct lp_idtab *t, uint32_t id)
{
    struct lp_idtab_node *n = lp_idtab_find(t, id);

    return n != NULL ? LP_CONTAINER_OF(n, struct item, hn) : NULL;
}

static void test_idtab_finds_what_was_inserted_and_nothing_else(void **state)
{
    (void)state;
    struct lp_idtab t;
    struct item a = {.value = 10}, b = {.value = 20};

    assert_int_equal(lp_idtab_init(&t), LP_OK);
    a.hn.id = 1;
    b.hn.id = 17;
    lp_idtab_insert(&t, &a.hn);
    lp_idtab_insert(&t, &b.hn);
    assert_int_equal(t.count, 2);
    assert_ptr_equal(get(&t, 1), &a);
    assert_ptr_equal(get(&t, 17), &b);
    assert_null(get(&t, 3));
    assert_null(get(&t, 0));
    lp_idtab_remove(&t, &a.hn);
    lp_idtab_remove(&t, &b.hn);
    lp_idtab_clear(&t);
}

static void test_idtab_remove_unlinks_only_that_node(void **state)
{
    (void)state;
    struct lp_idtab t;
    struct item it[40];

    assert_int_equal(lp_idtab_init(&t), LP_OK);
    for (uint32_t i = 0; i < 40; i++) {
        it[i].value = (int)i;
        it[i].hn.id = i * 16; /* ids that crowd few buckets */
        lp_idtab_insert(&t, &it[i].hn);
    }
    lp_idtab_remove(&t, &it[7].hn);
    lp_idtab_remove(&t, &it[7].hn); /* a second remove is ignored */
    assert_int_equal(t.count, 39);
    assert_null(get(&t, 7 * 16));
    for (uint32_t i = 0; i < 40; i++)
        if (i != 7)
            assert_ptr_equal(get(&t, i * 16), &it[i]);
    for (uint32_t i = 0; i < 40; i++)
        lp_idtab_remove(&t, &it[i].hn);
    assert_int_equal(t.count, 0);
    lp_idtab_clear(&t);
}

static void test_idtab_grows_and_keeps_every_node_findable(void **state)
{
    (void)state;
    struct lp_idtab t;
    struct item *it = calloc(MANY, sizeof(*it));

    assert_non_null(it);
    assert_int_equal(lp_idtab_init(&t), LP_OK);
    size_t initial = t.nbuckets;
    for (uint32_t i = 0; i < MANY; i++) {
        it[i].hn.id = 2 * i + 1;
        lp_idtab_insert(&t, &it[i].hn);
    }
    assert_true(t.nbuckets > initial);
    assert_true(t.nbuckets >= MANY / 2);
    for (uint32_t i = 0; i < MANY; i++)
        assert_ptr_equal(get(&t, 2 * i + 1), &it[i]);
    assert_null(get(&t, 2));
    for (uint32_t i = 0; i < MANY; i++)
        lp_idtab_remove(&t, &it[i].hn);
    lp_idtab_clear(&t);
    free(it);
}

static void test_idtab_drain_visits_each_node_once(void **state)
{
    (void)state;
    struct lp_idtab t;
    struct item it[100];
    bool seen[100] = {false};
    struct lp_idtab_node *n;
    size_t cursor = 0, visits = 0;

    assert_int_equal(lp_idtab_init(&t), LP_OK);
    for (uint32_t i = 0; i < 100; i++) {
        it[i].value = (int)i;
        it[i].hn.id = i + 1000;
        lp_idtab_insert(&t, &it[i].hn);
    }
    while ((n = lp_idtab_drain_next(&t, &cursor)) != NULL && visits <= 100) {
        struct item *x = LP_CONTAINER_OF(n, struct item, hn);
        assert_false(seen[x->value]);
        seen[x->value] = true;
        lp_idtab_remove(&t, n);
        visits++;
    }
    assert_int_equal(visits, 100);
    assert_int_equal(t.count, 0);
    cursor = 0;
    assert_null(lp_idtab_drain_next(&t, &cursor));
    lp_idtab_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idtab_finds_what_was_inserted_and_nothing_else),
        cmocka_unit_test(test_idtab_remove_unlinks_only_that_node),
        cmocka_unit_test(test_idtab_grows_and_keeps_every_node_findable),
        cmocka_unit_test(test_idtab_drain_visits_each_node_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
