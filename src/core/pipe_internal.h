/* pipe_internal.h — the pipe's struct, shared by pipe.c and pipe_state.c (its save and load).
 * Private to src/core/pipe*.c; the contract is pipe.h.
 */
#ifndef LIMPET_PIPE_INTERNAL_H
#define LIMPET_PIPE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/pipe.h"
#include "limpet/replay.h"

#define EVQ_CAP 16u      /* per link at most LIVE + one terminal event */
#define SCRATCH_CAP 160u /* HELLO or WELCOME, or PONG + ACK + PING */

enum out_kind { OUT_NONE, OUT_SCRATCH, OUT_SEQ };

struct lp_pipe {
    struct lp_pipe_config cfg;
    bool is_client;
    enum lp_pipe_state state;
    bool was_live;   /* a link has been LIVE once: later ones resume */
    bool rekey_next; /* the next HELLO says REKEY (lp_pipe_set_rekey) */
    uint64_t gen;
    uint8_t session_id[LP_SESSION_ID_LEN];
    uint8_t token[LP_TOKEN_LEN];
    /* server: this node's id, sent in WELCOME to a HELLO that asks (LP_HELLO_NODE);
     * client: the id the last WELCOME named. NUL-terminated, "" = none. */
    char node[LP_NODE_ID_MAX + 1];

    /* transmit: the sequenced stream */
    struct lp_replay replay; /* holds [acked, tx_seq) */
    size_t reserved;         /* payload bytes promised by the last reserve, 0 = none */
    bool starved;            /* a reserve found no room: ROOM is owed */
    uint64_t send_seq;       /* next sequenced byte for the current link */
    uint64_t frame_end;      /* end of the frame send_seq is in; >= send_seq */

    /* transmit: unsequenced frames, sent whole once started */
    uint8_t scratch[SCRATCH_CAP];
    size_t scratch_len;
    size_t scratch_off;
    enum out_kind out_kind; /* what the last pending_output handed out */
    size_t out_avail;       /* ... and how many of those bytes are not yet reported sent */
    bool pong_owed;
    uint64_t pong_value; /* echo of the latest PING */
    bool ack_due;
    bool ping_due;
    uint64_t ping_value;

    /* receive */
    uint8_t *rx;     /* RX_CAP bytes while a link is attached, else NULL */
    size_t rx_start; /* first unparsed byte */
    size_t rx_len;   /* end of received bytes */
    uint64_t rx_seq;
    uint64_t ack_sent;     /* rx_seq the peer last learned from us (ACK, HELLO, WELCOME) */
    lp_time first_unacked; /* when rx_seq first moved past ack_sent */

    /* time */
    lp_time connect_time;
    lp_time last_rx;
    lp_time last_tx;
    lp_time last_ping;
    lp_time rtt;

    struct lp_pipe_event evq[EVQ_CAP];
    size_t ev_head;
    size_t ev_count;
    char why[LP_PIPE_MSG_MAX]; /* lp_pipe_accept's reason, and the LOST message */
};

#endif
