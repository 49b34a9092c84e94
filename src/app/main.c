/* main.c — wires the command line, the configuration and the runtime together. Only this
 * file calls exit() (by returning from main). */
#include <ev.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/auth.h"
#include "limpet/cli.h"
#include "limpet/client.h"
#include "limpet/config.h"
#include "limpet/config_load.h"
#include "limpet/ctl.h"
#include "limpet/keys.h"
#include "limpet/log.h"
#include "limpet/mcpio.h"
#include "limpet/server.h"
#include "limpet/stdio.h"
#include "limpet/upgrade.h"

enum { EXIT_OK = 0, EXIT_USAGE = 1 };

struct app {
    struct lp_runtime rt;
    lp_tls_conf *client_tls;
    struct lp_auth *auth;
    struct lp_client *client;
    struct lp_server *server;
    struct lp_stdio *stdio;
    struct lp_mcp_client *mcp;
    struct lp_mcpd *mcpd;
    struct lp_ctl *ctl;         /* control socket and metrics listener */
    struct lp_upgrade *upgrade; /* server: SIGUSR2 */
    bool stopping;
    int argc;
    char **argv; /* main's, for the exec of an upgrade */
    const struct lp_cli *cli;
    const struct lp_config *cfg; /* the configuration in force */
    struct cfg_gen *gens;        /* server: it (first) and the retired ones still in use */
    struct lp_forward *fwd;      /* client: the file's forwards and the command line's */
    size_t nfwd;
};

static void server_stop(void *user)
{
    struct app *a = user;
    if (a->server)
        lp_server_stop(a->server);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *a = w->data;
    (void)loop;
    (void)revents;
    lp_info("signal %d: shutting down", w->signum);
    lp_upgrade_cancel(a->upgrade); /* a check in flight: no hand-over now */
    if (a->client) {
        lp_client_stop(a->client);
    } else if (a->mcpd && !a->stopping) {
        /* MCP server processes are stopped the MCP way first (bounded by 2 x stop_grace);
         * then the sessions get GOODBYE. A second signal skips the wait. */
        a->stopping = true;
        lp_mcpd_shutdown(a->mcpd, server_stop, a);
    } else if (a->server) {
        lp_server_stop(a->server);
    }
}

/* Defaults, then the file, then each -o, then the explicit flags: the most specific wins.
 * On error cfg may hold a partial list: the caller clears it. */
static lp_err read_config(const struct lp_cli *cli, struct lp_config *cfg, char *err, size_t errlen)
{
    lp_config_defaults(cfg);
    if (cli->config_file && lp_config_load_file(cfg, cli->config_file, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    for (size_t i = 0; i < cli->n_overrides; i++) {
        if (lp_config_set(cfg, cli->overrides[i], err, errlen) != LP_OK)
            return LP_ERR_INVALID;
    }
    if (cli->listen)
        snprintf(cfg->listen, sizeof(cfg->listen), "%s", cli->listen);
    if (cli->server)
        snprintf(cfg->server, sizeof(cfg->server), "%s", cli->server);
    if (cli->insecure)
        cfg->insecure = true;
    return lp_config_finish(cfg, err, errlen);
}

static int load_config(const struct lp_cli *cli, struct lp_config *cfg)
{
    char err[LP_CONFIG_ERR_MAX];

    if (read_config(cli, cfg, err, sizeof(err)) == LP_OK)
        return EXIT_OK;
    fprintf(stderr, "limpet: %s\n", err);
    return EXIT_USAGE;
}

static void set_log_level(const struct lp_cli *cli, const struct lp_config *cfg)
{
    /* stdio and mcp run under another program (ssh, an MCP host) that shows their stderr
     * to its user: one level quieter, so a reconnect is not news there. */
    int quieter = cli->cmd == LP_CMD_STDIO || cli->cmd == LP_CMD_MCP;
    int level = cfg->log_level + cli->verbosity - quieter;
    lp_log_set_level(level < LP_LOG_ERROR   ? LP_LOG_ERROR
                     : level > LP_LOG_DEBUG ? LP_LOG_DEBUG
                                            : level);
    lp_log_set_json(cfg->log_format == 1);
}

/* ---- SIGHUP: the server re-reads its configuration ---------------------------------------- */

/* A configuration and the auth built from it. The one in force holds itself; each session made
 * with it holds it (rt->cfg_hold); each TLS handshake or link made with its auth's TLS conf
 * uses it (lp_tls_conf_users). A retired one is freed when the last of these lets go, so a
 * server reloaded every minute for a month holds what one reload holds. */
struct cfg_gen {
    struct app *app;
    size_t holds;                /* sessions made with cfg, + 1 while it is in force */
    const struct lp_config *cfg; /* owned_cfg, or main's own */
    struct lp_config *owned_cfg; /* when a reload made it */
    struct lp_auth *auth;        /* owned; NULL with --insecure */
    struct cfg_gen *next;
};

static void gen_maybe_free(struct cfg_gen *g)
{
    struct cfg_gen **pp;

    if (g->holds > 0 || (g->auth && lp_tls_conf_users(lp_auth_tls(g->auth)) > 0))
        return;
    for (pp = &g->app->gens; *pp != NULL && *pp != g; pp = &(*pp)->next)
        ;
    if (*pp == g)
        *pp = g->next;
    lp_debug("reload: a retired configuration is no longer used: freed");
    lp_auth_free(g->auth);
    if (g->owned_cfg) {
        lp_config_clear(g->owned_cfg);
        free(g->owned_cfg);
    }
    free(g);
}

static void gen_tls_idle(void *arg)
{
    gen_maybe_free(arg);
}

/* rt->cfg_hold: a session made with cfg starts (hold) or is freed. */
static void gen_hold(void *user, const struct lp_config *cfg, bool hold)
{
    struct app *a = user;
    struct cfg_gen *g = a->gens;

    while (g != NULL && g->cfg != cfg)
        g = g->next;
    if (g == NULL) { /* every session is made with the configuration in force */
        lp_error("internal: a session's configuration is not known");
        return;
    }
    if (hold) {
        g->holds++;
        return;
    }
    g->holds--;
    gen_maybe_free(g);
}

/* Puts cfg and auth (taken) in force; owned_cfg is cfg when the caller hands it over (a
 * reload's), NULL for main's own. The previous one is retired and freed once nothing uses it. */
static lp_err gen_install(struct app *a, const struct lp_config *cfg, struct lp_config *owned_cfg,
                          struct lp_auth *auth)
{
    struct cfg_gen *g = calloc(1, sizeof(*g)), *old = a->gens;

    if (g == NULL)
        return LP_ERR_NOMEM;
    *g = (struct cfg_gen){
        .app = a, .holds = 1, .cfg = cfg, .owned_cfg = owned_cfg, .auth = auth, .next = a->gens};
    if (auth)
        lp_tls_conf_on_idle(lp_auth_tls(auth), gen_tls_idle, g);
    a->gens = g;
    a->cfg = cfg;
    a->auth = auth;
    a->rt.cfg_hold = gen_hold;
    a->rt.cfg_user = a;
    if (auth) {
        a->rt.tls = lp_auth_tls(auth);
        a->rt.allow_user = auth;
    }
    if (old != NULL) {
        old->holds--;
        gen_maybe_free(old);
    }
    return LP_OK;
}

/* At exit, when every session and link is gone. */
static void gen_free_all(struct app *a)
{
    while (a->gens) {
        struct cfg_gen *g = a->gens;
        a->gens = g->next;
        lp_auth_free(g->auth);
        if (g->owned_cfg) {
            lp_config_clear(g->owned_cfg);
            free(g->owned_cfg);
        }
        free(g);
    }
    a->auth = NULL;
}

struct revocation {
    const struct lp_auth *old, *now;
};

static const char *revoked_cb(void *user, const char *identity)
{
    const struct revocation *r = user;
    return lp_auth_revoked(r->old, r->now, identity);
}

/* Revocation that revokes: sessions of removed or re-keyed identities end, and what the new
 * allow-lists no longer permit (streams, -R listeners) closes, now, not at the next resume. */
static void revoke_identities(struct app *a, const struct lp_auth *old, const struct lp_auth *now)
{
    struct revocation r = {.old = old, .now = now};
    size_t ended = lp_server_revoke(a->server, revoked_cb, &r);

    if (ended > 0)
        lp_info("reload: %zu session(s) of removed or re-keyed identities ended", ended);
}

static void reload(struct app *a)
{
    char err[LP_CONFIG_ERR_MAX];
    struct lp_config *cfg = malloc(sizeof(*cfg));
    struct lp_auth *auth = NULL;
    struct cfg_gen *old;

    if (cfg == NULL) {
        lp_error("reload: out of memory; keeping the running configuration");
        return;
    }
    if (read_config(a->cli, cfg, err, sizeof(err)) != LP_OK ||
        (!cfg->insecure && lp_auth_new(cfg, &auth, err, sizeof(err)) != LP_OK)) {
        lp_error("reload: %s; keeping the running configuration", err);
        goto fail;
    }
    if (cfg->insecure != a->cfg->insecure) {
        lp_error("reload: insecure cannot change while running; keeping the running "
                 "configuration");
        goto fail;
    }
    if (strcmp(cfg->listen, a->cfg->listen) != 0)
        lp_warn("reload: listen %s needs a restart; still listening on %s", cfg->listen,
                a->cfg->listen);
    lp_mcpd_reconfigure(a->mcpd, cfg, auth);
    lp_server_reconfigure(a->server, cfg);
    old = a->gens;
    old->holds++; /* its auth answers lp_auth_revoked below */
    if (gen_install(a, cfg, cfg, auth) != LP_OK) {
        /* The server and the MCP pool already point at cfg: it must live on. */
        lp_error("reload: out of memory; the new configuration applies but is never freed");
    }
    if (old->auth && auth)
        revoke_identities(a, old->auth, auth);
    old->holds--;
    gen_maybe_free(old);
    set_log_level(a->cli, cfg);
    lp_info("reload: %s applied (%zu clients, %zu mcp servers)",
            a->cli->config_file ? a->cli->config_file : "the configuration", cfg->auth.n_clients,
            cfg->mcp.n_servers);
    return;
fail:
    lp_auth_free(auth);
    lp_config_clear(cfg);
    free(cfg);
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *a = w->data;
    if (a->server && !a->stopping) {
        lp_info("signal %d: reloading the configuration", w->signum);
        reload(a);
    } else {
        signal_cb(loop, w, revents); /* client, stdio, mcp: SIGHUP ends them (ssh sends it) */
    }
}

/* ---- SIGUSR2: the server upgrades in place ---------------------------------------------------- */

static void usr2_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *a = w->data;
    struct lp_upgrade_parts parts = {
        .rt = &a->rt, .server = a->server, .mcpd = a->mcpd, .ctl = a->ctl, .cfg = a->cfg};
    (void)loop;
    (void)revents;

    if (a->server == NULL || a->upgrade == NULL || a->stopping) {
        lp_info("signal %d: ignored (no server to upgrade, or it is stopping)", w->signum);
        return;
    }
    lp_info("signal %d: upgrading in place", w->signum);
    lp_upgrade_start(a->upgrade, &parts);
}

/* `limpet server --check-upgrade`: could this binary serve with this configuration, and which
 * state files does it read? Run by the server a SIGUSR2 is about to replace (upgrade.h). */
static int check_upgrade(const struct lp_config *cfg)
{
    char err[LP_CONFIG_ERR_MAX];
    struct lp_auth *auth = NULL;

    if (!cfg->insecure && lp_auth_new(cfg, &auth, err, sizeof(err)) != LP_OK) {
        fprintf(stderr, "limpet: %s\n", err);
        return EXIT_USAGE;
    }
    lp_auth_free(auth);
    lp_upgrade_print_check(stdout);
    return EXIT_OK;
}

/* ---- SIGUSR1: the server drains --------------------------------------------------------------- */

/* No new sessions here from now on; the sessions held here keep resuming (README "Several
 * servers"). Other commands ignore it. */
static void usr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *a = w->data;
    (void)loop;
    (void)revents;
    if (a->server && !a->stopping) {
        lp_info("signal %d: draining", w->signum);
        lp_server_drain(a->server);
    }
}

/* Keys from the configuration; a missing or unsafe key file stops here with one line. */
static int setup_tls(const struct lp_cli *cli, const struct lp_config *cfg, struct app *a)
{
    char err[LP_CONFIG_ERR_MAX];

    if (cli->cmd != LP_CMD_SERVER) {
        if (lp_auth_client_tls(cfg, &a->client_tls, err, sizeof(err)) != LP_OK)
            goto bad;
        a->rt.tls = a->client_tls;
        return EXIT_OK;
    }
    if (lp_auth_new(cfg, &a->auth, err, sizeof(err)) != LP_OK)
        goto bad;
    a->rt.tls = lp_auth_tls(a->auth);
    a->rt.allow_target = lp_auth_allows_target;
    a->rt.allow_bind = lp_auth_allows_bind;
    a->rt.name_of = lp_auth_name_of;
    a->rt.allow_user = a->auth;
    return EXIT_OK;
bad:
    lp_error("%s", err);
    return EXIT_USAGE;
}

/* client, stdio and mcp: one client, with the program's end as its app. */
/* The forwards of the config file (forward.local, .dynamic, .remote, .transparent), then
 * those of the command line. The specs were checked when the file was loaded. */
static lp_err collect_forwards(const struct lp_cli *cli, const struct lp_config *cfg, struct app *a)
{
    size_t n = cli->n_forwards;
    char why[160];

    for (int k = 0; k < LP_FWD_KINDS; k++)
        n += cfg->forward.n_specs[k];
    if (n == 0)
        return LP_OK;
    if ((a->fwd = calloc(n, sizeof(*a->fwd))) == NULL)
        return LP_ERR_NOMEM;
    for (int k = 0; k < LP_FWD_KINDS; k++)
        for (size_t i = 0; i < cfg->forward.n_specs[k]; i++)
            if (lp_parse_fwd_spec((enum lp_fwd_kind)k, cfg->forward.specs[k][i], &a->fwd[a->nfwd++],
                                  why, sizeof(why)) != LP_OK)
                return LP_ERR_INVALID;
    for (size_t i = 0; i < cli->n_forwards; i++)
        a->fwd[a->nfwd++] = cli->forwards[i];
    return LP_OK;
}

static int start_client(const struct lp_cli *cli, const struct lp_config *cfg, struct app *a)
{
    const struct lp_client_app *app = NULL;
    void *user = NULL;

    if (cli->cmd == LP_CMD_STDIO) {
        if (lp_stdio_new(cfg, cli->target, &a->stdio) != LP_OK)
            return EXIT_USAGE;
        app = lp_stdio_app();
        user = a->stdio;
    } else if (cli->cmd == LP_CMD_MCP) {
        if (lp_mcp_client_new(cfg, cli->target, cli->scope, &a->mcp) != LP_OK)
            return EXIT_USAGE;
        app = lp_mcp_client_app();
        user = a->mcp;
    }
    if (cli->cmd == LP_CMD_CLIENT && collect_forwards(cli, cfg, a) != LP_OK)
        return EXIT_USAGE;
    if (lp_client_new(&a->rt, cfg, a->fwd, a->nfwd, app, user, &a->client) != LP_OK)
        return EXIT_USAGE;
    if (a->stdio)
        lp_stdio_set_client(a->stdio, a->client);
    if (a->mcp)
        lp_mcp_client_set_client(a->mcp, a->client);
    return EXIT_OK;
}

/* The server's own listeners and state, from the previous binary when it upgraded in place
 * (in: NULL otherwise; consumed here). */
static int start_server(struct app *a, const struct lp_config *cfg, struct lp_inherit *in)
{
    struct lp_upgrade_parts parts = {.rt = &a->rt, .ctl = a->ctl, .cfg = cfg};

    if (lp_mcpd_new(&a->rt, cfg, a->auth ? lp_auth_allows_mcp : NULL, a->auth, &a->mcpd) != LP_OK ||
        lp_server_new_on(&a->rt, cfg, lp_inherit_listener(in, LP_INHERIT_LISTEN), &a->server) !=
            LP_OK ||
        lp_upgrade_new(a->rt.loop, a->argc, a->argv, &a->upgrade) != LP_OK) {
        lp_inherit_finish(in);
        return EXIT_USAGE;
    }
    parts.server = a->server;
    parts.mcpd = a->mcpd;
    bool upgraded = in != NULL;
    lp_upgrade_restore(in, &parts);
    lp_inherit_finish(in); /* what nothing took is closed */
    if (upgraded)          /* the old binary's processes that nothing adopted are stopped */
        lp_upgrade_end_orphans(a->upgrade, &parts);
    return EXIT_OK;
}

static int run(const struct lp_cli *cli, const struct lp_config *cfg, int argc, char **argv,
               struct lp_inherit *in)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    struct app a;
    ev_signal sint, sterm, shup, susr2;
    ev_signal susr1; /* server: drain */
    int code = EXIT_OK;

    memset(&a, 0, sizeof(a));
    a.cli = cli;
    a.cfg = cfg;
    a.argc = argc;
    a.argv = argv;
    signal(SIGPIPE, SIG_IGN);
    /* Stream queues and replay chunks are allocated and freed at the data rate. Without
     * these, glibc hands freed memory back to the kernel (trim / munmap) and takes it
     * again at once, and every new page costs a fault and zeroing: that alone halved
     * throughput. Memory still returns to the allocator; only the churn stops. */
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    lp_runtime_init(&a.rt, loop);
    ev_signal_init(&sint, signal_cb, SIGINT);
    ev_signal_init(&sterm, signal_cb, SIGTERM);
    /* ssh ends its ProxyCommand with SIGHUP, and a closed terminal sends it: for the
     * commands that dial, it means "end cleanly" (GOODBYE, so the server frees the session
     * at once instead of keeping it for session.ttl). */
    ev_signal_init(&shup, hup_cb, SIGHUP);
    sint.data = sterm.data = shup.data = &a;
    ev_signal_start(loop, &sint);
    ev_signal_start(loop, &sterm);
    ev_unref(loop); /* signals alone must not keep the loop running */
    ev_unref(loop);
    ev_signal_start(loop, &shup);
    ev_unref(loop);
    ev_signal_init(&susr2, usr2_cb, SIGUSR2);
    susr2.data = &a;
    if (cli->cmd == LP_CMD_SERVER) {
        ev_signal_start(loop, &susr2);
        ev_unref(loop);
    }
    ev_signal_init(&susr1, usr1_cb, SIGUSR1);
    susr1.data = &a;
    ev_signal_start(loop, &susr1);
    ev_unref(loop);

    if (cfg->insecure)
        lp_warn("running with --insecure: no TLS, no authentication; use only on a trusted "
                "network");
    else if ((code = setup_tls(cli, cfg, &a)) != EXIT_OK)
        goto out;
    /* Before any listener: a refused metrics.listen stops the process with one line. */
    if (lp_ctl_new_on(&a.rt, cfg,
                      cli->cmd == LP_CMD_SERVER   ? "server"
                      : cli->cmd == LP_CMD_CLIENT ? "client"
                      : cli->cmd == LP_CMD_STDIO  ? "stdio"
                                                  : "mcp",
                      cli->cmd == LP_CMD_SERVER || cli->cmd == LP_CMD_CLIENT,
                      lp_inherit_listener(in, LP_INHERIT_METRICS),
                      lp_inherit_listener(in, LP_INHERIT_CONTROL), &a.ctl) != LP_OK) {
        code = EXIT_USAGE;
        goto out;
    }
    if (cli->cmd == LP_CMD_SERVER && gen_install(&a, cfg, NULL, a.auth) != LP_OK) {
        code = EXIT_USAGE;
        goto out;
    }
    if (cli->cmd == LP_CMD_SERVER) {
        code = start_server(&a, cfg, in);
        in = NULL; /* consumed */
    } else {
        code = start_client(cli, cfg, &a);
    }
    /* An upgrade in place blocked these over its exec; the loop watches them now. */
    lp_upgrade_unblock_signals();
    if (code == EXIT_OK)
        ev_run(loop, 0);
    if (a.client)
        code = lp_client_exit_code(a.client);
out:
    lp_inherit_finish(in); /* not consumed: an early failure */
    lp_upgrade_free(a.upgrade);
    lp_ctl_free(a.ctl);
    lp_client_free(a.client);
    free(a.fwd);
    lp_stdio_free(a.stdio);
    lp_mcp_client_free(a.mcp);
    lp_server_free(a.server);
    lp_mcpd_free(a.mcpd);
    lp_tls_conf_free(a.client_tls);
    if (a.gens == NULL)
        lp_auth_free(a.auth); /* setup_tls made it, gen_install never took it */
    ev_ref(loop);
    ev_ref(loop);
    ev_signal_stop(loop, &sint);
    ev_signal_stop(loop, &sterm);
    if (ev_is_active(&shup)) {
        ev_ref(loop);
        ev_signal_stop(loop, &shup);
    }
    if (ev_is_active(&susr2)) {
        ev_ref(loop);
        ev_signal_stop(loop, &susr2);
    }
    ev_ref(loop);
    ev_signal_stop(loop, &susr1);
    lp_runtime_clear(&a.rt);
    gen_free_all(&a); /* after the last session and TLS link are freed */
    ev_loop_destroy(loop);
    return code;
}

int main(int argc, char **argv)
{
    struct lp_cli cli;
    struct lp_config cfg;
    struct lp_inherit *inherit = NULL;
    char err[LP_CONFIG_ERR_MAX];
    int code;

    lp_config_defaults(&cfg); /* so that every path below may lp_config_clear it */
    /* keygen has its own small command line (its -o names an output file). */
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0)
        return lp_keygen_main(argc - 1, argv + 1);
    if (lp_cli_parse(argc, argv, &cli, err, sizeof(err)) != LP_OK) {
        fprintf(stderr, "limpet: %s\n", err);
        return EXIT_USAGE;
    }
    /* An upgrade in place: before anything opens a descriptor, take the state and note what
     * the old binary handed over (upgrade.h). */
    if (cli.cmd == LP_CMD_SERVER && !cli.check_upgrade && !cli.help &&
        lp_inherit_take(&inherit) != LP_OK) {
        fprintf(stderr, "limpet: upgrade: out of memory reading the state handed over\n");
        lp_cli_free(&cli);
        return EXIT_USAGE;
    }
    if (cli.cmd == LP_CMD_VERSION) {
        printf("limpet %s (protocol %u)\n", LP_VERSION, LP_PROTO_VERSION);
        code = EXIT_OK;
    } else if (cli.cmd == LP_CMD_HELP || cli.help) {
        lp_cli_usage(stdout, cli.cmd == LP_CMD_HELP ? LP_CMD_NONE : cli.cmd);
        code = EXIT_OK;
    } else if ((code = load_config(&cli, &cfg)) == EXIT_OK && cli.cmd == LP_CMD_STATUS) {
        code = lp_status_main(cli.control, cli.json, &cfg);
    } else if (code == EXIT_OK && cli.check_upgrade) {
        code = check_upgrade(&cfg);
    } else if (code == EXIT_OK) {
        static const char *const tags[] = {[LP_CMD_SERVER] = "server",
                                           [LP_CMD_CLIENT] = "client",
                                           [LP_CMD_STDIO] = "stdio",
                                           [LP_CMD_MCP] = "mcp"};
        lp_log_set_tag(tags[cli.cmd]);
        set_log_level(&cli, &cfg);
        code = run(&cli, &cfg, argc, argv, inherit);
        inherit = NULL; /* consumed */
    }
    lp_inherit_finish(inherit); /* the configuration did not load: closed */
    lp_config_clear(&cfg);
    lp_cli_free(&cli);
    return code;
}
