"""File descriptors (issue 12, item 2): running out of them is survivable, and one identity
cannot take them all.

Promises checked: a server at its fd limit does not spin (it pauses accepting and retries on
a timer: its CPU stays low and its log stays short), a connection that arrives meanwhile, on
the tunnel port or the control socket, is answered (reset) instead of left hanging, and once
streams close new connections and new clients work again; `limits.streams_per_identity`
refuses the stream over the cap with a reason, counted over every session of the identity,
while another identity still gets its streams.
"""

import os
import socket
import subprocess
import time

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, server_yaml

FD_LIMIT = 64


def cpu_seconds(pid):
    """utime + stime of pid, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, seconds):
    """Share of one core pid used over the next `seconds`."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def echo_once(sock, payload, timeout):
    """True when payload comes back on sock within timeout."""
    sock.settimeout(timeout)
    try:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = sock.recv(len(payload) - len(got))
            if not b:
                return False
            got += b
        return got == payload
    except OSError:
        return False


def open_streams(port, most, timeout=3.0):
    """Opens echo streams through a -L port until one fails or `most` are open; returns the
    open sockets (the caller closes them) and whether one failed."""
    held = []
    for i in range(most):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except ConnectionResetError:   # refused so fast that connect() saw the reset
            return held, True
        if not echo_once(s, b"stream %d\n" % i, timeout):
            s.close()
            return held, True
        held.append(s)
    return held, False


def arrive(family, addr):
    """A new connection to the server; None when it was reset before connect() returned
    (the server answered it at once, which is what it should do)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
    except ConnectionResetError:
        s.close()
        return None
    return s


def status(path):
    return subprocess.run([H.BIN, "status", "--control", path, "--json"], capture_output=True,
                          text=True, timeout=H.slack(10))


@pytest.mark.budget(60)
def test_server_out_of_fds_stays_idle_answers_newcomers_and_recovers(
        limpet_bin, procs, echo, tmp_path):
    """The server runs with 64 fds; a client opens streams until the server has none left.
    Then new connections arrive on the tunnel port and the control socket: the server uses
    < 30% of a core over 2 s (it used to spin at ~75% writing a million log lines), logs a
    handful of lines about it, and resets each newcomer at once. After the streams close, new
    streams, a new client and `limpet status` work again."""
    ctl = str(tmp_path / "server.sock")
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST, "-o", "control.path=" + ctl,
                             prefix=("prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT), "--"))
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, echo.port)], *H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))

    held, failed = open_streams(lport, 2 * FD_LIMIT)
    newcomers = []
    try:
        assert failed, "%d streams open and the server never ran out of fds" % len(held)
        assert len(held) >= FD_LIMIT // 2, "only %d streams before the first failure" % len(held)
        lines_before = len(server.lines())
        for _ in range(3):
            newcomers.append(arrive(socket.AF_INET, ("127.0.0.1", sport)))
        newcomers.append(arrive(socket.AF_UNIX, ctl))

        share = cpu_share(server.pid, 2.0)
        print("server CPU while out of fds: %.1f%% of a core" % (share * 100))
        assert share < 0.30, "server used %.0f%% of a core while out of fds" % (share * 100)
        for i, s in enumerate(newcomers):
            assert s is None or H.is_closed(s, H.slack(3)), "newcomer %d was left hanging" % i
        grown = len(server.lines()) - lines_before
        assert grown < 40, "%d log lines in ~2 s while out of fds; last:\n%s" % (
            grown, "\n".join(server.lines()[-5:]))
        assert server.count("Too many open files") >= 1
        assert server.alive()
    finally:
        for s in held + newcomers:
            if s is not None:
                s.close()

    # once the streams are gone, everything works again
    def fresh_stream():
        with socket.create_connection(("127.0.0.1", lport), timeout=3) as s:
            return echo_once(s, b"again\n", 3)
    H.wait_until(fresh_stream, H.slack(10), "a new stream after the old ones closed")
    lport2 = H.free_port()
    second = H.limpet_client(procs, sport, [(lport2, echo.port)], *H.FAST_CLIENT, name="second")
    second.wait_log("established", timeout=H.slack(10))
    with socket.create_connection(("127.0.0.1", lport2), timeout=3) as s:
        assert echo_once(s, b"second\n", 3)
    r = status(ctl)
    assert r.returncode == 0, r.stderr
    assert client.alive() and server.alive()


def two_identity_server(procs, keys, target_port, *opts):
    port = H.free_port()
    allow = ["127.0.0.1:%d" % target_port]
    cfg = server_yaml(keys, port, [
        ("laptop", ("psk_file", os.path.join(keys, "laptop.psk")), allow),
        ("desktop", ("psk_file", os.path.join(keys, "desktop.psk")), allow)])
    server = H.limpet_server(procs, port, "-c", cfg, *H.FAST, *opts, insecure=False)
    return server, port


def psk_client(procs, keys, sport, target_port, identity, name):
    lport = H.free_port()
    c = H.limpet_client(procs, sport, [(lport, target_port)], *H.FAST_CLIENT,
                        *psk_client_opts(keys, identity, identity + ".psk"), insecure=False,
                        name=name)
    c.wait_log("established", timeout=H.slack(10))
    return c, lport


@pytest.mark.budget(60)
def test_streams_per_identity_caps_one_identity_over_its_sessions_not_another(
        limpet_bin, procs, echo, tmp_path):
    """limits.streams_per_identity=4: laptop's two sessions share 4 streams; the 5th (on
    either session) is refused with RST LIMIT and a reason both sides log, while desktop
    opens its 4 as usual. When one of laptop's streams ends, laptop may open another."""
    keys = str(tmp_path)
    keygen(keys, "psk", "laptop")
    keygen(keys, "psk", "desktop")
    server, sport = two_identity_server(procs, keys, echo.port,
                                        "-o", "limits.streams_per_identity=4")
    a1, p1 = psk_client(procs, keys, sport, echo.port, "laptop", "laptop1")
    a2, p2 = psk_client(procs, keys, sport, echo.port, "laptop", "laptop2")
    b, pb = psk_client(procs, keys, sport, echo.port, "desktop", "desktop")
    held = []
    try:
        first, failed = open_streams(p1, 3)
        held += first
        assert not failed and len(first) == 3
        second, failed = open_streams(p2, 2)
        held += second
        assert failed and len(second) == 1, "laptop got %d streams over the cap" % (
            len(first) + len(second) - 4)
        a2.wait_log("streams_per_identity", timeout=H.slack(5))
        extra, failed = open_streams(p1, 1)
        held += extra
        assert failed and not extra, "laptop's first session went over the cap"
        assert server.count("streams_per_identity") == 2, server.tail(10)

        others, failed = open_streams(pb, 4)
        held += others
        assert not failed and len(others) == 4, "desktop was held back by laptop's cap"

        first[0].close()       # laptop ends one stream: room for one more

        def one_more():
            more, _ = open_streams(p2, 1)
            held.extend(more)
            return bool(more)
        H.wait_until(one_more, H.slack(5), "laptop's stream after one ended", interval=0.1)
    finally:
        for s in held:
            s.close()
    assert a1.alive() and a2.alive() and b.alive()


def test_server_raises_its_soft_fd_limit_to_the_hard_one(limpet_bin, procs):
    """A soft limit of 100 under a hard one of 300: the server runs with 300 and says so."""
    server = H.limpet_server(procs, H.free_port(), prefix=("prlimit", "--nofile=100:300", "--"))
    with open("/proc/%d/limits" % server.pid) as f:
        line = next(l for l in f if l.startswith("Max open files"))
    assert line.split()[3:5] == ["300", "300"], line
    server.wait_log("open files limit raised from 100 to 300", timeout=1)
