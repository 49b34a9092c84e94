/* cli.c — argv to struct lp_cli, forward specs and host:port (the help pages: cli_help.c).
 *
 * Hand-written rather than getopt_long: options belong to a subcommand, errors must name the
 * subcommand ("unknown option --foo for 'limpet client'"), and there is no global state.
 * Short flags bundle (-vv, -vc FILE) and take their value attached or as the next argument
 * (-oKEY=V, -o KEY=V); long ones as --config FILE or --config=FILE.
 */
#include "limpet/cli.h"

#include <stdlib.h>
#include <string.h>

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
    O_CHECK_UPGRADE,
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
    {O_CHECK_UPGRADE, 0, "check-upgrade", NULL, FOR_SERVER},
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
    case O_CHECK_UPGRADE:
        cli->check_upgrade = true;
        break;
    case O_OPTION:
        cli->overrides[cli->n_overrides++] = value;
        break;
    case O_LISTEN:
    case O_SERVER:
        if (lp_parse_hostport(value, host, sizeof(host), &port) != LP_OK)
            return lp_errf(LP_ERR_INVALID, err, errlen, "%s %s: expected %s", flag, value,
                           o->value);
        *(o->id == O_LISTEN ? &cli->listen : &cli->server) = value;
        break;
    case O_LOG_FORMAT: /* the same as -o log.format=...: it joins the overrides */
        if (strcmp(value, "json") != 0 && strcmp(value, "text") != 0)
            return lp_errf(LP_ERR_INVALID, err, errlen, "%s %s: expected text or json", flag,
                           value);
        cli->overrides[cli->n_overrides++] =
            strcmp(value, "json") == 0 ? "log.format=json" : "log.format=text";
        break;
    case O_SCOPE: /* '~' starts the scopes `limpet mcp` makes up for itself */
        if (!text_ok(value, 127) || value[0] == '~')
            return lp_errf(LP_ERR_INVALID, err, errlen,
                           "%s: expected 1..127 printable bytes, not starting with '~'", flag);
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
            return lp_errf(LP_ERR_INVALID, err, errlen, "%s %s: %s", flag, value, why);
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
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s: missing %s", flag, o->value);
    *value = a->argv[++a->i];
    return LP_OK;
}

static lp_err check_cmd(const struct lp_cli *cli, const struct opt *o, const char *flag, char *err,
                        size_t errlen)
{
    if (o->cmds & (1u << cli->cmd))
        return LP_OK;
    return lp_errf(LP_ERR_INVALID, err, errlen, "%s is only valid for 'limpet %s', not 'limpet %s'",
                   flag,
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
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "unknown option %s for 'limpet %s' (see 'limpet %s --help')", flag,
                       cmd_name(cli->cmd), cmd_name(cli->cmd));
    if ((rc = check_cmd(cli, o, flag, err, errlen)) != LP_OK)
        return rc;
    if (o->value == NULL && eq != NULL)
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s takes no value", flag);
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
            return lp_errf(LP_ERR_INVALID, err, errlen,
                           "unknown option %s for 'limpet %s' (see 'limpet %s --help')", flag,
                           cmd_name(cli->cmd), cmd_name(cli->cmd));
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
        return lp_errf(LP_ERR_INVALID, err, errlen, "unexpected argument '%s' for 'limpet %s'", arg,
                       cmd_name(cli->cmd));
    if (cli->cmd == LP_CMD_STDIO && lp_parse_hostport(arg, host, sizeof(host), &port) != LP_OK)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "limpet stdio %s: expected HOST:PORT ([IPV6]:PORT)", arg);
    if (cli->cmd == LP_CMD_MCP && !text_ok(arg, LP_IDENTITY_MAX))
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "limpet mcp %s: expected a server name of 1..64 bytes", arg);
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
        rc = lp_errf(LP_ERR_INVALID, err, errlen,
                     "limpet stdio: missing HOST:PORT (the target as the server sees it)");
    if (rc == LP_OK && !cli->help && cli->target == NULL && cli->cmd == LP_CMD_MCP)
        rc = lp_errf(LP_ERR_INVALID, err, errlen,
                     "limpet mcp: missing NAME (an mcp.servers entry of the server)");
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
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "unknown option '%s' before the command; try 'limpet --help'", arg);
    else
        return lp_errf(LP_ERR_INVALID, err, errlen, "unknown command '%s'; try 'limpet --help'",
                       arg);
    return LP_OK;
}

lp_err lp_cli_parse(int argc, char **argv, struct lp_cli *cli, char *err, size_t errlen)
{
    struct argv_cursor a = {.argc = argc, .argv = argv, .i = 1};
    lp_err rc;

    memset(cli, 0, sizeof(*cli));
    if (argc < 2)
        return lp_errf(LP_ERR_INVALID, err, errlen, "no command given; try 'limpet --help'");
    if ((rc = parse_command(cli, argv[1], err, errlen)) != LP_OK)
        return rc;
    if (cli->cmd == LP_CMD_HELP || cli->cmd == LP_CMD_VERSION)
        return LP_OK;
    /* Each -o or -L uses at least one argument, so argc bounds both arrays. */
    cli->overrides = calloc((size_t)argc, sizeof(*cli->overrides));
    cli->forwards = calloc((size_t)argc, sizeof(*cli->forwards));
    if (cli->overrides == NULL || cli->forwards == NULL) {
        lp_cli_free(cli);
        return lp_errf(LP_ERR_NOMEM, err, errlen, "out of memory");
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
