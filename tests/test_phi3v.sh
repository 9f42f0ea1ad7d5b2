#!/usr/bin/env bash
# End-to-end tests of `abc` on the tiny Phi-3.5-V model (architecture phi3_v, preset vlm2vec-phi3v;
# docs/testing.md and docs/model.md#phi-35-v) against the reference arrays of fixtures/phi35v-tiny.
#
# Run from the repository root by `make test`, after build/abc-san (./abc with ASan/UBSan),
# build/tool_npycmp and build/tiny-phi3v.abc exist (ABC_PHI3V_MODEL overrides the model). For the cases
# of the fixture's manifest it runs `abc embed --dump` with the manifest's prompts and compares each
# dumped array with the reference (copies in tests/fixtures/phi35v-tiny/runtime/): input_ids identical
# (int32 dump vs the processor's int64 [1,S], -1 at image tokens, <s> before every text chunk),
# image_sizes identical, clip_patch_features and image_features within 1e-4·max|ref| (the reference
# holds num_crops+1 slots, zero padding included: the used prefix is compared), inputs_embeds within
# 1e-4, last_hidden (the fixture's last_hidden_state) within 5e-4·max|ref|, the embedding cos ≥ 0.99999 and max|Δ| ≤ 1e-4.
# The page case's source image is not in the reference set; tests/fixtures/phi35v-tiny/page_hd.png is
# its padded 336x672 HD image recovered from the reference crops (tests/gen_phi35v_hd_fixtures.py). At that
# size the HD resize is the identity (scale 2, 672 wide) and no padding is added, so running it end to end
# reproduces the reference pixel values and every later stage (tests/test_phi3v.c also covers it from the
# reference CLIP features).
# Then the debugging path (--input-ids/--pixel-values/--grid), --num-crops, --stop-after and errors.
# Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
REF=tests/fixtures/phi35v-tiny/runtime
MODEL=${ABC_PHI3V_MODEL:-build/tiny-phi3v.abc}
IMAGE=$REF/rocket_portrait.png
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_phi3v.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$MODEL" "$IMAGE" "$REF/txt_cat_dog__embedding.npy"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

echo "-- abc info"
if run_cli 0 "info" info -m "$MODEL"; then
    check "info: architecture phi3_v, su rope, 4 crops" \
        grep -q "architecture: phi3_v (preset vlm2vec-phi3v)" "$TMP/out"
    check "info: su rope and HD crops described" grep -Eq "rope su .*4096.*131072" "$TMP/out"
fi

# compare_case NAME DUMP: every array the reference has for case NAME.
compare_case() {
    local name=$1 dump=$2
    compare "$name/input_ids" --exact --squeeze --any-int "$dump/input_ids.npy" "$REF/${name}__input_ids.npy"
    if [ -e "$REF/${name}__image_features.npy" ]; then
        compare "$name/image_sizes" --exact --squeeze --any-int "$dump/image_sizes.npy" "$REF/${name}__image_sizes.npy"
        compare "$name/clip_patch_features" --rel 1e-4 --prefix "$dump/clip_patch_features.npy" \
            "$REF/${name}__clip_patch_features.npy"
        compare "$name/image_features" --rel 1e-4 "$dump/image_features.npy" "$REF/${name}__image_features.npy"
    fi
    compare "$name/inputs_embeds" --rel 1e-4 "$dump/inputs_embeds.npy" "$REF/${name}__inputs_embeds.npy"
    compare "$name/last_hidden" --rel 5e-4 "$dump/last_hidden.npy" "$REF/${name}__last_hidden_state.npy"
    compare "$name/embedding" --cos 0.99999 --abs 1e-4 "$dump/embedding.npy" "$REF/${name}__embedding.npy"
}

echo "-- the fixture's cases through abc embed --dump"
# text cases: the preset's text template is "{text}"
run_cli 0 "embed txt_cat_dog" embed -m "$MODEL" --text "A cat and a dog" --dump "$TMP/txt_cat_dog" \
    -o "$TMP/txt_cat_dog.npy" && compare_case txt_cat_dog "$TMP/txt_cat_dog"
run_cli 0 "embed txt_find_caption" embed -m "$MODEL" \
    --text "Find me an everyday image that matches the given caption: A cat and a tiger." \
    --dump "$TMP/txt_find_caption" && compare_case txt_find_caption "$TMP/txt_find_caption"
# image + text: the preset's template "<|image_1|> {text}" gives the manifest's prompt
ROCKET_TEXT="Represent the given image with the following question: What is in the image"
if run_cli 0 "embed img_rocket_qry" embed -m "$MODEL" --image "$IMAGE" --text "$ROCKET_TEXT" \
    --dump "$TMP/img_rocket_qry" -o "$TMP/img_rocket_qry.npy"; then
    compare_case img_rocket_qry "$TMP/img_rocket_qry"
    check "img_rocket_qry: pixel_values float32 [5,3,336,336] (2x2 crops + global view)" \
        test "$("$CMP" --shape "$TMP/img_rocket_qry/pixel_values.npy" 2>&1)" = "float32 5,3,336,336"
    check "img_rocket_qry: hd_image uint8 [672,672,3]" \
        test "$("$CMP" --shape "$TMP/img_rocket_qry/hd_image.npy" 2>&1)" = "uint8 672,672,3"
    check "img_rocket_qry: decoded uint8 [640,427,3]" \
        test "$("$CMP" --shape "$TMP/img_rocket_qry/decoded.npy" 2>&1)" = "uint8 640,427,3"
fi
PAGE_IMAGE=tests/fixtures/phi35v-tiny/page_hd.png
if run_cli 0 "embed img_page_tgt" embed -m "$MODEL" --image "$PAGE_IMAGE" --text "Represent the given image." \
    --dump "$TMP/img_page_tgt"; then
    compare_case img_page_tgt "$TMP/img_page_tgt"
    check "img_page_tgt: pixel_values float32 [3,3,336,336] (1x2 crops + global view)" \
        test "$("$CMP" --shape "$TMP/img_page_tgt/pixel_values.npy" 2>&1)" = "float32 3,3,336,336"
fi
# the same prompt given raw
if run_cli 0 "embed --prompt (rocket)" embed -m "$MODEL" --image "$IMAGE" --prompt "<|image_1|> $ROCKET_TEXT" \
    -o "$TMP/rocket_prompt.npy"; then
    compare "--prompt = --image + --text" --exact "$TMP/rocket_prompt.npy" "$TMP/img_rocket_qry.npy"
fi

echo "-- debugging path: --input-ids / --pixel-values / --grid (abc_embed_tokens)"
if run_cli 0 "embed --input-ids (text)" embed -m "$MODEL" --input-ids "$REF/txt_find_caption__input_ids.npy" \
    -o "$TMP/raw_text.npy"; then
    compare "--input-ids: txt_find_caption embedding" --cos 0.99999 --abs 1e-4 "$TMP/raw_text.npy" \
        "$REF/txt_find_caption__embedding.npy"
fi
if [ -e "$TMP/img_rocket_qry/pixel_values.npy" ] && run_cli 0 "embed --input-ids --pixel-values (rocket)" embed \
    -m "$MODEL" --input-ids "$REF/img_rocket_qry__input_ids.npy" --pixel-values "$TMP/img_rocket_qry/pixel_values.npy" \
    --grid 1,2,2 --dump "$TMP/raw_rocket" -o "$TMP/raw_rocket.npy"; then
    compare "--pixel-values: img_rocket_qry embedding" --cos 0.99999 --abs 1e-4 "$TMP/raw_rocket.npy" \
        "$REF/img_rocket_qry__embedding.npy"
    compare "--pixel-values: img_rocket_qry image_features" --rel 1e-4 "$TMP/raw_rocket/image_features.npy" \
        "$REF/img_rocket_qry__image_features.npy"
    # a 1x1 grid takes the first 2 slots of the same array (the rest is ignored, like zero padding)
    expect_error 1 "--grid 1,1,1 with the 2x2 case's ids" "image tokens" embed -m "$MODEL" \
        --input-ids "$REF/img_rocket_qry__input_ids.npy" --pixel-values "$TMP/img_rocket_qry/pixel_values.npy" \
        --grid 1,1,1
fi
expect_error 1 "image tokens (-1) without pixel values" "no image" embed -m "$MODEL" \
    --input-ids "$REF/img_rocket_qry__input_ids.npy"

echo "-- --num-crops, --stop-after"
if run_cli 0 "--num-crops 1" embed -m "$MODEL" --num-crops 1 --image "$IMAGE" --text "$ROCKET_TEXT" \
    --dump "$TMP/crops1" --stop-after input_ids; then
    # one 336x336 crop: (1+1)·144 + 1 + 2·12 = 313 image tokens + 17 others
    check "--num-crops 1: 330 ids" test "$("$CMP" --shape "$TMP/crops1/input_ids.npy" 2>&1)" = "int32 330"
    check "--num-crops 1: 2 slots" test "$("$CMP" --shape "$TMP/crops1/pixel_values.npy" 2>&1)" = "float32 2,3,336,336"
    check "--stop-after input_ids: no clip features" test ! -e "$TMP/crops1/clip_patch_features.npy"
fi
if run_cli 0 "--stop-after preprocess" embed -m "$MODEL" --image "$IMAGE" --text "x" --dump "$TMP/stop" \
    --stop-after preprocess; then
    check "stop-after preprocess: pixel_values written, nothing later" \
        test -e "$TMP/stop/pixel_values.npy" -a ! -e "$TMP/stop/input_ids.npy" -a ! -e "$TMP/stop/embedding.npy"
fi

echo "-- q8 weights: every case's embedding against the float32 reference (cosine >= 0.999)"
CONVERT=${ABC_CONVERT:-./abc-convert}
Q8_MODEL=$TMP/tiny-phi3v-q8.abc
if "$CONVERT" tests/fixtures/phi35v-tiny -o "$Q8_MODEL" --preset vlm2vec-phi3v --dtype q8 --quiet 2>"$TMP/err"; then
    ok "convert phi3_v --dtype q8"
    q8_phi3v_case() { # NAME ARGS...
        local name=$1; shift
        if run_cli 0 "q8 embed $name" embed -m "$Q8_MODEL" "$@" -o "$TMP/q8_$name.npy"; then
            compare "$name q8" --cos 0.999 "$TMP/q8_$name.npy" "$REF/${name}__embedding.npy"
        fi
    }
    q8_phi3v_case txt_cat_dog --text "A cat and a dog"
    q8_phi3v_case txt_find_caption --text "Find me an everyday image that matches the given caption: A cat and a tiger."
    q8_phi3v_case img_rocket_qry --image "$IMAGE" --text "$ROCKET_TEXT" --threads 2
    q8_phi3v_case img_page_tgt --image "$PAGE_IMAGE" --text "Represent the given image."
else
    bad "convert phi3_v --dtype q8: $(head -n 3 "$TMP/err")"
fi

echo "-- errors"
expect_error 2 "--num-crops 0" "num-crops" embed -m "$MODEL" --num-crops 0 --text x
expect_error 1 "image without placeholder" "no <\|image_1\|>" embed -m "$MODEL" --image "$IMAGE" --prompt "no placeholder"
expect_error 1 "placeholder without image" "no image" embed -m "$MODEL" --prompt "<|image_1|> text"
expect_error 1 "<|image_2|> with one image" "image_2" embed -m "$MODEL" --image "$IMAGE" --prompt "<|image_2|> text"
expect_error 1 "--grid not (1,h,w)" "grid" embed -m "$MODEL" --input-ids "$REF/img_rocket_qry__input_ids.npy" \
    --pixel-values "$REF/img_rocket_qry__pixel_values_slot0.npy" --grid 2,1,1

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
