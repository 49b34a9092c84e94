/* idtab.h — an intrusive hash table of objects keyed by a 32-bit id (the mux's streams).
 *
 * Sans-I/O. The table never allocates or frees the objects: each embeds a struct
 * lp_idtab_node, and the owner recovers it with LP_CONTAINER_OF. The bucket array doubles
 * when the table holds as many nodes as buckets, so chains stay short; when that allocation
 * fails the old array simply stays (longer chains, still correct). Ids must be unique.
 * An embedded struct: lp_idtab_init, then lp_idtab_clear once every node is removed.
 */
#ifndef LIMPET_IDTAB_H
#define LIMPET_IDTAB_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

struct lp_idtab_node {
    uint32_t id;                /* set by the owner before lp_idtab_insert, then left alone */
    struct lp_idtab_node *next; /* the hash chain; the table's */
};

struct lp_idtab {
    struct lp_idtab_node **buckets; /* owned */
    size_t nbuckets;                /* a power of two */
    size_t count;                   /* nodes in the table */
};

/* An empty table. LP_ERR_NOMEM when the first bucket array cannot be had. */
LP_MUST_USE lp_err lp_idtab_init(struct lp_idtab *t);
/* Frees the bucket array; the nodes still in it (if any) are the caller's and untouched. */
void lp_idtab_clear(struct lp_idtab *t);

/* Links n (borrowed until removed) under n->id. Never fails: growth is best effort. */
void lp_idtab_insert(struct lp_idtab *t, struct lp_idtab_node *n);
/* Unlinks n; a node not in the table is ignored. */
void lp_idtab_remove(struct lp_idtab *t, struct lp_idtab_node *n);
/* The node with this id, NULL if none; borrowed. */
struct lp_idtab_node *lp_idtab_find(const struct lp_idtab *t, uint32_t id);

/* For draining the table: the first node in bucket *cursor or after, NULL when there is none.
 * Start with *cursor = 0 and remove each node returned before the next call; nothing may be
 * inserted meanwhile. Every call together costs one pass over the buckets. */
struct lp_idtab_node *lp_idtab_drain_next(const struct lp_idtab *t, size_t *cursor);

#endif
