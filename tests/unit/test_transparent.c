/* test_transparent.c — -T's original destination on connections that were not redirected:
 * a loopback connection straight to the listener has none but the listener itself, and is
 * refused whether or not the listener takes TPROXY. (Redirected ones need nftables in a
 * network namespace: tests/netns/test_transparent.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "limpet/transparent.h"

struct pair {
    int lfd, cfd, afd;
};

/* A listener on loopback (kernel-chosen port), a connection to it, and its accepted end. */
static void connect_pair(const char *host, struct pair *p)
{
    struct lp_addr a, peer;
    char err[256] = "";

    assert_int_equal(lp_net_resolve(host, 0, &a, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_net_listen(&a, &p->lfd, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_net_local_addr(p->lfd, &a), LP_OK);
    assert_int_equal(lp_net_connect(&a, &p->cfd, err, sizeof(err)), LP_OK);
    for (int i = 0; i < 1000 && (p->afd = lp_net_accept(p->lfd, &peer)) < 0; i++)
        usleep(1000); /* loopback: the handshake is done at once, bounded all the same */
    assert_true(p->afd >= 0);
}

static void close_pair(struct pair *p)
{
    close(p->afd);
    close(p->cfd);
    close(p->lfd);
}

static void expect_not_redirected(const char *host, bool tproxy)
{
    struct pair p;
    struct lp_addr dst;
    char err[160] = "";

    connect_pair(host, &p);
    assert_int_equal(lp_transparent_original_dst(p.afd, tproxy, &dst, err, sizeof(err)),
                     LP_ERR_NOT_FOUND);
    if (strstr(err, "is this listener (not redirected to it)") == NULL)
        fail_msg("%s: reason \"%s\"", host, err);
    close_pair(&p);
}

static void test_transparent_refuses_a_connection_straight_to_the_listener_ipv4(void **state)
{
    (void)state;
    expect_not_redirected("127.0.0.1", false);
    expect_not_redirected("127.0.0.1", true); /* TPROXY: loopback is this host's address */
}

static void test_transparent_refuses_a_connection_straight_to_the_listener_ipv6(void **state)
{
    struct lp_addr a;
    char err[256];
    int fd;
    (void)state;
    if (lp_net_resolve("::1", 0, &a, err, sizeof(err)) != LP_OK ||
        lp_net_listen(&a, &fd, err, sizeof(err)) != LP_OK)
        skip(); /* no IPv6 loopback here */
    close(fd);
    expect_not_redirected("::1", false);
    expect_not_redirected("::1", true);
}

static void test_transparent_has_no_destination_for_a_unix_socket(void **state)
{
    int sv[2];
    struct lp_addr dst;
    char err[160] = "";
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(lp_transparent_original_dst(sv[0], false, &dst, err, sizeof(err)), LP_ERR_IO);
    assert_string_equal(err, "not a TCP/IP connection");
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transparent_refuses_a_connection_straight_to_the_listener_ipv4),
        cmocka_unit_test(test_transparent_refuses_a_connection_straight_to_the_listener_ipv6),
        cmocka_unit_test(test_transparent_has_no_destination_for_a_unix_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
