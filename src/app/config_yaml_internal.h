/* config_yaml_internal.h — what the YAML loader's files share: the loader's state and the
 * event helpers of config_yaml.c, used by the list loaders in config_servers.c. Private to
 * src/app/config_yaml*.c and config_servers.c; the contract is config.h.
 */
#ifndef LIMPET_CONFIG_YAML_INTERNAL_H
#define LIMPET_CONFIG_YAML_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config_internal.h"
#include "limpet/config.h"

#define CFG_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define SECTIONS_MAX 16u /* distinct sections a file can name (all must be known) */

#define AUTH_PATH_MAX (2 * CFG_SHOWN_BUF) /* auth.clients.NAME.allow.KEY, both quoted */

struct loader {
    yaml_parser_t parser;
    struct lp_config work; /* copied to the caller only when the whole file is good */
    const char *name;
    char *err;
    size_t errlen;
    uint64_t seen; /* bit i: the key of index i was set; its line in key_line[i] */
    size_t key_line[CFG_KEYS_MAX];
    char sections[SECTIONS_MAX][CFG_KEY_MAX]; /* sections seen, to refuse a second "session:" */
    size_t section_line[SECTIONS_MAX];
    size_t n_sections;
    /* auth.clients as read so far; it replaces work.auth only when the whole file is good,
     * so a failed load frees it and leaves the caller's list alone. */
    struct lp_auth_client *clients;
    size_t n_clients, cap_clients;
    bool auth_defined;             /* the file has an auth section: its list replaces the old one */
    struct lp_mcp_server *servers; /* mcp.servers as read so far: the same rule as clients */
    size_t n_servers, cap_servers;
    bool servers_defined;
    char **fw[LP_FWD_KINDS]; /* forward.local, .dynamic, ... as read so far: the same rule */
    size_t n_fw[LP_FWD_KINDS];
    size_t fw_line[LP_FWD_KINDS]; /* where each was set, 0 = not in this file */
};

typedef lp_err (*pair_fn)(struct loader *ld, void *ctx, const yaml_event_t *kev);

/* One line "FILE:LINE:COL: KEY: what" into the loader's error; returns LP_ERR_INVALID. */
LP_MUST_USE lp_err cy_fail_at(struct loader *ld, yaml_mark_t m, const char *key, const char *fmt,
                              ...) CFG_PRINTF(4, 5);
/* The next parser event (the caller deletes it), or a located error. */
LP_MUST_USE lp_err cy_next_event(struct loader *ld, yaml_event_t *ev);
/* Plain `~`, `null` or nothing at all: YAML's null, which no key accepts as a value. */
bool cy_is_null(const yaml_event_t *ev);
/* Records that a section was opened, refusing a second "session:" in one file. */
LP_MUST_USE lp_err cy_note_section(struct loader *ld, const char *path, yaml_mark_t kmark);
/* Reads pairs up to the mapping's end, each through fn. Terminates: every fn either fails or
 * takes a key not seen before in this mapping, or adds an item below a hard cap. */
LP_MUST_USE lp_err cy_each_pair(struct loader *ld, const char *path, pair_fn fn, void *ctx);
/* Reads the start of a value that must be a `want` (a mapping or a list). *open says whether
 * one started; a null value is an empty one and leaves it false. */
LP_MUST_USE lp_err cy_open_value(struct loader *ld, const char *path, yaml_event_type_t want,
                                 const char *what, bool *open);
/* A string value: a scalar of 1..max_len bytes without NUL. `if_list` is added to the error
 * when a list stands where the string should be. */
LP_MUST_USE lp_err cy_check_text(struct loader *ld, const char *path, const char *what,
                                 const yaml_event_t *ev, size_t max_len, const char *if_list);
/* Which of `words` the key is (-1: none); writes "base.KEY", the key escaped, to path. */
int cy_key_index(const yaml_event_t *kev, const char *const *words, size_t n_words,
                 const char *base, char *path, size_t len);
/* "unknown key" for kev under path, naming the words that are known. */
LP_MUST_USE lp_err cy_unknown_word(struct loader *ld, const yaml_event_t *kev, const char *path,
                                   const char *const *words, size_t n_words);
/* A list of strings, each checked against max (bytes per entry, entries). */
LP_MUST_USE lp_err cy_load_list(struct loader *ld, const char *path, char ***list, size_t *n,
                                const size_t max[2]);

/* mcp.servers (config_servers.c). */
LP_MUST_USE lp_err cy_load_servers(struct loader *ld, const char *path, yaml_mark_t kmark);

#endif
