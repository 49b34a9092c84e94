/* transparent.h — a -T listener's connections: each one rides the tunnel to the destination
 * it had before the firewall sent it here, as redsocks does.
 *
 * Two ways in, both Linux:
 * - REDIRECT (nft `redirect to :PORT`, iptables -j REDIRECT): the kernel rewrote the
 *   destination to this listener; conntrack keeps the original, read with SO_ORIGINAL_DST
 *   (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6).
 * - TPROXY (nft `tproxy to :PORT`): nothing was rewritten, the accepted socket's own local
 *   address is the original destination. Needs IP_TRANSPARENT on the listener (CAP_NET_ADMIN)
 *   and the usual policy route (`ip rule add fwmark 1 lookup 100`, `ip route add local
 *   0.0.0.0/0 dev lo table 100`).
 * A connection made straight to the listener has no other destination than the listener
 * itself; it is closed with one log line rather than sent around in a loop.
 */
#ifndef LIMPET_TRANSPARENT_H
#define LIMPET_TRANSPARENT_H

#include <stdbool.h>
#include <stddef.h>

#include "limpet/net.h"
#include "limpet/session.h"

/* Asks for IP_TRANSPARENT (IPV6_TRANSPARENT) on a -T listening socket so TPROXY can deliver
 * to it. True when granted; without CAP_NET_ADMIN only REDIRECT works, which is not an error. */
bool lp_transparent_listen_prepare(int lfd);

/* Where the accepted connection fd was going: REDIRECT's original destination, or for a
 * TPROXY listener (tproxy: lp_transparent_listen_prepare said true) the local address when
 * it is not one of this host's. LP_ERR_NOT_FOUND with a reason in err when the connection
 * was made to the listener itself; LP_ERR_IO when the kernel will not say. */
LP_MUST_USE lp_err lp_transparent_original_dst(int fd, bool tproxy, struct lp_addr *dst, char *err,
                                               size_t errlen);

/* Takes fd (accepted on a -T listener). Opens a TCP stream on s to the connection's original
 * destination ("1.2.3.4:80", "[2001:db8::1]:443") as -L does, waiting up to wait ms for the
 * tunnel; a connection that was not redirected is reset and logged. from names the peer for
 * the log (borrowed). */
void lp_transparent_accept(struct lp_session *s, int fd, bool tproxy, lp_time wait,
                           const char *from);

#endif
