/* pipe_state.c — the pipe saved to and loaded from a state file (upgrade in place). See
 * pipe.h for the contract and docs/PROTOCOL.md ("State file") for the layout.
 *
 * What crosses: everything the session needs to resume, nothing of the link. The link is
 * closed across the hand-over, so the loaded pipe is what lp_pipe_link_down leaves: DETACHED,
 * no receive buffer, no half-sent control frame, rx_seq on a frame boundary (input the old
 * process had not handed up as whole frames is not counted, so the peer replays it). The
 * replay bytes are checked frame by frame on load: the replay store reads frame headers in
 * place and trusts them.
 */
#include <inttypes.h>
#include <string.h>

#include "limpet/pipe.h"
#include "limpet/state.h"
#include "pipe_internal.h"

enum {
    PF_CLIENT = 1u << 0,   /* the client's end of the session */
    PF_WAS_LIVE = 1u << 1, /* a link has been LIVE once: the next WELCOME resumes */
    PF_LOST = 1u << 2,     /* the session is lost (final) */
    PF_STARVED = 1u << 3,  /* a reserve found the replay buffer full: ROOM is owed */
    PF_ROOM = 1u << 4,     /* a ROOM event was queued and not yet drained */
    PF_ALL = (1u << 5) - 1,
};

static bool room_queued(const lp_pipe *p)
{
    for (size_t i = 0; i < p->ev_count; i++)
        if (p->evq[(p->ev_head + i) % EVQ_CAP].type == LP_PIPE_EV_ROOM)
            return true;
    return false;
}

static uint8_t save_flags(const lp_pipe *p)
{
    return (uint8_t)((p->is_client ? PF_CLIENT : 0) | (p->was_live ? PF_WAS_LIVE : 0) |
                     (p->state == LP_PIPE_LOST ? PF_LOST : 0) | (p->starved ? PF_STARVED : 0) |
                     (room_queued(p) ? PF_ROOM : 0));
}

lp_err lp_pipe_save(const lp_pipe *p, struct lp_state_wr *w, lp_time now)
{
    const struct lp_replay *r = &p->replay;
    uint64_t held = r->tx_seq - r->acked;

    if (held > UINT32_MAX) {
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
        return w->err;
    }
    lp_state_section_begin(w, LP_STATE_PIPE);
    lp_state_put_u8(w, save_flags(p));
    lp_state_put_u64(w, p->gen);
    lp_state_put_bytes(w, p->session_id, LP_SESSION_ID_LEN);
    lp_state_put_bytes(w, p->token, LP_TOKEN_LEN);
    lp_state_put_u64(w, p->rx_seq);
    lp_state_put_u64(w, r->acked);
    lp_state_put_u64(w, r->tx_seq);
    lp_state_put_u64(w, p->rtt);
    lp_state_put_u64(w, lp_state_age(now, p->last_rx));
    lp_state_put_u64(w, lp_state_age(now, p->last_tx));
    lp_state_put_u64(w, lp_state_age(now, p->last_ping));
    lp_state_put_u32(w, (uint32_t)held);
    /* Chunk by chunk: each holds whole frames, so the bytes go out as they sit. */
    for (uint64_t seq = r->acked; seq < r->tx_seq && w->err == LP_OK;) {
        const uint8_t *data;
        size_t n = lp_replay_read(r, seq, &data);
        if (n == 0) {
            lp_state_wr_fail(w, LP_ERR_STATE); /* unreachable: [acked, tx_seq) is held */
            break;
        }
        n = (size_t)LP_MIN((uint64_t)n, r->tx_seq - seq);
        lp_state_put_bytes(w, data, n);
        seq += n;
    }
    lp_state_section_end(w);
    return w->err;
}

/* The replay bytes must be sequenced frames back to back, exactly: the store would otherwise
 * read a header out of bounds when it looks for a frame boundary. */
static void check_frames(struct lp_state_rd *rd, const uint8_t *bytes, size_t len)
{
    size_t off = 0;

    while (off < len && lp_state_err(rd) == LP_OK) {
        struct lp_frame f;
        size_t used = 0;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(bytes + off, len - off, &f, &used, &why);
        if (rc == LP_ERR_TRUNCATED)
            lp_state_fail(rd, LP_ERR_MALFORMED, "the replay bytes end inside a frame at %zu", off);
        else if (rc != LP_OK)
            lp_state_fail(rd, LP_ERR_MALFORMED, "replay frame at %zu: %s", off,
                          why ? why : lp_strerror(rc));
        else if (!lp_frame_is_sequenced(f.type))
            lp_state_fail(rd, LP_ERR_MALFORMED, "replay frame at %zu is %s, not a sequenced one",
                          off, lp_frame_type_name(f.type));
        off += used;
    }
}

/* Copies whole frames into the store, each where it fits whole (a frame never straddles two
 * chunks). */
static lp_err fill_replay(struct lp_replay *r, const uint8_t *bytes, size_t len)
{
    size_t off = 0;

    while (off < len) {
        size_t n = LP_FRAME_HEADER + lp_load_u16(bytes + off + 2);
        if (!lp_replay_ensure_tail(r, n))
            return LP_ERR_NOMEM;
        memcpy(lp_replay_tail(r), bytes + off, n);
        lp_replay_commit(r, n);
        off += n;
    }
    return LP_OK;
}

struct saved_pipe {
    uint8_t flags;
    uint64_t gen, rx_seq, acked, tx_seq, rtt, rx_age, tx_age, ping_age;
    uint8_t session_id[LP_SESSION_ID_LEN];
    uint8_t token[LP_TOKEN_LEN];
    const uint8_t *replay;
    size_t replay_len;
};

static void read_pipe(struct lp_state_rd *rd, struct saved_pipe *s)
{
    s->flags = lp_state_u8(rd);
    s->gen = lp_state_u64(rd);
    lp_state_bytes(rd, s->session_id, LP_SESSION_ID_LEN);
    lp_state_bytes(rd, s->token, LP_TOKEN_LEN);
    s->rx_seq = lp_state_u64(rd);
    s->acked = lp_state_u64(rd);
    s->tx_seq = lp_state_u64(rd);
    s->rtt = lp_state_u64(rd);
    s->rx_age = lp_state_u64(rd);
    s->tx_age = lp_state_u64(rd);
    s->ping_age = lp_state_u64(rd);
    s->replay = lp_state_blob(rd, SIZE_MAX, &s->replay_len);
    if (lp_state_err(rd) != LP_OK)
        return;
    if (s->flags & ~(unsigned)PF_ALL)
        lp_state_fail(rd, LP_ERR_MALFORMED, "unknown pipe flags 0x%02x", (unsigned)s->flags);
    else if (s->acked > s->tx_seq || s->tx_seq - s->acked != s->replay_len)
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "acked %" PRIu64 " and tx_seq %" PRIu64 " do not hold the %zu replay bytes",
                      s->acked, s->tx_seq, s->replay_len);
    else
        check_frames(rd, s->replay, s->replay_len);
}

/* A pipe as lp_pipe_link_down leaves it, with the saved session in it. */
static lp_err build_pipe(const struct saved_pipe *s, const struct lp_pipe_config *cfg, lp_time now,
                         lp_pipe **pp)
{
    lp_pipe *p = NULL;
    lp_err rc;

    if ((rc = lp_pipe_new(cfg, (s->flags & PF_CLIENT) != 0, &p)) != LP_OK)
        return rc;
    p->was_live = (s->flags & PF_WAS_LIVE) != 0;
    p->state = (s->flags & PF_LOST) ? LP_PIPE_LOST : LP_PIPE_DETACHED;
    p->starved = (s->flags & PF_STARVED) != 0;
    p->gen = s->gen;
    memcpy(p->session_id, s->session_id, LP_SESSION_ID_LEN);
    memcpy(p->token, s->token, LP_TOKEN_LEN);
    p->rx_seq = s->rx_seq;
    p->ack_sent = s->rx_seq;
    p->rtt = s->rtt;
    p->last_rx = lp_state_since(now, s->rx_age);
    p->last_tx = lp_state_since(now, s->tx_age);
    p->last_ping = lp_state_since(now, s->ping_age);
    lp_replay_init_at(&p->replay, s->acked);
    p->send_seq = p->frame_end = s->acked;
    if ((rc = fill_replay(&p->replay, s->replay, s->replay_len)) != LP_OK) {
        lp_pipe_free(p);
        return rc;
    }
    if (s->flags & PF_ROOM) { /* the news the old glue never heard: the mux must flush */
        p->evq[0] = (struct lp_pipe_event){.type = LP_PIPE_EV_ROOM, .gen = p->gen};
        p->ev_count = 1;
    }
    *pp = p;
    return LP_OK;
}

lp_err lp_pipe_load(struct lp_state_rd *rd, const struct lp_pipe_config *cfg, lp_time now,
                    lp_pipe **pp)
{
    struct saved_pipe s;
    struct lp_state_mark mark;
    lp_pipe *p = NULL;
    lp_err rc;

    *pp = NULL;
    memset(&s, 0, sizeof(s));
    lp_state_enter(rd, LP_STATE_PIPE, &mark);
    read_pipe(rd, &s);
    lp_state_leave(rd, &mark);
    if ((rc = lp_state_err(rd)) != LP_OK)
        goto out;
    if ((rc = build_pipe(&s, cfg, now, &p)) != LP_OK) {
        lp_state_fail(rd, rc, "cannot build the pipe: %s", lp_strerror(rc));
        goto out;
    }
    *pp = p;
out:
    explicit_bzero(s.token, sizeof(s.token));
    return rc;
}
