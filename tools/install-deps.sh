#!/bin/bash
# tools/install-deps.sh -- install what building, testing, the demo and the
# benchmark need, from Debian's archive, if anything is missing.  Idempotent:
# with everything present it only checks (about 0.1 s).
#
# The servers (rabbitmq-server, mariadb-server) are installed for their
# binaries only: the tests and the demo start private instances on loopback.
# If this script installs them, it keeps the system services from starting
# during the install (a policy-rc.d of its own for the duration).
set -euo pipefail

PACKAGES=(
	# build
	make gcc clang llvm pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev
	libpcap-dev librabbitmq-dev default-libmysqlclient-dev
	# tests (cmocka, sanitizers, libFuzzer), harness and real servers
	libcmocka-dev libclang-rt-14-dev rabbitmq-server mariadb-server mariadb-client sysbench
	tcpdump iproute2 python3 python3-pika procps util-linux
	# benchmark
	gnuplot-nox linux-perf
)

missing=()
for p in "${PACKAGES[@]}"; do
	# shellcheck disable=SC2016
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing Debian packages: ${missing[*]}" >&2
		echo "install-deps: run as root (sudo make ...) to install them" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# BPF pins live on bpffs.
if [ "$(id -u)" -eq 0 ] && ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
	mount -t bpf bpf /sys/fs/bpf
fi
exit 0
