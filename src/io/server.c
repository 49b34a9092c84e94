/* server.c — the server: accepts links, reads HELLO, creates or resumes sessions, and
 * keeps detached sessions for session.ttl.
 *
 * A new connection is a handshake connection until its HELLO is whole: it has a fixed
 * buffer (one HELLO frame), a deadline (limits.handshake_timeout), and reads only as many
 * bytes as the frame it is parsing needs, so nothing past HELLO is ever read here.
 * Anything that is not a valid HELLO drops that connection with one log line.
 */
#include "limpet/server.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "limpet/accept.h"
#include "limpet/admit.h"
#include "limpet/fwdspec.h"
#include "limpet/log.h"
#include "limpet/proxy_listen.h"
#include "limpet/proxyv2.h"
#include "limpet/reverse.h"
#include "limpet/stream.h"
#include "limpet/upgrade.h"
#include "limpet/wire.h"

#define HELLO_FRAME (LP_FRAME_HEADER + 64u)

struct handshake {
    struct lp_server *srv;
    struct lp_link link; /* TLS unless --insecure */
    bool tls_done;       /* the TLS handshake finished: now read HELLO */
    bool first_read;     /* the first bytes were looked at (a PROXY header where none belongs) */
    bool proxied;        /* came through the PROXY listener: peer is the header's client */
    char identity[LP_TLS_IDENTITY_MAX + 80];
    struct lp_addr peer;
    uint8_t src[16]; /* the peer's address bytes, for admission's failure delays */
    size_t src_len;
    struct lp_admit_entry adm; /* counted by admission until hs_free */
    char name[64];
    uint8_t buf[HELLO_FRAME];
    size_t len;
    ev_io io;
    ev_timer timer;
    struct handshake *prev, *next;
};

struct lp_server {
    struct lp_runtime *rt;
    const struct lp_config *cfg;
    int lfd;
    struct lp_acceptor acc;          /* on lfd */
    struct lp_proxy_listener *proxy; /* proxy_protocol.listen, NULL when off */
    struct handshake *hs;            /* connections still in their handshake */
    struct lp_session *sessions;     /* every session, live or detached */
    size_t nsessions;
    lp_admit *admit;             /* caps on unauthenticated connections */
    size_t fd_share;             /* half the open-files limit: streams one identity may hold
                                    at most, whatever limits.streams_per_identity says */
    lp_time refused_logged;      /* refusals are logged at most once a second ... */
    unsigned long refused_quiet; /* ... with a count of those not logged */
    bool stopping;               /* GOODBYE sent to every session: waiting for it to land */
    lp_time bye_until;
    ev_timer bye;
};

static const struct lp_session_hooks server_hooks;
static void bye_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- sessions -------------------------------------------------------------------------------- */

static void unlink_session(struct lp_server *srv, struct lp_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    srv->nsessions--;
}

static void end_session(struct lp_session *s, uint16_t code, const char *why)
{
    struct lp_server *srv = s->owner;
    unlink_session(srv, s);
    lp_session_close(s, code, why);
}

static void ttl_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_session *s = LP_CONTAINER_OF(w, struct lp_session, ttl);
    (void)loop;
    (void)revents;
    lp_info("sess=%s expired: detached for %llums, %zu streams reset", s->tag,
            (unsigned long long)s->cfg->session.ttl, s->nstreams);
    end_session(s, LP_RST_SESSION_LOST, "session expired");
}

static void on_link_down(struct lp_session *s, const char *reason)
{
    lp_info("sess=%s detached: %s", s->tag, reason);
    ev_timer_set(&s->ttl, (double)s->cfg->session.ttl / 1000.0, 0.);
    ev_timer_start(s->rt->loop, &s->ttl);
}

static void on_live(struct lp_session *s, bool resumed)
{
    (void)s;
    (void)resumed;
}

static void on_lost(struct lp_session *s, const char *reason)
{
    lp_warn("sess=%s lost: %s", s->tag, reason);
    end_session(s, LP_RST_SESSION_LOST, reason);
}

static void on_goodbye(struct lp_session *s, uint16_t code, const char *msg)
{
    lp_info("sess=%s goodbye from client (code %u): %s", s->tag, (unsigned)code, msg);
    end_session(s, LP_RST_SESSION_LOST, "the client ended the session");
}

static const struct lp_session_hooks server_hooks = {
    .link_down = on_link_down,
    .live = on_live,
    .rejected = NULL,
    .lost = on_lost,
    .goodbye = on_goodbye,
};

static struct lp_session *find_session(struct lp_server *srv, const uint8_t *id)
{
    for (struct lp_session *s = srv->sessions; s; s = s->next) {
        if (memcmp(lp_pipe_session_id(s->pipe), id, LP_SESSION_ID_LEN) == 0)
            return s;
    }
    return NULL;
}

static size_t sessions_of(const struct lp_server *srv, const char *identity)
{
    size_t n = 0;
    for (const struct lp_session *s = srv->sessions; s; s = s->next)
        n += strcmp(s->identity, identity) == 0;
    return n;
}

/* rt->stream_room. Every stream holds a descriptor (or an MCP attachment), so one identity
 * must not hold so many that others find none left. The walk over sessions is skipped while
 * the whole process holds fewer streams than the limit, which is nearly always. */
static bool stream_room(void *user, const struct lp_session *s, size_t *cap)
{
    const struct lp_server *srv = user;
    size_t n = 0;

    *cap = LP_MIN(srv->cfg->limits.streams_per_identity, srv->fd_share);
    if (s->identity[0] == '\0' || srv->rt->nstreams < *cap)
        return true; /* --insecure has no identities to tell apart */
    for (const struct lp_session *o = srv->sessions; o; o = o->next)
        if (strcmp(o->identity, s->identity) == 0)
            n += o->nstreams;
    return n < *cap;
}

/* Constant time: a resume token must not leak through timing. */
static bool token_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t d = 0;
    for (unsigned i = 0; i < LP_TOKEN_LEN; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

/* ---- handshake connections ----------------------------------------------------------------- */

static void hs_free(struct handshake *h, bool close_fd)
{
    struct lp_server *srv = h->srv;
    ev_io_stop(srv->rt->loop, &h->io);
    ev_timer_stop(srv->rt->loop, &h->timer);
    lp_admit_leave(srv->admit, &h->adm);
    if (close_fd)
        lp_link_close(&h->link);
    if (h->prev)
        h->prev->next = h->next;
    else
        srv->hs = h->next;
    if (h->next)
        h->next->prev = h->prev;
    free(h);
}

static void hs_drop(struct handshake *h, enum lp_hs_reason r, const char *why)
{
    h->srv->rt->stats.handshakes_refused[r]++;
    lp_info("dropped connection from %s: %s", h->name, why);
    hs_free(h, true);
}

/* After a refusal: read and discard what the peer still sends, until it closes or a second
 * passes. Closing at once would answer its last handshake bytes with a TCP reset, which can
 * reach the client before our alert does: it would then see a network error, retry, and
 * not learn that its key was refused. */
static void hs_linger_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct handshake *h = LP_CONTAINER_OF(w, struct handshake, io);
    uint8_t sink[4096];
    (void)loop;
    (void)revents;
    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(h->link.fd, sink, sizeof(sink), 0);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        break;
    }
    hs_free(h, true);
}

static void hs_linger_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hs_free(LP_CONTAINER_OF(w, struct handshake, timer), true);
}

static void hs_refuse(struct handshake *h, const char *why)
{
    struct ev_loop *loop = h->srv->rt->loop;
    lp_info("dropped connection from %s: %s", h->name, why);
    ev_io_stop(loop, &h->io);
    ev_timer_stop(loop, &h->timer);
    shutdown(h->link.fd, SHUT_WR);
    ev_io_init(&h->io, hs_linger_read_cb, h->link.fd, EV_READ);
    ev_io_start(loop, &h->io);
    ev_timer_init(&h->timer, hs_linger_timer_cb, 1.0, 0.);
    ev_timer_start(loop, &h->timer);
}

/* Best effort: the socket is fresh, so a REJECT of a few bytes fits its buffer. */
static void hs_reject(struct handshake *h, uint16_t code, const char *msg)
{
    uint8_t out[LP_FRAME_HEADER + 2 + 256];
    size_t n = lp_text_encode(out, sizeof(out), LP_FT_REJECT, 0, code, msg, strlen(msg));
    lp_err rc = LP_OK;
    h->srv->rt->stats.handshakes_refused[lp_hs_reason_of_reject(code)]++;
    if (n > 0 && (lp_link_write(&h->link, out, n, &rc) < 0 || lp_link_flush(&h->link) != LP_OK))
        lp_debug("REJECT to %s not sent: %s", h->name, h->link.err);
    lp_info("rejected %s: %s: %s", h->name, lp_reject_code_name(code), msg);
    hs_free(h, true);
}

static void hs_new_session(struct handshake *h, const struct lp_hello *hello)
{
    struct lp_server *srv = h->srv;
    struct lp_session *s = NULL;
    uint8_t id[LP_SESSION_ID_LEN], token[LP_TOKEN_LEN];
    const char *why = NULL;
    uint64_t gen;

    /* Transient for the client: it retries, and a balancer sends the retry to another node
     * (this one's health check says "draining"). Resumes are still welcome (hs_resume). */
    if (srv->rt->draining) {
        hs_reject(h, LP_REJECT_LIMIT, "draining");
        return;
    }
    if (srv->nsessions >= srv->cfg->limits.max_sessions) {
        hs_reject(h, LP_REJECT_LIMIT, "too many sessions");
        return;
    }
    /* A resume adds nothing to what the process holds; a new session would. */
    if (lp_runtime_memory_room(srv->rt) == 0) {
        hs_reject(h, LP_REJECT_LIMIT, "server memory limit reached (limits.memory)");
        return;
    }
    /* Detached sessions count too: they hold memory until their TTL. */
    if (h->identity[0] && sessions_of(srv, h->identity) >= srv->cfg->limits.sessions_per_identity) {
        hs_reject(h, LP_REJECT_LIMIT,
                  "too many sessions for this identity "
                  "(limits.sessions_per_identity)");
        return;
    }
    if (lp_random(id, sizeof(id)) != LP_OK || lp_random(token, sizeof(token)) != LP_OK ||
        lp_session_new(srv->rt, srv->cfg, false, &server_hooks, srv, &s) != LP_OK) {
        hs_reject(h, LP_REJECT_LIMIT, "server cannot create a session now");
        return;
    }
    ev_timer_init(&s->ttl, ttl_cb, 0., 0.);
    snprintf(s->identity, sizeof(s->identity), "%s", h->identity);
    lp_pipe_set_identity(s->pipe, id, token);
    memset(token, 0, sizeof(token));
    /* node.id passed lp_config_finish's check: this cannot fail */
    (void)!lp_pipe_set_node(s->pipe, srv->cfg->node.id);
    lp_session_retag(s);
    if (lp_pipe_accept(s->pipe, hello, lp_now(), &gen, &why) != LP_OK) {
        /* A new session holds nothing, so only a broken client gets here. */
        hs_reject(h, LP_REJECT_SEQ_OUT_OF_RANGE, why ? why : "bad resume point");
        lp_session_close(s, LP_RST_SESSION_LOST, "handshake failed");
        return;
    }
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    char how[LP_TLS_IDENTITY_MAX + 64];
    lp_link_describe(&h->link, how, sizeof(how));
    if (s->identity[0])
        lp_info("sess=%s new session from %s, identity %s (%s)", s->tag, h->name, s->identity, how);
    else
        lp_info("sess=%s new session from %s (%s)", s->tag, h->name, how);
    lp_session_attach(s, &h->link, gen, h->name, NULL, 0);
    hs_free(h, false);
}

static void hs_resume(struct handshake *h, const struct lp_hello *hello)
{
    struct lp_session *s = find_session(h->srv, hello->session_id);
    const char *why = NULL;
    uint64_t gen;

    if (s == NULL || !token_equal(lp_pipe_token(s->pipe), hello->token)) {
        h->srv->rt->stats.reconnects++;
        hs_reject(h, LP_REJECT_SESSION_UNKNOWN, "no such session on this server");
        return;
    }
    /* A stolen id and token are worthless without the key of the identity that made the
     * session; the session itself is left alone. */
    if (strcmp(s->identity, h->identity) != 0) {
        lp_warn("sess=%s resume attempt by another identity (%s) from %s refused: the session "
                "belongs to %s",
                s->tag, h->identity[0] ? h->identity : "none", h->name,
                s->identity[0] ? s->identity : "no identity");
        h->srv->rt->stats.reconnects++;
        hs_reject(h, LP_REJECT_AUTH, "this session belongs to another identity");
        return;
    }
    bool had_link = lp_session_attached(s);
    lp_time detached = had_link ? 0 : lp_now() - s->down_since;
    /* The client says when the link replaces one that carried its keys' share (TLS 1.2 has
     * no key update): a rekey, not a reconnect. It only changes what is counted. */
    bool rekey = (hello->flags & LP_HELLO_REKEY) != 0;
    if (!rekey)
        h->srv->rt->stats.reconnects++;
    if (had_link) /* the newest link wins */
        lp_session_detach(s, rekey ? "rekeyed: replaced by a new link" : "replaced by a new link");
    if (lp_pipe_accept(s->pipe, hello, lp_now(), &gen, &why) != LP_OK) {
        lp_warn("sess=%s lost: %s", s->tag, why);
        hs_reject(h, LP_REJECT_SEQ_OUT_OF_RANGE, why);
        end_session(s, LP_RST_SESSION_LOST, "resume point out of range");
        return;
    }
    ev_timer_stop(s->rt->loop, &s->ttl);
    if (rekey) {
        s->rekeys++;
        s->rt->stats.rekeys++;
        lp_info("sess=%s rekeyed: new link from %s (generation %llu), rekey %llu", s->tag, h->name,
                (unsigned long long)gen, (unsigned long long)s->rekeys);
    } else {
        s->reconnects++;
        s->rt->stats.resumes++;
        lp_hist_observe(&s->rt->stats.resume, detached);
        lp_info("sess=%s resumed from %s (generation %llu%s)", s->tag, h->name,
                (unsigned long long)gen, had_link ? ", replaced a silent link" : "");
    }
    lp_session_attach(s, &h->link, gen, h->name, NULL, 0);
    hs_free(h, false);
}

/* A whole frame is in h->buf: it must be a valid HELLO. */
static void hs_complete(struct handshake *h, const struct lp_frame *f)
{
    struct lp_hello hello;
    const char *why = NULL;
    char msg[96];
    static const uint8_t zero[LP_SESSION_ID_LEN];

    if (f->type != LP_FT_HELLO) {
        snprintf(msg, sizeof(msg), "expected HELLO, got %s", lp_frame_type_name(f->type));
        hs_drop(h, LP_HS_BAD_HELLO, msg);
        return;
    }
    if (lp_hello_decode(f, &hello, &why) != LP_OK) {
        snprintf(msg, sizeof(msg), "bad HELLO: %s", why ? why : "?");
        hs_drop(h, LP_HS_BAD_HELLO, msg);
        return;
    }
    if (hello.version != LP_PROTO_VERSION) {
        snprintf(msg, sizeof(msg), "protocol version %u not supported (this server speaks %u)",
                 (unsigned)hello.version, LP_PROTO_VERSION);
        hs_reject(h, LP_REJECT_VERSION, msg);
        return;
    }
    if (memcmp(hello.session_id, zero, sizeof(zero)) == 0)
        hs_new_session(h, &hello);
    else
        hs_resume(h, &hello);
}

/* Drives the TLS handshake of a new connection. True when it is done and HELLO may be read;
 * false while it waits, or when it failed (the connection is then dropped). */
static bool hs_tls_step(struct handshake *h)
{
    char err[256];
    uint8_t fp[LP_TLS_FP_LEN];
    lp_tls *t = h->link.tls;
    lp_err rc = lp_tls_handshake(t, err, sizeof(err));

    if (rc == LP_ERR_TRUNCATED) {
        ev_io_stop(h->srv->rt->loop, &h->io);
        ev_io_set(&h->io, h->link.fd, lp_tls_handshake_wants_write(t) ? EV_WRITE : EV_READ);
        ev_io_start(h->srv->rt->loop, &h->io);
        return false;
    }
    if (rc != LP_OK) {
        if (rc == LP_ERR_AUTH)
            lp_warn("authentication failed from %s: %s", h->name, err);
        if (rc == LP_ERR_AUTH) {
            h->srv->rt->stats.handshakes_refused[LP_HS_TLS_AUTH]++;
            lp_admit_failed(h->srv->admit, h->src, h->src_len, lp_now());
            hs_refuse(h, "authentication failed");
        } else
            hs_drop(h, LP_HS_TLS_ERROR, err);
        return false;
    }
    if (lp_tls_peer_fingerprint(t, fp)) {
        char *o = h->identity + snprintf(h->identity, sizeof(h->identity), "sha256:");
        for (unsigned i = 0; i < LP_TLS_FP_LEN; i++, o += 2)
            snprintf(o, 3, "%02x", fp[i]);
        /* From here on the client is its auth.clients name, in logs and in the session. */
        if (h->srv->rt->name_of) {
            char name[sizeof(h->identity)];
            snprintf(name, sizeof(name), "%s",
                     h->srv->rt->name_of(h->srv->rt->allow_user, h->identity));
            snprintf(h->identity, sizeof(h->identity), "%s", name);
        }
    } else {
        snprintf(h->identity, sizeof(h->identity), "%s", lp_tls_peer_identity(t));
    }
    h->tls_done = true;
    lp_admit_succeeded(h->srv->admit, h->src, h->src_len);
    lp_admit_settle(h->srv->admit, &h->adm); /* authenticated: never dropped for room */
    ev_io_stop(h->srv->rt->loop, &h->io);
    ev_io_set(&h->io, h->link.fd, EV_READ);
    ev_io_start(h->srv->rt->loop, &h->io);
    lp_debug("TLS from %s: identity %s, %s, records by %s", h->name, h->identity, lp_tls_suite(t),
             lp_tls_record_layer(t));
    return true;
}

/* A PROXY header (v1 or v2) on a listener that takes none: a balancer pointed at the wrong
 * port, or a client that wants to choose the address the server sees. Refused with a line
 * that says so, rather than a TLS or HELLO error that would not. Looks without taking, so
 * the TLS handshake reads the same bytes. True when the connection was refused. */
static bool hs_proxy_misplaced(struct handshake *h)
{
    uint8_t peek[LP_PROXY_SIG_LEN];
    ssize_t n = recv(h->link.fd, peek, sizeof(peek), MSG_PEEK);

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false; /* a spurious wake-up: look again at the next */
    h->first_read = true;
    /* "P" alone could still be a HELLO (type 0x50) with --insecure: its next byte (flags)
     * would be 0, not "R"; let the frame decoder judge it. */
    if (n <= 0 || !lp_proxy_looks_like(peek, (size_t)n) || (n == 1 && peek[0] == 'P'))
        return false;
    h->srv->rt->stats.handshakes_refused[LP_HS_PROXY]++;
    lp_info("dropped connection from %s: a PROXY protocol header on the plain tunnel listener "
            "(a balancer must use proxy_protocol.listen)",
            h->name);
    hs_free(h, true);
    return true;
}

static void hs_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct handshake *h = LP_CONTAINER_OF(w, struct handshake, io);
    struct lp_frame f;
    const char *why = NULL;
    size_t used;
    char msg[256];
    (void)loop;
    (void)revents;

    if (!h->first_read && !h->proxied && hs_proxy_misplaced(h))
        return;
    if (h->link.tls && !h->tls_done && !hs_tls_step(h))
        return;
    for (;;) {
        lp_err rc = lp_frame_decode(h->buf, h->len, &f, &used, &why);
        if (rc == LP_OK) {
            hs_complete(h, &f);
            return;
        }
        if (rc != LP_ERR_TRUNCATED) {
            snprintf(msg, sizeof(msg), "not a limpet handshake: %s", why ? why : "?");
            hs_drop(h, LP_HS_BAD_HELLO, msg);
            return;
        }
        /* Read only what the frame needs: the header first, then its payload. */
        size_t need =
            h->len < LP_FRAME_HEADER ? LP_FRAME_HEADER : LP_FRAME_HEADER + lp_load_u16(h->buf + 2);
        if (need > sizeof(h->buf)) {
            hs_drop(h, LP_HS_BAD_HELLO, "handshake frame too large");
            return;
        }
        ssize_t n = lp_link_read(&h->link, h->buf + h->len, need - h->len, &rc);
        if (n > 0) {
            h->len += (size_t)n;
            continue;
        }
        if (n < 0 && rc == LP_ERR_TRUNCATED)
            return;
        snprintf(msg, sizeof(msg), "%s after %zu handshake bytes", n == 0 ? "closed" : h->link.err,
                 h->len);
        hs_drop(h, LP_HS_CLOSED, msg);
        return;
    }
}

static void hs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct handshake *h = LP_CONTAINER_OF(w, struct handshake, timer);
    char msg[96];
    (void)loop;
    (void)revents;
    snprintf(msg, sizeof(msg), "handshake timed out after %llums with %zu bytes",
             (unsigned long long)h->srv->cfg->limits.handshake_timeout, h->len);
    hs_drop(h, LP_HS_TIMEOUT, msg);
}

/* A flood must not flood the log too: one line a second about connections refused or dropped
 * by admission, with how many went unlogged. */
static void log_admission(struct lp_server *srv, const char *what, const char *name,
                          const char *why)
{
    lp_time now = lp_now();

    if (now - srv->refused_logged < 1000) {
        srv->refused_quiet++;
        return;
    }
    lp_info("%s connection from %s: %s (%lu more refused or dropped in the last second)", what,
            name, why, srv->refused_quiet);
    srv->refused_logged = now;
    srv->refused_quiet = 0;
}

/* The pending table was full: admission dropped this connection (the oldest unauthenticated
 * one of the source holding the most), so that a newer one, maybe a real client among
 * strangers, gets its turn. */
static void hs_evict(struct handshake *h)
{
    h->srv->rt->stats.handshakes_refused[LP_HS_EVICTED]++;
    log_admission(h->srv, "dropped", h->name,
                  "not authenticated yet, and its source holds the most such connections: "
                  "evicted for a newer one (limits.max_pending)");
    hs_free(h, true);
}

/* One new tunnel connection: admitted (or refused), then its handshake starts. peer is the
 * client's address: the connection's own, or what a trusted balancer's PROXY header said. */
static void admit_connection(struct lp_server *srv, int fd, const struct lp_addr *peer,
                             bool proxied)
{
    struct handshake *h;
    struct lp_admit_entry *evicted = NULL;
    lp_tls *tls = NULL;
    enum lp_admit_verdict v;

    if ((h = calloc(1, sizeof(*h))) == NULL) {
        lp_net_close_reset(fd);
        return;
    }
    lp_net_addr_str(peer, h->name, sizeof(h->name));
    h->src_len = lp_net_addr_bytes(peer, h->src);
    v = lp_admit_enter(srv->admit, &h->adm, h->src, h->src_len, lp_now(), &evicted);
    if (evicted != NULL)
        hs_evict(LP_CONTAINER_OF(evicted, struct handshake, adm));
    if (v != LP_ADMIT_OK) {
        srv->rt->stats.handshakes_refused[LP_HS_ADMISSION]++;
        log_admission(srv, "refused", h->name, lp_admit_reason(v));
        free(h);
        lp_net_close_reset(fd);
        return;
    }
    /* No Nagle from the first byte: the TLS and limpet handshakes are small messages
     * in turn, each of which would otherwise wait for a delayed ACK (~40 ms). */
    lp_net_tune_stream(fd);
    if (srv->rt->tls && lp_tls_new(srv->rt->tls, fd, &tls) != LP_OK) {
        lp_admit_leave(srv->admit, &h->adm);
        close(fd);
        free(h);
        return;
    }
    h->srv = srv;
    h->proxied = proxied;
    lp_link_set(&h->link, fd, tls);
    h->peer = *peer;
    ev_io_init(&h->io, hs_read_cb, fd, EV_READ);
    ev_io_start(srv->rt->loop, &h->io);
    ev_timer_init(&h->timer, hs_timer_cb, (double)srv->cfg->limits.handshake_timeout / 1000.0, 0.);
    ev_timer_start(srv->rt->loop, &h->timer);
    h->next = srv->hs;
    if (srv->hs)
        srv->hs->prev = h;
    srv->hs = h;
    lp_debug("connection from %s", h->name);
}

static void accepted(void *user, int fd, const struct lp_addr *peer)
{
    admit_connection(user, fd, peer, false);
}

static void accepted_proxied(void *user, int fd, const struct lp_addr *client)
{
    admit_connection(user, fd, client, true);
}

void lp_server_drain(struct lp_server *srv)
{
    if (srv == NULL || srv->rt->draining)
        return;
    srv->rt->draining = true;
    lp_info("draining: no new sessions (REJECT LIMIT \"draining\"); the %zu sessions held here "
            "keep resuming until they end",
            srv->nsessions);
}

/* ---- lifetime ------------------------------------------------------------------------------------ */

/* The soft open-files limit goes up to the hard one (a stream costs a descriptor); half of it
 * bounds the streams of one identity. */
static void set_fd_share(struct lp_server *srv)
{
    uint64_t before, nofile = lp_net_raise_fd_limit(&before);

    if (nofile > before)
        lp_info("open files limit raised from %llu to %llu", (unsigned long long)before,
                (unsigned long long)nofile);
    else
        lp_debug("open files limit %llu", (unsigned long long)nofile);
    srv->fd_share = nofile == 0 || nofile / 2 > SIZE_MAX ? SIZE_MAX : (size_t)(nofile / 2);
    if (srv->fd_share < srv->cfg->limits.streams_per_identity)
        lp_info("streams per identity: %zu, half the open files limit (limits.streams_per_identity "
                "is %zu)",
                srv->fd_share, srv->cfg->limits.streams_per_identity);
}

/* Listens on addr, or takes the listening socket the previous binary handed over (inherited,
 * -1 for none) when it is bound there; one that is not (`listen` changed) is closed. */
static lp_err open_listener(int inherited, struct lp_addr *addr, int *fd, char *err, size_t errlen)
{
    if (inherited >= 0 && lp_upgrade_fd_fits(inherited, addr)) {
        *fd = inherited;
        return LP_OK;
    }
    if (inherited >= 0) {
        lp_info("listen changed: the tunnel port inherited from the previous binary is closed");
        close(inherited);
    }
    return lp_net_listen(addr, fd, err, errlen);
}

lp_err lp_server_new(struct lp_runtime *rt, const struct lp_config *cfg, struct lp_server **sp)
{
    return lp_server_new_on(rt, cfg, -1, sp);
}

lp_err lp_server_new_on(struct lp_runtime *rt, const struct lp_config *cfg, int inherited,
                        struct lp_server **sp)
{
    char host[LP_ADDR_MAX], err[256], name[64];
    uint16_t port;
    struct lp_addr addr;
    struct lp_server *srv;
    lp_err rc;

    *sp = NULL;
    if (lp_parse_hostport(cfg->listen, host, sizeof(host), &port) != LP_OK) {
        lp_error("listen address \"%s\" is not HOST:PORT", cfg->listen);
        goto refused;
    }
    if (lp_net_resolve(host, port, &addr, err, sizeof(err)) != LP_OK) {
        lp_error("listen: %s", err);
        goto refused;
    }
    struct lp_admit_config ac = {
        .max_pending = cfg->limits.max_pending,
        .max_per_source = cfg->limits.max_pending_per_source,
        .penalty_base = 100,
        .penalty_max = 10000,
    };
    if ((srv = calloc(1, sizeof(*srv))) == NULL)
        goto refused;
    srv->rt = rt;
    srv->cfg = cfg;
    set_fd_share(srv);
    if (lp_admit_new(&ac, &srv->admit) != LP_OK) {
        free(srv);
        goto refused;
    }
    rc = open_listener(inherited, &addr, &srv->lfd, err, sizeof(err));
    /* The kernel's pick for port 0 is what the log line (and whoever reads it) must name. */
    if (rc == LP_OK && lp_net_local_addr(srv->lfd, &addr) != LP_OK)
        rc = lp_errf(LP_ERR_IO, err, sizeof(err), "listen: cannot read the address bound: %s",
                     strerror(errno));
    if (rc != LP_OK) {
        lp_error("%s", err);
        if (srv->lfd >= 0)
            close(srv->lfd);
        lp_admit_free(srv->admit);
        free(srv);
        return LP_ERR_IO;
    }
    if (cfg->proxy_protocol.listen[0] != '\0' &&
        lp_proxy_listener_new(rt, cfg, accepted_proxied, srv, &srv->proxy) != LP_OK) {
        close(srv->lfd);
        lp_admit_free(srv->admit);
        free(srv);
        return LP_ERR_IO;
    }
    rt->stream_room = stream_room;
    rt->stream_user = srv;
    rt->memory_limit = cfg->limits.memory;
    snprintf(rt->node, sizeof(rt->node), "%s", cfg->node.id);
    lp_acceptor_init(&srv->acc, rt->loop, srv->lfd, "the tunnel port", accepted, srv);
    ev_timer_init(&srv->bye, bye_cb, 0., 0.01);
    lp_acceptor_start(&srv->acc);
    lp_info("listening on %s (node %s)", lp_net_addr_str(&addr, name, sizeof(name)), cfg->node.id);
    *sp = srv;
    return LP_OK;
refused:
    if (inherited >= 0)
        close(inherited);
    return LP_ERR_INVALID;
}

void lp_server_reconfigure(struct lp_server *srv, const struct lp_config *cfg)
{
    if (srv == NULL)
        return;
    srv->cfg = cfg;
    srv->rt->memory_limit = cfg->limits.memory;
    lp_proxy_listener_reconfigure(srv->proxy, cfg);
}

size_t lp_server_revoke(struct lp_server *srv,
                        const char *(*revoked)(void *user, const char *identity), void *user)
{
    size_t ended = 0;

    if (srv == NULL)
        return 0;
    for (struct lp_session *s = srv->sessions, *next; s; s = next) {
        const char *why = s->identity[0] ? revoked(user, s->identity) : NULL;
        next = s->next;
        if (why == NULL) {
            lp_reverse_recheck(s);
            lp_stream_recheck(s);
            continue;
        }
        lp_warn("sess=%s ended: %s (identity %s)", s->tag, why, s->identity);
        lp_session_goodbye(s, LP_GOODBYE_REVOKED, why);
        end_session(s, LP_RST_NOT_ALLOWED, why);
        ended++;
    }
    return ended;
}

/* Each session's GOODBYE must reach its client before the socket closes: closing a socket
 * with unread input sends a RST, which can overtake the GOODBYE, and a client that sees a
 * dropped link instead keeps its applications waiting for a resume. So: once a session's
 * output is flushed, shut our side (the client reads GOODBYE, then EOF) and keep reading
 * until the client closes; stop when every link is gone, or after a second. */
static void bye_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_server *srv = LP_CONTAINER_OF(w, struct lp_server, bye);
    bool waiting = false;
    (void)revents;

    for (struct lp_session *s = srv->sessions; s; s = s->next) {
        if (!lp_session_attached(s))
            continue;
        waiting = true;
        if (lp_session_flushed(s) && s->link.fd >= 0)
            shutdown(s->link.fd, SHUT_WR); /* repeated calls are harmless */
    }
    if (!waiting || lp_now() >= srv->bye_until) {
        ev_timer_stop(loop, w);
        ev_break(loop, EVBREAK_ALL);
    }
}

void lp_server_stop(struct lp_server *srv)
{
    if (srv->stopping) { /* a second signal: no more waiting */
        ev_break(srv->rt->loop, EVBREAK_ALL);
        return;
    }
    srv->stopping = true;
    lp_acceptor_stop(&srv->acc); /* no new clients while we say goodbye */
    lp_proxy_listener_stop(srv->proxy);
    for (struct lp_session *s = srv->sessions; s; s = s->next)
        lp_session_goodbye(s, LP_GOODBYE_SHUTDOWN, "server shutting down");
    srv->bye_until = lp_now() + 1000;
    ev_timer_again(srv->rt->loop, &srv->bye);
}

void lp_server_free(struct lp_server *srv)
{
    if (srv == NULL)
        return;
    lp_acceptor_stop(&srv->acc);
    lp_proxy_listener_free(srv->proxy);
    ev_timer_stop(srv->rt->loop, &srv->bye);
    close(srv->lfd);
    while (srv->hs)
        hs_free(srv->hs, true);
    while (srv->sessions)
        end_session(srv->sessions, LP_RST_SHUTDOWN, "server shutting down");
    lp_admit_free(srv->admit);
    srv->rt->stream_room = NULL;
    free(srv);
}

/* ---- upgrade in place ------------------------------------------------------------------------ */

int lp_server_fd(const struct lp_server *srv)
{
    return srv->lfd;
}

lp_err lp_server_restore_session(struct lp_server *srv, lp_pipe *pipe, lp_mux *mux,
                                 const char *identity, lp_time ttl_left, struct lp_session **out)
{
    struct lp_session *s;
    lp_err rc = lp_session_adopt(srv->rt, srv->cfg, &server_hooks, srv, pipe, mux, &s);

    *out = NULL;
    if (rc != LP_OK)
        return rc;
    ev_timer_init(&s->ttl, ttl_cb, 0., 0.);
    snprintf(s->identity, sizeof(s->identity), "%s", identity);
    /* The node id is this process's (the state does not carry it): the resume's WELCOME names
     * this node, as a new session's does. node.id passed lp_config_finish's check. */
    (void)!lp_pipe_set_node(s->pipe, srv->cfg->node.id);
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    /* Detached, as every session is after the hand-over: the client resumes or the ttl ends
     * it, as after any link drop. */
    ev_timer_set(&s->ttl, (double)LP_MIN(ttl_left, srv->cfg->session.ttl) / 1000.0, 0.);
    ev_timer_start(srv->rt->loop, &s->ttl);
    *out = s;
    return LP_OK;
}

lp_time lp_server_ttl_left(const struct lp_session *s)
{
    if (lp_session_attached(s) || !ev_is_active(&s->ttl))
        return s->cfg->session.ttl;
    double left = ev_timer_remaining(s->rt->loop, (ev_timer *)&s->ttl);
    return left <= 0 ? 0 : (lp_time)(left * 1000.0);
}
