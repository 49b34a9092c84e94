"""Process lifecycle: server restart, client killed, clean exit, command-line errors, a
forward used before the server exists, and garbage on the server's port."""

import random
import signal
import socket
import subprocess
import time

import pytest

import helpers as H


@pytest.mark.budget(90)
def test_server_restart_loses_the_session_resets_its_connections_and_new_ones_work(
        tunnel, procs, target):
    t = tunnel(relay=False)
    old = H.Stream(up=64 * H.MiB, down=64 * H.MiB, up_pace=30, down_pace=30)
    join_old = H.start_streams([old], t.lport, timeout=H.slack(60))
    H.wait_until(lambda: old.progress[0] > 0 and old.sent_progress[0] > 0, H.slack(10),
                 "the transfer to be running")
    t.server.kill9()
    killed = time.monotonic()
    H.limpet_server(procs, t.sport, *H.FAST)
    t.client.wait_log("session lost", timeout=H.slack(10))
    join_old()
    ended = old.finished - killed
    assert ended < H.slack(10), "local connection of the lost session hung for %.1fs" % ended
    assert old.recv_len < old.down and (old.error or old.recv_error or old.eof_at), \
        "the old stream neither failed nor ended"
    assert t.client.alive(), "client exited after losing the session"
    # the -L listener still accepts, and a new connection rides a new session end to end
    fresh = [H.Stream(up=2 * H.MiB, down=2 * H.MiB) for _ in range(2)]
    H.run_streams(fresh, t.lport, timeout=H.slack(30))
    H.check_streams(fresh, target)
    assert t.client.count("established") >= 2


@pytest.mark.budget(60)
def test_client_killed_server_expires_session_after_ttl_and_closes_target(
        tunnel, target):
    ttl = 2.0
    t = tunnel(relay=False, server_opts=["-o", "session.ttl=2s"])
    st = H.Stream(up=8 * H.MiB, down=8 * H.MiB, up_pace=30, down_pace=30)
    H.start_streams([st], t.lport, timeout=H.slack(40))
    rec = target.record(st.tag, timeout=H.slack(10))
    H.wait_until(lambda: rec.progress[0] > 0, H.slack(10), "data at the target")
    t.client.kill9()
    t.server.wait_log("detached", timeout=H.slack(5))
    time.sleep(ttl / 2)
    assert not rec.reader_done.is_set(), \
        "server closed the target connection before the session's ttl"
    expired = t.server.wait_log("expired", timeout=ttl + H.slack(5))[0]
    assert rec.reader_done.wait(H.slack(5)), "target connection still open after expiry"
    detached_at = H.log_time(t.server.lines("detached")[0])
    expired_at = H.log_time(expired)
    assert expired_at - detached_at >= ttl - 0.1, "expired %.2fs after detach, ttl is %.1fs" % (
        expired_at - detached_at, ttl)


@pytest.mark.budget(30)
def test_sigterm_client_exits_0_and_server_logs_goodbye(tunnel):
    t = tunnel(relay=False)
    established = t.client.count("established")
    t.client.send_signal(signal.SIGTERM)
    assert t.client.wait(H.slack(10)) == 0
    H.assert_clean_goodbye(t.server, t.client, established)
    assert t.server.alive()


def run_limpet(args, timeout=10):
    return subprocess.run([H.BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=H.slack(timeout))


@pytest.mark.parametrize("args,named", [
    (["client", "--bogus-flag", "--insecure", "-s", "127.0.0.1:PORT"], "--bogus-flag"),
    (["server", "--bogus-flag", "--insecure", "-l", "127.0.0.1:PORT"], "--bogus-flag"),
    (["client", "--insecure", "-s", "127.0.0.1:PORT", "-o", "session.heartbeat=soon"],
     "session.heartbeat"),
    (["server", "--insecure", "-l", "127.0.0.1:PORT", "-o", "session.no_such_key=1"],
     "session.no_such_key"),
    (["client", "--insecure", "-s", "127.0.0.1:PORT", "-L", "not-a-forward"],
     "not-a-forward"),
])
def test_bad_flag_or_value_exits_1_naming_it(limpet_bin, args, named):
    port = str(H.free_port())
    r = run_limpet([a.replace("PORT", port) for a in args])
    assert r.returncode == 1, "exit %d, stderr: %s" % (r.returncode, r.stderr)
    assert named in r.stderr, "stderr does not name %r: %s" % (named, r.stderr)


@pytest.mark.parametrize("role", ["server", "client"])
def test_without_insecure_refuses_to_start_with_one_line(limpet_bin, role):
    port = H.free_port()
    args = [role, "-l" if role == "server" else "-s", "127.0.0.1:%d" % port]
    if role == "client":
        args += ["-L", "%d:127.0.0.1:9" % H.free_port()]
    r = run_limpet(args)
    assert r.returncode == 1, "exit %d, stderr: %s" % (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    # issue 4: without keys, one line that names the command that makes them
    assert len(lines) == 1 and "limpet keygen" in lines[0], r.stderr
    assert not H.port_accepts(port)


@pytest.mark.budget(60)
def test_forward_connection_made_before_the_server_starts_waits_and_works(
        limpet_bin, procs, target):
    sport = H.free_port()
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, target.port)], *H.FAST_CLIENT,
                             "-o", "forward.connect_timeout=20s")
    streams = [H.Stream(up=H.MiB, down=H.MiB) for _ in range(2)]
    join = H.start_streams(streams, lport, timeout=H.slack(40))
    time.sleep(1.5)
    assert not any(st.finished or st.error for st in streams), "stream ended with no server"
    assert not target.records, "bytes reached the target with no server"
    H.limpet_server(procs, sport, *H.FAST)
    join()
    H.check_streams(streams, target)
    client.wait_log("established", timeout=H.slack(5))


@pytest.mark.budget(60)
def test_garbage_and_truncated_hello_are_dropped_with_one_line_each(tunnel, target):
    """Random bytes, an HTTP request and the first 20 bytes of a valid HELLO go straight to
    the server's port while a real client's transfer runs through it."""
    t = tunnel(server_opts=["-o", "limits.handshake_timeout=1s"])
    streams = [H.Stream(up=8 * H.MiB, down=8 * H.MiB, up_pace=4, down_pace=4)
               for _ in range(2)]
    join = H.start_streams(streams, t.lport, timeout=H.slack(40))
    rng = random.Random(5)
    junk = bytes([0xEE]) + rng.randbytes(4095)     # first byte: not a handshake frame type
    http = b"GET / HTTP/1.1\r\nHost: limpet\r\nUser-Agent: e2e\r\n\r\n"
    hello = H.hello_frame()[:20]
    for name, payload, hold in (("random", junk, 0.0), ("http", http, 0.0),
                                ("truncated hello", hello, 1.0)):
        before = t.server.count("dropped connection")
        s = socket.create_connection(("127.0.0.1", t.sport), timeout=5)
        sent_at = time.monotonic()
        try:
            s.sendall(payload)
        except OSError:
            pass                   # the server may already have dropped it
        if hold:
            assert not H.is_closed(s, hold * 0.7), \
                "%s: dropped before limits.handshake_timeout" % name
        assert H.is_closed(s, hold + H.slack(4)), "%s: connection not dropped" % name
        took = time.monotonic() - sent_at
        s.close()
        lines = t.server.wait_log("dropped connection", count=before + 1,
                                  timeout=H.slack(3))
        time.sleep(0.3)
        new = t.server.lines("dropped connection")[before:]
        assert len(new) == 1, "%s: %d log lines: %s" % (name, len(new), new)
        assert "127.0.0.1" in lines[-1], lines[-1]
        if hold:
            assert took >= hold * 0.9, "%s dropped after %.2fs" % (name, took)
    join()
    H.check_streams(streams, target)
    assert t.server.count("dropped connection") == 3
