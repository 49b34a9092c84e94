/* test_replay.c — the replay store (replay.h): committing whole frames, trimming on ACK,
 * the spare chunk, frame boundaries for ACKs and resume points, reading held bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/frame.h"
#include "limpet/replay.h"

/* Appends one DATA frame with a payload of `len` bytes of `fill`; returns its start. */
static uint64_t put_frame(struct lp_replay *r, size_t len, uint8_t fill)
{
    uint64_t start = r->tx_seq;

    assert_true(lp_replay_ensure_tail(r, LP_FRAME_HEADER + len));
    uint8_t *at = lp_replay_tail(r);
    assert_non_null(at);
    lp_frame_put_header(at, LP_FT_DATA, 0, (uint16_t)len, 1);
    memset(at + LP_FRAME_HEADER, fill, len);
    lp_replay_commit(r, LP_FRAME_HEADER + len);
    return start;
}

/* Fills the (nearly empty) tail chunk exactly, so the next frame opens a new chunk.
 * Returns the sequence where that next chunk will start. */
static uint64_t fill_tail_chunk(struct lp_replay *r)
{
    const size_t frame = LP_FRAME_HEADER + LP_FRAME_MAX_PAYLOAD;

    for (size_t i = 0; i < LP_REPLAY_CHUNK / frame; i++)
        put_frame(r, LP_FRAME_MAX_PAYLOAD, (uint8_t)i);
    size_t rest = lp_replay_tail_free(r);
    if (rest >= LP_FRAME_HEADER)
        put_frame(r, rest - LP_FRAME_HEADER, 0xEE);
    assert_int_equal(lp_replay_tail_free(r), 0);
    return r->tx_seq;
}

static void test_replay_starts_empty_and_holds_no_memory(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    assert_int_equal(lp_replay_chunks(&r), 0);
    assert_int_equal(lp_replay_tail_free(&r), 0);
    assert_null(lp_replay_tail(&r));
    assert_true(lp_replay_is_boundary(&r, 0));
    assert_false(lp_replay_is_boundary(&r, 1));
    lp_replay_clear(&r);
}

static void test_replay_commit_advances_tx_seq_by_whole_frames(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    put_frame(&r, 10, 'a');
    put_frame(&r, 0, 0);
    assert_true(r.tx_seq == 2 * LP_FRAME_HEADER + 10);
    assert_true(r.acked == 0);
    assert_int_equal(lp_replay_chunks(&r), 1);
    assert_int_equal(lp_replay_tail_free(&r), LP_REPLAY_CHUNK - (2 * LP_FRAME_HEADER + 10));
    lp_replay_clear(&r);
}

static void test_replay_finds_frame_boundaries_and_refuses_mid_frame_points(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    uint64_t a = put_frame(&r, 5, 'a');
    uint64_t b = put_frame(&r, 300, 'b');
    uint64_t c = put_frame(&r, 1, 'c');
    uint64_t end = r.tx_seq;

    assert_true(lp_replay_is_boundary(&r, a));
    assert_true(lp_replay_is_boundary(&r, b));
    assert_true(lp_replay_is_boundary(&r, c));
    assert_true(lp_replay_is_boundary(&r, end));
    for (uint64_t s = a + 1; s < b; s++)
        assert_false(lp_replay_is_boundary(&r, s));
    for (uint64_t s = b + 1; s < c; s++)
        assert_false(lp_replay_is_boundary(&r, s));
    assert_false(lp_replay_is_boundary(&r, end + 1)); /* beyond what was ever sent */
    assert_true(lp_replay_ack_on_boundary(&r, b));
    assert_false(lp_replay_ack_on_boundary(&r, b + 1));
    assert_false(lp_replay_ack_on_boundary(&r, c - 1));
    assert_true(lp_replay_ack_on_boundary(&r, end));
    lp_replay_clear(&r);
}

static void test_replay_refuses_resume_points_below_acked(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    uint64_t a = put_frame(&r, 5, 'a');
    uint64_t b = put_frame(&r, 5, 'b');
    assert_true(lp_replay_ack(&r, b));
    /* The bytes of frame a are still in memory (same chunk) but no longer ours to replay. */
    assert_false(lp_replay_is_boundary(&r, a));
    assert_true(lp_replay_is_boundary(&r, b));
    lp_replay_clear(&r);
}

static void test_replay_ack_never_moves_backwards(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    put_frame(&r, 5, 'a');
    uint64_t b = put_frame(&r, 5, 'b');
    assert_true(lp_replay_ack(&r, b));
    assert_false(lp_replay_ack(&r, b));
    assert_false(lp_replay_ack(&r, 0));
    assert_true(r.acked == b);
    lp_replay_clear(&r);
}

static void test_replay_trimming_frees_chunks_wholly_acknowledged(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    uint64_t second = fill_tail_chunk(&r);
    uint64_t mid = put_frame(&r, 100, 'x');
    put_frame(&r, 100, 'y');
    assert_int_equal(lp_replay_chunks(&r), 2);

    assert_true(lp_replay_ack(&r, LP_FRAME_HEADER + LP_FRAME_MAX_PAYLOAD));
    assert_int_equal(lp_replay_chunks(&r), 2); /* the first chunk is only partly acked */
    assert_true(lp_replay_ack(&r, mid + LP_FRAME_HEADER + 100));
    assert_int_equal(lp_replay_chunks(&r), 1);
    assert_true(mid == second);
    lp_replay_clear(&r);
}

static void test_replay_keeps_the_tail_even_when_all_is_acknowledged(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    put_frame(&r, 64, 'a');
    assert_true(lp_replay_ack(&r, r.tx_seq));
    assert_int_equal(lp_replay_chunks(&r), 1);
    assert_int_equal(lp_replay_tail_free(&r), LP_REPLAY_CHUNK - (LP_FRAME_HEADER + 64));
    lp_replay_clear(&r);
}

static void test_replay_reuses_a_freed_chunk_as_the_next_tail(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    fill_tail_chunk(&r);
    assert_true(lp_replay_ack(&r, r.tx_seq)); /* whole first chunk acked, but it is the tail */
    assert_int_equal(lp_replay_chunks(&r), 1);
    assert_null(r.spare);
    put_frame(&r, 10, 'n'); /* opens a second chunk: the first is trimmed into the spare */
    assert_int_equal(lp_replay_chunks(&r), 1);
    assert_non_null(r.spare);
    fill_tail_chunk(&r);
    put_frame(&r, 10, 'm'); /* takes the spare rather than a new allocation */
    assert_null(r.spare);
    lp_replay_clear(&r);
}

static void test_replay_gives_an_oversized_frame_its_own_chunk(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    put_frame(&r, 10, 'a');
    assert_true(lp_replay_ensure_tail(&r, LP_REPLAY_CHUNK + 1));
    assert_true(lp_replay_tail_free(&r) >= LP_REPLAY_CHUNK + 1);
    assert_int_equal(lp_replay_chunks(&r), 2);
    lp_replay_clear(&r);
}

static void test_replay_peek_reads_held_bytes_up_to_the_chunk_end(void **state)
{
    (void)state;
    struct lp_replay r;
    const uint8_t *data;

    lp_replay_init(&r);
    uint64_t second = fill_tail_chunk(&r);
    uint64_t f = put_frame(&r, 7, 'z');

    size_t n = lp_replay_peek(&r, 3, &data);
    assert_int_equal(n, second - 3); /* stops at the end of the first chunk */
    n = lp_replay_peek(&r, f, &data);
    assert_int_equal(n, LP_FRAME_HEADER + 7);
    assert_int_equal(data[LP_FRAME_HEADER], 'z');
    assert_int_equal(lp_replay_frame_size(&r, f), LP_FRAME_HEADER + 7);
    assert_int_equal(lp_replay_peek(&r, r.tx_seq, &data), 0); /* nothing at the end */
    assert_null(data);
    assert_int_equal(lp_replay_frame_size(&r, r.tx_seq), 0);
    lp_replay_clear(&r);
}

static void test_replay_boundaries_hold_across_chunks(void **state)
{
    (void)state;
    struct lp_replay r;

    lp_replay_init(&r);
    uint64_t second = fill_tail_chunk(&r);
    put_frame(&r, 3, 'q');
    assert_true(lp_replay_is_boundary(&r, second));
    assert_false(lp_replay_is_boundary(&r, second + 1));
    assert_true(lp_replay_ack_on_boundary(&r, second));
    assert_true(lp_replay_ack_on_boundary(&r, r.tx_seq));
    assert_false(lp_replay_ack_on_boundary(&r, second + 2));
    lp_replay_clear(&r);
}

/* A store restored from a state starts where the saved one was acknowledged up to. */
static void test_replay_restarted_at_a_sequence_holds_frames_from_there(void **state)
{
    (void)state;
    struct lp_replay r;
    const uint8_t *data;

    lp_replay_init_at(&r, 1000000);
    assert_int_equal(r.acked, 1000000);
    assert_int_equal(r.tx_seq, 1000000);
    assert_true(lp_replay_is_boundary(&r, 1000000));
    assert_false(lp_replay_is_boundary(&r, 0));
    uint64_t f = put_frame(&r, 5, 'k');
    assert_int_equal(f, 1000000);
    assert_int_equal(lp_replay_read(&r, f, &data), LP_FRAME_HEADER + 5);
    assert_int_equal(data[LP_FRAME_HEADER], 'k');
    assert_true(lp_replay_ack(&r, r.tx_seq));
    lp_replay_clear(&r);
}

/* lp_replay_read: lp_replay_peek's bytes on a store it may not change. */
static void test_replay_read_matches_peek_across_chunks(void **state)
{
    (void)state;
    struct lp_replay r;
    const uint8_t *a, *b;

    lp_replay_init(&r);
    uint64_t second = fill_tail_chunk(&r);
    put_frame(&r, 9, 'w');
    for (uint64_t seq = 0; seq <= r.tx_seq; seq += 4099) {
        size_t n = lp_replay_read(&r, seq, &a);
        assert_int_equal(n, lp_replay_peek(&r, seq, &b));
        assert_ptr_equal(a, b);
    }
    assert_int_equal(lp_replay_read(&r, second, &a), LP_FRAME_HEADER + 9);
    assert_int_equal(lp_replay_read(&r, r.tx_seq, &a), 0);
    assert_null(a);
    lp_replay_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_starts_empty_and_holds_no_memory),
        cmocka_unit_test(test_replay_commit_advances_tx_seq_by_whole_frames),
        cmocka_unit_test(test_replay_finds_frame_boundaries_and_refuses_mid_frame_points),
        cmocka_unit_test(test_replay_refuses_resume_points_below_acked),
        cmocka_unit_test(test_replay_ack_never_moves_backwards),
        cmocka_unit_test(test_replay_trimming_frees_chunks_wholly_acknowledged),
        cmocka_unit_test(test_replay_keeps_the_tail_even_when_all_is_acknowledged),
        cmocka_unit_test(test_replay_reuses_a_freed_chunk_as_the_next_tail),
        cmocka_unit_test(test_replay_gives_an_oversized_frame_its_own_chunk),
        cmocka_unit_test(test_replay_peek_reads_held_bytes_up_to_the_chunk_end),
        cmocka_unit_test(test_replay_boundaries_hold_across_chunks),
        cmocka_unit_test(test_replay_restarted_at_a_sequence_holds_frames_from_there),
        cmocka_unit_test(test_replay_read_matches_peek_across_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
