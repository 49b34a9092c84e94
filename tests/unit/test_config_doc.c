/* test_config_doc.c — the key descriptions that --help and limpet.yaml(5) print: one row for
 * every key the loader accepts, each complete, and every documented list or mapping really
 * loadable from a file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/config.h"
#include "limpet/config_load.h"

/* A file that sets the documented list or mapping NAME, and nothing it does not need. */
static const struct {
    const char *name, *yaml;
} samples[] = {
    {"forward.local", "forward: {local: [\"8080:127.0.0.1:80\"]}\n"},
    {"forward.dynamic", "forward: {dynamic: [\"1080\"]}\n"},
    {"forward.remote", "forward: {remote: [\"8022:127.0.0.1:22\"]}\n"},
    {"forward.transparent", "forward: {transparent: [\"12345\"]}\n"},
    {"auth.clients.NAME", "auth: {clients: {laptop: {psk_file: /k}}}\n"},
    {"auth.clients.NAME.psk_file", "auth: {clients: {laptop: {psk_file: /k}}}\n"},
    {"auth.clients.NAME.cert_fingerprint",
     "auth: {clients: {laptop: {cert_fingerprint: \"sha256:"
     "0000000000000000000000000000000000000000000000000000000000000000\"}}}\n"},
    {"auth.clients.NAME.allow", "auth: {clients: {laptop: {psk_file: /k, allow: {}}}}\n"},
    {"auth.clients.NAME.allow.forward",
     "auth: {clients: {laptop: {psk_file: /k, allow: {forward: [\"*:22\"]}}}}\n"},
    {"auth.clients.NAME.allow.reverse",
     "auth: {clients: {laptop: {psk_file: /k, allow: {reverse: [\"127.0.0.1:8000-8099\"]}}}}\n"},
    {"auth.clients.NAME.allow.mcp",
     "auth: {clients: {laptop: {psk_file: /k, allow: {mcp: [\"*\"]}}}}\n"},
    {"mcp.servers.NAME", "mcp: {servers: {memory: {command: cat}}}\n"},
    {"mcp.servers.NAME.command", "mcp: {servers: {memory: {command: cat}}}\n"},
    {"mcp.servers.NAME.args", "mcp: {servers: {memory: {command: cat, args: [\"-u\"]}}}\n"},
    {"mcp.servers.NAME.env", "mcp: {servers: {memory: {command: cat, env: {A_1: x}}}}\n"},
    {"mcp.servers.NAME.cwd", "mcp: {servers: {memory: {command: cat, cwd: /tmp}}}\n"},
};
#define SAMPLES (sizeof(samples) / sizeof(samples[0]))

static size_t doc_count(void)
{
    struct lp_config_doc d;
    size_t n = 0;

    while (lp_config_doc_at(n, &d))
        n++;
    return n;
}

static void test_config_doc_rows_are_complete_and_unique(void **state)
{
    struct lp_config_doc d, e;
    size_t n = doc_count();
    bool maps = false;
    (void)state;

    assert_true(n > 40);
    for (size_t i = 0; i < n; i++) {
        assert_true(lp_config_doc_at(i, &d));
        if (d.name[0] == '\0' || d.type == NULL || d.help == NULL || d.help[0] == '\0' ||
            d.range[0] == '\0')
            fail_msg("row %zu (%s) lacks a name, type, help or range", i, d.name);
        /* lists and mappings come after every scalar key, as the pages print them */
        if (maps && !d.file_only)
            fail_msg("%s: a scalar key after the lists and mappings", d.name);
        maps = maps || d.file_only;
        for (size_t j = 0; j < i; j++) {
            assert_true(lp_config_doc_at(j, &e));
            if (strcmp(d.name, e.name) == 0)
                fail_msg("%s is listed twice", d.name);
        }
    }
    assert_false(lp_config_doc_at(n, &d));
    assert_true(maps);
}

/* Every scalar row is a key -o accepts with its documented default, which sets nothing. */
static void test_config_doc_scalar_defaults_are_accepted_values(void **state)
{
    char arg[LP_ADDR_MAX + 80], err[LP_CONFIG_ERR_MAX];
    struct lp_config_doc d;
    (void)state;

    for (size_t i = 0; lp_config_doc_at(i, &d) && !d.file_only; i++) {
        struct lp_config c, defaults;
        if (d.def[0] == '\0')
            continue; /* unset text keys take no empty value */
        lp_config_defaults(&c);
        lp_config_defaults(&defaults);
        snprintf(arg, sizeof(arg), "%s=%s", d.name, d.def);
        if (lp_config_set(&c, arg, err, sizeof(err)) != LP_OK)
            fail_msg("-o %s: %s", arg, err);
        assert_memory_equal(&c, &defaults, sizeof(c));
    }
}

static void test_config_doc_ranges_state_the_table_bounds(void **state)
{
    struct lp_config_doc d;
    bool heartbeat = false, replay = false;
    (void)state;

    for (size_t i = 0; lp_config_doc_at(i, &d); i++) {
        if (strcmp(d.name, "session.heartbeat") == 0) {
            assert_string_equal(d.type, "duration");
            assert_string_equal(d.def, "2s");
            assert_string_equal(d.range, "10ms..10m");
            heartbeat = true;
        }
        if (strcmp(d.name, "session.replay_buffer") == 0) {
            assert_string_equal(d.type, "size");
            assert_string_equal(d.def, "8MiB");
            assert_string_equal(d.range, "64KiB..1GiB");
            replay = true;
        }
    }
    assert_true(heartbeat && replay);
}

/* Each documented list or mapping loads from a file under the name the manual gives it, and
 * each sample here names a documented row: neither side can gain a key alone. */
static void test_config_doc_lists_and_mappings_load_from_a_file(void **state)
{
    char err[LP_CONFIG_ERR_MAX];
    struct lp_config_doc d;
    size_t maps = 0;
    (void)state;

    for (size_t i = 0; lp_config_doc_at(i, &d); i++) {
        size_t s = 0;
        struct lp_config c;
        if (!d.file_only)
            continue;
        maps++;
        while (s < SAMPLES && strcmp(samples[s].name, d.name) != 0)
            s++;
        if (s == SAMPLES)
            fail_msg("%s is documented but this test has no file that sets it", d.name);
        lp_config_defaults(&c);
        if (lp_config_load_string(&c, d.name, samples[s].yaml, strlen(samples[s].yaml), err,
                                  sizeof(err)) != LP_OK)
            fail_msg("%s: %s", d.name, err);
        lp_config_clear(&c);
    }
    assert_int_equal(maps, SAMPLES);
}

/* A word one edit away from a documented one is refused with the documented word suggested:
 * the loader's words are the manual's words. */
static void test_config_doc_words_are_the_loaders_words(void **state)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"auth: {clients: {laptop: {psk_fil: /k}}}\n", "(did you mean psk_file?)"},
        {"auth: {clients: {laptop: {psk_file: /k, alow: {}}}}\n", "(did you mean allow?)"},
        {"auth: {clients: {laptop: {psk_file: /k, allow: {reverce: []}}}}\n",
         "(did you mean reverse?)"},
        {"mcp: {servers: {m: {command: cat, cwdd: /}}}\n", "(did you mean cwd?)"},
        {"auth: {client: {}}\n", "(did you mean clients?)"},
    };
    char err[LP_CONFIG_ERR_MAX];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_config c;
        lp_config_defaults(&c);
        assert_int_equal(lp_config_load_string(&c, "t.yaml", cases[i].yaml, strlen(cases[i].yaml),
                                               err, sizeof(err)),
                         LP_ERR_INVALID);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].yaml, err, cases[i].want);
        lp_config_clear(&c);
    }
}

static void test_config_doc_help_prints_maps_after_keys(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    (void)state;

    assert_non_null(f);
    lp_config_print_maps(f, "");
    fclose(f);
    assert_non_null(strstr(text, "auth.clients.NAME.allow.forward (list of strings)\n"));
    assert_non_null(strstr(text, "mcp.servers.NAME.env (mapping of strings)\n"));
    assert_null(strstr(text, "session.heartbeat"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_doc_rows_are_complete_and_unique),
        cmocka_unit_test(test_config_doc_scalar_defaults_are_accepted_values),
        cmocka_unit_test(test_config_doc_ranges_state_the_table_bounds),
        cmocka_unit_test(test_config_doc_lists_and_mappings_load_from_a_file),
        cmocka_unit_test(test_config_doc_words_are_the_loaders_words),
        cmocka_unit_test(test_config_doc_help_prints_maps_after_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
