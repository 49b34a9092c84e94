#!/usr/bin/env bash
# install-deps.sh — install from apt only the Debian packages limpet's build, tests, demo and
# bench need that are missing, then the npm packages tests/mcp pins (`npm ci` there, when its
# node_modules is missing or older than its package-lock.json). Idempotent; never prompts
# (works with CI=true and no stdin). When everything is present it says so in one line and
# touches neither apt nor npm.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MCP_DIR="$ROOT/tests/mcp"

# The libFuzzer runtime ships in libclang-rt-<major>-dev and must match the clang in use:
# take the installed clang's major version, else Debian 12's (14).
clang_rt_package() {
    local major=14 v
    if command -v clang >/dev/null 2>&1; then
        v=$(clang -dumpversion 2>/dev/null || true)
        [[ $v =~ ^([0-9]+) ]] && major=${BASH_REMATCH[1]}
    fi
    echo "libclang-rt-${major}-dev"
}

PACKAGES=(
    # build
    build-essential make clang "$(clang_rt_package)" clang-format
    # readelf checks the binary's hardening (tests/e2e/test_hardening.py)
    binutils
    libev-dev libmbedtls-dev libyaml-dev libcmocka-dev libjansson-dev
    # OpenSSL's libcrypto: its EVP AEAD seals limpet's TLS records after mbedTLS's handshake
    libssl-dev
    # tests (pytest end-to-end, network namespaces, process inspection)
    python3 python3-pytest python3-yaml socat iproute2 procps curl busybox
    # -T in network namespaces (tests/netns/test_transparent.py); systemd-analyze checks the units
    nftables systemd
    # bench: the relays and tunnels limpet is compared with
    stunnel4 openssl openssh-server openssh-client
    # several servers: tests/e2e/test_haproxy.py runs HAProxy (never as a service) in front
    haproxy
    # man pages (checked with mandoc -Tlint and groff -ww), make install, the Debian package
    mandoc groff-base pkgconf git debhelper dpkg-dev lintian
    # scripts/container-check.sh: a bookworm base image made with debootstrap, run by podman
    # with the runc runtime; nsenter takes a container's interface down
    podman runc debootstrap debian-archive-keyring util-linux
)
# tests/mcp runs real MCP hosts and servers on Node.js. Asked for only when the commands are
# missing: a node from elsewhere (e.g. a vendor's nodejs that bundles npm) is used as it is.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# npm ci leaves node_modules/.package-lock.json behind; older than package-lock.json (or
# missing) means the pinned packages changed since, or were never installed.
npm_packages_stale() {
    [[ ! -f $MCP_DIR/node_modules/.package-lock.json ]] ||
        [[ $MCP_DIR/package-lock.json -nt $MCP_DIR/node_modules/.package-lock.json ]]
}

# The exact versions in tests/mcp/package-lock.json, from the npm registry (tests/mcp/.npmrc).
install_npm_packages() {
    [[ -f $MCP_DIR/package-lock.json ]] || return 0
    # A link to another checkout's node_modules (a worktree sharing one install): npm ci
    # would empty the directory it points to, under the other checkout's feet.
    if [[ -L $MCP_DIR/node_modules ]]; then
        npm_packages_stale && echo "install-deps: tests/mcp/node_modules links to" \
            "$(readlink "$MCP_DIR/node_modules"); left as it is (run npm ci there)"
        return 0
    fi
    npm_packages_stale || return 0
    echo "install-deps: npm ci in tests/mcp (the MCP SDK and reference servers it pins)"
    (cd "$MCP_DIR" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
    if [[ ! -d $MCP_DIR/node_modules/@modelcontextprotocol/sdk ]]; then
        echo "install-deps: npm ci in tests/mcp did not install @modelcontextprotocol/sdk" >&2
        exit 1
    fi
    echo "install-deps: installed tests/mcp's npm packages"
}

install_apt_packages() {
    local p missing=() sudo=()

    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "install-deps: dpkg-query not found: this script supports Debian/Ubuntu (apt) only" >&2
        exit 1
    fi
    for p in "${PACKAGES[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        if npm_packages_stale; then
            echo "install-deps: all ${#PACKAGES[@]} apt packages present"
        else
            echo "install-deps: all ${#PACKAGES[@]} packages present, tests/mcp's npm packages too"
        fi
        return 0
    fi

    echo "install-deps: installing: ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        elif command -v sudo >/dev/null 2>&1 && [[ -t 0 && ${CI:-} != true ]]; then
            sudo=(sudo)   # a person at a terminal: sudo may ask for their password
        else
            echo "install-deps: need root to install packages: run as root, or give this user" \
                "password-less sudo, or install by hand: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi

    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null

    for p in "${missing[@]}"; do
        if ! is_installed "$p"; then
            echo "install-deps: $p is still not installed after apt-get install" >&2
            exit 1
        fi
    done
    echo "install-deps: installed ${#missing[@]} packages"
}

main() {
    install_apt_packages
    install_npm_packages
}

main "$@"
