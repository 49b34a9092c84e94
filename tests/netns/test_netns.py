"""Faults on a real link between two network namespaces: the link goes down for 5 s, and the
client moves to a new address. Every stream byte-exact both ways (SHA-256)."""

import time

import pytest

import helpers as H


def streams_through(net, n, size, pace):
    streams = [H.Stream(up=size, down=size, up_pace=pace, down_pace=pace) for _ in range(n)]
    join = H.start_streams(streams, 0, timeout=H.slack(60), sock_factory=net.connect_a)
    return streams, join


def wait_flowing(streams):
    H.wait_until(lambda: all(st.progress[0] > 0 and st.sent_progress[0] > 0 for st in streams),
                 H.slack(10), "every stream moving data")


@pytest.mark.budget(90)
def test_link_down_for_5s_mid_transfer_resumes_byte_exact(netpair):
    net = netpair
    streams, join = streams_through(net, 4, 8 * H.MiB, pace=4.0)
    wait_flowing(streams)
    time.sleep(0.5)
    net.ip("-n", net.ns_a, "link", "set", net.veth_a, "down")
    net.ip("-n", net.ns_b, "link", "set", net.veth_b, "down")
    down_at = time.monotonic()
    time.sleep(5)
    moved_while_down = [st.progress[0] for st in streams]
    net.ip("-n", net.ns_a, "link", "set", net.veth_a, "up")
    net.ip("-n", net.ns_b, "link", "set", net.veth_b, "up")
    up_at = time.monotonic()
    join()
    H.check_streams(streams, net.target)
    assert up_at - down_at >= 5
    net.client.wait_log("link down", timeout=H.slack(5))
    net.client.wait_log("resumed", timeout=H.slack(5))
    net.server.wait_log("resumed from", timeout=H.slack(5))
    assert any(p < st.down for p, st in zip(moved_while_down, streams)), \
        "the transfer was over before the link came back: the outage tested nothing"


@pytest.mark.budget(90)
def test_client_moves_to_a_new_address_mid_transfer_resumes_byte_exact(netpair):
    net = netpair
    streams, join = streams_through(net, 4, 8 * H.MiB, pace=4.0)
    wait_flowing(streams)
    time.sleep(0.5)
    net.ip("-n", net.ns_a, "addr", "add", net.a_new_addr + "/24", "dev", net.veth_a)
    net.ip("-n", net.ns_a, "addr", "del", net.a_addr + "/24", "dev", net.veth_a)
    addrs = net.ip("-n", net.ns_a, "-4", "-o", "addr", "show", "dev", net.veth_a).stdout
    assert net.a_new_addr in addrs and net.a_addr + "/" not in addrs, addrs
    join()
    H.check_streams(streams, net.target)
    line = net.server.wait_log("resumed from %s:" % net.a_new_addr, timeout=H.slack(10))[0]
    assert net.server.count("new session") == 1, "the move started a new session: " + line
