/* state.c — the state file's container: a growing writer and a checked reader. See state.h
 * and docs/PROTOCOL.md ("State file (upgrade in place)").
 *
 * Both sides stand on wire.h's cursors: the writer keeps a struct lp_wr over its own buffer
 * and grows the buffer before each write, so a write never fails for want of room below the
 * cap; the reader narrows its struct lp_rd to the innermost open section, so a field that
 * runs past its section fails there, however long the file goes on.
 */
#include "limpet/state.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WR_FIRST_CAP 4096u

const char *lp_state_tag_name(uint16_t tag)
{
    switch (tag) {
    case LP_STATE_PIPE:
        return "pipe";
    case LP_STATE_MUX:
        return "mux";
    case LP_STATE_MCPPOOL:
        return "mcp pool";
    case LP_STATE_MCPROUTE:
        return "mcp router";
    default:
        return tag >= LP_STATE_GLUE_FIRST && tag <= LP_STATE_GLUE_LAST ? "glue" : "unknown";
    }
}

bool lp_state_reads(uint16_t version)
{
    return version == LP_STATE_VERSION;
}

/* ---- time ------------------------------------------------------------------------------- */

uint64_t lp_state_age(lp_time now, lp_time then)
{
    return then < now ? now - then : 0;
}

lp_time lp_state_since(lp_time now, uint64_t age)
{
    return age < now ? now - age : 0;
}

uint64_t lp_state_left(lp_time now, lp_time due)
{
    if (due == LP_TIME_NEVER)
        return LP_TIME_NEVER;
    return due > now ? due - now : 0;
}

lp_time lp_state_due(lp_time now, uint64_t left)
{
    return left > LP_TIME_NEVER - now ? LP_TIME_NEVER : now + left;
}

/* ---- writing ------------------------------------------------------------------------------ */

void lp_state_wr_init(struct lp_state_wr *w, size_t max)
{
    memset(w, 0, sizeof(*w));
    w->w = lp_wr_init(NULL, 0);
    w->max = max;
}

void lp_state_wr_clear(struct lp_state_wr *w)
{
    if (w->w.p != NULL)
        explicit_bzero(w->w.p, w->w.cap); /* resume tokens, replayed bytes */
    free(w->w.p);
    lp_state_wr_init(w, w->max);
}

void lp_state_wr_fail(struct lp_state_wr *w, lp_err rc)
{
    if (w->err == LP_OK)
        w->err = rc;
    w->w.bad = true;
}

/* Grows the buffer so n more bytes fit. The old buffer is wiped, not just realloc'ed: it may
 * hold a token already. */
static bool room(struct lp_state_wr *w, size_t n)
{
    size_t need, cap;
    uint8_t *nb;

    if (w->err != LP_OK)
        return false;
    if (n <= w->w.cap - w->w.off)
        return true;
    if (n > w->max - w->w.off) {
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
        return false;
    }
    need = w->w.off + n;
    cap = w->w.cap ? w->w.cap : WR_FIRST_CAP;
    while (cap < need)
        cap = cap > w->max / 2 ? w->max : cap * 2;
    cap = LP_MIN(cap, w->max);
    if ((nb = malloc(cap)) == NULL) {
        lp_state_wr_fail(w, LP_ERR_NOMEM);
        return false;
    }
    if (w->w.off > 0)
        memcpy(nb, w->w.p, w->w.off);
    if (w->w.p != NULL)
        explicit_bzero(w->w.p, w->w.cap);
    free(w->w.p);
    w->w.p = nb;
    w->w.cap = cap;
    return true;
}

void lp_state_put_u8(struct lp_state_wr *w, uint8_t v)
{
    if (room(w, 1))
        lp_wr_u8(&w->w, v);
}

void lp_state_put_u16(struct lp_state_wr *w, uint16_t v)
{
    if (room(w, 2))
        lp_wr_u16(&w->w, v);
}

void lp_state_put_u32(struct lp_state_wr *w, uint32_t v)
{
    if (room(w, 4))
        lp_wr_u32(&w->w, v);
}

void lp_state_put_u64(struct lp_state_wr *w, uint64_t v)
{
    if (room(w, 8))
        lp_wr_u64(&w->w, v);
}

void lp_state_put_bytes(struct lp_state_wr *w, const void *p, size_t n)
{
    if (n > 0 && room(w, n))
        lp_wr_bytes(&w->w, p, n);
}

void lp_state_put_text(struct lp_state_wr *w, const void *p, size_t n)
{
    if (n > UINT16_MAX) {
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
        return;
    }
    lp_state_put_u16(w, (uint16_t)n);
    lp_state_put_bytes(w, p, n);
}

void lp_state_put_blob(struct lp_state_wr *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
        return;
    }
    lp_state_put_u32(w, (uint32_t)n);
    lp_state_put_bytes(w, p, n);
}

void lp_state_begin(struct lp_state_wr *w)
{
    if (w->w.off != 0 || w->header) {
        lp_state_wr_fail(w, LP_ERR_STATE); /* a header goes first, once */
        return;
    }
    w->header = true;
    lp_state_put_u32(w, LP_STATE_MAGIC);
    lp_state_put_u16(w, LP_STATE_VERSION);
    lp_state_put_u16(w, 0);
    lp_state_put_u64(w, 0); /* body_len, filled in by lp_state_finish */
}

void lp_state_section_begin(struct lp_state_wr *w, uint16_t tag)
{
    if (w->depth == LP_STATE_DEPTH) {
        lp_state_wr_fail(w, LP_ERR_STATE);
        return;
    }
    lp_state_put_u16(w, tag);
    w->open[w->depth++] = w->w.off;
    lp_state_put_u32(w, 0); /* len, filled in by lp_state_section_end */
}

void lp_state_section_end(struct lp_state_wr *w)
{
    size_t at, len;

    if (w->depth == 0) {
        lp_state_wr_fail(w, LP_ERR_STATE);
        return;
    }
    at = w->open[--w->depth];
    if (w->err != LP_OK)
        return;
    len = w->w.off - at - 4;
    if (len > UINT32_MAX) {
        lp_state_wr_fail(w, LP_ERR_TOO_BIG);
        return;
    }
    lp_store_u32(w->w.p + at, (uint32_t)len);
}

lp_err lp_state_finish(struct lp_state_wr *w, const uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (w->depth != 0)
        lp_state_wr_fail(w, LP_ERR_STATE);
    if (w->err != LP_OK)
        return w->err;
    if (w->header)
        lp_store_u64(w->w.p + 8, (uint64_t)(w->w.off - LP_STATE_HEADER));
    *out = w->w.p;
    *len = w->w.off;
    return LP_OK;
}

/* ---- reading ------------------------------------------------------------------------------- */

void lp_state_rd_init(struct lp_state_rd *rd, const uint8_t *buf, size_t len)
{
    memset(rd, 0, sizeof(*rd));
    rd->r = lp_rd_init(buf, len);
}

void lp_state_fail(struct lp_state_rd *rd, lp_err rc, const char *fmt, ...)
{
    char msg[LP_STATE_WHY_MAX];
    va_list ap;
    size_t n;

    if (rd->err != LP_OK)
        return;
    rd->err = rc;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    /* The section first, then as much of the message as fits. */
    n = 0;
    if (rd->tag != 0) {
        int k = snprintf(rd->why, sizeof(rd->why), "section 0x%04x (%s): ", (unsigned)rd->tag,
                         lp_state_tag_name(rd->tag));
        n = k > 0 ? LP_MIN((size_t)k, sizeof(rd->why) - 1) : 0;
    }
    snprintf(rd->why + n, sizeof(rd->why) - n, "%s", msg);
    /* Names in a reason come from the file: no control byte may reach a log line. */
    n = strlen(rd->why);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)rd->why[i] < 0x20 || rd->why[i] == 0x7f)
            rd->why[i] = '?';
}

/* A read ran past the end of the innermost section (or the file). */
static void check_overrun(struct lp_state_rd *rd)
{
    if (rd->r.bad && rd->err == LP_OK)
        lp_state_fail(rd, LP_ERR_TRUNCATED, "the state ends inside a field");
}

lp_err lp_state_open(struct lp_state_rd *rd, const uint8_t *buf, size_t len)
{
    uint32_t magic;
    uint16_t version, flags;
    uint64_t body;
    size_t left;

    lp_state_rd_init(rd, buf, len);
    if (len < LP_STATE_HEADER) {
        lp_state_fail(rd, LP_ERR_TRUNCATED, "the state file is %zu bytes, shorter than its header",
                      len);
        return rd->err;
    }
    lp_rd_u32(&rd->r, &magic);
    lp_rd_u16(&rd->r, &version);
    lp_rd_u16(&rd->r, &flags);
    lp_rd_u64(&rd->r, &body);
    left = lp_rd_remaining(&rd->r);
    if (magic != LP_STATE_MAGIC)
        lp_state_fail(rd, LP_ERR_MALFORMED, "not a limpet state file (magic 0x%08" PRIx32 ")",
                      magic);
    else if (!lp_state_reads(version))
        lp_state_fail(rd, LP_ERR_VERSION, "state file version %u, this binary reads %u",
                      (unsigned)version, (unsigned)LP_STATE_VERSION);
    else if (flags != 0)
        lp_state_fail(rd, LP_ERR_MALFORMED, "unknown state file flags 0x%04x", (unsigned)flags);
    else if (body > left)
        lp_state_fail(rd, LP_ERR_TRUNCATED,
                      "the state file ends after %zu of its %" PRIu64 " bytes", left, body);
    else if (body < left)
        lp_state_fail(rd, LP_ERR_MALFORMED, "%zu bytes follow the state file's end",
                      left - (size_t)body);
    return rd->err;
}

bool lp_state_at_end(const struct lp_state_rd *rd)
{
    return lp_rd_remaining(&rd->r) == 0;
}

bool lp_state_peek_tag(struct lp_state_rd *rd, uint16_t *tag)
{
    struct lp_rd c = rd->r;
    uint16_t v;

    if (rd->err != LP_OK || lp_rd_remaining(&c) == 0)
        return false;
    lp_rd_u16(&c, &v);
    if (c.bad)
        return false;
    *tag = v;
    return true;
}

void lp_state_enter(struct lp_state_rd *rd, uint16_t tag, struct lp_state_mark *mark)
{
    uint16_t found;
    uint32_t len;

    mark->outer_len = rd->r.len;
    mark->outer_tag = rd->tag;
    mark->outer_depth = rd->depth;
    if (rd->err != LP_OK)
        return;
    if (lp_rd_remaining(&rd->r) == 0) {
        lp_state_fail(rd, LP_ERR_TRUNCATED, "the state ends where section 0x%04x (%s) was due",
                      (unsigned)tag, lp_state_tag_name(tag));
        return;
    }
    found = lp_state_u16(rd);
    len = lp_state_u32(rd);
    if (rd->err != LP_OK)
        return;
    if (found != tag) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "section 0x%04x (%s) where 0x%04x (%s) was due",
                      (unsigned)found, lp_state_tag_name(found), (unsigned)tag,
                      lp_state_tag_name(tag));
        return;
    }
    if (len > lp_rd_remaining(&rd->r)) {
        lp_state_fail(rd, LP_ERR_TRUNCATED,
                      "section 0x%04x (%s) of %" PRIu32 " bytes, only %zu remain", (unsigned)tag,
                      lp_state_tag_name(tag), len, lp_rd_remaining(&rd->r));
        return;
    }
    if (rd->depth == LP_STATE_DEPTH) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "sections nest deeper than %u",
                      (unsigned)LP_STATE_DEPTH);
        return;
    }
    rd->r.len = rd->r.off + len;
    rd->tag = tag;
    rd->depth++;
}

void lp_state_leave(struct lp_state_rd *rd, const struct lp_state_mark *mark)
{
    if (rd->err == LP_OK && rd->depth > mark->outer_depth && lp_rd_remaining(&rd->r) > 0)
        lp_state_fail(rd, LP_ERR_MALFORMED,
                      "%zu bytes left over at the end: a layout this binary does not know",
                      lp_rd_remaining(&rd->r));
    rd->r.len = mark->outer_len;
    rd->tag = mark->outer_tag;
    rd->depth = mark->outer_depth;
}

void lp_state_skip(struct lp_state_rd *rd)
{
    uint32_t len;

    (void)lp_state_u16(rd);
    len = lp_state_u32(rd);
    if (rd->err != LP_OK)
        return;
    if (lp_rd_view(&rd->r, len) == NULL)
        lp_state_fail(rd, LP_ERR_TRUNCATED, "a section of %" PRIu32 " bytes, only %zu remain", len,
                      lp_rd_remaining(&rd->r));
}

uint8_t lp_state_u8(struct lp_state_rd *rd)
{
    uint8_t v = 0;

    if (rd->err == LP_OK) {
        lp_rd_u8(&rd->r, &v);
        check_overrun(rd);
    }
    return rd->err == LP_OK ? v : 0;
}

uint16_t lp_state_u16(struct lp_state_rd *rd)
{
    uint16_t v = 0;

    if (rd->err == LP_OK) {
        lp_rd_u16(&rd->r, &v);
        check_overrun(rd);
    }
    return rd->err == LP_OK ? v : 0;
}

uint32_t lp_state_u32(struct lp_state_rd *rd)
{
    uint32_t v = 0;

    if (rd->err == LP_OK) {
        lp_rd_u32(&rd->r, &v);
        check_overrun(rd);
    }
    return rd->err == LP_OK ? v : 0;
}

uint64_t lp_state_u64(struct lp_state_rd *rd)
{
    uint64_t v = 0;

    if (rd->err == LP_OK) {
        lp_rd_u64(&rd->r, &v);
        check_overrun(rd);
    }
    return rd->err == LP_OK ? v : 0;
}

void lp_state_bytes(struct lp_state_rd *rd, void *out, size_t n)
{
    if (rd->err == LP_OK) {
        lp_rd_bytes(&rd->r, out, n);
        check_overrun(rd);
    }
    if (rd->err != LP_OK && n > 0)
        memset(out, 0, n);
}

static const uint8_t *view(struct lp_state_rd *rd, size_t len, size_t max, size_t *n)
{
    const uint8_t *p;

    *n = 0;
    if (rd->err != LP_OK)
        return NULL;
    if (len > max) {
        lp_state_fail(rd, LP_ERR_TOO_BIG, "a field of %zu bytes where at most %zu fit", len, max);
        return NULL;
    }
    p = lp_rd_view(&rd->r, len);
    check_overrun(rd);
    if (rd->err != LP_OK)
        return NULL;
    *n = len;
    return len > 0 ? p : NULL;
}

const uint8_t *lp_state_text(struct lp_state_rd *rd, size_t max, size_t *n)
{
    uint16_t len = lp_state_u16(rd);

    return view(rd, len, max, n);
}

const uint8_t *lp_state_blob(struct lp_state_rd *rd, size_t max, size_t *n)
{
    uint32_t len = lp_state_u32(rd);

    return view(rd, len, max, n);
}

void lp_state_cstr(struct lp_state_rd *rd, char *out, size_t cap, const char *what)
{
    size_t n;
    const uint8_t *p = lp_state_text(rd, cap > 0 ? cap - 1 : 0, &n);

    if (cap == 0)
        return;
    out[0] = '\0';
    if (rd->err != LP_OK)
        return;
    if (n > 0 && memchr(p, 0, n) != NULL) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "%s holds a NUL byte", what);
        return;
    }
    if (n > 0)
        memcpy(out, p, n);
    out[n] = '\0';
}

size_t lp_state_count(struct lp_state_rd *rd, size_t min_size, size_t max, const char *what)
{
    uint32_t n = lp_state_u32(rd);

    if (rd->err != LP_OK)
        return 0;
    if (n > max) {
        lp_state_fail(rd, LP_ERR_MALFORMED, "%" PRIu32 " %s, at most %zu", n, what, max);
        return 0;
    }
    if (min_size > 0 && n > lp_rd_remaining(&rd->r) / min_size) {
        lp_state_fail(rd, LP_ERR_TRUNCATED, "%" PRIu32 " %s cannot fit in the %zu bytes left", n,
                      what, lp_rd_remaining(&rd->r));
        return 0;
    }
    return n;
}
