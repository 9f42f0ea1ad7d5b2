#!/usr/bin/env bash
# End-to-end tests of `abc embed --batch` (README "Collections"): every reference case in one batch equals
# the per-case `abc embed` bit for bit; standard input; relative image paths; shards; kill -9 then
# --resume; --keep-going and its error file; .jsonl output; `abc embed --json`; progress; usage errors.
# Needs ./abc-san (build/abc-san), build/tool_npycmp, build/tool_retrieval and the tiny models.
set -u

ABC=${ABC_CLI:-build/abc-san}
CMP=build/tool_npycmp
TOOL=build/tool_retrieval
FIX=tests/fixtures/qwen2vl-tiny
IMG=tests/fixtures/images
MODEL_ABC=build/tiny-abc.abc
MODEL_VLM=build/tiny-vlm2vec.abc
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_batch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$CMP" "$TOOL" "$MODEL_ABC" "$MODEL_VLM"; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

same() { # same LABEL A B: bit-identical .npy files
    if "$CMP" --exact "$2" "$3" >/dev/null 2>&1; then ok "$1"; else bad "$1"; "$CMP" --exact "$2" "$3" 2>&1 | head -3; fi
}

# ---- every reference case, images and texts mixed, against `abc embed` one at a time ----
ROOT=$(pwd)
# case: "ROLE|IMAGE|TEXT|PROMPT" (IMAGE relative to the repository, "" for none)
abc_cases=(
    "query|$IMG/astronaut.png|What is the person holding?|"
    "candidate||a cup of coffee on a wooden table|"
    "query|$IMG/rocket.jpg|what color is the sky!|"
    "candidate|$IMG/coffee.png||"
    "auto||A person in a space suit|"
    "candidate|$IMG/camera.png||"
    "auto||hello|"
)
vlm_cases=(
    "query|$IMG/astronaut.png||<|image_pad|> Represent the given image with the following question: What is the person holding?"
    "candidate||A person in a space suit|"
    "query|$IMG/coffee_420_prog.jpg||<|image_pad|> Represent the given image."
    "auto||a rocket on the launch pad|"
)
json_str() { # JSON string of $1 (the fixtures' texts need only quotes and backslashes escaped)
    local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"
}
# make_manifest OUT PREFIX CASES...: one JSON line per case, ids PREFIX0, PREFIX1, ...; image paths as
# given with IMGPREFIX prepended (to test relative paths)
make_manifest() {
    local out=$1 prefix=$2 imgprefix=$3; shift 3
    local i=0 c role image text prompt line
    : >"$out"
    for c in "$@"; do
        IFS='|' read -r role image text prompt <<<"$c"
        line="{\"id\":\"$prefix$i\",\"role\":\"$role\""
        [ -n "$image" ] && line+=",\"image\":$(json_str "$imgprefix$image")"
        [ -n "$text" ] && line+=",\"text\":$(json_str "$text")"
        [ -n "$prompt" ] && line+=",\"prompt\":$(json_str "$prompt")"
        echo "$line}" >>"$out"
        i=$((i + 1))
    done
}
# singles MODEL OUTPREFIX CASES...: `abc embed` per case into OUTPREFIX<i>.npy
singles() {
    local model=$1 prefix=$2; shift 2
    local i=0 c role image text prompt args
    for c in "$@"; do
        IFS='|' read -r role image text prompt <<<"$c"
        args=(embed -m "$model" --role "$role" -o "$prefix$i.npy" --threads 1)
        [ -n "$image" ] && args+=(--image "$image")
        [ -n "$text" ] && args+=(--text "$text")
        [ -n "$prompt" ] && args+=(--prompt "$prompt")
        run_cli 0 "single embed $prefix$i" "${args[@]}" || return 1
        i=$((i + 1))
    done
}

echo "-- batch over the reference cases equals abc embed per case, bit for bit (binary: $ABC)"
for set in abc vlm; do
    if [ $set = abc ]; then model=$MODEL_ABC; cases=("${abc_cases[@]}"); else model=$MODEL_VLM; cases=("${vlm_cases[@]}"); fi
    make_manifest "$TMP/$set.jsonl" "$set-" "$ROOT/" "${cases[@]}"
    singles "$model" "$TMP/$set.single" "${cases[@]}" || continue
    files=(); for ((i = 0; i < ${#cases[@]}; i++)); do files+=("$TMP/$set.single$i.npy"); done
    "$TOOL" stack "$TMP/$set.single.npy" "${files[@]}"
    for t in 1 2 3; do
        if run_cli 0 "$set batch --threads $t" embed -m "$model" --batch "$TMP/$set.jsonl" -o "$TMP/$set.t$t.npy" --threads $t; then
            check "$set batch --threads $t: shape [${#cases[@]},32]" test "$("$CMP" --shape "$TMP/$set.t$t.npy" 2>&1)" = "float32 ${#cases[@]},32"
            same "$set batch --threads $t: ${#cases[@]} rows equal abc embed one at a time, bit for bit" "$TMP/$set.t$t.npy" "$TMP/$set.single.npy"
            check "$set batch: no stderr on a non-terminal" test ! -s "$TMP/err"
        fi
    done
    check "$set batch: OUT.ids lists the ids in order" test "$(tr '\n' ' ' <"$TMP/$set.t1.ids")" = \
        "$(for ((i = 0; i < ${#cases[@]}; i++)); do printf '%s ' "$set-$i"; done)"
    check "$set batch: no partial or progress file left" test ! -e "$TMP/$set.t1.npy.partial" -a ! -e "$TMP/$set.t1.npy.progress"
done
# and against the transformers references of the fixture (the single runs are tested in test_cli.sh; this
# shows the batch rows are the right vectors, not just equal to something)
for pair in "0 abc_query_astronaut" "1 abc_cand_text" "2 abc_query_rocket_bang" "3 abc_cand_image_coffee" "5 abc_cand_image_camera"; do
    set -- $pair
    compare "batch row $1 vs transformers reference $2" --cos 0.99999 --abs 1e-4 "$TMP/abc.single$1.npy" "$FIX/cases/$2/embedding.npy"
done

echo "-- standard input and relative image paths"
sed "s|\"$ROOT/|\"|" "$TMP/abc.jsonl" >"$TMP/abc_rel_repo.jsonl"
if run_cli 0 "batch from stdin" embed -m "$MODEL_ABC" --batch - -o "$TMP/stdin.npy" <"$TMP/abc_rel_repo.jsonl"; then
    same "--batch - (paths relative to the working directory) equals the file run" "$TMP/stdin.npy" "$TMP/abc.single.npy"
fi
mkdir -p "$TMP/sub/pics"
cp "$IMG"/astronaut.png "$IMG"/rocket.jpg "$IMG"/coffee.png "$IMG"/camera.png "$TMP/sub/pics/"
sed "s|\"$ROOT/$IMG/|\"pics/|" "$TMP/abc.jsonl" >"$TMP/sub/rel.jsonl"
if run_cli 0 "batch with image paths relative to the JSONL file" embed -m "$MODEL_ABC" --batch "$TMP/sub/rel.jsonl" -o "$TMP/rel.npy"; then
    same "relative image paths resolve against the JSONL file's folder" "$TMP/rel.npy" "$TMP/abc.single.npy"
fi

echo "-- shards 0/3, 1/3, 2/3 concatenated equal the whole run"
# a longer manifest: the cases three times with other ids and texts
long=()
for k in 0 1 2; do for c in "${abc_cases[@]}"; do
    IFS='|' read -r role image text prompt <<<"$c"
    [ -n "$text" ] && text="$text $k"
    long+=("$role|$image|$text|$prompt")
done; done
make_manifest "$TMP/long.jsonl" "r" "$ROOT/" "${long[@]}"
n_long=${#long[@]}
if run_cli 0 "long batch" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/long.npy" --threads 2; then
    shards=()
    for s in 0 1 2; do
        run_cli 0 "shard $s/3" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/shard$s.npy" --shard $s/3 && shards+=("$TMP/shard$s.npy")
    done
    "$TOOL" concat "$TMP/shards.npy" "${shards[@]}"
    same "shards 0/3 1/3 2/3 ($("$CMP" --shape "$TMP/shard0.npy" 2>&1 | cut -d' ' -f2) + ...) concatenated equal the full run" "$TMP/shards.npy" "$TMP/long.npy"
    check "shard ids concatenated equal the full run's ids" test "$(cat "$TMP"/shard{0,1,2}.ids)" = "$(cat "$TMP/long.ids")"
fi

echo "-- kill -9 at a random row, then --resume"
# The image rows run first (one at a time, all threads inside each), then the short texts (several at
# once). The kill aims at a random row among the images, the slow part, so the run is still going.
n_img=$(grep -c '"image"' "$TMP/long.jsonl")
target=$((2 + RANDOM % (n_img - 3)))
"$ABC" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/killed.npy" --threads 1 >/dev/null 2>"$TMP/killed.err" &
pid=$!
for _ in $(seq 1 600); do
    d=$(grep -c '^D ' "$TMP/killed.npy.progress" 2>/dev/null); d=${d:-0}
    [ "$d" -ge "$target" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
done_at_kill=$(grep -c '^D ' "$TMP/killed.npy.progress" 2>/dev/null)
check "killed run (target row $target, $done_at_kill rows logged done): nothing under the final names" \
    test ! -e "$TMP/killed.npy" -a ! -e "$TMP/killed.ids" -a -e "$TMP/killed.npy.partial"
if [ "$done_at_kill" -ge "$n_long" ]; then bad "the kill came after the last row (test machine too fast?)"; fi
if run_cli 0 "--resume" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/killed.npy" --resume --threads 2; then
    echo "     $(cat "$TMP/err")"
    todo=$(sed -n 's/.* \([0-9]*\) to compute in all.*/\1/p' "$TMP/err")
    inflight=$(sed -n 's/.*; \([0-9]*\) were in flight.*/\1/p' "$TMP/err")
    check "resume computes only the rows not logged done ($todo = $n_long - $done_at_kill), $inflight in flight recomputed (<= 1)" \
        test "$todo" = $((n_long - done_at_kill)) -a "$inflight" -le 1
    same "killed + --resume equals the uninterrupted run bit for bit" "$TMP/killed.npy" "$TMP/long.npy"
    check "killed + --resume: same ids" cmp -s "$TMP/killed.ids" "$TMP/long.ids"
    check "resume removed the partial and progress files" test ! -e "$TMP/killed.npy.partial" -a ! -e "$TMP/killed.npy.progress"
fi
# a bad row stops the run; a changed manifest cannot be resumed; a torn last log line is ignored
printf '{"text":"ok"}\n{"text":"ok2"}\n{"image":"missing.png"}\n{"text":"after"}\n' >"$TMP/stop.jsonl"
if run_cli 1 "bad row without --keep-going stops" embed -m "$MODEL_ABC" --batch "$TMP/stop.jsonl" -o "$TMP/stop.npy" --threads 1; then
    check "stop: 'line 3: ...' on stderr" grep -q '^abc: error: line 3: .*missing.png' "$TMP/err"
    check "stop: nothing under the final names" test ! -e "$TMP/stop.npy" -a ! -e "$TMP/stop.ids"
    printf 'D 1' >>"$TMP/stop.npy.progress" # torn line: row 1 must not count as done unless logged whole
    sed -i 's/missing.png/'"${ROOT//\//\\/}"'\/tests\/fixtures\/images\/coffee.png/' "$TMP/stop.jsonl"
    expect_error 1 "--resume after the inputs changed is refused" "another job" embed -m "$MODEL_ABC" \
        --batch "$TMP/stop.jsonl" -o "$TMP/stop.npy" --resume
    if run_cli 0 "rerun without --resume starts over" embed -m "$MODEL_ABC" --batch "$TMP/stop.jsonl" -o "$TMP/stop.npy"; then
        check "rerun: 4 rows" test "$("$CMP" --shape "$TMP/stop.npy" 2>&1)" = "float32 4,32"
    fi
fi
# torn line on a real resume: interrupt the long run after its first rows, tear the log, resume
"$ABC" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/torn.npy" --threads 1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    d=$(grep -c '^D ' "$TMP/torn.npy.progress" 2>/dev/null); d=${d:-0}
    [ "$d" -ge 2 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
printf 'D 2' >>"$TMP/torn.npy.progress"
if run_cli 0 "--resume after a torn log line" embed -m "$MODEL_ABC" --batch "$TMP/long.jsonl" -o "$TMP/torn.npy" --resume; then
    same "torn log line ignored: the resumed output equals the uninterrupted run" "$TMP/torn.npy" "$TMP/long.npy"
fi

echo "-- --keep-going: bad rows get NaN rows and a line in OUT.errors"
printf 'GARBAGE' >"$TMP/sub/pics/corrupt.png"
cat >"$TMP/sub/bad.jsonl" <<EOF
{"id":"good0","text":"a cup of coffee on a wooden table","role":"candidate"}
{"id":"missing","image":"pics/does_not_exist.png"}

{"id":"corrupt","image":"pics/corrupt.png"}
{"id":"good1","image":"pics/coffee.png","role":"candidate"}
{"id":"nothing","role":"query"}
{"id":"badrole","text":"x","role":"boss"}
EOF
printf '{"id":"utf8","text":"caf\xe9"}\n{"text":"A person in a space suit"}\n' >>"$TMP/sub/bad.jsonl"
if run_cli 1 "bad rows without --keep-going" embed -m "$MODEL_ABC" --batch "$TMP/sub/bad.jsonl" -o "$TMP/bad.npy"; then
    check "without --keep-going: exit 1, 'line 3:' (malformed lines are found before any embedding), no output" \
        test "$(grep -c '^abc: error: line [0-9]*:' "$TMP/err")" = 1 -a ! -e "$TMP/bad.npy"
    sed 's/^/     /' "$TMP/err"
fi
if run_cli 0 "bad rows with --keep-going" embed -m "$MODEL_ABC" --batch "$TMP/sub/bad.jsonl" -o "$TMP/bad.npy" --keep-going; then
    echo "     OUT.errors:"; sed 's/^/       /' "$TMP/bad.errors"
    check "OUT.errors: 6 bad lines (2 3 4 6 7 8), with ids" test "$(cut -f1,2 "$TMP/bad.errors" | tr '\t\n' ': ')" = \
        "2:missing 3:2 4:corrupt 6:nothing 7:badrole 8:7 "
    check "OUT.errors messages: missing file, empty line, bad image, nothing to embed, role, UTF-8" \
        test "$(grep -c -i -E 'does_not_exist|empty line|bad image|nothing to embed|role|UTF-8' "$TMP/bad.errors")" = 6
    check "NaN rows exactly at the bad lines" test "$("$TOOL" nanrows "$TMP/bad.npy" | tr '\n' ' ')" = "1 2 3 5 6 7 "
    check "stderr names the error file" grep -q '6 of 9 inputs failed' "$TMP/err"
    "$TOOL" stack "$TMP/good.npy" "$TMP/abc.single1.npy" "$TMP/abc.single3.npy" "$TMP/abc.single4.npy"
    printf '{"text":"a cup of coffee on a wooden table","role":"candidate"}\n{"image":"pics/coffee.png","role":"candidate"}\n{"text":"A person in a space suit"}\n' >"$TMP/sub/good.jsonl"
    run_cli 0 "good rows alone" embed -m "$MODEL_ABC" --batch "$TMP/sub/good.jsonl" -o "$TMP/good_batch.npy"
    same "the good rows alone equal abc embed" "$TMP/good_batch.npy" "$TMP/good.npy"
fi

echo "-- -o OUT.jsonl and abc embed --json"
if run_cli 0 "batch -o OUT.jsonl" embed -m "$MODEL_ABC" --batch "$TMP/abc.jsonl" -o "$TMP/abc_out.jsonl"; then
    "$TOOL" jsonl2npy "$TMP/abc_out.jsonl" "$TMP/abc_out_jsonl.npy" "$TMP/abc_out_jsonl.ids"
    same "OUT.jsonl embeddings equal the .npy rows bit for bit" "$TMP/abc_out_jsonl.npy" "$TMP/abc.single.npy"
    check "OUT.jsonl ids" cmp -s "$TMP/abc_out_jsonl.ids" "$TMP/abc.t1.ids"
    check "OUT.jsonl: one {\"id\":...,\"embedding\":[...]} per line" \
        test "$(grep -c '^{"id":"abc-[0-9]","embedding":\[[^]]*\]}$' "$TMP/abc_out.jsonl")" = "${#abc_cases[@]}"
fi
if run_cli 0 "embed --json" embed -m "$MODEL_ABC" --image "$IMG/coffee.png" --role candidate --json; then
    cp "$TMP/out" "$TMP/single.json"
    check "--json: {\"dim\":32,\"embedding\":[...]} on one line" grep -Eq '^\{"dim":32,"embedding":\[[^]]+\]\}$' "$TMP/single.json"
    "$TOOL" json2npy "$TMP/single.json" "$TMP/single_json.npy"
    same "--json values read back to the exact floats of -o" "$TMP/single_json.npy" "$TMP/abc.single3.npy"
fi

echo "-- progress"
if run_cli 0 "--progress on a non-terminal" embed -m "$MODEL_ABC" --batch "$TMP/abc.jsonl" -o "$TMP/p.npy" --progress; then
    check "--progress: done/total, inputs/s and ETA on stderr" grep -Eq "^abc: ${#abc_cases[@]}/${#abc_cases[@]} inputs, [0-9.]+ inputs/s, ETA 0:00" "$TMP/err"
fi
if command -v script >/dev/null 2>&1; then
    script -qec "$ABC embed -m $MODEL_ABC --batch $TMP/abc.jsonl -o $TMP/tty.npy" "$TMP/tty.log" >/dev/null 2>&1
    check "on a terminal: a progress line redrawn with \\r" grep -q $'\r''abc: [0-9]*/[0-9]* inputs' "$TMP/tty.log"
else
    echo "SKIP progress on a terminal: script(1) is missing (Debian: bsdutils)"; skipped=$((${skipped:-0} + 1))
fi

echo "-- help and usage errors"
if run_cli 0 "embed --batch --help" embed --batch --help; then
    check "embed --batch --help prints the batch usage" grep -q -- '--shard I/N' "$TMP/out"
fi
expect_error 2 "--shard 3/3" "shard" embed -m "$MODEL_ABC" --batch "$TMP/abc.jsonl" -o "$TMP/u.npy" --shard 3/3
expect_error 2 "--shard x" "shard" embed -m "$MODEL_ABC" --batch "$TMP/abc.jsonl" -o "$TMP/u.npy" --shard x
expect_error 2 "--batch without -o" "-o OUT" embed -m "$MODEL_ABC" --batch "$TMP/abc.jsonl"
expect_error 1 "--batch of a missing file" "cannot open" embed -m "$MODEL_ABC" --batch "$TMP/nope.jsonl" -o "$TMP/u.npy"

echo "RESULT $passed $failed ${skipped:-0}"
[ "$failed" -eq 0 ]
