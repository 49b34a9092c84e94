/* cli.h — the command line: `limpet [--version|--help] SUBCOMMAND [options]`.
 *
 * The flags are the contract of ARCHITECTURE.md section 1. Parsing only checks syntax
 * (flag names, values that must be ADDR:PORT or a forward spec); `-o KEY=VALUE` strings are
 * collected as given and checked by lp_config_set, which names the key in its error.
 * Errors are one line naming the flag and its value, e.g. "-L 80:db: missing HOSTPORT".
 */
#ifndef LIMPET_CLI_H
#define LIMPET_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "limpet/config.h"
#include "limpet/err.h"

enum lp_cmd {
    LP_CMD_NONE,
    LP_CMD_SERVER,
    LP_CMD_CLIENT,
    LP_CMD_STDIO, /* limpet stdio HOST:PORT */
    LP_CMD_MCP,   /* limpet mcp [--scope KEY] NAME */
    LP_CMD_HELP,
    LP_CMD_VERSION,
    LP_CMD_STATUS /* limpet status [--control PATH] [--json] */
};

/* Longest unix socket path, with its NUL: the size of sockaddr_un.sun_path on Linux. */
#define LP_UNIX_PATH_MAX 108u

struct lp_forward {              /* one -L/-R [BIND:]PORT:HOST:HOSTPORT, or -D/-T [BIND:]PORT */
    enum lp_fwd_kind kind;       /* -D and -T: host and port are unused */
    char bind_host[LP_ADDR_MAX]; /* default "127.0.0.1" (loopback, as ssh without GatewayPorts);
                                    "*" or "" -> "0.0.0.0"; IPv6 without brackets */
    uint16_t bind_port;          /* 0 allowed: the kernel picks, the log says which */
    char host[LP_ADDR_MAX];      /* target as the server sees it; IPv6 without brackets */
    uint16_t port;               /* 1..65535 */
    /* "" or the unix socket to listen on instead of bind_host:bind_port (-L PATH:..., -D PATH):
     * starts with '/' or "./", no control bytes; -L only and -D only, never -R or -T */
    char bind_path[LP_UNIX_PATH_MAX];
    /* "" or the unix socket the server connects to instead of host:port (-L ...:unix:/PATH or
     * ...:/PATH); absolute, no control bytes; the OPEN target is then "unix:" + path */
    char path[LP_UNIX_PATH_MAX];
};

struct lp_cli {
    enum lp_cmd cmd;
    bool help;               /* `limpet server --help`: cmd says which page */
    const char *config_file; /* -c, borrowed from argv; NULL when absent */
    const char *listen;      /* -l ADDR:PORT, borrowed; NULL when absent */
    const char *server;      /* -s HOST:PORT, borrowed; NULL when absent */
    bool insecure;
    int verbosity;          /* number of -v minus number of -q */
    const char **overrides; /* -o values in order (strings borrowed from argv; array owned) */
    size_t n_overrides;
    struct lp_forward *forwards; /* -L in order, owned array */
    size_t n_forwards;
    const char *target;  /* stdio: HOST:PORT (checked); mcp: NAME (checked); borrowed */
    const char *scope;   /* mcp --scope KEY (1..127 bytes, no control bytes), NULL if absent */
    const char *control; /* status --control PATH, borrowed; NULL when absent */
    bool json;           /* status --json */
};

/* Parses argv (argv[0] is the program name). Fills *cli; on error writes one line to err,
 * leaves *cli empty (nothing to free) and returns LP_ERR_INVALID (or LP_ERR_NOMEM).
 * Borrows argv: it must outlive cli. On success free with lp_cli_free. */
lp_err lp_cli_parse(int argc, char **argv, struct lp_cli *cli, char *err, size_t errlen);
/* Frees the arrays cli owns and empties it; safe on an emptied or zeroed cli. */
void lp_cli_free(struct lp_cli *cli);
/* Man-style help (NAME, SYNOPSIS, OPTIONS, CONFIGURATION KEYS, EXIT STATUS, EXAMPLES) for
 * one subcommand, or for the whole program with LP_CMD_NONE / LP_CMD_HELP. */
void lp_cli_usage(FILE *f, enum lp_cmd cmd);

/* One forward spec as ssh -L writes it: PORT:HOST:HOSTPORT or BIND:PORT:HOST:HOSTPORT, with
 * IPv6 addresses in brackets ("[::1]:8080:[fd00::5]:22"). Unix sockets at either end: a spec
 * starting with '/' or "./" listens on that path (up to the first ':', so the path holds no
 * ':'): "/run/app.sock:db:5432"; a target "unix:/PATH" (or OpenSSH's "/PATH") after the PORT
 * or the listening path is a socket on the server, to the end of the spec:
 * "8080:unix:/run/x.sock", "[::1]:8080:/run/x.sock", "./a.sock:unix:/run/x.sock". Paths are
 * at most LP_UNIX_PATH_MAX-1 bytes. On error writes only the problem ("missing HOSTPORT") to
 * err: the caller adds the flag and spec. */
lp_err lp_parse_forward(const char *spec, struct lp_forward *fw, char *err, size_t errlen);
/* One -D spec as ssh writes it: PORT or BIND:PORT ([IPV6]:PORT), or a unix socket path
 * starting with '/' or "./" (the whole spec); sets fw->kind to LP_FWD_DYNAMIC. On error
 * writes only the problem to err. */
lp_err lp_parse_dynamic(const char *spec, struct lp_forward *fw, char *err, size_t errlen);
/* A spec of any kind: -L and -R as lp_parse_forward, -D and -T as lp_parse_dynamic; sets
 * fw->kind. Unix socket paths are refused for -T (its connections are TCP by nature) and,
 * for now, for -R. On error writes only the problem to err. */
lp_err lp_parse_fwd_spec(enum lp_fwd_kind kind, const char *spec, struct lp_forward *fw, char *err,
                         size_t errlen);
/* "HOST:PORT" or "[IPV6]:PORT", port 1..65535. Writes the host without brackets. Checks the
 * form only (no name lookup). LP_ERR_INVALID on bad input or a host longer than hostlen-1. */
lp_err lp_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
