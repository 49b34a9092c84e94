"""`make install` and `make uninstall` with DESTDIR and PREFIX: exactly the listed files land
where the conventions say, with their modes, the units' ExecStart= pointing at the installed
binary, the installed man page matching `--help`; uninstall removes exactly those files and
leaves anything else alone.
"""

import os
import stat
import subprocess

import pytest

import helpers as H
from test_man import check_page_matches_help

BUILD = os.path.dirname(os.path.abspath(H.BIN))


def make(*args, timeout=240):
    argv = ["make", "-s", "-C", H.ROOT, "BUILD=" + BUILD, *(["SAN=1"] if H.ASAN else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "%s\n%s%s" % (" ".join(argv), r.stdout, r.stderr)
    return r.stdout


def tree(root):
    """{relative path: mode} of every file (not directory) under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def expected(prefix, unitdir):
    p, u = prefix.lstrip("/"), unitdir.lstrip("/")
    return {
        p + "/bin/limpet": 0o755,
        p + "/share/man/man1/limpet.1": 0o644,
        p + "/share/man/man5/limpet.yaml.5": 0o644,
        p + "/share/doc/limpet/server.yaml": 0o644,
        p + "/share/doc/limpet/client.yaml": 0o644,
        u + "/limpet-server.service": 0o644,
        u + "/limpet-client@.service": 0o644,
    }


def check_install(dest, prefix, unitdir):
    got = tree(dest)
    want = expected(prefix, unitdir)
    assert got == want, "installed %s\nwant %s" % (sorted(got.items()), sorted(want.items()))
    binary = os.path.join(dest, prefix.lstrip("/"), "bin", "limpet")
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("limpet "), r.stdout + r.stderr
    for unit in ("limpet-server.service", "limpet-client@.service"):
        with open(os.path.join(dest, unitdir.lstrip("/"), unit), encoding="utf-8") as f:
            text = f.read()
        assert "\nExecStart=%s/bin/limpet " % prefix in text, unit
    page5 = os.path.join(dest, prefix.lstrip("/"), "share/man/man5/limpet.yaml.5")
    with open(page5, encoding="utf-8") as f:
        assert "%s/share/doc/limpet/server.yaml" % prefix in f.read()
    check_page_matches_help(page5, binary)


@pytest.mark.budget(240)
def test_make_install_puts_exactly_the_listed_files_under_destdir(tmp_path):
    unitdir = subprocess.run(["pkg-config", "systemd", "--variable=systemdsystemunitdir"],
                             capture_output=True, text=True).stdout.strip()
    dest = tmp_path / "root"
    make("install", "DESTDIR=%s" % dest)
    check_install(str(dest), "/usr/local", unitdir or "/usr/local/lib/systemd/system")

    # Uninstall removes exactly those: files of others in the same directories stay.
    others = [dest / "usr/local/bin/other-tool", dest / (unitdir or "x").lstrip("/") / "x.service"]
    for o in others:
        o.parent.mkdir(parents=True, exist_ok=True)
        o.write_text("not limpet's\n")
    make("uninstall", "DESTDIR=%s" % dest)
    assert sorted(tree(str(dest))) == sorted(str(o.relative_to(dest)) for o in others)
    assert not (dest / "usr/local/share/doc/limpet").exists()


@pytest.mark.budget(240)
def test_make_install_honours_prefix_and_unitdir(tmp_path):
    dest = tmp_path / "root"
    try:
        make("install", "DESTDIR=%s" % dest, "PREFIX=/opt/limpet", "UNITDIR=/etc/systemd/system")
        check_install(str(dest), "/opt/limpet", "/etc/systemd/system")
        make("uninstall", "DESTDIR=%s" % dest, "PREFIX=/opt/limpet",
             "UNITDIR=/etc/systemd/system")
        assert tree(str(dest)) == {}
    finally:
        make("man")  # the build's pages name the default paths again
