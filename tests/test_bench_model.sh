#!/usr/bin/env bash
# build/bench_model (bench/bench_model.c) on the tiny fixture models: the table and the --json report
# must name the file's architecture, dtype (f32, bf16, q8) and tensor bytes per dtype, hold one result per
# thread count with its stage times (vision + prefill + other = the whole embedding), the peak RSS and
# the RSS budget; bad invocations must fail with a clear message. (The full-size runs are `make
# bench-model*`; this only keeps the benchmark from rotting.)
set -u
cd "$(dirname "$0")/.."
BENCH=${ABC_BENCH_MODEL:-build/bench_model}
MODEL=build/tiny-abc.abc
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0; failed=0
ok()  { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
has() { # DESCRIPTION FILE PATTERN : grep -E must find PATTERN in FILE
    if grep -Eq -- "$3" "$2"; then ok; else bad "$1: /$3/ not in $2:"; head -c 2000 "$2"; fi
}

for f in "$BENCH" "$MODEL" ./abc-convert; do
    if [ ! -e "$f" ]; then bad "missing $f (make $f)"; echo "RESULT $passed $failed"; exit 1; fi
done

# the table
if "$BENCH" -m "$MODEL" --threads 1,2 --runs 2 >"$TMP/table.txt" 2>"$TMP/table.err"; then
    ok
    has "table: model line" "$TMP/table.txt" "qwen2_vl, preset abc, dtype f32"
    has "table: input line" "$TMP/table.txt" "448x448 image: 1024 patches, 256 image tokens, 285 tokens in all"
    has "table: 1-thread row" "$TMP/table.txt" "^ +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +1\\.00x"
    has "table: 2-thread row" "$TMP/table.txt" "^ +2 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+x"
    has "table: RSS within budget" "$TMP/table.txt" "MiB: within$"
    has "table: vision stage row" "$TMP/table.txt" "^vision_embeds +[0-9.]+ +[0-9.]+$"
    has "table: progress on stderr" "$TMP/table.err" "threads 2 warm-up"
else
    bad "bench_model table run failed: $(cat "$TMP/table.err")"
fi

# --json for f32, bf16 and q8 copies of the same model
json_checks() { # FILE DTYPE
    local j=$1 dtype=$2
    has "$dtype json: architecture" "$j" '"architecture": "qwen2_vl"'
    has "$dtype json: dtype" "$j" "\"dtype\": \"$dtype\""
    has "$dtype json: bytes of $dtype tensors" "$j" "\"tensor_bytes_by_dtype\": \\{.*\"$dtype\": [1-9][0-9]*"
    has "$dtype json: isa" "$j" '"isa": "(scalar|avx2|avx512|neon|neon32)"'
    has "$dtype json: tokens" "$j" '"sequence_tokens": 285,'
    has "$dtype json: file size" "$j" "\"file_bytes\": $(wc -c <"${3}"),"
    has "$dtype json: 1-thread result" "$j" '\{"threads": 1, "vision_s": [0-9.]+, "prefill_s": [0-9.]+'
    has "$dtype json: 3-thread result" "$j" '\{"threads": 3, .*"speedup": [0-9.]+'
    has "$dtype json: stages" "$j" '"stages_s": \{"decoded": [0-9.]+, .*"vision_embeds": [0-9.]+, "last_hidden": [0-9.]+, "embedding": [0-9.]+\}'
    has "$dtype json: RSS" "$j" '"peak_rss_mib": [1-9][0-9.]*, .*"within_rss_budget": true'
    # one run per thread count: the parts add up to the whole embedding
    local sums
    sums=$(sed -n 's/.*"vision_s": \([0-9.]*\), "prefill_s": \([0-9.]*\), "other_s": \([0-9.]*\), "embed_s": \([0-9.]*\).*/\1 \2 \3 \4/p' "$j" |
        awk '{ d = $1 + $2 + $3 - $4; if (d < 0) d = -d; if (d > 0.0005 || $4 <= 0) bad++; n++ } END { print n + 0, bad + 0 }')
    if [ "$sums" = "2 0" ]; then ok; else bad "$dtype json: vision + prefill + other != embed (rows, mismatches: $sums)"; fi
}
cp "$MODEL" "$TMP/f32.abc"
for dtype in f32 bf16 q8; do
    model=$TMP/$dtype.abc
    if [ "$dtype" != f32 ] && ! ./abc-convert tests/fixtures/qwen2vl-tiny/base -o "$model" --preset abc --dtype "$dtype" \
        --merge-adapter tests/fixtures/qwen2vl-tiny/abc_pretrain_adapter --quiet 2>"$TMP/conv.err"; then
        bad "abc-convert --dtype $dtype failed: $(cat "$TMP/conv.err")"
        continue
    fi
    if "$BENCH" -m "$model" --threads 1,3 --runs 1 --json --quiet >"$TMP/$dtype.json" 2>"$TMP/$dtype.err"; then
        ok
        json_checks "$TMP/$dtype.json" "$dtype" "$model"
        if [ -s "$TMP/$dtype.err" ]; then bad "$dtype: --quiet printed: $(cat "$TMP/$dtype.err")"; else ok; fi
    else
        bad "bench_model --json on $dtype failed: $(cat "$TMP/$dtype.err")"
    fi
done

# a text candidate: no vision stages, speed-ups of the vision tower reported as 0
if "$BENCH" -m "$MODEL" --no-image --text "A photo of a cat" --threads 1,2 --runs 1 --json --quiet >"$TMP/text.json" 2>"$TMP/text.err"; then
    ok
    has "text only: image null" "$TMP/text.json" '"image": null,'
    has "text only: no patches" "$TMP/text.json" '"patches": 0,'
    has "text only: vision time 0" "$TMP/text.json" '"threads": 2, "vision_s": 0.0000, "prefill_s": [0-9.]+, .*"vision_speedup": 0.000,'
    if grep -q '"vision_embeds"\|nan\|inf' "$TMP/text.json"; then bad "text only: vision stage or a non-number in the JSON"; else ok; fi
else
    bad "bench_model --no-image failed: $(cat "$TMP/text.err")"
fi

# phi3_v (Phi-3.5-V): the stages of its fixture names count as vision (clip_patch_features, image_features)
# and prefill (inputs_embeds, last_hidden)
PHI=build/tiny-phi3v.abc
if [ -f "$PHI" ]; then
    if "$BENCH" -m "$PHI" --threads 1 --runs 1 --json --quiet >"$TMP/phi.json" 2>"$TMP/phi.err"; then
        ok
        has "phi3_v: architecture" "$TMP/phi.json" '"architecture": "phi3_v"'
        has "phi3_v: crops" "$TMP/phi.json" '"clip_crops": [1-9][0-9]*,'
        has "phi3_v: stages" "$TMP/phi.json" '"clip_patch_features": [0-9.]+, "image_features": [0-9.]+, "inputs_embeds": [0-9.]+, "last_hidden": [0-9.]+'
        # non-zero (seconds under emulation: tests/cross/run_cross.sh)
        has "phi3_v: vision time" "$TMP/phi.json" '"vision_s": ([1-9][0-9]*\.[0-9]+|0\.[0-9]*[1-9])'
    else
        bad "bench_model on $PHI failed: $(cat "$TMP/phi.err")"
    fi
else
    bad "phi3_v case: no $PHI (make test builds it)"
fi

# jina-v4 (a single vector and token vectors): --no-text embeds the image alone (it takes no image with a
# text), --multi-vector times the token vectors instead of the pooled vector
JINA=build/tiny-jina.abc
if [ -f "$JINA" ]; then
    for mode in dense multi; do
        flag=""; [ "$mode" = multi ] && flag=--multi-vector
        if "$BENCH" -m "$JINA" --no-text $flag --threads 1 --runs 1 --json --quiet >"$TMP/jina-$mode.json" 2>"$TMP/jina.err"; then
            ok
            has "jina-v4 $mode: preset" "$TMP/jina-$mode.json" '"preset": "jina-v4"'
            if [ "$mode" = multi ]; then
                has "jina-v4 multi: multi_vector stage" "$TMP/jina-$mode.json" '"last_hidden": [0-9.]+, "multi_vector": [0-9.]+\}'
            else
                has "jina-v4 dense: embedding stage" "$TMP/jina-$mode.json" '"last_hidden": [0-9.]+, "embedding": [0-9.]+\}'
            fi
        else
            bad "bench_model --no-text $flag on $JINA failed: $(cat "$TMP/jina.err")"
        fi
    done
else
    bad "jina-v4 case: no $JINA (make test builds it)"
fi

# --texts: short texts one at a time vs packed (abc_embed_batch); every batched row equals its single one
if "$BENCH" -m "$MODEL" --texts 24 --threads 1,2 --quiet >"$TMP/texts.txt" 2>"$TMP/texts.err"; then
    ok
    has "texts: input line" "$TMP/texts.txt" "^input   24 texts of 3-20 words, [0-9]+ tokens in all"
    has "texts: 1-thread row, rows identical" "$TMP/texts.txt" "^ +1 +[0-9.]+ +[0-9.]+ +[0-9.]+x yes$"
    has "texts: 2-thread row, rows identical" "$TMP/texts.txt" "^ +2 +[0-9.]+ +[0-9.]+ +[0-9.]+x yes$"
else
    bad "bench_model --texts failed: $(cat "$TMP/texts.err")"
fi
if "$BENCH" -m build/tiny-vlm2vec.abc --texts 12 --threads 1 --json --quiet >"$TMP/texts.json" 2>"$TMP/texts.err"; then
    has "texts --json: mode and preset" "$TMP/texts.json" '"mode": "texts"'
    has "texts --json: preset" "$TMP/texts.json" '"preset": "vlm2vec"'
    has "texts --json: row" "$TMP/texts.json" '"threads": 1, "single_s": [0-9.]+, "batch_s": [0-9.]+, .*"differing_rows": 0\}'
else
    bad "bench_model --texts --json failed: $(cat "$TMP/texts.err")"
fi

# bad invocations
fails_with() { # MESSAGE-PATTERN EXPECTED-STATUS COMMAND...
    local pattern=$1 status=$2; shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" -eq "$status" ] && printf '%s' "$err" | grep -Eq -- "$pattern"; then ok
    else bad "'$*' gave status $rc and '$err' (want $status, /$pattern/)"; fi
}
fails_with "usage" 2 "$BENCH"
fails_with "usage" 2 "$BENCH" -m "$MODEL" --threads 0
fails_with "usage" 2 "$BENCH" -m "$MODEL" --threads 1,x
fails_with "usage" 2 "$BENCH" -m "$MODEL" --runs 0
fails_with "usage" 2 "$BENCH" -m "$MODEL" --size 10x10
fails_with "usage" 2 "$BENCH" -m "$MODEL" --frobnicate
fails_with "usage" 2 "$BENCH" -m "$MODEL" --texts 0
fails_with "cannot open '$TMP/missing.abc'" 1 "$BENCH" -m "$TMP/missing.abc"
fails_with "has no multi-vector output" 1 "$BENCH" -m "$MODEL" --multi-vector --threads 1 --runs 1 --quiet
fails_with "embeds an image or a text, not both" 1 "$BENCH" -m "$JINA" --threads 1 --runs 1 --quiet
fails_with "nothing to embed" 1 "$BENCH" -m "$MODEL" --no-image --no-text --threads 1 --runs 1 --quiet
head -c 100 "$MODEL" >"$TMP/short.abc"
fails_with "truncated" 1 "$BENCH" -m "$TMP/short.abc"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
