#!/usr/bin/env bash
# build/abc-synth (tools/synth.c) on a small configuration: its files must be byte-identical to those
# the reference Python writer writes for the same config (SHA-256s recorded from it; the rule is
# docs/testing.md#synthetic-full-size-checkpoints),
# independent of the thread count; bad invocations must fail with a clear message.
# (The full-size 2B check, against hashes from the Python writer too, is in tests/full/test_full_2b.sh.)
set -u
cd "$(dirname "$0")/.."
SYNTH=${ABC_SYNTH:-build/abc-synth}
CONFIG=tests/fixtures/qwen2vl-tiny/base/config.json
TOKENIZER=tests/fixtures/qwen2vl-tiny/base/tokenizer.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0; failed=0
ok()  { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { # DESCRIPTION COMMAND... : the command must succeed
    local what=$1; shift
    if "$@"; then ok; else bad "$what"; fi
}

# SHA-256s of the reference Python writer's checkpoint and head adapter for the tiny fixture's config.json.
cat > "$TMP/expected.sha256" <<'EOF'
c54095f1cace7290f503fb3d6d9248495957b61436dd4a990c52c3aacc7e8139  base/model-00001-of-00001.safetensors
b0091cea84cfb3db517a6d6b6cea969fefcc68aa2a6abe19c7e5cdba3423c83a  base/model.safetensors.index.json
e5bc13f94ce6e9eb2e2ae5f746e81c5390a4f3adc5547d35b2f01f058c51d8c8  head/adapter_model.safetensors
13125df3ce8d8065fd41cd3e8a906a995f24a45d2d8a59f8dc79e2717f8d937d  head/adapter_config.json
EOF

if [ ! -x "$SYNTH" ]; then bad "missing $SYNTH"; echo "RESULT $passed $failed"; exit 1; fi

for threads in 1 3; do
    out=$TMP/t$threads
    if "$SYNTH" "$CONFIG" "$out/base" --head-adapter "$out/head" --threads "$threads" >/dev/null; then
        ok
        expect "threads=$threads: files match the Python writer" \
            sh -c "cd '$out' && sha256sum --quiet -c '$TMP/expected.sha256'"
        expect "threads=$threads: config.json copied verbatim" cmp -s "$CONFIG" "$out/base/config.json"
        expect "threads=$threads: tokenizer.json copied" cmp -s "$TOKENIZER" "$out/base/tokenizer.json"
        expect "threads=$threads: preprocessor_config.json is valid" \
            grep -q '"image_processor_type": "Qwen2VLImageProcessor"' "$out/base/preprocessor_config.json"
    else
        bad "abc-synth --threads $threads failed"
    fi
done

# phi3_v: the same rule over the tensors of Phi-3.5-vision's hub layout, at the tiny fixture's sizes.
# SHA-256s from an independent NumPy writer (the reference writer's stream and bf16 rounding, the rule's
# cases by hub name, the embed_tokens case for model.embed_tokens / lm_head only).
PHI_CONFIG=tests/fixtures/phi35v-tiny/config.json
PHI_TOKENIZER=tests/fixtures/phi35v-tiny/tokenizer.json
[ -f "$PHI_TOKENIZER" ] || PHI_TOKENIZER=$TOKENIZER   # only copied; the tensors are what is checked
cat > "$TMP/phi.sha256" <<'EOF'
1ac93bf0ae30944943a0e3279e32d148f557a6ad840553a08c10c659bf63d429  model-00001-of-00001.safetensors
857b22454456e75a34c3402929c8ee0989dba6d80748a51515c656b2c7081858  model.safetensors.index.json
EOF
for threads in 1 3; do
    out=$TMP/phi$threads
    if "$SYNTH" "$PHI_CONFIG" "$out" --tokenizer "$PHI_TOKENIZER" --threads "$threads" >/dev/null; then
        ok
        expect "phi3_v threads=$threads: files match the NumPy writer" sh -c "cd '$out' && sha256sum --quiet -c '$TMP/phi.sha256'"
        expect "phi3_v threads=$threads: Phi3VImageProcessor preprocessor_config.json" \
            grep -q '"image_processor_type": "Phi3VImageProcessor"' "$out/preprocessor_config.json"
    else
        bad "abc-synth phi3_v --threads $threads failed"
    fi
done
# the synthetic phi3_v checkpoint converts
expect "phi3_v synthetic checkpoint converts" sh -c "make -s abc-convert >/dev/null && ./abc-convert '$TMP/phi1' -o '$TMP/phi.abc' --preset vlm2vec-phi3v --quiet"

# qwen2_5_vl CONFIG.json and the preset extras: jina-v4's base + task adapters and ColQwen2.5's adapter
# convert, the task adapters change the embedding, the Matryoshka dims are hidden/16 .. hidden, and
# --extras-only rewrites the same files beside the existing base.
Q25_CONFIG=tests/fixtures/qwen25vl-tiny/config.json
q25=$TMP/q25
CLI=${ABC_CLI:-./abc}
CONV=${ABC_CONVERT:-./abc-convert}
[ -n "${ABC_CLI:-}" ] || make -s abc abc-convert >/dev/null
if "$SYNTH" "$Q25_CONFIG" "$q25/base" --jina "$q25/jina" --colqwen-adapter "$q25/col" --threads 2 >/dev/null; then
    ok
    if "$SYNTH" "$Q25_CONFIG" "$q25/base" --jina "$q25/jina2" --colqwen-adapter "$q25/col2" --extras-only --threads 1 >/dev/null; then
        ok
        for f in jina/base/config.json jina/base/model.safetensors.index.json jina/base/multi_vector_projector.safetensors \
                 jina/adapters/code/adapter_model.safetensors col/adapter_model.safetensors col/adapter_config.json; do
            expect "--extras-only: same $f" cmp -s "$q25/$f" "$q25/${f%%/*}2/${f#*/}"
        done
    else
        bad "abc-synth --extras-only failed"
    fi
    J="$q25/jina"
    expect "jina-v4 extras convert" "$CONV" "$J/base" -o "$q25/j.abc" --preset jina-v4 --quiet \
        --task-adapter retrieval="$J/adapters/retrieval" --task-adapter text-matching="$J/adapters/text-matching" --task-adapter code="$J/adapters/code"
    expect "colqwen2.5 adapter converts" "$CONV" "$q25/base" -o "$q25/c.abc" --preset colqwen2.5 --merge-adapter "$q25/col" --quiet
    expect "jina-v4: Matryoshka dims 2 4 8 16 32" sh -c "'$CLI' info -m '$q25/j.abc' | grep -q 'matryoshka dims: 2 4 8 16 32$'"
    "$CLI" embed -m "$q25/j.abc" --task retrieval --role query --text "a red rocket" >"$q25/r.txt" 2>&1
    "$CLI" embed -m "$q25/j.abc" --task code --role query --text "a red rocket" >"$q25/c.txt" 2>&1
    expect "jina-v4: a 32-d embedding" test "$(wc -w <"$q25/r.txt")" -eq 32
    if cmp -s "$q25/r.txt" "$q25/c.txt"; then bad "jina-v4: tasks retrieval and code give the same embedding"; else ok; fi
    expect "jina-v4 --dim 8" test "$("$CLI" embed -m "$q25/j.abc" --text "a red rocket" --dim 8 2>&1 | wc -w)" -eq 8
    expect "colqwen2.5: 128-float token vectors" test "$("$CLI" embed -m "$q25/c.abc" --text "a red rocket" 2>&1 | awk '{print NF}' | sort -u)" = 128
else
    bad "abc-synth qwen2_5_vl config with --jina / --colqwen-adapter failed"
fi

fails_with() { # MESSAGE-PATTERN EXPECTED-STATUS COMMAND...
    local pattern=$1 status=$2; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" -eq "$status" ] && printf '%s' "$err" | grep -q -- "$pattern"; then ok
    else bad "'$*' gave status $rc and '$err' (want $status, /$pattern/)"; fi
}
fails_with "usage" 2 "$SYNTH"
fails_with "head-adapter is for the Qwen2-VL" 1 "$SYNTH" phi35v "$TMP/x" --head-adapter "$TMP/h"
fails_with "usage" 2 "$SYNTH" qwen2vl-2b
fails_with "for Qwen2.5-VL checkpoints" 1 "$SYNTH" "$CONFIG" "$TMP/x" --jina "$TMP/j"
fails_with "extras-only writes" 1 "$SYNTH" "$Q25_CONFIG" "$TMP/x" --extras-only
fails_with "holds no base checkpoint" 1 "$SYNTH" "$Q25_CONFIG" "$TMP/no-base" --jina "$TMP/j-none" --extras-only
expect "--extras-only without a base writes nothing" test ! -e "$TMP/j-none" -a ! -e "$TMP/no-base"
fails_with "unknown option" 1 "$SYNTH" qwen2vl-2b "$TMP/x" --frobnicate
fails_with "threads" 1 "$SYNTH" qwen2vl-2b "$TMP/x" --threads 0
fails_with "cannot open" 1 "$SYNTH" "$TMP/no-such-config.json" "$TMP/x"
fails_with "cannot open.*no-such-tokenizer" 1 "$SYNTH" "$CONFIG" "$TMP/x" --tokenizer "$TMP/no-such-tokenizer.json"
printf '{"hidden_size": 32.5, "vision_config": {}}' > "$TMP/bad.json"
fails_with '"hidden_size" must be a positive integer' 1 "$SYNTH" "$TMP/bad.json" "$TMP/x"
printf '{"hidden_size": ' > "$TMP/broken.json"
fails_with "broken.json" 1 "$SYNTH" "$TMP/broken.json" "$TMP/x"
: > "$TMP/file"
fails_with "cannot create" 1 "$SYNTH" "$CONFIG" "$TMP/file/sub"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
