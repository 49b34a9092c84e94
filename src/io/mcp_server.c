/* mcp_server.c — the server's MCP pool at work: child processes (child.h) routed by
 * mcproute.h to the MCP streams clients open, their lifecycle decided by mcppool.h.
 *
 * Every decision about an entry's life is the pool's; this file carries its actions out
 * (SPAWN, STOP, ACCEPT, REFUSE, RESET) and reports back what happened (started, exited,
 * detached). Entries and attachments are short lists scanned linearly: at most
 * mcp.max_sessions entries (plus those stopping) and one attachment per MCP stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/child.h"
#include "limpet/stream.h"
#include "limpet/jsonrpc.h"
#include "limpet/log.h"
#include "limpet/mcpio.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/net.h"
#include "limpet/streamq.h"

#include "mcp_server_internal.h"

#define HIGH_WATER (1u << 20) /* bytes queued toward one side before its source pauses */
#define MAX_INFLIGHT LP_MCPD_MAX_INFLIGHT
#define ROUTE_HELD_MAX LP_MCPD_ROUTE_HELD_MAX
#define EXTEND_STEP (64u * 1024u) /* the least extra credit asked for a line past its window */
#define MEMORY_RETRY 0.1          /* s: how often a line waiting at limits.memory asks again */

/* ---- lookups ---------------------------------------------------------------------------- */

static struct entry *find_entry(struct lp_mcpd *m, uint64_t id)
{
    for (struct entry *e = m->entries; e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

static struct att *find_att(struct lp_mcpd *m, uint64_t id)
{
    for (struct att *a = m->atts; a; a = a->next)
        if (a->id == id)
            return a;
    return NULL;
}

static const struct lp_mcp_server *find_config(const struct lp_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->mcp.n_servers; i++)
        if (strcmp(cfg->mcp.servers[i].name, name) == 0)
            return &cfg->mcp.servers[i];
    return NULL;
}

static void free_entry(struct entry *e)
{
    struct entry **pp = &e->m->entries;
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    lp_child_free(e->child);
    lp_mcproute_free(e->route);
    free(e);
}

void mcpd_free_att(struct att *a)
{
    struct att **pp = &a->m->atts;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    a->m->out_bytes -= a->out.buffered;
    lp_streamq_clear(&a->out);
    free(a);
}

/* ---- toward the host ------------------------------------------------------------------------ */

/* A message for or from a's host was lost, or cannot be taken: the stream is reset with
 * code and why (its host's limpet mcp then answers each pending request with it), at the
 * next sweep, since the callers are deep in loops over the route and the attachments that a
 * reset would change under them. */
static void doom(struct att *a, const struct entry *e, uint16_t code, const char *why)
{
    if (a->st == NULL || a->doomed[0] != '\0')
        return;
    a->doom_code = code;
    snprintf(a->doomed, sizeof(a->doomed), "%s", why);
    lp_warn("sess=%s stream=%u %s: reset: %s", lp_stream_session(a->st)->tag,
            (unsigned)lp_stream_id(a->st), e->tag, why);
    ev_timer_start(a->m->rt->loop, &a->m->sweep);
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_mcpd *m = LP_CONTAINER_OF(w, struct lp_mcpd, sweep);
    size_t left = 0;
    (void)loop;
    (void)revents;

    /* A reset frees its attachment and runs the pool's actions, which may free others: the
     * scan starts over after each one, bounded by the count in case one stayed listed. */
    for (struct att *a = m->atts; a; a = a->next)
        left++;
    for (; left > 0; left--) {
        struct att *a = m->atts;
        while (a && (a->doomed[0] == '\0' || a->st == NULL))
            a = a->next;
        if (a == NULL)
            return;
        char why[sizeof(a->doomed)]; /* a copy: ended() frees a, and the reason with it */
        memcpy(why, a->doomed, sizeof(why));
        lp_stream_reset(a->st, a->doom_code, why);
    }
}

void mcpd_push_att(struct att *a)
{
    while (a->st && a->entry && a->out.buffered > 0) {
        const uint8_t *data;
        size_t n = lp_streamq_peek(&a->out, &data), taken = 0;
        struct lp_session *s = lp_stream_session(a->st);
        if (lp_mux_send(s->mux, lp_stream_id(a->st), data, n, &taken) != LP_OK || taken == 0)
            break;
        lp_streamq_drop(&a->out, taken);
        a->m->out_bytes -= taken;
        lp_session_dirty(s);
    }
}

/* The child may write on while every attachment keeps up. */
static void pace_child(struct entry *e)
{
    bool behind = false;

    if (e->child == NULL)
        return;
    for (struct att *a = e->m->atts; a && !behind; a = a->next)
        behind = a->entry == e->id && a->out.buffered >= HIGH_WATER;
    lp_child_pause(e->child, behind);
}

void mcpd_flush_route(struct entry *e)
{
    uint64_t dest;
    char *line;
    size_t len;

    while (lp_mcproute_next(e->route, &dest, &line, &len)) {
        if (dest == LP_MCPROUTE_CHILD) {
            if (e->child)
                lp_child_write(e->child, (const uint8_t *)line, len);
        } else {
            struct att *a = find_att(e->m, dest);
            if (a && a->st && a->doomed[0] == '\0') {
                if (lp_streamq_append(&a->out, (const uint8_t *)line, len))
                    e->m->out_bytes += len;
                else
                    doom(a, e, LP_RST_INTERNAL,
                         "out of memory: a message from the MCP server was lost");
            }
            if (a && a->doomed[0] == '\0')
                mcpd_push_att(a);
        }
        free(line);
    }
    pace_child(e);
}

/* ---- the child --------------------------------------------------------------------------- */

static void child_line(void *user, const uint8_t *line, size_t len)
{
    struct entry *e = user;

    /* Out of memory: the line is lost, and it may be the answer a host waits for. Which host
     * is not known, so every host of this child hears of it rather than one waiting for ever;
     * each attaches again (to this same child) with its next request. */
    if (lp_mcproute_from_child(e->route, line, len) != LP_OK) {
        for (struct att *a = e->m->atts; a; a = a->next)
            if (a->entry == e->id)
                doom(a, e, LP_RST_INTERNAL,
                     "out of memory: a message from the MCP server was lost");
    }
    mcpd_flush_route(e);
}

static void child_too_long(void *user)
{
    struct entry *e = user;
    lp_warn("%s: the server wrote a line longer than mcp.max_message (%zu bytes); dropped", e->tag,
            e->m->cfg->mcp.max_message);
}

static void child_lost(void *user)
{
    struct entry *e = user;

    lp_warn("%s: out of memory: a line the server wrote was lost", e->tag);
    for (struct att *a = e->m->atts; a; a = a->next)
        if (a->entry == e->id)
            doom(a, e, LP_RST_INTERNAL, "out of memory: a message from the MCP server was lost");
}

static void drain_atts(struct entry *e);

static void child_drained(void *user)
{
    drain_atts(user); /* attachments paused on a full stdin read on */
}

static void child_exited(void *user, int status, const char *why)
{
    struct entry *e = user;
    struct lp_mcpd *m = e->m;
    (void)status;

    lp_info("%s child exited: %s", e->tag, why);
    lp_child_free(e->child);
    e->child = NULL;
    lp_mcproute_child_exited(e->route);
    lp_mcppool_exited(m->pool, e->id, why, lp_now());
    mcpd_run_actions(m);
}

const struct lp_child_hooks mcpd_child_hooks = {
    .line = child_line,
    .too_long = child_too_long,
    .lost = child_lost,
    .drained = child_drained,
    .exited = child_exited,
};

static void do_spawn(struct lp_mcpd *m, const struct lp_mcppool_action *act)
{
    struct entry *e = find_entry(m, act->entry);
    const struct lp_mcp_server *sv = find_config(m->cfg, act->name);
    char err[320];

    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        const char *scope = strchr(act->scope, '/');
        e->m = m;
        e->id = act->entry;
        snprintf(e->name, sizeof(e->name), "%s", act->name);
        snprintf(e->scope, sizeof(e->scope), "%s", scope ? scope + 1 : act->scope);
        snprintf(e->tag, sizeof(e->tag), "mcp=%s scope=%s", e->name, e->scope);
        if ((e->route = lp_mcproute_new(MAX_INFLIGHT, ROUTE_HELD_MAX)) == NULL) {
            free(e);
            e = NULL;
        } else {
            e->next = m->entries;
            m->entries = e;
        }
    }
    if (e == NULL || sv == NULL) {
        lp_mcppool_started(m->pool, act->entry, false,
                           e ? "it is no longer configured" : "out of memory", lp_now());
        return;
    }
    if (lp_child_spawn(m->rt->loop, sv, m->cfg->mcp.max_message, e->tag, &mcpd_child_hooks, e,
                       &e->child, err, sizeof(err)) != LP_OK) {
        lp_warn("%s cannot start: %s", e->tag, err);
        lp_mcppool_started(m->pool, e->id, false, err, lp_now());
        return;
    }
    lp_info("%s child started pid=%d", e->tag, (int)lp_child_pid(e->child));
    /* After a crash the cached initialize goes first; a child that cannot be sent it would
     * hold every host line back for ever, so it counts as a failed start (the pool refuses
     * the waiting hosts with the reason and retries later). */
    if (lp_mcproute_child_started(e->route) != LP_OK) {
        lp_warn("%s: out of memory: cannot replay the cached initialize; child stopped", e->tag);
        lp_child_free(e->child);
        e->child = NULL;
        lp_mcppool_started(m->pool, e->id, false, "out of memory on the server", lp_now());
        return;
    }
    lp_mcppool_started(m->pool, e->id, true, NULL, lp_now());
    mcpd_flush_route(e);
    drain_atts(e); /* hosts that stopped on the lines held for this start read on */
}

/* ---- actions ------------------------------------------------------------------------------ */

static void end_att(struct lp_mcpd *m, const struct lp_mcppool_action *act)
{
    struct att *a = find_att(m, act->att);

    if (a == NULL)
        return;
    a->forgotten = true;
    if (a->st) {
        lp_info("sess=%s stream=%u mcp %s: %s", lp_stream_session(a->st)->tag,
                (unsigned)lp_stream_id(a->st), act->name, act->why);
        lp_stream_reset(a->st, act->code, act->why); /* ended() frees a */
    } else {
        mcpd_free_att(a);
    }
}

/* The pool accepted a, but it cannot be served: RST with why, which its host's limpet mcp
 * turns into a JSON-RPC error for each pending request. att_ended tells the pool. */
static void refuse_att(struct att *a, struct entry *e, uint16_t code, const char *why)
{
    lp_warn("sess=%s stream=%u %s: refused: %s", lp_stream_session(a->st)->tag,
            (unsigned)lp_stream_id(a->st), e->tag, why);
    lp_stream_reset(a->st, code, why); /* ended() frees a */
}

static void accept_att(struct lp_mcpd *m, const struct lp_mcppool_action *act)
{
    struct att *a = find_att(m, act->att);
    struct entry *e = find_entry(m, act->entry);
    struct lp_session *s;
    char why[128];
    lp_err rc;

    if (a == NULL || a->st == NULL || e == NULL)
        return;
    s = lp_stream_session(a->st);
    /* OPEN_OK only once the route knows a: a host it does not know would lose every line. */
    if ((rc = lp_mcproute_attach(e->route, a->id)) != LP_OK) {
        if (rc == LP_ERR_NOSPACE)
            snprintf(why, sizeof(why), "too many hosts attached to this MCP server process (%u)",
                     (unsigned)LP_MCPROUTE_ATT_MAX);
        else
            snprintf(why, sizeof(why), "cannot attach to the MCP server process: %s",
                     lp_strerror(rc));
        refuse_att(a, e, rc == LP_ERR_NOSPACE ? LP_RST_LIMIT : LP_RST_INTERNAL, why);
        return;
    }
    a->entry = e->id; /* from here on, att_ended detaches it from the route */
    if ((rc = lp_mux_accept(s->mux, lp_stream_id(a->st))) != LP_OK) {
        snprintf(why, sizeof(why), "cannot accept the stream: %s", lp_strerror(rc));
        refuse_att(a, e, LP_RST_INTERNAL, why);
        return;
    }
    lp_session_dirty(s);
    lp_debug("sess=%s stream=%u attached to %s", s->tag, (unsigned)lp_stream_id(a->st), e->tag);
    mcpd_drain_att(a); /* lines that came with the OPEN */
}

void mcpd_run_actions(struct lp_mcpd *m)
{
    struct lp_mcppool_action act;
    lp_time at;

    while (lp_mcppool_next(m->pool, &act)) {
        struct entry *e = find_entry(m, act.entry);
        switch (act.type) {
        case LP_MCPPOOL_SPAWN:
            do_spawn(m, &act);
            break;
        case LP_MCPPOOL_STOP:
            if (e && e->child) {
                lp_info("%s stopping: %s", e->tag, act.why);
                lp_child_stop(e->child, m->cfg->mcp.stop_grace);
            }
            break;
        case LP_MCPPOOL_ACCEPT:
            accept_att(m, &act);
            break;
        case LP_MCPPOOL_REFUSE:
        case LP_MCPPOOL_RESET:
            end_att(m, &act);
            break;
        }
    }
    /* Entries the pool has let go of (stopped and exited, failed, or crashed and expired). */
    for (struct entry *e = m->entries, *next; e; e = next) {
        next = e->next;
        if (!lp_mcppool_has_entry(m->pool, e->id))
            free_entry(e);
    }
    ev_timer_stop(m->rt->loop, &m->tick);
    if ((at = lp_mcppool_deadline(m->pool)) != LP_TIME_NEVER) {
        lp_time now = lp_now();
        ev_timer_set(&m->tick, at > now ? (double)(at - now) / 1000.0 : 0., 0.);
        ev_timer_start(m->rt->loop, &m->tick);
    }
    if (m->done && m->entries == NULL) {
        void (*done)(void *) = m->done;
        m->done = NULL;
        done(m->done_user);
    }
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_mcpd *m = LP_CONTAINER_OF(w, struct lp_mcpd, tick);
    (void)loop;
    (void)revents;
    lp_mcppool_tick(m->pool, lp_now());
    mcpd_run_actions(m);
}

/* ---- attachments (MCP streams) ---------------------------------------------------------- */

/* The longest a line may grow in the stream's receive queue, its "\r\n" included: a message
 * of mcp.max_message, and never more than the session may hold at all (its receive budget,
 * which every window of the session shares). `limpet mcp` runs one MCP stream per session,
 * so a line of its host has that whole budget; a client that shares it among many streams
 * holding unfinished lines stalls only itself. */
static size_t line_cap(const struct att *a)
{
    const struct lp_session *s = lp_stream_session(a->st);
    size_t by_message = a->m->cfg->mcp.max_message + 2;

    return LP_MIN(by_message, s->cfg->session.receive_buffer);
}

static void wait_for_memory(struct att *a)
{
    a->wants_memory = true;
    lp_runtime_memory_refused(a->m->rt, "more credit for an MCP message");
    if (!ev_is_active(&a->m->memwait))
        ev_timer_again(a->m->rt->loop, &a->m->memwait);
}

/* The queue holds `held` bytes and no whole line: a line is being received. Its stream is
 * granted more credit from the session's receive budget once its window is full (as much
 * again as it holds, so a long line takes a few round trips, not one per window); it waits
 * when the budget is spent (the mux says READABLE when budget comes free) or the process is
 * at limits.memory (retried by the memwait timer). A line that can never fit is refused. */
static void wait_for_line(struct att *a, struct entry *e, size_t held)
{
    struct lp_session *s = lp_stream_session(a->st);
    uint32_t id = lp_stream_id(a->st);
    size_t cap = line_cap(a), want, room, granted = 0;
    char why[sizeof(a->doomed)];
    lp_err rc;

    if (held >= cap) {
        snprintf(why, sizeof(why),
                 "a message longer than this server takes (%zu bytes: mcp.max_message %zu, "
                 "session.receive_buffer %zu)",
                 cap - 2, a->m->cfg->mcp.max_message, s->cfg->session.receive_buffer);
        doom(a, e, LP_RST_LIMIT, why);
        return;
    }
    if (held == 0)
        return;
    want = LP_MIN(LP_MAX(held, (size_t)EXTEND_STEP), cap - held);
    if ((room = lp_runtime_memory_room(a->m->rt)) == 0) {
        wait_for_memory(a);
        return;
    }
    rc = lp_mux_recv_extend(s->mux, id, LP_MIN(want, room), &granted);
    if (rc == LP_OK || rc == LP_ERR_NOSPACE) {
        if (granted > 0) {
            lp_session_recount(s); /* the next line asking in this iteration sees it */
            lp_session_dirty(s);
        }
        return;
    }
    if (rc == LP_ERR_CLOSED) { /* the host finished inside a line: it can never end */
        lp_debug("sess=%s stream=%u %s: %zu bytes after the last newline dropped", s->tag,
                 (unsigned)id, e->tag, held);
        lp_mux_recv_consumed(s->mux, id, held);
        a->scanned = 0;
        lp_session_dirty(s);
        return;
    }
    snprintf(why, sizeof(why), "cannot take more of a message: %s", lp_strerror(rc));
    doom(a, e, LP_RST_INTERNAL, why);
}

/* Passes the line of `raw` bytes ('\n' not counted) at the front of the stream's queue to
 * the route: in place when it lies in one piece, else copied once. Blank lines are skipped.
 * False when a was doomed (a line the route cannot take would leave a request of the host's
 * waiting for ever: the stream is reset instead, and the host answered). */
static bool take_line(struct att *a, struct entry *e, lp_mux *mux, uint32_t id, size_t raw)
{
    const uint8_t *line;
    uint8_t *copy = NULL;
    size_t len;
    char why[sizeof(a->doomed)];
    lp_err rc = LP_OK;

    if (lp_mux_recv_peek(mux, id, &line) < raw) {
        if ((copy = malloc(raw)) == NULL) {
            doom(a, e, LP_RST_INTERNAL, "out of memory: a message could not be read");
            return false;
        }
        line = copy;
        (void)lp_mux_recv_copy(mux, id, copy, raw);
    }
    len = raw > 0 && line[raw - 1] == '\r' ? raw - 1 : raw;
    if (len > a->m->cfg->mcp.max_message) {
        snprintf(why, sizeof(why), "a message longer than mcp.max_message (%zu bytes)",
                 a->m->cfg->mcp.max_message);
        doom(a, e, LP_RST_LIMIT, why);
    } else if (len > 0 && (rc = lp_mcproute_from_att(e->route, a->id, line, len)) != LP_OK) {
        snprintf(why, sizeof(why), "a message could not be passed to the MCP server: %s",
                 rc == LP_ERR_NOT_FOUND ? "not attached" : lp_strerror(rc));
        doom(a, e, LP_RST_INTERNAL, why);
    }
    free(copy);
    return a->doomed[0] == '\0';
}

/* Room toward the child: its stdin, and the lines the route holds while it restarts. */
static bool child_has_room(const struct entry *e)
{
    return (e->child == NULL || lp_child_queued(e->child) < HIGH_WATER) &&
           lp_mcproute_queued(e->route) < HIGH_WATER;
}

/* The host's lines → the route, one whole line at a time, while the child keeps up. Nothing
 * is cached across mcpd_flush_route (which may reach child_drained, and this function again):
 * each round looks at the queue afresh. */
void mcpd_drain_att(struct att *a)
{
    struct entry *e = find_entry(a->m, a->entry);

    while (e && a->st && a->doomed[0] == '\0' && child_has_room(e)) {
        struct lp_session *s = lp_stream_session(a->st);
        uint32_t id = lp_stream_id(a->st);
        size_t nl = lp_mux_recv_find(s->mux, id, a->scanned, '\n');
        a->wants_memory = false;
        if (nl == SIZE_MAX) {
            a->scanned = lp_mux_recv_buffered(s->mux, id);
            wait_for_line(a, e, a->scanned);
            return;
        }
        a->scanned = 0;
        if (!take_line(a, e, s->mux, id, nl))
            return;
        lp_mux_recv_consumed(s->mux, id, nl + 1);
        lp_session_dirty(s);
        mcpd_flush_route(e);
    }
}

static void drain_atts(struct entry *e)
{
    for (struct att *a = e->m->atts; a; a = a->next)
        if (a->entry == e->id)
            mcpd_drain_att(a);
}

/* Lines that wait at limits.memory ask again; the timer stops once none waits. A drain may
 * reset attachments only through the sweep, so the list holds still under this loop. */
static void memwait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lp_mcpd *m = LP_CONTAINER_OF(w, struct lp_mcpd, memwait);
    bool waiting = false;
    (void)revents;

    for (struct att *a = m->atts; a; a = a->next)
        if (a->wants_memory)
            mcpd_drain_att(a);
    for (struct att *a = m->atts; a && !waiting; a = a->next)
        waiting = a->wants_memory;
    if (!waiting)
        ev_timer_stop(loop, w);
}

/* rt->memory_extra: what the pool holds for peers. Lines in the hosts' receive queues are
 * the sessions' (counted with them); here: lines for the hosts, lines the routes hold, and
 * what the children's pipes hold (stdin queued, a stdout line being read). */
static size_t pool_memory(void *user)
{
    const struct lp_mcpd *m = user;
    size_t n = m->out_bytes;

    for (const struct entry *e = m->entries; e; e = e->next)
        n += lp_mcproute_memory(e->route) + (e->child ? lp_child_buffered(e->child) : 0);
    return n;
}

static void att_event(struct lp_stream *st, const struct lp_mux_event *ev, void *user)
{
    struct att *a = user;
    struct entry *e = find_entry(a->m, a->entry);
    (void)st;

    switch (ev->type) {
    case LP_MUX_EV_READABLE:
        mcpd_drain_att(a);
        break;
    case LP_MUX_EV_WRITABLE:
        mcpd_push_att(a);
        if (e)
            pace_child(e);
        break;
    default: /* FIN: the host's side is done; it leaves when the stream closes */
        break;
    }
}

static void att_ended(struct lp_stream *st, uint16_t code, const char *why, void *user)
{
    struct att *a = user;
    struct lp_mcpd *m = a->m;
    struct entry *e = find_entry(m, a->entry);
    (void)st;
    (void)code;
    (void)why;

    a->st = NULL;
    if (!a->forgotten) {
        /* Cancels what it left in flight. NOT_FOUND: its child exited, and with it every
         * request in flight; NOMEM: the child was not told of every one, which only costs
         * it work on answers nobody takes. */
        lp_err rc = e ? lp_mcproute_detach(e->route, a->id) : LP_ERR_NOT_FOUND;
        if (rc != LP_OK && rc != LP_ERR_NOT_FOUND)
            lp_warn("%s: attachment %llu left: not every request it left was cancelled: %s", e->tag,
                    (unsigned long long)a->id, lp_strerror(rc));
        lp_mcppool_detach(m->pool, a->id, lp_now());
    }
    mcpd_free_att(a);
    if (e && find_entry(m, e->id))
        mcpd_flush_route(e);
    mcpd_run_actions(m);
}

const struct lp_stream_hooks mcpd_att_hooks = {.event = att_event, .ended = att_ended};

static void refuse(struct lp_session *s, uint32_t id, uint16_t code, const char *why)
{
    lp_info("sess=%s stream=%u mcp refused: %s", s->tag, (unsigned)id, why);
    lp_mux_reset(s->mux, id, code, why);
    lp_session_dirty(s);
}

static void open_mcp(void *user, struct lp_session *s, const struct lp_mux_event *ev)
{
    struct lp_mcpd *m = user;
    char name[KEY_MAX + 1], scope[KEY_MAX + 1], key[KEY_MAX + 2], why[KEY_MAX + 96];
    struct att *a;

    if (ev->text_len == 0 || ev->text_len > KEY_MAX || ev->arg_len == 0 || ev->arg_len > KEY_MAX ||
        memchr(ev->text, '\0', ev->text_len) || memchr(ev->arg, '\0', ev->arg_len)) {
        refuse(s, ev->id, LP_RST_BAD_TARGET,
               "an MCP stream needs a name and a scope of 1..127 bytes");
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int)ev->text_len, ev->text);
    snprintf(scope, sizeof(scope), "%.*s", (int)ev->arg_len, ev->arg);
    if (find_config(m->cfg, name) == NULL) {
        snprintf(why, sizeof(why), "no MCP server named '%s' on this server", name);
        refuse(s, ev->id, LP_RST_UNAVAILABLE, why);
        return;
    }
    if (m->may_use && !m->may_use(m->user, s->identity, name)) {
        lp_warn("sess=%s stream=%u refused: identity %s may not use mcp server %s", s->tag,
                (unsigned)ev->id, s->identity, name);
        lp_mux_reset(s->mux, ev->id, LP_RST_NOT_ALLOWED, "not allowed by the server's policy");
        return;
    }
    /* Scopes belong to an identity: one client cannot reach another's server process by
     * naming its scope. */
    if ((size_t)snprintf(key, sizeof(key), "%s/%s", s->identity, scope) > KEY_MAX) {
        refuse(s, ev->id, LP_RST_BAD_TARGET, "the identity and scope together exceed 127 bytes");
        return;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        refuse(s, ev->id, LP_RST_INTERNAL, "out of memory");
        return;
    }
    a->m = m;
    a->id = ++m->next_att;
    lp_streamq_init(&a->out);
    a->next = m->atts;
    m->atts = a;
    if (lp_stream_adopt(s, ev->id, &mcpd_att_hooks, a, &a->st) != LP_OK) {
        mcpd_free_att(a);
        return;
    }
    if (lp_mcppool_open(m->pool, s->identity, name, key, scope[0] == '~', a->id, lp_now()) !=
        LP_OK) {
        a->forgotten = true;
        lp_stream_reset(a->st, LP_RST_INTERNAL, "out of memory");
        return;
    }
    mcpd_run_actions(m);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

void lp_mcpd_limits(const struct lp_config *cfg, struct lp_mcppool_limits *lim)
{
    *lim = (struct lp_mcppool_limits){
        .max_sessions = cfg->mcp.max_sessions,
        .sessions_per_owner = cfg->mcp.sessions_per_identity,
        .idle_timeout = cfg->mcp.idle_timeout,
        .quick_exit = 5000,
        .backoff_min = 1000,
        .backoff_max = 60000,
    };
}

lp_err lp_mcpd_new(struct lp_runtime *rt, const struct lp_config *cfg,
                   bool (*may_use)(void *user, const char *identity, const char *name), void *user,
                   struct lp_mcpd **out)
{
    struct lp_mcppool_limits lim;
    struct lp_mcpd *m = calloc(1, sizeof(*m));

    lp_mcpd_limits(cfg, &lim);

    *out = m;
    if (m == NULL || (m->pool = lp_mcppool_new(&lim)) == NULL) {
        free(m);
        *out = NULL;
        return LP_ERR_NOMEM;
    }
    m->rt = rt;
    m->cfg = cfg;
    m->may_use = may_use;
    m->user = user;
    ev_timer_init(&m->tick, tick_cb, 0., 0.);
    ev_timer_init(&m->sweep, sweep_cb, 0., 0.);
    ev_timer_init(&m->memwait, memwait_cb, 0., MEMORY_RETRY);
    rt->memory_extra = pool_memory;
    rt->memory_user = m;
    rt->open_mcp = open_mcp;
    rt->mcp_user = m;
    return LP_OK;
}

static bool same_list(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool same_server(const struct lp_mcp_server *a, const struct lp_mcp_server *b)
{
    return b != NULL && strcmp(a->command, b->command) == 0 &&
           same_list(a->args, a->n_args, b->args, b->n_args) &&
           same_list(a->env, a->n_env, b->env, b->n_env) &&
           ((a->cwd == NULL && b->cwd == NULL) ||
            (a->cwd != NULL && b->cwd != NULL && strcmp(a->cwd, b->cwd) == 0));
}

void lp_mcpd_reconfigure(struct lp_mcpd *m, const struct lp_config *cfg, void *user)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cfg->mcp.n_servers; i++) {
        const struct lp_mcp_server *old = &m->cfg->mcp.servers[i];
        const struct lp_mcp_server *now = find_config(cfg, old->name);
        size_t n;
        if (same_server(old, now))
            continue;
        n = lp_mcppool_close_server(m->pool, old->name,
                                    now ? "its configuration changed"
                                        : "it was removed from the "
                                          "configuration",
                                    lp_now());
        if (n > 0)
            lp_info("mcp=%s: %zu session(s) closed: %s", old->name, n,
                    now ? "its configuration changed" : "it was removed");
    }
    m->cfg = cfg;
    m->user = user;
    /* Revocation that revokes: a host whose identity the new allow.mcp no longer lets use its
     * server is cut off now, not at its next OPEN. */
    for (struct att *a = m->atts; a && m->may_use; a = a->next) {
        struct entry *e = a->entry ? find_entry(m, a->entry) : NULL;
        if (e && a->st && !m->may_use(m->user, lp_stream_session(a->st)->identity, e->name))
            doom(a, e, LP_RST_NOT_ALLOWED,
                 "no longer allowed by the server's policy (configuration reloaded)");
    }
    mcpd_run_actions(m);
}

void lp_mcpd_shutdown(struct lp_mcpd *m, void (*done)(void *), void *done_user)
{
    m->done = done;
    m->done_user = done_user;
    lp_mcppool_close_all(m->pool, "the server is shutting down", lp_now());
    mcpd_run_actions(m);
}

void lp_mcpd_free(struct lp_mcpd *m)
{
    if (m == NULL)
        return;
    ev_timer_stop(m->rt->loop, &m->tick);
    ev_timer_stop(m->rt->loop, &m->sweep);
    ev_timer_stop(m->rt->loop, &m->memwait);
    m->rt->memory_extra = NULL;
    while (m->atts)
        mcpd_free_att(m->atts); /* their streams are gone with the sessions */
    while (m->entries)
        free_entry(m->entries); /* SIGKILL to what still runs */
    lp_mcppool_free(m->pool);
    m->rt->open_mcp = NULL;
    free(m);
}

size_t lp_mcpd_processes(const struct lp_mcpd *m)
{
    return m ? lp_mcppool_size(m->pool) : 0;
}
