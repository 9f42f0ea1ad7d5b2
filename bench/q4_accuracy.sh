#!/usr/bin/env bash
# The 4-bit accuracy table (bench/RESULTS.md, "q4"): per storage type / mixed-precision policy, the file
# size and the worst embedding cosine against the float32 reference of every fixture case (Qwen2-VL tiny:
# both presets, 8 cases; Phi-3.5-V tiny: 4 cases) and, with --2b DIR (a synthetic Qwen2-VL-2B checkpoint,
# DIR/base + DIR/head_adapter from `abc-synth qwen2vl-2b`), of both full-size synthetic cases with their
# conversion and embedding times.
#   bench/q4_accuracy.sh [--2b DIR] [--threads N] [CONFIG...]
# CONFIG is DTYPE or DTYPE:POLICY (abc-convert --dtype / --policy), e.g. q4:text=q4,embed=q8. Converted
# files go to build/q4acc (removed at the end). Run from the repository root after
# `make abc abc-convert build/tool_npycmp`.
set -u
TWO_B=""
THREADS=2
while [ $# -gt 0 ]; do
    case "$1" in
    --2b) TWO_B=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) break ;;
    esac
done
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
    CONFIGS=(f32 q8 q4 "q4:attn=q4" "q4:vision=q4")
fi
CMP=build/tool_npycmp
OUT=build/q4acc
mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT
QT=tests/fixtures/qwen2vl-tiny
PT=tests/fixtures/phi35v-tiny
IMG=tests/fixtures/images
TWO_FIX=tests/fixtures/qwen2vl-2b-synth

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
cosine() { "$CMP" "$1" "$2" 2>&1 | sed -n 's/.*cos=\([0-9.e+-]*\).*/\1/p'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print b; else if (b == "" || a + 0 < b + 0) print a; else print b }'; }
img() { if [ -e "$IMG/$1" ]; then echo "$IMG/$1"; else echo "$IMG/images_$1"; fi; }

# convert SRC OUT CONFIG ARGS...
convert() {
    local src=$1 out=$2 cfg=$3; shift 3
    local dtype=${cfg%%:*} policy=""
    [ "$cfg" != "$dtype" ] && policy=${cfg#*:}
    ./abc-convert "$src" -o "$out" --dtype "$dtype" ${policy:+--policy "$policy"} --quiet "$@"
}

# case MODEL REF ARGS...: prints the cosine
run_case() {
    local model=$1 ref=$2; shift 2
    ./abc embed -m "$model" "$@" -o "$OUT/e.npy" 2>/dev/null && cosine "$OUT/e.npy" "$ref"
}

echo "| config | tiny qwen2vl bytes | worst cos (8 cases) | tiny phi3v bytes | worst cos (4 cases) |${TWO_B:+ 2B abc bytes | 2B vlm2vec bytes | worst cos (2 cases) | abc embed s | vlm2vec embed s |}"
echo "|---|---|---|---|---|${TWO_B:+---|---|---|---|---|}"
for cfg in "${CONFIGS[@]}"; do
    convert $QT/base "$OUT/abc.abc" "$cfg" --preset abc --merge-adapter $QT/abc_pretrain_adapter \
        --query-adapter $QT/abc_instruct_adapter || { echo "| $cfg | convert failed |"; continue; }
    convert $QT/base "$OUT/vlm.abc" "$cfg" --preset vlm2vec --merge-adapter $QT/vlm2vec_dora_adapter || continue
    convert $PT "$OUT/phi.abc" "$cfg" --preset vlm2vec-phi3v || continue
    q=""
    R=$QT/cases
    q=$(min "$q" "$(run_case "$OUT/abc.abc" $R/abc_query_astronaut/embedding.npy --image "$(img astronaut.png)" --text "What is the person holding?" --role query)")
    q=$(min "$q" "$(run_case "$OUT/abc.abc" $R/abc_query_rocket_bang/embedding.npy --image "$(img rocket.jpg)" --text "what color is the sky!" --role query)")
    q=$(min "$q" "$(run_case "$OUT/abc.abc" $R/abc_cand_image_coffee/embedding.npy --image "$(img coffee.png)" --role candidate)")
    q=$(min "$q" "$(run_case "$OUT/abc.abc" $R/abc_cand_image_camera/embedding.npy --image "$(img camera.png)" --role candidate)")
    q=$(min "$q" "$(run_case "$OUT/abc.abc" $R/abc_cand_text/embedding.npy --text "a cup of coffee on a wooden table" --role candidate)")
    q=$(min "$q" "$(run_case "$OUT/vlm.abc" $R/vlm2vec_query_astronaut/embedding.npy --image "$(img astronaut.png)" --prompt "<|image_pad|> Represent the given image with the following question: What is the person holding?" --role query)")
    q=$(min "$q" "$(run_case "$OUT/vlm.abc" $R/vlm2vec_query_coffee_prog/embedding.npy --image "$(img coffee_420_prog.jpg)" --prompt "<|image_pad|> Represent the given image." --role query)")
    q=$(min "$q" "$(run_case "$OUT/vlm.abc" $R/vlm2vec_text/embedding.npy --text "A person in a space suit" --role candidate)")
    p=""
    R=$PT/runtime
    p=$(min "$p" "$(run_case "$OUT/phi.abc" $R/txt_cat_dog__embedding.npy --text "A cat and a dog")")
    p=$(min "$p" "$(run_case "$OUT/phi.abc" $R/txt_find_caption__embedding.npy --text "Find me an everyday image that matches the given caption: A cat and a tiger.")")
    p=$(min "$p" "$(run_case "$OUT/phi.abc" $R/img_rocket_qry__embedding.npy --image $PT/rocket_portrait.png --text "Represent the given image with the following question: What is in the image")")
    p=$(min "$p" "$(run_case "$OUT/phi.abc" $R/img_page_tgt__embedding.npy --image $PT/page_hd.png --text "Represent the given image.")")
    row="| $cfg | $(wc -c <"$OUT/abc.abc") | $q | $(wc -c <"$OUT/phi.abc") | $p |"
    if [ -n "$TWO_B" ]; then
        t=$(now)
        convert "$TWO_B/base" "$OUT/2b-abc.abc" "$cfg" --preset abc --merge-adapter "$TWO_B/head_adapter" --threads "$THREADS" || continue
        convert "$TWO_B/base" "$OUT/2b-vlm.abc" "$cfg" --preset vlm2vec --threads "$THREADS" || continue
        echo "  ($cfg: both 2B conversions $(since "$t") s)" >&2
        t=$(now)
        c1=$(run_case "$OUT/2b-abc.abc" $TWO_FIX/abc_query_astronaut_2b/embedding.npy --image $TWO_FIX/images_astronaut.png \
            --text "What is the person holding?" --role query --threads "$THREADS")
        t1=$(since "$t"); t=$(now)
        c2=$(run_case "$OUT/2b-vlm.abc" $TWO_FIX/vlm2vec_query_coffee_2b/embedding.npy --image $TWO_FIX/images_coffee.png \
            --text "Represent the given image." --role query --threads "$THREADS")
        t2=$(since "$t")
        row="$row $(wc -c <"$OUT/2b-abc.abc") | $(wc -c <"$OUT/2b-vlm.abc") | $(min "$c1" "$c2") (abc $c1, vlm2vec $c2) | $t1 | $t2 |"
        rm -f "$OUT"/2b-*.abc
    fi
    echo "$row"
done
