/* test_keys.c — PSK files, certificates, fingerprints, secret-file permissions, keygen.
 *
 * Every test works in one temporary directory made by the group setup (mkdtemp under /tmp)
 * and emptied after each test. The umask is pinned to 022 so modes are predictable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "limpet/keys.h"

static char dir[64];
static char old_cwd[4096];

static const char valid_hex[] = "00112233445566778899aabbccddeeff0123456789ABCDEFfedcba9876543210";

/* ---- helpers ------------------------------------------------------------------------------ */

/* A path in the test directory. Returns one of 8 static buffers, reused in turn. */
static const char *in_dir(const char *name)
{
    static char paths[8][512];
    static unsigned next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static size_t read_text(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static unsigned file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void decode_hex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* No 8-character run of the key's hex shows up in msg (either case). */
static void assert_no_key_bytes(const char *msg, const char *hex)
{
    size_t n = strlen(hex);
    for (size_t i = 0; i + 8 <= n; i++) {
        char window[9];
        memcpy(window, hex + i, 8);
        window[8] = '\0';
        assert_null(strcasestr(msg, window));
    }
}

static void assert_one_line(const char *msg)
{
    assert_true(msg[0] != '\0');
    assert_null(strchr(msg, '\n'));
}

/* Empties the directory (flat: tests make at most one level of subdirectory). */
static void empty_dir(const char *path, int depth)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int guard = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL && guard++ < 1000) {
        char sub[1024];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode) && depth < 2) {
            empty_dir(sub, depth + 1);
            rmdir(sub);
        } else {
            unlink(sub);
        }
    }
    closedir(d);
}

static int group_setup(void **state)
{
    (void)state;
    umask(022);
    snprintf(dir, sizeof(dir), "/tmp/limpet-test-keys.XXXXXX");
    if (getcwd(old_cwd, sizeof(old_cwd)) == NULL)
        return -1;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    empty_dir(dir, 0);
    return rmdir(dir);
}

static int each_teardown(void **state)
{
    (void)state;
    if (chdir(old_cwd) != 0)
        return -1;
    empty_dir(dir, 0);
    return 0;
}

/* ---- PSK files ---------------------------------------------------------------------------- */

static void test_psk_generate_then_load_gives_the_key_in_the_file(void **state)
{
    const char *path = in_dir("laptop.psk");
    char err[LP_KEYS_ERR_MAX] = "", text[128];
    uint8_t key[LP_PSK_LEN], expect[LP_PSK_LEN], zero[LP_PSK_LEN] = {0};
    (void)state;

    assert_int_equal(lp_psk_generate(path, err, sizeof(err)), LP_OK);
    assert_int_equal(file_mode(path), 0600);
    assert_int_equal(read_text(path, text, sizeof(text)), LP_PSK_HEX_LEN + 1);
    assert_int_equal(text[LP_PSK_HEX_LEN], '\n');
    assert_int_equal(strspn(text, "0123456789abcdef"), LP_PSK_HEX_LEN);
    decode_hex(text, expect, LP_PSK_LEN);

    assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_OK);
    assert_memory_equal(key, expect, LP_PSK_LEN);
    assert_memory_not_equal(key, zero, LP_PSK_LEN);
}

static void test_psk_generate_makes_a_different_key_each_time(void **state)
{
    char err[LP_KEYS_ERR_MAX];
    uint8_t a[LP_PSK_LEN], b[LP_PSK_LEN];
    (void)state;

    assert_int_equal(lp_psk_generate(in_dir("a.psk"), err, sizeof(err)), LP_OK);
    assert_int_equal(lp_psk_generate(in_dir("b.psk"), err, sizeof(err)), LP_OK);
    assert_int_equal(lp_psk_load(in_dir("a.psk"), a, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_psk_load(in_dir("b.psk"), b, err, sizeof(err)), LP_OK);
    assert_memory_not_equal(a, b, LP_PSK_LEN);
}

static void test_psk_generate_never_overwrites_an_existing_file(void **state)
{
    const char *path = in_dir("laptop.psk");
    char err[LP_KEYS_ERR_MAX] = "", before[128], after[128];
    (void)state;

    assert_int_equal(lp_psk_generate(path, err, sizeof(err)), LP_OK);
    read_text(path, before, sizeof(before));
    assert_int_equal(lp_psk_generate(path, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "already exists"));
    assert_one_line(err);
    read_text(path, after, sizeof(after));
    assert_string_equal(before, after);
}

static void test_psk_generate_does_not_write_through_a_dangling_link(void **state)
{
    const char *link = in_dir("planted.psk"), *target = in_dir("elsewhere");
    char err[LP_KEYS_ERR_MAX] = "";
    (void)state;

    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(lp_psk_generate(link, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, "already exists"));
    assert_false(exists(target));
}

static void test_psk_generate_reports_a_missing_directory(void **state)
{
    const char *path = in_dir("no/such/dir.psk");
    char err[LP_KEYS_ERR_MAX] = "";
    (void)state;

    assert_int_equal(lp_psk_generate(path, err, sizeof(err)), LP_ERR_IO);
    assert_non_null(strstr(err, path));
    assert_one_line(err);
}

static void test_psk_load_refuses_group_or_other_permissions_with_chmod_hint(void **state)
{
    static const unsigned modes[] = {0644, 0640, 0604, 0660, 0602, 0620, 0601, 0610, 0777};
    const char *path = in_dir("laptop.psk");
    char text[80], err[LP_KEYS_ERR_MAX], expect[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    snprintf(text, sizeof(text), "%s\n", valid_hex);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(path, text, strlen(text), modes[i]);
        memset(key, 0xAA, sizeof(key));
        err[0] = '\0';
        assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_ERR_INVALID);
        snprintf(expect, sizeof(expect), "%s: permissions %04o are too open; run: chmod 600 %s",
                 path, modes[i], path);
        assert_string_equal(err, expect);
        assert_int_equal(key[0], 0xAA); /* nothing read into the key */
        assert_int_equal(lp_secret_file_check(path, err, sizeof(err)), LP_ERR_INVALID);
        assert_string_equal(err, expect);
    }
}

static void test_psk_load_accepts_owner_only_modes(void **state)
{
    static const unsigned modes[] = {0600, 0400, 0700};
    const char *path = in_dir("laptop.psk");
    char err[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN], expect[LP_PSK_LEN];
    (void)state;

    decode_hex(valid_hex, expect, LP_PSK_LEN);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        unlink(path);
        write_file(path, valid_hex, strlen(valid_hex), modes[i]); /* no newline: fine too */
        assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_OK);
        assert_memory_equal(key, expect, LP_PSK_LEN);
        assert_int_equal(lp_secret_file_check(path, err, sizeof(err)), LP_OK);
    }
}

static void test_secret_file_check_quotes_an_odd_path_in_the_chmod_hint(void **state)
{
    const char *path = in_dir("my key's.psk");
    char err[LP_KEYS_ERR_MAX], expect[LP_KEYS_ERR_MAX];
    (void)state;

    write_file(path, valid_hex, strlen(valid_hex), 0644);
    assert_int_equal(lp_secret_file_check(path, err, sizeof(err)), LP_ERR_INVALID);
    snprintf(expect, sizeof(expect),
             "%s: permissions 0644 are too open; run: chmod 600 '%s/my key'\\''s.psk'", path, dir);
    assert_string_equal(err, expect);
}

static void test_psk_load_refuses_what_is_not_a_regular_file(void **state)
{
    const char *fifo = in_dir("fifo.psk"), *sub = in_dir("dir.psk");
    char err[LP_KEYS_ERR_MAX], expect[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    assert_int_equal(mkfifo(fifo, 0600), 0); /* must not block on open */
    assert_int_equal(lp_psk_load(fifo, key, err, sizeof(err)), LP_ERR_INVALID);
    snprintf(expect, sizeof(expect), "%s: not a regular file", fifo);
    assert_string_equal(err, expect);

    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(lp_secret_file_check(sub, err, sizeof(err)), LP_ERR_INVALID);
    snprintf(expect, sizeof(expect), "%s: not a regular file", sub);
    assert_string_equal(err, expect);
}

static void test_psk_load_follows_a_link_to_a_private_file(void **state)
{
    const char *real = in_dir("real.psk"), *link = in_dir("link.psk");
    char err[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    write_file(real, valid_hex, strlen(valid_hex), 0600);
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(lp_psk_load(link, key, err, sizeof(err)), LP_OK);
}

static void test_psk_load_reports_a_missing_file_by_name(void **state)
{
    const char *path = in_dir("absent.psk");
    char err[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_ERR_IO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
}

struct bad_psk {
    const char *text;
    const char *reason; /* a piece of the expected message */
};

static void test_psk_load_refuses_malformed_files_without_showing_key_bytes(void **state)
{
    char hex63[80], hex65[80], two_nl[80], crlf[80], spaced[90], lead[80], trail[80], nonhex[80];
    char tab[80], bom[80], prefixed[80], upper_g[80];
    const char *path = in_dir("bad.psk");
    (void)state;

    snprintf(hex63, sizeof(hex63), "%.63s\n", valid_hex);
    snprintf(hex65, sizeof(hex65), "%s0\n", valid_hex);
    snprintf(two_nl, sizeof(two_nl), "%s\n\n", valid_hex);
    snprintf(crlf, sizeof(crlf), "%s\r\n", valid_hex);
    snprintf(spaced, sizeof(spaced), "%.32s %s\n", valid_hex, valid_hex + 32);
    snprintf(lead, sizeof(lead), " %s\n", valid_hex);
    snprintf(trail, sizeof(trail), "%s \n", valid_hex);
    snprintf(nonhex, sizeof(nonhex), "%.40sz%s\n", valid_hex, valid_hex + 41);
    snprintf(tab, sizeof(tab), "%s\t\n", valid_hex);
    snprintf(bom, sizeof(bom), "\xEF\xBB\xBF%s\n", valid_hex);
    snprintf(prefixed, sizeof(prefixed), "0x%.62s\n", valid_hex);
    snprintf(upper_g, sizeof(upper_g), "G%s\n", valid_hex + 1);
    const struct bad_psk cases[] = {
        {"", "is empty"},
        {"\n", "fewer than 64"},
        {hex63, "fewer than 64"},
        {hex65, "more than 64"},
        {two_nl, "more than one line"},
        {crlf, "CR"},
        {spaced, "whitespace"},
        {lead, "whitespace"},
        {trail, "whitespace"},
        {tab, "whitespace"},
        {nonhex, "not a hex digit"},
        {bom, "not a hex digit"},
        {prefixed, "not a hex digit"},
        {upper_g, "not a hex digit"},
        {"\n0011223344556677889900112233445566778899001122334455667788990011", "more than one"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[LP_KEYS_ERR_MAX] = "";
        uint8_t key[LP_PSK_LEN];
        memset(key, 0xAA, sizeof(key));
        unlink(path);
        write_file(path, cases[i].text, strlen(cases[i].text), 0600);
        assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_ERR_MALFORMED);
        assert_true(strncmp(err, path, strlen(path)) == 0);
        if (strstr(err, cases[i].reason) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].reason);
        assert_one_line(err);
        assert_no_key_bytes(err, valid_hex);
        assert_int_equal(key[0], 0xAA);
    }
}

static void test_psk_load_refuses_a_huge_file_as_too_long(void **state)
{
    const char *path = in_dir("huge.psk");
    char big[20000], err[LP_KEYS_ERR_MAX];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = valid_hex[i % 64];
    write_file(path, big, sizeof(big), 0600);
    assert_int_equal(lp_psk_load(path, key, err, sizeof(err)), LP_ERR_MALFORMED);
    assert_non_null(strstr(err, "too long"));
    assert_no_key_bytes(err, valid_hex);
}

static void test_psk_parse_accepts_either_case(void **state)
{
    uint8_t lower[LP_PSK_LEN], upper[LP_PSK_LEN], expect[LP_PSK_LEN];
    char up[65];
    const char *why = "unset";
    (void)state;

    for (size_t i = 0; i < 64; i++)
        up[i] =
            (char)((valid_hex[i] >= 'a' && valid_hex[i] <= 'f') ? valid_hex[i] - 32 : valid_hex[i]);
    up[64] = '\0';
    decode_hex(valid_hex, expect, LP_PSK_LEN);
    assert_int_equal(lp_psk_parse((const uint8_t *)valid_hex, 64, lower, &why), LP_OK);
    assert_null(why);
    assert_int_equal(lp_psk_parse((const uint8_t *)up, 64, upper, &why), LP_OK);
    assert_memory_equal(lower, expect, LP_PSK_LEN);
    assert_memory_equal(upper, expect, LP_PSK_LEN);
}

/* These parse a whole file, not a stream, so a short input is malformed (with a reason),
 * never "wait for more": every strict prefix is refused, the whole text accepted. */
static void test_psk_parse_refuses_every_prefix_of_a_valid_file(void **state)
{
    char text[66];
    uint8_t key[LP_PSK_LEN];
    (void)state;

    snprintf(text, sizeof(text), "%s\n", valid_hex);
    for (size_t n = 0; n < LP_PSK_HEX_LEN; n++) {
        const char *why = NULL;
        assert_int_equal(lp_psk_parse((const uint8_t *)text, n, key, &why), LP_ERR_MALFORMED);
        assert_non_null(why);
    }
    for (size_t n = LP_PSK_HEX_LEN; n <= LP_PSK_HEX_LEN + 1; n++) {
        const char *why = NULL;
        assert_int_equal(lp_psk_parse((const uint8_t *)text, n, key, &why), LP_OK);
    }
}

static void test_secret_file_read_checks_and_reads_the_same_file(void **state)
{
    const char *path = in_dir("k.pem");
    uint8_t buf[32];
    size_t len = 99;
    char err[LP_KEYS_ERR_MAX];
    (void)state;

    write_file(path, "secret", 6, 0600);
    assert_int_equal(lp_secret_file_read(path, buf, sizeof(buf), &len, err, sizeof(err)), LP_OK);
    assert_int_equal(len, 6);
    assert_string_equal((char *)buf, "secret");

    write_file(path, "0123456789", 10, 0600);
    assert_int_equal(lp_secret_file_read(path, buf, 10, &len, err, sizeof(err)), LP_ERR_TOO_BIG);
    assert_int_equal(len, 0);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(buf[i], 0); /* wiped */
    assert_int_equal(lp_secret_file_read(path, buf, 11, &len, err, sizeof(err)), LP_OK);
    assert_int_equal(len, 10);

    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(lp_secret_file_read(path, buf, sizeof(buf), &len, err, sizeof(err)),
                     LP_ERR_INVALID);
    assert_non_null(strstr(err, "permissions 0640 are too open"));
}

/* ---- fingerprints ------------------------------------------------------------------------- */

static void test_fingerprint_format_writes_uppercase_colon_pairs(void **state)
{
    uint8_t fp[LP_FINGERPRINT_LEN];
    char text[LP_FINGERPRINT_TEXT_MAX];
    (void)state;

    for (size_t i = 0; i < LP_FINGERPRINT_LEN; i++)
        fp[i] = (uint8_t)(i * 8 + 0x0a);
    assert_int_equal(lp_fingerprint_format(fp, text, sizeof(text)), LP_OK);
    assert_string_equal(text, "sha256:0A:12:1A:22:2A:32:3A:42:4A:52:5A:62:6A:72:7A:82:"
                              "8A:92:9A:A2:AA:B2:BA:C2:CA:D2:DA:E2:EA:F2:FA:02");
    assert_int_equal(strlen(text), LP_FINGERPRINT_TEXT_MAX - 1);
    assert_int_equal(lp_fingerprint_format(fp, text, LP_FINGERPRINT_TEXT_MAX - 1), LP_ERR_NOSPACE);
    assert_string_equal(text, "");
}

static void lowercase_no_colons(const char *in, char *out)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ':' && p - in > 6)
            continue;
        out[n++] = (char)((*p >= 'A' && *p <= 'F') ? *p + 32 : *p);
    }
    out[n] = '\0';
}

static void test_fingerprint_parse_reads_what_format_writes_in_every_form(void **state)
{
    uint8_t fp[LP_FINGERPRINT_LEN], back[LP_FINGERPRINT_LEN];
    char text[LP_FINGERPRINT_TEXT_MAX], bare[LP_FINGERPRINT_TEXT_MAX];
    const char *why = NULL;
    (void)state;

    for (unsigned seed = 0; seed < 50; seed++) {
        for (size_t i = 0; i < LP_FINGERPRINT_LEN; i++)
            fp[i] = (uint8_t)(seed * 131 + i * 37 + (i * i * seed));
        assert_int_equal(lp_fingerprint_format(fp, text, sizeof(text)), LP_OK);
        memset(back, 0, sizeof(back));
        assert_int_equal(lp_fingerprint_parse(text, back, &why), LP_OK);
        assert_memory_equal(fp, back, LP_FINGERPRINT_LEN);

        lowercase_no_colons(text, bare); /* "sha256:0a1b..." */
        assert_int_equal(strlen(bare), 7 + 64);
        memset(back, 0, sizeof(back));
        assert_int_equal(lp_fingerprint_parse(bare, back, &why), LP_OK);
        assert_memory_equal(fp, back, LP_FINGERPRINT_LEN);

        memcpy(text, "SHA256", 6); /* the prefix in either case too */
        assert_int_equal(lp_fingerprint_parse(text, back, &why), LP_OK);
        assert_memory_equal(fp, back, LP_FINGERPRINT_LEN);
    }
}

struct bad_fp {
    const char *text;
    const char *reason;
};

static void test_fingerprint_parse_refuses_every_malformed_form_with_a_reason(void **state)
{
    static const char good[] = "sha256:0A:12:1A:22:2A:32:3A:42:4A:52:5A:62:6A:72:7A:82:"
                               "8A:92:9A:A2:AA:B2:BA:C2:CA:D2:DA:E2:EA:F2:FA:02";
    char buf[12][160];
    const char *body = good + 7;
    (void)state;

    snprintf(buf[0], sizeof(buf[0]), "%s", body);                            /* no prefix */
    snprintf(buf[1], sizeof(buf[1]), "sha1:%s", body);                       /* other hash */
    snprintf(buf[2], sizeof(buf[2]), "%s:", good);                           /* trailing colon */
    snprintf(buf[3], sizeof(buf[3]), "sha256::%s", body);                    /* leading colon */
    snprintf(buf[4], sizeof(buf[4]), "%s:AB", good);                         /* 33 bytes */
    snprintf(buf[5], sizeof(buf[5]), "%.91s", good);                         /* 31 bytes */
    snprintf(buf[6], sizeof(buf[6]), "sha256: %s", body);                    /* space */
    snprintf(buf[7], sizeof(buf[7]), "%s\n", good);                          /* newline */
    snprintf(buf[8], sizeof(buf[8]), "%.9s%s", good, good + 10);             /* a colon dropped */
    snprintf(buf[9], sizeof(buf[9]), "%.8s:%c%s", good, good[8], good + 10); /* one moved */
    snprintf(buf[10], sizeof(buf[10]), "%.20sZZ%s", good, good + 22);        /* non-hex */
    snprintf(buf[11], sizeof(buf[11]), "sha256-%s", body);
    const struct bad_fp cases[] = {
        {NULL, "empty"},
        {"", "empty"},
        {"sha256:", "nothing after"},
        {"sha256", "does not start"},
        {buf[0], "does not start with \"sha256:\""},
        {buf[1], "not a SHA-256"},
        {"MD5:AB:CD", "not a SHA-256"},
        {"sha512:AB", "not a SHA-256"},
        {buf[2], "colons between some bytes"},
        {buf[3], "colons between some bytes"},
        {buf[4], "more than 32 bytes"},
        {buf[5], "fewer than 32 bytes"},
        {buf[6], "whitespace"},
        {buf[7], "whitespace"},
        {buf[8], "colons between some bytes"},
        {buf[9], "misplaced ':'"},
        {buf[10], "not a hex digit"},
        {buf[11], "does not start"},
        {"sha256:0A1", "fewer than 32"},
        {"sha256:xyz", "not a hex digit"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t out[LP_FINGERPRINT_LEN];
        const char *why = NULL;
        memset(out, 0xAA, sizeof(out));
        assert_int_equal(lp_fingerprint_parse(cases[i].text, out, &why), LP_ERR_MALFORMED);
        assert_non_null(why);
        if (strstr(why, cases[i].reason) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].reason);
        assert_int_equal(out[0], 0xAA);
    }
}

static void test_fingerprint_parse_refuses_every_prefix_of_a_valid_text(void **state)
{
    static const char good[] = "sha256:0A:12:1A:22:2A:32:3A:42:4A:52:5A:62:6A:72:7A:82:"
                               "8A:92:9A:A2:AA:B2:BA:C2:CA:D2:DA:E2:EA:F2:FA:02";
    char prefix[sizeof(good)];
    uint8_t out[LP_FINGERPRINT_LEN];
    (void)state;

    for (size_t n = 0; n < sizeof(good) - 1; n++) {
        const char *why = NULL;
        memcpy(prefix, good, n);
        prefix[n] = '\0';
        assert_int_equal(lp_fingerprint_parse(prefix, out, &why), LP_ERR_MALFORMED);
        assert_non_null(why);
    }
}

/* ---- certificates ------------------------------------------------------------------------- */

static void test_cert_generate_prints_the_fingerprint_of_the_file_it_wrote(void **state)
{
    const char *key = in_dir("srv.key"), *crt = in_dir("srv.crt");
    char fp_text[LP_FINGERPRINT_TEXT_MAX], again[LP_FINGERPRINT_TEXT_MAX];
    char err[LP_KEYS_ERR_MAX] = "";
    uint8_t fp[LP_FINGERPRINT_LEN], parsed[LP_FINGERPRINT_LEN];
    const char *why;
    (void)state;

    assert_int_equal(lp_cert_generate(key, crt, "srv", fp_text, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_cert_fingerprint_file(crt, fp, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_fingerprint_format(fp, again, sizeof(again)), LP_OK);
    assert_string_equal(fp_text, again);
    assert_int_equal(lp_fingerprint_parse(fp_text, parsed, &why), LP_OK);
    assert_memory_equal(parsed, fp, LP_FINGERPRINT_LEN);
    assert_int_equal(file_mode(key), 0600);
    assert_int_equal(file_mode(crt), 0644);
    assert_int_equal(lp_secret_file_check(key, err, sizeof(err)), LP_OK);

    char pem[4096]; /* plain PEM text: no NUL carried over from the encoder */
    size_t n = read_text(crt, pem, sizeof(pem));
    assert_int_equal(strlen(pem), n);
    assert_true(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
    assert_string_equal(pem + n - 26, "-----END CERTIFICATE-----\n");
    n = read_text(key, pem, sizeof(pem));
    assert_int_equal(strlen(pem), n);
    assert_string_equal(pem + n - 29, "-----END EC PRIVATE KEY-----\n");
}

/* The key file is what the TLS layer will load: it must parse, be P-256, and belong to the
 * certificate; the certificate must say what keys.h promises. */
static void test_cert_generate_writes_a_matching_p256_key_and_long_lived_cert(void **state)
{
    const char *key = in_dir("c.key"), *crt = in_dir("c.crt");
    char fp_text[LP_FINGERPRINT_TEXT_MAX], err[LP_KEYS_ERR_MAX], dn[256];
    uint8_t pem[LP_SECRET_FILE_MAX];
    size_t len;
    mbedtls_pk_context pk;
    mbedtls_x509_crt cert;
    time_t now = time(NULL);
    struct tm tm;
    (void)state;

    assert_int_equal(lp_cert_generate(key, crt, "laptop-1", fp_text, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_secret_file_read(key, pem, sizeof(pem), &len, err, sizeof(err)), LP_OK);
    mbedtls_pk_init(&pk);
    mbedtls_x509_crt_init(&cert);
    assert_int_equal(mbedtls_pk_parse_key(&pk, pem, len + 1, NULL, 0), 0);
    assert_int_equal(mbedtls_x509_crt_parse_file(&cert, crt), 0);
    assert_int_equal(mbedtls_pk_get_type(&pk), MBEDTLS_PK_ECKEY);
    assert_int_equal(mbedtls_pk_ec(pk)->grp.id, MBEDTLS_ECP_DP_SECP256R1);
    assert_int_equal(mbedtls_pk_check_pair(&cert.pk, &pk), 0);
    assert_true(mbedtls_x509_dn_gets(dn, sizeof(dn), &cert.subject) > 0);
    assert_string_equal(dn, "CN=laptop-1");
    assert_int_equal(cert.sig_md, MBEDTLS_MD_SHA256);
    assert_int_equal(cert.version, 3);
    assert_int_equal(cert.ca_istrue, 0);
    gmtime_r(&now, &tm);
    assert_true(cert.valid_to.year >= tm.tm_year + 1900 + 99);
    assert_true(cert.valid_from.year * 10000 + cert.valid_from.mon * 100 + cert.valid_from.day <
                (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday);
    assert_false(mbedtls_x509_time_is_future(&cert.valid_from));
    assert_true(cert.serial.len >= 15);
    mbedtls_pk_free(&pk);
    mbedtls_x509_crt_free(&cert);
}

static void test_cert_generate_refuses_existing_files_and_leaves_nothing_behind(void **state)
{
    const char *key = in_dir("x.key"), *crt = in_dir("x.crt");
    char fp_text[LP_FINGERPRINT_TEXT_MAX], err[LP_KEYS_ERR_MAX] = "", text[64];
    (void)state;

    write_file(crt, "old cert", 8, 0644);
    assert_int_equal(lp_cert_generate(key, crt, "x", fp_text, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, crt));
    assert_non_null(strstr(err, "already exists"));
    assert_false(exists(key));
    read_text(crt, text, sizeof(text));
    assert_string_equal(text, "old cert");

    unlink(crt);
    write_file(key, "old key", 7, 0600);
    assert_int_equal(lp_cert_generate(key, crt, "x", fp_text, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, key));
    assert_false(exists(crt));
    read_text(key, text, sizeof(text));
    assert_string_equal(text, "old key");
}

static void test_cert_generate_refuses_a_name_that_would_need_quoting(void **state)
{
    char fp_text[LP_FINGERPRINT_TEXT_MAX], err[LP_KEYS_ERR_MAX];
    (void)state;

    assert_int_equal(
        lp_cert_generate(in_dir("n.key"), in_dir("n.crt"), "a,CN=evil", fp_text, err, sizeof(err)),
        LP_ERR_INVALID);
    assert_false(exists(in_dir("n.key")));
    assert_one_line(err);
}

static void test_cert_fingerprint_file_refuses_what_is_not_a_certificate(void **state)
{
    const char *path = in_dir("not.crt");
    char err[LP_KEYS_ERR_MAX];
    uint8_t fp[LP_FINGERPRINT_LEN];
    (void)state;

    write_file(path, valid_hex, strlen(valid_hex), 0644);
    assert_int_equal(lp_cert_fingerprint_file(path, fp, err, sizeof(err)), LP_ERR_MALFORMED);
    assert_non_null(strstr(err, path));
    assert_one_line(err);
    assert_int_equal(lp_cert_fingerprint_file(in_dir("absent.crt"), fp, err, sizeof(err)),
                     LP_ERR_IO);
}

static void test_keys_name_valid_allows_only_plain_names(void **state)
{
    static const char *good[] = {"laptop", "a", "db-1.prod_eu", "A9", NULL};
    static const char *bad[] = {"",  ".hidden", "-o",   "a b",  "a/b",  "a:b", "a,b", "a=b",
                                "ü", "a\nb",    "../x", "x\"y", "#tag", "a@b", NULL};
    char long_name[LP_KEYS_NAME_MAX + 2];
    (void)state;

    for (size_t i = 0; good[i]; i++)
        assert_true(lp_keys_name_valid(good[i]));
    for (size_t i = 0; bad[i]; i++)
        assert_false(lp_keys_name_valid(bad[i]));
    assert_false(lp_keys_name_valid(NULL));
    memset(long_name, 'a', sizeof(long_name));
    long_name[LP_KEYS_NAME_MAX] = '\0';
    assert_true(lp_keys_name_valid(long_name));
    long_name[LP_KEYS_NAME_MAX] = 'a';
    long_name[LP_KEYS_NAME_MAX + 1] = '\0';
    assert_false(lp_keys_name_valid(long_name));
}

/* ---- the keygen command ------------------------------------------------------------------- */

/* Runs lp_keygen_main in dir with stdout and stderr captured into out and errout. */
static int run_keygen(char *out, size_t outcap, char *errout, size_t errcap, int argc, ...)
{
    char *argv[16];
    va_list ap;
    int saved_out = dup(1), saved_err = dup(2), code;
    char out_path[512], err_path[512]; /* not in_dir(): callers hold its buffers */
    int fo, fe;

    snprintf(out_path, sizeof(out_path), "%s/.stdout", dir);
    snprintf(err_path, sizeof(err_path), "%s/.stderr", dir);
    fo = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fe = open(err_path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    assert_true(argc < 16 && fo >= 0 && fe >= 0);
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[argc] = NULL;
    assert_int_equal(chdir(dir), 0);
    fflush(stdout);
    fflush(stderr);
    dup2(fo, 1);
    dup2(fe, 2);
    code = lp_keygen_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    close(fo);
    close(fe);
    assert_int_equal(chdir(old_cwd), 0);
    read_text(out_path, out, outcap);
    read_text(err_path, errout, errcap);
    unlink(out_path);
    unlink(err_path);
    return code;
}

static void test_keygen_psk_writes_name_psk_and_prints_both_sides_config(void **state)
{
    char out[4096], errout[1024], line[PATH_MAX + 100],
        real_dir[PATH_MAX]; /* realpath writes up to PATH_MAX */
    const char *path = in_dir("laptop.psk");
    uint8_t key[LP_PSK_LEN];
    (void)state;

    assert_non_null(realpath(dir, real_dir));
    assert_int_equal(
        run_keygen(out, sizeof(out), errout, sizeof(errout), 3, "keygen", "psk", "laptop"), 0);
    assert_string_equal(errout, "");
    assert_int_equal(file_mode(path), 0600);
    assert_int_equal(lp_psk_load(path, key, errout, sizeof(errout)), LP_OK);
    snprintf(line, sizeof(line),
             "  auth:\n    clients:\n      laptop:\n        psk_file: %s/laptop.psk\n", real_dir);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "auth.clients.laptop.psk_file"));
    assert_non_null(strstr(out, "  identity: laptop\n  psk_file: laptop.psk\n"));
    assert_non_null(strstr(out, "secure channel"));
}

static void test_keygen_psk_refuses_to_overwrite_with_one_line_and_exit_1(void **state)
{
    char out[4096], errout[1024];
    (void)state;

    write_file(in_dir("laptop.psk"), "keep me", 7, 0600);
    assert_int_equal(
        run_keygen(out, sizeof(out), errout, sizeof(errout), 3, "keygen", "psk", "laptop"), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(errout, "laptop.psk: already exists"));
    assert_ptr_equal(strchr(errout, '\n'), errout + strlen(errout) - 1);
}

static void test_keygen_psk_output_flag_picks_the_file(void **state)
{
    char out[4096], errout[1024];
    (void)state;

    assert_int_equal(mkdir(in_dir("sub"), 0700), 0);
    assert_int_equal(run_keygen(out, sizeof(out), errout, sizeof(errout), 5, "keygen", "psk", "-o",
                                "sub/my key", "laptop"),
                     0);
    assert_int_equal(file_mode(in_dir("sub/my key")), 0600);
    assert_false(exists(in_dir("laptop.psk")));
    assert_non_null(strstr(out, "psk_file: \"")); /* a space: quoted for YAML */
    assert_non_null(strstr(out, "  psk_file: \"my key\"\n"));
    assert_int_equal(run_keygen(out, sizeof(out), errout, sizeof(errout), 4, "keygen", "psk",
                                "laptop", "--output=sub/b.psk"),
                     0);
    assert_true(exists(in_dir("sub/b.psk")));
}

static void test_keygen_cert_prints_the_fingerprint_of_the_written_cert(void **state)
{
    char out[8192], errout[1024], fp_text[LP_FINGERPRINT_TEXT_MAX], line[256];
    uint8_t fp[LP_FINGERPRINT_LEN];
    (void)state;

    assert_int_equal(
        run_keygen(out, sizeof(out), errout, sizeof(errout), 3, "keygen", "cert", "gw"), 0);
    assert_string_equal(errout, "");
    assert_int_equal(file_mode(in_dir("gw.key")), 0600);
    assert_int_equal(lp_cert_fingerprint_file(in_dir("gw.crt"), fp, errout, sizeof(errout)), LP_OK);
    lp_fingerprint_format(fp, fp_text, sizeof(fp_text));
    snprintf(line, sizeof(line), "Fingerprint: %s\n", fp_text);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "server_fingerprint: \"%s\"\n", fp_text);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "cert_fingerprint: \"%s\"\n", fp_text);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "auth.clients.gw.cert_fingerprint"));
    assert_non_null(strstr(out, "gw.crt\n"));
    assert_non_null(strstr(out, "      key: gw.key\n"));
    assert_non_null(strstr(out, "100 years"));
}

static void test_keygen_cert_output_prefix_names_both_files(void **state)
{
    char out[8192], errout[1024];
    (void)state;

    assert_int_equal(run_keygen(out, sizeof(out), errout, sizeof(errout), 5, "keygen", "cert",
                                "srv", "-o", "server-a"),
                     0);
    assert_true(exists(in_dir("server-a.key")));
    assert_true(exists(in_dir("server-a.crt")));
    assert_false(exists(in_dir("srv.key")));
}

struct usage_case {
    int argc;
    const char *argv[5];
    const char *reason;
};

static void test_keygen_usage_errors_exit_1_with_one_line(void **state)
{
    static const struct usage_case cases[] = {
        {1, {"keygen"}, "psk or cert"},
        {2, {"keygen", "rsa"}, "unknown key type 'rsa'"},
        {2, {"keygen", "psk"}, "needs a NAME"},
        {3, {"keygen", "psk", "a/b"}, "bad NAME 'a/b'"},
        {3, {"keygen", "psk", "-x"}, "unknown option -x"},
        {3, {"keygen", "cert", "-o"}, "-o needs a value"},
        {4, {"keygen", "psk", "a", "b"}, "unexpected argument 'b'"},
        {4, {"keygen", "psk", "a", "-o"}, "needs a value"},
        {4, {"keygen", "psk", "--", "-dash"}, "bad NAME '-dash'"},
        {3, {"keygen", "psk", "a\nb"}, "bad NAME 'a?b'"},
    };
    char out[4096], errout[1024];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct usage_case *c = &cases[i];
        int code = run_keygen(out, sizeof(out), errout, sizeof(errout), c->argc, c->argv[0],
                              c->argv[1], c->argv[2], c->argv[3], c->argv[4]);
        assert_int_equal(code, 1);
        if (strstr(errout, c->reason) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, errout, c->reason);
        assert_true(strncmp(errout, "limpet: keygen: ", 16) == 0);
        assert_ptr_equal(strchr(errout, '\n'), errout + strlen(errout) - 1);
        assert_string_equal(out, "");
    }
    assert_int_equal(run_keygen(out, sizeof(out), errout, sizeof(errout), 7, "keygen", "psk", "a",
                                "-o", "x", "-o", "y"),
                     1);
    assert_non_null(strstr(errout, "-o given twice"));
    assert_false(exists(in_dir("a.psk")));
    assert_false(exists(in_dir("x")));
}

static void test_keygen_help_prints_the_page_and_exits_0(void **state)
{
    char out[8192], errout[1024];
    (void)state;

    assert_int_equal(run_keygen(out, sizeof(out), errout, sizeof(errout), 2, "keygen", "--help"),
                     0);
    assert_non_null(strstr(out, "SYNOPSIS"));
    assert_non_null(strstr(out, "limpet keygen psk NAME [-o FILE]"));
    assert_string_equal(errout, "");
    assert_int_equal(
        run_keygen(out, sizeof(out), errout, sizeof(errout), 3, "keygen", "cert", "-h"), 0);
    assert_non_null(strstr(out, "EXIT STATUS"));
    assert_false(exists(in_dir("cert.key")));
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, each_teardown)
    const struct CMUnitTest tests[] = {
        T(test_psk_generate_then_load_gives_the_key_in_the_file),
        T(test_psk_generate_makes_a_different_key_each_time),
        T(test_psk_generate_never_overwrites_an_existing_file),
        T(test_psk_generate_does_not_write_through_a_dangling_link),
        T(test_psk_generate_reports_a_missing_directory),
        T(test_psk_load_refuses_group_or_other_permissions_with_chmod_hint),
        T(test_psk_load_accepts_owner_only_modes),
        T(test_secret_file_check_quotes_an_odd_path_in_the_chmod_hint),
        T(test_psk_load_refuses_what_is_not_a_regular_file),
        T(test_psk_load_follows_a_link_to_a_private_file),
        T(test_psk_load_reports_a_missing_file_by_name),
        T(test_psk_load_refuses_malformed_files_without_showing_key_bytes),
        T(test_psk_load_refuses_a_huge_file_as_too_long),
        T(test_psk_parse_accepts_either_case),
        T(test_psk_parse_refuses_every_prefix_of_a_valid_file),
        T(test_secret_file_read_checks_and_reads_the_same_file),
        T(test_fingerprint_format_writes_uppercase_colon_pairs),
        T(test_fingerprint_parse_reads_what_format_writes_in_every_form),
        T(test_fingerprint_parse_refuses_every_malformed_form_with_a_reason),
        T(test_fingerprint_parse_refuses_every_prefix_of_a_valid_text),
        T(test_cert_generate_prints_the_fingerprint_of_the_file_it_wrote),
        T(test_cert_generate_writes_a_matching_p256_key_and_long_lived_cert),
        T(test_cert_generate_refuses_existing_files_and_leaves_nothing_behind),
        T(test_cert_generate_refuses_a_name_that_would_need_quoting),
        T(test_cert_fingerprint_file_refuses_what_is_not_a_certificate),
        T(test_keys_name_valid_allows_only_plain_names),
        T(test_keygen_psk_writes_name_psk_and_prints_both_sides_config),
        T(test_keygen_psk_refuses_to_overwrite_with_one_line_and_exit_1),
        T(test_keygen_psk_output_flag_picks_the_file),
        T(test_keygen_cert_prints_the_fingerprint_of_the_written_cert),
        T(test_keygen_cert_output_prefix_names_both_files),
        T(test_keygen_usage_errors_exit_1_with_one_line),
        T(test_keygen_help_prints_the_page_and_exits_0),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
