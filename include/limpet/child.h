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

#endif
