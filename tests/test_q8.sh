#!/usr/bin/env bash
# End-to-end q8 (int8 weights, model_convert/FORMAT.md): converts the tiny fixture with --dtype q8 for
# both presets and checks every case of tests/fixtures/qwen2vl-tiny/manifest.json against the float32
# reference embedding (cosine >= 0.999), printing each cosine; also that the q8 files are smaller, say
# q8, keep the patch embedding (1176 columns, not whole blocks) in f32, and give the same embedding for
# 1 and 3 threads. Run from the repository root after `make abc abc-convert build/tool_npycmp`.
# `tests/test_q8.sh q4` (tests/test_q4.sh) does the same for 4-bit weights with the default policy
# (cosine >= 0.86: the fixture's width-32 model is far more sensitive to 4-bit steps than full-size ones,
# see bench/RESULTS.md "q4"), plus the policy's plumbing: shown by abc info, an override to q8 giving
# q8's embedding bit for bit, a bad policy refused.
# Ends with "RESULT <passed> <failed>".
set -u
DT=${1:-q8}

ABC=${ABC_CLI:-./abc}
CONVERT=${ABC_CONVERT:-./abc-convert}
CMP=build/tool_npycmp
FIX=tests/fixtures/qwen2vl-tiny
IMG=tests/fixtures/images
MIN_COS=0.999
if [ "$DT" = q4 ]; then MIN_COS=0.86; fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_$DT.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"

for f in "$ABC" "$CONVERT" "$CMP" build/tool_abccheck "$FIX/manifest.json"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make abc abc-convert build/tool_npycmp build/tool_abccheck')"; fi
done
if [ "$failed" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

Q_ABC=$TMP/tiny-abc-$DT.abc
Q_VLM=$TMP/tiny-vlm2vec-$DT.abc
# the converter commands of the Makefile's build/tiny-abc.abc and build/tiny-vlm2vec.abc, plus --dtype
convert_abc() { # OUT ARGS...
    local out=$1; shift
    "$CONVERT" $FIX/base -o "$out" --preset abc --merge-adapter $FIX/abc_pretrain_adapter \
        --query-adapter $FIX/abc_instruct_adapter --quiet "$@" 2>"$TMP/err"
}
if convert_abc "$Q_ABC" --dtype $DT; then
    ok "convert abc --dtype $DT"
else
    bad "convert abc --dtype $DT: $(cat "$TMP/err")"
fi
if "$CONVERT" $FIX/base -o "$Q_VLM" --preset vlm2vec --merge-adapter $FIX/vlm2vec_dora_adapter --dtype $DT \
    --quiet 2>"$TMP/err"; then
    ok "convert vlm2vec --dtype $DT"
else
    bad "convert vlm2vec --dtype $DT: $(cat "$TMP/err")"
fi
"$CONVERT" $FIX/base -o "$TMP/f32.abc" --preset vlm2vec --merge-adapter $FIX/vlm2vec_dora_adapter --quiet 2>/dev/null
if [ -s "$Q_VLM" ] && [ -s "$TMP/f32.abc" ]; then
    q_size=$(wc -c <"$Q_VLM"); f32_size=$(wc -c <"$TMP/f32.abc")
    echo "     file sizes: f32 $f32_size bytes, $DT $q_size bytes"
    # the embedding table dominates: 151936 x 32 f32 = 19.4 MB against 151936 x (32 + 4) = 5.5 MB (q8)
    # or 151936 x (16 + 2) = 2.7 MB (q4)
    if [ "$DT" = q4 ]; then limit=$((f32_size / 3)); else limit=$((f32_size / 2)); fi
    if [ "$q_size" -lt "$limit" ]; then ok "$DT file is less than $limit bytes"; else bad "$DT file size $q_size vs f32 $f32_size"; fi
fi
want_info="weights $DT"
if [ "$DT" = q4 ]; then want_info="weights q4 (policy attn=q8,mlp=q4,down=q4,embed=q4,vision=q8,merger=q8,head=q8)"; fi
if "$ABC" info -m "$Q_ABC" >"$TMP/info" 2>&1 && grep -qF "$want_info" "$TMP/info"; then
    ok "abc info says $want_info"
else
    bad "abc info says $want_info: $(cat "$TMP/info")"
fi

image_path() {
    if [ -e "$IMG/$1" ]; then echo "$IMG/$1"; else echo "$IMG/images_$1"; fi
}

# q_case NAME MODEL IMAGE ARGS...: the case's embedding against the f32 reference.
q_case() {
    local name=$1 model=$2 image=$3; shift 3
    local ref="$FIX/cases/$name/embedding.npy"
    if ! grep -q "\"name\": \"$name\"" "$FIX/manifest.json"; then bad "$name: not in manifest.json"; return; fi
    local img_args=()
    if [ -n "$image" ]; then img_args=(--image "$(image_path "$image")"); fi
    if ! "$ABC" embed -m "$model" "${img_args[@]}" "$@" -o "$TMP/$name.npy" 2>"$TMP/err"; then
        bad "$name: embed failed: $(head -n 3 "$TMP/err")"; return
    fi
    local line
    line=$("$CMP" --label "$name $DT" --cos $MIN_COS "$TMP/$name.npy" "$ref" 2>&1)
    local rc=$?
    echo "     $line"
    if [ "$rc" -eq 0 ]; then ok "$name: $DT cosine >= $MIN_COS"; else bad "$name: $DT cosine below $MIN_COS"; fi
}

echo "-- every manifest case, $DT against the float32 reference"
q_case abc_query_astronaut "$Q_ABC" astronaut.png --text "What is the person holding?" --role query --threads 2
q_case abc_query_rocket_bang "$Q_ABC" rocket.jpg --text "what color is the sky!" --role query
q_case abc_cand_image_coffee "$Q_ABC" coffee.png --role candidate --threads 1
q_case abc_cand_image_camera "$Q_ABC" camera.png --role candidate
q_case abc_cand_text "$Q_ABC" "" --text "a cup of coffee on a wooden table" --role candidate
q_case vlm2vec_query_astronaut "$Q_VLM" astronaut.png \
    --prompt "<|image_pad|> Represent the given image with the following question: What is the person holding?" --role query
q_case vlm2vec_query_coffee_prog "$Q_VLM" coffee_420_prog.jpg \
    --prompt "<|image_pad|> Represent the given image." --role query --threads 3
q_case vlm2vec_text "$Q_VLM" "" --text "A person in a space suit" --role candidate

# every case of the manifest was run above
cases=$(grep -o '"name": "[^"]*"' "$FIX/manifest.json" | sed 's/.*: "//; s/"$//' | sort)
for c in $cases; do
    if [ ! -e "$TMP/$c.npy" ]; then bad "manifest case $c has no $DT check"; fi
done

echo "-- $DT results do not depend on the thread count"
if "$ABC" embed -m "$Q_ABC" --image "$(image_path astronaut.png)" --text "What is the person holding?" --role query \
    --threads 1 -o "$TMP/t1.npy" 2>/dev/null && "$CMP" --exact "$TMP/t1.npy" "$TMP/abc_query_astronaut.npy" >/dev/null 2>&1; then
    ok "abc_query_astronaut: 1 thread == 2 threads, bit for bit"
else
    bad "abc_query_astronaut: 1 thread differs from 2 threads"
fi

if [ "$DT" = q4 ]; then
    echo "-- the policy: every class in q8 gives q8's embedding; a bad policy is refused"
    if convert_abc "$TMP/all8.abc" --dtype q4 --policy text=q8,embed=q8 && convert_abc "$TMP/q8.abc" --dtype q8 &&
        "$ABC" embed -m "$TMP/all8.abc" --image "$(image_path astronaut.png)" --text "What is the person holding?" \
            --role query -o "$TMP/p8.npy" 2>/dev/null &&
        "$ABC" embed -m "$TMP/q8.abc" --image "$(image_path astronaut.png)" --text "What is the person holding?" \
            --role query -o "$TMP/q8.npy" 2>/dev/null && "$CMP" --exact "$TMP/p8.npy" "$TMP/q8.npy" >/dev/null 2>&1; then
        ok "--dtype q4 --policy text=q8,embed=q8 == --dtype q8, bit for bit"
    else
        bad "--policy text=q8,embed=q8 differs from --dtype q8: $(cat "$TMP/err")"
    fi
    if "$ABC" info -m "$TMP/q8.abc" 2>/dev/null | grep -q "policy"; then bad "a plain q8 file shows a policy"; else ok "a plain q8 file has no policy"; fi
    # each class in its policy dtype (tests/tool_abccheck.c reads the file independently of the library)
    want="model.embed_tokens.weight q4 [151936,32]
model.layers.1.self_attn.q_proj.weight q8 [32,32]
model.layers.1.mlp.gate_proj.weight q4 [64,32]
model.layers.1.mlp.down_proj.weight q4 [32,64]
visual.blocks.0.attn.qkv.weight q8 [96,32]
visual.merger.mlp.0.weight q8 [128,128]
visual.patch_embed.proj.weight f32 [32,1176]"
    got=$(build/tool_abccheck info "$Q_ABC" 2>&1 | grep -E '^(model.embed_tokens|model.layers.1.self_attn.q_proj|model.layers.1.mlp.(gate|down)_proj|visual.blocks.0.attn.qkv|visual.merger.mlp.0|visual.patch_embed.proj).weight ' | sort)
    if [ "$got" = "$(printf '%s\n' "$want" | sort)" ] && build/tool_abccheck check "$Q_ABC" >/dev/null 2>&1; then
        ok "the default policy's dtypes per class, and the file checks"
    else
        bad "policy dtypes: $got"
    fi
    for spec in "text" "text=q3" "vision=q4,bogus=q8" "=q8"; do
        if convert_abc "$TMP/bad.abc" --dtype q4 --policy "$spec"; then
            bad "--policy $spec accepted"
        elif grep -q "policy" "$TMP/err"; then
            ok "--policy $spec refused: $(head -n 1 "$TMP/err")"
        else
            bad "--policy $spec: unexpected message $(cat "$TMP/err")"
        fi
    done
fi

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
