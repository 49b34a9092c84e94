/* reverse.h — reverse forwarding (-R): listeners the server opens for a client's session.
 *
 * The client sends BIND(request id, "ADDR:PORT") for each -R forward when a session starts.
 * The server checks the identity's allow.reverse list, listens, and answers BIND_OK(port,
 * address) or BIND_FAIL(code, reason). Each connection to such a listener becomes a stream of
 * kind REVERSE that the server opens towards the client (target = the bind spec, arg = the
 * request id in decimal); the client dials the forward's HOST:HOSTPORT.
 *
 * A listener lives as long as its session, across link drops. While the client is away, a new
 * connection waits in the replay buffer for up to forward.reverse_wait (0: refused at once);
 * connections already open pause and resume like any stream.
 */
#ifndef LIMPET_REVERSE_H
#define LIMPET_REVERSE_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/fwdspec.h"
#include "limpet/mux.h"
#include "limpet/session.h"
#include "limpet/stream.h"

/* Listeners one session may hold; more BINDs are refused with LIMIT. */
#define LP_REVERSE_MAX LP_MUX_BIND_QUEUE

/* Server: the peer sent BIND `ev` (id, text = spec). Answers BIND_OK or BIND_FAIL. */
void lp_reverse_bind(struct lp_session *s, const struct lp_mux_event *ev);
/* Server: closes every listener of s (the session is ending). */
void lp_reverse_close_all(struct lp_session *s);
/* Server, after a reload: closes (one log line each) every listener of s that the identity's
 * allow.reverse no longer permits, on the port it really has. Returns how many. */
size_t lp_reverse_recheck(struct lp_session *s);
/* Server: true when a listener of s was asked for with spec and is still allowed; false when
 * none is (a REVERSE stream whose listener lp_reverse_recheck closed). */
bool lp_reverse_spec_allowed(struct lp_session *s, const char *spec);

/* ---- upgrade in place (upgrade.h) ---------------------------------------------------------- */

/* A -R listener as the previous binary hands it over; texts borrowed. */
struct lp_rlistener_image {
    uint32_t req;      /* the BIND request id */
    int fd;            /* the listening socket */
    uint16_t port;     /* the port bound */
    const char *spec;  /* as the client asked ("127.0.0.1:0") */
    const char *local; /* what was bound ("127.0.0.1:41234") */
};

/* Calls fn for each listener of s, in the order lp_reverse_restore rebuilds. */
void lp_reverse_each(struct lp_session *s,
                     void (*fn)(void *user, const struct lp_rlistener_image *), void *user);
/* Takes img->fd as a listener of s (after those already restored) and accepts on it. Errors
 * leave img->fd to the caller. */
LP_MUST_USE lp_err lp_reverse_restore(struct lp_session *s, const struct lp_rlistener_image *img);

/* Client: the bind spec of a -R forward as BIND carries it ("127.0.0.1:8022", "[::1]:0"). */
void lp_reverse_spec(const struct lp_forward *fw, char *out, size_t len);
/* Client: what a -R forward connects to, as lp_stream_dial takes it ("host:port",
 * "[v6]:port" or "unix:/path"). */
void lp_reverse_target(const struct lp_forward *fw, char *out, size_t len);
/* Client: the server opened a REVERSE stream (ev): dials fw's HOST:HOSTPORT, or resets the
 * stream when fw is NULL (no such request). */
void lp_reverse_open(struct lp_session *s, const struct lp_mux_event *ev,
                     const struct lp_forward *fw);

#endif
