"""A name in an allow-list must not lead to this machine's own services through DNS.

Name rules trust the resolver; a client who controls a name's DNS answers could point an
allowed name at 127.0.0.1 and reach the server's loopback services. The server refuses a
name that resolved to a loopback, unspecified, link-local or multicast address unless an
address rule allows that address too ("localhost" itself is exempt).
"""

import os
import socket

import pytest

import helpers as H
from test_tls import keygen, psk_client_opts, server_yaml


def loopback_name():
    """A name other than localhost that resolves only to loopback here: the host's own name
    (Debian maps it in /etc/hosts)."""
    name = socket.gethostname()
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(name, 1, type=socket.SOCK_STREAM)}
    except OSError as e:
        pytest.skip("the host name %r does not resolve here (%s)" % (name, e))
    if not addrs or not all(a.startswith("127.") or a == "::1" for a in addrs):
        pytest.skip("the host name %r resolves to %s, not only to loopback" % (name, addrs))
    if name.lower() == "localhost":
        pytest.skip("the host name is localhost, which is exempt")
    return name


def run(procs, tmp, allow, name, target):
    keygen(tmp, "psk", "laptop")
    sport = H.free_port()
    cfg = server_yaml(tmp, sport, [("laptop", ("psk_file", os.path.join(tmp, "laptop.psk")),
                                    allow)])
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
    lport = H.free_port()
    client = H.limpet_client(procs, sport, ["%d:%s:%d" % (lport, name, target.port)],
                             *H.FAST_CLIENT, *psk_client_opts(tmp), insecure=False)
    client.wait_log("established", timeout=H.slack(10))
    return server, client, lport


@pytest.mark.budget(30)
def test_allowed_name_resolving_to_loopback_is_refused(limpet_bin, procs, target, tmp_path):
    name = loopback_name()
    server, client, lport = run(procs, str(tmp_path), ["%s:%d" % (name, target.port)], name,
                                target)
    s = socket.create_connection(("127.0.0.1", lport), timeout=5)
    assert H.is_closed(s, H.slack(5))
    s.close()
    client.wait_log("NOT_ALLOWED: %s resolved to 127." % name, timeout=H.slack(5))
    server.wait_log("which the server's policy does not allow", timeout=H.slack(5))


@pytest.mark.budget(30)
def test_loopback_answer_allowed_by_an_address_rule_connects(limpet_bin, procs, target,
                                                             tmp_path):
    name = loopback_name()
    allow = ["%s:%d" % (name, target.port), "127.0.0.0/8:%d" % target.port]
    server, client, lport = run(procs, str(tmp_path), allow, name, target)
    streams = [H.Stream(up=H.MiB, down=H.MiB)]
    H.run_streams(streams, lport, timeout=H.slack(30))
    H.check_streams(streams, target)
    assert server.count("resolved to") == 0
