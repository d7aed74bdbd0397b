#!/bin/bash
# --read_file: sysbench traffic captured with tcpdump, then replayed from the
# file by the agent (which exits 0 at the end of the file); the queue must
# equal the general log of that run, exactly.
. "$(dirname "$0")/lib.sh"
require_root
PIN_IF=offline
q=gt-file
cap=$T_WORK/sysbench.pcap

tcpdump_ready() { grep -q 'listening on' "$T_WORK/tcpdump.err"; }
# A query sent after sysbench finished: once tcpdump has written it, every
# earlier packet on lo is in the file too.
sentinel=mrte-sentinel-$$
sentinel_in_file() { grep -qa "$sentinel" "$cap"; }

general_log_reset
tcpdump -i lo -s 0 -B 131072 -U --immediate-mode -w "$cap" "tcp dst port $MYSQL_PORT" 2>"$T_WORK/tcpdump.err" &
tpid=$!
check "tcpdump started" wait_for 10 "tcpdump listening" tcpdump_ready
echo "  sysbench: $(sysbench_run 6 4) transactions"
mysql_tcp mrte mrtepw -e "SELECT '$sentinel'" >/dev/null
check "capture file holds everything sent" wait_for 10 "sentinel in capture" sentinel_in_file
kill -INT "$tpid"
wait "$tpid"
# The oracle is only as good as the capture: it must have lost nothing.
check "tcpdump dropped nothing" grep -q '^0 packets dropped by kernel' "$T_WORK/tcpdump.err"
general_log_dump sbtest "$T_WORK/log.tsv"

delete_queue "$q"
declare_queue "$q"
t0=$SECONDS
"$AGENT" --read_file="$cap" --local_ip=127.0.0.1 --port="$MYSQL_PORT" \
	--rabbitmq_port="$AMQP_PORT" --rabbitmq_exchange_name="$EXCHANGE" --pin_dir="$PIN_ROOT" --thread_count=4 >"$T_WORK/agent.out" 2>"$T_WORK/agent.err"
rc=$?
check_eq "agent exits 0 at the end of the file" 0 "$rc"
check "agent said the file ended" grep -q "end of file" "$T_WORK/agent.err"
echo "  replayed in $((SECONDS - t0)) s"
grep -E 'totals' "$T_WORK/agent.err" | sed 's/^/  /'
dump_queue "$q" "$T_WORK/dump.tsv"
check "queue decodes cleanly" test $? -eq 0
check "general log == queue for the replayed file" \
	"$PY" tests/lib/compare.py "$T_WORK/log.tsv" "$T_WORK/dump.tsv" --user sbtest
check "LOCAL_IP is --local_ip" "$DUMP" --rabbitmq_port="$AMQP_PORT" --queue="$q" --idle_ms=10 --quiet
check "pins removed" no_pins
delete_queue "$q"

# A file that is not a capture: a clear error, exit 1, no crash.
echo "not a pcap" >"$T_WORK/bad.pcap"
"$AGENT" --read_file="$T_WORK/bad.pcap" --local_ip=127.0.0.1 --sink=null 2>"$T_WORK/bad.err"
check_eq "a bad capture file exits 1" 1 $?
check "... saying why" grep -q "cannot read $T_WORK/bad.pcap" "$T_WORK/bad.err"
finish
