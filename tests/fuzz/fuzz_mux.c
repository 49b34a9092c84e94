/* fuzz_mux.c — libFuzzer target for the stream multiplexer.
 *
 * A server mux on a server pipe whose link goes to a bare client pipe (it only ACKs). The
 * input is a little program: each op is one byte and its arguments. Peer ops build sequenced
 * frames with the frame encoders (so most are well-formed and reach deep into the mux),
 * with the ids mostly chosen to be plausible; a raw op hands over arbitrary bytes that
 * lp_frame_decode accepted. Local ops are what the glue would do: open, accept, reset,
 * shutdown, send, peek/consume, window extensions, flush, GOODBYE, reset_all, and carrying
 * the link so ACKs free the replay buffer. Every event is drained and checked against the
 * mux's own view, and the credit sums after every op (nothing held beyond what was granted,
 * no extension past the receive budget);
 * lp_mux_free at the end lets LeakSanitizer see anything lost.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 4000
#define MAX_STREAMS 8
#define WINDOW (64u * 1024u)
/* Room for one stream's window to grow (to WINDOW_MAX) within half of it, and for budget
 * exhaustion with a few streams. */
#define RECEIVE_BUFFER (256u * 1024u)
#define WINDOW_MAX (2u * WINDOW)

struct input {
    const uint8_t *p;
    size_t n;
    size_t off;
};

struct world {
    lp_pipe *sp, *cp; /* server (under test) and the bare client that ACKs */
    lp_mux *m;
    lp_time now;
    uint32_t next_peer_id; /* the next plausible id for a peer OPEN */
    uint8_t frame[LP_FRAME_MAX];
    uint8_t payload[LP_FRAME_MAX_PAYLOAD];
};

static void check(int ok)
{
    if (!ok)
        abort();
}

static uint8_t in_u8(struct input *in)
{
    return in->off < in->n ? in->p[in->off++] : 0;
}

static uint16_t in_u16(struct input *in)
{
    return (uint16_t)(in_u8(in) << 8 | in_u8(in));
}

static uint32_t in_u32(struct input *in)
{
    return (uint32_t)in_u16(in) << 16 | in_u16(in);
}

/* Mostly ids that exist or just did; sometimes anything. */
static uint32_t pick_id(struct input *in)
{
    uint8_t b = in_u8(in);
    if (b < 240)
        return 1u + b % 24u;
    return in_u32(in);
}

static uint32_t pick_window(struct input *in)
{
    static const uint32_t common[] = {1, 100, 16384, WINDOW, 1u << 20, UINT32_MAX};
    uint8_t b = in_u8(in);
    return b < 192 ? common[b % 6] : in_u32(in);
}

/* ---- events --------------------------------------------------------------------------- */

static void drain_events(struct world *w, struct input *in)
{
    struct lp_mux_event ev;
    lp_err rc;

    for (int i = 0; i < 100000 && lp_mux_next_event(w->m, &ev); i++) {
        check(ev.text_len <= LP_FRAME_MAX_TEXT && ev.arg_len <= LP_FRAME_MAX_TEXT);
        check(ev.text_len == 0 || ev.text != NULL);
        switch (ev.type) {
        case LP_MUX_EV_OPEN:
            check(lp_mux_has_stream(w->m, ev.id));
            check(ev.text_len >= 1);
            if (in_u8(in) % 8 == 0)
                lp_mux_reset(w->m, ev.id, LP_RST_NOT_ALLOWED, "not allowed");
            else
                check(lp_mux_accept(w->m, ev.id) == LP_OK);
            break;
        case LP_MUX_EV_READABLE:
            check(lp_mux_has_stream(w->m, ev.id));
            break;
        case LP_MUX_EV_RST:
        case LP_MUX_EV_CLOSED:
            check(!lp_mux_has_stream(w->m, ev.id));
            break;
        case LP_MUX_EV_BIND: /* answered like a server would; a full queue is the peer's fault */
            check(ev.id != 0);
            if (in_u8(in) % 2 == 0)
                rc = lp_mux_bind_ok(w->m, ev.id, 8080, "127.0.0.1", 9);
            else
                rc = lp_mux_bind_fail(w->m, ev.id, LP_RST_NOT_ALLOWED, ev.text, ev.text_len);
            check(rc == LP_OK || rc == LP_ERR_NOSPACE || rc == LP_ERR_NOMEM);
            break;
        default:
            break;
        }
    }
    check(lp_mux_stream_count(w->m) <= MAX_STREAMS);
}

/* ---- the link: carry server output to the client, ACKs back ------------------------------ */

static void pump_link(struct world *w)
{
    const uint8_t *out;
    struct lp_frame f;
    struct lp_pipe_event pev;

    for (int round = 0; round < 64; round++) {
        size_t n = lp_pipe_pending_output(w->sp, &out);
        size_t took = n ? lp_pipe_recv(w->cp, out, n, w->now) : 0;
        lp_pipe_output_sent(w->sp, took, w->now);
        while (lp_pipe_next_frame(w->cp, &f, w->now))
            ; /* the bare client takes every frame and forgets it */
        w->now += 3;
        lp_pipe_on_timeout(w->cp, w->now);
        n = lp_pipe_pending_output(w->cp, &out);
        size_t back = n ? lp_pipe_recv(w->sp, out, n, w->now) : 0;
        lp_pipe_output_sent(w->cp, back, w->now);
        if (lp_pipe_next_frame(w->sp, &f, w->now))
            abort(); /* the bare client sends no sequenced frames */
        if (took == 0 && back == 0)
            break;
    }
    while (lp_pipe_next_event(w->sp, &pev)) {
        if (pev.type == LP_PIPE_EV_ROOM)
            lp_mux_flush(w->m);
    }
    while (lp_pipe_next_event(w->cp, &pev))
        ;
}

/* ---- peer frames ---------------------------------------------------------------------- */

static void deliver(struct world *w, size_t n)
{
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;

    if (n == 0 || lp_frame_decode(w->frame, n, &f, &used, &why) != LP_OK)
        return;
    if (!lp_frame_is_sequenced(f.type))
        return;
    lp_err rc = lp_mux_recv(w->m, &f, &why);
    check(rc == LP_OK || rc == LP_ERR_PROTOCOL || rc == LP_ERR_NOMEM);
    check(rc == LP_OK || why != NULL);
}

static void peer_open(struct world *w, struct input *in)
{
    uint8_t b = in_u8(in);
    uint32_t id = b < 200 ? w->next_peer_id : pick_id(in);
    struct lp_open o = {
        .kind = (uint8_t)(1 + in_u8(in) % 4),
        .window = pick_window(in),
        .target = (const uint8_t *)"host.example:22",
        .target_len = 1 + in_u8(in) % 15,
        .arg = (const uint8_t *)"scope",
        .arg_len = in_u8(in) % 6,
    };
    if (b < 200)
        w->next_peer_id += 2;
    deliver(w, lp_open_encode(w->frame, sizeof(w->frame), id, &o));
}

static void peer_data(struct world *w, struct input *in)
{
    uint32_t id = pick_id(in);
    size_t len = 1 + in_u16(in) % LP_FRAME_MAX_PAYLOAD;
    deliver(w, lp_data_encode(w->frame, sizeof(w->frame), id, w->payload, len));
}

static void peer_text(struct world *w, struct input *in, uint8_t type)
{
    static const char msg[] = "connection refused by the far end";
    uint32_t id = type == LP_FT_GOODBYE ? 0 : pick_id(in);
    uint16_t code = in_u8(in);
    size_t len = in_u8(in) % sizeof(msg);
    deliver(w, lp_text_encode(w->frame, sizeof(w->frame), type, id, code, msg, len));
}

static void peer_raw(struct world *w, struct input *in)
{
    size_t len = LP_FRAME_HEADER + in_u8(in);
    size_t i;

    for (i = 0; i < len && in->off < in->n; i++)
        w->frame[i] = in_u8(in);
    deliver(w, i);
}

static void peer_op(struct world *w, struct input *in, uint8_t op)
{
    switch (op) {
    case 0:
        peer_open(w, in);
        break;
    case 1:
        deliver(w, lp_u32_encode(w->frame, sizeof(w->frame), LP_FT_OPEN_OK, pick_id(in),
                                 pick_window(in)));
        break;
    case 2:
        peer_data(w, in);
        break;
    case 3:
        deliver(w, lp_u32_encode(w->frame, sizeof(w->frame), LP_FT_WINDOW, pick_id(in),
                                 pick_window(in)));
        break;
    case 4:
        deliver(w, lp_empty_encode(w->frame, sizeof(w->frame), LP_FT_FIN, pick_id(in)));
        break;
    case 5:
        peer_text(w, in, LP_FT_RST);
        break;
    case 6:
        peer_text(w, in, LP_FT_GOODBYE);
        break;
    case 7:
        peer_text(w, in, LP_FT_BIND);
        break;
    default:
        peer_raw(w, in);
        break;
    }
}

/* ---- local ops ------------------------------------------------------------------------ */

static void local_send(struct world *w, struct input *in)
{
    uint32_t id = pick_id(in);
    size_t want = in_u16(in);
    uint8_t *buf;
    size_t room = lp_mux_send_reserve(w->m, id, &buf);

    if (room == 0)
        return;
    check(buf != NULL && room <= LP_FRAME_MAX_PAYLOAD);
    size_t n = 1 + want % room;
    memset(buf, 0xAB, n);
    lp_mux_send_commit(w->m, id, n);
}

static void local_consume(struct world *w, struct input *in)
{
    uint32_t id = pick_id(in);
    const uint8_t *d;
    size_t before = lp_mux_recv_buffered(w->m, id);
    size_t n = lp_mux_recv_peek(w->m, id, &d);

    check(n <= before && before <= RECEIVE_BUFFER); /* a window plus extensions */
    if (n > 0) { /* both ends of the view must be readable memory (ASan checks) */
        volatile uint8_t first = d[0], last = d[n - 1];
        (void)first;
        (void)last;
    }
    lp_mux_recv_consumed(w->m, id, in_u8(in) < 128 ? n : (size_t)in_u16(in));
}

/* What a glue holding a half-received line does: ask for more credit without consuming. */
static void local_extend(struct world *w, struct input *in)
{
    size_t before = lp_mux_granted(w->m), granted = 7;
    uint32_t id = pick_id(in);
    size_t want = pick_window(in);
    lp_err rc = lp_mux_recv_extend(w->m, id, want, &granted);

    check(rc == LP_OK || rc == LP_ERR_NOSPACE || rc == LP_ERR_NOT_FOUND || rc == LP_ERR_STATE ||
          rc == LP_ERR_CLOSED || rc == LP_ERR_TOO_BIG);
    check(rc == LP_OK || granted == 0);
    check(granted <= want);
    /* Sending its WINDOW may free other streams (a FIN that was waiting goes out). */
    check(lp_mux_granted(w->m) <= before + granted);
    check(granted == 0 || lp_mux_granted(w->m) <= RECEIVE_BUFFER);
}

/* Uses up the pipe's control slack with GOODBYEs of shrinking size (only the last one would
 * ever matter), so that the next control frames must wait for lp_mux_flush. */
static void choke(struct world *w)
{
    static char msg[LP_FRAME_MAX_TEXT + 1];

    memset(msg, 'g', LP_FRAME_MAX_TEXT);
    for (size_t len = LP_FRAME_MAX_TEXT; len > 0; len /= 2) {
        msg[len] = '\0';
        for (int i = 0; i < 200; i++) {
            size_t before = lp_pipe_buffered(w->sp);
            lp_mux_goodbye(w->m, LP_GOODBYE_NORMAL, msg);
            if (lp_pipe_buffered(w->sp) == before)
                break;
        }
        msg[len] = 'g';
    }
}

/* What a call on a stream picked at random may answer: done, or no such stream, or not in a
 * state for it; anything else is a finding. */
static void check_stream_call(lp_err rc)
{
    check(rc == LP_OK || rc == LP_ERR_NOT_FOUND || rc == LP_ERR_STATE);
}

static void local_op(struct world *w, struct input *in, uint8_t op)
{
    uint32_t id;
    lp_err rc;

    switch (op) {
    case 0: /* a valid kind and target: only the stream cap (or memory) may refuse it */
        rc = lp_mux_open(w->m, (uint8_t)(1 + in_u8(in) % 4), "t:1", 3, NULL, 0, &id);
        check(rc == LP_ERR_NOSPACE || rc == LP_ERR_NOMEM || (rc == LP_OK && id != 0));
        break;
    case 1:
        check_stream_call(lp_mux_accept(w->m, pick_id(in)));
        break;
    case 2:
        lp_mux_reset(w->m, pick_id(in), in_u8(in), "local reset");
        break;
    case 3:
        check_stream_call(lp_mux_shutdown(w->m, pick_id(in)));
        break;
    case 4:
        local_send(w, in);
        break;
    case 5:
        local_consume(w, in);
        break;
    case 6:
        lp_mux_flush(w->m);
        break;
    case 7:
        pump_link(w);
        break;
    case 8:
        lp_mux_goodbye(w->m, in_u8(in), "bye");
        break;
    default:
        op = in_u8(in);
        if (op == 0xEE) /* rare: the session ends */
            lp_mux_reset_all(w->m, LP_RST_SESSION_LOST, "session lost");
        else if (op >= 0x80)
            choke(w);
        else if (op < 0x40)
            local_extend(w, in);
        break;
    }
}

/* ---- setup ---------------------------------------------------------------------------- */

static int world_init(struct world *w)
{
    static const struct lp_pipe_config pc = {
        .replay_buffer = 64u * 1024u,
        .ack_every = 4096,
        .ack_delay = 2,
        .heartbeat = 1000000,
        .dead_after = 100000000,
    };
    static const struct lp_mux_config mc = {
        .stream_window = WINDOW,
        .receive_buffer = RECEIVE_BUFFER,
        .max_streams = MAX_STREAMS,
        .stream_window_max = WINDOW_MAX,
    };
    static const uint8_t sid[LP_SESSION_ID_LEN] = {1};
    static const uint8_t token[LP_TOKEN_LEN] = {2};
    const uint8_t *out;
    struct lp_frame f;
    struct lp_hello h;
    size_t used = 0;
    const char *why = NULL;
    uint64_t gen;

    memset(w, 0, sizeof(*w));
    w->now = 1;
    w->next_peer_id = 1;
    memset(w->payload, 0x5C, sizeof(w->payload));
    if (lp_pipe_new(&pc, false, &w->sp) != LP_OK || lp_pipe_new(&pc, true, &w->cp) != LP_OK ||
        lp_mux_new(&mc, w->sp, false, &w->m) != LP_OK)
        return -1;
    lp_pipe_set_identity(w->sp, sid, token);
    lp_pipe_connect(w->cp, w->now);
    size_t n = lp_pipe_pending_output(w->cp, &out);
    check(lp_frame_decode(out, n, &f, &used, &why) == LP_OK);
    check(lp_hello_decode(&f, &h, &why) == LP_OK);
    check(lp_pipe_accept(w->sp, &h, w->now, &gen, &why) == LP_OK);
    lp_pipe_output_sent(w->cp, used, w->now);
    pump_link(w);
    return 0;
}

static void world_clear(struct world *w)
{
    lp_mux_free(w->m);
    lp_pipe_free(w->sp);
    lp_pipe_free(w->cp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct world w;
    struct input in = {data, size, 0};

    if (world_init(&w) == 0) {
        for (int i = 0; i < MAX_OPS && in.off < in.n; i++) {
            uint8_t op = in_u8(&in);
            if (op < 128)
                peer_op(&w, &in, op % 9);
            else
                local_op(&w, &in, op % 10);
            drain_events(&w, &in);
            /* Every byte held, or promised by an extension, lies within a granted window. */
            check(lp_mux_buffered(w.m) <= lp_mux_held(w.m));
            check(lp_mux_held(w.m) <= lp_mux_granted(w.m));
        }
    }
    world_clear(&w);
    return 0;
}
