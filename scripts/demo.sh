#!/usr/bin/env bash
# demo.sh — `make demo`: a forward that survives its tunnel being cut every 2 seconds.
#
#   app (this script) -> limpet client -L -> fault relay (RST every 2 s) -> limpet server -> echo
#
# Sends DEMO_MIB (200) MiB of pseudo-random bytes through the forward while reading the echo
# back, then compares the SHA-256 of both. Everything runs on 127.0.0.1 and everything started
# here is stopped by PID on exit, Ctrl-C included. Knobs (environment):
#   LIMPET_BIN   the binary (build/limpet)
#   DEMO_MIB     MiB to send (200)
#   DEMO_RATE    MiB/s to send at most, so the transfer lives through several cuts (20; 0 = no cap)
#   DEMO_CUT_MS  the relay cuts the tunnel every this many ms (2000)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LIMPET=${LIMPET_BIN:-$ROOT/build/limpet}
PYTHON=${PYTHON:-/usr/bin/python3}
[[ -x $PYTHON ]] || PYTHON=python3
TOOLS=$ROOT/scripts/bench_tools.py
RELAY=$ROOT/scripts/faultrelay.py
MIB=${DEMO_MIB:-200}
RATE=${DEMO_RATE:-20}
CUT_MS=${DEMO_CUT_MS:-2000}

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/limpet-demo.XXXXXX")
PIDS=()

stop_all() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        # Up to 2 s for a clean exit (the client says GOODBYE), then SIGKILL.
        for _ in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT
trap 'exit 143' TERM

die() {
    echo "demo: $*" >&2
    show_logs
    exit 1
}

show_logs() {
    local f
    for f in "$LOGDIR"/*.log; do
        [[ -e $f ]] || continue
        echo "---- tail of $f" >&2
        tail -n 15 "$f" >&2
    done
}

# start NAME CMD... : runs CMD in the background with its output in $LOGDIR/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$LOGDIR/$name.log" 2>&1 &
    PIDS+=("$!")
}

last_pid() {
    echo "${PIDS[${#PIDS[@]} - 1]}"
}

# wait_log NAME PATTERN : until PATTERN shows in NAME's log (10 s), or its process ends.
wait_log() {
    local name=$1 pattern=$2 pid=$3
    for _ in $(seq 100); do
        grep -q -- "$pattern" "$LOGDIR/$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "$name exited before logging '$pattern'"
        sleep 0.1
    done
    die "$name did not log '$pattern' within 10 s"
}

[[ -x $LIMPET ]] || die "no binary at $LIMPET (run: make demo)"
[[ -f $RELAY ]] || die "no fault relay at $RELAY"

mapfile -t PORTS < <("$PYTHON" "$TOOLS" freeports 4)
SERVER_PORT=${PORTS[0]} RELAY_PORT=${PORTS[1]} CONTROL_PORT=${PORTS[2]} FORWARD_PORT=${PORTS[3]}

echo "limpet demo: $MIB MiB through a -L forward whose tunnel is cut (RST) every $CUT_MS ms"
echo "  logs in $LOGDIR"

start echo "$PYTHON" "$TOOLS" echo-server
ECHO_PID=$(last_pid)
wait_log echo "^port " "$ECHO_PID"
ECHO_PORT=$(awk '/^port /{print $2; exit}' "$LOGDIR/echo.log")

start server "$LIMPET" server --insecure -l "127.0.0.1:$SERVER_PORT"
wait_log server "listening on" "$(last_pid)"

start relay "$PYTHON" "$RELAY" --listen "127.0.0.1:$RELAY_PORT" \
    --target "127.0.0.1:$SERVER_PORT" --mode rst --every "$CUT_MS" \
    --control "127.0.0.1:$CONTROL_PORT"
wait_log relay "relay control on" "$(last_pid)"

start client "$LIMPET" client --insecure -s "127.0.0.1:$RELAY_PORT" \
    -L "$FORWARD_PORT:127.0.0.1:$ECHO_PORT"
CLIENT_PID=$(last_pid)
wait_log client "forward listening on" "$CLIENT_PID"
wait_log client "established" "$CLIENT_PID"

echo "  echo 127.0.0.1:$ECHO_PORT  server 127.0.0.1:$SERVER_PORT  relay 127.0.0.1:$RELAY_PORT" \
    " forward 127.0.0.1:$FORWARD_PORT"
# Output to the terminal, but run in the background and waited for: a signal then reaches the
# traps at once instead of after the transfer.
run_attached() {
    "$@" &
    PIDS+=("$!")
}
rc=0
run_attached "$PYTHON" "$TOOLS" demo-transfer --port "$FORWARD_PORT" --mib "$MIB" --rate "$RATE" \
    --control "127.0.0.1:$CONTROL_PORT" --timeout 120
wait "$(last_pid)" || rc=$?

resumes=$(grep -c "resumed from" "$LOGDIR/server.log" || true)
echo "server log: $resumes resumes of the session"
if [[ $rc -ne 0 ]]; then
    show_logs
    echo "demo: FAIL (logs kept in $LOGDIR)"
    exit 1
fi
echo "demo: logs in $LOGDIR"
