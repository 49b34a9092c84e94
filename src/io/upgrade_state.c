/* upgrade_state.c — the glue's sections of the state file (upgrade.h; every byte in
 * docs/PROTOCOL.md section 8.7): written from a running server, read back into a new one.
 *
 *     file    = PROCESS SESSION* MCP
 *     SESSION = glue fields, PIPE, MUX, STREAM*, RLISTENER*
 *     MCP     = next attachment id, MCPPOOL, ENTRY* (each: [CHILD], MCPROUTE), ATT*
 *
 * Reading runs twice over the same bytes: a first pass checks everything (each core loads its
 * part into an object that is freed again, every descriptor named must have been handed over,
 * and once only) and builds nothing; only when the whole file passed does the second build.
 * So a state is taken whole or not at all, and the second pass fails only for want of memory.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "limpet/child.h"
#include "limpet/ctl.h"
#include "limpet/mcpio.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/reverse.h"
#include "limpet/server.h"
#include "limpet/session.h"
#include "limpet/stream.h"
#include "limpet/streamq.h"
#include "upgrade_internal.h"

#ifndef LP_VERSION
#define LP_VERSION "?"
#endif

#define FD_NONE 0xFFFFFFFFu /* a descriptor field for "none" (-1) */
#define TARGET_MAX LP_FRAME_MAX_TEXT

/* ---- writing ------------------------------------------------------------------------------ */

struct saver {
    struct lp_state_wr *w;
    lp_time now;
    struct lp_fdset *fds;
    struct lp_upgrade_summary *sum;
    size_t count; /* a counting pass's result */
};

static void put_fd(struct saver *sv, int fd)
{
    lp_state_put_u32(sv->w, fd < 0 ? FD_NONE : (uint32_t)fd);
    if (fd >= 0)
        lp_fdset_add(sv->fds, fd, 0);
}

static void put_str(struct lp_state_wr *w, const char *s)
{
    lp_state_put_text(w, s ? s : "", s ? strlen(s) : 0);
}

/* A queue of bytes as one blob32. */
static void put_queue(struct lp_state_wr *w, const struct lp_streamq *q)
{
    const uint8_t *data;
    size_t n;

    lp_state_put_u32(w, q->buffered > UINT32_MAX ? UINT32_MAX : (uint32_t)q->buffered);
    if (q->buffered > UINT32_MAX)
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
    for (size_t off = 0; (n = lp_streamq_peek_at(q, off, &data)) > 0; off += n)
        lp_state_put_bytes(w, data, n);
}

static void save_process(struct saver *sv, const struct lp_upgrade_parts *p, const int listeners[3],
                         lp_time signal_at)
{
    const struct lp_stats *st = &p->rt->stats;
    struct lp_state_wr *w = sv->w;
    const uint64_t counters[] = {
        st->sessions_created, st->sessions_ended,   st->streams_opened,    st->streams_refused,
        st->reconnects,       st->resumes,          st->bytes_in_ended,    st->bytes_out_ended,
        st->upgrades,         st->upgrade_failures, st->sessions_restored,
    };

    lp_state_section_begin(w, LP_UPGRADE_PROCESS);
    put_str(w, LP_VERSION);
    lp_state_put_u64(w, lp_state_age(sv->now, st->started));
    lp_state_put_u64(w, lp_state_age(sv->now, signal_at));
    for (int i = 0; i < 3; i++)
        lp_state_put_u32(w, listeners[i] < 0 ? FD_NONE : (uint32_t)listeners[i]);
    lp_state_put_u16(w, (uint16_t)(sizeof(counters) / sizeof(counters[0])));
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        lp_state_put_u64(w, counters[i]);
    lp_state_put_u64(w, st->upgrades ? lp_state_age(sv->now, st->last_upgrade) : LP_TIME_NEVER);
    lp_state_put_u16(w, LP_HS_REASONS);
    for (int r = 0; r < LP_HS_REASONS; r++)
        lp_state_put_u64(w, st->handshakes_refused[r]);
    lp_state_put_u16(w, LP_HIST_BOUNDS + 1);
    for (int b = 0; b <= LP_HIST_BOUNDS; b++)
        lp_state_put_u64(w, st->resume.buckets[b]);
    lp_state_put_u64(w, st->resume.count);
    lp_state_put_u64(w, st->resume.sum_ms);
    lp_state_section_end(w);
}

static void save_stream(struct saver *sv, const struct lp_stream_image *img)
{
    struct lp_state_wr *w = sv->w;

    lp_state_section_begin(w, LP_UPGRADE_STREAM);
    lp_state_put_u32(w, img->id);
    lp_state_put_u8(w, (uint8_t)img->phase);
    lp_state_put_u8(w, (uint8_t)((img->read_eof ? 0x01 : 0) | (img->write_shut ? 0x02 : 0)));
    lp_state_put_u8(w, img->kind);
    put_fd(sv, img->fd);
    lp_state_put_u64(w, img->up);
    lp_state_put_u64(w, img->down);
    lp_state_put_u64(w, img->timer_left);
    put_str(w, img->target);
    put_str(w, img->shown);
    lp_state_section_end(w);
    sv->sum->streams++;
}

static void count_rlistener(void *user, const struct lp_rlistener_image *img)
{
    (void)img;
    ((struct saver *)user)->count++;
}

static void save_rlistener(void *user, const struct lp_rlistener_image *img)
{
    struct saver *sv = user;
    struct lp_state_wr *w = sv->w;

    lp_state_section_begin(w, LP_UPGRADE_RLISTENER);
    lp_state_put_u32(w, img->req);
    put_fd(sv, img->fd);
    lp_state_put_u16(w, img->port);
    put_str(w, img->spec);
    put_str(w, img->local);
    lp_state_section_end(w);
    sv->sum->rlisteners++;
}

/* Every session is detached by now: its link was dropped before the save. */
static void save_session(struct saver *sv, struct lp_session *s)
{
    struct lp_state_wr *w = sv->w;
    struct lp_stream_image img;
    uint32_t n = 0;

    lp_state_section_begin(w, LP_UPGRADE_SESSION);
    put_str(w, s->identity);
    put_str(w, s->peer);
    lp_state_put_u64(w, lp_state_age(sv->now, s->created));
    lp_state_put_u64(w, lp_state_age(sv->now, s->down_since));
    lp_state_put_u64(w, lp_server_ttl_left(s));
    lp_state_put_u64(w, s->reconnects);
    lp_state_put_u64(w, s->bytes_in);
    lp_state_put_u64(w, s->bytes_out);
    if (lp_pipe_save(s->pipe, w, sv->now) != LP_OK || lp_mux_save(s->mux, w) != LP_OK)
        return; /* the writer's error sticks */
    for (struct lp_stream *st = s->streams; st; st = lp_stream_next(st))
        n += lp_stream_image(st, &img);
    lp_state_put_u32(w, n);
    for (struct lp_stream *st = s->streams; st; st = lp_stream_next(st))
        if (lp_stream_image(st, &img))
            save_stream(sv, &img);
    sv->count = 0;
    lp_reverse_each(s, count_rlistener, sv);
    lp_state_put_u32(w, (uint32_t)sv->count);
    lp_reverse_each(s, save_rlistener, sv);
    lp_state_section_end(w);
    sv->sum->sessions++;
}

static void save_child(struct saver *sv, const struct lp_child *c)
{
    struct lp_state_wr *w = sv->w;
    struct lp_child_image *img = malloc(sizeof(*img)); /* 2 KiB of stderr tail: not the stack */

    if (img == NULL) {
        lp_state_wr_fail(w, LP_ERR_NOMEM);
        return;
    }
    lp_child_image(c, img);
    lp_state_section_begin(w, LP_UPGRADE_MCP_CHILD);
    lp_state_put_u32(w, (uint32_t)img->pid);
    put_fd(sv, img->in_fd);
    put_fd(sv, img->out_fd);
    put_fd(sv, img->err_fd);
    lp_state_put_u8(w, (uint8_t)img->stop_step);
    lp_state_put_u8(w, (uint8_t)((img->paused ? 0x01 : 0) | (img->out_eof ? 0x02 : 0) |
                                 (img->err_eof ? 0x04 : 0) | (img->was_full ? 0x08 : 0) |
                                 (img->out_skipping ? 0x10 : 0)));
    lp_state_put_u64(w, img->grace);
    lp_state_put_u64(w, img->stop_left);
    put_queue(w, img->inq);
    lp_state_put_blob(w, img->out_part, img->out_len);
    lp_state_put_blob(w, img->tail, img->tail_len);
    lp_state_section_end(w);
    sv->sum->children++;
    free(img);
}

static void count_entry(void *user, const struct lp_mcpd_entry_image *img)
{
    (void)img;
    ((struct saver *)user)->count++;
}

static void count_att(void *user, const struct lp_mcpd_att_image *img)
{
    (void)img;
    ((struct saver *)user)->count++;
}

static void skip_entry(void *user, const struct lp_mcpd_entry_image *img)
{
    (void)user;
    (void)img;
}

static void skip_att(void *user, const struct lp_mcpd_att_image *img)
{
    (void)user;
    (void)img;
}

static void save_entry(void *user, const struct lp_mcpd_entry_image *img)
{
    struct saver *sv = user;
    struct lp_state_wr *w = sv->w;

    lp_state_section_begin(w, LP_UPGRADE_MCP_ENTRY);
    lp_state_put_u64(w, img->id);
    put_str(w, img->name);
    put_str(w, img->scope);
    lp_state_put_u8(w, img->child != NULL);
    if (img->child != NULL)
        save_child(sv, img->child);
    if (lp_mcproute_save(img->route, w) != LP_OK)
        return;
    lp_state_section_end(w);
}

static void save_att(void *user, const struct lp_mcpd_att_image *img)
{
    struct saver *sv = user;
    struct lp_state_wr *w = sv->w;
    static const uint8_t none[LP_SESSION_ID_LEN];

    lp_state_section_begin(w, LP_UPGRADE_MCP_ATT);
    lp_state_put_u64(w, img->id);
    lp_state_put_u64(w, img->entry);
    lp_state_put_bytes(w, img->session ? lp_pipe_session_id(img->session->pipe) : none,
                       LP_SESSION_ID_LEN);
    lp_state_put_u32(w, img->stream);
    lp_state_put_u8(w, (uint8_t)((img->forgotten ? 0x01 : 0) | (img->in_skipping ? 0x02 : 0)));
    lp_state_put_u16(w, img->doomed_code);
    put_str(w, img->doomed);
    lp_state_put_blob(w, img->in_part, img->in_len);
    put_queue(w, img->out);
    lp_state_section_end(w);
    sv->sum->atts++;
}

static void save_mcp(struct saver *sv, struct lp_mcpd *m)
{
    struct lp_state_wr *w = sv->w;

    lp_state_section_begin(w, LP_UPGRADE_MCP);
    lp_state_put_u64(w, lp_mcpd_next_att(m));
    if (lp_mcppool_save(lp_mcpd_pool(m), w, sv->now) != LP_OK)
        return;
    sv->count = 0;
    lp_mcpd_each(m, count_entry, skip_att, sv);
    lp_state_put_u32(w, (uint32_t)sv->count);
    lp_mcpd_each(m, save_entry, skip_att, sv);
    sv->count = 0;
    lp_mcpd_each(m, skip_entry, count_att, sv);
    lp_state_put_u32(w, (uint32_t)sv->count);
    lp_mcpd_each(m, skip_entry, save_att, sv);
    lp_state_section_end(w);
}

lp_err lp_upgrade_write(const struct lp_upgrade_parts *p, const int listeners[3], lp_time now,
                        lp_time signal_at, struct lp_state_wr *w, struct lp_fdset *fds,
                        struct lp_upgrade_summary *sum)
{
    struct saver sv = {.w = w, .now = now, .fds = fds, .sum = sum};

    memset(sum, 0, sizeof(*sum));
    lp_state_begin(w);
    save_process(&sv, p, listeners, signal_at);
    for (int i = 0; i < 3; i++)
        if (listeners[i] >= 0)
            lp_fdset_add(fds, listeners[i], LP_FD_LISTENER);
    for (struct lp_session *s = p->rt->all; s && w->err == LP_OK; s = s->all_next)
        if (!s->closing)
            save_session(&sv, s);
    if (p->mcpd != NULL && w->err == LP_OK)
        save_mcp(&sv, p->mcpd);
    if (fds->nomem)
        lp_state_wr_fail(w, LP_ERR_NOMEM);
    return w->err;
}

/* ---- reading ------------------------------------------------------------------------------ */

/* A session read from the file: its cores while checking (held to the end of the pass, for the
 * attachments that name its streams), the session itself while building. */
struct staged {
    uint8_t id[LP_SESSION_ID_LEN];
    lp_pipe *pipe;
    lp_mux *mux;
    struct lp_session *s;
    uint32_t *ids; /* checking: the stream ids its ends take, each once */
    size_t nids, cap;
};

struct loader {
    struct lp_state_rd rd;
    lp_time now;
    const struct lp_upgrade_parts *p;
    const int *listeners;
    struct lp_fdset *fds;
    bool commit;
    struct lp_upgrade_summary *sum;
    struct staged *sess;
    size_t nsess, capsess;
    lp_mcppool *pool;  /* checking: the loaded pool, for the entries' and attachments' ids */
    uint64_t *entries; /* checking: the entry ids read so far */
    size_t nentries;
    struct lp_stats stats; /* the process's counters, applied once everything is built */
};

/* A descriptor the state names: checking, it must have been handed over, as anything but a
 * listener, and be named once; building, it is marked taken once an object owns it. */
static int read_fd(struct loader *ld, const char *what, bool may_be_none)
{
    uint32_t v = lp_state_u32(&ld->rd);
    long i;

    if (lp_state_err(&ld->rd) != LP_OK)
        return -1;
    if (v == FD_NONE && may_be_none)
        return -1;
    if (v > INT32_MAX || v < 3 || (i = lp_fdset_find(ld->fds, (int)v)) < 0 ||
        (ld->fds->mark[i] & LP_FD_CLOSED) != 0) {
        lp_state_fail(&ld->rd, LP_ERR_MALFORMED, "%s: descriptor %" PRIu32 " was not handed over",
                      what, v);
        return -1;
    }
    if (!ld->commit && (ld->fds->mark[i] & (LP_FD_CLAIMED | LP_FD_LISTENER)) != 0) {
        lp_state_fail(&ld->rd, LP_ERR_MALFORMED, "%s: descriptor %" PRIu32 " is named twice", what,
                      v);
        return -1;
    }
    ld->fds->mark[i] |= LP_FD_CLAIMED;
    return (int)v;
}

static void taken(struct loader *ld, int fd)
{
    long i = fd >= 0 ? lp_fdset_find(ld->fds, fd) : -1;
    if (i >= 0)
        ld->fds->mark[i] |= LP_FD_TAKEN;
}

static bool claim_id(struct loader *ld, struct staged *st, uint32_t id, const char *what)
{
    if (ld->commit)
        return true;
    if (!lp_mux_has_stream(st->mux, id)) {
        lp_state_fail(&ld->rd, LP_ERR_MALFORMED, "%s %" PRIu32 ": no such stream in its mux", what,
                      id);
        return false;
    }
    if (st->nids == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        uint32_t *ids = realloc(st->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            lp_state_fail(&ld->rd, LP_ERR_NOMEM, "out of memory");
            return false;
        }
        st->ids = ids;
        st->cap = cap;
    }
    st->ids[st->nids++] = id;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Checking: no stream has two local ends. */
static void check_ids(struct loader *ld)
{
    for (size_t i = 0; i < ld->nsess && lp_state_err(&ld->rd) == LP_OK; i++) {
        struct staged *st = &ld->sess[i];
        if (st->nids > 1) /* ids is NULL for a session without streams */
            qsort(st->ids, st->nids, sizeof(*st->ids), cmp_u32);
        for (size_t k = 1; k < st->nids; k++)
            if (st->ids[k] == st->ids[k - 1])
                lp_state_fail(&ld->rd, LP_ERR_MALFORMED, "stream %" PRIu32 " has two local ends",
                              st->ids[k]);
    }
}

static void read_process(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_stats *st = &ld->stats;
    uint64_t *counters[] = {
        &st->sessions_created, &st->sessions_ended,   &st->streams_opened,    &st->streams_refused,
        &st->reconnects,       &st->resumes,          &st->bytes_in_ended,    &st->bytes_out_ended,
        &st->upgrades,         &st->upgrade_failures, &st->sessions_restored,
    };
    const size_t ncounters = sizeof(counters) / sizeof(counters[0]);
    uint64_t last;
    size_t n;

    lp_state_enter(rd, LP_UPGRADE_PROCESS, &mark);
    const uint8_t *from = lp_state_text(rd, UINT16_MAX, &n);
    /* For the log only: any length is fine, cut; no control byte reaches the log line. */
    snprintf(ld->sum->from, sizeof(ld->sum->from), "%.*s",
             (int)LP_MIN(n, sizeof(ld->sum->from) - 1), from ? (const char *)from : "");
    for (char *c = ld->sum->from; *c; c++)
        *c = (unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c;
    st->started = lp_state_since(ld->now, lp_state_u64(rd));
    ld->sum->since_start = lp_state_u64(rd);
    for (int i = 0; i < 3; i++) {
        uint32_t fd = lp_state_u32(rd);
        if (lp_state_err(rd) == LP_OK &&
            fd != (ld->listeners[i] < 0 ? FD_NONE : (uint32_t)ld->listeners[i]))
            lp_state_fail(rd, LP_ERR_MALFORMED,
                          "listener %d is descriptor %" PRIu32 ", the environment says %d", i, fd,
                          ld->listeners[i]);
    }
    if (lp_state_u16(rd) != ncounters && lp_state_err(rd) == LP_OK)
        lp_state_fail(rd, LP_ERR_MALFORMED, "not %zu counters", ncounters);
    for (size_t i = 0; i < ncounters; i++)
        *counters[i] = lp_state_u64(rd);
    last = lp_state_u64(rd);
    st->last_upgrade = last == LP_TIME_NEVER ? 0 : lp_state_since(ld->now, last);
    if (lp_state_u16(rd) != LP_HS_REASONS && lp_state_err(rd) == LP_OK)
        lp_state_fail(rd, LP_ERR_MALFORMED, "not %d handshake refusal reasons", LP_HS_REASONS);
    for (int r = 0; r < LP_HS_REASONS; r++)
        st->handshakes_refused[r] = lp_state_u64(rd);
    if (lp_state_u16(rd) != LP_HIST_BOUNDS + 1 && lp_state_err(rd) == LP_OK)
        lp_state_fail(rd, LP_ERR_MALFORMED, "not %d resume histogram buckets", LP_HIST_BOUNDS + 1);
    for (int b = 0; b <= LP_HIST_BOUNDS; b++)
        st->resume.buckets[b] = lp_state_u64(rd);
    st->resume.count = lp_state_u64(rd);
    st->resume.sum_ms = lp_state_u64(rd);
    lp_state_leave(rd, &mark);
}

static void read_stream(struct loader *ld, struct staged *st)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_stream_image img;
    char target[TARGET_MAX + 1], shown[128];
    uint8_t phase, flags;

    lp_state_enter(rd, LP_UPGRADE_STREAM, &mark);
    img.id = lp_state_u32(rd);
    phase = lp_state_u8(rd);
    flags = lp_state_u8(rd);
    img.kind = lp_state_u8(rd);
    img.fd = read_fd(ld, "stream", phase == LP_STREAM_RESOLVING);
    img.up = lp_state_u64(rd);
    img.down = lp_state_u64(rd);
    img.timer_left = lp_state_u64(rd);
    lp_state_cstr(rd, target, sizeof(target), "a stream's target");
    lp_state_cstr(rd, shown, sizeof(shown), "a stream's description");
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK)
        return;
    if (phase > LP_STREAM_OPEN || (flags & ~0x03u) != 0 || img.kind < LP_KIND_TCP ||
        img.kind > LP_KIND_REVERSE || (phase == LP_STREAM_RESOLVING) != (img.fd < 0) ||
        (phase <= LP_STREAM_DIALING && target[0] == '\0')) {
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "stream %" PRIu32 ": phase %u, flags 0x%02x, kind %u "
                      "do not fit together",
                      img.id, phase, flags, img.kind);
        return;
    }
    if (!claim_id(ld, st, img.id, "stream"))
        return;
    img.phase = (enum lp_stream_phase)phase;
    img.read_eof = (flags & 0x01) != 0;
    img.write_shut = (flags & 0x02) != 0;
    img.target = target[0] ? target : NULL;
    img.shown = shown;
    ld->sum->streams++;
    if (ld->commit && lp_stream_restore(st->s, &img) == LP_OK)
        taken(ld, img.fd);
}

static void read_rlistener(struct loader *ld, struct staged *st)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_rlistener_image img;
    char spec[LP_ADDR_MAX + 8], local[64];

    lp_state_enter(rd, LP_UPGRADE_RLISTENER, &mark);
    img.req = lp_state_u32(rd);
    img.fd = read_fd(ld, "-R listener", false);
    img.port = lp_state_u16(rd);
    lp_state_cstr(rd, spec, sizeof(spec), "a -R listener's spec");
    lp_state_cstr(rd, local, sizeof(local), "a -R listener's address");
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK)
        return;
    if (img.req == 0 || spec[0] == '\0' || strrchr(local, ':') == NULL) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "-R listener %" PRIu32 " on \"%s\" is not one", img.req,
                      local);
        return;
    }
    img.spec = spec;
    img.local = local;
    ld->sum->rlisteners++;
    if (ld->commit && lp_reverse_restore(st->s, &img) == LP_OK)
        taken(ld, img.fd);
}

static struct staged *find_staged(struct loader *ld, const uint8_t *id)
{
    for (size_t i = 0; i < ld->nsess; i++)
        if (memcmp(ld->sess[i].id, id, LP_SESSION_ID_LEN) == 0)
            return &ld->sess[i];
    return NULL;
}

/* A new slot for the session with id (zeroed, not yet counted), NULL when there is no room or
 * the id was read before. */
static struct staged *stage(struct loader *ld, const uint8_t *id)
{
    struct staged *st;

    if (find_staged(ld, id) != NULL) {
        lp_state_fail(&ld->rd, LP_ERR_MALFORMED, "a session is there twice");
        return NULL;
    }
    if (ld->nsess == ld->capsess) {
        size_t cap = ld->capsess ? ld->capsess * 2 : 16;
        struct staged *v = realloc(ld->sess, cap * sizeof(*v));
        if (v == NULL) {
            lp_state_fail(&ld->rd, LP_ERR_NOMEM, "out of memory");
            return NULL;
        }
        ld->sess = v;
        ld->capsess = cap;
    }
    st = &ld->sess[ld->nsess];
    memset(st, 0, sizeof(*st));
    memcpy(st->id, id, LP_SESSION_ID_LEN);
    return st;
}

/* The session's own fields, then its cores: a staged session (checking) or a real one. */
static struct staged *read_session_head(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_pipe_config pc;
    struct lp_mux_config mc;
    struct lp_session *s = NULL;
    struct staged *st;
    lp_pipe *pipe = NULL;
    lp_mux *mux = NULL;
    char identity[sizeof(s->identity)], peer[sizeof(s->peer)];
    uint64_t created, down, ttl_left, reconnects, in, out;

    lp_state_cstr(rd, identity, sizeof(identity), "a session's identity");
    lp_state_cstr(rd, peer, sizeof(peer), "a session's peer");
    created = lp_state_u64(rd);
    down = lp_state_u64(rd);
    ttl_left = lp_state_u64(rd);
    reconnects = lp_state_u64(rd);
    in = lp_state_u64(rd);
    out = lp_state_u64(rd);
    lp_session_core_config(ld->p->cfg, &pc, &mc);
    if (lp_state_err(rd) != LP_OK || lp_pipe_load(rd, &pc, ld->now, &pipe) != LP_OK)
        return NULL;
    if (lp_mux_load(rd, &mc, pipe, &mux) != LP_OK ||
        (st = stage(ld, lp_pipe_session_id(pipe))) == NULL) {
        lp_mux_free(mux);
        lp_pipe_free(pipe);
        return NULL;
    }
    if (!ld->commit) {
        st->pipe = pipe;
        st->mux = mux;
        ld->nsess++;
        return st;
    }
    if (lp_server_restore_session(ld->p->server, pipe, mux, identity, ttl_left, &s) != LP_OK) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return NULL; /* pipe and mux were taken */
    }
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->created = lp_state_since(ld->now, created);
    s->down_since = lp_state_since(ld->now, down);
    s->reconnects = reconnects;
    s->bytes_in = in;
    s->bytes_out = out;
    st->s = s;
    ld->nsess++;
    return st;
}

static void read_session(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct staged *st;
    size_t n;

    lp_state_enter(rd, LP_UPGRADE_SESSION, &mark);
    if (lp_state_err(rd) == LP_OK && (st = read_session_head(ld)) != NULL) {
        n = lp_state_count(rd, LP_STATE_SECTION_HEADER + 40, SIZE_MAX, "streams");
        for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
            read_stream(ld, st);
        n = lp_state_count(rd, LP_STATE_SECTION_HEADER + 10, LP_REVERSE_MAX, "-R listeners");
        for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
            read_rlistener(ld, st);
        ld->sum->sessions++;
    }
    lp_state_leave(rd, &mark);
}

/* A process id the state names must be a child of this process: the new binary signals its
 * whole process group one day, and must never signal someone else's. */
static void read_child(struct loader *ld, struct lp_child_image *img)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    uint32_t pid;
    uint8_t step, flags;

    memset(img, 0, sizeof(*img));
    lp_state_enter(rd, LP_UPGRADE_MCP_CHILD, &mark);
    pid = lp_state_u32(rd);
    img->in_fd = read_fd(ld, "an MCP process's stdin", true);
    img->out_fd = read_fd(ld, "an MCP process's stdout", false);
    img->err_fd = read_fd(ld, "an MCP process's stderr", false);
    step = lp_state_u8(rd);
    flags = lp_state_u8(rd);
    img->grace = lp_state_u64(rd);
    img->stop_left = lp_state_u64(rd);
    img->inq_bytes = lp_state_blob(rd, UINT32_MAX, &img->inq_len);
    img->out_part = lp_state_blob(rd, UINT32_MAX, &img->out_len);
    img->tail = lp_state_blob(rd, LP_CHILD_TAIL_MAX, &img->tail_len);
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK)
        return;
    if (pid < 2 || pid > INT32_MAX || step > 3 || (flags & ~0x1Fu) != 0 ||
        ((flags & 0x10) && img->out_len > 0)) {
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "MCP process %" PRIu32 ": step %u, flags 0x%02x do "
                      "not fit together",
                      pid, step, flags);
        return;
    }
    img->pid = (pid_t)pid;
    if (!ld->commit && lp_ppid_of(img->pid) != (long)getpid()) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "process %" PRIu32 " is not a child of this process",
                      pid);
        return;
    }
    img->stop_step = step;
    img->paused = (flags & 0x01) != 0;
    img->out_eof = (flags & 0x02) != 0;
    img->err_eof = (flags & 0x04) != 0;
    img->was_full = (flags & 0x08) != 0;
    img->out_skipping = (flags & 0x10) != 0;
    ld->sum->children++;
}

static bool entry_known(const struct loader *ld, uint64_t id)
{
    for (size_t i = 0; i < ld->nentries; i++)
        if (ld->entries[i] == id)
            return true;
    return false;
}

static void read_entry(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_mcpd_entry_image img = {0};
    struct lp_child_image *child = NULL;
    char name[128], scope[128];
    uint8_t has_child;

    lp_state_enter(rd, LP_UPGRADE_MCP_ENTRY, &mark);
    img.id = lp_state_u64(rd);
    lp_state_cstr(rd, name, sizeof(name), "an MCP server's name");
    lp_state_cstr(rd, scope, sizeof(scope), "an MCP scope");
    has_child = lp_state_u8(rd);
    if (has_child > 1 && lp_state_err(rd) == LP_OK)
        lp_state_fail(rd, LP_ERR_MALFORMED, "MCP entry %" PRIu64 ": process flag %u", img.id,
                      has_child);
    if (has_child == 1 && lp_state_err(rd) == LP_OK) {
        if ((child = malloc(sizeof(*child))) == NULL)
            lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        else
            read_child(ld, child);
    }
    if (lp_state_err(rd) == LP_OK &&
        lp_mcproute_load(rd, LP_MCPD_MAX_INFLIGHT, LP_MCPD_ROUTE_HELD_MAX, &img.route) != LP_OK)
        img.route = NULL;
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) == LP_OK && !ld->commit &&
        (!lp_mcppool_has_entry(ld->pool, img.id) || entry_known(ld, img.id) || !name[0] ||
         !scope[0]))
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "MCP entry %" PRIu64 " is not one of the pool's, or "
                      "is there twice",
                      img.id);
    if (lp_state_err(rd) == LP_OK && !ld->commit) {
        uint64_t *v = realloc(ld->entries, (ld->nentries + 1) * sizeof(*v));
        if (v == NULL)
            lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        else
            (ld->entries = v)[ld->nentries++] = img.id;
    }
    if (lp_state_err(rd) == LP_OK && ld->commit) {
        img.name = name;
        img.scope = scope;
        img.child_img = child;
        if (lp_mcpd_restore_entry(ld->p->mcpd, &img) == LP_OK && child != NULL) {
            taken(ld, child->in_fd);
            taken(ld, child->out_fd);
            taken(ld, child->err_fd);
        }
        img.route = NULL; /* taken, even on failure */
    }
    lp_mcproute_free(img.route);
    free(child);
}

static void read_att(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_mcpd_att_image img = {0};
    uint8_t sid[LP_SESSION_ID_LEN], flags;
    char doomed[128];
    struct staged *st;

    lp_state_enter(rd, LP_UPGRADE_MCP_ATT, &mark);
    img.id = lp_state_u64(rd);
    img.entry = lp_state_u64(rd);
    lp_state_bytes(rd, sid, sizeof(sid));
    img.stream = lp_state_u32(rd);
    flags = lp_state_u8(rd);
    img.doomed_code = lp_state_u16(rd);
    lp_state_cstr(rd, doomed, sizeof(doomed), "an attachment's reset reason");
    img.in_part = lp_state_blob(rd, UINT32_MAX, &img.in_len);
    img.out_bytes = lp_state_blob(rd, UINT32_MAX, &img.out_len);
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK)
        return;
    img.forgotten = (flags & 0x01) != 0;
    img.in_skipping = (flags & 0x02) != 0;
    if ((st = find_staged(ld, sid)) == NULL || (flags & ~0x03u) != 0 || img.id == 0 ||
        (img.in_skipping && img.in_len > 0) ||
        (!ld->commit && img.entry != 0 &&
         (!entry_known(ld, img.entry) ||
          (!img.forgotten && lp_mcppool_entry_of(ld->pool, img.id) != img.entry)))) {
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "MCP attachment %" PRIu64 " (stream %" PRIu32 ", "
                      "entry %" PRIu64 ") does not fit the sessions and the pool",
                      img.id, img.stream, img.entry);
        return;
    }
    if (!claim_id(ld, st, img.stream, "MCP stream"))
        return;
    ld->sum->atts++;
    if (!ld->commit)
        return;
    img.session = st->s;
    img.doomed = doomed;
    if (lp_mcpd_restore_att(ld->p->mcpd, &img) != LP_OK)
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
}

static void read_mcp(struct loader *ld)
{
    struct lp_state_rd *rd = &ld->rd;
    struct lp_state_mark mark;
    struct lp_mcppool_limits lim;
    lp_mcppool *pool = NULL;
    uint64_t next_att;
    size_t n;

    lp_state_enter(rd, LP_UPGRADE_MCP, &mark);
    next_att = lp_state_u64(rd);
    lp_mcpd_limits(ld->p->cfg, &lim);
    if (lp_state_err(rd) == LP_OK && ld->commit && ld->p->mcpd == NULL)
        lp_state_fail(rd, LP_ERR_MALFORMED, "an MCP pool, but this server runs none");
    if (lp_state_err(rd) == LP_OK && lp_mcppool_load(rd, &lim, ld->now, &pool) == LP_OK) {
        if (ld->commit)
            lp_mcpd_restore_pool(ld->p->mcpd, pool, next_att);
        else
            ld->pool = pool;
        n = lp_state_count(rd, LP_STATE_SECTION_HEADER + 20, SIZE_MAX, "MCP entries");
        for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
            read_entry(ld);
        n = lp_state_count(rd, LP_STATE_SECTION_HEADER + 40, SIZE_MAX, "MCP attachments");
        for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
            read_att(ld);
        if (ld->commit)
            lp_mcpd_restore_done(ld->p->mcpd);
    }
    lp_state_leave(rd, &mark);
}

static void loader_clear(struct loader *ld)
{
    for (size_t i = 0; i < ld->nsess; i++) {
        lp_mux_free(ld->sess[i].mux);
        lp_pipe_free(ld->sess[i].pipe);
        free(ld->sess[i].ids);
    }
    free(ld->sess);
    free(ld->entries);
    lp_mcppool_free(ld->pool);
}

lp_err lp_upgrade_read(const uint8_t *buf, size_t len, const struct lp_upgrade_parts *p,
                       const int listeners[3], struct lp_fdset *fds, bool commit,
                       struct lp_upgrade_summary *sum, char *why, size_t whylen)
{
    struct loader ld = {
        .now = lp_now(), .p = p, .listeners = listeners, .fds = fds, .commit = commit, .sum = sum};
    struct lp_state_rd *rd = &ld.rd;
    uint16_t tag;
    lp_err rc;

    memset(sum, 0, sizeof(*sum));
    if (lp_state_open(rd, buf, len) == LP_OK) {
        read_process(&ld);
        while (lp_state_err(rd) == LP_OK && lp_state_peek_tag(rd, &tag) &&
               tag == LP_UPGRADE_SESSION)
            read_session(&ld);
        if (lp_state_err(rd) == LP_OK && lp_state_peek_tag(rd, &tag) && tag == LP_UPGRADE_MCP)
            read_mcp(&ld);
        if (lp_state_err(rd) == LP_OK && !lp_state_at_end(rd)) {
            if (!lp_state_peek_tag(rd, &tag))
                tag = 0;
            lp_state_fail(rd, LP_ERR_MALFORMED, "section 0x%04x (%s) where none was due",
                          (unsigned)tag, lp_state_tag_name(tag));
        }
        if (!commit)
            check_ids(&ld);
    }
    rc = lp_state_err(rd);
    snprintf(why, whylen, "%s", rc == LP_OK ? "" : rd->why);
    if (commit && rc == LP_OK) {
        /* Counters go on where the old binary left them; building bumped a few of them. */
        struct lp_stats *st = &p->rt->stats;
        ld.stats.upgrades++;
        ld.stats.last_upgrade = ld.now;
        ld.stats.sessions_restored += sum->sessions;
        *st = ld.stats;
    }
    loader_clear(&ld);
    return rc;
}
