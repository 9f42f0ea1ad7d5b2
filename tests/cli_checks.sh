# Shell helpers shared by the CLI end-to-end tests (test_cli.sh, test_phi3v.sh, test_q8.sh), sourced after
# the caller has set ABC (the CLI under test), CMP (build/tool_npycmp) and TMP (a scratch directory).
# Counts checks in $passed / $failed; the caller prints "RESULT $passed $failed" at the end.

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

# run_cli EXPECTED_RC LABEL ARGS...: runs $ABC, keeps stdout/stderr in $TMP/out, $TMP/err; checks
# the exit status and that a sanitizer did not report anything.
run_cli() {
    local want=$1 label=$2; shift 2
    "$ABC" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if grep -q -e 'Sanitizer' -e 'runtime error:' "$TMP/err"; then
        bad "$label: sanitizer report"; sed 's/^/    /' "$TMP/err" | head -40; return 1
    fi
    if [ "$rc" -ne "$want" ]; then
        bad "$label: exit $rc, expected $want"; sed 's/^/    /' "$TMP/err" | head -20; return 1
    fi
    return 0
}

# expect_error EXPECTED_RC LABEL PATTERN ARGS...: the command must fail with EXPECTED_RC, print nothing
# on stdout, and say "abc: error:"/"abc: usage error:" plus PATTERN (extended regex, any case) on stderr.
expect_error() {
    local want=$1 label=$2 pattern=$3; shift 3
    run_cli "$want" "$label" "$@" || return
    if [ -s "$TMP/out" ]; then bad "$label: wrote to stdout"; return; fi
    local prefix='^abc: error: '
    [ "$want" -eq 2 ] && prefix='^abc: usage error: '
    if ! grep -Eq "$prefix" "$TMP/err" || ! grep -Eiq -- "$pattern" "$TMP/err"; then
        bad "$label: message does not match /$pattern/:"; sed 's/^/    /' "$TMP/err"; return
    fi
    ok "$label ($(head -n 1 "$TMP/err"))"
}

# compare LABEL ARGS...: build/tool_npycmp, printing its numbers.
compare() {
    local label=$1; shift
    local line
    line=$("$CMP" --label "$label" "$@" 2>&1)
    local rc=$?
    echo "     $line"
    if [ "$rc" -eq 0 ]; then ok "$label"; else bad "$label"; fi
}

# manifest_field CASE KEY: a string field of the case's entry in manifest.json (indent-1 JSON)
# of a fixture directory $FIX (test_gme.sh, test_colqwen2.sh).
manifest_field() {
    awk -v name="\"$1\"," -v key="\"$2\":" '$1 == "\"name\":" { cur = ($2 == name) }
        cur && $1 == key { sub(/^[^:]*: "/, ""); sub(/",?$/, ""); print; exit }' "$FIX/manifest.json"
}

# compare_qwen2vl_stages NAME DUMP REF: a Qwen2-VL case's stages (abc embed --dump DUMP) against the
# fixture's REF with the tolerances of docs/testing.md#tolerances: input_ids and position_ids identical,
# pixel_values by the manifest's SHA-256 and vision_embeds within 1e-4·max|ref| (or no image stages for a
# text-only case), last_hidden within 5e-4·max|ref|.
compare_qwen2vl_stages() {
    local name=$1 dump=$2 ref=$3
    compare "$name/input_ids" --exact "$dump/input_ids.npy" "$ref/input_ids.npy"
    compare "$name/position_ids" --exact "$dump/position_ids.npy" "$ref/position_ids.npy"
    if [ -e "$ref/vision_embeds.npy" ]; then
        local want got
        want=$(manifest_field "$name" pixel_values_sha256)
        got=$("$CMP" --sha256 "$dump/pixel_values.npy" 2>&1)
        check "$name/pixel_values: sha256 ${want:0:16}… identical" test -n "$want" -a "$got" = "$want"
        compare "$name/vision_embeds" --rel 1e-4 "$dump/vision_embeds.npy" "$ref/vision_embeds.npy"
    else
        check "$name: no image stages for a text-only input" test ! -e "$dump/pixel_values.npy"
    fi
    compare "$name/last_hidden" --rel 5e-4 "$dump/last_hidden.npy" "$ref/last_hidden.npy"
}
