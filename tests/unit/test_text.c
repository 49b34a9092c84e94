/* test_text.c — text from peers made safe for a terminal, a log line and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/text.h"

static void expect_safe(const char *in, size_t inlen, bool lines, const char *want)
{
    char out[256];
    size_t n = lp_text_safe(out, sizeof(out), in, inlen, lines);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_text_escapes_every_terminal_control(void **state)
{
    (void)state;
    expect_safe("db.internal:5432", 16, false, "db.internal:5432");
    /* ESC ] title BEL, CSI, DEL, a newline where lines are not kept */
    expect_safe("\x1b]0;pwned\x07", 10, false, "\\x1b]0;pwned\\x07");
    expect_safe("a\x7f"
                "b\n",
                4, false, "a\\x7fb\\x0a");
    expect_safe("a\nb", 3, true, "a\nb");
    /* U+009B, the one-byte CSI, written as UTF-8: escaped byte by byte */
    expect_safe("\xc2\x9b"
                "31m",
                5, false, "\\xc2\\x9b31m");
    /* valid UTF-8 stays as it is */
    expect_safe("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9a", 14, false,
                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9a");
}

static void test_text_escapes_invalid_utf8(void **state)
{
    (void)state;
    expect_safe("\xff\xfe:80", 5, false, "\\xff\\xfe:80");
    expect_safe("\xc3", 1, false, "\\xc3");                            /* truncated */
    expect_safe("\xc0\xaf", 2, false, "\\xc0\\xaf");                   /* overlong '/' */
    expect_safe("\xe0\x80\xaf", 3, false, "\\xe0\\x80\\xaf");          /* overlong, 3 bytes */
    expect_safe("\xed\xa0\x80", 3, false, "\\xed\\xa0\\x80");          /* a UTF-16 surrogate */
    expect_safe("\xf4\x90\x80\x80", 4, false, "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    expect_safe("a\0b", 3, false, "a\\x00b");
}

static void test_text_never_splits_an_escape_or_a_character(void **state)
{
    char out[6];
    (void)state;
    /* room for 5 bytes: "ab" then "\x1b" (4) does not fit */
    assert_int_equal(lp_text_safe(out, sizeof(out), "ab\x1b", 3, false), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(lp_text_safe(out, sizeof(out), "abc\xe2\x82\xac", 6, false), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(lp_text_safe(out, 1, "abc", 3, false), 0);
    assert_string_equal(out, "");
}

static void test_utf8_len_reads_no_further_than_allowed(void **state)
{
    (void)state;
    assert_int_equal(lp_utf8_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
    assert_int_equal(lp_utf8_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
    assert_int_equal(lp_utf8_len((const unsigned char *)"\x80", 1), 0);
    assert_int_equal(lp_utf8_len((const unsigned char *)"\xc3\xa9", 2), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_escapes_every_terminal_control),
        cmocka_unit_test(test_text_escapes_invalid_utf8),
        cmocka_unit_test(test_text_never_splits_an_escape_or_a_character),
        cmocka_unit_test(test_utf8_len_reads_no_further_than_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
