/* socks_io.c — one -D connection: the SOCKS handshake on the local socket, then a stream
 * like a -L connection's, whose OPEN_OK or RST becomes the SOCKS reply (see socks.h). */
#include "limpet/socksio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/stream.h"
#include "limpet/log.h"
#include "limpet/socks.h"

#define HANDSHAKE_LIMIT 10.0 /* seconds a local client has to say what it wants */

struct socks_conn {
    struct lp_session *(*session)(void *user);
    void *user;
    const struct lp_config *cfg;
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer timer;
    struct lp_socks p;
    char from[64];
    bool replied;
};

static void conn_free(struct socks_conn *c)
{
    ev_io_stop(c->loop, &c->io);
    ev_timer_stop(c->loop, &c->timer);
    free(c);
}

/* Small replies (at most LP_SOCKS_OUT_MAX bytes) to a socket whose buffer is empty: one send
 * takes them whole. A client that went away is found out by the next read. */
static void write_out(int fd, struct lp_socks *p)
{
    if (p->out_len > 0 && send(fd, p->out, p->out_len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        lp_debug("socks: reply not sent: %s", strerror(errno));
    p->out_len = 0;
}

static void fail(struct socks_conn *c, const char *why)
{
    write_out(c->fd, &c->p);
    lp_info("socks connection from %s refused: %s", c->from, why);
    close(c->fd);
    conn_free(c);
}

/* ---- after the request: the stream ------------------------------------------------------- */

static void on_open_ok(struct lp_stream *st, int fd, void *user)
{
    struct socks_conn *c = user;
    (void)st;
    lp_socks_reply(&c->p, 0);
    write_out(fd, &c->p);
    c->replied = true;
}

static void on_ended(struct lp_stream *st, uint16_t code, const char *why, void *user)
{
    struct socks_conn *c = user;
    (void)why;
    /* The stream still holds the socket here: a refusal gets its SOCKS code before close. */
    if (!c->replied && code != 0) {
        lp_socks_reply(&c->p, code);
        write_out(c->fd, &c->p);
    }
    (void)st;
    free(c);
}

static const struct lp_stream_hooks socks_hooks = {.ended = on_ended, .open_ok = on_open_ok};

static void request(struct socks_conn *c)
{
    struct lp_session *s = c->session(c->user);
    struct lp_stream *st;
    char target[LP_SOCKS_HOST_MAX + 16];

    ev_io_stop(c->loop, &c->io);
    ev_timer_stop(c->loop, &c->timer);
    write_out(c->fd, &c->p);
    lp_socks_target(&c->p, target, sizeof(target));
    if (s == NULL) {
        lp_socks_reply(&c->p, LP_RST_INTERNAL);
        fail(c, "no session");
        return;
    }
    lp_debug("sess=%s socks from %s -> %s", s->tag, c->from, target);
    lp_net_tune_stream(c->fd);
    /* From here the stream owns the socket and c (freed in on_ended). */
    if (lp_stream_open_fds(s, c->fd, c->fd, LP_KIND_TCP, target, NULL,
                           c->cfg->forward.connect_timeout, &socks_hooks, c, &st) != LP_OK) {
        lp_socks_reply(&c->p, LP_RST_LIMIT);
        fail(c, "cannot open a stream");
    }
}

/* ---- the handshake -------------------------------------------------------------------------- */

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct socks_conn *c = LP_CONTAINER_OF(w, struct socks_conn, io);
    uint8_t buf[LP_SOCKS_INPUT_MAX];
    size_t used = 0;
    (void)loop;
    (void)revents;

    /* Peeked, then only what the handshake used is taken: bytes the application sends
     * right after its request stay in the socket for the stream. */
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        fail(c, n == 0 ? "closed during the handshake" : strerror(errno));
        return;
    }
    enum lp_socks_state st = lp_socks_feed(&c->p, buf, (size_t)n, &used);
    if (used > 0 && recv(c->fd, buf, used, 0) != (ssize_t)used) {
        fail(c, "lost bytes of the handshake");
        return;
    }
    if (st == LP_SOCKS_FAIL) {
        fail(c, c->p.why ? c->p.why : "bad request");
        return;
    }
    write_out(c->fd, &c->p);
    if (st == LP_SOCKS_REQUEST)
        request(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct socks_conn *c = LP_CONTAINER_OF(w, struct socks_conn, timer);
    (void)loop;
    (void)revents;
    fail(c, "no request within 10s");
}

void lp_socks_accept(struct ev_loop *loop, const struct lp_config *cfg, int fd, const char *from,
                     struct lp_session *(*session)(void *user), void *user)
{
    struct socks_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        close(fd);
        return;
    }
    c->session = session;
    c->user = user;
    c->cfg = cfg;
    c->loop = loop;
    c->fd = fd;
    snprintf(c->from, sizeof(c->from), "%s", from);
    lp_socks_init(&c->p);
    ev_io_init(&c->io, read_cb, fd, EV_READ);
    ev_timer_init(&c->timer, timer_cb, HANDSHAKE_LIMIT, 0.);
    ev_io_start(loop, &c->io);
    ev_timer_start(loop, &c->timer);
}
