/* accept.h — a listening socket on the loop that survives running out of file descriptors.
 *
 * A listener's watcher is level-triggered: while a connection waits in the backlog, libev
 * calls back on every loop iteration. When accept fails for want of a descriptor (EMFILE,
 * ENFILE) or of kernel memory (ENOBUFS, ENOMEM), nothing the callback does makes the next
 * call succeed, so a listener that only logs and returns spins the CPU and floods the log.
 * An acceptor instead stops watching and retries on a timer, 100 ms doubling to 1 s (reset by
 * the next connection it takes). On EMFILE/ENFILE it first gives the waiting peers an answer:
 * it closes a reserve descriptor (opened on /dev/null at the first start), accepts what is
 * waiting and resets it, then takes the reserve again, as libuv does; a peer that is reset
 * retries (a limpet client with its backoff), one left in the backlog would hang until its own
 * timeout. The log line is shared by every acceptor and written at most once a second, with
 * the count of the ones not written.
 */
#ifndef LIMPET_ACCEPT_H
#define LIMPET_ACCEPT_H

#include <ev.h>
#include <stdbool.h>

#include "limpet/base.h"
#include "limpet/net.h"

#define LP_ACCEPT_BATCH 64u          /* connections taken per wake-up, so others get a turn */
#define LP_ACCEPT_PAUSE_MIN_MS 100u  /* the first pause after a failure ... */
#define LP_ACCEPT_PAUSE_MAX_MS 1000u /* ... doubling up to this */

/* Takes fd (a connected, non-blocking, close-on-exec socket) and the peer's address. */
typedef void lp_accept_fn(void *user, int fd, const struct lp_addr *peer);

struct lp_acceptor {
    struct ev_loop *loop;
    int fd;           /* the listening socket: borrowed, the owner closes it after stop */
    const char *what; /* the listener, for the log line: borrowed for the acceptor's life */
    lp_accept_fn *fn;
    void *user;
    unsigned batch;   /* LP_ACCEPT_BATCH unless the owner sets it after init */
    bool weak;        /* its watchers do not keep the loop running (ev_unref) */
    bool running;     /* between start and stop, paused or not */
    bool paused;      /* watcher stopped, `retry` armed */
    lp_time pause_ms; /* the last pause; 0 after a connection was taken */
    ev_io io;
    ev_timer retry;
};

/* Prepares a (stopped). fd, what and user are borrowed. */
void lp_acceptor_init(struct lp_acceptor *a, struct ev_loop *loop, int fd, const char *what,
                      lp_accept_fn *fn, void *user);
void lp_acceptor_start(struct lp_acceptor *a);
/* Stops watching (and any pending retry). Idempotent; fn may call it on its own acceptor. */
void lp_acceptor_stop(struct lp_acceptor *a);

#endif
