#!/usr/bin/env bash
# The library as other projects consume it: `make install` (PREFIX, DESTDIR) and its file list, the shared
# library's soname and exported symbols (abc_* only), pkg-config, the shipped example built against the
# installed static and shared libraries, CMake's add_subdirectory and find_package routes, and an
# out-of-tree build (BUILD=DIR) that leaves the default build alone. Every program built here must print
# the same vectors as ./abc embed. pkg-config and cmake are optional (Debian: pkg-config, cmake): without
# them their checks are skipped with the reason.
set -u
cd "$(dirname "$0")/.."
source tests/cli_checks.sh
skipped=0
skip() { skipped=$((skipped + 1)); echo "SKIP $1"; }
TMP=$(mktemp -d build/test_install.XXXXXX)
TMP=$(cd "$TMP" && pwd)
trap 'rm -rf "$TMP"' EXIT INT TERM
MODEL=build/tiny-abc.abc
IMAGE=tests/fixtures/images/astronaut.png
make -s all lib build/examples/similarity "$MODEL" >/dev/null 2>&1 || { echo "FAIL build"; echo "RESULT 0 1 0"; exit 1; }

# The reference: the example built in the tree, and ./abc embed on the same two inputs.
build/examples/similarity "$MODEL" "$IMAGE" > "$TMP/ref.txt"
check "example runs" test -s "$TMP/ref.txt"
./abc embed -m "$MODEL" --image "$IMAGE" --text "What is the person holding?" > "$TMP/cli_query.txt"
./abc embed -m "$MODEL" --text "a person in a space suit" > "$TMP/cli_cand.txt"
same_as_cli() { # OUTPUT_FILE: its query/candidate lines equal abc embed's vectors
    diff -q <(sed -n 's/^query //p' "$1") "$TMP/cli_query.txt" >/dev/null &&
        diff -q <(sed -n 's/^candidate //p' "$1") "$TMP/cli_cand.txt" >/dev/null
}
check "example's vectors equal abc embed's" same_as_cli "$TMP/ref.txt"

# ---- make install DESTDIR=... PREFIX=/usr ----
D=$TMP/dest
make -s install DESTDIR="$D" PREFIX=/usr >/dev/null 2>&1
(cd "$D" && find . -type f -o -type l | sort) > "$TMP/files.txt"
sed 's/^/     /' "$TMP/files.txt"
want="./usr/bin/abc ./usr/bin/abc-convert ./usr/include/abc.h ./usr/lib/cmake/abc/abcConfig.cmake
./usr/lib/cmake/abc/abcConfigVersion.cmake ./usr/lib/libabc.a ./usr/lib/libabc.so ./usr/lib/libabc.so.0
./usr/lib/libabc.so.0.2.0 ./usr/lib/pkgconfig/abc.pc"
check "install file list" diff <(echo $want | tr ' ' '\n' | sort) "$TMP/files.txt"
so=$(readlink -f "$D/usr/lib/libabc.so")
soname=$(objdump -p "$so" 2>/dev/null | awk '/SONAME/ {print $2}')
check "soname libabc.so.0 (got '$soname')" test "$soname" = libabc.so.0
nm -D --defined-only "$so" | awk '{print $3}' | sort > "$TMP/exports.txt"
others=$(grep -vc '^abc_' "$TMP/exports.txt")
check "shared library exports only abc_* ($(wc -l < "$TMP/exports.txt") symbols, $others others)" test "$others" -eq 0
check "abc_model_load_from_memory and abc_system_info exported" \
    sh -c "grep -qx abc_system_info '$TMP/exports.txt' && grep -qx abc_model_load_from_memory '$TMP/exports.txt'"
grep -q '^prefix=/usr$' "$D/usr/lib/pkgconfig/abc.pc" && ok "abc.pc written for PREFIX=/usr" || bad "abc.pc prefix"

# ---- pkg-config against the DESTDIR tree: static and shared builds of the example ----
if command -v pkg-config >/dev/null 2>&1; then
    export PKG_CONFIG_PATH="$D/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
    flags=$(echo $(pkg-config --cflags --libs abc))
    echo "     pkg-config --cflags --libs abc: $flags"
    check "pkg-config names the installed header and library" test "$flags" = "-I$D/usr/include -L$D/usr/lib -labc"
    cc -o "$TMP/sim_shared" examples/similarity.c $(pkg-config --cflags --libs abc) &&
        LD_LIBRARY_PATH="$D/usr/lib" "$TMP/sim_shared" "$MODEL" "$IMAGE" > "$TMP/shared.txt"
    check "example against the installed shared library" same_as_cli "$TMP/shared.txt"
    check "it really loads libabc.so.0" sh -c "LD_LIBRARY_PATH='$D/usr/lib' ldd '$TMP/sim_shared' | grep -q '$D/usr/lib/libabc.so.0'"
    cc -o "$TMP/sim_static" examples/similarity.c $(pkg-config --cflags abc) "$D/usr/lib/libabc.a" \
        $(pkg-config --libs-only-other --static abc) -lm -lpthread &&
        "$TMP/sim_static" "$MODEL" "$IMAGE" > "$TMP/static.txt"
    check "example against the installed static library" same_as_cli "$TMP/static.txt"
    unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
else
    skip "pkg-config checks: pkg-config not installed (Debian: pkg-config)"
fi

# ---- CMake: add_subdirectory and find_package ----
if command -v cmake >/dev/null 2>&1; then
    mkdir -p "$TMP/sub"
    cat > "$TMP/sub/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.13)
project(uses_abc C)
add_subdirectory("$PWD" abc)
add_executable(similarity "$PWD/examples/similarity.c")
target_link_libraries(similarity PRIVATE abc::abc)
CMAKE
    if cmake -S "$TMP/sub" -B "$TMP/sub/b" >/dev/null && cmake --build "$TMP/sub/b" >/dev/null 2>"$TMP/sub/err"; then
        "$TMP/sub/b/similarity" "$MODEL" "$IMAGE" > "$TMP/cmake_sub.txt"
        check "CMake add_subdirectory route" same_as_cli "$TMP/cmake_sub.txt"
        check "add_subdirectory builds no tools of abc" test ! -e "$TMP/sub/b/abc/abc-convert"
    else
        bad "CMake add_subdirectory build"; head -20 "$TMP/sub/err"
    fi
    make -s install PREFIX="$TMP/prefix" >/dev/null 2>&1
    mkdir -p "$TMP/pkg"
    cat > "$TMP/pkg/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.13)
project(uses_installed_abc C)
find_package(abc 0.2 REQUIRED)
add_executable(similarity "$PWD/examples/similarity.c")
target_link_libraries(similarity PRIVATE abc::abc_static)
CMAKE
    if cmake -S "$TMP/pkg" -B "$TMP/pkg/b" -DCMAKE_PREFIX_PATH="$TMP/prefix" >/dev/null &&
        cmake --build "$TMP/pkg/b" >/dev/null 2>"$TMP/pkg/err"; then
        "$TMP/pkg/b/similarity" "$MODEL" "$IMAGE" > "$TMP/cmake_pkg.txt"
        check "CMake find_package route (installed)" same_as_cli "$TMP/cmake_pkg.txt"
    else
        bad "CMake find_package build"; head -20 "$TMP/pkg/err"
    fi
    if sed -i 's/find_package(abc 0.2 REQUIRED)/find_package(abc 9.0 REQUIRED)/' "$TMP/pkg/CMakeLists.txt" &&
        ! cmake -S "$TMP/pkg" -B "$TMP/pkg/b3" -DCMAKE_PREFIX_PATH="$TMP/prefix" >/dev/null 2>&1; then
        ok "find_package(abc 9.0) refused by the version file"
    else
        bad "find_package version check"
    fi
else
    skip "CMake checks: cmake not installed (Debian: cmake)"
fi

# ---- out-of-tree build: outputs only under BUILD, the default build untouched ----
before=$(stat -c %Y abc build/abc.o)
make -s BUILD="$TMP/oot" all lib >/dev/null 2>&1
check "out-of-tree build writes its programs and libraries under BUILD" \
    test -x "$TMP/oot/abc" -a -x "$TMP/oot/abc-convert" -a -f "$TMP/oot/libabc.a" -a -f "$TMP/oot/libabc.so"
check "out-of-tree build leaves ./abc and build/ alone" test "$before" = "$(stat -c %Y abc build/abc.o)"
if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
    make -s BUILD="$TMP/arm64" CC=aarch64-linux-gnu-gcc all >/dev/null 2>&1
    check "cross build (aarch64) under its own BUILD" sh -c "file '$TMP/arm64/abc' | grep -q aarch64"
    check "the host's ./abc is still a host program afterwards" sh -c "./abc --version >/dev/null"
else
    skip "cross out-of-tree build: aarch64-linux-gnu-gcc not installed (Debian: gcc-aarch64-linux-gnu)"
fi
echo "RESULT $passed $failed $skipped"
[ "$failed" -eq 0 ]
