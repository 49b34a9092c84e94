"""The Debian package: `make deb` (dpkg-buildpackage -us -uc -b on a copy of the tracked files)
builds it; it holds exactly the listed files with their modes, the conffiles, a Depends: that
dh_shlibdeps computed; lintian finds no error and no tag beyond those debian/README keeps; and
the packaged binary, unpacked with dpkg-deb -x, answers --version, makes a key and carries a
forward over TLS on loopback.

Built once per run, with DEB_BUILD_OPTIONS=nocheck (`make unit` runs the unit tests already).
Skipped for the sanitizer run (the package does not depend on it). Missing packaging tools skip
with the reason, except under CI=true, where scripts/install-deps.sh must have installed them.
"""

import gzip
import os
import re
import stat
import subprocess
import time

import pytest

import helpers as H
from test_man import check_page_matches_help, need_tool

DEB_DIR = os.path.join(H.ROOT, "build", "deb")
VERSION = re.search(r"(?m)^VERSION\s*:=\s*(\S+)", open(os.path.join(H.ROOT, "Makefile")).read())[1]

# Path -> mode, for every file and directory the package ships (beside /usr/share/doc's
# changelog.gz and copyright, which dh adds).
FILES = {
    "./usr/bin/limpet": 0o755,
    "./usr/share/man/man1/limpet.1.gz": 0o644,
    "./usr/share/man/man5/limpet.yaml.5.gz": 0o644,
    "./usr/share/doc/limpet/server.yaml": 0o644,
    "./usr/share/doc/limpet/client.yaml": 0o644,
    "./usr/share/doc/limpet/changelog.gz": 0o644,
    "./usr/share/doc/limpet/copyright": 0o644,
    "./lib/systemd/system/limpet-server.service": 0o644,
    "./lib/systemd/system/limpet-client@.service": 0o644,
    "./etc/limpet/server.yaml": 0o644,
    "./etc/limpet/client.yaml": 0o644,
}
KEYS_DIR = ("./etc/limpet/keys/", 0o700)


@pytest.fixture(scope="module")
def deb():
    if H.ASAN:
        pytest.skip("the package does not depend on the sanitizer build (run by `make e2e`)")
    for cmd, pkg in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"),
                     ("lintian", "lintian"), ("git", "git")):
        need_tool(cmd, pkg)
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck")
    start = time.monotonic()
    r = subprocess.run(["make", "-s", "-C", H.ROOT, "deb"], capture_output=True, text=True,
                       env=env, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    print("make deb: %.1fs" % (time.monotonic() - start))
    path = os.path.join(DEB_DIR, "limpet_%s_%s.deb" % (
        VERSION, subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                                text=True).stdout.strip()))
    assert os.path.isfile(path), os.listdir(DEB_DIR)
    return path


def dpkg_deb(*args):
    r = subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.budget(60)
def test_deb_holds_exactly_the_listed_files(deb):
    listing = {}
    for line in dpkg_deb("-c", deb).splitlines():
        perms, _, _, _, _, path = line.split(None, 5)
        listing[path] = perms
    files = {p: perms for p, perms in listing.items() if not perms.startswith("d")}
    dirs = {p: perms for p, perms in listing.items() if perms.startswith("d")}
    assert sorted(files) == sorted(FILES), sorted(files)
    for p, mode in FILES.items():
        want = stat.filemode(stat.S_IFREG | mode)
        assert files[p] == want, "%s: %s, want %s" % (p, files[p], want)
    assert dirs[KEYS_DIR[0]] == stat.filemode(stat.S_IFDIR | KEYS_DIR[1]), dirs
    # every directory is one of the files' parents, or the keys directory
    parents = {"./"}
    for p in list(FILES) + [KEYS_DIR[0]]:
        parts = p.rstrip("/").split("/")
        parents.update("/".join(parts[:i]) + "/" for i in range(2, len(parts)))
    assert sorted(dirs) == sorted(parents | {KEYS_DIR[0]}), sorted(dirs)


@pytest.mark.budget(60)
def test_deb_control_conffiles_and_depends(deb):
    fields = dpkg_deb("-f", deb, "Package", "Version", "Depends")
    assert "Package: limpet\n" in fields and "Version: %s\n" % VERSION in fields, fields
    depends = re.search(r"(?m)^Depends: (.*)$", fields)[1]
    assert "${" not in depends, depends
    # dh_shlibdeps: one package per library the binary links
    for pkg in ("libc6", "libev4", "libyaml-0-2", "libjansson4", "libmbedtls14"):
        assert re.search(r"(^|, )%s( |,|$)" % re.escape(pkg), depends), depends
    conffiles = dpkg_deb("--info", deb, "conffiles").split()
    assert sorted(conffiles) == ["/etc/limpet/client.yaml", "/etc/limpet/server.yaml"]


def kept_tags():
    """The lintian tags debian/README says are kept: lines "- W: tag [...]"."""
    with open(os.path.join(H.ROOT, "debian", "README"), encoding="utf-8") as f:
        return set(re.findall(r"(?m)^- ([WIP]: [a-z0-9.+-]+)", f.read()))


@pytest.mark.budget(120)
def test_lintian_finds_no_error_and_only_the_kept_tags(deb):
    r = subprocess.run(["lintian", "--display-info", "--pedantic", deb], capture_output=True,
                       text=True, timeout=110)
    print(r.stdout + r.stderr)
    tags = re.findall(r"(?m)^([EWIPX]): limpet: (\S+)", r.stdout)
    assert not [t for t in tags if t[0] == "E"], r.stdout
    found = {"%s: %s" % t for t in tags}
    assert found <= kept_tags(), "tags not explained in debian/README: %s" % sorted(
        found - kept_tags())


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory):
    root = tmp_path_factory.mktemp("deb-x")
    dpkg_deb("-x", deb, str(root))
    return root


@pytest.mark.budget(60)
def test_packaged_units_start_the_packaged_binary(unpacked):
    for unit in ("limpet-server.service", "limpet-client@.service"):
        text = (unpacked / "lib/systemd/system" / unit).read_text()
        assert "\nExecStart=/usr/bin/limpet " in text, unit
        assert "\nDocumentation=man:limpet(1) man:limpet.yaml(5)\n" in text, unit


@pytest.mark.budget(60)
def test_packaged_man_page_matches_the_packaged_binary(unpacked, tmp_path):
    page = tmp_path / "limpet.yaml.5"
    with gzip.open(unpacked / "usr/share/man/man5/limpet.yaml.5.gz") as f:
        page.write_bytes(f.read())
    assert "/usr/share/doc/limpet/server.yaml" in page.read_text()
    check_page_matches_help(str(page), str(unpacked / "usr/bin/limpet"))


@pytest.mark.budget(60)
def test_packaged_binary_runs_keygen_and_a_tls_forward(unpacked, tmp_path, procs, echo):
    limpet = str(unpacked / "usr/bin/limpet")
    r = subprocess.run([limpet, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("limpet %s " % VERSION), r.stdout + r.stderr
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    r = subprocess.run([limpet, "keygen", "psk", "laptop"], cwd=str(keys), capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    psk = keys / "laptop.psk"
    assert stat.S_IMODE(psk.stat().st_mode) == 0o600

    sport, lport = H.free_port(), H.free_port()
    conf = tmp_path / "server.yaml"
    conf.write_text("auth:\n  clients:\n    laptop:\n      psk_file: %s\n      allow:\n"
                    "        forward: [\"127.0.0.1:%d\"]\n" % (psk, echo.port))
    server = procs.start("server", [limpet, "server", "-c", str(conf), "-l",
                                    "127.0.0.1:%d" % sport])
    server.wait_log("listening on", timeout=10)
    client = procs.start("client", [limpet, "client", "-s", "127.0.0.1:%d" % sport,
                                    "-o", "identity=laptop", "-o", "psk_file=%s" % psk,
                                    "-L", "%d:127.0.0.1:%d" % (lport, echo.port)])
    client.wait_log("forward listening on", timeout=10)
    payload = os.urandom(64 * 1024)  # fits the socket buffers: sent whole before reading
    with H.socket.create_connection(("127.0.0.1", lport), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(H.socket.SHUT_WR)
        sha, n, _ = H.recv_all(s, time.monotonic() + 20)
    assert (sha, n) == (H.hashlib.sha256(payload).hexdigest(), len(payload))
    assert "insecure" not in server.stderr().lower(), server.stderr()
