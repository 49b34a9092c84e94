/* jsonrpc.c — newline framing and JSON-RPC message helpers. See jsonrpc.h. */

#include "limpet/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINES_CAP_MIN 256u
#define LINES_KEEP (64u * 1024u) /* a partial-line buffer larger than this is not kept idle */

/* ---- line framing ------------------------------------------------------------------ */

void lp_lines_init(struct lp_lines *l, size_t max)
{
    memset(l, 0, sizeof(*l));
    l->max = max;
}

void lp_lines_free(struct lp_lines *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = 0;
    l->cap = 0;
    l->skipping = false;
}

size_t lp_lines_pending(const struct lp_lines *l)
{
    return l->len;
}

lp_err lp_lines_restore(struct lp_lines *l, const uint8_t *part, size_t n, bool skipping)
{
    if ((skipping && n > 0) || (n > 0 && memchr(part, '\n', n) != NULL))
        return LP_ERR_MALFORMED;
    /* A max lowered since (the successor's configuration): the line is too long already, and
     * is skipped to its end as one found too long is. */
    l->skipping = skipping || (l->max < SIZE_MAX && n > l->max + 1);
    if (n == 0 || l->skipping)
        return LP_OK;
    if ((l->buf = malloc(n)) == NULL)
        return LP_ERR_NOMEM;
    memcpy(l->buf, part, n);
    l->len = l->cap = n;
    return LP_OK;
}

/* The bytes before a '\n' are at most max of content plus the '\r' a CRLF peer adds, so a
 * line (or a partial one, which can still end) of raw length raw whose last byte is last
 * fits at raw <= max, or at max + 1 when last is that '\r'. A partial line is thus known to
 * be too long as soon as it holds max + 1 bytes not ending in '\r', or max + 2 bytes. */
static bool fits(const struct lp_lines *l, size_t raw, uint8_t last)
{
    return raw <= l->max || (raw - 1 == l->max && last == '\r');
}

/* Makes room for `need` bytes in the partial-line buffer, growing geometrically but never
 * past max + 1 (a full line plus its '\r'). False when out of memory. */
static bool reserve(struct lp_lines *l, size_t need)
{
    size_t limit = l->max < SIZE_MAX ? l->max + 1 : SIZE_MAX;
    size_t cap = l->cap > 0 ? l->cap : LINES_CAP_MIN;
    uint8_t *nb;

    if (need <= l->cap)
        return true;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (cap > limit)
        cap = limit;
    if (cap < need || (nb = realloc(l->buf, cap)) == NULL)
        return false;
    l->buf = nb;
    l->cap = cap;
    return true;
}

/* Content length of a complete raw line: without the '\r' before its '\n'. */
static size_t strip_cr(const uint8_t *p, size_t raw)
{
    return raw > 0 && p[raw - 1] == '\r' ? raw - 1 : raw;
}

/* Drops bytes of a too-long line up to and including its '\n'. Returns bytes consumed. */
static size_t skip_rest(struct lp_lines *l, const uint8_t *data, size_t n)
{
    const uint8_t *nl = memchr(data, '\n', n);

    if (nl == NULL)
        return n;
    l->skipping = false;
    return (size_t)(nl - data) + 1;
}

/* Nothing buffered: takes the line starting at data + *off, pointing into data when it ends
 * there, else buffering it. Advances *off; LP_LINE_NONE means go on scanning. */
static enum lp_line_kind take_direct(struct lp_lines *l, const uint8_t *data, size_t n, size_t *off,
                                     const uint8_t **line, size_t *len)
{
    const uint8_t *start = data + *off;
    size_t rest = n - *off;
    const uint8_t *nl = memchr(start, '\n', rest);
    size_t raw = nl != NULL ? (size_t)(nl - start) : rest;

    if (nl == NULL) {
        bool too_long = !fits(l, raw, start[raw - 1]);
        if (too_long || !reserve(l, raw)) {
            l->skipping = true;
            *off = n;
            return too_long ? LP_LINE_TOO_LONG : LP_LINE_NOMEM;
        }
        memcpy(l->buf, start, raw);
        l->len = raw;
        *off = n;
        return LP_LINE_NONE;
    }
    *off += raw + 1;
    if (raw > 0 && !fits(l, raw, start[raw - 1]))
        return LP_LINE_TOO_LONG;
    *len = strip_cr(start, raw);
    *line = start;
    return *len > 0 ? LP_LINE_OK : LP_LINE_NONE;
}

/* Appends to a buffered partial line; see take_direct for the result. */
static enum lp_line_kind take_buffered(struct lp_lines *l, const uint8_t *data, size_t n,
                                       size_t *off, const uint8_t **line, size_t *len)
{
    const uint8_t *start = data + *off;
    size_t rest = n - *off;
    const uint8_t *nl = memchr(start, '\n', rest);
    size_t chunk = nl != NULL ? (size_t)(nl - start) : rest;
    size_t raw = chunk <= SIZE_MAX - l->len ? l->len + chunk : SIZE_MAX;
    uint8_t last = chunk > 0 ? start[chunk - 1] : l->buf[l->len - 1];
    bool too_long = !fits(l, raw, last);

    if (too_long || !reserve(l, raw)) {
        l->len = 0;
        *off += nl != NULL ? chunk + 1 : rest;
        l->skipping = nl == NULL;
        return too_long ? LP_LINE_TOO_LONG : LP_LINE_NOMEM;
    }
    memcpy(l->buf + l->len, start, chunk);
    *off += nl != NULL ? chunk + 1 : rest;
    if (nl == NULL) {
        l->len = raw;
        return LP_LINE_NONE;
    }
    /* The buffer stays intact until the next call appends, so the line may point into it
     * although nothing is pending any more. */
    l->len = 0;
    *len = strip_cr(l->buf, raw);
    *line = l->buf;
    return *len > 0 ? LP_LINE_OK : LP_LINE_NONE;
}

enum lp_line_kind lp_lines_next(struct lp_lines *l, const uint8_t *data, size_t n, size_t *used,
                                const uint8_t **line, size_t *len)
{
    size_t off = 0;
    enum lp_line_kind k = LP_LINE_NONE;

    *line = NULL;
    *len = 0;
    /* A large buffer goes once its line has (the line was lent only until this call): one
     * long message must not hold its size for as long as the stream lives. */
    if (l->len == 0 && l->cap > LINES_KEEP) {
        free(l->buf);
        l->buf = NULL;
        l->cap = 0;
    }
    /* Each pass consumes at least one byte, so this ends within n passes. */
    while (off < n && k == LP_LINE_NONE) {
        if (l->skipping)
            off += skip_rest(l, data + off, n - off);
        else if (l->len > 0)
            k = take_buffered(l, data, n, &off, line, len);
        else
            k = take_direct(l, data, n, &off, line, len);
    }
    *used = off;
    if (k != LP_LINE_OK) {
        *line = NULL;
        *len = 0;
    }
    return k;
}

enum lp_line_kind lp_lines_finish(struct lp_lines *l, const uint8_t **line, size_t *len)
{
    size_t raw = l->len;

    *line = NULL;
    *len = 0;
    l->len = 0;
    if (l->skipping) {
        l->skipping = false;
        return LP_LINE_NONE;
    }
    if (raw == 0 || (*len = strip_cr(l->buf, raw)) == 0)
        return LP_LINE_NONE;
    *line = l->buf;
    return LP_LINE_OK;
}

lp_err lp_lines_feed(struct lp_lines *l, const uint8_t *data, size_t n, lp_line_fn fn, void *user)
{
    lp_err lost = LP_OK;

    while (n > 0) {
        const uint8_t *line;
        size_t len, used;
        lp_err rc = LP_OK;
        enum lp_line_kind k = lp_lines_next(l, data, n, &used, &line, &len);

        if (k == LP_LINE_OK)
            rc = fn(user, line, len);
        else if (k == LP_LINE_TOO_LONG)
            rc = fn(user, NULL, 0);
        else if (k == LP_LINE_NOMEM)
            lost = LP_ERR_NOMEM; /* that line only: the lines after it are whole again */
        if (rc != LP_OK)
            return rc;
        if (used == 0 || used > n)
            break; /* cannot happen: each call consumes a byte at least */
        data += used;
        n -= used;
    }
    return lost;
}

/* ---- messages ------------------------------------------------------------------------ */

void lp_rpc_msg_clear(struct lp_rpc_msg *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
    m->kind = LP_RPC_OTHER;
}

lp_err lp_rpc_id_key(const json_t *id, char *key, size_t keylen)
{
    size_t n;

    if (keylen > 0)
        key[0] = '\0';
    if (!json_is_string(id) && !json_is_integer(id))
        return LP_ERR_INVALID;
    /* 0: the dump failed, which for a string or an integer only happens when jansson has no
     * memory for its bookkeeping (every such id encodes to 1 byte at least). */
    n = json_dumpb(id, key, keylen, JSON_COMPACT | JSON_ENCODE_ANY);
    if (n == 0 || n >= keylen) {
        if (keylen > 0)
            key[0] = '\0';
        return n == 0 ? LP_ERR_NOMEM : LP_ERR_TOO_BIG;
    }
    key[n] = '\0';
    return LP_OK;
}

/* Fills kind/id/method from the parsed root, per JSON-RPC 2.0 but without insisting on
 * "jsonrpc":"2.0": limpet forwards what it does not understand rather than judging it. */
static lp_err classify(struct lp_rpc_msg *m)
{
    json_t *method = json_object_get(m->root, "method");
    json_t *id = json_object_get(m->root, "id");
    bool has_id = id != NULL;
    bool answer =
        json_object_get(m->root, "result") != NULL || json_object_get(m->root, "error") != NULL;
    lp_err rc;

    m->kind = LP_RPC_OTHER;
    if (!json_is_object(m->root))
        return LP_OK;
    /* null, float, object, or too long to route by: not ours to interpret. Out of memory, a
     * request must not pass for something else, or nobody would wait for its answer. */
    if (has_id && (rc = lp_rpc_id_key(id, m->id_key, sizeof(m->id_key))) != LP_OK)
        return rc == LP_ERR_NOMEM ? rc : LP_OK;
    if (json_is_string(method)) {
        m->kind = has_id ? LP_RPC_REQUEST : LP_RPC_NOTIFICATION;
        m->method = json_string_value(method);
    } else if (method == NULL && has_id && answer) {
        m->kind = LP_RPC_RESPONSE;
    }
    if (m->kind == LP_RPC_REQUEST || m->kind == LP_RPC_RESPONSE)
        m->id = id;
    else
        m->id_key[0] = '\0';
    return LP_OK;
}

/* Out of memory says so, except before the parser starts: then no error is set at all,
 * while every real parse error has a text. */
static bool out_of_memory(const json_error_t *err)
{
    return json_error_code(err) == json_error_out_of_memory || err->text[0] == '\0';
}

lp_err lp_rpc_parse(const uint8_t *line, size_t len, struct lp_rpc_msg *m, char *why, size_t whylen)
{
    json_error_t err;

    memset(m, 0, sizeof(*m));
    m->kind = LP_RPC_OTHER;
    /* Flags 0: only an object or array at top level, no NUL inside strings. jansson's lexer
     * reports a string it had no memory to copy as a syntax error (its source says "this is
     * not very nice"), so a line that fails is parsed once more before it is called
     * malformed: a good line that met a passing shortage then goes through. */
    for (int tries = 0; tries < 2 && m->root == NULL; tries++) {
        m->root = json_loadb((const char *)line, len, 0, &err);
        if (m->root == NULL && out_of_memory(&err)) {
            if (whylen > 0)
                snprintf(why, whylen, "out of memory");
            return LP_ERR_NOMEM;
        }
    }
    if (m->root == NULL) {
        if (whylen > 0)
            snprintf(why, whylen, "not JSON: %s at column %d", err.text, err.column);
        return LP_ERR_MALFORMED;
    }
    if (classify(m) != LP_OK) {
        lp_rpc_msg_clear(m);
        if (whylen > 0)
            snprintf(why, whylen, "out of memory");
        return LP_ERR_NOMEM;
    }
    return LP_OK;
}

/* The encoder's output. jansson's json_dumps ignores a failure to write an object's key
 * (jansson issue #655, in 2.14): out of memory, it can return a document with a key missing,
 * which we would then send as a message. This buffer remembers any failure instead, so an
 * encoding is whole or NULL. */
struct encoded {
    char *text;
    size_t len, cap; /* cap keeps room for the '\n' and NUL after len */
    bool failed;
};

static int encode_piece(const char *piece, size_t n, void *data)
{
    struct encoded *e = data;
    size_t cap = e->cap > 0 ? e->cap : 256;
    char *nt;

    if (e->failed || n > SIZE_MAX / 4 - e->len) {
        e->failed = true;
        return -1;
    }
    if (e->len + n + 2 > e->cap) {
        while (cap < e->len + n + 2)
            cap *= 2;
        if ((nt = realloc(e->text, cap)) == NULL) {
            e->failed = true;
            return -1;
        }
        e->text = nt;
        e->cap = cap;
    }
    memcpy(e->text + e->len, piece, n);
    e->len += n;
    return 0;
}

char *lp_rpc_encode(const json_t *root, size_t *len)
{
    struct encoded e = {0};

    *len = 0;
    if (json_dump_callback(root, encode_piece, &e, JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
        e.failed || e.text == NULL) {
        free(e.text);
        return NULL;
    }
    e.text[e.len] = '\n';
    e.text[e.len + 1] = '\0';
    *len = e.len + 1;
    return e.text;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is not one. Rejects
 * overlong forms, surrogates and code points past U+10FFFF, as jansson does. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t k = 0;

    if (c < 0x80)
        k = 1;
    else if (c >= 0xC2 && c <= 0xDF)
        k = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        k = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        k = 4;
    if (k == 0 || k > n)
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    for (size_t i = 1; i < k; i++) {
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
    }
    return k;
}

/* A JSON string of text with each byte that is not valid UTF-8 replaced by U+FFFD. */
static json_t *string_lossy(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), o = 0;
    char *clean;
    json_t *j;

    if ((j = json_string(text)) != NULL || n > (SIZE_MAX - 1) / 3)
        return j;
    if ((clean = malloc(n * 3 + 1)) == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(s + i, n - i);
        if (k == 0) {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(clean + o, s + i, k);
        o += k;
        i += k;
    }
    j = json_stringn(clean, o);
    free(clean);
    return j;
}

/* {"jsonrpc":"2.0","id":ID} with ID copied (null when id is NULL); NULL when out of memory. */
static json_t *response_head(const json_t *id)
{
    json_t *root = json_object();

    if (root == NULL)
        return NULL;
    if (json_object_set_new(root, "jsonrpc", json_string("2.0")) != 0 ||
        json_object_set_new(root, "id", id != NULL ? json_deep_copy(id) : json_null()) != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}

char *lp_rpc_error_line(const json_t *id, int code, const char *message, size_t *len)
{
    json_t *root = response_head(id);
    json_t *error = json_object();
    char *out = NULL;
    int rc;

    *len = 0;
    if (root == NULL || error == NULL)
        goto out;
    if (json_object_set_new(error, "code", json_integer(code)) != 0 ||
        json_object_set_new(error, "message", string_lossy(message != NULL ? message : "")) != 0)
        goto out;
    rc = json_object_set_new(root, "error", error);
    error = NULL; /* set_new takes it, even when it fails */
    if (rc != 0)
        goto out;
    out = lp_rpc_encode(root, len);
out:
    json_decref(error);
    json_decref(root);
    return out;
}

char *lp_rpc_result_line(const json_t *id, const json_t *result, size_t *len)
{
    json_t *root = response_head(id);
    char *out = NULL;

    *len = 0;
    if (root == NULL || result == NULL)
        goto out;
    /* A reference, not a copy: the count is bookkeeping, the value itself is untouched. */
    if (json_object_set(root, "result", (json_t *)result) != 0)
        goto out;
    out = lp_rpc_encode(root, len);
out:
    json_decref(root);
    return out;
}

char *lp_rpc_notification_line(const char *method, const json_t *params, size_t *len)
{
    json_t *root = json_object();
    char *out = NULL;

    *len = 0;
    if (root == NULL || method == NULL)
        goto out;
    if (json_object_set_new(root, "jsonrpc", json_string("2.0")) != 0 ||
        json_object_set_new(root, "method", string_lossy(method)) != 0)
        goto out;
    if (params != NULL && json_object_set(root, "params", (json_t *)params) != 0)
        goto out;
    out = lp_rpc_encode(root, len);
out:
    json_decref(root);
    return out;
}
