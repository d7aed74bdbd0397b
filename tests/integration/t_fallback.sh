#!/bin/bash
# --capture=auto: XDP native -> XDP generic -> TC -> pcap, one log line
# saying what was chosen and why each better backend was refused.  Each
# refusal is forced with MRTE_PROBE_DENY.  Explicit choices never fall back.
. "$(dirname "$0")/lib.sh"
require_root

# auto_run NAME DENY: start with --capture=auto, then stop.
auto_run() {
	local name=$1 deny=$2
	MRTE_PROBE_DENY=$deny start_agent "$name" --interface=lo --port="$MYSQL_PORT" \
		--sink=null --pin_dir="$PIN_ROOT"
	stop_agent
}

auto_run plain ""
check "auto on lo: XDP generic" grep -q "capture: xdp (generic) on lo" "$AGENT_LOG"
check "... saying why not native" grep -q "not chosen: xdp native: the driver has no native XDP" "$AGENT_LOG"

auto_run no-native xdp_native
check "xdp_native refused: XDP generic" grep -q "capture: xdp (generic)" "$AGENT_LOG"
check "... naming the refusal" grep -q "xdp native: refused by MRTE_PROBE_DENY" "$AGENT_LOG"

auto_run no-xdp xdp_native,xdp_generic
check "XDP refused: TC" grep -q "capture: tc ingress" "$AGENT_LOG"
check "... naming both XDP refusals" grep -q "xdp native: refused.*xdp generic: refused" "$AGENT_LOG"

auto_run no-bpf-progs xdp_native,xdp_generic,tc
check "XDP and TC refused: pcap" grep -q "capture: pcap on lo" "$AGENT_LOG"
check "... naming all three refusals" grep -q "xdp native: refused.*xdp generic: refused.*tc: refused" "$AGENT_LOG"
check "... counters still pinned in pcap mode" grep -q "counters pinned" "$AGENT_LOG"

auto_run no-bpf bpf
check "no BPF at all: pcap" grep -q "capture: pcap on lo" "$AGENT_LOG"
check "... and nothing pinned" bash -c "! grep -q 'counters pinned' '$AGENT_LOG'"
check_eq "... exit status" 0 "$AGENT_RC"

# An explicit backend that cannot be had is an error, not a fallback.
MRTE_PROBE_DENY=tc "$AGENT" --interface=lo --sink=null --capture=tc --pin_dir="$PIN_ROOT" 2>"$T_WORK/tc.err"
check_eq "--capture=tc refused: exit 1" 1 $?
check "... with the reason" grep -q -- "--capture=tc: no capture backend could start on lo: tc: refused by MRTE_PROBE_DENY" "$T_WORK/tc.err"
"$AGENT" --interface=lo --sink=null --capture=xdp --xdp_mode=native --pin_dir="$PIN_ROOT" 2>"$T_WORK/native.err"
check_eq "--xdp_mode=native on lo: exit 1" 1 $?
check "... the driver has no native XDP" grep -q "the driver has no native XDP" "$T_WORK/native.err"
# Kernels before 6.6 have no tcx: the TC program goes in as a classic
# clsact filter.  Forced here with MRTE_PROBE_DENY=tcx.
tc_filters() { tc filter show dev lo ingress 2>/dev/null | grep -c 'mrte_tc'; }
clsact_on_lo() { tc qdisc show dev lo | grep -q clsact; }
had_clsact=$(clsact_on_lo && echo yes)
MRTE_PROBE_DENY=tcx start_agent classic --interface=lo --port="$MYSQL_PORT" --sink=null \
	--capture=tc --pin_dir="$PIN_ROOT"
check "no tcx: classic clsact filter" grep -q "capture: tc ingress (classic clsact filter" "$AGENT_LOG"
check_eq "... one filter of ours on lo ingress" 1 "$(tc_filters)"
kill -KILL "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=
check_eq "... a SIGKILL leaves it (documented: no link to die with us)" 1 "$(tc_filters)"
MRTE_PROBE_DENY=tcx start_agent classic2 --interface=lo --port="$MYSQL_PORT" --sink=null \
	--capture=tc --pin_dir="$PIN_ROOT"
check "... the next start replaces it" grep -q "replacing the TC filter left by an agent" "$AGENT_LOG"
check_eq "... still exactly one filter" 1 "$(tc_filters)"
stop_agent
check_eq "... a clean exit removes it" 0 "$(tc_filters)"
# The clsact qdisc was created by the first (killed) run, so the second did
# not create it and leaves it: remove it here, as an operator would (only
# if it was not there before the test).
[ -z "$had_clsact" ] && clsact_on_lo && tc qdisc del dev lo clsact
check "nothing attached after all that" nothing_attached
finish
