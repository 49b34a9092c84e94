#!/usr/bin/env bash
# container-check.sh — the container image, built and run. Builds docker/Dockerfile with podman
# on a Debian 12 base made here from Debian packages, runs a limpet server and a limpet client
# in two containers on a TEST-NET network, and carries a transfer byte-exact through a cut of
# the client container's link (its interface taken down for longer than session.dead_after,
# then up again).
#
#   scripts/container-check.sh                          build (cached), run, clean up
#   CONTAINER_CHECK_CLEAN=1 scripts/container-check.sh  the same, then remove the images and
#                                                       the cached base tarball too
#
# What it needs, as a new user of this machine found out:
# - a base image with no registry: `debootstrap --variant=minbase bookworm` from the Debian
#   archive apt uses here (/etc/apt/sources.list.d/), imported with `podman import` and tagged
#   debian:bookworm-slim, which is all docker/Dockerfile asks for. The rootfs tarball is kept in
#   build/container/, so a rerun imports it in seconds instead of bootstrapping again;
# - the runc runtime (crun refuses a hybrid cgroup layout) and explicit limits (--ulimit), as
#   the defaults cannot be set here;
# - a network of its own on TEST-NET-1 (192.0.2.0/24), or TEST-NET-2 (198.51.100.0/24) when
#   this host already routes the first (a host whose uplink is on 192.0.2.0/24 would lose its
#   gateway to the bridge). Internal: nothing on it reaches outside. The image build itself
#   uses the host's network (apt runs inside it), so podman's default bridge and its private
#   range are never used.
#
# Cleans up what it made: containers, network, volume, temporary files; the images stay as the
# build cache (rebuilding them downloads the toolchain again) unless CONTAINER_CHECK_CLEAN=1.
# Prints one line "container-check: skipped: REASON" and exits 0 where this machine cannot run
# it; under CI=true a missing tool is a failure instead (scripts/install-deps.sh installs
# them), and only a missing privilege or kernel capability skips. Exit 1 when a check fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/build/container
BASE_TAR=$CACHE/bookworm-minbase.tar
NAME=limpet-check # every container, network, volume and image this script makes
BASE_IMAGE=localhost/$NAME-base:bookworm
IMAGE=localhost/$NAME
NET=$NAME-net
VOL=$NAME-keys
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
SUBNETS=(192.0.2 198.51.100) # /24s: TEST-NET-1, TEST-NET-2
DEMO_MIB=32                  # at 4 MiB/s through the throttled reader: 8 s of transfer
CUT_AFTER=2                  # seconds into the transfer
CUT_FOR=5                    # seconds down; more than the client's session.dead_after (3s)
TMP=
T0=$SECONDS

say() { echo "container-check: $*"; }
fail() {
    say "FAIL: $*" >&2
    exit 1
}
skip() {
    say "skipped: $*"
    exit 0
}
phase() { say "$1 ($((SECONDS - T0))s)"; }

need_tool() { # COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ ${CI:-} == true ]]; then
        fail "$1 is not installed (package $2; scripts/install-deps.sh installs it)"
    fi
    skip "$1 is not installed (package $2; scripts/install-deps.sh installs it)"
}

# ---- cleanup --------------------------------------------------------------------------------

containers=(load target client server keygen) # dependants first: load and target share netns
cleanup_run() {
    local c
    for c in "${containers[@]}"; do
        "${PODMAN[@]}" rm -f -t 1 "$NAME-$c" >/dev/null 2>&1 || true
    done
    "${PODMAN[@]}" network rm "$NET" >/dev/null 2>&1 || true
    "${PODMAN[@]}" volume rm "$VOL" >/dev/null 2>&1 || true
    [[ -z $TMP ]] || rm -rf -- "$TMP"
}

cleanup_images() {
    "${PODMAN[@]}" rmi -f "$IMAGE:runtime" "$IMAGE:demo" "$IMAGE:build" >/dev/null 2>&1 || true
    prune_ours
    if [[ $("${PODMAN[@]}" image inspect -f '{{.Id}}' debian:bookworm-slim 2>/dev/null) == \
        "$("${PODMAN[@]}" image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null)" ]]; then
        "${PODMAN[@]}" rmi debian:bookworm-slim >/dev/null 2>&1 || true
    fi
    "${PODMAN[@]}" rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
    rm -f -- "$BASE_TAR"
}

# Untagged images left by earlier builds (a source change makes new layers): only those built
# on our base, which carries the label, so no one else's image is touched.
prune_ours() {
    "${PODMAN[@]}" image prune -f --filter label=org.limpet.check=base >/dev/null 2>&1 || true
}

cleanup() {
    cleanup_run
    if [[ ${CONTAINER_CHECK_CLEAN:-0} == 1 ]]; then
        cleanup_images
        say "removed the images and $BASE_TAR"
    fi
}

# ---- what this machine has --------------------------------------------------------------------

preflight() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (rootful podman, debootstrap)"
    need_tool podman podman
    need_tool runc runc
    need_tool debootstrap debootstrap
    need_tool nsenter util-linux
    need_tool ip iproute2
    need_tool unshare util-linux
    unshare --net true 2>/dev/null || skip "this kernel or sandbox allows no network namespace"
    local err
    if ! err=$("${PODMAN[@]}" info 2>&1 >/dev/null); then
        skip "podman cannot run here: ${err%%$'\n'*}"
    fi
}

# The first TEST-NET /24 no route or address of this host overlaps.
pick_subnet() {
    local net routes
    for net in "${SUBNETS[@]}"; do
        routes=$(ip -4 route show root "$net.0/24"; ip -4 route show match "$net.0/24" |
            grep -v '^default' || true)
        if [[ -z $routes ]] && ! ip -4 -o addr show | grep -q " inet $net\."; then
            echo "$net"
            return 0
        fi
    done
    return 1
}

# The Debian archive apt uses here: the first deb source whose suite is a release (no
# "-updates", "-security"), from deb822 .sources or one-line .list files.
debian_mirror() {
    local f found
    found=$(
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            awk 'BEGIN { RS = ""; FS = "\n" }
                 {
                     types = ""; uris = ""; suites = ""
                     for (i = 1; i <= NF; i++) {
                         if ($i ~ /^Types:/) types = substr($i, 7)
                         if ($i ~ /^URIs:/) uris = substr($i, 6)
                         if ($i ~ /^Suites:/) suites = substr($i, 8)
                     }
                     if (types !~ /(^| )deb( |$)/) next
                     n = split(suites, s, " ")
                     for (j = 1; j <= n; j++)
                         if (s[j] !~ /[-\/]/) { split(uris, u, " "); print u[1]; next }
                 }' "$f"
        done
        cat /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null |
            awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                               if ($(i + 1) !~ /[-\/]/) print $i }'
    )
    found=${found%%$'\n'*}
    [[ -n $found ]] && echo "$found"
}

# ---- images -----------------------------------------------------------------------------------

ensure_base() {
    local mirror rootfs id_tag id_base
    if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
        if [[ ! -s $BASE_TAR ]]; then
            mirror=$(debian_mirror) || fail "no Debian archive (deb, a release suite) in /etc/apt/sources.list.d/"
            mkdir -p "$CACHE"
            rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
            phase "debootstrap --variant=minbase bookworm from $mirror"
            if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1; then
                tail -n 20 "$CACHE/debootstrap.log" >&2
                rm -rf -- "$rootfs"
                fail "debootstrap failed (log: $CACHE/debootstrap.log)"
            fi
            tar -C "$rootfs" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
            rm -rf -- "$rootfs"
        fi
        phase "podman import $BASE_TAR"
        "${PODMAN[@]}" import -q --change "LABEL org.limpet.check=base" "$BASE_TAR" "$BASE_IMAGE" \
            >/dev/null
    fi
    id_base=$("${PODMAN[@]}" image inspect -f '{{.Id}}' "$BASE_IMAGE")
    if id_tag=$("${PODMAN[@]}" image inspect -f '{{.Id}}' debian:bookworm-slim 2>/dev/null); then
        [[ $id_tag == "$id_base" ]] || say "using the debian:bookworm-slim already here"
    else
        "${PODMAN[@]}" tag "$BASE_IMAGE" debian:bookworm-slim
    fi
}

build_image() { # TARGET
    local log=$CACHE/build-$1.log
    phase "podman build --target $1"
    if ! "${PODMAN[@]}" build --pull=never --network host "${LIMITS[@]}" -f docker/Dockerfile \
        --target "$1" -t "$IMAGE:$1" "$ROOT" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "podman build --target $1 failed (log: $log)"
    fi
}

# ---- the run ----------------------------------------------------------------------------------

run() { # NAME ARGS...: a detached container of ours
    local n=$1
    shift
    "${PODMAN[@]}" run -d "${LIMITS[@]}" --name "$NAME-$n" "$@" >/dev/null
}

wait_log() { # CONTAINER TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        "${PODMAN[@]}" logs "$NAME-$1" 2>&1 | grep -qF "$2" && return 0
        sleep 0.1
    done
    "${PODMAN[@]}" logs "$NAME-$1" 2>&1 | tail -n 20 >&2
    fail "$1 did not log \"$2\" within $3 s"
}

running() { [[ $("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$NAME-$1" 2>/dev/null) == true ]]; }

start_tunnel() { # SUBNET
    local net=$1 out
    "${PODMAN[@]}" network create --internal --subnet "$net.0/24" "$NET" >/dev/null
    "${PODMAN[@]}" volume create "$VOL" >/dev/null
    # A real pre-shared key, made by the image's own keygen into the volume both sides mount.
    out=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" --name "$NAME-keygen" --network none \
        -v "$VOL:/var/lib/limpet" "$IMAGE:runtime" keygen psk demo -o /var/lib/limpet/demo.psk)
    [[ $out == *"mode 0600"* ]] || fail "keygen: $out"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/container-check.XXXXXX")
    cat >"$TMP/server.yaml" <<EOF
listen: "0.0.0.0:7070"
auth:
  clients:
    demo:
      psk_file: /var/lib/limpet/demo.psk
      allow:
        forward: ["127.0.0.1:8000"]
session:
  heartbeat: 1s
  dead_after: 3s
EOF
    chmod 0644 "$TMP/server.yaml"
    run server --network "$NET" --ip "$net.10" -v "$VOL:/var/lib/limpet" \
        -v "$TMP/server.yaml:/etc/limpet/server.yaml:ro" "$IMAGE:runtime" \
        server -c /etc/limpet/server.yaml
    wait_log server "listening on 0.0.0.0:7070" 20
    # The target serves from inside the server's network namespace: only the server reaches it.
    run target --network "container:$NAME-server" -e DEMO_MIB="$DEMO_MIB" "$IMAGE:demo" \
        target 8000
    wait_log target "target: serving" 30
    run client --network "$NET" --ip "$net.20" -v "$VOL:/var/lib/limpet" "$IMAGE:runtime" \
        client -s "$net.10:7070" -o identity=demo -o psk_file=/var/lib/limpet/demo.psk \
        -o session.heartbeat=1s -o session.dead_after=3s -o reconnect.max_delay=1s \
        -L 127.0.0.1:8080:127.0.0.1:8000
    wait_log client "established with $net.10:7070" 20
}

# The load runs in the client's network namespace, so the cut of the client's eth0 cuts the
# tunnel and not the load's own connection to the forward.
transfer_through_a_cut() {
    local pid code
    run load --network "container:$NAME-client" -e DEMO_ROUNDS=1 -e DEMO_RATE_MIB=4 \
        "$IMAGE:demo" load http://127.0.0.1:8080
    sleep "$CUT_AFTER"
    running load || fail "the transfer ended before the cut: $("${PODMAN[@]}" logs "$NAME-load" 2>&1)"
    pid=$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' "$NAME-client")
    phase "cut: the client container's eth0 down for $CUT_FOR s"
    nsenter -t "$pid" -n ip link set eth0 down
    sleep "$CUT_FOR"
    running load || fail "the transfer ended while the link was down"
    nsenter -t "$pid" -n ip link set eth0 up
    phase "eth0 up"
    code=$(timeout 120 "${PODMAN[@]}" wait "$NAME-load" || echo timeout)
    "${PODMAN[@]}" logs "$NAME-load" 2>&1 | sed 's/^/  /'
    [[ $code == 0 ]] || fail "the load exited with $code"
    "${PODMAN[@]}" logs "$NAME-load" 2>&1 | grep -q "transfer 1 ok" || fail "no byte-exact transfer"
    "${PODMAN[@]}" logs "$NAME-client" 2>&1 | grep -E "link down|resumed" | sed 's/^/  client: /'
    "${PODMAN[@]}" logs "$NAME-client" 2>&1 | grep -q "resumed (reconnect 1," ||
        fail "the client never resumed its session: the cut was not carried through"
}

main() {
    local net version
    preflight
    net=$(pick_subnet) || skip "this host routes both TEST-NET-1 and TEST-NET-2"
    trap cleanup EXIT
    cleanup_run # leftovers of an interrupted run
    cd "$ROOT"
    mkdir -p "$CACHE" # the build logs live here even when the base image needs no bootstrap
    ensure_base
    build_image build
    build_image runtime
    build_image demo
    prune_ours
    version=$("${PODMAN[@]}" run --rm "${LIMITS[@]}" --network none "$IMAGE:runtime" --version)
    [[ $version == "limpet "* ]] || fail "the image's --version said: $version"
    phase "image built: $version"
    start_tunnel "$net"
    phase "server and client up on $net.0/24"
    transfer_through_a_cut
    phase "passed: $DEMO_MIB MiB byte-exact through a cut of the client's link"
}

main "$@"
