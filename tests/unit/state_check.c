/* state_check.c — the refusals every state loader owes. See state_check.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/wire.h"
#include "state_check.h"

/* The one section's header sits right after the file header. */
#define TAG_AT LP_STATE_HEADER
#define LEN_AT (LP_STATE_HEADER + 2u)
#define BODY_AT (LP_STATE_HEADER + LP_STATE_SECTION_HEADER)

static lp_err load_file(const uint8_t *file, size_t len, state_load_fn load, void *ctx, char *why,
                        size_t whylen)
{
    struct lp_state_rd rd;
    lp_err rc = lp_state_open(&rd, file, len);

    if (rc == LP_OK)
        rc = load(&rd, ctx);
    if (rc == LP_OK && !lp_state_at_end(&rd)) {
        lp_state_fail(&rd, LP_ERR_MALFORMED, "bytes after the section");
        rc = LP_ERR_MALFORMED;
    }
    snprintf(why, whylen, "%s", rd.why);
    return rc;
}

/* A refusal must say why, in words. */
static void expect_refused(lp_err rc, const char *why, const char *what, size_t at)
{
    if (rc == LP_OK)
        fail_msg("%s at %zu: the loader took it", what, at);
    if (why[0] == '\0')
        fail_msg("%s at %zu: refused (%s) without a reason", what, at, lp_strerror(rc));
}

static uint8_t *copy_of(const uint8_t *file, size_t len, size_t extra)
{
    uint8_t *c = malloc(len + extra + 1);

    assert_non_null(c);
    memcpy(c, file, len);
    return c;
}

/* Every cut inside the section body, with the section and file lengths made to agree, so the
 * loader meets a section that ends in the middle of one of its fields. */
static void check_truncations(const uint8_t *file, size_t len, state_load_fn load, void *ctx)
{
    char why[LP_STATE_WHY_MAX];
    uint8_t *c = copy_of(file, len, 0);

    for (size_t cut = BODY_AT; cut < len; cut++) {
        lp_store_u64(c + 8, (uint64_t)(cut - LP_STATE_HEADER));
        lp_store_u32(c + LEN_AT, (uint32_t)(cut - BODY_AT));
        expect_refused(load_file(c, cut, load, ctx, why, sizeof(why)), why, "cut", cut);
    }
    /* And every prefix of the file as it is: the header's length gives those away. */
    for (size_t cut = 0; cut < len; cut++) {
        lp_err rc = load_file(file, cut, load, ctx, why, sizeof(why));
        assert_int_equal(rc, LP_ERR_TRUNCATED);
        expect_refused(rc, why, "prefix", cut);
    }
    free(c);
}

static void check_whole_refusals(const uint8_t *file, size_t len, state_load_fn load, void *ctx)
{
    char why[LP_STATE_WHY_MAX];
    uint8_t *c = copy_of(file, len, 1);

    /* A byte the layout does not account for. */
    c[len] = 0;
    lp_store_u64(c + 8, (uint64_t)(len + 1 - LP_STATE_HEADER));
    lp_store_u32(c + LEN_AT, lp_load_u32(file + LEN_AT) + 1);
    assert_int_equal(load_file(c, len + 1, load, ctx, why, sizeof(why)), LP_ERR_MALFORMED);
    assert_non_null(strstr(why, "left over"));
    memcpy(c, file, len);
    /* A version this binary does not read. */
    lp_store_u16(c + 4, LP_STATE_VERSION + 1);
    assert_int_equal(load_file(c, len, load, ctx, why, sizeof(why)), LP_ERR_VERSION);
    assert_non_null(strstr(why, "this binary reads"));
    memcpy(c, file, len);
    /* A section it does not know, in its place. */
    lp_store_u16(c + TAG_AT, 0x0077);
    assert_int_equal(load_file(c, len, load, ctx, why, sizeof(why)), LP_ERR_MALFORMED);
    assert_non_null(strstr(why, "0x0077"));
    free(c);
}

/* Changed bytes: taken or refused with a reason, nothing in between. */
static void check_flips(const uint8_t *file, size_t len, state_load_fn load, void *ctx,
                        size_t flips)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    char why[LP_STATE_WHY_MAX];
    uint8_t *c = copy_of(file, len, 0);
    size_t body = len - BODY_AT;
    size_t stride = body > flips ? body / flips : 1;

    for (size_t at = BODY_AT; at < len; at += stride) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            c[at] ^= masks[m];
            lp_err rc = load_file(c, len, load, ctx, why, sizeof(why));
            if (rc != LP_OK)
                expect_refused(rc, why, "changed byte", at);
            c[at] = file[at];
        }
    }
    free(c);
}

void state_check_loader(const uint8_t *file, size_t len, state_load_fn load, void *ctx,
                        size_t flips)
{
    char why[LP_STATE_WHY_MAX];

    assert_true(len > BODY_AT);
    if (load_file(file, len, load, ctx, why, sizeof(why)) != LP_OK)
        fail_msg("the valid state was refused: %s", why);
    check_truncations(file, len, load, ctx);
    check_whole_refusals(file, len, load, ctx);
    check_flips(file, len, load, ctx, flips);
}
