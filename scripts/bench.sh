#!/usr/bin/env bash
# bench.sh — `make bench`: limpet against the relays and tunnels it replaces, in one run on
# loopback, every path carrying the same load to the same targets:
#
#   direct          client -> target
#   socat           client -> socat -> socat -> target        (default 8 KiB buffer)
#   socat -b65536   the same with 64 KiB buffers
#   limpet          client -> limpet client (-L) -> limpet server -> target   (--insecure)
#   limpet psk      the same over TLS with a pre-shared key      (keys from `limpet keygen`)
#   limpet cert     the same over TLS with pinned certificates
#                   (both on the default record layer: mbedTLS's handshake, then the records
#                   sealed by OpenSSL's libcrypto; "psk mbedtls" and "cert mbedtls" are the same
#                   pairs with tls.record_layer=mbedtls, mbedTLS sealing the records itself)
#   stunnel         client -> stunnel (client) -> TLS -> stunnel (server) -> target
#   ssh -L          client -> ssh -> sshd -> target, once with -c aes128-gcm@openssh.com and
#                   once with -c chacha20-poly1305@openssh.com (temporary sshd and keys)
#
# Metrics: throughput with 1 and 8 streams, 1-byte ping-pong p50/p99, connections per second,
# limpet's RSS idle and with 1,000 idle forwarded connections, and the time from a tunnel cut
# (scripts/faultrelay.py) to the first byte delivered again, with and without TLS. The crypto
# ceiling is tests/bench/aead_ceiling.c: one core sealing 16 KiB records with each library limpet
# links, mbedTLS and OpenSSL's EVP (ChaCha20-Poly1305, AES-128-GCM, AES-256-GCM). The server's
# RSS per idle TLS session is measured with 100 PSK clients (and 100 --insecure ones), on each
# record layer. Load comes from tests/bench/lpbench.c.
# For the limpet rows, the CPU time (utime+stime from /proc/PID/stat) the limpet client and the
# limpet server spent in each throughput run is recorded too: bytes per CPU-second of the sealing
# and of the opening side, which the table sets against the ceiling next to the wall-clock ratio.
# Both are built here with cc -O2. Everything started is stopped by PID on exit.
#
# The forwards of issue 6, against OpenSSH on the same temporary sshd (ssh with -c
# chacha20-poly1305@openssh.com, limpet with a pre-shared key: both encrypted, the same AEAD):
#   dynamic     limpet -D against ssh -D: HTTP requests to a tiny target (lpbench http), each
#               on a new connection through the SOCKS5 proxy (lpbench socks), one at a time
#               (requests/s, p50) and 16 at once (requests/s); one curl --socks5-hostname too.
#   reverse     limpet -R against ssh -R: throughput (1 stream), ping-pong and connections/s
#               through the port the server listens on; skipped, with the client's reason,
#               while `limpet client -R` refuses to start.
#   connscale   connections/s through -L (limpet) and ssh -L with 1, 100 and 1,000 in flight at
#               once (lpbench connconc: connect, 8 bytes echoed, close), with the peak VmRSS of
#               the client and the server side sampled during each level.
#   streamcost  connections/s through one limpet -L (one at a time) with no other stream open,
#               then with BENCH_HOLD idle streams held open through the same tunnel; the issue
#               wants the second at least 0.8 of the first.
#   upgrade     issue 14: BENCH_UPGRADE_SESSIONS (100) limpet clients with BENCH_UPGRADE_STREAMS
#               (1,000) streams open between them; the server gets SIGUSR2 (it upgrades in place
#               to its own binary) BENCH_UPGRADE_ROUNDS (3) times: the time from the signal until
#               each session has resumed (median and max over every session of every round), and
#               the bytes of the state file (scripts/bench_upgrade.py). Target: 300 ms median, 1 s
#               max.
#   haproxy     issue 15: limpet (PSK, SNI) direct against limpet behind HAProxy (the shipped
#               config/haproxy.cfg, ports rewritten, before one node, then before three nodes,
#               with PROXY v2 listeners): connections/s through an -L forward of one established session
#               (new streams, not new sessions), 1-stream throughput of BENCH_HAPROXY_BYTES
#               (256 MiB), each the median of 3 runs, and the resume time of
#               BENCH_HAPROXY_SESSIONS (100) sessions after the fault relay cuts every link at
#               once (the clients' "down Nms"; median and max over 3 cuts)
#               (scripts/bench_haproxy.py). Targets, judged on one node (as many servers as
#               direct): resume through HAProxy <= 1.5x direct, throughput >= 0.8x direct.
#
# Knobs (environment): LIMPET_BIN (build/limpet), BENCH_BYTES (1 GiB per throughput run),
# BENCH_SECONDS (5: cap per throughput run), BENCH_REPEAT (3: throughput, ping-pong and
# connections/s are the median of this many runs; the compared paths take them in as many
# passes, one run each, A B C, A B C, A B C), BENCH_PINGS (5000), BENCH_CONNS (2000),
# BENCH_HOLD (1000), BENCH_CUTS (20), BENCH_CEILING_SECONDS (2 per cipher),
# BENCH_SOCKS_REQS (3000 per run), BENCH_SCALE_CONNS (5000 per concurrency level),
# BENCH_TLS_CLIENTS (100: idle sessions for the RSS per TLS session),
# BENCH_SCALE_SECONDS (3: cap per -D run and per level),
# BENCH_UPGRADE_SESSIONS, BENCH_UPGRADE_STREAMS, BENCH_UPGRADE_ROUNDS, BENCH_HAPROXY_SESSIONS,
# BENCH_HAPROXY_BYTES, BENCH_HAPROXY_ROUNDS,
# BENCH_ONLY ("ceiling direct socat socat64k limpet limpet-tls tls-memory stunnel ssh dynamic
# reverse connscale streamcost upgrade haproxy"; limpet-tls is limpet-psk, limpet-cert,
# limpet-psk-mbedtls and limpet-cert-mbedtls, ssh is ssh-aesgcm and ssh-chacha, each also
# accepted alone; dynamic, reverse and connscale run limpet and ssh, and
# limpet-D, ssh-D, limpet-R, ssh-R, limpet-connscale, ssh-connscale pick one side).
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
CEILING_SECONDS=${BENCH_CEILING_SECONDS:-2}
SOCKS_REQS=${BENCH_SOCKS_REQS:-3000}
SCALE_CONNS=${BENCH_SCALE_CONNS:-5000}
SCALE_SECONDS=${BENCH_SCALE_SECONDS:-3}
SCALE_LEVELS=(1 100 1000)
REPEAT=${BENCH_REPEAT:-3}
INNER=$REPEAT # runs per figure in a row; 1 while the compared paths take their passes
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_REPEAT must be a count" >&2; exit 2; }
CLK_TCK=$(getconf CLK_TCK) # the unit of utime and stime in /proc/PID/stat
TLS_CLIENTS=${BENCH_TLS_CLIENTS:-100}
ONLY=${BENCH_ONLY:-ceiling direct socat socat64k limpet limpet-tls tls-memory stunnel ssh dynamic reverse connscale streamcost upgrade haproxy}
# Every stream of the 1,000-connection level is open at once in one session: both sides get
# room for them (and the session memory their minimum windows need).
WIDE=(-o session.max_streams=4096 -o limits.session_memory=128MiB)
SERVER_EXTRA=() # more options for the next start_limpet's server
SSHD_PID='' SSH_SKIP='' SSH_DIR='' SSH_PORT='' SSH_USER=''
SSH_FWD_CIPHER=chacha20-poly1305@openssh.com # the issue-6 ssh rows; limpet psk offers it first

WORK=$(mktemp -d "${TMPDIR:-/tmp}/limpet-bench.XXXXXX")
RESULTS=$WORK/results
LPBENCH=$WORK/lpbench # built per run: two runs at once never share a binary being written
: >"$RESULTS"
PIDS=()

# ---- process handling ---------------------------------------------------------------------

# stop PID...: SIGTERM, up to 2 s, then SIGKILL; only ever the PIDs this script started (an
# empty argument is skipped). A stopped PID is reaped and forgotten, so the exit trap never
# signals a number the system may have handed to another process since.
stop() {
    local pid q keep
    for pid in "$@"; do [[ -z $pid ]] || kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        for _ in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        keep=()
        for q in "${PIDS[@]}"; do [[ $q == "$pid" ]] || keep+=("$q"); done
        PIDS=("${keep[@]}")
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

# cpu_ticks PID...: the CPU time (every thread) each PID has used so far, as "utime stime" in
# clock ticks, all on one line; fails when one of them has gone. The fields are read after the
# last ')' because the command name before it may itself hold spaces and parentheses.
cpu_ticks() {
    local pid stat f ticks=()
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        read -ra f <<<"${stat##*) }"
        [[ ${#f[@]} -gt 12 ]] || return 1
        ticks+=("${f[11]}" "${f[12]}") # fields 14 and 15; f[0] is field 3
    done
    echo "${ticks[*]}"
}

# cpu_note NAME STREAMS LPBENCH_OUT BEFORE AFTER: records and prints the CPU time (utime+stime)
# the limpet client and server (BEFORE and AFTER as cpu_ticks printed them for the two) spent on
# one throughput run. The line shows the user/system split too: on loopback, part of the system
# time of a sender is the receiving side's TCP work, run in the sender's context.
cpu_note() {
    local name=$1 streams=$2 bytes secs b a line
    bytes=$(field bytes "$3") secs=$(field secs "$3")
    read -ra b <<<"$4"
    read -ra a <<<"$5"
    if [[ ${#b[@]} -ne 4 || ${#a[@]} -ne 4 || -z $bytes ]]; then
        note "$name: no CPU time for the $streams-stream run (a limpet process had ended)"
        return 0
    fi
    line=$(awk -v cu="$((a[0] - b[0]))" -v cs="$((a[1] - b[1]))" -v su="$((a[2] - b[2]))" \
        -v ss="$((a[3] - b[3]))" -v t="$CLK_TCK" -v n="$bytes" '
        function per(k) { return k > 0 ? sprintf("%.0f", n / (k / t) / 1e6) : "-" }
        BEGIN { printf "%.3f %.3f client %.2f s (user %.2f, sys %.2f; %s MB per CPU-s), " \
                "server %.2f s (user %.2f, sys %.2f; %s MB per CPU-s)",
                (cu + cs) / t, (su + ss) / t, (cu + cs) / t, cu / t, cs / t, per(cu + cs),
                (su + ss) / t, su / t, ss / t, per(su + ss) }')
    record "cpu_client_tput$streams" "$name" "${line%% *}"
    line=${line#* }
    record "cpu_server_tput$streams" "$name" "${line%% *}"
    record "bytes_tput$streams" "$name" "$bytes"
    record "secs_tput$streams" "$name" "$secs"
    printf '      CPU of limpet: %s, in %s s wall\n' "${line#* }" "$secs"
}

# ---- the measurements ---------------------------------------------------------------------

# median_run VAR CMD...: runs CMD (an lpbench client) INNER times; sets VAR to the output
# line of the run whose KEY (MEDIAN_KEY, e.g. bps) is the median, and RUNS_OUT to every
# run's value. One run on this kind of machine (a VM on 2 cores) can be 1.5x off the next, so
# each figure is a median: of BENCH_REPEAT runs in a row here for the rows that run once, of
# BENCH_REPEAT passes for the compared paths (INNER is 1 then; see the main loop). Fails
# (with the failing output in VAR) when a run fails.
median_run() {
    # its own names start with _mr_: printf -v must reach the caller's VAR, not a local here
    local _mr_var=$1 _mr_out _mr_i _mr_lines=() _mr_vals=()
    shift
    for ((_mr_i = 0; _mr_i < INNER; _mr_i++)); do
        if ! _mr_out=$("$@" 2>&1); then
            printf -v "$_mr_var" '%s' "$_mr_out"
            return 1
        fi
        _mr_lines+=("$_mr_out")
        _mr_vals+=("$(field "$MEDIAN_KEY" "$_mr_out")")
    done
    RUNS_OUT="${_mr_vals[*]}"
    _mr_i=$(for _mr_i in "${!_mr_vals[@]}"; do echo "${_mr_vals[_mr_i]} $_mr_i"; done |
        sort -n | awk -v n="$INNER" 'NR == int((n + 1) / 2) {print $2}')
    printf -v "$_mr_var" '%s' "${_mr_lines[_mr_i]}"
}

# measure NAME SINK_PORT ECHO_PORT [CLIENT_PID SERVER_PID]: every load through one path's two
# entry ports; with the PIDs of a limpet pair, also their CPU time over the throughput runs.
measure() {
    local name=$1 sink=$2 echo=$3 out before after
    local pair=("${@:4}")
    echo "== $name"
    for streams in 1 8; do
        before=$(cpu_ticks "${pair[@]}") || before=''
        if MEDIAN_KEY=bps median_run out "$LPBENCH" tput "127.0.0.1:$sink" "$streams" "$BYTES" \
            "$SECONDS_CAP"; then
            after=$(cpu_ticks "${pair[@]}") || after=''
            record "tput$streams" "$name" "$(field bps "$out")"
            printf '   throughput %d stream(s), median of %d (B/s: %s): %s\n' "$streams" \
                "$INNER" "$RUNS_OUT" "$out"
            # the CPU time covers every run: set it against all the bytes and seconds
            [[ ${#pair[@]} -eq 0 ]] || cpu_note "$name" "$streams" \
                "bytes=$(($(field bytes "$out") * INNER)) secs=$(awk -v s="$(field secs "$out")" \
                    -v n="$INNER" 'BEGIN{printf "%.3f", s * n}')" "$before" "$after"
        else
            note "$name: throughput with $streams streams failed: $out"
        fi
    done
    echo_loads "$name" "$echo" ""
}

# echo_loads NAME ECHO_PORT PREFIX: ping-pong p50/p99 and connections/s (the median of
# INNER runs) through one echo port, recorded as PREFIXp50, PREFIXp99 and
# PREFIXconnrate.
echo_loads() {
    local name=$1 echo=$2 prefix=$3 out
    if out=$("$LPBENCH" pingpong "127.0.0.1:$echo" "$PINGS" 2>&1); then
        record "${prefix}p50" "$name" "$(field p50_us "$out")"
        record "${prefix}p99" "$name" "$(field p99_us "$out")"
        echo "   ping-pong: $out"
    else
        note "$name: ping-pong failed: $out"
    fi
    if MEDIAN_KEY=rate median_run out "$LPBENCH" connrate "127.0.0.1:$echo" "$CONNS" \
        "$SECONDS_CAP"; then
        record "${prefix}connrate" "$name" "$(field rate "$out")"
        echo "   connections, median of $INNER (per s: $RUNS_OUT): $out"
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

# limpet_auth MODE: sets SERVER_AUTH and CLIENT_AUTH, the options that make a limpet pair use
# MODE: insecure (plain TCP), psk or cert (TLS, the default when --insecure is absent). The keys
# are made once per run in $WORK/tls with `limpet keygen`, as a user would make them; the one
# identity, "bench", may reach the sink, the echo and the HTTP target and nothing else, and may
# have the server listen on loopback for -R.
limpet_auth() {
    local mode=$1 d=$WORK/tls fp layer=()
    case $mode in
    insecure)
        SERVER_AUTH=(--insecure) CLIENT_AUTH=(--insecure)
        return 0
        ;;
    psk | cert) ;;
    psk-mbedtls | cert-mbedtls)
        mode=${mode%-mbedtls}
        layer=(-o tls.record_layer=mbedtls)
        ;;
    *) note "unknown limpet mode $mode"; return 1 ;;
    esac
    mkdir -p "$d"
    if [[ ! -f $d/server-$mode.yaml ]] &&
        ! make_limpet_keys "$mode" "$d" >"$d/keygen-$mode.log" 2>&1; then
        note "limpet $mode: limpet keygen failed: $(tail -n 1 "$d/keygen-$mode.log")"
        return 1
    fi
    SERVER_AUTH=(-c "$d/server-$mode.yaml" "${layer[@]}")
    if [[ $mode == psk ]]; then
        CLIENT_AUTH=(-o identity=bench -o "psk_file=$d/bench.psk" "${layer[@]}")
    else
        fp=$(cat "$d/server.fingerprint")
        CLIENT_AUTH=(-o "tls.cert=$d/bench-client.crt" -o "tls.key=$d/bench-client.key"
            -o "server_fingerprint=$fp" "${layer[@]}")
    fi
}

# make_limpet_keys MODE DIR: the keys for MODE and the server's YAML config with its
# auth.clients section (tests/e2e/test_tls.py makes its pairs the same way).
make_limpet_keys() {
    local mode=$1 d=$2 how fp
    if [[ $mode == psk ]]; then
        (cd "$d" && "$LIMPET" keygen psk bench -o bench.psk) || return 1
        how="psk_file: \"$d/bench.psk\""
    else
        (cd "$d" && "$LIMPET" keygen cert server) >"$d/server.keygen" || return 1
        (cd "$d" && "$LIMPET" keygen cert bench-client) >"$d/client.keygen" || return 1
        awk '/^Fingerprint: /{print $2; exit}' "$d/server.keygen" >"$d/server.fingerprint"
        fp=$(awk '/^Fingerprint: /{print $2; exit}' "$d/client.keygen")
        if [[ ! -s $d/server.fingerprint || -z $fp ]]; then
            echo "no fingerprint in the keygen output"
            return 1
        fi
        how="cert_fingerprint: \"$fp\""
    fi
    {
        if [[ $mode == cert ]]; then
            echo "tls:"
            echo "  cert: \"$d/server.crt\""
            echo "  key: \"$d/server.key\""
        fi
        echo "auth:"
        echo "  clients:"
        echo "    bench:"
        echo "      $how"
        echo "      allow:"
        echo "        forward: [\"127.0.0.1:$SINK_PORT\", \"127.0.0.1:$ECHO_PORT\"," \
            "\"127.0.0.1:$HTTP_PORT\"]"
        echo "        reverse: [\"127.0.0.1:1024-65535\"]"
    } >"$d/server-$mode.yaml"
}

# start_limpet TAG MODE DIAL_PORT LISTEN_PORT CLIENT_ARG...: a limpet pair in MODE (see
# limpet_auth); sets LS_PID and LC_PID. When the ports differ, the fault relay joins them
# (control port $RELAY_CONTROL) and sets RELAY_PID.
start_limpet() {
    local tag=$1 mode=$2 dial=$3 listen=$4
    shift 4
    LS_PID='' LC_PID='' RELAY_PID=''
    limpet_auth "$mode" || return 1
    start "$tag-server" "$LIMPET" server "${SERVER_AUTH[@]}" "${SERVER_EXTRA[@]}" \
        -l "127.0.0.1:$listen"
    LS_PID=$LAST_PID
    wait_log "$tag-server" "listening on" "$LS_PID" || { tail_log "$tag-server"; return 1; }
    if [[ $dial != "$listen" ]]; then
        start "$tag-relay" "$PYTHON" "$RELAY" --listen "127.0.0.1:$dial" \
            --target "127.0.0.1:$listen" --mode rst --control "127.0.0.1:$RELAY_CONTROL" --quiet
        RELAY_PID=$LAST_PID
        wait_log "$tag-relay" "relay control on" "$RELAY_PID" || { tail_log "$tag-relay"; return 1; }
    fi
    start "$tag-client" "$LIMPET" client "${CLIENT_AUTH[@]}" -s "127.0.0.1:$dial" "$@"
    LC_PID=$LAST_PID
    wait_log "$tag-client" "established" "$LC_PID" || { tail_log "$tag-client"; return 1; }
}

# bench_limpet NAME MODE: the common measurements through a limpet pair in MODE.
bench_limpet() {
    local name=$1 mode=$2 p
    record ran "$name" 1 # the table fails a target this run should have measured and did not
    [[ -x $LIMPET ]] || { note "$name: no binary at $LIMPET, skipped"; return 0; }
    mapfile -t p < <(freeports 3)
    if ! start_limpet "$name" "$mode" "${p[0]}" "${p[0]}" -L "${p[1]}:127.0.0.1:$SINK_PORT" \
        -L "${p[2]}:127.0.0.1:$ECHO_PORT" ||
        ! wait_log "$name-client" "forward listening on 127.0.0.1:${p[2]}" "$LC_PID"; then
        note "$name: did not start"
        stop "$LC_PID" "$LS_PID"
        return 0
    fi
    measure "$name" "${p[1]}" "${p[2]}" "$LC_PID" "$LS_PID"
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
    if ! start_limpet mem insecure "${p[0]}" "${p[0]}" -L "${p[1]}:127.0.0.1:$ECHO_PORT" ||
        ! wait_log mem-client "forward listening on" "$LC_PID"; then
        note "limpet memory: the pair did not start"
        stop "$LC_PID" "$LS_PID"
        return 0
    fi
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

# bench_limpet_resume NAME MODE: ping-pong through a limpet pair in MODE with the fault relay
# between client and server; the relay cuts (RST) the tunnel $CUTS times, 250 ms apart. With
# TLS every reconnect is a full handshake. The TLS client runs with -v: its debug log names the
# cipher suite of each handshake (the measure runs go without it, since -v also logs each
# stream), and that suite is recorded for the table.
bench_limpet_resume() {
    local name=$1 mode=$2 p out verbose=() suite
    record ran "$name" 1
    [[ -x $LIMPET ]] || return 0
    [[ -f $RELAY ]] || { note "$name resume: no $RELAY, skipped"; return 0; }
    echo "== $name resume: $CUTS cuts (RST) of the tunnel during a 1-byte ping-pong"
    mapfile -t p < <(freeports 4)
    RELAY_CONTROL=${p[3]}
    [[ $mode == insecure ]] || verbose=(-v)
    if ! start_limpet "$name-cut" "$mode" "${p[0]}" "${p[1]}" -L "${p[2]}:127.0.0.1:$ECHO_PORT" \
        "${verbose[@]}" || ! wait_log "$name-cut-client" "forward listening on" "$LC_PID"; then
        note "$name resume: the pair did not start"
        stop "$LC_PID" "$RELAY_PID" "$LS_PID"
        return 0
    fi
    if out=$("$LPBENCH" resume "127.0.0.1:${p[2]}" "127.0.0.1:$RELAY_CONTROL" "$CUTS" 250 2>&1); then
        echo "   $(tail -n 1 <<<"$out")"
        record resume_median "$name" "$(field median_ms "$(tail -n 1 <<<"$out")")"
        record resume_max "$name" "$(field max_ms "$(tail -n 1 <<<"$out")")"
        record cuts "$name" "$(field cuts "$(tail -n 1 <<<"$out")")"
    else
        note "$name resume: $out"
        tail_log "$name-cut-client"
    fi
    echo "   server log: $(grep -c "resumed from" "$WORK/$name-cut-server.log" || true) resumes"
    if [[ $mode != insecure ]]; then
        suite=$(sed -n 's/.*TLS with [^ ]*: \([A-Z0-9-]*\).*/\1/p' "$WORK/$name-cut-client.log" |
            sort | uniq -c | sort -rn | awk '{print $2; exit}')
        echo "   cipher suite: ${suite:-unknown: no suite in the client debug log}" \
            "($(grep -c "TLS with" "$WORK/$name-cut-client.log" || true) handshakes)"
        [[ -z $suite ]] || record suite "$name" "$suite"
    fi
    stop "$LC_PID" "$RELAY_PID" "$LS_PID"
}

# bench_tls_memory NAME MODE: the server's RSS per idle session, from $TLS_CLIENTS limpet clients
# (no forwards) that each hold one session on it: (RSS with them - RSS before) / clients.
bench_tls_memory() {
    local name=$1 mode=$2 p s0 s1 i pids=() ok=1 n
    record ran "$name" 1
    [[ -x $LIMPET ]] || return 0
    mapfile -t p < <(freeports 1)
    limpet_auth "$mode" || return 0
    start "$name-server" "$LIMPET" server "${SERVER_AUTH[@]}" -l "127.0.0.1:${p[0]}" \
        -o "limits.max_sessions=$((TLS_CLIENTS + 16))" \
        -o "limits.sessions_per_identity=$((TLS_CLIENTS + 16))" \
        -o "limits.max_pending_per_source=$((TLS_CLIENTS + 16))"
    local spid=$LAST_PID
    if ! wait_log "$name-server" "listening on" "$spid"; then
        stop "$spid"
        return 0
    fi
    # one client first, so the code paths and the heap's first arena are in RSS before s0
    start "$name-c0" "$LIMPET" client "${CLIENT_AUTH[@]}" -s "127.0.0.1:${p[0]}" -q
    pids+=("$LAST_PID")
    wait_log "$name-server" "new session" "$spid" || ok=0
    sleep 0.5
    s0=$(rss_kib "$spid")
    for ((i = 1; i <= TLS_CLIENTS && ok; i++)); do
        start "$name-c$i" "$LIMPET" client "${CLIENT_AUTH[@]}" -s "127.0.0.1:${p[0]}" -q
        pids+=("$LAST_PID")
    done
    for _ in $(seq 300); do
        n=$(grep -c "new session" "$WORK/$name-server.log" || true)
        ((n < TLS_CLIENTS + 1)) || break
        sleep 0.1
    done
    sleep 1 # idle: heartbeats only
    s1=$(rss_kib "$spid")
    n=$(grep -c "new session" "$WORK/$name-server.log" || true)
    if ((n >= TLS_CLIENTS + 1)); then
        record rss_session_server "$name" "$(awk -v a="$s0" -v b="$s1" -v n="$TLS_CLIENTS" \
            'BEGIN{print (b-a)/n}')"
        echo "   $name: server $s0 KiB with 1 session, $s1 KiB with $((TLS_CLIENTS + 1)):" \
            "$(awk -v a="$s0" -v b="$s1" -v n="$TLS_CLIENTS" 'BEGIN{printf "%.1f", (b-a)/n}') KiB" \
            "per idle session"
    else
        note "$name: only $n of $((TLS_CLIENTS + 1)) sessions came up"
    fi
    stop "${pids[@]}" "$spid"
}

bench_tls_memories() {
    echo "== server RSS per idle session: $TLS_CLIENTS clients holding one session each"
    bench_tls_memory mem-insecure insecure
    bench_tls_memory mem-psk psk
    bench_tls_memory mem-psk-mbedtls psk-mbedtls
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
    # The probe client logs at info, which names the TLS version and suite of each connection;
    # the measured one logs only warnings, as a deployed stunnel would.
    for level in warning info; do
        cat >"$d/client-$level.conf" <<EOF
foreground = yes
pid =
debug = $level
client = yes
[sink]
accept = 127.0.0.1:${p[0]}
connect = 127.0.0.1:${p[2]}
[echo]
accept = 127.0.0.1:${p[1]}
connect = 127.0.0.1:${p[3]}
EOF
    done
    local bin suite=
    bin=$(command -v stunnel4 || command -v stunnel)
    start stunnel-server "$bin" "$d/server.conf"
    spid=$LAST_PID
    start stunnel-client "$bin" "$d/client-warning.conf"
    cpid=$LAST_PID
    if ! wait_port "${p[0]}" "$cpid" || ! wait_port "${p[3]}" "$spid"; then
        echo "== stunnel: skipped (did not start; see $WORK/stunnel-*.log)"
        stop "$cpid" "$spid"
        return 0
    fi
    measure stunnel "${p[0]}" "${p[1]}"
    stop "$cpid"
    start stunnel-probe "$bin" "$d/client-info.conf"
    cpid=$LAST_PID
    if wait_port "${p[1]}" "$cpid" && "$LPBENCH" connrate "127.0.0.1:${p[1]}" 1 5 >/dev/null; then
        sleep 0.2 # stunnel may log after the echo has come back
        suite=$(sed -n 's/.*: \(TLSv[0-9.]*\) ciphersuite: \([A-Za-z0-9_-]*\).*/\1\/\2/p' \
            "$WORK/stunnel-probe.log" | head -n 1)
    fi
    echo "   negotiated: ${suite:-unknown (see $WORK/stunnel-probe.log)}"
    [[ -z $suite ]] || record suite stunnel "$suite"
    stop "$cpid" "$spid"
}

# ssh_cipher ROW: the cipher the ssh -L row ROW forces with -c.
ssh_cipher() {
    case $1 in
    ssh-aesgcm) echo aes128-gcm@openssh.com ;;
    ssh-chacha) echo chacha20-poly1305@openssh.com ;;
    *) return 1 ;;
    esac
}

# ssh_up: the temporary sshd with its keys, started once per run and kept until the end: every
# ssh row uses it. Sets SSHD_PID, SSH_DIR, SSH_PORT and SSH_USER; fails with SSH_SKIP saying
# why when sshd cannot run here (and does not try again).
ssh_up() {
    local d=$WORK/ssh sshd p
    [[ -z $SSHD_PID ]] || return 0
    [[ -z $SSH_SKIP ]] || return 1
    sshd=$(command -v sshd || echo /usr/sbin/sshd)
    if [[ ! -x $sshd ]] || ! command -v ssh >/dev/null 2>&1; then
        SSH_SKIP="sshd or ssh not installed"
        return 1
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
    p=$(freeports 1)
    SSH_USER=$(id -un)
    cat >"$d/sshd_config" <<EOF
Port $p
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile none
AuthorizedKeysFile $d/authorized_keys
AllowUsers $SSH_USER
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
        SSH_SKIP="sshd cannot run here: $(tail -n 1 "$d/check.log")"
        return 1
    fi
    start sshd "$sshd" -D -e -f "$d/sshd_config"
    if ! wait_port "$p" "$LAST_PID"; then
        SSH_SKIP="sshd did not start: $(tail -n 1 "$WORK/sshd.log")"
        stop "$LAST_PID"
        return 1
    fi
    SSHD_PID=$LAST_PID SSH_DIR=$d SSH_PORT=$p
}

# ssh_start NAME CIPHER FORWARD_ARG...: an ssh client of the temporary sshd offering only CIPHER
# (-c: the session has it or does not start), with the forwards given; sets LAST_PID.
ssh_start() {
    local name=$1 cipher=$2
    shift 2
    start "$name" ssh -N -F /dev/null -i "$SSH_DIR/user_key" -o IdentitiesOnly=yes \
        -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o LogLevel=ERROR -o ExitOnForwardFailure=yes -c "$cipher" -p "$SSH_PORT" "$@" \
        "$SSH_USER@127.0.0.1"
}

# bench_ssh ROW...: for each ROW (ssh-aesgcm, ssh-chacha) an ssh -L client with that row's
# cipher, measured and stopped before the next.
bench_ssh() {
    local p cpid row cipher
    ssh_up || { echo "== ssh -L: skipped ($SSH_SKIP)"; return 0; }
    mapfile -t p < <(freeports 2)
    for row in "$@"; do
        cipher=$(ssh_cipher "$row") || { note "unknown ssh row $row"; continue; }
        ssh_start "$row" "$cipher" -L "127.0.0.1:${p[0]}:127.0.0.1:$SINK_PORT" \
            -L "127.0.0.1:${p[1]}:127.0.0.1:$ECHO_PORT"
        cpid=$LAST_PID
        if ! wait_port "${p[0]}" "$cpid" || ! wait_port "${p[1]}" "$cpid"; then
            echo "== $row: skipped (ssh -c $cipher did not connect: $(tail -n 1 "$WORK/$row.log"))"
            stop "$cpid"
            settle "$SSHD_PID"
            continue
        fi
        measure "$row" "${p[0]}" "${p[1]}"
        echo "   cipher: $cipher (the only one offered, with -c)"
        stop "$cpid" # the client first: its session's sshd child ends with it
        settle "$SSHD_PID"
    done
}

# bench_ceiling: tests/bench/aead_ceiling.c, one core sealing 16 KiB records with mbedTLS and
# with OpenSSL EVP (lines named evp-CIPHER).
bench_ceiling() {
    local out line bps bin=$WORK/aead_ceiling
    echo "== AEAD ceiling (mbedTLS, then OpenSSL EVP): one core sealing 16 KiB records," \
        "${CEILING_SECONDS}s per cipher"
    record ran ceiling 1
    if ! cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$bin" \
        "$ROOT/tests/bench/aead_ceiling.c" -lmbedcrypto -lcrypto >"$WORK/aead_ceiling.log" 2>&1; then
        note "ceiling: aead_ceiling.c did not build (mbedTLS or OpenSSL headers missing?)"
        tail_log aead_ceiling
        return 0
    fi
    out=$("$bin" "$CEILING_SECONDS" 2>&1) || note "ceiling: aead_ceiling failed"
    while read -r line; do
        [[ -n $line ]] || continue
        echo "   $line"
        # The table holds limpet against the peak (see aead_ceiling.c); the mean is shown too.
        bps=$(field peak_bps "$line")
        [[ -z $bps ]] || record ceiling "${line%% *}" "$bps"
        bps=$(field bps "$line")
        [[ -z $bps ]] || record ceiling_mean "${line%% *}" "$bps"
        bps=$(field cpu_bps "$line") # per second of its own CPU time, like the limpet CPU rows
        [[ -z $bps || $bps == 0 ]] || record ceiling_cpu "${line%% *}" "$bps"
    done <<<"$out"
}

# ---- issue 6: -D, -R, connections at scale, a new stream's cost ---------------------------

# descendants PID: every process under PID (children, theirs, ...), one a line.
descendants() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

# rss_sum PID...: VmRSS (KiB) summed over those of the PIDs still running.
rss_sum() {
    local pid t=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

hwm_kib() {
    awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo "?"
}

# sampled NAME "CLIENT_PIDS" "SERVER_PIDS" CMD...: runs CMD (a load generator; output in NAME's
# log) and, every 50 ms while it runs (at most 60 s), sums the VmRSS of each group of PIDs.
# Sets RUN_RC, RUN_OUT (CMD's last line), PEAK_CLIENT and PEAK_SERVER (KiB).
sampled() {
    local name=$1 pid c s keep q
    local -a cgroup sgroup
    read -ra cgroup <<<"$2"
    read -ra sgroup <<<"$3"
    shift 3
    PEAK_CLIENT=0 PEAK_SERVER=0 RUN_RC=0
    start "$name" "$@"
    pid=$LAST_PID
    for _ in $(seq 1200); do
        kill -0 "$pid" 2>/dev/null || break
        c=$(rss_sum "${cgroup[@]}") s=$(rss_sum "${sgroup[@]}")
        ((c <= PEAK_CLIENT)) || PEAK_CLIENT=$c
        ((s <= PEAK_SERVER)) || PEAK_SERVER=$s
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && { note "$name: still running after 60 s, stopped"; stop "$pid"; }
    wait "$pid" 2>/dev/null || RUN_RC=$?
    keep=()
    for q in "${PIDS[@]}"; do [[ $q == "$pid" ]] || keep+=("$q"); done
    PIDS=("${keep[@]}")
    RUN_OUT=$(tail -n 1 "$WORK/$name.log")
}

# socks_runs NAME PROXY_PORT: one curl, then lpbench socks 1 and 16 requests at once.
socks_runs() {
    local name=$1 port=$2 out conc body
    if command -v curl >/dev/null 2>&1; then
        if body=$(curl -sS --max-time 5 --socks5-hostname "127.0.0.1:$port" \
            "http://127.0.0.1:$HTTP_PORT/" 2>&1) && [[ $body == "hello, limpet" ]]; then
            echo "   curl --socks5-hostname: 200, body as sent"
        else
            note "$name: curl --socks5-hostname through the proxy failed: $body"
        fi
    fi
    for conc in 1 16; do
        if out=$("$LPBENCH" socks "127.0.0.1:$port" "127.0.0.1:$HTTP_PORT" "$conc" "$SOCKS_REQS" \
            "$SCALE_SECONDS" 2>&1); then
            record "socks_rate$conc" "$name" "$(field rate "$out")"
            [[ $conc -ne 1 ]] || record socks_p50 "$name" "$(field p50_us "$out")"
            printf '   requests, %2d at once: %s\n' "$conc" "$out"
            [[ $(field failed "$out") == 0 ]] || note "$name: $(field failed "$out") requests failed"
        else
            note "$name: requests $conc at once failed: $out"
        fi
    done
}

bench_dynamic_limpet() {
    local p
    record ran limpet-D 1
    [[ -x $LIMPET ]] || { note "limpet -D: no binary at $LIMPET, skipped"; return 0; }
    echo "== limpet -D (psk): HTTP requests through its SOCKS5 proxy, a new connection each"
    mapfile -t p < <(freeports 2)
    if ! start_limpet dyn psk "${p[0]}" "${p[0]}" -D "127.0.0.1:${p[1]}" ||
        ! wait_log dyn-client "socks proxy listening on 127.0.0.1:${p[1]}" "$LC_PID"; then
        note "limpet -D: did not start"
        stop "$LC_PID" "$LS_PID"
        return 0
    fi
    socks_runs limpet-D "${p[1]}"
    stop "$LC_PID" "$LS_PID"
}

bench_dynamic_ssh() {
    local p cpid
    ssh_up || { echo "== ssh -D: skipped ($SSH_SKIP)"; return 0; }
    echo "== ssh -D ($SSH_FWD_CIPHER): HTTP requests through its SOCKS5 proxy"
    p=$(freeports 1)
    ssh_start ssh-D "$SSH_FWD_CIPHER" -D "127.0.0.1:$p"
    cpid=$LAST_PID
    if ! wait_port "$p" "$cpid"; then
        echo "   skipped: ssh -D did not start: $(tail -n 1 "$WORK/ssh-D.log")"
        stop "$cpid"
        return 0
    fi
    socks_runs ssh-D "$p"
    stop "$cpid"
    settle "$SSHD_PID"
}

# measure_reverse NAME SINK_PORT ECHO_PORT: throughput (1 stream), ping-pong and connections/s
# through the two ports a server listens on for -R.
measure_reverse() {
    local name=$1 sink=$2 echo=$3 out
    if out=$("$LPBENCH" tput "127.0.0.1:$sink" 1 "$BYTES" "$SECONDS_CAP" 2>&1); then
        record rev_tput1 "$name" "$(field bps "$out")"
        echo "   throughput 1 stream: $out"
    else
        note "$name: throughput failed: $out"
    fi
    echo_loads "$name" "$echo" rev_
}

bench_reverse_limpet() {
    local p why
    record ran limpet-R 1
    [[ -x $LIMPET ]] || { note "limpet -R: no binary at $LIMPET, skipped"; return 0; }
    echo "== limpet -R (psk): through the ports the server listens on"
    mapfile -t p < <(freeports 3)
    if ! start_limpet rev psk "${p[0]}" "${p[0]}" -R "127.0.0.1:${p[1]}:127.0.0.1:$SINK_PORT" \
        -R "127.0.0.1:${p[2]}:127.0.0.1:$ECHO_PORT" 2>/dev/null ||
        ! wait_port "${p[1]}" "$LC_PID" || ! wait_port "${p[2]}" "$LC_PID"; then
        if [[ -n $LC_PID ]] && ! kill -0 "$LC_PID" 2>/dev/null; then
            why=$(grep -m 1 " ERROR " "$WORK/rev-client.log" | sed 's/.* ERROR //')
            why="limpet client -R exited at start: ${why:-$(tail -n 1 "$WORK/rev-client.log")}"
        else
            why="the server did not listen on 127.0.0.1:${p[1]} and :${p[2]} within 10 s"
        fi
        echo "   skipped: $why"
        record skipped limpet-R "$why"
        stop "$LC_PID" "$LS_PID"
        return 0
    fi
    measure_reverse limpet-R "${p[1]}" "${p[2]}"
    stop "$LC_PID" "$LS_PID"
}

bench_reverse_ssh() {
    local p cpid
    ssh_up || { echo "== ssh -R: skipped ($SSH_SKIP)"; return 0; }
    echo "== ssh -R ($SSH_FWD_CIPHER): through the ports sshd listens on"
    mapfile -t p < <(freeports 2)
    ssh_start ssh-R "$SSH_FWD_CIPHER" -R "127.0.0.1:${p[0]}:127.0.0.1:$SINK_PORT" \
        -R "127.0.0.1:${p[1]}:127.0.0.1:$ECHO_PORT"
    cpid=$LAST_PID
    if ! wait_port "${p[0]}" "$cpid" || ! wait_port "${p[1]}" "$cpid"; then
        echo "   skipped: ssh -R did not start: $(tail -n 1 "$WORK/ssh-R.log")"
        stop "$cpid"
        return 0
    fi
    measure_reverse ssh-R "${p[0]}" "${p[1]}"
    stop "$cpid"
    settle "$SSHD_PID"
}

# conn_levels NAME "CLIENT_PIDS" "SERVER_PIDS" PORT: lpbench connconc at each of SCALE_LEVELS
# through PORT (an echo forward), with the peak RSS of both sides during each level.
conn_levels() {
    local name=$1 clist=$2 slist=$3 port=$4 level failed
    for level in "${SCALE_LEVELS[@]}"; do
        sampled "$name-c$level" "$clist" "$slist" "$LPBENCH" connconc "127.0.0.1:$port" "$level" \
            "$SCALE_CONNS" "$SCALE_SECONDS"
        if [[ $RUN_RC -ne 0 ]]; then
            note "$name: $level at once failed: $RUN_OUT"
            continue
        fi
        record "scale_rate$level" "$name" "$(field rate "$RUN_OUT")"
        record "scale_p50_$level" "$name" "$(field p50_us "$RUN_OUT")"
        record "scale_rss_client$level" "$name" "$PEAK_CLIENT"
        record "scale_rss_server$level" "$name" "$PEAK_SERVER"
        printf '   %4d at once: %s\n                 peak RSS: client %s KiB, server %s KiB\n' \
            "$level" "$RUN_OUT" "$PEAK_CLIENT" "$PEAK_SERVER"
        failed=$(field failed "$RUN_OUT")
        [[ $failed == 0 ]] || note "$name: $failed of the connections at $level at once failed"
    done
}

# start_wide NAME MODE SERVER_PORT LOCAL_PORT: a limpet pair (LC_PID, LS_PID) with one -L to
# the echo target and room for many streams on both sides; false, with nothing left running,
# when it did not start.
start_wide() {
    local name=$1 mode=$2 sport=$3 lport=$4 ok=0
    SERVER_EXTRA=("${WIDE[@]}")
    { start_limpet "$name" "$mode" "$sport" "$sport" -L "$lport:127.0.0.1:$ECHO_PORT" \
        "${WIDE[@]}" && wait_log "$name-client" "forward listening on" "$LC_PID"; } || ok=1
    SERVER_EXTRA=()
    [[ $ok -eq 0 ]] || stop "$LC_PID" "$LS_PID"
    return "$ok"
}

bench_connscale_limpet() {
    local p
    record ran limpet-connscale 1
    [[ -x $LIMPET ]] || { note "limpet connscale: no binary at $LIMPET, skipped"; return 0; }
    echo "== limpet -L (psk): connections/s with ${SCALE_LEVELS[*]} in flight" \
        "($SCALE_CONNS each, at most ${SCALE_SECONDS}s)"
    mapfile -t p < <(freeports 2)
    start_wide scale psk "${p[0]}" "${p[1]}" ||
        { note "limpet connscale: the pair did not start"; return 0; }
    "$LPBENCH" connrate "127.0.0.1:${p[1]}" 10 5 >/dev/null || true # code paths faulted in
    echo "   idle: client $(rss_kib "$LC_PID") KiB, server $(rss_kib "$LS_PID") KiB"
    conn_levels limpet-connscale "$LC_PID" "$LS_PID" "${p[1]}"
    echo "   VmHWM at the end: client $(hwm_kib "$LC_PID") KiB, server $(hwm_kib "$LS_PID") KiB"
    stop "$LC_PID" "$LS_PID"
}

bench_connscale_ssh() {
    local p cpid spids=()
    ssh_up || { echo "== ssh -L connscale: skipped ($SSH_SKIP)"; return 0; }
    echo "== ssh -L ($SSH_FWD_CIPHER): connections/s with ${SCALE_LEVELS[*]} in flight;" \
        "server RSS: every sshd process of the session"
    p=$(freeports 1)
    ssh_start ssh-connscale "$SSH_FWD_CIPHER" -L "127.0.0.1:$p:127.0.0.1:$ECHO_PORT"
    cpid=$LAST_PID
    if ! wait_port "$p" "$cpid"; then
        echo "   skipped: ssh -L did not start: $(tail -n 1 "$WORK/ssh-connscale.log")"
        stop "$cpid"
        return 0
    fi
    "$LPBENCH" connrate "127.0.0.1:$p" 10 5 >/dev/null || true
    mapfile -t spids < <(descendants "$SSHD_PID")
    echo "   idle: client $(rss_kib "$cpid") KiB, server $(rss_sum "${spids[@]}") KiB" \
        "(sshd processes ${spids[*]})"
    conn_levels ssh-connscale "$cpid" "${spids[*]}" "$p"
    stop "$cpid"
    settle "$SSHD_PID"
}

# median_connrate PORT: the median rate of three one-at-a-time connection runs.
median_connrate() {
    local out rates=()
    for _ in 1 2 3; do
        out=$("$LPBENCH" connrate "127.0.0.1:$1" "$CONNS" "$SECONDS_CAP" 2>&1) ||
            { note "streamcost: connrate failed: $out"; return 1; }
        rates+=("$(field rate "$out")")
    done
    printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p
}

# One limpet pair (no TLS: the cost in question is the multiplexer's): connections/s one at a
# time with no other stream, then with $HOLD idle streams open through the same tunnel.
bench_streamcost() {
    local p hold_pid r0 r1
    record ran streamcost 1
    [[ -x $LIMPET ]] || { note "streamcost: no binary at $LIMPET, skipped"; return 0; }
    echo "== limpet: a new stream's cost with 0, then $HOLD idle streams open in the tunnel" \
        "(median of 3 x $CONNS connections, one at a time)"
    mapfile -t p < <(freeports 2)
    start_wide cost insecure "${p[0]}" "${p[1]}" ||
        { note "streamcost: the pair did not start"; return 0; }
    "$LPBENCH" connrate "127.0.0.1:${p[1]}" 10 5 >/dev/null || true
    if r0=$(median_connrate "${p[1]}"); then
        record cost_rate0 limpet "$r0"
        echo "   0 open: $r0 connections/s"
    fi
    start cost-hold "$LPBENCH" hold "127.0.0.1:${p[1]}" "$HOLD"
    hold_pid=$LAST_PID
    if wait_log cost-hold "^ready" "$hold_pid"; then
        sleep 0.5
        if r1=$(median_connrate "${p[1]}"); then
            record cost_rateN limpet "$r1"
            record cost_hold limpet "$HOLD"
            echo "   $HOLD open: $r1 connections/s (ratio $(awk -v a="$r1" -v b="${r0:-0}" \
                'BEGIN{print (b > 0 ? sprintf("%.2f", a / b) : "-")}'))"
        fi
    else
        tail_log cost-hold
    fi
    stop "$hold_pid" "$LC_PID" "$LS_PID"
}

# Issue 14: upgrades in place under 100 sessions and 1,000 streams (scripts/bench_upgrade.py
# starts and stops its own server, clients and echo target).
bench_upgrade() {
    local out sessions=${BENCH_UPGRADE_SESSIONS:-100} streams=${BENCH_UPGRADE_STREAMS:-1000}
    record ran upgrade 1
    [[ -x $LIMPET ]] || { note "upgrade: no binary at $LIMPET, skipped"; return 0; }
    echo "== limpet: upgrade in place (SIGUSR2) with $sessions sessions and $streams streams open"
    if out=$("$PYTHON" "$ROOT/scripts/bench_upgrade.py" --limpet "$LIMPET" --workdir "$WORK" \
        --sessions "$sessions" --streams "$streams" --rounds "${BENCH_UPGRADE_ROUNDS:-3}" 2>&1) &&
        [[ $(field ok "$(tail -n 1 <<<"$out")") == 1 ]]; then
        out=$(tail -n 1 <<<"$out")
        record upgrade_median limpet "$(field median_ms "$out")"
        record upgrade_max limpet "$(field max_ms "$out")"
        record upgrade_bytes limpet "$(field state_bytes "$out")"
        record upgrade_sessions limpet "$sessions"
        record upgrade_streams limpet "$(field streams "$out")"
        echo "   $out"
    else
        note "upgrade: $out"
    fi
}

# Issue 15: limpet behind HAProxy against limpet direct (scripts/bench_haproxy.py starts and
# stops its own servers, HAProxy, relay and clients; the load goes to this run's targets).
bench_haproxy() {
    local out sessions=${BENCH_HAPROXY_SESSIONS:-100} hp
    record ran haproxy 1
    [[ -x $LIMPET ]] || { note "haproxy: no binary at $LIMPET, skipped"; return 0; }
    hp=$(command -v haproxy || echo /usr/sbin/haproxy)
    [[ -x $hp ]] || { note "haproxy: not installed (scripts/install-deps.sh), skipped"; return 0; }
    echo "== limpet (psk) direct against limpet behind HAProxy (1 node, 3 nodes): connections/s through" \
        "-L, 1-stream throughput, resume of $sessions sessions cut at once"
    if out=$("$PYTHON" "$ROOT/scripts/bench_haproxy.py" --limpet "$LIMPET" --lpbench "$LPBENCH" \
        --workdir "$WORK" --sink "$SINK_PORT" --echo "$ECHO_PORT" --haproxy "$hp" \
        --sessions "$sessions" --rounds "${BENCH_HAPROXY_ROUNDS:-3}" \
        --bytes "${BENCH_HAPROXY_BYTES:-268435456}" --conns "$CONNS" \
        --seconds "$SECONDS_CAP" 2>&1) && [[ $(field ok "$(tail -n 1 <<<"$out")") == 1 ]]; then
        printf '   %s\n' "${out//$'\n'/$'\n'   }"
        out=$(tail -n 1 <<<"$out")
        for path in direct haproxy1 haproxy; do
            record haproxy_connrate "$path" "$(field "${path}_connrate" "$out")"
            record haproxy_tput1 "$path" "$(field "${path}_tput1" "$out")"
            record haproxy_resume_median "$path" "$(field "${path}_resume_median_ms" "$out")"
            record haproxy_resume_max "$path" "$(field "${path}_resume_max_ms" "$out")"
        done
        record haproxy_sessions limpet "$sessions"
    else
        note "haproxy: $out"
    fi
}

# ensure_targets: a target that has died (its exit status says how) is noted and started again
# on its port, so one lost target does not fail every later row. The row that was running when
# it died shows the failures.
ensure_targets() {
    local kind pid port rc var
    for kind in sink echo http; do
        var=${kind^^}
        pid=${var}_PID port=${var}_PORT
        pid=${!pid} port=${!port}
        kill -0 "$pid" 2>/dev/null && continue
        rc=0
        wait "$pid" 2>/dev/null || rc=$?
        note "the $kind target (pid $pid) had died with status $rc; started again on port $port"
        stop "$pid"
        start "$kind-again" "$LPBENCH" "$kind" "$port"
        wait_log "$kind-again" "^port " "$LAST_PID" || exit 1
        printf -v "${var}_PID" '%s' "$LAST_PID"
    done
}

# ---- main ---------------------------------------------------------------------------------

if ! ulimit -n 8192 2>/dev/null; then
    note "could not raise the fd limit to 8192 (it is $(ulimit -n)); the $HOLD-connection test may fail"
fi
cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -o "$LPBENCH" \
    "$ROOT/tests/bench/lpbench.c"
command -v socat >/dev/null 2>&1 || { note "socat is required (scripts/install-deps.sh)"; exit 1; }

echo "limpet bench on $(nproc) CPUs, $(uname -r); work dir $WORK"
record cores bench "$(nproc)" # the wall-clock ratios are read against this
echo "   throughput: $BYTES bytes per run (at most ${SECONDS_CAP}s); ping-pong: $PINGS round trips;" \
    "connections: $CONNS (at most ${SECONDS_CAP}s)"
start sink "$LPBENCH" sink 0
wait_log sink "^port " "$LAST_PID" || exit 1
# shellcheck disable=SC2034 # the PID is read by name in ensure_targets
SINK_PORT=$(port_of sink) SINK_PID=$LAST_PID
start echo "$LPBENCH" echo 0
wait_log echo "^port " "$LAST_PID" || exit 1
# shellcheck disable=SC2034 # the PID is read by name in ensure_targets
ECHO_PORT=$(port_of echo) ECHO_PID=$LAST_PID
start http "$LPBENCH" http 0
wait_log http "^port " "$LAST_PID" || exit 1
# shellcheck disable=SC2034 # the PID is read by name in ensure_targets
HTTP_PORT=$(port_of http) HTTP_PID=$LAST_PID

# The paths the ratios compare run in BENCH_REPEAT passes, one run per figure each, every
# path once per pass (A B C, A B C, A B C): the machine's speed drifts over minutes, and a path
# measured only at the start, when the VM ran fast, could otherwise be set against one
# measured only later. The table takes each figure's median over the passes. The other rows
# (memory, resume, the ceiling, the scale and upgrade runs) run once, after the passes.
PASSED=" direct socat socat64k limpet limpet-tls limpet-psk limpet-cert limpet-psk-mbedtls "
PASSED+="limpet-cert-mbedtls stunnel ssh ssh-aesgcm ssh-chacha "
ONCE=1 # 1: the extras of a compared row (memory, resume) run in this pass: the last one

# run_row WHAT: one BENCH_ONLY entry.
run_row() {
    local what=$1 mode
    ensure_targets
    case $what in
    direct) bench_direct ;;
    socat) bench_socat socat ;;
    socat64k) bench_socat socat64k -b 65536 ;;
    limpet)
        bench_limpet limpet insecure || return 0
        ((!ONCE)) || { bench_limpet_memory && bench_limpet_resume limpet insecure; } ;;
    limpet-tls)
        for mode in psk cert; do
            bench_limpet "limpet-$mode" "$mode" || return 0
            ((!ONCE)) || bench_limpet_resume "limpet-$mode" "$mode"
        done
        for mode in psk-mbedtls cert-mbedtls; do bench_limpet "limpet-$mode" "$mode"; done ;;
    limpet-psk | limpet-cert)
        bench_limpet "$what" "${what#limpet-}" || return 0
        ((!ONCE)) || bench_limpet_resume "$what" "${what#limpet-}" ;;
    limpet-psk-mbedtls | limpet-cert-mbedtls) bench_limpet "$what" "${what#limpet-}" ;;
    tls-memory) bench_tls_memories ;;
    ceiling) bench_ceiling ;;
    stunnel) bench_stunnel ;;
    ssh) bench_ssh ssh-aesgcm ssh-chacha ;;
    ssh-aesgcm | ssh-chacha) bench_ssh "$what" ;;
    dynamic) bench_dynamic_limpet && bench_dynamic_ssh ;;
    limpet-D) bench_dynamic_limpet ;;
    ssh-D) bench_dynamic_ssh ;;
    reverse) bench_reverse_limpet && bench_reverse_ssh ;;
    limpet-R) bench_reverse_limpet ;;
    ssh-R) bench_reverse_ssh ;;
    connscale) bench_connscale_limpet && bench_connscale_ssh ;;
    limpet-connscale) bench_connscale_limpet ;;
    ssh-connscale) bench_connscale_ssh ;;
    streamcost) bench_streamcost ;;
    upgrade) bench_upgrade ;;
    haproxy) bench_haproxy ;;
    *) note "unknown BENCH_ONLY entry: $what" ;;
    esac
}

INNER=1
for ((pass = 1; pass <= REPEAT; pass++)); do
    ONCE=$((pass == REPEAT))
    for what in $ONLY; do
        [[ $PASSED == *" $what "* ]] || continue
        echo "-- $what: pass $pass of $REPEAT"
        run_row "$what"
    done
done
INNER=$REPEAT
for what in $ONLY; do
    [[ $PASSED == *" $what "* ]] || run_row "$what"
done

echo
"$PYTHON" "$TOOLS" table "$RESULTS"
echo "logs and raw results in $WORK"
