"""-D: a SOCKS proxy whose connections ride the tunnel and are dialled by the server.

curl --socks5-hostname fetches through it byte-exact, also while the tunnel is cut every
300 ms; a hand-written client checks every address type (IPv4, IPv6, name; SOCKS4 and
SOCKS4a) and every reply code limpet gives (refused, unreachable, not allowed by the
server's policy, command and address type not supported, no acceptable method).
"""

import hashlib
import http.server
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, server_yaml


def socks_client(procs, sport, *opts, insecure=True):
    port = H.free_port()
    client = H.limpet_client(procs, sport, [], "-D", "127.0.0.1:%d" % port, *H.FAST_CLIENT,
                             *opts, wait=False, insecure=insecure)
    client.wait_log("socks proxy listening on 127.0.0.1:%d" % port, timeout=H.slack(10))
    return client, port


def v5(port, atyp, addr, dport, cmd=1, methods=b"\x00"):
    """One SOCKS5 exchange; returns (method reply, request reply, the socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=H.slack(10))
    s.sendall(b"\x05" + bytes([len(methods)]) + methods)
    method = recv_exact(s, 2)
    if method != b"\x05\x00":
        return method, b"", s
    s.sendall(b"\x05" + bytes([cmd, 0, atyp]) + addr + struct.pack(">H", dport))
    reply = recv_exact(s, 10)
    return method, reply, s


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            break
        out += b
    return out


def echo_through(s, payload=b"hello through socks"):
    s.sendall(payload)
    assert recv_exact(s, len(payload)) == payload


class Echo6(H.EchoServer):
    def __init__(self):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::1", 0))
        super().__init__(sock=sock)


@pytest.mark.budget(40)
def test_socks5_every_address_type_and_socks4a_reach_the_target(limpet_bin, procs, echo):
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    _, port = socks_client(procs, sport)
    # IPv4
    m, r, s = v5(port, 1, socket.inet_aton("127.0.0.1"), echo.port)
    assert (m, r[:2]) == (b"\x05\x00", b"\x05\x00"), r
    echo_through(s)
    s.close()
    # a name
    m, r, s = v5(port, 3, bytes([9]) + b"localhost", echo.port)
    assert r[:2] == b"\x05\x00", r
    echo_through(s)
    s.close()
    # IPv6
    try:
        e6 = Echo6()
    except OSError as e:
        pytest.skip("no IPv6 loopback here: %s" % e)
    try:
        m, r, s = v5(port, 4, socket.inet_pton(socket.AF_INET6, "::1"), e6.port)
        assert r[:2] == b"\x05\x00", r
        echo_through(s)
        s.close()
    finally:
        e6.close()
    # SOCKS4 (IPv4) and SOCKS4a (a name)
    for req in (b"\x04\x01" + struct.pack(">H", echo.port) + socket.inet_aton("127.0.0.1") +
                b"user\x00",
                b"\x04\x01" + struct.pack(">H", echo.port) + b"\x00\x00\x00\x01" + b"user\x00" +
                b"localhost\x00"):
        s = socket.create_connection(("127.0.0.1", port), timeout=H.slack(10))
        s.sendall(req)
        r = recv_exact(s, 8)
        assert r[:2] == b"\x00\x5a", r
        echo_through(s)
        s.close()


@pytest.mark.budget(40)
def test_socks_errors_map_to_their_reply_codes(limpet_bin, procs, tmp_path):
    tmp = str(tmp_path)
    keygen(tmp, "psk", "laptop")
    sport = H.free_port()
    open_port = H.EchoServer()
    dead = H.free_port()
    try:
        cfg = server_yaml(tmp, sport, [("laptop", ("psk_file", os.path.join(tmp, "laptop.psk")),
                                        ["127.0.0.1:%d" % open_port.port,
                                         "127.0.0.1:%d" % dead, "*.invalid:80"])])
        H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
        client, port = socks_client(procs, sport, *psk_client_opts(tmp), insecure=False)
        cases = [
            ("refused", 1, socket.inet_aton("127.0.0.1"), dead, 1, 0x05),
            ("unreachable name", 3, bytes([20]) + b"no-such.host.invalid", 80, 1, 0x04),
            ("not allowed", 1, socket.inet_aton("127.0.0.1"), open_port.port + 1, 1, 0x02),
            ("BIND", 1, socket.inet_aton("127.0.0.1"), open_port.port, 2, 0x07),
            ("address type 9", 9, b"\x00\x00\x00\x00", open_port.port, 1, 0x08),
        ]
        for what, atyp, addr, dport, cmd, rep in cases:
            m, r, s = v5(port, atyp, addr, dport, cmd=cmd)
            assert m == b"\x05\x00", what
            assert len(r) >= 2 and r[1] == rep, "%s: reply %r, want REP %#x" % (what, r, rep)
            assert H.is_closed(s, H.slack(5)), what
            s.close()
        m, _, s = v5(port, 1, b"", 0, methods=b"\x02")  # only username/password offered
        assert m == b"\x05\xff"
        s.close()
        # the allowed target still works on the same session
        m, r, s = v5(port, 1, socket.inet_aton("127.0.0.1"), open_port.port)
        assert r[1] == 0, r
        echo_through(s)
        s.close()
        assert client.count("resumed") == 0
    finally:
        open_port.close()


class Files(http.server.SimpleHTTPRequestHandler):
    """Serves the test's directory; /slow/NAME paces NAME at about 2 MiB/s (64 KiB per PACE
    seconds) so that the tunnel's cuts fall inside the download."""

    PACE = 0.03

    def log_message(self, *a):
        pass

    def do_GET(self):
        if not self.path.startswith("/slow/"):
            return super().do_GET()
        with open(os.path.join(self.directory, self.path[len("/slow/"):]), "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for off in range(0, len(data), 64 * 1024):
            self.wfile.write(data[off:off + 64 * 1024])
            time.sleep(self.PACE)


@pytest.mark.budget(90)
def test_curl_socks5_hostname_downloads_byte_exact_through_cuts(limpet_bin, procs, tmp_path):
    tmp = str(tmp_path)
    data = os.urandom(4 * H.MiB)
    with open(os.path.join(tmp, "blob"), "wb") as f:
        f.write(data)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **kw: Files(*a, directory=tmp, **kw))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        sport = H.free_port()
        server = H.limpet_server(procs, sport, *H.FAST)
        relay = H.RelayProc(procs, sport)
        client, port = socks_client(procs, relay.port)
        client.wait_log("established", timeout=H.slack(10))
        relay.mode("rst")
        relay.every(300)
        url = "http://localhost:%d/%%sblob" % httpd.server_address[1]
        out = os.path.join(tmp, "got")
        for i in range(3):
            # the first download is paced so the cuts fall inside it; then two quick ones
            r = subprocess.run(["curl", "-sS", "--fail", "--max-time", str(int(H.slack(40))),
                                "--socks5-hostname", "127.0.0.1:%d" % port, "-o", out,
                                url % ("slow/" if i == 0 else "")],
                               capture_output=True, text=True, timeout=H.slack(60))
            assert r.returncode == 0, r.stderr
            with open(out, "rb") as f:
                assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
            if i == 0:
                relay.every(0)   # then small requests: a fresh stream each time
        assert relay.stats()["cuts"] >= 3
        assert server.count("resumed from") >= 3
    finally:
        httpd.shutdown()


@pytest.mark.budget(30)
def test_forwards_listed_in_the_client_config_file_open_with_the_command_lines(
        limpet_bin, procs, echo, tmp_path):
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    lport, dport, cport = H.free_port(), H.free_port(), H.free_port()
    cfg = os.path.join(str(tmp_path), "client.yaml")
    with open(cfg, "w") as f:
        f.write("forward:\n  local: [\"%d:127.0.0.1:%d\"]\n  dynamic: [\"127.0.0.1:%d\"]\n"
                % (lport, echo.port, dport))
    client = H.limpet_client(procs, sport, [(cport, echo.port)], "-c", cfg, *H.FAST_CLIENT,
                             wait=False)
    client.wait_log("forward listening on", count=2, timeout=H.slack(10))
    client.wait_log("socks proxy listening on 127.0.0.1:%d" % dport, timeout=H.slack(10))
    for port in (lport, cport):
        s = socket.create_connection(("127.0.0.1", port), timeout=H.slack(10))
        echo_through(s)
        s.close()
    m, r, s = v5(dport, 1, socket.inet_aton("127.0.0.1"), echo.port)
    assert r[:2] == b"\x05\x00", r
    echo_through(s)
    s.close()
