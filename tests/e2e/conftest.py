"""Fixtures for limpet's end-to-end suite: real processes on loopback.

Every test runs under a wall-clock budget (SIGALRM raises in the test, so a stuck test fails
and never hangs the suite); every process is stopped in teardown, its stderr is scanned for
sanitizer reports, and the tails of all logs are attached to a failing test's report.
"""

import os
import signal
import sys
from types import SimpleNamespace

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers as H  # noqa: E402

DEFAULT_BUDGET_S = 90


def pytest_configure(config):
    config.addinivalue_line("markers", "budget(seconds): wall-clock limit for one test")
    config.addinivalue_line("markers", "needs_limpet: the test runs the limpet binary")


class BudgetExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def budget(request):
    """Fails the test (from inside it) once its wall-clock budget is spent."""
    m = request.node.get_closest_marker("budget")
    seconds = H.slack(m.args[0] if m else DEFAULT_BUDGET_S)

    def expired(signum, frame):
        raise BudgetExceeded("test exceeded its %.0fs budget" % seconds)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield seconds
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


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
def limpet_bin():
    if not os.access(H.BIN, os.X_OK):
        pytest.fail("limpet binary not found at %s (set LIMPET_BIN, or `make`)" % H.BIN)
    return H.BIN


@pytest.fixture
def procs(request, tmp_path):
    p = H.Procs(str(tmp_path))
    request.node._limpet_procs = p
    yield p
    p.stop_all()
    reports = [(x.name, x.sanitizer_report()) for x in p.all
               if os.path.basename(x.argv[0]) != os.path.basename(H.PYTHON)]
    bad = [(name, hits) for name, hits in reports if hits]
    if bad:
        pytest.fail("sanitizer reports in %s" % ", ".join(
            "%s (%s)" % (name, "; ".join(hits)) for name, hits in bad))


@pytest.fixture
def target():
    t = H.SinkSource()
    yield t
    t.close()


@pytest.fixture
def echo():
    t = H.EchoServer()
    yield t
    t.close()


@pytest.fixture
def tunnel(limpet_bin, procs, target):
    """Builds server ← relay ← client with one -L forward to the sink/source target.

    The relay starts in mode none (so the first handshake goes through); tests switch the
    fault on once the session is established."""

    def make(server_opts=(), client_opts=(), relay=True, wait_established=True):
        sport = H.free_port()
        server = H.limpet_server(procs, sport, *H.FAST, *server_opts)
        rl = H.RelayProc(procs, sport) if relay else None
        lport = H.free_port()
        client = H.limpet_client(procs, rl.port if rl else sport, [(lport, target.port)],
                                 *H.FAST_CLIENT, *client_opts)
        if wait_established:
            client.wait_log("established", timeout=H.slack(10))
        return SimpleNamespace(server=server, client=client, relay=rl, lport=lport,
                               sport=sport, target=target)

    return make

