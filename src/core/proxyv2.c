/* proxyv2.c — the PROXY protocol v2 header (proxyv2.h). */
#include "limpet/proxyv2.h"

#include <string.h>

#include "limpet/wire.h"

static const uint8_t SIG[LP_PROXY_SIG_LEN] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                              0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
#define PP2_TYPE_CRC32C 0x03u
#define ADDR_INET 12u
#define ADDR_INET6 36u
#define ADDR_UNIX 216u

uint32_t lp_crc32c(uint32_t crc, const uint8_t *in, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= in[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

bool lp_proxy_looks_like(const uint8_t *in, size_t n)
{
    static const char v1[] = "PROXY ";
    size_t k2 = n < LP_PROXY_SIG_LEN ? n : LP_PROXY_SIG_LEN, k1 = n < 6 ? n : 6;

    return n > 0 && (memcmp(in, SIG, k2) == 0 || memcmp(in, v1, k1) == 0);
}

/* The CRC32C TLV's value is computed over the whole header with that value zeroed. */
static bool crc_matches(const uint8_t *hdr, size_t len, size_t value_off, uint32_t want)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t crc = lp_crc32c(0, hdr, value_off);

    crc = lp_crc32c(crc, zero, sizeof(zero));
    crc = lp_crc32c(crc, hdr + value_off + 4, len - value_off - 4);
    return crc == want;
}

/* TLVs in hdr[off..len): they must tile it exactly; a CRC32C one must be 4 bytes and match. */
static const char *check_tlvs(const uint8_t *hdr, size_t off, size_t len)
{
    struct lp_rd r = lp_rd_init(hdr + off, len - off);

    while (lp_rd_remaining(&r) > 0) {
        uint8_t type;
        uint16_t vlen;
        size_t value_off;
        lp_rd_u8(&r, &type);
        lp_rd_u16(&r, &vlen);
        value_off = off + r.off;
        if (r.bad || lp_rd_view(&r, vlen) == NULL)
            return "a TLV runs past the header's length";
        if (type == PP2_TYPE_CRC32C &&
            (vlen != 4 || !crc_matches(hdr, len, value_off, lp_load_u32(hdr + value_off))))
            return "its CRC32C does not match";
    }
    return NULL;
}

/* The address block of a PROXY command: the family and its addresses, or a reason. */
static const char *read_addresses(struct lp_rd *r, uint8_t fam, size_t body, struct lp_proxy_hdr *h)
{
    uint8_t af = fam >> 4, proto = fam & 0x0f;
    size_t need = af == 1 ? ADDR_INET : af == 2 ? ADDR_INET6 : af == 3 ? ADDR_UNIX : 0;

    if (af > 3 || proto > 2)
        return "unknown address family or transport";
    if (body < need)
        return "its length is shorter than its address block";
    if (af == 0) /* UNSPEC: no addresses; the spec says to keep the connection's own */
        return NULL;
    if (af == 3 || proto != 1)
        return "it is not a TCP connection over IPv4 or IPv6";
    h->family = af == 1 ? LP_PROXY_INET : LP_PROXY_INET6;
    lp_rd_bytes(r, h->src, af == 1 ? 4 : 16);
    lp_rd_bytes(r, h->dst, af == 1 ? 4 : 16);
    lp_rd_u16(r, &h->sport);
    lp_rd_u16(r, &h->dport);
    return NULL;
}

lp_err lp_proxy_parse(const uint8_t *in, size_t n, struct lp_proxy_hdr *h, const char **why)
{
    struct lp_rd r = lp_rd_init(in, n);
    uint8_t sig[LP_PROXY_SIG_LEN], ver_cmd, fam;
    uint16_t body;
    size_t total;

    memset(h, 0, sizeof(*h));
    *why = NULL;
    if (n == 0)
        return LP_ERR_TRUNCATED;
    if (memcmp(in, SIG, n < LP_PROXY_SIG_LEN ? n : LP_PROXY_SIG_LEN) != 0) {
        *why = "no PROXY protocol v2 signature";
        return LP_ERR_MALFORMED;
    }
    lp_rd_bytes(&r, sig, sizeof(sig));
    lp_rd_u8(&r, &ver_cmd);
    lp_rd_u8(&r, &fam);
    lp_rd_u16(&r, &body);
    if (r.bad)
        return LP_ERR_TRUNCATED;
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0f) > 1) {
        *why = (ver_cmd >> 4) != 2 ? "not version 2" : "unknown command";
        return LP_ERR_MALFORMED;
    }
    total = LP_PROXY_FIXED_LEN + body;
    if (total > LP_PROXY_MAX) {
        *why = "longer than this server accepts (1024 bytes)";
        return LP_ERR_TOO_BIG;
    }
    if (n < total)
        return LP_ERR_TRUNCATED;
    h->local = (ver_cmd & 0x0f) == 0;
    r = lp_rd_init(in, total);
    (void)lp_rd_view(&r, LP_PROXY_FIXED_LEN); /* read above */
    if (!h->local && (*why = read_addresses(&r, fam, body, h)) != NULL)
        return LP_ERR_MALFORMED;
    if (h->local) { /* a health check: skip its address block, whatever it holds */
        size_t skip = (fam >> 4) == 1   ? ADDR_INET
                      : (fam >> 4) == 2 ? ADDR_INET6
                      : (fam >> 4) == 3 ? ADDR_UNIX
                                        : 0;
        (void)lp_rd_view(&r, skip <= body ? skip : body);
    }
    if (r.bad) {
        *why = "its length is shorter than its address block";
        return LP_ERR_MALFORMED;
    }
    if ((*why = check_tlvs(in, total - lp_rd_remaining(&r), total)) != NULL)
        return LP_ERR_MALFORMED;
    h->len = total;
    return LP_OK;
}
