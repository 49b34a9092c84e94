"""The binary carries the hardening a Debian package gets from dpkg-buildflags: a
position-independent executable, relocations read-only and bound at start (RELRO + BIND_NOW),
stack canaries, and fortified libc calls. Checked with readelf (binutils) on the binary the
suite runs, the way checksec does."""
import os
import shutil
import subprocess

import pytest

import helpers as H


def readelf(*args):
    if not shutil.which("readelf"):
        H.missing_tool("readelf", "binutils")
    r = subprocess.run(["readelf", "-W", *args, H.BIN], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_binary_is_a_position_independent_executable():
    out = readelf("-h", "-d")
    assert "DYN (Position-Independent Executable file)" in out or "Type: DYN" in \
        " ".join(out.split()), out[:400]
    flags1 = [ln for ln in out.splitlines() if "FLAGS_1" in ln]
    assert flags1 and "PIE" in flags1[0], flags1


def test_relocations_are_read_only_and_bound_at_start():
    out = readelf("-l", "-d")
    assert "GNU_RELRO" in out, "no GNU_RELRO segment: link with -Wl,-z,relro"
    bind_now = [ln for ln in out.splitlines() if "(FLAGS)" in ln or "FLAGS_1" in ln]
    assert any("BIND_NOW" in ln or " NOW" in ln for ln in bind_now), \
        "no BIND_NOW: link with -Wl,-z,now (%s)" % bind_now


def test_stack_canaries_and_fortified_calls():
    syms = readelf("--dyn-syms")
    assert "__stack_chk_fail" in syms, "no stack canaries: build with -fstack-protector-strong"
    if os.environ.get("LIMPET_ASAN"):
        pytest.skip("the sanitizer build leaves out _FORTIFY_SOURCE (ASan checks those calls "
                    "itself; see the Makefile)")
    fortified = sorted({w for w in syms.split() if w.startswith("__") and "_chk@" in w})
    assert fortified, "no fortified libc calls (__*_chk): build with -D_FORTIFY_SOURCE=2"
