"""Re-attach with --scope: a new `limpet mcp` reaches the same live child.

The pool answers the second host's initialize from the first one's cached result (the
response whose id matched, not the first line the child wrote), forwards
notifications/initialized once, and rewrites request ids so that two hosts' ids never
collide at the child."""

import pytest

import helpers as H
import mcplib as M


@pytest.mark.budget(60)
def test_host_restart_with_scope_finds_its_graph_in_the_same_child(bed):
    bed.start_server()
    ents = [{"name": "alice", "entityType": "person", "observations": ["likes tunnels"]},
            {"name": "limpet", "entityType": "program", "observations": ["survives drops"]}]
    rel = {"from": "alice", "to": "limpet", "relationType": "uses"}
    first = bed.run_host(bed.host_spec("memory", [
        M.call("create_entities", entities=ents),
        M.call("create_relations", relations=[rel]),
        M.call("add_observations", observations=[{"entityName": "alice",
                                                  "contents": ["restarts her host"]}]),
    ], scope="kg"), timeout=40, name="host1")
    first.ok_results()
    assert first.exit()["code"] == 0, first.exit()

    second = bed.run_host(bed.host_spec("memory", [M.call("read_graph")], scope="kg"),
                          timeout=40, name="host2")
    connected = second.of(event="connected")
    assert connected and connected[0]["server"]["name"] == "memory-server", second.events
    graph = M.structured(second.ok_results()[0])
    ents[0]["observations"].append("restarts her host")
    assert graph == {"entities": ents, "relations": [rel]}
    assert second.exit()["code"] == 0, second.exit()
    starts = bed.starts("memory", "kg")
    assert len(starts) == 1, "the child was started %d times:\n%s" % (len(starts),
                                                                      "\n".join(starts))
    assert bed.exits("memory", "kg") == []


@pytest.mark.budget(60)
@pytest.mark.parametrize("name", ["everything", "chatty"])
def test_reattach_gets_the_cached_initialize_result_with_its_own_id(bed, name):
    """chatty writes a notification before its initialize response; everything (2026.8.31)
    no longer does, so both are run. The second attach's result equals the first's, carries
    the second request's id, and the child saw one initialize."""
    bed.start_server()
    h1 = bed.raw(name, scope="re", label="attach1")
    r1, before1 = h1.initialize(rid=1)
    assert "result" in r1, r1
    if name == "chatty":
        assert [m.get("method") for m in before1] == ["notifications/message"], before1
        assert M.structured(h1.tool_result(2, "count"))["count"] == 1
    else:
        assert h1.tool_result(2, "echo", message="first")["content"][0]["text"] == \
            "Echo: first"
    h1.close_stdin()
    assert h1.wait(H.slack(10)) == 0

    h2 = bed.raw(name, scope="re", label="attach2")
    r2, _ = h2.initialize(rid="second-attach-init")
    assert r2.get("id") == "second-attach-init", r2
    assert r2.get("result") == r1["result"], (r1, r2)
    if name == "chatty":
        assert M.structured(h2.tool_result(3, "count"))["count"] == 2
        stats = M.structured(h2.tool_result(4, "stats"))
        assert stats["initialize"] == 1, "the child saw %d initialize" % stats["initialize"]
        assert stats["initialized"] == 1, stats
    else:
        assert h2.tool_result(3, "echo", message="second")["content"][0]["text"] == \
            "Echo: second"
    h2.close_stdin()
    assert h2.wait(H.slack(10)) == 0
    assert len(bed.starts(name, "re")) == 1


@pytest.mark.budget(60)
def test_two_hosts_with_the_same_request_ids_each_get_their_own_answer(bed):
    bed.start_server()
    a = bed.raw("legacy", scope="shared", label="host-a")
    b = bed.raw("legacy", scope="shared", label="host-b")
    assert "result" in a.initialize(rid=1)[0]
    assert "result" in b.initialize(rid=1)[0]
    a.request(7, "tools/call", M.tool_params("slow", ms=1500))
    # b asks the child what it has seen until a's id 7 is there (in flight for 1.5 s)
    rid = 100
    while True:
        rid += 1
        if M.structured(b.tool_result(rid, "stats"))["slowPending"] == 1 or rid > 150:
            break
    assert rid <= 150, "a's request never reached the child"
    b.request(7, "tools/call", M.tool_params("count"))
    rb, _ = b.response(7, H.slack(10))
    ra, _ = a.response(7, H.slack(10))
    assert M.structured(M.result(rb))["count"] == 1, rb
    assert M.structured(M.result(ra))["slept"] == 1500, ra
    assert M.structured(a.tool_result(8, "count"))["count"] == 2
    for h in (a, b):
        h.close_stdin()
        assert h.wait(H.slack(10)) == 0
    # each host got exactly its own answers: a 1, 7, 8; b 1, the stats, 7
    assert len(a.raw) == 3 and len(b.raw) == 2 + (rid - 100), (a.raw, b.raw)
    assert len(bed.starts("legacy", "shared")) == 1
