"""Upgrade in place (issue 14): `kill -USR2` hands every session to a new binary in the same
process, and no application notices more than a pause.

Two builds of limpet that differ in their version string (the session fixture builds the
second one, "0.1.0+b", from the first one's objects: only what prints the version is compiled
again). The promises checked:
  - 4 -L streams (64 MiB each way; 16 MiB under ASan, whose build is several times slower), a
    -D download with curl, a -R connection, an ssh session through `limpet stdio` and a scoped
    `limpet mcp` session are all in flight while the server is upgraded three times (old ->
    new -> old -> new): every byte arrives, the MCP counter goes on in the same process, the
    -R port never refuses a connection, the server keeps its pid, and `limpet status` shows
    the new version and three upgrades;
  - a new binary that fails its --check-upgrade, one that does not exist, one that cannot be
    executed and one that reads only other state versions: the old one keeps serving (one log
    line each), its sessions never notice;
  - a check that never answers: after upgrade.check_timeout it is killed with everything it
    started, and the old binary serves on;
  - after a refused state, an old MCP server process that ignores stdin EOF and SIGTERM is
    killed and reaped (nothing adopted it);
  - a state file whose version the new binary does not read (the test hook
    LIMPET_TEST_STATE_VERSION): it starts fresh on the inherited listeners and says so, and
    closes every other inherited descriptor;
  - the server holds as many descriptors after an upgrade as before it.
"""

import hashlib
import http.server
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import helpers as H
import test_socks

sys.path.insert(0, os.path.join(H.ROOT, "tests", "mcp"))
from mcplib import RawHost  # noqa: E402

VERSION_B = "0.1.0+b"
LEGACY_JS = os.path.join(H.ROOT, "tests", "mcp", "servers", "legacy.mjs")


# ---- the second build -----------------------------------------------------------------------

def _objects_printing_the_version():
    """Sources that use LP_VERSION: their objects must be compiled again for build B."""
    out = []
    for top in ("src", "man", "tests/tools"):
        for d, _, files in os.walk(os.path.join(H.ROOT, top)):
            for f in files:
                if f.endswith(".c"):
                    path = os.path.join(d, f)
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        if "LP_VERSION" in fh.read():
                            out.append(os.path.relpath(path, H.ROOT))
    return out


@pytest.fixture(scope="session")
def binary_b():
    """build B: the same sources as LIMPET_BIN's build with VERSION=0.1.0+b. Its objects start
    as a copy of that build's (their dependency files rewritten to the new place), so make
    compiles only what names the version; later runs are incremental."""
    base = os.path.dirname(os.path.abspath(H.BIN))
    if not os.path.isdir(os.path.join(base, "obj")):
        pytest.fail("no build objects next to %s to derive build B from" % H.BIN)
    build_b = os.path.join(base, "upgrade-b")
    rel_base = os.path.relpath(base, H.ROOT)
    rel_b = os.path.relpath(build_b, H.ROOT)
    obj_b = os.path.join(build_b, "obj")
    if not os.path.isdir(obj_b):
        tmp = obj_b + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(os.path.join(base, "obj"), tmp)
        for d, _, files in os.walk(tmp):
            for f in files:
                if f.endswith(".d"):
                    p = os.path.join(d, f)
                    with open(p) as fh:
                        text = fh.read()
                    with open(p, "w") as fh:
                        fh.write(text.replace(rel_base + "/obj/", rel_b + "/obj/"))
        for src in _objects_printing_the_version():
            for ext in (".o", ".d"):
                p = os.path.join(tmp, src[:-2] + ext)
                if os.path.exists(p):
                    os.unlink(p)
        os.rename(tmp, obj_b)
    argv = ["make", "-s", "-j2", "-C", H.ROOT, "BUILD=" + rel_b, "VERSION=" + VERSION_B,
            rel_b + "/limpet"]
    if H.ASAN:
        argv.insert(len(argv) - 1, "SAN=1")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "building %s failed:\n%s%s" % (rel_b, r.stdout, r.stderr)
    path = os.path.join(build_b, "limpet")
    v = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    assert VERSION_B in v.stdout, v.stdout
    return path


# ---- helpers ----------------------------------------------------------------------------------

def write_config(path, binary, mcp=True, check_timeout=None):
    lines = ["upgrade:", "  binary: %s" % json.dumps(binary)]
    if check_timeout:
        lines.append("  check_timeout: %s" % check_timeout)
    if mcp:
        node = shutil.which("node") or shutil.which("nodejs")
        lines += ["mcp:", "  servers:", "    legacy:", "      command: %s" % json.dumps(node),
                  "      args: [%s]" % json.dumps(LEGACY_JS)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def status(ctl):
    """The server's status document (`limpet status --json --control ctl`)."""
    r = subprocess.run([H.BIN, "status", "--json", "--control", ctl], capture_output=True,
                       text=True, timeout=H.slack(10))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["processes"][0]


def all_live(ctl, n):
    doc = status(ctl)
    states = [s["state"] for s in doc["sessions"]]
    return len(states) == n and all(s == "live" for s in states)


class Upgrader:
    """Points upgrade.binary at a binary (SIGHUP), then sends SIGUSR2 and waits until the new
    binary has restored the state and every session is live again."""

    def __init__(self, server, cfg, ctl, sessions, mcp=True):
        self.server, self.cfg, self.ctl, self.sessions, self.mcp = server, cfg, ctl, sessions, mcp
        self.done = 0

    def to(self, binary, timeout=20.0):
        reloads = self.server.count("applied (")
        write_config(self.cfg, binary, self.mcp)
        self.server.send_signal(signal.SIGHUP)
        self.server.wait_log("applied (", count=reloads + 1, timeout=H.slack(10))
        started = time.monotonic()
        self.server.send_signal(signal.SIGUSR2)
        self.done += 1
        self.server.wait_log("upgrade: restored", count=self.done, timeout=H.slack(timeout))
        H.wait_until(lambda: all_live(self.ctl, self.sessions), H.slack(timeout),
                     "every session live again after upgrade %d" % self.done, interval=0.05)
        return time.monotonic() - started


class Files(test_socks.Files):
    """test_socks's paced file server at about 4 MiB/s, so that a download is in flight while
    the server upgrades."""

    PACE = 0.016


class Prober(threading.Thread):
    """Connects to a -R port every 50 ms and has 5 bytes echoed back: a refused or failed one
    is recorded. Bounded by count and by `stop`."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok, self.failed = port, stop, 0, []

    def run(self):
        for i in range(2000):
            if self.stop.is_set():
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.settimeout(H.slack(15))
                    s.sendall(b"p%04d" % (i % 10000))
                    got = b""
                    while len(got) < 5:
                        b = s.recv(5 - len(got))
                        if not b:
                            break
                        got += b
                    if got != b"p%04d" % (i % 10000):
                        self.failed.append("probe %d: echoed %r" % (i, got))
                    else:
                        self.ok += 1
            except OSError as e:
                self.failed.append("probe %d: %r" % (i, e))
            time.sleep(0.05)


def paced_echo(port, total, seconds, result):
    """Sends `total` bytes to port over `seconds` and reads the echo; result gets the verdict."""
    data = os.urandom(total)
    got = bytearray()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)

        def reader():
            s.settimeout(H.slack(60))
            while len(got) < total:
                b = s.recv(65536)
                if not b:
                    break
                got.extend(b)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        start = time.monotonic()
        for off in range(0, total, 64 * 1024):
            due = start + seconds * off / total
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            s.sendall(data[off:off + 64 * 1024])
        t.join(H.slack(60))
        s.close()
    except OSError as e:
        result.append("error %r after %d bytes" % (e, len(got)))
        return
    result.append("ok" if bytes(got) == data else "got %d of %d bytes, equal prefix %s" % (
        len(got), total, bytes(got) == data[:len(got)]))


def ssh_argv(d, sshd_port, sport, stdio_log, seconds):
    from test_stdio import SSH, user_name
    proxy = "%s stdio --insecure -s 127.0.0.1:%d %s 127.0.0.1:%d 2>>%s" % (
        shlex.quote(H.BIN), sport, " ".join(shlex.quote(o) for o in H.FAST_CLIENT), sshd_port,
        shlex.quote(stdio_log))
    remote = ('i=0; end=$(( $(date +%%s) + %d )); while [ "$(date +%%s)" -lt "$end" ]; do '
              'echo $i; i=$((i+1)); sleep 0.05; done; echo end $i' % seconds)
    return [SSH, "-F", "/dev/null", "-i", os.path.join(d, "user_key"), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=0", "-o", "ProxyCommand=" + proxy,
            "%s@127.0.0.1" % user_name(), remote]


def check_ssh_output(ssh, rc):
    lines = ssh.stdout().splitlines()
    assert rc == 0, "ssh exited %s:\n%s" % (rc, ssh.tail())
    count = int(lines[-1].split()[1]) if lines and lines[-1].startswith("end ") else -1
    expected = [str(i) for i in range(count)] + ["end %d" % count]
    assert count >= 50 and lines == expected, "ssh output incomplete: %d lines, last %s" % (
        len(lines), lines[-1:])


def mcp_host(tmp, sport, scope):
    argv = [H.BIN, "mcp", "--insecure", "-s", "127.0.0.1:%d" % sport] + H.FAST_CLIENT + \
        H.VERBOSE + ["--scope", scope, "legacy"]
    return RawHost(argv, tmp, "mcp-host")


def need_node():
    if not (shutil.which("node") or shutil.which("nodejs")):
        H.missing_tool("node", "nodejs")


# ---- everything in flight, three upgrades ----------------------------------------------------

@pytest.mark.budget(300)
def test_three_upgrades_while_everything_is_in_flight_lose_nothing(
        limpet_bin, binary_b, procs, target, echo, tmp_path):
    need_node()
    from test_stdio import start_sshd
    tmp = str(tmp_path)
    size = (16 if H.ASAN else 64) * H.MiB
    pace = 10.0 if H.ASAN else 8.0
    sshd, ssh_port = start_sshd(procs, os.path.join(tmp, "ssh"))
    blob = os.urandom((8 if H.ASAN else 24) * H.MiB)
    with open(os.path.join(tmp, "blob"), "wb") as f:
        f.write(blob)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: Files(*a, directory=tmp, **kw))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    host = None
    try:
        cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
        write_config(cfg, binary_b)
        sport = H.free_port()
        server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl, *H.FAST)
        lport, dport, rport = H.free_port(), H.free_port(), H.free_port()
        client = H.limpet_client(procs, sport, [(lport, target.port)], "-D", str(dport),
                                 "-R", "%d:127.0.0.1:%d" % (rport, echo.port), *H.FAST_CLIENT)
        client.wait_log("the server listens on", timeout=H.slack(10))

        host = mcp_host(tmp, sport, "upgrade")
        assert "result" in host.initialize()[0]
        first = host.tool_result(2, "count")["structuredContent"]
        assert first["count"] == 1
        child = first["pid"]

        ssh = procs.start("ssh", ssh_argv(os.path.join(tmp, "ssh"), ssh_port, sport,
                                          os.path.join(tmp, "stdio.stderr"),
                                          int(H.slack(14))))
        streams = [H.Stream(up=size, down=size, up_pace=pace, down_pace=pace) for _ in range(4)]
        join = H.start_streams(streams, lport, H.slack(180))
        curl_out = os.path.join(tmp, "got")
        curl = procs.start("curl", ["curl", "-sS", "--fail", "--max-time", str(int(H.slack(90))),
                                    "--socks5-hostname", "127.0.0.1:%d" % dport, "-o", curl_out,
                                    "http://localhost:%d/slow/blob" % httpd.server_address[1]])
        rresult = []
        rthread = threading.Thread(target=paced_echo, args=(rport, 8 * H.MiB, pace, rresult),
                                   daemon=True)
        rthread.start()
        prober = Prober(rport, stop)
        prober.start()
        H.wait_until(lambda: all_live(ctl, 3), H.slack(10), "three sessions live")
        time.sleep(1.0)

        up = Upgrader(server, cfg, ctl, 3)
        pauses = []
        for i, binary in enumerate([binary_b, limpet_bin, binary_b]):
            pauses.append(up.to(binary))
            got = host.tool_result(10 + i, "count")["structuredContent"]
            assert got == {"count": 2 + i, "pid": child}, got
            time.sleep(0.5)
        assert server.alive() and client.alive()

        check_ssh_output(ssh, ssh.wait(H.slack(60)))
        assert curl.wait(H.slack(90)) == 0, curl.tail()
        with open(curl_out, "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(blob).digest()
        join(extra=H.slack(60))
        H.check_streams(streams, target, timeout=H.slack(30))
        rthread.join(H.slack(60))
        assert rresult == ["ok"], rresult
        stop.set()
        prober.join(H.slack(30))
        assert not prober.failed, prober.failed[:5]
        assert prober.ok >= 10

        doc = status(ctl)["process"]
        assert doc["version"] == VERSION_B and doc["pid"] == server.pid, doc
        assert doc["upgrades"] == 3 and doc["upgrade_failures"] == 0, doc
        assert doc["sessions_restored"] == 9 and doc["last_upgrade_ms"] is not None, doc
        assert server.count("upgrade: restored 3 sessions") == 3, server.tail(30)
        assert server.count("nothing took it over") == 0, server.lines("nothing took")
        assert host.tool_result(20, "whoami")["structuredContent"]["pid"] == child
        print("pauses from SIGUSR2 to every session live: %s s" % (
            ", ".join("%.3f" % p for p in pauses)))
    finally:
        stop.set()
        if host is not None:
            host.stop()
        httpd.shutdown()


# ---- a check that fails keeps the old binary serving -------------------------------------

def script(path, body):
    """An executable shell script at path: a stand-in for the new binary."""
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def upgradable_pair(procs, tmp, binary, target_port, check_timeout=None):
    """A server whose upgrade.binary is binary, and a client with one -L to target_port."""
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    write_config(cfg, binary, mcp=False, check_timeout=check_timeout)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl, *H.FAST)
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, target_port)], *H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))
    return server, client, cfg, ctl, lport


@pytest.mark.budget(90)
def test_a_binary_that_fails_its_check_is_missing_or_reads_another_version_changes_nothing(
        limpet_bin, procs, target, tmp_path):
    tmp = str(tmp_path)
    bad = script(os.path.join(tmp, "bad-limpet"),
                 "echo 'limpet: this binary refuses the configuration' >&2\nexit 1\n")
    missing = os.path.join(tmp, "no-such-limpet")
    server, client, cfg, ctl, lport = upgradable_pair(procs, tmp, bad, target.port)
    streams = [H.Stream(up=8 * H.MiB, down=8 * H.MiB, up_pace=3.0, down_pace=3.0)]
    join = H.start_streams(streams, lport, H.slack(60))
    time.sleep(0.5)

    server.send_signal(signal.SIGUSR2)
    line = server.wait_log("upgrade refused", timeout=H.slack(15))[0]
    assert "exited with status 1" in line and "refuses the configuration" in line, line
    write_config(cfg, missing, mcp=False)
    server.send_signal(signal.SIGHUP)
    server.wait_log("applied (", timeout=H.slack(10))
    server.send_signal(signal.SIGUSR2)
    line = server.wait_log("upgrade refused", count=2, timeout=H.slack(15))[1]
    assert missing in line and "No such file" in line, line

    # one that answers, but cannot read the state this server writes
    other = script(os.path.join(tmp, "other-limpet"),
                   "echo 'limpet 9.0.0'\necho 'state-versions 7 8'\n")
    write_config(cfg, other, mcp=False)
    server.send_signal(signal.SIGHUP)
    server.wait_log("applied (", count=2, timeout=H.slack(10))
    server.send_signal(signal.SIGUSR2)
    line = server.wait_log("upgrade refused", count=3, timeout=H.slack(15))[2]
    assert "reads state versions 7 8, not 1" in line, line

    # one that is executable but no program at all: the exec itself fails
    junk = os.path.join(tmp, "junk-limpet")
    with open(junk, "wb") as f:
        f.write(b"\x00\x01not a program\n" * 8)
    os.chmod(junk, 0o755)
    write_config(cfg, junk, mcp=False)
    server.send_signal(signal.SIGHUP)
    server.wait_log("applied (", count=3, timeout=H.slack(10))
    server.send_signal(signal.SIGUSR2)
    line = server.wait_log("upgrade refused", count=4, timeout=H.slack(15))[3]
    assert junk in line and "Exec format error" in line, line

    join()
    H.check_streams(streams, target)
    assert server.count("upgrade refused") == 4 and server.count("handing") == 0, \
        server.lines("upgrade")
    assert client.count("link down") == 0 and client.count("resumed") == 0, client.tail()
    doc = status(ctl)["process"]
    assert doc["version"] != VERSION_B and doc["upgrades"] == 0, doc
    assert doc["upgrade_failures"] == 4, doc


# ---- a check that never answers ----------------------------------------------------------

def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.budget(60)
def test_a_check_that_never_answers_is_killed_with_what_it_started_and_changes_nothing(
        limpet_bin, procs, echo, tmp_path):
    # A wrapper script that prints the first line of an answer, starts a child and hangs:
    # after upgrade.check_timeout (2 s here, 10 s by default) the server gives up, kills the
    # check's whole process group (the child too) and serves on. Its session never notices.
    tmp = str(tmp_path)
    pidfile = os.path.join(tmp, "sleeper.pid")
    hang = script(os.path.join(tmp, "hanging-limpet"),
                  "echo 'limpet 9.9.9'\nsleep 300 &\necho $! > %s\nwait\n" % shlex.quote(pidfile))
    server, client, cfg, ctl, lport = upgradable_pair(procs, tmp, hang, echo.port,
                                                      check_timeout="2s")
    conn = socket.create_connection(("127.0.0.1", lport), timeout=10)
    conn.settimeout(H.slack(10))
    conn.sendall(b"before")
    assert conn.recv(16) == b"before"

    signalled = time.monotonic()
    server.send_signal(signal.SIGUSR2)
    server.wait_log("checking %s" % hang, timeout=H.slack(10))
    H.wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(),
                 H.slack(10), "the check's child to write its pid")
    sleeper = int(open(pidfile).read())
    try:
        check_hang_refused(server, client, ctl, conn, hang, signalled, sleeper)
    finally:
        if pid_alive(sleeper):  # only when the test failed: leave nothing behind
            os.kill(sleeper, signal.SIGKILL)


def check_hang_refused(server, client, ctl, conn, hang, signalled, sleeper):
    assert pid_alive(sleeper)
    # while the check hangs, the server serves
    conn.sendall(b"during")
    assert conn.recv(16) == b"during"

    line = server.wait_log("upgrade refused", timeout=H.slack(15))[0]
    waited = time.monotonic() - signalled
    assert "%s --check-upgrade did not answer within 2s (upgrade.check_timeout)" % hang in line, \
        line
    assert 1.9 <= waited, "refused after %.1f s, before the 2 s the check is given" % waited
    H.wait_until(lambda: not pid_alive(sleeper), H.slack(5),
                 "the check's child to be killed with it")

    conn.sendall(b"after")
    assert conn.recv(16) == b"after"
    conn.close()
    assert server.count("handing") == 0 and client.count("link down") == 0, server.tail()
    doc = status(ctl)["process"]
    assert doc["version"] != VERSION_B and doc["upgrades"] == 0, doc
    assert doc["upgrade_failures"] == 1 and doc["pid"] == server.pid, doc


# ---- a state the new binary cannot read ----------------------------------------------------

@pytest.mark.budget(90)
def test_a_state_version_the_new_binary_does_not_read_starts_it_fresh_on_the_listeners(
        limpet_bin, binary_b, procs, echo, tmp_path):
    tmp = str(tmp_path)
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    write_config(cfg, binary_b, mcp=False)
    sport = H.free_port()
    argv = [limpet_bin, "server", "-l", "127.0.0.1:%d" % sport, "--insecure", "-c", cfg,
            "-o", "control.path=" + ctl] + H.FAST + H.VERBOSE
    server = procs.start("server", argv, env={"LIMPET_TEST_STATE_VERSION": "99"})
    server.wait_log("listening on", timeout=H.slack(10))
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, echo.port)], *H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))
    conn = socket.create_connection(("127.0.0.1", lport), timeout=10)
    conn.sendall(b"before")
    conn.settimeout(H.slack(10))
    assert conn.recv(16) == b"before"
    H.wait_until(lambda: echo.accepted == 1, H.slack(5), "the echo target's connection")
    with_stream = server.fd_count()

    server.send_signal(signal.SIGUSR2)
    line = server.wait_log("state handed over is refused", timeout=H.slack(15))[0]
    assert "version 99" in line and "starting fresh on the inherited listeners" in line, line
    assert server.count("test hook") == 1
    # The session is gone with the old binary: its client learns so and starts a new one on
    # the same port, which never closed; the old stream's connections are closed both ways.
    client.wait_log("session lost", timeout=H.slack(15))
    client.wait_log("established", count=2, timeout=H.slack(15))
    assert H.is_closed(conn, H.slack(10)), "the stream of the lost session is still open"
    H.wait_until(lambda: server.fd_count() == with_stream - 1, H.slack(10),
                 "the inherited target socket closed (fds %d, %d before with the stream)" % (
                     server.fd_count(), with_stream))
    with socket.create_connection(("127.0.0.1", lport), timeout=10) as c2:
        c2.sendall(b"after")
        c2.settimeout(H.slack(10))
        assert c2.recv(16) == b"after"
    doc = status(ctl)["process"]
    assert doc["version"] == VERSION_B and doc["pid"] == server.pid, doc
    assert doc["upgrades"] == 0 and doc["upgrade_failures"] == 1, doc
    conn.close()


@pytest.mark.budget(90)
def test_after_a_refused_state_an_mcp_server_that_ignores_eof_and_sigterm_is_killed(
        limpet_bin, binary_b, procs, tmp_path):
    """The refused state leaves the old binary's MCP server process unadopted. Its stdin
    closes; this one (a shell that ignores SIGTERM, around the legacy server) stays anyway, so
    it gets SIGTERM after mcp.stop_grace and SIGKILL after another, and is reaped."""
    need_node()
    tmp = str(tmp_path)
    pidfile = os.path.join(tmp, "mcp.pid")
    node = shutil.which("node") or shutil.which("nodejs")
    script = "trap '' TERM; echo $$ > %s; %s %s; while :; do sleep 0.2; done" % (
        shlex.quote(pidfile), shlex.quote(node), shlex.quote(LEGACY_JS))
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    with open(cfg, "w") as f:
        f.write("upgrade:\n  binary: %s\nmcp:\n  stop_grace: 300ms\n  servers:\n"
                "    legacy:\n      command: /bin/sh\n      args: [\"-c\", %s]\n"
                % (json.dumps(binary_b), json.dumps(script)))
    sport = H.free_port()
    argv = [limpet_bin, "server", "-l", "127.0.0.1:%d" % sport, "--insecure", "-c", cfg,
            "-o", "control.path=" + ctl] + H.FAST + H.VERBOSE
    server = procs.start("server", argv, env={"LIMPET_TEST_STATE_VERSION": "99"})
    server.wait_log("listening on", timeout=H.slack(10))
    host = mcp_host(tmp, sport, "stubborn")
    shell = None
    try:
        assert "result" in host.initialize()[0]
        H.wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(),
                     H.slack(10), "the MCP server's shell to write its pid")
        shell = int(open(pidfile).read())
        assert pid_alive(shell)

        server.send_signal(signal.SIGUSR2)
        server.wait_log("state handed over is refused", timeout=H.slack(15))
        line = server.wait_log("nothing took it over", timeout=H.slack(10))[0]
        assert "process %d was the old binary's" % shell in line, line
        server.wait_log("process %d, left by the old binary, ignored SIGTERM: SIGKILL" % shell,
                        timeout=H.slack(10))
        server.wait_log("process %d, left by the old binary, ended" % shell, timeout=H.slack(10))
        # reaped, not a zombie: no process of that number is left
        H.wait_until(lambda: not pid_alive(shell), H.slack(5), "the shell to be reaped")
        doc = status(ctl)["process"]
        assert doc["version"] == VERSION_B and doc["pid"] == server.pid, doc
    finally:
        host.stop()
        if shell is not None and pid_alive(shell):  # only when the test failed
            os.kill(shell, signal.SIGKILL)


# ---- descriptors --------------------------------------------------------------------------------

@pytest.mark.budget(90)
def test_the_server_holds_as_many_descriptors_after_an_upgrade_as_before(
        limpet_bin, binary_b, procs, echo, tmp_path):
    need_node()
    tmp = str(tmp_path)
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    write_config(cfg, binary_b)
    sport, mport = H.free_port(), H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl,
                             "-o", "metrics.listen=127.0.0.1:%d" % mport, *H.FAST)
    lport, rport = H.free_port(), H.free_port()
    client = H.limpet_client(procs, sport, [(lport, echo.port)],
                             "-R", "%d:127.0.0.1:%d" % (rport, echo.port), *H.FAST_CLIENT)
    client.wait_log("the server listens on", timeout=H.slack(10))
    host = mcp_host(tmp, sport, "fds")
    try:
        assert "result" in host.initialize()[0]
        pid = host.tool_result(2, "count")["structuredContent"]["pid"]
        conns = [socket.create_connection(("127.0.0.1", p), timeout=10)
                 for p in (lport, lport, rport)]
        for i, c in enumerate(conns):
            c.sendall(b"x%d" % i)
            c.settimeout(H.slack(10))
            assert c.recv(8) == b"x%d" % i
        H.wait_until(lambda: all_live(ctl, 2), H.slack(10), "two sessions live")
        before, targets = server.fd_count(), server.fd_targets()

        Upgrader(server, cfg, ctl, 2).to(binary_b)
        for i, c in enumerate(conns):
            c.sendall(b"y%d" % i)
            assert c.recv(8) == b"y%d" % i
        assert host.tool_result(3, "count")["structuredContent"] == {"count": 2, "pid": pid}
        after = server.fd_count()
        assert after == before, "fds before %d, after %d:\n%s\n%s" % (
            before, after, targets, server.fd_targets())
        # ... and none of them leaks into the processes it starts: every one is close-on-exec
        # again (the old binary cleared the flag for its exec), stdio aside.
        leaky = []
        for fd in os.listdir("/proc/%d/fdinfo" % server.pid):
            with open("/proc/%d/fdinfo/%s" % (server.pid, fd)) as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
            if int(fd) > 2 and not flags & 0o2000000:
                leaky.append((fd, os.readlink("/proc/%d/fd/%s" % (server.pid, fd))))
        assert not leaky, "descriptors without close-on-exec: %s" % leaky
        assert H.port_accepts(mport), "the metrics port closed"
        for c in conns:
            c.close()
    finally:
        host.stop()


# ---- with TLS ----------------------------------------------------------------------------------

@pytest.mark.budget(90)
def test_a_tls_session_resumes_on_the_new_binary_with_its_identity(
        limpet_bin, binary_b, procs, target, tmp_path):
    """TLS state is never carried: the client makes a new TLS handshake (the new binary loads
    the keys itself) and resumes as the identity that made the session; streams go on."""
    from test_tls import keygen, psk_client_opts, server_yaml
    tmp = str(tmp_path)
    keygen(tmp, "psk", "laptop")
    sport = H.free_port()
    cfg = server_yaml(tmp, sport, [("laptop", ("psk_file", os.path.join(tmp, "laptop.psk")),
                                    ["127.0.0.1:%d" % target.port])])
    with open(cfg, "a") as f:
        f.write("upgrade:\n  binary: %s\n" % json.dumps(binary_b))
    ctl = os.path.join(tmp, "ctl.sock")
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl, *H.FAST,
                             insecure=False)
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, target.port)], *H.FAST_CLIENT,
                             *psk_client_opts(tmp), insecure=False)
    client.wait_log("established", timeout=H.slack(10))
    streams = [H.Stream(up=8 * H.MiB, down=8 * H.MiB, up_pace=3.0, down_pace=3.0)
               for _ in range(2)]
    join = H.start_streams(streams, lport, H.slack(60))
    time.sleep(0.5)
    server.send_signal(signal.SIGUSR2)
    server.wait_log("upgrade: restored 1 sessions", timeout=H.slack(15))
    client.wait_log("resumed", timeout=H.slack(15))
    join()
    H.check_streams(streams, target)
    doc = status(ctl)
    assert doc["process"]["version"] == VERSION_B, doc["process"]
    assert [s["identity"] for s in doc["sessions"]] == ["laptop"], doc["sessions"]
    assert server.count("resumed from") == 1 and client.count("established") == 1


# ---- a detached session keeps the ttl it had left -------------------------------------------

@pytest.mark.budget(60)
def test_a_detached_session_keeps_the_ttl_it_had_left_across_an_upgrade(
        limpet_bin, binary_b, procs, echo, tmp_path):
    """A session whose client is away when the server upgrades comes back detached for as long
    as it already was, and ends when its ttl runs out, not a whole ttl after the upgrade."""
    tmp = str(tmp_path)
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    write_config(cfg, binary_b, mcp=False)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl,
                             "-o", "session.ttl=6s", *H.FAST)
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, echo.port)], *H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))
    client.send_signal(signal.SIGSTOP)   # away: its link goes silent, nothing reconnects
    try:
        detached = server.wait_log(" detached: ", timeout=H.slack(10))[0]
        time.sleep(2.5)
        server.send_signal(signal.SIGUSR2)
        server.wait_log("upgrade: restored 1 sessions", timeout=H.slack(15))
        (s,) = status(ctl)["sessions"]
        assert s["state"] == "detached" and s["detached_ms"] >= 2000, s
        expired = server.wait_log(" expired: ", timeout=H.slack(15))[0]
        took = H.log_time(expired) - H.log_time(detached)
        assert 5.0 <= took <= 7.5, "expired %.1fs after it was detached (ttl 6s)" % took
    finally:
        client.send_signal(signal.SIGCONT)


# ---- an MCP request in flight --------------------------------------------------------------

@pytest.mark.budget(60)
def test_an_mcp_request_in_flight_is_answered_by_the_same_process_after_the_upgrade(
        limpet_bin, binary_b, procs, tmp_path):
    """The request goes to the MCP server before the upgrade and its answer comes out after
    it: the router's flights, the child's pipes and the attachment's queue were handed over."""
    need_node()
    tmp = str(tmp_path)
    cfg, ctl = os.path.join(tmp, "server.yaml"), os.path.join(tmp, "ctl.sock")
    write_config(cfg, binary_b)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + ctl, *H.FAST)
    host = mcp_host(tmp, sport, "inflight")
    try:
        assert "result" in host.initialize()[0]
        pid = host.tool_result(2, "count")["structuredContent"]["pid"]
        host.request(3, "tools/call", {"name": "slow", "arguments": {"ms": 1500}})
        server.wait_log("sess=", timeout=H.slack(5))
        time.sleep(0.3)  # the request is with the child now
        Upgrader(server, cfg, ctl, 1).to(binary_b)
        answer, _ = host.response(3, H.slack(15))
        assert answer["result"]["structuredContent"] == {"slept": 1500, "pid": pid}, answer
        assert host.tool_result(4, "count")["structuredContent"] == {"count": 2, "pid": pid}
    finally:
        host.stop()
