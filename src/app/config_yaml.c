/* config_yaml.c — the YAML loader: walks libyaml's event stream (not its document tree)
 * because events carry the line and column of every key and value, which every error message
 * names. Keys and values are checked and stored through the key table in config.c
 * (config_internal.h); the caller's config changes only when the whole file is good.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_yaml_internal.h"
#include "limpet/fwdspec.h"
#include "limpet/config_load.h"

#define FILE_MAX (1u << 20) /* a config file beyond 1MiB is a mistake, not a config */

lp_err cy_fail_at(struct loader *ld, yaml_mark_t m, const char *key, const char *fmt, ...)
{
    char msg[LP_CONFIG_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (key != NULL)
        snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s: %s", ld->name, m.line + 1, m.column + 1, key,
                 msg);
    else
        snprintf(ld->err, ld->errlen, "%s:%zu:%zu: %s", ld->name, m.line + 1, m.column + 1, msg);
    return LP_ERR_INVALID;
}

lp_err cy_next_event(struct loader *ld, yaml_event_t *ev)
{
    yaml_parser_t *p = &ld->parser;

    if (yaml_parser_parse(p, ev))
        return LP_OK;
    memset(ev, 0, sizeof(*ev)); /* so the caller's yaml_event_delete is harmless */
    if (p->error == YAML_READER_ERROR) {
        snprintf(ld->err, ld->errlen, "%s: byte %zu: %s", ld->name, p->problem_offset,
                 p->problem ? p->problem : "unreadable input");
        return LP_ERR_INVALID;
    }
    if (p->error == YAML_MEMORY_ERROR) {
        snprintf(ld->err, ld->errlen, "%s: out of memory", ld->name);
        return LP_ERR_NOMEM;
    }
    if (p->context != NULL)
        return cy_fail_at(ld, p->problem_mark, NULL, "syntax error: %s (%s at line %zu)",
                          p->problem ? p->problem : "invalid YAML", p->context,
                          p->context_mark.line + 1);
    return cy_fail_at(ld, p->problem_mark, NULL, "syntax error: %s",
                      p->problem ? p->problem : "invalid YAML");
}

/* Plain `~`, `null` or nothing at all: YAML's null, which no key accepts as a value. */
bool cy_is_null(const yaml_event_t *ev)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;

    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return n == 0 || (n == 1 && v[0] == '~') ||
           (n == 4 &&
            (memcmp(v, "null", 4) == 0 || memcmp(v, "Null", 4) == 0 || memcmp(v, "NULL", 4) == 0));
}

static const char *event_kind(yaml_event_type_t t)
{
    switch (t) {
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_ALIAS_EVENT:
        return "an alias (aliases are not supported)";
    case YAML_SCALAR_EVENT:
        return "a single value";
    default:
        return "something else";
    }
}

static lp_err load_mapping(struct loader *ld, const char *prefix);
static lp_err load_auth(struct loader *ld, const char *path, yaml_mark_t kmark);

/* A list key written as a YAML sequence of scalars: joined with commas, then checked as the
 * one string `-o KEY=a,b` would give. The sequence's start event has been read. */
static lp_err load_joined(struct loader *ld, const struct cfg_key *k, yaml_mark_t mark)
{
    char joined[512], msg[LP_CONFIG_ERR_MAX];
    size_t used = 0;
    const char *name = cfg_key_name(k);

    joined[0] = '\0';
    for (;;) { /* ends: every entry adds at least a byte to joined, or fails */
        yaml_event_t ev;
        lp_err rc = cy_next_event(ld, &ev);
        if (rc != LP_OK)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        size_t n = ev.type == YAML_SCALAR_EVENT ? ev.data.scalar.length : 0;
        if (ev.type != YAML_SCALAR_EVENT || cy_is_null(&ev) || n == 0)
            rc = cy_fail_at(ld, ev.start_mark, name, "expected %s, got %s", cfg_key_wants(k),
                            event_kind(ev.type));
        else if (n + 2 > sizeof(joined) - used)
            rc = cy_fail_at(ld, ev.start_mark, name, "the list is too long (at most %zu bytes)",
                            sizeof(joined) - 1);
        if (rc == LP_OK) {
            if (used > 0)
                joined[used++] = ',';
            memcpy(joined + used, ev.data.scalar.value, n);
            used += n;
            joined[used] = '\0';
        }
        yaml_event_delete(&ev);
        if (rc != LP_OK)
            return rc;
    }
    if (cfg_set_value(k, joined, used, &ld->work, msg, sizeof(msg)) != LP_OK)
        return cy_fail_at(ld, mark, name, "%s", msg);
    return LP_OK;
}

static lp_err load_leaf(struct loader *ld, const struct cfg_key *k, yaml_mark_t kmark)
{
    yaml_event_t ev;
    char msg[LP_CONFIG_ERR_MAX];
    size_t i = cfg_key_index(k);
    const char *name = cfg_key_name(k);
    lp_err rc;

    if (ld->seen & ((uint64_t)1 << i))
        return cy_fail_at(ld, kmark, name, "duplicate key (first set on line %zu)",
                          ld->key_line[i]);
    ld->seen |= (uint64_t)1 << i;
    ld->key_line[i] = kmark.line + 1;
    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == YAML_SEQUENCE_START_EVENT && cfg_key_is_list(k)) {
        rc = load_joined(ld, k, ev.start_mark);
    } else if (ev.type != YAML_SCALAR_EVENT) {
        rc = cy_fail_at(ld, ev.start_mark, name, "expected %s, got %s%s", cfg_key_wants(k),
                        event_kind(ev.type),
                        cfg_key_is_address(k) && ev.type == YAML_SEQUENCE_START_EVENT
                            ? " (quote IPv6 addresses: \"[::1]:7070\")"
                            : "");
    } else if (cy_is_null(&ev)) {
        rc = cy_fail_at(ld, ev.start_mark, name, "missing value (expected %s)", cfg_key_wants(k));
    } else if (cfg_set_value(k, (const char *)ev.data.scalar.value, ev.data.scalar.length,
                             &ld->work, msg, sizeof(msg)) != LP_OK) {
        rc = cy_fail_at(ld, ev.start_mark, name, "%s", msg);
    }
    yaml_event_delete(&ev);
    return rc;
}

/* Records that a section was opened, refusing a second "session:" in one file. */
lp_err cy_note_section(struct loader *ld, const char *path, yaml_mark_t kmark)
{
    for (size_t i = 0; i < ld->n_sections; i++)
        if (strcmp(ld->sections[i], path) == 0)
            return cy_fail_at(ld, kmark, path, "duplicate key (first set on line %zu)",
                              ld->section_line[i]);
    if (ld->n_sections == SECTIONS_MAX) /* only if the key table grows past SECTIONS_MAX */
        return cy_fail_at(ld, kmark, path, "too many sections");
    snprintf(ld->sections[ld->n_sections], CFG_KEY_MAX, "%s", path);
    ld->section_line[ld->n_sections++] = kmark.line + 1;
    return LP_OK;
}

static lp_err load_section(struct loader *ld, const char *path, yaml_mark_t kmark)
{
    yaml_event_t ev;
    lp_err rc = LP_OK;

    if ((rc = cy_note_section(ld, path, kmark)) != LP_OK)
        return rc;
    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = load_mapping(ld, path);
    else if (!cy_is_null(&ev)) /* "session:" with every key commented out is fine */
        rc = cy_fail_at(ld, ev.start_mark, path, "expected a mapping of %s.* keys, got %s", path,
                        event_kind(ev.type));
    yaml_event_delete(&ev);
    return rc;
}

/* ---- auth.clients ---------------------------------------------------------------------- */

/* The identities are a list, not table keys: each client's mapping is walked here, with the
 * same "FILE:LINE:COL: auth.clients.NAME.KEY: problem" errors as the scalar keys. */

#define IPV6_HINT " (quote IPv6 addresses: \"[::1]:80\")"

/* Reads pairs up to the mapping's end, each through fn. Terminates: every fn either fails or
 * takes a key not seen before in this mapping, or adds an item below a hard cap. */
lp_err cy_each_pair(struct loader *ld, const char *path, pair_fn fn, void *ctx)
{
    for (;;) {
        yaml_event_t kev;
        lp_err rc = cy_next_event(ld, &kev);

        if (rc != LP_OK)
            return rc;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return LP_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT)
            rc = cy_fail_at(ld, kev.start_mark, path, "a key must be a plain word, got %s",
                            event_kind(kev.type));
        else
            rc = fn(ld, ctx, &kev);
        yaml_event_delete(&kev);
        if (rc != LP_OK)
            return rc;
    }
}

/* Reads the start of a value that must be a `want` (a mapping or a list). *open says whether
 * one started; a null value is an empty one and leaves it false. */
lp_err cy_open_value(struct loader *ld, const char *path, yaml_event_type_t want, const char *what,
                     bool *open)
{
    yaml_event_t ev;
    lp_err rc;

    *open = false;
    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == want)
        *open = true;
    else if (!cy_is_null(&ev))
        rc = cy_fail_at(ld, ev.start_mark, path, "expected %s, got %s", what, event_kind(ev.type));
    yaml_event_delete(&ev);
    return rc;
}

/* A string value: a scalar of 1..max_len bytes without NUL. `if_list` is added to the error
 * when a list stands where the string should be. */
lp_err cy_check_text(struct loader *ld, const char *path, const char *what, const yaml_event_t *ev,
                     size_t max_len, const char *if_list)
{
    char shown[CFG_SHOWN_BUF];
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;

    if (ev->type != YAML_SCALAR_EVENT)
        return cy_fail_at(ld, ev->start_mark, path, "expected %s, got %s%s", what,
                          event_kind(ev->type),
                          ev->type == YAML_SEQUENCE_START_EVENT ? if_list : "");
    if (cy_is_null(ev))
        return cy_fail_at(ld, ev->start_mark, path, "missing value (expected %s)", what);
    if (n == 0)
        return cy_fail_at(ld, ev->start_mark, path, "expected %s, got an empty string", what);
    if (n > max_len)
        return cy_fail_at(ld, ev->start_mark, path, "value is too long (%zu bytes, at most %zu)", n,
                          max_len);
    cfg_show(shown, sizeof(shown), v, n);
    if (memchr(v, '\0', n) != NULL)
        return cy_fail_at(ld, ev->start_mark, path, "expected %s, got \"%s\"", what, shown);
    return LP_OK;
}

/* Which of `words` the key is (-1: none); writes "base.KEY", the key escaped, to path. */
int cy_key_index(const yaml_event_t *kev, const char *const *words, size_t n_words,
                 const char *base, char *path, size_t len)
{
    char shown[CFG_SHOWN_BUF];
    const char *name = (const char *)kev->data.scalar.value;
    size_t n = kev->data.scalar.length;

    cfg_show(shown, sizeof(shown), name, n);
    if (snprintf(path, len, "%s.%s", base, shown) < 0) /* a long quote may be cut: fine */
        path[0] = '\0';
    for (size_t i = 0; i < n_words; i++)
        if (strlen(words[i]) == n && memcmp(words[i], name, n) == 0)
            return (int)i;
    return -1;
}

lp_err cy_unknown_word(struct loader *ld, const yaml_event_t *kev, const char *path,
                       const char *const *words, size_t n_words)
{
    char msg[LP_CONFIG_ERR_MAX];

    cfg_unknown_word((const char *)kev->data.scalar.value, kev->data.scalar.length, words, n_words,
                     msg, sizeof(msg));
    return cy_fail_at(ld, kev->start_mark, path, "%s", msg);
}

/* Appends one string to a list that grows by doubling, up to max_n entries of 1..max_len bytes. */
static lp_err add_entry(struct loader *ld, const char *path, const yaml_event_t *ev, char ***list,
                        size_t *n, const size_t max[2])
{
    size_t len = ev->data.scalar.length;
    lp_err rc = cy_check_text(ld, path, "a string", ev, max[0], IPV6_HINT);
    char *entry;

    if (rc != LP_OK)
        return rc;
    if (*n == max[1])
        return cy_fail_at(ld, ev->start_mark, path, "more than %zu entries", max[1]);
    if (*n == 0 || (*n >= 8 && (*n & (*n - 1)) == 0)) {
        char **grown = realloc(*list, (*n == 0 ? 8 : 2 * *n) * sizeof(**list));
        if (grown == NULL)
            return cy_fail_at(ld, ev->start_mark, path, "out of memory");
        *list = grown;
    }
    if ((entry = malloc(len + 1)) == NULL)
        return cy_fail_at(ld, ev->start_mark, path, "out of memory");
    memcpy(entry, ev->data.scalar.value, len);
    entry[len] = '\0';
    (*list)[(*n)++] = entry;
    return LP_OK;
}

static const size_t allow_max[2] = {LP_AUTH_ENTRY_MAX, LP_AUTH_ALLOW_MAX};

/* A list of strings, each checked against max (bytes per entry, entries). */
lp_err cy_load_list(struct loader *ld, const char *path, char ***list, size_t *n,
                    const size_t max[2])
{
    bool open;
    lp_err rc = cy_open_value(ld, path, YAML_SEQUENCE_START_EVENT, "a list of strings", &open);

    if (rc != LP_OK || !open)
        return rc;
    for (;;) { /* ends: add_entry fails at max[1] */
        yaml_event_t ev;
        if ((rc = cy_next_event(ld, &ev)) != LP_OK)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return LP_OK;
        }
        rc = add_entry(ld, path, &ev, list, n, max);
        yaml_event_delete(&ev);
        if (rc != LP_OK)
            return rc;
    }
}

_Static_assert(CFG_ALLOW_WORDS <= CFG_CLIENT_WORDS, "client_ctx.line serves both mappings");

struct client_ctx {
    struct lp_auth_client *cl; /* stable: clients are only added between clients */
    char path[AUTH_PATH_MAX];  /* auth.clients.NAME, or that .allow in allow_pair */
    size_t line
        [CFG_CLIENT_WORDS]; /* where each of cfg_client_words (or cfg_allow_words) was set; 0 = not */
};

static lp_err allow_pair(struct loader *ld, void *vctx, const yaml_event_t *kev)
{
    struct client_ctx *cc = vctx;
    struct lp_auth_client *cl = cc->cl;
    char path[AUTH_PATH_MAX];
    int i;

    if ((i = cy_key_index(kev, cfg_allow_words, CFG_ALLOW_WORDS, cc->path, path, sizeof(path))) < 0)
        return cy_unknown_word(ld, kev, path, cfg_allow_words, CFG_ALLOW_WORDS);
    if (cc->line[i] != 0)
        return cy_fail_at(ld, kev->start_mark, path, "duplicate key (first set on line %zu)",
                          cc->line[i]);
    cc->line[i] = kev->start_mark.line + 1;
    if (i == 0)
        return cy_load_list(ld, path, &cl->forward, &cl->n_forward, allow_max);
    if (i == 1)
        return cy_load_list(ld, path, &cl->reverse, &cl->n_reverse, allow_max);
    return cy_load_list(ld, path, &cl->mcp, &cl->n_mcp, allow_max);
}

static lp_err load_allow(struct loader *ld, const char *path, struct client_ctx *cc)
{
    struct client_ctx allow = *cc; /* its own seen-lines: forward, reverse, mcp */
    bool open;
    lp_err rc = cy_open_value(ld, path, YAML_MAPPING_START_EVENT,
                              "a mapping of forward, reverse and mcp lists", &open);

    if (rc != LP_OK || !open)
        return rc;
    memset(allow.line, 0, sizeof(allow.line));
    snprintf(allow.path, sizeof(allow.path), "%s", path); /* auth.clients.NAME.allow */
    return cy_each_pair(ld, path, allow_pair, &allow);
}

static lp_err load_credential(struct loader *ld, const char *path, struct lp_auth_client *cl,
                              bool is_fingerprint)
{
    const char *what = is_fingerprint ? CFG_FINGERPRINT_WANTS : "a file path", *why = NULL;
    char shown[CFG_SHOWN_BUF];
    yaml_event_t ev;
    lp_err rc;

    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    rc = cy_check_text(ld, path, what, &ev, LP_ADDR_MAX - 1, "");
    if (rc == LP_OK && !is_fingerprint) {
        memcpy(cl->psk_file, ev.data.scalar.value, ev.data.scalar.length);
        cl->psk_file[ev.data.scalar.length] = '\0';
    } else if (rc == LP_OK &&
               !cfg_fingerprint_canon((const char *)ev.data.scalar.value, ev.data.scalar.length,
                                      cl->cert_fingerprint, &why)) {
        cfg_show(shown, sizeof(shown), (const char *)ev.data.scalar.value, ev.data.scalar.length);
        rc = cy_fail_at(ld, ev.start_mark, path, "\"%s\" %s", shown, why);
    }
    yaml_event_delete(&ev);
    return rc;
}

static lp_err client_pair(struct loader *ld, void *vctx, const yaml_event_t *kev)
{
    struct client_ctx *cc = vctx;
    char path[AUTH_PATH_MAX];
    int i;

    if ((i = cy_key_index(kev, cfg_client_words, CFG_CLIENT_WORDS, cc->path, path, sizeof(path))) <
        0)
        return cy_unknown_word(ld, kev, path, cfg_client_words, CFG_CLIENT_WORDS);
    if (cc->line[i] != 0)
        return cy_fail_at(ld, kev->start_mark, path, "duplicate key (first set on line %zu)",
                          cc->line[i]);
    cc->line[i] = kev->start_mark.line + 1;
    if (i == 2)
        return load_allow(ld, path, cc);
    return load_credential(ld, path, cc->cl, i == 1);
}

/* A new, zeroed client at the end of the list, named after the key. */
static lp_err add_client(struct loader *ld, const yaml_event_t *kev, const char *path,
                         struct lp_auth_client **out)
{
    const char *name = (const char *)kev->data.scalar.value;
    size_t n = kev->data.scalar.length;
    struct lp_auth_client *cl;

    if (!cfg_identity_ok(name, n))
        return cy_fail_at(ld, kev->start_mark, path, "bad client name (expected %s)",
                          CFG_IDENTITY_WANTS);
    for (size_t i = 0; i < ld->n_clients; i++)
        if (strlen(ld->clients[i].name) == n && memcmp(ld->clients[i].name, name, n) == 0)
            return cy_fail_at(ld, kev->start_mark, path,
                              "duplicate client name (first defined on line %u)",
                              ld->clients[i].line);
    if (ld->n_clients == LP_AUTH_CLIENTS_MAX)
        return cy_fail_at(ld, kev->start_mark, path, "more than %u clients", LP_AUTH_CLIENTS_MAX);
    if (ld->n_clients == ld->cap_clients) {
        size_t cap = ld->cap_clients == 0 ? 8 : LP_MIN(2 * ld->cap_clients, LP_AUTH_CLIENTS_MAX);
        struct lp_auth_client *grown = realloc(ld->clients, cap * sizeof(*grown));
        if (grown == NULL)
            return cy_fail_at(ld, kev->start_mark, path, "out of memory");
        ld->clients = grown;
        ld->cap_clients = cap;
    }
    cl = &ld->clients[ld->n_clients++];
    memset(cl, 0, sizeof(*cl));
    memcpy(cl->name, name, n);
    cl->line = (unsigned)kev->start_mark.line + 1;
    *out = cl;
    return LP_OK;
}

static lp_err client_entry(struct loader *ld, void *ctx, const yaml_event_t *kev)
{
    struct client_ctx cc;
    char shown[CFG_SHOWN_BUF];
    bool open;
    lp_err rc;

    (void)ctx;
    memset(&cc, 0, sizeof(cc));
    cfg_show(shown, sizeof(shown), (const char *)kev->data.scalar.value, kev->data.scalar.length);
    snprintf(cc.path, sizeof(cc.path), "auth.clients.%s", shown);
    if ((rc = add_client(ld, kev, cc.path, &cc.cl)) != LP_OK)
        return rc;
    rc = cy_open_value(ld, cc.path, YAML_MAPPING_START_EVENT,
                       "a mapping with psk_file or cert_fingerprint", &open);
    if (rc == LP_OK && open)
        rc = cy_each_pair(ld, cc.path, client_pair, &cc);
    if (rc != LP_OK)
        return rc;
    /* Checked here, where the client's position is known, rather than in lp_config_finish. */
    if (cc.cl->psk_file[0] != '\0' && cc.cl->cert_fingerprint[0] != '\0')
        return cy_fail_at(ld, kev->start_mark, cc.path,
                          "set psk_file or cert_fingerprint, not both");
    if (cc.cl->psk_file[0] == '\0' && cc.cl->cert_fingerprint[0] == '\0')
        return cy_fail_at(ld, kev->start_mark, cc.path, "needs psk_file or cert_fingerprint");
    return LP_OK;
}

static lp_err auth_pair(struct loader *ld, void *ctx, const yaml_event_t *kev)
{
    char path[AUTH_PATH_MAX];

    (void)ctx;
    if (cy_key_index(kev, cfg_auth_words, CFG_AUTH_WORDS, "auth", path, sizeof(path)) < 0)
        return cy_unknown_word(ld, kev, path, cfg_auth_words, CFG_AUTH_WORDS);
    return load_auth(ld, "auth.clients", kev->start_mark);
}

/* "auth:" or "auth.clients:". Either marks the file as defining the whole client list. */
static lp_err load_auth(struct loader *ld, const char *path, yaml_mark_t kmark)
{
    bool clients = strcmp(path, "auth.clients") == 0, open;
    lp_err rc;

    if ((rc = cy_note_section(ld, path, kmark)) != LP_OK)
        return rc;
    ld->auth_defined = true;
    rc = cy_open_value(ld, path, YAML_MAPPING_START_EVENT,
                       clients ? "a mapping of client names" : "a mapping of auth.* keys", &open);
    if (rc != LP_OK || !open)
        return rc;
    return cy_each_pair(ld, path, clients ? client_entry : auth_pair, NULL);
}

/* ---- forward.local / .dynamic / .remote / .transparent ----------------------------------- */

static const size_t forward_max[2] = {CFG_FORWARD_SPEC_MAX, CFG_FORWARD_LIST_MAX};

/* A list of forward specs of one kind, each checked as the command line would. */
static lp_err load_forwards(struct loader *ld, const char *path, int which, yaml_mark_t kmark)
{
    bool open;
    lp_err rc;

    if (ld->fw_line[which] != 0)
        return cy_fail_at(ld, kmark, path, "duplicate key (first set on line %zu)",
                          ld->fw_line[which]);
    ld->fw_line[which] = kmark.line + 1;
    if ((rc = cy_open_value(ld, path, YAML_SEQUENCE_START_EVENT, "a list of strings", &open)) !=
            LP_OK ||
        !open)
        return rc;
    for (;;) { /* ends: add_entry fails at forward_max[1] entries */
        yaml_event_t ev;
        struct lp_forward fw;
        char spec[LP_ADDR_MAX * 2 + 1], why[160], shown[CFG_SHOWN_BUF];

        if ((rc = cy_next_event(ld, &ev)) != LP_OK)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return LP_OK;
        }
        rc = add_entry(ld, path, &ev, &ld->fw[which], &ld->n_fw[which], forward_max);
        if (rc == LP_OK) {
            snprintf(spec, sizeof(spec), "%s", ld->fw[which][ld->n_fw[which] - 1]);
            if (lp_parse_fwd_spec((enum lp_fwd_kind)which, spec, &fw, why, sizeof(why)) != LP_OK) {
                /* one line: the spec (and the parser's quote of it) may hold any byte */
                cfg_show(shown, sizeof(shown), spec, strlen(spec));
                for (char *q = why; *q; q++)
                    *q = (unsigned char)*q < 0x20 ? '?' : *q;
                rc = cy_fail_at(ld, ev.start_mark, path, "\"%s\": %s", shown, why);
            }
        }
        yaml_event_delete(&ev);
        if (rc != LP_OK)
            return rc;
    }
}

/* One "key: value" pair whose key event has been read (and is passed in). */
static lp_err load_pair(struct loader *ld, const char *prefix, const yaml_event_t *kev)
{
    char path[CFG_KEY_MAX], shown[CFG_SHOWN_BUF], msg[LP_CONFIG_ERR_MAX];
    const char *name = (const char *)kev->data.scalar.value;
    size_t n = kev->data.scalar.length, pn = strlen(prefix);
    const struct cfg_key *k = NULL;
    int w = -1;

    if (memchr(name, '\0', n) == NULL && n < sizeof(path))
        w = snprintf(path, sizeof(path), "%s%s%.*s", prefix, pn ? "." : "", (int)n, name);
    if (w >= 0 && (size_t)w < sizeof(path)) {
        if (strcmp(path, "auth") == 0 || strcmp(path, "auth.clients") == 0)
            return load_auth(ld, path, kev->start_mark);
        if (strcmp(path, "mcp.servers") == 0)
            return cy_load_servers(ld, path, kev->start_mark);
        for (int fk = 0; fk < LP_FWD_KINDS; fk++)
            if (strncmp(path, "forward.", 8) == 0 && strcmp(path + 8, lp_fwd_kind_names[fk]) == 0)
                return load_forwards(ld, path, fk, kev->start_mark);
        if ((k = cfg_find_key(path)) != NULL)
            return load_leaf(ld, k, kev->start_mark);
        if (cfg_is_section(path))
            return load_section(ld, path, kev->start_mark);
        cfg_unknown_key(path, strlen(path), msg, sizeof(msg));
        cfg_show(shown, sizeof(shown), path, strlen(path));
    } else {
        snprintf(msg, sizeof(msg), "unknown key");
        cfg_show(shown, sizeof(shown), name, n);
    }
    return cy_fail_at(ld, kev->start_mark, shown, "%s", msg);
}

/* Reads pairs up to the mapping's end. Terminates: every pair either fails or marks a
 * distinct known key or section as seen, so a mapping holds at most CFG_KEYS_MAX pairs. */
static lp_err load_mapping(struct loader *ld, const char *prefix)
{
    for (;;) {
        yaml_event_t kev;
        lp_err rc = cy_next_event(ld, &kev);

        if (rc != LP_OK)
            return rc;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return LP_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT)
            rc = cy_fail_at(ld, kev.start_mark, prefix[0] ? prefix : NULL,
                            "a key must be a plain word, got %s", event_kind(kev.type));
        else
            rc = load_pair(ld, prefix, &kev);
        yaml_event_delete(&kev);
        if (rc != LP_OK)
            return rc;
    }
}

/* The document's root: a mapping, or nothing at all (an empty or all-comment file). */
static lp_err load_root(struct loader *ld)
{
    yaml_event_t ev;
    lp_err rc;

    if ((rc = cy_next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = load_mapping(ld, "");
    else if (!cy_is_null(&ev))
        rc = cy_fail_at(ld, ev.start_mark, NULL,
                        "expected a mapping of keys (such as "
                        "\"listen: 0.0.0.0:7070\") at the top, got %s",
                        event_kind(ev.type));
    yaml_event_delete(&ev);
    return rc;
}

/* STREAM-START, at most one DOCUMENT (root, DOCUMENT-END), STREAM-END. */
static lp_err load_stream(struct loader *ld)
{
    yaml_event_t ev;
    lp_err rc = LP_OK;
    int docs = 0;

    for (int step = 0; step < 8 && rc == LP_OK; step++) {
        if ((rc = cy_next_event(ld, &ev)) != LP_OK)
            return rc;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return LP_OK;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0)
                rc = cy_fail_at(ld, ev.start_mark, NULL, "only one YAML document is allowed");
            else
                rc = load_root(ld);
            break;
        default: /* STREAM-START, DOCUMENT-END */
            break;
        }
        yaml_event_delete(&ev);
    }
    if (rc == LP_OK) /* libyaml emits STREAM-END long before this; kept for the bound */
        rc = cy_fail_at(ld, ld->parser.mark, NULL, "unexpected YAML structure");
    return rc;
}

lp_err lp_config_load_string(struct lp_config *c, const char *name, const char *yaml, size_t len,
                             char *err, size_t errlen)
{
    struct loader *ld;
    char dummy[1];
    lp_err rc;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (len > FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes: not a config file", name, FILE_MAX);
        return LP_ERR_INVALID;
    }
    /* The loader is ~2KiB of bookkeeping: heap, not stack, as this may run deep in main. */
    if ((ld = calloc(1, sizeof(*ld))) == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        return LP_ERR_NOMEM;
    }
    ld->work = *c; /* shares c's client list until the file is good */
    ld->name = name;
    ld->err = err;
    ld->errlen = errlen;
    if (!yaml_parser_initialize(&ld->parser)) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(ld);
        return LP_ERR_NOMEM;
    }
    yaml_parser_set_input_string(&ld->parser, (const unsigned char *)yaml, len);
    rc = load_stream(ld);
    if (rc == LP_OK && ld->auth_defined) {
        cfg_free_clients(c->auth.clients, c->auth.n_clients);
        ld->work.auth.clients = ld->clients;
        ld->work.auth.n_clients = ld->n_clients;
        ld->clients = NULL; /* c owns them now */
    }
    if (rc == LP_OK && ld->servers_defined) {
        cfg_free_servers(c->mcp.servers, c->mcp.n_servers);
        ld->work.mcp.servers = ld->servers;
        ld->work.mcp.n_servers = ld->n_servers;
        ld->servers = NULL;
    }
    for (int w = 0; w < LP_FWD_KINDS && rc == LP_OK; w++) {
        char ***list = &ld->work.forward.specs[w];
        size_t *n = &ld->work.forward.n_specs[w];
        if (ld->fw_line[w] == 0)
            continue;
        cfg_free_list(*list, *n); /* c's old list: replaced by the file's */
        *list = ld->fw[w];
        *n = ld->n_fw[w];
        ld->fw[w] = NULL;
        ld->n_fw[w] = 0;
    }
    if (rc == LP_OK)
        *c = ld->work;
    cfg_free_clients(ld->clients, ld->n_clients);
    cfg_free_servers(ld->servers, ld->n_servers);
    for (int w = 0; w < LP_FWD_KINDS; w++)
        cfg_free_list(ld->fw[w], ld->n_fw[w]);
    yaml_parser_delete(&ld->parser);
    free(ld);
    return rc;
}

lp_err lp_config_load_file(struct lp_config *c, const char *path, char *err, size_t errlen)
{
    char *buf = NULL;
    size_t n = 0;
    lp_err rc = LP_ERR_INVALID;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return LP_ERR_INVALID;
    }
    if ((buf = malloc(FILE_MAX + 1)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        rc = LP_ERR_NOMEM;
        goto out;
    }
    /* Read one byte past the cap so an oversized file is refused rather than cut. */
    n = fread(buf, 1, FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = lp_config_load_string(c, path, buf, n, err, errlen);
out:
    free(buf);
    fclose(f);
    return rc;
}
