#!/bin/bash
# A well-behaved host agent: SIGKILL leaves nothing attached (bpf_link), a
# stale pin directory from a killed run is replaced at the next start and
# removed on a clean exit; SIGTERM exits 0 within 2 s even mid-traffic.
. "$(dirname "$0")/lib.sh"
require_root

for mode in xdp tc; do
	start_agent "kill-$mode" --interface=lo --port="$MYSQL_PORT" --sink=null \
		--capture="$mode" --pin_dir="$PIN_ROOT"
	check "$mode: program attached while running" program_attached
	kill -KILL "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null
	AGENT_PID=
	check "$mode: nothing attached after SIGKILL" wait_for 5 "links released" nothing_attached
	check "$mode: the killed run left its pins" test -e "$PIN_ROOT/lo/kstats"
done

# Restart over the stale pins: replaced, then removed on a clean exit.
start_agent restart --interface=lo --port="$MYSQL_PORT" --sink=null --pin_dir="$PIN_ROOT"
check "stale pins replaced at start" grep -q "replaced stale pin" "$AGENT_LOG"
check "fresh pins readable" test "$(kstat frames)" -ge 0
# SIGTERM in the middle of traffic.
sysbench_run 3 4 >/dev/null &
sb=$!
wait_until 10 "traffic flowing" '[ "$(kstat matched)" -gt 1000 ]'
stop_agent
wait "$sb"
check_eq "SIGTERM mid-traffic: exit status" 0 "$AGENT_RC"
check "SIGTERM mid-traffic: exit within 2 s (${AGENT_STOP_MS} ms)" test "$AGENT_STOP_MS" -lt 2000
check "pins removed after a clean exit" no_pins
check "nothing attached after a clean exit" nothing_attached

# SIGINT works the same way.
start_agent sigint --interface=lo --port="$MYSQL_PORT" --sink=null --pin_dir="$PIN_ROOT"
kill -INT "$AGENT_PID"
wait "$AGENT_PID"
check_eq "SIGINT: exit status" 0 $?
AGENT_PID=
finish
