# shellcheck shell=bash
# tests/integration/lib.sh -- helpers for the integration tests.
#
# run.sh starts one throwaway MariaDB + RabbitMQ for all tests and exports
# their ports (tests/lib/servers.sh); each test sources this file.  Every
# agent a test starts is stopped by PID in the EXIT trap, and the trap
# checks that no program of ours is left attached.

. "$(dirname "${BASH_SOURCE[0]}")/../lib/assert.sh"
# The server functions (general_log_*, sysbench_*, mysql_tcp); run.sh started
# the servers and exported where they are.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/servers.sh"

BUILD=${BUILD:-build}
AGENT=$BUILD/mrte-collector
DUMP=$BUILD/mrte-dump
PY=/usr/bin/python3
# Each test pins under its own directory and publishes to its own exchange,
# so nothing it asserts can come from another agent.
PIN_ROOT=/sys/fs/bpf/mrte-it-$$
EXCHANGE=mrte-it-$$
T_WORK=$(mktemp -d /tmp/mrte-it.XXXXXX)
AGENT_PID=
AGENT_LOG=
AGENT_OUT=

# The original collector's flags, pointing at our throwaway servers.
original_flags() {
	echo --interface=lo --port="$MYSQL_PORT" --snapshot_len=8192 --read_timeout=100 \
		--queue_size=100 --thread_count=4 --rabbitmq_host=127.0.0.1 \
		--rabbitmq_port="$AMQP_PORT" --rabbitmq_user=guest --rabbitmq_password=guest \
		--rabbitmq_exchange_name="$EXCHANGE" --pin_dir="$PIN_ROOT"
}

# start_agent NAME ARGS...: run the agent in the background and wait until
# it has attached (its "capture:" log line) -- or fail with its log.
start_agent() {
	local name=$1 before
	shift
	AGENT_LOG=$T_WORK/$name.err
	AGENT_OUT=$T_WORK/$name.out
	before=$(mrte_prog_ids)
	"$AGENT" "$@" >"$AGENT_OUT" 2>"$AGENT_LOG" &
	AGENT_PID=$!
	if ! wait_for 20 "agent attached" agent_ready; then
		echo "--- agent log:"
		cat "$AGENT_LOG"
		return 1
	fi
	# The programs this agent loaded: the ones that were not there before.
	local id
	for id in $(mrte_prog_ids); do
		case " $before " in *" $id "*) ;; *) OUR_PROGS="$OUR_PROGS $id" ;; esac
	done
}

agent_ready() {
	grep -q 'capture: ' "$AGENT_LOG" 2>/dev/null && kill -0 "$AGENT_PID" 2>/dev/null
}

agent_alive() {
	[ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null
}

# stop_agent: SIGTERM, then record exit status and seconds to exit.
AGENT_RC=
AGENT_STOP_MS=
stop_agent() {
	[ -n "$AGENT_PID" ] || return 0
	local t0 t1
	t0=$(date +%s%N)
	kill -TERM "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID"
	AGENT_RC=$?
	t1=$(date +%s%N)
	AGENT_STOP_MS=$(((t1 - t0) / 1000000))
	AGENT_PID=
}

# Counters from the pinned maps: agent_stat FIELD / kstat FIELD (sum over CPUs).
map_field() {
	local map=$1 field=$2
	bpftool -j map dump pinned "$map" 2>/dev/null | "$PY" -c '
import json, sys
field = sys.argv[1]
data = json.load(sys.stdin)
total = 0
for entry in data:
    if "formatted" in entry:
        entry = entry["formatted"]
    if "values" in entry:
        for v in entry["values"]:
            total += v["value"][field]
    else:
        total += entry["value"][field]
print(total)
' "$field"
}
agent_stat() { map_field "$PIN_ROOT/${PIN_IF:-lo}/agent_stats" "$1"; }
kstat() { map_field "$PIN_ROOT/${PIN_IF:-lo}/kstats" "$1"; }

# Everything captured so far is published and confirmed by the broker.
# Segments with payload the capture saw == segments the publishers took
# care of, and nothing waits or is in flight.
agent_drained() {
	local seen done q inflight
	seen=$(kstat segments) || return 1
	done=$(($(agent_stat segments_published) + $(agent_stat retransmit_segments) + $(agent_stat drop_desync) + $(agent_stat drop_self)))
	q=$(agent_stat queue_depth)
	inflight=$(agent_stat mq_inflight)
	[ "$seen" -gt 0 ] && [ "$seen" -eq "$done" ] && [ "$q" -eq 0 ] && [ "$inflight" -eq 0 ]
}

declare_queue() { "$DUMP" --rabbitmq_port="$AMQP_PORT" --declare --exchange="$EXCHANGE" --queue="$1"; }
delete_queue() { "$DUMP" --rabbitmq_port="$AMQP_PORT" --delete --queue="$1" >/dev/null 2>&1 || true; }
# dump_queue QUEUE OUT.tsv [more mrte-dump flags]: consume until idle 1 s.
dump_queue() {
	local q=$1 out=$2
	shift 2
	"$DUMP" --rabbitmq_port="$AMQP_PORT" --queue="$q" --format=tsv --idle_ms=1000 "$@" >>"$out"
}

# Programs named mrte_* loaded right now (ids).  bpftool net show does not
# name XDP programs and does not list tcx links, so ask for programs.
mrte_prog_ids() {
	bpftool -j prog show 2>/dev/null | "$PY" -c '
import json, sys
print(" ".join(str(p["id"]) for p in json.load(sys.stdin) if p.get("name", "").startswith("mrte_")))'
}
OUR_PROGS=

# None of the programs our agents loaded is still loaded (an attached
# program stays loaded; once its link or filter is gone and the agent's fds
# are closed, the kernel unloads it).  Only our own ids count, so another
# agent on the machine (a benchmark in its namespace) cannot fail this.
# The kernel releases a detached program asynchronously (a TC filter's
# after an RCU grace period), so allow it a moment.
none_of_ours_loaded() {
	local now id
	now=" $(mrte_prog_ids) "
	for id in $OUR_PROGS; do
		case "$now" in *" $id "*) return 1 ;; esac
	done
	return 0
}
nothing_attached() {
	wait_for 3 "programs released" none_of_ours_loaded
}
# ...and while an agent runs: one of its programs is attached (held by a
# link -- XDP or tcx; bpftool 7.1 does not say to which device -- or by a
# classic clsact filter on lo).
program_attached() {
	local ids
	ids=$(bpftool -j link show 2>/dev/null | "$PY" -c '
import json, sys
print(" ".join(str(l["prog_id"]) for l in json.load(sys.stdin)))')
	local id
	for id in $ids; do
		case " $OUR_PROGS " in *" $id "*) return 0 ;; esac
	done
	tc filter show dev lo ingress 2>/dev/null | grep -q 'mrte_tc'
}
no_pins() {
	[ ! -e "$PIN_ROOT/${PIN_IF:-lo}" ]
}

it_cleanup() {
	if agent_alive; then
		kill -KILL "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null
	fi
	rmdir "$PIN_ROOT" 2>/dev/null
	if [ "${MRTE_TEST_KEEP:-0}" = 1 ]; then
		echo "kept $T_WORK"
	else
		rm -rf "$T_WORK"
	fi
}
trap it_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
