#!/usr/bin/env bash
# End-to-end q8 (int8 weights, model_convert/FORMAT.md): converts the tiny fixture with --dtype q8 for
# both presets and checks every case of tests/fixtures/qwen2vl-tiny/manifest.json against the float32
# reference embedding (cosine >= 0.999), printing each cosine; also that the q8 files are smaller, say
# q8, keep the patch embedding (1176 columns, not whole blocks) in f32, and give the same embedding for
# 1 and 3 threads. Run from the repository root after `make abc abc-convert build/tool_npycmp`.
# Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-./abc}
CONVERT=${ABC_CONVERT:-./abc-convert}
CMP=build/tool_npycmp
FIX=tests/fixtures/qwen2vl-tiny
IMG=tests/fixtures/images
MIN_COS=0.999

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_q8.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"

for f in "$ABC" "$CONVERT" "$CMP" "$FIX/manifest.json"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make abc abc-convert build/tool_npycmp')"; fi
done
if [ "$failed" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

Q8_ABC=$TMP/tiny-abc-q8.abc
Q8_VLM=$TMP/tiny-vlm2vec-q8.abc
# the converter commands of the Makefile's build/tiny-abc.abc and build/tiny-vlm2vec.abc, plus --dtype q8
if "$CONVERT" $FIX/base -o "$Q8_ABC" --preset abc --merge-adapter $FIX/abc_pretrain_adapter \
    --query-adapter $FIX/abc_instruct_adapter --dtype q8 --quiet 2>"$TMP/err"; then
    ok "convert abc --dtype q8"
else
    bad "convert abc --dtype q8: $(cat "$TMP/err")"
fi
if "$CONVERT" $FIX/base -o "$Q8_VLM" --preset vlm2vec --merge-adapter $FIX/vlm2vec_dora_adapter --dtype q8 \
    --quiet 2>"$TMP/err"; then
    ok "convert vlm2vec --dtype q8"
else
    bad "convert vlm2vec --dtype q8: $(cat "$TMP/err")"
fi
"$CONVERT" $FIX/base -o "$TMP/f32.abc" --preset vlm2vec --merge-adapter $FIX/vlm2vec_dora_adapter --quiet 2>/dev/null
if [ -s "$Q8_VLM" ] && [ -s "$TMP/f32.abc" ]; then
    q8_size=$(wc -c <"$Q8_VLM"); f32_size=$(wc -c <"$TMP/f32.abc")
    echo "     file sizes: f32 $f32_size bytes, q8 $q8_size bytes"
    # the embedding table dominates: 151936 x 32 f32 = 19.4 MB against 151936 x (32 + 4) = 5.5 MB
    if [ "$q8_size" -lt $((f32_size / 2)) ]; then ok "q8 file is less than half the f32 one"; else bad "q8 file size $q8_size vs f32 $f32_size"; fi
fi
if "$ABC" info -m "$Q8_ABC" >"$TMP/info" 2>&1 && grep -q 'weights q8' "$TMP/info"; then
    ok "abc info says q8"
else
    bad "abc info says q8: $(cat "$TMP/info")"
fi

image_path() {
    if [ -e "$IMG/$1" ]; then echo "$IMG/$1"; else echo "$IMG/images_$1"; fi
}

# q8_case NAME MODEL IMAGE ARGS...: the case's embedding against the f32 reference.
q8_case() {
    local name=$1 model=$2 image=$3; shift 3
    local ref="$FIX/cases/$name/embedding.npy"
    if ! grep -q "\"name\": \"$name\"" "$FIX/manifest.json"; then bad "$name: not in manifest.json"; return; fi
    local img_args=()
    if [ -n "$image" ]; then img_args=(--image "$(image_path "$image")"); fi
    if ! "$ABC" embed -m "$model" "${img_args[@]}" "$@" -o "$TMP/$name.npy" 2>"$TMP/err"; then
        bad "$name: embed failed: $(head -n 3 "$TMP/err")"; return
    fi
    local line
    line=$("$CMP" --label "$name q8" --cos $MIN_COS "$TMP/$name.npy" "$ref" 2>&1)
    local rc=$?
    echo "     $line"
    if [ "$rc" -eq 0 ]; then ok "$name: q8 cosine >= $MIN_COS"; else bad "$name: q8 cosine below $MIN_COS"; fi
}

echo "-- every manifest case, q8 against the float32 reference"
q8_case abc_query_astronaut "$Q8_ABC" astronaut.png --text "What is the person holding?" --role query --threads 2
q8_case abc_query_rocket_bang "$Q8_ABC" rocket.jpg --text "what color is the sky!" --role query
q8_case abc_cand_image_coffee "$Q8_ABC" coffee.png --role candidate --threads 1
q8_case abc_cand_image_camera "$Q8_ABC" camera.png --role candidate
q8_case abc_cand_text "$Q8_ABC" "" --text "a cup of coffee on a wooden table" --role candidate
q8_case vlm2vec_query_astronaut "$Q8_VLM" astronaut.png \
    --prompt "<|image_pad|> Represent the given image with the following question: What is the person holding?" --role query
q8_case vlm2vec_query_coffee_prog "$Q8_VLM" coffee_420_prog.jpg \
    --prompt "<|image_pad|> Represent the given image." --role query --threads 3
q8_case vlm2vec_text "$Q8_VLM" "" --text "A person in a space suit" --role candidate

# every case of the manifest was run above
cases=$(grep -o '"name": "[^"]*"' "$FIX/manifest.json" | sed 's/.*: "//; s/"$//' | sort)
for c in $cases; do
    if [ ! -e "$TMP/$c.npy" ]; then bad "manifest case $c has no q8 check"; fi
done

echo "-- q8 results do not depend on the thread count"
if "$ABC" embed -m "$Q8_ABC" --image "$(image_path astronaut.png)" --text "What is the person holding?" --role query \
    --threads 1 -o "$TMP/t1.npy" 2>/dev/null && "$CMP" --exact "$TMP/t1.npy" "$TMP/abc_query_astronaut.npy" >/dev/null 2>&1; then
    ok "abc_query_astronaut: 1 thread == 2 threads, bit for bit"
else
    bad "abc_query_astronaut: 1 thread differs from 2 threads"
fi

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
