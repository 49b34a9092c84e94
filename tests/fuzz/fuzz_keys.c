/* fuzz_keys.c — libFuzzer target for the text parsers of keys.c.
 *
 * Every input goes to both parsers: as the contents of a PSK file (lp_psk_parse) and, cut at
 * its first NUL, as a fingerprint string (lp_fingerprint_parse). Whatever is accepted must
 * have the only shapes the parsers promise, and must come back identical through the
 * formatter; every refusal must carry a reason and leave the output untouched.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_MAX 4096u

static void check(int ok)
{
    if (!ok)
        abort();
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void fuzz_psk(const uint8_t *data, size_t size)
{
    uint8_t key[LP_PSK_LEN];
    const char *why = NULL;

    memset(key, 0xA5, sizeof(key));
    if (lp_psk_parse(data, size, key, &why) != LP_OK) {
        check(why != NULL);
        for (size_t i = 0; i < LP_PSK_LEN; i++)
            check(key[i] == 0xA5);
        return;
    }
    check(size == LP_PSK_HEX_LEN || (size == LP_PSK_HEX_LEN + 1 && data[LP_PSK_HEX_LEN] == '\n'));
    for (size_t i = 0; i < LP_PSK_LEN; i++) {
        int hi = hex_digit(data[2 * i]), lo = hex_digit(data[2 * i + 1]);
        check(hi >= 0 && lo >= 0 && key[i] == (uint8_t)(hi << 4 | lo));
    }
}

static void fuzz_fingerprint(const uint8_t *data, size_t size)
{
    static char text[TEXT_MAX + 1];
    char again[LP_FINGERPRINT_TEXT_MAX];
    uint8_t fp[LP_FINGERPRINT_LEN], back[LP_FINGERPRINT_LEN];
    const char *why = NULL;
    size_t n = size < TEXT_MAX ? size : TEXT_MAX;

    memcpy(text, data, n);
    text[n] = '\0';
    n = strlen(text);
    memset(fp, 0xA5, sizeof(fp));
    if (lp_fingerprint_parse(text, fp, &why) != LP_OK) {
        check(why != NULL);
        for (size_t i = 0; i < LP_FINGERPRINT_LEN; i++)
            check(fp[i] == 0xA5);
        return;
    }
    check(n == 7 + 64 || n == 7 + 95);
    check(lp_fingerprint_format(fp, again, sizeof(again)) == LP_OK);
    check(strlen(again) == LP_FINGERPRINT_TEXT_MAX - 1);
    if (n == 7 + 95)
        check(strcasecmp(again, text) == 0); /* the canonical form, up to case */
    check(lp_fingerprint_parse(again, back, &why) == LP_OK);
    check(memcmp(fp, back, sizeof(fp)) == 0);
}

/* Names become file names and YAML keys: an accepted one needs no quoting anywhere. */
static void fuzz_name(const uint8_t *data, size_t size)
{
    char name[LP_KEYS_NAME_MAX + 8];
    size_t n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;

    memcpy(name, data, n);
    name[n] = '\0';
    if (!lp_keys_name_valid(name))
        return;
    check(name[0] != '\0' && name[0] != '.' && name[0] != '-' && strlen(name) <= LP_KEYS_NAME_MAX);
    check(strpbrk(name, "/:#\"' \\\n,=") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_psk(data, size);
    fuzz_fingerprint(data, size);
    fuzz_name(data, size);
    return 0;
}
