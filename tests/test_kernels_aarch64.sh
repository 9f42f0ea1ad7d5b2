#!/usr/bin/env bash
# The NEON kernels (section 7c): builds tests/test_kernels.c for aarch64 and runs it under qemu-user.
# Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user; without them it says so
# and counts one skip. Run from the repository root.
set -u
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1; then
    # CI installs them and sets ABC_REQUIRE_ALL=1, which turns this skip into a failure (tests/run_tests.sh).
    echo "SKIP aarch64 kernels: aarch64-linux-gnu-gcc or qemu-aarch64 not installed (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
    echo "RESULT 0 0 1"
    exit 0
fi
mkdir -p build
if ! aarch64-linux-gnu-gcc -std=c11 -Wall -Wextra -ffp-contract=off -I. -O2 -g -DABC_FAULT_INJECTION \
        -o build/test_kernels_aarch64 tests/test_kernels.c -lm -lpthread; then
    echo "FAIL cross build"
    echo "RESULT 0 1"
    exit 1
fi
out=$(qemu-aarch64 -L /usr/aarch64-linux-gnu build/test_kernels_aarch64 2>&1)
rc=$?
printf '%s\n' "$out"
# the NEON path must have been among those tested
if ! printf '%s\n' "$out" | grep -q 'kernel paths on this machine:.* neon'; then
    echo "FAIL the NEON path was not detected under qemu"
    echo "RESULT 0 1"
    exit 1
fi
exit $rc
