/* metrics.c — the pure half of ctl: the resume histogram, handshake refusal reasons, and the
 * two renderings of a snapshot (the human `limpet status` page and the Prometheus text
 * exposition). No sockets, no loop, no clock: a document goes in, text comes out, so all of
 * it is unit-tested (tests/unit/test_ctl.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limpet/ctl.h"

const lp_time lp_hist_bounds[LP_HIST_BOUNDS] = {10,   50,   100,   250,   500,  1000,
                                                2500, 5000, 10000, 30000, 60000};

void lp_hist_observe(struct lp_hist *h, lp_time ms)
{
    size_t i = 0;
    while (i < LP_HIST_BOUNDS && ms > lp_hist_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_ms += ms;
}

static const char *const reason_names[LP_HS_REASONS] = {
    [LP_HS_TIMEOUT] = "timeout",
    [LP_HS_TLS_AUTH] = "tls_auth",
    [LP_HS_TLS_ERROR] = "tls_error",
    [LP_HS_BAD_HELLO] = "bad_hello",
    [LP_HS_CLOSED] = "closed",
    [LP_HS_ADMISSION] = "admission",
    [LP_HS_EVICTED] = "evicted",
    [LP_HS_PROXY] = "proxy",
    [LP_HS_REJECT_VERSION] = "reject_version",
    [LP_HS_REJECT_SESSION_UNKNOWN] = "reject_session_unknown",
    [LP_HS_REJECT_SEQ] = "reject_seq_out_of_range",
    [LP_HS_REJECT_AUTH] = "reject_auth",
    [LP_HS_REJECT_LIMIT] = "reject_limit",
    [LP_HS_REJECT_OTHER] = "reject_other",
};

const char *lp_hs_reason_name(enum lp_hs_reason r)
{
    return (unsigned)r < LP_HS_REASONS ? reason_names[r] : "?";
}

enum lp_hs_reason lp_hs_reason_of_reject(uint16_t code)
{
    switch (code) {
    case 1:
        return LP_HS_REJECT_VERSION;
    case 2:
        return LP_HS_REJECT_SESSION_UNKNOWN;
    case 3:
        return LP_HS_REJECT_SEQ;
    case 4:
        return LP_HS_REJECT_AUTH;
    case 5:
        return LP_HS_REJECT_LIMIT;
    default:
        return LP_HS_REJECT_OTHER;
    }
}

/* ---- a capped text buffer ------------------------------------------------------------------ */

struct out {
    char *p;
    size_t len, cap;
    bool nomem; /* an allocation failed: the result is NULL */
    bool full;  /* LP_CTL_ANSWER_MAX reached: the rest is dropped, the text says so */
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    char line[1024];

    if (o->nomem || o->full)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t k = LP_MIN((size_t)n, sizeof(line) - 1); /* a longer line is cut, not overrun */
    if (k > LP_CTL_ANSWER_MAX - 64 - o->len) {
        o->full = true; /* 64 bytes stay for the note below */
        return;
    }
    if (o->len + k + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + k + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->nomem = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, line, k);
    o->len += k;
    o->p[o->len] = '\0';
}

static char *finish(struct out *o, const char *note)
{
    if (o->full) {
        o->full = false;
        put(o, "%s", note);
    }
    if (o->nomem) {
        free(o->p);
        return NULL;
    }
    if (o->p == NULL)
        return calloc(1, 1);
    return o->p;
}

/* ---- reading the document ------------------------------------------------------------------- */

static unsigned long long num(const json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));
    return v > 0 ? (unsigned long long)v : 0;
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* ---- the human page ---------------------------------------------------------------------------- */

/* 1234 -> "1.2 KiB": exact counts are in --json. */
static const char *bytes_h(char *buf, size_t len, unsigned long long v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    unsigned u = 0;
    while (d >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", v);
    else
        snprintf(buf, len, "%.1f %s", d, units[u]);
    return buf;
}

/* 93784000 ms -> "1d2h3m4s"; below a minute with tenths: "4.2s". */
static const char *dur_h(char *buf, size_t len, unsigned long long ms)
{
    unsigned long long s = ms / 1000;
    if (s < 60)
        snprintf(buf, len, "%llu.%llus", s, (ms % 1000) / 100);
    else if (s < 3600)
        snprintf(buf, len, "%llum%llus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lluh%llum", s / 3600, (s / 60) % 60);
    else
        snprintf(buf, len, "%llud%lluh", s / 86400, (s / 3600) % 24);
    return buf;
}

static void text_stream(struct out *o, const json_t *st)
{
    char a[32], b[32];
    const char *target = str(st, "target");
    put(o, "    stream %llu  %s %s  up %s  down %s\n", num(st, "id"), str(st, "kind"),
        target[0] ? target : "-", bytes_h(a, sizeof(a), num(st, "bytes_up")),
        bytes_h(b, sizeof(b), num(st, "bytes_down")));
}

static void text_session(struct out *o, const json_t *s)
{
    char a[32], b[32], c[32], d[32];
    const json_t *streams = json_object_get(s, "streams");
    size_t i, listed = json_array_size(streams);
    const char *identity = str(s, "identity");
    bool live = strcmp(str(s, "state"), "live") == 0;

    put(o, "session %s  identity %s  peer %s%s%s\n", str(s, "id"), identity[0] ? identity : "-",
        str(s, "peer")[0] ? str(s, "peer") : "-", str(s, "node")[0] ? "  node " : "",
        str(s, "node"));
    if (live)
        put(o, "  state live, up %s, reconnects %llu, last rtt %llums\n",
            dur_h(a, sizeof(a), num(s, "uptime_ms")), num(s, "reconnects"), num(s, "rtt_ms"));
    else
        put(o, "  state detached for %s, up %s, reconnects %llu, last rtt %llums\n",
            dur_h(b, sizeof(b), num(s, "detached_ms")), dur_h(a, sizeof(a), num(s, "uptime_ms")),
            num(s, "reconnects"), num(s, "rtt_ms"));
    if (str(s, "tls_suite")[0])
        put(o, "  tls %s, records by %s, rekeys %llu\n", str(s, "tls_suite"),
            str(s, "record_layer"), num(s, "rekeys"));
    put(o, "  bytes in %s, out %s; replay buffer %s of %s\n",
        bytes_h(a, sizeof(a), num(s, "bytes_in")), bytes_h(b, sizeof(b), num(s, "bytes_out")),
        bytes_h(c, sizeof(c), num(s, "replay_used")), bytes_h(d, sizeof(d), num(s, "replay_cap")));
    put(o, "  streams %llu\n", num(s, "streams_open"));
    for (i = 0; i < listed; i++)
        text_stream(o, json_array_get(streams, i));
    if (num(s, "streams_open") > listed)
        put(o, "    ... %llu more not listed\n", num(s, "streams_open") - listed);
}

char *lp_ctl_render_text(const json_t *doc)
{
    struct out o = {0};
    const json_t *p = json_object_get(doc, "process");
    const json_t *sessions = json_object_get(doc, "sessions");
    const json_t *hs = json_object_get(p, "handshakes_refused");
    unsigned long long refused = 0;
    char a[32];
    for (int r = 0; r < LP_HS_REASONS; r++)
        refused += num(hs, lp_hs_reason_name((enum lp_hs_reason)r));
    put(&o,
        "limpet %s %s, pid %llu, up %s: %zu sessions, %llu resumes, %llu rekeys, %llu handshakes "
        "refused\n",
        str(p, "role"), str(p, "version"), num(p, "pid"), dur_h(a, sizeof(a), num(p, "uptime_ms")),
        json_array_size(sessions), num(p, "resumes"), num(p, "rekeys"), refused);
    if (str(p, "node")[0])
        put(&o, "node %s%s\n", str(p, "node"),
            json_is_true(json_object_get(p, "draining"))
                ? ", draining: no new sessions, its own still resume (SIGUSR1)"
                : "");
    put(&o, "memory buffered %s", bytes_h(a, sizeof(a), num(p, "memory_buffered")));
    if (num(p, "memory_limit") > 0)
        put(&o, " of %s (limits.memory)", bytes_h(a, sizeof(a), num(p, "memory_limit")));
    put(&o, "\n");
    if (num(p, "upgrades") > 0 || num(p, "upgrade_failures") > 0)
        put(&o,
            "  upgraded in place %llu times (%llu failed), the last %s ago; %llu sessions "
            "restored\n",
            num(p, "upgrades"), num(p, "upgrade_failures"),
            json_is_integer(json_object_get(p, "last_upgrade_ms"))
                ? dur_h(a, sizeof(a), num(p, "last_upgrade_ms"))
                : "never",
            num(p, "sessions_restored"));
    for (size_t i = 0; i < json_array_size(sessions); i++)
        text_session(&o, json_array_get(sessions, i));
    return finish(&o, "... (cut: the answer is too long; use --json)\n");
}

/* ---- Prometheus ---------------------------------------------------------------------------------- */

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct out *o, const char *name, unsigned long long v)
{
    put(o, "%s %llu\n", name, v);
}

static void counters(struct out *o, const json_t *p)
{
    static const struct {
        const char *name, *key, *help;
    } rows[] = {
        {"limpet_sessions_created_total", "sessions_created", "Sessions created."},
        {"limpet_sessions_ended_total", "sessions_ended",
         "Sessions ended (goodbye, expired, lost or shut down)."},
        {"limpet_streams_opened_total", "streams_opened",
         "Streams begun: OPEN sent (client) or received (server)."},
        {"limpet_streams_refused_total", "streams_refused",
         "Streams refused or failed before they opened (policy, bad target, unreachable, "
         "connect failure or timeout)."},
        {"limpet_reconnects_total", "reconnects",
         "Client: tunnel handshakes completed after a link loss. Server: handshakes that asked "
         "to resume a session, accepted or not, rekeys aside."},
        {"limpet_resumes_total", "resumes", "Sessions resumed with their streams intact."},
        {"limpet_rekeys_total", "rekeys",
         "Live TLS links replaced by a new handshake because they carried tls.rekey_after "
         "under their keys (not counted as reconnects); the server counts the resumes whose "
         "HELLO says REKEY."},
        {"limpet_upgrades_total", "upgrades",
         "Server: upgrades in place (SIGUSR2) completed: the new binary restored the state."},
        {"limpet_upgrade_failures_total", "upgrade_failures",
         "Server: upgrades in place that did not complete (the check refused the binary, exec "
         "failed, or the new binary refused the state and started fresh)."},
        {"limpet_sessions_restored_total", "sessions_restored",
         "Server: sessions taken over from the previous binary by upgrades in place."},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        family(o, rows[i].name, "counter", rows[i].help);
        sample(o, rows[i].name, num(p, rows[i].key));
    }
}

static void gauges(struct out *o, const json_t *doc, const json_t *p)
{
    const json_t *sessions = json_object_get(doc, "sessions");
    unsigned long long live = 0, detached = 0, streams = 0;
    for (size_t i = 0; i < json_array_size(sessions); i++) {
        const json_t *s = json_array_get(sessions, i);
        if (strcmp(str(s, "state"), "live") == 0)
            live++;
        else
            detached++;
        streams += num(s, "streams_open");
    }
    family(o, "limpet_sessions", "gauge",
           "Sessions held, by state: live (a link carries it) or detached (waiting for its "
           "client to come back).");
    put(o, "limpet_sessions{state=\"live\"} %llu\nlimpet_sessions{state=\"detached\"} %llu\n", live,
        detached);
    family(o, "limpet_streams", "gauge", "Streams open now, over every session.");
    sample(o, "limpet_streams", streams);
    family(o, "limpet_bytes_total", "counter",
           "Tunnel bytes (frames, before TLS) received (in) and sent (out) on session links.");
    put(o,
        "limpet_bytes_total{direction=\"in\"} %llu\nlimpet_bytes_total{direction=\"out\"} "
        "%llu\n",
        num(p, "bytes_in"), num(p, "bytes_out"));
    family(o, "limpet_mcp_pool_processes", "gauge",
           "MCP server processes in the pool (starting, running or stopping).");
    sample(o, "limpet_mcp_pool_processes", num(p, "mcp_processes"));
    family(o, "limpet_memory_buffered_bytes", "gauge",
           "Bytes buffered for peers over the whole process: replay buffers, receive queues, "
           "MCP line queues and child pipes (held under limits.memory).");
    sample(o, "limpet_memory_buffered_bytes", num(p, "memory_buffered"));
    family(o, "limpet_draining", "gauge",
           "Server: 1 while draining (SIGUSR1): no new sessions, resumes of its own go on.");
    sample(o, "limpet_draining", json_is_true(json_object_get(p, "draining")) ? 1 : 0);
    family(o, "limpet_uptime_seconds", "gauge", "Seconds since this process started.");
    put(o, "limpet_uptime_seconds %.3f\n", (double)num(p, "uptime_ms") / 1000.0);
}

static void histogram(struct out *o, const json_t *p)
{
    const json_t *h = json_object_get(p, "resume_ms");
    const json_t *buckets = json_object_get(h, "buckets");

    family(o, "limpet_resume_seconds", "histogram",
           "Client: time from losing the link to the session being live again. Server: how "
           "long a session was detached, as this server saw it, before its client resumed it "
           "(the resume handshake itself takes one round trip).");
    for (size_t i = 0; i < json_array_size(buckets); i++)
        put(o, "limpet_resume_seconds_bucket{le=\"%g\"} %llu\n",
            (double)num(json_array_get(buckets, i), "le_ms") / 1000.0,
            num(json_array_get(buckets, i), "count"));
    put(o, "limpet_resume_seconds_bucket{le=\"+Inf\"} %llu\n", num(h, "count"));
    put(o, "limpet_resume_seconds_sum %.3f\n", (double)num(h, "sum_ms") / 1000.0);
    put(o, "limpet_resume_seconds_count %llu\n", num(h, "count"));
}

char *lp_ctl_render_metrics(const json_t *doc)
{
    struct out o = {0};
    const json_t *p = json_object_get(doc, "process");
    const json_t *hs = json_object_get(p, "handshakes_refused");

    gauges(&o, doc, p);
    counters(&o, p);
    histogram(&o, p);
    family(&o, "limpet_handshakes_refused_total", "counter",
           "Server: connections refused or dropped before they became a session, by reason "
           "(timeout, tls_auth, tls_error, bad_hello, closed, admission, evicted, proxy, reject_*: "
           "the REJECT code sent).");
    for (int r = 0; r < LP_HS_REASONS; r++)
        put(&o, "limpet_handshakes_refused_total{reason=\"%s\"} %llu\n",
            lp_hs_reason_name((enum lp_hs_reason)r),
            num(hs, lp_hs_reason_name((enum lp_hs_reason)r)));
    return finish(&o, "# cut: too long\n");
}
