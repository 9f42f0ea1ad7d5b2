#!/usr/bin/env bash
# End-to-end tests of the `abc` command line against the reference fixtures (docs/testing.md#command-line-and-dump-contract, #tolerances).
#
# Run from the repository root by `make test`, after ./abc, build/abc-san (./abc with ASan/UBSan),
# build/tool_npycmp and the tiny models build/tiny-abc.abc and build/tiny-vlm2vec.abc exist.
# For every case of tests/fixtures/qwen2vl-tiny/manifest.json it runs `abc embed --dump` and compares
# each dumped stage with the reference: input_ids, position_ids, decoded, resized, pixel_values must be
# identical; vision_embeds, last_hidden and the embedding must be within the tolerances of docs/testing.md#tolerances. Then the
# tokenizer, --stop-after, the debugging path and the error paths. Ends with "RESULT <passed> <failed>".
set -u

ABC=${ABC_CLI:-build/abc-san}     # the binary under test (ABC_CLI=./abc to test the release build)
CMP=build/tool_npycmp
FIX=tests/fixtures/qwen2vl-tiny
IMG=tests/fixtures/images
PRE=tests/fixtures/preprocess/image_cases.txt
MODEL_ABC=build/tiny-abc.abc
MODEL_VLM=build/tiny-vlm2vec.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

. "$(dirname "$0")/cli_checks.sh"

# ---- prerequisites: missing ones are failures, not skips ----
missing=0
for f in "$ABC" "$CMP" "$MODEL_ABC" "$MODEL_VLM" "$FIX/manifest.json" "$PRE"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

# Original image files: tests/fixtures/images/NAME (the fixtures' images_NAME).
image_path() {
    if [ -e "$IMG/$1" ]; then echo "$IMG/$1"; else echo "$IMG/images_$1"; fi
}

# image_case_field IMAGE PRESET COLUMN: a field of tests/fixtures/preprocess/image_cases.txt
# (columns: decoded_png preset two_stage min max in_w in_h s1_w s1_h t gh gw resized_w resized_h
# resized_sha pixel_values_sha).
image_case_field() {
    awk -v img="$1.png" -v preset="$2" -v col="$3" '$1 == img && $2 == preset { print $col }' "$PRE"
}

# ---- the 8 reference cases ----
# embed_case NAME MODEL_FILE PRESET IMAGE ARGS...: IMAGE is "" for text-only cases.
embed_case() {
    local name=$1 model=$2 preset=$3 image=$4; shift 4
    local ref="$FIX/cases/$name" dump="$TMP/$name"
    if ! grep -q "\"name\": \"$name\"" "$FIX/manifest.json"; then bad "$name: not in manifest.json"; return; fi
    local img_args=()
    if [ -n "$image" ]; then img_args=(--image "$(image_path "$image")"); fi
    run_cli 0 "$name: embed" embed -m "$model" "${img_args[@]}" "$@" --dump "$dump" -o "$TMP/$name.out.npy" \
        || return
    ok "$name: embed exit 0"
    compare "$name/input_ids" --exact "$dump/input_ids.npy" "$ref/input_ids.npy"
    compare "$name/position_ids" --exact "$dump/position_ids.npy" "$ref/position_ids.npy"
    if [ -n "$image" ]; then
        local pp=$preset; [ "$preset" = vlm2vec ] && pp=vlm2vec_default
        compare "$name/decoded" --exact "$dump/decoded.npy" "$IMG/$image.png"
        local want_rs want_pv got_rs got_pv rw rh gh gw
        want_rs=$(image_case_field "$image" "$pp" 15)
        want_pv=$(image_case_field "$image" "$pp" 16)
        rw=$(image_case_field "$image" "$pp" 13); rh=$(image_case_field "$image" "$pp" 14)
        gh=$(image_case_field "$image" "$pp" 11); gw=$(image_case_field "$image" "$pp" 12)
        got_rs=$("$CMP" --sha256 "$dump/resized.npy" 2>&1)
        got_pv=$("$CMP" --sha256 "$dump/pixel_values.npy" 2>&1)
        check "$name/resized: uint8 [$rh,$rw,3], sha256 ${want_rs:0:16}… identical" \
            test -n "$want_rs" -a "$got_rs" = "$want_rs" -a \
            "$("$CMP" --shape "$dump/resized.npy" 2>&1)" = "uint8 $rh,$rw,3"
        check "$name/pixel_values: float32 [$((gh * gw)),1176], sha256 ${want_pv:0:16}… identical" \
            test -n "$want_pv" -a "$got_pv" = "$want_pv" -a \
            "$("$CMP" --shape "$dump/pixel_values.npy" 2>&1)" = "float32 $((gh * gw)),1176"
        compare "$name/vision_embeds" --rel 1e-4 "$dump/vision_embeds.npy" "$ref/vision_embeds.npy"
    else
        check "$name: no image stages dumped for a text-only input" \
            test ! -e "$dump/decoded.npy" -a ! -e "$dump/pixel_values.npy" -a ! -e "$dump/vision_embeds.npy"
    fi
    compare "$name/last_hidden" --rel 5e-4 "$dump/last_hidden.npy" "$ref/last_hidden.npy"
    compare "$name/embedding" --cos 0.99999 --abs 1e-4 "$dump/embedding.npy" "$ref/embedding.npy"
    compare "$name: -o output equals the dumped embedding" --exact "$TMP/$name.out.npy" "$dump/embedding.npy"
}

echo "-- reference cases (binary: $ABC)"
embed_case abc_query_astronaut "$MODEL_ABC" abc astronaut.png --text "What is the person holding?" --role query --threads 2
embed_case abc_query_rocket_bang "$MODEL_ABC" abc rocket.jpg --text "what color is the sky!" --role query
embed_case abc_cand_image_coffee "$MODEL_ABC" abc coffee.png --role candidate --threads 1
embed_case abc_cand_image_camera "$MODEL_ABC" abc camera.png --role candidate
embed_case abc_cand_text "$MODEL_ABC" abc "" --text "a cup of coffee on a wooden table" --role candidate
# The VLM2Vec cases give the whole prompt (it contains <|image_pad|>): pass it as the raw prompt.
embed_case vlm2vec_query_astronaut "$MODEL_VLM" vlm2vec astronaut.png \
    --prompt "<|image_pad|> Represent the given image with the following question: What is the person holding?" --role query
embed_case vlm2vec_query_coffee_prog "$MODEL_VLM" vlm2vec coffee_420_prog.jpg \
    --prompt "<|image_pad|> Represent the given image." --role query --threads 3
embed_case vlm2vec_text "$MODEL_VLM" vlm2vec "" --text "A person in a space suit" --role candidate

echo "-- templates and roles: the same cases reached the way a user would write them"
# vlm2vec's template with an image is "<|image_pad|> {text}".
if run_cli 0 "vlm2vec template" embed -m "$MODEL_VLM" --image "$(image_path coffee_420_prog.jpg)" \
    --text "Represent the given image." --dump "$TMP/vlm_tpl" -o "$TMP/vlm_tpl.npy"; then
    compare "vlm2vec --text uses the template: input_ids" --exact "$TMP/vlm_tpl/input_ids.npy" \
        "$FIX/cases/vlm2vec_query_coffee_prog/input_ids.npy"
    compare "vlm2vec --text uses the template: embedding" --cos 0.99999 --abs 1e-4 "$TMP/vlm_tpl.npy" \
        "$FIX/cases/vlm2vec_query_coffee_prog/embedding.npy"
fi
# abc: image + text without --role is a query; image only is a candidate.
if run_cli 0 "abc auto role (query)" embed -m "$MODEL_ABC" --image "$(image_path astronaut.png)" \
    --text "What is the person holding?" -o "$TMP/auto_q.npy"; then
    compare "abc auto role: image+text is a query" --cos 0.99999 --abs 1e-4 "$TMP/auto_q.npy" \
        "$FIX/cases/abc_query_astronaut/embedding.npy"
fi
if run_cli 0 "abc auto role (candidate)" embed -m "$MODEL_ABC" --image "$(image_path coffee.png)" \
    -o "$TMP/auto_c.npy"; then
    compare "abc auto role: image only is a candidate" --cos 0.99999 --abs 1e-4 "$TMP/auto_c.npy" \
        "$FIX/cases/abc_cand_image_coffee/embedding.npy"
fi
# The role matters for abc (the instruct adapter): forcing candidate must change the query's vector.
if run_cli 0 "abc forced candidate" embed -m "$MODEL_ABC" --image "$(image_path astronaut.png)" \
    --text "What is the person holding?" --role candidate -o "$TMP/forced_c.npy"; then
    if "$CMP" --abs 1e-3 "$TMP/forced_c.npy" "$FIX/cases/abc_query_astronaut/embedding.npy" >/dev/null 2>&1; then
        bad "abc --role candidate on a query changes the embedding"
    else
        ok "abc --role candidate on a query changes the embedding"
    fi
fi

echo "-- stdout output and the release binary"
if run_cli 0 "embed to stdout" embed -m "$MODEL_VLM" --text "A person in a space suit"; then
    cp "$TMP/out" "$TMP/stdout_vec.txt"
    check "stdout: one line of 32 numbers" test "$(wc -l <"$TMP/stdout_vec.txt")" -eq 1 -a \
        "$(wc -w <"$TMP/stdout_vec.txt")" -eq 32
    compare "stdout vector equals the reference" --cos 0.99999 --abs 1e-4 "$TMP/stdout_vec.txt" \
        "$FIX/cases/vlm2vec_text/embedding.npy"
fi
if [ -x ./abc ] && [ "$ABC" != ./abc ]; then
    if ABC=./abc run_cli 0 "release ./abc embed" embed -m "$MODEL_ABC" --image "$(image_path rocket.jpg)" \
        --text "what color is the sky!" -o "$TMP/release.npy"; then
        compare "release ./abc: abc_query_rocket_bang embedding" --cos 0.99999 --abs 1e-4 "$TMP/release.npy" \
            "$FIX/cases/abc_query_rocket_bang/embedding.npy"
    fi
fi

echo "-- --stop-after preprocess"
if run_cli 0 "stop-after preprocess" embed -m "$MODEL_ABC" --image "$(image_path coffee.png)" \
    --dump "$TMP/stop" --stop-after preprocess -o "$TMP/stop_out.npy"; then
    check "stop-after: pixel_values written" test -s "$TMP/stop/pixel_values.npy"
    check "stop-after: pixel_values identical" test "$("$CMP" --sha256 "$TMP/stop/pixel_values.npy" 2>&1)" = \
        "$(image_case_field coffee.png abc 16)"
    check "stop-after: no vision_embeds, last_hidden, embedding" \
        test ! -e "$TMP/stop/vision_embeds.npy" -a ! -e "$TMP/stop/last_hidden.npy" -a ! -e "$TMP/stop/embedding.npy"
    check "stop-after: no -o file, nothing on stdout" test ! -e "$TMP/stop_out.npy" -a ! -s "$TMP/out"
fi

echo "-- debugging path: --input-ids / --pixel-values / --grid (abc_embed_tokens)"
if run_cli 0 "embed --input-ids (text)" embed -m "$MODEL_VLM" --input-ids "$FIX/cases/vlm2vec_text/input_ids.npy" \
    --role candidate -o "$TMP/raw_text.npy"; then
    compare "--input-ids: vlm2vec_text embedding" --cos 0.99999 --abs 1e-4 "$TMP/raw_text.npy" \
        "$FIX/cases/vlm2vec_text/embedding.npy"
fi
if [ -e "$TMP/abc_query_astronaut/pixel_values.npy" ] && run_cli 0 "embed --pixel-values" embed -m "$MODEL_ABC" \
    --input-ids "$FIX/cases/abc_query_astronaut/input_ids.npy" --pixel-values "$TMP/abc_query_astronaut/pixel_values.npy" \
    --grid 1,36,36 --role query -o "$TMP/raw_img.npy"; then
    compare "--input-ids --pixel-values: abc_query_astronaut embedding" --cos 0.99999 --abs 1e-4 "$TMP/raw_img.npy" \
        "$FIX/cases/abc_query_astronaut/embedding.npy"
fi

echo "-- tokenize (tokenizer_cases.json)"
tokenize_case() { # tokenize_case TEXT EXPECTED_IDS
    if run_cli 0 "tokenize" tokenize -m "$MODEL_ABC" -- "$1"; then
        check "tokenize '$1' -> $2" test "$(cat "$TMP/out")" = "$2"
    fi
}
tokenize_case "Hello world" "9707 1879"
tokenize_case "I'm sure you'll see it; DON'T they've?" "40 2776 2704 498 3278 1490 432 26 44273 17323 807 3003 30"
tokenize_case "你好，世界！这是一个测试。" "108386 3837 99489 6313 105464 81705 1773"
tokenize_case "<|im_start|>user
hi<|im_end|>
" "151644 872 198 6023 151645 198"
tokenize_case "emoji 🙂👍🏽 family 👨‍👩‍👧" "37523 27484 144349 145375 2997 61804 101 378 235 145233 378 235 145665"
if run_cli 0 "tokenize -- TEXT starting with '-'" tokenize -m "$MODEL_ABC" -- "-5 degrees"; then
    check "tokenize -- '-5 degrees' prints ids" grep -Eq '^[0-9]+( [0-9]+)+$' "$TMP/out"
fi
if run_cli 0 "tokenize ''" tokenize -m "$MODEL_ABC" ""; then
    check "tokenize '' prints an empty line" test "$(cat "$TMP/out")" = "" -a "$(wc -l <"$TMP/out")" -eq 1
fi
if run_cli 0 "tokenize --json" tokenize -m "$MODEL_ABC" --json "Hello world"; then
    check "tokenize --json 'Hello world'" test "$(cat "$TMP/out")" = \
        '[{"id":9707,"text":"Hello"},{"id":1879,"text":" world"}]'
fi
if run_cli 0 "tokenize --json (partial UTF-8 tokens)" tokenize -m "$MODEL_ABC" --json "👨‍👩"; then
    check "tokenize --json: partial UTF-8 tokens give \\ufffd and their raw bytes" \
        grep -Eq '"text":"[^"]*\\ufffd[^"]*","bytes":"([0-9a-f]{2})+"' "$TMP/out"
fi
if run_cli 0 "tokenize --json (escapes)" tokenize -m "$MODEL_ABC" --json $'a"b\\c\n'; then
    check "tokenize --json escapes quotes, backslashes and newlines" \
        grep -q '\\"' "$TMP/out"
    check "tokenize --json output has no raw newline inside" test "$(wc -l <"$TMP/out")" -eq 1
fi

echo "-- info, help, version"
if run_cli 0 "info" info -m "$MODEL_ABC"; then
    check "info: preset abc, embedding dim 32" grep -q 'preset: abc' "$TMP/out"
    check "info: embedding dim 32" grep -q 'embedding dim: 32' "$TMP/out"
fi
if run_cli 0 "info vlm2vec" info -m "$MODEL_VLM"; then check "info: preset vlm2vec" grep -q 'preset: vlm2vec' "$TMP/out"; fi
if run_cli 0 "--help" --help; then check "--help lists the commands" grep -q 'tokenize' "$TMP/out"; fi
if run_cli 0 "embed --help" embed --help; then check "embed --help lists --dump" grep -q -- '--dump' "$TMP/out"; fi
if run_cli 0 "version" --version; then check "--version" grep -q '^abc [0-9]' "$TMP/out"; fi

echo "-- errors"
printf 'this is not a model file, just text\n' >"$TMP/corrupt.abc"
head -c 4096 "$MODEL_ABC" >"$TMP/truncated.abc"
head -c 3000 "$(image_path astronaut.png)" >"$TMP/truncated.png"
printf 'GIF89a this is not an image we can read' >"$TMP/garbage.png"
head -c 5000 "$(image_path rocket.jpg)" >"$TMP/truncated.jpg"
: >"$TMP/empty.png"
expect_error 1 "missing model file" "no-such-model\.abc" embed -m "$TMP/no-such-model.abc" --text hi
expect_error 1 "corrupt model file" "corrupt\.abc|format|magic" embed -m "$TMP/corrupt.abc" --text hi
expect_error 1 "truncated model file" "truncated|format|size" embed -m "$TMP/truncated.abc" --text hi
expect_error 1 "model is a directory" "$TMP" info -m "$TMP"
expect_error 1 "missing image" "no-such-image\.png" embed -m "$MODEL_ABC" --image "$TMP/no-such-image.png" --text hi
expect_error 1 "image is a directory" "." embed -m "$MODEL_ABC" --image "$TMP" --text hi
expect_error 1 "truncated PNG" "image|png|truncat" embed -m "$MODEL_ABC" --image "$TMP/truncated.png"
expect_error 1 "truncated JPEG" "image|jpeg|jpg|truncat" embed -m "$MODEL_ABC" --image "$TMP/truncated.jpg"
expect_error 1 "unknown image format" "image|format" embed -m "$MODEL_ABC" --image "$TMP/garbage.png"
expect_error 1 "empty image file" "image|empty|truncat" embed -m "$MODEL_ABC" --image "$TMP/empty.png"
expect_error 1 "invalid UTF-8 text" "utf-?8" embed -m "$MODEL_ABC" --text $'caf\xff'
expect_error 1 "invalid UTF-8 instruction" "utf-?8" embed -m "$MODEL_ABC" --image "$(image_path coffee.png)" --text $'\xc3('
expect_error 1 "invalid UTF-8 in tokenize" "utf-?8" tokenize -m "$MODEL_ABC" $'\xff'
expect_error 1 "prompt without <|image_pad|> for an image" "prompt|image" embed -m "$MODEL_VLM" \
    --image "$(image_path coffee.png)" --prompt "no placeholder here"
expect_error 1 "-o into a missing directory" "no-such-dir" embed -m "$MODEL_VLM" --text hi -o "$TMP/no-such-dir/x.npy"
expect_error 1 "--dump under a file" "dump|director|not a" embed -m "$MODEL_VLM" --text hi --dump "$TMP/corrupt.abc/d"
expect_error 1 "--input-ids not a .npy" "corrupt\.abc|npy" embed -m "$MODEL_VLM" --input-ids "$TMP/corrupt.abc"
expect_error 2 "--max-pixels 100" "max-pixels" embed -m "$MODEL_ABC" --text hi --max-pixels 100
expect_error 2 "--min-pixels x" "min-pixels" embed -m "$MODEL_ABC" --text hi --min-pixels x
expect_error 1 "--min-pixels > --max-pixels" "min_pixels" embed -m "$MODEL_ABC" --text hi --min-pixels 802816 --max-pixels 200704
expect_error 2 "--threads abc" "threads" embed -m "$MODEL_ABC" --text hi --threads abc
expect_error 2 "--threads 0" "threads" embed -m "$MODEL_ABC" --text hi --threads 0
expect_error 2 "--threads 1025 (the documented range is 1..1024)" "threads" embed -m "$MODEL_ABC" --text hi --threads 1025
expect_error 2 "--threads -1" "threads" embed -m "$MODEL_ABC" --text hi --threads -1
expect_error 2 "--threads 4x" "threads" embed -m "$MODEL_ABC" --text hi --threads 4x
expect_error 2 "--threads 99999999999999999999" "threads" embed -m "$MODEL_ABC" --text hi --threads 99999999999999999999
expect_error 2 "--threads without a value" "threads" embed -m "$MODEL_ABC" --text hi --threads
expect_error 2 "-m without a value" "-m|model" embed -m
expect_error 2 "no model" "model" embed --text hi
expect_error 2 "nothing to embed" "nothing|image|text" embed -m "$MODEL_ABC"
expect_error 2 "bad --role" "role" embed -m "$MODEL_ABC" --text hi --role boss
expect_error 2 "bad --stop-after" "stop-after" embed -m "$MODEL_ABC" --text hi --stop-after lunch
expect_error 2 "bad --grid" "grid" embed -m "$MODEL_ABC" --input-ids "$FIX/cases/vlm2vec_text/input_ids.npy" \
    --pixel-values "$TMP/x.npy" --grid 1,x,3
expect_error 2 "unknown option" "--frobnicate" embed -m "$MODEL_ABC" --text hi --frobnicate
expect_error 2 "unknown command" "frobnicate" frobnicate
expect_error 2 "tokenize without text" "text" tokenize -m "$MODEL_ABC"
expect_error 2 "tokenize with two texts" "one text|quote" tokenize -m "$MODEL_ABC" a b
run_cli 2 "no arguments" && check "no arguments: usage on stderr" grep -q '^usage: abc' "$TMP/err"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
