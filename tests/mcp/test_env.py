"""What an MCP server process inherits: a clean environment, not the limpet server's.

The limpet server may hold credentials in its environment (a token for its own use, a
systemd NOTIFY_SOCKET, an agent socket); an MCP server it starts gets PATH, HOME and LANG, and
what its mcp.servers entry sets under `env` — nothing else. It runs as the server's user.
"""

import os
import time

import pytest

from conftest import LEGACY_JS


@pytest.mark.budget(60)
def test_an_mcp_server_gets_path_home_lang_and_its_env_only(bed, monkeypatch):
    dump = os.path.join(bed.tmp, "env.txt")
    monkeypatch.setenv("LIMPET_TEST_SECRET", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    base = bed.servers

    def servers():
        s = base()
        s["envdump"] = {"command": "/bin/sh",
                        "args": ["-c", 'env > "$DUMP"; exec "$0" "$1"', bed.node, LEGACY_JS],
                        "cwd": bed.tmp, "env": {"DUMP": dump, "LANG": "en_US.UTF-8"}}
        return s
    bed.servers = servers
    bed.start_server()
    host = bed.raw("envdump")
    host.initialize()
    deadline = time.monotonic() + 10
    while not os.path.exists(dump) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(dump) as f:
        env = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    host.close_stdin()
    assert "LIMPET_TEST_SECRET" not in env, env
    assert env.get("PATH") == os.environ["PATH"], env
    assert env.get("HOME") == os.environ["HOME"], env
    assert env.get("LANG") == "en_US.UTF-8", env     # the entry's env wins over the server's
    assert env.get("DUMP") == dump, env
    # /bin/sh adds PWD, SHLVL and _ itself; nothing else may appear
    extra = set(env) - {"PATH", "HOME", "LANG", "DUMP", "PWD", "SHLVL", "_", "OLDPWD"}
    assert not extra, extra
