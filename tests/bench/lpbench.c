/* lpbench.c — load generators and targets for scripts/bench.sh, fast enough that they are never
 * the bottleneck of what they measure. Linux only; one file; built by bench.sh with cc -O2.
 *
 * Targets (PORT 0 = pick a free one; the port is printed as "port N" on stdout):
 *   lpbench sink PORT        per connection: read and discard until EOF, then write the byte
 *                            count as a u64 (big-endian) and close. The count is what arrived.
 *   lpbench echo PORT        echo every byte back; close after EOF once everything is written.
 *   lpbench http PORT        read one request up to its blank line, answer a small fixed
 *                            HTTP/1.1 200 response and close (Connection: close).
 * Clients (HOST:PORT is the entry of the path under test; results are one "key=value" line):
 *   lpbench tput ADDR STREAMS BYTES SECONDS
 *                            STREAMS connections to a sink share BYTES, stopped after SECONDS;
 *                            the rate counts bytes the sink confirmed, up to its last reply.
 *   lpbench pingpong ADDR COUNT
 *                            1-byte round trips on one connection: p50/p99/max in microseconds.
 *   lpbench connrate ADDR COUNT SECONDS
 *                            connect, send 1 byte, read the echo, close; one after the other.
 *   lpbench connconc ADDR CONCURRENCY COUNT SECONDS
 *                            CONCURRENCY connections to an echo in flight at once, each:
 *                            connect, send 8 bytes, read them back, close; then the next.
 *                            Stops after COUNT or SECONDS: rate and per-connection p50/p99.
 *   lpbench socks PROXY TARGET CONCURRENCY COUNT SECONDS
 *                            HTTP requests through a SOCKS5 proxy (no auth, CONNECT to the
 *                            IPv4 TARGET, which runs `lpbench http`): CONCURRENCY threads, each
 *                            one request after the other on a new connection, until COUNT or
 *                            SECONDS: rate and per-request p50/p99 in microseconds.
 *   lpbench hold ADDR COUNT  open COUNT echo connections, 1-byte echo on each, print "ready N",
 *                            keep them open until SIGTERM/SIGINT (at most an hour).
 *   lpbench resume ADDR CONTROL CUTS INTERVAL_MS
 *                            1-byte ping-pong to an echo through a tunnel that runs through
 *                            scripts/faultrelay.py; every INTERVAL_MS send "cut" to the relay's
 *                            control port; per cut, the time from the cut to the first answer
 *                            delivered again (ms), then the median and the maximum.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_CHUNK (256 * 1024)
#define MAX_STREAMS 64
#define MAX_EVENTS 256
#define MAX_SAMPLES 1000000

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("lpbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned long parse_num(const char *s, const char *what)
{
    char *end = NULL;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end != '\0')
        die("bad %s: %s", what, s);
    return v;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct sockaddr_storage target;
static socklen_t target_len;

static void parse_addr(const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints = {0}, *ai = NULL;
    size_t hlen;

    if (colon == NULL || (hlen = (size_t)(colon - spec)) == 0 || hlen >= sizeof(host))
        die("bad address (want HOST:PORT): %s", spec);
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL)
        die("cannot resolve %s", spec);
    memcpy(&target, ai->ai_addr, ai->ai_addrlen);
    target_len = ai->ai_addrlen;
    freeaddrinfo(ai);
}

static void set_nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Returns a connected blocking socket, or -1 with errno set. */
static int dial(void)
{
    int fd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&target, target_len) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes; returns 0, or -1 on error or early EOF. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int echo_byte(int fd, char c)
{
    char back;

    if (write_all(fd, &c, 1) != 0 || read_all(fd, &back, 1) != 0)
        return -1;
    return back == c ? 0 : -1;
}

/* ---- targets ------------------------------------------------------------------------------- */

enum target_kind { TARGET_SINK, TARGET_ECHO, TARGET_HTTP };

#define HTTP_MAX_REQUEST 8192
static const char http_response[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                    "Content-Length: 13\r\nConnection: close\r\n\r\n"
                                    "hello, limpet";

struct conn {
    int fd;
    uint64_t count; /* sink, http: bytes received so far */
    uint32_t tail;  /* http: the last four bytes received, to find the blank line */
    char *pending;  /* echo: bytes read but not yet written back (NULL while none wait) */
    size_t off, len;
};

static int listen_on(unsigned long port)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 4096) != 0)
        die("listen on port %lu: %s", port, strerror(errno));
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    printf("port %u\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    free(c->pending);
    free(c);
}

static void accept_all(int epfd, int lfd)
{
    for (int i = 0; i < 1024; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        set_nodelay(fd);
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL)
            die("out of memory");
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl: %s", strerror(errno));
    }
}

/* Returns false when the connection is finished (the caller closes it). */
static bool sink_ready(struct conn *c, char *buf)
{
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(c->fd, buf, IO_CHUNK);
        if (n > 0) {
            c->count += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n < 0)
            return false;
        uint8_t reply[8];
        for (int b = 0; b < 8; b++)
            reply[b] = (uint8_t)(c->count >> (56 - 8 * b));
        /* 8 bytes into a socket whose send buffer is idle: a short write cannot happen. */
        ssize_t w = write(c->fd, reply, sizeof(reply));
        (void)w;
        return false;
    }
    return true;
}

/* Returns false when the connection is finished: the request's blank line came (answered),
 * the peer went away, or the request passed HTTP_MAX_REQUEST. */
static bool http_ready(struct conn *c, char *buf)
{
    for (int i = 0; i < 64; i++) {
        ssize_t n = read(c->fd, buf, IO_CHUNK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n <= 0)
            return false;
        c->count += (uint64_t)n;
        for (ssize_t k = 0; k < n; k++) {
            c->tail = c->tail << 8 | (uint8_t)buf[k];
            if (c->tail != 0x0d0a0d0au)
                continue;
            /* A short response into an idle socket: a short write cannot happen. */
            ssize_t w = write(c->fd, http_response, sizeof(http_response) - 1);
            (void)w;
            return false;
        }
        if (c->count > HTTP_MAX_REQUEST)
            return false;
    }
    return true;
}

/* Flushes what waits; returns 1 when all is out, 0 when the socket is full, -1 on error. */
static int echo_flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->pending + c->off, c->len - c->off);
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->off = c->len = 0;
    return 1;
}

static bool echo_ready(int epfd, struct conn *c, char *buf)
{
    int fl = echo_flush(c);

    for (int i = 0; fl == 1 && i < 64; i++) {
        ssize_t n = read(c->fd, buf, IO_CHUNK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        if (n <= 0)
            return false;
        if ((c->pending = malloc((size_t)n)) == NULL)
            die("out of memory");
        memcpy(c->pending, buf, (size_t)n);
        c->len = (size_t)n;
        fl = echo_flush(c);
    }
    if (fl < 0)
        return false;
    /* While output waits, stop reading: the peer's own flow control holds the rest. */
    struct epoll_event ev = {.events = fl == 0 ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return true;
}

static _Noreturn void run_server(enum target_kind kind, unsigned long port)
{
    static struct epoll_event evs[MAX_EVENTS];
    static struct conn listener;
    char *buf = malloc(IO_CHUNK);
    int epfd = epoll_create1(EPOLL_CLOEXEC);

    if (buf == NULL || epfd < 0)
        die("setup failed");
    listener.fd = listen_on(port);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener.fd, &lev);
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == &listener) {
                accept_all(epfd, listener.fd);
                continue;
            }
            bool keep = kind == TARGET_ECHO   ? echo_ready(epfd, c, buf)
                        : kind == TARGET_HTTP ? http_ready(c, buf)
                                              : sink_ready(c, buf);
            if (!keep)
                conn_close(c); /* close() also removes it from the epoll set */
        }
    }
}

/* ---- clients ------------------------------------------------------------------------------- */

struct tput_job {
    int fd;
    uint64_t quota;    /* bytes this stream sends at most */
    uint64_t deadline; /* ns: stop sending after this */
    uint64_t confirmed;
    uint64_t done_ns;
    const char *buf;
    bool failed;
};

static void *tput_stream(void *arg)
{
    struct tput_job *j = arg;
    uint64_t sent = 0;
    uint8_t reply[8];

    while (sent < j->quota && now_ns() < j->deadline) {
        size_t len = j->quota - sent < IO_CHUNK ? (size_t)(j->quota - sent) : IO_CHUNK;
        ssize_t n = write(j->fd, j->buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            j->failed = true;
            return NULL;
        }
        sent += (uint64_t)n;
    }
    shutdown(j->fd, SHUT_WR);
    if (read_all(j->fd, reply, sizeof(reply)) != 0) {
        j->failed = true;
        return NULL;
    }
    j->done_ns = now_ns();
    for (int b = 0; b < 8; b++)
        j->confirmed = j->confirmed << 8 | reply[b];
    return NULL;
}

static int run_tput(unsigned long streams, unsigned long long bytes, unsigned long seconds)
{
    static struct tput_job jobs[MAX_STREAMS];
    static pthread_t threads[MAX_STREAMS];
    char *buf = malloc(IO_CHUNK);
    uint64_t total = 0, end = 0;
    int failed = 0;

    if (streams == 0 || streams > MAX_STREAMS || buf == NULL)
        die("streams must be 1..%d", MAX_STREAMS);
    for (size_t i = 0; i < IO_CHUNK; i++)
        buf[i] = (char)(i * 131u + 7u);
    for (unsigned long i = 0; i < streams; i++) {
        if ((jobs[i].fd = dial()) < 0)
            die("connect: %s", strerror(errno));
        jobs[i].quota = bytes / streams;
        jobs[i].buf = buf;
    }
    /* A round trip on each connection first would need an echo; the first write instead
     * waits on the path's connect, which is part of what a forward costs anyway. */
    uint64_t start = now_ns();
    for (unsigned long i = 0; i < streams; i++) {
        jobs[i].deadline = start + (uint64_t)seconds * 1000000000u;
        if (pthread_create(&threads[i], NULL, tput_stream, &jobs[i]) != 0)
            die("pthread_create failed");
    }
    for (unsigned long i = 0; i < streams; i++) {
        pthread_join(threads[i], NULL);
        failed += jobs[i].failed;
        total += jobs[i].confirmed;
        if (jobs[i].done_ns > end)
            end = jobs[i].done_ns;
        close(jobs[i].fd);
    }
    if (failed || end <= start) {
        printf("error=%d streams failed\n", failed);
        return 1;
    }
    double secs = (double)(end - start) / 1e9;
    printf("bytes=%" PRIu64 " secs=%.3f bps=%.0f\n", total, secs, (double)total / secs);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int run_pingpong(unsigned long count)
{
    uint64_t *rtt = calloc(count ? count : 1, sizeof(*rtt));
    uint64_t deadline = now_ns() + 60ull * 1000000000u;
    unsigned long done = 0;
    int fd = dial();

    if (fd < 0 || rtt == NULL || count == 0 || count > MAX_SAMPLES)
        die("pingpong setup: %s", fd < 0 ? strerror(errno) : "bad count");
    for (int w = 0; w < 200; w++) /* warm-up: caches, code paths, TCP's slow start */
        if (echo_byte(fd, 'w') != 0)
            die("pingpong: connection failed during warm-up");
    while (done < count && now_ns() < deadline) {
        uint64_t t0 = now_ns();
        if (echo_byte(fd, (char)('a' + done % 26)) != 0)
            die("pingpong: connection failed after %lu round trips", done);
        rtt[done++] = now_ns() - t0;
    }
    close(fd);
    qsort(rtt, done, sizeof(*rtt), cmp_u64);
    printf("n=%lu p50_us=%.1f p99_us=%.1f max_us=%.1f\n", done, (double)rtt[done / 2] / 1e3,
           (double)rtt[done * 99 / 100] / 1e3, (double)rtt[done - 1] / 1e3);
    free(rtt);
    return 0;
}

static int run_connrate(unsigned long count, unsigned long seconds)
{
    uint64_t start = now_ns(), deadline = start + (uint64_t)seconds * 1000000000u;
    unsigned long ok = 0, failed = 0;

    while (ok + failed < count && now_ns() < deadline) {
        int fd = dial();
        if (fd < 0 || echo_byte(fd, 'c') != 0)
            failed++;
        else
            ok++;
        if (fd >= 0)
            close(fd);
    }
    double secs = (double)(now_ns() - start) / 1e9;
    printf("ok=%lu failed=%lu secs=%.3f rate=%.0f\n", ok, failed, secs, (double)ok / secs);
    return failed ? 1 : 0;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int run_hold(unsigned long count)
{
    int *fds = calloc(count ? count : 1, sizeof(*fds));

    if (fds == NULL)
        die("out of memory");
    raise_fd_limit();
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (unsigned long i = 0; i < count; i++) {
        if ((fds[i] = dial()) < 0 || echo_byte(fds[i], 'h') != 0)
            die("hold: connection %lu of %lu failed: %s", i + 1, count, strerror(errno));
    }
    printf("ready %lu\n", count);
    fflush(stdout);
    for (int i = 0; i < 3600 && !stop_requested; i++)
        sleep(1); /* a signal cuts the sleep short */
    for (unsigned long i = 0; i < count; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

/* ---- connconc: many connections in flight at once, driven by one epoll loop ------------- */

#define CONC_MSG "lpbench!"
#define CONC_MSG_LEN 8
#define CONC_MAX 20000
#define CONC_GRACE_NS (10ull * 1000000000u) /* in-flight connections get this after SECONDS */

enum slot_state { SLOT_IDLE, SLOT_CONNECTING, SLOT_READING };

struct slot {
    int fd;
    enum slot_state state;
    uint64_t t0;
    size_t got;
};

struct conc_run {
    int epfd;
    struct slot *slots;
    uint64_t *lat; /* ns per finished connection */
    unsigned long started, ok, failed, active;
};

/* Ends a slot's connection; a finished one (ok) records its latency. */
static void slot_end(struct conc_run *r, struct slot *s, bool ok)
{
    close(s->fd); /* also leaves the epoll set */
    s->fd = -1;
    s->state = SLOT_IDLE;
    r->active--;
    if (!ok) {
        r->failed++;
        return;
    }
    r->lat[r->ok++] = now_ns() - s->t0;
}

static void slot_start(struct conc_run *r, uint32_t idx)
{
    struct slot *s = &r->slots[idx];
    int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    r->started++;
    if (fd < 0) {
        r->failed++;
        return;
    }
    if (connect(fd, (struct sockaddr *)&target, target_len) != 0 && errno != EINPROGRESS) {
        close(fd);
        r->failed++;
        return;
    }
    set_nodelay(fd);
    *s = (struct slot){.fd = fd, .state = SLOT_CONNECTING, .t0 = now_ns()};
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl: %s", strerror(errno));
    r->active++;
}

static void slot_ready(struct conc_run *r, struct slot *s)
{
    char buf[64];
    int err = 0;
    socklen_t el = sizeof(err);

    if (s->state == SLOT_CONNECTING) {
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0 ||
            write(s->fd, CONC_MSG, CONC_MSG_LEN) != CONC_MSG_LEN) {
            slot_end(r, s, false);
            return;
        }
        s->state = SLOT_READING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(s - r->slots)};
        epoll_ctl(r->epfd, EPOLL_CTL_MOD, s->fd, &ev);
        return;
    }
    ssize_t n = read(s->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 || s->got + (size_t)n > CONC_MSG_LEN ||
        memcmp(buf, CONC_MSG + s->got, (size_t)n) != 0) {
        slot_end(r, s, false);
        return;
    }
    s->got += (size_t)n;
    if (s->got == CONC_MSG_LEN)
        slot_end(r, s, true);
}

static int run_connconc(unsigned long conc, unsigned long count, unsigned long seconds)
{
    static struct epoll_event evs[MAX_EVENTS];
    struct conc_run r = {0};

    if (conc == 0 || conc > CONC_MAX || count == 0 || count > MAX_SAMPLES)
        die("connconc: concurrency must be 1..%d, count 1..%d", CONC_MAX, MAX_SAMPLES);
    raise_fd_limit();
    r.epfd = epoll_create1(EPOLL_CLOEXEC);
    r.slots = calloc(conc, sizeof(*r.slots));
    r.lat = calloc(count, sizeof(*r.lat));
    if (r.epfd < 0 || r.slots == NULL || r.lat == NULL)
        die("connconc setup failed");
    uint64_t start = now_ns(), deadline = start + (uint64_t)seconds * 1000000000u;
    for (;;) {
        uint64_t now = now_ns();
        for (uint32_t i = 0; i < conc && r.started < count && now < deadline; i++)
            if (r.slots[i].state == SLOT_IDLE)
                slot_start(&r, i);
        if (r.active == 0 && (r.started >= count || now >= deadline))
            break;
        if (now >= deadline + CONC_GRACE_NS)
            break; /* what is still in flight counts as failed below */
        int n = epoll_wait(r.epfd, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++)
            slot_ready(&r, &r.slots[evs[i].data.u32]);
    }
    double secs = (double)(now_ns() - start) / 1e9;
    for (uint32_t i = 0; i < conc; i++)
        if (r.slots[i].state != SLOT_IDLE)
            slot_end(&r, &r.slots[i], false);
    qsort(r.lat, r.ok, sizeof(*r.lat), cmp_u64);
    printf("conc=%lu ok=%lu failed=%lu secs=%.3f rate=%.0f p50_us=%.1f p99_us=%.1f\n", conc, r.ok,
           r.failed, secs, (double)r.ok / secs, r.ok ? (double)r.lat[r.ok / 2] / 1e3 : 0.0,
           r.ok ? (double)r.lat[r.ok * 99 / 100] / 1e3 : 0.0);
    close(r.epfd);
    free(r.slots);
    free(r.lat);
    return r.ok ? 0 : 1;
}

/* ---- socks: HTTP requests through a SOCKS5 proxy, one connection each ------------------- */

#define SOCKS_MAX_THREADS 256

static struct sockaddr_in socks_dest; /* what CONNECT asks for */
static uint64_t socks_deadline;
static unsigned long socks_count;
static uint64_t *socks_lat; /* per request index, 0 = failed */
static atomic_ulong socks_next;

static int socks_handshake(int fd)
{
    static const uint8_t hello[3] = {5, 1, 0};
    uint8_t req[10] = {5, 1, 0, 1}, rep[4], skip[262];

    memcpy(req + 4, &socks_dest.sin_addr, 4);
    memcpy(req + 8, &socks_dest.sin_port, 2);
    if (write_all(fd, hello, sizeof(hello)) != 0 || read_all(fd, rep, 2) != 0 || rep[0] != 5 ||
        rep[1] != 0)
        return -1;
    if (write_all(fd, req, sizeof(req)) != 0 || read_all(fd, rep, 4) != 0 || rep[1] != 0)
        return -1;
    size_t alen = rep[3] == 1 ? 4 : rep[3] == 4 ? 16 : 0;
    if (rep[3] == 3) {
        if (read_all(fd, skip, 1) != 0)
            return -1;
        alen = skip[0];
    } else if (alen == 0) {
        return -1;
    }
    return read_all(fd, skip, alen + 2); /* the bound address and port: not needed */
}

/* True once resp (NUL-terminated) holds a whole response: its headers and Content-Length
 * bytes of body. The request is done then, as for curl: the close that follows is not waited
 * for (through ssh -N that close alone can take a delayed-ACK timer, 40 ms). */
static bool http_complete(const char *resp, size_t got)
{
    const char *end = strstr(resp, "\r\n\r\n");
    const char *cl = strstr(resp, "Content-Length: ");

    if (end == NULL || cl == NULL || cl > end)
        return false;
    return got - (size_t)(end + 4 - resp) >= strtoul(cl + 16, NULL, 10);
}

/* One request on a new connection; returns 0 when a whole "200" response came back. */
static int socks_request(void)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    struct timeval tv = {.tv_sec = 10};
    char resp[1024];
    size_t got = 0;
    int rc = -1, fd = dial();

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (socks_handshake(fd) != 0 || write_all(fd, get, sizeof(get) - 1) != 0)
        goto out;
    resp[0] = '\0';
    while (!http_complete(resp, got)) {
        ssize_t n = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (got += (size_t)n) == sizeof(resp) - 1)
            goto out; /* early end, or far more than the target sends */
        resp[got] = '\0';
    }
    if (strncmp(resp, "HTTP/1.1 200 ", 13) == 0 && strstr(resp, "hello, limpet") != NULL)
        rc = 0;
out:
    close(fd);
    return rc;
}

static void *socks_worker(void *arg)
{
    (void)arg;
    for (;;) {
        if (now_ns() >= socks_deadline)
            return NULL; /* before claiming an index: a claimed one counts as tried */
        unsigned long i = atomic_fetch_add(&socks_next, 1);
        if (i >= socks_count)
            return NULL;
        uint64_t t0 = now_ns();
        if (socks_request() == 0)
            socks_lat[i] = now_ns() - t0;
    }
}

static int run_socks(const char *dest, unsigned long conc, unsigned long count,
                     unsigned long seconds)
{
    static pthread_t threads[SOCKS_MAX_THREADS];
    const char *colon = strrchr(dest, ':');
    char host[64];

    if (colon == NULL || (size_t)(colon - dest) >= sizeof(host))
        die("socks: bad target (want IPV4:PORT): %s", dest);
    memcpy(host, dest, (size_t)(colon - dest));
    host[colon - dest] = '\0';
    socks_dest.sin_family = AF_INET;
    socks_dest.sin_port = htons((uint16_t)parse_num(colon + 1, "target port"));
    if (inet_pton(AF_INET, host, &socks_dest.sin_addr) != 1)
        die("socks: the target must be an IPv4 address: %s", dest);
    if (conc == 0 || conc > SOCKS_MAX_THREADS || count == 0 || count > MAX_SAMPLES)
        die("socks: concurrency must be 1..%d, count 1..%d", SOCKS_MAX_THREADS, MAX_SAMPLES);
    if ((socks_lat = calloc(count, sizeof(*socks_lat))) == NULL)
        die("out of memory");
    socks_count = count;
    uint64_t start = now_ns();
    socks_deadline = start + (uint64_t)seconds * 1000000000u;
    for (unsigned long i = 0; i < conc; i++)
        if (pthread_create(&threads[i], NULL, socks_worker, NULL) != 0)
            die("pthread_create failed");
    for (unsigned long i = 0; i < conc; i++)
        pthread_join(threads[i], NULL);
    double secs = (double)(now_ns() - start) / 1e9;
    unsigned long tried = atomic_load(&socks_next), ok = 0;
    if (tried > count)
        tried = count;
    for (unsigned long i = 0; i < tried; i++)
        if (socks_lat[i] != 0)
            socks_lat[ok++] = socks_lat[i];
    qsort(socks_lat, ok, sizeof(*socks_lat), cmp_u64);
    printf("conc=%lu ok=%lu failed=%lu secs=%.3f rate=%.0f p50_us=%.1f p99_us=%.1f\n", conc, ok,
           tried - ok, secs, (double)ok / secs, ok ? (double)socks_lat[ok / 2] / 1e3 : 0.0,
           ok ? (double)socks_lat[ok * 99 / 100] / 1e3 : 0.0);
    free(socks_lat);
    return ok ? 0 : 1;
}

/* ---- resume: ping-pong in one thread, cuts through the relay's control port in another ---- */

struct round {
    uint64_t start, end;
};

static struct round *rounds;
static size_t nrounds;
static atomic_int pingers_done, pinger_failed; /* rounds[] is read only after the join */

static void *pinger(void *arg)
{
    int fd = *(int *)arg;
    struct timeval tv = {.tv_sec = 15};

    /* A tunnel that never comes back must end the run, not hang it. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (size_t i = 0; !pingers_done && i < MAX_SAMPLES; i++) {
        uint64_t t0 = now_ns();
        if (echo_byte(fd, (char)('a' + i % 26)) != 0) {
            pinger_failed = 1;
            break;
        }
        rounds[nrounds++] = (struct round){t0, now_ns()};
    }
    return NULL;
}

/* Sends "cut" on the control connection; returns how many connections it cut, -1 on error. */
static long relay_cut(FILE *ctl_in, int ctl_fd)
{
    char line[256];

    if (write_all(ctl_fd, "cut\n", 4) != 0 || fgets(line, sizeof(line), ctl_in) == NULL)
        return -1;
    const char *at = strstr(line, "cut=");
    return strncmp(line, "ok", 2) == 0 && at ? strtol(at + 4, NULL, 10) : -1;
}

/* The longest wait any round trip had between cut i and the next cut: from the cut (or the
 * round's start, if later) to its answer. That is the cut-to-first-byte-again time. */
static double resume_ms(uint64_t cut, uint64_t next_cut)
{
    uint64_t worst = 0;

    for (size_t r = 0; r < nrounds; r++) {
        if (rounds[r].end <= cut || rounds[r].start >= next_cut)
            continue;
        uint64_t from = rounds[r].start > cut ? rounds[r].start : cut;
        if (rounds[r].end - from > worst)
            worst = rounds[r].end - from;
    }
    return (double)worst / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int run_resume(const char *control, unsigned long cuts, unsigned long interval_ms)
{
    static uint64_t cut_at[1024];
    static double res[1024];
    unsigned long made = 0;
    pthread_t th;
    int fd = dial();

    if (fd < 0 || cuts == 0 || cuts > 1000 || interval_ms == 0)
        die("resume: bad arguments or connect failed");
    if ((rounds = calloc(MAX_SAMPLES, sizeof(*rounds))) == NULL)
        die("out of memory");
    for (int w = 0; w < 200; w++)
        if (echo_byte(fd, 'w') != 0)
            die("resume: connection failed during warm-up");
    parse_addr(control);
    int ctl = dial();
    FILE *ctl_in = ctl >= 0 ? fdopen(dup(ctl), "r") : NULL;
    if (ctl_in == NULL)
        die("resume: cannot reach the relay control port %s", control);
    pthread_create(&th, NULL, pinger, &fd);
    for (int tries = 0; made < cuts && tries < (int)cuts * 4 && !pinger_failed; tries++) {
        usleep((useconds_t)interval_ms * 1000u);
        uint64_t t = now_ns();
        long n = relay_cut(ctl_in, ctl);
        if (n < 0)
            die("resume: the relay did not accept 'cut'");
        if (n > 0) /* 0: the tunnel was between connections; that cut hit nothing */
            cut_at[made++] = t;
    }
    usleep((useconds_t)interval_ms * 1000u);
    pingers_done = 1;
    pthread_join(th, NULL);
    if (pinger_failed)
        die("resume: the forwarded connection broke (or stalled 15 s) after %zu round trips",
            nrounds);
    for (unsigned long i = 0; i < made; i++) {
        res[i] = resume_ms(cut_at[i], i + 1 < made ? cut_at[i + 1] : UINT64_MAX);
        printf("cut %lu resume_ms=%.2f\n", i + 1, res[i]);
    }
    qsort(res, made, sizeof(res[0]), cmp_double);
    printf("cuts=%lu rounds=%zu median_ms=%.2f max_ms=%.2f\n", made, nrounds,
           made ? res[made / 2] : 0.0, made ? res[made - 1] : 0.0);
    fclose(ctl_in);
    close(ctl);
    close(fd);
    return made ? 0 : 1;
}

static void usage(void)
{
    fputs("usage: lpbench sink|echo PORT\n"
          "       lpbench tput HOST:PORT STREAMS BYTES SECONDS\n"
          "       lpbench pingpong HOST:PORT COUNT\n"
          "       lpbench connrate HOST:PORT COUNT SECONDS\n"
          "       lpbench connconc HOST:PORT CONCURRENCY COUNT SECONDS\n"
          "       lpbench socks PROXY_HOST:PORT TARGET_IPV4:PORT CONCURRENCY COUNT SECONDS\n"
          "       lpbench hold HOST:PORT COUNT\n"
          "       lpbench resume HOST:PORT CONTROL_HOST:PORT CUTS INTERVAL_MS\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3)
        usage();
    const char *mode = argv[1];
    if (strcmp(mode, "sink") == 0 || strcmp(mode, "echo") == 0 || strcmp(mode, "http") == 0) {
        raise_fd_limit();
        run_server(mode[0] == 'e'   ? TARGET_ECHO
                   : mode[0] == 'h' ? TARGET_HTTP
                                    : TARGET_SINK,
                   parse_num(argv[2], "port"));
    }
    parse_addr(argv[2]);
    if (strcmp(mode, "tput") == 0 && argc == 6)
        return run_tput(parse_num(argv[3], "streams"), parse_num(argv[4], "bytes"),
                        parse_num(argv[5], "seconds"));
    if (strcmp(mode, "pingpong") == 0 && argc == 4)
        return run_pingpong(parse_num(argv[3], "count"));
    if (strcmp(mode, "connrate") == 0 && argc == 5)
        return run_connrate(parse_num(argv[3], "count"), parse_num(argv[4], "seconds"));
    if (strcmp(mode, "connconc") == 0 && argc == 6)
        return run_connconc(parse_num(argv[3], "concurrency"), parse_num(argv[4], "count"),
                            parse_num(argv[5], "seconds"));
    if (strcmp(mode, "socks") == 0 && argc == 7)
        return run_socks(argv[3], parse_num(argv[4], "concurrency"), parse_num(argv[5], "count"),
                         parse_num(argv[6], "seconds"));
    if (strcmp(mode, "hold") == 0 && argc == 4)
        return run_hold(parse_num(argv[3], "count"));
    if (strcmp(mode, "resume") == 0 && argc == 6)
        return run_resume(argv[3], parse_num(argv[4], "cuts"), parse_num(argv[5], "interval"));
    usage();
    return 2;
}
