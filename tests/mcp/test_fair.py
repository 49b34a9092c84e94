"""One identity cannot take another's MCP server process.

The pool's cap used to be one global LRU: an identity opening scope after scope evicted
another identity's detached process (and the state in it), then starved it with RST LIMIT.
Now each identity has a share (mcp.sessions_per_identity): at it, only its own detached
processes are evicted, and an attached one never.
"""

import os

import pytest

import helpers as H
import mcplib as M
from conftest import server_yaml
from mcplib import RawHost
from test_tls import keygen


@pytest.mark.budget(60)
def test_an_identity_opening_scope_after_scope_cannot_evict_another(bed, procs):
    keys = {}
    for name in ("alice", "mallory"):
        keygen(bed.tmp, "psk", name)
        keys[name] = os.path.join(bed.tmp, "%s.psk" % name)
    cfg = os.path.join(bed.tmp, "server-fair.yaml")
    with open(cfg, "w") as f:
        f.write(server_yaml(bed.servers()))
        f.write("  max_sessions: 3\n  sessions_per_identity: 2\n")
        f.write("auth:\n  clients:\n")
        for name, psk in keys.items():
            f.write("    %s:\n      psk_file: %s\n      allow:\n        mcp: [\"legacy\"]\n"
                    % (name, psk))
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)

    def host(identity, scope, label):
        argv = [H.BIN, "mcp", "-s", "127.0.0.1:%d" % sport, "-o", "identity=%s" % identity,
                "-o", "psk_file=%s" % keys[identity]] + list(H.FAST_CLIENT) + H.VERBOSE
        h = RawHost(argv + ["--scope", scope, "legacy"], bed.tmp, label)
        bed.raw_hosts.append(h)
        return h

    alice = host("alice", "notes", "alice")
    assert "result" in alice.initialize(rid=1)[0]
    started = server.lines("child started")
    assert len(started) == 1, started
    alice.close_stdin()                   # alice's host goes; her process waits for her
    assert alice.wait(H.slack(10)) == 0
    server.wait_log("goodbye from client", timeout=H.slack(5))

    held = []
    for i in (1, 2):                      # mallory's share, both attached
        h = host("mallory", "s%d" % i, "mallory-%d" % i)
        assert "result" in h.initialize(rid=1)[0]
        held.append(h)
    third = host("mallory", "s3", "mallory-3")
    r, _ = third.initialize(rid=1)
    assert "mcp.sessions_per_identity (2) reached for identity mallory" in \
        M.error_message(r), r
    assert server.count("evicted") == 0, server.tail()

    back = host("alice", "notes", "alice-back")
    assert "result" in back.initialize(rid=1)[0]
    assert len(server.lines("child started")) == 3, server.lines("child started")  # no restart
    for h in held:
        assert "result" in h.call(2, "tools/list")


@pytest.mark.budget(60)
def test_a_reload_that_takes_allow_mcp_away_cuts_the_host_off(bed, procs):
    """Revocation that revokes: when a reload removes an MCP server from an identity's
    allow.mcp, its attached host is cut off at once with the reason (and its limpet mcp exits
    2, as for a refused OPEN), while another identity's host goes on."""
    import signal
    keys = {}
    for name in ("alice", "bob"):
        keygen(bed.tmp, "psk", name)
        keys[name] = os.path.join(bed.tmp, "%s.psk" % name)
    cfg = os.path.join(bed.tmp, "server-revoke.yaml")

    def write(alice_allowed):
        with open(cfg, "w") as f:
            f.write(server_yaml(bed.servers()))
            f.write("auth:\n  clients:\n")
            for name, psk in keys.items():
                allowed = '"legacy"' if name == "bob" or alice_allowed else ""
                f.write("    %s:\n      psk_file: %s\n      allow:\n        mcp: [%s]\n"
                        % (name, psk, allowed))
    write(True)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
    hosts = {}
    for name in ("alice", "bob"):
        argv = [H.BIN, "mcp", "-s", "127.0.0.1:%d" % sport, "-o", "identity=%s" % name,
                "-o", "psk_file=%s" % keys[name]] + list(H.FAST_CLIENT) + H.VERBOSE
        hosts[name] = RawHost(argv + ["--scope", "k", "legacy"], bed.tmp, name)
        bed.raw_hosts.append(hosts[name])
        assert "result" in hosts[name].initialize(rid=1)[0]
    write(False)
    server.send_signal(signal.SIGHUP)
    server.wait_log("no longer allowed by the server's policy", timeout=H.slack(5))
    assert hosts["alice"].wait(H.slack(10)) == 2, hosts["alice"].tail()
    assert "no longer allowed" in hosts["alice"].stderr(), hosts["alice"].tail()
    assert "result" in hosts["bob"].call(2, "tools/list")
