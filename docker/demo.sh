#!/bin/sh
# demo.sh — the two ends of docker/compose.yaml's transfer (the image's limpet-demo).
#
#   demo.sh target [PORT]   write DEMO_MIB MiB of random bytes to blob, its SHA-256 to
#                           blob.sha256, and serve both over HTTP on PORT (8000)
#   demo.sh load URL        fetch URL/blob.sha256, then URL/blob read at DEMO_RATE_MIB MiB/s,
#                           compare, print one line per transfer; forever, or DEMO_ROUNDS times
#
# The reader is throttled so a transfer lasts long enough (64 MiB at 4 MiB/s: 16 s) to cut the
# network under it by hand. Needs sh, coreutils and busybox (httpd, wget). No `wget -T`:
# Debian 12's busybox (1.35) crashes with it; its default read timeout is 900 s.
set -eu

DEMO_MIB=${DEMO_MIB:-64}
DEMO_RATE_MIB=${DEMO_RATE_MIB:-4}
DEMO_ROUNDS=${DEMO_ROUNDS:-0}
DEMO_DIR=${DEMO_DIR:-/tmp/limpet-demo}

target() {
    port=${1:-8000}
    mkdir -p "$DEMO_DIR/www"
    dd if=/dev/urandom of="$DEMO_DIR/www/blob" bs=1M count="$DEMO_MIB" status=none
    sha256sum "$DEMO_DIR/www/blob" | cut -c1-64 >"$DEMO_DIR/www/blob.sha256"
    echo "target: serving $DEMO_MIB MiB, sha256 $(cat "$DEMO_DIR/www/blob.sha256"), on port $port"
    exec busybox httpd -f -p "$port" -h "$DEMO_DIR/www"
}

# Copies stdin to stdout in 1 MiB pieces, DEMO_RATE_MIB pieces a second.
throttle() {
    chunk="$DEMO_DIR/chunk.$$"
    pause=$(awk "BEGIN { printf \"%.3f\", 1 / $DEMO_RATE_MIB }" 2>/dev/null || echo 0.25)
    while :; do
        dd bs=1M count=1 iflag=fullblock status=none of="$chunk"
        [ -s "$chunk" ] || break
        cat "$chunk"
        sleep "$pause"
    done
    rm -f "$chunk"
}

load() {
    url=${1:?usage: demo.sh load URL}
    mkdir -p "$DEMO_DIR"
    # The forward is up once the tunnel and the target are: wait for it (at most 2 minutes).
    deadline=$(($(date +%s) + 120))
    until timeout 10 busybox wget -q -O /dev/null "$url/blob.sha256" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "load: $url unreachable for 2 minutes" >&2; exit 1; }
        sleep 1
    done
    i=0
    fails=0
    while [ "$DEMO_ROUNDS" -eq 0 ] || [ "$i" -lt "$DEMO_ROUNDS" ]; do
        i=$((i + 1))
        start=$(date +%s)
        want=$(busybox wget -q -O - "$url/blob.sha256" || echo "fetch failed")
        got=$(busybox wget -q -O - "$url/blob" | throttle | sha256sum | cut -c1-64)
        secs=$(($(date +%s) - start))
        if [ "$got" = "$want" ]; then
            echo "load: transfer $i ok in ${secs}s, sha256 $got"
        else
            echo "load: transfer $i FAILED in ${secs}s: got $got, want $want"
            fails=$((fails + 1))
        fi
        [ "$DEMO_ROUNDS" -ne 0 ] || sleep 1
    done
    [ "$fails" -eq 0 ]
}

case "${1:-}" in
target) shift; target "$@" ;;
load) shift; load "$@" ;;
*) echo "usage: demo.sh target [PORT] | demo.sh load URL" >&2; exit 1 ;;
esac
