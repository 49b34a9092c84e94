/* accept.c — listeners that pause instead of spinning when descriptors run out. See accept.h. */
#include "limpet/accept.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/log.h"

/* Process-wide by nature, like the descriptor table they guard; touched on the loop thread
 * only. The reserve: one descriptor held back so that an acceptor out of them can still take
 * a waiting connection to reset it (-1 before the first start, or while it could not be
 * taken back). The warning: when it was last written and how many were not since. */
static int reserve_fd = -1;
static bool warned;
static lp_time warned_at;
static unsigned long warn_quiet;

static void reserve_take(void)
{
    if (reserve_fd < 0)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* libev counts a weak acceptor's active watchers out of the loop's reference count: unref
 * after each start, ref before each stop, so the two always pair. */
static void io_on(struct lp_acceptor *a)
{
    ev_io_start(a->loop, &a->io);
    if (a->weak)
        ev_unref(a->loop);
}

static void io_off(struct lp_acceptor *a)
{
    if (!ev_is_active(&a->io))
        return;
    if (a->weak)
        ev_ref(a->loop);
    ev_io_stop(a->loop, &a->io);
}

/* The retry timer repeats, and its callback stops it: a one-shot timer stops itself inside
 * libev, without the ev_ref a weak watcher needs first. */
static void retry_on(struct lp_acceptor *a, lp_time ms)
{
    ev_timer_set(&a->retry, (double)ms / 1000.0, (double)ms / 1000.0);
    ev_timer_start(a->loop, &a->retry);
    if (a->weak)
        ev_unref(a->loop);
}

static void retry_off(struct lp_acceptor *a)
{
    if (!ev_is_active(&a->retry))
        return;
    if (a->weak)
        ev_ref(a->loop);
    ev_timer_stop(a->loop, &a->retry);
}

/* Out of descriptors with peers waiting: give the reserve back, take each waiting connection
 * and reset it, so its peer learns now (and retries) instead of hanging in the backlog; then
 * hold the reserve again. Returns how many were reset. */
static unsigned shed(struct lp_acceptor *a)
{
    unsigned n = 0;

    if (reserve_fd < 0)
        return 0;
    close(reserve_fd);
    reserve_fd = -1;
    for (; n < a->batch; n++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        lp_net_close_reset(fd);
    }
    reserve_take(); /* may fail if another thread took the slot: retried at each resume */
    return n;
}

static void warn(const struct lp_acceptor *a, int err, unsigned reset)
{
    lp_time now = lp_now();

    if (warned && now - warned_at < 1000) {
        warn_quiet++;
        return;
    }
    lp_warn("accept on %s: %s: not accepting for %llums, %u waiting connection(s) reset "
            "(%lu more like this in the last second)",
            a->what, strerror(err), (unsigned long long)a->pause_ms, reset, warn_quiet);
    warned = true;
    warned_at = now;
    warn_quiet = 0;
}

static void pause_accepting(struct lp_acceptor *a, int err, unsigned reset)
{
    a->pause_ms = a->pause_ms == 0 ? LP_ACCEPT_PAUSE_MIN_MS
                                   : LP_MIN(a->pause_ms * 2, (lp_time)LP_ACCEPT_PAUSE_MAX_MS);
    a->paused = true;
    io_off(a);
    retry_on(a, a->pause_ms);
    warn(a, err, reset);
}

/* After a failed accept: true to go on with the next waiting connection. */
static bool accept_failed(struct lp_acceptor *a, int err)
{
    switch (err) {
    case EAGAIN:
        return false;
    case EINTR:
    case ECONNABORTED: /* that connection died in the backlog; Linux also passes on */
    case EPROTO:       /* the network errors of a connection still pending (accept(2)) */
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ETIMEDOUT:
        return true;
    case EMFILE:
    case ENFILE:
        pause_accepting(a, err, shed(a));
        return false;
    default: /* ENOBUFS, ENOMEM: kernel memory; anything else: a listener in trouble */
        pause_accepting(a, err, 0);
        return false;
    }
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_acceptor *a = LP_CONTAINER_OF(w, struct lp_acceptor, io);
    (void)loop;
    (void)revents;

    /* fn may stop this acceptor: check before each accept */
    for (unsigned i = 0; i < a->batch && a->running && !a->paused; i++) {
        struct lp_addr peer;
        int fd = lp_net_accept(a->fd, &peer);
        if (fd < 0) {
            if (!accept_failed(a, errno))
                return;
            continue;
        }
        a->pause_ms = 0;
        a->fn(a->user, fd, &peer);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_acceptor *a = LP_CONTAINER_OF(w, struct lp_acceptor, retry);
    (void)loop;
    (void)revents;

    retry_off(a);
    a->paused = false;
    reserve_take(); /* lost if the process was still out of descriptors last time */
    io_on(a);
}

void lp_acceptor_init(struct lp_acceptor *a, struct ev_loop *loop, int fd, const char *what,
                      lp_accept_fn *fn, void *user)
{
    memset(a, 0, sizeof(*a));
    a->loop = loop;
    a->fd = fd;
    a->what = what;
    a->fn = fn;
    a->user = user;
    a->batch = LP_ACCEPT_BATCH;
    ev_io_init(&a->io, accept_cb, fd, EV_READ);
    ev_timer_init(&a->retry, retry_cb, 0., 0.);
}

void lp_acceptor_start(struct lp_acceptor *a)
{
    if (a->running)
        return;
    a->running = true;
    a->paused = false;
    reserve_take();
    io_on(a);
}

void lp_acceptor_stop(struct lp_acceptor *a)
{
    io_off(a);
    retry_off(a);
    a->running = false;
    a->paused = false;
}
