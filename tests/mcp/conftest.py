"""Fixtures for tests/mcp: real MCP hosts and servers (from npm) through limpet.

    SDK Client (host.mjs) ─stdio─► limpet mcp ─► [faultrelay] ─► limpet server ─stdio─► MCP server

The process machinery (wall-clock budget per test, Procs with teardown and sanitizer scan, log
tails on failure, the fault relay) is tests/e2e's: its conftest is loaded under another module
name and its fixtures and hooks re-exported, so both suites behave alike. What is MCP-specific
lives here: the server's YAML with `mcp.servers`, the SDK host driver, and RawHost, which
speaks raw JSON lines to `limpet mcp` when a test needs every byte or the exit status.
"""

import importlib.util
import json
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "e2e")
sys.path.insert(0, E2E)
sys.path.insert(0, HERE)

import helpers as H  # noqa: E402
from mcplib import RawHost, HostRun  # noqa: E402


def _load_e2e_conftest():
    spec = importlib.util.spec_from_file_location("limpet_e2e_conftest",
                                                  os.path.join(E2E, "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_e2e = _load_e2e_conftest()
budget = _e2e.budget
procs = _e2e.procs
limpet_bin = _e2e.limpet_bin
pytest_configure = _e2e.pytest_configure
pytest_runtest_makereport = _e2e.pytest_runtest_makereport

NODE_MODULES = os.path.join(HERE, "node_modules")
MCP_PKG = os.path.join(NODE_MODULES, "@modelcontextprotocol")
MEMORY_JS = os.path.join(MCP_PKG, "server-memory", "dist", "index.js")
EVERYTHING_JS = os.path.join(MCP_PKG, "server-everything", "dist", "index.js")
SDK_DIR = os.path.join(MCP_PKG, "sdk")
HOST_JS = os.path.join(HERE, "host.mjs")
LEGACY_JS = os.path.join(HERE, "servers", "legacy.mjs")
STATELESS_JS = os.path.join(HERE, "servers", "stateless.mjs")

# The client side of every `limpet mcp`: notices a dead link in about a second, backs off
# at most 300 ms (the e2e suite's settings).
CLIENT_OPTS = H.FAST_CLIENT
CUT_EVERY_MS = 300


def node_bin():
    path = shutil.which("node") or shutil.which("nodejs")
    if not path:
        pytest.fail("node is not installed: run scripts/install-deps.sh")
    return path


@pytest.fixture(scope="session")
def node():
    path = node_bin()
    for f in (MEMORY_JS, EVERYTHING_JS, SDK_DIR):
        if not os.path.exists(f):
            pytest.fail("%s is missing: run scripts/install-deps.sh (npm ci in tests/mcp)" % f)
    return path


def yaml_str(s):
    return json.dumps(str(s))   # a JSON string is a valid YAML double-quoted scalar


def server_yaml(servers):
    """The server's config: servers is {NAME: {command, args, env, cwd}}."""
    out = ["mcp:", "  servers:"]
    for name, spec in servers.items():
        out.append("    %s:" % name)
        out.append("      command: %s" % yaml_str(spec["command"]))
        out.append("      args: [%s]" % ", ".join(yaml_str(a) for a in spec.get("args", [])))
        if spec.get("env"):
            out.append("      env:")
            for k, v in spec["env"].items():
                out.append("        %s: %s" % (k, yaml_str(v)))
        if spec.get("cwd"):
            out.append("      cwd: %s" % yaml_str(spec["cwd"]))
    return "\n".join(out) + "\n"


class Bed:
    """One test's MCP set-up: a limpet server with mcp.servers, relays, hosts."""

    def __init__(self, procs_, tmp_path, node_path):
        self.procs = procs_
        self.tmp = str(tmp_path)
        self.node = node_path
        self.raw_hosts = []
        self.server = None
        self.sport = None
        self.memory_file = os.path.join(self.tmp, "memory.jsonl")

    # ---- the MCP servers the limpet server knows --------------------------------------------

    def servers(self):
        n = self.node
        return {
            "memory": {"command": n, "args": [MEMORY_JS], "cwd": self.tmp,
                       "env": {"MEMORY_FILE_PATH": self.memory_file}},
            "everything": {"command": n, "args": [EVERYTHING_JS, "stdio"], "cwd": self.tmp},
            "legacy": {"command": n, "args": [LEGACY_JS], "cwd": self.tmp},
            "chatty": {"command": n, "args": [LEGACY_JS, "--notify-before-init"], "cwd": self.tmp},
            "crashy": {"command": n, "args": [LEGACY_JS, "--crash-status", "7"], "cwd": self.tmp},
            "dies": {"command": n, "args": [LEGACY_JS, "--exit-at-once", "3"], "cwd": self.tmp},
            "stateless": {"command": n, "args": [STATELESS_JS], "cwd": self.tmp},
        }

    def start_server(self, *opts, port=None, name="server"):
        cfg = os.path.join(self.tmp, "server.yaml")
        with open(cfg, "w") as f:
            f.write(server_yaml(self.servers()))
        self.sport = port or self.sport or H.free_port()
        self.server = H.limpet_server(self.procs, self.sport, "-c", cfg, *H.FAST, *opts,
                                      name=name)
        return self.server

    def relay(self):
        return H.RelayProc(self.procs, self.sport)

    def cut_every(self, relay, ms=CUT_EVERY_MS):
        relay.mode("rst")
        relay.every(ms)

    # ---- limpet mcp -------------------------------------------------------------------------

    def mcp_argv(self, name, port=None, scope=None, opts=()):
        argv = [H.BIN, "mcp", "--insecure", "-s", "127.0.0.1:%d" % (port or self.sport)]
        argv += list(CLIENT_OPTS) + list(opts) + H.VERBOSE
        if scope is not None:
            argv += ["--scope", scope]
        return argv + [name]

    def raw(self, name, port=None, scope=None, opts=(), label="raw"):
        n = sum(1 for h in self.raw_hosts if h.name.startswith(label))
        h = RawHost(self.mcp_argv(name, port, scope, opts), self.tmp,
                    "%s-%d" % (label, n + 1) if n else label)
        self.raw_hosts.append(h)
        return h

    def host_spec(self, name, steps, port=None, scope=None, opts=(), label="host",
                  timeout_ms=30000, pace_ms=0):
        """A host.mjs HOST: an SDK Client spawning `limpet mcp [--scope scope] name`."""
        argv = self.mcp_argv(name, port, scope, opts)
        return {"label": label, "command": argv[0], "args": argv[1:], "steps": steps,
                "timeout_ms": int(H.slack(timeout_ms)), "pace_ms": pace_ms,
                "exit_timeout_ms": int(H.slack(10000))}

    def start_host(self, spec, name="host"):
        return self.procs.start(name, [self.node, HOST_JS, json.dumps(spec)])

    def run_host(self, spec, timeout, name="host"):
        """Runs host.mjs to its end; returns its HostRun."""
        p = self.start_host(spec, name)
        p.wait(H.slack(timeout))
        run = HostRun(p)
        assert run.of(event="done"), "host.mjs did not finish: %s" % p.tail(40)
        assert not run.fatal(), "host.mjs: %r\nstderr:\n%s" % (run.fatal(), p.tail(40))
        return run

    # ---- the server's log -------------------------------------------------------------------

    def starts(self, name, scope=None):
        """Lines where the server logged a child start for name (and scope)."""
        needle = "mcp=%s scope=%s child started" % (name, scope) if scope is not None \
            else "mcp=%s " % name
        return [l for l in self.server.lines(needle) if "child started" in l]

    def exits(self, name, scope):
        return self.server.lines("mcp=%s scope=%s child exited" % (name, scope))

    def wait_goodbyes(self, count, timeout=5.0):
        """Waits until the server has seen `count` clients leave (each `limpet mcp` that ends
        says goodbye); after it, their attachments are gone from the pool."""
        return self.server.wait_log("goodbye from client", count=count, timeout=H.slack(timeout))

    def close(self):
        for h in self.raw_hosts:
            h.stop()


@pytest.fixture
def bed(procs, tmp_path, node, limpet_bin):
    b = Bed(procs, tmp_path, node)
    yield b
    b.close()
    bad = [(h.name, [m for m in H.SANITIZER_MARKS if m in h.stderr()]) for h in b.raw_hosts]
    bad = [(n, hits) for n, hits in bad if hits]
    if bad:
        pytest.fail("sanitizer reports in %s" % ", ".join("%s (%s)" % (n, "; ".join(h))
                                                          for n, h in bad))
