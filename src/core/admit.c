/* admit.c — caps on unauthenticated connections, eviction of the oldest, and failure delays.
 * See admit.h. */
#include "limpet/admit.h"

#include <stdlib.h>
#include <string.h>

enum entry_state {
    ENTRY_OUT = 0, /* not counted */
    ENTRY_WAITING, /* counted, in the age list: may be dropped for room */
    ENTRY_SETTLED, /* counted, out of the age list: a handshake step done */
};

struct source {
    uint8_t key[LP_ADMIT_KEY_MAX];
    uint8_t len;                            /* 0: free slot */
    uint32_t pending;                       /* admitted and not yet left */
    uint32_t waiting;                       /* of those, not settled: the entries in its age list */
    struct lp_admit_entry *oldest, *newest; /* its waiting entries, in age order */
    struct source *bprev, *bnext;           /* in bucket[waiting] while waiting > 0 */
    uint32_t failures;                      /* since the last success */
    lp_time penalty_until;                  /* no new connection before this */
    lp_time seen;                           /* last enter or failure, for forgetting */
};

/* bucket[k]: the sources with k waiting connections, in the order they reached k (head
 * first), so the one to lose a connection for room is found at once: the head of the top
 * bucket. k <= max_per_source, as waiting <= pending. */
struct bucket {
    struct source *head, *tail;
};

struct lp_admit {
    struct lp_admit_config cfg;
    struct source *table;
    size_t size;  /* slots in table */
    size_t total; /* pending connections in all */
    struct bucket *bucket;
    size_t nbuckets; /* max_per_source + 1 (at most max_pending + 1) */
    size_t top;      /* the highest non-empty bucket; 0: nothing to evict */
};

lp_err lp_admit_new(const struct lp_admit_config *cfg, lp_admit **out)
{
    lp_admit *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return LP_ERR_NOMEM;
    a->cfg = *cfg;
    /* Every pending connection needs its source's slot, plus room to remember failures. */
    a->size = LP_MAX(cfg->max_pending + 256u, (size_t)1024u);
    a->nbuckets = LP_MIN(cfg->max_per_source, cfg->max_pending) + 1u;
    if (a->size > UINT32_MAX || (a->table = calloc(a->size, sizeof(*a->table))) == NULL ||
        (a->bucket = calloc(a->nbuckets, sizeof(*a->bucket))) == NULL) {
        lp_admit_free(a);
        return LP_ERR_NOMEM;
    }
    *out = a;
    return LP_OK;
}

void lp_admit_free(lp_admit *a)
{
    if (a == NULL)
        return;
    free(a->table);
    free(a->bucket);
    free(a);
}

size_t lp_admit_source_key(const uint8_t *addr, size_t len, uint8_t key[LP_ADMIT_KEY_MAX])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (len == 16 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
        addr += 12; /* ::ffff:a.b.c.d is a.b.c.d: not one /64 for every IPv4 client */
        len = 4;
    }
    if (len == 4) {
        memcpy(key, addr, 4);
        return 4;
    }
    if (len == 16) {
        memcpy(key, addr, 8); /* the /64: what one host or one home is commonly given */
        return 8;
    }
    return 0;
}

static struct source *find(lp_admit *a, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < a->size; i++) {
        const struct source *s = &a->table[i];
        if (s->len == len && memcmp(s->key, key, len) == 0)
            return &a->table[i];
    }
    return NULL;
}

/* A free slot, or the least recently seen source with nothing pending, made key's. */
static struct source *slot(lp_admit *a, const uint8_t *key, size_t len)
{
    struct source *victim = NULL;

    for (size_t i = 0; i < a->size; i++) {
        struct source *s = &a->table[i];
        if (s->len == 0) {
            victim = s;
            break;
        }
        if (s->pending == 0 && (victim == NULL || s->seen < victim->seen))
            victim = s;
    }
    if (victim) {
        memset(victim, 0, sizeof(*victim));
        memcpy(victim->key, key, len);
        victim->len = (uint8_t)len;
    }
    return victim;
}

/* The source addr counts as; created when `create` (NULL when the address is not IPv4/IPv6,
 * or the table has no slot to spare, which cannot happen while size > max_pending). */
static struct source *source_of(lp_admit *a, const uint8_t *addr, size_t len, bool create)
{
    uint8_t key[LP_ADMIT_KEY_MAX];
    size_t klen = lp_admit_source_key(addr, len, key);
    struct source *s;

    if (klen == 0)
        return NULL;
    if ((s = find(a, key, klen)) == NULL && create)
        s = slot(a, key, klen);
    return s;
}

static void bucket_out(lp_admit *a, struct source *s)
{
    struct bucket *b = &a->bucket[s->waiting];

    if (s->waiting == 0)
        return;
    *(s->bprev ? &s->bprev->bnext : &b->head) = s->bnext;
    *(s->bnext ? &s->bnext->bprev : &b->tail) = s->bprev;
    s->bprev = s->bnext = NULL;
    while (a->top > 0 && a->bucket[a->top].head == NULL)
        a->top--;
}

static void bucket_in(lp_admit *a, struct source *s)
{
    struct bucket *b = &a->bucket[s->waiting];

    if (s->waiting == 0)
        return;
    s->bnext = NULL;
    s->bprev = b->tail;
    *(b->tail ? &b->tail->bnext : &b->head) = s;
    b->tail = s;
    a->top = LP_MAX(a->top, (size_t)s->waiting);
}

/* e stops waiting (it settled, left or is evicted): out of its source's age list, and the
 * source one bucket down. */
static void stop_waiting(lp_admit *a, struct lp_admit_entry *e)
{
    struct source *s = &a->table[e->source];

    bucket_out(a, s);
    *(e->prev ? &e->prev->next : &s->oldest) = e->next;
    *(e->next ? &e->next->prev : &s->newest) = e->prev;
    e->prev = e->next = NULL;
    s->waiting--;
    bucket_in(a, s);
}

static void start_waiting(lp_admit *a, struct lp_admit_entry *e, struct source *s)
{
    bucket_out(a, s);
    e->next = NULL;
    e->prev = s->newest;
    *(s->newest ? &s->newest->next : &s->oldest) = e;
    s->newest = e;
    s->waiting++;
    bucket_in(a, s);
}

void lp_admit_leave(lp_admit *a, struct lp_admit_entry *e)
{
    if (e->state == ENTRY_OUT)
        return;
    if (e->state == ENTRY_WAITING)
        stop_waiting(a, e);
    a->table[e->source].pending--;
    a->total--;
    e->state = ENTRY_OUT;
}

void lp_admit_settle(lp_admit *a, struct lp_admit_entry *e)
{
    if (e->state != ENTRY_WAITING)
        return;
    stop_waiting(a, e);
    e->state = ENTRY_SETTLED;
}

/* The connection to drop for room: the oldest waiting one of the source that holds the most
 * waiting connections (of those holding equally many, the one that got there first). Oldest
 * alone would let a flood that reconnects faster than a handshake takes push a real client
 * out; this way a source can only ever push out its own, until every source holds one. */
static struct lp_admit_entry *victim(const lp_admit *a)
{
    return a->top > 0 ? a->bucket[a->top].head->oldest : NULL;
}

enum lp_admit_verdict lp_admit_enter(lp_admit *a, struct lp_admit_entry *e, const uint8_t *addr,
                                     size_t len, lp_time now, struct lp_admit_entry **evicted)
{
    uint8_t key[LP_ADMIT_KEY_MAX];
    size_t klen = lp_admit_source_key(addr, len, key);
    struct source *s = klen ? find(a, key, klen) : NULL;

    *evicted = NULL;
    lp_admit_leave(a, e); /* an entry counted twice would corrupt the counts: never */
    if (klen == 0)
        return LP_ADMIT_FULL; /* neither IPv4 nor IPv6: nothing to count it by */
    if (s && now < s->penalty_until)
        return LP_ADMIT_PENALTY;
    if (s && s->pending >= a->cfg.max_per_source)
        return LP_ADMIT_SOURCE_FULL;
    if (a->total >= a->cfg.max_pending) {
        if ((*evicted = victim(a)) == NULL)
            return LP_ADMIT_FULL; /* all authenticated: they are not strangers to drop */
        lp_admit_leave(a, *evicted);
    }
    /* A slot is always found: fewer than max_pending sources have anything pending. */
    if (s == NULL && (s = slot(a, key, klen)) == NULL)
        return LP_ADMIT_FULL;
    s->pending++;
    s->seen = now;
    a->total++;
    e->source = (uint32_t)(s - a->table);
    e->state = ENTRY_WAITING;
    start_waiting(a, e, s);
    return LP_ADMIT_OK;
}

void lp_admit_failed(lp_admit *a, const uint8_t *addr, size_t len, lp_time now)
{
    struct source *s = source_of(a, addr, len, true);
    if (s == NULL)
        return;
    lp_time delay = a->cfg.penalty_base;
    for (uint32_t i = 0; i < s->failures && delay < a->cfg.penalty_max; i++)
        delay *= 2;
    s->failures++;
    s->penalty_until = now + LP_MIN(delay, a->cfg.penalty_max);
    s->seen = now;
}

void lp_admit_succeeded(lp_admit *a, const uint8_t *addr, size_t len)
{
    struct source *s = source_of(a, addr, len, false);
    if (s) {
        s->failures = 0;
        s->penalty_until = 0;
    }
}

size_t lp_admit_pending(const lp_admit *a)
{
    return a->total;
}

const char *lp_admit_reason(enum lp_admit_verdict v)
{
    switch (v) {
    case LP_ADMIT_OK:
        return "admitted";
    case LP_ADMIT_FULL:
        return "too many connections in their handshake (limits.max_pending)";
    case LP_ADMIT_SOURCE_FULL:
        return "too many unauthenticated connections from this address "
               "(limits.max_pending_per_source)";
    case LP_ADMIT_PENALTY:
        return "recent authentication failures from this address";
    }
    return "?";
}
