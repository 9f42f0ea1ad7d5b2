#!/usr/bin/env bash
# End-to-end tests of preset colqwen2 (multi-vector output; docs/presets-and-prompts.md#colqwen2) on the
# tiny random Qwen2-VL + LoRA + 128-d projection of tests/fixtures/colqwen2-tiny
# (tests/gen_colqwen2_fixtures.py: transformers' ColQwen2ForRetrieval in float32).
#
# Run from the repository root by `make test`, after build/abc-san, build/tool_npycmp,
# build/tiny-colqwen2.abc, build/tiny-vlm2vec.abc, build/bench_model and build/abc-convert-asan exist. Per case (2 image documents, 2 text queries)
# `abc embed --dump` against every stage of the reference with the tolerances of
# docs/testing.md#tolerances: input_ids and position_ids identical, pixel_values identical (SHA-256),
# vision_embeds within 1e-4·max|ref|, last_hidden within 5e-4·max|ref|, the [T,128] token vectors within
# 1e-4, -o the same array. Then `abc embed --batch` (OUT.npy + OUT.offsets.npy, all or nothing), `abc
# search` (MaxSim scores against the reference's) and `abc eval` (its ranks agree with search), and the
# errors. Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
FIX=tests/fixtures/colqwen2-tiny
IMG=tests/fixtures/images
MODEL=build/tiny-colqwen2.abc
MODEL_VLM=build/tiny-vlm2vec.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_colqwen2.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

missing=0
CONVERT=${ABC_CONVERT:-build/abc-convert-asan}
for f in "$ABC" "$CMP" "$MODEL" "$MODEL_VLM" "$FIX/manifest.json" build/bench_model "$CONVERT"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

echo "-- abc info"
if run_cli 0 "info" info -m "$MODEL"; then
    check "info: preset colqwen2, no single vector" grep -q "embedding dim: 0" "$TMP/out"
    check "info: the multi-vector output" grep -q "one 128-float vector per token" "$TMP/out"
fi

embed_case() {
    local name=$1; shift
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    run_cli 0 "$name: embed" embed -m "$MODEL" "$@" --dump "$dump" -o "$TMP/$name.npy" || return
    compare_qwen2vl_stages "$name" "$dump" "$ref"
    compare "$name/multi_vector" --abs 1e-4 --cos 0.99999 "$dump/multi_vector.npy" "$ref/multi_vector.npy"
    compare "$name/-o = dumped multi_vector" --exact "$TMP/$name.npy" "$dump/multi_vector.npy"
    check "$name: no single embedding stage" test ! -e "$dump/embedding.npy"
}

echo "-- the fixture's cases"
embed_case doc_coffee --image "$IMG/coffee.png"
embed_case doc_astronaut --image "$IMG/astronaut.png"
embed_case query_coffee --text "A cup of coffee on a saucer"
embed_case query_astronaut --text "Who is wearing the space suit?"
# the manifest's query prompt given raw is the same input (query augmentation: 10 pad tokens and "\n")
PROMPT="Query: A cup of coffee on a saucer$(printf '<|endoftext|>%.0s' 1 2 3 4 5 6 7 8 9 10)
"
if run_cli 0 "--prompt (raw query)" embed -m "$MODEL" --prompt "$PROMPT" -o "$TMP/raw.npy"; then
    compare "--prompt = --text" --exact "$TMP/raw.npy" "$TMP/query_coffee.npy"
fi
# --multi-vector (for files with both outputs) changes nothing on a multi-vector-only file; a file without
# token vectors refuses it
if run_cli 0 "--multi-vector on colqwen2" embed -m "$MODEL" --multi-vector --prompt "$PROMPT" -o "$TMP/raw_mv.npy"; then
    compare "--multi-vector = without it" --exact "$TMP/raw_mv.npy" "$TMP/query_coffee.npy"
fi
expect_error 2 "--multi-vector on a single-vector model" "no multi-vector output" \
    embed -m "$MODEL_VLM" --multi-vector --text "a cup"
if run_cli 0 "embed --json" embed -m "$MODEL" --text "Who is wearing the space suit?" --json; then
    check "--json: n_vectors 20, dim 128" grep -q '^{"n_vectors":20,"dim":128,"vectors":\[\[' "$TMP/out"
fi

echo "-- embed --batch: OUT.npy [ΣT,128] + OUT.offsets.npy"
cp "$IMG/coffee.png" "$IMG/astronaut.png" "$TMP/"
printf '{"id": "coffee", "image": "coffee.png"}\n{"id": "astronaut", "image": "astronaut.png"}\n' > "$TMP/docs.jsonl"
if run_cli 0 "embed --batch" embed -m "$MODEL" --batch "$TMP/docs.jsonl" -o "$TMP/idx.npy"; then
    check "batch: vectors float32 [640,128]" test "$("$CMP" --shape "$TMP/idx.npy")" = "float32 640,128"
    check "batch: offsets int64 [3]" test "$("$CMP" --shape "$TMP/idx.offsets.npy")" = "int64 3"
    check "batch: ids" test "$(tr '\n' ' ' < "$TMP/idx.ids")" = "coffee astronaut "
    compare "batch: first document's rows = abc embed" --exact --prefix "$TMP/doc_coffee.npy" "$TMP/idx.npy"
    check "batch: no partial or progress files" test -z "$(ls "$TMP" | grep -e partial -e progress -e '\.tmp')"
fi
printf '{"id": "coffee", "image": "coffee.png"}\n{"id": "gone", "image": "missing.png"}\n' > "$TMP/bad.jsonl"
expect_error 1 "batch with a missing image" "line 2" embed -m "$MODEL" --batch "$TMP/bad.jsonl" -o "$TMP/bad.npy"
check "failed batch: no OUT.npy, no offsets" test ! -e "$TMP/bad.npy" -a ! -e "$TMP/bad.offsets.npy"
expect_error 2 "batch --resume on a multi-vector model" "not supported" embed -m "$MODEL" --batch "$TMP/docs.jsonl" \
    -o "$TMP/r.npy" --resume

echo "-- search and eval: MaxSim"
# search_scores QUERY_NAME TEXT: the scores of both documents in the fixture's order (coffee, astronaut)
search_scores() {
    local name=$1 text=$2
    run_cli 0 "search: $name" search --index "$TMP/idx.npy" -m "$MODEL" --text "$text" || return
    awk -F'\t' '{ s[$3] = $2 } END { print s["coffee"], s["astronaut"] }' "$TMP/out" > "$TMP/$name.scores.txt"
    compare "search: $name MaxSim = reference" --abs 1e-4 "$TMP/$name.scores.txt" "$FIX/cases/$name/maxsim.npy"
    cp "$TMP/out" "$TMP/$name.search"
}
search_scores query_coffee "A cup of coffee on a saucer"
search_scores query_astronaut "Who is wearing the space suit?"
if run_cli 0 "search --query Q.npy [Tq,128]" search --index "$TMP/idx.npy" --query "$TMP/query_coffee.npy"; then
    check "--query = -m (same lines)" cmp -s "$TMP/out" "$TMP/query_coffee.search"
fi
expect_error 1 "search: a single-vector model on a multi-vector index" "token vectors have 0 values" \
    search --index "$TMP/idx.npy" -m "$MODEL_VLM" --text "a cup"
# offsets int64 [0, 5]: a valid .npy whose last offset is not the index's 640 rows
hdr="{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }"
{ printf '\x93NUMPY\x01\x00\x76\x00%s' "$hdr"; printf '%*s\n' $((117 - ${#hdr})) ''
  printf '\0\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0'; } > "$TMP/badoff2.npy"
check "the bad offsets file reads as int64 [2]" test "$("$CMP" --shape "$TMP/badoff2.npy")" = "int64 2"
expect_error 1 "search: offsets that do not end at the row count" "offsets" \
    search --index "$TMP/idx.npy" --offsets "$TMP/badoff2.npy" --query "$TMP/query_coffee.npy"

printf '%s\n' \
    '{"qry_text": "A cup of coffee on a saucer", "tgt_img_path": ["coffee.png", "astronaut.png"]}' \
    '{"qry_text": "Who is wearing the space suit?", "tgt_img_path": ["astronaut.png", "coffee.png"]}' > "$TMP/task.jsonl"
if run_cli 0 "eval (MaxSim)" eval -m "$MODEL" "$TMP/task.jsonl" --json; then
    # the ground truth's rank from search's order: 1 when it is the first line
    want=$(printf '%s,%s' "$(awk -F'\t' '$3 == "coffee" { print $1 }' "$TMP/query_coffee.search")" \
        "$(awk -F'\t' '$3 == "astronaut" { print $1 }' "$TMP/query_astronaut.search")")
    check "eval ranks [$want] = search's" grep -q "\"ranks\":\[$want\]" "$TMP/out"
fi

echo "-- bench_model runs a multi-vector model"
if build/bench_model -m "$MODEL" --threads 1 --runs 1 --size 64x64 --text "Describe the image." --quiet \
    >"$TMP/bench.out" 2>&1; then
    check "bench_model: the multi_vector stage is timed" grep -q "^multi_vector " "$TMP/bench.out"
else
    bad "bench_model on colqwen2"; sed 's/^/    /' "$TMP/bench.out" | head
fi

echo "-- errors"
expect_error 2 "--input-ids on a multi-vector model" "multi-vector" embed -m "$MODEL" \
    --input-ids "$FIX/cases/query_coffee/input_ids.npy"

"$CONVERT" tests/fixtures/qwen2vl-tiny/base -o "$TMP/noproj.abc" --preset colqwen2 --quiet >"$TMP/out" 2>"$TMP/err"
check "convert: colqwen2 without custom_text_proj fails" test $? -ne 0 -a ! -e "$TMP/noproj.abc"
check "convert: ... saying what is missing" grep -q "needs the projection custom_text_proj.weight" "$TMP/err"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
