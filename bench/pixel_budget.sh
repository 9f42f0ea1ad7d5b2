#!/usr/bin/env bash
# bench/pixel_budget.sh MODEL.abc... — how the run-time pixel budget (`abc embed --max-pixels`) trades
# accuracy for time on Qwen2-VL models: each fixture image with an instruction, embedded at the file's
# own bounds and at budgets of 576 and 256 patches (144 and 64 image tokens: max_pixels = tokens · 28²),
# prints patches, cosine to the default embedding and wall time per embedding. THREADS (default 2).
# Needs ./abc and build/tool_npycmp (`make all build/tool_npycmp`). Results: bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
IMAGES="astronaut.png coffee.png rocket.jpg camera.png"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
now() { date +%s.%N; }
printf '%-34s %-14s %-9s %8s %12s %8s\n' model image budget patches "cos default" "time s"
for model in "$@"; do
    for img in $IMAGES; do
        for budget in default 576 256; do
            args=()
            [ "$budget" = default ] || args=(--min-pixels 3136 --max-pixels $((budget / 4 * 784)))
            t0=$(now)
            ./abc embed -m "$model" --image "tests/fixtures/images/$img" --text "What is in the image?" \
                --role query --threads "$THREADS" "${args[@]}" -o "$TMP/$budget.npy" --dump "$TMP/d$budget" >/dev/null
            t1=$(now)
            patches=$(build/tool_npycmp --shape "$TMP/d$budget/pixel_values.npy" | sed 's/.* \([0-9]*\),.*/\1/')
            cos=$(build/tool_npycmp --cos -2 "$TMP/$budget.npy" "$TMP/default.npy" | sed -n 's/.*cos=\([0-9.-]*\).*/\1/p')
            printf '%-34s %-14s %-9s %8s %12s %8.2f\n' "$(basename "$model")" "$img" "$budget" "$patches" "$cos" \
                "$(awk "BEGIN {print $t1 - $t0}")"
        done
    done
done
