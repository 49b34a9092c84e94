#!/usr/bin/env python3
"""bench_haproxy.py — the haproxy row of `make bench` (issue 15), standard library only.

Limpet in PSK mode (TLS, SNI sent), measured three times in one run on loopback:

    direct    limpet client -> one limpet server (its plain listener)
    haproxy1  limpet client -> HAProxy -> one limpet server (node-a, its PROXY v2 listener): as
              many servers as direct, so the difference is what HAProxy itself costs
    haproxy   limpet client -> HAProxy -> three limpet servers (node-a..c, PROXY v2 listeners),
              HAProxy started from the shipped config/haproxy.cfg with only its ports rewritten
              (the same rewrite as tests/e2e/test_haproxy.py; haproxy1 also drops the lines of
              node-b and node-c)

For each path:
  - connections/s: short connections through an -L forward of one established session
    (lpbench connrate against the echo target: connect, 1 byte echoed, close, one at a time);
    the median of RUNS runs. These are new streams in an old session, not new sessions: the
    balancer sees none of them, only the tunnel's extra hop.
  - 1-stream throughput: BYTES through an -L forward to the sink (lpbench tput), median of RUNS.
  - resume: SESSIONS limpet clients dial through scripts/faultrelay.py (a child process); once
    every one is established, the relay cuts (RST) every link at once; each client logs
    "resumed (reconnect N, down Mms)": M, from the moment its link went down to the moment the
    session was live again, is the resume time. ROUNDS cuts; median and max over every session
    of every round.

Every server gets limits.max_pending_per_source and limits.sessions_per_identity above SESSIONS:
all the clients come from 127.0.0.1 with one identity, which the defaults (16 pending per
source, 32 sessions per identity) would throttle on both paths alike. Prints one line per path
and a last line:

    haproxy ok=1 PATH_connrate=.. PATH_tput1=.. PATH_resume_median_ms=.. PATH_resume_max_ms=..
            (for each PATH: direct, haproxy1, haproxy) sessions=.. rounds=..

Every process it starts is stopped by its PID at the end; every wait is bounded.
"""

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time

from bench_tools import free_ports, stop_process  # this directory is on sys.path: run as a script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = ("node-a", "node-b", "node-c")
SNI = "limpet.test"
RESUMED = re.compile(r"sess=[0-9a-f]{8} resumed \(reconnect \d+, down (\d+)ms\)")


class Proc:
    """One child process, its output in a log file, stopped by its own PID."""

    def __init__(self, argv, log, cwd=None):
        self.log = log
        self.f = open(log, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.f, stderr=self.f,
                                  close_fds=True, cwd=cwd)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def count(self, s):
        return self.text().count(s)

    def stop(self):
        stop_process(self.p)
        self.f.close()


def wait_until(pred, timeout, what, procs=()):
    deadline = time.monotonic() + timeout
    while not pred():
        for p in procs:
            if p.p.poll() is not None:
                raise RuntimeError("%s exited (status %d) while waiting for %s" % (
                    os.path.basename(p.log), p.p.returncode, what))
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.05)


def wait_port(port, timeout, proc):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_until(up, timeout, "port %d" % port, [proc])


def haproxy_cfg(path, front_port, proxy_ports, nodes=NODES):
    """The shipped config with these ports (and nothing else) changed, as test_haproxy does;
    with fewer nodes, the lines of the others are left out."""
    with open(os.path.join(ROOT, "config", "haproxy.cfg")) as f:
        text = f.read()
    for name in NODES[len(nodes):]:
        text, n = re.subn(r"(?m)^\s*(server|use-server) %s\b.*\n" % name, "", text)
        if n != 2:
            raise RuntimeError("config/haproxy.cfg: no server and use-server lines of " + name)
    text, n = re.subn(r"bind 0\.0\.0\.0:7070", "bind 127.0.0.1:%d" % front_port, text)
    if n != 1:
        raise RuntimeError("config/haproxy.cfg: no 'bind 0.0.0.0:7070' line to rewrite")
    for name, port in zip(NODES, proxy_ports):
        text, n = re.subn(r"(server %s 127\.0\.0\.1:)\d+" % name, r"\g<1>%d" % port, text)
        if n != 1:
            raise RuntimeError("config/haproxy.cfg: no 'server %s' line to rewrite" % name)
    with open(path, "w") as f:
        f.write(text)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


class Bench:
    def __init__(self, args):
        self.a = args
        self.dir = os.path.join(args.workdir, "haproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []

    def start(self, name, argv, cwd=None):
        p = Proc(argv, os.path.join(self.dir, name + ".log"), cwd=cwd)
        self.procs.append(p)
        return p

    def stop(self, *ps):
        for p in ps:
            p.stop()
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []

    def keys(self):
        r = subprocess.run([self.a.limpet, "keygen", "psk", "bench", "-o", "bench.psk"],
                           cwd=self.dir, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("limpet keygen: " + r.stderr.strip())
        self.psk = os.path.join(self.dir, "bench.psk")
        self.cfg = os.path.join(self.dir, "server.yaml")
        with open(self.cfg, "w") as f:
            f.write("auth:\n  clients:\n    bench:\n      psk_file: \"%s\"\n"
                    "      allow:\n        forward: [\"127.0.0.1:%d\", \"127.0.0.1:%d\"]\n" % (
                        self.psk, self.a.sink, self.a.echo))

    def server(self, name, listen, *opts):
        n = self.a.sessions * 2
        return self.start(name, [
            self.a.limpet, "server", "-c", self.cfg, "-l", "127.0.0.1:%d" % listen,
            "-o", "node.id=%s" % (name if name in NODES else "node-a"),
            "-o", "limits.max_sessions=%d" % n, "-o", "limits.sessions_per_identity=%d" % n,
            "-o", "limits.max_pending_per_source=%d" % n, "-o", "limits.max_pending=%d" % n,
            "-o", "control.path=%s" % os.path.join(self.dir, name + ".sock"), *opts])

    def entry(self, path):
        """Starts path's server side; returns the port a client dials. "haproxy1" is HAProxy
        before one node: as many limpet servers as direct, so it shows what HAProxy itself
        costs; "haproxy" is the shipped three."""
        if path == "direct":
            port, = free_ports(1)
            s = self.server("direct", port)
            wait_until(lambda: "listening on" in s.text(), 10, "the direct server", [s])
            return port
        nodes = NODES[:1] if path == "haproxy1" else NODES
        ports = free_ports(2 * len(nodes) + 1)
        servers = []
        for i, node in enumerate(nodes):
            servers.append(self.server(
                node, ports[2 * i], "-o", "proxy_protocol.listen=127.0.0.1:%d" % ports[2 * i + 1],
                "-o", "proxy_protocol.trusted=127.0.0.1"))
        for s in servers:
            wait_until(lambda: "listening on" in s.text(), 10, os.path.basename(s.log), [s])
        self.nodes_run = nodes
        hcfg = os.path.join(self.dir, "haproxy.cfg")
        haproxy_cfg(hcfg, ports[-1], ports[1:-1:2], nodes)
        h = self.start("haproxy", [self.a.haproxy, "-db", "-f", hcfg])
        wait_port(ports[-1], 10, h)
        time.sleep(1.5)  # the first health checks (inter 1s) mark the nodes up
        return ports[-1]

    def client(self, name, port, *opts):
        return self.start(name, [
            self.a.limpet, "client", "-s", "127.0.0.1:%d" % port, "-o", "identity=bench",
            "-o", "psk_file=" + self.psk, "-o", "tls.sni=" + SNI,
            "-o", "control.path=%s" % os.path.join(self.dir, name + ".sock"), *opts])

    def lpbench(self, *args):
        r = subprocess.run([self.a.lpbench, *map(str, args)], capture_output=True, text=True,
                           timeout=self.a.seconds * 3 + 30)
        out = r.stdout.strip().splitlines()
        if r.returncode != 0 or not out:
            raise RuntimeError("lpbench %s: %s" % (args[0], (r.stdout + r.stderr).strip()))
        return dict(kv.split("=", 1) for kv in out[-1].split() if "=" in kv)

    def loads(self, path, port):
        """Median connections/s and 1-stream bytes/s through one session's -L forwards."""
        sink, echo = free_ports(2)
        c = self.client(path + "-load", port, "-L", "%d:127.0.0.1:%d" % (sink, self.a.sink),
                        "-L", "%d:127.0.0.1:%d" % (echo, self.a.echo))
        wait_until(lambda: c.count("forward listening on") >= 2, 15, "the load client", [c])
        self.lpbench("connrate", "127.0.0.1:%d" % echo, 10, 5)  # code paths faulted in
        rates, bps = [], []
        for _ in range(self.a.runs):
            rates.append(float(self.lpbench("connrate", "127.0.0.1:%d" % echo, self.a.conns,
                                             self.a.seconds)["rate"]))
            bps.append(float(self.lpbench("tput", "127.0.0.1:%d" % sink, 1, self.a.bytes,
                                          self.a.seconds)["bps"]))
        self.stop(c)
        return median(rates), median(bps), rates, bps

    def resumes(self, path, port):
        """Resume times (ms) of every session over every round of cuts."""
        relay = self.start(path + "-relay", [
            sys.executable, os.path.join(ROOT, "scripts", "faultrelay.py"), "--listen",
            "127.0.0.1:0", "--target", "127.0.0.1:%d" % port, "--mode", "rst",
            "--control", "127.0.0.1:0", "--quiet"])
        wait_until(lambda: "relay control on" in relay.text(), 10, "the relay", [relay])
        rport = int(re.search(r"relay listening on [\d.]+:(\d+)", relay.text()).group(1))
        cport = int(re.search(r"relay control on [\d.]+:(\d+)", relay.text()).group(1))
        clients = [self.client("%s-c%d" % (path, i), rport) for i in range(self.a.sessions)]
        wait_until(lambda: all(c.count("established with") >= 1 for c in clients), 60,
                   "%d sessions" % len(clients), clients)
        ctl = socket.create_connection(("127.0.0.1", cport), timeout=10)
        times = []
        try:
            for r in range(self.a.rounds):
                time.sleep(0.5)  # every link idle and live
                ctl.sendall(b"cut\n")
                reply = ctl.recv(256).decode()
                if not reply.startswith("ok cut="):
                    raise RuntimeError("relay: " + reply.strip())
                wait_until(lambda: all(len(RESUMED.findall(c.text())) >= r + 1 for c in clients),
                           30, "every session resumed after cut %d" % (r + 1), clients)
                for c in clients:
                    times.append(int(RESUMED.findall(c.text())[r]))
        finally:
            ctl.close()
        lost = sum(c.count("established with") - 1 for c in clients)
        if lost:
            raise RuntimeError("%s: %d sessions started over instead of resuming" % (path, lost))
        self.stop(*clients, relay)
        return times

    def run_path(self, path):
        port = self.entry(path)
        rate, bps, rates, all_bps = self.loads(path, port)
        times = self.resumes(path, port)
        if path != "direct":
            unknown = sum(self.logs_count(n, "SESSION_UNKNOWN") for n in self.nodes_run)
            if unknown:
                raise RuntimeError("%d resumes landed on a node without the session" % unknown)
        res = {"connrate": rate, "tput1": bps, "resume_median_ms": median(times),
               "resume_max_ms": max(times)}
        print("%s connrate=%.0f (runs %s) tput1=%.0f (runs %s, MB/s) resume_median_ms=%d "
              "resume_max_ms=%d resumes=%d" % (
                  path, rate, ",".join("%.0f" % x for x in rates), bps,
                  ",".join("%.0f" % (x / 1e6) for x in all_bps), res["resume_median_ms"],
                  res["resume_max_ms"], len(times)), flush=True)
        self.stop_all()
        return res

    def logs_count(self, name, s):
        with open(os.path.join(self.dir, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace").count(s)


def run(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    b = Bench(args)
    try:
        b.keys()
        d = b.run_path("direct")
        h1 = b.run_path("haproxy1")
        h = b.run_path("haproxy")
    except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired) as e:
        print("haproxy ok=0 error=%s" % str(e).replace(" ", "_"))
        return 1
    finally:
        b.stop_all()
    fields = ["haproxy ok=1"]
    for name, r in (("direct", d), ("haproxy1", h1), ("haproxy", h)):
        fields.append("%s_connrate=%.0f %s_tput1=%.0f %s_resume_median_ms=%d "
                      "%s_resume_max_ms=%d" % (name, r["connrate"], name, r["tput1"], name,
                                               r["resume_median_ms"], name, r["resume_max_ms"]))
    fields.append("sessions=%d rounds=%d" % (args.sessions, args.rounds))
    print(" ".join(fields))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limpet", required=True)
    p.add_argument("--lpbench", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--sink", type=int, required=True, help="port of an lpbench sink")
    p.add_argument("--echo", type=int, required=True, help="port of an lpbench echo")
    p.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bytes", type=int, default=256 * 1024 * 1024)
    p.add_argument("--conns", type=int, default=2000)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
