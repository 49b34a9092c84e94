/* jsonrpc.h — MCP's stdio framing: newline-delimited JSON-RPC 2.0 messages.
 *
 * Sans-I/O. Two halves:
 *  - lp_lines: splits a byte stream into lines, one message per line, each at most `max`
 *    bytes; a longer line is reported once (LP_LINE_TOO_LONG) and skipped to its newline,
 *    so one bad message never costs the messages after it.
 *  - lp_rpc_*: classifies one line with jansson (never a hand-written JSON parser) and
 *    builds the few messages limpet writes itself (errors, rewritten copies).
 * Messages limpet does not need to change are forwarded as the original bytes; only a
 * message a promise requires changing is re-encoded (compact, key order kept).
 */
#ifndef LIMPET_JSONRPC_H
#define LIMPET_JSONRPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

/* ---- line framing ------------------------------------------------------------------ */

enum lp_line_kind {
    LP_LINE_NONE,     /* every byte consumed, no complete line yet */
    LP_LINE_OK,       /* *line and *len hold one line, without its '\n' (and a '\r' before it) */
    LP_LINE_TOO_LONG, /* a line passed `max` bytes: reported once, the rest of it skipped */
    LP_LINE_NOMEM,    /* a partial line could not be buffered (out of memory): it is lost,
                       * reported once and the rest of it skipped, as for TOO_LONG */
};

struct lp_lines {
    uint8_t *buf; /* a partial line (owned), at most max bytes; freed when idle past 64 KiB */
    size_t len, cap, max;
    bool skipping; /* inside a too-long line: drop bytes up to the next '\n' */
};

void lp_lines_init(struct lp_lines *l, size_t max);
void lp_lines_free(struct lp_lines *l);

/* Consumes bytes from data[0..n) up to and including the first line end (or until a
 * too-long line is detected) and sets *used to how many it took; call again with the rest.
 * On LP_LINE_OK *line is borrowed until the next call: it points into `data` when the
 * whole line was there (no copy), else into the partial-line buffer. Blank lines
 * (nothing but optional '\r') are skipped, never returned. Returns LP_LINE_NONE and
 * *used == n when no line completes. */
enum lp_line_kind lp_lines_next(struct lp_lines *l, const uint8_t *data, size_t n, size_t *used,
                                const uint8_t **line, size_t *len);

/* At end of input: a last line without '\n' (not blank) is returned as LP_LINE_OK and the
 * buffer emptied; otherwise LP_LINE_NONE. */
enum lp_line_kind lp_lines_finish(struct lp_lines *l, const uint8_t **line, size_t *len);

/* Bytes held for a partial line. */
size_t lp_lines_pending(const struct lp_lines *l);
/* Upgrade in place: an initialised, empty l takes back a partial line (n bytes of part, copied)
 * and whether it was skipping a too-long one, as its fields held them (a partial line longer
 * than l's max is skipped to its end). LP_ERR_MALFORMED when that cannot be what a lp_lines
 * held (a '\n' in it, bytes while skipping), LP_ERR_NOMEM. */
LP_MUST_USE lp_err lp_lines_restore(struct lp_lines *l, const uint8_t *part, size_t n,
                                    bool skipping);

/* What lp_lines_feed does with each line: a complete one (without '\n'), or the report of
 * a too-long one (line NULL, len 0). A return other than LP_OK stops the feed. */
typedef lp_err (*lp_line_fn)(void *user, const uint8_t *line, size_t len);
/* Runs all of data[0..n) through lp_lines_next, calling fn in order. Returns the first error
 * fn returned (the bytes after that line are then not consumed), else LP_ERR_NOMEM when a
 * line was lost for want of memory (LP_LINE_NOMEM: fn is not called for it, and the lines
 * after it go on), else LP_OK. */
LP_MUST_USE lp_err lp_lines_feed(struct lp_lines *l, const uint8_t *data, size_t n, lp_line_fn fn,
                                 void *user);

/* ---- messages ------------------------------------------------------------------------ */

/* JSON-RPC error codes limpet uses. */
#define LP_RPC_PARSE_ERROR (-32700)     /* not JSON, or longer than mcp.max_message */
#define LP_RPC_INVALID_REQUEST (-32600) /* JSON but not a JSON-RPC 2.0 message */
#define LP_RPC_LIMPET_ERROR (-32000)    /* limpet could not deliver: lost, crashed, refused */

enum lp_rpc_kind {
    LP_RPC_REQUEST,      /* "method" and "id" */
    LP_RPC_NOTIFICATION, /* "method", no "id" */
    LP_RPC_RESPONSE,     /* "id" and "result" or "error", no "method" */
    LP_RPC_OTHER,        /* valid JSON that is none of these (a batch array, ...) */
};

struct lp_rpc_msg {
    enum lp_rpc_kind kind;
    json_t *root;       /* the parsed message (owned) */
    json_t *id;         /* borrowed from root; NULL for notifications and OTHER */
    const char *method; /* borrowed from root; NULL for responses and OTHER */
    char id_key[80];    /* the id as compact JSON text (`7`, `"a"`), "" without an id; an
                         * id whose text would not fit is classified OTHER */
};

/* Parses one line. LP_ERR_MALFORMED (with a one-line reason in why, e.g. "not JSON: ...
 * at column 17") when it is not JSON or not an object/array; LP_ERR_NOMEM when jansson ran
 * out of memory (the line may be fine: it must not be answered as malformed). The message
 * is cleared on error. The caller frees with lp_rpc_msg_clear. */
LP_MUST_USE lp_err lp_rpc_parse(const uint8_t *line, size_t len, struct lp_rpc_msg *m, char *why,
                                size_t whylen);
void lp_rpc_msg_clear(struct lp_rpc_msg *m);

/* The compact JSON text of an id (`7`, `"a"`) into key (size keylen). LP_ERR_TOO_BIG when it
 * does not fit, LP_ERR_INVALID when id is not a string or an integer, LP_ERR_NOMEM when
 * jansson had no memory to encode it. */
LP_MUST_USE lp_err lp_rpc_id_key(const json_t *id, char *key, size_t keylen);

/* Encodes root compactly (insertion order kept) followed by '\n'. Returns an owned buffer
 * (free()) and its length in *len, or NULL when out of memory. */
char *lp_rpc_encode(const json_t *root, size_t *len);

/* An error response line {"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M}}\n; id
 * NULL gives "id":null. message is copied (invalid UTF-8 replaced). Owned, or NULL. */
char *lp_rpc_error_line(const json_t *id, int code, const char *message, size_t *len);

/* A result response line with `result` (borrowed, not consumed) and id. Owned, or NULL. */
char *lp_rpc_result_line(const json_t *id, const json_t *result, size_t *len);

/* A notification line {"jsonrpc":"2.0","method":M,"params":P}\n; params may be NULL.
 * Owned, or NULL. */
char *lp_rpc_notification_line(const char *method, const json_t *params, size_t *len);

#endif
