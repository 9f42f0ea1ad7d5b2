#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh SECONDS TARGET... — runs each built fuzz target (build/fuzz/TARGET) for SECONDS,
# one after another, on a working corpus build/fuzz/corpus/NAME seeded from tests/fuzz/corpus/NAME (NAME is
# TARGET without "fuzz_"), with tests/fuzz/dict/NAME.dict when there is one. Prints one line per target
# (executions, executions/s, coverage, corpus size) and exits 1 if any target found anything: a crash,
# a sanitizer report, a leak, a timeout (FUZZ_TIMEOUT s per input, default 10) or more than
# FUZZ_RSS_MB (default 2048) of memory. The inputs are kept as build/fuzz/findings/NAME-*.
# Each new fuzz target (e.g. the server's request parser) only needs tests/fuzz/fuzz_NAME.c and a
# seed corpus in tests/fuzz/corpus/NAME/; `make fuzz` and CI pick it up.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:?usage: run_fuzz.sh SECONDS TARGET...}
shift
mkdir -p build/fuzz/findings
status=0
printf '%-18s %-10s %6s %10s %9s %8s %8s %7s  %s\n' target engine time execs execs/s cov ft corpus result
for target in "$@"; do
    name=${target#fuzz_}
    bin=build/fuzz/$target
    engine=$(cat "$bin.engine" 2>/dev/null || echo standalone)
    work=build/fuzz/corpus/$name
    mkdir -p "$work"
    args=(-max_total_time="$SECONDS_EACH" -artifact_prefix="build/fuzz/findings/$name-")
    [ -f "tests/fuzz/dict/$name.dict" ] && args+=(-dict="tests/fuzz/dict/$name.dict")
    if [ "$engine" = libfuzzer ]; then
        args+=(-print_final_stats=1 -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}"
               -malloc_limit_mb="${FUZZ_RSS_MB:-2048}" -close_fd_mask=1)
    fi
    log=build/fuzz/$name.log
    start=$(date +%s)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
        "$bin" "${args[@]}" "$work" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    n_corpus=$(find "$work" "tests/fuzz/corpus/$name" -type f 2>/dev/null | wc -l)
    result=ok
    if [ $rc -ne 0 ] || grep -q 'ERROR: \(AddressSanitizer\|LeakSanitizer\|libFuzzer\)\|runtime error:\|FUZZ_ASSERT' "$log"; then
        result="FINDING (rc $rc, see $log)"
        status=1
    fi
    printf '%-18s %-10s %5ss %10s %9s %8s %8s %7s  %s\n' "$target" "$engine" "$took" "${execs:--}" "${rate:--}" \
        "${cov:--}" "${ft:--}" "$n_corpus" "$result"
    if [ "$result" != ok ]; then
        grep -m 5 'ERROR\|runtime error\|FUZZ_ASSERT\|SUMMARY\|Test unit written' "$log" | sed 's/^/    /'
    fi
done
exit $status
