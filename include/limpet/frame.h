/* frame.h — the frame codec: every frame limpet puts on a link.
 *
 * A frame is an 8-byte header and a payload of at most LP_FRAME_MAX_PAYLOAD bytes:
 *
 *     type u8 | flags u8 | length u16 | stream_id u32 | payload[length]      (big-endian)
 *
 * Three families share this header (docs/PROTOCOL.md has every byte):
 *   - mux frames (types 0x01..0x0F) are *sequenced*: counted in tx_seq/rx_seq and replayed;
 *   - link frames ACK/PING/PONG (0x40..0x4F) are not sequenced and never replayed;
 *   - handshake frames HELLO/WELCOME/REJECT (0x50..0x5F) open a link.
 *
 * Decoding never allocates and never reads past its input. Every decode function returns
 * LP_OK, LP_ERR_TRUNCATED (need more bytes; only lp_frame_decode_header/lp_frame_decode can
 * say this of a stream prefix) or LP_ERR_MALFORMED with *why set to a static reason string.
 * Decoded views (target, message, data) are borrowed from the input buffer.
 */
#ifndef LIMPET_FRAME_H
#define LIMPET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_FRAME_HEADER 8u
#define LP_FRAME_MAX_PAYLOAD 16384u
#define LP_FRAME_MAX (LP_FRAME_HEADER + LP_FRAME_MAX_PAYLOAD)
#define LP_FRAME_MAX_TEXT 1024u /* cap on OPEN targets, RST/REJECT/GOODBYE messages */

#define LP_PROTO_MAGIC 0x4C4D5054u /* "LMPT" */
#define LP_PROTO_VERSION 1u
#define LP_SESSION_ID_LEN 16u
#define LP_TOKEN_LEN 32u

enum lp_frame_type {
    /* sequenced (mux) */
    LP_FT_OPEN = 0x01,
    LP_FT_OPEN_OK = 0x02,
    LP_FT_DATA = 0x03,
    LP_FT_WINDOW = 0x04,
    LP_FT_FIN = 0x05,
    LP_FT_RST = 0x06,
    LP_FT_BIND = 0x07,
    LP_FT_BIND_OK = 0x08,
    LP_FT_BIND_FAIL = 0x09,
    LP_FT_GOODBYE = 0x0A,
    /* link, unsequenced */
    LP_FT_ACK = 0x40,
    LP_FT_PING = 0x41,
    LP_FT_PONG = 0x42,
    /* handshake */
    LP_FT_HELLO = 0x50,
    LP_FT_WELCOME = 0x51,
    LP_FT_REJECT = 0x52,
};

/* True for the types counted in the sequenced stream. */
static inline int lp_frame_is_sequenced(uint8_t type)
{
    return type >= 0x01 && type <= 0x0A;
}

enum lp_stream_kind {
    LP_KIND_TCP = 1,     /* target "host:port" */
    LP_KIND_STDIO = 2,   /* target "host:port", stdin/stdout at the opener's end */
    LP_KIND_MCP = 3,     /* target = server name, arg = scope */
    LP_KIND_REVERSE = 4, /* a connection accepted on a -R listener; target = bind spec */
};

/* RST codes. Each comes with a message a person can read. */
enum lp_rst_code {
    LP_RST_REFUSED = 1,      /* the target refused the connection */
    LP_RST_UNREACHABLE = 2,  /* no route / host unreachable / DNS failure */
    LP_RST_NOT_ALLOWED = 3,  /* the peer's policy forbids the target */
    LP_RST_TIMEOUT = 4,      /* connecting or waiting timed out */
    LP_RST_RESET = 5,        /* the local connection was reset or failed mid-stream */
    LP_RST_PROTOCOL = 6,     /* the stream broke the protocol (e.g. DATA beyond the window) */
    LP_RST_SESSION_LOST = 7, /* the session ended under the stream */
    LP_RST_LIMIT = 8,        /* a configured limit was reached */
    LP_RST_INTERNAL = 9,     /* a local failure (out of memory, ...) */
    LP_RST_SHUTDOWN = 10,    /* the process is shutting down */
    LP_RST_BAD_TARGET = 11,  /* the target string is not valid */
    LP_RST_EXITED = 12,      /* the MCP server process exited (status and stderr tail) */
    LP_RST_UNAVAILABLE = 13, /* the target service is not there (no such MCP server) */
};

/* REJECT codes (handshake). */
enum lp_reject_code {
    LP_REJECT_VERSION = 1,          /* unsupported protocol version: permanent */
    LP_REJECT_SESSION_UNKNOWN = 2,  /* no such session (server restarted, TTL passed) */
    LP_REJECT_SEQ_OUT_OF_RANGE = 3, /* the resume point is no longer held: session lost */
    LP_REJECT_AUTH = 4,             /* authentication refused: permanent */
    LP_REJECT_LIMIT = 5,            /* a server limit: transient, retry with backoff */
    LP_REJECT_PROTOCOL = 6,         /* malformed handshake */
    LP_REJECT_SHUTDOWN = 7,         /* server is shutting down: transient */
};

/* GOODBYE codes. */
enum lp_goodbye_code {
    LP_GOODBYE_NORMAL = 0,   /* the peer ended the session on purpose */
    LP_GOODBYE_SHUTDOWN = 1, /* the peer process is shutting down */
    LP_GOODBYE_LOST = 2,     /* the peer found the session unrecoverable */
    LP_GOODBYE_REVOKED = 3,  /* the server's configuration no longer admits the identity */
};

struct lp_frame {
    uint8_t type;
    uint8_t flags;
    uint32_t stream_id;
    const uint8_t *payload; /* borrowed: points into the decoded buffer */
    size_t len;             /* payload length, <= LP_FRAME_MAX_PAYLOAD */
};

/* Decodes one header + payload from the front of buf. On LP_OK, *used is the whole frame's
 * size (LP_FRAME_HEADER + len). Checks only the envelope: type known, length within cap,
 * stream_id zero/non-zero as the type requires, fixed-size payloads of the right size. */
LP_MUST_USE lp_err lp_frame_decode(const uint8_t *buf, size_t len, struct lp_frame *f, size_t *used,
                                   const char **why);

/* Writes a header at out (LP_FRAME_HEADER bytes). */
void lp_frame_put_header(uint8_t *out, uint8_t type, uint8_t flags, uint16_t len, uint32_t id);

/* ---- typed payloads ------------------------------------------------------------------- */

struct lp_open {
    uint8_t kind;          /* enum lp_stream_kind */
    uint32_t window;       /* initial credit the opener grants for peer->opener data */
    const uint8_t *target; /* borrowed; not NUL-terminated */
    size_t target_len;     /* 1..LP_FRAME_MAX_TEXT */
    const uint8_t *arg;    /* borrowed; may be empty (MCP scope) */
    size_t arg_len;
};

struct lp_text { /* RST, REJECT, GOODBYE, BIND_FAIL */
    uint16_t code;
    const uint8_t *msg; /* borrowed; UTF-8 without NUL; may be empty */
    size_t msg_len;     /* <= LP_FRAME_MAX_TEXT */
};

#define LP_HELLO_NODE 0x0002u  /* flags: send me the node id in WELCOME (section 2.4) */
#define LP_HELLO_REKEY 0x0004u /* flags: this link replaces a live one for new TLS keys */

struct lp_hello {
    uint32_t magic;
    uint16_t version;
    uint16_t flags;
    uint8_t session_id[LP_SESSION_ID_LEN]; /* all zero: a new session */
    uint8_t token[LP_TOKEN_LEN];           /* zero for a new session */
    uint64_t rx_seq;                       /* client's rx_seq: where the server replays from */
};

#define LP_WELCOME_RESUMED 0x0001u /* flags: this WELCOME resumes a session */
#define LP_WELCOME_NODE 0x0002u    /* flags: node_len u8 | node[node_len] follow the 68 bytes */
#define LP_NODE_ID_MAX 63u         /* a node id is one DNS label: 1..63 of [a-z0-9-] */

/* True when id[0..n) is a valid node id: 1..LP_NODE_ID_MAX bytes of [a-z0-9-]. */
bool lp_node_id_ok(const uint8_t *id, size_t n);

struct lp_welcome {
    uint16_t version;
    uint16_t flags;
    uint8_t session_id[LP_SESSION_ID_LEN];
    uint8_t token[LP_TOKEN_LEN]; /* new sessions only; zero on resume */
    uint64_t rx_seq;             /* server's rx_seq: where the client replays from */
    uint32_t heartbeat_ms;       /* server's heartbeat, for information */
    uint32_t dead_after_ms;
    /* With LP_WELCOME_NODE: the id of the node that holds the session (the client sends it
     * back in its TLS SNI on resume, so a balancer routes the resume home). Borrowed from the
     * decoded buffer; node_len 0 without the flag. */
    const uint8_t *node;
    size_t node_len;
};

/* Each decode takes a frame already accepted by lp_frame_decode of the matching type. */
LP_MUST_USE lp_err lp_open_decode(const struct lp_frame *f, struct lp_open *o, const char **why);
LP_MUST_USE lp_err lp_u32_decode(const struct lp_frame *f, uint32_t *v,
                                 const char **why); /* OPEN_OK, WINDOW */
LP_MUST_USE lp_err lp_u64_decode(const struct lp_frame *f, uint64_t *v,
                                 const char **why); /* ACK, PING, PONG */
LP_MUST_USE lp_err lp_text_decode(const struct lp_frame *f, struct lp_text *t, const char **why);
LP_MUST_USE lp_err lp_hello_decode(const struct lp_frame *f, struct lp_hello *h, const char **why);
LP_MUST_USE lp_err lp_welcome_decode(const struct lp_frame *f, struct lp_welcome *w,
                                     const char **why);

/* Encoders write a whole frame (header + payload) into out[cap] and return its size, or 0
 * if it does not fit or a field is out of range (text longer than LP_FRAME_MAX_TEXT,
 * data longer than LP_FRAME_MAX_PAYLOAD). */
size_t lp_open_encode(uint8_t *out, size_t cap, uint32_t id, const struct lp_open *o);
size_t lp_u32_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint32_t v);
size_t lp_u64_encode(uint8_t *out, size_t cap, uint8_t type, uint64_t v);
size_t lp_text_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id, uint16_t code,
                      const char *msg, size_t msg_len);
size_t lp_empty_encode(uint8_t *out, size_t cap, uint8_t type, uint32_t id); /* FIN */
size_t lp_data_encode(uint8_t *out, size_t cap, uint32_t id, const uint8_t *data, size_t n);
size_t lp_hello_encode(uint8_t *out, size_t cap, const struct lp_hello *h);
size_t lp_welcome_encode(uint8_t *out, size_t cap, const struct lp_welcome *w);

/* Names for logs: "DATA", "RST", ...; "?" for an unknown type. */
const char *lp_frame_type_name(uint8_t type);
const char *lp_rst_code_name(uint16_t code);
const char *lp_reject_code_name(uint16_t code);

#endif
