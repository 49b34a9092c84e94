#!/usr/bin/env bash
# lint.sh — checks, never rewrites: clang-format (the checked-in .clang-format) over the C
# sources, and a grep for functions the house style bans. Exit 1 when anything is found.
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

check_format || status=1
check_banned || status=1
exit "$status"
