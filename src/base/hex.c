/* hex.c — hexadecimal digits. */
#include "limpet/hex.h"

int lp_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char lp_hex_digit(unsigned v, bool upper)
{
    return (upper ? "0123456789ABCDEF" : "0123456789abcdef")[v & 15u];
}

void lp_hex_encode(const uint8_t *in, size_t n, char *out, bool upper)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = lp_hex_digit(in[i] >> 4, upper);
        out[2 * i + 1] = lp_hex_digit(in[i], upper);
    }
}
