/* backoff.c — full-jitter exponential backoff. See backoff.h. */
#include "limpet/backoff.h"

void lp_backoff_init(struct lp_backoff *b, lp_time initial, lp_time max)
{
    b->initial = initial ? initial : 1;
    b->max = max < b->initial ? b->initial : max;
    b->attempt = 0;
}

lp_time lp_backoff_next(struct lp_backoff *b, uint32_t rnd)
{
    unsigned k = b->attempt++;
    if (k == 0)
        return 0; /* the first retry goes at once: most drops are short */
    lp_time cap = b->initial;
    for (unsigned i = 1; i < k && cap < b->max; i++)
        cap *= 2; /* bounded by the loop: cannot overflow before max */
    if (cap > b->max)
        cap = b->max;
    return (lp_time)(((uint64_t)rnd * (cap + 1)) >> 32);
}

void lp_backoff_reset(struct lp_backoff *b)
{
    b->attempt = 0;
}
