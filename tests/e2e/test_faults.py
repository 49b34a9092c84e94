"""Link faults under load: every stream byte-exact both ways (SHA-256), several at once.

client ──► faultrelay ──► server ──► sink/source target
     -L forward

Senders pace their bytes over a few seconds so that each transfer is in flight across many
faults whatever the machine's speed; the relay's own counters prove the faults happened.
The sanitizer build (LIMPET_ASAN=1) moves the same 64 MiB: it keeps up with the pace.
"""

import threading
import time

import pytest

import helpers as H

BIG = 64 * H.MiB


def four_streams(total_each_way, pace):
    return [H.Stream(up=total_each_way // 4, down=total_each_way // 4,
                     up_pace=pace, down_pace=pace) for _ in range(4)]


def assert_resumed(t, cuts, at_least):
    """The server logged a resume for (nearly) every cut: the faults really hit the session."""
    want = max(at_least, cuts // 2)
    lines = t.server.wait_log("resumed from", count=want, timeout=H.slack(5))
    print("relay cuts %d, server resumes %d, client resumes %d" % (
        cuts, len(lines), t.client.count("resumed")))
    assert len(lines) >= want
    assert t.client.count("resumed") >= want


@pytest.mark.budget(120)
def test_rst_every_300ms_64MiB_each_way_over_4_streams_is_byte_exact(tunnel, target):
    t = tunnel()
    t.relay.mode("rst")
    t.relay.every(300)
    streams = four_streams(BIG, pace=4.0)
    stats = H.run_faulted_transfer(t, streams, timeout=H.slack(90))
    print("transfer took %.1fs; relay %r" % (stats["elapsed"], stats))
    H.check_streams(streams, target)
    assert stats["cuts_rst"] >= 8, "relay cut only %d times: %r" % (stats["cuts"], stats)
    assert_resumed(t, stats["cuts"], at_least=8)


@pytest.mark.budget(120)
def test_midframe_cuts_64MiB_each_way_over_4_streams_is_byte_exact(tunnel, target):
    t = tunnel()
    t.relay.mode("midframe")
    t.relay.every(300)
    streams = four_streams(BIG, pace=4.0)
    stats = H.run_faulted_transfer(t, streams, timeout=H.slack(90))
    print("transfer took %.1fs; relay %r" % (stats["elapsed"], stats))
    H.check_streams(streams, target)
    assert stats["cuts_midframe"] >= 8, "relay cut only %d times: %r" % (stats["cuts"], stats)
    assert_resumed(t, stats["cuts"], at_least=8)


@pytest.mark.budget(150)
def test_black_holes_are_detected_within_dead_after_and_transfer_is_byte_exact(tunnel, target):
    """The relay stops forwarding without FIN or RST; only silence tells the link is dead.
    dead_after is 1 s (FAST); each hole must be followed by a resume within 1 s + slack."""
    dead_after = 1.0
    t = tunnel()
    t.relay.mode("blackhole")
    streams = four_streams(BIG, pace=5.0)
    holes = []                 # wall-clock time of each black hole that caught a connection
    done = threading.Event()

    def holer():
        next_at = time.monotonic() + 0.5
        while not done.wait(max(0.0, next_at - time.monotonic())):
            t0 = time.time()
            reply = t.relay.cut()
            if reply.startswith("ok cut=") and not reply.startswith("ok cut=0"):
                holes.append(t0)
            next_at = time.monotonic() + 1.5

    th = threading.Thread(target=holer, daemon=True)
    th.start()
    try:
        H.run_streams(streams, t.lport, timeout=H.slack(120))
    finally:
        done.set()
        th.join(10)
    H.check_streams(streams, target)
    assert len(holes) >= 2, "only %d black holes during the transfer" % len(holes)
    t.client.wait_log("resumed", count=len(holes), timeout=H.slack(5))
    resumed = [H.log_time(l) for l in t.client.lines("resumed")]
    limit = dead_after + H.slack(1.0)
    for hole in holes:
        after = [r for r in resumed if r is not None and r >= hole]
        assert after, "no client 'resumed' line after the black hole at %.3f" % hole
        took = min(after) - hole
        print("black hole at %.3f: resumed after %.3fs" % (hole, took))
        assert took <= limit, "black hole at %.3f: resumed only after %.2fs (limit %.2fs)" % (
            hole, took, limit)
    assert t.server.count("resumed from") >= len(holes)


@pytest.mark.budget(120)
def test_replay_buffer_smaller_than_data_in_flight_backpressures_and_loses_nothing(
        tunnel, target):
    opts = ["-o", "session.replay_buffer=64KiB"]
    t = tunnel(server_opts=opts, client_opts=opts)
    t.relay.mode("rst")
    t.relay.every(300)
    # two streams push as fast as they can (the replay buffer is always full), two are paced
    # so the transfer spans many cuts
    streams = [H.Stream(up=8 * H.MiB, down=8 * H.MiB) for _ in range(2)]
    streams += [H.Stream(up=8 * H.MiB, down=8 * H.MiB, up_pace=3.0, down_pace=3.0)
                for _ in range(2)]
    stats = H.run_faulted_transfer(t, streams, timeout=H.slack(90))
    print("transfer took %.1fs; relay %r" % (stats["elapsed"], stats))
    H.check_streams(streams, target)
    assert stats["cuts"] >= 5, "relay cut only %d times" % stats["cuts"]
    assert_resumed(t, stats["cuts"], at_least=5)
