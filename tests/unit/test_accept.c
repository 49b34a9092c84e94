/* test_accept.c — a listener out of file descriptors pauses instead of spinning, answers the
 * waiting peer with a reset, and takes connections again once descriptors are back.
 * Real loopback sockets on a private libev loop; the process's own fd limit is lowered for
 * the test and restored. Nothing asserts on a clock: the loop is run until an event. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/accept.h"
#include "limpet/log.h"

#define FILLERS_MAX 256

struct exhaustion {
    struct rlimit old;
    int fillers[FILLERS_MAX], n;
    bool lowered; /* old is to be restored */
};
struct fixture {
    struct ev_loop *loop;
    int lfd;
    struct lp_addr addr;
    struct lp_acceptor acc;
    int accepted;    /* connections fn was given */
    bool stop_in_fn; /* fn stops the acceptor */
    struct exhaustion x;
};

static void on_accept(void *user, int fd, const struct lp_addr *peer)
{
    struct fixture *f = user;
    (void)peer;
    f->accepted++;
    close(fd);
    if (f->stop_in_fn)
        lp_acceptor_stop(&f->acc);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[128];
    if (f == NULL)
        return -1;
    lp_log_set_level(LP_LOG_ERROR); /* the pause's warning is expected */
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (lp_net_resolve("127.0.0.1", 0, &f->addr, err, sizeof(err)) != LP_OK ||
        lp_net_listen(&f->addr, &f->lfd, err, sizeof(err)) != LP_OK ||
        lp_net_local_addr(f->lfd, &f->addr) != LP_OK)
        return -1;
    lp_acceptor_init(&f->acc, f->loop, f->lfd, "the test port", on_accept, f);
    *state = f;
    return 0;
}

static void replenish(struct exhaustion *x);

static int teardown(void **state)
{
    struct fixture *f = *state;
    replenish(&f->x); /* also after a failed assertion: the next test needs its fds */
    lp_acceptor_stop(&f->acc);
    close(f->lfd);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static int dial(const struct fixture *f)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    assert_int_equal(connect(s, (const struct sockaddr *)&f->addr.sa, f->addr.len), 0);
    return s;
}

/* Runs the loop (blocking for events) until pred holds, at most `turns` wake-ups. */
static bool run_until(struct fixture *f, bool (*pred)(struct fixture *), int turns)
{
    for (int i = 0; i < turns && !pred(f); i++)
        ev_run(f->loop, EVRUN_ONCE);
    return pred(f);
}

static bool one_accepted(struct fixture *f)
{
    return f->accepted >= 1;
}

static bool paused(struct fixture *f)
{
    return f->acc.paused;
}

/* The peer was answered: EOF or a reset, not "would block". */
static bool answered(int s)
{
    char b;
    ssize_t n = recv(s, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* Lowers the fd limit to a few above what is open and fills it; `keep` is an fd opened
 * before, so the caller still has a socket to connect with. */
static void exhaust(struct exhaustion *x, int keep)
{
    struct rlimit low;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &x->old), 0);
    low = x->old;
    low.rlim_cur = (rlim_t)keep + 32;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    x->lowered = true;
    x->n = 0;
    for (int fd; x->n < FILLERS_MAX && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
        x->fillers[x->n++] = fd;
    assert_int_equal(errno, EMFILE);
}

static void replenish(struct exhaustion *x)
{
    while (x->n > 0)
        close(x->fillers[--x->n]);
    if (x->lowered)
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &x->old), 0);
    x->lowered = false;
}

static void test_accept_out_of_fds_pauses_resets_the_peer_and_recovers(void **state)
{
    struct fixture *f = *state;
    struct exhaustion *x = &f->x;

    lp_acceptor_start(&f->acc);
    int waiting = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(waiting >= 0);
    exhaust(x, waiting);
    assert_int_equal(connect(waiting, (const struct sockaddr *)&f->addr.sa, f->addr.len), 0);
    assert_true(run_until(f, paused, 10));
    assert_int_equal(f->accepted, 0);
    assert_true(answered(waiting)); /* reset through the reserve fd, not left to hang */
    assert_int_equal(f->acc.pause_ms, LP_ACCEPT_PAUSE_MIN_MS);

    replenish(x);
    int later = dial(f);
    assert_true(run_until(f, one_accepted, 10)); /* the retry timer resumed accepting */
    assert_false(f->acc.paused);
    assert_int_equal(f->acc.pause_ms, 0); /* a success resets the backoff */
    close(waiting);
    close(later);
}

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* A weak acceptor (the control socket's) does not keep the loop running, paused or not:
 * ev_run returns as soon as nothing else is active. Unbalanced references would block it. */
static void test_accept_weak_acceptor_never_holds_the_loop(void **state)
{
    struct fixture *f = *state;
    struct exhaustion *x = &f->x;
    ev_timer guard;

    f->acc.weak = true;
    lp_acceptor_start(&f->acc);
    ev_run(f->loop, 0);
    int waiting = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(waiting >= 0);
    exhaust(x, waiting);
    assert_int_equal(connect(waiting, (const struct sockaddr *)&f->addr.sa, f->addr.len), 0);
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_true(f->acc.paused);
    ev_run(f->loop, 0); /* paused: only the weak retry timer is active */
    replenish(x);
    /* a strong timer well past the first retry keeps the loop up until the retry has run */
    ev_timer_init(&guard, guard_cb, 3 * LP_ACCEPT_PAUSE_MIN_MS / 1000.0, 0.);
    ev_timer_start(f->loop, &guard);
    ev_run(f->loop, 0);
    assert_false(f->acc.paused);
    assert_true(f->acc.running);
    lp_acceptor_stop(&f->acc);
    lp_acceptor_start(&f->acc);
    ev_run(f->loop, 0);
    close(waiting);
}

static void test_accept_stop_from_the_callback_takes_no_more(void **state)
{
    struct fixture *f = *state;
    int a = dial(f), b = dial(f);

    f->stop_in_fn = true;
    lp_acceptor_start(&f->acc);
    ev_run(f->loop, EVRUN_NOWAIT);
    assert_int_equal(f->accepted, 1);
    assert_false(f->acc.running);
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_out_of_fds_pauses_resets_the_peer_and_recovers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_stop_from_the_callback_takes_no_more, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_accept_weak_acceptor_never_holds_the_loop, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
