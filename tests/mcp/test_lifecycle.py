"""How the pool ends MCP server processes, and who may reach them.

- Shutdown stops each process the MCP way (stdin closed, SIGTERM, SIGKILL) and the whole
  process group goes, grandchildren included, even when they ignore SIGTERM.
- A detached scoped process ends after mcp.idle_timeout; a process opened without --scope
  ends as soon as its limpet mcp does.
- With TLS, an identity reaches only the MCP servers its allow.mcp lists: any other is
  refused with the reason, the host's request is answered with it and limpet mcp exits 2.
"""

import os
import signal
import time

import pytest

import helpers as H
import mcplib as M
from conftest import server_yaml
from mcplib import RawHost
from test_tls import keygen


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return not any(l.startswith("State:") and "Z" in l.split()[1] for l in f)
    except FileNotFoundError:
        return False


def wait_file_words(path, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                words = f.read().split()
            if len(words) >= n:
                return [int(w) for w in words[:n]]
        time.sleep(0.05)
    raise AssertionError("%s never held %d pids" % (path, n))


@pytest.mark.budget(40)
def test_shutdown_stops_the_whole_process_group_even_when_it_ignores_sigterm(bed):
    pids = os.path.join(bed.tmp, "pids")
    # A server that ignores SIGTERM (and so does its grandchild) and never reads stdin.
    script = 'trap "" TERM; sleep 300 & echo $$ $! > %s; wait' % pids
    servers = bed.servers
    bed.servers = lambda: dict(servers(), stubborn={"command": "/bin/sh", "args": ["-c", script]})
    bed.start_server("-o", "mcp.stop_grace=200ms")
    h = bed.raw("stubborn", scope="s")
    sh_pid, sleep_pid = wait_file_words(pids, 2, H.slack(10))
    assert alive(sh_pid) and alive(sleep_pid)
    t0 = time.monotonic()
    bed.server.send_signal(signal.SIGTERM)
    assert bed.server.wait(H.slack(10)) == 0, bed.server.tail(20)
    took = time.monotonic() - t0
    # stdin closed, 200 ms, SIGTERM (ignored), 200 ms, SIGKILL to the group
    assert bed.server.count("did not exit 200ms after its stdin closed: SIGTERM") == 1
    assert bed.server.count("ignored SIGTERM for 200ms: SIGKILL") == 1
    assert took >= 0.35, took
    deadline = time.monotonic() + H.slack(3)
    while (alive(sh_pid) or alive(sleep_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sh_pid), "the MCP server process survived"
    assert not alive(sleep_pid), "its grandchild survived: the process group was not killed"
    h.stop()


@pytest.mark.budget(40)
def test_detached_scoped_process_ends_after_idle_timeout_and_unscoped_at_once(bed):
    bed.start_server("-o", "mcp.idle_timeout=1s")
    scoped = bed.raw("legacy", scope="idle")
    assert "result" in scoped.initialize(rid=1)[0]
    scoped.close_stdin()
    assert scoped.wait(H.slack(10)) == 0
    bed.server.wait_log("mcp=legacy scope=idle stopping:", timeout=H.slack(5))
    bed.server.wait_log("mcp=legacy scope=idle child exited", timeout=H.slack(5))
    assert len(bed.starts("legacy", "idle")) == 1

    unscoped = bed.raw("legacy", label="unscoped")
    assert "result" in unscoped.initialize(rid=1)[0]
    t0 = time.monotonic()
    unscoped.close_stdin()
    assert unscoped.wait(H.slack(10)) == 0
    line = bed.server.wait_log("its last attachment left (opened without a scope)",
                               timeout=H.slack(5))
    assert "mcp=legacy scope=~" in line[0], line
    assert time.monotonic() - t0 < 1.0, "an unscoped process waited for the idle timeout"


@pytest.mark.budget(40)
def test_allow_mcp_lets_an_identity_reach_only_the_servers_it_lists(bed, procs):
    keygen(bed.tmp, "psk", "alice")
    psk = os.path.join(bed.tmp, "alice.psk")
    cfg = os.path.join(bed.tmp, "server-tls.yaml")
    with open(cfg, "w") as f:
        f.write(server_yaml(bed.servers()))
        f.write("auth:\n  clients:\n    alice:\n      psk_file: %s\n      allow:\n"
                "        mcp: [\"legacy\"]\n" % psk)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
    argv = [H.BIN, "mcp", "-s", "127.0.0.1:%d" % sport, "-o", "identity=alice",
            "-o", "psk_file=%s" % psk] + list(H.FAST_CLIENT) + H.VERBOSE

    ok = RawHost(argv + ["--scope", "a", "legacy"], bed.tmp, "allowed")
    bed.raw_hosts.append(ok)
    assert "result" in ok.initialize(rid=1)[0]

    no = RawHost(argv + ["--scope", "a", "memory"], bed.tmp, "refused")
    bed.raw_hosts.append(no)
    r, _ = no.initialize(rid=1)
    assert "not allowed by the server's policy" in M.error_message(r), r
    assert no.wait(H.slack(10)) == 2, no.tail()
    server.wait_log("identity alice may not use mcp server memory", timeout=H.slack(5))
    # the refusal cost the allowed session nothing
    assert "result" in ok.call(2, "tools/list")


@pytest.mark.budget(40)
def test_sighup_restarts_a_server_whose_config_changed_and_keeps_the_others(bed):
    bed.start_server()
    changed = bed.raw("legacy", scope="c", label="changed")
    kept = bed.raw("stateless", scope="k", label="kept")
    assert "result" in changed.initialize(rid=1)[0]
    assert "result" in kept.call(1, "server/discover", {"_meta": {"protocolVersion":
                                                                  "2026-07-28"}})
    servers = bed.servers
    bed.servers = lambda: dict(servers(), legacy=dict(servers()["legacy"],
                                                      env={"LIMPET_TEST_CHANGED": "1"}))
    with open(os.path.join(bed.tmp, "server.yaml"), "w") as f:
        f.write(server_yaml(bed.servers()))
    bed.server.send_signal(signal.SIGHUP)
    bed.server.wait_log("mcp=legacy: 1 session(s) closed: its configuration changed",
                        timeout=H.slack(5))
    bed.server.wait_log("mcp=legacy scope=c child exited", timeout=H.slack(5))
    # the host goes on: its next request starts the server from the new configuration
    r = changed.call(2, "tools/list")
    assert "result" in r, r
    assert len(bed.starts("legacy", "c")) == 2
    # the unchanged server's process was not touched
    assert "result" in kept.call(2, "server/discover", {"_meta": {"protocolVersion":
                                                                  "2026-07-28"}})
    assert len(bed.starts("stateless", "k")) == 1
    assert bed.server.count("mcp=stateless scope=k child exited") == 0
