/* err.h — the one error type of the program.
 *
 * Every function that can fail returns lp_err. LP_OK is zero so `if (rc)` reads naturally.
 * errno and mbedTLS codes are translated at the I/O boundary (and logged raw there);
 * nothing above that boundary sees them.
 */
#ifndef LIMPET_ERR_H
#define LIMPET_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* On every declaration of a function that returns lp_err, before the return type
 * (`LP_MUST_USE lp_err lp_x(...);`): an error is handled or passed on, never dropped (-Werror
 * makes an ignored one a build failure). Where a caller truly has nothing to do with one, it
 * says why in a comment and still looks at it, `if (f() != LP_OK) lp_debug(...)`: a cast to
 * void, which GCC rightly does not accept for this attribute, would hide the decision. A
 * function that cannot fail, or that reports every failure itself, returns void instead. */
#if defined(__GNUC__)
#define LP_MUST_USE __attribute__((warn_unused_result))
#define LP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LP_MUST_USE
#define LP_PRINTF(a, b)
#endif

typedef enum lp_err {
    LP_OK = 0,
    LP_ERR_NOMEM,           /* an allocation failed */
    LP_ERR_TRUNCATED,       /* input ended before a whole item: wait for more bytes */
    LP_ERR_MALFORMED,       /* input is not a valid encoding (a reason is given beside it) */
    LP_ERR_TOO_BIG,         /* a length is beyond its hard cap */
    LP_ERR_NOSPACE,         /* an output buffer or queue is full: try again later */
    LP_ERR_STATE,           /* the call is not valid in the object's current state */
    LP_ERR_PROTOCOL,        /* the peer broke the protocol: drop the link */
    LP_ERR_SEQ,             /* the peer's sequence number is out of range: the session is lost */
    LP_ERR_UNKNOWN_SESSION, /* the peer does not know the session */
    LP_ERR_VERSION,         /* protocol version mismatch */
    LP_ERR_REJECTED,        /* the peer refused the handshake */
    LP_ERR_NOT_FOUND,       /* no such stream, key or item */
    LP_ERR_CLOSED,          /* the object is closed */
    LP_ERR_INVALID,         /* an argument or configured value is invalid */
    LP_ERR_IO,              /* a system call failed (logged with errno where it happened) */
    LP_ERR_TIMEOUT,         /* a deadline passed */
    LP_ERR_AUTH,            /* authentication or authorization refused */
} lp_err;

/* Returns a static, human-readable string for rc. Never NULL. */
const char *lp_strerror(lp_err rc);

/* Writes one line into err (when err is not NULL and errlen > 0), printf-style, with control
 * bytes replaced by '?' so a quoted argument cannot split it, and returns rc. */
LP_MUST_USE lp_err lp_errf(lp_err rc, char *err, size_t errlen, const char *fmt, ...)
    LP_PRINTF(4, 5);

/* True when rc means the whole session (not just one link or stream) cannot go on. */
bool lp_err_is_fatal(lp_err rc);

#endif
