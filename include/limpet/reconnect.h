/* reconnect.h — the client's reconnect loop as a sans-I/O state machine.
 *
 * At most one attempt is in flight: scheduling while one is waiting or running does
 * nothing. Every attempt has an id; results for any id but the current attempt's are
 * ignored, so a late failure from a cancelled or superseded attempt changes nothing.
 * Closing cancels whatever is scheduled or in flight.
 *
 *   IDLE --schedule--> WAITING --start--> CONNECTING --live--> LIVE --down--> IDLE
 *                                              |--failed--> IDLE
 *   any --close--> CLOSED;  IDLE --schedule past give_up_after--> GAVE_UP
 */
#ifndef LIMPET_RECONNECT_H
#define LIMPET_RECONNECT_H

#include <stdbool.h>
#include <stdint.h>

#include "limpet/backoff.h"
#include "limpet/base.h"

enum lp_reconnect_state {
    LP_RC_IDLE,       /* no link and nothing scheduled */
    LP_RC_WAITING,    /* an attempt is scheduled for retry_at */
    LP_RC_CONNECTING, /* an attempt is in flight (TCP, then handshake) */
    LP_RC_LIVE,       /* the link is up */
    LP_RC_CLOSED,     /* closed: nothing more will start */
    LP_RC_GAVE_UP,    /* give_up_after passed without a live link */
};

struct lp_reconnect {
    enum lp_reconnect_state state;
    struct lp_backoff bo;
    lp_time give_up_after; /* give up when down this long (0: never) */
    lp_time down_since;    /* when the link was last lost, or the loop began */
    lp_time retry_at;      /* WAITING: when the attempt may start */
    uint64_t attempt;      /* id of the current attempt; ids only grow */
    uint64_t attempts;     /* attempts started, for status */
};

void lp_reconnect_init(struct lp_reconnect *r, lp_time initial, lp_time max, lp_time give_up_after,
                       lp_time now);
/* From IDLE: schedules the next attempt (the first at once, then full-jitter backoff) and
 * returns when it may start; or gives up. In any other state: returns LP_TIME_NEVER and
 * changes nothing (single flight). */
lp_time lp_reconnect_schedule(struct lp_reconnect *r, lp_time now, uint32_t rnd);
/* The scheduled time came: true (WAITING -> CONNECTING, *attempt = the new id) when an
 * attempt should start now. */
bool lp_reconnect_start(struct lp_reconnect *r, lp_time now, uint64_t *attempt);
/* The attempt failed (connect error, timeout, handshake refused as transient). */
void lp_reconnect_failed(struct lp_reconnect *r, uint64_t attempt);
/* The attempt's handshake finished: the link is live, the backoff starts over. */
void lp_reconnect_live(struct lp_reconnect *r, uint64_t attempt);
/* The live link was lost at `now`. */
void lp_reconnect_down(struct lp_reconnect *r, lp_time now);
/* A new session replaces the old one: forget the backoff, keep the loop going. */
void lp_reconnect_restart(struct lp_reconnect *r, lp_time now);
void lp_reconnect_close(struct lp_reconnect *r);

#endif
