/* mcproute_state.c — one MCP router saved to and loaded from a state file (upgrade in place).
 * See mcproute.h for the contract and docs/PROTOCOL.md ("State file") for the layout.
 *
 * Everything the router knows crosses: attachments in order, requests in flight with both
 * their ids and progress tokens (as the child knows them and as the host sent them), the
 * child's requests waiting for a host, the three line FIFOs (output, held host lines,
 * initializes waiting for the first), the initialize cache and the child's life. JSON values
 * travel as their compact text (jansson keeps key order and prints reals to round-trip), so a
 * loaded router re-encodes exactly the lines the old one would have. max_inflight (and max_held) is the new
 * configuration's.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/state.h"
#include "mcproute_internal.h"

enum {
    RF_INIT_INFLIGHT = 1u << 0,
    RF_INIT_SENT = 1u << 1,
    RF_INITIALIZED_SENT = 1u << 2,
    RF_ALL = (1u << 3) - 1,
};

enum {
    FF_ORPHAN = 1u << 0,
    FF_IS_INIT = 1u << 1,
    FF_ALL = (1u << 2) - 1,
};

#define FLIGHT_MIN 31u /* att, age, flags and five empty lengths */
#define S2C_MIN 10u
#define LINE_MIN 12u
#define JSON_MAX (64u << 20) /* no JSON-RPC message limpet keeps comes near this */

/* ---- saving ------------------------------------------------------------------------------- */

/* A JSON value as its compact text, a zero length for none. */
static void save_json(struct lp_state_wr *w, const json_t *v)
{
    char *text;

    if (v == NULL) {
        lp_state_put_u32(w, 0);
        return;
    }
    if ((text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL) {
        lp_state_wr_fail(w, LP_ERR_NOMEM);
        return;
    }
    lp_state_put_blob(w, text, strlen(text));
    free(text);
}

static void save_key(struct lp_state_wr *w, const char *key)
{
    lp_state_put_text(w, key, strnlen(key, KEY_LEN));
}

static void save_fifo(struct lp_state_wr *w, const struct fifo *q)
{
    lp_state_put_u32(w, (uint32_t)q->count);
    for (const struct line *ln = q->head; ln != NULL; ln = ln->next) {
        lp_state_put_u64(w, ln->dest);
        lp_state_put_blob(w, ln->bytes, ln->len);
    }
}

static void save_flight(struct lp_state_wr *w, const struct flight *f)
{
    lp_state_put_u64(w, f->att);
    lp_state_put_u64(w, f->age);
    lp_state_put_u8(w, (uint8_t)((f->orphan ? FF_ORPHAN : 0) | (f->is_init ? FF_IS_INIT : 0)));
    save_key(w, f->child_key);
    save_key(w, f->host_key);
    save_key(w, f->token_key);
    save_json(w, f->host_id);
    save_json(w, f->host_token);
}

lp_err lp_mcproute_save(const lp_mcproute *r, struct lp_state_wr *w)
{
    lp_state_section_begin(w, LP_STATE_MCPROUTE);
    lp_state_put_u8(w, (uint8_t)r->life);
    lp_state_put_u8(w, (uint8_t)((r->init_inflight ? RF_INIT_INFLIGHT : 0) |
                                 (r->init_sent ? RF_INIT_SENT : 0) |
                                 (r->initialized_sent ? RF_INITIALIZED_SENT : 0)));
    lp_state_put_u64(w, r->age);
    lp_state_put_u64(w, r->fresh);
    lp_state_put_u64(w, r->replays);
    save_key(w, r->replay_key);
    lp_state_put_u32(w, (uint32_t)r->natts);
    for (size_t i = 0; i < r->natts; i++)
        lp_state_put_u64(w, r->atts[i]);
    lp_state_put_u32(w, (uint32_t)r->nfl);
    for (size_t i = 0; i < r->nfl; i++)
        save_flight(w, &r->fl[i]);
    lp_state_put_u32(w, (uint32_t)r->ns2c);
    for (size_t i = 0; i < r->ns2c; i++) {
        lp_state_put_u64(w, r->s2c[i].att);
        save_key(w, r->s2c[i].key);
    }
    save_fifo(w, &r->out);
    save_fifo(w, &r->held);
    save_fifo(w, &r->waiting);
    save_json(w, r->init_req);
    save_json(w, r->init_result);
    save_json(w, r->init_pending);
    lp_state_section_end(w);
    return w->err;
}

/* ---- loading -------------------------------------------------------------------------------- */

static json_t *load_json(struct lp_state_rd *rd, const char *what, bool object)
{
    size_t n;
    const uint8_t *text = lp_state_blob(rd, JSON_MAX, &n);
    json_error_t jerr;
    json_t *v;

    if (lp_state_err(rd) != LP_OK || n == 0)
        return NULL;
    if ((v = json_loadb((const char *)text, n, JSON_DECODE_ANY, &jerr)) == NULL) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "%s is not JSON: %s", what, jerr.text);
        return NULL;
    }
    if (object && !json_is_object(v)) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "%s is not a JSON object", what);
        json_decref(v);
        return NULL;
    }
    return v;
}

static void load_atts(struct lp_state_rd *rd, lp_mcproute *r)
{
    size_t n = lp_state_count(rd, 8, ATT_MAX, "attachments");

    if (lp_state_err(rd) != LP_OK || n == 0)
        return;
    if ((r->atts = calloc(n, sizeof(*r->atts))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    r->atts_cap = n;
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        uint64_t att = lp_state_u64(rd);
        for (size_t j = 0; j < r->natts; j++)
            if (r->atts[j] == att)
                att = LP_MCPROUTE_CHILD; /* named twice: refused below */
        if (lp_state_err(rd) == LP_OK && att == LP_MCPROUTE_CHILD)
            lp_state_fail(rd, LP_ERR_MALFORMED, "attachment %zu is 0 or named twice", i);
        else
            r->atts[r->natts++] = att;
    }
}

static void load_flight(struct lp_state_rd *rd, lp_mcproute *r)
{
    struct flight *f = &r->fl[r->nfl];
    uint8_t flags;

    memset(f, 0, sizeof(*f));
    f->att = lp_state_u64(rd);
    f->age = lp_state_u64(rd);
    flags = lp_state_u8(rd);
    lp_state_cstr(rd, f->child_key, sizeof(f->child_key), "a request's id");
    lp_state_cstr(rd, f->host_key, sizeof(f->host_key), "a request's host id");
    lp_state_cstr(rd, f->token_key, sizeof(f->token_key), "a progress token");
    f->host_id = load_json(rd, "a host's request id", false);
    f->host_token = load_json(rd, "a host's progress token", false);
    r->nfl++; /* from here on the router frees its JSON */
    if (lp_state_err(rd) == LP_OK && (flags & ~(unsigned)FF_ALL))
        lp_state_fail(rd, LP_ERR_MALFORMED, "request flags 0x%02x", (unsigned)flags);
    f->orphan = (flags & FF_ORPHAN) != 0;
    f->is_init = (flags & FF_IS_INIT) != 0;
    if (f->orphan)
        r->orphans++;
    else
        r->live++;
}

static void load_flights(struct lp_state_rd *rd, lp_mcproute *r)
{
    size_t n = lp_state_count(rd, FLIGHT_MIN, SIZE_MAX / sizeof(struct flight) / 4, "requests");

    if (lp_state_err(rd) != LP_OK || n == 0)
        return;
    if ((r->fl = calloc(n, sizeof(*r->fl))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    r->fl_cap = n;
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++)
        load_flight(rd, r);
}

static void load_s2c(struct lp_state_rd *rd, lp_mcproute *r)
{
    size_t n = lp_state_count(rd, S2C_MIN, S2C_MAX, "child requests");

    if (lp_state_err(rd) != LP_OK || n == 0)
        return;
    if ((r->s2c = calloc(n, sizeof(*r->s2c))) == NULL) {
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
        return;
    }
    r->s2c_cap = n;
    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        r->s2c[i].att = lp_state_u64(rd);
        lp_state_cstr(rd, r->s2c[i].key, sizeof(r->s2c[i].key), "a child request's id");
        if (lp_state_err(rd) == LP_OK)
            r->ns2c++;
    }
}

/* Output lines end with '\n' (the glue writes them as they are); held ones never do. */
static void load_fifo(struct lp_state_rd *rd, struct fifo *q, bool output, const char *what)
{
    size_t n = lp_state_count(rd, LINE_MIN, SIZE_MAX, what);

    for (size_t i = 0; i < n && lp_state_err(rd) == LP_OK; i++) {
        uint64_t dest = lp_state_u64(rd);
        size_t len;
        const uint8_t *bytes = lp_state_blob(rd, SIZE_MAX - 1, &len);
        struct line *ln;
        if (lp_state_err(rd) != LP_OK)
            return;
        if (output && (len == 0 || bytes[len - 1] != '\n')) {
            lp_state_fail(rd, LP_ERR_MALFORMED, "%s: a line without its newline", what);
            return;
        }
        if ((ln = mr_line_copy(dest, len ? bytes : (const uint8_t *)"", len, false)) == NULL) {
            lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
            return;
        }
        mr_fifo_push(q, ln);
    }
}

static void load_head(struct lp_state_rd *rd, lp_mcproute *r)
{
    uint8_t life = lp_state_u8(rd);
    uint8_t flags = lp_state_u8(rd);

    r->age = lp_state_u64(rd);
    r->fresh = lp_state_u64(rd);
    r->replays = lp_state_u64(rd);
    lp_state_cstr(rd, r->replay_key, sizeof(r->replay_key), "the replayed initialize's id");
    if (lp_state_err(rd) == LP_OK && (life > LIFE_REPLAYING || (flags & ~(unsigned)RF_ALL)))
        lp_state_fail(rd, LP_ERR_MALFORMED, "life %u, flags 0x%02x", (unsigned)life,
                      (unsigned)flags);
    r->life = (enum life)(life <= LIFE_REPLAYING ? life : LIFE_UP);
    r->init_inflight = (flags & RF_INIT_INFLIGHT) != 0;
    r->init_sent = (flags & RF_INIT_SENT) != 0;
    r->initialized_sent = (flags & RF_INITIALIZED_SENT) != 0;
}

lp_err lp_mcproute_load(struct lp_state_rd *rd, size_t max_inflight, size_t max_held,
                        lp_mcproute **rp)
{
    struct lp_state_mark mark;
    lp_mcproute *r = NULL;

    *rp = NULL;
    lp_state_enter(rd, LP_STATE_MCPROUTE, &mark);
    if (lp_state_err(rd) == LP_OK && (r = lp_mcproute_new(max_inflight, max_held)) == NULL)
        lp_state_fail(rd, LP_ERR_NOMEM, "out of memory");
    if (r != NULL) {
        load_head(rd, r);
        load_atts(rd, r);
        load_flights(rd, r);
        load_s2c(rd, r);
        load_fifo(rd, &r->out, true, "output lines");
        load_fifo(rd, &r->held, false, "held lines");
        load_fifo(rd, &r->waiting, false, "waiting initializes");
        r->init_req = load_json(rd, "the cached initialize", true);
        r->init_result = load_json(rd, "the cached initialize result", false);
        r->init_pending = load_json(rd, "the initialize in flight", true);
    }
    lp_state_leave(rd, &mark);
    if (lp_state_err(rd) != LP_OK) {
        lp_mcproute_free(r);
        return lp_state_err(rd);
    }
    *rp = r;
    return LP_OK;
}
