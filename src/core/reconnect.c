/* reconnect.c — single-flight reconnect loop. See reconnect.h. */
#include "limpet/reconnect.h"

void lp_reconnect_init(struct lp_reconnect *r, lp_time initial, lp_time max, lp_time give_up_after,
                       lp_time now)
{
    r->state = LP_RC_IDLE;
    lp_backoff_init(&r->bo, initial, max);
    r->give_up_after = give_up_after;
    r->down_since = now;
    r->retry_at = LP_TIME_NEVER;
    r->attempt = 0;
    r->attempts = 0;
}

lp_time lp_reconnect_schedule(struct lp_reconnect *r, lp_time now, uint32_t rnd)
{
    if (r->state != LP_RC_IDLE)
        return LP_TIME_NEVER;
    if (r->give_up_after && now >= r->down_since && now - r->down_since >= r->give_up_after) {
        r->state = LP_RC_GAVE_UP;
        return LP_TIME_NEVER;
    }
    r->state = LP_RC_WAITING;
    r->retry_at = now + lp_backoff_next(&r->bo, rnd);
    return r->retry_at;
}

bool lp_reconnect_start(struct lp_reconnect *r, lp_time now, uint64_t *attempt)
{
    if (r->state != LP_RC_WAITING || now < r->retry_at)
        return false;
    r->state = LP_RC_CONNECTING;
    r->retry_at = LP_TIME_NEVER;
    r->attempt++;
    r->attempts++;
    *attempt = r->attempt;
    return true;
}

void lp_reconnect_failed(struct lp_reconnect *r, uint64_t attempt)
{
    if (r->state == LP_RC_CONNECTING && attempt == r->attempt)
        r->state = LP_RC_IDLE;
}

void lp_reconnect_live(struct lp_reconnect *r, uint64_t attempt)
{
    if (r->state != LP_RC_CONNECTING || attempt != r->attempt)
        return;
    r->state = LP_RC_LIVE;
    lp_backoff_reset(&r->bo);
}

void lp_reconnect_down(struct lp_reconnect *r, lp_time now)
{
    if (r->state != LP_RC_LIVE)
        return;
    r->state = LP_RC_IDLE;
    r->down_since = now;
}

void lp_reconnect_restart(struct lp_reconnect *r, lp_time now)
{
    if (r->state == LP_RC_CLOSED || r->state == LP_RC_GAVE_UP)
        return;
    r->state = LP_RC_IDLE;
    r->attempt++; /* whatever was in flight belongs to the old session */
    r->retry_at = LP_TIME_NEVER;
    r->down_since = now;
    lp_backoff_reset(&r->bo);
}

void lp_reconnect_close(struct lp_reconnect *r)
{
    r->state = LP_RC_CLOSED;
    r->retry_at = LP_TIME_NEVER;
    r->attempt++; /* results of an attempt in flight are now stale */
}
