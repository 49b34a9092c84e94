"""What the server does with the targets a client asks for, and many clients at once.

- A target given by name is looked up without blocking the server; an unknown name and a
  refused port reset only that stream, and the client's log says why.
- Several clients at once each get a session of their own; cutting one client's link
  leaves the others alone, and every transfer is byte-exact.
"""

import socket
import time

import pytest

import helpers as H


@pytest.mark.budget(60)
def test_refused_and_unknown_targets_reset_one_stream_with_a_reason(limpet_bin, procs, target):
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    by_name, unknown, refused = H.free_port(), H.free_port(), H.free_port()
    dead_port = H.free_port()   # nothing listens there
    client = H.limpet_client(procs, sport, [
        "%d:localhost:%d" % (by_name, target.port),
        "%d:no-such-host.invalid:80" % unknown,
        "%d:127.0.0.1:%d" % (refused, dead_port),
    ], *H.FAST_CLIENT)
    client.wait_log("established", timeout=H.slack(10))

    # The refused and unknown targets: the local connection is closed, not left hanging.
    for port in (unknown, refused):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert H.is_closed(s, H.slack(10)), "local connection to :%d left open" % port
        s.close()
    client.wait_log("UNREACHABLE: cannot resolve no-such-host.invalid", timeout=H.slack(5))
    client.wait_log("REFUSED: connect to 127.0.0.1:%d failed" % dead_port, timeout=H.slack(5))

    # Meanwhile a target by name works, byte-exact, on the same session.
    streams = [H.Stream(up=2 * H.MiB, down=2 * H.MiB) for _ in range(2)]
    H.run_streams(streams, by_name, timeout=H.slack(30))
    H.check_streams(streams, target)
    assert client.count("session lost") == 0


@pytest.mark.budget(120)
def test_many_clients_each_get_their_own_session(limpet_bin, procs, target):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    n = 4
    clients, relays, ports = [], [], []
    for i in range(n):
        relay = H.RelayProc(procs, sport, name="relay%d" % i)
        lport = H.free_port()
        c = H.limpet_client(procs, relay.port, [(lport, target.port)], *H.FAST_CLIENT,
                            name="client%d" % i)
        clients.append(c)
        relays.append(relay)
        ports.append(lport)
    for c in clients:
        c.wait_log("established", timeout=H.slack(10))
    server.wait_log("new session from", count=n, timeout=H.slack(5))
    sids = {c.lines("established")[0].split("sess=")[1].split()[0] for c in clients}
    assert len(sids) == n, "clients share sessions: %r" % sids

    # Only client 0's link is cut, every 300 ms; all move data at the same time.
    relays[0].mode("rst")
    relays[0].every(300)
    streams = {i: [H.Stream(up=4 * H.MiB, down=4 * H.MiB, up_pace=2.0, down_pace=2.0)
                   for _ in range(2)] for i in range(n)}
    joins = [H.start_streams(streams[i], ports[i], timeout=H.slack(60)) for i in range(n)]
    for j in joins:
        j()
    relays[0].every(0)
    for i in range(n):
        H.check_streams(streams[i], target)
    assert relays[0].stats()["cuts"] >= 3
    assert clients[0].count("resumed") >= 3
    for c in clients[1:]:
        assert c.count("resumed") == 0, "an uncut client had to resume:\n" + c.tail(10)
        assert c.count("session lost") == 0
