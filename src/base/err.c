/* err.c — names for lp_err. The switch has no default so a new code without a name is a
 * compile error (-Wswitch under -Wall -Werror). */
#include "limpet/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *lp_strerror(lp_err rc)
{
    switch (rc) {
    case LP_OK:
        return "ok";
    case LP_ERR_NOMEM:
        return "out of memory";
    case LP_ERR_TRUNCATED:
        return "truncated input";
    case LP_ERR_MALFORMED:
        return "malformed input";
    case LP_ERR_TOO_BIG:
        return "length beyond limit";
    case LP_ERR_NOSPACE:
        return "no space left in buffer";
    case LP_ERR_STATE:
        return "invalid in current state";
    case LP_ERR_PROTOCOL:
        return "protocol violation";
    case LP_ERR_SEQ:
        return "sequence number out of range";
    case LP_ERR_UNKNOWN_SESSION:
        return "session unknown to the peer";
    case LP_ERR_VERSION:
        return "protocol version mismatch";
    case LP_ERR_REJECTED:
        return "rejected by peer";
    case LP_ERR_NOT_FOUND:
        return "not found";
    case LP_ERR_CLOSED:
        return "closed";
    case LP_ERR_INVALID:
        return "invalid argument";
    case LP_ERR_IO:
        return "I/O error";
    case LP_ERR_TIMEOUT:
        return "timed out";
    case LP_ERR_AUTH:
        return "authentication failed";
    }
    return "unknown error";
}

bool lp_err_is_fatal(lp_err rc)
{
    switch (rc) {
    case LP_ERR_SEQ:
    case LP_ERR_UNKNOWN_SESSION:
    case LP_ERR_VERSION:
    case LP_ERR_AUTH:
    case LP_ERR_CLOSED:
        return true;
    default:
        return false;
    }
}

lp_err lp_errf(lp_err rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* Messages quote argv and files; a newline in one must not split the one-line error. */
    for (char *p = err; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return rc;
}
