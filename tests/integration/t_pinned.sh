#!/bin/bash
# Counters readable from outside: while the agent runs, `bpftool -j map dump
# pinned` on kstats and agent_stats prints named fields, and they agree with
# the traffic a scripted client sent (every packet it wrote is known).
. "$(dirname "$0")/lib.sh"
require_root
q=pinned

run_pinned() {
	local mode=$1
	delete_queue "$q"
	declare_queue "$q"
	# shellcheck disable=SC2046
	start_agent "pinned-$mode" $(original_flags) --capture="$mode" || return
	# 3 sessions x (handshake + 40 queries + ping + quit), known to the byte.
	local steps=() i
	for i in $(seq 40); do steps+=("q:SELECT $i /* pinned $mode */"); done
	"$PY" tests/lib/mysql_wire_client.py --port "$MYSQL_PORT" --user sbtest --password sbtest \
		--db sbtest --sessions 3 --dump "$T_WORK/$mode.sent.tsv" "${steps[@]}" ping
	local sent
	sent=$(grep -vc '^#' "$T_WORK/$mode.sent.tsv")
	echo "  client wrote $sent packets"
	check "$mode: drained" wait_for 10 "agent drained" agent_drained

	local json=$T_WORK/$mode.agent.json
	bpftool -j map dump pinned "$PIN_ROOT/lo/agent_stats" >"$json"
	check "$mode: agent_stats dumps with named fields" grep -q '"segments_published"' "$json"
	bpftool map dump pinned "$PIN_ROOT/lo/kstats" >"$T_WORK/$mode.kstats.txt"
	check "$mode: kstats dumps per CPU with named fields" grep -q 'drop_ring_full' "$T_WORK/$mode.kstats.txt"
	check_eq "$mode: units published == packets the client wrote" "$sent" "$(agent_stat units)"
	check_eq "$mode: segments published == packets the client wrote" "$sent" "$(agent_stat segments_published)"
	check_eq "$mode: segments with payload captured" "$sent" "$(kstat segments)"
	check "$mode: matched counts the pure ACKs and SYN/FIN too" test "$(kstat matched)" -gt "$sent"
	check_eq "$mode: nothing dropped" 0 "$(($(kstat drop_ring_full) + $(agent_stat drop_desync) + $(agent_stat drop_gap)))"
	check_eq "$mode: no MQ errors" 0 "$(agent_stat mq_errors)"
	check "$mode: messages counted" test "$(agent_stat messages)" -ge 1
	check_eq "$mode: nothing waiting" 0 "$(agent_stat queue_depth)"
	dump_queue "$q" "$T_WORK/$mode.dump.tsv"
	local got
	got=$(grep -vc '^#' "$T_WORK/$mode.dump.tsv")
	check_eq "$mode: the queue holds exactly those packets" "$sent" "$got"
	check "$mode: byte for byte" "$PY" -c '
import sys
def rows(p):
    return sorted(l.split("\t", 1)[1].strip().lower() for l in open(p) if not l.startswith("#"))
sys.exit(0 if rows(sys.argv[1]) == rows(sys.argv[2]) else 1)' "$T_WORK/$mode.sent.tsv" "$T_WORK/$mode.dump.tsv"
	stop_agent
	check "$mode: pins gone after exit" no_pins
}

run_pinned xdp
run_pinned pcap
delete_queue "$q"
finish
