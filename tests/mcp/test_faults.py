"""MCP sessions through a link cut every 300 ms: every reply correct, none lost, none twice.

SDK Client ─► limpet mcp ─► faultrelay (RST every 300 ms) ─► limpet server ─► MCP server

The relay passes the first handshake untouched and starts cutting once the server has logged
the session; the hosts pace their calls so that the cuts land between and inside them. The
server's log proves the faults hit (resumes) and that no session was lost (one new session
per `limpet mcp`)."""

import time

import pytest

import helpers as H
import mcplib as M


def assert_faults_hit(bed, relay, sessions, at_least=3):
    """The relay cut, the session resumed across the cuts, and no session was ever lost."""
    stats = relay.stats()
    resumes = bed.server.count("resumed from")
    print("relay %r; server resumes %d" % (stats, resumes))
    assert stats["cuts_rst"] >= at_least, "the relay cut only %d times" % stats["cuts_rst"]
    assert resumes >= at_least, "only %d resumes: the faults missed the session" % resumes
    assert bed.server.count("new session") == sessions, \
        "a session was set up again (lost?):\n" + "\n".join(bed.server.lines("new session"))


def faulted_host_run(bed, relay, spec, timeout, sessions=1):
    """Runs host.mjs with cuts on from the moment its session exists; cuts off after."""
    host = bed.start_host(spec)
    bed.server.wait_log("new session", count=sessions, timeout=H.slack(15))
    bed.cut_every(relay)
    host.wait(H.slack(timeout))
    run = M.HostRun(host)
    assert run.of(event="done"), "host.mjs did not finish:\n" + host.tail(40)
    assert not run.fatal(), "host.mjs: %r\n%s" % (run.fatal(), host.tail(40))
    assert_faults_hit(bed, relay, sessions)
    relay.every(0)
    relay.mode("none")
    return run


def entity(i):
    return {"name": "entity-%02d" % i, "entityType": "kind-%d" % (i % 3),
            "observations": ["observation %d.0" % i]}


@pytest.mark.budget(90)
def test_memory_graph_reads_back_exactly_through_cuts_every_300ms(bed):
    bed.start_server()
    relay = bed.relay()
    n = 8
    steps = [M.call("create_entities", entities=[entity(i)]) for i in range(n)]
    steps += [M.call("add_observations", observations=[{
        "entityName": "entity-%02d" % i, "contents": ["observation %d.1" % i,
                                                      "observation %d.2" % i]}])
        for i in range(n)]
    rels = [{"from": "entity-%02d" % i, "to": "entity-%02d" % (i + 1), "relationType": "next"}
            for i in range(n - 1)]
    steps += [M.call("create_relations", relations=[r]) for r in rels]
    steps += [M.call("read_graph")]
    spec = bed.host_spec("memory", steps, port=relay.port, scope="graph", pace_ms=100)
    run = faulted_host_run(bed, relay, spec, timeout=60)

    results = run.ok_results()
    assert len(results) == len(steps), "steps lost: %d of %d" % (len(results), len(steps))
    # A request the server saw twice would answer the second time with nothing new.
    for i in range(n):
        assert M.structured(results[i])["entities"] == [entity(i)], results[i]
        added = M.structured(results[n + i])["results"]
        assert added == [{"entityName": "entity-%02d" % i, "addedObservations": [
            "observation %d.1" % i, "observation %d.2" % i]}], added
    for k, r in enumerate(rels):
        assert M.structured(results[2 * n + k])["relations"] == [r]
    graph = M.structured(results[-1])
    want = [dict(entity(i), observations=["observation %d.%d" % (i, j) for j in range(3)])
            for i in range(n)]
    assert graph == {"entities": want, "relations": rels}
    assert run.exit()["code"] == 0, run.exit()
    assert len(bed.starts("memory", "graph")) == 1


@pytest.mark.budget(90)
def test_everything_progress_sampling_and_elicitation_through_cuts_every_300ms(bed):
    bed.start_server()
    relay = bed.relay()
    steps = [
        M.call("trigger-long-running-operation", progress=True, duration=3, steps=10),
        M.call("trigger-sampling-request", prompt="first question"),
        M.call("echo", message="one"),
        M.call("trigger-elicitation-request"),
        M.call("trigger-sampling-request", prompt="second question"),
        M.call("echo", message="two"),
        M.call("trigger-elicitation-request"),
        M.call("trigger-sampling-request", prompt="third question"),
        M.call("trigger-long-running-operation", progress=True, duration=1, steps=4),
        M.call("echo", message="three"),
    ]
    spec = bed.host_spec("everything", steps, port=relay.port, scope="ev", pace_ms=150)
    run = faulted_host_run(bed, relay, spec, timeout=60)
    results = run.ok_results()
    steps_out = run.steps()
    assert [s["i"] for s in steps_out] == list(range(len(steps))), "a step twice or lost"

    # progress, as it came off the wire: every notification, in order, none twice, all with
    # the token of their own request, none after its result, none for the other calls
    progress = run.of(event="progress")
    for i, total in ((0, 10), (8, 4)):
        mine = [p for p in progress if p["step"] == i]
        assert [(p["progress"], p["total"]) for p in mine] == \
            [(k, total) for k in range(1, total + 1)], mine
        assert len({repr(p["token"]) for p in mine}) == 1, mine
        assert not any(p["late"] for p in mine), mine
    assert not [p for p in progress if p["step"] not in (0, 8)], progress
    assert "Duration: 3 seconds, Steps: 10" in results[0]["content"][0]["text"]
    assert "Duration: 1 seconds, Steps: 4" in results[8]["content"][0]["text"]

    # server-to-client requests: the host's handler ran once per call and each tool got
    # its own answer back
    sampling = run.of(event="sampling")
    assert [e["n"] for e in sampling] == [1, 2, 3], sampling
    for k, (i, prompt) in enumerate([(1, "first question"), (4, "second question"),
                                     (7, "third question")], start=1):
        text = results[i]["content"][0]["text"]
        assert "sampled #%d: Resource trigger-sampling-request context: %s" % (k, prompt) \
            in text, text
    elicit = run.of(event="elicitation")
    assert [e["n"] for e in elicit] == [1, 2], elicit
    for k, i in enumerate((3, 6), start=1):
        texts = " ".join(c["text"] for c in results[i]["content"])
        assert "limpet elicitation #%d" % k in texts, texts

    assert [results[i]["content"][0]["text"] for i in (2, 5, 9)] == \
        ["Echo: one", "Echo: two", "Echo: three"]
    assert run.exit()["code"] == 0, run.exit()
    assert len(bed.starts("everything", "ev")) == 1


@pytest.mark.budget(90)
def test_counter_counts_every_call_once_through_cuts_every_300ms(bed):
    """The sharpest duplicate detector: a counter. A call lost or delivered twice shows."""
    bed.start_server()
    relay = bed.relay()
    steps = [M.call("count") for _ in range(30)] + [M.call("stats")]
    spec = bed.host_spec("legacy", steps, port=relay.port, scope="count", pace_ms=60)
    run = faulted_host_run(bed, relay, spec, timeout=60)
    results = run.ok_results()
    assert [M.structured(r)["count"] for r in results[:30]] == list(range(1, 31))
    stats = M.structured(results[30])
    assert stats["methods"].count("tools/call") == 31, stats["methods"]
    assert stats["initialize"] == 1 and stats["initialized"] == 1, stats
    assert stats["badLines"] == 0, stats


@pytest.mark.budget(90)
def test_stateless_2026_era_discover_and_calls_keep_state_through_cuts(bed):
    """2026-07-28: no initialize, server/discover, protocol version in each request's _meta.
    The child keeps its counter across calls and across a second `limpet mcp` of the scope,
    and never sees an initialize."""
    bed.start_server()
    relay = bed.relay()
    meta = {"protocolVersion": M.STATELESS}
    h = bed.raw("stateless", port=relay.port, scope="sl")
    h.request(1, "server/discover", {"_meta": meta})
    bed.server.wait_log("new session", timeout=H.slack(15))
    bed.cut_every(relay)
    disc, before = h.response(1, H.slack(20))
    assert before == [], before
    assert M.result(disc)["supportedVersions"] == [M.STATELESS], disc
    assert M.result(disc)["capabilities"] == {"tools": {"listChanged": False}}, disc

    rid = 100
    counts = []
    for _ in range(12):     # one at a time, paced like a host that thinks between calls,
        time.sleep(0.12)    # so that the cuts land across them
        rid += 1
        r = h.tool(rid, "count", meta=meta)
        counts.append(M.structured(M.result(r))["count"])
    burst = list(range(rid + 1, rid + 11))
    for b in burst:         # ten in flight at once
        h.request(b, "tools/call", M.tool_params("count", meta))
    for b in burst:
        r, _ = h.response(b, H.slack(20))
        counts.append(M.structured(M.result(r))["count"])
    assert counts == list(range(1, 23)), counts

    h.close_stdin()
    assert h.wait(H.slack(10)) == 0
    h2 = bed.raw("stateless", port=relay.port, scope="sl", label="raw-second")
    r = h2.tool(1, "count", meta=meta)
    assert M.structured(M.result(r))["count"] == 23
    stats = M.structured(h2.tool_result(2, "stats", meta=meta))
    assert stats["initialize"] == 0, "limpet sent the stateless server an initialize"
    assert stats["discover"] == 1 and stats["calls"] == 24, stats
    assert_faults_hit(bed, relay, sessions=2)
    h2.close_stdin()
    assert h2.wait(H.slack(10)) == 0
    # nothing but the answers reached either host: no duplicates, no strays
    assert len(h.raw) == 1 + 22, [l[:80] for l in h.raw]
    assert len(h2.raw) == 2, h2.raw
    assert len(bed.starts("stateless", "sl")) == 1
