/* fuzz_pipe.c — libFuzzer harness for the backed pipe (pipe.h).
 *
 * Input: 3 bytes of knobs, then link bytes. knobs[0..1] seed the chunk sizes and clock steps,
 * knobs[2] picks how often timers fire and whether dropped links are re-attached. The link
 * bytes go to a client pipe right after lp_pipe_connect (so a valid input starts with WELCOME
 * or REJECT) and, with a leading WELCOME skipped, to a server pipe that accepted a HELLO.
 *
 * Invariants checked after every step: acked <= tx_seq; rx_seq never goes back; tx_seq does
 * not move on input; the replay buffer stays within replay_buffer + slack; after
 * on_timeout(now) the next deadline is later than now (a glue would spin otherwise); every
 * event message is NUL-terminated; and everything a pipe outputs parses as whole frames.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/pipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_LOG_CAP (96u * 1024u) /* under 128 KiB: ASan allocates larger blocks slowly */

static const struct lp_pipe_config cfg = {
    .replay_buffer = 64u * 1024u,
    .ack_every = 512,
    .ack_delay = 3,
    .heartbeat = 40,
    .dead_after = 150,
};

struct end {
    lp_pipe *p;
    uint64_t tx_seq; /* what we wrote; input must not change it */
    uint64_t rx_seq; /* highest seen */
    uint8_t *out;    /* what the pipe put on the link since the last link change */
    size_t out_len;
    int reattach; /* links left to attach after a drop */
};

static void check(struct end *e)
{
    lp_pipe *p = e->p;

    if (lp_pipe_acked(p) > lp_pipe_tx_seq(p))
        abort();
    if (lp_pipe_tx_seq(p) != e->tx_seq)
        abort();
    if (lp_pipe_rx_seq(p) < e->rx_seq)
        abort();
    e->rx_seq = lp_pipe_rx_seq(p);
    if (lp_pipe_buffered(p) > cfg.replay_buffer + LP_PIPE_CONTROL_SLACK)
        abort();
}

/* Everything output on one link must be whole frames back to back. Checks the whole frames
 * logged so far and keeps a partial one; at a link change (`last`) none may be left. */
static void check_output(struct end *e, bool last)
{
    size_t off = 0;
    while (off < e->out_len) {
        struct lp_frame f;
        size_t used = 0;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(e->out + off, e->out_len - off, &f, &used, &why);
        if (rc == LP_ERR_TRUNCATED && !last)
            break;
        if (rc != LP_OK)
            abort();
        off += used;
    }
    memmove(e->out, e->out + off, e->out_len - off);
    e->out_len -= off;
}

static void take_output(struct end *e, lp_time now)
{
    const uint8_t *out = NULL;
    size_t n;

    for (int i = 0; i < 256 && (n = lp_pipe_pending_output(e->p, &out)) > 0; i++) {
        if (n > OUT_LOG_CAP - e->out_len)
            check_output(e, false);
        if (n > OUT_LOG_CAP - e->out_len)
            abort(); /* a partial frame is under LP_FRAME_MAX and n under 64 KiB */
        memcpy(e->out + e->out_len, out, n);
        e->out_len += n;
        lp_pipe_output_sent(e->p, n, now);
    }
}

static void drain(struct end *e, lp_time now)
{
    struct lp_frame f;
    struct lp_pipe_event ev;

    for (int i = 0; i < 100000 && lp_pipe_next_frame(e->p, &f, now); i++) {
        if (f.len > LP_FRAME_MAX_PAYLOAD || !lp_frame_is_sequenced(f.type))
            abort();
        check(e);
    }
    while (lp_pipe_next_event(e->p, &ev)) {
        if (memchr(ev.msg, '\0', sizeof(ev.msg)) == NULL)
            abort();
    }
    take_output(e, now);
    check(e);
}

static void write_frames(struct end *e)
{
    uint8_t fr[64];
    uint8_t *buf = NULL;

    for (uint32_t i = 0; i < 3; i++) {
        size_t n = lp_pipe_reserve(e->p, 100 + 700 * i, &buf);
        memset(buf, (int)i, n);
        lp_pipe_commit(e->p, LP_FT_DATA, 0, 1 + 2 * i, n);
    }
    size_t n = lp_u32_encode(fr, sizeof(fr), LP_FT_WINDOW, 3, 65536);
    if (lp_pipe_send_frame(e->p, fr, n) != LP_OK)
        abort();
    e->tx_seq = lp_pipe_tx_seq(e->p);
}

static void attach(struct end *e, bool is_client, lp_time now)
{
    check_output(e, true);
    if (is_client) {
        lp_pipe_connect(e->p, now);
    } else {
        struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION};
        uint64_t gen = 0;
        const char *why = NULL;
        h.rx_seq = lp_pipe_acked(e->p); /* always a valid resume point */
        if (lp_pipe_accept(e->p, &h, now, &gen, &why) != LP_OK)
            abort();
    }
    drain(e, now);
}

static void feed(struct end *e, bool is_client, const uint8_t *in, size_t n, lp_time now)
{
    for (int guard = 0; n > 0 && guard < 64; guard++) {
        size_t k = lp_pipe_recv(e->p, in, n, now);
        drain(e, now);
        if (k == 0) {
            if (e->reattach-- <= 0 || lp_pipe_state(e->p) == LP_PIPE_LOST)
                return;
            attach(e, is_client, now);
            continue;
        }
        in += k;
        n -= k;
    }
}

static void on_timeout(struct end *e, lp_time now)
{
    lp_pipe_on_timeout(e->p, now);
    if (lp_pipe_next_deadline(e->p) <= now)
        abort();
    drain(e, now);
}

static bool end_new(struct end *e, bool is_client, int reattach)
{
    static const uint8_t id[LP_SESSION_ID_LEN] = {7};
    static const uint8_t token[LP_TOKEN_LEN] = {9};

    memset(e, 0, sizeof(*e));
    if (lp_pipe_new(&cfg, is_client, &e->p) != LP_OK)
        return false;
    if ((e->out = malloc(OUT_LOG_CAP)) == NULL)
        return false;
    e->reattach = reattach;
    if (!is_client)
        lp_pipe_set_identity(e->p, id, token);
    write_frames(e);
    attach(e, is_client, 1);
    return true;
}

static void end_free(struct end *e)
{
    check_output(e, true);
    lp_pipe_free(e->p);
    free(e->out);
}

/* Where the server's share of the input starts: after a leading WELCOME, if any. */
static size_t server_start(const uint8_t *in, size_t n)
{
    struct lp_frame f;
    size_t used = 0;
    const char *why = NULL;

    if (lp_frame_decode(in, n, &f, &used, &why) == LP_OK && f.type == LP_FT_WELCOME)
        return used;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct end client, server;

    if (size < 3)
        return 0;
    uint32_t rng = (uint32_t)data[0] | (uint32_t)data[1] << 8;
    uint8_t knobs = data[2];
    data += 3;
    size -= 3;
    int reattach = (knobs & 0x80) ? 3 : 0;
    if (!end_new(&client, true, reattach) || !end_new(&server, false, reattach))
        abort();

    size_t soff = server_start(data, size);
    size_t coff = 0;
    lp_time now = 1;
    for (int step = 0; step < 100000 && (coff < size || soff < size); step++) {
        rng = rng * 1103515245u + 12345u;
        size_t chunk = 1 + (rng >> 16) % (1u + (knobs & 0x3f) * 16u);
        now += (rng >> 8) & 7;
        size_t nc = size - coff < chunk ? size - coff : chunk;
        size_t ns = size - soff < chunk ? size - soff : chunk;
        feed(&client, true, data + coff, nc, now);
        feed(&server, false, data + soff, ns, now);
        coff += nc;
        soff += ns;
        if (((rng >> 4) & 3) == 0) {
            on_timeout(&client, now);
            on_timeout(&server, now);
        }
    }
    /* Let every timer run out: ACKs, PINGs, then the dead-link verdict. */
    for (int i = 0; i < 8; i++) {
        now += cfg.heartbeat;
        on_timeout(&client, now);
        on_timeout(&server, now);
    }
    end_free(&client);
    end_free(&server);
    return 0;
}
