/* fwdspec.h (base layer) — forward specs as ssh writes them, and HOST:PORT.
 *
 * Parsing only checks syntax; no name is looked up. Errors are written as the problem alone
 * ("missing HOSTPORT"): the caller adds the flag or config key and the spec.
 */
#ifndef LIMPET_FWDSPEC_H
#define LIMPET_FWDSPEC_H

#include <stddef.h>
#include <stdint.h>

#include "limpet/err.h"

#define LP_ADDR_MAX 256u

/* The four kinds of client forward, as ssh names its flags. */
enum lp_fwd_kind {
    LP_FWD_LOCAL = 0,       /* -L: listen here, the server dials */
    LP_FWD_DYNAMIC = 1,     /* -D: a SOCKS proxy here, the server dials */
    LP_FWD_REMOTE = 2,      /* -R: the server listens, this client dials */
    LP_FWD_TRANSPARENT = 3, /* -T: firewall-redirected connections here, the server dials
                               their original destination */
    LP_FWD_KINDS = 4
};
/* "local", "dynamic", "remote", "transparent": the forward.* config list names. */
extern const char *const lp_fwd_kind_names[LP_FWD_KINDS];

/* Longest unix socket path, with its NUL: the size of sockaddr_un.sun_path on Linux. */
#define LP_UNIX_PATH_MAX 108u

struct lp_forward {              /* one -L/-R [BIND:]PORT:HOST:HOSTPORT, or -D/-T [BIND:]PORT */
    enum lp_fwd_kind kind;       /* -D and -T: host and port are unused */
    char bind_host[LP_ADDR_MAX]; /* default "127.0.0.1" (loopback, as ssh without GatewayPorts);
                                    "*" or "" -> "0.0.0.0"; IPv6 without brackets */
    uint16_t bind_port;          /* 0 allowed: the kernel picks, the log says which */
    char host[LP_ADDR_MAX];      /* target as the dialing side sees it (the server for -L, -D
                                    and -T, this client for -R); IPv6 without brackets */
    uint16_t port;               /* 1..65535 */
    /* "" or the unix socket to listen on instead of bind_host:bind_port (-L PATH:..., -D PATH):
     * starts with '/' or "./", no control bytes; -L only and -D only, never -R or -T */
    char bind_path[LP_UNIX_PATH_MAX];
    /* "" or the unix socket the dialing side connects to instead of host:port: the server's
     * for -L ...:unix:/PATH (the OPEN target is then "unix:" + path), this client's own for
     * -R ...:unix:/PATH; absolute, no control bytes */
    char path[LP_UNIX_PATH_MAX];
};

/* One forward spec as ssh -L writes it: PORT:HOST:HOSTPORT or BIND:PORT:HOST:HOSTPORT, with
 * IPv6 addresses in brackets ("[::1]:8080:[fd00::5]:22"). Unix sockets at either end: a spec
 * starting with '/' or "./" listens on that path (up to the first ':', so the path holds no
 * ':'): "/run/app.sock:db:5432"; a target "unix:/PATH" (or OpenSSH's "/PATH") after the PORT
 * or the listening path is a socket on the server, to the end of the spec:
 * "8080:unix:/run/x.sock", "[::1]:8080:/run/x.sock", "./a.sock:unix:/run/x.sock". Paths are
 * at most LP_UNIX_PATH_MAX-1 bytes. On error writes only the problem ("missing HOSTPORT") to
 * err: the caller adds the flag and spec. */
LP_MUST_USE lp_err lp_parse_forward(const char *spec, struct lp_forward *fw, char *err,
                                    size_t errlen);
/* One -D spec as ssh writes it: PORT or BIND:PORT ([IPV6]:PORT), or a unix socket path
 * starting with '/' or "./" (the whole spec); sets fw->kind to LP_FWD_DYNAMIC. On error
 * writes only the problem to err. */
LP_MUST_USE lp_err lp_parse_dynamic(const char *spec, struct lp_forward *fw, char *err,
                                    size_t errlen);
/* A spec of any kind: -L and -R as lp_parse_forward, -D and -T as lp_parse_dynamic; sets
 * fw->kind. A listening unix path is refused for -T (its connections are TCP by nature) and
 * for -R (the server listens on TCP only); -R's target may be a unix socket on this client.
 * On error writes only the problem to err. */
LP_MUST_USE lp_err lp_parse_fwd_spec(enum lp_fwd_kind kind, const char *spec, struct lp_forward *fw,
                                     char *err, size_t errlen);
/* "HOST:PORT" or "[IPV6]:PORT", port 1..65535. Writes the host without brackets. Checks the
 * form only (no name lookup). LP_ERR_INVALID on bad input or a host longer than hostlen-1. */
LP_MUST_USE lp_err lp_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
