/* frame.c — the frame codec. See frame.h and docs/PROTOCOL.md section 2.
 *
 * lp_frame_decode judges each header field as soon as the bytes that hold it have arrived, so
 * a stream of garbage (an HTTP probe, a TLS ClientHello on a plain port) is refused after its
 * first byte instead of being buffered up to a claimed length. Only a header that is valid as
 * far as it goes, and whose payload has not all arrived, is LP_ERR_TRUNCATED.
 *
 * Every encoder checks the same rules its decoder enforces, so anything an encoder returns
 * decodes again to the same fields: the fuzz harnesses abort() if that ever fails.
 */
#include "limpet/frame.h"

#include <string.h>

#include "limpet/wire.h"

enum id_rule {
    ID_STREAM, /* names a stream or bind request: must be non-zero */
    ID_LINK,   /* concerns the whole link or session: must be zero */
};

/* The envelope of one frame type: where it lives and which payload sizes can be valid. */
struct frame_rule {
    uint8_t type;
    uint8_t id;       /* enum id_rule */
    uint16_t min_len; /* smallest payload the typed decoder could accept */
    uint16_t max_len; /* largest; min_len == max_len for fixed-size payloads */
    const char *name;
};

#define TEXT_MIN 2u /* code u16 */
#define TEXT_MAX (TEXT_MIN + LP_FRAME_MAX_TEXT)
#define OPEN_FIXED 7u              /* kind u8 | window u32 | target_len u16 */
#define OPEN_MIN (OPEN_FIXED + 1u) /* a target is at least one byte */
#define OPEN_MAX (OPEN_FIXED + 2u * LP_FRAME_MAX_TEXT)
#define HELLO_LEN 64u
#define WELCOME_LEN 68u
#define WELCOME_MAX (WELCOME_LEN + 1u + LP_NODE_ID_MAX) /* with LP_WELCOME_NODE */

static const struct frame_rule rules[] = {
    {LP_FT_OPEN, ID_STREAM, OPEN_MIN, OPEN_MAX, "OPEN"},
    {LP_FT_OPEN_OK, ID_STREAM, 4, 4, "OPEN_OK"},
    {LP_FT_DATA, ID_STREAM, 1, LP_FRAME_MAX_PAYLOAD, "DATA"},
    {LP_FT_WINDOW, ID_STREAM, 4, 4, "WINDOW"},
    {LP_FT_FIN, ID_STREAM, 0, 0, "FIN"},
    {LP_FT_RST, ID_STREAM, TEXT_MIN, TEXT_MAX, "RST"},
    {LP_FT_BIND, ID_STREAM, TEXT_MIN, TEXT_MAX, "BIND"},
    {LP_FT_BIND_OK, ID_STREAM, TEXT_MIN, TEXT_MAX, "BIND_OK"},
    {LP_FT_BIND_FAIL, ID_STREAM, TEXT_MIN, TEXT_MAX, "BIND_FAIL"},
    {LP_FT_GOODBYE, ID_LINK, TEXT_MIN, TEXT_MAX, "GOODBYE"},
    {LP_FT_ACK, ID_LINK, 8, 8, "ACK"},
    {LP_FT_PING, ID_LINK, 8, 8, "PING"},
    {LP_FT_PONG, ID_LINK, 8, 8, "PONG"},
    {LP_FT_HELLO, ID_LINK, HELLO_LEN, HELLO_LEN, "HELLO"},
    {LP_FT_WELCOME, ID_LINK, WELCOME_LEN, WELCOME_MAX, "WELCOME"},
    {LP_FT_REJECT, ID_LINK, TEXT_MIN, TEXT_MAX, "REJECT"},
};

static const struct frame_rule *find_rule(uint8_t type)
{
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (rules[i].type == type)
            return &rules[i];
    }
    return NULL;
}

static int is_text_type(uint8_t type)
{
    const struct frame_rule *rule = find_rule(type);
    return rule && rule->min_len == TEXT_MIN && rule->max_len == TEXT_MAX;
}

static int id_fits(const struct frame_rule *rule, uint32_t id)
{
    return rule->id == ID_STREAM ? id != 0 : id == 0;
}

static lp_err malformed(const char **why, const char *reason)
{
    *why = reason;
    return LP_ERR_MALFORMED;
}

static lp_err check_length(const struct frame_rule *rule, uint16_t plen, const char **why)
{
    if (plen > LP_FRAME_MAX_PAYLOAD)
        return malformed(why, "frame length beyond 16384");
    if (rule->min_len == rule->max_len && plen != rule->min_len)
        return malformed(why, "wrong payload size for a fixed-size frame");
    if (plen < rule->min_len)
        return malformed(why, "payload too short for the frame type");
    if (plen > rule->max_len)
        return malformed(why, "payload too long for the frame type");
    return LP_OK;
}

lp_err lp_frame_decode(const uint8_t *buf, size_t len, struct lp_frame *f, size_t *used,
                       const char **why)
{
    struct lp_rd r = lp_rd_init(buf, len);
    uint8_t type, flags;
    uint16_t plen;
    uint32_t id;
    const struct frame_rule *rule = NULL;
    lp_err rc;

    lp_rd_u8(&r, &type);
    lp_rd_u8(&r, &flags);
    lp_rd_u16(&r, &plen);
    lp_rd_u32(&r, &id);
    /* A field that did not arrive reads as zero, so each is judged only once its bytes are
     * all in (r.len is 0 for a NULL buffer). */
    if (r.len >= 1 && (rule = find_rule(type)) == NULL)
        return malformed(why, "unknown frame type");
    if (r.len >= 2 && flags != 0)
        return malformed(why, "unknown flags");
    if (r.len >= 4 && (rc = check_length(rule, plen, why)) != LP_OK)
        return rc;
    if (r.len >= 8 && !id_fits(rule, id))
        return malformed(why, rule->id == ID_STREAM ? "stream id zero on a stream frame"
                                                    : "non-zero stream id on a link frame");
    const uint8_t *payload = lp_rd_view(&r, plen);
    if (r.bad)
        return LP_ERR_TRUNCATED;
    f->type = type;
    f->flags = flags;
    f->stream_id = id;
    f->payload = payload;
    f->len = plen;
    *used = LP_FRAME_HEADER + plen;
    return LP_OK;
}

void lp_frame_put_header(uint8_t *out, uint8_t type, uint8_t flags, uint16_t len, uint32_t id)
{
    out[0] = type;
    out[1] = flags;
    lp_store_u16(out + 2, len);
    lp_store_u32(out + 4, id);
}

/* ---- typed payloads ------------------------------------------------------------------- */

static int has_nul(const uint8_t *p, size_t n)
{
    return n > 0 && memchr(p, 0, n) != NULL;
}

lp_err lp_open_decode(const struct lp_frame *f, struct lp_open *o, const char **why)
{
    if (f->type != LP_FT_OPEN)
        return malformed(why, "not an OPEN frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);
    uint16_t target_len;

    lp_rd_u8(&r, &o->kind);
    lp_rd_u32(&r, &o->window);
    lp_rd_u16(&r, &target_len);
    o->target_len = target_len;
    o->target = lp_rd_view(&r, target_len);
    o->arg_len = lp_rd_remaining(&r);
    o->arg = lp_rd_view(&r, o->arg_len);
    if (r.bad)
        return malformed(why, "OPEN target runs past the payload");
    if (o->kind < LP_KIND_TCP || o->kind > LP_KIND_REVERSE)
        return malformed(why, "unknown stream kind");
    if (o->window == 0)
        return malformed(why, "zero initial window");
    if (target_len == 0)
        return malformed(why, "empty OPEN target");
    if (target_len > LP_FRAME_MAX_TEXT)
        return malformed(why, "OPEN target longer than 1024");
    if (o->arg_len > LP_FRAME_MAX_TEXT)
        return malformed(why, "OPEN argument longer than 1024");
    if (has_nul(o->target, o->target_len) || has_nul(o->arg, o->arg_len))
        return malformed(why, "NUL in text");
    return LP_OK;
}

lp_err lp_u32_decode(const struct lp_frame *f, uint32_t *v, const char **why)
{
    if (f->type != LP_FT_OPEN_OK && f->type != LP_FT_WINDOW)
        return malformed(why, "not an OPEN_OK or WINDOW frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);

    lp_rd_u32(&r, v);
    if (r.bad || lp_rd_remaining(&r) != 0)
        return malformed(why, "payload is not exactly 4 bytes");
    /* A zero window could never be used; a zero increment is a no-op some peer would
     * otherwise send in a loop. Both are refused so the encoding stays canonical. */
    if (*v == 0)
        return malformed(why,
                         f->type == LP_FT_WINDOW ? "zero window increment" : "zero initial window");
    return LP_OK;
}

lp_err lp_u64_decode(const struct lp_frame *f, uint64_t *v, const char **why)
{
    if (f->type != LP_FT_ACK && f->type != LP_FT_PING && f->type != LP_FT_PONG)
        return malformed(why, "not an ACK, PING or PONG frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);

    lp_rd_u64(&r, v);
    if (r.bad || lp_rd_remaining(&r) != 0)
        return malformed(why, "payload is not exactly 8 bytes");
    return LP_OK;
}

lp_err lp_text_decode(const struct lp_frame *f, struct lp_text *t, const char **why)
{
    if (!is_text_type(f->type))
        return malformed(why, "not a text frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);

    lp_rd_u16(&r, &t->code);
    t->msg_len = lp_rd_remaining(&r);
    t->msg = lp_rd_view(&r, t->msg_len);
    if (r.bad)
        return malformed(why, "text frame shorter than its code");
    if (t->msg_len > LP_FRAME_MAX_TEXT)
        return malformed(why, "message longer than 1024");
    if (has_nul(t->msg, t->msg_len))
        return malformed(why, "NUL in text");
    return LP_OK;
}

lp_err lp_hello_decode(const struct lp_frame *f, struct lp_hello *h, const char **why)
{
    if (f->type != LP_FT_HELLO)
        return malformed(why, "not a HELLO frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);

    lp_rd_u32(&r, &h->magic);
    lp_rd_u16(&r, &h->version);
    lp_rd_u16(&r, &h->flags);
    lp_rd_bytes(&r, h->session_id, sizeof(h->session_id));
    lp_rd_bytes(&r, h->token, sizeof(h->token));
    lp_rd_u64(&r, &h->rx_seq);
    if (r.bad || lp_rd_remaining(&r) != 0)
        return malformed(why, "HELLO payload is not exactly 64 bytes");
    /* The version is deliberately not judged here: the server answers a version it does
     * not speak with REJECT VERSION, which it can only do after decoding it. */
    if (h->magic != LP_PROTO_MAGIC)
        return malformed(why, "bad magic");
    return LP_OK;
}

bool lp_node_id_ok(const uint8_t *id, size_t n)
{
    if (id == NULL || n == 0 || n > LP_NODE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

lp_err lp_welcome_decode(const struct lp_frame *f, struct lp_welcome *w, const char **why)
{
    if (f->type != LP_FT_WELCOME)
        return malformed(why, "not a WELCOME frame");
    struct lp_rd r = lp_rd_init(f->payload, f->len);
    uint8_t node_len = 0;

    lp_rd_u16(&r, &w->version);
    lp_rd_u16(&r, &w->flags);
    lp_rd_bytes(&r, w->session_id, sizeof(w->session_id));
    lp_rd_bytes(&r, w->token, sizeof(w->token));
    lp_rd_u64(&r, &w->rx_seq);
    lp_rd_u32(&r, &w->heartbeat_ms);
    lp_rd_u32(&r, &w->dead_after_ms);
    w->node = NULL;
    w->node_len = 0;
    if (r.bad)
        return malformed(why, "WELCOME payload shorter than 68 bytes");
    if (!(w->flags & LP_WELCOME_NODE)) {
        /* Without the flag the payload is exactly the 68 bytes of version 1's first layout,
         * so a peer that never asked for the node id sees nothing new. */
        if (lp_rd_remaining(&r) != 0)
            return malformed(why, "WELCOME payload is not exactly 68 bytes");
        return LP_OK;
    }
    lp_rd_u8(&r, &node_len);
    w->node = lp_rd_view(&r, node_len);
    if (r.bad || lp_rd_remaining(&r) != 0)
        return malformed(why, "WELCOME node id does not fill the payload");
    if (!lp_node_id_ok(w->node, node_len))
        return malformed(why, "WELCOME node id is not 1..63 of [a-z0-9-]");
    w->node_len = node_len;
    return LP_OK;
}

/* ---- encoders ------------------------------------------------------------------------- */

/* Starts a frame of payload size plen. The callers have checked plen against the type's
 * rule, so the u16 cast cannot truncate. */
static void put_header(struct lp_wr *w, uint8_t type, size_t plen, uint32_t id)
{
    lp_wr_u8(w, type);
    lp_wr_u8(w, 0); /* version 1 defines no flags */
    lp_wr_u16(w, (uint16_t)plen);
    lp_wr_u32(w, id);
}

static size_t finish(const struct lp_wr *w)
{
    return w->bad ? 0 : w->off;
}

size_t lp_open_encode(uint8_t *out, size_t cap, uint32_t id, const struct lp_open *o)
{
    if (id == 0 || o->kind < LP_KIND_TCP || o->kind > LP_KIND_REVERSE || o->window == 0)
        return 0;
    if (o->target_len == 0 || o->target_len > LP_FRAME_MAX_TEXT || o->arg_len > LP_FRAME_MAX_TEXT)
        return 0;
    if (o->target == NULL || (o->arg_len > 0 && o->arg == NULL))
        return 0;
    if (has_nul(o->target, o->target_len) || has_nul(o->arg, o->arg_len))
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, LP_FT_OPEN, OPEN_FIXED + o->target_len + o->arg_len, id);
    lp_wr_u8(&w, o->kind);
    lp_wr_u32(&w, o->window);
    lp_wr_u16(&w, (uint16_t)o->target_len);
    lp_wr_bytes(&w, o->target, o->target_len);
    lp_wr_bytes(&w, o->arg, o->arg_len);
    return finish(&w);
}

size_t lp_u32_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint32_t v)
{
    if ((type != LP_FT_OPEN_OK && type != LP_FT_WINDOW) || id == 0 || v == 0)
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, type, 4, id);
    lp_wr_u32(&w, v);
    return finish(&w);
}

size_t lp_u64_encode(uint8_t *out, size_t cap, uint8_t type, uint64_t v)
{
    if (type != LP_FT_ACK && type != LP_FT_PING && type != LP_FT_PONG)
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, type, 8, 0);
    lp_wr_u64(&w, v);
    return finish(&w);
}

size_t lp_text_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint16_t code,
                      const char *msg, size_t msg_len)
{
    if (!is_text_type(type) || !id_fits(find_rule(type), id))
        return 0;
    if (msg_len > LP_FRAME_MAX_TEXT || (msg_len > 0 && msg == NULL) ||
        has_nul((const uint8_t *)msg, msg_len))
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, type, TEXT_MIN + msg_len, id);
    lp_wr_u16(&w, code);
    lp_wr_bytes(&w, msg, msg_len);
    return finish(&w);
}

size_t lp_empty_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id)
{
    if (type != LP_FT_FIN || id == 0)
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, type, 0, id);
    return finish(&w);
}

size_t lp_data_encode(uint8_t *out, size_t cap, uint32_t id, const uint8_t *data, size_t n)
{
    /* Empty DATA is malformed: it would cost a frame and a sequence range for nothing. */
    if (id == 0 || n == 0 || n > LP_FRAME_MAX_PAYLOAD || data == NULL)
        return 0;
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, LP_FT_DATA, n, id);
    lp_wr_bytes(&w, data, n);
    return finish(&w);
}

/* h->magic is not read: every HELLO carries LP_PROTO_MAGIC, so a caller that leaves the
 * field zero still sends a frame the peer accepts. */
size_t lp_hello_encode(uint8_t *out, size_t cap, const struct lp_hello *h)
{
    struct lp_wr w = lp_wr_init(out, cap);

    put_header(&w, LP_FT_HELLO, HELLO_LEN, 0);
    lp_wr_u32(&w, LP_PROTO_MAGIC);
    lp_wr_u16(&w, h->version);
    lp_wr_u16(&w, h->flags);
    lp_wr_bytes(&w, h->session_id, sizeof(h->session_id));
    lp_wr_bytes(&w, h->token, sizeof(h->token));
    lp_wr_u64(&w, h->rx_seq);
    return finish(&w);
}

size_t lp_welcome_encode(uint8_t *out, size_t cap, const struct lp_welcome *w)
{
    struct lp_wr wr = lp_wr_init(out, cap);
    bool with_node = (w->flags & LP_WELCOME_NODE) != 0;

    if (with_node && !lp_node_id_ok(w->node, w->node_len))
        return 0;
    put_header(&wr, LP_FT_WELCOME, WELCOME_LEN + (with_node ? 1u + w->node_len : 0u), 0);
    lp_wr_u16(&wr, w->version);
    lp_wr_u16(&wr, w->flags);
    lp_wr_bytes(&wr, w->session_id, sizeof(w->session_id));
    lp_wr_bytes(&wr, w->token, sizeof(w->token));
    lp_wr_u64(&wr, w->rx_seq);
    lp_wr_u32(&wr, w->heartbeat_ms);
    lp_wr_u32(&wr, w->dead_after_ms);
    if (with_node) {
        lp_wr_u8(&wr, (uint8_t)w->node_len);
        lp_wr_bytes(&wr, w->node, w->node_len);
    }
    return finish(&wr);
}

/* ---- names ---------------------------------------------------------------------------- */

const char *lp_frame_type_name(uint8_t type)
{
    const struct frame_rule *rule = find_rule(type);
    return rule ? rule->name : "?";
}

static const char *const rst_names[] = {
    [LP_RST_REFUSED] = "REFUSED",
    [LP_RST_UNREACHABLE] = "UNREACHABLE",
    [LP_RST_NOT_ALLOWED] = "NOT_ALLOWED",
    [LP_RST_TIMEOUT] = "TIMEOUT",
    [LP_RST_RESET] = "RESET",
    [LP_RST_PROTOCOL] = "PROTOCOL",
    [LP_RST_SESSION_LOST] = "SESSION_LOST",
    [LP_RST_LIMIT] = "LIMIT",
    [LP_RST_INTERNAL] = "INTERNAL",
    [LP_RST_SHUTDOWN] = "SHUTDOWN",
    [LP_RST_BAD_TARGET] = "BAD_TARGET",
    [LP_RST_EXITED] = "EXITED",
    [LP_RST_UNAVAILABLE] = "UNAVAILABLE",
};

static const char *const reject_names[] = {
    [LP_REJECT_VERSION] = "VERSION",
    [LP_REJECT_SESSION_UNKNOWN] = "SESSION_UNKNOWN",
    [LP_REJECT_SEQ_OUT_OF_RANGE] = "SEQ_OUT_OF_RANGE",
    [LP_REJECT_AUTH] = "AUTH",
    [LP_REJECT_LIMIT] = "LIMIT",
    [LP_REJECT_PROTOCOL] = "PROTOCOL",
    [LP_REJECT_SHUTDOWN] = "SHUTDOWN",
};

/* Codes come off the wire, so any u16 may arrive: gaps and values past the table are "?". */
static const char *code_name(const char *const *names, size_t count, uint16_t code)
{
    return code < count && names[code] ? names[code] : "?";
}

const char *lp_rst_code_name(uint16_t code)
{
    return code_name(rst_names, sizeof(rst_names) / sizeof(rst_names[0]), code);
}

const char *lp_reject_code_name(uint16_t code)
{
    return code_name(reject_names, sizeof(reject_names) / sizeof(reject_names[0]), code);
}
