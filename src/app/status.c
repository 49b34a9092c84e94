/* status.c — `limpet status`: ask a running limpet over its control socket and print the
 * answer. A short-lived command, so plain blocking sockets with timeouts: the request is one
 * line, the answer is read to EOF (at most LP_CTL_ANSWER_MAX and a little).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <dirent.h>
#include <limits.h>
#include <sys/un.h>
#include <unistd.h>

#include "limpet/config.h"
#include "limpet/ctl.h"
#include "limpet/text.h"

#include <jansson.h>

#define ASK_TIMEOUT_S 10 /* per send or receive call */

/* One question to one socket. Returns the answer (owned, NUL-terminated) or NULL with the
 * reason in why. */
static char *ask(const char *path, const char *request, char *why, size_t whylen)
{
    struct sockaddr_un sun;
    struct timeval tv = {.tv_sec = ASK_TIMEOUT_S};
    size_t cap = LP_CTL_ANSWER_MAX + 4096, len = 0;
    char *buf = NULL;
    int fd = -1;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(why, whylen, "path too long");
        return NULL;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
        send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request))
        goto fail;
    if ((buf = malloc(cap + 1)) == NULL) {
        errno = ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0 || (len += (size_t)n) == cap)
            break;
    }
    close(fd);
    buf[len] = '\0';
    if (len == 0) {
        snprintf(why, whylen, "closed without an answer (busy?)");
        free(buf);
        return NULL;
    }
    return buf;
fail:
    snprintf(why, whylen, "%s", errno == EAGAIN ? "no answer in time" : strerror(errno));
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

#define STATUS_MAX_SOCKETS 256 /* default sockets asked at most */

static int by_role_then_name(const void *a, const void *b)
{
    const char *x = strrchr(*(const char *const *)a, '/') + 1;
    const char *y = strrchr(*(const char *const *)b, '/') + 1;
    bool xs = strncmp(x, "server-", 7) == 0, ys = strncmp(y, "server-", 7) == 0;

    if (xs != ys)
        return xs ? -1 : 1; /* servers first */
    return strcmp(x, y);
}

/* Every ROLE-PID.sock in the default directory, servers first (owned strings). */
static size_t default_sockets(char **paths, size_t max, char *dir, size_t dirlen, char *why,
                              size_t whylen)
{
    struct dirent *e;
    size_t n = 0;
    DIR *d;

    lp_ctl_default_dir(dir, dirlen);
    if ((d = opendir(dir)) == NULL)
        return 0;
    /* Without XDG_RUNTIME_DIR the directory is in /tmp, where another user may have made it
     * first: ask nothing there (its sockets could answer anything). */
    if (!lp_ctl_dir_trusted(dir, why, whylen)) {
        closedir(d);
        return 0;
    }
    while ((e = readdir(d)) != NULL && n < max) {
        size_t len = strlen(e->d_name);
        if ((strncmp(e->d_name, "server-", 7) != 0 && strncmp(e->d_name, "client-", 7) != 0) ||
            len < 6 || strcmp(e->d_name + len - 5, ".sock") != 0)
            continue;
        size_t need = strlen(dir) + 1 + len + 1;
        if ((paths[n] = malloc(need)) == NULL)
            break;
        snprintf(paths[n++], need, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(paths, n, sizeof(*paths), by_role_then_name);
    return n;
}

/* Whatever answers on a socket may be hostile (another user's process, a stream target a peer
 * chose): nothing it sends reaches the terminal as a control sequence. */
static void print_safe(FILE *f, const char *path, const char *text)
{
    size_t len = strlen(text), cap = len * 4 + 1;
    char *safe = malloc(cap);

    if (safe == NULL) {
        fprintf(stderr, "limpet status: out of memory\n");
        return;
    }
    lp_text_safe(safe, cap, text, len, true);
    if (path)
        fprintf(f, "limpet status: %s: %s", path, safe);
    else
        fputs(safe, f);
    free(safe);
}

/* Asks one socket. Text: prints the answer. JSON: adds the answer's document to `all` (a
 * list), so the whole run prints one document that tools can parse. 1 answered, 0 not (why
 * says so), -1 an error. */
static int ask_one(const char *path, json_t *all, char *why, size_t whylen)
{
    char *text = ask(path, all ? "status json\n" : "status\n", why, whylen);
    json_error_t jerr;
    json_t *doc;

    if (text == NULL)
        return 0;
    if (strncmp(text, "error:", 6) == 0) {
        print_safe(stderr, path, text);
        free(text);
        return -1;
    }
    if (all == NULL) {
        print_safe(stdout, NULL, text);
        free(text);
        return 1;
    }
    doc = json_loads(text, 0, &jerr);
    free(text);
    if (doc == NULL || json_array_append_new(all, doc) != 0) {
        fprintf(stderr, "limpet status: %s: the answer is not JSON: %s (line %d)\n", path,
                jerr.text, jerr.line);
        return -1;
    }
    return 1;
}

/* {"processes": [ each process's status document, servers first ]} on one line. */
static int print_all(json_t *all)
{
    json_t *top = json_pack("{s:O}", "processes", all);
    char *text = top ? json_dumps(top, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

    json_decref(top);
    if (text == NULL) {
        fprintf(stderr, "limpet status: out of memory\n");
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}

int lp_status_main(const char *control, bool json, const struct lp_config *cfg)
{
    char *paths[STATUS_MAX_SOCKETS];
    char dir[PATH_MAX], tried[1024] = "", why[256];
    size_t n = 0, answered = 0;
    bool owned = false;
    int rc = 1;
    json_t *all = json ? json_array() : NULL;

    if (json && all == NULL) {
        fprintf(stderr, "limpet status: out of memory\n");
        return 1;
    }
    if (control || cfg->control.path[0]) {
        paths[n++] = (char *)(control ? control : cfg->control.path);
    } else {
        why[0] = '\0';
        n = default_sockets(paths, STATUS_MAX_SOCKETS, dir, sizeof(dir), why, sizeof(why));
        owned = true;
        if (n == 0 && why[0])
            snprintf(tried, sizeof(tried), "%.1000s", why);
        else if (n == 0)
            snprintf(tried, sizeof(tried), "no sockets in %.900s", dir);
    }
    for (size_t i = 0; i < n; i++) {
        int r = ask_one(paths[i], all, why, sizeof(why));
        size_t used = strlen(tried);
        if (r < 0)
            goto out;
        /* A default socket nobody listens on was left by a process that was killed. */
        if (r == 0 && owned && strcmp(why, strerror(ECONNREFUSED)) == 0 && unlink(paths[i]) == 0)
            continue;
        if (r == 0)
            snprintf(tried + used, sizeof(tried) - used, "%s%s (%s)", used ? ", " : "", paths[i],
                     why);
        answered += r == 1;
    }
    rc = answered > 0 ? 0 : 1;
    if (answered == 0)
        fprintf(stderr, "limpet status: no limpet process answers: %s\n",
                tried[0] ? tried : "no control sockets");
    else if (all != NULL)
        rc = print_all(all);
out:
    json_decref(all);
    for (size_t i = 0; owned && i < n; i++)
        free(paths[i]);
    return rc;
}
