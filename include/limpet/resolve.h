/* resolve.h — name lookups that never block the event loop.
 *
 * A numeric address resolves at once. A name goes to glibc's getaddrinfo_a, whose worker
 * thread wakes the loop through an ev_async; the result is delivered on the loop thread.
 * A lookup whose requester went away is cancelled: its callback never runs.
 */
#ifndef LIMPET_RESOLVE_H
#define LIMPET_RESOLVE_H

#include <ev.h>
#include <stdint.h>

#include "limpet/net.h"

struct lp_resolve;

/* err is NULL on success (addr valid), else a one-line reason; both borrowed for the call. */
typedef void (*lp_resolve_cb)(void *user, const struct lp_addr *addr, const char *err);

struct lp_resolver {
    struct ev_loop *loop;
    ev_async wake;              /* rung by glibc's thread when a lookup finishes */
    struct lp_resolve *pending; /* lookups in flight, including cancelled ones */
};

void lp_resolver_init(struct lp_resolver *r, struct ev_loop *loop);
/* Cancels every lookup and waits (bounded) for glibc to let go of them. */
void lp_resolver_clear(struct lp_resolver *r);

/* Looks up host:port. A numeric host calls cb before returning and *out is NULL; a name
 * returns LP_OK with *out the lookup (cancel it with lp_resolve_cancel until cb runs).
 * On failure to start, returns an error and cb is not called. */
LP_MUST_USE lp_err lp_resolve_start(struct lp_resolver *r, const char *host, uint16_t port,
                                    lp_resolve_cb cb, void *user, struct lp_resolve **out);
/* The requester is gone: cb will not run. NULL is a no-op. */
void lp_resolve_cancel(struct lp_resolve *q);

#endif
