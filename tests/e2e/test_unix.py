"""Unix domain sockets at either end of a forward, as OpenSSH allows.

    -L /dir/app.sock:127.0.0.1:PORT     a socket file here, a TCP target on the server
    -L PORT:unix:/dir/target.sock       a TCP port here, a socket on the server
    -L PORT:/dir/target.sock            the same, written as OpenSSH writes it
    -L /dir/a.sock:unix:/dir/b.sock     sockets at both ends
    -D /dir/socks.sock                  a SOCKS proxy on a socket file

Every transfer is byte-exact both ways (SHA-256) while the relay resets the tunnel. The socket
file is created 0600 and removed at exit; a stale one is replaced, anything else at the path
stops the client. A unix target the server's policy does not name is refused.
"""

import os
import shutil
import signal
import socket
import stat
import struct
import tempfile

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, server_yaml


@pytest.fixture
def sockdir():
    """A short directory for socket files: sun_path holds 107 bytes, pytest's tmp_path is long."""
    d = tempfile.mkdtemp(prefix="lpu", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def unix_target(path):
    """The sink/source test target, listening on a unix socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    return H.SinkSource(sock=s)


def unix_connector(path):
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        return s
    return connect


def tunnel_with(procs, specs, *opts):
    """Server ← relay ← client with the given -L specs; returns (server, relay, client)."""
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    relay = H.RelayProc(procs, sport)
    client = H.limpet_client(procs, relay.port, specs, *H.FAST_CLIENT, *opts)
    client.wait_log("established", timeout=H.slack(10))
    return server, relay, client


def cut_transfer(relay, client, target, **kw):
    """Four streams of 4 MiB each way while the relay resets the tunnel every 300 ms."""
    relay.mode("rst")
    relay.every(300)
    streams = [H.Stream(up=4 * H.MiB, down=4 * H.MiB, up_pace=2.0, down_pace=2.0)
               for _ in range(4)]
    try:
        H.run_streams(streams, 0, timeout=H.slack(60), **kw)
    finally:
        relay.every(0)
        relay.mode("none")
    H.check_streams(streams, target)
    assert relay.stats()["cuts"] >= 3, relay.stats()
    assert client.count("resumed") >= 3, client.tail(20)


@pytest.mark.budget(90)
def test_unix_listener_to_tcp_target_is_byte_exact_across_cuts(limpet_bin, procs, target,
                                                               sockdir):
    path = os.path.join(sockdir, "app.sock")
    server, relay, client = tunnel_with(procs, ["%s:127.0.0.1:%d" % (path, target.port)])
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert client.count("forward listening on unix:%s -> 127.0.0.1:%d" % (path, target.port))
    cut_transfer(relay, client, target, sock_factory=unix_connector(path))
    client.send_signal(signal.SIGTERM)
    assert client.wait(H.slack(10)) == 0
    assert not os.path.exists(path), "the socket file outlived the client"


@pytest.mark.parametrize("form", ["unix:", ""])
@pytest.mark.budget(90)
def test_tcp_listener_to_unix_target_on_the_server_is_byte_exact_across_cuts(
        limpet_bin, procs, sockdir, form):
    tpath = os.path.join(sockdir, "target.sock")
    target = unix_target(tpath)
    try:
        lport = H.free_port()
        server, relay, client = tunnel_with(procs, ["%d:%s%s" % (lport, form, tpath)])
        assert client.count("forward listening on 127.0.0.1:%d -> unix:%s" % (lport, tpath))
        cut_transfer(relay, client, target, host="127.0.0.1",
                     sock_factory=lambda: socket.create_connection(("127.0.0.1", lport), 10))
    finally:
        target.close()


@pytest.mark.budget(90)
def test_unix_to_unix_is_byte_exact_across_cuts(limpet_bin, procs, sockdir):
    tpath, lpath = os.path.join(sockdir, "b.sock"), os.path.join(sockdir, "a.sock")
    target = unix_target(tpath)
    try:
        server, relay, client = tunnel_with(procs, ["%s:unix:%s" % (lpath, tpath)])
        cut_transfer(relay, client, target, sock_factory=unix_connector(lpath))
    finally:
        target.close()


def good_and_refused(procs, tmp, allow, good, refused):
    """A TLS server allowing `allow` for laptop, and a client forwarding one port to the unix
    socket `good` and one to `refused`; a connection to the second is closed at once. Returns
    the server, the client and the port to `good`."""
    sport = H.free_port()
    cfg = server_yaml(tmp, sport, [("laptop", ("psk_file", os.path.join(tmp, "laptop.psk")),
                                    allow)])
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
    gport, rport = H.free_port(), H.free_port()
    client = H.limpet_client(procs, sport, ["%d:unix:%s" % (gport, good),
                                            "%d:unix:%s" % (rport, refused)],
                             *H.FAST_CLIENT, *psk_client_opts(tmp), insecure=False)
    client.wait_log("established", timeout=H.slack(10))
    s = socket.create_connection(("127.0.0.1", rport), timeout=5)
    assert H.is_closed(s, H.slack(5))
    s.close()
    return server, client, gport


@pytest.mark.budget(60)
def test_unix_targets_follow_the_servers_policy(limpet_bin, procs, sockdir, tmp_path):
    """Refused: a socket no rule names, even under `*:*`. Allowed: one a directory rule names."""
    tmp = str(tmp_path)
    keygen(tmp, "psk", "laptop")
    allowed_dir = os.path.join(sockdir, "ok")
    os.mkdir(allowed_dir)
    good, bad = os.path.join(allowed_dir, "t.sock"), os.path.join(sockdir, "secret.sock")
    targets = [unix_target(good), unix_target(bad)]
    try:
        server, client, gport = good_and_refused(procs, tmp, ["*:*", "unix:%s/*" % allowed_dir],
                                                 good, bad)
        client.wait_log("NOT_ALLOWED: not allowed by the server's policy", timeout=H.slack(5))
        server.wait_log("may not reach unix:%s" % bad, timeout=H.slack(5))
        assert targets[1].accepted == 0

        streams = [H.Stream(up=H.MiB, down=H.MiB)]
        H.run_streams(streams, gport, timeout=H.slack(30))
        H.check_streams(streams, targets[0])
    finally:
        for t in targets:
            t.close()


@pytest.mark.budget(60)
def test_a_symlink_in_an_allowed_directory_reaches_nothing(limpet_bin, procs, sockdir, tmp_path):
    """`unix:/DIR/*` allows the sockets in DIR, not what a symbolic link placed there points
    to: someone who can write into DIR could otherwise link a container engine's socket. The
    stream is refused with the reason; the socket itself, in the same directory, still works."""
    tmp = str(tmp_path)
    keygen(tmp, "psk", "laptop")
    allowed_dir = os.path.join(sockdir, "ok")
    os.mkdir(allowed_dir)
    good = os.path.join(allowed_dir, "t.sock")
    secret = os.path.join(sockdir, "engine.sock")  # outside the allowed directory
    link = os.path.join(allowed_dir, "link.sock")
    targets = [unix_target(good), unix_target(secret)]
    os.symlink(secret, link)
    try:
        server, client, gport = good_and_refused(procs, tmp, ["unix:%s/*" % allowed_dir],
                                                 good, link)
        client.wait_log("NOT_ALLOWED", timeout=H.slack(5))
        assert "symbolic link" in client.lines("NOT_ALLOWED")[0], client.tail()
        server.wait_log("unix:%s is a symbolic link" % link, timeout=H.slack(5))
        assert targets[1].accepted == 0

        streams = [H.Stream(up=H.MiB, down=H.MiB)]
        H.run_streams(streams, gport, timeout=H.slack(30))
        H.check_streams(streams, targets[0])
    finally:
        for t in targets:
            t.close()


def start_client(procs, spec, name):
    return procs.start(name, [H.BIN, "client", "--insecure", "-s", "127.0.0.1:%d" % H.free_port(),
                              "-L", spec] + H.FAST_CLIENT)


@pytest.mark.budget(60)
def test_socket_path_stale_is_replaced_and_anything_else_stops_the_client(limpet_bin, procs,
                                                                         sockdir):
    path = os.path.join(sockdir, "app.sock")
    # a stale socket: bound, then its owner went away without removing it
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    client = start_client(procs, "%s:127.0.0.1:9" % path, "stale")
    client.wait_log("forward listening on unix:%s" % path, timeout=H.slack(10))
    # a live one: the second client must not steal it
    second = start_client(procs, "%s:127.0.0.1:9" % path, "live")
    assert second.wait(H.slack(10)) == 1
    assert "another process is listening there" in second.stderr(), second.tail()
    assert client.alive()
    client.stop()
    assert not os.path.exists(path)
    # not a socket: refused, and left alone
    with open(path, "w") as f:
        f.write("precious\n")
    third = start_client(procs, "%s:127.0.0.1:9" % path, "file")
    assert third.wait(H.slack(10)) == 1
    assert "exists and is not a socket" in third.stderr(), third.tail()
    with open(path) as f:
        assert f.read() == "precious\n"


def socks5_connect(sock, port):
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
    reply = b""
    while len(reply) < 10:
        chunk = sock.recv(10 - len(reply))
        assert chunk, "proxy closed during the SOCKS reply"
        reply += chunk
    assert reply[1] == 0, "SOCKS reply code %d" % reply[1]


@pytest.mark.budget(60)
def test_socks_proxy_on_a_unix_socket_carries_a_stream(limpet_bin, procs, target, sockdir):
    path = os.path.join(sockdir, "socks.sock")
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    client = procs.start("client", [H.BIN, "client", "--insecure", "-s", "127.0.0.1:%d" % sport,
                                    "-D", path] + H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600

    def via_socks():
        s = unix_connector(path)()
        socks5_connect(s, target.port)
        return s

    streams = [H.Stream(up=2 * H.MiB, down=2 * H.MiB)]
    H.run_streams(streams, 0, timeout=H.slack(30), sock_factory=via_socks)
    H.check_streams(streams, target)
