/* mcproute.c — JSON-RPC routing between one MCP server child and its attachments.
 * See mcproute.h; the header comment is the specification.
 *
 * State is a few small arrays scanned linearly: they are bounded by max_inflight or by the
 * fixed caps below, and a linear scan of a few hundred short keys costs less than the JSON
 * parse that precedes every lookup.
 */
#include "limpet/mcproute.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/jsonrpc.h"
#include "mcproute_internal.h"

#define GONE_REASON "client went away"

/* ---- small containers --------------------------------------------------------------- */

/* Makes room for one more element of size elem in *p, doubling up to max elements. */
static bool grow(void **p, size_t *cap, size_t n, size_t elem, size_t max)
{
    size_t ncap = *cap > 0 ? *cap * 2 : 8;
    void *np;

    if (n < *cap)
        return true;
    if (n >= max)
        return false;
    if (ncap > max)
        ncap = max;
    if ((np = realloc(*p, ncap * elem)) == NULL)
        return false;
    *p = np;
    *cap = ncap;
    return true;
}

/* ---- output ----------------------------------------------------------------------------- */

/* Queues the original bytes of a line plus '\n'. */
static lp_err send_raw(lp_mcproute *r, uint64_t dest, const void *bytes, size_t len)
{
    struct line *ln = mr_line_copy(dest, bytes, len, true);

    if (ln == NULL)
        return LP_ERR_NOMEM;
    mr_fifo_push(&r->out, ln);
    return LP_OK;
}

/* Queues a line that already ends in '\n' (from lp_rpc_*), taking it; NULL means no memory. */
static lp_err send_owned(lp_mcproute *r, uint64_t dest, char *text, size_t len)
{
    struct line *ln = mr_line_take(dest, text, len);

    if (ln == NULL)
        return LP_ERR_NOMEM;
    mr_fifo_push(&r->out, ln);
    return LP_OK;
}

static lp_err send_json(lp_mcproute *r, uint64_t dest, const json_t *root)
{
    size_t len;
    char *text = lp_rpc_encode(root, &len);

    return send_owned(r, dest, text, len);
}

static lp_err send_error(lp_mcproute *r, uint64_t dest, const json_t *id, const char *message)
{
    size_t len;
    char *text = lp_rpc_error_line(id, LP_RPC_LIMPET_ERROR, message, &len);

    return send_owned(r, dest, text, len);
}

static lp_err send_result(lp_mcproute *r, uint64_t dest, const json_t *id, const json_t *result)
{
    size_t len;
    char *text = lp_rpc_result_line(id, result, &len);

    return send_owned(r, dest, text, len);
}

static lp_err send_notification(lp_mcproute *r, const char *method, const json_t *params)
{
    size_t len;
    char *text = lp_rpc_notification_line(method, params, &len);

    return send_owned(r, LP_MCPROUTE_CHILD, text, len);
}

static lp_err broadcast(lp_mcproute *r, const uint8_t *line, size_t len)
{
    for (size_t i = 0; i < r->natts; i++) {
        lp_err rc = send_raw(r, r->atts[i], line, len);
        if (rc != LP_OK)
            return rc;
    }
    return LP_OK;
}

/* ---- lookups ------------------------------------------------------------------------- */

static size_t att_index(const lp_mcproute *r, uint64_t att)
{
    for (size_t i = 0; i < r->natts; i++)
        if (r->atts[i] == att)
            return i;
    return SIZE_MAX;
}

static struct flight *flight_by_child_key(lp_mcproute *r, const char *key)
{
    for (size_t i = 0; i < r->nfl; i++)
        if (strcmp(r->fl[i].child_key, key) == 0)
            return &r->fl[i];
    return NULL;
}

static struct flight *flight_by_token(lp_mcproute *r, const char *key)
{
    for (size_t i = 0; i < r->nfl; i++)
        if (r->fl[i].token_key[0] != '\0' && strcmp(r->fl[i].token_key, key) == 0)
            return &r->fl[i];
    return NULL;
}

static struct flight *flight_of_host(lp_mcproute *r, uint64_t att, const char *host_key)
{
    for (size_t i = 0; i < r->nfl; i++) {
        struct flight *f = &r->fl[i];
        if (!f->orphan && f->att == att && strcmp(f->host_key, host_key) == 0)
            return f;
    }
    return NULL;
}

static size_t s2c_index(const lp_mcproute *r, const char *key)
{
    for (size_t i = 0; i < r->ns2c; i++)
        if (strcmp(r->s2c[i].key, key) == 0)
            return i;
    return SIZE_MAX;
}

static void s2c_remove(lp_mcproute *r, size_t i)
{
    r->s2c[i] = r->s2c[--r->ns2c];
}

static void flight_remove(lp_mcproute *r, struct flight *f)
{
    json_decref(f->host_id);
    json_decref(f->host_token);
    if (f->orphan)
        r->orphans--;
    else
        r->live--;
    *f = r->fl[--r->nfl];
}

/* An orphan's answer will be dropped; a cancelled or abandoned request may never be answered,
 * so beyond max_inflight orphans the oldest is forgotten (never the initialize, whose answer
 * is still cached). */
static void flight_orphan(lp_mcproute *r, struct flight *f)
{
    if (f->orphan)
        return;
    f->orphan = true;
    r->live--;
    r->orphans++;
}

static void trim_orphans(lp_mcproute *r)
{
    while (r->orphans > r->max_inflight) {
        struct flight *oldest = NULL;
        for (size_t i = 0; i < r->nfl; i++) {
            struct flight *f = &r->fl[i];
            if (f->orphan && !f->is_init && (oldest == NULL || f->age < oldest->age))
                oldest = f;
        }
        if (oldest == NULL)
            return;
        flight_remove(r, oldest);
    }
}

/* The id (or token) a key was made from. Returns owned, NULL when out of memory. */
static json_t *key_value(const char *key)
{
    return json_loads(key, JSON_DECODE_ANY, NULL);
}

/* A fresh "lp-N" whose key no flight uses as an id (token: as a progress token). */
static json_t *fresh_value(lp_mcproute *r, bool token, char *key)
{
    /* Each N is tried once and each flight can refuse one N, so this ends within nfl + 1. */
    for (size_t tries = 0; tries <= r->nfl; tries++) {
        char text[32];
        json_t *v;
        snprintf(text, sizeof(text), "lp-%" PRIu64, ++r->fresh);
        if ((v = json_string(text)) == NULL)
            return NULL;
        if (lp_rpc_id_key(v, key, KEY_LEN) == LP_OK &&
            (token ? flight_by_token(r, key) : flight_by_child_key(r, key)) == NULL)
            return v;
        json_decref(v);
    }
    return NULL;
}

/* ---- host → child ------------------------------------------------------------------------ */

static lp_err host_line(lp_mcproute *r, uint64_t att, const uint8_t *line, size_t len);

/* Gives a new flight a child-side progress token: the host's own when no flight uses it, else
 * a fresh one written into the message. Sets *changed when the message was modified. */
static lp_err map_token(lp_mcproute *r, struct flight *f, json_t *root, bool *changed)
{
    json_t *meta = json_object_get(json_object_get(root, "params"), "_meta");
    json_t *token = json_object_get(meta, "progressToken");
    json_t *fresh;

    if (lp_rpc_id_key(token, f->token_key, sizeof(f->token_key)) != LP_OK)
        return LP_OK; /* none, or not one we can key: passed through untouched */
    if (flight_by_token(r, f->token_key) == NULL)
        return LP_OK;
    if ((fresh = fresh_value(r, true, f->token_key)) == NULL)
        return LP_ERR_NOMEM;
    f->host_token = json_incref(token);
    if (json_object_set_new(meta, "progressToken", fresh) != 0)
        return LP_ERR_NOMEM;
    *changed = true;
    return LP_OK;
}

/* The same for the request id. */
static lp_err map_id(lp_mcproute *r, struct flight *f, struct lp_rpc_msg *m, bool *changed)
{
    json_t *fresh;

    memcpy(f->child_key, m->id_key, KEY_LEN);
    memcpy(f->host_key, m->id_key, KEY_LEN);
    if (flight_by_child_key(r, m->id_key) == NULL)
        return LP_OK;
    if ((fresh = fresh_value(r, false, f->child_key)) == NULL)
        return LP_ERR_NOMEM;
    f->host_id = json_incref(m->id);
    if (json_object_set_new(m->root, "id", fresh) != 0)
        return LP_ERR_NOMEM;
    m->id = NULL; /* released with the old value */
    *changed = true;
    return LP_OK;
}

/* Sends a host request to the child, renaming its id and progress token when another flight
 * uses them. The flight is only recorded once the line is queued. */
static lp_err forward_request(lp_mcproute *r, uint64_t att, struct lp_rpc_msg *m,
                              const uint8_t *line, size_t len, bool is_init)
{
    struct flight f = {.att = att, .is_init = is_init};
    bool changed = false;
    lp_err rc;

    if (r->live >= r->max_inflight)
        return send_error(r, att, m->id, "too many requests in flight");
    if (!grow((void **)&r->fl, &r->fl_cap, r->nfl, sizeof(*r->fl), 2 * r->max_inflight + 1))
        return LP_ERR_NOMEM;
    if ((rc = map_id(r, &f, m, &changed)) != LP_OK)
        goto out;
    if ((rc = map_token(r, &f, m->root, &changed)) != LP_OK)
        goto out;
    rc = changed ? send_json(r, LP_MCPROUTE_CHILD, m->root)
                 : send_raw(r, LP_MCPROUTE_CHILD, line, len);
    if (rc != LP_OK)
        goto out;
    f.age = ++r->age;
    r->fl[r->nfl++] = f;
    r->live++;
    return LP_OK;
out:
    json_decref(f.host_id);
    json_decref(f.host_token);
    return rc;
}

/* A queue of held lines takes one while it has fewer than max lines and the line fits in
 * max_held bytes beside the others; an empty queue takes any line, so no line is refused
 * for its length alone (the glue bounds that, by mcp.max_message). */
static lp_err save_line(struct fifo *q, size_t max, size_t max_held, uint64_t att,
                        const uint8_t *line, size_t len)
{
    struct line *ln;

    if (q->count >= max || (q->count > 0 && (q->bytes >= max_held || len > max_held - q->bytes)))
        return LP_ERR_NOSPACE;
    if ((ln = mr_line_copy(att, line, len, false)) == NULL)
        return LP_ERR_NOMEM;
    mr_fifo_push(q, ln);
    return LP_OK;
}

/* initialize (2025 era): the child sees one per life; the others are answered from the first
 * one's cached result, or wait for it. */
static lp_err host_initialize(lp_mcproute *r, uint64_t att, struct lp_rpc_msg *m,
                              const uint8_t *line, size_t len)
{
    lp_err rc;

    if (r->init_result != NULL)
        return send_result(r, att, m->id, r->init_result);
    if (r->init_inflight) {
        rc = save_line(&r->waiting, r->max_inflight, r->max_held, att, line, len);
        return rc == LP_ERR_NOSPACE ? send_error(r, att, m->id, "too many requests in flight") : rc;
    }
    json_t *req = json_incref(m->root); /* kept whole: it is replayed to a fresh child */
    size_t before = r->nfl;
    if ((rc = forward_request(r, att, m, line, len, true)) != LP_OK || r->nfl == before) {
        json_decref(req); /* out of memory, or refused with an error (too many in flight) */
        return rc;
    }
    json_decref(r->init_pending);
    r->init_pending = req;
    r->init_inflight = true;
    r->init_sent = true;
    return LP_OK;
}

/* notifications/cancelled from a host names the id it used; the child knows it by another.
 * A request the host cancelled is not answered by a server that honours it, so its flight
 * becomes an orphan. A cancellation matching none of this host's requests is dropped: it
 * would otherwise cancel another host's request that happens to share the id. */
static lp_err host_cancel(lp_mcproute *r, uint64_t att, struct lp_rpc_msg *m, const uint8_t *line,
                          size_t len)
{
    json_t *params = json_object_get(m->root, "params");
    char key[KEY_LEN];
    struct flight *f;
    json_t *child_id;
    lp_err rc;

    if (lp_rpc_id_key(json_object_get(params, "requestId"), key, sizeof(key)) != LP_OK ||
        (f = flight_of_host(r, att, key)) == NULL)
        return LP_OK;
    if (strcmp(f->child_key, f->host_key) == 0) {
        rc = send_raw(r, LP_MCPROUTE_CHILD, line, len);
    } else if ((child_id = key_value(f->child_key)) == NULL ||
               json_object_set_new(params, "requestId", child_id) != 0) {
        rc = LP_ERR_NOMEM;
    } else {
        rc = send_json(r, LP_MCPROUTE_CHILD, m->root);
    }
    if (rc == LP_OK) {
        flight_orphan(r, f);
        trim_orphans(r);
    }
    return rc;
}

static lp_err host_notification(lp_mcproute *r, uint64_t att, struct lp_rpc_msg *m,
                                const uint8_t *line, size_t len)
{
    if (strcmp(m->method, "notifications/initialized") == 0) {
        if (r->initialized_sent)
            return LP_OK;
        r->initialized_sent = true;
    } else if (strcmp(m->method, "notifications/cancelled") == 0) {
        return host_cancel(r, att, m, line, len);
    }
    return send_raw(r, LP_MCPROUTE_CHILD, line, len);
}

static lp_err host_line(lp_mcproute *r, uint64_t att, const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    size_t i;
    lp_err rc;

    /* Not JSON: passed on as it is. Out of memory: not passed on as junk, since a request
     * would then go unrecorded and its answer be dropped. */
    if ((rc = lp_rpc_parse(line, len, &m, NULL, 0)) != LP_OK)
        return rc == LP_ERR_NOMEM ? rc : send_raw(r, LP_MCPROUTE_CHILD, line, len);
    switch (m.kind) {
    case LP_RPC_REQUEST:
        rc = strcmp(m.method, "initialize") == 0 ? host_initialize(r, att, &m, line, len)
                                                 : forward_request(r, att, &m, line, len, false);
        break;
    case LP_RPC_NOTIFICATION:
        rc = host_notification(r, att, &m, line, len);
        break;
    case LP_RPC_RESPONSE:
        /* The answer to a child's request goes back unchanged; one that answers nothing
         * the child asked of this host is passed on too: limpet is not a validator. */
        if ((i = s2c_index(r, m.id_key)) != SIZE_MAX && r->s2c[i].att == att)
            s2c_remove(r, i);
        rc = send_raw(r, LP_MCPROUTE_CHILD, line, len);
        break;
    case LP_RPC_OTHER:
    default:
        rc = send_raw(r, LP_MCPROUTE_CHILD, line, len);
        break;
    }
    lp_rpc_msg_clear(&m);
    return rc;
}

/* Runs saved lines again as if they arrived now, in order. */
static lp_err rerun(lp_mcproute *r, struct fifo *q)
{
    struct fifo batch = *q;
    struct line *ln;
    lp_err rc = LP_OK;

    *q = (struct fifo){0};
    while ((ln = mr_fifo_pop(&batch)) != NULL) {
        lp_err one = host_line(r, ln->dest, (const uint8_t *)ln->bytes, ln->len);
        if (rc == LP_OK)
            rc = one;
        mr_line_free(ln);
    }
    return rc;
}

/* ---- child → host ----------------------------------------------------------------------- */

/* The answer to the life's first initialize: a result is cached (with its request, for a
 * fresh child); then the initializes that waited run again and meet the cache, or, after an
 * error, the first of them goes to the child in its turn. */
static lp_err init_answered(lp_mcproute *r, const json_t *root)
{
    json_t *result = json_object_get(root, "result");

    r->init_inflight = false;
    if (result != NULL) {
        json_decref(r->init_result);
        json_decref(r->init_req);
        r->init_result = json_incref(result);
        r->init_req = r->init_pending;
        r->init_pending = NULL;
    } else {
        json_decref(r->init_pending);
        r->init_pending = NULL;
    }
    return rerun(r, &r->waiting);
}

/* A fresh child answered the replayed initialize: the host never asked, so the answer is
 * swallowed; then the handshake is finished and the lines that waited go through. */
static lp_err replay_done(lp_mcproute *r, const json_t *root)
{
    json_t *result = json_object_get(root, "result");
    lp_err rc = LP_OK;

    r->life = LIFE_UP;
    r->replay_key[0] = '\0';
    if (result != NULL) {
        json_decref(r->init_result);
        r->init_result = json_incref(result);
        r->initialized_sent = true;
        rc = send_notification(r, "notifications/initialized", NULL);
    }
    lp_err held = rerun(r, &r->held);
    return rc != LP_OK ? rc : held;
}

static lp_err child_response(lp_mcproute *r, struct lp_rpc_msg *m, const uint8_t *line, size_t len)
{
    struct flight *f;
    bool is_init;
    lp_err rc = LP_OK;

    if (r->life == LIFE_REPLAYING && strcmp(m->id_key, r->replay_key) == 0)
        return replay_done(r, m->root);
    if ((f = flight_by_child_key(r, m->id_key)) == NULL)
        return LP_OK; /* answers nothing in flight (a forgotten orphan): nobody takes it */
    is_init = f->is_init;
    if (!f->orphan && f->host_id == NULL) {
        rc = send_raw(r, f->att, line, len);
    } else if (!f->orphan) {
        if (json_object_set(m->root, "id", f->host_id) != 0)
            rc = LP_ERR_NOMEM;
        else
            rc = send_json(r, f->att, m->root);
    }
    flight_remove(r, f);
    if (is_init) {
        lp_err init = init_answered(r, m->root);
        rc = rc != LP_OK ? rc : init;
    }
    return rc;
}

/* A request from the child (sampling, elicitation, roots, ping) goes to the attachment that
 * came last: the one most likely to have a live host behind it. */
static lp_err child_request(lp_mcproute *r, struct lp_rpc_msg *m, const uint8_t *line, size_t len)
{
    uint64_t att;

    if (r->natts == 0)
        return send_error(r, LP_MCPROUTE_CHILD, m->id, "no client attached");
    if (!grow((void **)&r->s2c, &r->s2c_cap, r->ns2c, sizeof(*r->s2c), S2C_MAX))
        return r->ns2c >= S2C_MAX
                   ? send_error(r, LP_MCPROUTE_CHILD, m->id, "too many requests in flight")
                   : LP_ERR_NOMEM;
    att = r->atts[r->natts - 1];
    if (send_raw(r, att, line, len) != LP_OK)
        return LP_ERR_NOMEM;
    r->s2c[r->ns2c].att = att;
    memcpy(r->s2c[r->ns2c].key, m->id_key, KEY_LEN);
    r->ns2c++;
    return LP_OK;
}

/* notifications/progress goes to the host whose request carries the token, with the token
 * it chose; one for a token no live request carries is dropped (hosts treat an unknown
 * token as an error). */
static lp_err child_progress(lp_mcproute *r, struct lp_rpc_msg *m, const uint8_t *line, size_t len)
{
    json_t *params = json_object_get(m->root, "params");
    char key[KEY_LEN];
    struct flight *f;

    if (lp_rpc_id_key(json_object_get(params, "progressToken"), key, sizeof(key)) != LP_OK ||
        (f = flight_by_token(r, key)) == NULL || f->orphan)
        return LP_OK;
    if (f->host_token == NULL)
        return send_raw(r, f->att, line, len);
    if (json_object_set(params, "progressToken", f->host_token) != 0)
        return LP_ERR_NOMEM;
    return send_json(r, f->att, m->root);
}

/* notifications/cancelled from the child withdraws one of its own requests: it goes to the
 * host that was asked, who will not answer now. */
static lp_err child_cancel(lp_mcproute *r, struct lp_rpc_msg *m, const uint8_t *line, size_t len)
{
    json_t *params = json_object_get(m->root, "params");
    char key[KEY_LEN];
    size_t i;
    lp_err rc;

    if (lp_rpc_id_key(json_object_get(params, "requestId"), key, sizeof(key)) != LP_OK ||
        (i = s2c_index(r, key)) == SIZE_MAX)
        return LP_OK;
    if ((rc = send_raw(r, r->s2c[i].att, line, len)) == LP_OK)
        s2c_remove(r, i);
    return rc;
}

/* ---- public ------------------------------------------------------------------------------ */

lp_mcproute *lp_mcproute_new(size_t max_inflight, size_t max_held)
{
    lp_mcproute *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    /* Keeps 2 * max_inflight + 1 (live, orphans, the initialize) from overflowing. */
    r->max_inflight = max_inflight < SIZE_MAX / 4 / sizeof(struct flight)
                          ? max_inflight
                          : SIZE_MAX / 4 / sizeof(struct flight);
    r->max_held = max_held;
    r->life = LIFE_UP;
    return r;
}

static void forget_flights(lp_mcproute *r)
{
    for (size_t i = 0; i < r->nfl; i++) {
        json_decref(r->fl[i].host_id);
        json_decref(r->fl[i].host_token);
    }
    r->nfl = r->live = r->orphans = 0;
}

void lp_mcproute_free(lp_mcproute *r)
{
    if (r == NULL)
        return;
    forget_flights(r);
    free(r->fl);
    free(r->s2c);
    free(r->atts);
    mr_fifo_clear(&r->out);
    mr_fifo_clear(&r->held);
    mr_fifo_clear(&r->waiting);
    json_decref(r->init_req);
    json_decref(r->init_result);
    json_decref(r->init_pending);
    free(r);
}

lp_err lp_mcproute_attach(lp_mcproute *r, uint64_t att)
{
    size_t i;

    if (att == LP_MCPROUTE_CHILD)
        return LP_ERR_INVALID;
    /* Attaching again only makes it the most recent: the glue may repeat itself. */
    if ((i = att_index(r, att)) != SIZE_MAX) {
        memmove(&r->atts[i], &r->atts[i + 1], (r->natts - i - 1) * sizeof(*r->atts));
        r->atts[r->natts - 1] = att;
        return LP_OK;
    }
    if (!grow((void **)&r->atts, &r->atts_cap, r->natts, sizeof(*r->atts), LP_MCPROUTE_ATT_MAX))
        return r->natts >= LP_MCPROUTE_ATT_MAX ? LP_ERR_NOSPACE : LP_ERR_NOMEM;
    r->atts[r->natts++] = att;
    return LP_OK;
}

/* The child's requests to a host that left are answered with an error at once, so the
 * child does not wait for an answer that cannot come. */
static lp_err fail_s2c_of(lp_mcproute *r, uint64_t att)
{
    lp_err rc = LP_OK;

    for (size_t i = 0; i < r->ns2c;) {
        json_t *id;
        if (r->s2c[i].att != att) {
            i++;
            continue;
        }
        if ((id = key_value(r->s2c[i].key)) == NULL ||
            send_error(r, LP_MCPROUTE_CHILD, id, GONE_REASON) != LP_OK)
            rc = LP_ERR_NOMEM;
        json_decref(id);
        s2c_remove(r, i);
    }
    return rc;
}

static lp_err cancel_flights_of(lp_mcproute *r, uint64_t att)
{
    lp_err rc = LP_OK;

    for (size_t i = 0; i < r->nfl; i++) {
        struct flight *f = &r->fl[i];
        json_t *params;
        if (f->att != att || f->orphan)
            continue;
        flight_orphan(r, f);
        if (f->is_init)
            continue; /* MCP forbids cancelling initialize; its answer is still cached */
        params =
            json_pack("{s:o,s:s}", "requestId", key_value(f->child_key), "reason", GONE_REASON);
        if (params == NULL || send_notification(r, "notifications/cancelled", params) != LP_OK)
            rc = LP_ERR_NOMEM;
        json_decref(params);
    }
    trim_orphans(r);
    return rc;
}

lp_err lp_mcproute_detach(lp_mcproute *r, uint64_t att)
{
    size_t i = att_index(r, att);
    lp_err rc, s2c;

    if (i == SIZE_MAX)
        return LP_ERR_NOT_FOUND;
    memmove(&r->atts[i], &r->atts[i + 1], (r->natts - i - 1) * sizeof(*r->atts));
    r->natts--;
    rc = cancel_flights_of(r, att);
    s2c = fail_s2c_of(r, att);
    mr_fifo_drop(&r->waiting, att);
    mr_fifo_drop(&r->held, att);
    mr_fifo_drop(&r->out, att); /* nobody will read them */
    return rc != LP_OK ? rc : s2c;
}

/* Keeps a host line until a fresh child is initialized. Past HELD_MAX lines or max_held
 * bytes (the glue did not heed queued()) a request is refused with an error, so its host
 * does not wait forever, and anything else is dropped. */
static lp_err hold_line(lp_mcproute *r, uint64_t att, const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    lp_err rc = save_line(&r->held, HELD_MAX, r->max_held, att, line, len);

    if (rc != LP_ERR_NOSPACE)
        return rc;
    if ((rc = lp_rpc_parse(line, len, &m, NULL, 0)) != LP_OK)
        return rc == LP_ERR_NOMEM ? rc : LP_OK;
    rc = m.kind == LP_RPC_REQUEST ? send_error(r, att, m.id, "too many requests in flight") : LP_OK;
    lp_rpc_msg_clear(&m);
    return rc;
}

lp_err lp_mcproute_from_att(lp_mcproute *r, uint64_t att, const uint8_t *line, size_t len)
{
    if (att_index(r, att) == SIZE_MAX)
        return LP_ERR_NOT_FOUND;
    /* Until a fresh child has been initialized from the cache, host lines wait, in order. */
    if (r->life == LIFE_REPLAYING || (r->life == LIFE_DOWN && r->init_result != NULL))
        return hold_line(r, att, line, len);
    return host_line(r, att, line, len);
}

lp_err lp_mcproute_from_child(lp_mcproute *r, const uint8_t *line, size_t len)
{
    struct lp_rpc_msg m;
    lp_err rc;

    if ((rc = lp_rpc_parse(line, len, &m, NULL, 0)) != LP_OK)
        return rc == LP_ERR_NOMEM ? rc : broadcast(r, line, len);
    switch (m.kind) {
    case LP_RPC_RESPONSE:
        rc = child_response(r, &m, line, len);
        break;
    case LP_RPC_REQUEST:
        rc = child_request(r, &m, line, len);
        break;
    case LP_RPC_NOTIFICATION:
        if (strcmp(m.method, "notifications/progress") == 0)
            rc = child_progress(r, &m, line, len);
        else if (strcmp(m.method, "notifications/cancelled") == 0)
            rc = child_cancel(r, &m, line, len);
        else
            rc = broadcast(r, line, len);
        break;
    case LP_RPC_OTHER:
    default:
        rc = broadcast(r, line, len);
        break;
    }
    lp_rpc_msg_clear(&m);
    return rc;
}

void lp_mcproute_child_exited(lp_mcproute *r)
{
    forget_flights(r);
    r->ns2c = 0;
    r->natts = 0;
    mr_fifo_clear(&r->waiting);
    mr_fifo_clear(&r->held);
    /* Lines for the dead child must not reach the next one; lines for the hosts stay, for
     * the glue to deliver before it resets their streams. */
    mr_fifo_drop(&r->out, LP_MCPROUTE_CHILD);
    json_decref(r->init_pending);
    r->init_pending = NULL;
    r->init_inflight = false;
    r->init_sent = false;
    r->initialized_sent = false;
    r->replay_key[0] = '\0';
    r->life = LIFE_DOWN;
}

lp_err lp_mcproute_child_started(lp_mcproute *r)
{
    json_t *req, *id;
    char text[40];

    r->init_sent = false;
    r->initialized_sent = false;
    r->init_inflight = false;
    r->replay_key[0] = '\0';
    if (r->init_req == NULL || r->init_result == NULL) {
        r->life = LIFE_UP;
        return rerun(r, &r->held);
    }
    snprintf(text, sizeof(text), "lp-init-%" PRIu64, ++r->replays);
    if ((req = json_deep_copy(r->init_req)) == NULL || (id = json_string(text)) == NULL ||
        json_object_set_new(req, "id", id) != 0 ||
        lp_rpc_id_key(id, r->replay_key, sizeof(r->replay_key)) != LP_OK ||
        send_json(r, LP_MCPROUTE_CHILD, req) != LP_OK) {
        json_decref(req);
        r->replay_key[0] = '\0';
        return LP_ERR_NOMEM;
    }
    json_decref(req);
    r->life = LIFE_REPLAYING;
    r->init_sent = true;
    return LP_OK;
}

bool lp_mcproute_next(lp_mcproute *r, uint64_t *dest, char **line, size_t *len)
{
    struct line *ln = mr_fifo_pop(&r->out);

    if (ln == NULL)
        return false;
    *dest = ln->dest;
    *len = ln->len;
    *line = ln->bytes;
    free(ln);
    return true;
}

size_t lp_mcproute_inflight(const lp_mcproute *r)
{
    return r->live;
}

size_t lp_mcproute_queued(const lp_mcproute *r)
{
    return r->out.bytes + r->held.bytes;
}

size_t lp_mcproute_memory(const lp_mcproute *r)
{
    return r->out.bytes + r->held.bytes + r->waiting.bytes;
}

bool lp_mcproute_initialized(const lp_mcproute *r)
{
    return r->init_sent;
}
