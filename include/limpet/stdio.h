/* stdio.h — `limpet stdio HOST:PORT`: this process's stdin and stdout as one stream.
 *
 * A pump stream (like a -L connection) whose local end is fds 0 and 1: stdin EOF becomes
 * FIN, the peer's FIN closes stdout, and the process ends when the stream does — 0 when it
 * closed cleanly, 1 when the server could not connect the target, 2 when its policy
 * refused it, 3 when the session was lost, 4 when reconnecting gave up — with one line on
 * stderr for every end but the clean one.
 */
#ifndef LIMPET_STDIO_H
#define LIMPET_STDIO_H

#include "limpet/client.h"

struct lp_stdio;

/* The client app for lp_client_new; target is borrowed (HOST:PORT, already checked). */
LP_MUST_USE lp_err lp_stdio_new(const struct lp_config *cfg, const char *target,
                                struct lp_stdio **out);
const struct lp_client_app *lp_stdio_app(void);
/* Set once lp_client_new returned: the stdio end finishes the client. */
void lp_stdio_set_client(struct lp_stdio *io, struct lp_client *c);
/* Restores stdin/stdout's blocking mode and frees. NULL-safe. */
void lp_stdio_free(struct lp_stdio *io);

/* Puts fd in non-blocking mode, remembering its flags in *saved (-1: not changed). Shared
 * with `limpet mcp`, which also uses the process's stdio. */
void lp_stdio_nonblock(int fd, int *saved);
void lp_stdio_restore(int fd, int saved);

#endif
