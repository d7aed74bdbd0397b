#!/bin/bash
# tools/demo.sh -- `sudo make demo`: the collector against real query traffic.
#
# Starts a throwaway MariaDB and RabbitMQ on loopback (tests/lib/servers.sh),
# declares a fanout exchange with a queue bound to it, opens one client
# session with a default database *before* the collector starts (to show the
# synthetic COM_INIT_DB), runs the collector on lo (capture chosen
# automatically) with session sync, drives sysbench oltp_read_write for a
# few seconds, then shows the status table, the counters as bpftool reads
# them from the pinned maps, the statements that arrived in the queue, and
# the comparison with MariaDB's general log.  Everything it started is
# stopped on the way out.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECONDS_OF_TRAFFIC=${DEMO_SECONDS:-8}
PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (sudo make demo): it attaches BPF programs and starts servers" >&2
	exit 1
fi

. tests/lib/servers.sh
work=$(mktemp -d /tmp/mrte-demo.XXXXXX)
pins=/sys/fs/bpf/mrte-demo
agent_pid=
client_pid=
cleanup() {
	[ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	[ -n "$client_pid" ] && kill -TERM "$client_pid" 2>/dev/null && wait "$client_pid" 2>/dev/null
	servers_stop
	rmdir "$pins" 2>/dev/null # the collector removed its own pins inside
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting a throwaway MariaDB and RabbitMQ on 127.0.0.1"
servers_start "$work" || exit 1
sysbench_prepare || exit 1
exchange=mrte-demo
queue=mrte-demo
"$BUILD"/mrte-dump --rabbitmq_port="$AMQP_PORT" --declare --exchange="$exchange" --queue="$queue" || exit 1
general_log_reset

say "A client session opened before the collector (default database db_a)"
mkfifo "$work/client.in"
"$PY" tests/lib/session_client.py --port "$MYSQL_PORT" --user sbtest --password sbtest \
	--db db_a --dump "$work/client.sent" <"$work/client.in" >"$work/client.out" 2>&1 &
client_pid=$!
exec {client_fd}>"$work/client.in"
for _ in $(seq 100); do grep -q '^ready' "$work/client.out" && break; sleep 0.05; done
client_port=$(awk '/^ready/ {print $2}' "$work/client.out")
echo "connected from 127.0.0.1:$client_port"

say "Starting mrte-collector on lo (the original collector's flags, plus session sync)"
cmd=("$BUILD"/mrte-collector --interface=lo --port="$MYSQL_PORT" --thread_count=4
	--rabbitmq_host=127.0.0.1 --rabbitmq_port="$AMQP_PORT" --rabbitmq_user=guest
	--rabbitmq_exchange_name="$exchange" --mysql_host=127.0.0.1 --mysql_port="$MYSQL_PORT"
	--mysql_user=mrte --stats_interval=2 --pin_dir="$pins")
echo "MRTE_RABBITMQ_PASSWORD=... MRTE_MYSQL_PASSWORD=... ${cmd[*]}"
MRTE_RABBITMQ_PASSWORD=guest MRTE_MYSQL_PASSWORD=mrtepw "${cmd[@]}" > >(sed -u 's/^/  | /') 2>&1 &
agent_pid=$!
for _ in $(seq 100); do [ -e "$pins/lo/agent_stats" ] && break; sleep 0.05; done
for _ in $(seq 200); do
	[ "$(bpftool -j map dump pinned "$pins/lo/agent_stats" 2>/dev/null |
		"$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["formatted"]["value"]["synthetic_init_db"])' 2>/dev/null)" = 1 ] && break
	sleep 0.05
done

say "The early session runs a query; sysbench oltp_read_write, 4 threads, ${SECONDS_OF_TRAFFIC} s"
echo "q SELECT 'hello from a session older than the collector'" >&"$client_fd"
tx=$(sysbench_run "$SECONDS_OF_TRAFFIC" 4)
echo "sysbench: $tx transactions"
echo "quit" >&"$client_fd"
wait "$client_pid" 2>/dev/null
client_pid=

# Wait for the collector to have published and the broker to have confirmed
# everything it captured (the pinned counters say so).
drained() {
	bpftool -j map dump pinned "$pins/lo/agent_stats" 2>/dev/null | "$PY" -c '
import json, sys
v = json.load(sys.stdin)[0]["formatted"]["value"]
sys.exit(0 if v["queue_depth"] == 0 and v["mq_inflight"] == 0 else 1)'
}
for _ in $(seq 100); do drained && break; sleep 0.05; done
sleep 2.5 # let one more status row print

say "The collector's counters, as any operator reads them"
echo "# bpftool map dump pinned $pins/lo/agent_stats"
bpftool map dump pinned "$pins/lo/agent_stats" | grep -E '"(units|messages|segments_published|mq_errors|queue_depth|synthetic_init_db|synthetic_quit|drop_[a-z_]+|rss_bytes)"' | head -24

say "Stopping the collector (SIGTERM: flush, detach, unpin)"
kill -TERM "$agent_pid"
wait "$agent_pid" 2>/dev/null
agent_pid=
sleep 0.2

say "What arrived in the queue (decoded the way MRTE-Player reads it)"
"$BUILD"/mrte-dump --rabbitmq_port="$AMQP_PORT" --queue="$queue" --format=tsv --idle_ms=1000 \
	>"$work/queue.tsv" 2>"$work/queue.summary"
"$PY" - "$work/queue.tsv" "$client_port" <<'PYEOF'
import collections, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("#")]
per = collections.OrderedDict()
for addr, seq, kind, hexp in rows:
    per.setdefault(addr, []).append((kind, bytes.fromhex(hexp)))
early = "127.0.0.1:" + sys.argv[2]
print("the session opened before the collector, %s:" % early)
for kind, p in per.get(early, []):
    text = p[1:].decode(errors="replace") if kind in ("QUERY", "INIT_DB") else ""
    print("   %-9s %s" % (kind, text))
for addr, items in list(per.items())[:3]:
    if addr == early:
        continue
    print("a sysbench session, %s (%d packets), first statements:" % (addr, len(items)))
    for kind, p in items[:8]:
        text = p[1:].decode(errors="replace")[:90] if kind == "QUERY" else ""
        print("   %-9s %s" % (kind, text))
    break
print("sessions: %d, packets: %d" % (len(per), len(rows)))
PYEOF
cat "$work/queue.summary"

say "Ground truth: MariaDB's general log vs the queue"
echo "(the synthetic COM_INIT_DB is not in the log: it restores what the server already knew)"
general_log_dump sbtest "$work/general.tsv"
"$PY" tests/lib/compare.py "$work/general.tsv" "$work/queue.tsv" --user sbtest --ignore-init-db | tail -2

say "Done; stopping the servers"
