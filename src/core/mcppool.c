/* mcppool.c — the server's MCP session pool: lifecycle of the children per (name, scope).
 * See mcppool.h.
 *
 * Sizes: entries counted against max_sessions are at most max_sessions; STOPPING entries
 * are on top of that, each freed when the glue reports its child gone, which the glue's
 * stop sequence (stdin closed, SIGTERM, SIGKILL after mcp.stop_grace) bounds in time.
 * Attachments are the glue's streams, bounded by its own stream limits. Lookups are linear
 * scans: a few hundred entries, touched once per OPEN/detach/exit, not per message.
 *
 * The action queue never loses an action. The calls that cannot fail (detach, started,
 * exited, close_*, tick) must still queue actions, so lp_mcppool_open, which can return
 * LP_ERR_NOMEM, reserves room first for everything that can be queued before the next open:
 * at most two actions per attachment (ACCEPT, then REFUSE or RESET) and one STOP per entry,
 * since only an OPEN adds attachments or entries or emits a SPAWN.
 */
#include "limpet/mcppool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "mcppool_internal.h"

/* ---- the action queue ------------------------------------------------------------------- */

static bool grow_queue(lp_mcppool *p, size_t need)
{
    struct lp_mcppool_action *nq;
    size_t ncap = p->qcap ? p->qcap : 16;

    if (need <= p->qcap)
        return true;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / sizeof(*nq))
            return false;
        ncap *= 2;
    }
    if ((nq = malloc(ncap * sizeof(*nq))) == NULL)
        return false;
    if (p->qlen)
        memcpy(nq, p->q + p->qhead, p->qlen * sizeof(*nq));
    free(p->q);
    p->q = nq;
    p->qcap = ncap;
    p->qhead = 0;
    return true;
}

/* Room for every action that can be queued before the next OPEN (see the top of the file):
 * this OPEN's own (an ACCEPT or REFUSE, a SPAWN, an eviction's STOP), two per attachment
 * counting the new one, one STOP per entry counting a new one. */
static bool reserve(lp_mcppool *p)
{
    size_t need = p->qlen + 3 + 2 * (p->natts + 1) + (p->nentries + 1);
    return grow_queue(p, need);
}

static struct lp_mcppool_action *push(lp_mcppool *p, enum lp_mcppool_act_type type,
                                      const struct entry *e, uint64_t att)
{
    struct lp_mcppool_action *a;

    if (p->qhead + p->qlen == p->qcap && p->qhead > 0) {
        memmove(p->q, p->q + p->qhead, p->qlen * sizeof(*a));
        p->qhead = 0;
    }
    /* reserve() made room; growing here is a last resort that cannot be reached */
    if (p->qhead + p->qlen == p->qcap && !grow_queue(p, p->qcap + 1))
        return NULL;
    a = &p->q[p->qhead + p->qlen++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    a->att = att;
    if (e != NULL) {
        a->entry = e->id;
        memcpy(a->name, e->name, sizeof(a->name));
        memcpy(a->scope, e->scope, sizeof(a->scope));
    }
    return a;
}

static void push_rst(lp_mcppool *p, enum lp_mcppool_act_type type, const struct entry *e,
                     uint64_t att, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void push_rst(lp_mcppool *p, enum lp_mcppool_act_type type, const struct entry *e,
                     uint64_t att, uint16_t code, const char *fmt, ...)
{
    struct lp_mcppool_action *a = push(p, type, e, att);
    va_list ap;

    if (a == NULL)
        return;
    a->code = code;
    va_start(ap, fmt);
    if (vsnprintf(a->why, sizeof(a->why), fmt, ap) < 0)
        a->why[0] = '\0';
    va_end(ap);
}

static void push_stop(lp_mcppool *p, const struct entry *e, const char *why)
{
    struct lp_mcppool_action *a = push(p, LP_MCPPOOL_STOP, e, 0);

    if (a != NULL)
        snprintf(a->why, sizeof(a->why), "%s", why);
}

/* ---- entries ------------------------------------------------------------------------------ */

static lp_time sat_add(lp_time a, lp_time b)
{
    return b > LP_TIME_NEVER - a ? LP_TIME_NEVER : a + b;
}

static bool counted(const struct entry *e)
{
    return e->state != ST_STOPPING;
}

/* Idle entries are the ones eviction and idle_timeout may end. */
static bool detached(const struct entry *e)
{
    return (e->state == ST_LIVE && e->natts == 0) || e->state == ST_CRASHED;
}

static bool valid_key(const char *s)
{
    size_t n = s ? strnlen(s, KEY_MAX) : 0;
    return n >= 1 && n < KEY_MAX;
}

static struct entry *find_key(const lp_mcppool *p, const char *name, const char *scope)
{
    for (struct entry *e = p->head; e != NULL; e = e->next)
        if (counted(e) && strcmp(e->name, name) == 0 && strcmp(e->scope, scope) == 0)
            return e;
    return NULL; /* a STOPPING entry takes no OPENs: the key gets a new entry */
}

static struct entry *find_id(const lp_mcppool *p, uint64_t id)
{
    for (struct entry *e = p->head; e != NULL; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static struct entry *find_att(const lp_mcppool *p, uint64_t att, size_t *idx)
{
    for (struct entry *e = p->head; e != NULL; e = e->next) {
        for (size_t i = 0; i < e->natts; i++) {
            if (e->atts[i] == att) {
                *idx = i;
                return e;
            }
        }
    }
    return NULL;
}

static bool att_room(struct entry *e)
{
    uint64_t *na;
    size_t ncap;

    if (e->natts < e->cap)
        return true;
    ncap = e->cap ? e->cap * 2 : 4;
    if (ncap > SIZE_MAX / sizeof(*na) || (na = realloc(e->atts, ncap * sizeof(*na))) == NULL)
        return false;
    e->atts = na;
    e->cap = ncap;
    return true;
}

/* Only after att_room said yes. */
static void add_att(lp_mcppool *p, struct entry *e, uint64_t att)
{
    e->atts[e->natts++] = att;
    p->natts++;
}

static void remove_att(lp_mcppool *p, struct entry *e, size_t i)
{
    /* order kept, so actions for the rest stay in the order they came */
    memmove(&e->atts[i], &e->atts[i + 1], (e->natts - i - 1) * sizeof(e->atts[0]));
    e->natts--;
    p->natts--;
}

/* Every waiter or attachment gets `type` (REFUSE or RESET) and is forgotten. */
static void end_atts(lp_mcppool *p, struct entry *e, enum lp_mcppool_act_type type, uint16_t code,
                     const char *prefix, const char *why)
{
    for (size_t i = 0; i < e->natts; i++)
        push_rst(p, type, e, e->atts[i], code, "%s%s", prefix, why);
    p->natts -= e->natts;
    e->natts = 0;
}

static void free_entry(lp_mcppool *p, struct entry *e)
{
    struct entry **pp = &p->head;

    while (*pp != NULL && *pp != e)
        pp = &(*pp)->next;
    if (*pp == NULL)
        return;
    *pp = e->next;
    p->natts -= e->natts;
    p->nentries--;
    free(e->atts);
    free(e);
}

/* The one way an entry with no attachments left ends: a child gets exactly one STOP (now,
 * or once its start is reported), a CRASHED entry has no child and is simply freed. */
static void stop_entry(lp_mcppool *p, struct entry *e, const char *why)
{
    switch (e->state) {
    case ST_LIVE:
        e->state = ST_STOPPING;
        push_stop(p, e, why);
        break;
    case ST_STARTING:
        e->state = ST_STOPPING;
        e->stop_owed = true;
        snprintf(e->stop_why, sizeof(e->stop_why), "%s", why);
        break;
    case ST_CRASHED:
        free_entry(p, e);
        break;
    case ST_STOPPING:
        break;
    }
}

static void close_entry(lp_mcppool *p, struct entry *e, const char *why)
{
    if (e->state == ST_STARTING)
        end_atts(p, e, LP_MCPPOOL_REFUSE, LP_RST_SHUTDOWN, "", why);
    else
        end_atts(p, e, LP_MCPPOOL_RESET, LP_RST_SHUTDOWN, "", why);
    stop_entry(p, e, why);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

lp_mcppool *lp_mcppool_new(const struct lp_mcppool_limits *lim)
{
    lp_mcppool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return NULL;
    p->lim = *lim;
    p->next_id = 1;
    return p;
}

void lp_mcppool_free(lp_mcppool *p)
{
    if (p == NULL)
        return;
    while (p->head != NULL) {
        struct entry *e = p->head;
        p->head = e->next;
        free(e->atts);
        free(e);
    }
    free(p->q);
    free(p);
}

/* Entries owner holds against the caps. */
static size_t owned(const lp_mcppool *p, const char *owner)
{
    size_t n = 0;

    for (const struct entry *e = p->head; e != NULL; e = e->next)
        n += counted(e) && strcmp(e->owner, owner) == 0;
    return n;
}

/* The least recently used detached entry of owner (any owner when NULL). Strictly older wins,
 * so among equals the entry created first goes. */
static struct entry *lru_detached(const lp_mcppool *p, const char *owner)
{
    struct entry *best = NULL;

    for (struct entry *e = p->head; e != NULL; e = e->next)
        if (detached(e) && (owner == NULL || strcmp(e->owner, owner) == 0) &&
            (best == NULL || e->last_used < best->last_used))
            best = e;
    return best;
}

/* At the pool's cap: the asker's own least recently used detached entry first; else one of
 * the identity that holds the most entries, so the heaviest user pays before a light one.
 * Never an attached entry. NULL when nothing is detached. */
static struct entry *pick_victim(const lp_mcppool *p, const char *owner)
{
    struct entry *victim = lru_detached(p, owner), *heaviest = NULL;
    size_t most = 0;

    if (victim != NULL)
        return victim;
    for (struct entry *e = p->head; e != NULL; e = e->next) {
        size_t n;
        if (!detached(e))
            continue;
        n = owned(p, e->owner);
        if (n > most || (n == most && heaviest && e->last_used < heaviest->last_used)) {
            most = n;
            heaviest = e;
        }
    }
    return heaviest != NULL ? lru_detached(p, heaviest->owner) : NULL;
}

static struct entry *new_entry(lp_mcppool *p, const char *owner, const char *name,
                               const char *scope, bool ephemeral)
{
    struct entry *e = calloc(1, sizeof(*e));
    struct entry **pp = &p->head;

    if (e == NULL || !att_room(e)) {
        free(e);
        return NULL;
    }
    e->id = p->next_id++;
    e->ephemeral = ephemeral;
    snprintf(e->owner, sizeof(e->owner), "%s", owner);
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->scope, sizeof(e->scope), "%s", scope);
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = e;
    p->nentries++;
    return e;
}

static void spawn(lp_mcppool *p, struct entry *e, lp_time now)
{
    e->state = ST_STARTING;
    e->stop_owed = false;
    e->started_at = now;
    push(p, LP_MCPPOOL_SPAWN, e, 0);
}

static void refuse_new(lp_mcppool *p, const char *name, const char *scope, uint64_t att,
                       const char *why)
{
    struct entry key = {0};

    snprintf(key.name, sizeof(key.name), "%s", name);
    snprintf(key.scope, sizeof(key.scope), "%s", scope);
    push_rst(p, LP_MCPPOOL_REFUSE, &key, att, LP_RST_LIMIT, "%s", why);
}

/* Which entry a new key of owner displaces, if any: *victim NULL and true when there is room;
 * false (with the reason in why) when the OPEN must be refused. */
static bool make_room(lp_mcppool *p, const char *owner, struct entry **victim, char *why,
                      size_t whylen)
{
    size_t mine = owned(p, owner);

    *victim = NULL;
    if (p->lim.sessions_per_owner > 0 && mine >= p->lim.sessions_per_owner) {
        if ((*victim = lru_detached(p, owner)) == NULL)
            snprintf(why, whylen,
                     "mcp.sessions_per_identity (%zu) reached for identity %s and every one of "
                     "its sessions is in use",
                     p->lim.sessions_per_owner, owner);
        else
            snprintf(why, whylen, "evicted: mcp.sessions_per_identity (%zu) reached",
                     p->lim.sessions_per_owner);
        return *victim != NULL;
    }
    if (lp_mcppool_size(p) < p->lim.max_sessions)
        return true;
    if ((*victim = pick_victim(p, owner)) == NULL)
        snprintf(why, whylen, "mcp.max_sessions (%zu) reached and every session is in use",
                 p->lim.max_sessions);
    else
        snprintf(why, whylen, "evicted: mcp.max_sessions (%zu) reached", p->lim.max_sessions);
    return *victim != NULL;
}

static lp_err open_new(lp_mcppool *p, const char *owner, const char *name, const char *scope,
                       bool ephemeral, uint64_t att, lp_time now)
{
    struct entry *victim, *e;
    char why[WHY_MAX];

    if (!make_room(p, owner, &victim, why, sizeof(why))) {
        refuse_new(p, name, scope, att, why);
        return LP_OK;
    }
    if ((e = new_entry(p, owner, name, scope, ephemeral)) == NULL)
        return LP_ERR_NOMEM; /* before the eviction: nothing has changed */
    if (victim != NULL)
        stop_entry(p, victim, why);
    spawn(p, e, now);
    add_att(p, e, att);
    e->last_used = now;
    return LP_OK;
}

/* How long a crashed entry waits before its next start: nothing after the first quick death
 * (one crash may be bad luck), backoff_min after the second in a row, doubling after that. */
static lp_time restart_delay(const struct lp_mcppool_limits *lim, unsigned quick_deaths)
{
    lp_time d = lim->backoff_min;

    if (quick_deaths < 2)
        return 0;
    for (unsigned i = 2; i < quick_deaths && d < lim->backoff_max; i++)
        d = d > LP_TIME_NEVER / 2 ? LP_TIME_NEVER : d * 2;
    return LP_MIN(d, lim->backoff_max);
}

static void refuse_backoff(lp_mcppool *p, const struct entry *e, uint64_t att, lp_time now)
{
    lp_time left = e->restart_at - now;
    char when[32];

    if (left >= 1000)
        snprintf(when, sizeof(when), "%llus", (unsigned long long)((left + 999) / 1000));
    else
        snprintf(when, sizeof(when), "%llums", (unsigned long long)left);
    push_rst(
        p, LP_MCPPOOL_REFUSE, e, att, LP_RST_EXITED,
        "mcp server %s exited %u times within %llums of starting; backing off, next start in %s",
        e->name, e->quick_deaths, (unsigned long long)p->lim.quick_exit, when);
}

lp_err lp_mcppool_open(lp_mcppool *p, const char *owner, const char *name, const char *scope,
                       bool ephemeral, uint64_t att, lp_time now)
{
    struct entry *e;
    size_t idx;

    if (!valid_key(name) || !valid_key(scope) || att == 0 || find_att(p, att, &idx) != NULL ||
        owner == NULL || strlen(owner) >= KEY_MAX)
        return LP_ERR_INVALID;
    if (!reserve(p))
        return LP_ERR_NOMEM;
    if ((e = find_key(p, name, scope)) == NULL)
        return open_new(p, owner, name, scope, ephemeral, att, now);
    if (e->state == ST_CRASHED && now < e->restart_at) {
        refuse_backoff(p, e, att, now);
        return LP_OK;
    }
    if (!att_room(e))
        return LP_ERR_NOMEM;
    if (e->state == ST_CRASHED)
        spawn(p, e, now); /* the same entry id, so the glue's initialize cache still fits */
    else if (e->state == ST_LIVE)
        push(p, LP_MCPPOOL_ACCEPT, e, att);
    add_att(p, e, att);
    e->last_used = now;
    e->ephemeral = e->ephemeral && ephemeral; /* a scoped opener means to come back */
    return LP_OK;
}

void lp_mcppool_detach(lp_mcppool *p, uint64_t att, lp_time now)
{
    size_t i;
    struct entry *e = att ? find_att(p, att, &i) : NULL;

    if (e == NULL)
        return;
    remove_att(p, e, i);
    e->last_used = now;
    if (e->natts == 0 && e->ephemeral)
        stop_entry(p, e, "its last attachment left (opened without a scope)");
}

void lp_mcppool_started(lp_mcppool *p, uint64_t entry, bool ok, const char *why, lp_time now)
{
    struct entry *e = find_id(p, entry);

    if (e == NULL)
        return;
    if (e->state == ST_STOPPING && e->stop_owed) {
        e->stop_owed = false;
        if (ok)
            push_stop(p, e, e->stop_why);
        else
            free_entry(p, e); /* no child: nothing to stop */
        return;
    }
    if (e->state != ST_STARTING)
        return;
    if (!ok) {
        char prefix[KEY_MAX + 40];
        snprintf(prefix, sizeof(prefix), "cannot start mcp server %s: ", e->name);
        end_atts(p, e, LP_MCPPOOL_REFUSE, LP_RST_UNAVAILABLE, prefix, why ? why : "?");
        free_entry(p, e);
        return;
    }
    e->state = ST_LIVE;
    e->started_at = now;
    e->last_used = now;
    for (size_t i = 0; i < e->natts; i++)
        push(p, LP_MCPPOOL_ACCEPT, e, e->atts[i]);
}

static void crash(lp_mcppool *p, struct entry *e, const char *why, lp_time now)
{
    char prefix[KEY_MAX + 16];
    lp_time lived = now > e->started_at ? now - e->started_at : 0;

    snprintf(prefix, sizeof(prefix), "mcp server %s ", e->name);
    end_atts(p, e, LP_MCPPOOL_RESET, LP_RST_EXITED, prefix, why ? why : "exited");
    e->quick_deaths = lived <= p->lim.quick_exit ? e->quick_deaths + 1 : 0;
    e->restart_at = sat_add(now, restart_delay(&p->lim, e->quick_deaths));
    e->state = ST_CRASHED;
    e->last_used = now; /* the idle clock of a crashed entry starts at the crash */
}

void lp_mcppool_exited(lp_mcppool *p, uint64_t entry, const char *why, lp_time now)
{
    struct entry *e = find_id(p, entry);

    if (e == NULL)
        return;
    switch (e->state) {
    case ST_STOPPING:
        free_entry(p, e);
        break;
    case ST_STARTING:
    case ST_LIVE:
        crash(p, e, why, now);
        break;
    case ST_CRASHED:
        break; /* no child to be gone: a stale report */
    }
}

/* ---- closing and time ---------------------------------------------------------------------- */

enum match_by { BY_SCOPE, BY_NAME, BY_ALL };

static size_t close_matching(lp_mcppool *p, enum match_by by, const char *key, const char *why)
{
    size_t n = 0;
    struct entry *next;

    if (why == NULL)
        why = "closed";
    for (struct entry *e = p->head; e != NULL; e = next) {
        next = e->next; /* close_entry may free e */
        if (!counted(e))
            continue; /* STOPPING already: its one STOP is out (or owed) */
        if ((by == BY_SCOPE && strcmp(e->scope, key) != 0) ||
            (by == BY_NAME && strcmp(e->name, key) != 0))
            continue;
        close_entry(p, e, why);
        n++;
    }
    return n;
}

size_t lp_mcppool_close_scope(lp_mcppool *p, const char *scope, const char *why, lp_time now)
{
    (void)now;
    return scope ? close_matching(p, BY_SCOPE, scope, why) : 0;
}

size_t lp_mcppool_close_server(lp_mcppool *p, const char *name, const char *why, lp_time now)
{
    (void)now;
    return name ? close_matching(p, BY_NAME, name, why) : 0;
}

size_t lp_mcppool_close_all(lp_mcppool *p, const char *why, lp_time now)
{
    (void)now;
    return close_matching(p, BY_ALL, "", why);
}

void lp_mcppool_tick(lp_mcppool *p, lp_time now)
{
    struct entry *next;
    char why[WHY_MAX];

    snprintf(why, sizeof(why), "idle for %llums (mcp.idle_timeout)",
             (unsigned long long)p->lim.idle_timeout);
    for (struct entry *e = p->head; e != NULL; e = next) {
        next = e->next; /* stop_entry may free e */
        if (detached(e) && now >= sat_add(e->last_used, p->lim.idle_timeout))
            stop_entry(p, e, why);
    }
}

lp_time lp_mcppool_deadline(const lp_mcppool *p)
{
    lp_time t = LP_TIME_NEVER;

    for (const struct entry *e = p->head; e != NULL; e = e->next)
        if (detached(e))
            t = LP_MIN(t, sat_add(e->last_used, p->lim.idle_timeout));
    return t;
}

bool lp_mcppool_next(lp_mcppool *p, struct lp_mcppool_action *a)
{
    if (p->qlen == 0)
        return false;
    *a = p->q[p->qhead++];
    if (--p->qlen == 0)
        p->qhead = 0;
    return true;
}

size_t lp_mcppool_size(const lp_mcppool *p)
{
    size_t n = 0;

    for (const struct entry *e = p->head; e != NULL; e = e->next)
        n += counted(e);
    return n;
}

size_t lp_mcppool_entries(const lp_mcppool *p)
{
    return p->nentries;
}

bool lp_mcppool_has_entry(const lp_mcppool *p, uint64_t entry)
{
    return find_id(p, entry) != NULL;
}

uint64_t lp_mcppool_entry_of(const lp_mcppool *p, uint64_t att)
{
    size_t i;
    const struct entry *e = att ? find_att(p, att, &i) : NULL;

    return e ? e->id : 0;
}
