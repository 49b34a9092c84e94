/* backoff.h — exponential backoff with full jitter (sans-I/O: randomness passed in).
 *
 * Attempt 0 is immediate. Attempt k >= 1 waits uniform[0, min(max, initial * 2^(k-1))].
 */
#ifndef LIMPET_BACKOFF_H
#define LIMPET_BACKOFF_H

#include <stdint.h>

#include "limpet/base.h"

struct lp_backoff {
    lp_time initial;
    lp_time max;
    unsigned attempt; /* attempts made since the last success */
};

void lp_backoff_init(struct lp_backoff *b, lp_time initial, lp_time max);
/* The delay before the next attempt; `rnd` is a uniformly random 32-bit value. */
lp_time lp_backoff_next(struct lp_backoff *b, uint32_t rnd);
void lp_backoff_reset(struct lp_backoff *b);

#endif
