/* fuzz_state.c — libFuzzer harness for the state file loaders (state.h: the container;
 * lp_pipe_load, lp_mux_load, lp_mcppool_load, lp_mcproute_load).
 *
 * Input: a whole state file. Sections are loaded in order, as the server's successor would:
 * PIPE makes the current pipe, MUX loads onto it (onto a fresh one when no pipe came first),
 * MCPPOOL and MCPROUTE stand alone; any other tag is refused, whole.
 *
 * Checked: no crash and no leak (ASan, UBSan); every refusal carries a reason; whatever a
 * loader takes, its saver writes again and the loader takes that too, and from then on the
 * bytes are stable (save(load(save(load(x)))) == save(load(x))); a taken object keeps working
 * when driven on (a resume and its output as whole frames; events drained, flushed, reset; a
 * pool ticked, opened, closed; a router fed lines, detached, crashed and restarted).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"
#include "limpet/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1000000u
#define WR_CAP (8u << 20)

static const struct lp_pipe_config PIPE_CFG = {
    .replay_buffer = 64u * 1024u,
    .ack_every = 4096,
    .ack_delay = 5,
    .heartbeat = 1000,
    .dead_after = 3000,
};

static const struct lp_mux_config MUX_CFG = {
    .stream_window = 64u * 1024u,
    .receive_buffer = 1u << 20,
    .max_streams = 64,
};

static const struct lp_mcppool_limits POOL_LIMITS = {
    .max_sessions = 4,
    .idle_timeout = 10000,
    .quick_exit = 5000,
    .backoff_min = 1000,
    .backoff_max = 8000,
};

/* What a loader took, to be saved again. */
struct loaded {
    uint16_t tag;
    lp_pipe *pipe; /* PIPE, and MUX's pipe */
    lp_mux *mux;
    lp_mcppool *pool;
    lp_mcproute *route;
};

static void free_loaded(struct loaded *l)
{
    lp_mux_free(l->mux);
    lp_pipe_free(l->pipe);
    lp_mcppool_free(l->pool);
    lp_mcproute_free(l->route);
    memset(l, 0, sizeof(*l));
}

/* Loads the next section; false (with a reason, checked) when refused. `pipe` is the pipe a
 * MUX section loads onto (NULL: a fresh one). */
static bool load_one(struct lp_state_rd *rd, uint16_t tag, lp_pipe *pipe, struct loaded *l)
{
    lp_err rc;

    memset(l, 0, sizeof(*l));
    l->tag = tag;
    switch (tag) {
    case LP_STATE_PIPE:
        rc = lp_pipe_load(rd, &PIPE_CFG, NOW, &l->pipe);
        break;
    case LP_STATE_MUX:
        if (pipe == NULL && lp_pipe_new(&PIPE_CFG, false, &l->pipe) != LP_OK)
            abort();
        rc = lp_mux_load(rd, &MUX_CFG, pipe != NULL ? pipe : l->pipe, &l->mux);
        break;
    case LP_STATE_MCPPOOL:
        rc = lp_mcppool_load(rd, &POOL_LIMITS, NOW, &l->pool);
        break;
    case LP_STATE_MCPROUTE:
        rc = lp_mcproute_load(rd, 16, SIZE_MAX, &l->route);
        break;
    default:
        lp_state_fail(rd, LP_ERR_MALFORMED, "unknown section 0x%04x", (unsigned)tag);
        rc = lp_state_err(rd);
        break;
    }
    if (rc != LP_OK) {
        if (rd->why[0] == '\0' || memchr(rd->why, '\0', sizeof(rd->why)) == NULL)
            abort(); /* a refusal without a reason a person can read */
        free_loaded(l);
        return false;
    }
    return true;
}

static lp_err save_one(const struct loaded *l, struct lp_state_wr *w)
{
    switch (l->tag) {
    case LP_STATE_PIPE:
        return lp_pipe_save(l->pipe, w, NOW);
    case LP_STATE_MUX:
        return lp_mux_save(l->mux, w);
    case LP_STATE_MCPPOOL:
        return lp_mcppool_save(l->pool, w, NOW);
    default:
        return lp_mcproute_save(l->route, w);
    }
}

/* Saves l into a fresh writer (a bare section); aborts if the saver fails. */
static void resave(const struct loaded *l, struct lp_state_wr *w)
{
    lp_state_wr_init(w, WR_CAP);
    if (save_one(l, w) != LP_OK)
        abort();
}

/* save(load(x)) loads again, and saves to the same bytes from then on. */
static void check_round_trip(const struct loaded *l)
{
    struct lp_state_wr w1, w2;
    struct lp_state_rd rd;
    struct loaded again;

    resave(l, &w1);
    lp_state_rd_init(&rd, w1.w.p, w1.w.off);
    if (!load_one(&rd, l->tag, NULL, &again) || !lp_state_at_end(&rd))
        abort();
    resave(&again, &w2);
    if (w1.w.off != w2.w.off || memcmp(w1.w.p, w2.w.p, w1.w.off) != 0)
        abort();
    free_loaded(&again);
    lp_state_wr_clear(&w1);
    lp_state_wr_clear(&w2);
}

/* ---- driving what was taken ---------------------------------------------------------------- */

static void drive_pipe(lp_pipe *p)
{
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION};
    struct lp_pipe_event ev;
    const char *why = NULL;
    const uint8_t *out;
    uint64_t gen;
    size_t n;

    memcpy(h.session_id, lp_pipe_session_id(p), LP_SESSION_ID_LEN);
    h.rx_seq = lp_pipe_acked(p); /* always a valid resume point */
    if (lp_pipe_accept(p, &h, NOW, &gen, &why) != LP_OK) {
        if (lp_pipe_state(p) != LP_PIPE_LOST)
            abort();
        return;
    }
    /* The replay goes out as whole frames, exactly tx_seq - acked of them after WELCOME. */
    for (int i = 0; i < 100000 && (n = lp_pipe_pending_output(p, &out)) > 0; i++) {
        size_t off = 0;
        while (off < n) {
            struct lp_frame f;
            size_t used = 0;
            if (lp_frame_decode(out + off, n - off, &f, &used, &why) != LP_OK)
                abort();
            off += used;
        }
        lp_pipe_output_sent(p, n, NOW);
    }
    lp_pipe_on_timeout(p, NOW + 5000);
    while (lp_pipe_next_event(p, &ev))
        if (memchr(ev.msg, '\0', sizeof(ev.msg)) == NULL)
            abort();
}

static void drive_mux(lp_mux *m)
{
    struct lp_mux_event ev;
    uint32_t id;

    for (int i = 0; i < 100000 && lp_mux_next_event(m, &ev); i++)
        if (ev.text_len > LP_FRAME_MAX_TEXT || ev.arg_len > LP_FRAME_MAX_TEXT)
            abort();
    lp_mux_flush(m);
    (void)lp_mux_open(m, LP_KIND_TCP, "h:1", 3, NULL, 0, &id);
    lp_mux_reset_all(m, LP_RST_SHUTDOWN, "done");
    for (int i = 0; i < 100000 && lp_mux_next_event(m, &ev); i++)
        ;
}

static void drive_pool(lp_mcppool *p)
{
    struct lp_mcppool_action a;

    lp_mcppool_tick(p, NOW + 20000);
    (void)lp_mcppool_open(p, "", "fs", "a", false, 0xFFFFFFF0u, NOW + 20001);
    for (uint64_t e = 1; e < 8; e++)
        lp_mcppool_started(p, e, true, NULL, NOW + 20002);
    (void)lp_mcppool_close_all(p, "bye", NOW + 20003);
    for (uint64_t e = 1; e < 8; e++)
        lp_mcppool_exited(p, e, "gone", NOW + 20004);
    while (lp_mcppool_next(p, &a))
        ;
}

static void drive_route(lp_mcproute *r)
{
    static const char resp[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
    uint64_t dest;
    char *line;
    size_t len;

    (void)lp_mcproute_from_child(r, (const uint8_t *)resp, sizeof(resp) - 1);
    (void)lp_mcproute_detach(r, 1);
    lp_mcproute_child_exited(r);
    (void)lp_mcproute_child_started(r);
    for (int i = 0; i < 100000 && lp_mcproute_next(r, &dest, &line, &len); i++) {
        if (len == 0 || line[len - 1] != '\n')
            abort();
        free(line);
    }
}

static void drive(struct loaded *l)
{
    switch (l->tag) {
    case LP_STATE_PIPE:
        drive_pipe(l->pipe);
        break;
    case LP_STATE_MUX:
        drive_mux(l->mux);
        break;
    case LP_STATE_MCPPOOL:
        drive_pool(l->pool);
        break;
    default:
        drive_route(l->route);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_state_rd rd;
    lp_pipe *pipe = NULL; /* the last PIPE section's, for a MUX after it */
    uint16_t tag;

    if (lp_state_open(&rd, data, size) != LP_OK) {
        if (rd.why[0] == '\0')
            abort();
        return 0;
    }
    for (int i = 0; i < 64 && lp_state_peek_tag(&rd, &tag); i++) {
        struct loaded l;
        if (!load_one(&rd, tag, pipe, &l))
            break;
        check_round_trip(&l);
        if (l.tag == LP_STATE_PIPE) {
            lp_pipe_free(pipe);
            pipe = l.pipe; /* kept for a MUX; driven after it */
            l.pipe = NULL;
            continue;
        }
        if (l.tag == LP_STATE_MUX && l.pipe == NULL) {
            drive(&l);
            free_loaded(&l);
            drive_pipe(pipe); /* the mux's control frames are in it now */
            lp_pipe_free(pipe);
            pipe = NULL;
            continue;
        }
        drive(&l);
        free_loaded(&l);
    }
    if (pipe != NULL)
        drive_pipe(pipe);
    lp_pipe_free(pipe);
    return 0;
}
