/* stdio.c — `limpet stdio`: stdin/stdout joined to one stream (see stdio.h). */
#include "limpet/stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "limpet/stream.h"
#include "limpet/log.h"

struct lp_stdio {
    const struct lp_config *cfg;
    const char *target;
    struct lp_client *c; /* set just after lp_client_new; start runs before it */
    int saved_in, saved_out;
    int pending_code; /* the stream ended before the client was known: finish with this */
    bool ended;
};

void lp_stdio_nonblock(int fd, int *saved)
{
    int fl = fcntl(fd, F_GETFL);
    *saved = -1;
    if (fl < 0 || (fl & O_NONBLOCK))
        return;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
        *saved = fl;
}

void lp_stdio_restore(int fd, int saved)
{
    /* stdin may be a terminal shared with the shell: leaving it non-blocking would break
     * the next program that reads it. */
    if (saved >= 0)
        fcntl(fd, F_SETFL, saved);
}

static void finish(struct lp_stdio *io, int code)
{
    if (io->c)
        lp_client_finish(io->c, code);
    else
        io->pending_code = code;
}

static void on_ended(struct lp_stream *st, uint16_t code, const char *why, void *user)
{
    struct lp_stdio *io = user;
    (void)st;
    io->ended = true;
    if (code == 0) {
        lp_debug("stdio %s: closed", io->target);
        finish(io, 0);
        return;
    }
    if (code == LP_RST_SESSION_LOST || code == LP_RST_SHUTDOWN)
        return; /* lost() or the shutdown path says what happened */
    lp_error("stdio %s: %s: %s", io->target, lp_rst_code_name(code), why);
    finish(io, code == LP_RST_NOT_ALLOWED ? 2 : 1);
}

/* The far end closed: everything it sent is on stdout and stdout is closed. Like ssh -W,
 * that ends us (0), even while stdin is still open; what we sent before is delivered first,
 * since GOODBYE follows it in the session. */
static void on_fin(struct lp_stream *st, void *user)
{
    struct lp_stdio *io = user;
    struct lp_session *s = lp_stream_session(st);

    lp_debug("stdio %s: the far end closed", io->target);
    /* We end now, and GOODBYE closes the stream at the far end in any case: a FIN the mux
     * refuses (it no longer holds the stream) changes nothing the user sees. */
    lp_err rc = lp_mux_shutdown(s->mux, lp_stream_id(st));
    if (rc != LP_OK)
        lp_debug("stdio %s: no FIN sent: %s", io->target, lp_strerror(rc));
    lp_session_dirty(s);
    finish(io, 0);
}

static const struct lp_stream_hooks stdio_hooks = {.ended = on_ended, .fin = on_fin};

/* The fd the stream takes. A pipe or socket is handed over as it is: the stream closes it
 * when its direction ends, which is the EOF the program on the other side sees. A terminal
 * is shared with the shell, so the stream gets a copy and fd 0/1 stay open until exit to
 * put the terminal back in blocking mode. */
static int stream_fd(int fd, int *saved)
{
    *saved = -1;
    if (!isatty(fd)) {
        int ignored;
        lp_stdio_nonblock(fd, &ignored);
        return fd;
    }
    int copy = dup(fd);
    if (copy < 0)
        return -1;
    lp_stdio_nonblock(copy, saved);
    return copy;
}

static void on_start(void *user, struct lp_session *s)
{
    struct lp_stdio *io = user;
    struct lp_stream *st;
    int rfd = stream_fd(STDIN_FILENO, &io->saved_in);
    int wfd = stream_fd(STDOUT_FILENO, &io->saved_out);

    if (rfd < 0 || wfd < 0) {
        lp_error("stdio: cannot use stdin/stdout: %s", strerror(errno));
        finish(io, 1);
        return;
    }
    if (lp_stream_open_fds(s, rfd, wfd, LP_KIND_STDIO, io->target, NULL,
                           io->cfg->forward.connect_timeout, &stdio_hooks, io, &st) != LP_OK)
        finish(io, 1);
}

static void on_lost(void *user, int code, const char *why)
{
    struct lp_stdio *io = user;
    lp_error("stdio %s: session lost: %s", io->target, why);
    finish(io, code);
}

static const struct lp_client_app stdio_app = {.start = on_start, .lost = on_lost};

const struct lp_client_app *lp_stdio_app(void)
{
    return &stdio_app;
}

lp_err lp_stdio_new(const struct lp_config *cfg, const char *target, struct lp_stdio **out)
{
    struct lp_stdio *io = calloc(1, sizeof(*io));

    *out = io;
    if (io == NULL)
        return LP_ERR_NOMEM;
    io->cfg = cfg;
    io->target = target;
    io->saved_in = io->saved_out = -1;
    io->pending_code = -1;
    return LP_OK;
}

void lp_stdio_set_client(struct lp_stdio *io, struct lp_client *c)
{
    io->c = c;
    if (io->pending_code >= 0)
        lp_client_finish(c, io->pending_code);
}

void lp_stdio_free(struct lp_stdio *io)
{
    if (io == NULL)
        return;
    lp_stdio_restore(STDIN_FILENO, io->saved_in);
    lp_stdio_restore(STDOUT_FILENO, io->saved_out);
    free(io);
}
