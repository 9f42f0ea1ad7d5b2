#!/usr/bin/env bash
# abc (f32 and q8) beside Hugging Face transformers (float32, PyTorch CPU) on the same synthetic
# Qwen2-VL-2B checkpoint, image and instruction, at 1 and 2 threads; checks that the embeddings agree
# (cosine) and prints seconds and ratios (bench/transformers_side_by_side.py does the measuring).
#
#   bench/transformers_side_by_side.sh [VENV]
#
# VENV: a virtualenv (outside the repository) with torch, transformers, Pillow and numpy; without it,
# the python3 on PATH. When those cannot be imported the script says so and exits 0 (a skip).
# Environment: ABC_SBS_CHECKPOINT, ABC_SBS_DIR, ABC_SBS_THREADS, ABC_SBS_RUNS (bench/side_by_side_setup.sh);
# the timed runs follow a warm-up.
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
. bench/side_by_side_setup.sh
sbs_setup ./abc ./abc-convert build/libabc.so
"$PY" bench/transformers_side_by_side.py --checkpoint "$CKPT" --f32 "$DIR/vlm2vec-f32.abc" --q8 "$DIR/vlm2vec-q8.abc" \
    --image "$IMAGE" --text "$TEXT" \
    --threads "$THREADS" --runs "$RUNS" --library build/libabc.so --json "$DIR/side_by_side.json"
