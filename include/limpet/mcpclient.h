/* mcpclient.h — the JSON-RPC side of `limpet mcp`: what it owes the MCP host on its stdio.
 *
 * Sans-I/O. The glue feeds raw bytes from the host (stdin) and from the tunnel stream, and
 * drains two byte queues: to_host (for stdout) and to_tunnel (for the current MCP stream).
 * Messages are never reordered or merged: each complete line from one side is appended to
 * the other side's queue whole, as the original bytes plus '\n', in arrival order.
 *
 * Promises kept here:
 *  - a line from the host that is not JSON, or longer than max_message, is answered on
 *    to_host with a JSON-RPC parse error (id null) and never forwarded;
 *  - every request the host sent and the far side has not answered yet is "pending"; when
 *    the stream is lost (lp_mcpc_stream_lost: the child crashed, the session was lost, ...)
 *    each pending request is answered on to_host with an error carrying the reason, so the
 *    host never waits for a reply that cannot come. Requests still waiting in to_tunnel
 *    when the stream is lost count as pending too (they are removed from to_tunnel);
 *  - a response from the far side whose id is not pending is still forwarded (the far side
 *    may know better), a duplicate is not: at most one response per request reaches the host.
 * Lines from the far side that are not JSON are forwarded untouched (the host decides).
 */
#ifndef LIMPET_MCPCLIENT_H
#define LIMPET_MCPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"
#include "limpet/streamq.h"

typedef struct lp_mcpc lp_mcpc;

/* max_message: longest line accepted from either side (mcp.max_message); max_pending: how
 * many requests may be pending at once (beyond it a request is answered with an error at
 * once, "too many requests in flight"). Returns NULL when out of memory. */
lp_mcpc *lp_mcpc_new(size_t max_message, size_t max_pending);
void lp_mcpc_free(lp_mcpc *c);

/* Bytes the host wrote (stdin). Bad lines are answered, not errors, and so is a request
 * there is no memory to forward ("out of memory; the request was not sent"): a request is
 * always either pending or answered. LP_ERR_NOMEM: a line could be neither passed on nor
 * answered (one whose id could not even be parsed, a notification or response, or the
 * error answer itself); the lines after it in data may not have been handled. The host can then
 * no longer be promised an answer: the glue answers what is pending (lp_mcpc_stream_lost)
 * and ends, saying why. */
LP_MUST_USE lp_err lp_mcpc_from_host(lp_mcpc *c, const uint8_t *data, size_t n);
/* The host closed stdin: a last unterminated line is handled as if it had a newline. */
LP_MUST_USE lp_err lp_mcpc_host_eof(lp_mcpc *c);
/* Bytes from the tunnel stream. LP_ERR_NOMEM: a line could not be queued for the host (a
 * response's request stays pending: lp_mcpc_stream_lost answers it); the lines after it in
 * data may not have been handled. */
LP_MUST_USE lp_err lp_mcpc_from_tunnel(lp_mcpc *c, const uint8_t *data, size_t n);
/* The tunnel stream ended (FIN): a last unterminated line is forwarded with a newline. */
LP_MUST_USE lp_err lp_mcpc_tunnel_eof(lp_mcpc *c);

/* The stream is gone for good (reset, or the session lost): every pending request gets
 * {"code":-32000,"message":"limpet: <why>"} on to_host, to_tunnel is emptied (its
 * notifications and responses dropped, its requests answered), the tunnel-side line buffer
 * is reset. A new stream may be opened afterwards; the same object goes on. LP_ERR_NOMEM:
 * not every answer could be queued (the rest stay pending; a later call may answer them). */
LP_MUST_USE lp_err lp_mcpc_stream_lost(lp_mcpc *c, const char *why);

/* Queues the glue drains (lp_streamq_peek/peekv then lp_streamq_drop). Borrowed. */
struct lp_streamq *lp_mcpc_to_host(lp_mcpc *c);
struct lp_streamq *lp_mcpc_to_tunnel(lp_mcpc *c);

/* Requests the host is waiting on (sent or queued). */
size_t lp_mcpc_pending(const lp_mcpc *c);

#endif
