/* config_names.c — "did you mean": the key or word closest to one the file or -o got wrong.
 * Split from config.c, which holds the table and the value parsers; this only reads names.
 */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "limpet/base.h"

/* Edit distance, for "did you mean". Both lengths are below CFG_KEY_MAX. */
static size_t distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t row[CFG_KEY_MAX + 1];

    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t best = LP_MIN(row[j] + 1, row[j - 1] + 1);
            row[j] = LP_MIN(best, diag + (a[i - 1] != b[j - 1]));
            diag = up;
        }
    }
    return row[bn];
}

static const char *leaf(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

static size_t dots(const char *s, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += s[i] == '.';
    return d;
}

/* Names the loader knows beyond the table: auth.clients is a list, not a scalar key. */
static const char *const list_names[] = {"auth.clients"};
#define LIST_NAMES (sizeof(list_names) / sizeof(list_names[0]))

static const char *name_at(size_t i)
{
    size_t n = cfg_key_count();
    return i < n ? cfg_key_name_at(i) : list_names[i - n];
}

/* Writes the closest key or section to `path` into out, or "" when none is close. A key
 * with the same last word wins outright ("heartbeat" at the top -> session.heartbeat). */
static void suggest(const char *path, char *out, size_t len)
{
    size_t pn = strlen(path), best = 3;

    out[0] = '\0';
    if (pn >= CFG_KEY_MAX)
        return;
    for (size_t i = 0; i < cfg_key_count() + LIST_NAMES; i++) {
        if (strcmp(leaf(name_at(i)), leaf(path)) == 0) {
            snprintf(out, len, "%s", name_at(i));
            return;
        }
    }
    for (size_t i = 0; i < cfg_key_count() + LIST_NAMES; i++) {
        const char *name = name_at(i);
        for (size_t n = 1; name[n - 1] != '\0'; n++) {
            if ((name[n] != '.' && name[n] != '\0') || dots(name, n) != dots(path, pn))
                continue; /* compare like with like: "sesion" with sections, not keys */
            size_t d = distance(path, pn, name, n);
            if (d > 0 && d < best && d < pn) {
                best = d;
                snprintf(out, len, "%.*s", (int)n, name);
            }
        }
    }
}

void cfg_unknown_word(const char *word, size_t n, const char *const *choices, size_t n_choices,
                      char *msg, size_t len)
{
    const char *guess = NULL;
    size_t best = 3;

    for (size_t i = 0; i < n_choices && n < CFG_KEY_MAX; i++) {
        size_t cn = strlen(choices[i]), d;
        if (cn >= CFG_KEY_MAX)
            continue;
        d = distance(word, n, choices[i], cn);
        if (d > 0 && d < best && d < n) {
            best = d;
            guess = choices[i];
        }
    }
    if (guess != NULL)
        snprintf(msg, len, "unknown key (did you mean %s?)", guess);
    else
        snprintf(msg, len, "unknown key");
}

void cfg_unknown_key(const char *path, size_t n, char *msg, size_t len)
{
    char guess[CFG_KEY_MAX];
    char path0[CFG_KEY_MAX];

    snprintf(path0, sizeof(path0), "%.*s", (int)LP_MIN(n, CFG_KEY_MAX - 1), path);
    suggest(n < CFG_KEY_MAX ? path0 : "", guess, sizeof(guess));
    if (guess[0] != '\0')
        snprintf(msg, len, "unknown key (did you mean %s?)", guess);
    else
        snprintf(msg, len, "unknown key");
}
