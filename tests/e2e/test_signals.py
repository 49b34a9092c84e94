"""SIGTERM and SIGINT with streams open: every peer sees a clean end, nothing is left running.

- The server, stopped mid-transfer, sends GOODBYE(SHUTDOWN), exits 0 in bounded time and
  leaves no process behind. The client reports the server's goodbye, resets the local
  connections of the lost session (docs/PROTOCOL.md 5.4: a TCP reset, so an application sees
  an error, never a silent truncation), keeps its -L listener and rides a new session once a
  server is back (5.3: a GOODBYE from the server loses the session like a REJECT
  SESSION_UNKNOWN; README: -L carries on with a new session).
- The client, stopped by SIGTERM or SIGINT mid-transfer, says GOODBYE and exits 0; the server
  frees the session at once (not after session.ttl) and closes its target connections.
- The server with an MCP server process running stops that process (stdin closed, then
  SIGTERM, then SIGKILL to its group) before it exits: nothing of it is left.
"""

import json
import os
import select
import signal
import subprocess
import textwrap
import time

import pytest

import helpers as H

LONG_TTL = ["-o", "session.ttl=60s"]  # so "freed at once" cannot be the ttl expiring


def children_of(pid):
    """PIDs whose parent is pid (from /proc), with their state letter."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out[int(d)] = fields[0]
    return out


def process_gone(pid):
    """True when pid no longer runs: no /proc entry, or only a zombie left to be reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] == "Z"


def how_it_ended(st):
    """'reset', 'eof' or 'open' for a stream run by H.run_stream that did not finish."""
    errors = st.recv_error + " " + st.error
    if "ConnectionReset" in errors or "Broken pipe" in errors or "BrokenPipe" in errors:
        return "reset"
    if st.eof_at:
        return "eof"
    return "open: " + errors


def start_transfer(t, target, n=4, full_speed=False):
    """n streams moving 64 MiB each way over 30 s (or 1 GiB as fast as they can, so the
    tunnel's buffers are full); returns them and their joiner once the bytes flow both ways
    on every one."""
    if full_speed:
        streams = [H.Stream(up=1 << 30, down=1 << 30) for _ in range(n)]
    else:
        streams = [H.Stream(up=64 * H.MiB, down=64 * H.MiB, up_pace=30, down_pace=30)
                   for _ in range(n)]
    join = H.start_streams(streams, t.lport, timeout=H.slack(60))
    for st in streams:
        rec = target.record(st.tag, timeout=H.slack(10))
        H.wait_until(lambda r=rec, s=st: r.progress[0] > 0 and s.progress[0] > 0, H.slack(10),
                     "stream %d moving both ways" % st.tag)
    return streams, join


@pytest.mark.budget(90)
@pytest.mark.parametrize("full_speed", [False, True], ids=["paced", "full-speed"])
def test_sigterm_server_mid_transfer_says_goodbye_exits_0_and_client_carries_on(
        tunnel, procs, target, full_speed):
    t = tunnel(relay=False, server_opts=LONG_TTL)
    streams, join = start_transfer(t, target, n=8 if full_speed else 4, full_speed=full_speed)
    if full_speed:
        time.sleep(0.3)  # the tunnel's queues fill
    assert children_of(t.server.pid) == {}, "the server runs child processes with no MCP"

    sent = time.monotonic()
    t.server.send_signal(signal.SIGTERM)
    assert t.server.wait(H.slack(5)) == 0, "server exit status on SIGTERM:\n" + t.server.tail()
    took = time.monotonic() - sent
    assert took < H.slack(3), "server took %.1fs to exit on SIGTERM" % took
    t.server.wait_log("signal 15: shutting down", timeout=1)
    assert not t.server.lines(" ERROR "), "server logged errors on SIGTERM:\n" + t.server.tail()
    assert process_gone(t.server.pid)

    # The applications see their connections end at once. If the client missed the goodbye
    # (a link that merely broke), they would hang until the client gives up reconnecting.
    def all_ended():
        return all(st.finished for st in streams)

    try:
        H.wait_until(all_ended, H.slack(5), "the local connections to end")
    except TimeoutError:
        raise AssertionError("local connections still open %.0fs after the server exited "
                             "(%d of %d); client log:\n%s" % (
                                 H.slack(5), sum(not st.finished for st in streams),
                                 len(streams), t.client.tail(8)))
    # The client heard the goodbye: the session ended on purpose, not a lost link.
    t.client.wait_log("server ended the session (shutting down)", timeout=1)
    join(extra=H.slack(5))
    ended = {st.tag: how_it_ended(st) for st in streams}
    assert all(v == "reset" for v in ended.values()), \
        "local connections of the ended session (want a reset each): %s" % ended
    late = [st.finished - sent for st in streams if st.finished - sent > H.slack(3)]
    assert not late, "local connections closed %s s after SIGTERM" % late
    for st in streams:
        assert st.recv_len < st.down, "stream %d got everything: it was not mid-transfer" % st.tag
        rec = target.records[st.tag]
        assert rec.reader_done.wait(H.slack(3)), "target connection of stream %d still open" \
            % st.tag

    # Per the docs the client keeps its -L listener and starts a new session: with a server
    # back on the same port, a new connection works end to end.
    assert t.client.alive(), "client exited after the server's goodbye:\n" + t.client.tail()
    established = t.client.count("established")
    H.limpet_server(procs, t.sport, *H.FAST, name="server-again")
    t.client.wait_log("established", count=established + 1, timeout=H.slack(10))
    fresh = [H.Stream(up=H.MiB, down=H.MiB)]
    H.run_streams(fresh, t.lport, timeout=H.slack(20))
    H.check_streams(fresh, target)


@pytest.mark.budget(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_client_signal_mid_transfer_exits_0_and_server_frees_session_at_once(
        tunnel, target, sig):
    t = tunnel(relay=False, server_opts=LONG_TTL)
    streams, join = start_transfer(t, target, n=3)
    established = t.client.count("established")

    sent = time.monotonic()
    t.client.send_signal(sig)
    assert t.client.wait(H.slack(5)) == 0, "client exit status:\n" + t.client.tail()
    assert time.monotonic() - sent < H.slack(3), "client took too long to exit"
    H.assert_clean_goodbye(t.server, t.client, established)
    goodbye = t.server.lines("goodbye from client")
    assert len(goodbye) == 1 and "client exiting" in goodbye[0], goodbye

    # Freed at once: every target connection closes now, far inside the 60 s ttl, and the
    # session is never reported detached or expired.
    for st in streams:
        rec = target.records[st.tag]
        assert rec.reader_done.wait(H.slack(3)), \
            "target connection of stream %d still open after the client's goodbye" % st.tag
        assert rec.closed_at - sent < H.slack(3)
    assert not t.server.lines("detached") and not t.server.lines("expired"), t.server.tail()
    join(extra=H.slack(5))
    for st in streams:
        assert st.finished - sent < H.slack(5), "local connection %d outlived the client" % st.tag
    assert t.server.alive()


MCP_CHILD = textwrap.dedent("""\
    # An MCP-ish stdio server: answers every request line with its method's name. It starts
    # a helper of its own (as npx starts node), which only the process group stop can end:
    # the server itself exits when its stdin closes.
    import json, os, subprocess, sys
    helper = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("%d %d" % (os.getpid(), helper.pid))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" in msg and "method" in msg:
            out = {"jsonrpc": "2.0", "id": msg["id"], "result": {"echo": msg["method"]}}
            sys.stdout.write(json.dumps(out) + "\\n")
            sys.stdout.flush()
""")


def read_pids(path):
    """(MCP child, its helper) from the file the child writes, or None before it exists."""
    try:
        with open(path) as f:
            return tuple(int(x) for x in f.read().split())
    except OSError:
        return None


@pytest.mark.budget(60)
def test_sigterm_server_with_mcp_session_stops_the_mcp_process(limpet_bin, procs, tmp_path):
    tmp = str(tmp_path)
    child_py = os.path.join(tmp, "mcp_echo.py")
    pid_file = os.path.join(tmp, "mcp_echo.pid")
    with open(child_py, "w") as f:
        f.write(MCP_CHILD)
    cfg = os.path.join(tmp, "server.yaml")
    with open(cfg, "w") as f:
        f.write("mcp:\n  servers:\n    echo:\n      command: %s\n      args: [%s, %s]\n" % (
            json.dumps(H.PYTHON), json.dumps(child_py), json.dumps(pid_file)))
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "mcp.stop_grace=500ms", *H.FAST)
    # The MCP host's end needs a stdin pipe, which Procs does not give: run it here.
    with open(os.path.join(tmp, "mcp-host.stderr"), "wb") as err:
        host = subprocess.Popen([H.BIN, "mcp", "--insecure", "-s", "127.0.0.1:%d" % sport,
                                 "--scope", "kept", "echo"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err)
    try:
        host.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n')
        host.stdin.flush()
        ready, _, _ = select.select([host.stdout], [], [], H.slack(10))
        assert ready, "no answer from the MCP server through limpet"
        reply = json.loads(host.stdout.readline())
        assert reply["id"] == 1 and reply["result"] == {"echo": "initialize"}, reply
        child, helper = H.wait_until(lambda: read_pids(pid_file), H.slack(5),
                                     "the MCP child's pids")
        assert not process_gone(child) and not process_gone(helper)
        assert child in children_of(server.pid), "the MCP child is not the server's child"

        server.send_signal(signal.SIGTERM)
        assert server.wait(H.slack(5)) == 0, server.tail()
        assert process_gone(child), "the MCP server process outlived the limpet server"
        assert process_gone(helper), \
            "the MCP server's own child (pid %d) outlived the limpet server" % helper
        assert children_of(server.pid) == {}
        assert not server.lines(" ERROR "), server.tail()
    finally:
        if host.poll() is None:
            host.send_signal(signal.SIGTERM)
            try:
                host.wait(H.slack(5))
            except subprocess.TimeoutExpired:
                host.kill()
                host.wait(5)
        host.stdin.close()
        host.stdout.close()
