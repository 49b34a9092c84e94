"""Fixtures for limpet's netns suite: the same faults as tests/e2e, on a real (virtual) link.

Two network namespaces, lpA-<pid>-<n> (client) and lpB-<pid>-<n> (server and target), joined
by a veth pair with addresses in 10.213.1.0/24 that exist only inside those namespaces. Nothing
is routed anywhere else. The test process reaches each namespace's loopback by creating its
sockets in a short-lived thread that has joined the namespace with setns(2): a socket belongs
to the namespace it was created in, whichever thread uses it afterwards.

The whole suite is skipped, with the reason, where `ip netns add` is not permitted.
"""

import ctypes
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import helpers as H  # noqa: E402

CLONE_NEWNET = 0x40000000
NET = "10.213.1"
A_ADDR, B_ADDR, A_NEW_ADDR = NET + ".1", NET + ".2", NET + ".3"
SERVER_PORT, LOCAL_PORT = 7400, 7402
_seq = itertools.count(1)


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=10)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


@pytest.fixture(scope="session")
def netns_permitted():
    probe = "lpprobe-%d" % os.getpid()
    try:
        r = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip("network namespaces not permitted: %s" % e)
    if r.returncode != 0:
        pytest.skip("network namespaces not permitted: %s" % (r.stderr.strip() or
                                                               "ip netns add failed"))
    ip("netns", "del", probe, check=False)
    return True


def in_netns(name, fn):
    """Runs fn() in a new thread that has joined network namespace `name`; returns its
    result (sockets it creates stay in that namespace)."""
    box = []

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/var/run/netns/%s" % name, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, "setns(%s): %s" % (name, os.strerror(err)))
            finally:
                os.close(fd)
            box.append(fn())
        except Exception as e:
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(15)
    if not box:
        raise TimeoutError("in_netns(%s) did not finish" % name)
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


class BudgetExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def budget(request):
    m = request.node.get_closest_marker("budget")
    seconds = H.slack(m.args[0] if m else 90)

    def expired(signum, frame):
        raise BudgetExceeded("test exceeded its %.0fs budget" % seconds)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield seconds
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def pytest_configure(config):
    config.addinivalue_line("markers", "budget(seconds): wall-clock limit for one test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    procs = getattr(item, "_limpet_procs", None)
    if procs is None or not rep.failed or call.when not in ("call", "teardown"):
        return
    for title, text in procs.tails(40):
        rep.sections.append(("log tail: " + title, text))


@pytest.fixture
def netpair(request, tmp_path, netns_permitted):
    """Namespaces, veth, target, server (ns B) and client (ns A); all removed afterwards."""
    if not os.access(H.BIN, os.X_OK):
        pytest.fail("limpet binary not found at %s (set LIMPET_BIN, or `make`)" % H.BIN)
    n = next(_seq)
    tag = "%d-%d" % (os.getpid(), n)
    ns_a, ns_b = "lpA-" + tag, "lpB-" + tag
    veth_a, veth_b = "lpa%x" % (os.getpid() * 100 + n), "lpb%x" % (os.getpid() * 100 + n)
    procs = H.Procs(str(tmp_path))
    request.node._limpet_procs = procs
    created = []
    target = None
    try:
        for ns in (ns_a, ns_b):
            ip("netns", "add", ns)
            created.append(ns)
        # created in A, one end moved to B: the pair never touches the root namespace's links
        ip("-n", ns_a, "link", "add", veth_a, "type", "veth", "peer", "name", veth_b,
           "netns", ns_b)
        ip("netns", "exec", ns_a, "sysctl", "-qw",
           "net.ipv4.conf.all.promote_secondaries=1")
        ip("netns", "exec", ns_a, "sysctl", "-qw",
           "net.ipv4.conf.%s.promote_secondaries=1" % veth_a)
        ip("-n", ns_a, "addr", "add", A_ADDR + "/24", "dev", veth_a)
        ip("-n", ns_b, "addr", "add", B_ADDR + "/24", "dev", veth_b)
        for ns, dev in ((ns_a, veth_a), (ns_b, veth_b)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")

        def listen_b():
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            return s

        target = H.SinkSource(sock=in_netns(ns_b, listen_b))
        server = H.limpet_server(procs, "%s:%d" % (B_ADDR, SERVER_PORT), *H.FAST,
                                 prefix=["ip", "netns", "exec", ns_b])
        client = H.limpet_client(procs, "%s:%d" % (B_ADDR, SERVER_PORT),
                                 [(LOCAL_PORT, target.port)], *H.FAST_CLIENT,
                                 prefix=["ip", "netns", "exec", ns_a])
        client.wait_log("established", timeout=H.slack(10))

        def connect_a():
            return in_netns(ns_a, lambda: socket.create_connection(
                ("127.0.0.1", LOCAL_PORT), timeout=10))

        yield SimpleNamespace(ns_a=ns_a, ns_b=ns_b, veth_a=veth_a, veth_b=veth_b,
                              server=server, client=client, target=target, procs=procs,
                              connect_a=connect_a, ip=ip, a_addr=A_ADDR, b_addr=B_ADDR,
                              a_new_addr=A_NEW_ADDR)
    finally:
        procs.stop_all()
        if target is not None:
            target.close()
        for ns in created:
            ip("netns", "del", ns, check=False)
