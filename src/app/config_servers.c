/* config_servers.c — the mcp.servers list of the YAML loader: NAME: {command, args, env, cwd},
 * each checked with file:line:col errors, read into the loader's own list so a bad file leaves
 * the caller's config alone (see config_yaml.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_yaml_internal.h"

/* Each MCP server is a mapping of command (required), args, env and cwd, walked like a client. */

static const size_t args_max[2] = {LP_MCP_TEXT_MAX, LP_MCP_ARGS_MAX};

struct server_ctx {
    struct lp_mcp_server *sv;
    char path[AUTH_PATH_MAX];      /* mcp.servers.NAME */
    size_t line[CFG_SERVER_WORDS]; /* where each of cfg_server_words was set; 0 = not */
};

/* A string scalar of 1..LP_MCP_TEXT_MAX bytes, copied to *out (owned). */
static lp_err load_text(struct loader *ld, const char *path, const char *what, char **out)
{
    yaml_event_t ev;
    lp_err rc;

    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    rc = cy_check_text(ld, path, what, &ev, LP_MCP_TEXT_MAX, "");
    if (rc == LP_OK &&
        (*out = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length)) == NULL)
        rc = cy_fail_at(ld, ev.start_mark, path, "out of memory");
    yaml_event_delete(&ev);
    return rc;
}

static bool env_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > CFG_ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* env: NAME: value. Stored as "NAME=value"; an empty value is allowed (quote it: ""). */
static lp_err env_pair(struct loader *ld, void *vctx, const yaml_event_t *kev)
{
    struct server_ctx *sc = vctx;
    struct lp_mcp_server *sv = sc->sv;
    const char *name = (const char *)kev->data.scalar.value;
    size_t n = kev->data.scalar.length;
    char path[AUTH_PATH_MAX], shown[CFG_SHOWN_BUF];
    yaml_event_t ev;
    lp_err rc;

    cfg_show(shown, sizeof(shown), name, n);
    if (snprintf(path, sizeof(path), "%s.env.%s", sc->path, shown) < 0) /* may be cut: fine */
        path[0] = '\0';
    if (!env_name_ok(name, n))
        return cy_fail_at(
            ld, kev->start_mark, path,
            "bad variable name (expected letters, digits and '_', not starting with a "
            "digit)");
    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type != YAML_SCALAR_EVENT || cy_is_null(&ev) ||
        ev.data.scalar.length > LP_MCP_TEXT_MAX ||
        memchr(ev.data.scalar.value, '\0', ev.data.scalar.length) != NULL) {
        rc = cy_fail_at(ld, ev.start_mark, path, "expected a string of at most %u bytes",
                        LP_MCP_TEXT_MAX);
    } else if (sv->n_env == LP_MCP_ARGS_MAX) {
        rc = cy_fail_at(ld, kev->start_mark, path, "more than %u variables", LP_MCP_ARGS_MAX);
    } else {
        size_t vn = ev.data.scalar.length;
        char **grown = realloc(sv->env, (sv->n_env + 1) * sizeof(*grown));
        char *kv = malloc(n + vn + 2);
        if (grown != NULL)
            sv->env = grown;
        if (grown == NULL || kv == NULL) {
            free(kv);
            rc = cy_fail_at(ld, ev.start_mark, path, "out of memory");
        } else {
            memcpy(kv, name, n);
            kv[n] = '=';
            memcpy(kv + n + 1, ev.data.scalar.value, vn);
            kv[n + 1 + vn] = '\0';
            sv->env[sv->n_env++] = kv;
        }
    }
    yaml_event_delete(&ev);
    return rc;
}

static lp_err server_pair(struct loader *ld, void *vctx, const yaml_event_t *kev)
{
    struct server_ctx *sc = vctx;
    char path[AUTH_PATH_MAX];
    bool open;
    lp_err rc;
    int i;

    if ((i = cy_key_index(kev, cfg_server_words, CFG_SERVER_WORDS, sc->path, path, sizeof(path))) <
        0)
        return cy_unknown_word(ld, kev, path, cfg_server_words, CFG_SERVER_WORDS);
    if (sc->line[i] != 0)
        return cy_fail_at(ld, kev->start_mark, path, "duplicate key (first set on line %zu)",
                          sc->line[i]);
    sc->line[i] = kev->start_mark.line + 1;
    switch (i) {
    case 0:
        return load_text(ld, path, "a program name or path", &sc->sv->command);
    case 1:
        return cy_load_list(ld, path, &sc->sv->args, &sc->sv->n_args, args_max);
    case 2:
        rc = cy_open_value(ld, path, YAML_MAPPING_START_EVENT, "a mapping of NAME: value", &open);
        if (rc != LP_OK || !open)
            return rc;
        return cy_each_pair(ld, path, env_pair, sc);
    default:
        return load_text(ld, path, "a directory", &sc->sv->cwd);
    }
}

/* A new, zeroed server at the end of the list, named after the key. */
static lp_err add_server(struct loader *ld, const yaml_event_t *kev, const char *path,
                         struct lp_mcp_server **out)
{
    const char *name = (const char *)kev->data.scalar.value;
    size_t n = kev->data.scalar.length;
    struct lp_mcp_server *sv;

    if (!cfg_identity_ok(name, n))
        return cy_fail_at(ld, kev->start_mark, path, "bad server name (expected %s)",
                          CFG_IDENTITY_WANTS);
    for (size_t i = 0; i < ld->n_servers; i++)
        if (strlen(ld->servers[i].name) == n && memcmp(ld->servers[i].name, name, n) == 0)
            return cy_fail_at(ld, kev->start_mark, path,
                              "duplicate server name (first defined on line %u)",
                              ld->servers[i].line);
    if (ld->n_servers == LP_MCP_SERVERS_MAX)
        return cy_fail_at(ld, kev->start_mark, path, "more than %u servers", LP_MCP_SERVERS_MAX);
    if (ld->n_servers == ld->cap_servers) {
        size_t cap = ld->cap_servers == 0 ? 8 : LP_MIN(2 * ld->cap_servers, LP_MCP_SERVERS_MAX);
        struct lp_mcp_server *grown = realloc(ld->servers, cap * sizeof(*grown));
        if (grown == NULL)
            return cy_fail_at(ld, kev->start_mark, path, "out of memory");
        ld->servers = grown;
        ld->cap_servers = cap;
    }
    sv = &ld->servers[ld->n_servers++];
    memset(sv, 0, sizeof(*sv));
    memcpy(sv->name, name, n);
    sv->line = (unsigned)kev->start_mark.line + 1;
    *out = sv;
    return LP_OK;
}

static lp_err server_entry(struct loader *ld, void *ctx, const yaml_event_t *kev)
{
    struct server_ctx sc;
    char shown[CFG_SHOWN_BUF];
    bool open;
    lp_err rc;

    (void)ctx;
    memset(&sc, 0, sizeof(sc));
    cfg_show(shown, sizeof(shown), (const char *)kev->data.scalar.value, kev->data.scalar.length);
    snprintf(sc.path, sizeof(sc.path), "mcp.servers.%s", shown);
    if ((rc = add_server(ld, kev, sc.path, &sc.sv)) != LP_OK)
        return rc;
    rc = cy_open_value(ld, sc.path, YAML_MAPPING_START_EVENT, "a mapping with command", &open);
    if (rc == LP_OK && open)
        rc = cy_each_pair(ld, sc.path, server_pair, &sc);
    if (rc == LP_OK && sc.sv->command == NULL)
        rc = cy_fail_at(ld, kev->start_mark, sc.path, "needs command");
    return rc;
}

/* "mcp.servers:" (inside mcp:). The file then defines the whole server list. */
lp_err cy_load_servers(struct loader *ld, const char *path, yaml_mark_t kmark)
{
    bool open;
    lp_err rc;

    if ((rc = cy_note_section(ld, path, kmark)) != LP_OK)
        return rc;
    ld->servers_defined = true;
    rc = cy_open_value(ld, path, YAML_MAPPING_START_EVENT, "a mapping of server names", &open);
    if (rc != LP_OK || !open)
        return rc;
    return cy_each_pair(ld, path, server_entry, NULL);
}
