#!/usr/bin/env bash
# tests/fuzz/build.sh SRC OUT — builds one fuzz target under ASan/UBSan: with clang's libFuzzer when
# $FUZZ_CC (default clang) can link -fsanitize=fuzzer, else with tests/fuzz/driver.c (a plain mutation
# loop) and $FUZZ_CC, or cc when there is no clang at all. FUZZ_ENGINE=libfuzzer|standalone forces one.
set -euo pipefail
SRC=${1:?usage: build.sh SRC OUT}
OUT=${2:?usage: build.sh SRC OUT}
FUZZ_CC=${FUZZ_CC:-clang}
command -v "$FUZZ_CC" >/dev/null 2>&1 || FUZZ_CC=cc
if [ -z "${FUZZ_ENGINE:-}" ]; then
    probe=$(mktemp -d)
    trap 'rm -rf "$probe"' EXIT
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
    if "$FUZZ_CC" -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
        FUZZ_ENGINE=libfuzzer
    else
        FUZZ_ENGINE=standalone
    fi
fi
FLAGS=(-std=c11 -Wall -Wextra -ffp-contract=off -I. -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
mkdir -p "$(dirname "$OUT")"
if [ "$FUZZ_ENGINE" = libfuzzer ]; then
    "$FUZZ_CC" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -o "$OUT" "$SRC" -lm -lpthread
else
    "$FUZZ_CC" "${FLAGS[@]}" -fsanitize=address,undefined -o "$OUT" "$SRC" tests/fuzz/driver.c -lm -lpthread
fi
echo "$FUZZ_ENGINE" >"$OUT.engine"
