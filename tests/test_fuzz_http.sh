#!/usr/bin/env bash
# Short fuzz run of tests/fuzz/fuzz_http_request.c (the `abc serve` request parser, JSON body reader and
# /v1/embeddings decoding) on its corpus tests/fuzz/corpus/http_request: the standalone mutation driver
# (build/fuzz_http_request, ASan/UBSan) for ABC_FUZZ_SECONDS (default 10), then, where clang can link
# libFuzzer (Debian clang + libclang-rt-dev), a libFuzzer build for as long. A finding fails the test (the
# input is kept as build/fuzz_http_request-crash-*). Ends with "RESULT passed failed skipped".
set -u
# Under tests/cross/run_cross.sh (ABC_CLI set) the host's harness would only run again: 2 s is enough there.
DEFAULT_SECONDS=10
[ -n "${ABC_CLI:-}" ] && DEFAULT_SECONDS=2
SECONDS_EACH=${ABC_FUZZ_SECONDS:-$DEFAULT_SECONDS}
BIN=build/fuzz_http_request
CORPUS=tests/fuzz/corpus/http_request
DICT=tests/fuzz/dict/http_request.dict
passed=0; failed=0; skipped=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_fuzz_http.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
REPO=$(pwd)

if [ ! -x "$BIN" ]; then echo "FAIL $BIN is missing (run 'make test')"; echo "RESULT 0 1 0"; exit 1; fi
n_seeds=$(ls "$CORPUS" | wc -l)
(cd "$TMP" && "$REPO/$BIN" -seconds="$SECONDS_EACH" "$REPO/$CORPUS") >"$TMP/standalone.out" 2>&1
rc=$?
line=$(grep '^fuzz_http_request: ' "$TMP/standalone.out" | tail -n 1)
if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
    passed=$((passed + 1)); echo "ok   standalone driver, $n_seeds seeds: ${line#fuzz_http_request: }"
else
    failed=$((failed + 1)); echo "FAIL standalone driver: exit $rc"; tail -n 40 "$TMP/standalone.out"
    for c in "$TMP"/crash-*; do [ -e "$c" ] && cp "$c" "build/fuzz_http_request-$(basename "$c")"; done
fi

CLANG=${FUZZ_CC:-clang}
if ! command -v "$CLANG" >/dev/null 2>&1; then
    skipped=$((skipped + 1)); echo "SKIP libFuzzer run: $CLANG not found (Debian packages clang libclang-rt-dev)"
elif ! "$CLANG" -std=c11 -Wall -Wextra -ffp-contract=off -I. -O1 -g -fno-omit-frame-pointer \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -o "$TMP/fuzz_lf" tests/fuzz/fuzz_http_request.c -lm -lpthread >"$TMP/build.log" 2>&1; then
    if grep -qi 'fuzzer' "$TMP/build.log" && grep -qiE 'cannot find|not found|unsupported' "$TMP/build.log"; then
        skipped=$((skipped + 1)); echo "SKIP libFuzzer run: $CLANG cannot link -fsanitize=fuzzer (Debian package libclang-rt-dev)"
    else
        failed=$((failed + 1)); echo "FAIL libFuzzer build:"; sed 's/^/    /' "$TMP/build.log" | head -20
    fi
else
    mkdir -p "$TMP/corpus"
    cp "$CORPUS"/* "$TMP/corpus/"
    (cd "$TMP" && ./fuzz_lf -max_total_time="$SECONDS_EACH" -dict="$REPO/$DICT" -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$TMP/" corpus) >"$TMP/lf.out" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$TMP/lf.out" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$TMP/lf.out" | tail -n 1)
    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        passed=$((passed + 1)); echo "ok   libFuzzer: $runs executions in ${SECONDS_EACH} s ($cov, corpus $n_seeds → $(ls "$TMP/corpus" | wc -l)), no finding"
    else
        failed=$((failed + 1)); echo "FAIL libFuzzer: exit $rc"; tail -n 40 "$TMP/lf.out"
        for c in "$TMP"/crash-* "$TMP"/leak-* "$TMP"/timeout-*; do [ -e "$c" ] && cp "$c" "build/fuzz_http_request-lf-$(basename "$c")"; done
    fi
fi
echo "RESULT $passed $failed $skipped"
[ "$failed" -eq 0 ]
