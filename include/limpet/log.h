/* log.h (base layer) — one line per event to stderr: time, level, then "sess=... stream=... what".
 * Never log a secret (tokens, keys): log session ids by their short hex prefix only. */
#ifndef LIMPET_LOG_H
#define LIMPET_LOG_H

#include <stdbool.h>

#include "limpet/err.h"

enum lp_log_level { LP_LOG_ERROR = 0, LP_LOG_WARN = 1, LP_LOG_INFO = 2, LP_LOG_DEBUG = 3 };

void lp_log_set_level(int level); /* enum lp_log_level */
int lp_log_level(void);
void lp_log_set_tag(const char *tag); /* "server" / "client": borrowed, static */
/* log.format json: one JSON object per line (time, proc, level, sess, stream, msg). */
void lp_log_set_json(bool json);

void lp_log(int level, const char *fmt, ...) LP_PRINTF(2, 3);

#define lp_error(...) lp_log(LP_LOG_ERROR, __VA_ARGS__)
#define lp_warn(...) lp_log(LP_LOG_WARN, __VA_ARGS__)
#define lp_info(...) lp_log(LP_LOG_INFO, __VA_ARGS__)
#define lp_debug(...)                          \
    do {                                       \
        if (lp_log_level() >= LP_LOG_DEBUG)    \
            lp_log(LP_LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
