/* test_net.c — the unix socket half of net.h: the listening file's mode, stale and live
 * sockets at the path, files that are not sockets, removal by its owner only, path limits.
 * Real sockets in a private temporary directory; nothing waits on a clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "limpet/net.h"

struct dir {
    char path[64];
    char sock[96];
};

static int dir_setup(void **state)
{
    struct dir *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -1;
    snprintf(d->path, sizeof(d->path), "/tmp/lpnetXXXXXX");
    if (mkdtemp(d->path) == NULL) {
        free(d);
        return -1;
    }
    snprintf(d->sock, sizeof(d->sock), "%s/app.sock", d->path);
    *state = d;
    return 0;
}

static int dir_teardown(void **state)
{
    struct dir *d = *state;
    unlink(d->sock);
    rmdir(d->path);
    free(d);
    return 0;
}

/* A bound socket at path that nobody accepts on any more: what a killed process leaves. */
static void leave_stale_socket(const char *path)
{
    struct lp_addr a;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(s >= 0);
    assert_int_equal(lp_net_unix_addr(path, &a), LP_OK);
    assert_int_equal(bind(s, (const struct sockaddr *)&a.sa, a.len), 0);
    close(s);
}

static void test_net_unix_listener_file_is_0600_and_accepts(void **state)
{
    struct dir *d = *state;
    struct lp_unix_file file;
    struct lp_addr a, peer;
    struct stat st;
    char err[256] = "";
    int lfd, cfd, afd;

    assert_int_equal(lp_net_listen_unix(d->sock, &lfd, &file, err, sizeof(err)), LP_OK);
    assert_int_equal(lstat(d->sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(lp_net_unix_addr(d->sock, &a), LP_OK);
    assert_int_equal(lp_net_connect(&a, &cfd, err, sizeof(err)), LP_OK);
    afd = lp_net_accept(lfd, &peer);
    assert_true(afd >= 0);
    close(afd);
    close(cfd);
    lp_net_unlink_unix(d->sock, &file);
    close(lfd);
    assert_int_equal(lstat(d->sock, &st), -1);
}

static void test_net_unix_listen_replaces_a_stale_socket(void **state)
{
    struct dir *d = *state;
    struct lp_unix_file file;
    char err[256] = "";
    int lfd;

    leave_stale_socket(d->sock);
    if (lp_net_listen_unix(d->sock, &lfd, &file, err, sizeof(err)) != LP_OK)
        fail_msg("stale socket not replaced: %s", err);
    lp_net_unlink_unix(d->sock, &file);
    close(lfd);
}

static void test_net_unix_listen_refuses_a_live_socket(void **state)
{
    struct dir *d = *state;
    struct lp_unix_file file, other;
    char err[256] = "";
    int lfd, second = 7;

    assert_int_equal(lp_net_listen_unix(d->sock, &lfd, &file, err, sizeof(err)), LP_OK);
    assert_int_equal(lp_net_listen_unix(d->sock, &second, &other, err, sizeof(err)), LP_ERR_IO);
    assert_int_equal(second, -1);
    assert_non_null(strstr(err, "another process is listening there"));
    assert_non_null(strstr(err, d->sock));
    lp_net_unlink_unix(d->sock, &file);
    close(lfd);
}

static void test_net_unix_listen_leaves_a_file_that_is_not_a_socket(void **state)
{
    struct dir *d = *state;
    struct lp_unix_file file;
    struct stat st;
    char err[256] = "";
    int lfd;
    FILE *f = fopen(d->sock, "w");

    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    assert_int_equal(lp_net_listen_unix(d->sock, &lfd, &file, err, sizeof(err)), LP_ERR_IO);
    assert_non_null(strstr(err, "exists and is not a socket"));
    assert_int_equal(lstat(d->sock, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 8);
}

/* After our socket file was replaced by someone else's, exit must not remove theirs, even
 * when the file system gave the new file the old one's inode number. */
static void test_net_unix_unlink_removes_only_its_own_file(void **state)
{
    struct dir *d = *state;
    struct lp_unix_file file;
    struct stat st;
    char err[256] = "";
    int lfd;

    assert_int_equal(lp_net_listen_unix(d->sock, &lfd, &file, err, sizeof(err)), LP_OK);
    assert_int_equal(unlink(d->sock), 0);
    leave_stale_socket(d->sock); /* another process's file now */
    lp_net_unlink_unix(d->sock, &file);
    assert_int_equal(lstat(d->sock, &st), 0);
    close(lfd);
}

static void test_net_unix_addr_takes_107_bytes_and_no_more(void **state)
{
    char path[128];
    struct lp_addr a;
    char shown[160];
    (void)state;

    memset(path, 'p', sizeof(path));
    path[0] = '/';
    path[107] = '\0';
    assert_int_equal(lp_net_unix_addr(path, &a), LP_OK);
    assert_int_equal(a.sa.ss_family, AF_UNIX);
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + 108);
    lp_net_addr_str(&a, shown, sizeof(shown));
    assert_int_equal(strncmp(shown, "unix:/ppp", 9), 0);
    assert_int_equal(strlen(shown), 5 + 107);
    path[107] = 'p';
    path[108] = '\0';
    assert_int_equal(lp_net_unix_addr(path, &a), LP_ERR_INVALID);
    assert_int_equal(lp_net_unix_addr("", &a), LP_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_net_unix_listener_file_is_0600_and_accepts, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_replaces_a_stale_socket, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_refuses_a_live_socket, dir_setup,
                                        dir_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_listen_leaves_a_file_that_is_not_a_socket,
                                        dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_net_unix_unlink_removes_only_its_own_file, dir_setup,
                                        dir_teardown),
        cmocka_unit_test(test_net_unix_addr_takes_107_bytes_and_no_more),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
