"""What tests/mcp's tests share besides fixtures: a raw JSON-lines host, host.mjs results,
step builders. Standard library only; every wait is bounded."""

import json
import os
import queue
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

import helpers as H  # noqa: E402

# What a 2025-era host sends first (the SDK's Client sends the same shape).
INIT_PARAMS = {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}},
               "clientInfo": {"name": "limpet-raw-test-host", "version": "1.0.0"}}
STATELESS = "2026-07-28"


def call(name, progress=False, **arguments):
    """A host.mjs step: tools/call name(arguments)."""
    return {"op": "call", "name": name, "arguments": arguments, "progress": progress}


def tool_params(name, meta=None, **arguments):
    p = {"name": name, "arguments": arguments}
    if meta:
        p["_meta"] = meta
    return p


def structured(result):
    """A tool result's structuredContent (or its first text block parsed as JSON)."""
    if "structuredContent" in result:
        return result["structuredContent"]
    return json.loads(result["content"][0]["text"])


def result(msg):
    """A response's result, asserting it is one (not an error)."""
    assert "result" in msg, "expected a JSON-RPC result, got %r" % (msg,)
    return msg["result"]


def error_message(msg):
    assert "error" in msg, "expected a JSON-RPC error, got %r" % (msg,)
    return msg["error"].get("message", "")


class RawHost:
    """`limpet mcp` driven with raw JSON lines: what a host writes, byte for byte.

    A reader thread parses stdout into a queue; stderr goes to a file (scanned for sanitizer
    reports at teardown). Every wait is bounded."""

    def __init__(self, argv, logdir, name):
        self.name = name
        self.argv = argv
        self.err_path = os.path.join(logdir, "%s.stderr" % name)
        self._err = open(self.err_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._err, env=env, close_fds=True)
        self.pid = self.p.pid
        self.q = queue.Queue()
        self.raw = []          # every stdout line, in order
        self.backlog = []      # parsed messages received but not yet taken by a wait
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.raw.append(line)
            try:
                self.q.put(json.loads(line))
            except ValueError:
                self.q.put({"_unparsed": line.decode("utf-8", "replace")})
        self.q.put(None)

    def send_raw(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def send(self, obj):
        self.send_raw(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def request(self, rid, method, params=None):
        msg = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def try_request(self, rid, method, params=None):
        """request(), or False when limpet mcp has closed its stdin (it exited)."""
        try:
            self.request(rid, method, params)
            return True
        except (BrokenPipeError, ValueError):
            return False

    def messages(self):
        """Every line limpet mcp wrote so far, parsed (unparseable ones as {"_unparsed"})."""
        out = []
        for line in list(self.raw):
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_unparsed": line.decode("utf-8", "replace")})
        return out

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def next_message(self, timeout):
        """The next message from limpet mcp, or raises TimeoutError / EOFError."""
        if self.backlog:
            return self.backlog.pop(0)
        try:
            m = self.q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("%s: nothing on stdout within %.1fs; stderr:\n%s" % (
                self.name, timeout, self.tail()))
        if m is None:
            self.q.put(None)
            raise EOFError("%s: stdout closed (status %s); stderr:\n%s" % (
                self.name, self.p.poll(), self.tail()))
        return m

    def wait_for(self, pred, timeout, what):
        """The first message pred accepts, as (match, others): others are the messages seen
        before it, in order. Responses among them stay queued for a later wait (answers
        may come in any order); notifications and requests are consumed."""
        deadline = time.monotonic() + timeout
        others = []
        kept = []
        pending = self.backlog
        self.backlog = []
        try:
            while True:
                if pending:
                    m = pending.pop(0)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("%s: no %s within %.1fs (saw %r); stderr:\n%s" % (
                            self.name, what, timeout, others[-5:], self.tail()))
                    m = self.next_message(left)
                if pred(m):
                    return m, others
                others.append(m)
                if "method" not in m:
                    kept.append(m)
        finally:
            self.backlog = kept + pending + self.backlog

    def response(self, rid, timeout):
        """The response whose id is rid, and the messages before it."""
        return self.wait_for(lambda m: "method" not in m and m.get("id") == rid and
                             ("result" in m or "error" in m), timeout, "response to id %r" % rid)

    def call(self, rid, method, params=None, timeout=20.0):
        self.request(rid, method, params)
        m, _ = self.response(rid, timeout)
        return m

    def initialize(self, rid=1, timeout=20.0, params=None):
        """initialize (then notifications/initialized when it succeeded), the 2025-era
        start. Returns (response, the messages that came before it)."""
        self.request(rid, "initialize", params or INIT_PARAMS)
        m, before = self.response(rid, H.slack(timeout))
        if "result" in m:
            self.notify("notifications/initialized")
        return m, before

    def tool(self, rid, name, timeout=20.0, meta=None, **arguments):
        """tools/call name(arguments); returns the response."""
        return self.call(rid, "tools/call", tool_params(name, meta, **arguments),
                         H.slack(timeout))

    def tool_result(self, rid, name, timeout=20.0, meta=None, **arguments):
        """tools/call name(arguments); returns its result, asserting it is not an error."""
        return result(self.tool(rid, name, timeout, meta, **arguments))

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("%s (pid %d) did not exit within %.1fs; stderr:\n%s" % (
                self.name, self.pid, timeout, self.tail()))

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, n=30):
        return "\n".join(self.stderr().splitlines()[-n:])

    def stop(self):
        self.close_stdin()
        if self.p.poll() is None:
            try:
                self.p.wait(H.slack(5))
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.t.join(5)
        self._err.close()


class HostRun:
    """What one host.mjs run printed: its events by label."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []
        for line in proc.stdout().splitlines():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                raise AssertionError("host.mjs printed a line that is not JSON: %r" % line)

    def of(self, label=None, event=None):
        return [e for e in self.events if (label is None or e.get("label") == label)
                and (event is None or e.get("event") == event)]

    def steps(self, label=None):
        return sorted(self.of(label, "step"), key=lambda e: e["i"])

    def fatal(self):
        return self.of(event="fatal")

    def exit(self, label=None):
        ex = self.of(label, "exit")
        assert len(ex) == 1, "host %s: %d exit events: %r" % (label, len(ex), ex)
        return ex[0]

    def ok_results(self, label=None):
        """The results of every step, asserting each succeeded."""
        bad = [s for s in self.steps(label) if not s["ok"]]
        assert not bad, "host %s: failed steps %r\nhost stderr:\n%s" % (
            label, bad, self.proc.tail(40))
        return [s["result"] for s in self.steps(label)]
