/* fuzz_socks.c — libFuzzer target for the SOCKS5 / SOCKS4(a) handshake parser (socks.h).
 *
 * Input: byte 0 low 3 bits = k, the number of chunk sizes that follow (bytes 1..k, 0 means 1);
 * the rest is what the client sends, fed in those chunk sizes (the last size repeats). The
 * same stream is also fed in one call. Properties that abort on failure:
 * - every call: used <= the chunk, out_len <= LP_SOCKS_OUT_MAX, host NUL-terminated within
 *   LP_SOCKS_HOST_MAX; NEED_MORE consumes the whole chunk; FAIL is final and sets why;
 * - chunked and one-shot runs end in the same state with the same output, target and (on
 *   REQUEST) the same count of handshake bytes: how the bytes arrive never matters;
 * - a v5 IPv6 target's text reads back (inet_pton, an oracle only) to the bytes sent, and
 *   matches glibc's inet_ntop wherever that does not choose dotted-quad notation;
 * - the final reply is 10 bytes (v5) or 8 (v4) with the right version byte.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/socks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

struct run {
    enum lp_socks_state st;
    uint8_t out[4 * LP_SOCKS_OUT_MAX]; /* everything the client heard */
    size_t out_len;
    size_t used; /* handshake bytes consumed until REQUEST */
};

static void check_call(const struct lp_socks *s, enum lp_socks_state st, size_t used, size_t n)
{
    check(used <= n);
    check(s->out_len <= LP_SOCKS_OUT_MAX);
    check(memchr(s->host, '\0', LP_SOCKS_HOST_MAX) != NULL);
    if (st == LP_SOCKS_NEED_MORE)
        check(used == n);
    if (st == LP_SOCKS_FAIL)
        check(s->why != NULL && s->why[0] != '\0');
    if (st == LP_SOCKS_REQUEST)
        check(s->host[0] != '\0' && (s->version == LP_SOCKS_V4 || s->version == LP_SOCKS_V5));
}

/* Drains s->out the way the caller does. */
static void collect(struct lp_socks *s, struct run *r)
{
    check(r->out_len + s->out_len <= sizeof(r->out));
    memcpy(r->out + r->out_len, s->out, s->out_len);
    r->out_len += s->out_len;
    s->out_len = 0;
}

static void run_chunked(struct lp_socks *s, struct run *r, const uint8_t *sizes, size_t k,
                        const uint8_t *in, size_t n)
{
    size_t off = 0, i = 0, used;

    lp_socks_init(s);
    memset(r, 0, sizeof(*r));
    r->st = LP_SOCKS_NEED_MORE;
    while (off < n || i == 0) { /* at least one call, even with nothing to feed */
        size_t chunk = k == 0 ? n : sizes[i < k ? i : k - 1];
        if (chunk == 0)
            chunk = 1;
        if (chunk > n - off)
            chunk = n - off;
        enum lp_socks_state prev = r->st;
        r->st = lp_socks_feed(s, in + off, chunk, &used);
        check_call(s, r->st, used, chunk);
        if (prev == LP_SOCKS_FAIL)
            check(r->st == LP_SOCKS_FAIL && used == 0);
        if (prev == LP_SOCKS_REQUEST)
            check(r->st == LP_SOCKS_REQUEST && used == 0);
        r->used += used;
        collect(s, r);
        off += chunk;
        i++;
    }
}

/* A v5 IPv6 request's address bytes, when the stream is one (greeting, then ATYP 4). */
static const uint8_t *v5_ipv6_addr(const uint8_t *in, size_t n)
{
    size_t g;

    if (n < 2 || in[0] != 5)
        return NULL;
    g = 2 + (size_t)in[1];
    if (n < g + 4 + 16 || in[g + 3] != 4)
        return NULL;
    return in + g + 4;
}

static void check_ipv6_text(const char *host, const uint8_t *addr)
{
    uint8_t back[16];
    char ntop[INET6_ADDRSTRLEN];

    check(inet_pton(AF_INET6, host, back) == 1);
    check(memcmp(back, addr, 16) == 0);
    check(inet_ntop(AF_INET6, addr, ntop, sizeof(ntop)) != NULL);
    if (strchr(ntop, '.') == NULL)
        check(strcmp(ntop, host) == 0);
}

static void check_reply(struct lp_socks *s, uint16_t code)
{
    s->out_len = 0;
    lp_socks_reply(s, code);
    check(s->out_len == (s->version == LP_SOCKS_V5 ? 10u : 8u));
    check(s->out[0] == (s->version == LP_SOCKS_V5 ? 5 : 0));
    check((s->out[1] == 0 || s->out[1] == 0x5a) == (code == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_socks chunked, whole;
    struct run a, b;
    size_t k, used;
    char target[LP_SOCKS_HOST_MAX + 16];
    const uint8_t *addr;

    if (size == 0)
        return 0;
    k = data[0] & 7u;
    if (size < 1 + k)
        return 0;
    const uint8_t *in = data + 1 + k;
    size_t n = size - 1 - k;

    run_chunked(&chunked, &a, data + 1, k, in, n);
    run_chunked(&whole, &b, NULL, 0, in, n);
    check(a.st == b.st);
    check(a.out_len == b.out_len && memcmp(a.out, b.out, a.out_len) == 0);
    if (a.st != LP_SOCKS_REQUEST)
        return 0;
    check(a.used == b.used);
    check(strcmp(chunked.host, whole.host) == 0 && chunked.port == whole.port);
    lp_socks_target(&chunked, target, sizeof(target));
    check(strlen(target) > strlen(chunked.host));
    if (chunked.version == LP_SOCKS_V5 && (addr = v5_ipv6_addr(in, n)) != NULL)
        check_ipv6_text(chunked.host, addr);
    check_reply(&chunked, (uint16_t)(n > 0 ? in[n - 1] % 16 : 0));
    check(lp_socks_feed(&chunked, in, n, &used) != LP_SOCKS_NEED_MORE && used == 0);
    return 0;
}
