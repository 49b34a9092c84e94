"""`limpet stdio` (issue 5): stdin/stdout joined to HOST:PORT over a resumable session.

The contract checked here: bytes go both ways byte-exact even while the link is cut; EOF on
stdin half-closes (the target sees EOF and can still answer); the target closing ends the
process with status 0; a target the server refuses or its policy forbids ends it non-zero
with one line on stderr; a session the server no longer knows ends it with status 3 and one
line. And the use it is made for: ssh's ProxyCommand, with a real sshd, through a relay
that resets the link every second, delivers a 20 s remote command's output complete.
"""

import hashlib
import os
import pwd
import shlex
import shutil
import subprocess
import threading
import time

import pytest

import helpers as H

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH = shutil.which("ssh")
SSH_KEYGEN = shutil.which("ssh-keygen")


# ---- a `limpet stdio` process with its stdin and stdout as pipes -----------------------------

class Stdio:
    """limpet stdio with stdin/stdout piped to the test; stdout is collected by a thread."""

    def __init__(self, logdir, server_port, target, *opts, name="stdio", insecure=True):
        self.name = name
        self.argv = [H.BIN, "stdio", "-s", "127.0.0.1:%d" % server_port]
        if insecure:
            self.argv.append("--insecure")
        self.argv += list(opts) + H.VERBOSE + [target]
        self.err_path = os.path.join(logdir, "%s.stderr" % name)
        self._err = open(self.err_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._err, env=env, close_fds=True)
        self.out = bytearray()
        self.out_lock = threading.Lock()
        self.eof = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            while True:
                b = self.p.stdout.read1(H.CHUNK)
                if not b:
                    break
                with self.out_lock:
                    self.out += b
        except (OSError, ValueError):
            pass
        self.eof.set()

    def output(self):
        with self.out_lock:
            return bytes(self.out)

    def write(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def close_stdin(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s still running after %.1fs; stderr:\n%s" % (
                self.name, timeout, self.stderr()))
        self.eof.wait(5)
        return rc

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def problem_lines(self):
        """stderr without the start-up warning every --insecure process prints (and without
        the info and debug lines LIMPET_E2E_VERBOSE=1 asks for)."""
        noise = ["running with --insecure"] + ([" INFO ", " DEBUG "] if H.VERBOSE else [])
        return [l for l in self.stderr().splitlines() if not any(n in l for n in noise)]

    def stop(self):
        self.close_stdin()
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(H.slack(5))
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.reader.join(5)
        self._err.close()


@pytest.fixture
def stdios(tmp_path):
    """Starts limpet stdio processes; stops them in teardown and checks for sanitizer reports."""
    started = []

    def start(*a, **kw):
        s = Stdio(str(tmp_path), *a, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
    bad = [(s.name, [m for m in H.SANITIZER_MARKS if m in s.stderr()]) for s in started]
    bad = [b for b in bad if b[1]]
    if bad:
        pytest.fail("sanitizer reports in %s" % bad)


def assert_one_line(st, rc, *expected_rc):
    lines = st.problem_lines()
    assert rc in expected_rc, "exit %s (expected %s); stderr:\n%s" % (rc, expected_rc,
                                                                      st.stderr())
    assert len(lines) == 1 and lines[0].strip(), "expected one line on stderr:\n" + st.stderr()
    return lines[0]


def server_resumes(server):
    return server.count("resumed from")


# ---- targets -----------------------------------------------------------------------------------

class AnswerAfterEof(H.ThreadedServer):
    """Reads to EOF, then answers 'got N bytes sha S' and closes: proves a half-close."""

    def handle(self, c):
        c.settimeout(30)
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(H.CHUNK)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.sendall(b"got %d bytes sha %s\n" % (n, h.hexdigest().encode()))
        c.close()


class SayByeAndClose(H.ThreadedServer):
    """Sends one line and closes at once, without waiting for the client's EOF."""

    def handle(self, c):
        c.sendall(b"bye\n")
        c.close()


# ---- byte-exact both ways, with cuts ---------------------------------------------------------

def paced_writer(st, data, seconds, done):
    """Writes data to stdin spread over `seconds`, then closes stdin (EOF)."""
    step = 64 * 1024
    start = time.monotonic()
    try:
        for off in range(0, len(data), step):
            due = start + seconds * off / len(data)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 1.0))
            st.write(data[off:off + step])
        st.close_stdin()
    except (OSError, ValueError) as e:
        done.append(repr(e))
    done.append("ok")


@pytest.mark.budget(40)
def test_stdio_carries_4mib_both_ways_byte_exact_while_the_link_is_cut(
        limpet_bin, procs, echo, stdios):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    relay = H.RelayProc(procs, sport)
    st = stdios(relay.port, "127.0.0.1:%d" % echo.port, *H.FAST_CLIENT)
    relay.mode("rst")
    relay.every(250)
    data = b"".join(H.pattern_chunks(42, 4 * H.MiB))
    done = []
    w = threading.Thread(target=paced_writer, args=(st, data, 3.0, done), daemon=True)
    w.start()
    rc = st.wait(H.slack(25))
    w.join(5)
    relay.every(0)
    out = st.output()
    assert done == ["ok"], done
    assert len(out) == len(data) and hashlib.sha256(out).digest() == \
        hashlib.sha256(data).digest(), "got %d of %d bytes back (sha differs)" % (
            len(out), len(data))
    assert rc == 0, "exit %s after the echo closed; stderr:\n%s" % (rc, st.stderr())
    assert relay.stats()["cuts"] >= 5
    assert server_resumes(server) >= 3, server.tail(20)


# ---- half-close and the far end's close ---------------------------------------------------------

@pytest.mark.budget(20)
def test_stdin_eof_half_closes_and_the_target_still_answers(limpet_bin, procs, stdios):
    target = AnswerAfterEof()
    try:
        sport = H.free_port()
        H.limpet_server(procs, sport, *H.FAST)
        st = stdios(sport, "127.0.0.1:%d" % target.port, *H.FAST_CLIENT)
        payload = b"hello over a half-closed stream\n" * 1000
        st.write(payload)
        st.close_stdin()
        rc = st.wait(H.slack(10))
        want = b"got %d bytes sha %s\n" % (len(payload),
                                           hashlib.sha256(payload).hexdigest().encode())
        assert st.output() == want, st.output()[:200]
        assert rc == 0, st.stderr()
    finally:
        target.close()


@pytest.mark.budget(20)
def test_target_closing_ends_stdio_with_status_0_while_stdin_is_open(
        limpet_bin, procs, stdios):
    target = SayByeAndClose()
    try:
        sport = H.free_port()
        H.limpet_server(procs, sport, *H.FAST)
        st = stdios(sport, "127.0.0.1:%d" % target.port, *H.FAST_CLIENT)
        rc = st.wait(H.slack(10))     # stdin stays open: only the target's close ends it
        assert st.output() == b"bye\n"
        assert rc == 0, st.stderr()
    finally:
        target.close()


# ---- refusals ----------------------------------------------------------------------------------

@pytest.mark.budget(20)
def test_refused_target_ends_stdio_non_zero_with_one_line(limpet_bin, procs, stdios):
    sport = H.free_port()
    H.limpet_server(procs, sport, *H.FAST)
    dead = H.free_port()          # nothing listens there
    st = stdios(sport, "127.0.0.1:%d" % dead, *H.FAST_CLIENT)
    rc = st.wait(H.slack(10))
    line = assert_one_line(st, rc, 1)
    assert "127.0.0.1:%d" % dead in line and "refused" in line.lower(), line
    assert st.output() == b""


def keygen_psk(tmp, name):
    r = subprocess.run([H.BIN, "keygen", "psk", name], cwd=tmp, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return os.path.join(tmp, name + ".psk")


@pytest.mark.budget(20)
def test_target_outside_the_allow_list_ends_stdio_with_status_2_and_one_line(
        limpet_bin, procs, echo, stdios, tmp_path):
    tmp = str(tmp_path)
    psk = keygen_psk(tmp, "laptop")
    sport = H.free_port()
    cfg = os.path.join(tmp, "server.yaml")
    with open(cfg, "w") as f:
        f.write("listen: 127.0.0.1:%d\nauth:\n  clients:\n    laptop:\n"
                "      psk_file: \"%s\"\n      allow:\n        forward: [\"127.0.0.1:%d\"]\n"
                % (sport, psk, echo.port))
    server = H.limpet_server(procs, sport, "-c", cfg, *H.FAST, insecure=False)
    forbidden = H.free_port()
    st = stdios(sport, "127.0.0.1:%d" % forbidden, *H.FAST_CLIENT, "-o", "identity=laptop",
                "-o", "psk_file=%s" % psk, insecure=False)
    rc = st.wait(H.slack(10))
    line = assert_one_line(st, rc, 2)
    assert "not allowed" in line.lower(), line
    server.wait_log("identity laptop may not reach", timeout=H.slack(5))
    # the allowed target works with the same key: the refusal was the policy's
    ok = stdios(sport, "127.0.0.1:%d" % echo.port, *H.FAST_CLIENT, "-o", "identity=laptop",
                "-o", "psk_file=%s" % psk, insecure=False, name="stdio-allowed")
    ok.write(b"ping\n")
    ok.close_stdin()
    assert ok.wait(H.slack(10)) == 0, ok.stderr()
    assert ok.output() == b"ping\n"


@pytest.mark.budget(30)
def test_server_restart_loses_the_session_and_stdio_exits_3_with_one_line(
        limpet_bin, procs, echo, stdios):
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    st = stdios(sport, "127.0.0.1:%d" % echo.port, *H.FAST_CLIENT)
    st.write(b"before\n")
    H.wait_until(lambda: st.output() == b"before\n", H.slack(10), "the first echo")
    server.kill9()                # the sessions it held are gone with it
    H.limpet_server(procs, sport, *H.FAST, name="server-again")
    rc = st.wait(H.slack(15))
    line = assert_one_line(st, rc, 3)
    assert "lost" in line.lower(), line


# ---- ssh ProxyCommand through a link reset every second --------------------------------------

def start_sshd(procs, d):
    """A throwaway sshd on a free loopback port, with its own host key and one user key."""
    if not (SSH and SSH_KEYGEN and os.access(SSHD, os.X_OK)):
        H.missing_tool("ssh, ssh-keygen or sshd", "openssh-client, openssh-server")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # privilege separation dir
    os.makedirs(d, mode=0o700, exist_ok=True)
    for key in ("host_key", "user_key"):
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(d, key)],
                       check=True, timeout=30, stdin=subprocess.DEVNULL)
    shutil.copy(os.path.join(d, "user_key.pub"), os.path.join(d, "authorized_keys"))
    port = H.free_port()
    config = os.path.join(d, "sshd_config")
    with open(config, "w") as f:
        f.write("\n".join([
            "Port %d" % port, "ListenAddress 127.0.0.1",
            "HostKey %s" % os.path.join(d, "host_key"), "PidFile none",
            "AuthorizedKeysFile %s" % os.path.join(d, "authorized_keys"),
            "AllowUsers %s" % user_name(), "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "StrictModes no", "PermitRootLogin prohibit-password", "LogLevel ERROR", ""]))
    check = subprocess.run([SSHD, "-t", "-f", config], capture_output=True, text=True,
                           timeout=30)
    if check.returncode != 0:
        pytest.skip("sshd cannot run here: " + check.stderr.strip())
    sshd = procs.start("sshd", [SSHD, "-D", "-e", "-f", config])
    H.wait_port(port, timeout=H.slack(10))
    return sshd, port


def user_name():
    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.mark.budget(60)
def test_ssh_proxycommand_through_stdio_survives_a_reset_every_second(
        limpet_bin, procs, tmp_path):
    """ssh -o ProxyCommand='limpet stdio ...' runs a remote command printing a counter every
    50 ms for 20 s while the relay between limpet stdio and the server resets the link
    every second: the output arrives complete and in order, ssh exits 0, and the session
    really resumed through the cuts."""
    d = str(tmp_path / "ssh")
    sshd, ssh_port = start_sshd(procs, d)
    sport = H.free_port()
    server = H.limpet_server(procs, sport, *H.FAST)
    relay = H.RelayProc(procs, sport)
    stdio_log = os.path.join(str(tmp_path), "proxy-stdio.stderr")
    proxy = "%s stdio --insecure -s 127.0.0.1:%d %s 127.0.0.1:%d 2>>%s" % (
        shlex.quote(H.BIN), relay.port, " ".join(shlex.quote(o) for o in H.FAST_CLIENT),
        ssh_port, shlex.quote(stdio_log))
    # Bounded by time rather than by count, so a loaded machine still runs it for 20 s; the
    # last line says how many came before it.
    remote = ('i=0; end=$(( $(date +%s) + 20 )); while [ "$(date +%s)" -lt "$end" ]; do '
              'echo $i; i=$((i+1)); sleep 0.05; done; echo end $i')
    relay.mode("rst")
    relay.every(1000)
    ssh = procs.start("ssh", [
        SSH, "-F", "/dev/null", "-i", os.path.join(d, "user_key"), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "ServerAliveInterval=0", "-o", "ProxyCommand=" + proxy,
        "%s@127.0.0.1" % user_name(), remote])
    rc = ssh.wait(H.slack(45))
    relay.every(0)
    lines = ssh.stdout().splitlines()
    with open(stdio_log, "rb") as f:
        stdio_err = f.read().decode("utf-8", "replace")
    assert rc == 0, "ssh exited %s:\n%s\nlimpet stdio:\n%s" % (rc, ssh.tail(), stdio_err[-3000:])
    count = int(lines[-1].split()[1]) if lines and lines[-1].startswith("end ") else -1
    expected = [str(i) for i in range(count)] + ["end %d" % count]
    if count < 100 or lines != expected:
        seen = set(lines)
        missing = [x for x in expected if x not in seen][:10]
        raise AssertionError("output incomplete or out of order: %d lines, last %s, first "
                             "missing %s" % (len(lines), lines[-1:], missing))
    assert relay.stats()["cuts"] >= 10
    assert server_resumes(server) >= 10, server.tail(20)
    hits = [m for m in H.SANITIZER_MARKS if m in stdio_err]
    assert not hits, "sanitizer report from limpet stdio:\n" + stdio_err[-3000:]
    assert sshd.alive()
