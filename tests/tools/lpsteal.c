/* lpsteal.c — one handshake as a chosen PSK identity, for the e2e tests of resume tokens.
 *
 *   lpsteal HOST:PORT --as ID --psk-file FILE [--timeout MS] new
 *   lpsteal HOST:PORT --as ID --psk-file FILE [--timeout MS] resume SESSION_HEX TOKEN_HEX
 *
 * Connects over TCP, runs the TLS-PSK handshake as identity ID with the key in FILE, sends one
 * HELLO (a new session, or a resume of SESSION with TOKEN from rx_seq 0), reads the server's
 * first frame and prints one line on stdout:
 *   welcome session=<32 hex> token=<64 hex> resumed=<0|1> rx_seq=<N>
 *   reject code=<N> name=<NAME> msg=<text, control bytes as \xNN>
 * then closes the link. A new session stays on the server, detached, for session.ttl, so it
 * can be resumed by a later run; rx_seq 0 is a valid resume point as long as nobody opened a
 * stream on the session (the server's sequenced stream is still empty).
 *
 * Exit status: 0 WELCOME, 3 REJECT, 2 the TLS handshake refused the identity or key, 1 any
 * other failure (one line on stderr). Every wait is bounded by --timeout (default 5000 ms).
 *
 * Uses limpet's own pieces (tls, frame, keys, net), so it speaks exactly what the client does.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/platform_util.h>

#include "limpet/hex.h"
#include "limpet/fwdspec.h"
#include "limpet/frame.h"
#include "limpet/keys.h"
#include "limpet/net.h"
#include "limpet/tls.h"
#include "limpet/wire.h"

#define ERR_MAX 512u
#define HOST_MAX 256u

enum exit_status { EXIT_WELCOME = 0, EXIT_FAIL = 1, EXIT_AUTH = 2, EXIT_REJECT = 3 };

struct opts {
    const char *server; /* HOST:PORT */
    const char *identity;
    const char *psk_file;
    bool resume;
    uint8_t session_id[LP_SESSION_ID_LEN];
    uint8_t token[LP_TOKEN_LEN];
    lp_time timeout; /* ms, for each phase's deadline */
};

static void usage(void)
{
    fputs("usage: lpsteal HOST:PORT --as ID --psk-file FILE [--timeout MS] new\n"
          "       lpsteal HOST:PORT --as ID --psk-file FILE [--timeout MS] resume SID TOKEN\n",
          stderr);
}

/* Exactly 2 * n hex digits into out[n]. */
static bool parse_hex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = lp_hex_value((unsigned char)s[2 * i]);
        int lo = lp_hex_value((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool parse_command(char **rest, int nrest, struct opts *o)
{
    if (nrest == 1 && strcmp(rest[0], "new") == 0)
        return true;
    if (nrest != 3 || strcmp(rest[0], "resume") != 0)
        return false;
    o->resume = true;
    if (!parse_hex(rest[1], o->session_id, sizeof(o->session_id)) ||
        !parse_hex(rest[2], o->token, sizeof(o->token))) {
        fputs("lpsteal: SID must be 32 hex digits and TOKEN 64\n", stderr);
        return false;
    }
    return true;
}

static bool parse_args(int argc, char **argv, struct opts *o)
{
    int i = 2;
    char *end = NULL;

    if (argc < 3)
        return false;
    o->server = argv[1];
    o->timeout = 5000;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--as") == 0)
            o->identity = argv[i + 1];
        else if (strcmp(argv[i], "--psk-file") == 0)
            o->psk_file = argv[i + 1];
        else if (strcmp(argv[i], "--timeout") == 0) {
            errno = 0;
            unsigned long v = strtoul(argv[i + 1], &end, 10);
            if (errno || *end || v == 0 || v > 600000)
                return false;
            o->timeout = v;
        } else
            return false;
    }
    if (o->identity == NULL || o->psk_file == NULL)
        return false;
    return parse_command(argv + i, argc - i, o);
}

/* Waits until fd is ready for events or the deadline passes. */
static lp_err wait_fd(int fd, short events, lp_time deadline)
{
    for (int spins = 0; spins < 100000; spins++) {
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
    return LP_ERR_TIMEOUT;
}

/* A connected non-blocking socket to o->server in *fd. */
static lp_err open_link(const struct opts *o, int *fd, char *err, size_t errlen)
{
    char host[HOST_MAX];
    uint16_t port = 0;
    struct lp_addr addr;
    lp_err rc;

    if (lp_parse_hostport(o->server, host, sizeof(host), &port) != LP_OK) {
        snprintf(err, errlen, "bad HOST:PORT %s", o->server);
        return LP_ERR_INVALID;
    }
    if ((rc = lp_net_resolve(host, port, &addr, err, errlen)) != LP_OK ||
        (rc = lp_net_connect(&addr, fd, err, errlen)) != LP_OK)
        return rc;
    if ((rc = wait_fd(*fd, POLLOUT, lp_now() + o->timeout)) != LP_OK) {
        snprintf(err, errlen, "connect to %s: %s", o->server, lp_strerror(rc));
        return rc;
    }
    int e = lp_net_connect_result(*fd);
    if (e != 0) {
        snprintf(err, errlen, "connect to %s: %s", o->server, strerror(e));
        return LP_ERR_IO;
    }
    return LP_OK;
}

static lp_err tls_handshake(lp_tls *t, int fd, lp_time deadline, char *err, size_t errlen)
{
    for (int steps = 0; steps < 10000; steps++) {
        lp_err rc = lp_tls_handshake(t, err, errlen);
        if (rc != LP_ERR_TRUNCATED)
            return rc;
        rc = wait_fd(fd, lp_tls_handshake_wants_write(t) ? POLLOUT : POLLIN, deadline);
        if (rc != LP_OK) {
            snprintf(err, errlen, "TLS handshake: %s", lp_strerror(rc));
            return rc;
        }
    }
    snprintf(err, errlen, "TLS handshake did not finish");
    return LP_ERR_TIMEOUT;
}

static lp_err tls_send_all(lp_tls *t, int fd, const uint8_t *buf, size_t len, lp_time deadline)
{
    size_t off = 0;

    for (int steps = 0; steps < 10000; steps++) {
        lp_err rc = LP_OK;
        if (off == len) {
            rc = lp_tls_flush(t);
            if (rc != LP_ERR_TRUNCATED)
                return rc;
        } else {
            ssize_t n = lp_tls_write(t, buf + off, len - off, &rc);
            if (n > 0) {
                off += (size_t)n;
                continue;
            }
            if (rc != LP_ERR_TRUNCATED)
                return rc;
        }
        if ((rc = wait_fd(fd, POLLOUT, deadline)) != LP_OK)
            return rc;
    }
    return LP_ERR_TIMEOUT;
}

/* Reads until buf holds one whole frame; decodes it into *f (borrowing buf). */
static lp_err read_frame(lp_tls *t, int fd, uint8_t *buf, size_t cap, struct lp_frame *f,
                         lp_time deadline, char *err, size_t errlen)
{
    size_t have = 0, used = 0;
    const char *why = NULL;

    for (int steps = 0; steps < 10000; steps++) {
        lp_err rc = lp_frame_decode(buf, have, f, &used, &why);
        if (rc == LP_OK)
            return LP_OK;
        if (rc != LP_ERR_TRUNCATED || have == cap) {
            snprintf(err, errlen, "bad frame from the server: %s", why ? why : "too long");
            return LP_ERR_MALFORMED;
        }
        ssize_t n = lp_tls_read(t, buf + have, cap - have, &rc);
        if (n > 0) {
            have += (size_t)n;
            continue;
        }
        if (n == 0) {
            snprintf(err, errlen, "the server closed the link after %zu bytes", have);
            return LP_ERR_CLOSED;
        }
        if (rc == LP_ERR_TRUNCATED)
            rc = wait_fd(fd, POLLIN, deadline);
        if (rc != LP_OK) {
            snprintf(err, errlen, "reading the answer: %s", lp_strerror(rc));
            return rc;
        }
    }
    snprintf(err, errlen, "no whole frame from the server");
    return LP_ERR_TIMEOUT;
}

static void print_hex(const char *label, const uint8_t *b, size_t n)
{
    printf("%s=", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
}

/* Prints the one result line; returns the exit status. */
static int report(const struct lp_frame *f, char *err, size_t errlen)
{
    const char *why = NULL;
    struct lp_welcome w;
    struct lp_text r;

    if (f->type == LP_FT_WELCOME && lp_welcome_decode(f, &w, &why) == LP_OK) {
        printf("welcome ");
        print_hex("session", w.session_id, sizeof(w.session_id));
        print_hex(" token", w.token, sizeof(w.token));
        printf(" resumed=%d rx_seq=%" PRIu64 "\n", (w.flags & LP_WELCOME_RESUMED) != 0, w.rx_seq);
        return EXIT_WELCOME;
    }
    if (f->type == LP_FT_REJECT && lp_text_decode(f, &r, &why) == LP_OK) {
        printf("reject code=%u name=%s msg=", (unsigned)r.code, lp_reject_code_name(r.code));
        for (size_t i = 0; i < r.msg_len; i++) {
            uint8_t c = r.msg[i];
            if (c < 0x20 || c == 0x7f || c == '\\')
                printf("\\x%02x", c);
            else
                putchar(c);
        }
        putchar('\n');
        return EXIT_REJECT;
    }
    snprintf(err, errlen, "unexpected %s frame from the server%s%s", lp_frame_type_name(f->type),
             why ? ": " : "", why ? why : "");
    return EXIT_FAIL;
}

/* Handshakes, sends the HELLO and prints the answer; returns the exit status. */
static int run(const struct opts *o, lp_tls_conf *conf, int fd, char *err, size_t errlen)
{
    static uint8_t buf[LP_FRAME_MAX];
    lp_time deadline = lp_now() + o->timeout;
    struct lp_hello hello = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION};
    struct lp_frame f;
    lp_tls *t = NULL;
    int status = EXIT_FAIL;
    lp_err rc;

    if (lp_tls_new(conf, fd, &t) != LP_OK) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if ((rc = tls_handshake(t, fd, deadline, err, errlen)) != LP_OK) {
        status = rc == LP_ERR_AUTH ? EXIT_AUTH : EXIT_FAIL;
        goto out;
    }
    if (o->resume) {
        memcpy(hello.session_id, o->session_id, sizeof(hello.session_id));
        memcpy(hello.token, o->token, sizeof(hello.token));
    }
    size_t n = lp_hello_encode(buf, sizeof(buf), &hello);
    mbedtls_platform_zeroize(hello.token, sizeof(hello.token));
    if (n == 0 || (rc = tls_send_all(t, fd, buf, n, deadline)) != LP_OK) {
        snprintf(err, errlen, "sending HELLO: %s", n == 0 ? "cannot encode" : lp_strerror(rc));
        goto out;
    }
    if (read_frame(t, fd, buf, sizeof(buf), &f, deadline, err, errlen) == LP_OK)
        status = report(&f, err, errlen);
out:
    lp_tls_free(t);
    return status;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    uint8_t key[LP_PSK_LEN];
    char err[ERR_MAX] = "";
    lp_tls_conf *conf = NULL;
    int fd = -1, status = EXIT_FAIL;

    if (!parse_args(argc, argv, &o)) {
        usage();
        return EXIT_FAIL;
    }
    if (lp_psk_load(o.psk_file, key, err, sizeof(err)) != LP_OK)
        goto out;
    lp_err rc = lp_tls_conf_client_psk(o.identity, key, &conf, err, sizeof(err));
    mbedtls_platform_zeroize(key, sizeof(key));
    if (rc != LP_OK || open_link(&o, &fd, err, sizeof(err)) != LP_OK)
        goto out;
    status = run(&o, conf, fd, err, sizeof(err));
    fflush(stdout);
out:
    if (status != EXIT_WELCOME && status != EXIT_REJECT)
        fprintf(stderr, "lpsteal: %s\n", err[0] ? err : "failed");
    if (fd >= 0)
        close(fd);
    lp_tls_conf_free(conf);
    mbedtls_platform_zeroize(o.token, sizeof(o.token));
    return status;
}
