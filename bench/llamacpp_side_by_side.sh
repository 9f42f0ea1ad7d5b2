#!/usr/bin/env bash
# abc (f32 and q8) beside llama.cpp (f32 and q8_0 GGUF, its multimodal CLI) on the same synthetic
# Qwen2-VL-2B checkpoint and the same image size, at 1 and 2 threads: seconds for the vision tower, the
# language model and the whole embedding, and abc's speed-up. llama.cpp is built by you, outside this
# repository (bench/LLAMA_CPP.md says how the numbers in bench/RESULTS.md were taken); nothing of it is
# kept here.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp bench/llamacpp_side_by_side.sh [VENV]
#
# LLAMA_CPP_DIR: a llama.cpp source tree with build/bin/llama-mtmd-cli and build/bin/llama-quantize
#   (cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF && cmake --build build --target
#   llama-mtmd-cli llama-quantize). VENV: a virtualenv with what its convert_hf_to_gguf.py imports
#   (torch, transformers, sentencepiece, numpy) and Pillow. Without either the script says so and
#   exits 0 (a skip).
# Environment: ABC_SBS_CHECKPOINT, ABC_SBS_DIR, ABC_SBS_THREADS, ABC_SBS_RUNS as for
#   bench/transformers_side_by_side.sh (bench/side_by_side_setup.sh); the GGUF files go to
#   $ABC_SBS_DIR/gguf (6.2 + 2.7 GB in f32, 1.6 + 0.7 GB in q8_0).
#
# What differs between the two: llama.cpp resizes the image with its own code (600x400 becomes the
# same 21 x 14 merged tokens as in transformers and abc) and wraps the prompt in a chat template (309
# tokens against abc's 299, vision_start/end included). abc is timed by `abc bench -m` on a synthetic
# image of the same size (the work does not depend on the pixels). llama.cpp's embedding time is its
# context's prompt-evaluation time (from the first prompt token to the last, the image's encoding
# included); its vision time is the CLI's "batch encoding" time; neither includes loading the model.
set -eu
cd "$(dirname "$0")/.."
VENV=${1:-}
PY=python3
if [ -n "$VENV" ]; then PY=$VENV/bin/python; fi
LLAMA=${LLAMA_CPP_DIR:-}
if [ -z "$LLAMA" ] || [ ! -x "$LLAMA/build/bin/llama-mtmd-cli" ] || [ ! -x "$LLAMA/build/bin/llama-quantize" ]; then
    echo "SKIP llama.cpp side by side: set LLAMA_CPP_DIR to a llama.cpp tree built with llama-mtmd-cli and llama-quantize"
    exit 0
fi
if ! "$PY" -c 'import torch, transformers, sentencepiece, numpy, PIL' 2>/dev/null; then
    echo "SKIP llama.cpp side by side: $PY cannot import torch, transformers, sentencepiece, numpy and Pillow (convert_hf_to_gguf.py needs the first four)"
    exit 0
fi
. bench/side_by_side_setup.sh
sbs_setup ./abc ./abc-convert
mkdir -p "$DIR/gguf"
G=$DIR/gguf
convert() { # OUT [convert_hf_to_gguf.py options]
    local out=$1
    shift
    [ -s "$out" ] && return 0
    echo "converting $(basename "$out") for llama.cpp..." >&2
    "$PY" "$LLAMA/convert_hf_to_gguf.py" "$CKPT" "$@" --outfile "$out.tmp" >"$out.log" 2>&1 || { tail -n 5 "$out.log" >&2; exit 1; }
    mv "$out.tmp" "$out"
}
convert "$G/model-f32.gguf" --outtype f32
convert "$G/mmproj-f32.gguf" --mmproj --outtype f32
convert "$G/mmproj-q8_0.gguf" --mmproj --outtype q8_0
if [ ! -s "$G/model-q8_0.gguf" ]; then
    "$LLAMA/build/bin/llama-quantize" "$G/model-f32.gguf" "$G/model-q8_0.gguf.tmp" q8_0 >"$G/quantize.log" 2>&1 ||
        { tail -n 5 "$G/quantize.log" >&2; exit 1; }
    mv "$G/model-q8_0.gguf.tmp" "$G/model-q8_0.gguf"
fi

# the image's size after Qwen2-VL's resize (each side rounded to a multiple of 28; this image is well
# inside the pixel budget), which abc bench takes as --image WxH
SIZE=$("$PY" -c 'import sys; from PIL import Image; w, h = Image.open(sys.argv[1]).size
print("%dx%d" % (round(w / 28) * 28, round(h / 28) * 28))' "$IMAGE")

echo "llama.cpp: $("$LLAMA/build/bin/llama-mtmd-cli" --version 2>&1 | grep -m1 -i 'version' || echo "$LLAMA")"
echo "image $IMAGE (abc: ${SIZE}), instruction \"$TEXT\"; best of $RUNS runs"

# llama.cpp: one process per run; prints "VISION_S EMBED_S TOKENS" of the best run (least embed time)
llama_run() { # DTYPE THREADS
    local best="" line
    for _ in $(seq "$RUNS"); do
        local log=$G/run.log
        "$LLAMA/build/bin/llama-mtmd-cli" -m "$G/model-$1.gguf" --mmproj "$G/mmproj-$1.gguf" --image "$IMAGE" \
            -p "$TEXT" -n 1 -t "$2" --temp 0 --chat-template chatml -lv 4 >"$log" 2>&1 </dev/null ||
            { tail -n 5 "$log" >&2; exit 1; }
        local vision embed tokens
        vision=$(sed -n 's/.*batch encoding done in \([0-9]*\) ms.*/\1/p' "$log" | head -n 1)
        embed=$(sed -n 's/.*prompt eval time = *\([0-9.]*\) ms \/ *\([0-9]*\) tokens.*/\1/p' "$log" | head -n 1)
        tokens=$(sed -n 's/.*prompt eval time = *[0-9.]* ms \/ *\([0-9]*\) tokens.*/\1/p' "$log" | head -n 1)
        if [ -z "$vision" ] || [ -z "$embed" ]; then echo "llama.cpp's timings not found in $log" >&2; exit 1; fi
        line=$(awk -v v="$vision" -v e="$embed" -v t="$tokens" 'BEGIN { printf "%.3f %.3f %d", v / 1000, e / 1000, t }')
        if [ -z "$best" ] || awk -v a="${line#* }" -v b="${best#* }" 'BEGIN { exit !(a + 0 < b + 0) }'; then best=$line; fi
    done
    echo "$best"
}
# abc: abc bench -m FILE on an image of the same size; prints "VISION_S EMBED_S TOKENS"
abc_run() { # DTYPE THREADS
    ./abc bench -m "$DIR/vlm2vec-$1.abc" --image "$SIZE" --tokens 5 --threads "$2" --runs "$RUNS" --json -o "$G/abc.json" >/dev/null
    "$PY" -c 'import json, sys; r = json.load(open(sys.argv[1])); x = r["results"][0]
print("%.3f %.3f %d" % (x["vision_s"], x["embed_s"], r["run"]["sequence_tokens"]))' "$G/abc.json"
}

declare -A T
for n in ${THREADS//,/ }; do
    T[abc_f32_$n]=$(abc_run f32 "$n")
    T[abc_q8_$n]=$(abc_run q8 "$n")
    T[llama_f32_$n]=$(llama_run f32 "$n")
    T[llama_q8_0_$n]=$(llama_run q8_0 "$n")
done
echo
echo "| threads | program | weights | tokens | vision s | language model s | embed s | embed / abc f32 | embed / abc q8 |"
echo "|--:|---|---|--:|--:|--:|--:|--:|--:|"
for n in ${THREADS//,/ }; do
    for key in abc_f32 abc_q8 llama_f32 llama_q8_0; do
        read -r vision embed tokens <<<"${T[${key}_$n]}"
        read -r _ abc_f32 _ <<<"${T[abc_f32_$n]}"
        read -r _ abc_q8 _ <<<"${T[abc_q8_$n]}"
        case $key in
            abc_*) prog=abc ;;
            *) prog=llama.cpp ;;
        esac
        awk -v n="$n" -v p="$prog" -v w="${key#*_}" -v t="$tokens" -v v="$vision" -v e="$embed" -v f="$abc_f32" -v q="$abc_q8" \
            'BEGIN { printf "| %d | %s | %s | %d | %.2f | %.2f | %.2f | %.2fx | %.2fx |\n", n, p, w, t, v, e - v, e, e / f, e / q }'
    done
done
