#!/bin/bash
# tests/run-all.sh -- every test, as `make test` runs it (after the build).
#
# Groups, in order: unit tests (cmocka, under ASan/UBSan), BPF program tests
# (bpf_prog_test_run on crafted frames, root), the comparator self-test,
# fuzz smoke runs, integration tests (real kernel path, real MariaDB and
# RabbitMQ started here).  Every group runs even if an earlier one failed;
# the last line adds up the test cases: "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
log=$(mktemp -d /tmp/mrte-test-log.XXXXXX)
total_pass=0
total_fail=0
groups_failed=()

# Count cmocka's "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)" and
# our shell tests' "# N passed, M failed" lines in a group's output.
tally() {
	local out=$1 p f
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p; s/^#* *\([0-9]*\) passed, [0-9]* failed$/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p; s/^#* *[0-9]* passed, \([0-9]*\) failed$/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
	echo "${p:-0} ${f:-0}"
}

run_group() {
	local name=$1
	shift
	local out="$log/$name.out" start=$SECONDS rc
	echo
	echo "######## $name"
	"$@" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	read -r p f < <(tally "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # it failed without saying which case: count the group once
		echo "######## $name exited with status $rc"
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	[ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || groups_failed+=("$name")
	echo "######## $name: $p passed, $f failed ($((SECONDS - start)) s)"
}

if [ "$(id -u)" -ne 0 ]; then
	echo "WARNING: not root: the BPF and integration tests will FAIL (they are never skipped)."
fi

run_group unit tests/run-unit.sh "$BUILD"/tests/test_unit_*
run_group bpf tests/run-unit.sh "$BUILD"/tests/test_bpf_*
run_group compare tests/lib/test_compare.sh
run_group fuzz tests/fuzz/run.sh "${FUZZ_SECONDS:-10}" "$BUILD"/fuzz/fuzz_*
run_group integration tests/integration/run.sh

echo
if [ ${#groups_failed[@]} -gt 0 ]; then
	echo "failed groups: ${groups_failed[*]} (logs in $log)"
else
	rm -rf "$log"
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ ${#groups_failed[@]} -eq 0 ]
