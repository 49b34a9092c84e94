"""Helpers for limpet's end-to-end and netns suites: processes, targets, streams.

Everything here is bounded: every wait has a timeout, every thread is joined with one, and
every process started is stopped in teardown by its own Popen handle (never by name).
Standard library only.
"""

import calendar
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

ROOT = os.environ.get("LIMPET_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("LIMPET_BIN") or os.path.join(ROOT, "build", "limpet")
ASAN = os.environ.get("LIMPET_ASAN") == "1"
RELAY = os.path.join(ROOT, "scripts", "faultrelay.py")
PYTHON = sys.executable

MiB = 1 << 20
CHUNK = 256 * 1024
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "LeakSanitizer",
                   "runtime error:", "ERROR: UndefinedBehaviorSanitizer")

# Short timers so a dead link is noticed in about a second; the backoff is capped low so a
# test never sits in a 5 s sleep. Durations are limpet's config syntax.
FAST = ["-o", "session.heartbeat=250ms", "-o", "session.dead_after=1s"]
FAST_CLIENT = FAST + ["-o", "reconnect.max_delay=300ms"]
# LIMPET_E2E_VERBOSE=1 runs every limpet process with -v (per-connection detail in the logs)
VERBOSE = ["-v"] if os.environ.get("LIMPET_E2E_VERBOSE") == "1" else []


def slack(seconds):
    """Scales a time bound for the sanitizer build, which runs several times slower."""
    return seconds * 3 if ASAN else seconds


def cpu_has_aes():
    """True when this CPU has the AES instructions limpet's certificate mode counts on to put
    AES-GCM before ChaCha20-Poly1305 (x86: aes and pclmulqdq; arm64: aes and pmull)."""
    try:
        with open("/proc/cpuinfo") as f:
            words = set(f.read().split())
    except OSError:
        return False
    return ("aes" in words and "pclmulqdq" in words) or ("aes" in words and "pmull" in words)


# ---- ports ---------------------------------------------------------------------------------

def missing_tool(what, package):
    """A test that needs a tool this machine lacks. On a developer's machine that is a skip
    with the reason; under CI=true it is a failure, because scripts/install-deps.sh must have
    installed it: a missing install step never again passes as green. (A missing kernel
    capability is not a missing tool: those stay skips, with their reason.)"""
    msg = "%s is not installed (Debian package %s)" % (what, package)
    if os.environ.get("CI") == "true":
        import pytest
        pytest.fail(msg + ": under CI=true a missing tool fails; scripts/install-deps.sh "
                    "must install it")
    import pytest
    pytest.skip(msg)


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, host="127.0.0.1", timeout=10.0):
    """Waits until host:port accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError("%s:%d did not accept within %.1fs (%s)" % (host, port, timeout, last))


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---- processes -----------------------------------------------------------------------------

LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")


def log_time(line):
    """Wall-clock seconds of a limpet log line's timestamp, or None."""
    m = LOG_TS.match(line)
    if not m:
        return None
    text = m.group(1)
    base, _, frac = text.partition(".")
    t = time.strptime(base, "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) + (float("0." + frac) if frac else 0.0)


class Proc:
    """A child process with stdout and stderr each captured to a file."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.argv = list(argv)
        self.err_path = os.path.join(logdir, "%s.stderr" % name)
        self.out_path = os.path.join(logdir, "%s.stdout" % name)
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            e.update(env)
        self._err = open(self.err_path, "wb")
        self._out = open(self.out_path, "wb")
        self.started = time.time()
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                  stderr=self._err, env=e, close_fds=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    @property
    def returncode(self):
        return self.p.poll()

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lines(self, needle=None):
        ls = self.stderr().splitlines()
        return [l for l in ls if needle is None or needle in l]

    def count(self, needle):
        return len(self.lines(needle))

    def wait_log(self, needle, timeout=10.0, count=1, stream="stderr"):
        """Waits until `needle` appears on `count` lines; returns the matching lines."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stderr() if stream == "stderr" else self.stdout()
            found = [l for l in text.splitlines() if needle in l]
            if len(found) >= count:
                return found
            if not self.alive():
                raise AssertionError("%s exited (status %s) before logging %r x%d; tail:\n%s" % (
                    self.name, self.returncode, needle, count, self.tail()))
            if time.monotonic() >= deadline:
                raise TimeoutError("%s did not log %r x%d within %.1fs (saw %d); tail:\n%s" % (
                    self.name, needle, count, timeout, len(found), self.tail()))
            time.sleep(0.02)

    def tail(self, n=40):
        lines = self.stderr().splitlines()
        out = self.stdout().splitlines()
        text = "\n".join(lines[-n:])
        if out:
            text += "\n[stdout]\n" + "\n".join(out[-10:])
        return text

    def send_signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("%s (pid %d) did not exit within %.1fs; tail:\n%s" % (
                self.name, self.pid, timeout, self.tail()))

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process and waits; SIGKILL if it does not exit in time."""
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.close_files()
        return self.p.returncode

    def kill9(self):
        if self.alive():
            self.p.kill()
            self.p.wait(5)
        return self.p.returncode

    def close_files(self):
        for f in (self._err, self._out):
            try:
                f.close()
            except OSError:
                pass

    def sanitizer_report(self):
        text = self.stderr()
        hits = [m for m in SANITIZER_MARKS if m in text]
        return hits

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fd_targets(self):
        """What each open fd is (socket:[inode], anon_inode:[eventfd], ...), for messages."""
        out = []
        for f in os.listdir("/proc/%d/fd" % self.pid):
            try:
                out.append(os.readlink("/proc/%d/fd/%s" % (self.pid, f)))
            except OSError:
                pass
        return sorted(out)


class Procs:
    """Every process a test starts; stopped in teardown."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.all = []
        self.names = {}

    def start(self, name, argv, env=None):
        n = self.names.get(name, 0)
        self.names[name] = n + 1
        if n:
            name = "%s-%d" % (name, n + 1)
        p = Proc(name, argv, self.logdir, env)
        self.all.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.all):
            try:
                p.stop(signal.SIGTERM, timeout=slack(5))
            except Exception:
                p.kill9()
            p.close_files()

    def tails(self, n=40):
        out = []
        for p in self.all:
            out.append(("%s (pid %d, status %s) %s" % (p.name, p.pid, p.returncode,
                                                       " ".join(p.argv[1:])), p.tail(n)))
        return out


def limpet_server(procs, port, *opts, name="server", prefix=(), wait=True, insecure=True):
    argv = list(prefix) + [BIN, "server", "-l", "127.0.0.1:%d" % port if isinstance(port, int)
                           else port]
    if insecure:
        argv.append("--insecure")
    argv += list(opts) + VERBOSE
    p = procs.start(name, argv)
    if wait:
        p.wait_log("listening on", timeout=slack(10))
    return p


def limpet_client(procs, server, forwards, *opts, name="client", prefix=(), wait=True,
                  insecure=True):
    """forwards: list of (local_port, target_port) or raw -L specs."""
    argv = list(prefix) + [BIN, "client", "-s", server if isinstance(server, str)
                           else "127.0.0.1:%d" % server]
    if insecure:
        argv.append("--insecure")
    for fw in forwards:
        spec = fw if isinstance(fw, str) else "%d:127.0.0.1:%d" % fw
        argv += ["-L", spec]
    argv += list(opts) + VERBOSE
    p = procs.start(name, argv)
    if wait:
        p.wait_log("forward listening on", timeout=slack(10), count=len(forwards))
    return p


class RelayProc:
    """scripts/faultrelay.py as a child process, driven through its control port."""

    def __init__(self, procs, target_port, mode="none", every=0, throttle=0, name="relay",
                 target_host="127.0.0.1", source=""):
        argv = [PYTHON, RELAY, "--listen", "127.0.0.1:0",
                "--target", "%s:%d" % (target_host, target_port), "--mode", mode,
                "--control", "127.0.0.1:0", "--seed", "1"]
        if source:
            argv += ["--source", source]
        if every:
            argv += ["--every", str(every)]
        if throttle:
            argv += ["--throttle", str(throttle)]
        self.proc = procs.start(name, argv)
        line = self.proc.wait_log("relay control on", timeout=10, stream="stdout")[0]
        self.control_port = int(line.rsplit(":", 1)[1])
        listen = self.proc.wait_log("relay listening on", timeout=1, stream="stdout")[0]
        self.port = int(re.search(r"listening on [^ ]+:(\d+) ->", listen).group(1))
        self.sock = socket.create_connection(("127.0.0.1", self.control_port), timeout=10)
        self.rfile = self.sock.makefile("r", encoding="utf-8")
        self.lock = threading.Lock()

    def command(self, line):
        with self.lock:
            self.sock.sendall((line + "\n").encode())
            reply = self.rfile.readline().strip()
        if reply.startswith("error"):
            raise AssertionError("relay %r: %s" % (line, reply))
        return reply

    def cut(self, mode=None):
        return self.command("cut" + (" " + mode if mode else ""))

    def mode(self, mode):
        return self.command("mode " + mode)

    def every(self, ms):
        return self.command("every %d" % ms)

    def throttle(self, rate):
        return self.command("throttle %d" % rate)

    def stats(self):
        return json.loads(self.command("stats"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- data ----------------------------------------------------------------------------------

def pattern_chunks(seed, total, chunk=MiB):
    """A deterministic pseudo-random byte stream: the same (seed, total) always gives the
    same bytes, and no two offsets look alike, so a replay from a wrong offset shows."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def pattern_sha(seed, total):
    h = hashlib.sha256()
    for c in pattern_chunks(seed, total):
        h.update(c)
    return h.hexdigest()


def send_paced(sock, seed, total, pace, deadline, stop=None, progress=None):
    """Sends the pattern; spreads it over `pace` seconds if > 0. Returns (sha, bytes sent)."""
    h = hashlib.sha256()
    sent = 0
    start = time.monotonic()
    for block in pattern_chunks(seed, total):
        view = memoryview(block)
        for i in range(0, len(view), CHUNK):
            part = view[i:i + CHUNK]
            if pace > 0:
                due = start + pace * (sent / total)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(min(delay, 1.0))
            if time.monotonic() > deadline:
                raise TimeoutError("send deadline passed after %d of %d bytes" % (sent, total))
            if stop is not None and stop.is_set():
                raise ConnectionAbortedError("stopped after %d bytes" % sent)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(part)
            h.update(part)
            sent += len(part)
            if progress is not None:
                progress[0] = sent
    return h.hexdigest(), sent


def recv_all(sock, deadline, progress=None):
    """Reads until EOF. Returns (sha, bytes, eof_time).

    Waits with select() rather than a socket timeout: the timeout belongs to the socket, and a
    writer thread shares it."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(CHUNK)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("receive deadline passed after %d bytes" % n)
        readable, _, _ = select.select([sock], [], [], min(left, 1.0))
        if not readable:
            continue
        k = sock.recv_into(buf)
        if k == 0:
            return h.hexdigest(), n, time.monotonic()
        h.update(memoryview(buf)[:k])
        n += k
        if progress is not None:
            progress[0] = n


# ---- targets -------------------------------------------------------------------------------

# Sent by the test client at the start of each stream, before its payload: what the target
# should send back and how. magic, tag, down bytes, seed, flags, pace in ms.
HDR = struct.Struct("!4sIQIII")
HDR_MAGIC = b"LPT1"
F_DOWN_AFTER_EOF = 1    # target waits for the client's EOF before it starts sending


@dataclass
class TargetRecord:
    tag: int
    down: int = 0
    recv_sha: str = ""
    recv_len: int = 0
    sent_sha: str = ""
    sent_len: int = 0
    eof_at: float = 0.0         # monotonic time the client's EOF arrived
    send_started: float = 0.0
    send_done: float = 0.0
    closed_at: float = 0.0      # reader finished (EOF or error)
    recv_error: str = ""
    send_error: str = ""
    progress: list = field(default_factory=lambda: [0])
    sent_progress: list = field(default_factory=lambda: [0])
    done: threading.Event = field(default_factory=threading.Event)
    reader_done: threading.Event = field(default_factory=threading.Event)


class ThreadedServer:
    """Accept loop in a thread, one or two threads per connection; close() ends them all."""

    def __init__(self, host="127.0.0.1", port=0, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        sock.listen(128)
        sock.settimeout(0.2)
        self.lsock = sock
        self.port = sock.getsockname()[1]
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.accepted = 0
        self.errors = []
        t = threading.Thread(target=self._accept_loop, daemon=True, name="accept")
        t.start()
        self.threads.append(t)

    def _accept_loop(self):
        while not self.closing.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(c)
            self.spawn(self.handle, c)

    def spawn(self, fn, *args):
        t = threading.Thread(target=self._guard, args=(fn,) + args, daemon=True)
        with self.lock:
            self.threads.append(t)
        t.start()
        return t

    def _guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:     # recorded, and shown by the test that checks errors
            self.errors.append("%s: %r" % (fn.__name__, e))

    def handle(self, c):
        raise NotImplementedError

    def close(self):
        self.closing.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in list(self.threads):
            t.join(5)


class EchoServer(ThreadedServer):
    def handle(self, c):
        c.settimeout(120)
        while True:
            try:
                b = c.recv(CHUNK)
            except OSError:
                break
            if not b:
                try:
                    c.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
            c.sendall(b)


class SinkSource(ThreadedServer):
    """Records SHA-256 of what each stream sends; sends each the pattern its header asks for."""

    TIMEOUT = 300.0

    def __init__(self, *a, **kw):
        self.records = {}
        super().__init__(*a, **kw)

    def record(self, tag, timeout=30.0):
        deadline = time.monotonic() + timeout
        while tag not in self.records:
            if time.monotonic() > deadline:
                raise TimeoutError("target never saw stream tag %d" % tag)
            time.sleep(0.01)
        return self.records[tag]

    def handle(self, c):
        deadline = time.monotonic() + self.TIMEOUT
        c.settimeout(30)
        hdr = b""
        while len(hdr) < HDR.size:
            b = c.recv(HDR.size - len(hdr))
            if not b:
                raise ConnectionError("stream ended inside the test header (%d bytes)" % len(hdr))
            hdr += b
        magic, tag, down, seed, flags, pace_ms = HDR.unpack(hdr)
        if magic != HDR_MAGIC:
            raise ValueError("bad test header %r" % hdr)
        rec = TargetRecord(tag=tag, down=down)
        self.records[tag] = rec
        writer = self.spawn(self._send, c, rec, seed, down, flags, pace_ms / 1000.0, deadline)
        try:
            rec.recv_sha, rec.recv_len, rec.eof_at = recv_all(c, deadline, rec.progress)
        except Exception as e:
            rec.recv_error = repr(e)
            rec.recv_len = rec.progress[0]
        rec.closed_at = time.monotonic()
        rec.reader_done.set()
        writer.join(self.TIMEOUT)
        try:
            c.close()
        except OSError:
            pass
        rec.done.set()

    def _send(self, c, rec, seed, down, flags, pace, deadline):
        try:
            if flags & F_DOWN_AFTER_EOF:
                while not rec.reader_done.is_set():
                    if time.monotonic() > deadline:
                        raise TimeoutError("no EOF from the client")
                    rec.reader_done.wait(0.1)
                if rec.recv_error:
                    return
            rec.send_started = time.monotonic()
            rec.sent_sha, rec.sent_len = send_paced(c, seed, down, pace, deadline,
                                                    progress=rec.sent_progress)
            rec.send_done = time.monotonic()
            c.shutdown(socket.SHUT_WR)
        except Exception as e:
            rec.send_error = repr(e)
            rec.sent_len = rec.sent_progress[0]


# ---- streams through a forward -------------------------------------------------------------

_tags = iter(range(1, 1 << 30))
_tag_lock = threading.Lock()


def next_tag():
    with _tag_lock:
        return next(_tags)


@dataclass
class Stream:
    """One connection through a -L forward: `up` bytes client→target, `down` back."""
    up: int
    down: int
    up_pace: float = 0.0          # seconds over which the client spreads its bytes
    down_pace: float = 0.0
    up_after_eof: bool = False    # client sends only after the target's EOF arrived
    down_after_eof: bool = False  # target sends only after the client's EOF arrived
    read_gate: threading.Event = None   # client does not read until this is set
    tag: int = 0
    up_seed: int = 0
    down_seed: int = 0
    # results
    sent_sha: str = ""
    sent_len: int = 0
    recv_sha: str = ""
    recv_len: int = 0
    eof_at: float = 0.0
    send_done: float = 0.0
    error: str = ""
    recv_error: str = ""
    finished: float = 0.0
    progress: list = field(default_factory=lambda: [0])
    sent_progress: list = field(default_factory=lambda: [0])


def run_stream(st, port, deadline, host="127.0.0.1", sock_factory=None):
    """Runs one stream to the end (both directions) or until the deadline."""
    if not st.tag:
        st.tag = next_tag()
    st.up_seed = st.up_seed or st.tag * 7919 + 1
    st.down_seed = st.down_seed or st.tag * 104729 + 2
    try:
        if sock_factory is not None:
            s = sock_factory()
        else:
            s = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        st.error = "connect: %r" % e
        return st
    reader_done = threading.Event()

    def reader():
        try:
            if st.read_gate is not None:
                while not st.read_gate.wait(0.1):
                    if time.monotonic() > deadline:
                        raise TimeoutError("read gate never opened")
            st.recv_sha, st.recv_len, st.eof_at = recv_all(s, deadline, st.progress)
        except Exception as e:
            st.recv_error = repr(e)
            st.recv_len = st.progress[0]
        finally:
            reader_done.set()

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    try:
        flags = F_DOWN_AFTER_EOF if st.down_after_eof else 0
        s.sendall(HDR.pack(HDR_MAGIC, st.tag, st.down, st.down_seed, flags,
                           int(st.down_pace * 1000)))
        if st.up_after_eof:
            while not reader_done.wait(0.1):
                if time.monotonic() > deadline:
                    raise TimeoutError("no EOF from the target before sending")
            if st.recv_error:
                raise ConnectionError("reader failed: " + st.recv_error)
        st.sent_sha, st.sent_len = send_paced(s, st.up_seed, st.up, st.up_pace, deadline,
                                              progress=st.sent_progress)
        st.send_done = time.monotonic()
        s.shutdown(socket.SHUT_WR)
    except Exception as e:
        st.error = repr(e)
        st.sent_len = st.sent_progress[0]
    rt.join(max(0.1, deadline - time.monotonic()))
    if rt.is_alive():
        st.recv_error = st.recv_error or "reader still running at the deadline"
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        rt.join(5)
    s.close()
    st.finished = time.monotonic()
    return st


def start_streams(streams, port, timeout, **kw):
    """Starts every stream in its own thread; returns a joiner that waits for them all."""
    deadline = time.monotonic() + timeout
    for st in streams:
        if not st.tag:
            st.tag = next_tag()
    threads = [threading.Thread(target=run_stream, args=(st, port, deadline), kwargs=kw,
                                daemon=True) for st in streams]
    for t in threads:
        t.start()

    def join(extra=10.0):
        for t in threads:
            t.join(max(0.1, deadline + extra - time.monotonic()))
        stuck = [st.tag for st, t in zip(streams, threads) if t.is_alive()]
        if stuck:
            raise AssertionError("streams %s still running after %.0fs" % (stuck, timeout))
        return streams

    return join


def run_streams(streams, port, timeout, **kw):
    return start_streams(streams, port, timeout, **kw)()


def check_streams(streams, target, timeout=20.0):
    """Asserts every stream is byte-exact both ways, with SHA-256 of all bytes."""
    problems = []
    deadline = time.monotonic() + timeout
    for st in streams:
        rec = target.records.get(st.tag)
        if rec is None:
            problems.append("stream %d: target never saw it (client error %s %s)" % (
                st.tag, st.error, st.recv_error))
            continue
        if not rec.done.wait(max(0.0, deadline - time.monotonic())):
            problems.append("stream %d: target side still open: got %d of %d bytes (eof %s), "
                            "sent %d of %d; client got %d of %d (eof %s) errors %s %s" % (
                                st.tag, rec.progress[0], st.up, bool(rec.eof_at),
                                rec.sent_progress[0], st.down, st.progress[0], st.down,
                                bool(st.eof_at), st.error, st.recv_error))
            continue
        if st.error or st.recv_error:
            problems.append("stream %d: client error send=%s recv=%s" % (
                st.tag, st.error, st.recv_error))
        if rec.recv_error or rec.send_error:
            problems.append("stream %d: target error recv=%s send=%s" % (
                st.tag, rec.recv_error, rec.send_error))
        if rec.recv_len != st.up or rec.recv_sha != st.sent_sha or st.sent_len != st.up:
            problems.append("stream %d up: client sent %d bytes sha %s, target got %d sha %s" % (
                st.tag, st.sent_len, st.sent_sha[:16], rec.recv_len, rec.recv_sha[:16]))
        if st.recv_len != st.down or st.recv_sha != rec.sent_sha or rec.sent_len != st.down:
            problems.append("stream %d down: target sent %d bytes sha %s, client got %d sha %s"
                            % (st.tag, rec.sent_len, rec.sent_sha[:16], st.recv_len,
                               st.recv_sha[:16]))
    if problems:
        raise AssertionError("byte-exactness failed:\n  " + "\n  ".join(problems))


def hello_frame():
    """A valid new-session HELLO as the protocol defines it (docs/PROTOCOL.md): header
    type 0x50, length 64; payload magic "LMPT", version 1, flags 0, session id and token zero,
    rx_seq 0."""
    payload = struct.pack("!IHH16s32sQ", 0x4C4D5054, 1, 0, b"\0" * 16, b"\0" * 32, 0)
    assert len(payload) == 64
    return struct.pack("!BBHI", 0x50, 0, len(payload), 0) + payload


def is_closed(sock, timeout):
    """True if the peer closed (EOF or RST) within timeout; False if still open."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def run_faulted_transfer(t, streams, timeout):
    """Runs streams with the relay's faults on, then turns them off; returns its stats."""
    started = time.monotonic()
    run_streams(streams, t.lport, timeout)
    t.relay.every(0)
    t.relay.mode("none")
    stats = t.relay.stats()
    stats["elapsed"] = time.monotonic() - started
    return stats


def assert_clean_goodbye(server, client, established_before, settle=0.5):
    """After a client's clean exit: the server logged goodbye and saw no further session or
    resume from it (a client that reconnects after saying goodbye leaves a detached session
    behind for the whole ttl)."""
    server.wait_log("goodbye", timeout=slack(5))
    time.sleep(settle)
    lines = server.stderr().splitlines()
    last = max(i for i, l in enumerate(lines) if "goodbye" in l)
    later = [l for l in lines[last + 1:] if "new session" in l or "resumed from" in l]
    assert not later, "the server saw the client again after its goodbye:\n" + "\n".join(later)
    assert client.count("established") == established_before, \
        "client set up a new session while shutting down:\n" + client.tail(10)
