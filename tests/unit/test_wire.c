/* test_wire.c — the bounds-checked big-endian cursors (wire.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/wire.h"

/* A heap copy of exactly n bytes, so ASan reports any read one byte past the end. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n)
        memcpy(p, src, n);
    return p;
}

static void test_wire_reads_fields_big_endian(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0xAB, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01,
                                    0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;

    lp_rd_u8(&r, &a);
    lp_rd_u16(&r, &b);
    lp_rd_u32(&r, &c);
    lp_rd_u64(&r, &d);
    assert_false(r.bad);
    assert_int_equal(a, 0xAB);
    assert_int_equal(b, 0x1234);
    assert_int_equal(c, 0xDEADBEEFu);
    assert_true(d == 0x0102030405060708ull);
    assert_int_equal(lp_rd_remaining(&r), 0);
    free(buf);
}

static void test_wire_writes_fields_big_endian(void **state)
{
    (void)state;
    static const uint8_t want[] = {0xAB, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02,
                                   0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 'h',  'i'};
    uint8_t buf[sizeof(want)];
    struct lp_wr w = lp_wr_init(buf, sizeof(buf));

    lp_wr_u8(&w, 0xAB);
    lp_wr_u16(&w, 0x1234);
    lp_wr_u32(&w, 0xDEADBEEFu);
    lp_wr_u64(&w, 0x0102030405060708ull);
    lp_wr_bytes(&w, "hi", 2);
    assert_false(w.bad);
    assert_int_equal(w.off, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void test_wire_load_store_match_literal_bytes(void **state)
{
    (void)state;
    uint8_t b[8];

    lp_store_u16(b, 0xBEEF);
    assert_int_equal(b[0], 0xBE);
    assert_int_equal(b[1], 0xEF);
    assert_int_equal(lp_load_u16(b), 0xBEEF);
    lp_store_u32(b, 0x89ABCDEFu);
    assert_memory_equal(b, "\x89\xAB\xCD\xEF", 4);
    assert_int_equal(lp_load_u32(b), 0x89ABCDEFu);
    lp_store_u64(b, 0xF0E1D2C3B4A59687ull);
    assert_memory_equal(b, "\xF0\xE1\xD2\xC3\xB4\xA5\x96\x87", 8);
    assert_true(lp_load_u64(b) == 0xF0E1D2C3B4A59687ull);
}

static void test_wire_read_past_end_sets_bad_and_yields_zero(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x11, 0x22, 0x33};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));
    uint32_t v = 0xFFFFFFFFu;

    lp_rd_u32(&r, &v);
    assert_true(r.bad);
    assert_int_equal(v, 0);
    assert_int_equal(r.off, 0); /* nothing consumed by the failed read */
    free(buf);
}

static void test_wire_reader_error_is_sticky(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x11, 0x22, 0x33, 0x44, 0x55};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));
    uint64_t big;
    uint8_t small = 0xFF;
    uint16_t mid = 0xFFFF;

    lp_rd_u64(&r, &big); /* fails: 5 bytes left */
    assert_true(r.bad);
    lp_rd_u8(&r, &small); /* would fit, but the reader is already bad */
    lp_rd_u16(&r, &mid);
    assert_true(r.bad);
    assert_int_equal(small, 0);
    assert_int_equal(mid, 0);
    assert_null(lp_rd_view(&r, 0));
    free(buf);
}

static void test_wire_view_borrows_and_refuses_overrun(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {1, 2, 3, 4};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));

    const uint8_t *v = lp_rd_view(&r, 3);
    assert_ptr_equal(v, buf);
    assert_int_equal(lp_rd_remaining(&r), 1);
    assert_null(lp_rd_view(&r, 2));
    assert_true(r.bad);
    assert_int_equal(lp_rd_remaining(&r), 1);
    free(buf);
}

static void test_wire_huge_length_cannot_wrap_the_offset(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {1, 2, 3, 4};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));
    uint8_t one;

    lp_rd_u8(&r, &one);
    assert_null(lp_rd_view(&r, SIZE_MAX));
    assert_true(r.bad);
    assert_int_equal(r.off, 1);
    free(buf);
}

static void test_wire_read_bytes_copies_or_zero_fills(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {9, 8, 7};
    uint8_t *buf = exact_copy(bytes, sizeof(bytes));
    struct lp_rd r = lp_rd_init(buf, sizeof(bytes));
    uint8_t out[4];

    lp_rd_bytes(&r, out, 2);
    assert_false(r.bad);
    assert_memory_equal(out, bytes, 2);
    memset(out, 0xEE, sizeof(out));
    lp_rd_bytes(&r, out, 4);
    assert_true(r.bad);
    assert_memory_equal(out, "\0\0\0\0", 4);
    free(buf);
}

static void test_wire_null_reader_is_empty(void **state)
{
    (void)state;
    struct lp_rd r = lp_rd_init(NULL, 100);
    uint8_t v = 0xFF;

    assert_int_equal(lp_rd_remaining(&r), 0);
    lp_rd_u8(&r, &v);
    assert_true(r.bad);
    assert_int_equal(v, 0);
}

static void test_wire_writer_refuses_partial_write_and_stays_bad(void **state)
{
    (void)state;
    uint8_t buf[6];
    memset(buf, 0xEE, sizeof(buf));
    struct lp_wr w = lp_wr_init(buf, 5);

    lp_wr_u32(&w, 0x01020304u);
    lp_wr_u16(&w, 0x0506); /* 1 byte of room: must write nothing */
    assert_true(w.bad);
    assert_int_equal(w.off, 4);
    assert_int_equal(buf[4], 0xEE);
    lp_wr_u8(&w, 0x07); /* would fit, but the writer is already bad */
    assert_int_equal(buf[4], 0xEE);
    assert_int_equal(buf[5], 0xEE);
    assert_int_equal(w.off, 4);
}

static void test_wire_writer_fills_exactly_to_capacity(void **state)
{
    (void)state;
    uint8_t buf[8];
    struct lp_wr w = lp_wr_init(buf, sizeof(buf));

    lp_wr_u64(&w, 1);
    assert_false(w.bad);
    assert_int_equal(w.off, 8);
    lp_wr_bytes(&w, "", 0);
    assert_false(w.bad);
    lp_wr_u8(&w, 0);
    assert_true(w.bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_reads_fields_big_endian),
        cmocka_unit_test(test_wire_writes_fields_big_endian),
        cmocka_unit_test(test_wire_load_store_match_literal_bytes),
        cmocka_unit_test(test_wire_read_past_end_sets_bad_and_yields_zero),
        cmocka_unit_test(test_wire_reader_error_is_sticky),
        cmocka_unit_test(test_wire_view_borrows_and_refuses_overrun),
        cmocka_unit_test(test_wire_huge_length_cannot_wrap_the_offset),
        cmocka_unit_test(test_wire_read_bytes_copies_or_zero_fills),
        cmocka_unit_test(test_wire_null_reader_is_empty),
        cmocka_unit_test(test_wire_writer_refuses_partial_write_and_stays_bad),
        cmocka_unit_test(test_wire_writer_fills_exactly_to_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
