/* lpbench.c — load generators and targets for scripts/bench.sh, fast enough that they are never
 * the bottleneck of what they measure. Linux only; one file; built by bench.sh with cc -O2.
 *
 * Targets (PORT 0 = pick a free one; the port is printed as "port N" on stdout):
 *   lpbench sink PORT        per connection: read and discard until EOF, then write the byte
 *                            count as a u64 (big-endian) and close. The count is what arrived.
 *   lpbench echo PORT        echo every byte back; close after EOF once everything is written.
 * Clients (HOST:PORT is the entry of the path under test; results are one "key=value" line):
 *   lpbench tput ADDR STREAMS BYTES SECONDS
 *                            STREAMS connections to a sink share BYTES, stopped after SECONDS;
 *                            the rate counts bytes the sink confirmed, up to its last reply.
 *   lpbench pingpong ADDR COUNT
 *                            1-byte round trips on one connection: p50/p99/max in microseconds.
 *   lpbench connrate ADDR COUNT SECONDS
 *                            connect, send 1 byte, read the echo, close; one after the other.
 *   lpbench hold ADDR COUNT  open COUNT echo connections, 1-byte echo on each, print "ready N",
 *                            keep them open until SIGTERM/SIGINT (at most an hour).
 *   lpbench resume ADDR CONTROL CUTS INTERVAL_MS
 *                            1-byte ping-pong to an echo through a tunnel that runs through
 *                            scripts/faultrelay.py; every INTERVAL_MS send "cut" to the relay's
 *                            control port; per cut, the time from the cut to the first answer
 *                            delivered again (ms), then the median and the maximum.
 */
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

struct conn {
    int fd;
    uint64_t count; /* sink: bytes received so far */
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

static _Noreturn void run_server(bool echo, unsigned long port)
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
            bool keep = echo ? echo_ready(epfd, c, buf) : sink_ready(c, buf);
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
    if (strcmp(mode, "sink") == 0 || strcmp(mode, "echo") == 0) {
        raise_fd_limit();
        run_server(mode[0] == 'e', parse_num(argv[2], "port"));
    }
    parse_addr(argv[2]);
    if (strcmp(mode, "tput") == 0 && argc == 6)
        return run_tput(parse_num(argv[3], "streams"), parse_num(argv[4], "bytes"),
                        parse_num(argv[5], "seconds"));
    if (strcmp(mode, "pingpong") == 0 && argc == 4)
        return run_pingpong(parse_num(argv[3], "count"));
    if (strcmp(mode, "connrate") == 0 && argc == 5)
        return run_connrate(parse_num(argv[3], "count"), parse_num(argv[4], "seconds"));
    if (strcmp(mode, "hold") == 0 && argc == 4)
        return run_hold(parse_num(argv[3], "count"));
    if (strcmp(mode, "resume") == 0 && argc == 6)
        return run_resume(argv[3], parse_num(argv[4], "cuts"), parse_num(argv[5], "interval"));
    usage();
    return 2;
}
