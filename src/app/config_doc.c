/* config_doc.c — what each configuration key is, for `--help` and limpet.yaml(5).
 *
 * The scalar keys are described by their rows in config.c's table. The lists and mappings
 * (forward.*, auth.clients.NAME.*, mcp.servers.NAME.*) are walked by hand in config_yaml.c and
 * config_servers.c, which match their keys against the word arrays defined here: each array
 * sits beside its documentation rows and must have as many, so the words the loader accepts
 * and the words the manual lists are one list.
 */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "limpet/config.h"
#include "limpet/config_load.h"

const char *const cfg_auth_words[CFG_AUTH_WORDS] = {"clients"};
const char *const cfg_client_words[CFG_CLIENT_WORDS] = {"psk_file", "cert_fingerprint", "allow"};
const char *const cfg_allow_words[CFG_ALLOW_WORDS] = {"forward", "reverse", "mcp"};
const char *const cfg_server_words[CFG_SERVER_WORDS] = {"command", "args", "env", "cwd"};

/* A list or mapping. max_n and max_len bound it (0 = no bound of that kind); `what` says what
 * one entry is, printed before the bounds. */
struct map_doc {
    const char *type, *def, *what;
    unsigned max_n, max_len;
    const char *help;
};

#define IDENTITY_NAME "NAME: 1..64 of [A-Za-z0-9._-]"

/* forward.KIND, in lp_fwd_kind_names order. */
static const struct map_doc forward_docs[] = {
    {"list of strings", "", "-L specs", CFG_FORWARD_LIST_MAX, CFG_FORWARD_SPEC_MAX,
     "client: local forwards, written as -L takes them; the command line's are added"},
    {"list of strings", "", "-D specs", CFG_FORWARD_LIST_MAX, CFG_FORWARD_SPEC_MAX,
     "client: SOCKS proxies, written as -D takes them"},
    {"list of strings", "", "-R specs", CFG_FORWARD_LIST_MAX, CFG_FORWARD_SPEC_MAX,
     "client: reverse forwards, written as -R takes them"},
    {"list of strings", "", "-T specs", CFG_FORWARD_LIST_MAX, CFG_FORWARD_SPEC_MAX,
     "client: transparent listeners, written as -T takes them"},
};
_Static_assert(sizeof(forward_docs) / sizeof(forward_docs[0]) == LP_FWD_KINDS,
               "one row per forward kind");

/* auth.clients.NAME.WORD, in cfg_client_words order. */
static const struct map_doc client_docs[] = {
    {"string", "", "a file path", 0, LP_ADDR_MAX - 1,
     "server: this identity's key file (64 hex digits, mode 0600), or cert_fingerprint"},
    {"fingerprint", "", CFG_FINGERPRINT_WANTS, 0, 0,
     "server: the SHA-256 pin of this identity's certificate, or psk_file"},
    {"mapping", "", "the lists forward, reverse and mcp", 0, 0,
     "server: what this identity may reach; nothing when absent"},
};
_Static_assert(sizeof(client_docs) / sizeof(client_docs[0]) == CFG_CLIENT_WORDS,
               "one row per auth.clients.NAME key");

/* auth.clients.NAME.allow.WORD, in cfg_allow_words order. */
static const struct map_doc allow_docs[] = {
    {"list of strings", "", "HOST:PORTS (PORTS: N, LO-HI or *), unix:/PATH or unix:/DIR/*",
     LP_AUTH_ALLOW_MAX, LP_AUTH_ENTRY_MAX,
     "server: targets of -L, -D, -T and stdio; HOST: *, IP, [IPv6], CIDR, name or *.domain"},
    {"list of strings", "", "ADDR:PORTS", LP_AUTH_ALLOW_MAX, LP_AUTH_ENTRY_MAX,
     "server: addresses a -R may listen on (0.0.0.0:PORT for '*')"},
    {"list of strings", "", "mcp.servers names or *", LP_AUTH_ALLOW_MAX, LP_AUTH_ENTRY_MAX,
     "server: the MCP servers `limpet mcp NAME` may reach"},
};
_Static_assert(sizeof(allow_docs) / sizeof(allow_docs[0]) == CFG_ALLOW_WORDS,
               "one row per allow list");

/* mcp.servers.NAME.WORD, in cfg_server_words order. */
static const struct map_doc server_docs[] = {
    {"string", "", "a program name or path (required)", 0, LP_MCP_TEXT_MAX,
     "server: the MCP stdio server to run; PATH is searched"},
    {"list of strings", "", "arguments", LP_MCP_ARGS_MAX, LP_MCP_TEXT_MAX,
     "server: its arguments after the program name"},
    {"mapping of strings", "", "VAR: value (VAR: letters, digits, _)", LP_MCP_ARGS_MAX,
     LP_MCP_TEXT_MAX, "server: added to (or replacing in) the environment it inherits"},
    {"string", "", "a directory", 0, LP_MCP_TEXT_MAX,
     "server: its working directory; default: the server's own"},
};
_Static_assert(sizeof(server_docs) / sizeof(server_docs[0]) == CFG_SERVER_WORDS,
               "one row per mcp.servers.NAME key");

/* The mappings that hold the rows above, each named by a user-chosen NAME. */
static const struct map_doc auth_doc = {
    "mapping",
    "",
    IDENTITY_NAME,
    LP_AUTH_CLIENTS_MAX,
    0,
    "server: the client identities accepted; a file with auth replaces the whole list"};
static const struct map_doc servers_doc = {
    "mapping",
    "",
    IDENTITY_NAME,
    LP_MCP_SERVERS_MAX,
    0,
    "server: the MCP stdio servers clients may reach; a file with mcp.servers replaces them"};

/* Every list and mapping, in the order the manual lists them. */
struct map_row {
    const char *prefix;      /* dotted path before the word */
    const char *const *word; /* the loader's word, or NULL for the prefix itself */
    const struct map_doc *doc;
};

static const struct map_row map_rows[] = {
    {"forward.", &lp_fwd_kind_names[0], &forward_docs[0]},
    {"forward.", &lp_fwd_kind_names[1], &forward_docs[1]},
    {"forward.", &lp_fwd_kind_names[2], &forward_docs[2]},
    {"forward.", &lp_fwd_kind_names[3], &forward_docs[3]},
    {"auth.clients.NAME", NULL, &auth_doc},
    {"auth.clients.NAME.", &cfg_client_words[0], &client_docs[0]},
    {"auth.clients.NAME.", &cfg_client_words[1], &client_docs[1]},
    {"auth.clients.NAME.", &cfg_client_words[2], &client_docs[2]},
    {"auth.clients.NAME.allow.", &cfg_allow_words[0], &allow_docs[0]},
    {"auth.clients.NAME.allow.", &cfg_allow_words[1], &allow_docs[1]},
    {"auth.clients.NAME.allow.", &cfg_allow_words[2], &allow_docs[2]},
    {"mcp.servers.NAME", NULL, &servers_doc},
    {"mcp.servers.NAME.", &cfg_server_words[0], &server_docs[0]},
    {"mcp.servers.NAME.", &cfg_server_words[1], &server_docs[1]},
    {"mcp.servers.NAME.", &cfg_server_words[2], &server_docs[2]},
    {"mcp.servers.NAME.", &cfg_server_words[3], &server_docs[3]},
};
#define MAP_ROWS (sizeof(map_rows) / sizeof(map_rows[0]))
/* Each word of each array has its row: a word added to an array needs a row here too. */
_Static_assert(MAP_ROWS ==
                   LP_FWD_KINDS + 1 + CFG_CLIENT_WORDS + CFG_ALLOW_WORDS + 1 + CFG_SERVER_WORDS,
               "a row for every word the loader accepts");

static void map_doc(size_t i, struct lp_config_doc *d)
{
    const struct map_row *r = &map_rows[i];
    const struct map_doc *m = r->doc;

    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s%s", r->prefix, r->word ? *r->word : "");
    d->type = m->type;
    d->help = m->help;
    d->file_only = true;
    snprintf(d->def, sizeof(d->def), "%s", m->def);
    if (m->max_n > 0 && m->max_len > 0)
        snprintf(d->range, sizeof(d->range), "%s; at most %u, of at most %u bytes each", m->what,
                 m->max_n, m->max_len);
    else if (m->max_n > 0)
        snprintf(d->range, sizeof(d->range), "%s; at most %u", m->what, m->max_n);
    else if (m->max_len > 0)
        snprintf(d->range, sizeof(d->range), "%s; at most %u bytes", m->what, m->max_len);
    else
        snprintf(d->range, sizeof(d->range), "%s", m->what);
}

bool lp_config_doc_at(size_t i, struct lp_config_doc *d)
{
    size_t n_keys = cfg_key_count();

    if (i < n_keys)
        return cfg_key_doc(i, d);
    if (i - n_keys >= MAP_ROWS)
        return false;
    map_doc(i - n_keys, d);
    return true;
}

void lp_config_print_keys(FILE *f, const char *indent)
{
    struct lp_config_doc d;

    for (size_t i = 0; lp_config_doc_at(i, &d) && !d.file_only; i++) {
        if (strcmp(d.type, "duration") == 0 || strcmp(d.type, "size") == 0 ||
            strcmp(d.type, "integer") == 0)
            fprintf(f, "%s%s=%s\n%s    %s (%s)\n", indent, d.name, d.def, indent, d.help, d.range);
        else
            fprintf(f, "%s%s=%s\n%s    %s\n", indent, d.name, d.def, indent, d.help);
    }
}

void lp_config_print_maps(FILE *f, const char *indent)
{
    struct lp_config_doc d;

    for (size_t i = 0; lp_config_doc_at(i, &d); i++)
        if (d.file_only)
            fprintf(f, "%s%s (%s)\n%s    %s\n%s    %s\n", indent, d.name, d.type, indent, d.help,
                    indent, d.range);
}
