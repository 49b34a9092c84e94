"""`limpet status`: a running server or client answers on its control socket.

Promises checked: `status --json` on both ends shows the live session (identity, peer, a
stream whose byte counts grow during a transfer); after the relay cuts the link the session is
live again with reconnects == 1 on both ends; the socket is mode 0600 and removed at a clean
exit; a second process on the same path warns once and still runs; a stale socket file is
taken over; the per-user default paths work; with nothing listening `status` exits 1 with
one line naming the paths it tried.
"""

import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

import helpers as H


def status(path=None, json_out=True, env=None, args=()):
    argv = [H.BIN, "status"] + (["--control", path] if path else []) + list(args)
    if json_out:
        argv.append("--json")
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=H.slack(15), env=e)


def status_doc(path):
    r = status(path)
    assert r.returncode == 0, "status exit %d: %s" % (r.returncode, r.stderr)
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    procs = json.loads(lines[0])["processes"]
    assert len(procs) == 1, procs
    return procs[0]


def only_session(doc):
    assert len(doc["sessions"]) == 1, doc["sessions"]
    return doc["sessions"][0]


def stream_to(sess, port):
    want = "127.0.0.1:%d" % port
    found = [s for s in sess["streams"] if s["target"] == want]
    return found[0] if found else None


@pytest.mark.budget(90)
def test_status_json_follows_a_transfer_and_a_resume_on_both_ends(tunnel, tmp_path):
    spath, cpath = str(tmp_path / "server.sock"), str(tmp_path / "client.sock")
    t = tunnel(server_opts=("-o", "control.path=" + spath),
               client_opts=("-o", "control.path=" + cpath))
    for p in (spath, cpath):
        st = os.stat(p)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)

    doc = status_doc(spath)
    assert doc["process"]["role"] == "server" and doc["process"]["pid"] == t.server.pid
    s = only_session(doc)
    assert s["state"] == "live" and s["identity"] == "" and s["reconnects"] == 0
    assert s["peer"].startswith("127.0.0.1:") and s["replay_cap"] == 8 << 20
    c = only_session(status_doc(cpath))
    assert c["state"] == "live" and c["peer"] == "127.0.0.1:%d" % t.relay.port
    assert c["id"] == s["id"], "both ends name the same session"

    # a transfer paced over a few seconds, so status sees it running
    streams = [H.Stream(up=3 * H.MiB, down=3 * H.MiB, up_pace=4.0, down_pace=4.0)]
    join = H.start_streams(streams, t.lport, H.slack(60))
    H.wait_until(lambda: (lambda x: x and x["bytes_up"] > 0 and x["bytes_down"] > 0)(
        stream_to(only_session(status_doc(cpath)), t.target.port)), H.slack(10),
        "the client's status to show the stream moving")
    first = stream_to(only_session(status_doc(cpath)), t.target.port)
    assert first["kind"] == "tcp"
    sst = stream_to(only_session(status_doc(spath)), t.target.port)
    assert sst is not None and sst["kind"] == "tcp", status_doc(spath)
    time.sleep(0.8)
    c = only_session(status_doc(cpath))
    later = stream_to(c, t.target.port)
    assert later["bytes_up"] > first["bytes_up"] and later["bytes_down"] > first["bytes_down"]
    assert c["streams_open"] >= 1 and c["bytes_out"] > 0 and c["bytes_in"] > 0

    t.relay.cut("rst")
    for path in (cpath, spath):
        H.wait_until(lambda: (lambda x: x["state"] == "live" and x["reconnects"] == 1)(
            only_session(status_doc(path))), H.slack(15), "live again with one reconnect")
    pdoc = status_doc(cpath)["process"]
    assert pdoc["resumes"] == 1 and pdoc["resume_ms"]["count"] == 1
    join()
    H.check_streams(streams, t.target)

    human = status(cpath, json_out=False)
    assert human.returncode == 0, human.stderr
    assert "session %s" % c["id"] in human.stdout and "state live" in human.stdout
    assert "reconnects 1" in human.stdout and "replay buffer" in human.stdout

    # removed at a clean exit
    t.client.send_signal(signal.SIGTERM)
    assert t.client.wait(H.slack(10)) == 0
    assert not os.path.exists(cpath)


def test_a_second_process_on_the_same_path_warns_and_still_runs(limpet_bin, procs, tmp_path):
    path = str(tmp_path / "ctl.sock")
    first = H.limpet_server(procs, H.free_port(), "-o", "control.path=" + path)
    second = H.limpet_server(procs, H.free_port(), "-o", "control.path=" + path, name="second")
    warns = second.lines("control socket")
    assert len(warns) == 1 and "WARN" in warns[0] and "in use" in warns[0], second.tail()
    assert second.alive()
    assert status_doc(path)["process"]["pid"] == first.pid

    # the second one's exit leaves the first one's socket alone
    second.send_signal(signal.SIGTERM)
    assert second.wait(H.slack(10)) == 0
    assert status_doc(path)["process"]["pid"] == first.pid
    first.send_signal(signal.SIGTERM)
    assert first.wait(H.slack(10)) == 0
    assert not os.path.exists(path)


def test_a_stale_socket_file_is_taken_over(limpet_bin, procs, tmp_path):
    path = str(tmp_path / "ctl.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays; nobody listens: what a killed process leaves behind
    server = H.limpet_server(procs, H.free_port(), "-o", "control.path=" + path)
    assert server.count("in use") == 0
    assert status_doc(path)["process"]["pid"] == server.pid


def test_default_paths_are_per_user_and_status_asks_both(limpet_bin, procs, tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    sport = H.free_port()
    server = procs.start("server", [H.BIN, "server", "--insecure", "-l",
                                    "127.0.0.1:%d" % sport] + H.FAST, env=env)
    server.wait_log("listening on", timeout=H.slack(10))
    client = procs.start("client", [H.BIN, "client", "--insecure", "-s",
                                    "127.0.0.1:%d" % sport] + H.FAST_CLIENT, env=env)
    client.wait_log("established", timeout=H.slack(10))
    d = tmp_path / "limpet"
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / ("server-%d.sock" % server.pid)).st_mode) == 0o600
    # a second client of the same user gets its own socket, not a warning
    client2 = procs.start("client2", [H.BIN, "client", "--insecure", "-s",
                                      "127.0.0.1:%d" % sport] + H.FAST_CLIENT, env=env)
    client2.wait_log("established", timeout=H.slack(10))
    assert client2.count("WARN") == 1, client2.stderr()  # only the --insecure one
    # a socket left by a killed process is skipped and cleaned up
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(d / "client-999999.sock"))
    stale.close()
    r = status(env=env)
    assert r.returncode == 0, r.stderr
    # One JSON document for the whole run, whatever the number of processes: json.load and
    # jq read it (it used to be one document per process, one after the other).
    docs = json.loads(r.stdout)["processes"]
    assert [x["process"]["role"] for x in docs] == ["server", "client", "client"]
    assert docs[0]["process"]["pid"] == server.pid
    assert sorted(x["process"]["pid"] for x in docs[1:]) == sorted([client.pid, client2.pid])
    assert not (d / "client-999999.sock").exists()
    client2.stop()
    assert not (d / ("client-%d.sock" % client2.pid)).exists()


def test_status_with_nothing_listening_exits_1_with_one_line(limpet_bin, tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    r = status(env=env, json_out=False)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "no sockets in " + str(tmp_path / "limpet") in lines[0]

    missing = str(tmp_path / "nobody.sock")
    r = status(missing)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and missing in r.stderr


@pytest.mark.budget(60)
def test_status_names_the_identity_on_both_ends(limpet_bin, procs, echo, tmp_path):
    """A PSK client's status names the identity it authenticates as (the server's names the
    same one); a certificate client names the fingerprint the server knows it by. It used to
    show "-" on the client."""
    from test_tls import cert_fingerprint, keygen, psk_client_opts, server_yaml
    tmp = str(tmp_path)
    keygen(tmp, "psk", "laptop")
    edge_fp = cert_fingerprint(keygen(tmp, "cert", "edge"))
    gw_fp = cert_fingerprint(keygen(tmp, "cert", "gw"))
    sport = H.free_port()
    allow = ["127.0.0.1:%d" % echo.port]
    cfg = server_yaml(tmp, sport, [("laptop", ("psk_file", os.path.join(tmp, "laptop.psk")), allow),
                                   ("edge", ("cert_fingerprint", edge_fp), allow)],
                      tls=(os.path.join(tmp, "gw.crt"), os.path.join(tmp, "gw.key")))
    spath = str(tmp_path / "server.sock")
    H.limpet_server(procs, sport, "-c", cfg, "-o", "control.path=" + spath, *H.FAST,
                    insecure=False)
    edge_opts = ["-o", "tls.cert=" + os.path.join(tmp, "edge.crt"),
                 "-o", "tls.key=" + os.path.join(tmp, "edge.key"),
                 "-o", "server_fingerprint=" + gw_fp]
    paths = {}
    for name, opts in (("laptop", psk_client_opts(tmp)), ("edge", edge_opts)):
        paths[name] = str(tmp_path / ("%s.sock" % name))
        c = H.limpet_client(procs, sport, [], *H.FAST_CLIENT, *opts,
                            "-o", "control.path=" + paths[name], insecure=False, name=name)
        c.wait_log("established", timeout=H.slack(10))
    assert only_session(status_doc(paths["laptop"]))["identity"] == "laptop"
    assert only_session(status_doc(paths["edge"]))["identity"].lower() == edge_fp.lower()
    names = sorted(s["identity"] for s in status_doc(spath)["sessions"])
    assert names == ["edge", "laptop"], names


class fake_control:
    """A control socket that answers every question with `answer` (bytes), once per
    connection, in a thread. close() wakes the thread (shutdown) before the fd is closed: a
    thread still blocked in accept() on a closed fd would serve the next socket that reuses
    its number."""

    def __init__(self, path, answer):
        import threading
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.answer = answer
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                try:
                    c.recv(256)
                    c.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(5)
        self.srv.close()


def test_status_prints_no_terminal_control_from_a_socket(limpet_bin, tmp_path):
    """Whatever answers on a control socket could be another user's process, or echo a stream
    target a peer chose: status never lets it write a terminal control sequence (a title
    change, a cursor move, a C1 CSI) to the user's terminal."""
    path = str(tmp_path / "evil.sock")
    srv = fake_control(path, b"limpet server 0.1.0\x1b]0;pwned\x07\n  stream 5 tcp \xc2\x9b2J"
                             b"\xff:80\x1b[2J\n")
    try:
        r = subprocess.run([H.BIN, "status", "--control", path], capture_output=True,
                           timeout=H.slack(15))
    finally:
        srv.close()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert b"\x1b" not in out and b"\x07" not in out and b"\xc2\x9b" not in out, out
    assert b"\\x1b]0;pwned\\x07" in out and b"\\xff:80" in out, out
    assert out.count(b"\n") == 2, out


def test_status_does_not_trust_a_directory_someone_else_made(limpet_bin, tmp_path):
    """With no XDG_RUNTIME_DIR the default directory is /tmp/limpet-UID, which another user
    can create first and fill with sockets that answer anything. status asks nothing there and
    says why, as the server already refuses to put its socket there."""
    d = tmp_path / "limpet"
    d.mkdir(mode=0o755)
    srv = fake_control(str(d / "server-4242.sock"), b"limpet server 0.1.0, pid 4242\n")
    try:
        os.chown(str(d), 65534, 65534)  # nobody: as if another user made it first
        r = subprocess.run([H.BIN, "status"], capture_output=True, text=True,
                           timeout=H.slack(15), env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)))
        assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and str(d) in lines[0] and "not a directory owned by this user" \
            in lines[0], lines
        os.chown(str(d), os.getuid(), os.getgid())
        os.chmod(str(d), 0o777)  # ours, but others may swap the socket: refused as well
        r = subprocess.run([H.BIN, "status"], capture_output=True, text=True,
                           timeout=H.slack(15), env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)))
        assert r.returncode == 1 and "closed to others" in r.stderr, r.stderr
        os.chmod(str(d), 0o700)
        r = subprocess.run([H.BIN, "status"], capture_output=True, text=True,
                           timeout=H.slack(15), env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)))
        assert r.returncode == 0 and "pid 4242" in r.stdout, (r.stdout, r.stderr)
    finally:
        srv.close()
