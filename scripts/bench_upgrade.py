#!/usr/bin/env python3
"""bench_upgrade.py — the upgrade row of `make bench` (issue 14), standard library only.

One limpet server (--insecure, loopback), SESSIONS `limpet client` processes, each with one -L
forward to an echo target, and STREAMS connections held open through them (spread evenly). Then
ROUNDS times: SIGUSR2 to the server (it upgrades to its own binary), and for every session the
time from the signal to its client's "resumed" log line (wall-clock timestamps, ms); after each
round every stream must still echo a byte. Prints one result line:

    upgrade sessions=100 streams=1000 rounds=3 median_ms=.. max_ms=.. round_max_ms=..,..,..
            state_bytes=.. ok=1

Every process it starts is stopped by its PID at the end; every wait is bounded.
"""

import argparse
import calendar
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

from bench_tools import free_ports, stop_process  # this directory is on sys.path: run as a script

LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z")


def log_time(line):
    m = LOG_TS.match(line)
    if not m:
        return None
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return t + (float(m.group(2)) if m.group(2) else 0.0)


class Echo(threading.Thread):
    """An echo target for many idle connections: one thread, one selector."""

    def __init__(self):
        super().__init__(daemon=True)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.2):
                if key.fileobj is self.lsock:
                    try:
                        c, _a = self.lsock.accept()
                    except OSError:
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ)
                    continue
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(c)
                    c.close()
                    continue
                try:
                    c.sendall(data)  # a few bytes: the socket buffer takes them
                except OSError:
                    pass


class Proc:
    def __init__(self, argv, log):
        self.log = log
        self.f = open(log, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.f, stderr=self.f,
                                  close_fds=True)

    def lines(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()

    def stop(self):
        stop_process(self.p)
        self.f.close()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def echo_all(conns, timeout):
    """Every stream echoes one byte: the streams survived, byte-exact."""
    for i, c in enumerate(conns):
        c.sendall(b"%c" % (65 + i % 26))
    for i, c in enumerate(conns):
        c.settimeout(timeout)
        if c.recv(1) != b"%c" % (65 + i % 26):
            raise AssertionError("stream %d did not echo its byte" % i)


def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    echo = Echo()
    echo.start()
    procs, conns = [], []
    try:
        sport, *lports = free_ports(1 + args.sessions)
        server = Proc([args.limpet, "server", "--insecure", "-l", "127.0.0.1:%d" % sport,
                       "-o", "control.path=%s/server.sock" % args.workdir,
                       "-o", "limits.max_sessions=%d" % (args.sessions * 2)],
                      os.path.join(args.workdir, "upgrade-server.log"))
        procs.append(server)
        wait_until(lambda: any("listening on" in l for l in server.lines()), 10, "the server")
        clients = []
        for i, lport in enumerate(lports):
            c = Proc([args.limpet, "client", "--insecure", "-s", "127.0.0.1:%d" % sport,
                      "-L", "%d:127.0.0.1:%d" % (lport, echo.port), "-q",
                      "-o", "control.path=%s/client-%d.sock" % (args.workdir, i)],
                     os.path.join(args.workdir, "upgrade-client-%d.log" % i))
            procs.append(c)
            clients.append(c)
        # -q: a client logs warnings only; "resumed" is info. Count sessions on the server.
        wait_until(lambda: sum("new session" in l for l in server.lines()) >= args.sessions, 60,
                   "%d sessions" % args.sessions)
        for i in range(args.streams):
            lport = lports[i % args.sessions]
            for _ in range(50):
                try:
                    conns.append(socket.create_connection(("127.0.0.1", lport), timeout=10))
                    break
                except ConnectionRefusedError:
                    time.sleep(0.1)  # the client's listener is not up yet
        echo_all(conns, 10)
        rounds, state_bytes = [], []
        for r in range(args.rounds):
            before = sum("resumed from" in l for l in server.lines())
            t0 = time.time()
            server.p.send_signal(signal.SIGUSR2)
            wait_until(lambda: sum("resumed from" in l for l in server.lines()) >=
                       before + args.sessions, 60, "every session resumed")
            lines = server.lines()
            resumed = [l for l in lines if "resumed from" in l][before:before + args.sessions]
            rounds.append([(log_time(l) - t0) * 1000.0 for l in resumed])
            sizes = [int(m.group(1)) for l in lines
                     for m in [re.search(r"\((\d+) bytes of state\) over to", l)] if m]
            state_bytes.append(sizes[-1] if sizes else 0)
            echo_all(conns, 10)
            time.sleep(0.5)
        every = sorted(t for rd in rounds for t in rd)
        median = every[len(every) // 2]
        print("upgrade sessions=%d streams=%d rounds=%d median_ms=%.1f max_ms=%.1f "
              "round_max_ms=%s state_bytes=%d ok=1" % (
                  args.sessions, len(conns), args.rounds, median, every[-1],
                  ",".join("%.1f" % max(rd) for rd in rounds), max(state_bytes)))
        return 0
    except (AssertionError, TimeoutError, OSError) as e:
        print("upgrade ok=0 error=%s" % str(e).replace(" ", "_"))
        return 1
    finally:
        for c in conns:
            c.close()
        for p in reversed(procs):
            p.stop()
        echo.stop.set()
        echo.join(2)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limpet", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
