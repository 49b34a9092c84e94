/* base.h — small shared types. */
#ifndef LIMPET_BASE_H
#define LIMPET_BASE_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds, always supplied by the caller: no core reads a clock. */
typedef uint64_t lp_time;
#define LP_TIME_NEVER UINT64_MAX

/* Recover the struct that embeds `ptr` as `member`. */
#define LP_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A writable piece of a caller-owned buffer (borrowed). */
struct lp_span {
    uint8_t *p;
    size_t n;
};

#define LP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LP_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
