/* config.h (base layer: types only) — typed configuration, with a default for every key.
 *
 * The loader (YAML, -o overrides, defaults, checks) is the app layer's: config_load.h.
 *
 * Keys are dotted paths (`session.heartbeat`). Values: durations `250ms`, `5s`, `10m`, `24h`
 * (a bare integer is refused: say the unit); sizes `512` (bytes), `64KiB`, `8MiB`, `1GiB`
 * (binary units only); booleans true/false; strings; addresses "HOST:PORT" / "[V6]:PORT".
 * Errors are one line: "FILE:LINE:COL: KEY: what is wrong" (LINE/COL 1-based), written to
 * the caller's buffer. `-o KEY=VALUE` errors read "-o KEY: what is wrong".
 *
 * String keys (tls.*, identity, psk_file, server_fingerprint) default to "" = unset. The
 * server's identities (auth.clients.NAME) are a list, so they live on the heap: a config that
 * may hold them is released with lp_config_clear(). A file with an `auth:` section replaces
 * the whole client list of the config it is loaded over (the old list is freed when the new
 * file is good); a file without one keeps it. `-o` cannot set auth.clients. mcp.servers is
 * a heap list handled the same way.
 */
#ifndef LIMPET_CONFIG_H
#define LIMPET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "limpet/base.h"
#include "limpet/cidr.h"
#include "limpet/err.h"
#include "limpet/fwdspec.h"
#include "limpet/log.h"

#define LP_CONFIG_ERR_MAX 512u
#define LP_IDENTITY_MAX 64u       /* identity names: 1..64 of [A-Za-z0-9._-] */
#define LP_FINGERPRINT_MAX 100u   /* room for the canonical "sha256:" + 64 hex digits */
#define LP_AUTH_CLIENTS_MAX 4096u /* auth.clients entries at most */
#define LP_AUTH_ALLOW_MAX 1024u   /* entries in one allow list at most */
#define LP_AUTH_ENTRY_MAX 300u    /* bytes in one allow entry at most */
#define LP_MCP_SERVERS_MAX 1024u  /* mcp.servers entries at most */
#define LP_MCP_ARGS_MAX 1024u     /* args (and env entries) of one MCP server at most */
#define LP_MCP_TEXT_MAX 4096u     /* bytes in one command, argument, env value or cwd */

/* One identity the server accepts (auth.clients.NAME). Exactly one of psk_file and
 * cert_fingerprint is non-empty. The allow entries are kept as written (1..300 bytes, no NUL):
 * the policy module parses them. Owned by the lp_config that holds the client. */
struct lp_auth_client {
    char name[LP_IDENTITY_MAX + 1];            /* NAME, already checked as for `identity` */
    char psk_file[LP_ADDR_MAX];                /* path as written, "" if cert_fingerprint */
    char cert_fingerprint[LP_FINGERPRINT_MAX]; /* canonical (see server_fingerprint) or "" */
    char **forward; /* allow.forward entries in file order; n_forward of them, NULL if 0 */
    size_t n_forward;
    char **reverse; /* allow.reverse, likewise */
    size_t n_reverse;
    char **mcp; /* allow.mcp, likewise */
    size_t n_mcp;
    unsigned line; /* 1-based line of NAME in the file, for later error messages */
};

/* One MCP stdio server the server may start (mcp.servers.NAME). Owned by its lp_config. */
struct lp_mcp_server {
    char name[LP_IDENTITY_MAX + 1]; /* NAME: 1..64 of [A-Za-z0-9._-] */
    char *command;                  /* program to run (PATH is searched); never NULL */
    char **args;                    /* arguments after argv[0], in file order; NULL if none */
    size_t n_args;
    char **env; /* "KEY=VALUE", added to (or replacing in) the server's environment */
    size_t n_env;
    char *cwd;     /* working directory, NULL = the server's own */
    unsigned line; /* 1-based line of NAME in the file */
};

struct lp_config {
    char listen[LP_ADDR_MAX]; /* listen: server's tunnel address ("0.0.0.0:7070") */
    char server[LP_ADDR_MAX]; /* server: where the client dials ("127.0.0.1:7070") */
    bool insecure;            /* insecure: plain TCP, no TLS, no auth (false) */
    int log_level;            /* log.level: error|warn|info|debug (info) */
    int log_format;           /* log.format: text (0) or json (1) (text) */
    struct {
        char cert[LP_ADDR_MAX]; /* tls.cert: certificate file (PEM), "" = none */
        char key[LP_ADDR_MAX];  /* tls.key: its private key file; set both or neither */
        /* tls.record_layer: who protects the records after mbedTLS's handshake, an enum
         * lp_tls_layer value: 0 openssl (tlsrec over libcrypto, the default), 1 mbedtls */
        int record_layer;
        /* tls.rekey_after (1GiB), 64KiB..64GiB: a link that carried this many bytes one way
         * under its keys is replaced by a new handshake (the client dials, the session resumes) */
        size_t rekey_after;
        /* tls.sni: client: the name sent as SNI on a first connection, "" = the host part of
         * `server`; a resume sends "NODE." before it (the node id from WELCOME) */
        char sni[LP_ADDR_MAX];
    } tls;
    struct {
        /* node.id: server: this node's id, told to clients in WELCOME (a DNS label, 1..63 of
         * [a-z0-9-]); "" in the file = from the host name (lp_config_finish fills it in) */
        char id[LP_NODE_ID_BUF];
    } node;
    struct {
        char listen[LP_ADDR_MAX]; /* proxy_protocol.listen: a tunnel listener behind a
                                     balancer (PROXY v2 header first), "" = off */
        /* proxy_protocol.trusted: addresses/ranges allowed to send PROXY headers, separated
         * by commas or spaces (a YAML list is joined so); parsed into trusted_list by
         * lp_config_finish */
        char trusted[512];
        struct lp_cidr_list trusted_list;
    } proxy_protocol;
    char identity[LP_IDENTITY_MAX + 1]; /* identity: client's name at the server ("") */
    char psk_file[LP_ADDR_MAX];         /* psk_file: client's pre-shared key file ("") */
    /* server_fingerprint: the client's pin of the server certificate. Accepted as "sha256:"
     * and 32 hex bytes, colons between bytes optional, either case; stored canonical:
     * "sha256:" + 64 lowercase hex digits, no colons (so pins compare with strcmp). */
    char server_fingerprint[LP_FINGERPRINT_MAX];
    struct {
        lp_time heartbeat;        /* session.heartbeat (2s), 10ms..10m */
        lp_time dead_after;       /* session.dead_after (6s); 0 in the file = 3 x heartbeat */
        lp_time ttl;              /* session.ttl (10m), 1s..30d: detached sessions kept */
        size_t replay_buffer;     /* session.replay_buffer (8MiB), 64KiB..1GiB */
        size_t receive_buffer;    /* session.receive_buffer (16MiB), 64KiB..1GiB */
        size_t stream_window;     /* session.stream_window (1MiB), 16KiB..16MiB */
        size_t stream_window_max; /* session.stream_window_max (4MiB), 16KiB..64MiB; below
                                   * stream_window it is stream_window: no growth */
        size_t ack_every;         /* session.ack_every (64KiB), 1KiB..16MiB */
        lp_time ack_delay;        /* session.ack_delay (20ms), 1ms..10s */
        size_t max_streams;       /* session.max_streams (4096), 1..1000000 */
    } session;
    struct {
        lp_time initial_delay;   /* reconnect.initial_delay (100ms), 1ms..1m */
        lp_time max_delay;       /* reconnect.max_delay (5s), 1ms..1h */
        lp_time give_up_after;   /* reconnect.give_up_after (0 = session.ttl), 0..30d */
        lp_time connect_timeout; /* reconnect.connect_timeout (10s): one dial attempt */
    } reconnect;
    struct {
        lp_time connect_timeout; /* forward.connect_timeout (30s), 1ms..1h: how long a
                                       local connection waits for the tunnel or the target */
        lp_time reverse_wait;    /* forward.reverse_wait (30s), 0..1h: how long a connection to a
                                 -R listener waits for a detached client (0: refused) */
        /* forward.local / .dynamic / .remote / .transparent: client forwards as -L / -D /
         * -R / -T would take them ("8080:db:5432", "1080"), indexed by enum lp_fwd_kind and
         * checked on load; owned lists, NULL if none. A file that sets one replaces that
         * list; flags on the command line add to them. */
        char **specs[LP_FWD_KINDS];
        size_t n_specs[LP_FWD_KINDS];
    } forward;
    struct {
        lp_time handshake_timeout;     /* limits.handshake_timeout (10s): server side, HELLO */
        size_t max_sessions;           /* limits.max_sessions (1024) */
        size_t max_pending;            /* limits.max_pending (256): unauthenticated links */
        size_t max_pending_per_source; /* limits.max_pending_per_source (16), per address */
        size_t sessions_per_identity;  /* limits.sessions_per_identity (16) */
        /* limits.streams_per_identity (4096): streams over all of an identity's sessions;
         * the server also holds it to half its open-files limit */
        size_t streams_per_identity;
        /* limits.session_memory (32MiB): bytes buffered per session; lp_config_finish
         * checks session.replay_buffer + session.receive_buffer against it */
        size_t session_memory;
        /* limits.memory (1GiB), 1MiB..1024GiB, at least session_memory: server: bytes
         * buffered for peers over the whole process (replay buffers, receive queues, MCP
         * line queues and child pipes); at it new sessions and streams are refused and
         * MCP lines needing more credit wait */
        size_t memory;
    } limits;
    struct {
        size_t max_sessions;          /* mcp.max_sessions (256): pooled MCP server processes */
        size_t sessions_per_identity; /* mcp.sessions_per_identity (32): one identity's share */
        lp_time idle_timeout; /* mcp.idle_timeout (10m): a detached MCP session ends after */
        size_t max_message;   /* mcp.max_message (16MiB): longest JSON-RPC line, both sides */
        lp_time stop_grace;   /* mcp.stop_grace (2s): stdin closed -> SIGTERM -> SIGKILL */
        struct lp_mcp_server *servers; /* owned; n_servers of them, NULL if none */
        size_t n_servers;              /* <= LP_MCP_SERVERS_MAX, names unique */
    } mcp;
    struct {
        /* control.path: the `limpet status` socket, "" = the per-user default (server and
         * client; stdio and mcp open one only when it is set) */
        char path[LP_ADDR_MAX];
    } control;
    struct {
        char listen[LP_ADDR_MAX]; /* metrics.listen: Prometheus page, "" = off */
        bool allow_remote;        /* metrics.allow_remote: a non-loopback listen (false) */
    } metrics;
    struct {
        /* upgrade.binary: what SIGUSR2 execs (after `BINARY server --check-upgrade`), "" = the
         * file the server was started from, as /proc/self/exe named it at start */
        char binary[LP_ADDR_MAX];
        lp_time check_timeout; /* upgrade.check_timeout (10s): the check is killed after it */
    } upgrade;
    struct {
        struct lp_auth_client *clients; /* owned; n_clients of them, NULL if none */
        size_t n_clients;               /* <= LP_AUTH_CLIENTS_MAX, names unique */
    } auth;
};

#endif
