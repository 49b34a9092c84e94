/* transparent.c — -T: firewall-redirected connections carried to their original destination.
 * See transparent.h for REDIRECT and TPROXY. */
#include "limpet/transparent.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
/* After <netinet/in.h>: the kernel headers then leave the libc definitions alone. */
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "limpet/stream.h"
#include "limpet/log.h"

bool lp_transparent_listen_prepare(int lfd)
{
    struct lp_addr a;
    int one = 1;

    if (lp_net_local_addr(lfd, &a) != LP_OK)
        return false;
    if (a.sa.ss_family == AF_INET6)
        return setsockopt(lfd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == 0;
    return setsockopt(lfd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) == 0;
}

static bool same_endpoint(const struct lp_addr *a, const struct lp_addr *b)
{
    uint8_t x[16], y[16];
    size_t n = lp_net_addr_bytes(a, x);

    if (a->sa.ss_family != b->sa.ss_family || n == 0 || lp_net_addr_bytes(b, y) != n ||
        memcmp(x, y, n) != 0)
        return false;
    if (a->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->sa)->sin_port ==
               ((const struct sockaddr_in *)&b->sa)->sin_port;
    return ((const struct sockaddr_in6 *)&a->sa)->sin6_port ==
           ((const struct sockaddr_in6 *)&b->sa)->sin6_port;
}

/* True when a's address belongs to this host: binding it works without IP_TRANSPARENT. A
 * TPROXY'd connection's local address is someone else's, so this tells the two apart. */
static bool address_is_local(const struct lp_addr *a)
{
    struct lp_addr probe = *a;
    int s = socket(a->sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool local;

    if (s < 0)
        return true; /* cannot tell: the safe answer refuses the connection */
    if (probe.sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&probe.sa)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&probe.sa)->sin6_port = 0;
    local = bind(s, (const struct sockaddr *)&probe.sa, probe.len) == 0 || errno != EADDRNOTAVAIL;
    close(s);
    return local;
}

/* REDIRECT: conntrack's record of the destination before NAT. Without a NAT entry the kernel
 * answers ENOENT (or gives the local address back, which the caller treats alike). */
static bool redirected_dst(int fd, sa_family_t family, struct lp_addr *dst)
{
    memset(dst, 0, sizeof(*dst));
    if (family == AF_INET) {
        dst->len = sizeof(struct sockaddr_in);
        return getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst->sa, &dst->len) == 0 &&
               dst->sa.ss_family == AF_INET;
    }
    dst->len = sizeof(struct sockaddr_in6);
    return getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst->sa, &dst->len) == 0 &&
           dst->sa.ss_family == AF_INET6;
}

lp_err lp_transparent_original_dst(int fd, bool tproxy, struct lp_addr *dst, char *err,
                                   size_t errlen)
{
    struct lp_addr local;
    char name[64];

    if (lp_net_local_addr(fd, &local) != LP_OK) {
        snprintf(err, errlen, "cannot read the local address: %s", strerror(errno));
        return LP_ERR_IO;
    }
    if (local.sa.ss_family != AF_INET && local.sa.ss_family != AF_INET6) {
        snprintf(err, errlen, "not a TCP/IP connection");
        return LP_ERR_IO;
    }
    if (redirected_dst(fd, local.sa.ss_family, dst) && !same_endpoint(dst, &local))
        return LP_OK;
    if (tproxy && !address_is_local(&local)) {
        *dst = local;
        return LP_OK;
    }
    snprintf(err, errlen, "its destination %s is this listener (not redirected to it)",
             lp_net_addr_str(&local, name, sizeof(name)));
    return LP_ERR_NOT_FOUND;
}

void lp_transparent_accept(struct lp_session *s, int fd, bool tproxy, lp_time wait,
                           const char *from)
{
    struct lp_addr dst;
    char target[64], why[160];

    if (lp_transparent_original_dst(fd, tproxy, &dst, why, sizeof(why)) != LP_OK) {
        lp_warn("sess=%s transparent: closed the connection from %s: %s", s->tag, from, why);
        lp_net_close_reset(fd);
        return;
    }
    lp_net_addr_str(&dst, target, sizeof(target));
    lp_stream_open_local(s, fd, LP_KIND_TCP, target, wait, from);
}
