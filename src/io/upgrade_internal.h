/* upgrade_internal.h — between upgrade.c (the check, the exec, the inherited descriptors) and
 * upgrade_state.c (the glue's sections of the state file). Private to src/io/upgrade*.c; the
 * contract is upgrade.h. */
#ifndef LIMPET_UPGRADE_INTERNAL_H
#define LIMPET_UPGRADE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "limpet/state.h"
#include "limpet/upgrade.h"

/* A set of descriptors with a mark each. The old binary lists those the state names (they keep
 * their number across the exec); the new one lists those it found open at start. */
enum {
    LP_FD_CLAIMED = 1,  /* reading: the state named it (each may be named once) */
    LP_FD_TAKEN = 2,    /* building: an object owns it now (never closed by the set) */
    LP_FD_LISTENER = 4, /* a process listener, handed out by lp_inherit_listener */
    LP_FD_CLOSED = 8,   /* the state's own memfd, read and closed: as if never handed over */
};

struct lp_fdset {
    int *fd;
    uint8_t *mark;
    size_t n, cap;
    bool nomem;  /* an add failed: the set is incomplete */
    bool sorted; /* fd[] ascends (lp_fdset_sort): lookups bisect */
};

void lp_fdset_add(struct lp_fdset *s, int fd, uint8_t mark);
/* Sorts a set whose marks are all still 0. */
void lp_fdset_sort(struct lp_fdset *s);
/* Index of fd, or -1. */
long lp_fdset_find(const struct lp_fdset *s, int fd);
void lp_fdset_free(struct lp_fdset *s);

/* What a restore read (logged by upgrade.c). */
struct lp_upgrade_summary {
    char from[64];       /* the old binary's version */
    lp_time since_start; /* ms from the old binary's SIGUSR2 to the state being written */
    size_t sessions, streams, rlisteners, children, atts;
};

/* The old binary: writes the whole state file of parts into w (begun here, finished by the
 * caller) and lists in fds every descriptor it names. listeners: tunnel, metrics, control
 * (-1: none), signal_at: when SIGUSR2 came. w's error is returned. */
LP_MUST_USE lp_err lp_upgrade_write(const struct lp_upgrade_parts *p, const int listeners[3],
                                    lp_time now, lp_time signal_at, struct lp_state_wr *w,
                                    struct lp_fdset *fds, struct lp_upgrade_summary *sum);

/* The new binary: reads the state file buf[len]. With commit false it only checks it (every
 * descriptor it names must be in fds, unmarked, and is marked CLAIMED; listeners must match);
 * with commit true it builds everything into p, marking what it hands to objects TAKEN.
 * Returns LP_OK or the first refusal, its reason in why. */
LP_MUST_USE lp_err lp_upgrade_read(const uint8_t *buf, size_t len, const struct lp_upgrade_parts *p,
                                   const int listeners[3], struct lp_fdset *fds, bool commit,
                                   struct lp_upgrade_summary *sum, char *why, size_t whylen);

/* The parent pid of pid (from /proc/PID/stat), -1 when it cannot be read. */
long lp_ppid_of(pid_t pid);

/* Every child process of ours that adopted() does not claim gets the MCP stop sequence (stdin
 * closed already, SIGTERM to its group after grace, SIGKILL after another); one log line per
 * step. NULL when there is none. lp_orphans_free SIGKILLs and reaps what is left. */
struct lp_orphans;
struct lp_orphans *lp_orphans_start(struct ev_loop *loop, lp_time grace,
                                    bool (*adopted)(void *, pid_t), void *user);
void lp_orphans_free(struct lp_orphans *o);

#endif
