#!/usr/bin/env bash
# End-to-end test of `abc eval` (README "Collections"): an MMEB-style task built from the fixture images
# and texts; the ground truth's rank for every query and hit@1 must equal an independent computation
# from every entry embedded on its own row by one `abc embed --batch` (no deduplication, none of eval's
# code) and ranked by build/tool_retrieval.
# Also counts the candidate embeddings computed against the naive count, and the errors.
set -u

ABC=${ABC_CLI:-build/abc-san}
TOOL=build/tool_retrieval
IMG=tests/fixtures/images
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/abc_test_eval.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/cli_checks.sh"

missing=0
for f in "$ABC" "$TOOL" build/tiny-abc.abc build/tiny-vlm2vec.abc; do
    if [ ! -e "$f" ]; then bad "prerequisite $f is missing (run 'make test')"; missing=1; fi
done
if [ "$missing" -ne 0 ]; then echo "RESULT $passed $failed"; exit 1; fi

# The task: MMEB's fields; image paths relative to --image-root; candidates repeat across queries;
# texts carry MMEB's "<|image_1|>\n" placeholder, which eval drops (the model's template places the image).
# Each query: "IMAGE|TEXT" then its candidates "IMAGE|TEXT;IMAGE|TEXT;..." (ground truth first); \n in a
# text is a newline.
P='<|image_1|>\n'
queries=(
    "astronaut.png|${P}What is the person holding?"
    "rocket.jpg|${P}what color is the sky!"
    "|a cup of coffee on a wooden table"
    "|an old camera"
    "coffee_420_prog.jpg|${P}Represent the given image."
)
cands=(
    "|A person in a space suit;|a cup of coffee on a wooden table;|a rocket on the launch pad;|an old camera"
    "|a rocket on the launch pad;|A person in a space suit;|an old camera;|a cup of coffee on a wooden table"
    "coffee.png|${P}Represent the given image.;camera.png|${P}Represent the given image.;astronaut.png|${P}Represent the given image."
    "camera.png|;coffee.png|;rocket.jpg|"
    "|a cup of coffee on a wooden table;|A person in a space suit;|a blue sky"
)
: >"$TMP/task.jsonl"
naive=0
for ((l = 0; l < ${#queries[@]}; l++)); do
    IFS='|' read -r qi qt <<<"${queries[$l]}"
    IFS=';' read -r -a cs <<<"${cands[$l]}"
    tt=""; ti=""
    for c in "${cs[@]}"; do
        IFS='|' read -r ci ct <<<"$c"
        tt+="${tt:+,}\"$ct\""; ti+="${ti:+,}\"$ci\""
        naive=$((naive + 1))
    done
    echo "{\"qry_text\":\"$qt\",\"qry_img_path\":\"$qi\",\"tgt_text\":[$tt],\"tgt_img_path\":[$ti]}" >>"$TMP/task.jsonl"
done
# distinct candidates: (image, text) pairs once the placeholder is dropped
distinct=$(printf '%s\n' "${cands[@]}" | tr ';' '\n' | sed "s/<|image_1|>\\\\n//" | sort -u | wc -l)
nq=${#queries[@]}

# independent: every query and candidate entry embedded on its own row (roles explicit) by one
# `abc embed --batch` (no deduplication, none of eval's code), ranked in double by the tool
independent_ranks() { # independent_ranks MODEL: one rank per query on stdout
    local model=$1 l k qi qt ci ct cs row=0 rows=() line
    : >"$TMP/entries.jsonl"
    entry() { # entry ROLE IMAGE TEXT: one batch line (image paths absolute: the file is in $TMP)
        local text=${3#"$P"} line="{\"role\":\"$1\""
        [ -n "$2" ] && line+=",\"image\":\"$PWD/$IMG/$2\""
        [ -n "$text" ] && line+=",\"text\":\"$text\""
        echo "$line}" >>"$TMP/entries.jsonl"
    }
    for ((l = 0; l < nq; l++)); do
        IFS='|' read -r qi qt <<<"${queries[$l]}"
        entry query "$qi" "$qt"
        line="$row"; row=$((row + 1))
        IFS=';' read -r -a cs <<<"${cands[$l]}"
        for ((k = 0; k < ${#cs[@]}; k++)); do
            IFS='|' read -r ci ct <<<"${cs[$k]}"
            entry candidate "$ci" "$ct"
            line+=" $row"; row=$((row + 1))
        done
        rows+=("$line")
    done
    "$ABC" embed -m "$model" --batch "$TMP/entries.jsonl" -o "$TMP/entries.npy" 2>>"$TMP/embed.err" || echo "batch failed" >>"$TMP/embed.err"
    for ((l = 0; l < nq; l++)); do
        # shellcheck disable=SC2086 # the row numbers are separate arguments
        "$TOOL" rankrows "$TMP/entries.npy" ${rows[$l]}
    done
}

for model in build/tiny-abc.abc build/tiny-vlm2vec.abc; do
    echo "-- $model"
    want=$(independent_ranks "$model" | tr '\n' ',' | sed 's/,$//')
    hits=$(printf '%s' "$want" | tr ',' '\n' | grep -c '^1$')
    if run_cli 0 "eval --json" eval -m "$model" "$TMP/task.jsonl" --image-root "$IMG" --json --threads 2; then
        echo "     $(cat "$TMP/out")"
        check "ranks of the ground truth equal the independent computation [$want]" grep -q "\"ranks\":\[$want\]" "$TMP/out"
        check "hit@1 = $hits of $nq" grep -q "\"queries\":$nq,\"hits_at_1\":$hits," "$TMP/out"
        check "candidates embedded: $distinct distinct of $naive entries" grep -q "\"candidates_embedded\":$distinct,\"candidates_naive\":$naive," "$TMP/out"
    fi
    # the text report once (one thread): its format does not depend on the model
    [ "$model" = build/tiny-abc.abc ] || continue
    if run_cli 0 "eval (text)" eval -m "$model" "$TMP/task.jsonl" --image-root "$IMG" --threads 1; then
        sed 's/^/     /' "$TMP/out"
        check "text output: hit@1 and the number of queries" grep -q "^hit@1: [0-9.]* ($hits of $nq)$" "$TMP/out"
    fi
done
check "the independent embeddings all succeeded" test ! -s "$TMP/embed.err"

echo "-- image paths relative to the task file by default; errors"
cp "$IMG/camera.png" "$IMG/coffee.png" "$IMG/rocket.jpg" "$TMP/"
sed -n 4p "$TMP/task.jsonl" >"$TMP/one.jsonl"
if run_cli 0 "eval without --image-root" eval -m build/tiny-abc.abc "$TMP/one.jsonl"; then
    check "one query" grep -q '^queries: 1$' "$TMP/out"
fi
printf '{"qry_text":"x","qry_img_path":"","tgt_text":["a"],"tgt_img_path":["gone.png"]}\n' >"$TMP/missing.jsonl"
expect_error 1 "eval: a missing candidate image" "line 1: .*gone.png" eval -m build/tiny-abc.abc "$TMP/missing.jsonl"
printf '{"qry_text":"x","tgt_text":["a","b"],"tgt_img_path":["c.png"]}\n' >"$TMP/uneven.jsonl"
expect_error 1 "eval: lists of different lengths" "line 1: .*same length" eval -m build/tiny-abc.abc "$TMP/uneven.jsonl"
printf 'nope\n' >"$TMP/junk.jsonl"
expect_error 1 "eval: a line that is not JSON" "line 1" eval -m build/tiny-abc.abc "$TMP/junk.jsonl"
expect_error 2 "eval without a task" "TASK.jsonl is required" eval -m build/tiny-abc.abc

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
