#!/usr/bin/env bash
# End-to-end tests of video input (a list of frames; VLM2Vec-V2's Qwen2-VL video path,
# docs/presets-and-prompts.md#video) on the tiny vlm2vec model against tests/fixtures/qwen2vl-tiny-video
# (tests/gen_video_fixtures.py: transformers' Qwen2-VL video processor and model in float32).
#
# Run from the repository root by `make test`, after build/abc-san, build/tool_npycmp,
# build/tiny-vlm2vec.abc, build/tiny-vlm2vec-q8.abc and build/tiny-gme.abc exist. Three cases: 4 frames
# with the vlm2vec template (--video DIR), 3 frames given as --image ×3 (the odd count repeats the last
# frame), 4 frames with a raw prompt that announces the video with <|vision_start|> (3-D M-RoPE ids,
# t = the temporal step). Per case: pixel_values within 1e-6 absolute (the video processor normalises
# in a different float order than the image processor the runtime's table follows: 1-ulp
# differences), input_ids and position_ids identical, vision_embeds within 1e-4·max|ref|, last_hidden
# within 5e-4·max|ref|, the embedding cos ≥ 0.99999 and max|Δ| ≤ 1e-4, the q8 file's embedding
# cos ≥ 0.999. Then the error paths. Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
FIX=tests/fixtures/qwen2vl-tiny-video
MODEL=build/tiny-vlm2vec.abc
MODEL_Q8=build/tiny-vlm2vec-q8.abc
MODEL_GME=build/tiny-gme.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_video.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$MODEL" "$MODEL_Q8" "$MODEL_GME" "$FIX/manifest.json" "$FIX/frames/03.png"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

# video_case NAME ARGS...: every stage against the reference, then the q8 embedding.
video_case() {
    local name=$1; shift
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    run_cli 0 "$name: embed" embed -m "$MODEL" "$@" --dump "$dump" -o "$TMP/$name.npy" || return
    compare "$name/pixel_values" --abs 1e-6 "$dump/pixel_values.npy" "$ref/pixel_values.npy"
    compare "$name/input_ids" --exact "$dump/input_ids.npy" "$ref/input_ids.npy"
    compare "$name/position_ids" --exact "$dump/position_ids.npy" "$ref/position_ids.npy"
    compare "$name/vision_embeds" --rel 1e-4 "$dump/vision_embeds.npy" "$ref/vision_embeds.npy"
    compare "$name/last_hidden" --rel 5e-4 "$dump/last_hidden.npy" "$ref/last_hidden.npy"
    compare "$name/embedding" --cos 0.99999 --abs 1e-4 "$dump/embedding.npy" "$ref/embedding.npy"
    run_cli 0 "$name: embed (q8)" embed -m "$MODEL_Q8" "$@" -o "$TMP/$name.q8.npy" &&
        compare "$name/embedding q8 vs f32 reference" --cos 0.999 "$TMP/$name.q8.npy" "$ref/embedding.npy"
}

F=$FIX/frames
echo "-- the fixture's cases"
video_case video4_text --video "$F" --text "Represent the given video."
video_case video3_odd --image "$F/00.png" --image "$F/01.png" --image "$F/02.png" --text "Represent the given video."
video_case video4_vision_start --video "$F" --prompt "<|vision_start|><|video_pad|><|vision_end|>Describe this video."
check "video4: resized is the first frame, uint8 [56,56,3]" \
    test "$("$CMP" --shape "$TMP/video4_text/resized.npy" 2>&1)" = "uint8 56,56,3"
if run_cli 0 "--image x4 = --video" embed -m "$MODEL" --image "$F/00.png" --image "$F/01.png" --image "$F/02.png" \
    --image "$F/03.png" --text "Represent the given video." -o "$TMP/images4.npy"; then
    compare "--image x4 = --video DIR" --exact "$TMP/images4.npy" "$TMP/video4_text.npy"
fi
if run_cli 0 "frames 1 thread" embed -m "$MODEL" --video "$F" --text "Represent the given video." --threads 1 \
    -o "$TMP/t1.npy" && run_cli 0 "frames 3 threads" embed -m "$MODEL" --video "$F" \
    --text "Represent the given video." --threads 3 -o "$TMP/t3.npy"; then
    compare "video: 1 thread = 3 threads" --exact "$TMP/t1.npy" "$TMP/t3.npy"
fi

echo "-- errors"
expect_error 1 "video on a model without video input" "no video input" embed -m "$MODEL_GME" --video "$F"
expect_error 1 "frames of different sizes" "share one size" embed -m "$MODEL" --image "$F/00.png" \
    --image tests/fixtures/images/camera.png
expect_error 1 "video with an image placeholder" "no <\|video_pad\|>" embed -m "$MODEL" --video "$F" \
    --prompt "<|image_pad|> x"
expect_error 1 "image with a video placeholder" "no video was given" embed -m "$MODEL" \
    --image "$F/00.png" --prompt "<|image_pad|><|video_pad|> x"
expect_error 1 "missing video directory" "cannot open the video directory" embed -m "$MODEL" --video "$TMP/none"
mkdir -p "$TMP/empty"
expect_error 1 "empty video directory" "holds no files" embed -m "$MODEL" --video "$TMP/empty"
expect_error 2 "--video with --image" "cannot be combined" embed -m "$MODEL" --video "$F" --image "$F/00.png"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
