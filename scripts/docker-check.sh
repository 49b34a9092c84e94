#!/usr/bin/env bash
# docker-check.sh — checks docker/ on a Debian 12 machine without a Docker engine:
#   1. every package an `apt-get install` in docker/Dockerfile names exists for bookworm
#      (apt-cache show), every stage starts from debian:bookworm-slim or an earlier stage,
#      every COPY source exists, and the final stage has a USER that is not root;
#   2. the build stage runs here as a script: its COPY sources (the files git knows, tracked or
#      not ignored) go to a temp dir, its RUN lines (apt-get aside) run there with /build
#      mapped into the temp dir, and the binary the final stage copies runs `--version`;
#   3. the final stage's apt packages cover `ldd` of that binary (each library mapped to its
#      package with dpkg -S; essential and "required" packages and their dependencies are in
#      bookworm-slim already);
#   4. docker/compose.yaml parses as YAML and refers only to services, volumes, networks,
#      files and Dockerfile stages that exist.
#
#   scripts/docker-check.sh                  all four; exit 1 on any failure
#   DOCKER_CHECK_KEEP=1 scripts/docker-check.sh   keep the temp dir (path printed)
#   DOCKER_CHECK_BIN=build/limpet ...         skip step 2, check step 3 against this binary
#   DOCKER_CHECK_DOCKERFILE=F DOCKER_CHECK_COMPOSE=F ...   check other files (the tests do)
#   DOCKER_CHECK_NO_PYYAML=1 ...              read compose.yaml with the minimal parser
#
# Needs bash, git, python3 (PyYAML optional: without it a minimal parser reads compose.yaml),
# make and the build packages (scripts/install-deps.sh installs them), apt-cache and dpkg.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKERFILE=${DOCKER_CHECK_DOCKERFILE:-$ROOT/docker/Dockerfile}
COMPOSE=${DOCKER_CHECK_COMPOSE:-$ROOT/docker/compose.yaml}
PYTHON=${PYTHON:-python3}
fails=0

say() { echo "docker-check: $*"; }
bad() { echo "docker-check: FAIL: $*" >&2; fails=$((fails + 1)); }

# Reads the Dockerfile (continuation lines joined, comments dropped) and prints one record a
# line, tab-separated: "stage NAME BASE", "apt STAGE PKG", "copy STAGE FROM SRC... DEST" (FROM is
# "-" for the build context), "run STAGE CMD", "workdir STAGE DIR".
parse_dockerfile() {
    "$PYTHON" - "$1" <<'EOF'
import re, shlex, sys
lines, cur = [], ""
for raw in open(sys.argv[1], encoding="utf-8"):
    s = raw.rstrip("\n")
    if not cur and s.lstrip().startswith("#"):
        continue
    if s.rstrip().endswith("\\"):
        cur += s.rstrip()[:-1] + " "
        continue
    if cur and s.lstrip().startswith("#"):
        continue
    cur += s
    if cur.strip():
        lines.append(cur.strip())
    cur = ""
stage, n = None, 0
for line in lines:
    word, _, rest = line.partition(" ")
    word, rest = word.upper(), rest.strip()
    if word == "FROM":
        parts = rest.split()
        stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else "stage%d" % n
        n += 1
        print("stage\t%s\t%s" % (stage, parts[0]))
    elif word == "RUN":
        for cmd in re.split(r"&&|;", rest):
            toks = shlex.split(cmd)
            if "apt-get" in toks and "install" in toks:
                for t in toks[toks.index("install") + 1:]:
                    if not t.startswith("-"):
                        print("apt\t%s\t%s" % (stage, t))
        print("run\t%s\t%s" % (stage, rest))
    elif word == "COPY":
        toks = shlex.split(rest)
        src_from = "-"
        while toks and toks[0].startswith("--"):
            if toks[0].startswith("--from="):
                src_from = toks[0][len("--from="):]
            toks = toks[1:]
        print("copy\t%s\t%s\t%s" % (stage, src_from, "\t".join(toks)))
    elif word == "WORKDIR":
        print("workdir\t%s\t%s" % (stage, rest))
    elif word == "USER":
        print("user\t%s\t%s" % (stage, rest))
EOF
}

mapfile -t RECORDS < <(parse_dockerfile "$DOCKERFILE")
STAGES=()
FINAL=
BUILD_STAGE=
for r in "${RECORDS[@]}"; do
    IFS=$'\t' read -r kind stage base _ <<<"$r"
    [[ $kind == stage ]] || continue
    STAGES+=("$stage")
    FINAL=$stage
done
# The build stage is the one the final stage copies from.
for r in "${RECORDS[@]}"; do
    IFS=$'\t' read -r kind stage from _ <<<"$r"
    if [[ $kind == copy && $stage == "$FINAL" && $from != - ]]; then
        BUILD_STAGE=$from
    fi
done
say "stages: ${STAGES[*]} (build: ${BUILD_STAGE:-none}, final: $FINAL)"
[[ -n $BUILD_STAGE ]] || bad "the final stage copies nothing from a build stage"

records() { # KIND [STAGE]: the matching records, without their first field
    local r
    for r in "${RECORDS[@]}"; do
        [[ $r == "$1"$'\t'* ]] || continue
        [[ -z ${2:-} || $r == "$1"$'\t'"$2"$'\t'* ]] || continue
        printf '%s\n' "${r#*$'\t'}"
    done
}

# ---- 1. base images and apt packages --------------------------------------------------------
check_packages() {
    local codename stage base pkg from rest s user known=()
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    while IFS=$'\t' read -r stage base; do
        if [[ $base != debian:bookworm-slim && " ${known[*]} " != *" $base "* ]]; then
            bad "stage $stage starts from $base, not debian:bookworm-slim or an earlier stage"
        fi
        known+=("$stage")
    done < <(records stage)
    # Every COPY from the build context names something that exists; the image runs as a user.
    while IFS=$'\t' read -r stage from rest; do
        [[ $from == - ]] || continue
        rest=${rest%$'\t'*}
        for s in ${rest//$'\t'/ }; do
            [[ -e $ROOT/$s ]] || bad "stage $stage copies $s, which is not in the build context"
        done
    done < <(records copy)
    user=$(records user "$FINAL" | tail -n 1 | cut -f2)
    if [[ -z $user || $user == root || $user == 0 || $user == 0:* ]]; then
        bad "the final stage runs as root (no USER, or USER ${user:-unset})"
    fi
    if [[ $codename != bookworm ]]; then
        say "1. skipped: this machine runs '${codename:-unknown}', not bookworm, so its apt" \
            "cannot say what Debian 12 has"
        return 0
    fi
    if ! apt-cache show --no-all-versions dpkg >/dev/null 2>&1; then
        bad "apt-cache knows no packages (run apt-get update)"
        return 0
    fi
    # One apt-cache call for all (each costs most of a second): it prints the packages it
    # knows, and fails when any is unknown, so its output says which exist.
    local -a pkgs
    local found n=0
    mapfile -t pkgs < <(records apt | cut -f2 | sort -u)
    found=$(apt-cache show --no-all-versions "${pkgs[@]}" 2>/dev/null | sed -n 's/^Package: //p' || true)
    found=" $(tr '\n' ' ' <<<"$found") "
    while IFS=$'\t' read -r stage pkg; do
        n=$((n + 1))
        if [[ $found != *" $pkg "* ]]; then
            bad "stage $stage installs $pkg, which bookworm does not have"
        fi
    done < <(records apt)
    say "1. $n apt packages checked against bookworm"
}

# ---- 2. the build stage as a script ---------------------------------------------------------
TMP=
BIN=
cleanup() {
    if [[ ${DOCKER_CHECK_KEEP:-0} == 1 && -n $TMP ]]; then
        say "kept $TMP"
    elif [[ -n $TMP ]]; then
        rm -rf -- "$TMP"
    fi
}
trap cleanup EXIT

# /build in a Dockerfile line, as a whole path component, is $TMP/build here.
map_build() { sed -E "s#(^|[^[:alnum:]_/.])/build(/|[^[:alnum:]_]|\$)#\1$TMP/build\2#g"; }

copy_sources() { # WORKDIR: copies each COPY of the build stage into $TMP/ctx/WORKDIR
    local workdir=$1 from rest srcs dest s f n=0
    local -a files parts
    mapfile -t files < <(cd "$ROOT" && git ls-files --cached --others --exclude-standard)
    while IFS=$'\t' read -r from rest; do
        IFS=$'\t' read -r -a parts <<<"$rest"
        dest=${parts[-1]}
        srcs=("${parts[@]:0:${#parts[@]}-1}")
        [[ $dest == /* ]] || dest=$workdir/$dest
        for s in "${srcs[@]}"; do
            s=${s%/}
            if [[ ! -e $ROOT/$s ]]; then
                bad "COPY $s: no such file or directory in the build context"
                continue
            fi
            if [[ -f $ROOT/$s ]]; then
                f=$dest
                if [[ $dest == */ ]]; then
                    f=$dest$(basename "$s")
                fi
                install -D -m "$(stat -c %a "$ROOT/$s")" "$ROOT/$s" "$TMP/ctx$f"
                n=$((n + 1))
                continue
            fi
            for f in "${files[@]}"; do
                [[ $f == "$s"/* && -f $ROOT/$f ]] || continue
                install -D -m "$(stat -c %a "$ROOT/$f")" "$ROOT/$f" "$TMP/ctx$dest/${f#"$s"/}"
                n=$((n + 1))
            done
        done
    done < <(records copy "$BUILD_STAGE" | cut -f2- | grep $'^-\t' || true)
    say "2. copied $n files as the build stage's COPY lines do"
}

run_build_stage() {
    local workdir=/ cmd from rest src dest
    [[ -n $BUILD_STAGE ]] || return 0
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/docker-check.XXXXXX")
    workdir=$(records workdir "$BUILD_STAGE" | tail -n 1 | cut -f2)
    copy_sources "${workdir:-/}"
    mkdir -p "$TMP/ctx${workdir:-/}"
    while IFS=$'\t' read -r _ cmd; do
        [[ $cmd == *apt-get* ]] && continue
        cmd=$(map_build <<<"$cmd")
        say "2. RUN (in ${workdir:-/}) $cmd"
        if ! (cd "$TMP/ctx${workdir:-/}" && sh -c "$cmd") >"$TMP/build.log" 2>&1; then
            tail -n 30 "$TMP/build.log" >&2
            bad "the build stage's RUN failed: $cmd"
            return 0
        fi
    done < <(records run "$BUILD_STAGE")
    # What the final stage copies from the build stage must exist and run.
    while IFS=$'\t' read -r from rest; do
        [[ $from == "$BUILD_STAGE" ]] || continue
        src=${rest%%$'\t'*}
        dest=${rest##*$'\t'}
        src=$(map_build <<<"$src")
        if [[ ! -x $src ]]; then
            bad "the final stage copies $src from the build stage, which did not make it"
            continue
        fi
        if [[ $dest == /usr/local/bin/limpet ]]; then
            BIN=$src
            if out=$("$BIN" --version 2>&1); then
                say "2. $dest runs: $out"
            else
                bad "$dest --version failed: $out"
            fi
        fi
    done < <(records copy "$FINAL" | cut -f2-)
    [[ -n $BIN ]] || bad "the final stage does not copy the binary to /usr/local/bin/limpet"
}

# ---- 3. the final stage's libraries ---------------------------------------------------------
# The Debian package of each library path, from one dpkg -S (each call costs ~0.2 s). ldd names
# /lib/... while bookworm's packages may ship /usr/lib/... (merged /usr), so both are asked.
declare -A PKG_OF=()
lookup_packages() { # PATH...
    local p line pkg path
    local -a cands=()
    for p in "$@"; do
        cands+=("$p" "/usr$p" "$(readlink -f "$p")")
    done
    while IFS= read -r line; do
        pkg=${line%%: /*}
        path=/${line#*: /}
        pkg=${pkg%%,*}
        PKG_OF[$path]=${pkg%%:*}
    done < <(dpkg -S "${cands[@]}" 2>/dev/null || true)
}

package_of() { # LIBPATH: its package (without :arch), or nothing
    local p=$1 cand out
    for cand in "$p" "/usr$p" "$(readlink -f "$p")"; do
        if [[ -n ${PKG_OF[$cand]:-} ]]; then
            echo "${PKG_OF[$cand]}"
            return 0
        fi
    done
    out=$(dpkg -S "*/$(basename "$p")" 2>/dev/null || true)
    out=${out%%$'\n'*}
    if [[ -n $out ]]; then
        echo "${out%%:*}"
    fi
    return 0
}

# debian:bookworm-slim holds the essential and "required" packages and what they depend on
# (libc6 is "optional" but coreutils pre-depends on it); one level of dependencies suffices.
BASE_PKGS=
in_base_image() {
    if [[ -z $BASE_PKGS ]]; then
        local -a core
        mapfile -t core < <(dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' |
            awk '$2 == "yes" || $3 == "required" { print $1 }')
        BASE_PKGS=" ${core[*]} $(dpkg-query -W -f='${Pre-Depends}, ${Depends}\n' "${core[@]}" |
            sed -E 's/[,|]/\n/g' | sed -E 's/^ *([^ :]+).*/\1/' | sort -u | tr '\n' ' ') "
    fi
    [[ $BASE_PKGS == *" $1 "* ]]
}

check_runtime_libs() {
    local line lib path pkg listed covered=0
    local -a lines paths=()
    [[ -n $BIN ]] || { say "3. skipped: no binary was built"; return 0; }
    listed=" $(records apt "$FINAL" | cut -f2 | tr '\n' ' ') "
    mapfile -t lines < <(ldd "$BIN")
    for line in "${lines[@]}"; do
        if [[ $line == *" => /"* ]]; then
            path=${line#* => }
            paths+=("${path%% (*}")
        fi
    done
    lookup_packages "${paths[@]}"
    for line in "${lines[@]}"; do
        line=${line#"${line%%[![:space:]]*}"}
        if [[ $line == *"not found"* ]]; then
            bad "ldd: $line"
            continue
        fi
        [[ $line == *" => /"* ]] || continue
        lib=${line%% *}
        path=${line#* => }
        path=${path%% (*}
        pkg=$(package_of "$path")
        if [[ -z $pkg ]]; then
            bad "$lib ($path) belongs to no Debian package"
            continue
        fi
        if [[ $listed == *" $pkg "* ]]; then
            covered=$((covered + 1))
        elif in_base_image "$pkg"; then
            say "3. $lib: $pkg (in debian:bookworm-slim already)"
        else
            bad "$lib comes from $pkg, which the final stage does not install"
        fi
    done
    say "3. ldd: $covered libraries from the final stage's packages"
}

# ---- 4. compose.yaml ------------------------------------------------------------------------
check_compose() {
    local stages
    stages=$(records stage | cut -f1 | tr '\n' ' ')
    if ! "$PYTHON" - "$COMPOSE" "$stages" <<'EOF'; then
import os, re, sys

path, stages = sys.argv[1], sys.argv[2].split()
text = open(path, encoding="utf-8").read()

def scalar(s):
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return None if s in ("", "~", "null") else s

def flow_list(s):
    return [scalar(x) for x in re.findall(r'"[^"]*"|\'[^\']*\'|[^,\s\[\]][^,\[\]]*', s[1:-1])]

def mini_yaml(src):
    """Block mappings and sequences, flow lists of scalars, comments: compose.yaml's subset."""
    rows = []
    lines = src.split("\n")
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError("line %d: tab in indentation" % i)
        s = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not s.strip():
            continue
        if s.strip().startswith("[") or (":" in s and s.split(":", 1)[1].strip().startswith("[")):
            while s.count("[") > s.count("]") and i < len(lines):
                s += " " + re.sub(r"(^|\s)#.*$", "", lines[i]).strip()
                i += 1
        rows.append((len(s) - len(s.lstrip()), s.strip(), i))

    def block(k, indent):
        if k < len(rows) and rows[k][1].startswith("- "):
            out = []
            while k < len(rows) and rows[k][0] == indent and rows[k][1].startswith("- "):
                out.append(scalar(rows[k][1][2:]))
                k += 1
            return out, k
        out = {}
        while k < len(rows) and rows[k][0] == indent:
            ind, s, ln = rows[k]
            m = re.match(r'^("[^"]*"|[^:]+):(\s+(.*))?$', s)
            if not m:
                raise ValueError("line %d: not 'key: value': %s" % (ln, s))
            key, val = scalar(m.group(1)), (m.group(3) or "").strip()
            k += 1
            if val.startswith("["):
                out[key] = flow_list(val)
            elif val:
                out[key] = scalar(val)
            elif k < len(rows) and (rows[k][0] > indent or
                                    (rows[k][0] == indent and rows[k][1].startswith("- "))):
                out[key], k = block(k, rows[k][0])
            else:
                out[key] = None
        return out, k

    doc, k = block(0, 0)
    if k != len(rows):
        raise ValueError("line %d: unexpected indentation" % rows[k][2])
    return doc

try:
    if os.environ.get("DOCKER_CHECK_NO_PYYAML") == "1":
        raise ImportError("DOCKER_CHECK_NO_PYYAML=1")
    import yaml
    doc = yaml.safe_load(text)
    how = "PyYAML"
except ImportError:
    doc = mini_yaml(text)
    how = "a minimal parser (PyYAML is not installed)"

errs = []
base = os.path.dirname(os.path.abspath(path))
services = doc.get("services") or {}
volumes = doc.get("volumes") or {}
networks = doc.get("networks") or {}
if not services:
    errs.append("no services")
for name, svc in services.items():
    svc = svc or {}
    build = svc.get("build")
    if build is None and not svc.get("image"):
        errs.append("%s: neither build nor image" % name)
    if isinstance(build, dict):
        ctx = os.path.join(base, build.get("context", "."))
        df = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            errs.append("%s: no Dockerfile at %s" % (name, df))
        if build.get("target") and build["target"] not in stages:
            errs.append("%s: build target %s is no stage of the Dockerfile" % (name, build["target"]))
    deps = svc.get("depends_on") or []
    for d in (deps if isinstance(deps, list) else deps.keys()):
        if d not in services:
            errs.append("%s: depends on %s, which is not a service" % (name, d))
    for v in svc.get("volumes") or []:
        src = str(v).split(":", 1)[0]
        if src.startswith((".", "/", "~")):
            if not os.path.exists(os.path.join(base, src)):
                errs.append("%s: mounts %s, which does not exist" % (name, src))
        elif src not in volumes:
            errs.append("%s: volume %s is not defined under volumes:" % (name, src))
    nets = svc.get("networks") or []
    if nets and svc.get("network_mode"):
        errs.append("%s: both networks and network_mode" % name)
    for n in (nets if isinstance(nets, list) else nets.keys()):
        if n not in networks:
            errs.append("%s: network %s is not defined under networks:" % (name, n))
for e in errs:
    print("docker-check: FAIL: compose.yaml: " + e, file=sys.stderr)
print("docker-check: 4. compose.yaml parsed with %s: %d services, %d volumes, %d networks%s"
      % (how, len(services), len(volumes), len(networks), "" if not errs else ", %d errors" % len(errs)))
sys.exit(1 if errs else 0)
EOF
        bad "docker/compose.yaml"
    fi
}

check_packages
if [[ -n ${DOCKER_CHECK_BIN:-} ]]; then
    BIN=$DOCKER_CHECK_BIN
    say "2. skipped (DOCKER_CHECK_BIN=$BIN)"
else
    run_build_stage
fi
check_runtime_libs
check_compose
if [[ $fails -ne 0 ]]; then
    say "$fails failed"
    exit 1
fi
say "all checks passed"
