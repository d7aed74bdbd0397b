#!/bin/bash
# tools/bench.sh -- `sudo make bench`: capture capacity, CPU per packet, memory,
# latency and database impact of every capture backend, side by side.
#
#   sudo make bench                      (installs, builds, then runs this)
#   sudo BUILD=/tmp/b tools/bench.sh     (after `make BUILD=/tmp/b all`)
#
# What it does (about 15 minutes on the 2-core dev VM):
#   1. creates network namespaces mrtb-cli and mrtb-srv joined by the veth
#      pair mrtb-c (10.201.0.1) <-> mrtb-s (10.201.0.2);
#   2. starts a throwaway RabbitMQ + MariaDB on the loopback of mrtb-srv
#      (tests/lib/servers.sh);
#   3. runs tools/bench/bench.py: for XDP native, XDP generic, TC, libpcap
#      (and tcpdump -w /dev/null as the capture-only libpcap reference) it
#      searches the highest loss-free rate, measures CPU per packet, peak RSS,
#      capture->consumer latency, and sysbench transactions/s with the agent
#      off and on;
#   4. prints the table and writes BENCHMARKS.md + BENCHMARKS.png at the repo
#      root; raw numbers and perf data stay in $BUILD/bench/.
# Everything it creates is named mrtb-*, lives in those namespaces, and is
# removed on exit (also on ^C / SIGTERM): processes are stopped by PID.
# It never fails on a number, only when the machinery fails.
#
# Knobs (environment): BUILD (default build), BENCH_REPORT_DIR (default: repo
# root), BENCH_QUICK=1 (a 2-minute smoke run), BENCH_PHASES (subset of
# capacity,cpu,tcp,burst,db,profile), BENCH_STEP_SECONDS, BENCH_GRID,
# BENCH_BISECT_STEPS, BENCH_RATES, BENCH_CPU_ROUNDS, BENCH_FIXED_SECONDS,
# BENCH_DB_ROUNDS, BENCH_DB_SECONDS, BENCH_DB_THREADS (see tools/bench/bench.py).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$REPO/$BUILD ;; esac
REPORT_DIR=${BENCH_REPORT_DIR:-$REPO}
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1
NS_CLI=mrtb-cli
NS_SRV=mrtb-srv

say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, BPF, perf): sudo make bench"
for f in mrte-collector mrte-dump loadgen; do
    [ -x "$BUILD/$f" ] || die "$BUILD/$f not built: run make BUILD=$BUILD all (make bench does)"
done
for c in ip tcpdump perf gnuplot sysbench mariadbd mariadb bpftool epmd lscpu; do
    command -v "$c" >/dev/null 2>&1 || die "missing program: $c (tools/install-deps.sh installs it)"
done
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || die "missing rabbitmq-server"
"$PY" -c 'import pika' 2>/dev/null || die "$PY has no pika (python3-pika)"

T0=$(date +%s)
WORK=""
BENCH_PID=""
BPF_STATS_ORIG=$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null || echo "")

# Stop every process inside one of our namespaces, by PID.
kill_ns_pids() {
    local ns=$1 pids pid i
    ip netns list 2>/dev/null | grep -qw "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    say "stopping leftover processes in $ns: $(echo $pids)"
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 50; i++)); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        sleep 0.1
    done
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.2
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null
        for ((i = 0; i < 200; i++)); do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BENCH_PID" 2>/dev/null
        wait "$BENCH_PID" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -f "$WORK/srv/servers.env" ]; then
        ip netns exec "$NS_SRV" bash -c '. "$1"; . "$2"; servers_stop' _ \
            "$REPO/tests/lib/servers.sh" "$WORK/srv/servers.env" >/dev/null 2>&1
    fi
    kill_ns_pids "$NS_SRV"
    kill_ns_pids "$NS_CLI"
    ip netns del "$NS_CLI" 2>/dev/null
    ip netns del "$NS_SRV" 2>/dev/null
    ip link del mrtb-c 2>/dev/null
    [ -n "$BPF_STATS_ORIG" ] && echo "$BPF_STATS_ORIG" >/proc/sys/kernel/bpf_stats_enabled 2>/dev/null
    rm -f /dev/shm/mrtb-bench-*.bin
    if [ -n "$WORK" ]; then
        if [ -d "$WORK/logs" ]; then
            rm -rf "$BUILD/bench/logs"
            mv "$WORK/logs" "$BUILD/bench/logs"
        fi
        rm -rf "$WORK"
    fi
    if ip netns list 2>/dev/null | grep -q '^mrtb-'; then
        say "WARNING: a mrtb namespace is still there"
        rc=${rc:-1}
    fi
    say "cleaned up (namespaces, servers, processes); $(($(date +%s) - T0)) s in all"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# A previous run killed with SIGKILL may have left its namespaces behind.
for ns in "$NS_SRV" "$NS_CLI"; do
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
        say "removing namespace $ns left by an earlier run"
        kill_ns_pids "$ns"
        ip netns del "$ns"
    fi
done
ip link del mrtb-c 2>/dev/null || true

WORK=$(mktemp -d /tmp/mrtb.XXXXXX)
mkdir -p "$BUILD/bench" "$REPORT_DIR"
RESULTS=$BUILD/bench/results.json
rm -f "$RESULTS" "$BUILD"/bench/perf-*.data "$BUILD"/bench/perf-*.data.old

say "namespaces $NS_CLI <-> $NS_SRV (veth mrtb-c 10.201.0.1 <-> mrtb-s 10.201.0.2)"
ip netns add "$NS_CLI"
ip netns add "$NS_SRV"
ip link add mrtb-c type veth peer name mrtb-s
ip link set mrtb-c netns "$NS_CLI"
ip link set mrtb-s netns "$NS_SRV"
ip -n "$NS_CLI" addr add 10.201.0.1/24 dev mrtb-c
ip -n "$NS_SRV" addr add 10.201.0.2/24 dev mrtb-s
for ns in "$NS_CLI" "$NS_SRV"; do ip -n "$ns" link set lo up; done
ip -n "$NS_CLI" link set mrtb-c up
ip -n "$NS_SRV" link set mrtb-s up
# Frames to 10.201.0.99 (configured nowhere) must die in mrtb-srv, never be forwarded.
ip netns exec "$NS_SRV" sysctl -qw net.ipv4.ip_forward=0

say "RabbitMQ + MariaDB on the loopback of $NS_SRV"
# In a session of their own, so that ^C reaches only this script, which then
# stops them with servers_stop.
ip netns exec "$NS_SRV" setsid -w env MRTE_TEST_MYSQL_PORT= MRTE_TEST_AMQP_PORT= bash -c \
    '. "$1" && servers_start "$2"' _ "$REPO/tests/lib/servers.sh" "$WORK/srv" 2>&1 |
    sed 's/^/  /' >&2
[ -f "$WORK/srv/servers.env" ] || die "servers did not start"

say "measuring (raw numbers: $RESULTS)"
"$PY" "$REPO/tools/bench/bench.py" run --build "$BUILD" --work "$WORK" \
    --servers-env "$WORK/srv/servers.env" --out "$RESULTS" &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=""
[ "$rc" = 130 ] && { say "interrupted"; exit 130; }
[ "$rc" = 0 ] || die "measurement failed (rc $rc); partial results in $RESULTS, logs in $BUILD/bench/logs"

"$PY" "$REPO/tools/bench/bench.py" report "$RESULTS" --md "$REPORT_DIR/BENCHMARKS.md" \
    --png "$REPORT_DIR/BENCHMARKS.png" --runtime "$(($(date +%s) - T0))"
