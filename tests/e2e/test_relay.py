"""The fault relay (scripts/faultrelay.py) on its own, against Python endpoints.

The other e2e tests trust the relay to inject exactly the faults they name; these tests hold
it to that: a RST reaches both ends, a mid-frame cut lands strictly inside a frame, a black
hole sends nothing at all while new connections still go through, a flip changes exactly one
bit of one TLS record body each way, throttling slows.
"""

import json
import random
import signal
import socket
import struct
import threading
import time

import pytest

import helpers as H


def raw_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.settimeout(10)
    return s


def connect_pair(relay, lsock):
    """A client socket through the relay and the target-side socket it became."""
    c = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    t, _ = lsock.accept()
    t.settimeout(10)
    return c, t


def frames(rng, total):
    """Limpet-shaped frames (DATA, stream 1, random payload lengths) of about total bytes."""
    out = bytearray()
    while len(out) < total:
        n = rng.choice([0, 1, 7, 8, 100, 1000, 16384, rng.randrange(0, 16385)])
        out += struct.pack("!BBHI", 3, 0, n, 1) + rng.randbytes(n)
    return bytes(out)


def frame_remainder(data):
    """Bytes after the last whole frame in data (b'' if data ends on a boundary)."""
    i = 0
    while len(data) - i >= 8:
        n = 8 + struct.unpack_from("!H", data, i + 2)[0]
        if len(data) - i < n:
            break
        i += n
    return data[i:]


def read_until_closed(sock, timeout):
    """Everything the peer sent, and how its end came: 'eof', 'reset' or 'open'."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            b = sock.recv(1 << 20)
        except socket.timeout:
            return bytes(got), "open"
        except ConnectionResetError:
            return bytes(got), "reset"
        if not b:
            return bytes(got), "eof"
        got += b
    return bytes(got), "open"


@pytest.fixture
def lsock():
    s = raw_listener()
    yield s
    s.close()


def test_relay_forwards_both_ways_byte_exact_with_half_close(procs, target):
    relay = H.RelayProc(procs, target.port)
    streams = [H.Stream(up=8 * H.MiB, down=8 * H.MiB) for _ in range(4)]
    streams += [H.Stream(up=H.MiB, down=2 * H.MiB, down_after_eof=True),
                H.Stream(up=2 * H.MiB, down=H.MiB, up_after_eof=True)]
    H.run_streams(streams, relay.port, timeout=60)
    H.check_streams(streams, target)
    st = relay.stats()
    assert st["connections"] == len(streams)
    assert st["bytes_up"] >= sum(s.up for s in streams)
    assert st["bytes_down"] == sum(s.down for s in streams)
    assert st["cuts"] == 0


def test_relay_rst_cut_resets_both_ends(procs, lsock):
    relay = H.RelayProc(procs, lsock.getsockname()[1], mode="rst")
    c, t = connect_pair(relay, lsock)
    c.sendall(b"ping")
    assert t.recv(4) == b"ping"
    assert relay.cut() == "ok cut=1 pending=0"
    _, how_c = read_until_closed(c, 5)
    _, how_t = read_until_closed(t, 5)
    assert (how_c, how_t) == ("reset", "reset")
    assert relay.stats()["cuts"] == 1
    c.close()
    t.close()


@pytest.mark.parametrize("direction", ["up", "down"])
def test_relay_midframe_cut_lands_strictly_inside_a_frame(procs, lsock, direction):
    relay = H.RelayProc(procs, lsock.getsockname()[1], mode="midframe")
    rng = random.Random(7)
    header_cuts = 0
    for round_ in range(12):
        c, t = connect_pair(relay, lsock)
        sender, receiver = (c, t) if direction == "up" else (t, c)
        data = frames(rng, 4 * H.MiB)
        stop = threading.Event()

        def pump():
            # sends in odd-sized pieces so the relay sees chunks that do not align to frames
            i = 0
            try:
                while i < len(data) and not stop.is_set():
                    n = rng.randrange(1, 70000)
                    sender.sendall(data[i:i + n])
                    i += n
                    time.sleep(0.001)
            except OSError:
                pass

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        first = receiver.recv(1)          # traffic is flowing before the cut
        assert first
        reply = relay.cut()
        assert reply.startswith("ok ")
        got, how = read_until_closed(receiver, 5)
        got = first + got
        stop.set()
        th.join(5)
        assert how == "reset", "round %d: receiver saw %s, not a RST" % (round_, how)
        assert data.startswith(got), "round %d: received bytes are not a prefix" % round_
        rest = frame_remainder(got)
        assert len(rest) >= 1, "round %d: cut landed on a frame boundary" % round_
        if len(rest) >= 8:
            assert len(rest) < 8 + struct.unpack_from("!H", rest, 2)[0]
        else:
            header_cuts += 1
        c.close()
        t.close()
    st = relay.stats()
    assert st["cuts_midframe"] == 12
    assert st["midframe_unconfirmed"] == 0
    print("header cuts: %d of 12 (relay: %d)" % (header_cuts, st["midframe_in_header"]))


def test_relay_midframe_every_ms_keeps_cutting_a_flowing_link(procs, lsock):
    relay = H.RelayProc(procs, lsock.getsockname()[1], mode="midframe", every=50)
    rng = random.Random(3)
    deadline = time.monotonic() + 10
    while relay.stats()["cuts"] < 5 and time.monotonic() < deadline:
        c, t = connect_pair(relay, lsock)
        data = frames(rng, 256 * 1024)
        try:
            for _ in range(100):
                c.sendall(data)
                t.recv(1 << 20)
        except OSError:
            pass
        c.close()
        t.close()
    assert relay.stats()["cuts"] >= 5


def test_relay_blackhole_sends_nothing_and_new_connections_go_through(procs, lsock):
    relay = H.RelayProc(procs, lsock.getsockname()[1], mode="blackhole")
    c, t = connect_pair(relay, lsock)
    c.sendall(b"before")
    assert t.recv(6) == b"before"
    assert relay.cut() == "ok cut=1 pending=0"
    c.sendall(b"lost up")
    t.sendall(b"lost down")
    # neither end gets a byte, a FIN or a RST
    got_c, how_c = read_until_closed(c, 1.5)
    got_t, how_t = read_until_closed(t, 0.2)
    assert (got_c, how_c) == (b"", "open")
    assert (got_t, how_t) == (b"", "open")
    # closing our end does not make the relay say anything to the other either
    c2, t2 = connect_pair(relay, lsock)
    c2.sendall(b"after")
    assert t2.recv(5) == b"after"
    t2.sendall(b"back")
    assert c2.recv(4) == b"back"
    st = relay.stats()
    assert st["holed"] == 1 and st["active"] == 1 and st["cuts_blackhole"] == 1
    for s in (c, t, c2, t2):
        s.close()


def recv_exact(sock, n):
    got = bytearray()
    while len(got) < n:
        b = sock.recv(n - len(got))
        assert b, "closed after %d of %d bytes" % (len(got), n)
        got += b
    return bytes(got)


def tls_records(rng, count):
    """TLS-shaped records (application data, TLS 1.2) with random bodies."""
    out = bytearray()
    for _ in range(count):
        n = rng.choice([17, 40, 1000, 16408, rng.randrange(17, 16409)])
        out += struct.pack("!BHH", 23, 0x0303, n) + rng.randbytes(n)
    return bytes(out)


def test_relay_flip_changes_one_bit_of_one_record_body_each_way(procs, lsock):
    relay = H.RelayProc(procs, lsock.getsockname()[1], mode="flip")
    c, t = connect_pair(relay, lsock)
    rng = random.Random(5)
    first, second = tls_records(rng, 3), tls_records(rng, 40)
    c.sendall(first)
    assert recv_exact(t, len(first)) == first
    assert relay.cut() == "ok cut=1 pending=0"
    for src, dst in ((c, t), (t, c)):
        src.sendall(second)
        got = recv_exact(dst, len(second))
        diff = [i for i in range(len(second)) if got[i] != second[i]]
        assert len(diff) == 1, diff
        assert bin(got[diff[0]] ^ second[diff[0]]).count("1") == 1
        # never a header byte: walk the records to the changed offset
        i = 0
        while i + 5 + struct.unpack_from("!H", second, i + 3)[0] <= diff[0]:
            i += 5 + struct.unpack_from("!H", second, i + 3)[0]
        assert diff[0] >= i + 5, (i, diff[0])
    st = relay.stats()
    assert st["cuts_flip"] == 1 and st["flipped"] == 2
    c.close()
    t.close()


def test_relay_throttle_slows_each_direction(procs, target):
    relay = H.RelayProc(procs, target.port, throttle=2_000_000)
    st = H.Stream(up=3_000_000, down=3_000_000)
    started = time.monotonic()
    H.run_streams([st], relay.port, timeout=30)
    elapsed = time.monotonic() - started
    H.check_streams([st], target)
    # 3 MB at 2 MB/s with a 100 kB burst cannot take less than ~1.4 s
    assert elapsed >= 1.4, "throttled transfer took only %.2fs" % elapsed
    relay.throttle(0)
    st2 = H.Stream(up=3_000_000, down=3_000_000)
    started = time.monotonic()
    H.run_streams([st2], relay.port, timeout=30)
    assert time.monotonic() - started < elapsed
    H.check_streams([st2], target)


def test_relay_control_protocol_and_clean_exit_on_sigterm(procs, echo):
    relay = H.RelayProc(procs, echo.port)
    s = relay.stats()
    for key in ("cuts", "connections", "bytes_up", "bytes_down"):
        assert key in s
    assert relay.mode("rst") == "ok mode=rst"
    assert relay.every(0) == "ok every=0"
    assert relay.throttle(0) == "ok throttle=0"
    with pytest.raises(AssertionError):
        relay.command("mode sideways")
    with pytest.raises(AssertionError):
        relay.command("frobnicate")
    json.loads(relay.command("stats"))
    relay.close()
    relay.proc.send_signal(signal.SIGTERM)
    assert relay.proc.wait(10) == 0


def test_relay_importable_in_process(echo):
    import importlib.util
    spec = importlib.util.spec_from_file_location("faultrelay", H.RELAY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = mod.Relay(("127.0.0.1", 0), ("127.0.0.1", echo.port), quiet=True).start_thread()
    try:
        with socket.create_connection(("127.0.0.1", r.listen_port), timeout=5) as c:
            c.sendall(b"hello")
            assert c.recv(5) == b"hello"
            assert r.cut("rst") == (1, 0)
            _, how = read_until_closed(c, 5)
            assert how == "reset"
        assert r.stats()["cuts"] == 1
    finally:
        r.stop()
