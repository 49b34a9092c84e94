/* reverse.c — -R: the server's listeners for a client's session, and the client's dial of
 * the connections they carry back (see reverse.h). */
#include "limpet/reverse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limpet/accept.h"
#include "limpet/stream.h"
#include "limpet/log.h"
#include "limpet/net.h"

struct lp_rlistener {
    struct lp_session *s;
    struct lp_rlistener *next;
    uint32_t req; /* the bind request id */
    int fd;
    struct lp_acceptor acc;     /* on fd */
    char spec[LP_ADDR_MAX + 8]; /* as the client asked: the target of every REVERSE stream */
    char local[64];             /* what was bound, "ADDR:PORT" / "[V6]:PORT" */
    uint16_t port;              /* the port bound */
};

/* ---- server: BIND ------------------------------------------------------------------------ */

/* "ADDR:PORT" or "[V6]:PORT", ADDR an IP literal or "localhost", PORT 0..65535. */
static bool parse_spec(const char *spec, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(spec, ':');
    const char *h = spec, *end = colon;
    unsigned long v = 0;
    uint8_t bytes[16];

    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5)
        return false;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return false;
    if (*h == '[') {
        if (end - h < 2 || end[-1] != ']')
            return false;
        h++;
        end--;
    }
    if ((size_t)(end - h) + 1 > hostlen || end == h)
        return false;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    if (inet_pton(AF_INET, host, bytes) != 1 && inet_pton(AF_INET6, host, bytes) != 1)
        return false;
    *port = (uint16_t)v;
    return true;
}

static void refuse(struct lp_session *s, uint32_t req, uint16_t code, const char *spec,
                   const char *why)
{
    lp_warn("sess=%s bind=%u %s refused: %s", s->tag, (unsigned)req, spec, why);
    if (lp_mux_bind_fail(s->mux, req, code, why, strlen(why)) != LP_OK)
        lp_session_link_failed(s, "too many bind answers waiting");
}

static size_t listener_count(const struct lp_session *s, uint32_t req, bool *dup)
{
    size_t n = 0;

    *dup = false;
    for (const struct lp_rlistener *l = s->rlisteners; l; l = l->next, n++)
        *dup = *dup || l->req == req;
    return n;
}

static void accepted(void *user, int fd, const struct lp_addr *peer);

static bool allowed(struct lp_session *s, const char *host, uint16_t port)
{
    return s->rt->allow_bind == NULL ||
           s->rt->allow_bind(s->rt->allow_user, s->identity, host, port);
}

/* Listens on host:port for l; the kernel's choice for port 0 is checked against the policy
 * once known. Writes the refusal to why. */
static uint16_t open_listener(struct lp_session *s, struct lp_rlistener *l, const char *host,
                              uint16_t port, char *why, size_t whylen)
{
    struct lp_addr addr;

    if (lp_net_resolve(host, port, &addr, why, whylen) != LP_OK ||
        lp_net_listen(&addr, &l->fd, why, whylen) != LP_OK)
        return LP_RST_UNAVAILABLE;
    if (lp_net_local_addr(l->fd, &addr) != LP_OK) {
        snprintf(why, whylen, "cannot read the address bound: %s", strerror(errno));
        return LP_RST_UNAVAILABLE;
    }
    lp_net_addr_str(&addr, l->local, sizeof(l->local));
    l->port = (uint16_t)strtoul(strrchr(l->local, ':') + 1, NULL, 10);
    if (port == 0 && !allowed(s, host, l->port)) {
        snprintf(why, whylen, "the port picked, %s, is not allowed by the server's policy",
                 l->local);
        return LP_RST_NOT_ALLOWED;
    }
    lp_acceptor_init(&l->acc, s->rt->loop, l->fd, l->local, accepted, l);
    lp_acceptor_start(&l->acc);
    return 0;
}

void lp_reverse_bind(struct lp_session *s, const struct lp_mux_event *ev)
{
    char spec[LP_ADDR_MAX + 8], host[LP_ADDR_MAX], why[320];
    struct lp_rlistener *l;
    uint16_t port, code;
    bool dup;

    snprintf(spec, sizeof(spec), "%.*s", (int)ev->text_len, ev->text ? ev->text : "");
    if (strlen(spec) != ev->text_len || !parse_spec(spec, host, sizeof(host), &port))
        return refuse(s, ev->id, LP_RST_BAD_TARGET, spec, "bind spec is not IP:PORT");
    if (listener_count(s, ev->id, &dup) >= LP_REVERSE_MAX || dup)
        return refuse(s, ev->id, dup ? LP_RST_PROTOCOL : LP_RST_LIMIT, spec,
                      dup ? "bind request id already in use" : "too many -R listeners");
    /* Before anything listens: for port 0, whether any port on host is allowed (the one the
     * kernel picks is checked once known). */
    if (!allowed(s, host, port)) {
        snprintf(why, sizeof(why), "not allowed by the server's policy (identity %s)", s->identity);
        return refuse(s, ev->id, LP_RST_NOT_ALLOWED, spec, why);
    }
    if ((l = calloc(1, sizeof(*l))) == NULL)
        return refuse(s, ev->id, LP_RST_INTERNAL, spec, "out of memory");
    l->s = s;
    l->fd = -1; /* not 0 (stdin), which the failure path below would close */
    l->req = ev->id;
    snprintf(l->spec, sizeof(l->spec), "%s", spec);
    if ((code = open_listener(s, l, host, port, why, sizeof(why))) != 0) {
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        return refuse(s, ev->id, code, spec, why);
    }
    l->next = s->rlisteners;
    s->rlisteners = l;
    lp_info("sess=%s bind=%u reverse forward listening on %s", s->tag, (unsigned)l->req, l->local);
    if (lp_mux_bind_ok(s->mux, l->req, l->port, l->local,
                       (size_t)(strrchr(l->local, ':') - l->local)) != LP_OK)
        lp_session_link_failed(s, "too many bind answers waiting");
    lp_session_dirty(s);
}

/* ---- server: connections --------------------------------------------------------------- */

static void carry(struct lp_rlistener *l, int fd, const char *from)
{
    struct lp_session *s = l->s;
    const struct lp_config *cfg = s->cfg;
    struct lp_stream *st;
    char arg[16], what[96];
    lp_time wait = cfg->forward.connect_timeout;

    if (!lp_session_attached(s)) {
        if (cfg->forward.reverse_wait == 0) {
            lp_info("sess=%s bind=%u connection from %s refused: the client is away", s->tag,
                    (unsigned)l->req, from);
            lp_net_close_reset(fd);
            return;
        }
        wait += cfg->forward.reverse_wait;
    }
    snprintf(arg, sizeof(arg), "%u", (unsigned)l->req);
    snprintf(what, sizeof(what), "bind=%u connection from %s", (unsigned)l->req, from);
    if (!lp_session_stream_room(s, what)) {
        lp_net_close_reset(fd);
        return;
    }
    lp_net_tune_stream(fd);
    if (lp_stream_open_fds(s, fd, fd, LP_KIND_REVERSE, l->spec, arg, wait, NULL, NULL, &st) !=
        LP_OK) {
        lp_net_close_reset(fd);
        return;
    }
    lp_debug("sess=%s bind=%u connection from %s", s->tag, (unsigned)l->req, from);
}

static void accepted(void *user, int fd, const struct lp_addr *peer)
{
    struct lp_rlistener *l = user;
    char from[64];

    carry(l, fd, lp_net_addr_str(peer, from, sizeof(from)));
    lp_session_process(l->s);
}

/* Whether l, as bound, is still allowed: its host and the port it really has. */
static bool listener_allowed(struct lp_rlistener *l)
{
    char host[LP_ADDR_MAX];
    uint16_t port;

    return parse_spec(l->spec, host, sizeof(host), &port) && allowed(l->s, host, l->port);
}

size_t lp_reverse_recheck(struct lp_session *s)
{
    size_t n = 0;

    for (struct lp_rlistener **pp = &s->rlisteners; *pp;) {
        struct lp_rlistener *l = *pp;
        if (listener_allowed(l)) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        lp_acceptor_stop(&l->acc);
        close(l->fd);
        lp_warn("sess=%s bind=%u reverse forward on %s closed: identity %s may no longer listen "
                "there (configuration reloaded)",
                s->tag, (unsigned)l->req, l->local, s->identity);
        free(l);
        n++;
    }
    return n;
}

bool lp_reverse_spec_allowed(struct lp_session *s, const char *spec)
{
    for (struct lp_rlistener *l = s->rlisteners; l; l = l->next)
        if (strcmp(l->spec, spec) == 0)
            return listener_allowed(l);
    return false; /* its listener was closed by lp_reverse_recheck */
}

void lp_reverse_close_all(struct lp_session *s)
{
    while (s->rlisteners) {
        struct lp_rlistener *l = s->rlisteners;
        s->rlisteners = l->next;
        lp_acceptor_stop(&l->acc);
        close(l->fd);
        lp_info("sess=%s bind=%u reverse forward on %s closed", s->tag, (unsigned)l->req, l->local);
        free(l);
    }
}

/* ---- server: upgrade in place -------------------------------------------------------------- */

/* Handed over in list order and restored at the tail, so the order survives any number of
 * upgrades. */
void lp_reverse_each(struct lp_session *s,
                     void (*fn)(void *user, const struct lp_rlistener_image *), void *user)
{
    for (struct lp_rlistener *l = s->rlisteners; l; l = l->next) {
        struct lp_rlistener_image img = {
            .req = l->req, .fd = l->fd, .port = l->port, .spec = l->spec, .local = l->local};
        fn(user, &img);
    }
}

lp_err lp_reverse_restore(struct lp_session *s, const struct lp_rlistener_image *img)
{
    struct lp_rlistener *l = calloc(1, sizeof(*l)), **tail = &s->rlisteners;

    if (l == NULL)
        return LP_ERR_NOMEM;
    l->s = s;
    l->req = img->req;
    l->fd = img->fd;
    l->port = img->port;
    snprintf(l->spec, sizeof(l->spec), "%s", img->spec);
    snprintf(l->local, sizeof(l->local), "%s", img->local);
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    lp_acceptor_init(&l->acc, s->rt->loop, l->fd, l->local, accepted, l);
    lp_acceptor_start(&l->acc);
    return LP_OK;
}

/* ---- client ------------------------------------------------------------------------------ */

void lp_reverse_spec(const struct lp_forward *fw, char *out, size_t len)
{
    if (strchr(fw->bind_host, ':'))
        snprintf(out, len, "[%s]:%u", fw->bind_host, (unsigned)fw->bind_port);
    else
        snprintf(out, len, "%s:%u", fw->bind_host, (unsigned)fw->bind_port);
}

void lp_reverse_target(const struct lp_forward *fw, char *out, size_t len)
{
    if (fw->path[0])
        snprintf(out, len, "unix:%s", fw->path);
    else if (strchr(fw->host, ':'))
        snprintf(out, len, "[%s]:%u", fw->host, (unsigned)fw->port);
    else
        snprintf(out, len, "%s:%u", fw->host, (unsigned)fw->port);
}

void lp_reverse_open(struct lp_session *s, const struct lp_mux_event *ev,
                     const struct lp_forward *fw)
{
    char target[LP_ADDR_MAX + 8];

    if (fw == NULL) {
        lp_warn("sess=%s stream=%u refused: no -R forward for bind %.*s", s->tag, (unsigned)ev->id,
                (int)ev->arg_len, ev->arg ? ev->arg : "");
        lp_mux_reset(s->mux, ev->id, LP_RST_BAD_TARGET, "no such -R forward at the client");
        return;
    }
    lp_reverse_target(fw, target, sizeof(target));
    lp_stream_dial(s, ev->id, target, strlen(target));
}
