#!/usr/bin/env bash
# tools/synth_abc.sh 2b|7b|phi35v PRESET DTYPE — makes sure the synthetic checkpoint of that size
# (docs/testing.md#synthetic-full-size-checkpoints) and its conversion to PRESET (abc|vlm2vec for 2b/7b, vlm2vec-phi3v for phi35v) with --dtype DTYPE exist
# under build/synth-SIZE/, creating what is missing, and prints the .abc path as the last line of stdout.
# For abc, the synthetic head adapter (mlp_head, inert LoRA) is merged. Used by `make bench-model`,
# `make bench-model-7b` and `make bench-model-phi3v`.
# Disk: 2b ≈ 4.4 GB + the .abc (f32 8.9 GB, bf16 4.4 GB); 7b ≈ 16.6 GB + the .abc (bf16 16.2 GB);
# phi35v ≈ 8.3 GB + the .abc (bf16 8.3 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:?usage: tools/synth_abc.sh 2b|7b|phi35v PRESET DTYPE}
PRESET=${2:?usage: tools/synth_abc.sh 2b|7b|phi35v PRESET DTYPE}
DTYPE=${3:?usage: tools/synth_abc.sh 2b|7b|phi35v PRESET DTYPE}
case $SIZE/$PRESET in
    2b/abc|2b/vlm2vec|7b/abc|7b/vlm2vec) SYNTH=qwen2vl-$SIZE HEAD=(--head-adapter "build/synth-$SIZE/head_adapter") ;;
    phi35v/vlm2vec-phi3v) SYNTH=phi35v HEAD=() ;;
    *) echo "synth_abc.sh: size/preset must be 2b or 7b with abc or vlm2vec, or phi35v with vlm2vec-phi3v" >&2; exit 2 ;;
esac
DIR=build/synth-$SIZE
OUT=$DIR/$PRESET-$DTYPE.abc

# .complete is written only after abc-synth succeeded (test_full_2b.sh writes it too, after checking hashes);
# .started marks a generation of ours that stopped half-way: only then are the leftovers removed, never
# files that someone else put in $DIR.
if [ ! -f "$DIR/.complete" ]; then
    if [ -f "$DIR/.started" ]; then
        rm -rf "$DIR/base" "$DIR/head_adapter" "$DIR"/*.abc
    elif [ -e "$DIR/base" ] || [ -e "$DIR/head_adapter" ] || compgen -G "$DIR/*.abc" >/dev/null; then
        echo "synth_abc.sh: $DIR holds files this script did not finish writing; remove them, or touch $DIR/.complete to use them" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    touch "$DIR/.started"
    build/abc-synth "$SYNTH" "$DIR/base" "${HEAD[@]}" >&2
    touch "$DIR/.complete"
    rm -f "$DIR/.started"
fi
if [ ! -s "$OUT" ] || [ "$OUT" -ot "$DIR/.complete" ] || [ "$OUT" -ot ./abc-convert ]; then
    adapter=()
    [ "$PRESET" = abc ] && adapter=(--merge-adapter "$DIR/head_adapter")
    start=$(date +%s)
    ./abc-convert "$DIR/base" -o "$OUT" --preset "$PRESET" --dtype "$DTYPE" "${adapter[@]}" >&2
    echo "converted $OUT in $(($(date +%s) - start)) s" >&2
fi
echo "$OUT"
