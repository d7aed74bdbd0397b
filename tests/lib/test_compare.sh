#!/usr/bin/env bash
# tests/lib/test_compare.sh -- self-test of tests/lib/compare.py on hand-made TSVs.
# No servers needed.  Prints "N passed, N failed"; exit 0 only if all passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CMP=("${MRTE_PYTHON:-/usr/bin/python3}" "$here/compare.py")
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

pass=0
fail=0

hx() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }

# --- building blocks -------------------------------------------------------
# log rows
L_connect() { printf '%s\tConnect\t%s\n' "$1" "$(hx "$2@127.0.0.1 on sbtest using TCP/IP")"; }
L_query()   { printf '%s\tQuery\t%s\n' "$1" "$(hx "$2")"; }
L_initdb()  { printf '%s\tInit DB\t%s\n' "$1" "$(hx "$2")"; }
L_quit()    { printf '%s\tQuit\t\n' "$1"; }
# dump rows
D_handshake() {   # ADDR USER : HandshakeResponse41 (CLIENT_PROTOCOL_41 set)
    printf '%s\t1\tHANDSHAKE\t%s%s%s%s%s00%s\n' "$1" 85a6ff01 00000001 21 \
        "$(printf '0%.0s' $(seq 46))" "$(hx "$2")" "14$(printf '%040d' 0)"
}
D_auth()   { printf '%s\t3\tAUTH\t%s\n' "$1" "$(hx secret)"; }
D_query()  { printf '%s\t0\tQUERY\t03%s\n' "$1" "$(hx "$2")"; }
D_initdb() { printf '%s\t0\tINIT_DB\t02%s\n' "$1" "$(hx "$2")"; }
D_quit()   { printf '%s\t0\tQUIT\t01\n' "$1"; }
D_ping()   { printf '%s\t0\tPING\t0e\n' "$1"; }

A=127.0.0.1:40001
B=127.0.0.1:40002
C=127.0.0.1:40003

# base ground truth: two sbtest threads that share some identical statements
base_log() {
    echo "# hand-made general log"
    L_connect 7 root                 # another account's thread (filtered by --user)
    L_query 7 "SELECT @@version"
    L_connect 10 sbtest
    L_connect 11 sbtest
    L_query 10 "BEGIN"
    L_query 11 "BEGIN"
    L_query 10 "SELECT c FROM sbtest1 WHERE id=1"
    L_query 11 "SELECT c FROM sbtest2 WHERE id=7"
    L_initdb 10 "db_a"
    L_query 10 "UPDATE sbtest1 SET k=k+1 WHERE id=5"
    L_query 11 "COMMIT"
    L_query 10 "COMMIT"
    L_quit 10
    L_quit 11
}

# the matching dump: sessions interleaved differently, B before A
base_dump_A() {
    D_handshake $A sbtest
    D_auth $A
    D_query $A "BEGIN"
    D_query $A "SELECT c FROM sbtest1 WHERE id=1"
    D_initdb $A "db_a"
    D_query $A "UPDATE sbtest1 SET k=k+1 WHERE id=5"
    D_query $A "COMMIT"
    D_quit $A
}
base_dump_B() {
    D_handshake $B sbtest
    D_query $B "BEGIN"
    D_ping $B
    D_query $B "SELECT c FROM sbtest2 WHERE id=7"
    D_query $B "COMMIT"
    D_quit $B
}
base_dump_root() {
    D_handshake $C root
    D_query $C "SELECT @@version"
}

# run_case NAME EXPECTED_RC "EXPECTED SUMMARY" LOGFILE DUMPFILE [compare.py options]
run_case() {
    local name=$1 want_rc=$2 want_sum=$3 log=$4 dump=$5
    shift 5
    local out rc=0 sum
    out=$("${CMP[@]}" "$@" "$log" "$dump" 2>&1) || rc=$?
    sum=$(printf '%s\n' "$out" | tail -n 1)
    if [ "$rc" = "$want_rc" ] && { [ -z "$want_sum" ] || [ "$sum" = "$want_sum" ]; }; then
        pass=$((pass + 1))
        echo "ok   - $name (rc $rc)"
    else
        fail=$((fail + 1))
        echo "FAIL - $name: rc $rc (want $want_rc)"
        echo "       got:  $sum"
        [ -z "$want_sum" ] || echo "       want: $want_sum"
        printf '%s\n' "$out" | sed 's/^/       | /'
    fi
}

# expect_output NAME REGEX LOGFILE DUMPFILE [options]: report contains REGEX
expect_output() {
    local name=$1 re=$2 log=$3 dump=$4
    shift 4
    local out
    out=$("${CMP[@]}" "$@" "$log" "$dump" 2>&1) || true
    if printf '%s\n' "$out" | grep -Eq -- "$re"; then
        pass=$((pass + 1)); echo "ok   - $name"
    else
        fail=$((fail + 1)); echo "FAIL - $name: no line matching /$re/"
        printf '%s\n' "$out" | sed 's/^/       | /'
    fi
}

S() {  # summary line: S nlog ndump matched xlog ydump missing extra dup ooo
    echo "sessions: $1 log, $2 dump, matched $3; statements: $4 log, $5 dump, missing $6, extra $7, duplicated $8, out-of-order $9"
}

base_log >"$tmp/log.tsv"

# 1. identical (root's thread/session filtered by --user on both sides)
{ echo "# dump"; echo; base_dump_B; base_dump_A; base_dump_root; } >"$tmp/d1.tsv"
run_case "identical" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d1.tsv" --user sbtest
# same without --user: root thread and session are both there and match too
run_case "identical, all users" 0 "$(S 3 3 3 9 9 0 0 0 0)" "$tmp/log.tsv" "$tmp/d1.tsv"
# interleaved packets of the two sessions
paste -d'\n' <(base_dump_A) <(base_dump_B) | grep -v '^$' >"$tmp/d1i.tsv"
run_case "identical, interleaved" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d1i.tsv" --user sbtest

# 2. missing one statement
{ base_dump_A | grep -v "$(hx 'UPDATE sbtest1')"; base_dump_B; } >"$tmp/d2.tsv"
run_case "missing one" 1 "$(S 2 2 2 8 7 1 0 0 0)" "$tmp/log.tsv" "$tmp/d2.tsv" --user sbtest
expect_output "missing one: report names it" "missing +log #4: UPDATE sbtest1 SET k=k\+1 WHERE id=5" \
    "$tmp/log.tsv" "$tmp/d2.tsv" --user sbtest

# 3. extra one statement
{ base_dump_A; base_dump_B | sed "/$(hx COMMIT)/i\\
$(D_query $B 'SELECT 42')"; } >"$tmp/d3.tsv"
run_case "extra one" 1 "$(S 2 2 2 8 9 0 1 0 0)" "$tmp/log.tsv" "$tmp/d3.tsv" --user sbtest
expect_output "extra one: report names it" "extra +dump #3: SELECT 42" "$tmp/log.tsv" "$tmp/d3.tsv" --user sbtest

# 4. duplicated one statement (e.g. a retransmission decoded twice)
{ base_dump_A | awk '{ print } /'"$(hx 'SELECT c FROM sbtest1')"'/ { print }'; base_dump_B; } >"$tmp/d4.tsv"
run_case "duplicated one" 1 "$(S 2 2 2 8 9 0 0 1 0)" "$tmp/log.tsv" "$tmp/d4.tsv" --user sbtest
expect_output "duplicated one: report names it" "duplicated dump #3: SELECT c FROM sbtest1" \
    "$tmp/log.tsv" "$tmp/d4.tsv" --user sbtest

# 5. swapped order of two statements
{
    D_handshake $A sbtest
    D_query $A "BEGIN"
    D_initdb $A "db_a"
    D_query $A "SELECT c FROM sbtest1 WHERE id=1"
    D_query $A "UPDATE sbtest1 SET k=k+1 WHERE id=5"
    D_query $A "COMMIT"
    base_dump_B
} >"$tmp/d5.tsv"
run_case "swapped order" 1 "$(S 2 2 2 8 8 0 0 0 1)" "$tmp/log.tsv" "$tmp/d5.tsv" --user sbtest
expect_output "swapped order: report names it" "out-of-order log #[23] at dump #[23]" \
    "$tmp/log.tsv" "$tmp/d5.tsv" --user sbtest

# 6. unmatched dump session with statements
{ base_dump_A; base_dump_B; D_handshake 127.0.0.1:40009 sbtest; D_query 127.0.0.1:40009 "SELECT 1"; \
  D_query 127.0.0.1:40009 "SELECT 2"; } >"$tmp/d6.tsv"
run_case "unmatched dump session" 1 "$(S 2 3 2 8 10 0 2 0 0)" "$tmp/log.tsv" "$tmp/d6.tsv" --user sbtest
expect_output "unmatched dump session: reported" "unmatched dump session 127.0.0.1:40009: 2 statement" \
    "$tmp/log.tsv" "$tmp/d6.tsv" --user sbtest

# 7. unmatched log session (whole connection not captured)
base_dump_A >"$tmp/d7.tsv"
run_case "unmatched log session" 1 "$(S 2 1 1 8 5 3 0 0 0)" "$tmp/log.tsv" "$tmp/d7.tsv" --user sbtest
expect_output "unmatched log session: reported" "unmatched log session thread 11: 3 statement" \
    "$tmp/log.tsv" "$tmp/d7.tsv" --user sbtest

# 8. dump session without statements is not a failure; --user filter
{ base_dump_A; base_dump_B; D_handshake 127.0.0.1:40010 sbtest; D_ping 127.0.0.1:40010; D_quit 127.0.0.1:40010; } >"$tmp/d8.tsv"
run_case "empty dump session ignored" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d8.tsv" --user sbtest
{ base_dump_A; base_dump_B; base_dump_root; } >"$tmp/d8b.tsv"
run_case "--user drops the root session" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d8b.tsv" --user sbtest

# 9. session captured mid-stream (no HANDSHAKE) is kept by --user
{ base_dump_A; base_dump_B | grep -v HANDSHAKE; } >"$tmp/d9.tsv"
run_case "no-handshake session kept" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d9.tsv" --user sbtest

# 10. --ignore-init-db
{ base_dump_A | grep -v INIT_DB; base_dump_B; } >"$tmp/d10.tsv"
run_case "INIT_DB missing" 1 "$(S 2 2 2 8 7 1 0 0 0)" "$tmp/log.tsv" "$tmp/d10.tsv" --user sbtest
run_case "INIT_DB missing, --ignore-init-db" 0 "$(S 2 2 2 7 7 0 0 0 0)" "$tmp/log.tsv" "$tmp/d10.tsv" \
    --user sbtest --ignore-init-db

# 11. query normalisation like the server's (whitespace, trailing ';')
{ base_dump_A | sed "s/$(hx COMMIT)\$/$(hx ' COMMIT ;')/"; base_dump_B; } >"$tmp/d11.tsv"
run_case "whitespace/semicolon normalised" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d11.tsv" --user sbtest
run_case "--exact sees the difference" 1 "$(S 2 2 2 8 8 1 1 0 0)" "$tmp/log.tsv" "$tmp/d11.tsv" --user sbtest --exact

# 12. sessions sharing identical statements are paired by overlap, not by first statement
{
    L_connect 20 sbtest; L_connect 21 sbtest
    for i in 1 2 3; do L_query 20 "BEGIN"; L_query 20 "SELECT $i"; L_query 20 "COMMIT"; done
    for i in 7 8; do L_query 21 "BEGIN"; L_query 21 "SELECT $i"; L_query 21 "COMMIT"; done
} >"$tmp/log12.tsv"
{
    D_handshake $B sbtest
    for i in 7 8; do D_query $B "BEGIN"; D_query $B "SELECT $i"; D_query $B "COMMIT"; done
    D_handshake $A sbtest
    for i in 1 2 3; do D_query $A "BEGIN"; [ "$i" = 2 ] || D_query $A "SELECT $i"; D_query $A "COMMIT"; done
} >"$tmp/d12.tsv"
run_case "shared statements, one missing" 1 "$(S 2 2 2 15 14 1 0 0 0)" "$tmp/log12.tsv" "$tmp/d12.tsv"
expect_output "shared statements: paired correctly" "^thread 20 <-> dump $A: 9 vs 8" "$tmp/log12.tsv" "$tmp/d12.tsv"

# 13. client port reuse: two HANDSHAKEs on one address are two sessions
{
    D_handshake $A sbtest; D_query $A "BEGIN"; D_query $A "SELECT c FROM sbtest1 WHERE id=1"
    D_initdb $A "db_a"; D_query $A "UPDATE sbtest1 SET k=k+1 WHERE id=5"; D_query $A "COMMIT"; D_quit $A
    D_handshake $A sbtest; D_query $A "BEGIN"; D_query $A "SELECT c FROM sbtest2 WHERE id=7"
    D_query $A "COMMIT"; D_quit $A
} >"$tmp/d13.tsv"
run_case "port reuse splits sessions" 0 "$(S 2 2 2 8 8 0 0 0 0)" "$tmp/log.tsv" "$tmp/d13.tsv" --user sbtest

# 14. a long session with one loss does not cascade into order violations
{
    L_connect 30 sbtest
    for i in $(seq 1 300); do L_query 30 "BEGIN"; L_query 30 "SELECT $i"; L_query 30 "COMMIT"; done
} >"$tmp/log14.tsv"
{
    D_handshake $A sbtest
    for i in $(seq 1 300); do [ "$i" = 17 ] || D_query $A "BEGIN"; D_query $A "SELECT $i"; D_query $A "COMMIT"; done
} >"$tmp/d14.tsv"
run_case "one lost BEGIN among 900" 1 "$(S 1 1 1 900 899 1 0 0 0)" "$tmp/log14.tsv" "$tmp/d14.tsv"

# 15. binary-safe: NUL, tab and newline bytes inside a query
{ L_connect 40 sbtest; printf '40\tQuery\t%s\n' "$(printf 'SELECT "a\0b\tc\nd"' | od -An -v -tx1 | tr -d ' \n')"; } >"$tmp/log15.tsv"
{ D_handshake $A sbtest; printf '%s\t0\tQUERY\t03%s\n' $A "$(printf 'SELECT "a\0b\tc\nd"' | od -An -v -tx1 | tr -d ' \n')"; } >"$tmp/d15.tsv"
run_case "binary-safe payloads" 0 "$(S 1 1 1 1 1 0 0 0 0)" "$tmp/log15.tsv" "$tmp/d15.tsv"

# 15b. a refused COM_INIT_DB is logged with the error text instead of the name
{ L_connect 50 sbtest
  printf '50\tInit DB\t%s\n' "$(hx "Access denied for user 'sbtest'@'127.0.0.1' to database 'secret'")"
  L_query 50 "SELECT 1"; } >"$tmp/log15b.tsv"
{ D_handshake $A sbtest; D_initdb $A secret; D_query $A "SELECT 1"; } >"$tmp/d15b.tsv"
run_case "refused INIT_DB matches its log row" 0 "$(S 1 1 1 2 2 0 0 0 0)" "$tmp/log15b.tsv" "$tmp/d15b.tsv"

# 16. malformed input -> exit 2
printf '%s\tQUERY\t03aa\n' $A >"$tmp/bad1.tsv"
run_case "dump with 3 fields is an input error" 2 "" "$tmp/log.tsv" "$tmp/bad1.tsv"
printf '%s\t0\tQUERY\t03zz\n' $A >"$tmp/bad2.tsv"
run_case "bad hex is an input error" 2 "" "$tmp/log.tsv" "$tmp/bad2.tsv"
printf '%s\t0\tBOGUS\t03\n' $A >"$tmp/bad3.tsv"
run_case "unknown KIND is an input error" 2 "" "$tmp/log.tsv" "$tmp/bad3.tsv"

# 17. empty inputs
: >"$tmp/empty.tsv"
run_case "both empty" 0 "$(S 0 0 0 0 0 0 0 0 0)" "$tmp/empty.tsv" "$tmp/empty.tsv"
run_case "empty dump" 1 "$(S 2 0 0 8 0 8 0 0 0)" "$tmp/log.tsv" "$tmp/empty.tsv" --user sbtest

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
