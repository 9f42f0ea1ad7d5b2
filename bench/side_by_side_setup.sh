# shellcheck shell=bash disable=SC2034  # the settings are read by the scripts that source this
# Sourced by bench/transformers_side_by_side.sh and bench/llamacpp_side_by_side.sh (from the repository
# root): the settings both take from the environment, the synthetic Qwen2-VL-2B checkpoint and its abc
# files, and the machine line. `sbs_setup TOOL...` first checks that each TOOL (built by make) exists.
#   ABC_SBS_CHECKPOINT  an existing synthetic checkpoint (hub layout, read only), else build/abc-synth
#                       writes one to $ABC_SBS_DIR/base (4.2 GB)
#   ABC_SBS_DIR         scratch folder (default build/side-by-side): the converted .abc files (8.9 + 2.5 GB)
#   ABC_SBS_THREADS     thread counts (default 1,2); ABC_SBS_RUNS timed runs (default 2)
DIR=${ABC_SBS_DIR:-build/side-by-side}
THREADS=${ABC_SBS_THREADS:-1,2}
RUNS=${ABC_SBS_RUNS:-2}
IMAGE=tests/fixtures/qwen2vl-2b-synth/images_coffee.png
TEXT="Represent the given image."

sbs_setup() { # TOOL...: sets CKPT and makes $DIR/vlm2vec-{f32,q8}.abc
    local tool dtype out
    for tool in "$@"; do
        if [ ! -e "$tool" ]; then echo "missing $tool (make all lib build/abc-synth)" >&2; exit 1; fi
    done
    mkdir -p "$DIR"
    CKPT=${ABC_SBS_CHECKPOINT:-$DIR/base}
    if [ -z "${ABC_SBS_CHECKPOINT:-}" ] && [ ! -e "$CKPT/.complete" ]; then
        if [ ! -x build/abc-synth ]; then echo "missing build/abc-synth (make build/abc-synth)" >&2; exit 1; fi
        rm -rf "$CKPT"
        build/abc-synth qwen2vl-2b "$CKPT"
        touch "$CKPT/.complete"
    fi
    for dtype in f32 q8; do
        out=$DIR/vlm2vec-$dtype.abc
        if [ ! -s "$out" ] || [ "$out" -ot ./abc-convert ]; then
            echo "converting $dtype for abc..." >&2
            ./abc-convert "$CKPT" -o "$out" --preset vlm2vec --dtype "$dtype" --quiet
        fi
    done
    echo "machine: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    echo "abc: $(./abc --version 2>/dev/null | tail -n 1)"
}
