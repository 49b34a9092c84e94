/* idtab.c — the intrusive id table. See idtab.h. */
#include "limpet/idtab.h"

#include <stdint.h>
#include <stdlib.h>

#define BUCKETS_MIN 16u

static size_t bucket_of(size_t nbuckets, uint32_t id)
{
    return (size_t)((id * 2654435761u) & (uint32_t)(nbuckets - 1));
}

lp_err lp_idtab_init(struct lp_idtab *t)
{
    t->count = 0;
    t->nbuckets = 0;
    if ((t->buckets = calloc(BUCKETS_MIN, sizeof(*t->buckets))) == NULL)
        return LP_ERR_NOMEM;
    t->nbuckets = BUCKETS_MIN;
    return LP_OK;
}

void lp_idtab_clear(struct lp_idtab *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->count = 0;
}

struct lp_idtab_node *lp_idtab_find(const struct lp_idtab *t, uint32_t id)
{
    struct lp_idtab_node *n = t->buckets[bucket_of(t->nbuckets, id)];

    while (n != NULL && n->id != id)
        n = n->next;
    return n;
}

/* Doubles the table; on failure the old one simply stays (longer chains, still correct). */
static void grow(struct lp_idtab *t)
{
    size_t nb = t->nbuckets * 2;
    struct lp_idtab_node **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL) {
            struct lp_idtab_node *n = t->buckets[i];
            t->buckets[i] = n->next;
            n->next = b[bucket_of(nb, n->id)];
            b[bucket_of(nb, n->id)] = n;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

void lp_idtab_insert(struct lp_idtab *t, struct lp_idtab_node *n)
{
    if (t->count >= t->nbuckets && t->nbuckets <= SIZE_MAX / 2 / sizeof(*t->buckets))
        grow(t);
    size_t b = bucket_of(t->nbuckets, n->id);
    n->next = t->buckets[b];
    t->buckets[b] = n;
    t->count++;
}

void lp_idtab_remove(struct lp_idtab *t, struct lp_idtab_node *n)
{
    struct lp_idtab_node **pp = &t->buckets[bucket_of(t->nbuckets, n->id)];

    while (*pp != NULL && *pp != n)
        pp = &(*pp)->next;
    if (*pp == n) {
        *pp = n->next;
        t->count--;
    }
    n->next = NULL;
}

struct lp_idtab_node *lp_idtab_drain_next(const struct lp_idtab *t, size_t *cursor)
{
    for (; *cursor < t->nbuckets; (*cursor)++)
        if (t->buckets[*cursor] != NULL)
            return t->buckets[*cursor];
    return NULL;
}
