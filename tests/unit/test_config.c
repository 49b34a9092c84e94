/* test_config.c — defaults, the example files, every key by file and by -o, every error's
 * exact text and position, the value parsers, and the cross-key checks of lp_config_finish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "limpet/cli.h"
#include "limpet/config.h"
#include "limpet/config_load.h"
#include "limpet/fingerprint.h"
#include "limpet/frame.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* ---- helpers ------------------------------------------------------------------------------ */

static lp_err load(struct lp_config *c, const char *yaml, char *err)
{
    err[0] = '\0';
    return lp_config_load_string(c, "t.yaml", yaml, strlen(yaml), err, LP_CONFIG_ERR_MAX);
}

/* Loads yaml over the defaults, expects failure with exactly `want`, and checks that the
 * failed load changed nothing. */
static void expect_load_error(const char *yaml, const char *want)
{
    struct lp_config c, before;
    char err[LP_CONFIG_ERR_MAX];

    lp_config_defaults(&c);
    before = c;
    assert_int_equal(load(&c, yaml, err), LP_ERR_INVALID);
    assert_string_equal(err, want);
    assert_memory_equal(&c, &before, sizeof(c));
    lp_config_clear(&c);
}

static void expect_set_error(const char *arg, const char *want)
{
    struct lp_config c, before;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    before = c;
    assert_int_equal(lp_config_set(&c, arg, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, want);
    assert_memory_equal(&c, &before, sizeof(c));
}

/* The field behind each key, written out by hand (not from config.c's table) so that a
 * table row pointing at the wrong field is caught. Strings and bools come back as 0/1. */
static uint64_t field(const struct lp_config *c, const char *key)
{
    static const struct {
        const char *key;
        size_t off;
        int kind; /* 0 lp_time, 1 size_t, 2 bool, 3 int */
    } f[] = {
        {"insecure", offsetof(struct lp_config, insecure), 2},
        {"log.level", offsetof(struct lp_config, log_level), 3},
        {"log.format", offsetof(struct lp_config, log_format), 3},
        {"session.heartbeat", offsetof(struct lp_config, session.heartbeat), 0},
        {"session.dead_after", offsetof(struct lp_config, session.dead_after), 0},
        {"session.ttl", offsetof(struct lp_config, session.ttl), 0},
        {"session.replay_buffer", offsetof(struct lp_config, session.replay_buffer), 1},
        {"session.receive_buffer", offsetof(struct lp_config, session.receive_buffer), 1},
        {"session.stream_window", offsetof(struct lp_config, session.stream_window), 1},
        {"session.stream_window_max", offsetof(struct lp_config, session.stream_window_max), 1},
        {"session.ack_every", offsetof(struct lp_config, session.ack_every), 1},
        {"session.ack_delay", offsetof(struct lp_config, session.ack_delay), 0},
        {"session.max_streams", offsetof(struct lp_config, session.max_streams), 1},
        {"reconnect.initial_delay", offsetof(struct lp_config, reconnect.initial_delay), 0},
        {"reconnect.max_delay", offsetof(struct lp_config, reconnect.max_delay), 0},
        {"reconnect.give_up_after", offsetof(struct lp_config, reconnect.give_up_after), 0},
        {"reconnect.connect_timeout", offsetof(struct lp_config, reconnect.connect_timeout), 0},
        {"forward.connect_timeout", offsetof(struct lp_config, forward.connect_timeout), 0},
        {"forward.reverse_wait", offsetof(struct lp_config, forward.reverse_wait), 0},
        {"limits.handshake_timeout", offsetof(struct lp_config, limits.handshake_timeout), 0},
        {"limits.max_sessions", offsetof(struct lp_config, limits.max_sessions), 1},
        {"limits.max_pending", offsetof(struct lp_config, limits.max_pending), 1},
        {"limits.max_pending_per_source", offsetof(struct lp_config, limits.max_pending_per_source),
         1},
        {"limits.sessions_per_identity", offsetof(struct lp_config, limits.sessions_per_identity),
         1},
        {"limits.streams_per_identity", offsetof(struct lp_config, limits.streams_per_identity), 1},
        {"limits.session_memory", offsetof(struct lp_config, limits.session_memory), 1},
        {"limits.memory", offsetof(struct lp_config, limits.memory), 1},
        {"mcp.max_sessions", offsetof(struct lp_config, mcp.max_sessions), 1},
        {"mcp.sessions_per_identity", offsetof(struct lp_config, mcp.sessions_per_identity), 1},
        {"mcp.idle_timeout", offsetof(struct lp_config, mcp.idle_timeout), 0},
        {"mcp.max_message", offsetof(struct lp_config, mcp.max_message), 1},
        {"mcp.stop_grace", offsetof(struct lp_config, mcp.stop_grace), 0},
        {"upgrade.check_timeout", offsetof(struct lp_config, upgrade.check_timeout), 0},
        {"tls.record_layer", offsetof(struct lp_config, tls.record_layer), 3},
        {"tls.rekey_after", offsetof(struct lp_config, tls.rekey_after), 1},
        {"metrics.allow_remote", offsetof(struct lp_config, metrics.allow_remote), 2},
    };
    const char *base = (const char *)c;

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (strcmp(f[i].key, key) != 0)
            continue;
        if (f[i].kind == 0)
            return *(const lp_time *)(const void *)(base + f[i].off);
        if (f[i].kind == 1)
            return *(const size_t *)(const void *)(base + f[i].off);
        if (f[i].kind == 2)
            return *(const bool *)(const void *)(base + f[i].off);
        return (uint64_t) * (const int *)(const void *)(base + f[i].off);
    }
    fail_msg("no field for key %s", key);
    return 0;
}

/* One non-default value for every key, with what it must store. */
static const struct key_case {
    const char *key;
    const char *value;
    uint64_t want;        /* for non-string keys */
    const char *want_str; /* for string keys */
} key_cases[] = {
    {"listen", "\"[::1]:9000\"", 0, "[::1]:9000"},
    {"server", "tunnel.example.net:7443", 0, "tunnel.example.net:7443"},
    {"insecure", "true", 1, NULL},
    {"log.level", "debug", LP_LOG_DEBUG, NULL},
    {"log.format", "json", 1, NULL},
    {"session.heartbeat", "250ms", 250, NULL},
    {"session.dead_after", "7s", 7000, NULL},
    {"session.ttl", "1h", 3600000, NULL},
    {"session.replay_buffer", "1MiB", MIB, NULL},
    {"session.receive_buffer", "512KiB", 512 * KIB, NULL},
    {"session.stream_window", "2MiB", 2 * MIB, NULL},
    {"session.stream_window_max", "32MiB", 32 * MIB, NULL},
    {"session.ack_every", "2048", 2048, NULL},
    {"session.ack_delay", "5ms", 5, NULL},
    {"session.max_streams", "10", 10, NULL},
    {"reconnect.initial_delay", "50ms", 50, NULL},
    {"reconnect.max_delay", "1m", 60000, NULL},
    {"reconnect.give_up_after", "2d", 2ull * 86400000, NULL},
    {"reconnect.connect_timeout", "3s", 3000, NULL},
    {"forward.connect_timeout", "45s", 45000, NULL},
    {"forward.reverse_wait", "0s", 0, NULL},
    {"limits.handshake_timeout", "4s", 4000, NULL},
    {"limits.max_sessions", "99", 99, NULL},
    {"limits.max_pending", "100000", 100000, NULL},
    {"limits.max_pending_per_source", "1", 1, NULL},
    {"limits.sessions_per_identity", "3", 3, NULL},
    {"limits.streams_per_identity", "1000000", 1000000, NULL},
    {"limits.session_memory", "2GiB", 2 * GIB, NULL},
    {"limits.memory", "1024GiB", 1024 * GIB, NULL},
    {"mcp.max_sessions", "7", 7, NULL},
    {"mcp.sessions_per_identity", "2", 2, NULL},
    {"mcp.idle_timeout", "30s", 30000, NULL},
    {"mcp.max_message", "1KiB", KIB, NULL},
    {"mcp.stop_grace", "250ms", 250, NULL},
    {"tls.cert", "/etc/limpet/server.crt", 0, "/etc/limpet/server.crt"},
    {"tls.key", "server.key", 0, "server.key"},
    {"tls.record_layer", "mbedtls", 1, NULL},
    {"tls.rekey_after", "1MiB", MIB, NULL},
    {"identity", "Lap-top_1.x", 0, "Lap-top_1.x"},
    {"psk_file", "\"my laptop.psk\"", 0, "my laptop.psk"},
    {"server_fingerprint",
     "\"SHA256:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:"
     "01:23:45:67:89\"",
     0, "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"},
    {"control.path", "/run/user/1000/limpet/x.sock", 0, "/run/user/1000/limpet/x.sock"},
    {"metrics.listen", "\"[::1]:9464\"", 0, "[::1]:9464"},
    {"metrics.allow_remote", "true", 1, NULL},
    {"upgrade.binary", "/usr/local/bin/limpet", 0, "/usr/local/bin/limpet"},
    {"upgrade.check_timeout", "90s", 90000, NULL},
    {"tls.sni", "tunnel.example.net", 0, "tunnel.example.net"},
    {"node.id", "edge-3", 0, "edge-3"},
    {"proxy_protocol.listen", "127.0.0.1:7071", 0, "127.0.0.1:7071"},
    {"proxy_protocol.trusted", "\"127.0.0.1, 198.51.100.0/24 ::1\"", 0,
     "127.0.0.1, 198.51.100.0/24 ::1"},
};
#define KEY_CASES (sizeof(key_cases) / sizeof(key_cases[0]))

/* The string field behind a key, by hand as in field(). */
static const char *str_field(const struct lp_config *c, const char *key)
{
    const struct {
        const char *key;
        const char *field;
    } f[] = {
        {"listen", c->listen},
        {"server", c->server},
        {"tls.cert", c->tls.cert},
        {"tls.key", c->tls.key},
        {"identity", c->identity},
        {"psk_file", c->psk_file},
        {"server_fingerprint", c->server_fingerprint},
        {"control.path", c->control.path},
        {"metrics.listen", c->metrics.listen},
        {"upgrade.binary", c->upgrade.binary},
        {"tls.sni", c->tls.sni},
        {"node.id", c->node.id},
        {"proxy_protocol.listen", c->proxy_protocol.listen},
        {"proxy_protocol.trusted", c->proxy_protocol.trusted},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        if (strcmp(f[i].key, key) == 0)
            return f[i].field;
    fail_msg("no string field for key %s", key);
    return "";
}

static void check_key_case(const struct lp_config *c, const struct key_case *k)
{
    if (k->want_str == NULL)
        assert_int_equal(field(c, k->key), k->want);
    else
        assert_string_equal(str_field(c, k->key), k->want_str);
}

static void check_defaults(const struct lp_config *c)
{
    assert_string_equal(c->listen, "0.0.0.0:7070");
    assert_string_equal(c->server, "127.0.0.1:7070");
    assert_false(c->insecure);
    assert_int_equal(c->log_level, LP_LOG_INFO);
    assert_int_equal(c->session.heartbeat, 2000);
    assert_int_equal(c->session.dead_after, 0);
    assert_int_equal(c->session.ttl, 600000);
    assert_int_equal(c->session.replay_buffer, 8 * MIB);
    assert_int_equal(c->session.receive_buffer, 16 * MIB);
    assert_int_equal(c->session.stream_window, 1 * MIB);
    assert_int_equal(c->session.stream_window_max, 4 * MIB);
    assert_int_equal(c->session.ack_every, 64 * KIB);
    assert_int_equal(c->session.ack_delay, 20);
    assert_int_equal(c->session.max_streams, 1024);
    assert_int_equal(c->reconnect.initial_delay, 100);
    assert_int_equal(c->reconnect.max_delay, 5000);
    assert_int_equal(c->reconnect.give_up_after, 0);
    assert_int_equal(c->reconnect.connect_timeout, 10000);
    assert_int_equal(c->forward.connect_timeout, 30000);
    assert_int_equal(c->limits.handshake_timeout, 10000);
    assert_int_equal(c->limits.max_sessions, 1024);
    assert_int_equal(c->limits.max_pending, 256);
    assert_int_equal(c->limits.max_pending_per_source, 16);
    assert_int_equal(c->limits.sessions_per_identity, 16);
    assert_int_equal(c->limits.streams_per_identity, 4096);
    assert_int_equal(c->limits.session_memory, 48 * MIB);
    assert_int_equal(c->limits.memory, GIB);
    assert_string_equal(c->tls.cert, "");
    assert_string_equal(c->tls.key, "");
    assert_int_equal(c->tls.record_layer, 0); /* openssl */
    assert_int_equal(c->tls.rekey_after, GIB);
    assert_string_equal(c->identity, "");
    assert_string_equal(c->psk_file, "");
    assert_string_equal(c->server_fingerprint, "");
    assert_string_equal(c->control.path, "");
    assert_string_equal(c->metrics.listen, "");
    assert_false(c->metrics.allow_remote);
    assert_string_equal(c->upgrade.binary, "");
    assert_null(c->auth.clients);
    assert_int_equal(c->auth.n_clients, 0);
}

/* The keys that are unset by default, copied from src: an example file may only mention
 * them in comments, so loading it over garbage leaves them garbage. */
static void copy_optional(struct lp_config *dst, const struct lp_config *src)
{
    memcpy(dst->tls.cert, src->tls.cert, sizeof(dst->tls.cert));
    memcpy(dst->tls.key, src->tls.key, sizeof(dst->tls.key));
    memcpy(dst->identity, src->identity, sizeof(dst->identity));
    memcpy(dst->psk_file, src->psk_file, sizeof(dst->psk_file));
    memcpy(dst->server_fingerprint, src->server_fingerprint, sizeof(dst->server_fingerprint));
    memcpy(dst->control.path, src->control.path, sizeof(dst->control.path));
    memcpy(dst->metrics.listen, src->metrics.listen, sizeof(dst->metrics.listen));
    memcpy(dst->upgrade.binary, src->upgrade.binary, sizeof(dst->upgrade.binary));
    memcpy(dst->tls.sni, src->tls.sni, sizeof(dst->tls.sni));
    dst->node = src->node;
    dst->proxy_protocol = src->proxy_protocol;
    dst->auth = src->auth;
}

/* ---- defaults and example files ---------------------------------------------------------- */

static void test_config_defaults_are_the_documented_values(void **state)
{
    struct lp_config c;
    (void)state;
    memset(&c, 0xa5, sizeof(c));
    lp_config_defaults(&c);
    check_defaults(&c);
}

static void test_config_empty_or_comment_only_input_keeps_defaults(void **state)
{
    static const char *const inputs[] = {
        "", "# nothing\n", "---\n", "---\n...\n", "~\n", "session:\n  # heartbeat: 1s\n", "{}\n"};
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct lp_config c;
        lp_config_defaults(&c);
        assert_int_equal(load(&c, inputs[i], err), LP_OK);
        check_defaults(&c);
    }
}

/* The example files are loaded over a config full of garbage: every key must be present in
 * the file (else its field stays garbage) and set to its default (so comments can't rot). */
static void example_path(char *path, size_t len, const char *rel)
{
    const char *root = getenv("LIMPET_ROOT");
    snprintf(path, len, "%s%s%s", root ? root : "", root ? "/" : "", rel);
}

static void check_example_file(const char *rel)
{
    char path[4096], err[LP_CONFIG_ERR_MAX] = "";
    struct lp_config c, d;

    example_path(path, sizeof(path), rel);
    lp_config_defaults(&d);
    memset(&c, 0xa5, sizeof(c));
    if (lp_config_load_file(&c, path, err, sizeof(err)) != LP_OK)
        fail_msg("%s", err);
    copy_optional(&c, &d);
    check_defaults(&c);
    /* ...and the optional keys stay unset: their examples are commented out. */
    lp_config_defaults(&c);
    assert_int_equal(lp_config_load_file(&c, path, err, sizeof(err)), LP_OK);
    assert_memory_equal(&c, &d, sizeof(c));
    lp_config_clear(&c);
}

/* The commented-out examples ("#key:" or "#  key:", an even indent) must load once
 * uncommented, so that they cannot rot either. Returns the file with them uncommented. */
static char *uncommented_example(const char *rel)
{
    char path[4096], line[1024];
    char *out = NULL;
    size_t len = 0;
    FILE *in, *mem;

    example_path(path, sizeof(path), rel);
    assert_non_null(in = fopen(path, "r"));
    assert_non_null(mem = open_memstream(&out, &len));
    while (fgets(line, sizeof(line), in) != NULL) {
        size_t sp = 0, w = 0;
        if (line[0] == '#') {
            sp = strspn(line + 1, " ");
            w = strspn(line + 1 + sp, "abcdefghijklmnopqrstuvwxyz_-.");
        }
        if (w > 0 && sp % 2 == 0 && line[1 + sp + w] == ':')
            fputs(line + 1, mem);
        else
            fputs(line, mem);
    }
    fclose(in);
    fclose(mem);
    return out;
}

static void test_config_commented_examples_load_when_uncommented(void **state)
{
    char err[LP_CONFIG_ERR_MAX] = "";
    struct lp_config c;
    char *yaml;
    (void)state;

    yaml = uncommented_example("config/server.yaml");
    lp_config_defaults(&c);
    if (load(&c, yaml, err) != LP_OK)
        fail_msg("%s", err);
    assert_string_equal(c.tls.key, "server.key");
    assert_int_equal(c.auth.n_clients, 2);
    assert_string_equal(c.auth.clients[0].name, "laptop");
    assert_int_equal(c.auth.clients[0].n_forward, 4);
    assert_string_equal(c.auth.clients[1].cert_fingerprint + 7,
                        "3f9a00112233445566778899aabbccddeeff00112233445566778899aabbccdd");
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    lp_config_clear(&c);
    free(yaml);

    yaml = uncommented_example("config/client.yaml");
    if (load(&c, yaml, err) != LP_OK)
        fail_msg("%s", err);
    assert_string_equal(c.identity, "laptop");
    assert_string_equal(c.psk_file, "laptop.psk");
    assert_string_equal(c.tls.cert, "laptop.crt");
    assert_string_equal(c.server_fingerprint + 7,
                        "3f9a00112233445566778899aabbccddeeff00112233445566778899aabbccdd");
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    lp_config_clear(&c);
    free(yaml);
}

static void test_config_server_example_lists_every_key_at_its_default(void **state)
{
    (void)state;
    check_example_file("config/server.yaml");
}

static void test_config_client_example_lists_every_key_at_its_default(void **state)
{
    (void)state;
    check_example_file("config/client.yaml");
}

/* The test table covers the whole key table: the help lists exactly these keys. */
static void test_config_key_table_matches_test_table(void **state)
{
    char *text = NULL;
    size_t len = 0, lines = 0;
    FILE *f = open_memstream(&text, &len);
    (void)state;
    assert_non_null(f);
    lp_config_print_keys(f, "");
    fclose(f);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 2 * KEY_CASES); /* "key=default", then its help */
    for (size_t i = 0; i < KEY_CASES; i++) {
        char want[128];
        snprintf(want, sizeof(want), "%s=", key_cases[i].key);
        assert_non_null(strstr(text, want));
    }
    assert_non_null(strstr(text, "session.heartbeat=2s\n"));
    assert_non_null(strstr(text, "session.replay_buffer=8MiB\n"));
    assert_non_null(strstr(text, "(64KiB..1GiB)"));
    free(text);
}

/* ---- several servers: node.id, tls.sni, proxy_protocol ----------------------------------- */

static void test_config_node_id_defaults_to_a_label_from_the_host_name(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;
    lp_config_defaults(&c);
    assert_string_equal(c.node.id, "");
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_true(lp_node_id_ok((const uint8_t *)c.node.id, strlen(c.node.id)));
    /* one that is set stays */
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "node.id=edge-1", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_string_equal(c.node.id, "edge-1");
}

static void test_config_node_id_must_be_a_dns_label(void **state)
{
    (void)state;
    expect_set_error("node.id=Edge.1",
                     "-o node.id: expected a DNS label: 1..63 of a-z, 0-9 and '-', got \"Edge.1\"");
    expect_load_error("node:\n  id: a_b\n", "t.yaml:2:7: node.id: expected a DNS label: 1..63 of "
                                            "a-z, 0-9 and '-', got \"a_b\"");
}

static void test_config_trusted_takes_a_yaml_list_or_commas(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    static const uint8_t lb[4] = {127, 0, 0, 1}, tn[4] = {198, 51, 100, 9},
                         other[4] = {192, 0, 2, 1};
    uint8_t v6[16] = {0};
    v6[15] = 1;
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(load(&c,
                          "proxy_protocol:\n  listen: 127.0.0.1:7071\n"
                          "  trusted: [127.0.0.1, 198.51.100.0/24, \"::1\"]\n",
                          err),
                     LP_OK);
    assert_string_equal(c.proxy_protocol.trusted, "127.0.0.1,198.51.100.0/24,::1");
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(c.proxy_protocol.trusted_list.n, 3);
    assert_true(lp_cidr_list_match(&c.proxy_protocol.trusted_list, 4, lb));
    assert_true(lp_cidr_list_match(&c.proxy_protocol.trusted_list, 4, tn));
    assert_true(lp_cidr_list_match(&c.proxy_protocol.trusted_list, 6, v6));
    assert_false(lp_cidr_list_match(&c.proxy_protocol.trusted_list, 4, other));

    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "proxy_protocol.trusted=10.0.0.0/8,::1", err, sizeof(err)),
                     LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(c.proxy_protocol.trusted_list.n, 2);
}

static void test_config_trusted_refuses_a_bad_entry_and_is_required_with_listen(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;
    expect_set_error("proxy_protocol.trusted=127.0.0.1,10.0.0.0/33",
                     "-o proxy_protocol.trusted: \"10.0.0.0/33\" is not an address or "
                     "ADDRESS/BITS range");
    expect_load_error("proxy_protocol:\n  trusted: [127.0.0.1, lb.example]\n",
                      "t.yaml:2:12: proxy_protocol.trusted: \"lb.example\" is not an address or "
                      "ADDRESS/BITS range");
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "proxy_protocol.listen=127.0.0.1:7071", err, sizeof(err)),
                     LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, "proxy_protocol.trusted: set it with proxy_protocol.listen"));
}

static void test_config_sni_must_be_a_host_name(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX] = "";
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "tls.sni=tunnel example", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_non_null(strstr(err, "tls.sni:"));
}

/* ---- every key, both ways ---------------------------------------------------------------- */

static void test_config_every_key_is_settable_by_option(void **state)
{
    char arg[256], err[LP_CONFIG_ERR_MAX];
    (void)state;
    for (size_t i = 0; i < KEY_CASES; i++) {
        struct lp_config c;
        const char *v = key_cases[i].value;
        lp_config_defaults(&c);
        if (v[0] == '"') /* the YAML quoting is not part of the -o value */
            snprintf(arg, sizeof(arg), "%s=%.*s", key_cases[i].key, (int)strlen(v) - 2, v + 1);
        else
            snprintf(arg, sizeof(arg), "%s=%s", key_cases[i].key, v);
        if (lp_config_set(&c, arg, err, sizeof(err)) != LP_OK)
            fail_msg("%s: %s", arg, err);
        check_key_case(&c, &key_cases[i]);
    }
}

static void test_config_every_key_is_settable_nested_in_a_file(void **state)
{
    char yaml[256], err[LP_CONFIG_ERR_MAX];
    (void)state;
    for (size_t i = 0; i < KEY_CASES; i++) {
        struct lp_config c;
        const char *key = key_cases[i].key, *dot = strchr(key, '.');
        lp_config_defaults(&c);
        if (dot != NULL)
            snprintf(yaml, sizeof(yaml), "%.*s:\n  %s: %s\n", (int)(dot - key), key, dot + 1,
                     key_cases[i].value);
        else
            snprintf(yaml, sizeof(yaml), "%s: %s\n", key, key_cases[i].value);
        if (load(&c, yaml, err) != LP_OK)
            fail_msg("%s", err);
        check_key_case(&c, &key_cases[i]);
    }
}

static void test_config_dotted_keys_work_at_the_top_level(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(load(&c, "session.heartbeat: 1s\nlog.level: warn\n", err), LP_OK);
    assert_int_equal(c.session.heartbeat, 1000);
    assert_int_equal(c.log_level, LP_LOG_WARN);
}

static void test_config_load_keeps_keys_absent_from_the_file(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "session.ttl=1h", err, sizeof(err)), LP_OK);
    assert_int_equal(load(&c, "session:\n  heartbeat: 1s\n", err), LP_OK);
    assert_int_equal(c.session.ttl, 3600000);
    assert_int_equal(c.session.heartbeat, 1000);
}

static void test_config_accepts_flow_style_and_quoted_values(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(load(&c, "{session: {ttl: '5m', max_streams: \"7\"}, insecure: true}", err),
                     LP_OK);
    assert_int_equal(c.session.ttl, 300000);
    assert_int_equal(c.session.max_streams, 7);
    assert_true(c.insecure);
}

/* ---- file errors: exact text, line and column ---------------------------------------------- */

static void test_config_unknown_key_names_position_and_suggests(void **state)
{
    (void)state;
    expect_load_error("listen: \"0.0.0.0:1\"\nsession:\n  hearbeat: 2s\n",
                      "t.yaml:3:3: session.hearbeat: unknown key (did you mean "
                      "session.heartbeat?)");
    expect_load_error("heartbeat: 2s\n",
                      "t.yaml:1:1: heartbeat: unknown key (did you mean session.heartbeat?)");
    expect_load_error("sesion:\n  ttl: 1m\n", "t.yaml:1:1: sesion: unknown key (did you mean "
                                              "session?)");
    expect_load_error("colour: blue\n", "t.yaml:1:1: colour: unknown key");
    expect_load_error("session:\n  ttl: 1m\n  x: {y: 1}\n", "t.yaml:3:3: session.x: unknown key");
}

static void test_config_unknown_key_is_escaped_in_the_message(void **state)
{
    (void)state;
    expect_load_error("\"a\\nb\": 1\n", "t.yaml:1:1: a\\x0ab: unknown key");
}

static void test_config_bad_duration_names_value_position(void **state)
{
    (void)state;
    expect_load_error("session:\n  heartbeat: fast\n",
                      "t.yaml:2:14: session.heartbeat: expected a duration such as 250ms, 5s, "
                      "10m, 24h, got \"fast\"");
    expect_load_error("session:\n  heartbeat: 5\n",
                      "t.yaml:2:14: session.heartbeat: expected a duration such as 250ms, 5s, "
                      "10m, 24h, got \"5\" (say the unit)");
    expect_load_error("session:\n  ttl: 99999999999999999999d\n",
                      "t.yaml:2:8: session.ttl: 99999999999999999999d is above the maximum 30d");
    expect_load_error("session:\n  ttl: 31d\n",
                      "t.yaml:2:8: session.ttl: 31d is above the maximum 30d");
    expect_load_error("session:\n  heartbeat: 5ms\n",
                      "t.yaml:2:14: session.heartbeat: 5ms is below the minimum 10ms");
}

static void test_config_bad_size_names_value_position(void **state)
{
    (void)state;
    expect_load_error("session:\n  replay_buffer: 1KiB\n",
                      "t.yaml:2:18: session.replay_buffer: 1KiB is below the minimum 64KiB");
    expect_load_error("session:\n  replay_buffer: 2GiB\n",
                      "t.yaml:2:18: session.replay_buffer: 2GiB is above the maximum 1GiB");
    expect_load_error("session:\n  stream_window: 64KB\n",
                      "t.yaml:2:18: session.stream_window: expected a size such as 512, 64KiB, "
                      "8MiB, 1GiB, got \"64KB\" (units: B, KiB, MiB, GiB)");
    expect_load_error("session:\n  stream_window: big\n",
                      "t.yaml:2:18: session.stream_window: expected a size such as 512, 64KiB, "
                      "8MiB, 1GiB, got \"big\"");
}

static void test_config_bad_count_bool_level_and_address(void **state)
{
    (void)state;
    expect_load_error("limits:\n  max_sessions: lots\n",
                      "t.yaml:2:17: limits.max_sessions: expected a whole number, got \"lots\"");
    expect_load_error("limits:\n  max_sessions: 0\n",
                      "t.yaml:2:17: limits.max_sessions: 0 is below the minimum 1");
    expect_load_error("session:\n  max_streams: 1000001\n",
                      "t.yaml:2:16: session.max_streams: 1000001 is above the maximum 1000000");
    expect_load_error("insecure: yes\n",
                      "t.yaml:1:11: insecure: expected true or false, got \"yes\"");
    expect_load_error("log:\n  level: loud\n",
                      "t.yaml:2:10: log.level: expected one of error, warn, info, debug, got "
                      "\"loud\"");
    expect_load_error("listen: nowhere\n",
                      "t.yaml:1:9: listen: expected HOST:PORT or [IPV6]:PORT, got \"nowhere\"");
    expect_load_error("server: \"h:0\"\n",
                      "t.yaml:1:9: server: expected HOST:PORT or [IPV6]:PORT, got \"h:0\"");
    expect_load_error("server: \"::1:70\"\n",
                      "t.yaml:1:9: server: expected HOST:PORT or [IPV6]:PORT, got \"::1:70\"");
}

static void test_config_wrong_yaml_type_is_refused(void **state)
{
    (void)state;
    expect_load_error("session:\n  heartbeat:\n    x: 1\n",
                      "t.yaml:3:5: session.heartbeat: expected a duration such as 250ms, 5s, "
                      "10m, 24h, got a mapping");
    expect_load_error("session:\n  heartbeat: [1s, 2s]\n",
                      "t.yaml:2:14: session.heartbeat: expected a duration such as 250ms, 5s, "
                      "10m, 24h, got a list");
    expect_load_error("listen: [\"::1\"]\n",
                      "t.yaml:1:9: listen: expected HOST:PORT or [IPV6]:PORT, got a list "
                      "(quote IPv6 addresses: \"[::1]:7070\")");
    expect_load_error("session: 5s\n",
                      "t.yaml:1:10: session: expected a mapping of session.* keys, got a "
                      "single value");
    expect_load_error("session:\n  - heartbeat: 1s\n",
                      "t.yaml:2:3: session: expected a mapping of session.* keys, got a list");
    expect_load_error("- listen\n", "t.yaml:1:1: expected a mapping of keys (such as \"listen: "
                                    "0.0.0.0:7070\") at the top, got a list");
    expect_load_error("just words\n", "t.yaml:1:1: expected a mapping of keys (such as \"listen: "
                                      "0.0.0.0:7070\") at the top, got a single value");
    expect_load_error("? [a]\n: 1\n", "t.yaml:1:3: a key must be a plain word, got a list");
}

static void test_config_null_value_is_refused(void **state)
{
    (void)state;
    expect_load_error("insecure:\n",
                      "t.yaml:1:10: insecure: missing value (expected true or false)");
    expect_load_error("session:\n  ttl: ~\n",
                      "t.yaml:2:8: session.ttl: missing value (expected a duration such as "
                      "250ms, 5s, 10m, 24h)");
    expect_load_error("log:\n  level: null\n",
                      "t.yaml:2:10: log.level: missing value (expected one of error, warn, info, "
                      "debug)");
}

static void test_config_duplicate_keys_are_refused(void **state)
{
    (void)state;
    expect_load_error("insecure: true\ninsecure: false\n",
                      "t.yaml:2:1: insecure: duplicate key (first set on line 1)");
    expect_load_error("session:\n  ttl: 1m\nsession:\n  heartbeat: 1s\n",
                      "t.yaml:3:1: session: duplicate key (first set on line 1)");
    expect_load_error("session.ttl: 1m\nsession:\n  ttl: 2m\n",
                      "t.yaml:3:3: session.ttl: duplicate key (first set on line 1)");
}

static void test_config_yaml_syntax_error_names_position(void **state)
{
    (void)state;
    expect_load_error("session:\n  heartbeat: 2s\n bad\n",
                      "t.yaml:3:2: syntax error: did not find expected key (while parsing a "
                      "block mapping at line 1)");
    expect_load_error("listen: \"0.0.0.0:1\n",
                      "t.yaml:2:1: syntax error: found unexpected end of stream (while scanning "
                      "a quoted scalar at line 1)");
}

static void test_config_refuses_aliases_and_second_documents(void **state)
{
    (void)state;
    expect_load_error("session:\n  heartbeat: &h 2s\n  ack_delay: *h\n",
                      "t.yaml:3:14: session.ack_delay: expected a duration such as 250ms, 5s, "
                      "10m, 24h, got an alias (aliases are not supported)");
    expect_load_error("insecure: true\n---\ninsecure: false\n",
                      "t.yaml:2:1: only one YAML document is allowed");
}

static void test_config_refuses_bad_bytes(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    static const char yaml[] = "insecure: \xff\n";
    static const char nul[] = "listen: \"a\\0b:1\"\n";
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_load_string(&c, "t.yaml", yaml, sizeof(yaml) - 1, err, sizeof(err)),
                     LP_ERR_INVALID);
    assert_string_equal(err, "t.yaml: byte 10: invalid leading UTF-8 octet");
    expect_load_error(nul,
                      "t.yaml:1:9: listen: expected HOST:PORT or [IPV6]:PORT, got \"a\\x00b:1\"");
}

static void test_config_missing_file_names_path_and_reason(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_load_file(&c, "/nonexistent/limpet.yaml", err, sizeof(err)),
                     LP_ERR_INVALID);
    assert_string_equal(err, "/nonexistent/limpet.yaml: No such file or directory");
}

static void test_config_file_errors_name_the_file(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX], path[] = "/tmp/limpet-test-config-XXXXXX", want[128];
    FILE *f;
    int fd;
    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("# limpet\nsession:\n  heartbeat: soon\n", f);
    fclose(f);
    lp_config_defaults(&c);
    assert_int_equal(lp_config_load_file(&c, path, err, sizeof(err)), LP_ERR_INVALID);
    remove(path);
    snprintf(want, sizeof(want), "%s:3:14: session.heartbeat: expected a duration", path);
    assert_memory_equal(err, want, strlen(want));
}

static void test_config_long_values_are_cut_in_messages(void **state)
{
    char yaml[700], err[LP_CONFIG_ERR_MAX];
    struct lp_config c;
    (void)state;
    memset(yaml, 'x', sizeof(yaml));
    memcpy(yaml, "insecure: ", 10);
    yaml[300] = '\0';
    lp_config_defaults(&c);
    assert_int_equal(load(&c, yaml, err), LP_ERR_INVALID);
    assert_non_null(strstr(err, "xxx...\""));
    assert_true(strlen(err) < 120);
    yaml[300] = 'x';
    yaml[sizeof(yaml) - 1] = '\0';
    assert_int_equal(load(&c, yaml, err), LP_ERR_INVALID);
    assert_string_equal(err, "t.yaml:1:11: insecure: value is too long (689 bytes)");
}

/* Every prefix of a valid file is either valid YAML or a one-line error; never a crash.
 * (Config text has no "truncated" state: a prefix of YAML is usually YAML.) */
static void test_config_every_prefix_of_a_file_loads_or_fails_cleanly(void **state)
{
    static const char yaml[] = "listen: \"[::]:7070\"\nsession:\n  heartbeat: 250ms\n"
                               "  replay_buffer: 1MiB\nlog: {level: debug}\n";
    char err[LP_CONFIG_ERR_MAX];
    size_t ok = 0;
    (void)state;
    for (size_t n = 0; n <= sizeof(yaml) - 1; n++) {
        struct lp_config c;
        lp_config_defaults(&c);
        err[0] = '\0';
        if (lp_config_load_string(&c, "t.yaml", yaml, n, err, sizeof(err)) == LP_OK)
            ok++;
        else
            assert_true(err[0] != '\0' && strchr(err, '\n') == NULL);
    }
    assert_true(ok > 5 && ok < sizeof(yaml));
}

/* ---- -o errors ------------------------------------------------------------------------------- */

static void test_config_option_errors_name_the_key(void **state)
{
    (void)state;
    expect_set_error("session.heartbeat=fast",
                     "-o session.heartbeat: expected a duration such as 250ms, 5s, 10m, 24h, got "
                     "\"fast\"");
    expect_set_error("session.heartbeat=5", "-o session.heartbeat: expected a duration such as "
                                            "250ms, 5s, 10m, 24h, got \"5\" (say the unit)");
    expect_set_error("session.heartbeat",
                     "-o session.heartbeat: expected KEY=VALUE, e.g. -o session.heartbeat=2s");
    expect_set_error("session.hartbeat=1s",
                     "-o session.hartbeat: unknown key (did you mean session.heartbeat?)");
    expect_set_error("session=1s", "-o session: is a section, not a key (e.g. session.heartbeat)");
    expect_set_error("session.ttl=", "-o session.ttl: missing value after '='");
    expect_set_error("session.replay_buffer=1KiB",
                     "-o session.replay_buffer: 1KiB is below the minimum 64KiB");
    expect_set_error("insecure=1", "-o insecure: expected true or false, got \"1\"");
    expect_set_error("=1", "-o : unknown key");
}

static void test_config_option_value_may_contain_equals_sign(void **state)
{
    (void)state;
    expect_set_error("server=a=b:1", "-o server: expected HOST:PORT or [IPV6]:PORT, got \"a=b:1\"");
}

/* ---- issue 4 keys: identities, pins, limits ------------------------------------------------- */

#define HEX32 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* One table, every place a fingerprint is read: the parser the TLS pin check uses
 * (lp_fingerprint_parse), `-o server_fingerprint=`, the YAML server_fingerprint and an
 * identity's cert_fingerprint. They once had different rules (the config let a colon stand
 * between some bytes only); now each must accept and refuse exactly the same values, and the
 * config must store the canonical form. */
static void test_config_fingerprint_has_one_rule_everywhere(void **state)
{
    static const struct {
        const char *value;
        bool ok;
    } cases[] = {
        {"sha256:" HEX32, true},
        {"SHA256:00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF", true},
        {"sha256:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:"
         "bb:cc:dd:ee:ff",
         true},
        {"sha256:0011:2233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"sha256:00:11:2233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"sha256:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:"
         "bb:cc:dd:eeff",
         false},
        {HEX32, false},
        {"sha1:" HEX32, false},
        {"sha256:" HEX32 "00", false},
        {"sha256:" HEX32 ":", false},
        {"sha256::" HEX32, false},
        {"sha256:0:0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"sha256:00::112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"sha256:0g112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddee", false},
        {"sha256: " HEX32, false},
        {"", false},
    };
    char arg[256], yaml[400], err[LP_CONFIG_ERR_MAX];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_config c;
        uint8_t fp[LP_FINGERPRINT_LEN];
        const char *why = NULL;
        lp_err parsed = lp_fingerprint_parse(cases[i].value, fp, &why);
        if ((parsed == LP_OK) != cases[i].ok)
            fail_msg("lp_fingerprint_parse %s: %s", cases[i].value, parsed == LP_OK ? "ok" : why);

        lp_config_defaults(&c);
        snprintf(arg, sizeof(arg), "server_fingerprint=%s", cases[i].value);
        lp_err rc = lp_config_set(&c, arg, err, sizeof(err));
        if ((rc == LP_OK) != cases[i].ok)
            fail_msg("-o %s: %s", cases[i].value, rc == LP_OK ? "accepted" : err);
        assert_string_equal(c.server_fingerprint, rc == LP_OK ? "sha256:" HEX32 : "");

        lp_config_defaults(&c);
        snprintf(yaml, sizeof(yaml), "server_fingerprint: \"%s\"\n", cases[i].value);
        rc = lp_config_load_string(&c, "t.yaml", yaml, strlen(yaml), err, sizeof(err));
        if ((rc == LP_OK) != cases[i].ok)
            fail_msg("yaml %s: %s", cases[i].value, rc == LP_OK ? "accepted" : err);
        assert_string_equal(c.server_fingerprint, rc == LP_OK ? "sha256:" HEX32 : "");

        lp_config_defaults(&c);
        snprintf(yaml, sizeof(yaml), "auth:\n  clients:\n    a:\n      cert_fingerprint: \"%s\"\n",
                 cases[i].value);
        rc = lp_config_load_string(&c, "t.yaml", yaml, strlen(yaml), err, sizeof(err));
        if ((rc == LP_OK) != cases[i].ok)
            fail_msg("auth yaml %s: %s", cases[i].value, rc == LP_OK ? "accepted" : err);
        if (rc == LP_OK)
            assert_string_equal(c.auth.clients[0].cert_fingerprint, "sha256:" HEX32);
        lp_config_clear(&c);
    }
}

static void test_config_identity_and_fingerprint_errors(void **state)
{
    char yaml[200], want[300];
    (void)state;
    expect_load_error("identity: \"lap top\"\n",
                      "t.yaml:1:11: identity: expected a name of 1..64 letters, digits, '.', '_' "
                      "or '-', got \"lap top\"");
    expect_load_error("identity: \"\"\n", "t.yaml:1:11: identity: expected a name of 1..64 "
                                          "letters, digits, '.', '_' or '-', got \"\"");
    memset(want, 'a', 65);
    snprintf(yaml, sizeof(yaml), "identity: %.65s\n", want);
    expect_load_error(yaml, "t.yaml:1:11: identity: expected a name of 1..64 letters, digits, "
                            "'.', '_' or '-', got "
                            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
    expect_set_error("identity=a/b", "-o identity: expected a name of 1..64 letters, digits, '.', "
                                     "'_' or '-', got \"a/b\"");
    expect_load_error("server_fingerprint: \"sha256:AB\"\n",
                      "t.yaml:1:21: server_fingerprint: \"sha256:AB\" has fewer than 32 bytes "
                      "(64 hex digits)");
    expect_set_error("server_fingerprint=AB:CD",
                     "-o server_fingerprint: \"AB:CD\" does not start with \"sha256:\" "
                     "(expected sha256:AB:CD:...)");
    expect_load_error("tls:\n  cert: [a, b]\n",
                      "t.yaml:2:9: tls.cert: expected a string, got a list");
    expect_load_error("tlss:\n  cert: a\n", "t.yaml:1:1: tlss: unknown key (did you mean tls?)");
}

static void test_config_string_keys_are_capped_at_their_field(void **state)
{
    char yaml[400], arg[400], err[LP_CONFIG_ERR_MAX];
    struct lp_config c;
    (void)state;
    memset(arg, 'p', sizeof(arg));
    snprintf(yaml, sizeof(yaml), "psk_file: %.255s\n", arg);
    lp_config_defaults(&c);
    assert_int_equal(load(&c, yaml, err), LP_OK);
    assert_int_equal(strlen(c.psk_file), 255);
    snprintf(yaml, sizeof(yaml), "psk_file: %.256s\n", arg);
    expect_load_error(yaml, "t.yaml:1:11: psk_file: value is too long (256 bytes, at most 255)");
}

static void test_config_option_cannot_set_identities(void **state)
{
    (void)state;
    expect_set_error("auth.clients.laptop.psk_file=x.psk",
                     "-o auth.clients.laptop.psk_file: set identities in the config file");
    expect_set_error("auth=x", "-o auth: set identities in the config file");
    expect_set_error("auth.clients", "-o auth.clients: set identities in the config file");
    expect_set_error("authx=1", "-o authx: unknown key (did you mean auth?)");
    expect_set_error("auth.clients.x=1", "-o auth.clients.x: set identities in the config file");
    expect_set_error("tls=1", "-o tls: is a section, not a key (e.g. tls.cert)");
}

static void test_config_limits_have_ranges(void **state)
{
    (void)state;
    expect_load_error("limits:\n  max_pending: 0\n",
                      "t.yaml:2:16: limits.max_pending: 0 is below the minimum 1");
    expect_set_error("limits.max_pending=100001",
                     "-o limits.max_pending: 100001 is above the maximum 100000");
    expect_set_error("limits.max_pending_per_source=0",
                     "-o limits.max_pending_per_source: 0 is below the minimum 1");
    expect_set_error("limits.sessions_per_identity=1000001",
                     "-o limits.sessions_per_identity: 1000001 is above the maximum 1000000");
    expect_set_error("limits.streams_per_identity=0",
                     "-o limits.streams_per_identity: 0 is below the minimum 1");
    expect_set_error("limits.session_memory=64KiB",
                     "-o limits.session_memory: 64KiB is below the minimum 128KiB");
    expect_set_error("limits.session_memory=3GiB",
                     "-o limits.session_memory: 3GiB is above the maximum 2GiB");
    expect_set_error("limits.memory=512KiB", "-o limits.memory: 512KiB is below the minimum 1MiB");
    expect_set_error("limits.memory=1025GiB",
                     "-o limits.memory: 1025GiB is above the maximum 1024GiB");
}

static void test_config_finish_refuses_buffers_beyond_session_memory(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    /* 8 + 24 + 1024 streams x 16KiB (16) = 48MiB fits exactly */
    assert_int_equal(lp_config_set(&c, "session.receive_buffer=24MiB", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_set(&c, "session.replay_buffer=9MiB", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "limits.session_memory: session.replay_buffer 9MiB + "
                             "session.receive_buffer 24MiB + session.max_streams x 16KiB (16MiB) "
                             "exceed limits.session_memory 48MiB");
    assert_int_equal(lp_config_set(&c, "limits.session_memory=49MiB", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    /* More streams need room for their minimum windows too. */
    assert_int_equal(lp_config_set(&c, "session.max_streams=1025", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_int_equal(lp_config_set(&c, "session.max_streams=1024", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
}

/* The process-wide bound must hold at least one whole session. */
static void test_config_finish_refuses_a_memory_limit_below_one_session(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "limits.memory=32MiB", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "limits.memory: 32MiB is below limits.session_memory 48MiB: not one "
                             "session would fit");
    assert_int_equal(lp_config_set(&c, "limits.memory=48MiB", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
}

static void test_config_finish_wants_tls_cert_and_key_together(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "tls.cert=a.crt", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "tls.key: set together with tls.cert");
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "tls.key=a.key", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "tls.cert: set together with tls.key");
    assert_int_equal(lp_config_set(&c, "tls.cert=a.crt", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
}

/* ---- value parsers -------------------------------------------------------------------------- */

static void test_config_duration_parser_table(void **state)
{
    static const struct {
        const char *s;
        lp_err rc;
        lp_time ms;
    } cases[] = {
        {"250ms", LP_OK, 250},
        {"5s", LP_OK, 5000},
        {"10m", LP_OK, 600000},
        {"24h", LP_OK, 86400000},
        {"7d", LP_OK, 604800000},
        {"0s", LP_OK, 0},
        {"007s", LP_OK, 7000},
        {"9223372036854775807ms", LP_OK, INT64_MAX},
        {"9223372036854775808ms", LP_ERR_INVALID, 0},
        {"106751991167301d", LP_ERR_INVALID, 0},
        {"18446744073709551616ms", LP_ERR_INVALID, 0},
        {"99999999999999999999999999s", LP_ERR_INVALID, 0},
        {"5", LP_ERR_INVALID, 0},
        {"0", LP_ERR_INVALID, 0},
        {"", LP_ERR_INVALID, 0},
        {"s", LP_ERR_INVALID, 0},
        {"5 s", LP_ERR_INVALID, 0},
        {" 5s", LP_ERR_INVALID, 0},
        {"-5s", LP_ERR_INVALID, 0},
        {"+5s", LP_ERR_INVALID, 0},
        {"5sec", LP_ERR_INVALID, 0},
        {"1.5s", LP_ERR_INVALID, 0},
        {"5S", LP_ERR_INVALID, 0},
        {"1h30m", LP_ERR_INVALID, 0},
        {"5s ", LP_ERR_INVALID, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        lp_time ms = 12345;
        lp_err rc = lp_parse_duration(cases[i].s, &ms);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %s", cases[i].s, lp_strerror(rc));
        if (rc == LP_OK)
            assert_int_equal(ms, cases[i].ms);
        else
            assert_int_equal(ms, 12345); /* untouched on failure */
    }
}

static void test_config_size_parser_table(void **state)
{
    static const struct {
        const char *s;
        lp_err rc;
        size_t bytes;
    } cases[] = {
        {"512", LP_OK, 512},
        {"512B", LP_OK, 512},
        {"64KiB", LP_OK, 64 * KIB},
        {"8MiB", LP_OK, 8 * MIB},
        {"1GiB", LP_OK, GIB},
        {"0", LP_OK, 0},
        {"18446744073709551615", LP_OK, SIZE_MAX},
        {"17179869183GiB", LP_OK, 17179869183ull * GIB},
        {"18446744073709551616", LP_ERR_INVALID, 0},
        {"17179869184GiB", LP_ERR_INVALID, 0},
        {"64KB", LP_ERR_INVALID, 0},
        {"64kib", LP_ERR_INVALID, 0},
        {"64K", LP_ERR_INVALID, 0},
        {"1.5MiB", LP_ERR_INVALID, 0},
        {"-1", LP_ERR_INVALID, 0},
        {"", LP_ERR_INVALID, 0},
        {"KiB", LP_ERR_INVALID, 0},
        {"1 KiB", LP_ERR_INVALID, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t bytes = 12345;
        lp_err rc = lp_parse_size(cases[i].s, &bytes);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %s", cases[i].s, lp_strerror(rc));
        if (rc == LP_OK)
            assert_int_equal(bytes, cases[i].bytes);
        else
            assert_int_equal(bytes, 12345);
    }
}

/* ---- lp_config_finish ----------------------------------------------------------------------- */

static void test_config_finish_derives_dead_after_and_give_up(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(c.session.dead_after, 6000);
    assert_int_equal(c.reconnect.give_up_after, 600000);

    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "session.heartbeat=500ms", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_set(&c, "session.ttl=1h", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(c.session.dead_after, 1500);
    assert_int_equal(c.reconnect.give_up_after, 3600000);
}

static void test_config_finish_keeps_explicit_values(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "session.dead_after=3s", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_set(&c, "reconnect.give_up_after=2m", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
    assert_int_equal(c.session.dead_after, 3000);
    assert_int_equal(c.reconnect.give_up_after, 120000);
}

static void test_config_finish_refuses_dead_after_not_above_heartbeat(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "session.dead_after=2s", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "session.dead_after: 2s must exceed session.heartbeat 2s");
}

static void test_config_finish_refuses_initial_delay_above_max_delay(void **state)
{
    struct lp_config c;
    char err[LP_CONFIG_ERR_MAX];
    (void)state;
    lp_config_defaults(&c);
    assert_int_equal(lp_config_set(&c, "reconnect.initial_delay=10s", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_ERR_INVALID);
    assert_string_equal(err, "reconnect.initial_delay: 10s exceeds reconnect.max_delay 5s");
    assert_int_equal(lp_config_set(&c, "reconnect.max_delay=10s", err, sizeof(err)), LP_OK);
    assert_int_equal(lp_config_finish(&c, err, sizeof(err)), LP_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults_are_the_documented_values),
        cmocka_unit_test(test_config_empty_or_comment_only_input_keeps_defaults),
        cmocka_unit_test(test_config_server_example_lists_every_key_at_its_default),
        cmocka_unit_test(test_config_client_example_lists_every_key_at_its_default),
        cmocka_unit_test(test_config_key_table_matches_test_table),
        cmocka_unit_test(test_config_node_id_defaults_to_a_label_from_the_host_name),
        cmocka_unit_test(test_config_node_id_must_be_a_dns_label),
        cmocka_unit_test(test_config_trusted_takes_a_yaml_list_or_commas),
        cmocka_unit_test(test_config_trusted_refuses_a_bad_entry_and_is_required_with_listen),
        cmocka_unit_test(test_config_sni_must_be_a_host_name),
        cmocka_unit_test(test_config_every_key_is_settable_by_option),
        cmocka_unit_test(test_config_every_key_is_settable_nested_in_a_file),
        cmocka_unit_test(test_config_dotted_keys_work_at_the_top_level),
        cmocka_unit_test(test_config_load_keeps_keys_absent_from_the_file),
        cmocka_unit_test(test_config_accepts_flow_style_and_quoted_values),
        cmocka_unit_test(test_config_unknown_key_names_position_and_suggests),
        cmocka_unit_test(test_config_unknown_key_is_escaped_in_the_message),
        cmocka_unit_test(test_config_bad_duration_names_value_position),
        cmocka_unit_test(test_config_bad_size_names_value_position),
        cmocka_unit_test(test_config_bad_count_bool_level_and_address),
        cmocka_unit_test(test_config_wrong_yaml_type_is_refused),
        cmocka_unit_test(test_config_null_value_is_refused),
        cmocka_unit_test(test_config_duplicate_keys_are_refused),
        cmocka_unit_test(test_config_yaml_syntax_error_names_position),
        cmocka_unit_test(test_config_refuses_aliases_and_second_documents),
        cmocka_unit_test(test_config_refuses_bad_bytes),
        cmocka_unit_test(test_config_missing_file_names_path_and_reason),
        cmocka_unit_test(test_config_file_errors_name_the_file),
        cmocka_unit_test(test_config_long_values_are_cut_in_messages),
        cmocka_unit_test(test_config_every_prefix_of_a_file_loads_or_fails_cleanly),
        cmocka_unit_test(test_config_option_errors_name_the_key),
        cmocka_unit_test(test_config_option_value_may_contain_equals_sign),
        cmocka_unit_test(test_config_duration_parser_table),
        cmocka_unit_test(test_config_size_parser_table),
        cmocka_unit_test(test_config_finish_derives_dead_after_and_give_up),
        cmocka_unit_test(test_config_finish_keeps_explicit_values),
        cmocka_unit_test(test_config_finish_refuses_dead_after_not_above_heartbeat),
        cmocka_unit_test(test_config_finish_refuses_initial_delay_above_max_delay),
        cmocka_unit_test(test_config_commented_examples_load_when_uncommented),
        cmocka_unit_test(test_config_fingerprint_has_one_rule_everywhere),
        cmocka_unit_test(test_config_identity_and_fingerprint_errors),
        cmocka_unit_test(test_config_string_keys_are_capped_at_their_field),
        cmocka_unit_test(test_config_option_cannot_set_identities),
        cmocka_unit_test(test_config_limits_have_ranges),
        cmocka_unit_test(test_config_finish_refuses_buffers_beyond_session_memory),
        cmocka_unit_test(test_config_finish_refuses_a_memory_limit_below_one_session),
        cmocka_unit_test(test_config_finish_wants_tls_cert_and_key_together),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
