/* net.c — sockets, clock and randomness: the boundary where errno becomes lp_err. */
#include "limpet/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "limpet/frame.h"
#include "limpet/log.h"

lp_time lp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (lp_time)ts.tv_sec * 1000u + (lp_time)ts.tv_nsec / 1000000u;
}

lp_err lp_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return LP_ERR_IO;
        }
        p += r;
        n -= (size_t)r;
    }
    return LP_OK;
}

uint32_t lp_random_u32(void)
{
    uint32_t v = 0;
    if (lp_random(&v, sizeof(v)) != LP_OK)
        v = (uint32_t)lp_now() * 2654435761u; /* jitter only: weak is acceptable */
    return v;
}

/* A literal address needs no lookup. getaddrinfo with AI_ADDRCONFIG asks the kernel over a
 * netlink socket which families are configured: seven system calls per new stream. */
static bool literal(const char *host, uint16_t port, struct lp_addr *out)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;

    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out->len = sizeof(*v4);
        return true;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out->len = sizeof(*v6);
        return true;
    }
    return false;
}

lp_err lp_net_resolve(const char *host, uint16_t port, struct lp_addr *out, char *err,
                      size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char portstr[8];

    if (literal(host, port, out))
        return LP_OK;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV; /* loopback-only hosts have no "configured" addr */
        rc = getaddrinfo(host, portstr, &hints, &res);
    }
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        if (res)
            freeaddrinfo(res);
        return LP_ERR_NOT_FOUND;
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return LP_OK;
}

size_t lp_net_addr_bytes(const struct lp_addr *a, uint8_t out[16])
{
    if (a->sa.ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)&a->sa)->sin_addr, 4);
        return 4;
    }
    if (a->sa.ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

const char *lp_net_addr_str(const struct lp_addr *a, char *buf, size_t buflen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(buf, buflen, "%s:%u", host, port);
    } else if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(buf, buflen, "[%s]:%u", host, port);
    } else if (a->sa.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&a->sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = a->len > off ? strnlen(un->sun_path, a->len - off) : 0;
        if (n > 0) /* abstract names (a leading NUL) and unbound peers show as plain "unix" */
            snprintf(buf, buflen, "unix:%.*s", (int)n, un->sun_path);
        else
            snprintf(buf, buflen, "unix");
    } else {
        snprintf(buf, buflen, "?");
    }
    return buf;
}

static int new_socket(int family)
{
    return socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

lp_err lp_net_listen(const struct lp_addr *a, int *fd, char *err, size_t errlen)
{
    char name[64];
    int one = 1;
    int s = new_socket(a->sa.ss_family);

    *fd = -1;
    if (s < 0)
        goto fail;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->sa.ss_family == AF_INET6)
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(s, (const struct sockaddr *)&a->sa, a->len) < 0 || listen(s, 1024) < 0)
        goto fail;
    *fd = s;
    return LP_OK;
fail:
    snprintf(err, errlen, "cannot listen on %s: %s", lp_net_addr_str(a, name, sizeof(name)),
             strerror(errno));
    if (s >= 0)
        close(s);
    return LP_ERR_IO;
}

lp_err lp_net_connect(const struct lp_addr *a, int *fd, char *err, size_t errlen)
{
    char name[64];
    int s = new_socket(a->sa.ss_family);

    *fd = -1;
    if (s < 0)
        goto fail;
    if (connect(s, (const struct sockaddr *)&a->sa, a->len) < 0 && errno != EINPROGRESS)
        goto fail;
    *fd = s;
    return LP_OK;
fail:
    snprintf(err, errlen, "connect to %s: %s", lp_net_addr_str(a, name, sizeof(name)),
             strerror(errno));
    if (s >= 0)
        close(s);
    return LP_ERR_IO;
}

int lp_net_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

int lp_net_accept(int lfd, struct lp_addr *peer)
{
    peer->len = sizeof(peer->sa);
    return accept4(lfd, (struct sockaddr *)&peer->sa, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

lp_err lp_net_local_addr(int fd, struct lp_addr *a)
{
    a->len = sizeof(a->sa);
    return getsockname(fd, (struct sockaddr *)&a->sa, &a->len) < 0 ? LP_ERR_IO : LP_OK;
}

/* ---- unix domain sockets ------------------------------------------------------------- */

lp_err lp_net_unix_addr(const char *path, struct lp_addr *a)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
    size_t n = strnlen(path, sizeof(un->sun_path));

    memset(a, 0, sizeof(*a));
    if (n == 0 || n >= sizeof(un->sun_path))
        return LP_ERR_INVALID;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n + 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return LP_OK;
}

lp_err lp_net_unix_pin(const char *path, int *pinfd, struct lp_addr *a, char *why, size_t whylen)
{
    char proc[64];
    struct stat st;
    int fd, saved;

    *pinfd = -1;
    if ((fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        saved = errno;
        snprintf(why, whylen, "connect to unix:%.200s failed: %s", path, strerror(saved));
        errno = saved;
        return LP_ERR_IO;
    }
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        bool link = S_ISLNK(st.st_mode);
        close(fd);
        snprintf(why, whylen, "unix:%.200s %s", path,
                 link ? "is a symbolic link: the server reaches only sockets named as they are"
                      : "is not a socket");
        return link ? LP_ERR_AUTH : LP_ERR_INVALID;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (lp_net_unix_addr(proc, a) != LP_OK) {
        close(fd);
        snprintf(why, whylen, "unix:%.200s: cannot name the pinned socket", path);
        return LP_ERR_IO;
    }
    *pinfd = fd;
    return LP_OK;
}

/* Makes room for a new socket file at path: nothing there, or a socket nobody listens on
 * (left by a process that was killed), which is removed. A live socket or another kind of
 * file is never touched. */
static lp_err clear_stale(const char *path, const struct lp_addr *a, char *err, size_t errlen)
{
    struct stat st;
    int probe, rc;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return LP_OK;
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        return LP_ERR_IO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "cannot listen on unix:%s: the file exists and is not a socket",
                 path);
        return LP_ERR_IO;
    }
    /* Non-blocking, so a live listener with a full backlog answers EAGAIN, not a wait. */
    if ((probe = new_socket(AF_UNIX)) < 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        return LP_ERR_IO;
    }
    rc = connect(probe, (const struct sockaddr *)&a->sa, a->len);
    int e = rc < 0 ? errno : 0;
    close(probe);
    if (e == ENOENT)
        return LP_OK; /* gone meanwhile */
    if (e == ECONNREFUSED) {
        if (unlink(path) == 0 || errno == ENOENT)
            return LP_OK;
        snprintf(err, errlen, "cannot remove the stale socket unix:%s: %s", path, strerror(errno));
        return LP_ERR_IO;
    }
    if (e == 0 || e == EAGAIN)
        snprintf(err, errlen, "cannot listen on unix:%s: another process is listening there", path);
    else
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(e));
    return LP_ERR_IO;
}

lp_err lp_net_listen_unix(const char *path, int *fd, struct lp_unix_file *file, char *err,
                          size_t errlen)
{
    struct lp_addr a;
    struct stat st;
    bool bound = false;
    int s = -1;

    *fd = -1;
    if (lp_net_unix_addr(path, &a) != LP_OK) {
        snprintf(err, errlen, "cannot listen on unix:%.200s: path empty or longer than 107 bytes",
                 path);
        return LP_ERR_INVALID;
    }
    if (clear_stale(path, &a, err, errlen) != LP_OK)
        return LP_ERR_IO;
    if ((s = new_socket(AF_UNIX)) < 0)
        goto fail;
    /* The umask decides the file's mode at bind: 0600, so only this user may connect. It is
     * process-wide, but nothing else here creates files (resolver threads only read). */
    mode_t old = umask(0177);
    int rc = bind(s, (const struct sockaddr *)&a.sa, a.len);
    umask(old);
    if (rc < 0)
        goto fail;
    bound = true;
    if (listen(s, 1024) < 0 || lstat(path, &st) < 0)
        goto fail;
    file->dev = (uint64_t)st.st_dev;
    file->ino = (uint64_t)st.st_ino;
    *fd = s;
    return LP_OK;
fail:
    snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
    if (bound)
        unlink(path);
    if (s >= 0)
        close(s);
    return LP_ERR_IO;
}

void lp_net_unlink_unix(const char *path, const struct lp_unix_file *file)
{
    struct stat st;
    struct lp_addr a;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int probe;

    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode) || (uint64_t)st.st_dev != file->dev ||
        (uint64_t)st.st_ino != file->ino)
        return;
    /* Some file systems hand a freed inode number out again at once, so the same number may be
     * someone else's new socket: ask the socket there which process listens on it. */
    if (lp_net_unix_addr(path, &a) != LP_OK || (probe = new_socket(AF_UNIX)) < 0)
        return;
    if (connect(probe, (const struct sockaddr *)&a.sa, a.len) == 0 &&
        getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid == getpid())
        unlink(path);
    close(probe);
}

/* The most a process may open when the hard limit says "unlimited": the kernel's nr_open. */
static rlim_t nr_open(void)
{
    unsigned long long n = 0;
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");

    if (f != NULL) {
        if (fscanf(f, "%llu", &n) != 1)
            n = 0;
        fclose(f);
    }
    return n > 0 ? (rlim_t)n : (rlim_t)1048576; /* the kernel's default nr_open */
}

uint64_t lp_net_raise_fd_limit(uint64_t *before)
{
    struct rlimit rl;

    *before = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    *before = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    if (rl.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? nr_open() : rl.rlim_max;
    if (rl.rlim_cur < want) {
        struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    return (uint64_t)rl.rlim_cur;
}

void lp_net_tune_link(int fd, lp_time user_timeout)
{
    int one = 1;
    unsigned int ut = user_timeout > UINT32_MAX ? UINT32_MAX : (unsigned int)user_timeout;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* The kernel drops a connection whose sent data stays unacknowledged this long: a
     * black-holed link fails even while we are only writing. */
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
}

void lp_net_tune_stream(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void lp_net_close_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

uint16_t lp_net_rst_code(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ENOENT: /* a unix socket target that is not there */
        return LP_RST_REFUSED;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case EADDRNOTAVAIL:
    case ENETDOWN:
    case EHOSTDOWN:
        return LP_RST_UNREACHABLE;
    case ETIMEDOUT:
        return LP_RST_TIMEOUT;
    default:
        return LP_RST_RESET;
    }
}
