/* upgrade_orphans.c — the new binary: child processes the old one left that nothing took over.
 *
 * An upgrade in place keeps the process id, so the old binary's MCP server processes are still
 * our children after the exec. A restored state adopts them. A refused state (or one restored
 * only part-way) leaves some unadopted: their stdin closes with the inherited descriptors and
 * an MCP server that honours the spec exits; one that ignores EOF would run on, nobody's. So
 * each gets the MCP stop sequence: stdin closed, then after `grace` SIGTERM to its process
 * group, then after another `grace` SIGKILL. Found once, right after the restore, in the
 * kernel's list of our children (or by their parent pid in /proc where it has none).
 */
#include "upgrade_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "limpet/log.h"

long lp_ppid_of(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    long ppid = -1;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if ((f = fopen(path, "re")) == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')' */
    if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %*c %ld", &ppid) != 1)
        return -1;
    return ppid;
}

struct orphan {
    pid_t pid;
    bool gone; /* reaped (libev reaps every child): its number may be another's now */
    ev_child w;
    struct lp_orphans *o;
};

struct lp_orphans {
    struct ev_loop *loop;
    ev_timer t;
    lp_time grace;
    int step; /* 0: stdin closed, 1: SIGTERM sent, 2: SIGKILL sent */
    size_t n, left;
    struct orphan p[];
};

static void signal_orphan(const struct orphan *c, int sig)
{
    /* A group leader (as MCP servers are spawned) takes its group along; else just itself. */
    if (getpgid(c->pid) == c->pid)
        kill(-c->pid, sig);
    else
        kill(c->pid, sig);
}

static void orphan_exit_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    struct orphan *c = LP_CONTAINER_OF(w, struct orphan, w);
    (void)revents;

    ev_child_stop(loop, w);
    c->gone = true;
    lp_info("upgrade: process %ld, left by the old binary, ended (status 0x%x)", (long)c->pid,
            (unsigned)w->rstatus);
    if (--c->o->left == 0)
        ev_timer_stop(loop, &c->o->t);
}

static void orphan_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_orphans *o = LP_CONTAINER_OF(w, struct lp_orphans, t);
    int sig = o->step == 0 ? SIGTERM : SIGKILL;
    (void)revents;

    for (size_t i = 0; i < o->n; i++) {
        if (!o->p[i].gone && waitpid(o->p[i].pid, NULL, WNOHANG) == o->p[i].pid) {
            /* a zombie no SIGCHLD of ours came for (it ended before our loop ran) */
            ev_child_stop(loop, &o->p[i].w);
            o->p[i].gone = true;
            o->left--;
        }
        if (o->p[i].gone)
            continue;
        lp_warn("upgrade: process %ld, left by the old binary, %s: %s", (long)o->p[i].pid,
                o->step == 0 ? "did not exit when its stdin closed" : "ignored SIGTERM",
                sig == SIGTERM ? "SIGTERM" : "SIGKILL");
        signal_orphan(&o->p[i], sig);
    }
    if (o->left > 0 && ++o->step < 2) {
        ev_timer_set(w, (double)o->grace / 1000.0, 0.);
        ev_timer_start(loop, w);
    }
}

/* Our children from /proc/self/task/TID/children (one line of pids; the process is one
 * thread, so TID is our pid): -1 when the kernel has no such file (CONFIG_PROC_CHILDREN). */
static long children_file(pid_t *out, size_t max)
{
    char path[64];
    FILE *f;
    long pid;
    size_t n = 0;

    snprintf(path, sizeof(path), "/proc/self/task/%ld/children", (long)getpid());
    if ((f = fopen(path, "re")) == NULL)
        return -1;
    while (n < max && fscanf(f, "%ld", &pid) == 1)
        out[n++] = (pid_t)pid;
    fclose(f);
    return (long)n;
}

/* Our children: from the children file, else by the parent pid of every process in /proc
 * (slower, but any kernel has it). */
static size_t find_children(pid_t *out, size_t max)
{
    long got = children_file(out, max);
    DIR *d;
    struct dirent *e;
    size_t n = 0;
    long self = (long)getpid();

    if (got >= 0)
        return (size_t)got;
    if ((d = opendir("/proc")) == NULL) {
        lp_warn("upgrade: cannot list /proc (%s): processes the old binary left are not looked "
                "for",
                strerror(errno));
        return 0;
    }
    while (n < max && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (lp_ppid_of(pid) == self)
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

struct lp_orphans *lp_orphans_start(struct ev_loop *loop, lp_time grace,
                                    bool (*adopted)(void *, pid_t), void *user)
{
    enum { MAX = 4096 };
    pid_t *pids = malloc(MAX * sizeof(*pids));
    struct lp_orphans *o = NULL;
    size_t found, n = 0;

    if (pids == NULL)
        return NULL;
    found = find_children(pids, MAX);
    for (size_t i = 0; i < found; i++) /* those the restore adopted stay */
        if (!adopted(user, pids[i]))
            pids[n++] = pids[i];
    if (n == 0 || (o = calloc(1, sizeof(*o) + n * sizeof(o->p[0]))) == NULL) {
        if (n > 0)
            lp_warn("upgrade: no memory to stop the %zu processes the old binary left", n);
        free(pids);
        return NULL;
    }
    o->loop = loop;
    o->grace = grace;
    o->n = o->left = n;
    for (size_t i = 0; i < n; i++) {
        o->p[i].pid = pids[i];
        o->p[i].o = o;
        ev_child_init(&o->p[i].w, orphan_exit_cb, pids[i], 0);
        ev_child_start(loop, &o->p[i].w);
        lp_warn("upgrade: process %ld was the old binary's and nothing took it over: its stdin "
                "is closed, SIGTERM in %llums, SIGKILL %llums later",
                (long)pids[i], (unsigned long long)grace, (unsigned long long)grace);
    }
    free(pids);
    ev_timer_init(&o->t, orphan_timer_cb, (double)grace / 1000.0, 0.);
    ev_timer_start(loop, &o->t);
    return o;
}

void lp_orphans_free(struct lp_orphans *o)
{
    if (o == NULL)
        return;
    ev_timer_stop(o->loop, &o->t);
    for (size_t i = 0; i < o->n; i++) {
        if (o->p[i].gone)
            continue;
        /* The server is going: nothing of ours outlives it. Killed and reaped here. */
        ev_child_stop(o->loop, &o->p[i].w);
        signal_orphan(&o->p[i], SIGKILL);
        waitpid(o->p[i].pid, NULL, 0);
    }
    free(o);
}
