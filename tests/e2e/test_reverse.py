"""-R: the server listens, and each connection to it is carried back to HOST:HOSTPORT as the
client sees it.

Byte-exact transfers through the server's port while the tunnel is cut every 300 ms; a
connection made while the client is away waits for it (forward.reverse_wait) or, with
reverse_wait 0, is refused at once; the listener lives as long as the session (it closes when
the client says GOODBYE, and a client whose session was lost asks again on the new one); a
port already taken and a bind outside allow.reverse are clear errors at client start (exit 1
and 2), while an allowed bind works under TLS.
"""

import os
import signal
import socket
import time

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, write


def reverse_client(procs, server, spec, *opts, insecure=True, wait=True, name="client"):
    client = H.limpet_client(procs, server, [], "-R", spec, *H.FAST_CLIENT, *opts, wait=False,
                             insecure=insecure, name=name)
    if wait:
        client.wait_log("remote forward: the server listens on", timeout=H.slack(10))
    return client


def refused_or_closed(port, payload=b"x"):
    """True when a connection to port is refused, or accepted and then closed unanswered."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=H.slack(5))
    except OSError:
        return True
    try:
        s.sendall(payload)
        return s.recv(1) == b""
    except OSError:
        return True
    finally:
        s.close()


@pytest.mark.budget(90)
def test_reverse_streams_are_byte_exact_across_cuts(limpet_bin, procs, target):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    relay = H.RelayProc(procs, sport)
    rport = H.free_port()
    client = reverse_client(procs, relay.port, "%d:127.0.0.1:%d" % (rport, target.port))
    server.wait_log("reverse forward listening on 127.0.0.1:%d" % rport, timeout=H.slack(5))
    relay.mode("rst")
    relay.every(300)
    streams = [H.Stream(up=4 * H.MiB, down=4 * H.MiB, up_pace=3.0, down_pace=3.0)
               for _ in range(4)]
    H.run_streams(streams, rport, timeout=H.slack(60))
    relay.mode("none")
    H.check_streams(streams, target)
    assert relay.stats()["cuts"] >= 5
    assert client.count("resumed") >= 5
    assert client.alive() and server.alive()


@pytest.mark.budget(60)
def test_reverse_connection_waits_for_a_client_that_is_away(limpet_bin, procs, target):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    relay = H.RelayProc(procs, sport)
    rport = H.free_port()
    client = reverse_client(procs, relay.port, "%d:127.0.0.1:%d" % (rport, target.port))
    client.send_signal(signal.SIGSTOP)  # the laptop sleeps: no FIN, no RST
    server.wait_log("detached", timeout=H.slack(10))
    # The client is away: the connection is accepted and its bytes wait in the replay buffer.
    st = H.Stream(up=256 * 1024, down=256 * 1024)
    join = H.start_streams([st], rport, timeout=H.slack(40))
    time.sleep(1.0)
    assert st.tag not in target.records  # nothing reached the target yet
    client.send_signal(signal.SIGCONT)
    join()
    H.check_streams([st], target)
    assert client.count("resumed") >= 1


@pytest.mark.budget(40)
def test_reverse_connection_is_refused_while_away_with_reverse_wait_zero(limpet_bin, procs,
                                                                          echo):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST, "-o", "forward.reverse_wait=0s")
    relay = H.RelayProc(procs, sport)
    rport = H.free_port()
    client = reverse_client(procs, relay.port, "%d:127.0.0.1:%d" % (rport, echo.port))
    s = socket.create_connection(("127.0.0.1", rport), timeout=H.slack(5))
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"  # works while attached
    s.close()
    client.send_signal(signal.SIGSTOP)
    try:
        server.wait_log("detached", timeout=H.slack(10))
        assert refused_or_closed(rport)
        server.wait_log("refused: the client is away", timeout=H.slack(5))
    finally:
        client.send_signal(signal.SIGCONT)
    client.wait_log("resumed", timeout=H.slack(10))
    s = socket.create_connection(("127.0.0.1", rport), timeout=H.slack(5))
    s.sendall(b"back")
    assert s.recv(4) == b"back"  # and works again once the client is back
    s.close()


@pytest.mark.budget(40)
def test_reverse_listener_lives_as_long_as_the_session(limpet_bin, procs, echo):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    rport = H.free_port()
    client = reverse_client(procs, sport, "127.0.0.1:%d:127.0.0.1:%d" % (rport, echo.port))
    s = socket.create_connection(("127.0.0.1", rport), timeout=H.slack(5))
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    client.stop()
    assert client.returncode == 0
    server.wait_log("reverse forward on 127.0.0.1:%d closed" % rport, timeout=H.slack(5))
    # The open connection ends with the session: a reset, since its peer is gone mid-stream
    # (an EOF would claim the stream ended cleanly).
    with pytest.raises(ConnectionResetError):
        s.recv(1)
    s.close()
    H.wait_until(lambda: not H.port_accepts(rport), H.slack(5), "the -R port to close")


@pytest.mark.budget(60)
def test_reverse_listener_comes_back_on_a_new_session_after_a_server_restart(limpet_bin, procs,
                                                                             echo):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    rport = H.free_port()
    client = reverse_client(procs, sport, "%d:127.0.0.1:%d" % (rport, echo.port))
    server.kill9()
    server2 = H.limpet_server(procs, sport, *H.FAST, name="server2")
    client.wait_log("remote forward: the server listens on", count=2, timeout=H.slack(20))
    server2.wait_log("reverse forward listening on 127.0.0.1:%d" % rport, timeout=H.slack(5))
    s = socket.create_connection(("127.0.0.1", rport), timeout=H.slack(5))
    s.sendall(b"again")
    assert s.recv(5) == b"again"
    s.close()
    assert client.alive()


@pytest.mark.budget(30)
def test_reverse_port_already_taken_is_an_error_at_client_start(limpet_bin, procs, echo):
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        client = reverse_client(procs, sport, "%d:127.0.0.1:%d" % (port, echo.port), wait=False)
        assert client.wait(H.slack(10)) == 1
        err = client.lines("-R ")
        assert len(err) == 1, client.stderr()
        assert "the server refused to listen" in err[0] and "127.0.0.1:%d" % port in err[0]
        assert "in use" in err[0], err[0]
    finally:
        busy.close()


def reverse_server_yaml(tmp, port, psk, forward=(), reverse=()):
    lines = ["listen: 127.0.0.1:%d" % port, "auth:", "  clients:", "    laptop:",
             "      psk_file: \"%s\"" % psk, "      allow:",
             "        forward: [%s]" % ", ".join('"%s"' % a for a in forward),
             "        reverse: [%s]" % ", ".join('"%s"' % a for a in reverse)]
    return write(os.path.join(tmp, "server.yaml"), "\n".join(lines) + "\n")


@pytest.mark.budget(40)
def test_reverse_bind_outside_the_allow_list_exits_2_and_an_allowed_one_works(
        limpet_bin, procs, echo, tmp_path):
    keys = str(tmp_path)
    keygen(keys, "psk", "laptop")
    sport = H.free_port()
    allowed, denied = H.free_port(), H.free_port()
    conf = reverse_server_yaml(keys, sport, os.path.join(keys, "laptop.psk"),
                               reverse=["127.0.0.1:%d" % allowed])
    server = H.limpet_server(procs, sport, "-c", conf, *H.FAST, insecure=False)
    bad = reverse_client(procs, sport, "%d:127.0.0.1:%d" % (denied, echo.port),
                         *psk_client_opts(keys), insecure=False, wait=False, name="bad")
    assert bad.wait(H.slack(10)) == 2
    err = bad.lines("-R ")
    assert len(err) == 1 and "not allowed by the server's policy" in err[0], bad.stderr()
    server.wait_log("refused: not allowed by the server's policy (identity laptop)",
                    timeout=H.slack(5))
    assert not H.port_accepts(denied)
    reverse_client(procs, sport, "%d:127.0.0.1:%d" % (allowed, echo.port),
                   *psk_client_opts(keys), insecure=False, name="good")
    s = socket.create_connection(("127.0.0.1", allowed), timeout=H.slack(5))
    s.sendall(b"tls")
    assert s.recv(3) == b"tls"
    s.close()


@pytest.mark.budget(40)
def test_reverse_port_0_on_a_host_no_rule_names_is_refused_before_listening(
        limpet_bin, procs, echo, tmp_path):
    """`-R 127.0.0.3:0:...` when allow.reverse names only 127.0.0.1: refused from the policy
    alone. It used to listen on 127.0.0.3 first and refuse the port the kernel picked."""
    keys = str(tmp_path)
    keygen(keys, "psk", "laptop")
    sport = H.free_port()
    conf = reverse_server_yaml(keys, sport, os.path.join(keys, "laptop.psk"),
                               reverse=["127.0.0.1:1-65535"])
    server = H.limpet_server(procs, sport, "-c", conf, *H.FAST, insecure=False)
    bad = reverse_client(procs, sport, "127.0.0.3:0:127.0.0.1:%d" % echo.port,
                         *psk_client_opts(keys), insecure=False, wait=False, name="bad")
    assert bad.wait(H.slack(10)) == 2
    server.wait_log("refused: not allowed by the server's policy (identity laptop)",
                    timeout=H.slack(5))
    assert server.count("the port picked") == 0, server.stderr()
    good = reverse_client(procs, sport, "127.0.0.1:0:127.0.0.1:%d" % echo.port,
                          *psk_client_opts(keys), insecure=False, name="good")
    port = int(good.lines("the server listens on")[0].rsplit(":", 1)[1].split()[0])
    s = socket.create_connection(("127.0.0.1", port), timeout=H.slack(5))
    s.sendall(b"zero")
    assert s.recv(4) == b"zero"
    s.close()


@pytest.mark.budget(30)
def test_reverse_listens_on_ipv6_and_picks_a_port_when_asked_for_0(limpet_bin, procs, echo):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    client = reverse_client(procs, sport, "[::1]:0:127.0.0.1:%d" % echo.port)
    line = client.wait_log("remote forward: the server listens on [::1]:")[0]
    port = int(line.split("[::1]:")[1].split()[0])
    assert port > 0
    server.wait_log("reverse forward listening on [::1]:%d" % port)
    s = socket.create_connection(("::1", port), timeout=H.slack(5))
    s.sendall(b"six")
    assert s.recv(3) == b"six"
    s.close()


@pytest.mark.budget(30)
def test_reverse_forward_to_a_unix_socket_at_the_client(limpet_bin, procs, tmp_path):
    path = str(tmp_path / "app.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(4)
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    rport = H.free_port()
    client = reverse_client(procs, sport, "%d:unix:%s" % (rport, path))
    assert client.count("-> unix:" + path) == 1
    s = socket.create_connection(("127.0.0.1", rport), timeout=H.slack(5))
    s.sendall(b"to the unix side")
    lsock.settimeout(H.slack(5))
    c, _ = lsock.accept()
    c.settimeout(H.slack(5))
    got = b""
    while len(got) < 16:
        chunk = c.recv(16 - len(got))
        assert chunk, "the unix side saw EOF after %r" % got
        got += chunk
    assert got == b"to the unix side"
    c.sendall(b"back")
    assert s.recv(4) == b"back"
    c.close()
    s.close()
    lsock.close()
