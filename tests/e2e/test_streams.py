"""Stream semantics through the tunnel: half-close across cuts, a slow reader stalls only its
own stream. Every stream is checked byte-exact both ways with SHA-256."""

import threading
import time

import pytest

import helpers as H


@pytest.mark.budget(90)
def test_half_closed_stream_keeps_flowing_the_other_way_across_cuts(tunnel, target):
    """Client-first half-close: the client sends 1 MiB then shutdown(SHUT_WR); the target sees
    EOF and only then sends 6 MiB over 2.5 s, across two RST cuts; the client gets all of it,
    then EOF. Target-first half-close: the mirror image."""
    t = tunnel()
    client_first = [H.Stream(up=H.MiB, down=6 * H.MiB, down_after_eof=True, down_pace=2.5)
                    for _ in range(2)]
    target_first = [H.Stream(up=6 * H.MiB, down=H.MiB, up_after_eof=True, up_pace=2.5)
                    for _ in range(2)]
    streams = client_first + target_first
    join = H.start_streams(streams, t.lport, timeout=H.slack(60))

    def half_closed():
        return (all(st.tag in target.records and target.records[st.tag].eof_at
                    for st in client_first)
                and all(st.eof_at for st in target_first))

    H.wait_until(half_closed, H.slack(20), "every stream half-closed")
    cuts = []
    for delay in (0.7, 0.8):
        time.sleep(delay)
        reply = t.relay.cut("rst")
        assert reply == "ok cut=1 pending=0", "cut did not hit the tunnel: %s" % reply
        cuts.append(time.monotonic())
        t.server.wait_log("resumed from", count=len(cuts), timeout=H.slack(5))
    join()
    H.check_streams(streams, target)
    for st in client_first:
        rec = target.records[st.tag]
        assert rec.eof_at <= rec.send_started, "target sent before it saw the client's EOF"
        assert rec.eof_at < cuts[0] and st.eof_at > cuts[-1], \
            "the cuts did not fall between the half-close and the end of the stream"
    for st in target_first:
        rec = target.records[st.tag]
        assert st.eof_at < cuts[0] and rec.eof_at > cuts[-1], \
            "the cuts did not fall between the half-close and the end of the stream"


@pytest.mark.budget(90)
def test_slow_reader_stalls_only_its_own_stream(tunnel, target):
    """Stream A's local reader stops reading; stream B moves 32 MiB each way meanwhile and
    finishes in bounded time; then A reads again and gets every byte."""
    t = tunnel(relay=False)
    gate = threading.Event()
    a = H.Stream(up=H.MiB, down=32 * H.MiB, read_gate=gate)
    join_a = H.start_streams([a], t.lport, timeout=H.slack(80))
    rec_a = target.record(a.tag, timeout=H.slack(10))
    # A's buffers along the path fill: the target can no longer send
    H.wait_until(lambda: rec_a.sent_progress[0] > 0, H.slack(10), "target sending on A")
    last = [-1, time.monotonic()]

    def stalled():
        now = rec_a.sent_progress[0]
        if now != last[0]:
            last[0], last[1] = now, time.monotonic()
        return time.monotonic() - last[1] > 0.5

    H.wait_until(stalled, H.slack(10), "stream A to stall")
    b = H.Stream(up=32 * H.MiB, down=32 * H.MiB)
    started = time.monotonic()
    H.run_streams([b], t.lport, timeout=H.slack(30))
    took = time.monotonic() - started
    H.check_streams([b], target)
    assert a.recv_len == 0 and rec_a.sent_progress[0] < a.down, \
        "stream A was not stalled while B ran (target sent %d)" % rec_a.sent_progress[0]
    gate.set()
    join_a()
    H.check_streams([a], target)
    print("B moved 32 MiB each way in %.2fs while A was stalled at %d bytes" % (
        took, last[0]))
