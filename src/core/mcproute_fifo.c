/* mcproute_fifo.c — line records and the FIFOs that hold them for the MCP router
 * (mcproute_internal.h).
 */
#include <stdlib.h>
#include <string.h>

#include "mcproute_internal.h"

/* A line record around text (taken: freed here when the record cannot be made). */
struct line *mr_line_take(uint64_t dest, char *text, size_t len)
{
    struct line *ln = text != NULL ? malloc(sizeof(*ln)) : NULL;

    if (ln == NULL) {
        free(text);
        return NULL;
    }
    ln->next = NULL;
    ln->dest = dest;
    ln->len = len;
    ln->bytes = text;
    return ln;
}

/* A line record holding a copy of bytes, plus '\n' when newline. */
struct line *mr_line_copy(uint64_t dest, const void *bytes, size_t len, bool newline)
{
    char *text = len < SIZE_MAX ? malloc(len + 1) : NULL;

    if (text == NULL)
        return NULL;
    memcpy(text, bytes, len);
    if (newline)
        text[len++] = '\n';
    return mr_line_take(dest, text, len);
}

void mr_line_free(struct line *ln)
{
    if (ln != NULL)
        free(ln->bytes);
    free(ln);
}

void mr_fifo_push(struct fifo *q, struct line *ln)
{
    if (q->tail != NULL)
        q->tail->next = ln;
    else
        q->head = ln;
    q->tail = ln;
    q->count++;
    q->bytes += ln->len;
}

struct line *mr_fifo_pop(struct fifo *q)
{
    struct line *ln = q->head;

    if (ln == NULL)
        return NULL;
    q->head = ln->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    q->bytes -= ln->len;
    ln->next = NULL;
    return ln;
}

/* Frees every line addressed to dest. */
void mr_fifo_drop(struct fifo *q, uint64_t dest)
{
    struct fifo keep = {0};
    struct line *ln;

    while ((ln = mr_fifo_pop(q)) != NULL) {
        if (ln->dest == dest)
            mr_line_free(ln);
        else
            mr_fifo_push(&keep, ln);
    }
    *q = keep;
}

void mr_fifo_clear(struct fifo *q)
{
    struct line *ln;

    while ((ln = mr_fifo_pop(q)) != NULL)
        mr_line_free(ln);
}
