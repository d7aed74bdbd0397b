#!/usr/bin/env bash
# tests/lib/test_servers.sh -- end-to-end check of tests/lib/servers.sh
#
#   bash tests/lib/test_servers.sh            # normal run
#   bash tests/lib/test_servers.sh --occupy   # first occupy 127.0.0.1:3306 and :5672
#                                             # with our own listeners to exercise the
#                                             # automatic port fallback
#
# Needs root, mariadb-server, rabbitmq-server, sysbench, python3-pika.
# Prints "N passed, N failed" at the end; exit status 0 only if all passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=servers.sh
. "$here/servers.sh"

PY=/usr/bin/python3
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
check() { local msg=$1; shift; if "$@"; then ok "$msg"; else bad "$msg"; fi; }

occupy=0
[ "${1:-}" = --occupy ] && occupy=1

blocker_pid=""
cleanup() {
    servers_stop || true
    if [ -n "$blocker_pid" ]; then
        kill "$blocker_pid" 2>/dev/null || true
        wait "$blocker_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
# bash skips the EXIT trap when killed by a signal unless the signal is trapped
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if [ "$occupy" = 1 ]; then
    # our own listener on the default ports (only where they are still free)
    "$PY" - <<'PY' &
import socket, signal, sys, time
socks = []
for port in (3306, 5672):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port)); s.listen(1); socks.append(s)
        print("blocker listening on 127.0.0.1:%d" % port, flush=True)
    except OSError as e:
        print("port %d already busy (%s)" % (port, e), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
time.sleep(600)
PY
    blocker_pid=$!
    # wait for the listener (poll, no fixed sleep)
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; then break; fi
        sleep 0.05
    done
    unset MRTE_TEST_MYSQL_PORT MRTE_TEST_AMQP_PORT
fi

work=$(mktemp -d /tmp/mrte-srv.XXXXXX)
t0=$(date +%s.%N)
servers_start "$work"
t1=$(date +%s.%N)
echo "# servers_start took $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s" \
     "(MariaDB ${MYSQL_READY_SECONDS}s, RabbitMQ ${RMQ_READY_SECONDS}s, in parallel)"
echo "# MYSQL_PORT=$MYSQL_PORT AMQP_PORT=$AMQP_PORT RMQ_NODE=$RMQ_NODE EPMD_PORT=$EPMD_PORT RMQ_DIST_PORT=$RMQ_DIST_PORT"

if [ "$occupy" = 1 ]; then
    check "MySQL port fell back away from busy 3306" [ "$MYSQL_PORT" != 3306 ]
    check "AMQP port fell back away from busy 5672" [ "$AMQP_PORT" != 5672 ]
fi

check "servers.env exists and is sourceable" bash -c ". '$work/servers.env' && [ \"\$MYSQL_PORT\" = '$MYSQL_PORT' ] && [ \"\$RMQ_PID\" = '$RMQ_PID' ]"
check "TLS is disabled on the server" \
    [ "$(mysql_root -N -B -e "SHOW GLOBAL VARIABLES LIKE 'have_ssl'" | cut -f2)" = DISABLED ]
check "MariaDB listens on 127.0.0.1 only" \
    [ "$(mysql_root -N -B -e "SELECT @@bind_address")" = 127.0.0.1 ]

# --- remember every PID we expect to disappear (plus the beam's children)
declare -a all_pids=("$MYSQL_PID" "$RMQ_PID" "$EPMD_PID")
while read -r p _; do [ -n "$p" ] && all_pids+=("$p"); done < <(_srv_descendants "$RMQ_PID")
echo "# recorded pids: ${all_pids[*]}"

# --- sysbench + general log oracle
sysbench_prepare
general_log_reset
# (our own counting session logs its Connect + SET row, so skip this thread)
check "general log empty after reset" \
    [ "$(mysql_root -N -B -e 'SET SESSION sql_log_off=1; SELECT COUNT(*) FROM mysql.general_log WHERE thread_id <> CONNECTION_ID()')" = 0 ]
trx=$(sysbench_run 3 4)
echo "# sysbench: $trx transactions in 3 s with 4 threads"
check "sysbench ran transactions" [ "${trx:-0}" -gt 0 ]

glog=$work/glog-sbtest.tsv
general_log_dump sbtest "$glog"
rows=$(wc -l <"$glog")
qthreads=$(awk -F'\t' '$2 == "Query" { t[$1] = 1 } END { print length(t) }' "$glog")
cthreads=$(awk -F'\t' '$2 == "Connect" { t[$1] = 1 } END { print length(t) }' "$glog")
queries=$(awk -F'\t' '$2 == "Query"' "$glog" | wc -l)
echo "# general log (sbtest): $rows rows, $queries Query rows, $qthreads threads with queries, $cthreads Connect rows"
check "Query rows from 4 threads" [ "$qthreads" -eq 4 ]
check "every dumped thread has a Connect row naming sbtest" bash -c "
    awk -F'\t' '\$2==\"Connect\"{print \$3}' '$glog' | while read -r h; do
        printf '%s' \"\$h\" | xxd -r -p | grep -q '^sbtest@' || exit 1; done"
check "dump has only TSV lines with 3 fields" \
    awk -F'\t' 'NF != 3 { exit 1 }' "$glog"
first_q=$(awk -F'\t' '$2 == "Query" { print $3; exit }' "$glog" | xxd -r -p)
echo "# first logged query: $first_q"
echo "# a Connect row: $(awk -F'\t' '$2 == "Connect" { print $3; exit }' "$glog" | xxd -r -p)"
# the root session used for the dump must not appear
check "no root rows in the sbtest dump" bash -c "! grep -qi \"\$(printf 'general_log' | xxd -p | tr a-f A-F)\" '$glog'"

# --- oracle + comparator on real sysbench traffic: a synthetic "perfect" dump
# made from the log itself must compare equal; dropping one packet must be seen
CMP=("$PY" "$here/compare.py")
awk -F'\t' -v OFS='\t' '$2 == "Query" { print "127.0.0.1:" (10000 + $1), 0, "QUERY", "03" $3 }' \
    "$glog" >"$work/sysbench-dump.tsv"
tc0=$(date +%s.%N)
sum=$("${CMP[@]}" -q "$glog" "$work/sysbench-dump.tsv") && rc=0 || rc=$?
echo "# compare.py on $queries statements took $(awk -v a="$tc0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s: $sum"
check "compare.py: sysbench log vs perfect dump -> exit 0" [ "$rc" -eq 0 ]
sed '1000d' "$work/sysbench-dump.tsv" >"$work/sysbench-dump-1.tsv"
sum=$("${CMP[@]}" -q "$glog" "$work/sysbench-dump-1.tsv") && rc=0 || rc=$?
check "compare.py: one dropped packet -> exit 1, missing 1 ($sum)" \
    bash -c "[ $rc -eq 1 ] && [[ '$sum' == *'missing 1, extra 0, duplicated 0, out-of-order 0' ]]"

# --- our own wire client writes the dump a perfect decoder would produce
general_log_reset
check "mysql_wire_client.py: 3 sessions of raw COM_QUERY/COM_INIT_DB/COM_PING" \
    "$PY" "$here/mysql_wire_client.py" --port "$MYSQL_PORT" --user sbtest --password sbtest \
    --db sbtest --dump "$work/wire-dump.tsv" --sessions 3 \
    'q:  SELECT 1 ;\n' 'q:SELECT "a\tb\nc\x00d"' 'db:db_b' 'q:SELECT DATABASE()' 'ping' \
    'q:SELEC broken' 'db:nonexistent' 'q:DO 1;;'
general_log_dump sbtest "$work/wire-glog.tsv"
sum=$("${CMP[@]}" --user sbtest "$work/wire-glog.tsv" "$work/wire-dump.tsv" | tail -n 1) && rc=0 || rc=$?
check "compare.py: wire client vs general log -> exit 0 ($sum)" \
    bash -c "[ $rc -eq 0 ] && [ '$sum' = 'sessions: 3 log, 3 dump, matched 3; statements: 21 log, 21 dump, missing 0, extra 0, duplicated 0, out-of-order 0' ]"
# the server strips leading blanks and trailing blanks/';' before logging
sum=$("${CMP[@]}" --exact --user sbtest "$work/wire-glog.tsv" "$work/wire-dump.tsv" | tail -n 1) && rc=0 || rc=$?
check "compare.py --exact: server-side trimming visible ($sum)" \
    bash -c "[ $rc -eq 1 ] && [[ '$sum' == *'missing 6, extra 6,'* ]]"

# --- the agent's account: PROCESS only
pl=$(mysql_tcp mrte mrtepw -N -B -e 'SELECT host, db, state FROM information_schema.processlist') && rc=0 || rc=$?
check "mrte can read information_schema.processlist" [ "$rc" -eq 0 ]
echo "# processlist as mrte: $(printf '%s\n' "$pl" | wc -l) rows"
check "mrte cannot read sbtest tables" bash -c \
    "! mariadb --no-defaults --protocol=TCP -h127.0.0.1 -P'$MYSQL_PORT' -umrte -pmrtepw -e 'SELECT 1 FROM sbtest.sbtest1 LIMIT 1' >/dev/null 2>&1"
check "sbtest can use db_a..db_c" mysql_tcp sbtest sbtest -e 'CREATE TABLE db_a.t (i INT); DROP TABLE db_a.t; USE db_b; USE db_c'

# --- AMQP as guest/guest
amqp_out=$("$PY" - "$AMQP_PORT" <<'PY' 2>&1
import sys, pika
port = int(sys.argv[1])
c = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=port,
        credentials=pika.PlainCredentials("guest", "guest")))
ch = c.channel()
ch.exchange_declare(exchange="mrte", exchange_type="fanout", durable=False)
q = ch.queue_declare(queue="", exclusive=True).method.queue
ch.queue_bind(queue=q, exchange="mrte")
body = b"mrte-test-\x00\x01\xff"
ch.basic_publish(exchange="mrte", routing_key="", body=body)
for _ in range(100):
    m, props, got = ch.basic_get(queue=q, auto_ack=True)
    if m is not None:
        break
    c.sleep(0.02)
assert m is not None, "no message"
assert got == body, got
c.close()
print("amqp roundtrip ok")
PY
) && rc=0 || rc=$?
echo "# $amqp_out"
check "AMQP fanout publish + basic_get as guest" [ "$rc" -eq 0 ]

t2=$(date +%s.%N)
check "rabbitmq-diagnostics ping via rmq_cli" rmq_cli rabbitmq-diagnostics -q ping
echo "# rmq_cli ping took $(awk -v a="$t2" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"

# --- stop and verify
t3=$(date +%s.%N)
servers_stop
echo "# servers_stop took $(awk -v a="$t3" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
alive=""
for p in "${all_pids[@]}"; do
    if [ -e "/proc/$p" ] && ! grep -q '^[^)]*) [ZX]' "/proc/$p/stat" 2>/dev/null; then
        alive+=" $p($(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-60))"
    fi
done
check "no recorded pid alive after servers_stop${alive:+:$alive}" [ -z "$alive" ]
check "workdir removed" [ ! -e "$work" ]
check "servers_stop is idempotent" servers_stop

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
