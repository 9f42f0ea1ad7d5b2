#!/usr/bin/env bash
# abc (f32 and q8) beside Hugging Face transformers (float32, PyTorch CPU) on the same synthetic
# Qwen2-VL-2B checkpoint, image and instruction, at 1 and 2 threads; checks that the embeddings agree
# (cosine) and prints seconds and ratios (bench/transformers_side_by_side.py does the measuring).
#
#   bench/transformers_side_by_side.sh [VENV]
#
# VENV: a virtualenv (outside the repository) with torch, transformers, Pillow and numpy; without it,
# the python3 on PATH. When those cannot be imported the script says so and exits 0 (a skip).
# Environment:
#   ABC_SBS_CHECKPOINT  an existing synthetic checkpoint (hub layout, read only), else build/abc-synth
#                       writes one to $ABC_SBS_DIR/base (4.2 GB)
#   ABC_SBS_DIR         scratch folder (default build/side-by-side): the converted .abc files (8.9 + 2.5 GB)
#   ABC_SBS_THREADS     thread counts (default 1,2); ABC_SBS_RUNS timed runs after a warm-up (default 2)
# Needs ./abc-convert, build/abc-synth (without ABC_SBS_CHECKPOINT) and build/libabc.so: make all lib build/abc-synth.
set -eu
cd "$(dirname "$0")/.."
VENV=${1:-}
PY=python3
if [ -n "$VENV" ]; then PY=$VENV/bin/python; fi
if ! "$PY" -c 'import torch, transformers, PIL, numpy' 2>/dev/null; then
    echo "SKIP transformers side by side: $PY cannot import torch, transformers, Pillow and numpy (give a virtualenv that has them)"
    exit 0
fi
DIR=${ABC_SBS_DIR:-build/side-by-side}
THREADS=${ABC_SBS_THREADS:-1,2}
RUNS=${ABC_SBS_RUNS:-2}
mkdir -p "$DIR"
for tool in ./abc-convert build/libabc.so; do
    [ -e "$tool" ] || { echo "missing $tool (make all lib build/abc-synth)" >&2; exit 1; }
done
CKPT=${ABC_SBS_CHECKPOINT:-}
if [ -z "$CKPT" ]; then
    CKPT=$DIR/base
    if [ ! -e "$CKPT/.complete" ]; then
        [ -x build/abc-synth ] || { echo "missing build/abc-synth (make build/abc-synth)" >&2; exit 1; }
        rm -rf "$CKPT"
        build/abc-synth qwen2vl-2b "$CKPT"
        touch "$CKPT/.complete"
    fi
fi
for dtype in f32 q8; do
    out=$DIR/vlm2vec-$dtype.abc
    if [ ! -s "$out" ] || [ "$out" -ot ./abc-convert ]; then
        echo "converting $dtype..." >&2
        ./abc-convert "$CKPT" -o "$out" --preset vlm2vec --dtype "$dtype" --quiet
    fi
done
echo "machine: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
echo "abc: $(./abc --version 2>/dev/null | tail -n 1)"
"$PY" bench/transformers_side_by_side.py --checkpoint "$CKPT" --f32 "$DIR/vlm2vec-f32.abc" --q8 "$DIR/vlm2vec-q8.abc" \
    --image tests/fixtures/qwen2vl-2b-synth/images_coffee.png --text "Represent the given image." \
    --threads "$THREADS" --runs "$RUNS" --library build/libabc.so --json "$DIR/side_by_side.json"
