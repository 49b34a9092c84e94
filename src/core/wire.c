/* wire.c — bounds-checked big-endian cursors. See wire.h. */
#include "limpet/wire.h"

#include <string.h>

uint16_t lp_load_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t lp_load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t lp_load_u64(const uint8_t *p)
{
    return (uint64_t)lp_load_u32(p) << 32 | lp_load_u32(p + 4);
}

void lp_store_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void lp_store_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void lp_store_u64(uint8_t *p, uint64_t v)
{
    lp_store_u32(p, (uint32_t)(v >> 32));
    lp_store_u32(p + 4, (uint32_t)v);
}

struct lp_rd lp_rd_init(const uint8_t *buf, size_t len)
{
    struct lp_rd r = {.p = buf, .len = buf ? len : 0, .off = 0, .bad = false};
    return r;
}

size_t lp_rd_remaining(const struct lp_rd *r)
{
    return r->len - r->off;
}

/* Claims n bytes or marks the reader bad. Written so that off + n cannot wrap. */
static const uint8_t *take(struct lp_rd *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p + r->off;
    r->off += n;
    return at;
}

void lp_rd_u8(struct lp_rd *r, uint8_t *v)
{
    const uint8_t *at = take(r, 1);
    *v = at ? at[0] : 0;
}

void lp_rd_u16(struct lp_rd *r, uint16_t *v)
{
    const uint8_t *at = take(r, 2);
    *v = at ? lp_load_u16(at) : 0;
}

void lp_rd_u32(struct lp_rd *r, uint32_t *v)
{
    const uint8_t *at = take(r, 4);
    *v = at ? lp_load_u32(at) : 0;
}

void lp_rd_u64(struct lp_rd *r, uint64_t *v)
{
    const uint8_t *at = take(r, 8);
    *v = at ? lp_load_u64(at) : 0;
}

void lp_rd_bytes(struct lp_rd *r, uint8_t *out, size_t n)
{
    const uint8_t *at = take(r, n);
    if (at)
        memcpy(out, at, n);
    else if (n)
        memset(out, 0, n);
}

const uint8_t *lp_rd_view(struct lp_rd *r, size_t n)
{
    return take(r, n);
}

struct lp_wr lp_wr_init(uint8_t *buf, size_t cap)
{
    struct lp_wr w = {.p = buf, .cap = buf ? cap : 0, .off = 0, .bad = false};
    return w;
}

static uint8_t *room(struct lp_wr *w, size_t n)
{
    if (w->bad || n > w->cap - w->off) {
        w->bad = true;
        return NULL;
    }
    uint8_t *at = w->p + w->off;
    w->off += n;
    return at;
}

void lp_wr_u8(struct lp_wr *w, uint8_t v)
{
    uint8_t *at = room(w, 1);
    if (at)
        at[0] = v;
}

void lp_wr_u16(struct lp_wr *w, uint16_t v)
{
    uint8_t *at = room(w, 2);
    if (at)
        lp_store_u16(at, v);
}

void lp_wr_u32(struct lp_wr *w, uint32_t v)
{
    uint8_t *at = room(w, 4);
    if (at)
        lp_store_u32(at, v);
}

void lp_wr_u64(struct lp_wr *w, uint64_t v)
{
    uint8_t *at = room(w, 8);
    if (at)
        lp_store_u64(at, v);
}

void lp_wr_bytes(struct lp_wr *w, const void *in, size_t n)
{
    uint8_t *at = room(w, n);
    if (at && n)
        memcpy(at, in, n);
}
