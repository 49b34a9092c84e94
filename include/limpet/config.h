/* config.h — typed configuration from YAML (libyaml), with a default for every key.
 *
 * Keys are dotted paths (`session.heartbeat`). Values: durations `250ms`, `5s`, `10m`, `24h`
 * (a bare integer is refused: say the unit); sizes `512` (bytes), `64KiB`, `8MiB`, `1GiB`
 * (binary units only); booleans true/false; strings; addresses "HOST:PORT" / "[V6]:PORT".
 * Errors are one line: "FILE:LINE:COL: KEY: what is wrong" (LINE/COL 1-based), written to
 * the caller's buffer. `-o KEY=VALUE` errors read "-o KEY: what is wrong".
 */
#ifndef LIMPET_CONFIG_H
#define LIMPET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "limpet/base.h"
#include "limpet/err.h"

#define LP_CONFIG_ERR_MAX 512u
#define LP_ADDR_MAX 256u

enum lp_log_level { LP_LOG_ERROR = 0, LP_LOG_WARN = 1, LP_LOG_INFO = 2, LP_LOG_DEBUG = 3 };

struct lp_config {
    char listen[LP_ADDR_MAX]; /* listen: server's tunnel address ("0.0.0.0:7070") */
    char server[LP_ADDR_MAX]; /* server: where the client dials ("127.0.0.1:7070") */
    bool insecure;            /* insecure: plain TCP, no TLS, no auth (false) */
    int log_level;            /* log.level: error|warn|info|debug (info) */
    struct {
        lp_time heartbeat;     /* session.heartbeat (2s), 10ms..10m */
        lp_time dead_after;    /* session.dead_after (6s); 0 in the file = 3 x heartbeat */
        lp_time ttl;           /* session.ttl (10m), 1s..30d: detached sessions kept */
        size_t replay_buffer;  /* session.replay_buffer (8MiB), 64KiB..1GiB */
        size_t receive_buffer; /* session.receive_buffer (16MiB), 64KiB..1GiB */
        size_t stream_window;  /* session.stream_window (1MiB), 16KiB..16MiB */
        size_t ack_every;      /* session.ack_every (64KiB), 1KiB..16MiB */
        lp_time ack_delay;     /* session.ack_delay (20ms), 1ms..10s */
        size_t max_streams;    /* session.max_streams (4096), 1..1000000 */
    } session;
    struct {
        lp_time initial_delay;   /* reconnect.initial_delay (100ms), 1ms..1m */
        lp_time max_delay;       /* reconnect.max_delay (5s), 1ms..1h */
        lp_time give_up_after;   /* reconnect.give_up_after (0 = session.ttl), 0..30d */
        lp_time connect_timeout; /* reconnect.connect_timeout (10s): one dial attempt */
    } reconnect;
    struct {
        lp_time connect_timeout; /* forward.connect_timeout (30s), 1ms..1h: how long a
                                       local connection waits for the tunnel or the target */
    } forward;
    struct {
        lp_time handshake_timeout; /* limits.handshake_timeout (10s): server side, HELLO */
        size_t max_sessions;       /* limits.max_sessions (1024) */
    } limits;
};

/* Fills every key with its default. */
void lp_config_defaults(struct lp_config *c);

/* Reads a YAML file over the current values (keys absent from the file keep theirs). */
lp_err lp_config_load_file(struct lp_config *c, const char *path, char *err, size_t errlen);
/* The same from memory; `name` stands for the file name in errors. */
lp_err lp_config_load_string(struct lp_config *c, const char *name, const char *yaml, size_t len,
                             char *err, size_t errlen);
/* One `-o KEY=VALUE` override (the argument as given). */
lp_err lp_config_set(struct lp_config *c, const char *key_eq_value, char *err, size_t errlen);
/* Cross-key checks and derived defaults (dead_after 0 -> 3 x heartbeat, dead_after must
 * exceed heartbeat, initial_delay <= max_delay, give_up_after 0 -> ttl). Call once after
 * loading and overrides. */
lp_err lp_config_finish(struct lp_config *c, char *err, size_t errlen);

/* Prints every key with its default and range, one per line (for --help). */
void lp_config_print_keys(FILE *f, const char *indent);

/* Parsers shared with the CLI. Return LP_ERR_INVALID on bad input. */
lp_err lp_parse_duration(const char *s, lp_time *out);
lp_err lp_parse_size(const char *s, size_t *out);

#endif
