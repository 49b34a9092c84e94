/* admit.h — who may start a handshake now. Sans-I/O.
 *
 * A server holds some state for every connection that has not authenticated yet, so a
 * stranger could exhaust it by opening connections and saying nothing. Admission caps them:
 * at most max_pending in total and max_per_source from one source; and a source whose
 * handshakes fail waits a delay that doubles with each failure (base .. max) before it may
 * try again, so guessing keys is slow. A success clears the source's delay. Established
 * sessions never count here.
 *
 * A source is an IPv4 address, or an IPv6 /64: one host is commonly given a whole /64, so
 * counting IPv6 addresses one by one would give one attacker 2^64 sources. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is the IPv4 address it maps.
 *
 * At max_per_source (or during a source's delay) the newest connection is refused: it is that
 * source's own. At max_pending the newest is let in and an older connection that has not yet
 * completed a handshake step (lp_admit_settle: for TLS, authentication) is dropped in its
 * place, so idle strangers cannot hold the table against real clients: the oldest such
 * connection of the source holding the most of them (of sources holding equally many, the one
 * that got there first). Oldest alone is not enough: a flood that reconnects faster than a
 * handshake takes would push a real client out before it authenticates; this way a source only
 * ever pushes out its own connections until every source holds one. Only when every pending
 * connection has settled is the newest refused.
 *
 * Each counted connection is an lp_admit_entry the glue embeds in its own connection object;
 * the core links entries in age order and hands back the one to drop, never calling out.
 *
 * Sources are kept in a fixed table (sized at creation); when it is full, the least recently
 * seen source with nothing pending is forgotten.
 */
#ifndef LIMPET_ADMIT_H
#define LIMPET_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"

#define LP_ADMIT_ADDR_MAX 16u /* IPv6 */
#define LP_ADMIT_KEY_MAX 8u   /* a source key: an IPv4 address or an IPv6 /64 */

struct lp_admit_config {
    size_t max_pending;    /* total unauthenticated connections */
    size_t max_per_source; /* from one source (IPv4 address, IPv6 /64) */
    lp_time penalty_base;  /* delay after the first failure */
    lp_time penalty_max;   /* cap on the delay */
};

enum lp_admit_verdict {
    LP_ADMIT_OK,          /* admitted and counted: call lp_admit_leave when it ends */
    LP_ADMIT_FULL,        /* max_pending reached and every pending connection has settled */
    LP_ADMIT_SOURCE_FULL, /* max_per_source reached for this source */
    LP_ADMIT_PENALTY,     /* this source failed recently: not yet */
};

/* One counted connection, embedded in the glue's connection object. Zero it before its first
 * lp_admit_enter; its fields are the core's. */
struct lp_admit_entry {
    struct lp_admit_entry *prev, *next; /* the core's age order, while evictable */
    uint32_t source;                    /* its slot in the source table */
    uint8_t state;                      /* 0: not counted; else admitted, and maybe settled */
};

typedef struct lp_admit lp_admit;

/* Returns owned (free with lp_admit_free). */
LP_MUST_USE lp_err lp_admit_new(const struct lp_admit_config *cfg, lp_admit **out);
void lp_admit_free(lp_admit *a);

/* A new connection from addr (4 or 16 bytes, borrowed), to be counted in e (borrowed until
 * it leaves). *evicted is NULL, or (with LP_ADMIT_OK) the entry of an older connection dropped
 * to make room: it is no longer counted (lp_admit_leave on it does nothing) and the caller
 * must close that connection. */
enum lp_admit_verdict lp_admit_enter(lp_admit *a, struct lp_admit_entry *e, const uint8_t *addr,
                                     size_t len, lp_time now, struct lp_admit_entry **evicted);
/* e completed a handshake step (it authenticated): it is no longer dropped for room, though
 * it still counts until it leaves. */
void lp_admit_settle(lp_admit *a, struct lp_admit_entry *e);
/* e's connection ended its handshake phase (any way). Idempotent. */
void lp_admit_leave(lp_admit *a, struct lp_admit_entry *e);
/* A handshake from this source failed authentication at `now`: the delay doubles. */
void lp_admit_failed(lp_admit *a, const uint8_t *addr, size_t len, lp_time now);
/* A handshake from this source succeeded: its delay is forgotten. */
void lp_admit_succeeded(lp_admit *a, const uint8_t *addr, size_t len);
size_t lp_admit_pending(const lp_admit *a);
const char *lp_admit_reason(enum lp_admit_verdict v);
/* The source addr counts as: writes its key (IPv4 address, or the first 8 bytes of an IPv6
 * address) and returns its length, 4 or 8; 0 when len is neither 4 nor 16. */
size_t lp_admit_source_key(const uint8_t *addr, size_t len, uint8_t key[LP_ADMIT_KEY_MAX]);

#endif
