/* mankeys.c — a build tool: copies a man page template from stdin to stdout, replacing the line
 * "@KEYS@" with the scalar configuration keys and "@MAPS@" with the lists and mappings, as
 * roff, from the same rows `limpet --help` prints (lp_config_doc_at). So limpet.yaml(5) cannot
 * list a key the program lacks, or miss one it has.
 *
 *   mankeys < man/limpet.yaml.5.in > limpet.yaml.5
 *
 * Exit 0; 1 when a marker is missing or appears twice, or a template line is too long.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "limpet/config.h"
#include "limpet/config_load.h"

#define LINE_MAX_BYTES 4096u

#define WRAP_AT 78u /* roff fills the text anyway; short source lines keep mandoc -Tlint quiet */

/* Roff text lines under construction: words go out separated by spaces, and a new line starts
 * before a word that would pass WRAP_AT. */
struct roff {
    FILE *out;
    size_t col; /* bytes on the current line; 0 = at the start of a line */
};

static void put_word(struct roff *r, const char *w, size_t n)
{
    if (r->col > 0 && r->col + 1 + n > WRAP_AT) {
        fputc('\n', r->out);
        r->col = 0;
    }
    if (r->col > 0) {
        fputc(' ', r->out);
        r->col++;
    } else if (w[0] == '.' || w[0] == '\'') {
        fputs("\\&", r->out); /* else roff would read the line as a request */
        r->col += 2;
    }
    fwrite(w, 1, n, r->out);
    r->col += n;
}

static void end_line(struct roff *r)
{
    if (r->col > 0)
        fputc('\n', r->out);
    r->col = 0;
}

/* Escapes one word of plain text into buf: `code` becomes bold (the state carries across
 * words in *bold), a '-' that starts an option (-L, --help) becomes \- so it renders and
 * searches as a minus, and a backslash is escaped. Returns the bytes written. */
static size_t escape_word(const char *w, size_t n, bool *bold, char *buf, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < len; i++) {
        const char *rep = NULL;
        char one[2] = {w[i], '\0'};
        if (w[i] == '`') {
            rep = *bold ? "\\fR" : "\\fB";
            *bold = !*bold;
        } else if (w[i] == '\\') {
            rep = "\\e";
        } else if (w[i] == '-' &&
                   (i == 0 || w[i - 1] == '(' || w[i - 1] == '-' || w[i - 1] == '`')) {
            rep = "\\-";
        }
        o += (size_t)snprintf(buf + o, len - o, "%s", rep ? rep : one);
    }
    return o;
}

/* Plain text (words separated by single spaces), escaped and wrapped. */
static void put_text(struct roff *r, const char *s)
{
    char buf[LINE_MAX_BYTES];
    bool bold = false;

    while (*s != '\0') {
        size_t n = strcspn(s, " ");
        if (n > 0)
            put_word(r, buf, escape_word(s, n, &bold, buf, sizeof(buf)));
        s += n;
        s += strspn(s, " ");
    }
    if (bold)
        put_word(r, "\\fR", 3);
}

/* The key's name in bold, with NAME (the part the file chooses) in italics. */
static void put_name(FILE *out, const char *name)
{
    const char *p = name, *hit;

    fputs("\\fB", out);
    while ((hit = strstr(p, "NAME")) != NULL) {
        fprintf(out, "%.*s\\fINAME\\fB", (int)(hit - p), p);
        p = hit + 4;
    }
    fprintf(out, "%s\\fR", p);
}

/* One sentence: the text and a full stop, wrapped. */
static void put_sentence(struct roff *r, const char *lead, const char *text)
{
    char line[LINE_MAX_BYTES];

    snprintf(line, sizeof(line), "%s%s.", lead, text);
    put_text(r, line);
    end_line(r);
}

static void put_key(FILE *out, const struct lp_config_doc *d)
{
    struct roff r = {out, 0};

    fputs(".TP\n", out);
    put_name(out, d->name);
    fprintf(out, " (%s)\n", d->type);
    put_sentence(&r, "", d->help);
    fputs(".br\n", out);
    if (d->file_only)
        fputs("Default: empty.\n", out);
    else if (d->def[0] == '\0')
        fputs("Default: unset.\n", out);
    else
        fprintf(out, "Default: \\fB%s\\fR.\n", d->def);
    put_sentence(&r, "Values: ", d->range);
}

static void put_keys(FILE *out, bool file_only)
{
    struct lp_config_doc d;

    for (size_t i = 0; lp_config_doc_at(i, &d); i++)
        if (d.file_only == file_only)
            put_key(out, &d);
}

int main(void)
{
    char line[LINE_MAX_BYTES];
    int keys = 0, maps = 0;

    while (fgets(line, sizeof(line), stdin) != NULL) {
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            fprintf(stderr, "mankeys: a template line is longer than %u bytes\n", LINE_MAX_BYTES);
            return 1;
        }
        if (strcmp(line, "@KEYS@\n") == 0) {
            put_keys(stdout, false);
            keys++;
        } else if (strcmp(line, "@MAPS@\n") == 0) {
            put_keys(stdout, true);
            maps++;
        } else {
            fputs(line, stdout);
        }
    }
    if (keys != 1 || maps != 1) {
        fprintf(stderr, "mankeys: the template needs one @KEYS@ and one @MAPS@ line (%d, %d)\n",
                keys, maps);
        return 1;
    }
    return fflush(stdout) == 0 && !ferror(stdin) ? 0 : 1;
}
