#!/usr/bin/env bash
# The whole test suite for another target: every tests/test_*.c unit test and the end-to-end shell tests,
# with the library, CLI, converter and tools built for TARGET and run under qemu-user (or natively for
# the scalar-only build). Usage, from the repository root (`make test-cross` runs all four):
#
#   tests/cross/run_cross.sh aarch64-dotprod   # aarch64, NEON + dot product (qemu -cpu max)
#   tests/cross/run_cross.sh aarch64-nodot     # aarch64, NEON without dot product (qemu -cpu cortex-a72)
#   tests/cross/run_cross.sh armv7             # 32-bit Raspberry Pi OS (armhf), qemu-arm
#   tests/cross/run_cross.sh scalar            # this machine, built with -DABC_NO_SIMD (no SIMD kernels)
#
# Cross builds have no sanitizers (the host `make test` runs everything under ASan/UBSan), so the shell
# tests get ASAN_OPTIONS-free wrappers. Host-only checks are left out: test_amalgamation.sh (abc.c vs src/)
# and test_kernels_aarch64.sh (the aarch64 kernel test, which these targets run in full). The tiny .abc
# models are converted once on the host: the weight format is the same on every platform.
# Needs (Debian): gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
# qemu-user. Ends with the "N passed, N failed" line of tests/run_tests.sh.
set -u
cd "$(dirname "$0")/../.."
TARGET=${1:-}
# -Werror for the library, CLI and tools; the unit tests (written for -O1) only warn.
CFLAGS_COMMON="-std=c11 -Wall -Wextra -ffp-contract=off -I. -O2 -g"
case "$TARGET" in
aarch64-dotprod)
    CC=aarch64-linux-gnu-gcc; RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"
    EXTRA=""; WANT_PATH="neon"; WANT_DOT=1 ;;
aarch64-nodot)
    CC=aarch64-linux-gnu-gcc; RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a72"
    EXTRA=""; WANT_PATH="neon"; WANT_DOT=0 ;;
armv7)
    # Raspberry Pi OS 32-bit: armv7-a hard float; 64-bit file offsets for large model files.
    CC=arm-linux-gnueabihf-gcc; RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
    EXTRA="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -D_FILE_OFFSET_BITS=64"; WANT_PATH="scalar"; WANT_DOT=0 ;;
scalar)
    CC=${CC:-cc}; RUNNER=""
    EXTRA="-DABC_NO_SIMD"; WANT_PATH="scalar"; WANT_DOT=0 ;;
*)
    echo "usage: $0 aarch64-dotprod|aarch64-nodot|armv7|scalar" >&2
    echo "0 passed, 1 failed"
    exit 2 ;;
esac

setup_start=$(date +%s)
B=build/cross-$TARGET
mkdir -p "$B/run"
fail_setup() { echo "FAIL $TARGET: $1"; echo "0 passed, 1 failed"; exit 1; }

for tool in $CC ${RUNNER%% *}; do
    command -v "$tool" >/dev/null 2>&1 || fail_setup "$tool is not installed (see the header of $0)"
done

# Host prerequisites: the amalgamation, host tools (npycmp compares the dumps) and the tiny models.
make -s abc.c all build/tool_npycmp build/tool_relayout build/tool_abccheck build/tiny-abc.abc \
    build/tiny-vlm2vec.abc build/tiny-phi3v.abc >/dev/null || fail_setup "host build failed"

build() { # [-Werror] OUT SOURCES...
    local werror=
    if [ "$1" = -Werror ]; then werror=-Werror; shift; fi
    local out=$1; shift
    # shellcheck disable=SC2086
    $CC $CFLAGS_COMMON $werror $EXTRA -DABC_FAULT_INJECTION -o "$out" "$@" -lm -lpthread || fail_setup "cross build of $out failed"
}
wrap() { # NAME BINARY: a script that runs BINARY under the emulator, for the shell tests and run_tests.sh
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$RUNNER" "$PWD/$2" >"$B/run/$1"
    chmod +x "$B/run/$1"
}

echo "== $TARGET: building with $CC $EXTRA"
units=()
for src in tests/test_*.c; do
    name=$(basename "$src" .c)
    build "$B/$name" "$src"
    wrap "$name" "$B/$name"
    units+=("$B/run/$name")
done
build -Werror "$B/abc" cli/*.c abc.c
build -Werror "$B/abc-convert" model_convert/*.c
build -Werror "$B/tool_decode" tests/tool_decode.c abc.c
build -Werror "$B/bench_model" bench/bench_model.c
build -Werror "$B/abc-synth" tools/synth.c model_convert/json.c
for t in abc abc-convert tool_decode bench_model abc-synth; do wrap "$t" "$B/$t"; done

# The kernel path the library picks must be the one this target is about.
paths=$("$B/run/test_kernels" 2>&1 | grep 'kernel paths on this machine' || true)
echo "     $paths"
case "$WANT_PATH" in
neon) echo "$paths" | grep -q ' neon' || fail_setup "the NEON path was not detected" ;;
scalar) echo "$paths" | grep -Eq 'avx|neon' && fail_setup "a SIMD path is compiled in: $paths" ;;
esac
if [ "$WANT_PATH" = neon ]; then
    if [ "$WANT_DOT" = 1 ]; then
        echo "$paths" | grep -q 'dotprod' || fail_setup "the dot-product extension was not detected under -cpu max"
    else
        echo "$paths" | grep -q 'dotprod' && fail_setup "the dot-product extension was detected under cortex-a72"
    fi
fi

export ABC_CLI=$B/run/abc ABC_CONVERT=$B/run/abc-convert ABC_CONVERT_UNDER_TEST=$B/run/abc-convert \
    ABC_DECODE_TOOL=$B/run/tool_decode ABC_BENCH_MODEL=$B/run/bench_model ABC_SYNTH=$B/run/abc-synth
shell_tests=(tests/test_cli.sh tests/test_phi3v.sh tests/test_q8.sh tests/test_convert.sh tests/test_jpeg_corpus.sh
    tests/test_bench_model.sh tests/test_synth.sh)
# One tests/run_tests.sh per test, to print each one's wall time; the totals are added up here.
start=$(date +%s)
passed=0; failed=0; status=0
for t in "${units[@]}" "${shell_tests[@]}"; do
    t0=$(date +%s)
    out=$(tests/run_tests.sh "$t"); rc=$?
    printf '%s\n' "$out" | sed '$d'
    last=$(printf '%s\n' "$out" | tail -n 1)
    p=$(echo "$last" | awk '/ passed, .* failed$/ {print $1}'); f=$(echo "$last" | awk '/ passed, .* failed$/ {print $3}')
    if [ -z "$p" ]; then p=0; f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" -ne 0 ] && status=1
    echo "   ($TARGET: $(basename "$t") $p passed, $f failed, $(( $(date +%s) - t0 )) s)"
done
echo "== $TARGET: tests $(( $(date +%s) - start )) s, build and tests $(( $(date +%s) - setup_start )) s"
echo "$passed passed, $failed failed"
exit $status
