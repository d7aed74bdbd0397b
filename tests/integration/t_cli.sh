#!/bin/bash
# The command line: a bad value is one line naming the flag and exit status
# 2; --help documents every flag with its default; passwords on the command
# line are hidden from ps.
. "$(dirname "$0")/lib.sh"

bad() {
	local flag=$1
	shift
	local err=$T_WORK/bad.err
	"$AGENT" "$@" 2>"$err" >/dev/null
	local rc=$?
	check_eq "bad $flag ($*): exit status" 2 "$rc"
	check "bad $flag: one line naming the flag" \
		bash -c "[ \$(wc -l <'$err') -eq 1 ] && grep -q -- '$flag' '$err'"
}

bad --thread_count --interface=lo --thread_count=11
bad --thread_count --interface=lo --thread_count=x
bad --port --interface=lo --port=0
bad --port --interface=lo --port=3306,3306
bad --capture --interface=lo --capture=ebpf
bad --interface --port=3306
bad --read_file --read_file=/tmp/x.pcap
bad --max_mem_mb --interface=lo --queue_size=100000
bad --sink --interface=lo --sink=file
bad "unknown option" --interface=lo --snaplen=5
bad --rabbitmq_port --interface=lo --rabbitmq_port=70000

"$AGENT" --help >"$T_WORK/help.out"
check_eq "--help exit status" 0 $?
for f in interface port snapshot_len read_timeout queue_size thread_count rabbitmq_host \
	rabbitmq_port rabbitmq_user rabbitmq_password rabbitmq_exchange_name rabbitmq_routing_key \
	mysql_host mysql_user mysql_password max_mem_mb capture xdp_mode batch_packets batch_bytes \
	read_file local_ip pcap_buffer_mb session_poll_interval; do
	check "--help documents --$f" grep -q -- "--$f" "$T_WORK/help.out"
done
check "--help shows defaults" grep -q '\[3306\]' "$T_WORK/help.out"
"$AGENT" -version | grep -q '^mrte-collector '
check "-version (Go style) works" test $? -eq 0

"$AGENT" --interface=nosuchif0 --sink=null 2>"$T_WORK/noif.err"
check_eq "unknown interface: exit status" 1 $?
check "unknown interface: says so" grep -q "no interface named 'nosuchif0'" "$T_WORK/noif.err"

# A password given on the command line does not stay visible in ps.
if [ "$(id -u)" -eq 0 ]; then
	start_agent pw --interface=lo --sink=null --capture=pcap --pin_dir="$PIN_ROOT" \
		--rabbitmq_password=s3cret-pw --mysql_password=other-s3cret
	check "rabbitmq password hidden from ps" bash -c "! tr '\0' ' ' </proc/$AGENT_PID/cmdline | grep -q s3cret-pw"
	check "mysql password hidden from ps" bash -c "! tr '\0' ' ' </proc/$AGENT_PID/cmdline | grep -q other-s3cret"
	stop_agent
fi
finish
