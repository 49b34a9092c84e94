/* state_seeds.c — writes real saved states: the seed corpus of fuzz_state and the sizes the
 * state file takes.
 *
 *   state_seeds DIR      write the seeds into DIR (tests/fuzz/corpus/state)
 *   state_seeds --sizes  print what sessions of a few shapes take in a state file
 *
 * Each seed is what the cores save in a situation the server meets: a session with streams
 * in every state and bytes not yet acknowledged or consumed, a quiet session, the MCP pool
 * with entries starting, live, crashed and stopping, a router with requests in flight and
 * the initialize cached, and all of them in one file. Deterministic output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"
#include "limpet/state.h"

#define NOW 500000u

static const struct lp_pipe_config PIPE_CFG = {
    .replay_buffer = 1u << 20,
    .ack_every = 64u * 1024u,
    .ack_delay = 20,
    .heartbeat = 2000,
    .dead_after = 6000,
};

static const struct lp_mux_config MUX_CFG = {
    .stream_window = 256u * 1024u,
    .receive_buffer = 16u << 20,
    .max_streams = 1024,
};

static void die(const char *what)
{
    fprintf(stderr, "state_seeds: %s\n", what);
    exit(1);
}

static void check(lp_err rc, const char *what)
{
    if (rc != LP_OK)
        die(what);
}

/* ---- a server session -------------------------------------------------------------------- */

static void feed(lp_mux *m, const uint8_t *buf, size_t n)
{
    struct lp_frame f;
    size_t used;
    const char *why = NULL;

    check(lp_frame_decode(buf, n, &f, &used, &why), "decode");
    check(lp_mux_recv(m, &f, &why), "mux_recv");
}

static void peer_open(lp_mux *m, uint32_t id, uint8_t kind, const char *target, const char *arg)
{
    uint8_t buf[LP_FRAME_MAX];
    struct lp_open o = {.kind = kind,
                        .window = 256u * 1024u,
                        .target = (const uint8_t *)target,
                        .target_len = strlen(target),
                        .arg = (const uint8_t *)arg,
                        .arg_len = strlen(arg)};

    feed(m, buf, lp_open_encode(buf, sizeof(buf), id, &o));
}

static void peer_data(lp_mux *m, uint32_t id, size_t n, uint8_t fill)
{
    uint8_t buf[LP_FRAME_MAX], payload[LP_FRAME_MAX_PAYLOAD];

    memset(payload, fill, sizeof(payload));
    while (n > 0) {
        size_t k = n < sizeof(payload) ? n : sizeof(payload);
        feed(m, buf, lp_data_encode(buf, sizeof(buf), id, payload, k));
        n -= k;
    }
}

/* Everything the pipe has to say goes out; then the peer acknowledges up to `acked`. */
static void send_all_and_ack(lp_pipe *p, uint64_t acked)
{
    const uint8_t *out;
    uint8_t ack[32];
    struct lp_frame f;
    size_t n;

    while ((n = lp_pipe_pending_output(p, &out)) > 0)
        lp_pipe_output_sent(p, n, NOW);
    n = lp_u64_encode(ack, sizeof(ack), LP_FT_ACK, acked);
    if (lp_pipe_recv(p, ack, n, NOW) != n)
        die("ack");
    while (lp_pipe_next_frame(p, &f, NOW))
        ;
}

/* A server session with `streams` streams the client opened, each holding `inq` bytes its
 * local socket has not taken, and `unacked` 4 KiB writes of ours the client has not
 * acknowledged; `busy` adds a half-close, an undrained OPEN and a BIND. */
static void session(int streams, size_t inq, int unacked, bool busy, lp_pipe **pp, lp_mux **mp)
{
    static const uint8_t sid[LP_SESSION_ID_LEN] = {0x5e, 0x55, 0x10, 0x4};
    static const uint8_t token[LP_TOKEN_LEN] = {0x70, 0x6b, 0x3e, 0x4e};
    struct lp_hello h = {.magic = LP_PROTO_MAGIC, .version = LP_PROTO_VERSION};
    struct lp_mux_event ev;
    const char *why;
    uint64_t gen;
    lp_pipe *p;
    lp_mux *m;
    uint8_t buf[4096];
    size_t taken;
    char target[64];

    check(lp_pipe_new(&PIPE_CFG, false, &p), "pipe");
    lp_pipe_set_identity(p, sid, token);
    check(lp_pipe_accept(p, &h, NOW - 60000, &gen, &why), "accept");
    check(lp_mux_new(&MUX_CFG, p, false, &m), "mux");
    for (int i = 0; i < streams; i++) {
        snprintf(target, sizeof(target), "db-%d.internal:5432", i);
        peer_open(m, (uint32_t)(2 * i + 1), LP_KIND_TCP, target, "");
    }
    while (lp_mux_next_event(m, &ev))
        if (ev.type == LP_MUX_EV_OPEN)
            check(lp_mux_accept(m, ev.id), "accept stream");
    memset(buf, 'r', sizeof(buf));
    for (int i = 0; i < streams; i++) {
        uint32_t id = (uint32_t)(2 * i + 1);
        peer_data(m, id, inq, (uint8_t)('a' + i));
        if (lp_mux_send(m, id, buf, sizeof(buf), &taken) != LP_OK)
            die("send");
    }
    send_all_and_ack(p, lp_pipe_tx_seq(p)); /* all acknowledged so far */
    for (int k = 0; k < unacked; k++)
        if (lp_mux_send(m, (uint32_t)(2 * (k % streams) + 1), buf, sizeof(buf), &taken) != LP_OK)
            die("send unacked");
    if (busy) {
        if (streams > 2)
            check(lp_mux_shutdown(m, 3), "shutdown"); /* half-closed */
        peer_open(m, (uint32_t)(2 * streams + 1), LP_KIND_MCP, "browser", "work");
        check(lp_mux_bind(m, 7, "127.0.0.1:8022", 14), "bind");
    }
    *pp = p;
    *mp = m;
}

/* ---- MCP ---------------------------------------------------------------------------------- */

static lp_mcppool *pool(void)
{
    static const struct lp_mcppool_limits lim = {
        .max_sessions = 256,
        .idle_timeout = 600000,
        .quick_exit = 5000,
        .backoff_min = 1000,
        .backoff_max = 60000,
    };
    lp_mcppool *p = lp_mcppool_new(&lim);
    struct lp_mcppool_action a;

    if (p == NULL)
        die("pool");
    check(lp_mcppool_open(p, "alice", "browser", "alice:work", false, 1, NOW - 9000), "open");
    check(lp_mcppool_open(p, "alice", "browser", "alice:work", false, 2, NOW - 8000), "open");
    check(lp_mcppool_open(p, "alice", "memory", "~17", true, 3, NOW - 7000), "open");
    check(lp_mcppool_open(p, "bob", "db", "bob:x", false, 4, NOW - 6000), "open");
    lp_mcppool_started(p, 1, true, NULL, NOW - 5000);
    lp_mcppool_started(p, 3, true, NULL, NOW - 5000);
    lp_mcppool_exited(p, 3, "exited with status 1: boom", NOW - 4000);
    lp_mcppool_exited(p, 3, "exited with status 1", NOW - 3000);
    lp_mcppool_detach(p, 2, NOW - 2000);
    check(lp_mcppool_open(p, "carol", "fs", "carol:y", false, 5, NOW - 1000), "open");
    (void)lp_mcppool_close_scope(p, "bob:x", "identity removed", NOW - 500);
    for (int i = 0; i < 3; i++)
        (void)lp_mcppool_next(p, &a); /* the glue drained some */
    return p;
}

static void from_att(lp_mcproute *r, uint64_t att, const char *line)
{
    check(lp_mcproute_from_att(r, att, (const uint8_t *)line, strlen(line)), "from_att");
}

static void from_child(lp_mcproute *r, const char *line)
{
    check(lp_mcproute_from_child(r, (const uint8_t *)line, strlen(line)), "from_child");
}

static lp_mcproute *route(void)
{
    lp_mcproute *r = lp_mcproute_new(1024, SIZE_MAX);
    uint64_t dest;
    char *line;
    size_t len;

    if (r == NULL)
        die("route");
    check(lp_mcproute_attach(r, 1), "attach");
    check(lp_mcproute_attach(r, 2), "attach");
    from_att(r, 1,
             "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{"
             "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":"
             "\"host\",\"version\":\"1.0\"}}}");
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\","
                  "\"capabilities\":{\"tools\":{}},\"serverInfo\":{\"name\":\"s\",\"version\":"
                  "\"2\"}}}");
    from_att(r, 1, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    from_att(r, 1,
             "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{"
             "\"name\":\"navigate\",\"_meta\":{\"progressToken\":\"p\"}}}");
    from_att(r, 2,
             "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{"
             "\"name\":\"click\",\"_meta\":{\"progressToken\":\"p\"}}}");
    from_child(r, "{\"jsonrpc\":\"2.0\",\"id\":\"q1\",\"method\":\"roots/list\"}");
    while (lp_mcproute_next(r, &dest, &line, &len) && dest != 2)
        free(line); /* the glue wrote some; the rest wait */
    return r;
}

/* ---- files ---------------------------------------------------------------------------------- */

static void put(const char *dir, const char *name, struct lp_state_wr *w)
{
    const uint8_t *file;
    size_t len;
    char path[4096];
    FILE *f;

    check(lp_state_finish(w, &file, &len), name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(file, 1, len, f) != len || fclose(f) != 0)
        die(path);
    printf("%-22s %8zu bytes\n", name, len);
    lp_state_wr_clear(w);
}

static void begin(struct lp_state_wr *w)
{
    lp_state_wr_init(w, 64u << 20);
    lp_state_begin(w);
}

static void sizes(void)
{
    static const struct {
        const char *what;
        int streams;
        size_t inq;
        int unacked;
    } shapes[] = {
        {"idle ssh session", 1, 0, 0},
        {"4 idle -L streams", 4, 0, 0},
        {"4 streams, 64 KiB each way in flight", 4, 16384, 16},
        {"100 idle streams", 100, 0, 0},
        {"4 bulk streams at full windows", 4, 256u * 1024u, 256},
    };
    struct lp_state_wr w;
    const uint8_t *file;
    size_t len;
    lp_pipe *p;
    lp_mux *m;

    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        session(shapes[i].streams, shapes[i].inq, shapes[i].unacked, false, &p, &m);
        lp_state_wr_init(&w, 64u << 20);
        check(lp_pipe_save(p, &w, NOW), "save");
        check(lp_mux_save(m, &w), "save");
        check(lp_state_finish(&w, &file, &len), "finish");
        printf("%-40s %9zu bytes (replay %zu, unconsumed %zu)\n", shapes[i].what, len,
               lp_pipe_buffered(p), (size_t)shapes[i].streams * shapes[i].inq);
        lp_state_wr_clear(&w);
        lp_mux_free(m);
        lp_pipe_free(p);
    }
}

int main(int argc, char **argv)
{
    struct lp_state_wr w;
    lp_pipe *p;
    lp_mux *m;
    lp_mcppool *pl;
    lp_mcproute *r;

    if (argc != 2)
        die("usage: state_seeds DIR | --sizes");
    if (strcmp(argv[1], "--sizes") == 0) {
        sizes();
        return 0;
    }
    pl = pool();
    r = route();
    session(4, 0, 0, false, &p, &m); /* quiet: everything acknowledged and consumed */
    begin(&w);
    check(lp_pipe_save(p, &w, NOW), "save");
    check(lp_mux_save(m, &w), "save");
    put(argv[1], "session_quiet", &w);
    lp_mux_free(m);
    lp_pipe_free(p);

    session(4, 700, 2, true, &p, &m); /* small enough for a fuzzer to work on */
    begin(&w);
    check(lp_pipe_save(p, &w, NOW), "save");
    check(lp_mux_save(m, &w), "save");
    put(argv[1], "session_busy", &w);
    begin(&w);
    check(lp_mux_save(m, &w), "save");
    put(argv[1], "mux_alone", &w);
    begin(&w);
    check(lp_pipe_save(p, &w, NOW), "save");
    put(argv[1], "pipe_alone", &w);
    lp_mux_free(m);
    lp_pipe_free(p);

    session(2, 100, 1, true, &p, &m);
    begin(&w);
    check(lp_mcppool_save(pl, &w, NOW), "save");
    put(argv[1], "mcp_pool", &w);
    begin(&w);
    check(lp_mcproute_save(r, &w), "save");
    put(argv[1], "mcp_route", &w);
    begin(&w);
    check(lp_pipe_save(p, &w, NOW), "save");
    check(lp_mux_save(m, &w), "save");
    check(lp_mcppool_save(pl, &w, NOW), "save");
    check(lp_mcproute_save(r, &w), "save");
    put(argv[1], "everything", &w);
    begin(&w);
    put(argv[1], "empty", &w);
    lp_mux_free(m);
    lp_pipe_free(p);
    lp_mcppool_free(pl);
    lp_mcproute_free(r);
    return 0;
}
