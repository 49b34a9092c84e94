/* fuzz_handshake.c — libFuzzer target for the handshake frames HELLO, WELCOME and REJECT.
 *
 * These are the first bytes a server reads from an unauthenticated peer. The first frame of
 * the input is decoded; if it is a handshake frame, its typed decoder runs and whatever
 * decodes must encode again to the very same bytes, or the harness aborts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t again[LP_FRAME_MAX];

static void check(int ok)
{
    if (!ok)
        abort();
}

static lp_err hello(const struct lp_frame *f, size_t *n, const char **why)
{
    struct lp_hello h;
    lp_err rc = lp_hello_decode(f, &h, why);

    if (rc == LP_OK) {
        check(h.magic == LP_PROTO_MAGIC);
        *n = lp_hello_encode(again, sizeof(again), &h);
    }
    return rc;
}

static lp_err welcome(const struct lp_frame *f, size_t *n, const char **why)
{
    struct lp_welcome w;
    lp_err rc = lp_welcome_decode(f, &w, why);

    if (rc == LP_OK)
        *n = lp_welcome_encode(again, sizeof(again), &w);
    return rc;
}

static lp_err reject(const struct lp_frame *f, size_t *n, const char **why)
{
    struct lp_text t;
    lp_err rc = lp_text_decode(f, &t, why);

    if (rc == LP_OK) {
        check(t.msg_len <= LP_FRAME_MAX_TEXT && memchr(t.msg, 0, t.msg_len) == NULL);
        (void)lp_reject_code_name(t.code);
        *n = lp_text_encode(again, sizeof(again), LP_FT_REJECT, 0, t.code, (const char *)t.msg,
                            t.msg_len);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_frame f;
    size_t used = 0, n = 0;
    const char *why = NULL;
    lp_err rc = lp_frame_decode(data, size, &f, &used, &why);

    if (rc == LP_ERR_MALFORMED)
        check(why != NULL);
    if (rc != LP_OK)
        return 0;
    check(used <= size && used == LP_FRAME_HEADER + f.len);
    why = NULL;
    switch (f.type) {
    case LP_FT_HELLO:
        rc = hello(&f, &n, &why);
        break;
    case LP_FT_WELCOME:
        rc = welcome(&f, &n, &why);
        break;
    case LP_FT_REJECT:
        rc = reject(&f, &n, &why);
        break;
    default:
        return 0; /* not a handshake frame: a server refuses it without looking further */
    }
    check(f.stream_id == 0);
    if (rc != LP_OK) {
        check(rc == LP_ERR_MALFORMED && why != NULL);
        return 0;
    }
    check(n == used && memcmp(again, data, n) == 0);
    return 0;
}
