#!/usr/bin/env bash
# bench.sh — `make bench`: limpet --insecure against the relays it replaces, in one run on
# loopback, every path carrying the same load to the same targets:
#
#   direct          client -> target
#   socat           client -> socat -> socat -> target        (default 8 KiB buffer)
#   socat -b65536   the same with 64 KiB buffers
#   limpet          client -> limpet client (-L) -> limpet server -> target
#   stunnel         client -> stunnel (client) -> TLS -> stunnel (server) -> target
#   ssh -L          client -> ssh -> sshd -> target            (temporary sshd, temporary keys)
#
# Metrics: throughput with 1 and 8 streams, 1-byte ping-pong p50/p99, connections per second,
# limpet's RSS idle and with 1,000 idle forwarded connections, and the time from a tunnel cut
# (scripts/faultrelay.py) to the first byte delivered again. Load comes from tests/bench/lpbench.c
# (built here with cc -O2). Everything started is stopped by PID on exit.
#
# Knobs (environment): LIMPET_BIN (build/limpet), BENCH_BYTES (1 GiB per throughput run),
# BENCH_SECONDS (5: cap per throughput run), BENCH_PINGS (5000), BENCH_CONNS (2000),
# BENCH_HOLD (1000), BENCH_CUTS (20), BENCH_ONLY ("direct socat socat64k limpet stunnel ssh").
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
LIMPET=${LIMPET_BIN:-$ROOT/build/limpet}
PYTHON=${PYTHON:-/usr/bin/python3}
[[ -x $PYTHON ]] || PYTHON=python3
TOOLS=$ROOT/scripts/bench_tools.py
RELAY=$ROOT/scripts/faultrelay.py
BYTES=${BENCH_BYTES:-1073741824}
SECONDS_CAP=${BENCH_SECONDS:-5}
PINGS=${BENCH_PINGS:-5000}
CONNS=${BENCH_CONNS:-2000}
HOLD=${BENCH_HOLD:-1000}
CUTS=${BENCH_CUTS:-20}
ONLY=${BENCH_ONLY:-direct socat socat64k limpet stunnel ssh}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/limpet-bench.XXXXXX")
RESULTS=$WORK/results
LPBENCH=$WORK/lpbench # built per run: two runs at once never share a binary being written
: >"$RESULTS"
PIDS=()

# ---- process handling ---------------------------------------------------------------------

# stop PID...: SIGTERM, up to 2 s, then SIGKILL; only ever the PIDs this script started.
stop() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# settle PID...: wait (up to 3 s) until each PID has no child processes left. socat and sshd
# fork one child per connection and reap it; stopped first, those children would be left to
# init as zombies.
settle() {
    local pid
    for pid in "$@"; do
        for _ in $(seq 30); do
            pgrep -P "$pid" >/dev/null 2>&1 || break
            sleep 0.1
        done
    done
}

stop_all() {
    local i rev=()
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do rev+=("${PIDS[i]}"); done
    [[ ${#rev[@]} -eq 0 ]] || stop "${rev[@]}"
    PIDS=()
}
trap stop_all EXIT
trap 'echo; echo "bench: interrupted"; exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, output in $WORK/NAME.log; sets LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# wait_log NAME PATTERN PID: until PATTERN shows in NAME's log (15 s) while PID lives.
wait_log() {
    local name=$1 pattern=$2 pid=$3
    for _ in $(seq 150); do
        grep -q -- "$pattern" "$WORK/$name.log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { note "$name exited before '$pattern'"; return 1; }
        sleep 0.1
    done
    note "$name did not log '$pattern' within 15 s"
    return 1
}

# wait_port PORT PID: until 127.0.0.1:PORT accepts (10 s) while PID lives.
wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

note() {
    echo "bench: $*" >&2
}

tail_log() {
    echo "---- tail of $WORK/$1.log" >&2
    tail -n 10 "$WORK/$1.log" >&2 || true
}

freeports() {
    "$PYTHON" "$TOOLS" freeports "$1"
}

port_of() {
    awk '/^port /{print $2; exit}' "$WORK/$1.log"
}

rss_kib() {
    awk '/^VmRSS:/{print $2}' "/proc/$1/status"
}

record() {
    echo "$1 $2 $3" >>"$RESULTS"
}

# field KEY LINE: the value of KEY=VALUE in LINE.
field() {
    sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}

# ---- the measurements ---------------------------------------------------------------------

# measure NAME SINK_PORT ECHO_PORT: every load through one path's two entry ports.
measure() {
    local name=$1 sink=$2 echo=$3 out
    echo "== $name"
    for streams in 1 8; do
        if out=$("$LPBENCH" tput "127.0.0.1:$sink" "$streams" "$BYTES" "$SECONDS_CAP" 2>&1); then
            record "tput$streams" "$name" "$(field bps "$out")"
            printf '   throughput %d stream(s): %s\n' "$streams" "$out"
        else
            note "$name: throughput with $streams streams failed: $out"
        fi
    done
    if out=$("$LPBENCH" pingpong "127.0.0.1:$echo" "$PINGS" 2>&1); then
        record p50 "$name" "$(field p50_us "$out")"
        record p99 "$name" "$(field p99_us "$out")"
        echo "   ping-pong: $out"
    else
        note "$name: ping-pong failed: $out"
    fi
    if out=$("$LPBENCH" connrate "127.0.0.1:$echo" "$CONNS" "$SECONDS_CAP" 2>&1); then
        record connrate "$name" "$(field rate "$out")"
        echo "   connections: $out"
    else
        note "$name: connection rate failed: $out"
    fi
}

bench_direct() {
    measure direct "$SINK_PORT" "$ECHO_PORT"
}

# Two chained socat relays per target: the same two hops limpet makes.
bench_socat() {
    local name=$1 pids=() p i target
    shift
    mapfile -t p < <(freeports 4)
    for i in 0 1; do
        target=$([[ $i -eq 0 ]] && echo "$SINK_PORT" || echo "$ECHO_PORT")
        start "$name-$i-b" socat "$@" "TCP-LISTEN:${p[2 * i + 1]},bind=127.0.0.1,reuseaddr,fork" \
            "TCP:127.0.0.1:$target"
        pids+=("$LAST_PID")
        start "$name-$i-a" socat "$@" "TCP-LISTEN:${p[2 * i]},bind=127.0.0.1,reuseaddr,fork" \
            "TCP:127.0.0.1:${p[2 * i + 1]}"
        pids+=("$LAST_PID")
    done
    for i in 0 1 2 3; do
        wait_port "${p[i]}" "${pids[i]}" || { note "$name: socat did not start"; return 0; }
    done
    measure "$name" "${p[0]}" "${p[2]}"
    settle "${pids[@]}"
    stop "${pids[@]}"
}

# start_limpet TAG DIAL_PORT LISTEN_PORT -L...: a limpet pair; sets LS_PID and LC_PID. When the
# ports differ, the fault relay joins them (control port $RELAY_CONTROL) and sets RELAY_PID.
start_limpet() {
    local tag=$1 dial=$2 listen=$3
    shift 3
    start "$tag-server" "$LIMPET" server --insecure -l "127.0.0.1:$listen"
    LS_PID=$LAST_PID
    wait_log "$tag-server" "listening on" "$LS_PID" || { tail_log "$tag-server"; return 1; }
    if [[ $dial != "$listen" ]]; then
        start "$tag-relay" "$PYTHON" "$RELAY" --listen "127.0.0.1:$dial" \
            --target "127.0.0.1:$listen" --mode rst --control "127.0.0.1:$RELAY_CONTROL" --quiet
        RELAY_PID=$LAST_PID
        wait_log "$tag-relay" "relay control on" "$RELAY_PID" || { tail_log "$tag-relay"; return 1; }
    fi
    start "$tag-client" "$LIMPET" client --insecure -s "127.0.0.1:$dial" "$@"
    LC_PID=$LAST_PID
    wait_log "$tag-client" "established" "$LC_PID" || { tail_log "$tag-client"; return 1; }
}

bench_limpet() {
    local p
    [[ -x $LIMPET ]] || { note "limpet: no binary at $LIMPET, skipped"; return 0; }
    mapfile -t p < <(freeports 3)
    start_limpet limpet "${p[0]}" "${p[0]}" -L "${p[1]}:127.0.0.1:$SINK_PORT" \
        -L "${p[2]}:127.0.0.1:$ECHO_PORT" || { note "limpet: did not start"; return 0; }
    wait_log limpet-client "forward listening on 127.0.0.1:${p[2]}" "$LC_PID" || return 0
    measure limpet "${p[1]}" "${p[2]}"
    echo "   RSS after the runs: client $(rss_kib "$LC_PID") KiB, server $(rss_kib "$LS_PID") KiB"
    stop "$LC_PID" "$LS_PID"
}

# A fresh pair, so the buffers of the throughput runs do not count: RSS idle, then with
# $HOLD idle forwarded connections (each has carried one byte each way).
bench_limpet_memory() {
    local p hold_pid c0 s0 c1 s1
    [[ -x $LIMPET ]] || return 0
    echo "== limpet memory: idle, then $HOLD idle forwarded connections"
    mapfile -t p < <(freeports 2)
    start_limpet mem "${p[0]}" "${p[0]}" -L "${p[1]}:127.0.0.1:$ECHO_PORT" || return 0
    wait_log mem-client "forward listening on" "$LC_PID" || return 0
    "$LPBENCH" connrate "127.0.0.1:${p[1]}" 10 5 >/dev/null || true # code paths faulted in
    sleep 0.5
    c0=$(rss_kib "$LC_PID") s0=$(rss_kib "$LS_PID")
    start hold "$LPBENCH" hold "127.0.0.1:${p[1]}" "$HOLD"
    hold_pid=$LAST_PID
    if wait_log hold "^ready" "$hold_pid"; then
        sleep 0.5
        c1=$(rss_kib "$LC_PID") s1=$(rss_kib "$LS_PID")
        echo "   client: $c0 KiB idle, $c1 KiB with $HOLD; server: $s0 KiB idle, $s1 KiB with $HOLD"
        record rss_idle_client limpet "$c0"
        record rss_idle_server limpet "$s0"
        record rss_conn_client limpet "$(awk -v a="$c0" -v b="$c1" -v n="$HOLD" 'BEGIN{print (b-a)/n}')"
        record rss_conn_server limpet "$(awk -v a="$s0" -v b="$s1" -v n="$HOLD" 'BEGIN{print (b-a)/n}')"
    else
        tail_log hold
    fi
    stop "$hold_pid" "$LC_PID" "$LS_PID"
}

# Ping-pong through a limpet pair with the fault relay between client and server; the relay
# cuts (RST) the tunnel $CUTS times, 250 ms apart.
bench_limpet_resume() {
    local p out
    [[ -x $LIMPET ]] || return 0
    [[ -f $RELAY ]] || { note "resume: no $RELAY, skipped"; return 0; }
    echo "== limpet resume: $CUTS cuts (RST) of the tunnel during a 1-byte ping-pong"
    mapfile -t p < <(freeports 4)
    RELAY_CONTROL=${p[3]}
    start_limpet cut "${p[0]}" "${p[1]}" -L "${p[2]}:127.0.0.1:$ECHO_PORT" || return 0
    wait_log cut-client "forward listening on" "$LC_PID" || return 0
    if out=$("$LPBENCH" resume "127.0.0.1:${p[2]}" "127.0.0.1:$RELAY_CONTROL" "$CUTS" 250 2>&1); then
        echo "   $(tail -n 1 <<<"$out")"
        record resume_median limpet "$(field median_ms "$(tail -n 1 <<<"$out")")"
        record resume_max limpet "$(field max_ms "$(tail -n 1 <<<"$out")")"
        record cuts limpet "$(field cuts "$(tail -n 1 <<<"$out")")"
    else
        note "resume: $out"
        tail_log cut-client
    fi
    echo "   server log: $(grep -c "resumed from" "$WORK/cut-server.log" || true) resumes"
    stop "$LC_PID" "$RELAY_PID" "$LS_PID"
}

bench_stunnel() {
    local p d=$WORK/stunnel spid cpid
    command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 ||
        { echo "== stunnel: skipped (not installed)"; return 0; }
    command -v openssl >/dev/null 2>&1 ||
        { echo "== stunnel: skipped (no openssl CLI to make a certificate)"; return 0; }
    mkdir -p "$d"
    if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$d/key.pem" -out "$d/cert.pem" >"$d/openssl.log" 2>&1; then
        echo "== stunnel: skipped (openssl could not make a certificate: $(tail -n 1 "$d/openssl.log"))"
        return 0
    fi
    mapfile -t p < <(freeports 4)
    cat >"$d/server.conf" <<EOF
foreground = yes
pid =
debug = warning
cert = $d/cert.pem
key = $d/key.pem
[sink]
accept = 127.0.0.1:${p[2]}
connect = 127.0.0.1:$SINK_PORT
[echo]
accept = 127.0.0.1:${p[3]}
connect = 127.0.0.1:$ECHO_PORT
EOF
    cat >"$d/client.conf" <<EOF
foreground = yes
pid =
debug = warning
client = yes
[sink]
accept = 127.0.0.1:${p[0]}
connect = 127.0.0.1:${p[2]}
[echo]
accept = 127.0.0.1:${p[1]}
connect = 127.0.0.1:${p[3]}
EOF
    local bin
    bin=$(command -v stunnel4 || command -v stunnel)
    start stunnel-server "$bin" "$d/server.conf"
    spid=$LAST_PID
    start stunnel-client "$bin" "$d/client.conf"
    cpid=$LAST_PID
    if ! wait_port "${p[0]}" "$cpid" || ! wait_port "${p[3]}" "$spid"; then
        echo "== stunnel: skipped (did not start; see $WORK/stunnel-*.log)"
        stop "$cpid" "$spid"
        return 0
    fi
    measure stunnel "${p[0]}" "${p[1]}"
    stop "$cpid" "$spid"
}

bench_ssh() {
    local p d=$WORK/ssh sshd cpid spid user
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    if [[ ! -x $sshd ]] || ! command -v ssh >/dev/null 2>&1; then
        echo "== ssh -L: skipped (sshd or ssh not installed)"
        return 0
    fi
    # sshd started as root refuses to run without its privilege-separation directory, which
    # the packaged service normally creates at boot.
    if [[ $(id -u) -eq 0 && ! -d /run/sshd ]]; then
        mkdir -m 0755 /run/sshd 2>/dev/null || true
    fi
    mkdir -p "$d" && chmod 700 "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key" >/dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$d/user_key" >/dev/null
    cp "$d/user_key.pub" "$d/authorized_keys"
    mapfile -t p < <(freeports 3)
    user=$(id -un)
    cat >"$d/sshd_config" <<EOF
Port ${p[2]}
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile none
AuthorizedKeysFile $d/authorized_keys
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel ERROR
EOF
    if ! "$sshd" -t -f "$d/sshd_config" >"$d/check.log" 2>&1; then
        echo "== ssh -L: skipped (sshd cannot run here: $(tail -n 1 "$d/check.log"))"
        return 0
    fi
    start sshd "$sshd" -D -e -f "$d/sshd_config"
    spid=$LAST_PID
    if ! wait_port "${p[2]}" "$spid"; then
        echo "== ssh -L: skipped (sshd did not start: $(tail -n 1 "$WORK/sshd.log"))"
        stop "$spid"
        return 0
    fi
    start ssh ssh -N -F /dev/null -i "$d/user_key" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -o ExitOnForwardFailure=yes -p "${p[2]}" -L "127.0.0.1:${p[0]}:127.0.0.1:$SINK_PORT" \
        -L "127.0.0.1:${p[1]}:127.0.0.1:$ECHO_PORT" "$user@127.0.0.1"
    cpid=$LAST_PID
    if ! wait_port "${p[0]}" "$cpid" || ! wait_port "${p[1]}" "$cpid"; then
        echo "== ssh -L: skipped (ssh did not connect: $(tail -n 1 "$WORK/ssh.log"))"
        stop "$cpid" "$spid"
        return 0
    fi
    measure ssh "${p[0]}" "${p[1]}"
    stop "$cpid" # the client first: its session's sshd child ends with it
    settle "$spid"
    stop "$spid"
}

# ---- main ---------------------------------------------------------------------------------

if ! ulimit -n 8192 2>/dev/null; then
    note "could not raise the fd limit to 8192 (it is $(ulimit -n)); the $HOLD-connection test may fail"
fi
cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -o "$LPBENCH" \
    "$ROOT/tests/bench/lpbench.c"
command -v socat >/dev/null 2>&1 || { note "socat is required (scripts/install-deps.sh)"; exit 1; }

echo "limpet bench on $(nproc) CPUs, $(uname -r); work dir $WORK"
echo "   throughput: $BYTES bytes per run (at most ${SECONDS_CAP}s); ping-pong: $PINGS round trips;" \
    "connections: $CONNS (at most ${SECONDS_CAP}s)"
start sink "$LPBENCH" sink 0
wait_log sink "^port " "$LAST_PID" || exit 1
SINK_PORT=$(port_of sink)
start echo "$LPBENCH" echo 0
wait_log echo "^port " "$LAST_PID" || exit 1
ECHO_PORT=$(port_of echo)

for what in $ONLY; do
    case $what in
    direct) bench_direct ;;
    socat) bench_socat socat ;;
    socat64k) bench_socat socat64k -b 65536 ;;
    limpet) bench_limpet && bench_limpet_memory && bench_limpet_resume ;;
    stunnel) bench_stunnel ;;
    ssh) bench_ssh ;;
    *) note "unknown BENCH_ONLY entry: $what" ;;
    esac
done

echo
"$PYTHON" "$TOOLS" table "$RESULTS"
echo "logs and raw results in $WORK"
