/* link.c — plain or TLS byte transport under a session. See link.h. */
#include "limpet/link.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void lp_link_init(struct lp_link *l)
{
    l->fd = -1;
    l->tls = NULL;
    l->err[0] = '\0';
}

void lp_link_set(struct lp_link *l, int fd, lp_tls *tls)
{
    l->fd = fd;
    l->tls = tls;
    l->err[0] = '\0';
}

void lp_link_move(struct lp_link *to, struct lp_link *from)
{
    *to = *from;
    lp_link_init(from);
}

bool lp_link_open(const struct lp_link *l)
{
    return l->fd >= 0;
}

static ssize_t failed(struct lp_link *l, lp_err *rc, const char *what)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        *rc = LP_ERR_TRUNCATED;
    } else {
        *rc = LP_ERR_IO;
        snprintf(l->err, sizeof(l->err), "%s: %s", what, strerror(errno));
    }
    return -1;
}

ssize_t lp_link_read(struct lp_link *l, void *buf, size_t len, lp_err *rc)
{
    ssize_t n;

    if (l->tls) {
        n = lp_tls_read(l->tls, buf, len, rc);
        if (n < 0 && *rc != LP_ERR_TRUNCATED)
            snprintf(l->err, sizeof(l->err), "TLS read failed: %s", lp_tls_error(l->tls));
        else if (n == 0 && lp_tls_error(l->tls)[0])
            snprintf(l->err, sizeof(l->err), "%s", lp_tls_error(l->tls));
        return n;
    }
    do {
        n = recv(l->fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? n : failed(l, rc, "recv");
}

ssize_t lp_link_write(struct lp_link *l, const void *buf, size_t len, lp_err *rc)
{
    ssize_t n;

    if (l->tls) {
        n = lp_tls_write(l->tls, buf, len, rc);
        if (n < 0 && *rc != LP_ERR_TRUNCATED)
            snprintf(l->err, sizeof(l->err), "TLS write failed: %s", lp_tls_error(l->tls));
        return n;
    }
    do {
        n = send(l->fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n >= 0 ? n : failed(l, rc, "send");
}

lp_err lp_link_flush(struct lp_link *l)
{
    lp_err rc = l->tls ? lp_tls_flush(l->tls) : LP_OK;
    if (rc != LP_OK && rc != LP_ERR_TRUNCATED)
        snprintf(l->err, sizeof(l->err), "TLS write failed: %s", lp_tls_error(l->tls));
    return rc;
}

bool lp_link_pending(const struct lp_link *l)
{
    return l->tls != NULL && lp_tls_pending(l->tls);
}

bool lp_link_wants_write(const struct lp_link *l)
{
    return l->tls != NULL && lp_tls_wants_write(l->tls);
}

void lp_link_describe(const struct lp_link *l, char *out, size_t len)
{
    if (l->tls == NULL)
        snprintf(out, len, "plain TCP");
    else
        snprintf(out, len, "%s, records by %s", lp_tls_suite(l->tls), lp_tls_record_layer(l->tls));
}

void lp_link_close(struct lp_link *l)
{
    lp_tls_free(l->tls);
    if (l->fd >= 0)
        close(l->fd);
    lp_link_init(l);
}
