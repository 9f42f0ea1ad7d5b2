#!/usr/bin/env bash
# abc-convert end to end: both Qwen2-VL presets × f32/f16/bf16 on the tiny fixture, and phi3_v (section 7); merged weights against the
# NumPy (peft-semantics) reference; untouched weights against the safetensors bytes; the transformers
# >= 4.52 layout converts to identical bytes; malformed inputs fail with specific messages. The
# failing and some passing runs use the converter built with ASan/UBSan (leaks included).
set -u
cd "$(dirname "$0")/.."
make -s abc-convert build/abc-convert-asan build/tool_relayout build/tool_abccheck >/dev/null || { echo "RESULT 0 1"; exit 1; }

FX=tests/fixtures/qwen2vl-tiny
REF=$FX/convert_ref
OUT=build/test_convert
CONV=${ABC_CONVERT:-./abc-convert}
ASAN=${ABC_CONVERT_UNDER_TEST:-build/abc-convert-asan}  # the converter under test (cross runs: a wrapper)
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
# rank_pattern and alpha_pattern that differ from r and lora_alpha (every module's rank 16 or 4 where r is 8;
# q_proj's alpha 24 or 48 where lora_alpha is 16): an adapter made by peft itself, against peft's own
# merge_and_unload (tests/gen_pattern_adapter.py)
expect "convert with a peft-made rank_pattern/alpha_pattern adapter" $CONV $FX/base -o $OUT/pattern.abc --preset vlm2vec --merge-adapter $FX/pattern_adapter --quiet
n_pat=0
for f in $REF/pattern.*.npy; do
    b=$(basename "$f" .npy); n_pat=$((n_pat + 1))
    expect "rank/alpha_pattern merge matches peft ${b#pattern.}" $CHECK vs-npy $OUT/pattern.abc "${b#pattern.}" "$f" 1e-6
done
expect_eq "peft pattern references (4 modules x 2 layers)" 8 echo $n_pat
expect "the pattern check can fail (another adapter's q_proj merge is not this one)" bash -c "! $CHECK vs-npy $OUT/vlm2vec_f32.abc model.layers.1.self_attn.q_proj.weight $REF/pattern.model.layers.1.self_attn.q_proj.weight.npy 1e-3"
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
sed 's/"model_type":"qwen2_vl"/"model_type":"qwen3_vl"/' $NEW/base/config.json >$BAD/arch/config.json
cp $ST $BAD/arch/
expect_error "unknown architecture" 'unsupported architecture: model_type "qwen3_vl"' $BAD/arch -o $OUT/x.abc --preset vlm2vec
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
"$ASAN" $FX/base -o $OUT/x.abc --preset vlm2vec --dtype q3 >$OUT/err.log 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'unknown --dtype "q3"' $OUT/err.log && ok "unknown --dtype (usage error)" || ko "unknown --dtype (exit $rc)"
expect_error "missing input directory" "cannot open" $OUT/nonexistent -o $OUT/x.abc --preset vlm2vec
expect "failed conversions leave no output" test ! -e $OUT/x.abc
"$ASAN" $FX/base -o $OUT/x.abc --preset nonsense >$OUT/err.log 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q 'unknown --preset "nonsense"' $OUT/err.log && ok "unknown preset (usage error, exit $rc)" || ko "unknown preset"

# ---- 7. phi3_v (Phi-3.5-vision, VLM2Vec-Full) ----
# tests/fixtures/phi35v-tiny: the hub layout of microsoft/Phi-3.5-vision-instruct at tiny size (bf16; CLIP
# 3 layers of width 32, decoder 2 layers of width 64, 4 heads = 4 kv heads, head_dim 16); its adapters and
# convert_ref/ come from tests/gen_phi3v_convert_fixtures.py (NumPy: merge the fused tensor, then split).
PFX=tests/fixtures/phi35v-tiny
PHI_TOK=${PHI3_TOKENIZER:-$PFX/tokenizer.json}
CLIPH=model.vision_embed_tokens.img_processor.vision_model.
PST=$PFX/model.safetensors
# phi_dir DIR: a checkpoint directory named phi35v-tiny (general.source holds its base name) with the
# fixture's files; callers replace what they break
phi_dir() {
    mkdir -p $1/phi35v-tiny
    cp $PFX/config.json $PFX/preprocessor_config.json $1/phi35v-tiny/
    cp "$PHI_TOK" $1/phi35v-tiny/tokenizer.json
    ln -sf "$PWD/$PST" $1/phi35v-tiny/model.safetensors
}
P=$OUT/phi
PB=$P/base/phi35v-tiny
phi_dir $P/base
for dt in f32 f16 bf16; do
    expect "phi3_v convert $dt" $CONV $PB -o $P/$dt.abc --preset vlm2vec-phi3v --dtype $dt --quiet
    expect "phi3_v format check $dt" $CHECK check $P/$dt.abc
done
expect "phi3_v convert under ASan (no leaks)" $ASAN $PB -o $P/asan.abc --preset vlm2vec-phi3v --quiet
expect "phi3_v ASan build writes the same bytes" cmp $P/asan.abc $P/f32.abc
PF=$P/f32.abc

expect "phi3_v convert q8 (with a LoRA merged into the fused tensors)" $CONV $PB -o $P/q8.abc --preset vlm2vec-phi3v --dtype q8 --merge-adapter $PFX/lora_adapter --quiet
expect "phi3_v q8 format check" $CHECK check $P/q8.abc
expect_eq "phi3_v q8: split matrices q8, the [32, 588] patch embedding f32" "clip.embeddings.patch_embedding.weight f32 [32,588]
model.layers.1.self_attn.k_proj.weight q8 [64,64]
model.layers.1.mlp.up_proj.weight q8 [128,64]" bash -c "$CHECK info $P/q8.abc | grep -E '^(clip.embeddings.patch|model.layers.1.self_attn.k_proj|model.layers.1.mlp.up_proj)'"

# every tensor, in order, with its shape and dtype (2-D: --dtype, 1-D: f32)
phi_tensor_list() { # DTYPE
    local d=$1 l k
    echo "clip.embeddings.class_embedding f32 [32]"
    echo "clip.embeddings.patch_embedding.weight $d [32,588]"
    echo "clip.embeddings.position_embedding.weight $d [577,32]"
    echo "clip.pre_layrnorm.weight f32 [32]"; echo "clip.pre_layrnorm.bias f32 [32]"
    for l in 0 1; do
        for k in layer_norm1.weight layer_norm1.bias layer_norm2.weight layer_norm2.bias; do echo "clip.layers.$l.$k f32 [32]"; done
        for k in q_proj k_proj v_proj out_proj; do echo "clip.layers.$l.self_attn.$k.weight $d [32,32]"; echo "clip.layers.$l.self_attn.$k.bias f32 [32]"; done
        echo "clip.layers.$l.mlp.fc1.weight $d [64,32]"; echo "clip.layers.$l.mlp.fc1.bias f32 [64]"
        echo "clip.layers.$l.mlp.fc2.weight $d [32,64]"; echo "clip.layers.$l.mlp.fc2.bias f32 [32]"
    done
    echo "hd.glb_GN f32 [128]"; echo "hd.sub_GN f32 [128]"
    echo "hd.img_projection.0.weight $d [64,128]"; echo "hd.img_projection.0.bias f32 [64]"
    echo "hd.img_projection.2.weight $d [64,64]"; echo "hd.img_projection.2.bias f32 [64]"
    echo "model.embed_tokens.weight $d [32064,64]"
    for l in 0 1; do
        echo "model.layers.$l.input_layernorm.weight f32 [64]"; echo "model.layers.$l.post_attention_layernorm.weight f32 [64]"
        for k in q_proj k_proj v_proj o_proj; do echo "model.layers.$l.self_attn.$k.weight $d [64,64]"; done
        echo "model.layers.$l.mlp.gate_proj.weight $d [128,64]"; echo "model.layers.$l.mlp.up_proj.weight $d [128,64]"
        echo "model.layers.$l.mlp.down_proj.weight $d [64,128]"
    done
    echo "model.norm.weight f32 [64]"
}
for dt in f32 f16 bf16; do
    phi_tensor_list $dt >$P/want_$dt.info
    $CHECK info $P/$dt.abc | grep -v '^tokenizer\.' >$P/got_$dt.info
    if cmp -s $P/want_$dt.info $P/got_$dt.info; then ok "phi3_v tensor names, order, shapes, dtypes ($dt, 63 tensors)"
    else ko "phi3_v tensor list ($dt)"; diff $P/want_$dt.info $P/got_$dt.info | head -n 10; fi
done
expect "the fixture does hold CLIP's last layer, post_layernorm and lm_head" bash -c "grep -q '${CLIPH}encoder.layers.2.mlp.fc2.bias' $PST && grep -q '${CLIPH}post_layernorm.weight' $PST && grep -q '\"lm_head.weight\"' $PST"
expect_eq "dropped: CLIP layer 2, post_layernorm, lm_head, wte, fused names" "0" bash -c "$CHECK info $PF | grep -cE 'layers\.2\.|post_layernorm|lm_head|wte|qkv_proj|gate_up_proj|vision_embed_tokens'"

# split rows are the fused tensor's rows exactly (f32: bf16 widened; bf16: the same bits; f16: rounded)
for dt in f32 f16 bf16; do
    n=0
    for l in 0 1; do
        for t in q_proj:0 k_proj:64 v_proj:128; do
            $CHECK vs-st-rows $P/$dt.abc model.layers.$l.self_attn.${t%%:*}.weight $PST model.layers.$l.self_attn.qkv_proj.weight ${t#*:} && n=$((n + 1))
        done
        for t in gate_proj:0 up_proj:128; do
            $CHECK vs-st-rows $P/$dt.abc model.layers.$l.mlp.${t%%:*}.weight $PST model.layers.$l.mlp.gate_up_proj.weight ${t#*:} && n=$((n + 1))
        done
    done
    [ $n -eq 10 ] && ok "phi3_v q/k/v and gate/up = rows of qkv_proj / gate_up_proj ($dt)" || ko "phi3_v split rows ($dt): $n of 10"
done
expect "the row check can fail (k_proj is not rows 0..63)" bash -c "! $CHECK vs-st-rows $PF model.layers.0.self_attn.k_proj.weight $PST model.layers.0.self_attn.qkv_proj.weight 0 2>/dev/null"
# every other tensor: the checkpoint's under its hub name (the conv kernel flattened, glb_GN/sub_GN squeezed)
hub_of() { case $1 in clip.layers.*) echo "${CLIPH}encoder.${1#clip.}";; clip.*) echo "$CLIPH${1#clip.}";; hd.*) echo "model.vision_embed_tokens.${1#hd.}";; *) echo "$1";; esac; }
for dt in f32 bf16; do
    n=0; bad=""
    for t in $(grep -vE 'q_proj|k_proj|v_proj|gate_proj|up_proj' $P/want_$dt.info | cut -d' ' -f1; grep -E '^clip.*(q|k|v)_proj' $P/want_$dt.info | cut -d' ' -f1); do
        if $CHECK vs-st $P/$dt.abc $t $PST $(hub_of $t) 2>>$OUT/phi_vs_st.log; then n=$((n + 1)); else bad="$bad $t"; fi
    done
    [ $n -eq 53 ] && [ -z "$bad" ] && ok "phi3_v renamed tensors equal the checkpoint's ($dt, $n tensors)" || ko "phi3_v renamed tensors ($dt): $n of 53;$bad"
done

# metadata
pm() { $CHECK meta $PF "$1"; }
pmlist() { local k; for k in "$@"; do $CHECK meta $PF $k; done | tr '\n' ' ' | sed 's/ $//'; }
d17() { awk '{ for (i = 1; i <= NF; i++) printf "%s%.17g", (i > 1 ? " " : ""), $i; printf "\n" }'; }
expect_eq "phi3_v architecture/preset/dtype" "phi3_v vlm2vec-phi3v f32 bf16" bash -c "echo \$($CHECK meta $PF general.architecture) \$($CHECK meta $PF general.preset) \$($CHECK meta $PF general.dtype) \$($CHECK meta $P/bf16.abc general.dtype)"
expect_eq "phi3_v general.source" "phi35v-tiny" pm general.source
expect_eq "phi3_v text sizes" "64 128 2 4 4 16 32064" pmlist text.hidden_size text.intermediate_size text.num_layers text.num_heads text.num_kv_heads text.head_dim text.vocab_size
expect_eq "phi3_v rms_norm_eps, rope_theta" "$(echo 1e-05 10000 | d17)" pmlist text.rms_norm_eps text.rope_theta
expect "phi3_v has no mrope_section" bash -c "! $CHECK meta $PF text.mrope_section 2>/dev/null"
expect_eq "phi3_v rope_scaling" "su" pm text.rope_scaling
expect_eq "phi3_v rope_short_factor (8 = head_dim/2)" "$(echo 1.007466 1.046898 1.015066 1.044469 1.031341 1.049332 1.036035 1.028889 | d17)" pm text.rope_short_factor
expect_eq "phi3_v rope_long_factor" "$(echo 1.011527 6.665916 13.052607 17.832673 25.265248 31.104862 37.081567 42.425599 | d17)" pm text.rope_long_factor
expect_eq "phi3_v position limits" "4096 131072" pmlist text.original_max_position_embeddings text.max_position_embeddings
expect_eq "phi3_v clip sizes (num_layers = 3 - 1 stored)" "32 64 2 2 336 14" pmlist clip.hidden_size clip.intermediate_size clip.num_heads clip.num_layers clip.image_size clip.patch_size
expect_eq "phi3_v clip.layer_norm_eps" "$(echo 1e-05 | d17)" pm clip.layer_norm_eps
expect_eq "phi3_v hd.num_crops / num_img_tokens" "4 144" pmlist hd.num_crops hd.num_img_tokens
expect_eq "phi3_v image mean/std" "0.48145465999999998 0.4578275 0.40821073000000002 0.26862954 0.26130258000000001 0.27577710999999999" pmlist image.mean image.std
expect_eq "phi3_v tokens.bos" "1" pm tokens.bos
expect_eq "phi3_v prompt.image_placeholder" "<|image_1|>" pm prompt.image_placeholder
expect_eq "phi3_v prompt.image_text" "<|image_1|> {text}" pm prompt.image_text
expect_eq "phi3_v prompt.image" "<|image_1|>" pm prompt.image
expect_eq "phi3_v prompt.text" "{text}" pm prompt.text
expect_eq "phi3_v model keys" "causal last none 1 64 0" pmlist model.attention model.pooling model.head model.normalize model.embedding_dim query_adapter.rank
expect_eq "phi3_v tokenizer.model" "bpe_sentencepiece" pm tokenizer.model
expect "phi3_v has no Qwen2-VL keys" bash -c "! $CHECK meta $PF vision.depth 2>/dev/null && ! $CHECK meta $PF tokens.image_pad 2>/dev/null && ! $CHECK meta $PF image.min_pixels 2>/dev/null"

# transformers 5 saves CLIP without the vision_model. level: same bytes
phi_dir $P/t5
rm $P/t5/phi35v-tiny/model.safetensors
$RELAYOUT st-edit $PST $P/t5/phi35v-tiny/model.safetensors --rename-prefix $CLIPH model.vision_embed_tokens.img_processor. --drop lm_head.weight
expect "transformers 5 names in the checkpoint" bash -c "grep -q 'img_processor.encoder.layers.0' $P/t5/phi35v-tiny/model.safetensors && ! grep -q 'vision_model' $P/t5/phi35v-tiny/model.safetensors"
expect "phi3_v convert transformers 5 layout" $CONV $P/t5/phi35v-tiny -o $P/t5.abc --preset vlm2vec-phi3v --quiet
expect "phi3_v transformers 5 layout: identical bytes" cmp $P/t5.abc $PF

# a checkpoint that keeps the shared token embedding as model.vision_embed_tokens.wte.weight only
phi_dir $P/wte
rm $P/wte/phi35v-tiny/model.safetensors
$RELAYOUT st-edit $PST $P/wte/phi35v-tiny/model.safetensors --rename model.embed_tokens.weight model.vision_embed_tokens.wte.weight
expect "phi3_v convert with the embedding under wte" $CONV $P/wte/phi35v-tiny -o $P/wte.abc --preset vlm2vec-phi3v --quiet
expect "phi3_v embedding from wte: identical bytes" cmp $P/wte.abc $PF

# num_crops: preprocessor_config.json, else config.json, else 4; --num-crops overrides
expect "phi3_v --num-crops 16" $CONV $PB -o $P/nc16.abc --preset vlm2vec-phi3v --num-crops 16 --quiet
expect_eq "phi3_v hd.num_crops from --num-crops" "16" $CHECK meta $P/nc16.abc hd.num_crops
phi_dir $P/nc9
sed -i '/"num_crops"/d' $P/nc9/phi35v-tiny/preprocessor_config.json
sed -i 's/"model_type": "phi3_v",/"model_type": "phi3_v",\n "num_crops": 9,/' $P/nc9/phi35v-tiny/config.json
expect "phi3_v num_crops from config.json" $CONV $P/nc9/phi35v-tiny -o $P/nc9.abc --preset vlm2vec-phi3v --quiet
expect_eq "phi3_v hd.num_crops 9 (config.json)" "9" $CHECK meta $P/nc9.abc hd.num_crops
phi_dir $P/nopre
rm $P/nopre/phi35v-tiny/preprocessor_config.json
expect "phi3_v without preprocessor_config.json" $CONV $P/nopre/phi35v-tiny -o $P/nopre.abc --preset vlm2vec-phi3v --quiet
expect_eq "phi3_v defaults: 4 crops, CLIP mean/std" "4 0.48145465999999998 0.4578275 0.40821073000000002 0.26862954 0.26130258000000001 0.27577710999999999" bash -c "echo \$($CHECK meta $P/nopre.abc hd.num_crops) \$($CHECK meta $P/nopre.abc image.mean) \$($CHECK meta $P/nopre.abc image.std)"
# no rope_scaling: plain RoPE, no factor keys
phi_dir $P/norope
sed -i '/"rope_scaling": {/,/^ },/d' $P/norope/phi35v-tiny/config.json
expect "phi3_v without rope_scaling" $CONV $P/norope/phi35v-tiny -o $P/norope.abc --preset vlm2vec-phi3v --quiet
expect_eq "phi3_v rope_scaling none" "none" $CHECK meta $P/norope.abc text.rope_scaling
expect "phi3_v rope none: no factor keys" bash -c "! $CHECK meta $P/norope.abc text.rope_short_factor 2>/dev/null && ! $CHECK meta $P/norope.abc text.rope_long_factor 2>/dev/null"
phi_dir $P/longrope
sed -i 's/"type": "su"/"type": "longrope"/' $P/longrope/phi35v-tiny/config.json
expect "phi3_v rope type longrope" $CONV $P/longrope/phi35v-tiny -o $P/longrope.abc --preset vlm2vec-phi3v --quiet
expect "phi3_v longrope = su: identical bytes" cmp $P/longrope.abc $PF

# PEFT adapters: merged into the fused hub tensors, then split (NumPy reference: convert_ref/)
expect "phi3_v convert with LoRA" $CONV $PB -o $P/lora.abc --preset vlm2vec-phi3v --merge-adapter $PFX/lora_adapter --quiet
expect "phi3_v convert with LoRA, bf16" $CONV $PB -o $P/lora_bf16.abc --preset vlm2vec-phi3v --merge-adapter $PFX/lora_adapter --dtype bf16 --quiet
expect "phi3_v convert with DoRA + rsLoRA under ASan" $ASAN $PB -o $P/dora.abc --preset vlm2vec-phi3v --merge-adapter $PFX/dora_adapter --quiet
n=0; nbad=0
for f in $PFX/convert_ref/*.npy; do
    b=$(basename "$f" .npy); kind=${b%%.*}; t=${b#*.}
    $CHECK vs-npy $P/$kind.abc "$t" "$f" 1e-6 >>$OUT/phi_numerics.log 2>&1 && n=$((n + 1)) || { nbad=$((nbad + 1)); tail -n 1 $OUT/phi_numerics.log; }
    if [ $kind = lora ]; then $CHECK vs-npy $P/lora_bf16.abc "$t" "$f" 4e-3 >>$OUT/phi_numerics.log 2>&1 && n=$((n + 1)) || nbad=$((nbad + 1)); fi
done
[ $n -eq 41 ] && [ $nbad -eq 0 ] && ok "phi3_v merged weights match NumPy's merge-then-split (23 tensors f32 + 18 bf16)" || ko "phi3_v merge numerics ($n ok, $nbad failed)"
expect "the merge check can fail (unmerged q_proj is not the LoRA one)" bash -c "! $CHECK vs-npy $PF model.layers.0.self_attn.q_proj.weight $PFX/convert_ref/lora.model.layers.0.self_attn.q_proj.weight.npy 1e-3"
expect "a split of the LoRA-merged q_proj is not the DoRA one" bash -c "! $CHECK vs-npy $P/lora.abc model.layers.0.self_attn.q_proj.weight $PFX/convert_ref/dora.model.layers.0.self_attn.q_proj.weight.npy 1e-3"
expect "LoRA leaves unadapted tensors alone" $CHECK vs-st $P/lora.abc model.layers.1.input_layernorm.weight $PST model.layers.1.input_layernorm.weight
"$ASAN" $PB -o $P/lora_note.abc --preset vlm2vec-phi3v --merge-adapter $PFX/lora_adapter >$OUT/note.log 2>&1
expect "LoRA on the dropped CLIP layer is skipped with a note" grep -q "skipping LoRA on ${CLIPH}encoder.layers.2.self_attn.q_proj" $OUT/note.log

# an adapter whose lora_B fits o_proj [64, 64], not the fused qkv_proj [192, 64]
mkdir -p $P/badlora
cp $PFX/lora_adapter/adapter_config.json $P/badlora/
L0=base_model.model.model.layers.0.self_attn
$RELAYOUT st-edit $PFX/lora_adapter/adapter_model.safetensors $P/badlora/adapter_model.safetensors --drop $L0.qkv_proj.lora_B.weight --copy $L0.o_proj.lora_B.weight $L0.qkv_proj.lora_B.weight
expect_error "phi3_v LoRA that does not fit the fused qkv_proj" "model.layers.0.self_attn.qkv_proj: lora_A [4, 64] / lora_B [64, 4] do not fit the weight [192, 64]" $PB -o $OUT/x.abc --preset vlm2vec-phi3v --merge-adapter $P/badlora

# malformed phi3_v inputs
PBAD=$P/bad
phi_bad() { # NAME SED-EXPRESSION (applied to config.json)
    phi_dir $PBAD/$1
    sed -i "$2" $PBAD/$1/phi35v-tiny/config.json
}
phi_bad noimg '/"img_processor": {/,/^ },/d'
expect_error "phi3_v config without img_processor" '"img_processor" is missing' $PBAD/noimg/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad noembd '/"embd_layer": {/,/^ },/d'
expect_error "phi3_v config without embd_layer" '"embd_layer" is missing' $PBAD/noembd/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad short7 '/"short_factor"/{n;d}'
expect_error "phi3_v short_factor of 7 entries" "rope_scaling.short_factor has 7 entries, but head_dim/2 = 8" $PBAD/short7/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad long9 's/"long_factor": \[/"long_factor": [\n   1.5,/'
expect_error "phi3_v long_factor of 9 entries" "rope_scaling.long_factor has 9 entries, but head_dim/2 = 8" $PBAD/long9/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad zero 's/   1.007466,/   0,/'
expect_error "phi3_v non-positive rope factor" "rope_scaling.short_factor[0] is not a positive number" $PBAD/zero/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad linear 's/"type": "su"/"type": "linear"/'
expect_error "phi3_v rope type linear" 'rope_scaling type "linear" is not supported' $PBAD/linear/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad kv2 's/"num_key_value_heads": 4/"num_key_value_heads": 2/'
expect_error "phi3_v qkv_proj rows != hidden + 2 kv" "tensor model.layers.0.self_attn.qkv_proj.weight has shape [192, 64], but config.json implies [128, 64] (qkv_proj stacks q, k and v" $PBAD/kv2/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad inter 's/"intermediate_size": 128/"intermediate_size": 96/'
expect_error "phi3_v gate_up_proj rows != 2 intermediate" "gate_up_proj.weight has shape [256, 64], but config.json implies [192, 64] (gate_up_proj stacks gate and up" $PBAD/inter/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad heads5 's/"num_attention_heads": 4/"num_attention_heads": 5/'
expect_error "phi3_v num_heads not dividing hidden" "hidden_size 64 is not a multiple of num_attention_heads 5" $PBAD/heads5/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad layeridx 's/"num_img_tokens": 144,/"num_img_tokens": 144, "layer_idx": -1,/'
expect_error "phi3_v CLIP layer_idx -1" "img_processor.layer_idx -1 is not supported" $PBAD/layeridx/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad order 's/"sub_glb"/"glb_sub"/'
expect_error "phi3_v hd_transform_order glb_sub" 'hd_transform_order "glb_sub" is not supported' $PBAD/order/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad img448 's/"image_size": 336/"image_size": 448/'
expect_error "phi3_v CLIP image_size 448" "CLIP image_size 448 / patch_size 14 are not supported" $PBAD/img448/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad clipname '/"tiny_clip_config": {/,/^  }/d; s/"num_img_tokens": 144,/"num_img_tokens": 144/; s/openai\/clip-vit-large-patch14-336/openai\/clip-vit-base-patch32/'
expect_error "phi3_v unknown CLIP model without sizes" 'img_processor.model_name "openai/clip-vit-base-patch32" is not supported' $PBAD/clipname/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_bad vitl '/"tiny_clip_config": {/,/^  }/d; s/"num_img_tokens": 144,/"num_img_tokens": 144/; s/"image_dim_out": 32/"image_dim_out": 1024/'
expect_error "phi3_v ViT-L/14-336 sizes against a tiny checkpoint" "has shape [32], but config.json implies [1024]" $PBAD/vitl/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_dir $PBAD/missing
rm $PBAD/missing/phi35v-tiny/model.safetensors
$RELAYOUT st-edit $PST $PBAD/missing/phi35v-tiny/model.safetensors --drop model.layers.1.self_attn.qkv_proj.weight
expect_error "phi3_v missing qkv_proj" "tensor model.layers.1.self_attn.qkv_proj.weight is missing from the checkpoint" $PBAD/missing/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_dir $PBAD/extra
rm $PBAD/extra/phi35v-tiny/model.safetensors
$RELAYOUT st-edit $PST $PBAD/extra/phi35v-tiny/model.safetensors --copy model.vision_embed_tokens.glb_GN model.vision_embed_tokens.glb_GN2
expect_error "phi3_v unknown image-embedding tensor" "checkpoint tensor model.vision_embed_tokens.glb_GN2 is not part of the model" $PBAD/extra/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
phi_dir $PBAD/both
rm $PBAD/both/phi35v-tiny/model.safetensors
$RELAYOUT st-edit $PST $PBAD/both/phi35v-tiny/model.safetensors --copy ${CLIPH}pre_layrnorm.bias model.vision_embed_tokens.img_processor.pre_layrnorm.bias
expect_error "phi3_v CLIP tensor under both spellings" "twice" $PBAD/both/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
expect_error "phi3_v with --preset vlm2vec" "is a Phi-3-V (phi3_v) checkpoint: use --preset vlm2vec-phi3v" $PB -o $OUT/x.abc --preset vlm2vec
expect_error "Qwen2-VL with --preset vlm2vec-phi3v" "is a Qwen2-VL checkpoint" $FX/base -o $OUT/x.abc --preset vlm2vec-phi3v
expect_error "phi3_v with a query adapter" "--query-adapter is not supported for phi3_v" $PB -o $OUT/x.abc --preset vlm2vec-phi3v --query-adapter $PFX/lora_adapter
expect_error "--num-crops on Qwen2-VL" "--num-crops applies to phi3_v checkpoints only" $FX/base -o $OUT/x.abc --preset vlm2vec --num-crops 4
"$ASAN" $PB -o $OUT/x.abc --preset vlm2vec-phi3v --num-crops 0 >$OUT/err.log 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q 'num-crops needs an integer' $OUT/err.log && ok "--num-crops 0 (usage error)" || ko "--num-crops 0 (exit $rc)"
phi_dir $PBAD/pre
sed -i 's/"num_crops": 4/"num_crops": 2.5/' $PBAD/pre/phi35v-tiny/preprocessor_config.json
expect_error "phi3_v fractional num_crops" '"num_crops" must be an integer' $PBAD/pre/phi35v-tiny -o $OUT/x.abc --preset vlm2vec-phi3v
expect "failed phi3_v conversions leave no output" test ! -e $OUT/x.abc

echo "RESULT $passed $failed"
[ $failed -eq 0 ]
