/* hex.h — hexadecimal digits, the one table of the program (base layer). */
#ifndef LIMPET_HEX_H
#define LIMPET_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The value of one hex digit (either case), or -1 if c is not one. */
int lp_hex_value(int c);
/* The digit for v & 15: '0'..'9', then 'a'..'f' (or 'A'..'F' when upper). Also serves radix
 * formatting up to base 16. */
char lp_hex_digit(unsigned v, bool upper);
/* Writes 2 * n digits for in[0..n) to out (no NUL; out has room for 2 * n). */
void lp_hex_encode(const uint8_t *in, size_t n, char *out, bool upper);

#endif
