"""Transparent mode (-T): an application's outbound TCP, redirected by nftables, rides the tunnel.

Two namespaces joined by a veth:

    lpTa-* "app"                                  lpTs-* "srv"
    the application, limpet client -T   ──veth──  limpet server, target on 10.215.9.5 / fd00:215:9::5
    nft: tcp to the target  -> redirect to the -T port     (an address of srv's loopback, routed
         anything else to the target -> drop               from app through the veth)

The application connects to the target's real address and knows nothing of limpet. Its packets
can only get there through the tunnel: the filter rule drops every packet to the target that
the redirect did not rewrite (checked first, before the redirect is installed). Transfers are
byte-exact across a 3 s link outage, over IPv4 and IPv6. The server's allow-list applies to the
original destination, and a connection made straight to the -T port is closed, not looped.
TPROXY (nothing rewritten; the accepted socket's own address is the destination) works too.

Skipped, with the reason, where network namespaces or nftables are not available.
"""

import os
import shutil
import socket
import subprocess
import time
from types import SimpleNamespace

import pytest

import helpers as H
from conftest import in_netns, ip
from test_tls import keygen, psk_client_opts, server_yaml

NET = "10.215.1"
APP_ADDR, SRV_ADDR = NET + ".1", NET + ".2"
NET6 = "fd00:215:1::"
APP6, SRV6 = NET6 + "1", NET6 + "2"
TARGET4, TARGET6 = "10.215.9.5", "fd00:215:9::5"
TARGET_TP = "10.215.9.6"                  # reached through TPROXY instead of REDIRECT
TARGET_PORT, OTHER_PORT = 8443, 8444      # OTHER_PORT: redirected, but not in the allow-list
SERVER_PORT, T_PORT, T6_PORT = 7410, 7411, 7412
_seq = iter(range(1, 1000))


def nft(ns, ruleset):
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True,
                       capture_output=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError("nft in %s: %s" % (ns, r.stderr.strip()))


FILTER = """
table inet lptest {
  chain out_filter {
    type filter hook output priority 0;
    ip daddr %(t4)s drop
    ip6 daddr %(t6)s drop
  }
}
"""

# In the output hook REDIRECT sends locally made connections to 127.0.0.1 / ::1: the -T
# listeners sit there. The tunnel's own connection goes to SRV_ADDR, which no rule touches.
REDIRECT = """
table inet lptest {
  chain out_nat {
    type nat hook output priority -100;
    ip daddr %(t4)s meta l4proto tcp redirect to :%(p4)d
    ip6 daddr %(t6)s meta l4proto tcp redirect to :%(p6)d
  }
}
"""

# TPROXY for this namespace's own connections: mark them in the output route hook so the
# policy route sends them back in through lo, where prerouting hands them to the -T listener
# untouched (their destination is still the target's). Unmarked packets to it are dropped.
TPROXY = """
table inet lptproxy {
  chain out_route {
    type route hook output priority mangle;
    ip daddr %(tp)s tcp dport %(port)d meta mark set 1
  }
  chain pre {
    type filter hook prerouting priority mangle;
    ip daddr %(tp)s tcp dport %(port)d meta mark set 1 tproxy ip to 127.0.0.1:%(p4)d accept
  }
  chain out_filter {
    type filter hook output priority 0;
    ip daddr %(tp)s meta mark != 1 drop
  }
}
"""


def connect_from(ns, addr, port, timeout=10):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET

    def make():
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((addr, port))
        return s
    return in_netns(ns, make)


def closed_by_limpet(ns, addr, port):
    """True when limpet closes a connection from ns to addr:port (a reset can beat connect())."""
    try:
        s = connect_from(ns, addr, port)
    except ConnectionResetError:
        return True
    try:
        return H.is_closed(s, H.slack(5))
    finally:
        s.close()


def listen_in(ns, addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET

    def make():
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        return s
    return H.SinkSource(sock=in_netns(ns, make))


def setup_namespaces(app, srv, veth_a, veth_s, created):
    for ns in (app, srv):
        ip("netns", "add", ns)
        created.append(ns)
    ip("-n", app, "link", "add", veth_a, "type", "veth", "peer", "name", veth_s, "netns", srv)
    for ns, dev in ((app, veth_a), (srv, veth_s)): # the IPv6 addresses must survive the outage
        ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.keep_addr_on_down=1" % dev)
    ip("-n", app, "addr", "add", APP_ADDR + "/24", "dev", veth_a)
    ip("-n", srv, "addr", "add", SRV_ADDR + "/24", "dev", veth_s)
    ip("-n", app, "-6", "addr", "add", APP6 + "/64", "dev", veth_a, "nodad")
    ip("-n", srv, "-6", "addr", "add", SRV6 + "/64", "dev", veth_s, "nodad")
    ip("-n", srv, "addr", "add", TARGET4 + "/32", "dev", "lo")
    ip("-n", srv, "addr", "add", TARGET_TP + "/32", "dev", "lo")
    ip("-n", srv, "-6", "addr", "add", TARGET6 + "/128", "dev", "lo", "nodad")
    for ns, dev in ((app, veth_a), (srv, veth_s)):
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", dev, "up")
    target_routes(app)


def target_routes(app):
    """app's way to the target, through srv; a link going down takes these routes with it."""
    ip("-n", app, "route", "replace", TARGET4 + "/32", "via", SRV_ADDR)
    ip("-n", app, "route", "replace", TARGET_TP + "/32", "via", SRV_ADDR)
    ip("-n", app, "-6", "route", "replace", TARGET6 + "/128", "via", SRV6)


@pytest.fixture
def tnet(request, tmp_path, netns_permitted):
    if not os.access(H.BIN, os.X_OK):
        pytest.fail("limpet binary not found at %s (set LIMPET_BIN, or `make`)" % H.BIN)
    if shutil.which("nft") is None:
        H.missing_tool("nft", "nftables")
    n = next(_seq)
    tag = "%d-%d" % (os.getpid(), n)
    app, srv = "lpTa-" + tag, "lpTs-" + tag
    veth_a, veth_s = "lta%x" % (os.getpid() * 100 + n), "lts%x" % (os.getpid() * 100 + n)
    procs = H.Procs(str(tmp_path))
    request.node._limpet_procs = procs
    created, targets = [], []
    try:
        setup_namespaces(app, srv, veth_a, veth_s, created)
        targets = [listen_in(srv, TARGET4, TARGET_PORT), listen_in(srv, TARGET6, TARGET_PORT),
                   listen_in(srv, TARGET4, OTHER_PORT), listen_in(srv, TARGET_TP, TARGET_PORT)]
        rules = {"t4": TARGET4, "t6": TARGET6, "p4": T_PORT, "p6": T6_PORT}
        # before any redirect: the target is reachable, then the filter makes it unreachable
        connect_from(app, TARGET4, TARGET_PORT).close()
        try:
            nft(app, FILTER % rules)
        except RuntimeError as e:
            pytest.skip("nftables cannot filter in a namespace here: %s" % e)
        for addr in (TARGET4, TARGET6):
            with pytest.raises(OSError):
                connect_from(app, addr, TARGET_PORT, timeout=1).close()
        nft(app, REDIRECT % rules)

        tmp = str(tmp_path)
        keygen(tmp, "psk", "laptop")
        allow = ["%s:%d" % (TARGET4, TARGET_PORT), "[%s]:%d" % (TARGET6, TARGET_PORT),
                 "%s:%d" % (TARGET_TP, TARGET_PORT)]
        cfg = server_yaml(tmp, SERVER_PORT, [("laptop", ("psk_file",
                                                         os.path.join(tmp, "laptop.psk")), allow)])
        server = H.limpet_server(procs, "%s:%d" % (SRV_ADDR, SERVER_PORT), "-c", cfg, *H.FAST,
                                 prefix=["ip", "netns", "exec", srv], insecure=False)
        client = procs.start("client", ["ip", "netns", "exec", app, H.BIN, "client", "-s",
                                        "%s:%d" % (SRV_ADDR, SERVER_PORT), "-T", str(T_PORT),
                                        "-T", "[::1]:%d" % T6_PORT, *psk_client_opts(tmp),
                                        *H.FAST_CLIENT, *H.VERBOSE])
        client.wait_log("transparent proxy listening on", count=2, timeout=H.slack(10))
        client.wait_log("established", timeout=H.slack(10))
        yield SimpleNamespace(app=app, srv=srv, veth_a=veth_a, veth_s=veth_s, server=server,
                              client=client, targets=targets)
    finally:
        procs.stop_all()
        for t in targets:
            t.close()
        for ns in created:
            ip("netns", "del", ns, check=False)
    bad = ["%s: %s" % (p.name, p.sanitizer_report()) for p in procs.all if p.sanitizer_report()]
    assert not bad, "sanitizer reports in " + ", ".join(bad)


def link(net, state):
    ip("-n", net.app, "link", "set", net.veth_a, state)
    ip("-n", net.srv, "link", "set", net.veth_s, state)
    if state == "up":
        # the application's own sockets still route to the target's address before the NAT
        # sends them to loopback: without its route, the app's side stalls, not limpet's
        target_routes(net.app)


@pytest.mark.budget(90)
def test_redirected_connections_reach_their_original_destination_byte_exact_across_a_link_outage(
        tnet):
    net = tnet
    v4 = [H.Stream(up=6 * H.MiB, down=6 * H.MiB, up_pace=4.0, down_pace=4.0) for _ in range(2)]
    v6 = [H.Stream(up=6 * H.MiB, down=6 * H.MiB, up_pace=4.0, down_pace=4.0) for _ in range(2)]
    join4 = H.start_streams(v4, 0, timeout=H.slack(60),
                            sock_factory=lambda: connect_from(net.app, TARGET4, TARGET_PORT))
    join6 = H.start_streams(v6, 0, timeout=H.slack(60),
                            sock_factory=lambda: connect_from(net.app, TARGET6, TARGET_PORT))
    H.wait_until(lambda: all(st.progress[0] > 0 for st in v4 + v6), H.slack(10),
                 "every stream moving data")
    link(net, "down")
    time.sleep(3)
    moved = [st.progress[0] for st in v4 + v6]
    link(net, "up")
    join4()
    join6()
    H.check_streams(v4, net.targets[0])
    H.check_streams(v6, net.targets[1])
    assert any(p < st.down for p, st in zip(moved, v4 + v6)), "transfer ended before the outage"
    net.client.wait_log("resumed", timeout=H.slack(5))
    net.server.wait_log("resumed from", timeout=H.slack(5))
    assert net.server.count("new session") == 1


@pytest.mark.budget(60)
def test_policy_applies_to_the_original_destination_and_direct_connections_are_closed(tnet):
    net = tnet
    # redirected like the others, but the allow-list names only TARGET_PORT
    assert closed_by_limpet(net.app, TARGET4, OTHER_PORT)
    net.server.wait_log("may not reach %s:%d" % (TARGET4, OTHER_PORT), timeout=H.slack(5))
    assert net.targets[2].accepted == 0
    # straight to the -T port: nothing to carry it to but itself
    for addr, port in (("127.0.0.1", T_PORT), ("::1", T6_PORT)):
        assert closed_by_limpet(net.app, addr, port)
    net.client.wait_log("is this listener (not redirected to it)", count=2, timeout=H.slack(5))
    # and the allowed destination still works afterwards
    streams = [H.Stream(up=H.MiB, down=H.MiB)]
    H.run_streams(streams, 0, timeout=H.slack(30),
                  sock_factory=lambda: connect_from(net.app, TARGET4, TARGET_PORT))
    H.check_streams(streams, net.targets[0])


@pytest.mark.budget(60)
def test_tproxy_connections_reach_their_original_destination(tnet):
    net = tnet
    if not net.client.count("REDIRECT and TPROXY"):
        pytest.skip("the client could not set IP_TRANSPARENT (needs CAP_NET_ADMIN)")
    try:
        ip("-n", net.app, "rule", "add", "fwmark", "1", "lookup", "100")
        ip("-n", net.app, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        nft(net.app, TPROXY % {"tp": TARGET_TP, "port": TARGET_PORT, "p4": T_PORT})
    except RuntimeError as e:
        pytest.skip("TPROXY is not available in a namespace here: %s" % e)
    streams = [H.Stream(up=2 * H.MiB, down=2 * H.MiB) for _ in range(2)]
    H.run_streams(streams, 0, timeout=H.slack(30),
                  sock_factory=lambda: connect_from(net.app, TARGET_TP, TARGET_PORT))
    # only limpet could carry them: marked packets never leave app, unmarked ones are dropped
    H.check_streams(streams, net.targets[3])
