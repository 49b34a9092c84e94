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

#include "config_internal.h"
#include "limpet/config.h"

#define CFG_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define FILE_MAX (1u << 20) /* a config file beyond 1MiB is a mistake, not a config */
#define SECTIONS_MAX 16u    /* distinct sections a file can name (all must be known) */

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
};

static lp_err fail_at(struct loader *ld, yaml_mark_t m, const char *key, const char *fmt, ...)
    CFG_PRINTF(4, 5);

static lp_err fail_at(struct loader *ld, yaml_mark_t m, const char *key, const char *fmt, ...)
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

static lp_err next_event(struct loader *ld, yaml_event_t *ev)
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
        return fail_at(ld, p->problem_mark, NULL, "syntax error: %s (%s at line %zu)",
                       p->problem ? p->problem : "invalid YAML", p->context,
                       p->context_mark.line + 1);
    return fail_at(ld, p->problem_mark, NULL, "syntax error: %s",
                   p->problem ? p->problem : "invalid YAML");
}

/* Plain `~`, `null` or nothing at all: YAML's null, which no key accepts as a value. */
static bool is_null(const yaml_event_t *ev)
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

static lp_err load_leaf(struct loader *ld, const struct cfg_key *k, yaml_mark_t kmark)
{
    yaml_event_t ev;
    char msg[LP_CONFIG_ERR_MAX];
    size_t i = cfg_key_index(k);
    const char *name = cfg_key_name(k);
    lp_err rc;

    if (ld->seen & ((uint64_t)1 << i))
        return fail_at(ld, kmark, name, "duplicate key (first set on line %zu)", ld->key_line[i]);
    ld->seen |= (uint64_t)1 << i;
    ld->key_line[i] = kmark.line + 1;
    if ((rc = next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type != YAML_SCALAR_EVENT) {
        rc = fail_at(ld, ev.start_mark, name, "expected %s, got %s%s", cfg_key_wants(k),
                     event_kind(ev.type),
                     cfg_key_is_address(k) && ev.type == YAML_SEQUENCE_START_EVENT
                         ? " (quote IPv6 addresses: \"[::1]:7070\")"
                         : "");
    } else if (is_null(&ev)) {
        rc = fail_at(ld, ev.start_mark, name, "missing value (expected %s)", cfg_key_wants(k));
    } else if (cfg_set_value(k, (const char *)ev.data.scalar.value, ev.data.scalar.length,
                             &ld->work, msg, sizeof(msg)) != LP_OK) {
        rc = fail_at(ld, ev.start_mark, name, "%s", msg);
    }
    yaml_event_delete(&ev);
    return rc;
}

static lp_err load_section(struct loader *ld, const char *path, yaml_mark_t kmark)
{
    yaml_event_t ev;
    lp_err rc = LP_OK;

    for (size_t i = 0; i < ld->n_sections; i++)
        if (strcmp(ld->sections[i], path) == 0)
            return fail_at(ld, kmark, path, "duplicate key (first set on line %zu)",
                           ld->section_line[i]);
    if (ld->n_sections == SECTIONS_MAX) /* only if the key table grows past SECTIONS_MAX */
        return fail_at(ld, kmark, path, "too many sections");
    snprintf(ld->sections[ld->n_sections], CFG_KEY_MAX, "%s", path);
    ld->section_line[ld->n_sections++] = kmark.line + 1;
    if ((rc = next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = load_mapping(ld, path);
    else if (!is_null(&ev)) /* "session:" with every key commented out is fine */
        rc = fail_at(ld, ev.start_mark, path, "expected a mapping of %s.* keys, got %s", path,
                     event_kind(ev.type));
    yaml_event_delete(&ev);
    return rc;
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
    return fail_at(ld, kev->start_mark, shown, "%s", msg);
}

/* Reads pairs up to the mapping's end. Terminates: every pair either fails or marks a
 * distinct known key or section as seen, so a mapping holds at most CFG_KEYS_MAX pairs. */
static lp_err load_mapping(struct loader *ld, const char *prefix)
{
    for (;;) {
        yaml_event_t kev;
        lp_err rc = next_event(ld, &kev);

        if (rc != LP_OK)
            return rc;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return LP_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT)
            rc = fail_at(ld, kev.start_mark, prefix[0] ? prefix : NULL,
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

    if ((rc = next_event(ld, &ev)) != LP_OK)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT)
        rc = load_mapping(ld, "");
    else if (!is_null(&ev))
        rc = fail_at(ld, ev.start_mark, NULL,
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
        if ((rc = next_event(ld, &ev)) != LP_OK)
            return rc;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return LP_OK;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0)
                rc = fail_at(ld, ev.start_mark, NULL, "only one YAML document is allowed");
            else
                rc = load_root(ld);
            break;
        default: /* STREAM-START, DOCUMENT-END */
            break;
        }
        yaml_event_delete(&ev);
    }
    if (rc == LP_OK) /* libyaml emits STREAM-END long before this; kept for the bound */
        rc = fail_at(ld, ld->parser.mark, NULL, "unexpected YAML structure");
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
    ld->work = *c;
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
    if (rc == LP_OK)
        *c = ld->work;
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
