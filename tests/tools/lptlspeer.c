/* lptlspeer.c — limpet's TLS code (mbedTLS handshake, then the records of the configured
 * layer) as a bare TLS peer, for the interop tests against stock TLS stacks (openssl s_server
 * and s_client, tests/e2e/test_tls_interop.py).
 *
 *   lptlspeer connect HOST:PORT | listen PORT
 *             (--psk ID:FILE | --cert CRT:KEY --pin FINGERPRINT) [--layer openssl|mbedtls]
 *             --send FILE --expect N --out FILE [--timeout MS]
 *
 * Handshakes as a client (connect) or as the server of one connection (listen; PORT 0 picks
 * one; "port N" is printed on stdout once listening), prints
 *   handshake suite=SUITE layer=openssl|mbedtls
 * on stdout, then at once sends FILE and reads until N bytes came, written to --out. Then it
 * closes the link with close_notify and prints "done sent=S received=R". With --psk, FILE holds
 * the key (as `limpet keygen psk` writes it) and ID is the identity (the server accepts only
 * that one). With --cert, the peer's certificate must have FINGERPRINT ("sha256:..."), as
 * limpet pins it. Exit status: 0 when all went both ways, 2 the handshake refused the peer,
 * 1 anything else (one line on stderr). Every wait is bounded by --timeout (default 20 s).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/platform_util.h>

#include "limpet/base.h"
#include "limpet/cli.h"
#include "limpet/keys.h"
#include "limpet/net.h"
#include "limpet/tls.h"

#define ERR_MAX 512u
#define CHUNK (64u * 1024u)

struct opts {
    bool listen;
    const char *where; /* HOST:PORT or PORT */
    char identity[LP_TLS_IDENTITY_MAX + 1];
    const char *psk_file;
    char crt[512], key[512];
    const char *pin;
    enum lp_tls_layer layer;
    const char *send_path, *out_path;
    size_t expect;
    lp_time timeout;
};

static uint8_t g_psk[LP_TLS_PSK_LEN];
static uint8_t g_pin[LP_TLS_FP_LEN];
static const char *g_identity;

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "lptlspeer: %s: %s\n", what, why);
    return 1;
}

static bool split(const char *s, char *a, size_t alen, char *b, size_t blen)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= alen || strlen(colon + 1) >= blen)
        return false;
    memcpy(a, s, (size_t)(colon - s));
    a[colon - s] = '\0';
    snprintf(b, blen, "%s", colon + 1);
    return true;
}

static bool parse_opt(struct opts *o, const char *k, const char *v)
{
    char tmp[512];
    char *end;

    if (strcmp(k, "--psk") == 0) {
        if (!split(v, o->identity, sizeof(o->identity), tmp, sizeof(tmp)))
            return false;
        o->psk_file = strchr(v, ':') + 1; /* split found it */
        return true;
    }
    if (strcmp(k, "--cert") == 0)
        return split(v, o->crt, sizeof(o->crt), o->key, sizeof(o->key));
    if (strcmp(k, "--pin") == 0)
        return (o->pin = v) != NULL;
    if (strcmp(k, "--layer") == 0) {
        o->layer = strcmp(v, "mbedtls") == 0 ? LP_TLS_LAYER_MBEDTLS : LP_TLS_LAYER_OPENSSL;
        return strcmp(v, "mbedtls") == 0 || strcmp(v, "openssl") == 0;
    }
    if (strcmp(k, "--send") == 0)
        return (o->send_path = v) != NULL;
    if (strcmp(k, "--out") == 0)
        return (o->out_path = v) != NULL;
    if (strcmp(k, "--expect") == 0 || strcmp(k, "--timeout") == 0) {
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || end == v)
            return false;
        if (k[2] == 'e')
            o->expect = (size_t)n;
        else
            o->timeout = n;
        return true;
    }
    return false;
}

static bool parse_args(int argc, char **argv, struct opts *o)
{
    if (argc < 3 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "listen") != 0))
        return false;
    o->listen = strcmp(argv[1], "listen") == 0;
    o->where = argv[2];
    o->timeout = 20000;
    for (int i = 3; i + 1 < argc; i += 2)
        if (!parse_opt(o, argv[i], argv[i + 1]))
            return false;
    return (argc - 3) % 2 == 0 && o->send_path && o->out_path &&
           ((o->psk_file != NULL) != (o->crt[0] != '\0')) && (!o->crt[0] || o->pin);
}

static bool psk_lookup(void *user, const char *identity, uint8_t key[LP_TLS_PSK_LEN])
{
    (void)user;
    if (strcmp(identity, g_identity) != 0)
        return false;
    memcpy(key, g_psk, LP_TLS_PSK_LEN);
    return true;
}

static bool fp_lookup(void *user, const uint8_t fp[LP_TLS_FP_LEN])
{
    (void)user;
    return memcmp(fp, g_pin, LP_TLS_FP_LEN) == 0;
}

static lp_err make_conf(const struct opts *o, lp_tls_conf **conf, char *err, size_t errlen)
{
    const char *why = NULL;
    lp_err rc;

    if (o->psk_file) {
        if ((rc = lp_psk_load(o->psk_file, g_psk, err, errlen)) != LP_OK)
            return rc;
        g_identity = o->identity;
        rc = o->listen ? lp_tls_conf_server_psk(psk_lookup, NULL, conf, err, errlen)
                       : lp_tls_conf_client_psk(o->identity, g_psk, conf, err, errlen);
    } else {
        if (lp_fingerprint_parse(o->pin, g_pin, &why) != LP_OK) {
            snprintf(err, errlen, "--pin: %s", why ? why : "malformed");
            return LP_ERR_INVALID;
        }
        rc = o->listen ? lp_tls_conf_server_cert(o->crt, o->key, fp_lookup, NULL, conf, err, errlen)
                       : lp_tls_conf_client_cert(o->crt, o->key, g_pin, conf, err, errlen);
    }
    if (rc == LP_OK)
        lp_tls_conf_set_record_layer(*conf, o->layer);
    return rc;
}

static lp_err wait_fd(int fd, short events, lp_time deadline)
{
    for (;;) {
        lp_time now = lp_now();
        if (now >= deadline)
            return LP_ERR_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)LP_MIN(deadline - now, (lp_time)1000));
        if (n > 0)
            return LP_OK;
        if (n < 0 && errno != EINTR)
            return LP_ERR_IO;
    }
}

static int dial(const struct opts *o, lp_time deadline, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    struct lp_addr addr;
    int fd = -1;

    if (lp_parse_hostport(o->where, host, sizeof(host), &port) != LP_OK) {
        snprintf(err, errlen, "bad HOST:PORT %s", o->where);
        return -1;
    }
    if (lp_net_resolve(host, port, &addr, err, errlen) != LP_OK)
        return -1;
    /* The peer may still be starting (openssl s_server binds a moment after it runs): retry
     * a refused connect until the deadline. */
    while (lp_now() < deadline) {
        int e = -1;
        if (lp_net_connect(&addr, &fd, err, errlen) != LP_OK)
            return -1;
        if (wait_fd(fd, POLLOUT, deadline) == LP_OK && (e = lp_net_connect_result(fd)) == 0)
            return fd;
        close(fd);
        fd = -1;
        snprintf(err, errlen, "connect to %s: %s", o->where, e > 0 ? strerror(e) : "timed out");
        usleep(50000);
    }
    return -1;
}

/* Listens on 127.0.0.1:PORT, says which port, takes the first connection. */
static int accept_one(const struct opts *o, lp_time deadline, char *err, size_t errlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    char *end;
    unsigned long port = strtoul(o->where, &end, 10);
    int one = 1, fd = -1, lfd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (*end || port > 65535 || lfd < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0) {
        snprintf(err, errlen, "listen on 127.0.0.1:%s: %s", o->where, strerror(errno));
        goto out;
    }
    printf("port %u\n", (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    if (wait_fd(lfd, POLLIN, deadline) != LP_OK || (fd = accept(lfd, NULL, NULL)) < 0) {
        snprintf(err, errlen, "no connection within the timeout");
        goto out;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "fcntl: %s", strerror(errno));
        close(fd);
        fd = -1;
    }
out:
    if (lfd >= 0)
        close(lfd);
    return fd;
}

static lp_err handshake(lp_tls *t, int fd, lp_time deadline, char *err, size_t errlen)
{
    for (;;) {
        lp_err rc = lp_tls_handshake(t, err, errlen);
        if (rc != LP_ERR_TRUNCATED)
            return rc;
        if ((rc = wait_fd(fd, lp_tls_handshake_wants_write(t) ? POLLOUT : POLLIN, deadline)) !=
            LP_OK) {
            snprintf(err, errlen, "TLS handshake: %s", lp_strerror(rc));
            return rc;
        }
    }
}

struct xfer {
    const uint8_t *out; /* what to send */
    size_t out_len, sent;
    uint8_t *in; /* what came */
    size_t expect, got;
};

/* Sends and receives at once until both are done. */
static lp_err exchange(lp_tls *t, int fd, struct xfer *x, lp_time deadline, char *err,
                       size_t errlen)
{
    while (x->got < x->expect || x->sent < x->out_len || lp_tls_wants_write(t)) {
        lp_err rc = LP_OK;
        while (x->sent < x->out_len) {
            ssize_t n = lp_tls_write(t, x->out + x->sent, x->out_len - x->sent, &rc);
            if (n <= 0)
                break;
            x->sent += (size_t)n;
        }
        if (rc == LP_OK || rc == LP_ERR_TRUNCATED)
            rc = lp_tls_flush(t);
        if (rc != LP_OK && rc != LP_ERR_TRUNCATED) {
            snprintf(err, errlen, "write: %s", lp_tls_error(t));
            return rc;
        }
        while (x->got < x->expect) {
            ssize_t n = lp_tls_read(t, x->in + x->got, x->expect - x->got, &rc);
            if (n > 0) {
                x->got += (size_t)n;
                continue;
            }
            if (n == 0) {
                snprintf(err, errlen, "the peer closed after %zu of %zu bytes", x->got, x->expect);
                return LP_ERR_CLOSED;
            }
            if (rc != LP_ERR_TRUNCATED) {
                snprintf(err, errlen, "read: %s", lp_tls_error(t));
                return rc;
            }
            break;
        }
        if (x->got == x->expect && x->sent == x->out_len && !lp_tls_wants_write(t))
            break;
        short ev = (x->got < x->expect ? POLLIN : 0) |
                   (lp_tls_wants_write(t) || x->sent < x->out_len ? POLLOUT : 0);
        if (!lp_tls_pending(t) && (rc = wait_fd(fd, ev, deadline)) != LP_OK) {
            snprintf(err, errlen, "stuck: sent %zu of %zu, got %zu of %zu", x->sent, x->out_len,
                     x->got, x->expect);
            return rc;
        }
    }
    return LP_OK;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;

    if (f == NULL || fstat(fileno(f), &st) != 0 || (buf = malloc((size_t)st.st_size + 1)) == NULL ||
        fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        buf = NULL;
    } else {
        *len = (size_t)st.st_size;
    }
    if (f)
        fclose(f);
    return buf;
}

static bool write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    return ok;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    struct xfer x = {0};
    char err[ERR_MAX] = "";
    lp_tls_conf *conf = NULL;
    lp_tls *t = NULL;
    int fd = -1, status = 1;

    if (!parse_args(argc, argv, &o)) {
        fputs("usage: lptlspeer connect HOST:PORT | listen PORT\n"
              "         (--psk ID:FILE | --cert CRT:KEY --pin FINGERPRINT)"
              " [--layer openssl|mbedtls]\n"
              "         --send FILE --expect N --out FILE [--timeout MS]\n",
              stderr);
        return 1;
    }
    lp_time deadline = lp_now() + o.timeout;
    if ((x.out = read_file(o.send_path, &x.out_len)) == NULL)
        return fail(o.send_path, "cannot read");
    x.expect = o.expect;
    if ((x.in = malloc(x.expect + 1)) == NULL)
        return fail("memory", "out of memory");
    if (make_conf(&o, &conf, err, sizeof(err)) != LP_OK) {
        fail("configuration", err);
        goto out;
    }
    fd = o.listen ? accept_one(&o, deadline, err, sizeof(err))
                  : dial(&o, deadline, err, sizeof(err));
    if (fd < 0 || lp_tls_new(conf, fd, &t) != LP_OK) {
        fail("socket", err[0] ? err : "out of memory");
        goto out;
    }
    lp_err rc = handshake(t, fd, deadline, err, sizeof(err));
    if (rc != LP_OK) {
        fail("handshake", err);
        status = rc == LP_ERR_AUTH ? 2 : 1;
        goto out;
    }
    printf("handshake suite=%s layer=%s\n", lp_tls_suite(t), lp_tls_record_layer(t));
    fflush(stdout);
    if (exchange(t, fd, &x, deadline, err, sizeof(err)) != LP_OK) {
        fail("exchange", err);
        goto out;
    }
    if (!write_file(o.out_path, x.in, x.got)) {
        fail(o.out_path, "cannot write");
        goto out;
    }
    printf("done sent=%zu received=%zu\n", x.sent, x.got);
    status = 0;
out:
    lp_tls_free(t); /* close_notify, unless the link broke */
    if (fd >= 0)
        close(fd);
    lp_tls_conf_free(conf);
    mbedtls_platform_zeroize(g_psk, sizeof(g_psk));
    free((void *)x.out);
    free(x.in);
    return status;
}
