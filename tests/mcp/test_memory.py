"""Nothing a client sends on MCP streams makes the server hold memory beyond its limits.

An attacker found that a line with no newline escaped every limit: the server copied stream
bytes into a line buffer of up to mcp.max_message (16 MiB) per stream and returned window
credit for them, so 32 streams sending 15 MiB each took the server from 3 to 504 MiB, and
the detached session kept it for session.ttl. Now a partial line stays in the stream's
receive queue, counted in the session's receive budget (session.receive_buffer): the stream
waits there (backpressure) until its line ends, a line longer than the session may hold is
refused with a reason, and the whole process stays under limits.memory.

The attacker here is muxclient.MuxClient, a scripted tunnel client over --insecure.
"""

import json
import os
import subprocess
import time

import pytest

import helpers as H
import mcplib as M
from muxclient import MuxClient

MiB = 1 << 20
KiB = 1 << 10
STREAMS = 32
PER_STREAM = 15 * MiB
BOUND = 64 * MiB       # what the server may grow by, whatever one client does


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KiB
    raise AssertionError("no VmRSS for pid %d" % pid)


def flood(client, streams, server, base, bound, seconds=20, stall=1.0):
    """Floods half-lines on streams while the server's RSS stays within base + bound.
    Returns (outcome, peak RSS growth)."""
    peak = [0]

    def within():
        peak[0] = max(peak[0], rss(server.pid) - base)
        return peak[0] < bound

    outcome = client.flood(streams, PER_STREAM, time.monotonic() + H.slack(seconds), stall,
                           check=within)
    within()
    return outcome, peak[0]


def open_streams(client, n, scope, timeout=15):
    streams = [client.open_mcp("legacy", scope) for _ in range(n)]
    assert client.wait_accepted(streams, H.slack(timeout)), \
        "streams not accepted: %r" % [(s.id, s.accepted, s.rst) for s in streams]
    return streams


@pytest.mark.budget(90)
def test_half_lines_on_32_streams_are_held_back_within_the_session_budget(bed):
    server = bed.start_server()
    attacker = MuxClient(bed.sport)
    assert attacker.connect(), attacker.reject
    streams = open_streams(attacker, STREAMS, "flood")
    refused = [s.rst for s in streams if s.rst]
    assert not refused, refused
    time.sleep(0.2)
    base = rss(server.pid)

    outcome, peak = flood(attacker, streams, server, base, BOUND)
    sent = sum(s.sent for s in streams)
    assert outcome != "stopped", \
        "server RSS grew by %.1f MiB (bound %d MiB) after the client sent %.1f MiB of " \
        "half-lines" % (peak / MiB, BOUND // MiB, sent / MiB)
    assert outcome == "stalled", "the server kept taking half-lines: %s after %.1f MiB" % (
        outcome, sent / MiB)
    # Held back within the session's receive budget: 16 MiB, plus the 16 KiB every stream
    # is granted whatever the budget.
    granted = sum(s.granted for s in streams)
    assert granted <= 16 * MiB + STREAMS * 16 * KiB, "credit granted: %.2f MiB" % (granted / MiB)
    assert peak < BOUND, peak

    # The client leaves without a goodbye: the session waits, detached, holding no more.
    attacker.abandon()
    time.sleep(0.5)
    assert rss(server.pid) - base < BOUND

    # Everyone else is still served, on the same child and on another.
    h = bed.raw("legacy", scope="flood")
    assert "result" in h.initialize(rid=1)[0]
    assert M.structured(h.tool_result(2, "count"))["count"] == 1
    h.close_stdin()
    assert h.wait(H.slack(10)) == 0


def ping_line(rid, size):
    """A valid ping request of exactly `size` bytes with its newline."""
    head = '{"jsonrpc":"2.0","id":%d,"method":"ping","params":{"pad":"' % rid
    tail = '"}}\n'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


@pytest.mark.budget(60)
def test_a_line_longer_than_the_window_goes_through_and_one_beyond_the_session_is_refused(bed):
    # The session may hold 2 MiB at most; each stream's window is 256 KiB.
    server = bed.start_server("-o", "session.receive_buffer=2MiB",
                              "-o", "session.stream_window=256KiB")
    h = bed.raw("legacy", scope="long")
    assert "result" in h.initialize(rid=1)[0]
    # 1.5 MiB in one line: six windows' worth, carried by credit the server extends.
    h.send_raw(ping_line(2, 1536 * KiB))
    r, _ = h.response(2, H.slack(20))
    assert r.get("result") == {}, r
    # 3 MiB can never fit the session: refused with the reason, never left waiting.
    h.send_raw(ping_line(3, 3 * MiB))
    r, _ = h.response(3, H.slack(20))
    assert "longer than this server takes" in M.error_message(r), r
    assert len(server.lines("longer than this server takes")) == 1, server.tail()
    # The host goes on: a new stream to the same process, its state kept.
    assert M.structured(h.tool_result(4, "count"))["count"] == 1
    h.send_raw(ping_line(5, 1536 * KiB))
    r, _ = h.response(5, H.slack(20))
    assert r.get("result") == {}, r
    stats = M.structured(h.tool_result(6, "stats"))
    assert stats["methods"].count("ping") == 2, stats["methods"]
    h.close_stdin()
    assert h.wait(H.slack(10)) == 0


def status(ctl):
    out = subprocess.run([H.BIN, "status", "--control", ctl, "--json"], capture_output=True,
                         timeout=H.slack(10))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["processes"][0]["process"]


@pytest.mark.budget(90)
def test_at_limits_memory_new_sessions_and_streams_are_refused_and_lines_wait(bed):
    # Sessions that may each hold 4 MiB of half-lines (two 1 MiB windows, 2 MiB extended):
    # three of them and the fourth's windows reach the process's 14 MiB.
    ctl = os.path.join(bed.tmp, "server.sock")
    server = bed.start_server("-o", "session.receive_buffer=4MiB", "-o", "session.replay_buffer=1MiB",
                              "-o", "session.max_streams=64", "-o", "limits.session_memory=8MiB",
                              "-o", "limits.memory=14MiB", "-o", "control.path=%s" % ctl)
    base = rss(server.pid)
    attackers = []
    for i in range(4):
        c = MuxClient(bed.sport)
        assert c.connect(), "session %d refused before the limit: %r" % (i, c.reject)
        streams = open_streams(c, 2, "mem")
        outcome, peak = flood(c, streams, server, base, BOUND, seconds=20, stall=0.5)
        assert outcome == "stalled", (i, outcome, peak)
        assert sum(s.granted for s in streams) <= 4 * MiB, [s.granted for s in streams]
        attackers.append(c)
    held = status(ctl)
    assert held["memory_limit"] == 14 * MiB, held
    # Extensions stop at the limit; only windows granted before it (the last session's two
    # 1 MiB windows) may carry it past.
    assert 13.5 * MiB <= held["memory_buffered"] <= 16 * MiB, held
    assert rss(server.pid) - base < BOUND
    # The last session's lines wait for more credit at the limit (backpressure), logged.
    server.wait_log("server memory limit reached", timeout=H.slack(5))

    # At the limit the newest thing is refused, with the reason.
    late = MuxClient(bed.sport)
    assert not late.connect()
    assert late.reject[0] == 5 and "server memory limit" in late.reject[1], late.reject
    st = attackers[0].open_mcp("legacy", "mem")
    assert attackers[0].wait_accepted([st], H.slack(5))
    assert st.rst and st.rst[0] == 8 and "server memory limit" in st.rst[1], st.rst
    # The log says so without a line per refusal.
    assert len(server.lines("server memory limit reached")) <= 3, server.lines("memory limit")

    # One of them leaves: its memory is free again, and a new session is welcome.
    attackers.pop(0).goodbye()
    H.wait_until(lambda: status(ctl)["memory_buffered"] < 13 * MiB, H.slack(5),
                 "the session that left to free its memory")
    fresh = MuxClient(bed.sport)
    assert fresh.connect(), fresh.reject
    fresh.close()
    for c in attackers:
        c.close()
