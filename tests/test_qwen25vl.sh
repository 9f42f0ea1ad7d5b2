#!/usr/bin/env bash
# End-to-end tests of the Qwen2.5-VL family (qwen2_5_vl) with preset nomic (nomic-embed-multimodal;
# docs/presets-and-prompts.md#nomic) on the tiny random Qwen2.5-VL of tests/fixtures/qwen25vl-tiny
# with its LoRA adapter merged (tests/gen_qwen25vl_fixtures.py: transformers + peft in float32 following
# colpali-engine's BiQwen2_5).
#
# Run from the repository root by `make test`, after build/abc-san, build/tool_npycmp,
# build/tiny-nomic.abc (f32) and build/tiny-nomic-q8.abc exist. For each case (two image documents
# whose grids give 9 and 12 attention windows, some cut by the grid's edge; an image with a text; a
# text query) it compares, with the tolerances of docs/testing.md#tolerances: input_ids and the M-RoPE
# position_ids identical, the processor's pixel_values identical (SHA-256 from the manifest),
# vision_embeds within 1e-4·max|ref|, last_hidden within 5e-4·max|ref|, the embedding cos ≥ 0.99999 and
# max|Δ| ≤ 1e-4; the q8 file's embedding cos ≥ 0.999. Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
FIX=tests/fixtures/qwen25vl-tiny
IMG=tests/fixtures/images
MODEL=build/tiny-nomic.abc
MODEL_Q8=build/tiny-nomic-q8.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_qwen25vl.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$MODEL" "$MODEL_Q8" "$FIX/manifest.json"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

echo "-- abc info"
if run_cli 0 "info" info -m "$MODEL"; then
    check "info: qwen2_5_vl, preset nomic" grep -q "architecture: qwen2_5_vl (preset nomic)" "$TMP/out"
fi

# manifest_field CASE KEY: a string field of the case's entry in manifest.json (indent-1 JSON).
manifest_field() {
    awk -v name="\"$1\"," -v key="\"$2\":" '$1 == "\"name\":" { cur = ($2 == name) }
        cur && $1 == key { sub(/^[^:]*: "/, ""); sub(/",?$/, ""); print; exit }' "$FIX/manifest.json"
}

# embed_case NAME ARGS...: abc embed --dump with the f32 file, every stage against the reference,
# then the q8 file's embedding.
embed_case() {
    local name=$1; shift
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    run_cli 0 "$name: embed" embed -m "$MODEL" "$@" --dump "$dump" -o "$TMP/$name.npy" || return
    compare "$name/input_ids" --exact "$dump/input_ids.npy" "$ref/input_ids.npy"
    compare "$name/position_ids" --exact "$dump/position_ids.npy" "$ref/position_ids.npy"
    if [ -e "$ref/vision_embeds.npy" ]; then
        local want got
        want=$(manifest_field "$name" pixel_values_sha256)
        got=$("$CMP" --sha256 "$dump/pixel_values.npy" 2>&1)
        check "$name/pixel_values: sha256 ${want:0:16}… identical" test -n "$want" -a "$got" = "$want"
        compare "$name/vision_embeds" --rel 1e-4 "$dump/vision_embeds.npy" "$ref/vision_embeds.npy"
    else
        check "$name: no image stages for a text-only input" test ! -e "$dump/pixel_values.npy"
    fi
    compare "$name/last_hidden" --rel 5e-4 "$dump/last_hidden.npy" "$ref/last_hidden.npy"
    compare "$name/embedding" --cos 0.99999 --abs 1e-4 "$dump/embedding.npy" "$ref/embedding.npy"
    compare "$name/-o = dumped embedding" --exact "$TMP/$name.npy" "$dump/embedding.npy"
    run_cli 0 "$name: embed (q8)" embed -m "$MODEL_Q8" "$@" -o "$TMP/$name.q8.npy" &&
        compare "$name/embedding q8 vs f32 reference" --cos 0.999 "$TMP/$name.q8.npy" "$ref/embedding.npy"
}

echo "-- the fixture's cases"
embed_case nomic_doc_astronaut --image "$IMG/astronaut.png"
embed_case nomic_doc_coffee --image "$IMG/coffee.png"
embed_case nomic_doc_camera_text --image "$IMG/camera.png" --text "A photographer with a camera."
embed_case nomic_query_text --text "What is the person holding?"

echo "-- prompts"
# the manifest's prompt given raw is the same input
PROMPT=$(manifest_field nomic_query_text prompt)
check "manifest prompt of nomic_query_text is the preset's" test "$PROMPT" = "Query: What is the person holding?<|endoftext|>"
if run_cli 0 "--prompt (raw)" embed -m "$MODEL" --prompt "$PROMPT" -o "$TMP/raw.npy"; then
    compare "--prompt = --text" --exact "$TMP/raw.npy" "$TMP/nomic_query_text.npy"
fi
expect_error 1 "--instruction on nomic" "no instruction" embed -m "$MODEL" --text hi --instruction "Find it."

echo "-- converter: presets belong to their family"
CONVERT=${ABC_CONVERT:-./abc-convert}
if [ -x "$CONVERT" ] && [ -e build/qwen25vl-tiny/config.json ]; then
    "$CONVERT" build/qwen25vl-tiny -o "$TMP/x.abc" --preset gme --quiet >"$TMP/out" 2>"$TMP/err"
    check "qwen2_5_vl checkpoint with --preset gme is refused" grep -q "qwen2_5_vl) checkpoint: use --preset nomic, jina-v4 or colqwen2.5" "$TMP/err"
    "$CONVERT" tests/fixtures/qwen2vl-tiny/base -o "$TMP/x.abc" --preset nomic --quiet >"$TMP/out" 2>"$TMP/err"
    check "qwen2_vl checkpoint with --preset nomic is refused" grep -q "Qwen2-VL checkpoint: use --preset abc, vlm2vec, gme or colqwen2" "$TMP/err"
    "$CONVERT" tests/fixtures/qwen2vl-tiny/base -o "$TMP/x.abc" --preset jina-v4 --quiet >"$TMP/out" 2>"$TMP/err"
    check "qwen2_vl checkpoint with --preset jina-v4 is refused (jina-v4 is Qwen2.5-VL)" grep -q "Qwen2-VL checkpoint: use --preset" "$TMP/err"
    check "no output left behind" test ! -e "$TMP/x.abc"
else
    bad "prerequisite $CONVERT or build/qwen25vl-tiny is missing (run 'make test')"
fi

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
