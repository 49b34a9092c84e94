/* text.h (base layer) — text from peers made safe to print: in a terminal, a log line or JSON. */
#ifndef LIMPET_TEXT_H
#define LIMPET_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The length (2..4) of the valid UTF-8 sequence of a non-ASCII character at p, reading at
 * most avail bytes, or 0 when there is none (a bad lead or continuation byte, an overlong or
 * surrogate form, a truncated sequence). */
size_t lp_utf8_len(const unsigned char *p, size_t avail);

/* Copies in[0..inlen) to out as text that cannot steer a terminal and is valid UTF-8:
 * printable ASCII as it is ('\n' too when keep_lines, for multi-line answers), valid UTF-8
 * characters as they are except U+0080..U+009F (the C1 controls, which some terminals obey),
 * and every other byte as "\xNN" (C0 controls, ESC, DEL, invalid UTF-8). Never splits an
 * escape or a character: stops where the next one would not fit. out is always
 * NUL-terminated (outlen > 0). Returns the bytes written, without the NUL. */
size_t lp_text_safe(char *out, size_t outlen, const char *in, size_t inlen, bool keep_lines);

#endif
