/* resolve.c — non-blocking name lookups with getaddrinfo_a. See resolve.h.
 *
 * glibc owns a request's gaicb from getaddrinfo_a until gai_error stops saying
 * EAI_INPROGRESS, so a request is freed only after that, even when cancelled: cancelling
 * just clears its callback.
 */
#include "limpet/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limpet/base.h"

struct lp_resolve {
    struct gaicb cb; /* first: glibc's view of the request */
    struct addrinfo hints;
    char host[256];
    char port[8];
    lp_resolve_cb done; /* NULL once cancelled */
    void *user;
    struct lp_resolver *r;
    struct lp_resolve *next;
};

/* Runs on glibc's thread: only touch what is thread-safe. */
static void notify_thread(union sigval sv)
{
    struct lp_resolver *r = sv.sival_ptr;
    ev_async_send(r->loop, &r->wake);
}

static void finish(struct lp_resolve *q)
{
    int rc = gai_error(&q->cb);
    struct addrinfo *res = q->cb.ar_result;
    char err[320];

    if (q->done && rc == 0 && res != NULL) {
        struct lp_addr a;
        memcpy(&a.sa, res->ai_addr, res->ai_addrlen);
        a.len = res->ai_addrlen;
        q->done(q->user, &a, NULL);
    } else if (q->done) {
        snprintf(err, sizeof(err), "cannot resolve %s: %s", q->host,
                 rc == 0 ? "no address" : gai_strerror(rc));
        q->done(q->user, NULL, err);
    }
    if (res)
        freeaddrinfo(res);
    free(q);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct lp_resolver *r = LP_CONTAINER_OF(w, struct lp_resolver, wake);
    struct lp_resolve **pp = &r->pending;
    (void)loop;
    (void)revents;

    while (*pp) {
        struct lp_resolve *q = *pp;
        if (gai_error(&q->cb) == EAI_INPROGRESS) {
            pp = &q->next;
            continue;
        }
        *pp = q->next; /* unlink first: the callback may start new lookups */
        finish(q);
    }
}

void lp_resolver_init(struct lp_resolver *r, struct ev_loop *loop)
{
    r->loop = loop;
    r->pending = NULL;
    ev_async_init(&r->wake, wake_cb);
    ev_async_start(loop, &r->wake);
    ev_unref(loop); /* a lookup in flight does not by itself keep the process alive */
}

void lp_resolver_clear(struct lp_resolver *r)
{
    for (struct lp_resolve *q = r->pending; q; q = q->next) {
        q->done = NULL;
        gai_cancel(&q->cb);
    }
    /* Bounded: a lookup glibc will not cancel is waited for a little, then left behind
     * (the process is exiting; freeing it under glibc's thread would be worse). */
    for (int i = 0; i < 20 && r->pending; i++) {
        const struct timespec tick = {0, 50 * 1000 * 1000};
        wake_cb(r->loop, &r->wake, 0);
        if (r->pending)
            nanosleep(&tick, NULL);
    }
    ev_ref(r->loop);
    ev_async_stop(r->loop, &r->wake);
}

static bool is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

lp_err lp_resolve_start(struct lp_resolver *r, const char *host, uint16_t port, lp_resolve_cb cb,
                        void *user, struct lp_resolve **out)
{
    char err[320];
    struct lp_resolve *q;

    *out = NULL;
    if (is_numeric(host)) {
        struct lp_addr a;
        if (lp_net_resolve(host, port, &a, err, sizeof(err)) != LP_OK)
            cb(user, NULL, err);
        else
            cb(user, &a, NULL);
        return LP_OK;
    }
    if (strlen(host) >= sizeof(q->host))
        return LP_ERR_TOO_BIG;
    if ((q = calloc(1, sizeof(*q))) == NULL)
        return LP_ERR_NOMEM;
    snprintf(q->host, sizeof(q->host), "%s", host);
    snprintf(q->port, sizeof(q->port), "%u", (unsigned)port);
    q->hints.ai_family = AF_UNSPEC;
    q->hints.ai_socktype = SOCK_STREAM;
    q->hints.ai_flags = AI_NUMERICSERV;
    q->cb.ar_name = q->host;
    q->cb.ar_service = q->port;
    q->cb.ar_request = &q->hints;
    q->done = cb;
    q->user = user;
    q->r = r;

    struct gaicb *list[1] = {&q->cb};
    struct sigevent sev;
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = notify_thread;
    sev.sigev_value.sival_ptr = r;
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
        free(q);
        return LP_ERR_IO;
    }
    q->next = r->pending;
    r->pending = q;
    *out = q;
    return LP_OK;
}

void lp_resolve_cancel(struct lp_resolve *q)
{
    if (q == NULL)
        return;
    q->done = NULL;
    /* Freed when glibc reports it finished; a request cancelled while still queued gets no
     * notification, so sweep now. */
    if (gai_cancel(&q->cb) == EAI_CANCELED)
        ev_async_send(q->r->loop, &q->r->wake);
}
