#!/bin/bash
# tests/run-unit.sh BINARY... -- run cmocka test binaries, report each.
# Exit status: non-zero if any binary failed (or could not run).
fail=0
for t in "$@"; do
	echo "== $(basename "$t")"
	if ! "$t"; then
		echo "== $(basename "$t"): FAILED"
		fail=1
	fi
done
exit $fail
