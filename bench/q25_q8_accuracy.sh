#!/usr/bin/env bash
# q8 against f32 on the synthetic Qwen2.5-VL-3B for presets jina-v4, colqwen2.5 and nomic (bench/RESULTS.md,
# "Qwen2.5-VL presets at full size"): converts each preset in f32 and q8, embeds the same inputs with both
# and prints the f32-vs-q8 cosines (dense rows: cosine; multi-vector: worst and mean per-token cosine and
# the relative difference of a query's MaxSim score against a document).
#   bench/q25_q8_accuracy.sh DIR [--threads N] [--keep-q8 OUTDIR] [PRESET...]
# DIR holds what `build/abc-synth qwen25vl-3b DIR/base --jina DIR/jina --colqwen-adapter DIR/colqwen` writes
# (10 s, 8 GB). PRESET: jina-v4, colqwen2.5, nomic (default: all three, in that order). Needs about 15 GB
# of free disk for one f32 file at a time; each f32 file is deleted after its embeddings, each q8 file too
# unless --keep-q8 (for build/bench_model). Run from the repository root after `make abc abc-convert`;
# the comparison uses Python with numpy (Debian's /usr/bin/python3 has it).
set -u
DIR=${1:-}
[ -n "$DIR" ] && shift
THREADS=2
KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --keep-q8) KEEP=$2; shift 2 ;;
    *) break ;;
    esac
done
PRESETS=("$@")
[ ${#PRESETS[@]} -eq 0 ] && PRESETS=(jina-v4 colqwen2.5 nomic)

skip() { echo "SKIP q25 q8 accuracy: $1"; exit 0; }
[ -n "$DIR" ] || { echo "usage: bench/q25_q8_accuracy.sh DIR [--threads N] [--keep-q8 OUTDIR] [PRESET...]" >&2; exit 2; }
for d in base jina/base jina/adapters/retrieval colqwen; do
    [ -d "$DIR/$d" ] || skip "$DIR/$d is absent (build/abc-synth qwen25vl-3b $DIR/base --jina $DIR/jina --colqwen-adapter $DIR/colqwen)"
done
PY=""
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || skip "no Python with numpy"
if [ ! -x ./abc ] || [ ! -x ./abc-convert ]; then echo "run from the repository root after 'make abc abc-convert'" >&2; exit 2; fi

OUT=build/q25acc
mkdir -p "$OUT"
trap 'rm -f "$OUT"/*.abc' EXIT
IMG=$(pwd)/tests/fixtures/qwen2vl-2b-synth
QUERY="What is the person holding?"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
ok() { "$@" || { echo "FAILED: $*" >&2; exit 1; }; }

# inputs per preset: one JSON line each (ids name the rows in the report)
inputs() {
    local t
    case "$1" in
    jina-v4)
        for t in retrieval text-matching code; do
            echo "{\"id\": \"$t image doc\", \"image\": \"$IMG/images_astronaut.png\", \"task\": \"$t\"}"
            echo "{\"id\": \"$t text query\", \"text\": \"$QUERY\", \"role\": \"query\", \"task\": \"$t\"}"
            echo "{\"id\": \"$t text passage\", \"text\": \"An astronaut holds a flag on the moon.\", \"role\": \"candidate\", \"task\": \"$t\"}"
        done
        echo "{\"id\": \"retrieval image doc dim 128\", \"image\": \"$IMG/images_astronaut.png\", \"task\": \"retrieval\", \"dim\": 128}"
        echo "{\"id\": \"retrieval text query dim 128\", \"text\": \"$QUERY\", \"role\": \"query\", \"task\": \"retrieval\", \"dim\": 128}"
        echo "{\"id\": \"retrieval text query dim 512\", \"text\": \"$QUERY\", \"role\": \"query\", \"task\": \"retrieval\", \"dim\": 512}" ;;
    nomic)
        echo "{\"id\": \"image doc\", \"image\": \"$IMG/images_coffee.png\", \"role\": \"candidate\"}"
        echo "{\"id\": \"text query\", \"text\": \"$QUERY\", \"role\": \"query\"}" ;;
    esac
}
# multi-vector inputs: the document first, then the query
mv_inputs() {
    echo "{\"id\": \"image doc\", \"image\": \"$IMG/images_astronaut.png\"${1:+, \"task\": \"$1\"}}"
    echo "{\"id\": \"text query\", \"text\": \"$QUERY\", \"role\": \"query\"${1:+, \"task\": \"$1\"}}"
}

# convert PRESET DTYPE OUTFILE
convert() {
    local p=$1 d=$2 f=$3 t
    t=$(now)
    case "$p" in
    jina-v4) ok ./abc-convert "$DIR/jina/base" -o "$f" --preset jina-v4 --dtype "$d" --quiet --threads "$THREADS" \
        --task-adapter retrieval="$DIR/jina/adapters/retrieval" --task-adapter text-matching="$DIR/jina/adapters/text-matching" \
        --task-adapter code="$DIR/jina/adapters/code" ;;
    colqwen2.5) ok ./abc-convert "$DIR/base" -o "$f" --preset colqwen2.5 --dtype "$d" --quiet --threads "$THREADS" \
        --merge-adapter "$DIR/colqwen" ;;
    nomic) ok ./abc-convert "$DIR/base" -o "$f" --preset nomic --dtype "$d" --quiet --threads "$THREADS" ;;
    *) echo "unknown preset $p" >&2; exit 2 ;;
    esac
    echo "  $p $d: converted in $(since "$t") s, $(wc -c <"$f") bytes" >&2
}

# embed PRESET DTYPE FILE: writes $OUT/PRESET-DTYPE{,-mv}.npy
embed() {
    local p=$1 d=$2 f=$3 t
    t=$(now)
    if [ "$p" != colqwen2.5 ]; then
        inputs "$p" >"$OUT/$p.jsonl"
        ok ./abc embed -m "$f" --batch "$OUT/$p.jsonl" -o "$OUT/$p-$d.npy" --threads "$THREADS" 2>/dev/null
    fi
    case "$p" in
    jina-v4) mv_inputs retrieval >"$OUT/$p-mv.jsonl"
        ok ./abc embed -m "$f" --batch "$OUT/$p-mv.jsonl" --multi-vector -o "$OUT/$p-$d-mv.npy" --threads "$THREADS" 2>/dev/null ;;
    colqwen2.5) mv_inputs "" >"$OUT/$p-mv.jsonl"
        ok ./abc embed -m "$f" --batch "$OUT/$p-mv.jsonl" -o "$OUT/$p-$d-mv.npy" --threads "$THREADS" 2>/dev/null ;;
    esac
    echo "  $p $d: embedded in $(since "$t") s" >&2
}

echo "| preset | output | f32 vs q8 |"
echo "|---|---|---|"
for p in "${PRESETS[@]}"; do
    for d in f32 q8; do
        f=$OUT/$p-$d.abc
        convert "$p" "$d" "$f"
        embed "$p" "$d" "$f"
        if [ "$d" = q8 ] && [ -n "$KEEP" ]; then mkdir -p "$KEEP" && mv "$f" "$KEEP/"; else rm -f "$f"; fi
    done
    ok "$PY" - "$OUT" "$p" <<'EOF'
import os, sys
import numpy as np
out, p = sys.argv[1], sys.argv[2]
def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
dense = os.path.join(out, p + "-f32.npy")
if os.path.exists(dense):
    a, b = np.load(dense), np.load(os.path.join(out, p + "-q8.npy"))
    ids = open(os.path.join(out, p + "-f32.ids")).read().split("\n")
    for i in range(a.shape[0]):
        n = int(np.count_nonzero(a[i]))  # a Matryoshka row is zero past its dim
        print(f"| {p} | {ids[i]} ({n}-d) | {cos(a[i][:n], b[i][:n]):.6f} |")
mv = os.path.join(out, p + "-f32-mv.npy")
if os.path.exists(mv):
    a, b = np.load(mv), np.load(os.path.join(out, p + "-q8-mv.npy"))
    off = np.load(os.path.join(out, p + "-f32-mv.offsets.npy"))
    assert (off == np.load(os.path.join(out, p + "-q8-mv.offsets.npy"))).all(), "token counts differ"
    names = ["image doc", "text query"]
    for i in range(len(off) - 1):
        c = [cos(a[r], b[r]) for r in range(off[i], off[i + 1])]
        print(f"| {p} | multi-vector {names[i]} ({off[i + 1] - off[i]} tokens × {a.shape[1]}) | worst {min(c):.6f}, mean {np.mean(c):.6f} |")
    def maxsim(v):  # the score and, per query token, the document token it picks
        sim = v[off[1]:off[2]] @ v[off[0]:off[1]].T
        return float(sim.max(axis=1).sum()), sim.argmax(axis=1)
    (s32, k32), (s8, k8) = maxsim(a), maxsim(b)
    print(f"| {p} | MaxSim(query, doc) | f32 {s32:.5f}, q8 {s8:.5f}: difference {abs(s8 - s32):.5f}, relative {abs(s8 - s32) / abs(s32):.2e}; "
          f"{int((k32 == k8).sum())} of {len(k32)} query tokens pick the same document token |")
EOF
done
