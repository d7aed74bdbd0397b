# shellcheck shell=bash
# tests/lib/assert.sh -- tiny assertion helpers for the shell tests.
#
#   . tests/lib/assert.sh
#   check "messages arrived" test "$n" -gt 0
#   check_eq "missing statements" 0 "$missing"
#   wait_for 10 "queue has 5 messages" queue_count_is 5   # polls, never a bare sleep
#   wait_until 10 "5 units" '[ "$(agent_stat units)" -ge 5 ]' # re-evaluated each poll
#   finish                                              # prints "# N passed, M failed", sets $?
#
# Every check prints one line; tests/run-all.sh adds up the "# N passed,
# M failed" lines of every script.

ASSERT_PASS=${ASSERT_PASS:-0}
ASSERT_FAIL=${ASSERT_FAIL:-0}

check() {
	local name=$1
	shift
	if "$@"; then
		ASSERT_PASS=$((ASSERT_PASS + 1))
		printf '  ok    %s\n' "$name"
	else
		ASSERT_FAIL=$((ASSERT_FAIL + 1))
		printf '  FAIL  %s   (%s)\n' "$name" "$*"
	fi
}

check_eq() {
	local name=$1 want=$2 got=$3
	if [ "$want" = "$got" ]; then
		ASSERT_PASS=$((ASSERT_PASS + 1))
		printf '  ok    %s (= %s)\n' "$name" "$got"
	else
		ASSERT_FAIL=$((ASSERT_FAIL + 1))
		printf '  FAIL  %s: want %s, got %s\n' "$name" "$want" "$got"
	fi
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 50 ms until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	while ! "$@"; do
		if [ "$SECONDS" -ge "$end" ]; then
			printf '  (gave up after %ss waiting for: %s)\n' "$secs" "$what"
			return 1
		fi
		sleep 0.05
	done
}

# wait_until SECONDS DESCRIPTION 'SHELL EXPRESSION': like wait_for, but the
# expression is evaluated afresh on every poll -- use it whenever the
# condition contains $(...), which wait_for's arguments would expand once.
wait_until() {
	local secs=$1 what=$2 expr=$3
	local end=$((SECONDS + secs))
	while ! eval "$expr"; do
		if [ "$SECONDS" -ge "$end" ]; then
			printf '  (gave up after %ss waiting for: %s)\n' "$secs" "$what"
			return 1
		fi
		sleep 0.05
	done
}

finish() {
	printf '# %d passed, %d failed\n' "$ASSERT_PASS" "$ASSERT_FAIL"
	[ "$ASSERT_FAIL" -eq 0 ]
}

# require_root: root-only tests fail loudly (never skip silently) without it.
require_root() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "  FAIL  this test needs root (BPF, network namespaces, servers): NOT RUN, COUNTED AS FAILED"
		ASSERT_FAIL=$((ASSERT_FAIL + 1))
		finish
		exit 1
	fi
}
