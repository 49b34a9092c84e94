/* upgrade.h — upgrade in place: `kill -USR2` hands the server's sessions to a new binary in
 * the same process.
 *
 * The old binary (lp_upgrade):
 *   1. runs `BINARY server [its own options] --check-upgrade` (BINARY: upgrade.binary, else the
 *      file it was started from), bounded by upgrade.check_timeout; the new binary loads the
 *      configuration and prints the state versions it reads. A binary that is missing, fails,
 *      does not answer in time or cannot read our version is refused with one log line, and
 *      nothing else happens.
 *   2. drops every link (writing first what each takes without blocking: TLS state is never
 *      carried), and serializes every session, its streams' local ends, -R listeners, the MCP
 *      pool with its processes and routers, and the process's counters into a memfd: the state
 *      file (state.h; the glue's sections are below, docs/PROTOCOL.md section 8.7).
 *   3. clears close-on-exec on exactly the descriptors the state names (listeners, target
 *      sockets, MCP pipes) and the memfd, and execs BINARY with the same arguments and
 *      LP_UPGRADE_ENV set: same process id, so MCP children stay ours and systemd's MainPID
 *      stays. If the exec fails, it says why and serves on: every session is detached, as after
 *      a link drop, and its client resumes here.
 * The new binary (lp_inherit, then lp_upgrade_restore): takes the listeners it is handed,
 * reads the whole state before it builds anything (a state it cannot read is refused whole,
 * with the reason, and the server starts fresh on the inherited listeners, closing every other
 * inherited descriptor), and otherwise restores every session detached with its ttl: clients
 * reconnect and resume, replay makes every stream byte-exact.
 */
#ifndef LIMPET_UPGRADE_H
#define LIMPET_UPGRADE_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "limpet/config.h"
#include "limpet/err.h"
#include "limpet/net.h"

/* The state's memfd and the process's listeners, for the new binary only:
 * "state=FD,listen=FD,metrics=FD,control=FD" (-1: none). Read once and removed at start. */
#define LP_UPGRADE_ENV "LIMPET_UPGRADE_STATE"
/* Test hook: the old binary stamps its state file with this version instead of its own, after
 * the check passed, so that a test sees a successor refuse a version it does not read. */
#define LP_UPGRADE_TEST_VERSION_ENV "LIMPET_TEST_STATE_VERSION"
#define LP_UPGRADE_CHECK_OUT 4096u          /* bytes of its output kept */
#define LP_UPGRADE_STATE_MAX (SIZE_MAX / 4) /* the state file's cap: memory is the real one */

/* The glue's sections (state.h reserves 0x0100..0x01FF for them). */
enum lp_upgrade_tag {
    LP_UPGRADE_PROCESS = 0x0100,   /* counters, listeners, the old binary's version */
    LP_UPGRADE_SESSION = 0x0101,   /* one session: its glue fields, pipe, mux, ends */
    LP_UPGRADE_STREAM = 0x0102,    /* one socket end of a stream (stream.h) */
    LP_UPGRADE_RLISTENER = 0x0103, /* one -R listener (reverse.h) */
    LP_UPGRADE_MCP = 0x0104,       /* the MCP glue: pool, entries, attachments */
    LP_UPGRADE_MCP_ENTRY = 0x0105, /* one pool entry: name, scope, process, router */
    LP_UPGRADE_MCP_CHILD = 0x0106, /* its process (child.h) */
    LP_UPGRADE_MCP_ATT = 0x0107,   /* one attachment: its stream and its queued lines */
};

struct lp_runtime;
struct lp_server;
struct lp_mcpd;
struct lp_ctl;

/* What the state is taken from (old binary) and given to (new binary); all borrowed. */
struct lp_upgrade_parts {
    struct lp_runtime *rt;
    struct lp_server *server;
    struct lp_mcpd *mcpd; /* NULL: no MCP */
    struct lp_ctl *ctl;   /* NULL: no control socket or metrics */
    const struct lp_config *cfg;
};

/* ---- the old binary ------------------------------------------------------------------------- */

struct lp_upgrade;

/* At start: remembers the binary (/proc/self/exe, resolved now) and argv (borrowed: main's,
 * argv[1] the subcommand) to run and exec again. Returns owned (lp_upgrade_free). */
LP_MUST_USE lp_err lp_upgrade_new(struct ev_loop *loop, int argc, char **argv,
                                  struct lp_upgrade **out);
/* SIGUSR2: checks the binary and, when it fits, hands everything over and execs it. Returns
 * at once (the check runs beside the loop); a second call while one runs is logged and
 * ignored. Only on a failed upgrade does control come back to the loop. */
void lp_upgrade_start(struct lp_upgrade *u, const struct lp_upgrade_parts *parts);
/* The server is stopping: a check in flight is killed and nothing is handed over. NULL-safe. */
void lp_upgrade_cancel(struct lp_upgrade *u);
void lp_upgrade_free(struct lp_upgrade *u);

/* `limpet server --check-upgrade`, after the configuration loaded: what this binary is and
 * which state versions it reads ("limpet VERSION" and "state-versions 1"). */
void lp_upgrade_print_check(FILE *f);

/* The new binary gets these signals blocked (the old one blocks them over the exec, so that
 * one sent in between waits instead of killing the process by its default action). Call once
 * the loop watches them. */
void lp_upgrade_unblock_signals(void);

/* ---- the new binary -------------------------------------------------------------------------- */

struct lp_inherit;

enum lp_inherit_listener { LP_INHERIT_LISTEN, LP_INHERIT_METRICS, LP_INHERIT_CONTROL };

/* Before anything opens a descriptor it keeps: when LP_UPGRADE_ENV is set, reads (and wipes)
 * the state file, removes the variable, and notes every descriptor above stderr as inherited.
 * *out NULL: not an upgrade. A state that cannot be read is logged here; the server then
 * starts fresh on the listeners. */
LP_MUST_USE lp_err lp_inherit_take(struct lp_inherit **out);
/* The listener the old binary had there, or -1; the caller owns it from now on (uses or closes
 * it). NULL-safe. */
int lp_inherit_listener(struct lp_inherit *in, enum lp_inherit_listener which);
/* Restores sessions, streams, -R listeners and the MCP pool into parts (server and MCP glue
 * made, listeners taken). Reads the whole state before building anything: a state it does not
 * understand is refused whole with one log line, and nothing is built. NULL-safe. */
void lp_upgrade_restore(struct lp_inherit *in, const struct lp_upgrade_parts *parts);
/* Closes every inherited descriptor that nothing took (all but the listeners after a refused
 * state) and frees. NULL-safe. */
void lp_inherit_finish(struct lp_inherit *in);
/* After lp_inherit_finish of an upgrade (in was not NULL): every child process the old binary
 * left that the restore did not adopt (all of them after a refused state) is stopped as an
 * MCP server is: its stdin is closed, SIGTERM after mcp.stop_grace, SIGKILL after another.
 * u keeps the sequence (lp_upgrade_free ends it). */
void lp_upgrade_end_orphans(struct lp_upgrade *u, const struct lp_upgrade_parts *parts);

/* True when fd is a listening socket bound to want (any port when want's is 0). */
bool lp_upgrade_fd_fits(int fd, const struct lp_addr *want);

#endif
