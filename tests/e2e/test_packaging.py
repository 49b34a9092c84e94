"""Packaging: docker/ checked without a Docker engine, the systemd units with systemd-analyze,
and docker/compose.yaml's demo replayed on loopback (its commands, config and scripts).

What needs a tool this machine may lack (systemd-analyze, busybox, PyYAML) is skipped with the
reason printed; scripts/docker-check.sh itself needs only the build packages, apt and dpkg.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

import helpers as H

CHECK = os.path.join(H.ROOT, "scripts", "docker-check.sh")
DOCKERFILE = os.path.join(H.ROOT, "docker", "Dockerfile")
COMPOSE = os.path.join(H.ROOT, "docker", "compose.yaml")
UNITS = {
    "limpet-server.service": "limpet-server.service",
    "limpet-client@.service": "limpet-client@test.service",
}


def plain_bin():
    """A binary without sanitizers: ldd of an ASan build lists libasan, which no image needs."""
    if not H.ASAN and os.access(H.BIN, os.X_OK):
        return H.BIN
    b = os.path.join(H.ROOT, "build", "limpet")
    if os.access(b, os.X_OK):
        return b
    pytest.skip("no plain (non-sanitizer) limpet build to check the image's libraries against")


def run_check(env=None, timeout=60):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(["bash", CHECK], capture_output=True, text=True, env=e, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        H.missing_tool("PyYAML", "python3-yaml")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---- scripts/docker-check.sh ----------------------------------------------------------------

@pytest.mark.budget(240)
def test_docker_check_builds_the_build_stage_and_passes():
    if H.ASAN:
        pytest.skip("the image build does not depend on the sanitizer build (run by `make e2e`)")
    # It compiles the whole tree from a copy (about 40 s on an idle 2-core machine); a loaded
    # one needs more, and a timeout here would say nothing about the Dockerfile.
    rc, out = run_check(timeout=230)
    print(out)
    assert rc == 0, out
    assert "RUN (in /src) make BUILD=" in out
    assert "/usr/local/bin/limpet runs: limpet " in out
    assert "all checks passed" in out


@pytest.mark.budget(30)
def test_docker_check_reads_compose_with_and_without_pyyaml():
    outs = []
    for no_yaml in ("0", "1"):
        rc, out = run_check({"DOCKER_CHECK_BIN": plain_bin(), "DOCKER_CHECK_NO_PYYAML": no_yaml})
        assert rc == 0, out
        outs.append(re.search(r"compose\.yaml parsed with (.*?): (.*)", out).groups())
    assert outs[1][0].startswith("a minimal parser"), outs
    if outs[0][0] == "PyYAML":
        assert outs[0][1] == outs[1][1], outs  # same services, volumes, networks


@pytest.mark.budget(30)
def test_docker_check_names_every_broken_package_library_and_reference(tmp_path):
    d = tmp_path / "docker"
    d.mkdir()
    with open(DOCKERFILE, encoding="utf-8") as f:
        df = f.read()
    assert "libyaml-0-2 libjansson4" in df
    # The final stage forgets a library the binary links and asks for one Debian lacks; the
    # demo stage starts from another release.
    df = df.replace("libyaml-0-2 libjansson4", "libyaml-0-2 limpet-no-such-package")
    df = df.replace("FROM debian:bookworm-slim AS demo", "FROM debian:trixie-slim AS demo")
    # ...copies a script that is not there, and runs as root.
    df = df.replace("COPY docker/demo.sh", "COPY docker/demo-gone.sh")
    df = df.replace("\nUSER limpet\n", "\nUSER root\n")
    (d / "Dockerfile").write_text(df)
    shutil.copy(os.path.join(H.ROOT, "docker", "server.yaml"), d / "server.yaml")
    with open(COMPOSE, encoding="utf-8") as f:
        compose = f.read()
    compose = compose.replace("      - keys:/var/lib/limpet\n    network_mode: none",
                              "      - secrets:/var/lib/limpet\n    network_mode: none", 1)
    compose = compose.replace("      server:\n        condition: service_started",
                              "      srever:\n        condition: service_started", 1)
    compose = compose.replace("      target: demo\n    command: [\"target\"",
                              "      target: demo-tools\n    command: [\"target\"", 1)
    compose = compose.replace("      - ./server.yaml:", "      - ./missing.yaml:", 1)
    compose = compose.replace("    networks:\n      - lan\n", "    networks:\n      - dmz\n", 1)
    (d / "compose.yaml").write_text(compose)
    want = ["installs limpet-no-such-package, which bookworm does not have",
            "libjansson.so.4 comes from libjansson4, which the final stage does not install",
            "stage demo starts from debian:trixie-slim",
            "stage demo copies docker/demo-gone.sh, which is not in the build context",
            "the final stage runs as root",
            "keygen: volume secrets is not defined",
            "client: depends on srever, which is not a service",
            "target: build target demo-tools is no stage",
            "server: mounts ./missing.yaml, which does not exist",
            "target: network dmz is not defined"]
    for no_yaml in ("0", "1"):
        rc, out = run_check({"DOCKER_CHECK_BIN": plain_bin(), "DOCKER_CHECK_NO_PYYAML": no_yaml,
                             "DOCKER_CHECK_DOCKERFILE": str(d / "Dockerfile"),
                             "DOCKER_CHECK_COMPOSE": str(d / "compose.yaml")})
        assert rc == 1, out
        missing = [w for w in want if w not in out]
        assert not missing, "not reported: %s\n%s" % (missing, out)


# ---- systemd units --------------------------------------------------------------------------

def unit_copies(tmp_path, extra=""):
    """The units with ExecStart= pointing at this build (verify wants the binary to exist)."""
    for name in UNITS:
        with open(os.path.join(H.ROOT, "config", name), encoding="utf-8") as f:
            text = f.read()
        assert "ExecStart=/usr/local/bin/limpet " in text
        text = text.replace("/usr/local/bin/limpet", H.BIN)
        if extra:
            text = text.replace("[Service]\n", "[Service]\n" + extra + "\n", 1)
        (tmp_path / name).write_text(text)
    return [str(tmp_path / inst) for inst in UNITS.values()]


def man_tree(tmp_path):
    """A MANPATH holding the build's pages, which verify opens for the units' Documentation=."""
    built = os.path.join(os.path.dirname(os.path.abspath(H.BIN)), "man")
    for page in ("limpet.1", "limpet.yaml.5"):
        src = os.path.join(built, page)
        if not os.path.isfile(src):
            pytest.fail("%s is missing: `make` builds it" % src)
        d = tmp_path / "man" / ("man" + page.rsplit(".", 1)[1])
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, d / page)
    return str(tmp_path / "man")


def analyze(*args, manpath=None):
    if not shutil.which("systemd-analyze"):
        H.missing_tool("systemd-analyze", "systemd")
    env = dict(os.environ)
    if manpath:
        env["MANPATH"] = manpath + ":"  # the trailing colon keeps the system's pages too
    r = subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=env)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.budget(30)
def test_systemd_units_pass_systemd_analyze_verify(tmp_path, limpet_bin):
    rc, out = analyze("verify", *unit_copies(tmp_path), manpath=man_tree(tmp_path))
    print(out)
    # verify only warns about unknown keys and bad values: any line naming a unit is a finding
    ours = [ln for ln in out.splitlines() if "limpet" in ln]
    assert rc == 0 and not ours, out


@pytest.mark.budget(30)
def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path, limpet_bin):
    # The check above can fail: a misspelt key and a bad exit status are reported.
    rc, out = analyze("verify", *unit_copies(tmp_path, "RestartPreventExitStaus=2\n"
                                                        "SuccessExitStatus=two"))
    assert "RestartPreventExitStaus" in out and "two" in out, out


@pytest.mark.budget(30)
def test_systemd_units_are_hardened(tmp_path, limpet_bin):
    paths = unit_copies(tmp_path)
    rc, out = analyze("security", "--offline=true", *paths)
    if rc != 0 and "offline" in out:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    levels = re.findall(r"Overall exposure level for (\S+): ([\d.]+)", out)
    print(levels)
    assert len(levels) == 2, out
    for unit, level in levels:
        assert float(level) <= 2.0, "%s: exposure %s\n%s" % (unit, level, out)
    with open(os.path.join(H.ROOT, "config", "limpet-client@.service"), encoding="utf-8") as f:
        client = f.read()
    # exit 2 (refused) must stay down; 4 (gave up) is a failure, so on-failure restarts it
    assert "\nRestart=on-failure\n" in client and "\nRestartPreventExitStatus=2\n" in client


# ---- docker/compose.yaml's demo, on loopback ------------------------------------------------

def compose_command(doc, service):
    cmd = doc["services"][service]["command"]
    assert isinstance(cmd, list), cmd
    return [str(x) for x in cmd]


@pytest.mark.budget(60)
def test_compose_demo_transfers_survive_blackholes_on_loopback(tmp_path, procs, limpet_bin):
    """Runs the compose file's keygen, server and client commands, docker/server.yaml and
    docker/demo.sh (target and load) on loopback, with the `wan` network replaced by a relay
    that black-holes the link (as `docker network disconnect` does) every 2.5 s."""
    if not shutil.which("busybox"):
        H.missing_tool("busybox (docker/demo.sh serves and fetches with it)", "busybox")
    doc = load_yaml(COMPOSE)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    env = dict(os.environ, PATH=os.path.dirname(limpet_bin) + os.pathsep + os.environ["PATH"])
    keygen = compose_command(doc, "keygen")[0].replace("/var/lib/limpet", str(keys))
    for _ in range(2):  # the second `up` finds the key and must not fail
        r = subprocess.run(["sh", "-c", keygen], env=env, capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr
    psk = keys / "demo.psk"
    assert stat.S_IMODE(psk.stat().st_mode) == 0o600

    sport, tport, lport = H.free_port(), H.free_port(), H.free_port()
    with open(os.path.join(H.ROOT, "docker", "server.yaml"), encoding="utf-8") as f:
        conf = f.read()
    conf = conf.replace("/var/lib/limpet", str(keys)).replace("0.0.0.0:7070", "127.0.0.1:%d" % sport)
    conf = conf.replace('"target:8000"', '"127.0.0.1:%d"' % tport)
    (tmp_path / "server.yaml").write_text(conf)

    demo = os.path.join(H.ROOT, "docker", "demo.sh")
    denv = {"DEMO_DIR": str(tmp_path / "target"), "DEMO_MIB": "8"}
    target = procs.start("target", ["sh", demo, "target", str(tport)], env=denv)
    target.wait_log("target: serving", timeout=10, stream="stdout")
    H.wait_port(tport, timeout=10)

    server_cmd = compose_command(doc, "server")
    server_cmd[server_cmd.index("-c") + 1] = str(tmp_path / "server.yaml")
    procs.start("server", [limpet_bin] + server_cmd).wait_log("listening on", timeout=H.slack(10))
    relay = H.RelayProc(procs, sport, mode="blackhole", every=2500)

    client_cmd = compose_command(doc, "client")
    subst = {"server:7070": "127.0.0.1:%d" % relay.port,
             "*:8080:target:8000": "127.0.0.1:%d:127.0.0.1:%d" % (lport, tport)}
    client_cmd = [subst.get(a, a.replace("/var/lib/limpet", str(keys))) for a in client_cmd]
    client = procs.start("client", [limpet_bin] + client_cmd)
    client.wait_log("established", timeout=H.slack(10))

    lenv = {"DEMO_DIR": str(tmp_path / "load"), "DEMO_ROUNDS": "2", "DEMO_RATE_MIB": "2"}
    load = procs.start("load", ["sh", demo, "load", "http://127.0.0.1:%d" % lport], env=lenv)
    assert load.wait(H.slack(45)) == 0, load.stdout() + load.stderr()
    assert load.stdout().count(" ok in ") == 2, load.stdout()
    assert relay.stats()["cuts"] >= 2
    assert client.count("resumed") >= 1, client.stderr()
