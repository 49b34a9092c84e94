/* keygen.c — `limpet keygen psk|cert NAME [-o FILE|PREFIX]`: makes key files and prints the
 * config lines to paste on each side.
 *
 * What is printed is meant to be pasted into YAML as is, so paths that YAML would read
 * differently are double-quoted. Names are restricted (lp_keys_name_valid) and need no
 * quoting anywhere.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/keys.h"

enum { KEYGEN_OK = 0, KEYGEN_FAIL = 1 };

struct keygen_args {
    const char *kind;   /* "psk" or "cert"; borrowed from argv */
    const char *name;   /* identity name; borrowed */
    const char *output; /* -o FILE (psk) or PREFIX (cert); NULL for the default; borrowed */
    bool help;
};

static const char usage_text[] =
    "NAME\n"
    "    limpet keygen - make a pre-shared key or a self-signed certificate\n"
    "\n"
    "SYNOPSIS\n"
    "    limpet keygen psk NAME [-o FILE]\n"
    "    limpet keygen cert NAME [-o PREFIX]\n"
    "    limpet keygen --help\n"
    "\n"
    "DESCRIPTION\n"
    "    psk   writes 32 random bytes as 64 hex digits to NAME.psk (mode 0600) and prints\n"
    "          the lines to add to the server's and the client's config. NAME is the\n"
    "          client's identity.\n"
    "    cert  writes an ECDSA P-256 key to NAME.key (mode 0600) and a self-signed\n"
    "          certificate (CN=NAME) to NAME.crt, and prints its SHA-256 fingerprint and\n"
    "          the config lines for each side. Peers pin the fingerprint: there is no CA,\n"
    "          and the certificate is valid for 100 years, so expiry never breaks a\n"
    "          working setup; retire one by removing its fingerprint from the config.\n"
    "    Existing files are never overwritten. NAME is 1-64 letters, digits, '.', '_' or\n"
    "    '-', not starting with '.' or '-'.\n"
    "\n"
    "OPTIONS\n"
    "    -o, --output FILE    psk: write the key to FILE instead of NAME.psk\n"
    "    -o, --output PREFIX  cert: write PREFIX.key and PREFIX.crt\n"
    "    -h, --help           show this page\n"
    "\n"
    "EXIT STATUS\n"
    "    0 the files were written; 1 on any error (one line on stderr).\n"
    "\n"
    "EXAMPLES\n"
    "    limpet keygen psk laptop\n"
    "    limpet keygen cert server -o /etc/limpet/server\n";

static bool is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "help") == 0;
}

/* The value of -o/--output at argv[*i], in any of its spellings; NULL if argv[*i] is not
 * one. Sets *missing when the flag is there but its value is not. */
static const char *output_value(int argc, char **argv, int *i, bool *missing)
{
    const char *arg = argv[*i];

    *missing = false;
    if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        return argv[++*i];
    }
    if (strncmp(arg, "--output=", 9) == 0)
        return arg + 9;
    if (strncmp(arg, "-o", 2) == 0)
        return arg + 2;
    return NULL;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr; argv text is quoted in it, so control characters are masked. */
static int usage_error(const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    for (char *p = line; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "limpet: keygen: %s (see limpet keygen --help)\n", line);
    return KEYGEN_FAIL;
}

/* One argument after the kind. Returns KEYGEN_OK or reports the problem. */
static int parse_one(int argc, char **argv, int *i, bool *options_done, struct keygen_args *a)
{
    const char *arg = argv[*i], *out;
    bool missing;

    if (!*options_done && strcmp(arg, "--") == 0) {
        *options_done = true;
        return KEYGEN_OK;
    }
    if (!*options_done && is_help(arg) && arg[0] == '-') {
        a->help = true;
        return KEYGEN_OK;
    }
    if (!*options_done && arg[0] == '-' && arg[1] != '\0') {
        if ((out = output_value(argc, argv, i, &missing)) == NULL)
            return missing ? usage_error("%s needs a value", arg)
                           : usage_error("unknown option %s", arg);
        if (a->output != NULL)
            return usage_error("-o given twice");
        if (out[0] == '\0')
            return usage_error("empty value for %s", arg);
        a->output = out;
        return KEYGEN_OK;
    }
    if (a->name != NULL)
        return usage_error("unexpected argument '%s'", arg);
    a->name = arg;
    return KEYGEN_OK;
}

static int parse_args(int argc, char **argv, struct keygen_args *a)
{
    bool options_done = false;

    memset(a, 0, sizeof(*a));
    if (argc < 2)
        return usage_error("%s", "say what to make: psk or cert");
    if (is_help(argv[1])) {
        a->help = true;
        return KEYGEN_OK;
    }
    if (strcmp(argv[1], "psk") != 0 && strcmp(argv[1], "cert") != 0)
        return usage_error("unknown key type '%s' (psk or cert)", argv[1]);
    a->kind = argv[1];
    for (int i = 2; i < argc; i++) {
        if (parse_one(argc, argv, &i, &options_done, a) != KEYGEN_OK)
            return KEYGEN_FAIL;
    }
    if (a->help)
        return KEYGEN_OK;
    if (a->name == NULL)
        return usage_error("%s needs a NAME", a->kind);
    if (!lp_keys_name_valid(a->name))
        return usage_error("bad NAME '%s': use 1-64 letters, digits, '.', '_' or '-', not "
                           "starting with '.' or '-'",
                           a->name);
    return KEYGEN_OK;
}

/* ---- output ------------------------------------------------------------------------------ */

/* s as a YAML scalar: plain when YAML reads it back unchanged, else double-quoted. */
static void put_yaml(FILE *f, const char *s)
{
    bool plain = s[0] != '\0' && s[0] != '-';

    for (const char *p = s; *p != '\0' && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("/._-", *p) != NULL;
    if (plain) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void put_line(FILE *f, const char *indent, const char *key, const char *value)
{
    fprintf(f, "%s%s: ", indent, key);
    put_yaml(f, value);
    fputc('\n', f);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The absolute path of a file just written, for the server's config (whose working
 * directory is not ours). Returns owned (free()), or NULL: then path is printed as given. */
static char *absolute(const char *path)
{
    return realpath(path, NULL);
}

static void print_psk(const char *name, const char *path)
{
    char *abs = absolute(path);
    const char *shown = abs ? abs : path;

    printf("Wrote %s (mode 0600): the pre-shared key of identity %s.\n\n", shown, name);
    printf("Server config (the key auth.clients.%s.psk_file):\n", name);
    printf("  auth:\n    clients:\n      %s:\n", name);
    put_line(stdout, "        ", "psk_file", shown);
    printf("\nClient config:\n");
    put_line(stdout, "  ", "identity", name);
    put_line(stdout, "  ", "psk_file", base_name(path));
    printf("\nCopy %s to the client over a secure channel (scp, ssh) and keep it mode 0600\n"
           "there: anyone who holds it can connect as %s.\n",
           base_name(path), name);
    free(abs);
}

static void print_cert(const char *name, const char *key_path, const char *crt_path, const char *fp)
{
    char *key_abs = absolute(key_path), *crt_abs = absolute(crt_path);
    const char *key_shown = key_abs ? key_abs : key_path;
    const char *crt_shown = crt_abs ? crt_abs : crt_path;

    printf("Wrote %s (private key, mode 0600) and %s (certificate, CN=%s).\n", key_shown, crt_shown,
           name);
    printf("Fingerprint: %s\n\n", fp);
    printf("For a client with identity %s:\n"
           "  server config (the key auth.clients.%s.cert_fingerprint):\n"
           "    auth:\n      clients:\n        %s:\n",
           name, name, name);
    printf("          cert_fingerprint: \"%s\"\n", fp);
    printf("  client config:\n    tls:\n");
    put_line(stdout, "      ", "cert", base_name(crt_path));
    put_line(stdout, "      ", "key", base_name(key_path));
    printf("    # and server_fingerprint: the fingerprint of the server's certificate\n");
    printf("\nFor the server:\n  server config:\n    tls:\n");
    put_line(stdout, "      ", "cert", crt_shown);
    put_line(stdout, "      ", "key", key_shown);
    printf("  client config:\n    server_fingerprint: \"%s\"\n", fp);
    printf("\nPeers trust this certificate by its fingerprint alone (no CA), so expiry is not\n"
           "what protects you: it is valid for 100 years, and you retire it by removing its\n"
           "fingerprint from the other side's config. The .crt and the fingerprint are public;\n"
           "copy %s only over a secure channel and keep it mode 0600.\n",
           base_name(key_path));
    free(key_abs);
    free(crt_abs);
}

/* ---- the command ------------------------------------------------------------------------- */

static int make_psk(const struct keygen_args *a)
{
    char path[PATH_MAX], err[LP_KEYS_ERR_MAX];
    int n = a->output ? snprintf(path, sizeof(path), "%s", a->output)
                      : snprintf(path, sizeof(path), "%s.psk", a->name);

    if (n < 0 || (size_t)n >= sizeof(path))
        return usage_error("%s", "output path too long");
    if (lp_psk_generate(path, err, sizeof(err)) != LP_OK) {
        fprintf(stderr, "limpet: keygen: %s\n", err);
        return KEYGEN_FAIL;
    }
    print_psk(a->name, path);
    return KEYGEN_OK;
}

static int make_cert(const struct keygen_args *a)
{
    char key_path[PATH_MAX], crt_path[PATH_MAX], err[LP_KEYS_ERR_MAX];
    char fp[LP_FINGERPRINT_TEXT_MAX];
    const char *prefix = a->output ? a->output : a->name;
    int nk = snprintf(key_path, sizeof(key_path), "%s.key", prefix);
    int nc = snprintf(crt_path, sizeof(crt_path), "%s.crt", prefix);

    if (nk < 0 || nc < 0 || (size_t)nk >= sizeof(key_path) || (size_t)nc >= sizeof(crt_path))
        return usage_error("%s", "output prefix too long");
    if (lp_cert_generate(key_path, crt_path, a->name, fp, err, sizeof(err)) != LP_OK) {
        fprintf(stderr, "limpet: keygen: %s\n", err);
        return KEYGEN_FAIL;
    }
    print_cert(a->name, key_path, crt_path, fp);
    return KEYGEN_OK;
}

int lp_keygen_main(int argc, char **argv)
{
    struct keygen_args a;
    int code;

    if (parse_args(argc, argv, &a) != KEYGEN_OK)
        return KEYGEN_FAIL;
    if (a.help) {
        fputs(usage_text, stdout);
        code = KEYGEN_OK;
    } else if (strcmp(a.kind, "psk") == 0) {
        code = make_psk(&a);
    } else {
        code = make_cert(&a);
    }
    /* The files exist now; if the lines to paste were lost (a full disk, a closed pipe),
     * say so rather than exit 0 with nothing shown. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "limpet: keygen: cannot write to standard output\n");
        code = KEYGEN_FAIL;
    }
    return code;
}
