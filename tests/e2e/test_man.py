"""Man pages: limpet(1) and limpet.yaml(5) render without a warning, limpet.yaml(5) lists exactly
the keys `limpet --help` prints (with the same defaults and ranges), limpet(1) describes every
flag of every help page and exactly the signals main.c handles, and the example server
configurations in both pages start a server.

The pages are the build's (build/man/, next to LIMPET_BIN); test_install.py runs the same
comparison on the installed copy. A missing mandoc or groff skips, except under CI=true, where
scripts/install-deps.sh must have installed them.
"""

import os
import re
import shutil
import subprocess

import pytest

import helpers as H

MAN_DIR = os.path.join(os.path.dirname(os.path.abspath(H.BIN)), "man")
PAGE1 = os.path.join(MAN_DIR, "limpet.1")
PAGE5 = os.path.join(MAN_DIR, "limpet.yaml.5")


def need_tool(cmd, package):
    if not shutil.which(cmd):
        H.missing_tool(cmd, package)  # a failure under CI=true, a skip with the reason elsewhere


def need_pages():
    for p in (PAGE1, PAGE5):
        if not os.path.isfile(p):
            pytest.fail("%s is missing: `make` builds it" % p)


def render(page):
    """The page as plain text, wide enough that no entry wraps."""
    need_tool("mandoc", "mandoc")
    r = subprocess.run(["mandoc", "-Tascii", "-Owidth=250", page], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return re.sub(r".\x08", "", r.stdout.decode("utf-8", "replace"))


def section(text, title, next_titles):
    m = re.search(r"(?ms)^%s\n(.*?)(?=^(?:%s)\n|\Z)" % (re.escape(title),
                                                         "|".join(map(re.escape, next_titles))),
                  text)
    assert m, "no %s section" % title
    return m.group(1)


def help_table(limpet):
    """{key: (default, range or None)} and the list/mapping names, from `limpet server --help`."""
    out = subprocess.run([limpet, "server", "--help"], capture_output=True, text=True,
                         timeout=10).stdout
    keys_part = section(out, "CONFIGURATION KEYS (in FILE, or -o KEY=VALUE; shown with defaults)",
                        ["LISTS AND MAPPINGS (in FILE only; empty by default)"])
    maps_part = section(out, "LISTS AND MAPPINGS (in FILE only; empty by default)",
                        ["EXIT STATUS"])
    keys = {}
    for m in re.finditer(r"(?m)^    (\S+?)=(.*)\n        (.*)$", keys_part):
        rng = re.search(r"\(([^()]*\.\.[^()]*)\)$", m.group(3))
        keys[m.group(1)] = (m.group(2), rng.group(1) if rng else None)
    maps = re.findall(r"(?m)^    (\S+) \([^)]*\)$", maps_part)
    assert len(keys) > 30 and len(maps) > 10, out
    return keys, maps


def page_table(page):
    """The same from a rendered limpet.yaml(5): {key: (default, values)} and list names."""
    text = render(page)
    entry = re.compile(r"(?m)^ {7}(\S+) \(([^)]*)\)\n((?: {14}.*\n)+)")

    def entries(part):
        out = {}
        for m in entry.finditer(part):
            body = " ".join(line.strip() for line in m.group(3).splitlines())
            d = re.search(r"Default: (.*?)\.  Values: (.*)\.$", body)
            assert d, "%s: no Default/Values in %r" % (m.group(1), body)
            assert m.group(1) not in out, "%s listed twice" % m.group(1)
            out[m.group(1)] = (d.group(1), d.group(2))
        return out

    keys = entries(section(text, "KEYS", ["LISTS AND MAPPINGS"]))
    maps = entries(section(text, "LISTS AND MAPPINGS", ["RELOADING"]))
    return keys, maps


def check_page_matches_help(page, limpet):
    hkeys, hmaps = help_table(limpet)
    pkeys, pmaps = page_table(page)
    assert sorted(pkeys) == sorted(hkeys), "keys differ: page only %s, help only %s" % (
        sorted(set(pkeys) - set(hkeys)), sorted(set(hkeys) - set(pkeys)))
    assert sorted(pmaps) == sorted(hmaps), "lists differ: page only %s, help only %s" % (
        sorted(set(pmaps) - set(hmaps)), sorted(set(hmaps) - set(pmaps)))
    for k, (default, rng) in hkeys.items():
        pdefault, values = pkeys[k]
        assert pdefault == (default or "unset"), "%s: page default %r, help %r" % (
            k, pdefault, default)
        if rng is not None:
            assert values == rng, "%s: page values %r, help range %r" % (k, values, rng)
    return len(hkeys), len(hmaps)


# ---- rendering -------------------------------------------------------------------------------

@pytest.mark.budget(30)
def test_man_pages_render_without_warnings():
    need_pages()
    need_tool("mandoc", "mandoc")
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning", PAGE1, PAGE5], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    need_tool("groff", "groff")
    for page in (PAGE1, PAGE5):
        r = subprocess.run(["groff", "-ww", "-z", "-man", page], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and r.stderr == "", "%s: %s" % (page, r.stderr)


@pytest.mark.budget(30)
def test_mandoc_lint_reports_a_broken_page(tmp_path):
    # The check above can fail: an unknown macro and a bad date are reported.
    need_pages()
    need_tool("mandoc", "mandoc")
    with open(PAGE5, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"(?m)^\.TH (\S+ \S+) \S+", r".TH \1 someday", text, count=1)
    bad = tmp_path / "limpet.yaml.5"
    bad.write_text(text.replace(".SH RELOADING", ".SH RELOADING\n.XX nonsense", 1))
    r = subprocess.run(["mandoc", "-Tlint", "-W", "warning", str(bad)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "XX" in r.stdout + r.stderr, r.stdout + r.stderr


# ---- limpet.yaml(5) against --help -------------------------------------------------------------

@pytest.mark.budget(30)
def test_yaml5_lists_exactly_the_keys_help_prints(limpet_bin):
    need_pages()
    n_keys, n_maps = check_page_matches_help(PAGE5, limpet_bin)
    print("%d keys, %d lists and mappings" % (n_keys, n_maps))


@pytest.mark.budget(30)
def test_yaml5_comparison_catches_a_missing_and_a_wrong_key(tmp_path, limpet_bin):
    need_pages()
    with open(PAGE5, encoding="utf-8") as f:
        text = f.read()
    # Drop session.ttl's entry, and change the default printed for session.heartbeat.
    text, n = re.subn(r"(?ms)^\.TP\n\\fBsession\.ttl\\fR.*?(?=^\.TP\n)", "", text, count=1)
    assert n == 1
    text, n = re.subn(r"(session\.heartbeat\\fR \(duration\)\n(?:.*\n)*?Default: \\fB)2s",
                      r"\g<1>3s", text, count=1)
    assert n == 1
    bad = tmp_path / "limpet.yaml.5"
    bad.write_text(text)
    with pytest.raises(AssertionError, match="session.ttl"):
        check_page_matches_help(str(bad), limpet_bin)
    bad.write_text(text.replace("Default: \\fB3s\\fR", "Default: \\fB2s\\fR", 1)
                   .replace(".SH LISTS AND MAPPINGS", ".TP\n\\fBsession.ttl\\fR (duration)\n"
                            "x.\n.br\nDefault: \\fB10m\\fR.\nValues: 1s..30d.\n"
                            ".SH LISTS AND MAPPINGS", 1))
    assert check_page_matches_help(str(bad), limpet_bin)
    bad.write_text(text.replace(".SH LISTS AND MAPPINGS", ".TP\n\\fBsession.ttl\\fR (duration)\n"
                                "x.\n.br\nDefault: \\fB10m\\fR.\nValues: 1s..30d.\n"
                                ".SH LISTS AND MAPPINGS", 1))
    with pytest.raises(AssertionError, match="session.heartbeat"):
        check_page_matches_help(str(bad), limpet_bin)


# ---- limpet(1) against the help pages and main.c ---------------------------------------------

def help_flags(limpet):
    """Every long flag each help page lists in its OPTIONS section."""
    flags = set()
    for args in (["--help"], ["server", "--help"], ["client", "--help"], ["stdio", "--help"],
                 ["mcp", "--help"], ["status", "--help"], ["keygen", "--help"]):
        out = subprocess.run([limpet, *args], capture_output=True, text=True, timeout=10).stdout
        opts = section(out, "OPTIONS", ["CONFIGURATION KEYS (in FILE, or -o KEY=VALUE; shown "
                                        "with defaults)", "METRICS", "EXIT STATUS"])
        for line in opts.splitlines():
            flags.update(re.findall(r"(?:^ {4}|, |/ )(--[a-z][a-z-]*|-[a-zA-Z])\b", line))
    assert {"--listen", "--local", "--scope", "--json", "--output", "-R"} <= flags, flags
    return flags


@pytest.mark.budget(30)
def test_limpet1_describes_every_flag_of_every_help_page(limpet_bin):
    need_pages()
    text = render(PAGE1)
    options = section(text, "OPTIONS", ["EXIT STATUS"])
    missing = sorted(f for f in help_flags(limpet_bin)
                     if not re.search(r"(?m)^ {7}(?:.*, )?%s\b" % re.escape(f), options))
    assert not missing, "limpet(1) OPTIONS lacks %s" % missing
    synopsis = section(text, "SYNOPSIS", ["DESCRIPTION"])
    for cmd in ("server", "client", "stdio", "mcp", "status", "keygen psk", "keygen cert"):
        assert "limpet %s" % cmd in synopsis, cmd
    status = section(text, "EXIT STATUS", ["SIGNALS"])
    assert re.findall(r"(?m)^ {7}(\d)\s", status) == ["0", "1", "2", "3", "4"], status


def handled_signals():
    """The signals the program catches or ignores, read from src/app/main.c."""
    with open(os.path.join(H.ROOT, "src", "app", "main.c"), encoding="utf-8") as f:
        src = f.read()
    caught = set(re.findall(r"ev_signal_init\([^,]+,\s*\w+,\s*(SIG[A-Z0-9]+)\)", src))
    caught |= set(re.findall(r"\bsignal\((SIG[A-Z0-9]+),", src))
    assert {"SIGTERM", "SIGINT", "SIGHUP"} <= caught, caught
    return caught


@pytest.mark.budget(30)
def test_limpet1_signals_are_exactly_those_main_handles():
    need_pages()
    text = render(PAGE1)
    part = section(text, "SIGNALS", ["ENVIRONMENT"])
    documented = set()
    for tag in re.findall(r"(?m)^ {7}(SIG[A-Z0-9, ]+?)\s*$|^ {7}(SIG[A-Z0-9]+) ", part):
        for t in tag:
            documented.update(re.findall(r"SIG[A-Z0-9]+", t))
    assert documented == handled_signals(), "documented %s, handled %s" % (
        sorted(documented), sorted(handled_signals()))


# ---- the example configurations start a server ------------------------------------------------

def roff_blocks(path):
    """The .nf/.fi blocks of a page source, unescaped."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    blocks = re.findall(r"(?ms)^\.nf\n(.*?)^\.fi$", src)
    return [b.replace("\\-", "-").replace("\\e", "\\") for b in blocks]


@pytest.mark.budget(60)
@pytest.mark.parametrize("page", ["limpet.1", "limpet.yaml.5"])
def test_man_example_server_configs_start_a_server(page, tmp_path, procs, limpet_bin):
    need_pages()
    servers = [b for b in roff_blocks(os.path.join(MAN_DIR, page))
               if b.startswith("listen:") and "laptop:" in b and "ci-runner:" in b]
    assert len(servers) == 1, servers
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    for args in (["psk", "laptop", "-o", str(keys / "laptop.psk")],
                 ["cert", "server", "-o", str(keys / "server")]):
        r = subprocess.run([limpet_bin, "keygen", *args], capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, r.stderr
    conf = servers[0]
    for path in re.findall(r"(?m)(?:psk_file|cert|key): (\S+)$", conf):
        conf = conf.replace(path, str(keys / os.path.basename(path).replace("keys_", "")))
    conf = conf.replace("/run/limpet/server.sock", str(tmp_path / "server.sock"))
    (tmp_path / "server.yaml").write_text(conf)
    port = H.free_port()
    server = H.limpet_server(procs, port, "-c", str(tmp_path / "server.yaml"), insecure=False)
    assert server.alive(), server.stderr()
