/* child.h — one MCP server process: spawned with pipes for stdin, stdout and stderr, in a
 * process group of its own, read line by line, stopped the way the MCP stdio transport asks.
 *
 * Stopping: stdin is closed (after what is queued for it, if the pipe takes it at once),
 * then after `grace` SIGTERM goes to the whole process group, then after another `grace`
 * SIGKILL — so grandchildren (npx -> node) go too. When the process has exited and its
 * stdout is drained, hooks->exited gets one line saying how ("exited with status 7",
 * "killed by signal 9") with the last lines of its stderr; stderr is also logged as it
 * comes, at debug level, with the tag.
 */
#ifndef LIMPET_CHILD_H
#define LIMPET_CHILD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "limpet/base.h"
#include "limpet/config.h"
#include "limpet/err.h"

struct lp_child;

struct lp_child_hooks {
    /* One line the process wrote on stdout (without '\n'); borrowed for the call. */
    void (*line)(void *user, const uint8_t *line, size_t len);
    /* A stdout line longer than max_line was dropped (its length so far). */
    void (*too_long)(void *user);
    /* A stdout line was lost: there was no memory to buffer it. */
    void (*lost)(void *user);
    /* Everything queued for stdin has been written (after lp_child_write found it full). */
    void (*drained)(void *user);
    /* The process is gone. The child object must be freed by the owner (lp_child_free),
     * which may happen inside this call. */
    void (*exited)(void *user, int status, const char *why);
};

/* Starts sv->command with sv->args, the server's environment plus sv->env, in sv->cwd.
 * tag prefixes log lines ("mcp=memory scope=laptop"). On failure (no such program, ...)
 * writes the reason to err and returns LP_ERR_IO; nothing is left running. */
LP_MUST_USE lp_err lp_child_spawn(struct ev_loop *loop, const struct lp_mcp_server *sv,
                                  size_t max_line, const char *tag,
                                  const struct lp_child_hooks *hooks, void *user,
                                  struct lp_child **out, char *err, size_t errlen);
pid_t lp_child_pid(const struct lp_child *c);
/* Queues bytes for stdin (a whole line). Dropped silently once stdin is closed. */
void lp_child_write(struct lp_child *c, const uint8_t *data, size_t n);
/* Bytes queued for stdin and not yet written. */
size_t lp_child_queued(const struct lp_child *c);
/* Bytes the child object holds: stdin queued, and a stdout line being read (for the
 * process's memory count). */
size_t lp_child_buffered(const struct lp_child *c);
/* Stops (true) or resumes reading stdout: backpressure from slow attachments. */
void lp_child_pause(struct lp_child *c, bool paused);
/* Starts the stop sequence (idempotent). */
void lp_child_stop(struct lp_child *c, lp_time grace);
/* Frees; a process still running gets SIGKILL (its group too). NULL-safe. */
void lp_child_free(struct lp_child *c);

/* ---- upgrade in place (upgrade.h) ---------------------------------------------------------- */

#define LP_CHILD_TAIL_MAX 2048u /* bytes of stderr kept for the exit message */

/* A running child as the previous binary hands it over (same process id: it is still ours).
 * The byte runs are views: into the child (lp_child_image) or the state file (restoring). */
struct lp_child_image {
    pid_t pid;
    int in_fd, out_fd, err_fd;    /* in_fd -1: its stdin is closed already */
    int stop_step;                /* 0 running, 1 stdin closed, 2 SIGTERM sent, 3 SIGKILL sent */
    lp_time grace;                /* of the stop sequence */
    lp_time stop_left;            /* until its next step, LP_TIME_NEVER: no step due */
    bool paused;                  /* stdout not read (an attachment is behind) */
    bool out_eof, err_eof;        /* stdout / stderr ended */
    bool was_full;                /* stdin was full: `drained` is owed */
    const struct lp_streamq *inq; /* saving: bytes queued for stdin */
    const uint8_t *inq_bytes;     /* restoring: the same, inq_len of them */
    size_t inq_len;
    const uint8_t *out_part; /* a partial stdout line (out_len bytes) ... */
    size_t out_len;
    bool out_skipping;   /* ... or inside a too-long one */
    const uint8_t *tail; /* the last bytes of stderr, oldest first */
    size_t tail_len;
    uint8_t tail_buf[LP_CHILD_TAIL_MAX]; /* saving: where tail points */
};

/* Fills img for c (which has not exited: an exited child is reported and freed at once). */
void lp_child_image(const struct lp_child *c, struct lp_child_image *img);
/* Takes over the process and pipes img describes, watching them as lp_child_spawn's. Errors
 * (out of memory) leave the fds to the caller. */
LP_MUST_USE lp_err lp_child_adopt(struct ev_loop *loop, const struct lp_child_image *img,
                                  size_t max_line, const char *tag,
                                  const struct lp_child_hooks *hooks, void *user,
                                  struct lp_child **out);

#endif
