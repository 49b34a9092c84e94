/* upgrade.c — upgrade in place (upgrade.h): in the old binary, the check of the new one, the
 * hand-over and the exec; in the new one, the inherited descriptors and the restore. The state
 * file's glue sections are upgrade_state.c's.
 */
#include "limpet/upgrade.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "limpet/ctl.h"
#include "limpet/log.h"
#include "limpet/mcpio.h"
#include "limpet/server.h"
#include "limpet/session.h"
#include "upgrade_internal.h"

#ifndef LP_VERSION
#define LP_VERSION "?"
#endif

extern char **environ;

/* ---- signals over the exec ------------------------------------------------------------------ */

/* Blocked from just before the exec until the new binary's loop watches them: in between the
 * process has no handlers, and SIGTERM or another SIGUSR2 would kill it by default action. */
static void handover_mask(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR2);
    sigaddset(set, SIGCHLD);
}

void lp_upgrade_unblock_signals(void)
{
    sigset_t set;

    handover_mask(&set);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* ---- descriptor sets ---------------------------------------------------------------------- */

void lp_fdset_add(struct lp_fdset *s, int fd, uint8_t mark)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        int *fds = realloc(s->fd, cap * sizeof(*fds));
        uint8_t *marks = fds ? realloc(s->mark, cap) : NULL;
        if (fds)
            s->fd = fds;
        if (marks == NULL) {
            s->nomem = true;
            return;
        }
        s->mark = marks;
        s->cap = cap;
    }
    s->fd[s->n] = fd;
    s->mark[s->n++] = mark;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

void lp_fdset_sort(struct lp_fdset *s)
{
    if (s->n > 0)
        qsort(s->fd, s->n, sizeof(*s->fd), cmp_int);
    s->sorted = true;
}

/* A server with thousands of streams looks each of their descriptors up twice: bisected. */
long lp_fdset_find(const struct lp_fdset *s, int fd)
{
    const int *hit;

    if (s->sorted) {
        hit = s->n ? bsearch(&fd, s->fd, s->n, sizeof(*s->fd), cmp_int) : NULL;
        return hit ? (long)(hit - s->fd) : -1;
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->fd[i] == fd)
            return (long)i;
    return -1;
}

void lp_fdset_free(struct lp_fdset *s)
{
    free(s->fd);
    free(s->mark);
    memset(s, 0, sizeof(*s));
}

/* ---- listeners -------------------------------------------------------------------------------- */

static uint16_t port_of(const struct lp_addr *a)
{
    if (a->sa.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)&a->sa)->sin_port);
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&a->sa)->sin6_port);
    return 0;
}

bool lp_upgrade_fd_fits(int fd, const struct lp_addr *want)
{
    struct lp_addr have;
    uint8_t a[16], b[16];
    int listening = 0;
    socklen_t len = sizeof(listening);
    size_t na, nb;

    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
        lp_net_local_addr(fd, &have) != LP_OK || have.sa.ss_family != want->sa.ss_family)
        return false;
    na = lp_net_addr_bytes(&have, a);
    nb = lp_net_addr_bytes(want, b);
    return na == nb && memcmp(a, b, na) == 0 &&
           (port_of(want) == 0 || port_of(want) == port_of(&have));
}

/* ---- the old binary: the check -------------------------------------------------------------- */

struct lp_upgrade {
    struct ev_loop *loop;
    int argc;
    char **argv; /* main's: argv[1] is "server" */
    char self[PATH_MAX];
    char binary[PATH_MAX];
    struct lp_upgrade_parts parts;
    lp_time signal_at;
    lp_time check_timeout; /* upgrade.check_timeout when the signal came */
    pid_t pid;             /* the check in flight; 0: none */
    int out_fd;
    bool exited, eof, timed_out;
    int status;
    char out[LP_UPGRADE_CHECK_OUT];
    size_t out_len;
    ev_io io;
    ev_child child;
    ev_timer timer;
    struct lp_orphans *orphans; /* the new binary: what the old one left, being stopped */
};

static void refused(struct lp_upgrade *u, const char *fmt, ...) LP_PRINTF(2, 3);

/* The one line an upgrade that did not happen leaves. */
static void refused(struct lp_upgrade *u, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    lp_warn("upgrade refused: %s; still serving, nothing changed", why);
    u->parts.rt->stats.upgrade_failures++;
}

lp_err lp_upgrade_new(struct ev_loop *loop, int argc, char **argv, struct lp_upgrade **out)
{
    struct lp_upgrade *u = calloc(1, sizeof(*u));
    ssize_t n;

    *out = NULL;
    if (u == NULL)
        return LP_ERR_NOMEM;
    u->loop = loop;
    u->argc = argc;
    u->argv = argv;
    u->out_fd = -1;
    /* Now, while it names the file we run: a package upgrade replaces that file later. */
    n = readlink("/proc/self/exe", u->self, sizeof(u->self) - 1);
    u->self[n > 0 ? n : 0] = '\0';
    *out = u;
    return LP_OK;
}

static void check_done(struct lp_upgrade *u);

static void check_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lp_upgrade *u = LP_CONTAINER_OF(w, struct lp_upgrade, io);
    char buf[1024];
    (void)revents;

    for (;;) {
        ssize_t n = read(u->out_fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        size_t keep = LP_MIN((size_t)n, sizeof(u->out) - 1 - u->out_len); /* the rest: dropped */
        memcpy(u->out + u->out_len, buf, keep);
        u->out_len += keep;
    }
    ev_io_stop(loop, w);
    close(u->out_fd);
    u->out_fd = -1;
    u->eof = true;
    check_done(u);
}

static void check_exit_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct lp_upgrade *u = LP_CONTAINER_OF(w, struct lp_upgrade, child);
    (void)revents;

    ev_child_stop(loop, w);
    u->exited = true;
    u->status = w->rstatus;
    check_done(u);
}

static void check_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_upgrade *u = LP_CONTAINER_OF(w, struct lp_upgrade, timer);
    (void)revents;

    u->timed_out = true;
    /* The check leads its own process group (spawn_check), so a script's children go with
     * it. Reaped and its pipe closed, the group may be gone and the number another's now. */
    if (!u->exited || u->out_fd >= 0)
        kill(-u->pid, SIGKILL); /* the exit callback follows */
    if (u->out_fd >= 0) {       /* a grandchild may hold the pipe: do not wait for it */
        ev_io_stop(loop, &u->io);
        close(u->out_fd);
        u->out_fd = -1;
    }
    u->eof = true;
    check_done(u); /* when it had exited already: no exit callback follows */
}

/* `BINARY server [our options] --check-upgrade`, its output (stdout and stderr) into a pipe. */
static lp_err spawn_check(struct lp_upgrade *u, char *err, size_t errlen)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int p[2], rc;
    char **argv = calloc((size_t)u->argc + 3, sizeof(*argv));

    if (argv == NULL || pipe2(p, O_CLOEXEC) != 0) {
        free(argv);
        return lp_errf(LP_ERR_IO, err, errlen, "cannot run it: %s", strerror(errno));
    }
    /* Right after the subcommand: after a "--" it would not be an option. */
    argv[0] = u->binary;
    argv[1] = u->argc > 1 ? u->argv[1] : "server";
    argv[2] = "--check-upgrade";
    for (int i = 2; i < u->argc; i++)
        argv[i + 1] = u->argv[i];
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    /* Its own process group: a timeout or our exit kills whatever it started, too. */
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
    rc = posix_spawn(&u->pid, u->binary, &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    free(argv);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        u->pid = 0;
        return lp_errf(LP_ERR_IO, err, errlen, "cannot run %s: %s", u->binary, strerror(rc));
    }
    u->out_fd = p[0];
    fcntl(u->out_fd, F_SETFL, O_NONBLOCK);
    u->out_len = 0;
    u->exited = u->eof = u->timed_out = false;
    ev_io_init(&u->io, check_read_cb, u->out_fd, EV_READ);
    ev_io_start(u->loop, &u->io);
    ev_child_init(&u->child, check_exit_cb, u->pid, 0);
    ev_child_start(u->loop, &u->child);
    ev_timer_init(&u->timer, check_timer_cb, (double)u->check_timeout / 1000.0, 0.);
    ev_timer_start(u->loop, &u->timer);
    return LP_OK;
}

void lp_upgrade_start(struct lp_upgrade *u, const struct lp_upgrade_parts *parts)
{
    const char *binary = parts->cfg->upgrade.binary[0] ? parts->cfg->upgrade.binary : u->self;
    char err[PATH_MAX + 128];

    if (u->pid != 0) {
        lp_warn("upgrade: one is under way already (checking %s); this SIGUSR2 is ignored",
                u->binary);
        return;
    }
    u->parts = *parts;
    u->check_timeout = parts->cfg->upgrade.check_timeout;
    u->parts.cfg = NULL; /* a reload during the check may free it: read now, never after */
    u->signal_at = lp_now();
    if (binary[0] == '\0') {
        refused(u, "cannot tell which binary this server was started from: set upgrade.binary");
        return;
    }
    snprintf(u->binary, sizeof(u->binary), "%s", binary);
    if (access(u->binary, X_OK) != 0) {
        refused(u, "%s: %s", u->binary, strerror(errno));
        return;
    }
    if (spawn_check(u, err, sizeof(err)) != LP_OK) {
        refused(u, "%s", err);
        return;
    }
    lp_info("upgrade: checking %s (--check-upgrade)", u->binary);
}

/* The check's verdict line: "state-versions 1 2 ..." must name LP_STATE_VERSION. Returns the
 * line (in u->out) or NULL; *version the "limpet X" line's X, if any. */
static bool reads_our_version(struct lp_upgrade *u, char *version, size_t vlen, char *list,
                              size_t llen)
{
    bool found = false;

    u->out[u->out_len] = '\0';
    snprintf(version, vlen, "?");
    snprintf(list, llen, "none");
    for (char *line = u->out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "limpet ", 7) == 0)
            snprintf(version, vlen, "%s", line + 7);
        if (strncmp(line, "state-versions ", 15) != 0)
            continue;
        snprintf(list, llen, "%s", line + 15);
        for (char *p = line + 15, *end; *p; p = end) {
            unsigned long v = strtoul(p, &end, 10);
            if (end == p)
                break;
            found = found || v == LP_STATE_VERSION;
        }
    }
    return found;
}

/* The last line the check printed, for the reason: a configuration error says what is wrong. */
static const char *last_line(struct lp_upgrade *u)
{
    char *end;

    u->out[u->out_len] = '\0';
    while (u->out_len > 0 && (u->out[u->out_len - 1] == '\n' || u->out[u->out_len - 1] == '\r'))
        u->out[--u->out_len] = '\0';
    end = strrchr(u->out, '\n');
    return end ? end + 1 : u->out[0] ? u->out : "no output";
}

static void hand_over(struct lp_upgrade *u, const char *version);

static void check_done(struct lp_upgrade *u)
{
    char version[64], list[128];

    if (!u->exited || !u->eof)
        return;
    ev_timer_stop(u->loop, &u->timer);
    u->pid = 0;
    if (u->timed_out) {
        bool whole = u->check_timeout % 1000 == 0;
        refused(u, "%s --check-upgrade did not answer within %llu%s (upgrade.check_timeout)",
                u->binary, (unsigned long long)(whole ? u->check_timeout / 1000 : u->check_timeout),
                whole ? "s" : "ms");
    } else if (!WIFEXITED(u->status) || WEXITSTATUS(u->status) != 0) {
        refused(u, "%s --check-upgrade %s %d: %s", u->binary,
                WIFEXITED(u->status) ? "exited with status" : "was killed by signal",
                WIFEXITED(u->status) ? WEXITSTATUS(u->status) : WTERMSIG(u->status), last_line(u));
    } else if (!reads_our_version(u, version, sizeof(version), list, sizeof(list))) {
        refused(u, "%s reads state versions %s, not %u, the one this server writes", u->binary,
                list, (unsigned)LP_STATE_VERSION);
    } else {
        hand_over(u, version);
    }
}

void lp_upgrade_cancel(struct lp_upgrade *u)
{
    if (u == NULL || u->pid == 0)
        return;
    ev_timer_stop(u->loop, &u->timer);
    if (u->out_fd >= 0) {
        ev_io_stop(u->loop, &u->io);
        close(u->out_fd);
        u->out_fd = -1;
    }
    /* Killed and reaped here: nothing of the check may outlive the server. */
    if (!u->exited) {
        kill(-u->pid, SIGKILL); /* its process group: what it started, too */
        waitpid(u->pid, NULL, 0);
    }
    ev_child_stop(u->loop, &u->child);
    u->pid = 0;
}

void lp_upgrade_free(struct lp_upgrade *u)
{
    lp_upgrade_cancel(u);
    if (u != NULL)
        lp_orphans_free(u->orphans);
    free(u);
}

void lp_upgrade_print_check(FILE *f)
{
    fprintf(f, "limpet %s\nstate-versions", LP_VERSION);
    for (unsigned v = 1; v <= UINT16_MAX; v++)
        if (lp_state_reads((uint16_t)v))
            fprintf(f, " %u", v);
    fputc('\n', f);
}

/* ---- the old binary: the hand-over -------------------------------------------------------- */

static void set_cloexec(const struct lp_fdset *fds, bool on)
{
    for (size_t i = 0; i < fds->n; i++) {
        int flags = fcntl(fds->fd[i], F_GETFD);
        if (flags >= 0)
            fcntl(fds->fd[i], F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
    }
}

static lp_err write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return LP_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return LP_OK;
}

/* The test hook (upgrade.h): a version the successor will not read. */
static void stamp_test_version(uint8_t *file)
{
    const char *v = getenv(LP_UPGRADE_TEST_VERSION_ENV);
    unsigned long n = v ? strtoul(v, NULL, 10) : 0;

    if (n > 0 && n <= UINT16_MAX) {
        lp_warn("upgrade: %s=%lu: the state file says version %lu (a test hook)",
                LP_UPGRADE_TEST_VERSION_ENV, n, n);
        file[4] = (uint8_t)(n >> 8);
        file[5] = (uint8_t)n;
    }
}

/* The state into a memfd the exec keeps open; -1 (why in err) on failure. */
static int state_memfd(const struct lp_upgrade *u, const int listeners[3], struct lp_fdset *fds,
                       struct lp_upgrade_summary *sum, size_t *bytes, char *err, size_t errlen)
{
    struct lp_state_wr w;
    const uint8_t *out = NULL;
    size_t len = 0;
    int mfd = -1;
    lp_err rc;

    lp_state_wr_init(&w, LP_UPGRADE_STATE_MAX);
    rc = lp_upgrade_write(&u->parts, listeners, lp_now(), u->signal_at, &w, fds, sum);
    if (rc == LP_OK)
        rc = lp_state_finish(&w, &out, &len);
    if (rc != LP_OK) {
        snprintf(err, errlen, "cannot write the state: %s", lp_strerror(rc));
        goto out;
    }
    stamp_test_version(w.w.p);
    if ((mfd = memfd_create("limpet-state", 0)) < 0 || write_all(mfd, out, len) != LP_OK ||
        lseek(mfd, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot write the state into a memfd: %s", strerror(errno));
        if (mfd >= 0)
            close(mfd);
        mfd = -1;
    }
    *bytes = len;
out:
    lp_state_wr_clear(&w); /* it holds every session's resume token */
    return mfd;
}

/* The environment the new binary starts with: ours, and LP_UPGRADE_ENV. Owned array of
 * borrowed strings (but the last). */
static char **exec_env(char *ours)
{
    size_t n = 0, k = 0, name = strlen(LP_UPGRADE_ENV);
    char **env;

    while (environ[n])
        n++;
    if ((env = calloc(n + 2, sizeof(*env))) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], LP_UPGRADE_ENV, name) != 0 || environ[i][name] != '=')
            env[k++] = environ[i];
    env[k++] = ours;
    env[k] = NULL;
    return env;
}

/* Drops every link (what each takes now is written first): a session whose link is gone is
 * detached, its ttl running, as after any drop; its client reconnects, to whichever binary
 * then listens. TLS state is never carried. */
static void drop_links(struct lp_runtime *rt)
{
    for (struct lp_session *s = rt->all; s; s = s->all_next) {
        if (s->closing || !lp_session_attached(s))
            continue;
        lp_session_flush(s);
        lp_session_link_failed(s, "the server is upgrading in place");
    }
}

static void hand_over(struct lp_upgrade *u, const char *version)
{
    struct lp_fdset fds = {0};
    struct lp_upgrade_summary sum;
    int listeners[3] = {lp_server_fd(u->parts.server), -1, -1}, mfd, e;
    char err[PATH_MAX + 128], env[160], **envp = NULL, **argv = NULL;
    size_t bytes = 0;
    sigset_t mask;

    lp_ctl_fds(u->parts.ctl, &listeners[1], &listeners[2]);
    drop_links(u->parts.rt);
    if ((mfd = state_memfd(u, listeners, &fds, &sum, &bytes, err, sizeof(err))) < 0)
        goto failed;
    snprintf(env, sizeof(env), "%s=state=%d,listen=%d,metrics=%d,control=%d", LP_UPGRADE_ENV, mfd,
             listeners[0], listeners[1], listeners[2]);
    if ((envp = exec_env(env)) == NULL ||
        (argv = calloc((size_t)u->argc + 1, sizeof(*argv))) == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto failed;
    }
    argv[0] = u->binary;
    for (int i = 1; i < u->argc; i++)
        argv[i] = u->argv[i];
    lp_info("upgrade: handing %zu sessions, %zu streams, %zu -R listeners and %zu MCP processes "
            "(%zu bytes of state) over to %s (limpet %s)",
            sum.sessions, sum.streams + sum.atts, sum.rlisteners, sum.children, bytes, u->binary,
            version);
    set_cloexec(&fds, false);
    handover_mask(&mask);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    execve(u->binary, argv, envp);
    e = errno;
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    set_cloexec(&fds, true);
    snprintf(err, sizeof(err), "exec %s: %s", u->binary, strerror(e));
failed:
    if (mfd >= 0)
        close(mfd);
    free(envp);
    free(argv);
    lp_fdset_free(&fds);
    lp_error("upgrade failed: %s; still serving: every session is detached and its client "
             "resumes here",
             err);
    u->parts.rt->stats.upgrade_failures++;
}

/* ---- the new binary ---------------------------------------------------------------------------- */

struct lp_inherit {
    uint8_t *state; /* the state file; NULL when it could not be read (why says why) */
    size_t len;
    int listeners[3];
    struct lp_fdset fds; /* every descriptor above stderr open at start */
    char why[256];
};

static int env_fd(const char *env, const char *key)
{
    const char *p = strstr(env, key);
    char *end;
    long v;

    if (p == NULL || (p != env && p[-1] != ','))
        return -1;
    v = strtol(p + strlen(key), &end, 10);
    return end != p + strlen(key) && v >= 0 && v <= INT_MAX ? (int)v : -1;
}

/* Every open descriptor above stderr, but the directory's own. */
static void scan_fds(struct lp_fdset *fds)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end == '\0' && end != de->d_name && fd > 2 && fd != dirfd(d))
            lp_fdset_add(fds, (int)fd, 0);
    }
    closedir(d);
}

/* Reads the memfd whole and wipes it (it holds every resume token). */
static void read_state(struct lp_inherit *in, int mfd)
{
    struct stat st;
    size_t got = 0;

    if (mfd < 0 || fstat(mfd, &st) != 0) {
        snprintf(in->why, sizeof(in->why), "the state file cannot be read: %s",
                 mfd < 0 ? "the environment names no open descriptor for it" : strerror(errno));
        return;
    }
    if (st.st_size <= 0) {
        snprintf(in->why, sizeof(in->why), "the state file is empty");
        return;
    }
    if ((in->state = malloc((size_t)st.st_size)) == NULL) {
        snprintf(in->why, sizeof(in->why), "no memory for a state file of %lld bytes",
                 (long long)st.st_size);
        return;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(mfd, in->state + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(in->why, sizeof(in->why), "the state file cannot be read: %s",
                     n < 0 ? strerror(errno) : "it ended early");
            free(in->state);
            in->state = NULL;
            return;
        }
        got += (size_t)n;
    }
    in->len = got;
    if (ftruncate(mfd, 0) != 0)
        lp_debug("upgrade: the state file could not be wiped: %s", strerror(errno));
}

lp_err lp_inherit_take(struct lp_inherit **out)
{
    const char *env = getenv(LP_UPGRADE_ENV);
    struct lp_inherit *in;
    int mfd;
    long i;

    *out = NULL;
    if (env == NULL)
        return LP_OK;
    if ((in = calloc(1, sizeof(*in))) == NULL)
        return LP_ERR_NOMEM;
    mfd = env_fd(env, "state=");
    in->listeners[LP_INHERIT_LISTEN] = env_fd(env, "listen=");
    in->listeners[LP_INHERIT_METRICS] = env_fd(env, "metrics=");
    in->listeners[LP_INHERIT_CONTROL] = env_fd(env, "control=");
    scan_fds(&in->fds);
    lp_fdset_sort(&in->fds);
    /* The old binary cleared close-on-exec on them for its exec; left so, every process this
     * one starts (an MCP server, the next check) would hold the listeners and the targets'
     * sockets open behind our back. */
    for (size_t k = 0; k < in->fds.n; k++)
        fcntl(in->fds.fd[k], F_SETFD, FD_CLOEXEC);
    if (in->fds.nomem) {
        lp_fdset_free(&in->fds);
        free(in);
        return LP_ERR_NOMEM;
    }
    for (int k = 0; k < 3; k++) { /* one not open, or the state's own, is none */
        if ((i = lp_fdset_find(&in->fds, in->listeners[k])) < 0 || in->listeners[k] == mfd)
            in->listeners[k] = -1;
        else
            in->fds.mark[i] |= LP_FD_LISTENER;
    }
    if (mfd >= 0 && (i = lp_fdset_find(&in->fds, mfd)) >= 0 &&
        (in->fds.mark[i] & LP_FD_LISTENER) == 0) {
        read_state(in, mfd);
        close(mfd);
        in->fds.mark[i] |= LP_FD_CLOSED;
    } else {
        read_state(in, -1);
    }
    unsetenv(LP_UPGRADE_ENV);
    *out = in;
    return LP_OK;
}

int lp_inherit_listener(struct lp_inherit *in, enum lp_inherit_listener which)
{
    long i;

    if (in == NULL || in->listeners[which] < 0 ||
        (i = lp_fdset_find(&in->fds, in->listeners[which])) < 0)
        return -1;
    in->fds.mark[i] |= LP_FD_TAKEN;
    return in->listeners[which];
}

/* Every restored session starts where its cores left off: control frames into the pipe,
 * events the old binary had not drained yet to the glue. */
static void resume_cores(struct lp_runtime *rt)
{
    for (struct lp_session *s = rt->all; s; s = s->all_next) {
        if (s->closing)
            continue;
        lp_mux_flush(s->mux);
        lp_session_process(s);
    }
}

void lp_upgrade_restore(struct lp_inherit *in, const struct lp_upgrade_parts *parts)
{
    struct lp_upgrade_summary sum;
    char why[LP_STATE_WHY_MAX + 64];
    lp_time started = lp_now();
    lp_err rc;

    if (in == NULL)
        return;
    if (in->state == NULL) {
        lp_error("upgrade: %s; starting fresh on the inherited listeners", in->why);
        parts->rt->stats.upgrade_failures++;
        return;
    }
    rc = lp_upgrade_read(in->state, in->len, parts, in->listeners, &in->fds, false, &sum, why,
                         sizeof(why));
    if (rc != LP_OK) {
        lp_error("upgrade: the state handed over is refused: %s; starting fresh on the inherited "
                 "listeners (every session of the old binary is lost)",
                 why);
        parts->rt->stats.upgrade_failures++;
        return;
    }
    for (size_t i = 0; i < in->fds.n; i++)
        in->fds.mark[i] &= (uint8_t)~LP_FD_CLAIMED;
    rc = lp_upgrade_read(in->state, in->len, parts, in->listeners, &in->fds, true, &sum, why,
                         sizeof(why));
    if (rc != LP_OK)
        lp_error("upgrade: restoring stopped part-way: %s; what was restored goes on, the rest is "
                 "closed",
                 why);
    resume_cores(parts->rt);
    lp_info("upgrade: restored %zu sessions, %zu streams, %zu -R listeners and %zu MCP processes "
            "from limpet %s (%zu bytes of state) in %llums; the old binary had written it %llums "
            "after SIGUSR2",
            sum.sessions, sum.streams + sum.atts, sum.rlisteners, sum.children, sum.from, in->len,
            (unsigned long long)(lp_now() - started), (unsigned long long)sum.since_start);
}

static bool mcpd_adopted(void *user, pid_t pid)
{
    const struct lp_upgrade_parts *parts = user;
    return parts->mcpd != NULL && lp_mcpd_runs(parts->mcpd, pid);
}

void lp_upgrade_end_orphans(struct lp_upgrade *u, const struct lp_upgrade_parts *parts)
{
    if (u == NULL || u->orphans != NULL)
        return;
    u->orphans = lp_orphans_start(u->loop, parts->cfg->mcp.stop_grace, mcpd_adopted, (void *)parts);
}

void lp_inherit_finish(struct lp_inherit *in)
{
    if (in == NULL)
        return;
    for (size_t i = 0; i < in->fds.n; i++)
        if ((in->fds.mark[i] & (LP_FD_TAKEN | LP_FD_CLOSED)) == 0)
            close(in->fds.fd[i]);
    if (in->state != NULL) {
        explicit_bzero(in->state, in->len); /* resume tokens */
        free(in->state);
    }
    lp_fdset_free(&in->fds);
    free(in);
}
