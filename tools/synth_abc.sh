#!/usr/bin/env bash
# tools/synth_abc.sh 2b|7b PRESET DTYPE — makes sure the synthetic checkpoint (SPEC 10) of that size and
# its conversion to PRESET (abc|vlm2vec) with --dtype DTYPE exist under build/synth-SIZE/, creating what
# is missing, and prints the .abc path as the last line of stdout. For abc, the synthetic head adapter
# (mlp_head, inert LoRA) is merged. Used by `make bench-model` / `make bench-model-7b`.
# Disk: 2b ≈ 4.4 GB + the .abc (f32 8.9 GB, bf16 4.4 GB); 7b ≈ 16.6 GB + the .abc (bf16 16.2 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:?usage: tools/synth_abc.sh 2b|7b PRESET DTYPE}
PRESET=${2:?usage: tools/synth_abc.sh 2b|7b PRESET DTYPE}
DTYPE=${3:?usage: tools/synth_abc.sh 2b|7b PRESET DTYPE}
case $SIZE in 2b|7b) ;; *) echo "synth_abc.sh: size must be 2b or 7b" >&2; exit 2 ;; esac
case $PRESET in abc|vlm2vec) ;; *) echo "synth_abc.sh: preset must be abc or vlm2vec" >&2; exit 2 ;; esac
DIR=build/synth-$SIZE
OUT=$DIR/$PRESET-$DTYPE.abc

# .complete is written only after abc-synth succeeded (test_full_2b.sh writes it too, after checking hashes)
if [ ! -f "$DIR/.complete" ]; then
    rm -rf "$DIR/base" "$DIR/head_adapter" "$DIR"/*.abc
    mkdir -p "$DIR"
    build/abc-synth "qwen2vl-$SIZE" "$DIR/base" --head-adapter "$DIR/head_adapter" >&2
    touch "$DIR/.complete"
fi
if [ ! -s "$OUT" ] || [ "$OUT" -ot "$DIR/.complete" ] || [ "$OUT" -ot ./abc-convert ]; then
    adapter=()
    [ "$PRESET" = abc ] && adapter=(--merge-adapter "$DIR/head_adapter")
    start=$(date +%s)
    ./abc-convert "$DIR/base" -o "$OUT" --preset "$PRESET" --dtype "$DTYPE" "${adapter[@]}" >&2
    echo "converted $OUT in $(($(date +%s) - start)) s" >&2
fi
echo "$OUT"
