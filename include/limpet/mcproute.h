/* mcproute.h — JSON-RPC routing between one MCP server child and the hosts attached to it.
 *
 * Sans-I/O, one object per pool entry (it outlives a crashed child, so the next child can
 * be initialized from the cache). The glue feeds whole lines (lp_lines framing done by the
 * glue) from attachments and from the child, and drains output lines, each addressed to
 * the child (dest 0) or to one attachment. Order is kept per destination: lines are queued
 * in the order their causes arrived. A line that needs no change is output as its original
 * bytes plus '\n'; only the messages below are re-encoded.
 *
 * What it does (MCP stdio, both protocol eras: 2025-11-25 with initialize, and 2026-07-28
 * stateless with server/discover and per-request _meta, which needs nothing special):
 *  - Request ids: a host request whose id is not in flight to the child keeps its id; one
 *    whose id is (another attachment used it) is sent with a fresh id "lp-N" and its
 *    response is given back the original id. The same for _meta.progressToken, so
 *    notifications/progress reach the attachment whose request asked for them.
 *    notifications/cancelled from a host has its requestId mapped the same way.
 *  - initialize (2025-era): the first one is forwarded; its response (the one whose id
 *    matches, not the first line the child writes) is cached when it is a result. A later
 *    initialize from any attachment is answered from the cache with its own id and never
 *    reaches the child; one that arrives while the first is in flight waits for it.
 *    notifications/initialized reaches the child once per child life.
 *  - A fresh child after a crash (lp_mcproute_child_started with a cache): the route sends
 *    the cached initialize request itself (id "lp-init-N"), swallows its response (caching
 *    the new result), then sends notifications/initialized, then lets queued lines through.
 *    Host lines that arrive meanwhile are held, in order, and sent after.
 *  - Child → host: a response goes to the attachment that sent the request (dropped when
 *    that attachment has gone); a request from the child (sampling, elicitation, roots,
 *    ping) goes to the most recently attached attachment, and its response comes back
 *    unchanged; with no attachment it is answered with an error at once. notifications/
 *    progress follow their token; notifications/cancelled from the child follow the
 *    request they cancel; every other notification goes to every attachment (none: dropped).
 *  - An attachment that leaves for good (lp_mcproute_detach): for each of its requests the
 *    child has not answered, the child is sent notifications/cancelled
 *    {"requestId": <id as the child knows it>, "reason": "client went away"}; later
 *    responses to them are dropped.
 * Lines from an attachment or the child that are not JSON-RPC objects (arrays, junk) are
 * forwarded as they are to the child / to every attachment: limpet is not a validator.
 */
#ifndef LIMPET_MCPROUTE_H
#define LIMPET_MCPROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"
#include "limpet/state.h"

#define LP_MCPROUTE_CHILD 0u      /* dest of a line for the child */
#define LP_MCPROUTE_ATT_MAX 1024u /* attachments to one child at once */

typedef struct lp_mcproute lp_mcproute;

/* max_inflight: requests in flight to the child at once (a host request beyond it is
 * answered with an error "too many requests in flight"). max_held: bytes of host lines the
 * route may hold while a fresh child is initialized, and apart from those, of initializes
 * waiting for the first one's answer; a line beyond it is refused the same way (a request
 * answered with that error, anything else dropped), except that an empty queue takes any
 * one line. NULL when out of memory. */
lp_mcproute *lp_mcproute_new(size_t max_inflight, size_t max_held);
void lp_mcproute_free(lp_mcproute *r);

/* att (never 0) joins / leaves for good. Attach: LP_ERR_NOSPACE at LP_MCPROUTE_ATT_MAX,
 * LP_ERR_NOMEM; either way att is not attached. Detach cancels its requests in flight:
 * LP_ERR_NOT_FOUND when att is not attached (never was, or the child exited), LP_ERR_NOMEM
 * when not every cancellation could be queued (att is detached all the same). */
LP_MUST_USE lp_err lp_mcproute_attach(lp_mcproute *r, uint64_t att);
LP_MUST_USE lp_err lp_mcproute_detach(lp_mcproute *r, uint64_t att);

/* One whole line (without '\n') from attachment att / from the child. LP_ERR_NOMEM only;
 * LP_ERR_NOT_FOUND when att is not attached (nothing queued). */
LP_MUST_USE lp_err lp_mcproute_from_att(lp_mcproute *r, uint64_t att, const uint8_t *line,
                                        size_t len);
LP_MUST_USE lp_err lp_mcproute_from_child(lp_mcproute *r, const uint8_t *line, size_t len);

/* The child exited: requests in flight are forgotten (the glue resets the attachments,
 * whose hosts answer them), the initialize cache stays. Attachments are detached without
 * cancellations. */
void lp_mcproute_child_exited(lp_mcproute *r);
/* A new child runs: with a cached initialize it is replayed first (see above). LP_ERR_NOMEM:
 * the replay could not be queued (or, without a cache, a held line could not be routed);
 * the glue does not use this child. */
LP_MUST_USE lp_err lp_mcproute_child_started(lp_mcproute *r);

/* One queued output line: *dest is LP_MCPROUTE_CHILD or an attachment; *line is owned by
 * the caller (free()), ends with '\n', *len counts it. False when nothing is queued. */
bool lp_mcproute_next(lp_mcproute *r, uint64_t *dest, char **line, size_t *len);

/* Requests in flight to the child; bytes of output and held host lines queued (for
 * backpressure); every byte the route holds in lines, initializes waiting included (for the
 * process's memory count). */
size_t lp_mcproute_inflight(const lp_mcproute *r);
size_t lp_mcproute_queued(const lp_mcproute *r);
size_t lp_mcproute_memory(const lp_mcproute *r);
/* True when the child has been sent an initialize this life (2025-era session). */
bool lp_mcproute_initialized(const lp_mcproute *r);

/* ---- upgrade in place (mcproute_state.c) --------------------------------------------------- */

/* Saves the router into one LP_STATE_MCPROUTE section: attachments in order, every request in
 * flight (ids and progress tokens both as the child and as the host knows them, orphans too),
 * the child's requests awaiting a host, the output, held and waiting lines, the initialize
 * cache and where the child is in its life. */
LP_MUST_USE lp_err lp_mcproute_save(const lp_mcproute *r, struct lp_state_wr *w);

/* Loads the next section (LP_STATE_MCPROUTE) into a new router with the new max_inflight and
 * max_held: it
 * goes on exactly where the saved one was (the same child, the same attachment ids). On
 * refusal nothing is built and rd->why says why. Returns owned. */
LP_MUST_USE lp_err lp_mcproute_load(struct lp_state_rd *rd, size_t max_inflight, size_t max_held,
                                    lp_mcproute **rp);

#endif
