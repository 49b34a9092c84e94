/* mcppool_state.c — the MCP pool saved to and loaded from a state file (upgrade in place). See
 * mcppool.h for the contract and docs/PROTOCOL.md ("State file") for the layout.
 *
 * Every entry crosses with its key, state, attachments and waiters in order, its clocks as
 * ages (how long ago it was last used, its child started) and its backoff as the time left;
 * the actions the glue has not drained yet cross too. The children themselves are the glue's:
 * it saves, beside this section, which process and pipes serve which entry id and re-adopts
 * them. The limits are the new configuration's.
 *
 * Entries are saved oldest first, which is also increasing id order (ids come from a counter
 * and entries join at the tail), and a load checks that order: it is the LRU tie-break, and it
 * makes repeated ids impossible.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/state.h"
#include "mcppool_internal.h"

enum {
    EF_EPHEMERAL = 1u << 0,
    EF_STOP_OWED = 1u << 1,
    EF_ALL = (1u << 2) - 1,
};

#define ENTRY_MIN 48u  /* a saved entry with empty texts and no attachments */
#define ACTION_MIN 25u /* a saved action with empty texts */

/* ---- saving ------------------------------------------------------------------------------- */

static void save_entry(struct lp_state_wr *w, const struct entry *e, lp_time now)
{
    lp_state_put_u64(w, e->id);
    lp_state_put_u8(w, (uint8_t)e->state);
    lp_state_put_u8(
        w, (uint8_t)((e->ephemeral ? EF_EPHEMERAL : 0) | (e->stop_owed ? EF_STOP_OWED : 0)));
    lp_state_put_text(w, e->name, strnlen(e->name, KEY_MAX));
    lp_state_put_text(w, e->scope, strnlen(e->scope, KEY_MAX));
    lp_state_put_text(w, e->owner, strnlen(e->owner, KEY_MAX));
    lp_state_put_text(w, e->stop_why, strnlen(e->stop_why, WHY_MAX));
    lp_state_put_u64(w, lp_state_age(now, e->last_used));
    lp_state_put_u64(w, lp_state_age(now, e->started_at));
    lp_state_put_u32(w, e->quick_deaths);
    lp_state_put_u64(w, lp_state_left(now, e->restart_at));
    lp_state_put_u32(w, (uint32_t)e->natts);
    for (size_t i = 0; i < e->natts; i++)
        lp_state_put_u64(w, e->atts[i]);
}

static void save_action(struct lp_state_wr *w, const struct lp_mcppool_action *a)
{
    lp_state_put_u8(w, (uint8_t)a->type);
    lp_state_put_u64(w, a->entry);
    lp_state_put_u64(w, a->att);
    lp_state_put_text(w, a->name, strnlen(a->name, sizeof(a->name)));
    lp_state_put_text(w, a->scope, strnlen(a->scope, sizeof(a->scope)));
    lp_state_put_u16(w, a->code);
    lp_state_put_text(w, a->why, strnlen(a->why, sizeof(a->why)));
}

lp_err lp_mcppool_save(const lp_mcppool *p, struct lp_state_wr *w, lp_time now)
{
    lp_state_section_begin(w, LP_STATE_MCPPOOL);
    lp_state_put_u64(w, p->next_id);
    lp_state_put_u32(w, (uint32_t)p->nentries);
    for (const struct entry *e = p->head; e != NULL; e = e->next)
        save_entry(w, e, now);
    lp_state_put_u32(w, (uint32_t)p->qlen);
    for (size_t i = 0; i < p->qlen; i++)
        save_action(w, &p->q[p->qhead + i]);
    lp_state_section_end(w);
    return w->err;
}

/* ---- loading -------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The checks on an entry's fields that need no other entry. */
static void check_entry(struct lp_state_rd *rd, const struct entry *e, uint8_t flags)
{
    bool may_have_atts = e->state == ST_STARTING || e->state == ST_LIVE;

    if (flags & ~(unsigned)EF_ALL)
        lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 ": unknown flags 0x%02x", e->id,
                      (unsigned)flags);
    else if (e->name[0] == '\0' || e->scope[0] == '\0')
        lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 ": an empty name or scope", e->id);
    else if (e->stop_owed && e->state != ST_STOPPING)
        lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 ": a STOP owed while not stopping",
                      e->id);
    else if (e->natts > 0 && !may_have_atts)
        lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 ": attachments in state %u", e->id,
                      (unsigned)e->state);
}

static void load_atts(struct lp_state_rd *rd, struct entry *e)
{
    size_t n = lp_state_count(rd, 8, SIZE_MAX / sizeof(uint64_t) / 2, "attachments");

    if (lp_state_err(rd) != LP_OK)
        return;
    e->cap = LP_MAX(n, (size_t)4);
    if ((e->atts = calloc(e->cap, sizeof(*e->atts))) == NULL) {
        e->cap = 0;
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        e->atts[i] = lp_state_u64(rd);
        if (e->atts[i] == 0)
            lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 ": attachment 0", e->id);
    }
    e->natts = lp_state_err(rd) == LP_OK ? n : 0;
}

/* Reads one entry and appends it to p's list (so a refused load frees it with the pool). */
static void load_entry(struct lp_state_rd *rd, lp_mcppool *p, struct entry **tail, lp_time now,
                       uint64_t prev_id)
{
    struct entry *e = calloc(1, sizeof(*e));
    uint8_t state, flags;

    if (e == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    *tail = e;
    p->nentries++;
    e->id = lp_state_u64(rd);
    state = lp_state_u8(rd);
    flags = lp_state_u8(rd);
    lp_state_cstr(rd, e->name, sizeof(e->name), "an entry's name");
    lp_state_cstr(rd, e->scope, sizeof(e->scope), "an entry's scope");
    lp_state_cstr(rd, e->owner, sizeof(e->owner), "an entry's owner");
    lp_state_cstr(rd, e->stop_why, sizeof(e->stop_why), "a stop reason");
    e->last_used = lp_state_since(now, lp_state_u64(rd));
    e->started_at = lp_state_since(now, lp_state_u64(rd));
    e->quick_deaths = lp_state_u32(rd);
    e->restart_at = lp_state_due(now, lp_state_u64(rd));
    if (lp_state_err(rd) != LP_OK)
        return;
    if (e->id <= prev_id || e->id >= p->next_id || state > ST_STOPPING) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "entry %" PRIu64 " in state %u out of order", e->id,
                      (unsigned)state);
        return;
    }
    e->state = (enum entry_state)state;
    e->ephemeral = (flags & EF_EPHEMERAL) != 0;
    e->stop_owed = (flags & EF_STOP_OWED) != 0;
    load_atts(rd, e);
    check_entry(rd, e, flags);
    p->natts += e->natts;
}

/* An attachment waits for or is attached to one entry only: lp_mcppool_detach finds it by id. */
static void check_atts_unique(struct lp_state_rd *rd, const lp_mcppool *p)
{
    uint64_t *all;
    size_t k = 0;

    if (lp_state_err(rd) != LP_OK || p->natts == 0)
        return;
    if ((all = calloc(p->natts, sizeof(*all))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (const struct entry *e = p->head; e != NULL; e = e->next)
        for (size_t i = 0; i < e->natts; i++)
            all[k++] = e->atts[i];
    qsort(all, k, sizeof(*all), cmp_u64);
    for (size_t i = 1; i < k; i++) {
        if (all[i] == all[i - 1]) {
            lp_state_fail(rd, LP_ERR_MALFORMED, "attachment %" PRIu64 " named twice", all[i]);
            break;
        }
    }
    free(all);
}

static void load_action(struct lp_state_rd *rd, struct lp_mcppool_action *a)
{
    uint8_t type = lp_state_u8(rd);

    memset(a, 0, sizeof(*a));
    a->entry = lp_state_u64(rd);
    a->att = lp_state_u64(rd);
    lp_state_cstr(rd, a->name, sizeof(a->name), "an action's name");
    lp_state_cstr(rd, a->scope, sizeof(a->scope), "an action's scope");
    a->code = lp_state_u16(rd);
    lp_state_cstr(rd, a->why, sizeof(a->why), "an action's reason");
    if (lp_state_err(rd) == LP_OK && type > LP_MCPPOOL_RESET)
        lp_state_fail(rd, LP_ERR_MALFORMED, "action of type %u", (unsigned)type);
    a->type = (enum lp_mcppool_act_type)type;
}

/* The queue gets the room lp_mcppool_open would have reserved (mcppool.c): the calls that
 * cannot fail must still find room for every action they may queue. */
static void load_actions(struct lp_state_rd *rd, lp_mcppool *p)
{
    size_t n = lp_state_count(rd, ACTION_MIN, SIZE_MAX / sizeof(*p->q) / 4, "actions");

    if (lp_state_err(rd) != LP_OK)
        return;
    p->qcap = n + 3 + 2 * (p->natts + 1) + (p->nentries + 1);
    if ((p->q = calloc(p->qcap, sizeof(*p->q))) == NULL) {
        p->qcap = 0;
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
        load_action(rd, &p->q[p->qlen++]);
}

lp_err lp_mcppool_load(struct lp_state_rd *rd, const struct lp_mcppool_limits *lim, lp_time now,
                       lp_mcppool **pp)
{
    struct lp_state_mark mark;
    lp_mcppool *p = NULL;
    struct entry **tail;
    uint64_t prev_id = 0;
    size_t n;

    *pp = NULL;
    lp_state_enter(rd, LP_STATE_MCPPOOL, &mark);
    if (lp_state_err(rd) == LP_OK && (p = lp_mcppool_new(lim)) == NULL)
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
    if (p != NULL) {
        p->next_id = lp_state_u64(rd);
        if (lp_state_err(rd) == LP_OK && p->next_id == 0)
            lp_state_fail(rd, LP_ERR_MALFORMED, "next entry id 0");
        n = lp_state_count(rd, ENTRY_MIN, SIZE_MAX, "entries");
        tail = &p->head;
        for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
            load_entry(rd, p, tail, now, prev_id);
            if (*tail != NULL) {
                prev_id = (*tail)->id;
                tail = &(*tail)->next;
            }
        }
        check_atts_unique(rd, p);
        load_actions(rd, p);
    }
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK) {
        lp_mcppool_free(p);
        return lp_state_err(rd);
    }
    *pp = p;
    return LP_OK;
}
