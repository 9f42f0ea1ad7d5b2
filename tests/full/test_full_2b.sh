#!/usr/bin/env bash
# Full-size parity (make test-full): the synthetic Qwen2-VL-2B checkpoint of docs/testing.md#synthetic-full-size-checkpoints, rebuilt by
# build/abc-synth, converted by ./abc-convert, and run through `./abc embed --dump` on the two cases of
# tests/fixtures/qwen2vl-2b-synth/ (transformers float32 outputs). Checks, per case, input_ids and
# position_ids exactly and vision_embeds / last_hidden / embedding within the tolerances of docs/testing.md#tolerances.
#
# Needs ~4.5 GB of disk for the checkpoint plus the converted files, in build/synth-2b (kept between runs:
# the checkpoint is regenerated only when its SHA-256s do not match tests/full/synth-2b.sha256, the
# .abc files only when missing or older than ./abc-convert).
# Environment: ABC_FULL_THREADS (default: all cores), ABC_FULL_DTYPE (converter --dtype, default f32),
# ABC_FULL_DIR (default build/synth-2b).
# Prints `RESULT passed failed` last and exits non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."

FIX=tests/fixtures/qwen2vl-2b-synth
DIR=${ABC_FULL_DIR:-build/synth-2b}
THREADS=${ABC_FULL_THREADS:-$(nproc 2>/dev/null || echo 4)}
DTYPE=${ABC_FULL_DTYPE:-f32}
CMP=build/tool_npycmp
passed=0; failed=0
T_START=$(date +%s.%N)

ok()   { passed=$((passed + 1)); echo "ok   $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL $*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
finish() {
    echo "wall time $(elapsed "$T_START") s"
    echo "RESULT $passed $failed"
    exit $((failed > 0))
}

for tool in build/abc-synth ./abc-convert ./abc "$CMP"; do
    if [ ! -x "$tool" ]; then bad "missing $tool (run: make all build/abc-synth $CMP)"; finish; fi
done

# 1. the checkpoint, bit-identical to the reference Python writer's (hashes recorded from it)
mkdir -p "$DIR"
if (cd "$DIR" && sha256sum --quiet -c "$OLDPWD/tests/full/synth-2b.sha256" >/dev/null 2>&1); then
    ok "synthetic 2B checkpoint present with the expected SHA-256s"
    touch "$DIR/.complete"
else
    t=$(date +%s.%N)
    rm -rf "$DIR/.complete" "$DIR/base" "$DIR/head_adapter" "$DIR"/*.abc
    if ! build/abc-synth qwen2vl-2b "$DIR/base" --head-adapter "$DIR/head_adapter"; then
        bad "abc-synth failed"; finish
    fi
    echo "generated the checkpoint in $(elapsed "$t") s"
    if (cd "$DIR" && sha256sum --quiet -c "$OLDPWD/tests/full/synth-2b.sha256"); then
        ok "abc-synth output matches the Python writer's SHA-256s"
        touch "$DIR/.complete"  # tools/synth_abc.sh (make bench-model) reuses this checkpoint
    else
        bad "abc-synth output differs from the Python writer's SHA-256s"; finish
    fi
fi

# 2. conversion (abc: the head adapter merged — its LoRA is inert, B = 0 — and mlp_head taken from it)
convert() { # OUT PRESET [ARGS...]
    local out=$1 preset=$2; shift 2
    if [ -s "$out" ] && [ "$out" -nt ./abc-convert ] && [ "$out" -nt "$DIR/base/model-00001-of-00003.safetensors" ]; then
        ok "$out up to date"; return 0
    fi
    local t; t=$(date +%s.%N)
    if ./abc-convert "$DIR/base" -o "$out" --preset "$preset" --dtype "$DTYPE" "$@"; then
        ok "converted $out in $(elapsed "$t") s"
    else
        rm -f "$out"; bad "abc-convert --preset $preset"; return 1
    fi
}
convert "$DIR/abc-$DTYPE.abc" abc --merge-adapter "$DIR/head_adapter"
convert "$DIR/vlm2vec-$DTYPE.abc" vlm2vec

# 3. the two cases
run_case() { # NAME MODEL ROLE IMAGE TEXT
    local name=$1 model=$2 role=$3 image=$4 text=$5
    local ref=$FIX/$name out=$DIR/out/$name
    if [ ! -s "$model" ]; then bad "$name: no model file $model"; return; fi
    rm -rf "$out"; mkdir -p "$out"
    local t; t=$(date +%s.%N)
    if ! ./abc embed -m "$model" --image "$FIX/$image" --text "$text" --role "$role" \
            --threads "$THREADS" --dump "$out" -o "$out/embedding_cli.npy"; then
        bad "$name: abc embed failed"; return
    fi
    echo "$name: abc embed took $(elapsed "$t") s with $THREADS threads"
    check() { # STAGE TOLERANCE-ARGS...
        local stage=$1; shift
        if [ ! -f "$out/$stage.npy" ]; then bad "$name/$stage: not dumped"; return; fi
        if "$CMP" --label "$name/$stage" "$@" "$out/$stage.npy" "$ref/$stage.npy"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
    }
    check input_ids --exact
    check position_ids --exact
    check vision_embeds --rel 1e-4
    check last_hidden --rel 5e-4
    check embedding --cos 0.99999 --abs 1e-4
    # -o and --dump must agree on the embedding
    if cmp -s "$out/embedding.npy" "$out/embedding_cli.npy"; then ok "$name: -o equals the dumped embedding"
    else bad "$name: -o differs from the dumped embedding"; fi
}
run_case abc_query_astronaut_2b "$DIR/abc-$DTYPE.abc" query images_astronaut.png "What is the person holding?"
run_case vlm2vec_query_coffee_2b "$DIR/vlm2vec-$DTYPE.abc" query images_coffee.png "Represent the given image."

finish
