#!/usr/bin/env bash
# Tests of the Python module python/abc_embed.py (ctypes over the shared library): tests/test_python.py
# with numpy (Debian python3-numpy) and again with numpy hidden (the list fallback). Builds the shared
# object build/libabc.so (make lib). Skips, with the reason, where python3, numpy or a C
# compiler is missing (.ci/run installs python3 and python3-numpy).
set -u
# PYTHON, else the first of python3 and the system's /usr/bin/python3 that can import numpy (a python3
# from a version manager may come first on PATH without it), else python3.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in python3 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import numpy' 2>/dev/null; then
            PY=$candidate; break
        fi
    done
    PY=${PY:-python3}
fi
ROOT=$(pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_python.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
passed=0; failed=0; skipped=0

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "SKIP python module: $PY is missing (Debian: apt-get install python3 python3-numpy)"
    echo "RESULT 0 0 1"; exit 0
fi
if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
    echo "SKIP python module: no C compiler (${CC:-cc}) to build the shared library"
    echo "RESULT 0 0 1"; exit 0
fi
for f in ./abc build/tiny-abc.abc build/tiny-vlm2vec.abc; do
    if [ ! -e "$f" ]; then echo "FAIL prerequisite $f is missing (run 'make test')"; echo "RESULT 0 1 0"; exit 1; fi
done
if ! make -s lib >"$TMP/make.log" 2>&1; then
    echo "FAIL building build/libabc.so:"; sed 's/^/    /' "$TMP/make.log"; echo "RESULT 0 1 0"; exit 1
fi

# the CLI's vectors for the same inputs (the module must give the same bits)
I=tests/fixtures/images
./abc embed -m build/tiny-abc.abc --image $I/astronaut.png --text "What is the person holding?" --role query -o "$TMP/abc_query_astronaut.npy" &&
./abc embed -m build/tiny-abc.abc --image $I/coffee.png --role candidate -o "$TMP/abc_cand_image_coffee.npy" &&
./abc embed -m build/tiny-abc.abc --text "a cup of coffee on a wooden table" --role candidate -o "$TMP/abc_cand_text.npy" &&
./abc embed -m build/tiny-vlm2vec.abc --text "A person in a space suit" --role candidate -o "$TMP/vlm2vec_text.npy" ||
    { echo "FAIL abc embed for the reference vectors"; echo "RESULT 0 1 0"; exit 1; }

# The module mirrors abc.h's structs with ctypes: the C sizes, for the test to compare with the mirrors.
printf '#include "abc.h"\n#include <stdio.h>\nint main(void) { printf("%%zu %%zu %%zu %%zu", sizeof(abc_model_params), sizeof(abc_context_params), sizeof(abc_input), sizeof(abc_error)); return 0; }\n' > "$TMP/sizes.c"
${CC:-cc} -I"$ROOT" -o "$TMP/sizes" "$TMP/sizes.c" && export ABC_STRUCT_SIZES="$("$TMP/sizes")" ||
    { echo "FAIL cannot build the struct-size probe"; echo "RESULT 0 1 0"; exit 1; }
export ABC_ROOT=$ROOT ABC_TMP=$TMP ABC_LIBRARY=$ROOT/build/libabc.so
export ABC_MODEL_ABC=$ROOT/build/tiny-abc.abc ABC_MODEL_VLM=$ROOT/build/tiny-vlm2vec.abc ABC_MODEL_JINA=$ROOT/build/tiny-jina.abc
add() { # add the RESULT line of a run to the totals
    local line; line=$(grep '^RESULT ' "$1" | tail -n 1)
    if [ -z "$line" ]; then failed=$((failed + 1)); echo "FAIL $2: no RESULT line"; return; fi
    set -- $line
    passed=$((passed + $2)); failed=$((failed + $3)); skipped=$((skipped + ${4:-0}))
}
if "$PY" -c 'import numpy' 2>/dev/null; then
    ABC_TEST_NO_NUMPY=0 "$PY" tests/test_python.py >"$TMP/np.out" 2>&1
    grep -v '^RESULT ' "$TMP/np.out"; add "$TMP/np.out" "with numpy"
else
    echo "SKIP python module with numpy: numpy is not importable by $PY (Debian: apt-get install python3-numpy)"
    skipped=$((skipped + 1))
fi
ABC_TEST_NO_NUMPY=1 "$PY" tests/test_python.py >"$TMP/list.out" 2>&1
grep -v '^RESULT ' "$TMP/list.out"; add "$TMP/list.out" "without numpy"
echo "RESULT $passed $failed $skipped"
[ "$failed" -eq 0 ]
