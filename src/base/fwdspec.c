/* fwdspec.c — forward specs as ssh writes them (-L/-R/-D/-T) and HOST:PORT (base layer). */
#include "limpet/fwdspec.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *const lp_fwd_kind_names[LP_FWD_KINDS] = {"local", "dynamic", "remote", "transparent"};

/* ---- host and port ----------------------------------------------------------------------- */

/* Ports are 1..5 decimal digits; `allow_zero` for a listening port the kernel may pick. */
static bool parse_port(const char *s, size_t n, bool allow_zero, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535 || (v == 0 && !allow_zero))
        return false;
    *port = (uint16_t)v;
    return true;
}

/* A host name or IPv4 address: letters, digits, '-', '.', '_'. Inside brackets an IPv6
 * address: hex digits, ':', '.', and a "%zone" of name characters. */
static bool host_char(char ch, bool bracketed)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    if (ch == '-' || ch == '.' || ch == '_')
        return true;
    return bracketed && (ch == ':' || ch == '%');
}

/* One host field, s[0..n): "name", "1.2.3.4" or "[v6]". Writes it unbracketed into out. */
static bool parse_host(const char *s, size_t n, char *out, size_t outlen)
{
    bool bracketed = n >= 2 && s[0] == '[' && s[n - 1] == ']';

    if (bracketed) {
        s++;
        n -= 2;
        if (memchr(s, ':', n) == NULL)
            return false; /* brackets are for IPv6 only */
    }
    if (n == 0 || n >= outlen)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!host_char(s[i], bracketed))
            return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

lp_err lp_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;

    if (s == NULL)
        return LP_ERR_INVALID;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        colon = close ? close + 1 : NULL;
        if (colon == NULL || *colon != ':')
            return LP_ERR_INVALID;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return LP_ERR_INVALID; /* an IPv6 address without brackets is ambiguous */
    }
    if (!parse_host(s, (size_t)(colon - s), host, hostlen))
        return LP_ERR_INVALID;
    if (!parse_port(colon + 1, strlen(colon + 1), false, port))
        return LP_ERR_INVALID;
    return LP_OK;
}

/* ---- -L specs ---------------------------------------------------------------------------- */

struct field {
    const char *s;
    size_t n;
};

/* Splits spec[0..len) at ':' outside brackets. Returns the number of fields, or -1 for a bad
 * bracket, or 5 for "too many" (the caller only needs to know it is over 4). */
static int split_fields(const char *spec, size_t len, struct field f[4])
{
    int nf = 0;
    const char *start = spec, *end = spec + len;
    bool in_brackets = false;

    for (const char *p = spec;; p++) {
        bool last = p == end;
        if (!last && *p == '[') {
            if (in_brackets || p != start)
                return -1;
            in_brackets = true;
        } else if (!last && *p == ']') {
            if (!in_brackets || (p + 1 != end && p[1] != ':'))
                return -1;
            in_brackets = false;
        } else if (last || (*p == ':' && !in_brackets)) {
            if (last && in_brackets)
                return -1;
            if (nf == 4)
                return 5;
            f[nf].s = start;
            f[nf++].n = (size_t)(p - start);
            start = p + 1;
            if (last)
                return nf;
        }
    }
}

/* ---- unix socket paths ------------------------------------------------------------------- */

/* Where a listener is named, a path is what starts like one (as OpenSSH, which takes any
 * field with a '/'; we ask for a leading "/" or "./" so a typo in a PORT is not a file). */
static bool is_path_start(const char *s, size_t n)
{
    return (n >= 1 && s[0] == '/') || (n >= 2 && s[0] == '.' && s[1] == '/');
}

/* A target path: "unix:/PATH", or "/PATH" as OpenSSH writes it. */
static bool is_target_path(const char *s)
{
    return s[0] == '/' || strncmp(s, "unix:/", 6) == 0;
}

/* Checks and copies the path s[0..n) into out[LP_UNIX_PATH_MAX]. A target must be absolute:
 * the server's working directory means nothing to the client. */
static lp_err parse_path(const char *s, size_t n, bool target, char *out, char *err, size_t errlen)
{
    const char *what = target ? "unix socket target" : "socket path";

    if (target && (n == 0 || s[0] != '/'))
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s must be an absolute path", what);
    if (n < 2 || s[n - 1] == '/')
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s \"%.*s\" names no socket", what, (int)n, s);
    if (n >= LP_UNIX_PATH_MAX)
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s longer than %u bytes", what,
                       LP_UNIX_PATH_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return lp_errf(LP_ERR_INVALID, err, errlen, "control byte in %s", what);
    memcpy(out, s, n);
    out[n] = '\0';
    return LP_OK;
}

/* "unix:/PATH" or "/PATH" (the rest of the spec, ':' included) into fw->path. */
static lp_err parse_target_path(const char *s, struct lp_forward *fw, char *err, size_t errlen)
{
    if (strncmp(s, "unix:", 5) == 0)
        s += 5;
    return parse_path(s, strlen(s), true, fw->path, err, errlen);
}

/* Where a target path starts in a spec that does not start with a path: at the first '/',
 * if a ':' or ":unix:" stands right before it (a '/' anywhere else is in no valid field). */
static const char *find_target_path(const char *spec)
{
    const char *slash = strchr(spec, '/');

    if (slash == NULL || slash == spec || slash[-1] != ':')
        return NULL;
    if (slash - spec >= 6 && memcmp(slash - 6, ":unix:", 6) == 0)
        return slash - 5;
    return slash;
}

static lp_err parse_bind(const struct field *b, struct lp_forward *fw, char *err, size_t errlen)
{
    if (b == NULL) {
        snprintf(fw->bind_host, sizeof(fw->bind_host), "127.0.0.1");
        return LP_OK;
    }
    if (b->n == 0 || (b->n == 1 && b->s[0] == '*')) {
        snprintf(fw->bind_host, sizeof(fw->bind_host), "0.0.0.0");
        return LP_OK;
    }
    if (!parse_host(b->s, b->n, fw->bind_host, sizeof(fw->bind_host)))
        return lp_errf(LP_ERR_INVALID, err, errlen, "bad BIND address \"%.*s\"", (int)b->n, b->s);
    return LP_OK;
}

/* HOST and HOSTPORT, the two fields of a TCP target. */
static lp_err parse_target(const struct field *host, const struct field *port,
                           struct lp_forward *fw, char *err, size_t errlen)
{
    if (host->n == 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing HOST");
    if (!parse_host(host->s, host->n, fw->host, sizeof(fw->host)))
        return lp_errf(LP_ERR_INVALID, err, errlen, "bad HOST \"%.*s\"", (int)host->n, host->s);
    if (port->n == 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing HOSTPORT");
    if (!parse_port(port->s, port->n, false, &fw->port))
        return lp_errf(LP_ERR_INVALID, err, errlen, "bad HOSTPORT \"%.*s\" (1..65535)",
                       (int)port->n, port->s);
    return LP_OK;
}

/* PORT or BIND:PORT in spec[0..len): a listening address, as -D takes it. */
static lp_err parse_bind_port(const char *spec, size_t len, struct lp_forward *fw, char *err,
                              size_t errlen)
{
    struct field f[4];
    int nf = split_fields(spec, len, f);

    if (nf < 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 2)
        return lp_errf(LP_ERR_INVALID, err, errlen, "expected PORT or BIND:PORT");
    if (parse_bind(nf == 2 ? &f[0] : NULL, fw, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    if (f[nf - 1].n == 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing PORT");
    if (!parse_port(f[nf - 1].s, f[nf - 1].n, true, &fw->bind_port))
        return lp_errf(LP_ERR_INVALID, err, errlen, "bad PORT \"%.*s\" (0..65535)",
                       (int)f[nf - 1].n, f[nf - 1].s);
    return LP_OK;
}

/* PATH:HOST:HOSTPORT or PATH:unix:/TARGET (PATH ends at its first ':'). */
static lp_err parse_from_path(const char *spec, struct lp_forward *fw, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':'), *rest;
    struct field f[4];
    int nf;

    if (colon == NULL)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing HOST:HOSTPORT after the socket path");
    if (parse_path(spec, (size_t)(colon - spec), false, fw->bind_path, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    rest = colon + 1;
    if (is_target_path(rest))
        return parse_target_path(rest, fw, err, errlen);
    nf = split_fields(rest, strlen(rest), f);
    if (nf < 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 2)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "too many ':' (write IPv6 addresses in brackets: [::1])");
    if (nf == 1)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       f[0].n ? "missing HOSTPORT" : "missing HOST:HOSTPORT");
    return parse_target(&f[0], &f[1], fw, err, errlen);
}

lp_err lp_parse_forward(const char *spec, struct lp_forward *fw, char *err, size_t errlen)
{
    struct field f[4];
    const struct field *rest;
    const char *target_path;
    int nf;

    memset(fw, 0, sizeof(*fw));
    if (is_path_start(spec, strlen(spec)))
        return parse_from_path(spec, fw, err, errlen);
    if ((target_path = find_target_path(spec)) != NULL) { /* [BIND:]PORT:unix:/PATH */
        if (parse_bind_port(spec, (size_t)(target_path - spec - 1), fw, err, errlen) != LP_OK)
            return LP_ERR_INVALID;
        return parse_target_path(target_path, fw, err, errlen);
    }
    nf = split_fields(spec, strlen(spec), f);
    if (nf < 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 4)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "too many ':' (write IPv6 addresses in brackets: [::1])");
    if (nf == 1)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       f[0].n ? "missing HOST:HOSTPORT" : "missing PORT:HOST:HOSTPORT");
    if (nf == 2)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing HOSTPORT");
    rest = &f[nf - 3]; /* PORT, HOST, HOSTPORT; a fourth field in front is BIND */
    if (parse_bind(nf == 4 ? &f[0] : NULL, fw, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    if (rest[0].n == 0)
        return lp_errf(LP_ERR_INVALID, err, errlen, "missing PORT");
    if (!parse_port(rest[0].s, rest[0].n, true, &fw->bind_port))
        return lp_errf(LP_ERR_INVALID, err, errlen, "bad PORT \"%.*s\" (0..65535)", (int)rest[0].n,
                       rest[0].s);
    return parse_target(&rest[1], &rest[2], fw, err, errlen);
}

lp_err lp_parse_dynamic(const char *spec, struct lp_forward *fw, char *err, size_t errlen)
{
    size_t len = strlen(spec);

    memset(fw, 0, sizeof(*fw));
    fw->kind = LP_FWD_DYNAMIC;
    if (is_path_start(spec, len))
        return parse_path(spec, len, false, fw->bind_path, err, errlen);
    return parse_bind_port(spec, len, fw, err, errlen);
}

lp_err lp_parse_fwd_spec(enum lp_fwd_kind kind, const char *spec, struct lp_forward *fw, char *err,
                         size_t errlen)
{
    lp_err rc = kind == LP_FWD_LOCAL || kind == LP_FWD_REMOTE
                    ? lp_parse_forward(spec, fw, err, errlen)
                    : lp_parse_dynamic(spec, fw, err, errlen);
    fw->kind = kind;
    if (rc != LP_OK)
        return rc;
    /* Only TCP connections have an original destination to read. */
    if (kind == LP_FWD_TRANSPARENT && fw->bind_path[0])
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "takes PORT or BIND:PORT, not a unix socket path");
    /* -R to a local unix socket is this client's business; a server-side socket is not. */
    if (kind == LP_FWD_REMOTE && fw->bind_path[0])
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "the server listens on TCP only: BIND:PORT, not a unix path");
    return LP_OK;
}
