/* net.h — the I/O boundary: sockets, the clock and randomness for src/io.
 * errno is translated here; callers get lp_err plus a one-line message. */
#ifndef LIMPET_NET_H
#define LIMPET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "limpet/base.h"
#include "limpet/err.h"

struct lp_addr {
    struct sockaddr_storage sa;
    socklen_t len;
};

/* Monotonic milliseconds. */
lp_time lp_now(void);
/* Fills buf with n bytes from the kernel's CSPRNG. */
LP_MUST_USE lp_err lp_random(void *buf, size_t n);
uint32_t lp_random_u32(void);

/* Resolves host:port (numeric first; names through getaddrinfo, which blocks). */
LP_MUST_USE lp_err lp_net_resolve(const char *host, uint16_t port, struct lp_addr *out, char *err,
                                  size_t errlen);
/* The address bytes of a (4 for IPv4, 16 for IPv6) into out; returns their count (0 for
 * another family). */
size_t lp_net_addr_bytes(const struct lp_addr *a, uint8_t out[16]);
/* "1.2.3.4:80" / "[::1]:80" / "unix:/run/x.sock" (or "unix" when unnamed) into buf.
 * Returns buf. */
const char *lp_net_addr_str(const struct lp_addr *a, char *buf, size_t buflen);

/* A non-blocking listening socket with SO_REUSEADDR. *fd owned by the caller. */
LP_MUST_USE lp_err lp_net_listen(const struct lp_addr *a, int *fd, char *err, size_t errlen);
/* Starts a non-blocking connect; *fd owned by the caller. LP_OK means in progress or done:
 * wait for writability and check lp_net_connect_result. */
LP_MUST_USE lp_err lp_net_connect(const struct lp_addr *a, int *fd, char *err, size_t errlen);
/* 0 when the connect succeeded, else the errno it failed with. */
int lp_net_connect_result(int fd);
/* Accepts one connection (non-blocking, close-on-exec). -1 with errno on failure. */
int lp_net_accept(int lfd, struct lp_addr *peer);
/* (Listeners on the loop accept through accept.h, which survives running out of fds.) */
/* The locally bound address of fd. */
LP_MUST_USE lp_err lp_net_local_addr(int fd, struct lp_addr *a);

/* ---- unix domain sockets (-L /PATH:..., targets unix:/PATH) ---- */

/* Identifies the socket file a unix listener created, so that only that file is removed. */
struct lp_unix_file {
    uint64_t dev, ino;
};

/* path (borrowed) as an AF_UNIX address in *a, for lp_net_connect. LP_ERR_INVALID when it is
 * empty or does not fit sun_path (107 bytes). */
LP_MUST_USE lp_err lp_net_unix_addr(const char *path, struct lp_addr *a);
/* The socket at path itself, never what a symbolic link there points to, pinned so it cannot
 * be swapped between this check and the connect: opens path with O_PATH | O_NOFOLLOW into
 * *pinfd (the caller closes it once the connect was started) and fills *a with
 * "/proc/self/fd/N", which reaches that very inode. LP_ERR_AUTH when path is a symbolic link,
 * LP_ERR_INVALID when it is not a socket, LP_ERR_IO when it cannot be opened (errno kept);
 * why gets one line naming path. */
LP_MUST_USE lp_err lp_net_unix_pin(const char *path, int *pinfd, struct lp_addr *a, char *why,
                                   size_t whylen);
/* A non-blocking listening unix socket at path, its file created with mode 0600 (only this
 * user may connect). A stale socket file there (nothing accepts on it) is replaced, as ssh's
 * StreamLocalBindUnlink does; a live one, or a file that is not a socket, is an error and is
 * left alone. *fd is owned by the caller; remove the file with lp_net_unlink_unix. */
LP_MUST_USE lp_err lp_net_listen_unix(const char *path, int *fd, struct lp_unix_file *file,
                                      char *err, size_t errlen);
/* Removes path if it is still the socket file lp_net_listen_unix created (not one another
 * process has put there since). Call it while the listening socket is still open: the file
 * is known as ours by the process listening on it. */
void lp_net_unlink_unix(const char *path, const struct lp_unix_file *file);

/* Raises the soft limit on open files (RLIMIT_NOFILE) to the hard one: every stream holds a
 * descriptor, and the soft default (often 1024) is far below what the hard one allows.
 * Returns the soft limit now in force (UINT64_MAX: unlimited; 0: unknown); *before is the
 * one found. */
uint64_t lp_net_raise_fd_limit(uint64_t *before);

/* Tunnel links: TCP_NODELAY and TCP_USER_TIMEOUT (ms). Local streams: TCP_NODELAY. */
void lp_net_tune_link(int fd, lp_time user_timeout);
void lp_net_tune_stream(int fd);
/* Closes fd so that the peer sees a reset (SO_LINGER 0). */
void lp_net_close_reset(int fd);

/* Maps an errno to the RST code that describes it to the peer. */
uint16_t lp_net_rst_code(int err);

#endif
