#!/usr/bin/env bash
# lint.sh — checks, never rewrites: clang-format (the checked-in .clang-format) over the C
# sources, a grep for functions the house style bans, and the layer rules of STYLE.md (base <-
# core <- io <- app: each folder includes only the headers of its own layer and those below;
# src/core includes no I/O, TLS or clock header). Exit 1 when anything is found.
#   scripts/lint.sh            check everything
#   CLANG_FORMAT=clang-format-14 scripts/lint.sh
set -euo pipefail

cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
FORMAT_DIRS=(src include man tests/unit tests/fuzz tests/bench)
BANNED_DIRS=(src include man tests)
# Whole words, so snprintf and strtoul never match. "gets" is also an English word, so it
# counts only as a call.
BANNED='\b(strcpy|strcat|sprintf|strtok|atoi|alloca)\b|\bgets[[:space:]]*\('
status=0

c_files() {
    local d
    for d in "$@"; do
        [[ -d $d ]] && find "$d" -type f \( -name '*.c' -o -name '*.h' \) -print
    done | sort
}

check_format() {
    local f bad=0 files=()
    if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
        echo "lint: $CLANG_FORMAT not found (scripts/install-deps.sh installs clang-format)" >&2
        return 1
    fi
    mapfile -t files < <(c_files "${FORMAT_DIRS[@]}")
    for f in "${files[@]}"; do
        if ! "$CLANG_FORMAT" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
            echo "lint: format differs: $f"
            bad=$((bad + 1))
        fi
    done
    echo "lint: clang-format: ${#files[@]} files checked, $bad differ"
    [[ $bad -eq 0 ]] || echo "lint: see one with: $CLANG_FORMAT --style=file FILE | diff FILE -"
    [[ $bad -eq 0 ]]
}

check_banned() {
    local hits
    # A comment naming a banned function is a hit too: rephrase it, the grep stays simple.
    hits=$(c_files "${BANNED_DIRS[@]}" | xargs -r grep -nHE "$BANNED" || true)
    if [[ -n $hits ]]; then
        echo "lint: banned functions (use snprintf, memcpy with checked sizes, strtoul):"
        echo "$hits"
        return 1
    fi
    echo "lint: no banned functions"
}

# The layer of include/limpet/NAME.h is the folder of src/*/NAME.c (or NAME_*.c); the few
# headers with no such file are named here.
declare -A HEADER_LAYER=([base]=base [config]=base [config_load]=app [mcpio]=io [socksio]=io)
declare -A RANK=([base]=0 [core]=1 [io]=2 [app]=3)
# What a sans-I/O core never includes: an event loop, sockets, files, TLS, a clock.
CORE_BANNED_INCLUDES='<(ev\.h|sys/[a-z_]+\.h|netinet/|arpa/|netdb\.h|unistd\.h|fcntl\.h|poll\.h|time\.h|signal\.h|pthread\.h|mbedtls/|openssl/)'

header_layer() {
    local name=$1 layer f
    [[ -n ${HEADER_LAYER[$name]:-} ]] && { echo "${HEADER_LAYER[$name]}"; return; }
    for layer in base core io app; do
        for f in "src/$layer/$name.c" src/"$layer"/"$name"_*.c; do
            [[ -e $f ]] && { echo "$layer"; return; }
        done
    done
    echo unknown
}

check_layers() {
    local f layer h hl bad=0 n=0 hits
    declare -A layer_of=()
    for h in include/limpet/*.h; do
        h=${h##*/}
        layer_of[${h%.h}]=$(header_layer "${h%.h}")
        if [[ ${layer_of[${h%.h}]} == unknown ]]; then
            echo "lint: include/limpet/$h belongs to no layer (add it to HEADER_LAYER in $0)"
            bad=$((bad + 1))
        fi
    done
    for layer in base core io; do
        for f in $(c_files "src/$layer") include/limpet/*.h; do
            if [[ $f == include/* ]]; then
                h=${f##*/}
                [[ ${layer_of[${h%.h}]} == "$layer" ]] || continue
            fi
            n=$((n + 1))
            while read -r h; do
                hl=${layer_of[$h]:-unknown}
                if [[ $hl == unknown || ${RANK[$hl]} -gt ${RANK[$layer]} ]]; then
                    echo "lint: $f ($layer) includes limpet/$h.h ($hl): $layer may use only" \
                        "the layers below it (STYLE.md: base <- core <- io <- app)"
                    bad=$((bad + 1))
                fi
            done < <(sed -n 's|^#include "limpet/\([a-z_]*\)\.h".*|\1|p' "$f")
        done
    done
    hits=$( (c_files src/core; for h in include/limpet/*.h; do
        h2=${h##*/}; [[ ${layer_of[${h2%.h}]} == core ]] && echo "$h"; done) |
        xargs -r grep -nHE "^#include $CORE_BANNED_INCLUDES" || true)
    if [[ -n $hits ]]; then
        echo "lint: a sans-I/O core includes an I/O, TLS or clock header:"
        echo "$hits"
        bad=$((bad + 1))
    fi
    echo "lint: layers: $n files checked, $bad problems"
    [[ $bad -eq 0 ]]
}

# Every declared function that returns lp_err carries LP_MUST_USE (err.h), so an ignored error
# is a build failure: an error is handled or passed on, never dropped.
check_must_use() {
    local hits
    hits=$( (ls include/limpet/*.h; find src -name '*.h') | sort |
        xargs -r grep -nHE '^[[:space:]]*(extern[[:space:]]+)?lp_err[[:space:]]+\**[a-z_0-9]+\(' || true)
    if [[ -n $hits ]]; then
        echo "lint: lp_err declarations without LP_MUST_USE:"
        echo "$hits"
        return 1
    fi
    echo "lint: every declared lp_err function is LP_MUST_USE"
}

check_format || status=1
check_must_use || status=1
check_banned || status=1
check_layers || status=1
exit "$status"
