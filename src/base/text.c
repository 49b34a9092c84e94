/* text.c — text from peers made safe to print. */
#include "limpet/text.h"

#include <string.h>

#include "limpet/hex.h"

size_t lp_utf8_len(const unsigned char *p, size_t avail)
{
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4   ? 4
               : p[0] >= 0xe0 && p[0] <= 0xef ? 3
               : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
                                              : 0;
    if (n == 0 || n > avail)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* overlong 3- and 4-byte forms, UTF-16 surrogates, and code points past U+10FFFF */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return n;
}

size_t lp_text_safe(char *out, size_t outlen, const char *in, size_t inlen, bool keep_lines)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;

    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < inlen;) {
        size_t u = p[i] >= 0x80 ? lp_utf8_len(p + i, inlen - i) : 1;
        bool c1 = u == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0;
        bool plain = u > 1 ? !c1 : (p[i] >= 0x20 && p[i] < 0x7f) || (keep_lines && p[i] == '\n');

        if (plain) {
            if (outlen - o <= u)
                break;
            memcpy(out + o, p + i, u);
            o += u;
            i += u;
            continue;
        }
        if (outlen - o <= 4)
            break;
        out[o++] = '\\';
        out[o++] = 'x';
        lp_hex_encode(p + i, 1, out + o, false);
        o += 2;
        i++; /* an escaped lead byte: its continuation bytes are judged on their own */
    }
    out[o] = '\0';
    return o;
}
