/* cli.c — argv to struct lp_cli, forward specs and host:port (the help pages: cli_help.c).
 *
 * Hand-written rather than getopt_long: options belong to a subcommand, errors must name the
 * subcommand ("unknown option --foo for 'limpet client'"), and there is no global state.
 * Short flags bundle (-vv, -vc FILE) and take their value attached or as the next argument
 * (-oKEY=V, -o KEY=V); long ones as --config FILE or --config=FILE.
 */
#include "limpet/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum opt_id {
    O_CONFIG,
    O_LISTEN,
    O_SERVER,
    O_INSECURE,
    O_OPTION,
    O_VERBOSE,
    O_QUIET,
    O_LOCAL,
    O_DYNAMIC,
    O_REMOTE,
    O_TRANSPARENT,
    O_SCOPE,
    O_CONTROL,
    O_JSON,
    O_LOG_FORMAT,
    O_HELP
};

#define FOR_SERVER (1u << LP_CMD_SERVER)
#define FOR_CLIENT (1u << LP_CMD_CLIENT)
#define FOR_MCP (1u << LP_CMD_MCP)
#define FOR_DIAL (FOR_CLIENT | (1u << LP_CMD_STDIO) | FOR_MCP) /* every command that dials */
#define FOR_BOTH (FOR_SERVER | FOR_DIAL)
#define FOR_STATUS (1u << LP_CMD_STATUS)

struct opt {
    enum opt_id id;
    char short_name; /* 0: long form only */
    const char *long_name;
    const char *value; /* name of the value it takes, NULL for a plain flag */
    unsigned cmds;     /* FOR_* mask */
};

static const struct opt opts[] = {
    {O_CONFIG, 'c', "config", "FILE", FOR_BOTH | FOR_STATUS},
    {O_LISTEN, 'l', "listen", "ADDR:PORT", FOR_SERVER},
    {O_SERVER, 's', "server", "HOST:PORT", FOR_DIAL},
    {O_INSECURE, 0, "insecure", NULL, FOR_BOTH},
    {O_OPTION, 'o', "option", "KEY=VALUE", FOR_BOTH | FOR_STATUS},
    {O_VERBOSE, 'v', "verbose", NULL, FOR_BOTH},
    {O_QUIET, 'q', "quiet", NULL, FOR_BOTH},
    {O_LOCAL, 'L', "local", "[BIND:]PORT:HOST:HOSTPORT", FOR_CLIENT},
    {O_DYNAMIC, 'D', "dynamic", "[BIND:]PORT", FOR_CLIENT},
    {O_REMOTE, 'R', "remote", "[BIND:]PORT:HOST:HOSTPORT", FOR_CLIENT},
    {O_TRANSPARENT, 'T', "transparent", "[BIND:]PORT", FOR_CLIENT},
    {O_SCOPE, 0, "scope", "KEY", FOR_MCP},
    {O_CONTROL, 0, "control", "PATH", FOR_STATUS},
    {O_JSON, 0, "json", NULL, FOR_STATUS},
    {O_LOG_FORMAT, 0, "log-format", "text|json", FOR_BOTH},
    {O_HELP, 'h', "help", NULL, FOR_BOTH | FOR_STATUS},
};
#define OPT_COUNT (sizeof(opts) / sizeof(opts[0]))

static const char *cmd_name(enum lp_cmd cmd)
{
    switch (cmd) {
    case LP_CMD_SERVER:
        return "server";
    case LP_CMD_CLIENT:
        return "client";
    case LP_CMD_STDIO:
        return "stdio";
    case LP_CMD_MCP:
        return "mcp";
    case LP_CMD_STATUS:
        return "status";
    case LP_CMD_NONE:
    case LP_CMD_HELP:
    case LP_CMD_VERSION:
        break;
    }
    return "";
}

static lp_err fail(char *err, size_t errlen, const char *fmt, ...) CLI_PRINTF(3, 4);

static lp_err fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return LP_ERR_INVALID;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* Messages quote argv; a newline in an argument must not split the one-line error. */
    for (char *p = err; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return LP_ERR_INVALID;
}

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
        return fail(err, errlen, "%s must be an absolute path", what);
    if (n < 2 || s[n - 1] == '/')
        return fail(err, errlen, "%s \"%.*s\" names no socket", what, (int)n, s);
    if (n >= LP_UNIX_PATH_MAX)
        return fail(err, errlen, "%s longer than %u bytes", what, LP_UNIX_PATH_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(err, errlen, "control byte in %s", what);
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
        return fail(err, errlen, "bad BIND address \"%.*s\"", (int)b->n, b->s);
    return LP_OK;
}

/* HOST and HOSTPORT, the two fields of a TCP target. */
static lp_err parse_target(const struct field *host, const struct field *port,
                           struct lp_forward *fw, char *err, size_t errlen)
{
    if (host->n == 0)
        return fail(err, errlen, "missing HOST");
    if (!parse_host(host->s, host->n, fw->host, sizeof(fw->host)))
        return fail(err, errlen, "bad HOST \"%.*s\"", (int)host->n, host->s);
    if (port->n == 0)
        return fail(err, errlen, "missing HOSTPORT");
    if (!parse_port(port->s, port->n, false, &fw->port))
        return fail(err, errlen, "bad HOSTPORT \"%.*s\" (1..65535)", (int)port->n, port->s);
    return LP_OK;
}

/* PORT or BIND:PORT in spec[0..len): a listening address, as -D takes it. */
static lp_err parse_bind_port(const char *spec, size_t len, struct lp_forward *fw, char *err,
                              size_t errlen)
{
    struct field f[4];
    int nf = split_fields(spec, len, f);

    if (nf < 0)
        return fail(err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 2)
        return fail(err, errlen, "expected PORT or BIND:PORT");
    if (parse_bind(nf == 2 ? &f[0] : NULL, fw, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    if (f[nf - 1].n == 0)
        return fail(err, errlen, "missing PORT");
    if (!parse_port(f[nf - 1].s, f[nf - 1].n, true, &fw->bind_port))
        return fail(err, errlen, "bad PORT \"%.*s\" (0..65535)", (int)f[nf - 1].n, f[nf - 1].s);
    return LP_OK;
}

/* PATH:HOST:HOSTPORT or PATH:unix:/TARGET (PATH ends at its first ':'). */
static lp_err parse_from_path(const char *spec, struct lp_forward *fw, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':'), *rest;
    struct field f[4];
    int nf;

    if (colon == NULL)
        return fail(err, errlen, "missing HOST:HOSTPORT after the socket path");
    if (parse_path(spec, (size_t)(colon - spec), false, fw->bind_path, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    rest = colon + 1;
    if (is_target_path(rest))
        return parse_target_path(rest, fw, err, errlen);
    nf = split_fields(rest, strlen(rest), f);
    if (nf < 0)
        return fail(err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 2)
        return fail(err, errlen, "too many ':' (write IPv6 addresses in brackets: [::1])");
    if (nf == 1)
        return fail(err, errlen, f[0].n ? "missing HOSTPORT" : "missing HOST:HOSTPORT");
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
        return fail(err, errlen, "unbalanced brackets (write IPv6 as [::1])");
    if (nf > 4)
        return fail(err, errlen, "too many ':' (write IPv6 addresses in brackets: [::1])");
    if (nf == 1)
        return fail(err, errlen, f[0].n ? "missing HOST:HOSTPORT" : "missing PORT:HOST:HOSTPORT");
    if (nf == 2)
        return fail(err, errlen, "missing HOSTPORT");
    rest = &f[nf - 3]; /* PORT, HOST, HOSTPORT; a fourth field in front is BIND */
    if (parse_bind(nf == 4 ? &f[0] : NULL, fw, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    if (rest[0].n == 0)
        return fail(err, errlen, "missing PORT");
    if (!parse_port(rest[0].s, rest[0].n, true, &fw->bind_port))
        return fail(err, errlen, "bad PORT \"%.*s\" (0..65535)", (int)rest[0].n, rest[0].s);
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
        return fail(err, errlen, "takes PORT or BIND:PORT, not a unix socket path");
    /* -R to a local unix socket is this client's business; a server-side socket is not. */
    if (kind == LP_FWD_REMOTE && fw->bind_path[0])
        return fail(err, errlen, "the server listens on TCP only: BIND:PORT, not a unix path");
    return LP_OK;
}

/* ---- argv -------------------------------------------------------------------------------- */

static const struct opt *find_short(char ch)
{
    for (size_t i = 0; i < OPT_COUNT; i++)
        if (opts[i].short_name == ch && ch != 0)
            return &opts[i];
    return NULL;
}

static const struct opt *find_long(const char *name, size_t n)
{
    for (size_t i = 0; i < OPT_COUNT; i++)
        if (strlen(opts[i].long_name) == n && strncmp(opts[i].long_name, name, n) == 0)
            return &opts[i];
    return NULL;
}

/* 1..max bytes, none of them a control byte: a scope or a name that logs can quote. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Stores one option and its value (NULL for plain flags). `flag` is how the user wrote it. */
static lp_err apply(struct lp_cli *cli, const struct opt *o, const char *flag, const char *value,
                    char *err, size_t errlen)
{
    char host[LP_ADDR_MAX], why[160];
    uint16_t port;

    switch (o->id) {
    case O_CONFIG:
        cli->config_file = value;
        break;
    case O_INSECURE:
        cli->insecure = true;
        break;
    case O_VERBOSE:
        cli->verbosity++;
        break;
    case O_QUIET:
        cli->verbosity--;
        break;
    case O_HELP:
        cli->help = true;
        break;
    case O_CONTROL:
        cli->control = value;
        break;
    case O_JSON:
        cli->json = true;
        break;
    case O_OPTION:
        cli->overrides[cli->n_overrides++] = value;
        break;
    case O_LISTEN:
    case O_SERVER:
        if (lp_parse_hostport(value, host, sizeof(host), &port) != LP_OK)
            return fail(err, errlen, "%s %s: expected %s", flag, value, o->value);
        *(o->id == O_LISTEN ? &cli->listen : &cli->server) = value;
        break;
    case O_LOG_FORMAT: /* the same as -o log.format=...: it joins the overrides */
        if (strcmp(value, "json") != 0 && strcmp(value, "text") != 0)
            return fail(err, errlen, "%s %s: expected text or json", flag, value);
        cli->overrides[cli->n_overrides++] =
            strcmp(value, "json") == 0 ? "log.format=json" : "log.format=text";
        break;
    case O_SCOPE: /* '~' starts the scopes `limpet mcp` makes up for itself */
        if (!text_ok(value, 127) || value[0] == '~')
            return fail(err, errlen, "%s: expected 1..127 printable bytes, not starting with '~'",
                        flag);
        cli->scope = value;
        break;
    case O_LOCAL:
    case O_DYNAMIC:
    case O_REMOTE:
    case O_TRANSPARENT: {
        static const enum lp_fwd_kind kinds[] = {LP_FWD_LOCAL, LP_FWD_DYNAMIC, LP_FWD_REMOTE,
                                                 LP_FWD_TRANSPARENT};
        if (lp_parse_fwd_spec(kinds[o->id - O_LOCAL], value, &cli->forwards[cli->n_forwards], why,
                              sizeof(why)) != LP_OK)
            return fail(err, errlen, "%s %s: %s", flag, value, why);
        cli->n_forwards++;
        break;
    }
    }
    return LP_OK;
}

struct argv_cursor {
    int argc;
    char **argv;
    int i; /* index of the argument being read */
};

/* The value of an option: attached (`-oK=V`, `--config=F`) or the next argument. */
static lp_err take_value(struct argv_cursor *a, const struct opt *o, const char *flag,
                         const char *attached, const char **value, char *err, size_t errlen)
{
    if (attached != NULL) {
        *value = attached;
        return LP_OK;
    }
    if (a->i + 1 >= a->argc)
        return fail(err, errlen, "%s: missing %s", flag, o->value);
    *value = a->argv[++a->i];
    return LP_OK;
}

static lp_err check_cmd(const struct lp_cli *cli, const struct opt *o, const char *flag, char *err,
                        size_t errlen)
{
    if (o->cmds & (1u << cli->cmd))
        return LP_OK;
    return fail(err, errlen, "%s is only valid for 'limpet %s', not 'limpet %s'", flag,
                o->cmds == FOR_SERVER   ? "server"
                : o->cmds == FOR_MCP    ? "mcp"
                : o->cmds == FOR_STATUS ? "status"
                : o->cmds == FOR_DIAL   ? "client', 'limpet stdio' or 'limpet mcp"
                                        : "client",
                cmd_name(cli->cmd));
}

static lp_err long_option(struct lp_cli *cli, struct argv_cursor *a, char *err, size_t errlen)
{
    const char *arg = a->argv[a->i], *name = arg + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const struct opt *o = find_long(name, n);
    const char *value = NULL;
    char flag[48];
    lp_err rc;

    snprintf(flag, sizeof(flag), "--%.*s", (int)LP_MIN(n, 40), name);
    if (o == NULL)
        return fail(err, errlen, "unknown option %s for 'limpet %s' (see 'limpet %s --help')", flag,
                    cmd_name(cli->cmd), cmd_name(cli->cmd));
    if ((rc = check_cmd(cli, o, flag, err, errlen)) != LP_OK)
        return rc;
    if (o->value == NULL && eq != NULL)
        return fail(err, errlen, "%s takes no value", flag);
    if (o->value != NULL &&
        (rc = take_value(a, o, flag, eq ? eq + 1 : NULL, &value, err, errlen)) != LP_OK)
        return rc;
    return apply(cli, o, flag, value, err, errlen);
}

/* "-vvc FILE": flags bundle until one that takes a value swallows the rest. */
static lp_err short_options(struct lp_cli *cli, struct argv_cursor *a, char *err, size_t errlen)
{
    const char *arg = a->argv[a->i];

    for (size_t j = 1; arg[j] != '\0'; j++) {
        const struct opt *o = find_short(arg[j]);
        const char *value = NULL;
        char flag[3] = {'-', arg[j], '\0'};
        lp_err rc;

        if (o == NULL)
            return fail(err, errlen, "unknown option %s for 'limpet %s' (see 'limpet %s --help')",
                        flag, cmd_name(cli->cmd), cmd_name(cli->cmd));
        if ((rc = check_cmd(cli, o, flag, err, errlen)) != LP_OK)
            return rc;
        if (o->value == NULL) {
            if ((rc = apply(cli, o, flag, NULL, err, errlen)) != LP_OK)
                return rc;
            continue;
        }
        rc = take_value(a, o, flag, arg[j + 1] ? arg + j + 1 : NULL, &value, err, errlen);
        if (rc != LP_OK)
            return rc;
        return apply(cli, o, flag, value, err, errlen);
    }
    return LP_OK;
}

/* stdio takes one HOST:PORT, mcp one NAME; nothing else takes a bare argument. */
static lp_err positional(struct lp_cli *cli, const char *arg, char *err, size_t errlen)
{
    char host[LP_ADDR_MAX];
    uint16_t port;

    if ((cli->cmd != LP_CMD_STDIO && cli->cmd != LP_CMD_MCP) || cli->target != NULL)
        return fail(err, errlen, "unexpected argument '%s' for 'limpet %s'", arg,
                    cmd_name(cli->cmd));
    if (cli->cmd == LP_CMD_STDIO && lp_parse_hostport(arg, host, sizeof(host), &port) != LP_OK)
        return fail(err, errlen, "limpet stdio %s: expected HOST:PORT ([IPV6]:PORT)", arg);
    if (cli->cmd == LP_CMD_MCP && !text_ok(arg, LP_IDENTITY_MAX))
        return fail(err, errlen, "limpet mcp %s: expected a server name of 1..64 bytes", arg);
    cli->target = arg;
    return LP_OK;
}

static lp_err parse_subcommand(struct lp_cli *cli, struct argv_cursor *a, char *err, size_t errlen)
{
    bool options_done = false;
    lp_err rc = LP_OK;

    for (a->i++; a->i < a->argc && rc == LP_OK && !cli->help; a->i++) {
        const char *arg = a->argv[a->i];
        if (!options_done && strcmp(arg, "--") == 0)
            options_done = true;
        else if (!options_done && arg[0] == '-' && arg[1] == '-')
            rc = long_option(cli, a, err, errlen);
        else if (!options_done && arg[0] == '-' && arg[1] != '\0')
            rc = short_options(cli, a, err, errlen);
        else
            rc = positional(cli, arg, err, errlen);
    }
    if (rc == LP_OK && !cli->help && cli->target == NULL && cli->cmd == LP_CMD_STDIO)
        rc =
            fail(err, errlen, "limpet stdio: missing HOST:PORT (the target as the server sees it)");
    if (rc == LP_OK && !cli->help && cli->target == NULL && cli->cmd == LP_CMD_MCP)
        rc = fail(err, errlen, "limpet mcp: missing NAME (an mcp.servers entry of the server)");
    return rc;
}

/* Before the subcommand: --help, --version, or the subcommand's name. */
static lp_err parse_command(struct lp_cli *cli, const char *arg, char *err, size_t errlen)
{
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0)
        cli->cmd = LP_CMD_HELP;
    else if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
        cli->cmd = LP_CMD_VERSION;
    else if (strcmp(arg, "server") == 0)
        cli->cmd = LP_CMD_SERVER;
    else if (strcmp(arg, "client") == 0)
        cli->cmd = LP_CMD_CLIENT;
    else if (strcmp(arg, "stdio") == 0)
        cli->cmd = LP_CMD_STDIO;
    else if (strcmp(arg, "mcp") == 0)
        cli->cmd = LP_CMD_MCP;
    else if (strcmp(arg, "status") == 0)
        cli->cmd = LP_CMD_STATUS;
    else if (arg[0] == '-')
        return fail(err, errlen, "unknown option '%s' before the command; try 'limpet --help'",
                    arg);
    else
        return fail(err, errlen, "unknown command '%s'; try 'limpet --help'", arg);
    return LP_OK;
}

lp_err lp_cli_parse(int argc, char **argv, struct lp_cli *cli, char *err, size_t errlen)
{
    struct argv_cursor a = {.argc = argc, .argv = argv, .i = 1};
    lp_err rc;

    memset(cli, 0, sizeof(*cli));
    if (argc < 2)
        return fail(err, errlen, "no command given; try 'limpet --help'");
    if ((rc = parse_command(cli, argv[1], err, errlen)) != LP_OK)
        return rc;
    if (cli->cmd == LP_CMD_HELP || cli->cmd == LP_CMD_VERSION)
        return LP_OK;
    /* Each -o or -L uses at least one argument, so argc bounds both arrays. */
    cli->overrides = calloc((size_t)argc, sizeof(*cli->overrides));
    cli->forwards = calloc((size_t)argc, sizeof(*cli->forwards));
    if (cli->overrides == NULL || cli->forwards == NULL) {
        lp_cli_free(cli);
        fail(err, errlen, "out of memory");
        return LP_ERR_NOMEM;
    }
    if ((rc = parse_subcommand(cli, &a, err, errlen)) != LP_OK)
        lp_cli_free(cli);
    return rc;
}

void lp_cli_free(struct lp_cli *cli)
{
    if (cli == NULL)
        return;
    free(cli->overrides);
    free(cli->forwards);
    memset(cli, 0, sizeof(*cli));
}
