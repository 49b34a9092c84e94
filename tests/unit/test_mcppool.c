/* test_mcppool.c — the MCP session pool (mcppool.h): start dedupe, eviction, idle, owner
 * teardown (one STOP per child whatever asks), crashes and their backoff, all with a fake clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/base.h"
#include "limpet/frame.h"
#include "limpet/mcppool.h"
#include "limpet/state.h"
#include "state_check.h"

static const struct lp_mcppool_limits LIMITS = {
    .max_sessions = 3,
    .idle_timeout = 10000,
    .quick_exit = 5000,
    .backoff_min = 1000,
    .backoff_max = 8000,
};

static lp_mcppool *pool(void)
{
    lp_mcppool *p = lp_mcppool_new(&LIMITS);
    assert_non_null(p);
    return p;
}

/* The next action must be of this type for this entry and attachment; returned for more
 * checks. */
static struct lp_mcppool_action take(lp_mcppool *p, enum lp_mcppool_act_type type, uint64_t entry,
                                     uint64_t att)
{
    struct lp_mcppool_action a;

    assert_true(lp_mcppool_next(p, &a));
    assert_int_equal(a.type, type);
    assert_int_equal(a.entry, entry);
    assert_int_equal(a.att, att);
    return a;
}

static void none_left(lp_mcppool *p)
{
    struct lp_mcppool_action a;
    assert_false(lp_mcppool_next(p, &a));
}

/* OPEN then a successful start: the entry id the SPAWN named. */
static uint64_t open_live(lp_mcppool *p, const char *name, const char *scope, uint64_t att,
                          lp_time now)
{
    struct lp_mcppool_action a;

    assert_int_equal(lp_mcppool_open(p, "", name, scope, false, att, now), LP_OK);
    assert_true(lp_mcppool_next(p, &a));
    assert_int_equal(a.type, LP_MCPPOOL_SPAWN);
    assert_string_equal(a.name, name);
    assert_string_equal(a.scope, scope);
    lp_mcppool_started(p, a.entry, true, NULL, now);
    take(p, LP_MCPPOOL_ACCEPT, a.entry, att);
    none_left(p);
    return a.entry;
}

/* ---- starting ------------------------------------------------------------------------------ */

static void test_mcppool_open_spawns_once_and_accepts_when_started(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k1", false, 7, 100), LP_OK);
    struct lp_mcppool_action a = take(p, LP_MCPPOOL_SPAWN, 1, 0);
    assert_string_equal(a.name, "memory");
    assert_string_equal(a.scope, "k1");
    none_left(p); /* waits for the start */
    assert_int_equal(lp_mcppool_entry_of(p, 7), 1);
    lp_mcppool_started(p, 1, true, NULL, 150);
    take(p, LP_MCPPOOL_ACCEPT, 1, 7);
    none_left(p);
    assert_int_equal(lp_mcppool_size(p), 1);
    lp_mcppool_free(p);
}

static void test_mcppool_racing_opens_share_one_spawn(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 1, 0), LP_OK);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 1), LP_OK);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 3, 2), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    none_left(p); /* one SPAWN for three OPENs */
    assert_int_equal(lp_mcppool_entry_of(p, 3), 1);
    lp_mcppool_started(p, 1, true, NULL, 5);
    take(p, LP_MCPPOOL_ACCEPT, 1, 1);
    take(p, LP_MCPPOOL_ACCEPT, 1, 2);
    take(p, LP_MCPPOOL_ACCEPT, 1, 3);
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), 1);
    lp_mcppool_free(p);
}

static void test_mcppool_failed_start_refuses_every_waiter_without_stop(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    for (uint64_t att = 1; att <= 3; att++)
        assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, att, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_started(p, 1, false, "no such file: npx", 1);
    for (uint64_t att = 1; att <= 3; att++) {
        struct lp_mcppool_action a = take(p, LP_MCPPOOL_REFUSE, 1, att);
        assert_int_equal(a.code, LP_RST_UNAVAILABLE);
        assert_string_equal(a.why, "cannot start mcp server memory: no such file: npx");
        assert_int_equal(lp_mcppool_entry_of(p, att), 0);
    }
    none_left(p); /* no STOP: there is no child */
    assert_int_equal(lp_mcppool_entries(p), 0);
    /* the next OPEN tries again with a new entry */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 4, 2), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 2, 0);
    lp_mcppool_free(p);
}

static void test_mcppool_open_on_live_entry_accepts_at_once(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 10), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, e, 2);
    none_left(p);
    /* another scope or name is another entry */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k2", false, 3, 10), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e + 1, 0);
    assert_int_equal(lp_mcppool_open(p, "", "everything", "k", false, 4, 10), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e + 2, 0);
    assert_int_equal(lp_mcppool_size(p), 3);
    lp_mcppool_free(p);
}

static void test_mcppool_detached_waiter_is_not_accepted(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 1, 0), LP_OK);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_detach(p, 1, 1);
    assert_int_equal(lp_mcppool_entry_of(p, 1), 0);
    lp_mcppool_started(p, 1, true, NULL, 2);
    take(p, LP_MCPPOOL_ACCEPT, 1, 2);
    none_left(p);
    /* the last waiter of a scoped entry leaving keeps the start: the entry goes LIVE idle */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "j", false, 3, 3), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 2, 0);
    lp_mcppool_detach(p, 3, 4);
    lp_mcppool_started(p, 2, true, NULL, 5);
    none_left(p);
    assert_int_equal(lp_mcppool_deadline(p), 5 + LIMITS.idle_timeout);
    lp_mcppool_free(p);
}

static void test_mcppool_ephemeral_start_abandoned_stops_once_started(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "s1", true, 1, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_detach(p, 1, 1);
    none_left(p); /* no child yet: the STOP waits for one */
    assert_int_equal(lp_mcppool_size(p), 0);
    assert_int_equal(lp_mcppool_entries(p), 1);
    lp_mcppool_started(p, 1, true, NULL, 2);
    take(p, LP_MCPPOOL_STOP, 1, 0);
    none_left(p);
    lp_mcppool_exited(p, 1, "killed by signal 15", 3);
    assert_int_equal(lp_mcppool_entries(p), 0);

    /* the same with a failed start: freed, nothing to stop */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "s2", true, 2, 4), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 2, 0);
    lp_mcppool_detach(p, 2, 5);
    lp_mcppool_started(p, 2, false, "fork failed", 6);
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), 0);
    lp_mcppool_free(p);
}

/* ---- the cap -------------------------------------------------------------------------------- */

static void test_mcppool_evicts_least_recently_used_detached_at_cap(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t a = open_live(p, "memory", "a", 1, 0);
    uint64_t b = open_live(p, "memory", "b", 2, 10);
    uint64_t c = open_live(p, "memory", "c", 3, 20);

    lp_mcppool_detach(p, 2, 30); /* b detached first: the oldest detached */
    lp_mcppool_detach(p, 1, 40); /* a was opened first but used later */
    lp_mcppool_detach(p, 3, 50);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "d", false, 4, 60), LP_OK);
    struct lp_mcppool_action s = take(p, LP_MCPPOOL_STOP, b, 0);
    assert_string_equal(s.scope, "b");
    assert_string_equal(s.why, "evicted: mcp.max_sessions (3) reached");
    take(p, LP_MCPPOOL_SPAWN, c + 1, 0);
    none_left(p);
    assert_int_equal(lp_mcppool_size(p), 3);
    assert_int_equal(lp_mcppool_entries(p), 4); /* b is STOPPING until its child is gone */
    lp_mcppool_exited(p, b, "exited with status 0", 70);
    assert_int_equal(lp_mcppool_entries(p), 3);
    /* a re-used entry moves to the back of the line */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "a", false, 5, 80), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, a, 5);
    lp_mcppool_detach(p, 5, 90);
    lp_mcppool_started(p, c + 1, true, NULL, 91);
    take(p, LP_MCPPOOL_ACCEPT, c + 1, 4);
    lp_mcppool_detach(p, 4, 95);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "e", false, 6, 100), LP_OK);
    take(p, LP_MCPPOOL_STOP, c, 0);
    take(p, LP_MCPPOOL_SPAWN, c + 2, 0);
    none_left(p);
    lp_mcppool_free(p);
}

/* ---- fair shares ---------------------------------------------------------------------------- */

static const struct lp_mcppool_limits FAIR = {
    .max_sessions = 4,
    .sessions_per_owner = 3,
    .idle_timeout = 100000,
    .quick_exit = 5000,
    .backoff_min = 1000,
    .backoff_max = 8000,
};

/* owner opens (name "memory", scope) as att and the child starts: the entry id. */
static uint64_t open_as(lp_mcppool *p, const char *owner, const char *scope, uint64_t att,
                        lp_time now)
{
    struct lp_mcppool_action a;

    assert_int_equal(lp_mcppool_open(p, owner, "memory", scope, false, att, now), LP_OK);
    assert_true(lp_mcppool_next(p, &a));
    assert_int_equal(a.type, LP_MCPPOOL_SPAWN);
    lp_mcppool_started(p, a.entry, true, NULL, now);
    take(p, LP_MCPPOOL_ACCEPT, a.entry, att);
    none_left(p);
    return a.entry;
}

/* The attack: one identity opens scope after scope. It used to evict another identity's
 * detached process (and its state) and then starve it with RST LIMIT. */
static void test_mcppool_one_identity_cannot_evict_another(void **state)
{
    (void)state;
    lp_mcppool *p = lp_mcppool_new(&FAIR);
    uint64_t victim = open_as(p, "alice", "notes", 1, 0);
    uint64_t m1, m2, m3;
    struct lp_mcppool_action a;

    lp_mcppool_detach(p, 1, 1); /* alice's host went away; its process waits for it */
    m1 = open_as(p, "mallory", "s1", 10, 10);
    m2 = open_as(p, "mallory", "s2", 11, 11);
    m3 = open_as(p, "mallory", "s3", 12, 12);
    assert_int_equal(lp_mcppool_size(p), 4);
    /* at mallory's share with all of them attached: refused, alice untouched */
    assert_int_equal(lp_mcppool_open(p, "mallory", "memory", "s4", false, 13, 13), LP_OK);
    a = take(p, LP_MCPPOOL_REFUSE, 0, 13);
    assert_int_equal(a.code, LP_RST_LIMIT);
    assert_non_null(strstr(a.why, "mcp.sessions_per_identity (3) reached for identity mallory"));
    none_left(p);
    /* at the share with one detached: mallory's own goes */
    lp_mcppool_detach(p, 11, 14);
    assert_int_equal(lp_mcppool_open(p, "mallory", "memory", "s5", false, 14, 15), LP_OK);
    a = take(p, LP_MCPPOOL_STOP, m2, 0);
    assert_string_equal(a.why, "evicted: mcp.sessions_per_identity (3) reached");
    take(p, LP_MCPPOOL_SPAWN, m3 + 1, 0);
    none_left(p);
    /* alice comes back: her process, her state */
    assert_int_equal(lp_mcppool_open(p, "alice", "memory", "notes", false, 2, 20), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, victim, 2);
    none_left(p);
    (void)m1;
    lp_mcppool_free(p);
}

/* At the pool's cap: the asker's own detached first, else the heaviest holder's; an attached
 * process never. */
static void test_mcppool_at_the_cap_the_asker_pays_then_the_heaviest(void **state)
{
    (void)state;
    lp_mcppool *p = lp_mcppool_new(&FAIR);
    uint64_t a1 = open_as(p, "alice", "a1", 1, 0);
    uint64_t b1 = open_as(p, "bob", "b1", 2, 1);
    uint64_t b2 = open_as(p, "bob", "b2", 3, 2);
    uint64_t c1 = open_as(p, "carol", "c1", 4, 3);
    struct lp_mcppool_action a;

    lp_mcppool_detach(p, 1, 4); /* alice: 1 detached, the oldest detached of all */
    lp_mcppool_detach(p, 3, 5); /* bob: b2 detached */
    lp_mcppool_detach(p, 4, 6); /* carol: c1 detached */
    /* carol asks: her own c1 goes, though alice's a1 is older */
    assert_int_equal(lp_mcppool_open(p, "carol", "memory", "c2", false, 5, 7), LP_OK);
    a = take(p, LP_MCPPOOL_STOP, c1, 0);
    assert_string_equal(a.why, "evicted: mcp.max_sessions (4) reached");
    take(p, LP_MCPPOOL_SPAWN, c1 + 1, 0);
    none_left(p);
    lp_mcppool_started(p, c1 + 1, true, NULL, 8);
    take(p, LP_MCPPOOL_ACCEPT, c1 + 1, 5);
    lp_mcppool_exited(p, c1, "exited with status 0", 8);
    /* dave asks, holding nothing: bob holds the most (2), his detached b2 goes, not alice's */
    assert_int_equal(lp_mcppool_open(p, "dave", "memory", "d1", false, 6, 9), LP_OK);
    take(p, LP_MCPPOOL_STOP, b2, 0);
    take(p, LP_MCPPOOL_SPAWN, c1 + 2, 0);
    none_left(p);
    lp_mcppool_started(p, c1 + 2, true, NULL, 10);
    take(p, LP_MCPPOOL_ACCEPT, c1 + 2, 6);
    lp_mcppool_exited(p, b2, "exited with status 0", 10);
    /* erin asks: only alice's a1 is detached now (bob's b1 is attached): it goes */
    assert_int_equal(lp_mcppool_open(p, "erin", "memory", "e1", false, 7, 11), LP_OK);
    take(p, LP_MCPPOOL_STOP, a1, 0);
    take(p, LP_MCPPOOL_SPAWN, c1 + 3, 0);
    none_left(p);
    lp_mcppool_started(p, c1 + 3, true, NULL, 12);
    take(p, LP_MCPPOOL_ACCEPT, c1 + 3, 7);
    lp_mcppool_exited(p, a1, "exited with status 0", 12);
    /* everything attached: refused, nobody evicted */
    assert_int_equal(lp_mcppool_open(p, "frank", "memory", "f1", false, 8, 13), LP_OK);
    a = take(p, LP_MCPPOOL_REFUSE, 0, 8);
    assert_non_null(strstr(a.why, "every session is in use"));
    none_left(p);
    (void)b1;
    lp_mcppool_free(p);
}

static void test_mcppool_eviction_tie_goes_to_the_oldest_entry(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t a = open_live(p, "memory", "a", 1, 0);

    open_live(p, "memory", "b", 2, 0);
    open_live(p, "memory", "c", 3, 0);
    lp_mcppool_detach(p, 3, 10);
    lp_mcppool_detach(p, 2, 10);
    lp_mcppool_detach(p, 1, 10);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "d", false, 4, 20), LP_OK);
    take(p, LP_MCPPOOL_STOP, a, 0);
    lp_mcppool_free(p);
}

static void test_mcppool_refuses_new_key_when_every_session_is_in_use(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    open_live(p, "memory", "a", 1, 0);
    open_live(p, "memory", "b", 2, 0);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "c", false, 3, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 3, 0); /* STARTING counts and is not evictable */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "d", false, 4, 0), LP_OK);
    struct lp_mcppool_action r = take(p, LP_MCPPOOL_REFUSE, 0, 4);
    assert_int_equal(r.code, LP_RST_LIMIT);
    assert_string_equal(r.name, "memory");
    assert_string_equal(r.scope, "d");
    assert_string_equal(r.why, "mcp.max_sessions (3) reached and every session is in use");
    none_left(p);
    assert_int_equal(lp_mcppool_entry_of(p, 4), 0);
    assert_int_equal(lp_mcppool_entries(p), 3);
    /* an existing key is still served at the cap */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "a", false, 5, 1), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, 1, 5);
    lp_mcppool_free(p);
}

static void test_mcppool_evicting_crashed_entry_frees_it_without_stop(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t a = open_live(p, "memory", "a", 1, 0);

    open_live(p, "memory", "b", 2, 0);
    open_live(p, "memory", "c", 3, 0);
    lp_mcppool_exited(p, a, "exited with status 1", 10000);
    take(p, LP_MCPPOOL_RESET, a, 1);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "d", false, 4, 10001), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 4, 0);
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), 3);
    lp_mcppool_free(p);
}

/* ---- idle and ephemeral -------------------------------------------------------------------- */

static void test_mcppool_detached_entry_stops_after_idle_timeout(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    assert_int_equal(lp_mcppool_deadline(p), LP_TIME_NEVER); /* attached: never idle */
    lp_mcppool_tick(p, 1000000);
    none_left(p);
    lp_mcppool_detach(p, 1, 2000);
    assert_int_equal(lp_mcppool_deadline(p), 12000);
    lp_mcppool_tick(p, 11999);
    none_left(p);
    lp_mcppool_tick(p, 12000);
    struct lp_mcppool_action s = take(p, LP_MCPPOOL_STOP, e, 0);
    assert_string_equal(s.why, "idle for 10000ms (mcp.idle_timeout)");
    none_left(p);
    assert_int_equal(lp_mcppool_deadline(p), LP_TIME_NEVER);
    lp_mcppool_tick(p, 50000); /* STOPPING: no second STOP */
    none_left(p);
    /* a new OPEN meanwhile gets a new entry */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 50001), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e + 1, 0);
    lp_mcppool_exited(p, e, "exited with status 0", 50002);
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), 1);
    lp_mcppool_free(p);
}

static void test_mcppool_reattach_restarts_idle_clock(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_detach(p, 1, 100);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 5000), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, e, 2);
    lp_mcppool_tick(p, 10100);
    none_left(p);
    lp_mcppool_detach(p, 2, 6000);
    assert_int_equal(lp_mcppool_deadline(p), 16000);
    lp_mcppool_free(p);
}

static void test_mcppool_ephemeral_entry_stops_on_last_detach(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "eph-1", true, 1, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_started(p, 1, true, NULL, 1);
    take(p, LP_MCPPOOL_ACCEPT, 1, 1);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "eph-1", true, 2, 2), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, 1, 2);
    lp_mcppool_detach(p, 1, 3);
    none_left(p); /* one attachment left */
    lp_mcppool_detach(p, 2, 4);
    take(p, LP_MCPPOOL_STOP, 1, 0);
    none_left(p);
    assert_int_equal(lp_mcppool_size(p), 0);
    lp_mcppool_tick(p, 1000000);
    lp_mcppool_close_all(p, "shutdown", 1000000);
    none_left(p); /* still exactly one STOP */
    lp_mcppool_free(p);
}

static void test_mcppool_scoped_open_keeps_ephemeral_entry(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", true, 1, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_started(p, 1, true, NULL, 1);
    take(p, LP_MCPPOOL_ACCEPT, 1, 1);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 2), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, 1, 2);
    lp_mcppool_detach(p, 1, 3);
    lp_mcppool_detach(p, 2, 4);
    none_left(p); /* idle now, ends by idle_timeout */
    assert_int_equal(lp_mcppool_deadline(p), 4 + LIMITS.idle_timeout);
    lp_mcppool_free(p);
}

/* ---- closing: exactly one STOP per child ------------------------------------------------------ */

static void test_mcppool_close_scope_twice_stops_each_child_once(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t a = open_live(p, "memory", "k", 1, 0);
    uint64_t b = open_live(p, "everything", "k", 2, 0);

    open_live(p, "memory", "other", 3, 0);
    assert_int_equal(lp_mcppool_close_scope(p, "k", "scope closed", 5), 2);
    struct lp_mcppool_action r = take(p, LP_MCPPOOL_RESET, a, 1);
    assert_int_equal(r.code, LP_RST_SHUTDOWN);
    assert_string_equal(r.why, "scope closed");
    struct lp_mcppool_action s = take(p, LP_MCPPOOL_STOP, a, 0);
    assert_string_equal(s.why, "scope closed");
    take(p, LP_MCPPOOL_RESET, b, 2);
    take(p, LP_MCPPOOL_STOP, b, 0);
    none_left(p);
    assert_int_equal(lp_mcppool_entry_of(p, 1), 0);
    assert_int_equal(lp_mcppool_close_scope(p, "k", "again", 6), 0);
    none_left(p);
    lp_mcppool_tick(p, 1000000); /* other is attached, a and b are STOPPING */
    none_left(p);
    lp_mcppool_exited(p, a, "exited with status 0", 7);
    lp_mcppool_exited(p, b, "killed by signal 9", 7);
    assert_int_equal(lp_mcppool_entries(p), 1);
    lp_mcppool_free(p);
}

static void test_mcppool_close_server_after_idle_and_eviction_adds_no_stop(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t a = open_live(p, "memory", "a", 1, 0);
    uint64_t b = open_live(p, "memory", "b", 2, 0);
    uint64_t c = open_live(p, "memory", "c", 3, 0);

    lp_mcppool_detach(p, 1, 10);
    lp_mcppool_detach(p, 2, 20);
    lp_mcppool_tick(p, 10 + LIMITS.idle_timeout); /* a idles out */
    take(p, LP_MCPPOOL_STOP, a, 0);
    assert_int_equal(lp_mcppool_open(p, "", "everything", "x", false, 4, 10020), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, c + 1, 0); /* below the cap again: no eviction */
    lp_mcppool_detach(p, 3, 10021);
    assert_int_equal(lp_mcppool_open(p, "", "everything", "y", false, 5, 10022), LP_OK);
    take(p, LP_MCPPOOL_STOP, b, 0); /* b evicted */
    take(p, LP_MCPPOOL_SPAWN, c + 2, 0);
    none_left(p);
    /* closing the server now stops only c; a and b already have their STOP */
    assert_int_equal(lp_mcppool_close_server(p, "memory", "config changed", 10030), 1);
    take(p, LP_MCPPOOL_STOP, c, 0);
    none_left(p);
    assert_int_equal(lp_mcppool_close_server(p, "memory", "config changed", 10031), 0);
    /* close_all: the STARTING ones refuse their waiters, their STOPs wait for the start */
    assert_int_equal(lp_mcppool_close_all(p, "shutting down", 10040), 2);
    struct lp_mcppool_action r = take(p, LP_MCPPOOL_REFUSE, c + 1, 4);
    assert_int_equal(r.code, LP_RST_SHUTDOWN);
    take(p, LP_MCPPOOL_REFUSE, c + 2, 5);
    none_left(p);
    assert_int_equal(lp_mcppool_close_all(p, "shutting down", 10041), 0);
    assert_int_equal(lp_mcppool_size(p), 0);
    lp_mcppool_started(p, c + 1, true, NULL, 10050);
    take(p, LP_MCPPOOL_STOP, c + 1, 0);
    lp_mcppool_started(p, c + 2, true, NULL, 10050);
    struct lp_mcppool_action s = take(p, LP_MCPPOOL_STOP, c + 2, 0);
    assert_string_equal(s.why, "shutting down");
    lp_mcppool_started(p, c + 2, true, NULL, 10051); /* a repeated report changes nothing */
    none_left(p);
    for (uint64_t e = a; e <= c + 2; e++)
        lp_mcppool_exited(p, e, "exited with status 0", 10060);
    assert_int_equal(lp_mcppool_entries(p), 0);
    lp_mcppool_free(p);
}

static void test_mcppool_close_frees_crashed_entry_without_stop(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_exited(p, e, "exited with status 1", 100);
    take(p, LP_MCPPOOL_RESET, e, 1);
    assert_int_equal(lp_mcppool_close_all(p, "bye", 200), 1);
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), 0);
    lp_mcppool_free(p);
}

/* ---- crashes -------------------------------------------------------------------------------- */

static void test_mcppool_exit_while_live_resets_and_restarts_same_entry(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 10), LP_OK);
    take(p, LP_MCPPOOL_ACCEPT, e, 2);
    lp_mcppool_exited(p, e, "exited with status 1: boom", 60000);
    for (uint64_t att = 1; att <= 2; att++) {
        struct lp_mcppool_action r = take(p, LP_MCPPOOL_RESET, e, att);
        assert_int_equal(r.code, LP_RST_EXITED);
        assert_string_equal(r.why, "mcp server memory exited with status 1: boom");
    }
    none_left(p); /* no STOP: the child is gone already */
    assert_int_equal(lp_mcppool_entry_of(p, 1), 0);
    assert_int_equal(lp_mcppool_size(p), 1);
    lp_mcppool_exited(p, e, "exited with status 1", 60001); /* a second report: ignored */
    none_left(p);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 3, 60002), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0); /* the same entry id */
    lp_mcppool_started(p, e, true, NULL, 60003);
    take(p, LP_MCPPOOL_ACCEPT, e, 3);
    none_left(p);
    lp_mcppool_free(p);
}

static void test_mcppool_exit_while_starting_resets_waiters(void **state)
{
    (void)state;
    lp_mcppool *p = pool();

    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 1, 0), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, 1, 0);
    lp_mcppool_exited(p, 1, "exited with status 127", 5);
    struct lp_mcppool_action r = take(p, LP_MCPPOOL_RESET, 1, 1);
    assert_int_equal(r.code, LP_RST_EXITED);
    lp_mcppool_started(p, 1, true, NULL, 6); /* late: the entry is CRASHED */
    none_left(p);
    assert_int_equal(lp_mcppool_size(p), 1);
    lp_mcppool_free(p);
}

/* Deaths within quick_exit of the start: the 1st restarts at once, the 2nd waits backoff_min,
 * then 2x, 4x, ... up to backoff_max. */
static void test_mcppool_quick_deaths_back_off_doubling(void **state)
{
    (void)state;
    static const lp_time wait[] = {0, 1000, 2000, 4000, 8000, 8000};
    lp_mcppool *p = pool();
    lp_time now = 0;
    uint64_t att = 1;
    uint64_t e = open_live(p, "memory", "k", att, now);

    for (size_t i = 0; i < sizeof(wait) / sizeof(wait[0]); i++) {
        now += 100;
        lp_mcppool_exited(p, e, "exited with status 1", now);
        take(p, LP_MCPPOOL_RESET, e, att);
        if (wait[i] > 0) {
            assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, ++att, now + wait[i] - 1),
                             LP_OK);
            struct lp_mcppool_action r = take(p, LP_MCPPOOL_REFUSE, e, att);
            char want[160];
            snprintf(want, sizeof(want),
                     "mcp server memory exited %zu times within 5000ms of starting; "
                     "backing off, next start in 1ms",
                     i + 1);
            assert_string_equal(r.why, want);
            assert_int_equal(r.code, LP_RST_EXITED);
            none_left(p);
        }
        now += wait[i];
        assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, ++att, now), LP_OK);
        take(p, LP_MCPPOOL_SPAWN, e, 0);
        lp_mcppool_started(p, e, true, NULL, now);
        take(p, LP_MCPPOOL_ACCEPT, e, att);
        none_left(p);
    }
    lp_mcppool_free(p);
}

static void test_mcppool_backoff_reason_names_seconds_left(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_exited(p, e, "exited with status 1", 10);
    take(p, LP_MCPPOOL_RESET, e, 1);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 10), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0);
    lp_mcppool_started(p, e, true, NULL, 20);
    take(p, LP_MCPPOOL_ACCEPT, e, 2);
    lp_mcppool_exited(p, e, "exited with status 1", 30);
    take(p, LP_MCPPOOL_RESET, e, 2);
    lp_mcppool_exited(p, e, "exited with status 1", 30); /* stale: no third death */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 3, 30), LP_OK);
    struct lp_mcppool_action r = take(p, LP_MCPPOOL_REFUSE, e, 3);
    assert_string_equal(r.why, "mcp server memory exited 2 times within 5000ms of starting; "
                               "backing off, next start in 1s");
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 4, 1030), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0);
    lp_mcppool_exited(p, e, "exited with status 1", 1040); /* third: 2 s, until 3040 */
    take(p, LP_MCPPOOL_RESET, e, 4);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 5, 1540), LP_OK);
    r = take(p, LP_MCPPOOL_REFUSE, e, 5);
    assert_string_equal(r.why, "mcp server memory exited 3 times within 5000ms of starting; "
                               "backing off, next start in 2s"); /* 1.5 s left, rounded up */
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 6, 2540), LP_OK);
    r = take(p, LP_MCPPOOL_REFUSE, e, 6);
    assert_string_equal(r.why, "mcp server memory exited 3 times within 5000ms of starting; "
                               "backing off, next start in 500ms");
    lp_mcppool_free(p);
}

static void test_mcppool_long_lived_child_resets_quick_death_count(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_exited(p, e, "exited with status 1", 100); /* quick #1 */
    take(p, LP_MCPPOOL_RESET, e, 1);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 2, 100), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0);
    lp_mcppool_started(p, e, true, NULL, 100);
    take(p, LP_MCPPOOL_ACCEPT, e, 2);
    lp_mcppool_exited(p, e, "exited with status 1", 100 + 5001); /* lived > quick_exit */
    take(p, LP_MCPPOOL_RESET, e, 2);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 3, 5101), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0); /* at once */
    lp_mcppool_started(p, e, true, NULL, 5101);
    take(p, LP_MCPPOOL_ACCEPT, e, 3);
    lp_mcppool_exited(p, e, "exited with status 1", 5101 + 100); /* quick #1 again */
    take(p, LP_MCPPOOL_RESET, e, 3);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 4, 5201), LP_OK);
    take(p, LP_MCPPOOL_SPAWN, e, 0); /* still at once */
    lp_mcppool_started(p, e, true, NULL, 5201);
    take(p, LP_MCPPOOL_ACCEPT, e, 4);
    /* exactly quick_exit after the start still counts as quick: #2, so a backoff */
    lp_mcppool_exited(p, e, "exited with status 1", 5201 + 5000);
    take(p, LP_MCPPOOL_RESET, e, 4);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 5, 10201), LP_OK);
    take(p, LP_MCPPOOL_REFUSE, e, 5);
    lp_mcppool_free(p);
}

static void test_mcppool_crashed_entry_ends_after_idle_timeout(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_exited(p, e, "exited with status 2", 500);
    take(p, LP_MCPPOOL_RESET, e, 1);
    assert_int_equal(lp_mcppool_deadline(p), 500 + LIMITS.idle_timeout);
    lp_mcppool_tick(p, 500 + LIMITS.idle_timeout);
    none_left(p); /* no child, no STOP */
    assert_int_equal(lp_mcppool_entries(p), 0);
    lp_mcppool_free(p);
}

/* ---- arguments and strays -------------------------------------------------------------------- */

static void test_mcppool_ignores_unknown_ids(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    uint64_t e = open_live(p, "memory", "k", 1, 0);

    lp_mcppool_detach(p, 99, 1);
    lp_mcppool_detach(p, 0, 1);
    lp_mcppool_started(p, 99, true, NULL, 1);
    lp_mcppool_started(p, 99, false, "x", 1);
    lp_mcppool_started(p, e, true, NULL, 1); /* LIVE already */
    lp_mcppool_exited(p, 99, "x", 1);
    assert_int_equal(lp_mcppool_close_scope(p, "nope", "x", 1), 0);
    assert_int_equal(lp_mcppool_close_server(p, "nope", "x", 1), 0);
    none_left(p);
    assert_int_equal(lp_mcppool_entry_of(p, 1), e);
    assert_int_equal(lp_mcppool_entry_of(p, 99), 0);
    assert_int_equal(lp_mcppool_size(p), 1);
    lp_mcppool_free(p);
}

static void test_mcppool_rejects_bad_keys_and_attachment_ids(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    char long_key[129];

    memset(long_key, 'a', sizeof(long_key) - 1);
    long_key[128] = '\0';
    assert_int_equal(lp_mcppool_open(p, "", "", "k", false, 1, 0), LP_ERR_INVALID);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "", false, 1, 0), LP_ERR_INVALID);
    assert_int_equal(lp_mcppool_open(p, "", long_key, "k", false, 1, 0), LP_ERR_INVALID);
    assert_int_equal(lp_mcppool_open(p, "", "memory", long_key, false, 1, 0), LP_ERR_INVALID);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 0, 0), LP_ERR_INVALID);
    none_left(p);
    long_key[127] = '\0'; /* 127 bytes is the longest allowed */
    assert_int_equal(lp_mcppool_open(p, "", long_key, long_key, false, 1, 0), LP_OK);
    struct lp_mcppool_action a = take(p, LP_MCPPOOL_SPAWN, 1, 0);
    assert_string_equal(a.name, long_key);
    assert_int_equal(lp_mcppool_open(p, "", "memory", "k", false, 1, 0), LP_ERR_INVALID);
    none_left(p); /* an attachment id in use is refused without actions */
    lp_mcppool_free(p);
}

static void test_mcppool_queues_in_order_without_draining(void **state)
{
    (void)state;
    struct lp_mcppool_limits lim = LIMITS;
    lim.max_sessions = 1000;
    lp_mcppool *p = lp_mcppool_new(&lim);
    enum { N = 300 };

    assert_non_null(p);
    for (uint64_t i = 1; i <= N; i++) {
        char scope[16];
        snprintf(scope, sizeof(scope), "s%llu", (unsigned long long)i);
        assert_int_equal(lp_mcppool_open(p, "", "memory", scope, false, i, 0), LP_OK);
        assert_int_equal(lp_mcppool_open(p, "", "memory", scope, false, 1000 + i, 0), LP_OK);
    }
    for (uint64_t i = 1; i <= N; i++)
        lp_mcppool_started(p, i, true, NULL, 1);
    for (uint64_t i = 1; i <= N; i += 2)
        lp_mcppool_exited(p, i, "exited with status 1", 2);
    assert_int_equal(lp_mcppool_close_all(p, "bye", 3), N);
    for (uint64_t i = 1; i <= N; i++)
        take(p, LP_MCPPOOL_SPAWN, i, 0);
    for (uint64_t i = 1; i <= N; i++) {
        take(p, LP_MCPPOOL_ACCEPT, i, i);
        take(p, LP_MCPPOOL_ACCEPT, i, 1000 + i);
    }
    for (uint64_t i = 1; i <= N; i += 2) {
        take(p, LP_MCPPOOL_RESET, i, i);
        take(p, LP_MCPPOOL_RESET, i, 1000 + i);
    }
    for (uint64_t i = 2; i <= N; i += 2) {
        take(p, LP_MCPPOOL_RESET, i, i);
        take(p, LP_MCPPOOL_RESET, i, 1000 + i);
        take(p, LP_MCPPOOL_STOP, i, 0);
    }
    none_left(p);
    assert_int_equal(lp_mcppool_entries(p), N / 2);
    lp_mcppool_free(p);
}

static void test_mcppool_free_of_null_is_a_no_op(void **state)
{
    (void)state;
    lp_mcppool_free(NULL);
}

/* ---- upgrade in place ------------------------------------------------------------------ */

enum op_kind {
    OP_OPEN,
    OP_OPEN_EPHEMERAL,
    OP_DETACH,
    OP_STARTED,
    OP_FAILED,
    OP_EXITED,
    OP_TICK,
    OP_CLOSE_SCOPE,
    OP_CLOSE_ALL,
    OP_TAKE,
    OP_DRAIN,
};

struct op {
    enum op_kind kind;
    lp_time t;
    uint64_t id; /* attachment (OPEN, DETACH) or entry (STARTED, FAILED, EXITED) */
    const char *name, *scope;
};

/* Sharing a start, an ephemeral entry ending with its last host, a failed start, eviction at
 * the cap, a crash and a restart of the same entry, quick deaths backing off, idle ends, a
 * close while a start is running (its STOP owed): all with actions left undrained between. */
static const struct op SCRIPT[] = {
    {OP_OPEN, 100, 1, "fs", "a"},
    {OP_OPEN, 110, 2, "fs", "a"},
    {OP_TAKE, 0, 0, NULL, NULL},
    {OP_STARTED, 200, 1, NULL, NULL},
    {OP_OPEN_EPHEMERAL, 300, 3, "git", "~x"},
    {OP_OPEN, 310, 4, "db", "b"},
    {OP_STARTED, 400, 2, NULL, NULL},
    {OP_FAILED, 410, 3, NULL, NULL},
    {OP_DETACH, 500, 3, NULL, NULL},
    {OP_OPEN, 600, 5, "db", "b"},
    {OP_OPEN, 610, 6, "web", "c"},
    {OP_STARTED, 700, 4, NULL, NULL},
    {OP_STARTED, 710, 5, NULL, NULL},
    {OP_DETACH, 800, 6, NULL, NULL},
    {OP_OPEN, 900, 7, "x", "d"},
    {OP_EXITED, 950, 2, NULL, NULL},
    {OP_EXITED, 1000, 1, NULL, NULL},
    {OP_OPEN, 1100, 8, "fs", "a"},
    {OP_STARTED, 1200, 1, NULL, NULL},
    {OP_EXITED, 1300, 1, NULL, NULL},
    {OP_OPEN, 1400, 9, "fs", "a"},
    {OP_TAKE, 0, 0, NULL, NULL},
    {OP_TICK, 5000, 0, NULL, NULL},
    {OP_DETACH, 5000, 5, NULL, NULL},
    {OP_TICK, 9000, 0, NULL, NULL},
    {OP_TICK, 12000, 0, NULL, NULL}, /* the crashed fs entry ends idle: the next is new */
    {OP_TICK, 16000, 0, NULL, NULL},
    {OP_CLOSE_SCOPE, 16100, 0, NULL, "d"},
    {OP_STARTED, 16200, 6, NULL, NULL},
    {OP_EXITED, 16300, 5, NULL, NULL},
    {OP_OPEN, 16400, 10, "fs", "a"},
    {OP_DRAIN, 0, 0, NULL, NULL},
    {OP_CLOSE_ALL, 17000, 0, NULL, NULL},
};
#define NOPS (sizeof(SCRIPT) / sizeof(SCRIPT[0]))
#define SHIFT 1000000u /* the new process's clock reads differently */

struct trace {
    char text[16384];
    size_t len;
};

static bool take_action(lp_mcppool *p, struct trace *t)
{
    struct lp_mcppool_action a;
    int n;

    if (!lp_mcppool_next(p, &a))
        return false;
    n = snprintf(t->text + t->len, sizeof(t->text) - t->len, "%d %llu %llu %s %s %u %s\n",
                 (int)a.type, (unsigned long long)a.entry, (unsigned long long)a.att, a.name,
                 a.scope, (unsigned)a.code, a.why);
    assert_true(n > 0 && (size_t)n < sizeof(t->text) - t->len);
    t->len += (size_t)n;
    return true;
}

static void run_op(lp_mcppool *p, const struct op *op, lp_time shift, struct trace *t)
{
    lp_time now = op->t + shift;

    switch (op->kind) {
    case OP_OPEN:
    case OP_OPEN_EPHEMERAL:
        assert_int_equal(
            lp_mcppool_open(p, "", op->name, op->scope, op->kind == OP_OPEN_EPHEMERAL, op->id, now),
            LP_OK);
        break;
    case OP_DETACH:
        lp_mcppool_detach(p, op->id, now);
        break;
    case OP_STARTED:
    case OP_FAILED:
        lp_mcppool_started(p, op->id, op->kind == OP_STARTED, "no such file", now);
        break;
    case OP_EXITED:
        lp_mcppool_exited(p, op->id, "exited with status 1", now);
        break;
    case OP_TICK:
        lp_mcppool_tick(p, now);
        break;
    case OP_CLOSE_SCOPE:
        (void)lp_mcppool_close_scope(p, op->scope, "scope closed", now);
        break;
    case OP_CLOSE_ALL:
        (void)lp_mcppool_close_all(p, "shutting down", now);
        break;
    case OP_TAKE:
        (void)take_action(p, t);
        break;
    case OP_DRAIN:
        while (take_action(p, t))
            ;
        break;
    }
}

static size_t save_pool(const lp_mcppool *p, lp_time now, struct lp_state_wr *w,
                        const uint8_t **file)
{
    size_t len;

    lp_state_wr_init(w, 1u << 20);
    lp_state_begin(w);
    assert_int_equal(lp_mcppool_save(p, w, now), LP_OK);
    assert_int_equal(lp_state_finish(w, file, &len), LP_OK);
    return len;
}

/* Saved at `now` by the old process, loaded at now + SHIFT by the new one, which saves the same
 * bytes again. */
static lp_mcppool *upgrade(lp_mcppool *p, lp_time now, size_t *bytes)
{
    struct lp_state_wr w, w2;
    struct lp_state_rd rd;
    const uint8_t *file, *file2;
    size_t len = save_pool(p, now, &w, &file), len2;
    lp_mcppool *n;

    lp_mcppool_free(p);
    assert_int_equal(lp_state_open(&rd, file, len), LP_OK);
    if (lp_mcppool_load(&rd, &LIMITS, now + SHIFT, &n) != LP_OK)
        fail_msg("refused: %s", rd.why);
    len2 = save_pool(n, now + SHIFT, &w2, &file2);
    assert_int_equal(len2, len);
    assert_memory_equal(file2, file, len);
    lp_state_wr_clear(&w);
    lp_state_wr_clear(&w2);
    *bytes = len;
    return n;
}

/* Runs the script, upgrading before op `at` (past NOPS: never). */
static void run_script(size_t at, struct trace *t, size_t *bytes)
{
    lp_mcppool *p = pool();
    lp_time shift = 0, last = 0;

    t->len = 0;
    t->text[0] = '\0';
    for (size_t i = 0; i <= NOPS; i++) {
        if (i == at) {
            p = upgrade(p, last + shift, bytes);
            shift = SHIFT;
        }
        if (i == NOPS)
            break;
        run_op(p, &SCRIPT[i], shift, t);
        last = SCRIPT[i].t ? SCRIPT[i].t : last;
    }
    /* The glue reports every stopped child gone: nothing may be left. */
    for (uint64_t e = 1; e <= 10; e++)
        lp_mcppool_exited(p, e, "stopped", 18000 + shift);
    while (take_action(p, t))
        ;
    assert_int_equal(lp_mcppool_entries(p), 0);
    lp_mcppool_free(p);
}

static void test_mcppool_saved_and_loaded_at_every_step_acts_the_same(void **state)
{
    (void)state;
    static struct trace ref, t;
    size_t bytes = 0;

    run_script(NOPS + 1, &ref, &bytes);
    /* The script reaches what it means to. */
    assert_non_null(strstr(ref.text, "evicted"));
    assert_non_null(strstr(ref.text, "backing off, next start in 900ms"));
    assert_non_null(strstr(ref.text, "cannot start mcp server db: no such file"));
    assert_non_null(strstr(ref.text, "idle for"));
    for (size_t at = 0; at <= NOPS; at++) {
        run_script(at, &t, &bytes);
        if (t.len != ref.len || memcmp(t.text, ref.text, ref.len) != 0)
            fail_msg("upgraded before step %zu:\n%s\nwant:\n%s", at, t.text, ref.text);
    }
}

static lp_err load_pool(struct lp_state_rd *rd, void *ctx)
{
    lp_mcppool *p;
    lp_err rc = lp_mcppool_load(rd, &LIMITS, 50000, &p);
    struct lp_mcppool_action a;

    (void)ctx;
    if (rc != LP_OK)
        return rc;
    /* Whatever was taken must work on. */
    lp_mcppool_tick(p, 100000);
    if (lp_mcppool_open(p, "", "fs", "a", false, 99, 100001) != LP_OK)
        return LP_ERR_STATE;
    for (uint64_t e = 1; e < 10; e++)
        lp_mcppool_started(p, e, true, NULL, 100002);
    (void)lp_mcppool_close_all(p, "bye", 100003);
    for (uint64_t e = 1; e < 10; e++)
        lp_mcppool_exited(p, e, "gone", 100004);
    while (lp_mcppool_next(p, &a))
        ;
    lp_mcppool_free(p);
    return LP_OK;
}

static void test_mcppool_loader_refuses_every_cut_and_bad_byte_with_a_reason(void **state)
{
    (void)state;
    lp_mcppool *p = pool();
    static struct trace t;
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len;

    for (size_t i = 0; i < NOPS && SCRIPT[i].t < 1500; i++)
        run_op(p, &SCRIPT[i], 0, &t);
    len = save_pool(p, 1500, &w, &file);
    state_check_loader(file, len, load_pool, NULL, 4000);
    lp_state_wr_clear(&w);
    lp_mcppool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcppool_open_spawns_once_and_accepts_when_started),
        cmocka_unit_test(test_mcppool_racing_opens_share_one_spawn),
        cmocka_unit_test(test_mcppool_failed_start_refuses_every_waiter_without_stop),
        cmocka_unit_test(test_mcppool_open_on_live_entry_accepts_at_once),
        cmocka_unit_test(test_mcppool_detached_waiter_is_not_accepted),
        cmocka_unit_test(test_mcppool_ephemeral_start_abandoned_stops_once_started),
        cmocka_unit_test(test_mcppool_evicts_least_recently_used_detached_at_cap),
        cmocka_unit_test(test_mcppool_one_identity_cannot_evict_another),
        cmocka_unit_test(test_mcppool_at_the_cap_the_asker_pays_then_the_heaviest),
        cmocka_unit_test(test_mcppool_eviction_tie_goes_to_the_oldest_entry),
        cmocka_unit_test(test_mcppool_refuses_new_key_when_every_session_is_in_use),
        cmocka_unit_test(test_mcppool_evicting_crashed_entry_frees_it_without_stop),
        cmocka_unit_test(test_mcppool_detached_entry_stops_after_idle_timeout),
        cmocka_unit_test(test_mcppool_reattach_restarts_idle_clock),
        cmocka_unit_test(test_mcppool_ephemeral_entry_stops_on_last_detach),
        cmocka_unit_test(test_mcppool_scoped_open_keeps_ephemeral_entry),
        cmocka_unit_test(test_mcppool_close_scope_twice_stops_each_child_once),
        cmocka_unit_test(test_mcppool_close_server_after_idle_and_eviction_adds_no_stop),
        cmocka_unit_test(test_mcppool_close_frees_crashed_entry_without_stop),
        cmocka_unit_test(test_mcppool_exit_while_live_resets_and_restarts_same_entry),
        cmocka_unit_test(test_mcppool_exit_while_starting_resets_waiters),
        cmocka_unit_test(test_mcppool_quick_deaths_back_off_doubling),
        cmocka_unit_test(test_mcppool_backoff_reason_names_seconds_left),
        cmocka_unit_test(test_mcppool_long_lived_child_resets_quick_death_count),
        cmocka_unit_test(test_mcppool_crashed_entry_ends_after_idle_timeout),
        cmocka_unit_test(test_mcppool_ignores_unknown_ids),
        cmocka_unit_test(test_mcppool_rejects_bad_keys_and_attachment_ids),
        cmocka_unit_test(test_mcppool_queues_in_order_without_draining),
        cmocka_unit_test(test_mcppool_free_of_null_is_a_no_op),
        cmocka_unit_test(test_mcppool_saved_and_loaded_at_every_step_acts_the_same),
        cmocka_unit_test(test_mcppool_loader_refuses_every_cut_and_bad_byte_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
