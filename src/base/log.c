/* log.c — one line per event on stderr: "2026-11-23T12:34:56.789Z server INFO message".
 *
 * Each line is built whole in a local buffer and handed to a single write(2), so lines from
 * one process never interleave and a line is never split by stdio buffering. Control bytes
 * in the message are escaped, so a peer-supplied string cannot forge a second log line.
 */
#include "limpet/log.h"
#include "limpet/base.h"
#include "limpet/hex.h"
#include "limpet/text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_MSG_MAX 1024u                    /* formatted message; longer ones are cut */
#define LOG_LINE_MAX (LOG_MSG_MAX * 6 + 256) /* a byte may become "\xNN" or "\u00NN" */

static int log_level = LP_LOG_INFO;
static const char *log_tag = "limpet";
static bool log_json;

void lp_log_set_json(bool json)
{
    log_json = json;
}

void lp_log_set_level(int level)
{
    log_level = LP_MAX(LP_LOG_ERROR, LP_MIN(level, LP_LOG_DEBUG));
}

int lp_log_level(void)
{
    return log_level;
}

void lp_log_set_tag(const char *tag)
{
    log_tag = tag != NULL ? tag : "limpet";
}

static const char *level_name(int level)
{
    switch (level) {
    case LP_LOG_ERROR:
        return "ERROR";
    case LP_LOG_WARN:
        return "WARN";
    case LP_LOG_INFO:
        return "INFO";
    default:
        return "DEBUG";
    }
}

/* "2026-11-23T12:34:56.789Z": UTC wall clock, for lining logs up across machines. */
static size_t format_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL)
        return (size_t)snprintf(buf, len, "0000-00-00T00:00:00.000Z");
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    return n;
}

/* Copies msg into out, escaping control bytes; returns bytes written (out has room). */
static size_t escape(char *out, const char *msg)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)msg; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            lp_hex_encode(p, 1, out + o, false);
            o += 2;
        } else {
            out[o++] = (char)*p;
        }
    }
    return o;
}

static void write_all(const char *buf, size_t len)
{
    /* Bounded: each pass writes at least one byte or gives up. */
    for (int tries = 0; len > 0 && tries < 64; tries++) {
        ssize_t w = write(STDERR_FILENO, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to report a failing stderr */
        buf += w;
        len -= (size_t)w;
    }
}

/* "\\u00XX" for a control byte; returns 6. */
static size_t json_control(char *out, unsigned char c)
{
    memcpy(out, "\\u00", 4);
    lp_hex_encode(&c, 1, out + 4, false);
    return 6;
}

/* msg as the body of a JSON string: quotes, backslashes and control bytes escaped, invalid
 * UTF-8 replaced with U+FFFD, so a collector always gets valid JSON. */
static size_t json_escape(char *out, const char *msg)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)msg; *p != '\0';) {
        size_t u = *p >= 0x80 ? lp_utf8_len(p, 4) : 1; /* NUL ends a sequence */
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            o += json_control(out + o, *p++);
        } else if (u == 0) {
            memcpy(out + o, "\\ufffd", 6);
            o += 6;
            p++;
        } else {
            memcpy(out + o, p, u);
            o += u;
            p += u;
        }
    }
    return o;
}

/* {"time":...,"proc":...,"level":...,"sess":...,"stream":N,"msg":...}: the session and stream
 * ids every event line starts with become fields of their own. */
static size_t format_json(char *line, size_t cap, int level, const char *msg)
{
    char ts[64], sess[16] = "";
    unsigned long stream = 0;
    int used = 0;
    size_t n;

    format_time(ts, sizeof(ts));
    if (sscanf(msg, "sess=%15[0-9a-f-] stream=%lu %n", sess, &stream, &used) < 2 || used == 0) {
        stream = 0;
        if (sscanf(msg, "sess=%15[0-9a-f-] %n", sess, &used) < 1 || used == 0)
            sess[0] = '\0';
    }
    n = (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"proc\":\"%.32s\",\"level\":\"%s\",", ts,
                         log_tag, level_name(level));
    if (sess[0])
        n += (size_t)snprintf(line + n, cap - n, "\"sess\":\"%s\",", sess);
    if (stream)
        n += (size_t)snprintf(line + n, cap - n, "\"stream\":%lu,", stream);
    n += (size_t)snprintf(line + n, cap - n, "\"msg\":\"");
    n += json_escape(line + n, msg);
    line[n++] = '"';
    line[n++] = '}';
    return n;
}

void lp_log(int level, const char *fmt, ...)
{
    char msg[LOG_MSG_MAX];
    char line[LOG_LINE_MAX];
    int saved = errno; /* callers may log between a failing call and reading errno */
    size_t n;
    int w;
    va_list ap;

    if (level > log_level)
        return;
    va_start(ap, fmt);
    w = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w < 0)
        snprintf(msg, sizeof(msg), "(unformattable log message)");
    else if ((size_t)w >= sizeof(msg))
        memcpy(msg + sizeof(msg) - 4, "...", 4);
    if (log_json) {
        n = format_json(line, sizeof(line), level, msg);
    } else {
        n = format_time(line, 64);
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %.32s %s ", log_tag, level_name(level));
        n += escape(line + n, msg);
    }
    line[n++] = '\n';
    write_all(line, n);
    errno = saved;
}
