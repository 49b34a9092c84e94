/* keys.c — PSK files, self-signed certificates and their fingerprints (see keys.h).
 *
 * Files are opened once and checked on the open descriptor (fstat), so what is checked is
 * what is read. Secret files are created with O_CREAT|O_EXCL: an existing file, or a link
 * planted where the key should go, is never written through or replaced.
 */
#include "limpet/keys.h"
#include "limpet/hex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#define CERT_FILE_MAX (64u * 1024u)
#define CERT_DER_MAX 2048u /* a P-256 certificate with a 64-character CN is ~450 bytes */
#define PEM_MAX 4096u
#define PSK_FILE_CAP (LP_PSK_HEX_LEN + 64u) /* room to tell "too long" from the reasons */
#define SERIAL_LEN 16u
#define HUNDRED_YEARS 100

static const char pem_crt_begin[] = "-----BEGIN CERTIFICATE-----\n";
static const char pem_crt_end[] = "-----END CERTIFICATE-----\n";

static const char *mbed_reason(int ret, char *buf, size_t len)
{
    mbedtls_strerror(ret, buf, len);
    return buf;
}

/* ---- secret files ------------------------------------------------------------------------ */

static bool shell_safe(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("/._-+,:@%=", c) != NULL;
}

/* path as one shell word, so the suggested chmod can be pasted even for odd names. */
static void shell_word(const char *path, char *out, size_t outlen)
{
    size_t n = 0;
    bool plain = path[0] != '\0';

    for (const char *p = path; *p != '\0' && plain; p++)
        plain = shell_safe(*p);
    if (plain) {
        snprintf(out, outlen, "%s", path);
        return;
    }
    /* Each source byte takes at most 4 output bytes ('\''); stop while 2 are left for "'". */
    out[n++] = '\'';
    for (const char *p = path; *p != '\0' && n + 6 < outlen; p++) {
        if (*p == '\'') {
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            out[n++] = *p;
        }
    }
    out[n++] = '\'';
    out[n] = '\0';
}

/* The rules ssh applies to a private key: a regular file nobody but its owner can touch. */
static lp_err check_mode(const char *path, const struct stat *st, char *err, size_t errlen)
{
    char word[512];

    if (!S_ISREG(st->st_mode))
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s: not a regular file", path);
    if ((st->st_mode & 077) != 0) {
        shell_word(path, word, sizeof(word));
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "%s: permissions %04o are too open; run: chmod 600 %s", path,
                       (unsigned)(st->st_mode & 07777), word);
    }
    return LP_OK;
}

/* Opens a secret file for reading after the checks. The stat() before open() keeps us from
 * opening a FIFO or a device at all (O_NONBLOCK covers a FIFO swapped in between); the
 * fstat() after it is the check that counts, as it describes the file we will read. */
static lp_err open_secret(const char *path, int *fdp, char *err, size_t errlen)
{
    struct stat st;
    lp_err rc;
    int fd;

    *fdp = -1;
    if (stat(path, &st) != 0)
        return lp_errf(LP_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
    if ((rc = check_mode(path, &st, err, errlen)) != LP_OK)
        return rc;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return lp_errf(LP_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = lp_errf(LP_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if ((rc = check_mode(path, &st, err, errlen)) != LP_OK) {
        close(fd);
        return rc;
    }
    *fdp = fd;
    return LP_OK;
}

/* Reads fd to its end into buf, leaving room for a NUL. LP_ERR_TOO_BIG when more than
 * cap - 1 bytes are there. Each read makes progress or ends the loop; EINTR is bounded. */
static lp_err read_all(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int interrupted = 0;
    uint8_t probe;

    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR && ++interrupted < 100)
            continue;
        if (r < 0)
            return LP_ERR_IO;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n == cap - 1 && read(fd, &probe, 1) != 0)
        return LP_ERR_TOO_BIG; /* more bytes (or an error) past the cap */
    buf[n] = '\0';
    *len = n;
    return LP_OK;
}

lp_err lp_secret_file_check(const char *path, char *err, size_t errlen)
{
    int fd;
    lp_err rc = open_secret(path, &fd, err, errlen);

    if (rc == LP_OK)
        close(fd);
    return rc;
}

lp_err lp_secret_file_read(const char *path, uint8_t *buf, size_t cap, size_t *len, char *err,
                           size_t errlen)
{
    int fd;
    lp_err rc;

    *len = 0;
    if (cap < 2)
        return lp_errf(LP_ERR_INVALID, err, errlen, "%s: no room to read it", path);
    if ((rc = open_secret(path, &fd, err, errlen)) != LP_OK)
        return rc;
    rc = read_all(fd, buf, cap, len);
    if (rc == LP_ERR_TOO_BIG)
        rc = lp_errf(rc, err, errlen, "%s: larger than %zu bytes; is it the right file?", path,
                     cap - 1);
    else if (rc != LP_OK)
        rc = lp_errf(rc, err, errlen, "%s: %s", path, strerror(errno));
    close(fd);
    if (rc != LP_OK) {
        mbedtls_platform_zeroize(buf, cap);
        *len = 0;
    }
    return rc;
}

/* ---- PSK files --------------------------------------------------------------------------- */

/* The reason a byte of the body (the text less one final newline) is refused, or NULL. */
static const char *psk_bad_byte(uint8_t c)
{
    if (c == '\n')
        return "has more than one line (expected 64 hex digits and one newline)";
    if (c == '\r')
        return "has a CR before the newline (Windows line ending); save it with \\n only";
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f')
        return "contains whitespace (expected 64 hex digits and one newline, nothing else)";
    if (lp_hex_value(c) < 0)
        return "contains a character that is not a hex digit";
    return NULL;
}

lp_err lp_psk_parse(const uint8_t *text, size_t len, uint8_t key[LP_PSK_LEN], const char **why)
{
    uint8_t k[LP_PSK_LEN];

    if (len == 0) {
        *why = "is empty (expected 64 hex digits and one newline)";
        return LP_ERR_MALFORMED;
    }
    if (text[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len; i++) {
        if ((*why = psk_bad_byte(text[i])) != NULL)
            return LP_ERR_MALFORMED;
    }
    if (len != LP_PSK_HEX_LEN) {
        *why = len < LP_PSK_HEX_LEN ? "has fewer than 64 hex digits (a key is 32 bytes)"
                                    : "has more than 64 hex digits (a key is 32 bytes)";
        return LP_ERR_MALFORMED;
    }
    for (size_t i = 0; i < LP_PSK_LEN; i++)
        k[i] = (uint8_t)(lp_hex_value(text[2 * i]) << 4 | lp_hex_value(text[2 * i + 1]));
    memcpy(key, k, LP_PSK_LEN);
    mbedtls_platform_zeroize(k, sizeof(k));
    *why = NULL;
    return LP_OK;
}

lp_err lp_psk_load(const char *path, uint8_t key[LP_PSK_LEN], char *err, size_t errlen)
{
    uint8_t text[PSK_FILE_CAP];
    size_t len = 0;
    const char *why = NULL;
    lp_err rc = lp_secret_file_read(path, text, sizeof(text), &len, err, errlen);

    if (rc == LP_ERR_TOO_BIG) {
        rc = lp_errf(LP_ERR_MALFORMED, err, errlen,
                     "%s: too long for a PSK file (expected 64 hex digits and one newline)", path);
    } else if (rc == LP_OK && (rc = lp_psk_parse(text, len, key, &why)) != LP_OK) {
        rc = lp_errf(rc, err, errlen, "%s: %s", path, why);
    }
    mbedtls_platform_zeroize(text, sizeof(text));
    return rc;
}

/* ---- randomness and new files ------------------------------------------------------------ */

struct rng {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

/* Always pair with rng_free, even when this fails. */
static int rng_init(struct rng *r, const char *personal)
{
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    return mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                                 (const unsigned char *)personal, strlen(personal));
}

static void rng_free(struct rng *r)
{
    mbedtls_ctr_drbg_free(&r->drbg); /* both wipe their state */
    mbedtls_entropy_free(&r->entropy);
}

/* Creates path for writing; never follows or replaces what is there (O_EXCL also refuses a
 * symbolic link, even a dangling one). */
static lp_err create_new(const char *path, mode_t mode, int *fdp, char *err, size_t errlen)
{
    *fdp = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, mode);
    if (*fdp >= 0)
        return LP_OK;
    if (errno == EEXIST)
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "%s: already exists; not overwriting it (move it away or choose another "
                       "name)",
                       path);
    return lp_errf(LP_ERR_IO, err, errlen, "%s: cannot create: %s", path, strerror(errno));
}

/* Writes all of buf, syncs and closes fd (always closed, *fdp set to -1). A key that is
 * reported written must survive a crash, hence the fsync. */
static lp_err finish_file(const char *path, int *fdp, const void *buf, size_t len, char *err,
                          size_t errlen)
{
    const uint8_t *p = buf;
    int fd = *fdp, interrupted = 0;
    bool ok = true;

    *fdp = -1;
    while (len > 0 && ok) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR && ++interrupted < 100)
            continue;
        ok = w > 0;
        if (w == 0)
            errno = EIO;
        if (ok) {
            p += w;
            len -= (size_t)w;
        }
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok)
        return lp_errf(LP_ERR_IO, err, errlen, "%s: cannot write: %s", path, strerror(errno));
    return LP_OK;
}

/* Undoes create_new after a failure: the caller owns the name only while *fdp >= 0 or
 * `created` says so. */
static void discard_new(const char *path, int *fdp, bool created)
{
    if (*fdp >= 0)
        close(*fdp);
    *fdp = -1;
    if (created)
        unlink(path);
}

lp_err lp_psk_generate(const char *path, char *err, size_t errlen)
{
    uint8_t key[LP_PSK_LEN];
    char text[LP_PSK_HEX_LEN + 1];
    struct rng r;
    int fd = -1, ret;
    lp_err rc;

    if ((rc = create_new(path, 0600, &fd, err, errlen)) != LP_OK)
        return rc;
    if ((ret = rng_init(&r, "limpet psk")) != 0 ||
        (ret = mbedtls_ctr_drbg_random(&r.drbg, key, sizeof(key))) != 0) {
        char why[128];
        rc = lp_errf(LP_ERR_IO, err, errlen, "%s: no random bytes: %s", path,
                     mbed_reason(ret, why, sizeof(why)));
        goto out;
    }
    lp_hex_encode(key, LP_PSK_LEN, text, false);
    text[LP_PSK_HEX_LEN] = '\n';
    rc = finish_file(path, &fd, text, sizeof(text), err, errlen);
out:
    discard_new(path, &fd, rc != LP_OK);
    rng_free(&r);
    mbedtls_platform_zeroize(key, sizeof(key));
    mbedtls_platform_zeroize(text, sizeof(text));
    return rc;
}

/* ---- certificates ------------------------------------------------------------------------ */

bool lp_keys_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL || name[0] == '\0' || name[0] == '.' || name[0] == '-')
        return false;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= LP_KEYS_NAME_MAX)
            return false;
    }
    return true;
}

/* Reads a (public) file whole into buf with a NUL after it; no permission rules. */
static lp_err read_public(const char *path, uint8_t *buf, size_t cap, size_t *len, char *err,
                          size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    lp_err rc;

    if (fd < 0)
        return lp_errf(LP_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = lp_errf(LP_ERR_IO, err, errlen, "%s: not a regular file", path);
    } else if ((rc = read_all(fd, buf, cap, len)) == LP_ERR_TOO_BIG) {
        rc = lp_errf(rc, err, errlen, "%s: larger than %zu bytes; is it a certificate?", path,
                     cap - 1);
    } else if (rc != LP_OK) {
        rc = lp_errf(rc, err, errlen, "%s: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

lp_err lp_cert_fingerprint_file(const char *crt_path, uint8_t out[LP_FINGERPRINT_LEN], char *err,
                                size_t errlen)
{
    uint8_t *buf = malloc(CERT_FILE_MAX + 1);
    mbedtls_x509_crt crt;
    size_t len = 0;
    lp_err rc;
    int ret;

    if (buf == NULL)
        return lp_errf(LP_ERR_NOMEM, err, errlen, "%s: out of memory", crt_path);
    mbedtls_x509_crt_init(&crt);
    if ((rc = read_public(crt_path, buf, CERT_FILE_MAX + 1, &len, err, errlen)) != LP_OK)
        goto out;
    /* mbedTLS takes PEM only when the length counts the NUL that ends it. */
    if (strstr((const char *)buf, "-----BEGIN CERTIFICATE-----") != NULL)
        len++;
    if ((ret = mbedtls_x509_crt_parse(&crt, buf, len)) != 0) {
        char why[128];
        rc = lp_errf(LP_ERR_MALFORMED, err, errlen, "%s: not a certificate: %s", crt_path,
                     ret > 0 ? "part of it does not parse" : mbed_reason(ret, why, sizeof(why)));
    } else if (mbedtls_sha256_ret(crt.raw.p, crt.raw.len, out, 0) != 0) {
        rc = lp_errf(LP_ERR_IO, err, errlen, "%s: SHA-256 failed", crt_path);
    }
out:
    mbedtls_x509_crt_free(&crt);
    free(buf);
    return rc;
}

/* "YYYYMMDDhhmmss" in UTC, as mbedtls_x509write_crt_set_validity wants. */
static bool x509_time(time_t t, int add_years, char out[16])
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL)
        return false;
    tm.tm_year += add_years;
    if (tm.tm_mon == 1 && tm.tm_mday == 29)
        tm.tm_mday = 28; /* the same date a century on may not be a leap day */
    if (tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1950)
        return false;
    return strftime(out, 16, "%Y%m%d%H%M%S", &tm) == 14; /* only the fields set above */
}

/* Serial, validity and extensions of the certificate being written. Returns an mbedTLS
 * code. Pinning, not expiry, is what makes a certificate trusted; 100 years keeps expiry
 * from ever breaking a working setup, and a day back absorbs a peer's slow clock. */
static int cert_fields(mbedtls_x509write_cert *crt, struct rng *r)
{
    uint8_t serial_bytes[SERIAL_LEN];
    char not_before[16], not_after[16];
    mbedtls_mpi serial;
    time_t now = time(NULL);
    int ret;

    mbedtls_mpi_init(&serial);
    if ((ret = mbedtls_ctr_drbg_random(&r->drbg, serial_bytes, sizeof(serial_bytes))) != 0)
        goto out;
    serial_bytes[0] = (uint8_t)((serial_bytes[0] & 0x7f) | 0x40); /* positive, full length */
    ret = MBEDTLS_ERR_X509_BAD_INPUT_DATA;
    if (!x509_time(now - 24 * 3600, 0, not_before) || !x509_time(now, HUNDRED_YEARS, not_after))
        goto out;
    if ((ret = mbedtls_mpi_read_binary(&serial, serial_bytes, sizeof(serial_bytes))) != 0 ||
        (ret = mbedtls_x509write_crt_set_serial(crt, &serial)) != 0 ||
        (ret = mbedtls_x509write_crt_set_validity(crt, not_before, not_after)) != 0 ||
        (ret = mbedtls_x509write_crt_set_basic_constraints(crt, 0, -1)) != 0 ||
        (ret = mbedtls_x509write_crt_set_key_usage(crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0)
        goto out; /* ret says which */
out:
    mbedtls_mpi_free(&serial);
    return ret;
}

/* Signs the certificate for pk once, as DER (mbedTLS writes it at the end of der). The
 * PEM is made from these very bytes: signing again would give a different ECDSA signature
 * and so a different fingerprint. */
static int cert_der(mbedtls_pk_context *pk, const char *name, struct rng *r, uint8_t *der,
                    size_t cap, const uint8_t **p, size_t *len)
{
    char subject[16 + LP_KEYS_NAME_MAX];
    mbedtls_x509write_cert crt;
    int ret;

    mbedtls_x509write_crt_init(&crt);
    snprintf(subject, sizeof(subject), "CN=%s", name); /* name needs no escaping (checked) */
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, pk);
    mbedtls_x509write_crt_set_issuer_key(&crt, pk);
    if ((ret = mbedtls_x509write_crt_set_subject_name(&crt, subject)) != 0 ||
        (ret = mbedtls_x509write_crt_set_issuer_name(&crt, subject)) != 0 ||
        (ret = cert_fields(&crt, r)) != 0)
        goto out;
    ret = mbedtls_x509write_crt_der(&crt, der, cap, mbedtls_ctr_drbg_random, &r->drbg);
    if (ret > 0) {
        *len = (size_t)ret;
        *p = der + cap - *len;
        ret = 0;
    } else if (ret == 0) {
        ret = MBEDTLS_ERR_X509_BAD_INPUT_DATA;
    }
out:
    mbedtls_x509write_crt_free(&crt);
    return ret;
}

/* The PEM texts of a new key and its certificate, and the certificate's fingerprint. */
struct cert_out {
    uint8_t key_pem[PEM_MAX]; /* secret: wiped by the caller */
    uint8_t crt_pem[PEM_MAX];
    size_t crt_pem_len;
    uint8_t fp[LP_FINGERPRINT_LEN];
};

static int cert_make(const char *name, struct cert_out *o)
{
    uint8_t der[CERT_DER_MAX];
    const uint8_t *der_p = NULL;
    size_t der_len = 0;
    mbedtls_pk_context pk;
    struct rng r;
    int ret;

    mbedtls_pk_init(&pk);
    if ((ret = rng_init(&r, "limpet cert")) != 0 ||
        (ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
        (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                   mbedtls_ctr_drbg_random, &r.drbg)) != 0 ||
        (ret = mbedtls_pk_write_key_pem(&pk, o->key_pem, sizeof(o->key_pem))) != 0 ||
        (ret = cert_der(&pk, name, &r, der, sizeof(der), &der_p, &der_len)) != 0 ||
        (ret = mbedtls_sha256_ret(der_p, der_len, o->fp, 0)) != 0 ||
        (ret = mbedtls_pem_write_buffer(pem_crt_begin, pem_crt_end, der_p, der_len, o->crt_pem,
                                        sizeof(o->crt_pem), &o->crt_pem_len)) != 0)
        goto out;
    o->crt_pem_len--; /* mbedTLS counts the NUL it wrote */
out:
    mbedtls_pk_free(&pk); /* wipes the private key */
    rng_free(&r);
    return ret;
}

lp_err lp_cert_generate(const char *key_path, const char *crt_path, const char *name,
                        char fingerprint[LP_FINGERPRINT_TEXT_MAX], char *err, size_t errlen)
{
    struct cert_out o;
    int key_fd = -1, crt_fd = -1, ret;
    size_t key_len;
    bool key_made = false, crt_made = false;
    lp_err rc;

    if (!lp_keys_name_valid(name))
        return lp_errf(LP_ERR_INVALID, err, errlen,
                       "'%s': a name is 1-%u letters, digits, '.', '_' or '-', not starting "
                       "with '.' or '-'",
                       name ? name : "", LP_KEYS_NAME_MAX);
    /* Claim both names first, so an existing file stops us before anything is made. */
    if ((rc = create_new(key_path, 0600, &key_fd, err, errlen)) != LP_OK)
        goto out;
    key_made = true;
    if ((rc = create_new(crt_path, 0644, &crt_fd, err, errlen)) != LP_OK)
        goto out;
    crt_made = true;
    if ((ret = cert_make(name, &o)) != 0) {
        char why[128];
        rc = lp_errf(LP_ERR_IO, err, errlen, "%s: cannot make the key: %s", key_path,
                     mbed_reason(ret, why, sizeof(why)));
        goto out;
    }
    key_len = strlen((char *)o.key_pem);
    if ((rc = finish_file(key_path, &key_fd, o.key_pem, key_len, err, errlen)) != LP_OK ||
        (rc = finish_file(crt_path, &crt_fd, o.crt_pem, o.crt_pem_len, err, errlen)) != LP_OK)
        goto out;
    rc = lp_fingerprint_format(o.fp, fingerprint, LP_FINGERPRINT_TEXT_MAX);
out:
    discard_new(key_path, &key_fd, rc != LP_OK && key_made);
    discard_new(crt_path, &crt_fd, rc != LP_OK && crt_made);
    mbedtls_platform_zeroize(&o, sizeof(o));
    return rc;
}
