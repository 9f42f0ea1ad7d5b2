#!/usr/bin/env bash
# End-to-end tests of preset colqwen2.5 (ColQwen2.5: multi-vector output on the qwen2_5_vl family;
# docs/presets-and-prompts.md#colqwen25) on the tiny random Qwen2.5-VL + LoRA + 128-d projection of
# tests/fixtures/colqwen25-tiny (tests/gen_colqwen25_fixtures.py: transformers' ColQwen2ForRetrieval on the
# Qwen2.5-VL config, float32, fed as colpali-engine's ColQwen2_5_Processor feeds it).
#
# Run from the repository root by `make test`, after build/abc-san, build/tool_npycmp,
# build/tiny-colqwen25.abc and build/tiny-colqwen25-q8.abc exist. Per case (2 image documents, 1 text query)
# `abc embed --dump` against every stage of the reference (docs/testing.md#tolerances: input_ids and
# position_ids identical, pixel_values identical (SHA-256), vision_embeds within 1e-4·max|ref|, last_hidden
# within 5e-4·max|ref|), the [T,128] token vectors within 1e-4 (cos >= 0.99999); the q8 file's vectors
# (all tokens as one array) cos >= 0.99. The query prompt has no "\n" after the augmentation tokens
# (ColQwen2's has one). Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
FIX=tests/fixtures/colqwen25-tiny
IMG=tests/fixtures/images
MODEL=build/tiny-colqwen25.abc
MODEL_Q8=build/tiny-colqwen25-q8.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_colqwen25.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$MODEL" "$MODEL_Q8" "$FIX/manifest.json"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

echo "-- abc info"
if run_cli 0 "info" info -m "$MODEL"; then
    check "info: preset colqwen2.5" grep -q "^preset: colqwen2.5" "$TMP/out"
    check "info: qwen2_5_vl" grep -q "qwen2_5_vl" "$TMP/out"
    check "info: the multi-vector output" grep -q "one 128-float vector per token" "$TMP/out"
fi

embed_case() {
    local name=$1; shift
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    run_cli 0 "$name: embed" embed -m "$MODEL" "$@" --dump "$dump" -o "$TMP/$name.npy" || return
    compare_qwen2vl_stages "$name" "$dump" "$ref"
    compare "$name/multi_vector" --abs 1e-4 --cos 0.99999 "$dump/multi_vector.npy" "$ref/multi_vector.npy"
    compare "$name/-o = dumped multi_vector" --exact "$TMP/$name.npy" "$dump/multi_vector.npy"
    run_cli 0 "$name: embed (q8)" embed -m "$MODEL_Q8" "$@" -o "$TMP/$name.q8.npy" &&
        compare "$name/multi_vector q8 vs f32 reference" --cos 0.99 "$TMP/$name.q8.npy" "$ref/multi_vector.npy"
}

echo "-- the fixture's cases"
embed_case doc_coffee --image "$IMG/coffee.png"
embed_case doc_astronaut --image "$IMG/astronaut.png"
embed_case query_coffee --text "A cup of coffee on a saucer"
# the manifest's query prompt given raw is the same input; with ColQwen2's trailing "\n" it is not
AUG=$(printf '<|endoftext|>%.0s' 1 2 3 4 5 6 7 8 9 10)
if run_cli 0 "--prompt (raw query)" embed -m "$MODEL" --prompt "Query: A cup of coffee on a saucer$AUG" -o "$TMP/raw.npy"; then
    compare "--prompt = --text" --exact "$TMP/raw.npy" "$TMP/query_coffee.npy"
fi
if run_cli 0 "--prompt (ColQwen2's query)" embed -m "$MODEL" --prompt "Query: A cup of coffee on a saucer$AUG
" --json; then
    check "ColQwen2's prompt is one token longer (21 vectors)" grep -q '^{"n_vectors":21,"dim":128' "$TMP/out"
fi

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
