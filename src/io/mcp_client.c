/* mcp_client.c — `limpet mcp`: the host's stdio, filtered by lp_mcpc, over one MCP stream
 * at a time (see mcpio.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "limpet/log.h"
#include "limpet/stream.h"
#include "limpet/mcpclient.h"
#include "limpet/mcpio.h"
#include "limpet/stdio.h"

#define HIGH_WATER (1u << 20) /* queued bytes past which the side feeding a queue pauses */
#define MAX_PENDING 4096u     /* host requests in flight at once */
#define READ_CHUNK 65536u
#define FLUSH_LIMIT 2.0 /* seconds allowed to write the last answers before exiting */

struct lp_mcp_client {
    const struct lp_config *cfg;
    const char *name;
    char scope[136];
    lp_mcpc *rpc;
    struct lp_client *c;
    struct lp_session *s;  /* NULL once the session is lost */
    struct lp_stream *st;  /* the current MCP stream, NULL between streams */
    bool open;             /* OPEN_OK seen on st */
    bool in_eof, out_dead; /* stdin ended; stdout cannot be written any more */
    bool finishing;
    bool gave_up; /* out of memory: answers can no longer be promised (give_up) */
    int finish_code;
    int saved_in, saved_out;
    struct ev_loop *loop;
    ev_io in, out;
    ev_timer limit;
};

static void maybe_finish(struct lp_mcp_client *m);
static void start_out(struct lp_mcp_client *m);

/* Out of memory, a message from or for the host could be neither passed on nor answered, so
 * an answer to every request can no longer be promised. Rather than go on with a hole in
 * the conversation: every pending request is answered with why (as far as memory allows),
 * stdin is no longer read, and the process exits 1 once stdout has taken what is owed. */
static void give_up(struct lp_mcp_client *m, const char *why)
{
    if (m->gave_up)
        return;
    m->gave_up = true;
    lp_error("mcp %s: %s; exiting", m->name, why);
    if (lp_mcpc_stream_lost(m->rpc, why) != LP_OK)
        lp_error("mcp %s: out of memory: not every pending request could be answered", m->name);
    ev_io_stop(m->loop, &m->in);
    m->in_eof = true;
    m->finishing = true;
    m->finish_code = 1;
    ev_timer_start(m->loop, &m->limit);
    start_out(m);
    maybe_finish(m);
}

/* Every pending request gets an error saying why; see give_up for when even that fails. */
static void answer_pending(struct lp_mcp_client *m, const char *why)
{
    if (lp_mcpc_stream_lost(m->rpc, why) != LP_OK)
        give_up(m, "out of memory: pending requests could not all be answered");
}

/* ---- the stream --------------------------------------------------------------------------- */

static void ended(struct lp_stream *st, uint16_t code, const char *why, void *user);
static void stream_event(struct lp_stream *st, const struct lp_mux_event *ev, void *user);
static const struct lp_stream_hooks hooks = {.event = stream_event, .ended = ended};

static void open_stream(struct lp_mcp_client *m)
{
    /* An MCP stream waits for its OPEN_OK as long as the session lives: a host must never
     * see an error because the network was slow to come back. */
    lp_time wait = m->cfg->reconnect.give_up_after + m->cfg->reconnect.connect_timeout;

    if (m->st || m->s == NULL || m->finishing)
        return;
    m->open = false;
    if (lp_stream_open_fds(m->s, -1, -1, LP_KIND_MCP, m->name, m->scope, wait, &hooks, m, &m->st) !=
        LP_OK) {
        m->st = NULL;
        answer_pending(m, "cannot open a stream (session.max_streams reached?)");
    }
}

static void start_out(struct lp_mcp_client *m)
{
    if (!m->out_dead && lp_mcpc_to_host(m->rpc)->buffered > 0)
        ev_io_start(m->loop, &m->out);
}

/* Host lines → the stream, as far as credit allows; WRITABLE brings us back. */
static void pump_tunnel(struct lp_mcp_client *m)
{
    struct lp_streamq *q = lp_mcpc_to_tunnel(m->rpc);

    while (m->st && m->open && q->buffered > 0) {
        const uint8_t *data;
        size_t n = lp_streamq_peek(q, &data), taken = 0;
        struct lp_session *s = lp_stream_session(m->st);
        if (lp_mux_send(s->mux, lp_stream_id(m->st), data, n, &taken) != LP_OK || taken == 0)
            break;
        lp_streamq_drop(q, taken);
        lp_session_dirty(s);
    }
    if (!m->in_eof && !m->finishing && q->buffered < HIGH_WATER)
        ev_io_start(m->loop, &m->in);
    maybe_finish(m);
}

/* The stream's bytes → lp_mcpc (→ to_host), unless stdout is already far behind. */
static void drain_tunnel(struct lp_mcp_client *m)
{
    struct lp_mux_span spans[16];

    while (m->st && lp_mcpc_to_host(m->rpc)->buffered < HIGH_WATER) {
        struct lp_session *s = lp_stream_session(m->st);
        uint32_t id = lp_stream_id(m->st);
        size_t n = lp_mux_recv_peekv(s->mux, id, spans, 16), total = 0;
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            if (lp_mcpc_from_tunnel(m->rpc, spans[i].data, spans[i].len) != LP_OK) {
                give_up(m, "out of memory: a message from the MCP server could not be passed on");
                return;
            }
            total += spans[i].len;
        }
        lp_mux_recv_consumed(s->mux, id, total);
        lp_session_dirty(s);
    }
    start_out(m);
}

static void stream_event(struct lp_stream *st, const struct lp_mux_event *ev, void *user)
{
    struct lp_mcp_client *m = user;

    switch (ev->type) {
    case LP_MUX_EV_OPEN_OK:
        m->open = true;
        lp_debug("mcp %s: attached (stream %u)", m->name, (unsigned)lp_stream_id(st));
        pump_tunnel(m);
        drain_tunnel(m);
        break;
    case LP_MUX_EV_READABLE:
        drain_tunnel(m);
        break;
    case LP_MUX_EV_WRITABLE:
        pump_tunnel(m);
        break;
    case LP_MUX_EV_FIN: /* the pool never half-closes: treat it as the end of this stream */
        drain_tunnel(m);
        if (lp_mcpc_tunnel_eof(m->rpc) != LP_OK)
            give_up(m, "out of memory: a message from the MCP server could not be passed on");
        lp_stream_reset(st, LP_RST_RESET, "the server closed the MCP stream");
        break;
    default:
        break;
    }
}

static void ended(struct lp_stream *st, uint16_t code, const char *why, void *user)
{
    struct lp_mcp_client *m = user;
    char text[LP_FRAME_MAX_TEXT + 128];

    (void)st;
    m->st = NULL;
    m->open = false;
    if (code == LP_RST_SESSION_LOST || code == LP_RST_SHUTDOWN)
        snprintf(text, sizeof(text), "the tunnel session was lost: %s", why);
    else if (code == 0)
        snprintf(text, sizeof(text), "mcp server %s closed the session", m->name);
    else
        snprintf(text, sizeof(text), "%s", why);
    if (code != LP_RST_SESSION_LOST && code != LP_RST_SHUTDOWN)
        lp_warn("mcp %s: stream ended: %s: %s", m->name, code ? lp_rst_code_name(code) : "closed",
                why);
    answer_pending(m, text);
    start_out(m);
    /* Permanent refusals: the next request would only be refused again. */
    if (code == LP_RST_NOT_ALLOWED || code == LP_RST_UNAVAILABLE) {
        m->finishing = true;
        m->finish_code = code == LP_RST_NOT_ALLOWED ? 2 : 1;
        lp_error("mcp %s: %s", m->name, why);
    }
    /* stdin may have stopped on a full queue toward the stream, which is empty now: read on,
     * or the host's next message would never come (pump_tunnel ends with maybe_finish). */
    pump_tunnel(m);
}

/* ---- the host's stdio ---------------------------------------------------------------------- */

static void in_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_mcp_client *m = LP_CONTAINER_OF(w, struct lp_mcp_client, in);
    uint8_t buf[READ_CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    (void)revents;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0) {
        if (lp_mcpc_from_host(m->rpc, buf, (size_t)n) != LP_OK) {
            give_up(m, "out of memory: a message from the host could be neither sent nor "
                       "answered");
            return;
        }
    } else {
        ev_io_stop(loop, w);
        m->in_eof = true;
        if (lp_mcpc_host_eof(m->rpc) != LP_OK) {
            give_up(m, "out of memory: the host's last message could be neither sent nor "
                       "answered");
            return;
        }
        lp_debug("mcp %s: stdin closed", m->name);
        m->finishing = true; /* the host is done with us: exit 0 once the rest is out */
    }
    if (lp_mcpc_to_tunnel(m->rpc)->buffered >= HIGH_WATER)
        ev_io_stop(loop, w);
    if (m->st == NULL && lp_mcpc_to_tunnel(m->rpc)->buffered > 0 && !m->in_eof)
        open_stream(m); /* after a crash: the next message starts a fresh server process */
    pump_tunnel(m);
    start_out(m);
}

static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_mcp_client *m = LP_CONTAINER_OF(w, struct lp_mcp_client, out);
    struct lp_streamq *q = lp_mcpc_to_host(m->rpc);
    struct lp_mux_span spans[16];
    struct iovec iov[16];
    (void)revents;

    while (q->buffered > 0) {
        size_t n = lp_streamq_peekv(q, spans, 16);
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = (void *)(uintptr_t)spans[i].data;
            iov[i].iov_len = spans[i].len;
        }
        ssize_t w2 = writev(STDOUT_FILENO, iov, (int)n);
        if (w2 < 0 && errno == EINTR)
            continue;
        if (w2 < 0 && errno == EAGAIN)
            return;
        if (w2 <= 0) { /* the host stopped reading: nobody is left to answer */
            lp_debug("mcp %s: stdout: %s", m->name, w2 < 0 ? strerror(errno) : "closed");
            m->out_dead = true;
            m->finishing = true;
            lp_streamq_drop(q, q->buffered);
            break;
        }
        lp_streamq_drop(q, (size_t)w2);
    }
    ev_io_stop(loop, w);
    drain_tunnel(m); /* it may have paused for us */
    maybe_finish(m);
}

/* Exit once what is owed is written: answers to the host, and (when stdin ended) the host's
 * last lines to the server. */
static void maybe_finish(struct lp_mcp_client *m)
{
    if (!m->finishing || m->c == NULL)
        return;
    if (!m->out_dead && lp_mcpc_to_host(m->rpc)->buffered > 0)
        return;
    if (m->st && m->open && lp_mcpc_to_tunnel(m->rpc)->buffered > 0)
        return;
    ev_timer_stop(m->loop, &m->limit);
    ev_io_stop(m->loop, &m->in);
    ev_io_stop(m->loop, &m->out);
    lp_client_finish(m->c, m->finish_code);
}

static void limit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_mcp_client *m = LP_CONTAINER_OF(w, struct lp_mcp_client, limit);
    (void)loop;
    (void)revents;
    lp_warn("mcp %s: could not write everything owed within %.0fs; exiting", m->name, FLUSH_LIMIT);
    m->out_dead = true;
    lp_streamq_drop(lp_mcpc_to_tunnel(m->rpc), lp_mcpc_to_tunnel(m->rpc)->buffered);
    maybe_finish(m);
}

/* ---- the client app ---------------------------------------------------------------------- */

static void on_start(void *user, struct lp_session *s)
{
    struct lp_mcp_client *m = user;

    m->s = s;
    m->loop = s->rt->loop;
    lp_stdio_nonblock(STDIN_FILENO, &m->saved_in);
    lp_stdio_nonblock(STDOUT_FILENO, &m->saved_out);
    ev_io_init(&m->in, in_cb, STDIN_FILENO, EV_READ);
    ev_io_init(&m->out, out_cb, STDOUT_FILENO, EV_WRITE);
    ev_timer_init(&m->limit, limit_cb, FLUSH_LIMIT, 0.);
    ev_io_start(m->loop, &m->in);
    open_stream(m); /* at once: the server process starts while the host gets going */
}

static void on_lost(void *user, int code, const char *why)
{
    struct lp_mcp_client *m = user;

    lp_error("mcp %s: session lost: %s", m->name, why);
    m->s = NULL;
    m->finishing = true;
    m->finish_code = code;
    ev_timer_start(m->loop, &m->limit);
    start_out(m);
    maybe_finish(m);
}

static const struct lp_client_app mcp_app = {.start = on_start, .lost = on_lost};

const struct lp_client_app *lp_mcp_client_app(void)
{
    return &mcp_app;
}

lp_err lp_mcp_client_new(const struct lp_config *cfg, const char *name, const char *scope,
                         struct lp_mcp_client **out)
{
    struct lp_mcp_client *m = calloc(1, sizeof(*m));

    *out = m;
    if (m == NULL)
        return LP_ERR_NOMEM;
    m->cfg = cfg;
    m->name = name;
    m->saved_in = m->saved_out = -1;
    /* No --scope: a scope of our own, marked '~' so the pool ends the process with us. */
    if (scope)
        snprintf(m->scope, sizeof(m->scope), "%s", scope);
    else
        snprintf(m->scope, sizeof(m->scope), "~%08x%08x", lp_random_u32(), lp_random_u32());
    if ((m->rpc = lp_mcpc_new(cfg->mcp.max_message, MAX_PENDING)) == NULL) {
        free(m);
        *out = NULL;
        return LP_ERR_NOMEM;
    }
    return LP_OK;
}

void lp_mcp_client_set_client(struct lp_mcp_client *m, struct lp_client *c)
{
    m->c = c;
    maybe_finish(m);
}

void lp_mcp_client_free(struct lp_mcp_client *m)
{
    if (m == NULL)
        return;
    if (m->loop) {
        ev_io_stop(m->loop, &m->in);
        ev_io_stop(m->loop, &m->out);
        ev_timer_stop(m->loop, &m->limit);
    }
    lp_stdio_restore(STDIN_FILENO, m->saved_in);
    lp_stdio_restore(STDOUT_FILENO, m->saved_out);
    lp_mcpc_free(m->rpc);
    free(m);
}
