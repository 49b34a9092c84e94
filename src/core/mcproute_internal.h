/* mcproute_internal.h — the MCP router's struct (mcproute.c, saved and loaded by
 * mcproute_state.c) and its line FIFOs (mcproute_fifo.c): output for the glue, host lines held
 * while a fresh child is initialized. Private to src/core/mcproute*.c; the contract is
 * mcproute.h.
 */
#ifndef LIMPET_MCPROUTE_INTERNAL_H
#define LIMPET_MCPROUTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "limpet/mcproute.h"

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

#define KEY_LEN 80                  /* as lp_rpc_msg.id_key */
#define ATT_MAX LP_MCPROUTE_ATT_MAX /* attachments at once */
#define S2C_MAX 256u                /* child → host requests awaiting a host's answer */
#define HELD_MAX 4096u              /* host lines held while a fresh child is initialized */

/* A host request sent to the child and not answered yet. An orphan is one whose host will
 * never take the answer (it detached, or cancelled the request): the child may still
 * answer, so its ids stay reserved and the answer is dropped. Orphans are kept at most
 * max_inflight, oldest evicted first, because a server that honours a cancellation never
 * answers. */
struct flight {
    uint64_t att;
    uint64_t age;            /* order of sending, for evicting the oldest orphan */
    bool orphan;             /* nobody takes the answer; not counted in max_inflight */
    bool is_init;            /* the life's first initialize: its answer is cached */
    char child_key[KEY_LEN]; /* the id as the child knows it */
    char host_key[KEY_LEN];  /* the id as the host sent it */
    json_t *host_id;         /* the host's id when child_key differs from it, else NULL */
    char token_key[KEY_LEN]; /* the progress token as the child knows it, "" without */
    json_t *host_token;      /* the host's token when token_key differs from it, else NULL */
};

/* A child → host request: its answer is expected from att. */
struct s2c {
    uint64_t att;
    char key[KEY_LEN];
};

enum life {
    LIFE_UP,        /* the child runs and takes lines as they come */
    LIFE_DOWN,      /* the child exited; a next one is expected */
    LIFE_REPLAYING, /* a fresh child is being sent the cached initialize */
};

struct lp_mcproute {
    size_t max_inflight;
    uint64_t *atts; /* attached, oldest first: the last one takes child requests */
    size_t natts, atts_cap;
    struct flight *fl;
    size_t nfl, fl_cap, live, orphans; /* live + orphans == nfl */
    struct s2c *s2c;
    size_t ns2c, s2c_cap;
    struct fifo out;      /* lines for the glue, in the order their causes arrived */
    struct fifo held;     /* host lines that wait for a fresh child's initialization */
    struct fifo waiting;  /* initializes waiting for the first one's answer */
    json_t *init_req;     /* the initialize whose result is cached (owned), replayed later */
    json_t *init_result;  /* that result (owned) */
    json_t *init_pending; /* the first initialize of this life, until it is answered */
    enum life life;
    bool init_inflight;    /* an initialize is at the child, unanswered */
    bool init_sent;        /* the child was sent an initialize this life */
    bool initialized_sent; /* the child was sent notifications/initialized this life */
    char replay_key[KEY_LEN];
    uint64_t age, fresh, replays;
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
