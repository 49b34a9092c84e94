/* socks.c — the server side of a SOCKS5 (RFC 1928) / SOCKS4(a) handshake. See socks.h.
 *
 * Input is copied into s->buf and parsed from its start each time, so a message split over
 * any number of reads parses the same as one read. s->buf only ever holds a strict prefix of
 * the message the current phase waits for (a finished greeting is moved out before the request
 * is parsed), which is what lets *used be computed from what is left over: every byte left
 * after the request came from this call's data and belongs to the stream.
 *
 * A refusal is decided as soon as the bytes that justify it have arrived (a bad command is
 * answered without waiting for the address), because the connection is closed anyway.
 */
#include "limpet/socks.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "limpet/frame.h"
#include "limpet/wire.h"

enum phase {
    PHASE_START = 0,  /* waiting for the first message; its first byte says the version */
    PHASE_V5_REQUEST, /* v5 method chosen: waiting for the CONNECT request */
    PHASE_REQUEST,    /* target known: waiting for lp_socks_reply */
    PHASE_REPLIED,    /* final reply written: the stream is the caller's */
    PHASE_FAILED,     /* refused: the caller writes the refusal and closes */
};

enum step { STEP_MORE, STEP_DONE, STEP_FAIL };

/* SOCKS5 method and reply codes (RFC 1928 sections 3 and 6). */
#define V5_METHOD_NONE 0x00
#define V5_METHOD_REFUSED 0xff
#define V5_REP_OK 0x00
#define V5_REP_FAILURE 0x01
#define V5_REP_NOT_ALLOWED 0x02
#define V5_REP_HOST_UNREACHABLE 0x04
#define V5_REP_REFUSED 0x05
#define V5_REP_TTL_EXPIRED 0x06
#define V5_REP_BAD_COMMAND 0x07
#define V5_REP_BAD_ATYP 0x08
#define V5_CMD_CONNECT 0x01
#define V5_ATYP_IPV4 0x01
#define V5_ATYP_DOMAIN 0x03
#define V5_ATYP_IPV6 0x04
/* SOCKS4 reply codes; the reply's version byte is 0, not 4. */
#define V4_CMD_CONNECT 0x01
#define V4_GRANTED 0x5a
#define V4_REJECTED 0x5b

#define NAME_MAX_LEN 255u /* a v5 domain, a v4 user id or a v4a domain */

/* Appends to the pending output. Every sequence limpet writes (method reply + final reply,
 * 12 bytes) fits LP_SOCKS_OUT_MAX, so a refusal here means a caller that never drains out. */
static void emit(struct lp_socks *s, const uint8_t *bytes, size_t n)
{
    if (n > sizeof(s->out) || sizeof(s->out) - n < s->out_len)
        return;
    memcpy(s->out + s->out_len, bytes, n);
    s->out_len += n;
}

/* BND.ADDR is 0.0.0.0:0: the stream is dialled by the far server, so no local bound address
 * would mean anything to the client, and clients ignore it for CONNECT. */
static void emit_v5_reply(struct lp_socks *s, uint8_t rep)
{
    const uint8_t reply[10] = {5, rep, 0, V5_ATYP_IPV4, 0, 0, 0, 0, 0, 0};
    emit(s, reply, sizeof(reply));
}

static void emit_v4_reply(struct lp_socks *s, uint8_t code)
{
    const uint8_t reply[8] = {0, code, 0, 0, 0, 0, 0, 0};
    emit(s, reply, sizeof(reply));
}

static enum step fail_v5(struct lp_socks *s, uint8_t rep, const char *why)
{
    emit_v5_reply(s, rep);
    s->why = why;
    return STEP_FAIL;
}

static enum step fail_v4(struct lp_socks *s, const char *why)
{
    emit_v4_reply(s, V4_REJECTED);
    s->why = why;
    return STEP_FAIL;
}

/* RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups
 * (the first on a tie) written as "::". Plain hex even for v4-mapped addresses: it is valid
 * RFC 4291 text and every parser limpet hands it to reads it. */
static void format_ipv6(const uint8_t a[16], char *out, size_t cap)
{
    unsigned group[8];
    size_t best = 8, best_len = 1, off = 0;

    for (size_t i = 0; i < 8; i++)
        group[i] = (unsigned)lp_load_u16(a + 2 * i);
    for (size_t i = 0, run = 0; i < 8; i++) {
        run = group[i] == 0 ? run + 1 : 0;
        if (run > best_len) {
            best_len = run;
            best = i + 1 - run;
        }
    }
    out[0] = '\0';
    for (size_t i = 0; i < 8 && off < cap; i++) {
        if (i == best) {
            off += (size_t)snprintf(out + off, cap - off, "::");
            i += best_len - 1;
            continue;
        }
        const char *sep = (i == 0 || i == best + best_len) ? "" : ":";
        off += (size_t)snprintf(out + off, cap - off, "%s%x", sep, group[i]);
    }
}

static void format_ipv4(const uint8_t a[4], char *out, size_t cap)
{
    snprintf(out, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
}

/* A name must be a usable host: not empty, and no NUL or other control byte (a NUL would cut
 * it short, and control bytes have no place in a host name but could forge log lines). */
static bool name_ok(const uint8_t *name, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < 0x20 || name[i] == 0x7f)
            return false;
    }
    return true;
}

static void set_name(struct lp_socks *s, const uint8_t *name, size_t n)
{
    memcpy(s->host, name, n); /* n <= NAME_MAX_LEN < sizeof(s->host) */
    s->host[n] = '\0';
}

static enum step parse_v5_greeting(struct lp_socks *s, struct lp_rd *r)
{
    static const uint8_t accept[2] = {5, V5_METHOD_NONE};
    static const uint8_t refuse[2] = {5, V5_METHOD_REFUSED};
    uint8_t ver, nmethods;

    lp_rd_u8(r, &ver);
    lp_rd_u8(r, &nmethods);
    if (r->bad)
        return STEP_MORE;
    if (nmethods == 0) { /* malformed, but "no acceptable method" is still the true answer */
        emit(s, refuse, sizeof(refuse));
        s->why = "SOCKS5 greeting offers no methods";
        return STEP_FAIL;
    }
    const uint8_t *methods = lp_rd_view(r, nmethods);
    if (methods == NULL)
        return STEP_MORE;
    if (memchr(methods, V5_METHOD_NONE, nmethods) == NULL) {
        emit(s, refuse, sizeof(refuse));
        s->why = "SOCKS5 client does not offer the no-authentication method";
        return STEP_FAIL;
    }
    emit(s, accept, sizeof(accept));
    return STEP_DONE;
}

/* Reads DST.ADDR for atyp into s->host. */
static enum step parse_v5_address(struct lp_socks *s, struct lp_rd *r, uint8_t atyp)
{
    const uint8_t *addr;
    uint8_t dlen;

    switch (atyp) {
    case V5_ATYP_IPV4:
        if ((addr = lp_rd_view(r, 4)) == NULL)
            return STEP_MORE;
        format_ipv4(addr, s->host, sizeof(s->host));
        return STEP_DONE;
    case V5_ATYP_IPV6:
        if ((addr = lp_rd_view(r, 16)) == NULL)
            return STEP_MORE;
        format_ipv6(addr, s->host, sizeof(s->host));
        return STEP_DONE;
    case V5_ATYP_DOMAIN:
        lp_rd_u8(r, &dlen);
        if (r->bad)
            return STEP_MORE;
        if (dlen == 0)
            return fail_v5(s, V5_REP_FAILURE, "SOCKS5 request has an empty domain name");
        if ((addr = lp_rd_view(r, dlen)) == NULL)
            return STEP_MORE;
        if (!name_ok(addr, dlen))
            return fail_v5(s, V5_REP_FAILURE, "SOCKS5 domain name holds a control byte");
        set_name(s, addr, dlen);
        return STEP_DONE;
    default:
        return fail_v5(s, V5_REP_BAD_ATYP, "SOCKS5 address type not supported");
    }
}

static enum step parse_v5_request(struct lp_socks *s, struct lp_rd *r)
{
    uint8_t ver, cmd, rsv, atyp;
    uint16_t port;
    enum step st;

    lp_rd_u8(r, &ver);
    lp_rd_u8(r, &cmd);
    lp_rd_u8(r, &rsv);
    lp_rd_u8(r, &atyp);
    if (r->bad)
        return STEP_MORE;
    if (ver != 5 || rsv != 0)
        return fail_v5(s, V5_REP_FAILURE, "malformed SOCKS5 request");
    if (cmd != V5_CMD_CONNECT)
        return fail_v5(s, V5_REP_BAD_COMMAND, "SOCKS5 command not supported (CONNECT only)");
    if ((st = parse_v5_address(s, r, atyp)) != STEP_DONE)
        return st;
    lp_rd_u16(r, &port);
    if (r->bad)
        return STEP_MORE;
    s->port = port;
    return STEP_DONE;
}

enum cstr { CSTR_OK, CSTR_MORE, CSTR_LONG };

/* Reads a NUL-terminated string of at most max bytes (plus the NUL) and returns it in
 * *str / *n (borrowed from the reader's buffer, without the NUL). CSTR_LONG when max bytes
 * have arrived and none of them, nor the next, is the NUL. */
static enum cstr read_cstr(struct lp_rd *r, size_t max, const uint8_t **str, size_t *n)
{
    struct lp_rd probe = *r; /* look ahead without moving r until the NUL is found */
    size_t avail = lp_rd_remaining(r);
    const uint8_t *view, *nul;

    if (avail > max + 1)
        avail = max + 1;
    if ((view = lp_rd_view(&probe, avail)) == NULL || (nul = memchr(view, 0, avail)) == NULL)
        return avail == max + 1 ? CSTR_LONG : CSTR_MORE;
    *n = (size_t)(nul - view);
    *str = lp_rd_view(r, *n + 1);
    return CSTR_OK;
}

/* SOCKS4: VN CD DSTPORT DSTIP USERID NUL; SOCKS4a: DSTIP 0.0.0.x (x != 0), then HOST NUL. */
static enum step parse_v4_request(struct lp_socks *s, struct lp_rd *r)
{
    uint8_t ver, cmd, ip[4];
    uint16_t port;
    const uint8_t *str;
    size_t n;
    enum cstr c;

    lp_rd_u8(r, &ver);
    lp_rd_u8(r, &cmd);
    if (r->bad)
        return STEP_MORE;
    if (cmd != V4_CMD_CONNECT)
        return fail_v4(s, "SOCKS4 command not supported (CONNECT only)");
    lp_rd_u16(r, &port);
    lp_rd_bytes(r, ip, sizeof(ip));
    if (r->bad)
        return STEP_MORE;
    if ((c = read_cstr(r, NAME_MAX_LEN, &str, &n)) != CSTR_OK) /* the user id is ignored */
        return c == CSTR_MORE ? STEP_MORE : fail_v4(s, "SOCKS4 user id too long");
    s->port = port;
    if (!(ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0)) {
        format_ipv4(ip, s->host, sizeof(s->host));
        return STEP_DONE;
    }
    if ((c = read_cstr(r, NAME_MAX_LEN, &str, &n)) != CSTR_OK)
        return c == CSTR_MORE ? STEP_MORE : fail_v4(s, "SOCKS4a host name too long");
    if (!name_ok(str, n))
        return fail_v4(s, "SOCKS4a host name is empty or holds a control byte");
    set_name(s, str, n);
    return STEP_DONE;
}

/* Parses the message the phase waits for from the start of s->buf; *k is its length. */
static enum step parse_step(struct lp_socks *s, size_t *k)
{
    struct lp_rd r = lp_rd_init(s->buf, s->len);
    enum step st;

    if (s->len == 0)
        return STEP_MORE;
    if (s->phase == PHASE_V5_REQUEST) {
        st = parse_v5_request(s, &r);
    } else if (s->buf[0] == 5) {
        s->version = LP_SOCKS_V5;
        st = parse_v5_greeting(s, &r);
    } else if (s->buf[0] == 4) {
        s->version = LP_SOCKS_V4;
        st = parse_v4_request(s, &r);
    } else {
        s->why = "not a SOCKS4 or SOCKS5 client"; /* no reply: we do not know its language */
        return STEP_FAIL;
    }
    *k = r.off;
    return st;
}

void lp_socks_init(struct lp_socks *s)
{
    memset(s, 0, sizeof(*s));
    s->phase = PHASE_START;
}

enum lp_socks_state lp_socks_feed(struct lp_socks *s, const uint8_t *data, size_t n, size_t *used)
{
    size_t take = sizeof(s->buf) - s->len, k = 0;

    *used = 0;
    if (s->phase == PHASE_FAILED)
        return LP_SOCKS_FAIL;
    if (s->phase == PHASE_REQUEST || s->phase == PHASE_REPLIED)
        return LP_SOCKS_REQUEST; /* everything from here on is the stream's */
    if (take > n)
        take = n;
    if (take > 0) /* data may be NULL when n is 0 */
        memcpy(s->buf + s->len, data, take);
    s->len += take;
    for (int round = 0; round < 2; round++) { /* at most a greeting, then a request */
        enum step st = parse_step(s, &k);
        if (st == STEP_MORE && s->len == sizeof(s->buf)) {
            s->why = "SOCKS request too long"; /* unreachable with the caps above; kept as a cap */
            st = STEP_FAIL;
        }
        if (st == STEP_MORE) {
            *used = take;
            return LP_SOCKS_NEED_MORE;
        }
        if (st == STEP_FAIL)
            break;
        if (s->phase == PHASE_START && s->version == LP_SOCKS_V5) {
            memmove(s->buf, s->buf + k, s->len - k); /* the rest may be a pipelined request */
            s->len -= k;
            s->phase = PHASE_V5_REQUEST;
            continue;
        }
        /* s->buf held only a prefix of this request before the call, so the s->len - k
         * bytes after it all came from data and are the client's first stream bytes. */
        *used = take - (s->len - k);
        s->len = 0;
        s->phase = PHASE_REQUEST;
        return LP_SOCKS_REQUEST;
    }
    *used = take;
    s->len = 0;
    s->phase = PHASE_FAILED;
    return LP_SOCKS_FAIL;
}

/* RFC 1928 has no code for "the target name is not valid"; BAD_TARGET goes to host
 * unreachable (04), the same answer as a name that does not resolve (UNREACHABLE covers DNS
 * failures), rather than a general failure that tells the user nothing. */
static uint8_t v5_rep_for(uint16_t rst_code)
{
    switch (rst_code) {
    case 0:
        return V5_REP_OK;
    case LP_RST_NOT_ALLOWED:
        return V5_REP_NOT_ALLOWED;
    case LP_RST_UNREACHABLE:
    case LP_RST_BAD_TARGET:
        return V5_REP_HOST_UNREACHABLE;
    case LP_RST_REFUSED:
        return V5_REP_REFUSED;
    case LP_RST_TIMEOUT:
        return V5_REP_TTL_EXPIRED;
    default:
        return V5_REP_FAILURE;
    }
}

void lp_socks_reply(struct lp_socks *s, uint16_t rst_code)
{
    if (s->phase != PHASE_REQUEST)
        return; /* one final reply, and only to a request */
    if (s->version == LP_SOCKS_V4)
        emit_v4_reply(s, rst_code == 0 ? V4_GRANTED : V4_REJECTED);
    else
        emit_v5_reply(s, v5_rep_for(rst_code));
    s->phase = rst_code == 0 ? PHASE_REPLIED : PHASE_FAILED;
}

const char *lp_socks_target(const struct lp_socks *s, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (strchr(s->host, ':') != NULL)
        snprintf(buf, len, "[%s]:%u", s->host, (unsigned)s->port);
    else
        snprintf(buf, len, "%s:%u", s->host, (unsigned)s->port);
    return buf;
}
