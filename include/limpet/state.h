/* state.h — the state file: what the server hands to its successor when it upgrades in place.
 *
 * Sans-I/O. Each core saves its own state into a writer and loads it from a reader
 * (lp_pipe_save / lp_pipe_load and the like); this module is the container they share:
 *
 *     file    = header section*
 *     header  = magic "LPST" u32 | version u16 | flags u16 (0) | body_len u64
 *     section = tag u16 | len u32 | body[len]          (big-endian; a body may hold sections)
 *
 * docs/PROTOCOL.md ("State file (upgrade in place)") has every byte. The version covers the
 * layout of every section: any change to any of them is a new version, and a binary reads
 * only the versions it knows (LP_STATE_VERSION), refusing any other whole, with the reason.
 *
 * The writer grows up to a hard cap. The reader is a bounds-checked cursor with a sticky
 * error, like wire.h's: read fields straight through, check lp_state_err() once before
 * acting on them. Every refusal carries a reason a person can read in rd->why, naming the
 * section it happened in. A loader builds nothing it does not free again on refusal, so a
 * state is taken whole or not at all.
 */
#ifndef LIMPET_STATE_H
#define LIMPET_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/base.h"
#include "limpet/err.h"
#include "limpet/wire.h"

#define LP_STATE_MAGIC 0x4C505354u /* "LPST" */
#define LP_STATE_VERSION 1u        /* the one layout this binary writes and reads */
#define LP_STATE_HEADER 16u        /* magic, version, flags, body_len */
#define LP_STATE_SECTION_HEADER 6u /* tag, len */
#define LP_STATE_DEPTH 8u          /* sections nest at most this deep */
#define LP_STATE_WHY_MAX 200u

/* Section tags. 0x0001..0x00FF belong to the cores, 0x0100..0x01FF to the server's glue
 * (sessions, listeners, MCP children); every other tag is unknown to this version. */
enum lp_state_tag {
    LP_STATE_PIPE = 0x0001,     /* one lp_pipe (pipe_state.c) */
    LP_STATE_MUX = 0x0002,      /* one lp_mux, loaded onto its pipe (mux_state.c) */
    LP_STATE_MCPPOOL = 0x0003,  /* the MCP pool (mcp_state.c) */
    LP_STATE_MCPROUTE = 0x0004, /* one MCP router (mcp_state.c) */
    LP_STATE_GLUE_FIRST = 0x0100,
    LP_STATE_GLUE_LAST = 0x01FF,
};

/* "pipe", "mux", ... or "glue" / "unknown": for reasons in logs. */
const char *lp_state_tag_name(uint16_t tag);

/* True for the versions this binary reads (today LP_STATE_VERSION alone): what
 * `--check-upgrade` reports, so the old process execs only a binary that can read its state. */
bool lp_state_reads(uint16_t version);

/* ---- writing ------------------------------------------------------------------------------ */

struct lp_state_wr {
    struct lp_wr w;              /* over the owned, growing buffer: w.p, w.cap, w.off */
    size_t max;                  /* the buffer never grows past this */
    lp_err err;                  /* sticky: the first failure (NOMEM, TOO_BIG, STATE) */
    size_t open[LP_STATE_DEPTH]; /* offsets of the open sections' len fields */
    size_t depth;
    bool header; /* lp_state_begin wrote a file header at offset 0 */
};

/* An empty writer that will hold at most max bytes. Holds no memory yet. */
void lp_state_wr_init(struct lp_state_wr *w, size_t max);
/* Wipes (it holds resume tokens) and frees the buffer; the writer may be initialised again. */
void lp_state_wr_clear(struct lp_state_wr *w);

/* Writes the file header; lp_state_finish fills in its length. */
void lp_state_begin(struct lp_state_wr *w);
/* Closes the file: every section must be closed. Returns the first error of the whole write,
 * or LP_OK with *out (borrowed until lp_state_wr_clear) and *len. */
LP_MUST_USE lp_err lp_state_finish(struct lp_state_wr *w, const uint8_t **out, size_t *len);

/* Opens a section (its length is filled in by lp_state_section_end) / closes the innermost. */
void lp_state_section_begin(struct lp_state_wr *w, uint16_t tag);
void lp_state_section_end(struct lp_state_wr *w);

void lp_state_put_u8(struct lp_state_wr *w, uint8_t v);
void lp_state_put_u16(struct lp_state_wr *w, uint16_t v);
void lp_state_put_u32(struct lp_state_wr *w, uint32_t v);
void lp_state_put_u64(struct lp_state_wr *w, uint64_t v);
void lp_state_put_bytes(struct lp_state_wr *w, const void *p, size_t n);
/* len u16 | bytes: a text of at most 65535 bytes (longer ones fail the writer: LP_ERR_TOO_BIG). */
void lp_state_put_text(struct lp_state_wr *w, const void *p, size_t n);
/* len u32 | bytes. */
void lp_state_put_blob(struct lp_state_wr *w, const void *p, size_t n);
/* Records a failure of the caller's own (the first one sticks). */
void lp_state_wr_fail(struct lp_state_wr *w, lp_err rc);

/* ---- reading ------------------------------------------------------------------------------- */

struct lp_state_rd {
    struct lp_rd r; /* r.len is the end of the innermost open section */
    uint16_t tag;   /* the innermost open section, 0 at file level */
    size_t depth;
    lp_err err;                 /* sticky: the first failure */
    char why[LP_STATE_WHY_MAX]; /* its reason, "" while err is LP_OK */
};

/* Where lp_state_enter left the enclosing section, for lp_state_leave. */
struct lp_state_mark {
    size_t outer_len;
    size_t outer_depth;
    uint16_t outer_tag;
};

/* A reader over a whole file (buf borrowed for the reader's life): checks the header.
 * LP_ERR_TRUNCATED for a short file, LP_ERR_MALFORMED for another magic or bytes after the
 * body, LP_ERR_VERSION for a version this binary does not read; the reason is in rd->why. */
LP_MUST_USE lp_err lp_state_open(struct lp_state_rd *rd, const uint8_t *buf, size_t len);
/* A reader over bare sections, no header (a core's save on its own, as the unit tests do). */
void lp_state_rd_init(struct lp_state_rd *rd, const uint8_t *buf, size_t len);

/* True when the innermost section (or the file) has no bytes left. */
bool lp_state_at_end(const struct lp_state_rd *rd);
/* The tag of the next section without consuming it; false (nothing set) at the end or after
 * an error. */
bool lp_state_peek_tag(struct lp_state_rd *rd, uint16_t *tag);
/* Opens the next section, which must carry `tag` (else LP_ERR_MALFORMED naming both) and fit
 * in what is left (else LP_ERR_TRUNCATED). Reads stop at its end until lp_state_leave. */
void lp_state_enter(struct lp_state_rd *rd, uint16_t tag, struct lp_state_mark *mark);
/* Closes it: every byte of the section must have been read (else LP_ERR_MALFORMED: a layout
 * this binary does not understand). */
void lp_state_leave(struct lp_state_rd *rd, const struct lp_state_mark *mark);
/* Skips the next section whole (the glue's dispatch of tags it leaves to others). */
void lp_state_skip(struct lp_state_rd *rd);

/* Reads past the end of the section yield zeros and fail the reader (LP_ERR_TRUNCATED). */
uint8_t lp_state_u8(struct lp_state_rd *rd);
uint16_t lp_state_u16(struct lp_state_rd *rd);
uint32_t lp_state_u32(struct lp_state_rd *rd);
uint64_t lp_state_u64(struct lp_state_rd *rd);
void lp_state_bytes(struct lp_state_rd *rd, void *out, size_t n);
/* A text (len u16) of at most max bytes (else LP_ERR_TOO_BIG): returns a view borrowed from
 * the buffer (NULL when empty or on error), *n its length. */
const uint8_t *lp_state_text(struct lp_state_rd *rd, size_t max, size_t *n);
/* The same for a blob (len u32). */
const uint8_t *lp_state_blob(struct lp_state_rd *rd, size_t max, size_t *n);
/* A text copied into out[cap] with a NUL after it: it must be shorter than cap and hold no NUL
 * (else LP_ERR_MALFORMED). */
void lp_state_cstr(struct lp_state_rd *rd, char *out, size_t cap, const char *what);
/* A count (u32) of items of at least min_size bytes each: more than max, or more than the
 * section could hold, fails the reader. Read counts this way before allocating for them. */
size_t lp_state_count(struct lp_state_rd *rd, size_t min_size, size_t max, const char *what);

/* Fails the reader with a reason (printf-style; the section is named before it). The first
 * failure sticks. */
void lp_state_fail(struct lp_state_rd *rd, lp_err rc, const char *fmt, ...) LP_PRINTF(3, 4);
/* The sticky error: LP_OK while every read so far was whole and valid. */
LP_MUST_USE static inline lp_err lp_state_err(const struct lp_state_rd *rd)
{
    return rd->err;
}

/* Time across the hand-over: cores save how long ago something happened, or how long until
 * it is due, never a clock reading, since the successor's clock need not match. Saturating;
 * LP_TIME_NEVER stays never. */
uint64_t lp_state_age(lp_time now, lp_time then);  /* now - then, 0 if then is later */
lp_time lp_state_since(lp_time now, uint64_t age); /* now - age, 0 at the clock's start */
uint64_t lp_state_left(lp_time now, lp_time due);  /* due - now, 0 if due is past */
lp_time lp_state_due(lp_time now, uint64_t left);  /* now + left */

#endif
