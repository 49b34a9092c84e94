"""limpet's TLS records against a stock TLS stack (issue 13).

After the handshake limpet protects the records itself (tlsrec over OpenSSL's libcrypto); the
wire must stay plain TLS 1.2 that any peer reads. tests/tools/lptlspeer.c is limpet's TLS code
as a bare peer; here it exchanges a few MiB byte-exact, both ways at once, with `openssl
s_server` (lptlspeer the client) and `openssl s_client` (lptlspeer the server): PSK mode with
ECDHE-PSK-CHACHA20-POLY1305, certificate mode with ECDHE-ECDSA and each AEAD (AES-128-GCM,
AES-256-GCM, ChaCha20-Poly1305). Each run checks that the records really were the fast path's
(layer=openssl), and that the peer ended on our close_notify.
"""

import os
import random
import subprocess
import threading

import pytest

import helpers as H

LPTLSPEER = os.environ.get("LIMPET_LPTLSPEER") or os.path.join(os.path.dirname(H.BIN), "tools",
                                                               "lptlspeer")
SIZE = 3 * H.MiB

CERT_SUITES = [("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"),
               ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384"),
               ("ECDHE-ECDSA-CHACHA20-POLY1305",
                "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256")]
PSK_SUITE = ("ECDHE-PSK-CHACHA20-POLY1305", "TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256")


def keygen(tmp, *args):
    r = subprocess.run([H.BIN, "keygen", *args], cwd=tmp, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fingerprint(out):
    for word in out.split():
        if word.startswith("sha256:") and len(word) > 60:
            return word.strip('"')
    raise AssertionError("no fingerprint in keygen output:\n" + out)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Keys (as `limpet keygen` makes them) and two data files, shared by every run."""
    if not os.access(LPTLSPEER, os.X_OK):
        pytest.fail("lptlspeer not found at %s (`make all` builds it)" % LPTLSPEER)
    tmp = str(tmp_path_factory.mktemp("interop"))
    keygen(tmp, "psk", "laptop")
    with open(os.path.join(tmp, "laptop.psk")) as f:
        psk_hex = f.read().strip()
    server_fp = fingerprint(keygen(tmp, "cert", "server"))
    client_fp = fingerprint(keygen(tmp, "cert", "cl"))
    rng = random.Random(13)
    for name in ("ours", "theirs"):
        with open(os.path.join(tmp, name + ".bin"), "wb") as f:
            f.write(rng.randbytes(SIZE))
    return {"dir": tmp, "psk_hex": psk_hex, "server_fp": server_fp, "client_fp": client_fp}


def path(m, name):
    return os.path.join(m["dir"], name)


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def feed_and_hold(proc, data_path, done):
    """openssl reads what it sends from stdin: all of it, then stdin stays open (an EOF would
    end s_server's side early) until lptlspeer is done."""
    with open(data_path, "rb") as f:
        try:
            proc.stdin.write(f.read())
            proc.stdin.flush()
        except BrokenPipeError:
            return
    done.wait(H.slack(60))
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass


def run_pair(m, openssl_argv, peer_argv, tag):
    """openssl (started first) and lptlspeer exchange SIZE bytes each way; both must end well
    and every byte must arrive. Returns lptlspeer's stdout."""
    theirs_out, ours_out = path(m, tag + ".openssl.out"), path(m, tag + ".peer.out")
    with open(theirs_out, "wb") as out, open(path(m, tag + ".openssl.err"), "wb") as err:
        ossl = subprocess.Popen(openssl_argv, stdin=subprocess.PIPE, stdout=out, stderr=err)
    done = threading.Event()
    feeder = threading.Thread(target=feed_and_hold, args=(ossl, path(m, "theirs.bin"), done),
                              daemon=True)
    feeder.start()
    try:
        peer = subprocess.run([LPTLSPEER, *peer_argv, "--send", path(m, "ours.bin"),
                               "--expect", str(SIZE), "--out", ours_out,
                               "--timeout", str(int(H.slack(30) * 1000))],
                              capture_output=True, text=True, timeout=H.slack(60))
    finally:
        done.set()
    try:
        ossl.wait(H.slack(15))
    except subprocess.TimeoutExpired:
        ossl.kill()
        ossl.wait(5)
        raise AssertionError("openssl did not end on our close_notify")
    feeder.join(5)
    with open(path(m, tag + ".openssl.err"), "rb") as f:
        ossl_err = f.read().decode(errors="replace")
    hits = [s for s in H.SANITIZER_MARKS if s in peer.stderr]
    assert not hits, peer.stderr
    assert peer.returncode == 0, "lptlspeer: %s\nopenssl: %s" % (peer.stderr, ossl_err[-2000:])
    assert "layer=openssl" in peer.stdout, peer.stdout
    assert same(ours_out, path(m, "theirs.bin")), "openssl -> limpet not byte-exact"
    assert same(theirs_out, path(m, "ours.bin")), "limpet -> openssl not byte-exact"
    return peer.stdout


def s_server(port, *args):
    return ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-tls1_2", "-naccept", "1",
            "-quiet", *args]


def s_client(port, *args):
    return ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2", "-quiet",
            "-nocommands", *args]


def free_listen_port():
    return H.free_port()


@pytest.mark.budget(60)
def test_psk_records_interoperate_with_openssl_s_server_and_s_client(material):
    m = material
    cipher, suite = PSK_SUITE
    port = free_listen_port()
    out = run_pair(m, s_server(port, "-nocert", "-psk", m["psk_hex"], "-cipher", cipher),
                   ["connect", "127.0.0.1:%d" % port, "--psk", "laptop:" + path(m, "laptop.psk")],
                   "psk-client")
    assert "suite=" + suite in out
    # lptlspeer listens; openssl connects
    out = run_reverse(m, lambda port: s_client(port, "-psk", m["psk_hex"], "-psk_identity",
                                               "laptop", "-cipher", cipher),
                      ["--psk", "laptop:" + path(m, "laptop.psk")], "psk-server")
    assert "suite=" + suite in out


@pytest.mark.budget(90)
@pytest.mark.parametrize("cipher,suite", CERT_SUITES, ids=["aes128gcm", "aes256gcm", "chacha"])
def test_cert_records_interoperate_with_openssl_for_each_aead(material, cipher, suite):
    m = material
    port = free_listen_port()
    out = run_pair(m, s_server(port, "-cert", path(m, "server.crt"), "-key", path(m, "server.key"),
                               "-verify", "1", "-cipher", cipher),
                   ["connect", "127.0.0.1:%d" % port,
                    "--cert", path(m, "cl.crt") + ":" + path(m, "cl.key"),
                    "--pin", m["server_fp"]], "cert-client-" + cipher)
    assert "suite=" + suite in out
    out = run_reverse(m, lambda port: s_client(port, "-cert", path(m, "cl.crt"), "-key",
                                               path(m, "cl.key"), "-cipher", cipher),
                      ["--cert", path(m, "server.crt") + ":" + path(m, "server.key"),
                       "--pin", m["client_fp"]], "cert-server-" + cipher)
    assert "suite=" + suite in out


def run_reverse(m, openssl_argv_for, peer_argv, tag):
    """Like run_pair, with lptlspeer listening first (on a port it picks) and openssl
    connecting to it."""
    ours_out, theirs_out = path(m, tag + ".peer.out"), path(m, tag + ".openssl.out")
    peer = subprocess.Popen([LPTLSPEER, "listen", "0", *peer_argv, "--send", path(m, "ours.bin"),
                             "--expect", str(SIZE), "--out", ours_out,
                             "--timeout", str(int(H.slack(30) * 1000))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = peer.stdout.readline()
    assert line.startswith("port "), line + peer.stderr.read()
    openssl_argv = openssl_argv_for(int(line.split()[1]))
    with open(theirs_out, "wb") as out, open(path(m, tag + ".openssl.err"), "wb") as err:
        ossl = subprocess.Popen(openssl_argv, stdin=subprocess.PIPE, stdout=out, stderr=err)
    done = threading.Event()
    feeder = threading.Thread(target=feed_and_hold, args=(ossl, path(m, "theirs.bin"), done),
                              daemon=True)
    feeder.start()
    try:
        rest, perr = peer.communicate(timeout=H.slack(60))
    finally:
        done.set()
    try:
        ossl.wait(H.slack(15))
    except subprocess.TimeoutExpired:
        ossl.kill()
        ossl.wait(5)
        raise AssertionError("openssl s_client did not end on our close_notify")
    feeder.join(5)
    with open(path(m, tag + ".openssl.err"), "rb") as f:
        ossl_err = f.read().decode(errors="replace")
    hits = [s for s in H.SANITIZER_MARKS if s in perr]
    assert not hits, perr
    assert peer.returncode == 0, "lptlspeer: %s\nopenssl: %s" % (perr, ossl_err[-2000:])
    assert "layer=openssl" in rest, rest
    assert same(ours_out, path(m, "theirs.bin")), "openssl -> limpet not byte-exact"
    assert same(theirs_out, path(m, "ours.bin")), "limpet -> openssl not byte-exact"
    return rest
