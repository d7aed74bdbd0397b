#!/bin/bash
# The broker side of "no silent loss, no crash", against the real RabbitMQ
# run.sh started.  A dead, missing, misconfigured or hung broker gives a
# clear line (one, not one per retry) and named counters; the agent keeps
# running, exits 0 within 2 s of SIGTERM, and every unit it encoded is
# either in the queue or counted: units = in the queue + mq_units_lost (in
# flight when a connection dropped) + drop_unpublished (still held at stop).
# With --batch_packets=1 a message is one unit, so the message counter
# mq_errors adds up with units too.
#
# A broker that dies, comes back, loses what it was sent or stops reading
# is simulated by tests/lib/tcp_proxy.py between the agent and the shared
# broker.  Every agent captures with pcap (other tests attach XDP to lo).
#
#  1. broker unreachable from the start (a closed port)
#  2. broker dies mid-run (with messages in flight) and comes back
#  3. exchange missing
#  4. exchange without a bound queue (returned messages)
#  5. wrong credentials
#  6. broker that accepts TCP but stops reading: SIGTERM while a write is
#     blocked; then the watchdog, and SIGTERM during a hung handshake
# shellcheck disable=SC2016 # wait_until expressions are quoted to be evaluated at each poll
. "$(dirname "$0")/lib.sh"
require_root

PROXY_PID=
PROXY_LOG=
PROXY_PORT=
broker_cleanup() {
	if [ -n "$PROXY_PID" ]; then
		kill -KILL "$PROXY_PID" 2>/dev/null
		wait "$PROXY_PID" 2>/dev/null
	fi
	it_cleanup
}
trap broker_cleanup EXIT

# proxy_start NAME PORT [ARGS...]: a proxy to the broker on PORT (0 = any).
proxy_start() {
	PROXY_LOG=$T_WORK/$1.proxy.log
	"$PY" tests/lib/tcp_proxy.py --listen "$2" --upstream "$AMQP_PORT" --log "$PROXY_LOG" "${@:3}" &
	PROXY_PID=$!
	wait_for 10 "proxy listening" proxy_listening || return 1
	PROXY_PORT=$(awk '/^listening/ {print $2}' "$PROXY_LOG")
}
proxy_listening() { grep -q '^listening' "$PROXY_LOG" 2>/dev/null; }
# proxy_kill: the broker vanishes; every connection through it drops.
proxy_kill() {
	kill -KILL "$PROXY_PID" 2>/dev/null
	wait "$PROXY_PID" 2>/dev/null
	PROXY_PID=
}
# proxy_mode SIGNAL MODE: switch (see tcp_proxy.py) and wait until it has.
proxy_mode() {
	local n
	n=$(grep -c "^mode $2" "$PROXY_LOG")
	kill -"$1" "$PROXY_PID"
	wait_until 5 "proxy in $2 mode" "[ \$(grep -c '^mode $2' '$PROXY_LOG') -gt $n ]"
}
proxy_opens() { grep -c '^open' "$PROXY_LOG"; }

# client NAME SESSIONS [--repeat N] STEP...: scripted client, dump in NAME.sent.tsv
client() {
	local name=$1 sessions=$2
	shift 2
	"$PY" tests/lib/mysql_wire_client.py --port "$MYSQL_PORT" --user sbtest --password sbtest \
		--db sbtest --sessions "$sessions" --dump "$T_WORK/$name.sent.tsv" "$@"
}
rows() { grep -vc '^#' "$1"; }
# diff_rows SENT.tsv... DUMP.tsv: "MISSING EXTRA" client packets, as multisets.
diff_rows() {
	"$PY" - "$@" <<'PY'
import collections, sys
def rows(paths):
    c = collections.Counter()
    for p in paths:
        for l in open(p):
            if l.strip() and not l.startswith("#"):
                c[l.strip().lower()] += 1
    return c
sent, got = rows(sys.argv[1:-1]), rows(sys.argv[-1:])
print(sum((sent - got).values()), sum((got - sent).values()))
PY
}
# total FIELD: a field of the agent's final "totals:"/"detail:" log lines.
total() {
	grep -E '\] (totals|detail): ' "$AGENT_LOG" | grep -oE "(^| )$1=[0-9]+" | head -1 | cut -d= -f2
}
lines() { grep -cE "$1" "$AGENT_LOG" || true; }
# unpublished_said: units the "stopping with N unit(s) unpublished" lines name.
unpublished_said() {
	grep -oE 'stopping with [0-9]+ unit' "$AGENT_LOG" | awk '{n += $3} END {print n + 0}'
}
# A publisher thread blocked writing to the broker: rabbitmq-c polls for
# POLLOUT; an idle publisher waits in epoll_wait instead.
publisher_blocked() {
	local t
	for t in /proc/"$AGENT_PID"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in
		mrte-pub*) grep -q 'poll_schedule_timeout\|sk_stream_wait_memory' "$t/stack" 2>/dev/null && return 0 ;;
		esac
	done
	return 1
}
# stopped NAME: SIGTERM; exit 0 within 2 s.
stopped() {
	stop_agent
	check_eq "$1: exit status after SIGTERM" 0 "$AGENT_RC"
	check "$1: out within 2 s of SIGTERM (${AGENT_STOP_MS} ms)" test "$AGENT_STOP_MS" -lt 2000
}
q=broker

# ---- 1. broker unreachable from the start --------------------------------------
closed=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2046
start_agent unreachable $(original_flags) --capture=pcap --rabbitmq_port="$closed"
check "1: says it cannot connect" wait_for 5 "connect error" \
	grep -q "cannot connect to RabbitMQ at 127.0.0.1:$closed: .*(retrying)" "$AGENT_LOG"
client unreachable 2 "q:SELECT 'unreachable 1'" "q:SELECT 'unreachable 2'" ping
sent=$(rows "$T_WORK/unreachable.sent.tsv")
check "1: every packet sent is held (queue_depth = $sent)" wait_until 10 "held" \
	"[ \$(agent_stat queue_depth) -eq $sent ]"
check "1: still running" agent_alive
stopped 1
check_eq "1: one line for all publishers' failed attempts (4 at start alone)" 1 \
	"$(lines "cannot connect to RabbitMQ")"
check_eq "1: units encoded = packets sent" "$sent" "$(total units)"
check_eq "1: nothing published" 0 "$(total messages)"
check_eq "1: all counted unpublished (drop_unpublished)" "$sent" "$(total unpublished_units)"
check_eq "1: ... and the log says how many" "$sent" "$(unpublished_said)"

# ---- 2. broker dies mid-run and comes back --------------------------------------
delete_queue "$q"
declare_queue "$q"
proxy_start dies 0
port=$PROXY_PORT
# shellcheck disable=SC2046
start_agent dies $(original_flags) --capture=pcap --rabbitmq_port="$port" --batch_packets=1 --verbose
check "2: 4 publishers connected through the proxy" wait_until 10 "connections" \
	'[ $(lines "connected to RabbitMQ 127.0.0.1:$port") -eq 4 ]'
client A 2 "q:SELECT 'phase A 1'" "q:SELECT 'phase A 2'" "q:SELECT 'phase A 3'"
check "2: phase A published and confirmed" wait_for 10 "drained" agent_drained
# Phase L: written by the agent, never delivered -- in flight when the
# connection drops.
proxy_mode USR1 blackhole
client L 2 "q:SELECT 'phase L 1'" "q:SELECT 'phase L 2'"
lost=$(rows "$T_WORK/L.sent.tsv")
check "2: phase L written, all $lost unconfirmed" wait_until 10 "in flight" \
	"[ \$(agent_stat mq_inflight) -eq $lost ] && [ \$(agent_stat queue_depth) -eq 0 ]"
proxy_kill
check "2: connection loss noticed, in-flight messages counted (mq_errors = $lost)" \
	wait_until 5 "mq_errors" "[ \$(agent_stat mq_errors) -eq $lost ]"
check "2: ... and said" grep -q "unconfirmed when the connection to 127.0.0.1:$port dropped" "$AGENT_LOG"
client B 2 "q:SELECT 'phase B 1'" "q:SELECT 'phase B 2'" "q:SELECT 'phase B 3'"
held=$(rows "$T_WORK/B.sent.tsv")
check "2: phase B held while the broker is gone (queue_depth = $held)" wait_until 10 "held" \
	"[ \$(agent_stat queue_depth) -eq $held ]"
check "2: still running" agent_alive
proxy_start back "$port"
check_eq "2: proxy back on the same port" "$port" "$PROXY_PORT"
check "2: reconnected and drained" wait_until 15 "reconnect" \
	'[ $(agent_stat mq_reconnects) -ge 1 ] && agent_drained'
check "2: a 'reconnected' line" grep -qE "reconnected to RabbitMQ 127.0.0.1:$port after [0-9]+ failure" "$AGENT_LOG"
fails=$(grep -oE 'reconnected to .* after [0-9]+ failure' "$AGENT_LOG" | grep -oE '[0-9]+ failure' | awk '{n += $1} END {print n + 0}')
said=$(lines "cannot connect to RabbitMQ|connection to 127.0.0.1:$port lost")
check "2: rate-limited: $said failure line(s) for $fails failure(s)" test "$said" -ge 1 -a "$said" -lt "$fails"
dump_queue "$q" "$T_WORK/dies.dump.tsv"
read -r missing extra < <(diff_rows "$T_WORK"/{A,L,B}.sent.tsv "$T_WORK/dies.dump.tsv")
check_eq "2: nothing in the queue that was not sent" 0 "$extra"
check_eq "2: phases A and B in the queue, exactly" "0 0" "$(diff_rows "$T_WORK"/{A,B}.sent.tsv "$T_WORK/dies.dump.tsv")"
check_eq "2: missing from the queue = mq_errors (loss exactly accounted)" "$missing" "$(agent_stat mq_errors)"
check_eq "2: ... = mq_units_lost, in units" "$missing" "$(agent_stat mq_units_lost)"
stopped 2
check_eq "2: units = in the queue + mq_units_lost + unpublished" "$(total units)" \
	"$(($(rows "$T_WORK/dies.dump.tsv") + $(total mq_units_lost) + $(total unpublished_units)))"
delete_queue "$q"
proxy_kill

# ---- 3. exchange missing ------------------------------------------------------------
missing_x=nonexistent-$$
# shellcheck disable=SC2046
start_agent nox $(original_flags) --capture=pcap --rabbitmq_exchange_name="$missing_x"
check "3: names the exchange and says to declare it" wait_for 5 "exchange error" \
	grep -q "exchange '$missing_x' is not usable .*NOT_FOUND.*(declare it" "$AGENT_LOG"
client nox 1 "q:SELECT 'no exchange'"
sent=$(rows "$T_WORK/nox.sent.tsv")
check "3: traffic held (queue_depth = $sent)" wait_until 10 "held" "[ \$(agent_stat queue_depth) -eq $sent ]"
check "3: still running" agent_alive
stopped 3
check_eq "3: one line for all publishers" 1 "$(lines "exchange '$missing_x' is not usable")"
check_eq "3: units all counted unpublished" "$(total units)" "$(total unpublished_units)"

# ---- 4. exchange without a bound queue -----------------------------------------------
unbound=$EXCHANGE-unbound
"$DUMP" --rabbitmq_port="$AMQP_PORT" --declare --exchange="$unbound" --queue="$q-unbound" >/dev/null
"$DUMP" --rabbitmq_port="$AMQP_PORT" --delete --queue="$q-unbound" >/dev/null
# shellcheck disable=SC2046
start_agent unbound $(original_flags) --capture=pcap --rabbitmq_exchange_name="$unbound"
client unbound 3 "q:SELECT 'unbound 1'" "q:SELECT 'unbound 2'"
check "4: published and confirmed" wait_for 10 "drained" agent_drained
check "4: every message returned (mq_returned = messages)" wait_until 5 "returned" \
	'[ $(agent_stat messages) -ge 1 ] && [ $(agent_stat mq_returned) -eq $(agent_stat messages) ]'
check_eq "4: one warning, saying to bind a queue" 1 \
	"$(lines "discards messages: 312 NO_ROUTE \(bind a queue to exchange '$unbound'\); counted as mq_returned")"
check_eq "4: not counted as errors" 0 "$(agent_stat mq_errors)"
stopped 4

# ---- 5. wrong credentials ------------------------------------------------------------------
# shellcheck disable=SC2046
start_agent badpw $(original_flags) --capture=pcap --rabbitmq_password=wrong
check "5: names the user and the vhost" wait_for 5 "login error" \
	grep -q "refused login as 'guest' on vhost '/': .*ACCESS_REFUSED.*check --rabbitmq_user" "$AGENT_LOG"
client badpw 1 "q:SELECT 'bad password'"
sent=$(rows "$T_WORK/badpw.sent.tsv")
check "5: traffic held (queue_depth = $sent)" wait_until 10 "held" "[ \$(agent_stat queue_depth) -eq $sent ]"
stopped 5
check_eq "5: one line for all publishers" 1 "$(lines "refused login")"
check_eq "5: units all counted unpublished" "$(total units)" "$(total unpublished_units)"

# ---- 6. a broker that stops reading -------------------------------------------------------
# Messages of one 12 KB unit, room for 1000 of them in flight: more than the
# socket buffers (the agent's grows to 4 MB) hold, so the write blocks.
delete_queue "$q"
declare_queue "$q"
proxy_start hung 0 --rcvbuf 65536
pad=$(head -c 12000 /dev/zero | tr '\0' x)
hung_flags() {
	original_flags
	echo --capture=pcap --rabbitmq_port="$PROXY_PORT" --snapshot_len=16384 --batch_packets=1 \
		--batch_bytes=16384 --queue_size=1000 --max_mem_mb=256 --verbose
}
# hung_run NAME: connect (handshakes done), stall the proxy, send 6 MB
# through one session.
hung_run() {
	# shellcheck disable=SC2046
	start_agent "$1" $(hung_flags)
	check "6$1: 4 publishers connected" wait_until 10 "connections" \
		'[ $(lines "connected to RabbitMQ 127.0.0.1:$PROXY_PORT") -eq 4 ]'
	proxy_mode USR2 stall
	client "$1" 1 --repeat 500 "q:SELECT 1 /* $pad */"
	check "6$1: a publisher is blocked writing to the broker" wait_for 10 "blocked" publisher_blocked
	check "6$1: still running" agent_alive
}
# hung_accounted NAME: nothing reached the queue; every unit is counted.
hung_accounted() {
	dump_queue "$q" "$T_WORK/$1.dump.tsv"
	check_eq "6$1: nothing reached the queue" 0 "$(rows "$T_WORK/$1.dump.tsv")"
	check "6$1: loss counted in mq_errors and drop_unpublished" test "$(total mq_errors)" -gt 0 -a "$(total unpublished_units)" -gt 0
	check_eq "6$1: units = mq_units_lost + unpublished (exactly)" "$(total units)" \
		"$(($(total mq_units_lost) + $(total unpublished_units)))"
	check_eq "6$1: the log says how many units went unpublished" "$(total unpublished_units)" "$(unpublished_said)"
}
# a: SIGTERM while the write is blocked (the stop's abort path).
hung_run a
stopped 6a
hung_accounted a
# b: the watchdog resets the blocked write after 10 s; the publisher
# reconnects and its handshake hangs too; SIGTERM must cut it short.  A new
# proxy: the old one still holds what agent a wrote, and would deliver it
# if it read again.
proxy_kill
proxy_start hung-b 0 --rcvbuf 65536
hung_run b
opens=$(proxy_opens)
check "6b: the watchdog resets the blocked connection" wait_for 13 "watchdog" \
	grep -q "a write to the broker has been blocked for [0-9]* ms; resetting the connection" "$AGENT_LOG"
check "6b: it reconnects into the hung broker" wait_until 5 "reconnect" "[ \$(proxy_opens) -gt $opens ]"
stopped 6b
hung_accounted b
delete_queue "$q"
finish
