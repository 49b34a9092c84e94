"""The server's session pool: many scopes at once, and the cap (mcp.max_sessions) with
eviction of the least recently used detached session, or a refusal naming the limit."""

import re

import pytest

import helpers as H
import mcplib as M

HOSTS = 20


@pytest.mark.budget(90)
def test_twenty_hosts_with_distinct_scopes_at_once_each_get_their_own_child(bed):
    bed.start_server()
    steps = [M.call("count"), M.call("count"), M.call("whoami"), M.call("count")]
    hosts = [bed.host_spec("legacy", steps, scope="s%02d" % k, label="s%02d" % k,
                           timeout_ms=60000) for k in range(HOSTS)]
    run = bed.run_host({"hosts": hosts}, timeout=80)
    pids = set()
    for k in range(HOSTS):
        label = "s%02d" % k
        res = [M.structured(r) for r in run.ok_results(label)]
        assert [res[0]["count"], res[1]["count"], res[2]["count"], res[3]["count"]] == \
            [1, 2, 2, 3], (label, res)
        assert len({r["pid"] for r in res}) == 1, (label, res)
        pids.add(res[0]["pid"])
        assert run.exit(label)["code"] == 0, run.exit(label)
        assert len(bed.starts("legacy", label)) == 1, bed.starts("legacy", label)
    assert len(pids) == HOSTS, "%d children served %d scopes" % (len(pids), HOSTS)


def attach(bed, scope, label):
    h = bed.raw("legacy", scope=scope, label=label)
    r, _ = h.initialize(rid=1)
    assert "result" in r, (scope, r)
    return h


def count_once(bed, scope, label, goodbyes):
    """A host that attaches, counts once and exits; the count it got. Waits until the server
    saw it leave, so that its session is detached when the next host comes."""
    h = attach(bed, scope, label)
    n = M.structured(h.tool_result(2, "count"))["count"]
    h.close_stdin()
    assert h.wait(H.slack(10)) == 0
    bed.wait_goodbyes(goodbyes)
    return n


@pytest.mark.budget(90)
def test_pool_cap_evicts_the_oldest_detached_and_refuses_when_all_attached(bed):
    bed.start_server("-o", "mcp.max_sessions=2")
    assert count_once(bed, "a", "a1", 1) == 1
    assert count_once(bed, "b", "b1", 2) == 1
    # a and b detached; c needs a slot: a, the least recently used, is evicted
    assert count_once(bed, "c", "c1", 3) == 1
    bed.server.wait_log("mcp=legacy scope=a child exited", timeout=H.slack(10))
    assert bed.exits("legacy", "b") == [], "b was evicted instead of a"
    # b kept its state (count 2); now c is the oldest detached, and a comes back fresh
    assert count_once(bed, "b", "b2", 4) == 2
    a = attach(bed, "a", "a2")
    assert M.structured(a.tool_result(2, "count"))["count"] == 1, "a's old child served"
    bed.server.wait_log("mcp=legacy scope=c child exited", timeout=H.slack(10))
    assert bed.exits("legacy", "b") == [], "b was evicted instead of c"
    b = attach(bed, "b", "b3")
    assert M.structured(b.tool_result(2, "count"))["count"] == 3

    # a and b attached: no slot for d, and the error says why
    d = bed.raw("legacy", scope="d", label="d1")
    r, _ = d.initialize(rid=1)
    msg = M.error_message(r)
    print("the refusal: %s" % msg)
    assert re.search(r"max_sessions|limit", msg), "the refusal does not name the limit: " + msg
    assert bed.starts("legacy", "d") == []
    # the attached sessions are untouched by the refused one
    assert M.structured(a.tool_result(3, "count"))["count"] == 2
    assert M.structured(b.tool_result(3, "count"))["count"] == 4
    d.close_stdin()
    d.wait(H.slack(10))
    for h in (a, b):
        h.close_stdin()
        assert h.wait(H.slack(10)) == 0
    assert [len(bed.starts("legacy", s)) for s in "abc"] == [2, 1, 1]
