#!/bin/bash
# tests/integration/run.sh [TEST...] -- the integration tests, on the real
# kernel path with a real MariaDB and a real RabbitMQ, started here on
# loopback and stopped (by PID) at the end.  Each t_*.sh prints its checks
# and a "# N passed, M failed" line.
set -u
cd "$(dirname "$0")/../.."
export BUILD=${BUILD:-build}
. tests/lib/assert.sh
require_root
[ -d /sys/fs/bpf ] && mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

. tests/lib/servers.sh
work=$(mktemp -d /tmp/mrte-servers.XXXXXX)
trap servers_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
if ! servers_start "$work"; then
	echo "  FAIL  could not start MariaDB and RabbitMQ"
	ASSERT_FAIL=1
	finish
	exit 1
fi
sysbench_prepare >/dev/null

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/integration/t_*.sh)
rc=0
for t in "${tests[@]}"; do
	echo
	echo "=== $t"
	start=$SECONDS
	bash "$t" || rc=1
	echo "=== $t: $((SECONDS - start)) s"
done
exit $rc
