#!/bin/bash
# tests/fuzz/run.sh SECONDS FUZZER... -- run each libFuzzer target for
# SECONDS on a scratch copy of its seed corpus (tests/fuzz/corpus/NAME).
# A crash, a sanitizer report or a leak fails that target; the crashing
# input is kept and its path printed.  `make fuzz` runs longer sessions.
set -u
secs=${1:?usage: run.sh SECONDS FUZZER...}
shift
pass=0
fail=0
for f in "$@"; do
	name=$(basename "$f")
	seeds=$(dirname "$0")/corpus/$name
	work=$(mktemp -d /tmp/mrte-fuzz.XXXXXX)
	mkdir -p "$work/corpus"
	[ -d "$seeds" ] && cp "$seeds"/* "$work/corpus/" 2>/dev/null
	if "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
		echo "  ok    $name: ${runs:-?} inputs in ${secs} s, no crash"
		pass=$((pass + 1))
		rm -rf "$work"
	else
		echo "  FAIL  $name: see $work/log; crashing input: $(ls "$work"/crash-* "$work"/leak-* 2>/dev/null | head -1)"
		tail -30 "$work/log"
		fail=$((fail + 1))
	fi
done
echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
