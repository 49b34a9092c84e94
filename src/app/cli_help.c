/* cli_help.c — the man-style help pages of lp_cli_usage (cli.h): one per subcommand, each with
 * NAME, SYNOPSIS, OPTIONS, CONFIGURATION KEYS, EXIT STATUS and EXAMPLES. Kept apart from the
 * parser: the pages are long text, the parser is logic.
 */
#include <stdio.h>

#include "limpet/cli.h"
#include "limpet/config.h"
#include "limpet/config_load.h"

static void usage_common_options(FILE *f)
{
    fputs("    -c, --config FILE\n"
          "        Read settings from the YAML file FILE (see config/*.yaml for every key).\n"
          "    -o, --option KEY=VALUE\n"
          "        Override one configuration key by its dotted path, after FILE; may be\n"
          "        repeated. Every key below can be set this way.\n"
          "    --insecure\n"
          "        Plain TCP with no TLS and no authentication. For loopback tests or inside\n"
          "        another secure layer only; the process warns loudly on start-up.\n"
          "    -v, --verbose\n"
          "        More log output (debug); -q and -v add up against log.level.\n"
          "    -q, --quiet\n"
          "        Less log output (warn, then error); may be repeated.\n"
          "    --log-format text|json\n"
          "        One line per event (text), or one JSON object per line with time, proc,\n"
          "        level, sess, stream and msg (json), for log collectors. Key log.format.\n"
          "    -h, --help\n"
          "        Show this help and exit.\n",
          f);
}

static void usage_tail(FILE *f)
{
    fputs("\nCONFIGURATION KEYS (in FILE, or -o KEY=VALUE; shown with defaults)\n", f);
    lp_config_print_keys(f, "    ");
    fputs("\n    Durations: 250ms, 5s, 10m, 24h, 7d. Sizes: 512 (bytes), 64KiB, 8MiB, 1GiB.\n"
          "\nLISTS AND MAPPINGS (in FILE only; empty by default)\n",
          f);
    lp_config_print_maps(f, "    ");
    fputs("\n    Full descriptions: limpet.yaml(5).\n"
          "\nEXIT STATUS\n"
          "    0   clean end\n"
          "    1   usage or configuration error\n"
          "    2   authentication or authorization refused (never retried)\n"
          "    3   session lost (the server no longer knows the session)\n"
          "    4   gave up reconnecting\n",
          f);
}

static void usage_server(FILE *f)
{
    fputs("NAME\n"
          "    limpet server - accept tunnel sessions and connect their streams to targets\n"
          "\nSYNOPSIS\n"
          "    limpet server [-c FILE] [-l ADDR:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
          "    limpet server [-c FILE] [-o KEY=VALUE]... --check-upgrade\n"
          "\nOPTIONS\n"
          "    -l, --listen ADDR:PORT\n"
          "        Accept tunnels on ADDR:PORT (IPv6 as [::]:7070). Default: key 'listen'.\n"
          "    --check-upgrade\n"
          "        Load the configuration (and its keys), print this binary's version and the\n"
          "        state-file versions it reads, and exit: 0 when it could serve. A server sent\n"
          "        SIGUSR2 runs this on upgrade.binary before it hands its sessions over.\n",
          f);
    usage_common_options(f);
    usage_tail(f);
    fputs("\nEXAMPLES\n"
          "    limpet server -c /etc/limpet/server.yaml\n"
          "    limpet server --insecure -l 127.0.0.1:7070 -o session.ttl=1h\n"
          "    kill -USR2 $(pidof limpet)     # upgrade in place: sessions, streams, MCP kept\n",
          f);
}

static void usage_client(FILE *f)
{
    fputs("NAME\n"
          "    limpet client - carry local connections to the server over one session\n"
          "\nSYNOPSIS\n"
          "    limpet client [-c FILE] [-s HOST:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
          "                  [-L [BIND:]PORT:HOST:HOSTPORT]... [-D [BIND:]PORT]...\n"
          "                  [-R [BIND:]PORT:HOST:HOSTPORT]... [-T [BIND:]PORT]...\n"
          "\nOPTIONS\n"
          "    -s, --server HOST:PORT\n"
          "        The server to dial. Default: key 'server'.\n"
          "    -L, --local [BIND:]PORT:HOST:HOSTPORT\n"
          "        Listen on BIND:PORT here (BIND defaults to 127.0.0.1; '*' means all\n"
          "        addresses; PORT 0 lets the system pick) and connect each connection to\n"
          "        HOST:HOSTPORT as the server sees it. IPv6 in brackets: [::1]:8080:[::1]:22.\n"
          "        Unix sockets at either end: a spec starting with / or ./ listens on that\n"
          "        socket file (mode 0600, removed at exit): /run/app.sock:db:5432; a target\n"
          "        unix:/PATH (or /PATH) is a socket on the server: 8080:unix:/run/x.sock.\n"
          "        May be repeated.\n"
          "    -R, --remote [BIND:]PORT:HOST:HOSTPORT\n"
          "        The server listens on BIND:PORT (BIND defaults to 127.0.0.1, '*' means all\n"
          "        addresses, PORT 0 lets it pick) and each connection to it is carried back\n"
          "        and connected to HOST:HOSTPORT (or unix:/PATH) as this client sees it.\n"
          "        The server's allow.reverse list must allow BIND:PORT. A port taken or not\n"
          "        allowed ends the client at start (exit 1 or 2). The listener lives as\n"
          "        long as the session: while the client is away, new connections wait up\n"
          "        to the server's forward.reverse_wait. At most 64; may be repeated.\n"
          "    -D, --dynamic [BIND:]PORT\n"
          "        A SOCKS proxy on BIND:PORT here (SOCKS5 with no authentication, CONNECT to\n"
          "        IPv4, IPv6 or a name; SOCKS4 and 4a too): each connection goes to the target\n"
          "        the client asks for, dialled by the server and checked against its policy.\n"
          "        Errors come back as the SOCKS reply codes. -D /PATH listens on a unix\n"
          "        socket instead. May be repeated.\n"
          "    -T, --transparent [BIND:]PORT\n"
          "        Take connections that the firewall redirected here (nft/iptables REDIRECT,\n"
          "        or TPROXY) and carry each to its original destination, dialled by the\n"
          "        server and checked against its policy. A connection made straight to the\n"
          "        port (not redirected) is closed. See README, \"Transparent mode\".\n",
          f);
    usage_common_options(f);
    usage_tail(f);
    fputs("\nEXAMPLES\n"
          "    limpet client -s tunnel.example.net:7070 -L 5432:db.internal:5432\n"
          "    limpet client --insecure -s 127.0.0.1:7070 -L '*:8080:[::1]:80' -o "
          "session.heartbeat=500ms\n",
          f);
}

static void usage_stdio(FILE *f)
{
    fputs("NAME\n"
          "    limpet stdio - join this process's stdin and stdout to HOST:PORT over a session\n"
          "\nSYNOPSIS\n"
          "    limpet stdio [-c FILE] [-s SERVER:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
          "                 HOST:PORT\n"
          "\nDESCRIPTION\n"
          "    Bytes read from stdin go to HOST:PORT as the server sees it; its answer comes\n"
          "    out on stdout. The session survives network drops like any forward: the\n"
          "    programs at both ends see a pause. End of stdin half-closes the connection;\n"
          "    when HOST:PORT closes its side, limpet stdio exits 0. Made for ssh's\n"
          "    ProxyCommand. Logs go to stderr (warnings only unless -v).\n"
          "\nOPTIONS\n"
          "    -s, --server HOST:PORT\n"
          "        The limpet server to dial. Default: key 'server'.\n",
          f);
    usage_common_options(f);
    usage_tail(f);
    fputs("\n    stdio exits 1 too when the server refuses HOST:PORT (unreachable, refused),\n"
          "    and 2 when its policy does not allow it.\n"
          "\nEXAMPLES\n"
          "    ssh -o ProxyCommand='limpet stdio -s tunnel.example.net:7070 %h:%p' host\n"
          "    limpet stdio --insecure -s 127.0.0.1:7070 127.0.0.1:22\n",
          f);
}

static void usage_mcp(FILE *f)
{
    fputs("NAME\n"
          "    limpet mcp - a stdio MCP server that is really NAME on the limpet server\n"
          "\nSYNOPSIS\n"
          "    limpet mcp [-c FILE] [-s SERVER:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
          "               [--scope KEY] NAME\n"
          "\nDESCRIPTION\n"
          "    An MCP host runs this as a stdio MCP server. Each JSON-RPC message (one line)\n"
          "    goes to the server's mcp.servers.NAME process and its answers come back, in\n"
          "    order, across network drops. limpet mcp exits only when stdin closes or the\n"
          "    session is truly lost (then every request still pending is answered with a\n"
          "    JSON-RPC error first). Invalid or overlong lines are answered with a parse\n"
          "    error and not forwarded. If the MCP server process dies, pending requests get\n"
          "    an error naming its exit status and the next request starts a fresh one.\n"
          "\nOPTIONS\n"
          "    -s, --server HOST:PORT\n"
          "        The limpet server to dial. Default: key 'server'.\n"
          "    --scope KEY\n"
          "        Share one server process among every 'limpet mcp --scope KEY NAME': a host\n"
          "        that restarts (or runs one process per call) re-attaches to the same live\n"
          "        process and its state; 'initialize' is answered from the first one. Without\n"
          "        it, the process ends when this limpet mcp does.\n",
          f);
    usage_common_options(f);
    usage_tail(f);
    fputs("\nEXAMPLES\n"
          "    limpet mcp -s tunnel.example.net:7070 --scope laptop memory\n"
          "    In the host's config: {\"command\": \"limpet\", \"args\": [\"mcp\", \"-s\",\n"
          "    \"tunnel.example.net:7070\", \"--scope\", \"laptop\", \"memory\"]}\n",
          f);
}

static void usage_main(FILE *f)
{
    fputs(
        "NAME\n"
        "    limpet - a transparent, reconnecting tunnel\n"
        "\nSYNOPSIS\n"
        "    limpet server [-c FILE] [-l ADDR:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
        "    limpet client [-c FILE] [-s HOST:PORT] [--insecure] [-o KEY=VALUE]... [-v|-q]...\n"
        "                  [-L [BIND:]PORT:HOST:HOSTPORT]... [-D [BIND:]PORT]...\n"
        "                  [-R [BIND:]PORT:HOST:HOSTPORT]... [-T [BIND:]PORT]...\n"
        "    limpet stdio  [-c FILE] [-s HOST:PORT] [--insecure] [-o KEY=VALUE]... HOST:PORT\n"
        "    limpet mcp    [-c FILE] [-s HOST:PORT] [--insecure] [-o KEY=VALUE]... [--scope KEY]\n"
        "                  NAME\n"
        "    limpet status [-c FILE] [--control PATH] [--json]\n"
        "    limpet keygen psk NAME [-o FILE] | keygen cert NAME [-o PREFIX]\n"
        "    limpet --version | --help | SUBCOMMAND --help\n"
        "\nDESCRIPTION\n"
        "    A client and a server carry TCP connections over one tunnel session that\n"
        "    outlives the network connection under it: when the link drops, the client\n"
        "    reconnects, both sides replay what the other missed, and every stream goes\n"
        "    on byte-exact.\n"
        "\nOPTIONS\n"
        "    --version\n"
        "        Print the version and exit.\n"
        "    -l, --listen ADDR:PORT               (server)\n"
        "        Accept tunnels on ADDR:PORT.\n"
        "    -s, --server HOST:PORT               (client)\n"
        "        The server to dial.\n"
        "    -L, --local [BIND:]PORT:HOST:HOSTPORT (client)\n"
        "        Forward local port PORT to HOST:HOSTPORT as the server sees it.\n"
        "    -D, --dynamic [BIND:]PORT            (client)\n"
        "        A SOCKS5/4a proxy on PORT whose connections the server dials.\n"
        "    -R, --remote [BIND:]PORT:HOST:HOSTPORT (client)\n"
        "        The server listens on PORT; its connections reach HOST:HOSTPORT from here.\n"
        "    -T, --transparent [BIND:]PORT        (client)\n"
        "        Carry firewall-redirected connections to their original destination.\n",
        f);
    usage_common_options(f);
    fputs("    'limpet SUBCOMMAND --help' describes one command in full.\n", f);
    usage_tail(f);
    fputs("\nEXAMPLES\n"
          "    limpet server --insecure -l 127.0.0.1:7070\n"
          "    limpet client --insecure -s 127.0.0.1:7070 -L 8080:localhost:80\n",
          f);
}

static void usage_status(FILE *f)
{
    fputs("NAME\n"
          "    limpet status - what a running limpet server or client is doing\n"
          "\nSYNOPSIS\n"
          "    limpet status [-c FILE] [-o KEY=VALUE]... [--control PATH] [--json]\n"
          "\nDESCRIPTION\n"
          "    Asks a running limpet over its control socket (a unix socket of mode 0600, so\n"
          "    only its user may ask) and prints, for each session: identity, peer address,\n"
          "    state (live or detached), uptime, reconnects, last round-trip time, bytes each\n"
          "    way, replay-buffer use, and its streams. A server answers for every client.\n"
          "    Servers and clients open the socket at control.path, by default one per\n"
          "    process: server-PID.sock or client-PID.sock in $XDG_RUNTIME_DIR/limpet, or\n"
          "    without XDG_RUNTIME_DIR in /tmp/limpet-UID (a directory of mode 0700 that must\n"
          "    belong to the user); stdio and mcp open one only when control.path is set. A\n"
          "    second process on a control.path in use warns once and runs without one.\n"
          "\nOPTIONS\n"
          "    --control PATH\n"
          "        The socket to ask. Default: control.path from FILE or -o, else every\n"
          "        socket in the default directory, servers first (stale ones are removed).\n"
          "    --json\n"
          "        One JSON object per process answering: {\"process\": {...}, \"sessions\":\n"
          "        [{..., \"streams\": [...]}]}; the fields are listed in README, \"Operating a\n"
          "        server\".\n"
          "    -c, --config FILE / -o, --option KEY=VALUE\n"
          "        Where control.path is read from.\n"
          "\nMETRICS\n"
          "    metrics.listen: ADDR:PORT serves Prometheus metrics at http://ADDR:PORT/metrics\n"
          "    (limpet_sessions, limpet_streams, limpet_bytes_total, limpet_reconnects_total,\n"
          "    limpet_resumes_total, limpet_resume_seconds, limpet_handshakes_refused_total,\n"
          "    limpet_mcp_pool_processes, ...). Only a loopback address is accepted unless\n"
          "    metrics.allow_remote is true, as the page has no authentication.\n"
          "\nEXIT STATUS\n"
          "    0   a process answered\n"
          "    1   none answered (the paths tried are named), or a usage error\n"
          "\nEXAMPLES\n"
          "    limpet status\n"
          "    limpet status --control /run/limpet/server.sock --json | jq .sessions\n",
          f);
}

void lp_cli_usage(FILE *f, enum lp_cmd cmd)
{
    switch (cmd) {
    case LP_CMD_STATUS:
        usage_status(f);
        break;
    case LP_CMD_SERVER:
        usage_server(f);
        break;
    case LP_CMD_CLIENT:
        usage_client(f);
        break;
    case LP_CMD_STDIO:
        usage_stdio(f);
        break;
    case LP_CMD_MCP:
        usage_mcp(f);
        break;
    case LP_CMD_NONE:
    case LP_CMD_HELP:
    case LP_CMD_VERSION:
        usage_main(f);
        break;
    }
}
