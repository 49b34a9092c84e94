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
#include "limpet/fwdspec.h"

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
    bool check_upgrade;  /* server --check-upgrade: load the configuration, print the state
                            versions this binary reads (upgrade.h), exit */
};

/* Parses argv (argv[0] is the program name). Fills *cli; on error writes one line to err,
 * leaves *cli empty (nothing to free) and returns LP_ERR_INVALID (or LP_ERR_NOMEM).
 * Borrows argv: it must outlive cli. On success free with lp_cli_free. */
LP_MUST_USE lp_err lp_cli_parse(int argc, char **argv, struct lp_cli *cli, char *err,
                                size_t errlen);
/* Frees the arrays cli owns and empties it; safe on an emptied or zeroed cli. */
void lp_cli_free(struct lp_cli *cli);
/* Man-style help (NAME, SYNOPSIS, OPTIONS, CONFIGURATION KEYS, EXIT STATUS, EXAMPLES) for
 * one subcommand, or for the whole program with LP_CMD_NONE / LP_CMD_HELP. */
void lp_cli_usage(FILE *f, enum lp_cmd cmd);

#endif
