/* config_load.h (app layer) — fills a struct lp_config (config.h) from defaults, YAML files
 * (libyaml) and -o overrides, with errors naming FILE:LINE:COL and the key. */
#ifndef LIMPET_CONFIG_LOAD_H
#define LIMPET_CONFIG_LOAD_H

#include <stddef.h>
#include <stdio.h>

#include "limpet/config.h"

/* Fills every key with its default; no client list. Overwrites c without freeing: call
 * lp_config_clear first on a config that may hold clients. */
void lp_config_defaults(struct lp_config *c);
/* Frees the client list and leaves c at its defaults; safe to call twice. */
void lp_config_clear(struct lp_config *c);

/* Reads a YAML file over the current values (keys absent from the file keep theirs). On
 * error c is unchanged. An `auth:` section in the file replaces c's client list. */
LP_MUST_USE lp_err lp_config_load_file(struct lp_config *c, const char *path, char *err,
                                       size_t errlen);
/* The same from memory; `name` stands for the file name in errors. */
LP_MUST_USE lp_err lp_config_load_string(struct lp_config *c, const char *name, const char *yaml,
                                         size_t len, char *err, size_t errlen);
/* One `-o KEY=VALUE` override (the argument as given). */
LP_MUST_USE lp_err lp_config_set(struct lp_config *c, const char *key_eq_value, char *err,
                                 size_t errlen);
/* Cross-key checks and derived defaults (dead_after 0 -> 3 x heartbeat, dead_after must
 * exceed heartbeat, initial_delay <= max_delay, give_up_after 0 -> ttl, replay_buffer +
 * receive_buffer <= limits.session_memory, tls.cert and tls.key set together). Call once after
 * loading and overrides. */
LP_MUST_USE lp_err lp_config_finish(struct lp_config *c, char *err, size_t errlen);

/* One configuration key as --help and limpet.yaml(5) describe it. The man page's key list is
 * printed from these rows (man/mankeys.c), so it cannot drift from the table the loader uses. */
struct lp_config_doc {
    char name[64];         /* dotted path; NAME stands for a name the file chooses */
    const char *type;      /* "duration", "size", "list of strings", ...; static storage */
    const char *help;      /* what it does, one or two sentences; static storage */
    char def[LP_ADDR_MAX]; /* the default as a file would write it; "" = unset or empty */
    char range[128];       /* what values it takes, e.g. "10ms..10m"; never empty */
    bool file_only;        /* a list or mapping: set in the file, not by -o */
};

/* Fills d with the i-th key: the scalar keys in table order, then the lists and mappings
 * (forward.*, auth.clients.NAME.*, mcp.servers.NAME.*). False, d untouched, past the end. */
bool lp_config_doc_at(size_t i, struct lp_config_doc *d);

/* Prints every scalar key with its default and range, two lines each (for --help). */
void lp_config_print_keys(FILE *f, const char *indent);
/* Prints the lists and mappings (file only) with type, range and help, two lines each. */
void lp_config_print_maps(FILE *f, const char *indent);

/* Parsers shared with the CLI. Return LP_ERR_INVALID on bad input. */
LP_MUST_USE lp_err lp_parse_duration(const char *s, lp_time *out);
LP_MUST_USE lp_err lp_parse_size(const char *s, size_t *out);

#endif
