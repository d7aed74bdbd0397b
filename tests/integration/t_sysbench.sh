#!/bin/bash
# Ground truth, per capture backend: sysbench oltp_read_write (text protocol,
# 8 threads, 10 s) through the agent started with the original collector's
# flags; every statement MariaDB's general log recorded for those sessions
# must be in the queue exactly once, in order per session, nothing extra.
# The queue is read while the agent still runs (so the last statements must
# have been flushed by --read_timeout, not by the shutdown), then the agent
# gets SIGTERM: exit 0 within 2 s, nothing left attached, pins removed.
. "$(dirname "$0")/lib.sh"
require_root

run_backend() {
	local mode=$1 expect=$2 q=gt-$1
	local dump=$T_WORK/$mode.tsv log=$T_WORK/$mode.log.tsv
	echo "--- $mode"
	delete_queue "$q"
	declare_queue "$q" || { check "$mode: queue declared" false; return; }
	general_log_reset
	# shellcheck disable=SC2046
	start_agent "gt-$mode" $(original_flags) --capture="$mode" || { check "$mode: agent started" false; return; }
	check "$mode: agent runs on $expect" grep -q "capture: $expect" "$AGENT_LOG"
	local tx
	tx=$(sysbench_run 10 8)
	echo "  sysbench: $tx transactions"
	check "$mode: every captured segment published and confirmed while running" \
		wait_for 15 "agent drained" agent_drained
	dump_queue "$q" "$dump"
	check "$mode: queue decodes cleanly (player's checks)" test $? -eq 0
	stop_agent
	check_eq "$mode: exit status after SIGTERM" 0 "$AGENT_RC"
	check "$mode: exited within 2 s of SIGTERM (${AGENT_STOP_MS} ms)" test "$AGENT_STOP_MS" -lt 2000
	dump_queue "$q" "$dump"
	general_log_dump sbtest "$log"
	check "$mode: general log == queue (exact, ordered, no extra)" \
		"$PY" tests/lib/compare.py "$log" "$dump" --user sbtest
	check "$mode: nothing attached after exit" nothing_attached
	check "$mode: pins removed after exit" no_pins
	grep -E 'totals|detail' "$AGENT_LOG" | sed 's/^/  /'
	delete_queue "$q"
}

run_backend xdp "xdp (generic)"
run_backend tc "tc ingress"
run_backend pcap "pcap"
finish
