"""The server's session pool: many scopes at once, and the cap (mcp.max_sessions) with
eviction of the least recently used detached session, or a refusal naming the limit."""

import re
import socket
import struct
import time

import pytest

import helpers as H
import mcplib as M

HOSTS = 20


@pytest.mark.budget(90)
def test_twenty_hosts_with_distinct_scopes_at_once_each_get_their_own_child(bed):
    bed.start_server()
    steps = [M.call("count"), M.call("count"), M.call("whoami"), M.call("count")]
    hosts = [bed.host_spec("legacy", steps, scope="s%02d" % k, label="s%02d" % k,
                           timeout_ms=60000) for k in range(HOSTS)]
    run = bed.run_host({"hosts": hosts}, timeout=80)
    pids = set()
    for k in range(HOSTS):
        label = "s%02d" % k
        res = [M.structured(r) for r in run.ok_results(label)]
        assert [res[0]["count"], res[1]["count"], res[2]["count"], res[3]["count"]] == \
            [1, 2, 2, 3], (label, res)
        assert len({r["pid"] for r in res}) == 1, (label, res)
        pids.add(res[0]["pid"])
        assert run.exit(label)["code"] == 0, run.exit(label)
        assert len(bed.starts("legacy", label)) == 1, bed.starts("legacy", label)
    assert len(pids) == HOSTS, "%d children served %d scopes" % (len(pids), HOSTS)


def attach(bed, scope, label):
    h = bed.raw("legacy", scope=scope, label=label)
    r, _ = h.initialize(rid=1)
    assert "result" in r, (scope, r)
    return h


def count_once(bed, scope, label, goodbyes):
    """A host that attaches, counts once and exits; the count it got. Waits until the server
    saw it leave, so that its session is detached when the next host comes."""
    h = attach(bed, scope, label)
    n = M.structured(h.tool_result(2, "count"))["count"]
    h.close_stdin()
    assert h.wait(H.slack(10)) == 0
    bed.wait_goodbyes(goodbyes)
    return n


@pytest.mark.budget(90)
def test_pool_cap_evicts_the_oldest_detached_and_refuses_when_all_attached(bed):
    bed.start_server("-o", "mcp.max_sessions=2")
    assert count_once(bed, "a", "a1", 1) == 1
    assert count_once(bed, "b", "b1", 2) == 1
    # a and b detached; c needs a slot: a, the least recently used, is evicted
    assert count_once(bed, "c", "c1", 3) == 1
    bed.server.wait_log("mcp=legacy scope=a child exited", timeout=H.slack(10))
    assert bed.exits("legacy", "b") == [], "b was evicted instead of a"
    # b kept its state (count 2); now c is the oldest detached, and a comes back fresh
    assert count_once(bed, "b", "b2", 4) == 2
    a = attach(bed, "a", "a2")
    assert M.structured(a.tool_result(2, "count"))["count"] == 1, "a's old child served"
    bed.server.wait_log("mcp=legacy scope=c child exited", timeout=H.slack(10))
    assert bed.exits("legacy", "b") == [], "b was evicted instead of c"
    b = attach(bed, "b", "b3")
    assert M.structured(b.tool_result(2, "count"))["count"] == 3

    # a and b attached: no slot for d, and the error says why
    d = bed.raw("legacy", scope="d", label="d1")
    r, _ = d.initialize(rid=1)
    msg = M.error_message(r)
    print("the refusal: %s" % msg)
    assert re.search(r"max_sessions|limit", msg), "the refusal does not name the limit: " + msg
    assert bed.starts("legacy", "d") == []
    # the attached sessions are untouched by the refused one
    assert M.structured(a.tool_result(3, "count"))["count"] == 2
    assert M.structured(b.tool_result(3, "count"))["count"] == 4
    d.close_stdin()
    d.wait(H.slack(10))
    for h in (a, b):
        h.close_stdin()
        assert h.wait(H.slack(10)) == 0
    assert [len(bed.starts("legacy", s)) for s in "abc"] == [2, 1, 1]


# ---- the attachment cap of one server process ------------------------------------------------

ATT_MAX = 1024        # LP_MCPROUTE_ATT_MAX: hosts attached to one MCP server process at once
KIND_MCP = 3
FT_OPEN, FT_OPEN_OK, FT_RST = 0x01, 0x02, 0x06


class RawTunnel:
    """One tunnel session spoken by hand (docs/PROTOCOL.md): HELLO, then OPEN frames. It
    only opens streams and reads the answers; the streams stay open as long as the session,
    which outlives this link on the server (detached, for session.ttl)."""

    def __init__(self, port, timeout):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.s.sendall(H.hello_frame())
        ftype, _, _ = self.frame(time.monotonic() + timeout)
        assert ftype == 0x51, "no WELCOME (frame type 0x%02x)" % ftype

    def frame(self, deadline):
        """The next frame: (type, stream id, payload)."""
        while True:
            if len(self.buf) >= 8:
                ftype, _, length, sid = struct.unpack("!BBHI", self.buf[:8])
                if len(self.buf) >= 8 + length:
                    payload, self.buf = self.buf[8:8 + length], self.buf[8 + length:]
                    return ftype, sid, payload
            left = deadline - time.monotonic()
            assert left > 0, "the server did not answer in time"
            self.s.settimeout(left)
            data = self.s.recv(65536)
            assert data, "the server closed the tunnel link"
            self.buf += data

    def open_mcp(self, ids, name, scope):
        out = b""
        for sid in ids:
            payload = struct.pack("!BIH", KIND_MCP, 262144, len(name)) + name + scope
            out += struct.pack("!BBHI", FT_OPEN, 0, len(payload), sid) + payload
        self.s.sendall(out)

    def answers(self, ids, timeout):
        """{id: "ok" or "rst: <reason>"} for every id, waiting at most timeout."""
        want, got = set(ids), {}
        deadline = time.monotonic() + timeout
        while want - set(got):
            ftype, sid, payload = self.frame(deadline)
            if sid in want and ftype == FT_OPEN_OK:
                got[sid] = "ok"
            elif sid in want and ftype == FT_RST:
                got[sid] = "rst: " + payload[2:].decode("utf-8", "replace")
        return got

    def close(self):
        self.s.close()


@pytest.mark.budget(120)
def test_a_host_beyond_the_attachment_cap_gets_an_error_not_silence(bed):
    """One server process takes at most 1,024 hosts at once. The next one used to get OPEN_OK
    and then silence: every line it sent was dropped, its requests never answered. Now its
    stream is refused with the reason, and its limpet mcp turns that into a JSON-RPC error for
    the request; the server logs the refusal with the session and stream."""
    # A link that stays quiet while 1,024 streams open must not be taken for dead.
    bed.start_server("-o", "session.heartbeat=5s", "-o", "session.dead_after=60s")
    # max_streams (1,024 per session) keeps one session short of the cap: two fill it.
    first, second = RawTunnel(bed.sport, H.slack(10)), RawTunnel(bed.sport, H.slack(10))
    try:
        counts = (1000, ATT_MAX - 1000)
        for t, n in zip((first, second), counts):
            ids = [2 * k + 1 for k in range(n)]
            t.open_mcp(ids, b"legacy", b"full")
            got = t.answers(ids, H.slack(60))
            refused = {k: v for k, v in got.items() if v != "ok"}
            assert not refused, "refused below the cap: %r" % list(refused.items())[:3]

        # the 1,025th host: a real limpet mcp, whose initialize must be answered
        h = bed.raw("legacy", scope="full", label="late")
        h.request(1, "initialize", M.INIT_PARAMS)
        r, _ = h.response(1, H.slack(20))
        msg = M.error_message(r)
        print("the answer: %s" % msg)
        assert "too many hosts attached" in msg and str(ATT_MAX) in msg, msg
        # and again for the next request: refused each time, never silence
        h.request(2, "tools/list")
        r, _ = h.response(2, H.slack(20))
        assert "too many hosts attached" in M.error_message(r)
        refusals = bed.server.lines("refused: too many hosts attached")
        assert refusals and re.search(r"sess=\S+ stream=\d+ mcp=legacy scope=full", refusals[0]), \
            refusals[:1]
        assert len(bed.starts("legacy", "full")) == 1, "a second process was started"
        h.close_stdin()
        h.wait(H.slack(10))
    finally:
        first.close()
        second.close()
