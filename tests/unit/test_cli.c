/* test_cli.c — subcommands and flags, forward specs, host:port, and the help pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/cli.h"

#define ARGV_MAX 32

/* Parses a NULL-terminated list of arguments (the program name is added). */
static lp_err parse(struct lp_cli *cli, char *err, const char *const *args)
{
    static char *argv[ARGV_MAX + 2];
    int argc = 1;

    argv[0] = (char *)"limpet";
    for (; args[argc - 1] != NULL && argc <= ARGV_MAX; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    err[0] = '\0';
    return lp_cli_parse(argc, argv, cli, err, LP_CONFIG_ERR_MAX);
}

#define PARSE(cli, err, ...) parse((cli), (err), (const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *const *args, const char *want)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];

    assert_int_equal(parse(&cli, err, args), LP_ERR_INVALID);
    assert_string_equal(err, want);
    assert_null(cli.overrides); /* nothing left to free */
    assert_null(cli.forwards);
}

#define EXPECT_ERROR(want, ...) expect_error((const char *const[]){__VA_ARGS__, NULL}, (want))

/* ---- commands ---------------------------------------------------------------------------- */

static void test_cli_without_command_points_at_help(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    char *argv[] = {(char *)"limpet", NULL};
    (void)state;
    assert_int_equal(lp_cli_parse(1, argv, &cli, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "no command given; try 'limpet --help'");
}

static void test_cli_global_help_and_version(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "--help"), LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_HELP);
    lp_cli_free(&cli);
    assert_int_equal(PARSE(&cli, err, "-h"), LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_HELP);
    lp_cli_free(&cli);
    assert_int_equal(PARSE(&cli, err, "--version"), LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_VERSION);
    lp_cli_free(&cli);
}

static void test_cli_unknown_command_is_refused(void **state)
{
    (void)state;
    EXPECT_ERROR("unknown command 'serve'; try 'limpet --help'", "serve");
    EXPECT_ERROR("unknown option '-v' before the command; try 'limpet --help'", "-v", "server");
}

static void test_cli_subcommand_help_names_the_page(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "client", "-s", "h:1", "--help"), LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_CLIENT);
    assert_true(cli.help);
    lp_cli_free(&cli);
    assert_int_equal(PARSE(&cli, err, "server", "-h"), LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_SERVER);
    assert_true(cli.help);
    lp_cli_free(&cli);
}

/* ---- flags ------------------------------------------------------------------------------- */

static void test_cli_server_reads_every_flag(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "server", "-c", "s.yaml", "-l", "[::]:7070", "--insecure",
                           "-o", "session.ttl=1h", "-osession.heartbeat=1s", "-v", "-v", "-q"),
                     LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_SERVER);
    assert_false(cli.help);
    assert_string_equal(cli.config_file, "s.yaml");
    assert_string_equal(cli.listen, "[::]:7070");
    assert_null(cli.server);
    assert_true(cli.insecure);
    assert_int_equal(cli.verbosity, 1);
    assert_int_equal(cli.n_overrides, 2);
    assert_string_equal(cli.overrides[0], "session.ttl=1h");
    assert_string_equal(cli.overrides[1], "session.heartbeat=1s");
    assert_int_equal(cli.n_forwards, 0);
    lp_cli_free(&cli);
    assert_null(cli.overrides);
}

static void test_cli_client_reads_every_flag(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "client", "-c", "c.yaml", "-s", "tunnel.example:7443", "-L",
                           "8080:localhost:80", "-L2222:[fd00::5]:22", "--insecure", "-q", "-q",
                           "-o", "log.level=debug"),
                     LP_OK);
    assert_int_equal(cli.cmd, LP_CMD_CLIENT);
    assert_string_equal(cli.config_file, "c.yaml");
    assert_string_equal(cli.server, "tunnel.example:7443");
    assert_null(cli.listen);
    assert_true(cli.insecure);
    assert_int_equal(cli.verbosity, -2);
    assert_int_equal(cli.n_overrides, 1);
    assert_string_equal(cli.overrides[0], "log.level=debug");
    assert_int_equal(cli.n_forwards, 2);
    assert_string_equal(cli.forwards[0].bind_host, "127.0.0.1");
    assert_int_equal(cli.forwards[0].bind_port, 8080);
    assert_string_equal(cli.forwards[0].host, "localhost");
    assert_int_equal(cli.forwards[0].port, 80);
    assert_string_equal(cli.forwards[1].host, "fd00::5");
    assert_int_equal(cli.forwards[1].bind_port, 2222);
    assert_int_equal(cli.forwards[1].port, 22);
    lp_cli_free(&cli);
}

static void test_cli_long_forms_take_separate_or_attached_values(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "client", "--config=c.yaml", "--server", "h:1", "--option",
                           "a=b", "--option=c=d", "--local", "1:h:2", "--local=3:h:4", "--verbose",
                           "--verbose", "--quiet"),
                     LP_OK);
    assert_string_equal(cli.config_file, "c.yaml");
    assert_string_equal(cli.server, "h:1");
    assert_int_equal(cli.n_overrides, 2);
    assert_string_equal(cli.overrides[0], "a=b");
    assert_string_equal(cli.overrides[1], "c=d");
    assert_int_equal(cli.n_forwards, 2);
    assert_int_equal(cli.forwards[1].bind_port, 3);
    assert_int_equal(cli.verbosity, 1);
    lp_cli_free(&cli);
    assert_int_equal(PARSE(&cli, err, "server", "--listen=127.0.0.1:9", "--config", "x"), LP_OK);
    assert_string_equal(cli.listen, "127.0.0.1:9");
    assert_string_equal(cli.config_file, "x");
    lp_cli_free(&cli);
}

static void test_cli_short_flags_bundle(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    assert_int_equal(PARSE(&cli, err, "server", "-vvq", "-vc", "f.yaml", "-vcg.yaml"), LP_OK);
    assert_int_equal(cli.verbosity, 3);
    assert_string_equal(cli.config_file, "g.yaml");
    lp_cli_free(&cli);
}

static void test_cli_double_dash_ends_options(void **state)
{
    (void)state;
    EXPECT_ERROR("unexpected argument '-v' for 'limpet server'", "server", "--", "-v");
    EXPECT_ERROR("unexpected argument 'extra' for 'limpet client'", "client", "extra");
}

static void test_cli_flag_of_the_other_subcommand_is_refused(void **state)
{
    (void)state;
    EXPECT_ERROR("-l is only valid for 'limpet server', not 'limpet client'", "client", "-l",
                 "h:1");
    EXPECT_ERROR("-s is only valid for 'limpet client', 'limpet stdio' or 'limpet mcp', not "
                 "'limpet server'",
                 "server", "-s", "h:1");
    EXPECT_ERROR("--scope is only valid for 'limpet mcp', not 'limpet stdio'", "stdio", "--scope",
                 "k", "h:1");
    EXPECT_ERROR("-L is only valid for 'limpet client', not 'limpet server'", "server", "-L",
                 "1:h:2");
    EXPECT_ERROR("--local is only valid for 'limpet client', not 'limpet server'", "server",
                 "--local=1:h:2");
}

static void test_cli_unknown_flag_names_flag_and_command(void **state)
{
    (void)state;
    EXPECT_ERROR("unknown option --foo for 'limpet client' (see 'limpet client --help')", "client",
                 "--foo");
    EXPECT_ERROR("unknown option --foo for 'limpet server' (see 'limpet server --help')", "server",
                 "--foo=1");
    EXPECT_ERROR("unknown option -x for 'limpet client' (see 'limpet client --help')", "client",
                 "-vx");
    EXPECT_ERROR("--insecure takes no value", "client", "--insecure=yes");
}

static void test_cli_missing_value_names_flag(void **state)
{
    (void)state;
    EXPECT_ERROR("-c: missing FILE", "server", "-c");
    EXPECT_ERROR("--server: missing HOST:PORT", "client", "--server");
    EXPECT_ERROR("-o: missing KEY=VALUE", "client", "-v", "-o");
    EXPECT_ERROR("-L: missing [BIND:]PORT:HOST:HOSTPORT", "client", "-L");
}

static void test_cli_bad_values_name_flag_and_value(void **state)
{
    (void)state;
    EXPECT_ERROR("-L 80:db: missing HOSTPORT", "client", "-L", "80:db");
    EXPECT_ERROR("-L 80:db:99999: bad HOSTPORT \"99999\" (1..65535)", "client", "-L80:db:99999");
    EXPECT_ERROR("--local x:db:1: bad PORT \"x\" (0..65535)", "client", "--local=x:db:1");
    EXPECT_ERROR("-s nohost: expected HOST:PORT", "client", "-s", "nohost");
    EXPECT_ERROR("-l ::1:70: expected ADDR:PORT", "server", "-l", "::1:70");
}

/* A later error frees what earlier flags allocated (ASan would report the leak). */
static void test_cli_error_after_forwards_leaves_nothing_to_free(void **state)
{
    (void)state;
    EXPECT_ERROR("unknown option --bogus for 'limpet client' (see 'limpet client --help')",
                 "client", "-L", "1:h:2", "-o", "a=b", "--bogus");
}

/* ---- forward specs ----------------------------------------------------------------------- */

static void test_cli_forward_spec_valid_table(void **state)
{
    static const struct {
        const char *spec, *bind;
        uint16_t bind_port;
        const char *host;
        uint16_t port;
    } cases[] = {
        {"8080:localhost:80", "127.0.0.1", 8080, "localhost", 80},
        {"0.0.0.0:8080:h:22", "0.0.0.0", 8080, "h", 22},
        {"*:8080:h:22", "0.0.0.0", 8080, "h", 22},
        {":8080:h:22", "0.0.0.0", 8080, "h", 22},
        {"[::1]:8080:[::1]:22", "::1", 8080, "::1", 22},
        {"8080:[fd00::5]:22", "127.0.0.1", 8080, "fd00::5", 22},
        {"[fe80::1%eth0]:1:[fe80::2%eth0]:2", "fe80::1%eth0", 1, "fe80::2%eth0", 2},
        {"localhost:1:db.internal:5432", "localhost", 1, "db.internal", 5432},
        {"0:h:1", "127.0.0.1", 0, "h", 1},
        {"65535:10.0.0.1:65535", "127.0.0.1", 65535, "10.0.0.1", 65535},
        {"00080:my_host-1:080", "127.0.0.1", 80, "my_host-1", 80},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_forward fw;
        char err[128] = "";
        if (lp_parse_forward(cases[i].spec, &fw, err, sizeof(err)) != LP_OK)
            fail_msg("%s: %s", cases[i].spec, err);
        assert_string_equal(fw.bind_host, cases[i].bind);
        assert_int_equal(fw.bind_port, cases[i].bind_port);
        assert_string_equal(fw.host, cases[i].host);
        assert_int_equal(fw.port, cases[i].port);
    }
}

static void test_cli_forward_spec_invalid_table(void **state)
{
    static const struct {
        const char *spec, *why;
    } cases[] = {
        {"", "missing PORT:HOST:HOSTPORT"},
        {"8080", "missing HOST:HOSTPORT"},
        {"80:db", "missing HOSTPORT"},
        {"80:db:", "missing HOSTPORT"},
        {"80::22", "missing HOST"},
        {":h:22", "missing PORT"},
        {"x:h:22", "bad PORT \"x\" (0..65535)"},
        {"-1:h:22", "bad PORT \"-1\" (0..65535)"},
        {"65536:h:1", "bad PORT \"65536\" (0..65535)"},
        {"123456:h:1", "bad PORT \"123456\" (0..65535)"},
        {"80:h:0", "bad HOSTPORT \"0\" (1..65535)"},
        {"80:h:65536", "bad HOSTPORT \"65536\" (1..65535)"},
        {"80:h:22x", "bad HOSTPORT \"22x\" (1..65535)"},
        {"a:b:c:d:e", "too many ':' (write IPv6 addresses in brackets: [::1])"},
        {"80:fd00::5:22", "too many ':' (write IPv6 addresses in brackets: [::1])"},
        {"::1:80:h:22", "too many ':' (write IPv6 addresses in brackets: [::1])"},
        {"[::1:80:h:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"80:[fd00::5]x:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"80:x[::1]:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"80:[[::1]]:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"80:]:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"80:[]:22", "bad HOST \"[]\""},
        {"80:[host]:22", "bad HOST \"[host]\""},
        {"80:h st:22", "bad HOST \"h st\""},
        {"80:h/x:22", "bad HOST \"h/x\""},
        {"b@d:80:h:22", "bad BIND address \"b@d\""},
        {"80:a\nb:22", "bad HOST \"a?b\""}, /* one line, whatever the input */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_forward fw;
        char err[128] = "";
        if (lp_parse_forward(cases[i].spec, &fw, err, sizeof(err)) != LP_ERR_INVALID)
            fail_msg("%s: accepted", cases[i].spec);
        if (strcmp(err, cases[i].why) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].spec, err, cases[i].why);
    }
}

/* Every prefix of a valid spec parses or fails with a message; never reads past the end. */
static void test_cli_forward_spec_every_prefix_fails_cleanly(void **state)
{
    static const char spec[] = "[fe80::1%eth0]:8080:[fd00::5]:22";
    size_t ok = 0;
    (void)state;
    for (size_t n = 0; n < sizeof(spec); n++) {
        char *copy = strndup(spec, n); /* heap, exact size: ASan sees any over-read */
        struct lp_forward fw;
        char err[128] = "";
        assert_non_null(copy);
        if (lp_parse_forward(copy, &fw, err, sizeof(err)) == LP_OK)
            ok++;
        else
            assert_true(err[0] != '\0');
        free(copy);
    }
    assert_int_equal(ok, 2); /* ...:2 and ...:22 */
}

static void test_cli_forward_host_longer_than_field_is_refused(void **state)
{
    char spec[LP_ADDR_MAX + 32];
    struct lp_forward fw;
    char err[128] = "";
    (void)state;
    memset(spec, 'a', sizeof(spec));
    memcpy(spec, "80:", 3);
    memcpy(spec + 3 + LP_ADDR_MAX, ":22", 4);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_memory_equal(err, "bad HOST \"aaa", 13);
    spec[3 + LP_ADDR_MAX - 1] = ':'; /* 255 characters fit */
    memcpy(spec + 3 + LP_ADDR_MAX, "22", 3);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_OK);
    assert_int_equal(strlen(fw.host), LP_ADDR_MAX - 1);
}

/* ---- host:port --------------------------------------------------------------------------- */

static void test_cli_hostport_table(void **state)
{
    static const struct {
        const char *s;
        lp_err rc;
        const char *host;
        uint16_t port;
    } cases[] = {
        {"h:1", LP_OK, "h", 1},
        {"0.0.0.0:7070", LP_OK, "0.0.0.0", 7070},
        {"[::1]:80", LP_OK, "::1", 80},
        {"[::]:65535", LP_OK, "::", 65535},
        {"h:0", LP_ERR_INVALID, NULL, 0},
        {"h:65536", LP_ERR_INVALID, NULL, 0},
        {"h", LP_ERR_INVALID, NULL, 0},
        {"h:", LP_ERR_INVALID, NULL, 0},
        {":80", LP_ERR_INVALID, NULL, 0},
        {"::1:80", LP_ERR_INVALID, NULL, 0},
        {"[::1]80", LP_ERR_INVALID, NULL, 0},
        {"[::1]", LP_ERR_INVALID, NULL, 0},
        {"[::1:80", LP_ERR_INVALID, NULL, 0},
        {"[h]:80", LP_ERR_INVALID, NULL, 0},
        {"h:80x", LP_ERR_INVALID, NULL, 0},
        {"h:+80", LP_ERR_INVALID, NULL, 0},
        {"h h:80", LP_ERR_INVALID, NULL, 0},
        {"", LP_ERR_INVALID, NULL, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[LP_ADDR_MAX];
        uint16_t port = 0;
        lp_err rc = lp_parse_hostport(cases[i].s, host, sizeof(host), &port);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %s", cases[i].s, lp_strerror(rc));
        if (rc == LP_OK) {
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
        }
    }
}

static void test_cli_hostport_respects_host_buffer(void **state)
{
    char host[4];
    uint16_t port;
    (void)state;
    assert_int_equal(lp_parse_hostport("abc:1", host, sizeof(host), &port), LP_OK);
    assert_int_equal(lp_parse_hostport("abcd:1", host, sizeof(host), &port), LP_ERR_INVALID);
}

/* ---- help -------------------------------------------------------------------------------- */

/* noinline: GCC 12 otherwise mistakes the returned buffer for the local `text` itself
 * (-Wdangling-pointer) once the caller does arithmetic on it. */
__attribute__((noinline)) static char *usage_text(enum lp_cmd cmd)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    lp_cli_usage(f, cmd);
    fclose(f);
    return text;
}

static void check_page_basics(const char *text)
{
    static const char *const must[] = {
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "EXIT STATUS",
        "EXAMPLES",
        "-c",
        "--config",
        "-o",
        "--option",
        "KEY=VALUE",
        "--insecure",
        "-v",
        "--verbose",
        "-q",
        "--quiet",
        "--help",
        "0   clean end",
        "1   usage or configuration error",
        "2   authentication or authorization refused",
        "3   session lost",
        "4   gave up reconnecting",
        /* every configuration key, with its default */
        "listen=0.0.0.0:7070",
        "server=127.0.0.1:7070",
        "insecure=false",
        "log.level=info",
        "session.heartbeat=2s",
        "session.dead_after=0s",
        "session.ttl=10m",
        "session.replay_buffer=8MiB",
        "session.receive_buffer=16MiB",
        "session.stream_window=1MiB",
        "session.ack_every=64KiB",
        "session.ack_delay=20ms",
        "session.max_streams=1024",
        "reconnect.initial_delay=100ms",
        "reconnect.max_delay=5s",
        "reconnect.give_up_after=0s",
        "reconnect.connect_timeout=10s",
        "forward.connect_timeout=30s",
        "limits.handshake_timeout=10s",
        "limits.max_sessions=1024",
    };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        if (strstr(text, must[i]) == NULL)
            fail_msg("help lacks \"%s\"", must[i]);
}

/* The top page's synopsis and options name every forward the client takes: the synopsis
 * once showed -L alone. */
static void check_main_synopsis(const char *page)
{
    static const char *const fwd[] = {"[-L [BIND:]PORT:HOST:HOSTPORT]", "[-D [BIND:]PORT]",
                                      "[-R [BIND:]PORT:HOST:HOSTPORT]", "[-T [BIND:]PORT]"};
    static const char *const opt[] = {"-L, --local", "-D, --dynamic", "-R, --remote",
                                      "-T, --transparent"};
    size_t syn, desc;

    assert_non_null(strstr(page, "SYNOPSIS"));
    assert_non_null(strstr(page, "DESCRIPTION"));
    syn = (size_t)(strstr(page, "SYNOPSIS") - page);
    desc = (size_t)(strstr(page, "DESCRIPTION") - page);
    for (size_t i = 0; i < 4; i++) {
        const char *at = strstr(page + syn, fwd[i]);
        if (at == NULL || (size_t)(at - page) > desc)
            fail_msg("the synopsis of `limpet --help` lacks %s", fwd[i]);
        if (strstr(page, opt[i]) == NULL)
            fail_msg("`limpet --help` does not describe %s", opt[i]);
    }
}

static void test_cli_usage_pages_list_flags_exit_codes_and_keys(void **state)
{
    char *main_page = usage_text(LP_CMD_NONE);
    char *server = usage_text(LP_CMD_SERVER);
    char *client = usage_text(LP_CMD_CLIENT);
    (void)state;
    check_page_basics(main_page);
    check_page_basics(server);
    check_page_basics(client);
    assert_non_null(strstr(main_page, "--version"));
    check_main_synopsis(main_page);
    assert_non_null(strstr(server, "-l, --listen ADDR:PORT"));
    assert_null(strstr(server, "--local"));
    assert_null(strstr(server, "--server"));
    assert_non_null(strstr(client, "-s, --server HOST:PORT"));
    assert_non_null(strstr(client, "-L, --local [BIND:]PORT:HOST:HOSTPORT"));
    assert_null(strstr(client, "--listen"));
    free(main_page);
    free(server);
    free(client);
}

static void test_cli_dynamic_spec_takes_port_or_bind_and_port(void **state)
{
    struct lp_forward fw;
    char err[160];
    (void)state;

    assert_int_equal(lp_parse_dynamic("1080", &fw, err, sizeof(err)), LP_OK);
    assert_int_equal(fw.kind, LP_FWD_DYNAMIC);
    assert_string_equal(fw.bind_host, "127.0.0.1");
    assert_int_equal(fw.bind_port, 1080);
    assert_int_equal(lp_parse_dynamic("*:0", &fw, err, sizeof(err)), LP_OK);
    assert_string_equal(fw.bind_host, "0.0.0.0");
    assert_int_equal(fw.bind_port, 0);
    assert_int_equal(lp_parse_dynamic("[::1]:1080", &fw, err, sizeof(err)), LP_OK);
    assert_string_equal(fw.bind_host, "::1");
    assert_int_equal(lp_parse_dynamic("1:2:3", &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "expected PORT or BIND:PORT");
    assert_int_equal(lp_parse_dynamic("h:", &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "missing PORT");
    assert_int_equal(lp_parse_dynamic("70000", &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "bad PORT \"70000\" (0..65535)");
    assert_int_equal(lp_parse_dynamic("[::1:80", &fw, err, sizeof(err)), LP_ERR_INVALID);
    EXPECT_ERROR("-D is only valid for 'limpet client', not 'limpet server'", "server", "-D", "1");
}

static void test_cli_remote_and_transparent_forwards_keep_their_kind_and_order(void **state)
{
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;

    assert_int_equal(PARSE(&cli, err, "client", "-R", "8022:127.0.0.1:22", "-L", "1:h:2", "-R",
                           "*:0:[::1]:80", "--remote=[::1]:9:h:3", "-T", "12345"),
                     LP_OK);
    assert_int_equal(cli.n_forwards, 5);
    assert_int_equal(cli.forwards[0].kind, LP_FWD_REMOTE);
    assert_string_equal(cli.forwards[0].bind_host, "127.0.0.1");
    assert_int_equal(cli.forwards[0].bind_port, 8022);
    assert_int_equal(cli.forwards[0].port, 22);
    assert_int_equal(cli.forwards[1].kind, LP_FWD_LOCAL);
    assert_int_equal(cli.forwards[2].kind, LP_FWD_REMOTE);
    assert_string_equal(cli.forwards[2].bind_host, "0.0.0.0");
    assert_int_equal(cli.forwards[2].bind_port, 0);
    assert_string_equal(cli.forwards[2].host, "::1");
    assert_string_equal(cli.forwards[3].bind_host, "::1");
    assert_int_equal(cli.forwards[4].kind, LP_FWD_TRANSPARENT);
    assert_int_equal(cli.forwards[4].bind_port, 12345);
    lp_cli_free(&cli);
    EXPECT_ERROR("-R 8022:h: missing HOSTPORT", "client", "-R", "8022:h");
    EXPECT_ERROR("-R is only valid for 'limpet client', not 'limpet server'", "server", "-R",
                 "1:h:2");
}

/* ---- unix socket forwards ------------------------------------------------------------------ */

static void test_cli_unix_forward_forms_table(void **state)
{
    static const struct {
        const char *spec, *bind_path, *bind;
        uint16_t bind_port;
        const char *host;
        uint16_t port;
        const char *path;
    } cases[] = {
        {"/run/app.sock:db:5432", "/run/app.sock", "", 0, "db", 5432, ""},
        {"./app.sock:[::1]:22", "./app.sock", "", 0, "::1", 22, ""},
        {"8080:unix:/var/run/x.sock", "", "127.0.0.1", 8080, "", 0, "/var/run/x.sock"},
        {"8080:/var/run/x.sock", "", "127.0.0.1", 8080, "", 0, "/var/run/x.sock"},
        {"[::1]:8080:unix:/x", "", "::1", 8080, "", 0, "/x"},
        {"*:0:/x", "", "0.0.0.0", 0, "", 0, "/x"},
        {"/a.sock:unix:/b.sock", "/a.sock", "", 0, "", 0, "/b.sock"},
        {"./a.sock:/b.sock", "./a.sock", "", 0, "", 0, "/b.sock"},
        {"1:unix:/odd:name", "", "127.0.0.1", 1, "", 0, "/odd:name"}, /* a target runs to the end */
        {"1:unix:5432", "", "127.0.0.1", 1, "unix", 5432, ""},        /* a host called unix */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_forward fw;
        char err[160] = "";
        if (lp_parse_forward(cases[i].spec, &fw, err, sizeof(err)) != LP_OK)
            fail_msg("%s: %s", cases[i].spec, err);
        assert_string_equal(fw.bind_path, cases[i].bind_path);
        assert_string_equal(fw.bind_host, cases[i].bind);
        assert_int_equal(fw.bind_port, cases[i].bind_port);
        assert_string_equal(fw.host, cases[i].host);
        assert_int_equal(fw.port, cases[i].port);
        assert_string_equal(fw.path, cases[i].path);
    }
}

static void test_cli_unix_forward_errors_table(void **state)
{
    static const struct {
        const char *spec, *why;
    } cases[] = {
        {"/run/app.sock", "missing HOST:HOSTPORT after the socket path"},
        {"/run/app.sock:db", "missing HOSTPORT"},
        {"/run/app.sock:", "missing HOST:HOSTPORT"},
        {"/run/app.sock:db:", "missing HOSTPORT"},
        {"/run/app.sock:a:b:c", "too many ':' (write IPv6 addresses in brackets: [::1])"},
        {"/run/app.sock:[::1:22", "unbalanced brackets (write IPv6 as [::1])"},
        {"/:db:1", "socket path \"/\" names no socket"},
        {"./:db:1", "socket path \"./\" names no socket"},
        {"/run/:db:1", "socket path \"/run/\" names no socket"},
        {"/a\tb:db:1", "control byte in socket path"},
        {"8080:unix:/", "unix socket target \"/\" names no socket"},
        {"8080:unix:/run/", "unix socket target \"/run/\" names no socket"},
        {"8080:unix:/a\nb", "control byte in unix socket target"},
        {":/x", "missing PORT"},
        {"x:/x", "bad PORT \"x\" (0..65535)"},
        {"1:2:3:/x", "expected PORT or BIND:PORT"},
        {"/a.sock:unix:/", "unix socket target \"/\" names no socket"},
        {"80:h/x:22", "bad HOST \"h/x\""}, /* a '/' not after a ':' starts no path */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_forward fw;
        char err[160] = "";
        if (lp_parse_forward(cases[i].spec, &fw, err, sizeof(err)) != LP_ERR_INVALID)
            fail_msg("%s: accepted", cases[i].spec);
        if (strcmp(err, cases[i].why) != 0)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].spec, err, cases[i].why);
    }
}

static void test_cli_unix_paths_longer_than_sun_path_are_refused(void **state)
{
    char spec[400], path[LP_UNIX_PATH_MAX + 1], err[160];
    struct lp_forward fw;
    (void)state;

    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[LP_UNIX_PATH_MAX - 1] = '\0'; /* 107 bytes: fits */
    snprintf(spec, sizeof(spec), "%s:h:1", path);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_OK);
    assert_string_equal(fw.bind_path, path);
    snprintf(spec, sizeof(spec), "1:unix:%s", path);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_OK);
    assert_string_equal(fw.path, path);
    path[LP_UNIX_PATH_MAX - 1] = 'a'; /* 108 bytes: does not */
    path[LP_UNIX_PATH_MAX] = '\0';
    snprintf(spec, sizeof(spec), "%s:h:1", path);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "socket path longer than 107 bytes");
    snprintf(spec, sizeof(spec), "1:%s", path);
    assert_int_equal(lp_parse_forward(spec, &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "unix socket target longer than 107 bytes");
    assert_int_equal(lp_parse_dynamic(path, &fw, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "socket path longer than 107 bytes");
}

/* Every prefix of each unix form parses or fails with a message; never reads past the end. */
static void test_cli_unix_forward_every_prefix_fails_cleanly(void **state)
{
    static const char *const specs[] = {"./a.sock:[fd00::5]:22", "[::1]:8080:unix:/run/x.sock",
                                        "/a.sock:unix:/b.sock"};
    (void)state;
    for (size_t k = 0; k < sizeof(specs) / sizeof(specs[0]); k++) {
        size_t len = strlen(specs[k]);
        for (size_t n = 0; n <= len; n++) {
            char *copy = strndup(specs[k], n); /* heap, exact size: ASan sees any over-read */
            struct lp_forward fw;
            char err[160] = "";
            assert_non_null(copy);
            if (lp_parse_forward(copy, &fw, err, sizeof(err)) != LP_OK && err[0] == '\0')
                fail_msg("%s: refused without a reason", copy);
            free(copy);
        }
    }
}

static void test_cli_dynamic_takes_a_unix_path_and_transparent_does_not(void **state)
{
    struct lp_forward fw;
    struct lp_cli cli;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;

    assert_int_equal(lp_parse_dynamic("/run/socks.sock", &fw, err, sizeof(err)), LP_OK);
    assert_string_equal(fw.bind_path, "/run/socks.sock");
    assert_int_equal(lp_parse_dynamic("./s:1", &fw, err, sizeof(err)), LP_OK); /* the whole spec */
    assert_string_equal(fw.bind_path, "./s:1");
    assert_int_equal(PARSE(&cli, err, "client", "-D", "./socks.sock", "-L", "/a.sock:h:1", "-L",
                           "2:unix:/b.sock"),
                     LP_OK);
    assert_int_equal(cli.n_forwards, 3);
    assert_int_equal(cli.forwards[0].kind, LP_FWD_DYNAMIC);
    assert_string_equal(cli.forwards[0].bind_path, "./socks.sock");
    assert_string_equal(cli.forwards[1].bind_path, "/a.sock");
    assert_string_equal(cli.forwards[2].path, "/b.sock");
    lp_cli_free(&cli);
    EXPECT_ERROR("-T /run/t.sock: takes PORT or BIND:PORT, not a unix socket path", "client", "-T",
                 "/run/t.sock");
    EXPECT_ERROR("-R /a.sock:h:1: the server listens on TCP only: BIND:PORT, not a unix path",
                 "client", "-R", "/a.sock:h:1");
    assert_int_equal(lp_parse_fwd_spec(LP_FWD_REMOTE, "80:unix:/b.sock", &fw, err, sizeof(err)),
                     LP_OK);
    assert_string_equal(fw.path, "/b.sock"); /* -R to a unix socket here is fine */
    assert_int_equal(lp_parse_fwd_spec(LP_FWD_TRANSPARENT, "[::1]:12345", &fw, err, sizeof(err)),
                     LP_OK);
    assert_int_equal(fw.kind, LP_FWD_TRANSPARENT);
    assert_string_equal(fw.bind_host, "::1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_without_command_points_at_help),
        cmocka_unit_test(test_cli_global_help_and_version),
        cmocka_unit_test(test_cli_unknown_command_is_refused),
        cmocka_unit_test(test_cli_subcommand_help_names_the_page),
        cmocka_unit_test(test_cli_server_reads_every_flag),
        cmocka_unit_test(test_cli_client_reads_every_flag),
        cmocka_unit_test(test_cli_long_forms_take_separate_or_attached_values),
        cmocka_unit_test(test_cli_short_flags_bundle),
        cmocka_unit_test(test_cli_double_dash_ends_options),
        cmocka_unit_test(test_cli_flag_of_the_other_subcommand_is_refused),
        cmocka_unit_test(test_cli_unknown_flag_names_flag_and_command),
        cmocka_unit_test(test_cli_missing_value_names_flag),
        cmocka_unit_test(test_cli_bad_values_name_flag_and_value),
        cmocka_unit_test(test_cli_error_after_forwards_leaves_nothing_to_free),
        cmocka_unit_test(test_cli_forward_spec_valid_table),
        cmocka_unit_test(test_cli_forward_spec_invalid_table),
        cmocka_unit_test(test_cli_dynamic_spec_takes_port_or_bind_and_port),
        cmocka_unit_test(test_cli_remote_and_transparent_forwards_keep_their_kind_and_order),
        cmocka_unit_test(test_cli_forward_spec_every_prefix_fails_cleanly),
        cmocka_unit_test(test_cli_unix_forward_forms_table),
        cmocka_unit_test(test_cli_unix_forward_errors_table),
        cmocka_unit_test(test_cli_unix_paths_longer_than_sun_path_are_refused),
        cmocka_unit_test(test_cli_unix_forward_every_prefix_fails_cleanly),
        cmocka_unit_test(test_cli_dynamic_takes_a_unix_path_and_transparent_does_not),
        cmocka_unit_test(test_cli_forward_host_longer_than_field_is_refused),
        cmocka_unit_test(test_cli_hostport_table),
        cmocka_unit_test(test_cli_hostport_respects_host_buffer),
        cmocka_unit_test(test_cli_usage_pages_list_flags_exit_codes_and_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
