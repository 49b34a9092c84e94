/* mcproute_internal.h — the line FIFOs of the MCP router (mcproute.c): output for the glue,
 * host lines held while a fresh child is initialized. Private to src/core/mcproute*.c; the
 * contract is mcproute.h.
 */
#ifndef LIMPET_MCPROUTE_INTERNAL_H
#define LIMPET_MCPROUTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A line waiting in a FIFO: output (dest), held host input or an initialize waiting for the
 * first one's answer (dest is then the attachment it came from). */
struct line {
    struct line *next;
    uint64_t dest;
    size_t len;
    char *bytes; /* owned; handed to the glue as it is, so output is never copied twice */
};

struct fifo {
    struct line *head, *tail;
    size_t count, bytes;
};

/* A line record around text (taken: freed here when the record cannot be made). */
struct line *mr_line_take(uint64_t dest, char *text, size_t len);
/* A line record holding a copy of bytes, plus '\n' when newline. */
struct line *mr_line_copy(uint64_t dest, const void *bytes, size_t len, bool newline);
/* Frees a record and its bytes; NULL is fine. */
void mr_line_free(struct line *ln);
/* Appends (takes ln). */
void mr_fifo_push(struct fifo *q, struct line *ln);
/* The oldest record (owned by the caller now), or NULL when empty. */
struct line *mr_fifo_pop(struct fifo *q);
/* Frees every line addressed to dest. */
void mr_fifo_drop(struct fifo *q, uint64_t dest);
/* Frees every line. */
void mr_fifo_clear(struct fifo *q);

#endif
