/* test_config_yaml.c — the YAML loader (config_yaml.c, behind lp_config_load_string): error
 * positions, all-or-nothing loading, one document, one of each section, every prefix of a
 * valid file handled without a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/config.h"

static const char good[] = "listen: 127.0.0.1:9000\n"
                           "session:\n"
                           "  heartbeat: 3s\n"
                           "  replay_buffer: 1MiB\n"
                           "log: {level: debug}\n";

static lp_err load(struct lp_config *c, const char *yaml, char *err)
{
    return lp_config_load_string(c, "t.yaml", yaml, strlen(yaml), err, LP_CONFIG_ERR_MAX);
}

static void test_config_yaml_loads_nested_and_flow_mappings(void **state)
{
    (void)state;
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    assert_int_equal(load(&c, good, err), LP_OK);
    assert_string_equal(c.listen, "127.0.0.1:9000");
    assert_true(c.session.heartbeat == 3000);
    assert_int_equal(c.session.replay_buffer, 1u << 20);
    assert_int_equal(c.log_level, LP_LOG_DEBUG);
}

static void test_config_yaml_error_names_line_and_column_of_the_value(void **state)
{
    (void)state;
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    assert_int_equal(load(&c, "listen: 0.0.0.0:1\nsession:\n  heartbeat: fast\n", err),
                     LP_ERR_INVALID);
    assert_non_null(strstr(err, "t.yaml:3:14: session.heartbeat: "));
}

static void test_config_yaml_failed_load_changes_nothing(void **state)
{
    (void)state;
    struct lp_config c, before;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    before = c;
    assert_int_equal(load(&c, "listen: 127.0.0.1:9000\nsession:\n  ttl: never\n", err),
                     LP_ERR_INVALID);
    assert_memory_equal(&c, &before, sizeof(c)); /* listen was valid but is not applied */
}

static void test_config_yaml_refuses_a_second_document(void **state)
{
    (void)state;
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    assert_int_equal(load(&c, "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", err),
                     LP_ERR_INVALID);
    assert_non_null(strstr(err, "only one YAML document is allowed"));
}

static void test_config_yaml_refuses_a_section_twice_naming_the_first(void **state)
{
    (void)state;
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    assert_int_equal(
        load(&c, "session:\n  ttl: 1m\nlog:\n  level: warn\nsession:\n  ttl: 2m\n", err),
        LP_ERR_INVALID);
    assert_non_null(strstr(err, "t.yaml:5:1: session: duplicate key (first set on line 1)"));
}

static void test_config_yaml_every_prefix_loads_or_explains(void **state)
{
    (void)state;
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    size_t n = strlen(good);

    for (size_t i = 0; i <= n; i++) {
        lp_config_defaults(&c);
        err[0] = '\0';
        lp_err rc = lp_config_load_string(&c, "t.yaml", good, i, err, sizeof(err));
        if (rc != LP_OK)
            assert_true(strncmp(err, "t.yaml:", 7) == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_yaml_loads_nested_and_flow_mappings),
        cmocka_unit_test(test_config_yaml_error_names_line_and_column_of_the_value),
        cmocka_unit_test(test_config_yaml_failed_load_changes_nothing),
        cmocka_unit_test(test_config_yaml_refuses_a_second_document),
        cmocka_unit_test(test_config_yaml_refuses_a_section_twice_naming_the_first),
        cmocka_unit_test(test_config_yaml_every_prefix_loads_or_explains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
