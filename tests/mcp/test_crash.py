"""When things die: the MCP server child (mid-call, or at once on every start) and the limpet
server itself. The host always gets an answer, never a hang."""

import os
import re
import signal

import pytest

import helpers as H
import mcplib as M


@pytest.mark.budget(60)
@pytest.mark.parametrize("scope", ["crash", None], ids=["scoped", "no-scope"])
def test_child_crash_mid_call_errors_with_the_status_and_the_next_call_gets_a_fresh_child(
        bed, scope):
    bed.start_server()
    steps = [M.call("count"), M.call("count"), M.call("crash"), M.call("count"),
             M.call("stats"), M.call("count")]
    run = bed.run_host(bed.host_spec("crashy", steps, scope=scope, timeout_ms=20000),
                       timeout=40)
    out = run.steps()
    assert [s["ok"] for s in out] == [True, True, False, True, True, True], out
    msg = out[2]["error"]["message"]
    print("the crashed call's error: %s" % msg)
    assert re.search(r"exit", msg) and re.search(r"status 7\b", msg), \
        "the error does not name the exit status 7: " + msg
    first, fresh = M.structured(out[1]["result"]), M.structured(out[3]["result"])
    assert first["count"] == 2 and fresh["count"] == 1, (first, fresh)
    assert first["pid"] != fresh["pid"]
    stats = M.structured(out[4]["result"])
    assert stats["initialize"] == 1 and stats["initialized"] == 1, \
        "the fresh child was not initialized (once) from the cache: %r" % stats
    assert M.structured(out[5]["result"])["count"] == 2
    assert run.exit()["code"] == 0, run.exit()
    starts = bed.starts("crashy", scope)
    assert len(starts) == 2, "\n".join(starts)
    assert "pid=%d" % first["pid"] in starts[0] and "pid=%d" % fresh["pid"] in starts[1], starts


@pytest.mark.budget(60)
def test_child_dying_at_every_start_is_not_restarted_in_a_loop(bed):
    bed.start_server()
    h = bed.raw("dies", scope="dead", label="host")
    errors = []
    for rid in range(1, 6):
        r, _ = h.initialize(rid=rid, timeout=15)
        errors.append(M.error_message(r))
        if re.search(r"back(ing)?[ -]?off", errors[-1], re.I):
            break
    print("errors: %r" % errors)
    assert re.search(r"back(ing)?[ -]?off", errors[-1], re.I), \
        "no error said it is backing off: %r" % errors
    assert re.search(r"exit", errors[0]), errors
    starts = bed.starts("dies", "dead")
    assert len(starts) == len(errors) - 1 <= 3, (errors, starts)
    h.close_stdin()
    h.wait(H.slack(10))


def child_pid(line):
    return int(re.search(r"pid=(\d+)", line).group(1))


@pytest.mark.budget(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_server_restart_answers_pending_requests_and_limpet_mcp_exits_3(bed, sig):
    bed.start_server()
    h = bed.raw("everything", scope="restart")
    assert "result" in h.initialize(rid=1)[0]
    h.request(2, "tools/call", {"name": "trigger-long-running-operation",
                                "arguments": {"duration": 20, "steps": 20},
                                "_meta": {"progressToken": "slow-op"}})
    h.wait_for(lambda m: m.get("method") == "notifications/progress", H.slack(15),
               "the first progress notification")
    pid = child_pid(bed.starts("everything", "restart")[0])
    bed.server.send_signal(sig)
    bed.server.wait(H.slack(10))
    if sig == signal.SIGKILL:
        # the server could not stop its child: end that process group here (it is ours)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # sent while there is no server: pending too (unless limpet mcp already knows the
    # session is over and has exited)
    pending = [2, 3] if h.try_request(3, "ping") else [2]
    bed.start_server(name="server-restarted")
    for rid in pending:
        r, _ = h.response(rid, H.slack(30))
        print("pending id %d: %s" % (rid, M.error_message(r)))
        assert "limpet" in M.error_message(r), r
    assert h.wait(H.slack(15)) == 3, "limpet mcp did not exit 3; stderr:\n" + h.tail()
    answers = [m for m in h.messages() if m.get("id") in (2, 3)]
    assert len(answers) == len(pending), answers
