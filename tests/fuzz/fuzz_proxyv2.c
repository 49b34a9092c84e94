/* fuzz_proxyv2.c — libFuzzer target for the PROXY protocol v2 parser (proxyv2.h).
 *
 * Input: the bytes a balancer (or anyone) sends first. Properties that abort on failure:
 * - LP_OK: 16 <= len <= min(size, LP_PROXY_MAX), a family only with PROXY, and every shorter
 *   prefix of those len bytes is LP_ERR_TRUNCATED (how the bytes arrive never matters), while
 *   the same len bytes alone parse to the same header;
 * - a refusal always says why; LP_ERR_TRUNCATED never on a prefix that already fails the
 *   signature, and never once size reaches LP_PROXY_MAX;
 * - lp_proxy_looks_like is true for every input that parses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/proxyv2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lp_proxy_hdr h, again;
    const char *why = NULL;
    lp_err rc = lp_proxy_parse(data, size, &h, &why);

    if (rc == LP_ERR_TRUNCATED) {
        check(size < LP_PROXY_MAX);
        return 0;
    }
    if (rc != LP_OK) {
        check(why != NULL && why[0] != '\0');
        return 0;
    }
    check(h.len >= LP_PROXY_FIXED_LEN && h.len <= size && h.len <= LP_PROXY_MAX);
    check(!(h.local && h.family != LP_PROXY_NONE));
    check(lp_proxy_looks_like(data, size));
    for (size_t k = 0; k < h.len; k++)
        check(lp_proxy_parse(data, k, &again, &why) == LP_ERR_TRUNCATED);
    check(lp_proxy_parse(data, h.len, &again, &why) == LP_OK);
    check(memcmp(&again, &h, sizeof(h)) == 0);
    return 0;
}
