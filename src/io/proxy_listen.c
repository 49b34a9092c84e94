/* proxy_listen.c — the PROXY v2 listener in front of the handshake. See proxy_listen.h. */
#include "limpet/proxy_listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/fwdspec.h"
#include "limpet/log.h"
#include "limpet/proxyv2.h"
#include "limpet/wire.h"

/* One connection still reading its PROXY header. */
struct prelude {
    struct lp_proxy_listener *pl;
    int fd;
    struct lp_addr peer; /* the balancer */
    char name[64];
    uint8_t buf[LP_PROXY_MAX];
    size_t len;
    ev_io io;
    ev_timer timer;
    struct prelude *prev, *next;
};

struct lp_proxy_listener {
    struct lp_runtime *rt;
    const struct lp_config *cfg;
    lp_accept_fn *fn;
    void *user;
    int lfd;
    struct lp_acceptor acc;
    struct prelude *pending;
    size_t npending;             /* bounded by limits.max_pending */
    lp_time refused_logged;      /* refusals are logged at most once a second ... */
    unsigned long refused_quiet; /* ... with a count of those not logged */
};

static void prelude_free(struct prelude *p, bool close_fd, bool reset)
{
    struct lp_proxy_listener *pl = p->pl;

    ev_io_stop(pl->rt->loop, &p->io);
    ev_timer_stop(pl->rt->loop, &p->timer);
    if (close_fd && reset)
        lp_net_close_reset(p->fd);
    else if (close_fd)
        close(p->fd);
    if (p->prev)
        p->prev->next = p->next;
    else
        pl->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    pl->npending--;
    free(p);
}

/* One line per refusal, but a flood of them (a misconfigured balancer, a scanner) writes at
 * most one a second, with how many it stands for. */
static void refuse(struct lp_proxy_listener *pl, const char *name, const char *why)
{
    lp_time now = lp_now();

    pl->rt->stats.handshakes_refused[LP_HS_PROXY]++;
    if (now - pl->refused_logged < 1000) {
        pl->refused_quiet++;
        return;
    }
    lp_info("refused connection from %s on the PROXY listener: %s (%lu more refused in the last "
            "second)",
            name, why, pl->refused_quiet);
    pl->refused_logged = now;
    pl->refused_quiet = 0;
}

/* The client's address from the header; UNSPEC keeps the connection's own, as the spec asks. */
static void client_addr(const struct prelude *p, const struct lp_proxy_hdr *h, struct lp_addr *a)
{
    *a = p->peer;
    if (h->family == LP_PROXY_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&a->sa;
        memset(a, 0, sizeof(*a));
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, h->src, 4);
        in->sin_port = htons(h->sport);
        a->len = sizeof(*in);
    } else if (h->family == LP_PROXY_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&a->sa;
        memset(a, 0, sizeof(*a));
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, h->src, 16);
        in6->sin6_port = htons(h->sport);
        a->len = sizeof(*in6);
    }
}

/* A balancer's health check: say whether new sessions are welcome here. HAProxy's tcp-check
 * expects "limpet ready" (config/haproxy.cfg), so a draining node stops getting new sessions
 * while `use-server` (with `option persist`) still routes its own sessions' resumes to it. */
static void answer_check(struct prelude *p)
{
    const char *line = p->pl->rt->draining ? "limpet draining\n" : "limpet ready\n";

    lp_debug("health check from %s: %s", p->name, p->pl->rt->draining ? "draining" : "ready");
    (void)!send(p->fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    prelude_free(p, true, false);
}

static void header_done(struct prelude *p, const struct lp_proxy_hdr *h)
{
    struct lp_proxy_listener *pl = p->pl;
    struct lp_addr client;
    char name[64];
    int fd = p->fd;

    if (h->local) {
        answer_check(p);
        return;
    }
    client_addr(p, h, &client);
    lp_debug("connection from %s via %s", lp_net_addr_str(&client, name, sizeof(name)), p->name);
    prelude_free(p, false, false);
    pl->fn(pl->user, fd, &client);
}

/* Reads only as far as the header goes: the header's fixed part, then the length it gives. */
static void prelude_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct prelude *p = LP_CONTAINER_OF(w, struct prelude, io);
    struct lp_proxy_hdr h;
    const char *why = NULL;
    char msg[160];
    (void)loop;
    (void)revents;

    for (;;) {
        lp_err rc = lp_proxy_parse(p->buf, p->len, &h, &why);
        if (rc == LP_OK) {
            header_done(p, &h);
            return;
        }
        if (rc != LP_ERR_TRUNCATED) {
            snprintf(msg, sizeof(msg), "bad PROXY v2 header: %s", why ? why : "?");
            refuse(p->pl, p->name, msg);
            prelude_free(p, true, true);
            return;
        }
        size_t need = p->len < LP_PROXY_FIXED_LEN
                          ? LP_PROXY_FIXED_LEN
                          : LP_PROXY_FIXED_LEN + lp_load_u16(p->buf + LP_PROXY_FIXED_LEN - 2);
        need = LP_MIN(need, sizeof(p->buf)); /* the parser refuses a longer one */
        ssize_t n = recv(p->fd, p->buf + p->len, need - p->len, 0);
        if (n > 0) {
            p->len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n == 0 && p->len == 0) /* a plain TCP check: connect, close */
            lp_debug("connection from %s on the PROXY listener closed before any byte", p->name);
        else {
            snprintf(msg, sizeof(msg), "%s after %zu bytes of its PROXY v2 header",
                     n == 0 ? "closed" : strerror(errno), p->len);
            refuse(p->pl, p->name, msg);
        }
        prelude_free(p, true, false);
        return;
    }
}

static void prelude_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct prelude *p = LP_CONTAINER_OF(w, struct prelude, timer);
    char msg[128];
    (void)loop;
    (void)revents;
    snprintf(msg, sizeof(msg), "no whole PROXY v2 header within %llums (%zu bytes)",
             (unsigned long long)p->pl->cfg->limits.handshake_timeout, p->len);
    refuse(p->pl, p->name, msg);
    prelude_free(p, true, true);
}

static void accepted(void *user, int fd, const struct lp_addr *peer)
{
    struct lp_proxy_listener *pl = user;
    uint8_t src[16];
    size_t src_len = lp_net_addr_bytes(peer, src);
    struct prelude *p;
    char name[64];

    lp_net_addr_str(peer, name, sizeof(name));
    if (src_len == 0 ||
        !lp_cidr_list_match(&pl->cfg->proxy_protocol.trusted_list, src_len == 4 ? 4 : 6, src)) {
        refuse(pl, name, "not in proxy_protocol.trusted");
        lp_net_close_reset(fd);
        return;
    }
    if (pl->npending >= pl->cfg->limits.max_pending || (p = calloc(1, sizeof(*p))) == NULL) {
        refuse(pl, name,
               "too many connections waiting for their PROXY header (limits.max_pending)");
        lp_net_close_reset(fd);
        return;
    }
    p->pl = pl;
    p->fd = fd;
    p->peer = *peer;
    memcpy(p->name, name, sizeof(p->name));
    ev_io_init(&p->io, prelude_read_cb, fd, EV_READ);
    ev_io_start(pl->rt->loop, &p->io);
    ev_timer_init(&p->timer, prelude_timer_cb, (double)pl->cfg->limits.handshake_timeout / 1000.0,
                  0.);
    ev_timer_start(pl->rt->loop, &p->timer);
    p->next = pl->pending;
    if (pl->pending)
        pl->pending->prev = p;
    pl->pending = p;
    pl->npending++;
}

lp_err lp_proxy_listener_new(struct lp_runtime *rt, const struct lp_config *cfg, lp_accept_fn *fn,
                             void *user, struct lp_proxy_listener **out)
{
    char host[LP_ADDR_MAX], err[256], name[64];
    uint16_t port;
    struct lp_addr addr;
    struct lp_proxy_listener *pl;

    *out = NULL;
    if (lp_parse_hostport(cfg->proxy_protocol.listen, host, sizeof(host), &port) != LP_OK ||
        lp_net_resolve(host, port, &addr, err, sizeof(err)) != LP_OK) {
        lp_error("proxy_protocol.listen: \"%s\" is not an address to listen on",
                 cfg->proxy_protocol.listen);
        return LP_ERR_INVALID;
    }
    if ((pl = calloc(1, sizeof(*pl))) == NULL)
        return LP_ERR_NOMEM;
    pl->rt = rt;
    pl->cfg = cfg;
    pl->fn = fn;
    pl->user = user;
    if (lp_net_listen(&addr, &pl->lfd, err, sizeof(err)) != LP_OK ||
        lp_net_local_addr(pl->lfd, &addr) != LP_OK) {
        lp_error("proxy_protocol.listen: %s", err);
        if (pl->lfd >= 0)
            close(pl->lfd);
        free(pl);
        return LP_ERR_IO;
    }
    lp_acceptor_init(&pl->acc, rt->loop, pl->lfd, "the PROXY port", accepted, pl);
    lp_acceptor_start(&pl->acc);
    lp_info("listening on %s for a balancer (PROXY v2 from %s)",
            lp_net_addr_str(&addr, name, sizeof(name)), cfg->proxy_protocol.trusted);
    *out = pl;
    return LP_OK;
}

void lp_proxy_listener_reconfigure(struct lp_proxy_listener *pl, const struct lp_config *cfg)
{
    if (pl != NULL)
        pl->cfg = cfg;
}

void lp_proxy_listener_stop(struct lp_proxy_listener *pl)
{
    if (pl != NULL)
        lp_acceptor_stop(&pl->acc);
}

void lp_proxy_listener_free(struct lp_proxy_listener *pl)
{
    if (pl == NULL)
        return;
    lp_acceptor_stop(&pl->acc);
    close(pl->lfd);
    while (pl->pending)
        prelude_free(pl->pending, true, false);
    free(pl);
}
