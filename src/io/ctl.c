/* ctl.c — the control socket (`limpet status`) and the metrics listener, on the loop.
 *
 * Both are the same small server: accept (at most a few connections at once), read one
 * bounded request, build the answer from a snapshot of the runtime, write it without
 * blocking, close. Every connection has one deadline for its whole life, so a client that
 * connects and says nothing costs a slot for LP_CTL_TIMEOUT_MS at most, never the tunnel.
 * The snapshot is built on the loop thread from the runtime's session list and counters;
 * building it is linear in sessions and (capped) streams.
 */
#include "limpet/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "limpet/accept.h"
#include "limpet/fwdspec.h"
#include "limpet/log.h"
#include "limpet/mcpio.h"
#include "limpet/session.h"
#include "limpet/stream.h"
#include "limpet/upgrade.h"

void lp_ctl_default_dir(char *out, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (xdg && xdg[0] == '/')
        snprintf(out, len, "%s/limpet", xdg);
    else
        snprintf(out, len, "/tmp/limpet-%lu", (unsigned long)getuid());
}

void lp_ctl_default_path(const char *role, char *out, size_t len)
{
    char dir[PATH_MAX];

    lp_ctl_default_dir(dir, sizeof(dir));
    snprintf(out, len, "%s/%s-%ld.sock", dir, role, (long)getpid());
}

#ifndef LP_VERSION
#define LP_VERSION "?"
#endif

struct ctl_listener {
    struct lp_ctl *c;
    int fd;
    bool http;
    size_t nconns, max;
    struct lp_acceptor acc; /* on fd */
};

struct ctl_conn {
    struct ctl_listener *l;
    int fd;
    ev_io io;
    ev_timer timer;
    char req[LP_METRICS_REQUEST_MAX];
    size_t len;
    char *answer; /* owned; NULL until the request is whole */
    size_t alen, sent;
    struct ctl_conn *prev, *next;
};

struct lp_ctl {
    struct lp_runtime *rt;
    char role[16];
    struct ctl_listener ctl, http;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "" when no control socket */
    dev_t dev; /* of the socket we bound: unlinked at exit only while it is still ours */
    ino_t ino;
    struct ctl_conn *conns;
};

/* ---- the snapshot ------------------------------------------------------------------------------ */

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case LP_KIND_TCP:
        return "tcp";
    case LP_KIND_STDIO:
        return "stdio";
    case LP_KIND_MCP:
        return "mcp";
    case LP_KIND_REVERSE:
        return "reverse";
    default:
        return "?";
    }
}

static json_t *snap_streams(const struct lp_session *s, size_t *budget)
{
    json_t *arr = json_array();

    for (const struct lp_stream *st = s->streams; st && arr && *budget > 0;
         st = lp_stream_next(st)) {
        uint64_t up, down;
        uint8_t kind;
        const char *target = lp_stream_target(st, &kind);
        lp_stream_counts(st, &up, &down);
        if (json_array_append_new(
                arr, json_pack("{s:I, s:s, s:s, s:I, s:I}", "id", (json_int_t)lp_stream_id(st),
                               "kind", kind_name(kind), "target", target, "bytes_up",
                               (json_int_t)up, "bytes_down", (json_int_t)down)) != 0) {
            json_decref(arr);
            return NULL;
        }
        (*budget)--;
    }
    return arr;
}

static json_t *snap_session(const struct lp_session *s, lp_time now, size_t *budget)
{
    bool live = lp_session_attached(s) && lp_pipe_state(s->pipe) == LP_PIPE_LIVE;
    json_t *streams = snap_streams(s, budget);
    /* the current link's TLS: "" with --insecure or while detached */
    const char *suite = s->link.tls ? lp_tls_suite(s->link.tls) : "";
    const char *layer = s->link.tls ? lp_tls_record_layer(s->link.tls) : "";
    if (streams == NULL)
        return NULL;
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:b, s:o}",
        "id", s->tag, "identity", s->identity, "peer", s->peer, "node", lp_pipe_node(s->pipe),
        "state", live ? "live" : "detached", "uptime_ms", (json_int_t)(now - s->created),
        "detached_ms", (json_int_t)(live ? 0 : now - s->down_since), "reconnects",
        (json_int_t)s->reconnects, "rekeys", (json_int_t)s->rekeys, "tls_suite", suite,
        "record_layer", layer, "rtt_ms", (json_int_t)lp_pipe_rtt(s->pipe), "bytes_in",
        (json_int_t)s->bytes_in, "bytes_out", (json_int_t)s->bytes_out, "replay_used",
        (json_int_t)lp_pipe_buffered(s->pipe), "replay_cap",
        (json_int_t)s->cfg->session.replay_buffer, "streams_open", (json_int_t)s->nstreams,
        "streams_truncated", json_array_size(streams) < s->nstreams, "streams", streams);
}

static json_t *snap_hist(const struct lp_hist *h)
{
    json_t *buckets = json_array();
    uint64_t cum = 0;

    for (size_t i = 0; i < LP_HIST_BOUNDS && buckets; i++) {
        cum += h->buckets[i];
        if (json_array_append_new(buckets,
                                  json_pack("{s:I, s:I}", "le_ms", (json_int_t)lp_hist_bounds[i],
                                            "count", (json_int_t)cum)) != 0) {
            json_decref(buckets);
            return NULL;
        }
    }
    if (buckets == NULL)
        return NULL;
    return json_pack("{s:I, s:I, s:o}", "count", (json_int_t)h->count, "sum_ms",
                     (json_int_t)h->sum_ms, "buckets", buckets);
}

static json_t *snap_process(struct lp_runtime *rt, const char *role, lp_time now)
{
    const struct lp_stats *st = &rt->stats;
    uint64_t in = st->bytes_in_ended, out = st->bytes_out_ended;
    json_t *hs = json_object(), *hist = snap_hist(&st->resume);

    for (const struct lp_session *s = rt->all; s; s = s->all_next) {
        in += s->bytes_in;
        out += s->bytes_out;
    }
    for (int r = 0; r < LP_HS_REASONS && hs; r++)
        if (json_object_set_new(hs, lp_hs_reason_name((enum lp_hs_reason)r),
                                json_integer((json_int_t)st->handshakes_refused[r])) != 0) {
            json_decref(hs);
            hs = NULL;
        }
    json_t *since = st->upgrades ? json_integer((json_int_t)(now - st->last_upgrade)) : json_null();
    if (hs == NULL || hist == NULL || since == NULL) {
        json_decref(hs);
        json_decref(hist);
        json_decref(since);
        return NULL;
    }
    return json_pack(
        "{s:s, s:I, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:o, s:o, s:I, s:I, s:I, s:o}",
        "role", role, "pid", (json_int_t)getpid(), "version", LP_VERSION, "node", rt->node,
        "draining", (int)rt->draining, "uptime_ms", (json_int_t)(now - st->started),
        "sessions_created", (json_int_t)st->sessions_created, "sessions_ended",
        (json_int_t)st->sessions_ended, "streams_opened", (json_int_t)st->streams_opened,
        "streams_refused", (json_int_t)st->streams_refused, "reconnects",
        (json_int_t)st->reconnects, "resumes", (json_int_t)st->resumes, "rekeys",
        (json_int_t)st->rekeys, "bytes_in", (json_int_t)in, "bytes_out", (json_int_t)out,
        "mcp_processes", (json_int_t)(rt->open_mcp ? lp_mcpd_processes(rt->mcp_user) : 0),
        "memory_buffered", (json_int_t)lp_runtime_memory(rt), "memory_limit",
        (json_int_t)rt->memory_limit, "handshakes_refused", hs, "resume_ms", hist, "upgrades",
        (json_int_t)st->upgrades, "upgrade_failures", (json_int_t)st->upgrade_failures,
        "sessions_restored", (json_int_t)st->sessions_restored, "last_upgrade_ms", since);
}

json_t *lp_ctl_snapshot(struct lp_runtime *rt, const char *role, lp_time now)
{
    json_t *sessions = json_array(), *process = snap_process(rt, role, now);
    size_t budget = LP_CTL_STREAMS_MAX;

    for (const struct lp_session *s = rt->all; s && sessions && process; s = s->all_next) {
        if (s->closing)
            continue;
        if (json_array_append_new(sessions, snap_session(s, now, &budget)) != 0) {
            json_decref(sessions);
            sessions = NULL;
        }
    }
    if (sessions == NULL || process == NULL) {
        json_decref(sessions);
        json_decref(process);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "process", process, "sessions", sessions);
}

/* ---- answers ------------------------------------------------------------------------------------ */

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* One request line: "status" or "status json". */
static char *control_answer(struct lp_ctl *c, const char *line)
{
    bool json = strcmp(line, "status json") == 0;
    char *text = NULL;

    if (!json && strcmp(line, "status") != 0)
        return dup_text("error: unknown request (ask \"status\" or \"status json\")\n");
    json_t *doc = lp_ctl_snapshot(c->rt, c->role, lp_now());
    if (doc == NULL)
        return dup_text("error: out of memory\n");
    if (json) {
        char *d = json_dumps(doc, JSON_COMPACT);
        size_t n = d ? strlen(d) : 0;
        if (d && (text = malloc(n + 2)) != NULL) {
            memcpy(text, d, n);
            memcpy(text + n, "\n", 2);
        }
        free(d);
    } else {
        text = lp_ctl_render_text(doc);
    }
    json_decref(doc);
    return text ? text : dup_text("error: out of memory\n");
}

static char *http_reply(const char *status, const char *body)
{
    size_t n = strlen(body), room = n + 256;
    char *out = malloc(room);
    if (out == NULL)
        return NULL;
    int k = snprintf(out, room,
                     "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, n);
    if (k < 0 || (size_t)k >= room - n) {
        free(out);
        return NULL;
    }
    memcpy(out + k, body, n + 1);
    return out;
}

/* The request head is whole (or cut at the cap): GET /metrics, else 404 / 405 / 400. */
static char *http_answer(struct lp_ctl *c, char *head)
{
    char *sp1 = strchr(head, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;

    if (sp1 == NULL || sp2 == NULL)
        return http_reply("400 Bad Request", "bad request\n");
    *sp1 = *sp2 = '\0';
    if (strcmp(head, "GET") != 0)
        return http_reply("405 Method Not Allowed", "only GET\n");
    char *path = sp1 + 1;
    path[strcspn(path, "?")] = '\0';
    if (strcmp(path, "/metrics") != 0)
        return http_reply("404 Not Found", "not found: try /metrics\n");
    json_t *doc = lp_ctl_snapshot(c->rt, c->role, lp_now());
    char *body = doc ? lp_ctl_render_metrics(doc) : NULL;
    json_decref(doc);
    char *out = body ? http_reply("200 OK", body) : http_reply("500 Internal Error", "no memory\n");
    free(body);
    return out;
}

/* ---- connections ------------------------------------------------------------------------------ */

static void conn_free(struct ctl_conn *k)
{
    struct lp_ctl *c = k->l->c;
    ev_io_stop(c->rt->loop, &k->io);
    ev_timer_stop(c->rt->loop, &k->timer);
    close(k->fd);
    free(k->answer);
    *(k->prev ? &k->prev->next : &c->conns) = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->l->nconns--;
    free(k);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl_conn *k = LP_CONTAINER_OF(w, struct ctl_conn, io);
    (void)loop;
    (void)revents;
    while (k->sent < k->alen) {
        ssize_t n = send(k->fd, k->answer + k->sent, k->alen - k->sent, MSG_NOSIGNAL);
        if (n > 0) {
            k->sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return; /* the watcher brings us back */
        break;
    }
    conn_free(k);
}

/* Bytes a request may take: req[len] always stays free for the terminator. */
static size_t req_cap(const struct ctl_conn *k)
{
    return k->l->http ? LP_METRICS_REQUEST_MAX - 1 : LP_CTL_REQUEST_MAX;
}

/* Is the request whole? Control: one line. HTTP: the head, up to the blank line. */
static bool terminated(struct ctl_conn *k)
{
    if (!k->l->http)
        return memchr(k->req, '\n', k->len) != NULL;
    k->req[k->len] = '\0';
    return strstr(k->req, "\r\n\r\n") != NULL || strstr(k->req, "\n\n") != NULL;
}

static void answer(struct ctl_conn *k)
{
    struct lp_ctl *c = k->l->c;
    char *line = k->req;

    bool cut = k->len == req_cap(k) && !terminated(k);

    k->req[k->len] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (cut)
        k->answer = k->l->http ? http_reply("400 Bad Request", "request too long\n")
                               : dup_text("error: request too long\n");
    else
        k->answer = k->l->http ? http_answer(c, line) : control_answer(c, line);
    if (k->answer == NULL) {
        conn_free(k);
        return;
    }
    k->alen = strlen(k->answer);
    ev_io_stop(c->rt->loop, &k->io);
    ev_io_init(&k->io, conn_write_cb, k->fd, EV_WRITE);
    ev_io_start(c->rt->loop, &k->io);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct ctl_conn *k = LP_CONTAINER_OF(w, struct ctl_conn, io);
    (void)loop;
    (void)revents;

    ssize_t n = recv(k->fd, k->req + k->len, req_cap(k) - k->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0 || (n == 0 && k->len == 0)) {
        conn_free(k);
        return;
    }
    k->len += (size_t)n;
    if (n == 0 || k->len == req_cap(k) || terminated(k))
        answer(k);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_free(LP_CONTAINER_OF(w, struct ctl_conn, timer));
}

static void accepted(void *user, int fd, const struct lp_addr *peer)
{
    struct ctl_listener *l = user;
    struct lp_ctl *c = l->c;
    struct ctl_conn *k = l->nconns < l->max ? calloc(1, sizeof(*k)) : NULL;
    (void)peer;

    if (k == NULL) { /* busy: closing at once tells the asker, holding would not */
        close(fd);
        return;
    }
    k->l = l;
    k->fd = fd;
    l->nconns++;
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    ev_io_init(&k->io, conn_read_cb, fd, EV_READ);
    ev_io_start(c->rt->loop, &k->io);
    ev_timer_init(&k->timer, conn_timer_cb, LP_CTL_TIMEOUT_MS / 1000.0, 0.);
    ev_timer_start(c->rt->loop, &k->timer);
}

static void listener_start(struct lp_ctl *c, struct ctl_listener *l, int fd, bool http)
{
    l->c = c;
    l->fd = fd;
    l->http = http;
    l->max = http ? LP_METRICS_CONNS_MAX : LP_CTL_CONNS_MAX;
    lp_acceptor_init(&l->acc, c->rt->loop, fd, http ? "the metrics port" : "the control socket",
                     accepted, l);
    l->acc.batch = 16;  /* a few operators' requests, never a flood worth a long turn */
    l->acc.weak = true; /* a listener alone must not keep the loop running */
    lp_acceptor_start(&l->acc);
}

static void listener_stop(struct lp_ctl *c, struct ctl_listener *l)
{
    (void)c;
    if (l->fd < 0)
        return;
    lp_acceptor_stop(&l->acc);
    close(l->fd);
    l->fd = -1;
}

/* ---- the control socket ------------------------------------------------------------------------ */

bool lp_ctl_dir_trusted(const char *dir, char *why, size_t whylen)
{
    struct stat st;

    if (lstat(dir, &st) != 0) {
        snprintf(why, whylen, "%s: %s", dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022) != 0) {
        snprintf(why, whylen,
                 "%s is not a directory owned by this user and closed to others (owner uid %lu, "
                 "mode %04o)",
                 dir, (unsigned long)st.st_uid, (unsigned)(st.st_mode & 07777));
        return false;
    }
    return true;
}

/* A directory only we can use: created 0700 if missing; refused if someone else owns it or
 * others may write into it (they could swap the socket under us). */
static bool private_dir(const char *dir)
{
    char why[PATH_MAX + 128];

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        lp_warn("control socket directory %s: %s; running without a control socket", dir,
                strerror(errno));
        return false;
    }
    if (!lp_ctl_dir_trusted(dir, why, sizeof(why))) {
        lp_warn("control socket directory %s; running without a control socket", why);
        return false;
    }
    return true;
}

static bool fill_sun(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun->sun_path))
        return false;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    return true;
}

/* Someone answers on path: a live process holds it. A refused connect on a socket file is
 * a leftover of a process that died: remove it. */
static bool path_is_live(const char *path)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = false;

    if (fd < 0 || !fill_sun(&sun, path))
        goto out;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
        live = true;
    else if (errno == ECONNREFUSED && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
out:
    if (fd >= 0)
        close(fd);
    return live;
}

/* The control socket the previous binary handed over (upgrade in place): taken when it is
 * bound to path (the same file: a socket file cannot be bound twice), else closed, and its
 * file, which no one will answer on any more, removed. True when taken. */
static bool adopt_control(struct lp_ctl *c, const char *path, int fd)
{
    struct sockaddr_un sun;
    socklen_t len = sizeof(sun);
    struct stat st;

    memset(&sun, 0, sizeof(sun));
    if (getsockname(fd, (struct sockaddr *)&sun, &len) == 0 && sun.sun_family == AF_UNIX &&
        strncmp(sun.sun_path, path, sizeof(sun.sun_path)) == 0 && lstat(path, &st) == 0) {
        snprintf(c->path, sizeof(c->path), "%s", path);
        c->dev = st.st_dev;
        c->ino = st.st_ino;
        listener_start(c, &c->ctl, fd, false);
        lp_info("control socket on %s", path);
        return true;
    }
    if (sun.sun_family == AF_UNIX && sun.sun_path[0] == '/' && lstat(sun.sun_path, &st) == 0 &&
        S_ISSOCK(st.st_mode))
        unlink(sun.sun_path);
    close(fd);
    return false;
}

static void open_control(struct lp_ctl *c, const char *path, int inherited)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd = -1;

    if (inherited >= 0 && adopt_control(c, path, inherited))
        return;
    if (!fill_sun(&sun, path)) {
        lp_warn("control socket path %s is too long; running without a control socket", path);
        return;
    }
    if (path_is_live(path)) {
        lp_warn("control socket %s is in use by another process; running without a control "
                "socket (set control.path to run several)",
                path);
        return;
    }
    mode_t old = umask(0177); /* born 0600: no window in which others may connect */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc != 0 || listen(fd, 8) != 0 || chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
        lp_warn("control socket %s: %s; running without a control socket", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    listener_start(c, &c->ctl, fd, false);
    lp_info("control socket on %s", path);
}

/* ---- the metrics listener ----------------------------------------------------------------------- */

static bool is_loopback(const struct lp_addr *a)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a->sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a->sa;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (memcmp(b, v4mapped, sizeof(v4mapped)) == 0 && b[12] == 127);
    }
    return false;
}

static lp_err open_metrics(struct lp_ctl *c, const struct lp_config *cfg, int inherited)
{
    char host[LP_ADDR_MAX], err[256], name[64];
    uint16_t port;
    struct lp_addr addr;
    int fd;

    if (lp_parse_hostport(cfg->metrics.listen, host, sizeof(host), &port) != LP_OK ||
        lp_net_resolve(host, port, &addr, err, sizeof(err)) != LP_OK) {
        lp_error("metrics.listen %s: not a usable ADDR:PORT", cfg->metrics.listen);
        return LP_ERR_INVALID;
    }
    if (!is_loopback(&addr) && !cfg->metrics.allow_remote) {
        lp_error("metrics.listen %s is not a loopback address; the page has no authentication, "
                 "so set metrics.allow_remote: true to serve it beyond this machine",
                 cfg->metrics.listen);
        return LP_ERR_INVALID;
    }
    if (inherited >= 0 && lp_upgrade_fd_fits(inherited, &addr)) {
        fd = inherited; /* the previous binary's (upgrade in place) */
    } else {
        if (inherited >= 0)
            close(inherited);
        if (lp_net_listen(&addr, &fd, err, sizeof(err)) != LP_OK) {
            lp_error("metrics.listen: %s", err);
            return LP_ERR_INVALID;
        }
    }
    if (lp_net_local_addr(fd, &addr) != LP_OK) { /* the port picked for :0 is unknown */
        lp_error("metrics.listen: cannot read the address bound: %s", strerror(errno));
        close(fd);
        return LP_ERR_INVALID;
    }
    listener_start(c, &c->http, fd, true);
    lp_info("metrics on http://%s/metrics", lp_net_addr_str(&addr, name, sizeof(name)));
    return LP_OK;
}

/* ---- lifetime ---------------------------------------------------------------------------------- */

lp_err lp_ctl_new(struct lp_runtime *rt, const struct lp_config *cfg, const char *role,
                  bool use_default, struct lp_ctl **out)
{
    return lp_ctl_new_on(rt, cfg, role, use_default, -1, -1, out);
}

lp_err lp_ctl_new_on(struct lp_runtime *rt, const struct lp_config *cfg, const char *role,
                     bool use_default, int metrics_fd, int control_fd, struct lp_ctl **out)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
    struct lp_ctl *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        goto nomem;
    c->rt = rt;
    c->ctl.fd = c->http.fd = -1;
    snprintf(c->role, sizeof(c->role), "%s", role);
    if (cfg->metrics.listen[0] && open_metrics(c, cfg, metrics_fd) != LP_OK) {
        metrics_fd = -1; /* taken (used or closed) */
        lp_ctl_free(c);
        if (control_fd >= 0)
            close(control_fd);
        return LP_ERR_INVALID;
    }
    if (!cfg->metrics.listen[0] && metrics_fd >= 0)
        close(metrics_fd);
    if (cfg->control.path[0]) {
        open_control(c, cfg->control.path, control_fd);
    } else if (use_default) {
        lp_ctl_default_path(role, path, sizeof(path));
        *strrchr(path, '/') = '\0';
        bool ok = private_dir(path);
        path[strlen(path)] = '/';
        if (ok)
            open_control(c, path, control_fd);
        else if (control_fd >= 0)
            close(control_fd);
    } else if (control_fd >= 0) {
        close(control_fd);
    }
    *out = c;
    return LP_OK;
nomem:
    if (metrics_fd >= 0)
        close(metrics_fd);
    if (control_fd >= 0)
        close(control_fd);
    return LP_ERR_NOMEM;
}

void lp_ctl_fds(const struct lp_ctl *c, int *metrics_fd, int *control_fd)
{
    *metrics_fd = c ? c->http.fd : -1;
    *control_fd = c ? c->ctl.fd : -1;
}

void lp_ctl_free(struct lp_ctl *c)
{
    struct stat st;

    if (c == NULL)
        return;
    while (c->conns)
        conn_free(c->conns);
    listener_stop(c, &c->http);
    listener_stop(c, &c->ctl);
    /* Only our own socket: after a stale-path takeover elsewhere it may be another's. */
    if (c->path[0] && lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    free(c);
}
