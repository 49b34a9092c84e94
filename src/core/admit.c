/* admit.c — caps on unauthenticated connections and failure delays. See admit.h. */
#include "limpet/admit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct source {
    uint8_t addr[LP_ADMIT_ADDR_MAX];
    uint8_t len;           /* 0: free slot */
    uint32_t pending;      /* admitted and not yet left */
    uint32_t failures;     /* since the last success */
    lp_time penalty_until; /* no new connection before this */
    lp_time seen;          /* last enter or failure, for eviction */
};

struct lp_admit {
    struct lp_admit_config cfg;
    struct source *table;
    size_t size;  /* slots in table */
    size_t total; /* pending connections in all */
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
    if ((a->table = calloc(a->size, sizeof(*a->table))) == NULL) {
        free(a);
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
    free(a);
}

static bool same(const struct source *s, const uint8_t *addr, size_t len)
{
    return s->len == len && memcmp(s->addr, addr, len) == 0;
}

static struct source *find(lp_admit *a, const uint8_t *addr, size_t len)
{
    for (size_t i = 0; i < a->size; i++) {
        if (same(&a->table[i], addr, len))
            return &a->table[i];
    }
    return NULL;
}

/* A free slot, or the least recently seen source with nothing pending. */
static struct source *slot(lp_admit *a, const uint8_t *addr, size_t len)
{
    struct source *victim = NULL;

    if (len == 0 || len > LP_ADMIT_ADDR_MAX)
        return NULL;
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
        memcpy(victim->addr, addr, len);
        victim->len = (uint8_t)len;
    }
    return victim;
}

enum lp_admit_verdict lp_admit_enter(lp_admit *a, const uint8_t *addr, size_t len, lp_time now)
{
    struct source *s = find(a, addr, len);

    if (s && now < s->penalty_until)
        return LP_ADMIT_PENALTY;
    if (a->total >= a->cfg.max_pending)
        return LP_ADMIT_FULL;
    if (s && s->pending >= a->cfg.max_per_source)
        return LP_ADMIT_SOURCE_FULL;
    if (s == NULL && (s = slot(a, addr, len)) == NULL)
        return LP_ADMIT_FULL; /* cannot happen while size > max_pending */
    s->pending++;
    s->seen = now;
    a->total++;
    return LP_ADMIT_OK;
}

void lp_admit_leave(lp_admit *a, const uint8_t *addr, size_t len)
{
    struct source *s = find(a, addr, len);
    if (s == NULL || s->pending == 0)
        return;
    s->pending--;
    a->total--;
}

void lp_admit_failed(lp_admit *a, const uint8_t *addr, size_t len, lp_time now)
{
    struct source *s = find(a, addr, len);
    if (s == NULL && (s = slot(a, addr, len)) == NULL)
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
    struct source *s = find(a, addr, len);
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
        return "too many unauthenticated connections (limits.max_pending)";
    case LP_ADMIT_SOURCE_FULL:
        return "too many unauthenticated connections from this address "
               "(limits.max_pending_per_source)";
    case LP_ADMIT_PENALTY:
        return "recent authentication failures from this address";
    }
    return "?";
}
