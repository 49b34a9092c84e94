"""Admission (issue 12, item 3): strangers cannot lock real clients out.

Promise checked: while 39 loopback addresses (127.0.0.2 .. 127.0.0.40) hold 16 idle
connections each, more than limits.max_pending (256), and open a new one whenever the server
drops one of theirs, a session cut from its link resumes and a new client connects, each
within a few seconds: the pending table makes room by dropping its oldest connection that has
not authenticated, rather than refusing the newest.
"""

import os
import select
import socket
import threading
import time

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, server_yaml

SOURCES = ["127.0.0.%d" % i for i in range(2, 41)]
PER_SOURCE = 16


class Flood:
    """Idle connections from many sources, each replaced when the server closes it; a thread
    keeps them up until stop(). Bounded: at most `budget` connections in all."""

    def __init__(self, port, budget=20000):
        self.port = port
        self.budget = budget
        self.made = 0
        self.socks = {}            # socket -> source address
        self.stopping = threading.Event()
        self.thread = None

    def connect(self, src):
        if self.made >= self.budget:
            return
        self.made += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((src, 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return
        self.socks[s] = src

    def fill(self):
        for src in SOURCES:
            for _ in range(PER_SOURCE):
                self.connect(src)

    def _refill(self):
        while not self.stopping.is_set():
            ready, _, _ = select.select(list(self.socks), [], [], 0.05)
            for s in ready:            # readable: the server closed or reset it
                try:
                    if s.recv(1, socket.MSG_DONTWAIT) != b"":
                        continue       # it never sends; be safe anyway
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                src = self.socks.pop(s)
                s.close()
                self.connect(src)
            time.sleep(0.01)           # a flood, not a busy loop of the test itself

    def start(self):
        self.fill()
        self.thread = threading.Thread(target=self._refill, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread:
            self.thread.join(5)
        for s in list(self.socks):
            s.close()
        self.socks.clear()


def echo_works(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"ping\n")
            got = b""
            while len(got) < 5:
                b = s.recv(5 - len(got))
                if not b:
                    return False
                got += b
            return got == b"ping\n"
    except OSError:
        return False


@pytest.mark.budget(60)
def test_flood_from_many_sources_does_not_stop_a_resume_or_a_new_client(
        limpet_bin, procs, echo, tmp_path):
    keys = str(tmp_path)
    keygen(keys, "psk", "laptop")
    sport = H.free_port()
    cfg = server_yaml(keys, sport, [
        ("laptop", ("psk_file", os.path.join(keys, "laptop.psk")),
         ["127.0.0.1:%d" % echo.port])])
    # The flood's connections would time out after 30 s: everything here happens well before.
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST,
                             "-o", "limits.handshake_timeout=30s", insecure=False)
    relay = H.RelayProc(procs, sport)
    lport = H.free_port()
    first = H.limpet_client(procs, relay.port, [(lport, echo.port)], *H.FAST_CLIENT,
                            *psk_client_opts(keys), insecure=False, name="first")
    first.wait_log("established", timeout=H.slack(10))
    assert echo_works(lport)

    flood = Flood(sport)
    try:
        flood.start()
        H.wait_until(lambda: server.count("refused connection from") +
                     server.count("evicted for a newer one") >= 1, H.slack(10),
                     "the flood to fill the pending table")
        assert len(flood.socks) >= 256

        relay.cut("rst")                             # the first client must resume
        first.wait_log("resumed", timeout=H.slack(5))
        assert echo_works(lport)

        lport2 = H.free_port()                       # and a new client must get in
        second = H.limpet_client(procs, sport, [(lport2, echo.port)], *H.FAST_CLIENT,
                                 *psk_client_opts(keys), insecure=False, name="second",
                                 wait=False)
        second.wait_log("established", timeout=H.slack(5))
        assert echo_works(lport2)
        assert flood.thread.is_alive() and len(flood.socks) >= 256, "the flood gave up"
    finally:
        flood.stop()
    assert server.alive()
