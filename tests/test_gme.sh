#!/usr/bin/env bash
# End-to-end tests of preset gme (GME-Qwen2-VL; docs/presets-and-prompts.md#gme) on the tiny random
# Qwen2-VL of tests/fixtures/qwen2vl-tiny/base against tests/fixtures/gme-tiny (tests/gen_gme_fixtures.py:
# transformers in float32 following GME's own inference script).
#
# Run from the repository root by `make test`, after build/abc-san, build/tool_npycmp, build/tiny-gme.abc
# (f32), build/tiny-gme-q8.abc and build/tiny-vlm2vec.abc exist. For each of the five cases (image +
# text queries with the default and their own instruction, a text query with its own instruction, an
# image candidate, a text candidate) it compares, with the
# tolerances of docs/testing.md#tolerances: input_ids and position_ids (1-D, GME's decoder call)
# identical, the processor's pixel_values identical (SHA-256 from the manifest), vision_embeds within
# 1e-4·max|ref|, last_hidden within 5e-4·max|ref|, the embedding cos ≥ 0.99999 and max|Δ| ≤ 1e-4; the q8
# file's embedding cos ≥ 0.999 (one fragile case excepted, below). Then the instruction rules (candidates keep the default, --prompt gives
# the same result, other presets refuse --instruction). Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
FIX=tests/fixtures/gme-tiny
IMG=tests/fixtures/images
MODEL=build/tiny-gme.abc
MODEL_Q8=build/tiny-gme-q8.abc
MODEL_VLM=build/tiny-vlm2vec.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_gme.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$MODEL" "$MODEL_Q8" "$MODEL_VLM" "$FIX/manifest.json"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

echo "-- abc info"
if run_cli 0 "info" info -m "$MODEL"; then
    check "info: qwen2_vl, preset gme" grep -q "preset gme" "$TMP/out"
fi

# embed_case NAME Q8_MIN_COS ARGS...: abc embed --dump with the f32 file, every stage against the
# reference, then the q8 file's embedding (cosine with the f32 reference at least Q8_MIN_COS).
embed_case() {
    local name=$1 q8_cos=$2; shift 2
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    run_cli 0 "$name: embed" embed -m "$MODEL" "$@" --dump "$dump" -o "$TMP/$name.npy" || return
    compare_qwen2vl_stages "$name" "$dump" "$ref"
    compare "$name/embedding" --cos 0.99999 --abs 1e-4 "$dump/embedding.npy" "$ref/embedding.npy"
    compare "$name/-o = dumped embedding" --exact "$TMP/$name.npy" "$dump/embedding.npy"
    run_cli 0 "$name: embed (q8)" embed -m "$MODEL_Q8" "$@" -o "$TMP/$name.q8.npy" &&
        compare "$name/embedding q8 vs f32 reference" --cos "$q8_cos" "$TMP/$name.q8.npy" "$ref/embedding.npy"
}

echo "-- the fixture's cases"
# The astronaut query's last position is fragile under int8 rounding in this random model: with GME's
# 1-D positions several of its image positions are too (per-position cosines of 0.65..0.9 in the
# runtime's q8, and down to -0.18 in a plain PyTorch simulation of int8 weights and activations), and
# its q8 cosine is 0.950; the bar for it only catches a broken q8 path. The other cases hold 0.999.
embed_case gme_query_astronaut 0.94 --image "$IMG/astronaut.png" --text "What is the person holding?"
embed_case gme_query_camera 0.999 --image "$IMG/camera.png" --text "What is the man holding?" \
    --instruction "Represent the image and the question for retrieval."
embed_case gme_query_text 0.999 --text "A red rocket on a launch pad" \
    --instruction "Find an image that matches the given text."
embed_case gme_cand_image_coffee 0.999 --image "$IMG/coffee.png"
embed_case gme_cand_text 0.999 --text "The Tesla Cybertruck is a battery electric pickup truck."

echo "-- instructions"
# GME's script gives candidates the default instruction whatever the caller passes
if run_cli 0 "candidate with --instruction" embed -m "$MODEL" --role candidate \
    --text "The Tesla Cybertruck is a battery electric pickup truck." --instruction "Ignored for candidates." \
    -o "$TMP/cand_instr.npy"; then
    compare "candidate keeps the default instruction" --exact "$TMP/cand_instr.npy" "$TMP/gme_cand_text.npy"
fi
# the manifest's prompt given raw is the same input
PROMPT=$(printf '<|im_start|>system\nFind an image that matches the given text.<|im_end|>\n<|im_start|>user\nA red rocket on a launch pad<|im_end|>\n<|im_start|>assistant\n<|endoftext|>')
check "manifest prompt of gme_query_text is the one used here" \
    test "$(manifest_field gme_query_text prompt)" = "$(printf '%s' "$PROMPT" | awk 'BEGIN { ORS = "\\n" } { print }' | sed 's/\\n$//')"
if run_cli 0 "--prompt (raw)" embed -m "$MODEL" --prompt "$PROMPT" -o "$TMP/raw.npy"; then
    compare "--prompt = --text + --instruction" --exact "$TMP/raw.npy" "$TMP/gme_query_text.npy"
fi
# --batch: "instruction" per line, the same vector as abc embed
printf '{"id": "q", "text": "A red rocket on a launch pad", "instruction": "Find an image that matches the given text."}\n' \
    > "$TMP/in.jsonl"
if run_cli 0 "embed --batch with instruction" embed -m "$MODEL" --batch "$TMP/in.jsonl" -o "$TMP/batch.npy"; then
    compare "--batch instruction = --instruction" --exact --squeeze "$TMP/batch.npy" "$TMP/gme_query_text.npy"
fi
expect_error 1 "--instruction on a preset without one" "no instruction" embed -m "$MODEL_VLM" --text hi \
    --instruction "Find it."
expect_error 2 "--instruction with --input-ids" "cannot be combined" embed -m "$MODEL" \
    --input-ids "$FIX/cases/gme_cand_text/input_ids.npy" --instruction "x"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
