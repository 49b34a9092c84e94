/* child.c — an MCP server process and its three pipes (see child.h). */
#include "limpet/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "limpet/jsonrpc.h"
#include "limpet/log.h"
#include "limpet/streamq.h"

extern char **environ;

#define TAIL_MAX LP_CHILD_TAIL_MAX
#define TAIL_LINES 3 /* lines of it quoted there */
#define READ_CHUNK 65536u

struct lp_child {
    struct ev_loop *loop;
    const struct lp_child_hooks *hooks;
    void *user;
    char tag[200];
    pid_t pid;
    int in_fd, out_fd, err_fd;
    ev_io in_w, out_w, err_w;
    ev_child exit_w;
    ev_timer stop_t;
    struct lp_lines out_lines;
    struct lp_streamq inq;
    char tail[TAIL_MAX]; /* the last bytes of stderr, a ring */
    size_t tail_len, tail_pos;
    char err_line[512]; /* the stderr line being read, for the debug log */
    size_t err_line_len;
    int stop_step; /* 0 running, 1 stdin closed, 2 SIGTERM sent, 3 SIGKILL sent */
    lp_time grace;
    bool exited, out_eof, paused, reported, was_full;
    int status;
};

/* ---- spawning ----------------------------------------------------------------------------- */

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

/* What an MCP server process inherits from the server's environment: only these, each as the
 * server has it (or the fallback). Everything else the server was started with (tokens,
 * credentials, NOTIFY_SOCKET, ...) stays out; sv->env adds what a server needs. */
static const char *const inherited[] = {"PATH", "HOME", "LANG"};
static const char *const fallback[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL, "LANG=C.UTF-8"};

static const char *environ_entry(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; environ[i]; i++)
        if (strncmp(environ[i], name, n) == 0 && environ[i][n] == '=')
            return environ[i];
    return NULL;
}

static bool configured(const struct lp_mcp_server *sv, const char *name)
{
    size_t n = strlen(name);
    for (size_t j = 0; j < sv->n_env; j++)
        if (strncmp(sv->env[j], name, n) == 0 && sv->env[j][n] == '=')
            return true;
    return false;
}

/* PATH, HOME and LANG, then sv->env (which replaces any of them). Returns an owned array of
 * borrowed strings, or NULL. */
static char **make_env(const struct lp_mcp_server *sv)
{
    size_t n = sizeof(inherited) / sizeof(inherited[0]), k = 0;
    char **env = calloc(n + sv->n_env + 1, sizeof(*env));

    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ_entry(inherited[i]);
        if (configured(sv, inherited[i]))
            continue;
        if (e == NULL)
            e = fallback[i];
        if (e != NULL)
            env[k++] = (char *)e; /* posix_spawn's type; never written */
    }
    for (size_t j = 0; j < sv->n_env; j++)
        env[k++] = sv->env[j];
    env[k] = NULL;
    return env;
}

static char **make_argv(const struct lp_mcp_server *sv)
{
    char **argv = calloc(sv->n_args + 2, sizeof(*argv));
    if (argv == NULL)
        return NULL;
    argv[0] = sv->command;
    for (size_t i = 0; i < sv->n_args; i++)
        argv[i + 1] = sv->args[i];
    return argv;
}

/* posix_spawnp in a new process group, pipes on 0/1/2, default signal dispositions (we
 * ignore SIGPIPE; the server must not inherit that), in sv->cwd. */
static int spawn(const struct lp_mcp_server *sv, int pin[2], int pout[2], int perr[2], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    char **argv = make_argv(sv), **env = make_env(sv);
    int rc = ENOMEM;

    if (argv == NULL || env == NULL)
        goto out_mem;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, pin[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pout[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, perr[1], STDERR_FILENO);
    if (sv->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, sv->cwd);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(pid, sv->command, &fa, &at, argv, env);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
out_mem:
    free(argv);
    free(env);
    return rc;
}

static void in_cb(struct ev_loop *loop, ev_io *w, int revents);
static void out_cb(struct ev_loop *loop, ev_io *w, int revents);
static void err_cb(struct ev_loop *loop, ev_io *w, int revents);
static void exit_cb(struct ev_loop *loop, ev_child *w, int revents);
static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents);

lp_err lp_child_spawn(struct ev_loop *loop, const struct lp_mcp_server *sv, size_t max_line,
                      const char *tag, const struct lp_child_hooks *hooks, void *user,
                      struct lp_child **out, char *err, size_t errlen)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    struct lp_child *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return LP_ERR_NOMEM;
    }
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    if ((rc = spawn(sv, pin, pout, perr, &c->pid)) != 0) {
        snprintf(err, errlen, "cannot run %s: %s", sv->command, strerror(rc));
        goto fail;
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    c->in_fd = pin[1];
    c->out_fd = pout[0];
    c->err_fd = perr[0];
    fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    c->loop = loop;
    c->hooks = hooks;
    c->user = user;
    snprintf(c->tag, sizeof(c->tag), "%s", tag);
    lp_lines_init(&c->out_lines, max_line);
    lp_streamq_init(&c->inq);
    ev_io_init(&c->in_w, in_cb, c->in_fd, EV_WRITE);
    ev_io_init(&c->out_w, out_cb, c->out_fd, EV_READ);
    ev_io_init(&c->err_w, err_cb, c->err_fd, EV_READ);
    ev_child_init(&c->exit_w, exit_cb, c->pid, 0);
    ev_timer_init(&c->stop_t, stop_cb, 0., 0.);
    ev_io_start(loop, &c->out_w);
    ev_io_start(loop, &c->err_w);
    ev_child_start(loop, &c->exit_w);
    *out = c;
    return LP_OK;
fail:
    close_pair(pin);
    close_pair(pout);
    close_pair(perr);
    free(c);
    return LP_ERR_IO;
}

pid_t lp_child_pid(const struct lp_child *c)
{
    return c->pid;
}

/* ---- the end ------------------------------------------------------------------------------ */

/* "exited with status 7; stderr: a | b | c" */
static void describe(const struct lp_child *c, char *why, size_t len)
{
    char tail[TAIL_MAX + 1], *lines[TAIL_LINES];
    size_t n = 0, start = c->tail_len < TAIL_MAX ? 0 : c->tail_pos;
    int w, k = 0;

    for (size_t i = 0; i < c->tail_len; i++) {
        char ch = c->tail[(start + i) % TAIL_MAX];
        tail[n++] = (ch == '\t' || (unsigned char)ch >= 0x20) ? ch : (ch == '\n' ? '\n' : '?');
    }
    while (n > 0 && tail[n - 1] == '\n')
        n--;
    tail[n] = '\0';
    if (WIFEXITED(c->status))
        w = snprintf(why, len, "exited with status %d", WEXITSTATUS(c->status));
    else
        w = snprintf(why, len, "killed by signal %d", WTERMSIG(c->status));
    /* The last TAIL_LINES lines, oldest first. */
    for (char *p = tail + n; p > tail && k < TAIL_LINES;) {
        char *nl = p - 1;
        while (nl > tail && *nl != '\n')
            nl--;
        lines[k++] = *nl == '\n' ? nl + 1 : nl;
        *nl = *nl == '\n' ? '\0' : *nl;
        p = nl;
    }
    for (int i = k - 1; i >= 0 && w > 0 && (size_t)w < len; i--)
        w +=
            snprintf(why + w, len - (size_t)w, "%s%s", i == k - 1 ? "; stderr: " : " | ", lines[i]);
}

static void report(struct lp_child *c)
{
    char why[768];

    if (c->reported || !c->exited || !c->out_eof)
        return;
    c->reported = true;
    ev_timer_stop(c->loop, &c->stop_t);
    describe(c, why, sizeof(why));
    /* Whatever the leader left behind in its group goes with it. */
    kill(-c->pid, SIGTERM);
    c->hooks->exited(c->user, c->status, why); /* may free c */
}

static bool read_out(struct lp_child *c);

static void out_done(struct lp_child *c)
{
    const uint8_t *line;
    size_t len;

    ev_io_stop(c->loop, &c->out_w);
    if (!c->out_eof && lp_lines_finish(&c->out_lines, &line, &len) == LP_LINE_OK)
        c->hooks->line(c->user, line, len);
    c->out_eof = true;
}

static void exit_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct lp_child *c = LP_CONTAINER_OF(w, struct lp_child, exit_w);
    (void)revents;
    ev_child_stop(loop, w);
    c->exited = true;
    c->status = w->rstatus;
    /* A grandchild may still hold stdout open: take what is there now, then report. */
    c->paused = false;
    read_out(c);
    out_done(c);
    report(c); /* last: it may free c */
}

/* ---- stdout and stderr ---------------------------------------------------------------------- */

static lp_err out_piece(void *user, const uint8_t *line, size_t len)
{
    struct lp_child *c = user;
    if (line)
        c->hooks->line(c->user, line, len);
    else
        c->hooks->too_long(c->user);
    return LP_OK;
}

/* Reads stdout until it would block (false) or ends (true), handing lines to the owner. */
static bool read_out(struct lp_child *c)
{
    uint8_t buf[READ_CHUNK];

    for (int round = 0; round < 16 && !c->paused && !c->out_eof; round++) {
        ssize_t n = read(c->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n == 0)
            return true;
        /* out_piece never stops the feed: an error is a line lost for want of memory */
        if (lp_lines_feed(&c->out_lines, buf, (size_t)n, out_piece, c) != LP_OK)
            c->hooks->lost(c->user);
    }
    return false;
}

static void out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_child *c = LP_CONTAINER_OF(w, struct lp_child, out_w);
    (void)loop;
    (void)w;
    (void)revents;
    if (!read_out(c))
        return;
    out_done(c);
    report(c); /* last: it may free c */
}

static void keep_tail(struct lp_child *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->tail[c->tail_pos] = p[i];
        c->tail_pos = (c->tail_pos + 1) % TAIL_MAX;
        if (c->tail_len < TAIL_MAX)
            c->tail_len++;
        if (p[i] == '\n' || c->err_line_len == sizeof(c->err_line) - 1) {
            lp_debug("%s stderr: %.*s", c->tag, (int)c->err_line_len, c->err_line);
            c->err_line_len = 0;
        } else {
            c->err_line[c->err_line_len++] = (unsigned char)p[i] >= 0x20 ? p[i] : '?';
        }
    }
}

static void err_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_child *c = LP_CONTAINER_OF(w, struct lp_child, err_w);
    char buf[4096];
    (void)revents;

    for (int round = 0; round < 16; round++) {
        ssize_t n = read(c->err_fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR))
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            ev_io_stop(loop, w);
            return;
        }
        keep_tail(c, buf, (size_t)n);
    }
}

/* ---- stdin ---------------------------------------------------------------------------------- */

static void close_stdin(struct lp_child *c)
{
    if (c->in_fd < 0)
        return;
    ev_io_stop(c->loop, &c->in_w);
    close(c->in_fd);
    c->in_fd = -1;
    lp_streamq_clear(&c->inq);
}

static void flush_in(struct lp_child *c)
{
    struct lp_mux_span spans[16];
    struct iovec iov[16];

    while (c->in_fd >= 0 && c->inq.buffered > 0) {
        size_t n = lp_streamq_peekv(&c->inq, spans, 16);
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = (void *)(uintptr_t)spans[i].data;
            iov[i].iov_len = spans[i].len;
        }
        ssize_t w = writev(c->in_fd, iov, (int)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            c->was_full = true;
            ev_io_start(c->loop, &c->in_w);
            return;
        }
        if (w < 0) { /* EPIPE: it closed its stdin; it will exit or say why on stderr */
            lp_debug("%s stdin: %s", c->tag, strerror(errno));
            close_stdin(c);
            return;
        }
        lp_streamq_drop(&c->inq, (size_t)w);
    }
    ev_io_stop(c->loop, &c->in_w);
    if (c->was_full && c->hooks->drained) {
        c->was_full = false;
        c->hooks->drained(c->user);
    }
}

static void in_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_child *c = LP_CONTAINER_OF(w, struct lp_child, in_w);
    (void)loop;
    (void)revents;
    flush_in(c);
}

void lp_child_write(struct lp_child *c, const uint8_t *data, size_t n)
{
    if (c->in_fd < 0 || c->stop_step > 0)
        return;
    if (!lp_streamq_append(&c->inq, data, n)) {
        lp_warn("%s: out of memory: a message for the server was dropped", c->tag);
        return;
    }
    flush_in(c);
}

size_t lp_child_queued(const struct lp_child *c)
{
    return c->inq.buffered;
}

size_t lp_child_buffered(const struct lp_child *c)
{
    return c->inq.buffered + lp_lines_pending(&c->out_lines);
}

void lp_child_pause(struct lp_child *c, bool paused)
{
    if (c->paused == paused || c->out_eof)
        return;
    c->paused = paused;
    if (paused)
        ev_io_stop(c->loop, &c->out_w);
    else
        ev_io_start(c->loop, &c->out_w);
}

/* ---- stopping ---------------------------------------------------------------------------- */

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_child *c = LP_CONTAINER_OF(w, struct lp_child, stop_t);
    (void)loop;
    (void)revents;
    if (c->exited)
        return;
    c->stop_step++;
    if (c->stop_step == 2) {
        lp_info("%s did not exit %llums after its stdin closed: SIGTERM", c->tag,
                (unsigned long long)c->grace);
        kill(-c->pid, SIGTERM);
        ev_timer_set(w, (double)c->grace / 1000.0, 0.);
        ev_timer_start(c->loop, w);
    } else {
        lp_warn("%s ignored SIGTERM for %llums: SIGKILL", c->tag, (unsigned long long)c->grace);
        kill(-c->pid, SIGKILL);
    }
}

void lp_child_stop(struct lp_child *c, lp_time grace)
{
    if (c->stop_step > 0 || c->exited)
        return;
    c->stop_step = 1;
    c->grace = grace;
    flush_in(c); /* what the hosts said last, if the pipe takes it now */
    close_stdin(c);
    ev_timer_set(&c->stop_t, (double)grace / 1000.0, 0.);
    ev_timer_start(c->loop, &c->stop_t);
}

void lp_child_free(struct lp_child *c)
{
    if (c == NULL)
        return;
    if (!c->exited) {
        kill(-c->pid, SIGKILL);
        /* Reaped here so no zombie outlives us; SIGKILL cannot be ignored. */
        waitpid(c->pid, NULL, 0);
    }
    ev_child_stop(c->loop, &c->exit_w);
    ev_timer_stop(c->loop, &c->stop_t);
    ev_io_stop(c->loop, &c->out_w);
    ev_io_stop(c->loop, &c->err_w);
    close_stdin(c);
    close(c->out_fd);
    close(c->err_fd);
    lp_lines_free(&c->out_lines);
    lp_streamq_clear(&c->inq);
    free(c);
}

/* ---- upgrade in place ------------------------------------------------------------------------ */

void lp_child_image(const struct lp_child *c, struct lp_child_image *img)
{
    size_t start = c->tail_len < TAIL_MAX ? 0 : c->tail_pos;

    memset(img, 0, sizeof(*img));
    img->pid = c->pid;
    img->in_fd = c->in_fd;
    img->out_fd = c->out_fd;
    img->err_fd = c->err_fd;
    img->stop_step = c->stop_step;
    img->grace = c->grace;
    img->stop_left = LP_TIME_NEVER;
    if (ev_is_active(&c->stop_t)) {
        double left = ev_timer_remaining(c->loop, (ev_timer *)&c->stop_t);
        img->stop_left = left <= 0 ? 0 : (lp_time)(left * 1000.0);
    }
    img->paused = c->paused;
    img->out_eof = c->out_eof;
    img->err_eof = !ev_is_active(&c->err_w);
    img->was_full = c->was_full;
    img->inq = &c->inq;
    img->out_part = c->out_lines.buf;
    img->out_len = c->out_lines.len;
    img->out_skipping = c->out_lines.skipping;
    for (size_t i = 0; i < c->tail_len; i++)
        img->tail_buf[i] = (uint8_t)c->tail[(start + i) % TAIL_MAX];
    img->tail = img->tail_buf;
    img->tail_len = c->tail_len;
}

lp_err lp_child_adopt(struct ev_loop *loop, const struct lp_child_image *img, size_t max_line,
                      const char *tag, const struct lp_child_hooks *hooks, void *user,
                      struct lp_child **out)
{
    struct lp_child *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return LP_ERR_NOMEM;
    c->loop = loop;
    c->hooks = hooks;
    c->user = user;
    snprintf(c->tag, sizeof(c->tag), "%s", tag);
    lp_lines_init(&c->out_lines, max_line);
    lp_streamq_init(&c->inq);
    if (lp_lines_restore(&c->out_lines, img->out_part, img->out_len, img->out_skipping) != LP_OK ||
        (img->inq_len > 0 && !lp_streamq_append(&c->inq, img->inq_bytes, img->inq_len))) {
        lp_lines_free(&c->out_lines);
        lp_streamq_clear(&c->inq);
        free(c);
        return LP_ERR_NOMEM;
    }
    c->pid = img->pid;
    c->in_fd = img->in_fd;
    c->out_fd = img->out_fd;
    c->err_fd = img->err_fd;
    c->stop_step = img->stop_step;
    c->grace = img->grace;
    c->paused = img->paused;
    c->out_eof = img->out_eof;
    c->was_full = img->was_full;
    c->tail_len = LP_MIN(img->tail_len, (size_t)TAIL_MAX);
    if (c->tail_len > 0) /* an empty blob reads as NULL */
        memcpy(c->tail, img->tail, c->tail_len);
    c->tail_pos = c->tail_len % TAIL_MAX;
    /* a stderr line the hand-over cut is logged (at debug) in two pieces */
    ev_io_init(&c->in_w, in_cb, c->in_fd, EV_WRITE);
    ev_io_init(&c->out_w, out_cb, c->out_fd, EV_READ);
    ev_io_init(&c->err_w, err_cb, c->err_fd, EV_READ);
    ev_child_init(&c->exit_w, exit_cb, c->pid, 0);
    ev_timer_init(&c->stop_t, stop_cb, 0., 0.);
    if (!c->out_eof && !c->paused)
        ev_io_start(loop, &c->out_w);
    if (!img->err_eof)
        ev_io_start(loop, &c->err_w);
    if (c->in_fd >= 0 && c->inq.buffered > 0)
        ev_io_start(loop, &c->in_w);
    if (img->stop_left != LP_TIME_NEVER) {
        ev_timer_set(&c->stop_t, (double)img->stop_left / 1000.0, 0.);
        ev_timer_start(loop, &c->stop_t);
    }
    ev_child_start(loop, &c->exit_w);
    *out = c;
    return LP_OK;
}
