/* stream.c — the local end of a stream: a TCP socket joined to one mux stream.
 *
 * Reading: local socket → lp_mux_send_reserve/commit (zero copy into the replay buffer).
 * A stream with no credit or no replay room stops reading until WRITABLE: that is the
 * backpressure that keeps memory bounded. Writing: lp_mux_recv_peek → socket →
 * lp_mux_recv_consumed, so credit goes back only for bytes the socket really took.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "limpet/fwdspec.h"
#include "limpet/log.h"
#include "limpet/reverse.h"
#include "limpet/text.h"
#include "limpet/policy.h"
#include "limpet/session.h"
#include "limpet/stream.h"

#define PUMP_IOV 16        /* queued chunks written per writev */
#define PUMP_READ_FRAMES 4 /* DATA frames filled per readv */

enum stream_state {
    ST_RESOLVING, /* server: looking the target's name up */
    ST_DIALING,   /* server: connecting to the target */
    ST_OPENING,   /* client: OPEN sent, waiting for OPEN_OK */
    ST_OPEN,      /* data flows */
};

struct lp_stream {
    struct lp_session *s;
    uint32_t id;
    int fd;  /* read side: the socket, or a pipe / stdin; -1 for a filter end (hooks) */
    int wfd; /* write side: == fd for a socket; stdout or a pipe otherwise; -1 once shut */
    const struct lp_stream_hooks *hooks; /* NULL: a plain pump between fd/wfd and the mux */
    void *hook_user;
    enum stream_state state;
    bool read_eof;   /* local EOF seen and FIN sent */
    bool write_shut; /* peer FIN delivered as shutdown(SHUT_WR) */
    bool dead;
    ev_io rio, wio;
    ev_timer timer;            /* resolve + dial / open timeout */
    struct lp_resolve *lookup; /* ST_RESOLVING: the lookup in flight */
    char *target; /* server: HOST:PORT or unix:/PATH as the peer sent it (owned), kept for the
                   * policy check a reload repeats (lp_stream_recheck) */
    struct lp_stream *prev, *next, *next_dead;
    uint64_t up, down; /* bytes local→tunnel, tunnel→local */
    uint8_t kind;      /* LP_KIND_*, and where it goes, for `limpet status` */
    char shown[128];
};

/* ---- lifetime ------------------------------------------------------------------------- */

static void unlink_stream(struct lp_stream *st)
{
    struct lp_session *s = st->s;
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    s->nstreams--;
    s->rt->nstreams--;
}

/* Stops everything, closes the socket (with a reset when `reset`), tells the owner of a
 * hooked end why (code 0: closed cleanly), frees at loop end. */
static void stream_end(struct lp_stream *st, bool reset, uint16_t code, const char *why)
{
    struct ev_loop *loop = st->s->rt->loop;

    if (st->dead)
        return;
    st->dead = true;
    if (st->state != ST_OPEN && code != 0 && code != LP_RST_SHUTDOWN && code != LP_RST_SESSION_LOST)
        st->s->rt->stats.streams_refused++;
    if (st->hooks && st->hooks->ended)
        st->hooks->ended(st, code, why, st->hook_user);
    ev_io_stop(loop, &st->rio);
    ev_io_stop(loop, &st->wio);
    ev_timer_stop(loop, &st->timer);
    lp_resolve_cancel(st->lookup);
    st->lookup = NULL;
    free(st->target);
    st->target = NULL;
    if (st->wfd >= 0 && st->wfd != st->fd)
        close(st->wfd);
    st->wfd = -1;
    if (st->fd >= 0) {
        if (reset)
            lp_net_close_reset(st->fd);
        else
            close(st->fd);
        st->fd = -1;
    }
    lp_mux_set_user(st->s->mux, st->id, NULL);
    unlink_stream(st);
    st->next_dead = st->s->rt->dead_streams;
    st->s->rt->dead_streams = st;
}

void lp_runtime_reap_streams(struct lp_runtime *rt)
{
    while (rt->dead_streams) {
        struct lp_stream *st = rt->dead_streams;
        rt->dead_streams = st->next_dead;
        free(st);
    }
}

void lp_stream_free_all(struct lp_session *s)
{
    while (s->streams)
        stream_end(s->streams, true, LP_RST_SHUTDOWN, "the session was closed");
}

/* A local failure: tell the peer why and drop the local end. */
static void stream_abort(struct lp_stream *st, uint16_t code, const char *why)
{
    struct lp_session *s = st->s;
    lp_info("sess=%s stream=%u reset: %s", s->tag, (unsigned)st->id, why);
    lp_mux_reset(s->mux, st->id, code, why);
    stream_end(st, true, code, why);
    lp_session_dirty(s);
}

/* A stream the peer opened that we will not serve: RST to the peer, and the end (there is no
 * local socket yet to reset). */
static void refuse(struct lp_stream *st, uint16_t code, const char *why)
{
    lp_mux_reset(st->s->mux, st->id, code, why);
    stream_end(st, false, code, why);
}

static void stream_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void stream_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void stream_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct lp_stream *stream_new(struct lp_session *s, uint32_t id, int fd,
                                    enum stream_state state)
{
    struct lp_stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->s = s;
    st->id = id;
    st->fd = fd;
    st->wfd = fd;
    st->state = state;
    ev_io_init(&st->rio, stream_read_cb, fd, EV_READ);
    ev_io_init(&st->wio, stream_write_cb, fd, EV_WRITE);
    ev_timer_init(&st->timer, stream_timer_cb, 0., 0.);
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->nstreams++;
    s->rt->nstreams++;
    s->rt->stats.streams_opened++;
    lp_mux_set_user(s->mux, id, st);
    return st;
}

static void describe(struct lp_stream *st, uint8_t kind, const char *target, size_t len)
{
    st->kind = kind;
    /* The peer chose these bytes: status prints them to a terminal and into JSON. */
    lp_text_safe(st->shown, sizeof(st->shown), target, len, false);
}

static void start_timer(struct lp_stream *st, lp_time ms)
{
    ev_timer_set(&st->timer, (double)ms / 1000.0, 0.);
    ev_timer_start(st->s->rt->loop, &st->timer);
}

/* ---- data both ways ------------------------------------------------------------------ */

/* Local socket → tunnel, as far as credit and replay room allow: one readv lands straight
 * in up to PUMP_IOV DATA frames of the replay buffer (no copy, a quarter of the syscalls
 * of one read per 16 KiB frame). */
static void pump_up(struct lp_stream *st)
{
    struct lp_session *s = st->s;
    struct lp_span spans[PUMP_IOV];
    struct iovec iov[PUMP_IOV];

    for (int i = 0; i < 8 && !st->read_eof && !st->dead; i++) {
        size_t count;
        size_t room = lp_mux_send_reservev(s->mux, st->id, spans, PUMP_READ_FRAMES, &count);
        if (room == 0) {
            ev_io_stop(s->rt->loop, &st->rio); /* WRITABLE restarts us */
            return;
        }
        for (size_t k = 0; k < count; k++) {
            iov[k].iov_base = spans[k].p;
            iov[k].iov_len = spans[k].n;
        }
        ssize_t n = readv(st->fd, iov, (int)count);
        if (n > 0) {
            lp_mux_send_commitv(s->mux, st->id, (size_t)n);
            st->up += (uint64_t)n;
            if ((size_t)n < room)
                break;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n < 0) {
            stream_abort(st, LP_RST_RESET, strerror(errno));
            return;
        }
        st->read_eof = true; /* EOF: half-close toward the far end */
        ev_io_stop(s->rt->loop, &st->rio);
        /* Refused only for a stream the mux no longer holds or never accepted (a bug of
         * ours): end it with a reason rather than leave the far end waiting for the FIN. */
        lp_err rc = lp_mux_shutdown(s->mux, st->id);
        if (rc != LP_OK) {
            char why[96];
            snprintf(why, sizeof(why), "cannot half-close the stream: %s", lp_strerror(rc));
            stream_abort(st, LP_RST_INTERNAL, why);
            return;
        }
    }
    if (!st->dead && !st->read_eof)
        ev_io_start(s->rt->loop, &st->rio);
}

/* Tunnel → local socket. Credit returns only for what the socket took. Queued chunks go
 * out together in one writev: the syscall, not the copy, is what costs here. */
static void pump_down(struct lp_stream *st)
{
    struct lp_session *s = st->s;
    struct lp_mux_span spans[PUMP_IOV];
    struct iovec iov[PUMP_IOV];

    while (!st->dead) {
        size_t n = lp_mux_recv_peekv(s->mux, st->id, spans, PUMP_IOV), want = 0;
        if (n == 0) {
            ev_io_stop(s->rt->loop, &st->wio);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = (void *)(uintptr_t)spans[i].data;
            iov[i].iov_len = spans[i].len;
            want += spans[i].len;
        }
        if (st->wfd < 0) /* nothing can take them: the far side must stop */
            return;
        /* writev works on sockets and pipes alike; SIGPIPE is ignored process-wide. */
        ssize_t w = writev(st->wfd, iov, (int)n);
        if (w > 0) {
            lp_mux_recv_consumed(s->mux, st->id, (size_t)w);
            st->down += (uint64_t)w;
            if ((size_t)w == want)
                continue;
            errno = EAGAIN;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            ev_io_start(s->rt->loop, &st->wio);
            return;
        }
        stream_abort(st, LP_RST_RESET, strerror(errno));
        return;
    }
}

static void stream_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_stream *st = LP_CONTAINER_OF(w, struct lp_stream, rio);
    struct lp_session *s = st->s;
    (void)loop;
    (void)revents;
    pump_up(st);
    lp_session_process(s);
}

/* The dial succeeded: OPEN_OK to the peer, then the opener's early DATA and our bytes. */
static void dial_done(struct lp_stream *st)
{
    struct lp_session *s = st->s;
    char why[LP_FRAME_MAX_TEXT];
    lp_err rc;

    /* The mux holds this OPEN until it is answered, so a refusal here is a bug of ours; the
     * peer still hears of it, as an RST, rather than waiting for OPEN_OK until its timeout. */
    if ((rc = lp_mux_accept(s->mux, st->id)) != LP_OK) {
        snprintf(why, sizeof(why), "cannot accept the stream: %s", lp_strerror(rc));
        stream_abort(st, LP_RST_INTERNAL, why);
        return;
    }
    st->state = ST_OPEN;
    lp_net_tune_stream(st->fd);
    lp_debug("sess=%s stream=%u connected to %s", s->tag, (unsigned)st->id, st->target);
    pump_down(st); /* the opener's early DATA */
    if (!st->dead)
        pump_up(st);
}

static void stream_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_stream *st = LP_CONTAINER_OF(w, struct lp_stream, wio);
    struct lp_session *s = st->s;
    (void)loop;
    (void)revents;
    if (st->state == ST_DIALING) {
        int err = lp_net_connect_result(st->fd);
        ev_io_stop(s->rt->loop, &st->wio);
        ev_timer_stop(s->rt->loop, &st->timer);
        if (err) {
            char why[LP_FRAME_MAX_TEXT];
            snprintf(why, sizeof(why), "connect to %s failed: %s", st->target, strerror(err));
            lp_info("sess=%s stream=%u reset: %s", s->tag, (unsigned)st->id, why);
            lp_mux_reset(s->mux, st->id, lp_net_rst_code(err), why);
            stream_end(st, false, lp_net_rst_code(err), why);
        } else {
            dial_done(st);
        }
    } else {
        pump_down(st);
    }
    lp_session_process(s);
}

static void stream_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_stream *st = LP_CONTAINER_OF(w, struct lp_stream, timer);
    struct lp_session *s = st->s;
    char why[128];
    (void)loop;
    (void)revents;
    if (st->state == ST_RESOLVING || st->state == ST_DIALING)
        snprintf(why, sizeof(why), "connect to target timed out after %llums",
                 (unsigned long long)s->cfg->forward.connect_timeout);
    else
        snprintf(why, sizeof(why), "tunnel did not open the stream within %llums",
                 (unsigned long long)s->cfg->forward.connect_timeout);
    stream_abort(st, LP_RST_TIMEOUT, why);
    lp_session_process(s);
}

/* ---- opening ----------------------------------------------------------------------------- */

void lp_stream_open_local(struct lp_session *s, int fd, uint8_t kind, const char *target,
                          lp_time wait, const char *from)
{
    uint32_t id;
    lp_err rc = lp_mux_open(s->mux, kind, target, strlen(target), NULL, 0, &id);
    if (rc != LP_OK) {
        lp_warn("sess=%s refused local connection from %s: %s", s->tag, from, lp_strerror(rc));
        lp_net_close_reset(fd);
        return;
    }
    struct lp_stream *st = stream_new(s, id, fd, ST_OPENING);
    if (st == NULL) {
        lp_warn("sess=%s stream=%u refused local connection from %s: out of memory", s->tag,
                (unsigned)id, from);
        lp_mux_reset(s->mux, id, LP_RST_INTERNAL, "out of memory");
        lp_net_close_reset(fd);
        return;
    }
    describe(st, kind, target, strlen(target));
    lp_net_tune_stream(fd);
    start_timer(st, wait);
    lp_debug("sess=%s stream=%u open from %s -> %s", s->tag, (unsigned)id, from, target);
    pump_up(st); /* what the application sent first rides with the OPEN */
    lp_session_dirty(s);
}

lp_err lp_stream_open_fds(struct lp_session *s, int rfd, int wfd, uint8_t kind, const char *target,
                          const char *arg, lp_time wait, const struct lp_stream_hooks *hooks,
                          void *user, struct lp_stream **out)
{
    uint32_t id;
    lp_err rc = lp_mux_open(s->mux, kind, target, strlen(target), arg, arg ? strlen(arg) : 0, &id);
    struct lp_stream *st;

    *out = NULL;
    if (rc != LP_OK) {
        lp_warn("sess=%s cannot open a stream to %s: %s", s->tag, target, lp_strerror(rc));
        return rc;
    }
    if ((st = stream_new(s, id, rfd, ST_OPENING)) == NULL) {
        lp_mux_reset(s->mux, id, LP_RST_INTERNAL, "out of memory");
        return LP_ERR_NOMEM;
    }
    describe(st, kind, target, strlen(target));
    st->wfd = wfd;
    ev_io_set(&st->wio, wfd, EV_WRITE);
    st->hooks = hooks;
    st->hook_user = user;
    start_timer(st, wait);
    lp_debug("sess=%s stream=%u open -> %s%s%s", s->tag, (unsigned)id, target, arg ? " " : "",
             arg ? arg : "");
    *out = st;
    if (rfd >= 0 && (hooks == NULL || hooks->event == NULL))
        pump_up(st); /* early DATA: what is there already rides with the OPEN */
    lp_session_dirty(s);
    if (st->dead) /* ended already (hooks->ended said why): nothing to hold on to */
        *out = NULL;
    return LP_OK;
}

lp_err lp_stream_adopt(struct lp_session *s, uint32_t id, const struct lp_stream_hooks *hooks,
                       void *user, struct lp_stream **out)
{
    struct lp_stream *st = stream_new(s, id, -1, ST_OPEN);

    *out = st;
    if (st == NULL) {
        lp_mux_reset(s->mux, id, LP_RST_INTERNAL, "out of memory");
        return LP_ERR_NOMEM;
    }
    st->hooks = hooks;
    st->hook_user = user;
    describe(st, LP_KIND_MCP, "", 0);
    return LP_OK;
}

void lp_stream_reset(struct lp_stream *st, uint16_t code, const char *why)
{
    if (st->dead)
        return;
    lp_mux_reset(st->s->mux, st->id, code, why);
    stream_end(st, true, code, why);
    lp_session_dirty(st->s);
}

uint32_t lp_stream_id(const struct lp_stream *st)
{
    return st->id;
}

struct lp_session *lp_stream_session(const struct lp_stream *st)
{
    return st->s;
}

void lp_stream_counts(const struct lp_stream *st, uint64_t *up, uint64_t *down)
{
    *up = st->up;
    *down = st->down;
}

const char *lp_stream_target(const struct lp_stream *st, uint8_t *kind)
{
    *kind = st->kind;
    return st->shown;
}

struct lp_stream *lp_stream_next(const struct lp_stream *st)
{
    return st->next;
}

/* A name the policy allows must not lead to this machine's own services (or link-local
 * ones) through a DNS answer someone else controls: such an address needs an address rule
 * of its own. "localhost" is expected to be local and is exempt. */
static bool resolved_allowed(struct lp_stream *st, const struct lp_addr *addr)
{
    struct lp_session *s = st->s;
    char host[LP_ADDR_MAX], ip[64], why[LP_ADDR_MAX + 160];
    uint8_t bytes[16];
    uint16_t port;
    size_t n = lp_net_addr_bytes(addr, bytes);

    if (s->rt->allow_target == NULL || n == 0 || !lp_policy_addr_is_internal(bytes, n) ||
        lp_parse_hostport(st->target, host, sizeof(host), &port) != LP_OK)
        return true;
    lp_net_addr_str(addr, ip, sizeof(ip));
    if (ip[0] == '[' && strchr(ip, ']') != NULL) { /* "[::1]:22" -> "::1" */
        size_t len = (size_t)(strchr(ip, ']') - ip - 1);
        memmove(ip, ip + 1, len);
        ip[len] = '\0';
    } else if (strrchr(ip, ':') != NULL) {
        *strrchr(ip, ':') = '\0';
    }
    if (strcmp(ip, host) == 0 || strcasecmp(host, "localhost") == 0 ||
        s->rt->allow_target(s->rt->allow_user, s->identity, ip, port))
        return true;
    snprintf(why, sizeof(why), "%s resolved to %s, which the server's policy does not allow", host,
             ip);
    lp_warn("sess=%s stream=%u refused: identity %s: %s", s->tag, (unsigned)st->id, s->identity,
            why);
    refuse(st, LP_RST_NOT_ALLOWED, why);
    return false;
}

/* Starts the non-blocking connect; stream_write_cb takes the result. False when it failed at
 * once (the stream is reset, the caller processes the session). */
static bool start_connect(struct lp_stream *st, const struct lp_addr *addr)
{
    struct lp_session *s = st->s;
    char why[320];
    int fd;

    if (lp_net_connect(addr, &fd, why, sizeof(why)) != LP_OK) {
        uint16_t code = lp_net_rst_code(errno);
        lp_info("sess=%s stream=%u reset: %s", s->tag, (unsigned)st->id, why);
        lp_mux_reset(s->mux, st->id, code, why);
        stream_end(st, false, code, why);
        return false;
    }
    st->fd = st->wfd = fd;
    st->state = ST_DIALING;
    ev_io_set(&st->rio, fd, EV_READ);
    ev_io_set(&st->wio, fd, EV_WRITE);
    ev_io_start(s->rt->loop, &st->wio);
    lp_debug("sess=%s stream=%u dialing %s", s->tag, (unsigned)st->id, st->target);
    return true;
}

/* The target's address is known: start the non-blocking connect. */
static void dial_resolved(void *user, const struct lp_addr *addr, const char *err)
{
    struct lp_stream *st = user;
    struct lp_session *s = st->s;

    st->lookup = NULL;
    if (addr == NULL) {
        lp_info("sess=%s stream=%u reset: %s", s->tag, (unsigned)st->id, err);
        refuse(st, LP_RST_UNREACHABLE, err);
        lp_session_process(s);
        return;
    }
    if (!resolved_allowed(st, addr) || !start_connect(st, addr))
        lp_session_process(s);
}

/* A unix socket on this host ("unix:/run/x.sock"): no lookup, and only where the policy
 * names that socket (policy.h: `*` never does). */
static void dial_unix(struct lp_stream *st)
{
    struct lp_session *s = st->s;
    const char *path = st->target + 5;
    static const char bad[] = "unix socket target is not an absolute path of 1..107 bytes";
    struct lp_addr addr;
    char why[320];
    int pin;
    lp_err rc;

    if (path[0] != '/' || lp_net_unix_addr(path, &addr) != LP_OK) {
        lp_info("sess=%s stream=%u reset: bad target \"%s\"", s->tag, (unsigned)st->id, st->target);
        refuse(st, LP_RST_BAD_TARGET, bad);
        return;
    }
    /* port 0: a unix target has none; the policy matches the path alone */
    if (s->rt->allow_target &&
        !s->rt->allow_target(s->rt->allow_user, s->identity, st->target, 0)) {
        lp_warn("sess=%s stream=%u refused: identity %s may not reach %s", s->tag, (unsigned)st->id,
                s->identity, st->target);
        refuse(st, LP_RST_NOT_ALLOWED, "not allowed by the server's policy");
        return;
    }
    /* The policy names paths; a symbolic link placed in an allowed directory would lead to any
     * socket this process can reach (a container engine's), so only the socket itself is
     * dialled, pinned against a swap between the check and the connect. */
    if ((rc = lp_net_unix_pin(path, &pin, &addr, why, sizeof(why))) != LP_OK) {
        uint16_t code = rc == LP_ERR_AUTH ? LP_RST_NOT_ALLOWED
                        : rc == LP_ERR_IO ? lp_net_rst_code(errno)
                                          : LP_RST_BAD_TARGET;
        lp_warn("sess=%s stream=%u refused: %s", s->tag, (unsigned)st->id, why);
        refuse(st, code, why);
        return;
    }
    start_timer(st, s->cfg->forward.connect_timeout);
    start_connect(st, &addr);
    close(pin); /* a unix connect resolves its path in the call itself */
}

void lp_stream_dial(struct lp_session *s, uint32_t id, const char *target, size_t target_len)
{
    char host[LP_ADDR_MAX];
    uint16_t port;
    struct lp_stream *st;
    bool unix_target = target_len > 5 && memcmp(target, "unix:", 5) == 0;

    if (target_len > LP_FRAME_MAX_TEXT)
        target_len = LP_FRAME_MAX_TEXT;
    if ((st = stream_new(s, id, -1, ST_RESOLVING)) == NULL) {
        lp_mux_reset(s->mux, id, LP_RST_INTERNAL, "out of memory");
        return;
    }
    describe(st, LP_KIND_TCP, target, target_len);
    if ((st->target = strndup(target, target_len)) == NULL) {
        refuse(st, LP_RST_INTERNAL, "out of memory");
        return;
    }
    if (unix_target && strlen(st->target) == target_len) {
        dial_unix(st);
        return;
    }
    if (strlen(st->target) != target_len ||
        lp_parse_hostport(st->target, host, sizeof(host), &port) != LP_OK) {
        lp_info("sess=%s stream=%u reset: bad target \"%s\"", s->tag, (unsigned)id, st->target);
        refuse(st, LP_RST_BAD_TARGET, "target is not HOST:PORT");
        return;
    }
    /* The server is never an open proxy: each identity reaches only what it is allowed. */
    if (s->rt->allow_target && !s->rt->allow_target(s->rt->allow_user, s->identity, host, port)) {
        lp_warn("sess=%s stream=%u refused: identity %s may not reach %s", s->tag, (unsigned)id,
                s->identity, st->target);
        refuse(st, LP_RST_NOT_ALLOWED, "not allowed by the server's policy");
        return;
    }
    /* One timer bounds the lookup and the connect together. */
    start_timer(st, s->cfg->forward.connect_timeout);
    if (lp_resolve_start(&s->rt->resolver, host, port, dial_resolved, st, &st->lookup) != LP_OK) {
        refuse(st, LP_RST_INTERNAL, "cannot start a name lookup");
    }
}

/* Whether the policy in force still lets this stream's identity reach its target. */
static bool still_allowed(const struct lp_stream *st)
{
    struct lp_session *s = st->s;
    char host[LP_ADDR_MAX];
    uint16_t port;

    if (st->kind == LP_KIND_TCP && st->target != NULL) {
        if (strncmp(st->target, "unix:", 5) == 0)
            return s->rt->allow_target(s->rt->allow_user, s->identity, st->target, 0);
        return lp_parse_hostport(st->target, host, sizeof(host), &port) == LP_OK &&
               s->rt->allow_target(s->rt->allow_user, s->identity, host, port);
    }
    if (st->kind == LP_KIND_REVERSE && s->rt->allow_bind != NULL)
        return lp_reverse_spec_allowed(s, st->shown);
    return true;
}

size_t lp_stream_recheck(struct lp_session *s)
{
    size_t n = 0;

    if (s->rt->allow_target == NULL) /* --insecure: nothing to take back */
        return 0;
    for (struct lp_stream *st = s->streams, *next; st; st = next) {
        next = st->next;
        if (st->dead || still_allowed(st))
            continue;
        lp_warn("sess=%s stream=%u reset: identity %s may no longer reach %s (configuration "
                "reloaded)",
                s->tag, (unsigned)st->id, s->identity, st->target ? st->target : st->shown);
        lp_stream_reset(st, LP_RST_NOT_ALLOWED, "no longer allowed by the server's policy");
        n++;
    }
    return n;
}

/* ---- events from the mux ------------------------------------------------------------------ */

static void on_peer_fin(struct lp_stream *st)
{
    if (st->write_shut)
        return;
    st->write_shut = true;
    if (st->wfd >= 0 && st->wfd == st->fd) {
        shutdown(st->fd, SHUT_WR); /* faithful half-close: the local app sees EOF */
    } else if (st->wfd >= 0) {
        close(st->wfd); /* a pipe or stdout: closing it is the EOF */
        st->wfd = -1;
    }
}

static void on_rst(struct lp_session *s, struct lp_stream *st, const struct lp_mux_event *ev)
{
    bool hard = ev->code == LP_RST_RESET || ev->code == LP_RST_SESSION_LOST ||
                ev->code == LP_RST_PROTOCOL || ev->code == LP_RST_SHUTDOWN;
    if (ev->code == LP_RST_SESSION_LOST || ev->code == LP_RST_SHUTDOWN)
        lp_debug("sess=%s stream=%u reset: %s: %.*s", s->tag, (unsigned)ev->id,
                 lp_rst_code_name(ev->code), (int)ev->text_len, ev->text ? ev->text : "");
    else
        lp_info("sess=%s stream=%u reset: %s: %.*s", s->tag, (unsigned)ev->id,
                lp_rst_code_name(ev->code), (int)ev->text_len, ev->text ? ev->text : "");
    char why[LP_FRAME_MAX_TEXT + 1];
    snprintf(why, sizeof(why), "%.*s", (int)ev->text_len, ev->text ? ev->text : "");
    stream_end(st, hard, ev->code, why);
}

void lp_stream_on_event(struct lp_session *s, const struct lp_mux_event *ev)
{
    struct lp_stream *st = ev->user;

    if (st == NULL || st->dead)
        return;
    if (ev->type == LP_MUX_EV_OPEN_OK) {
        st->state = ST_OPEN;
        ev_timer_stop(s->rt->loop, &st->timer);
        if (st->hooks && st->hooks->open_ok)
            st->hooks->open_ok(st, st->wfd, st->hook_user);
    }
    if (st->hooks && st->hooks->event && ev->type != LP_MUX_EV_RST &&
        ev->type != LP_MUX_EV_CLOSED) {
        st->hooks->event(st, ev, st->hook_user);
        return;
    }
    switch (ev->type) {
    case LP_MUX_EV_OPEN_OK:
        pump_up(st);
        break;
    case LP_MUX_EV_READABLE:
        if (st->state == ST_OPEN) /* early DATA waits in the mux until we are connected */
            pump_down(st);
        break;
    case LP_MUX_EV_WRITABLE:
        if (st->state == ST_OPEN || st->state == ST_OPENING)
            pump_up(st);
        break;
    case LP_MUX_EV_FIN:
        on_peer_fin(st);
        if (st->hooks && st->hooks->fin)
            st->hooks->fin(st, st->hook_user);
        break;
    case LP_MUX_EV_RST:
        on_rst(s, st, ev);
        break;
    case LP_MUX_EV_CLOSED:
        lp_debug("sess=%s stream=%u closed (up %llu, down %llu bytes)", s->tag, (unsigned)st->id,
                 (unsigned long long)st->up, (unsigned long long)st->down);
        stream_end(st, false, 0, "closed");
        break;
    case LP_MUX_EV_OPEN:
    case LP_MUX_EV_GOODBYE:
    case LP_MUX_EV_BIND: /* the session handles these; they name no stream */
    case LP_MUX_EV_BIND_OK:
    case LP_MUX_EV_BIND_FAIL:
        break;
    }
}

/* ---- upgrade in place ------------------------------------------------------------------------ */

bool lp_stream_image(const struct lp_stream *st, struct lp_stream_image *img)
{
    static const enum lp_stream_phase phases[] = {
        [ST_RESOLVING] = LP_STREAM_RESOLVING,
        [ST_DIALING] = LP_STREAM_DIALING,
        [ST_OPENING] = LP_STREAM_OPENING,
        [ST_OPEN] = LP_STREAM_OPEN,
    };

    if (st->hooks != NULL || st->wfd != st->fd)
        return false;
    *img = (struct lp_stream_image){
        .id = st->id,
        .phase = phases[st->state],
        .fd = st->fd,
        .read_eof = st->read_eof,
        .write_shut = st->write_shut,
        .kind = st->kind,
        .up = st->up,
        .down = st->down,
        .timer_left = LP_TIME_NEVER,
        .target = st->target,
        .shown = st->shown,
    };
    if (ev_is_active(&st->timer)) {
        double left = ev_timer_remaining(st->s->rt->loop, (ev_timer *)&st->timer);
        img->timer_left = left <= 0 ? 0 : (lp_time)(left * 1000.0);
    }
    return true;
}

/* A resolve the previous binary had in flight starts again (its thread did not survive). */
static lp_err restart_resolve(struct lp_stream *st)
{
    char host[LP_ADDR_MAX];
    uint16_t port;

    if (st->target == NULL || lp_parse_hostport(st->target, host, sizeof(host), &port) != LP_OK)
        return LP_ERR_INVALID;
    return lp_resolve_start(&st->s->rt->resolver, host, port, dial_resolved, st, &st->lookup);
}

lp_err lp_stream_restore(struct lp_session *s, const struct lp_stream_image *img)
{
    static const enum stream_state states[] = {
        [LP_STREAM_RESOLVING] = ST_RESOLVING,
        [LP_STREAM_DIALING] = ST_DIALING,
        [LP_STREAM_OPENING] = ST_OPENING,
        [LP_STREAM_OPEN] = ST_OPEN,
    };
    struct lp_stream *st = stream_new(s, img->id, img->fd, states[img->phase]);

    if (st == NULL)
        return LP_ERR_NOMEM;
    describe(st, img->kind, img->shown, strlen(img->shown));
    st->read_eof = img->read_eof;
    st->write_shut = img->write_shut;
    st->up = img->up;
    st->down = img->down;
    if (img->target != NULL && (st->target = strdup(img->target)) == NULL) {
        st->fd = st->wfd = -1; /* still the caller's */
        refuse(st, LP_RST_INTERNAL, "out of memory");
        return LP_ERR_NOMEM;
    }
    if (img->timer_left != LP_TIME_NEVER)
        start_timer(st, img->timer_left);
    if (st->state == ST_RESOLVING && restart_resolve(st) != LP_OK) {
        refuse(st, LP_RST_INTERNAL, "cannot start a name lookup");
        return LP_OK; /* the peer hears of it; the stream is over, not the restore */
    }
    if (st->state == ST_DIALING)
        ev_io_start(s->rt->loop, &st->wio);
    if ((st->state == ST_OPEN || st->state == ST_OPENING) && !st->read_eof)
        ev_io_start(s->rt->loop, &st->rio);
    if (st->state == ST_OPEN)
        pump_down(st); /* what the mux held for the socket */
    return LP_OK;
}
