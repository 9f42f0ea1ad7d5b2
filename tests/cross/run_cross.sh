#!/usr/bin/env bash
# The whole test suite for another target: every tests/test_*.c unit test and the end-to-end shell tests,
# with the library, CLI, converter and tools built for TARGET and run under qemu-user (or natively for
# the scalar-only build). Usage, from the repository root (`make test-cross` runs all four):
#
#   tests/cross/run_cross.sh aarch64-dotprod   # aarch64, NEON + dot product (qemu -cpu max)
#   tests/cross/run_cross.sh aarch64-nodot     # aarch64, NEON without dot product (qemu -cpu cortex-a72):
#                                              # the tests of the int8 kernels and quantised models only
#   tests/cross/run_cross.sh armv7             # 32-bit Raspberry Pi OS (armhf), qemu-arm
#   tests/cross/run_cross.sh scalar            # this machine, built with -DABC_NO_SIMD (no SIMD kernels)
#
# The cross builds are -O2 without sanitizers (qemu-user cannot run ASan); the scalar build is native and
# keeps `make test`'s ASan/UBSan. Host-only checks are left out: test_kernels_aarch64.sh (the aarch64
# kernel test, which these targets run in full), test_install.sh (installing and linking the host's
# library), test_python.sh (the host's python3 cannot load a shared library built for another target)
# and test_baremetal.sh (its own cross build and emulator). The tiny .abc
# models are converted once on the host: the weight format is the same on every platform.
# Needs (Debian): gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
# qemu-user. Ends with the "N passed, N failed, N skipped" line of tests/run_tests.sh.
set -u
cd "$(dirname "$0")/../.." || exit 1
TARGET=${1:-}
ONLY="" # the tests this target runs (names without directory): empty for all
# -Werror for the library, CLI and tools; the unit tests (written for -O1) only warn.
CFLAGS_COMMON="-std=c11 -Wall -Wextra -ffp-contract=off -I. -O2 -g"
case "$TARGET" in
aarch64-dotprod)
    CC=aarch64-linux-gnu-gcc; RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"
    EXTRA=""; WANT_PATH="neon"; WANT_DOT=1 ;;
aarch64-nodot)
    # The same build and emulator as aarch64-dotprod but for one thing: the int8 products take the
    # smull + sadalp kernels. So only the tests that run them (kernels, quantised models) run here.
    CC=aarch64-linux-gnu-gcc; RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a72"
    EXTRA=""; WANT_PATH="neon"; WANT_DOT=0
    ONLY="test_kernels test_quant test_model test_weights test_q8.sh test_q4.sh test_cli.sh" ;;
armv7)
    # Raspberry Pi OS 32-bit: armv7-a hard float with NEON + VFPv4 (section 7c's neon32 kernels, which
    # must be the ones detected); 64-bit file offsets for large model files.
    CC=arm-linux-gnueabihf-gcc; RUNNER="qemu-arm -L /usr/arm-linux-gnueabihf"
    EXTRA="-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -D_FILE_OFFSET_BITS=64"; WANT_PATH="neon32"; WANT_DOT=0 ;;
scalar)
    # Native, so with the sanitizers of `make test` (-O1): the whole models on the scalar kernels under
    # ASan/UBSan, which the host suite (on its best SIMD path) does not cover.
    CC=${CC:-cc}; RUNNER=""
    CFLAGS_COMMON="-std=c11 -Wall -Wextra -ffp-contract=off -I. -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
    EXTRA="-DABC_NO_SIMD"; WANT_PATH="scalar"; WANT_DOT=0 ;;
*)
    echo "usage: $0 aarch64-dotprod|aarch64-nodot|armv7|scalar" >&2
    echo "0 passed, 1 failed, 0 skipped"
    exit 2 ;;
esac

setup_start=$(date +%s)
B=build/cross-$TARGET
mkdir -p "$B/run"
fail_setup() { echo "FAIL $TARGET: $1"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

for tool in $CC ${RUNNER%% *}; do
    command -v "$tool" >/dev/null 2>&1 || fail_setup "$tool is not installed (see the header of $0)"
done

# Host prerequisites: host tools (npycmp compares the dumps) and the tiny models.
make -s all test-data >/dev/null ||
    fail_setup "host build failed"

build() { # unit|tool OUT SOURCES...: unit tests with fault injection (as in `make test`), tools -Werror
    local flags=-DABC_FAULT_INJECTION
    if [ "$1" = tool ]; then flags=-Werror; fi
    local out=$2; shift 2
    # shellcheck disable=SC2086
    $CC $CFLAGS_COMMON $flags $EXTRA -o "$out" "$@" -lm -lpthread || fail_setup "build of $out failed"
}
wrap() { # NAME BINARY: a script that runs BINARY under the emulator, for the shell tests and run_tests.sh
    printf '#!/bin/sh\nexec %s %s "$@"\n' "$RUNNER" "$PWD/$2" >"$B/run/$1"
    chmod +x "$B/run/$1"
}

echo "== $TARGET: building with $CC $EXTRA"
units=()
# ABC_CROSS_ONLY="test_a test_b.sh ...": only those (a quick rerun of what a change touched)
if [ -n "${ABC_CROSS_ONLY:-}" ]; then ONLY=$ABC_CROSS_ONLY; fi
selected() { [ -z "$ONLY" ] || printf ' %s ' "$ONLY" | grep -q " $1 "; }
for src in tests/test_*.c; do
    name=$(basename "$src" .c)
    [ "$name" = test_kernels ] || selected "$name" || continue # test_kernels: also the kernel-path check below
    build unit "$B/$name" "$src"
    wrap "$name" "$B/$name"
    units+=("$B/run/$name")
done
build tool "$B/abc" cli/*.c model_convert/json.c abc.c
build tool "$B/abc-convert" model_convert/*.c
build tool "$B/tool_decode" tests/tool_decode.c abc.c
build tool "$B/bench_model" bench/bench_model.c
build tool "$B/abc-synth" tools/synth.c model_convert/json.c
for t in abc abc-convert tool_decode bench_model abc-synth; do wrap "$t" "$B/$t"; done

# The kernel path the library picks must be the one this target is about.
paths=$("$B/run/test_kernels" 2>&1 | grep 'kernel paths on this machine' || true)
echo "     $paths"
[ -n "$paths" ] || fail_setup "test_kernels did not report the kernel paths"
case "$WANT_PATH" in
neon) echo "$paths" | grep -Eq ' neon( |$)' || fail_setup "the NEON path was not detected" ;;
neon32) echo "$paths" | grep -Eq ' neon32( |$)' || fail_setup "the armv7 NEON path (neon32) was not detected" ;;
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
# Every shell test but the host-only ones named at the top (a new test joins automatically; it must
# take its binaries from the variables above to test this target's build rather than the host's).
shell_tests=()
for t in tests/test_*.sh; do
    case "$t" in tests/test_kernels_aarch64.sh | tests/test_install.sh | tests/test_python.sh | tests/test_baremetal.sh) continue ;; esac
    shell_tests+=("$t")
done
# One tests/run_tests.sh per test, to print each one's wall time; the totals are added up here.
start=$(date +%s)
passed=0; failed=0; skipped=0; status=0
for t in "${units[@]}" "${shell_tests[@]}"; do
    selected "$(basename "$t")" || continue
    t0=$(date +%s)
    out=$(tests/run_tests.sh "$t"); rc=$?
    printf '%s\n' "$out" | sed '$d'
    last=$(printf '%s\n' "$out" | tail -n 1)
    read -r p f s < <(echo "$last" | awk '/^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$/ {print $1, $3, $5}')
    if [ -z "$p" ]; then p=0; f=1; s=0; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$rc" -ne 0 ] && status=1
    echo "   ($TARGET: $(basename "$t") $p passed, $f failed, $s skipped, $(( $(date +%s) - t0 )) s)"
done
echo "== $TARGET: tests $(( $(date +%s) - start )) s, build and tests $(( $(date +%s) - setup_start )) s"
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
