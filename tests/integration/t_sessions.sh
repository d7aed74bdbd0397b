#!/bin/bash
# Session sync (processlist + kernel FIN/RST), against real MariaDB/RabbitMQ:
#  - sessions open before the agent started get exactly one COM_INIT_DB with
#    their database, before their next captured command; a session the
#    capture saw start (its handshake names the database) gets none;
#  - SIGUSR1 sends every database again;
#  - COM_QUIT then close: no synthetic QUIT; FIN without COM_QUIT, RST, and a
#    killed client: one synthetic COM_QUIT, published within 1 s;
#  - a session killed on the server (no FIN from the client yet): the poll's
#    garbage collection sends COM_QUIT;
#  - the agent's own processlist queries never reach the queue;
#  - MySQL unreachable or refusing the account: capture goes on, a clear line.
. "$(dirname "$0")/lib.sh"
require_root
q=sessions
declare -A CFD CPID CPORT

# client_start NAME DB: a session that stays open until told otherwise.
client_start() {
	local name=$1 db=$2 fifo=$T_WORK/$1.in
	mkfifo "$fifo"
	"$PY" tests/lib/session_client.py --port "$MYSQL_PORT" --user sbtest --password sbtest \
		--db "$db" --dump "$T_WORK/$name.sent.tsv" <"$fifo" >"$T_WORK/$name.out" 2>"$T_WORK/$name.err" &
	CPID[$name]=$!
	local fd
	exec {fd}>"$fifo"
	CFD[$name]=$fd
	wait_for 10 "client $name ready" grep -q '^ready' "$T_WORK/$name.out" || return 1
	CPORT[$name]=$(awk '/^ready/ {print $2}' "$T_WORK/$name.out")
}
acks() { grep -c '^ok' "$T_WORK/$1.out"; }
# client_cmd NAME CMD: send one command and wait for its "ok".
client_cmd() {
	local name=$1 n
	n=$(acks "$name")
	echo "$2" >&"${CFD[$name]}"
	wait_until 10 "client $name: $2" "[ \$(acks $name) -gt $n ]"
}
kinds() { "$PY" tests/lib/session_kinds.py "$1" "${CPORT[$2]}"; }

echo mrtepw >"$T_WORK/mysql.pw"
session_flags() {
	echo --mysql_host=127.0.0.1 --mysql_port="$MYSQL_PORT" --mysql_user=mrte \
		--mysql_password_file="$T_WORK/mysql.pw" --session_poll_interval=2 --init_db_resend=2
}

delete_queue "$q"
declare_queue "$q"
for c in A:db_a B:db_b C:db_c D:sbtest F:db_b; do
	client_start "${c%%:*}" "${c#*:}" || check "client ${c%%:*} connected" false
done

# shellcheck disable=SC2046
start_agent sessions $(original_flags) $(session_flags)
check "round 1 of the default databases" wait_for 10 "round 1" grep -q "(1 of 2)" "$AGENT_LOG"
for c in A B C D; do client_cmd "$c" "q SELECT '${c}1'"; done
check "round 2 of the default databases" wait_for 10 "round 2" grep -q "(2 of 2)" "$AGENT_LOG"
client_start E db_a
client_cmd E "q SELECT 'E1'"
client_cmd A "q SELECT 'A2'"
check "drained (phase 1)" wait_for 10 "drained" agent_drained
dump_queue "$q" "$T_WORK/p1.tsv"
check_eq "A: one INIT_DB, before its next command" "INIT_DB:db_a|QUERY:SELECT 'A1'|QUERY:SELECT 'A2'" "$(kinds "$T_WORK/p1.tsv" A)"
check_eq "B: one INIT_DB, before its next command" "INIT_DB:db_b|QUERY:SELECT 'B1'" "$(kinds "$T_WORK/p1.tsv" B)"
check_eq "C: one INIT_DB, before its next command" "INIT_DB:db_c|QUERY:SELECT 'C1'" "$(kinds "$T_WORK/p1.tsv" C)"
check_eq "D: one INIT_DB, before its next command" "INIT_DB:sbtest|QUERY:SELECT 'D1'" "$(kinds "$T_WORK/p1.tsv" D)"
check_eq "F (idle): its INIT_DB" "INIT_DB:db_b" "$(kinds "$T_WORK/p1.tsv" F)"
check_eq "E (seen from its SYN): no INIT_DB" "HANDSHAKE|QUERY:SELECT 'E1'" "$(kinds "$T_WORK/p1.tsv" E)"

kill -USR1 "$AGENT_PID"
check "SIGUSR1 acknowledged" wait_for 10 "resend" grep -q "sent again" "$AGENT_LOG"
check "drained (phase 2)" wait_for 10 "drained" agent_drained
dump_queue "$q" "$T_WORK/p2.tsv"
check_eq "SIGUSR1: A's database again" "INIT_DB:db_a" "$(kinds "$T_WORK/p2.tsv" A)"
check_eq "SIGUSR1: E's database too" "INIT_DB:db_a" "$(kinds "$T_WORK/p2.tsv" E)"
check_eq "SIGUSR1: F's database again" "INIT_DB:db_b" "$(kinds "$T_WORK/p2.tsv" F)"

# Endings.  B, C, D end without COM_QUIT in three ways.
quits_before=$(agent_stat synthetic_quit)
t0=$(date +%s%N)
client_cmd A quit
client_cmd B fin
client_cmd C rst
kill -KILL "${CPID[D]}"
three_quits_published() {
	[ "$(agent_stat synthetic_quit)" -ge $((quits_before + 3)) ] && agent_drained
}
wait_for 5 "3 synthetic QUITs published" three_quits_published
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check "FIN, RST and a killed client: COM_QUIT published within 1 s (${ms} ms)" test "$ms" -lt 1000
# F is killed on the server: its client never sends FIN, only the poll can tell.
fid=$(mysql_root -N -e "SELECT id FROM information_schema.processlist WHERE host='127.0.0.1:${CPORT[F]}'")
mysql_root -e "KILL $fid"
check "server-side KILL: the poll sends COM_QUIT" wait_until 8 "GC quit" \
	"[ \$(agent_stat synthetic_quit) -ge $((quits_before + 4)) ]"
check "drained (phase 3)" wait_for 10 "drained" agent_drained
dump_queue "$q" "$T_WORK/p3.tsv"
check_eq "A quit politely: only its own COM_QUIT" "QUIT" "$(kinds "$T_WORK/p3.tsv" A)"
check_eq "B (FIN): one synthetic COM_QUIT" "QUIT" "$(kinds "$T_WORK/p3.tsv" B)"
check_eq "C (RST): one synthetic COM_QUIT" "QUIT" "$(kinds "$T_WORK/p3.tsv" C)"
check_eq "D (killed): one synthetic COM_QUIT" "QUIT" "$(kinds "$T_WORK/p3.tsv" D)"
check_eq "F (server KILL): one COM_QUIT from the poll" "QUIT" "$(kinds "$T_WORK/p3.tsv" F)"
check_eq "E (still open): nothing" "" "$(kinds "$T_WORK/p3.tsv" E)"
cat "$T_WORK"/p1.tsv "$T_WORK"/p2.tsv "$T_WORK"/p3.tsv >"$T_WORK/all.tsv"
check "the agent's own queries are not in the queue" \
	bash -c "! '$PY' tests/lib/session_kinds.py --grep '$T_WORK/all.tsv' processlist"
check "... they were seen and dropped (drop_self)" test "$(agent_stat drop_self)" -gt 0
client_cmd E quit
stop_agent
check_eq "exit status" 0 "$AGENT_RC"

# MySQL unreachable: capture and publishing go on, one warning.
# shellcheck disable=SC2046
start_agent nomysql $(original_flags) --mysql_host=127.0.0.1 --mysql_port=1 --mysql_user=mrte
client_start G db_a
client_cmd G "q SELECT 'G1'"
client_cmd G quit
check "MySQL unreachable: warned" wait_for 5 "warning" grep -q "session sync: MySQL 127.0.0.1:1 is unreachable" "$AGENT_LOG"
check "MySQL unreachable: traffic still published" wait_for 10 "drained" agent_drained
dump_queue "$q" "$T_WORK/g.tsv"
check_eq "... G's session intact" "HANDSHAKE|QUERY:SELECT 'G1'|QUIT" "$(kinds "$T_WORK/g.tsv" G)"
stop_agent
check_eq "MySQL unreachable: exit status" 0 "$AGENT_RC"

# Wrong password: an error line naming the account.
# shellcheck disable=SC2046
MRTE_MYSQL_PASSWORD=wrong start_agent badpw $(original_flags) --mysql_host=127.0.0.1 \
	--mysql_port="$MYSQL_PORT" --mysql_user=mrte
check "wrong password: names the account" wait_for 5 "error" grep -q "refused account 'mrte'" "$AGENT_LOG"
stop_agent
check_eq "wrong password: still exits 0" 0 "$AGENT_RC"
delete_queue "$q"
finish
