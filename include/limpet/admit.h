/* admit.h — who may start a handshake now. Sans-I/O.
 *
 * A server holds some state for every connection that has not authenticated yet, so a
 * stranger could exhaust it by opening connections and saying nothing. Admission caps them:
 * at most max_pending in total and max_per_source from one address; and a source whose
 * handshakes fail waits a delay that doubles with each failure (base .. max) before it may
 * try again, so guessing keys is slow. A success clears the source's delay. At a limit the
 * newest connection is the one refused; established sessions never count here.
 *
 * Sources are kept in a fixed table (sized at creation); when it is full, the least recently
 * seen source with nothing pending is forgotten.
 */
#ifndef LIMPET_ADMIT_H
#define LIMPET_ADMIT_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"

#define LP_ADMIT_ADDR_MAX 16u /* IPv6 */

struct lp_admit_config {
    size_t max_pending;    /* total unauthenticated connections */
    size_t max_per_source; /* from one source address */
    lp_time penalty_base;  /* delay after the first failure */
    lp_time penalty_max;   /* cap on the delay */
};

enum lp_admit_verdict {
    LP_ADMIT_OK,          /* admitted and counted: call lp_admit_leave when it ends */
    LP_ADMIT_FULL,        /* max_pending reached */
    LP_ADMIT_SOURCE_FULL, /* max_per_source reached for this source */
    LP_ADMIT_PENALTY,     /* this source failed recently: not yet */
};

typedef struct lp_admit lp_admit;

/* Returns owned (free with lp_admit_free). */
LP_MUST_USE lp_err lp_admit_new(const struct lp_admit_config *cfg, lp_admit **out);
void lp_admit_free(lp_admit *a);

/* addr: the source address bytes (4 or 16), borrowed. */
enum lp_admit_verdict lp_admit_enter(lp_admit *a, const uint8_t *addr, size_t len, lp_time now);
/* An admitted connection ended its handshake phase (any way). */
void lp_admit_leave(lp_admit *a, const uint8_t *addr, size_t len);
/* A handshake from this source failed authentication at `now`: the delay doubles. */
void lp_admit_failed(lp_admit *a, const uint8_t *addr, size_t len, lp_time now);
/* A handshake from this source succeeded: its delay is forgotten. */
void lp_admit_succeeded(lp_admit *a, const uint8_t *addr, size_t len);
size_t lp_admit_pending(const lp_admit *a);
const char *lp_admit_reason(enum lp_admit_verdict v);

#endif
