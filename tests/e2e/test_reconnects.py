"""1,000 reconnects: nothing leaks.

The relay RSTs the tunnel every 15 ms while small streams keep opening, moving data and
closing. After a clean client exit the server must be back to the file descriptors it had
before the client came; under LIMPET_ASAN=1 it must also exit 0 on SIGTERM with no
LeakSanitizer/AddressSanitizer/UBSan report.
"""

import signal
import threading
import time

import pytest

import helpers as H

RECONNECTS = 1000


def wait_for_cuts(relay, client, want, timeout, stall):
    """Waits for `want` cuts; fails early, saying so, if the client stops reconnecting."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        st = relay.stats()
        if st["cuts"] >= want:
            return
        now = time.monotonic()
        if st["connections"] != last:
            last, last_change = st["connections"], now
        if now - last_change > stall:
            raise AssertionError("client made no new tunnel connection for %.0fs after %d cuts "
                                 "(%d connections): reconnect loop stuck?\n%s" % (
                                     stall, st["cuts"], st["connections"], client.tail(15)))
        if now > deadline:
            raise TimeoutError("only %d of %d cuts after %.0fs" % (st["cuts"], want, timeout))
        time.sleep(0.2)


@pytest.mark.budget(180)
def test_1000_reconnects_leave_no_fd_or_memory_behind(limpet_bin, procs, target):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    time.sleep(0.3)
    baseline = server.fd_count()
    baseline_fds = server.fd_targets()
    relay = H.RelayProc(procs, sport)
    lport = H.free_port()
    client = H.limpet_client(procs, relay.port, [(lport, target.port)], *H.FAST_CLIENT,
                             "-o", "reconnect.initial_delay=10ms",
                             "-o", "reconnect.max_delay=100ms")
    client.wait_log("established", timeout=H.slack(10))

    streams = []
    stop = threading.Event()

    def traffic():
        # small streams one after another: opens, data and closes all cross the cuts
        deadline = time.monotonic() + H.slack(150)
        while not stop.is_set() and time.monotonic() < deadline:
            st = H.Stream(up=256 * 1024, down=256 * 1024, up_pace=0.2, down_pace=0.2)
            streams.append(st)
            H.run_stream(st, lport, time.monotonic() + H.slack(60))

    th = threading.Thread(target=traffic, daemon=True)
    th.start()
    relay.mode("rst")
    relay.every(15)
    try:
        wait_for_cuts(relay, client, RECONNECTS, H.slack(120), stall=H.slack(10))
    finally:
        relay.every(0)
        relay.mode("none")
        stop.set()
        th.join(H.slack(70))
    assert not th.is_alive(), "traffic thread stuck"
    stats = relay.stats()
    assert stats["cuts"] >= RECONNECTS
    assert len(streams) >= 5
    H.check_streams(streams, target)
    resumed = server.count("resumed from")
    assert resumed >= RECONNECTS // 2, "only %d resumes for %d cuts" % (resumed, stats["cuts"])

    established = client.count("established")
    client.send_signal(signal.SIGTERM)
    assert client.wait(H.slack(10)) == 0
    H.assert_clean_goodbye(server, client, established)
    try:
        H.wait_until(lambda: server.fd_count() <= baseline, H.slack(10),
                     "server fds back to %d" % baseline, interval=0.1)
    except TimeoutError:
        raise AssertionError("server has %d fds, had %d before the client: %s (before: %s)" % (
            server.fd_count(), baseline, server.fd_targets(), baseline_fds))
    assert server.fd_count() == baseline

    server.send_signal(signal.SIGTERM)
    status = server.wait(H.slack(15))
    assert status == 0, "server exit status %s after SIGTERM" % status
    assert server.sanitizer_report() == [], server.tail(60)
