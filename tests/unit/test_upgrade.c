/* test_upgrade.c — the reading pass of the server's state file (upgrade_state.c): a state
 * built here section by section, as docs/PROTOCOL.md 7.7 lays it out, is accepted; one that
 * names a descriptor it was not handed, names one twice, disagrees with the environment's
 * listeners, names a process that is not our child, gives a stream two local ends or carries a
 * section no one knows is refused whole, with a reason; and no byte flipped anywhere crashes
 * the reader. Nothing is built: the checking pass needs no loop, no sockets, no server. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/io/upgrade_internal.h"
#include "limpet/config_load.h"
#include "limpet/ctl.h"
#include "limpet/mcppool.h"
#include "limpet/mcproute.h"
#include "limpet/mux.h"
#include "limpet/pipe.h"
#include "limpet/session.h"
#include "limpet/stream.h"

#define NONE 0xFFFFFFFFu
#define LISTEN_FD 50
#define STREAM_FD 51
#define RL_FD 52
#define CHILD_FD 53 /* and 54, 55 */

/* What a state names, varied by each test. */
struct spec {
    uint32_t listen_in_file; /* the tunnel listener the process section names */
    uint32_t stream_fd, rl_fd;
    pid_t pid;           /* the MCP process: a child of ours unless a test says otherwise */
    uint32_t att_stream; /* the attachment's stream: 4, or 2 (the pump's) to give it two ends */
    bool trailing;       /* a section no one knows after the MCP glue */
};

struct fixture {
    struct lp_config cfg;
    pid_t child;
    uint8_t *file;
    size_t len;
};

static void put_str(struct lp_state_wr *w, const char *s)
{
    lp_state_put_text(w, s, strlen(s));
}

static void put_process(struct lp_state_wr *w, const struct spec *sp)
{
    lp_state_section_begin(w, LP_UPGRADE_PROCESS);
    put_str(w, "0.1.0-test");
    lp_state_put_u64(w, 60000); /* started a minute ago */
    lp_state_put_u64(w, 5);     /* SIGUSR2 5 ms ago */
    lp_state_put_u32(w, sp->listen_in_file);
    lp_state_put_u32(w, NONE);
    lp_state_put_u32(w, NONE);
    lp_state_put_u16(w, 11);
    for (int i = 0; i < 11; i++)
        lp_state_put_u64(w, (uint64_t)i);
    lp_state_put_u64(w, LP_TIME_NEVER);
    lp_state_put_u16(w, LP_HS_REASONS);
    for (int i = 0; i < LP_HS_REASONS; i++)
        lp_state_put_u64(w, 0);
    lp_state_put_u16(w, LP_HIST_BOUNDS + 1);
    for (int i = 0; i <= LP_HIST_BOUNDS; i++)
        lp_state_put_u64(w, 0);
    lp_state_put_u64(w, 0);
    lp_state_put_u64(w, 0);
    lp_state_section_end(w);
}

/* One server session whose mux holds streams 2 (a -R connection's pump) and 4 (an MCP end). */
static void put_session(struct lp_state_wr *w, const struct fixture *f, const struct spec *sp,
                        uint8_t sid[LP_SESSION_ID_LEN])
{
    struct lp_pipe_config pc;
    struct lp_mux_config mc;
    uint8_t token[LP_TOKEN_LEN];
    lp_pipe *pipe;
    lp_mux *mux;
    uint32_t id;

    lp_session_core_config(&f->cfg, &pc, &mc);
    memset(sid, 0x5a, LP_SESSION_ID_LEN);
    memset(token, 0xa5, sizeof(token));
    assert_int_equal(lp_pipe_new(&pc, false, &pipe), LP_OK);
    lp_pipe_set_identity(pipe, sid, token);
    assert_int_equal(lp_mux_new(&mc, pipe, false, &mux), LP_OK);
    assert_int_equal(lp_mux_open(mux, LP_KIND_REVERSE, "127.0.0.1:8022", 14, "1", 1, &id), LP_OK);
    assert_int_equal(id, 2);
    assert_int_equal(lp_mux_open(mux, LP_KIND_MCP, "legacy", 6, "upg", 3, &id), LP_OK);
    assert_int_equal(id, 4);

    lp_state_section_begin(w, LP_UPGRADE_SESSION);
    put_str(w, "laptop");
    put_str(w, "127.0.0.1:5000");
    for (int i = 0; i < 6; i++) /* created, down, ttl left, reconnects, bytes in, out */
        lp_state_put_u64(w, 1000);
    assert_int_equal(lp_pipe_save(pipe, w, 100), LP_OK);
    assert_int_equal(lp_mux_save(mux, w), LP_OK);
    lp_state_put_u32(w, 1);
    lp_state_section_begin(w, LP_UPGRADE_STREAM);
    lp_state_put_u32(w, 2);
    lp_state_put_u8(w, LP_STREAM_OPENING);
    lp_state_put_u8(w, 0);
    lp_state_put_u8(w, LP_KIND_REVERSE);
    lp_state_put_u32(w, sp->stream_fd);
    lp_state_put_u64(w, 10);
    lp_state_put_u64(w, 0);
    lp_state_put_u64(w, 25000);
    put_str(w, "");
    put_str(w, "127.0.0.1:8022");
    lp_state_section_end(w);
    lp_state_put_u32(w, 1);
    lp_state_section_begin(w, LP_UPGRADE_RLISTENER);
    lp_state_put_u32(w, 1);
    lp_state_put_u32(w, sp->rl_fd);
    lp_state_put_u16(w, 8022);
    put_str(w, "127.0.0.1:8022");
    put_str(w, "127.0.0.1:8022");
    lp_state_section_end(w);
    lp_state_section_end(w);
    lp_mux_free(mux);
    lp_pipe_free(pipe);
}

/* A second session, quiet: no stream, no listener. */
static void put_empty_session(struct lp_state_wr *w, const struct fixture *f)
{
    struct lp_pipe_config pc;
    struct lp_mux_config mc;
    uint8_t sid[LP_SESSION_ID_LEN], token[LP_TOKEN_LEN];
    lp_pipe *pipe;
    lp_mux *mux;

    lp_session_core_config(&f->cfg, &pc, &mc);
    memset(sid, 0x11, sizeof(sid));
    memset(token, 0x22, sizeof(token));
    assert_int_equal(lp_pipe_new(&pc, false, &pipe), LP_OK);
    lp_pipe_set_identity(pipe, sid, token);
    assert_int_equal(lp_mux_new(&mc, pipe, false, &mux), LP_OK);
    lp_state_section_begin(w, LP_UPGRADE_SESSION);
    put_str(w, "");
    put_str(w, "[::1]:6000");
    for (int i = 0; i < 6; i++)
        lp_state_put_u64(w, 0);
    assert_int_equal(lp_pipe_save(pipe, w, 100), LP_OK);
    assert_int_equal(lp_mux_save(mux, w), LP_OK);
    lp_state_put_u32(w, 0);
    lp_state_put_u32(w, 0);
    lp_state_section_end(w);
    lp_mux_free(mux);
    lp_pipe_free(pipe);
}

static void put_child(struct lp_state_wr *w, pid_t pid)
{
    lp_state_section_begin(w, LP_UPGRADE_MCP_CHILD);
    lp_state_put_u32(w, (uint32_t)pid);
    for (int i = 0; i < 3; i++)
        lp_state_put_u32(w, CHILD_FD + (uint32_t)i);
    lp_state_put_u8(w, 0);
    lp_state_put_u8(w, 0);
    lp_state_put_u64(w, 2000);
    lp_state_put_u64(w, LP_TIME_NEVER);
    lp_state_put_blob(w, "{\"jsonrpc\":\"2.0\"}\n", 18);
    lp_state_put_blob(w, "{\"par", 5);
    lp_state_put_blob(w, "legacy: started\n", 16);
    lp_state_section_end(w);
}

/* The pool with one live entry (its process running) and attachment 5 on it. */
static void put_mcp(struct lp_state_wr *w, const struct fixture *f, const struct spec *sp,
                    const uint8_t sid[LP_SESSION_ID_LEN])
{
    struct lp_mcppool_limits lim = {.max_sessions = 4,
                                    .sessions_per_owner = 4,
                                    .idle_timeout = 60000,
                                    .quick_exit = 5000,
                                    .backoff_min = 1000,
                                    .backoff_max = 60000};
    struct lp_mcppool_action act;
    lp_mcppool *pool = lp_mcppool_new(&lim);
    lp_mcproute *route = lp_mcproute_new(1024, SIZE_MAX);
    uint64_t entry = 0;

    (void)f;
    assert_non_null(pool);
    assert_non_null(route);
    assert_int_equal(lp_mcppool_open(pool, "laptop", "legacy", "laptop/upg", false, 5, 100), LP_OK);
    while (lp_mcppool_next(pool, &act))
        entry = act.entry;
    lp_mcppool_started(pool, entry, true, NULL, 100);
    while (lp_mcppool_next(pool, &act))
        ;
    assert_int_equal(lp_mcppool_entry_of(pool, 5), entry);
    assert_int_equal(lp_mcproute_attach(route, 5), LP_OK);

    lp_state_section_begin(w, LP_UPGRADE_MCP);
    lp_state_put_u64(w, 5);
    assert_int_equal(lp_mcppool_save(pool, w, 100), LP_OK);
    lp_state_put_u32(w, 1);
    lp_state_section_begin(w, LP_UPGRADE_MCP_ENTRY);
    lp_state_put_u64(w, entry);
    put_str(w, "legacy");
    put_str(w, "upg");
    lp_state_put_u8(w, 1);
    put_child(w, sp->pid);
    assert_int_equal(lp_mcproute_save(route, w), LP_OK);
    lp_state_section_end(w);
    lp_state_put_u32(w, 1);
    lp_state_section_begin(w, LP_UPGRADE_MCP_ATT);
    lp_state_put_u64(w, 5);
    lp_state_put_u64(w, entry);
    lp_state_put_bytes(w, sid, LP_SESSION_ID_LEN);
    lp_state_put_u32(w, sp->att_stream);
    lp_state_put_u8(w, 0);
    lp_state_put_u16(w, 0);
    put_str(w, "");
    lp_state_put_blob(w, "{\"id\":", 6);
    lp_state_put_blob(w, "", 0);
    lp_state_section_end(w);
    lp_state_section_end(w);
    lp_mcproute_free(route);
    lp_mcppool_free(pool);
}

static void build(struct fixture *f, const struct spec *sp)
{
    struct lp_state_wr w;
    uint8_t sid[LP_SESSION_ID_LEN];
    const uint8_t *out;

    lp_state_wr_init(&w, 1u << 20);
    lp_state_begin(&w);
    put_process(&w, sp);
    put_session(&w, f, sp, sid);
    put_empty_session(&w, f);
    put_mcp(&w, f, sp, sid);
    if (sp->trailing) {
        lp_state_section_begin(&w, 0x0108);
        lp_state_put_u32(&w, 0);
        lp_state_section_end(&w);
    }
    assert_int_equal(lp_state_finish(&w, &out, &f->len), LP_OK);
    free(f->file);
    assert_non_null(f->file = malloc(f->len));
    memcpy(f->file, out, f->len);
    lp_state_wr_clear(&w);
}

static struct spec good(const struct fixture *f)
{
    return (struct spec){.listen_in_file = LISTEN_FD,
                         .stream_fd = STREAM_FD,
                         .rl_fd = RL_FD,
                         .pid = f->child,
                         .att_stream = 4};
}

/* The checking pass over f->file, with the descriptors a new binary would have been handed. */
static lp_err check(const struct fixture *f, const uint8_t *file, size_t len,
                    struct lp_upgrade_summary *sum, char *why, size_t whylen)
{
    struct lp_upgrade_parts parts = {.cfg = &f->cfg};
    const int listeners[3] = {LISTEN_FD, -1, -1};
    struct lp_fdset fds = {0};
    lp_err rc;

    lp_fdset_add(&fds, LISTEN_FD, LP_FD_LISTENER);
    for (int fd = STREAM_FD; fd <= CHILD_FD + 2; fd++)
        lp_fdset_add(&fds, fd, 0);
    rc = lp_upgrade_read(file, len, &parts, listeners, &fds, false, sum, why, whylen);
    lp_fdset_free(&fds);
    return rc;
}

static int setup(void **state)
{
    char err[LP_CONFIG_ERR_MAX];
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    lp_config_defaults(&f->cfg);
    assert_int_equal(lp_config_finish(&f->cfg, err, sizeof(err)), LP_OK);
    f->child = fork(); /* an MCP server process stand-in: a child of ours that waits */
    assert_true(f->child >= 0);
    if (f->child == 0) {
        /* gone with the test, however it ends (a sanitizer's abort skips the teardown) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(0);
        pause();
        _exit(0);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    kill(f->child, SIGKILL);
    waitpid(f->child, NULL, 0);
    free(f->file);
    lp_config_clear(&f->cfg);
    free(f);
    return 0;
}

/* Refused, with a reason naming what is wrong. */
static void assert_refused(struct fixture *f, const struct spec *sp, const char *reason)
{
    struct lp_upgrade_summary sum;
    char why[LP_STATE_WHY_MAX];

    build(f, sp);
    assert_int_not_equal(check(f, f->file, f->len, &sum, why, sizeof(why)), LP_OK);
    if (strstr(why, reason) == NULL)
        fail_msg("refused for \"%s\", not \"%s\"", why, reason);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_upgrade_reads_a_whole_state_and_counts_what_it_would_restore(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);
    struct lp_upgrade_summary sum;
    char why[LP_STATE_WHY_MAX];

    build(f, &sp);
    assert_int_equal(check(f, f->file, f->len, &sum, why, sizeof(why)), LP_OK);
    assert_string_equal(why, "");
    assert_string_equal(sum.from, "0.1.0-test");
    assert_int_equal(sum.since_start, 5);
    assert_int_equal(sum.sessions, 2);
    assert_int_equal(sum.streams, 1);
    assert_int_equal(sum.atts, 1);
    assert_int_equal(sum.rlisteners, 1);
    assert_int_equal(sum.children, 1);
}

static void test_upgrade_refuses_a_descriptor_it_was_not_handed(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.stream_fd = 77;
    assert_refused(f, &sp, "descriptor 77 was not handed over");
    sp = good(f);
    sp.rl_fd = 2; /* stderr is never handed over */
    assert_refused(f, &sp, "descriptor 2 was not handed over");
}

static void test_upgrade_refuses_a_descriptor_named_twice_or_a_listener_named_again(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.rl_fd = STREAM_FD;
    assert_refused(f, &sp, "descriptor 51 is named twice");
    sp = good(f);
    sp.stream_fd = LISTEN_FD; /* the tunnel port is no stream's socket */
    assert_refused(f, &sp, "descriptor 50 is named twice");
}

static void test_upgrade_refuses_listeners_the_environment_does_not_name(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.listen_in_file = 49;
    assert_refused(f, &sp, "the environment says 50");
}

static void test_upgrade_refuses_a_process_that_is_not_its_child(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.pid = getppid(); /* whoever runs the test: a process, but not our child */
    char reason[80];
    snprintf(reason, sizeof(reason), "process %ld is not a child of this process", (long)sp.pid);
    assert_refused(f, &sp, reason);
}

static void test_upgrade_refuses_a_stream_with_two_local_ends(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.att_stream = 2; /* the -R connection's pump has it already */
    assert_refused(f, &sp, "stream 2 has two local ends");
    sp.att_stream = 6; /* no such stream in the mux */
    assert_refused(f, &sp, "MCP stream 6: no such stream");
}

static void test_upgrade_refuses_a_section_it_does_not_know(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);

    sp.trailing = true;
    assert_refused(f, &sp, "section 0x0108 (glue) where none was due");
}

/* Any byte of the file flipped: read to a verdict, never a crash (ASan runs this too); most
 * are refused. A header that no longer fits its body is the only refusal a cut file gets. */
static void test_upgrade_survives_every_byte_flipped_and_every_cut(void **state)
{
    struct fixture *f = *state;
    struct spec sp = good(f);
    struct lp_upgrade_summary sum;
    char why[LP_STATE_WHY_MAX];
    size_t refused = 0;

    build(f, &sp);
    uint8_t *copy = malloc(f->len);
    assert_non_null(copy);
    for (size_t i = 0; i < f->len; i++) {
        memcpy(copy, f->file, f->len);
        copy[i] ^= 0xFF;
        if (check(f, copy, f->len, &sum, why, sizeof(why)) != LP_OK) {
            assert_true(why[0] != '\0');
            refused++;
        }
    }
    /* Counters, byte runs and texts take any value; every length, count, tag, flag and
     * descriptor does not. */
    print_message("%zu of %zu flips refused\n", refused, f->len);
    assert_true(refused > f->len / 4);
    for (size_t n = 0; n < f->len; n++)
        assert_int_not_equal(check(f, f->file, n, &sum, why, sizeof(why)), LP_OK);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_upgrade_reads_a_whole_state_and_counts_what_it_would_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refuses_a_descriptor_it_was_not_handed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_upgrade_refuses_a_descriptor_named_twice_or_a_listener_named_again, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_upgrade_refuses_listeners_the_environment_does_not_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refuses_a_process_that_is_not_its_child, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refuses_a_stream_with_two_local_ends, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_refuses_a_section_it_does_not_know, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_survives_every_byte_flipped_and_every_cut,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
