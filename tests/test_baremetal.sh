#!/usr/bin/env bash
# Bare metal (make test-baremetal): the library built -DABC_BARE_METAL with arm-none-eabi-gcc (Cortex-A15,
# NEON/VFPv4 hard float, newlib), linked with the tiny model, a PNG and the fixture's reference embedding into
# platforms/baremetal/firmware.c, run under qemu-system-arm with no OS (semihosting for output). Checks the
# embedding against the reference, that abc_embed never called the allocator (static arena), and that the
# bare library object needs nothing but the C library's memory, string, formatting, sorting and math
# functions (plus the compiler's runtime and the firmware's allocator). Without the tools it counts a skip.
set -u
cd "$(dirname "$0")/.."
missing=
for tool in arm-none-eabi-gcc qemu-system-arm; do command -v $tool >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -z "$missing" ] && ! echo 'int main(void){return 0;}' | arm-none-eabi-gcc -x c - --specs=rdimon.specs -o /dev/null 2>/dev/null; then
    missing=" newlib"
fi
if [ -n "$missing" ]; then
    # CI installs them and sets ABC_REQUIRE_ALL=1, which turns this skip into a failure (tests/run_tests.sh).
    echo "SKIP bare metal:$missing not installed (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
    echo "RESULT 0 0 1"
    exit 0
fi
passed=0; failed=0
check() { if [ "$1" = 0 ]; then echo "ok   $2"; passed=$((passed + 1)); else echo "FAIL $2"; failed=$((failed + 1)); fi; }

if ! make -s build/baremetal/firmware.elf; then
    echo "FAIL bare-metal build"; echo "RESULT 0 1 0"; exit 1
fi
echo "== the firmware ELF (text holds the 64-byte aligned model, bss the arena)"
arm-none-eabi-size build/baremetal/firmware.elf
echo "arena asked of abc_embed_arena_size on this host: $(cat build/baremetal/arena_bytes) bytes"

# Undefined symbols of the bare library object: anything outside this list is an OS call that crept in.
allowed='^(mem(cpy|move|set|cmp|chr)|str(len|cmp|ncmp|chr|rchr|str|tol|toul|tod)|v?snprintf|qsort|abc_fw_(malloc|free)|__aeabi_[a-z0-9]+|(sqrt|exp|log|pow|sin|cos|tan|tanh|erf|floor|ceil|round|lrint|nearbyint|fmod|fabs|expm1|log1p|atan2?)f?)$'
undefined=$(arm-none-eabi-nm -u build/baremetal/abc.o | awk '{print $2}')
echo "== undefined symbols of build/baremetal/abc.o:" $undefined
extra=$(printf '%s\n' $undefined | grep -Ev "$allowed" || true)
[ -z "$extra" ]; check $? "the bare library object calls only the C library's memory/string/math functions${extra:+ (not: $extra)}"

echo "== qemu-system-arm -M virt -cpu cortex-a15 (no OS)"
out=$(timeout 600 qemu-system-arm -M virt -cpu cortex-a15 -m 1024 -nographic -nic none \
      -semihosting-config enable=on,target=native -kernel build/baremetal/firmware.elf </dev/null 2>&1)
rc=$?
printf '%s\n' "$out" | grep -v '^RESULT '
line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
if [ -z "$line" ]; then
    echo "FAIL the firmware printed no RESULT line (qemu exit $rc)"; failed=$((failed + 1))
else
    passed=$((passed + $(echo "$line" | awk '{print $2}'))); failed=$((failed + $(echo "$line" | awk '{print $3}')))
    [ "$rc" = 0 ]; check $? "the firmware exited 0 through semihosting"
fi
echo "RESULT $passed $failed 0"
[ "$failed" = 0 ]
