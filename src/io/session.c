/* session.c — a tunnel session on libev: link I/O ⇄ pipe ⇄ mux ⇄ stream endpoints.
 *
 * Every callback follows one shape: syscall → core call → drain the cores' events →
 * mark the session dirty. Output is written once per loop iteration, from the runtime's
 * ev_prepare, so a burst of local reads becomes a few large writes on the link.
 */
#include "limpet/session.h"
#include "limpet/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/log.h"
#include "limpet/reverse.h"

static void process(struct lp_session *s);

/* ---- runtime: deferred flush and deferred free --------------------------------------- */

static void flush_output(struct lp_session *s);
static void arm_deadline(struct lp_session *s);
static void check_rekey(struct lp_session *s);

/* Brings rt->memory_sessions up to date with what s holds now. */
static void charge(struct lp_session *s, size_t held)
{
    s->rt->memory_sessions -= s->mem_charged;
    s->rt->memory_sessions += held;
    s->mem_charged = held;
}

size_t lp_runtime_memory(const struct lp_runtime *rt)
{
    size_t extra = rt->memory_extra ? rt->memory_extra(rt->memory_user) : 0;

    return rt->memory_sessions + extra;
}

size_t lp_runtime_memory_room(const struct lp_runtime *rt)
{
    size_t used;

    if (rt->memory_limit == 0)
        return SIZE_MAX;
    used = lp_runtime_memory(rt);
    return used < rt->memory_limit ? rt->memory_limit - used : 0;
}

void lp_runtime_memory_refused(struct lp_runtime *rt, const char *what)
{
    lp_time now = lp_now();

    rt->memory_refusals++;
    if (rt->memory_logged != 0 && now - rt->memory_logged < 1000)
        return;
    lp_warn("server memory limit reached (limits.memory %zu bytes, %zu buffered): %s refused "
            "(%llu refusals since the last such line)",
            rt->memory_limit, lp_runtime_memory(rt), what, (unsigned long long)rt->memory_refusals);
    rt->memory_logged = now;
    rt->memory_refusals = 0;
}

void lp_session_recount(struct lp_session *s)
{
    /* Received bytes held and extension credit granted (memory promised): see mux.h. */
    charge(s, lp_pipe_buffered(s->pipe) + lp_mux_held(s->mux));
}

static void free_session(struct lp_session *s)
{
    struct lp_runtime *rt = s->rt;

    charge(s, 0);

    if (s->all_prev || rt->all == s) { /* linked: a half-built session never was */
        *(s->all_prev ? &s->all_prev->all_next : &rt->all) = s->all_next;
        if (s->all_next)
            s->all_next->all_prev = s->all_prev;
        rt->stats.bytes_in_ended += s->bytes_in;
        rt->stats.bytes_out_ended += s->bytes_out;
    }
    if (s->holds_cfg)
        rt->cfg_hold(rt->cfg_user, s->cfg, false);
    lp_mux_free(s->mux);
    lp_pipe_free(s->pipe);
    free(s);
}

static void runtime_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct lp_runtime *rt = LP_CONTAINER_OF(w, struct lp_runtime, flush);
    (void)loop;
    (void)revents;
    /* Pop one session at a time: flush_output may mark sessions dirty again (only through
     * hooks, which run from process()), and a re-marked one is pushed onto the list head and
     * flushed in this same pass; in_dirty is cleared before the flush so that works. */
    while (rt->dirty) {
        struct lp_session *s = rt->dirty;
        rt->dirty = s->next_dirty;
        s->in_dirty = false;
        s->next_dirty = NULL;
        if (s->closing)
            continue;
        flush_output(s);
        if (s->closing)
            continue;
        arm_deadline(s);
        /* Everything that changes what a session holds marks it dirty, so this keeps the
         * process's count current to the loop iteration. */
        lp_session_recount(s);
    }
}

static void runtime_reap_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    struct lp_runtime *rt = LP_CONTAINER_OF(w, struct lp_runtime, reap);
    (void)loop;
    (void)revents;
    lp_runtime_reap_streams(rt);
    while (rt->dead_sessions) {
        struct lp_session *s = rt->dead_sessions;
        rt->dead_sessions = s->next_dead;
        free_session(s);
    }
}

void lp_runtime_init(struct lp_runtime *rt, struct ev_loop *loop)
{
    memset(rt, 0, sizeof(*rt));
    rt->loop = loop;
    ev_prepare_init(&rt->flush, runtime_flush_cb);
    ev_prepare_start(loop, &rt->flush);
    ev_unref(loop); /* housekeeping watchers must not keep the loop alive */
    ev_check_init(&rt->reap, runtime_reap_cb);
    ev_check_start(loop, &rt->reap);
    ev_unref(loop);
    lp_resolver_init(&rt->resolver, loop);
    rt->stats.started = lp_now();
}

void lp_runtime_clear(struct lp_runtime *rt)
{
    lp_resolver_clear(&rt->resolver);
    ev_ref(rt->loop);
    ev_prepare_stop(rt->loop, &rt->flush);
    ev_ref(rt->loop);
    ev_check_stop(rt->loop, &rt->reap);
    runtime_reap_cb(rt->loop, &rt->reap, 0);
}

void lp_session_dirty(struct lp_session *s)
{
    if (s->in_dirty || s->closing)
        return;
    s->in_dirty = true;
    s->next_dirty = s->rt->dirty;
    s->rt->dirty = s;
}

/* ---- creation ------------------------------------------------------------------------ */

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void link_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void link_write_cb(struct ev_loop *loop, ev_io *w, int revents);

void lp_session_core_config(const struct lp_config *cfg, struct lp_pipe_config *pc,
                            struct lp_mux_config *mc)
{
    *pc = (struct lp_pipe_config){
        .replay_buffer = cfg->session.replay_buffer,
        .ack_every = cfg->session.ack_every,
        .ack_delay = cfg->session.ack_delay,
        .heartbeat = cfg->session.heartbeat,
        .dead_after = cfg->session.dead_after,
    };
    *mc = (struct lp_mux_config){
        .stream_window = (uint32_t)cfg->session.stream_window,
        .receive_buffer = cfg->session.receive_buffer,
        .max_streams = cfg->session.max_streams,
        .stream_window_max = (uint32_t)cfg->session.stream_window_max,
    };
}

/* A session around pipe and mux (taken, both NULL or both set) or, when NULL, new ones. */
static lp_err session_make(struct lp_runtime *rt, const struct lp_config *cfg, bool is_client,
                           const struct lp_session_hooks *hooks, void *owner, lp_pipe *pipe,
                           lp_mux *mux, struct lp_session **sp)
{
    lp_err rc = LP_ERR_NOMEM;
    struct lp_session *s = NULL;
    struct lp_pipe_config pc;
    struct lp_mux_config mc;

    lp_session_core_config(cfg, &pc, &mc);
    *sp = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        lp_mux_free(mux);
        lp_pipe_free(pipe);
        goto out;
    }
    s->pipe = pipe;
    s->mux = mux;
    s->rt = rt;
    s->cfg = cfg;
    if (rt->cfg_hold != NULL) {
        rt->cfg_hold(rt->cfg_user, cfg, true);
        s->holds_cfg = true;
    }
    s->hooks = hooks;
    s->owner = owner;
    s->is_client = is_client;
    lp_link_init(&s->link);
    s->armed = LP_TIME_NEVER;
    ev_io_init(&s->rio, link_read_cb, -1, EV_READ);
    ev_io_init(&s->wio, link_write_cb, -1, EV_WRITE);
    ev_timer_init(&s->deadline, deadline_cb, 0., 0.);
    if (s->pipe == NULL && (rc = lp_pipe_new(&pc, is_client, &s->pipe)) != LP_OK)
        goto out;
    if (s->mux == NULL && (rc = lp_mux_new(&mc, s->pipe, is_client, &s->mux)) != LP_OK)
        goto out;
    rc = LP_OK;
    lp_session_retag(s);
    s->created = s->down_since = lp_now();
    s->all_next = rt->all;
    if (rt->all)
        rt->all->all_prev = s;
    rt->all = s;
    rt->stats.sessions_created++;
    *sp = s;
    s = NULL;
out:
    if (s)
        free_session(s);
    return rc;
}

lp_err lp_session_new(struct lp_runtime *rt, const struct lp_config *cfg, bool is_client,
                      const struct lp_session_hooks *hooks, void *owner, struct lp_session **sp)
{
    return session_make(rt, cfg, is_client, hooks, owner, NULL, NULL, sp);
}

lp_err lp_session_adopt(struct lp_runtime *rt, const struct lp_config *cfg,
                        const struct lp_session_hooks *hooks, void *owner, lp_pipe *pipe,
                        lp_mux *mux, struct lp_session **sp)
{
    return session_make(rt, cfg, false, hooks, owner, pipe, mux, sp);
}

void lp_session_retag(struct lp_session *s)
{
    const uint8_t *id = lp_pipe_session_id(s->pipe);
    bool zero = true;
    for (unsigned i = 0; i < LP_SESSION_ID_LEN; i++)
        zero = zero && id[i] == 0;
    if (zero) {
        snprintf(s->tag, sizeof(s->tag), "--------");
        return;
    }
    snprintf(s->tag, sizeof(s->tag), "%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
}

/* ---- the link ---------------------------------------------------------------------------- */

bool lp_session_attached(const struct lp_session *s)
{
    return lp_link_open(&s->link);
}

void lp_session_attach(struct lp_session *s, struct lp_link *link, uint64_t gen, const char *peer,
                       const uint8_t *extra, size_t extra_len)
{
    lp_session_detach(s, NULL);
    lp_link_move(&s->link, link);
    s->gen = gen;
    s->rekey_asked = false;
    snprintf(s->peer, sizeof(s->peer), "%s", peer ? peer : "?");
    lp_net_tune_link(s->link.fd, s->cfg->session.dead_after);
    ev_io_set(&s->rio, s->link.fd, EV_READ);
    ev_io_set(&s->wio, s->link.fd, EV_WRITE);
    ev_io_start(s->rt->loop, &s->rio);
    lp_time now = lp_now();
    while (extra_len > 0) {
        size_t n = lp_pipe_recv(s->pipe, extra, extra_len, now);
        if (n == 0)
            break;
        extra += n;
        extra_len -= n;
        process(s);
    }
    /* TLS may already hold decrypted bytes that no socket event will announce. */
    if (lp_link_pending(&s->link))
        ev_feed_event(s->rt->loop, &s->rio, EV_READ);
    lp_session_dirty(s);
}

void lp_session_detach(struct lp_session *s, const char *reason)
{
    if (!lp_link_open(&s->link))
        return;
    ev_io_stop(s->rt->loop, &s->rio);
    ev_io_stop(s->rt->loop, &s->wio);
    lp_link_close(&s->link);
    lp_pipe_link_down(s->pipe, s->gen);
    s->down_since = lp_now();
    if (reason)
        lp_debug("sess=%s link to %s closed: %s", s->tag, s->peer, reason);
}

/* The link failed under us: detach and tell the owner. */
void lp_session_link_failed(struct lp_session *s, const char *reason)
{
    char why[sizeof(s->link.err)];

    if (!lp_link_open(&s->link))
        return;
    /* reason may be the link's own error text, which closing the link clears */
    snprintf(why, sizeof(why), "%s", reason && reason[0] ? reason : "link failed");
    lp_session_detach(s, NULL);
    if (s->hooks->link_down)
        s->hooks->link_down(s, why);
}

static void link_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_session *s = LP_CONTAINER_OF(w, struct lp_session, rio);
    lp_err rc = LP_OK;
    (void)loop;
    (void)revents;

    /* Bounded so one busy link cannot starve the others on the loop. */
    for (int i = 0; i < 16 && lp_link_open(&s->link) && !s->closing; i++) {
        uint8_t *buf;
        size_t room = lp_pipe_recv_space(s->pipe, &buf);
        if (room == 0)
            break;
        ssize_t n = lp_link_read(&s->link, buf, room, &rc);
        if (n > 0) {
            s->bytes_in += (uint64_t)n;
            lp_pipe_recv_commit(s->pipe, (size_t)n, lp_now());
            process(s);
            /* a short plain read drained the socket; TLS reads stop at record ends */
            if ((size_t)n < room && !lp_link_pending(&s->link) && s->link.tls == NULL)
                break;
            continue;
        }
        if (n < 0 && rc == LP_ERR_TRUNCATED)
            break;
        /* a TLS link says how it ended: close_notify, or EOF without it */
        lp_session_link_failed(s, n == 0 && s->link.err[0] == '\0' ? "peer closed the connection"
                                                                   : s->link.err);
        break;
    }
    if (lp_link_open(&s->link) && !s->closing && lp_link_pending(&s->link))
        ev_feed_event(s->rt->loop, &s->rio, EV_READ);
    if (lp_link_open(&s->link))
        check_rekey(s);
    lp_session_dirty(s);
}

/* TLS 1.2 cannot change its keys on a live link: when this one has carried its share, the
 * owner (the client) may replace it. Asked once per link, and only while the pipe is live. */
static void check_rekey(struct lp_session *s)
{
    if (s->rekey_asked || s->hooks->rekey_due == NULL || s->link.tls == NULL || s->closing ||
        lp_pipe_state(s->pipe) != LP_PIPE_LIVE)
        return;
    if (lp_tls_rekey_due(s->link.tls, s->cfg->tls.rekey_after))
        s->rekey_asked = s->hooks->rekey_due(s);
}

static void drain_input(struct lp_session *s)
{
    if (lp_link_open(&s->link) && !s->closing)
        link_read_cb(s->rt->loop, &s->rio, EV_READ);
}

static void flush_output(struct lp_session *s)
{
    lp_time now = lp_now();
    lp_err rc = lp_link_open(&s->link) ? lp_link_flush(&s->link) : LP_OK;

    while (rc == LP_OK && lp_link_open(&s->link)) {
        const uint8_t *out;
        size_t n = lp_pipe_pending_output(s->pipe, &out);
        if (n == 0)
            break;
        ssize_t w = lp_link_write(&s->link, out, n, &rc);
        if (w > 0) {
            s->bytes_out += (uint64_t)w;
            lp_pipe_output_sent(s->pipe, (size_t)w, now);
            rc = LP_OK; /* short or not, try again: only TRUNCATED means the socket is full */
        }
    }
    if (rc == LP_OK && lp_link_open(&s->link))
        rc = lp_link_flush(&s->link); /* TLS: the records gathered above, in one send */
    if (!lp_link_open(&s->link))
        return;
    if (rc != LP_OK && rc != LP_ERR_TRUNCATED) {
        char why[sizeof(s->link.err)];
        snprintf(why, sizeof(why), "%s", s->link.err);
        /* The peer may have said GOODBYE and closed before our send failed: what it said
         * last counts more than our failed write, so read what is left first. */
        drain_input(s);
        if (!s->closing)
            lp_session_link_failed(s, why);
        return;
    }
    if (rc == LP_ERR_TRUNCATED || lp_link_wants_write(&s->link))
        ev_io_start(s->rt->loop, &s->wio);
    else
        ev_io_stop(s->rt->loop, &s->wio);
    check_rekey(s);
}

static void link_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_session *s = LP_CONTAINER_OF(w, struct lp_session, wio);
    (void)loop;
    (void)revents;
    flush_output(s);
    lp_session_dirty(s);
}

void lp_session_flush(struct lp_session *s)
{
    if (!s->closing)
        flush_output(s);
}

bool lp_session_flushed(struct lp_session *s)
{
    const uint8_t *out;
    return !lp_link_open(&s->link) ||
           (lp_pipe_pending_output(s->pipe, &out) == 0 && !lp_link_wants_write(&s->link));
}

/* ---- deadlines ---------------------------------------------------------------------------- */

static void arm_deadline(struct lp_session *s)
{
    lp_time at = lp_pipe_next_deadline(s->pipe);
    if (at == s->armed)
        return;
    ev_timer_stop(s->rt->loop, &s->deadline);
    s->armed = at;
    if (at == LP_TIME_NEVER)
        return;
    lp_time now = lp_now();
    double after = at > now ? (double)(at - now) / 1000.0 : 0.0;
    ev_timer_set(&s->deadline, after, 0.);
    ev_timer_start(s->rt->loop, &s->deadline);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_session *s = LP_CONTAINER_OF(w, struct lp_session, deadline);
    (void)loop;
    (void)revents;
    s->armed = LP_TIME_NEVER;
    lp_pipe_on_timeout(s->pipe, lp_now());
    process(s);
    lp_session_dirty(s);
}

/* ---- draining the cores ------------------------------------------------------------------ */

static void on_pipe_event(struct lp_session *s, const struct lp_pipe_event *ev)
{
    switch (ev->type) {
    case LP_PIPE_EV_LIVE:
        lp_session_retag(s);
        if (s->hooks->live)
            s->hooks->live(s, ev->resumed);
        break;
    case LP_PIPE_EV_LINK_DOWN:
        if (ev->gen == s->gen)
            lp_session_link_failed(s, ev->msg);
        break;
    case LP_PIPE_EV_REJECTED:
        lp_session_detach(s, NULL);
        if (s->hooks->rejected)
            s->hooks->rejected(s, ev->code, ev->msg);
        break;
    case LP_PIPE_EV_LOST:
        lp_session_detach(s, NULL);
        if (s->hooks->lost)
            s->hooks->lost(s, ev->msg);
        break;
    case LP_PIPE_EV_ROOM:
        lp_mux_flush(s->mux);
        break;
    case LP_PIPE_EV_RTT:
        break;
    }
}

bool lp_session_stream_room(struct lp_session *s, const char *what)
{
    size_t cap = 0;

    if (s->rt->stream_room == NULL || s->rt->stream_room(s->rt->stream_user, s, &cap))
        return true;
    lp_warn("sess=%s %s refused: identity %s holds %zu streams, its limit "
            "(limits.streams_per_identity)",
            s->tag, what, s->identity, cap);
    return false;
}

/* Server: what the peer opened decides who serves it. */
static void open_stream(struct lp_session *s, const struct lp_mux_event *ev)
{
    char why[96];

    snprintf(why, sizeof(why), "stream=%u", (unsigned)ev->id);
    if (!lp_session_stream_room(s, why)) {
        lp_mux_reset(s->mux, ev->id, LP_RST_LIMIT,
                     "too many streams for this identity (limits.streams_per_identity)");
        return;
    }
    if (lp_runtime_memory_room(s->rt) == 0) {
        snprintf(why, sizeof(why), "sess=%s stream=%u", s->tag, (unsigned)ev->id);
        lp_runtime_memory_refused(s->rt, why);
        lp_mux_reset(s->mux, ev->id, LP_RST_LIMIT, "server memory limit reached (limits.memory)");
        return;
    }
    switch (ev->kind) {
    case LP_KIND_TCP:
    case LP_KIND_STDIO: /* stdin/stdout at the client's end; a TCP target at ours */
        lp_stream_dial(s, ev->id, ev->text, ev->text_len);
        return;
    case LP_KIND_MCP:
        if (s->rt->open_mcp) {
            s->rt->open_mcp(s->rt->mcp_user, s, ev);
            return;
        }
        lp_mux_reset(s->mux, ev->id, LP_RST_UNAVAILABLE, "this server runs no MCP servers");
        return;
    default:
        snprintf(why, sizeof(why), "stream kind %u is not supported by this server",
                 (unsigned)ev->kind);
        lp_info("sess=%s stream=%u refused: %s", s->tag, (unsigned)ev->id, why);
        lp_mux_reset(s->mux, ev->id, LP_RST_BAD_TARGET, why);
        return;
    }
}

static void on_mux_event(struct lp_session *s, const struct lp_mux_event *ev)
{
    char msg[LP_FRAME_MAX_TEXT + 64];

    switch (ev->type) {
    case LP_MUX_EV_OPEN:
        if (s->is_client && ev->kind == LP_KIND_REVERSE && s->hooks->open_reverse) {
            s->hooks->open_reverse(s, ev);
            break;
        }
        if (s->is_client) {
            lp_mux_reset(s->mux, ev->id, LP_RST_NOT_ALLOWED,
                         "this client does not accept such streams from the server");
            break;
        }
        open_stream(s, ev);
        break;
    case LP_MUX_EV_BIND:
        if (!s->is_client)
            lp_reverse_bind(s, ev);
        else if (lp_mux_bind_fail(s->mux, ev->id, LP_RST_NOT_ALLOWED,
                                  "this client does not listen for the server", 43) != LP_OK)
            lp_session_link_failed(s, "too many bind answers waiting"); /* the peer floods us */
        break;
    case LP_MUX_EV_BIND_OK:
    case LP_MUX_EV_BIND_FAIL:
        if (s->hooks->bind_answer)
            s->hooks->bind_answer(s, ev);
        break;
    case LP_MUX_EV_GOODBYE:
        snprintf(msg, sizeof(msg), "%.*s", (int)ev->text_len, ev->text ? ev->text : "");
        if (s->hooks->goodbye)
            s->hooks->goodbye(s, ev->code, msg);
        break;
    default:
        lp_stream_on_event(s, ev);
        break;
    }
}

/* Frames from the pipe go to the mux; then both event queues are drained. Mux events are
 * drained after the whole batch of frames: READABLE is signalled once per stream, so a
 * batch of DATA frames becomes one large write per stream rather than one per frame. */
static void process(struct lp_session *s)
{
    struct lp_frame f;
    struct lp_pipe_event pev;
    struct lp_mux_event mev;
    lp_time now = lp_now();
    char why[192];

    while (!s->closing && lp_pipe_next_frame(s->pipe, &f, now)) {
        const char *reason = NULL;
        if (lp_mux_recv(s->mux, &f, &reason) != LP_OK) {
            snprintf(why, sizeof(why), "protocol violation: %s", reason ? reason : "?");
            lp_warn("sess=%s %s", s->tag, why);
            lp_session_link_failed(s, why);
            break;
        }
    }
    while (!s->closing && lp_pipe_next_event(s->pipe, &pev))
        on_pipe_event(s, &pev);
    while (!s->closing && lp_mux_next_event(s->mux, &mev))
        on_mux_event(s, &mev);
}

void lp_session_process(struct lp_session *s)
{
    process(s);
    lp_session_dirty(s);
}

/* ---- ending ------------------------------------------------------------------------------ */

void lp_session_goodbye(struct lp_session *s, uint16_t code, const char *msg)
{
    if (s->closing)
        return;
    lp_mux_goodbye(s->mux, code, msg);
    flush_output(s);
}

void lp_session_close(struct lp_session *s, uint16_t code, const char *msg)
{
    struct lp_mux_event ev;

    if (s->closing)
        return;
    lp_session_detach(s, NULL);
    lp_reverse_close_all(s);
    lp_mux_reset_all(s->mux, code, msg);
    while (lp_mux_next_event(s->mux, &ev))
        lp_stream_on_event(s, &ev);
    lp_stream_free_all(s);
    s->closing = true;
    s->rt->stats.sessions_ended++;
    if (s->in_dirty) { /* the dirty list must never point at memory the reaper frees */
        struct lp_session **pp = &s->rt->dirty;
        while (*pp && *pp != s)
            pp = &(*pp)->next_dirty;
        if (*pp)
            *pp = s->next_dirty;
        s->in_dirty = false;
    }
    ev_timer_stop(s->rt->loop, &s->deadline);
    ev_timer_stop(s->rt->loop, &s->ttl);
    s->next_dead = s->rt->dead_sessions;
    s->rt->dead_sessions = s;
}
