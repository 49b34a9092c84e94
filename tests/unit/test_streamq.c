/* test_streamq.c — a mux stream's inbound chunk queue (streamq.h): order, chunking, partial
 * drops, freeing emptied chunks, peek and peekv, find and copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/streamq.h"

/* Copies everything the queue holds, in order, through peekv; returns the byte count. */
static size_t drain_copy(const struct lp_streamq *q, uint8_t *out, size_t cap)
{
    struct lp_mux_span spans[64];
    size_t n = lp_streamq_peekv(q, spans, 64), total = 0;

    for (size_t i = 0; i < n; i++) {
        assert_true(total + spans[i].len <= cap);
        memcpy(out + total, spans[i].data, spans[i].len);
        total += spans[i].len;
    }
    return total;
}

static void test_streamq_starts_empty(void **state)
{
    (void)state;
    struct lp_streamq q;
    const uint8_t *data = (const uint8_t *)"x";
    struct lp_mux_span span;

    lp_streamq_init(&q);
    assert_int_equal(q.buffered, 0);
    assert_int_equal(lp_streamq_peek(&q, &data), 0);
    assert_null(data);
    assert_int_equal(lp_streamq_peekv(&q, &span, 1), 0);
    lp_streamq_drop(&q, 10); /* nothing to drop: harmless */
    lp_streamq_clear(&q);
}

static void test_streamq_keeps_bytes_in_order_and_drops_from_the_front(void **state)
{
    (void)state;
    struct lp_streamq q;
    const uint8_t *data;

    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, (const uint8_t *)"hello ", 6));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"world", 5));
    assert_int_equal(q.buffered, 11);
    assert_int_equal(lp_streamq_peek(&q, &data), 11); /* both fit one chunk */
    assert_memory_equal(data, "hello world", 11);
    lp_streamq_drop(&q, 4);
    assert_int_equal(q.buffered, 7);
    assert_int_equal(lp_streamq_peek(&q, &data), 7);
    assert_memory_equal(data, "o world", 7);
    lp_streamq_clear(&q);
    assert_int_equal(q.buffered, 0);
    assert_null(q.head);
}

static void test_streamq_starts_a_new_chunk_when_a_payload_does_not_fit(void **state)
{
    (void)state;
    struct lp_streamq q;
    uint8_t *big = malloc(LP_STREAMQ_CHUNK);
    uint8_t *out = malloc(LP_STREAMQ_CHUNK + 16);
    struct lp_mux_span spans[4];

    assert_non_null(big);
    assert_non_null(out);
    for (size_t i = 0; i < LP_STREAMQ_CHUNK; i++)
        big[i] = (uint8_t)(i * 7);
    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, big, LP_STREAMQ_CHUNK - 3));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"abcdef", 6)); /* 3 bytes left: no fit */
    assert_int_equal(lp_streamq_peekv(&q, spans, 4), 2);
    assert_int_equal(spans[0].len, LP_STREAMQ_CHUNK - 3);
    assert_int_equal(spans[1].len, 6);
    assert_int_equal(lp_streamq_peekv(&q, spans, 1), 1); /* max is respected */
    assert_int_equal(drain_copy(&q, out, LP_STREAMQ_CHUNK + 16), LP_STREAMQ_CHUNK + 3);
    assert_memory_equal(out, big, LP_STREAMQ_CHUNK - 3);
    assert_memory_equal(out + LP_STREAMQ_CHUNK - 3, "abcdef", 6);
    lp_streamq_clear(&q);
    free(big);
    free(out);
}

static void test_streamq_frees_a_chunk_once_dropped_past_it(void **state)
{
    (void)state;
    struct lp_streamq q;
    uint8_t *big = calloc(1, LP_STREAMQ_CHUNK);
    const uint8_t *data;

    assert_non_null(big);
    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, big, LP_STREAMQ_CHUNK));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"tail", 4));
    assert_true(q.head != q.tail);
    lp_streamq_drop(&q, LP_STREAMQ_CHUNK + 1); /* across the chunk boundary */
    assert_true(q.head == q.tail);
    assert_int_equal(q.buffered, 3);
    assert_int_equal(lp_streamq_peek(&q, &data), 3);
    assert_memory_equal(data, "ail", 3);
    lp_streamq_drop(&q, 3);
    assert_null(q.head); /* an idle stream holds no memory */
    assert_null(q.tail);
    lp_streamq_clear(&q);
    free(big);
}

static void test_streamq_drop_beyond_buffered_empties_it(void **state)
{
    (void)state;
    struct lp_streamq q;

    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, (const uint8_t *)"abc", 3));
    lp_streamq_drop(&q, 100);
    assert_int_equal(q.buffered, 0);
    assert_null(q.head);
    assert_true(lp_streamq_append(&q, (const uint8_t *)"de", 2)); /* usable again */
    assert_int_equal(q.buffered, 2);
    lp_streamq_clear(&q);
}

static void test_streamq_takes_a_payload_larger_than_a_chunk(void **state)
{
    (void)state;
    struct lp_streamq q;
    size_t n = LP_STREAMQ_CHUNK * 2 + 5;
    uint8_t *big = malloc(n);
    const uint8_t *data;

    assert_non_null(big);
    memset(big, 0x5a, n);
    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, big, n));
    assert_int_equal(lp_streamq_peek(&q, &data), n);
    assert_memory_equal(data, big, n);
    lp_streamq_clear(&q);
    free(big);
}

/* After reserve(n), pieces totalling n go in without a new chunk: they land in one run. A
 * reserved chunk that never got a byte is freed by clear (LeakSanitizer checks). */
static void test_streamq_reserve_keeps_a_message_in_one_run(void **state)
{
    (void)state;
    struct lp_streamq q;
    const uint8_t *data;
    uint8_t *line = malloc(LP_STREAMQ_CHUNK);

    assert_non_null(line);
    memset(line, 'm', LP_STREAMQ_CHUNK);
    lp_streamq_init(&q);
    assert_true(lp_streamq_append(&q, (const uint8_t *)"first\n", 6));
    /* the line and its newline do not fit the first chunk's rest: both go to a new one */
    assert_true(lp_streamq_reserve(&q, LP_STREAMQ_CHUNK + 1));
    assert_true(lp_streamq_append(&q, line, LP_STREAMQ_CHUNK));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"\n", 1));
    assert_int_equal(lp_streamq_peek(&q, &data), 6);
    lp_streamq_drop(&q, 6);
    assert_int_equal(lp_streamq_peek(&q, &data), LP_STREAMQ_CHUNK + 1);
    assert_int_equal(data[LP_STREAMQ_CHUNK], '\n');
    lp_streamq_drop(&q, LP_STREAMQ_CHUNK + 1);
    assert_true(lp_streamq_reserve(&q, 100)); /* reserved, never used */
    assert_int_equal(q.buffered, 0);
    assert_int_equal(lp_streamq_peek(&q, &data), 0);
    lp_streamq_clear(&q);
    free(line);
}

/* lp_streamq_peek_at walks every chunk from any offset: what saving a stream reads. */
static void test_streamq_peek_at_reaches_every_byte_from_any_offset(void **state)
{
    (void)state;
    struct lp_streamq q;
    uint8_t in[300], out[300];
    const uint8_t *data;

    lp_streamq_init(&q);
    q.chunk = 64; /* several chunks */
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 7);
    for (size_t off = 0; off < sizeof(in); off += 50)
        assert_true(lp_streamq_append(&q, in + off, 50));
    lp_streamq_drop(&q, 20); /* the front chunk is partly consumed */
    for (size_t from = 0; from < q.buffered; from += 13) {
        size_t got = 0;
        while (from + got < q.buffered) {
            size_t n = lp_streamq_peek_at(&q, from + got, &data);
            assert_true(n > 0);
            memcpy(out + got, data, n);
            got += n;
        }
        assert_memory_equal(out, in + 20 + from, q.buffered - from);
    }
    assert_int_equal(lp_streamq_peek_at(&q, q.buffered, &data), 0);
    assert_null(data);
    lp_streamq_clear(&q);
}

/* A line spread over three small chunks, its front partly dropped: find counts from the first
 * byte still held, skips what it is told was looked at, and copy joins the pieces. */
static void test_streamq_find_and_copy_span_chunks_after_a_drop(void **state)
{
    (void)state;
    struct lp_streamq q;
    uint8_t out[32];

    lp_streamq_init(&q);
    q.chunk = 8;
    assert_true(lp_streamq_append(&q, (const uint8_t *)"ab\ncdefg", 8));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"hijklmno", 8));
    assert_true(lp_streamq_append(&q, (const uint8_t *)"pq\nrs", 5));
    assert_int_equal(lp_streamq_find(&q, 0, '\n'), 2);
    lp_streamq_drop(&q, 3); /* "ab\n" taken */
    assert_int_equal(lp_streamq_find(&q, 0, '\n'), 15);
    assert_int_equal(lp_streamq_find(&q, 13, '\n'), 15); /* from inside the third chunk */
    assert_int_equal(lp_streamq_find(&q, 5, '\n'), 15);  /* from the second */
    assert_int_equal(lp_streamq_find(&q, 16, '\n'), SIZE_MAX);
    assert_int_equal(lp_streamq_find(&q, 100, '\n'), SIZE_MAX);
    assert_int_equal(lp_streamq_find(&q, 0, 'z'), SIZE_MAX);
    assert_int_equal(lp_streamq_copy(&q, out, 16), 16);
    assert_memory_equal(out, "cdefghijklmnopq\n", 16);
    assert_int_equal(lp_streamq_copy(&q, out, sizeof(out)), 18); /* all there is */
    assert_memory_equal(out, "cdefghijklmnopq\nrs", 18);
    assert_int_equal(q.buffered, 18); /* neither consumed anything */
    lp_streamq_clear(&q);
    assert_int_equal(lp_streamq_find(&q, 0, '\n'), SIZE_MAX);
    assert_int_equal(lp_streamq_copy(&q, out, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamq_starts_empty),
        cmocka_unit_test(test_streamq_keeps_bytes_in_order_and_drops_from_the_front),
        cmocka_unit_test(test_streamq_starts_a_new_chunk_when_a_payload_does_not_fit),
        cmocka_unit_test(test_streamq_frees_a_chunk_once_dropped_past_it),
        cmocka_unit_test(test_streamq_drop_beyond_buffered_empties_it),
        cmocka_unit_test(test_streamq_takes_a_payload_larger_than_a_chunk),
        cmocka_unit_test(test_streamq_reserve_keeps_a_message_in_one_run),
        cmocka_unit_test(test_streamq_peek_at_reaches_every_byte_from_any_offset),
        cmocka_unit_test(test_streamq_find_and_copy_span_chunks_after_a_drop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
