/* client.c — the client: listeners for -L, and one session kept alive by reconnecting.
 *
 * The reconnect loop itself is the sans-I/O lp_reconnect machine: at most one attempt is
 * in flight, every path into a new attempt goes through schedule_attempt(), and results
 * of a stale attempt are ignored. Local
 * connections are accepted in every state: their OPEN waits in the replay buffer and goes
 * out when the link is live, so an application never sees a drop as a refusal.
 */
#include "limpet/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limpet/accept.h"
#include "limpet/stream.h"
#include "limpet/keys.h"
#include "limpet/log.h"
#include "limpet/reconnect.h"
#include "limpet/reverse.h"
#include "limpet/socksio.h"
#include "limpet/transparent.h"

struct listener {
    struct lp_client *c;
    const struct lp_forward *fwd;
    int fd;
    char target[LP_ADDR_MAX + 8];
    char local[LP_UNIX_PATH_MAX + 8];
    bool tproxy;              /* -T: IP_TRANSPARENT granted, TPROXY can deliver here */
    struct lp_unix_file file; /* fwd->bind_path: the socket file to remove at exit */
    struct lp_acceptor acc;   /* on fd */
};

struct lp_client {
    struct lp_runtime *rt;
    const struct lp_config *cfg;
    struct lp_session *s;
    struct lp_reconnect rc; /* single-flight reconnect loop (sans-I/O) */
    uint64_t attempt;       /* id of the attempt that fd / the handshake belongs to */
    bool stopped;
    int fd;      /* the socket being connected, until the link attaches */
    lp_tls *tls; /* its TLS handshake in progress, if not --insecure */
    ev_io cio;
    ev_timer ctimer; /* one attempt's connect/handshake limit */
    ev_timer retry;  /* backoff delay */
    ev_timer bye;    /* stopping: wait for GOODBYE to be written */
    lp_time bye_until;
    int exit_code;
    struct listener *ls;
    size_t nls;
    const struct lp_client_app *app;
    void *app_user;
    int finish_code;                  /* exit code once GOODBYE is out */
    const struct lp_forward **remote; /* -R forwards: bind request id i + 1 is remote[i] */
    size_t nremote;
    uint64_t sessions; /* sessions made so far: a BIND_FAIL on the first one ends the client */
    /* Who this client is to the server, for status: its PSK identity, or its certificate's
     * fingerprint (which the server keys it by); "" with --insecure. */
    char identity[sizeof(((struct lp_session *)0)->identity)];
    /* Rekey by resume (TLS 1.2 has no key update): while the live link carries on, a new one
     * is dialled (fd, tls above); once its TLS handshake is done it replaces the old link and
     * the session resumes on it. */
    bool rekeying;            /* that dial is in flight */
    bool rekeyed;             /* the handshake running now is a rekey's: count it as one */
    lp_time rekey_not_before; /* after a failed rekey dial, the next waits until then */
};

#define REKEY_RETRY_MS 1000u /* after a failed rekey dial, the live link carries on this long */

static const struct lp_session_hooks client_hooks;
static void start_attempt(struct lp_client *c);

static void schedule_attempt(struct lp_client *c);
static void bye_cb(struct ev_loop *loop, ev_timer *w, int revents);
static lp_err new_session(struct lp_client *c);

static void stop_loop(struct lp_client *c, int code)
{
    ev_timer_stop(c->rt->loop, &c->bye);
    c->exit_code = code;
    c->stopped = true;
    lp_reconnect_close(&c->rc);
    ev_break(c->rt->loop, EVBREAK_ALL);
}

/* ---- one connection attempt --------------------------------------------------------------- */

static void abandon_attempt(struct lp_client *c)
{
    ev_io_stop(c->rt->loop, &c->cio);
    ev_timer_stop(c->rt->loop, &c->ctimer);
    lp_tls_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* A rekey's dial failed: the live link carries on and is asked again a little later. */
static void rekey_failed(struct lp_client *c, const char *why)
{
    abandon_attempt(c);
    c->rekeying = false;
    c->rekey_not_before = lp_now() + REKEY_RETRY_MS;
    if (c->s)
        c->s->rekey_asked = false;
    lp_warn("sess=%s rekey: no new link to %s (%s); the current one carries on", c->s->tag,
            c->cfg->server, why);
}

static void attempt_failed(struct lp_client *c, const char *why)
{
    if (c->rekeying) {
        rekey_failed(c, why);
        return;
    }
    abandon_attempt(c);
    if (c->s)
        lp_session_detach(c->s, NULL);
    lp_debug("sess=%s connect to %s failed: %s", c->s ? c->s->tag : "-", c->cfg->server, why);
    lp_reconnect_failed(&c->rc, c->attempt);
    schedule_attempt(c);
}

/* A rekey's new link is ready: the old one closes (close_notify) and the reconnect loop runs
 * the resume on the new one as an ordinary attempt, so a failure from here on is handled as
 * any lost link is. The pause is one round trip; the TLS handshake was paid for before. */
static void rekey_switch(struct lp_client *c)
{
    lp_time now = lp_now();

    c->rekeying = false;
    c->rekeyed = true;
    lp_session_detach(c->s, "replaced by a new link (rekey)");
    lp_reconnect_down(&c->rc, now);
    (void)lp_reconnect_schedule(&c->rc, now, 0); /* the first attempt after a loss: at once */
    (void)lp_reconnect_start(&c->rc, now, &c->attempt);
}

/* The link is up (TCP, and TLS unless --insecure): hand it to the session, send HELLO. */
static void link_ready(struct lp_client *c)
{
    struct lp_link link;

    if (c->rekeying)
        rekey_switch(c);
    ev_io_stop(c->rt->loop, &c->cio);
    lp_link_set(&link, c->fd, c->tls);
    c->fd = -1;
    c->tls = NULL;
    if (c->rekeyed)
        lp_pipe_set_rekey(c->s->pipe);
    uint64_t gen = lp_pipe_connect(c->s->pipe, lp_now());
    lp_session_attach(c->s, &link, gen, c->cfg->server, NULL, 0);
    /* ctimer keeps running: it now bounds the limpet handshake too */
}

/* One step of the TLS handshake; the watcher waits in whichever direction it needs. */
static void tls_step(struct lp_client *c)
{
    char err[256];
    lp_err rc = lp_tls_handshake(c->tls, err, sizeof(err));

    if (rc == LP_OK) {
        lp_debug("TLS with %s: %s, records by %s", c->cfg->server, lp_tls_suite(c->tls),
                 lp_tls_record_layer(c->tls));
        link_ready(c);
    } else if (rc == LP_ERR_TRUNCATED) {
        ev_io_stop(c->rt->loop, &c->cio);
        ev_io_set(&c->cio, c->fd, lp_tls_handshake_wants_write(c->tls) ? EV_WRITE : EV_READ);
        ev_io_start(c->rt->loop, &c->cio);
    } else if (rc == LP_ERR_AUTH) {
        /* Permanent: retrying with the same key would only be refused again. */
        lp_error("authentication failed: %s", err);
        abandon_attempt(c);
        stop_loop(c, 2);
    } else {
        attempt_failed(c, err);
    }
}

/* Every TLS connection names the server (SNI): a first one the host it dials (or tls.sni),
 * a resume "NODE." before that, NODE being the node the last WELCOME named, so a balancer in
 * front of several servers can send the resume, from the ClientHello alone and from any
 * address, to the one server that holds the session (README "Several servers"). */
static lp_err set_sni(struct lp_client *c)
{
    char host[LP_ADDR_MAX], sni[LP_ADDR_MAX + LP_NODE_ID_MAX + 2];
    uint16_t port;
    const char *name = c->cfg->tls.sni;
    const char *node = lp_pipe_node(c->s->pipe);

    if (name[0] == '\0') {
        if (lp_parse_hostport(c->cfg->server, host, sizeof(host), &port) != LP_OK)
            return LP_ERR_INVALID;
        name = host;
    }
    if (node[0] != '\0' && lp_pipe_state(c->s->pipe) != LP_PIPE_LOST)
        snprintf(sni, sizeof(sni), "%s.%s", node, name);
    else
        snprintf(sni, sizeof(sni), "%s", name);
    lp_debug("sess=%s TLS server name %s", c->s->tag, sni);
    return lp_tls_set_sni(c->tls, sni);
}

static void connect_done_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_client *c = LP_CONTAINER_OF(w, struct lp_client, cio);
    (void)loop;
    (void)revents;
    if (c->tls) {
        tls_step(c);
        return;
    }
    int err = lp_net_connect_result(c->fd);
    if (err) {
        attempt_failed(c, strerror(err));
        return;
    }
    if (c->rt->tls == NULL) {
        link_ready(c);
        return;
    }
    if (lp_tls_new(c->rt->tls, c->fd, &c->tls) != LP_OK) {
        attempt_failed(c, "out of memory for TLS");
        return;
    }
    if (set_sni(c) != LP_OK) {
        attempt_failed(c, "cannot set the TLS server name");
        return;
    }
    tls_step(c);
}

static void ctimer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_client *c = LP_CONTAINER_OF(w, struct lp_client, ctimer);
    (void)loop;
    (void)revents;
    attempt_failed(c, lp_session_attached(c->s) ? "handshake timed out" : "connect timed out");
}

static void start_attempt(struct lp_client *c)
{
    char host[LP_ADDR_MAX], err[256];
    uint16_t port;
    struct lp_addr addr;

    ev_timer_set(&c->ctimer, (double)c->cfg->reconnect.connect_timeout / 1000.0, 0.);
    ev_timer_start(c->rt->loop, &c->ctimer);
    if (lp_parse_hostport(c->cfg->server, host, sizeof(host), &port) != LP_OK) {
        attempt_failed(c, "server address is not HOST:PORT");
        return;
    }
    /* Resolved on every attempt: a roaming client may see the name move. */
    if (lp_net_resolve(host, port, &addr, err, sizeof(err)) != LP_OK ||
        lp_net_connect(&addr, &c->fd, err, sizeof(err)) != LP_OK) {
        attempt_failed(c, err);
        return;
    }
    lp_net_tune_stream(c->fd); /* TCP_NODELAY before the handshakes: see the server */
    ev_io_set(&c->cio, c->fd, EV_WRITE);
    ev_io_start(c->rt->loop, &c->cio);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_client *c = LP_CONTAINER_OF(w, struct lp_client, retry);
    (void)loop;
    (void)revents;
    lp_time now = lp_now();
    if (lp_reconnect_start(&c->rc, now, &c->attempt)) {
        start_attempt(c);
        return;
    }
    /* libev measures the delay from its cached loop time, lp_now() from the clock: the
     * timer can fire a moment before retry_at. Wait out the rest instead of stalling. */
    if (c->rc.state == LP_RC_WAITING) {
        lp_time left = c->rc.retry_at > now ? c->rc.retry_at - now : 1;
        ev_timer_set(&c->retry, (double)left / 1000.0, 0.);
        ev_timer_start(c->rt->loop, &c->retry);
    }
}

/* Asks the reconnect machine for the next attempt; a no-op while one is pending. */
static void schedule_attempt(struct lp_client *c)
{
    lp_time now = lp_now();
    lp_time at = lp_reconnect_schedule(&c->rc, now, lp_random_u32());

    if (c->rc.state == LP_RC_GAVE_UP) {
        char why[LP_ADDR_MAX + 64];
        snprintf(why, sizeof(why), "gave up reconnecting to %s after %llums", c->cfg->server,
                 (unsigned long long)(now - c->rc.down_since));
        lp_error("sess=%s %s", c->s ? c->s->tag : "-", why);
        if (c->app && c->app->lost && c->s) {
            abandon_attempt(c);
            lp_session_close(c->s, LP_RST_SESSION_LOST, why);
            c->s = NULL;
            c->app->lost(c->app_user, 4, why);
            return;
        }
        stop_loop(c, 4);
        return;
    }
    if (at == LP_TIME_NEVER)
        return;
    if (at > now)
        lp_debug("reconnecting to %s in %llums", c->cfg->server, (unsigned long long)(at - now));
    ev_timer_stop(c->rt->loop, &c->retry);
    ev_timer_set(&c->retry, at > now ? (double)(at - now) / 1000.0 : 0., 0.);
    ev_timer_start(c->rt->loop, &c->retry);
}

/* ---- session hooks -------------------------------------------------------------------------- */

static void on_link_down(struct lp_session *s, const char *reason)
{
    struct lp_client *c = s->owner;
    if (c->stopped)
        return;
    c->rekeyed = false;
    if (c->rekeying) { /* the old link died first: reconnect as after any loss */
        abandon_attempt(c);
        c->rekeying = false;
    }
    if (ev_is_active(&c->bye)) { /* stopping: the server closed after our GOODBYE */
        stop_loop(c, c->finish_code);
        return;
    }
    if (c->rc.state == LP_RC_LIVE) {
        lp_info("sess=%s link down: %s", s->tag, reason);
        lp_reconnect_down(&c->rc, lp_now());
    } else {
        lp_debug("sess=%s link down during handshake: %s", s->tag, reason);
        abandon_attempt(c);
        lp_reconnect_failed(&c->rc, c->attempt);
    }
    schedule_attempt(c);
}

static void on_live(struct lp_session *s, bool resumed)
{
    struct lp_client *c = s->owner;
    lp_time down_for = lp_now() - c->rc.down_since;
    char how[LP_TLS_IDENTITY_MAX + 64];
    const char *node = lp_pipe_node(s->pipe); /* "" from a server without node ids */

    ev_timer_stop(c->rt->loop, &c->ctimer);
    lp_reconnect_live(&c->rc, c->attempt);
    lp_link_describe(&s->link, how, sizeof(how));
    if (c->rekeyed && resumed) { /* not a loss: neither a reconnect nor a resume */
        c->rekeyed = false;
        s->rekeys++;
        s->rt->stats.rekeys++;
        lp_info("sess=%s rekeyed: new link (%s), rekey %llu, paused %llums", s->tag, how,
                (unsigned long long)s->rekeys, (unsigned long long)down_for);
        return;
    }
    c->rekeyed = false;
    if (resumed || s->rt->stats.sessions_created > 1) /* else the very first handshake */
        s->rt->stats.reconnects++;
    if (resumed) {
        s->reconnects++;
        s->rt->stats.resumes++;
        lp_hist_observe(&s->rt->stats.resume, down_for);
        lp_info("sess=%s resumed (reconnect %llu, down %llums)%s%s", s->tag,
                (unsigned long long)s->reconnects, (unsigned long long)down_for,
                node[0] ? " on node " : "", node);
    } else {
        lp_info("sess=%s established with %s (%s)%s%s", s->tag, c->cfg->server, how,
                node[0] ? ", node " : "", node);
    }
}

/* The live link carried its share under one key: dial its replacement while it carries on. */
static bool on_rekey_due(struct lp_session *s)
{
    struct lp_client *c = s->owner;
    lp_time now = lp_now();

    if (c->stopped || c->rc.state != LP_RC_LIVE || c->fd >= 0 || c->rekeying ||
        ev_is_active(&c->bye) || now < c->rekey_not_before)
        return false;
    lp_debug("sess=%s rekey: the link carried its share under its keys; dialling a new one",
             s->tag);
    c->rekeying = true;
    start_attempt(c);
    return c->rekeying; /* false when the dial failed at once: asked again after the pause */
}

/* The session is gone for good: reset its local connections, start a fresh one. The
 * listeners stay up, so new connections ride the new session. */
static void replace_session(struct lp_client *c, const char *reason)
{
    if (c->app == NULL || c->app->lost == NULL) /* else the app says it, in one line */
        lp_warn("sess=%s session lost: %s", c->s->tag, reason);
    abandon_attempt(c);
    lp_session_close(c->s, LP_RST_SESSION_LOST, reason);
    c->s = NULL;
    ev_timer_stop(c->rt->loop, &c->retry);
    if (c->app && c->app->lost) { /* one program's session: nothing to start again */
        lp_reconnect_close(&c->rc);
        c->app->lost(c->app_user, 3, reason);
        return;
    }
    if (new_session(c) != LP_OK) {
        lp_error("cannot create a new session: out of memory");
        stop_loop(c, 1);
        return;
    }
    lp_reconnect_restart(&c->rc, lp_now());
    schedule_attempt(c);
}

static void on_rejected(struct lp_session *s, uint16_t code, const char *msg)
{
    struct lp_client *c = s->owner;
    char why[LP_PIPE_MSG_MAX + 64];

    c->rekeyed = false;
    abandon_attempt(c);
    snprintf(why, sizeof(why), "server refused: %s: %s", lp_reject_code_name(code), msg);
    switch (code) {
    case LP_REJECT_SESSION_UNKNOWN:
    case LP_REJECT_SEQ_OUT_OF_RANGE:
        replace_session(c, why);
        return;
    case LP_REJECT_AUTH:
        lp_error("authentication failed: %s", msg);
        stop_loop(c, 2);
        return;
    case LP_REJECT_VERSION:
    case LP_REJECT_PROTOCOL:
        lp_error("%s", why);
        stop_loop(c, 1);
        return;
    default: /* LIMIT, SHUTDOWN: transient */
        lp_info("sess=%s %s; retrying", s->tag, why);
        lp_reconnect_failed(&c->rc, c->attempt);
        schedule_attempt(c);
        return;
    }
}

static void on_lost(struct lp_session *s, const char *reason)
{
    replace_session(s->owner, reason);
}

static void on_goodbye(struct lp_session *s, uint16_t code, const char *msg)
{
    char why[LP_FRAME_MAX_TEXT + 64];
    snprintf(why, sizeof(why), "server ended the session (%s): %s",
             code == LP_GOODBYE_SHUTDOWN  ? "shutting down"
             : code == LP_GOODBYE_REVOKED ? "revoked"
                                          : "goodbye",
             msg);
    replace_session(s->owner, why);
}

/* ---- -R ------------------------------------------------------------------------------------ */

/* The -R forward a bind request id (or a REVERSE stream's arg) names; NULL if none. */
static const struct lp_forward *remote_of(struct lp_client *c, uint32_t req)
{
    return req >= 1 && req <= c->nremote ? c->remote[req - 1] : NULL;
}

static void on_open_reverse(struct lp_session *s, const struct lp_mux_event *ev)
{
    struct lp_client *c = s->owner;
    char arg[16];
    char *end;
    unsigned long req = 0;

    if (ev->arg_len > 0 && ev->arg_len < sizeof(arg)) {
        memcpy(arg, ev->arg, ev->arg_len);
        arg[ev->arg_len] = '\0';
        req = strtoul(arg, &end, 10);
        if (*end != '\0')
            req = 0;
    }
    lp_reverse_open(s, ev, req <= UINT32_MAX ? remote_of(c, (uint32_t)req) : NULL);
}

static void on_bind_answer(struct lp_session *s, const struct lp_mux_event *ev)
{
    struct lp_client *c = s->owner;
    const struct lp_forward *fw = remote_of(c, ev->id);
    char spec[LP_ADDR_MAX + 8], target[LP_ADDR_MAX + 8];

    if (fw == NULL)
        return; /* not ours: a confused server, nothing to undo */
    lp_reverse_spec(fw, spec, sizeof(spec));
    lp_reverse_target(fw, target, sizeof(target));
    if (ev->type == LP_MUX_EV_BIND_OK) {
        lp_info("sess=%s remote forward: the server listens on %.*s:%u -> %s", s->tag,
                (int)ev->text_len, ev->text, (unsigned)ev->code, target);
        return;
    }
    lp_error("-R %s:%s: the server refused to listen: %.*s", spec, target, (int)ev->text_len,
             ev->text);
    if (c->sessions == 1) /* at start, as ssh's ExitOnForwardFailure: say so and stop */
        lp_client_finish(c, ev->code == LP_RST_NOT_ALLOWED ? 2 : 1);
}

static const struct lp_session_hooks client_hooks = {
    .link_down = on_link_down,
    .live = on_live,
    .rejected = on_rejected,
    .lost = on_lost,
    .goodbye = on_goodbye,
    .open_reverse = on_open_reverse,
    .bind_answer = on_bind_answer,
    .rekey_due = on_rekey_due,
};

/* A new session asks again for every -R listener: the old session's died with it. */
static lp_err new_session(struct lp_client *c)
{
    char spec[LP_ADDR_MAX + 8];
    lp_err rc = lp_session_new(c->rt, c->cfg, true, &client_hooks, c, &c->s);

    if (rc != LP_OK)
        return rc;
    snprintf(c->s->identity, sizeof(c->s->identity), "%s", c->identity);
    c->sessions++;
    for (size_t i = 0; i < c->nremote; i++) {
        lp_reverse_spec(c->remote[i], spec, sizeof(spec));
        if ((rc = lp_mux_bind(c->s->mux, (uint32_t)(i + 1), spec, strlen(spec))) != LP_OK)
            return rc;
    }
    return LP_OK;
}

/* ---- listeners ------------------------------------------------------------------------------ */

/* The session a SOCKS connection's stream goes on, asked when its request is known. */
static struct lp_session *current_session(void *user)
{
    struct lp_client *c = user;
    return c->stopped ? NULL : c->s;
}

static void accepted(void *user, int fd, const struct lp_addr *peer)
{
    struct listener *l = user;
    struct lp_client *c = l->c;
    char from[64];

    if (c->stopped || c->s == NULL) {
        close(fd);
        return;
    }
    lp_net_addr_str(peer, from, sizeof(from));
    if (l->fwd->kind == LP_FWD_DYNAMIC)
        lp_socks_accept(c->rt->loop, c->cfg, fd, from, current_session, c);
    else if (l->fwd->kind == LP_FWD_TRANSPARENT)
        lp_transparent_accept(c->s, fd, l->tproxy, c->cfg->forward.connect_timeout, from);
    else
        lp_stream_open_local(c->s, fd, LP_KIND_TCP, l->target, c->cfg->forward.connect_timeout,
                             from);
}

static void format_target(char *out, size_t len, const char *host, uint16_t port)
{
    if (strchr(host, ':'))
        snprintf(out, len, "[%s]:%u", host, (unsigned)port);
    else
        snprintf(out, len, "%s:%u", host, (unsigned)port);
}

/* A unix socket file (-L /PATH:..., -D /PATH) or a TCP port. */
static lp_err listen_on(struct listener *l, const struct lp_forward *f, char *err, size_t errlen)
{
    struct lp_addr addr;
    lp_err rc;

    if (f->bind_path[0])
        rc = lp_net_listen_unix(f->bind_path, &l->fd, &l->file, err, errlen);
    else if ((rc = lp_net_resolve(f->bind_host, f->bind_port, &addr, err, errlen)) == LP_OK)
        rc = lp_net_listen(&addr, &l->fd, err, errlen);
    if (rc != LP_OK)
        return rc;
    /* The kernel's pick for port 0 is what the log line and `limpet status` must name. */
    if (lp_net_local_addr(l->fd, &addr) != LP_OK)
        return lp_errf(LP_ERR_IO, err, errlen, "cannot read the address bound: %s",
                       strerror(errno));
    lp_net_addr_str(&addr, l->local, sizeof(l->local));
    return LP_OK;
}

static lp_err open_listener(struct lp_client *c, struct listener *l, const struct lp_forward *f)
{
    char err[256];

    l->c = c;
    l->fwd = f;
    l->fd = -1;
    if (f->kind == LP_FWD_DYNAMIC || f->kind == LP_FWD_TRANSPARENT)
        snprintf(l->target, sizeof(l->target), f->kind == LP_FWD_DYNAMIC ? "SOCKS" : "original");
    else if (f->path[0]) /* the OPEN target of a unix socket on the server */
        snprintf(l->target, sizeof(l->target), "unix:%s", f->path);
    else
        format_target(l->target, sizeof(l->target), f->host, f->port);
    if (listen_on(l, f, err, sizeof(err)) != LP_OK) {
        if (f->bind_path[0])
            lp_error("-%c %s: %s", f->kind == LP_FWD_DYNAMIC ? 'D' : 'L', f->bind_path, err);
        else if (f->kind == LP_FWD_DYNAMIC || f->kind == LP_FWD_TRANSPARENT)
            lp_error("-%c %s:%u: %s", f->kind == LP_FWD_DYNAMIC ? 'D' : 'T', f->bind_host,
                     (unsigned)f->bind_port, err);
        else
            lp_error("-L %s:%u:%s: %s", f->bind_host, (unsigned)f->bind_port, l->target, err);
        return LP_ERR_IO;
    }
    lp_acceptor_init(&l->acc, c->rt->loop, l->fd, l->local, accepted, l);
    lp_acceptor_start(&l->acc);
    if (f->kind == LP_FWD_TRANSPARENT) {
        l->tproxy = lp_transparent_listen_prepare(l->fd);
        lp_info("transparent proxy listening on %s (REDIRECT%s)", l->local,
                l->tproxy ? " and TPROXY" : "; TPROXY needs CAP_NET_ADMIN");
    } else if (f->kind == LP_FWD_DYNAMIC) {
        lp_info("socks proxy listening on %s", l->local);
    } else {
        lp_info("forward listening on %s -> %s", l->local, l->target);
    }
    return LP_OK;
}

/* ---- lifetime ---------------------------------------------------------------------------------- */

static void own_identity(const struct lp_config *cfg, char *out, size_t len)
{
    uint8_t fp[LP_FINGERPRINT_LEN];
    char err[LP_KEYS_ERR_MAX];

    out[0] = '\0';
    if (cfg->insecure)
        return;
    if (cfg->identity[0]) {
        snprintf(out, len, "%s", cfg->identity);
        return;
    }
    /* The handshake already read this file (setup_tls); a failure here only leaves status
     * without a name. */
    if (cfg->tls.cert[0] &&
        lp_cert_fingerprint_file(cfg->tls.cert, fp, err, sizeof(err)) == LP_OK &&
        lp_fingerprint_format(fp, out, len) != LP_OK)
        out[0] = '\0';
}

lp_err lp_client_new(struct lp_runtime *rt, const struct lp_config *cfg,
                     const struct lp_forward *fwd, size_t nfwd, const struct lp_client_app *app,
                     void *app_user, struct lp_client **cp)
{
    lp_err rc = LP_ERR_NOMEM;
    struct lp_client *c = NULL;

    *cp = NULL;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto out;
    c->rt = rt;
    c->cfg = cfg;
    c->fd = -1;
    c->app = app;
    c->app_user = app_user;
    own_identity(cfg, c->identity, sizeof(c->identity));
    ev_io_init(&c->cio, connect_done_cb, -1, EV_WRITE);
    ev_timer_init(&c->ctimer, ctimer_cb, 0., 0.);
    ev_timer_init(&c->retry, retry_cb, 0., 0.);
    ev_timer_init(&c->bye, bye_cb, 0., 0.);
    lp_reconnect_init(&c->rc, cfg->reconnect.initial_delay, cfg->reconnect.max_delay,
                      cfg->reconnect.give_up_after, lp_now());
    if (nfwd && (c->ls = calloc(nfwd, sizeof(*c->ls))) == NULL)
        goto out;
    if (nfwd && (c->remote = calloc(nfwd, sizeof(*c->remote))) == NULL)
        goto out;
    for (size_t i = 0; i < nfwd; i++, c->nls++) {
        if (fwd[i].kind == LP_FWD_REMOTE) {
            if (c->nremote == LP_REVERSE_MAX) {
                lp_error("at most %u -R forwards", (unsigned)LP_REVERSE_MAX);
                rc = LP_ERR_INVALID;
                goto out;
            }
            c->remote[c->nremote++] = &fwd[i];
            c->ls[i] = (struct listener){.c = c, .fwd = &fwd[i], .fd = -1}; /* no local end */
            continue;
        }
        if ((rc = open_listener(c, &c->ls[i], &fwd[i])) != LP_OK) {
            c->nls++;
            goto out;
        }
    }
    if ((rc = new_session(c)) != LP_OK)
        goto out;
    *cp = c; /* before start: the app may finish at once */
    if (app && app->start)
        app->start(app_user, c->s);
    schedule_attempt(c);
    c = NULL;
out:
    lp_client_free(c);
    return rc;
}

static void bye_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_client *c = LP_CONTAINER_OF(w, struct lp_client, bye);
    (void)loop;
    (void)revents;
    /* Polled every 10 ms: GOODBYE is small, so this ends within a few ticks once the
     * link's socket buffer drains, or at the limit (the server's TTL then frees it). */
    if (c->s == NULL || lp_session_flushed(c->s) || lp_now() >= c->bye_until)
        stop_loop(c, c->finish_code);
}

void lp_client_finish(struct lp_client *c, int code)
{
    if (c->stopped)
        return;
    c->finish_code = code;
    if (c->rc.state == LP_RC_LIVE && c->s && !ev_is_active(&c->bye)) {
        lp_info("sess=%s closing: goodbye to the server", c->s->tag);
        lp_session_goodbye(c->s, LP_GOODBYE_NORMAL, "client exiting");
        c->bye_until = lp_now() + 1000;
        ev_timer_set(&c->bye, 0., 0.01);
        ev_timer_again(c->rt->loop, &c->bye);
        return;
    }
    if (!ev_is_active(&c->bye))
        stop_loop(c, code);
}

void lp_client_stop(struct lp_client *c)
{
    lp_client_finish(c, 0);
}

int lp_client_exit_code(const struct lp_client *c)
{
    return c->exit_code;
}

void lp_client_free(struct lp_client *c)
{
    if (c == NULL)
        return;
    abandon_attempt(c);
    ev_timer_stop(c->rt->loop, &c->retry);
    ev_timer_stop(c->rt->loop, &c->bye);
    for (size_t i = 0; i < c->nls; i++) {
        if (c->ls[i].fd >= 0) {
            lp_acceptor_stop(&c->ls[i].acc);
            if (c->ls[i].fwd->bind_path[0]) /* while it listens: that is how it knows it */
                lp_net_unlink_unix(c->ls[i].fwd->bind_path, &c->ls[i].file);
            close(c->ls[i].fd);
        }
    }
    free(c->ls);
    if (c->s)
        lp_session_close(c->s, LP_RST_SHUTDOWN, "client exiting");
    free(c->remote);
    free(c);
}
