#!/usr/bin/env bash
# abc-convert end to end: both presets × f32/f16/bf16 on the tiny fixture; merged weights against the
# NumPy (peft-semantics) reference; untouched weights against the safetensors bytes; the transformers
# >= 4.52 layout converts to identical bytes; malformed inputs fail with specific messages. The
# failing and some passing runs use the converter built with ASan/UBSan (leaks included).
set -u
cd "$(dirname "$0")/.."
make -s abc-convert build/abc-convert-asan build/tool_relayout build/tool_abccheck >/dev/null || { echo "RESULT 0 1"; exit 1; }

FX=tests/fixtures/qwen2vl-tiny
REF=$FX/convert_ref
OUT=build/test_convert
CONV=./abc-convert
ASAN=build/abc-convert-asan
CHECK=build/tool_abccheck
RELAYOUT=build/tool_relayout
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
rm -rf "$OUT"
mkdir -p "$OUT"
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
ko() { failed=$((failed + 1)); echo "FAIL $1"; }
# expect NAME COMMAND... : the command must succeed
expect() { local name=$1; shift; if "$@" >"$OUT/last.log" 2>&1; then ok "$name"; else ko "$name"; sed 's/^/    /' "$OUT/last.log" | tail -n 20; fi; }
# expect_eq NAME WANT COMMAND... : the command's output must be WANT
expect_eq() {
    local name=$1 want=$2; shift 2
    local got; got=$("$@" 2>&1)
    if [ "$got" = "$want" ]; then ok "$name"; else ko "$name"; echo "    want: $want"; echo "    got:  $got"; fi
}
# expect_meta_str NAME FILE KEY WANT : a string metadata value, byte for byte (trailing newlines included)
expect_meta_str() {
    printf '%s\n' "$4" >"$OUT/want.txt"
    $CHECK meta "$2" "$3" >"$OUT/got.txt" 2>&1
    if cmp -s "$OUT/want.txt" "$OUT/got.txt"; then ok "$1"; else ko "$1"; diff "$OUT/want.txt" "$OUT/got.txt" | head -n 10; fi
}
# expect_error NAME SUBSTRING ARGS... : the ASan converter must fail (exit 1) naming the problem, with no sanitizer report
expect_error() {
    local name=$1 want=$2; shift 2
    "$ASAN" "$@" --quiet >"$OUT/err.log" 2>&1
    local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$want" "$OUT/err.log" && ! grep -qE "Sanitizer|runtime error" "$OUT/err.log"; then
        ok "$name: $(grep -m1 'error' "$OUT/err.log")"
    else
        ko "$name (exit $rc, wanted a message containing: $want)"; sed 's/^/    /' "$OUT/err.log" | head -n 20
    fi
}

ABC_ARGS=(--preset abc --merge-adapter $FX/abc_pretrain_adapter --query-adapter $FX/abc_instruct_adapter)
V2V_ARGS=(--preset vlm2vec --merge-adapter $FX/vlm2vec_dora_adapter)

# ---- 1. conversions, both presets, every dtype ----
for dt in f32 f16 bf16; do
    expect "convert abc $dt" $CONV $FX/base -o $OUT/abc_$dt.abc "${ABC_ARGS[@]}" --dtype $dt --quiet
    expect "convert vlm2vec $dt" $CONV $FX/base -o $OUT/vlm2vec_$dt.abc "${V2V_ARGS[@]}" --dtype $dt --quiet
    for p in abc vlm2vec; do
        expect "format check $p $dt" $CHECK check $OUT/${p}_$dt.abc
        expect_eq "general.dtype $p $dt" "$dt" $CHECK meta $OUT/${p}_$dt.abc general.dtype
    done
done
expect "convert abc f32 under ASan (no leaks)" $ASAN $FX/base -o $OUT/abc_asan.abc "${ABC_ARGS[@]}" --quiet
expect "ASan build writes the same bytes" cmp $OUT/abc_asan.abc $OUT/abc_f32.abc
expect "convert vlm2vec f16 under ASan" $ASAN $FX/base -o $OUT/v_asan.abc "${V2V_ARGS[@]}" --dtype f16 --quiet
expect "ASan build writes the same bytes (f16)" cmp $OUT/v_asan.abc $OUT/vlm2vec_f16.abc
expect "no temporary files left" test -z "$(ls $OUT | grep '\.tmp')"

# ---- 2. metadata ----
A=$OUT/abc_f32.abc
V=$OUT/vlm2vec_f32.abc
SYS=$'<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n'
ASSIST=$'<|im_end|>\n<|im_start|>assistant\n'
expect_eq "abc attention" bidirectional $CHECK meta $A model.attention
expect_eq "abc pooling" mean_nonzero $CHECK meta $A model.pooling
expect_eq "abc head" mlp $CHECK meta $A model.head
expect_meta_str "abc prompt.image_text" $A prompt.image_text "${SYS}<|vision_start|><|image_pad|><|vision_end|>Instruction: {text}${ASSIST}"
expect_meta_str "abc prompt.image" $A prompt.image "${SYS}<|vision_start|><|image_pad|><|vision_end|>${ASSIST}"
expect_meta_str "abc prompt.text" $A prompt.text "${SYS}{text}${ASSIST}"
expect_eq "abc image bounds" "3136 12845056 200704 802816" bash -c "for k in stage1_min_pixels stage1_max_pixels min_pixels max_pixels; do $CHECK meta $A image.\$k; done | tr '\n' ' ' | sed 's/ \$//'"
expect_eq "abc query_adapter.rank" 8 $CHECK meta $A query_adapter.rank
expect_eq "vlm2vec attention" causal $CHECK meta $V model.attention
expect_eq "vlm2vec pooling" last $CHECK meta $V model.pooling
expect_eq "vlm2vec head" none $CHECK meta $V model.head
expect_eq "vlm2vec prompt.image_text" "<|image_pad|> {text}" $CHECK meta $V prompt.image_text
expect_eq "vlm2vec prompt.image" "<|image_pad|>" $CHECK meta $V prompt.image
expect_eq "vlm2vec prompt.text" "{text}" $CHECK meta $V prompt.text
expect_eq "vlm2vec image bounds" "3136 12845056" bash -c "echo \$($CHECK meta $V image.min_pixels) \$($CHECK meta $V image.max_pixels)"
expect "vlm2vec has no stage-1 bounds" bash -c "! $CHECK meta $V image.stage1_min_pixels"
expect_eq "vlm2vec query_adapter.rank" 0 $CHECK meta $V query_adapter.rank
for f in $A $V; do
    expect_eq "sizes ($f)" "32 64 2 2 1 16 151936 2 32 2 128 14 2 2 3 32 32" bash -c "for k in text.hidden_size text.intermediate_size text.num_layers text.num_heads text.num_kv_heads text.head_dim text.vocab_size vision.depth vision.embed_dim vision.num_heads vision.mlp_dim vision.patch_size vision.temporal_patch_size vision.spatial_merge_size vision.in_channels vision.out_dim model.embedding_dim; do $CHECK meta $f \$k; done | tr '\n' ' ' | sed 's/ \$//'"
    expect_eq "rope/eps ($f)" "1000000 1.9999999999999999e-06 2 3 3 10000 9.9999999999999995e-07" bash -c "echo \$($CHECK meta $f text.rope_theta) \$($CHECK meta $f text.rms_norm_eps | awk '{printf \"%.17g\", \$1*2}') \$($CHECK meta $f text.mrope_section) \$($CHECK meta $f vision.rope_theta) \$($CHECK meta $f vision.layer_norm_eps)"
    expect_eq "special tokens ($f)" "151655 151652 151653" bash -c "echo \$($CHECK meta $f tokens.image_pad) \$($CHECK meta $f tokens.vision_start) \$($CHECK meta $f tokens.vision_end)"
    expect_eq "image mean/std ($f)" "0.48145465999999998 0.4578275 0.40821073000000002 0.26862954 0.26130258000000001 0.27577710999999999" bash -c "echo \$($CHECK meta $f image.mean) \$($CHECK meta $f image.std)"
    expect_eq "fixed keys ($f)" "qwen2_vl 1 vision_start <|image_pad|> 28 bpe_byte_level" bash -c "echo \$($CHECK meta $f general.architecture) \$($CHECK meta $f model.normalize) \$($CHECK meta $f model.mrope_rule) \$($CHECK meta $f prompt.image_placeholder) \$($CHECK meta $f image.factor) \$($CHECK meta $f tokenizer.model)"
done

# ---- 3. tensor set, dtypes, shapes ----
$CHECK info $OUT/abc_bf16.abc >$OUT/abc_bf16.info
$CHECK info $OUT/vlm2vec_f16.abc >$OUT/vlm2vec_f16.info
expect_eq "patch embedding flattened to [E, 1176]" "visual.patch_embed.proj.weight bf16 [32,1176]" grep '^visual.patch_embed' $OUT/abc_bf16.info
expect_eq "2-D weights take --dtype" "model.layers.1.mlp.down_proj.weight f16 [32,64]" grep '^model.layers.1.mlp.down_proj.weight' $OUT/vlm2vec_f16.info
expect_eq "embeddings take --dtype" "model.embed_tokens.weight f16 [151936,32]" grep '^model.embed_tokens' $OUT/vlm2vec_f16.info
expect_eq "norms and biases stay f32" "0" bash -c "grep -E '(norm|ln_q)[^ ]*weight |bias ' $OUT/vlm2vec_f16.info | grep -vc ' f32 \['"
expect_eq "count of f32 1-D model tensors (2x8 vision blocks, 4 merger, 2x5 layers, final norm)" "31" bash -c "grep -E '^(visual|model)\.' $OUT/vlm2vec_f16.info | grep -c ' f32 \['"
expect_eq "mlp_head present (abc)" "mlp_head.linear_layer1.weight bf16 [4096,32]
mlp_head.linear_layer1.bias f32 [4096]
mlp_head.linear_layer2.weight bf16 [32,4096]
mlp_head.linear_layer2.bias f32 [32]" grep '^mlp_head' $OUT/abc_bf16.info
expect_eq "no mlp_head, lm_head or temperature (vlm2vec)" "0" bash -c "grep -cE '^(mlp_head|lm_head|temperature)' $OUT/vlm2vec_f16.info"
expect_eq "no lm_head or temperature (abc)" "0" bash -c "grep -cE '^(lm_head|temperature)' $OUT/abc_bf16.info"
expect_eq "query adapter tensors f32, 14 modules x A/B" "28" bash -c "grep '^query_adapter\.' $OUT/abc_bf16.info | grep -c ' f32 \['"
expect_eq "query adapter shapes" "query_adapter.model.layers.0.self_attn.k_proj.lora_A f32 [8,32]
query_adapter.model.layers.0.self_attn.k_proj.lora_B f32 [16,8]" grep 'query_adapter.model.layers.0.self_attn.k_proj' $OUT/abc_bf16.info
expect_eq "model tensor count (abc: 57 + head 4 + query 28)" "89" bash -c "grep -vc '^tokenizer\.' $OUT/abc_bf16.info"

# ---- 4. numerics ----
# merged weights: against NumPy's float32 peft merge (tests/gen_convert_reference.py); f32 output
# within 1e-6 of max|ref| (float32 rounding of the B·A product), f16/bf16 within half an ulp (2^-11, 2^-8)
for f in $REF/vlm2vec.*.npy $REF/abc.*.npy; do
    b=$(basename "$f" .npy); preset=${b%%.*}; tensor=${b#*.}
    for dt in f32 f16 bf16; do
        tol=1e-6; [ $dt = f16 ] && tol=5e-4; [ $dt = bf16 ] && tol=4e-3
        case $tensor in query_adapter.*) tol=1e-6;; esac   # always float32
        $CHECK vs-npy $OUT/${preset}_$dt.abc "$tensor" "$f" $tol >>$OUT/numerics.log 2>&1 || { ko "merge numerics $preset $dt $tensor"; tail -n 1 $OUT/numerics.log; }
    done
done
n_ref=$(ls $REF/vlm2vec.*.npy $REF/abc.*.npy | wc -l)
n_bad=$(grep -c FAIL $OUT/numerics.log)
[ "$n_ref" -eq 42 ] && [ "$n_bad" -eq 0 ] && [ "$(grep -c ' ok$' $OUT/numerics.log)" -eq $((n_ref * 3)) ] && ok "merged LoRA/DoRA weights and query lora_B match the NumPy reference ($n_ref tensors x 3 dtypes)" || ko "merge numerics ($n_bad failures)"
# a DoRA merge that normalised over the wrong axis, or used W instead of W + sBA, is far off:
expect "the reference check can fail (base weight is not the merged one)" bash -c "! $CHECK vs-npy $OUT/abc_f32.abc model.layers.0.self_attn.q_proj.weight $REF/vlm2vec.model.layers.0.self_attn.q_proj.weight.npy 1e-3"
# several --merge-adapter apply in order; use_rslora and alpha_pattern change the scale per module
expect "convert with two merged adapters" $CONV $FX/base -o $OUT/chain.abc --preset abc --merge-adapter $FX/abc_pretrain_adapter --merge-adapter $FX/vlm2vec_dora_adapter --quiet
for f in $REF/chain.*.npy; do b=$(basename "$f" .npy); expect "chained merge ${b#chain.}" $CHECK vs-npy $OUT/chain.abc "${b#chain.}" "$f" 1e-6; done
mkdir -p $OUT/rslora
sed -e 's/"use_rslora": false/"use_rslora": true/' -e 's/"alpha_pattern": {}/"alpha_pattern": {"self_attn.q_proj": 32}/' $FX/vlm2vec_dora_adapter/adapter_config.json >$OUT/rslora/adapter_config.json
cp $FX/vlm2vec_dora_adapter/adapter_model.safetensors $OUT/rslora/
expect "convert with use_rslora + alpha_pattern" $CONV $FX/base -o $OUT/rslora.abc --preset vlm2vec --merge-adapter $OUT/rslora --quiet
for f in $REF/rslora.*.npy; do b=$(basename "$f" .npy); expect "rslora/alpha_pattern merge ${b#rslora.}" $CHECK vs-npy $OUT/rslora.abc "${b#rslora.}" "$f" 1e-6; done
# untouched tensors: exactly the checkpoint's values (f32 widening, bf16 identity), f16 correctly rounded
S1=$FX/base/model-00001-of-00002.safetensors
S2=$FX/base/model-00002-of-00002.safetensors
for dt in f32 f16 bf16; do
    for t in model.embed_tokens.weight model.layers.1.input_layernorm.weight model.layers.0.self_attn.q_proj.bias; do
        expect "$t unchanged ($dt)" $CHECK vs-st $OUT/vlm2vec_$dt.abc $t $S1 $t
    done
    for t in visual.patch_embed.proj.weight visual.blocks.1.attn.qkv.weight visual.merger.mlp.0.weight visual.merger.ln_q.bias; do
        expect "$t unchanged ($dt)" $CHECK vs-st $OUT/abc_$dt.abc $t $S2 $t
    done
    expect "mlp_head from modules_to_save ($dt)" $CHECK vs-st $OUT/abc_$dt.abc mlp_head.linear_layer2.weight $FX/abc_pretrain_adapter/adapter_model.safetensors base_model.model.mlp_head.linear_layer2.weight
    expect "query lora_A kept apart ($dt)" $CHECK vs-st $OUT/abc_$dt.abc query_adapter.model.layers.1.mlp.down_proj.lora_A $FX/abc_instruct_adapter/adapter_model.safetensors base_model.model.model.layers.1.mlp.down_proj.lora_A.weight
done

# ---- 5. transformers >= 4.52 layout: same bytes ----
NEW=$OUT/v452
mkdir -p $NEW
expect "relayout checkpoint" $RELAYOUT relayout $FX/base $NEW/base
for a in abc_pretrain_adapter abc_instruct_adapter vlm2vec_dora_adapter; do
    expect "relayout $a" $RELAYOUT relayout-adapter $FX/$a $NEW/$a
done
expect "nested config has text_config" grep -q '"text_config"' $NEW/base/config.json
expect "new names in the checkpoint" grep -q 'model.language_model.layers.0' $NEW/base/model.safetensors
for dt in f32 f16 bf16; do
    expect "convert 4.52 layout abc $dt" $CONV $NEW/base -o $OUT/new_abc_$dt.abc --preset abc --merge-adapter $NEW/abc_pretrain_adapter --query-adapter $NEW/abc_instruct_adapter --dtype $dt --quiet
    expect "4.52 layout abc $dt: identical bytes" cmp $OUT/new_abc_$dt.abc $OUT/abc_$dt.abc
    expect "convert 4.52 layout vlm2vec $dt" $CONV $NEW/base -o $OUT/new_v_$dt.abc --preset vlm2vec --merge-adapter $NEW/vlm2vec_dora_adapter --dtype $dt --quiet
    expect "4.52 layout vlm2vec $dt: identical bytes" cmp $OUT/new_v_$dt.abc $OUT/vlm2vec_$dt.abc
done
# 4.52-layout adapters on the hub-layout checkpoint (and the reverse) merge the same modules
expect "mixed layouts" $CONV $FX/base -o $OUT/mixed.abc --preset vlm2vec --merge-adapter $NEW/vlm2vec_dora_adapter --quiet
expect "mixed layouts: identical bytes" cmp $OUT/mixed.abc $OUT/vlm2vec_f32.abc

# peft's other spellings of modules_to_save (".modules_to_save.default." infix, frozen ".original_module."
# copy beside it) give the same file; an untied lm_head is dropped
VAR=$OUT/variants
mkdir -p $VAR/mts/abc_pretrain_adapter $VAR/lm/base
cp $FX/abc_pretrain_adapter/adapter_config.json $VAR/mts/abc_pretrain_adapter/
P=base_model.model.mlp_head
$RELAYOUT st-edit $FX/abc_pretrain_adapter/adapter_model.safetensors $VAR/mts/abc_pretrain_adapter/adapter_model.safetensors \
    --copy $P.linear_layer1.weight $P.original_module.linear_layer1.weight \
    --rename $P.linear_layer1.weight $P.modules_to_save.default.linear_layer1.weight \
    --rename $P.linear_layer2.bias $P.modules_to_save.default.linear_layer2.bias
expect "convert with modules_to_save.default keys" $CONV $FX/base -o $OUT/mts.abc --preset abc --merge-adapter $VAR/mts/abc_pretrain_adapter --query-adapter $FX/abc_instruct_adapter --quiet
expect "modules_to_save.default keys: identical bytes" cmp $OUT/mts.abc $OUT/abc_f32.abc
cp $NEW/base/config.json $NEW/base/preprocessor_config.json $NEW/base/tokenizer.json $VAR/lm/base/
$RELAYOUT st-edit $NEW/base/model.safetensors $VAR/lm/base/model.safetensors --copy model.language_model.embed_tokens.weight lm_head.weight
expect "convert with an lm_head" $CONV $VAR/lm/base -o $OUT/lm.abc --preset vlm2vec --merge-adapter $FX/vlm2vec_dora_adapter --quiet
expect "lm_head dropped: identical bytes" cmp $OUT/lm.abc $OUT/vlm2vec_f32.abc
# a full parameter in an adapter replaces the checkpoint's
mkdir -p $VAR/replace
cp $FX/vlm2vec_dora_adapter/adapter_config.json $VAR/replace/
$RELAYOUT st-edit $FX/abc_pretrain_adapter/adapter_model.safetensors $VAR/replace/adapter_model.safetensors --copy $P.linear_layer2.bias base_model.model.model.norm.weight \
    --drop $P.linear_layer1.weight --drop $P.linear_layer1.bias --drop $P.linear_layer2.weight --drop $P.linear_layer2.bias --drop base_model.model.temperature.temp
sed -i 's/"use_dora": true/"use_dora": false/; s/"r": 8/"r": 16/' $VAR/replace/adapter_config.json
expect "convert with a replaced parameter" $CONV $FX/base -o $OUT/replace.abc --preset vlm2vec --merge-adapter $VAR/replace --quiet
expect "model.norm.weight replaced by the adapter's" $CHECK vs-st $OUT/replace.abc model.norm.weight $VAR/replace/adapter_model.safetensors base_model.model.model.norm.weight
expect "the replaced value differs from the checkpoint's" bash -c "! $CHECK vs-st $OUT/replace.abc model.norm.weight $S1 model.norm.weight 2>/dev/null"

# ---- 6. malformed inputs: specific errors, non-zero exit, no sanitizer report ----
BAD=$OUT/bad
mkdir -p $BAD
# bad_dir NAME: a copy of the single-file (4.52 layout) checkpoint, with model.safetensors to replace
bad_dir() { mkdir -p $BAD/$1; cp $NEW/base/config.json $NEW/base/preprocessor_config.json $NEW/base/tokenizer.json $BAD/$1/; }
ST=$NEW/base/model.safetensors
for lie in offsets-past-end size-mismatch bad-json header-length overlap; do
    bad_dir $lie
    $RELAYOUT st-lie $ST $BAD/$lie/model.safetensors $lie
done
expect_error "safetensors offsets past the end" "run past the end of the file" $BAD/offsets-past-end -o $OUT/x.abc --preset vlm2vec
expect_error "safetensors shape/size mismatch" "shape [151937, 32] of BF16 needs 9723968 bytes but data_offsets span 9723904" $BAD/size-mismatch -o $OUT/x.abc --preset vlm2vec
expect_error "safetensors header bad JSON" "header is not valid JSON" $BAD/bad-json -o $OUT/x.abc --preset vlm2vec
expect_error "safetensors header length past the end" "header length" $BAD/header-length -o $OUT/x.abc --preset vlm2vec
expect_error "safetensors overlapping tensors" "overlaps" $BAD/overlap -o $OUT/x.abc --preset vlm2vec
bad_dir missing
$RELAYOUT st-edit $ST $BAD/missing/model.safetensors --drop model.language_model.layers.1.mlp.up_proj.weight
expect_error "missing tensor" "tensor model.layers.1.mlp.up_proj.weight is missing from the checkpoint" $BAD/missing -o $OUT/x.abc --preset vlm2vec
bad_dir wrongshape
$RELAYOUT st-edit $ST $BAD/wrongshape/model.safetensors --shape model.language_model.layers.0.self_attn.k_proj.weight 32,16
expect_error "tensor with the wrong shape" "tensor model.layers.0.self_attn.k_proj.weight has shape [32, 16], but config.json implies [16, 32]" $BAD/wrongshape -o $OUT/x.abc --preset vlm2vec
bad_dir dup
$RELAYOUT st-edit $ST $BAD/dup/model.safetensors --copy model.language_model.norm.weight model.norm.weight
expect_error "tensor under both layouts" "twice" $BAD/dup -o $OUT/x.abc --preset vlm2vec
bad_dir arch
sed 's/"model_type":"qwen2_vl"/"model_type":"qwen2_5_vl"/' $NEW/base/config.json >$BAD/arch/config.json
cp $ST $BAD/arch/
expect_error "unknown architecture" 'unsupported architecture: model_type "qwen2_5_vl"' $BAD/arch -o $OUT/x.abc --preset vlm2vec
# an adapter for a module the model does not have
mkdir -p $BAD/adapter_missing_module
cp $FX/vlm2vec_dora_adapter/adapter_config.json $BAD/adapter_missing_module/
$RELAYOUT st-edit $FX/vlm2vec_dora_adapter/adapter_model.safetensors $BAD/adapter_missing_module/adapter_model.safetensors \
    --rename base_model.model.model.layers.1.mlp.up_proj.lora_A.weight base_model.model.model.layers.7.mlp.up_proj.lora_A.weight \
    --rename base_model.model.model.layers.1.mlp.up_proj.lora_B.weight base_model.model.model.layers.7.mlp.up_proj.lora_B.weight \
    --rename base_model.model.model.layers.1.mlp.up_proj.lora_magnitude_vector base_model.model.model.layers.7.mlp.up_proj.lora_magnitude_vector
expect_error "adapter for a missing module" "targets module model.layers.7.mlp.up_proj, which does not exist" $FX/base -o $OUT/x.abc --preset vlm2vec --merge-adapter $BAD/adapter_missing_module
expect_error "DoRA query adapter" "is a DoRA adapter" $FX/base -o $OUT/x.abc --preset abc --merge-adapter $FX/abc_pretrain_adapter --query-adapter $FX/vlm2vec_dora_adapter
expect_error "abc without mlp_head" "preset abc needs the mlp_head" $FX/base -o $OUT/x.abc --preset abc --merge-adapter $FX/vlm2vec_dora_adapter
mkdir -p $BAD/ia3
sed 's/"peft_type": "LORA"/"peft_type": "IA3"/' $FX/vlm2vec_dora_adapter/adapter_config.json >$BAD/ia3/adapter_config.json
cp $FX/vlm2vec_dora_adapter/adapter_model.safetensors $BAD/ia3/
expect_error "unsupported peft type" 'unsupported peft_type "IA3"' $FX/base -o $OUT/x.abc --preset vlm2vec --merge-adapter $BAD/ia3
mkdir -p $BAD/rank
sed 's/"r": 8/"r": 4/' $FX/vlm2vec_dora_adapter/adapter_config.json >$BAD/rank/adapter_config.json
cp $FX/vlm2vec_dora_adapter/adapter_model.safetensors $BAD/rank/
expect_error "adapter rank disagrees with its tensors" "but the rank is 4" $FX/base -o $OUT/x.abc --preset vlm2vec --merge-adapter $BAD/rank
mkdir -p $BAD/regex
sed 's/"alpha_pattern": {}/"alpha_pattern": {".*q_proj": 32}/' $FX/vlm2vec_dora_adapter/adapter_config.json >$BAD/regex/adapter_config.json
cp $FX/vlm2vec_dora_adapter/adapter_model.safetensors $BAD/regex/
expect_error "regex in alpha_pattern" "is a regular expression" $FX/base -o $OUT/x.abc --preset vlm2vec --merge-adapter $BAD/regex
expect_error "q8 not supported yet" "--dtype q8 is not supported yet" $FX/base -o $OUT/x.abc --preset vlm2vec --dtype q8
expect_error "missing input directory" "cannot open" $OUT/nonexistent -o $OUT/x.abc --preset vlm2vec
expect "failed conversions leave no output" test ! -e $OUT/x.abc
"$ASAN" $FX/base -o $OUT/x.abc --preset nonsense >$OUT/err.log 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q 'unknown --preset "nonsense"' $OUT/err.log && ok "unknown preset (usage error, exit $rc)" || ko "unknown preset"

echo "RESULT $passed $failed"
[ $failed -eq 0 ]
