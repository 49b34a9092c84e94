/* auth.c — keys and identities from the configuration. See auth.h. */
#include "limpet/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "limpet/keys.h"
#include "limpet/log.h"
#include "limpet/policy.h"

static const char HOW[] = "create keys with `limpet keygen psk NAME` (or `limpet keygen cert "
                          "NAME`), or run with --insecure on a trusted network";

struct lp_auth {
    const struct lp_config *cfg;
    lp_tls_conf *tls;
    struct lp_policy *forward; /* one per auth.clients entry, same order */
    struct lp_policy *reverse; /* likewise, allow.reverse */
    /* per client, same order: SHA-256 of its PSK as loaded now (zero for a certificate
     * client), so a reload can tell a changed key from the same one */
    uint8_t (*psk_sum)[32];
};

static lp_err client_conf(const struct lp_config *cfg, lp_tls_conf **out, char *err, size_t errlen)
{
    uint8_t key[LP_PSK_LEN], fp[LP_FINGERPRINT_LEN];
    const char *why = NULL;
    lp_err rc;

    *out = NULL;
    if (cfg->psk_file[0]) {
        if (!cfg->identity[0]) {
            snprintf(err, errlen,
                     "psk_file is set but identity is not: set identity to the "
                     "name the server lists this client under");
            return LP_ERR_INVALID;
        }
        if ((rc = lp_psk_load(cfg->psk_file, key, err, errlen)) != LP_OK)
            return rc;
        rc = lp_tls_conf_client_psk(cfg->identity, key, out, err, errlen);
        mbedtls_platform_zeroize(key, sizeof(key));
        return rc;
    }
    if (cfg->tls.cert[0]) {
        if (!cfg->server_fingerprint[0]) {
            snprintf(err, errlen,
                     "tls.cert is set but server_fingerprint is not: pin the "
                     "server's certificate (limpet keygen cert prints it)");
            return LP_ERR_INVALID;
        }
        if (lp_fingerprint_parse(cfg->server_fingerprint, fp, &why) != LP_OK) {
            snprintf(err, errlen, "server_fingerprint: %s", why ? why : "malformed");
            return LP_ERR_INVALID;
        }
        if ((rc = lp_secret_file_check(cfg->tls.key, err, errlen)) != LP_OK)
            return rc;
        return lp_tls_conf_client_cert(cfg->tls.cert, cfg->tls.key, fp, out, err, errlen);
    }
    snprintf(err, errlen,
             "no keys configured (identity and psk_file, or tls.cert, tls.key and "
             "server_fingerprint): %s",
             HOW);
    return LP_ERR_INVALID;
}

lp_err lp_auth_client_tls(const struct lp_config *cfg, lp_tls_conf **out, char *err, size_t errlen)
{
    lp_err rc = client_conf(cfg, out, err, errlen);
    if (rc == LP_OK)
        lp_tls_conf_set_record_layer(*out, (enum lp_tls_layer)cfg->tls.record_layer);
    return rc;
}

static const struct lp_auth_client *find_client(const struct lp_config *cfg, const char *identity,
                                                size_t *index)
{
    for (size_t i = 0; i < cfg->auth.n_clients; i++) {
        const struct lp_auth_client *c = &cfg->auth.clients[i];
        bool psk = c->psk_file[0] && strcmp(c->name, identity) == 0;
        /* A certificate client is known by its fingerprint in TLS, by its name after. */
        bool crt = c->cert_fingerprint[0] &&
                   (strcmp(c->cert_fingerprint, identity) == 0 || strcmp(c->name, identity) == 0);
        if (psk || crt) {
            *index = i;
            return c;
        }
    }
    return NULL;
}

/* TLS callbacks: read the identity's key file at each handshake, so a rotated key needs no
 * restart; a file that went bad refuses that identity with a log line. */
static bool psk_lookup(void *user, const char *identity, uint8_t key[LP_TLS_PSK_LEN])
{
    struct lp_auth *a = user;
    size_t i;
    char err[LP_CONFIG_ERR_MAX];
    const struct lp_auth_client *c = find_client(a->cfg, identity, &i);

    if (c == NULL || !c->psk_file[0])
        return false;
    if (lp_psk_load(c->psk_file, key, err, sizeof(err)) != LP_OK) {
        lp_warn("identity %s refused: %s", c->name, err);
        return false;
    }
    return true;
}

static bool fp_lookup(void *user, const uint8_t fp[LP_TLS_FP_LEN])
{
    struct lp_auth *a = user;
    char text[LP_FINGERPRINT_MAX];
    size_t i;
    char *o = text + snprintf(text, sizeof(text), "sha256:");

    for (unsigned k = 0; k < LP_TLS_FP_LEN; k++, o += 2)
        snprintf(o, 3, "%02x", fp[k]);
    return find_client(a->cfg, text, &i) != NULL;
}

bool lp_auth_allows_target(void *user, const char *identity, const char *host, uint16_t port)
{
    struct lp_auth *a = user;
    size_t i;

    if (find_client(a->cfg, identity, &i) == NULL)
        return false;
    return lp_policy_allows(&a->forward[i], host, port);
}

bool lp_auth_allows_bind(void *user, const char *identity, const char *host, uint16_t port)
{
    struct lp_auth *a = user;
    size_t i;

    if (find_client(a->cfg, identity, &i) == NULL)
        return false;
    /* port 0: may it listen on host at all (the kernel picks the port, checked after) */
    return port == 0 ? lp_policy_allows_host(&a->reverse[i], host)
                     : lp_policy_allows(&a->reverse[i], host, port);
}

const char *lp_auth_revoked(const struct lp_auth *old, const struct lp_auth *now,
                            const char *identity)
{
    size_t i, j;
    const struct lp_auth_client *was = find_client(old->cfg, identity, &i);
    const struct lp_auth_client *is = find_client(now->cfg, identity, &j);

    if (is == NULL)
        return "its identity was removed from the server's configuration";
    if (was == NULL) /* cannot happen: the session was admitted under old */
        return NULL;
    if (strcmp(was->cert_fingerprint, is->cert_fingerprint) != 0 ||
        memcmp(old->psk_sum[i], now->psk_sum[j], sizeof(now->psk_sum[j])) != 0)
        return "its identity's key was changed in the server's configuration";
    return NULL;
}

const char *lp_auth_name_of(void *user, const char *identity)
{
    struct lp_auth *a = user;
    size_t i;
    const struct lp_auth_client *c = find_client(a->cfg, identity, &i);
    return c ? c->name : identity;
}

bool lp_auth_allows_mcp(void *user, const char *identity, const char *name)
{
    struct lp_auth *a = user;
    size_t i;
    const struct lp_auth_client *c = find_client(a->cfg, identity, &i);

    for (size_t k = 0; c != NULL && k < c->n_mcp; k++)
        if (strcmp(c->mcp[k], name) == 0 || strcmp(c->mcp[k], "*") == 0)
            return true;
    return false;
}

/* An allow.mcp entry must name a configured server (or be "*"): a typo would otherwise
 * show up only as a refusal at the client. */
static lp_err check_mcp_names(const struct lp_config *cfg, const struct lp_auth_client *c,
                              char *err, size_t errlen)
{
    for (size_t k = 0; k < c->n_mcp; k++) {
        bool known = strcmp(c->mcp[k], "*") == 0;
        for (size_t j = 0; j < cfg->mcp.n_servers && !known; j++)
            known = strcmp(cfg->mcp.servers[j].name, c->mcp[k]) == 0;
        if (!known) {
            snprintf(err, errlen, "auth.clients.%s.allow.mcp: \"%s\": no such mcp.servers entry",
                     c->name, c->mcp[k]);
            return LP_ERR_INVALID;
        }
    }
    return LP_OK;
}

/* Every key file and allow entry is checked now: refusing at start beats refusing a client. */
static lp_err check_client(struct lp_auth *a, size_t i, char *err, size_t errlen)
{
    const struct lp_auth_client *c = &a->cfg->auth.clients[i];
    uint8_t key[LP_PSK_LEN];
    const char *why = NULL;

    if (c->psk_file[0]) {
        lp_err rc = lp_psk_load(c->psk_file, key, err, errlen);
        if (rc == LP_OK && mbedtls_sha256_ret(key, sizeof(key), a->psk_sum[i], 0) != 0)
            rc = lp_errf(LP_ERR_IO, err, errlen, "%s: cannot hash the key", c->psk_file);
        mbedtls_platform_zeroize(key, sizeof(key));
        if (rc != LP_OK)
            return rc;
    }
    if (check_mcp_names(a->cfg, c, err, errlen) != LP_OK)
        return LP_ERR_INVALID;
    lp_policy_init(&a->forward[i]);
    lp_policy_init(&a->reverse[i]);
    for (int r = 0; r < 2; r++) {
        struct lp_policy *p = r ? &a->reverse[i] : &a->forward[i];
        char *const *list = r ? c->reverse : c->forward;
        size_t n = r ? c->n_reverse : c->n_forward;
        for (size_t k = 0; k < n; k++) {
            if (lp_policy_add(p, list[k], strlen(list[k]), &why) != LP_OK) {
                snprintf(err, errlen, "auth.clients.%s.allow.%s: \"%s\": %s", c->name,
                         r ? "reverse" : "forward", list[k], why ? why : "too many entries");
                return LP_ERR_INVALID;
            }
        }
    }
    return LP_OK;
}

lp_err lp_auth_new(const struct lp_config *cfg, struct lp_auth **out, char *err, size_t errlen)
{
    lp_err rc = LP_ERR_NOMEM;
    struct lp_auth *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return LP_ERR_NOMEM;
    a->cfg = cfg;
    if (cfg->auth.n_clients == 0) {
        snprintf(err, errlen, "no client identities configured (auth.clients): %s", HOW);
        rc = LP_ERR_INVALID;
        goto out;
    }
    if ((a->forward = calloc(cfg->auth.n_clients, sizeof(*a->forward))) == NULL ||
        (a->reverse = calloc(cfg->auth.n_clients, sizeof(*a->reverse))) == NULL ||
        (a->psk_sum = calloc(cfg->auth.n_clients, sizeof(*a->psk_sum))) == NULL)
        goto out;
    for (size_t i = 0; i < cfg->auth.n_clients; i++) {
        if ((rc = check_client(a, i, err, errlen)) != LP_OK)
            goto out;
    }
    if (cfg->tls.key[0] && (rc = lp_secret_file_check(cfg->tls.key, err, errlen)) != LP_OK)
        goto out;
    rc = lp_tls_conf_server(cfg->tls.cert, cfg->tls.key, psk_lookup, fp_lookup, a, &a->tls, err,
                            errlen);
    if (rc != LP_OK)
        goto out;
    lp_tls_conf_set_record_layer(a->tls, (enum lp_tls_layer)cfg->tls.record_layer);
    *out = a;
    a = NULL;
out:
    lp_auth_free(a);
    return rc;
}

void lp_auth_free(struct lp_auth *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; a->forward && i < a->cfg->auth.n_clients; i++)
        lp_policy_clear(&a->forward[i]);
    for (size_t i = 0; a->reverse && i < a->cfg->auth.n_clients; i++)
        lp_policy_clear(&a->reverse[i]);
    free(a->forward);
    free(a->reverse);
    free(a->psk_sum);
    lp_tls_conf_free(a->tls);
    free(a);
}

lp_tls_conf *lp_auth_tls(struct lp_auth *a)
{
    return a->tls;
}
