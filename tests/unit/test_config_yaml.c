/* test_config_yaml.c — the YAML loader (config_yaml.c, behind lp_config_load_string): error
 * positions, all-or-nothing loading, one document, one of each section, every prefix of a
 * valid file handled without a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/config.h"
#include "limpet/config_load.h"

static const char good[] = "listen: 127.0.0.1:9000\n"
                           "session:\n"
                           "  heartbeat: 3s\n"
                           "  replay_buffer: 1MiB\n"
                           "log: {level: debug}\n";

static lp_err load(struct lp_config *c, const char *yaml, char *err)
{
    return lp_config_load_string(c, "t.yaml", yaml, strlen(yaml), err, LP_CONFIG_ERR_MAX);
}

#define FP_COLONS                                                                                 \
    "sha256:AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:" \
    "aa:bb:cc:dd"
#define FP_CANON "sha256:abcd00112233445566778899aabbccddeeff00112233445566778899aabbccdd"

static const char auth_yaml[] =
    "tls: { cert: server.crt, key: server.key }\n" /* 1 */
    "auth:\n"                                      /* 2 */
    "  clients:\n"                                 /* 3 */
    "    laptop:\n"                                /* 4 */
    "      psk_file: laptop.psk\n"                 /* 5 */
    "      allow:\n"                               /* 6 */
    "        forward: [\"127.0.0.1:22\", \"10.1.0.0/16:5432\", \"db.internal:8000-8100\", "
    "\"[::1]:80\"]\n"                             /* 7 */
    "        reverse: [\"127.0.0.1:8080\"]\n"     /* 8 */
    "        mcp: [\"memory\"]\n"                 /* 9 */
    "    ci.runner_2:\n"                          /* 10 */
    "      cert_fingerprint: \"" FP_COLONS "\"\n" /* 11 */
    "      allow:\n"                              /* 12 */
    "        mcp:\n"                              /* 13 */
    "          - fs\n"                            /* 14 */
    "          - 'git'\n"                         /* 15 */
    "    guest:\n"                                /* 16 */
    "      psk_file: /etc/limpet/guest.psk\n";    /* 17 */

static void expect_list(char **got, size_t n, const char *const *want, size_t n_want)
{
    assert_int_equal(n, n_want);
    if (n_want == 0)
        assert_null(got);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(got[i], want[i]);
}

/* Loads yaml over the defaults, expects exactly `want`, and that the config is unchanged. */
static void expect_error(const char *yaml, const char *want)
{
    struct lp_config c, before;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    before = c;
    assert_int_equal(load(&c, yaml, err), LP_ERR_INVALID);
    assert_string_equal(err, want);
    assert_memory_equal(&c, &before, sizeof(c));
    lp_config_clear(&c);
}

static void test_config_yaml_auth_section_fills_the_client_list(void **state)
{
    static const char *const fwd[] = {"127.0.0.1:22", "10.1.0.0/16:5432", "db.internal:8000-8100",
                                      "[::1]:80"};
    static const char *const rev[] = {"127.0.0.1:8080"};
    static const char *const mcp0[] = {"memory"};
    static const char *const mcp1[] = {"fs", "git"};
    struct lp_config c;
    const struct lp_auth_client *cl;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;

    lp_config_defaults(&c);
    if (load(&c, auth_yaml, err) != LP_OK)
        fail_msg("%s", err);
    assert_string_equal(c.tls.cert, "server.crt");
    assert_string_equal(c.tls.key, "server.key");
    assert_int_equal(c.auth.n_clients, 3);
    cl = &c.auth.clients[0];
    assert_string_equal(cl->name, "laptop");
    assert_string_equal(cl->psk_file, "laptop.psk");
    assert_string_equal(cl->cert_fingerprint, "");
    assert_int_equal(cl->line, 4);
    expect_list(cl->forward, cl->n_forward, fwd, 4);
    expect_list(cl->reverse, cl->n_reverse, rev, 1);
    expect_list(cl->mcp, cl->n_mcp, mcp0, 1);
    cl = &c.auth.clients[1];
    assert_string_equal(cl->name, "ci.runner_2");
    assert_string_equal(cl->psk_file, "");
    assert_string_equal(cl->cert_fingerprint, FP_CANON);
    assert_int_equal(cl->line, 10);
    expect_list(cl->forward, cl->n_forward, NULL, 0);
    expect_list(cl->reverse, cl->n_reverse, NULL, 0);
    expect_list(cl->mcp, cl->n_mcp, mcp1, 2);
    cl = &c.auth.clients[2];
    assert_string_equal(cl->name, "guest");
    assert_string_equal(cl->psk_file, "/etc/limpet/guest.psk");
    assert_int_equal(cl->line, 16);
    assert_int_equal(cl->n_forward + cl->n_reverse + cl->n_mcp, 0);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    lp_config_clear(&c);
    assert_null(c.auth.clients);
    assert_int_equal(c.auth.n_clients, 0);
    lp_config_clear(&c); /* twice is harmless */
}

static void test_config_yaml_auth_accepts_dotted_flow_and_empty_forms(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;

    lp_config_defaults(&c);
    assert_int_equal(load(&c,
                          "auth.clients: {a: {psk_file: a.psk, allow: {forward: []}}, "
                          "b: {psk_file: b.psk, allow: ~}, c: {psk_file: c.psk, allow: {mcp: }}}\n",
                          err),
                     LP_OK);
    assert_int_equal(c.auth.n_clients, 3);
    assert_string_equal(c.auth.clients[2].name, "c");
    assert_int_equal(c.auth.clients[0].n_forward, 0);
    lp_config_clear(&c);
    assert_int_equal(load(&c, "auth:\n  # clients: none yet\n", err), LP_OK);
    assert_int_equal(c.auth.n_clients, 0);
    assert_int_equal(load(&c, "auth:\n  clients:\n", err), LP_OK);
    assert_int_equal(c.auth.n_clients, 0);
    lp_config_clear(&c);
}

/* A file with an auth section replaces the list; one without keeps it; a bad one changes
 * nothing. ASan checks that the replaced list is freed. */
static void test_config_yaml_second_auth_section_replaces_the_list(void **state)
{
    struct lp_config c;
    struct lp_auth_client *kept;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;

    lp_config_defaults(&c);
    assert_int_equal(load(&c, auth_yaml, err), LP_OK);
    assert_int_equal(load(&c, "session:\n  ttl: 1h\n", err), LP_OK);
    assert_int_equal(c.auth.n_clients, 3);
    kept = c.auth.clients;
    assert_int_equal(load(&c, "auth.clients:\n  x: {psk_file: x.psk}\n  y: {}\n", err),
                     LP_ERR_INVALID);
    assert_ptr_equal(c.auth.clients, kept);
    assert_int_equal(c.auth.n_clients, 3);
    assert_int_equal(load(&c, "auth.clients:\n  desk: {psk_file: desk.psk}\n", err), LP_OK);
    assert_int_equal(c.auth.n_clients, 1);
    assert_string_equal(c.auth.clients[0].name, "desk");
    assert_int_equal(load(&c, "auth:\n", err), LP_OK);
    assert_int_equal(c.auth.n_clients, 0);
    lp_config_clear(&c);
}

static void test_config_yaml_auth_errors_name_position_and_path(void **state)
{
    (void)state;
    expect_error("auth:\n  clients:\n    laptop:\n      psk_file: l.psk\n      alow: {}\n",
                 "t.yaml:5:7: auth.clients.laptop.alow: unknown key (did you mean allow?)");
    expect_error("auth:\n  clients:\n    laptop:\n      allow: {}\n",
                 "t.yaml:3:5: auth.clients.laptop: needs psk_file or cert_fingerprint");
    expect_error("auth.clients:\n  laptop:\n",
                 "t.yaml:2:3: auth.clients.laptop: needs psk_file or cert_fingerprint");
    expect_error("auth.clients:\n  laptop:\n    psk_file: l.psk\n    cert_fingerprint: "
                 "\"" FP_COLONS "\"\n",
                 "t.yaml:2:3: auth.clients.laptop: set psk_file or cert_fingerprint, not both");
    expect_error("auth.clients:\n  a: {psk_file: a.psk}\n  b: {psk_file: b.psk}\n"
                 "  a: {psk_file: c.psk}\n",
                 "t.yaml:4:3: auth.clients.a: duplicate client name (first defined on line 2)");
    expect_error(
        "auth.clients:\n  \"lap top\": {psk_file: a.psk}\n",
        "t.yaml:2:3: auth.clients.lap top: bad client name (expected a name of 1..64 letters, "
        "digits, '.', '_' or '-')");
    expect_error("auth.clients:\n  a: {psk_file: [a.psk]}\n",
                 "t.yaml:2:17: auth.clients.a.psk_file: expected a file path, got a list");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {forward: \"127.0.0.1:22\"}}\n",
                 "t.yaml:2:41: auth.clients.a.allow.forward: expected a list of strings, got a "
                 "single value");
    expect_error("auth.clients:\n  a:\n    psk_file: a.psk\n    allow:\n      reverse:\n"
                 "        - {x: 1}\n",
                 "t.yaml:6:11: auth.clients.a.allow.reverse: expected a string, got a mapping");
    expect_error("auth.clients:\n  a:\n    psk_file: a.psk\n    allow:\n      forward:\n"
                 "        - [::1]:80\n",
                 "t.yaml:6:11: auth.clients.a.allow.forward: expected a string, got a list "
                 "(quote IPv6 addresses: \"[::1]:80\")");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [x, ~]}}\n",
                 "t.yaml:2:41: auth.clients.a.allow.mcp: missing value (expected a string)");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [x, '']}}\n",
                 "t.yaml:2:41: auth.clients.a.allow.mcp: expected a string, got an empty string");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: [forward]}\n",
                 "t.yaml:2:31: auth.clients.a.allow: expected a mapping of forward, reverse and "
                 "mcp lists, got a list");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {fwd: []}}\n",
                 "t.yaml:2:32: auth.clients.a.allow.fwd: unknown key");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [], mcp: []}}\n",
                 "t.yaml:2:41: auth.clients.a.allow.mcp: duplicate key (first set on line 2)");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, psk_file: b.psk}\n",
                 "t.yaml:2:24: auth.clients.a.psk_file: duplicate key (first set on line 2)");
    expect_error("auth.clients:\n  a: {cert_fingerprint: \"sha256:abcd\"}\n",
                 "t.yaml:2:25: auth.clients.a.cert_fingerprint: \"sha256:abcd\" has fewer than "
                 "32 bytes (64 hex digits)");
    expect_error("auth.clients:\n  a: laptop.psk\n",
                 "t.yaml:2:6: auth.clients.a: expected a mapping with psk_file or "
                 "cert_fingerprint, got a single value");
    expect_error("auth.clients: [a, b]\n",
                 "t.yaml:1:15: auth.clients: expected a mapping of client names, got a list");
    expect_error("auth: yes\n", "t.yaml:1:7: auth: expected a mapping of auth.* keys, got a "
                                "single value");
    expect_error("auth:\n  client: {}\n",
                 "t.yaml:2:3: auth.client: unknown key (did you mean clients?)");
    expect_error("auth:\n  clients: {}\nauth.clients: {}\n",
                 "t.yaml:3:1: auth.clients: duplicate key (first set on line 2)");
    expect_error("auth: {}\nauth: {}\n", "t.yaml:2:1: auth: duplicate key (first set on line 1)");
    expect_error("auth.client: {}\n", "t.yaml:1:1: auth.client: unknown key (did you mean "
                                      "auth.clients?)");
    expect_error("auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [*x]}}\n",
                 "t.yaml:2:38: auth.clients.a.allow.mcp: expected a string, got an alias "
                 "(aliases are not supported)");
}

static void test_config_yaml_auth_entries_and_names_have_length_limits(void **state)
{
    char yaml[1024], name[80], entry[400];
    (void)state;

    memset(name, 'n', sizeof(name));
    name[65] = '\0';
    snprintf(yaml, sizeof(yaml), "auth.clients:\n  %s: {psk_file: a.psk}\n", name);
    expect_error(
        yaml, "t.yaml:2:3: auth.clients.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
              "...: bad client name (expected a name of 1..64 letters, digits, '.', '_' or '-')");
    name[64] = '\0';
    snprintf(yaml, sizeof(yaml), "auth.clients:\n  %s: {psk_file: a.psk}\n", name);
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    lp_config_defaults(&c);
    assert_int_equal(load(&c, yaml, err), LP_OK);
    assert_string_equal(c.auth.clients[0].name, name);
    lp_config_clear(&c);

    memset(entry, 'e', sizeof(entry));
    entry[300] = '\0';
    snprintf(yaml, sizeof(yaml), "auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [%s]}}\n",
             entry);
    assert_int_equal(load(&c, yaml, err), LP_OK);
    assert_int_equal(strlen(c.auth.clients[0].mcp[0]), 300);
    lp_config_clear(&c);
    entry[300] = 'e';
    entry[301] = '\0';
    snprintf(yaml, sizeof(yaml), "auth.clients:\n  a: {psk_file: a.psk, allow: {mcp: [%s]}}\n",
             entry);
    expect_error(
        yaml, "t.yaml:2:38: auth.clients.a.allow.mcp: value is too long (301 bytes, at most 300)");
}

/* Builds "auth.clients:" with `clients` clients, the first with `entries` forward entries. */
static char *big_auth(size_t clients, size_t entries)
{
    size_t cap = 64 + clients * 40 + entries * 20, o = 0;
    char *s = malloc(cap);

    assert_non_null(s);
    o += (size_t)snprintf(s + o, cap - o,
                          "auth.clients:\n  c0:\n    psk_file: p\n"
                          "    allow:\n      forward:\n");
    for (size_t i = 0; i < entries; i++)
        o += (size_t)snprintf(s + o, cap - o, "        - \"h%zu:1\"\n", i);
    for (size_t i = 1; i < clients; i++)
        o += (size_t)snprintf(s + o, cap - o, "  c%zu: {psk_file: p}\n", i);
    assert_true(o < cap);
    return s;
}

static void test_config_yaml_auth_lists_are_capped(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    char *yaml;
    (void)state;

    lp_config_defaults(&c);
    yaml = big_auth(LP_AUTH_CLIENTS_MAX, LP_AUTH_ALLOW_MAX);
    if (load(&c, yaml, err) != LP_OK)
        fail_msg("%s", err);
    assert_int_equal(c.auth.n_clients, LP_AUTH_CLIENTS_MAX);
    assert_int_equal(c.auth.clients[0].n_forward, LP_AUTH_ALLOW_MAX);
    assert_string_equal(c.auth.clients[0].forward[1023], "h1023:1");
    assert_string_equal(c.auth.clients[4095].name, "c4095");
    free(yaml);
    lp_config_clear(&c);

    yaml = big_auth(LP_AUTH_CLIENTS_MAX + 1, 1);
    expect_error(yaml, "t.yaml:4102:3: auth.clients.c4096: more than 4096 clients");
    free(yaml);
    yaml = big_auth(1, LP_AUTH_ALLOW_MAX + 1);
    expect_error(yaml, "t.yaml:1030:11: auth.clients.c0.allow.forward: more than 1024 entries");
    free(yaml);
}

/* Every prefix of the auth example loads or fails with one line; no leaks either way. */
static void test_config_yaml_every_prefix_of_an_auth_file_loads_or_explains(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    size_t n = strlen(auth_yaml), ok = 0;
    (void)state;

    for (size_t i = 0; i <= n; i++) {
        lp_config_defaults(&c);
        err[0] = '\0';
        if (lp_config_load_string(&c, "t.yaml", auth_yaml, i, err, sizeof(err)) == LP_OK)
            ok++;
        else
            assert_true(strncmp(err, "t.yaml:", 7) == 0 && strchr(err, '\n') == NULL);
        lp_config_clear(&c);
    }
    assert_true(ok > 0 && ok < n);
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

/* ---- mcp.servers ------------------------------------------------------------------------- */

static void test_config_yaml_mcp_servers_load_with_every_field(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;

    lp_config_defaults(&c);
    if (load(&c,
             "mcp:\n  max_sessions: 8\n  servers:\n    memory:\n      command: node\n"
             "      args: [\"/srv/m.js\", \"--x\"]\n      env: {MEMORY_FILE_PATH: /m.json, E: "
             "\"\"}\n"
             "      cwd: /srv\n    echo: {command: cat}\n",
             err) != LP_OK)
        fail_msg("%s", err);
    assert_int_equal(c.mcp.max_sessions, 8);
    assert_int_equal(c.mcp.n_servers, 2);
    assert_string_equal(c.mcp.servers[0].name, "memory");
    assert_string_equal(c.mcp.servers[0].command, "node");
    assert_int_equal(c.mcp.servers[0].n_args, 2);
    assert_string_equal(c.mcp.servers[0].args[1], "--x");
    assert_int_equal(c.mcp.servers[0].n_env, 2);
    assert_string_equal(c.mcp.servers[0].env[0], "MEMORY_FILE_PATH=/m.json");
    assert_string_equal(c.mcp.servers[0].env[1], "E=");
    assert_string_equal(c.mcp.servers[0].cwd, "/srv");
    assert_string_equal(c.mcp.servers[1].command, "cat");
    assert_null(c.mcp.servers[1].args);
    assert_null(c.mcp.servers[1].cwd);
    /* A later file without mcp.servers keeps the list; one with it replaces it. */
    assert_int_equal(load(&c, "mcp:\n  idle_timeout: 5s\n", err), LP_OK);
    assert_int_equal(c.mcp.n_servers, 2);
    assert_int_equal(load(&c, "mcp:\n  servers:\n    x: {command: y}\n", err), LP_OK);
    assert_int_equal(c.mcp.n_servers, 1);
    assert_string_equal(c.mcp.servers[0].name, "x");
    lp_config_clear(&c);
}

static void test_config_yaml_mcp_server_errors_name_position_and_path(void **state)
{
    (void)state;
    expect_error("mcp:\n  servers:\n    m:\n      args: [a]\n",
                 "t.yaml:3:5: mcp.servers.m: needs command");
    expect_error("mcp:\n  servers:\n    m: {command: a, arg: [b]}\n",
                 "t.yaml:3:21: mcp.servers.m.arg: unknown key (did you mean args?)");
    expect_error("mcp:\n  servers:\n    m: {command: [a]}\n",
                 "t.yaml:3:18: mcp.servers.m.command: expected a program name or path, got a list");
    expect_error("mcp:\n  servers:\n    m: {command: a, env: {1X: b}}\n",
                 "t.yaml:3:27: mcp.servers.m.env.1X: bad variable name (expected letters, digits "
                 "and '_', not starting with a digit)");
    expect_error("mcp:\n  servers:\n    m: {command: a, env: {X: [b]}}\n",
                 "t.yaml:3:30: mcp.servers.m.env.X: expected a string of at most 4096 bytes");
    expect_error("mcp:\n  servers:\n    m: {command: a}\n    m: {command: b}\n",
                 "t.yaml:4:5: mcp.servers.m: duplicate server name (first defined on line 3)");
    expect_error("mcp:\n  servers:\n    \"a b\": {command: a}\n",
                 "t.yaml:3:5: mcp.servers.a b: bad server name (expected a name of 1..64 letters, "
                 "digits, '.', '_' or '-')");
    expect_error("mcp:\n  servers: [a]\n",
                 "t.yaml:2:12: mcp.servers: expected a mapping of server names, got a list");
}

static void test_config_yaml_forward_lists_are_checked_like_the_command_line(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;

    lp_config_defaults(&c);
    if (load(&c, "forward:\n  local: [\"8080:db:5432\", \"[::1]:22:h:2\"]\n  dynamic: [\"1080\"]\n",
             err) != LP_OK)
        fail_msg("%s", err);
    assert_int_equal(c.forward.n_specs[LP_FWD_LOCAL], 2);
    assert_string_equal(c.forward.specs[LP_FWD_LOCAL][1], "[::1]:22:h:2");
    assert_int_equal(c.forward.n_specs[LP_FWD_DYNAMIC], 1);
    /* another file without the lists keeps them; one with a list replaces that list */
    assert_int_equal(load(&c, "forward:\n  connect_timeout: 5s\n", err), LP_OK);
    assert_int_equal(c.forward.n_specs[LP_FWD_LOCAL], 2);
    assert_int_equal(load(&c, "forward:\n  dynamic: [\"*:1081\"]\n", err), LP_OK);
    assert_int_equal(c.forward.n_specs[LP_FWD_DYNAMIC], 1);
    assert_string_equal(c.forward.specs[LP_FWD_DYNAMIC][0], "*:1081");
    assert_int_equal(c.forward.n_specs[LP_FWD_LOCAL], 2);
    lp_config_clear(&c);

    expect_error("forward:\n  local: [\"80:db\"]\n",
                 "t.yaml:2:11: forward.local: \"80:db\": missing HOSTPORT");
    expect_error("forward:\n  dynamic: [\"1:2:3\"]\n",
                 "t.yaml:2:13: forward.dynamic: \"1:2:3\": expected PORT or BIND:PORT");
    expect_error("forward:\n  local: \"80:db:1\"\n",
                 "t.yaml:2:10: forward.local: expected a list of strings, got a single value");
    expect_error("forward:\n  local: []\n  local: []\n",
                 "t.yaml:3:3: forward.local: duplicate key (first set on line 2)");

    lp_config_defaults(&c);
    if (load(&c, "forward:\n  remote: [\"8022:127.0.0.1:22\"]\n  transparent: [\"*:12345\"]\n",
             err) != LP_OK)
        fail_msg("%s", err);
    assert_int_equal(c.forward.n_specs[LP_FWD_REMOTE], 1);
    assert_string_equal(c.forward.specs[LP_FWD_REMOTE][0], "8022:127.0.0.1:22");
    assert_int_equal(c.forward.n_specs[LP_FWD_TRANSPARENT], 1);
    assert_int_equal(c.forward.n_specs[LP_FWD_LOCAL], 0);
    lp_config_clear(&c);
    expect_error("forward:\n  remote: [\"8022:h\"]\n",
                 "t.yaml:2:12: forward.remote: \"8022:h\": missing HOSTPORT");
    expect_error("forward:\n  transparent: [\"1:2:3\"]\n",
                 "t.yaml:2:17: forward.transparent: \"1:2:3\": expected PORT or BIND:PORT");
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
        cmocka_unit_test(test_config_yaml_auth_section_fills_the_client_list),
        cmocka_unit_test(test_config_yaml_auth_accepts_dotted_flow_and_empty_forms),
        cmocka_unit_test(test_config_yaml_second_auth_section_replaces_the_list),
        cmocka_unit_test(test_config_yaml_auth_errors_name_position_and_path),
        cmocka_unit_test(test_config_yaml_auth_entries_and_names_have_length_limits),
        cmocka_unit_test(test_config_yaml_auth_lists_are_capped),
        cmocka_unit_test(test_config_yaml_every_prefix_of_an_auth_file_loads_or_explains),
        cmocka_unit_test(test_config_yaml_mcp_servers_load_with_every_field),
        cmocka_unit_test(test_config_yaml_mcp_server_errors_name_position_and_path),
        cmocka_unit_test(test_config_yaml_forward_lists_are_checked_like_the_command_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
