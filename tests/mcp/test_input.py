"""Bad lines from the host: a line that is not JSON and a line longer than mcp.max_message
are each answered with one JSON-RPC parse error (-32700, id null), never reach the child,
and the session goes on."""

import pytest

import helpers as H
import mcplib as M

LIMIT = 1024


def ping_line(rid, size):
    """A valid ping request of exactly `size` bytes with its newline."""
    head = '{"jsonrpc":"2.0","id":%d,"method":"ping","params":{"pad":"' % rid
    tail = '"}}\n'
    return (head + "x" * (size - len(head) - len(tail)) + tail).encode()


def assert_parse_error(m):
    assert m.get("id", "missing") is None and "error" in m, m
    assert m["error"]["code"] == -32700, m
    assert "legacy test server" not in m["error"].get("message", ""), \
        "the child answered: the bad line was forwarded"


@pytest.mark.budget(60)
def test_non_json_and_overlong_lines_get_parse_errors_and_the_session_goes_on(bed):
    bed.start_server()
    h = bed.raw("legacy", scope="input", opts=["-o", "mcp.max_message=1KiB"])
    h.send_raw(b"this is not JSON at all\n")
    assert_parse_error(h.next_message(H.slack(10)))
    r, before = h.initialize(rid=1)
    assert "result" in r and before == [], (r, before)

    h.send_raw(ping_line(50, 4 * LIMIT))
    assert_parse_error(h.next_message(H.slack(10)))
    assert M.structured(h.tool_result(2, "count"))["count"] == 1

    h.send_raw(b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":\n')
    assert_parse_error(h.next_message(H.slack(10)))
    h.send_raw(ping_line(51, LIMIT // 2))       # well under the limit: passes
    r = h.next_message(H.slack(10))
    assert r == {"jsonrpc": "2.0", "id": 51, "result": {}}, r

    stats = M.structured(h.tool_result(4, "stats"))
    assert stats["badLines"] == 0, "a bad line reached the child: %r" % stats
    assert stats["methods"] == ["initialize", "notifications/initialized", "tools/call",
                                "ping", "tools/call"], stats["methods"]
    h.close_stdin()
    assert h.wait(H.slack(10)) == 0
    assert len(h.raw) == 7, h.raw     # 3 parse errors and 4 answers, nothing else
