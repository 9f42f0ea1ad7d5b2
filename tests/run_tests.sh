#!/usr/bin/env bash
# Runs every test binary given on the command line (and tests/*.sh scripts among them), adds up their
# "RESULT passed failed" lines and prints the closing "N passed, N failed" line.
set -u
passed=0; failed=0; status=0
for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -v '^RESULT ' 
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t: no RESULT line (exit $rc)"; failed=$((failed + 1)); status=1; continue
    fi
    p=$(echo "$line" | awk '{print $2}'); f=$(echo "$line" | awk '{print $3}')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL $t: exit $rc"; failed=$((failed + 1)); fi
    [ "$rc" -ne 0 ] && status=1
done
echo "$passed passed, $failed failed"
exit $status
