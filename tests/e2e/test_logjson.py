"""--log-format json: every line both sides write is one JSON object a collector can read."""

import json
import socket

import pytest

import helpers as H


@pytest.mark.budget(30)
def test_json_logs_are_one_object_per_line_with_session_and_stream_fields(
        limpet_bin, procs, echo):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST, "--log-format", "json", "-v")
    lport = H.free_port()
    client = H.limpet_client(procs, sport, [(lport, echo.port)], *H.FAST_CLIENT,
                             "--log-format", "json", "-v", wait=False)
    client.wait_log("forward listening on", timeout=H.slack(10))
    client.wait_log("established", timeout=H.slack(10))
    s = socket.create_connection(("127.0.0.1", lport), timeout=H.slack(5))
    s.sendall(b"hello \"json\"\n")
    assert s.recv(64) == b"hello \"json\"\n"
    s.close()
    client.wait_log("closed (up", timeout=H.slack(5))
    client.stop()
    server.stop()
    for proc, name in ((client, "client"), (server, "server")):
        lines = [l for l in proc.stderr().splitlines() if l.strip()]
        assert lines, name
        objs = [json.loads(l) for l in lines]          # every line parses
        for o in objs:
            assert o["proc"] == name and o["level"] in ("ERROR", "WARN", "INFO", "DEBUG"), o
            assert o["time"].endswith("Z") and isinstance(o["msg"], str), o
        with_sess = [o for o in objs if "sess" in o]
        assert with_sess and all(len(o["sess"]) == 8 for o in with_sess), name
        assert any("stream" in o and o["stream"] >= 1 for o in objs), name
