"""The Prometheus page (metrics.listen): scraped during and after a transfer with a link cut.

Promises checked: the exposition parses (every sample under a # HELP / # TYPE of its family,
names prefixed limpet_, histogram buckets cumulative and ending at +Inf); counters never go
down between scrapes and bytes grow during a transfer; one cut gives reconnects and resumes 1
on both ends; a refused handshake is counted with its reason; other paths are 404; a
non-loopback metrics.listen is refused at start with one line.
"""

import re
import socket
import time
import urllib.error
import urllib.request

import pytest

import helpers as H

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """Text format 0.0.4 -> ({(name, labels): value}, {family: type}). Fails on anything the
    format does not allow, so a malformed page fails the test that scraped it."""
    samples, types, helps = {}, {}, set()
    assert text.endswith("\n"), "the page must end with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert help_text.strip(), line
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name in helps and name not in types, "TYPE before HELP or twice: " + line
            types[name] = typ
            continue
        assert not line.startswith("#") and line.strip(), "stray line %r" % line
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), tuple(LABEL.findall(m.group(3) or ""))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, "sample %s without a TYPE" % name
        assert name.startswith("limpet_"), name
        samples[(name, labels)] = float(m.group(4))
    check_histograms(samples, types)
    return samples, types


def check_histograms(samples, types):
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        buckets = sorted(((float("inf") if dict(l)["le"] == "+Inf" else float(dict(l)["le"])), v)
                         for (n, l), v in samples.items() if n == fam + "_bucket")
        assert buckets and buckets[-1][0] == float("inf"), fam
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "%s buckets not cumulative: %s" % (fam, buckets)
        assert samples[(fam + "_count", ())] == counts[-1]


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=H.slack(10)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(r.read().decode())[0]


def v(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def counters(samples):
    return {k: x for k, x in samples.items()
            if k[0].endswith(("_total", "_bucket", "_count", "_sum"))}


def assert_monotone(before, after):
    for k, x in before.items():
        assert k in after, "counter %s vanished" % (k,)
        assert after[k] >= x, "counter %s went down: %s -> %s" % (k, x, after[k])


@pytest.mark.budget(90)
def test_metrics_follow_a_transfer_a_cut_and_a_refused_handshake(tunnel):
    smet, cmet = H.free_port(), H.free_port()
    t = tunnel(server_opts=("-o", "metrics.listen=127.0.0.1:%d" % smet,
                            "-o", "limits.handshake_timeout=300ms"),
               client_opts=("-o", "metrics.listen=127.0.0.1:%d" % cmet))
    s0, c0 = scrape(smet), scrape(cmet)
    assert v(s0, "limpet_sessions", state="live") == 1 and v(c0, "limpet_sessions", state="live") == 1
    assert v(s0, "limpet_reconnects_total") == 0 and v(c0, "limpet_resumes_total") == 0

    streams = [H.Stream(up=3 * H.MiB, down=3 * H.MiB, up_pace=4.0, down_pace=4.0)]
    join = H.start_streams(streams, t.lport, H.slack(60))
    H.wait_until(lambda: v(scrape(cmet), "limpet_streams") >= 1, H.slack(10), "a stream")
    c1 = scrape(cmet)
    time.sleep(0.8)
    c2 = scrape(cmet)
    assert_monotone(counters(c0), counters(c1))
    assert_monotone(counters(c1), counters(c2))
    for d in ("in", "out"):
        assert v(c2, "limpet_bytes_total", direction=d) > v(c1, "limpet_bytes_total", direction=d)
    assert v(c2, "limpet_streams_opened_total") >= 1

    t.relay.cut("rst")
    for port in (cmet, smet):
        H.wait_until(lambda: v(scrape(port), "limpet_resumes_total") == 1, H.slack(15),
                     "one resume on :%d" % port)
    join()
    H.check_streams(streams, t.target)
    s3, c3 = scrape(smet), scrape(cmet)
    for m in (s3, c3):
        assert v(m, "limpet_reconnects_total") == 1 and v(m, "limpet_resumes_total") == 1
        assert v(m, "limpet_resume_seconds_count") == 1
        assert v(m, "limpet_resume_seconds_bucket", le="+Inf") == 1
        assert v(m, "limpet_sessions", state="live") == 1
    assert_monotone(counters(c2), counters(c3))

    # refused handshakes, each with its reason: bytes that are not a HELLO, and silence
    assert v(s3, "limpet_handshakes_refused_total", reason="bad_hello") == 0
    with socket.create_connection(("127.0.0.1", t.sport), timeout=5) as bad:
        bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert H.is_closed(bad, H.slack(5))
    with socket.create_connection(("127.0.0.1", t.sport), timeout=5) as quiet:
        assert H.is_closed(quiet, H.slack(5))
    s4 = scrape(smet)
    assert v(s4, "limpet_handshakes_refused_total", reason="bad_hello") == 1
    assert v(s4, "limpet_handshakes_refused_total", reason="timeout") == 1
    assert v(s4, "limpet_handshakes_refused_total", reason="reject_auth") == 0
    assert_monotone(counters(s3), counters(s4))


def test_metrics_other_paths_are_404(limpet_bin, procs):
    met = H.free_port()
    H.limpet_server(procs, H.free_port(), "-o", "metrics.listen=127.0.0.1:%d" % met)
    for path in ("/", "/metrics/x", "/favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as e:
            scrape(met, path)
        assert e.value.code == 404
    # a request that never ends its head is cut off, and the page still answers after it
    with socket.create_connection(("127.0.0.1", met), timeout=5) as s:
        head = b"GET /metrics HTTP/1.0\r\nX: "
        s.sendall(head + b"a" * (4095 - len(head)))  # the cap, exactly: nothing left unread
        s.settimeout(H.slack(5))
        assert s.recv(100).startswith(b"HTTP/1.0 400 "), "an overlong head is refused"
    assert v(scrape(met), "limpet_sessions", state="live") == 0


def test_a_non_loopback_metrics_listen_is_refused_at_start(limpet_bin, procs):
    p = H.limpet_server(procs, H.free_port(), "-o", "metrics.listen=0.0.0.0:%d" % H.free_port(),
                        wait=False)
    assert p.wait(H.slack(10)) == 1
    errors = [l for l in p.stderr().splitlines() if "running with --insecure" not in l]
    assert len(errors) == 1, p.stderr()
    assert "metrics.listen" in errors[0] and "metrics.allow_remote" in errors[0]
    assert "listening on" not in p.stderr()
