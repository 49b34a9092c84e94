/* fuzz_frame.c — libFuzzer target for the frame codec.
 *
 * Decodes the input as a stream of frames. Each accepted frame goes through the typed decoder
 * of its type, and whatever decodes is encoded again: the bytes must come back identical
 * (the encoding is canonical), or the harness aborts. Every accepted frame's prefixes must be
 * LP_ERR_TRUNCATED, and every refusal must carry a reason. The typed decoders are also fed
 * payloads of sizes the envelope would have refused (see raw_payloads).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t again[LP_FRAME_MAX];

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Runs f through the typed decoder of its type and, if it decodes, encodes the fields again
 * into `again`. Returns the decoder's verdict; *n is the encoded size on LP_OK. */
static lp_err round_trip(const struct lp_frame *f, size_t *n, const char **why)
{
    struct lp_open o;
    struct lp_text t;
    struct lp_hello h;
    struct lp_welcome w;
    uint32_t v32;
    uint64_t v64;
    lp_err rc = LP_OK;

    *n = 0;
    switch (f->type) {
    case LP_FT_OPEN:
        if ((rc = lp_open_decode(f, &o, why)) == LP_OK)
            *n = lp_open_encode(again, sizeof(again), f->stream_id, &o);
        break;
    case LP_FT_OPEN_OK:
    case LP_FT_WINDOW:
        if ((rc = lp_u32_decode(f, &v32, why)) == LP_OK)
            *n = lp_u32_encode(again, sizeof(again), f->type, f->stream_id, v32);
        break;
    case LP_FT_ACK:
    case LP_FT_PING:
    case LP_FT_PONG:
        if ((rc = lp_u64_decode(f, &v64, why)) == LP_OK)
            *n = lp_u64_encode(again, sizeof(again), f->type, v64);
        break;
    case LP_FT_DATA:
        *n = lp_data_encode(again, sizeof(again), f->stream_id, f->payload, f->len);
        break;
    case LP_FT_FIN:
        *n = lp_empty_encode(again, sizeof(again), f->type, f->stream_id);
        break;
    case LP_FT_HELLO:
        if ((rc = lp_hello_decode(f, &h, why)) == LP_OK)
            *n = lp_hello_encode(again, sizeof(again), &h);
        break;
    case LP_FT_WELCOME:
        if ((rc = lp_welcome_decode(f, &w, why)) == LP_OK)
            *n = lp_welcome_encode(again, sizeof(again), &w);
        break;
    default:
        if ((rc = lp_text_decode(f, &t, why)) == LP_OK)
            *n = lp_text_encode(again, sizeof(again), f->type, f->stream_id, t.code,
                                (const char *)t.msg, t.msg_len);
        break;
    }
    return rc;
}

/* Whatever a typed decoder accepted must encode again to the same header and payload. */
static void check_round_trip(const struct lp_frame *f)
{
    const char *why = NULL;
    size_t n;
    lp_err rc = round_trip(f, &n, &why);

    if (rc != LP_OK) {
        check(rc == LP_ERR_MALFORMED && why != NULL);
        return;
    }
    check(n == LP_FRAME_HEADER + f->len);
    check(again[0] == f->type && again[1] == 0);
    check(lp_load_u16(again + 2) == f->len && lp_load_u32(again + 4) == f->stream_id);
    check(f->len == 0 || memcmp(again + LP_FRAME_HEADER, f->payload, f->len) == 0);
}

/* Every strict prefix of an accepted frame is only incomplete. Checking the prefixes that end
 * inside each header field and the one a byte short of the end covers each decision point. */
static void check_prefixes(const uint8_t *frame, size_t used)
{
    static const size_t cuts[] = {0, 1, 2, 3, 4, 7, 8};
    struct lp_frame f;
    size_t n;
    const char *why;

    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]) && cuts[i] < used; i++)
        check(lp_frame_decode(frame, cuts[i], &f, &n, &why) == LP_ERR_TRUNCATED);
    check(lp_frame_decode(frame, used - 1, &f, &n, &why) == LP_ERR_TRUNCATED);
}

/* A stream id the envelope accepts for type, as the encoders write it. */
static uint32_t canonical_id(uint8_t type)
{
    return lp_frame_is_sequenced(type) && type != LP_FT_GOODBYE ? 1 : 0;
}

/* The typed decoders on payloads the envelope never lets by: the whole input as the payload
 * of several types, and the input after its header as the payload of the input's own type,
 * whatever the header's length says. The second lets one mutation that grows a field (an
 * inserted byte) reach the typed decoder without a matching change to the length. */
static void raw_payloads(const uint8_t *data, size_t size)
{
    static const uint8_t types[] = {LP_FT_OPEN,   LP_FT_OPEN_OK, LP_FT_PING,   LP_FT_RST,
                                    LP_FT_REJECT, LP_FT_HELLO,   LP_FT_WELCOME};

    if (size > LP_FRAME_MAX_PAYLOAD + LP_FRAME_HEADER)
        return;
    for (size_t i = 0; i < sizeof(types) && size <= LP_FRAME_MAX_PAYLOAD; i++) {
        struct lp_frame f = {
            .type = types[i], .stream_id = canonical_id(types[i]), .payload = data, .len = size};
        check_round_trip(&f);
    }
    /* DATA and FIN have no typed decoder: their payload rule is the envelope's alone. */
    if (size < LP_FRAME_HEADER || data[0] == LP_FT_DATA || data[0] == LP_FT_FIN ||
        lp_frame_type_name(data[0])[0] == '?')
        return;
    struct lp_frame f = {.type = data[0],
                         .stream_id = canonical_id(data[0]),
                         .payload = data + LP_FRAME_HEADER,
                         .len = size - LP_FRAME_HEADER};
    check_round_trip(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    raw_payloads(data, size);
    /* Each iteration consumes at least LP_FRAME_HEADER bytes, so this ends. */
    while (off < size) {
        struct lp_frame f;
        size_t used = 0;
        const char *why = NULL;
        lp_err rc = lp_frame_decode(data + off, size - off, &f, &used, &why);
        if (rc == LP_ERR_MALFORMED)
            check(why != NULL);
        if (rc != LP_OK)
            break;
        check(used == LP_FRAME_HEADER + f.len && used <= size - off);
        check(f.len <= LP_FRAME_MAX_PAYLOAD && f.flags == 0);
        check(f.payload == data + off + LP_FRAME_HEADER);
        check_prefixes(data + off, used);
        check_round_trip(&f);
        off += used;
    }
    return 0;
}
