#!/usr/bin/env bash
# Runs every test binary given on the command line (and tests/*.sh scripts among them), adds up their
# "RESULT passed failed [skipped]" lines and prints the closing "N passed, N failed, N skipped" line.
#
# A test that cannot run because an optional tool is missing (cjpeg, qemu, a cross compiler, python3,
# clang's libFuzzer) prints "SKIP <what>: <reason>" and counts it in the third RESULT field. With
# ABC_REQUIRE_ALL=1 (CI sets it: CI installs every optional tool) each skip counts as a failure.
set -u
passed=0; failed=0; skipped=0; status=0
skip_lines=()
for t in "$@"; do
    echo "== $t"
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -v '^RESULT '
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t: no RESULT line (exit $rc)"; failed=$((failed + 1)); status=1; continue
    fi
    p=$(echo "$line" | awk '{print $2}'); f=$(echo "$line" | awk '{print $3}'); s=$(echo "$line" | awk '{print ($4 == "" ? 0 : $4)}')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    while IFS= read -r l; do skip_lines+=("$t: ${l#SKIP }"); done < <(printf '%s\n' "$out" | grep '^SKIP ')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL $t: exit $rc"; failed=$((failed + 1)); fi
    [ "$rc" -ne 0 ] && status=1
done
if [ "${#skip_lines[@]}" -gt 0 ]; then
    echo "== skipped (optional tools missing):"
    printf '   %s\n' "${skip_lines[@]}"
fi
if [ "${ABC_REQUIRE_ALL:-0}" = 1 ] && [ "$skipped" -gt 0 ]; then
    echo "ABC_REQUIRE_ALL=1: $skipped skipped check(s) count as failures"
    failed=$((failed + skipped)); skipped=0; status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
