/* fuzz_jsonrpc.c — libFuzzer target for MCP stdio framing and JSON-RPC classification.
 *
 * The input is a byte stream. It is framed twice: once whole, once in chunks whose sizes come
 * from the input's own first bytes (a 0 means "the rest"), so a mutation also explores where
 * the reads fall. Both framings must yield the same lines and TOO_LONG reports (framing may
 * not depend on how reads are cut), every line is at most `max` bytes, the partial-line
 * buffer stays within max + 1, and every line goes through lp_rpc_parse. Each id found must round-trip through
 * lp_rpc_id_key, and the helpers that write lines must produce one parseable line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/jsonrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINE 256u /* small, so the too-long paths are reached often */

static void check(int ok)
{
    if (!ok)
        abort();
}

/* A digest of the framing's output: event count and a rolling hash over the lines. */
struct trace {
    size_t events, limit;
    uint64_t hash;
};

static void mix(struct trace *t, const uint8_t *p, size_t n, uint8_t tag)
{
    t->hash = (t->hash ^ tag) * 1099511628211u;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ p[i]) * 1099511628211u;
    t->events++;
}

/* A written line must be exactly one JSON-RPC message ending in '\n'. */
static void check_written(char *out, size_t len, enum lp_rpc_kind want)
{
    struct lp_rpc_msg m;
    char why[128];

    if (out == NULL)
        return; /* out of memory is allowed */
    check(len > 0 && out[len - 1] == '\n' && memchr(out, '\n', len - 1) == NULL);
    check(lp_rpc_parse((const uint8_t *)out, len - 1, &m, why, sizeof(why)) == LP_OK);
    check(m.kind == want);
    lp_rpc_msg_clear(&m);
    free(out);
}

static void check_id(const json_t *id, const char *key)
{
    char again[80];
    json_t *back;
    size_t len;

    check(lp_rpc_id_key(id, again, sizeof(again)) == LP_OK);
    check(strcmp(again, key) == 0);
    back = json_loads(key, JSON_DECODE_ANY, NULL);
    check(back != NULL && json_equal(back, id));
    json_decref(back);
    check_written(lp_rpc_error_line(id, LP_RPC_LIMPET_ERROR, key, &len), len, LP_RPC_RESPONSE);
}

static void parse_line(const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    char why[160];
    size_t n;

    if (lp_rpc_parse(line, len, &m, why, sizeof(why)) != LP_OK) {
        check(m.root == NULL && strstr(why, "not JSON") == why);
        /* "id":null carries no id to route by, so it classifies as OTHER. */
        check_written(lp_rpc_error_line(NULL, LP_RPC_PARSE_ERROR, why, &n), n, LP_RPC_OTHER);
        return;
    }
    check(m.root != NULL);
    check((m.id != NULL) == (m.kind == LP_RPC_REQUEST || m.kind == LP_RPC_RESPONSE));
    check((m.method != NULL) == (m.kind == LP_RPC_REQUEST || m.kind == LP_RPC_NOTIFICATION));
    if (m.id != NULL)
        check_id(m.id, m.id_key);
    else
        check(m.id_key[0] == '\0');
    if (m.kind == LP_RPC_REQUEST || m.kind == LP_RPC_NOTIFICATION)
        check_written(lp_rpc_notification_line(m.method, json_object_get(m.root, "params"), &n), n,
                      LP_RPC_NOTIFICATION);
    if (m.kind == LP_RPC_RESPONSE)
        check_written(lp_rpc_result_line(m.id, m.root, &n), n, LP_RPC_RESPONSE);
    lp_rpc_msg_clear(&m);
}

static void on_event(struct trace *t, enum lp_line_kind k, const uint8_t *line, size_t len,
                     bool parse)
{
    check(t->events < t->limit); /* each event consumes at least one byte */
    if (k == LP_LINE_TOO_LONG) {
        mix(t, NULL, 0, 1);
        return;
    }
    check(k == LP_LINE_OK && line != NULL && len > 0 && len <= MAX_LINE);
    check(memchr(line, '\n', len) == NULL);
    mix(t, line, len, 2);
    if (parse)
        parse_line(line, len);
}

/* Frames data in chunks of the sizes in cuts (cycled; 0 entries mean "all the rest"). */
static struct trace frame(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts,
                          bool parse)
{
    struct trace t = {0, size + 1, 14695981039346656037u};
    struct lp_lines l;
    const uint8_t *line;
    size_t len, off = 0, c = 0;
    enum lp_line_kind k;

    lp_lines_init(&l, MAX_LINE);
    while (off < size) {
        size_t chunk = ncuts > 0 ? cuts[c++ % ncuts] : 0;
        size_t end = chunk != 0 && chunk < size - off ? off + chunk : size;
        while (off < end) {
            size_t used = 0;
            k = lp_lines_next(&l, data + off, end - off, &used, &line, &len);
            check(used <= end - off && l.cap <= MAX_LINE + 1 && l.len <= MAX_LINE + 1);
            off += used;
            if (k == LP_LINE_NONE) {
                check(off == end);
                break;
            }
            check(used > 0);
            on_event(&t, k, line, len, parse);
        }
    }
    if ((k = lp_lines_finish(&l, &line, &len)) != LP_LINE_NONE)
        on_event(&t, k, line, len, parse);
    check(lp_lines_pending(&l) == 0);
    lp_lines_free(&l);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The chunk sizes are the values of the input's first 1..8 bytes, which are framed too:
     * seeds stay plain streams and a mutation of those bytes moves the cut points. */
    size_t ncuts = size > 0 ? 1 + data[0] % 8u : 0;
    struct trace whole, cut;

    if (ncuts > size)
        ncuts = size;
    whole = frame(data, size, NULL, 0, true);
    cut = frame(data, size, data, ncuts, false);
    check(whole.events == cut.events && whole.hash == cut.hash);
    return 0;
}
