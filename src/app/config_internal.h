/* config_internal.h — what the YAML loader (config_yaml.c) needs from the key table and the
 * value parsers in config.c. Private to src/app/config*.c; the contract is config.h.
 */
#ifndef LIMPET_CONFIG_INTERNAL_H
#define LIMPET_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "limpet/config.h"
#include "limpet/config_load.h"

#define CFG_KEY_MAX 64u /* longest dotted path we look at; longer ones are unknown */
_Static_assert(CFG_KEY_MAX == sizeof(((struct lp_config_doc *)0)->name), "doc names fit keys");
#define CFG_SHOWN_MAX 48u /* longest excerpt of a bad value quoted back in an error */
#define CFG_SHOWN_BUF (CFG_SHOWN_MAX * 4 + 8) /* room for cfg_show's output */
#define CFG_KEYS_MAX 64u /* keys in the table at most: the loader keeps a one-word bitmap */

#define CFG_IDENTITY_WANTS "a name of 1..64 letters, digits, '.', '_' or '-'"
#define CFG_FINGERPRINT_WANTS "\"sha256:\" and 32 hex bytes (all joined by ':', or none)"

/* The words the loader accepts in the file's mappings, in the order its code indexes them.
 * Defined beside their documentation (config_doc.c), whose rows must match them one for one:
 * a word added without its row does not build. */
#define CFG_AUTH_WORDS 1u   /* auth.* */
#define CFG_CLIENT_WORDS 3u /* auth.clients.NAME.* */
#define CFG_ALLOW_WORDS 3u  /* auth.clients.NAME.allow.* */
#define CFG_SERVER_WORDS 4u /* mcp.servers.NAME.* */
extern const char *const cfg_auth_words[CFG_AUTH_WORDS];
extern const char *const cfg_client_words[CFG_CLIENT_WORDS];
extern const char *const cfg_allow_words[CFG_ALLOW_WORDS];
extern const char *const cfg_server_words[CFG_SERVER_WORDS];

#define CFG_FORWARD_SPEC_MAX (LP_ADDR_MAX * 2) /* bytes in one forward.* entry at most */
#define CFG_FORWARD_LIST_MAX 1024u             /* entries in one forward.* list at most */
#define CFG_ENV_NAME_MAX 255u                  /* bytes in an mcp.servers.NAME.env name */

/* One row of the key table; opaque outside config.c. */
struct cfg_key;

/* The key named by a dotted path, NULL if none; borrowed from static storage. */
const struct cfg_key *cfg_find_key(const char *path);
/* The key's row in the table, below CFG_KEYS_MAX. */
size_t cfg_key_index(const struct cfg_key *k);
/* Its dotted name; static storage. */
const char *cfg_key_name(const struct cfg_key *k);
/* The dotted name of row i of the table, NULL past its end; static storage. */
const char *cfg_key_name_at(size_t i);
/* What a value for it looks like ("a duration such as 250ms, ..."); static storage. */
const char *cfg_key_wants(const struct cfg_key *k);
/* True for HOST:PORT keys (an unquoted IPv6 address reads as a YAML list). */
bool cfg_key_is_address(const struct cfg_key *k);
/* True for keys that take a list (a YAML sequence is joined with commas). */
bool cfg_key_is_list(const struct cfg_key *k);
/* The rows in the key table. */
size_t cfg_key_count(void);
/* Fills d with row i of the key table (defaults and range formatted); false past its end. */
bool cfg_key_doc(size_t i, struct lp_config_doc *d);
/* A section is any proper prefix of a key ending at a dot: "session" for "session.ttl". */
bool cfg_is_section(const char *path);

/* Writes "unknown key", with a "did you mean" when a key or section is close, to msg. path
 * is n bytes, not necessarily terminated. */
void cfg_unknown_key(const char *path, size_t n, char *msg, size_t len);
/* The same among `choices` (compared whole with the n bytes of word): "unknown key (did you
 * mean allow?)". */
void cfg_unknown_word(const char *word, size_t n, const char *const *choices, size_t n_choices,
                      char *msg, size_t len);
/* True if the n bytes of s are a valid identity name (1..64 of [A-Za-z0-9._-]). */
bool cfg_identity_ok(const char *s, size_t n);
/* Checks the n bytes of s with the one fingerprint parser (fingerprint.h) and writes the
 * canonical form ("sha256:" + 64 lowercase hex) to out; false with *why the reason. */
bool cfg_fingerprint_canon(const char *s, size_t n, char out[LP_FINGERPRINT_MAX], const char **why);
/* Frees n clients and their lists, then the array itself; NULL-safe. */
void cfg_free_clients(struct lp_auth_client *v, size_t n);
/* Frees n strings, then the array itself; NULL-safe. */
void cfg_free_list(char **v, size_t n);
/* Frees n MCP servers and their strings, then the array itself; NULL-safe. */
void cfg_free_servers(struct lp_mcp_server *v, size_t n);
/* Quotes user text back safely: control bytes escaped, long values cut. buf gets at most
 * len bytes, NUL-terminated; CFG_SHOWN_BUF is always enough. */
void cfg_show(char *buf, size_t len, const char *s, size_t n);
/* Parses `text` (n bytes, not necessarily terminated) as key k's type and stores it in c.
 * On error writes the problem, without position or key, to msg. */
LP_MUST_USE lp_err cfg_set_value(const struct cfg_key *k, const char *text, size_t n,
                                 struct lp_config *c, char *msg, size_t len);

#endif
