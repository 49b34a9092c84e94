#!/usr/bin/env bash
# install-deps.sh — install from apt only the Debian packages limpet's build, tests, demo and
# bench need that are missing. Idempotent; never prompts (works with CI=true and no stdin).
# When everything is present it says so in one line and does not touch apt at all.
set -euo pipefail

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
    libev-dev libmbedtls-dev libyaml-dev libcmocka-dev libjansson-dev
    # tests (pytest end-to-end, network namespaces, process inspection)
    python3 python3-pytest socat iproute2 procps
    # bench: the relays and tunnels limpet is compared with
    stunnel4 openssl openssh-server openssh-client
)

is_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

main() {
    local p missing=() sudo=()

    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "install-deps: dpkg-query not found: this script supports Debian/Ubuntu (apt) only" >&2
        exit 1
    fi
    for p in "${PACKAGES[@]}"; do
        is_installed "$p" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "install-deps: all ${#PACKAGES[@]} packages present"
        exit 0
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

main "$@"
