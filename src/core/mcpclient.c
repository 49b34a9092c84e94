/* mcpclient.c — the JSON-RPC promises of `limpet mcp` toward its host. See mcpclient.h.
 *
 * Every line is forwarded as its own bytes plus '\n' the moment it completes, so order is
 * the arrival order and nothing is merged. Only three things are looked at: requests from
 * the host (to know what is pending), cancellations from the host (a cancelled request will
 * not be answered, MCP says, so it stops being pending) and responses from the far side.
 *
 * Sizes: the two line buffers hold at most max_message (+1) bytes each; the pending set
 * holds at most max_pending requests; the answered set at most ANSWERED_MAX(max_pending)
 * keys. The output queues have no cap of their own: the glue stops reading a side while the
 * queue toward the other side is over its high-water mark.
 */
#include "limpet/mcpclient.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/jsonrpc.h"

#define REASON_MAX 512u
#define ANSWERED_MIN 64u
#define ID_KEY_MAX sizeof(((struct lp_rpc_msg *)0)->id_key) /* every key here fits in it */

struct lp_mcpc {
    size_t max_message;
    size_t max_pending;
    struct lp_lines host_lines;   /* partial line from stdin */
    struct lp_lines tunnel_lines; /* partial line from the current stream */
    struct lp_streamq to_host;
    struct lp_streamq to_tunnel;
    /* id key -> array of the ids of requests forwarded and not yet answered (an array since
     * a host may, against the rules, reuse an id still in flight: each use counts). jansson
     * objects keep insertion order, so the oldest request is answered first on a loss. */
    json_t *pending;
    size_t npending; /* requests in `pending`, all arrays together: at most max_pending */
    /* id keys that got their one response (from the far side or from limpet), oldest first,
     * at most answered_max: a second response to one of them is a duplicate and dropped.
     * Older keys are forgotten; MCP ids are not reused in a session, so a late duplicate of
     * a forgotten key is the only thing that can slip through. */
    json_t *answered;
    size_t answered_max;
};

/* ---- output ------------------------------------------------------------------------------- */

static const uint8_t NL = '\n';

/* Appends a line and its '\n', both or neither (the room is reserved first), so the byte
 * stream stays one whole line per message even after LP_ERR_NOMEM. */
static lp_err put_line(struct lp_streamq *q, const uint8_t *line, size_t len)
{
    if (len == SIZE_MAX || !lp_streamq_reserve(q, len + 1))
        return LP_ERR_NOMEM;
    /* Cannot fail now: the room is there. */
    if (!lp_streamq_append(q, line, len) || !lp_streamq_append(q, &NL, 1))
        return LP_ERR_NOMEM;
    return LP_OK;
}

/* Bytes that already end in '\n' (the lines lp_rpc_* build). */
static lp_err put_raw(struct lp_streamq *q, const char *text, size_t len)
{
    return lp_streamq_append(q, (const uint8_t *)text, len) ? LP_OK : LP_ERR_NOMEM;
}

static lp_err reply_error(lp_mcpc *c, const json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lp_err reply_error(lp_mcpc *c, const json_t *id, int code, const char *fmt, ...)
{
    char msg[REASON_MAX];
    size_t len, n;
    char *line;
    va_list ap;
    lp_err rc;

    n = (size_t)snprintf(msg, sizeof(msg), "limpet: ");
    va_start(ap, fmt);
    if (vsnprintf(msg + n, sizeof(msg) - n, fmt, ap) < 0)
        msg[n] = '\0';
    va_end(ap);
    if ((line = lp_rpc_error_line(id, code, msg, &len)) == NULL)
        return LP_ERR_NOMEM;
    rc = put_raw(&c->to_host, line, len);
    free(line);
    return rc;
}

/* ---- the pending and answered sets ------------------------------------------------------ */

/* Adds key as the newest answered key, forgetting the oldest beyond answered_max. */
static void remember_answered(lp_mcpc *c, const char *key)
{
    json_object_del(c->answered, key); /* answered again: it moves to the newest end */
    if (json_object_size(c->answered) >= c->answered_max) {
        const char *oldest = json_object_iter_key(json_object_iter(c->answered));
        char held[ID_KEY_MAX];
        /* a copy: the key lives in the pair the del frees */
        if (oldest != NULL && (size_t)snprintf(held, sizeof(held), "%s", oldest) < sizeof(held))
            json_object_del(c->answered, held);
    }
    /* out of memory here only weakens duplicate detection */
    json_object_set_new(c->answered, key, json_true());
}

static lp_err add_pending(lp_mcpc *c, const char *key, json_t *id)
{
    json_t *ids = json_object_get(c->pending, key);

    if (ids == NULL) {
        if ((ids = json_array()) == NULL || json_object_set_new(c->pending, key, ids) != 0)
            return LP_ERR_NOMEM; /* set_new frees ids when it fails */
    }
    if (json_array_append(ids, id) != 0) {
        if (json_array_size(ids) == 0)
            json_object_del(c->pending, key);
        return LP_ERR_NOMEM;
    }
    c->npending++;
    return LP_OK;
}

/* Forgets the oldest request with this key. False when none is pending. */
static bool drop_pending(lp_mcpc *c, const char *key)
{
    json_t *ids = json_object_get(c->pending, key);

    if (ids == NULL)
        return false;
    json_array_remove(ids, 0);
    c->npending--;
    if (json_array_size(ids) == 0)
        json_object_del(c->pending, key);
    return true;
}

/* ---- from the host ------------------------------------------------------------------------ */

/* A request is either forwarded and pending, or answered here: never neither. Out of memory
 * to forward it, the host gets an error for it (which needs far less memory than the
 * request) and may try again; only when even that fails is LP_ERR_NOMEM returned. */
static lp_err host_request(lp_mcpc *c, const struct lp_rpc_msg *m, const uint8_t *line, size_t len)
{
    if (c->npending >= c->max_pending)
        return reply_error(c, m->id, LP_RPC_LIMPET_ERROR,
                           "too many requests in flight (%zu pending, the most allowed)",
                           c->npending);
    if (add_pending(c, m->id_key, m->id) != LP_OK)
        return reply_error(c, m->id, LP_RPC_LIMPET_ERROR,
                           "out of memory; the request was not sent");
    if (put_line(&c->to_tunnel, line, len) != LP_OK) {
        drop_pending(c, m->id_key); /* not forwarded: nothing to wait for */
        return reply_error(c, m->id, LP_RPC_LIMPET_ERROR,
                           "out of memory; the request was not sent");
    }
    return LP_OK;
}

/* notifications/cancelled: the far side should not answer the request any more (MCP), so
 * the host does not wait for it and it must not fill the pending set for good. */
static void host_cancelled(lp_mcpc *c, const struct lp_rpc_msg *m)
{
    json_t *params = json_object_get(m->root, "params");
    char key[sizeof(m->id_key)];

    if (lp_rpc_id_key(json_object_get(params, "requestId"), key, sizeof(key)) == LP_OK)
        drop_pending(c, key);
}

static lp_err host_line(lp_mcpc *c, const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    char why[REASON_MAX - 16];
    lp_err rc;

    /* Out of memory to parse it, its id is unknown: nothing can answer it (the glue gives up) */
    if ((rc = lp_rpc_parse(line, len, &m, why, sizeof(why))) != LP_OK)
        return rc == LP_ERR_NOMEM ? rc : reply_error(c, NULL, LP_RPC_PARSE_ERROR, "%s", why);
    if (m.kind == LP_RPC_REQUEST) {
        rc = host_request(c, &m, line, len);
    } else {
        if (m.kind == LP_RPC_NOTIFICATION && strcmp(m.method, "notifications/cancelled") == 0)
            host_cancelled(c, &m);
        rc = put_line(&c->to_tunnel, line, len);
    }
    lp_rpc_msg_clear(&m);
    return rc;
}

static lp_err host_too_long(lp_mcpc *c)
{
    return reply_error(c, NULL, LP_RPC_PARSE_ERROR,
                       "message longer than mcp.max_message (%zu bytes), not forwarded",
                       c->max_message);
}

static lp_err host_piece(void *user, const uint8_t *line, size_t len)
{
    return line ? host_line(user, line, len) : host_too_long(user);
}

lp_err lp_mcpc_from_host(lp_mcpc *c, const uint8_t *data, size_t n)
{
    return lp_lines_feed(&c->host_lines, data, n, host_piece, c);
}

lp_err lp_mcpc_host_eof(lp_mcpc *c)
{
    const uint8_t *line;
    size_t len;

    if (lp_lines_finish(&c->host_lines, &line, &len) != LP_LINE_OK)
        return LP_OK;
    return host_line(c, line, len);
}

/* ---- from the far side ---------------------------------------------------------------------- */

static lp_err tunnel_line(lp_mcpc *c, const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    lp_err rc = lp_rpc_parse(line, len, &m, NULL, 0);

    if (rc == LP_ERR_NOMEM) /* maybe an answer: it must not be taken for junk */
        return rc;
    /* Not JSON, or not a response: forwarded untouched, the host decides. Not pending: a
     * second response to an answered request is a duplicate and dropped, so the host sees
     * at most one per request; any other is forwarded, since the far side may know of a
     * request we do not. */
    if (rc == LP_OK && m.kind == LP_RPC_RESPONSE && json_object_get(c->pending, m.id_key) == NULL &&
        json_object_get(c->answered, m.id_key) != NULL) {
        lp_rpc_msg_clear(&m);
        return LP_OK;
    }
    /* A request stops being pending only once its answer is queued for the host. */
    if ((rc = put_line(&c->to_host, line, len)) == LP_OK && m.kind == LP_RPC_RESPONSE &&
        drop_pending(c, m.id_key) && json_object_get(c->pending, m.id_key) == NULL)
        remember_answered(c, m.id_key);
    lp_rpc_msg_clear(&m);
    return rc;
}

/* A too-long line from the far side is dropped: it cannot be forwarded whole, and the
 * server side caps the child's lines at the same mcp.max_message already. */
static lp_err tunnel_piece(void *user, const uint8_t *line, size_t len)
{
    return line ? tunnel_line(user, line, len) : LP_OK;
}

lp_err lp_mcpc_from_tunnel(lp_mcpc *c, const uint8_t *data, size_t n)
{
    return lp_lines_feed(&c->tunnel_lines, data, n, tunnel_piece, c);
}

lp_err lp_mcpc_tunnel_eof(lp_mcpc *c)
{
    const uint8_t *line;
    size_t len;

    if (lp_lines_finish(&c->tunnel_lines, &line, &len) != LP_LINE_OK)
        return LP_OK;
    return tunnel_line(c, line, len);
}

/* ---- loss ------------------------------------------------------------------------------------ */

lp_err lp_mcpc_stream_lost(lp_mcpc *c, const char *why)
{
    const char *key;
    char held[ID_KEY_MAX];

    /* Every request in to_tunnel is pending, so dropping the queue and answering the pending
     * set answers those too; notifications and responses in it cannot be delivered. */
    lp_streamq_clear(&c->to_tunnel);
    lp_lines_free(&c->tunnel_lines);
    lp_lines_init(&c->tunnel_lines, c->max_message);
    if (why == NULL)
        why = "the stream to the server was lost";
    while ((key = json_object_iter_key(json_object_iter(c->pending))) != NULL) {
        json_t *ids = json_object_iter_value(json_object_iter(c->pending));
        while (json_array_size(ids) > 0) {
            lp_err rc = reply_error(c, json_array_get(ids, 0), LP_RPC_LIMPET_ERROR, "%s", why);
            if (rc != LP_OK)
                return rc; /* the rest stay pending: a later call can still answer them */
            json_array_remove(ids, 0);
            c->npending--;
        }
        /* a copy: key lives in the pending object, which the del frees */
        snprintf(held, sizeof(held), "%s", key);
        json_object_del(c->pending, held);
        remember_answered(c, held);
    }
    return LP_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

lp_mcpc *lp_mcpc_new(size_t max_message, size_t max_pending)
{
    lp_mcpc *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->max_message = max_message;
    c->max_pending = max_pending;
    c->answered_max = LP_MAX(max_pending, (size_t)ANSWERED_MIN);
    lp_lines_init(&c->host_lines, max_message);
    lp_lines_init(&c->tunnel_lines, max_message);
    lp_streamq_init(&c->to_host);
    lp_streamq_init(&c->to_tunnel);
    c->pending = json_object();
    c->answered = json_object();
    if (c->pending == NULL || c->answered == NULL) {
        lp_mcpc_free(c);
        return NULL;
    }
    return c;
}

void lp_mcpc_free(lp_mcpc *c)
{
    if (c == NULL)
        return;
    lp_lines_free(&c->host_lines);
    lp_lines_free(&c->tunnel_lines);
    lp_streamq_clear(&c->to_host);
    lp_streamq_clear(&c->to_tunnel);
    json_decref(c->pending);
    json_decref(c->answered);
    free(c);
}

struct lp_streamq *lp_mcpc_to_host(lp_mcpc *c)
{
    return &c->to_host;
}

struct lp_streamq *lp_mcpc_to_tunnel(lp_mcpc *c)
{
    return &c->to_tunnel;
}

size_t lp_mcpc_pending(const lp_mcpc *c)
{
    return c->npending;
}
