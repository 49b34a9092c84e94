/* config.c — the key table, value parsers, -o overrides, cross-key checks, and each row
 * described for --help and the manual (cfg_key_doc; config_doc.c prints them).
 *
 * Everything about a key lives in one row of `keys[]`: its dotted name, type, field, range and
 * help. The YAML loader (config_yaml.c) reaches the table only through config_internal.h.
 */
#include "limpet/cidr.h"
#include "limpet/config.h"
#include "limpet/config_load.h"
#include "limpet/frame.h"
#include "limpet/fingerprint.h"
#include "limpet/mux.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config_internal.h"
#include "limpet/fwdspec.h"

#define VALUE_MAX 512u /* longest scalar value accepted */

#define MS(n) ((uint64_t)(n))
#define SEC(n) (MS(n) * 1000u)
#define MINUTE(n) (SEC(n) * 60u)
#define HOUR(n) (MINUTE(n) * 60u)
#define DAY(n) (HOUR(n) * 24u)
#define KIB(n) ((uint64_t)(n) << 10)
#define MIB(n) ((uint64_t)(n) << 20)
#define GIB(n) ((uint64_t)(n) << 30)

enum key_type {
    T_DURATION,
    T_SIZE,
    T_COUNT,
    T_BOOL,
    T_STRING,
    T_ADDRESS,
    T_LOG_LEVEL,
    T_LOG_FORMAT,
    T_RECORD_LAYER,
    T_IDENTITY,
    T_FINGERPRINT,
    T_NODE_ID,
    T_CIDR_LIST
};

struct cfg_key {
    const char *name; /* dotted path */
    enum key_type type;
    size_t offset;     /* of the field in struct lp_config; its C type follows `type` */
    uint64_t min, max; /* inclusive, for durations (ms), sizes (bytes) and counts; for text
                          keys max is the field's size, so a row can't overrun its array */
    const char *help;
};

/* The field's C type is checked at compile time: a row pointing a duration at a size_t
 * field (on ILP32) or a bool at an int fails to build. Kept unformatted: one row, one line. */
/* clang-format off */
#define FIELD(f, T) _Generic(((struct lp_config *)0)->f, T: offsetof(struct lp_config, f))
#define DURATION(k, f, lo, hi, h) { k, T_DURATION, FIELD(f, lp_time), lo, hi, h }
#define SIZE(k, f, lo, hi, h) { k, T_SIZE, FIELD(f, size_t), lo, hi, h }
#define COUNT(k, f, lo, hi, h) { k, T_COUNT, FIELD(f, size_t), lo, hi, h }
#define BOOL(k, f, h) { k, T_BOOL, FIELD(f, bool), 0, 1, h }
#define TEXT(k, t, f, h) { k, t, FIELD(f, char *), 0, sizeof(((struct lp_config *)0)->f), h }
#define ADDRESS(k, f, h) TEXT(k, T_ADDRESS, f, h)
#define STRING(k, f, h) TEXT(k, T_STRING, f, h)
#define LOG_LEVEL(k, f, h) { k, T_LOG_LEVEL, FIELD(f, int), LP_LOG_ERROR, LP_LOG_DEBUG, h }
#define LOG_FORMAT(k, f, h) { k, T_LOG_FORMAT, FIELD(f, int), 0, 1, h }
#define RECORD_LAYER(k, f, h) { k, T_RECORD_LAYER, FIELD(f, int), 0, 1, h }
/* clang-format on */

static const struct cfg_key keys[] = {
    ADDRESS("listen", listen, "server: where to accept tunnels"),
    ADDRESS("server", server, "client: the server to dial"),
    BOOL("insecure", insecure, "plain TCP, no TLS, no authentication (loopback tests only)"),
    DURATION("session.heartbeat", session.heartbeat, MS(10), MINUTE(10),
             "PING interval on an idle link"),
    DURATION("session.dead_after", session.dead_after, 0, HOUR(1),
             "declare the link dead after this much silence; 0 = 3 x heartbeat"),
    DURATION("session.ttl", session.ttl, SEC(1), DAY(30),
             "how long the server keeps a detached session"),
    SIZE("session.replay_buffer", session.replay_buffer, KIB(64), GIB(1),
         "unacknowledged bytes kept for replay, per session"),
    SIZE("session.receive_buffer", session.receive_buffer, KIB(64), GIB(1),
         "received bytes buffered before the local sockets take them"),
    SIZE("session.stream_window", session.stream_window, KIB(16), MIB(16),
         "flow-control window per stream"),
    SIZE("session.stream_window_max", session.stream_window_max, KIB(16), MIB(64),
         "a busy stream's window grows up to this while the session has room"),
    SIZE("session.ack_every", session.ack_every, KIB(1), MIB(16),
         "acknowledge after this many bytes"),
    DURATION("session.ack_delay", session.ack_delay, MS(1), SEC(10),
             "acknowledge at the latest after this long"),
    COUNT("session.max_streams", session.max_streams, 1, 1000000, "open streams per session"),
    DURATION("reconnect.initial_delay", reconnect.initial_delay, MS(1), MINUTE(1),
             "first backoff cap after a drop"),
    DURATION("reconnect.max_delay", reconnect.max_delay, MS(1), HOUR(1),
             "largest backoff between attempts"),
    DURATION("reconnect.give_up_after", reconnect.give_up_after, 0, DAY(30),
             "stop reconnecting after this long; 0 = session.ttl"),
    DURATION("reconnect.connect_timeout", reconnect.connect_timeout, MS(1), HOUR(1),
             "time allowed for one dial and handshake"),
    DURATION("forward.connect_timeout", forward.connect_timeout, MS(1), HOUR(1),
             "how long a local connection waits for the tunnel or the target"),
    DURATION("forward.reverse_wait", forward.reverse_wait, 0, HOUR(1),
             "server: how long a -R connection waits for a detached client; 0 = refuse"),
    DURATION("limits.handshake_timeout", limits.handshake_timeout, MS(1), HOUR(1),
             "server: time a new link has to say HELLO"),
    COUNT("limits.max_sessions", limits.max_sessions, 1, 1000000,
          "server: live sessions kept, attached or detached"),
    COUNT("limits.max_pending", limits.max_pending, 1, 100000,
          "server: connections not yet authenticated, in total"),
    COUNT("limits.max_pending_per_source", limits.max_pending_per_source, 1, 100000,
          "server: connections not yet authenticated, per IPv4 address or IPv6 /64"),
    COUNT("limits.sessions_per_identity", limits.sessions_per_identity, 1, 1000000,
          "server: live sessions one client identity may hold"),
    COUNT("limits.streams_per_identity", limits.streams_per_identity, 1, 1000000,
          "server: open streams one identity may hold over all its sessions"),
    SIZE("limits.session_memory", limits.session_memory, KIB(128), GIB(2),
         "bytes buffered per session: replay_buffer + receive_buffer must fit"),
    SIZE("limits.memory", limits.memory, MIB(1), GIB(1024),
         "server: bytes buffered for peers by the whole process; at it new sessions and "
         "streams are refused and MCP lines needing more room wait"),
    COUNT("mcp.max_sessions", mcp.max_sessions, 1, 100000,
          "server: MCP server processes kept in the pool"),
    COUNT("mcp.sessions_per_identity", mcp.sessions_per_identity, 1, 100000,
          "server: one identity's share of the pool: at it, its own least recently used "
          "detached process goes first, never another identity's"),
    DURATION("mcp.idle_timeout", mcp.idle_timeout, SEC(1), DAY(30),
             "server: a detached MCP session's process is stopped after this"),
    SIZE("mcp.max_message", mcp.max_message, KIB(1), GIB(1),
         "longest JSON-RPC message (one line) accepted"),
    DURATION("mcp.stop_grace", mcp.stop_grace, MS(10), MINUTE(10),
             "server: wait after closing an MCP server's stdin, then after SIGTERM"),
    STRING("tls.cert", tls.cert, "certificate file (PEM); set with tls.key"),
    STRING("tls.key", tls.key, "private key file of tls.cert (mode 0600)"),
    RECORD_LAYER("tls.record_layer", tls.record_layer,
                 "who seals the records after the handshake: openssl (libcrypto, fast) or mbedtls"),
    SIZE("tls.rekey_after", tls.rekey_after, KIB(64), GIB(64),
         "bytes one way before the client replaces the link by a new handshake"),
    STRING("tls.sni", tls.sni,
           "client: TLS server name of a first connection; unset = the host part of server; "
           "a resume sends NODE.NAME so a balancer routes it home"),
    TEXT("node.id", T_NODE_ID, node.id,
         "server: this node's id, told to clients in WELCOME (1..63 of a-z, 0-9, '-'); "
         "unset = the host name, lowercased, other characters as '-'"),
    ADDRESS("proxy_protocol.listen", proxy_protocol.listen,
            "server: a second tunnel listener for a balancer: every connection must come from "
            "proxy_protocol.trusted and start with a PROXY v2 header; unset = off"),
    TEXT("proxy_protocol.trusted", T_CIDR_LIST, proxy_protocol.trusted,
         "server: balancers allowed on proxy_protocol.listen: addresses or ADDR/BITS ranges, "
         "IPv4 or IPv6, a list (or separated by commas)"),
    TEXT("identity", T_IDENTITY, identity, "client: the name the server knows this client by"),
    STRING("psk_file", psk_file, "client: pre-shared key file (64 hex digits, mode 0600)"),
    TEXT("server_fingerprint", T_FINGERPRINT, server_fingerprint,
         "client: the server certificate's SHA-256 pin, \"sha256:AB:CD:...\""),
    LOG_LEVEL("log.level", log_level, "error, warn, info or debug"),
    LOG_FORMAT("log.format", log_format, "text (one line per event) or json (one object per line)"),
    STRING("control.path", control.path,
           "`limpet status` socket (mode 0600); unset = per user, see `limpet status --help`"),
    ADDRESS("metrics.listen", metrics.listen,
            "Prometheus page at http://ADDR:PORT/metrics; unset = off; a loopback address only, "
            "unless metrics.allow_remote"),
    BOOL("metrics.allow_remote", metrics.allow_remote,
         "let metrics.listen take a non-loopback address (the page has no authentication)"),
    STRING("upgrade.binary", upgrade.binary,
           "server: the binary SIGUSR2 upgrades to in place; unset = the one it was started from"),
    DURATION("upgrade.check_timeout", upgrade.check_timeout, SEC(1), MINUTE(10),
             "server: how long `BINARY server --check-upgrade` may take; after it the check is "
             "killed and the upgrade refused"),
};
#define KEY_COUNT (sizeof(keys) / sizeof(keys[0]))
_Static_assert(KEY_COUNT <= CFG_KEYS_MAX, "the loader's seen-key bitmap is one uint64_t");

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};
static const char *const layer_names[] = {"openssl", "mbedtls"}; /* enum lp_tls_layer */

struct unit {
    const char *name;
    uint64_t scale;
};
static const struct unit duration_units[] = {
    {"ms", 1}, {"s", SEC(1)}, {"m", MINUTE(1)}, {"h", HOUR(1)}, {"d", DAY(1)},
};
static const struct unit size_units[] = {
    {"B", 1}, {"KiB", KIB(1)}, {"MiB", MIB(1)}, {"GiB", GIB(1)}};

void lp_config_defaults(struct lp_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "%s", "0.0.0.0:7070");
    snprintf(c->server, sizeof(c->server), "%s", "127.0.0.1:7070");
    c->insecure = false;
    c->log_level = LP_LOG_INFO;
    c->session.heartbeat = SEC(2);
    c->session.dead_after = 0;
    c->session.ttl = MINUTE(10);
    c->session.replay_buffer = MIB(8);
    c->session.receive_buffer = MIB(16);
    c->session.stream_window = MIB(1);
    c->session.stream_window_max = MIB(4);
    c->session.ack_every = KIB(64);
    c->session.ack_delay = MS(20);
    c->session.max_streams = 1024;
    c->reconnect.initial_delay = MS(100);
    c->reconnect.max_delay = SEC(5);
    c->reconnect.give_up_after = 0;
    c->reconnect.connect_timeout = SEC(10);
    c->forward.connect_timeout = SEC(30);
    c->forward.reverse_wait = SEC(30);
    c->limits.handshake_timeout = SEC(10);
    c->limits.max_sessions = 1024;
    c->limits.max_pending = 256;
    c->limits.max_pending_per_source = 16;
    c->limits.sessions_per_identity = 16;
    c->limits.streams_per_identity = 4096;
    c->mcp.max_sessions = 256;
    c->mcp.sessions_per_identity = 32;
    c->mcp.idle_timeout = MINUTE(10);
    c->mcp.max_message = MIB(16);
    c->mcp.stop_grace = SEC(2);
    c->upgrade.check_timeout = SEC(10);
    c->limits.session_memory = MIB(48);
    /* 1GiB: what a small server (a 2GiB VPS) can give its peers and still run; about 20
     * sessions filled to limits.session_memory, far more as they usually are. */
    c->limits.memory = GIB(1);
    c->tls.record_layer = 0; /* openssl */
    /* ssh's RekeyLimit range; far below AES-GCM's record budget (2^24 full records) */
    c->tls.rekey_after = GIB(1);
}

void cfg_free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void cfg_free_clients(struct lp_auth_client *v, size_t n)
{
    for (size_t i = 0; i < n && v != NULL; i++) {
        cfg_free_list(v[i].forward, v[i].n_forward);
        cfg_free_list(v[i].reverse, v[i].n_reverse);
        cfg_free_list(v[i].mcp, v[i].n_mcp);
    }
    free(v);
}

void cfg_free_servers(struct lp_mcp_server *v, size_t n)
{
    for (size_t i = 0; i < n && v != NULL; i++) {
        free(v[i].command);
        cfg_free_list(v[i].args, v[i].n_args);
        cfg_free_list(v[i].env, v[i].n_env);
        free(v[i].cwd);
    }
    free(v);
}

void lp_config_clear(struct lp_config *c)
{
    cfg_free_clients(c->auth.clients, c->auth.n_clients);
    cfg_free_servers(c->mcp.servers, c->mcp.n_servers);
    for (int k = 0; k < LP_FWD_KINDS; k++)
        cfg_free_list(c->forward.specs[k], c->forward.n_specs[k]);
    lp_config_defaults(c);
}

/* ---- numbers with units --------------------------------------------------------------- */

enum num_problem { NUM_OK, NUM_SYNTAX, NUM_NO_UNIT, NUM_BAD_UNIT, NUM_OVERFLOW };

/* Digits, then one unit from `units` (or none when `bare_scale` is non-zero). */
static enum num_problem parse_scaled(const char *s, const struct unit *units, size_t n_units,
                                     uint64_t bare_scale, uint64_t max, uint64_t *out)
{
    uint64_t v = 0, scale = 0;
    size_t i = 0;

    if (s[0] < '0' || s[0] > '9')
        return NUM_SYNTAX;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NUM_OVERFLOW;
        v = v * 10 + d;
    }
    if (s[i] == '\0')
        scale = bare_scale;
    for (size_t u = 0; u < n_units && scale == 0; u++)
        if (strcmp(s + i, units[u].name) == 0)
            scale = units[u].scale;
    if (scale == 0)
        return s[i] == '\0' ? NUM_NO_UNIT : NUM_BAD_UNIT;
    if (v > max / scale)
        return NUM_OVERFLOW;
    *out = v * scale;
    return NUM_OK;
}

/* Durations stop at INT64_MAX ms so that `now + d` stays far from wrapping. */
static enum num_problem parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_scaled(s, duration_units, sizeof(duration_units) / sizeof(duration_units[0]), 0,
                        INT64_MAX, out);
}

static enum num_problem parse_size_bytes(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, sizeof(size_units) / sizeof(size_units[0]), 1, SIZE_MAX,
                        out);
}

lp_err lp_parse_duration(const char *s, lp_time *out)
{
    uint64_t v;
    if (s == NULL || parse_duration_ms(s, &v) != NUM_OK)
        return LP_ERR_INVALID;
    *out = v;
    return LP_OK;
}

lp_err lp_parse_size(const char *s, size_t *out)
{
    uint64_t v;
    if (s == NULL || parse_size_bytes(s, &v) != NUM_OK)
        return LP_ERR_INVALID;
    *out = (size_t)v;
    return LP_OK;
}

/* The largest unit that divides v exactly, so limits print as "64KiB", "30d", "250ms". */
static void format_scaled(char *buf, size_t len, uint64_t v, const struct unit *units,
                          size_t n_units)
{
    size_t best = 0;
    for (size_t u = 1; u < n_units; u++)
        if (v != 0 && v % units[u].scale == 0)
            best = u;
    if (v == 0 && units == duration_units)
        best = 1; /* "0s" reads better than "0ms" */
    snprintf(buf, len, "%llu%s", (unsigned long long)(v / units[best].scale), units[best].name);
}

static void format_number(char *buf, size_t len, enum key_type t, uint64_t v)
{
    if (t == T_DURATION)
        format_scaled(buf, len, v, duration_units,
                      sizeof(duration_units) / sizeof(duration_units[0]));
    else if (t == T_SIZE)
        format_scaled(buf, len, v, size_units, sizeof(size_units) / sizeof(size_units[0]));
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

/* ---- one value ------------------------------------------------------------------------- */

void cfg_show(char *buf, size_t len, const char *s, size_t n)
{
    size_t o = 0;
    if (len == 0)
        return;
    for (size_t i = 0; i < n && o + 5 < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == CFG_SHOWN_MAX) {
            o += (size_t)snprintf(buf + o, len - o, "...");
            break;
        }
        if (ch == '"' || ch == '\\')
            o += (size_t)snprintf(buf + o, len - o, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    buf[o < len ? o : len - 1] = '\0';
}

static const char *type_wants(enum key_type t)
{
    switch (t) {
    case T_DURATION:
        return "a duration such as 250ms, 5s, 10m, 24h";
    case T_SIZE:
        return "a size such as 512, 64KiB, 8MiB, 1GiB";
    case T_COUNT:
        return "a whole number";
    case T_BOOL:
        return "true or false";
    case T_STRING:
        return "a string";
    case T_ADDRESS:
        return "HOST:PORT or [IPV6]:PORT";
    case T_LOG_LEVEL:
        return "one of error, warn, info, debug";
    case T_LOG_FORMAT:
        return "text or json";
    case T_RECORD_LAYER:
        return "openssl or mbedtls";
    case T_IDENTITY:
        return CFG_IDENTITY_WANTS;
    case T_NODE_ID:
        return "a DNS label: 1..63 of a-z, 0-9 and '-'";
    case T_CIDR_LIST:
        return "addresses or ADDR/BITS ranges (\"127.0.0.1\", \"10.0.0.0/8\", \"::1\")";
    case T_FINGERPRINT:
        return CFG_FINGERPRINT_WANTS;
    }
    return "a value";
}

static lp_err number_problem(const struct cfg_key *k, enum num_problem p, const char *shown,
                             char *msg, size_t len)
{
    char lim[32];
    const char *hint = "";

    if (p == NUM_OVERFLOW) {
        format_number(lim, sizeof(lim), k->type, k->max);
        snprintf(msg, len, "%s is above the maximum %s", shown, lim);
        return LP_ERR_INVALID;
    }
    if (p == NUM_NO_UNIT && k->type == T_DURATION)
        hint = " (say the unit)";
    else if (p == NUM_BAD_UNIT && k->type == T_SIZE)
        hint = " (units: B, KiB, MiB, GiB)";
    snprintf(msg, len, "expected %s, got \"%s\"%s", type_wants(k->type), shown, hint);
    return LP_ERR_INVALID;
}

static lp_err set_number(const struct cfg_key *k, const char *text, const char *shown,
                         struct lp_config *c, char *msg, size_t len)
{
    enum num_problem p;
    uint64_t v = 0;
    char lim[32];
    char *field = (char *)c + k->offset;

    if (k->type == T_DURATION)
        p = parse_duration_ms(text, &v);
    else if (k->type == T_SIZE)
        p = parse_size_bytes(text, &v);
    else
        p = parse_scaled(text, NULL, 0, 1, SIZE_MAX, &v);
    if (p != NUM_OK)
        return number_problem(k, p, shown, msg, len);
    if (v < k->min || v > k->max) {
        format_number(lim, sizeof(lim), k->type, v < k->min ? k->min : k->max);
        snprintf(msg, len, "%s is %s %s", shown,
                 v < k->min ? "below the minimum" : "above the maximum", lim);
        return LP_ERR_INVALID;
    }
    if (k->type == T_DURATION) {
        lp_time t = v;
        memcpy(field, &t, sizeof(t));
    } else {
        size_t z = (size_t)v;
        memcpy(field, &z, sizeof(z));
    }
    return LP_OK;
}

static lp_err set_word(const struct cfg_key *k, const char *text, const char *shown,
                       struct lp_config *c, char *msg, size_t len)
{
    char *field = (char *)c + k->offset;

    if (k->type == T_BOOL) {
        bool b = strcmp(text, "true") == 0;
        if (!b && strcmp(text, "false") != 0)
            goto bad;
        memcpy(field, &b, sizeof(b));
        return LP_OK;
    }
    for (int lvl = LP_LOG_ERROR; lvl <= LP_LOG_DEBUG && k->type == T_LOG_LEVEL; lvl++) {
        if (strcmp(text, level_names[lvl]) == 0) {
            memcpy(field, &lvl, sizeof(lvl));
            return LP_OK;
        }
    }
    for (int f = 0; f < 2 && (k->type == T_LOG_FORMAT || k->type == T_RECORD_LAYER); f++) {
        const char *name = k->type == T_LOG_FORMAT ? format_names[f] : layer_names[f];
        if (strcmp(text, name) == 0) {
            memcpy(field, &f, sizeof(f));
            return LP_OK;
        }
    }
bad:
    snprintf(msg, len, "expected %s, got \"%s\"", type_wants(k->type), shown);
    return LP_ERR_INVALID;
}

/* Names as the server's auth.clients keys them: short, and safe in logs and file names. */
bool cfg_identity_ok(const char *s, size_t n)
{
    if (n == 0 || n > LP_IDENTITY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '.' && ch != '_' && ch != '-')
            return false;
    }
    return true;
}

/* The config stores a fingerprint in its canonical form, so that a pin is compared with strcmp;
 * it reads one with the same parser as the TLS pin check (fingerprint.h). */
bool cfg_fingerprint_canon(const char *s, size_t n, char out[LP_FINGERPRINT_MAX], const char **why)
{
    uint8_t fp[LP_FINGERPRINT_LEN];

    if (lp_fingerprint_parse_n(s, n, fp, why) != LP_OK)
        return false;
    lp_fingerprint_canon(fp, out);
    return true;
}

static lp_err set_text(const struct cfg_key *k, const char *text, const char *shown,
                       struct lp_config *c, char *msg, size_t len)
{
    char host[LP_ADDR_MAX], canon[LP_FINGERPRINT_MAX];
    const char *why = NULL;
    uint16_t port;
    size_t n = strlen(text);
    bool ok = true;

    if (k->type == T_FINGERPRINT && (ok = cfg_fingerprint_canon(text, n, canon, &why))) {
        text = canon;
        n = strlen(canon);
    }
    if (k->type == T_IDENTITY)
        ok = cfg_identity_ok(text, n);
    if (k->type == T_NODE_ID)
        ok = lp_node_id_ok((const uint8_t *)text, n);
    if (k->type == T_CIDR_LIST) {
        static struct lp_cidr_list scratch; /* too big for the stack of a deep call */
        char reason[160];
        if (lp_cidr_list_parse(text, &scratch, reason, sizeof(reason)) != LP_OK) {
            snprintf(msg, len, "%s", reason);
            return LP_ERR_INVALID;
        }
    }
    if (ok && n >= k->max) {
        snprintf(msg, len, "value is too long (%zu bytes, at most %u)", n, (unsigned)k->max - 1);
        return LP_ERR_INVALID;
    }
    if (k->type == T_ADDRESS)
        ok = lp_parse_hostport(text, host, sizeof(host), &port) == LP_OK;
    if (!ok && why != NULL) {
        snprintf(msg, len, "\"%s\" %s", shown, why);
        return LP_ERR_INVALID;
    }
    if (!ok) {
        snprintf(msg, len, "expected %s, got \"%s\"", type_wants(k->type), shown);
        return LP_ERR_INVALID;
    }
    memcpy((char *)c + k->offset, text, n + 1);
    return LP_OK;
}

lp_err cfg_set_value(const struct cfg_key *k, const char *text, size_t n, struct lp_config *c,
                     char *msg, size_t len)
{
    char value[VALUE_MAX];
    char shown[CFG_SHOWN_BUF];

    cfg_show(shown, sizeof(shown), text, n);
    if (n >= sizeof(value)) {
        snprintf(msg, len, "value is too long (%zu bytes)", n);
        return LP_ERR_INVALID;
    }
    if (memchr(text, '\0', n) != NULL) {
        snprintf(msg, len, "expected %s, got \"%s\"", type_wants(k->type), shown);
        return LP_ERR_INVALID;
    }
    memcpy(value, text, n);
    value[n] = '\0';
    switch (k->type) {
    case T_DURATION:
    case T_SIZE:
    case T_COUNT:
        return set_number(k, value, shown, c, msg, len);
    case T_BOOL:
    case T_LOG_LEVEL:
    case T_LOG_FORMAT:
    case T_RECORD_LAYER:
        return set_word(k, value, shown, c, msg, len);
    case T_STRING:
    case T_ADDRESS:
    case T_IDENTITY:
    case T_FINGERPRINT:
    case T_NODE_ID:
    case T_CIDR_LIST:
        return set_text(k, value, shown, c, msg, len);
    }
    return LP_ERR_INVALID;
}

/* ---- key names --------------------------------------------------------------------------- */

const struct cfg_key *cfg_find_key(const char *path)
{
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].name, path) == 0)
            return &keys[i];
    return NULL;
}

size_t cfg_key_index(const struct cfg_key *k)
{
    return (size_t)(k - keys);
}

const char *cfg_key_name(const struct cfg_key *k)
{
    return k->name;
}

const char *cfg_key_name_at(size_t i)
{
    return i < KEY_COUNT ? keys[i].name : NULL;
}

const char *cfg_key_wants(const struct cfg_key *k)
{
    return type_wants(k->type);
}

bool cfg_key_is_address(const struct cfg_key *k)
{
    return k->type == T_ADDRESS;
}

bool cfg_key_is_list(const struct cfg_key *k)
{
    return k->type == T_CIDR_LIST;
}

bool cfg_is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (n > 0 && strncmp(keys[i].name, path, n) == 0 && keys[i].name[n] == '.')
            return true;
    return false;
}

/* The first key inside a section, to show what a key under it looks like. */
static const char *first_in(const char *section)
{
    size_t n = strlen(section);
    for (size_t i = 0; i < KEY_COUNT; i++)
        if (strncmp(keys[i].name, section, n) == 0 && keys[i].name[n] == '.')
            return keys[i].name;
    return section;
}

/* ---- -o KEY=VALUE ------------------------------------------------------------------------ */

lp_err lp_config_set(struct lp_config *c, const char *key_eq_value, char *err, size_t errlen)
{
    char msg[LP_CONFIG_ERR_MAX], shown[CFG_SHOWN_BUF], path[CFG_KEY_MAX];
    const char *eq = strchr(key_eq_value, '=');
    size_t kn = eq ? (size_t)(eq - key_eq_value) : strlen(key_eq_value);
    const struct cfg_key *k = NULL;
    struct lp_config work = *c;

    cfg_show(shown, sizeof(shown), key_eq_value, kn);
    if (kn < sizeof(path)) {
        memcpy(path, key_eq_value, kn);
        path[kn] = '\0';
        k = cfg_find_key(path);
    }
    if (kn >= 4 && strncmp(key_eq_value, "auth", 4) == 0 && (kn == 4 || key_eq_value[4] == '.')) {
        snprintf(msg, sizeof(msg), "set identities in the config file");
        goto fail;
    }
    if (eq == NULL) {
        snprintf(msg, sizeof(msg), "expected KEY=VALUE, e.g. -o session.heartbeat=2s");
        goto fail;
    }
    if (k == NULL && kn < sizeof(path) && cfg_is_section(path)) {
        snprintf(msg, sizeof(msg), "is a section, not a key (e.g. %s)", first_in(path));
        goto fail;
    }
    if (k == NULL) {
        cfg_unknown_key(key_eq_value, kn, msg, sizeof(msg));
        goto fail;
    }
    if (eq[1] == '\0') {
        snprintf(msg, sizeof(msg), "missing value after '='");
        goto fail;
    }
    if (cfg_set_value(k, eq + 1, strlen(eq + 1), &work, msg, sizeof(msg)) != LP_OK)
        goto fail;
    *c = work;
    return LP_OK;
fail:
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "-o %s: %s", shown, msg);
    return LP_ERR_INVALID;
}

/* ---- cross-key checks -------------------------------------------------------------------- */

/* Both buffers are capped at 1GiB each, so their sum cannot wrap even a 32-bit size_t. */
static lp_err finish_security(const struct lp_config *c, char *err, size_t errlen)
{
    char a[32], b[32], m[32], w[32];
    /* Every stream is granted at least LP_MUX_MIN_WINDOW, even once receive_buffer is all
     * granted: that is what lets a new stream move at all, and it must fit too. */
    uint64_t floor = (uint64_t)c->session.max_streams * LP_MUX_MIN_WINDOW;
    uint64_t sum = (uint64_t)c->session.replay_buffer + c->session.receive_buffer + floor;

    if (sum > c->limits.session_memory) {
        format_number(a, sizeof(a), T_SIZE, c->session.replay_buffer);
        format_number(b, sizeof(b), T_SIZE, c->session.receive_buffer);
        format_number(m, sizeof(m), T_SIZE, c->limits.session_memory);
        format_number(w, sizeof(w), T_SIZE, (size_t)LP_MIN(floor, (uint64_t)SIZE_MAX));
        snprintf(err, errlen,
                 "limits.session_memory: session.replay_buffer %s + session.receive_buffer %s "
                 "+ session.max_streams x 16KiB (%s) exceed limits.session_memory %s",
                 a, b, w, m);
        return LP_ERR_INVALID;
    }
    if (c->limits.memory < c->limits.session_memory) {
        format_number(a, sizeof(a), T_SIZE, c->limits.memory);
        format_number(m, sizeof(m), T_SIZE, c->limits.session_memory);
        snprintf(err, errlen,
                 "limits.memory: %s is below limits.session_memory %s: not one session "
                 "would fit",
                 a, m);
        return LP_ERR_INVALID;
    }
    if ((c->tls.cert[0] == '\0') != (c->tls.key[0] == '\0')) {
        snprintf(err, errlen, "%s: set together with %s", c->tls.cert[0] ? "tls.key" : "tls.cert",
                 c->tls.cert[0] ? "tls.cert" : "tls.key");
        return LP_ERR_INVALID;
    }
    return LP_OK;
}

/* The keys that place this server among several behind a balancer (README "Several
 * servers"). */
static lp_err finish_scale_out(struct lp_config *c, char *err, size_t errlen)
{
    char why[160], host[256] = "";

    if (c->node.id[0] == '\0') {
        if (gethostname(host, sizeof(host) - 1) != 0)
            host[0] = '\0';
        lp_node_id_from_host(host, c->node.id);
    }
    for (const char *p = c->tls.sni; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.')) {
            snprintf(err, errlen, "tls.sni: a host name has only letters, digits, '-' and '.'");
            return LP_ERR_INVALID;
        }
    }
    if (lp_cidr_list_parse(c->proxy_protocol.trusted, &c->proxy_protocol.trusted_list, why,
                           sizeof(why)) != LP_OK) {
        snprintf(err, errlen, "proxy_protocol.trusted: %s", why);
        return LP_ERR_INVALID;
    }
    if (c->proxy_protocol.listen[0] != '\0' && c->proxy_protocol.trusted_list.n == 0) {
        snprintf(err, errlen,
                 "proxy_protocol.trusted: set it with proxy_protocol.listen (the balancers' "
                 "addresses): a PROXY header from anyone else is refused");
        return LP_ERR_INVALID;
    }
    return LP_OK;
}

lp_err lp_config_finish(struct lp_config *c, char *err, size_t errlen)
{
    char a[32], b[32];

    if (c->session.dead_after == 0)
        c->session.dead_after = 3 * c->session.heartbeat;
    if (c->reconnect.give_up_after == 0)
        c->reconnect.give_up_after = c->session.ttl;
    if (c->session.dead_after <= c->session.heartbeat) {
        format_number(a, sizeof(a), T_DURATION, c->session.dead_after);
        format_number(b, sizeof(b), T_DURATION, c->session.heartbeat);
        snprintf(err, errlen, "session.dead_after: %s must exceed session.heartbeat %s", a, b);
        return LP_ERR_INVALID;
    }
    if (c->reconnect.initial_delay > c->reconnect.max_delay) {
        format_number(a, sizeof(a), T_DURATION, c->reconnect.initial_delay);
        format_number(b, sizeof(b), T_DURATION, c->reconnect.max_delay);
        snprintf(err, errlen, "reconnect.initial_delay: %s exceeds reconnect.max_delay %s", a, b);
        return LP_ERR_INVALID;
    }
    if (finish_scale_out(c, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    return finish_security(c, err, errlen);
}

/* ---- help -------------------------------------------------------------------------------- */

static void format_value(char *buf, size_t len, const struct cfg_key *k, const struct lp_config *c)
{
    const char *field = (const char *)c + k->offset;
    lp_time t;
    size_t z;
    bool b;
    int lvl;

    switch (k->type) {
    case T_DURATION:
        memcpy(&t, field, sizeof(t));
        format_number(buf, len, k->type, t);
        return;
    case T_SIZE:
    case T_COUNT:
        memcpy(&z, field, sizeof(z));
        format_number(buf, len, k->type, z);
        return;
    case T_BOOL:
        memcpy(&b, field, sizeof(b));
        snprintf(buf, len, "%s", b ? "true" : "false");
        return;
    case T_LOG_LEVEL:
        memcpy(&lvl, field, sizeof(lvl));
        snprintf(buf, len, "%s", lvl >= 0 && lvl <= LP_LOG_DEBUG ? level_names[lvl] : "?");
        return;
    case T_LOG_FORMAT:
        memcpy(&lvl, field, sizeof(lvl));
        snprintf(buf, len, "%s", lvl == 1 ? "json" : "text");
        return;
    case T_RECORD_LAYER:
        memcpy(&lvl, field, sizeof(lvl));
        snprintf(buf, len, "%s", layer_names[lvl == 1]);
        return;
    case T_STRING:
    case T_ADDRESS:
    case T_IDENTITY:
    case T_FINGERPRINT:
    case T_NODE_ID:
    case T_CIDR_LIST:
        snprintf(buf, len, "%s", field);
        return;
    }
}

static const char *type_name(enum key_type t)
{
    switch (t) {
    case T_DURATION:
        return "duration";
    case T_SIZE:
        return "size";
    case T_COUNT:
        return "integer";
    case T_BOOL:
        return "boolean";
    case T_STRING:
        return "string";
    case T_ADDRESS:
        return "address";
    case T_LOG_LEVEL:
        return "log level";
    case T_LOG_FORMAT:
        return "log format";
    case T_RECORD_LAYER:
        return "record layer";
    case T_IDENTITY:
        return "identity";
    case T_FINGERPRINT:
        return "fingerprint";
    case T_NODE_ID:
        return "node id";
    case T_CIDR_LIST:
        return "address list";
    }
    return "value";
}

/* The values a key takes beyond its type: numbers their bounds, text its length in bytes (the
 * field holds max - 1 and the NUL), words the words themselves. */
static void format_range(char *buf, size_t len, const struct cfg_key *k)
{
    char lo[32], hi[32];

    switch (k->type) {
    case T_DURATION:
    case T_SIZE:
    case T_COUNT:
        format_number(lo, sizeof(lo), k->type, k->min);
        format_number(hi, sizeof(hi), k->type, k->max);
        snprintf(buf, len, "%s..%s", lo, hi);
        return;
    case T_STRING:
        snprintf(buf, len, "at most %llu bytes", (unsigned long long)k->max - 1);
        return;
    case T_ADDRESS:
        snprintf(buf, len, "%s, at most %llu bytes", type_wants(k->type),
                 (unsigned long long)k->max - 1);
        return;
    case T_BOOL:
    case T_LOG_LEVEL:
    case T_LOG_FORMAT:
    case T_RECORD_LAYER:
    case T_IDENTITY:
    case T_FINGERPRINT:
    case T_NODE_ID:
    case T_CIDR_LIST:
        snprintf(buf, len, "%s", type_wants(k->type));
        return;
    }
}

size_t cfg_key_count(void)
{
    return KEY_COUNT;
}

bool cfg_key_doc(size_t i, struct lp_config_doc *d)
{
    struct lp_config defaults;
    const struct cfg_key *k;

    if (i >= KEY_COUNT)
        return false;
    k = &keys[i];
    lp_config_defaults(&defaults);
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", k->name);
    d->type = type_name(k->type);
    d->help = k->help;
    format_value(d->def, sizeof(d->def), k, &defaults);
    format_range(d->range, sizeof(d->range), k);
    return true;
}
