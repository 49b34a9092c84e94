/* auth.h — from the configuration to what TLS and the server need: the keys, the identities
 * the server accepts, and what each identity may reach. Everything is checked at start-up
 * (key files readable only by their owner, allow entries well formed), so a bad file stops
 * the process with one line instead of failing a client later. */
#ifndef LIMPET_AUTH_H
#define LIMPET_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "limpet/config.h"
#include "limpet/err.h"
#include "limpet/tls.h"

struct lp_auth;

/* Client: a TLS configuration from identity + psk_file, or tls.cert/tls.key +
 * server_fingerprint. Returns owned (free with lp_tls_conf_free). */
LP_MUST_USE lp_err lp_auth_client_tls(const struct lp_config *cfg, lp_tls_conf **out, char *err,
                                      size_t errlen);

/* Server: identities from auth.clients (borrows cfg, which must outlive it), their
 * allow-lists, and a TLS configuration for PSK and (with tls.cert/tls.key) certificate
 * clients. Returns owned (free with lp_auth_free). */
LP_MUST_USE lp_err lp_auth_new(const struct lp_config *cfg, struct lp_auth **out, char *err,
                               size_t errlen);
void lp_auth_free(struct lp_auth *a);
/* Borrowed; valid for the life of a. */
lp_tls_conf *lp_auth_tls(struct lp_auth *a);
/* May `identity` (a PSK identity, or "sha256:" + 64 lowercase hex digits of a client
 * certificate) reach host:port? Unknown identities may reach nothing. */
bool lp_auth_allows_target(void *a, const char *identity, const char *host, uint16_t port);
/* May `identity` listen on host:port for a reverse forward (its allow.reverse list)? host is
 * an IP literal. */
bool lp_auth_allows_bind(void *a, const char *identity, const char *host, uint16_t port);
/* After a reload from old to now: why a session of identity (its auth.clients name) may not
 * go on — the identity is gone, or its key changed (a PSK whose bytes differ, another
 * certificate fingerprint) — or NULL when it may. Returns a static string. */
const char *lp_auth_revoked(const struct lp_auth *old, const struct lp_auth *now,
                            const char *identity);
/* The auth.clients name of an identity (a certificate's "sha256:..." maps to its client's
 * name); the identity itself when unknown. Borrowed from the configuration. */
const char *lp_auth_name_of(void *a, const char *identity);
/* May `identity` use the MCP server `name` (allow.mcp lists it, or "*")? */
bool lp_auth_allows_mcp(void *a, const char *identity, const char *name);

#endif
