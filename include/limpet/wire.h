/* wire.h — bounds-checked cursors over byte buffers, network byte order.
 *
 * The only code in limpet that touches raw wire pointers. A reader carries a sticky error:
 * read every field straight through, then check `r.bad` once before acting on any of them.
 * Reads past the end yield zeros and set `bad`; they never touch memory beyond the buffer.
 */
#ifndef LIMPET_WIRE_H
#define LIMPET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_rd {
    const uint8_t *p; /* borrowed: the caller's buffer */
    size_t len;       /* bytes in the buffer */
    size_t off;       /* next byte to read; off <= len always */
    bool bad;         /* sticky: a read ran past the end */
};

struct lp_wr {
    uint8_t *p; /* borrowed: the caller's buffer */
    size_t cap; /* its size */
    size_t off; /* bytes written so far; off <= cap always */
    bool bad;   /* sticky: a write did not fit (nothing partial was written) */
};

struct lp_rd lp_rd_init(const uint8_t *buf, size_t len);
void lp_rd_u8(struct lp_rd *r, uint8_t *v);
void lp_rd_u16(struct lp_rd *r, uint16_t *v);
void lp_rd_u32(struct lp_rd *r, uint32_t *v);
void lp_rd_u64(struct lp_rd *r, uint64_t *v);
/* Copies n bytes into out. */
void lp_rd_bytes(struct lp_rd *r, uint8_t *out, size_t n);
/* Returns a borrowed pointer to the next n bytes (valid as long as the buffer), or NULL
 * (and sets bad) if fewer remain. */
const uint8_t *lp_rd_view(struct lp_rd *r, size_t n);
size_t lp_rd_remaining(const struct lp_rd *r);

struct lp_wr lp_wr_init(uint8_t *buf, size_t cap);
void lp_wr_u8(struct lp_wr *w, uint8_t v);
void lp_wr_u16(struct lp_wr *w, uint16_t v);
void lp_wr_u32(struct lp_wr *w, uint32_t v);
void lp_wr_u64(struct lp_wr *w, uint64_t v);
void lp_wr_bytes(struct lp_wr *w, const void *in, size_t n);

/* Plain big-endian loads/stores on a buffer the caller has already bounds-checked. */
uint16_t lp_load_u16(const uint8_t *p);
uint32_t lp_load_u32(const uint8_t *p);
uint64_t lp_load_u64(const uint8_t *p);
void lp_store_u16(uint8_t *p, uint16_t v);
void lp_store_u32(uint8_t *p, uint32_t v);
void lp_store_u64(uint8_t *p, uint64_t v);

#endif
